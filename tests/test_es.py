"""Elasticsearch end to end against a real node: setup/check, round trip, idempotence, bad settings,
rejection (dead letters), outage (spool and drain) and backpressure (real 429s)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_cli
from es_fixture import es, es_for, many_flows, some_flows, start_node, stop_node  # noqa: F401 - fixtures

pytest.importorskip("elasticsearch", reason="the elasticsearch client is not installed (pip install -e '.[test]')")

from pyhunt.schema import ECS_FIELDS, es_type, feature_fields  # noqa: E402
from pyhunt.sinks.templates import flatten  # noqa: E402

SAMPLE = ROOT / "pyhunt" / "data" / "sample.pcap"


def _es_args(e, tmp, *extra: str) -> list[str]:
    return ["--es", e.url, "--es-namespace", e.namespace, "--es-spool", str(tmp / "spool"),
            "--es-dead-letter", str(tmp / "dead.ndjson"), *extra]


def _summary(stderr: bytes) -> dict[str, int]:
    text = stderr.decode()
    m = re.search(r"([\d,]+) documents sent.*\n\s+retried ([\d,]+), dead-lettered ([\d,]+), spooled ([\d,]+), "
                  r"dropped ([\d,]+), left in the spool ([\d,]+)", text)
    assert m, text
    keys = ("sent", "retried", "dead_lettered", "spooled", "dropped", "pending")
    return dict(zip(keys, (int(g.replace(",", "")) for g in m.groups())))


def _pending_docs(spool) -> int:
    return sum(int(p.stem.rsplit("-", 1)[1]) for p in spool.glob("*.bulk"))


def test_setup_and_check(es, tmp):
    r = run_cli("es", "setup", "--es", es.url, "--es-namespace", es.namespace)
    assert r.returncode == 0, r.stderr.decode()
    r = run_cli("es", "check", "--es", es.url, "--es-namespace", es.namespace)
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert "Elasticsearch 8." in out or "Elasticsearch 9." in out, out
    assert "mappings current" in out and "MISSING" not in out and out.rstrip().endswith("ok")
    body = es.client.indices.get_index_template(name=f"pyhunt-flow-{es.namespace}").body["index_templates"][0]
    assert es.alias in body["index_template"]["template"]["aliases"]


def test_round_trip_matches_the_ecs_file(es, tmp):
    f = tmp / "flows.ndjson"
    r = run_cli("replay", str(SAMPLE), "-q", "--observer", "rt", "-o", str(f))
    assert r.returncode == 0
    expected = {d["event"]["id"]: d for d in map(json.loads, f.read_bytes().splitlines())}
    r = run_cli("replay", str(SAMPLE), "--observer", "rt", *_es_args(es, tmp))
    assert r.returncode == 0, r.stderr.decode()
    s = _summary(r.stderr)
    assert s["sent"] == len(expected) and s["dead_lettered"] == s["spooled"] == s["pending"] == 0
    hits = es.docs()
    assert len(hits) == len(expected) == es.count() == es.count(es.alias)
    got = {h["_id"]: h for h in hits}
    assert got.keys() == expected.keys()
    for uid, h in got.items():
        assert h["_source"] == expected[uid]
        day = expected[uid]["@timestamp"][:10].replace("-", ".")
        assert h["_index"] == f"pyhunt-flow-{es.namespace}-{day}"
    # the mapping types are the declared ones
    for index, m in es.client.indices.get_mapping(index=es.alias).body.items():
        have = flatten(m["mappings"]["properties"])
        assert m["mappings"]["dynamic"] in ("false", False)
        for path, typ, _ in ECS_FIELDS:
            assert have[path] == typ, (index, path)
        for fld in feature_fields():
            assert have[fld.ecs] == es_type(fld), (index, fld.ecs)
        assert have["source.ip"] == have["destination.ip"] == have["related.ip"] == "ip"
        assert have["source.bytes"] == have["network.packets"] == "long"
        assert have["@timestamp"] == have["event.start"] == "date"


def test_replaying_twice_leaves_the_same_documents(es, tmp):
    for _ in range(2):
        r = run_cli("replay", "--sample", "-q", *_es_args(es, tmp))
        assert r.returncode == 0, r.stderr.decode()
    n = len(run_cli("replay", "--sample", "-q", "-o", "-").stdout.splitlines())
    assert es.count() == n


@pytest.mark.parametrize("case", ["unreachable", "wrong-scheme", "bad-ca"])
def test_bad_settings_spool_the_flows(es, tmp, case):
    port = es.url.rsplit(":", 1)[1]
    if case == "unreachable":
        url, extra, words = "http://127.0.0.1:1", [], "unreachable"
    elif case == "wrong-scheme":  # https to a plain-http node
        url, extra, words = f"https://127.0.0.1:{port}", [], "TLS"
    else:
        ca = tmp / "ca.pem"
        ca.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        url, extra, words = f"https://127.0.0.1:{port}", ["--es-ca-certs", str(ca)], "cannot use"
    spool = tmp / "spool"
    r = run_cli("replay", "--sample", "--es", url, "--es-namespace", es.namespace, "--es-spool", str(spool),
                "--es-dead-letter", str(tmp / "dead.ndjson"), *extra)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("pyhunt: error:")]
    assert len(errors) == 1 and words in errors[0], err
    n = len(run_cli("replay", "--sample", "-q", "-o", "-").stdout.splitlines())
    assert _pending_docs(spool) == n
    assert _summary(r.stderr)["spooled"] == n
    # not lost: the next run with good settings sends them
    r = run_cli("es", "drain", "--es", es.url, "--es-namespace", es.namespace, "--es-spool", str(spool))
    assert r.returncode == 0, r.stderr.decode()
    assert es.count() == n and _pending_docs(spool) == 0


def test_unusable_url_is_a_usage_error(tmp):
    r = run_cli("replay", "--sample", "--es", "ftp://127.0.0.1:9200", "--es-spool", str(tmp / "s"))
    assert r.returncode == 2
    assert r.stderr.decode().count("\n") == 1 and "http" in r.stderr.decode()


def test_rejected_documents_go_to_the_dead_letter_file(es, tmp):
    # a conflicting mapping first: source.port as an ip address
    es.client.indices.create(index=f"pyhunt-flow-{es.namespace}-2024.01.15",
                             mappings={"properties": {"source": {"properties": {"port": {"type": "ip"}}}}})
    r = run_cli("replay", "--sample", *_es_args(es, tmp))
    err = r.stderr.decode()
    assert r.returncode == 1, err
    docs = [json.loads(x) for x in run_cli("replay", "--sample", "-q", "-o", "-").stdout.splitlines()]
    with_port = {d["event"]["id"] for d in docs if "port" in d["source"]}
    assert 0 < len(with_port) < len(docs)
    dead = [json.loads(x) for x in (tmp / "dead.ndjson").read_bytes().splitlines()]
    assert {d["_id"] for d in dead} == with_port
    assert all(d["status"] == 400 and "source.port" in d["reason"] and d["document"]["event"]["id"] == d["_id"]
               for d in dead), dead[0]
    assert es.count() == len(docs) - len(with_port)
    s = _summary(r.stderr)
    assert s["dead_lettered"] == len(with_port) and s["sent"] == len(docs) - len(with_port)
    assert "rejected" in err and str(tmp / "dead.ndjson") in err


@pytest.mark.slow
def test_outage_spools_and_drains_every_flow_once(es, tmp, many_flows):
    path, n = many_flows
    spool = tmp / "spool"
    p = subprocess.Popen([sys.executable, "-m", "pyhunt", "replay", str(path),
                          *_es_args(es, tmp, "--es-batch-bytes", "1M")],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while es.count() < n // 10:
            assert p.poll() is None, p.communicate()[1].decode()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert p.poll() is None, "the replay ended before the outage: make the capture larger"
        es.node.stop()
        time.sleep(3)  # the replay spools meanwhile (and may finish: its spool is then left for the next run)
        es.node.start()
        out, err = p.communicate(timeout=300)
        # the restarted node recovers its shards before it answers searches (else 503s)
        es.client.cluster.health(index=es.pattern, wait_for_status="yellow", timeout="60s")
    finally:
        if p.poll() is None:
            p.kill()
    s = _summary(err)
    assert s["spooled"] > 0, err.decode()
    if _pending_docs(spool):  # a second run drains what is left
        r = run_cli("es", "drain", "--es", es.url, "--es-namespace", es.namespace, "--es-spool", str(spool))
        assert r.returncode == 0, r.stderr.decode()
    else:
        assert p.returncode == 0, err.decode()
    assert _pending_docs(spool) == 0
    assert es.count() == n
    agg = es.client.search(index=es.pattern, size=0, aggs={"ids": {"cardinality": {"field": "event.id",
                                                                                 "precision_threshold": 40000}}})
    assert abs(agg["aggregations"]["ids"]["value"] - n) <= n * 0.01  # cardinality is approximate


@pytest.fixture(scope="module")
def busy_node():
    """A node whose write queue holds one task: it answers 429 under any load."""
    node = start_node(**{"thread_pool.write.queue_size": 1})
    yield node
    stop_node(node)


@pytest.mark.slow
def test_backpressure_429s_are_retried(busy_node, tmp, some_flows):
    path, n = some_flows
    e = es_for(busy_node, "backpressure")
    try:
        r = run_cli("es", "setup", "--es", e.url, "--es-namespace", e.namespace, "--shards", "4", "--replicas", "0")
        assert r.returncode == 0, r.stderr.decode()
        r = run_cli("replay", str(path), *_es_args(e, tmp, "--es-concurrency", "3", "--es-batch-bytes", "256K",
                                                    "--es-max-retries", "30"))
        assert r.returncode == 0, r.stderr.decode()
        s = _summary(r.stderr)
        assert s["retried"] > 0, r.stderr.decode()
        assert s["sent"] == n and s["spooled"] == s["dead_lettered"] == 0
        assert e.count() == n
    finally:
        e.client.close()
