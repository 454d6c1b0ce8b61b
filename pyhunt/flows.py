"""The Python face of the flow engine: FlowMeter and FlowBatch.

Python never sees packets: it feeds capture bytes to the C engine and receives
finished (or updated) flows in batches: records in C's layout, as numpy structured
arrays on demand (numpy is imported then, not before: a replay to NDJSON never needs it).
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

from pyhunt import _ext
from pyhunt.schema import CONN_STATES, FIELDS, dtype, layout
from pyhunt.sources import open_source

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["FlowMeter", "FlowBatch", "CaptureError", "Progress", "check_abi", "parse_networks"]

FORMATS = tuple(_ext.FORMATS)
END_SHUTDOWN = 6
END_OF_INPUT = 0

def check_abi() -> None:
    """Fail loudly if the compiled record layout differs from pyhunt.schema."""
    offsets, size = layout()
    compiled = _ext.record_layout()
    expected = [(f.name, f.kind[0], f.size // f.count, f.count, o) for f, o in zip(FIELDS, offsets)]
    if _ext.RECORD_SIZE != size or compiled != expected:
        raise ImportError("pyhunt._ext was built from a different flow schema than pyhunt/schema.py; "
                          "rebuild it (pip install .)")


check_abi()


class CaptureError(Exception):
    """A capture could not be read to its end (corrupt, truncated, unreadable)."""

    def __init__(self, source: str, message: str, offset: int | None = None):
        self.source, self.message, self.offset = source, message, offset
        where = f" (at byte {offset})" if offset is not None else ""
        super().__init__(f"{source}: {message}{where}")


# the engine's raw records (Engine.take_raw)
_RAW = (bytes, bytearray, _ext.RecordBuffer)


class FlowBatch:
    """A batch of flow records; ``to_numpy()`` is zero-copy, ``to_ndjson()`` runs in C.

    ``records``: a structured array of ``pyhunt.schema.dtype()``, or the engine's raw records
    (a bytes-like object of whole ``RECORD_SIZE``-byte records, ``Engine.take_raw()``)."""

    __slots__ = ("_records",)

    def __init__(self, records: np.ndarray | bytearray | _ext.RecordBuffer):
        self._records = records

    def __len__(self) -> int:
        r = self._records
        return len(r) // _ext.RECORD_SIZE if isinstance(r, _RAW) else len(r)

    def to_numpy(self) -> np.ndarray:
        """The records as a structured array of ``pyhunt.schema.dtype()`` (no copy)."""
        r = self._records
        if isinstance(r, _RAW):
            import numpy as np
            r = self._records = np.frombuffer(r, dtype=dtype())
        return r

    def to_ndjson(self, format: str = "ecs", *, observer: str | None = None) -> bytes:
        """One line per flow: ``ecs``, ``zeek-json`` or ``zeek-tsv`` (lines only, no header)."""
        return _ext.format_records(self._records, format, observer)

    def to_dicts(self) -> list[dict]:
        """Flows as Zeek-style dicts (convenience for notebooks and tests; not fast)."""
        import json
        return [json.loads(line) for line in self.to_ndjson("zeek-json").splitlines()]


# Zeek protocol scripts that register no server ports (docs/zeek-server-ports.md)
_PORTLESS_PROTOCOLS = ("conn", "tunnels", "pop3", "rfb", "ntlm", "websocket")


def zeek_bare_server_ports(scripts: Iterable[str]) -> tuple[list[int], list[int]]:
    """Zeek's likely_server_ports in bare mode (``zeek -b``) with these scripts loaded: what
    base/init-bare registers (the UDP tunnel ports) plus the server ports of each script. A script
    is a path (``base/protocols/dns``, or a file under it) or a protocol's name (``dns``).
    Returns sorted (tcp, udp) lists; raises ValueError for a name that is no known protocol."""
    regs, deps = _ext.zeek_port_registrations()
    known = {script for script, _, _ in regs} | {a for a, _ in deps}
    loaded = {"base/init-bare"}
    for name in scripts:
        name = name.strip().strip("/")
        if not name:
            continue
        if "/" not in name:
            path = f"base/protocols/{name}"
            if path not in known and name not in _PORTLESS_PROTOCOLS:
                names = sorted(k.rsplit("/", 1)[1] for k in known if k.startswith("base/protocols/"))
                raise ValueError(f"unknown Zeek protocol {name!r} (protocols with server ports: "
                                 f"{', '.join(names)}; {', '.join(_PORTLESS_PROTOCOLS)} register none)")
            name = path
        loaded.update(k for k in known if name == k or name.startswith(k + "/"))
    for a, b in deps:
        if a in loaded:
            loaded.add(b)
    tcp = sorted({port for script, proto, port in regs if script in loaded and proto == 6})
    udp = sorted({port for script, proto, port in regs if script in loaded and proto == 17})
    return tcp, udp


class Progress(NamedTuple):
    """Where the meter is: capture name, bytes done and total (None if unknown)."""
    source: str
    done: int
    total: int | None
    packets: int


def parse_networks(specs: Iterable[str]) -> list[tuple[bytes, int, int]]:
    """CIDR strings -> (16-byte address, ip version, prefix) for the engine."""
    out = []
    for spec in specs:
        net = ipaddress.ip_network(spec.strip(), strict=False)
        out.append((net.network_address.packed.ljust(16, b"\0"), net.version, net.prefixlen))
    return out


class FlowMeter:
    """Turns captures into flows with Zeek's conn.log semantics.

    Times are in seconds. ``read()`` yields :class:`FlowBatch` objects; several
    captures are one stream (one flow table). Counters are in ``counters``.
    ``tunnels`` is ``"zeek"`` (Zeek-compatible reporting: outer UDP tunnel flows,
    ``tunnel_parents``) or ``"strip"`` (mirroring mode: tunnels stripped silently,
    flows keyed by the outermost VNI/GRE key); docs/architecture.md "Tunnels".
    """

    # the settings, in the order of __init__ (repr shows them)
    _FIELDS = ("ignore_checksums", "tcp_inactivity", "udp_inactivity", "icmp_inactivity", "other_inactivity",
               "active_timeout", "dns_session_timeout", "emit_updates", "capacity", "cid_seed", "first_n",
               "tcp_server_ports", "udp_server_ports", "local_nets", "vlan_in_key", "tunnels",
               "tunnel_max_depth", "tunnel_max_changes", "tunnel_disable", "tunnel_ports", "teredo_dpd",
               "batch_size")

    def __init__(self, ignore_checksums: bool = False,
                 tcp_inactivity: float | None = None,
                 udp_inactivity: float | None = None,
                 icmp_inactivity: float | None = None,
                 other_inactivity: float | None = None,
                 active_timeout: float | None = None,
                 dns_session_timeout: float | None = None,
                 emit_updates: bool = False,
                 capacity: int | None = None,
                 cid_seed: int = 0,
                 first_n: int | None = None,
                 tcp_server_ports: Sequence[int] | None = None,
                 udp_server_ports: Sequence[int] | None = None,
                 local_nets: Sequence[str] = (),
                 vlan_in_key: bool = True,
                 tunnels: str = "zeek",
                 tunnel_max_depth: int | None = None,
                 tunnel_max_changes: int | None = None,
                 tunnel_disable: Sequence[str] = (),
                 tunnel_ports: Mapping[str, Sequence[int]] | None = None,
                 teredo_dpd: bool = True,
                 batch_size: int = 16384):
        self.ignore_checksums = ignore_checksums
        self.tcp_inactivity = tcp_inactivity
        self.udp_inactivity = udp_inactivity
        self.icmp_inactivity = icmp_inactivity
        self.other_inactivity = other_inactivity
        self.active_timeout = active_timeout
        self.dns_session_timeout = dns_session_timeout
        self.emit_updates = emit_updates
        self.capacity = capacity
        self.cid_seed = cid_seed
        self.first_n = first_n
        self.tcp_server_ports = tcp_server_ports
        self.udp_server_ports = udp_server_ports
        self.local_nets = local_nets
        self.vlan_in_key = vlan_in_key
        self.tunnels = tunnels
        self.tunnel_max_depth = tunnel_max_depth
        self.tunnel_max_changes = tunnel_max_changes
        self.tunnel_disable = tunnel_disable
        self.tunnel_ports = tunnel_ports
        self.teredo_dpd = teredo_dpd
        self.batch_size = batch_size
        self.errors: list[CaptureError] = []
        self._engine: _ext.Engine | None = None

    def __repr__(self) -> str:
        return "FlowMeter(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self._FIELDS) + ")"

    def _config(self) -> dict:
        cfg: dict = {"ignore_checksums": self.ignore_checksums, "emit_updates": self.emit_updates,
                     "vlan_in_key": self.vlan_in_key,
                     "cid_seed": self.cid_seed, "local_nets": parse_networks(self.local_nets)}
        cfg.update(tunnels=self.tunnels, tunnel_disable=list(self.tunnel_disable), teredo_dpd=self.teredo_dpd)
        for kind, ports in (self.tunnel_ports or {}).items():
            if kind not in _ext.UDP_TUNNELS:
                raise ValueError(f"tunnel_ports: {kind!r} is not one of {', '.join(_ext.UDP_TUNNELS)}")
            cfg[f"{kind}_ports"] = list(ports)
        for name in ("tcp_inactivity", "udp_inactivity", "icmp_inactivity", "other_inactivity",
                     "active_timeout", "capacity", "first_n", "tcp_server_ports", "udp_server_ports",
                     "tunnel_max_depth", "tunnel_max_changes", "dns_session_timeout"):
            value = getattr(self, name)
            if value is not None:
                cfg[name] = value
        for name in ("tcp_inactivity", "udp_inactivity", "icmp_inactivity", "other_inactivity", "active_timeout",
                     "dns_session_timeout"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 10 * 365 * 86400:
                raise ValueError(f"{name} must be between 0 and ten years (in seconds)")
        if not 0 <= self.cid_seed <= 65535:
            raise ValueError("cid_seed must be between 0 and 65535")
        if self.first_n is not None and not 0 <= self.first_n <= 8:
            raise ValueError("first_n must be between 0 and 8")
        if self.capacity is not None and self.capacity < 1:
            raise ValueError("capacity must be at least 1")
        return cfg

    @property
    def engine(self) -> _ext.Engine:
        if self._engine is None:
            self._engine = _ext.Engine(self._config())
        return self._engine

    @property
    def counters(self) -> dict[str, int]:
        return self.engine.counters()

    def read(self, *captures: str, progress: Callable[[Progress], None] | None = None,
             finish: bool = True) -> Iterator[FlowBatch]:
        """Yield flow batches for the captures (paths, '-' for stdin), then flush the table.

        A capture that cannot be read to its end is recorded in ``errors`` (flows read
        before the damage are kept) and reading goes on with the next capture.
        """
        eng = self.engine
        for path in captures:
            yield from self._read_one(eng, path, progress)
        if finish:
            # in batches: each step's records are handed over whole (no copy)
            while True:
                left = eng.finish(END_OF_INPUT, max(1, self.batch_size - eng.queued()))
                if eng.queued():
                    yield FlowBatch(eng.take_raw())
                if not left:
                    break

    def _read_one(self, eng: _ext.Engine, path: str,
                  progress: Callable[[Progress], None] | None) -> Iterator[FlowBatch]:
        try:
            src = open_source(path)
        except OSError as exc:
            self.errors.append(CaptureError(path, f"cannot open: {exc.strerror or exc}"))
            return
        eng.begin_capture()
        tail = b""
        step = 1 << 18
        rc = _ext.RUN_EOF
        try:
            for data, final, stream_err in _chunks_with_end(src):
                buf = data if not tail else tail + bytes(data)
                # a whole file mapping: the engine may unmap the pages it has read as it goes
                eng.feed(buf, final, src.mapped is not None and buf is data)
                while True:
                    rc = eng.run(self.batch_size, step)
                    if eng.queued() >= self.batch_size:
                        yield FlowBatch(eng.take_raw())
                    if progress is not None:
                        progress(Progress(src.name, eng.offset(), src.size, eng.counters()["packets_read"]))
                    if rc not in (_ext.RUN_BATCH, _ext.RUN_YIELD):
                        break
                if rc == _ext.RUN_NOMEM:
                    raise MemoryError("out of memory in the flow engine")
                if stream_err is not None:
                    self.errors.append(CaptureError(src.name, _stream_message(stream_err), eng.offset()))
                    return
                if rc == _ext.RUN_NEED_MORE:
                    tail = bytes(memoryview(buf)[eng.consumed():])
                    continue
                if rc == _ext.RUN_ERROR:
                    msg, off = eng.error()
                    self.errors.append(CaptureError(src.name, msg, off))
                return
        finally:
            eng.begin_capture()  # drop the reader's reference to the buffer before unmapping
            src.close()


def _stream_message(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "compressed stream ends early (truncated gzip file)"
    return f"cannot decompress or read: {exc}"


def _chunks_with_end(src) -> Iterator[tuple[bytes | memoryview, bool, BaseException | None]]:
    """The source's chunks, each with whether it is the last, and a read error that ended it."""
    it = src.chunks()
    try:
        prev = next(it, None)
    except (OSError, EOFError) as exc:
        yield b"", True, exc
        return
    if prev is None:
        yield b"", True, None
        return
    while True:
        try:
            cur = next(it, None)
        except (OSError, EOFError) as exc:
            yield prev, True, exc
            return
        if cur is None:
            yield prev, True, None
            return
        yield prev, False, None
        prev = cur


def conn_state_name(index: int) -> str:
    return CONN_STATES[index]
