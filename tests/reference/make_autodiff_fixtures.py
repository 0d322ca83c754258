#!/usr/bin/python3
"""Writes the PyTorch reference fixtures for tests/test_reference.c.

Run with Debian's interpreter (python3-torch, python3-numpy):

    /usr/bin/python3 tests/reference/make_autodiff_fixtures.py

Each case is a small program in a tiny graph language, evaluated here with
PyTorch in float64 and written to tests/reference/autodiff/<case>.txt together
with its inputs, so the C test rebuilds exactly the same graph with the
chainrule API, sets exactly the same leaf values and needs no PyTorch.

Fixture format (whitespace-separated tokens, '#' starts a comment line):

    case <name>
    node <name> <op> <nin> <input names...> <nf> <floats...> <ni> <ints...>
    loss <node name>                  # ad_backward is called on this node
    set <k>                           # k = 0, 1: two sets of leaf values
    leaf  <name> <ndim> <dims...> <values...>   # value to ad_set on the leaf
    value <name> <ndim> <dims...> <values...>   # expected value of a node
    grad  <name> <ndim> <dims...> <values...>   # expected d loss/d leaf
    jacobian <y> <x> 2 <numel y> <numel x> <values...>  # ad_jacobian(y, x), row-major
    hessian  <y> <x> 2 <numel x> <numel x> <values...>  # ad_hessian(y, x), row-major
    end

Jacobians and Hessians come from torch.autograd.functional.jacobian and
hessian of the program re-run with node x replaced by the variable (x may
be a leaf or an intermediate node).

Leaves are nodes too: op param/input/const with ni = ndim and the ints the
shape, or op scalar (ad_scalar, 0-d). Node order is creation order. The op
"grad" with inputs (y, x) is ad_grad(y, x) (torch.autograd.grad with
create_graph=True), so the loss may itself depend on gradients (second order).
Floats are written with repr(), which round-trips float64 exactly.
"""
import os
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

ALL = -1000  # AD_ALL
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "autodiff")
LEAF_OPS = ("param", "input", "const", "scalar")


def _reduce(fn_axis, fn_all):
    def f(a, fp, ip):
        return fn_all(a) if ip[0] == ALL else fn_axis(a, ip[0])
    return f


def _amax_all(a):
    return torch.amax(a, dim=tuple(range(a.dim()))) if a.dim() else a.clone()


def _amin_all(a):
    return torch.amin(a, dim=tuple(range(a.dim()))) if a.dim() else a.clone()


def _mm(a, b, ta, tb):
    return torch.matmul(a.transpose(-1, -2) if ta else a, b.transpose(-1, -2) if tb else b)


def _grad(y, x):
    if not y.requires_grad:
        return torch.zeros_like(x)
    (r,) = torch.autograd.grad(y, x, create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if r is None else r


# op name -> torch function(list of input tensors, float params, int params)
TORCH = {
    "neg": lambda x, fp, ip: -x[0],
    "exp": lambda x, fp, ip: torch.exp(x[0]),
    "log": lambda x, fp, ip: torch.log(x[0]),
    "sqrt": lambda x, fp, ip: torch.sqrt(x[0]),
    "abs": lambda x, fp, ip: torch.abs(x[0]),
    "sin": lambda x, fp, ip: torch.sin(x[0]),
    "cos": lambda x, fp, ip: torch.cos(x[0]),
    "tanh": lambda x, fp, ip: torch.tanh(x[0]),
    "sigmoid": lambda x, fp, ip: torch.sigmoid(x[0]),
    "relu": lambda x, fp, ip: torch.relu(x[0]),
    "softplus": lambda x, fp, ip: F.softplus(x[0], beta=1, threshold=1e300),
    "leaky_relu": lambda x, fp, ip: F.leaky_relu(x[0], fp[0]),
    "elu": lambda x, fp, ip: F.elu(x[0], fp[0]),
    "pow": lambda x, fp, ip: torch.pow(x[0], fp[0]),
    "scale": lambda x, fp, ip: x[0] * fp[0],
    "affine": lambda x, fp, ip: x[0] * fp[0] + fp[1],
    "clamp": lambda x, fp, ip: torch.clamp(x[0], fp[0], fp[1]),
    "step": lambda x, fp, ip: (x[0] >= 0).to(x[0].dtype),
    "sign": lambda x, fp, ip: torch.sign(x[0]).detach(),
    "detach": lambda x, fp, ip: x[0].detach(),
    "add": lambda x, fp, ip: x[0] + x[1],
    "sub": lambda x, fp, ip: x[0] - x[1],
    "mul": lambda x, fp, ip: x[0] * x[1],
    "div": lambda x, fp, ip: x[0] / x[1],
    "maximum": lambda x, fp, ip: torch.maximum(x[0], x[1]),
    "minimum": lambda x, fp, ip: torch.minimum(x[0], x[1]),
    "gt": lambda x, fp, ip: (x[0] > x[1]).to(x[0].dtype),
    "eq": lambda x, fp, ip: (x[0] == x[1]).to(x[0].dtype),
    "where": lambda x, fp, ip: torch.where(x[0] != 0, x[1], x[2]),
    "sum": lambda x, fp, ip: _reduce(lambda a, d: a.sum(d), lambda a: a.sum())(x[0], fp, ip),
    "mean": lambda x, fp, ip: _reduce(lambda a, d: a.mean(d), lambda a: a.mean())(x[0], fp, ip),
    "max": lambda x, fp, ip: _reduce(lambda a, d: torch.amax(a, d), _amax_all)(x[0], fp, ip),
    "min": lambda x, fp, ip: _reduce(lambda a, d: torch.amin(a, d), _amin_all)(x[0], fp, ip),
    "logsumexp": lambda x, fp, ip: _reduce(lambda a, d: torch.logsumexp(a, d),
                                           lambda a: torch.logsumexp(a.reshape(-1), 0))(x[0], fp, ip),
    "softmax": lambda x, fp, ip: torch.softmax(x[0], ip[0]),
    "log_softmax": lambda x, fp, ip: torch.log_softmax(x[0], ip[0]),
    "layer_norm": lambda x, fp, ip: F.layer_norm(x[0], x[0].shape[-1:], eps=fp[0]),
    "matmul": lambda x, fp, ip: torch.matmul(x[0], x[1]),
    "matmul_t": lambda x, fp, ip: _mm(x[0], x[1], ip[0], ip[1]),
    "transpose": lambda x, fp, ip: x[0].transpose(-1, -2),
    "reshape": lambda x, fp, ip: x[0].reshape(tuple(ip)),
    "slice": lambda x, fp, ip: x[0].narrow(ip[0], ip[1], ip[2] - ip[1]),
    "concat": lambda x, fp, ip: torch.cat(list(x), ip[0]),
    "broadcast_to": lambda x, fp, ip: torch.broadcast_to(x[0], tuple(ip)),
    "one_hot": lambda x, fp, ip: F.one_hot(x[0].long(), ip[0]).to(torch.float64),
    "grad": lambda x, fp, ip: _grad(x[0], x[1]),
}


class Case:
    """A graph program built and evaluated (set 0) at the same time."""

    script = "make_autodiff_fixtures.py"  # named in each fixture's header

    def __init__(self, name, seed):
        self.name = name
        self.gen = torch.Generator().manual_seed(seed)
        self.prog = []     # (name, op, inputs, fparams, iparams)
        self.leaves = {}   # name -> (kind, shape, sampler or None for fixed)
        self.env = {}      # set-0 tensors
        self.fixed = {}    # const values shared by both sets
        self.loss = None
        self.dense = []    # ("jacobian" or "hessian", y, x)

    # ---- leaves
    def _leaf(self, kind, shape, sampler, name, fixed=False):
        assert name not in self.env, name
        shape = tuple(shape)
        v = sampler(self.gen, shape)
        self.leaves[name] = (kind, shape, None if fixed else sampler)
        if fixed:
            self.fixed[name] = v
        self.prog.append((name, kind, [], [], list(shape) if kind != "scalar" else []))
        self.env[name] = self._mk(kind, v)
        return name

    @staticmethod
    def _mk(kind, v):
        # every leaf is differentiable here, so "grad" nodes may take inputs and
        # constants as x (ad_grad works for any node); only "param" and "scalar"
        # leaves get "grad" lines (ad_backward accumulates into those alone)
        return v.clone().to(torch.float64).requires_grad_(True)

    def param(self, name, shape, sampler=None):
        return self._leaf("param", shape, sampler or randn(), name)

    def scalar(self, name, sampler=None):
        return self._leaf("scalar", (), sampler or randn(), name)

    def input(self, name, shape, sampler=None):
        return self._leaf("input", shape, sampler or randn(), name)

    def const(self, name, shape, sampler=None, fixed=True):
        return self._leaf("const", shape, sampler or randn(), name, fixed=fixed)

    # ---- ops
    def op(self, op, *inputs, f=(), i=(), name=None):
        name = name or "n%d" % len(self.prog)
        assert name not in self.env, name
        tins = [self.env[x] for x in inputs]
        self.env[name] = TORCH[op](tins, list(f), list(i))
        self.prog.append((name, op, list(inputs), list(f), list(i)))
        return name

    def __getattr__(self, op):
        if op in TORCH:
            return lambda *ins, f=(), i=(), name=None: self.op(op, *ins, f=f, i=i, name=name)
        raise AttributeError(op)

    def shape(self, n):
        return tuple(self.env[n].shape)

    def wsum(self, x, name=None):
        """sum(x * R) for a fixed random R of x's shape: a loss with generic gradients."""
        r = self.const((name or x) + "_R", self.shape(x))
        return self.sum(self.mul(x, r), i=[ALL], name=name)

    def set_loss(self, n):
        assert self.env[n].numel() == 1
        self.loss = n

    def jacobian(self, y, x):
        self.dense.append(("jacobian", y, x))

    def hessian(self, y, x):
        assert self.env[y].numel() == 1
        self.dense.append(("hessian", y, x))

    # ---- evaluation
    def run(self, leafvals, override=None):
        """The program on leafvals; a node named in override takes that value."""
        env = {}
        for name, op, ins, fp, ip in self.prog:
            if override and name in override:
                env[name] = override[name]
            elif op in LEAF_OPS:
                env[name] = self._mk(op, leafvals[name])
            else:
                env[name] = TORCH[op]([env[x] for x in ins], fp, ip)
        return env

    def dense_matrix(self, kind, y, x, leafvals):
        x0 = self.run(leafvals)[x].detach().clone()
        ny, nx = self.env[y].numel(), x0.numel()
        if kind == "jacobian":
            m = torch.autograd.functional.jacobian(
                lambda v: self.run(leafvals, {x: v})[y], x0)
            return m.reshape(ny, nx)
        m = torch.autograd.functional.hessian(
            lambda v: self.run(leafvals, {x: v})[y].reshape(()), x0)
        return m.reshape(nx, nx)

    def evaluate(self, leafvals):
        env = self.run(leafvals)
        params = [n for n, op, *_ in self.prog if op in ("param", "scalar")]
        loss = env[self.loss]
        if loss.requires_grad:
            gr = torch.autograd.grad(loss, [env[p] for p in params], allow_unused=True)
        else:
            gr = [None] * len(params)
        grads = {p: (torch.zeros_like(env[p]) if g is None else g) for p, g in zip(params, gr)}
        return env, grads

    def write(self, out_dir):
        assert self.loss is not None
        sets = [{n: self.env[n].detach() for n in self.leaves}]
        vals1 = {}
        for n, (kind, shape, sampler) in self.leaves.items():
            vals1[n] = self.fixed[n] if sampler is None else sampler(self.gen, shape)
        sets.append(vals1)
        lines = ["# chainrule autodiff reference fixture '%s', written by %s"
                 % (self.name, self.script),
                 "# with torch %s in float64. Do not edit: rerun the script." % torch.__version__,
                 "case %s" % self.name]
        for name, op, ins, fp, ip in self.prog:
            lines.append("node %s %s %d %s %d %s %d %s" % (
                name, op, len(ins), " ".join(ins), len(fp), " ".join(repr(float(v)) for v in fp),
                len(ip), " ".join(str(int(v)) for v in ip)))
        lines.append("loss %s" % self.loss)
        for k, leafvals in enumerate(sets):
            env, grads = self.evaluate(leafvals)
            if k == 0:  # the program evaluates the same as the eager build
                for n, t in env.items():
                    assert torch.equal(t.detach(), self.env[n].detach()), (self.name, n)
            lines.append("set %d" % k)
            for n in self.leaves:
                lines.append(tensor_line("leaf", n, leafvals[n]))
            for name, op, *_ in self.prog:
                if op not in LEAF_OPS:
                    lines.append(tensor_line("value", name, env[name]))
            for p, g in grads.items():
                lines.append(tensor_line("grad", p, g))
            for kind, y, x in self.dense:
                lines.append(kind + " " + y + tensor_line("", x, self.dense_matrix(kind, y, x,
                                                                                   leafvals)))
        lines.append("end")
        path = os.path.join(out_dir, self.name + ".txt")
        with open(path, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        return path


def tensor_line(tag, name, t):
    t = t.detach().to(torch.float64)
    vals = t.reshape(-1).tolist()
    for v in vals:
        assert v == v and abs(v) != float("inf"), (tag, name, v)
    return "%s %s %d %s %s" % (tag, name, t.dim(), " ".join(str(d) for d in t.shape),
                               " ".join(repr(float(v)) for v in vals))


# ---- samplers: f(generator, shape) -> tensor
def randn(scale=1.0, shift=0.0):
    return lambda g, s: torch.randn(s, generator=g) * scale + shift


def uniform(lo, hi):
    return lambda g, s: torch.rand(s, generator=g) * (hi - lo) + lo


def away_from_zero(lo, hi):
    """|x| in [lo, hi] with a random sign (no kinks at 0 for abs, relu, ...)."""
    def f(g, s):
        mag = torch.rand(s, generator=g) * (hi - lo) + lo
        sign = torch.where(torch.rand(s, generator=g) < 0.5, -1.0, 1.0)
        return mag * sign
    return f


def classes(k):
    return lambda g, s: torch.randint(0, k, s, generator=g).to(torch.float64)


def fixed_value(v):
    return lambda g, s: torch.full(s, float(v))


# ------------------------------------------------------------------ cases
def cross_entropy(c, logits, y, k, name=None):
    """mean over rows of -sum(one_hot(y) * log_softmax(logits)), as nn/ builds it."""
    ls = c.log_softmax(logits, i=[-1])
    oh = c.one_hot(y, i=[k])
    picked = c.sum(c.mul(oh, ls), i=[-1])
    return c.neg(c.mean(picked, i=[ALL]), name=name)


def case_mlp_ce_tanh():
    c = Case("mlp_ce_tanh", 101)
    n, d, h, k = 6, 4, 5, 3
    x = c.input("X", (n, d))
    y = c.input("y", (n,), classes(k))
    w1 = c.param("W1", (d, h), randn(0.5))
    b1 = c.param("b1", (h,), randn(0.1))
    w2 = c.param("W2", (h, k), randn(0.5))
    b2 = c.param("b2", (k,), randn(0.1))
    hid = c.tanh(c.add(c.matmul(x, w1), b1))
    logits = c.add(c.matmul(hid, w2), b2, name="logits")
    loss = cross_entropy(c, logits, y, k, name="loss")
    ref = F.cross_entropy(c.env[logits], c.env[y].long())
    assert torch.allclose(ref, c.env[loss], rtol=1e-14, atol=0), (ref, c.env[loss])
    c.set_loss(loss)
    return c


def case_mlp_ce_mixed():
    """Three layers: relu, sigmoid, bias broadcast, batch of 8, 4 classes."""
    c = Case("mlp_ce_mixed", 102)
    n, d, h1, h2, k = 8, 3, 6, 5, 4
    x = c.input("X", (n, d))
    y = c.input("y", (n,), classes(k))
    w1 = c.param("W1", (d, h1), randn(0.7))
    b1 = c.param("b1", (h1,), randn(0.2))
    w2 = c.param("W2", (h1, h2), randn(0.5))
    b2 = c.param("b2", (1, h2), randn(0.2))
    w3 = c.param("W3", (h2, k), randn(0.5))
    b3 = c.param("b3", (k,), randn(0.2))
    a1 = c.relu(c.add(c.matmul(x, w1), b1))
    a2 = c.sigmoid(c.add(c.matmul(a1, w2), b2))
    logits = c.add(c.matmul(a2, w3), b3, name="logits")
    loss = cross_entropy(c, logits, y, k, name="loss")
    ref = F.cross_entropy(c.env[logits], c.env[y].long())
    assert torch.allclose(ref, c.env[loss], rtol=1e-14, atol=0)
    c.set_loss(loss)
    return c


def case_broadcast_arith():
    """(3,1,4) * (2,1) + (4,), divisions and subtractions that broadcast."""
    c = Case("broadcast_arith", 201)
    a = c.param("a", (3, 1, 4))
    b = c.param("b", (2, 1))
    d = c.param("d", (4,))
    e = c.param("e", (3, 1, 1), uniform(0.5, 2.0))
    t = c.add(c.mul(a, b), d)                      # (3,2,4)
    u = c.div(t, c.affine(c.mul(d, d), f=[1.0, 1.0]))   # / (d^2 + 1)
    v = c.sub(u, b)
    w = c.div(e, c.affine(c.mul(v, v), f=[1.0, 0.5]))   # (3,1,1) / (3,2,4)
    z = c.add(w, c.scale(a, f=[-0.25]))
    s1 = c.sum(z, i=[1])                           # (3,4)
    s2 = c.mean(s1, i=[0])                         # (4,)
    s3 = c.sum(c.mul(z, z), i=[-1])                # (3,2)
    loss = c.add(c.wsum(s2), c.mean(s3, i=[ALL]), name="loss")
    c.set_loss(loss)
    return c


def case_broadcast_explog():
    c = Case("broadcast_explog", 202)
    a = c.param("a", (2, 3, 1), randn(0.5))
    b = c.param("b", (4,), randn(0.5))
    p = c.param("p", (1, 4), uniform(0.5, 1.5))
    t = c.exp(c.add(a, b))                         # (2,3,4)
    l1 = c.log(c.add(t, p))                        # log(e^(a+b) + p)
    l2 = c.div(c.log(p), c.add(t, c.const("one", (), fixed_value(1.0))))
    sq = c.sqrt(c.mul(t, p))
    m = c.mean(c.add(c.add(l1, l2), sq), i=[1])    # (2,4)
    s = c.sum(m, i=[0])                            # (4,)
    loss = c.add(c.wsum(s), c.mean(c.exp(c.neg(m)), i=[ALL]), name="loss")
    c.set_loss(loss)
    return c


def case_broadcast_reduce():
    """max along an axis, min, logsumexp, softmax, log_softmax after broadcasting."""
    c = Case("broadcast_reduce", 203)
    a = c.param("a", (3, 1, 5))
    b = c.param("b", (4, 1))
    cc = c.param("c", (5,))
    t = c.add(c.mul(a, b), cc)                     # (3,4,5)
    mx = c.max(t, i=[1])                           # (3,5)
    mn = c.min(t, i=[-1])                          # (3,4)
    mall = c.max(c.mul(a, cc), i=[ALL])            # ()
    lse = c.logsumexp(t, i=[2])                    # (3,4)
    lse_all = c.logsumexp(t, i=[ALL])              # ()
    sm = c.softmax(t, i=[1])                       # (3,4,5)
    lsm = c.log_softmax(t, i=[0])                  # (3,4,5)
    loss = c.add(c.add(c.wsum(mx), c.wsum(mn)), c.add(mall, lse_all))
    loss = c.add(loss, c.add(c.wsum(lse), c.wsum(sm)))
    loss = c.add(loss, c.wsum(lsm), name="loss")
    c.set_loss(loss)
    return c


def case_softmax_chain():
    """softmax -> log -> mean; logsumexp - max; softmax of a broadcast sum."""
    c = Case("softmax_chain", 204)
    x = c.param("x", (2, 6))
    bias = c.param("bias", (6,))
    t = c.add(x, bias)
    sm = c.softmax(t, i=[-1])
    lg = c.log(sm)                                 # == log_softmax
    lsm = c.log_softmax(t, i=[1])
    diff = c.sub(lg, lsm)                          # ~0, still differentiable
    gap = c.sub(c.logsumexp(t, i=[1]), c.max(t, i=[1]))
    loss = c.add(c.wsum(lg), c.add(c.wsum(gap), c.wsum(diff)))
    loss = c.add(loss, c.mean(c.mul(sm, sm), i=[ALL]), name="loss")
    c.set_loss(loss)
    return c


def case_fanout():
    """a + a, a node with three users, x*x*x, a shared weight used twice."""
    c = Case("fanout", 301)
    a = c.param("a", (2, 3))
    x = c.param("x", (3,))
    w = c.param("W", (3, 3), randn(0.5))
    aa = c.add(a, a)
    cube = c.mul(c.mul(x, x), x)
    h = c.tanh(c.matmul(a, w))                     # W used once ...
    o = c.matmul(h, w)                             # ... and twice
    u = c.mul(aa, cube)
    v = c.sub(c.add(u, o), c.mul(a, a))
    q = c.concat(a, a, aa, i=[0])                  # one node three times in concat
    loss = c.add(c.wsum(v), c.wsum(q))
    loss = c.add(loss, c.sum(c.mul(x, x), i=[ALL]), name="loss")
    c.set_loss(loss)
    return c


def case_micrograd_scalars():
    """micrograd's test_more_ops with 0-d scalars (ad_scalar leaves)."""
    c = Case("micrograd_scalars", 302)
    a = c.scalar("a", fixed_value(-4.0))
    b = c.scalar("b", fixed_value(2.0))
    one = c.const("one", (), fixed_value(1.0))
    ten = c.const("ten", (), fixed_value(10.0))
    cc = c.add(a, b)
    d = c.add(c.mul(a, b), c.pow(b, f=[3.0]))
    cc = c.add(c.add(cc, cc), one)
    cc = c.add(c.add(c.add(cc, one), cc), c.neg(a))
    d = c.add(c.add(d, c.scale(d, f=[2.0])), c.relu(c.add(b, a)))
    d = c.add(c.add(d, c.scale(d, f=[3.0])), c.relu(c.sub(b, a)))
    e = c.sub(cc, d)
    f = c.pow(e, f=[2.0])
    g = c.scale(f, f=[0.5])
    g = c.add(g, c.div(ten, f), name="g")
    c.set_loss(g)
    return c


def case_micrograd_scalars_random():
    """The same scalar chain with random a, b (set 1 differs from set 0)."""
    c = Case("micrograd_scalars_random", 303)
    a = c.scalar("a", away_from_zero(0.5, 3.0))
    b = c.scalar("b", away_from_zero(0.5, 3.0))
    cc = c.add(a, b)
    d = c.add(c.mul(a, b), c.pow(b, f=[3.0]))
    d = c.add(d, c.relu(c.sub(b, a)))
    e = c.tanh(c.div(c.sub(cc, d), c.affine(c.mul(a, a), f=[1.0, 2.0])))
    g = c.add(c.mul(e, e), c.sigmoid(c.mul(e, cc)), name="g")
    c.set_loss(g)
    return c


def case_second_tanh():
    """d/dx, d2/dx2, d3/dx3 of tanh(x) by nested ad_grad; backward gives d4."""
    c = Case("second_tanh", 401)
    x = c.scalar("x", uniform(-1.5, 1.5))
    y = c.tanh(x, name="y")
    g1 = c.grad(y, x, name="d1")
    g2 = c.grad(g1, x, name="d2")
    g3 = c.grad(g2, x, name="d3")
    c.set_loss(g3)
    return c


def case_second_scalars():
    """Mixed partials: f = x^2 y + sin(x y) + exp(y)/x."""
    c = Case("second_scalars", 402)
    x = c.scalar("x", uniform(0.5, 2.0))
    y = c.scalar("y", uniform(-1.0, 1.0))
    xy = c.mul(x, y)
    f = c.add(c.add(c.mul(c.mul(x, x), y), c.sin(xy)), c.div(c.exp(y), x), name="f")
    fx = c.grad(f, x, name="fx")
    fy = c.grad(f, y, name="fy")
    fxy = c.grad(fx, y, name="fxy")
    fyx = c.grad(fy, x, name="fyx")
    fxx = c.grad(fx, x, name="fxx")
    loss = c.add(c.add(c.mul(fxy, fyx), c.cos(fxx)), c.mul(fx, fy), name="loss")
    c.set_loss(loss)
    return c


def case_second_tensor():
    """grad of a tensor function (elementwise second derivative) and grad w.r.t. an
    intermediate node."""
    c = Case("second_tensor", 403)
    x = c.param("x", (2, 3))
    w = c.param("w", (3,), randn(0.5))
    h = c.mul(c.tanh(x), w, name="h")
    s = c.sum(c.softplus(h), i=[ALL], name="s")
    gx = c.grad(s, x, name="gx")                   # (2,3)
    gh = c.grad(s, h, name="gh")                   # sigmoid(h), w.r.t. an intermediate
    t = c.add(c.wsum(gx), c.wsum(gh))
    loss = c.add(t, c.mean(c.mul(gx, gx), i=[ALL]), name="loss")
    c.set_loss(loss)
    return c


def _small_mlp(c, act):
    n, d, h, k = 5, 3, 4, 3
    x = c.input("X", (n, d))
    y = c.input("y", (n,), classes(k))
    w1 = c.param("W1", (d, h), randn(0.6))
    b1 = c.param("b1", (h,), randn(0.2))
    w2 = c.param("W2", (h, k), randn(0.6))
    b2 = c.param("b2", (k,), randn(0.2))
    hid = c.op(act, c.add(c.matmul(x, w1), b1))
    logits = c.add(c.matmul(hid, w2), b2)
    loss = cross_entropy(c, logits, y, k, name="L")
    return loss, (w1, b1, w2, b2)


def case_hvp_w1():
    """H v for the first-layer weight: g = grad(L, W1); s = sum(g * v); backward(s)."""
    c = Case("hvp_w1", 501)
    loss, (w1, b1, w2, b2) = _small_mlp(c, "tanh")
    g = c.grad(loss, w1, name="gW1")
    v = c.const("v", c.shape(w1))
    s = c.sum(c.mul(g, v), i=[ALL], name="s")
    c.set_loss(s)
    # cross-check the program against an explicit torch HVP (create_graph)
    env = c.env
    (gg,) = torch.autograd.grad(env[loss], env[w1], create_graph=True)
    (hv,) = torch.autograd.grad((gg * env[v]).sum(), env[w1], retain_graph=True)
    (hv2,) = torch.autograd.grad(env[s], env[w1], retain_graph=True)
    assert torch.allclose(hv, hv2, rtol=1e-13, atol=1e-15)
    return c


def case_hvp_full():
    """H v for every parameter of a softplus MLP at once."""
    c = Case("hvp_full", 502)
    loss, params = _small_mlp(c, "softplus")
    s = None
    for p in params:
        g = c.grad(loss, p, name="g" + p)
        v = c.const("v" + p, c.shape(p))
        term = c.sum(c.mul(g, v), i=[ALL])
        s = term if s is None else c.add(s, term)
    c.op("add", s, c.const("zero", (), fixed_value(0.0)), name="s")
    c.set_loss("s")
    return c


def case_hvp_sigmoid_mse():
    """HVP of a sigmoid MLP with a mean squared error, W1 and W2 directions."""
    c = Case("hvp_sigmoid_mse", 503)
    x = c.input("X", (4, 3))
    tgt = c.input("T", (4, 2))
    w1 = c.param("W1", (3, 5), randn(0.7))
    w2 = c.param("W2", (5, 2), randn(0.7))
    out = c.matmul(c.sigmoid(c.matmul(x, w1)), w2)
    err = c.sub(out, tgt)
    loss = c.mean(c.mul(err, err), i=[ALL], name="L")
    g1 = c.grad(loss, w1, name="gW1")
    g2 = c.grad(loss, w2, name="gW2")
    s = c.add(c.wsum(g1), c.wsum(g2), name="s")
    c.set_loss(s)
    return c


def case_matmul_t():
    """matmul with each transpose flag, transpose, chained products."""
    c = Case("matmul_t", 601)
    a = c.param("A", (3, 4))
    b = c.param("B", (5, 4))
    d = c.param("D", (3, 2))
    e = c.param("E", (2, 5))
    ab = c.matmul_t(a, b, i=[0, 1])                # A B^T     (3,5)
    ad = c.matmul_t(a, d, i=[1, 0])                # A^T D     (4,2)
    de = c.matmul_t(e, d, i=[1, 1])                # E^T D^T   (5,3)
    abt = c.matmul(c.transpose(ab), c.tanh(d))     # (5,2)
    chain = c.matmul(c.matmul(de, ab), b)          # (5,3)(3,5)(5,4) = (5,4)
    loss = c.add(c.add(c.wsum(ab), c.wsum(ad)), c.add(c.wsum(de), c.wsum(abt)))
    loss = c.add(loss, c.wsum(chain), name="loss")
    c.set_loss(loss)
    return c


def case_matmul_batched():
    """Batched matmul with broadcast leading axes, with and without transposes."""
    c = Case("matmul_batched", 602)
    p = c.param("P", (2, 1, 3, 4))
    q = c.param("Q", (3, 4, 2))
    r = c.param("R", (4, 3))
    s = c.param("S", (2, 3, 5, 4))
    pq = c.matmul(p, q)                            # (2,3,3,2)
    pr = c.matmul(p, r)                            # (2,1,3,3)
    qs = c.matmul_t(q, s, i=[1, 1])                # Q^T (3,2,4) x S^T (2,3,4,5) -> (2,3,2,5)
    ps = c.matmul_t(pq, pq, i=[1, 0])              # pq^T pq: (2,3,2,3) x (2,3,3,2) -> (2,3,2,2)
    tq = c.transpose(q)                            # (3,2,4)
    y = c.matmul(c.transpose(pr), c.sigmoid(p))    # (2,1,3,3)(2,1,3,4) -> (2,1,3,4)
    loss = c.add(c.add(c.wsum(pq), c.wsum(pr)), c.add(c.wsum(qs), c.wsum(ps)))
    loss = c.add(loss, c.add(c.wsum(tq), c.wsum(y)), name="loss")
    c.set_loss(loss)
    return c


def case_layer_norm():
    """layer_norm over the last axis (F.layer_norm without weight and bias),
    its gradient, and the gradient of a loss that holds that gradient (second
    order, through layer_norm_grad's own rule)."""
    c = Case("layer_norm", 603)
    x = c.param("x", (2, 3, 5), randn(1.5, 0.3))
    w = c.param("w", (5,), randn(0.8))
    y = c.layer_norm(x, f=[1e-5], name="y")
    y2 = c.layer_norm(c.mul(x, w), f=[0.25], name="y2")   # a large eps, and x scaled per column
    s = c.add(c.wsum(c.tanh(c.mul(y, w))), c.wsum(y2), name="s")
    gx = c.grad(s, x, name="gx")                   # layer_norm_grad
    loss = c.add(s, c.sum(c.mul(gx, gx), i=[ALL]), name="loss")
    c.set_loss(loss)
    return c


def case_softmax_second():
    """softmax along the last, a middle and the first axis, the gradient
    of a loss of them, and the gradient of a loss that holds that gradient
    (softmax's rule is softmax_grad; second order goes through its rule)."""
    c = Case("softmax_second", 604)
    x = c.param("x", (2, 3, 4), randn(1.2))
    w = c.param("w", (4,), randn(0.7))
    a = c.softmax(c.mul(x, w), i=[-1], name="a")
    b = c.softmax(x, i=[1], name="b")
    e = c.softmax(c.tanh(x), i=[0], name="e")
    s = c.add(c.add(c.wsum(a), c.wsum(c.mul(b, b))), c.wsum(e), name="s")
    gx = c.grad(s, x, name="gx")
    loss = c.add(s, c.sum(c.mul(gx, gx), i=[ALL]), name="loss")
    c.set_loss(loss)
    return c


def case_shape_chain():
    """slice, concat, reshape, transpose, broadcast_to through smooth ops."""
    c = Case("shape_chain", 701)
    a = c.param("a", (4, 6))
    b = c.param("b", (2, 6))
    s1 = c.slice(a, i=[0, 1, 3])                   # (2,6)
    s2 = c.slice(a, i=[1, 2, 5])                   # (4,3)
    s3 = c.slice(a, i=[-1, 0, 2])                  # (4,2)
    cat = c.concat(s1, b, c.tanh(s1), i=[0])       # (6,6)
    cat2 = c.concat(s2, s3, c.sin(s2), i=[-1])     # (4,8)
    r = c.reshape(cat, i=[3, 2, 6])
    rt = c.transpose(r)                            # (3,6,2)
    r2 = c.reshape(cat2, i=[2, -1])                # (2,16)
    bt = c.broadcast_to(b, i=[3, 2, 6])
    m = c.mul(c.transpose(rt), bt)                 # (3,2,6)
    loss = c.add(c.wsum(m), c.wsum(r2))
    loss = c.add(loss, c.wsum(c.cos(rt)), name="loss")
    c.set_loss(loss)
    return c


def case_elementwise_chain():
    """where/maximum/minimum/clamp/pow/leaky_relu/elu/softplus/abs/sqrt chains."""
    c = Case("elementwise_chain", 702)
    a = c.param("a", (3, 4), away_from_zero(0.1, 2.0))
    b = c.param("b", (4,), away_from_zero(0.1, 2.0))
    p = c.param("p", (3, 1), uniform(0.5, 2.0))
    cond = c.gt(a, b)                              # no gradient
    w = c.where(cond, c.mul(a, b), c.sub(a, p))
    mx = c.maximum(a, c.scale(b, f=[0.7]))
    mn = c.minimum(c.tanh(a), p)
    cl = c.clamp(c.mul(a, p), f=[-1.0, 1.2])
    pw = c.pow(p, f=[2.5])                         # non-integer power of a positive base
    pw2 = c.pow(a, f=[3.0])
    pw3 = c.pow(c.abs(a), f=[-0.5])
    lr = c.leaky_relu(c.add(a, b), f=[0.1])
    el = c.elu(c.sub(a, b), f=[1.3])
    sp = c.softplus(c.mul(a, p))
    ab = c.abs(c.mul(a, b))
    sq = c.sqrt(c.add(ab, p))
    sg = c.mul(c.sign(a), c.step(b))               # zero-gradient factors
    dt = c.detach(c.mul(a, a))
    loss = c.add(c.wsum(w), c.wsum(mx))
    for t in (mn, cl, pw, pw2, pw3, lr, el, sp, ab, sq):
        loss = c.add(loss, c.wsum(t))
    loss = c.add(loss, c.wsum(c.mul(sg, a)))
    loss = c.add(loss, c.wsum(c.mul(dt, b)), name="loss")
    c.set_loss(loss)
    return c


def case_where_input_cond():
    """where with a 0/1 data condition that broadcasts, and eq."""
    c = Case("where_input_cond", 703)
    m = c.input("mask", (3, 1), lambda g, s: (torch.rand(s, generator=g) < 0.5).to(torch.float64))
    a = c.param("a", (3, 4))
    b = c.param("b", (4,))
    w = c.where(m, c.exp(a), c.cos(b))
    e = c.eq(m, c.const("one", (), fixed_value(1.0)))
    z = c.add(c.mul(e, a), w)
    loss = c.add(c.wsum(z), c.wsum(c.where(m, b, a)), name="loss")
    c.set_loss(loss)
    return c


def case_ties_and_kinks():
    """Inputs on a grid of halves: zeros and ties everywhere. PyTorch's conventions
    at the kinks: relu'(0) = 0, |x|'(0) = 0, leaky_relu'(0) = alpha, elu'(0) = alpha,
    clamp passes gradient at its bounds, maximum/minimum split ties in half,
    amax/amin share the gradient equally among tied maxima."""
    c = Case("ties_and_kinks", 704)
    grid = lambda g, s: torch.randint(-2, 3, s, generator=g).to(torch.float64) * 0.5
    a = c.param("a", (4, 5), grid)
    b = c.param("b", (5,), grid)
    outs = [
        c.relu(a), c.abs(a), c.leaky_relu(a, f=[0.2]), c.elu(a, f=[1.1]),
        c.clamp(a, f=[-0.5, 0.5]), c.maximum(a, b), c.minimum(a, b),
        c.max(a, i=[1]), c.min(a, i=[0]), c.max(a, i=[ALL]), c.min(b, i=[ALL]),
        c.mul(c.sign(a), c.step(b)), c.pow(a, f=[3.0]),
    ]
    loss = c.wsum(outs[0])
    for t in outs[1:]:
        loss = c.add(loss, c.wsum(t))
    c.op("add", loss, c.const("zero", (), fixed_value(0.0)), name="loss")
    c.set_loss("loss")
    return c


def case_grad_inputs():
    """Gradients with respect to an input, a constant and intermediates of a
    3-4-2 tanh MLP, and a loss that trains through the input gradient (a
    gradient penalty: second order through the input)."""
    c = Case("grad_inputs", 801)
    x = c.input("X", (5, 3))
    w1 = c.param("W1", (3, 4), randn(0.7))
    b1 = c.param("b1", (4,), randn(0.2))
    w2 = c.param("W2", (4, 2), randn(0.7))
    k = c.const("k", (2,), randn(0.3))
    z1 = c.add(c.matmul(x, w1), b1, name="Z1")
    h = c.tanh(z1, name="H")
    o = c.add(c.matmul(h, w2), k, name="O")
    l0 = c.add(c.wsum(o), c.mean(c.mul(o, o), i=[ALL]), name="L0")
    gx = c.grad(l0, x, name="gX")                  # input
    gh = c.grad(l0, h, name="gH")                  # intermediate
    gz = c.grad(l0, z1, name="gZ1")                # intermediate before the activation
    gk = c.grad(l0, k, name="gk")                  # constant
    pen = c.mean(c.mul(gx, gx), i=[ALL], name="penalty")
    loss = c.add(c.add(l0, pen), c.add(c.wsum(gh), c.wsum(gz)))
    loss = c.add(loss, c.wsum(gk), name="loss")
    c.set_loss(loss)
    return c


def case_grad_saliency():
    """Saliency of a softmax classifier: d log p_class / d image, with the
    log-probabilities' gradient w.r.t. the logits, a fan-out intermediate and
    the input gradient's own input gradient (second order w.r.t. the input)."""
    c = Case("grad_saliency", 802)
    img = c.input("img", (2, 6))
    w = c.param("W", (6, 3), randn(0.5))
    tgt = c.input("t", (2,), classes(3))
    logits = c.matmul(img, w, name="logits")
    s = c.sin(logits, name="s")                    # used three times
    feat = c.add(c.mul(s, s), s)
    ls = c.log_softmax(c.add(logits, feat), i=[-1], name="ls")
    picked = c.sum(c.mul(c.one_hot(tgt, i=[3]), ls), i=[ALL], name="logp")
    sal = c.grad(picked, img, name="saliency")
    glog = c.grad(picked, logits, name="glogits")
    gs = c.grad(picked, s, name="gs")
    sal2 = c.grad(c.sum(c.mul(sal, sal), i=[ALL]), img, name="saliency2")
    loss = c.add(c.add(c.wsum(sal), c.wsum(glog)), c.add(c.wsum(gs), c.wsum(sal2)), name="loss")
    c.set_loss(loss)
    return c


def case_mlp_jacobian():
    """A 3-4-2 tanh MLP on two rows: Jacobians of its output with respect to
    the input, the first weight and the hidden layer; Hessians of a squared
    error with respect to the first weight matrix, the input and a bias."""
    c = Case("mlp_jacobian", 901)
    x = c.input("X", (2, 3))
    t = c.input("T", (2, 2))
    w1 = c.param("W1", (3, 4), randn(0.7))
    b1 = c.param("b1", (4,), randn(0.2))
    w2 = c.param("W2", (4, 2), randn(0.7))
    b2 = c.param("b2", (2,), randn(0.2))
    h = c.tanh(c.add(c.matmul(x, w1), b1), name="H")
    o = c.add(c.matmul(h, w2), b2, name="O")
    e = c.sub(o, t)
    loss = c.mean(c.mul(e, e), i=[ALL], name="L")
    c.set_loss(loss)
    c.jacobian(o, x)
    c.jacobian(o, w1)
    c.jacobian(o, h)
    c.hessian(loss, w1)
    c.hessian(loss, x)
    c.hessian(loss, b1)
    return c


def case_mlp_hessian():
    """Cross-entropy of a softplus-sigmoid MLP: Hessians with respect to each
    weight matrix and the logits (the softmax Hessian), the Jacobian of the
    log-probabilities with respect to the logits and of a gradient node."""
    c = Case("mlp_hessian", 902)
    n, d, h, k = 3, 2, 3, 3
    x = c.input("X", (n, d))
    y = c.input("y", (n,), classes(k))
    w1 = c.param("W1", (d, h), randn(0.8))
    w2 = c.param("W2", (h, k), randn(0.8))
    a = c.sigmoid(c.softplus(c.matmul(x, w1)), name="A")
    logits = c.matmul(a, w2, name="logits")
    loss = cross_entropy(c, logits, y, k, name="L")
    gw2 = c.grad(loss, w2, name="gW2")
    c.set_loss(loss)
    c.hessian(loss, w1)
    c.hessian(loss, w2)
    c.hessian(loss, logits)
    c.jacobian(c.log_softmax(logits, i=[-1], name="ls"), logits)
    c.jacobian(gw2, w1)
    return c


def case_jacobian_wide():
    """A wide output of a narrow input (ad_jacobian works by columns there,
    forward mode) and of a wide weight (by rows)."""
    c = Case("jacobian_wide", 903)
    x = c.input("x", (2, 1))
    w = c.param("W", (12, 2), randn(0.8))
    z = c.matmul(w, x, name="z")
    y = c.mul(c.sigmoid(z), c.tanh(z), name="y")   # (12,1)
    loss = c.sum(c.mul(y, y), i=[ALL], name="L")
    c.set_loss(loss)
    c.jacobian(y, x)
    c.jacobian(y, w)
    c.hessian(loss, x)
    return c


CASES = [
    case_grad_inputs, case_grad_saliency, case_mlp_jacobian, case_mlp_hessian, case_jacobian_wide,
    case_mlp_ce_tanh, case_mlp_ce_mixed,
    case_broadcast_arith, case_broadcast_explog, case_broadcast_reduce, case_softmax_chain,
    case_fanout, case_micrograd_scalars, case_micrograd_scalars_random,
    case_second_tanh, case_second_scalars, case_second_tensor,
    case_hvp_w1, case_hvp_full, case_hvp_sigmoid_mse,
    case_matmul_t, case_matmul_batched, case_layer_norm, case_softmax_second,
    case_shape_chain, case_elementwise_chain, case_where_input_cond, case_ties_and_kinks,
]


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for f in CASES:
        c = f()
        path = c.write(OUT_DIR)
        print("wrote", os.path.relpath(path), file=sys.stderr)


if __name__ == "__main__":
    main()
