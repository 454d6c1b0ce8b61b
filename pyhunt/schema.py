"""The flow record schema: every exported flow field is named here, once.

From this table come the numpy dtype of ``FlowBatch.to_numpy()``, the C struct
``ph_flow_rec`` in ``ext/ph_record.h`` (generated: ``python -m pyhunt.schema``),
the ECS paths of the statistical features, and the field list in docs/fields.md.
A test checks that the checked-in header matches this table, and the extension
checks at import that its struct layout matches the dtype.
"""
from __future__ import annotations

import functools
from typing import Iterator, NamedTuple

__all__ = ["Field", "FIELDS", "CONN_STATES", "END_REASONS", "FLAGS", "FIRST_N", "TUNNEL_TYPES", "TUNNEL_PARENTS", "ECS_FIELDS", "dtype",
           "es_type", "feature_fields", "render_c_header", "render_fields_doc"]

#: Packets recorded individually at the start of each flow (sizes, directions, gaps).
FIRST_N = 8

#: Zeek conn_state codes, in the order of the ``conn_state`` index.
CONN_STATES = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH",
               "SH", "SHR", "OTH")

#: Why a record was exported (``end_reason``).
END_REASONS = ("end_of_input", "inactivity", "tcp_closed", "tcp_reuse", "evicted", "active_timeout",
               "shutdown")

#: Bits of ``flags``.
FLAGS = {
    "vlan": 0x0001,        # vlan is valid
    "inner_vlan": 0x0002,  # inner_vlan is valid
    "mac": 0x0004,         # orig_mac/resp_mac are valid
    "update": 0x0008,      # interim update of a flow still open (same flow_id follows)
    "flipped": 0x0010,     # originator/responder were swapped after the first packet
    "local_orig": 0x0020,  # originator is in a configured local network
    "local_resp": 0x0040,  # responder is in a configured local network
    "local_known": 0x0080, # local networks are configured (local_* are meaningful)
    "tunnel": 0x0100,      # the flow came through a tunnel: tunnel_type, tunnel_ipver, tunnel_outer_* are valid
    "tunnel_key": 0x0200,  # tunnel_key is valid (VNI, GRE key, ERSPAN session id or GTP TEID)
    "ingress": 0x0400,     # ingress_id is valid (mirroring session: VNI or GRE key keyed with the flow)
}

#: Tunnel types (``tunnel_type``), by index; 0 = not tunnelled.
TUNNEL_TYPES = ("", "ip", "gre", "erspan", "vxlan", "geneve", "teredo", "gtpv1", "ayiya")

#: Most tunnel parents a record carries (``tunnel_parents``).
TUNNEL_PARENTS = 4

_CTYPES = {"u1": "uint8_t", "i1": "int8_t", "u2": "uint16_t", "u4": "uint32_t", "u8": "uint64_t",
           "i8": "int64_t", "f8": "double", "S": "char"}
_SIZES = {"u1": 1, "i1": 1, "u2": 2, "u4": 4, "u8": 8, "i8": 8, "f8": 8, "S": 1}


class Field(NamedTuple):
    """One member of the flow record (a named tuple: building the schema at import stays cheap)."""
    name: str
    kind: str          # u1 i1 u2 u4 u8 i8 f8, or S (NUL-terminated char array)
    count: int         # array length (1 = scalar; for S the buffer size)
    doc: str
    unit: str = ""
    ecs: str | None = None  # dotted ECS path for fields emitted generically (features)

    @property
    def size(self) -> int:
        return _SIZES[self.kind] * self.count

    @property
    def align(self) -> int:
        return _SIZES[self.kind]

    @property
    def np_format(self) -> str:
        if self.kind == "S":
            return f"S{self.count}"
        return self.kind if self.count == 1 else f"({self.count},){self.kind}"


def _features() -> Iterator[Field]:
    for d, who in (("orig", "originator"), ("resp", "responder"), ("both", "both directions")):
        yield Field(f"{d}_size_min", "u4", 1, f"smallest IP packet length, {who}", "bytes",
                    f"pyhunt.flow.{d}.pkt_size.min")
        yield Field(f"{d}_size_mean", "f8", 1, f"mean IP packet length, {who}", "bytes",
                    f"pyhunt.flow.{d}.pkt_size.mean")
        yield Field(f"{d}_size_std", "f8", 1, f"population standard deviation of IP packet length, {who}",
                    "bytes", f"pyhunt.flow.{d}.pkt_size.std")
        yield Field(f"{d}_size_max", "u4", 1, f"largest IP packet length, {who}", "bytes",
                    f"pyhunt.flow.{d}.pkt_size.max")
    for d, who in (("orig", "originator"), ("resp", "responder"), ("both", "both directions")):
        for stat, what in (("min", "smallest"), ("mean", "mean"), ("std", "population standard deviation of the"),
                           ("max", "largest")):
            yield Field(f"{d}_iat_{stat}", "f8", 1, f"{what} inter-arrival time between packets, {who}",
                        "seconds", f"pyhunt.flow.{d}.iat.{stat}")
    for d, who in (("orig", "originator"), ("resp", "responder")):
        for flag in ("syn", "ack", "fin", "rst", "psh", "urg", "ece", "cwr"):
            yield Field(f"{d}_{flag}", "u4", 1, f"TCP packets with {flag.upper()} set, from the {who}", "packets",
                        f"pyhunt.flow.{d}.tcp_flags.{flag}")
        yield Field(f"{d}_empty_pkts", "u4", 1, f"packets without transport payload, from the {who}",
                    "packets", f"pyhunt.flow.{d}.empty_pkts")
    yield Field("first_n", "u1", 1, "how many of the first_* slots are filled", "", "pyhunt.flow.first.n")
    yield Field("first_dirs", "i1", FIRST_N, "direction of each of the first packets: 1 originator, -1 responder",
                "", "pyhunt.flow.first.dirs")
    yield Field("first_sizes", "u2", FIRST_N, "IP length of each of the first packets", "bytes",
                "pyhunt.flow.first.sizes")
    yield Field("first_iat", "f8", FIRST_N,
                "time since the previous packet of the flow for each of the first packets (first is 0)",
                "seconds", "pyhunt.flow.first.iat")


#: Every field of ``ph_flow_rec``, in struct order (grouped by alignment, so no padding).
FIELDS: tuple[Field, ...] = (
    Field("flow_id", "u8", 1, "stable flow id (from Community ID, start time, VLAN and tunnel context); the uid and _id"),
    Field("ts_start", "i8", 1, "time of the first packet", "ns since epoch"),
    Field("ts_end", "i8", 1, "time of the last packet that counts for duration (Zeek's last_time)",
          "ns since epoch"),
    Field("orig_pkts", "u8", 1, "packets from the originator", "packets"),
    Field("resp_pkts", "u8", 1, "packets from the responder", "packets"),
    Field("orig_ip_bytes", "u8", 1, "IP-level bytes (sum of IP total lengths) from the originator", "bytes"),
    Field("resp_ip_bytes", "u8", 1, "IP-level bytes from the responder", "bytes"),
    Field("orig_bytes", "u8", 1, "payload bytes from the originator (TCP: sequence space, as Zeek)", "bytes"),
    Field("resp_bytes", "u8", 1, "payload bytes from the responder", "bytes"),
    Field("missed_bytes", "u8", 1, "bytes in TCP content gaps (Zeek's missed_bytes)", "bytes"),
    Field("tunnel_parents", "u8", TUNNEL_PARENTS,
          "flow ids (uids) of the enclosing tunnels, as Zeek's tunnel_parents; 0 = unused slot"),
    *[f for f in _features() if f.kind == "f8"],
    *[f for f in _features() if f.kind == "u4"],
    Field("tunnel_key", "u4", 1, "VNI, GRE key, ERSPAN session id or GTP TEID of the innermost tunnel "
          "(valid if flags & tunnel_key)"),
    Field("ingress_id", "u4", 1, "mirroring session keyed with the flow: VNI or GRE key (valid if flags & ingress)"),
    Field("vlan", "u2", 1, "outer 802.1Q VLAN id (valid if flags & vlan)"),
    Field("inner_vlan", "u2", 1, "inner VLAN id of Q-in-Q (valid if flags & inner_vlan)"),
    Field("orig_p", "u2", 1, "originator port (ICMP: type)"),
    Field("resp_p", "u2", 1, "responder port (ICMP: counterpart type, or code)"),
    Field("flags", "u2", 1, "bit set, see pyhunt.schema.FLAGS"),
    *[f for f in _features() if f.kind == "u2"],
    Field("orig_h", "u1", 16, "originator address (IPv4 in the first 4 bytes)"),
    Field("resp_h", "u1", 16, "responder address"),
    Field("orig_mac", "u1", 6, "originator MAC (valid if flags & mac)"),
    Field("resp_mac", "u1", 6, "responder MAC (valid if flags & mac)"),
    Field("tunnel_outer_src", "u1", 16, "outer source address of the innermost tunnel, first packet (flags & tunnel)"),
    Field("tunnel_outer_dst", "u1", 16, "outer destination address of the innermost tunnel, first packet"),
    Field("tunnel_type", "u1", 1, "innermost tunnel, index into pyhunt.schema.TUNNEL_TYPES (0 = none)"),
    Field("tunnel_ipver", "u1", 1, "IP version of the tunnel's outer addresses"),
    Field("ip_version", "u1", 1, "4 or 6"),
    Field("proto", "u1", 1, "IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6, ...)"),
    Field("conn_state", "u1", 1, "Zeek conn_state, index into pyhunt.schema.CONN_STATES"),
    Field("end_reason", "u1", 1, "why the record was exported, index into pyhunt.schema.END_REASONS"),
    *[f for f in _features() if f.kind in ("u1", "i1")],
    Field("history", "S", 40, "Zeek connection history letters (NUL-terminated, empty = unset)"),
    Field("community_id", "S", 32, "Community ID v1, base64 form ('1:...')"),
    Field("reserved", "u1", 3, "zero (explicit tail padding, so the record has no implicit padding)"),
)


#: ECS output (format ``ecs``): every field outside ``pyhunt.flow.*``, with its Elasticsearch type.
#: The features under ``pyhunt.flow.*`` come from FIELDS (``Field.ecs``).
ECS_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("@timestamp", "date", "flow start (first packet), ISO 8601 UTC, microseconds"),
    ("ecs.version", "keyword", "ECS version the document follows"),
    ("event.kind", "keyword", "always `event`"),
    ("event.category", "keyword", "always `[network]`"),
    ("event.type", "keyword", "`[connection, end]` for a finished flow, `[connection, info]` for an interim update"),
    ("event.dataset", "keyword", "`pyhunt.flow`"),
    ("event.id", "keyword", "the flow's uid (also the Elasticsearch _id and zeek.session_id)"),
    ("event.start", "date", "time of the first packet"),
    ("event.end", "date", "time of the last packet that counts for the duration (Zeek's last_time)"),
    ("event.duration", "long", "event.end - event.start in nanoseconds"),
    ("event.reason", "keyword", "why the record was written: one of END_REASONS"),
    ("source.ip", "ip", "originator address"),
    ("source.port", "long", "originator port (absent for ICMP and port-less protocols)"),
    ("source.mac", "keyword", "originator MAC, AA-BB-CC-DD-EE-FF (when the link layer has one)"),
    ("source.bytes", "long", "IP-level bytes sent by the originator (Zeek's orig_ip_bytes)"),
    ("source.packets", "long", "packets sent by the originator"),
    ("destination.ip", "ip", "responder address"),
    ("destination.port", "long", "responder port"),
    ("destination.mac", "keyword", "responder MAC"),
    ("destination.bytes", "long", "IP-level bytes sent by the responder (resp_ip_bytes)"),
    ("destination.packets", "long", "packets sent by the responder"),
    ("network.transport", "keyword", "tcp, udp, icmp, ipv6-icmp, sctp, ... (IANA keyword, else the number)"),
    ("network.iana_number", "keyword", "IP protocol number"),
    ("network.type", "keyword", "ipv4 or ipv6"),
    ("network.bytes", "long", "source.bytes + destination.bytes"),
    ("network.packets", "long", "source.packets + destination.packets"),
    ("network.community_id", "keyword", "Community ID v1 (seed configurable)"),
    ("network.direction", "keyword", "internal, outbound, inbound or external, from --local-nets (absent without)"),
    ("network.vlan.id", "keyword", "outer 802.1Q VLAN id"),
    ("network.inner.vlan.id", "keyword", "inner VLAN id (Q-in-Q)"),
    ("related.ip", "ip", "both addresses"),
    ("observer.hostname", "keyword", "the sensor's name (--observer)"),
    ("observer.type", "keyword", "`sensor`"),
    ("observer.product", "keyword", "`pyhunt`"),
    ("observer.vendor", "keyword", "`pyhunt`"),
    ("observer.ingress.interface.id", "keyword",
     "mirroring session the flow was keyed with: the outermost VXLAN/GENEVE VNI or GRE key in "
     "`--tunnels strip` mode, or the VNI a VXLAN listener took apart (absent otherwise)"),
    ("zeek.session_id", "keyword", "the uid, as Zeek's conn.log uid"),
    ("zeek.connection.state", "keyword", "Zeek conn_state (S0 S1 SF REJ S2 S3 RSTO RSTR RSTOS0 RSTRH SH SHR OTH)"),
    ("zeek.connection.history", "keyword", "Zeek history letters (absent when empty)"),
    ("zeek.connection.missed_bytes", "long", "bytes in TCP content gaps"),
    ("zeek.connection.local_orig", "boolean", "originator in --local-nets (absent without)"),
    ("zeek.connection.local_resp", "boolean", "responder in --local-nets (absent without)"),
    ("zeek.connection.icmp.type", "long", "ICMP type (ICMP flows; ports are absent)"),
    ("zeek.connection.icmp.code", "long", "ICMP code, or the counterpart type for request/reply pairs (as Zeek's id.resp_p)"),
    ("zeek.connection.tunnel_parents", "keyword",
     "uids of the enclosing tunnels, as Zeek's tunnel_parents: the outer UDP flow of VXLAN, GENEVE, Teredo, "
     "GTP-U and AYIYA, a synthetic uid per address pair for IP-in-IP, GRE and ERSPAN (absent for direct flows)"),
    ("pyhunt.tunnel.type", "keyword",
     "innermost tunnel of the flow's first packet: ip, gre, erspan, vxlan, geneve, teredo, gtpv1 or ayiya "
     "(the pyhunt.tunnel object is absent for direct flows)"),
    ("pyhunt.tunnel.vni", "long", "its VXLAN/GENEVE VNI"),
    ("pyhunt.tunnel.key", "long", "its GRE key, ERSPAN session id or GTP TEID (when present)"),
    ("pyhunt.tunnel.outer.source.ip", "ip", "its outer source address"),
    ("pyhunt.tunnel.outer.destination.ip", "ip", "its outer destination address"),
)

_ES_TYPES = {"u1": "short", "i1": "byte", "u2": "integer", "u4": "long", "u8": "long", "i8": "long", "f8": "double"}


def es_type(f: Field) -> str:
    """Elasticsearch mapping type of a feature field."""
    return _ES_TYPES[f.kind]


def render_fields_doc() -> str:
    """Source of docs/fields.md."""
    out = ["# Flow fields", "",
           "GENERATED by `python -m pyhunt.schema` from `pyhunt/schema.py`: edit the schema, not this file.", "",
           "Each flow is one record. The same flow is written in three formats and is available in Python as a",
           "numpy structured array (`FlowBatch.to_numpy()`, dtype `pyhunt.schema.dtype()`).", "",
           "## ECS (`--format ecs`, the default)", "",
           "One JSON document per line, nested objects. Field names follow Elastic Common Schema and, under",
           "`zeek.*`, Elastic's Zeek integration, so pyhunt flows and Zeek's conn logs sit side by side.", "",
           "| field | Elasticsearch type | meaning |", "|---|---|---|"]
    for path, typ, doc in ECS_FIELDS:
        out.append(f"| `{path}` | {typ} | {doc} |")
    out += ["", "### Hunting features (`pyhunt.flow.*`)", "",
            "Packet sizes are IP lengths; inter-arrival times are in seconds, per direction (`orig`, `resp`) and",
            "over the whole flow (`both`). Standard deviations are population ones. `first.*` arrays hold",
            f"the first `first.n` packets of the flow (at most {FIRST_N}).", "",
            "| field | Elasticsearch type | unit | meaning |", "|---|---|---|---|"]
    for f in feature_fields():
        arr = f" (array of {f.count})" if f.count > 1 else ""
        out.append(f"| `{f.ecs}` | {es_type(f)}{arr} | {f.unit} | {f.doc} |")
    out += ["", "## Zeek conn.log (`--format zeek-json`, `--format zeek-tsv`)", "",
            "Exactly Zeek's conn.log field names and units (ts, uid, id.orig_h, id.orig_p, id.resp_h, id.resp_p,",
            "proto, service, duration, orig_bytes, resp_bytes, conn_state, local_orig, local_resp, missed_bytes,",
            "history, orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes, tunnel_parents, ip_proto) plus",
            "`community_id` as Zeek's community-id policy script adds it. As in Zeek: `duration`, `orig_bytes` and",
            "`resp_bytes` are unset when the flow's packets all share one timestamp; `orig_bytes`/`resp_bytes` are",
            "payload bytes (TCP: sequence space); `proto` is `unknown_transport` with ports 0 for protocols other",
            "than TCP, UDP and ICMP; ICMP ports are the type and the counterpart type or code. JSON omits unset",
            "fields; TSV writes `-` and has Zeek's `#` header lines. `service` is never set (no protocol",
            "analyzers). `tunnel_parents` is the set of uids of the enclosing tunnels (see",
            "[architecture.md](architecture.md#tunnels)), unset for direct flows and in `--tunnels strip` mode.", "",
            "## Record fields (numpy, `FlowBatch.to_numpy()`)", "",
            "| field | numpy type | unit | meaning |", "|---|---|---|---|"]
    for f in FIELDS:
        out.append(f"| `{f.name}` | `{f.np_format}` | {f.unit} | {f.doc} |")
    out += ["", "`conn_state` indexes `pyhunt.schema.CONN_STATES` (" + ", ".join(CONN_STATES) + "); `end_reason`",
            "indexes `pyhunt.schema.END_REASONS` (" + ", ".join(END_REASONS) + "); `flags` bits are",
            "`pyhunt.schema.FLAGS` (" + ", ".join(f"{k} 0x{v:04x}" for k, v in FLAGS.items()) + ").", ""]
    return "\n".join(out)


def layout() -> tuple[list[int], int]:
    """C offsets of every field and the struct size (natural alignment)."""
    off, offsets, maxalign = 0, [], 1
    for f in FIELDS:
        off = (off + f.align - 1) // f.align * f.align
        offsets.append(off)
        off += f.size
        maxalign = max(maxalign, f.align)
    return offsets, (off + maxalign - 1) // maxalign * maxalign


@functools.cache
def dtype():
    """The numpy structured dtype matching ``ph_flow_rec`` byte for byte."""
    import numpy as np
    offsets, size = layout()
    # aligned=True keeps the C struct's trailing padding through numpy operations (concatenate...)
    return np.dtype({"names": [f.name for f in FIELDS], "formats": [f.np_format for f in FIELDS],
                     "offsets": offsets, "itemsize": size, "aligned": True})


def feature_fields() -> list[Field]:
    """Fields emitted generically under ``pyhunt.flow.*`` in ECS output, in path order."""
    return sorted((f for f in FIELDS if f.ecs), key=lambda f: f.ecs.split("."))


def render_c_header() -> str:
    """Source of ext/ph_record.h."""
    offsets, size = layout()
    out = ["/* GENERATED by `python -m pyhunt.schema` from pyhunt/schema.py -- do not edit. */",
           "#ifndef PH_RECORD_H", "#define PH_RECORD_H", "", "#include <stddef.h>", "#include <stdint.h>", "",
           f"#define PH_FIRST_N {FIRST_N}", ""]
    for i, s in enumerate(CONN_STATES):
        out.append(f"#define PH_CS_{s} {i}")
    out.append("")
    for i, s in enumerate(END_REASONS):
        out.append(f"#define PH_END_{s.upper()} {i}")
    out.append("")
    for k, v in FLAGS.items():
        out.append(f"#define PH_RF_{k.upper()} 0x{v:04x}")
    out.append("")
    out.append("static const char *const ph_conn_state_names[] = {"
               + ", ".join(f'"{c}"' for c in CONN_STATES) + "};")
    out.append("static const char *const ph_end_reason_names[] = {"
               + ", ".join(f'"{c}"' for c in END_REASONS) + "};")
    out.append(f"#define PH_N_CONN_STATES {len(CONN_STATES)}")
    out.append(f"#define PH_N_END_REASONS {len(END_REASONS)}")
    out += ["", "typedef struct ph_flow_rec {"]
    for f in FIELDS:
        arr = f"[{f.count}]" if (f.count > 1 or f.kind == "S") else ""
        out.append(f"    {_CTYPES[f.kind]} {f.name}{arr}; /* {f.doc}{' (' + f.unit + ')' if f.unit else ''} */")
    out += ["} ph_flow_rec;", "", f"#define PH_REC_SIZE {size}",
            "/* layout table for the import-time ABI check and generic serialization */",
            "typedef struct ph_rec_field { const char *name; const char *ecs; char kind; uint8_t elem;"
            " uint16_t count; uint32_t offset; } ph_rec_field;",
            f"#define PH_REC_NFIELDS {len(FIELDS)}", "static const ph_rec_field ph_rec_fields[] = {"]
    for f, o in zip(FIELDS, offsets):
        ecs = f'"{f.ecs}"' if f.ecs else "NULL"
        kchar = {"u": "u", "i": "i", "f": "f", "S": "S"}[f.kind[0]]
        out.append(f'    {{"{f.name}", {ecs}, \'{kchar}\', {_SIZES[f.kind]}, {f.count}, {o}}},')
    out += ["};", "", "/* feature fields in ECS path order (for nested JSON emission) */",
            f"#define PH_REC_NFEATURES {len(feature_fields())}", "static const uint16_t ph_rec_feature_order[] = {"]
    idx = {f.name: i for i, f in enumerate(FIELDS)}
    out.append("    " + ", ".join(str(idx[f.name]) for f in feature_fields()))
    out += ["};", "", "#endif /* PH_RECORD_H */", ""]
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover - developer tool
    import pathlib
    import sys
    root = pathlib.Path(__file__).resolve().parent.parent
    targets = {root / "ext" / "ph_record.h": render_c_header(), root / "docs" / "fields.md": render_fields_doc()}
    if sys.argv[1:] == ["--check"]:
        stale = [str(p) for p, text in targets.items() if not p.exists() or p.read_text() != text]
        for p in stale:
            print(f"stale: {p} (run: python -m pyhunt.schema)", file=sys.stderr)
        sys.exit(1 if stale else 0)
    for p, text in targets.items():
        p.write_text(text)
        print(f"wrote {p}")
