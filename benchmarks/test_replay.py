"""Stage "replay": whole processes on the default 2,000,000-packet capture (page-cached).

pyhunt: ``python -m pyhunt replay -q --format zeek-json -o FILE CAPTURE`` (and ``--format ecs``).
Peers: ``python benchmarks/dpkt_peer.py CAPTURE`` and ``python benchmarks/nfstream_peer.py CAPTURE``
(nfstream with statistical_analysis on). Interpreter start-up and imports are part of each time.
"""
import os
import subprocess
import sys

import pytest

import captures

HERE = os.path.dirname(os.path.abspath(__file__))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(captures.ROOT), env.get("PYTHONPATH")) if p)
    return env


def _proc(cmd, packets):
    """A benchmark target running cmd to completion; it returns (packets of the capture,)."""
    def run():
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
                       cwd=str(captures.ROOT))
        return (packets,)
    return run


@pytest.mark.parametrize("fmt", ["zeek-json", "ecs"])
def test_replay_pyhunt(benchmark, bench, pyhunt_mod, fmt):
    cap = bench.capture("replay")
    out = captures.bench_dir() / f"replay-out.{fmt}"
    run = _proc([sys.executable, "-m", "pyhunt", "replay", "-q", "--format", fmt, "-o", str(out), cap.path],
                cap.packets)
    try:
        bench.run(benchmark, stage="replay", case=fmt, tool="pyhunt", cap=cap,
                  fn=run)
        benchmark.extra_info["out_bytes"] = out.stat().st_size
        with open(out, "rb") as f:
            benchmark.extra_info["flows_written"] = sum(1 for _ in f)
    finally:
        out.unlink(missing_ok=True)


def test_replay_dpkt(benchmark, bench):
    bench.need_peer("dpkt")
    cap = bench.capture("replay")
    run = _proc([sys.executable, os.path.join(HERE, "dpkt_peer.py"), cap.path], cap.packets)
    bench.run(benchmark, stage="replay", case="zeek-json", tool="dpkt", cap=cap, peer=True,
              fn=run)


def test_replay_nfstream(benchmark, bench):
    bench.need_peer("nfstream")
    cap = bench.capture("replay")
    run = _proc([sys.executable, os.path.join(HERE, "nfstream_peer.py"), cap.path], cap.packets)
    bench.run(benchmark, stage="replay", case="zeek-json", tool="nfstream", cap=cap, peer=True,
              fn=run)
