/*
 * ph_types.h -- types shared by every layer of the pyhunt C core.
 *
 * Layers (one .c/.h per concern, prefix per layer):
 *   ph_capture  capture readers (pcap, pcapng) over a memory buffer
 *   ph_decode   link layer -> IP -> L4 decoding, checksums (ph_frag: IP reassembly,
 *               ph_tunnel: tunnel headers, one parser per encapsulation)
 *   ph_flow     bidirectional flow table, Zeek conn.log state machine, features
 *   ph_cid      SHA-1 and Community ID v1
 *   ph_format   flow records -> NDJSON (ecs, zeek-json) and Zeek TSV
 *   ph_engine   glue: reader -> decoder -> flow table -> export queue
 *
 * Rules: check the length before every read; load multi-byte fields with the
 * byte-wise helpers below, never by casting a pointer into packet data.
 */
#ifndef PH_TYPES_H
#define PH_TYPES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Byte-wise loads                                                     */
/* ------------------------------------------------------------------ */
static inline uint16_t ph_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t ph_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint16_t ph_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t ph_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t ph_le64(const uint8_t *p) { return (uint64_t)ph_le32(p) | ((uint64_t)ph_le32(p + 4) << 32); }

#define PH_NS_PER_SEC 1000000000LL

/* ------------------------------------------------------------------ */
/* Counters: every packet read ends in exactly one "disposition"       */
/* counter (PH_C_IN_FLOW or one of the drop reasons), so that          */
/*   sum(dispositions) == PH_C_PACKETS_READ                            */
/* Other counters (PH_C_INFO_*) are informational and not exclusive.   */
/* Keep ph_counter_names[] in ph_engine.c in the same order.           */
/* ------------------------------------------------------------------ */
enum ph_counter {
    PH_C_PACKETS_READ = 0,      /* records returned by the capture reader */
    PH_C_BYTES_READ,            /* captured bytes of those records */
    /* --- dispositions (exclusive) --- */
    PH_C_IN_FLOW,               /* counted in a flow's orig_pkts/resp_pkts */
    PH_C_BAD_CHECKSUM,          /* matched/created a flow but ignored (bad L4 checksum, as Zeek) */
    PH_C_FRAGMENT_HELD,         /* IP fragment absorbed into a reassembled datagram */
    PH_C_FRAGMENT_DROPPED,      /* fragment never completed (timeout, overflow, overlap) */
    PH_C_NOT_IP,                /* ARP, LLDP, STP...: a valid frame without IP */
    PH_C_UNSUPPORTED_LINKTYPE,  /* pcap/pcapng link type we do not decode */
    PH_C_TRUNCATED_LINK,        /* captured too short for its link-layer header */
    PH_C_TRUNCATED_IP,          /* captured too short for the IP header */
    PH_C_BAD_IP_HEADER,         /* malformed IP header (version, IHL, total length, ext headers) */
    PH_C_BAD_IP_CHECKSUM,       /* IPv4 header checksum wrong (dropped as Zeek does) */
    PH_C_TRUNCATED_L4,          /* transport header missing or cut (TCP/UDP/ICMP) */
    PH_C_BAD_L4_HEADER,         /* malformed transport header (e.g. TCP data offset < 5) */
    PH_C_UNSUPPORTED_TUNNEL,    /* encapsulation not decoded yet (GRE, IP-in-IP, ...) */
    PH_C_NO_CONNECTION,         /* IP protocols Zeek never makes a connection for (ESP, mobility) */
    PH_C_FLOW_TABLE_FULL,       /* no slot even after eviction (should stay 0) */
    PH_C__DISPOSITION_END,
    /* --- informational (not exclusive) --- */
    PH_C_FLOWS_CREATED = PH_C__DISPOSITION_END,
    PH_C_FLOWS_EXPORTED,        /* final records exported */
    PH_C_FLOW_UPDATES,          /* interim update records exported */
    PH_C_EVICTIONS,             /* flows exported early because the table was full */
    PH_C_FRAGMENTS_REASSEMBLED, /* datagrams completed from fragments */
    PH_C_FRAG_OVERFLOW,         /* fragment buffers/slots exhausted */
    PH_C_FRAG_TIMEOUT,          /* incomplete datagrams expired */
    PH_C_TCP_REUSE,             /* TCP connection reuse (new flow on same 5-tuple) */
    PH_C_LINK_UNKNOWN_SEEN,     /* distinct records with an unknown link type (=unsupported) */
    PH_C_TUNNEL_DECAPSULATED,   /* packets whose inner packet reached the flow table through a tunnel */
    PH_C_TUNNEL_INNER_DROPPED,  /* UDP-tunnel packets whose inner packet was not usable (only the outer
                                   UDP flow counts them; Zeek mode) */
    PH_C_TUNNEL_TOO_DEEP,       /* encapsulations nested deeper than tunnel_max_depth (not decapsulated) */
    PH_C_TUNNEL_BAD_HEADER,     /* tunnel header malformed or cut (not decapsulated) */
    PH_C_AMSDU_SUBFRAMES,       /* 802.11 A-MSDU subframes after the first of their frame, handed to the
                                   flow table as packets (the frame's disposition is its first subframe's) */
    PH_C_AMSDU_SUBFRAMES_DROPPED, /* such subframes not decodable (the rest of the frame is skipped) */
    PH_C__COUNT
};

/* ------------------------------------------------------------------ */
/* One captured packet, as produced by a capture reader.               */
/* data points into the reader's buffer and is valid until the next    */
/* call on that reader.                                                */
/* ------------------------------------------------------------------ */
typedef struct ph_pkt {
    const uint8_t *data;
    uint32_t caplen;     /* bytes present at data */
    uint32_t wirelen;    /* original length on the wire */
    int64_t ts_ns;       /* nanoseconds since the epoch */
    uint32_t linktype;   /* LINKTYPE_* (pcap) of this packet's interface */
    uint32_t ifindex;    /* pcapng interface id (0 for classic pcap) */
    uint32_t mirror_id;  /* 0, or VNI + 1 of a mirroring session a listener already took apart:
                            part of the flow key, reported as observer.ingress.interface.id */
} ph_pkt;

/* ------------------------------------------------------------------ */
/* A decoded packet: what the flow table needs, nothing else.          */
/* Produced by ph_decode; l4 may point into the packet or into the     */
/* decoder's reassembly buffer (valid until the next decode call).     */
/* ------------------------------------------------------------------ */
#define PH_TCP_FIN 0x01
#define PH_TCP_SYN 0x02
#define PH_TCP_RST 0x04
#define PH_TCP_PSH 0x08
#define PH_TCP_ACK 0x10
#define PH_TCP_URG 0x20
#define PH_TCP_ECE 0x40
#define PH_TCP_CWR 0x80

#define PH_PF_HAS_MAC        0x0001  /* smac/dmac valid (Ethernet-like link) */
#define PH_PF_L4_CSUM_BAD    0x0002  /* transport checksum verified and wrong */
#define PH_PF_TRUNCATED      0x0004  /* capture shorter than IP length (checksums not verified) */
#define PH_PF_REASSEMBLED    0x0008  /* built from IP fragments */
#define PH_PF_TCP_WSCALE     0x0010  /* tcp_wscale valid (window scale option present) */

/* Tunnel types (ph_encap.type, ph_flow_rec.tunnel_type); names in ph_tunnel.c. */
enum { PH_TUN_NONE = 0, PH_TUN_IP, PH_TUN_GRE, PH_TUN_ERSPAN, PH_TUN_VXLAN, PH_TUN_GENEVE, PH_TUN_TEREDO,
       PH_TUN_GTPV1, PH_TUN_AYIYA, PH_TUN__N };

static inline int ph_tun_is_udp(int type) { return type >= PH_TUN_VXLAN; }

/* ph_encap.flags */
#define PH_EF_KEY       0x01  /* key valid (VNI, GRE key, ERSPAN session, GTP TEID) */
#define PH_EF_MAC       0x02  /* smac/dmac valid */
#define PH_EF_TRUNCATED 0x04  /* the outer IP packet was cut by the capture */

/* Most encapsulations one packet may carry (tunnel_max_depth is at most this). */
#define PH_MAX_ENCAP 4

/* One encapsulation layer, outermost first: the outer IP (and UDP) header of
 * the tunnel and the link layer in front of it. */
typedef struct ph_encap {
    uint8_t saddr[16], daddr[16];  /* outer IP endpoints (IPv4 in the first 4 bytes) */
    uint32_t ip_len;               /* outer IP length (Zeek's) */
    uint32_t key;                  /* VNI, GRE key, ERSPAN session id, GTP TEID (PH_EF_KEY) */
    uint16_t sport, dport;         /* UDP tunnels: outer ports */
    uint16_t udp_len;              /* UDP tunnels: UDP length field */
    uint16_t vlan[2];              /* VLAN ids of the link layer in front of the outer IP */
    uint8_t smac[6], dmac[6];
    uint8_t type;                  /* PH_TUN_* */
    uint8_t ipver;                 /* outer IP version */
    uint8_t flags;                 /* PH_EF_* */
    uint8_t nvlan;
} ph_encap;

/* Flow-key context (ph_parsed.ctx): 0 = none, else kind << 32 | value. */
#define PH_CTX_VNI  1ull  /* VXLAN/GENEVE VNI (strip mode, or a listener's mirror_id - 1) */
#define PH_CTX_KEY  2ull  /* GRE key / ERSPAN session id (strip mode) */

typedef struct ph_parsed {
    int64_t ts_ns;
    uint16_t flags;          /* PH_PF_* */
    uint8_t ipver;           /* 4 or 6 */
    uint8_t proto;           /* transport protocol number after IPv6 extension headers */
    uint8_t saddr[16];       /* IPv4: first 4 bytes, rest zero */
    uint8_t daddr[16];
    uint16_t sport, dport;   /* TCP/UDP/SCTP ports; 0 otherwise (ICMP: see icmp_type/code) */
    uint8_t nvlan;           /* 0, 1 or 2 VLAN tags seen (outer first) */
    uint16_t vlan[2];        /* VLAN ids (12 bits) */
    uint8_t smac[6], dmac[6];
    uint32_t ip_len;         /* Zeek's IP length: IPv4 total length, IPv6 payload length + 40 */
    uint32_t l4_len;         /* transport bytes according to the IP header (ip_len - all IP headers) */
    const uint8_t *l4;       /* transport header */
    uint32_t l4_caplen;      /* transport bytes actually captured (<= l4_len, may be less) */
    /* TCP */
    uint32_t tcp_seq, tcp_ack;
    uint16_t tcp_win;        /* raw advertised window */
    uint8_t tcp_flags;       /* PH_TCP_* */
    uint8_t tcp_wscale;      /* window scale option (SYN), if PH_PF_TCP_WSCALE */
    uint32_t payload_len;    /* TCP: l4_len - data offset; UDP: udp length - 8; ICMP: l4_len - 8 */
    /* UDP */
    uint16_t udp_len;        /* UDP length field */
    /* ICMP / ICMPv6 */
    uint8_t icmp_type, icmp_code;
    /* tunnels (ph_tunnel.h); encap[] is valid only up to nencap, and is not cleared per packet */
    uint8_t nencap;          /* encapsulation layers taken apart (0 = a direct packet) */
    uint8_t inner_ok;        /* 1: the fields above are the innermost packet; 0 (nencap > 0): the inner
                                packet was not usable and only the outer UDP tunnel flows count */
    uint8_t amsdu;           /* 0, or 1 + nencap at the 802.11 header of an A-MSDU (one of its subframes) */
    uint8_t amsdu_more;      /* a subframe after the first (ph_decode_next): the layers before the
                                802.11 header were counted with the first */
    uint64_t ctx;            /* flow-key context (PH_CTX_*), 0 for most packets */
    ph_encap encap[PH_MAX_ENCAP];
} ph_parsed;

/* Bytes of ph_parsed that ph_decode clears per packet (encap[] is written before it is read). */
#define PH_PARSED_CLEAR offsetof(ph_parsed, encap)

/* Decoder result codes: PH_DEC_OK or a disposition counter index (> 0). */
#define PH_DEC_OK 0

/* ------------------------------------------------------------------ */
/* Error reporting for fatal capture-file problems.                    */
/* ------------------------------------------------------------------ */
typedef struct ph_error {
    char msg[256];
    uint64_t offset;         /* byte offset in the capture where the problem is */
} ph_error;

#endif /* PH_TYPES_H */
