#!/usr/bin/python3
"""bench/cnn_torch.py -- the PyTorch twin of `chainrule train --model cnn`.

The same CNN as the CLI's preset (conv2d(32,3,pad=1), relu, maxpool2d(2),
conv2d(64,3,pad=1), relu, maxpool2d(2), flatten, dense(128), relu,
dropout(0.25), dense(10)) with PyTorch's default initialization, on the same
Fashion-MNIST IDX files (/usr/share/datasets/fashion-mnist), read by the same
reader as bench/torch_bench.py: pixels / 255 as (N, 1, 28, 28), the first
--val (5,000) training images held out for validation and the rest trained on
in a fresh shuffled order each epoch, softmax cross-entropy, the CLI's
optimizers (PyTorch's update rules: sgd, momentum, nesterov, adam, adamw,
rmsprop, adagrad) and its per-epoch schedules (constant, cosine with T_max =
epochs, exponential). One thread by default. Prints a line per epoch (train
loss, validation accuracy, seconds of the training pass, of the training
pass and the validation together (what chainrule's epoch line measures), and
the process CPU seconds of the training pass), the test accuracy and the
time per epoch (best and mean of the training passes, evaluation excluded;
then the best with validation and the best CPU time).

usage: /usr/bin/python3 bench/cnn_torch.py [--optimizer adam] [--lr 0.001]
       [--batch 32] [--epochs 1] [--schedule constant] [--gamma 0.9]
       [--momentum X] [--weight-decay X] [--val 5000] [--subset N] [--seed 42]
       [--threads 1] [--data DIR]
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_bench  # noqa: E402  (the same IDX reader and pixel scaling)


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(128, 10))


def optimizer(name, params, a):
    # the CLI's defaults: lr 0.01 (adam, adamw 0.001), momentum 0.9 for
    # momentum/nesterov, weight decay 0.01 for adamw
    lr = a.lr if a.lr is not None else (0.001 if name in ("adam", "adamw") else 0.01)
    wd = a.weight_decay if a.weight_decay is not None else (0.01 if name == "adamw" else 0.0)
    mom = a.momentum
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=mom or 0.0, weight_decay=wd), lr
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=0.9 if mom is None else mom,
                               nesterov=name == "nesterov", weight_decay=wd), lr
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd), lr
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd), lr
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=mom or 0.0, weight_decay=wd), lr
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd), lr
    raise SystemExit(f"unknown optimizer {name}")


def lr_at(schedule, lr, gamma, epoch, epochs):
    if schedule == "cosine":
        return lr * (1 + math.cos(math.pi * epoch / epochs)) / 2
    if schedule == "exponential":
        return lr * gamma ** epoch
    return lr


@torch.no_grad()
def accuracy(model, x, y, batch=1000):
    model.eval()
    right, loss = 0, 0.0
    for i in range(0, len(x), batch):
        out = model(x[i:i + batch])
        loss += F.cross_entropy(out, y[i:i + batch], reduction="sum").item()
        right += (out.argmax(1) == y[i:i + batch]).sum().item()
    model.train()
    return right / max(len(x), 1), loss / max(len(x), 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--optimizer", default="sgd")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--momentum", type=float, default=None)
    ap.add_argument("--weight-decay", type=float, default=None)
    ap.add_argument("--schedule", default="constant",
                    choices=["constant", "cosine", "exponential"])
    ap.add_argument("--gamma", type=float, default=0.9)
    ap.add_argument("--val", type=int, default=5000)
    ap.add_argument("--subset", type=int, default=0)
    ap.add_argument("--seed", type=int, default=42)
    torch_bench.add_run_args(ap)
    a = ap.parse_args()
    (x, y), (xv, yv), (xt, yt) = torch_bench.run_split(a, a.val, (1, 28, 28))
    if a.subset > 0:
        x, y = x[:a.subset], y[:a.subset]
    torch.manual_seed(a.seed)
    model = cnn()
    opt, lr = optimizer(a.optimizer, model.parameters(), a)
    gen = torch.Generator().manual_seed(a.seed)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          f"{len(x)} train, {len(xv)} validation, {len(xt)} test images; "
          f"{a.optimizer} lr {lr} batch {a.batch} schedule {a.schedule}, {a.epochs} epoch(s)")
    times, with_val, cpu = [], [], []
    for epoch in range(a.epochs):
        for g in opt.param_groups:
            g["lr"] = lr_at(a.schedule, lr, a.gamma, epoch, a.epochs)
        order = torch.randperm(len(x), generator=gen)
        model.train()
        total, seen = 0.0, 0
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(x), a.batch):
            idx = order[i:i + a.batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        va, vl = accuracy(model, xv, yv) if len(xv) else (float("nan"), float("nan"))
        with_val.append(time.perf_counter() - t0)
        print(f"epoch {epoch + 1}: train loss {total / seen:.4f}, val loss {vl:.4f} "
              f"accuracy {va:.4f}, {times[-1]:.1f} s ({with_val[-1]:.1f} s with validation; "
              f"training pass CPU {cpu[-1]:.1f} s)")
    ta, _ = accuracy(model, xt, yt)
    print(f"test accuracy: {ta:.4f}")
    print(f"time per epoch: {min(times):.2f} s best, {sum(times) / len(times):.2f} s mean "
          f"(training pass only); {min(with_val):.2f} s best with validation; "
          f"training pass CPU {min(cpu):.2f} s best")
    return 0


if __name__ == "__main__":
    sys.exit(main())
