#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets (fuzz/run.sh calls this).

Sources: every capture under tests/ (including tests/data/fuzz-regressions/), pyhunt/data/, and
../shared (or $PYHUNT_SHARED, as the tests find it) when present (read only: everything is copied into OUT), gunzipped when compressed; plus
captures generated here with tests/captures.py in the container variants the readers accept
(pcap us/ns, both byte orders, pcapng with several interfaces, SPB/PB blocks, two sections) over
synthetic packets (TCP, UDP, ICMP, IPv6 with extension headers, IPv4/IPv6 fragments).

OUT/capture and OUT/engine get capture files (cut to --max-len); OUT/decode gets the decoder
target's format (fuzz/fuzz_decode.c): a link-type index, an options byte, then packets as
(2-byte length, 1-byte time step, bytes), made from the packets of those captures and from
the synthetic IP packets wrapped in each link layer the decoder knows.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# index into LINKTYPES of fuzz_decode.c, by pcap link type
DECODE_INDEX = {1: 0, 101: 1, 0: 2, 108: 3, 113: 4, 276: 5, 9: 6, 50: 7, 105: 8, 127: 9,
                228: 10, 229: 11, 12: 12, 14: 13}
N_DECODE_LINKTYPES = 14


def capture_files() -> list[Path]:
    shared = Path(os.environ.get("PYHUNT_SHARED", ROOT.parent / "shared"))
    roots = [ROOT / "tests", ROOT / "pyhunt" / "data", shared]
    found = []
    for r in roots:
        if r.is_dir():
            for p in sorted(r.rglob("*")):
                if p.is_file() and (".pcap" in p.name or p.parent.name == "fuzz-regressions"):
                    found.append(p)
    return found


def load(p: Path) -> bytes:
    data = p.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            pass
    return data


def packets(data: bytes, limit: int) -> list[tuple[int, bytes]]:
    """(link type, frame) of the first packets of a capture; [] if dpkt cannot read it."""
    try:
        import io

        import dpkt
    except ImportError:
        return []
    out: list[tuple[int, bytes]] = []
    try:
        if data[:4] == b"\x0a\x0d\x0d\x0a":
            rd = dpkt.pcapng.Reader(io.BytesIO(data))
        else:
            rd = dpkt.pcap.Reader(io.BytesIO(data))
        lt = rd.datalink()
        for _ts, buf in rd:
            out.append((lt, bytes(buf)))
            if len(out) >= limit:
                break
    except Exception:  # noqa: BLE001 - a file dpkt cannot parse only gives no decoder seeds
        pass
    return out


def decode_seed(lt: int, frames: list[bytes], opts: int = 0) -> bytes | None:
    if lt in DECODE_INDEX:
        head = bytes([DECODE_INDEX[lt], opts])
    else:
        head = bytes([N_DECODE_LINKTYPES, opts]) + struct.pack("<I", lt)
    body = b"".join(struct.pack("<HB", len(f), 1) + f for f in frames if len(f) <= 0xFFFF)
    return head + body if body else None


def synthetic_ip() -> list[bytes]:
    """IP packets (no link layer) covering the transport and fragment paths."""
    try:
        from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
        from scapy.layers.inet6 import (ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                        IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
        from scapy.packet import Raw
    except ImportError:
        return []
    a, b = "10.0.0.1", "192.0.2.9"
    a6, b6 = "fd00::1", "2001:db8::9"
    pkts = [
        IP(src=a, dst=b) / TCP(sport=40000, dport=80, flags="S", seq=1, options=[("MSS", 1460), ("WScale", 7)]),
        IP(src=b, dst=a) / TCP(sport=80, dport=40000, flags="SA", seq=100, ack=2),
        IP(src=a, dst=b) / TCP(sport=40000, dport=80, flags="A", seq=2, ack=101) / Raw(b"GET / HTTP/1.0\r\n\r\n"),
        IP(src=a, dst=b) / TCP(sport=40000, dport=80, flags="FA", seq=20, ack=101),
        IP(src=b, dst=a) / TCP(sport=80, dport=40000, flags="R", seq=101),
        IP(src=a, dst=b) / UDP(sport=5353, dport=53) / Raw(b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6),
        IP(src=a, dst=b) / UDP(sport=1234, dport=4789) / Raw(b"\x08\x00\x00\x00\x00\x00\x01\x00" + b"\x00" * 14),
        IP(src=a, dst=b) / ICMP(type=8) / Raw(b"x" * 32),
        IP(src=b, dst=a) / ICMP(type=3, code=3) / IP(src=a, dst=b) / UDP(sport=1, dport=2),
        IP(src=a, dst=b, proto=47) / Raw(b"\x00\x00\x08\x00" + bytes(IP(src=a, dst=b) / UDP())),
        IP(src=a, dst=b, proto=4) / IP(src=a, dst=b) / UDP(),
        IP(src=a, dst=b, proto=41) / IPv6(src=a6, dst=b6) / UDP(),
        IPv6(src=a6, dst=b6) / TCP(sport=40001, dport=443, flags="S"),
        IPv6(src=a6, dst=b6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / UDP(dport=53),
        IPv6(src=a6, dst=b6) / ICMPv6EchoRequest(data=b"y" * 16),
        IPv6(src=a6, dst=b6) / IPv6ExtHdrFragment(id=7, offset=0, m=0) / UDP(dport=9),
    ]
    out = [bytes(p) for p in pkts]
    big = IP(src=a, dst=b, id=4242) / UDP(sport=7, dport=7) / Raw(bytes(range(256)) * 12)
    frags = fragment(big, fragsize=512)
    out += [bytes(f) for f in frags] + [bytes(frags[1]), bytes(frags[0])]   # duplicates, overlap
    big6 = IPv6(src=a6, dst=b6) / IPv6ExtHdrFragment(id=99) / UDP(sport=7, dport=7) / Raw(b"z" * 3000)
    from scapy.layers.inet6 import fragment6
    out += [bytes(f) for f in fragment6(big6, 1280)]
    return out


def synthetic_captures(ips: list[bytes]) -> list[bytes]:
    import captures as c
    t0 = 1_700_000_000 * c.NS
    eth = [(t0 + i * 1_000_000, c.ethernet(p)) for i, p in enumerate(ips)]
    vl = [(t0 + i * 1_000_000, c.ethernet(p, vlan=[100, 200])) for i, p in enumerate(ips)]
    out = [
        c.pcap_bytes(eth),
        c.pcap_bytes(eth, nano=True, big_endian=True),
        c.pcap_bytes(vl, snaplen=96, truncate=True),
        c.pcap_bytes([(t, c.raw(p)) for t, p in zip((f[0] for f in eth), ips)], linktype=c.LINKTYPE_RAW),
        c.pcap_bytes([(t0, c.sll(p)) for p in ips], linktype=c.LINKTYPE_LINUX_SLL),
        c.pcap_bytes([(t0, c.null_loop(p)) for p in ips], linktype=c.LINKTYPE_NULL),
        c.pcapng_bytes([(c.LINKTYPE_ETHERNET, 9), c.Interface(c.LINKTYPE_RAW, c.tsresol_pow2(20), tsoffset=-5)],
                       [(i % 2, t, f if i % 2 == 0 else c.raw(ips[i])) for i, (t, f) in enumerate(eth)]),
        c.pcapng_bytes([(c.LINKTYPE_LINUX_SLL2, 6)], [c.Rec(0, t0, c.sll2(p), kind=k)
                                                      for p, k in zip(ips, ["epb", "spb", "pb"] * 20)],
                       big_endian=True, lazy_interfaces=True, section_length=True),
        c.pcapng_bytes([(c.LINKTYPE_ETHERNET, 6)], [(0, t, f) for t, f in eth[:4]]) + c.pcapng_bytes([(c.LINKTYPE_RAW, 3)],
                                                                            [(0, t0, c.raw(ips[0]))],
                                                                            big_endian=True),
        c.pcap_bytes([(t0, c.pppoe(p)) for p in ips[:6]] + [(t0, c.mpls(p, [16, 17])) for p in ips[:6]]),
    ]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--max-len", type=int, default=65536, help="capture seeds are cut to this size")
    ap.add_argument("--max-len-decode", type=int, default=16384)
    args = ap.parse_args()
    dirs = {k: args.out / k for k in ("capture", "decode", "engine")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    counts = {k: 0 for k in dirs}

    def put(kind: str, data: bytes, limit: int) -> None:
        data = data[:limit]
        if data:
            (dirs[kind] / hashlib.sha1(data).hexdigest()).write_bytes(data)
            counts[kind] += 1

    caps = []
    for p in capture_files():
        if p.parent.name == "fuzz-regressions":
            for kind in dirs:   # a regression of one target is a good seed for the others
                put(kind, p.read_bytes(), 1 << 20)
            continue
        caps.append(load(p))
    ips = synthetic_ip()
    if ips:
        caps += synthetic_captures(ips)
        for lt in DECODE_INDEX:
            import captures as c
            wrap = {1: c.ethernet, 113: c.sll, 276: c.sll2, 0: c.null_loop, 101: c.raw, 228: c.raw,
                    229: c.raw, 12: c.raw, 14: c.raw, 108: lambda p: c.null_loop(p, big_endian=True)}.get(lt)
            if wrap:
                for opts in (0, 1, 2, 12):
                    seed = decode_seed(lt, [wrap(p) for p in ips], opts)
                    if seed:
                        put("decode", seed, args.max_len_decode)
    for data in caps:
        put("capture", data, args.max_len)
        put("engine", data, args.max_len)
        frames = packets(data, 64)
        if frames:
            seed = decode_seed(frames[0][0], [f for lt, f in frames if lt == frames[0][0]])
            if seed:
                put("decode", seed, args.max_len_decode)
    print("seed corpus: " + ", ".join(f"{k} {len(list(d.iterdir()))} files" for k, d in dirs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
