"""Elasticsearch index and component templates, generated from pyhunt.schema.

Flow mappings are built from ``ECS_FIELDS`` and ``feature_fields()`` so a field is named once; the
Zeek logs' core fields come from the same table. ``expected()`` is what ``es setup`` installs and what
``es check`` compares the cluster against.
"""
from __future__ import annotations

import hashlib
import json
from typing import Iterable

from pyhunt.schema import ECS_FIELDS, feature_fields, es_type

__all__ = ["flow_properties", "zeek_properties", "flow_templates", "flatten", "schema_hash",
           "index_name", "alias_name", "template_names", "FLOW_PREFIX", "ZEEK_PREFIX"]

FLOW_PREFIX = "pyhunt-flow"
ZEEK_PREFIX = "zeek"

#: ECS fields every Zeek log may carry (Elastic's Zeek integration names); the log-specific ones come
#: from pyhunt.zeek.ecs.ROWS, and fields named by neither are not indexed (dynamic false).
_ZEEK_CORE = ("@timestamp", "ecs.version", "event.kind", "event.category", "event.type", "event.dataset",
              "event.id", "event.start", "event.end", "event.duration", "source.ip", "source.port",
              "source.bytes", "source.packets", "destination.ip", "destination.port", "destination.bytes",
              "destination.packets", "network.transport", "network.type", "network.community_id",
              "network.bytes", "network.packets", "related.ip", "observer.hostname", "observer.type",
              "observer.product", "observer.vendor", "zeek.session_id")


def _nest(pairs: Iterable[tuple[str, str]]) -> dict:
    """[('a.b', 'long')] -> {'a': {'properties': {'b': {'type': 'long'}}}}."""
    root: dict = {}
    for path, typ in pairs:
        node = root
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {"properties": {}})["properties"]
        node[leaf] = {"type": typ}
    return root


def flow_properties() -> dict:
    """Mapping properties of every field pyhunt writes in a flow document."""
    return _nest([(p, t) for p, t, _ in ECS_FIELDS] + [(f.ecs, es_type(f)) for f in feature_fields()])


def zeek_properties() -> dict:
    """Mapping properties of the Zeek log documents: the core fields and every field of the mapping
    table (pyhunt.zeek.ecs.ROWS, documented in docs/sensor-config.md). A field has one type."""
    from pyhunt.zeek.ecs import ROWS
    types = {p: t for p, t, _ in ECS_FIELDS}
    pairs = {p: types[p] for p in _ZEEK_CORE}
    for r in ROWS:
        if pairs.setdefault(r.target, r.es_type) != r.es_type:
            raise ValueError(f"{r.target} is mapped both as {pairs[r.target]} and {r.es_type}")
    return _nest(sorted(pairs.items()))


def flatten(props: dict, prefix: str = "") -> dict[str, str]:
    """Mapping properties -> {'a.b': 'long'} (objects are not listed)."""
    out: dict[str, str] = {}
    for name, spec in props.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            out.update(flatten(spec["properties"], path + "."))
        else:
            out[path] = spec.get("type", "object")
    return out


def schema_hash() -> str:
    """A short digest of the flow mapping: it changes exactly when the written fields change."""
    return hashlib.sha256(json.dumps(flow_properties(), sort_keys=True).encode()).hexdigest()[:16]


def alias_name(namespace: str, prefix: str = FLOW_PREFIX) -> str:
    return f"{prefix}-{namespace}"


def index_name(namespace: str, day: str, prefix: str = FLOW_PREFIX) -> str:
    """Daily index of the flows that started on ``day`` (YYYY.MM.DD)."""
    return f"{prefix}-{namespace}-{day}"


def template_names(namespace: str, prefix: str = FLOW_PREFIX) -> dict[str, list[str]]:
    """Names of what ``flow_templates`` installs, by kind."""
    return {"component": [f"{prefix}-mappings", f"{prefix}-settings", f"{ZEEK_PREFIX}-mappings",
                          f"{ZEEK_PREFIX}-settings"],
            "index": [f"{prefix}-{namespace}", ZEEK_PREFIX]}


def flow_templates(namespace: str = "default", *, shards: int = 1, replicas: int | None = None,
                   refresh_interval: str = "5s", prefix: str = FLOW_PREFIX) -> dict[str, dict[str, dict]]:
    """{'component': {name: body}, 'index': {name: body}} for the flows and Zeek logs of a namespace.

    Settings live in their own component templates so a user can override them without touching the
    mappings. The flow index template puts every daily index behind the namespace's alias
    (``pyhunt-flow-<namespace>``); ``_meta`` carries the pyhunt version and
    the schema hash that ``es check`` compares.
    """
    from pyhunt import __version__
    meta = {"managed_by": "pyhunt", "pyhunt_version": __version__, "schema_hash": schema_hash()}
    settings: dict = {"index": {"number_of_shards": shards, "refresh_interval": refresh_interval}}
    if replicas is not None:
        settings["index"]["number_of_replicas"] = replicas
    comp = {
        f"{prefix}-mappings": {"template": {"mappings": {"dynamic": False, "_meta": meta,
                                                         "properties": flow_properties()}}, "_meta": meta},
        f"{prefix}-settings": {"template": {"settings": settings}, "_meta": meta},
        f"{ZEEK_PREFIX}-mappings": {"template": {"mappings": {"dynamic": False, "_meta": meta,
                                                              "properties": zeek_properties()}}, "_meta": meta},
        f"{ZEEK_PREFIX}-settings": {"template": {"settings": settings}, "_meta": meta},
    }
    index = {
        f"{prefix}-{namespace}": {
            "index_patterns": [f"{prefix}-{namespace}-*"], "priority": 200, "_meta": meta,
            "template": {"aliases": {alias_name(namespace, prefix): {}}},
            "composed_of": [f"{prefix}-mappings", f"{prefix}-settings"]},
        # zeek-<log>-<namespace>-...: one template for all namespaces (per-namespace patterns would overlap)
        ZEEK_PREFIX: {
            "index_patterns": [f"{ZEEK_PREFIX}-*"], "priority": 200, "_meta": meta,
            "composed_of": [f"{ZEEK_PREFIX}-mappings", f"{ZEEK_PREFIX}-settings"]},
    }
    return {"component": comp, "index": index}
