"""pyhunt's benchmark suite: stages of the engine and their peers, on the same captures, in one run.

Run from the repository root (the extension built in place or installed):

    python -m pytest benchmarks/ --benchmark-json=run.json        # full scale (~35 min)
    python -m pytest benchmarks/ --bench-scale=quick ...          # smaller captures
    python benchmarks/report.py run.json                           # the table of stages and ratios

Options: --bench-scale full|quick|ci (or $PYHUNT_BENCH_SCALE), --bench-peers dpkt,scapy,nfstream,c
(which peers to run; default all). Captures are cached in $PYHUNT_BENCH_DIR (default
/tmp/pyhunt-bench). Tests marked ``guard`` are the short CI check (.ci/bench_guard.sh).
"""
from __future__ import annotations

import logging
import os
import pathlib
import platform
import sys
import time
from typing import Callable, Optional

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import captures  # noqa: E402

ROUNDS = {"full": 7, "quick": 5, "ci": 11}         # pyhunt and the C stages (plus one warm-up round)
PEER_ROUNDS = {"full": 3, "quick": 2, "ci": 3}     # dpkt, nfstream (whole files, no warm-up)
SCAPY_LIMIT = {"full": 20_000, "quick": 5_000, "ci": 2_000}
ALL_PEERS = ("dpkt", "scapy", "nfstream", "c")


def pytest_addoption(parser):
    g = parser.getgroup("pyhunt benchmarks")
    g.addoption("--bench-scale", choices=tuple(captures.SCALES), default=os.environ.get("PYHUNT_BENCH_SCALE", "full"),
                help="capture sizes and rounds: full (the published table), quick, ci (default: full)")
    g.addoption("--bench-peers", default=",".join(ALL_PEERS),
                help="comma-separated peers to run: dpkt, scapy, nfstream, c (the C floors); default all")


def pytest_configure(config):
    config.addinivalue_line("markers", "guard: part of the short CI ratio guard (.ci/bench_guard.sh)")
    logging.getLogger("scapy").setLevel(logging.ERROR)  # "DNS decompression loop" on random payloads


class Bench:
    """What a benchmark needs: the scale, captures, rounds, which peers run, and the measuring."""

    def __init__(self, config):
        self.scale: str = config.getoption("--bench-scale")
        self.peers = {p.strip() for p in config.getoption("--bench-peers").split(",") if p.strip()}
        unknown = self.peers - set(ALL_PEERS)
        if unknown:
            raise pytest.UsageError(f"--bench-peers: unknown peer(s) {', '.join(sorted(unknown))}")
        self.rounds = ROUNDS[self.scale]
        self.peer_rounds = PEER_ROUNDS[self.scale]
        self.scapy_limit = SCAPY_LIMIT[self.scale]
        self.captures: dict[str, captures.Capture] = {}
        self._stages = None

    def capture(self, name: str) -> captures.Capture:
        if name not in self.captures:
            cap = captures.get(name, self.scale)
            if cap is None:
                pytest.skip(f"capture {name!r} is not part of the {self.scale!r} scale")
            captures.warm(cap.path)
            self.captures[name] = cap
        return self.captures[name]

    def need_peer(self, peer: str) -> None:
        if peer not in self.peers:
            pytest.skip(f"peer {peer} not selected (--bench-peers)")
        if peer == "dpkt":
            pytest.importorskip("dpkt", reason="dpkt is not installed (pip install -e '.[bench]')")
        elif peer == "scapy":
            pytest.importorskip("scapy", reason="scapy is not installed (pip install -e '.[bench]')")
            import peers
            peers._scapy()  # import it now, outside the timed rounds
        elif peer == "nfstream":
            import nfstream_peer
            why = nfstream_peer.unavailable()
            if why:
                pytest.skip(why)

    @property
    def stages(self):
        """The C stage library (benchmarks/c/phbench.c), built on first use."""
        if self._stages is None:
            import cstages
            try:
                self._stages = cstages.Stages(cstages.build(captures.bench_dir() / "lib"))
            except cstages.BuildError as exc:
                pytest.skip(f"C stage drivers cannot be built: {exc}")
        return self._stages

    def run(self, benchmark, *, stage: str, case: str, tool: str, cap: captures.Capture,
            fn: Callable[[], tuple], peer: bool = False, units: Optional[Callable[[tuple], dict]] = None,
            setup=None, rounds: Optional[int] = None, warmup: Optional[int] = None, **info):
        """Time fn (pedantic rounds), record what was measured in extra_info, return fn's result.

        fn returns a tuple whose first item is the packets (or, with units=, whatever units says)
        it processed; by default the bytes are the file's, scaled to the packets processed.
        """
        benchmark.group = f"{stage}: {case}"
        if rounds is None:
            rounds = self.peer_rounds if peer else self.rounds
        if warmup is None:
            warmup = 0 if peer else 1
        kwargs = {"rounds": rounds, "iterations": 1, "warmup_rounds": warmup}
        if setup is not None:
            kwargs["setup"] = setup
        result = benchmark.pedantic(fn, **kwargs)
        extra = {"stage": stage, "case": case, "tool": tool, "scale": self.scale, **cap.info()}
        if units is not None:
            extra.update(units(result))
        else:
            done = int(result[0])
            extra["packets"] = done
            extra["bytes"] = int(cap.file_bytes * done / cap.packets) if cap.packets else cap.file_bytes
            extra["partial"] = done < cap.packets
        extra.update(info)
        benchmark.extra_info.update(extra)
        return result


@pytest.fixture(scope="session")
def bench(pytestconfig) -> Bench:
    b = Bench(pytestconfig)
    pytestconfig._pyhunt_bench = b
    return b


@pytest.fixture(scope="session")
def pyhunt_mod():
    try:
        import pyhunt.flows  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"pyhunt is not importable with its extension built ({exc}); "
                    "run `pip install -e .` or `python setup.py build_ext --inplace` first")
    return sys.modules["pyhunt.flows"]


def _machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
        with open("/proc/loadavg") as f:
            info["loadavg"] = f.read().split()[:3]
    except OSError:
        pass
    return info


def _engine_version() -> dict:
    """The git commit (if any) and a hash of the engine's sources, so a run names what it measured."""
    import hashlib
    import subprocess
    h = hashlib.sha1()
    for p in sorted((ROOT / "ext").glob("ph_*.[ch]")):
        h.update(p.name.encode() + p.read_bytes())
    out = {"ext_sha1": h.hexdigest()[:12]}
    try:
        r = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                           text=True, timeout=10)
        if r.returncode == 0:
            out["git"] = r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Add what report.py needs: the command, the scale, the captures and the machine."""
    b: Optional[Bench] = getattr(config, "_pyhunt_bench", None)
    args = " ".join(config.invocation_params.args)
    output_json["pyhunt_bench"] = {
        "command": f"python -m pytest {args}",
        "scale": config.getoption("--bench-scale"),
        "peers": sorted(b.peers) if b else [],
        "captures": {n: c.info() | {"generator": c.generator} for n, c in (b.captures.items() if b else ())},
        "machine": _machine(),
        "engine": _engine_version(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
