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
# the public headers include no dependency's headers: --cflags is chainrule's
# include dir alone (no OpenBLAS, cJSON or zlib path from Requires.private)
cflags=$(pkg-config --cflags chainrule | xargs)
if [ "$cflags" != "-I$work/prefix/include" ]; then
  echo "chainrule.pc's --cflags is not only chainrule's include dir: $cflags"; exit 1
fi
# --static --libs names what libchainrule.a needs: link the consumer against
# the archive with exactly those flags, run it, and check it does not load
# the shared library
static_libs=$(pkg-config --static --libs chainrule)
for need in -lz -lcjson -lm; do
  case " $static_libs " in *" $need "*) ;; *)
    echo "pkg-config --static --libs chainrule lacks $need: $static_libs"; exit 1 ;;
  esac
done
cc -std=c11 -Wall -Werror "$repo/tests/consumer/main.c" -o "$work/consumer-static" \
  $cflags ${static_libs/-lchainrule/-l:libchainrule.a}
if ldd "$work/consumer-static" | grep -q 'libchainrule\.so'; then
  echo "the static consumer loads libchainrule.so"; exit 1
fi
"$work/consumer-static"
if [ -f "$pc/chainrule-mpi.pc" ]; then
  if pkg-config --cflags chainrule-mpi | grep -Eqi 'openblas|cjson'; then
    echo "chainrule-mpi.pc leaks a dependency's include path: $(pkg-config --cflags chainrule-mpi)"
    exit 1
  fi
  cc -std=c11 -Wall -Werror "$repo/tests/consumer/dist.c" -o "$work/consumer-mpi" \
    $(pkg-config --cflags --libs chainrule-mpi)
  LD_LIBRARY_PATH="$libdir" "$work/consumer-mpi"
  mpi_static_libs=$(pkg-config --static --libs chainrule-mpi)
  cc -std=c11 -Wall -Werror "$repo/tests/consumer/dist.c" -o "$work/consumer-mpi-static" \
    $(pkg-config --cflags chainrule-mpi) ${mpi_static_libs/-lchainrule/-l:libchainrule.a}
  "$work/consumer-mpi-static"
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
