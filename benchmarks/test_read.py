"""Stage "read": capture reading only (pcap and pcapng), packets/s and GB/s.

pyhunt's reader is ext/ph_capture.c driven over the memory-mapped file by benchmarks/c/phbench.c
(the engine's read loop without decoding). The floors read the same page-cached file:
``cat`` (read(2) into a 1 MiB buffer) and ``mmap`` (sum every 64-bit word of the mapping).
"""
import pytest

CASES = {"pcap": "mix10k", "pcapng": "mix10k-ng"}


@pytest.mark.parametrize("case", [pytest.param("pcap", marks=pytest.mark.guard), "pcapng"])
def test_read_pyhunt(benchmark, bench, case):
    cap = bench.capture(CASES[case])
    st = bench.stages
    r = bench.run(benchmark, stage="read", case=case, tool="pyhunt", cap=cap,
                  fn=lambda: (st.read(cap.path).packets,))
    assert r[0] == cap.packets


@pytest.mark.parametrize("case,tool", [pytest.param("pcap", "cat", marks=pytest.mark.guard), ("pcap", "mmap"),
                                       ("pcapng", "cat"), ("pcapng", "mmap")])
def test_read_floor(benchmark, bench, case, tool):
    bench.need_peer("c")
    cap = bench.capture(CASES[case])
    st = bench.stages
    fn = st.cat if tool == "cat" else st.touch
    r = bench.run(benchmark, stage="read", case=case, tool=tool, cap=cap,
                  fn=lambda: (cap.packets, fn(cap.path).bytes))
    assert r[1] == cap.file_bytes


@pytest.mark.parametrize("case", ["pcap", "pcapng"])
def test_read_dpkt(benchmark, bench, case):
    bench.need_peer("dpkt")
    import peers
    cap = bench.capture(CASES[case])
    r = bench.run(benchmark, stage="read", case=case, tool="dpkt", cap=cap, peer=True,
                  fn=lambda: peers.dpkt_read(cap.path))
    assert r[0] == cap.packets


@pytest.mark.parametrize("case", ["pcap", "pcapng"])
def test_read_scapy(benchmark, bench, case):
    bench.need_peer("scapy")
    import peers
    cap = bench.capture(CASES[case])
    limit = bench.scapy_limit * 10  # the raw readers do not dissect: ten times more packets
    bench.run(benchmark, stage="read", case=case, tool="scapy", cap=cap, peer=True,
              fn=lambda: peers.scapy_read(cap.path, limit))
