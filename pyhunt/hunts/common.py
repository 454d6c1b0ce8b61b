"""What every hunt shares: the normalized connection and DNS rows, findings, robust statistics.

A hunt turns rows (offline) or aggregations (Elasticsearch) into per-key aggregates, then scores them
here in Python, so both back ends score the same numbers the same way.
"""
from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

__all__ = ["Conn", "Dns", "Finding", "HuntParams", "LocalNets", "bowley_skew", "mad", "median", "quantile",
           "shannon_entropy", "registered_domain", "level_of", "LEVELS", "FAILED_STATES"]

#: conn_state values of attempts that were never answered or were refused (a scan's footprint)
FAILED_STATES = frozenset(("S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"))
LEVELS = ("low", "medium", "high")
EVIDENCE_IDS = 5  # flow ids and Community IDs kept per finding


class Conn(NamedTuple):
    """One connection (a pyhunt flow or a Zeek conn.log line); times in seconds since the epoch."""
    ts: float
    uid: str
    cid: str
    src: str
    sport: int
    dst: str
    dport: int
    proto: str
    duration: float
    orig_bytes: int  # IP-level bytes from the originator
    resp_bytes: int
    state: str


class Dns(NamedTuple):
    """One DNS query (a Zeek dns.log line)."""
    ts: float
    uid: str
    cid: str
    src: str
    dst: str
    query: str


@dataclass
class Finding:
    """A lead: what was found, how strongly (score 0-1, level), and where to pivot next."""
    hunt: str
    key: str  # what the finding is about, e.g. '10.0.0.5 -> 203.0.113.9'
    score: float
    level: str
    summary: str
    first_seen: float | None = None
    last_seen: float | None = None
    count: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    flow_ids: list[str] = field(default_factory=list)
    community_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from pyhunt.hunts.timeutil import iso
        d = {"hunt": self.hunt, "key": self.key, "score": round(self.score, 4), "level": self.level,
             "summary": self.summary, "count": self.count,
             "first_seen": iso(self.first_seen), "last_seen": iso(self.last_seen),
             "flow_ids": self.flow_ids, "community_ids": self.community_ids}
        d["details"] = {k: v for k, v in self.details.items() if not k.startswith("_")}
        return d


@dataclass
class HuntParams:
    """Options every hunt reads (the per-hunt thresholds live in ``thresholds``)."""
    since: float | None = None
    until: float | None = None
    limit: int = 50
    local_nets: "LocalNets | None" = None
    thresholds: dict[str, float] = field(default_factory=dict)

    def t(self, name: str, default: float) -> float:
        v = self.thresholds.get(name)
        return default if v is None else v


class LocalNets:
    """Membership in the local networks (outbound = local source, non-local destination)."""

    DEFAULT = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")

    def __init__(self, cidrs: Sequence[str] = DEFAULT):
        self.cidrs = list(cidrs)
        self._nets = [ipaddress.ip_network(c, strict=False) for c in self.cidrs]
        self._cache: dict[str, bool] = {}

    def __contains__(self, ip: str) -> bool:
        hit = self._cache.get(ip)
        if hit is None:
            try:
                a = ipaddress.ip_address(ip)
                hit = any(a.version == n.version and a in n for n in self._nets)
            except ValueError:
                hit = False
            if len(self._cache) < 1_000_000:
                self._cache[ip] = hit
        return hit


def level_of(score: float, medium: float, high: float) -> str:
    return "high" if score >= high else "medium" if score >= medium else "low"


def quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of an already sorted sequence (numpy's default method)."""
    n = len(sorted_xs)
    if n == 0:
        return 0.0
    pos = (n - 1) * q
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def median(sorted_xs: Sequence[float]) -> float:
    return quantile(sorted_xs, 0.5)


def bowley_skew(sorted_xs: Sequence[float]) -> float:
    """Bowley (quartile) skewness in [-1, 1]: 0 for a symmetric distribution, and 0 when the quartiles
    coincide (all values nearly equal, the most regular case)."""
    q1, q2, q3 = (quantile(sorted_xs, q) for q in (0.25, 0.5, 0.75))
    if q3 == q1 or q2 == q1 or q2 == q3:
        return 0.0
    return (q3 + q1 - 2 * q2) / (q3 - q1)


def mad(sorted_xs: Sequence[float]) -> float:
    """Median absolute deviation from the median."""
    m = median(sorted_xs)
    return median(sorted(abs(x - m) for x in sorted_xs))


def shannon_entropy(text: str) -> float:
    """Shannon entropy of the characters of text, in bits per character."""
    if not text:
        return 0.0
    counts: dict[str, int] = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


_SECOND_LEVEL = frozenset(("co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go"))


def registered_domain(name: str) -> tuple[str, str]:
    """(registered domain, subdomain part) of a query name: the last two labels, or three under a
    two-letter country TLD with a generic second level (example.co.uk). A small built-in rule, not
    the Public Suffix List."""
    labels = [x for x in name.lower().rstrip(".").split(".") if x]
    if len(labels) < 2:
        return ".".join(labels), ""
    n = 3 if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL else 2
    return ".".join(labels[-n:]), ".".join(labels[:-n])
