"""The export queue's hand-over (Engine.take_raw): taking the whole queue hands its memory to Python
without a copy (a RecordBuffer), and when that buffer is dropped the engine fills it again for a
later batch. A batch that is still referenced must never be reused, and the records must be the
same whichever way the batches were taken or kept.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import floodgen
from pyhunt import _ext
from pyhunt.flows import FlowBatch, FlowMeter
from pyhunt.schema import dtype

T0 = 1_700_000_000 * 1_000_000_000
N = 6000


def _capture(tmp_path):
    recs = floodgen.syn_flood(N, start_ns=T0, gap_ns=1000)
    path = tmp_path / "syn.pcap"
    path.write_bytes(floodgen.PCAP_HEADER + recs.tobytes())
    return path


def _engine(path, capacity: int = 512, batch: int = 256) -> _ext.Engine:
    """An engine that has read the capture until `batch` records were queued (or to its end)."""
    eng = _ext.Engine({"capacity": capacity})
    eng.feed(path.read_bytes(), True)
    eng.run(batch)
    return eng


def _meter():
    # a small table: most flows are evicted while reading, so batches fill during the run
    return FlowMeter(capacity=512, batch_size=256)


def test_whole_queue_is_handed_over_without_a_copy(tmp_path):
    path = _capture(tmp_path)
    eng = _engine(path)
    n = eng.queued()
    assert n >= 256
    raw = eng.take_raw()
    assert isinstance(raw, _ext.RecordBuffer)
    assert len(raw) == n * _ext.RECORD_SIZE and eng.queued() == 0
    view = memoryview(raw)
    assert view.nbytes == len(raw) and not view.readonly
    arr = np.frombuffer(raw, dtype=dtype())
    assert len(arr) == n and arr.flags.writeable
    assert bytes(raw) == view.tobytes()
    assert set(arr["proto"]) == {6} and (arr["orig_pkts"] == 1).all()
    # the array keeps the records alive after the buffer's own name is gone
    del raw, view
    eng.run(256)
    assert (arr["orig_pkts"] == 1).all() and set(arr["resp_p"]) == {80}


def test_a_partial_take_copies_and_leaves_the_rest(tmp_path):
    path = _capture(tmp_path)
    eng = _engine(path)
    n = eng.queued()
    part = eng.take_raw(100)
    assert isinstance(part, bytearray) and len(part) == 100 * _ext.RECORD_SIZE
    assert eng.queued() == n - 100
    rest = eng.take_raw()
    assert len(rest) == (n - 100) * _ext.RECORD_SIZE and eng.queued() == 0
    first = np.frombuffer(part, dtype=dtype())
    second = np.frombuffer(rest, dtype=dtype())
    assert len(set(first["community_id"]) | set(second["community_id"])) == n


def test_dropped_batches_are_reused_and_kept_batches_are_not(tmp_path):
    path = _capture(tmp_path)
    # 1. every batch dropped at once (its memory goes back to the engine): keep copies
    copies, addrs = [], []
    for batch in _meter().read(str(path)):
        copies.append(bytes(batch._records))
        if isinstance(batch._records, _ext.RecordBuffer):
            addrs.append(np.frombuffer(batch._records, np.uint8).__array_interface__["data"][0])
    assert len(addrs) >= 4 and len(set(addrs)) < len(addrs), "dropped batches' memory was not reused"

    # 2. every batch kept alive, as arrays, until the end
    kept = [b.to_numpy() for b in _meter().read(str(path))]
    live = [a.__array_interface__["data"][0] for a in kept]
    assert len(set(live)) == len(live), "a batch still referenced was filled again"
    # 3. batches formatted as they come (the CLI's path) and dropped
    lines = b"".join(b.to_ndjson("zeek-json") for b in _meter().read(str(path)))

    got = np.frombuffer(b"".join(copies), dtype=dtype())
    held = np.concatenate(kept)
    assert len(got) == len(held) == N
    assert got.tobytes() == held.tobytes()
    assert FlowBatch(held).to_ndjson("zeek-json") == lines
    assert len(set(held["community_id"])) == N


def test_a_buffer_outlives_its_engine(tmp_path):
    path = _capture(tmp_path)
    eng = _engine(path)
    raw = eng.take_raw()
    expect = bytes(raw)
    del eng
    assert bytes(raw) == expect
    del raw   # freed here (its spare slot outlives the engine too)


def test_end_of_input_is_handed_over_in_batches(tmp_path):
    path = _capture(tmp_path)
    # a table that holds every flow: all N are exported by the end-of-input flush
    batches = list(FlowMeter(capacity=1 << 16, batch_size=1000).read(str(path)))
    assert [len(b) for b in batches] == [1000] * (N // 1000)
    assert all(isinstance(b._records, _ext.RecordBuffer) for b in batches)
    stepped = b"".join(bytes(b._records) for b in batches)

    eng = _engine(path, capacity=1 << 16, batch=1 << 20)
    assert eng.queued() == 0 and eng.active_flows() == N
    assert eng.finish(0) == 0
    whole = bytes(eng.take_raw())
    assert stepped == whole   # same records, same order (oldest first)


def test_time_advancing_mid_flush_ends_the_flush(tmp_path):
    path = _capture(tmp_path)
    eng = _engine(path, capacity=1 << 16, batch=1 << 20)
    assert eng.finish(0, 10) == N - 10
    assert eng.queued() == 10 and eng.active_flows() == N - 10
    first = np.frombuffer(eng.take_raw(), dtype=dtype())
    eng.advance(T0 + N * 1000)      # anything that changes the table ends the flush first
    assert eng.active_flows() == 0 and eng.queued() == N - 10
    rest = np.frombuffer(eng.take_raw(), dtype=dtype())
    assert eng.finish(0, 10) == 0 and eng.queued() == 0
    ts = np.concatenate([first["ts_start"], rest["ts_start"]])
    assert (np.diff(ts) >= 0).all() and len(set(np.concatenate([first, rest])["community_id"])) == N


def _records_with(mode: str, data: bytes, config: dict, batch: int) -> tuple[np.ndarray, int]:
    eng = _ext.Engine(config)
    eng.pipeline = mode
    assert eng.pipeline == mode
    eng.feed(data, True)
    out = []
    for _ in range(10_000):
        rc = eng.run(batch)
        out.append(np.frombuffer(bytes(eng.take_raw()), dtype=dtype()))
        if rc not in (_ext.RUN_BATCH, _ext.RUN_YIELD):
            break
    assert rc == _ext.RUN_EOF
    eng.finish()
    out.append(np.frombuffer(bytes(eng.take_raw()), dtype=dtype()))
    return np.concatenate(out), eng.ids_deferred()


def test_ids_computed_by_the_reading_thread_are_the_same(tmp_path):
    """Pipelined, the table exports records without their ids and the reading thread computes them
    while it waits for the table side (a flood: every packet evicts and exports a flow; ext/ph_engine.c,
    deferred ids); the table completes what is left after the call. The records must be byte-identical to one thread's, every
    id complete, also across the queue's growth (a small first batch, then larger ones)."""
    n = 120_000
    recs = np.empty(n, floodgen.RECORD)           # SYNs and UDP packets in turn, in time order
    recs[0::2] = floodgen.syn_flood(n // 2, start_ns=T0, gap_ns=2000)
    recs[1::2] = floodgen.udp_flood(n // 2, start_ns=T0 + 1000, gap_ns=2000)
    data = floodgen.PCAP_HEADER + recs.tobytes()
    config = {"capacity": 4096}
    one, none_deferred = _records_with("off", data, config, 1 << 14)
    assert none_deferred == 0
    with pytest.raises(ValueError, match="pipeline must be"):
        _ext.Engine({}).pipeline = "sometimes"
    piped, deferred = _records_with("on", data, config, 1 << 14)
    assert len(one) == len(piped) == n
    assert all(c.startswith(b"1:") and len(c) == 30 for c in piped["community_id"])
    assert one.tobytes() == piped.tobytes()
    if len(os.sched_getaffinity(0)) >= 2:
        # the reading side decodes a packet several times faster than the table evicts and exports
        # a flow, so it waits, and completes records meanwhile
        assert deferred > 0, "the reading thread completed no record"
