"""Where flows go besides files: Elasticsearch (bulk writer, disk spool, templates)."""
from __future__ import annotations

__all__ = ["BulkWriter", "ESSettings", "SinkStats"]


def __getattr__(name: str):  # the elasticsearch client is an optional dependency: import on use
    if name in __all__:
        from pyhunt.sinks import elasticsearch
        return getattr(elasticsearch, name)
    raise AttributeError(name)
