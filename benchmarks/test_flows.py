"""Stage "flows": the whole engine (reader, decoder, flow table with Zeek's state machine,
features, Community ID, export queue to numpy batches) through pyhunt.FlowMeter.

Cases: ``10k``, ``100k``, ``1M`` concurrent flows (every flow open from the first tenth of the
capture to its last tenth) and ``flood`` (every packet a new flow). Peers on the same file: the
dpkt and scapy aggregations, nfstream (statistical_analysis on) and ``c-probe``, a bare C flow
meter (benchmarks/c/phbench.c) as the floor. The physical limit of the 10k case, reading its
page-cached file (``cat``: read(2) into 1 MiB; ``mmap``: sum every word of the mapping), is measured
here too, right after pyhunt, so that the two are close in time on a shared machine.
"""
import pytest

CASES = {"10k": "mix10k", "100k": "conc100k", "1M": "conc1m", "flood": "flood"}


def _pyhunt_flows(pyhunt_mod, path):
    meter = pyhunt_mod.FlowMeter()
    flows = 0
    for batch in meter.read(path):
        flows += len(batch.to_numpy())
    c = meter.counters
    if meter.errors:
        raise RuntimeError(f"pyhunt could not read {path}: {meter.errors[0]}")
    return c["packets_read"], flows, c["in_flow"]


@pytest.mark.parametrize("case", [pytest.param("10k", marks=pytest.mark.guard), "100k", "1M", "flood"])
def test_flows_pyhunt(benchmark, bench, pyhunt_mod, case):
    cap = bench.capture(CASES[case])
    r = bench.run(benchmark, stage="flows", case=case, tool="pyhunt", cap=cap,
                  fn=lambda: _pyhunt_flows(pyhunt_mod, cap.path))
    benchmark.extra_info.update(flows_found=int(r[1]), in_flow=int(r[2]))
    assert r[0] == cap.packets


@pytest.mark.parametrize("tool", ["cat", "mmap"])
def test_flows_physical_limit(benchmark, bench, tool):
    bench.need_peer("c")
    cap = bench.capture(CASES["10k"])
    fn = bench.stages.cat if tool == "cat" else bench.stages.touch
    r = bench.run(benchmark, stage="flows", case="10k", tool=tool, cap=cap,
                  fn=lambda: (cap.packets, fn(cap.path).bytes))
    assert r[1] == cap.file_bytes


@pytest.mark.parametrize("case", [pytest.param("10k", marks=pytest.mark.guard), "100k", "1M", "flood"])
def test_flows_dpkt(benchmark, bench, case):
    bench.need_peer("dpkt")
    import peers
    cap = bench.capture(CASES[case])
    r = bench.run(benchmark, stage="flows", case=case, tool="dpkt", cap=cap, peer=True,
                  fn=lambda: peers.dpkt_flows(cap.path))
    benchmark.extra_info["flows_found"] = int(r[1])
    assert r[0] == cap.packets


@pytest.mark.parametrize("case", ["10k", "flood"])
def test_flows_scapy(benchmark, bench, case):
    bench.need_peer("scapy")
    import peers
    cap = bench.capture(CASES[case])
    r = bench.run(benchmark, stage="flows", case=case, tool="scapy", cap=cap, peer=True,
                  fn=lambda: peers.scapy_flows(cap.path, bench.scapy_limit))
    benchmark.extra_info["flows_found"] = int(r[1])


@pytest.mark.parametrize("case", ["10k", "100k", "1M", "flood"])
def test_flows_nfstream(benchmark, bench, case):
    bench.need_peer("nfstream")
    import peers
    cap = bench.capture(CASES[case])
    r = bench.run(benchmark, stage="flows", case=case, tool="nfstream", cap=cap, peer=True,
                  fn=lambda: (cap.packets,) + peers.nfstream_flows(cap.path))
    benchmark.extra_info.update(flows_found=int(r[2]), nfstream_packets=int(r[1]))


@pytest.mark.parametrize("case", [pytest.param("10k", marks=pytest.mark.guard), "100k", "1M", "flood"])
def test_flows_cprobe(benchmark, bench, case):
    bench.need_peer("c")
    cap = bench.capture(CASES[case])
    st = bench.stages

    def run():
        r = st.probe(cap.path)
        return r.packets, r.flows

    r = bench.run(benchmark, stage="flows", case=case, tool="c-probe", cap=cap, fn=run)
    benchmark.extra_info["flows_found"] = int(r[1])
    assert r[0] == cap.packets
