"""Offline input: pyhunt NDJSON (ECS or zeek-json) and Zeek conn.log / dns.log (JSON or TSV).

Files are read line by line (gzip'd ones too) and each line is recognised on its own, so a hunt sees
a stream of :class:`Conn` and :class:`Dns` rows and keeps only its per-key aggregates. Hunts that need
two passes (beacons) read the files twice instead of keeping rows.
"""
from __future__ import annotations

import gzip
import json
from typing import Iterable, Iterator

from pyhunt.hunts.common import Conn, Dns
from pyhunt.hunts.timeutil import parse_iso

__all__ = ["OfflineSource", "InputError"]


class InputError(Exception):
    """An input file that cannot be read at all (a bad line is counted and skipped instead)."""


def _open(path: str):
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
        return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _get(d: dict, dotted: str):
    """d['a']['b'] for 'a.b', accepting flattened keys too ('a.b' as one key)."""
    if dotted in d:
        return d[dotted]
    cur = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _int(v) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def _ecs_ts(d: dict) -> float:
    t = _get(d, "@timestamp")
    return parse_iso(t) if isinstance(t, str) else _float(t)


def _from_json(d: dict) -> Conn | Dns | None:
    if "@timestamp" in d:  # ECS: a pyhunt flow, or a Zeek document as the sensor ships it
        q = _get(d, "dns.question.name")
        if q:
            return Dns(_ecs_ts(d), str(_get(d, "zeek.session_id") or ""), str(_get(d, "network.community_id") or ""),
                       str(_get(d, "source.ip") or ""), str(_get(d, "destination.ip") or ""), str(q))
        src = _get(d, "source.ip")
        if src is None:
            return None
        return Conn(_ecs_ts(d), str(_get(d, "event.id") or _get(d, "zeek.session_id") or ""),
                    str(_get(d, "network.community_id") or ""), str(src), _int(_get(d, "source.port")),
                    str(_get(d, "destination.ip") or ""), _int(_get(d, "destination.port")),
                    str(_get(d, "network.transport") or ""), _float(_get(d, "event.duration")) / 1e9,
                    _int(_get(d, "source.bytes")), _int(_get(d, "destination.bytes")),
                    str(_get(d, "zeek.connection.state") or ""))
    if "ts" in d and "id.orig_h" in d:  # Zeek JSON (pyhunt's zeek-json is the same)
        ts = parse_iso(d["ts"]) if isinstance(d["ts"], str) and "T" in d["ts"] else _float(d["ts"])
        if "query" in d:
            return Dns(ts, str(d.get("uid", "")), str(d.get("community_id", "")), d["id.orig_h"],
                       str(d.get("id.resp_h", "")), str(d["query"]))
        if "proto" in d or "conn_state" in d:
            return Conn(ts, str(d.get("uid", "")), str(d.get("community_id", "")), d["id.orig_h"],
                        _int(d.get("id.orig_p")), str(d.get("id.resp_h", "")), _int(d.get("id.resp_p")),
                        str(d.get("proto", "")), _float(d.get("duration")), _int(d.get("orig_ip_bytes")),
                        _int(d.get("resp_ip_bytes")), str(d.get("conn_state", "")))
    return None


class OfflineSource:
    """Rows from files; ``bad_lines`` counts lines that were neither a connection nor a DNS query."""

    kind = "offline"

    def __init__(self, paths: Iterable[str]):
        self.paths = list(paths)
        self.bad_lines = 0  # counted on the first read of each file (hunts read files more than once)
        self._counted: set[str] = set()
        for p in self.paths:
            _open(p).close()  # fail early, with the file's name

    def describe(self) -> str:
        return ", ".join(self.paths)

    def _rows(self) -> Iterator[Conn | Dns]:
        for path in self.paths:
            count = path not in self._counted
            try:
                yield from self._file_rows(path, count)
            except (OSError, EOFError) as exc:  # a truncated or corrupt gzip file, a read error
                raise InputError(f"cannot read {path}: {exc}") from None
            self._counted.add(path)

    def _file_rows(self, path: str, count: bool) -> Iterator[Conn | Dns]:
        with _open(path) as f:
            fields: list[str] | None = None
            sep = "\t"
            for raw in f:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    continue
                if line[0] == "#":
                    if line.startswith("#separator"):
                        sep = line.split(" ", 1)[1].encode().decode("unicode_escape") or "\t"
                    elif line.startswith("#fields"):
                        fields = line.split(sep)[1:]
                    continue
                row = None
                if line[0] == "{":
                    try:
                        row = _from_json(json.loads(line))
                    except (ValueError, TypeError, AttributeError):
                        row = None
                elif fields is not None:
                    vals = line.split(sep)
                    if len(vals) == len(fields):
                        d = {k: v for k, v in zip(fields, vals) if v not in ("-", "(empty)")}
                        try:
                            row = _from_json(d)
                        except (ValueError, TypeError):
                            row = None
                if row is None:
                    self.bad_lines += count
                else:
                    yield row

    def conns(self, since: float | None = None, until: float | None = None) -> Iterator[Conn]:
        for r in self._rows():
            if type(r) is Conn and (since is None or r.ts >= since) and (until is None or r.ts < until):
                yield r

    def dns(self, since: float | None = None, until: float | None = None) -> Iterator[Dns]:
        for r in self._rows():
            if type(r) is Dns and (since is None or r.ts >= since) and (until is None or r.ts < until):
                yield r
