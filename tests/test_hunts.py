"""The hunts against a generated capture with planted behaviours (tests/huntgen.py), offline and in a
real Elasticsearch: each planted behaviour is found and ranked first, the background yields nothing
at the high level, and both back ends agree."""
from __future__ import annotations

import json
import math

import pytest

import huntgen
from conftest import run_cli
from es_fixture import es_for  # noqa: F401 - es_node comes from conftest

from pyhunt.hunts.common import bowley_skew, mad, registered_domain, shannon_entropy
from pyhunt.hunts.long_connections import tier_score

HUNT_NAMES = list(huntgen.PLANTED)


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    return huntgen.planted_data(tmp_path_factory.mktemp("hunts"))


def hunt(name: str, *args: str) -> dict:
    r = run_cli("hunt", name, "--format", "json", "--limit", "1000", *args)
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)


def check_planted(name: str, findings: list[dict]) -> dict:
    """The planted behaviour ranks first, with its evidence; no background finding is high."""
    assert findings, f"{name}: no findings"
    top = findings[0]
    assert top["key"] == huntgen.PLANTED[name], [(f["key"], f["score"]) for f in findings[:5]]
    assert top["flow_ids"] and top["community_ids"], top
    assert all(c.startswith("1:") for c in top["community_ids"])
    assert top["count"] > 0 and top["first_seen"] <= top["last_seen"]
    planted = {huntgen.PLANTED[name]} | huntgen.ALSO_PLANTED.get(name, set()) | huntgen.ACCEPTABLE.get(name, set())
    noisy = [(f["key"], f["score"]) for f in findings if f["level"] == "high" and f["key"] not in planted]
    assert not noisy, f"{name}: background findings at the high level: {noisy}"
    assert [f["score"] for f in findings] == sorted((f["score"] for f in findings), reverse=True)
    return top


@pytest.mark.parametrize("name", HUNT_NAMES)
def test_offline_hunt_finds_the_planted_behaviour(data, name):
    out = hunt(name, "--input", str(data["ecs"]), str(data["dns"]))
    top = check_planted(name, out["findings"])
    precision, recall, _ = huntgen.precision_recall(name, out["findings"], ("high", "medium"))
    assert recall == 1.0
    if name in ("long-connections", "exfil", "dns-tunnels", "rare-destinations"):
        assert precision == 1.0, out["findings"][:5]
    uids = {json.loads(x)["event"]["id"] for x in data["ecs"].read_bytes().splitlines()}
    assert set(top["flow_ids"]) <= uids  # the pivots are real flows


def test_planted_details(data):
    b = hunt("beacons", "--input", str(data["ecs"]))["findings"][0]
    assert b["level"] == "high" and 55 <= b["details"]["interval_median_s"] <= 65
    assert b["count"] >= 170 and b["details"]["ports"] == [443]
    lc = hunt("long-connections", "--input", str(data["ecs"]))["findings"]
    assert len(lc) == 1 and 2.8 <= lc[0]["details"]["longest_s"] / 3600 <= 2.9 and lc[0]["level"] == "medium"
    sc = hunt("scans", "--input", str(data["ecs"]))["findings"]
    assert sc[1]["key"] == f"{huntgen.SCANNER} -> *:{huntgen.SCAN_PORT}/tcp" and sc[1]["details"]["targets"] == 255  # + the vertical scan's 445
    assert sc[0]["details"]["targets"] == 1024 and sc[0]["details"]["failed_share"] > 0.99
    d = hunt("dns-tunnels", "--input", str(data["dns"]))["findings"][0]
    assert d["details"]["unique_subdomains"] == 600 and d["details"]["sources"] == [huntgen.TUNNEL_HOST]
    assert d["details"]["mean_entropy"] > 4.0
    x = hunt("exfil", "--input", str(data["ecs"]))["findings"][0]
    assert x["details"]["bytes_out"] > 20_000_000 and x["details"]["out_share"] > 0.95


def test_thresholds_change_the_outcome(data):
    assert hunt("beacons", "--input", str(data["ecs"]), "-t", "min_connections=500")["findings"] == []
    lc = hunt("long-connections", "--input", str(data["ecs"]), "-t", "tiers=30m,1h,2h")["findings"][0]
    assert lc["level"] == "high" and lc["score"] == 1.0
    hi = hunt("beacons", "--input", str(data["ecs"]), "--min-level", "high")["findings"]
    assert [f["key"] for f in hi] == [huntgen.PLANTED["beacons"]]
    later = hunt("scans", "--input", str(data["ecs"]), "--since", str(huntgen.T0 + 2 * 3600))["findings"]
    assert all(not f["key"].startswith(huntgen.SCANNER) for f in later)


@pytest.mark.parametrize("fmt", ["zeek-json", "zeek-tsv"])
def test_zeek_conn_logs_give_the_same_findings(data, tmp_path, fmt):
    conn = tmp_path / f"conn.{fmt}"
    r = run_cli("replay", "-q", "-f", fmt, "-o", str(conn), str(data["pcap"]))
    assert r.returncode == 0, r.stderr.decode()
    for name in ("scans", "exfil", "rare-destinations"):
        a = hunt(name, "--input", str(data["ecs"]))["findings"]
        b = hunt(name, "--input", str(conn))["findings"]
        assert [(f["key"], round(f["score"], 3), f["count"]) for f in a] == \
               [(f["key"], round(f["score"], 3), f["count"]) for f in b]


def test_gzip_input(data, tmp_path):
    import gzip
    gz = tmp_path / "flows.ndjson.gz"
    gz.write_bytes(gzip.compress(data["ecs"].read_bytes(), 1))
    assert hunt("exfil", "--input", str(gz))["findings"] == hunt("exfil", "--input", str(data["ecs"]))["findings"]
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    r = run_cli("hunt", "exfil", "--input", str(cut))
    err = r.stderr.decode()
    assert r.returncode == 1 and err.startswith(f"pyhunt: error: cannot read {cut}") and "Traceback" not in err, err


def test_dns_log_in_tsv(data, tmp_path):
    lines = [json.loads(x) for x in data["dns"].read_text().splitlines()]
    fields = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "query", "qtype_name"]
    tsv = tmp_path / "dns.log"
    tsv.write_text("#separator \\x09\n#path\tdns\n#fields\t" + "\t".join(fields) + "\n"
                   + "".join("\t".join(str(x[f]) for f in fields) + "\n" for x in lines) + "#close\tx\n")
    a = hunt("dns-tunnels", "--input", str(data["dns"]))["findings"]
    b = hunt("dns-tunnels", "--input", str(tsv))["findings"]
    assert [(f["key"], f["score"]) for f in a] == [(f["key"], f["score"]) for f in b]


def test_table_output_and_errors(data, tmp_path):
    r = run_cli("hunt", "exfil", "--input", str(data["ecs"]))
    assert r.returncode == 0 and huntgen.PLANTED["exfil"] in r.stdout.decode()
    for args, msg in ((["hunt", "beacons"], "no data"),
                      (["hunt", "beacons", "--input", str(tmp_path / "nope")], "cannot read"),
                      (["hunt", "beacons", "--input", str(data["ecs"]), "-t", "bogus=1"], "unknown threshold"),
                      (["hunt", "beacons", "--input", str(data["ecs"]), "-t", "min_connections=x"], "must be a number"),
                      (["hunt", "beacons", "--input", str(data["ecs"]), "--since", "yesterday"], "not a time"),
                      (["hunt", "nope", "--input", str(data["ecs"])], "invalid choice"),
                      (["report", "--input", str(data["ecs"]), "-o", str(tmp_path / "no" / "r.html")], "cannot write")):
        r = run_cli(*args)
        err = r.stderr.decode()
        assert r.returncode == 2 and msg in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    junk = tmp_path / "junk.ndjson"
    junk.write_text('{"a": 1}\nnot json\n' + data["ecs"].read_text().splitlines()[0] + "\n")
    r = run_cli("hunt", "scans", "--input", str(junk))
    assert r.returncode == 0 and "2 input lines were not flows" in r.stderr.decode()


def test_statistics():
    assert bowley_skew([1, 2, 3, 4, 5]) == 0.0
    assert bowley_skew([1, 2, 3, 4, 20, 30, 50]) > 0.5  # a long right tail
    assert bowley_skew([60] * 9) == 0.0
    assert mad([1, 2, 3, 4, 100]) == 1.0
    assert shannon_entropy("aaaa") == 0.0 and math.isclose(shannon_entropy("abcd"), 2.0)
    assert registered_domain("a.b.www.bbc.co.uk") == ("bbc.co.uk", "a.b.www")
    assert registered_domain("x.example.com.") == ("example.com", "x")
    assert registered_domain("com") == ("com", "")
    t = [3600.0, 4 * 3600, 8 * 3600, 12 * 3600]
    assert tier_score(3600, t) == 0.25 and tier_score(4 * 3600, t) == 0.5 and tier_score(20 * 3600, t) == 1.0
    assert math.isclose(tier_score(1800, t), 0.125) and math.isclose(tier_score(6 * 3600, t), 0.625)


# --- Elasticsearch ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def es_hunts(es_node, data, tmp_path_factory):
    """The planted flows (replay --es) and the dns.log documents, in namespace 'hunts'."""
    pytest.importorskip("elasticsearch")
    from elasticsearch.helpers import bulk
    e = es_for(es_node, "hunts")
    e.client.indices.delete(index="zeek-dns-hunts-*", ignore_unavailable=True, allow_no_indices=True)
    tmp = tmp_path_factory.mktemp("es-hunts")
    r = run_cli("replay", str(data["pcap"]), "-q", "--es", e.url, "--es-namespace", e.namespace,
                "--es-spool", str(tmp / "spool"), "--es-dead-letter", str(tmp / "dead"))
    assert r.returncode == 0, r.stderr.decode()
    # Zeek dns documents as the sensor's shipper writes them (docs/sensor-config.md), with explicit
    # mappings for the fields the hunt reads
    props = {"@timestamp": {"type": "date"}, "source": {"properties": {"ip": {"type": "ip"}, "port": {"type": "long"}}},
             "destination": {"properties": {"ip": {"type": "ip"}, "port": {"type": "long"}}},
             "zeek": {"properties": {"session_id": {"type": "keyword"}}},
             "network": {"properties": {"community_id": {"type": "keyword"}, "transport": {"type": "keyword"}}},
             "dns": {"properties": {"question": {"properties": {"name": {"type": "keyword"},
                                                                "type": {"type": "keyword"}}}}}}
    from pyhunt.hunts.timeutil import iso
    docs, days = [], set()
    for line in data["dns"].read_text().splitlines():
        z = json.loads(line)
        day = iso(z["ts"])[:10].replace("-", ".")
        days.add(day)
        docs.append({"_index": f"zeek-dns-hunts-{day}", "_op_type": "create", "@timestamp": iso(z["ts"]),
                     "event": {"dataset": "dns"}, "zeek": {"session_id": z["uid"]},
                     "source": {"ip": z["id.orig_h"], "port": z["id.orig_p"]},
                     "destination": {"ip": z["id.resp_h"], "port": z["id.resp_p"]},
                     "network": {"transport": z["proto"], "community_id": z["community_id"]},
                     "dns": {"question": {"name": z["query"], "type": z["qtype_name"]}}})
    for day in days:
        e.client.indices.create(index=f"zeek-dns-hunts-{day}", mappings={"properties": props})
    bulk(e.client, docs, chunk_size=2000)
    e.client.indices.refresh(index="zeek-dns-hunts-*,pyhunt-flow-hunts-*")
    assert e.count() == data["flows"]
    yield e
    e.client.indices.delete(index="zeek-dns-hunts-*,pyhunt-flow-hunts-*", ignore_unavailable=True,
                            allow_no_indices=True)
    e.client.close()


@pytest.mark.parametrize("name", HUNT_NAMES)
def test_es_hunt_finds_the_planted_behaviour_as_offline(es_hunts, data, name):
    out = hunt(name, "--es", es_hunts.url, "--es-namespace", es_hunts.namespace)
    check_planted(name, out["findings"])
    off = hunt(name, "--input", str(data["ecs"]), str(data["dns"]))["findings"]
    got = out["findings"]
    assert [f["key"] for f in got] == [f["key"] for f in off]
    for a, b in zip(got, off):  # timestamps are milliseconds in Elasticsearch
        assert abs(a["score"] - b["score"]) < 0.01 and a["count"] == b["count"], (a, b)
        assert a["level"] == b["level"]


def test_es_work_is_aggregations_not_downloads(es_hunts, data):
    """Composite pages and per-finding lookups: the request count is bounded by pairs and findings, and
    only beacon candidates' timestamps are read document by document."""
    from elasticsearch import Elasticsearch
    from pyhunt.hunts import HuntParams, run
    from pyhunt.hunts.es import ESSource
    client = Elasticsearch(es_hunts.url, request_timeout=60)
    try:
        src = ESSource(client, es_hunts.namespace)
        for name in HUNT_NAMES:
            before = src.requests
            fs = run(name, src, HuntParams(limit=20))
            assert fs and fs[0].key == huntgen.PLANTED[name]
            assert src.requests - before <= 20 + 3 * len(fs) + 50, (name, src.requests - before)
    finally:
        client.close()


def test_es_without_dns_logs_warns(es_hunts):
    r = run_cli("hunt", "dns-tunnels", "--es", es_hunts.url, "--es-namespace", "nodnshere")
    assert r.returncode == 0 and "no findings" in r.stdout.decode()
    assert "dns.question.name" in r.stderr.decode()
    r = run_cli("hunt", "scans", "--es", "http://127.0.0.1:9", "--es-timeout", "2")
    assert r.returncode == 1 and r.stderr.decode().startswith("pyhunt: error: Elasticsearch") \
        and "Traceback" not in r.stderr.decode()


def test_partial_shard_failures_stop_the_hunt():
    """A circuit breaker on one shard gives a 200 with fewer buckets: the hunt must not rank that."""
    from pyhunt.hunts.es import ESSource, PartialResults

    class Client:
        def search(self, **kw):
            class R:
                body = {"_shards": {"total": 2, "failed": 1, "failures": [{"reason": {
                    "type": "circuit_breaking_exception", "reason": "Data too large"}}]},
                    "aggregations": {"c": {"buckets": []}}}
            return R()
    with pytest.raises(PartialResults, match="circuit_breaking_exception"):
        list(ESSource(Client(), "x").composite("i", [("s", {"terms": {"field": "source.ip"}})], []))


def test_es_report(es_hunts, data, tmp_path):
    """The report from Elasticsearch: the same leads as offline, and the overview's numbers."""
    out = tmp_path / "r.html"
    r = run_cli("report", "--es", es_hunts.url, "--es-namespace", es_hunts.namespace, "-o", str(out))
    assert r.returncode == 0, r.stderr.decode()
    page = out.read_text()
    for key in huntgen.PLANTED.values():
        assert key.replace(">", "&gt;") in page, key
    assert f"<b>{data['flows']:,}</b>" in page and f"<b>{len(data['cap'].dns):,}</b>" in page
    assert 'id="top-talkers"' in page and huntgen.EXFIL[0] in page  # the biggest talker
