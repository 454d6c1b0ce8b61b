"""pyhunt: a network threat-hunting sensor with a C flow engine.

The per-packet work lives in the private extension ``pyhunt._ext``; this package
re-exports the Python API and holds the cold code (CLI, sources, sinks).
"""
from pyhunt.flows import CaptureError, FlowBatch, FlowMeter
from pyhunt.schema import CONN_STATES, FIELDS, dtype

__all__ = ["FlowMeter", "FlowBatch", "CaptureError", "FIELDS", "CONN_STATES", "dtype", "__version__"]
__version__ = "0.1.0"
