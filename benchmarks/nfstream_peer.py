#!/usr/bin/env python3
"""The nfstream peer of pyhunt's benchmarks: NFStreamer over a capture, statistical_analysis on.

Every other setting is nfstream's default (its meters use the machine's cores, nDPI dissection of
the first 20 packets, idle timeout 120 s, active timeout 1800 s). The flows are iterated and
counted; nothing is written.

Usage: python benchmarks/nfstream_peer.py CAPTURE   (flows, packets, elapsed time on stderr)
"""
from __future__ import annotations

import sys
import time
import warnings
from typing import List, Optional


def unavailable() -> Optional[str]:
    """None if nfstream can be imported, else the reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import nfstream  # noqa: F401
    except Exception as exc:  # ImportError, or its native library failing to load
        return f"nfstream cannot be imported: {type(exc).__name__}: {exc}"
    return None


def aggregate(path: str) -> tuple[int, int]:
    """(packets, flows) that NFStreamer reports for the capture."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nfstream import NFStreamer
        packets = flows = 0
        for flow in NFStreamer(source=path, statistical_analysis=True):
            flows += 1
            packets += flow.bidirectional_packets
    return packets, flows


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python benchmarks/nfstream_peer.py CAPTURE", file=sys.stderr)
        return 2
    why = unavailable()
    if why:
        print(f"nfstream_peer: {why}", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    packets, flows = aggregate(args[0])
    el = time.perf_counter() - t0
    print(f"nfstream_peer: {flows} flows, {packets} packets in flows, {el:.3f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
