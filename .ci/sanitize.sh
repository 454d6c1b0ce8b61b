#!/usr/bin/env bash
# CI step: build the extension with AddressSanitizer + UndefinedBehaviorSanitizer
# (PYHUNT_SANITIZE=1, see setup.py) in a temporary copy of the checkout -- the
# normal in-place build is left alone -- and run the whole test suite under it.
# Every process (pytest and the `python -m pyhunt` subprocesses the tests start)
# loads the sanitizer runtimes through LD_PRELOAD and writes any report to a log
# directory; the step fails if a report was written, whatever the tests said
# (a CLI test that expects exit status 1 would otherwise hide a report).
#
#   .ci/sanitize.sh [PYTEST ARGS...]     (default: the whole suite, -x)
# env: SANITIZE_KEEP=1 keeps the copy (path printed); PYHUNT_SHARED as for the tests.
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONUNBUFFERED=1
step() { printf '\n=== [sanitize %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
t0=$(date +%s)

work="$(mktemp -d "${TMPDIR:-/tmp}/pyhunt-sanitize.XXXXXX")"
cleanup() { if [ "${SANITIZE_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
copy="$work/repo"
logs="$work/reports"
mkdir -p "$copy" "$logs"

step "copy the checkout to $copy (tracked and untracked files, no build products)"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$src" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
        [ -e "$f" ] && printf '%s\0' "$f"; done | tar --null -T - -cf -) | tar -xf - -C "$copy"
else
    cp -a "$src/." "$copy/"
    find "$copy" \( -name '*.so' -o -name build -o -name '__pycache__' \) -prune -exec rm -rf {} +
fi
# the tests find ../shared relative to the checkout: point them at the original's
if [ -z "${PYHUNT_SHARED:-}" ] && [ -d "$src/../shared" ]; then
    export PYHUNT_SHARED="$(cd "$src/../shared" && pwd)"
fi
echo "shared: ${PYHUNT_SHARED:-absent (tests that need it skip)}"

step "build with PYHUNT_SANITIZE=1"
asan="$(gcc -print-file-name=libasan.so)"
ubsan="$(gcc -print-file-name=libubsan.so)"
for lib in "$asan" "$ubsan"; do
    [ -e "$lib" ] || { echo "sanitize: $lib not found (install gcc's libasan/libubsan)" >&2; exit 2; }
done
(cd "$copy" && PYHUNT_SANITIZE=1 python3 setup.py build_ext --inplace -q --force) >"$work/build.log" 2>&1 ||
    { cat "$work/build.log"; echo "sanitize: build failed" >&2; exit 1; }
so="$(ls "$copy"/pyhunt/_ext*.so)"
ldd "$so" | grep -E 'asan|ubsan' || { echo "sanitize: $so is not linked with the sanitizers" >&2; exit 1; }

step "check that a sanitizer report fails this step (canary)"
# A heap overflow in a throw-away C file, run with the same options: if nothing is
# reported there, the options below are broken and a green run would mean nothing.
cat >"$work/canary.c" <<'C'
#include <stdlib.h>
int main(int argc, char **argv) { char *p = malloc(4); int v = p[argc + 3]; free(p); return v == 1234; }
C
gcc -fsanitize=address,undefined -g "$work/canary.c" -o "$work/canary"
ASAN_OPTIONS="detect_leaks=0:log_path=$work/canary-report" "$work/canary" >/dev/null 2>&1 || true
ls "$work"/canary-report.* >/dev/null 2>&1 || { echo "sanitize: the canary's report was not written" >&2; exit 1; }
echo "canary reported: $(grep -m1 -o 'heap-buffer-overflow' "$work"/canary-report.*)"

step "run the tests under ASan/UBSan"
# detect_leaks=0: CPython leaks at exit by design. log_path: one report file per
# process that found something (pid suffix). handle_segv/abort_on_error: die on
# the first report so a test cannot continue past it.
export LD_PRELOAD="$asan:$ubsan${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:log_path=$logs/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
export PYTHONPATH="$copy${PYTHONPATH:+:$PYTHONPATH}"
cd "$copy"                   # so that `python -c`/`-m` (cwd first on sys.path) import the copy
python3 - <<'PY' || { echo "sanitize: the runtimes are not preloaded in child processes" >&2; exit 1; }
import subprocess, sys
# what the tests' `python -m pyhunt` subprocesses get: the runtimes and the sanitized module
code = "import pyhunt._ext as m; print(m.__file__); print(sum('libasan' in l for l in open('/proc/self/maps')))"
out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
print("child process imports", out[0], "with libasan mapped:", int(out[1]) > 0)
sys.exit(0 if int(out[1]) > 0 else 1)
PY
set +e
(python3 -c 'import pyhunt, sys; print("testing", pyhunt.__file__)' &&
    timeout 1500 python3 -m pytest -q -p no:cacheprovider -x --durations=10 "$@")
rc=$?
set -e
unset LD_PRELOAD

reports=("$logs"/*)
if [ -e "${reports[0]}" ]; then
    step "sanitizer reports (${#reports[@]} files)"
    for f in "${reports[@]}"; do echo "--- $f"; head -60 "$f"; done
    echo "sanitize: FAILED: sanitizer reports above (tests exit status $rc)"
    exit 1
fi
step "done in $(( $(date +%s) - t0 )) s: tests exit status $rc, no sanitizer report"
exit "$rc"
