#!/usr/bin/python3
"""Writes the PyTorch reference fixtures of the shape ops for
tests/test_reference.c, in the format of make_autodiff_fixtures.py (whose
Case class and op table this script extends):

    /usr/bin/python3 tests/reference/make_shape_fixtures.py

Ops and their parameters (the chainrule call's argument order):
    take        table index  ints: axis       (numpy.take; negative ids wrap)
    permute     a            ints: axes
    squeeze     a            ints: axis       (unsqueeze the same)
    pad         a            ints: axis before after   floats: value
    slice_step  a            ints: axis start end step
    <r>_keepdims a           ints: axis (or AD_ALL) for r in sum mean max min logsumexp
    reshape     a            ints: shape, 0 keeps the input's axis (ONNX rule)
Index leaves hold integers with repeats, so the gradient of take adds rows
(PyTorch's index_select backward). The second-order case trains on
s = ||dL/dE||^2 through ad_grad, so its gradients go through the backward
ops (scatter_add, slice_step_backward, the inverse permutation).
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_autodiff_fixtures as fx  # noqa: E402

ALL = fx.ALL


def _take(x, fp, ip):
    t, idx = x[0], x[1]
    axis = ip[0] % t.dim()
    n = t.shape[axis]
    i = idx.detach().long()
    assert bool(((i >= -n) & (i < n)).all())
    out = t.index_select(axis, (i % n).reshape(-1))
    return out.reshape(t.shape[:axis] + idx.shape + t.shape[axis + 1:])


def _pad(x, fp, ip):
    a = x[0]
    axis = ip[0] % a.dim()
    pads = [0] * (2 * a.dim())
    k = a.dim() - 1 - axis  # F.pad lists the last axis first
    pads[2 * k], pads[2 * k + 1] = ip[1], ip[2]
    return F.pad(a, pads, value=fp[0])


def _slice_step(x, fp, ip):
    idx = [slice(None)] * x[0].dim()
    idx[ip[0]] = slice(ip[1], ip[2], ip[3])
    return x[0][tuple(idx)]


def _reshape(x, fp, ip):
    a = x[0]
    return a.reshape(tuple(a.shape[d] if s == 0 else s for d, s in enumerate(ip)))


def _keepdims(fn):
    def f(x, fp, ip):
        a = x[0]
        if ip[0] == ALL:
            return fn(a.reshape(-1), 0).reshape([1] * a.dim())
        return fn(a, ip[0])
    return f


fx.TORCH.update({
    "take": _take,
    "permute": lambda x, fp, ip: x[0].permute(*ip),
    "squeeze": lambda x, fp, ip: x[0].squeeze(ip[0]),
    "unsqueeze": lambda x, fp, ip: x[0].unsqueeze(ip[0]),
    "pad": _pad,
    "slice_step": _slice_step,
    "reshape": _reshape,
    "sum_keepdims": _keepdims(lambda a, d: a.sum(d, keepdim=True)),
    "mean_keepdims": _keepdims(lambda a, d: a.mean(d, keepdim=True)),
    "max_keepdims": _keepdims(lambda a, d: torch.amax(a, d, keepdim=True)),
    "min_keepdims": _keepdims(lambda a, d: torch.amin(a, d, keepdim=True)),
    "logsumexp_keepdims": _keepdims(lambda a, d: torch.logsumexp(a, d, keepdim=True)),
})


class Case(fx.Case):
    script = "make_shape_fixtures.py"


def ids(n, lo=0):
    """integers in [lo, n): few distinct values, so ids repeat"""
    return lambda g, s: torch.randint(lo, n, s, generator=g).to(torch.float64)


def case_take_embedding():
    """an embedding lookup with repeated (and negative) ids, and take along axis 1"""
    c = Case("take_embedding", 1001)
    E = c.param("E", (6, 4))
    tok = c.input("ids", (3, 5), ids(6, -6))
    h = c.take(E, tok, i=[0], name="h")                      # (3,5,4)
    W = c.param("W", (3, 7))
    cols = c.const("cols", (2, 2), ids(7), fixed=False)
    wc = c.take(W, cols, i=[-1], name="wc")                  # (3,2,2)
    z = c.matmul(c.tanh(h), c.reshape(wc, i=[0, 4, 1]))      # (3,5,1)
    c.set_loss(c.add(c.wsum(z), c.wsum(c.sin(h)), name="loss"))
    return c


def case_permute_heads():
    """multi-head attention's head split: reshape (0,T,H,D), permute, scores, merge"""
    c = Case("permute_heads", 1002)
    B, T, H, D = 2, 4, 3, 2
    x = c.param("x", (B, T, H * D))
    wq = c.param("wq", (H * D, H * D), fx.randn(0.5))
    q = c.matmul(x, wq)
    qh = c.permute(c.reshape(q, i=[0, T, H, D]), i=[0, 2, 1, 3], name="qh")   # (B,H,T,D)
    kh = c.permute(c.reshape(x, i=[0, T, H, D]), i=[0, -2, 1, -1], name="kh")
    s = c.softmax(c.matmul_t(qh, kh, i=[0, 1]), i=[-1], name="s")          # (B,H,T,T)
    o = c.matmul(s, kh)                                                      # (B,H,T,D)
    merged = c.reshape(c.permute(o, i=[0, 2, 1, 3]), i=[0, T, -1], name="merged")
    u = c.unsqueeze(c.sum(merged, i=[-1]), i=[1], name="u")                 # (B,1,T)
    v = c.squeeze(u, i=[-2], name="v")
    p3 = c.permute(x, i=[2, 0, 1], name="p3")                               # (H*D,B,T)
    c.set_loss(c.add(c.add(c.wsum(merged), c.wsum(v)), c.wsum(c.cos(p3)), name="loss"))
    return c


def case_pad_slice_step():
    """pad with a value, strided slices along two axes"""
    c = Case("pad_slice_step", 1003)
    a = c.param("a", (5, 8))
    p = c.pad(a, f=[-0.5], i=[1, 2, 1], name="p")              # (5,11)
    s1 = c.slice_step(p, i=[1, 1, 11, 3], name="s1")           # (5,4)
    s2 = c.slice_step(c.tanh(s1), i=[0, 0, 5, 2], name="s2")   # (3,4)
    p2 = c.pad(s2, f=[0.0], i=[-2, 0, 3], name="p2")           # (6,4)
    s3 = c.slice_step(a, i=[-1, 2, 3, 4], name="s3")           # (5,1)
    c.set_loss(c.add(c.add(c.wsum(c.sin(p2)), c.wsum(p)), c.wsum(c.exp(s3)), name="loss"))
    return c


def case_keepdims():
    """every keepdims reduction, broadcast back against its input"""
    c = Case("keepdims", 1004)
    x = c.param("x", (3, 4, 5))
    soft = c.exp(c.sub(x, c.logsumexp_keepdims(x, i=[-1])), name="soft")
    cen = c.sub(x, c.mean_keepdims(x, i=[0]), name="cen")
    span = c.sub(c.max_keepdims(x, i=[1]), c.min_keepdims(x, i=[1]), name="span")  # (3,1,5)
    tot = c.sum_keepdims(c.mul(x, x), i=[ALL], name="tot")                         # (1,1,1)
    mx = c.max_keepdims(x, i=[ALL], name="mx")
    y = c.div(c.mul(cen, span), c.add(tot, mx))
    c.set_loss(c.add(c.add(c.wsum(soft), c.wsum(y)), c.wsum(c.sum_keepdims(x, i=[-2])),
                     name="loss"))
    return c


def case_second_shape():
    """s = ||dL/dE||^2 through take, permute, pad, slice_step: double backward"""
    c = Case("second_shape", 1005)
    E = c.param("E", (5, 3))
    tok = c.const("ids", (2, 4), ids(5), fixed=False)
    h = c.take(E, tok, i=[0])                                   # (2,4,3)
    hp = c.permute(h, i=[2, 0, 1])                              # (3,2,4)
    pd = c.pad(hp, f=[0.25], i=[-1, 1, 2])                      # (3,2,7)
    ss = c.slice_step(pd, i=[2, 0, 7, 2])                       # (3,2,4)
    L = c.wsum(c.tanh(c.mul(ss, ss)), name="L")
    gE = c.grad(L, E, name="gE")
    c.set_loss(c.sum(c.mul(gE, gE), i=[ALL], name="s"))
    return c


CASES = [case_take_embedding, case_permute_heads, case_pad_slice_step, case_keepdims,
         case_second_shape]


def main():
    os.makedirs(fx.OUT_DIR, exist_ok=True)
    for f in CASES:
        c = f()
        path = c.write(fx.OUT_DIR)
        print("wrote", os.path.relpath(path), file=sys.stderr)


if __name__ == "__main__":
    main()
