"""One-packet-flow floods, generated with numpy (no per-packet Python), and a driver that streams
them through the engine without writing a file.

Every packet is Ethernet / IPv4 / a 20-byte transport part (a TCP header without options, or a
UDP header with 12 bytes of payload) in a nanosecond classic pcap record: 70 bytes per record.
IPv4, TCP and UDP checksums are valid, so every packet reaches the flow table.
"""
from __future__ import annotations

import resource
import struct
from typing import Callable, Iterator

import numpy as np

RECORD = np.dtype([
    ("ts_sec", "<u4"), ("ts_nsec", "<u4"), ("caplen", "<u4"), ("wirelen", "<u4"),
    ("dmac", "V6"), ("smac", "V6"), ("ethertype", ">u2"),
    ("vihl", "u1"), ("tos", "u1"), ("tot_len", ">u2"), ("ip_id", ">u2"), ("frag", ">u2"),
    ("ttl", "u1"), ("proto", "u1"), ("ip_csum", ">u2"), ("src", ">u4"), ("dst", ">u4"),
    ("l4", ">u2", (10,)),
])
assert RECORD.itemsize == 70
FRAME = RECORD.itemsize - 16
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)   # ns, Ethernet
TCP, UDP = 6, 17


def _fold(s: np.ndarray) -> np.ndarray:
    s = s.astype(np.uint64)
    for _ in range(3):
        s = (s & 0xFFFF) + (s >> 16)
    return (~s & 0xFFFF).astype(np.uint16)


def packets(ts_ns: np.ndarray, src: np.ndarray, dst: np.ndarray, sport: np.ndarray, dport: np.ndarray,
            proto: int, *, tcp_flags: int = 0x02, seq: np.ndarray | None = None) -> np.ndarray:
    """Records (dtype RECORD) of one packet per row; addresses and ports as integer arrays."""
    n = len(ts_ns)
    r = np.zeros(n, RECORD)
    ts = np.asarray(ts_ns, dtype=np.int64)
    r["ts_sec"] = ts // 1_000_000_000
    r["ts_nsec"] = ts % 1_000_000_000
    r["caplen"] = r["wirelen"] = FRAME
    r["dmac"] = b"\x02\x00\x00\x00\x00\x02"
    r["smac"] = b"\x02\x00\x00\x00\x00\x01"
    r["ethertype"] = 0x0800
    r["vihl"] = 0x45
    r["tot_len"] = 40
    r["ip_id"] = np.arange(n, dtype=np.uint64) & 0xFFFF
    r["frag"] = 0x4000
    r["ttl"] = 64
    r["proto"] = proto
    r["src"] = src
    r["dst"] = dst
    s64 = np.asarray(src, dtype=np.uint64)
    d64 = np.asarray(dst, dtype=np.uint64)
    addr = (s64 >> 16) + (s64 & 0xFFFF) + (d64 >> 16) + (d64 & 0xFFFF)
    r["ip_csum"] = _fold(0x4500 + 40 + r["ip_id"].astype(np.uint64) + 0x4000 + (64 << 8 | proto) + addr)
    l4 = r["l4"]
    l4[:, 0] = sport
    l4[:, 1] = dport
    if proto == TCP:
        sq = np.zeros(n, np.uint64) if seq is None else np.asarray(seq, dtype=np.uint64)
        l4[:, 2] = sq >> 16
        l4[:, 3] = sq & 0xFFFF
        l4[:, 6] = (5 << 12) | tcp_flags
        l4[:, 7] = 64240
        csum_word = 8
    else:
        l4[:, 2] = 20
        l4[:, 4:] = 0x4142
        csum_word = 3
    total = l4.astype(np.uint64).sum(axis=1) + addr + proto + 20
    c = _fold(total)
    if proto == UDP:
        c[c == 0] = 0xFFFF
    l4[:, csum_word] = c
    return r


def syn_flood(n: int, *, start_ns: int, gap_ns: int, seed: int = 1) -> np.ndarray:
    """n SYNs from distinct random sources (11.0.0.0/8, random ports) to 10.0.0.1:80."""
    rng = np.random.default_rng(seed)
    i = np.arange(n, dtype=np.uint64)
    src = 0x0B000000 + ((i * np.uint64(2654435761)) & np.uint64(0xFFFFFF))   # a bijection on 24 bits
    return packets(start_ns + i.astype(np.int64) * gap_ns, src, np.full(n, 0x0A000001, np.uint64),
                   rng.integers(1024, 65536, n), np.full(n, 80), TCP, seq=rng.integers(0, 2**32, n))


def udp_flood(n: int, *, start_ns: int, gap_ns: int, seed: int = 2) -> np.ndarray:
    """n UDP packets, random source and destination ports, distinct sources in 12.0.0.0/8."""
    rng = np.random.default_rng(seed)
    i = np.arange(n, dtype=np.uint64)
    src = 0x0C000000 + ((i * np.uint64(2654435761)) & np.uint64(0xFFFFFF))
    return packets(start_ns + i.astype(np.int64) * gap_ns, src, np.full(n, 0x0A000002, np.uint64),
                   rng.integers(1024, 65536, n), rng.integers(1, 65536, n), UDP)


def _asan_loaded() -> bool:
    try:
        with open("/proc/self/maps") as f:
            return any("libasan" in line for line in f)
    except OSError:
        return False


#: Running under .ci/sanitize.sh: AddressSanitizer's quarantine and shadow memory make the resident
#: size say nothing about the engine's own memory, and every packet costs several times more.
UNDER_ASAN = _asan_loaded()


def rss_bytes() -> int:
    """Resident set size of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def run(eng, recs: np.ndarray, *, chunk: int = 1 << 17, on_batch: Callable[[np.ndarray], None],
        on_chunk: Callable[[], None] | None = None, batch: int = 65536) -> None:
    """Stream the records through an _ext.Engine in chunks of whole records, then finish it."""
    eng.begin_capture()
    starts = range(0, len(recs), chunk)
    for k, lo in enumerate(starts):
        body = recs[lo:lo + chunk].tobytes()
        buf = PCAP_HEADER + body if k == 0 else body
        eng.feed(buf, k == len(starts) - 1)
        for _ in range(1_000_000):
            rc = eng.run(batch, 1 << 62)
            if eng.queued():
                on_batch(eng.take())
            if rc not in (1, 2):     # RUN_BATCH, RUN_YIELD: more to do in this buffer
                break
        assert eng.consumed() == len(buf), "a chunk of whole records must be consumed entirely"
        if on_chunk is not None:
            on_chunk()
    eng.begin_capture()
    eng.finish(0)
    while eng.queued():
        on_batch(eng.take())


def chunks_of(recs: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    for lo in range(0, len(recs), chunk):
        yield recs[lo:lo + chunk]
