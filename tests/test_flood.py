"""Flood resistance of the flow table (issue #5): millions of one-packet flows against a configured
capacity. The table's memory stays at what the capacity costs, the process's resident memory grows by
no more than that plus the export batches, every flow beyond the capacity is evicted and counted
(`evictions`, end_reason ``evicted``), the evicted ones are the least recently active (docs/counters.md),
and every packet ends in exactly one disposition.

The floods are generated with numpy (tests/floodgen.py) and streamed into the engine in chunks, so
no capture file is written and the input itself does not dominate the memory measured.
"""
from __future__ import annotations

import numpy as np
import pytest

import floodgen
from pyhunt import _ext
from pyhunt.schema import dtype

_DTYPE = dtype()
from pyhunt.schema import END_REASONS

T0 = 1_700_000_000 * 1_000_000_000
EVICTED = END_REASONS.index("evicted")
END_OF_INPUT = END_REASONS.index("end_of_input")
WHEEL_BUCKET_NS = 1 << 27      # the inactivity wheel's granularity (ext/ph_flow_int.h PH_WHEEL_GRAN_SHIFT)
MiB = 1 << 20


def _dispositions(c: dict) -> int:
    return sum(c[name] for name in _ext.COUNTER_NAMES[2:_ext.N_DISPOSITIONS])


class _Tally:
    """What the test keeps of the exported records (not the records: 2M x 616 bytes)."""

    def __init__(self):
        self.by_reason = np.zeros(len(END_REASONS), np.int64)
        self.pkts = 0
        self.evicted_max_ts = -1
        self.survivor_min_ts = None
        self.records = []        # only records matching `keep`
        self.keep = None

    def __call__(self, a: np.ndarray) -> None:
        self.by_reason += np.bincount(a["end_reason"], minlength=len(END_REASONS))
        self.pkts += int(a["orig_pkts"].sum() + a["resp_pkts"].sum())
        ev = a["end_reason"] == EVICTED
        if ev.any():
            self.evicted_max_ts = max(self.evicted_max_ts, int(a["ts_start"][ev].max()))
        sv = a["end_reason"] == END_OF_INPUT
        if sv.any():
            m = int(a["ts_start"][sv].min())
            self.survivor_min_ts = m if self.survivor_min_ts is None else min(self.survivor_min_ts, m)
        if self.keep is not None:
            self.records.extend(a[self.keep(a)].tolist())


def test_syn_flood_memory_bounded_and_evictions_counted():
    n, cap, gap = 2_000_000, 65_536, 2_000       # 2 M SYNs in 4 s: below the 5 s attempt timer
    if floodgen.UNDER_ASAN:
        n, gap = 500_000, 8_000                  # the same 4 s, at a quarter of the cost
    recs = floodgen.syn_flood(n, start_ns=T0, gap_ns=gap)
    eng = _ext.Engine({"capacity": cap}, _DTYPE)
    tally = _Tally()
    table_mem: list[int] = []
    rss0 = floodgen.rss_bytes()
    rss_peak = rss0

    def sample():
        nonlocal rss_peak
        table_mem.append(eng.table_memory())
        rss_peak = max(rss_peak, floodgen.rss_bytes())
        assert eng.active_flows() <= cap

    floodgen.run(eng, recs, on_batch=tally, on_chunk=sample)
    c = eng.counters()

    # every packet accounted for, every flow beyond the capacity evicted and counted
    assert c["packets_read"] == n
    assert _dispositions(c) == n
    assert c["in_flow"] == n and c["flow_table_full"] == 0
    assert c["flows_created"] == n == c["flows_exported"]
    assert c["evictions"] == n - cap
    assert tally.by_reason[EVICTED] == n - cap
    assert tally.by_reason[END_OF_INPUT] == cap
    assert tally.pkts == n

    # memory: the table reaches what its capacity costs and never grows past it
    full = table_mem[-1]
    per_flow = full / cap
    assert max(table_mem) == full
    assert all(m == full for m in table_mem[len(table_mem) // 4:])
    growth = rss_peak - rss0
    if not floodgen.UNDER_ASAN:
        # slack: the export queue (up to 128 Ki records of 616 bytes), one batch taken out, one chunk
        assert growth < full + 192 * MiB, (growth, full)
        assert growth < n * per_flow / 4, "memory grew with the number of flows, not the capacity"

    # policy: the evicted flows are the least recently active ones (to the wheel's granularity)
    cutoff = T0 + (n - cap) * gap              # start of the first flow that should survive
    assert tally.evicted_max_ts < cutoff + WHEEL_BUCKET_NS
    assert tally.survivor_min_ts >= cutoff - WHEEL_BUCKET_NS
    print(f"\nSYN flood: {n:,} one-packet flows, capacity {cap:,}: table {full / MiB:.1f} MiB "
          f"({per_flow:.0f} B/flow), peak RSS growth {growth / MiB:.1f} MiB, evictions {c['evictions']:,}")


def _udp_flood_with_active_flow(n: int, cap: int, every: int):
    """A UDP flood of n one-packet flows and, every `every` flood packets, one packet of a
    legitimate flow (alternating directions) that stays active throughout."""
    gap = 10_000
    flood = floodgen.udp_flood(n, start_ns=T0, gap_ns=gap)
    k = n // every
    ts = T0 + np.arange(k, dtype=np.int64) * every * gap + gap // 2
    fwd = np.arange(k) % 2 == 0
    a, b = 0x0A000063, 0x0A000064
    legit = floodgen.packets(ts, np.where(fwd, a, b), np.where(fwd, b, a), np.where(fwd, 5000, 53),
                             np.where(fwd, 53, 5000), floodgen.UDP)
    recs = np.concatenate([flood, legit]).astype(floodgen.RECORD)  # numpy 2 canonicalizes the byte order
    recs = recs[np.argsort(recs["ts_sec"].astype(np.int64) * 1_000_000_000 + recs["ts_nsec"], kind="stable")]
    return recs, k, (a, b)


def test_udp_flood_dispositions_and_evictions():
    n, cap = (250_000 if floodgen.UNDER_ASAN else 1_000_000), 10_000
    recs, k, _ = _udp_flood_with_active_flow(n, cap, every=100)
    eng = _ext.Engine({"capacity": cap}, _DTYPE)
    tally = _Tally()
    floodgen.run(eng, recs, on_batch=tally, on_chunk=lambda: None)
    c = eng.counters()
    assert c["packets_read"] == n + k == _dispositions(c) == c["in_flow"]
    assert c["flow_table_full"] == 0
    assert c["evictions"] == tally.by_reason[EVICTED]
    assert c["flows_created"] == c["flows_exported"] == tally.by_reason.sum()
    # at least every flood flow beyond the capacity was evicted (the active flow may add a few)
    assert c["evictions"] >= n - cap
    assert tally.pkts == n + k


def test_active_flow_survives_flood():
    """docs/counters.md: the least recently active flow is evicted. A flow that sends a packet every
    100 flood packets is never the least recently active of 10,000, so it must survive as one flow."""
    n, cap = (250_000 if floodgen.UNDER_ASAN else 1_000_000), 10_000
    recs, k, (a, b) = _udp_flood_with_active_flow(n, cap, every=100)
    eng = _ext.Engine({"capacity": cap}, _DTYPE)
    tally = _Tally()
    ends = {a.to_bytes(4, "big"), b.to_bytes(4, "big")}

    def legit(arr):
        return np.array([bytes(o[:4]) in ends and bytes(r[:4]) in ends
                         for o, r in zip(arr["orig_h"], arr["resp_h"])], dtype=bool)

    tally.keep = legit
    floodgen.run(eng, recs, on_batch=tally, on_chunk=lambda: None)
    names = _DTYPE.names
    reasons = [END_REASONS[r[names.index("end_reason")]] for r in tally.records]
    assert reasons == ["end_of_input"], f"the active flow was split into {len(reasons)} records: {reasons[:5]}"
    rec = tally.records[0]
    assert rec[names.index("orig_pkts")] + rec[names.index("resp_pkts")] == k
    assert eng.counters()["evictions"] == n + 1 - cap   # every flood flow but the last cap - 1
