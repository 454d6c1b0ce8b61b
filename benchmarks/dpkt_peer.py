#!/usr/bin/env python3
"""The dpkt peer of pyhunt's end-to-end benchmark: read a capture and aggregate bidirectional flows.

This is how one would write a flow aggregator with dpkt, without deliberate shortcuts or slowness:
``dpkt.pcap.Reader`` (or ``dpkt.pcapng.Reader``; gzip'd files are opened transparently), Ethernet with
802.1Q tags decoded by dpkt, IPv4/IPv6, TCP/UDP ports or ICMP type pairs, and one dict entry per flow
keyed by the canonical (sorted) 5-tuple plus the outer VLAN id. Each flow keeps first/last time and
packets and IP-level bytes per direction. It does no TCP state, timeouts or features, so pyhunt doing
as much work or more is a fair comparison.

Usage: python benchmarks/dpkt_peer.py CAPTURE   (flow count, elapsed time and packets/s on stderr)
"""

from __future__ import annotations

import gzip
import sys
import time
from typing import BinaryIO, Dict, List, Optional, Tuple

import dpkt
from dpkt.ethernet import Ethernet
from dpkt.icmp import ICMP
from dpkt.icmp6 import ICMP6
from dpkt.ip import IP
from dpkt.ip6 import IP6
from dpkt.tcp import TCP
from dpkt.udp import UDP

# Key: (ip proto, outer VLAN id or None, (addr, port), (addr, port)) with the smaller endpoint first.
FlowKey = Tuple[int, Optional[int], Tuple[bytes, int], Tuple[bytes, int]]
# Value: [first ts, last ts, packets a->b, bytes a->b, packets b->a, bytes b->a] (a = smaller endpoint).
Flow = List[float]

# ICMP/ICMPv6 request types and their replies, so both halves of an exchange share a key (as Zeek
# pairs them): the "ports" are (type, counterpart type).
ICMP_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17, 10: 9, 9: 10}
ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130}


def open_capture(path: str) -> Tuple[BinaryIO, object]:
    """Open a pcap or pcapng file, gzip'd or not, and return (file, dpkt reader)."""
    f: BinaryIO = open(path, "rb")
    if f.read(2) == b"\x1f\x8b":
        f.close()
        f = gzip.open(path, "rb")  # type: ignore[assignment]
    else:
        f.seek(0)
    magic = f.read(4)
    f.seek(0)
    reader = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
    return f, reader


def aggregate(path: str, counters: Optional[Dict[str, int]] = None) -> Dict[FlowKey, Flow]:
    """Aggregate the capture's packets into bidirectional flows (see the module docstring).

    counters, when given, receives "packets" (records read) and "skipped" (not Ethernet/IP or not
    decodable).
    """
    flows: Dict[FlowKey, Flow] = {}
    packets = skipped = 0
    f, reader = open_capture(path)
    with f:
        for ts, buf in reader:  # type: ignore[attr-defined]
            packets += 1
            try:
                eth = Ethernet(buf)
            except (dpkt.UnpackError, ValueError):
                skipped += 1
                continue
            ip = eth.data
            if isinstance(ip, IP):
                proto, length = ip.p, ip.len
            elif isinstance(ip, IP6):
                proto, length = ip.p, ip.plen + 40
            else:
                skipped += 1
                continue
            l4 = ip.data
            if isinstance(l4, (TCP, UDP)):
                sport, dport = l4.sport, l4.dport
            elif isinstance(l4, ICMP):
                sport, dport = l4.type, ICMP_PAIRS.get(l4.type, l4.code)
            elif isinstance(l4, ICMP6):
                sport, dport = l4.type, ICMP6_PAIRS.get(l4.type, l4.code)
            else:  # other protocols and non-first fragments: address pair only
                sport = dport = 0
            tags = eth.vlan_tags if eth.type == 0x8100 or eth.type == 0x88A8 else None
            vlan = tags[0].id if tags else None
            a, b = (ip.src, sport), (ip.dst, dport)
            if a <= b:
                key, fwd = (proto, vlan, a, b), True
            else:
                key, fwd = (proto, vlan, b, a), False
            flow = flows.get(key)
            if flow is None:
                flow = flows[key] = [ts, ts, 0, 0, 0, 0]
            flow[1] = ts
            if fwd:
                flow[2] += 1
                flow[3] += length
            else:
                flow[4] += 1
                flow[5] += length
    if counters is not None:
        counters["packets"] = packets
        counters["skipped"] = skipped
    return flows


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python benchmarks/dpkt_peer.py CAPTURE", file=sys.stderr)
        return 2
    counters: Dict[str, int] = {}
    start = time.perf_counter()
    try:
        flows = aggregate(args[0], counters)
    except (OSError, ValueError) as exc:
        print("dpkt_peer: cannot read %s: %s" % (args[0], exc), file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    rate = counters["packets"] / elapsed if elapsed > 0 else float("inf")
    print("dpkt_peer: %d flows from %d packets (%d skipped) in %.3f s, %.0f packets/s"
          % (len(flows), counters["packets"], counters["skipped"], elapsed, rate), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
