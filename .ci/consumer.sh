#!/usr/bin/env bash
# Builds tests/consumer against chainrule two ways: installed into a temporary
# prefix and found with pkg-config, and as a Meson subproject. Runs it each time.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "-- installed + pkg-config"
meson setup "$work/build" "$repo" --prefix "$work/prefix" -Dtests=disabled >/dev/null
meson install -C "$work/build" >/dev/null
pc=$(dirname "$(find "$work/prefix" -name chainrule.pc | head -n 1)")
libdir=$(dirname "$pc")
export PKG_CONFIG_PATH="$pc"
cc -std=c11 -Wall -Werror "$repo/tests/consumer/main.c" -o "$work/consumer-pc" \
  $(pkg-config --cflags --libs chainrule)
LD_LIBRARY_PATH="$libdir" "$work/consumer-pc"
# chainrule.pc carries no MPI include path; chainrule-mpi.pc (when built with
# MPI) adds it for programs that include <chainrule/dist.h>
if pkg-config --cflags chainrule | grep -qi mpi; then
  echo "chainrule.pc leaks MPI: $(pkg-config --cflags chainrule)"; exit 1
fi
if [ -f "$pc/chainrule-mpi.pc" ]; then
  cc -std=c11 -Wall -Werror "$repo/tests/consumer/dist.c" -o "$work/consumer-mpi" \
    $(pkg-config --cflags --libs chainrule-mpi)
  LD_LIBRARY_PATH="$libdir" "$work/consumer-mpi"
fi
test -x "$work/prefix/bin/chainrule"
test -f "$work/prefix/share/man/man1/chainrule.1"
test -f "$work/prefix/include/chainrule/autodiff.h"
# only the public API is exported
so=$(find "$work/prefix" -name 'libchainrule.so.*.*' | head -n 1)
leaked=$(nm -D --defined-only "$so" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -Ev '^(ad_|nn_|io_)' || true)
if [ -n "$leaked" ]; then
  echo "non-API symbols exported from $so:"; echo "$leaked"; exit 1
fi

echo "-- meson subproject"
cp -r "$repo/tests/consumer" "$work/sub"
mkdir -p "$work/sub/subprojects"
ln -s "$repo" "$work/sub/subprojects/chainrule"
PKG_CONFIG_PATH= meson setup "$work/sub/build" "$work/sub" --force-fallback-for=chainrule \
  -Dchainrule:tests=disabled >/dev/null
meson compile -C "$work/sub/build" >/dev/null
"$work/sub/build/consumer"
echo "consumer builds: ok"
