"""Build capture files byte by byte, in every variant pyhunt's readers must accept.

The tests describe packets (scapy packets, or ``(timestamp, frame bytes)`` tuples) and get back the
exact bytes of a classic pcap or a pcapng file, written here with ``struct`` so that the exotic variants
(big-endian, nanosecond, odd snap lengths, several interfaces with different resolutions, Simple Packet
Blocks, unknown blocks, several sections, gzip) do not depend on any library's writer.

Timestamps: an ``int`` is nanoseconds since the epoch; a ``float`` or ``Decimal`` (scapy's ``p.time``)
is seconds, converted exactly from its decimal form (``1705309200.123456`` is 1705309200123456000 ns).
Writers that store a coarser unit truncate (floor); :func:`pcapng_ts` and :func:`pcapng_ns` give the
stored ticks and the nanoseconds a correct reader must report.

Typical use::

    frames = [(t0 + i * 1000, ethernet(bytes(IP(...) / UDP(...)))) for i in range(3)]
    write(tmp_path / "a.pcap.gz", gzip_bytes(pcap_bytes(frames, nano=True, big_endian=True)))
    ng = pcapng_bytes([(LINKTYPE_ETHERNET, 9), Interface(LINKTYPE_RAW, tsresol_pow2(20))],
                      [(0, t0, frame), (1, t0 + 5, ip_packet), Rec(0, 0, frame, kind="spb")])
    two_sections = ng + pcapng_bytes([(LINKTYPE_ETHERNET, 6)], [(0, t0, frame)], big_endian=True)

Frame helpers (:func:`ethernet`, :func:`sll`, :func:`sll2`, :func:`null_loop`, :func:`pppoe`,
:func:`mpls`, :func:`raw`) wrap an IP packet's bytes in the link layer named by the ``LINKTYPE_*``
constant beside them.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

__all__ = [
    "LINKTYPE_NULL", "LINKTYPE_ETHERNET", "LINKTYPE_PPP", "LINKTYPE_RAW", "LINKTYPE_LOOP",
    "LINKTYPE_LINUX_SLL", "LINKTYPE_IPV4", "LINKTYPE_IPV6", "LINKTYPE_LINUX_SLL2",
    "ETH_P_IP", "ETH_P_IPV6", "ETH_P_8021Q", "ETH_P_8021AD", "ETH_P_MPLS", "ETH_P_PPPOE_SESSION",
    "Interface", "Rec", "ts_ns", "pcap_bytes", "pcap_record_offsets", "tsresol_pow2", "pcapng_ts",
    "pcapng_ns", "pcapng_bytes", "pcapng_block_offsets", "gzip_bytes", "write", "ethernet", "sll",
    "sll2", "null_loop", "pppoe", "mpls", "raw",
]

# Link types as stored in capture files (tcpdump.org/linktypes.html), not the platform DLT_ values.
LINKTYPE_NULL = 0  # 4-byte address family in the writer's byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_RAW = 101  # IPv4 or IPv6, told apart by the version nibble
LINKTYPE_LOOP = 108  # 4-byte address family in network byte order (OpenBSD)
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_MPLS = 0x8847
ETH_P_PPPOE_SESSION = 0x8864

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
NS = 1_000_000_000

Timestamp = Union[int, float, Decimal]


# ---------------------------------------------------------------- timestamps and records

def ts_ns(ts: Timestamp) -> int:
    """Nanoseconds since the epoch: ints are taken as ns, floats and Decimals as seconds (exactly)."""
    if isinstance(ts, bool):
        raise TypeError("a timestamp cannot be a bool")
    if isinstance(ts, int):
        return ts
    if isinstance(ts, float):
        ts = Decimal(repr(ts))  # the shortest decimal that reads back as this float
    if isinstance(ts, Decimal):
        return int((ts * NS).to_integral_value())
    raise TypeError("timestamp must be int (ns), float or Decimal (s), not %r" % type(ts).__name__)


def _is_scapy(p: object) -> bool:
    return hasattr(p, "time") and hasattr(p, "__bytes__") and not isinstance(p, (bytes, tuple))


def _frames(pkts: Iterable[object]) -> List[Tuple[int, bytes, int]]:
    """Normalize packets to (ts_ns, captured bytes, original length)."""
    out = []
    for p in pkts:
        if _is_scapy(p):
            data = bytes(p)  # type: ignore[call-overload]
            wirelen = getattr(p, "wirelen", None)
            out.append((ts_ns(p.time), data, wirelen or len(data)))  # type: ignore[attr-defined]
        elif isinstance(p, tuple) and len(p) in (2, 3):
            data = bytes(p[1])
            out.append((ts_ns(p[0]), data, p[2] if len(p) == 3 else len(data)))
        else:
            raise TypeError("expected a scapy packet or (ts, data[, orig_len]), got %r" % (p,))
    return out


# ---------------------------------------------------------------- classic pcap

def pcap_bytes(pkts: Iterable[object], *, linktype: int = LINKTYPE_ETHERNET, nano: bool = False,
               big_endian: bool = False, snaplen: int = 65535, truncate: bool = False,
               version: Tuple[int, int] = (2, 4), thiszone: int = 0, sigfigs: int = 0) -> bytes:
    """A classic pcap file: 24-byte header, then a 16-byte header and the data for each packet.

    pkts: scapy packets (``bytes(p)``, ``p.time``, ``p.wirelen`` if set) or ``(ts, data)`` /
    ``(ts, data, orig_len)`` tuples. snaplen is only the header field (so a test can make it lie);
    with truncate=True data is cut to it as a capturing writer would (caplen < orig_len).
    nano picks the nanosecond magic (0xa1b23c4d), else microseconds (truncated from ns).
    linktype is written as given, so FCS bits in its upper half can be tested too.
    """
    e = ">" if big_endian else "<"
    magic = PCAP_MAGIC_NS if nano else PCAP_MAGIC_US
    out = [struct.pack(e + "IHHiIII", magic, version[0], version[1], thiszone, sigfigs, snaplen, linktype)]
    for t, data, orig in _frames(pkts):
        sec, frac = divmod(t, NS)
        cap = data[:snaplen] if truncate else data
        out.append(struct.pack(e + "IIII", sec, frac if nano else frac // 1000, len(cap), orig))
        out.append(cap)
    return b"".join(out)


def pcap_record_offsets(data: bytes) -> List[int]:
    """Byte offsets of each record header in a classic pcap file (for corruption tests)."""
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError("not a classic pcap file")
    offsets, pos = [], 24
    while pos + 16 <= len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from(e + "I", data, pos + 8)[0]
    return offsets


# ---------------------------------------------------------------- pcapng

BT_SHB = 0x0A0D0D0A
BT_IDB = 0x00000001
BT_PB = 0x00000002  # obsolete Packet Block
BT_SPB = 0x00000003
BT_NRB = 0x00000004
BT_ISB = 0x00000005
BT_EPB = 0x00000006
BT_CUSTOM = 0x00000BAD  # custom block that may be copied
BT_LOCAL = 0x80000ABC  # "local use" type: must be skipped by every reader
PEN_EXAMPLE = 32473  # the private enterprise number reserved for documentation (RFC 5612)


@dataclass(frozen=True)
class Interface:
    """One Interface Description Block.

    tsresol is the if_tsresol option byte: n means 10**-n s, ``0x80 | n`` (see :func:`tsresol_pow2`)
    means 2**-n s; None leaves the option out (readers must then assume microseconds).
    snaplen 0 means no limit (records are cut to it only as :func:`pcapng_bytes` says);
    tsoffset (if_tsoffset, whole seconds) is added to every timestamp.
    """

    linktype: int = LINKTYPE_ETHERNET
    tsresol: Optional[int] = 6
    snaplen: int = 262144
    name: Optional[str] = None
    tsoffset: Optional[int] = None


@dataclass(frozen=True)
class Rec:
    """One packet record: kind is "epb" (Enhanced), "spb" (Simple: no timestamp, interface 0 only)
    or "pb" (the obsolete Packet Block). comment and flags become EPB/PB options."""

    iface: int
    ts: Timestamp
    data: bytes
    kind: str = "epb"
    orig_len: Optional[int] = None
    comment: Optional[str] = None
    flags: Optional[int] = None


IfaceSpec = Union[Interface, Tuple[int, Optional[int]], Tuple[int, Optional[int], int]]
RecSpec = Union[Rec, Tuple[int, Timestamp, bytes], Tuple[int, Timestamp, bytes, str]]


def tsresol_pow2(n: int) -> int:
    """The if_tsresol byte for a resolution of 2**-n seconds."""
    return 0x80 | n


def _ticks_per_second(tsresol: Optional[int]) -> int:
    if tsresol is None:
        return 10 ** 6
    return 2 ** (tsresol & 0x7F) if tsresol & 0x80 else 10 ** tsresol


def pcapng_ts(ts: Timestamp, tsresol: Optional[int] = 6, tsoffset: Optional[int] = None) -> int:
    """The 64-bit tick count stored for ts on an interface with this resolution and offset (floor)."""
    return (ts_ns(ts) - (tsoffset or 0) * NS) * _ticks_per_second(tsresol) // NS


def pcapng_ns(ticks: int, tsresol: Optional[int] = 6, tsoffset: Optional[int] = None) -> int:
    """The nanoseconds a reader should report for stored ticks (floor for coarser-than-ns units)."""
    return ticks * NS // _ticks_per_second(tsresol) + (tsoffset or 0) * NS


def _pad4(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def _opts(e: str, opts: Sequence[Tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    body = b"".join(struct.pack(e + "HH", code, len(v)) + _pad4(v) for code, v in opts)
    return body + struct.pack(e + "HH", 0, 0)


def _block(e: str, btype: int, body: bytes) -> bytes:
    body = _pad4(body)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def _interface(spec: IfaceSpec) -> Interface:
    if isinstance(spec, Interface):
        return spec
    return Interface(*spec)


def _rec(spec: Union[RecSpec, object]) -> Rec:
    if isinstance(spec, Rec):
        return spec
    if _is_scapy(spec):
        return Rec(0, spec.time, bytes(spec))  # type: ignore[attr-defined, call-overload]
    if isinstance(spec, tuple) and len(spec) in (3, 4):
        return Rec(*spec)
    raise TypeError("expected Rec, (iface, ts, data[, kind]) or a scapy packet, got %r" % (spec,))


def _idb(e: str, i: Interface) -> bytes:
    opts = []
    if i.name is not None:
        opts.append((2, i.name.encode()))
    if i.tsresol is not None:
        opts.append((9, bytes([i.tsresol])))
    if i.tsoffset is not None:
        opts.append((14, struct.pack(e + "q", i.tsoffset)))
    return _block(e, BT_IDB, struct.pack(e + "HHI", i.linktype, 0, i.snaplen) + _opts(e, opts))


def _packet_block(e: str, r: Rec, ifaces: Sequence[Interface], truncate: bool) -> bytes:
    iface = ifaces[r.iface]
    orig = r.orig_len if r.orig_len is not None else len(r.data)
    cut = r.data[:iface.snaplen] if iface.snaplen else r.data
    if r.kind == "spb":  # its captured length is min(orig_len, snaplen): always cut
        if r.iface != 0:
            raise ValueError("a Simple Packet Block always belongs to interface 0")
        return _block(e, BT_SPB, struct.pack(e + "I", orig) + _pad4(cut[:orig]))
    data = cut if truncate else r.data
    ticks = pcapng_ts(r.ts, iface.tsresol, iface.tsoffset)
    opts = []
    if r.comment is not None:
        opts.append((1, r.comment.encode()))
    if r.flags is not None:
        opts.append((2, struct.pack(e + "I", r.flags)))
    if r.kind == "epb":
        head = struct.pack(e + "IIIII", r.iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig)
        return _block(e, BT_EPB, head + _pad4(data) + _opts(e, opts))
    if r.kind == "pb":
        head = struct.pack(e + "HHIIII", r.iface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig)
        return _block(e, BT_PB, head + _pad4(data) + _opts(e, opts))
    raise ValueError("record kind must be 'epb', 'spb' or 'pb', not %r" % r.kind)


def _extra_head(e: str) -> List[bytes]:
    """Blocks a reader must skip before the first packet: name resolution, custom, local use."""
    name = b"www.example.com\x00"
    nrb = (struct.pack(e + "HH", 1, 4 + len(name)) + _pad4(bytes([192, 0, 2, 10]) + name)
           + struct.pack(e + "HH", 0, 0))
    return [
        _block(e, BT_NRB, nrb),
        _block(e, BT_CUSTOM, struct.pack(e + "I", PEN_EXAMPLE) + b"pyhunt test custom block"),
        _block(e, BT_LOCAL, b"\x01\x02\x03\x04 local use, skip me"),
    ]


def _isb(e: str, iface: int, ticks: int, received: int) -> bytes:
    opts = [(4, struct.pack(e + "Q", received)), (5, struct.pack(e + "Q", 0))]
    return _block(e, BT_ISB, struct.pack(e + "III", iface, ticks >> 32, ticks & 0xFFFFFFFF) + _opts(e, opts))


def pcapng_bytes(interfaces: Sequence[IfaceSpec] = ((LINKTYPE_ETHERNET, 6),),
                 records: Iterable[Union[RecSpec, object]] = (), *, big_endian: bool = False,
                 extra_blocks: bool = True, lazy_interfaces: bool = False,
                 section_length: bool = False, shb_options: bool = True, truncate: bool = False) -> bytes:
    """One pcapng section: SHB, Interface Description Blocks, then the records in the order given.

    interfaces: :class:`Interface` or ``(linktype, tsresol[, snaplen])``; the list index is the
    interface id. records: :class:`Rec`, ``(iface, ts, data[, kind])`` or scapy packets (interface 0).
    extra_blocks adds blocks readers must skip: a Name Resolution Block, a custom block and a
    local-use block before the packets, another local-use block after the first record, and an
    Interface Statistics Block per interface at the end. lazy_interfaces writes each IDB just before
    the first record that uses it instead of up front. section_length stores the real section length
    instead of -1 (unknown). truncate cuts EPB/PB data to the interface's snaplen as a capturing
    writer would (SPB data is always cut: the format derives its length from the snaplen).
    Concatenate the results of several calls for a multi-section file (each
    section may have its own byte order, and interface ids start again at 0).
    """
    e = ">" if big_endian else "<"
    ifaces = [_interface(i) for i in interfaces]
    recs = [_rec(r) for r in records]
    body: List[bytes] = []
    written = set()

    def need(i: int) -> None:
        if i not in written:
            for j in range(i + 1) if lazy_interfaces else [i]:  # ids are given by order of IDBs
                if j not in written:
                    body.append(_idb(e, ifaces[j]))
                    written.add(j)

    if not lazy_interfaces:
        for i in range(len(ifaces)):
            need(i)
    if extra_blocks:
        body.extend(_extra_head(e))
    for n, r in enumerate(recs):
        need(r.iface)
        body.append(_packet_block(e, r, ifaces, truncate))
        if extra_blocks and n == 0:
            body.append(_block(e, BT_LOCAL, b"between packets"))
    if extra_blocks:
        last = max((ts_ns(r.ts) for r in recs if r.kind != "spb"), default=0)
        for i in sorted(written):
            count = sum(1 for r in recs if r.iface == i)
            body.append(_isb(e, i, pcapng_ts(last, ifaces[i].tsresol, ifaces[i].tsoffset), count))
    rest = b"".join(body)
    opts = []
    if shb_options:
        opts = [(2, b"pyhunt test hardware"), (3, b"Linux 6.1"), (4, b"tests/captures.py"),
                (1, b"a section comment")]
    shb_body = struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, len(rest) if section_length else -1) + _opts(e, opts)
    return _block(e, BT_SHB, shb_body) + rest


def pcapng_block_offsets(data: bytes) -> List[Tuple[int, int]]:
    """(offset, block type) of every block in a pcapng file, across sections and byte orders."""
    out, pos, e = [], 0, "<"
    while pos + 12 <= len(data):
        if data[pos:pos + 4] == b"\x0a\x0d\x0d\x0a":
            e = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        btype, blen = struct.unpack_from(e + "II", data, pos)
        out.append((pos, btype))
        pos += blen
    return out


# ---------------------------------------------------------------- files

def gzip_bytes(data: bytes, *, level: int = 6) -> bytes:
    """gzip with a zero mtime and no file name, so the same input always gives the same bytes."""
    return gzip.compress(data, compresslevel=level, mtime=0)


def write(path: Union[str, Path], data: bytes) -> Path:
    """Write data to path (parents created) and return the path; compress first with gzip_bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- link-layer frames

def _l3_ethertype(payload: bytes) -> int:
    version = payload[0] >> 4 if payload else 0
    if version == 4:
        return ETH_P_IP
    if version == 6:
        return ETH_P_IPV6
    raise ValueError("payload is not IPv4 or IPv6: give the ethertype/protocol explicitly")


def ethernet(payload: bytes, *, src: bytes = MAC_A, dst: bytes = MAC_B, ethertype: Optional[int] = None,
             vlan: Union[None, int, Sequence[int]] = None, tpids: Optional[Sequence[int]] = None,
             pcp: int = 0) -> bytes:
    """An Ethernet II frame, optionally 802.1Q-tagged.

    vlan: one id, or a list outermost first (QinQ); by default the outer tags of a stack use the
    802.1ad TPID 0x88a8 and the innermost 0x8100, or give tpids explicitly (e.g. [0x8100, 0x8100]).
    ethertype defaults to IPv4/IPv6 by the payload's version nibble.
    """
    inner = _l3_ethertype(payload) if ethertype is None else ethertype
    ids = [] if vlan is None else [vlan] if isinstance(vlan, int) else list(vlan)
    if tpids is None:
        tpids = [ETH_P_8021AD] * (len(ids) - 1) + [ETH_P_8021Q] if ids else []
    if len(tpids) != len(ids):
        raise ValueError("one TPID per VLAN tag")
    types = list(tpids) + [inner]
    tags = b"".join(struct.pack("!HH", (pcp << 13) | vid, types[n + 1]) for n, vid in enumerate(ids))
    return dst + src + struct.pack("!H", types[0]) + tags + payload


def sll(payload: bytes, *, pkttype: int = 0, hatype: int = 1, addr: bytes = MAC_A,
        protocol: Optional[int] = None) -> bytes:
    """Linux cooked capture v1 (LINKTYPE_LINUX_SLL): pkttype 0 = to us, 4 = sent by us."""
    proto = _l3_ethertype(payload) if protocol is None else protocol
    return struct.pack("!HHH8sH", pkttype, hatype, len(addr), addr, proto) + payload


def sll2(payload: bytes, *, pkttype: int = 0, hatype: int = 1, ifindex: int = 2, addr: bytes = MAC_A,
         protocol: Optional[int] = None) -> bytes:
    """Linux cooked capture v2 (LINKTYPE_LINUX_SLL2), 20-byte header with the interface index."""
    proto = _l3_ethertype(payload) if protocol is None else protocol
    return struct.pack("!HHIHBB8s", proto, 0, ifindex, hatype, pkttype, len(addr), addr) + payload


def null_loop(payload: bytes, *, big_endian: bool = False, af6: int = 30) -> bytes:
    """BSD loopback: a 4-byte address family (2 for IPv4; af6 = 24, 28 or 30 for IPv6 by OS).

    LINKTYPE_NULL stores it in the writer's byte order (either); LINKTYPE_LOOP always big-endian.
    """
    family = 2 if _l3_ethertype(payload) == ETH_P_IP else af6
    return struct.pack(">I" if big_endian else "<I", family) + payload


def pppoe(payload: bytes, *, session_id: int = 0x1234, ether: bool = True, **eth) -> bytes:
    """PPPoE session stage (RFC 2516) carrying PPP with IPv4 (0x0021) or IPv6 (0x0057).

    With ether=True (default) the result is a whole Ethernet frame (ethertype 0x8864); extra keyword
    arguments go to :func:`ethernet` (e.g. vlan=...).
    """
    ppp_proto = 0x0021 if _l3_ethertype(payload) == ETH_P_IP else 0x0057
    body = struct.pack("!BBHHH", 0x11, 0x00, session_id, len(payload) + 2, ppp_proto) + payload
    return ethernet(body, ethertype=ETH_P_PPPOE_SESSION, **eth) if ether else body


def mpls(payload: bytes, labels: Sequence[int] = (100,), *, ttl: int = 64, tc: int = 0,
         ether: bool = True, **eth) -> bytes:
    """An MPLS label stack (outermost first, bottom-of-stack bit on the last) over an IP packet.

    With ether=True (default) the result is a whole Ethernet frame (ethertype 0x8847).
    """
    if not labels:
        raise ValueError("an MPLS stack has at least one label")
    stack = b"".join(struct.pack("!I", (label << 12) | (tc << 9) | ((n == len(labels) - 1) << 8) | ttl)
                     for n, label in enumerate(labels))
    return ethernet(stack + payload, ethertype=ETH_P_MPLS, **eth) if ether else stack + payload


def raw(payload: bytes) -> bytes:
    """A bare IP packet, for LINKTYPE_RAW, LINKTYPE_IPV4 and LINKTYPE_IPV6."""
    return bytes(payload)
