#!/usr/bin/python3
"""Writes the PyTorch reference fixtures of the nn tests into tests/reference/nn/.

Run with Debian's interpreter, which has torch (python3-torch):

    /usr/bin/python3 tests/reference/make_nn_fixtures.py

The fixtures are committed, so the tests never need torch. Every number is
computed in float64. File format (read by tests/test_nn_common.h): one tensor
per line,

    name ndim d0 ... d(ndim-1) v0 v1 ...

values row-major, printed with 17 significant digits. Weights are stored in
chainrule's layout (in, out), i.e. the transpose of torch.nn.Linear.weight.
"""
import math
import os

import torch

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nn")

IN, HIDDEN, OUT_W, BATCH = 4, 5, 3, 6


def fmt(t):
    t = torch.as_tensor(t, dtype=torch.float64).detach()
    dims = " ".join(str(d) for d in t.shape)
    vals = " ".join("%.17g" % v for v in t.reshape(-1).tolist())
    return "%d%s%s %s" % (t.dim(), " " if dims else "", dims, vals)


def write(name, tensors):
    path = os.path.join(OUT, name + ".txt")
    with open(path, "w") as f:
        for key, value in tensors:
            f.write("%s %s\n" % (key, fmt(value)))


def heaviside(z):
    """0 if z < 0 else 1, no gradient (torch.heaviside has no derivative)."""
    return (z.detach() >= 0).to(z.dtype)


def straight_through(z, fz):
    return z + (fz - z).detach()


ACTIVATIONS = {
    "identity": lambda z: z,
    "step": heaviside,
    "sign": torch.sign,
    "step_st": lambda z: straight_through(z, heaviside(z)),
    "sign_st": lambda z: straight_through(z, torch.sign(z)),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, 0.01),
    "elu": lambda z: torch.nn.functional.elu(z, 1.0),
    "selu": torch.nn.functional.selu,
    "softplus": torch.nn.functional.softplus,
    "softmax": lambda z: torch.softmax(z, dim=-1),
    "log_softmax": lambda z: torch.log_softmax(z, dim=-1),
}


def half_sse(p, t):
    return 0.5 * ((p - t) ** 2).sum(1).mean()


def hinge(s, t):
    return torch.relu(1 - t * s).mean()


def perceptron(s, t):
    return ((heaviside(s) - t).detach() * s).sum(1).mean()


LOSSES = {
    "mse": lambda p, t: torch.nn.functional.mse_loss(p, t),
    "half_sse": half_sse,
    "bce_logits": lambda p, t: torch.nn.functional.binary_cross_entropy_with_logits(p, t),
    "cross_entropy": lambda p, t: torch.nn.functional.cross_entropy(p, t.long()),
    "hinge": hinge,
    "perceptron": perceptron,
}


def make_params(gen, scale=1.0):
    """dense0 (IN->HIDDEN), dense1 (HIDDEN->OUT_W) as torch tensors in (in, out) layout."""
    w0 = (torch.rand(IN, HIDDEN, generator=gen) * 2 - 1) * scale
    b0 = (torch.rand(HIDDEN, generator=gen) * 2 - 1) * 0.5
    w1 = (torch.rand(HIDDEN, OUT_W, generator=gen) * 2 - 1) * scale
    b1 = (torch.rand(OUT_W, generator=gen) * 2 - 1) * 0.5
    return [p.clone().requires_grad_(True) for p in (w0, b0, w1, b1)]


NAMES = ["dense0.weight", "dense0.bias", "dense1.weight", "dense1.bias"]


def mlp(x, params, act):
    w0, b0, w1, b1 = params
    return act(x @ w0 + b0) @ w1 + b1


def targets_for(loss, gen):
    if loss == "cross_entropy":
        return torch.randint(0, OUT_W, (BATCH,), generator=gen).double()
    if loss == "bce_logits":
        return torch.rand(BATCH, OUT_W, generator=gen)
    if loss == "hinge":
        return torch.randint(0, 2, (BATCH, OUT_W), generator=gen).double() * 2 - 1
    if loss == "perceptron":
        return torch.randint(0, 2, (BATCH, OUT_W), generator=gen).double()
    return torch.randn(BATCH, OUT_W, generator=gen)


def fixture_case(name, act, loss, seed, logit_scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, IN, generator=gen)
    params = make_params(gen)
    t = targets_for(loss, gen)
    out = mlp(x, params, ACTIVATIONS[act]) * logit_scale
    value = LOSSES[loss](out, t)
    value.backward()
    rows = [("x", x), ("t", t)]
    rows += [(n, p) for n, p in zip(NAMES, params)]
    rows += [("output", out), ("loss", value)]
    rows += [("grad." + n, p.grad if p.grad is not None else torch.zeros_like(p))
             for n, p in zip(NAMES, params)]
    write(name, rows)


OPTIMIZERS = {
    "sgd": (torch.optim.SGD, dict(lr=0.1)),
    "sgd_momentum": (torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    "sgd_nesterov_wd": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "sgd_dampening_wd": (torch.optim.SGD, dict(lr=0.05, momentum=0.8, dampening=0.5, weight_decay=0.1)),
    "adam": (torch.optim.Adam, dict(lr=0.01)),
    "adam_wd": (torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1)),
    "adam_amsgrad": (torch.optim.Adam, dict(lr=0.01, amsgrad=True)),
    "adamw": (torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    "adamw_amsgrad": (torch.optim.AdamW, dict(lr=0.02, weight_decay=0.05, amsgrad=True)),
    "rmsprop": (torch.optim.RMSprop, dict(lr=0.01)),
    "rmsprop_centered_momentum_wd": (torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, momentum=0.9, centered=True, weight_decay=0.01)),
    "rmsprop_momentum": (torch.optim.RMSprop, dict(lr=0.005, momentum=0.5)),
    "adagrad": (torch.optim.Adagrad, dict(lr=0.1)),
    "adagrad_decay_wd": (torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.1, weight_decay=0.01, initial_accumulator_value=0.1)),
}

OPT_STEPS = 5


def optimizer_case(name, cls, kwargs, clip=0.0):
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(BATCH, IN, generator=gen)
    params = make_params(gen)
    t = torch.randn(BATCH, OUT_W, generator=gen)
    opt = cls(params, **kwargs)
    flat = lambda: torch.cat([p.detach().reshape(-1) for p in params])
    rows = [("x", x), ("t", t), ("params0", flat())]
    for step in range(1, OPT_STEPS + 1):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(mlp(x, params, torch.tanh), t)
        loss.backward()
        if clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
            rows.append(("norm%d" % step, norm))
        opt.step()
        rows.append(("loss%d" % step, loss))
        rows.append(("params%d" % step, flat()))
    write("optim_" + name, rows)


def batchnorm_case():
    """4 -> dense 5 -> batch norm -> relu -> dense 3, MSE, training then eval."""
    gen = torch.Generator().manual_seed(77)
    x = torch.randn(BATCH, IN, generator=gen) * 2 + 1
    params = make_params(gen)
    t = torch.randn(BATCH, OUT_W, generator=gen)
    bn = torch.nn.BatchNorm1d(HIDDEN, momentum=0.1, eps=1e-5)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(HIDDEN, generator=gen) + 0.5)
        bn.bias.copy_(torch.rand(HIDDEN, generator=gen) - 0.5)
    w0, b0, w1, b1 = params
    bn.train()
    out = torch.relu(bn(x @ w0 + b0)) @ w1 + b1
    loss = torch.nn.functional.mse_loss(out, t)
    loss.backward()
    rows = [("x", x), ("t", t)] + [(n, p) for n, p in zip(NAMES, params)]
    rows += [("batchnorm0.gamma", bn.weight), ("batchnorm0.beta", bn.bias)]
    rows += [("output", out), ("loss", loss)]
    rows += [("grad." + n, p.grad) for n, p in zip(NAMES, params)]
    rows += [("grad.batchnorm0.gamma", bn.weight.grad), ("grad.batchnorm0.beta", bn.bias.grad)]
    rows += [("running_mean", bn.running_mean), ("running_var", bn.running_var)]
    bn.eval()
    with torch.no_grad():
        out_eval = torch.relu(bn(x @ w0 + b0)) @ w1 + b1
    rows += [("output_eval", out_eval)]
    write("batchnorm", rows)


def schedule_case():
    rows = []
    cases = {
        "step": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
        "exponential": lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9),
        "cosine": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
    }
    for name, make in cases.items():
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([p], lr=0.1)
        sched = make(opt)
        lrs = []
        for epoch in range(15):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        rows.append((name, torch.tensor(lrs)))
    write("schedules", rows)


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, act in enumerate(ACTIVATIONS):
        fixture_case("act_" + act, act, "mse", 100 + i)
    for i, loss in enumerate(LOSSES):
        fixture_case("loss_" + loss, "tanh", loss, 200 + i)
    # stability: logits of magnitude about 1e4
    fixture_case("loss_cross_entropy_1e4", "tanh", "cross_entropy", 300, logit_scale=1e4)
    fixture_case("loss_bce_logits_1e4", "tanh", "bce_logits", 301, logit_scale=1e4)
    for name, (cls, kwargs) in OPTIMIZERS.items():
        optimizer_case(name, cls, kwargs)
    optimizer_case("sgd_clip", torch.optim.SGD, dict(lr=0.1, momentum=0.9), clip=0.5)
    batchnorm_case()
    schedule_case()
    print("wrote fixtures to", OUT)


if __name__ == "__main__":
    main()
