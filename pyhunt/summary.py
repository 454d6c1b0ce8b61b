"""Human-readable reports of a replay: the summary, top talkers, largest flows."""
from __future__ import annotations

import ipaddress
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from pyhunt.flows import Progress
from pyhunt.schema import CONN_STATES

__all__ = ["Stats", "ProgressBar", "format_summary", "format_flow_table", "addr_text"]

_PROTO = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6", 132: "sctp"}


def addr_text(raw: np.ndarray | bytes, version: int) -> str:
    b = bytes(raw)
    return str(ipaddress.IPv4Address(b[:4]) if version == 4 else ipaddress.IPv6Address(b[:16]))


def _human(n: float, unit: str = "") -> str:
    for suffix in ("", "k", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{suffix}{unit}" if suffix == "" else f"{n:.1f}{suffix}{unit}"
        n /= 1000
    return f"{n:.1f}P{unit}"


def _bytes(n: float) -> str:
    for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.0f} {suffix}" if suffix == "B" else f"{n:.1f} {suffix}"
        n /= 1024
    return f"{n:.1f} PiB"


@dataclass
class Stats:
    """What the summary needs, accumulated batch by batch with numpy (no per-flow Python)."""
    flows: int = 0
    updates: int = 0
    by_proto: dict[int, int] = field(default_factory=dict)
    by_state: dict[int, int] = field(default_factory=dict)
    talkers: dict[tuple[bytes, int], int] = field(default_factory=dict)
    largest: np.ndarray | None = None
    keep: int = 10

    def add(self, recs: np.ndarray) -> None:
        if not len(recs):
            return
        upd = (recs["flags"] & 0x0008) != 0
        self.updates += int(upd.sum())
        recs = recs[~upd]
        self.flows += len(recs)
        for key, col, target in ((0, "proto", self.by_proto), (1, "conn_state", self.by_state)):
            vals, counts = np.unique(recs[col], return_counts=True)
            for v, c in zip(vals.tolist(), counts.tolist()):
                target[v] = target.get(v, 0) + c
        total = recs["orig_ip_bytes"] + recs["resp_ip_bytes"]
        for col in ("orig_h", "resp_h"):
            keys = np.ascontiguousarray(recs[col]).view("V16").ravel()
            uniq, inv = np.unique(keys, return_inverse=True)
            sums = np.bincount(inv.ravel(), weights=total.astype(np.float64))
            versions = np.zeros(len(uniq), dtype=np.uint8)
            versions[inv.ravel()] = recs["ip_version"]
            for k, v, s in zip(uniq.tolist(), versions.tolist(), sums.tolist()):
                kk = (bytes(k), v)
                self.talkers[kk] = self.talkers.get(kk, 0) + int(s)
        if len(self.talkers) > 200_000:  # bound memory on huge captures: keep the heaviest
            top = sorted(self.talkers.items(), key=lambda kv: -kv[1])[:50_000]
            self.talkers = dict(top)
        pool = recs if self.largest is None else np.concatenate([self.largest, recs])
        order = np.argsort(-(pool["orig_ip_bytes"] + pool["resp_ip_bytes"]).astype(np.int64), kind="stable")
        self.largest = pool[order[: self.keep]].copy()


def format_summary(counters: dict[str, int], stats: Stats, elapsed: float, n_dispositions: int,
                   names: tuple[str, ...], errors: list) -> str:
    pk = counters["packets_read"]
    lines = ["", "pyhunt replay summary"]
    rate = pk / elapsed if elapsed > 0 else 0.0
    lines.append(f"  packets   {pk:>12,}   {_bytes(counters['bytes_read'])} captured, "
                 f"{elapsed:.2f} s, {_human(rate)} packets/s")
    protos = ", ".join(f"{_PROTO.get(p, str(p))} {c:,}" for p, c in sorted(stats.by_proto.items(), key=lambda x: -x[1]))
    lines.append(f"  flows     {stats.flows:>12,}   {protos}")
    if stats.updates:
        lines.append(f"  updates   {stats.updates:>12,}   interim records of long flows")
    states = "  ".join(f"{CONN_STATES[s]} {c:,}" for s, c in sorted(stats.by_state.items(), key=lambda x: -x[1]))
    if states:
        lines.append(f"  states    {states}")
    lines.append(f"  in flows  {counters['in_flow']:>12,}   packets counted in a flow")
    drops = [(n, counters[n]) for n in names[3:n_dispositions] if counters[n]]
    if drops:
        lines.append("  not in a flow, by reason:")
        for n, c in drops:
            lines.append(f"    {n:<22} {c:>12,}")
    info = [(n, counters[n]) for n in ("evictions", "tcp_reuse", "fragments_reassembled", "frag_overflow",
                                       "frag_timeout") if counters.get(n)]
    if info:
        lines.append("  notes     " + ", ".join(f"{n} {c:,}" for n, c in info))
    top = sorted(stats.talkers.items(), key=lambda kv: -kv[1])[:5]
    if top:
        lines.append("  top talkers (IP bytes, either direction):")
        for (raw, ver), b in top:
            lines.append(f"    {addr_text(raw, ver):<40} {_bytes(b):>12}")
    for err in errors:
        lines.append(f"  error     {err}")
    return "\n".join(lines) + "\n"


def format_flow_table(recs: np.ndarray | None) -> str:
    """A readable table of the largest flows (shown when stdout is a terminal)."""
    if recs is None or not len(recs):
        return "no flows\n"
    head = f"{'start (UTC)':<20} {'proto':<6} {'originator':<30} {'responder':<30} {'state':<7} {'history':<12} {'pkts':>8} {'bytes':>11}"
    rows = [head, "-" * len(head)]
    for r in recs:
        t = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(r["ts_start"]) // 1_000_000_000))
        v = int(r["ip_version"])
        o = f"{addr_text(r['orig_h'], v)}:{int(r['orig_p'])}"
        d = f"{addr_text(r['resp_h'], v)}:{int(r['resp_p'])}"
        hist = r["history"].decode() or "-"
        rows.append(f"{t:<20} {_PROTO.get(int(r['proto']), str(int(r['proto']))):<6} {o:<30} {d:<30} "
                    f"{CONN_STATES[int(r['conn_state'])]:<7} {hist:<12} "
                    f"{int(r['orig_pkts'] + r['resp_pkts']):>8,} {_bytes(int(r['orig_ip_bytes'] + r['resp_ip_bytes'])):>11}")
    return "\n".join(rows) + "\n"


class ProgressBar:
    """A one-line progress bar on a terminal (stderr), redrawn at most 10 times a second."""

    def __init__(self, stream: TextIO = sys.stderr):
        self.stream, self.last, self.drawn = stream, 0.0, False

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if now - self.last < 0.1:
            return
        self.last = now
        if p.total:
            frac = min(1.0, p.done / p.total)
            bar = "#" * int(frac * 30)
            text = f"\r{p.source[-30:]:<30} [{bar:<30}] {frac * 100:5.1f}% {p.packets:,} packets"
        else:
            text = f"\r{p.source[-30:]:<30} {_bytes(p.done)} read, {p.packets:,} packets"
        self.stream.write(text)
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()
