#!/usr/bin/env bash
# Build the libFuzzer targets and run each for SECONDS (default 60) from a seed
# corpus made of the test captures; print executions per target; exit 1 if a
# target crashed (the input is kept under fuzz/artifacts/ with the report).
#
#   fuzz/run.sh [SECONDS]
#   env: FUZZ_TARGETS="capture decode engine"  which targets
#        FUZZ_CORPUS=DIR    keep the grown corpus there (DIR/<target>) between runs
#        FUZZ_ARTIFACTS=DIR where crashing inputs go (default fuzz/artifacts)
#        FUZZ_JOBS=N        parallel fuzzing processes per target (default 1)
#        PYHUNT_SHARED=DIR  the team's shared directory (default ../shared) for more seeds
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
secs="${1:-60}"
case "$secs" in ''|*[!0-9]*) echo "usage: fuzz/run.sh [SECONDS]" >&2; exit 2;; esac
targets="${FUZZ_TARGETS:-capture decode engine}"
artifacts="${FUZZ_ARTIFACTS:-$here/artifacts}"
jobs="${FUZZ_JOBS:-1}"
build="$here/build"
par=""
[ "$jobs" -gt 1 ] && par="-jobs=$jobs -workers=$jobs"
work="$(mktemp -d "${TMPDIR:-/tmp}/pyhunt-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
say() { printf '[fuzz %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

say "building targets"
"$here/build.sh" "$build" || { echo "fuzz/run.sh: build failed" >&2; exit 2; }
say "making seed corpora"
python3 "$here/make_seeds.py" "$work/seeds" || { echo "fuzz/run.sh: seed generation failed" >&2; exit 2; }
mkdir -p "$artifacts"

max_len_of() { case "$1" in decode) echo 16384;; *) echo 65536;; esac; }

failed=0
summary=()
for t in $targets; do
    bin="$build/fuzz_$t"
    [ -x "$bin" ] || { echo "fuzz/run.sh: no target fuzz_$t" >&2; exit 2; }
    corpus="${FUZZ_CORPUS:+$FUZZ_CORPUS/$t}"
    corpus="${corpus:-$work/corpus/$t}"
    mkdir -p "$corpus"
    log="$work/$t.log"
    say "fuzz_$t: ${secs}s, max_len $(max_len_of "$t"), corpus $corpus"
    # -timeout: one input taking 10 s is a hang; the outer timeout bounds the whole run
    timeout -k 10 "$((secs + 120))" "$bin" -max_total_time="$secs" -max_len="$(max_len_of "$t")" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 $par \
        -artifact_prefix="$artifacts/$t-" "$corpus" "$work/seeds/$t" >"$log" 2>&1
    rc=$?
    if [ "$jobs" -gt 1 ]; then cat fuzz-*.log >>"$log" 2>/dev/null; rm -f fuzz-*.log; fi
    execs="$(grep -h '^stat::number_of_executed_units' "$log" | awk '{s += $2} END {print s + 0}')"
    rate="$(grep -h '^stat::average_exec_per_sec' "$log" | awk '{s += $2} END {print s + 0}')"
    units="$(find "$corpus" -type f | wc -l)"
    if [ "$rc" -eq 0 ]; then
        result="ok"
    else
        failed=1
        result="CRASH (exit $rc)"
        echo "---- fuzz_$t failed; report:"
        grep -E -A30 'ERROR: |runtime error|invariant broken|deadly signal|Test unit written' "$log" | head -80
        echo "---- (crashing inputs: $artifacts/$t-*; replay: $bin FILE)"
    fi
    summary+=("$(printf '%-14s %6ss %12s execs %9s exec/s %6s corpus  %s' "fuzz_$t" "$secs" "$execs" "$rate" "$units" "$result")")
done

echo
echo "fuzz summary ($(date -u +%FT%TZ)):"
printf '  %s\n' "${summary[@]}"
exit "$failed"
