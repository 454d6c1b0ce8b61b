"""Times: --since/--until values, ISO 8601 in and out."""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone

__all__ = ["parse_when", "parse_iso", "iso"]

_REL = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_iso(text: str) -> float:
    """ISO 8601 (with Z or an offset; naive = UTC) -> seconds since the epoch."""
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def parse_when(text: str, now: float | None = None) -> float:
    """A --since/--until value: ISO 8601 date or time, seconds since the epoch, or a duration back
    from now ('90m', '24h', '7d')."""
    t = text.strip()
    m = _REL.match(t)
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return float(t)
    except ValueError:
        pass
    try:
        return parse_iso(t)
    except ValueError:
        raise ValueError(f"not a time (ISO 8601, epoch seconds or e.g. 24h): {text!r}") from None


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
