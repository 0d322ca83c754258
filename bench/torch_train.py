#!/usr/bin/python3
"""bench/torch_train.py -- the PyTorch equivalent of `chainrule train` with its
defaults, for bench/run's whole-process row: Fashion-MNIST, pixels / 255, the
first 5,000 training images held out for validation and the other 55,000
trained on in a fresh shuffled order each epoch, 784-300-100-10 with ReLU,
softmax cross-entropy, SGD lr 0.01, batches of 32, f32; after each epoch the
validation loss and accuracy, after the last one the test accuracy.
bench/run times `--epochs 2` minus `--epochs 1`, as for chainrule, so that
start-up and loading cancel.

usage: /usr/bin/python3 bench/torch_train.py [--epochs N] [--threads N] [--data DIR]
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_bench  # noqa: E402  (the same IDX reader and data scaling)


def main():
    ap = argparse.ArgumentParser()
    torch_bench.add_run_args(ap)
    a = ap.parse_args()
    (x, y), (xv, yv), (xt, yt) = torch_bench.run_split(a, 5000)
    model = torch_bench.mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(42)
    for epoch in range(a.epochs):
        order = torch.randperm(len(x), generator=gen)
        model.train()
        for i in range(0, len(x), a.batch):
            idx = order[i:i + a.batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            out = model(xv)
            vl = F.cross_entropy(out, yv).item()
            va = (out.argmax(1) == yv).float().mean().item()
        print(f"epoch {epoch + 1}: val loss {vl:.4f} accuracy {va:.4f}")
    with torch.no_grad():
        print(f"test accuracy: {(model(xt).argmax(1) == yt).float().mean().item():.4f}")


if __name__ == "__main__":
    main()
