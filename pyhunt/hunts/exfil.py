"""Exfiltration: local hosts that send much more to an external address than they get back.

Per (local source, external destination): bytes out (source.bytes) and in (destination.bytes).
A pair is scored when it sent at least ``min_bytes``: score = asymmetry x volume, where asymmetry =
max(0, (out / (out + in) - 0.5) / 0.5) and volume = min(1, out / ``bytes_high``).
"""
from __future__ import annotations

import heapq

from pyhunt.hunts.common import EVIDENCE_IDS, Finding, HuntParams, level_of
from pyhunt.hunts.rare_destinations import _nets, outbound_filters

NAME = "exfil"
DESCRIPTION = "outbound byte asymmetry (local host sends far more than it receives)"
THRESHOLDS = {
    "min_bytes": (1_000_000, "bytes out before a pair is scored"),
    "bytes_high": (10_000_000, "bytes out that give the full volume subscore"),
    "medium": (0.5, "score of a medium finding"),
    "high": (0.8, "score of a high finding"),
}


def _make(s: str, d: str, out_b: int, in_b: int, n: int, first: float, last: float, ids, cids,
          p: HuntParams) -> Finding:
    ratio = out_b / (out_b + in_b) if out_b + in_b else 0.0
    asym = max(0.0, (ratio - 0.5) / 0.5)
    score = asym * min(1.0, out_b / p.t("bytes_high", 10_000_000))
    return Finding(NAME, f"{s} -> {d}", score, level_of(score, p.t("medium", 0.5), p.t("high", 0.8)),
                   f"{out_b:,} bytes out, {in_b:,} in ({ratio:.0%} outbound) in {n} connections", first, last, n,
                   {"bytes_out": out_b, "bytes_in": in_b, "out_share": round(ratio, 4), "connections": n},
                   list(ids)[:EVIDENCE_IDS], sorted(set(cids))[:EVIDENCE_IDS])


def offline(src, p: HuntParams) -> list[Finding]:
    local = _nets(p)
    pairs: dict[tuple, list] = {}
    for c in src.conns(p.since, p.until):
        if c.src not in local or c.dst in local:
            continue
        a = pairs.get((c.src, c.dst))
        if a is None:
            a = pairs[(c.src, c.dst)] = [0, 0, 0, c.ts, c.ts, []]
        a[0] += c.orig_bytes
        a[1] += c.resp_bytes
        a[2] += 1
        a[3] = min(a[3], c.ts)
        a[4] = max(a[4], c.ts)
        ev = a[5]  # ids of the largest uploads
        item = (c.orig_bytes, c.uid, c.cid)
        if len(ev) < EVIDENCE_IDS:
            heapq.heappush(ev, item)
        elif item > ev[0]:
            heapq.heapreplace(ev, item)
    min_b = p.t("min_bytes", 1_000_000)
    out = []
    for (s, d), (o, i, n, first, last, ev) in pairs.items():
        if o >= min_b:
            ev = sorted(ev, reverse=True)
            out.append(_make(s, d, o, i, n, first, last, [e[1] for e in ev], [e[2] for e in ev], p))
    out.sort(key=lambda f: (-f.score, f.key))
    return out[: p.limit]


def es(src, p: HuntParams) -> list[Finding]:
    """A composite over (source.ip, destination.ip) of outbound flows with the byte sums."""
    inc, exc = outbound_filters(src, p)
    tf = src.time_filter(p.since, p.until) + inc
    aggs = {"o": {"sum": {"field": "source.bytes"}}, "i": {"sum": {"field": "destination.bytes"}},
            "first": {"min": {"field": "@timestamp"}}, "last": {"max": {"field": "@timestamp"}}}
    min_b = p.t("min_bytes", 1_000_000)
    found = [_make(b["key"]["s"], b["key"]["d"], int(b["o"]["value"]), int(b["i"]["value"]), b["doc_count"],
                   b["first"]["value"] / 1000.0, b["last"]["value"] / 1000.0, [], [], p)
             for b in src.composite(src.flow_index, [("s", {"terms": {"field": "source.ip"}}),
                                                     ("d", {"terms": {"field": "destination.ip"}})], tf, aggs, exc)
             if b["o"]["value"] >= min_b]
    found.sort(key=lambda f: (-f.score, f.key))
    found = found[: p.limit]
    for f in found:
        s, d = f.key.split(" -> ")
        res = src.search(src.flow_index, {"size": EVIDENCE_IDS, "_source": False, "query": {"bool": {"filter": tf + [
            {"term": {"source.ip": s}}, {"term": {"destination.ip": d}}]}}, "docvalue_fields": ["event.id", "network.community_id"],
            "sort": [{"source.bytes": "desc"}]})
        f.flow_ids = [h["fields"]["event.id"][0] for h in res["hits"]["hits"] if "event.id" in h.get("fields", {})]
        f.community_ids = sorted({h["fields"]["network.community_id"][0] for h in res["hits"]["hits"]
                                  if "network.community_id" in h.get("fields", {})})
    return found
