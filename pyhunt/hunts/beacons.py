"""Beacons: host pairs that connect on a schedule, scored as RITA scores beacons.

Per (source, destination) pair with at least ``min_connections`` connections, four equal subscores:

- timing: the mean of 1 - |Bowley skewness| of the inter-arrival times and 1 - their median absolute
  deviation (MAD) over ``jitter`` x their median (a clock-driven implant: symmetric and tight; RITA
  uses MAD / 30 s, a relative MAD suits minute and hour periods alike);
- data size: the same two for the bytes per connection, plus smallness (1 - median bytes / 64 KiB);
- duration: the larger of the pair's span over the observed window and its hourly coverage (share of
  the window's hours with a connection);
- histogram: 1 - the coefficient of variation of the pair's connections per hour (a steady rate).
"""
from __future__ import annotations

import heapq
import math

from pyhunt.hunts.common import EVIDENCE_IDS, Finding, HuntParams, bowley_skew, level_of, mad, median

NAME = "beacons"
DESCRIPTION = "host pairs with periodic connections (RITA-style beacon score)"
THRESHOLDS = {  # name: (default, help)
    "min_connections": (20, "connections a pair needs before it is scored"),
    "max_connections": (20000, "timestamps read per pair (the first ones in time)"),
    "max_pairs": (2000, "candidate pairs scored, the busiest first"),
    "jitter": (0.2, "MAD / median of intervals (and of sizes) at which the MAD subscores reach 0"),
    "outbound_only": (1, "1: only local sources to outside destinations (RITA's default), 0: every pair"),
    "medium": (0.7, "score of a medium finding"),
    "high": (0.8, "score of a high finding"),
}
HOUR = 3600.0


def score_pair(ts: list[float], sizes: list[int], window: tuple[float, float], jitter: float = 0.2) -> dict | None:
    """The subscores and score of one pair from its connection times (sorted) and sizes."""
    uniq = sorted(set(round(t, 3) for t in ts))
    if len(uniq) < 3:
        return None
    iat = sorted(b - a for a, b in zip(uniq, uniq[1:]))
    med_iat = median(iat)
    ts_skew = bowley_skew(iat)
    ts_madm = mad(iat)
    ts_score = ((1 - abs(ts_skew)) + max(0.0, 1 - ts_madm / (jitter * med_iat) if med_iat > 0 else 0.0)) / 2
    sz = sorted(sizes)
    med_sz = median(sz)
    ds_skew = bowley_skew(sz)
    ds_madm = mad(sz)
    ds_score = ((1 - abs(ds_skew)) + max(0.0, 1 - ds_madm / (jitter * med_sz) if med_sz > 0 else 1.0)
                + max(0.0, 1 - med_sz / 65536)) / 3
    w0, w1 = window
    span_w = max(w1 - w0, 1.0)
    first, last = uniq[0], uniq[-1]
    hours_w = max(1, math.ceil(span_w / HOUR))
    active = len({int((t - w0) // HOUR) for t in uniq})
    dur_score = min(1.0, max((last - first) / span_w, active / hours_w))
    # connections per complete hour of the pair's own span (the partial last hour left out)
    nb = max(1, int((last - first) // HOUR))
    counts = [0] * nb
    for t in uniq:
        b = int((t - first) // HOUR)
        if b < nb:
            counts[b] += 1
    mean_c = sum(counts) / len(counts)
    cv = math.sqrt(sum((c - mean_c) ** 2 for c in counts) / len(counts)) / mean_c if mean_c else 1.0
    hist_score = max(0.0, 1 - cv)
    score = (ts_score + ds_score + dur_score + hist_score) / 4
    return {"score": score, "timing": ts_score, "data_size": ds_score, "duration": dur_score,
            "histogram": hist_score, "interval_median_s": med_iat, "interval_mad_s": ts_madm,
            "interval_skew": ts_skew, "bytes_median": med_sz, "bytes_mad": ds_madm, "hourly_counts": counts}


def _finding(src: str, dst: str, ts: list[float], sizes: list[int], ports: set, ids: list, cids: list,
             window: tuple[float, float], p: HuntParams) -> Finding | None:
    s = score_pair(ts, sizes, window, p.t("jitter", 0.2))
    if s is None:
        return None
    score = s.pop("score")
    s["ports"] = sorted(ports)[:10]
    s["_timestamps"] = ts[:5000]
    return Finding(NAME, f"{src} -> {dst}", score, level_of(score, p.t("medium", 0.7), p.t("high", 0.8)),
                   f"{len(ts)} connections every {s['interval_median_s']:.0f} s (median), "
                   f"timing {s['timing']:.2f}, size {s['data_size']:.2f}, duration {s['duration']:.2f}, "
                   f"histogram {s['histogram']:.2f}", ts[0], ts[-1], len(ts), s, ids[:EVIDENCE_IDS],
                   sorted(set(cids))[:EVIDENCE_IDS])


def _rank(findings: list[Finding], p: HuntParams) -> list[Finding]:
    findings.sort(key=lambda f: (-f.score, f.key))
    return findings[: p.limit]


def _local(p: HuntParams):
    from pyhunt.hunts.common import LocalNets
    return (p.local_nets or LocalNets()) if p.t("outbound_only", 1) else None


def offline(src, p: HuntParams) -> list[Finding]:
    counts: dict[tuple[str, str], int] = {}
    lo = hi = None
    local = _local(p)
    for c in src.conns(p.since, p.until):  # pass 1: connections per pair and the window
        lo = c.ts if lo is None or c.ts < lo else lo  # the window is that of all the data
        hi = c.ts if hi is None or c.ts > hi else hi
        if local is not None and (c.src not in local or c.dst in local):
            continue
        k = (c.src, c.dst)
        counts[k] = counts.get(k, 0) + 1
    min_n = int(p.t("min_connections", 20))
    cands = heapq.nlargest(int(p.t("max_pairs", 2000)), ((n, k) for k, n in counts.items() if n >= min_n))
    keep = {k for _, k in cands}
    del counts
    cap = int(p.t("max_connections", 20000))
    rows: dict[tuple[str, str], list] = {k: [[], [], set(), [], []] for k in keep}
    for c in src.conns(p.since, p.until):  # pass 2: times and sizes of the candidates only
        r = rows.get((c.src, c.dst))
        if r is None or len(r[0]) >= cap:
            continue
        r[0].append(c.ts)
        r[1].append(c.orig_bytes + c.resp_bytes)
        r[2].add(c.dport)
        if len(r[3]) < EVIDENCE_IDS:
            r[3].append(c.uid)
            r[4].append(c.cid)
    out = []
    for (s, d), (ts, sizes, ports, ids, cids) in rows.items():
        order = sorted(range(len(ts)), key=ts.__getitem__)
        f = _finding(s, d, [ts[i] for i in order], [sizes[i] for i in order], ports, ids, cids, (lo, hi), p)
        if f is not None:
            out.append(f)
    return _rank(out, p)


def es(src, p: HuntParams) -> list[Finding]:
    """Composite over (source.ip, destination.ip) for the candidates, then each candidate's timestamps
    and sizes with search_after: at most max_pairs x max_connections documents' doc values."""
    tf = src.time_filter(p.since, p.until)
    lo, hi = src.window(src.flow_index, tf)  # the window is that of all the data
    exc: list = []
    if p.t("outbound_only", 1):
        from pyhunt.hunts.rare_destinations import outbound_filters
        inc, exc = outbound_filters(src, p)
        tf = tf + inc
    if lo is None:
        return []
    min_n = int(p.t("min_connections", 20))
    sources = [("s", {"terms": {"field": "source.ip"}}), ("d", {"terms": {"field": "destination.ip"}})]
    cands = heapq.nlargest(int(p.t("max_pairs", 2000)),
                           ((b["doc_count"], b["key"]["s"], b["key"]["d"])
                            for b in src.composite(src.flow_index, sources, tf, None, exc) if b["doc_count"] >= min_n))
    cap = int(p.t("max_connections", 20000))
    out = []
    for _, s, d in cands:
        flt = tf + [{"term": {"source.ip": s}}, {"term": {"destination.ip": d}}]  # outbound by construction
        ts, sizes, ports, ids, cids = [], [], set(), [], []
        for f in src.read_sorted(src.flow_index, flt, ["network.bytes", "destination.port", "event.id",
                                                       "network.community_id"], cap):
            ts.append(float(f["@timestamp"][0]) / 1000.0)
            sizes.append(int(f.get("network.bytes", [0])[0]))
            ports.update(f.get("destination.port", [])[:1])
            if len(ids) < EVIDENCE_IDS:
                ids += f.get("event.id", [])[:1]
                cids += f.get("network.community_id", [])[:1]
        fnd = _finding(s, d, ts, sizes, ports, ids, cids, (lo, hi), p)
        if fnd is not None:
            out.append(fnd)
    return _rank(out, p)
