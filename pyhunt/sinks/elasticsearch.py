"""The Elasticsearch bulk writer: flows in, every document indexed once, none lost.

Bodies are built around the C-serialized ECS NDJSON (``FlowBatch.to_ndjson("ecs")``): Python only adds
the action line (daily index by the flow's start, ``_id`` = the flow's uid, ``index`` op so a retry or
an interim update overwrites). Requests are cut by bytes and a few are in flight at once. 429/502/503/
504 (whole request or per item) are retried with exponential backoff and jitter; other per-item errors
go to a dead-letter file with the reason; when the cluster is unreachable, bodies go to a bounded disk
spool that is sent when it is back (or by the next run). The official client (``elasticsearch`` /
``elastic_transport``) owns connections, TLS and authentication; the batching is ours (see DESIGN.md).
"""
from __future__ import annotations

import json
import os
import pathlib
import random
import re
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from pyhunt.sinks.spool import Segment, Spool
from pyhunt.sinks.templates import FLOW_PREFIX, flow_templates, index_name, template_names

__all__ = ["ESSettings", "ESConfigError", "BulkWriter", "SinkStats", "make_client", "install_templates",
           "describe_error"]

RETRY_STATUSES = frozenset({429, 502, 503, 504})
DAY_NS = 86_400 * 1_000_000_000
_FILTER = "errors,items.*.status,items.*.error"


def _state_dir() -> pathlib.Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return pathlib.Path(base) / "pyhunt"


class ESConfigError(ValueError):
    """A setting that can never work (e.g. a URL scheme other than http/https): a usage error."""


@dataclass
class ESSettings:
    """Every Elasticsearch setting; the CLI option is ``--es-<name>`` and the environment variable
    ``PYHUNT_ES_<NAME>`` (``url`` is ``--es`` / ``PYHUNT_ES_URL``)."""
    url: str
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    namespace: str = "default"
    batch_bytes: int = 8 * 1024 * 1024
    concurrency: int = 2
    max_retries: int = 10
    timeout: float = 60.0
    spool: str = field(default_factory=lambda: str(_state_dir() / "es-spool"))
    spool_max_bytes: int = 1024 ** 3
    dead_letter: str = field(default_factory=lambda: str(_state_dir() / "es-dead-letter.ndjson"))

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ESConfigError(f"Elasticsearch URL must be http://HOST[:PORT] or https://...: {self.url!r}")
        if not re.fullmatch(r"[a-z0-9_]{1,64}", self.namespace):
            raise ESConfigError(f"--es-namespace must be lower-case letters, digits or '_': {self.namespace!r}")
        if self.ca_certs is not None and parts.scheme != "https":
            raise ESConfigError(f"--es-ca-certs needs an https:// URL, not {self.url!r}")
        if self.batch_bytes < 1024 or self.concurrency < 1 or self.max_retries < 0:
            raise ESConfigError("--es-batch-bytes must be at least 1024 and --es-concurrency at least 1")

    @staticmethod
    def names() -> list[str]:
        return [f.name for f in fields(ESSettings)]


def make_client(s: ESSettings):
    """The official client for the settings; retries are the writer's, so the client does none."""
    from elasticsearch import Elasticsearch
    kw: dict[str, Any] = {"request_timeout": s.timeout, "max_retries": 0, "retry_on_timeout": False,
                          "retry_on_status": (), "connections_per_node": s.concurrency + 2}
    if s.username is not None:
        kw["basic_auth"] = (s.username, s.password or "")
    if s.api_key is not None:
        kw["api_key"] = s.api_key
    if urlsplit(s.url).scheme == "https":
        kw["verify_certs"] = s.verify_certs
        if s.ca_certs is not None:
            if not os.path.isfile(s.ca_certs):
                raise OSError(f"CA file {s.ca_certs} does not exist")
            try:
                ssl.create_default_context(cafile=s.ca_certs)
            except ssl.SSLError as exc:
                raise OSError(f"CA file {s.ca_certs} is not a PEM certificate bundle "
                              f"({exc.reason or exc})") from None
            kw["ca_certs"] = s.ca_certs
        if not s.verify_certs:
            kw["ssl_show_warn"] = False
    return Elasticsearch(s.url, **kw)


def describe_error(exc: BaseException) -> str:
    """One line saying why a request failed (no traceback, no nested reprs)."""
    from elastic_transport import ConnectionError as TConnErr, TlsError
    from elasticsearch import ApiError
    if isinstance(exc, ApiError):
        return f"HTTP {exc.meta.status}: {str(exc.message)[:200]}"
    if isinstance(exc, TlsError):
        return f"TLS error ({_root_cause(exc)})"
    if isinstance(exc, TConnErr):
        return f"unreachable ({_root_cause(exc)})"
    return f"{type(exc).__name__}: {exc}"[:300]


def _root_cause(exc: BaseException) -> str:
    seen = exc
    while True:
        nxt = getattr(seen, "errors", None)
        nxt = nxt[0] if nxt else (seen.__cause__ or seen.__context__)
        if nxt is None or nxt is seen:
            break
        seen = nxt
    text = str(seen)
    for hint in ("Connection refused", "Name or service not known", "timed out", "CERTIFICATE_VERIFY_FAILED",
                 "WRONG_VERSION_NUMBER", "record layer failure", "No route to host"):
        if hint.lower() in text.lower() or hint.lower() in str(exc).lower():
            return hint.lower() if hint[0].islower() else hint
    return text.split("\n")[0][-160:]


def install_templates(client, namespace: str, **kw) -> list[str]:
    """Put the component and index templates (``es setup``); returns their names."""
    t = flow_templates(namespace, **kw)
    for name, body in t["component"].items():
        client.cluster.put_component_template(name=name, **body)
    for name, body in t["index"].items():
        client.indices.put_index_template(name=name, **body)
    return [*t["component"], *t["index"]]


@dataclass
class SinkStats:
    """What happened to the documents (the replay summary prints these)."""
    sent: int = 0           # indexed (created or overwritten)
    retried: int = 0        # document sends repeated after 429/502/503/504 or a timeout
    dead_lettered: int = 0  # rejected for good (e.g. mapping conflict), written to the dead-letter file
    spooled: int = 0        # written to the disk spool (cluster unreachable or retries exhausted)
    drained: int = 0        # taken from the spool and indexed (included in sent)
    dropped: int = 0        # spool full: lost, counted here
    pending: int = 0        # still in the spool at the end (sent by the next run)
    duplicates: int = 0     # ``create`` answered 409: the document was already there (a re-sent Zeek line)


class _Chunk:
    __slots__ = ("entries", "segment")

    def __init__(self, entries: list[bytes], segment: Segment | None = None):
        self.entries = entries
        self.segment = segment


class BulkWriter:
    """Send flow batches to Elasticsearch. ``open()``, ``write(records, ndjson)`` ..., ``close()``.

    ``failure`` holds the first reason the cluster could not be used (one line), else None.
    """

    probe_interval = 1.0
    backoff_base, backoff_cap = 0.25, 15.0

    def __init__(self, settings: ESSettings, client=None):
        self.settings = settings
        self.stats = SinkStats()
        self.failure: str | None = None
        self.client = client
        self._lock = threading.Lock()
        self._outage = threading.Event()
        self._broken = False  # the client cannot be built: spool everything
        self._last_probe = 0.0
        self._slots = threading.BoundedSemaphore(settings.concurrency)
        self._pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="pyhunt-es")
        self._futures: set = set()
        self._inflight_segments: set[pathlib.Path] = set()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._prefixes: dict[int, bytes] = {}
        self._dead = None
        self._templates_checked = False
        self._last_answer: float | None = None   # monotonic time of the cluster's last answer
        self._inflight: dict = {}                 # future (or id while waiting) -> chunk, for close_within
        self.spool = Spool(settings.spool, settings.spool_max_bytes)

    # -- setup ------------------------------------------------------------------------------------
    def open(self) -> "BulkWriter":
        """Connect, install the templates if absent, send what a previous run left in the spool."""
        if self.client is None:
            try:
                self.client = make_client(self.settings)
            except (OSError, ValueError) as exc:
                self._broken = True
                self._fail(f"cannot use {self.settings.url}: {str(exc).splitlines()[0][:200]}")
                self._outage.set()
                return self
        if self._probe():
            self._ensure_templates()
            self.drain()
        return self

    def _ensure_templates(self) -> None:
        from elasticsearch import ApiError, TransportError
        names = template_names(self.settings.namespace)
        try:
            if not self.client.indices.exists_index_template(name=names["index"][0]):
                install_templates(self.client, self.settings.namespace)
            self._templates_checked = True
        except ApiError as exc:  # e.g. no privilege: documents may still be indexable
            self._fail(f"cannot install the index templates ({describe_error(exc)}); run `pyhunt es setup`")
        except TransportError as exc:
            self._enter_outage(exc)

    def _probe(self) -> bool:
        """Is the cluster answering? Clears or sets the outage state."""
        from elasticsearch import ApiError, TransportError
        self._last_probe = time.monotonic()
        if self._broken:
            return False
        try:
            self.client.options(request_timeout=5).cluster.health()
            self._last_answer = time.monotonic()
        except ApiError as exc:
            self._last_answer = time.monotonic()
            if exc.meta.status in (401, 403):
                self._fail(f"Elasticsearch at {self.settings.url} refused the credentials ({describe_error(exc)})")
                self._outage.set()
                return False
        except (TransportError, OSError) as exc:
            self._enter_outage(exc)
            return False
        self._outage.clear()
        return True

    def _fail(self, line: str) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = line

    def _enter_outage(self, exc: BaseException) -> None:
        self._fail(f"Elasticsearch at {self.settings.url}: {describe_error(exc)}")
        self._outage.set()

    # -- building bodies --------------------------------------------------------------------------
    def _prefix(self, day: int) -> bytes:
        p = self._prefixes.get(day)
        if p is None:
            name = index_name(self.settings.namespace, time.strftime("%Y.%m.%d", time.gmtime(day * 86400)),
                              FLOW_PREFIX)
            p = self._prefixes[day] = b'{"index":{"_index":"' + name.encode() + b'","_id":"'
        return p

    def write(self, records, ndjson: bytes) -> None:
        """Queue the flows of one batch: ``records`` (numpy, for uid and start day) and their ECS NDJSON."""
        n = len(records)
        if not n:
            return
        from pyhunt import _ext
        lines = ndjson.split(b"\n")
        if len(lines) != n + 1:
            raise ValueError(f"{n} records but {len(lines) - 1} NDJSON lines")
        uid = _ext.uid
        days = (records["ts_start"] // DAY_NS).tolist()
        ids = records["flow_id"].tolist()
        if days[0] == days[-1] and min(days) == max(days):
            pre = self._prefix(days[0])
            entries = [b"".join((pre, uid(i).encode(), b'"}}\n', ln, b"\n")) for i, ln in zip(ids, lines)]
        else:
            pf = self._prefix
            entries = [b"".join((pf(d), uid(i).encode(), b'"}}\n', ln, b"\n")) for d, i, ln in zip(days, ids, lines)]
        self._add(entries)

    def write_entries(self, entries: list[bytes]) -> None:
        """Queue ready bulk items (action line + document line each)."""
        self._add(entries)

    def _add(self, entries: list[bytes]) -> None:
        limit = self.settings.batch_bytes
        pending, size = self._pending, self._pending_bytes
        for e in entries:
            pending.append(e)
            size += len(e)
            if size >= limit:
                self._submit(_Chunk(pending))
                pending, size = [], 0
        self._pending, self._pending_bytes = pending, size

    # -- sending ----------------------------------------------------------------------------------
    def _submit(self, chunk: _Chunk) -> None:
        if self._outage.is_set():
            if not self._broken and time.monotonic() - self._last_probe >= self.probe_interval and self._probe():
                self.drain()
            else:
                self._park(chunk, chunk.entries)
                return
        with self._lock:
            self._inflight[id(chunk)] = chunk   # waiting for a slot
        self._slots.acquire()
        if chunk.segment is not None:
            self._inflight_segments.add(chunk.segment.path)
        fut = self._pool.submit(self._send, chunk)
        with self._lock:
            self._futures.add(fut)
            self._inflight[fut] = self._inflight.pop(id(chunk))
        fut.add_done_callback(self._done)

    def _done(self, fut) -> None:
        with self._lock:
            self._futures.discard(fut)
            self._inflight.pop(fut, None)
        self._slots.release()

    def _count(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self.stats, k, getattr(self.stats, k) + v)

    def _backoff(self, attempt: int) -> None:
        delay = min(self.backoff_cap, self.backoff_base * (2 ** attempt))
        time.sleep(delay / 2 + random.uniform(0, delay / 2))  # "equal jitter"

    def _send(self, chunk: _Chunk) -> None:
        try:
            self._send_entries(chunk)
        except Exception as exc:  # never lose a chunk to a bug or an unexpected error: spool it
            self._fail(f"unexpected error sending to Elasticsearch: {describe_error(exc)}")
            self._park(chunk, chunk.entries)
        finally:
            if chunk.segment is not None:
                self._inflight_segments.discard(chunk.segment.path)

    def _send_entries(self, chunk: _Chunk) -> None:
        from elasticsearch import ApiError, ConnectionTimeout, TransportError
        entries, attempt = chunk.entries, 0
        from_spool = chunk.segment is not None
        while entries:
            if self._outage.is_set():
                self._park(chunk, entries)
                return
            try:
                resp = self.client.bulk(operations=b"".join(entries), filter_path=_FILTER)
                self._last_answer = time.monotonic()
            except ApiError as exc:
                self._last_answer = time.monotonic()
                status = exc.meta.status
                if status in RETRY_STATUSES and attempt < self.settings.max_retries:
                    attempt += 1
                    self._count(retried=len(entries))
                    self._backoff(attempt)
                    continue
                if status == 413 and len(entries) > 1:  # too large for http.max_content_length: halve
                    half = len(entries) // 2
                    self._send_entries(_Chunk(entries[:half]))
                    self._send_entries(_Chunk(entries[half:]))
                    self._finish(chunk, entries)
                    return
                if status in RETRY_STATUSES or status in (401, 403, 404):  # keep them for later
                    self._fail(f"Elasticsearch at {self.settings.url}: {describe_error(exc)}")
                    self._park(chunk, entries)
                    return
                for e in entries:
                    self._dead_letter(e, {"status": status, "error": {"type": "request_rejected",
                                                                      "reason": describe_error(exc)}})
                self._finish(chunk, entries)
                return
            except ConnectionTimeout as exc:
                if attempt < self.settings.max_retries:
                    attempt += 1
                    self._count(retried=len(entries))
                    self._backoff(attempt)
                    continue
                self._enter_outage(exc)
                self._park(chunk, entries)
                return
            except TransportError as exc:  # refused, reset, DNS, TLS: the cluster is not there
                self._enter_outage(exc)
                self._park(chunk, entries)
                return
            body = resp.body
            if not body.get("errors"):
                self._count(sent=len(entries), drained=len(entries) if from_spool else 0)
                break
            retry, ok, dup = [], 0, 0
            for e, item in zip(entries, body["items"]):
                r = next(iter(item.values()))
                st = r.get("status", 0)
                if st < 300:
                    ok += 1
                elif st == 409 and "create" in item:  # create-only documents (Zeek lines): already stored
                    dup += 1
                elif st in RETRY_STATUSES or st >= 500:
                    retry.append(e)
                else:
                    self._dead_letter(e, r)
            self._count(sent=ok, drained=ok if from_spool else 0, duplicates=dup)
            if retry and attempt >= self.settings.max_retries:
                self._fail(f"Elasticsearch kept rejecting documents ({len(retry)} spooled after "
                           f"{attempt} retries)")
                self._park(_Chunk(retry), retry)
                break
            if retry:
                attempt += 1
                self._count(retried=len(retry))
                self._backoff(attempt)
            entries = retry
        self._finish(chunk, [])

    def _finish(self, chunk: _Chunk, _entries) -> None:
        """The chunk is dealt with: a spool segment it came from can go."""
        if chunk.segment is not None:
            chunk.segment.path.unlink(missing_ok=True)

    def _park(self, chunk: _Chunk, entries: list[bytes]) -> None:
        """Keep entries on disk: a spooled chunk stays as it is; others become a new segment."""
        if chunk.segment is not None and entries is chunk.entries:
            return  # the segment file is still there
        if self.spool.put(entries, len(entries)):
            self._count(spooled=len(entries))
        else:
            self._fail(f"the spool {self.spool.dir} is full ({self.settings.spool_max_bytes} bytes): "
                       "documents dropped")
            self._count(dropped=len(entries))
        if chunk.segment is not None:
            chunk.segment.path.unlink(missing_ok=True)

    def _dead_letter(self, entry: bytes, result: dict) -> None:
        action, _, doc = entry.partition(b"\n")
        meta = next(iter(json.loads(action).values()), {})  # index or create
        rec = {"@timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "status": result.get("status"),
               "reason": (result.get("error") or {}).get("reason") if isinstance(result.get("error"), dict)
               else str(result.get("error")), "error": result.get("error"),
               "_index": meta.get("_index"), "_id": meta.get("_id")}
        line = json.dumps(rec)[:-1].encode() + b',"document":' + doc.rstrip(b"\n") + b"}\n"
        with self._lock:
            if self._dead is None:
                pathlib.Path(self.settings.dead_letter).parent.mkdir(parents=True, exist_ok=True)
                self._dead = open(self.settings.dead_letter, "ab")
            self._dead.write(line)
            self.stats.dead_lettered += 1

    def _wait(self) -> None:
        while True:
            with self._lock:
                futs = list(self._futures)
            if not futs:
                return
            for f in futs:
                f.result()

    # -- spool and end ----------------------------------------------------------------------------
    def drain(self) -> None:
        """Send the spooled segments (oldest first) while the cluster answers."""
        for seg in self.spool.segments():
            if self._outage.is_set():
                return
            if seg.path in self._inflight_segments:
                continue
            try:
                chunk = _Chunk(seg.entries(), seg)
            except OSError:
                continue
            self._submit(chunk)

    def flush(self) -> None:
        """Send what is queued and wait for every request in flight."""
        if self._pending:
            chunk, self._pending, self._pending_bytes = _Chunk(self._pending), [], 0
            self._submit(chunk)
        self._wait()

    def close(self) -> SinkStats:
        """Flush; if the cluster answers, send the spool; report what is left in it."""
        try:
            self.flush()
            for _ in range(3):
                if not self.spool.segments() or self._broken:
                    break
                if self._outage.is_set() and not self._probe():
                    break
                self.drain()
                self._wait()
        finally:
            self._pool.shutdown(wait=True)
            if self._dead is not None:
                self._dead.close()
            self.stats.pending = self.spool.pending()[0]
            if self.client is not None:
                try:
                    self.client.close()
                except Exception:
                    pass
        return self.stats

    # -- long-running processes (the sensor) ------------------------------------------------------
    def tick(self) -> None:
        """Call about once a second: send what is queued; while the cluster is away, probe it (every
        ``probe_interval``) and send the spool once it answers again."""
        if self._pending:
            chunk, self._pending, self._pending_bytes = _Chunk(self._pending), [], 0
            self._submit(chunk)
        if self._outage.is_set():
            if not self._broken and time.monotonic() - self._last_probe >= self.probe_interval and self._probe():
                if not self._templates_checked:
                    self._ensure_templates()
                self.drain()
        elif self.spool.segments():
            self.drain()

    def seconds_since_answer(self) -> float | None:
        """Seconds since Elasticsearch last answered a request (None: never)."""
        return None if self._last_answer is None else time.monotonic() - self._last_answer

    def close_within(self, seconds: float) -> bool:
        """close() with a deadline. On timeout, the chunks still in flight are also written to the
        spool (their documents have idempotent ids, so a later resend cannot duplicate them) and
        False is returned: the caller should then exit without waiting for the sender threads."""
        done = threading.Event()

        def closer():
            try:
                self.close()
            finally:
                done.set()
        threading.Thread(target=closer, name="pyhunt-es-close", daemon=True).start()
        if done.wait(seconds):
            return True
        self._outage.set()
        with self._lock:
            chunks = list(self._inflight.values())
        for chunk in chunks:
            if chunk.segment is None and self.spool.put(chunk.entries, len(chunk.entries)):
                self._count(spooled=len(chunk.entries))
        self.stats.pending = self.spool.pending()[0]
        return False
