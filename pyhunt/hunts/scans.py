"""Scans: one source touching many hosts on one port (horizontal) or many ports of one host
(vertical) within a time window, most of the attempts unanswered or refused.

Score = 0.5 x min(1, distinct targets / ``targets_high``) + 0.5 x the share of the attempts that
failed (conn_state S0, REJ, RSTOS0, RSTRH, SH, SHR or OTH).
"""
from __future__ import annotations

from pyhunt.hunts.common import EVIDENCE_IDS, FAILED_STATES, Finding, HuntParams, level_of

NAME = "scans"
DESCRIPTION = "horizontal and vertical scans (distinct hosts/ports per source and window, failed share)"
THRESHOLDS = {
    "window": (3600, "window length in seconds"),
    "min_targets": (20, "distinct hosts (horizontal) or ports (vertical) of a finding"),
    "targets_high": (100, "distinct targets that give the full target subscore"),
    "max_targets": (70000, "distinct targets counted per key (memory bound offline)"),
    "medium": (0.5, "score of a medium finding"),
    "high": (0.8, "score of a high finding"),
}


def _make(kind: str, src: str, other: str, window_start: float, targets: int, n: int, failed: int,
          first: float, last: float, ids, cids, p: HuntParams, sample: list) -> Finding:
    share = failed / n if n else 0.0
    score = 0.5 * min(1.0, targets / p.t("targets_high", 100)) + 0.5 * share
    if kind == "horizontal":
        key, what = f"{src} -> *:{other}", f"{targets} hosts on port {other}"
    else:
        key, what = f"{src} -> {other}:*", f"{targets} ports of {other}"
    return Finding(NAME, key, score, level_of(score, p.t("medium", 0.5), p.t("high", 0.8)),
                   f"{kind} scan: {what}, {share:.0%} of {n} attempts failed", first, last, n,
                   {"kind": kind, "targets": targets, "attempts": n, "failed": failed, "failed_share": round(share, 4),
                    "window_start": window_start, "sample_targets": sample}, list(ids)[:EVIDENCE_IDS],
                   sorted(set(cids))[:EVIDENCE_IDS])


def _best(findings: list[Finding], p: HuntParams) -> list[Finding]:
    """Highest score first; one finding per key (its best window)."""
    findings.sort(key=lambda f: (-f.score, -f.details["targets"], f.key))
    seen, out = set(), []
    for f in findings:
        if f.key not in seen:
            seen.add(f.key)
            out.append(f)
    return out[: p.limit]


def offline(src, p: HuntParams) -> list[Finding]:
    win = float(p.t("window", 3600))
    cap = int(p.t("max_targets", 70000))
    # key -> [targets set, attempts, failed, first, last, ids, cids]
    horiz: dict[tuple, list] = {}
    vert: dict[tuple, list] = {}
    for c in src.conns(p.since, p.until):
        if c.proto not in ("tcp", "udp"):
            continue
        w = c.ts // win * win
        failed = c.state in FAILED_STATES
        for table, key, target in ((horiz, (c.src, c.dport, c.proto, w), c.dst), (vert, (c.src, c.dst, w), c.dport)):
            a = table.get(key)
            if a is None:
                a = table[key] = [set(), 0, 0, c.ts, c.ts, [], []]
            if len(a[0]) < cap:
                a[0].add(target)
            a[1] += 1
            a[2] += failed
            a[3] = min(a[3], c.ts)
            a[4] = max(a[4], c.ts)
            if len(a[5]) < EVIDENCE_IDS:
                a[5].append(c.uid)
                a[6].append(c.cid)
    min_t = int(p.t("min_targets", 20))
    out = []
    for (s, port, proto, w), a in horiz.items():
        if len(a[0]) >= min_t:
            out.append(_make("horizontal", s, f"{port}/{proto}", w, len(a[0]), a[1], a[2], a[3], a[4], a[5], a[6], p,
                             sorted(a[0])[:10]))
    for (s, d, w), a in vert.items():
        if len(a[0]) >= min_t:
            out.append(_make("vertical", s, d, w, len(a[0]), a[1], a[2], a[3], a[4], a[5], a[6], p,
                             sorted(a[0])[:10]))
    return _best(out, p)


def es(src, p: HuntParams) -> list[Finding]:
    """Two composites (source, port, window) and (source, destination, window) with the cardinality of
    the other side, the failed attempts (a filter on zeek.connection.state) and min/max time."""
    tf = src.time_filter(p.since, p.until) + [{"terms": {"network.transport": ["tcp", "udp"]}}]
    win = int(p.t("window", 3600))
    min_t = int(p.t("min_targets", 20))
    wsrc = ("w", {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{win}s"}})
    failed = {"filter": {"terms": {"zeek.connection.state": sorted(FAILED_STATES)}}}
    times = {"first": {"min": {"field": "@timestamp"}}, "last": {"max": {"field": "@timestamp"}}}
    out = []
    for kind, sources, target_field in (
            ("horizontal", [("s", {"terms": {"field": "source.ip"}}), ("p", {"terms": {"field": "destination.port"}}),
                            ("t", {"terms": {"field": "network.transport"}}), wsrc], "destination.ip"),
            ("vertical", [("s", {"terms": {"field": "source.ip"}}), ("d", {"terms": {"field": "destination.ip"}}),
                          wsrc], "destination.port")):
        # HyperLogLog, exact up to about 3000 targets; higher thresholds cost memory per bucket
        aggs = {"n": {"cardinality": {"field": target_field, "precision_threshold": 3000}}, "f": failed, **times}
        for b in src.composite(src.flow_index, sources, tf, aggs):
            if b["n"]["value"] < min_t:
                continue
            k = b["key"]
            other = f"{k['p']}/{k['t']}" if kind == "horizontal" else k["d"]
            flt = src.time_filter(k["w"] / 1000.0, k["w"] / 1000.0 + win) + [{"term": {"source.ip": k["s"]}}]
            flt.append({"term": {"destination.port": k["p"]}} if kind == "horizontal"
                       else {"term": {"destination.ip": k["d"]}})
            out.append([kind, k, other, b, flt])
    findings = []
    for kind, k, other, b, flt in out:
        findings.append(_make(kind, k["s"], other, k["w"] / 1000.0, int(b["n"]["value"]), b["doc_count"],
                              b["f"]["doc_count"], b["first"]["value"] / 1000.0, b["last"]["value"] / 1000.0,
                              [], [], p, []))
        findings[-1].details["_filter"] = flt
    findings = _best(findings, p)
    for f in findings:
        f.flow_ids, f.community_ids = src.evidence(src.flow_index, f.details.pop("_filter"))
    return findings
