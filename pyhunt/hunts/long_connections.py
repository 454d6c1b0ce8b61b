"""Long connections: single connections, or repeated sessions of one service, that stay up for hours.

Per (source, destination, destination port, transport): the longest connection and the summed
duration of all of them. A key is a finding when either reaches the first duration tier; its score
is the longer of the two placed on the tiers (1, 4, 8, 12 h by default): tier i of n scores i/n,
linearly in between (1 h = 0.25, 2.5 h = 0.375, 4 h = 0.5, 12 h and more = 1).
"""
from __future__ import annotations

import heapq

from pyhunt.hunts.common import EVIDENCE_IDS, Finding, HuntParams, level_of

NAME = "long-connections"
DESCRIPTION = "connections or repeated sessions lasting hours"
THRESHOLDS = {
    "tiers": ("1h,4h,8h,12h", "duration tiers; the first is the minimum, the last scores 1"),
    "medium": (0.25, "score of a medium finding (the first tier, 1 h)"),
    "high": (0.5, "score of a high finding (the second tier, 4 h)"),
}


def tiers(p: HuntParams) -> list[float]:
    raw = p.thresholds.get("tiers", THRESHOLDS["tiers"][0])
    out = []
    for part in str(raw).split(","):
        part = part.strip().lower()
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(part[-1:], None)
        out.append(float(part[:-1]) * mult if mult else float(part))
    return sorted(out)


def tier_score(seconds: float, t: list[float]) -> float:
    """Piecewise linear: 0 at 0 s, i/n at tier i of n, 1 from the last tier on."""
    prev_s, prev_v = 0.0, 0.0
    for i, x in enumerate(t, 1):
        v = i / len(t)
        if seconds < x:
            return prev_v + (v - prev_v) * (seconds - prev_s) / (x - prev_s) if x > prev_s else v
        prev_s, prev_v = x, v
    return 1.0


def _make(key: tuple, longest: float, total: float, n: int, first: float, last: float, ids, cids,
          p: HuntParams) -> Finding:
    t = tiers(p)
    score = tier_score(max(longest, total), t)
    tier = max((x for x in t if max(longest, total) >= x), default=t[0])
    s, d, port, proto = key
    kind = "one connection" if longest >= t[0] else f"{n} sessions"
    return Finding(NAME, f"{s} -> {d}:{port}/{proto}", score, level_of(score, p.t("medium", 0.25), p.t("high", 0.5)),
                   f"{kind}: longest {longest / 3600:.2f} h, total {total / 3600:.2f} h (tier {tier / 3600:g} h)",
                   first, last, n, {"longest_s": round(longest, 3), "total_s": round(total, 3), "tier_h": tier / 3600,
                                    "port": port, "transport": proto}, list(ids)[:EVIDENCE_IDS],
                   sorted(set(cids))[:EVIDENCE_IDS])


def offline(src, p: HuntParams) -> list[Finding]:
    agg: dict[tuple, list] = {}
    for c in src.conns(p.since, p.until):
        k = (c.src, c.dst, c.dport, c.proto)
        a = agg.get(k)
        if a is None:
            a = agg[k] = [0.0, 0.0, 0, c.ts, c.ts + c.duration, []]
        a[0] = max(a[0], c.duration)
        a[1] += c.duration
        a[2] += 1
        a[3] = min(a[3], c.ts)
        a[4] = max(a[4], c.ts + c.duration)
        ev = a[5]
        if len(ev) < EVIDENCE_IDS or c.duration > ev[0][0]:  # keep the ids of the longest connections
            heapq.heappush(ev, (c.duration, c.uid, c.cid)) if len(ev) < EVIDENCE_IDS else \
                heapq.heapreplace(ev, (c.duration, c.uid, c.cid))
    t0 = tiers(p)[0]
    out = []
    for k, (longest, total, n, first, last, ev) in agg.items():
        if max(longest, total) >= t0:
            ev = sorted(ev, reverse=True)
            out.append(_make(k, longest, total, n, first, last, [e[1] for e in ev], [e[2] for e in ev], p))
    out.sort(key=lambda f: (-f.score, f.key))
    return out[: p.limit]


def es(src, p: HuntParams) -> list[Finding]:
    """A composite over the 4-tuple with max/sum of event.duration (nanoseconds) and min/max time."""
    tf = src.time_filter(p.since, p.until)
    t0 = tiers(p)[0]
    sources = [("s", {"terms": {"field": "source.ip"}}), ("d", {"terms": {"field": "destination.ip"}}),
               ("p", {"terms": {"field": "destination.port", "missing_bucket": True}}),
               ("t", {"terms": {"field": "network.transport", "missing_bucket": True}})]
    aggs = {"longest": {"max": {"field": "event.duration"}}, "total": {"sum": {"field": "event.duration"}},
            "first": {"min": {"field": "@timestamp"}}, "last": {"max": {"field": "event.end"}}}
    keep = []
    for b in src.composite(src.flow_index, sources, tf, aggs):
        longest = (b["longest"]["value"] or 0) / 1e9
        total = (b["total"]["value"] or 0) / 1e9
        if max(longest, total) >= t0:
            keep.append(b)
    out = []
    for b in heapq.nlargest(p.limit, keep, key=lambda b: max(b["longest"]["value"] or 0, b["total"]["value"] or 0)):
        k = b["key"]
        flt = tf + [{"term": {"source.ip": k["s"]}}, {"term": {"destination.ip": k["d"]}}]
        if k["p"] is not None:
            flt.append({"term": {"destination.port": k["p"]}})
        res = src.search(src.flow_index, {"size": EVIDENCE_IDS, "_source": False, "query": {"bool": {"filter": flt}},
                                          "docvalue_fields": ["event.id", "network.community_id"],
                                          "sort": [{"event.duration": "desc"}]})
        ids = [h["fields"].get("event.id", [""])[0] for h in res["hits"]["hits"]]
        cids = [h["fields"].get("network.community_id", [""])[0] for h in res["hits"]["hits"]]
        last = b["last"]["value"] or b["first"]["value"]
        out.append(_make((k["s"], k["d"], k["p"], k["t"]), (b["longest"]["value"] or 0) / 1e9,
                         (b["total"]["value"] or 0) / 1e9, b["doc_count"], b["first"]["value"] / 1000.0,
                         last / 1000.0, ids, cids, p))
    out.sort(key=lambda f: (-f.score, f.key))
    return out
