#!/usr/bin/env python3
"""Writes the small IDX and CSV fixtures of tests/test_data.c into this
directory. Deterministic (gzip mtime 0): rerun it and commit the result.
Standard library only.

Good files
  mnist_small/  MNIST layout: train-* gzipped (5 images of 2x3), t10k-* plain
                (3 images of 2x3); pixel p of image i is (i * 6 + p) * 7 % 256,
                train labels 3 1 4 1 5, test labels 9 2 6
  i32_labels.idx   1-d int32 labels 7 100000 3 (big-endian)
  f64.idx          2x2 float64 values 1.5 -2.25 3.0 1e10
  i16.idx          3 int16 values -2 300 -32768
  *.csv            see CSV_FILES below; numeric.csv.gz is numeric.csv gzipped

Malformed files
  bad_magic.idx, bad_type.idx, zero_dims.idx, too_many_dims.idx, empty.idx,
  short_magic.idx, truncated_header.idx, truncated_data.idx,
  truncated.idx.gz (gzip stream cut in the middle), corrupt.idx.gz (a
  flipped byte), extra_bytes.idx, mnist_mismatch/ (5 images, 4 labels),
  mnist_not_images/ (train images stored as 2-d), mnist_missing/ (no t10k).
"""
import gzip
import io
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def idx_bytes(type_code, dims, payload):
    return bytes([0, 0, type_code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as f:
        f.write(data)
    return buf.getvalue()


def write(name, data):
    path = os.path.join(HERE, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def images(n, rows=2, cols=3):
    return idx_bytes(0x08, [n, rows, cols], bytes((i * rows * cols + p) * 7 % 256
                                                  for i in range(n) for p in range(rows * cols)))


def labels(values):
    return idx_bytes(0x08, [len(values)], bytes(values))


TRAIN_LABELS = [3, 1, 4, 1, 5]
TEST_LABELS = [9, 2, 6]

CSV_FILES = {
    # text labels in the last column, a quoted header, CRLF line ends, blank line
    "iris_small.csv": 'sepal_length,sepal_width,"petal, length",species\r\n'
                      "5.1,3.5,1.4,setosa\r\n"
                      "7.0,3.2,4.7,versicolor\r\n"
                      "\r\n"
                      "6.3,3.3,6.0,virginica\r\n"
                      "4.9,3.0,1.4,setosa\r\n",
    # integer labels in the first column, spaces around values, no final newline
    "numeric.csv": "label,a,b\n2, 1.5 ,-3\n0,2e3,0.25\n7,-0,1\n0,4,5",
    # label in the middle, chosen by name; quoted numbers and an escaped quote
    "quoted.csv": 'x,"the ""class""",y\n"1.0",yes,2\n3,"no",4\n',
    "bad_number.csv": "a,b,label\n1,2,0\n3,4,1\n5,abc,0\n",
    "bad_fields.csv": "a,b,label\n1,2,0\n3,4\n",
    "empty_value.csv": "a,b,label\n1,,0\n",
    "nan_value.csv": "a,b,label\n1,2,0\n1,nan,1\n",
    "unterminated.csv": 'a,b,label\n1,2,0\n1,"2,0\n',
    "header_only.csv": "a,b,label\n",
    "empty.csv": "",
    "quote_garbage.csv": 'a,b,label\n1,"2"x,0\n',
}


def main():
    write("mnist_small/train-images-idx3-ubyte.gz", gz(images(5)))
    write("mnist_small/train-labels-idx1-ubyte.gz", gz(labels(TRAIN_LABELS)))
    write("mnist_small/t10k-images-idx3-ubyte", images(3))
    write("mnist_small/t10k-labels-idx1-ubyte", labels(TEST_LABELS))

    write("mnist_mismatch/train-images-idx3-ubyte", images(5))
    write("mnist_mismatch/train-labels-idx1-ubyte", labels(TRAIN_LABELS[:4]))
    write("mnist_mismatch/t10k-images-idx3-ubyte", images(3))
    write("mnist_mismatch/t10k-labels-idx1-ubyte", labels(TEST_LABELS))

    write("mnist_not_images/train-images-idx3-ubyte", idx_bytes(0x08, [5, 6], bytes(30)))
    write("mnist_not_images/train-labels-idx1-ubyte", labels(TRAIN_LABELS))

    write("mnist_missing/train-images-idx3-ubyte", images(5))
    write("mnist_missing/train-labels-idx1-ubyte", labels(TRAIN_LABELS))

    write("i32_labels.idx", idx_bytes(0x0C, [3], struct.pack(">iii", 7, 100000, 3)))
    write("f64.idx", idx_bytes(0x0E, [2, 2], struct.pack(">dddd", 1.5, -2.25, 3.0, 1e10)))
    write("i16.idx", idx_bytes(0x0B, [3], struct.pack(">hhh", -2, 300, -32768)))

    good = images(5)
    write("bad_magic.idx", b"PK\x03\x04" + good[4:])
    write("bad_type.idx", bytes([0, 0, 0x0A, 1]) + good[4:])
    write("zero_dims.idx", bytes([0, 0, 0x08, 0]))
    write("too_many_dims.idx", bytes([0, 0, 0x08, 9]) + bytes(36))
    write("empty.idx", b"")
    write("short_magic.idx", b"\x00\x00")
    write("truncated_header.idx", good[:10])
    write("truncated_data.idx", good[:16 + 20])  # header declares 30 data bytes
    write("extra_bytes.idx", good + b"\x00")
    compressed = gz(images(40, 28, 28))
    write("truncated.idx.gz", compressed[: len(compressed) // 2])
    corrupt = bytearray(gz(images(5)))
    corrupt[len(corrupt) - 6] ^= 0xFF  # inside the CRC-32 trailer
    write("corrupt.idx.gz", bytes(corrupt))

    for name, text in CSV_FILES.items():
        write(name, text.encode("utf-8"))
    write("numeric.csv.gz", gz(CSV_FILES["numeric.csv"].encode("utf-8")))


if __name__ == "__main__":
    main()
