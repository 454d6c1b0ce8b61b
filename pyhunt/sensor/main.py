"""``python -m pyhunt sensor``: live flows and Zeek's logs to Elasticsearch, with health and metrics.

Threads of one sensor process:
  - the capture loop (the main thread): the C engine polls the ring or the UDP listener without
    the GIL, returns finished flows in batches; they go to a bounded queue;
  - the exporter: serializes batches to ECS in C and hands them to the flows' bulk writer; it also
    flushes the writer every second and probes/drains the spool while Elasticsearch is away;
  - the Zeek shipper: tails Zeek's log directory into its own bulk writer, checkpointing offsets;
  - the HTTP server: /healthz, /readyz, /metrics.
With PYHUNT_WORKERS > 1 the capture loop and exporter run in N forked worker processes sharing the
interface through PACKET_FANOUT (each with its own spool); the parent runs the shipper and HTTP and
sums the workers' metrics.

Shutdown (SIGTERM/SIGINT): stop capturing, export every flow in the table, flush both writers for
up to PYHUNT_GRACE_SECONDS, spool what could not be sent, save the Zeek checkpoints, exit 0.
"""
from __future__ import annotations

import os
import pathlib
import queue
import signal
import sys
import threading
import time
from typing import Any

from pyhunt.sensor.config import SensorConfig
from pyhunt.sensor.http import Heartbeats, HttpServer

__all__ = ["Sensor", "run"]

EXIT_OK, EXIT_RUNTIME = 0, 1
POLL_S = 0.2          # the capture loop returns to Python at least this often (signals, heartbeats)
QUEUE_BATCHES = 64    # flow batches between the capture loop and the exporter
FLUSH_S = 1.0         # the exporter sends what it holds at least this often


class SensorError(RuntimeError):
    """A failure the sensor cannot ride out (one line; exit status 1)."""


def _log(msg: str) -> None:
    sys.stderr.write(f"pyhunt sensor: {msg}\n")
    sys.stderr.flush()


def _state_paths(cfg: SensorConfig, worker: int | None = None) -> dict[str, pathlib.Path]:
    base = pathlib.Path(cfg.state_dir)
    suffix = "" if worker is None else f"-{worker}"
    return {"flow_spool": base / "es-spool" / f"flows{suffix}", "zeek_spool": base / "es-spool" / "zeek",
            "dead_letter": base / "es-dead-letter.ndjson", "checkpoints": base / "zeek-checkpoints.json"}


def _check_state_dir(cfg: SensorConfig) -> None:
    base = pathlib.Path(cfg.state_dir)
    try:
        (base / "es-spool").mkdir(parents=True, exist_ok=True)
        probe = base / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SensorError(f"PYHUNT_STATE_DIR {base} is not writable: {exc.strerror or exc}") from None


def _engine_options(cfg: SensorConfig) -> dict[str, Any]:
    """FlowMeter settings of the live meter."""
    return {"cid_seed": cfg.cid_seed, "capacity": cfg.capacity, "active_timeout": cfg.active_timeout,
            "emit_updates": cfg.active_timeout > 0, "local_nets": list(cfg.local_nets), "tunnels": cfg.tunnels,
            "vlan_in_key": cfg.vlan_key}


def _open_meter(cfg: SensorConfig, worker_group: bool):
    """The live flow meter for the configured mode (SensorError if the source cannot be opened)."""
    try:
        from pyhunt import live
    except ImportError as exc:
        raise SensorError(f"live capture is not available in this build: {exc}") from None
    try:
        if cfg.mode == "capture":
            src = live.LiveCapture(cfg.interface, block_size=cfg.ring_block_size, block_count=cfg.ring_blocks,
                                   fanout_group=cfg.fanout_group if worker_group else None,
                                   bpf_filter=cfg.bpf_filter or None)
        else:
            kind = "vxlan" if cfg.mode == "vxlan-listener" else "geneve"
            port = cfg.vxlan_port if kind == "vxlan" else cfg.geneve_port
            src = live.TunnelListener(port, kind=kind, bind=cfg.listen_address)
    except (OSError, ValueError, live.LiveCaptureError) as exc:
        where = cfg.interface if cfg.mode == "capture" else f"UDP {cfg.listen_address}"
        raise SensorError(f"cannot open {cfg.mode} on {where}: {exc}") from None
    return live.LiveFlowMeter(src, _engine_options(cfg))


class _Exporter(threading.Thread):
    """Batches from the capture loop -> ECS NDJSON (C) -> the flows' bulk writer."""

    def __init__(self, writer, observer: str, beats: Heartbeats):
        super().__init__(name="pyhunt-exporter", daemon=True)
        self.writer, self.observer, self.beats = writer, observer, beats
        self.q: queue.Queue = queue.Queue(QUEUE_BATCHES)
        self.flows = self.updates = 0
        self._halt = threading.Event()

    def run(self) -> None:
        last_flush = time.monotonic()
        while True:
            self.beats.beat("exporter")
            try:
                batch = self.q.get(timeout=0.5)
            except queue.Empty:
                batch = None
            if batch is not None:
                recs = batch.to_numpy()
                self.writer.write(recs, batch.to_ndjson("ecs", observer=self.observer))
                self.flows += len(recs)
            now = time.monotonic()
            if now - last_flush >= FLUSH_S:
                self.writer.tick()
                last_flush = now
            if batch is None and self._halt.is_set() and self.q.empty():
                return

    def stop(self) -> None:
        self._halt.set()


class _Shipper(threading.Thread):
    """Runs the Zeek log shipper's poll loop."""

    def __init__(self, shipper, beats: Heartbeats):
        super().__init__(name="pyhunt-zeek", daemon=True)
        self.shipper, self.beats = shipper, beats
        self._halt = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        while not self._halt.is_set():
            self.beats.beat("zeek-shipper")
            try:
                busy = self.shipper.poll() >= self.shipper.max_lines
            except OSError as exc:  # e.g. the directory vanished: keep trying, say why
                if self.error is None:
                    _log(f"warning: Zeek log shipping: {exc}")
                self.error = str(exc)
                busy = False
            self._halt.wait(0.05 if busy else 0.5)

    def stop(self) -> None:
        self._halt.set()


class Sensor:
    """One sensor process (or the parent of worker processes)."""

    def __init__(self, cfg: SensorConfig):
        self.cfg = cfg
        self.heartbeats = Heartbeats()
        self.stop_requested = threading.Event()
        self.meter = None
        self.exporter: _Exporter | None = None
        self.flow_writer = None
        self.zeek_writer = None
        self.shipper = None
        self.shipper_thread: _Shipper | None = None
        self.workers: list = []          # (process, connection) with PYHUNT_WORKERS > 1
        self.worker_metrics: dict[int, dict] = {}
        self.capture_open = False
        self.http: HttpServer | None = None
        self._cap_snapshot: dict[str, Any] = {}
        self.timed_out = False   # the grace period ran out: what was in flight went to the spool

    # -- metrics and health (read by the HTTP thread) ---------------------------------------------
    def readiness(self) -> str | None:
        if not self.capture_open:
            return "capture source not open yet"
        if self.stop_requested.is_set():
            return "shutting down"
        writers = [w for w in (self.flow_writer, self.zeek_writer) if w is not None]
        for w in writers:
            age = w.seconds_since_answer()
            if age is None or age > 60:
                return f"elasticsearch {w.settings.url} unreachable, spooling"
        return None

    def metrics(self) -> dict:
        m: dict[str, Any] = {"pyhunt_up": 1}
        cap = [self.capture_metrics()] if not self.workers else []
        cap += list(self.worker_metrics.values())
        for c in cap:
            for k, v in c.items():
                if isinstance(v, dict):
                    d = m.setdefault(k, {})
                    for lk, lv in v.items():
                        d[lk] = d.get(lk, 0) + lv
                else:
                    m[k] = m.get(k, 0) + v
        for stream, w in (("zeek", self.zeek_writer),):
            if w is not None:
                _writer_metrics(m, stream, w)
        if self.shipper is not None:
            st = self.shipper.stats()
            m["pyhunt_zeek_lines_shipped_total"] = dict(st.lines_shipped)
            m["pyhunt_zeek_parse_errors_total"] = dict(st.parse_errors)
            m["pyhunt_zeek_log_lag_seconds"] = dict(st.lag_seconds)
            m["pyhunt_zeek_files_followed"] = st.files_followed
        return m

    def capture_metrics(self) -> dict:
        """This process' capture, engine and flow-writer metrics (summed across workers by the parent).
        The capture part is a snapshot the capture loop takes between polls (the engine's counters
        are not read while C runs the loop)."""
        m = dict(self._cap_snapshot)
        if self.flow_writer is not None:
            _writer_metrics(m, "flows", self.flow_writer)
        return m

    def _snapshot_capture(self) -> None:
        m: dict[str, Any] = {}
        meter = self.meter
        if meter is not None:
            s = meter.stats()
            c = s.get("engine", {})
            m["pyhunt_packets_total"] = c.get("packets_read", 0)
            m["pyhunt_bytes_total"] = c.get("bytes_read", 0)
            m["pyhunt_capture_kernel_drops_total"] = s.get("kernel_drops", 0)
            m["pyhunt_capture_kernel_freezes_total"] = s.get("kernel_freezes", 0)
            m["pyhunt_tunnel_errors_total"] = s.get("tunnel_bad", 0) + s.get("tunnel_unsupported", 0)
            from pyhunt import _ext
            names = list(_ext.COUNTER_NAMES)[: _ext.N_DISPOSITIONS]
            m["pyhunt_packets_not_in_flow_total"] = {n: c.get(n, 0) for n in names
                                                     if n not in ("packets_read", "bytes_read", "in_flow")}
            m["pyhunt_flows_exported_total"] = c.get("flows_exported", 0)
            m["pyhunt_flow_updates_total"] = c.get("flow_updates", 0)
            m["pyhunt_flow_evictions_total"] = c.get("evictions", 0)
            m["pyhunt_flow_table_flows"] = s.get("active_flows", 0)
        self._cap_snapshot = m

    # -- running ----------------------------------------------------------------------------------
    def _open_writer(self, spool: pathlib.Path):
        from pyhunt.sinks.elasticsearch import BulkWriter
        paths = _state_paths(self.cfg)
        return BulkWriter(self.cfg.es_settings(str(spool), str(paths["dead_letter"]))).open()

    def _install_signals(self) -> None:
        def handler(signum, frame):
            if self.stop_requested.is_set():  # a second signal: leave now
                _log("second signal: exiting without flushing")
                os._exit(EXIT_RUNTIME)
            _log(f"{signal.Signals(signum).name}: stopping (grace {self.cfg.grace_seconds:g} s)")
            self.stop_requested.set()
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> int:
        cfg = self.cfg
        _check_state_dir(cfg)
        self._install_signals()
        if cfg.workers > 1:
            self._start_workers()  # fork before any thread starts
        try:
            self.http = HttpServer(self, cfg.http_address, cfg.http_port).start()
        except OSError as exc:
            self._stop_workers(time.monotonic() + 1)
            raise SensorError(f"cannot serve HTTP on {cfg.http_address}:{cfg.http_port}: "
                              f"{exc.strerror or exc}") from None
        _log(f"HTTP endpoints on port {self.http.port} (/healthz /readyz /metrics)")
        try:
            if cfg.zeek_log_dir:
                self._start_shipper()
            if cfg.workers > 1:
                self.capture_open = True
                self._parent_loop()
            else:
                self._capture_loop()
        finally:
            self._shutdown()
        return EXIT_OK

    def _start_shipper(self) -> None:
        from pyhunt.zeek.shipper import ZeekShipper
        paths = _state_paths(self.cfg)
        self.zeek_writer = self._open_writer(paths["zeek_spool"])
        self.shipper = ZeekShipper(self.cfg.zeek_log_dir, self.cfg.state_dir, self.zeek_writer,
                                   namespace=self.cfg.es_namespace, observer=self.cfg.observer_name,
                                   warn=lambda msg: _log(f"warning: Zeek logs: {msg}"))
        self.shipper_thread = _Shipper(self.shipper, self.heartbeats)
        self.shipper_thread.start()
        _log(f"shipping Zeek logs from {self.cfg.zeek_log_dir}")

    def _capture_loop(self, worker: int | None = None, conn=None) -> None:
        cfg = self.cfg
        self.meter = _open_meter(cfg, worker_group=worker is not None)
        from pyhunt.live import LiveCaptureError as live_error
        self.capture_open = True
        self.flow_writer = self._open_writer(_state_paths(cfg, worker)["flow_spool"])
        self.exporter = _Exporter(self.flow_writer, cfg.observer_name, self.heartbeats)
        self.exporter.start()
        where = cfg.interface if cfg.mode == "capture" else f"UDP port {cfg.vxlan_port if cfg.mode == 'vxlan-listener' else cfg.geneve_port}"
        _log(f"{cfg.mode} on {where}" + ("" if worker is None else f" (worker {worker})"))
        last_report = 0.0
        self._snapshot_capture()
        while not self.stop_requested.is_set():
            self.heartbeats.beat("capture")
            try:
                batch = self.meter.poll(POLL_S)
            except live_error as exc:   # the interface went down (rides it out) or away (exit 1)
                if cfg.mode == "capture" and not os.path.exists(f"/sys/class/net/{cfg.interface}"):
                    raise SensorError(f"capture on {cfg.interface}: {exc}") from None
                _log(f"warning: {exc}")
                self.stop_requested.wait(1.0)
                continue
            if batch is not None and len(batch):
                self._enqueue(batch)
            if time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                self._snapshot_capture()
                if conn is not None:
                    conn.send(self.capture_metrics())
                    if conn.poll() and conn.recv() == "stop":
                        self.stop_requested.set()
        self.heartbeats.forget("capture")
        final = self.meter.finish()
        if final is not None and len(final):
            self._enqueue(final)
        self._snapshot_capture()
        if conn is not None:
            conn.send(self.capture_metrics())

    def _enqueue(self, batch) -> None:
        """Hand a batch to the exporter; waits while it is full (backpressure to the ring)."""
        while True:
            try:
                self.exporter.q.put(batch, timeout=POLL_S)
                return
            except queue.Full:
                self.heartbeats.beat("capture")
                if self.stop_requested.is_set() and not self.exporter.is_alive():
                    raise SensorError("the exporter thread died") from None

    # -- workers (PYHUNT_WORKERS > 1) -------------------------------------------------------------
    def _start_workers(self) -> None:
        import multiprocessing as mp
        ctx = mp.get_context("fork")
        for i in range(self.cfg.workers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker_main, args=(self.cfg, i, child), name=f"pyhunt-worker-{i}")
            p.start()
            child.close()
            self.workers.append((p, parent))

    def _parent_loop(self) -> None:
        while not self.stop_requested.is_set():
            self._collect_workers()
            alive = [p for p, _ in self.workers if p.is_alive()]
            if len(alive) < len(self.workers):
                dead = [p for p, _ in self.workers if not p.is_alive()]
                raise SensorError(f"capture worker {dead[0].name} exited with status {dead[0].exitcode}")
            self.heartbeats.beat("capture")
            self.stop_requested.wait(0.5)

    def _collect_workers(self) -> None:
        for i, (_, conn) in enumerate(self.workers):
            try:
                while conn.poll():
                    self.worker_metrics[i] = conn.recv()
            except (EOFError, OSError):
                pass

    def _stop_workers(self, deadline: float) -> None:
        for p, conn in self.workers:
            try:
                conn.send("stop")
            except OSError:
                pass
        for p, _ in self.workers:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
        self._collect_workers()

    # -- shutdown ---------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.cfg.grace_seconds
        self.stop_requested.set()
        if self.workers:
            self._stop_workers(deadline - 1.0)
        if self.exporter is not None:
            self.exporter.stop()
            self.exporter.join(max(0.1, deadline - time.monotonic() - 1.0))
        if self.shipper_thread is not None:
            self.shipper_thread.stop()
            self.shipper_thread.join(5.0)
        if self.shipper is not None:
            try:   # send (or spool) the lines read so far and checkpoint them
                self.shipper.close()
            except Exception as exc:   # noqa: BLE001 - keep shutting down; the lines are re-read next time
                _log(f"warning: Zeek checkpoints not saved: {exc}")
        for w in (self.flow_writer, self.zeek_writer):
            if w is not None and not w.close_within(max(0.5, deadline - time.monotonic())):
                self.timed_out = True
        if self.meter is not None:
            self.meter.close()
        if self.http is not None:
            self.http.close()
        _log("stopped")


def _writer_metrics(m: dict, stream: str, w) -> None:
    st = w.stats
    docs = m.setdefault("pyhunt_es_documents_total", {})
    for result, value in (("indexed", st.sent), ("retried", st.retried), ("spooled", st.spooled),
                          ("dead_letter", st.dead_lettered), ("dropped", st.dropped),
                          ("duplicate", getattr(st, "duplicates", 0))):
        docs[(stream, result)] = docs.get((stream, result), 0) + value
    spool = m.setdefault("pyhunt_spool_bytes", {})
    spool[stream] = spool.get(stream, 0) + w.spool.pending()[1]


def _worker_main(cfg: SensorConfig, index: int, conn) -> None:
    """A forked capture worker: capture loop + exporter + its own flow writer and spool."""
    s = Sensor(cfg)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides when to stop
    signal.signal(signal.SIGTERM, lambda *_: s.stop_requested.set())
    try:
        s._capture_loop(index, conn)
    except SensorError as exc:
        _log(f"worker {index}: error: {exc}")
        os._exit(EXIT_RUNTIME)
    finally:
        s._shutdown()
    os._exit(EXIT_OK)


def run(cfg: SensorConfig) -> int:
    sensor = Sensor(cfg)
    try:
        rc = sensor.run()
    except SensorError as exc:
        sys.stderr.write(f"pyhunt: error: {exc}\n")
        rc = EXIT_RUNTIME
    if sensor.timed_out:   # sender threads may still hang on a request: do not wait for them
        _log("grace period over: unsent documents are in the spool")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc
