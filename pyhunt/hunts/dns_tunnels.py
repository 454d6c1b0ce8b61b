"""DNS tunnels: registered domains with many unique subdomains, or long, high-entropy labels, from
Zeek's dns.log (offline) or the zeek-dns-<namespace>-* indices.

Score = 0.5 x min(1, unique subdomains / ``unique_high``) + 0.25 x min(1, mean subdomain length /
``length_high``) + 0.25 x min(1, mean subdomain entropy / ``entropy_high``), over the distinct query
names of the domain.
"""
from __future__ import annotations

from pyhunt.hunts.common import EVIDENCE_IDS, Finding, HuntParams, level_of, registered_domain, shannon_entropy

NAME = "dns-tunnels"
DESCRIPTION = "domains with many unique, long or high-entropy subdomains (Zeek dns logs)"
THRESHOLDS = {
    "min_unique": (10, "unique subdomains of a domain before it is scored"),
    "unique_high": (200, "unique subdomains that give the full uniqueness subscore"),
    "length_high": (40, "mean subdomain length (characters) that gives the full length subscore"),
    "entropy_high": (4.0, "mean subdomain entropy (bits/character) that gives the full entropy subscore"),
    "max_names": (50000, "distinct names tracked per domain (memory bound)"),
    "medium": (0.5, "score of a medium finding"),
    "high": (0.8, "score of a high finding"),
}


class _Domain:
    __slots__ = ("subs", "queries", "len_sum", "ent_sum", "first", "last", "sources", "ids", "cids", "max_len")

    def __init__(self, ts: float):
        self.subs: set[str] = set()
        self.queries = 0
        self.len_sum = 0
        self.ent_sum = 0.0
        self.max_len = 0
        self.first = self.last = ts
        self.sources: dict[str, int] = {}
        self.ids: list[str] = []
        self.cids: list[str] = []

    def add(self, sub: str, n: int, ts_first: float, ts_last: float, src: str | None, cap: int) -> None:
        self.queries += n
        self.first = min(self.first, ts_first)
        self.last = max(self.last, ts_last)
        if src is not None and (src in self.sources or len(self.sources) < 100):
            self.sources[src] = self.sources.get(src, 0) + n
        if sub and sub not in self.subs and len(self.subs) < cap:
            self.subs.add(sub)
            self.len_sum += len(sub)
            self.ent_sum += shannon_entropy(sub.replace(".", ""))
            self.max_len = max(self.max_len, len(sub))


def _score(domains: dict[str, _Domain], p: HuntParams) -> list[Finding]:
    out = []
    min_u = int(p.t("min_unique", 10))
    for name, d in domains.items():
        u = len(d.subs)
        if u < min_u:
            continue
        mean_len = d.len_sum / u
        mean_ent = d.ent_sum / u
        score = (0.5 * min(1.0, u / p.t("unique_high", 200)) + 0.25 * min(1.0, mean_len / p.t("length_high", 40))
                 + 0.25 * min(1.0, mean_ent / p.t("entropy_high", 4.0)))
        top = sorted(d.sources.items(), key=lambda kv: -kv[1])[:5]
        out.append(Finding(NAME, name, score, level_of(score, p.t("medium", 0.5), p.t("high", 0.8)),
                           f"{u} unique subdomains in {d.queries} queries, mean length {mean_len:.0f}, "
                           f"entropy {mean_ent:.2f} bits/char", d.first, d.last, d.queries,
                           {"unique_subdomains": u, "queries": d.queries, "mean_length": round(mean_len, 2),
                            "max_length": d.max_len, "mean_entropy": round(mean_ent, 3),
                            "sources": [s for s, _ in top], "sample": sorted(d.subs)[:5]},
                           d.ids[:EVIDENCE_IDS], sorted(set(d.cids))[:EVIDENCE_IDS]))
    out.sort(key=lambda f: (-f.score, f.key))
    return out[: p.limit]


def offline(src, p: HuntParams) -> list[Finding]:
    cap = int(p.t("max_names", 50000))
    domains: dict[str, _Domain] = {}
    for q in src.dns(p.since, p.until):
        dom, sub = registered_domain(q.query)
        if not dom:
            continue
        d = domains.get(dom)
        if d is None:
            d = domains[dom] = _Domain(q.ts)
        d.add(sub, 1, q.ts, q.ts, q.src, cap)
        if len(d.ids) < EVIDENCE_IDS and q.uid:
            d.ids.append(q.uid)
            if q.cid:
                d.cids.append(q.cid)
    return _score(domains, p)


def es(src, p: HuntParams) -> list[Finding]:
    """A composite over the query names (dns.question.name as a keyword) with their first and last
    time, folded into registered domains here: Elasticsearch cannot cut the registered domain without
    a script. The cost is one bucket per distinct name, not per query. Then per candidate domain a
    wildcard search for evidence and a terms aggregation of the sources."""
    field = src.keyword_field(src.dns_index, "dns.question.name")
    if field is None:
        src.warnings.append(f"no Zeek DNS queries to hunt in: {src.dns_index} has no aggregatable keyword field "
                            "dns.question.name (no dns logs shipped, or a mapping without it)")
        return []
    tf = src.time_filter(p.since, p.until)
    cap = int(p.t("max_names", 50000))
    domains: dict[str, _Domain] = {}
    aggs = {"first": {"min": {"field": "@timestamp"}}, "last": {"max": {"field": "@timestamp"}}}
    for b in src.composite(src.dns_index, [("q", {"terms": {"field": field}})], tf, aggs):
        dom, sub = registered_domain(b["key"]["q"])
        if not dom:
            continue
        d = domains.get(dom)
        if d is None:
            d = domains[dom] = _Domain(b["first"]["value"] / 1000.0)
        d.add(sub, b["doc_count"], b["first"]["value"] / 1000.0, b["last"]["value"] / 1000.0, None, cap)
    findings = _score(domains, p)
    for f in findings:
        flt = tf + [{"bool": {"should": [{"term": {field: f.key}}, {"wildcard": {field: {"value": "*." + f.key}}}]}}]
        res = src.search(src.dns_index, {
            "size": EVIDENCE_IDS, "_source": False, "query": {"bool": {"filter": flt}},
            "docvalue_fields": ["zeek.session_id", "network.community_id"], "sort": [{"@timestamp": "asc"}],
            "aggs": {"src": {"terms": {"field": "source.ip", "size": 5}}}})
        f.flow_ids = [h["fields"]["zeek.session_id"][0] for h in res["hits"]["hits"] if "zeek.session_id" in h.get("fields", {})]
        f.community_ids = sorted({h["fields"]["network.community_id"][0] for h in res["hits"]["hits"]
                                  if "network.community_id" in h.get("fields", {})})
        f.details["sources"] = [b["key"] for b in res.get("aggregations", {}).get("src", {}).get("buckets", [])]
    return findings
