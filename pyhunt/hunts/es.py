"""Elasticsearch input: the flow alias and the Zeek dns indices of a namespace, read with aggregations.

Hunts ask for composite aggregations (paged with ``after_key``), small bounded searches for evidence,
and, for beacons only, a bounded ``search_after`` read of the timestamps of candidate pairs. Nothing
here uses scripts: the minimal Elasticsearch distribution has no painless module.
"""
from __future__ import annotations

from typing import Any, Iterator

__all__ = ["ESSource", "PartialResults"]


class PartialResults(RuntimeError):
    """Some shards failed (e.g. a circuit breaker): the hunt stops rather than rank partial data."""


class ESSource:
    kind = "elasticsearch"

    def __init__(self, client, namespace: str = "default", *, page_size: int = 1000):
        self.client = client
        self.namespace = namespace
        self.flow_index = f"pyhunt-flow-{namespace}"
        self.dns_index = f"zeek-dns-{namespace}-*"
        self.page_size = page_size
        self.requests = 0  # requests sent, for the tests' bounds
        self.warnings: list[str] = []  # said once on stderr by the CLI

    def describe(self) -> str:
        return f"{self.flow_index} (and {self.dns_index})"

    @staticmethod
    def time_filter(since: float | None, until: float | None) -> list[dict]:
        rng: dict[str, Any] = {}
        if since is not None:
            rng["gte"] = int(since * 1000)
        if until is not None:
            rng["lt"] = int(until * 1000)
        return [{"range": {"@timestamp": {**rng, "format": "epoch_millis"}}}] if rng else []

    def search(self, index: str, body: dict) -> dict:
        self.requests += 1
        res = self.client.search(index=index, ignore_unavailable=True, allow_no_indices=True, **body).body
        shards = res.get("_shards", {})
        if shards.get("failed"):
            reason = (shards.get("failures") or [{}])[0].get("reason", {})
            raise PartialResults(f"{shards['failed']} of {shards.get('total')} shards of {index} failed: "
                                 f"{reason.get('type', '?')}: {reason.get('reason', '')}"[:400])
        return res

    def composite(self, index: str, sources: list[tuple[str, dict]], filters: list[dict],
                  aggs: dict | None = None, must_not: list[dict] | None = None) -> Iterator[dict]:
        """Every bucket of a composite aggregation, page by page (after_key)."""
        after = None
        comp: dict[str, Any] = {"size": self.page_size, "sources": [{n: s} for n, s in sources]}
        while True:
            if after is not None:
                comp["after"] = after
            body: dict[str, Any] = {"size": 0, "query": {"bool": {"filter": filters, "must_not": must_not or []}},
                                    "aggs": {"c": {"composite": comp, **({"aggs": aggs} if aggs else {})}}}
            res = self.search(index, body)
            agg = res.get("aggregations", {}).get("c")
            if not agg:
                return
            yield from agg["buckets"]
            after = agg.get("after_key")
            if after is None or len(agg["buckets"]) < self.page_size:
                return

    def stats(self, index: str, filters: list[dict], aggs: dict, must_not: list[dict] | None = None) -> dict:
        """One request of plain (non-bucket-paged) aggregations."""
        res = self.search(index, {"size": 0, "track_total_hits": True,
                                  "query": {"bool": {"filter": filters, "must_not": must_not or []}}, "aggs": aggs})
        out = dict(res.get("aggregations", {}))
        out["_total"] = res.get("hits", {}).get("total", {}).get("value", 0)
        return out

    def window(self, index: str, filters: list[dict]) -> tuple[float | None, float | None]:
        a = self.stats(index, filters, {"lo": {"min": {"field": "@timestamp"}}, "hi": {"max": {"field": "@timestamp"}}})
        lo, hi = a["lo"].get("value"), a["hi"].get("value")
        return (None if lo is None else lo / 1000.0, None if hi is None else hi / 1000.0)

    def read_sorted(self, index: str, filters: list[dict], fields: list[str], cap: int,
                    tiebreak: str = "event.id") -> Iterator[dict]:
        """Up to ``cap`` documents' doc values in @timestamp order (search_after, pages of 5000)."""
        after = None
        left = cap
        while left > 0:
            body: dict[str, Any] = {
                "size": min(5000, left), "_source": False, "query": {"bool": {"filter": filters}},
                "docvalue_fields": [{"field": "@timestamp", "format": "epoch_millis"}] + fields,
                "sort": [{"@timestamp": "asc"}, {tiebreak: "asc"}], "track_total_hits": False}
            if after is not None:
                body["search_after"] = after
            hits = self.search(index, body)["hits"]["hits"]
            for h in hits:
                yield h.get("fields", {})
            left -= len(hits)
            if len(hits) < body["size"]:
                return
            after = hits[-1]["sort"]

    def evidence(self, index: str, filters: list[dict], n: int = 5, id_field: str = "event.id") -> tuple[list, list]:
        """Up to n flow ids and Community IDs of the documents matching filters (earliest first)."""
        res = self.search(index, {"size": n, "_source": False, "query": {"bool": {"filter": filters}},
                                  "docvalue_fields": [id_field, "network.community_id"],
                                  "sort": [{"@timestamp": "asc"}]})
        ids, cids = [], []
        for h in res["hits"]["hits"]:
            f = h.get("fields", {})
            ids += f.get(id_field, [])[:1]
            cids += f.get("network.community_id", [])[:1]
        return ids, sorted(set(cids))

    def keyword_field(self, index: str, name: str) -> str | None:
        """name if it is an aggregatable keyword in index, else its .keyword sub-field, else None."""
        self.requests += 1
        caps = self.client.field_caps(index=index, fields=[name, name + ".keyword"], ignore_unavailable=True,
                                      allow_no_indices=True).body.get("fields", {})
        for f in (name, name + ".keyword"):
            for typ, cap in caps.get(f, {}).items():
                if typ == "keyword" and cap.get("aggregatable"):
                    return f
        return None
