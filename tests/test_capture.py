"""The capture readers (ext/ph_capture.c) and the sources that feed them (pyhunt/sources.py).

Captures are written byte by byte with tests/captures.py in every variant: classic pcap in both byte
orders and resolutions, modified pcap, pcapng with several interfaces of different link types and
time resolutions, Simple and obsolete Packet Blocks, blocks to skip, several sections. The flows that
come out must carry the exact timestamps; the same bytes read through mmap, stdin, gzip and any chunk
size must give byte-identical output; a damaged capture must be reported at the right byte offset.
"""
from __future__ import annotations

import gzip
import io
import json
import struct
import sys

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

import captures as cap
import pyhunt.sources
from captures import Interface, Rec
from conftest import run_cli
from pyhunt import CaptureError, FlowMeter, _ext, dtype
from pyhunt.schema import CONN_STATES

T0 = 1705309200_123456789  # 2024-01-15 09:00:00.123456789 UTC, in ns
NS = 10**9
DISPOSITIONS = _ext.COUNTER_NAMES[2:_ext.N_DISPOSITIONS]
C4, S4 = "10.1.0.1", "10.2.0.2"
C6, S6 = "2001:db8::1", "2001:db8::2"


# ---------------------------------------------------------------- helpers

def udp4(sport: int, payload: bytes = b"", *, reply: bool = False) -> bytes:
    """An IPv4 UDP datagram between the client (port sport) and the server's port 53."""
    if reply:
        return bytes(IP(src=S4, dst=C4) / UDP(sport=53, dport=sport) / payload)
    return bytes(IP(src=C4, dst=S4) / UDP(sport=sport, dport=53) / payload)


def udp6(sport: int, payload: bytes = b"") -> bytes:
    return bytes(IPv6(src=C6, dst=S6) / UDP(sport=sport, dport=53) / payload)


def read(*paths, **meter_kw) -> tuple[np.ndarray, dict, FlowMeter]:
    """Replay captures in-process: records (one array), counters, and the meter (for its errors)."""
    meter = FlowMeter(**meter_kw)
    batches = [b.to_numpy() for b in meter.read(*map(str, paths))]
    recs = np.concatenate(batches, dtype=dtype()) if batches else np.empty(0, dtype=dtype())
    c = meter.counters
    assert sum(c[k] for k in DISPOSITIONS) == c["packets_read"]
    return recs, c, meter


def ndjson(*paths, fmt: str = "ecs", **meter_kw) -> bytes:
    meter = FlowMeter(**meter_kw)
    out = b"".join(b.to_ndjson(fmt, observer="sensor-1") for b in meter.read(*map(str, paths)))
    assert meter.errors == []
    return out


def by_sport(recs) -> dict[int, tuple[int, int, int]]:
    """orig_p -> (ts_start, ts_end, packets)."""
    return {int(r["orig_p"]): (int(r["ts_start"]), int(r["ts_end"]), int(r["orig_pkts"] + r["resp_pkts"]))
            for r in recs}


# ---------------------------------------------------------------- classic pcap: timestamps

# nanosecond offsets chosen to catch rounding, unit and sign mistakes; the last is 2106-02-07,
# the largest time an unsigned 32-bit seconds field can hold
TIMES = [0, 999, NS - 1, T0, T0 + 1, T0 + 999, T0 + 1000, T0 + 500_000_001, (2**32 - 1) * NS + NS - 1]


@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_pcap_timestamps_are_exact(tmp_path, nano, big_endian):
    frames = [(t, cap.ethernet(udp4(40000 + i, b"t"))) for i, t in enumerate(TIMES)]
    frames.insert(-1, (T0 + 2 * NS + 7, cap.ethernet(udp4(40003, b"u"))))  # a second packet for the T0 flow
    path = cap.write(tmp_path / "t.pcap", cap.pcap_bytes(frames, nano=nano, big_endian=big_endian))
    recs, c, meter = read(path)
    assert meter.errors == [] and c["packets_read"] == len(frames) == c["in_flow"]

    def want(t):  # microsecond files keep the time truncated to the microsecond
        return t if nano else t - t % 1000

    got = by_sport(recs)
    expect = {40000 + i: (want(t), want(t), 1) for i, t in enumerate(TIMES)}
    expect[40003] = (want(T0), want(T0 + 2 * NS + 7), 2)
    assert got == expect


def test_ecs_and_zeek_times_come_from_the_record(tmp_path):
    path = cap.write(tmp_path / "t.pcap", cap.pcap_bytes([(T0, cap.ethernet(udp4(40000, b"q"))),
                                                          (T0 + 1_500_000_000, cap.ethernet(udp4(40000, b"r")))],
                                                         nano=True))
    (d,) = [b for b in FlowMeter().read(str(path))][0].to_dicts()
    assert d["ts"] == pytest.approx(T0 / NS, abs=1e-6)
    assert d["duration"] == pytest.approx(1.5, abs=1e-9)


def _modified_pcap(frames, big_endian: bool) -> bytes:
    """The 'modified' (Kuznetzov) pcap format: magic 0xa1b2cd34 and 24-byte record headers
    (ifindex, protocol, pkt_type and padding after the usual 16 bytes); microseconds."""
    e = ">" if big_endian else "<"
    out = [struct.pack(e + "IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, cap.LINKTYPE_ETHERNET)]
    for t, data in frames:
        sec, frac = divmod(t, NS)
        out.append(struct.pack(e + "IIII", sec, frac // 1000, len(data), len(data)))
        out.append(struct.pack(e + "IHBB", 3, 0x0800, 0, 0))
        out.append(data)
    return b"".join(out)


@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_modified_pcap(tmp_path, big_endian):
    frames = [(T0 + i * 1_000_777, cap.ethernet(udp4(40000 + i % 2, b"m" * i))) for i in range(5)]
    path = cap.write(tmp_path / "m.pcap", _modified_pcap(frames, big_endian))
    recs, c, meter = read(path)
    assert meter.errors == []
    assert c["in_flow"] == 5
    us = [t - t % 1000 for t, _ in frames]
    assert by_sport(recs) == {40000: (us[0], us[4], 3), 40001: (us[1], us[3], 2)}
    assert int(recs[recs["orig_p"] == 40000]["orig_ip_bytes"][0]) == sum(28 + i for i in (0, 2, 4))


@pytest.mark.parametrize("version", [(2, 2), (2, 3)])
def test_old_pcap_with_swapped_length_fields(tmp_path, version):
    """Before 2.3 caplen and len were written the other way round (libpcap swaps them back; for 2.3
    when caplen > len). The frames here were captured whole except the second, cut at 50 bytes."""
    full = cap.ethernet(udp4(40000, b"s" * 60))
    e = "<"
    out = [struct.pack(e + "IHHiIII", 0xA1B2C3D4, version[0], version[1], 0, 0, 65535, 1)]
    for i, (data, orig) in enumerate([(full, len(full)), (full[:50], len(full)), (full, len(full))]):
        sec, frac = divmod(T0 + i * 1000, NS)
        out.append(struct.pack(e + "IIII", sec, frac // 1000, orig, len(data)) + data)  # fields swapped
    path = cap.write(tmp_path / "old.pcap", b"".join(out))
    recs, c, meter = read(path)
    assert meter.errors == []
    assert c["in_flow"] == 3 and int(recs["orig_ip_bytes"][0]) == 3 * 88


# ---------------------------------------------------------------- classic pcap: snap lengths, link type bits

def tcp_exchange(sport: int = 40000, payload: int = 100) -> list[tuple[bool, bytes]]:
    """A whole TCP connection (handshake, data both ways, FIN/ACK teardown) as (is_orig, IP bytes)."""
    c, s = dict(src=C4, dst=S4), dict(src=S4, dst=C4)
    o, r = dict(sport=sport, dport=80), dict(sport=80, dport=sport)
    pk = [
        (True, IP(**c) / TCP(**o, flags="S", seq=1000)),
        (False, IP(**s) / TCP(**r, flags="SA", seq=5000, ack=1001)),
        (True, IP(**c) / TCP(**o, flags="A", seq=1001, ack=5001)),
        (True, IP(**c) / TCP(**o, flags="PA", seq=1001, ack=5001) / (b"g" * payload)),
        (False, IP(**s) / TCP(**r, flags="PA", seq=5001, ack=1001 + payload) / (b"h" * 2 * payload)),
        (True, IP(**c) / TCP(**o, flags="FA", seq=1001 + payload, ack=5001 + 2 * payload)),
        (False, IP(**s) / TCP(**r, flags="FA", seq=5001 + 2 * payload, ack=1002 + payload)),
        (True, IP(**c) / TCP(**o, flags="A", seq=1002 + payload, ack=5002 + 2 * payload)),
    ]
    return [(orig, bytes(p)) for orig, p in pk]


def test_snaplen_cut_records_still_count(tmp_path):
    """Records cut to a 64-byte snaplen: the TCP headers are whole, so every packet counts with the
    IP length of its header, and the data sizes come from the sequence numbers."""
    frames = [(T0 + i * 1000, cap.ethernet(ip)) for i, (_, ip) in enumerate(tcp_exchange())]
    path = cap.write(tmp_path / "s.pcap", cap.pcap_bytes(frames, snaplen=64, truncate=True))
    recs, c, meter = read(path)
    assert c["bytes_read"] == sum(min(64, len(f)) for _, f in frames)
    (f,) = recs
    assert (int(f["orig_pkts"]), int(f["resp_pkts"])) == (5, 3)
    assert (int(f["orig_ip_bytes"]), int(f["resp_ip_bytes"])) == (4 * 40 + 140, 2 * 40 + 240)
    assert (int(f["orig_bytes"]), int(f["resp_bytes"])) == (100, 200)
    assert CONN_STATES[f["conn_state"]] == "SF"


def test_snaplen_cutting_the_headers(tmp_path):
    ip = udp4(40000, b"x" * 30)
    frames = [(T0, cap.ethernet(ip))] * 3
    for snap, reason in [(10, "truncated_link"), (14 + 12, "truncated_ip"), (14 + 24, "truncated_l4"),
                         (14 + 28, "in_flow")]:
        path = cap.write(tmp_path / f"{snap}.pcap", cap.pcap_bytes(frames, snaplen=snap, truncate=True))
        _, c, _ = read(path)
        assert {k: c[k] for k in DISPOSITIONS if c[k]} == {reason: 3}, snap


def test_fcs_bits_in_the_link_type(tmp_path):
    """The upper bits of the pcap link type say that frames end with an FCS (here 4 bytes): the link
    type is still Ethernet, and the FCS is not IP data."""
    linktype = cap.LINKTYPE_ETHERNET | (1 << 26) | (2 << 28)
    frames = [(T0 + i, cap.ethernet(udp4(40000, b"f" * 10)) + b"\xde\xad\xbe\xef") for i in range(3)]
    recs, c, _ = read(cap.write(tmp_path / "fcs.pcap", cap.pcap_bytes(frames, linktype=linktype)))
    assert c["in_flow"] == 3 and int(recs["orig_ip_bytes"][0]) == 3 * 38


# ---------------------------------------------------------------- pcapng

IFACES = [
    Interface(cap.LINKTYPE_ETHERNET, tsresol=9, name="eth0"),
    Interface(cap.LINKTYPE_RAW, tsresol=6, tsoffset=100),
    Interface(cap.LINKTYPE_LINUX_SLL, tsresol=cap.tsresol_pow2(20)),
    Interface(cap.LINKTYPE_LINUX_SLL2, tsresol=None),  # no option: microseconds
    Interface(cap.LINKTYPE_IPV6, tsresol=cap.tsresol_pow2(30), tsoffset=-1_000_000),
    Interface(cap.LINKTYPE_NULL, tsresol=3),
    Interface(cap.LINKTYPE_IPV4, tsresol=cap.tsresol_pow2(0), tsoffset=7),  # whole seconds
]


def frame_for(linktype: int, ip: bytes) -> bytes:
    return {cap.LINKTYPE_ETHERNET: cap.ethernet, cap.LINKTYPE_LINUX_SLL: cap.sll,
            cap.LINKTYPE_LINUX_SLL2: cap.sll2, cap.LINKTYPE_NULL: cap.null_loop}.get(linktype, cap.raw)(ip)


def expected_ns(t: int, iface: Interface) -> int:
    """What a correct reader reports for time t written on this interface (floor to its unit)."""
    return cap.pcapng_ns(cap.pcapng_ts(t, iface.tsresol, iface.tsoffset), iface.tsresol, iface.tsoffset)


@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
@pytest.mark.parametrize("lazy", [False, True], ids=["idbs-first", "idbs-lazy"])
def test_pcapng_interfaces_of_different_link_types_and_resolutions(tmp_path, big_endian, lazy):
    """One flow per interface (its own port), two packets each, interleaved across interfaces."""
    recs_in, expect = [], {}
    for k in range(2):
        for i, iface in enumerate(IFACES):
            t = T0 + i * 1_234_567 + k * 1_000_003_001
            ip = udp6(40000 + i, b"p" * i) if iface.linktype == cap.LINKTYPE_IPV6 else udp4(40000 + i, b"p" * i)
            recs_in.append(Rec(i, t, frame_for(iface.linktype, ip)))
            start = expect.get(40000 + i, (expected_ns(t, iface),))[0]
            expect[40000 + i] = (start, expected_ns(t, iface), k + 1)
    data = cap.pcapng_bytes(IFACES, recs_in, big_endian=big_endian, lazy_interfaces=lazy)
    recs, c, meter = read(cap.write(tmp_path / "m.pcapng", data))
    assert meter.errors == []
    assert c["in_flow"] == c["packets_read"] == len(recs_in)
    assert by_sport(recs) == expect
    # the coarse interfaces really lost precision: the test would notice a reader ignoring if_tsresol
    assert expect[40006][0] % NS == 0 and expect[40005][0] % 10**6 == 0


def test_pcapng_epb_spb_and_obsolete_pb(tmp_path):
    """A Simple Packet Block has no timestamp: it takes the previous packet's. The obsolete Packet
    Block is read like an EPB. SPB data is cut to the interface's snaplen."""
    ifc = Interface(cap.LINKTYPE_ETHERNET, tsresol=9, snaplen=64)
    big = cap.ethernet(bytes(IP(src=C4, dst=S4) / TCP(sport=40009, dport=80, flags="S") / (b"z" * 100)))
    t1, t2, t3 = T0, T0 + 10_000_001, T0 + 20_000_002
    recs_in = [
        Rec(0, t1, cap.ethernet(udp4(40001, b"a"))),
        Rec(0, 0, cap.ethernet(udp4(40002, b"b")), kind="spb"),
        Rec(0, 0, big, kind="spb"),  # 154 bytes on the wire, 64 kept
        Rec(0, t2, cap.ethernet(udp4(40002, b"c")), comment="options after the data", flags=2),
        Rec(0, t3, cap.ethernet(udp4(40001, b"d")), kind="pb", comment="an obsolete block", flags=1),
    ]
    data = cap.pcapng_bytes([ifc], recs_in)
    recs, c, _ = read(cap.write(tmp_path / "spb.pcapng", data))
    assert c["in_flow"] == c["packets_read"] == 5
    assert c["bytes_read"] == 43 + 43 + 64 + 43 + 43
    assert by_sport(recs) == {40001: (t1, t3, 2), 40002: (t1, t2, 2), 40009: (t1, t1, 1)}
    syn = recs[recs["orig_p"] == 40009][0]
    assert int(syn["orig_ip_bytes"]) == 140  # from the IP header, though only 64 bytes were kept


def test_pcapng_blocks_to_skip_change_nothing(tmp_path):
    """Name resolution, custom, local-use and statistics blocks between the packets are skipped."""
    recs_in = [(0, T0 + i * 1000, cap.ethernet(udp4(40000 + i % 3, b"k" * i))) for i in range(9)]
    plain = cap.pcapng_bytes([(cap.LINKTYPE_ETHERNET, 9)], recs_in, extra_blocks=False, shb_options=False)
    extra = cap.pcapng_bytes([(cap.LINKTYPE_ETHERNET, 9)], recs_in, extra_blocks=True, section_length=True)
    types = {t for _, t in cap.pcapng_block_offsets(extra)}
    assert {0x4, 0x5, 0xBAD, 0x80000ABC} <= types  # the blocks to skip are there
    a = ndjson(cap.write(tmp_path / "plain.pcapng", plain))
    b = ndjson(cap.write(tmp_path / "extra.pcapng", extra))
    assert a == b and len(a.splitlines()) == 3


def test_pcapng_two_sections_of_different_byte_order(tmp_path):
    """Interface ids start again in each section; a flow spanning both sections is one flow; a Simple
    Packet Block in the second section belongs to that section's interface 0 (raw IP here)."""
    t1, t2, t3 = T0, T0 + 2_000_000_003, T0 + 3_000_000_000
    s1 = cap.pcapng_bytes([Interface(cap.LINKTYPE_ETHERNET, tsresol=6)],
                          [Rec(0, t1, cap.ethernet(udp4(40000, b"one")))])
    s2_ifaces = [Interface(cap.LINKTYPE_RAW, tsresol=9),
                 Interface(cap.LINKTYPE_LINUX_SLL, tsresol=cap.tsresol_pow2(24))]
    s2 = cap.pcapng_bytes(s2_ifaces, [Rec(1, t2, cap.sll(udp4(40000, b"two", reply=True))),
                                      Rec(0, 0, cap.raw(udp4(40000, b"three")), kind="spb"),
                                      Rec(0, t3, cap.raw(udp4(40001, b"four")))], big_endian=True)
    assert s1[8:12] == b"\x4d\x3c\x2b\x1a" and s2[8:12] == b"\x1a\x2b\x3c\x4d"
    recs, c, meter = read(cap.write(tmp_path / "two.pcapng", s1 + s2))
    assert meter.errors == [] and c["in_flow"] == 4
    t2_read = expected_ns(t2, s2_ifaces[1])
    assert by_sport(recs) == {40000: (t1 - t1 % 1000, t2_read, 3), 40001: (t3, t3, 1)}
    f = recs[recs["orig_p"] == 40000][0]
    assert (int(f["orig_pkts"]), int(f["resp_pkts"])) == (2, 1)


# ---------------------------------------------------------------- streaming: mmap, stdin, gzip, chunk sizes

def mixed_capture() -> tuple[bytes, bytes]:
    """A pcapng (three interfaces, SPBs, skipped blocks) and a classic pcap, a few hundred packets of
    TCP and UDP flows between them."""
    ng_recs = []
    for n in range(12):
        for i, (orig, ip) in enumerate(tcp_exchange(41000 + n, payload=17 * n + 1)):
            t = T0 + n * 37_000_001 + i * 1_000_003
            which = (n + i) % 3
            frame = [cap.ethernet, cap.raw, cap.sll][which](ip)
            ng_recs.append(Rec(which, t, frame))
        ng_recs.append(Rec(0, 0, cap.ethernet(udp4(42000 + n, b"s" * n)), kind="spb"))
    ng = cap.pcapng_bytes([Interface(cap.LINKTYPE_ETHERNET, 9), Interface(cap.LINKTYPE_RAW, 6),
                           Interface(cap.LINKTYPE_LINUX_SLL, cap.tsresol_pow2(26))], ng_recs)
    frames = [(T0 + 5 * NS + i * 777_001, cap.ethernet(udp4(43000 + i % 7, b"u" * (i % 50), reply=i % 2 == 1)))
              for i in range(120)]
    return ng, cap.pcap_bytes(frames, nano=True, big_endian=True)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    d = tmp_path_factory.mktemp("mixed")
    ng, pc = mixed_capture()
    return {"ng": cap.write(d / "m.pcapng", ng), "pcap": cap.write(d / "m.pcap", pc),
            "ng.gz": cap.write(d / "m.pcapng.gz", cap.gzip_bytes(ng)),
            "pcap.gz": cap.write(d / "m.pcap.gz", cap.gzip_bytes(pc)), "bytes": (ng, pc)}


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


@pytest.mark.parametrize("kind", ["ng", "pcap"])
@pytest.mark.parametrize("chunk", [1, 7, 1000, 8 << 20])
def test_streaming_gives_identical_output(monkeypatch, mixed, kind, chunk):
    reference = ndjson(mixed[kind])  # memory-mapped
    assert len(reference.splitlines()) == {"ng": 24, "pcap": 7}[kind]
    monkeypatch.setattr(pyhunt.sources, "CHUNK", chunk)
    assert ndjson(mixed[kind + ".gz"]) == reference
    data = mixed["bytes"][0 if kind == "ng" else 1]
    _stdin(monkeypatch, data)
    assert ndjson("-") == reference
    _stdin(monkeypatch, gzip.compress(data))
    assert ndjson("-") == reference


def test_streaming_through_the_cli(mixed):
    reference = ndjson(mixed["ng"], mixed["pcap"])
    args = ("replay", "-q", "--observer", "sensor-1", "-f", "ecs", "-o", "-")
    ng, pc = mixed["bytes"]
    r = run_cli(*args, "-", str(mixed["pcap.gz"]), input=ng)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == reference
    r = run_cli(*args, str(mixed["ng.gz"]), "-", input=gzip.compress(pc))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == reference


def test_several_captures_are_one_stream(tmp_path):
    """A TCP connection split across a pcap and a gzip'd pcapng is one flow, as if in one file."""
    pk = tcp_exchange()
    frames = [(T0 + i * 1_000_000, cap.ethernet(ip)) for i, (_, ip) in enumerate(pk)]
    whole = cap.write(tmp_path / "whole.pcap", cap.pcap_bytes(frames, nano=True))
    a = cap.write(tmp_path / "a.pcap", cap.pcap_bytes(frames[:3], nano=True))
    b = cap.write(tmp_path / "b.pcapng.gz", cap.gzip_bytes(cap.pcapng_bytes(
        [(cap.LINKTYPE_ETHERNET, 9)], [(0, t, f) for t, f in frames[3:]])))
    one, c1, _ = read(whole)
    two, c2, m2 = read(a, b)
    assert m2.errors == []
    assert len(two) == 1 and all(np.array_equal(one[n], two[n]) for n in dtype().names)
    assert {k: v for k, v in c2.items() if k != "bytes_read"} == {k: v for k, v in c1.items() if k != "bytes_read"}
    f = two[0]
    assert CONN_STATES[f["conn_state"]] == "SF" and f["history"] == b"ShADdFf"  # the responder sends no pure ACK
    # the last ACK, after both FINs, does not extend the duration (Zeek's last_time)
    assert (int(f["ts_start"]), int(f["ts_end"])) == (T0, T0 + 6_000_000)


# ---------------------------------------------------------------- damaged captures: the byte offset

def _error(meter) -> CaptureError:
    (err,) = meter.errors
    assert isinstance(err, CaptureError)
    return err


UDP_FRAMES = [(T0 + i * 1000, cap.ethernet(udp4(40000 + i % 4, b"d" * (i % 9)))) for i in range(20)]


@pytest.mark.parametrize("kept", [1, 15, 16, 17, 40])
def test_truncated_pcap_names_the_record(tmp_path, monkeypatch, kept):
    """The file ends `kept` bytes into the last record (inside its 16-byte header, or its data)."""
    data = cap.pcap_bytes(UDP_FRAMES)
    last = cap.pcap_record_offsets(data)[-1]
    assert len(data) - last > 40
    path = cap.write(tmp_path / "cut.pcap", data[:last + kept])
    recs, c, meter = read(path)
    err = _error(meter)
    assert (err.source, err.offset) == (str(path), last)
    assert "truncated" in err.message
    assert c["packets_read"] == 19 == int((recs["orig_pkts"] + recs["resp_pkts"]).sum())
    # the same offset when the bytes arrive in small pieces through gzip
    monkeypatch.setattr(pyhunt.sources, "CHUNK", 7)
    gz = cap.write(tmp_path / "cut.pcap.gz", cap.gzip_bytes(data[:last + kept]))
    _, c, meter = read(gz)
    assert _error(meter).offset == last and c["packets_read"] == 19


@pytest.mark.parametrize("chunk", [1000, None],
                         ids=["chunk-1000", "default-chunk"])
def test_truncated_gzip_keeps_what_decompressed(tmp_path, monkeypatch, chunk):
    """The packets that decompressed before the damage are read (less at most one read's worth); the
    error names a record boundary."""
    import zlib
    frames = [(T0 + i * 1000, cap.ethernet(udp4(40000 + i % 13, bytes([i % 251]) * (i % 97)))) for i in range(400)]
    data = cap.pcap_bytes(frames)
    z = cap.gzip_bytes(data)
    available = len(zlib.decompressobj(31).decompress(z[:len(z) // 2]))
    offsets = cap.pcap_record_offsets(data)
    assert 5000 < available < len(data)
    if chunk:
        monkeypatch.setattr(pyhunt.sources, "CHUNK", chunk)
    _, c, meter = read(cap.write(tmp_path / "cut.pcap.gz", z[:len(z) // 2]))
    err = _error(meter)
    assert "truncated gzip" in err.message
    assert err.offset in offsets and c["packets_read"] == offsets.index(err.offset)
    assert max(o for o in offsets if o <= available - 1000) <= err.offset <= available


def test_pcap_record_with_an_absurd_length(tmp_path):
    data = bytearray(cap.pcap_bytes(UDP_FRAMES, big_endian=True))
    off = cap.pcap_record_offsets(bytes(data))[5]
    struct.pack_into(">I", data, off + 8, 0x7FFFFFFF)
    recs, c, meter = read(cap.write(tmp_path / "huge.pcap", bytes(data)))
    assert _error(meter).offset == off and c["packets_read"] == 5


@pytest.mark.parametrize("damage", ["length-not-multiple-of-4", "length-below-12", "trailing-length",
                                    "caplen-beyond-block", "unknown-interface", "cut-inside-block"])
def test_pcapng_damage_names_the_block(tmp_path, damage):
    recs_in = [(0, T0 + i * 1000, f) for i, (_, f) in enumerate(UDP_FRAMES[:6])]
    data = bytearray(cap.pcapng_bytes([(cap.LINKTYPE_ETHERNET, 9)], recs_in, extra_blocks=False))
    epbs = [o for o, t in cap.pcapng_block_offsets(bytes(data)) if t == 6]
    off = epbs[4]
    blen = struct.unpack_from("<I", data, off + 4)[0]
    if damage == "length-not-multiple-of-4":
        struct.pack_into("<I", data, off + 4, blen + 2)
    elif damage == "length-below-12":
        struct.pack_into("<I", data, off + 4, 8)
    elif damage == "trailing-length":
        struct.pack_into("<I", data, off + blen - 4, blen + 4)
    elif damage == "caplen-beyond-block":
        struct.pack_into("<I", data, off + 20, blen)
    elif damage == "unknown-interface":
        struct.pack_into("<I", data, off + 8, 1)
    else:
        data = data[:off + blen - 3]
    recs, c, meter = read(cap.write(tmp_path / "bad.pcapng", bytes(data)))
    assert _error(meter).offset == off
    assert c["packets_read"] == 4 == int((recs["orig_pkts"] + recs["resp_pkts"]).sum())


def test_pcapng_bad_second_section_header(tmp_path):
    s1 = cap.pcapng_bytes([(cap.LINKTYPE_ETHERNET, 9)], [(0, T0, UDP_FRAMES[0][1])], extra_blocks=False)
    s2 = bytearray(cap.pcapng_bytes([(cap.LINKTYPE_ETHERNET, 9)], [(0, T0 + 1, UDP_FRAMES[1][1])], big_endian=True))
    bad_bom = bytes(s2[:8]) + b"\x1a\x2b\x3c\x4e" + bytes(s2[12:])
    _, c, meter = read(cap.write(tmp_path / "bom.pcapng", s1 + bad_bom))
    assert _error(meter).offset == len(s1) + 8 and c["packets_read"] == 1
    struct.pack_into(">H", s2, 12, 2)  # major version 2
    _, c, meter = read(cap.write(tmp_path / "ver.pcapng", s1 + bytes(s2)))
    assert _error(meter).offset == len(s1) + 12 and c["packets_read"] == 1


@pytest.mark.parametrize("data, offset, words", [
    (b"", 0, "empty"),
    (b"\xd4\xc3\xb2", 0, "truncated"),
    (b"hello, this is not a capture file at all", 0, "not a pcap"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 1, 0, 0, 0, 65535, 1), 4, "version"),
    (cap.pcap_bytes([])[:20], 0, "truncated"),
])
def test_unreadable_headers(tmp_path, data, offset, words):
    _, c, meter = read(cap.write(tmp_path / "h.pcap", data))
    err = _error(meter)
    assert err.offset == offset and words in err.message and c["packets_read"] == 0


def test_a_damaged_capture_does_not_stop_the_next(tmp_path):
    """The error names its file; reading goes on with the next capture, in the same flow table."""
    data = cap.pcap_bytes(UDP_FRAMES[:4])
    bad = cap.write(tmp_path / "bad.pcap", data[:-3])
    good = cap.write(tmp_path / "good.pcap", cap.pcap_bytes(UDP_FRAMES[4:8]))
    recs, c, meter = read(bad, good)
    err = _error(meter)
    assert err.source == str(bad) and err.offset == cap.pcap_record_offsets(data)[3]
    assert c["packets_read"] == 7
    assert sorted(int(r["orig_pkts"]) for r in recs) == [1, 2, 2, 2]


def test_cli_reports_the_offset_of_a_damaged_stream(tmp_path):
    data = cap.pcap_bytes(UDP_FRAMES)
    off = cap.pcap_record_offsets(data)[-1]
    r = run_cli("replay", "-f", "zeek-json", "-o", "-", "-", input=gzip.compress(data[:-5]))
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "Traceback" not in err
    assert f"<stdin>: truncated packet record at byte {off}" in err and f"(at byte {off})" in err
    assert sum(json.loads(x)["orig_pkts"] for x in r.stdout.splitlines()) == 19


def test_a_mapped_file_does_not_stay_mapped(tmp_path):
    """Files are read through mmap; the engine drops the pages it has read from the mapping (they
    stay in the page cache), so replaying a large file does not grow the process by its size."""
    import threading

    import numpy as np
    from pyhunt import FlowMeter
    n, size = 150_000, 1400   # a 210 MB capture: one UDP flow of full-size frames
    frame = bytearray(size)
    frame[12:14] = b"\x08\x00"
    ip = bytearray(b"\x45\x00" + (size - 14).to_bytes(2, "big") + b"\x00\x01\x00\x00\x40\x11\x00\x00"
                   + bytes([10, 0, 0, 1, 10, 0, 0, 2]))
    s = sum(int.from_bytes(ip[i:i + 2], "big") for i in range(0, 20, 2))
    s = (s & 0xFFFF) + (s >> 16)
    ip[10:12] = (~((s & 0xFFFF) + (s >> 16)) & 0xFFFF).to_bytes(2, "big")
    frame[14:34] = ip
    frame[34:42] = (40000).to_bytes(2, "big") + (9999).to_bytes(2, "big") + (size - 34).to_bytes(2, "big") + b"\0\0"
    rec = np.zeros((n, 16 + size), dtype=np.uint8)
    ts = 1_700_000_000 * 1_000_000 + np.arange(n, dtype=np.int64) * 100   # 100 us apart
    hdr = np.zeros((n, 4), dtype="<u4")
    hdr[:, 0], hdr[:, 1], hdr[:, 2], hdr[:, 3] = ts // 1_000_000, ts % 1_000_000, size, size
    rec[:, :16] = hdr.view(np.uint8).reshape(n, 16)
    rec[:, 16:] = np.frombuffer(bytes(frame), dtype=np.uint8)
    path = tmp_path / "big.pcap"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        f.write(rec.tobytes())
    del rec

    def rss_file() -> int:
        with open("/proc/self/status") as st:
            return next(int(ln.split()[1]) * 1024 for ln in st if ln.startswith("RssFile:"))

    base, peak, stop = rss_file(), [0], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_file())
            stop.wait(0.005)
    t = threading.Thread(target=watch)
    t.start()
    try:
        meter = FlowMeter()
        recs = np.concatenate([b.to_numpy() for b in meter.read(str(path))])
    finally:
        stop.set()
        t.join()
    assert len(recs) == 1 and int(recs["orig_pkts"][0]) == n
    assert meter.counters["packets_read"] == n
    grew = peak[0] - base
    assert grew < 64 << 20, f"the file mapping grew the process by {grew >> 20} MiB for a {path.stat().st_size >> 20} MiB file"


def test_records_taken_in_parts_are_each_taken_once():
    """Engine.take_raw(n) takes the oldest n queued records; exports that arrive while part of the
    queue waits (the queue compacts before it grows) keep their order, and nothing is lost or doubled."""
    from pyhunt.flows import FlowBatch
    eng = FlowMeter(capacity=8).engine
    t0 = 1705309200_000000000
    ids: list[int] = []

    def take(n: int = 0) -> None:
        recs = FlowBatch(eng.take_raw(n)).to_numpy()
        assert n == 0 or len(recs) <= n
        ids.extend(int(x) for x in recs["orig_p"])

    for i in range(3000):   # capacity 8: from the 9th flow on, every packet evicts one flow
        eng.feed_packet(cap.ethernet(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=10000 + i, dport=53))),
                        t0 + i * 1000)
        if i % 7 == 0:
            take(3)                      # leave most of the queue waiting
    eng.finish()
    while eng.queued():
        take(1000)
    assert sorted(ids) == list(range(10000, 13000))
    assert ids[:100] == list(range(10000, 10100))   # evicted oldest first, taken in export order
