#!/usr/bin/python3
"""Loads a `chainrule train --save` checkpoint in PyTorch and checks that its
predictions equal `chainrule predict`'s (run by tests/test_cli_train.c).

  torch_predict_check.py CHAINRULE MODEL IMAGES

CHAINRULE is the built binary, MODEL a checkpoint, IMAGES an IDX file of
images (plain or gzip). The safetensors bytes are parsed with NumPy only (no
safetensors package): an 8-byte little-endian header length, the JSON
header, the raw little-endian tensors. The model is rebuilt from the
architecture in the metadata (chainrule.architecture: the input shape and the
layers, each named <kind><k> like dense0 or conv2d1) with torch.nn.functional;
chainrule stores dense weights as (in, out) for y = x W + b, convolution
weights as PyTorch does, (out, in / groups, kh, kw).

An image where the two largest logits are within 1e-5 (relative) may go
either way under different summation orders; such near-ties are reported
and tolerated, every other prediction must be equal.

Exit status 0 when they agree, 1 on a mismatch, 77 when torch or numpy is
missing (the C test then skips).
"""
import gzip
import json
import struct
import subprocess
import sys

try:
    import numpy as np
    import torch
except ImportError as e:  # Debian: python3-torch, python3-numpy
    print(f"skipped: {e}", file=sys.stderr)
    sys.exit(77)

DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, t in header.items():
        begin, end = t["data_offsets"]
        arr = np.frombuffer(body[begin:end], dtype=DTYPES[t["dtype"]])
        tensors[name] = arr.reshape(t["shape"]).astype(np.float64)
    return tensors, meta


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 0x08, "expected unsigned-byte IDX images"
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data[4 + 4 * ndim:], dtype=np.uint8)
    return arr.reshape(dims[0], -1)


ACTIVATIONS = {
    "relu": torch.nn.ReLU,
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
    "elu": torch.nn.ELU,
    "selu": torch.nn.SELU,
    "leaky_relu": lambda: torch.nn.LeakyReLU(0.01),
    "softplus": torch.nn.Softplus,
    "identity": torch.nn.Identity,
}


def build_model(tensors, meta):
    """A function of a batch of flat rows computing the stored model's logits."""
    arch = json.loads(meta["chainrule.architecture"])
    F = torch.nn.functional

    def t(name):
        return torch.from_numpy(tensors[name])

    def forward(x):
        x = x.reshape([-1] + arch["input"][1:])
        seen = {}
        for layer in arch["layers"]:
            kind = layer["kind"]
            name = f"{kind}{seen.get(kind, 0)}"
            seen[kind] = seen.get(kind, 0) + 1
            if kind == "dense":
                x = x @ t(name + ".weight")
                if layer["bias"]:
                    x = x + t(name + ".bias")
            elif kind == "activation":
                x = ACTIVATIONS[layer["act"]]()(x)
            elif kind == "conv2d":
                x = F.conv2d(x, t(name + ".weight"),
                             t(name + ".bias") if layer["bias"] else None,
                             stride=layer["stride"], padding=layer["padding"],
                             dilation=layer["dilation"], groups=max(1, layer["groups"]))
            elif kind in ("maxpool2d", "avgpool2d"):
                pool = F.max_pool2d if kind == "maxpool2d" else F.avg_pool2d
                stride = layer["stride"] if layer["stride"][0] else layer["kernel"]
                x = pool(x, layer["kernel"], stride, layer["padding"])
            elif kind == "flatten":
                x = x.flatten(1)
            elif kind == "dropout":
                pass  # evaluation mode
            else:
                raise SystemExit(f"layer kind {kind} is not rebuilt by this check")
        return x

    return forward


def main():
    chainrule, model_path, images_path = sys.argv[1:4]
    tensors, meta = read_safetensors(model_path)
    model = build_model(tensors, meta)
    scale = float(meta["chainrule.input_scale"])
    # the same f32 pixels chainrule computes with (x / 255 rounded to float)
    x = (read_idx(images_path).astype(np.float32) / np.float32(scale)).astype(np.float64)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    torch_pred = logits.argmax(axis=1)

    out = subprocess.run([chainrule, "predict", model_path, images_path], check=True,
                         capture_output=True, text=True).stdout.splitlines()
    if len(out) != len(torch_pred):
        print(f"chainrule predicted {len(out)} images, torch {len(torch_pred)}", file=sys.stderr)
        return 1
    names = meta["chainrule.class_names"].split(",")
    mismatches, near_ties = [], 0
    for i, line in enumerate(out):
        index, cls, name = line.split(" ", 2)
        cls = int(cls)
        if int(index) != i or names[cls] != name:
            print(f"bad line {i}: {line!r}", file=sys.stderr)
            return 1
        if cls != torch_pred[i]:
            top = np.sort(logits[i])[-2:]
            if abs(top[1] - top[0]) <= 1e-5 * max(1.0, abs(top[1])):
                near_ties += 1
            else:
                mismatches.append((i, cls, int(torch_pred[i])))
    if mismatches:
        print(f"{len(mismatches)} predictions differ (index, chainrule, torch): {mismatches[:10]}",
              file=sys.stderr)
        return 1
    print(f"{len(out)} predictions equal torch's ({near_ties} near-ties), "
          f"checkpoint read with numpy, model rebuilt in torch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
