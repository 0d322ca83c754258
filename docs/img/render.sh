#!/bin/sh
# Regenerates the pictures and transcripts of docs/teaching.md.
# Run from the repository root after building:  docs/img/render.sh [BUILD_DIR]
# Needs Graphviz (dot), chromium and rsvg-convert (librsvg2-bin).
set -eu
build=${1:-build}
img=docs/img
"$build/examples/teaching_pictures" "$img"
# the neuron's stepper page at step 5 (headless Chromium)
chromium --headless --disable-gpu --no-sandbox --hide-scrollbars --window-size=1400,560 \
    --screenshot="$img/neuron_stepper_step5.png" "file://$(pwd)/$img/neuron_stepper.html#step=5"
for f in neuron neuron_backward tlu mlp; do
    dot -Tpng -Gdpi=100 "$img/$f.dot" -o "$img/$f.png"
done
"$build/examples/saturation" --svg "$img/saturation.svg" > "$img/saturation.txt"
rsvg-convert "$img/saturation.svg" -o "$img/saturation.png"
"$build/cli/chainrule" grad 'tanh(x1*w1 + x2*w2 + b)' x1=2 x2=0 w1=-3 w2=1 \
    b=6.8813735870195432 --trace --check --png "$img/grad_neuron.png" > "$img/grad_neuron.txt"
