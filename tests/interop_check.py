#!/usr/bin/python3
"""NumPy and PyTorch side of tests/test_io.c (chainrule/io.h).

  interop_check.py numpy_write DIR     NumPy writes .npy/.npz files for chainrule to read
  interop_check.py numpy_check DIR     NumPy reads and checks what chainrule wrote
  interop_check.py torch_export DIR DT a torch MLP -> DIR/torch.npz, DIR/torch.safetensors,
                                       inputs DIR/x.npy and torch's outputs DIR/y.npy
  interop_check.py torch_import DIR DT a chainrule model (DIR/chainrule.npz and
                                       .safetensors) -> torch; torch's outputs on
                                       DIR/x.npy must equal DIR/y_chainrule.npy
DT is f32 or f64. Exit status 0 on success, 1 with a message on stderr on a
failed check, 77 when numpy or torch cannot be imported.
"""
import json
import struct
import sys

try:
    import numpy as np
except ImportError as e:  # pragma: no cover
    print("numpy not available: %s" % e, file=sys.stderr)
    sys.exit(77)


def fail(msg):
    print("interop_check: " + msg, file=sys.stderr)
    sys.exit(1)


# --------------------------------------------------------------- the arrays

def known_arrays():
    """What numpy_write saves and numpy_check expects (tests/test_io.c knows them too)."""
    return {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4) * np.float32(0.25) - np.float32(1),
        "f64": 1.0 / np.arange(1, 7, dtype=np.float64).reshape(2, 3),
        "i32": np.array([-2147483648, -1, 0, 7, 2147483647], dtype=np.int32),
        "i64": np.array([[-(2 ** 40)], [2 ** 40 + 1]], dtype=np.int64),
        "u8": np.array([0, 1, 128, 255], dtype=np.uint8),
        "scalar": np.array(np.pi),
        "empty": np.zeros((0, 5), dtype=np.float32),
        "cube": np.arange(24, dtype=np.float64).reshape(2, 3, 4) - 11.5,
    }


def numpy_write(d):
    arrays = known_arrays()
    for name, a in arrays.items():
        np.save("%s/%s.npy" % (d, name), a)
    # the other header versions
    for version in ((2, 0), (3, 0)):
        with open("%s/v%d.npy" % (d, version[0]), "wb") as f:
            np.lib.format.write_array(f, arrays["f64"], version=version)
    np.savez("%s/plain.npz" % d, **arrays)
    np.savez_compressed("%s/compressed.npz" % d, **arrays)
    # what chainrule refuses, written by NumPy itself
    np.save("%s/bigendian.npy" % d, arrays["f32"].astype(">f4"))
    np.save("%s/fortran.npy" % d, np.asfortranarray(arrays["f64"]))
    np.save("%s/object.npy" % d, np.array([1, "a", None], dtype=object), allow_pickle=True)
    np.save("%s/complex.npy" % d, np.array([1 + 2j]))
    np.save("%s/structured.npy" % d, np.zeros(2, dtype=[("x", "<f4"), ("y", "<i4")]))


def chainrule_arrays():
    """What tests/test_io.c's write_known() saves (both dtypes)."""
    out = {}
    for dt, name in ((np.float32, "f32"), (np.float64, "f64")):
        out["w_" + name] = (np.arange(6, dtype=np.float64).reshape(2, 3) / 3.0 - 0.5).astype(dt)
        out["b_" + name] = np.array([1e-30, -3.5, 1e30], dtype=dt)
        out["s_" + name] = np.array(2.5, dtype=dt)
        out["e_" + name] = np.zeros((4, 0), dtype=dt)
    out["i32"] = np.array([-5, 0, 5], dtype=np.int32)
    out["i64"] = np.array([-(2 ** 50), 2 ** 50], dtype=np.int64)
    out["u8"] = np.array([[0, 255]], dtype=np.uint8)
    return out


def same(name, got, want):
    if got.dtype != want.dtype or got.shape != want.shape:
        fail("%s: %s %s, expected %s %s" % (name, got.dtype, got.shape, want.dtype, want.shape))
    if not np.array_equal(got, want):
        fail("%s: values differ:\n%s\nexpected\n%s" % (name, got, want))
    if not got.flags["C_CONTIGUOUS"]:
        fail("%s: not C-contiguous" % name)


def numpy_check(d):
    want = chainrule_arrays()
    for name, a in want.items():
        same(name + ".npy", np.load("%s/%s.npy" % (d, name)), a)
    with np.load("%s/all.npz" % d) as z:
        if sorted(z.files) != sorted(want):
            fail("all.npz holds %s, expected %s" % (sorted(z.files), sorted(want)))
        for name, a in want.items():
            same("all.npz[%s]" % name, z[name], a)
    # Python's zipfile checks the CRC-32 of every member
    import zipfile
    with zipfile.ZipFile("%s/all.npz" % d) as zf:
        bad = zf.testzip()
        if bad is not None:
            fail("all.npz: member %s is corrupt" % bad)
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                fail("all.npz: %s is compressed" % info.filename)


# ----------------------------------------------------- safetensors in numpy

ST_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}


def safetensors_save(path, tensors):
    """A minimal safetensors writer (the safetensors package is not needed)."""
    header, chunks, offset = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        code = {np.dtype("float32"): "F32", np.dtype("float64"): "F64"}[a.dtype]
        raw = a.astype(ST_DTYPES[code]).tobytes()
        header[name] = {"dtype": code, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)


def safetensors_load(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(blob[8 + n + b:8 + n + e],
                                  dtype=ST_DTYPES[t["dtype"]]).reshape(t["shape"])
    return out


# ------------------------------------------------------------------ PyTorch

def import_torch():
    try:
        import torch
    except ImportError as e:
        print("torch not available: %s" % e, file=sys.stderr)
        sys.exit(77)
    return torch


def make_mlp(torch, dtype):
    """The network of the tests: 4 -> 8 (batch norm, ReLU) -> 6 (tanh) -> 3."""
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
        torch.nn.Linear(8, 6), torch.nn.Tanh(),
        torch.nn.Linear(6, 3)).to(dtype)


# chainrule's tensor for each entry of the Sequential's state_dict; 2-D
# weights are transposed ((out, in) in torch, (in, out) in chainrule)
TORCH_TO_CHAINRULE = {
    "0.weight": "dense0.weight", "0.bias": "dense0.bias",
    "1.weight": "batchnorm0.gamma", "1.bias": "batchnorm0.beta",
    "1.running_mean": "batchnorm0.running_mean", "1.running_var": "batchnorm0.running_var",
    "3.weight": "dense1.weight", "3.bias": "dense1.bias",
    "5.weight": "dense2.weight", "5.bias": "dense2.bias",
}


def inputs(dtype):
    return (np.linspace(-2, 2, 40).reshape(10, 4) ** 3 / 3).astype(dtype)


def torch_export(d, dt):
    torch = import_torch()
    tdt = torch.float32 if dt == "f32" else torch.float64
    npdt = np.float32 if dt == "f32" else np.float64
    torch.manual_seed(1234)
    model = make_mlp(torch, tdt)
    # a few training-mode passes so the running statistics are not trivial
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        x = torch.randn(16, 4, dtype=tdt) * 2 + 0.5
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    tensors = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        a = value.detach().cpu().numpy()
        tensors[TORCH_TO_CHAINRULE[key]] = a.T.copy() if a.ndim == 2 else a
    np.savez("%s/torch.npz" % d, **tensors)
    safetensors_save("%s/torch.safetensors" % d, tensors)
    x = inputs(npdt)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    np.save("%s/x.npy" % d, x)
    np.save("%s/y.npy" % d, y)


def torch_import(d, dt):
    torch = import_torch()
    tdt = torch.float32 if dt == "f32" else torch.float64
    tol = 1e-6 if dt == "f32" else 1e-12
    x = np.load("%s/x.npy" % d)
    want = np.load("%s/y_chainrule.npy" % d)
    back = {v: k for k, v in TORCH_TO_CHAINRULE.items()}
    for source in ("npz", "safetensors"):
        path = "%s/chainrule.%s" % (d, source)
        if source == "npz":
            with np.load(path) as z:
                tensors = {k: z[k] for k in z.files}
        else:
            tensors = safetensors_load(path)
        model = make_mlp(torch, tdt)
        state = {}
        for name, a in tensors.items():
            state[back[name]] = torch.from_numpy(np.ascontiguousarray(a.T if a.ndim == 2 else a))
        state["1.num_batches_tracked"] = torch.tensor(0)
        model.load_state_dict(state, strict=True)
        model.eval()
        with torch.no_grad():
            got = model(torch.from_numpy(x).to(tdt)).numpy()
        err = np.max(np.abs(got - want))
        if got.shape != want.shape or not err <= tol:
            fail("%s: torch's outputs differ from chainrule's by %g (tolerance %g)\n%s\n%s" %
                 (path, err, tol, got, want))


def main(argv):
    if len(argv) < 3:
        fail(__doc__)
    cmd, d = argv[1], argv[2]
    if cmd == "numpy_write":
        numpy_write(d)
    elif cmd == "numpy_check":
        numpy_check(d)
    elif cmd == "torch_export":
        torch_export(d, argv[3])
    elif cmd == "torch_import":
        torch_import(d, argv[3])
    else:
        fail("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
