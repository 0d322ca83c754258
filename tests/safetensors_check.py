#!/usr/bin/python3
"""Cross-checks chainrule's safetensors files with an independent reader
and writer built on NumPy (run by tests/test_checkpoint.c).

  safetensors_check.py check FILE   FILE was written by the C test's
                                    write_known(): check every byte of it
  safetensors_check.py write FILE   write a file the way other tools do
                                    (header keys sorted, no checksum, space
                                    padding) for the C test to read

Exit status 0 on success; on failure a message on stderr and status 1.
"""
import json
import struct
import sys
import zlib

import numpy as np

CHECKSUM_KEY = "chainrule.crc32"


def known_tensors():
    """The tensors write_known() in tests/test_checkpoint.c saves."""
    return {
        "dense0.w": np.arange(12, dtype=np.float32).reshape(3, 4) * np.float32(0.5) - np.float32(1),
        "dense0.b": 1.0 / np.arange(1, 5, dtype=np.float64),
        "scalar": np.array(np.pi, dtype=np.float64),
        "empty": np.zeros((0, 5), dtype=np.float32),
        "unicode.\u540d\u524d": np.array([1e-30, -3.4e38], dtype=np.float32),
        'quote"back\\slash\nnewline': np.array([42.0], dtype=np.float32),
    }


KNOWN_METADATA = {
    "arch": "784-300-100-10 relu",
    "optimizer": '{"name":"adam","step":17}',
    "empty": "",
}

DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}


def fail(msg):
    print("safetensors_check: " + msg, file=sys.stderr)
    sys.exit(1)


def checksum(header, data):
    """The CRC-32 documented in include/chainrule/checkpoint.h."""
    crc = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        record = (name.encode() + b"\0" + t["dtype"].encode() + b"\0" +
                  ",".join(str(d) for d in t["shape"]).encode() + b"\0" +
                  ("%d,%d" % (b, e)).encode() + b"\0")
        crc = zlib.crc32(record, crc)
    for key, value in header.get("__metadata__", {}).items():
        if key != CHECKSUM_KEY:
            crc = zlib.crc32(key.encode() + b"\0" + value.encode() + b"\0", crc)
    return "%08x" % zlib.crc32(data, crc)


def check(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    if (8 + n) % 8:
        fail("data section not 8-aligned (header length %d)" % n)
    text = raw[8:8 + n].decode("utf-8")
    header = json.loads(text)  # pads are spaces, which json accepts
    data = raw[8 + n:]
    meta = header.get("__metadata__")
    if meta is None:
        fail("no __metadata__")
    want_meta = dict(KNOWN_METADATA)
    want_meta[CHECKSUM_KEY] = checksum(header, data)
    if meta != want_meta:
        fail("metadata %r != %r" % (meta, want_meta))
    want = known_tensors()
    names = [k for k in header if k != "__metadata__"]
    if names != list(want):
        fail("tensor names/order %r != %r" % (names, list(want)))
    covered = 0
    for name, expect in want.items():
        t = header[name]
        dt = DTYPES[t["dtype"]]
        if dt != expect.dtype.newbyteorder("<"):
            fail("%s: dtype %s" % (name, t["dtype"]))
        if tuple(t["shape"]) != expect.shape:
            fail("%s: shape %r != %r" % (name, t["shape"], expect.shape))
        b, e = t["data_offsets"]
        if b % dt.itemsize:
            fail("%s: offset %d not aligned to %d" % (name, b, dt.itemsize))
        got = np.frombuffer(data, dtype=dt, count=(e - b) // dt.itemsize, offset=b)
        got = got.reshape(expect.shape)
        if not np.array_equal(got, expect):
            fail("%s: values %r != %r" % (name, got, expect))
        covered += e - b
    if covered != len(data):
        fail("data section %d bytes, tensors cover %d" % (len(data), covered))
    print("ok: %d tensors, %d metadata entries" % (len(names), len(meta)))


def write(path):
    """A file as Hugging Face's safetensors lays it out: tensors sorted by
    name in the header, data ordered F64 first, no chainrule checksum."""
    tensors = {
        "b.f64": np.arange(6, dtype=np.float64).reshape(2, 3) - 2.5,
        "a.f32": np.array([1.0, -2.0, 3.5, 1e-3, 7.0], dtype=np.float32),
        "s.scalar": np.array(2.5, dtype=np.float32),
        "z.empty": np.zeros((0,), dtype=np.float64),
    }
    order = sorted(tensors, key=lambda k: (-tensors[k].dtype.itemsize, k))
    header, blobs, pos = {}, [], 0
    for name in order:
        arr = tensors[name]
        blob = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": "F64" if arr.dtype == np.float64 else "F32",
                        "shape": list(arr.shape), "data_offsets": [pos, pos + len(blob)]}
        blobs.append(blob)
        pos += len(blob)
    header = {"__metadata__": {"format": "pt"}, **dict(sorted(header.items()))}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    print("wrote %s" % path)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("check", "write"):
        fail("usage: safetensors_check.py check|write FILE")
    (check if sys.argv[1] == "check" else write)(sys.argv[2])
