#!/usr/bin/env bash
# mpirun -np N chainrule train == chainrule train: the same options give the
# same weights (f64: max |diff| / max |w| <= 1e-12), and the run prints once.
# Usage: dist_cli.sh MPIRUN CHAINRULE NP. Skipped (77) without Fashion-MNIST.
set -euo pipefail
mpirun=$1 cli=$2 np=$3
data=/usr/share/datasets/fashion-mnist
[ -e "$data/train-images-idx3-ubyte.gz" ] || [ -e "$data/train-images-idx3-ubyte" ] || exit 77
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
opts=(--subset 1001 --val 500 --epochs 2 --batch 32 --dtype f64 --threads 1 --hidden 64,32)
"$cli" train "${opts[@]}" --save "$work/one.safetensors" --quiet >/dev/null
"$mpirun" --oversubscribe --allow-run-as-root -np "$np" "$cli" train "${opts[@]}" \
  --save "$work/many.safetensors" >"$work/out.txt"
lines=$(grep -c '^epoch 2/2' "$work/out.txt")
[ "$lines" = 1 ] || { echo "expected one 'epoch 2/2' line, got $lines"; cat "$work/out.txt"; exit 1; }
grep -q "^data-parallel: $np processes" "$work/out.txt"
python3 - "$work/one.safetensors" "$work/many.safetensors" <<'PY'
import array, json, struct, sys
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    d = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k != '__metadata__' and v['dtype'] == 'F64':
            s, e = v['data_offsets']
            out[k] = array.array('d', d[s:e])
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys() and a, (a.keys(), b.keys())
diff = max(abs(x - y) for k in a for x, y in zip(a[k], b[k]))
big = max(abs(x) for k in a for x in a[k])
print(f"max |w_mpi - w_single| = {diff:.3g}, relative {diff / big:.3g}")
sys.exit(0 if diff <= 1e-12 * big else 1)
PY
