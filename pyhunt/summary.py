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
    proto_counts: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    state_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(CONN_STATES), dtype=np.int64))
    talker_keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype="V17"))
    talker_bytes: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    largest: np.ndarray | None = None
    keep: int = 10
    max_talkers: int = 1_000_000

    @property
    def by_proto(self) -> dict[int, int]:
        return {int(p): int(c) for p, c in enumerate(self.proto_counts) if c}

    @property
    def by_state(self) -> dict[int, int]:
        return {int(p): int(c) for p, c in enumerate(self.state_counts) if c}

    @property
    def talkers(self) -> dict[tuple[bytes, int], int]:
        """Address -> IP bytes; address as (16 bytes, ip version)."""
        out = {}
        for k, b in zip(self.talker_keys.tolist(), self.talker_bytes.tolist()):
            out[(bytes(k)[:16], bytes(k)[16])] = int(b)
        return out

    def top_talkers(self, n: int = 5) -> list[tuple[tuple[bytes, int], int]]:
        order = np.argsort(-self.talker_bytes, kind="stable")[:n]
        return [((bytes(self.talker_keys[i])[:16], bytes(self.talker_keys[i])[16]), int(self.talker_bytes[i]))
                for i in order]

    def add(self, recs: np.ndarray) -> None:
        if not len(recs):
            return
        upd = (recs["flags"] & 0x0008) != 0
        n_upd = int(upd.sum())
        if n_upd:
            self.updates += n_upd
            recs = recs[~upd]
            if not len(recs):
                return
        self.flows += len(recs)
        self.proto_counts += np.bincount(recs["proto"], minlength=256)
        self.state_counts += np.bincount(recs["conn_state"], minlength=len(CONN_STATES))[:len(CONN_STATES)]
        total = (recs["orig_ip_bytes"] + recs["resp_ip_bytes"]).astype(np.float64)
        keys = np.empty((2 * len(recs), 17), dtype=np.uint8)
        keys[: len(recs), :16] = recs["orig_h"]
        keys[len(recs):, :16] = recs["resp_h"]
        keys[: len(recs), 16] = recs["ip_version"]
        keys[len(recs):, 16] = recs["ip_version"]
        # group by a 64-bit hash of the 17-byte key (sorting u64 is far cheaper than sorting bytes)
        allk = np.concatenate([self.talker_keys, keys.view("V17").ravel()])
        allb = np.concatenate([self.talker_bytes, total, total])
        uniq_h, first, inv = np.unique(_hash17(allk), return_index=True, return_inverse=True)
        self.talker_keys = allk[first]
        self.talker_bytes = np.bincount(inv.ravel(), weights=allb, minlength=len(uniq_h))
        if len(uniq_h) > self.max_talkers:  # bound memory on huge captures: keep the heaviest
            top = np.argsort(-self.talker_bytes, kind="stable")[: self.max_talkers // 2]
            self.talker_keys, self.talker_bytes = self.talker_keys[top], self.talker_bytes[top]
        size = (recs["orig_ip_bytes"] + recs["resp_ip_bytes"]).astype(np.int64)
        k = min(self.keep, len(recs))
        cand = recs[np.argpartition(-size, k - 1)[:k]] if len(recs) > k else recs
        pool = cand if self.largest is None else np.concatenate([self.largest, cand])
        order = np.argsort(-(pool["orig_ip_bytes"] + pool["resp_ip_bytes"]).astype(np.int64), kind="stable")
        self.largest = pool[order[: self.keep]].copy()


def _hash17(keys: np.ndarray) -> np.ndarray:
    """A 64-bit mix of 17-byte keys (16-byte address + version), vectorised."""
    raw = np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 17)
    a = raw[:, :8].copy().view(np.uint64).ravel()
    b = raw[:, 8:16].copy().view(np.uint64).ravel()
    v = raw[:, 16].astype(np.uint64)
    h = a * np.uint64(0x9E3779B97F4A7C15) ^ (b + v) * np.uint64(0xC2B2AE3D27D4EB4F)
    return h ^ (h >> np.uint64(29))


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
    top = stats.top_talkers(5)
    if top:
        lines.append("  top talkers (IP bytes, either direction):")
        for (raw, ver), b in top:
            lines.append(f"    {addr_text(raw, ver):<40} {_bytes(b):>12}")
    for err in errors:
        lines.append(f"  error     {err}")
    return "\n".join(lines) + "\n"


def format_flow_table(recs: np.ndarray | None, total: int = 0) -> str:
    """A readable table of the largest flows (shown when stdout is a terminal)."""
    if recs is None or not len(recs):
        return "no flows\n"
    title = (f"The {len(recs)} largest of {total:,} flows by IP bytes "
             "(write every flow with -o FILE, or pipe stdout, as ECS NDJSON or --format zeek-json/zeek-tsv):")
    head = f"{'start (UTC)':<20} {'proto':<6} {'originator':<30} {'responder':<30} {'state':<7} {'history':<12} {'pkts':>8} {'bytes':>11}"
    rows = [title, "", head, "-" * len(head)]
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

    def __init__(self, stream: TextIO = sys.stderr, delay: float = 0.5):
        self.stream, self.drawn = stream, False
        self.last = time.monotonic() + delay - 0.1  # nothing is drawn for inputs read within `delay`

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
