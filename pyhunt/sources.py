"""Capture sources: how capture bytes reach the C reader.

Regular files are memory-mapped and handed over whole (zero copy). Gzip'd
files, stdin and pipes are streamed in chunks; the reader says how much it
consumed and the unconsumed tail is carried into the next chunk.
"""
from __future__ import annotations

import mmap
import os
import stat
import sys
from typing import BinaryIO, Iterator

__all__ = ["Source", "open_source", "CHUNK"]

CHUNK = 8 << 20
GZIP_MAGIC = b"\x1f\x8b"


class Source:
    """One capture input. ``size`` is the byte size when known (for progress)."""

    __slots__ = ("name", "size", "mapped", "stream", "_owned", "_view")

    def __init__(self, name: str, size: int | None, mapped: mmap.mmap | None = None,
                 stream: BinaryIO | None = None, _owned: BinaryIO | None = None):
        self.name, self.size, self.mapped, self.stream, self._owned = name, size, mapped, stream, _owned
        self._view: memoryview | None = None

    def __repr__(self) -> str:
        return f"Source({self.name!r}, size={self.size!r}, mapped={self.mapped is not None})"

    def chunks(self) -> Iterator[bytes | memoryview]:
        """The capture as one mapped buffer, or as successive stream chunks."""
        if self.mapped is not None:
            self._view = memoryview(self.mapped)
            yield self._view
            return
        assert self.stream is not None
        read1 = getattr(self.stream, "read1", None)
        while True:
            if read1 is None:
                chunk = self.stream.read(CHUNK)
            else:
                chunk = yield from self._gather(read1)
            if not chunk:
                return
            yield chunk

    @staticmethod
    def _gather(read1) -> Iterator[bytes]:
        """Up to CHUNK bytes by read1 calls, so that data decompressed before a damaged
        part of a gzip stream is delivered before the error is raised."""
        parts, size = [], 0
        while size < CHUNK:
            try:
                piece = read1(CHUNK - size)
            except (OSError, EOFError):
                if parts:
                    yield b"".join(parts)
                raise
            if not piece:
                break
            parts.append(piece)
            size += len(piece)
        return b"".join(parts)

    def close(self) -> None:
        if self._view is not None:
            self._view.release()  # the engine dropped its reference first (begin_capture)
            self._view = None
        if self.mapped is not None:
            self.mapped.close()
        if self.stream is not None and self.stream is not self._owned:
            self.stream.close()
        if self._owned is not None and self._owned is not sys.stdin.buffer:
            self._owned.close()


class _Peek:
    """A binary stream with a pushed-back prefix (to sniff gzip on pipes)."""

    def __init__(self, raw: BinaryIO, prefix: bytes):
        self.raw, self.prefix = raw, prefix

    def read(self, n: int = -1) -> bytes:
        if self.prefix:
            out, self.prefix = self.prefix, b""
            if n < 0:
                return out + self.raw.read()
            return out if len(out) >= n else out + self.raw.read(n - len(out))
        return self.raw.read(n)

    def close(self) -> None:
        pass


def _gzip():
    import gzip   # only for compressed captures
    return gzip


def open_source(path: str) -> Source:
    """Open a capture path ('-' is stdin). Raises OSError with a readable message."""
    if path == "-":
        raw: BinaryIO = sys.stdin.buffer
        head = raw.read(2)
        peek = _Peek(raw, head)
        if head == GZIP_MAGIC:
            return Source("<stdin>", None, stream=_gzip().GzipFile(fileobj=peek), _owned=raw)  # type: ignore[arg-type]
        return Source("<stdin>", None, stream=peek, _owned=raw)  # type: ignore[arg-type]
    f = open(path, "rb")
    try:
        st = os.fstat(f.fileno())
        head = f.read(2)
        if head == GZIP_MAGIC:
            f.seek(0)
            return Source(path, None, stream=_gzip().GzipFile(fileobj=f), _owned=f)
        if stat.S_ISREG(st.st_mode) and st.st_size > 0:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            if hasattr(m, "madvise"):
                m.madvise(mmap.MADV_SEQUENTIAL)
            f.close()
            return Source(path, st.st_size, mapped=m)
        f.seek(0) if stat.S_ISREG(st.st_mode) else None
        peek = f if stat.S_ISREG(st.st_mode) else _Peek(f, head)
        return Source(path, st.st_size if stat.S_ISREG(st.st_mode) else None, stream=peek, _owned=f)  # type: ignore[arg-type]
    except BaseException:
        f.close()
        raise
