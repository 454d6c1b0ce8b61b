#!/usr/bin/env python3
"""Obtain, start and stop a real single-node Elasticsearch for tests, CI and development.

The node is Maven Central's minimal ``integ-test-zip`` distribution (no JDK, no ingest/painless
modules, security off), fetched once with Maven into a cache and started on 127.0.0.1 on a free
port with a data directory of its own. Elasticsearch refuses to run as root: as root the node runs
as an unprivileged system user (``pyhunt-es``, created on first use).

    python3 scripts/es_node.py fetch                 # download into the cache, print the home
    python3 scripts/es_node.py start --dir /tmp/es1  # start, wait for health, print the URL
    python3 scripts/es_node.py stop --dir /tmp/es1
    python3 scripts/es_node.py status --dir /tmp/es1

Settings (environment): PYHUNT_ES_VERSION (default below), PYHUNT_ES_CACHE (cache directory),
PYHUNT_ES_JAVA_HOME (a JDK; default: the newest one in /usr/lib/jvm that the version supports).
Python stdlib only, so it runs before pyhunt is installed. Tests use it through ``ESNode``.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile

__all__ = ["ESNode", "ESNodeError", "fetch", "DEFAULT_VERSION"]

#: The newest integ-test-zip on Maven Central that runs here (8.x runs on Java 17; 9.x needs 21+).
DEFAULT_VERSION = "8.19.21"
GROUP, ARTIFACT = "org.elasticsearch.distribution.integ-test-zip", "elasticsearch"
SERVICE_USER = "pyhunt-es"
HEAP = "512m"


class ESNodeError(Exception):
    """The node could not be fetched or started; the message says why in one line."""


def version() -> str:
    return os.environ.get("PYHUNT_ES_VERSION", DEFAULT_VERSION)


def cache_dir() -> pathlib.Path:
    if "PYHUNT_ES_CACHE" in os.environ:
        return pathlib.Path(os.environ["PYHUNT_ES_CACHE"])
    if os.geteuid() == 0:  # readable by the service user (root's home is not)
        return pathlib.Path("/var/cache/pyhunt/elasticsearch")
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "pyhunt" / "elasticsearch"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(ver: str | None = None) -> pathlib.Path:
    """The unpacked distribution for ``ver`` (downloaded with Maven on first use)."""
    ver = ver or version()
    home = cache_dir() / f"elasticsearch-{ver}"
    if (home / "bin" / "elasticsearch").exists():
        return home
    cache_dir().mkdir(parents=True, exist_ok=True)
    zpath = cache_dir() / f"elasticsearch-{ver}.zip"
    if not zpath.exists():
        if shutil.which("mvn") is None:
            raise ESNodeError("Maven (mvn) is not installed: it fetches Elasticsearch from Maven Central")
        cmd = ["mvn", "-q", "-B", "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy",
               f"-Dartifact={GROUP}:{ARTIFACT}:{ver}:zip", f"-DoutputDirectory={cache_dir()}"]
        r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900)
        if r.returncode != 0 or not zpath.exists():
            tail = (r.stdout + r.stderr).strip().splitlines()[-3:]
            raise ESNodeError(f"mvn could not fetch {GROUP}:{ARTIFACT}:{ver}:zip: {' | '.join(tail)}")
    tmp = cache_dir() / f".unpack-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(zpath) as z:
        z.extractall(tmp)
    for p in (tmp / f"elasticsearch-{ver}" / "bin").iterdir():
        p.chmod(0o755)
    jdk_dir = tmp / f"elasticsearch-{ver}" / "jdk"
    if jdk_dir.exists():  # not in integ-test-zip; keep the mode bits of a bundled one if a user swaps in another
        for p in (jdk_dir / "bin").iterdir():
            p.chmod(0o755)
    os.replace(tmp / f"elasticsearch-{ver}", home)
    shutil.rmtree(tmp, ignore_errors=True)
    return home


def _java_major(java_home: pathlib.Path) -> int:
    rel = java_home / "release"
    m = re.search(r'JAVA_VERSION="(\d+)', rel.read_text()) if rel.exists() else None
    return int(m.group(1)) if m else 0


def java_home(ver: str) -> pathlib.Path:
    """A JDK that runs Elasticsearch ``ver``: PYHUNT_ES_JAVA_HOME, else the newest in /usr/lib/jvm."""
    if "PYHUNT_ES_JAVA_HOME" in os.environ:
        return pathlib.Path(os.environ["PYHUNT_ES_JAVA_HOME"])
    need = 21 if int(ver.split(".")[0]) >= 9 else 17
    cands = []
    for base in (pathlib.Path("/usr/lib/jvm"), pathlib.Path(os.environ.get("JAVA_HOME", "/nonexistent"))):
        for d in ([base] + sorted(base.iterdir()) if base.is_dir() else []):
            if (d / "bin" / "java").exists() and not d.is_symlink():
                cands.append((_java_major(d), d))
    ok = [c for c in cands if c[0] >= need]
    if not ok:
        raise ESNodeError(f"Elasticsearch {ver} needs Java {need}+; none found in /usr/lib/jvm "
                          "(set PYHUNT_ES_JAVA_HOME)")
    # ES 8.x is tested on 17/21; prefer the oldest that qualifies for 8.x, the newest for 9.x
    return (min if need == 17 else max)(ok, key=lambda c: c[0])[1]


def _service_user() -> tuple[int, int] | None:
    """(uid, gid) to run the node as: None when not root; as root, a system user created on demand."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                       check=True, capture_output=True)
        pw = pwd.getpwnam(SERVICE_USER)
    return pw.pw_uid, pw.pw_gid


class ESNode:
    """One single-node cluster in ``directory`` (config, data, logs, pid and port live there)."""

    def __init__(self, directory: str | os.PathLike, *, settings: dict | None = None, ver: str | None = None):
        self.dir = pathlib.Path(directory).resolve()
        self.ver = ver or version()
        self.settings = dict(settings or {})
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        state = self.dir / "node.json"
        if state.exists():
            self.port = json.loads(state.read_text()).get("port")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self, home: pathlib.Path) -> pathlib.Path:
        conf = self.dir / "config"
        if not conf.exists():
            shutil.copytree(home / "config", conf)
        (conf / "jvm.options.d").mkdir(exist_ok=True)
        (conf / "jvm.options.d" / "heap.options").write_text(f"-Xms{HEAP}\n-Xmx{HEAP}\n")
        # keep gc logs small and inside the node directory
        opts = (conf / "jvm.options").read_text().replace("file=gc.log", f"file={self.dir}/logs/gc.log")
        opts = re.sub(r"filecount=\d+,filesize=\d+m", "filecount=2,filesize=8m", opts)
        (conf / "jvm.options").write_text(opts)
        yml = {"cluster.name": "pyhunt-test", "node.name": "pyhunt-node", "path.data": str(self.dir / "data"),
               "path.logs": str(self.dir / "logs"), "network.host": "127.0.0.1", "http.port": self.port,
               "transport.port": _free_port(), "discovery.type": "single-node", "xpack.security.enabled": False,
               "cluster.routing.allocation.disk.threshold_enabled": False,
               "action.destructive_requires_name": False, **self.settings}
        (conf / "elasticsearch.yml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in yml.items()))
        return conf

    def start(self, timeout: float = 120) -> str:
        """Start the node (same port and data on a restart), wait for yellow health, return its URL."""
        if self.running():
            return self.url
        home = fetch(self.ver)
        self.dir.mkdir(parents=True, exist_ok=True)
        for sub in ("data", "logs", "tmp"):
            (self.dir / sub).mkdir(exist_ok=True)
        if self.port is None:
            self.port = _free_port()
        conf = self._write_config(home)
        user = _service_user()
        if user:
            for p in [self.dir, *self.dir.rglob("*")]:
                os.chown(p, *user)
            for d in [home, self.dir.parent, *self.dir.parent.parents]:
                if d != pathlib.Path("/") and not d.stat().st_mode & 0o001:
                    raise ESNodeError(f"{d} is not traversable by the unprivileged user {SERVICE_USER}: "
                                      "put the node directory and PYHUNT_ES_CACHE under /tmp or /var")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ES_PATH_CONF": str(conf),
               "ES_JAVA_HOME": str(java_home(self.ver)), "ES_TMPDIR": str(self.dir / "tmp"),
               "HOME": str(self.dir), "LANG": "C.UTF-8"}
        log = open(self.dir / "logs" / "console.log", "ab")
        kw = {"user": user[0], "group": user[1], "extra_groups": []} if user else {}
        self.proc = subprocess.Popen([str(home / "bin" / "elasticsearch")], env=env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kw)
        log.close()
        (self.dir / "node.json").write_text(json.dumps({"port": self.port, "pid": self.proc.pid, "url": self.url}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ESNodeError(f"Elasticsearch exited with status {self.proc.returncode} while starting; "
                                  f"last log lines: {self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_cluster/health?wait_for_status=yellow&timeout=1s",
                                            timeout=3) as r:
                    if json.load(r).get("status") in ("yellow", "green"):
                        return self.url
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.5)
        self.stop()
        raise ESNodeError(f"Elasticsearch did not become healthy within {timeout:.0f}s; last log lines: "
                          f"{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            lines = (self.dir / "logs" / "console.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(ln[-300:] for ln in lines[-4:])

    def _pid(self) -> int | None:
        if self.proc is not None:
            return self.proc.pid if self.proc.poll() is None else None
        state = self.dir / "node.json"
        if not state.exists():
            return None
        pid = json.loads(state.read_text()).get("pid")
        try:
            os.kill(pid, 0)
        except (OSError, TypeError):
            return None
        return pid

    def running(self) -> bool:
        return self._pid() is not None

    def stop(self, timeout: float = 30) -> None:
        """Stop the node (SIGTERM to its process group, SIGKILL after ``timeout``); keep its data."""
        pid = self._pid()
        if pid is None:
            return
        try:
            os.killpg(pid, signal.SIGTERM)  # the session we started: the launcher and the server JVM
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None:
                if self.proc.poll() is not None:
                    break
            else:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
            time.sleep(0.1)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if self.proc is not None:
                self.proc.wait(10)
        # wait until the port is free, so a restart can bind it again
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    break
            time.sleep(0.1)

    def restart(self, timeout: float = 120) -> str:
        self.stop()
        return self.start(timeout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("fetch", "start", "stop", "status"))
    ap.add_argument("--dir", default="/tmp/pyhunt-es", help="node directory (config, data, logs)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra elasticsearch.yml setting, e.g. thread_pool.write.queue_size=1")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for health")
    a = ap.parse_args(argv)
    try:
        if a.action == "fetch":
            print(fetch())
            return 0
        node = ESNode(a.dir, settings=dict(s.split("=", 1) for s in a.set))
        if a.action == "start":
            print(node.start(a.timeout))
            node.proc = None  # leave it running
        elif a.action == "stop":
            node.stop()
        else:
            print(f"running {node.url}" if node.running() else "stopped")
            return 0 if node.running() else 3
    except (ESNodeError, OSError, subprocess.SubprocessError) as exc:
        print(f"es_node: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
