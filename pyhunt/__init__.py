"""pyhunt: a network threat-hunting sensor with a C flow engine.

The per-packet work lives in the private extension ``pyhunt._ext``; this package
re-exports the Python API and holds the cold code (CLI, sources, sinks). Names
are imported lazily so that tools such as ``python -m pyhunt.schema`` work
before the extension is built.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["FlowMeter", "FlowBatch", "CaptureError", "FIELDS", "CONN_STATES", "dtype", "__version__"]
__version__ = "0.1.0"

_LAZY = {"FlowMeter": "pyhunt.flows", "FlowBatch": "pyhunt.flows", "CaptureError": "pyhunt.flows",
         "FIELDS": "pyhunt.schema", "CONN_STATES": "pyhunt.schema", "dtype": "pyhunt.schema"}

if TYPE_CHECKING:  # pragma: no cover
    from pyhunt.flows import CaptureError, FlowBatch, FlowMeter
    from pyhunt.schema import CONN_STATES, FIELDS, dtype


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pyhunt' has no attribute {name!r}")
