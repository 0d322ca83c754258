#!/usr/bin/python3
"""bench/torch_bench.py -- PyTorch's side of the benchmarks (bench/run).

The same workloads as bench/mlp_bench.c and bench/scalar_mlp.c, same data,
same commands and the same one-JSON-line answers:
  train B N    Fashion-MNIST MLP 784-300-100-10 (ReLU, cross-entropy, SGD lr
               0.01), one pass over the first N training images in order,
               batches of B (nn.Linear, F.cross_entropy, torch.optim.SGD).
  infer        predicted classes of the 10,000 test images (one batch, no_grad).
  matmul K     4 matmuls 1024x1024 with tanh between, sum: forward + backward.
  conv L K     one nn.Conv2d layer (bias, padding 1, 3x3), forward + backward
               of the sum of its output, K times, time per iteration: L = 1 is
               batch 32, 1 -> 32 channels on 28x28 (input without gradient);
               L = 2 is batch 32, 32 -> 64 channels on 14x14 (input gradient too).
  transformer K  bench/makemore_torch.py's Transformer (the twin of
               examples/makemore.c's: batch 32, context 16, embedding 64, 2
               nn.TransformerEncoderLayer pre-norm blocks of 4 heads, feed-forward
               256, 27 symbols; Adam lr 3e-3, clip_grad_norm_ 1): one warm-up
               step, then K training steps on random windows; time per step.
  scalar S     the micrograd workload of bench/scalar_mlp.c with 0-d tensors
               (define-by-run, as PyTorch works): S steps, time per step.
usage: /usr/bin/python3 bench/torch_bench.py [--data DIR] [--threads N] serve | CMD ARGS
Needs Debian's python3-torch (and numpy). Threads: torch.set_num_threads(N);
OpenBLAS and OpenMP threads are set by the caller's environment (bench/run).
"""
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    opener = gzip.open if not os.path.exists(path) else open
    if not os.path.exists(path):
        path += ".gz"
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


_data = {}


def data():
    if not _data:
        for split, prefix in (("train", "train"), ("test", "t10k")):
            x = read_idx(os.path.join(DATA, prefix + "-images-idx3-ubyte"))
            y = read_idx(os.path.join(DATA, prefix + "-labels-idx1-ubyte"))
            xt = torch.from_numpy(x.reshape(len(x), 784).astype(np.float32) / np.float32(255.0))
            _data[split] = (xt.contiguous(), torch.from_numpy(y.astype(np.int64)))
    return _data


def add_run_args(ap):
    """The options every whole-run script shares with `chainrule train`."""
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--data", default=DATA)


def run_split(a, val, shape=(784,)):
    """Applies --threads and --data, then splits the data as the CLI does:
    the first `val` training images for validation, the rest for training,
    the test set as is; images as (N, *shape). Returns (train, val, test)
    pairs of (images, labels)."""
    global DATA
    torch.set_num_threads(a.threads)
    DATA = a.data
    d = data()
    x, y = d["train"]
    x = x.reshape(-1, *shape)
    xt, yt = d["test"][0].reshape(-1, *shape), d["test"][1]
    return (x[val:], y[val:]), (x[:val], y[:val]), (xt, yt)


def mlp():
    torch.manual_seed(42)
    return torch.nn.Sequential(torch.nn.Linear(784, 300), torch.nn.ReLU(),
                               torch.nn.Linear(300, 100), torch.nn.ReLU(),
                               torch.nn.Linear(100, 10))


def cmd_train(batch, n):
    x, y = data()["train"]
    if n <= 0 or n > len(x):
        n = len(x)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]
    first = None
    t0 = time.perf_counter()
    for xb, yb in batches:
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        if first is None:
            first = loss.item()
    last = loss.item()
    t = time.perf_counter() - t0
    return {"time": t, "examples": n, "steps": len(batches), "first_loss": first,
            "last_loss": last}


def cmd_infer():
    x, y = data()["test"]
    model = mlp()
    with torch.no_grad():
        model(x).argmax(1)  # warm-up, as the C side
        t0 = time.perf_counter()
        pred = model(x).argmax(1)
        t = time.perf_counter() - t0
    return {"time": t, "examples": len(x),
            "accuracy_untrained": float((pred == y).float().mean())}


def cmd_matmul(iters):
    n = 1024
    g = torch.Generator().manual_seed(7)
    x = torch.rand(n, n, generator=g) * 2 - 1
    ws = [((torch.rand(n, n, generator=g) * 2 - 1) / 32).requires_grad_() for _ in range(4)]

    def step():
        for w in ws:
            w.grad = None
        h = x
        for i, w in enumerate(ws):
            h = h @ w
            if i < 3:
                h = torch.tanh(h)
        loss = h.sum()
        loss.backward()
        return loss

    step()  # warm-up, as the C side builds its backward pass once
    t0 = time.perf_counter()
    for _ in range(iters):
        loss = step()
    t = (time.perf_counter() - t0) / iters
    return {"time": t, "iters": iters, "loss": float(loss)}


def cmd_conv(layer, iters):
    cin, cout, hw = (1, 32, 28) if layer == 1 else (32, 64, 14)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(32, cin, hw, hw, generator=g) * 2 - 1
    x.requires_grad_(layer == 2)  # an intermediate of a network needs its gradient
    torch.manual_seed(5)
    conv = torch.nn.Conv2d(cin, cout, 3, padding=1)

    def step():
        conv.zero_grad(set_to_none=True)
        x.grad = None
        loss = conv(x).sum()
        loss.backward()
        return loss

    step()  # warm-up, as the C side builds its backward pass once
    t0 = time.perf_counter()
    for _ in range(iters):
        loss = step()
    t = (time.perf_counter() - t0) / iters
    return {"time": t, "iters": iters, "loss": float(loss)}


def cmd_transformer(iters):
    import makemore_torch as mm  # bench/ is this script's directory, on sys.path
    torch.manual_seed(42)
    model = mm.Transformer()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(11)
    stream = torch.randint(0, mm.VOCAB, (4096,), generator=g)
    batch, t = 32, mm.SEQ_CONTEXT

    def step():
        pos = torch.randint(0, len(stream) - t - 1, (batch,), generator=g)
        x, y = mm.examples(True, stream, pos)
        loss = mm.loss_of(model, x, y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    first = step()  # warm-up, as the C side
    t0 = time.perf_counter()
    for _ in range(iters):
        last = step()
    dt = (time.perf_counter() - t0) / max(iters, 1)
    return {"time": dt, "iters": iters, "first_loss": first, "last_loss": last,
            "params": sum(p.numel() for p in model.parameters())}


# ------------------------------------------------- scalar (micrograd) workload
NPTS, H = 100, 16


class Lcg:
    """bench/scalar_mlp.c's generator, so both sides see the same points and weights."""

    def __init__(self, seed=42):
        self.s = seed

    def uniform(self):
        self.s = (self.s * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (self.s >> 11) * 2.0 ** -53

    def normal(self):
        u, v = self.uniform(), self.uniform()
        return math.sqrt(-2 * math.log(u + 1e-300)) * math.cos(2 * math.pi * v)


def make_moons(rng):
    xs, ys = [], []
    for i in range(NPTS):
        upper = i < NPTS // 2
        t = math.pi * (i if upper else i - NPTS // 2) / (NPTS // 2 - 1)
        a = math.cos(t) if upper else 1 - math.cos(t)
        b = math.sin(t) if upper else 0.5 - math.sin(t)
        a += 0.1 * rng.normal()
        b += 0.1 * rng.normal()
        xs.append((a, b))
        ys.append(-1.0 if upper else 1.0)
    return xs, ys


def cmd_scalar(steps):
    torch.set_grad_enabled(True)
    rng = Lcg(42)
    xs, ys = make_moons(rng)

    def p(v):
        return torch.tensor(v, dtype=torch.float64, requires_grad=True)

    w1 = [[None, None] for _ in range(H)]
    b1, w2, b2 = [None] * H, [[None] * H for _ in range(H)], [None] * H
    allp = []
    for j in range(H):
        for i in range(2):
            w1[j][i] = p(2 * rng.uniform() - 1)
            allp.append(w1[j][i])
        b1[j] = p(0.0)
        allp.append(b1[j])
    for j in range(H):
        for i in range(H):
            w2[j][i] = p(2 * rng.uniform() - 1)
            allp.append(w2[j][i])
        b2[j] = p(0.0)
        allp.append(b2[j])
    w3 = []
    for i in range(H):
        w3.append(p(2 * rng.uniform() - 1))
        allp.append(w3[-1])
    b3 = p(0.0)
    allp.append(b3)
    xt = [(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
          for a, b in xs]

    def loss_fn():
        total = None
        for pt in range(NPTS):
            inp = xt[pt]
            h1 = []
            for j in range(H):
                s = b1[j]
                for i in range(2):
                    s = s + w1[j][i] * inp[i]
                h1.append(torch.relu(s))
            h2 = []
            for j in range(H):
                s = b2[j]
                for i in range(H):
                    s = s + w2[j][i] * h1[i]
                h2.append(torch.relu(s))
            score = b3
            for i in range(H):
                score = score + w3[i] * h2[i]
            margin = torch.relu(score * (-ys[pt]) + 1.0)
            total = margin if total is None else total + margin
        reg = None
        for q in allp:
            sq = q * q
            reg = sq if reg is None else reg + sq
        return total * (1.0 / NPTS) + reg * 1e-4

    times, first = [], None
    for s in range(steps):
        t0 = time.perf_counter()
        for q in allp:
            q.grad = None
        loss = loss_fn()
        loss.backward()
        with torch.no_grad():
            lr = 1.0 - 0.9 * s / steps
            for q in allp:
                q -= lr * q.grad
        times.append(time.perf_counter() - t0)
        if first is None:
            first = loss.item()
    t = sorted(times)[len(times) // 2]
    # bench/run divides by bench/scalar_mlp's forward node count (65,175)
    return {"time": t, "steps": steps, "first_loss": first, "last_loss": loss.item()}


def run(args):
    cmd = args[0]
    if cmd == "train":
        return cmd_train(int(args[1]), int(args[2]) if len(args) > 2 else 0)
    if cmd == "infer":
        return cmd_infer()
    if cmd == "matmul":
        return cmd_matmul(int(args[1]) if len(args) > 1 else 3)
    if cmd == "conv":
        return cmd_conv(int(args[1]), int(args[2]) if len(args) > 2 else 20)
    if cmd == "transformer":
        return cmd_transformer(int(args[1]) if len(args) > 1 else 50)
    if cmd == "scalar":
        return cmd_scalar(int(args[1]) if len(args) > 1 else 3)
    if cmd == "load":
        data()
        return {"time": 0}
    raise SystemExit("torch_bench: unknown command " + cmd)


def main():
    global DATA
    argv = sys.argv[1:]
    threads = 1
    while argv and argv[0].startswith("--"):
        if argv[0] == "--data":
            DATA, argv = argv[1], argv[2:]
        elif argv[0] == "--threads":
            threads, argv = int(argv[1]), argv[2:]
        else:
            raise SystemExit("torch_bench: unknown option " + argv[0])
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass
    if not argv:
        raise SystemExit(__doc__)
    if argv[0] != "serve":
        print(json.dumps(run(argv)))
        return
    for line in sys.stdin:
        args = line.split()
        if not args:
            continue
        if args[0] == "quit":
            break
        print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
