"""The Zeek log shipper: tail the directory, map each line to ECS, send it, checkpoint what was accepted.

``ZeekShipper(log_dir, state_dir, writer, ...)``; the sensor calls ``poll()`` in a loop (or ``run``),
``stats()`` for its metrics, and ``close()`` at shutdown. One poll reads at most ``max_lines``
complete lines, hands them to the Elasticsearch writer as ``create`` items whose ``_id`` is a hash of
the log name and the raw line, then flushes the writer: every line is then indexed, a duplicate
(409), dead-lettered or in the writer's durable spool, and only then are the offsets committed and
``<state_dir>/zeek-checkpoints.json`` saved. If the spool was full (documents dropped), the offsets
go back and the lines are read again on the next poll. A restart resumes at the checkpoint; lines
between the checkpoint and a crash are sent again and answered 409, so each line is stored once.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from pyhunt.zeek.ecs import to_document
from pyhunt.zeek.parse import LineError, TsvHeader, iso, parse_json
from pyhunt.zeek.tail import CHECKPOINT_NAME, TailedFile, Tailer

__all__ = ["ZeekShipper", "ZeekStats", "line_id", "index_for"]


def line_id(log: str, line: bytes) -> str:
    """The ``_id`` of a line: blake2b-128 of the log name and the raw line, base64url (22 characters)."""
    h = hashlib.blake2b(log.encode() + b"\0" + line, digest_size=16).digest()
    return base64.urlsafe_b64encode(h).rstrip(b"=").decode()


def index_for(log: str, namespace: str, ts: float) -> str:
    """``zeek-<log>-<namespace>-YYYY.MM.DD`` (UTC day of ``ts``)."""
    return f"zeek-{log}-{namespace}-{time.strftime('%Y.%m.%d', time.gmtime(ts))}"


@dataclass
class ZeekStats:
    """Counters for the metrics (``pyhunt_zeek_*``); per-log dicts are keyed by log name."""
    lines_shipped: dict[str, int] = field(default_factory=dict)  # accepted downstream (committed)
    parse_errors: dict[str, int] = field(default_factory=dict)   # lines skipped: not a Zeek record
    lag_seconds: dict[str, float] = field(default_factory=dict)  # age of the oldest line not yet shipped
    files_followed: int = 0                                      # *.log files being tailed
    files_deleted: int = 0                                       # rotated files removed once shipped
    polls: int = 0
    last_progress: float = 0.0                                   # wall time of the last completed poll


class ZeekShipper:
    """Ship the Zeek logs of ``log_dir`` through ``writer`` (a pyhunt BulkWriter, already open)."""

    def __init__(self, log_dir: str | os.PathLike, state_dir: str | os.PathLike, writer, *,
                 namespace: str | None = None, observer: str | None = None, max_lines: int = 20_000,
                 max_lines_per_file: int = 5_000, delete_rotated: bool = True,
                 warn: Callable[[str], None] | None = None, clock: Callable[[], float] = time.time):
        self.writer = writer
        self.namespace = namespace or writer.settings.namespace
        self.observer = observer or socket.gethostname()
        self.max_lines = max_lines
        self.max_lines_per_file = max_lines_per_file
        self.delete_rotated = delete_rotated
        self.clock = clock
        self._warn = warn or (lambda msg: sys.stderr.write(f"pyhunt: warning: zeek: {msg}\n"))
        self._last_warn: dict[str, float] = {}
        self.tailer = Tailer(log_dir, os.path.join(os.fspath(state_dir), CHECKPOINT_NAME))
        self._stats = ZeekStats()
        self._uncommitted: dict[str, int] = {}
        self._hold, self._hold_until = 0.0, 0.0  # back-off after a full spool
        self._lock = threading.Lock()
        self._flush_warnings()

    # -- one round --------------------------------------------------------------------------------
    def poll(self) -> int:
        """Read, send and commit what is new; returns the number of lines read."""
        now = self.clock()
        if now < self._hold_until:  # the spool was full: let the writer catch up first
            self._update_gauges(now)
            return 0
        todo = self.tailer.scan(now)
        budget, nread = self.max_lines, 0
        for t in todo:
            if budget <= 0:
                break
            first = t.offset == t.committed  # these lines start with the oldest one not yet shipped
            lines = self.tailer.read_lines(t, min(budget, self.max_lines_per_file))
            budget -= len(lines)
            nread += len(lines)
            entries: list[bytes] = []
            self._convert(t, lines, entries, first)
            if entries:  # file by file: the writer sends (and holds back) while the next file is read
                self.writer.write_entries(entries)
        self._flush_warnings()
        self._commit(now)
        return nread

    def _convert(self, t: TailedFile, lines: list[tuple[int, bytes]], entries: list[bytes], first: bool) -> None:
        log, ns = t.log, self.namespace
        for end, line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line.strip():  # Zeek writes no empty lines; b"" also stands for a skipped overlong line
                self._parse_error(t, end - len(line) - 1, "empty or overlong line")
                continue
            if line.startswith(b"#"):
                self._tsv_header(t, line)
                continue
            try:
                if line.startswith(b"{"):
                    rec = parse_json(line)
                else:
                    hdr = self._tsv(t)
                    rec = hdr.parse(line)
                doc, ts = to_document(log, rec, self.observer)
                if ts is None:  # a log without ts: the time it was read
                    ts = self.clock()
                    doc = {"@timestamp": iso(ts), **doc}
                body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
            except (LineError, ValueError, TypeError, ArithmeticError, RecursionError) as exc:
                self._parse_error(t, end - len(line) - 1, str(exc))
                continue
            if first:  # the oldest unshipped line's own time, when it is older than when we saw it
                first = False
                if t.pending_since is not None and ts < t.pending_since:
                    t.pending_since = ts
            action = ('{"create":{"_index":"%s","_id":"%s"}}\n' % (index_for(log, ns, ts), line_id(log, line))).encode()
            entries.append(action + body + b"\n")
            self._uncommitted[log] = self._uncommitted.get(log, 0) + 1

    def _tsv(self, t: TailedFile) -> TsvHeader:
        hdr = t.state.get("tsv")
        if hdr is None:  # resuming in the middle of a TSV file: its headers are at the start
            hdr = t.state["tsv"] = TsvHeader()
            for h in self.tailer.header_lines(t):
                hdr.header(h)
        return hdr

    def _tsv_header(self, t: TailedFile, line: bytes) -> None:
        hdr = t.state.get("tsv")
        if hdr is None:
            hdr = t.state["tsv"] = TsvHeader()
        hdr.header(line)

    def _parse_error(self, t: TailedFile, offset: int, why: str) -> None:
        with self._lock:
            self._stats.parse_errors[t.log] = self._stats.parse_errors.get(t.log, 0) + 1
        self._warn_limited(f"parse:{t.log}",
                           f"{t.name} at byte {max(offset, 0)}: skipped a line that is not a Zeek record: {why}")

    def _warn_limited(self, key: str, msg: str) -> None:
        """At most one warning line per ``key`` every 10 seconds."""
        now = time.monotonic()
        if now - self._last_warn.get(key, -1e9) >= 10:
            self._last_warn[key] = now
            self._warn(msg)

    def _flush_warnings(self) -> None:
        for w in self.tailer.warnings:
            self._warn(w)
        self.tailer.warnings.clear()

    def _commit(self, now: float) -> None:
        """Flush the writer; commit and checkpoint unless documents were dropped (spool full)."""
        dropped = self.writer.stats.dropped
        self.writer.flush()
        if self.writer.stats.dropped != dropped:
            self.tailer.rewind()
            self._uncommitted.clear()
            self._hold = min(max(2 * self._hold, 1.0), 30.0)
            self._hold_until = now + self._hold
            self._warn_limited("spool", f"the Elasticsearch spool is full: the lines will be read again in "
                                        f"{self._hold:.0f} s")
            self._update_gauges(now)
            return
        self._hold = 0.0
        done = self.tailer.commit(now)
        with self._lock:
            for log, n in self._uncommitted.items():
                self._stats.lines_shipped[log] = self._stats.lines_shipped.get(log, 0) + n
        self._uncommitted.clear()
        try:
            self.tailer.save()
        except OSError as exc:  # the lines are accepted; a restart would send them again (409s)
            self._warn_limited("save", f"cannot write {self.tailer.checkpoint_path}: {exc.strerror or exc}")
            done = []  # keep rotated files until a checkpoint says they were shipped
        if self.delete_rotated and done:
            for t in done:
                try:
                    os.unlink(os.path.join(self.tailer.dir, t.name))
                    deleted = 1
                except FileNotFoundError:
                    deleted = 0
                except OSError as exc:
                    self._warn_limited(f"unlink:{t.name}", f"cannot delete the shipped file {t.name}: "
                                                           f"{exc.strerror or exc}")
                    continue
                with self._lock:
                    self._stats.files_deleted += deleted
                self.tailer.forget(t)
            try:
                self.tailer.save()
            except OSError:
                pass  # said above; the next commit tries again
        self._update_gauges(now)

    def _update_gauges(self, now: float) -> None:
        lag: dict[str, float] = {}
        for t in self.tailer.files.values():
            if t.pending_since is not None and not t.gone:
                lag[t.log] = max(lag.get(t.log, 0.0), max(0.0, now - t.pending_since))
        with self._lock:
            for log in set(self._stats.lines_shipped) | set(lag) | set(self._stats.parse_errors):
                self._stats.lag_seconds[log] = round(lag.get(log, 0.0), 3)
            self._stats.files_followed = sum(1 for t in self.tailer.files.values() if not t.gone)
            self._stats.polls += 1
            self._stats.last_progress = now

    # -- the loop ---------------------------------------------------------------------------------
    def stats(self) -> ZeekStats:
        """A copy of the counters (safe to call from another thread)."""
        with self._lock:
            s = self._stats
            return ZeekStats(dict(s.lines_shipped), dict(s.parse_errors), dict(s.lag_seconds),
                             s.files_followed, s.files_deleted, s.polls, s.last_progress)

    def caught_up(self) -> bool:
        """Nothing left to read in the directory (as of the last poll)."""
        return all(t.gone or t.committed >= t.size for t in self.tailer.files.values())

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Poll until ``stop`` is set; a poll that read a full budget is followed at once by the next."""
        while not stop.is_set():
            n = self.poll()
            if n < self.max_lines:
                stop.wait(interval)

    def close(self) -> ZeekStats:
        """Commit what was read (the writer is the caller's to close)."""
        self._commit(self.clock())
        return self.stats()
