"""Tail every ``*.log`` of Zeek's log directory: complete lines only, rotation followed by inode.

Zeek writes ``<log>.log`` and at rotation renames it to ``<log>.<YYYY-MM-DD-HH-MM-SS>.log`` and
opens a new ``<log>.log``. A file is known by (device, inode), so a rename keeps its offset and a
new file with the old name starts at 0. Reads are chunked and a partial last line waits for its
newline (except in a rotated file, which Zeek has closed). Offsets are kept twice: ``offset`` (read
and handed on) and ``committed`` (accepted downstream, saved in the checkpoint file); ``rewind``
goes back to the committed one. The checkpoint file is replaced atomically (tmp, fsync, rename,
fsync of the directory).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field

__all__ = ["TailedFile", "Tailer", "log_name", "is_rotated", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "zeek-checkpoints.json"
_ROTATED = re.compile(r"^(?P<log>[^.]+)\.\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d\.log$")
_HEAD_BYTES = 256  # a digest of the first bytes tells a reused inode from the file it had


def log_name(filename: str) -> str:
    """``conn.log`` and ``conn.2024-01-15-10-00-00.log`` -> ``conn``; lower case, [a-z0-9_] only."""
    base = filename.split(".", 1)[0].lower()
    return re.sub(r"[^a-z0-9_]", "_", base) or "unknown"


def is_rotated(filename: str) -> bool:
    return _ROTATED.match(filename) is not None


def _head_digest(data: bytes) -> str:
    """``<n>:<digest of the first n bytes>``; n is below _HEAD_BYTES only for a file that was short."""
    data = data[:_HEAD_BYTES]
    return f"{len(data)}:{hashlib.blake2b(data, digest_size=8).hexdigest()}"


@dataclass
class TailedFile:
    """One log file being followed."""
    dev: int
    ino: int
    name: str
    log: str
    offset: int = 0          # read and handed on
    committed: int = 0       # accepted downstream (what the checkpoint says)
    size: int = 0            # at the last scan
    head: str = ""           # digest of the first bytes (checked against the checkpoint)
    rotated: bool = False
    gone: bool = False       # no longer in the directory
    pending_since: float | None = None  # wall time since which unshipped bytes exist
    state: dict = field(default_factory=dict)  # the parser's per-file state (TSV headers)

    @property
    def key(self) -> str:
        return f"{self.dev}:{self.ino}"


class Tailer:
    """The files of ``directory`` and their offsets; ``checkpoint_path`` holds the committed ones."""

    def __init__(self, directory: str | os.PathLike, checkpoint_path: str | os.PathLike, *,
                 chunk_bytes: int = 1 << 20, max_line_bytes: int = 8 << 20):
        self.dir = os.fspath(directory)
        self.checkpoint_path = os.fspath(checkpoint_path)
        self.chunk_bytes = chunk_bytes
        self.max_line_bytes = max_line_bytes
        self.files: dict[tuple[int, int], TailedFile] = {}
        self.warnings: list[str] = []  # one line each, for the caller to print
        self._saved: dict[str, dict] = self._load()
        self._last_saved: dict[str, dict] | None = None

    # -- checkpoints ------------------------------------------------------------------------------
    def _load(self) -> dict[str, dict]:
        try:
            with open(self.checkpoint_path, "rb") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self.warnings.append(f"ignoring the unreadable checkpoint file {self.checkpoint_path}: {exc}")
            return {}
        files = data.get("files") if isinstance(data, dict) else None
        return files if isinstance(files, dict) else {}

    def save(self) -> None:
        """Write the committed offsets of the files still there (atomically, durably)."""
        files = {t.key: {"name": t.name, "log": t.log, "offset": t.committed, "head": t.head}
                 for t in self.files.values() if not t.gone}
        if files == self._last_saved:
            return  # nothing moved: no write, no fsync
        body = json.dumps({"version": 1, "files": files}, indent=0, sort_keys=True).encode()
        d = os.path.dirname(self.checkpoint_path) or "."
        os.makedirs(d, exist_ok=True)
        tmp = f"{self.checkpoint_path}.tmp"
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.checkpoint_path)
        self._last_saved = files
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- the directory ----------------------------------------------------------------------------
    def scan(self, now: float) -> list[TailedFile]:
        """Stat every ``*.log``; new files start at their checkpoint (if it is theirs) or 0.
        Returns the files with unread bytes, rotated ones first (oldest data first)."""
        seen: set[tuple[int, int]] = set()
        try:
            entries = list(os.scandir(self.dir))
        except FileNotFoundError:
            entries = []
        for e in entries:
            if not e.name.endswith(".log"):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            ident = (st.st_dev, st.st_ino)
            seen.add(ident)
            t = self.files.get(ident)
            if t is None:
                t = self.files[ident] = self._adopt(st, e.name)
            t.name, t.size, t.gone = e.name, st.st_size, False
            t.rotated = is_rotated(e.name)
            if t.size < t.committed or t.size < t.offset:  # truncated in place: start again
                self.warnings.append(f"{e.name} shrank below its offset {t.offset}: reading it from the start")
                t.offset = t.committed = 0
                t.state.clear()
            if t.size > t.committed and t.pending_since is None:
                t.pending_since = now
        for ident, t in self.files.items():
            if ident not in seen:
                t.gone = True
        for ident in [i for i, t in self.files.items() if t.gone and t.offset == t.committed]:
            t = self.files.pop(ident)
            if t.size > t.committed:
                self.warnings.append(f"{t.name} left the directory with {t.size - t.committed} bytes not "
                                     "shipped (moved or deleted by someone else)")
        todo = [t for t in self.files.values() if not t.gone and t.size > t.offset]
        return sorted(todo, key=lambda t: (not t.rotated, t.name))

    def _adopt(self, st: os.stat_result, name: str) -> TailedFile:
        t = TailedFile(st.st_dev, st.st_ino, name, log_name(name))
        saved = self._saved.pop(t.key, None)
        if saved is None:
            return t
        try:
            n = int(str(saved.get("head", "0:")).split(":", 1)[0])
            with open(os.path.join(self.dir, name), "rb") as f:
                head = _head_digest(f.read(min(max(n, 0), _HEAD_BYTES)))
        except (OSError, ValueError):
            return t
        off = saved.get("offset")
        if saved.get("head") == head and isinstance(off, int) and 0 <= off <= st.st_size:
            t.offset = t.committed = off
            t.head = head
        else:
            self.warnings.append(f"{name}: the checkpoint of inode {st.st_ino} belongs to another file; "
                                 "reading it from the start")
        return t

    # -- reading ----------------------------------------------------------------------------------
    def read_lines(self, t: TailedFile, max_lines: int) -> list[tuple[int, bytes]]:
        """Up to ``max_lines`` complete lines after ``t.offset`` as (end offset, line without newline);
        advances ``t.offset``. A line longer than ``max_line_bytes`` is skipped (returned as b"")."""
        out: list[tuple[int, bytes]] = []
        try:
            f = open(os.path.join(self.dir, t.name), "rb")
        except FileNotFoundError:
            return out
        try:
            st = os.fstat(f.fileno())
            if (st.st_dev, st.st_ino) != (t.dev, t.ino):  # renamed since the scan: next scan
                return out
            if not t.head and t.offset == 0:
                t.head = _head_digest(os.pread(f.fileno(), _HEAD_BYTES, 0))
            closed = is_rotated(t.name)
            pos = t.offset
            while len(out) < max_lines:
                buf = os.pread(f.fileno(), self.chunk_bytes, pos)
                if not buf:
                    break
                end = buf.rfind(b"\n")
                if end < 0:
                    if len(buf) < self.chunk_bytes:  # a partial line at the end of the file
                        if closed:  # Zeek closed the file: its last line is complete
                            out.append((pos + len(buf), buf))
                            pos += len(buf)
                        break
                    nxt = self._long_line(f.fileno(), pos, closed, out)
                    if nxt is None:
                        break
                    pos = nxt
                    continue
                start = 0
                while start <= end and len(out) < max_lines:
                    nl = buf.index(b"\n", start)
                    out.append((pos + nl + 1, buf[start:nl]))
                    start = nl + 1
                pos += start
        finally:
            f.close()
        t.offset = pos
        return out

    def _long_line(self, fd: int, pos: int, closed: bool, out: list) -> int | None:
        """A line longer than a chunk (none of whose bytes is a newline): read it whole if it ends within
        ``max_line_bytes``; a longer one is skipped, handed on as b"" (the caller counts a bad line).
        None: it has no newline yet."""
        scanned = pos + self.chunk_bytes
        while scanned - pos < self.max_line_bytes:
            buf = os.pread(fd, self.chunk_bytes, scanned)
            nl = buf.find(b"\n")
            if nl >= 0 or (closed and len(buf) < self.chunk_bytes):
                end = scanned + (nl if nl >= 0 else len(buf))
                out.append((end + (nl >= 0), os.pread(fd, end - pos, pos)))
                return end + (nl >= 0)
            if len(buf) < self.chunk_bytes:
                return None
            scanned += len(buf)
        out.append((scanned, b""))  # longer than any Zeek record: skip what was scanned
        return scanned

    def header_lines(self, t: TailedFile, limit: int = 64 << 10) -> list[bytes]:
        """The ``#`` lines at the start of a file (TSV headers), for resuming in the middle of it."""
        try:
            with open(os.path.join(self.dir, t.name), "rb") as f:
                data = f.read(limit)
        except OSError:
            return []
        out = []
        for line in data.split(b"\n")[:-1]:
            if not line.startswith(b"#"):
                break
            out.append(line)
        return out

    # -- committing -------------------------------------------------------------------------------
    def commit(self, now: float) -> list[TailedFile]:
        """What was read is accepted downstream: committed = offset. Returns rotated files now
        shipped entirely (the caller deletes them after saving)."""
        done = []
        for t in self.files.values():
            t.committed = t.offset
            if t.committed >= t.size:
                t.pending_since = None
            if t.rotated and not t.gone and t.committed >= t.size:
                done.append(t)
        return done

    def rewind(self) -> None:
        """What was read since the last commit was not accepted: read it again."""
        for t in self.files.values():
            t.offset = t.committed
            t.state.clear()

    def forget(self, t: TailedFile) -> None:
        self.files.pop((t.dev, t.ino), None)
