"""The sensor's HTTP endpoints: ``/healthz``, ``/readyz`` and ``/metrics`` (Prometheus text format).

Metrics are read from the running sensor at scrape time (a custom collector), so nothing is
counted twice and the hot path never touches prometheus_client.
"""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable, Protocol

__all__ = ["Heartbeats", "MetricsSource", "HttpServer", "render_metrics"]

LIVENESS_S = 10.0   # a loop that made no progress for this long is not alive
READY_ES_S = 60.0   # Elasticsearch must have answered within this long for /readyz


class Heartbeats:
    """Each loop of the sensor beats here; /healthz checks that all of them beat recently."""

    def __init__(self):
        self._lock = threading.Lock()
        self._beats: dict[str, float] = {}

    def beat(self, name: str) -> None:
        with self._lock:
            self._beats[name] = time.monotonic()

    def forget(self, name: str) -> None:
        with self._lock:
            self._beats.pop(name, None)

    def stale(self, limit: float = LIVENESS_S) -> list[str]:
        now = time.monotonic()
        with self._lock:
            return sorted(n for n, t in self._beats.items() if now - t > limit)


class MetricsSource(Protocol):
    heartbeats: Heartbeats

    def metrics(self) -> dict: ...
    def readiness(self) -> str | None: ...


# (metric name, type, help, labels) -- the names docs/sensor-config.md lists
METRICS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("pyhunt_packets_total", "counter", "packets read from the capture source", ()),
    ("pyhunt_bytes_total", "counter", "captured bytes read from the capture source", ()),
    ("pyhunt_capture_kernel_drops_total", "counter",
     "packets the kernel dropped before pyhunt read them (PACKET_STATISTICS tp_drops)", ()),
    ("pyhunt_capture_kernel_freezes_total", "counter", "ring freezes reported by the kernel (tp_freeze_q_cnt)", ()),
    ("pyhunt_packets_not_in_flow_total", "counter",
     "packets not counted in a flow, by reason (docs/counters.md)", ("reason",)),
    ("pyhunt_tunnel_errors_total", "counter", "datagrams the VXLAN/GENEVE listener could not decapsulate", ()),
    ("pyhunt_flows_exported_total", "counter", "final flow records exported", ()),
    ("pyhunt_flow_updates_total", "counter", "interim update records of long flows exported", ()),
    ("pyhunt_flow_evictions_total", "counter", "flows exported early because the table was full", ()),
    ("pyhunt_flow_table_flows", "gauge", "flows in the flow table(s)", ()),
    ("pyhunt_es_documents_total", "counter", "documents by outcome (indexed, retried, spooled, dead_letter, "
     "dropped, duplicate)", ("stream", "result")),
    ("pyhunt_spool_bytes", "gauge", "bytes waiting in the spool", ("stream",)),
    ("pyhunt_zeek_lines_shipped_total", "counter", "Zeek log lines accepted by the writer, by log", ("log",)),
    ("pyhunt_zeek_parse_errors_total", "counter", "Zeek log lines that could not be parsed, by log", ("log",)),
    ("pyhunt_zeek_log_lag_seconds", "gauge", "age of the oldest Zeek log line not yet shipped, by log", ("log",)),
    ("pyhunt_zeek_files_followed", "gauge", "Zeek log files being tailed", ()),
    ("pyhunt_up", "gauge", "1 while the sensor runs", ()),
)


class _Collector:
    def __init__(self, values: dict):
        self.values = values

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        for name, typ, help_, labels in METRICS:
            if name not in self.values:
                continue
            cls = CounterMetricFamily if typ == "counter" else GaugeMetricFamily
            v = self.values[name]
            if not labels:
                yield cls(name, help_, value=v)
                continue
            fam = cls(name, help_, labels=list(labels))
            for key, num in sorted(v.items()):
                fam.add_metric([str(k) for k in (key if isinstance(key, tuple) else (key,))], num)
            yield fam


def render_metrics(values: dict) -> bytes:
    """Prometheus text exposition of ``values``: name -> number, or name -> {label value(s): number}."""
    from prometheus_client import CollectorRegistry, generate_latest
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(values))
    return generate_latest(reg)


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet: probes hit this every few seconds
        pass

    def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        src = self.server.source
        path = self.path.split("?", 1)[0]
        try:
            if path == "/healthz":
                stale = src.heartbeats.stale()
                if stale:
                    self._send(503, f"no progress for {LIVENESS_S:g} s: {', '.join(stale)}\n".encode())
                else:
                    self._send(200, b"ok\n")
            elif path == "/readyz":
                reason = src.readiness()
                self._send(503 if reason else 200, (reason or "ready").encode() + b"\n")
            elif path == "/metrics":
                self._send(200, render_metrics(src.metrics()), "text/plain; version=0.0.4; charset=utf-8")
            else:
                self._send(404, b"not found: try /healthz, /readyz or /metrics\n")
        except Exception as exc:  # a broken scrape must not take the sensor down
            self._send(500, f"error: {exc}\n".encode())

    do_HEAD = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    source: MetricsSource


class HttpServer:
    """Serves the endpoints from a daemon thread; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, source: MetricsSource, address: str, port: int):
        self._srv = _Server((address, port), _Handler)
        self._srv.source = source
        self.port = self._srv.server_address[1]
        self._thread = threading.Thread(target=self._srv.serve_forever, name="pyhunt-http", daemon=True)

    def start(self) -> "HttpServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()
