#!/usr/bin/env python3
"""The table of a saved benchmark run: each stage, pyhunt, each peer, and the ratios.

    python -m pytest benchmarks/ --benchmark-json=run.json
    python benchmarks/report.py run.json                         # markdown on stdout
    python benchmarks/report.py run.json --update-doc docs/performance.md
    python benchmarks/report.py run.json --guard 20              # exit 1 if flows < 20x dpkt

Every figure is the median of the rounds (pytest-benchmark's ``stats.median``); ratios compare
medians of the same run on the same file. With no file argument, the newest run saved by
``--benchmark-autosave`` under .benchmarks/ is used, else benchmarks/results/latest.json (the run
that docs/performance.md shows).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Optional

PEERS = ("dpkt", "scapy", "nfstream")
FLOORS = ("c-probe", "cat", "mmap")
STAGES = ("read", "decode", "flows", "replay")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
LATEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "latest.json")


def _load(path: Optional[str]) -> tuple[dict, str]:
    if path is None:
        runs = sorted(glob.glob(".benchmarks/*/*.json"), key=os.path.getmtime)
        if runs:
            path = runs[-1]
        elif os.path.exists(LATEST):
            path = os.path.relpath(LATEST)
        else:
            raise SystemExit("report: no run given and none saved under .benchmarks/ "
                             "(run pytest with --benchmark-json=FILE or --benchmark-autosave)")
    with open(path) as f:
        return json.load(f), path


class Run:
    """The benchmarks of one run, indexed by (stage, case, tool)."""

    def __init__(self, data: dict):
        self.data = data
        self.meta = data.get("pyhunt_bench", {})
        self.by: dict[tuple[str, str, str], dict] = {}
        for b in data.get("benchmarks", []):
            ei = b.get("extra_info", {})
            if "stage" in ei:
                self.by[(ei["stage"], ei["case"], ei["tool"])] = b

    def get(self, stage: str, case: str, tool: str) -> Optional[dict]:
        return self.by.get((stage, case, tool))

    def cases(self, stage: str) -> list[str]:
        seen: list[str] = []
        for (s, c, _t) in self.by:
            if s == stage and c not in seen:
                seen.append(c)
        return seen

    @staticmethod
    def median(b: dict) -> float:
        return float(b["stats"]["median"])

    def rate(self, b: Optional[dict]) -> Optional[float]:
        """Packets per second (flows per second for export)."""
        if b is None:
            return None
        ei = b["extra_info"]
        n = ei.get("flows") if ei["stage"] == "export" else ei.get("packets")
        return n / self.median(b) if n else None


def _si(x: Optional[float], unit: str = "") -> str:
    if x is None:
        return "—"
    for div, suf in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(x) >= div:
            v = x / div
            return f"{v:.3g}{suf}{unit}" if v < 100 else f"{v:.0f}{suf}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def _secs(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a and b else None


def _x(r: Optional[float]) -> str:
    if r is None:
        return ""
    return f"{r:.0f}×" if r >= 10 else f"{r:.2g}×"


def stage_table(run: Run) -> list[str]:
    lines = ["| stage | case | pyhunt | dpkt | scapy | nfstream | C floors |",
             "|---|---|---|---|---|---|---|"]
    for stage in STAGES:
        for case in run.cases(stage):
            ours = run.get(stage, case, "pyhunt")
            r0 = run.rate(ours)
            if ours is not None:
                ei = ours["extra_info"]
                cell = f"{_secs(run.median(ours))} · {_si(r0, 'pkt/s')}"
                if ei.get("bytes"):
                    cell += f" · {ei['bytes'] / run.median(ours) / 1e9:.2f} GB/s"
            else:
                cell = "—"
            row = [stage, case, cell]
            for peer in PEERS:
                b = run.get(stage, case, peer)
                if b is None:
                    row.append("—")
                    continue
                r = run.rate(b)
                part = " (first %s pkts)" % _si(b["extra_info"]["packets"]) if b["extra_info"].get("partial") else ""
                row.append(f"{_secs(run.median(b))} · {_si(r, 'pkt/s')}{part} · **{_x(_ratio(r0, r))}**")
            floors = []
            for fl in FLOORS:
                b = run.get(stage, case, fl)
                if b is None:
                    continue
                r = run.rate(b)
                pct = _ratio(r0, r)
                gbs = b["extra_info"]["bytes"] / run.median(b) / 1e9
                floors.append(f"{fl} {_si(r, 'pkt/s')} ({gbs:.1f} GB/s){'' if pct is None else f', pyhunt {pct:.0%}'}")
            row.append("; ".join(floors) or "—")
            lines.append("| " + " | ".join(row) + " |")
    return lines


def export_table(run: Run) -> list[str]:
    cases = run.cases("export")
    if not cases:
        return []
    lines = ["| export | flows | median | flows/s | MB/s |", "|---|---|---|---|---|"]
    for case in cases:
        b = run.get("export", case, "pyhunt")
        if b is None:
            continue
        ei, m = b["extra_info"], run.median(b)
        what = "records to numpy (finish + take)" if case == "numpy" else f"{case} (FlowBatch.to_ndjson)"
        lines.append(f"| {what} | {ei['flows']:,} | {_secs(m)} | {_si(ei['flows'] / m)} | "
                     f"{ei['out_bytes'] / m / 1e6:,.0f} |")
    return lines


def memory_table(run: Run) -> list[str]:
    cases = run.cases("memory")
    if not cases:
        return []
    lines = ["| concurrent flows | peak in table | table memory | bytes/flow | peak RSS (of it, the mapped capture) | "
             "peak anonymous RSS | dpkt peak RSS |", "|---|---|---|---|---|---|---|"]
    for case in cases:
        b = run.get("memory", case, "pyhunt")
        if b is None:
            continue
        ei = b["extra_info"]
        d = run.get("memory", case, "dpkt")
        dr = f"{d['extra_info']['peak_rss'] / 2**20:,.0f} MiB" if d else "—"
        mib = lambda v: f"{(v or 0) / 2**20:,.0f} MiB"  # noqa: E731
        lines.append(f"| {case} | {ei['peak_active_flows']:,} | {ei['table_memory_at_peak'] / 2**20:,.1f} MiB | "
                     f"{ei['bytes_per_flow']:,.0f} | {mib(ei['peak_rss'])} ({mib(ei.get('peak_rss_file'))}) | "
                     f"{mib(ei.get('peak_rss_anon'))} | {dr} |")
    return lines


def targets(run: Run) -> list[tuple[str, str, Optional[bool]]]:
    """(target, measured, met) for the targets of issue #3; met None = not measured in this run."""
    out: list[tuple[str, str, Optional[bool]]] = []
    f10 = run.rate(run.get("flows", "10k", "pyhunt"))
    # the physical limit measured next to the flows stage, else the read stage's (same file)
    phys = [p for p in (run.rate(run.get("flows", "10k", t)) for t in ("cat", "mmap")) if p] or \
        [p for p in (run.rate(run.get("read", "pcap", t)) for t in ("cat", "mmap")) if p]
    if f10 and phys:
        lim = max(phys)
        out.append(("flows, 10k mix ≥ 50% of the physical limit (faster of cat / mmap on the same file)",
                    f"{f10 / lim:.0%} ({_si(f10, 'pkt/s')} of {_si(lim, 'pkt/s')})", f10 / lim >= 0.5))
    else:
        out.append(("flows, 10k mix ≥ 50% of the physical limit", "not measured", None))
    rp = run.get("replay", "zeek-json", "pyhunt")
    for peer, need in (("dpkt", 50), ("nfstream", 30)):
        b = run.get("replay", "zeek-json", peer)
        if rp and b:
            r = run.median(b) / run.median(rp)
            out.append((f"replay (2M packets, zeek-json to a file) ≥ {need}× {peer}", f"{r:.1f}×", r >= need))
        else:
            out.append((f"replay ≥ {need}× {peer}", "not measured", None))
    m = run.get("memory", "1M", "pyhunt")
    if m:
        bpf = m["extra_info"]["bytes_per_flow"]
        out.append(("1M concurrent flows: < 400 bytes per flow of table memory",
                    f"{bpf:,.0f} B/flow ({m['extra_info']['peak_active_flows']:,} flows)", bpf < 400))
    else:
        out.append(("1M concurrent flows: < 400 bytes per flow", "not measured", None))
    f1m = run.rate(run.get("flows", "1M", "pyhunt"))
    if f1m and f10:
        out.append(("1M concurrent flows: no throughput cliff (≥ half the 10k rate)",
                    f"{f1m / f10:.0%} of the 10k rate ({_si(f1m, 'pkt/s')})", f1m >= 0.5 * f10))
    g = guard_ratio(run)
    if g is not None:
        out.append(("CI guard: flows ≥ 20× dpkt aggregation (same file, same run)", f"{g:.0f}×", g >= 20))
    return out


def guard_ratio(run: Run) -> Optional[float]:
    ours, peer = run.get("flows", "10k", "pyhunt"), run.get("flows", "10k", "dpkt")
    if ours is None or peer is None:
        return None
    return run.median(peer) / run.median(ours)


def render(run: Run, source: str) -> str:
    meta = run.meta
    mach = meta.get("machine", {})
    caps = meta.get("captures", {})
    out = [f"Run: `{meta.get('command', '?')}` (scale {meta.get('scale', '?')}, finished "
           f"{meta.get('finished', '?')}; report: `python benchmarks/report.py {source}`).",
           f"Machine: {mach.get('cpu', '?')}, {mach.get('cpus', '?')} CPUs, {mach.get('memory_gb', '?')} GB, "
           f"Python {mach.get('python', '?')}, {mach.get('platform', '?')}; load average at the end "
           f"{' '.join(mach.get('loadavg', []))} (the machine is shared: compare ratios within this run)."
           + (f" Engine: {meta['engine'].get('git', 'ext/ sha1 ' + meta['engine'].get('ext_sha1', '?'))}."
              if meta.get("engine") else ""),
           "", "Medians of the rounds; `N×` = how many times pyhunt's rate the peer's is below; "
           "C floors give pyhunt's rate as a share of theirs.", ""]
    out += stage_table(run)
    et = export_table(run)
    if et:
        out += [""] + et
    mt = memory_table(run)
    if mt:
        out += [""] + mt
    out += ["", "| target | measured | met |", "|---|---|---|"]
    for name, measured, met in targets(run):
        out.append(f"| {name} | {measured} | {'—' if met is None else ('yes' if met else '**no**')} |")
    if caps:
        out += ["", "Captures (page-cached):", ""]
        for name, c in caps.items():
            out.append(f"- `{name}`: {c['packets']:,} packets, {c['flows']:,} flows, {c['file_bytes'] / 1e9:.2f} GB "
                       f"— {c['generator']}")
    return "\n".join(out) + "\n"


def update_doc(path: str, text: str) -> None:
    with open(path) as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"report: {path} has no {BEGIN} ... {END} section to replace")
    head, rest = doc.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(head + BEGIN + "\n" + text + END + tail)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="pytest-benchmark JSON (default: newest under .benchmarks/)")
    ap.add_argument("--update-doc", metavar="MD", help="replace the bench section of this markdown file")
    ap.add_argument("--guard", type=float, metavar="RATIO",
                    help="exit 1 unless pyhunt's flows stage is at least RATIO times dpkt's (10k case)")
    a = ap.parse_args(argv)
    data, source = _load(a.run)
    run = Run(data)
    text = render(run, source)
    print(text)
    if a.update_doc:
        update_doc(a.update_doc, text)
    if a.guard is not None:
        g = guard_ratio(run)
        if g is None:
            print("bench guard: FAILED: the run has no flows/10k pyhunt and dpkt measurements", file=sys.stderr)
            return 1
        ours = run.get("flows", "10k", "pyhunt")
        peer = run.get("flows", "10k", "dpkt")
        verdict = "ok" if g >= a.guard else "FAILED"
        print(f"bench guard: {verdict}: flows stage on {ours['extra_info']['packets']:,} packets / "
              f"{ours['extra_info']['flows']:,} flows: pyhunt median {_secs(run.median(ours))}, dpkt median "
              f"{_secs(run.median(peer))}: {g:.1f}x (required >= {a.guard:g}x)", file=sys.stderr)
        return 0 if g >= a.guard else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
