#!/usr/bin/env python3
"""Memory of the flow engine at its peak concurrency, in a fresh process.

Runs pyhunt's engine over the capture (as FlowMeter does: the file memory-mapped, records taken in
batches), samples ``Engine.active_flows()`` and ``Engine.table_memory()`` every 65,536 packets,
and prints one JSON object: the peak number of flows in the table, the table's bytes at that
moment and per flow, the process's peak RSS (VmHWM), the largest anonymous RSS seen (the engine,
its export queue and Python; sampled with the table, after the end of input and after the records
are taken) and the largest file-backed RSS (the mapped capture's pages, which the kernel can
drop; they count in RSS all the same).

    python benchmarks/memprobe.py CAPTURE
"""
from __future__ import annotations

import json
import mmap
import os
import sys
import time


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def measure(path: str, step: int = 1 << 16) -> dict:
    from pyhunt import _ext
    from pyhunt.flows import FlowMeter

    meter = FlowMeter()
    eng = meter.engine
    base = _status()
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mm)
    eng.begin_capture()
    eng.feed(view, True)
    peak = {"active": 0, "table_memory": eng.table_memory(), "status": _status()}
    top = {"RssAnon": 0, "RssFile": 0}

    def sample() -> dict[str, int]:
        st = _status()
        for k in top:
            top[k] = max(top[k], st.get(k, 0))
        return st

    exported = 0
    while True:
        rc = eng.run(65536, step)
        if eng.queued() >= 65536:
            exported += len(eng.take())
        st = sample()
        active = eng.active_flows()
        if active > peak["active"]:
            peak = {"active": active, "table_memory": eng.table_memory(), "status": st}
        if rc not in (_ext.RUN_BATCH, _ext.RUN_YIELD):
            break
    if rc not in (_ext.RUN_EOF,):
        raise SystemExit(f"memprobe: engine stopped with {rc}: {eng.error()}")
    eng.begin_capture()
    view.release()
    eng.finish(0)
    sample()
    while eng.queued():  # as FlowMeter.read does: the whole queue in one array
        batch = eng.take()
        sample()
        exported += len(batch)
        del batch
    seconds = time.perf_counter() - t0
    end = _status()
    mm.close()
    st = peak["status"]
    return {
        "packets": eng.counters()["packets_read"],
        "flows_exported": exported,
        "peak_active_flows": peak["active"],
        "table_memory_at_peak": peak["table_memory"],
        "bytes_per_flow": round(peak["table_memory"] / peak["active"], 1) if peak["active"] else None,
        "peak_rss": end["VmHWM"],
        "rss_anon_at_peak": st.get("RssAnon"),
        "rss_file_at_peak": st.get("RssFile"),
        "peak_rss_anon": top["RssAnon"],
        "peak_rss_file": top["RssFile"],
        "rss_before": base["VmRSS"],
        "capture_bytes": os.path.getsize(path),
        "seconds": round(seconds, 3),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python benchmarks/memprobe.py CAPTURE", file=sys.stderr)
        return 2
    print(json.dumps(measure(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
