"""The capture-building library (tests/captures.py) checked against independent readers.

dpkt's pcap/pcapng readers and scapy's readers parse what the library writes; each test asserts
counts, exact timestamps (to the nanosecond where the format and the reader allow) and bytes. Where
a reader lacks a feature (dpkt: one pcapng section, first interface only, no Simple Packet Blocks;
scapy: ignores if_tsoffset) the test uses the other or says what it checks instead.
"""

from __future__ import annotations

import gzip
import io
import struct
from decimal import Decimal

import dpkt
import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether, Loopback, LoopbackOpenBSD
from scapy.layers.ppp import PPP, PPPoE
from scapy.utils import PcapNgReader, RawPcapNgReader, RawPcapReader, rdpcap

import captures as cap
from captures import Interface, Rec

T0 = 1705309200_123456789  # 2024-01-15 09:00:00.123456789 UTC, in ns


def ip4(n: int = 0) -> bytes:
    return bytes(IP(src="10.0.0.10", dst="192.0.2.10", id=n) / UDP(sport=40000 + n, dport=53) / (b"q%d" % n))


def ip6(n: int = 0) -> bytes:
    return bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=40000 + n, dport=80, flags="S"))


def frames(count: int = 3, step: int = 1_000_000_001):
    return [(T0 + i * step, cap.ethernet(ip4(i))) for i in range(count)]


def scapy_raw(data: bytes):
    """(bytes, metadata) records and the reader, via scapy's raw readers (pcap or pcapng)."""
    with RawPcapReader(io.BytesIO(data)) as r:
        return list(r)


# ---------------------------------------------------------------- timestamps

def test_ts_ns_converts_exactly():
    assert cap.ts_ns(T0) == T0
    assert cap.ts_ns(1705309200.123456) == 1705309200_123456000
    assert cap.ts_ns(Decimal("1705309200.000000001")) == 1705309200_000000001
    assert cap.ts_ns(0.5) == 500_000_000
    with pytest.raises(TypeError):
        cap.ts_ns(True)
    with pytest.raises(TypeError):
        cap.ts_ns("1705309200")  # type: ignore[arg-type]


# ---------------------------------------------------------------- classic pcap

@pytest.mark.parametrize("nano", [False, True], ids=["us", "ns"])
@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_pcap_read_by_dpkt_and_scapy(nano, big_endian):
    fr = frames()
    data = cap.pcap_bytes(fr, nano=nano, big_endian=big_endian)
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    assert data[:4] == struct.pack(">I" if big_endian else "<I", magic)
    assert len(data) == 24 + sum(16 + len(f) for _, f in fr)

    r = dpkt.pcap.Reader(io.BytesIO(data))
    assert (r.datalink(), r.snaplen) == (cap.LINKTYPE_ETHERNET, 65535)
    got = list(r)
    assert [buf for _, buf in got] == [f for _, f in fr]
    for (ts, _), (t, _) in zip(got, fr):
        sec, frac = divmod(t, 10**9)
        if nano:  # dpkt returns an exact Decimal for nanosecond files
            assert ts == Decimal(t) / 10**9
        else:
            assert ts == sec + (frac // 1000) / 1e6

    recs = scapy_raw(data)
    assert [buf for buf, _ in recs] == [f for _, f in fr]
    for (buf, meta), (t, f) in zip(recs, fr):
        sec, frac = divmod(t, 10**9)
        assert (meta.sec, meta.usec) == (sec, frac if nano else frac // 1000)
        assert meta.wirelen == meta.caplen == len(f)

    pkts = rdpcap(io.BytesIO(data))
    for n, (p, (t, _)) in enumerate(zip(pkts, fr)):
        assert p.time == (Decimal(t) / 10**9 if nano else Decimal(t // 1000) / 10**6)
        assert p[UDP].sport == 40000 + n


def test_pcap_from_scapy_packets_keeps_time_and_wirelen():
    a = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2") / UDP()
    b = a.copy()
    a.time = Decimal("1705309200.000000123")
    b.time = 1705309201.25
    b.wirelen = 1000
    data = cap.pcap_bytes([a, b], nano=True)
    recs = scapy_raw(data)
    assert [(m.sec, m.usec) for _, m in recs] == [(1705309200, 123), (1705309201, 250_000_000)]
    assert [m.wirelen for _, m in recs] == [len(a), 1000]
    assert [buf for buf, _ in recs] == [bytes(a), bytes(b)]


def test_pcap_snaplen_and_orig_len():
    frame = cap.ethernet(ip4(1)) + b"\xee" * 40  # trailer bytes past the IP packet
    recs = [(T0, frame), (T0 + 1, frame[:50], 1514)]
    data = cap.pcap_bytes(recs, snaplen=64, truncate=True, big_endian=True)
    r = dpkt.pcap.Reader(io.BytesIO(data))
    assert r.snaplen == 64
    assert [buf for _, buf in r] == [frame[:64], frame[:50]]
    assert [(m.caplen, m.wirelen) for _, m in scapy_raw(data)] == [(64, len(frame)), (50, 1514)]
    # without truncate the snaplen is just a header field, and the records may exceed it
    lying = cap.pcap_bytes(recs, snaplen=16)
    assert dpkt.pcap.Reader(io.BytesIO(lying)).snaplen == 16
    assert [(m.caplen, m.wirelen) for _, m in scapy_raw(lying)] == [(len(frame), len(frame)), (50, 1514)]


def test_pcap_record_offsets_walk_both_byte_orders():
    fr = frames(4)
    for be in (False, True):
        data = cap.pcap_bytes(fr, big_endian=be)
        offs = cap.pcap_record_offsets(data)
        expect, pos = [], 24
        for _, f in fr:
            expect.append(pos)
            pos += 16 + len(f)
        assert offs == expect
        # the caplen at each offset is the frame's length, in the file's byte order
        assert [struct.unpack_from(">I" if be else "<I", data, o + 8)[0] for o in offs] == [len(f) for _, f in fr]
    with pytest.raises(ValueError):
        cap.pcap_record_offsets(b"\x0a\x0d\x0d\x0a" + b"\0" * 20)


# ---------------------------------------------------------------- link layers

def _layers(p, *classes):
    return [p.getlayer(c) for c in classes]


LINK_CASES = {
    "ethernet": (cap.LINKTYPE_ETHERNET, lambda ip: cap.ethernet(ip)),
    "vlan": (cap.LINKTYPE_ETHERNET, lambda ip: cap.ethernet(ip, vlan=20, pcp=5)),
    "qinq": (cap.LINKTYPE_ETHERNET, lambda ip: cap.ethernet(ip, vlan=[100, 200])),
    "qinq-8100": (cap.LINKTYPE_ETHERNET, lambda ip: cap.ethernet(ip, vlan=[100, 200], tpids=[0x8100, 0x8100])),
    "sll": (cap.LINKTYPE_LINUX_SLL, lambda ip: cap.sll(ip, pkttype=4)),
    "sll2": (cap.LINKTYPE_LINUX_SLL2, lambda ip: cap.sll2(ip, pkttype=4, ifindex=7)),
    "null-le": (cap.LINKTYPE_NULL, lambda ip: cap.null_loop(ip)),
    "null-be": (cap.LINKTYPE_NULL, lambda ip: cap.null_loop(ip, big_endian=True)),
    "loop": (cap.LINKTYPE_LOOP, lambda ip: cap.null_loop(ip, big_endian=True)),
    "raw": (cap.LINKTYPE_RAW, cap.raw),
    "pppoe": (cap.LINKTYPE_ETHERNET, lambda ip: cap.pppoe(ip, session_id=0x2A)),
    "mpls": (cap.LINKTYPE_ETHERNET, lambda ip: cap.mpls(ip, [16, 17], ttl=9)),
}


@pytest.mark.parametrize("family", ["v4", "v6"])
@pytest.mark.parametrize("case", sorted(LINK_CASES))
def test_link_layer_frames_decode_in_scapy_and_dpkt(case, family):
    linktype, build = LINK_CASES[case]
    ip = ip4(7) if family == "v4" else ip6(7)
    l3 = IP if family == "v4" else IPv6
    frame = build(ip)
    p = rdpcap(io.BytesIO(cap.pcap_bytes([(T0, frame)], linktype=linktype)))[0]
    if case.startswith(("null", "loop")) and family == "v6":
        # scapy maps only its own platform's AF_INET6 (10 on Linux) to IPv6 here; dpkt checks below
        assert bytes(p)[4:] == ip
    else:
        assert bytes(p[l3]) == ip, p.summary()

    if case == "vlan":
        assert (p[Dot1Q].vlan, p[Dot1Q].prio) == (20, 5)
        assert [t.id for t in dpkt.ethernet.Ethernet(frame).vlan_tags] == [20]
    elif case.startswith("qinq"):
        outer = Dot1AD if case == "qinq" else Dot1Q
        assert p[outer].vlan == 100 and p[outer].payload[Dot1Q].vlan == 200
        assert struct.unpack("!H", frame[12:14])[0] == (0x88A8 if case == "qinq" else 0x8100)
        assert [t.id for t in dpkt.ethernet.Ethernet(frame).vlan_tags] == [100, 200]
    elif case == "sll":
        assert (p[CookedLinux].pkttype, p[CookedLinux].proto) == (4, 0x0800 if family == "v4" else 0x86DD)
        assert bytes(dpkt.sll.SLL(frame).data) == ip
    elif case == "sll2":
        assert (p[CookedLinuxV2].pkttype, p[CookedLinuxV2].ifindex) == (4, 7)
        s = dpkt.sll2.SLL2(frame)
        assert (s.intindex, s.type, bytes(s.data)) == (7, 4, ip)
    elif case.startswith(("null", "loop")):
        lo = dpkt.loopback.Loopback(frame)
        assert (lo.family, bytes(lo.data)) == ((2 if family == "v4" else 30), ip)
        if case == "null-le":
            assert p[Loopback].type == (2 if family == "v4" else 30)
        if case == "loop":
            assert p[LoopbackOpenBSD].type == (2 if family == "v4" else 30)
    elif case == "pppoe":
        assert p[PPPoE].sessionid == 0x2A and p[PPP].proto == (0x21 if family == "v4" else 0x57)
        e = dpkt.ethernet.Ethernet(frame)
        assert e.type == 0x8864 and e.data.session == 0x2A
    elif case == "mpls":
        assert (p[MPLS].label, p[MPLS].s, p[MPLS].ttl) == (16, 0, 9)
        assert (p[MPLS].payload.label, p[MPLS].payload.s) == (17, 1)
        e = dpkt.ethernet.Ethernet(frame)
        assert [(m.val, m.s, m.ttl) for m in e.mpls_labels] == [(16, 0, 9), (17, 1, 9)]
        assert bytes(e.data) == ip
    elif case in ("ethernet", "raw"):
        assert bytes(p) == frame


@pytest.mark.parametrize("af6", [24, 28, 30])
def test_null_loopback_ipv6_families(af6):
    for be in (False, True):
        frame = cap.null_loop(ip6(), big_endian=be, af6=af6)
        assert frame[:4] == struct.pack(">I" if be else "<I", af6)
        lo = dpkt.loopback.Loopback(frame)
        assert (lo.family, bytes(lo.data)) == (af6, ip6())
        assert isinstance(lo.data, dpkt.ip6.IP6)


def test_link_helpers_reject_what_they_cannot_guess():
    with pytest.raises(ValueError):
        cap.ethernet(b"\x00\x01")  # not IP: ethertype needed
    assert cap.ethernet(b"\x00\x01", ethertype=0x0806)[12:14] == b"\x08\x06"
    with pytest.raises(ValueError):
        cap.ethernet(ip4(), vlan=[1, 2], tpids=[0x8100])
    with pytest.raises(ValueError):
        cap.mpls(ip4(), [])


# ---------------------------------------------------------------- pcapng

def block_types(data: bytes):
    return [t for _, t in cap.pcapng_block_offsets(data)]


@pytest.mark.parametrize("extra", [False, True], ids=["plain", "extra-blocks"])
@pytest.mark.parametrize("tsresol", [6, 9])
@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_pcapng_one_interface(big_endian, tsresol, extra):
    fr = frames(4, step=1_000_000_007)
    data = cap.pcapng_bytes([(cap.LINKTYPE_ETHERNET, tsresol)], [(0, t, f) for t, f in fr],
                            big_endian=big_endian, extra_blocks=extra)
    assert data[8:12] == (b"\x1a\x2b\x3c\x4d" if big_endian else b"\x4d\x3c\x2b\x1a")
    types = block_types(data)
    assert types.count(cap.BT_EPB) == 4 and types[:2] == [cap.BT_SHB, cap.BT_IDB]
    if extra:
        assert {cap.BT_NRB, cap.BT_CUSTOM, cap.BT_LOCAL, cap.BT_ISB} <= set(types)
    else:
        assert set(types) == {cap.BT_SHB, cap.BT_IDB, cap.BT_EPB}

    r = dpkt.pcapng.Reader(io.BytesIO(data))
    assert r.datalink() == cap.LINKTYPE_ETHERNET
    got = list(r)
    assert [buf for _, buf in got] == [f for _, f in fr]
    for (ts, _), (t, _) in zip(got, fr):
        ticks = cap.pcapng_ts(t, tsresol)
        assert ts == ticks / float(10**tsresol)
        assert abs(ts - t / 1e9) < 1e-6

    recs = scapy_raw(data)
    assert [buf for buf, _ in recs] == [f for _, f in fr]
    for (_, m), (t, _) in zip(recs, fr):
        ticks = (m.tshigh << 32) | m.tslow
        assert (m.linktype, m.tsresol) == (cap.LINKTYPE_ETHERNET, 10**tsresol)
        assert ticks == cap.pcapng_ts(t, tsresol)
        assert cap.pcapng_ns(ticks, tsresol) == (t if tsresol == 9 else t // 1000 * 1000)

    with PcapNgReader(io.BytesIO(data)) as r:
        times = [p.time for p in r]
    assert times == [Decimal(t if tsresol == 9 else t // 1000) / 10**tsresol for t, _ in fr]


@pytest.mark.parametrize("lazy", [False, True], ids=["idbs-first", "idbs-lazy"])
def test_pcapng_several_interfaces_and_resolutions(lazy):
    ifaces = [Interface(cap.LINKTYPE_ETHERNET, 6, name="eth0"), Interface(cap.LINKTYPE_RAW, 9),
              Interface(cap.LINKTYPE_LINUX_SLL, cap.tsresol_pow2(20)), Interface(cap.LINKTYPE_NULL, None),
              (cap.LINKTYPE_ETHERNET, 3, 128)]
    build = {0: cap.ethernet, 1: cap.raw, 2: cap.sll, 3: cap.null_loop, 4: cap.ethernet}
    plan = [2, 0, 1, 3, 4, 0, 2, 1]
    recs = [Rec(i, T0 + n * 333_333_333, build[i](ip4(n)), comment="n=%d" % n if n % 3 == 0 else None,
                flags=1 if n == 1 else None) for n, i in enumerate(plan)]
    data = cap.pcapng_bytes(ifaces, recs, lazy_interfaces=lazy, big_endian=lazy)
    types = block_types(data)
    if lazy:  # interface 2 is used first, so IDBs 0..2 come just before the first packet
        assert types[1:8] == [cap.BT_NRB, cap.BT_CUSTOM, cap.BT_LOCAL] + [cap.BT_IDB] * 3 + [cap.BT_EPB]
        assert types.count(cap.BT_IDB) == 5
        idb3 = types.index(cap.BT_IDB, 7)  # interfaces 3 and 4 appear when first used
        assert types[idb3 - 1:idb3 + 4] == [cap.BT_EPB, cap.BT_IDB, cap.BT_EPB, cap.BT_IDB, cap.BT_EPB]
    else:
        assert types[1:6] == [cap.BT_IDB] * 5

    resol = {0: 10**6, 1: 10**9, 2: 2**20, 3: 10**6, 4: 10**3}
    got = scapy_raw(data)
    assert len(got) == len(recs)
    for (buf, m), r in zip(got, recs):
        spec = cap._interface(ifaces[r.iface])
        ticks = (m.tshigh << 32) | m.tslow
        assert m.linktype == spec.linktype
        assert m.tsresol == resol[r.iface]
        assert ticks == cap.pcapng_ts(r.ts, spec.tsresol)
        # the time scapy derives from its own reading of if_tsresol is the floor of ours
        exact, seen = Decimal(r.ts) / 10**9, Decimal(ticks) / m.tsresol
        assert 0 <= exact - seen < Decimal(1) / m.tsresol
        assert 0 <= r.ts - cap.pcapng_ns(ticks, spec.tsresol) < 10**9 // m.tsresol + 1
        assert buf == r.data  # interface 4's snaplen (128) is a header field here: no truncate
        assert m.comments == ([r.comment.encode()] if r.comment else None)
        assert m.direction == (1 if r.flags else None)
        assert m.ifname == (b"eth0" if r.iface == 0 else None)

    with PcapNgReader(io.BytesIO(data)) as rd:
        pkts = list(rd)
    assert [bytes(p[IP]) for p in pkts] == [ip4(n) for n in range(len(plan))]
    assert pkts[2].time == Decimal(T0 + 2 * 333_333_333) / 10**9  # the ns interface is exact

    # dpkt reads the first interface's parameters only: with the Ethernet/us interface first,
    # the packets of that interface come back with their microsecond timestamps.
    if not lazy:
        d = list(dpkt.pcapng.Reader(io.BytesIO(data)))
        assert len(d) == len(recs)
        assert [ts for (ts, _), r in zip(d, recs) if r.iface == 0] == \
            [cap.pcapng_ts(r.ts, 6) / 1e6 for r in recs if r.iface == 0]


def test_pcapng_simple_and_obsolete_packet_blocks():
    big = cap.ethernet(ip4(1)) + b"\xaa" * 60
    recs = [Rec(0, 0, big, kind="spb"), Rec(0, T0, big), Rec(0, T0 + 1000, big, kind="pb"),
            Rec(0, 0, big[:40], kind="spb", orig_len=1514)]
    data = cap.pcapng_bytes([Interface(cap.LINKTYPE_ETHERNET, 6, snaplen=80)], recs, truncate=True)
    assert block_types(data).count(cap.BT_SPB) == 2 and block_types(data).count(cap.BT_PB) == 1
    # without truncate only the SPBs are cut (their format needs it); EPB and PB keep everything
    whole = scapy_raw(cap.pcapng_bytes([Interface(cap.LINKTYPE_ETHERNET, 6, snaplen=80)], recs))
    assert [len(buf) for buf, _ in whole] == [80, len(big), len(big), 40]

    got = scapy_raw(data)
    assert [buf for buf, _ in got] == [big[:80], big[:80], big[:80], big[:40]]
    assert [m.wirelen for _, m in got] == [len(big), len(big), len(big), 1514]
    assert [m.tshigh is None for _, m in got] == [True, False, False, True]  # SPBs carry no time
    assert [(m.tshigh << 32) | m.tslow for _, m in got[1:3]] == [T0 // 1000, (T0 + 1000) // 1000]

    # dpkt skips Simple Packet Blocks but reads Enhanced and obsolete Packet Blocks
    d = list(dpkt.pcapng.Reader(io.BytesIO(data)))
    assert [buf for _, buf in d] == [big[:80], big[:80]]
    assert [ts for ts, _ in d] == [(T0 // 1000) / 1e6, (T0 + 1000) // 1000 / 1e6]

    with pytest.raises(ValueError):
        cap.pcapng_bytes([(1, 6), (1, 6)], [Rec(1, 0, big, kind="spb")])
    with pytest.raises(ValueError):
        cap.pcapng_bytes([(1, 6)], [Rec(0, 0, big, kind="xyz")])


def test_pcapng_if_tsoffset_is_applied_by_dpkt():
    offset = 1705309200
    t = T0 + 5_000_000_000
    data = cap.pcapng_bytes([Interface(cap.LINKTYPE_ETHERNET, 9, tsoffset=offset)], [(0, t, cap.ethernet(ip4()))])
    ticks = cap.pcapng_ts(t, 9, offset)
    assert ticks == t - offset * 10**9
    assert cap.pcapng_ns(ticks, 9, offset) == t
    (ts, buf), = dpkt.pcapng.Reader(io.BytesIO(data))
    assert ts == offset + ticks / 1e9 and buf == cap.ethernet(ip4())
    (_, m), = scapy_raw(data)  # scapy ignores the offset: only the stored ticks are comparable
    assert (m.tshigh << 32) | m.tslow == ticks


@pytest.mark.parametrize("section_length", [False, True])
def test_pcapng_two_sections_with_different_byte_orders(section_length):
    a = [(0, T0 + i, cap.ethernet(ip4(i))) for i in range(3)]
    b = [(0, T0 + 10**9 + i, cap.ethernet(ip6(i))) for i in range(2)]
    s1 = cap.pcapng_bytes([(cap.LINKTYPE_ETHERNET, 9)], a, section_length=section_length)
    s2 = cap.pcapng_bytes([(cap.LINKTYPE_ETHERNET, 9)], b, big_endian=True, section_length=section_length)
    data = s1 + s2
    offs = cap.pcapng_block_offsets(data)
    assert [o for o, t in offs if t == cap.BT_SHB] == [0, len(s1)]
    for sec, e in ((s1, "<"), (s2, ">")):
        shb_len, = struct.unpack_from(e + "I", sec, 4)
        length, = struct.unpack_from(e + "q", sec, 16)
        assert length == (len(sec) - shb_len if section_length else -1)

    # scapy follows the byte order of each section; both sections' interface 0 are alike here,
    # because scapy keeps interfaces across sections
    got = scapy_raw(data)
    assert [buf for buf, _ in got] == [f for _, _, f in a + b]
    assert [(m.tshigh << 32) | m.tslow for _, m in got] == [t for _, t, _ in a + b]
    # dpkt reads one section: the first one is whole
    first = list(dpkt.pcapng.Reader(io.BytesIO(s1)))
    assert [buf for _, buf in first] == [f for _, _, f in a]


def test_pcapng_scapy_packets_go_to_interface_zero():
    p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2") / UDP()
    p.time = Decimal("1705309200.987654321")
    data = cap.pcapng_bytes([(cap.LINKTYPE_ETHERNET, 9)], [p], extra_blocks=False)
    (buf, m), = scapy_raw(data)
    assert buf == bytes(p) and (m.tshigh << 32) | m.tslow == 1705309200_987654321


# ---------------------------------------------------------------- gzip and files

def test_gzip_is_deterministic_and_readable(tmp_path):
    pcap = cap.pcap_bytes(frames(), nano=True)
    ng = cap.pcapng_bytes([(cap.LINKTYPE_ETHERNET, 9)], [(0, t, f) for t, f in frames()])
    for raw_bytes, name in ((pcap, "a.pcap.gz"), (ng, "sub/dir/b.pcapng.gz")):
        z = cap.gzip_bytes(raw_bytes)
        assert z == cap.gzip_bytes(raw_bytes)
        assert z[:2] == b"\x1f\x8b" and z[4:8] == b"\0\0\0\0"  # mtime 0
        assert gzip.decompress(z) == raw_bytes
        path = cap.write(tmp_path / name, z)
        assert path.read_bytes() == z
        pkts = rdpcap(str(path))  # scapy reads gzip'd captures transparently
        assert [p.time for p in pkts] == [Decimal(t) / 10**9 for t, _ in frames()]
        assert [bytes(p) for p in pkts] == [f for _, f in frames()]
