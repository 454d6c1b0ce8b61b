"""The pyhunt container as the DaemonSet runs it: the rendered manifest's command, environment and
probes, the interface name it captures, only the capabilities it grants, against the test
Elasticsearch (issue #7).

What differs from a pod, and why: the pod's emptyDir volumes (PYHUNT_STATE_DIR, PYHUNT_ZEEK_LOG_DIR)
are directories of the test; PYHUNT_ES_URL points at the test node instead of the in-cluster Service;
the process runs as root restricted to the manifest's capabilities (its bounding set) rather than as
user 10001 with file capabilities on the interpreter, because this machine's Python lives under a
home directory that other users cannot read. The interface is the host end of a veth pair whose
other end, in a network namespace made by the test, sends the traffic (the pod uses hostNetwork).
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys

import pytest

from conftest import ROOT
from es_fixture import es  # noqa: F401 - fixture (es_node comes from conftest)
from test_k8s import container_env, containers, render, sensor
from test_sensor import SensorProc, _compare, _replay_tuples, inner_frames, write_pcap

import netns


def _entrypoint() -> list[str]:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT "):
            return json.loads(line[len("ENTRYPOINT "):])
    raise AssertionError("the Dockerfile has no ENTRYPOINT")


def test_pyhunt_container_runs_as_the_daemonset_runs_it(es, tmp):
    netns.require()
    if shutil.which("setpriv") is None:
        pytest.skip("needs util-linux's setpriv (to grant only the manifest's capabilities)")
    objects = render("k8s/overlays/dev")
    c = containers(sensor(objects))["pyhunt"]
    env = container_env(objects, c)
    iface = env["PYHUNT_INTERFACE"]
    if pathlib.Path(f"/sys/class/net/{iface}").exists():
        pytest.skip(f"this machine already has an interface {iface}")
    cmd = (c.get("command") or _entrypoint()) + c.get("args", [])
    assert cmd[:4] == ["python", "-m", "pyhunt", "sensor"], cmd
    caps = c["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    bounding = "-all," + ",".join("+" + cap.lower() for cap in caps["add"])
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {env["PYHUNT_STATE_DIR"], env["PYHUNT_ZEEK_LOG_DIR"]} <= mounts
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    probe_port = ports[c["readinessProbe"]["httpGet"]["port"]]
    assert probe_port == int(env["PYHUNT_HTTP_PORT"])

    (tmp / "state").mkdir()
    (tmp / "zeek").mkdir()
    (tmp / "zeek" / "conn.log").write_text(json.dumps(
        {"ts": 1_700_000_000.5, "uid": "CdsE2E", "id.orig_h": "10.1.0.1", "id.orig_p": 1234,
         "id.resp_h": "10.2.0.2", "id.resp_p": 80, "proto": "tcp", "conn_state": "SF"}) + "\n")
    env.update(PYHUNT_ES_URL=es.url, PYHUNT_ES_NAMESPACE=es.namespace, PYHUNT_STATE_DIR=str(tmp / "state"),
               PYHUNT_ZEEK_LOG_DIR=str(tmp / "zeek"), PYHUNT_ACTIVE_TIMEOUT="0")
    frames = inner_frames()
    write_pcap(tmp / "inner.pcap", frames)
    expected = _replay_tuples(tmp / "inner.pcap")
    with netns.veth_pair(host=iface) as v:
        s = SensorProc(env, tmp, ["setpriv", f"--bounding-set={bounding}", "--", sys.executable, *cmd[1:]])
        try:
            assert s.port == probe_port
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                path = c[probe]["httpGet"]["path"]
                s.wait_for(lambda: s.get(path)[0] == 200, f"{probe} {path}")
            v.replay(tmp / "inner.pcap", pps=2000)
            s.wait_for(lambda: s.metric("pyhunt_packets_total") >= len(frames), "packets in /metrics")
            s.wait_for(lambda: s.metric("pyhunt_zeek_lines_shipped_total", log="conn") >= 1, "the Zeek line")
        finally:
            rc = s.stop(int(env["PYHUNT_GRACE_SECONDS"]))
    assert rc == 0, s.text()
    assert "Traceback" not in s.text(), s.text()
    _compare(expected, [d["_source"] for d in es.docs()])
    es.client.indices.refresh(index=f"zeek-conn-{es.namespace}-*")
    assert es.client.count(index=f"zeek-conn-{es.namespace}-*")["count"] == 1
