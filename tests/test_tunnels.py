"""Tunnel decapsulation (ext/ph_tunnel.c, ph_decode.c, the tunnel part of ph_flow.c), issue 5.

Packets are crafted byte by byte (tunnel headers) around scapy's IP/UDP/TCP/ICMP, replayed with
FlowMeter, and the flows checked: the inner flow keyed by the inner tuple with only the inner IP bytes,
the outer UDP flow of UDP tunnels (Zeek mode), tunnel_parents, the tunnel context of the record, the
counters (dispositions still add up to packets_read), strip mode and mirror_id keying.
"""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

import captures as cap
from pyhunt import FlowMeter, _ext, dtype, schema

T0 = 1705309200_000000000
MS = 1_000_000
DISPOSITIONS = _ext.COUNTER_NAMES[2:_ext.N_DISPOSITIONS]
O1, O2 = "198.51.100.1", "198.51.100.2"            # outer endpoints
A, B = "10.0.0.1", "10.0.0.2"                      # inner endpoints
TT = {n: i for i, n in enumerate(schema.TUNNEL_TYPES)}


def replay(tmp_path, frames, **kw):
    """Replay frames (bytes of Ethernet frames, one per ms); check the disposition invariant."""
    path = cap.write(tmp_path / "t.pcap", cap.pcap_bytes([(T0 + i * MS, f) for i, f in enumerate(frames)],
                                                         nano=True))
    meter = FlowMeter(**kw)
    batches = [b.to_numpy() for b in meter.read(str(path))]
    recs = np.concatenate(batches, dtype=dtype()) if batches else np.empty(0, dtype=dtype())
    c = meter.counters
    assert sum(c[k] for k in DISPOSITIONS) == c["packets_read"] == len(frames)
    return recs, c


def eth(payload: bytes, ethertype: int = 0x0800) -> bytes:
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01" + struct.pack("!H", ethertype) + payload


def outer_udp(payload: bytes, dport: int, sport: int = 40000, src: str = O1, dst: str = O2) -> bytes:
    return eth(bytes(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload))


def outer_ip(proto: int, payload: bytes, src: str = O1, dst: str = O2) -> bytes:
    return eth(bytes(IP(src=src, dst=dst, proto=proto) / payload))


def inner_udp(src=A, dst=B, sport=1111, dport=2222, data=b"hello") -> bytes:
    return bytes(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / data)


def inner_eth(ip: bytes) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b", type=0x0800)) + ip


def vxlan(vni: int, payload: bytes, flags: int = 0x08) -> bytes:
    return bytes([flags, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0" + payload


def geneve(vni: int, payload: bytes, proto: int = 0x6558, options: bytes = b"") -> bytes:
    assert len(options) % 4 == 0
    return bytes([len(options) // 4, 0]) + struct.pack("!H", proto) + vni.to_bytes(3, "big") + b"\0" + options \
        + payload


def gre(proto: int, payload: bytes, key: int | None = None, seq: int | None = None, csum: bool = False) -> bytes:
    flags = (0x8000 if csum else 0) | (0x2000 if key is not None else 0) | (0x1000 if seq is not None else 0)
    out = struct.pack("!HH", flags, proto)
    if csum:
        out += b"\0\0\0\0"
    if key is not None:
        out += struct.pack("!I", key)
    if seq is not None:
        out += struct.pack("!I", seq)
    return out + payload


def gtp(payload: bytes, teid: int = 0x1234, msg: int = 0xFF, seq: bool = False, ext: bool = False) -> bytes:
    flags = 0x30 | (0x02 if seq else 0) | (0x04 if ext else 0)
    opt = b""
    if seq or ext:
        opt = b"\0\x01\0" + (b"\x85" if ext else b"\0")
        if ext:
            opt += b"\x01\x10\x05\0"   # one 4-byte extension header (PDU session container), then none
    return bytes([flags, msg]) + struct.pack("!HI", len(opt) + len(payload), teid) + opt + payload


def ayiya(payload: bytes, next_header: int = 41, op: int = 1) -> bytes:
    # identity length 2^4 = 16, signature 5 * 4 = 20, auth method 2, op, next header, epoch
    return bytes([0x41, 0x52, 0x20 | op, next_header]) + b"\0\0\0\1" + b"I" * 16 + b"S" * 20 + payload


def flows(recs) -> dict:
    """(proto, sorted (port, port)) -> record, for lookups."""
    out = {}
    for r in recs:
        out[(int(r["proto"]), tuple(sorted((int(r["orig_p"]), int(r["resp_p"])))))] = r
    return out


def addr(raw, ver=4) -> str:
    import ipaddress
    b = bytes(raw)
    return str(ipaddress.ip_address(b[:4] if ver == 4 else b))


# ---------------------------------------------------------------- UDP tunnels (Zeek mode)

def test_vxlan_gives_outer_and_inner_flows(tmp_path):
    pkt = inner_udp()
    recs, c = replay(tmp_path, [outer_udp(vxlan(42, inner_eth(pkt)), 4789),
                                outer_udp(vxlan(42, inner_eth(inner_udp(A, B, 1111, 2222, b"again"))), 4789)])
    f = flows(recs)
    outer, inner = f[(17, (4789, 40000))], f[(17, (1111, 2222))]
    assert (int(outer["orig_pkts"]), int(inner["orig_pkts"])) == (2, 2)
    assert int(inner["orig_ip_bytes"]) == 2 * len(pkt)                   # only the inner IP packets
    assert int(outer["orig_ip_bytes"]) == 2 * (20 + 8 + 8 + 14 + len(pkt))
    assert int(inner["tunnel_parents"][0]) == int(outer["flow_id"]) and int(inner["tunnel_parents"][1]) == 0
    assert int(outer["tunnel_parents"][0]) == 0 and int(outer["tunnel_type"]) == 0
    assert schema.TUNNEL_TYPES[int(inner["tunnel_type"])] == "vxlan" and int(inner["tunnel_key"]) == 42
    assert int(inner["flags"]) & schema.FLAGS["tunnel"] and int(inner["flags"]) & schema.FLAGS["tunnel_key"]
    assert (addr(inner["tunnel_outer_src"]), addr(inner["tunnel_outer_dst"])) == (O1, O2)
    assert bytes(inner["orig_mac"]) == bytes.fromhex("02000000000a")   # the inner frame's MACs
    assert c["in_flow"] == 2 and c["tunnel_decapsulated"] == 2


def test_geneve_options_are_skipped_and_ip_payloads_work(tmp_path):
    tcp = bytes(IP(src=A, dst=B) / TCP(sport=5555, dport=80, flags="S"))
    opts = bytes(range(12))   # three 4-byte words of options
    recs, c = replay(tmp_path, [outer_udp(geneve(7, inner_eth(tcp), options=opts), 6081),
                                outer_udp(geneve(8, inner_udp(), proto=0x0800), 6081, sport=40001)])
    f = flows(recs)
    assert set(f) == {(17, (6081, 40000)), (17, (6081, 40001)), (6, (80, 5555)), (17, (1111, 2222))}
    assert bytes(f[(6, (80, 5555))]["history"]) == b"S"
    assert int(f[(17, (1111, 2222))]["tunnel_key"]) == 8 and c["tunnel_decapsulated"] == 2


def test_teredo_with_indicators_and_by_signature(tmp_path):
    v6 = bytes(IPv6(src="2001:0:4137:9e50::1", dst="2001:db8::2") / UDP(sport=7, dport=9) / b"x")
    origin = b"\0\0" + b"\x12\x34" + bytes(4)
    auth = b"\0\x01\x02\x03" + b"id" + b"abc" + bytes(8) + b"\0"
    recs, c = replay(tmp_path, [outer_udp(v6, 3544), outer_udp(origin + v6, 3544),
                                outer_udp(auth + origin + v6, 3544), outer_udp(v6, 32900, sport=3797)])
    f = flows(recs)
    assert int(f[(17, (7, 9))]["orig_pkts"]) == 4 and int(f[(17, (7, 9))]["ip_version"]) == 6
    assert int(f[(17, (3544, 40000))]["orig_pkts"]) == 3 and int(f[(17, (3797, 32900))]["orig_pkts"]) == 1
    parents = {int(p) for p in f[(17, (7, 9))]["tunnel_parents"] if p}   # a tunnel change: both outer flows
    assert parents == {int(f[(17, (3544, 40000))]["flow_id"]), int(f[(17, (3797, 32900))]["flow_id"])}
    assert c["tunnel_decapsulated"] == 4


def test_teredo_payload_must_fill_the_datagram(tmp_path):
    v6 = bytes(IPv6(src="2001:0:4137:9e50::1", dst="2001:db8::2") / UDP(sport=7, dport=9) / b"x")
    recs, c = replay(tmp_path, [outer_udp(v6 + b"trailing", 3544)])
    assert len(recs) == 1 and int(recs[0]["resp_p"]) == 3544 and c["tunnel_bad_header"] == 1


@pytest.mark.parametrize("kind", ["plain", "sequence", "extension"])
def test_gtpu_g_pdu(tmp_path, kind):
    pdu = gtp(inner_udp(), seq=kind != "plain", ext=kind == "extension")
    recs, c = replay(tmp_path, [outer_udp(pdu, 2152, sport=2152)])
    f = flows(recs)
    assert set(f) == {(17, (2152, 2152)), (17, (1111, 2222))}
    assert schema.TUNNEL_TYPES[int(f[(17, (1111, 2222))]["tunnel_type"])] == "gtpv1"
    assert int(f[(17, (1111, 2222))]["tunnel_key"]) == 0x1234


def test_gtp_signalling_is_only_the_outer_flow(tmp_path):
    recs, c = replay(tmp_path, [outer_udp(gtp(b"\0\0\0\0", msg=1), 2152, sport=2152)])   # echo request
    assert len(recs) == 1 and c["tunnel_decapsulated"] == 0 and c["in_flow"] == 1


def test_ayiya(tmp_path):
    v6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=3, dport=4))
    recs, c = replay(tmp_path, [outer_udp(ayiya(v6), 5072), outer_udp(ayiya(v6, op=0), 5072)])
    f = flows(recs)
    assert int(f[(17, (3, 4))]["orig_pkts"]) == 1 and int(f[(17, (5072, 40000))]["orig_pkts"]) == 2


# ---------------------------------------------------------------- IP tunnels

@pytest.mark.parametrize("variant", ["ipv4", "key-seq-csum", "ethernet", "erspan1", "erspan2", "erspan3",
                                     "erspan3-subheader"])
def test_gre_variants(tmp_path, variant):
    ip = inner_udp()
    body = {
        "ipv4": gre(0x0800, ip),
        "key-seq-csum": gre(0x0800, ip, key=77, seq=1, csum=True),
        "ethernet": gre(0x6558, inner_eth(ip)),
        "erspan1": gre(0x88BE, inner_eth(ip)),
        "erspan2": gre(0x88BE, struct.pack("!HHI", 0x1000, 0x0123, 0) + inner_eth(ip), seq=5),
        "erspan3": gre(0x22EB, struct.pack("!HHIHH", 0x2000, 0x0123, 0, 0, 0) + inner_eth(ip), seq=5),
        "erspan3-subheader": gre(0x22EB, struct.pack("!HHIHH", 0x2000, 0x0123, 0, 0, 1) + bytes(8)
                                 + inner_eth(ip), seq=5),
    }[variant]
    recs, c = replay(tmp_path, [outer_ip(47, body), outer_ip(47, body, src=O2, dst=O1)])
    assert len(recs) == 1, "no outer flow for GRE (Zeek keeps it in tunnel.log)"
    r = recs[0]
    assert int(r["orig_pkts"]) == 2 and int(r["orig_ip_bytes"]) == 2 * len(ip)
    ttype = schema.TUNNEL_TYPES[int(r["tunnel_type"])]
    assert ttype == ("erspan" if variant.startswith("erspan") else "gre")
    assert int(r["tunnel_parents"][0]) != 0 and int(r["tunnel_parents"][1]) == 0   # one pair, either order
    assert bytes(r["history"]) == b"D"   # no tunnel change between the two directions of one pair
    if variant == "key-seq-csum":
        assert int(r["tunnel_key"]) == 77
    if variant.startswith("erspan") and variant != "erspan1":
        assert int(r["tunnel_key"]) == 0x123


@pytest.mark.parametrize("outer_v, inner_v", [(4, 4), (4, 6), (6, 4), (6, 6)])
def test_ip_in_ip(tmp_path, outer_v, inner_v):
    inner = inner_udp() if inner_v == 4 else bytes(IPv6(src="2001:db8::a", dst="2001:db8::b") / UDP(sport=5, dport=6))
    proto = 4 if inner_v == 4 else 41
    if outer_v == 4:
        frame = outer_ip(proto, inner)
    else:
        frame = eth(bytes(IPv6(src="2001:db8:ff::1", dst="2001:db8:ff::2", nh=proto) / inner), 0x86DD)
    recs, c = replay(tmp_path, [frame])
    assert len(recs) == 1 and int(recs[0]["ip_version"]) == inner_v and int(recs[0]["orig_ip_bytes"]) == len(inner)
    assert schema.TUNNEL_TYPES[int(recs[0]["tunnel_type"])] == "ip" and int(recs[0]["tunnel_ipver"]) == outer_v


def test_pptp_enhanced_gre(tmp_path):
    ip = inner_udp()
    hdr = struct.pack("!HHHH", 0x3001, 0x880B, len(ip) + 4, 9) + struct.pack("!I", 1)   # K, S, version 1
    recs, c = replay(tmp_path, [outer_ip(47, hdr + b"\xff\x03\x00\x21" + ip),
                                outer_ip(47, struct.pack("!HHHH", 0x2081, 0x880B, 0, 9) + bytes(4))])   # ack only
    assert len(recs) == 1 and int(recs[0]["orig_pkts"]) == 1
    assert c["no_connection"] == 1


# ---------------------------------------------------------------- nesting, depth, bad headers, switches

def test_vxlan_inside_geneve_and_the_depth_limit(tmp_path):
    dns = inner_udp(dport=53)
    vx = bytes(IP(src="172.16.0.1", dst="172.16.0.2") / UDP(sport=26383, dport=4789) / vxlan(5, inner_eth(dns)))
    frame = outer_udp(geneve(9, vx, proto=0x0800), 6081, sport=11803)
    recs, c = replay(tmp_path, [frame])
    f = flows(recs)
    assert set(f) == {(17, (6081, 11803)), (17, (4789, 26383)), (17, (53, 1111))}
    gen, vxf, inner = f[(17, (6081, 11803))], f[(17, (4789, 26383))], f[(17, (53, 1111))]
    assert int(vxf["tunnel_parents"][0]) == int(gen["flow_id"])
    assert int(inner["tunnel_parents"][0]) == int(vxf["flow_id"])
    assert c["in_flow"] == 1 and c["tunnel_decapsulated"] == 1
    recs, c = replay(tmp_path, [frame], tunnel_max_depth=1)
    assert set(flows(recs)) == {(17, (6081, 11803)), (17, (4789, 26383))} and c["tunnel_too_deep"] == 1
    recs, c = replay(tmp_path, [outer_ip(4, bytes(IP(src=A, dst=B, proto=4) / inner_udp()))], tunnel_max_depth=1)
    assert len(recs) == 0 and c["unsupported_tunnel"] == 1 and c["tunnel_too_deep"] == 1


def test_bad_and_truncated_tunnel_headers(tmp_path):
    frames = [outer_udp(vxlan(1, inner_eth(inner_udp()), flags=0), 4789),       # no I flag
              outer_udp(b"\x08\0\0", 4789, sport=40001),                         # cut VXLAN header
              outer_udp(geneve(1, b"", options=b"")[:8].replace(b"\x00", b"\x05", 1), 6081),   # options beyond
              outer_ip(47, b"\x20\x00"),                                          # cut GRE header
              outer_ip(47, struct.pack("!HH", 0x4000, 0x0800) + bytes(8)),        # GRE routing
              outer_ip(47, struct.pack("!HH", 0, 0x1234) + b"xx")]                # unknown GRE protocol
    recs, c = replay(tmp_path, frames)
    assert len(recs) == 3 and all(int(r["proto"]) == 17 and int(r["tunnel_type"]) == 0 for r in recs)
    assert c["tunnel_bad_header"] == 6 and c["unsupported_tunnel"] == 3 and c["in_flow"] == 3


def test_unusable_inner_packet_counts_in_the_outer_flow_only(tmp_path):
    arp = bytes(Ether(src="02:00:00:00:00:0a", dst="ff:ff:ff:ff:ff:ff") / ARP())
    cut = inner_eth(inner_udp())[:14 + 10]
    recs, c = replay(tmp_path, [outer_udp(vxlan(1, arp), 4789), outer_udp(vxlan(1, cut), 4789)])
    assert len(recs) == 1 and int(recs[0]["orig_pkts"]) == 2
    assert c["in_flow"] == 2 and c["tunnel_inner_dropped"] == 2 and c["tunnel_decapsulated"] == 0
    recs, c = replay(tmp_path, [outer_udp(vxlan(1, arp), 4789)], tunnels="strip")
    assert len(recs) == 0 and c["not_ip"] == 1


def test_ports_and_enable_switches(tmp_path):
    frame = outer_udp(vxlan(3, inner_eth(inner_udp())), 4789)
    other = outer_udp(vxlan(3, inner_eth(inner_udp())), 8472, sport=40001)
    recs, _ = replay(tmp_path, [frame, other], tunnel_ports={"vxlan": [8472]})
    assert set(flows(recs)) == {(17, (4789, 40000)), (17, (8472, 40001)), (17, (1111, 2222))}
    assert int(flows(recs)[(17, (1111, 2222))]["orig_pkts"]) == 1
    recs, c = replay(tmp_path, [frame], tunnel_disable=("vxlan",))
    assert len(recs) == 1 and c["tunnel_decapsulated"] == 0
    teredo = outer_udp(bytes(IPv6(src="2001:0:1::1", dst="2001:db8::2") / UDP(sport=7, dport=9)), 32900)
    recs, _ = replay(tmp_path, [teredo], teredo_dpd=False)
    assert len(recs) == 1
    with pytest.raises(ValueError):
        FlowMeter(tunnels="bogus").engine
    with pytest.raises(ValueError):
        FlowMeter(tunnel_disable=("nope",)).engine
    with pytest.raises(ValueError):
        FlowMeter(tunnel_max_depth=_ext.MAX_TUNNEL_DEPTH + 1).engine


# ---------------------------------------------------------------- tunnel changes (Zeek's 'X')

@pytest.mark.parametrize("n, x", [(6, False), (8, True)])
def test_tunnel_changes_are_limited(tmp_path, n, x):
    """One inner flow alternating between direct and GRE packets: each switch is a tunnel change;
    after Tunnel::max_changes_per_connection (5) the history gets 'X'."""
    ip = inner_udp()
    frames = [eth(ip) if i % 2 == 0 else outer_ip(47, gre(0x0800, ip)) for i in range(n)]
    recs, _ = replay(tmp_path, frames)
    assert len(recs) == 1 and int(recs[0]["orig_pkts"]) == n
    assert (b"X" in bytes(recs[0]["history"])) is x
    recs, _ = replay(tmp_path, frames, tunnel_max_changes=0)
    assert b"X" not in bytes(recs[0]["history"])


# ---------------------------------------------------------------- strip mode and mirror_id

def test_strip_mode_keys_flows_by_vni(tmp_path):
    frames = [outer_udp(vxlan(10, inner_eth(inner_udp())), 4789), outer_udp(vxlan(11, inner_eth(inner_udp())), 4789),
              outer_udp(vxlan(10, inner_eth(inner_udp())), 4789)]
    recs, c = replay(tmp_path, frames, tunnels="strip")
    assert len(recs) == 2, "no outer flow; one flow per VNI"
    by_vni = {int(r["ingress_id"]): r for r in recs}
    assert set(by_vni) == {10, 11} and int(by_vni[10]["orig_pkts"]) == 2
    assert all(int(r["flags"]) & schema.FLAGS["ingress"] and int(r["tunnel_parents"][0]) == 0 for r in recs)
    assert by_vni[10]["flow_id"] != by_vni[11]["flow_id"]
    ecs = [json.loads(x) for x in _ext.format_records(recs, "ecs").splitlines()]
    assert sorted(d["observer"]["ingress"]["interface"]["id"] for d in ecs) == ["10", "11"]
    assert all(d["pyhunt"]["tunnel"]["vni"] in (10, 11) and "tunnel_parents" not in d["zeek"]["connection"]
               for d in ecs)
    # Zeek mode: the inner tuple alone is the key, as Zeek's
    recs, _ = replay(tmp_path, frames)
    assert len(recs) == 2 and int(flows(recs)[(17, (1111, 2222))]["orig_pkts"]) == 3


def test_mirror_id_is_part_of_the_key(tmp_path):
    meter = FlowMeter(tunnels="strip")
    eng = meter.engine
    frame = inner_eth(inner_udp())
    eng.feed_packet(frame, T0, mirror_id=5)                               # VNI 4 from a listener
    eng.feed_packet(frame, T0 + MS, mirror_id=6)                          # VNI 5
    eng.feed_packet(frame, T0 + 2 * MS)                                   # no session
    eng.feed_packet(outer_udp(vxlan(4, frame), 4789), T0 + 3 * MS)        # VNI 4 found in strip mode
    eng.finish()
    recs = eng.take()
    assert len(recs) == 3
    by = {(int(r["ingress_id"]), bool(int(r["flags"]) & schema.FLAGS["ingress"])): int(r["orig_pkts"]) for r in recs}
    assert by == {(4, True): 2, (5, True): 1, (0, False): 1}
    zeek = FlowMeter().engine   # Zeek mode keys by a listener's session too
    zeek.feed_packet(frame, T0, mirror_id=5)
    zeek.feed_packet(frame, T0, mirror_id=6)
    zeek.finish()
    assert len(zeek.take()) == 2


# ---------------------------------------------------------------- output formats

def test_tunnel_fields_in_every_format(tmp_path):
    recs, _ = replay(tmp_path, [outer_udp(vxlan(42, inner_eth(inner_udp())), 4789),
                                outer_ip(47, gre(0x0800, inner_udp(sport=3333), key=9), src=O2, dst=O1)])
    f = flows(recs)
    outer_uid = _ext.uid(int(f[(17, (4789, 40000))]["flow_id"]))
    zj = {(d["id.orig_p"], d["id.resp_p"]): d for d in map(json.loads, _ext.format_records(recs, "zeek-json").splitlines())}
    assert zj[(1111, 2222)]["tunnel_parents"] == [outer_uid]
    assert "tunnel_parents" not in zj[(40000, 4789)]
    assert len(zj[(3333, 2222)]["tunnel_parents"]) == 1 and zj[(3333, 2222)]["tunnel_parents"][0] != outer_uid
    tsv = [line.split("\t") for line in _ext.format_records(recs, "zeek-tsv").decode().splitlines()]
    col = _ext.tsv_header("x").decode().splitlines()[6].split("\t").index("tunnel_parents") - 1
    assert sorted(row[col] for row in tsv)[0] == "-" and outer_uid in {row[col] for row in tsv}
    docs = list(map(json.loads, _ext.format_records(recs, "ecs").splitlines()))
    seen = set()
    for d in docs:
        stack = [("", d)]
        while stack:
            pre, obj = stack.pop()
            for k, v in obj.items():
                (stack.append((pre + k + ".", v)) if isinstance(v, dict) else seen.add(pre + k))
    known = {p for p, _, _ in schema.ECS_FIELDS} | {x.ecs for x in schema.feature_fields()}
    assert seen - known == set()
    tunnel_fields = {p for p in known if p.startswith("pyhunt.tunnel.")} | {"zeek.connection.tunnel_parents"}
    assert tunnel_fields - seen == set()
    vx = next(d for d in docs if d.get("source", {}).get("port") == 1111)
    assert vx["pyhunt"]["tunnel"] == {"type": "vxlan", "vni": 42,
                                      "outer": {"source": {"ip": O1}, "destination": {"ip": O2}}}
    assert vx["zeek"]["connection"]["tunnel_parents"] == [outer_uid] and "flow" in vx["pyhunt"]


def test_new_ecs_fields_are_mapped():
    from pyhunt.sinks import templates
    flat = templates.flatten(templates.flow_properties())
    for path in ("pyhunt.tunnel.type", "pyhunt.tunnel.vni", "pyhunt.tunnel.key", "pyhunt.tunnel.outer.source.ip",
                 "zeek.connection.tunnel_parents", "observer.ingress.interface.id"):
        assert path in flat, path
    assert flat["pyhunt.tunnel.outer.destination.ip"] == "ip"


def test_non_tunnel_udp_is_unchanged(tmp_path):
    recs, c = replay(tmp_path, [eth(inner_udp()), eth(inner_udp(src=B, dst=A, sport=2222, dport=1111))])
    assert len(recs) == 1 and int(recs[0]["tunnel_type"]) == 0 and int(recs[0]["flags"]) & 0x0700 == 0
    assert c["tunnel_decapsulated"] == 0 and c["tunnel_bad_header"] == 0


# ---------------------------------------------------------------- Zeek's DNS session timeout

def test_dns_session_timeout_splits_udp_dns(tmp_path):
    """Zeek's DNS analyzer ends a UDP connection to a DNS port idle for dns_session_timeout - 1 s
    (checked every dns_session_timeout): two exchanges 16 s apart are two connections (the Teredo case
    of the parity set has one); other ports keep the 60 s UDP timeout."""
    def frames(port):
        q = eth(inner_udp(dport=port, data=b"q"))
        r = eth(inner_udp(src=B, dst=A, sport=port, dport=1111, data=b"r"))
        return [(T0, q), (T0 + 200 * MS, r), (T0 + 16_000 * MS, q), (T0 + 16_100 * MS, r)]

    def run(port, **kw):
        path = cap.write(tmp_path / "d.pcap", cap.pcap_bytes(frames(port), nano=True))
        return np.concatenate([b.to_numpy() for b in FlowMeter(**kw).read(str(path))], dtype=dtype())

    assert [(int(r["orig_pkts"]), int(r["resp_pkts"])) for r in run(53)] == [(1, 1), (1, 1)]
    assert len(run(5353)) == 2 and len(run(2222)) == 1
    assert len(run(53, dns_session_timeout=0)) == 1
    assert len(run(53, dns_session_timeout=20)) == 1


def test_tunnel_records_are_bounded_by_the_capacity(tmp_path):
    """Tunnel context lives in a side pool with at most one record per live flow: a small table that
    evicts all the time reuses the records, and every exported inner flow still has its parent."""
    frames = [outer_udp(vxlan(1, inner_eth(inner_udp(sport=1000 + i))), 4789, sport=30000 + i) for i in range(300)]
    recs, c = replay(tmp_path, frames, capacity=8)
    assert c["evictions"] > 0 and len(recs) == 600
    inner = recs[recs["orig_p"] < 30000]
    assert len(inner) == 300 and (inner["tunnel_parents"][:, 0] != 0).all()
    assert set(inner["tunnel_parents"][:, 0].tolist()) <= set(recs[recs["orig_p"] >= 30000]["flow_id"].tolist())
    eng = FlowMeter(capacity=8).engine
    for i, f in enumerate(frames[:20]):    # the first chunks of flows and of tunnel records
        eng.feed_packet(f, T0 + i * MS)
    before = eng.table_memory()
    for i, f in enumerate(frames[20:]):
        eng.feed_packet(f, T0 + (20 + i) * MS)
    assert eng.table_memory() == before and eng.active_flows() <= 8


def test_inner_fragments_of_a_udp_tunnel_keep_the_counters_exact(tmp_path):
    """Found by fuzz_decode: in Zeek mode a VXLAN packet whose inner IPv4 is a fragment counts in
    the outer UDP flow while the fragment waits for its datagram; when that datagram never completes,
    its fragments must not be moved from `fragment_held` (where they never were) to
    `fragment_dropped`, which wrapped `fragment_held` below zero."""
    whole = IP(src=A, dst=B, id=77) / UDP(sport=1111, dport=2222) / (b"x" * 64)
    first = bytes(whole)[:20 + 32]
    frag = bytearray(first)
    frag[2:4] = struct.pack("!H", len(first))
    frag[6:8] = struct.pack("!H", 0x2000)          # MF, offset 0: the rest never comes
    frag[10:12] = b"\0\0"
    frag[10:12] = struct.pack("!H", _ipsum(bytes(frag[:20])))
    frames = [outer_udp(vxlan(5, inner_eth(bytes(frag))), 4789),
              outer_udp(vxlan(5, inner_eth(inner_udp())), 4789)]
    recs, c = replay(tmp_path, frames)
    assert c["fragment_held"] == 0 and c["fragment_dropped"] == 0   # neither packet was a held fragment
    assert c["frag_timeout"] + c["frag_overflow"] >= 1 or c["fragments_reassembled"] == 0
    outer = [r for r in recs if int(r["resp_p"]) == 4789]
    assert len(outer) == 1 and int(outer[0]["orig_pkts"]) == 2     # the outer connection has both
    assert any(int(r["resp_p"]) == 2222 and int(r["orig_pkts"]) == 1 for r in recs)


def _ipsum(hdr: bytes) -> int:
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
