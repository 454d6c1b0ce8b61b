"""Stage "export": flow records out of the engine, flows/s and MB/s.

``numpy``: a FlowMeter has read the capture without finishing (setup, not timed); timed is the end
of input: every open flow becomes a record (Zeek's final state, features, Community ID) and the
records are taken as numpy batches. ``ecs``, ``zeek-json``, ``zeek-tsv``: every record of the
capture, serialized in batches of 65,536 by FlowBatch.to_ndjson (C), as the CLI does.
"""
import numpy as np
import pytest

FORMATS = ("ecs", "zeek-json", "zeek-tsv")


def _units(rec_size):
    return lambda r: {"flows": int(r[0]), "out_bytes": int(r[1]), "record_size": rec_size}


def test_export_numpy(benchmark, bench, pyhunt_mod):
    cap = bench.capture("export")
    from pyhunt import _ext

    def setup():
        meter = pyhunt_mod.FlowMeter()
        for _ in meter.read(cap.path, finish=False):
            pass
        return (meter.engine,), {}

    def run(eng):
        eng.finish(0)
        n = 0
        while eng.queued():
            n += len(eng.take())
        return n, n * _ext.RECORD_SIZE

    bench.run(benchmark, stage="export", case="numpy", tool="pyhunt", cap=cap, fn=run, setup=setup,
              warmup=0, units=_units(_ext.RECORD_SIZE))


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_ndjson(benchmark, bench, pyhunt_mod, fmt):
    cap = bench.capture("export")
    from pyhunt import _ext
    meter = pyhunt_mod.FlowMeter()
    recs = np.concatenate([b.to_numpy() for b in meter.read(cap.path)])
    batches = [pyhunt_mod.FlowBatch(recs[i:i + 65536]) for i in range(0, len(recs), 65536)]

    def run():
        out = 0
        for b in batches:
            out += len(b.to_ndjson(fmt, observer="bench"))
        return len(recs), out

    bench.run(benchmark, stage="export", case=fmt, tool="pyhunt", cap=cap, fn=run, units=_units(_ext.RECORD_SIZE))
