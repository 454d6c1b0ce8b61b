"""Fragment reassembly under attack (issue #5): ext/ph_frag.c must stay within its limits whatever
arrives -- never-completing datagrams, overlaps, offsets past 64 KiB, floods of tiny fragments --
count what it drops (frag_overflow, frag_timeout, fragment_dropped) and still reassemble the
legitimate datagrams interleaved with the attack where the limits allow.

Two levels: ph_frag itself through ctypes (a copy compiled from ext/ph_frag.c), where the memory
it accounts and the datagrams it holds can be checked after every fragment; and the whole engine,
fed IPv4 fragments in a capture, where the counters and the flows are checked.
"""
from __future__ import annotations

import ctypes
import shutil
import struct
import subprocess

import numpy as np
import pytest

import floodgen
from conftest import ROOT
from pyhunt import _ext
from pyhunt.schema import dtype

_DTYPE = dtype()

NAMES = _ext.COUNTER_NAMES
HELD, DROPPED = NAMES.index("fragment_held"), NAMES.index("fragment_dropped")
REASSEMBLED, OVERFLOW, TIMEOUT = (NAMES.index(n) for n in ("fragments_reassembled", "frag_overflow", "frag_timeout"))
FRAG_HELD, FRAG_DONE, FRAG_DROPPED = 0, 1, 2          # ph_frag.h
MAX_DATA, MAX_RANGES = 65535, 64
NS = 1_000_000_000
T0 = 1_700_000_000 * NS
MiB = 1 << 20


class Key(ctypes.Structure):
    _fields_ = [("src", ctypes.c_uint8 * 16), ("dst", ctypes.c_uint8 * 16), ("id", ctypes.c_uint32),
                ("proto", ctypes.c_uint8), ("ipver", ctypes.c_uint8)]


@pytest.fixture(scope="module")
def libfrag(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert cc, "a C compiler is needed (the extension is built with one)"
    so = tmp_path_factory.mktemp("frag") / "libphfrag.so"
    # under .ci/sanitize.sh this copy is sanitized too (the runtimes are already loaded)
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
    subprocess.run([cc, "-std=c11", "-O1", "-g", "-shared", "-fPIC", *(san if floodgen.UNDER_ASAN else []),
                    "-I", str(ROOT / "ext"), str(ROOT / "ext" / "ph_frag.c"), "-o", str(so)], check=True)
    lib = ctypes.CDLL(str(so))
    u8p = ctypes.POINTER(ctypes.c_uint8)
    lib.ph_frag_new.restype = ctypes.c_void_p
    lib.ph_frag_new.argtypes = [ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int64, ctypes.POINTER(ctypes.c_uint64)]
    lib.ph_frag_free.argtypes = [ctypes.c_void_p]
    lib.ph_frag_add.restype = ctypes.c_int
    lib.ph_frag_add.argtypes = [ctypes.c_void_p, ctypes.POINTER(Key), ctypes.c_int64, ctypes.c_uint32, ctypes.c_int,
                                ctypes.c_char_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_uint32,
                                ctypes.POINTER(u8p), ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_uint32)]
    lib.ph_frag_expire.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.ph_frag_flush.argtypes = [ctypes.c_void_p]
    lib.ph_frag_pending.restype = ctypes.c_uint32
    lib.ph_frag_pending.argtypes = [ctypes.c_void_p]
    lib.ph_frag_bytes.restype = ctypes.c_uint64
    lib.ph_frag_bytes.argtypes = [ctypes.c_void_p]
    return lib


class Frags:
    """One ph_frag table with the engine's bookkeeping: the caller counts HELD/DROPPED per fragment."""

    HDR = bytes(20)

    def __init__(self, lib, max_dgrams=4096, max_bytes=16 * MiB, timeout_ns=30 * NS):
        self.lib = lib
        self.ctr = (ctypes.c_uint64 * len(NAMES))()
        self.max_dgrams, self.max_bytes = max_dgrams, max_bytes
        self.t = lib.ph_frag_new(max_dgrams, max_bytes, timeout_ns, self.ctr)
        assert self.t
        self.peak_bytes = self.peak_pending = 0

    def add(self, ident: int, offset: int, data: bytes, more: bool, ts: int = T0, src: int = 1):
        k = Key()
        k.src[0], k.src[1], k.dst[0], k.id, k.proto, k.ipver = 10, src & 0xFF, 10, ident, 17, 4
        k.src[2] = (src >> 8) & 0xFF
        out = ctypes.POINTER(ctypes.c_uint8)()
        hl, dl = ctypes.c_uint32(), ctypes.c_uint32()
        r = self.lib.ph_frag_add(self.t, ctypes.byref(k), ts, offset, int(more), self.HDR, len(self.HDR), data,
                                 len(data), ctypes.byref(out), ctypes.byref(hl), ctypes.byref(dl))
        if r == FRAG_HELD:
            self.ctr[HELD] += 1
        elif r == FRAG_DROPPED:
            self.ctr[DROPPED] += 1
        pending, used = self.lib.ph_frag_pending(self.t), self.lib.ph_frag_bytes(self.t)
        assert pending <= self.max_dgrams and used <= self.max_bytes, (pending, used)
        self.peak_bytes, self.peak_pending = max(self.peak_bytes, used), max(self.peak_pending, pending)
        if r == FRAG_DONE:
            return bytes(ctypes.cast(out, ctypes.POINTER(ctypes.c_uint8 * (hl.value + dl.value))).contents)[hl.value:]
        return r

    def c(self, i: int) -> int:
        return self.ctr[i]

    def close(self):
        self.lib.ph_frag_flush(self.t)
        assert self.lib.ph_frag_pending(self.t) == 0 and self.lib.ph_frag_bytes(self.t) == 0
        self.lib.ph_frag_free(self.t)


def test_never_completing_datagrams_evict_the_oldest(libfrag):
    f = Frags(libfrag, max_dgrams=64, max_bytes=1 * MiB)
    n = 10_000
    for i in range(n):
        assert f.add(i, 0, b"a" * 8, True) == FRAG_HELD
    assert f.peak_pending == 64
    assert f.c(OVERFLOW) == n - 64 and f.c(DROPPED) == n - 64 and f.c(HELD) == 64
    # the newest ones are the ones kept: completing one of them still works
    assert f.add(n - 1, 8, b"b" * 8, False) == b"a" * 8 + b"b" * 8
    assert f.add(0, 8, b"b" * 8, False) == FRAG_HELD      # long evicted: starts a new datagram
    f.close()
    assert f.c(TIMEOUT) == 64                              # flushed at the end of input
    assert f.c(HELD) == 1 and f.c(DROPPED) == n           # the completed datagram's first fragment


def test_byte_budget_holds_and_legitimate_datagrams_complete(libfrag):
    budget = 256 * 1024
    f = Frags(libfrag, max_dgrams=4096, max_bytes=budget)
    done = 0
    for i in range(2_000):
        # attack: one fragment far out, so the datagram's buffer must cover ~61 KB
        f.add(100_000 + i, 60_000, b"x" * 1000, True, src=2)
        if i % 10 == 0:   # a legitimate 3000-byte datagram in two fragments, back to back
            body = bytes(range(256)) * 11 + bytes(184)
            assert f.add(i, 0, body[:1480], True) == FRAG_HELD
            assert f.add(i, 1480, body[1480:], False) == body
            done += 1
    assert f.peak_bytes <= budget
    assert f.c(REASSEMBLED) == done == 200
    assert f.c(OVERFLOW) > 1_500          # most attack datagrams could not be kept
    f.close()
    assert f.c(OVERFLOW) + f.c(TIMEOUT) == 2_000      # each attack datagram dropped exactly once
    assert f.c(DROPPED) == 2_000 and f.c(HELD) == 200


def test_overlaps_first_writer_wins(libfrag):
    f = Frags(libfrag)
    assert f.add(7, 0, b"A" * 16, True) == FRAG_HELD
    assert f.add(7, 8, b"B" * 16, True) == FRAG_HELD           # overlaps [8, 16)
    assert f.add(7, 0, b"C" * 8, True) == FRAG_HELD            # a full duplicate of received bytes
    assert f.add(7, 24, b"D" * 8, False) == b"A" * 16 + b"B" * 8 + b"D" * 8
    # a datagram whose last fragment is re-sent with a larger end: the largest end wins (Zeek)
    assert f.add(8, 16, b"E" * 8, False) == FRAG_HELD
    assert f.add(8, 16, b"F" * 16, False) == FRAG_HELD
    assert f.add(8, 0, b"G" * 16, True) == b"G" * 16 + b"E" * 8 + b"F" * 8
    f.close()
    assert f.c(REASSEMBLED) == 2 and f.c(OVERFLOW) == 0


def test_offsets_past_64k_invalidate_the_datagram(libfrag):
    f = Frags(libfrag)
    assert f.add(1, 0, b"a" * 8, True) == FRAG_HELD
    assert f.add(1, 65_528, b"b" * 16, True) == FRAG_DROPPED      # ends past 65,535: the datagram goes
    assert f.c(OVERFLOW) == 1 and f.c(DROPPED) == 2 and f.c(HELD) == 0
    assert f.add(2, MAX_DATA + 1, b"", False) == FRAG_DROPPED     # no datagram yet: only counted
    assert f.add(3, 65_528, b"c" * 7, False) == FRAG_HELD         # exactly 65,535: still valid
    assert libfrag.ph_frag_pending(f.t) == 1
    f.close()
    assert f.c(OVERFLOW) == 2 and f.c(TIMEOUT) == 1


def test_tiny_fragment_flood_hits_the_range_limit(libfrag):
    f = Frags(libfrag)
    for i in range(MAX_RANGES):          # 8-byte fragments with 8-byte holes: one range each
        assert f.add(9, 16 * i, b"t" * 8, True) == FRAG_HELD
    assert f.add(9, 16 * MAX_RANGES, b"t" * 8, True) == FRAG_DROPPED
    assert f.c(OVERFLOW) == 1 and f.c(DROPPED) == MAX_RANGES + 1
    # filling holes merges ranges instead of adding them: an in-order tiny-fragment datagram completes
    body = bytes(range(200)) * 5
    for off in range(0, 1000, 8):
        r = f.add(10, off, body[off:off + 8], off + 8 < 1000)
    assert r == body
    # and many datagrams of tiny fragments stay within the datagram limit
    g = Frags(libfrag, max_dgrams=128, max_bytes=4 * MiB)
    for i in range(20_000):
        g.add(i // 10, 16 * (i % 10) + 8, b"u" * 8, True)
    assert g.peak_pending == 128 and g.c(OVERFLOW) == 2_000 - 128
    f.close()
    g.close()


def test_timeout_expires_incomplete_datagrams(libfrag):
    f = Frags(libfrag, timeout_ns=30 * NS)
    assert f.add(1, 0, b"a" * 8, True, ts=T0) == FRAG_HELD
    assert f.add(2, 0, b"b" * 8, True, ts=T0 + 10 * NS) == FRAG_HELD
    assert f.add(2, 8, b"c" * 8, False, ts=T0 + 29 * NS) == b"b" * 8 + b"c" * 8   # 19 s apart: in time
    assert f.add(3, 0, b"d" * 8, True, ts=T0 + 30 * NS) == FRAG_HELD              # datagram 1 expires
    assert f.c(TIMEOUT) == 1 and f.c(DROPPED) == 1
    assert f.add(1, 8, b"e" * 8, False, ts=T0 + 31 * NS) == FRAG_HELD             # too late: new datagram
    f.close()
    assert f.c(TIMEOUT) == 3 and f.c(REASSEMBLED) == 1


def test_extreme_timestamps(libfrag):
    """Any 64-bit time (the live path does not go through the reader's clamp): no overflow in the
    timeout test (under .ci/sanitize.sh this copy of ph_frag.c runs with UBSan)."""
    lo, hi = -(2**63), 2**63 - 1
    f = Frags(libfrag, timeout_ns=30 * NS)
    assert f.add(1, 0, b"a" * 8, True, ts=lo + 5) == FRAG_HELD
    assert f.add(2, 0, b"b" * 8, True, ts=hi) == FRAG_HELD          # datagram 1 is ancient: expires
    assert f.c(TIMEOUT) == 1
    assert f.add(3, 0, b"c" * 8, True, ts=lo) == FRAG_HELD          # time going backwards: nothing expires
    assert f.add(2, 8, b"d" * 8, False, ts=hi) == b"b" * 8 + b"d" * 8
    g = Frags(libfrag, timeout_ns=2**63 - 1)                       # the longest timeout there is
    assert g.add(1, 0, b"a" * 8, True, ts=1) == FRAG_HELD
    assert g.add(2, 0, b"a" * 8, True, ts=hi) == FRAG_HELD          # 2**63 - 2 later: still in time
    assert g.c(TIMEOUT) == 0
    assert g.add(3, 0, b"a" * 8, True, ts=lo) == FRAG_HELD
    libfrag.ph_frag_expire(g.t, hi)                                 # created at ts 1: 2**63 - 2 < timeout
    assert g.c(TIMEOUT) == 0
    f.close()
    g.close()


# ---------------------------------------------------------------- through the engine

def _ipv4_fragment(src: int, ident: int, off8: int, more: bool, payload: bytes) -> bytes:
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, (0x2000 if more else 0) | off8,
                                64, 17, 0, src.to_bytes(4, "big"), bytes([10, 0, 0, 1])))
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    hdr[10:12] = struct.pack("!H", ~s & 0xFFFF)
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + bytes(hdr) + payload


def _udp(sport: int, body: bytes) -> bytes:
    return struct.pack("!HHHH", sport, 9, 8 + len(body), 0) + body     # checksum 0: none (IPv4)


def test_engine_attack_with_legitimate_datagrams():
    """60,000 never-completing fragments over 120 s (so both the datagram limit and the 30 s timeout
    act) interleaved with 600 legitimate two-fragment UDP datagrams: every legitimate datagram is
    reassembled into its flow, every attack fragment is dropped and counted, memory stays bounded."""
    import captures as cap
    n_attack, every = 60_000, 100
    frames = []
    legit = 0
    for i in range(n_attack):
        ts = T0 + i * 2_000_000
        frames.append((ts, _ipv4_fragment(0x0B000000 + i, i & 0xFFFF, 0, True, b"z" * 512)))
        if i % every == 0:
            body = _udp(40_000 + legit, bytes(range(256)) * 8)      # 2056 bytes: two fragments
            frames.append((ts + 1, _ipv4_fragment(0x0A000063, legit, 0, True, body[:1480])))
            frames.append((ts + 2, _ipv4_fragment(0x0A000063, legit, 1480 // 8, False, body[1480:])))
            legit += 1
    data = cap.pcap_bytes(frames, nano=True)
    eng = _ext.Engine({}, _DTYPE)
    rss0 = floodgen.rss_bytes()
    flows = []
    eng.feed(data, True)
    for _ in range(100_000):
        rc = eng.run(65536, 1 << 62)
        flows.append(eng.take())
        if rc not in (_ext.RUN_BATCH, _ext.RUN_YIELD):
            break
    assert rc == _ext.RUN_EOF
    growth = floodgen.rss_bytes() - rss0
    eng.begin_capture()
    eng.finish(0)
    flows.append(eng.take())
    recs = np.concatenate(flows)
    c = eng.counters()

    assert c["packets_read"] == n_attack + 2 * legit
    assert sum(c[n] for n in NAMES[2:_ext.N_DISPOSITIONS]) == c["packets_read"]
    assert c["fragments_reassembled"] == legit == 600
    assert c["in_flow"] == legit and c["fragment_held"] == legit
    assert c["fragment_dropped"] == n_attack
    assert c["frag_overflow"] > 0 and c["frag_timeout"] > 0
    assert c["frag_overflow"] + c["frag_timeout"] == n_attack     # each attack datagram dropped once
    udp = recs[recs["proto"] == 17]
    assert len(udp) == legit
    assert (udp["orig_pkts"] == 1).all() and (udp["orig_ip_bytes"] == 20 + 2056).all()
    # 4,096 datagrams of ~3 KB state and buffer at most: far below the 16 MiB budget
    if not floodgen.UNDER_ASAN:
        assert growth < 48 * MiB, growth
