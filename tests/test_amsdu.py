"""802.11 A-MSDU: one captured frame carrying several packets (subframes), each decoded as a packet.

Zeek's IEEE802_11 analyzer forwards every subframe of an A-MSDU, so a connection counts each one
(core.tunnels.gre-aruba-amsdu in ../shared/zeek-parity). The engine does the same: the frame's
disposition is its first subframe's (the disposition counters still add up to packets_read), the
others are counted in ``amsdu_subframes`` (or ``amsdu_subframes_dropped`` when one cannot be decoded:
the rest of the frame is then skipped, as Zeek stops there). Layers in front of the 802.11 header
(an outer UDP tunnel) count the frame once.
"""
from __future__ import annotations

import struct

import numpy as np
from scapy.layers.dot11 import Dot11
from scapy.layers.inet import IP, TCP, UDP

import captures as cap
from pyhunt import FlowMeter, _ext, dtype

T0 = 1705309200_000000000
MS = 1_000_000
DISPOSITIONS = _ext.COUNTER_NAMES[2:_ext.N_DISPOSITIONS]
LINKTYPE_IEEE802_11 = 105
BSSID, STA, GW = "02:00:00:00:00:aa", "02:00:00:00:00:0c", "02:00:00:00:00:05"
SNAP_IP = bytes.fromhex("aaaa03000000") + b"\x08\x00"


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def subframe(msdu: bytes, last: bool = False) -> bytes:
    """DA, SA, length, the MSDU, and the padding to a multiple of 4 bytes (none after the last)."""
    body = mac(GW) + mac(STA) + struct.pack("!H", len(msdu)) + msdu
    return body if last else body + b"\0" * (-len(body) % 4)


def amsdu(*msdus: bytes, trailer: bytes = b"") -> bytes:
    """A QoS data frame (to DS) with the A-MSDU bit set, carrying the MSDUs as subframes."""
    head = bytes(Dot11(type=2, subtype=8, FCfield="to_DS", addr1=BSSID, addr2=STA, addr3=GW)) + b"\x80\x00"
    return head + b"".join(subframe(m, i == len(msdus) - 1) for i, m in enumerate(msdus)) + trailer


def udp(sport: int, data: bytes, src: str = "10.0.0.1", dst: str = "10.0.0.2") -> bytes:
    return SNAP_IP + bytes(IP(src=src, dst=dst) / UDP(sport=sport, dport=5000) / data)


def replay(tmp_path, frames, linktype: int = LINKTYPE_IEEE802_11, **kw):
    timed = [(T0 + i * MS, *f) if isinstance(f, tuple) else (T0 + i * MS, f) for i, f in enumerate(frames)]
    path = cap.write(tmp_path / "a.pcap", cap.pcap_bytes(timed, linktype=linktype, nano=True))
    meter = FlowMeter(**kw)
    batches = [b.to_numpy() for b in meter.read(str(path))]
    assert meter.errors == []
    recs = np.concatenate(batches, dtype=dtype()) if batches else np.empty(0, dtype=dtype())
    c = meter.counters
    assert sum(c[k] for k in DISPOSITIONS) == c["packets_read"] == len(frames)
    return recs, c


def by_port(recs) -> dict[int, np.void]:
    """Flows by their client port (the one that is not 5000; either side, some are server ports)."""
    return {int(r["orig_p"]) if int(r["orig_p"]) != 5000 else int(r["resp_p"]): r for r in recs}


def test_every_subframe_is_a_packet(tmp_path):
    """Three subframes (an odd and an even MSDU length: the padding is the standard one) and a
    4-byte trailer (an FCS) that is no subframe."""
    a = udp(1111, b"a")                         # 37-byte MSDU: 3 bytes of padding
    b = udp(1111, b"bb")                        # 38-byte MSDU: 0 bytes (Zeek's length % 4 would skip 2)
    syn = SNAP_IP + bytes(IP(src="10.0.0.3", dst="10.0.0.4") / TCP(sport=2222, dport=80, flags="S"))
    recs, c = replay(tmp_path, [amsdu(a, b, syn, trailer=b"\xde\xad\xbe\xef")])
    assert (c["packets_read"], c["in_flow"], c["amsdu_subframes"], c["amsdu_subframes_dropped"]) == (1, 1, 2, 0)
    f = by_port(recs)
    assert sorted(f) == [1111, 2222]
    assert (int(f[1111]["orig_pkts"]), int(f[1111]["orig_ip_bytes"])) == (2, 29 + 30)
    assert int(f[2222]["orig_pkts"]) == 1 and int(f[2222]["proto"]) == 6
    # every subframe carries the 802.11 frame's addresses
    assert all(bytes(r["orig_mac"]) == mac(STA) and bytes(r["resp_mac"]) == mac(GW) for r in recs)


def test_a_bad_subframe_ends_the_frame(tmp_path):
    """A subframe that is not LLC/SNAP IP is counted dropped and the ones after it are not decoded;
    a bad first subframe is the frame's disposition."""
    stp = bytes.fromhex("424203") + b"\0" * 35
    ok, later = udp(1111, b"x"), udp(3333, b"y")
    recs, c = replay(tmp_path, [amsdu(ok, stp, later), amsdu(stp, later)])
    assert (c["in_flow"], c["not_ip"], c["amsdu_subframes"], c["amsdu_subframes_dropped"]) == (1, 1, 0, 1)
    assert sorted(by_port(recs)) == [1111]


def test_a_subframe_cut_by_the_snap_length_is_decoded_as_far_as_it_goes(tmp_path):
    full = amsdu(udp(1111, b"one"), udp(2222, b"two" * 20))
    recs, c = replay(tmp_path, [(full[:-30], len(full))])
    assert c["amsdu_subframes"] == 1 and sorted(by_port(recs)) == [1111, 2222]
    # cut on the wire (the IP length exceeds what was sent): that subframe is dropped, as Zeek does
    recs, c = replay(tmp_path, [full[:-30]])
    assert c["amsdu_subframes_dropped"] == 1 and sorted(by_port(recs)) == [1111]


def test_a_fragment_in_a_later_subframe_is_no_held_packet(tmp_path):
    """Fuzzing found this (decode-amsdu-fragment-held): an IP fragment in a subframe after the
    first was remembered as a held packet although no disposition counted it, so dropping its
    incomplete datagram (here at the end of input) took fragment_held below zero. Such a
    subframe is counted dropped like any undecodable one; the frame keeps its first subframe's
    disposition, and a first-subframe fragment is still a held packet that becomes a dropped one."""
    def frag(sport: int) -> bytes:
        return SNAP_IP + bytes(IP(src="10.0.0.7", dst="10.0.0.8", id=77, flags="MF") / UDP(sport=sport) / (b"z" * 40))
    late = amsdu(udp(1111, b"x"), frag(4444))
    first = amsdu(frag(5555), udp(2222, b"y"))
    for frames in ([late], [late, late], [first]):
        recs, c = replay(tmp_path, frames)       # asserts the dispositions add up to packets_read
        assert c["fragment_held"] == 0 and c["amsdu_subframes_dropped"] == len(frames) - (frames == [first])
    assert c["fragment_dropped"] == 1 and c["amsdu_subframes"] == 1 and sorted(by_port(recs)) == [2222]


def test_outer_udp_tunnel_counts_the_frame_once(tmp_path):
    """VXLAN -> Ethernet -> IPv4 -> Aruba GRE -> 802.11 A-MSDU with two subframes: the outer UDP
    connection has one packet per frame; both subframes' flows have the tunnel parent that a plain
    802.11 frame through the same tunnels gets (Zeek's tunnel_parents: the innermost tunnel)."""
    def tunnelled(frame: bytes) -> bytes:
        gre = struct.pack("!HH", 0, 0x8200) + frame
        inner = bytes(IP(src="192.0.2.1", dst="192.0.2.2", proto=47) / gre)
        eth = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00"
        return eth + bytes(IP(src="198.51.100.1", dst="198.51.100.2") / UDP(sport=40000, dport=4789) /
                           (bytes([8, 0, 0, 0]) + (7).to_bytes(3, "big") + b"\0" + eth + inner))
    plain = bytes(Dot11(type=2, subtype=0, FCfield="to_DS", addr1=BSSID, addr2=STA, addr3=GW)) + udp(5555, b"c")
    two = tunnelled(amsdu(udp(1111, b"a"), udp(3333, b"b")))
    recs, c = replay(tmp_path, [two, two, tunnelled(plain)], linktype=cap.LINKTYPE_ETHERNET)
    f = by_port(recs)
    assert sorted(f) == [1111, 3333, 5555, 40000]
    assert int(f[40000]["orig_pkts"]) == 3            # three frames, not five packets
    assert int(f[1111]["orig_pkts"]) == int(f[3333]["orig_pkts"]) == 2
    parents = [tuple(int(x) for x in f[p]["tunnel_parents"] if x) for p in (1111, 3333, 5555)]
    assert parents[0] == parents[1] == parents[2] and len(parents[0]) == 1
    assert all(int(f[p]["tunnel_type"]) == int(f[5555]["tunnel_type"]) != 0 for p in (1111, 3333))
    assert c["amsdu_subframes"] == 2 and c["tunnel_decapsulated"] == 3


def test_subframes_survive_batch_boundaries_and_match_the_live_path(tmp_path):
    """Many A-MSDU frames, small export batches (the engine stops between subframes): every
    subframe is a flow, as when the same frames are fed one by one (the live capture path)."""
    n = 300
    frames = [amsdu(*(udp(1024 + 3 * i + k, b"p" * (k + 1)) for k in range(3))) for i in range(n)]
    recs, c = replay(tmp_path, frames, batch_size=7, udp_inactivity=0.002)
    assert c["amsdu_subframes"] == 2 * n and len(recs) == 3 * n
    assert sorted(by_port(recs)) == list(range(1024, 1024 + 3 * n))
    eng = FlowMeter(udp_inactivity=0.002).engine
    for i, f in enumerate(frames):
        eng.feed_packet(f, T0 + i * MS, linktype=LINKTYPE_IEEE802_11)
    eng.finish()
    live = eng.take()
    assert sorted(by_port(live)) == sorted(by_port(recs))
    assert eng.counters()["amsdu_subframes"] == 2 * n
