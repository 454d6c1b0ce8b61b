"""Live flows: a capture ring or a VXLAN/GENEVE listener feeding the flow engine.

The packet loop runs in C without the GIL (ext/ph_live.c); Python polls for
flow batches, the same FlowBatch objects that pyhunt.flows yields for files,
so the sinks (to_ndjson, the Elasticsearch writer) serve both. Timers run on
the wall clock: a flow idle for its inactivity timeout is exported by the next
poll even when no packet comes. docs/live-capture.md has the details.
"""
from __future__ import annotations

import os
import time
from typing import Any, Mapping

from pyhunt import _ext
from pyhunt.flows import END_SHUTDOWN, FlowBatch, FlowMeter

__all__ = ["LiveFlowMeter", "LiveCapture", "TunnelListener", "LiveCaptureError", "open_source",
           "run_worker"]

LiveCapture = _ext.LiveCapture
TunnelListener = _ext.TunnelListener
LiveCaptureError = _ext.LiveCaptureError


class LiveFlowMeter:
    """Flows of one live source.

    ``source`` is a LiveCapture or a TunnelListener (owned: ``close()`` closes it);
    ``config`` holds FlowMeter's settings by name (``udp_inactivity``, ``local_nets``,
    ``emit_updates``...), validated the same way. ``batch_size`` is the number of
    flow records at which ``poll`` returns before its timeout.
    """

    def __init__(self, source: Any, config: Mapping[str, Any] | None = None, *, batch_size: int = 4096):
        if not isinstance(source, (LiveCapture, TunnelListener)):
            raise TypeError("source must be a pyhunt.live.LiveCapture or TunnelListener")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.source = source
        self.meter = FlowMeter(**dict(config or {}))
        self.engine = self.meter.engine
        self.batch_size = batch_size

    def poll(self, timeout_s: float = 1.0) -> FlowBatch | None:
        """Capture for up to ``timeout_s`` seconds (less once a batch is ready); the flows
        exported meanwhile (ended, timed out, or interim updates), or None."""
        self.source.run(self.engine, max(0, int(timeout_s * 1000)), self.batch_size)
        if self.engine.queued():
            return FlowBatch(self.engine.take_raw())
        return None

    def finish(self) -> FlowBatch:
        """Export every flow still in the table (shutdown); capture can go on afterwards."""
        self.engine.finish(END_SHUTDOWN)
        return FlowBatch(self.engine.take_raw())

    def stats(self) -> dict[str, Any]:
        """The source's counters, the engine's counters (``engine``) and the table size."""
        out: dict[str, Any] = dict(self.source.stats())
        out["engine"] = self.engine.counters()
        out["active_flows"] = self.engine.active_flows()
        return out

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> "LiveFlowMeter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(mode: str = "capture", *, interface: str = "cloudlens0", port: int | None = None,
                bind: str = "0.0.0.0", kind: str = "vxlan", fanout_group: int | None = None,
                bpf_filter: str | None = None, **ring: Any) -> Any:
    """The source for the sensor's settings: ``capture`` (LiveCapture of ``interface``; ring
    keywords block_size, block_count, frame_size, retire_ms, promisc) or ``vxlan-listener``
    (TunnelListener of ``kind`` on ``port``)."""
    if mode == "capture":
        return LiveCapture(interface, fanout_group=fanout_group, bpf_filter=bpf_filter or None, **ring)
    if mode == "vxlan-listener":
        return TunnelListener(port, kind=kind, bind=bind)
    raise ValueError(f"unknown mode {mode!r}; expected capture or vxlan-listener")


def run_worker(source_args: Mapping[str, Any], config: Mapping[str, Any] | None, queue: Any,
               stop: Any, *, poll_s: float = 0.5, batch_size: int = 4096,
               stats_every_s: float = 5.0) -> None:
    """Body of one capture worker process (``PYHUNT_WORKERS`` > 1): open the source with
    ``open_source(**source_args)`` (same ``fanout_group`` in every worker), put
    ``("flows", pid, records)`` (numpy arrays of pyhunt.schema.dtype()) and
    ``("stats", pid, dict)`` on ``queue`` until the event ``stop`` is set, then the
    flows still open and ``("done", pid, stats)``. The first message is
    ``("ready", pid, None)`` once the source is open, or ``("error", pid, message)``.
    """
    pid = os.getpid()
    try:
        meter = LiveFlowMeter(open_source(**dict(source_args)), config, batch_size=batch_size)
    except (OSError, ValueError) as exc:
        queue.put(("error", pid, str(exc)))
        return
    queue.put(("ready", pid, None))
    with meter:
        last = time.monotonic()
        while not stop.is_set():
            batch = meter.poll(poll_s)
            if batch is not None:
                queue.put(("flows", pid, batch.to_numpy()))
            if time.monotonic() - last >= stats_every_s:
                queue.put(("stats", pid, meter.stats()))
                last = time.monotonic()
        batch = meter.poll(0)
        if batch is not None:
            queue.put(("flows", pid, batch.to_numpy()))
        queue.put(("flows", pid, meter.finish().to_numpy()))
        queue.put(("done", pid, meter.stats()))
