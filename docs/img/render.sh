#!/bin/sh
# Regenerates the pictures and transcripts of docs/teaching.md.
# Run from the repository root after building:
#   docs/img/render.sh [BUILD_DIR]           writes them into docs/img
#   docs/img/render.sh --check [BUILD_DIR]   renders them into a temporary
#       directory and compares them with the committed ones (CI runs this):
#       DOT, SVG and text byte for byte (finite-difference residuals
#       aside), PNG too (Graphviz renders the same bytes twice); the
#       stepper's Chromium screenshot is not compared.
# Needs Graphviz (dot), which README's first command installs; the stepper
# screenshot also needs chromium (CI installs it) and is left as it is
# without it.
set -eu
check=0
if [ "${1:-}" = --check ]; then
    check=1
    shift
fi
build=${1:-build}
img=docs/img
out=$img
if [ $check = 1 ]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
"$build/examples/teaching_pictures" "$out"
for f in neuron neuron_backward tlu mlp mlp_scalar tanh_second; do
    dot -Tsvg "$out/$f.dot" -o "$out/$f.svg"
    dot -Tpng -Gdpi=100 "$out/$f.dot" -o "$out/$f.png"
done
"$build/examples/saturation" --svg "$out/saturation.svg" > "$out/saturation.txt"
"$build/cli/chainrule" grad 'tanh(x1*w1 + x2*w2 + b)' x1=2 x2=0 w1=-3 w2=1 \
    b=6.8813735870195432 --trace --check --dot "$out/grad_neuron.dot" \
    --png "$out/grad_neuron.png" > "$out/grad_neuron.txt"
if [ $check = 0 ]; then
    # the neuron's stepper page at step 5 (headless Chromium)
    if command -v chromium >/dev/null 2>&1; then
        chromium --headless --disable-gpu --no-sandbox --hide-scrollbars --window-size=1400,560 \
            --screenshot="$img/neuron_stepper_step5.png" \
            "file://$(pwd)/$img/neuron_stepper.html#step=5" 2>/dev/null
    else
        echo "render.sh: chromium not installed: $img/neuron_stepper_step5.png left as it is"
    fi
    exit 0
fi
# A finite-difference residual ("|diff| 1.1e-10") is rounding noise, which
# the C library's code path for the CPU at hand may change: the transcripts
# are compared without it.
residual() { sed -E 's/\|diff\| [-+0-9.e]+/|diff| ~/g' "$1"; }
bad=0
for f in "$out"/*; do
    name=$(basename "$f")
    case $name in
    *.txt) residual "$f" > "$out/.fresh"; residual "$img/$name" > "$out/.committed" 2>/dev/null || true
           same() { cmp -s "$out/.fresh" "$out/.committed"; } ;;
    *) same() { cmp -s "$f" "$img/$name"; } ;;
    esac
    if ! same; then
        echo "render.sh --check: $img/$name differs from a fresh render (run docs/img/render.sh)"
        bad=1
    fi
done
[ $bad = 0 ] && echo "render.sh --check: every picture and transcript matches a fresh render"
exit $bad
