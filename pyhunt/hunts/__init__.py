"""Canned hunts over pyhunt flows and Zeek logs, offline (files) or in Elasticsearch (aggregations).

``run(name, source, params)`` returns the hunt's findings, best first; ``HUNTS`` names them all.
"""
from __future__ import annotations

from pyhunt.hunts import beacons, dns_tunnels, exfil, long_connections, rare_destinations, scans
from pyhunt.hunts.common import Finding, HuntParams, LocalNets

__all__ = ["HUNTS", "run", "Finding", "HuntParams", "LocalNets"]

HUNTS = {m.NAME: m for m in (beacons, long_connections, scans, dns_tunnels, rare_destinations, exfil)}


def run(name: str, source, params: HuntParams) -> list[Finding]:
    """Findings of hunt ``name`` over ``source`` (an OfflineSource or an ESSource), best first."""
    mod = HUNTS[name]
    return mod.es(source, params) if source.kind == "elasticsearch" else mod.offline(source, params)
