"""The report's overview of the data: flow count, time range, top talkers, conn_state breakdown and
flows per hour."""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

__all__ = ["Overview", "overview"]


@dataclass
class Overview:
    flows: int = 0
    first: float | None = None
    last: float | None = None
    top_talkers: list[tuple[str, int]] = field(default_factory=list)  # (source, IP bytes sent + received)
    states: list[tuple[str, int]] = field(default_factory=list)
    per_hour: list[tuple[float, int]] = field(default_factory=list)  # (hour start, flows)
    dns_queries: int = 0


def overview(source, since: float | None = None, until: float | None = None, top: int = 10) -> Overview:
    return _es(source, since, until, top) if source.kind == "elasticsearch" else _offline(source, since, until, top)


def _offline(src, since, until, top) -> Overview:
    o = Overview()
    talkers: dict[str, int] = {}
    states: dict[str, int] = {}
    hours: dict[float, int] = {}
    for c in src.conns(since, until):
        o.flows += 1
        o.first = c.ts if o.first is None or c.ts < o.first else o.first
        o.last = c.ts if o.last is None or c.ts > o.last else o.last
        talkers[c.src] = talkers.get(c.src, 0) + c.orig_bytes + c.resp_bytes
        st = c.state or "(none)"
        states[st] = states.get(st, 0) + 1
        h = c.ts // 3600 * 3600
        hours[h] = hours.get(h, 0) + 1
    o.top_talkers = heapq.nlargest(top, talkers.items(), key=lambda kv: (kv[1], kv[0]))
    o.states = sorted(states.items(), key=lambda kv: (-kv[1], kv[0]))
    o.per_hour = sorted(hours.items())
    o.dns_queries = sum(1 for _ in src.dns(since, until))
    return o


def _es(src, since, until, top) -> Overview:
    tf = src.time_filter(since, until)
    a = src.stats(src.flow_index, tf, {
        "lo": {"min": {"field": "@timestamp"}}, "hi": {"max": {"field": "@timestamp"}},
        "talkers": {"terms": {"field": "source.ip", "size": top, "order": {"b": "desc"}},
                    "aggs": {"b": {"sum": {"field": "network.bytes"}}}},
        "states": {"terms": {"field": "zeek.connection.state", "size": 20, "missing": "(none)"}},
        "hours": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1h"}}})
    o = Overview(flows=a["_total"])
    if a["lo"].get("value") is not None:
        o.first, o.last = a["lo"]["value"] / 1000.0, a["hi"]["value"] / 1000.0
    o.top_talkers = [(b["key"], int(b["b"]["value"])) for b in a["talkers"]["buckets"]]
    o.states = [(b["key"], b["doc_count"]) for b in a["states"]["buckets"]]
    o.per_hour = [(b["key"] / 1000.0, b["doc_count"]) for b in a["hours"]["buckets"]]
    o.dns_queries = src.stats(src.dns_index, tf, {})["_total"]
    return o
