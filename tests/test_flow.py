"""The flow table (ext/ph_flow*.c) through the public API: Zeek's conn.log semantics on crafted packets.

Each test crafts a conversation with scapy, writes it as a classic pcap with tests/captures.py, replays
it with FlowMeter and checks the records (numpy and zeek-json) against what Zeek does, as described in
../shared/zeek-conn-semantics.md (section numbers in the docstrings). Every replay also checks the
accounting invariant of docs/counters.md: dispositions add up to the packets read, and the packets in
flows add up to the packets of the final records.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct
from dataclasses import dataclass

import numpy as np
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.sctp import SCTP

import captures as cap
from pyhunt import FlowBatch, FlowMeter, _ext, dtype
from pyhunt.schema import CONN_STATES, END_REASONS, FLAGS

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
C, S = "10.0.0.1", "10.0.0.2"
DISPOSITIONS = _ext.COUNTER_NAMES[2:_ext.N_DISPOSITIONS]
UPDATE = FLAGS["update"]


def at(t: float) -> int:
    """Packet time t seconds after T0, in ns."""
    return T0 + round(t * NS)


# ---------------------------------------------------------------- packet builders

def mac_of(addr: str) -> bytes:
    """Every host has its own MAC (02:00 and the last four address bytes), so MACs show direction."""
    return b"\x02\x00" + ipaddress.ip_address(addr).packed[-4:]


def frame(ip: bytes, src: str, dst: str, **eth) -> bytes:
    """An Ethernet frame from src's MAC to dst's (eth keywords go to captures.ethernet, e.g. vlan=)."""
    return cap.ethernet(ip, src=mac_of(src), dst=mac_of(dst), **eth)


@dataclass
class Pkt:
    ts: int        # ns
    ip: bytes      # the IP packet
    frame: bytes   # as written to the capture
    from_a: bool   # sent by the first talker (the client of a Conv)


class Conv:
    """A TCP conversation with consistent sequence numbers: cli() and srv() append one segment each.

    seq/ack default to the sender's next sequence number and to what it has received; an explicit
    seq does not advance the sender's counter.
    """

    def __init__(self, cport: int = 40000, sport: int = 8080, cisn: int = 1000, sisn: int = 5000,
                 c: str = C, s: str = S, vlan=None):
        self.cport, self.sport, self.c, self.s, self.vlan = cport, sport, c, s, vlan
        self.cseq, self.sseq = cisn, sisn
        self.pkts: list[Pkt] = []

    def _seg(self, client: bool, t: float, flags: str, data: bytes, seq, ack, **kw) -> Pkt:
        src, dst = (self.c, self.s) if client else (self.s, self.c)
        sp, dp = (self.cport, self.sport) if client else (self.sport, self.cport)
        mine, theirs = (self.cseq, self.sseq) if client else (self.sseq, self.cseq)
        seg = TCP(sport=sp, dport=dp, flags=flags, seq=mine if seq is None else seq,
                  ack=theirs if ack is None else ack, **kw)
        ip = bytes(IP(src=src, dst=dst) / seg / data)
        p = Pkt(at(t), ip, frame(ip, src, dst, vlan=self.vlan), client)
        self.pkts.append(p)
        if seq is None:
            nxt = (mine + len(data) + ("S" in flags) + ("F" in flags)) & 0xFFFFFFFF
            if client:
                self.cseq = nxt
            else:
                self.sseq = nxt
        return p

    def cli(self, t: float, flags: str, data: bytes = b"", seq=None, ack=None, **kw) -> Pkt:
        return self._seg(True, t, flags, data, seq, ack, **kw)

    def srv(self, t: float, flags: str, data: bytes = b"", seq=None, ack=None, **kw) -> Pkt:
        return self._seg(False, t, flags, data, seq, ack, **kw)

    def handshake(self, t: float = 0.0) -> "Conv":
        self.cli(t, "S")
        self.srv(t + 0.01, "SA")
        self.cli(t + 0.02, "A")
        return self


def pkt(t: float, ip, *, from_a: bool = True, **eth) -> Pkt:
    """Any scapy IP packet at time t (Ethernet framing; eth keywords go to captures.ethernet)."""
    raw = bytes(ip)
    return Pkt(at(t), raw, frame(raw, ip.src, ip.dst, **eth), from_a)


def udp(t: float, src: str, dst: str, sport: int, dport: int, payload: bytes, **eth) -> Pkt:
    return pkt(t, IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload, from_a=src == C, **eth)


def bad_tcp_checksum(p: Pkt) -> Pkt:
    """The same packet with a wrong TCP checksum."""
    ip = bytearray(p.ip)
    off = (ip[0] & 0xF) * 4 + 16
    ip[off:off + 2] = struct.pack("!H", struct.unpack("!H", ip[off:off + 2])[0] ^ 0x5A5A)
    return Pkt(p.ts, bytes(ip), p.frame[:len(p.frame) - len(ip)] + bytes(ip), p.from_a)


# ---------------------------------------------------------------- replay

@dataclass
class Run:
    emitted: np.ndarray   # records in the order the meter exported them
    recs: np.ndarray      # sorted by start time, updates before the final record, then orig_p
    zeek: list[dict]      # zeek-json dicts of recs, same order
    counters: dict[str, int]

    def one(self) -> dict:
        assert len(self.recs) == 1, self.zeek
        return self.zeek[0]


def replay(tmp_path, pkts, name: str = "c.pcap", **meter_kw) -> Run:
    """Replay the packets (Pkt objects, in the order given) as one nanosecond pcap."""
    path = cap.write(tmp_path / name, cap.pcap_bytes([(p.ts, p.frame) for p in pkts], nano=True))
    meter = FlowMeter(**meter_kw)
    batches = [b.to_numpy() for b in meter.read(str(path))]
    assert meter.errors == []
    emitted = np.concatenate(batches, dtype=dtype()) if batches else np.empty(0, dtype=dtype())
    order = np.lexsort((emitted["orig_p"], (emitted["flags"] & UPDATE) == 0, emitted["ts_start"]))
    recs = emitted[order]
    counters = meter.counters
    assert sum(counters[k] for k in DISPOSITIONS) == counters["packets_read"] == len(pkts)
    final = recs[(recs["flags"] & UPDATE) == 0]
    assert counters["in_flow"] == int((final["orig_pkts"] + final["resp_pkts"]).sum())
    assert counters["flows_exported"] == counters["flows_created"] == len(final)
    return Run(emitted, recs, FlowBatch(recs).to_dicts(), counters)


def pick(d: dict, *keys: str) -> dict:
    """The named fields of a zeek-json dict (absent ones as None)."""
    return {k: d.get(k) for k in keys}


def state(rec) -> str:
    return CONN_STATES[int(rec["conn_state"])]


def reason(rec) -> str:
    return END_REASONS[int(rec["end_reason"])]


def host(rec, side: str) -> str:
    raw = bytes(rec[side + "_h"])
    return str(ipaddress.ip_address(raw[:4] if rec["ip_version"] == 4 else raw))


# ---------------------------------------------------------------- conn_state (section 3)

def conv_cases() -> dict[str, tuple[Conv, dict]]:
    """name: (conversation, expected zeek-json fields); absent fields are None."""
    out: dict[str, tuple[Conv, dict]] = {}

    cv = Conv()
    cv.cli(0, "S")
    out["S0"] = (cv, dict(conn_state="S0", history="S", orig_pkts=1, resp_pkts=0, orig_ip_bytes=40,
                          resp_ip_bytes=0, duration=None, orig_bytes=None, resp_bytes=None))

    cv = Conv().handshake()
    cv.cli(0.1, "PA", b"hello")
    cv.srv(0.2, "PA", b"world!")
    out["S1"] = (cv, dict(conn_state="S1", history="ShADd", orig_pkts=3, resp_pkts=2, orig_bytes=5,
                          resp_bytes=6, duration=0.2, orig_ip_bytes=125, resp_ip_bytes=86))

    cv = Conv().handshake()
    cv.cli(0.1, "PA", b"GET / HTTP/1.0\r\n\r\n")
    cv.srv(0.2, "PA", b"x" * 100)
    cv.cli(0.3, "A")
    cv.cli(0.4, "FA")
    cv.srv(0.5, "FA")
    cv.cli(0.6, "A")
    out["SF"] = (cv, dict(conn_state="SF", history="ShADdFf", orig_pkts=6, resp_pkts=3, orig_bytes=18,
                          resp_bytes=100, duration=0.5, missed_bytes=0, orig_ip_bytes=258, resp_ip_bytes=220))

    cv = Conv()
    cv.cli(0, "S")
    cv.srv(0.01, "RA", seq=0)
    out["REJ"] = (cv, dict(conn_state="REJ", history="Sr", orig_pkts=1, resp_pkts=1, orig_bytes=0,
                           resp_bytes=0, duration=0.01))

    cv = Conv().handshake()
    cv.cli(0.1, "FA")
    out["S2"] = (cv, dict(conn_state="S2", history="ShAF", orig_pkts=3, resp_pkts=1, orig_bytes=0,
                          resp_bytes=0, duration=0.1))

    cv = Conv().handshake()
    cv.srv(0.1, "FA")
    out["S3"] = (cv, dict(conn_state="S3", history="ShAf", orig_pkts=2, resp_pkts=2, duration=0.1))

    cv = Conv().handshake()
    cv.cli(0.1, "PA", b"hello")
    cv.cli(0.2, "RA")
    out["RSTO"] = (cv, dict(conn_state="RSTO", history="ShADR", orig_pkts=4, resp_pkts=1, orig_bytes=5,
                            duration=0.2))

    cv = Conv().handshake()
    cv.cli(0.1, "PA", b"hello")
    cv.srv(0.2, "RA")
    out["RSTR"] = (cv, dict(conn_state="RSTR", history="ShADr", orig_pkts=3, resp_pkts=2, orig_bytes=5,
                            duration=0.2))

    cv = Conv()
    cv.cli(0, "S")
    cv.cli(0.1, "R")
    out["RSTOS0"] = (cv, dict(conn_state="RSTOS0", history="SR", orig_pkts=2, resp_pkts=0, duration=0.1))

    cv = Conv(sport=80)  # a likely server port: the SYN-ACK's receiver is the originator
    cv.srv(0, "SA")
    cv.srv(0.1, "R", seq=cv.sseq)
    out["RSTRH"] = (cv, {"conn_state": "RSTRH", "history": "^hr", "orig_pkts": 0, "resp_pkts": 2,
                         "id.orig_h": C, "id.orig_p": 40000, "id.resp_p": 80})

    cv = Conv()
    cv.cli(0, "S")
    cv.cli(0.1, "F")
    out["SH"] = (cv, dict(conn_state="SH", history="SF", orig_pkts=2, resp_pkts=0))

    cv = Conv(sport=80)
    cv.srv(0, "FA")
    out["SHR"] = (cv, {"conn_state": "SHR", "history": "^f", "orig_pkts": 0, "resp_pkts": 1, "id.orig_h": C,
                       "duration": None})

    cv = Conv(cport=40001, sport=40002)  # mid-stream: both endpoints PARTIAL
    cv.cli(0, "PA", b"abc")
    cv.srv(0.1, "PA", b"defg")
    out["OTH"] = (cv, dict(conn_state="OTH", history="Dd", orig_bytes=3, resp_bytes=4, orig_pkts=1, resp_pkts=1))

    # variants: the rules of section 3 beyond the textbook exchange
    cv = Conv()
    cv.cli(0, "S")
    cv.cli(0.1, "PA", b"x")
    cv.cli(0.2, "R")
    out["RSTOS0 after data"] = (cv, dict(conn_state="RSTOS0", history="SDR", orig_pkts=3, orig_bytes=1))

    cv = Conv(cport=40001, sport=40002)
    cv.cli(0, "RA")
    out["OTH lone RST"] = (cv, dict(conn_state="OTH", history="R", orig_pkts=1))  # no S: not RSTOS0

    cv = Conv(cport=40001, sport=40002)
    cv.cli(0, "FA")
    out["SH lone FIN"] = (cv, dict(conn_state="SH", history="F", orig_pkts=1))

    cv = Conv().handshake()
    cv.cli(0.1, "FA")
    cv.srv(0.2, "RA")
    out["RSTR after FIN"] = (cv, dict(conn_state="RSTR", history="ShAFr", orig_pkts=3, resp_pkts=2, duration=0.2))
    return out


CONV_CASES = conv_cases()


def test_every_tcp_conn_state_has_a_case():
    assert {exp["conn_state"] for _, exp in CONV_CASES.values()} == set(CONN_STATES)


@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_tcp_conn_state(tmp_path, name):
    cv, want = CONV_CASES[name]
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), *want) == want
    assert state(r.recs[0]) == want["conn_state"]
    assert r.one()["proto"] == "tcp" and r.one()["ip_proto"] == 6


def test_udp_conn_states(tmp_path):
    """UDP: both sides active -> SF, only the originator -> S0, only the responder -> SHR (section 3)."""
    pkts = [udp(0, C, S, 5000, 6000, b"q" * 10), udp(0.5, S, C, 6000, 5000, b"a" * 30),
            udp(1, C, S, 5001, 6000, b"q" * 7), udp(2, C, S, 5001, 6000, b"q" * 9),
            udp(3, S, C, 53, 5002, b"r" * 44)]
    r = replay(tmp_path, pkts)
    got = [pick(d, "id.orig_h", "id.orig_p", "id.resp_p", "conn_state", "history", "orig_pkts", "resp_pkts",
                "orig_bytes", "resp_bytes", "orig_ip_bytes", "resp_ip_bytes", "proto") for d in r.zeek]
    assert got == [
        {"id.orig_h": C, "id.orig_p": 5000, "id.resp_p": 6000, "conn_state": "SF", "history": "Dd",
         "orig_pkts": 1, "resp_pkts": 1, "orig_bytes": 10, "resp_bytes": 30, "orig_ip_bytes": 38,
         "resp_ip_bytes": 58, "proto": "udp"},
        {"id.orig_h": C, "id.orig_p": 5001, "id.resp_p": 6000, "conn_state": "S0", "history": "D",
         "orig_pkts": 2, "resp_pkts": 0, "orig_bytes": 16, "resp_bytes": 0, "orig_ip_bytes": 35 + 37,
         "resp_ip_bytes": 0, "proto": "udp"},
        # from port 53 (a likely server port) to 5002: flipped at creation, one-sided responder
        {"id.orig_h": C, "id.orig_p": 5002, "id.resp_p": 53, "conn_state": "SHR", "history": "^d",
         "orig_pkts": 0, "resp_pkts": 1, "orig_bytes": None, "resp_bytes": None, "orig_ip_bytes": 0,
         "resp_ip_bytes": 72, "proto": "udp"},
    ]
    assert [state(x) for x in r.recs] == ["SF", "S0", "SHR"]


def test_bad_checksum_first_packet_still_starts_the_flow(tmp_path):
    """The flow is created (its ts is the bad packet's) but the packet is ignored (section 7). The
    valid SYN that follows meets an endpoint whose start seq was never set: Zeek's IsReuse sees
    another seq and starts a new connection."""
    cv = Conv()
    cv.cli(0, "S")
    cv.cli(1, "S", seq=1000)
    cv.pkts[0] = bad_tcp_checksum(cv.pkts[0])
    r = replay(tmp_path, cv.pkts)
    assert [pick(d, "ts", "history", "conn_state", "orig_pkts", "orig_ip_bytes") for d in r.zeek] == [
        {"ts": 1700000000.0, "history": "C", "conn_state": "OTH", "orig_pkts": 0, "orig_ip_bytes": 0},
        {"ts": 1700000001.0, "history": "S", "conn_state": "S0", "orig_pkts": 1, "orig_ip_bytes": 40}]
    assert [reason(x) for x in r.recs] == ["tcp_reuse", "end_of_input"]
    assert r.counters["bad_checksum"] == 1 and r.counters["tcp_reuse"] == 1
    # with ignore_checksums (Zeek -C) both SYNs count, in one flow
    r = replay(tmp_path, cv.pkts, ignore_checksums=True)
    assert pick(r.one(), "history", "conn_state", "orig_pkts", "duration") == {
        "history": "S", "conn_state": "S0", "orig_pkts": 2, "duration": 1.0}
    assert r.counters["bad_checksum"] == 0


def test_udp_with_only_bad_checksums_is_oth(tmp_path):
    """No valid datagram: neither endpoint is active (OTH); the bad ones add logarithmic C (section 7)."""
    frames = []
    for i in range(10):
        ip = bytearray(bytes(IP(src=C, dst=S) / UDP(sport=5000, dport=6000) / b"x"))
        ip[26:28] = b"\x12\x34"
        frames.append(Pkt(at(i), bytes(ip), frame(bytes(ip), C, S), True))
    r = replay(tmp_path, frames)
    assert pick(r.one(), "conn_state", "history", "orig_pkts", "orig_ip_bytes") == {
        "conn_state": "OTH", "history": "CC", "orig_pkts": 0, "orig_ip_bytes": 0}
    assert r.counters["bad_checksum"] == 10 and r.counters["in_flow"] == 0


def test_icmp_and_other_protocols_are_oth(tmp_path):
    pkts = [pkt(0, IP(src=C, dst=S) / ICMP(type=8, id=7, seq=1) / (b"p" * 56)),
            pkt(1, IP(src=C, dst=S) / SCTP(sport=1, dport=2)),
            pkt(2, IP(src=S, dst=C) / SCTP(sport=2, dport=1), from_a=False)]
    r = replay(tmp_path, pkts)
    icmp, sctp = r.zeek
    assert pick(icmp, "proto", "ip_proto", "conn_state", "history", "id.orig_p", "id.resp_p", "orig_pkts") == {
        "proto": "icmp", "ip_proto": 1, "conn_state": "OTH", "history": None, "id.orig_p": 8, "id.resp_p": 0,
        "orig_pkts": 1}
    assert pick(sctp, "proto", "ip_proto", "conn_state", "history", "id.orig_p", "id.resp_p", "orig_pkts",
                "resp_pkts", "orig_bytes", "resp_bytes", "duration", "id.orig_h") == {
        "proto": "unknown_transport", "ip_proto": 132, "conn_state": "OTH", "history": None, "id.orig_p": 0,
        "id.resp_p": 0, "orig_pkts": 1, "resp_pkts": 1, "orig_bytes": 0, "resp_bytes": 0, "duration": 1.0,
        "id.orig_h": C}


# ---------------------------------------------------------------- history letters (section 4)

def _history(tmp_path, cv: Conv, **kw) -> str:
    return replay(tmp_path, cv.pkts, **kw).one()["history"]


def test_syn_retransmission_with_the_same_seq_adds_no_letter(tmp_path):
    cv = Conv()
    cv.cli(0, "S")
    cv.cli(1, "S", seq=1000)
    cv.cli(2, "S", seq=1000)
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "history", "conn_state", "orig_pkts", "duration") == {
        "history": "S", "conn_state": "S0", "orig_pkts": 3, "duration": 2.0}


def test_synack_repeated_only_at_a_new_relative_seq(tmp_path):
    """H again needs a relative seq that differs from the previous SYN's. A SYN-ACK at another seq
    while establishing re-bases the endpoint (relative seq 0 again: no letter); after the responder's
    FIN it is not re-based, so it counts."""
    cv = Conv()
    cv.cli(0, "S")
    cv.srv(0.01, "SA")
    cv.srv(0.02, "SA", seq=5000)
    cv.srv(0.03, "SA", seq=5100)
    assert _history(tmp_path, cv) == "Sh"
    cv = Conv().handshake()
    cv.srv(0.1, "FA")
    cv.srv(0.2, "SA", seq=5100)
    cv.srv(0.3, "SA", seq=5100)
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "history", "resp_pkts") == {"history": "ShAfh", "resp_pkts": 4}
    assert r.counters["tcp_reuse"] == 0


def test_fin_retransmission_with_the_same_seq_adds_no_letter(tmp_path):
    cv = Conv().handshake()
    cv.cli(0.1, "PA", b"a" * 10)
    cv.cli(0.2, "FA")
    cv.cli(0.3, "FA", seq=cv.cseq - 1)
    cv.cli(0.4, "FA", seq=cv.cseq - 1)
    assert _history(tmp_path, cv) == "ShADF"


def test_fin_at_a_new_seq_adds_f_again(tmp_path):
    cv = Conv().handshake()
    cv.cli(0.1, "FA")
    cv.cseq -= 1
    cv.cli(0.2, "PA", b"more")
    cv.cli(0.3, "FA")
    assert _history(tmp_path, cv) == "ShAFDF"


def test_rst_repeated_only_at_a_new_seq(tmp_path):
    cv = Conv().handshake()
    cv.cli(0.1, "R")
    cv.cli(0.2, "R", seq=cv.cseq + 100)
    cv.cli(0.3, "R", seq=cv.cseq + 100)
    assert _history(tmp_path, cv) == "ShARR"


def test_data_and_ack_letters_once_per_direction(tmp_path):
    cv = Conv().handshake()
    for i in range(3):
        cv.cli(0.1 + i * 0.1, "PA", b"c" * 10)
        cv.srv(0.15 + i * 0.1, "A")
        cv.srv(0.16 + i * 0.1, "PA", b"s" * 20)
        cv.cli(0.17 + i * 0.1, "A")
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "history", "orig_bytes", "resp_bytes", "orig_pkts", "resp_pkts") == {
        "history": "ShADad", "orig_bytes": 30, "resp_bytes": 60, "orig_pkts": 8, "resp_pkts": 7}


def _scaled(n: int) -> int:
    """How many letters Zeek's logarithmic history adds for n occurrences (1st, 10th, 100th...)."""
    return sum(1 for k in (1, 10, 100, 1000) if n >= k)


LOG_COUNTS = [1, 9, 10, 99, 100]


@pytest.mark.parametrize("n", LOG_COUNTS)
def test_retransmissions_add_logarithmic_t(tmp_path, n):
    cv = Conv().handshake()
    cv.cli(0.1, "PA", b"z" * 50)
    for i in range(n):
        cv.cli(0.2 + i * 0.001, "PA", b"z" * 50, seq=cv.cseq - 50)
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "history", "orig_bytes", "orig_pkts") == {
        "history": "ShAD" + "T" * _scaled(n), "orig_bytes": 50, "orig_pkts": 3 + n}


@pytest.mark.parametrize("n", LOG_COUNTS)
def test_zero_windows_add_logarithmic_w(tmp_path, n):
    cv = Conv().handshake()
    for i in range(n):
        cv.srv(0.1 + i * 0.001, "A", window=0)
    assert _history(tmp_path, cv) == "ShAa" + "w" * _scaled(n)


@pytest.mark.parametrize("n", LOG_COUNTS)
def test_bad_checksums_add_logarithmic_c(tmp_path, n):
    """Bad-checksum segments are not counted; each is a C occurrence (section 7)."""
    cv = Conv().handshake()
    for i in range(n):
        cv.cli(0.1 + i * 0.001, "PA", b"q", seq=cv.cseq)
        cv.cseq -= 1
    cv.pkts[3:] = [bad_tcp_checksum(p) for p in cv.pkts[3:]]
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "history", "orig_pkts", "resp_pkts", "duration") == {
        "history": "ShA" + "C" * _scaled(n), "orig_pkts": 2, "resp_pkts": 1, "duration": 0.02}
    assert r.counters["bad_checksum"] == n


@pytest.mark.parametrize("n", LOG_COUNTS)
def test_content_gaps_add_logarithmic_g(tmp_path, n):
    """Each ack that passes a 10-byte hole is a gap: G (scaled) and 10 missed bytes (section 5)."""
    cv = Conv().handshake()
    t = 0.1
    for _ in range(n):
        cv.cli(t, "PA", b"a" * 10)
        cv.cseq += 10
        cv.cli(t + 0.001, "PA", b"b" * 10)
        cv.srv(t + 0.002, "A")
        t += 0.01
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "history", "missed_bytes", "orig_bytes", "conn_state") == {
        "history": "ShADa" + "G" * _scaled(n), "missed_bytes": 10 * n, "orig_bytes": 30 * n, "conn_state": "S1"}


def test_flags_of_two_kinds_give_q_and_i(tmp_path):
    """SYN+FIN -> Q, FIN+RST -> I, each once per direction and instead of S/F/R."""
    cv = Conv()
    cv.cli(0, "SF")
    cv.cli(0.1, "FR")
    cv.cli(0.2, "FR", seq=3000)
    cv.srv(0.3, "FRA")
    cv.srv(0.4, "FRA", seq=7000)
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "history", "orig_pkts", "resp_pkts") == {"history": "QIi", "orig_pkts": 3, "resp_pkts": 2}


# ---------------------------------------------------------------- payload bytes from sequence space (section 5)

def test_bytes_without_a_handshake_start_at_the_first_segment(tmp_path):
    """Missing SYN: each side's first segment sets its start, so data from there on counts."""
    cv = Conv(cport=40300, sport=40301, cisn=7_000_000, sisn=9_000_000)
    cv.cli(0, "PA", b"a" * 10)
    cv.srv(0.1, "PA", b"b" * 20)
    cv.cli(0.2, "PA", b"c" * 5)
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "orig_bytes", "resp_bytes", "history", "conn_state", "missed_bytes") == {
        "orig_bytes": 15, "resp_bytes": 20, "history": "Dd", "conn_state": "OTH", "missed_bytes": 0}


def test_bytes_count_the_sequence_space_not_the_payload_seen(tmp_path):
    """A hole inside the range counts in orig_bytes (and, acked, in missed_bytes)."""
    cv = Conv().handshake()
    cv.cli(0.1, "PA", b"a" * 100)
    cv.cseq += 100
    cv.cli(0.2, "PA", b"b" * 100)
    cv.srv(0.3, "A")
    cv.cli(0.4, "FA")
    cv.srv(0.5, "FA")
    cv.cli(0.6, "A")
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "orig_bytes", "resp_bytes", "missed_bytes", "history", "conn_state") == {
        "orig_bytes": 300, "resp_bytes": 0, "missed_bytes": 100, "history": "ShADaGFf", "conn_state": "SF"}


def test_sequence_wraparound(tmp_path):
    cv = Conv(cisn=0xFFFFFF00, sisn=0xFFFFFFF0).handshake()
    for i in range(5):
        cv.cli(0.1 + i * 0.01, "PA", b"w" * 100)
        cv.srv(0.105 + i * 0.01, "PA", b"v" * 10)
    cv.cli(0.2, "FA")
    cv.srv(0.21, "FA")
    cv.cli(0.22, "A")
    assert cv.cseq < 1000 and cv.sseq < 1000  # both wrapped
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "orig_bytes", "resp_bytes", "missed_bytes", "history", "conn_state") == {
        "orig_bytes": 500, "resp_bytes": 50, "missed_bytes": 0, "history": "ShADdFf", "conn_state": "SF"}


def _holes(n: int) -> Conv:
    """n segments of 10 bytes, each followed by a 7-byte hole, one more segment, then one ack for all."""
    cv = Conv().handshake()
    for i in range(n):
        cv.cli(0.1 + i * 0.01, "PA", b"a" * 10)
        cv.cseq += 7
    cv.cli(0.5, "PA", b"z" * 10)
    cv.srv(0.6, "A")
    return cv


@pytest.mark.parametrize("n", [1, 2, 3])
def test_several_holes_passed_by_one_ack(tmp_path, n):
    r = replay(tmp_path, _holes(n).pkts)
    assert pick(r.one(), "missed_bytes", "orig_bytes", "history") == {
        "missed_bytes": 7 * n, "orig_bytes": 17 * n + 10, "history": "ShADaG"}


@pytest.mark.parametrize("n", [4, 8])
def test_many_holes_passed_by_one_ack(tmp_path, n):
    r = replay(tmp_path, _holes(n).pkts)
    assert r.one()["missed_bytes"] == 7 * n


def test_gap_of_a_partial_connection_is_not_missed(tmp_path):
    cv = Conv(cport=40011, sport=40012)
    cv.cli(0, "PA", b"a" * 100)
    cv.cseq += 100
    cv.cli(0.1, "PA", b"b" * 10)
    cv.srv(0.2, "A")
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "missed_bytes", "history", "orig_bytes") == {"missed_bytes": 0, "history": "Da",
                                                                      "orig_bytes": 210}


def test_gap_revealed_at_rst_is_not_missed(tmp_path):
    cv = Conv().handshake()
    cv.cli(0.1, "PA", b"a" * 100)
    cv.cseq += 100
    cv.cli(0.2, "PA", b"b" * 100)
    cv.srv(0.3, "RA")
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "missed_bytes", "history", "conn_state") == {
        "missed_bytes": 0, "history": "ShADr", "conn_state": "RSTR"}


# ---------------------------------------------------------------- duration (section 5)

def test_duration_freezes_when_both_sides_closed(tmp_path):
    """The final ACK of the teardown is counted but does not extend the duration."""
    cv = CONV_CASES["SF"][0]
    r = replay(tmp_path, cv.pkts)
    rec = r.recs[0]
    assert int(rec["ts_start"]) == at(0) and int(rec["ts_end"]) == at(0.5)
    assert r.one()["duration"] == 0.5 and r.one()["orig_pkts"] == 6


def test_single_timestamp_flow_leaves_duration_and_bytes_unset(tmp_path):
    pkts = [udp(0, C, S, 5000, 6000, b"x" * 10), udp(0, C, S, 5000, 6000, b"y" * 20),
            udp(0, S, C, 6000, 5000, b"z" * 5)]
    r = replay(tmp_path, pkts)
    d = r.one()
    assert pick(d, "duration", "orig_bytes", "resp_bytes", "orig_pkts", "resp_pkts", "orig_ip_bytes",
                "resp_ip_bytes", "conn_state") == {
        "duration": None, "orig_bytes": None, "resp_bytes": None, "orig_pkts": 2, "resp_pkts": 1,
        "orig_ip_bytes": 38 + 48, "resp_ip_bytes": 33, "conn_state": "SF"}
    rec = r.recs[0]  # the numbers are still in the record
    assert (int(rec["ts_end"]) - int(rec["ts_start"]), int(rec["orig_bytes"]), int(rec["resp_bytes"])) == (0, 30, 5)


# ---------------------------------------------------------------- timeouts (section 1)

def test_udp_inactivity_timeout_splits_the_flow(tmp_path):
    pkts = [udp(t, C, S, 5000, 6000, b"x" * 10) for t in (0, 10, 75)]
    r = replay(tmp_path, pkts)
    assert [pick(d, "history", "orig_pkts", "orig_bytes", "duration") for d in r.zeek] == [
        {"history": "D", "orig_pkts": 2, "orig_bytes": 20, "duration": 10.0},
        {"history": "D", "orig_pkts": 1, "orig_bytes": None, "duration": None}]
    assert [reason(x) for x in r.recs] == ["inactivity", "end_of_input"]
    assert r.zeek[0]["uid"] != r.zeek[1]["uid"]


def test_udp_timeout_expires_at_exactly_last_time_plus_60s(tmp_path):
    """A packet at exactly the deadline finds the flow gone: a new flow, whose originator is its sender."""
    pkts = [udp(0, C, S, 5000, 6000, b"x" * 10), udp(59.9, S, C, 6000, 5000, b"y" * 20),
            udp(119.9, S, C, 6000, 5000, b"y" * 20)]
    r = replay(tmp_path, pkts)
    assert [pick(d, "id.orig_h", "history", "conn_state", "orig_bytes", "resp_bytes") for d in r.zeek] == [
        {"id.orig_h": C, "history": "Dd", "conn_state": "SF", "orig_bytes": 10, "resp_bytes": 20},
        {"id.orig_h": S, "history": "D", "conn_state": "S0", "orig_bytes": None, "resp_bytes": None}]


def test_udp_inactivity_is_configurable(tmp_path):
    pkts = [udp(t, C, S, 5000, 6000, b"x") for t in (0, 4, 10)]
    assert [int(x["orig_pkts"]) for x in replay(tmp_path, pkts, udp_inactivity=5).recs] == [2, 1]
    assert [int(x["orig_pkts"]) for x in replay(tmp_path, pkts, udp_inactivity=6.5).recs] == [3]
    assert [int(x["orig_pkts"]) for x in replay(tmp_path, pkts).recs] == [3]


def test_tcp_inactivity_timeout_gives_a_new_uid(tmp_path):
    cv = Conv().handshake()
    cv.cli(0.1, "PA", b"x")
    cv.cli(400, "PA", b"y")
    r = replay(tmp_path, cv.pkts)
    assert [pick(d, "history", "conn_state", "orig_pkts", "duration") for d in r.zeek] == [
        {"history": "ShAD", "conn_state": "S1", "orig_pkts": 3, "duration": 0.1},
        {"history": "D", "conn_state": "OTH", "orig_pkts": 1, "duration": None}]
    assert [reason(x) for x in r.recs] == ["inactivity", "end_of_input"]
    assert r.zeek[0]["uid"] != r.zeek[1]["uid"]
    # under 300 s of silence the flow stays one; and the timeout is configurable
    cv2 = Conv().handshake()
    cv2.cli(0.1, "PA", b"x")
    cv2.cli(299, "PA", b"y")
    assert [d["orig_pkts"] for d in replay(tmp_path, cv2.pkts).zeek] == [4]
    assert [d["orig_pkts"] for d in replay(tmp_path, cv.pkts, tcp_inactivity=500).zeek] == [4]
    assert [d["orig_pkts"] for d in replay(tmp_path, cv2.pkts, tcp_inactivity=100).zeek] == [3, 1]


def test_tcp_uses_the_tcp_timeout_once_established(tmp_path):
    """SYN, SYN-ACK, then 70 s of silence: past UDP's 60 s, but the connection left the handshake."""
    cv = Conv()
    cv.cli(0, "S")
    cv.srv(0.01, "SA")
    cv.cli(70, "A")
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "history", "conn_state", "duration") == {"history": "ShA", "conn_state": "S1",
                                                                  "duration": 70.0}


def test_lone_synack_is_an_attempt_too(tmp_path):
    """The originator's SYN-ACK arms the 5 s attempt timer as a SYN does (section 1)."""
    def synacks(gap: float) -> list[Pkt]:
        cv = Conv(cport=40100, sport=40200)
        cv.srv(0, "SA")
        cv.srv(gap, "SA", seq=5000)
        return cv.pkts

    assert [(d["history"], d["orig_pkts"]) for d in replay(tmp_path, synacks(4.9)).zeek] == [("H", 2)]
    r = replay(tmp_path, synacks(5.1))
    assert [(d["history"], d["orig_pkts"]) for d in r.zeek] == [("H", 1), ("H", 1)]
    assert [reason(x) for x in r.recs] == ["inactivity", "end_of_input"]


def test_one_sided_midstream_tcp_uses_the_tcp_timeout(tmp_path):
    """Mid-stream data makes its sender PARTIAL while the peer is INACTIVE: the TCP timeout (300 s)
    replaces the initial UDP one (60 s) at once (section 1)."""
    def two(gap: float) -> list[Pkt]:
        cv = Conv(cport=40001, sport=40002)
        cv.cli(0, "PA", b"abc")
        cv.cli(gap, "PA", b"def")
        return cv.pkts

    assert [(d["history"], d["orig_pkts"]) for d in replay(tmp_path, two(200)).zeek] == [("D", 2)]
    assert [(d["history"], d["orig_pkts"]) for d in replay(tmp_path, two(301)).zeek] == [("D", 1), ("D", 1)]


def test_synack_reuse_needs_an_inactive_originator(tmp_path):
    """A SYN-ACK at a new seq reuses the tuple only if the originator is INACTIVE (section 1)."""
    cv = Conv(cport=40100, sport=40200)  # the SYN-ACK's sender is the originator (SYN_ACK_SENT)
    cv.srv(0, "SA")
    cv.srv(0.5, "SA", seq=99999)
    r = replay(tmp_path, cv.pkts)
    assert [(d["history"], d["orig_pkts"]) for d in r.zeek] == [("H", 2)] and r.counters["tcp_reuse"] == 0
    cv = Conv(sport=80)  # flipped at creation: the originator (the client) is INACTIVE
    cv.srv(0, "SA")
    cv.srv(0.5, "SA", seq=99999)
    r = replay(tmp_path, cv.pkts)
    assert [(d["history"], d["resp_pkts"], d["id.orig_h"]) for d in r.zeek] == [("^h", 1, C), ("^h", 1, C)]
    assert [reason(x) for x in r.recs] == ["tcp_reuse", "end_of_input"] and r.counters["tcp_reuse"] == 1


def test_ssh_gets_one_hour(tmp_path):
    cv = Conv(sport=22).handshake()
    cv.cli(0.1, "PA", b"SSH-2.0\r\n")
    cv.cli(1000, "PA", b"y")
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "history", "orig_pkts", "duration") == {"history": "ShAD", "orig_pkts": 4,
                                                                 "duration": 1000.0}


def test_syn_attempt_timer_removes_after_5s(tmp_path):
    """SYN retransmissions do not extend the 5 s attempt timer; the SYN at 7 s starts a new flow."""
    cv = Conv()
    cv.cli(0, "S")
    for t in (1, 3, 7):
        cv.cli(t, "S", seq=1000)
    r = replay(tmp_path, cv.pkts)
    assert [pick(d, "conn_state", "history", "orig_pkts", "duration") for d in r.zeek] == [
        {"conn_state": "S0", "history": "S", "orig_pkts": 3, "duration": 3.0},
        {"conn_state": "S0", "history": "S", "orig_pkts": 1, "duration": None}]
    assert [reason(x) for x in r.recs] == ["inactivity", "end_of_input"]


# ---------------------------------------------------------------- TCP reuse and close (section 1)

def test_new_syn_after_close_is_a_new_connection(tmp_path):
    cv = Conv().handshake()
    cv.cli(0.1, "FA")
    cv.srv(0.2, "FA")
    cv.cli(0.3, "A")
    cv.cseq, cv.sseq = 90000, 70000
    cv.cli(1.0, "S")
    cv.srv(1.01, "SA")
    r = replay(tmp_path, cv.pkts)
    assert [pick(d, "history", "conn_state", "orig_pkts", "resp_pkts", "duration") for d in r.zeek] == [
        {"history": "ShAFf", "conn_state": "SF", "orig_pkts": 4, "resp_pkts": 2, "duration": 0.2},
        {"history": "Sh", "conn_state": "S1", "orig_pkts": 1, "resp_pkts": 1, "duration": 0.01}]
    assert [reason(x) for x in r.recs] == ["tcp_reuse", "end_of_input"]
    assert r.counters["tcp_reuse"] == 1
    assert r.zeek[0]["uid"] != r.zeek[1]["uid"]


def test_syn_with_a_new_seq_reuses_the_tuple(tmp_path):
    cv = Conv()
    cv.cli(0, "S")
    cv.cli(0.5, "S", seq=2222)
    r = replay(tmp_path, cv.pkts)
    assert [(d["history"], d["orig_pkts"]) for d in r.zeek] == [("S", 1), ("S", 1)]
    assert [reason(x) for x in r.recs] == ["tcp_reuse", "end_of_input"]
    assert r.counters["tcp_reuse"] == 1


def test_closed_connection_is_removed_after_the_close_delay(tmp_path):
    cv = Conv().handshake()
    cv.cli(0.1, "FA")
    cv.srv(0.2, "FA")
    cv.cli(0.3, "A")
    cv.cli(6.0, "A")
    r = replay(tmp_path, cv.pkts)
    assert [pick(d, "history", "conn_state", "duration", "orig_pkts") for d in r.zeek] == [
        {"history": "ShAFf", "conn_state": "SF", "duration": 0.2, "orig_pkts": 4},
        {"history": "A", "conn_state": "OTH", "duration": None, "orig_pkts": 1}]
    assert [reason(x) for x in r.recs] == ["tcp_closed", "end_of_input"]
    assert r.counters["tcp_reuse"] == 0


def test_data_after_a_half_close_stays_in_the_flow(tmp_path):
    cv = Conv().handshake()
    cv.cli(0.1, "PA", b"x")
    cv.srv(0.2, "FA")
    cv.cli(30, "PA", b"late")
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "history", "conn_state", "orig_pkts", "orig_bytes", "duration") == {
        "history": "ShADf", "conn_state": "S3", "orig_pkts": 4, "orig_bytes": 5, "duration": 30.0}


@pytest.mark.parametrize("gap,records", [(4.9, 1), (5.1, 2)])
def test_rst_removes_the_connection_after_the_close_delay(tmp_path, gap, records):
    """A RST schedules removal at its time + 5 s, whatever comes after (section 1)."""
    cv = Conv().handshake()
    cv.cli(0.1, "PA", b"x")
    cv.cli(0.2, "RA")
    cv.srv(0.2 + gap, "PA", b"late")
    r = replay(tmp_path, cv.pkts)
    if records == 1:
        assert pick(r.one(), "history", "conn_state", "resp_pkts", "duration") == {
            "history": "ShADRd", "conn_state": "RSTO", "resp_pkts": 2, "duration": round(0.2 + gap, 6)}
    else:
        assert [pick(d, "history", "conn_state", "id.orig_h") for d in r.zeek] == [
            {"history": "ShADR", "conn_state": "RSTO", "id.orig_h": C},
            {"history": "^d", "conn_state": "OTH", "id.orig_h": C}]  # 8080 is a likely server port
        assert [reason(x) for x in r.recs] == ["tcp_closed", "end_of_input"]


def test_fin_towards_an_inactive_peer_closes_too(tmp_path):
    cv = Conv(cport=40001, sport=40002)
    cv.cli(0, "FA")
    cv.cli(5.1, "A")
    r = replay(tmp_path, cv.pkts)
    assert [(d["history"], d["conn_state"]) for d in r.zeek] == [("F", "SH"), ("A", "OTH")]
    assert [reason(x) for x in r.recs] == ["tcp_closed", "end_of_input"]


def test_half_closed_connection_waits_for_inactivity(tmp_path):
    """One FIN with an established peer: no close timer, the 300 s TCP timeout applies."""
    cv = Conv().handshake()
    cv.cli(0.1, "FA")
    cv.srv(100, "PA", b"x")
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "history", "conn_state", "duration", "resp_bytes") == {
        "history": "ShAFd", "conn_state": "S2", "duration": 100.0, "resp_bytes": 1}


def test_syn_after_rst_is_reuse(tmp_path):
    cv = Conv().handshake()
    cv.cli(0.1, "RA")
    cv.cseq = 777777
    cv.cli(1, "S")
    r = replay(tmp_path, cv.pkts)
    assert [(d["history"], d["conn_state"]) for d in r.zeek] == [("ShAR", "RSTO"), ("S", "S0")]
    assert [reason(x) for x in r.recs] == ["tcp_reuse", "end_of_input"] and r.counters["tcp_reuse"] == 1


@pytest.mark.parametrize("kind", ["icmp", "other"])
def test_icmp_and_other_inactivity(tmp_path, kind):
    def mk(t):
        return pkt(t, IP(src=C, dst=S) / (ICMP(type=8) if kind == "icmp" else SCTP(sport=1, dport=2)))

    assert [d["orig_pkts"] for d in replay(tmp_path, [mk(0), mk(59), mk(118.9)]).zeek] == [3]
    r = replay(tmp_path, [mk(0), mk(59), mk(119)])
    assert [d["orig_pkts"] for d in r.zeek] == [2, 1]
    assert [reason(x) for x in r.recs] == ["inactivity", "end_of_input"]
    setting = {"icmp_inactivity" if kind == "icmp" else "other_inactivity": 10}
    assert [d["orig_pkts"] for d in replay(tmp_path, [mk(0), mk(9), mk(20)], **setting).zeek] == [2, 1]


# ---------------------------------------------------------------- originator and responder (section 2)

def test_udp_from_a_server_port_is_flipped(tmp_path):
    r = replay(tmp_path, [udp(0, S, C, 53, 33333, b"r" * 30)])
    d = r.one()
    assert pick(d, "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "history", "conn_state", "orig_pkts",
                "resp_pkts", "resp_ip_bytes") == {
        "id.orig_h": C, "id.orig_p": 33333, "id.resp_h": S, "id.resp_p": 53, "history": "^d", "conn_state": "SHR",
        "orig_pkts": 0, "resp_pkts": 1, "resp_ip_bytes": 58}
    assert int(r.recs[0]["flags"]) & FLAGS["flipped"]


def test_udp_towards_broadcast_is_never_flipped(tmp_path):
    r = replay(tmp_path, [udp(0, S, "255.255.255.255", 53, 33333, b"r" * 30)])
    assert pick(r.one(), "id.orig_h", "id.orig_p", "history", "conn_state") == {
        "id.orig_h": S, "id.orig_p": 53, "history": "D", "conn_state": "S0"}
    assert int(r.recs[0]["flags"]) & FLAGS["flipped"] == 0


def test_udp_between_two_server_ports_is_not_flipped(tmp_path):
    r = replay(tmp_path, [udp(0, S, C, 53, 123, b"r")])
    assert pick(r.one(), "id.orig_h", "id.orig_p", "history") == {"id.orig_h": S, "id.orig_p": 53, "history": "D"}


def test_synack_first_from_a_server_port(tmp_path):
    cv = Conv(sport=80)
    cv.srv(0, "SA")
    cv.cli(0.01, "A")
    cv.cli(0.02, "PA", b"GET")
    cv.srv(0.03, "PA", b"OK")
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "id.orig_h", "id.orig_p", "id.resp_p", "history", "conn_state", "orig_pkts",
                "resp_pkts", "orig_bytes", "resp_bytes") == {
        "id.orig_h": C, "id.orig_p": 40000, "id.resp_p": 80, "history": "^hADd", "conn_state": "S1",
        "orig_pkts": 2, "resp_pkts": 2, "orig_bytes": 3, "resp_bytes": 2}


def test_synack_first_without_server_ports_flips_on_the_next_ack(tmp_path):
    """History exactly H followed by an ACK or data: replaced by ^h, then the packet's letter."""
    cv = Conv(cport=40100, sport=40200)
    cv.srv(0, "SA")
    cv.cli(0.01, "A")
    cv.srv(0.02, "PA", b"hi")
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "id.orig_h", "id.orig_p", "history", "orig_pkts", "resp_pkts") == {
        "id.orig_h": C, "id.orig_p": 40100, "history": "^hAd", "orig_pkts": 1, "resp_pkts": 2}
    assert int(r.recs[0]["flags"]) & FLAGS["flipped"]

    cv = Conv(cport=40100, sport=40200)  # the ACK comes from the SYN-ACK's sender itself
    cv.srv(0, "SA")
    cv.srv(0.02, "A")
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "id.orig_h", "history", "orig_pkts", "resp_pkts") == {
        "id.orig_h": C, "history": "^ha", "orig_pkts": 0, "resp_pkts": 2}


def test_synack_answered_by_rst_is_not_flipped(tmp_path):
    cv = Conv(cport=40100, sport=40200)
    cv.srv(0, "SA")
    cv.cli(0.01, "R", seq=cv.cseq + 1, ack=0)
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "id.orig_h", "history") == {"id.orig_h": S, "history": "Hr"}


def test_syn_synack_reversal(tmp_path):
    """The SYN-ACK's receiver then sends the matching SYN: roles flip after its letter."""
    cv = Conv(cport=40100, sport=40200)
    cv.srv(0, "SA", ack=cv.cseq + 1)
    cv.cli(0.001, "S")
    cv.cli(0.01, "A")
    cv.srv(0.02, "PA", b"x")
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "id.orig_h", "history", "conn_state") == {"id.orig_h": C, "history": "Hs^Ad",
                                                                    "conn_state": "S1"}


def test_both_likely_server_ports(tmp_path):
    """Both ports likely servers: flip a non-SYN packet only if its source port is the smaller."""
    small_first = Conv(cport=443, sport=8080)
    small_first.srv(0, "PA", b"x")  # from 8080 to 443: no flip
    big_first = Conv(cport=8080, sport=443)
    big_first.srv(0, "PA", b"x")  # from 443 to 8080: flip
    r1, r2 = replay(tmp_path, small_first.pkts), replay(tmp_path, big_first.pkts)
    assert pick(r1.one(), "id.orig_p", "id.resp_p", "history") == {"id.orig_p": 8080, "id.resp_p": 443,
                                                                    "history": "D"}
    assert pick(r2.one(), "id.orig_p", "id.resp_p", "history") == {"id.orig_p": 8080, "id.resp_p": 443,
                                                                    "history": "^d"}


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_server_port_heuristic_can_be_disabled(tmp_path, proto):
    if proto == "tcp":
        cv = Conv(sport=80)
        cv.srv(0, "PA", b"HTTP/1.1 200 OK\r\n")
        pkts = cv.pkts
    else:
        pkts = [udp(0, S, C, 53, 40000, b"r" * 10)]
    keys = ("id.orig_h", "id.orig_p", "id.resp_p", "history")
    assert pick(replay(tmp_path, pkts).one(), *keys) == {"id.orig_h": C, "id.orig_p": 40000, "id.resp_p": 53
                                                         if proto == "udp" else 80, "history": "^d"}
    off = replay(tmp_path, pkts, tcp_server_ports=[], udp_server_ports=[])
    assert pick(off.one(), *keys) == {"id.orig_h": S, "id.orig_p": 53 if proto == "udp" else 80,
                                      "id.resp_p": 40000, "history": "D"}
    assert int(off.recs[0]["flags"]) & FLAGS["flipped"] == 0
    custom = replay(tmp_path, pkts, tcp_server_ports=[40000], udp_server_ports=[40000])
    assert custom.one()["id.orig_h"] == S and custom.one()["history"] == "D"


def test_macs_follow_the_roles(tmp_path):
    """orig_mac is the originator's, also when the roles were flipped (at creation or later)."""
    cases = [[udp(0, C, S, 40000, 53, b"q")], [udp(0, S, C, 53, 40000, b"r")]]
    cv = Conv(cport=40100, sport=40200)
    cv.srv(0, "SA")
    cv.cli(0.01, "A")
    cases.append(cv.pkts)
    for pkts in cases:
        r = replay(tmp_path, pkts)
        rec = r.recs[0]
        assert int(rec["flags"]) & FLAGS["mac"]
        assert host(rec, "orig") == C
        assert (bytes(rec["orig_mac"]), bytes(rec["resp_mac"])) == (mac_of(C), mac_of(S))


# ---------------------------------------------------------------- ICMP (section 6)

def test_icmp_echo_request_and_reply_are_one_flow(tmp_path):
    pkts = []
    for i, (src, dst, typ) in enumerate([(C, S, 8), (S, C, 0), (C, S, 8), (S, C, 0)]):
        pkts.append(pkt(i * 0.5, IP(src=src, dst=dst) / ICMP(type=typ, id=7 + i // 2, seq=i // 2) / (b"p" * 56),
                        from_a=src == C))
    r = replay(tmp_path, pkts)
    assert pick(r.one(), "proto", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "conn_state", "history",
                "orig_bytes", "resp_bytes", "orig_pkts", "resp_pkts", "orig_ip_bytes", "duration") == {
        "proto": "icmp", "id.orig_h": C, "id.orig_p": 8, "id.resp_h": S, "id.resp_p": 0, "conn_state": "OTH",
        "history": None, "orig_bytes": 112, "resp_bytes": 112, "orig_pkts": 2, "resp_pkts": 2,
        "orig_ip_bytes": 168, "duration": 1.5}


def test_icmpv6_echo_pair(tmp_path):
    a, b = "2001:db8::1", "2001:db8::2"
    pkts = [pkt(0, IPv6(src=a, dst=b) / ICMPv6EchoRequest(id=1, data=b"x" * 16)),
            pkt(0.25, IPv6(src=b, dst=a) / ICMPv6EchoReply(id=1, data=b"x" * 16), from_a=False)]
    r = replay(tmp_path, pkts)
    assert pick(r.one(), "proto", "ip_proto", "id.orig_h", "id.orig_p", "id.resp_p", "orig_bytes", "resp_bytes",
                "orig_pkts", "resp_pkts") == {
        "proto": "icmp", "ip_proto": 58, "id.orig_h": a, "id.orig_p": 128, "id.resp_p": 129, "orig_bytes": 16,
        "resp_bytes": 16, "orig_pkts": 1, "resp_pkts": 1}


def test_icmp_errors_are_keyed_one_way(tmp_path):
    """Destination unreachable in both directions: two flows, each only with its sender's packets."""
    quoted = bytes(IP(src=C, dst=S) / UDP(sport=5000, dport=6000))[:28]
    back = bytes(IP(src=S, dst=C) / UDP(sport=6000, dport=5000))[:28]
    pkts = [pkt(0, IP(src=S, dst=C) / ICMP(type=3, code=3) / back, from_a=False),
            pkt(1, IP(src=C, dst=S) / ICMP(type=3, code=3) / quoted),
            pkt(2, IP(src=S, dst=C) / ICMP(type=3, code=3) / back, from_a=False)]
    r = replay(tmp_path, pkts)
    got = sorted((d["id.orig_h"], d["id.orig_p"], d["id.resp_p"], d["orig_pkts"], d["resp_pkts"],
                  d.get("orig_bytes"), d.get("duration")) for d in r.zeek)
    assert got == [(C, 3, 3, 1, 0, None, None), (S, 3, 3, 2, 0, 56, 2.0)]


def test_icmp_error_does_not_touch_the_connection_it_quotes(tmp_path):
    quoted = bytes(IP(src=C, dst=S) / UDP(sport=5000, dport=6000) / b"q")[:28]
    pkts = [udp(0, C, S, 5000, 6000, b"q"), pkt(0.1, IP(src=S, dst=C) / ICMP(type=3, code=3) / quoted,
                                                 from_a=False)]
    r = replay(tmp_path, pkts)
    assert sorted((d["proto"], d["id.orig_h"], d["orig_pkts"], d["resp_pkts"], d["conn_state"])
                  for d in r.zeek) == [("icmp", S, 1, 0, "OTH"), ("udp", C, 1, 0, "S0")]


# ---------------------------------------------------------------- interim updates and eviction

def test_interim_updates_share_the_flow_id(tmp_path):
    pkts = [udp(t, C, S, 5001, 6001, b"u" * 5) for t in range(0, 50, 2)]
    r = replay(tmp_path, pkts, active_timeout=10, emit_updates=True)
    ups = r.recs[(r.recs["flags"] & UPDATE) != 0]
    fin = r.recs[(r.recs["flags"] & UPDATE) == 0]
    assert [int(x) for x in ups["orig_pkts"]] == [5, 10, 15, 20]
    assert [int(x) for x in fin["orig_pkts"]] == [25]
    assert len(set(int(x) for x in r.recs["flow_id"])) == 1
    assert len({d["uid"] for d in r.zeek}) == 1
    assert [reason(x) for x in ups] == ["active_timeout"] * 4 and reason(fin[0]) == "end_of_input"
    assert [int(x) for x in ups["ts_end"]] == [at(8), at(18), at(28), at(38)]
    assert r.counters["flow_updates"] == 4 and r.counters["flows_exported"] == 1
    assert (r.emitted["flags"] & UPDATE).astype(bool).tolist() == [True] * 4 + [False]
    # without emit_updates the same settings give the final record only
    plain = replay(tmp_path, pkts, active_timeout=10)
    assert len(plain.recs) == 1 and plain.counters["flow_updates"] == 0


def test_eviction_when_the_table_is_full(tmp_path):
    """Capacity 2, five flows: the least recently active are exported early; no packet is lost."""
    pkts = [udp(i, C, S, 7000 + i, 53, b"q") for i in range(5)]
    pkts += [udp(5 + i, C, S, 7000 + i, 53, b"Q" * 2) for i in (3, 4)]  # the two survivors get more
    r = replay(tmp_path, pkts, capacity=2)
    got = [(int(x["orig_p"]), int(x["orig_pkts"]), reason(x)) for x in r.emitted]
    assert got[:3] == [(7000, 1, "evicted"), (7001, 1, "evicted"), (7002, 1, "evicted")]
    assert sorted(got[3:]) == [(7003, 2, "end_of_input"), (7004, 2, "end_of_input")]  # flush order is free
    assert r.counters["evictions"] == 3 and r.counters["in_flow"] == 7
    assert r.counters["flow_table_full"] == 0


def test_evicted_flow_comes_back_as_a_new_record(tmp_path):
    pkts = [udp(0, C, S, 7000, 53, b"a"), udp(1, C, S, 7001, 53, b"b"), udp(2, C, S, 7000, 53, b"c"),
            udp(3, C, S, 7001, 53, b"d")]
    r = replay(tmp_path, pkts, capacity=1)
    assert [(int(x["orig_p"]), int(x["orig_pkts"]), reason(x)) for x in r.emitted] == [
        (7000, 1, "evicted"), (7001, 1, "evicted"), (7000, 1, "evicted"), (7001, 1, "end_of_input")]
    assert r.counters["evictions"] == 3 and r.counters["in_flow"] == 4
    assert len({int(x) for x in r.emitted["flow_id"]}) == 4


# ---------------------------------------------------------------- Community ID and flow_id

def community_id(src: str, dst: str, proto: int, sport: int, dport: int, seed: int = 0) -> str:
    """Community ID v1 written out from its specification (ordered endpoints, SHA-1, base64)."""
    a, b = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if (b, dport) < (a, sport):
        a, b, sport, dport = b, a, dport, sport
    data = struct.pack("!H", seed) + a + b + struct.pack("!BBHH", proto, 0, sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()


@pytest.mark.parametrize("seed", [0, 1])
def test_community_id_is_the_same_for_both_directions(tmp_path, seed):
    fwd = [udp(0, C, S, 5000, 6000, b"x"), udp(1, S, C, 6000, 5000, b"y")]
    rev = [udp(0, S, C, 6000, 5000, b"y"), udp(1, C, S, 5000, 6000, b"x")]
    a, b = replay(tmp_path, fwd, cid_seed=seed).one(), replay(tmp_path, rev, cid_seed=seed).one()
    assert a["id.orig_h"] == C and b["id.orig_h"] == S
    want = community_id(C, S, 17, 5000, 6000, seed)
    assert a["community_id"] == b["community_id"] == want
    cv = CONV_CASES["SF"][0]
    tcp = replay(tmp_path, cv.pkts, cid_seed=seed)
    assert tcp.one()["community_id"] == community_id(S, C, 6, 8080, 40000, seed)
    assert tcp.recs[0]["community_id"].decode() == tcp.one()["community_id"]


def test_flow_id_is_stable_across_runs_and_differs_between_flows(tmp_path):
    pkts = [udp(0, C, S, 5000, 6000, b"x"), udp(0.5, C, S, 5001, 6000, b"x"), udp(1, S, C, 6000, 5000, b"y")]
    r1, r2 = replay(tmp_path, pkts), replay(tmp_path, pkts, name="again.pcap")
    ids1 = [int(x) for x in r1.recs["flow_id"]]
    assert ids1 == [int(x) for x in r2.recs["flow_id"]]
    assert len(set(ids1)) == 2 and 0 not in ids1
    assert [d["uid"] for d in r1.zeek] == [d["uid"] for d in r2.zeek]
    assert r1.zeek[0]["uid"] != r1.zeek[1]["uid"]
    assert [d["uid"] for d in r1.zeek] == [_ext.uid(i) for i in ids1]
    # the same tuple starting at another time is another flow
    later = [Pkt(p.ts + 5 * NS, p.ip, p.frame, p.from_a) for p in pkts]
    assert int(replay(tmp_path, later, name="later.pcap").recs["flow_id"][0]) != ids1[0]


@pytest.mark.parametrize("how", ["tcp_reuse", "eviction"])
def test_flows_starting_at_the_same_time_have_different_ids(tmp_path, how):
    if how == "tcp_reuse":
        cv = Conv()
        cv.cli(0, "S")
        cv.cli(0, "S", seq=2222)  # same timestamp, new ISN: a second connection
        r = replay(tmp_path, cv.pkts)
    else:
        r = replay(tmp_path, [udp(0, C, S, 1, 2, b"a"), udp(0, C, S, 3, 4, b"b"), udp(0, C, S, 1, 2, b"c")],
                   capacity=1)
    assert len(r.recs) == {"tcp_reuse": 2, "eviction": 3}[how]
    assert len({d["uid"] for d in r.zeek}) == len(r.zeek)


# ---------------------------------------------------------------- features

def _feature_conv() -> Conv:
    cv = Conv(cport=41000, sport=443)
    cv.cli(0, "SEC")
    cv.srv(0.010, "SAE")
    cv.cli(0.030, "A")
    cv.cli(0.035, "PA", b"h" * 100)
    cv.srv(0.100, "A")
    cv.srv(0.150, "PA", b"s" * 1000)
    cv.cli(0.400, "PAU", b"u" * 10, urgptr=1)
    cv.cli(1.000, "FA")
    cv.srv(3.500, "FA")
    cv.cli(3.600, "A")
    return cv


def test_size_and_iat_features_equal_numpy(tmp_path):
    cv = _feature_conv()
    r = replay(tmp_path, cv.pkts)
    rec = r.recs[0]
    sizes = np.array([len(p.ip) for p in cv.pkts])
    times = np.array([p.ts for p in cv.pkts], dtype=np.int64)
    orig = np.array([p.from_a for p in cv.pkts])
    for name, sel in (("orig", orig), ("resp", ~orig), ("both", np.ones_like(orig))):
        s = sizes[sel]
        iat = np.diff(times[sel]) / 1e9
        assert int(rec[f"{name}_size_min"]) == s.min() and int(rec[f"{name}_size_max"]) == s.max()
        assert rec[f"{name}_size_mean"] == pytest.approx(s.mean(), rel=1e-12)
        assert rec[f"{name}_size_std"] == pytest.approx(s.std(), rel=1e-12)
        assert rec[f"{name}_iat_min"] == pytest.approx(iat.min(), rel=1e-12)
        assert rec[f"{name}_iat_mean"] == pytest.approx(iat.mean(), rel=1e-12)
        assert rec[f"{name}_iat_std"] == pytest.approx(iat.std(), rel=1e-9)
        assert rec[f"{name}_iat_max"] == pytest.approx(iat.max(), rel=1e-12)
    assert (int(rec["orig_pkts"]), int(rec["resp_pkts"])) == (6, 4)
    assert int(rec["orig_ip_bytes"]) == sizes[orig].sum() and int(rec["resp_ip_bytes"]) == sizes[~orig].sum()


def test_tcp_flag_counters_and_empty_packets(tmp_path):
    rec = replay(tmp_path, _feature_conv().pkts).recs[0]
    names = ("syn", "ack", "fin", "rst", "psh", "urg", "ece", "cwr")
    assert {n: int(rec["orig_" + n]) for n in names} == dict(syn=1, ack=5, fin=1, rst=0, psh=2, urg=1, ece=1,
                                                             cwr=1)
    assert {n: int(rec["resp_" + n]) for n in names} == dict(syn=1, ack=4, fin=1, rst=0, psh=1, urg=0, ece=1,
                                                             cwr=0)
    assert (int(rec["orig_empty_pkts"]), int(rec["resp_empty_pkts"])) == (4, 3)


def test_first_packets(tmp_path):
    cv = _feature_conv()
    rec = replay(tmp_path, cv.pkts).recs[0]
    sizes = [len(p.ip) for p in cv.pkts]
    gaps = [0.0] + list(np.diff([p.ts for p in cv.pkts]) / 1e9)
    assert int(rec["first_n"]) == 8
    assert rec["first_sizes"].tolist() == sizes[:8]
    assert rec["first_dirs"].tolist() == [1 if p.from_a else -1 for p in cv.pkts[:8]]
    assert rec["first_iat"].tolist() == pytest.approx(gaps[:8], abs=1e-9)
    few = replay(tmp_path, cv.pkts, first_n=3).recs[0]
    assert int(few["first_n"]) == 3
    assert few["first_sizes"].tolist() == sizes[:3] + [0] * 5
    assert few["first_dirs"].tolist() == [1, -1, 1, 0, 0, 0, 0, 0]
    assert few["first_iat"].tolist() == pytest.approx(gaps[:3] + [0.0] * 5, abs=1e-9)
    none = replay(tmp_path, cv.pkts, first_n=0).recs[0]
    assert int(none["first_n"]) == 0 and none["first_sizes"].tolist() == [0] * 8


def test_first_packets_follow_a_flip_and_long_gaps(tmp_path):
    """After a flip at creation the first packet is the responder's; a 5 s gap keeps microseconds."""
    pkts = [udp(0, S, C, 53, 40000, b"r" * 10), udp(5.000123, C, S, 40000, 53, b"q" * 20),
            udp(5.5, S, C, 53, 40000, b"r")]
    rec = replay(tmp_path, pkts).recs[0]
    assert int(rec["first_n"]) == 3
    assert rec["first_dirs"].tolist()[:3] == [-1, 1, -1]
    assert rec["first_sizes"].tolist()[:3] == [38, 48, 29]
    assert rec["first_iat"].tolist()[:3] == pytest.approx([0.0, 5.000123, 0.499877], abs=1e-9)
    assert (int(rec["orig_size_min"]), int(rec["resp_size_min"]), int(rec["resp_size_max"])) == (48, 29, 38)
    assert rec["resp_iat_mean"] == pytest.approx(5.5, abs=1e-9) and rec["orig_iat_max"] == 0.0


def test_first_iat_keeps_long_gaps(tmp_path):
    cv = Conv(sport=22).handshake()
    cv.cli(0.1, "PA", b"SSH-2.0\r\n")
    cv.cli(3000.1, "PA", b"y")
    rec = replay(tmp_path, cv.pkts).recs[0]
    assert rec["orig_iat_max"] == pytest.approx(3000.0, abs=1e-9)
    assert rec["first_iat"][4] == pytest.approx(3000.0, abs=1e-6)


def test_features_skip_bad_checksum_packets(tmp_path):
    cv = Conv().handshake()
    cv.cli(0.5, "PA", b"x" * 300)
    bad = bad_tcp_checksum(cv.pkts[-1])
    cv.pkts[-1] = bad
    cv.cseq -= 300
    cv.cli(1.0, "PA", b"y" * 20)
    rec = replay(tmp_path, cv.pkts).recs[0]
    assert (int(rec["orig_pkts"]), int(rec["orig_size_max"]), int(rec["first_n"])) == (3, 60, 4)
    assert rec["orig_iat_max"] == pytest.approx(0.98, abs=1e-9)


# ---------------------------------------------------------------- local networks and VLANs

def test_local_nets(tmp_path):
    pkts = [udp(0, C, "192.0.2.7", 5000, 6000, b"x"), udp(1, "192.0.2.7", C, 5001, 6000, b"x"),
            udp(2, "198.51.100.1", "192.0.2.7", 5002, 6000, b"x")]
    r = replay(tmp_path, pkts, local_nets=["10.0.0.0/8", "2001:db8::/32"])
    known, lo, lr = FLAGS["local_known"], FLAGS["local_orig"], FLAGS["local_resp"]
    assert [int(x["flags"]) & (known | lo | lr) for x in r.recs] == [known | lo, known | lr, known]
    assert [(d["local_orig"], d["local_resp"]) for d in r.zeek] == [(True, False), (False, True), (False, False)]
    plain = replay(tmp_path, pkts)
    assert all(int(x["flags"]) & (known | lo | lr) == 0 for x in plain.recs)
    assert all("local_orig" not in d and "local_resp" not in d for d in plain.zeek)
    both = replay(tmp_path, pkts, local_nets=["0.0.0.0/0"])
    assert [int(x["flags"]) & (known | lo | lr) for x in both.recs] == [known | lo | lr] * 3


@pytest.mark.parametrize("net,inside,outside", [
    ("10.0.0.0/9", "10.127.255.255", "10.128.0.0"),
    ("192.0.2.64/26", "192.0.2.127", "192.0.2.128"),
    ("10.1.2.3/32", "10.1.2.3", "10.1.2.2"),
    ("2001:db8:8000::/33", "2001:db8:ffff::1", "2001:db8:7fff::1"),
])
def test_local_net_prefix_boundaries(tmp_path, net, inside, outside):
    def one(src, dst):
        ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
        return pkt(0, ip / UDP(sport=5000, dport=6000) / b"x")

    r = replay(tmp_path, [one(inside, outside)], local_nets=[net])
    assert (r.one()["local_orig"], r.one()["local_resp"]) == (True, False)


def test_vlan_ids_in_the_record_and_the_key(tmp_path):
    pkts = [udp(0, C, S, 5000, 6000, b"a", vlan=81), udp(1, S, C, 6000, 5000, b"b", vlan=80),
            udp(2, C, S, 5000, 6000, b"c", vlan=[100, 200]), udp(3, S, C, 6000, 5000, b"d", vlan=[100, 200]),
            udp(4, C, S, 5000, 6000, b"e")]
    r = replay(tmp_path, pkts)
    got = [(int(x["vlan"]), int(x["inner_vlan"]), int(x["flags"]) & (FLAGS["vlan"] | FLAGS["inner_vlan"]),
            host(x, "orig"), int(x["orig_pkts"]), int(x["resp_pkts"])) for x in r.recs]
    assert got == [(81, 0, FLAGS["vlan"], C, 1, 0), (80, 0, FLAGS["vlan"], S, 1, 0),
                   (100, 200, FLAGS["vlan"] | FLAGS["inner_vlan"], C, 1, 1), (0, 0, 0, C, 1, 0)]
    assert [d["history"] for d in r.zeek] == ["D", "D", "Dd", "D"]
    assert len({d["community_id"] for d in r.zeek}) == 1  # the Community ID has no VLAN
    assert len({d["uid"] for d in r.zeek}) == 4           # the flow id has


def test_tcp_over_vlan_keeps_its_state(tmp_path):
    cv = Conv(vlan=42).handshake()
    cv.cli(0.1, "FA")
    cv.srv(0.2, "FA")
    r = replay(tmp_path, cv.pkts)
    assert pick(r.one(), "history", "conn_state") == {"history": "ShAFf", "conn_state": "SF"}
    assert int(r.recs[0]["vlan"]) == 42
