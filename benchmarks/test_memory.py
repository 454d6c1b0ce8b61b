"""Memory: bytes per flow in the flow table and peak RSS at 1M (and 10k) concurrent flows.

pyhunt runs in a fresh process (benchmarks/memprobe.py): Engine.table_memory() / active_flows()
at the moment the table holds the most flows, the process's peak RSS (VmHWM) and its anonymous
RSS at that moment (the file-backed rest is the mapped capture). The dpkt aggregation's peak RSS
on the same file is measured the same way (ru_maxrss of its process). One round each; the time
is not a throughput figure.
"""
import json
import os
import subprocess
import sys

import pytest

import captures

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {"10k": "mix10k", "1M": "conc1m"}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(captures.ROOT), env.get("PYTHONPATH")) if p)
    return env


def _maxrss(cmd) -> int:
    """Run cmd; its peak RSS in bytes (ru_maxrss of that child alone)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    _pid, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise subprocess.CalledProcessError(p.returncode, cmd)
    return ru.ru_maxrss * 1024


@pytest.mark.parametrize("case", ["10k", "1M"])
def test_memory_pyhunt(benchmark, bench, pyhunt_mod, case):
    cap = bench.capture(CASES[case])
    box = {}

    def run():
        r = subprocess.run([sys.executable, os.path.join(HERE, "memprobe.py"), cap.path], check=True,
                           capture_output=True, text=True, env=_env())
        box.update(json.loads(r.stdout))
        return (box["packets"],)

    bench.run(benchmark, stage="memory", case=case, tool="pyhunt", cap=cap, fn=run, rounds=1, warmup=0)
    benchmark.extra_info.update(box)
    assert box["packets"] == cap.packets


@pytest.mark.parametrize("case", ["1M"])
def test_memory_dpkt(benchmark, bench, case):
    bench.need_peer("dpkt")
    cap = bench.capture(CASES[case])
    box = {}

    def run():
        box["peak_rss"] = _maxrss([sys.executable, os.path.join(HERE, "dpkt_peer.py"), cap.path])
        return (cap.packets,)

    bench.run(benchmark, stage="memory", case=case, tool="dpkt", cap=cap, fn=run, peer=True, rounds=1)
    benchmark.extra_info.update(box)
