#!/usr/bin/env python3
"""Write pyhunt/data/kibana-saved-objects.ndjson, the Kibana saved objects that pyhunt ships.

The NDJSON is what you import (Kibana's saved objects import API, or ``pyhunt.kibana``); this script
is its source, because Kibana's format nests JSON documents inside JSON strings, which nobody should
edit by hand. After a change, run ``python3 kibana/make_saved_objects.py``; the tests fail when the
NDJSON and this script disagree, and check that every field used exists in the documents pyhunt
writes (docs/fields.md for flows; docs/sensor-config.md, "Zeek logs in Elasticsearch", for Zeek logs).

Objects: data views for pyhunt's flows (``pyhunt-flow-*``), for all Zeek logs (``zeek-*``) and for
the Zeek logs that the dashboard reads, aggregation-based visualizations (tables and a pie, which
every Kibana 8.x renders), and the "pyhunt threat hunting" dashboard.
"""
from __future__ import annotations

import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parent.parent / "pyhunt" / "data" / "kibana-saved-objects.ndjson"

#: Saved-object format versions these objects are written in: Kibana migrates them on import from
#: here (8.8 and later import them).
CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSION = {"index-pattern": "8.0.0", "visualization": "8.5.0", "dashboard": "8.7.0"}

#: Data views: id -> (title pattern, time field, display name, field formats).
DATA_VIEWS = {
    "pyhunt-flow": ("pyhunt-flow-*", "@timestamp", "pyhunt flows", {
        "event.duration": {"id": "duration", "params": {"inputFormat": "nanoseconds",
                                                        "outputFormat": "humanizePrecise"}},
        "network.bytes": {"id": "bytes"}, "source.bytes": {"id": "bytes"},
        "destination.bytes": {"id": "bytes"}}),
    "pyhunt-zeek": ("zeek-*", "@timestamp", "Zeek logs (all)", {}),
    "pyhunt-zeek-conn": ("zeek-conn-*", "@timestamp", "Zeek conn", {}),
    "pyhunt-zeek-conn-long": ("zeek-conn_long-*", "@timestamp", "Zeek conn_long (long connections)", {
        "event.duration": {"id": "duration", "params": {"inputFormat": "nanoseconds",
                                                        "outputFormat": "humanizePrecise"}},
        "source.bytes": {"id": "bytes"}, "destination.bytes": {"id": "bytes"}}),
    "pyhunt-zeek-beacon": ("zeek-pyhunt_beacon-*", "@timestamp", "Zeek pyhunt_beacon (beacon candidates)", {
        "zeek.pyhunt_beacon.interval_mean": {"id": "duration", "params": {
            "inputFormat": "seconds", "outputFormat": "humanizePrecise"}}}),
    "pyhunt-zeek-notice": ("zeek-notice-*", "@timestamp", "Zeek notice", {}),
    "pyhunt-zeek-dns": ("zeek-dns-*", "@timestamp", "Zeek dns", {}),
}


def metric(agg_id: str, kind: str, field: str | None = None, label: str | None = None) -> dict:
    """A metric aggregation of a legacy visualization (count takes no field)."""
    params: dict = {} if field is None else {"field": field}
    if label:
        params["customLabel"] = label
    return {"id": agg_id, "enabled": True, "type": kind, "params": params, "schema": "metric"}


def terms(agg_id: str, field: str, order_by: str, size: int, order: str = "desc",
          schema: str = "bucket", label: str | None = None) -> dict:
    """A terms bucket aggregation ordered by the metric ``order_by`` (an aggregation id)."""
    params = {"field": field, "orderBy": order_by, "order": order, "size": size,
              "otherBucket": False, "otherBucketLabel": "Other", "missingBucket": False,
              "missingBucketLabel": "Missing"}
    if label:
        params["customLabel"] = label
    return {"id": agg_id, "enabled": True, "type": "terms", "params": params, "schema": schema}


TABLE_PARAMS = {"perPage": 10, "showPartialRows": False, "showMetricsAtAllLevels": False,
                "showToolbar": True, "showTotal": False, "totalFunc": "sum", "percentageCol": ""}

PIE_PARAMS = {"type": "pie", "addTooltip": True, "addLegend": True, "legendDisplay": "show", "legendPosition": "right",
              "isDonut": True, "nestedLegend": False, "distinctColors": True, "truncateLegend": True,
              "maxLegendLines": 1, "palette": {"type": "palette", "name": "default"},
              "labels": {"show": True, "values": True, "last_level": True, "truncate": 100,
                         "position": "default", "valuesFormat": "percent", "percentDecimals": 1}}

#: Visualizations: id -> (title, description, data view id, vis type, params, aggs, KQL query).
VISUALIZATIONS = {
    "pyhunt-top-talkers": (
        "Top talkers (pyhunt flows)",
        "Originators that moved the most bytes, with their peers and flows.",
        "pyhunt-flow", "table", TABLE_PARAMS,
        [metric("1", "sum", "network.bytes", "Bytes"),
         metric("2", "sum", "network.packets", "Packets"),
         metric("3", "count", label="Flows"),
         metric("4", "cardinality", "destination.ip", "Distinct destinations"),
         terms("5", "source.ip", "1", 15, label="Source")],
        ""),
    "pyhunt-conn-states": (
        "Connection states (pyhunt flows)",
        "Zeek conn_state of the flows: many S0/REJ/RSTO are scans or failing services.",
        "pyhunt-flow", "pie", PIE_PARAMS,
        [metric("1", "count"),
         terms("2", "zeek.connection.state", "1", 13, schema="segment", label="conn_state")],
        ""),
    "pyhunt-rare-destinations": (
        "Rare destinations (pyhunt flows)",
        "Outbound destinations contacted by the fewest flows: the long tail where one-off "
        "command-and-control or staging servers hide.",
        "pyhunt-flow", "table", TABLE_PARAMS,
        [metric("1", "count", label="Flows"),
         metric("2", "cardinality", "source.ip", "Distinct sources"),
         metric("3", "sum", "network.bytes", "Bytes"),
         terms("4", "destination.ip", "1", 20, order="asc", label="Destination"),
         terms("5", "destination.port", "1", 3, label="Port")],
        "not network.direction : (internal or inbound)"),
    "pyhunt-longest-flows": (
        "Longest flows (pyhunt flows)",
        "Flows with the longest duration, interim updates included.",
        "pyhunt-flow", "table", TABLE_PARAMS,
        [metric("1", "max", "event.duration", "Duration"),
         metric("2", "sum", "network.bytes", "Bytes"),
         terms("3", "source.ip", "1", 10, label="Source"),
         terms("4", "destination.ip", "1", 3, label="Destination"),
         terms("5", "destination.port", "1", 3, label="Port")],
        "event.duration >= 600000000000"),
    "pyhunt-long-connections": (
        "Long connections (Zeek conn_long)",
        "Connections still up after 10 minutes or more, from pyhunt-long-connections.zeek.",
        "pyhunt-zeek-conn-long", "table", TABLE_PARAMS,
        [metric("1", "max", "event.duration", "Duration"),
         metric("2", "max", "source.bytes", "Bytes sent"),
         metric("3", "max", "destination.bytes", "Bytes received"),
         terms("4", "source.ip", "1", 10, label="Originator"),
         terms("5", "destination.ip", "1", 3, label="Responder"),
         terms("6", "destination.port", "1", 3, label="Port")],
        ""),
    "pyhunt-beacon-candidates": (
        "Beacon candidates (Zeek pyhunt_beacon)",
        "Host, server and port pairs whose connections repeat at a regular interval "
        "(pyhunt-beacons.zeek); the lower the cv, the more regular.",
        "pyhunt-zeek-beacon", "table", TABLE_PARAMS,
        [metric("1", "min", "zeek.pyhunt_beacon.interval_cv", "cv (std/mean)"),
         metric("2", "avg", "zeek.pyhunt_beacon.interval_mean", "Mean interval"),
         metric("3", "max", "zeek.pyhunt_beacon.connections", "Connections"),
         terms("4", "source.ip", "3", 10, label="Host"),
         terms("5", "destination.ip", "3", 3, label="Server"),
         terms("6", "destination.port", "3", 3, label="Port")],
        ""),
    "pyhunt-hunting-notices": (
        "Hunting notices (Zeek notice)",
        "Notices raised by the pyhunt scripts and by Zeek: scans, beacons, long connections, "
        "DNS tunneling.",
        "pyhunt-zeek-notice", "table", TABLE_PARAMS,
        [metric("1", "count", label="Notices"),
         terms("2", "zeek.notice.note", "1", 10, label="Notice"),
         terms("3", "source.ip", "1", 5, label="Source")],
        ""),
    "pyhunt-dns-tunneling": (
        "DNS tunneling suspects (Zeek dns)",
        "Clients whose DNS queries met pyhunt-dns-tunneling.zeek's heuristics (long names, "
        "high-entropy subdomains).",
        "pyhunt-zeek-dns", "table", TABLE_PARAMS,
        [metric("1", "count", label="Queries"),
         metric("2", "max", "zeek.dns.pyhunt_subdomain_entropy", "Max entropy"),
         metric("3", "max", "zeek.dns.pyhunt_query_length", "Longest name"),
         terms("4", "source.ip", "1", 10, label="Client")],
        "zeek.dns.pyhunt_dns_tunnel : true"),
}

#: Dashboard layout: (visualization id, x, y, w, h) on Kibana's 48-column grid.
PANELS = [
    ("pyhunt-top-talkers", 0, 0, 24, 15),
    ("pyhunt-conn-states", 24, 0, 24, 15),
    ("pyhunt-rare-destinations", 0, 15, 24, 15),
    ("pyhunt-beacon-candidates", 24, 15, 24, 15),
    ("pyhunt-long-connections", 0, 30, 24, 15),
    ("pyhunt-longest-flows", 24, 30, 24, 15),
    ("pyhunt-hunting-notices", 0, 45, 24, 15),
    ("pyhunt-dns-tunneling", 24, 45, 24, 15),
]

DASHBOARD_ID = "pyhunt-threat-hunting"


def _search_source(query: str, with_index: bool) -> str:
    src: dict = {"query": {"query": query, "language": "kuery"}, "filter": []}
    if with_index:
        src["indexRefName"] = "kibanaSavedObjectMeta.searchSourceJSON.index"
    return json.dumps(src, sort_keys=True)


def _envelope(kind: str, obj_id: str, attributes: dict, references: list) -> dict:
    return {"type": kind, "id": obj_id, "attributes": attributes, "references": references,
            "coreMigrationVersion": CORE_MIGRATION_VERSION,
            "typeMigrationVersion": TYPE_MIGRATION_VERSION[kind]}


def saved_objects() -> list[dict]:
    """Every saved object, data views first (an import resolves references within the file)."""
    out = []
    for dv_id, (title, time_field, name, formats) in DATA_VIEWS.items():
        out.append(_envelope("index-pattern", dv_id, {
            "title": title, "name": name, "timeFieldName": time_field, "allowNoIndex": True,
            "fieldFormatMap": json.dumps(formats, sort_keys=True), "fields": "[]",
            "fieldAttrs": "{}", "runtimeFieldMap": "{}", "sourceFilters": "[]"}, []))
    for vis_id, (title, desc, dv_id, vis_type, params, aggs, query) in VISUALIZATIONS.items():
        vis_state = {"title": title, "type": vis_type, "aggs": aggs, "params": params}
        out.append(_envelope("visualization", vis_id, {
            "title": title, "description": desc, "uiStateJSON": "{}", "version": 1,
            "visState": json.dumps(vis_state, sort_keys=True),
            "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(query, True)}},
            [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern",
              "id": dv_id}]))
    panels, refs = [], []
    for n, (vis_id, x, y, w, h) in enumerate(PANELS, 1):
        idx = str(n)
        panels.append({"version": CORE_MIGRATION_VERSION, "type": "visualization",
                       "gridData": {"x": x, "y": y, "w": w, "h": h, "i": idx}, "panelIndex": idx,
                       "embeddableConfig": {"enhancements": {}}, "panelRefName": f"panel_{idx}"})
        refs.append({"name": f"{idx}:panel_{idx}", "type": "visualization", "id": vis_id})
    out.append(_envelope("dashboard", DASHBOARD_ID, {
        "title": "pyhunt threat hunting",
        "description": "Top talkers, connection states, rare destinations, beacon candidates, long "
                       "connections, notices and DNS tunneling, from pyhunt's flows and Zeek's logs.",
        "panelsJSON": json.dumps(panels, sort_keys=True),
        "optionsJSON": json.dumps({"useMargins": True, "syncColors": False, "syncCursor": True,
                                   "syncTooltips": False, "hidePanelTitles": False}, sort_keys=True),
        "version": 1, "timeRestore": True, "timeFrom": "now-24h", "timeTo": "now",
        "refreshInterval": {"pause": True, "value": 0},
        "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source("", False)}}, refs))
    return out


def render() -> str:
    """The NDJSON text: one saved object per line, keys sorted, trailing newline."""
    return "".join(json.dumps(o, sort_keys=True, ensure_ascii=False) + "\n" for o in saved_objects())


if __name__ == "__main__":
    text = render()
    if sys.argv[1:] == ["--check"]:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"stale: {OUT} (run: python3 {pathlib.Path(__file__).name})", file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text.splitlines())} objects)")
