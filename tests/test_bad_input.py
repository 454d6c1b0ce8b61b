"""Bad input: every damaged capture gives one clear line or a counted drop, never a crash.

Flows read before the damage are still written.
"""
from __future__ import annotations

import json
import os
import random
import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from captures import pcap_bytes, pcapng_bytes
from conftest import run_cli

# explicit MACs: scapy would otherwise ARP for the destination to fill them in
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def _udp_pkts(n: int, t0: float = 1_600_000_000.0) -> list[tuple[float, bytes]]:
    out = []
    for i in range(n):
        p = Ether(src=MAC_A, dst=MAC_B) / IP(src=f"10.0.0.{1 + i % 5}", dst="10.0.1.1") / UDP(sport=1000 + i % 5, dport=53) / (b"x" * 20)
        out.append((t0 + i * 0.01, bytes(p)))
    return out


def _replay(path, *extra):
    return run_cli("replay", "--format", "zeek-json", "-o", "-", *extra, str(path))


def _assert_one_clear_line(r, *needles):
    err = r.stderr.decode()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("pyhunt: error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_empty_file(tmp_path):
    p = tmp_path / "empty.pcap"
    p.write_bytes(b"")
    r = _replay(p)
    assert r.returncode == 1
    _assert_one_clear_line(r, "empty.pcap", "empty")
    assert r.stdout == b""


def test_truncated_global_header(tmp_path):
    p = tmp_path / "short.pcap"
    p.write_bytes(pcap_bytes(_udp_pkts(1))[:10])
    r = _replay(p)
    assert r.returncode == 1
    _assert_one_clear_line(r, "short.pcap")


@pytest.mark.parametrize("cut", [5, 17, 30])
def test_truncated_record_keeps_earlier_flows(tmp_path, cut):
    data = pcap_bytes(_udp_pkts(20))
    p = tmp_path / "cut.pcap"
    p.write_bytes(data[:-cut])
    r = _replay(p)
    assert r.returncode == 1
    line = _assert_one_clear_line(r, "cut.pcap", "byte")
    flows = [json.loads(x) for x in r.stdout.splitlines()]
    assert sum(f["orig_pkts"] + f["resp_pkts"] for f in flows) == 19, line
    # the offset named is the start of the damaged record
    assert str(len(data) - len(_udp_pkts(1)[0][1]) - 16) in line


def test_huge_length_field(tmp_path):
    data = bytearray(pcap_bytes(_udp_pkts(3)))
    # second record header starts after the global header and the first record
    off = 24 + 16 + len(_udp_pkts(1)[0][1])
    struct.pack_into("<II", data, off + 8, 0xFFFFFFF0, 0xFFFFFFF0)
    p = tmp_path / "huge.pcap"
    p.write_bytes(bytes(data))
    r = _replay(p)
    assert r.returncode == 1
    _assert_one_clear_line(r, "huge.pcap", str(off))
    assert len(r.stdout.splitlines()) == 1


def test_snaplen_lies_are_tolerated(tmp_path):
    p = tmp_path / "snap.pcap"
    p.write_bytes(pcap_bytes(_udp_pkts(10), snaplen=16))  # records longer than the snaplen claims
    r = _replay(p)
    assert r.returncode == 0, r.stderr.decode()
    flows = [json.loads(x) for x in r.stdout.splitlines()]
    assert sum(f["orig_pkts"] for f in flows) == 10


def test_garbage_file(tmp_path):
    p = tmp_path / "garbage.bin"
    p.write_bytes(random.Random(1).randbytes(5000))
    r = _replay(p)
    assert r.returncode == 1
    _assert_one_clear_line(r, "garbage.bin", "not a pcap")


def test_garbage_packets_are_counted(tmp_path):
    rng = random.Random(7)
    pkts = _udp_pkts(5) + [(1_600_000_001.0 + i, rng.randbytes(rng.randrange(0, 120))) for i in range(300)]
    p = tmp_path / "junk.pcap"
    p.write_bytes(pcap_bytes(pkts))
    r = run_cli("replay", "--format", "zeek-json", "-o", os.devnull, "-C", str(p))
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    assert "packets" in err and "305" in err.replace(",", "")
    assert "Traceback" not in err


def test_unknown_link_type_is_counted(tmp_path):
    p = tmp_path / "lt.pcap"
    p.write_bytes(pcap_bytes(_udp_pkts(4), linktype=147))  # LINKTYPE_USER0
    r = run_cli("replay", "--format", "zeek-json", "-o", "-", str(p))
    assert r.returncode == 0
    assert r.stdout == b""
    assert "unsupported_linktype" in r.stderr.decode()


def test_pcapng_bad_block_length(tmp_path):
    good = pcapng_bytes(interfaces=[(1, 6)], records=[(0, int(1.6e18) + i * 1000, d, "epb")
                                                       for i, (_, d) in enumerate(_udp_pkts(4))],
                        extra_blocks=False)
    data = bytearray(good)
    # find the last EPB (type 6) and corrupt its length
    off = data.rfind(struct.pack("<I", 6))
    struct.pack_into("<I", data, off + 4, 13)
    p = tmp_path / "bad.pcapng"
    p.write_bytes(bytes(data))
    r = _replay(p)
    assert r.returncode == 1
    _assert_one_clear_line(r, "bad.pcapng", str(off))
    assert sum(json.loads(x)["orig_pkts"] for x in r.stdout.splitlines()) == 3


def test_truncated_gzip(tmp_path):
    import gzip
    data = gzip.compress(pcap_bytes(_udp_pkts(200)))
    p = tmp_path / "cut.pcap.gz"
    p.write_bytes(data[: len(data) // 2])
    r = _replay(p)
    assert r.returncode == 1
    _assert_one_clear_line(r, "cut.pcap.gz")
    assert r.stdout  # flows from the part that decompressed


def test_missing_file_is_a_usage_error(tmp_path):
    r = _replay(tmp_path / "nope.pcap")
    assert r.returncode == 2
    _assert_one_clear_line(r, "nope.pcap")


def test_bad_option_value():
    r = run_cli("replay", "--cid-seed", "70000", "x.pcap")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr.decode()
    assert "cid-seed" in r.stderr.decode()


def test_tcp_with_bad_data_offset_is_counted(tmp_path):
    pkt = Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, dataofs=2)
    p = tmp_path / "tcp.pcap"
    p.write_bytes(pcap_bytes([(1.0, bytes(pkt))]))
    r = run_cli("replay", "-C", "--format", "zeek-json", "-o", "-", str(p))
    assert r.returncode == 0
    assert "bad_l4_header" in r.stderr.decode()
