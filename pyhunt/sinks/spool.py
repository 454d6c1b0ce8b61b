"""A bounded on-disk spool of ready bulk bodies, for when Elasticsearch is unreachable.

Each segment is one bulk request body (action line + document line per item), written to a
temporary name and renamed, so a crash leaves whole segments only. Names sort in write order and
carry the document count: ``<time_ns>-<seq>-<ndocs>.bulk``. A later run finds the segments and
sends them first (resume).
"""
from __future__ import annotations

import os
import pathlib
import threading
import time

__all__ = ["Spool", "Segment"]


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Segment:
    """One spooled bulk body on disk."""

    __slots__ = ("path", "ndocs", "nbytes")

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.ndocs = int(path.stem.rsplit("-", 1)[1])
        self.nbytes = path.stat().st_size

    def entries(self) -> list[bytes]:
        """The items: action and document lines together, each ending in a newline."""
        lines = self.path.read_bytes().split(b"\n")
        return [lines[i] + b"\n" + lines[i + 1] + b"\n" for i in range(0, len(lines) - 1, 2)]


class Spool:
    """Segments under ``directory``, at most ``max_bytes`` in all; what does not fit is dropped."""

    def __init__(self, directory: str | os.PathLike, max_bytes: int):
        self.dir = pathlib.Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._seq = 0
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob("*.tmp"):  # a write interrupted by a crash
            stale.unlink(missing_ok=True)

    def segments(self) -> list[Segment]:
        out = []
        for p in sorted(self.dir.glob("*.bulk")):
            try:
                out.append(Segment(p))
            except (OSError, ValueError, IndexError):
                continue
        return out

    def pending(self) -> tuple[int, int]:
        """(documents, bytes) waiting in the spool."""
        segs = self.segments()
        return sum(s.ndocs for s in segs), sum(s.nbytes for s in segs)

    def put(self, entries: list[bytes], ndocs: int) -> bool:
        """Write a segment; False (nothing written) when it would exceed the bound."""
        body = b"".join(entries)
        with self._lock:
            if self.pending()[1] + len(body) > self.max_bytes:
                return False
            self._seq += 1
            name = f"{time.time_ns():020d}-{os.getpid():07d}{self._seq:06d}-{ndocs}"
            tmp = self.dir / f"{name}.tmp"
            with open(tmp, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / f"{name}.bulk")
            _fsync_dir(self.dir)  # the rename itself survives a power loss (callers checkpoint after put)
        return True
