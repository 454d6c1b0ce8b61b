"""Kibana saved objects (kibana/) and their loader (pyhunt.kibana).

Checks what Kibana's import would check (well-formed objects, references that resolve), and what it
would not: that every field a visualization uses exists in the documents pyhunt writes, with a type
the aggregation accepts (flows: pyhunt.schema, as docs/fields.md lists them; Zeek logs: the table
"Zeek logs in Elasticsearch" of docs/sensor-config.md). The loader is tested against a local HTTP
server that records the request, as Kibana's import API would receive it.
"""
from __future__ import annotations

import importlib.util
import json
import pathlib
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from pyhunt.kibana import KibanaImportError, default_saved_objects_path, import_saved_objects
from pyhunt.schema import ECS_FIELDS, es_type, feature_fields

ROOT = pathlib.Path(__file__).resolve().parent.parent
NDJSON = ROOT / "pyhunt" / "data" / "kibana-saved-objects.ndjson"
SENSOR_DOC = ROOT / "docs" / "sensor-config.md"

NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}
#: field types each aggregation accepts
AGG_TYPES = {"sum": NUMERIC, "avg": NUMERIC, "min": NUMERIC | {"date"}, "max": NUMERIC | {"date"},
             "cardinality": None, "terms": {"keyword", "ip", "boolean"} | NUMERIC}


def saved_objects() -> list[dict]:
    return [json.loads(line) for line in NDJSON.read_text().splitlines() if line.strip()]


def flow_fields() -> dict[str, str]:
    """Every field of a flow document, with its Elasticsearch type."""
    fields = {path: typ for path, typ, _ in ECS_FIELDS}
    fields.update({f.ecs: es_type(f) for f in feature_fields()})
    return fields


def zeek_fields() -> list[tuple[set[str], str, str]]:
    """docs/sensor-config.md's Zeek table: (logs, document field, Elasticsearch type) rows."""
    rows = re.findall(r"^\| ([a-z_, ]+) \| [^|]+ \| `([^`]+)` \| (\w+) \|$", SENSOR_DOC.read_text(), re.M)
    assert len(rows) > 20, "the 'Zeek logs in Elasticsearch' table was not found"
    return [({s.strip() for s in logs.split(",")}, field, typ) for logs, field, typ in rows]


def fields_of(title: str) -> dict[str, str]:
    """Fields (with types) of the indices a data view's title pattern matches."""
    if title == "pyhunt-flow-*":
        return flow_fields()
    m = re.fullmatch(r"zeek-(?:([a-z_]+)-)?\*", title)
    assert m, f"a data view for unknown indices: {title}"
    log = m.group(1)
    return {field: typ for logs, field, typ in zeek_fields() if log is None or "all" in logs or log in logs}


_KQL_FIELD = re.compile(r"([A-Za-z_@][\w.@]*)\s*(?::|>=|<=|>|<)")


def field_problems(objects: list[dict]) -> list[str]:
    """Fields that visualizations, queries and data views use but documents do not have."""
    views = {o["id"]: o["attributes"] for o in objects if o["type"] == "index-pattern"}
    problems = []
    for dv_id, attrs in views.items():
        known = fields_of(attrs["title"])
        for field in [attrs["timeFieldName"], *json.loads(attrs.get("fieldFormatMap") or "{}")]:
            if field not in known:
                problems.append(f"data view {dv_id}: no field {field}")
    for o in objects:
        if o["type"] != "visualization":
            continue
        (ref,) = [r for r in o["references"] if r["type"] == "index-pattern"]
        known = fields_of(views[ref["id"]]["title"]) if ref["id"] in views else {}
        state = json.loads(o["attributes"]["visState"])
        for agg in state["aggs"]:
            field = agg["params"].get("field")
            if agg["type"] == "count":
                continue
            if field not in known:
                problems.append(f"{o['id']}: {agg['type']} on unknown field {field}")
            elif AGG_TYPES[agg["type"]] is not None and known[field] not in AGG_TYPES[agg["type"]]:
                problems.append(f"{o['id']}: {agg['type']} on {field} of type {known[field]}")
        source = json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        for field in _KQL_FIELD.findall(source["query"]["query"]):
            if field not in known:
                problems.append(f"{o['id']}: query uses unknown field {field}")
    return problems


def test_objects_are_well_formed():
    objects = saved_objects()
    keys = [(o["type"], o["id"]) for o in objects]
    assert len(keys) == len(set(keys)), "duplicate (type, id)"
    for o in objects:
        assert {"type", "id", "attributes", "references"} <= set(o)
        assert o["type"] in {"index-pattern", "visualization", "dashboard"}
        assert o["attributes"]["title"]
        for ref in o["references"]:
            assert {"name", "type", "id"} <= set(ref)
        if o["type"] == "visualization":
            state = json.loads(o["attributes"]["visState"])
            assert state["type"] in {"table", "pie"} and state["aggs"]
            assert state["title"] == o["attributes"]["title"]


def test_ndjson_is_generated_by_make_saved_objects():
    spec = importlib.util.spec_from_file_location("make_saved_objects", ROOT / "kibana" / "make_saved_objects.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == NDJSON.read_text(), "stale: run python3 kibana/make_saved_objects.py"


def test_data_views_for_flows_and_zeek_logs():
    titles = {o["attributes"]["title"]: o["attributes"]["timeFieldName"]
              for o in saved_objects() if o["type"] == "index-pattern"}
    assert titles["pyhunt-flow-*"] == "@timestamp"
    assert titles["zeek-*"] == "@timestamp"


def test_references_resolve():
    objects = saved_objects()
    ids = {(o["type"], o["id"]) for o in objects}
    for o in objects:
        for ref in o["references"]:
            assert (ref["type"], ref["id"]) in ids, f"{o['id']} references missing {ref}"
        if o["type"] == "visualization":
            source = json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
            assert source["indexRefName"] in {r["name"] for r in o["references"]}


def test_dashboard_panels():
    objects = saved_objects()
    (dash,) = [o for o in objects if o["type"] == "dashboard"]
    panels = json.loads(dash["attributes"]["panelsJSON"])
    refs = {r["name"]: r for r in dash["references"]}
    vis_titles = {o["id"]: o["attributes"]["title"] for o in objects if o["type"] == "visualization"}
    shown = []
    for p in panels:
        ref = refs[f"{p['panelIndex']}:{p['panelRefName']}"]
        assert ref["type"] == "visualization" and ref["id"] in vis_titles
        g = p["gridData"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 48
        shown.append(vis_titles[ref["id"]].lower())
    for topic in ("top talkers", "long connections", "beacon candidates", "rare destinations",
                  "connection states"):
        assert any(topic in t for t in shown), f"the dashboard has no '{topic}' panel"
    # panels do not overlap
    cells = set()
    for p in panels:
        g = p["gridData"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area
        cells |= area


def test_every_field_exists_in_the_documents():
    assert field_problems(saved_objects()) == []


def test_unknown_field_is_reported():
    """The field check can fail: a visualization on a field no document has, or a wrong type."""
    objects = saved_objects()
    vis = next(o for o in objects if o["id"] == "pyhunt-top-talkers")
    state = json.loads(vis["attributes"]["visState"])
    state["aggs"][0]["params"]["field"] = "network.bytez"
    state["aggs"][1]["params"]["field"] = "source.ip"          # a sum over an ip
    vis["attributes"]["visState"] = json.dumps(state)
    problems = field_problems(objects)
    assert any("network.bytez" in p for p in problems)
    assert any("sum on source.ip of type ip" in p for p in problems)


# --- the loader -------------------------------------------------------------------------------

class _Kibana(BaseHTTPRequestHandler):
    """Records requests; answers like Kibana's import API (or with the status the test sets)."""
    requests: list = []
    answer: tuple[int, dict] = (200, {"success": True, "successCount": 16, "errors": []})

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        status, answer = type(self).answer
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def kibana():
    _Kibana.requests = []
    _Kibana.answer = (200, {"success": True, "successCount": 16, "errors": []})
    server = HTTPServer(("127.0.0.1", 0), _Kibana)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_loader_posts_the_ndjson(kibana):
    _, url = kibana
    assert default_saved_objects_path() == NDJSON
    answer = import_saved_objects(url, api_key="aWQ6a2V5")
    assert answer["successCount"] == 16
    ((path, headers, body),) = _Kibana.requests
    assert path == "/api/saved_objects/_import?overwrite=true"
    assert headers["kbn-xsrf"] and headers["authorization"] == "ApiKey aWQ6a2V5"
    boundary = re.search(r"boundary=(\S+)", headers["content-type"]).group(1)
    assert headers["content-type"].startswith("multipart/form-data")
    assert NDJSON.read_bytes() in body and body.rstrip().endswith(f"--{boundary}--".encode())
    assert b'name="file"; filename="kibana-saved-objects.ndjson"' in body


def test_loader_space_and_basic_auth(kibana):
    _, url = kibana
    import_saved_objects(url + "/", b'{"type":"x"}\n', username="elastic", password="pw",
                         space="soc", overwrite=False)
    ((path, headers, _),) = _Kibana.requests
    assert path == "/s/soc/api/saved_objects/_import?overwrite=false"
    assert headers["authorization"] == "Basic ZWxhc3RpYzpwdw=="


def test_loader_reports_failed_objects(kibana):
    _, url = kibana
    _Kibana.answer = (200, {"success": False, "successCount": 15, "errors": [
        {"id": "pyhunt-flow", "type": "index-pattern", "error": {"type": "conflict"}}]})
    with pytest.raises(KibanaImportError, match="index-pattern/pyhunt-flow: conflict"):
        import_saved_objects(url)


def test_loader_reports_http_errors(kibana):
    _, url = kibana
    _Kibana.answer = (401, {"statusCode": 401, "message": "Unauthorized"})
    with pytest.raises(KibanaImportError, match="HTTP 401: Unauthorized"):
        import_saved_objects(url)


def test_loader_reports_unreachable_kibana_and_missing_file(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _Kibana)
    port = server.server_address[1]
    server.server_close()  # nothing listens there any more
    with pytest.raises(KibanaImportError, match="cannot reach Kibana"):
        import_saved_objects(f"http://127.0.0.1:{port}", timeout=5)
    with pytest.raises(KibanaImportError, match="cannot read saved objects"):
        import_saved_objects("http://127.0.0.1:9", tmp_path / "missing.ndjson")


def test_cli_imports_the_shipped_objects(kibana):
    from conftest import run_cli
    _, url = kibana
    r = run_cli("kibana", "import", url, "--space", "hunt", "--username", "elastic", "--password", "pw")
    assert r.returncode == 0, r.stderr.decode()
    assert b"imported 16 saved objects" in r.stdout
    ((path, headers, body),) = _Kibana.requests
    assert path == "/s/hunt/api/saved_objects/_import?overwrite=true"
    assert NDJSON.read_bytes() in body and headers["authorization"].startswith("Basic ")


def test_cli_reports_failures_in_one_line(kibana):
    from conftest import run_cli
    _, url = kibana
    _Kibana.answer = (403, {"statusCode": 403, "message": "Forbidden"})
    r = run_cli("kibana", "import", url)
    assert r.returncode == 1 and r.stderr.decode().strip().splitlines() == [
        f"pyhunt: error: Kibana at {url} refused the import: HTTP 403: Forbidden"]
    r = run_cli("kibana", "import", "localhost:5601")
    assert r.returncode == 2 and b"Kibana URL must be" in r.stderr


def test_saved_objects_ship_in_the_package():
    import tomllib
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = cfg["tool"]["setuptools"]["package-data"]["pyhunt"]
    assert any(NDJSON.relative_to(ROOT / "pyhunt").match(p) for p in patterns)
