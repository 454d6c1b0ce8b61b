#!/usr/bin/env python3
"""Deterministic synthetic captures for pyhunt's benchmarks (numpy only, no per-packet Python).

The benchmarks need captures whose *concurrency* is known: ``--flows N`` flows that are all open at
the same time (every flow starts in the first 10% of ``--duration`` and sends its last packet in the
last 10%, and the duration stays below every inactivity timeout), so a flow table holds N flows at
the 90% mark. ``--flood`` makes every packet a flow of its own (a SYN / one-query scan).

Traffic (shares of flows): 74% TCP (3-way handshake with MSS/SACK/WS options, request, bulk data
one way and ACKs/small segments the other, then FIN teardown 70% / RST 15% / left open 15%, with
consistent sequence and acknowledgement numbers), 15% DNS-like UDP (query and response, sometimes
two of each), 5% QUIC-like UDP/443, 3% RTP-like UDP, 3% ICMP/ICMPv6 echo. ``--ipv6-share`` of flows
are IPv6, ``--vlan-share`` of flows carry an 802.1Q tag, ``--vxlan-share`` of flows are wrapped in
outer Ethernet/IPv4/UDP 4789/VXLAN (outer UDP checksum 0). Every flow has its own bidirectional
5-tuple; every IPv4 header, TCP, UDP, ICMP and ICMPv6 checksum is valid; payload bytes are
pseudo-random. Classic pcap (microseconds, Ethernet) or pcapng (SHB, one IDB, EPBs).

    python benchmarks/synth.py --packets 2000000 --flows 10000 -o /tmp/mix.pcap [--format pcapng]

A JSON summary is written next to the output (OUTPUT.json) and printed.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time

import numpy as np

__all__ = ["Spec", "write_capture", "GENERATOR_VERSION"]

GENERATOR_VERSION = 1
START_EPOCH = 1_700_000_000

# flow kinds
TCP, DNS, QUIC, RTP, ICMP = 0, 1, 2, 3, 4
KIND_SHARES = np.array([0.74, 0.15, 0.05, 0.03, 0.03])
# TCP endings
END_FIN, END_RST, END_OPEN = 0, 1, 2
# TCP flags
F_FIN, F_SYN, F_RST, F_PSH, F_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MSS = 1448
SYN_OPTS = bytes([2, 4, 0x05, 0xB4, 1, 1, 4, 2, 1, 3, 3, 7])  # MSS 1460, NOP NOP SACK-OK, NOP WS 7


@dataclasses.dataclass(frozen=True)
class Spec:
    """What to generate; ``key()`` names the file in a cache."""
    packets: int
    flows: int
    seed: int = 1
    format: str = "pcap"
    vlan_share: float = 0.1
    vxlan_share: float = 0.0
    ipv6_share: float = 0.2
    duration: float = 50.0
    flood: bool = False

    def key(self) -> str:
        text = json.dumps({**dataclasses.asdict(self), "v": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------
# Flows and packets (whole capture, in flow order)
# ---------------------------------------------------------------------------

def _excl_cumsum(x: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Exclusive cumulative sum of x within each group (groups are contiguous runs)."""
    c = np.cumsum(x, dtype=np.float64 if x.dtype.kind == "f" else np.int64)
    excl = c - x
    return excl - np.repeat(excl[starts], counts)


def _packet_counts(rng, spec: Spec, kind: np.ndarray) -> np.ndarray:
    """Packets per flow: DNS 2 or 4, the rest heavy-tailed with a minimum, summing to spec.packets."""
    F = len(kind)
    if spec.flood:
        return np.ones(F, dtype=np.int64)
    n = np.zeros(F, dtype=np.int64)
    dns = kind == DNS
    n[dns] = np.where(rng.random(int(dns.sum())) < 0.75, 2, 4)
    minimum = np.where(kind == TCP, 3, 2)
    rest = ~dns
    budget = spec.packets - int(n[dns].sum()) - int(minimum[rest].sum())
    if budget < 0:
        raise ValueError(f"{spec.packets} packets are too few for {spec.flows} flows")
    w = rng.lognormal(0.0, 1.2, size=int(rest.sum()))
    extra = np.floor(w / w.sum() * budget).astype(np.int64)
    short = budget - int(extra.sum())
    if short:
        np.add.at(extra, rng.choice(len(extra), size=short, replace=True), 1)
    n[rest] = minimum[rest] + extra
    return n


def _flows(rng, spec: Spec) -> dict:
    F = spec.flows
    if spec.flood:
        if spec.flows != spec.packets:
            raise ValueError("--flood needs --flows equal to --packets (one packet per flow)")
        kind = np.where(rng.random(F) < 0.85, TCP, DNS)
    else:
        kind = rng.choice(len(KIND_SHARES), size=F, p=KIND_SHARES)
    f = np.arange(F, dtype=np.uint64)
    h = (f * np.uint64(2654435761) + np.uint64(spec.seed * 40503)) & np.uint64(0xFFFFFFFF)
    icmp = kind == ICMP
    client = np.where(icmp, (1 << 23) + f, h >> np.uint64(15)).astype(np.uint64)  # ICMP: own address
    sport = (32768 + (h & np.uint64(0x7FFF))).astype(np.int64)
    srv = ((f * np.uint64(40503) + np.uint64(7)) % np.uint64(4096)).astype(np.uint64)
    dport = np.zeros(F, dtype=np.int64)
    tcp = kind == TCP
    dport[tcp] = rng.choice([443, 80, 22, 8080, 3306], size=int(tcp.sum()), p=[.6, .25, .05, .05, .05])
    dport[kind == DNS] = 53
    srv[kind == DNS] = srv[kind == DNS] % np.uint64(8)
    dport[kind == QUIC] = 443
    dport[kind == RTP] = 16384 + 2 * (f[kind == RTP] % np.uint64(8000)).astype(np.int64)
    if spec.flood:
        start = rng.random(F) * spec.duration
        end = start
    else:
        start = rng.random(F) * 0.1 * spec.duration
        end = (0.9 + 0.1 * rng.random(F)) * spec.duration
    return {
        "kind": kind, "client": client, "server": srv, "sport": sport, "dport": dport,
        "v6": rng.random(F) < spec.ipv6_share,
        "vlan": rng.random(F) < spec.vlan_share,
        "vxlan": rng.random(F) < spec.vxlan_share,
        "ending": rng.choice(3, size=F, p=[.70, .15, .15]),
        "unanswered": rng.random(F) < 0.10,
        "isn": rng.integers(0, 1 << 32, size=(F, 2), dtype=np.int64),
        "hash": h.astype(np.int64),
        "rtt": rng.uniform(0.001, 0.05, size=F),
        "start": start, "end": end,
    }


def _packets(rng, spec: Spec, fl: dict) -> dict:
    kind = fl["kind"]
    n = _packet_counts(rng, spec, kind)
    F, P = len(n), int(n.sum())
    starts = np.concatenate(([0], np.cumsum(n)[:-1]))
    fid = np.repeat(np.arange(F), n)
    k = np.arange(P) - np.repeat(starts, n)
    nk = n[fid]
    kd = kind[fid]
    r = rng.random(P)
    direction = np.zeros(P, dtype=np.int8)
    flags = np.zeros(P, dtype=np.uint8)
    pay = np.zeros(P, dtype=np.int64)
    syn = np.zeros(P, dtype=bool)

    t = kd == TCP
    if spec.flood:
        flags[t] = F_SYN
    else:
        ending = fl["ending"][fid]
        mid = t & (k >= 4)
        down = mid & (r < 0.65)
        up = mid & ~down
        direction[down] = 1
        big = rng.random(P) < 0.8
        pay[down] = np.where(big[down], MSS, rng.integers(100, MSS, size=P)[down])
        flags[down] = np.where(pay[down] == MSS, F_ACK, F_ACK | F_PSH)
        small = rng.random(P) < 0.2
        pay[up] = np.where(small[up], rng.integers(50, 500, size=P)[up], 0)
        flags[up] = np.where(pay[up] > 0, F_ACK | F_PSH, F_ACK)
        req = t & (k == 3)
        flags[req] = F_ACK | F_PSH
        pay[req] = rng.integers(100, 400, size=P)[req]
        flags[t & (k == 2)] = F_ACK
        sa = t & (k == 1)
        direction[sa] = 1
        flags[sa] = F_SYN | F_ACK
        syn[sa] = True
        fin = t & (ending == END_FIN) & (nk >= 7)
        for back, d, fl_ in ((3, 0, F_FIN | F_ACK), (2, 1, F_FIN | F_ACK), (1, 0, F_ACK)):
            m = fin & (k == nk - back)
            direction[m], flags[m], pay[m] = d, fl_, 0
        rst = t & (ending == END_RST) & (nk >= 5) & (k == nk - 1)
        direction[rst], flags[rst], pay[rst] = 1, F_RST | F_ACK, 0
        flags[t & (k == 0)] = F_SYN
    syn[t & (k == 0)] = not spec.flood

    d = kd == DNS
    direction[d] = k[d] % 2
    pay[d] = np.where(k[d] % 2 == 0, rng.integers(28, 60, size=P)[d], rng.integers(60, 200, size=P)[d])
    q = kd == QUIC
    direction[q] = np.where(k[q] == 0, 0, (r[q] < 0.5).astype(np.int8))
    large = rng.random(P) < 0.7
    qpay_big, qpay_small = rng.integers(1200, 1350, size=P), rng.integers(30, 80, size=P)
    pay[q] = np.where((direction[q] == 1) == large[q], qpay_big[q], qpay_small[q])
    p = kd == RTP
    direction[p] = (r[p] < 0.5)
    pay[p] = 172
    i = kd == ICMP
    direction[i] = np.where(fl["unanswered"][fid[i]], 0, k[i] % 2)
    pay[i] = 56

    # sequence numbers: what each direction consumed before this packet (SYN and FIN count one)
    cons = pay + ((flags & F_SYN) > 0) + ((flags & F_FIN) > 0)
    before = [_excl_cumsum(np.where(direction == dd, cons, 0), starts, n) for dd in (0, 1)]
    isn = fl["isn"][fid]
    own = np.where(direction == 0, isn[:, 0] + before[0], isn[:, 1] + before[1])
    other = np.where(direction == 0, isn[:, 1] + before[1], isn[:, 0] + before[0])
    seq = own & 0xFFFFFFFF
    ack = np.where(flags & F_ACK, other & 0xFFFFFFFF, 0)

    # time: handshake and teardown one round-trip apart, DNS exchanges too; the other packets at
    # increasing random offsets between them, so the flow spans [start, end]
    gaps = rng.exponential(size=P)
    tot = np.add.reduceat(gaps, starts) if P else gaps
    u = _excl_cumsum(gaps, starts, n) / np.repeat(tot, n)
    rtt = fl["rtt"][fid]
    s0, s1 = fl["start"][fid], fl["end"][fid]
    a = np.where(t, s0 + 3 * rtt, s0)
    b = np.where(t, s1 - 3 * rtt, s1)
    ts = a + (b - a) * u
    hs = t & (k < 3)
    ts[hs] = s0[hs] + k[hs] * rtt[hs]
    if not spec.flood:
        td = (fin & (k >= nk - 3)) | rst
        back = nk - 1 - k
        ts[td] = s1[td] - back[td] * rtt[td]
    ts[d] = s0[d] + (k[d] // 2) * 0.2 + (k[d] % 2) * rtt[d]
    return {"fid": fid, "k": k, "dir": direction, "flags": flags, "pay": pay, "syn": syn,
            "seq": seq, "ack": ack, "ts": ts}


# ---------------------------------------------------------------------------
# Bytes: one chunk of packets at a time, headers written per layout class
# ---------------------------------------------------------------------------

def _put(h: np.ndarray, col: int, val, nbytes: int) -> None:
    val = np.asarray(val, dtype=np.uint64)
    for b in range(nbytes):
        h[:, col + b] = (val >> np.uint64(8 * (nbytes - 1 - b))) & np.uint64(0xFF)


def _words(h: np.ndarray, a: int, b: int) -> np.ndarray:
    return ((h[:, a:b:2].astype(np.uint64) << np.uint64(8)) | h[:, a + 1:b:2]).sum(axis=1)


def _fold(s: np.ndarray) -> np.ndarray:
    s = s.astype(np.uint64)
    for _ in range(4):
        s = (s & np.uint64(0xFFFF)) + (s >> np.uint64(16))
    return (~s) & np.uint64(0xFFFF)


class _PayloadSums:
    """Sums of big-endian 16-bit words of any byte range of a buffer (for L4 checksums)."""

    def __init__(self, buf: np.ndarray):
        self.buf = buf
        b = buf.astype(np.uint64)
        m = len(buf)
        ev = (b[0:m - 1:2] << np.uint64(8)) | b[1:m:2]
        od = (b[1:m - 1:2] << np.uint64(8)) | b[2:m:2]
        self.pe = np.concatenate(([0], np.cumsum(ev, dtype=np.uint64)))
        self.po = np.concatenate(([0], np.cumsum(od, dtype=np.uint64)))

    def __call__(self, start: np.ndarray, length: np.ndarray) -> np.ndarray:
        words = length // 2
        j = start // 2
        odd = (start & 1) == 1
        lo, le = len(self.po) - 1, len(self.pe) - 1
        s = np.where(odd, self.po[np.minimum(j + words, lo)] - self.po[np.minimum(j, lo)],
                     self.pe[np.minimum(j + words, le)] - self.pe[np.minimum(j, le)])
        tail = (length & 1) == 1
        last = self.buf[np.minimum(start + length - 1, len(self.buf) - 1)].astype(np.uint64) << np.uint64(8)
        return s + np.where(tail, last, np.uint64(0))


V6_CLIENT = bytes.fromhex("fd000000000000010000000000000000")
V6_SERVER = bytes.fromhex("20010db8000000010000000000000000")
V6_DNS = bytes.fromhex("20010db8000000530000000000000000")


def _addr4(is_client: np.ndarray, client, server, kind) -> np.ndarray:
    base_srv = np.where(kind == DNS, np.uint64(0xC6130035), np.uint64(0xC6120000))  # 198.19.0.53+, 198.18/16
    return np.where(is_client, np.uint64(0x0A000000) + client, base_srv + server)


def _write_chunk(out: np.ndarray, base: int, idx: np.ndarray, fl: dict, pk: dict, rng, spec: Spec,
                 fill: np.ndarray) -> int:
    """Write the packets idx (in capture order) into out[base:], return the bytes used."""
    fid = pk["fid"][idx]
    kind, v6, vlan, vxlan = fl["kind"][fid], fl["v6"][fid], fl["vlan"][fid], fl["vxlan"][fid]
    d, flags, pay, syn = pk["dir"][idx], pk["flags"][idx], pk["pay"][idx], pk["syn"][idx]
    tcp = kind == TCP
    l4cls = np.where(tcp, np.where(syn, 1, 0), np.where(kind == ICMP, 3, 2))
    l4len = np.choose(l4cls, [20, 32, 8, 8])
    hl = np.where(vxlan, 50, 0) + 14 + 4 * vlan + np.where(v6, 40, 20) + l4len
    frame = np.maximum(hl + pay, 60)
    ng = spec.format == "pcapng"
    rh = 28 if ng else 16
    rec = rh + frame + ((((-frame) % 4) + 4) if ng else 0)
    end = np.cumsum(rec)
    total = int(end[-1])
    roff = end - rec
    fstart = roff + rh
    buf = out[base:base + total]
    np.copyto(buf, np.resize(fill, total))
    sums = _PayloadSums(buf)
    psum = sums(fstart + hl, pay)

    # record headers (little-endian)
    tsu = (START_EPOCH * 1_000_000 + np.round(pk["ts"][idx] * 1e6)).astype(np.uint64)
    if ng:
        hdr = np.empty((len(idx), 7), dtype="<u4")
        hdr[:, 0], hdr[:, 1], hdr[:, 2] = 6, rec, 0
        hdr[:, 3], hdr[:, 4] = tsu >> np.uint64(32), tsu & np.uint64(0xFFFFFFFF)
        hdr[:, 5] = hdr[:, 6] = frame
        tail = np.empty((len(idx), 1), dtype="<u4")
        tail[:, 0] = rec
        buf[(end - 4)[:, None] + np.arange(4)] = tail.view(np.uint8)
        padlen = rec - rh - frame - 4
        for z in (1, 2, 3):
            m = padlen >= z
            buf[(fstart + frame + z - 1)[m]] = 0
    else:
        hdr = np.empty((len(idx), 4), dtype="<u4")
        hdr[:, 0], hdr[:, 1] = tsu // np.uint64(1_000_000), tsu % np.uint64(1_000_000)
        hdr[:, 2] = hdr[:, 3] = frame
    buf[roff[:, None] + np.arange(rh)] = hdr.view(np.uint8)
    # Ethernet padding is zero
    padm = hl + pay < 60
    if padm.any():
        for z in range(60):
            m = padm & (hl + pay + z < 60)
            if not m.any():
                break
            buf[(fstart + hl + pay + z)[m]] = 0

    client, server = fl["client"][fid], fl["server"][fid]
    sport, dport = fl["sport"][fid], fl["dport"][fid]
    is_c = d == 0
    ipid = rng.integers(0, 65536, size=len(idx))
    cls = ((vxlan.astype(np.int64) * 2 + vlan) * 2 + v6) * 4 + l4cls
    for c in np.unique(cls):
        m = np.nonzero(cls == c)[0]
        x_vx, x_vl, x_v6, x_l4 = bool(c >> 4 & 1), bool(c >> 3 & 1), bool(c >> 2 & 1), int(c & 3)
        H = int(hl[m[0]])
        h = np.zeros((len(m), H), dtype=np.uint8)
        o = 0
        cm = is_c[m]
        f_m = fid[m]
        if x_vx:  # outer Ethernet / IPv4 / UDP 4789 / VXLAN
            _put(h, 0, 0x02AA00000002, 6)
            _put(h, 6, 0x02AA00000001, 6)
            _put(h, 12, 0x0800, 2)
            outer_len = frame[m] - 14
            h[:, 14] = 0x45
            _put(h, 16, outer_len, 2)
            _put(h, 18, ipid[m] ^ 0x5555, 2)
            h[:, 22], h[:, 23] = 64, 17
            _put(h, 26, 0xC0000201 + (f_m % 8), 4)   # 192.0.2.1-8
            _put(h, 30, 0xC0000264, 4)               # 192.0.2.100
            _put(h, 24, _fold(_words(h, 14, 34)), 2)
            _put(h, 34, 49152 + (fl["hash"][f_m] % 16384), 2)
            _put(h, 36, 4789, 2)
            _put(h, 38, outer_len - 20, 2)
            h[:, 42] = 0x08
            _put(h, 46, 1000 + (f_m % 4), 3)
            o = 50
        cmac = 0x020000000000 + client[m].astype(np.int64)
        _put(h, o, np.where(cm, 0x02FF00000001, cmac), 6)
        _put(h, o + 6, np.where(cm, cmac, 0x02FF00000001), 6)
        o += 12
        if x_vl:
            _put(h, o, 0x8100, 2)
            _put(h, o + 2, 100 + (f_m % 16), 2)
            o += 4
        _put(h, o, 0x86DD if x_v6 else 0x0800, 2)
        o += 2
        ip = o
        proto = 6 if x_l4 <= 1 else (17 if x_l4 == 2 else (58 if x_v6 else 1))
        l4l = [20, 32, 8, 8][x_l4]
        seglen = l4l + pay[m]
        if x_v6:
            h[:, ip] = 0x60
            _put(h, ip + 1, fl["hash"][f_m] & 0xFFFFF, 3)
            _put(h, ip + 4, seglen, 2)
            h[:, ip + 6], h[:, ip + 7] = proto, np.where(cm, 64, 56)
            pre_c = np.frombuffer(V6_CLIENT[:12], dtype=np.uint8)
            pre_s = np.where((kind[m] == DNS)[:, None], np.frombuffer(V6_DNS[:12], dtype=np.uint8),
                             np.frombuffer(V6_SERVER[:12], dtype=np.uint8))
            for j, who in ((ip + 8, cm), (ip + 24, ~cm)):
                h[:, j:j + 12] = np.where(who[:, None], pre_c, pre_s)
                _put(h, j + 12, np.where(who, client[m], server[m]), 4)
            pseudo = _words(h, ip + 8, ip + 40) + seglen.astype(np.uint64) + np.uint64(proto)
            o = ip + 40
        else:
            h[:, ip] = 0x45
            _put(h, ip + 2, 20 + seglen, 2)
            _put(h, ip + 4, ipid[m], 2)
            if x_l4 <= 1:
                h[:, ip + 6] = 0x40  # DF
            h[:, ip + 8], h[:, ip + 9] = np.where(cm, 64, 56), proto
            a_c = _addr4(np.ones(len(m), bool), client[m], server[m], kind[m])
            a_s = _addr4(np.zeros(len(m), bool), client[m], server[m], kind[m])
            _put(h, ip + 12, np.where(cm, a_c, a_s), 4)
            _put(h, ip + 16, np.where(cm, a_s, a_c), 4)
            _put(h, ip + 10, _fold(_words(h, ip, ip + 20)), 2)
            pseudo = _words(h, ip + 12, ip + 20) + seglen.astype(np.uint64) + np.uint64(proto)
            o = ip + 20
        l4 = o
        if x_l4 <= 1:
            _put(h, l4, np.where(cm, sport[m], dport[m]), 2)
            _put(h, l4 + 2, np.where(cm, dport[m], sport[m]), 2)
            _put(h, l4 + 4, pk["seq"][idx[m]], 4)
            _put(h, l4 + 8, pk["ack"][idx[m]], 4)
            h[:, l4 + 12] = (l4l // 4) << 4
            h[:, l4 + 13] = flags[m]
            _put(h, l4 + 14, np.where(cm, 64240, 65160), 2)
            if x_l4 == 1:
                h[:, l4 + 20:l4 + 32] = np.frombuffer(SYN_OPTS, dtype=np.uint8)
            csum = _fold(pseudo + _words(h, l4, l4 + l4l) + psum[m])
            _put(h, l4 + 16, csum, 2)
        elif x_l4 == 2:
            _put(h, l4, np.where(cm, sport[m], dport[m]), 2)
            _put(h, l4 + 2, np.where(cm, dport[m], sport[m]), 2)
            _put(h, l4 + 4, seglen, 2)
            csum = _fold(pseudo + _words(h, l4, l4 + 8) + psum[m])
            _put(h, l4 + 6, np.where(csum == 0, 0xFFFF, csum), 2)
        else:
            req, rep = (128, 129) if x_v6 else (8, 0)
            h[:, l4] = np.where(cm, req, rep)
            _put(h, l4 + 4, fl["hash"][f_m] & 0xFFFF, 2)
            _put(h, l4 + 6, pk["k"][idx[m]] // 2, 2)
            s = _words(h, l4, l4 + 8) + psum[m]
            if x_v6:
                s = s + pseudo
            _put(h, l4 + 2, _fold(s), 2)
        buf[(fstart[m])[:, None] + np.arange(H)] = h
    return total


def write_capture(spec: Spec, path: str, chunk: int = 16384, quiet: bool = True) -> dict:
    """Write the capture described by spec to path (atomically) and return its summary."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    fl = _flows(rng, spec)
    pk = _packets(rng, spec, fl)
    P = len(pk["ts"])
    order = np.argsort(pk["ts"], kind="stable")
    fill = np.random.default_rng(spec.seed + 1).integers(0, 256, size=(1 << 20) + 7, dtype=np.uint8)
    tmp = f"{path}.tmp{os.getpid()}"
    out = np.empty(chunk * (1600 + 64), dtype=np.uint8)
    size = 0
    with open(tmp, "wb") as f:
        if spec.format == "pcapng":
            shb = np.array([0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0xFFFFFFFF, 0xFFFFFFFF, 28], dtype="<u4")
            shb[3] = 1  # major 1, minor 0 (two u16 in one word, little-endian)
            idb = np.array([1, 20, 1, 262144, 20], dtype="<u4")
            head = shb.tobytes() + idb.tobytes()
        elif spec.format == "pcap":
            head = np.array([0xA1B2C3D4], dtype="<u4").tobytes() + np.array([2, 4], dtype="<u2").tobytes() + \
                np.array([0, 0, 262144, 1], dtype="<u4").tobytes()
        else:
            raise ValueError(f"unknown format {spec.format!r}")
        f.write(head)
        size += len(head)
        for c0 in range(0, P, chunk):
            used = _write_chunk(out, 0, order[c0:c0 + chunk], fl, pk, rng, spec, fill)
            f.write(memoryview(out)[:used])
            size += used
            if not quiet and (c0 // chunk) % 32 == 0:
                print(f"  {c0 + chunk:,} / {P:,} packets", file=sys.stderr)
    os.replace(tmp, path)
    kind = fl["kind"]
    fid = pk["fid"]
    summary = {
        "generator": f"benchmarks/synth.py v{GENERATOR_VERSION}", "spec": dataclasses.asdict(spec),
        "packets": P, "flows": int(spec.flows), "file_bytes": size,
        "mean_frame": round((size - len(head)) / max(P, 1) - (28 if spec.format == "pcapng" else 16), 1),
        "flow_shares": {name: round(float((kind == i).mean()), 4)
                        for i, name in enumerate(("tcp", "dns", "quic", "rtp", "icmp"))},
        "packet_shares": {"ipv6": round(float(fl["v6"][fid].mean()), 4),
                          "vlan": round(float(fl["vlan"][fid].mean()), 4),
                          "vxlan": round(float(fl["vxlan"][fid].mean()), 4)},
        "concurrent_flows_at_90pct": int(spec.flows if not spec.flood else 0),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    with open(path + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--flows", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--format", choices=("pcap", "pcapng"), default="pcap")
    ap.add_argument("--vlan-share", type=float, default=0.1)
    ap.add_argument("--vxlan-share", type=float, default=0.0)
    ap.add_argument("--ipv6-share", type=float, default=0.2)
    ap.add_argument("--duration", type=float, default=50.0, help="seconds (default 50, below every timeout)")
    ap.add_argument("--flood", action="store_true", help="one packet per flow (needs --flows = --packets)")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args(argv)
    spec = Spec(packets=a.packets, flows=a.flows, seed=a.seed, format=a.format, vlan_share=a.vlan_share,
                vxlan_share=a.vxlan_share, ipv6_share=a.ipv6_share, duration=a.duration, flood=a.flood)
    try:
        summary = write_capture(spec, a.output, quiet=False)
    except ValueError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
