"""Zeek log shipping (pyhunt.zeek): parsing JSON and TSV logs, the ECS mapping per log, the docs table and
the index template against the mapping rows, the tailer (partial lines, rotation, checkpoints, deletion),
and end to end against a real Elasticsearch: rotation in the middle, kill -9 and restart of the shipper
process, Elasticsearch unreachable for a while, and at the end every line stored exactly once."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from conftest import ROOT, run_cli, shared_path
from es_fixture import es  # noqa: F401 - fixture (es_node comes from conftest)

from pyhunt.sinks.templates import flatten, zeek_properties
from pyhunt.zeek.ecs import ROWS, render_table, to_document
from pyhunt.zeek.parse import LineError, TsvHeader, epoch, parse_json
from pyhunt.zeek.shipper import ZeekShipper, index_for, line_id
from pyhunt.zeek.tail import CHECKPOINT_NAME, Tailer

SENSOR_DOC = ROOT / "docs" / "sensor-config.md"
T0 = 1_705_312_800.0  # 2024-01-15T10:00:00Z

# -- making Zeek logs -------------------------------------------------------------------------------

CONN_FIELDS = [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
               ("id.resp_h", "addr"), ("id.resp_p", "port"), ("proto", "enum"), ("service", "string"),
               ("duration", "interval"), ("orig_bytes", "count"), ("resp_bytes", "count"),
               ("conn_state", "string"), ("local_orig", "bool"), ("local_resp", "bool"),
               ("missed_bytes", "count"), ("history", "string"), ("orig_pkts", "count"),
               ("orig_ip_bytes", "count"), ("resp_pkts", "count"), ("resp_ip_bytes", "count"),
               ("tunnel_parents", "set[string]"), ("community_id", "string")]


def conn_rec(i: int, ts: float = T0) -> dict:
    """A conn record as Zeek's JSON writer gives it (ISO timestamps, as zeek_scripts/local.zeek sets)."""
    return {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1e6) % 1_000_000:06d}Z",
            "uid": f"C{i:08d}x", "id.orig_h": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
            "id.orig_p": 1024 + i % 60000, "id.resp_h": "192.0.2.1", "id.resp_p": 443, "proto": "tcp",
            "service": "ssl", "duration": 1.5, "orig_bytes": 100, "resp_bytes": 2000, "conn_state": "SF",
            "local_orig": True, "local_resp": False, "missed_bytes": 0, "history": "ShADadFf", "orig_pkts": 5,
            "orig_ip_bytes": 368, "resp_pkts": 6, "resp_ip_bytes": 2320, "community_id": f"1:{i:020d}"}


def json_line(rec: dict) -> bytes:
    return json.dumps(rec, separators=(",", ":")).encode() + b"\n"


def tsv_header(path: str, fields: list[tuple[str, str]]) -> bytes:
    return ("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
            f"#path\t{path}\n#open\t2024-01-15-10-00-00\n#fields\t" + "\t".join(f for f, _ in fields)
            + "\n#types\t" + "\t".join(t for _, t in fields) + "\n").encode()


def _tsv_value(v, typ: str) -> str:
    if v is None:
        return "-"
    if typ.startswith("set[") or typ.startswith("vector["):
        return ",".join(map(str, v)) if v else "(empty)"
    if typ == "bool":
        return "T" if v else "F"
    if typ == "time":
        return f"{epoch(v):.6f}"
    return str(v).replace("\t", "\\x09")


def tsv_line(rec: dict, fields: list[tuple[str, str]]) -> bytes:
    return ("\t".join(_tsv_value(rec.get(f), t) for f, t in fields) + "\n").encode()


# -- records of each log, as Zeek writes them in JSON -----------------------------------------------

_ID = {"uid": "CzX1", "id.orig_h": "10.0.0.5", "id.orig_p": 49152, "id.resp_h": "203.0.113.7", "id.resp_p": 443}
SAMPLES: dict[str, tuple[dict, dict]] = {  # log -> (record, {document field: expected value})
    "conn": ({**conn_rec(7), "ip_proto": 6, "vlan": 10, "orig_l2_addr": "00:11:22:aa:bb:cc",
              "tunnel_parents": ["CabC"]},
             {"@timestamp": "2024-01-15T10:00:00.000000Z", "event.dataset": "zeek.connection",
              "event.duration": 1_500_000_000, "source.ip": "10.0.0.7", "destination.port": 443,
              "source.bytes": 368, "destination.packets": 6, "network.bytes": 2688, "network.transport": "tcp",
              "network.protocol": "ssl", "network.iana_number": "6", "network.vlan.id": "10",
              "source.mac": "00-11-22-AA-BB-CC", "zeek.connection.state": "SF", "zeek.connection.local_orig": True,
              "zeek.connection.tunnel_parents": ["CabC"], "zeek.session_id": "C00000007x",
              "network.community_id": "1:00000000000000000007", "related.ip": ["10.0.0.7", "192.0.2.1"]}),
    "dns": ({"ts": T0, **_ID, "proto": "udp", "trans_id": 4711, "query": "www.example.com", "qclass_name": "C_INTERNET",
             "qtype_name": "A", "rcode_name": "NOERROR", "answers": ["example.net", "93.184.216.34"],
             "TTLs": [60.0, 60.0], "rejected": False},
            {"dns.question.name": "www.example.com", "dns.id": "4711", "dns.question.type": "A",
             "dns.question.class": "C_INTERNET", "dns.response_code": "NOERROR", "dns.resolved_ip": ["93.184.216.34"],
             "zeek.dns.answers": ["example.net", "93.184.216.34"], "zeek.dns.TTLs": [60.0, 60.0],
             "network.transport": "udp", "@timestamp": "2024-01-15T10:00:00.000000Z"}),
    "http": ({"ts": T0, **_ID, "trans_depth": 1, "method": "GET", "host": "www.example.com", "uri": "/a?b=c",
              "version": "1.1", "user_agent": "curl/8.0", "request_body_len": 0, "response_body_len": 1234,
              "status_code": 200, "status_msg": "OK", "tags": [], "resp_mime_types": ["text/html"]},
             {"http.request.method": "GET", "url.domain": "www.example.com", "url.original": "/a?b=c",
              "user_agent.original": "curl/8.0", "http.response.status_code": 200, "http.response.body.bytes": 1234,
              "http.version": "1.1", "zeek.http.resp_mime_types": ["text/html"], "event.dataset": "zeek.http"}),
    "ssl": ({"ts": T0, **_ID, "version": "TLSv13", "cipher": "TLS_AES_128_GCM_SHA256", "curve": "x25519",
             "server_name": "www.example.com", "resumed": False, "established": True, "next_protocol": "h2",
             "cert_chain_fps": ["aa11", "bb22"], "ja3": "e7d705a3286e19ea42f587b344ee6865"},
            {"tls.version": "1.3", "tls.version_protocol": "tls", "tls.cipher": "TLS_AES_128_GCM_SHA256",
             "tls.client.server_name": "www.example.com", "destination.domain": "www.example.com",
             "tls.established": True, "tls.server.hash.sha256": "aa11", "zeek.ssl.cert_chain_fps": ["aa11", "bb22"],
             "tls.client.ja3": "e7d705a3286e19ea42f587b344ee6865"}),
    "x509": ({"ts": T0, "fingerprint": "ab" * 32, "certificate.version": 3, "certificate.serial": "0A1B",
              "certificate.subject": "CN=www.example.com", "certificate.issuer": "CN=Example CA",
              "certificate.not_valid_before": "2023-01-01T00:00:00.000000Z", "certificate.not_valid_after": 1735689600.0,
              "certificate.key_alg": "rsaEncryption", "certificate.sig_alg": "sha256WithRSAEncryption",
              "certificate.key_type": "rsa", "certificate.key_length": 2048, "certificate.exponent": "65537",
              "san.dns": ["www.example.com", "example.com"], "san.ip": ["192.0.2.9"], "basic_constraints.ca": False,
              "host_cert": True, "client_cert": False},
             {"file.hash.sha256": "ab" * 32, "file.x509.version_number": "3", "file.x509.serial_number": "0A1B",
              "file.x509.subject.distinguished_name": "CN=www.example.com",
              "file.x509.not_before": "2023-01-01T00:00:00.000000Z", "file.x509.not_after": "2025-01-01T00:00:00.000000Z",
              "file.x509.public_key_size": 2048, "file.x509.public_key_exponent": 65537,
              "file.x509.alternative_names": ["www.example.com", "example.com", "192.0.2.9"],
              "zeek.x509.host_cert": True, "zeek.x509.certificate.key_type": "rsa", "event.dataset": "zeek.x509"}),
    "files": ({"ts": T0, **_ID, "fuid": "FhA1", "source": "HTTP", "depth": 0, "analyzers": ["MD5", "SHA1"],
               "mime_type": "application/pdf", "filename": "a.pdf", "duration": 0.1, "is_orig": False,
               "seen_bytes": 5000, "total_bytes": 5000, "missing_bytes": 0, "md5": "d41d8cd98f00b204e9800998ecf8427e",
               "sha1": "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
              {"file.mime_type": "application/pdf", "file.name": "a.pdf", "file.size": 5000,
               "file.hash.md5": "d41d8cd98f00b204e9800998ecf8427e", "zeek.files.fuid": "FhA1",
               "zeek.files.analyzers": ["MD5", "SHA1"], "zeek.files.depth": 0}),
    "notice": ({"ts": T0, "note": "Scan::Port_Scan", "msg": "10.0.0.5 scanned 20 ports", "sub": "local",
                "src": "10.0.0.5", "dst": "203.0.113.7", "p": 22, "actions": ["Notice::ACTION_LOG"],
                "suppress_for": 3600.0},
               {"zeek.notice.note": "Scan::Port_Scan", "source.ip": "10.0.0.5", "destination.ip": "203.0.113.7",
                "destination.port": 22, "zeek.notice.actions": ["Notice::ACTION_LOG"], "event.kind": "alert",
                "zeek.notice.suppress_for": 3600.0}),
    "weird": ({"ts": T0, **_ID, "name": "bad_TCP_checksum", "addl": "", "notice": False, "peer": "zeek",
               "source": "TCP"},
              {"zeek.weird.name": "bad_TCP_checksum", "zeek.weird.notice": False, "zeek.weird.source": "TCP",
               "source.ip": "10.0.0.5"}),
    "dhcp": ({"ts": T0, "uids": ["C1", "C2"], "client_addr": "192.168.1.20", "server_addr": "192.168.1.1",
              "mac": "00:0c:29:aa:bb:cc", "host_name": "laptop", "domain": "lan", "assigned_addr": "192.168.1.20",
              "lease_time": 86400.0, "msg_types": ["DISCOVER", "OFFER", "REQUEST", "ACK"], "duration": 0.4},
             {"source.ip": "192.168.1.20", "destination.ip": "192.168.1.1", "source.mac": "00-0C-29-AA-BB-CC",
              "zeek.dhcp.host_name": "laptop", "zeek.dhcp.assigned_addr": "192.168.1.20",
              "zeek.dhcp.msg_types": ["DISCOVER", "OFFER", "REQUEST", "ACK"], "zeek.dhcp.lease_time": 86400.0}),
    "ssh": ({"ts": T0, **_ID, "version": 2, "auth_success": False, "auth_attempts": 3, "direction": "INBOUND",
             "client": "SSH-2.0-OpenSSH_8.9", "server": "SSH-2.0-OpenSSH_9.6", "cipher_alg": "aes128-ctr",
             "kex_alg": "curve25519-sha256", "host_key": "aa:bb"},
            {"zeek.ssh.version": 2, "event.outcome": "failure", "zeek.ssh.auth_success": False,
             "network.direction": "inbound", "zeek.ssh.client": "SSH-2.0-OpenSSH_8.9", "zeek.ssh.auth_attempts": 3}),
    "smtp": ({"ts": T0, **_ID, "trans_depth": 1, "helo": "mail.example.com", "mailfrom": "a@example.com",
              "rcptto": ["b@example.org"], "from": "A <a@example.com>", "to": ["B <b@example.org>"],
              "subject": "hello", "msg_id": "<1@example.com>", "path": ["203.0.113.7", "10.0.0.5"], "tls": False,
              "fuids": ["Fx1"], "is_webmail": False},
             {"email.sender.address": "a@example.com", "email.to.address": ["b@example.org"],
              "email.subject": "hello", "email.message_id": "<1@example.com>", "zeek.smtp.from": "A <a@example.com>",
              "zeek.smtp.path": ["203.0.113.7", "10.0.0.5"], "zeek.smtp.fuids": ["Fx1"]}),
    "ftp": ({"ts": T0, **_ID, "user": "anonymous", "command": "RETR", "arg": "/pub/a.txt", "reply_code": 226,
             "data_channel.passive": True},
            {"source.ip": "10.0.0.5", "destination.port": 443, "zeek.session_id": "CzX1", "event.dataset": "zeek.ftp",
             "zeek.ftp.command": "RETR", "zeek.ftp.data_channel.passive": True}),
}


def get(doc: dict, path: str):
    """A field of a document by its dotted path (pass-through keys may hold dots themselves)."""
    node = doc
    parts = path.split(".")
    i = 0
    while i < len(parts):
        for j in range(len(parts), i, -1):  # the longest key that exists
            key = ".".join(parts[i:j])
            if isinstance(node, dict) and key in node:
                node, i = node[key], j
                break
        else:
            raise KeyError(path)
    return node


# -- parsing --------------------------------------------------------------------------------------

def test_tsv_headers_types_sets_and_escapes():
    fields = [("ts", "time"), ("uid", "string"), ("id.orig_p", "port"), ("ok", "bool"), ("d", "interval"),
              ("names", "set[string]"), ("nums", "vector[count]"), ("empty", "set[string]"), ("unset", "string"),
              ("s", "string"), ("estr", "string")]
    h = TsvHeader()
    for line in tsv_header("x", fields).splitlines():
        h.header(line)
    rec = h.parse(b"1705312800.250000\tCa\t53\tT\t0.5\ta,b\t1,2,3\t(empty)\t-\ttab\\x09here\\x2c\t(empty)")
    assert rec == {"ts": 1705312800.25, "uid": "Ca", "id.orig_p": 53, "ok": True, "d": 0.5, "names": ["a", "b"],
                   "nums": [1, 2, 3], "empty": [], "s": "tab\there,", "estr": ""}
    with pytest.raises(LineError, match="values for"):
        h.parse(b"1\t2")
    with pytest.raises(LineError, match="field id.orig_p"):
        h.parse(b"1705312800.25\tCa\tnotaport\tT\t0.5\ta\t1\t(empty)\t-\tx\ty")
    with pytest.raises(LineError, match="before any #fields"):
        TsvHeader().parse(b"a\tb")


def test_json_lines_and_times():
    assert parse_json(b'{"ts":1.5,"a":[1]}') == {"ts": 1.5, "a": [1]}
    for bad in (b"{not json", b"[1,2]", b"\xff\xfe", b'{"ts":NaN}', b"[" * 100_000):
        with pytest.raises(LineError):
            parse_json(bad)
    assert epoch("2024-01-15T10:00:00.250000Z") == epoch(1705312800.25) == 1705312800.25
    assert epoch("garbage") is None and epoch(True) is None
    assert epoch(1e20) is None and epoch(-5) is None and epoch(float("nan")) is None
    # values that do not fit their mapping stay out of the ECS fields instead of failing the line
    doc, ts = to_document("conn", {"ts": 1e20, "duration": 1e300, "uid": "C1"}, "s")
    assert ts is None and "@timestamp" not in doc and "duration" not in doc["event"]
    assert doc["zeek"]["connection"]["duration"] == 1e300
    json.dumps(doc, allow_nan=False)


@pytest.mark.parametrize("log", sorted(SAMPLES))
def test_ecs_mapping_of_each_log(log):
    rec, want = SAMPLES[log]
    doc, ts = to_document(log, rec, "sensor-1")
    assert ts == epoch(rec["ts"])
    assert doc["observer"]["hostname"] == "sensor-1" and doc["ecs"]["version"]
    assert doc["@timestamp"].endswith("Z") and epoch(doc["@timestamp"]) == pytest.approx(ts, abs=1e-6)
    for path, value in want.items():
        assert get(doc, path) == value, (log, path)
    json.dumps(doc, allow_nan=False)
    # a field is in exactly one place: its ECS name (rows) or zeek.<namespace>.<field>
    ns = doc["event"]["dataset"].split(".", 1)[1]
    passed = doc.get("zeek", {}).get(ns, {})
    rows = [r for r in ROWS if "all" in r.logs or log in r.logs]
    named = {r.zeek for r in rows}
    own_targets = {r.target for r in rows if r.target == f"zeek.{ns}.{r.zeek}"}
    for k, v in rec.items():
        if k in named:
            assert k not in passed or f"zeek.{ns}.{k}" in own_targets, (log, k)
        else:
            assert passed[k] == v, (log, k)


def test_tsv_and_json_give_the_same_document():
    rec = {**conn_rec(3), "tunnel_parents": []}
    h = TsvHeader()
    for line in tsv_header("conn", CONN_FIELDS).splitlines():
        h.header(line)
    from_tsv = h.parse(tsv_line(rec, CONN_FIELDS).rstrip(b"\n"))
    a, _ = to_document("conn", parse_json(json_line(rec)), "s")
    b, _ = to_document("conn", from_tsv, "s")
    assert a == b


def test_zeek_parity_tsv_conn_logs_parse(tmp):
    """Zeek's own TSV conn.log baselines (../shared/zeek-parity): every data line parses and maps."""
    cases = sorted(shared_path("zeek-parity", "cases").glob("*/conn.log"))
    total = 0
    for path in cases:
        data = path.read_bytes()
        if b"\n#fields\t" not in data:
            continue  # a zeek-cut extract, not a log
        h = TsvHeader()
        for line in data.splitlines():
            if line.startswith(b"#"):
                h.header(line)
                continue
            # btest masks most timestamps (XXXXXXXXXX.XXXXXX); put a real one back
            line = re.sub(rb"^X+\.X+", b"1705312800.000001", line)
            rec = h.parse(line)
            doc, ts = to_document("conn", rec, "s")
            assert ts == float(line.split(b"\t", 1)[0]) and doc["zeek"]["session_id"] == rec["uid"]
            assert doc["source"]["ip"] == rec["id.orig_h"] and doc["network"]["transport"] == rec["proto"]
            total += 1
    assert total > 100


# -- the docs table and the template ---------------------------------------------------------------

def _doc_rows() -> list[tuple[str, str, str, str]]:
    return re.findall(r"^\| ([a-z0-9_, ]+) \| ([^|]+) \| `([^`]+)` \| (\w+) \|$", SENSOR_DOC.read_text(), re.M)


def test_docs_table_is_the_mapping_table():
    rows = _doc_rows()
    documented = "".join(f"| {logs} | {z} | `{f}` | {t} |\n" for logs, z, f, t in rows if z.startswith("`"))
    assert documented == render_table(), "regenerate the table of docs/sensor-config.md from pyhunt.zeek.ecs"


def test_template_maps_every_documented_field_with_its_type():
    mapped = flatten(zeek_properties())
    rows = _doc_rows()
    assert len(rows) > 100
    for logs, _, field, typ in rows:
        assert mapped.get(field) == typ, (field, typ, mapped.get(field))
    for r in ROWS:
        assert mapped[r.target] == r.es_type


def test_zeek_ship_help_matches_docs():
    helptext = run_cli("zeek-ship", "--help").stdout.decode()
    doc = (ROOT / "docs" / "cli.md").read_text()
    section = doc[doc.index("## `python -m pyhunt zeek-ship"):]
    section = section.split("\n## ", 1)[0]
    in_help = set(re.findall(r"(--[a-z][a-z-]+)", helptext)) - {"--help"}
    own = {o for o in in_help if not o.startswith("--es")}
    in_doc = set(re.findall(r"(--[a-z][a-z-]*[a-z])", section.split("|---|", 1)[1]))
    assert own <= in_doc, own - in_doc
    assert in_doc - in_help == set(), in_doc - in_help


# -- the tailer, with a writer that records what it is given ---------------------------------------

@settings(max_examples=80, deadline=None)
@given(lines=st.lists(st.one_of(st.binary(max_size=30), st.binary(min_size=65, max_size=300))
                      .map(lambda b: b.replace(b"\n", b"x")), max_size=25),
       cuts=st.lists(st.integers(0, 9000), max_size=6), terminated=st.booleans(), rotate=st.booleans())
def test_tailer_hands_on_exactly_the_complete_lines(tmp_path_factory, lines, cuts, terminated, rotate):
    """Lines across chunk boundaries (64-byte chunks), longer than a chunk, written in pieces; the last
    line waits for its newline unless the file was rotated (closed)."""
    logs = tmp_path_factory.mktemp("tail")
    tl = Tailer(logs, logs.parent / f"{logs.name}.json", chunk_bytes=64, max_line_bytes=1024)
    data = b"\n".join(lines) + (b"\n" if terminated and lines else b"")
    path = logs / "conn.log"
    path.write_bytes(b"")
    got: list[bytes] = []
    done = 0
    for point in sorted({min(c, len(data)) for c in cuts} | {len(data)}):
        with open(path, "ab") as f:
            f.write(data[done:point])
        done = point
        if point == len(data) and rotate:
            path = path.rename(logs / "conn.2024-01-15-10-15-00.log")
        for t in tl.scan(0.0):
            for _ in range(len(lines) + 2):
                more = tl.read_lines(t, 7)
                if not more:
                    break
                got += [line for _, line in more]
                assert more[-1][0] == t.offset
    complete = lines if (terminated or rotate) else lines[:-1]
    if rotate and not terminated and lines and lines[-1] == b"":
        complete = lines[:-1]  # an empty unterminated last line is no line at all
    assert got == complete



class RecordingWriter:
    """Stands in for the BulkWriter where no cluster is involved: keeps the items, can drop them."""

    class settings:
        namespace = "t"

    def __init__(self):
        self.items: list[bytes] = []
        self.pending: list[bytes] = []
        self.drop_next = False
        self.stats = type("S", (), {"dropped": 0})()

    def write_entries(self, entries):
        self.pending.extend(entries)

    def flush(self):
        if self.drop_next:
            self.stats.dropped += len(self.pending)
            self.drop_next = False
        else:
            self.items.extend(self.pending)
        self.pending = []

    def ids(self) -> list[str]:
        return [json.loads(i.split(b"\n", 1)[0])["create"]["_id"] for i in self.items]


def _shipper(d, w, **kw) -> ZeekShipper:
    warnings: list[str] = []
    s = ZeekShipper(d / "logs", d / "state", w, observer="t", warn=warnings.append, **kw)
    s.warnings = warnings  # type: ignore[attr-defined]
    return s


def test_partial_lines_rotation_new_file_and_deletion(tmp):
    logs = tmp / "logs"
    logs.mkdir()
    w = RecordingWriter()
    s = _shipper(tmp, w)
    live = logs / "conn.log"
    lines = [json_line(conn_rec(i)) for i in range(10)]
    live.write_bytes(b"".join(lines[:3]) + lines[3][:20])  # a partial 4th line
    assert s.poll() == 3
    assert w.ids() == [line_id("conn", ln.rstrip(b"\n")) for ln in lines[:3]]
    cp = json.loads((tmp / "state" / CHECKPOINT_NAME).read_text())
    (entry,) = cp["files"].values()
    assert entry["offset"] == sum(map(len, lines[:3])) and entry["name"] == "conn.log"
    with open(live, "ab") as f:
        f.write(lines[3][20:] + lines[4])
    assert s.poll() == 2
    # rotation: rename, more lines were written before it, then a new file with the old name
    with open(live, "ab") as f:
        f.write(lines[5])
    rotated = logs / "conn.2024-01-15-10-15-00.log"
    os.rename(live, rotated)
    live.write_bytes(lines[6] + lines[7])
    assert s.poll() == 3
    assert not rotated.exists(), "a rotated file shipped entirely is deleted"
    assert live.exists()
    assert sorted(w.ids()) == sorted(line_id("conn", ln.rstrip(b"\n")) for ln in lines[:8])
    assert len(set(w.ids())) == 8
    st = s.stats()
    assert st.lines_shipped == {"conn": 8} and st.files_deleted == 1 and st.files_followed == 1
    assert st.lag_seconds["conn"] == 0
    # a restart resumes at the checkpoint: nothing is sent twice
    with open(live, "ab") as f:
        f.write(lines[8] + lines[9])
    w2 = RecordingWriter()
    s2 = _shipper(tmp, w2)
    assert s2.poll() == 2
    assert w2.ids() == [line_id("conn", ln.rstrip(b"\n")) for ln in lines[8:10]]
    assert s2.warnings == []


def test_a_rotated_file_ending_without_newline_is_shipped_whole(tmp):
    logs = tmp / "logs"
    logs.mkdir()
    w = RecordingWriter()
    s = _shipper(tmp, w)
    a, b = json_line(conn_rec(1)), json_line(conn_rec(2)).rstrip(b"\n")
    (logs / "conn.log").write_bytes(a + b)
    assert s.poll() == 1
    os.rename(logs / "conn.log", logs / "conn.2024-01-15-10-15-00.log")
    assert s.poll() == 1
    assert w.ids()[-1] == line_id("conn", b) and not (logs / "conn.2024-01-15-10-15-00.log").exists()


def test_garbage_is_counted_and_skipped(tmp):
    logs = tmp / "logs"
    logs.mkdir()
    w = RecordingWriter()
    s = _shipper(tmp, w)
    good = [json_line(conn_rec(i)) for i in range(3)]
    (logs / "conn.log").write_bytes(good[0] + b"{garbage\n" + good[1] + b"\n" + b"[1]\n" + good[2])
    assert s.poll() == 6
    assert len(w.items) == 3
    assert s.stats().parse_errors == {"conn": 3}
    assert len(s.warnings) == 1 and "conn.log" in s.warnings[0] and "\n" not in s.warnings[0]


def test_other_logs_pass_through_and_a_record_without_ts_gets_the_read_time(tmp):
    logs = tmp / "logs"
    logs.mkdir()
    w = RecordingWriter()
    s = _shipper(tmp, w, clock=lambda: T0 + 86400 * 3)
    (logs / "My-Stats.log").write_bytes(b'{"peer":"zeek","mem":120,"pkts_proc":5}\n')
    assert s.poll() == 1
    action, doc = (json.loads(x) for x in w.items[0].splitlines())
    assert action["create"]["_index"] == "zeek-my_stats-t-2024.01.18"
    assert doc["@timestamp"] == "2024-01-18T10:00:00.000000Z"
    assert doc["event"]["dataset"] == "zeek.my_stats" and "category" not in doc["event"]
    assert doc["zeek"]["my_stats"] == {"peer": "zeek", "mem": 120, "pkts_proc": 5}


def test_dropped_documents_are_read_again(tmp):
    logs = tmp / "logs"
    logs.mkdir()
    w = RecordingWriter()
    now = [T0]
    s = _shipper(tmp, w, clock=lambda: now[0])
    lines = [json_line(conn_rec(i)) for i in range(4)]
    (logs / "conn.log").write_bytes(b"".join(lines))
    w.drop_next = True
    assert s.poll() == 4
    assert w.items == [] and s.stats().lines_shipped == {}
    assert not (tmp / "state" / CHECKPOINT_NAME).exists()
    assert len(s.warnings) == 1 and "spool is full" in s.warnings[0]
    assert s.poll() == 0, "after a full spool the shipper waits before reading again"
    now[0] += 1
    assert s.poll() == 4
    assert len(w.items) == 4 and s.stats().lines_shipped == {"conn": 4}
    assert w.ids() == [line_id("conn", ln.rstrip(b"\n")) for ln in lines]


def test_tsv_resumes_in_the_middle_with_its_headers(tmp):
    logs = tmp / "logs"
    logs.mkdir()
    w = RecordingWriter()
    recs = [conn_rec(i) for i in range(6)]
    f = logs / "conn.log"
    f.write_bytes(tsv_header("conn", CONN_FIELDS) + b"".join(tsv_line(r, CONN_FIELDS) for r in recs[:3]))
    assert _shipper(tmp, w).poll() == 11  # 8 header lines and 3 records
    with open(f, "ab") as fh:
        fh.write(b"".join(tsv_line(r, CONN_FIELDS) for r in recs[3:]) + b"#close\t2024-01-15-10-15-00\n")
    w2 = RecordingWriter()
    assert _shipper(tmp, w2).poll() == 4
    docs = [json.loads(i.split(b"\n")[1]) for i in w.items + w2.items]
    assert [d["zeek"]["session_id"] for d in docs] == [r["uid"] for r in recs]
    assert docs[4] == to_document("conn", recs[4], "t")[0]


def test_lag_is_the_age_of_the_oldest_unshipped_line(tmp):
    logs = tmp / "logs"
    logs.mkdir()
    now = [T0 + 100]
    w = RecordingWriter()
    s = _shipper(tmp, w, max_lines=2, max_lines_per_file=2, clock=lambda: now[0])
    (logs / "conn.log").write_bytes(b"".join(json_line(conn_rec(i, T0 + i)) for i in range(5)))
    s.poll()  # ships lines 0 and 1; line 2 (ts T0+2) is the oldest left
    assert s.stats().lag_seconds["conn"] == pytest.approx(100.0)
    now[0] += 5
    s.poll()
    s.poll()
    assert s.stats().lag_seconds["conn"] == 0 and s.stats().lines_shipped == {"conn": 5}


def test_reused_inode_is_not_taken_for_the_old_file(tmp):
    logs = tmp / "logs"
    logs.mkdir()
    w = RecordingWriter()
    s = _shipper(tmp, w)
    f = logs / "dns.log"
    f.write_bytes(json_line(SAMPLES["dns"][0]) * 1)
    assert s.poll() == 1
    cp = tmp / "state" / CHECKPOINT_NAME
    data = json.loads(cp.read_text())
    # the same inode now holds another file (truncate + rewrite keeps the inode): start from 0
    with open(f, "r+b") as fh:
        fh.truncate(0)
        fh.write(json_line({**SAMPLES["dns"][0], "query": "other.example"}) * 2)
    cp.write_text(json.dumps(data))
    w2 = RecordingWriter()
    s2 = _shipper(tmp, w2)
    assert s2.poll() == 2 and any("another file" in x for x in s2.warnings)


# -- end to end against Elasticsearch --------------------------------------------------------------

class Proxy:
    """A TCP proxy on loopback in front of the node; ``down()`` refuses and cuts connections."""

    def __init__(self, port: int):
        self.target = port
        self.sock: socket.socket | None = None
        self.port = 0
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.up()

    def up(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self.port = s.getsockname()[1]
        self.sock = s
        t = threading.Thread(target=self._accept, args=(s,), daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self, ls: socket.socket):
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def down(self):
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the proxy's thread (Linux)
            except OSError:
                pass
            self.sock.close()
            self.sock = None
            for t in self.threads:
                t.join(5)
            self.threads = []
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _zeek_index_docs(es, pattern: str) -> list[dict]:
    from elasticsearch.helpers import scan
    es.client.indices.refresh(index=pattern, ignore_unavailable=True, allow_no_indices=True)
    return list(scan(es.client, index=pattern, query={"query": {"match_all": {}}}, size=2000))


@pytest.fixture
def zeek_es(es):
    pattern = f"zeek-*-{es.namespace}-*"
    es.client.indices.delete(index=pattern, ignore_unavailable=True, allow_no_indices=True)
    yield es, pattern
    if es.node.running():
        es.client.indices.delete(index=pattern, ignore_unavailable=True, allow_no_indices=True)


def _writer(url: str, ns: str, state, **kw):
    from pyhunt.sinks.elasticsearch import BulkWriter, ESSettings
    return BulkWriter(ESSettings(url, namespace=ns, spool=str(state / "es-spool"),
                                 dead_letter=str(state / "dead.ndjson"), **kw)).open()


def _tsv_records(data: bytes) -> list[tuple[bytes, dict]]:
    """(line, record) of every data line of a TSV log."""
    h, out = TsvHeader(), []
    for line in data.splitlines():
        if line.startswith(b"#"):
            h.header(line)
        elif line:
            out.append((line, h.parse(line)))
    return out


def _check_index(es, pattern: str, expected: dict[str, tuple[str, dict]]) -> list[dict]:
    """Elasticsearch holds exactly the expected documents: _id -> (index, _source)."""
    hits = _zeek_index_docs(es, pattern)
    got = {h["_id"]: h for h in hits}
    assert len(got) == len(hits) == len(expected)
    assert got.keys() == expected.keys()
    for _id, (index, doc) in expected.items():
        assert got[_id]["_index"] == index and got[_id]["_source"] == doc, _id
    return hits


def test_every_log_type_json_and_tsv_into_elasticsearch(zeek_es, tmp):
    es, pattern = zeek_es
    logs, state = tmp / "logs", tmp / "state"
    logs.mkdir()
    expected: dict[str, tuple[str, dict]] = {}  # _id -> (index, document)

    def expect(log: str, line: bytes, rec: dict):
        doc, ts = to_document(log, rec, "e2e")
        expected[line_id(log, line)] = (index_for(log, es.namespace, ts), doc)

    for log, (rec, _) in SAMPLES.items():
        line = json_line(rec)
        (logs / f"{log}.log").write_bytes(line)
        expect(log, line.rstrip(b"\n"), rec)
    w = _writer(es.url, es.namespace, state, batch_bytes=16 * 1024)
    s = ZeekShipper(logs, state, w, observer="e2e", max_lines=100)
    assert s.poll() == len(SAMPLES)
    # the user switches conn to TSV at a rotation; its lines cross midnight UTC (two daily indices),
    # and the next rotation comes in the middle of shipping
    os.rename(logs / "conn.log", logs / "conn.2024-01-15-10-00-00.log")
    recs = [conn_rec(100 + i, T0 + 50_000 + i * 10) for i in range(400)]
    tsv = [tsv_line(r, CONN_FIELDS) for r in recs]
    for line in tsv:
        ((raw, rec),) = _tsv_records(tsv_header("conn", CONN_FIELDS) + line)
        expect("conn", raw, rec)
    hdr = tsv_header("conn", CONN_FIELDS)
    (logs / "conn.log").write_bytes(hdr + b"".join(tsv[:150]))
    s.poll()
    with open(logs / "conn.log", "ab") as f:
        f.write(b"".join(tsv[150:250]))
    os.rename(logs / "conn.log", logs / "conn.2024-01-16-00-00-00.log")
    (logs / "conn.log").write_bytes(hdr + b"".join(tsv[250:]))
    for _ in range(20):
        if s.poll() == 0:
            break
    zs = s.close()
    stats = w.close()
    assert stats.dead_lettered == stats.pending == stats.dropped == 0, stats
    assert sum(zs.lines_shipped.values()) == len(SAMPLES) + 400 and zs.parse_errors == {}
    assert zs.files_deleted == 2 and not list(logs.glob("conn.*.log"))
    hits = _check_index(es, pattern, expected)
    days = {h["_index"].rsplit("-", 1)[1] for h in hits if h["_index"].startswith("zeek-conn-")}
    assert days == {"2024.01.15", "2024.01.16"}
    # the mapped fields are searchable with their types
    r = es.client.search(index=pattern, query={"term": {"dns.resolved_ip": "93.184.216.34"}})
    assert r["hits"]["total"]["value"] == 1
    r = es.client.search(index=pattern, query={"range": {"file.x509.not_after": {"gte": "2024-12-31"}}})
    assert r["hits"]["total"]["value"] == 1
    r = es.client.search(index=pattern, query={"range": {"event.duration": {"gte": 1_500_000_000}}})
    assert r["hits"]["total"]["value"] == 401
    # shipping the directory again from scratch: every line is a duplicate, nothing is stored twice
    (state / CHECKPOINT_NAME).unlink()
    w = _writer(es.url, es.namespace, state)
    s = ZeekShipper(logs, state, w, observer="e2e")
    s.poll()
    s.close()
    st = w.close()
    assert st.duplicates == len(SAMPLES) - 1 + 150 and st.sent == 0 and st.dead_lettered == 0
    _check_index(es, pattern, expected)


def test_zeek_written_logs_into_elasticsearch(zeek_es, tmp):
    """Zeek's own TSV conn.logs (../shared/zeek-parity), as rotated files: all shipped, then deleted."""
    cases = [p for p in sorted(shared_path("zeek-parity", "cases").glob("*/conn.log"))
             if b"\n#fields\t" in p.read_bytes()]
    es, pattern = zeek_es
    logs, state = tmp / "logs", tmp / "state"
    logs.mkdir()
    expected: dict[str, tuple[str, dict]] = {}
    n = 0
    for k, path in enumerate(cases):
        out = []
        for line in path.read_bytes().splitlines(keepends=True):
            if line.startswith(b"XXXXXXXXXX.XXXXXX"):  # btest's masked timestamps: a real one, each its own
                n += 1
                line = f"{T0 + n:.6f}".encode() + line[len(b"XXXXXXXXXX.XXXXXX"):]
            out.append(line)
        data = b"".join(out)
        (logs / f"conn.2024-01-14-00-{k // 60:02d}-{k % 60:02d}.log").write_bytes(data)
        for raw, rec in _tsv_records(data):
            doc, ts = to_document("conn", rec, "zp")
            expected[line_id("conn", raw)] = (index_for("conn", es.namespace, ts), doc)
    w = _writer(es.url, es.namespace, state)
    s = ZeekShipper(logs, state, w, observer="zp")
    s.poll()
    zs = s.close()
    st = w.close()
    assert st.dead_lettered == st.pending == 0 and zs.parse_errors == {}
    assert zs.files_deleted == len(cases) > 40 and list(logs.iterdir()) == []
    assert len(expected) > 200
    _check_index(es, pattern, expected)


def _shipper_cmd(logs, state, url: str, ns: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pyhunt", "zeek-ship", "--dir", str(logs), "--state-dir", str(state), "--es", url,
            "--es-namespace", ns, "--interval", "0.2", "--observer", "k9", "--es-timeout", "5",
            "--es-max-retries", "2", *extra]


def _run_shipper(*args) -> subprocess.Popen:
    return subprocess.Popen(_shipper_cmd(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _caught_up(logs, state) -> bool:
    """No rotated file left and the checkpoint at the last newline of every live file."""
    try:
        cp = {f["name"]: f["offset"] for f in json.loads((state / CHECKPOINT_NAME).read_text())["files"].values()}
    except (OSError, ValueError):
        return False
    files = list(logs.glob("*.log"))
    if any(f.name.count(".") > 1 for f in files):
        return False
    return all(cp.get(f.name) == f.read_bytes().rfind(b"\n") + 1 for f in files)


def _wait(cond, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_kill9_restart_and_outage_store_every_line_once(zeek_es, tmp):
    es, pattern = zeek_es
    logs, state = tmp / "logs", tmp / "state"
    logs.mkdir()
    port = int(es.url.rsplit(":", 1)[1])
    proxy = Proxy(port)
    written: list[tuple[str, bytes]] = []  # (log, line)
    n = [0]

    def add(log: str, count: int, tsv: bool = False):
        path = logs / f"{log}.log"
        new = not path.exists()
        with open(path, "ab") as f:
            if tsv and new:
                f.write(tsv_header(log, CONN_FIELDS))
            for _ in range(count):
                r = conn_rec(n[0], T0 + n[0] * 0.5)
                n[0] += 1
                line = tsv_line(r, CONN_FIELDS) if tsv else json_line(r)
                f.write(line)
                written.append((log, line.rstrip(b"\n")))

    def rotate(log: str, stamp: str):
        os.rename(logs / f"{log}.log", logs / f"{log}.2024-01-15-{stamp}.log")

    procs: list[subprocess.Popen] = []
    try:
        add("conn", 6000)
        add("conn_tsv", 2000, tsv=True)
        # 1. ship in small requests and kill -9 in the middle
        p = _run_shipper(logs, state, proxy.url, es.namespace, "--es-batch-bytes", "4K")
        procs.append(p)
        _wait(lambda: p.poll() is not None or es.count(pattern) >= 500, "the first documents")
        assert p.poll() is None, p.communicate()[1].decode()
        p.kill()
        p.wait()
        assert 0 < es.count(pattern) < len(written), "the kill did not happen in the middle of shipping"
        # 2. rotation while no shipper runs, and a partial line
        add("conn", 500)
        rotate("conn", "10-15-00")
        add("conn", 1000)
        partial = tsv_line(conn_rec(n[0], T0), CONN_FIELDS)
        n[0] += 1
        with open(logs / "conn_tsv.log", "ab") as f:
            f.write(partial[:30])
        # 3. Elasticsearch unreachable: the restarted shipper spools (and checkpoints), then is killed too
        proxy.down()
        p = _run_shipper(logs, state, proxy.url, es.namespace)
        procs.append(p)
        _wait(lambda: p.poll() is not None or any((state / "es-spool").glob("*.bulk")), "spooling")
        add("conn", 300)
        rotate("conn", "10-30-00")
        add("conn", 200)
        _wait(lambda: p.poll() is not None or _caught_up(logs, state), "the outage's lines checkpointed", 90)
        assert p.poll() is None, p.communicate()[1].decode()
        p.kill()
        p.wait()
        assert any((state / "es-spool").glob("*.bulk")), "nothing was spooled during the outage"
        # 4. back up: the partial line completes; a last run sends the spool and the rest
        proxy.up()
        with open(logs / "conn_tsv.log", "ab") as f:
            f.write(partial[30:])
        written.append(("conn_tsv", partial.rstrip(b"\n")))
        r = subprocess.run(_shipper_cmd(logs, state, proxy.url, es.namespace, "--once"), cwd=ROOT,
                           capture_output=True, timeout=120)
        err = r.stderr.decode()
        assert r.returncode == 0, err
        assert "Traceback" not in err and "lines shipped" in err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
        proxy.down()
    # every line exactly once: by _id and by content
    hits = _zeek_index_docs(es, pattern)
    want_ids = {line_id(log, line) for log, line in written}
    assert len(want_ids) == len(written)
    ids = [h["_id"] for h in hits]
    assert len(ids) == len(set(ids)) == len(written)
    assert set(ids) == want_ids
    uids = [h["_source"]["zeek"]["session_id"] for h in hits]
    assert sorted(uids) == [f"C{i:08d}x" for i in range(n[0])]
    assert not list((state / "es-spool").glob("*.bulk"))
    assert sorted(p.name for p in logs.iterdir()) == ["conn.log", "conn_tsv.log"]
