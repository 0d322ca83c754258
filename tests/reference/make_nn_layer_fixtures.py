#!/usr/bin/python3
"""Writes the PyTorch reference fixtures of the nn layer tests (tests/test_nn_layer_ops.c).

    /usr/bin/python3 tests/reference/make_nn_layer_fixtures.py

Each fixture runs one torch.nn layer in float64 on a seeded input, with
loss = sum(y * c) for a seeded cotangent c, and stores (same line format
as make_nn_fixtures.py):

    x           the input (ids for the embedding)
    c           the cotangent
    y           the layer's output
    dx          d loss / d x (not for the embedding)
    p.NAME      every parameter under chainrule's name and layout
    g.NAME      its gradient
    ...         extras per layer (initial and last states, running statistics)

chainrule keeps PyTorch's layout and names for convolution, recurrent and
attention weights; dense weights (the feed-forward block's linear1/linear2)
are (in, out), the transpose of nn.Linear.weight.
"""
import os

import torch

from make_nn_fixtures import fmt  # the one fixture line format

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nn")


def write(name, tensors):
    with open(os.path.join(OUT, "layer_" + name + ".txt"), "w") as f:
        for key, value in tensors:
            f.write("%s %s\n" % (key, fmt(value)))


def run(name, module, x, params, extra_inputs=(), forward=None, transpose=(), extras=None):
    """params: list of (chainrule name, torch parameter)."""
    x = x.clone().requires_grad_(x.is_floating_point())
    y = forward(x) if forward else module(x)
    out = y[0] if isinstance(y, tuple) else y
    c = torch.randn(out.shape)
    loss = (out * c).sum()
    if isinstance(y, tuple) and len(y) > 1 and extras is not None:
        loss = loss + extras(y)
    loss.backward()
    rows = [("x", x), ("c", c), ("y", out)]
    if x.is_floating_point():
        rows.append(("dx", x.grad))
    for key, value in extra_inputs:
        rows.append((key, value))
    for cname, p in params:
        v, g = p.detach(), p.grad
        if cname in transpose:
            v, g = v.t(), g.t()
        rows.append(("p." + cname, v))
        rows.append(("g." + cname, g))
    return rows


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(1234)

    # layer norm over the last two axes of (3, 4, 5)
    ln = torch.nn.LayerNorm([4, 5], eps=1e-5)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(4, 5))
        ln.bias.copy_(torch.randn(4, 5))
    write("layernorm", run("layernorm", ln, torch.randn(3, 4, 5) * 2 + 1,
                           [("layernorm0.weight", ln.weight), ("layernorm0.bias", ln.bias)]))

    # batch norm of (N, C, H, W) in training mode; running statistics after one step
    bn = torch.nn.BatchNorm2d(3, eps=1e-5, momentum=0.1)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(3))
        bn.bias.copy_(torch.randn(3))
    rows = run("batchnorm2d", bn, torch.randn(4, 3, 5, 5) * 3 - 1,
               [("batchnorm0.gamma", bn.weight), ("batchnorm0.beta", bn.bias)])
    rows += [("running_mean", bn.running_mean), ("running_var", bn.running_var)]
    bn.eval()
    xe = torch.randn(2, 3, 5, 5)
    rows += [("x_eval", xe), ("y_eval", bn(xe))]
    write("batchnorm2d", rows)

    # embedding of (3, 4) ids from a (7, 5) table, ids repeated
    emb = torch.nn.Embedding(7, 5)
    ids = torch.tensor([[0, 3, 3, 6], [1, 1, 1, 2], [6, 5, 4, 0]])
    write("embedding", run("embedding", emb, ids, [("embedding0.weight", emb.weight)]))

    # conv2d: stride 2, padding 1, bias; conv1d: groups 2, dilation 2, stride 1
    conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=True)
    write("conv2d", run("conv2d", conv, torch.randn(2, 3, 7, 7),
                        [("conv2d0.weight", conv.weight), ("conv2d0.bias", conv.bias)]))
    conv1 = torch.nn.Conv1d(4, 6, 3, stride=1, padding=2, dilation=2, groups=2, bias=True)
    write("conv1d", run("conv1d", conv1, torch.randn(2, 4, 9),
                        [("conv1d0.weight", conv1.weight), ("conv1d0.bias", conv1.bias)]))

    # pooling: max 2x2 stride 2, avg 3x3 stride 2 padding 1, global average
    seq = lambda x: torch.nn.functional.adaptive_avg_pool2d(
        torch.nn.functional.avg_pool2d(torch.nn.functional.max_pool2d(x, 2, 2), 3, 2, 1), 1
    ).flatten(1)
    write("pooling", run("pooling", None, torch.randn(2, 3, 8, 8), [], forward=seq))

    # Elman RNN (tanh), time-major (T=4, B=3, I=5), hidden 6, zero initial state
    rnn = torch.nn.RNN(5, 6, nonlinearity="tanh")
    names = lambda k: [(k + "0.weight_ih", getattr(rnn_mod[k], "weight_ih_l0")),
                       (k + "0.weight_hh", getattr(rnn_mod[k], "weight_hh_l0")),
                       (k + "0.bias_ih", getattr(rnn_mod[k], "bias_ih_l0")),
                       (k + "0.bias_hh", getattr(rnn_mod[k], "bias_hh_l0"))]
    rnn_mod = {"rnn": rnn}
    hn = {}

    def rnn_fwd(x):
        y, h = rnn(x)
        hn["h"] = h[0]
        return y, h

    rows = run("rnn", rnn, torch.randn(4, 3, 5), names("rnn"), forward=rnn_fwd)
    write("rnn", rows + [("h_last", hn["h"])])

    # LSTM, batch-first (B=2, T=5, I=3), hidden 4, given initial states;
    # the loss also weighs the last cell state
    lstm = torch.nn.LSTM(3, 4, batch_first=True)
    rnn_mod["lstm"] = lstm
    h0 = torch.randn(1, 2, 4).requires_grad_()
    c0 = torch.randn(1, 2, 4).requires_grad_()
    cc = torch.randn(2, 4)
    st = {}

    def lstm_fwd(x):
        y, (h, c) = lstm(x, (h0, c0))
        st["h"], st["c"] = h[0], c[0]
        return y, c[0]

    rows = run("lstm", lstm, torch.randn(2, 5, 3), names("lstm"), forward=lstm_fwd,
               extras=lambda y: (y[1] * cc).sum())
    write("lstm", rows + [("h0", h0[0]), ("c0", c0[0]), ("cc", cc), ("h_last", st["h"]),
                          ("c_last", st["c"]), ("dh0", h0.grad[0]), ("dc0", c0.grad[0])])

    # GRU, time-major (T=3, B=2, I=4), hidden 5, zero initial state
    gru = torch.nn.GRU(4, 5)
    rnn_mod["gru"] = gru

    def gru_fwd(x):
        y, h = gru(x)
        hn["h"] = h[0]
        return y, h

    rows = run("gru", gru, torch.randn(3, 2, 4), names("gru"), forward=gru_fwd)
    write("gru", rows + [("h_last", hn["h"])])

    # multi-head self-attention, causal, (B=2, T=5, E=8), 2 heads
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        mha.in_proj_bias.copy_(torch.randn(24) * 0.1)
        mha.out_proj.bias.copy_(torch.randn(8) * 0.1)
    mask = torch.triu(torch.full((5, 5), float("-inf")), diagonal=1)
    att = lambda x: mha(x, x, x, attn_mask=mask, need_weights=False)[0]
    write("attention", run("attention", None, torch.randn(2, 5, 8), [
        ("attention0.in_proj_weight", mha.in_proj_weight),
        ("attention0.in_proj_bias", mha.in_proj_bias),
        ("attention0.out_proj.weight", mha.out_proj.weight),
        ("attention0.out_proj.bias", mha.out_proj.bias)], forward=att))

    # pre-norm transformer block (norm_first, ReLU, no dropout), causal
    blk = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0,
                                           batch_first=True, norm_first=True)
    with torch.no_grad():
        for p in (blk.norm1.weight, blk.norm2.weight):
            p.copy_(1 + 0.1 * torch.randn(8))
        for p in (blk.norm1.bias, blk.norm2.bias, blk.self_attn.in_proj_bias):
            p.copy_(0.1 * torch.randn(p.shape))
    fwd = lambda x: blk(x, src_mask=mask)
    t = "transformer0."
    write("transformer", run("transformer", None, torch.randn(2, 5, 8), [
        (t + "ln1.weight", blk.norm1.weight), (t + "ln1.bias", blk.norm1.bias),
        (t + "attn.in_proj_weight", blk.self_attn.in_proj_weight),
        (t + "attn.in_proj_bias", blk.self_attn.in_proj_bias),
        (t + "attn.out_proj.weight", blk.self_attn.out_proj.weight),
        (t + "attn.out_proj.bias", blk.self_attn.out_proj.bias),
        (t + "ln2.weight", blk.norm2.weight), (t + "ln2.bias", blk.norm2.bias),
        (t + "ff.linear1.weight", blk.linear1.weight), (t + "ff.linear1.bias", blk.linear1.bias),
        (t + "ff.linear2.weight", blk.linear2.weight), (t + "ff.linear2.bias", blk.linear2.bias)],
        forward=fwd, transpose=(t + "ff.linear1.weight", t + "ff.linear2.weight")))


if __name__ == "__main__":
    main()
