"""A real Elasticsearch for the tests (scripts/es_node.py) and a capture with many flows.

Import the fixtures into a test module (``from es_fixture import es, many_flows``; ``es_node``, the
session node, is registered once in conftest.py: do not import it into a module). A node
that cannot start fails the tests in CI (CI=true) and skips them elsewhere, with the reason.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass

import pytest

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("es_node", ROOT / "scripts" / "es_node.py")
es_node_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(es_node_mod)

IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"Elasticsearch tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"needs a local Elasticsearch: {reason}")


def start_node(**settings) -> "es_node_mod.ESNode":
    """A fresh node in a directory of its own (under /tmp: the unprivileged user must reach it)."""
    try:
        import elasticsearch  # noqa: F401
    except ImportError:
        _unavailable("the elasticsearch client is not installed (pip install -e '.[test]')")
    d = tempfile.mkdtemp(prefix="pyhunt-es-", dir="/tmp")
    os.chmod(d, 0o755)
    node = es_node_mod.ESNode(os.path.join(d, "node"), settings=settings)
    try:
        node.start(timeout=150)
    except (es_node_mod.ESNodeError, OSError, Exception) as exc:  # noqa: BLE001 - any reason, reported
        node.stop()
        shutil.rmtree(d, ignore_errors=True)
        _unavailable(str(exc))
    node.tmpdir = d
    return node


def stop_node(node) -> None:
    node.stop()
    shutil.rmtree(node.tmpdir, ignore_errors=True)


@pytest.fixture(scope="session")
def es_node():
    """The session's node; ``es_node.restart()`` / ``stop()`` / ``start()`` for outage tests."""
    node = start_node()
    yield node
    stop_node(node)


@dataclass
class ES:
    """A client and a namespace of the test's own on the session node."""
    node: object
    client: object
    namespace: str

    @property
    def url(self) -> str:
        return self.node.url

    @property
    def alias(self) -> str:
        return f"pyhunt-flow-{self.namespace}"

    @property
    def pattern(self) -> str:
        return f"pyhunt-flow-{self.namespace}-*"

    def count(self, index: str | None = None) -> int:
        """Documents in the index (pattern), refreshed. An index the writer has just created may not
        have its shard started yet (search answers 503): wait for it, a bounded number of times."""
        from elasticsearch import ApiError
        index = index or self.pattern
        for attempt in range(5):
            try:
                self.client.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
                return self.client.count(index=index, ignore_unavailable=True, allow_no_indices=True)["count"]
            except ApiError as exc:
                if exc.meta.status != 503 or attempt == 4:
                    raise
                self.client.cluster.health(index=index, wait_for_status="yellow", timeout="10s")
        raise AssertionError("unreachable")

    def docs(self) -> list[dict]:
        from elasticsearch.helpers import scan
        self.client.indices.refresh(index=self.pattern)
        return list(scan(self.client, index=self.pattern, query={"query": {"match_all": {}}}, size=2000))


def es_for(node, name: str):
    from elasticsearch import Elasticsearch
    ns = re.sub(r"[^a-z0-9]+", "", name.lower())[:40] or "t"
    client = Elasticsearch(node.url, request_timeout=60)
    client.indices.delete(index=f"pyhunt-flow-{ns}-*", ignore_unavailable=True, allow_no_indices=True)
    return ES(node, client, ns)


@pytest.fixture
def es(es_node, request):
    e = es_for(es_node, request.node.name)
    yield e
    try:
        if es_node.running():
            e.client.indices.delete(index=f"pyhunt-flow-{e.namespace}-*", ignore_unavailable=True,
                                    allow_no_indices=True)
    finally:
        e.client.close()


def _csum(b: bytes) -> int:
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def write_udp_capture(path, flows: int, start: int = 1_700_000_000) -> None:
    """A pcap of ``flows`` UDP request/response pairs, each its own flow (valid IPv4 checksums, UDP
    checksum 0), spread over two UTC days so documents go to two daily indices."""
    eth_ab = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    eth_ba = eth_ab[6:12] + eth_ab[:6] + b"\x08\x00"
    payload = b"x" * 32
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    day_edge = (start // 86400 + 1) * 86400  # the flows straddle midnight UTC
    t0 = day_edge - flows // 2 * 0.001
    for i in range(flows):
        src = bytes((10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF))
        dst = bytes((192, 0, 2, 1 + i % 200))
        sport, dport = 1024 + i % 60000, 53 + (i // 60000)
        t = t0 + i * 0.001
        for k, (a, b, pa, pb, eth) in enumerate(((src, dst, sport, dport, eth_ab), (dst, src, dport, sport, eth_ba))):
            udp = struct.pack("!HHHH", pa, pb, 8 + len(payload), 0) + payload
            ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0, a, b))
            ip[10:12] = struct.pack("!H", _csum(bytes(ip)))
            frame = eth + bytes(ip) + udp
            ts = t + k * 0.0002
            sec = int(ts)
            out.append(struct.pack("<IIII", sec, int(round((ts - sec) * 1e6)) % 1_000_000, len(frame), len(frame)))
            out.append(frame)
    with open(path, "wb") as f:
        f.write(b"".join(out))


@pytest.fixture(scope="session")
def many_flows(tmp_path_factory):
    """(path, number of flows) of a capture big enough that indexing it takes seconds."""
    n = int(os.environ.get("PYHUNT_ES_TEST_FLOWS", "30000"))
    p = tmp_path_factory.mktemp("es") / f"udp-{n}.pcap"
    write_udp_capture(p, n)
    return p, n


@pytest.fixture(scope="session")
def some_flows(tmp_path_factory):
    """(path, number of flows) of a capture of a few thousand flows."""
    p = tmp_path_factory.mktemp("es") / "udp-8000.pcap"
    write_udp_capture(p, 8000)
    return p, 8000
