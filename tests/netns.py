"""A veth pair with one end in a network namespace made for a test, and tcpreplay into it.

    with veth_pair() as v:            # names unique per run; both ends up, IPv6 off (no stray traffic)
        cap = LiveCapture(v.host)     # capture in this namespace
        v.replay(pcap, pps=2000)      # tcpreplay on v.peer inside v.ns: arrives on v.host

Everything is deleted on exit, also after a failure. ``why_not()`` says why this machine cannot run
it (not root, no ``ip``, no tcpreplay, namespaces not permitted), or None.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

__all__ = ["Veth", "veth_pair", "why_not"]


def _run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, timeout=timeout, check=False)


def why_not(need_tcpreplay: bool = True) -> str | None:
    """The reason the veth tests cannot run here, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (network namespaces, veth, AF_PACKET)"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip`"
    if need_tcpreplay and shutil.which("tcpreplay") is None:
        return "needs tcpreplay (Debian: apt-get install tcpreplay)"
    probe = f"phprobe{secrets.token_hex(3)}"
    r = _run("ip", "netns", "add", probe)
    if r.returncode != 0:
        return f"`ip netns add` is not permitted here: {r.stderr.decode().strip()}"
    _run("ip", "netns", "del", probe)
    return None


@dataclass
class Veth:
    ns: str
    host: str      # end in this process's namespace (capture here)
    peer: str      # end inside ns (tcpreplay sends here)

    def _cmd(self, pcap: Path | str, pps: int | None, topspeed: bool, loop: int) -> list[str]:
        rate = ["--topspeed"] if topspeed else [f"--pps={pps or 1000}"]
        return ["ip", "netns", "exec", self.ns, "tcpreplay", "-q", f"--loop={loop}", "-i", self.peer,
                *rate, str(pcap)]

    def replay(self, pcap: Path | str, *, pps: int | None = None, topspeed: bool = False,
               loop: int = 1, timeout: float = 120) -> subprocess.CompletedProcess:
        """tcpreplay the file out of the peer end (bounded rate unless topspeed); waits."""
        r = _run(*self._cmd(pcap, pps, topspeed, loop), timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"tcpreplay failed: {r.stderr.decode().strip()}")
        return r

    def start_replay(self, pcap: Path | str, *, pps: int | None = None, topspeed: bool = False,
                     loop: int = 1) -> subprocess.Popen:
        """The same in the background, so the capture reads while tcpreplay sends; pass the
        process to finish_replay."""
        return subprocess.Popen(self._cmd(pcap, pps, topspeed, loop), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    @staticmethod
    def finish_replay(proc: subprocess.Popen, timeout: float = 120) -> None:
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise RuntimeError("tcpreplay did not finish in time") from None
        if proc.returncode != 0:
            raise RuntimeError(f"tcpreplay failed: {err.decode().strip()}")


def _disable_ipv6(ns: str | None, ifname: str) -> None:
    path = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    if ns is None:
        if os.path.exists(path):
            Path(path).write_text("1\n")
    else:
        _run("ip", "netns", "exec", ns, "sh", "-c", f"[ -e {path} ] && echo 1 > {path} || true")


@contextlib.contextmanager
def veth_pair(host: str | None = None) -> Iterator[Veth]:
    """``host``: the name of the end in this namespace (default: a unique one)."""
    tag = secrets.token_hex(4)
    v = Veth(ns=f"phlive{tag}", host=host or f"phh{tag}", peer=f"php{tag}")
    made_ns = made_link = False
    try:
        r = _run("ip", "netns", "add", v.ns)
        if r.returncode != 0:
            raise RuntimeError(f"ip netns add: {r.stderr.decode().strip()}")
        made_ns = True
        r = _run("ip", "link", "add", v.host, "type", "veth", "peer", "name", v.peer, "netns", v.ns)
        if r.returncode != 0:
            raise RuntimeError(f"ip link add veth: {r.stderr.decode().strip()}")
        made_link = True
        _disable_ipv6(None, v.host)
        _disable_ipv6(v.ns, v.peer)
        for cmd in (("ip", "link", "set", v.host, "up"), ("ip", "-n", v.ns, "link", "set", v.peer, "up")):
            r = _run(*cmd)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.decode().strip()}")
        yield v
    finally:
        if made_link:
            _run("ip", "link", "del", v.host)     # deletes both ends
        if made_ns:
            _run("ip", "netns", "del", v.ns)


def require() -> None:
    """Skip the calling test with the reason where veth tests cannot run; in CI (root, tools
    installed by .ci/run) a missing prerequisite is a failure, as for Elasticsearch."""
    import pytest
    reason = why_not()
    if reason and os.environ.get("CI", "") not in ("", "0", "false"):
        pytest.fail(f"CI must run the live-capture tests: {reason}")
    if reason:
        pytest.skip(reason)
