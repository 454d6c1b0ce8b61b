"""The replay command end to end: formats, inputs (file, gzip, stdin, several files), summary, docs."""
from __future__ import annotations

import gzip
import json
import pathlib
import re

import pytest

from conftest import ROOT, flows_of, run_cli

SAMPLE = ROOT / "pyhunt" / "data" / "sample.pcap"


def _lines(out: bytes) -> list[dict]:
    return [json.loads(x) for x in out.splitlines()]


def test_sample_replay_prints_a_readable_summary():
    r = run_cli("replay", "--sample", "-o", "-", "--format", "zeek-json")
    assert r.returncode == 0, r.stderr.decode()
    flows = _lines(r.stdout)
    assert len(flows) > 20
    err = r.stderr.decode()
    for word in ("packets", "flows", "top talkers", "packets/s"):
        assert word in err, err
    states = {f["conn_state"] for f in flows}
    assert {"SF", "S0", "REJ"} <= states, states


def test_formats_agree_on_the_flows():
    zj = _lines(run_cli("replay", "--sample", "-q", "-f", "zeek-json", "-o", "-").stdout)
    ecs = _lines(run_cli("replay", "--sample", "-q", "-f", "ecs", "-o", "-").stdout)
    tsv = run_cli("replay", "--sample", "-q", "-f", "zeek-tsv", "-o", "-").stdout.decode().splitlines()
    rows = [ln.split("\t") for ln in tsv if not ln.startswith("#")]
    assert len(zj) == len(ecs) == len(rows)
    fields = next(ln for ln in tsv if ln.startswith("#fields")).split("\t")[1:]
    assert tsv[-1].startswith("#close")
    for z, e, row in zip(zj, ecs, rows):
        t = dict(zip(fields, row))
        assert z["uid"] == e["event"]["id"] == t["uid"]
        assert z["community_id"] == e["network"]["community_id"] == t["community_id"]
        assert z["orig_ip_bytes"] == e["source"]["bytes"] == int(t["orig_ip_bytes"])
        assert z["resp_pkts"] == e["destination"]["packets"] == int(t["resp_pkts"])
        assert z["conn_state"] == e["zeek"]["connection"]["state"] == t["conn_state"]


def test_gzip_stdin_and_file_give_the_same_output(tmp_path):
    data = SAMPLE.read_bytes()
    gz = tmp_path / "s.pcap.gz"
    gz.write_bytes(gzip.compress(data))
    plain = run_cli("replay", "-q", "-f", "zeek-json", "-o", "-", str(SAMPLE)).stdout
    assert plain
    assert run_cli("replay", "-q", "-f", "zeek-json", "-o", "-", str(gz)).stdout == plain
    assert run_cli("replay", "-q", "-f", "zeek-json", "-o", "-", "-", input=data).stdout == plain
    assert run_cli("replay", "-q", "-f", "zeek-json", "-o", "-", "-", input=gzip.compress(data)).stdout == plain


def test_output_file_and_ecs_shape(tmp_path):
    out = tmp_path / "flows.ndjson"
    r = run_cli("replay", "--sample", "-q", "-o", str(out), "--local-nets", "10.0.0.0/8")
    assert r.returncode == 0, r.stderr.decode()
    docs = _lines(out.read_bytes())
    d = docs[0]
    assert d["event"]["dataset"] == "pyhunt.flow"
    assert d["event"]["kind"] == "event"
    assert "network" in d["event"]["category"]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", d["@timestamp"])
    assert all("direction" in x["network"] for x in docs)
    assert {x["network"]["direction"] for x in docs} <= {"internal", "outbound", "inbound", "external"}
    assert "pyhunt" in d and "flow" in d["pyhunt"]


def test_cid_seed_changes_ids():
    a = _lines(run_cli("replay", "--sample", "-q", "-f", "zeek-json", "-o", "-").stdout)
    b = _lines(run_cli("replay", "--sample", "-q", "-f", "zeek-json", "-o", "-", "--cid-seed", "1").stdout)
    assert [x["community_id"] for x in a] != [x["community_id"] for x in b]
    assert [x["id.orig_h"] for x in a] == [x["id.orig_h"] for x in b]


def test_help_mentions_every_documented_option():
    helptext = "".join(run_cli(*cmd, "--help").stdout.decode() for cmd in
                       (("replay",), ("sensor",), ("es", "setup"), ("es", "check"), ("es", "drain"),
                        ("kibana", "import"), ("zeek-ship",), ("hunt",), ("report",)))
    doc = (ROOT / "docs" / "cli.md").read_text()
    opts = set(re.findall(r"(--[a-z][a-z-]+)", helptext)) - {"--help"}
    missing = [o for o in opts if o not in doc]
    assert not missing, f"options in --help but not in docs/cli.md: {missing}"
    documented = set(re.findall(r"`(--[a-z][a-z-]+)", doc))
    assert not documented - opts - {"--help"}, documented - opts


def test_counters_are_documented():
    from pyhunt import _ext
    doc = (ROOT / "docs" / "counters.md").read_text()
    assert [n for n in _ext.COUNTER_NAMES if f"`{n}`" not in doc] == []


@pytest.mark.parametrize("fmt", ["zeek-json", "ecs"])
def test_no_flow_lost_across_batches(tmp_path, fmt):
    from pyhunt import FlowMeter
    small = FlowMeter(batch_size=3)
    big = FlowMeter()
    a = b"".join(b.to_ndjson(fmt, observer="x") for b in small.read(str(SAMPLE)))
    b = b"".join(b.to_ndjson(fmt, observer="x") for b in big.read(str(SAMPLE)))
    assert a == b and a


def test_every_subpackage_is_packaged():
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "pyhunt").rglob("__init__.py")}
    assert found == listed, found ^ listed


def test_zeek_bare_sets_the_likely_server_ports(tmp_path):
    """A reply seen without its request is flipped only when its source port is a likely server port:
    a default Zeek knows 53/udp and 443/tcp, a bare one only what its loaded scripts register."""
    from scapy.layers.inet import IP, TCP, UDP

    import captures as cap
    t0 = 1705309200_000000000
    frames = [(t0, cap.ethernet(bytes(IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=53, dport=40000) / b"r"))),
              (t0 + 1000, cap.ethernet(bytes(IP(src="10.0.0.2", dst="10.0.0.1") /
                                             TCP(sport=443, dport=50000, flags="A") / b"d")))]
    path = cap.write(tmp_path / "r.pcap", cap.pcap_bytes(frames, nano=True))

    def orig_ports(*extra: str) -> list[int]:
        return sorted(f["id.orig_p"] for f in flows_of(path, *extra))

    assert orig_ports() == [40000, 50000]
    assert orig_ports("--zeek-bare", "none") == [53, 443]
    assert orig_ports("--zeek-bare", "dns") == [443, 40000]
    assert orig_ports("--zeek-bare", "base/protocols/conn,base/protocols/ssl,dns") == [40000, 50000]
    bad = run_cli("replay", "-q", "-o", "-", "--zeek-bare", "dnss", str(path))
    assert bad.returncode == 2 and "unknown Zeek protocol 'dnss'" in bad.stderr.decode()
    both = run_cli("replay", "-q", "-o", "-", "--zeek-bare", "dns", "--tcp-server-ports", "80", str(path))
    assert both.returncode == 2 and "not both" in both.stderr.decode()
