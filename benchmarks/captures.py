"""The benchmark captures, per scale, generated once and cached.

Captures live in ``$PYHUNT_BENCH_DIR/captures`` (default /tmp/pyhunt-bench), named by what made
them (generator, its version and arguments), so a cached file is reused only for the same
arguments. Every capture but ``replay`` comes from benchmarks/synth.py (in this repository). The
``replay`` capture is "the default 2,000,000-packet capture" of the team's generator,
``../shared/bench/gen_pcap.py --packets 2000000 --flows 100000 --seed 1``, when ../shared is there
(so figures compare with ../shared/bench/README.md); without it, synth.py with the same counts.
``PYHUNT_BENCH_REPLAY_CAPTURE=FILE`` uses an existing file instead.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Optional

import synth

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("PYHUNT_SHARED", ROOT.parent / "shared"))
GEN_PCAP = SHARED / "bench" / "gen_pcap.py"


def bench_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("PYHUNT_BENCH_DIR", "/tmp/pyhunt-bench"))


S = synth.Spec
# name -> spec per scale; None = not part of that scale (its benchmarks skip)
SCALES: dict[str, dict[str, Optional[synth.Spec]]] = {
    "full": {
        "mix10k": S(2_000_000, 10_000),
        "mix10k-ng": S(2_000_000, 10_000, format="pcapng"),
        "tunnel": S(1_000_000, 10_000, vxlan_share=0.3),
        "conc100k": S(2_000_000, 100_000),
        "conc1m": S(4_000_000, 1_000_000),
        "flood": S(1_000_000, 1_000_000, flood=True, duration=120.0),
        "flood-dense": S(1_000_000, 1_000_000, flood=True, duration=2.0),
        "export": S(400_000, 100_000),
        "replay": S(2_000_000, 100_000),
    },
    "quick": {
        "mix10k": S(500_000, 10_000),
        "mix10k-ng": S(500_000, 10_000, format="pcapng"),
        "tunnel": S(250_000, 10_000, vxlan_share=0.3),
        "conc100k": S(500_000, 100_000),
        "conc1m": S(3_000_000, 1_000_000),
        "flood": S(500_000, 500_000, flood=True, duration=120.0),
        "flood-dense": S(500_000, 500_000, flood=True, duration=2.0),
        "export": S(400_000, 100_000),
        "replay": S(500_000, 25_000),
    },
    "ci": {
        "mix10k": S(200_000, 10_000),
        "mix10k-ng": S(200_000, 10_000, format="pcapng"),
        "tunnel": S(100_000, 5_000, vxlan_share=0.3),
        "conc100k": S(300_000, 100_000),
        "conc1m": None,
        "flood": S(200_000, 200_000, flood=True, duration=120.0),
        "flood-dense": S(200_000, 200_000, flood=True, duration=2.0),
        "export": S(100_000, 25_000),
        "replay": S(200_000, 10_000),
    },
}


@dataclass
class Capture:
    name: str
    path: str
    packets: int
    flows: int
    file_bytes: int
    generator: str

    def info(self) -> dict:
        return {"capture": self.name, "file": os.path.basename(self.path), "packets": self.packets,
                "flows": self.flows, "file_bytes": self.file_bytes, "generator": self.generator}


def _gen_pcap_capture(spec: synth.Spec) -> Capture:
    h = hashlib.sha1(GEN_PCAP.read_bytes()).hexdigest()[:8]
    path = bench_dir() / "captures" / f"gen_pcap-{h}-p{spec.packets}-f{spec.flows}-s{spec.seed}.pcap"
    if not (path.exists() and path.with_name(path.name + ".json").exists()):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        print(f"\n[bench] generating {path.name} with {GEN_PCAP} ...", file=sys.stderr)
        subprocess.run([sys.executable, str(GEN_PCAP), "--packets", str(spec.packets), "--flows", str(spec.flows),
                        "--seed", str(spec.seed), "-o", str(tmp), "--summary", str(tmp) + ".json"],
                       check=True, stdout=subprocess.DEVNULL)
        os.replace(str(tmp) + ".json", str(path) + ".json")
        os.replace(tmp, path)
    summary = json.loads(path.with_name(path.name + ".json").read_text())
    return Capture("replay", str(path), int(summary["packets"]), int(summary["flows"]), path.stat().st_size,
                   f"../shared/bench/gen_pcap.py --packets {spec.packets} --flows {spec.flows} --seed {spec.seed}")


def _existing(path: str) -> Capture:
    p = pathlib.Path(path)
    summary_file = p.with_name(p.name + ".json")
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    packets = int(summary.get("packets", 0))
    if not packets:  # count the records with the engine's own reader
        from cstages import Stages, build
        packets = int(Stages(build(bench_dir() / "lib")).read(path).packets)
    return Capture("replay", path, packets, int(summary.get("flows", 0)), p.stat().st_size, f"existing file {path}")


def get(name: str, scale: str) -> Optional[Capture]:
    """The capture `name` of `scale`, generating it if needed; None if the scale has none."""
    spec = SCALES[scale][name]
    if spec is None:
        return None
    if name == "replay":
        if os.environ.get("PYHUNT_BENCH_REPLAY_CAPTURE"):
            return _existing(os.environ["PYHUNT_BENCH_REPLAY_CAPTURE"])
        if scale == "full" and GEN_PCAP.exists():
            return _gen_pcap_capture(spec)
    ext = "pcapng" if spec.format == "pcapng" else "pcap"
    path = bench_dir() / "captures" / f"synth-{name}-{spec.key()}.{ext}"
    meta = path.with_name(path.name + ".json")
    if not (path.exists() and meta.exists()):
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        print(f"\n[bench] generating {path.name} ({spec.packets:,} packets, {spec.flows:,} flows) ...",
              file=sys.stderr)
        synth.write_capture(spec, str(path))
        print(f"[bench] ... {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    summary = json.loads(meta.read_text())
    return Capture(name, str(path), int(summary["packets"]), int(summary["flows"]), path.stat().st_size,
                   "benchmarks/synth.py " + " ".join(f"{k}={v}" for k, v in summary["spec"].items()))


def warm(path: str) -> None:
    """Read the file once so that it is in the page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 24):
            pass
