"""Stage "decode": reading plus decoding every packet to L4 (link layer, 802.1Q, IPv4/IPv6,
TCP/UDP/ICMP, checksums verified as the engine does), without the flow table.

Cases: ``mix`` (10% of flows VLAN-tagged, 20% IPv6) and ``vxlan`` (the same plus 30% of flows in
VXLAN). pyhunt is ext/ph_decode.c driven by benchmarks/c/phbench.c; the peers decode the inner
frame of VXLAN packets too.
"""
import pytest

CASES = {"mix": "mix10k", "vxlan": "tunnel"}


@pytest.mark.parametrize("case", [pytest.param("mix", marks=pytest.mark.guard), "vxlan"])
def test_decode_pyhunt(benchmark, bench, case):
    cap = bench.capture(CASES[case])
    st = bench.stages

    def run():
        r = st.decode(cap.path)
        return r.packets, r.ok

    r = bench.run(benchmark, stage="decode", case=case, tool="pyhunt", cap=cap, fn=run)
    benchmark.extra_info["decoded"] = int(r[1])
    assert r[0] == cap.packets


@pytest.mark.parametrize("case", ["mix", "vxlan"])
def test_decode_dpkt(benchmark, bench, case):
    bench.need_peer("dpkt")
    import peers
    cap = bench.capture(CASES[case])
    r = bench.run(benchmark, stage="decode", case=case, tool="dpkt", cap=cap, peer=True,
                  fn=lambda: peers.dpkt_decode(cap.path))
    benchmark.extra_info["decoded"] = int(r[1])
    assert r[0] == cap.packets


@pytest.mark.parametrize("case", ["mix", "vxlan"])
def test_decode_scapy(benchmark, bench, case):
    bench.need_peer("scapy")
    import peers
    cap = bench.capture(CASES[case])
    r = bench.run(benchmark, stage="decode", case=case, tool="scapy", cap=cap, peer=True,
                  fn=lambda: peers.scapy_decode(cap.path, bench.scapy_limit))
    benchmark.extra_info["decoded"] = int(r[1])
