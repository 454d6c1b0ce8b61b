#!/usr/bin/env bash
# CI ratio guard (issue #3): a short benchmark run that fails if the flow engine is no longer at
# least 20x faster than the dpkt aggregation, both measured in this run on the same generated
# capture (200,000 packets, 10,000 concurrent flows; benchmarks/synth.py, no ../shared needed).
# Ratios, not absolute times: the machine may be shared. Bounded: ~30-60 s on 2 cores, killed at
# 170 s. Prints every measurement (pytest-benchmark's tables, then benchmarks/report.py's).
# Needs pyhunt importable with its extension built (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONUNBUFFERED=1
export PYHUNT_BENCH_DIR="${PYHUNT_BENCH_DIR:-/tmp/pyhunt-bench}"
RATIO="${PYHUNT_BENCH_GUARD_RATIO:-20}"
OUT="$PYHUNT_BENCH_DIR/ci-guard.json"
mkdir -p "$PYHUNT_BENCH_DIR"

python3 -c "import pytest_benchmark, dpkt" 2>/dev/null || python3 -m pip install -q "pytest-benchmark>=4" "dpkt>=1.9"

start=$(date +%s)
# -p no:cacheprovider: leave no .pytest_cache behind; the guard tests only (see benchmarks/conftest.py)
timeout 170 python3 -m pytest benchmarks/ -p no:cacheprovider -m guard --bench-scale ci --bench-peers dpkt,c \
    --benchmark-json "$OUT" --benchmark-columns=median,min,max,rounds --benchmark-sort=name -q
python3 benchmarks/report.py "$OUT" --guard "$RATIO"
echo "bench guard took $(( $(date +%s) - start )) s"
