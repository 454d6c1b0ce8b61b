"""Rare destinations: external services (address and port) that only one or two local hosts use, and
use a lot.

Among outbound connections (local source, destination outside --local-nets): a (destination, port)
with at most ``max_sources`` local sources is rare. Score = 0.5 x min(1, log(1 + connections) /
log(1 + ``connections_high``)) + 0.25 x (1 if the port itself is used by at most ``max_sources``
sources, else 0) + 0.25 x min(1, log(1 + bytes) / log(1 + ``bytes_high``)).
"""
from __future__ import annotations

import heapq
import math

from pyhunt.hunts.common import EVIDENCE_IDS, Finding, HuntParams, LocalNets, level_of

NAME = "rare-destinations"
DESCRIPTION = "external services few local hosts talk to, and talk to a lot"
THRESHOLDS = {
    "max_sources": (1, "local sources a destination may have and still be rare"),
    "connections_high": (20, "connections that give the full connection subscore"),
    "bytes_high": (1_000_000, "bytes that give the full volume subscore"),
    "medium": (0.5, "score of a medium finding"),
    "high": (0.8, "score of a high finding"),
}


def _score(n: int, nbytes: int, rare_port: bool, p: HuntParams) -> float:
    return (0.5 * min(1.0, math.log1p(n) / math.log1p(p.t("connections_high", 20))) + 0.25 * rare_port
            + 0.25 * min(1.0, math.log1p(nbytes) / math.log1p(p.t("bytes_high", 1_000_000))))


def _make(dst: str, port, proto, srcs: list, n: int, nbytes: int, rare_port: bool, first: float, last: float,
          ids, cids, p: HuntParams) -> Finding:
    score = _score(n, nbytes, rare_port, p)
    return Finding(NAME, f"{dst}:{port}/{proto}", score, level_of(score, p.t("medium", 0.5), p.t("high", 0.8)),
                   f"used only by {', '.join(srcs)}: {n} connections, {nbytes:,} bytes"
                   + (f", port {port} used by no other host" if rare_port else ""), first, last, n,
                   {"sources": srcs, "connections": n, "bytes": nbytes, "rare_port": rare_port, "port": port,
                    "transport": proto}, list(ids)[:EVIDENCE_IDS], sorted(set(cids))[:EVIDENCE_IDS])


def _nets(p: HuntParams) -> LocalNets:
    return p.local_nets or LocalNets()


def offline(src, p: HuntParams) -> list[Finding]:
    local = _nets(p)
    max_s = int(p.t("max_sources", 1))
    svc: dict[tuple, list] = {}  # (dst, port, proto) -> [sources (capped), n, bytes, first, last, ids, cids]
    ports: dict[tuple, set] = {}  # (port, proto) -> sources (capped)
    for c in src.conns(p.since, p.until):
        if c.src not in local or c.dst in local:
            continue
        k = (c.dst, c.dport, c.proto)
        a = svc.get(k)
        if a is None:
            a = svc[k] = [set(), 0, 0, c.ts, c.ts, [], []]
        if len(a[0]) <= max_s:
            a[0].add(c.src)
        a[1] += 1
        a[2] += c.orig_bytes + c.resp_bytes
        a[3] = min(a[3], c.ts)
        a[4] = max(a[4], c.ts)
        if len(a[5]) < EVIDENCE_IDS:
            a[5].append(c.uid)
            a[6].append(c.cid)
        ps = ports.setdefault((c.dport, c.proto), set())
        if len(ps) <= max_s:
            ps.add(c.src)
    out = [_make(d, port, proto, sorted(a[0]), a[1], a[2], len(ports[(port, proto)]) <= max_s, a[3], a[4], a[5], a[6], p)
           for (d, port, proto), a in svc.items() if len(a[0]) <= max_s]
    out.sort(key=lambda f: (-f.score, f.key))
    return out[: p.limit]


def outbound_filters(src, p: HuntParams) -> tuple[list, list]:
    """(filter, must_not) for outbound flows: the source in the local networks, the destination not."""
    nets = _nets(p).cidrs
    return ([{"terms": {"source.ip": nets}}], [{"terms": {"destination.ip": nets}}])


def es(src, p: HuntParams) -> list[Finding]:
    """A composite over (destination.port, network.transport) with the cardinality of sources for the
    rare ports, then one over (destination.ip, port, transport) with source cardinality, bytes, times;
    sources of the rare ones by a terms sub-aggregation capped at max_sources + 1."""
    inc, exc = outbound_filters(src, p)
    tf = src.time_filter(p.since, p.until) + inc
    max_s = int(p.t("max_sources", 1))
    card = {"n": {"cardinality": {"field": "source.ip"}}}
    proto_src = ("t", {"terms": {"field": "network.transport", "missing_bucket": True}})
    port_src = ("p", {"terms": {"field": "destination.port", "missing_bucket": True}})
    rare_ports = {(b["key"]["p"], b["key"]["t"]) for b in src.composite(src.flow_index, [port_src, proto_src], tf, card, exc)
                  if b["n"]["value"] <= max_s}
    aggs = {**card, "bytes": {"sum": {"field": "network.bytes"}}, "first": {"min": {"field": "@timestamp"}},
            "last": {"max": {"field": "@timestamp"}}}
    cands = []
    for b in src.composite(src.flow_index, [("d", {"terms": {"field": "destination.ip"}}), port_src, proto_src],
                           tf, aggs, exc):
        if b["n"]["value"] <= max_s:
            k = b["key"]
            rare = (k["p"], k["t"]) in rare_ports
            cands.append((_score(b["doc_count"], int(b["bytes"]["value"]), rare, p), k["d"], k["p"], k["t"], rare, b))
    out = []
    for _, d, port, proto, rare, b in heapq.nlargest(p.limit, cands, key=lambda c: (c[0], c[1])):
        flt = tf + [{"term": {"destination.ip": d}}] + ([{"term": {"destination.port": port}}] if port is not None else [])
        a = src.stats(src.flow_index, flt, {"s": {"terms": {"field": "source.ip", "size": max_s + 1}}})
        srcs = sorted(x["key"] for x in a["s"]["buckets"])
        ids, cids = src.evidence(src.flow_index, flt)
        out.append(_make(d, port, proto, srcs, b["doc_count"], int(b["bytes"]["value"]), rare, b["first"]["value"] / 1000.0,
                         b["last"]["value"] / 1000.0, ids, cids, p))
    out.sort(key=lambda f: (-f.score, f.key))
    return out
