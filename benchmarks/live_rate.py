"""Sustained live-capture rate on a veth pair: the highest tcpreplay rate with no kernel drop.

    sudo python benchmarks/live_rate.py [--packets 50000] [--flows 5000] [--ring-mb 4] [--seconds 3]

Writes a capture of small UDP packets spread over many flows, replays it (tcpreplay --loop) into
the peer end of a veth pair in a throw-away namespace at rising --pps steps and then --topspeed,
while a LiveFlowMeter reads the host end. Per step it prints the rate tcpreplay reached, the rate
captured, and the kernel's drop counter. The ring is deliberately small (--ring-mb) so that it
cannot hide a consumer slower than the sender for the length of a step. Needs root, iproute2 and
tcpreplay; not part of the test run.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from netns import veth_pair, why_not  # noqa: E402

from pyhunt.live import LiveCapture, LiveFlowMeter  # noqa: E402


def write_capture(path: Path, packets: int, flows: int) -> None:
    from scapy.all import IP, UDP, Ether, Raw, wrpcap
    frames = []
    for i in range(packets):
        f = i % flows
        frames.append(Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
                      / IP(src=f"10.{f >> 16 & 255}.{f >> 8 & 255}.{f & 255}", dst="10.200.0.1")
                      / UDP(sport=10000 + f % 50000, dport=53) / Raw(b"x" * 18))
    for i, fr in enumerate(frames):
        fr.time = 1_700_000_000 + i * 1e-6
    wrpcap(str(path), frames)


def step(v, pcap: Path, loops: int, rate: list[str], ring_mb: int) -> dict:
    cap = LiveCapture(v.host, block_size=1 << 18, block_count=4 * ring_mb)
    meter = LiveFlowMeter(cap, {"udp_inactivity": 3600.0}, batch_size=1 << 16)
    cmd = ["ip", "netns", "exec", v.ns, "tcpreplay", f"--loop={loops}", "-i", v.peer, *rate, str(pcap)]
    t0 = time.monotonic()
    c0 = time.process_time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    while proc.poll() is None and time.monotonic() - t0 < 120:
        meter.poll(0.05)
    out = proc.communicate(timeout=30)[0].decode()
    for _ in range(10):
        meter.poll(0.05)
    elapsed = time.monotonic() - t0
    cpu = time.process_time() - c0
    st = meter.stats()
    meter.finish()
    meter.close()
    m = re.search(r"Actual: (\d+) packets.*? sent in ([\d.]+) seconds", out, re.S)
    sent, secs = (int(m.group(1)), float(m.group(2))) if m else (0, elapsed)
    return {"sent": sent, "send_pps": sent / secs if secs else 0.0, "kernel_packets": st["kernel_packets"],
            "captured": st["packets"], "drops": st["kernel_drops"], "freezes": st["kernel_freezes"],
            "cpu_pps": st["packets"] / cpu if cpu > 0 else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=50000)
    ap.add_argument("--flows", type=int, default=5000)
    ap.add_argument("--ring-mb", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each --pps step")
    ap.add_argument("--steps", default="50000,100000,200000,400000", help="--pps values")
    args = ap.parse_args()
    reason = why_not()
    if reason:
        print(f"live_rate: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "small-udp.pcap"
        write_capture(pcap, args.packets, args.flows)
        print(f"{'rate asked':>12} {'sent pps':>10} {'captured':>10} {'kernel drops':>12} {'pps per CPU s':>14}")
        with veth_pair() as v:
            for pps in [int(x) for x in args.steps.split(",")] + [None]:
                loops = max(1, int((pps or 1_000_000) * args.seconds / args.packets))
                rate = [f"--pps={pps}"] if pps else ["--topspeed"]
                r = step(v, pcap, loops, rate, args.ring_mb)
                print(f"{pps or 'topspeed':>12} {r['send_pps']:>10.0f} {r['captured']:>10} {r['drops']:>12} {r['cpu_pps']:>14.0f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
