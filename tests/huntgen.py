"""A capture with known behaviours planted in a realistic background, for the hunt tests.

Background (3 hours, 50 hosts in 10.1.0.0/24): DNS to the internal resolver (Poisson, popular names),
HTTPS sessions to external servers chosen by popularity plus one-off sites, NTP, SMB to a file
server, and a few unanswered connection attempts. Planted:

- a beacon: 10.1.0.66 -> 203.0.113.50:443 every 60 s with +-6 s uniform jitter;
- a long connection: 10.1.0.67 -> 203.0.113.77:22, up for 2 h 50 min, a keepalive every minute;
- scans from 10.1.0.68: horizontal (10.1.2.1-254 on 445) and vertical (10.1.0.5, ports 1-1024);
- a DNS tunnel: 10.1.0.69 sends 600 TXT queries of long base32 labels under t.dnsexfil-c2.net;
- exfiltration: 10.1.0.70 uploads 20 MB to 198.51.100.200:443 and gets little back;
- a rare destination: 10.1.0.71 -> 192.0.2.99:8443, 30 sessions, nobody else goes there.

Packets are built with dpkt (valid checksums); ``write(path)`` returns the DNS queries so that the test
can write the dns.log Zeek would write for them (Zeek's uid is the flow's uid).
"""
from __future__ import annotations

import base64
import random
import struct
from dataclasses import dataclass, field

import dpkt

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
SPAN = 3 * 3600.0
HOSTS = [f"10.1.0.{i}" for i in range(10, 60)]
RESOLVER, NTP, FILESERVER = "10.1.0.2", "10.1.0.3", "10.1.0.5"

BEACON = ("10.1.0.66", "203.0.113.50")
LONG = ("10.1.0.67", "203.0.113.77", 22)
SCANNER, SCAN_PORT, VSCAN_TARGET = "10.1.0.68", 445, FILESERVER
TUNNEL_HOST, TUNNEL_DOMAIN = "10.1.0.69", "dnsexfil-c2.net"
EXFIL = ("10.1.0.70", "198.51.100.200")
RARE = ("10.1.0.71", "192.0.2.99", 8443)

#: what each hunt must find first: (hunt, the finding's key)
PLANTED = {
    "beacons": f"{BEACON[0]} -> {BEACON[1]}",
    "long-connections": f"{LONG[0]} -> {LONG[1]}:{LONG[2]}/tcp",
    "scans": f"{SCANNER} -> {VSCAN_TARGET}:*",
    "dns-tunnels": TUNNEL_DOMAIN,
    "exfil": f"{EXFIL[0]} -> {EXFIL[1]}",
    "rare-destinations": f"{RARE[1]}:{RARE[2]}/tcp",
}
#: more planted findings a hunt must report (the horizontal scan is the scans hunt's second lead)
ALSO_PLANTED = {"scans": {f"{SCANNER} -> *:{SCAN_PORT}/tcp"}}
#: planted behaviours that a hunt may rightly report too (not false positives, not required): the
#: beacon's, the long connection's and the exfiltration's destinations are rare destinations as well
ACCEPTABLE = {"rare-destinations": {f"{BEACON[1]}:443/tcp", f"{LONG[1]}:{LONG[2]}/tcp", f"{EXFIL[1]}:443/tcp"}}

DOMAINS = ["example.com", "wikipedia.org", "github.com", "python.org", "debian.org", "mozilla.org",
           "bbc.co.uk", "cloudflare.com", "office365.com", "slack.com", "zoom.us", "apple.com", "ubuntu.com",
           "npmjs.com", "pypi.org", "stackoverflow.com", "reddit.com", "youtube.com", "gstatic.com", "akamai.net"]
SUBS = ["www", "api", "cdn", "static", "mail", "img", ""]
MAC_A, MAC_B = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"


def _ip(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


@dataclass
class DnsQuery:
    ts: float
    src: str
    sport: int
    dst: str
    name: str
    qtype: int
    trans_id: int
    answers: list = field(default_factory=list)
    rtt: float = 0.004


class Capture:
    def __init__(self, seed: int = 7):
        self.rng = random.Random(seed)
        self.frames: list[tuple[float, bytes]] = []
        self.dns: list[DnsQuery] = []
        self._sport: dict[str, int] = {}
        self._ipid = 0

    def sport(self, host: str) -> int:
        n = self._sport.get(host, 0)
        self._sport[host] = n + 1
        return 32768 + n % 28000

    def _frame(self, ts: float, src: str, dst: str, l4, proto: int) -> None:
        self._ipid = (self._ipid + 1) & 0xFFFF
        ip = dpkt.ip.IP(src=_ip(src), dst=_ip(dst), p=proto, ttl=64, id=self._ipid, data=l4)
        ip.len = 20 + len(bytes(l4))
        eth = dpkt.ethernet.Ethernet(src=MAC_A, dst=MAC_B, type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
        self.frames.append((ts, bytes(eth)))

    def tcp(self, ts, src, dst, sport, dport, flags, seq, ack, payload=b""):
        self._frame(ts, src, dst, dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=65535,
                                               data=payload), dpkt.ip.IP_PROTO_TCP)

    def udp(self, ts, src, dst, sport, dport, payload):
        self._frame(ts, src, dst, dpkt.udp.UDP(sport=sport, dport=dport, data=payload), dpkt.ip.IP_PROTO_UDP)

    def session(self, t: float, c: str, s: str, dport: int, up: int, down: int, rtt: float = 0.02,
                mss: int = 1448, gap: float = 0.0005) -> float:
        """A whole TCP session: handshake, `up` bytes from the client, `down` back, FIN both ways.
        Returns the time of its last packet."""
        F, S, R, P, A = dpkt.tcp.TH_FIN, dpkt.tcp.TH_SYN, dpkt.tcp.TH_RST, dpkt.tcp.TH_PUSH, dpkt.tcp.TH_ACK
        sp = self.sport(c)
        cs, ss = self.rng.randrange(1 << 31), self.rng.randrange(1 << 31)
        self.tcp(t, c, s, sp, dport, S, cs, 0)
        self.tcp(t + rtt, s, c, dport, sp, S | A, ss, cs + 1)
        t += rtt * 1.1
        self.tcp(t, c, s, sp, dport, A, cs + 1, ss + 1)
        cs, ss = cs + 1, ss + 1
        for sender, total in ((0, up), (1, down)):
            sent = 0
            k = 0
            while sent < total:
                n = min(mss, total - sent)
                t += gap
                if sender == 0:
                    self.tcp(t, c, s, sp, dport, P | A, cs + sent, ss, b"\x00" * n)
                else:
                    self.tcp(t, s, c, dport, sp, P | A, ss + sent, cs, b"\x00" * n)
                sent += n
                k += 1
                if k % 2 == 0 or sent >= total:  # delayed ACK every second segment
                    if sender == 0:
                        self.tcp(t + gap / 2, s, c, dport, sp, A, ss, cs + sent)
                    else:
                        self.tcp(t + gap / 2, c, s, sp, dport, A, cs, ss + sent)
            if sender == 0:
                cs += sent
            else:
                ss += sent
            t += rtt
        self.tcp(t, c, s, sp, dport, F | A, cs, ss)
        self.tcp(t + rtt, s, c, dport, sp, F | A, ss, cs + 1)
        self.tcp(t + rtt * 1.1, c, s, sp, dport, A, cs + 1, ss + 1)
        return t + rtt * 1.1

    def attempt(self, t: float, c: str, s: str, dport: int, answer: str) -> None:
        """A connection attempt: 'none' (S0), 'rst' (REJ) or 'open' (SYN-ACK, then the client resets)."""
        S, R, A = dpkt.tcp.TH_SYN, dpkt.tcp.TH_RST, dpkt.tcp.TH_ACK
        sp = self.sport(c)
        cs = self.rng.randrange(1 << 31)
        self.tcp(t, c, s, sp, dport, S, cs, 0)
        if answer == "rst":
            self.tcp(t + 0.001, s, c, dport, sp, R | A, 0, cs + 1)
        elif answer == "open":
            ss = self.rng.randrange(1 << 31)
            self.tcp(t + 0.001, s, c, dport, sp, S | A, ss, cs + 1)
            self.tcp(t + 0.002, c, s, sp, dport, R, cs + 1, 0)

    def dns_query(self, t: float, c: str, name: str, qtype: int = dpkt.dns.DNS_A) -> None:
        sp = self.sport(c)
        tid = self.rng.randrange(65536)
        q = dpkt.dns.DNS(id=tid, op=dpkt.dns.DNS_RD, qd=[dpkt.dns.DNS.Q(name=name, type=qtype, cls=1)])
        self.udp(t, c, RESOLVER, sp, 53, bytes(q))
        r = dpkt.dns.DNS(id=tid, op=dpkt.dns.DNS_RD | dpkt.dns.DNS_RA | 0x8000, qd=q.qd)
        if qtype == dpkt.dns.DNS_TXT:
            txt = base64.b32encode(self.rng.randbytes(20)).decode().rstrip("=").lower()
            rr = dpkt.dns.DNS.RR(name=name, type=qtype, cls=1, ttl=0)
            rr.text = [txt.encode()]
            rr.rdata = bytes([len(txt)]) + txt.encode()
            answers = [f"TXT {len(txt)} {txt}"]
        else:
            addr = f"198.51.100.{1 + hash(name) % 120}"
            rr = dpkt.dns.DNS.RR(name=name, type=qtype, cls=1, ttl=300, rdata=_ip(addr))
            answers = [addr]
        r.an = [rr]
        rtt = 0.002 + self.rng.random() * 0.01
        self.udp(t + rtt, RESOLVER, c, 53, sp, bytes(r))
        self.dns.append(DnsQuery(t, c, sp, RESOLVER, name, qtype, tid, answers, rtt))

    # --- the background -------------------------------------------------------------------------------
    def background(self) -> None:
        rng = self.rng
        servers = [f"198.51.100.{i}" for i in range(10, 50)]
        weights = [1 / (k + 1) for k in range(len(servers))]
        for h in HOSTS:
            t = T0 + rng.random() * 60
            while t < T0 + SPAN:  # DNS, about one query a minute
                sub, dom = rng.choice(SUBS), rng.choice(DOMAINS)
                self.dns_query(t, h, f"{sub}.{dom}" if sub else dom)
                t += rng.expovariate(1 / 60)
            t = T0 + rng.random() * 180
            while t < T0 + SPAN:  # HTTPS, one session every 3 minutes or so
                if rng.random() < 0.06:  # a one-off site
                    s = f"203.0.113.{rng.randrange(100, 250)}" if rng.random() < 0.5 else \
                        f"198.18.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                else:
                    s = rng.choices(servers, weights)[0]
                if rng.random() < 0.03:
                    self.attempt(t, h, s, 443, "none")
                else:
                    self.session(t, h, s, 443, rng.randrange(300, 1500), rng.randrange(1500, 30000))
                t += rng.expovariate(1 / 180)
            t = T0 + rng.random() * 64
            poll = 64
            while t < T0 + SPAN:  # NTP, polling interval backing off to 1024 s
                pkt = b"\x23" + b"\x00" * 47
                sp = 123
                self.udp(t, h, NTP, sp, 123, pkt)
                self.udp(t + 0.001, NTP, h, 123, sp, b"\x24" + b"\x00" * 47)
                t += poll * (0.9 + rng.random() * 0.2)
                poll = min(1024, poll * 2)
            t = T0 + rng.random() * 600
            while t < T0 + SPAN:  # SMB to the file server, now and then
                self.session(t, h, FILESERVER, 445, rng.randrange(500, 5000), rng.randrange(2000, 60000), rtt=0.001)
                t += rng.expovariate(1 / 900)
        for i in range(30):  # a CDN with many short generated host names
            self.dns_query(T0 + rng.random() * SPAN, rng.choice(HOSTS), f"e{rng.randrange(1000, 9999)}.a.akamaiedge.net")

    # --- the planted behaviours -----------------------------------------------------------------------
    def planted(self) -> None:
        rng = self.rng
        t = T0 + 30
        while t < T0 + SPAN - 60:  # the beacon
            self.session(t, *BEACON, 443, rng.randrange(220, 260), rng.randrange(380, 420), rtt=0.08)
            t += 60 + rng.uniform(-6, 6)
        c, s, port = LONG  # the long connection: keepalives every minute
        sp = self.sport(c)
        F, S, A, P = dpkt.tcp.TH_FIN, dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH
        t = T0 + 300
        cs, ss = 1000, 5000
        self.tcp(t, c, s, sp, port, S, cs, 0)
        self.tcp(t + 0.05, s, c, port, sp, S | A, ss, cs + 1)
        self.tcp(t + 0.06, c, s, sp, port, A, cs + 1, ss + 1)
        cs, ss = cs + 1, ss + 1
        end = t + 2 * 3600 + 50 * 60
        while t < end:
            t += 60
            self.tcp(t, c, s, sp, port, P | A, cs, ss, b"\x00" * 36)
            self.tcp(t + 0.05, s, c, port, sp, P | A, ss, cs + 36, b"\x00" * 36)
            self.tcp(t + 0.06, c, s, sp, port, A, cs + 36, ss + 36)
            cs, ss = cs + 36, ss + 36
        self.tcp(t + 1, c, s, sp, port, F | A, cs, ss)
        self.tcp(t + 1.05, s, c, port, sp, F | A, ss, cs + 1)
        self.tcp(t + 1.06, c, s, sp, port, A, cs + 1, ss + 1)
        t = T0 + 3600 + 17
        for i in range(1, 255):  # horizontal scan: 445 on a /24 of hosts that are mostly not there
            self.attempt(t + i * 0.2, SCANNER, f"10.1.2.{i}", SCAN_PORT, "rst" if i % 9 == 0 else "none")
        t += 120
        for port in range(1, 1025):  # vertical scan of the file server
            self.attempt(t + port * 0.05, SCANNER, VSCAN_TARGET, port, "open" if port in (22, 139, 445) else "rst")
        t = T0 + 2 * 3600
        for i in range(600):  # the DNS tunnel
            chunk = base64.b32encode(rng.randbytes(40)).decode().rstrip("=").lower()
            name = f"{chunk[:52]}.{chunk[52:]}{i:04d}.t.{TUNNEL_DOMAIN}"
            self.dns_query(t, TUNNEL_HOST, name, dpkt.dns.DNS_TXT)
            t += rng.uniform(0.2, 2.5)
        t = T0 + 5400
        for k in range(3):  # the exfiltration
            t = self.session(t, *EXFIL, 443, 7_000_000, 3000, rtt=0.03, gap=0.004) + rng.uniform(60, 300)
        t = T0 + 1200
        for k in range(30):  # the rare destination
            self.session(t, *RARE, rng.randrange(20000, 40000), rng.randrange(20000, 40000), rtt=0.12)
            t += rng.uniform(120, 400)

    def write(self, path) -> None:
        self.frames.sort(key=lambda f: f[0])
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))  # nanosecond pcap
            for ts, fr in self.frames:
                sec = int(ts)
                f.write(struct.pack("<IIII", sec, int((ts - sec) * 1e9), len(fr), len(fr)))
                f.write(fr)


def make_capture(path, seed: int = 7) -> Capture:
    """Write the capture to path; returns the Capture (its .dns queries are the dns.log lines to be)."""
    cap = Capture(seed)
    cap.background()
    cap.planted()
    cap.write(path)
    return cap


_QTYPE = {1: "A", 16: "TXT", 28: "AAAA"}


def zeek_dns_lines(cap: Capture, flows: list[dict]) -> list[dict]:
    """Zeek's dns.log (JSON) for the capture's queries; uid and community_id are those of the flow
    (ECS documents from pyhunt) that carried the query, as Zeek's dns.log uid is its conn.log uid."""
    by_tuple = {}
    for d in flows:
        if d.get("network", {}).get("transport") == "udp":
            by_tuple[(d["source"]["ip"], d["source"].get("port"), d["destination"]["ip"],
                      d["destination"].get("port"))] = d
    out = []
    for q in cap.dns:
        f = by_tuple.get((q.src, q.sport, q.dst, 53))
        line = {"ts": round(q.ts, 6), "uid": f["event"]["id"] if f else "", "id.orig_h": q.src, "id.orig_p": q.sport,
                "id.resp_h": q.dst, "id.resp_p": 53, "proto": "udp", "trans_id": q.trans_id, "rtt": round(q.rtt, 6),
                "query": q.name, "qclass": 1, "qclass_name": "C_INTERNET", "qtype": q.qtype,
                "qtype_name": _QTYPE.get(q.qtype, str(q.qtype)), "rcode": 0, "rcode_name": "NOERROR", "AA": False,
                "TC": False, "RD": True, "RA": True, "Z": 0, "answers": q.answers,
                "TTLs": [0.0 if q.qtype == 16 else 300.0], "rejected": False}
        if f and f.get("network", {}).get("community_id"):
            line["community_id"] = f["network"]["community_id"]
        out.append(line)
    return out


# --- the planted data set, made once per test session -------------------------------------------------
_CACHE: dict = {}


def planted_data(tmp_dir) -> dict:
    """{'pcap', 'ecs', 'dns', 'cap'}: the capture, its flows as pyhunt ECS NDJSON (replayed by the CLI),
    and Zeek's dns.log (JSON) for its queries. Built once per process under tmp_dir."""
    if "data" in _CACHE:
        return _CACHE["data"]
    import json
    import pathlib
    import subprocess
    import sys
    tmp_dir = pathlib.Path(tmp_dir)
    root = pathlib.Path(__file__).resolve().parent.parent
    pcap, ecs, dns = tmp_dir / "planted.pcap", tmp_dir / "planted-flows.ndjson", tmp_dir / "planted-dns.log"
    cap = make_capture(pcap)
    r = subprocess.run([sys.executable, "-m", "pyhunt", "replay", "-q", "-o", str(ecs), str(pcap)], cwd=root,
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    flows = [json.loads(x) for x in ecs.read_bytes().splitlines()]
    lines = zeek_dns_lines(cap, flows)
    assert all(x["uid"] for x in lines), "a DNS query without its flow"
    dns.write_text("".join(json.dumps(x) + "\n" for x in lines))
    _CACHE["data"] = {"pcap": pcap, "ecs": ecs, "dns": dns, "cap": cap, "flows": len(flows)}
    return _CACHE["data"]


def precision_recall(hunt: str, findings: list[dict], levels=("high",)) -> tuple[float, float, int]:
    """(precision, recall, detections) of a hunt's findings (dicts as `hunt --format json` writes them)
    against the planted behaviours, counting the findings at the given levels as detections."""
    positives = {PLANTED[hunt]} | ALSO_PLANTED.get(hunt, set())
    det = {f["key"] for f in findings if f["level"] in levels}
    true = det & (positives | ACCEPTABLE.get(hunt, set()))
    return (len(true) / len(det) if det else 1.0), len(det & positives) / len(positives), len(det)


if __name__ == "__main__":  # the precision/recall table of docs/hunting.md, offline
    import json
    import subprocess
    import sys
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        data = planted_data(d)
        print("| hunt | planted | precision (high) | recall (high) | precision (medium+) | recall (medium+) |")
        print("|---|---|---|---|---|---|")
        for h in PLANTED:
            r = subprocess.run([sys.executable, "-m", "pyhunt", "hunt", h, "-f", "json", "--limit", "1000", "--input",
                                str(data["ecs"]), str(data["dns"])], capture_output=True, check=True)
            fs = json.loads(r.stdout)["findings"]
            ph, rh, _ = precision_recall(h, fs)
            pm, rm, _ = precision_recall(h, fs, ("high", "medium"))
            print(f"| {h} | {len({PLANTED[h]} | ALSO_PLANTED.get(h, set()))} | {ph:.2f} | {rh:.2f} | {pm:.2f} | {rm:.2f} |")
