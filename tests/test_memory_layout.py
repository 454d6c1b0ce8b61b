"""Flow-table memory per flow (issue #3): Engine.table_memory() / active_flows() with the table full of
concurrent flows, and that table_memory() counts the out-of-line pools (TCP state, UDP state, the cold
records of TCP endpoints) as they fill.

The flows are one-packet floods from tests/floodgen.py (numpy, no capture file), all open at the same
time (a few seconds, below every timeout), with the capacity equal to the number of flows so that the
fixed parts (timer heap, wheel) are spread as they are at 1M flows. The bounds follow the layout in
ext/ph_flow_int.h (ph_flow 432 bytes, ph_tcp_st 248, ph_udp_st 40, ph_tcp_cold 44; slots 8 bytes at load
<= 3/4, heap entries 12) with a few percent of slack; the sizes themselves are pinned by _Static_assert.
"""
from __future__ import annotations

import numpy as np

import floodgen
from pyhunt import _ext
from pyhunt.flows import _DTYPE

T0 = 1_700_000_000 * 1_000_000_000
N = 1 << 15            # flows per run (and the table's capacity)
GAP = 50_000           # 32 Ki flows in 1.6 s: no timer fires


def _fill(recs: np.ndarray) -> tuple[int, int, list]:
    """Stream recs through an engine of capacity N; (table bytes, flows) at the fullest, and the records."""
    eng = _ext.Engine({"capacity": N}, _DTYPE)
    peak = [0, 0]
    out = []

    def sample():
        active = eng.active_flows()
        if active > peak[1]:
            peak[:] = [eng.table_memory(), active]

    floodgen.run(eng, recs, chunk=1 << 12, on_batch=out.append, on_chunk=sample)
    return peak[0], peak[1], out


def _tcp(n: int = N, *, bad_checksum: bool = False) -> np.ndarray:
    recs = floodgen.syn_flood(n, start_ns=T0, gap_ns=GAP)
    if bad_checksum:
        recs["l4"][:, 8] ^= 0x0101
    return recs


def _udp(n: int = N) -> np.ndarray:
    return floodgen.udp_flood(n, start_ns=T0 + GAP // 2, gap_ns=GAP)


def test_mixed_table_stays_under_its_bound():
    """3/4 TCP, 1/4 UDP (about the share of benchmarks/synth.py's captures): under 700 bytes per flow
    (was about 800 before the per-protocol pools)."""
    tcp, udp = _tcp(3 * N // 4), _udp(N // 4)
    recs = np.empty(N, floodgen.RECORD)     # (np.concatenate would make the big-endian fields native)
    recs[:len(tcp)], recs[len(tcp):] = tcp, udp
    recs = recs[np.lexsort((recs["ts_nsec"], recs["ts_sec"]))]
    mem, flows, out = _fill(recs)
    assert flows == N
    per_flow = mem / flows
    assert 600 < per_flow < 700, per_flow
    a = np.concatenate(out)
    assert len(a) == N and int(a["orig_pkts"].sum() + a["resp_pkts"].sum()) == N


def test_udp_flows_do_not_pay_for_tcp_state():
    """A UDP flow costs the common part and a 40-byte UDP record; a TCP flow carries its 248-byte TCP
    state on top: both out of line and both counted by table_memory()."""
    mem_udp, n_udp, _ = _fill(_udp())
    mem_tcp, n_tcp, _ = _fill(_tcp())
    assert n_udp == n_tcp == N
    assert mem_udp / N < 520, mem_udp / N
    assert mem_tcp / N < 730, mem_tcp / N
    # the TCP pool is counted: 248 - 40 bytes more per flow, to the pools' 1024-record chunks
    assert 200 * N <= mem_tcp - mem_udp <= 216 * N, (mem_tcp - mem_udp) / N


def test_cold_records_are_made_on_use_and_counted():
    """A bad TCP checksum is a scaled history letter ('C'), which needs the endpoint's cold record: the
    table grows by one 44-byte record per flow, and the letter is exported as before."""
    mem_ok, _, out_ok = _fill(_tcp())
    mem_bad, n_bad, out_bad = _fill(_tcp(bad_checksum=True))
    assert n_bad == N
    assert 40 * N <= mem_bad - mem_ok <= 48 * N, (mem_bad - mem_ok) / N
    ok, bad = np.concatenate(out_ok), np.concatenate(out_bad)
    assert {bytes(h).rstrip(b"\0") for h in ok["history"]} == {b"S"}
    assert {bytes(h).rstrip(b"\0") for h in bad["history"]} == {b"C"}
