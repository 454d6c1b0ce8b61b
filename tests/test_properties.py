"""Property tests: whatever the capture, every packet is accounted for, and replay is deterministic."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from captures import pcap_bytes
from pyhunt import FlowMeter, _ext, dtype

# explicit MACs: scapy would otherwise ARP for the destination to fill them in
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"

HOSTS4 = ["10.0.0.1", "10.0.0.2", "192.0.2.7"]
HOSTS6 = ["2001:db8::1", "2001:db8::2"]
PORTS = [53, 80, 443, 40000, 40001]


@st.composite
def packet(draw) -> bytes:
    kind = draw(st.sampled_from(["tcp", "tcp", "tcp", "udp", "icmp", "v6", "frag", "junk", "cut"]))
    src, dst = draw(st.sampled_from(HOSTS4)), draw(st.sampled_from(HOSTS4))
    ip = IP(src=src, dst=dst)
    if kind == "tcp":
        flags = draw(st.sampled_from(["S", "SA", "A", "PA", "FA", "R", "RA", "F", "SF", "FR", ""]))
        l4 = TCP(sport=draw(st.sampled_from(PORTS)), dport=draw(st.sampled_from(PORTS)), flags=flags,
                 seq=draw(st.integers(0, 2**32 - 1)), ack=draw(st.integers(0, 2**32 - 1)),
                 window=draw(st.sampled_from([0, 512, 65535])))
        frame = Ether(src=MAC_A, dst=MAC_B) / ip / l4 / (b"d" * draw(st.integers(0, 60)))
    elif kind == "udp":
        frame = Ether(src=MAC_A, dst=MAC_B) / ip / UDP(sport=draw(st.sampled_from(PORTS)), dport=draw(st.sampled_from(PORTS))) / (
            b"u" * draw(st.integers(0, 40)))
    elif kind == "icmp":
        frame = Ether(src=MAC_A, dst=MAC_B) / ip / ICMP(type=draw(st.sampled_from([0, 3, 8, 11])), code=0)
    elif kind == "v6":
        frame = Ether(src=MAC_A, dst=MAC_B) / IPv6(src=draw(st.sampled_from(HOSTS6)), dst=draw(st.sampled_from(HOSTS6))) / UDP(
            sport=draw(st.sampled_from(PORTS)), dport=53) / b"q"
    elif kind == "frag":
        frame = Ether(src=MAC_A, dst=MAC_B) / IP(src=src, dst=dst, id=draw(st.integers(1, 3)), flags=draw(st.sampled_from([0, 1])),
                             frag=draw(st.sampled_from([0, 1, 2])), proto=17) / (b"f" * 24)
    elif kind == "junk":
        return draw(st.binary(min_size=0, max_size=80))
    else:
        full = bytes(Ether(src=MAC_A, dst=MAC_B) / ip / TCP(sport=80, dport=40000) / (b"c" * 30))
        return full[: draw(st.integers(0, len(full)))]
    if draw(st.booleans()) and kind != "frag":
        frame = Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=draw(st.sampled_from([10, 20]))) / frame.payload
    return bytes(frame)


@st.composite
def capture(draw) -> bytes:
    pkts = draw(st.lists(packet(), min_size=1, max_size=60))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.001, 0.5, 3.0, 7.0, 70.0, 400.0]), min_size=len(pkts),
                         max_size=len(pkts)))
    t, recs = 1_500_000_000.0, []
    for data, gap in zip(pkts, gaps):
        t += gap
        recs.append((t, data))
    return pcap_bytes(recs)


def _run(path: str, ignore: bool) -> tuple[np.ndarray, dict]:
    meter = FlowMeter(ignore_checksums=ignore)
    batches = [b.to_numpy() for b in meter.read(path)]
    recs = np.concatenate(batches) if batches else np.empty(0, dtype=dtype())
    assert not meter.errors
    return recs, meter.counters


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=capture(), ignore=st.booleans())
def test_every_packet_is_accounted_and_replay_is_deterministic(tmp_path, data, ignore):
    path = tmp_path / "p.pcap"
    path.write_bytes(data)
    recs, counters = _run(str(path), ignore)
    final = recs[(recs["flags"] & 0x0008) == 0]
    in_flows = int((final["orig_pkts"] + final["resp_pkts"]).sum())
    dispositions = sum(counters[n] for n in _ext.COUNTER_NAMES[2:_ext.N_DISPOSITIONS])
    assert counters["in_flow"] == in_flows
    assert dispositions == counters["packets_read"]
    # every held fragment belongs to a datagram that was completed (the rest were moved to dropped)
    assert counters["fragment_held"] == 0 or counters["fragments_reassembled"] > 0
    recs2, counters2 = _run(str(path), ignore)
    assert recs.tobytes() == recs2.tobytes()
    assert counters == counters2
    out1 = _ext.format_records(recs, "ecs", "h")
    assert out1 == _ext.format_records(recs2, "ecs", "h")
