"""Inputs found by fuzzing (fuzz/, docs/hardening.md), replayed on every test run.

Each file under tests/data/fuzz-regressions/ is named ``<target>-<what>``: the fuzz target that
found it (capture, decode, engine) and what it broke. Capture and engine inputs are captures and
go through the whole engine here, whole and streamed in small chunks; decoder inputs use the
decoder target's own format and are replayed by the fuzz binaries (fuzz/run.sh seeds every target
with all of these files). Under .ci/sanitize.sh this is where a regression would be reported.
"""
from __future__ import annotations

import pathlib
import os
import subprocess

import pytest

from conftest import ROOT
from pyhunt import _ext
from pyhunt.schema import dtype

_DTYPE = dtype()

DIR = ROOT / "tests" / "data" / "fuzz-regressions"
FILES = sorted(p for p in DIR.iterdir() if p.is_file()) if DIR.is_dir() else []
CAPTURES = [p for p in FILES if p.name.split("-")[0] in ("capture", "engine")]
TS_LIMIT = (1 << 62) - 1        # ext/ph_capture.h PH_TS_LIMIT


def _replay(data: bytes, chunk: int | None, config: dict) -> tuple[dict, list]:
    eng = _ext.Engine(config, _DTYPE)
    eng.begin_capture()
    recs = []
    pieces = [data] if chunk is None else [data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""]
    tail = b""
    rc = None
    for k, piece in enumerate(pieces):
        buf = tail + piece
        eng.feed(buf, k == len(pieces) - 1)
        for _ in range(1_000_000):
            rc = eng.run(7, 1 << 62)
            recs.extend(eng.take().tolist())
            if rc not in (_ext.RUN_BATCH, _ext.RUN_YIELD):
                break
        if rc != _ext.RUN_NEED_MORE:
            break
        tail = buf[eng.consumed():]
    assert rc in (_ext.RUN_EOF, _ext.RUN_ERROR)
    eng.begin_capture()
    eng.finish(0)
    recs.extend(eng.take().tolist())
    for fmt in _ext.FORMATS:
        import numpy as np
        arr = np.array(recs, dtype=_DTYPE) if recs else np.empty(0, _DTYPE)
        out = _ext.format_records(arr, fmt)
        assert out.count(b"\n") == len(recs)
    return eng.counters(), recs


def test_regression_files_exist():
    assert CAPTURES, f"no capture regressions under {DIR}"


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
@pytest.mark.parametrize("chunk", [None, 5, 97])
@pytest.mark.parametrize("config", [{}, {"capacity": 1, "active_timeout": 1, "emit_updates": True}],
                         ids=["default", "tiny-table"])
def test_replay(path: pathlib.Path, chunk, config):
    c, recs = _replay(path.read_bytes(), chunk, config)
    assert sum(c[n] for n in _ext.COUNTER_NAMES[2:_ext.N_DISPOSITIONS]) == c["packets_read"]
    assert c["flows_created"] == c["flows_exported"]
    names = _DTYPE.names
    for r in recs:
        start, end = r[names.index("ts_start")], r[names.index("ts_end")]
        assert -TS_LIMIT <= start <= TS_LIMIT and -TS_LIMIT <= end <= TS_LIMIT


def test_timestamps_are_clamped():
    """engine-ts-max: pcapng timestamps at 2**63 - 1000 ns overflowed the engine's timer arithmetic
    (ph_engine.c engine_time, flow deadlines); the reader now clamps them to +-PH_TS_LIMIT."""
    c, recs = _replay((DIR / "engine-ts-max.pcapng").read_bytes(), None, {})
    assert c["packets_read"] == 3
    starts = {r[_DTYPE.names.index("ts_start")] for r in recs}
    assert starts == {TS_LIMIT}


def test_fuzz_binaries_replay(tmp_path):
    """When fuzz/build.sh has built the targets, every regression runs through every target."""
    bins = sorted((ROOT / "fuzz" / "build").glob("fuzz_*"))
    if not bins:
        reason = "fuzz targets not built (fuzz/build.sh needs clang); fuzz/run.sh replays these files"
        if os.environ.get("CI", "").lower() == "true":   # .ci/run builds them before the tests
            pytest.fail(f"CI must replay the regressions through the fuzz targets: {reason}")
        pytest.skip(reason)
    for b in bins:
        r = subprocess.run([str(b), "-runs=0", *map(str, FILES)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{b.name}: {r.stderr[-3000:]}"
