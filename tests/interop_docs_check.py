#!/usr/bin/python3
"""docs/interop.md end to end: the page shows examples/pytorch_export.py,
examples/from_pytorch.c and examples/pytorch_import.py verbatim, and the
three run in a row (PyTorch -> chainrule -> PyTorch) in a temporary
directory. Usage: interop_docs_check.py SOURCE_ROOT FROM_PYTORCH_EXE
Exit 0 on success, 1 on failure, 77 (skipped) without numpy or torch."""
import os
import subprocess
import sys
import tempfile

root, exe = sys.argv[1], sys.argv[2]
doc = open(os.path.join(root, "docs", "interop.md"), encoding="utf-8").read()
for name in ("pytorch_export.py", "from_pytorch.c", "pytorch_import.py"):
    text = open(os.path.join(root, "examples", name), encoding="utf-8").read()
    if text not in doc:
        print("docs/interop.md does not show examples/%s verbatim" % name, file=sys.stderr)
        sys.exit(1)
try:
    import numpy  # noqa: F401
    import torch  # noqa: F401
except ImportError as e:
    print("skipped: %s (Debian: python3-numpy, python3-torch)" % e)
    sys.exit(77)
with tempfile.TemporaryDirectory() as tmp:
    steps = [[sys.executable, os.path.join(root, "examples", "pytorch_export.py")],
             [exe, tmp],
             [sys.executable, os.path.join(root, "examples", "pytorch_import.py")]]
    for cmd in steps:
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
        sys.stdout.write(r.stdout)
        if r.returncode != 0:
            print("%s failed (%d):\n%s" % (" ".join(cmd), r.returncode, r.stderr), file=sys.stderr)
            sys.exit(1)
print("PyTorch -> chainrule -> PyTorch: ok")
