#!/usr/bin/env bash
# Build the libFuzzer targets (fuzz/fuzz_*.c) against every C file of the core
# (ext/*.c except the Cython-generated _ext.c, so new files join automatically).
# Usage: fuzz/build.sh [OUTDIR]      (default: fuzz/build; env CC, FUZZ_CFLAGS)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
out="${1:-$here/build}"
cc="${CC:-}"
if [ -z "$cc" ]; then
    for c in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
        if command -v "$c" >/dev/null 2>&1; then cc="$c"; break; fi
    done
fi
[ -n "$cc" ] || { echo "fuzz/build.sh: clang not found (apt-get install -y clang)" >&2; exit 2; }

san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cflags="-std=c11 -g -O1 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-unused-function ${FUZZ_CFLAGS:-}"
mkdir -p "$out/obj"

# the core, instrumented for coverage (fuzzer-no-link) and the sanitizers
objs=()
for src in "$root"/ext/*.c; do
    name="$(basename "$src" .c)"
    [ "$name" = "_ext" ] && continue
    obj="$out/obj/$name.o"
    "$cc" $cflags $san -fsanitize=fuzzer-no-link -I"$root/ext" -c "$src" -o "$obj"
    objs+=("$obj")
done
[ "${#objs[@]}" -gt 0 ] || { echo "fuzz/build.sh: no ext/*.c found" >&2; exit 2; }

targets=()
for src in "$here"/fuzz_*.c; do
    name="$(basename "$src" .c)"
    "$cc" $cflags $san -fsanitize=fuzzer -I"$root/ext" -I"$here" "$src" "${objs[@]}" -lpthread -lm -o "$out/$name"
    targets+=("$name")
done
echo "fuzz/build.sh: built ${targets[*]} with $("$cc" --version | sed -n 1p) from ${#objs[@]} ext/*.c files into $out"
