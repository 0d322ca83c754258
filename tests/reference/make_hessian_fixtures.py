#!/usr/bin/python3
"""Writes tests/reference/cli/hessian.json: values, gradients and Hessians of
`chainrule grad` expressions computed by PyTorch, for tests/test_grad_cli.c
(`chainrule grad EXPR vars --order 2 --json` must agree to 1e-10 relative).

Run with Debian's interpreter (python3-torch):

    /usr/bin/python3 tests/reference/make_hessian_fixtures.py

Each case gives the expression in chainrule's syntax, the same function
written with torch, and the variables in command-line order. The Hessian is
torch.autograd.functional.hessian over all variables (float64), written as
nested objects keyed by name, as chainrule prints it.
"""
import json
import os

import torch
import torch.nn.functional as F

CASES = [
    ("x^3", lambda x: x ** 3, {"x": 2.0}),
    ("x^2*y + sin(x*y)", lambda x, y: x ** 2 * y + torch.sin(x * y), {"x": 1.0, "y": 2.0}),
    ("tanh(x1*w1 + x2*w2 + b)",
     lambda x1, x2, w1, w2, b: torch.tanh(x1 * w1 + x2 * w2 + b),
     {"x1": 2.0, "x2": 0.0, "w1": -3.0, "w2": 1.0, "b": 6.8813735870195432}),
    ("exp(x)*log(y) + x/y", lambda x, y: torch.exp(x) * torch.log(y) + x / y,
     {"x": 0.3, "y": 1.7}),
    ("sigmoid(x*y) - sqrt(x + y^2)",
     lambda x, y: torch.sigmoid(x * y) - torch.sqrt(x + y ** 2), {"x": 0.4, "y": -1.2}),
    ("x^y", lambda x, y: x ** y, {"x": 1.5, "y": 2.5}),
    ("softplus(x)*cos(y) + x^2/y", lambda x, y: F.softplus(x) * torch.cos(y) + x ** 2 / y,
     {"x": -0.7, "y": 0.9}),
    ("max(x, y)^2 + relu(x)*y", lambda x, y: torch.maximum(x, y) ** 2 + torch.relu(x) * y,
     {"x": 0.5, "y": -0.3}),
    ("leaky_relu(x, 0.1)*y^2 + abs(y)*x^3",
     lambda x, y: F.leaky_relu(x, 0.1) * y ** 2 + torch.abs(y) * x ** 3, {"x": -2.0, "y": 3.0}),
    ("1/(1 + exp(-(a*b + c)))^2 - pow(a, 3)*c",
     lambda a, b, c: 1 / (1 + torch.exp(-(a * b + c))) ** 2 - a ** 3 * c,
     {"a": 0.25, "b": -1.5, "c": 0.75}),
    ("tanh(x)", lambda x: torch.tanh(x), {"x": 0.5}),
    ("x*y*z + x^2*z^3 - y/z", lambda x, y, z: x * y * z + x ** 2 * z ** 3 - y / z,
     {"x": 1.25, "y": -0.5, "z": 2.0}),
]


def main():
    out = []
    for expr, fn, variables in CASES:
        names = list(variables)
        xs = tuple(torch.tensor(variables[n], dtype=torch.float64, requires_grad=True)
                   for n in names)
        value = fn(*xs)
        grads = torch.autograd.grad(value, xs)
        hess = torch.autograd.functional.hessian(fn, xs)
        out.append({
            "expr": expr,
            "vars": [[n, variables[n]] for n in names],
            "value": value.item(),
            "grad": {n: g.item() for n, g in zip(names, grads)},
            "hessian": {ni: {nj: hess[i][j].item() for j, nj in enumerate(names)}
                        for i, ni in enumerate(names)},
        })
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli", "hessian.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {len(out)} cases to {path}")


if __name__ == "__main__":
    main()
