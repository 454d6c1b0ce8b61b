#!/usr/bin/env python3
"""Generate pyhunt's shipped sample capture, byte for byte the same on every run.

The capture is 15 minutes of a small office subnet (10.0.0.0/24, its gateway 10.0.0.1 and resolver
10.0.0.2) talking to public servers in the documentation ranges (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32). The sensor sits on the office side of the gateway, so frames from the
office are stamped when sent and frames from servers when they arrive. It contains, among ordinary web
and TLS traffic, one instance of each thing a hunter or a flow meter test wants to see:

* DNS lookups and answers (UDP 53), one NXDOMAIN and one query that is never answered;
* HTTP/1.1 sessions with handshake, requests, responses and FIN teardown (SF);
* TLS 1.3-shaped sessions on 443 (well-formed ClientHello with SNI; the rest is opaque records);
* an interactive SSH session on 22 (banner, KEXINIT, ECDH, then hundreds of keystroke packets);
* a rejected connection (SYN -> RST-ACK, REJ) and an unanswered SYN with retransmissions (S0);
* a download the server resets mid-stream (RSTR) and a TLS session the client aborts (RSTO);
* a connection that lives for almost the whole capture (longer than the 10-minute active timeout);
* a beacon: one host fetching a small URL from the same external address every 60 s +- 3 s;
* a SYN scan of 30 ports of one host, some answered with RST-ACK, the rest silently dropped;
* ICMP echo (internal and external), IPv6 (TCP and ICMPv6 echo), an 802.1Q-tagged flow (VLAN 20),
  NTP (client and server mode 3/4), and a large EDNS answer split into three IPv4 fragments.

Determinism: a fixed seed drives every choice, timestamps are integer microseconds from a fixed epoch,
and the file is written here with struct (classic pcap, little-endian, microseconds, Ethernet), so no
wall clock or library default leaks in. Scapy builds the packets and computes every checksum.

Usage: python scripts/make_sample.py [-o PATH]   (default: pyhunt/data/sample.pcap)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import logging
import random
import struct
import sys
import zlib
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

logging.getLogger("scapy").setLevel(logging.ERROR)  # scapy logs to the root handler on import

from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRROPT, dns_compress  # noqa: E402
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment  # noqa: E402
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6  # noqa: E402
from scapy.layers.l2 import Dot1Q, Ether  # noqa: E402
from scapy.packet import Packet, Raw  # noqa: E402

SEED = 20240115
EPOCH = 1705309200  # 2024-01-15 09:00:00 UTC: the first second of the capture
SPAN = 900  # seconds of traffic
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "pyhunt" / "data" / "sample.pcap"

MS = 1000  # microseconds per millisecond
SEC = 1000000  # microseconds per second

GATEWAY = "10.0.0.1"
RESOLVER = "10.0.0.2"
GATEWAY_MAC = "02:00:0a:00:00:01"
LAN6_PREFIX = "2001:db8:0:1::"
WORKSTATIONS = ["10.0.0.%d" % i for i in range(10, 23)]
WINDOWS_HOSTS = {"10.0.0.%d" % i for i in range(13, 17)} | {"10.0.0.23"}

# (name, address, port, kind): the servers the workstations browse.
SITES = [
    ("www.example.com", "192.0.2.10", 80, "http"),
    ("news.example.net", "192.0.2.20", 80, "http"),
    ("updates.example.net", "192.0.2.80", 80, "http"),
    ("intranet.corp.example", "10.0.0.5", 80, "http"),
    ("api.example.org", "198.51.100.20", 443, "tls"),
    ("mail.example.com", "198.51.100.30", 443, "tls"),
    ("cdn.example.net", "203.0.113.50", 443, "tls"),
    ("docs.example.org", "203.0.113.60", 443, "tls"),
]

Frame = Tuple[int, int, bytes]  # (absolute time in microseconds, generation order, frame bytes)


# ---------------------------------------------------------------- addressing and framing

def is_internal(addr: str) -> bool:
    """True for the office's own addresses, which sit on the sensor's side of the gateway."""
    return addr.startswith("10.0.0.") or addr.startswith(LAN6_PREFIX)


def mac_of(addr: str) -> str:
    """A locally administered MAC that spells the host's IPv4 address (or its IPv6 interface id)."""
    if not is_internal(addr):
        return GATEWAY_MAC
    last = int(addr.rsplit(".", 1)[1]) if "." in addr else int(addr.rsplit(":", 1)[1], 16)
    return "02:00:0a:00:00:%02x" % last


class Capture:
    """Collects frames; builds the Ethernet/IP layers so every packet of a host looks alike."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.frames: List[Frame] = []
        self._ip_id: Dict[str, int] = {}
        self._ports: Dict[str, int] = {}

    def ttl(self, addr: str) -> int:
        """Initial TTL for internal hosts; TTL as it arrives here (some hops used) for external ones."""
        if is_internal(addr):
            return 128 if addr in WINDOWS_HOSTS else 64
        return 50 + zlib.crc32(addr.encode()) % 9

    def ip_id(self, addr: str) -> int:
        nxt = self._ip_id.get(addr)
        if nxt is None:
            nxt = self.rng.randrange(0x10000)
        self._ip_id[addr] = (nxt + 1) & 0xFFFF
        return nxt

    def port(self, addr: str) -> int:
        """Next ephemeral port of a host (Windows counts up by one, Linux skips ahead)."""
        nxt = self._ports.get(addr)
        if nxt is None:
            nxt = self.rng.randrange(49700, 50500) if addr in WINDOWS_HOSTS else self.rng.randrange(33000, 45000)
        self._ports[addr] = nxt + (1 if addr in WINDOWS_HOSTS else self.rng.randrange(1, 40))
        return nxt

    def ip(self, src: str, dst: str, payload: Packet, *, df: bool = False) -> Packet:
        if ":" in src:
            return IPv6(src=src, dst=dst, hlim=self.ttl(src), fl=0) / payload
        return IP(src=src, dst=dst, ttl=self.ttl(src), id=self.ip_id(src), flags="DF" if df else 0) / payload

    def add_l3(self, t: int, l3: Packet, *, vlan: Optional[int] = None) -> None:
        """Frame an IP packet (possibly a fragment) and record it at time t (us since EPOCH)."""
        src, dst = l3.src, l3.dst
        eth = Ether(src=mac_of(src), dst=mac_of(dst))
        frame = bytes(eth / Dot1Q(vlan=vlan) / l3) if vlan is not None else bytes(eth / l3)
        if len(frame) < 60:  # the wire pads short frames; a tap records the padding
            frame += b"\x00" * (60 - len(frame))
        self.frames.append((EPOCH * SEC + t, len(self.frames), frame))

    def emit(self, t: int, src: str, dst: str, payload: Packet, *, vlan: Optional[int] = None,
             df: bool = False) -> None:
        self.add_l3(t, self.ip(src, dst, payload, df=df), vlan=vlan)

    def pcap(self) -> bytes:
        """Classic pcap, little-endian, microseconds, Ethernet; frames in time order."""
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
        for ts, _, frame in sorted(self.frames):
            out.append(struct.pack("<IIII", ts // SEC, ts % SEC, len(frame), len(frame)))
            out.append(frame)
        return b"".join(out)


# ---------------------------------------------------------------- TCP connections

SYN_OPTS = [("MSS", 1460), ("NOP", None), ("WScale", 8), ("NOP", None), ("NOP", None), ("SAckOK", b"")]
SYNACK_OPTS = [("MSS", 1460), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None), ("WScale", 7)]


class TcpConn:
    """One TCP connection whose sequence and acknowledgement numbers stay consistent.

    Times are microseconds since EPOCH as seen by the sensor, which is next to the client: a server's
    answer to a client packet appears one round trip later, a client's answer almost at once.
    """

    def __init__(self, cap: Capture, cli: str, srv: str, dport: int, *, rtt: int,
                 sport: Optional[int] = None, vlan: Optional[int] = None, mss: int = 1460) -> None:
        self.cap, self.rng = cap, cap.rng
        self.addr = {True: (cli, sport if sport is not None else cap.port(cli)), False: (srv, dport)}
        self.nxt = {True: self.rng.getrandbits(32), False: self.rng.getrandbits(32)}
        self.win = {True: 1026 if cli in WINDOWS_HOSTS else 502, False: 501}
        self.rtt, self.vlan, self.mss = rtt, vlan, (mss - 20 if ":" in cli else mss)
        self.last = 0

    def delay(self, responder_is_client: bool) -> int:
        """Time between a packet seen here and the other side's reaction to it, seen here."""
        if responder_is_client:
            return self.rng.randrange(30, 150)
        return self.rtt + self.rng.randrange(0, max(1, self.rtt // 10))

    def seg(self, t: int, from_cli: bool, flags: str, data: bytes = b"", *, opts=None,
            seq: Optional[int] = None, window: Optional[int] = None) -> None:
        """Send one segment. An explicit seq (a retransmission, or 0 in a RST answering a SYN)
        leaves the sender's next sequence number alone."""
        (src, sport), (dst, dport) = self.addr[from_cli], self.addr[not from_cli]
        explicit = seq is not None
        seq = self.nxt[from_cli] if seq is None else seq
        ack = self.nxt[not from_cli] if "A" in flags else 0
        win = self.win[from_cli] if window is None else window
        if "S" in flags:
            win = 64240 if from_cli else 65160
        tcp = TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=win, options=opts or [])
        self.cap.emit(t, src, dst, tcp / Raw(data) if data else tcp, vlan=self.vlan, df=True)
        if not explicit:
            self.nxt[from_cli] = (seq + len(data) + ("S" in flags) + ("F" in flags)) & 0xFFFFFFFF
        self.last = max(self.last, t)

    def handshake(self, t: int) -> int:
        self.seg(t, True, "S", opts=SYN_OPTS)
        t += self.delay(False)
        self.seg(t, False, "SA", opts=SYNACK_OPTS)
        t += self.delay(True)
        self.seg(t, True, "A")
        return t

    def send(self, t: int, from_cli: bool, data: bytes, *, ack: bool = True,
             limit: Optional[int] = None) -> int:
        """Send data in MSS-sized segments with slow start; the receiver acks every second segment.

        With ack=False the last segment is left for the reply to acknowledge (a request). With limit,
        only that many segments are sent (the rest never leave: used for aborted transfers).
        Returns the time of the last data segment.
        """
        chunks = [data[i:i + self.mss] for i in range(0, len(data), self.mss)]
        if limit is not None:
            chunks = chunks[:limit]
        spacing = 120 if from_cli or is_internal(self.addr[False][0]) else 240
        cwnd, in_flight, flight_start, last_t = 10, 0, t, t
        for i, chunk in enumerate(chunks):
            if in_flight == cwnd:  # wait for the acks of the previous flight
                t = max(t, flight_start + self.rtt)
                flight_start, cwnd, in_flight = t, min(cwnd * 2, 64), 0
            final = i == len(chunks) - 1
            self.seg(t, from_cli, "PA" if final else "A", chunk)
            last_t, in_flight = t, in_flight + 1
            if (i % 2 == 1 and not final) or (final and ack):
                self.seg(t + self.delay(not from_cli), not from_cli, "A")
            t += spacing + self.rng.randrange(0, 40)
        return last_t

    def exchange(self, t: int, request: bytes, response: bytes, *, think: int = 0) -> int:
        """Client request, server response after a round trip plus think time; returns the end."""
        t = self.send(t, True, request, ack=False)
        return self.send(t + self.delay(False) + think, False, response)

    def close(self, t: int, client_first: bool = True) -> int:
        a = client_first
        self.seg(t, a, "FA")
        t += self.delay(not a)
        self.seg(t, not a, "FA")
        t += self.delay(a)
        self.seg(t, a, "A")
        return t

    def after(self, gap: int) -> int:
        """A time gap us after the last packet of this connection (including scheduled acks)."""
        return self.last + gap


# ---------------------------------------------------------------- application payloads

WORDS = ("the network flow sensor threat hunt office cloud server client request response packet "
         "update report meeting budget invoice schedule project release notes quarterly review team "
         "security policy backup storage account login portal dashboard metrics alert").split()
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
]
PATHS = ["/", "/index.html", "/news/today", "/static/app.js", "/static/style.css", "/img/logo.png",
         "/api/v1/items?page=2", "/downloads/release-notes.txt", "/search?q=quarterly+report"]


def html_body(rng: random.Random, size: int) -> bytes:
    words: List[str] = []
    n = 40
    while n < size:
        w = rng.choice(WORDS)
        words.append(w)
        n += len(w) + 1
    text = "<!doctype html><html><body><p>" + " ".join(words)
    return (text[: max(0, size - 19)] + "</p></body></html>").encode()[:size]


def http_request(rng: random.Random, host: str, path: str, ua: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\nAccept: */*\r\n"
            "Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n").encode()


def http_response(rng: random.Random, size: int, path: str) -> bytes:
    binary = path.endswith((".png", ".js")) or size > 20000
    body = rng.randbytes(size) if binary else html_body(rng, size)
    ctype = "application/octet-stream" if binary else "text/html; charset=utf-8"
    head = (f"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Mon, 15 Jan 2024 09:00:00 GMT\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode() + body


def tls_record(ctype: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", ctype, version, len(body)) + body


def tls_ext(etype: int, body: bytes) -> bytes:
    return struct.pack("!HH", etype, len(body)) + body


def tls_client_hello(rng: random.Random, sni: str) -> Tuple[bytes, bytes]:
    """A well-formed TLS 1.3 ClientHello record with SNI and ALPN; returns (record, session id)."""
    sid = rng.randbytes(32)
    name = sni.encode()
    ciphers = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014,
               0x009C, 0x009D, 0x002F, 0x0035]
    alpn = b"".join(bytes([len(p)]) + p for p in (b"h2", b"http/1.1"))
    exts = b"".join([
        tls_ext(0x0000, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name),
        tls_ext(0x0017, b""),
        tls_ext(0xFF01, b"\x00"),
        tls_ext(0x000A, struct.pack("!H3H", 6, 0x001D, 0x0017, 0x0018)),
        tls_ext(0x000B, b"\x01\x00"),
        tls_ext(0x0023, b""),
        tls_ext(0x0010, struct.pack("!H", len(alpn)) + alpn),
        tls_ext(0x000D, struct.pack("!H8H", 16, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)),
        tls_ext(0x002B, b"\x04\x03\x04\x03\x03"),
        tls_ext(0x002D, b"\x01\x01"),
        tls_ext(0x0033, struct.pack("!HHH", 36, 0x001D, 32) + rng.randbytes(32)),
    ])
    body = (struct.pack("!H", 0x0303) + rng.randbytes(32) + bytes([32]) + sid
            + struct.pack("!H", 2 * len(ciphers)) + struct.pack("!%dH" % len(ciphers), *ciphers)
            + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    hs = bytes([1]) + len(body).to_bytes(3, "big") + body
    return tls_record(22, hs, 0x0301), sid


def tls_server_flight(rng: random.Random, sid: bytes) -> bytes:
    """ServerHello (TLS 1.3), ChangeCipherSpec, then the encrypted certificate flight."""
    exts = tls_ext(0x002B, b"\x03\x04") + tls_ext(0x0033, struct.pack("!HH", 0x001D, 32) + rng.randbytes(32))
    body = (struct.pack("!H", 0x0303) + rng.randbytes(32) + bytes([32]) + sid + struct.pack("!HB", 0x1301, 0)
            + struct.pack("!H", len(exts)) + exts)
    hello = tls_record(22, bytes([2]) + len(body).to_bytes(3, "big") + body)
    return (hello + tls_record(20, b"\x01") + tls_record(23, rng.randbytes(rng.randrange(2400, 4200)))
            + tls_record(23, rng.randbytes(rng.randrange(80, 300))))


def tls_app(rng: random.Random, size: int) -> bytes:
    """Application data split into records of at most 16 KiB plus overhead."""
    out = []
    while size > 0:
        n = min(size, 16401)
        out.append(tls_record(23, rng.randbytes(n)))
        size -= n
    return b"".join(out)


def tls_session(conn: TcpConn, t: int, sni: str, exchanges: List[Tuple[int, int]]) -> int:
    """Handshake, client Finished, then (request size, response size) exchanges; returns the end."""
    rng = conn.rng
    t = conn.handshake(t)
    hello, sid = tls_client_hello(rng, sni)
    t = conn.exchange(t + conn.delay(True), hello, tls_server_flight(rng, sid), think=rng.randrange(200, 3 * MS))
    finished = tls_record(20, b"\x01") + tls_record(23, rng.randbytes(53))
    t = conn.send(t + rng.randrange(1 * MS, 4 * MS), True, finished, ack=False)
    for req, resp in exchanges:
        t = conn.exchange(t + rng.randrange(100, 2 * MS), tls_app(rng, req), tls_app(rng, resp),
                          think=rng.randrange(2 * MS, 60 * MS))
        t = conn.after(rng.randrange(50 * MS, 3 * SEC))
    return t


def ssh_packet(rng: random.Random, payload: bytes) -> bytes:
    """An unencrypted SSH binary packet (RFC 4253 section 6) with padding to 8 bytes."""
    pad = 8 - (len(payload) + 5) % 8
    pad += 8 if pad < 4 else 0
    return struct.pack("!IB", len(payload) + pad + 1, pad) + payload + rng.randbytes(pad)


def ssh_string(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


def ssh_kexinit(rng: random.Random, server: bool) -> bytes:
    lists = [
        b"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group16-sha512"
        + (b",kex-strict-s-v00@openssh.com" if server else b",ext-info-c,kex-strict-c-v00@openssh.com"),
        b"ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256" if not server else b"ssh-ed25519",
        b"chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com",
        b"chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com",
        b"umac-64-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com",
        b"umac-64-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com",
        b"none,zlib@openssh.com", b"none,zlib@openssh.com", b"", b"",
    ]
    payload = bytes([20]) + rng.randbytes(16) + b"".join(ssh_string(x) for x in lists) + b"\x00" + b"\x00" * 4
    return ssh_packet(rng, payload)


def ntp_packet(mode: int, t: int, origin: int = 0, one_way: int = 0) -> bytes:
    """48-byte NTPv4 client (mode 3) or server (mode 4) packet stamped from the capture clock.

    A server's receive and transmit times are one_way microseconds before its answer arrives here.
    """
    def ts(us: int) -> int:
        secs = EPOCH + us // SEC + 2208988800
        return (secs << 32) | ((us % SEC) * (1 << 32) // SEC)
    if mode == 3:
        return struct.pack("!BBbbII4sQQQQ", 0x23, 0, 6, -20, 0, 0, b"\x00" * 4, 0, 0, 0, ts(t))
    return struct.pack("!BBbbII4sQQQQ", 0x24, 2, 6, -24, 0x00000210, 0x000003A0, bytes([192, 0, 2, 1]),
                       ts(t - 64 * SEC), origin, ts(t - one_way - 35), ts(t - one_way))


# ---------------------------------------------------------------- scenarios

class Dns:
    """Lookups at the office resolver, remembered per host for the answer's TTL."""

    def __init__(self, cap: Capture) -> None:
        self.cap, self.rng = cap, cap.rng
        self.cache: Dict[Tuple[str, str], int] = {}

    def query(self, t: int, client: str, name: str, answers: List[str], *, qtype: str = "A",
              server: str = RESOLVER, rcode: int = 0, answered: bool = True, force: bool = False) -> int:
        """Look name up unless cached; returns the time the client has its answer."""
        if not force and self.cache.get((client, name), -1) > t:
            return t
        rng = self.rng
        qid, sport = rng.randrange(0x10000), self.cap.port(client)
        q = DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype=qtype))
        self.cap.emit(t, client, server, UDP(sport=sport, dport=53) / q)
        if not answered:
            return t
        an = [DNSRR(rrname=name, type=qtype, ttl=300, rdata=a) for a in answers]
        r = DNS(id=qid, qr=1, rd=1, ra=1, rcode=rcode, qd=DNSQR(qname=name, qtype=qtype), an=an)
        t += rng.randrange(300, 2 * MS) if rng.random() < 0.6 else rng.randrange(8 * MS, 40 * MS)
        self.cap.emit(t, server, client, UDP(sport=53, dport=sport) / dns_compress(r))
        self.cache[(client, name)] = t + 300 * SEC
        return t


def rtt_to(addr: str) -> int:
    """Round-trip time from the sensor to a host, by network."""
    if is_internal(addr):
        return 350
    for prefix, rtt in (("192.0.2.", 18 * MS), ("198.51.100.", 42 * MS), ("203.0.113.", 95 * MS)):
        if addr.startswith(prefix):
            return rtt
    return 30 * MS


def browsing(cap: Capture, dns: Dns, sessions: int) -> None:
    """Ordinary web and TLS sessions from the workstations."""
    rng = cap.rng
    for _ in range(sessions):
        client = rng.choice(WORKSTATIONS)
        name, addr, port, kind = rng.choice(SITES)
        t = rng.randrange(5 * SEC, (SPAN - 40) * SEC)
        t = dns.query(t, client, name, [addr])
        if rng.random() < 0.3:
            dns.query(t + 150, client, name, [], qtype="AAAA")
        conn = TcpConn(cap, client, addr, port, rtt=rtt_to(addr))
        t += rng.randrange(200, 2 * MS)
        if kind == "http":
            t = conn.handshake(t)
            ua = rng.choice(USER_AGENTS)
            for _ in range(rng.randrange(1, 4)):
                path = rng.choice(PATHS)
                size = rng.choice([180, 600, 1500, 3000, 9000])
                t = conn.exchange(t + rng.randrange(1 * MS, 40 * MS), http_request(rng, name, path, ua),
                                  http_response(rng, size, path), think=rng.randrange(1 * MS, 30 * MS))
                t = conn.after(rng.randrange(20 * MS, 2 * SEC))
            conn.close(conn.after(rng.randrange(100 * MS, 5 * SEC)), client_first=rng.random() < 0.6)
        else:
            ex = [(rng.randrange(200, 900), rng.choice([300, 900, 2000, 4500, 11000]))
                  for _ in range(rng.randrange(1, 4))]
            tls_session(conn, t, name, ex)
            conn.close(conn.after(rng.randrange(200 * MS, 8 * SEC)), client_first=rng.random() < 0.7)


def tls_browse(cap: Capture, dns: Dns, t: int, client: str, name: str, addr: str,
               ex: List[Tuple[int, int]]) -> TcpConn:
    t = dns.query(t, client, name, [addr])
    conn = TcpConn(cap, client, addr, 443, rtt=rtt_to(addr))
    tls_session(conn, t + 500, name, ex)
    return conn


def big_download(cap: Capture, dns: Dns) -> None:
    """One larger HTTP download (about 90 kB) that closes normally."""
    rng, client, name, addr = cap.rng, "10.0.0.20", "updates.example.net", "192.0.2.80"
    t = dns.query(200 * SEC, client, name, [addr])
    conn = TcpConn(cap, client, addr, 80, rtt=rtt_to(addr))
    t = conn.handshake(t + 700)
    req = http_request(rng, name, "/downloads/agent-2.4.1.tar.gz", USER_AGENTS[1])
    t = conn.exchange(t + 400, req, http_response(rng, 90000, "/downloads/agent-2.4.1.tar.gz"), think=9 * MS)
    conn.close(conn.after(3 * SEC), client_first=False)


def ssh_session(cap: Capture, dns: Dns) -> None:
    """An administrator's interactive SSH session: key exchange then keystrokes and echoes."""
    rng, client, addr = cap.rng, "10.0.0.12", "203.0.113.22"
    t = dns.query(130 * SEC, client, "bastion.example.net", [addr])
    conn = TcpConn(cap, client, addr, 22, rtt=rtt_to(addr))
    t = conn.handshake(t + 600)
    t = conn.send(t + 200, True, b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6\r\n", ack=False)
    t = conn.send(t + conn.delay(False), False, b"SSH-2.0-OpenSSH_9.3p1 Debian-1\r\n")
    t = conn.send(t + 300, True, ssh_kexinit(rng, False), ack=False)
    t = conn.send(t + conn.delay(False), False, ssh_kexinit(rng, True))
    ecdh_init = ssh_packet(rng, bytes([30]) + ssh_string(rng.randbytes(32)))
    t = conn.send(t + 400, True, ecdh_init, ack=False)
    hostkey = ssh_string(b"ssh-ed25519") + ssh_string(rng.randbytes(32))
    sig = ssh_string(b"ssh-ed25519") + ssh_string(rng.randbytes(64))
    reply = (ssh_packet(rng, bytes([31]) + ssh_string(hostkey) + ssh_string(rng.randbytes(32)) + ssh_string(sig))
             + ssh_packet(rng, bytes([21])))
    t = conn.send(t + conn.delay(False) + 2 * MS, False, reply)
    # NEWKEYS, then everything is encrypted: service request, auth, channel and pty setup
    for req, resp in [(16 + 44, 44), (108, 52), (420, 36), (128, 52), (396, 652), (100, 36)]:
        t = conn.send(t + rng.randrange(1 * MS, 20 * MS), True, rng.randbytes(req), ack=False)
        t = conn.send(t + conn.delay(False) + rng.randrange(0, 5 * MS), False, rng.randbytes(resp))
    t = conn.send(t + 30 * MS, False, rng.randbytes(rng.randrange(600, 1400)))  # motd and prompt
    commands = ["uptime", "df -h", "sudo journalctl -u nginx --since today", "ls -la /var/www",
                "tail -n 50 /var/log/auth.log", "systemctl status nginx", "free -m", "who",
                "sudo systemctl reload nginx", "curl -sI http://localhost/", "last -n 5", "exit"]
    for cmd in commands:
        t = conn.after(rng.randrange(3 * SEC, 20 * SEC))
        for _ in range(len(cmd) + 1):  # each key and Enter: keystroke, echo, ack
            conn.seg(t, True, "PA", rng.randbytes(36))
            t += conn.delay(False)
            conn.seg(t, False, "PA", rng.randbytes(36))
            t += conn.delay(True) + 20 * MS
            conn.seg(t, True, "A")
            t += rng.randrange(60 * MS, 280 * MS)
        out = rng.randrange(300, 9000) if cmd != "exit" else 120
        conn.send(conn.after(rng.randrange(5 * MS, 60 * MS)), False, rng.randbytes(out))
    conn.close(conn.after(20 * MS), client_first=False)


def long_lived(cap: Capture, dns: Dns) -> None:
    """A push channel open for almost the whole capture: TLS with a message every 15-45 s."""
    rng, client, name, addr = cap.rng, "10.0.0.11", "push.example.net", "203.0.113.5"
    conn = tls_browse(cap, dns, 3 * SEC, client, name, addr, [(420, 1300)])
    while conn.last < (SPAN - 50) * SEC:
        t = conn.after(rng.randrange(15 * SEC, 45 * SEC))
        if rng.random() < 0.6:  # server pushes, client acknowledges
            conn.send(t, False, tls_app(rng, rng.randrange(40, 700)))
        else:  # client heartbeat, server acknowledges
            conn.send(t, True, tls_app(rng, 31))
    conn.close(max(conn.after(4 * SEC), (SPAN - 2) * SEC), client_first=True)


def beacon(cap: Capture, dns: Dns) -> None:
    """A host fetching the same small URL from one address every 60 s with a few seconds of jitter."""
    rng, client, name, addr = cap.rng, "10.0.0.23", "telemetry.example.org", "198.51.100.77"
    t0 = 41 * SEC
    for i in range(14):
        t = t0 + i * 60 * SEC + rng.randrange(-3 * SEC, 3 * SEC)
        t = dns.query(t, client, name, [addr])
        conn = TcpConn(cap, client, addr, 80, rtt=rtt_to(addr))
        t = conn.handshake(t + 300)
        sid = "%08x" % rng.getrandbits(32)
        req = (f"GET /cdn/v2/status?sid={sid} HTTP/1.1\r\nHost: {name}\r\n"
               "User-Agent: Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1)\r\n\r\n").encode()
        resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\r\n" + rng.randbytes(8).hex().encode()
        t = conn.exchange(t + 200, req, resp, think=3 * MS)
        conn.close(t + 2 * MS, client_first=True)


def failures(cap: Capture, dns: Dns) -> None:
    """REJ, S0 with SYN retransmissions, RSTR and RSTO connections."""
    rng = cap.rng
    # REJ: RDP to a server that has nothing on 3389
    conn = TcpConn(cap, "10.0.0.14", "10.0.0.5", 3389, rtt=rtt_to("10.0.0.5"))
    conn.seg(300 * SEC, True, "S", opts=SYN_OPTS)
    conn.seg(300 * SEC + 310, False, "RA", seq=0, window=0)
    # S0: SYN to a host that never answers, retransmitted after 1, 2, 4 and 8 seconds
    conn = TcpConn(cap, "10.0.0.15", "192.0.2.200", 8443, rtt=rtt_to("192.0.2.200"))
    isn, t = conn.nxt[True], 500 * SEC
    conn.seg(t, True, "S", opts=SYN_OPTS)
    for backoff in (1, 2, 4, 8):
        t += backoff * SEC + rng.randrange(0, 3 * MS)
        conn.seg(t, True, "S", opts=SYN_OPTS, seq=isn)
    # RSTR: the server resets a download part way through
    client, name, addr = "10.0.0.16", "files.example.com", "192.0.2.44"
    t = dns.query(600 * SEC, client, name, [addr])
    conn = TcpConn(cap, client, addr, 80, rtt=rtt_to(addr))
    t = conn.handshake(t + 500)
    t = conn.send(t + 300, True, http_request(rng, name, "/iso/install-amd64.iso", USER_AGENTS[0]), ack=False)
    t = conn.send(t + conn.delay(False) + 5 * MS, False, http_response(rng, 200000, "/iso/x.iso"), limit=24)
    conn.seg(conn.after(180 * MS), False, "RA")
    # RSTO: a client aborts a TLS download (tab closed)
    conn = tls_browse(cap, dns, 650 * SEC, "10.0.0.13", "video.example.org", "198.51.100.25", [(510, 3000)])
    conn.send(conn.after(200 * MS), False, tls_app(rng, 30000), limit=12)
    conn.seg(conn.after(90 * MS), True, "RA", window=0)


def port_scan(cap: Capture) -> None:
    """A SYN scan of 30 ports from one host: closed ports answer RST-ACK, filtered ones stay quiet."""
    rng, scanner, target = cap.rng, "10.0.0.66", "10.0.0.8"
    ports = [21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 443, 445, 993, 995, 1433, 1723, 3306,
             3389, 5432, 5900, 6379, 8000, 8080, 8443, 9100, 9200, 11211, 27017, 5060]
    rng.shuffle(ports)
    quiet = set(rng.sample(ports, 11))
    sport, t = rng.randrange(40000, 65000), 400 * SEC
    for port in ports:
        conn = TcpConn(cap, scanner, target, port, rtt=rtt_to(target), sport=sport)
        conn.seg(t, True, "S", opts=[("MSS", 1460)], window=1024)
        if port not in quiet:
            conn.seg(t + rng.randrange(150, 400), False, "RA", seq=0, window=0)
        t += rng.randrange(2 * MS, 15 * MS)


def icmp_and_v6(cap: Capture, dns: Dns) -> None:
    """Pings (Linux-style to the internet, Windows-style to the gateway) and a little IPv6."""
    rng = cap.rng
    pad = bytes(range(0x10, 0x38))
    t, ident = 240 * SEC, rng.randrange(0x10000)
    for seq in range(1, 5):
        stamp = struct.pack("<QQ", EPOCH + t // SEC, t % SEC)[:16]
        cap.emit(t, "10.0.0.10", "198.51.100.1", ICMP(type=8, id=ident, seq=seq) / Raw(stamp + pad), df=True)
        cap.emit(t + rtt_to("198.51.100.1"), "198.51.100.1", "10.0.0.10",
                 ICMP(type=0, id=ident, seq=seq) / Raw(stamp + pad))
        t += SEC + rng.randrange(0, 400)
    t, ident = 720 * SEC, 1
    for seq in range(31, 34):
        data = b"abcdefghijklmnopqrstuvwabcdefghi"
        cap.emit(t, "10.0.0.14", GATEWAY, ICMP(type=8, id=ident, seq=seq) / Raw(data))
        cap.emit(t + 420, GATEWAY, "10.0.0.14", ICMP(type=0, id=ident, seq=seq) / Raw(data))
        t += SEC + rng.randrange(0, 900)
    # IPv6: the dual-stack workstation 10.0.0.10 / 2001:db8:0:1::a
    me6, www6, rtr6 = LAN6_PREFIX + "a", "2001:db8:ffff::80", "2001:db8:ffff::1"
    dns.query(330 * SEC, "10.0.0.10", "www.example.com", [www6], qtype="AAAA", force=True)
    t, ident = 331 * SEC, rng.randrange(0x10000)
    for seq in range(1, 5):
        data = bytes(range(56))
        cap.emit(t, me6, rtr6, ICMPv6EchoRequest(id=ident, seq=seq, data=data))
        cap.emit(t + 23 * MS, rtr6, me6, ICMPv6EchoReply(id=ident, seq=seq, data=data))
        t += SEC
    conn = TcpConn(cap, me6, www6, 80, rtt=23 * MS)
    t = conn.handshake(336 * SEC)
    t = conn.exchange(t + 500, http_request(rng, "www.example.com", "/", USER_AGENTS[1]),
                      http_response(rng, 6000, "/"), think=4 * MS)
    conn.close(conn.after(1200 * MS), client_first=True)


def vlan_flow(cap: Capture) -> None:
    """Management traffic on VLAN 20: a backup job polling a switch's HTTP API."""
    rng = cap.rng
    conn = TcpConn(cap, "10.0.0.200", "10.0.0.250", 8080, rtt=400, vlan=20)
    t = conn.handshake(555 * SEC)
    req = b"GET /api/config/running HTTP/1.1\r\nHost: 10.0.0.250:8080\r\nAuthorization: Basic YmFja3VwOmV4YW1wbGU=\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3000\r\n\r\n" + html_body(rng, 3000)
    t = conn.exchange(t + 300, req, resp, think=12 * MS)
    conn.close(conn.after(50 * MS), client_first=True)


def ntp(cap: Capture) -> None:
    """The resolver keeps time from an internet server, polling every 64 s."""
    rng, client, server = cap.rng, RESOLVER, "192.0.2.123"
    t = 20 * SEC + rng.randrange(SEC)
    while t < SPAN * SEC:
        cap.emit(t, client, server, UDP(sport=123, dport=123) / Raw(ntp_packet(3, t)))
        origin = struct.unpack("!Q", ntp_packet(3, t)[40:48])[0]
        r = t + rtt_to(server) + rng.randrange(0, 2 * MS)
        cap.emit(r, server, client, UDP(sport=123, dport=123) / Raw(ntp_packet(4, r, origin, rtt_to(server) // 2)))
        t += 64 * SEC + rng.randrange(0, 300 * MS)


def dns_oddities(cap: Capture, dns: Dns) -> None:
    """NXDOMAIN, a query to an outside resolver that is never answered, and a fragmented answer."""
    rng = cap.rng
    dns.query(95 * SEC, "10.0.0.19", "wpad.corp.example", [], rcode=3)
    dns.query(470 * SEC, "10.0.0.18", "update.example.net", [], server="203.0.113.53", answered=False)
    # a DNSSEC-sized TXT answer (about 3 kB) over UDP: the server's IP layer sends three fragments
    client, server, name = "10.0.0.17", "198.51.100.53", "keys.example.net"
    qid, sport, t = rng.randrange(0x10000), cap.port(client), 760 * SEC
    q = DNS(id=qid, rd=1, ad=1, qd=DNSQR(qname=name, qtype="TXT"), ar=DNSRROPT(rclass=4096))
    cap.emit(t, client, server, UDP(sport=sport, dport=53) / q)
    txt = [DNSRR(rrname=name, type="TXT", ttl=3600, rdata=[rng.randbytes(120).hex()[:230]]) for _ in range(12)]
    r = dns_compress(DNS(id=qid, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype="TXT"), an=txt,
                         ar=DNSRROPT(rclass=1232)))
    datagram = IP(src=server, dst=client, ttl=cap.ttl(server), id=cap.ip_id(server)) / UDP(sport=53, dport=sport) / r
    datagram = IP(bytes(datagram))  # freeze lengths and checksums before cutting it up
    t += rtt_to(server) + 3 * MS
    for frag in fragment(datagram, fragsize=1480):
        cap.add_l3(t, frag)
        t += 130


def build(seed: int = SEED) -> Capture:
    cap = Capture(random.Random(seed))
    dns = Dns(cap)
    long_lived(cap, dns)
    beacon(cap, dns)
    ssh_session(cap, dns)
    big_download(cap, dns)
    failures(cap, dns)
    port_scan(cap)
    icmp_and_v6(cap, dns)
    vlan_flow(cap)
    ntp(cap)
    dns_oddities(cap, dns)
    browsing(cap, dns, 72)
    return cap


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT, help="where to write the pcap")
    args = parser.parse_args(argv)
    cap = build()
    data = cap.pcap()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    first, last = min(cap.frames)[0], max(cap.frames)[0]
    utc = _dt.timezone.utc
    shown = args.output.resolve()
    if shown.is_relative_to(Path.cwd()):
        shown = shown.relative_to(Path.cwd())
    print("%s: %d packets, %d bytes, %s to %s UTC, sha256 %s" % (
        shown, len(cap.frames), len(data),
        _dt.datetime.fromtimestamp(first // SEC, utc).strftime("%Y-%m-%d %H:%M:%S"),
        _dt.datetime.fromtimestamp(last // SEC, utc).strftime("%H:%M:%S"),
        hashlib.sha256(data).hexdigest()[:16]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
