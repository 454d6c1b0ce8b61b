"""`python -m pyhunt sensor` end to end: a real sensor process, a real Elasticsearch node, real sockets.

The listener test needs no privileges: mirrored frames arrive as VXLAN on a loopback UDP port. The
capture test (root, network namespaces) runs the sensor on one end of a veth pair. Each checks the
flows in Elasticsearch against `replay` of the same frames, the Zeek logs shipped beside them, the
HTTP endpoints while it runs, and a clean SIGTERM.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from conftest import ROOT, run_cli
from es_fixture import es  # noqa: F401 - fixture (es_node comes from conftest)

pytest.importorskip("elasticsearch", reason="the elasticsearch client is not installed (pip install -e '.[test]')")
pytest.importorskip("prometheus_client", reason="prometheus_client is not installed (pip install -e '.[test]')")
scapy = pytest.importorskip("scapy.all", reason="scapy is not installed (pip install -e '.[test]')")

VNI = 4242
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def _free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inner_frames() -> list[bytes]:
    """A few complete conversations (TCP with handshake and teardown, UDP, ICMP) as Ethernet frames."""
    from scapy.all import ICMP, IP, TCP, UDP, Ether, Raw
    frames = []
    for i in range(6):
        cli, srv, sp = f"10.1.0.{10 + i}", "10.2.0.5", 40000 + i
        e1, e2 = Ether(src=MAC_A, dst=MAC_B), Ether(src=MAC_B, dst=MAC_A)
        frames += [e1 / IP(src=cli, dst=srv) / TCP(sport=sp, dport=443, flags="S", seq=100),
                   e2 / IP(src=srv, dst=cli) / TCP(sport=443, dport=sp, flags="SA", seq=900, ack=101),
                   e1 / IP(src=cli, dst=srv) / TCP(sport=sp, dport=443, flags="A", seq=101, ack=901),
                   e1 / IP(src=cli, dst=srv) / TCP(sport=sp, dport=443, flags="PA", seq=101, ack=901) / Raw(b"x" * (50 + i)),
                   e2 / IP(src=srv, dst=cli) / TCP(sport=443, dport=sp, flags="PA", seq=901, ack=151 + i) / Raw(b"y" * 300),
                   e1 / IP(src=cli, dst=srv) / TCP(sport=sp, dport=443, flags="FA", seq=151 + i, ack=1201),
                   e2 / IP(src=srv, dst=cli) / TCP(sport=443, dport=sp, flags="FA", seq=1201, ack=152 + i),
                   e1 / IP(src=cli, dst=srv) / TCP(sport=sp, dport=443, flags="A", seq=152 + i, ack=1202)]
    for i in range(4):
        q = Ether(src=MAC_A, dst=MAC_B) / IP(src="10.1.0.99", dst="10.2.0.53") / UDP(sport=5000 + i, dport=53) / Raw(b"q" * 30)
        a = Ether(src=MAC_B, dst=MAC_A) / IP(src="10.2.0.53", dst="10.1.0.99") / UDP(sport=53, dport=5000 + i) / Raw(b"a" * 80)
        frames += [q, a]
    frames += [Ether(src=MAC_A, dst=MAC_B) / IP(src="10.1.0.7", dst="10.2.0.1") / ICMP(type=8, id=7, seq=1) / Raw(b"p" * 56),
               Ether(src=MAC_B, dst=MAC_A) / IP(src="10.2.0.1", dst="10.1.0.7") / ICMP(type=0, id=7, seq=1) / Raw(b"p" * 56)]
    return [bytes(f) for f in frames]


def write_pcap(path, frames: list[bytes], t0: float = 1_700_000_000.0) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, fr in enumerate(frames):
            ts = t0 + i * 0.001
            f.write(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(fr), len(fr)) + fr)


def zeek_conn_lines(n: int, t0: float) -> list[str]:
    return [json.dumps({"ts": t0 + i, "uid": f"CZ{i:08d}", "id.orig_h": "10.1.0.1", "id.orig_p": 1000 + i,
                        "id.resp_h": "10.2.0.2", "id.resp_p": 80, "proto": "tcp", "conn_state": "SF",
                        "orig_pkts": 3, "orig_ip_bytes": 180, "resp_pkts": 2, "resp_ip_bytes": 120})
            for i in range(n)]


class SensorProc:
    """A `python -m pyhunt sensor` child with its HTTP port parsed from its log."""

    def __init__(self, env: dict[str, str], tmp, cmd: list[str] | None = None):
        base = {k: v for k, v in os.environ.items() if not k.startswith("PYHUNT_")}
        self.log = open(tmp / "sensor.log", "wb")
        self.log_path = tmp / "sensor.log"
        self.p = subprocess.Popen(cmd or [sys.executable, "-m", "pyhunt", "sensor"], cwd=ROOT, env={**base, **env},
                                  stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.port = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.p.poll() is None:
            m = re.search(rb"HTTP endpoints on port (\d+)", self.log_path.read_bytes())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.1)
        assert self.port, f"sensor did not start: {self.text()}"

    def text(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        _, text = self.get("/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                if all(f'{k}="{v}"' in line for k, v in labels.items()):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_for(self, cond, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.p.poll() is None, f"sensor exited ({self.p.returncode}) waiting for {what}: {self.text()}"
            if cond():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\n{self.get('/metrics')[1]}\n{self.text()}")

    def stop(self, grace: float) -> int:
        self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(grace + 10)
        finally:
            if self.p.poll() is None:
                self.p.kill()
            self.log.close()


def _env(es_url: str, ns: str, tmp, **extra) -> dict[str, str]:
    env = {"PYHUNT_ES_URL": es_url, "PYHUNT_ES_NAMESPACE": ns, "PYHUNT_STATE_DIR": str(tmp / "state"),
           "PYHUNT_ZEEK_LOG_DIR": str(tmp / "zeek"), "PYHUNT_HTTP_PORT": "0", "PYHUNT_HTTP_ADDRESS": "127.0.0.1",
           "PYHUNT_GRACE_SECONDS": "15", "PYHUNT_ACTIVE_TIMEOUT": "0", "PYHUNT_OBSERVER": "sensor-test"}
    (tmp / "zeek").mkdir(exist_ok=True)
    return {**env, **extra}


def _replay_tuples(pcap) -> dict[tuple, dict]:
    r = run_cli("replay", "-q", "--format", "ecs", "-o", "-", str(pcap))
    assert r.returncode == 0, r.stderr.decode()
    return {_key(d): d for d in map(json.loads, r.stdout.splitlines())}


def _key(d: dict) -> tuple:
    return (d["network"]["transport"], d["source"]["ip"], d["source"].get("port"),
            d["destination"]["ip"], d["destination"].get("port"))


def _compare(expected: dict, got: list[dict]) -> None:
    """Same flows, packets and bytes; timing fields (timestamps, durations, IATs) differ by design."""
    got_by = {_key(d): d for d in got}
    assert len(got) == len(got_by), "a flow was indexed twice"
    assert set(got_by) == set(expected), (set(expected) ^ set(got_by))
    for k, e in expected.items():
        g = got_by[k]
        for side in ("source", "destination"):
            assert (g[side]["packets"], g[side]["bytes"]) == (e[side]["packets"], e[side]["bytes"]), (k, side)
        assert g["zeek"]["connection"].get("state") == e["zeek"]["connection"].get("state"), k
        assert g["zeek"]["connection"].get("history") == e["zeek"]["connection"].get("history"), k
        assert g["network"]["community_id"] == e["network"]["community_id"], k


def _send_vxlan(port: int, frames: list[bytes], vni: int) -> None:
    hdr = struct.pack("!BBHI", 0x08, 0, 0, vni << 8)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for fr in frames:
            s.sendto(hdr + fr, ("127.0.0.1", port))
            time.sleep(0.0005)   # loopback never drops, but stay gentle with the receive buffer


def test_listener_sensor_end_to_end(es, tmp):
    frames = inner_frames()
    write_pcap(tmp / "inner.pcap", frames)
    expected = _replay_tuples(tmp / "inner.pcap")
    udp_port = _free_port(socket.SOCK_DGRAM)
    t0 = time.time() - 60
    zeek_lines = zeek_conn_lines(5, t0)
    (tmp / "zeek").mkdir()
    (tmp / "zeek" / "conn.log").write_text("\n".join(zeek_lines[:3]) + "\n")
    s = SensorProc(_env(es.url, es.namespace, tmp, PYHUNT_MODE="vxlan-listener", PYHUNT_VXLAN_PORT=str(udp_port),
                        PYHUNT_LISTEN_ADDRESS="127.0.0.1"), tmp)
    try:
        s.wait_for(lambda: s.get("/readyz")[0] == 200, "/readyz")
        assert s.get("/healthz") == (200, "ok\n")
        assert s.get("/nope")[0] == 404
        assert s.metric("pyhunt_packets_total") == 0
        _send_vxlan(udp_port, frames, VNI)
        s.wait_for(lambda: s.metric("pyhunt_packets_total") >= len(frames), "packets in /metrics")
        assert s.metric("pyhunt_bytes_total") == sum(map(len, frames))
        assert s.metric("pyhunt_flow_table_flows") == len(expected)
        with open(tmp / "zeek" / "conn.log", "a") as f:   # Zeek goes on writing
            f.write("\n".join(zeek_lines[3:]) + "\n")
        s.wait_for(lambda: s.metric("pyhunt_zeek_lines_shipped_total", log="conn") >= 5, "Zeek lines shipped")
        assert s.get("/healthz")[0] == 200
        from pyhunt.sensor.http import METRICS
        text = s.get("/metrics")[1]
        assert [n for n, *_ in METRICS if f"# TYPE {n} " not in text] == [], text   # every documented metric
        assert s.metric("pyhunt_es_documents_total", stream="zeek", result="indexed") >= 5
    finally:
        rc = s.stop(15)
    assert rc == 0, s.text()
    assert "Traceback" not in s.text(), s.text()
    es.client.indices.refresh(index=f"{es.pattern},zeek-*-{es.namespace}-*")
    docs = es.docs()
    _compare(expected, [d["_source"] for d in docs])
    for d in docs:
        assert d["_source"]["observer"]["hostname"] == "sensor-test"
        ingress = d["_source"]["observer"].get("ingress", {}).get("interface", {}).get("id")
        if ingress is not None:   # recorded once the engine carries the mirror session (VNI)
            assert ingress == str(VNI)
    n_zeek = es.client.count(index=f"zeek-conn-{es.namespace}-*")["count"]
    assert n_zeek == 5


def test_sensor_spools_when_elasticsearch_is_down_and_exits_cleanly(es, tmp):
    frames = inner_frames()
    write_pcap(tmp / "inner.pcap", frames)
    expected = _replay_tuples(tmp / "inner.pcap")
    udp_port = _free_port(socket.SOCK_DGRAM)
    dead = f"http://127.0.0.1:{_free_port()}"
    s = SensorProc(_env(dead, es.namespace, tmp, PYHUNT_MODE="vxlan-listener", PYHUNT_VXLAN_PORT=str(udp_port),
                        PYHUNT_LISTEN_ADDRESS="127.0.0.1", PYHUNT_ZEEK_LOG_DIR=""), tmp)
    try:
        s.wait_for(lambda: "unreachable" in s.get("/readyz")[1], "/readyz saying why it is not ready")
        assert s.get("/readyz")[0] == 503 and s.get("/healthz")[0] == 200
        _send_vxlan(udp_port, frames, VNI)
        s.wait_for(lambda: s.metric("pyhunt_packets_total") >= len(frames), "packets in /metrics")
        t = time.monotonic()
    finally:
        rc = s.stop(15)
    assert rc == 0 and time.monotonic() - t < 15, s.text()
    spool = tmp / "state" / "es-spool" / "flows"
    assert list(spool.glob("*.bulk")), s.text()
    # nothing was lost: the spool goes to the real cluster
    r = run_cli("es", "drain", "--es", es.url, "--es-namespace", es.namespace, "--es-spool", str(spool),
                "--es-dead-letter", str(tmp / "dead.ndjson"))
    assert r.returncode == 0, r.stderr.decode()
    _compare(expected, [d["_source"] for d in es.docs()])
    assert not list(spool.glob("*.bulk"))


def test_sensor_fails_clearly_when_the_port_is_taken(tmp):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        base = {k: v for k, v in os.environ.items() if not k.startswith("PYHUNT_")}
        r = subprocess.run([sys.executable, "-m", "pyhunt", "sensor"], cwd=ROOT, capture_output=True, timeout=60,
                           env={**base, "PYHUNT_ES_URL": "http://127.0.0.1:9", "PYHUNT_STATE_DIR": str(tmp / "s"),
                                "PYHUNT_HTTP_PORT": str(port), "PYHUNT_HTTP_ADDRESS": "127.0.0.1",
                                "PYHUNT_MODE": "vxlan-listener", "PYHUNT_ZEEK_LOG_DIR": ""})
    assert r.returncode == 1, r.stderr
    assert b"cannot serve HTTP on 127.0.0.1:%d" % port in r.stderr and b"Traceback" not in r.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_capture_sensor_end_to_end(es, tmp, workers):
    import netns
    netns.require()
    frames = inner_frames()
    write_pcap(tmp / "inner.pcap", frames)
    expected = _replay_tuples(tmp / "inner.pcap")
    with netns.veth_pair() as v:
        s = SensorProc(_env(es.url, es.namespace, tmp, PYHUNT_INTERFACE=v.host, PYHUNT_WORKERS=str(workers),
                            PYHUNT_FANOUT_GROUP=str(4000 + os.getpid() % 1000), PYHUNT_ZEEK_LOG_DIR=""), tmp)
        try:
            s.wait_for(lambda: s.get("/readyz")[0] == 200, "/readyz")
            s.wait_for(lambda: re.search(r"(?m)^pyhunt_packets_total ", s.get("/metrics")[1]) is not None,
                       "the capture workers' first metrics")
            v.replay(tmp / "inner.pcap", pps=2000)
            s.wait_for(lambda: s.metric("pyhunt_packets_total") >= len(frames), "packets in /metrics")
            assert s.metric("pyhunt_capture_kernel_drops_total") == 0
            assert s.get("/healthz")[0] == 200
        finally:
            rc = s.stop(15)
    assert rc == 0, s.text()
    assert "Traceback" not in s.text(), s.text()
    _compare(expected, [d["_source"] for d in es.docs()])
