#!/usr/bin/python3
"""Writes the PyTorch reference fixtures of convolution and pooling for
tests/test_reference.c, in the format of make_autodiff_fixtures.py (whose
Case class and op table this script extends):

    /usr/bin/python3 tests/reference/make_conv_fixtures.py

Ops and their integer parameters (ad_conv_opts / ad_pool_opts order):
    conv1d     x w  ints: stride padding dilation groups
    conv2d     x w  ints: stride_h stride_w pad_h pad_w dil_h dil_w groups
    conv1d_bias, conv2d_bias, conv1d_bias_relu, conv2d_bias_relu
               x w b  ints as conv1d / conv2d: the convolution with its bias
               (relu of it), PyTorch's conv with bias=b
    conv2d_bias_relu_pool
               x w b  ints as conv2d: max_pool2d(relu(conv2d(x, w, b)), 2)
    max_pool1d x    ints: kernel stride padding        (avg_pool1d the same)
    max_pool2d x    ints: kh kw sh sw ph pw            (avg_pool2d the same)
Values of the pooling inputs are drawn from a few levels, so windows hold
ties (PyTorch and chainrule both send the gradient to the first maximum).
The second-order cases train on s = ||dL/dx||^2 through ad_grad, so their
gradients are d s/d w (PyTorch's double backward through conv2d and
max_pool2d).
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_autodiff_fixtures as fx  # noqa: E402

ALL = fx.ALL


def _conv1d(x, fp, ip):
    return F.conv1d(x[0], x[1], stride=ip[0], padding=ip[1], dilation=ip[2], groups=ip[3])


def _conv2d(x, fp, ip):
    return F.conv2d(x[0], x[1], stride=ip[0:2], padding=ip[2:4], dilation=ip[4:6], groups=ip[6])


def _conv1d_bias(x, fp, ip):
    return F.conv1d(x[0], x[1], x[2], stride=ip[0], padding=ip[1], dilation=ip[2], groups=ip[3])


def _conv2d_bias(x, fp, ip):
    return F.conv2d(x[0], x[1], x[2], stride=ip[0:2], padding=ip[2:4], dilation=ip[4:6],
                    groups=ip[6])


fx.TORCH.update({
    "conv1d": _conv1d,
    "conv2d": _conv2d,
    "conv1d_bias": _conv1d_bias,
    "conv2d_bias": _conv2d_bias,
    "conv1d_bias_relu": lambda x, fp, ip: F.relu(_conv1d_bias(x, fp, ip)),
    "conv2d_bias_relu": lambda x, fp, ip: F.relu(_conv2d_bias(x, fp, ip)),
    "conv2d_bias_relu_pool": lambda x, fp, ip: F.max_pool2d(F.relu(_conv2d_bias(x, fp, ip)), 2),
    "max_pool1d": lambda x, fp, ip: F.max_pool1d(x[0], ip[0], ip[1], ip[2]),
    "max_pool2d": lambda x, fp, ip: F.max_pool2d(x[0], ip[0:2], ip[2:4], ip[4:6]),
    "avg_pool1d": lambda x, fp, ip: F.avg_pool1d(x[0], ip[0], ip[1], ip[2]),
    "avg_pool2d": lambda x, fp, ip: F.avg_pool2d(x[0], ip[0:2], ip[2:4], ip[4:6]),
})


class Case(fx.Case):
    script = "make_conv_fixtures.py"


def levels(scale=0.5, k=3):
    """values in {-k, ..., k} * scale: many ties inside pooling windows"""
    return lambda g, s: torch.randint(-k, k + 1, s, generator=g).to(torch.float64) * scale


def grad_norm_loss(c, x, y):
    """the second-order cases' loss: s = ||dL/dx||^2 with L = sum(R tanh(y))"""
    L = c.wsum(c.tanh(y), name="L")
    gx = c.grad(L, x, name="gx")
    c.set_loss(c.sum(c.mul(gx, gx), i=[ALL], name="s"))
    return c


def case_conv2d_default():
    c = Case("conv2d_default", 901)
    x = c.input("x", (2, 3, 6, 5))
    w = c.param("w", (4, 3, 3, 3), fx.randn(0.4))
    b = c.param("b", (4, 1, 1), fx.randn(0.1))
    y = c.add(c.conv2d(x, w, i=[1, 1, 0, 0, 1, 1, 1]), b, name="y")
    c.set_loss(c.wsum(c.tanh(y), name="loss"))
    return c


def case_conv2d_options():
    """stride, padding and dilation differing per axis, groups 2"""
    c = Case("conv2d_options", 902)
    x = c.param("x", (2, 4, 9, 8))
    w = c.param("w", (6, 2, 3, 2), fx.randn(0.4))
    y = c.conv2d(x, w, i=[2, 1, 1, 2, 1, 2, 2], name="y")
    c.set_loss(c.wsum(c.tanh(y), name="loss"))
    return c


def case_conv2d_depthwise():
    """groups = channels, stride 2, padding 1, then a pointwise 1x1 convolution"""
    c = Case("conv2d_depthwise", 903)
    x = c.param("x", (2, 4, 7, 7))
    dw = c.param("dw", (4, 1, 3, 3), fx.randn(0.4))
    pw = c.param("pw", (5, 4, 1, 1), fx.randn(0.4))
    h = c.conv2d(x, dw, i=[2, 2, 1, 1, 1, 1, 4], name="h")
    y = c.conv2d(c.sin(h), pw, i=[1, 1, 0, 0, 1, 1, 1], name="y")
    c.set_loss(c.wsum(y, name="loss"))
    return c


def case_conv1d():
    c = Case("conv1d", 904)
    x = c.param("x", (3, 4, 11))
    w = c.param("w", (6, 2, 3), fx.randn(0.4))
    w2 = c.param("w2", (2, 6, 2), fx.randn(0.4))
    h = c.conv1d(x, w, i=[2, 1, 2, 2], name="h")
    y = c.conv1d(c.tanh(h), w2, i=[1, 0, 1, 1], name="y")
    c.set_loss(c.wsum(y, name="loss"))
    return c


def case_max_pool2d():
    """overlapping (stride < kernel) padded windows with ties"""
    c = Case("max_pool2d", 905)
    x = c.param("x", (2, 3, 7, 6), levels())
    y = c.max_pool2d(x, i=[3, 2, 2, 1, 1, 1], name="y")
    z = c.max_pool2d(x, i=[2, 2, 2, 2, 0, 0], name="z")  # stride = kernel
    c.set_loss(c.add(c.wsum(y), c.wsum(z), name="loss"))
    return c


def case_max_pool1d():
    c = Case("max_pool1d", 906)
    x = c.param("x", (2, 3, 10), levels())
    y = c.max_pool1d(x, i=[3, 1, 1], name="y")
    z = c.max_pool1d(x, i=[4, 3, 2], name="z")
    c.set_loss(c.add(c.wsum(y), c.wsum(z), name="loss"))
    return c


def case_avg_pool():
    """avg_pool2d and avg_pool1d with padded windows (zeros counted)"""
    c = Case("avg_pool", 907)
    x = c.param("x", (2, 3, 7, 6))
    y = c.avg_pool2d(x, i=[3, 2, 2, 1, 1, 1], name="y")
    v = c.param("v", (2, 3, 10))
    z = c.avg_pool1d(v, i=[4, 3, 2], name="z")
    c.set_loss(c.add(c.wsum(c.tanh(y)), c.wsum(c.tanh(z)), name="loss"))
    return c


def case_cnn():
    """conv -> relu -> max pool -> conv (groups) -> avg pool -> linear -> cross-entropy"""
    c = Case("cnn", 908)
    x = c.input("x", (4, 2, 8, 8))
    y = c.input("y", (4,), fx.classes(3))
    w1 = c.param("w1", (4, 2, 3, 3), fx.randn(0.4))
    b1 = c.param("b1", (4, 1, 1), fx.randn(0.1))
    w2 = c.param("w2", (6, 2, 3, 3), fx.randn(0.3))
    wl = c.param("wl", (24, 3), fx.randn(0.3))
    h = c.relu(c.add(c.conv2d(x, w1, i=[1, 1, 1, 1, 1, 1, 1]), b1), name="h1")
    h = c.max_pool2d(h, i=[2, 2, 2, 2, 0, 0], name="p1")
    h = c.tanh(c.conv2d(h, w2, i=[1, 1, 1, 1, 1, 1, 2]), name="h2")
    h = c.avg_pool2d(h, i=[2, 2, 2, 2, 0, 0], name="p2")
    logits = c.matmul(c.reshape(h, i=[4, 24]), wl, name="logits")
    c.set_loss(fx.cross_entropy(c, logits, y, 3, name="loss"))
    return c


def case_second_conv2d():
    """s = ||dL/dx||^2, L = sum(R tanh(conv2d(x, w))): ds/dw and ds/dx"""
    c = Case("second_conv2d", 909)
    x = c.param("x", (2, 4, 7, 6))
    w = c.param("w", (4, 2, 3, 2), fx.randn(0.5))
    y = c.conv2d(x, w, i=[2, 1, 1, 1, 1, 2, 2], name="y")
    return grad_norm_loss(c, x, y)


def case_second_max_pool2d():
    """s = ||dL/dx||^2, L = sum(R tanh(max_pool2d(conv2d(x, w)))): ds/dw and ds/dx"""
    c = Case("second_max_pool2d", 910)
    x = c.param("x", (2, 2, 7, 7))
    w = c.param("w", (3, 2, 2, 2), fx.randn(0.5))
    h = c.conv2d(x, w, i=[1, 1, 1, 1, 1, 1, 1], name="h")
    y = c.max_pool2d(h, i=[3, 3, 2, 2, 1, 1], name="y")
    return grad_norm_loss(c, x, y)


def case_conv_bias():
    """the convolutions with their bias in one node, with and without the ReLU"""
    c = Case("conv_bias", 911)
    x = c.input("x", (2, 4, 6, 5))
    w = c.param("w", (6, 2, 3, 3), fx.randn(0.5))
    b = c.param("b", (6,), fx.randn(0.5))
    h = c.conv2d_bias_relu(x, w, b, i=[1, 2, 1, 1, 1, 1, 2], name="h")
    k = c.conv2d_bias(c.tanh(h), c.param("w2", (3, 6, 1, 2)), c.param("b2", (3,)),
                      i=[1, 1, 0, 1, 1, 2, 1], name="k")
    v = c.param("v", (2, 3, 9))
    w1 = c.param("w1", (4, 3, 3), fx.randn(0.5))
    b1 = c.param("b1", (4,), fx.randn(0.5))
    z = c.conv1d_bias(v, w1, b1, i=[2, 1, 1, 1], name="z")
    u = c.conv1d_bias_relu(z, c.param("w3", (2, 2, 2), fx.randn(0.5)), c.param("b3", (2,)),
                           i=[1, 0, 2, 2], name="u")
    c.set_loss(c.add(c.wsum(c.tanh(k)), c.wsum(c.tanh(u)), name="loss"))
    return c


def case_second_conv_bias():
    """s = ||dL/dx||^2, L = sum(R tanh(relu(conv2d(x, w) + b))): ds/dw, ds/db, ds/dx"""
    c = Case("second_conv_bias", 912)
    x = c.param("x", (2, 4, 6, 5))
    w = c.param("w", (4, 2, 3, 2), fx.randn(0.5))
    b = c.param("b", (4,), fx.randn(0.5))
    y = c.conv2d_bias_relu(x, w, b, i=[2, 1, 1, 1, 1, 2, 2], name="y")
    return grad_norm_loss(c, x, y)


def case_winograd():
    """stride-1 3x3 convolutions of 8 or more channels (chainrule's Winograd
    products): bias + relu with padding 1, then padding (2, 0) without bias"""
    c = Case("winograd", 913)
    x = c.param("x", (2, 8, 5, 4))
    w1 = c.param("w1", (8, 8, 3, 3), fx.randn(0.3))
    b1 = c.param("b1", (8,), fx.randn(0.3))
    h = c.conv2d_bias_relu(x, w1, b1, i=[1, 1, 1, 1, 1, 1, 1], name="h")
    w2 = c.param("w2", (9, 8, 3, 3), fx.randn(0.3))
    y = c.conv2d(h, w2, i=[1, 1, 2, 0, 1, 1, 1], name="y")
    c.set_loss(c.wsum(c.tanh(y), name="loss"))
    return c


def case_second_winograd():
    """s = ||dL/dx||^2 through the Winograd products: ds/dw and ds/dx"""
    c = Case("second_winograd", 914)
    x = c.param("x", (1, 8, 4, 5))
    w = c.param("w", (8, 8, 3, 3), fx.randn(0.3))
    y = c.conv2d(x, w, i=[1, 1, 1, 1, 1, 1, 1], name="y")
    return grad_norm_loss(c, x, y)


def case_conv_bias_relu_pool():
    """conv + bias + relu + 2x2 max pool in one node: im2col (stride 2 along
    the height, odd output width) and Winograd (8 channels), then the
    second order through it"""
    c = Case("conv_bias_relu_pool", 915)
    x = c.param("x", (2, 3, 9, 7))
    w = c.param("w", (8, 3, 3, 3), fx.randn(0.5))
    b = c.param("b", (8,), fx.randn(0.3))
    h = c.conv2d_bias_relu_pool(x, w, b, i=[2, 1, 1, 1, 1, 1, 1], name="h")
    w2 = c.param("w2", (8, 8, 3, 3), fx.randn(0.3))
    b2 = c.param("b2", (8,), fx.randn(0.3))
    y = c.conv2d_bias_relu_pool(c.tanh(h), w2, b2, i=[1, 1, 1, 1, 1, 1, 1], name="y")
    c.set_loss(c.wsum(c.tanh(y), name="loss"))
    return c


def case_second_conv_bias_relu_pool():
    """s = ||dL/dx||^2 through conv + bias + relu + max pool: ds/dw, ds/db, ds/dx"""
    c = Case("second_conv_bias_relu_pool", 916)
    x = c.param("x", (2, 8, 5, 6))
    w = c.param("w", (8, 8, 3, 3), fx.randn(0.3))
    b = c.param("b", (8,), fx.randn(0.3))
    y = c.conv2d_bias_relu_pool(x, w, b, i=[1, 1, 1, 1, 1, 1, 1], name="y")
    return grad_norm_loss(c, x, y)


CASES = [
    case_conv2d_default, case_conv2d_options, case_conv2d_depthwise, case_conv1d,
    case_max_pool2d, case_max_pool1d, case_avg_pool, case_cnn,
    case_second_conv2d, case_second_max_pool2d, case_conv_bias, case_second_conv_bias,
    case_winograd, case_second_winograd, case_conv_bias_relu_pool,
    case_second_conv_bias_relu_pool,
]


def main():
    os.makedirs(fx.OUT_DIR, exist_ok=True)
    for f in CASES:
        c = f()
        path = c.write(fx.OUT_DIR)
        print("wrote", os.path.relpath(path), file=sys.stderr)


if __name__ == "__main__":
    main()
