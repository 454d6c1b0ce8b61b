"""The peers pyhunt is measured against, stage by stage, written as one would write them.

- dpkt: ``pcap.Reader``/``pcapng.Reader`` (read); plus Ethernet/802.1Q/IP/L4 parsing, and the inner
  frame of VXLAN (UDP 4789) parsed again, as dpkt has no VXLAN decoder (decode); the aggregation
  of benchmarks/dpkt_peer.py (flows).
- scapy: ``RawPcapReader``/``RawPcapNgReader`` (read); ``Ether(raw)`` dissection, which follows
  VLAN tags and VXLAN itself (decode); ``PcapReader`` plus the dpkt peer's aggregation (flows).
  scapy reads a few thousand packets per second, so it runs on the first ``limit`` packets of the
  same file and is compared by packets per second.
- nfstream: ``NFStreamer(source=..., statistical_analysis=True)`` with its other defaults
  (benchmarks/nfstream_peer.py).

Each function returns the number of packets it processed (and flows, for the aggregators).
"""
from __future__ import annotations

import itertools
import warnings
from typing import Optional

import dpkt
from dpkt.ethernet import Ethernet
from dpkt.ip import IP
from dpkt.ip6 import IP6
from dpkt.udp import UDP

import dpkt_peer  # benchmarks/ is on sys.path (pytest's rootdir-less test directory, or the script's)
import nfstream_peer

VXLAN_PORT = 4789


# ---------------------------------------------------------------------------
# dpkt
# ---------------------------------------------------------------------------

def dpkt_read(path: str) -> tuple[int, int]:
    """(packets, captured bytes) by iterating dpkt's reader."""
    n = size = 0
    f, reader = dpkt_peer.open_capture(path)
    with f:
        for _ts, buf in reader:  # type: ignore[attr-defined]
            n += 1
            size += len(buf)
    return n, size


def _dpkt_l4(eth: Ethernet, depth: int = 0):
    ip = eth.data
    if not isinstance(ip, (IP, IP6)):
        return None
    l4 = ip.data
    if isinstance(l4, UDP) and l4.dport == VXLAN_PORT and depth == 0 and len(l4.data) > 8 + 14:
        try:
            return _dpkt_l4(Ethernet(l4.data[8:]), 1)
        except (dpkt.UnpackError, ValueError):
            return None
    return l4


def dpkt_decode(path: str) -> tuple[int, int]:
    """(packets, decoded to L4): Ethernet (with its 802.1Q tags), IPv4/IPv6, TCP/UDP/ICMP, VXLAN inner."""
    n = ok = 0
    f, reader = dpkt_peer.open_capture(path)
    with f:
        for _ts, buf in reader:  # type: ignore[attr-defined]
            n += 1
            try:
                l4 = _dpkt_l4(Ethernet(buf))
            except (dpkt.UnpackError, ValueError):
                continue
            if l4 is not None and not isinstance(l4, bytes):
                ok += 1
    return n, ok


def dpkt_flows(path: str) -> tuple[int, int]:
    """(packets, flows) of benchmarks/dpkt_peer.py's aggregation."""
    counters: dict[str, int] = {}
    flows = dpkt_peer.aggregate(path, counters)
    return counters["packets"], len(flows)


# ---------------------------------------------------------------------------
# scapy (imported on first use: the import alone takes a second or two)
# ---------------------------------------------------------------------------

def _scapy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import scapy.all as sa  # noqa: F401
        from scapy.layers import inet, inet6, l2, vxlan  # noqa: F401
        from scapy import utils
    return sa, utils


def _is_pcapng(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x0a\x0d\x0d\x0a"


def scapy_read(path: str, limit: Optional[int]) -> tuple[int, int]:
    """(packets, captured bytes) with scapy's raw readers (no dissection)."""
    _sa, utils = _scapy()
    cls = utils.RawPcapNgReader if _is_pcapng(path) else utils.RawPcapReader
    n = size = 0
    with cls(path) as rd:
        for buf, _meta in itertools.islice(rd, limit):
            n += 1
            size += len(buf)
    return n, size


def scapy_decode(path: str, limit: Optional[int]) -> tuple[int, int]:
    """(packets, decoded to L4) dissecting each frame with Ether()."""
    sa, utils = _scapy()
    cls = utils.RawPcapNgReader if _is_pcapng(path) else utils.RawPcapReader
    l4s = (sa.TCP, sa.UDP, sa.ICMP, sa.ICMPv6EchoRequest, sa.ICMPv6EchoReply)
    n = ok = 0
    with cls(path) as rd:
        for buf, _meta in itertools.islice(rd, limit):
            n += 1
            pkt = sa.Ether(buf)
            inner = pkt[sa.VXLAN].payload if sa.VXLAN in pkt else pkt
            if any(layer in inner for layer in l4s):
                ok += 1
    return n, ok


def scapy_flows(path: str, limit: Optional[int]) -> tuple[int, int]:
    """(packets, flows): scapy's PcapReader and the dpkt peer's bidirectional aggregation."""
    sa, utils = _scapy()
    pairs4, pairs6 = dpkt_peer.ICMP_PAIRS, dpkt_peer.ICMP6_PAIRS
    flows: dict = {}
    n = 0
    with utils.PcapReader(path) as rd:
        for pkt in itertools.islice(rd, limit):
            n += 1
            if sa.IP in pkt:
                ip = pkt[sa.IP]
                proto, length = ip.proto, ip.len
            elif sa.IPv6 in pkt:
                ip = pkt[sa.IPv6]
                proto, length = ip.nh, ip.plen + 40
            else:
                continue
            l4 = ip.payload
            if isinstance(l4, (sa.TCP, sa.UDP)):
                sport, dport = l4.sport, l4.dport
            elif isinstance(l4, sa.ICMP):
                sport, dport = l4.type, pairs4.get(l4.type, l4.code)
            elif proto == 58 and hasattr(l4, "type"):
                sport, dport = l4.type, pairs6.get(l4.type, l4.code)
            else:
                sport = dport = 0
            vlan = pkt[sa.Dot1Q].vlan if sa.Dot1Q in pkt else None
            a, b = (ip.src, sport), (ip.dst, dport)
            key, fwd = ((proto, vlan, a, b), True) if a <= b else ((proto, vlan, b, a), False)
            flow = flows.get(key)
            ts = float(pkt.time)
            if flow is None:
                flow = flows[key] = [ts, ts, 0, 0, 0, 0]
            flow[1] = ts
            i = 2 if fwd else 4
            flow[i] += 1
            flow[i + 1] += length
    return n, len(flows)


# ---------------------------------------------------------------------------
# nfstream
# ---------------------------------------------------------------------------

def nfstream_available() -> Optional[str]:
    """None if nfstream imports, else why not."""
    return nfstream_peer.unavailable()


def nfstream_flows(path: str) -> tuple[int, int]:
    """(packets, flows) of NFStreamer with statistical_analysis on."""
    return nfstream_peer.aggregate(path)
