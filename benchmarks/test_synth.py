"""The benchmark capture generator makes what it says (not a benchmark: a check of the inputs).

Every packet must land in a flow with valid checksums, and the engine, the dpkt aggregation and
the C probe must all find exactly --flows flows (every flow has its own 5-tuple).
"""
import pytest

import synth

SPECS = {
    "pcap": synth.Spec(20_000, 1_000),
    "pcapng": synth.Spec(20_000, 1_000, format="pcapng", ipv6_share=0.5, vlan_share=0.5),
    "flood": synth.Spec(5_000, 5_000, flood=True, duration=120.0),
}


@pytest.mark.guard
@pytest.mark.parametrize("name", sorted(SPECS))
def test_synth_capture_is_valid(tmp_path, pyhunt_mod, name):
    spec = SPECS[name]
    path = str(tmp_path / f"c.{spec.format}")
    summary = synth.write_capture(spec, path)
    assert summary["packets"] == spec.packets
    meter = pyhunt_mod.FlowMeter()
    flows = sum(len(b) for b in meter.read(path))
    c = meter.counters
    assert not meter.errors
    assert c["packets_read"] == spec.packets
    assert c["in_flow"] == spec.packets, {k: v for k, v in c.items() if v}
    assert flows == spec.flows
    dpkt_peer = pytest.importorskip("dpkt_peer")
    counters = {}
    assert len(dpkt_peer.aggregate(path, counters)) == spec.flows
    assert counters["skipped"] == 0


def test_synth_is_deterministic(tmp_path):
    spec = synth.Spec(3_000, 300, vxlan_share=0.3)
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    synth.write_capture(spec, str(a))
    synth.write_capture(spec, str(b))
    assert a.read_bytes() == b.read_bytes()


def test_cprobe_counts_the_flows(tmp_path, bench):
    spec = synth.Spec(20_000, 1_000)
    path = str(tmp_path / "c.pcap")
    synth.write_capture(spec, path)
    r = bench.stages.probe(path)
    assert (r.packets, r.flows, r.ok) == (spec.packets, spec.flows, spec.packets)
    d = bench.stages.decode(path)
    assert (d.packets, d.ok) == (spec.packets, spec.packets)
