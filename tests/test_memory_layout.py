"""Flow-table memory per flow (issue #3): Engine.table_memory() / active_flows() with the table full of
concurrent flows, and that table_memory() counts the out-of-line pools (TCP state, UDP state, the cold
records of TCP endpoints) as they fill.

The flows are one-packet floods from tests/floodgen.py (numpy, no capture file), all open at the same
time (a few seconds, below every timeout), with the capacity equal to the number of flows so that the
fixed parts (timer heap, wheel) are spread as they are at 1M flows. The bounds follow the layout in
ext/ph_flow_int.h (ph_flow 408 bytes, ph_tcp_st 224, ph_udp_st 40, ph_tcp_cold 44; slots 8 bytes at load
<= 3/4, heap entries 12) with a few percent of slack; the sizes themselves are pinned by _Static_assert.
Before the per-protocol pools every flow cost 825 bytes here.
"""
from __future__ import annotations

import numpy as np

import floodgen
from pyhunt import _ext
from pyhunt.schema import dtype

_DTYPE = dtype()

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
    """3/4 TCP, 1/4 UDP (about the share of benchmarks/synth.py's captures): about 623 bytes per flow,
    under 650 (825 before the per-protocol pools)."""
    tcp, udp = _tcp(3 * N // 4), _udp(N // 4)
    recs = np.empty(N, floodgen.RECORD)     # (np.concatenate would make the big-endian fields native)
    recs[:len(tcp)], recs[len(tcp):] = tcp, udp
    recs = recs[np.lexsort((recs["ts_nsec"], recs["ts_sec"]))]
    mem, flows, out = _fill(recs)
    assert flows == N
    per_flow = mem / flows
    assert 580 < per_flow < 650, per_flow
    a = np.concatenate(out)
    assert len(a) == N and int(a["orig_pkts"].sum() + a["resp_pkts"].sum()) == N


def test_udp_flows_do_not_pay_for_tcp_state():
    """A UDP flow costs the common part and a 40-byte UDP record; a TCP flow carries its 224-byte TCP
    state on top: both out of line and both counted by table_memory()."""
    mem_udp, n_udp, _ = _fill(_udp())
    mem_tcp, n_tcp, _ = _fill(_tcp())
    assert n_udp == n_tcp == N
    assert mem_udp / N < 500, mem_udp / N     # about 485
    assert mem_tcp / N < 690, mem_tcp / N     # about 669
    # the TCP pool is counted: 224 - 40 bytes more per flow, to the pools' 1024-record chunks
    assert 176 * N <= mem_tcp - mem_udp <= 192 * N, (mem_tcp - mem_udp) / N


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


def test_flag_counters_past_16_bits_stay_exact():
    """TCP flag counters are 16 bits in the TCP state until one would pass 65,535; then all of them
    move to a 32-bit record (counted by table_memory()) and the exported counts stay exact."""
    n, back = 70_000, 10
    ts = T0 + np.arange(n + back, dtype=np.int64) * 1_000
    ones = np.ones(n + back, np.uint64)
    a, b = 0x0B000001 * ones, 0x0A000001 * ones
    fwd = floodgen.packets(ts[:n], a[:n], b[:n], 40000 * ones[:n], 80 * ones[:n], floodgen.TCP, tcp_flags=0x18)
    rev = floodgen.packets(ts[n:], b[n:], a[n:], 80 * ones[n:], 40000 * ones[n:], floodgen.TCP, tcp_flags=0x10)
    recs = np.empty(n + back, floodgen.RECORD)
    recs[:n], recs[n:] = fwd, rev
    eng = _ext.Engine({"capacity": 16}, _DTYPE)
    mem = []
    out = []
    floodgen.run(eng, recs, chunk=1 << 14, on_batch=out.append, on_chunk=lambda: mem.append(eng.table_memory()))
    r = np.concatenate(out)
    assert len(r) == 1
    assert (int(r["orig_pkts"][0]), int(r["resp_pkts"][0])) == (n, back)
    assert (int(r["orig_ack"][0]), int(r["orig_psh"][0]), int(r["orig_syn"][0])) == (n, n, 0)
    assert (int(r["resp_ack"][0]), int(r["resp_psh"][0])) == (back, 0)
    assert mem[-1] > mem[0]     # the wide record's chunk, made when the 65,535th ACK had been counted
