#!/usr/bin/env python3
"""Side-by-side timing of the whole `python -m pyhunt replay` command and the dpkt (and nfstream) peer.

Both are timed as whole processes on the same (page-cached) capture in the same run, alternating,
and the medians are compared: absolute times on a shared machine are noisy, ratios are what count.

    python benchmarks/compare_replay.py /tmp/bench.pcap --rounds 3 [--format zeek-json] [--nfstream]

The pytest-benchmark suite (benchmarks/test_replay.py, docs/performance.md) measures the same
processes; this script is the quick way to compare them by hand.

Make the default capture with: python3 ../shared/bench/gen_pcap.py --packets 2000000 --flows 100000 \\
    --seed 1 -o /tmp/bench.pcap
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent


def _time(cmd: list[str], out: str | None = None) -> float:
    """Wall time of the whole process; out: a file it writes, removed afterwards."""
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    if out is not None:
        os.unlink(out)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--format", default="zeek-json", choices=("ecs", "zeek-json", "zeek-tsv"))
    ap.add_argument("--min-ratio", type=float, default=None, help="exit 1 if pyhunt is not this many times faster")
    ap.add_argument("--nfstream", action="store_true", help="also time benchmarks/nfstream_peer.py")
    a = ap.parse_args(argv)
    with open(a.capture, "rb") as f:  # warm the page cache
        while f.read(1 << 24):
            pass
    fd, out = tempfile.mkstemp(prefix="pyhunt-replay-", suffix=".log")   # the records go to a real file
    os.close(fd)
    ours = [sys.executable, "-m", "pyhunt", "replay", "-q", "--format", a.format, "-o", out, a.capture]
    peer = [sys.executable, str(HERE / "dpkt_peer.py"), a.capture]
    nfs = [sys.executable, str(HERE / "nfstream_peer.py"), a.capture]
    t_ours, t_peer, t_nfs = [], [], []
    for i in range(a.rounds):
        t_ours.append(_time(ours, out))
        t_peer.append(_time(peer))
        line = f"round {i + 1}: pyhunt {t_ours[-1]:.2f} s, dpkt {t_peer[-1]:.2f} s"
        if a.nfstream:
            t_nfs.append(_time(nfs))
            line += f", nfstream {t_nfs[-1]:.2f} s"
        print(line, file=sys.stderr)
    mo, mp = statistics.median(t_ours), statistics.median(t_peer)
    print(f"pyhunt replay ({a.format}): median {mo:.3f} s | dpkt aggregation: median {mp:.3f} s | "
          f"ratio {mp / mo:.1f}x ({a.rounds} rounds, {os.path.getsize(a.capture) / 1e9:.2f} GB capture)")
    if t_nfs:
        mn = statistics.median(t_nfs)
        print(f"nfstream (statistical_analysis): median {mn:.3f} s | ratio {mn / mo:.1f}x")
    if a.min_ratio is not None and mp / mo < a.min_ratio:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
