"""Zeek log lines -> dicts of Zeek field name -> value, for JSON and TSV ("ASCII") logs.

JSON lines are objects already (timestamps as epoch numbers or ISO 8601 strings, as
``LogAscii::json_timestamps`` chose). TSV lines need the file's ``#`` headers: ``#separator``,
``#set_separator``, ``#empty_field``, ``#unset_field``, ``#fields`` and ``#types``; values are
converted by their Zeek type so a TSV record equals the JSON record Zeek would have written
(``time`` as epoch seconds, ``bool`` as true/false, sets and vectors as lists, unset fields absent).
"""
from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Any, Callable

__all__ = ["LineError", "TsvHeader", "parse_json", "epoch", "iso"]


class LineError(ValueError):
    """A line that is not a Zeek record: counted and skipped by the shipper."""


def parse_json(line: bytes) -> dict:
    """One JSON log line -> its object."""
    try:
        rec = json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise LineError(f"not JSON ({str(exc)[:80]})") from None
    if not isinstance(rec, dict):
        raise LineError("not a JSON object")
    return rec


def _no_constant(name: str):
    raise ValueError(f"{name} is not a Zeek value")


_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")


def _unescape(raw: bytes) -> str:
    """Zeek escapes the separator and non-printable bytes as ``\\xHH``."""
    if b"\\x" in raw:
        raw = _ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), raw)
    return raw.decode("utf-8", "backslashreplace")


def _int(raw: bytes) -> int:
    return int(raw)


def _float(raw: bytes) -> float | None:
    v = float(raw)
    return v if math.isfinite(v) else None


def _bool(raw: bytes) -> bool:
    if raw == b"T":
        return True
    if raw == b"F":
        return False
    raise ValueError(f"not a bool: {raw[:20]!r}")


def _port(raw: bytes) -> int:
    v = int(raw)
    if not 0 <= v <= 65535:
        raise ValueError(f"port out of range: {v}")
    return v


#: Zeek type -> converter of one TSV value (types not listed stay strings)
_SCALARS: dict[str, Callable[[bytes], Any]] = {
    "count": _int, "int": _int, "port": _port, "time": _float, "interval": _float, "double": _float,
    "bool": _bool,
}


class TsvHeader:
    """The ``#`` header state of one TSV log file; ``parse`` converts a data line with it."""

    def __init__(self) -> None:
        self.separator = b"\t"
        self.set_separator = b","
        self.empty = b"(empty)"
        self.unset = b"-"
        self.path = ""
        self.fields: list[str] = []
        self._conv: list[tuple[Callable[[bytes], Any] | None, bool]] = []

    def header(self, line: bytes) -> None:
        """Take one ``#`` line (unknown directives, ``#open``, ``#close`` and comments are ignored)."""
        if line.startswith(b"#separator"):
            # "#separator \x09": the one line whose own separator is a space
            val = line[len(b"#separator"):].strip(b" ")
            self.separator = _ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), val) or b"\t"
            return
        key, _, rest = line[1:].partition(self.separator)
        if key == b"set_separator":
            self.set_separator = rest
        elif key == b"empty_field":
            self.empty = rest
        elif key == b"unset_field":
            self.unset = rest
        elif key == b"path":
            self.path = rest.decode("utf-8", "replace")
        elif key == b"fields":
            self.fields = [f.decode("utf-8", "replace") for f in rest.split(self.separator)]
        elif key == b"types":
            self._conv = []
            for t in rest.decode("ascii", "replace").split(self.separator.decode("latin-1")):
                container = t.startswith(("set[", "vector[", "table["))
                inner = t[t.index("[") + 1:-1] if container else t
                self._conv.append((_SCALARS.get(inner), container))

    def parse(self, line: bytes) -> dict:
        """One data line -> {field: value} (unset fields absent)."""
        if not self.fields:
            raise LineError("a TSV data line before any #fields header")
        vals = line.split(self.separator)
        if len(vals) != len(self.fields):
            raise LineError(f"{len(vals)} values for {len(self.fields)} fields")
        conv = self._conv if len(self._conv) == len(self.fields) else [(None, False)] * len(self.fields)
        out: dict[str, Any] = {}
        try:
            for name, raw, (fn, container) in zip(self.fields, vals, conv):
                if raw == self.unset:
                    continue
                if container:
                    items = [] if raw == self.empty else raw.split(self.set_separator)
                    out[name] = [fn(i) if fn else _unescape(i) for i in items]
                elif fn is not None:
                    v = fn(raw)
                    if v is not None:
                        out[name] = v
                else:
                    out[name] = "" if raw == self.empty else _unescape(raw)
        except ValueError as exc:
            raise LineError(f"field {name}: {str(exc)[:80]}") from None
        return out


_MAX_EPOCH = 253_402_300_800.0  # 10000-01-01: beyond it no date type can hold the time


def epoch(value: Any) -> float | None:
    """A Zeek time (epoch number or ISO 8601 string) -> epoch seconds; None if it is neither or is
    outside 1970..9999."""
    t: float | None = None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        t = float(value)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            t = dt.timestamp()
        except (ValueError, OverflowError):
            try:
                t = float(value)
            except ValueError:
                return None
    if t is None or not (0.0 <= t < _MAX_EPOCH):  # also NaN
        return None
    return t


def iso(t: float) -> str:
    """Epoch seconds -> ISO 8601 UTC with microseconds (the form of the flow documents)."""
    us = round(t * 1_000_000)
    sec, frac = divmod(us, 1_000_000)
    dt = datetime.fromtimestamp(sec, timezone.utc)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{frac:06d}Z"
