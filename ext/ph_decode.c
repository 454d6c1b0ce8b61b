/*
 * ph_decode.c -- link layer -> IP -> transport decoding.
 *
 * One static function per link layer and per header. Each returns PH_DEC_OK
 * with the ph_parsed filled, or the disposition counter (PH_C_*) explaining
 * why the packet gives no transport-level packet. The IP and transport rules
 * follow Zeek (src/packet_analysis/protocol/ip/IP.cc and the TCP, UDP and
 * ICMP analyzers), so that what is dropped here is what Zeek drops before it
 * creates a connection; ../shared/zeek-conn-semantics.md sections 5-7.
 *
 * Truncated vs malformed: a header that the capture cut is PH_C_TRUNCATED_*;
 * a header whose own fields are inconsistent is PH_C_BAD_*.
 */
#include "ph_decode.h"

#include <stdlib.h>

#include "ph_csum.h"
#include "ph_frag.h"
#include "ph_tunnel.h"

#define MAX_LINK_DEPTH   32   /* nested link headers (VLAN, MPLS, PBB...) per frame */
#define MAX_IPV6_EXT     16   /* IPv6 extension headers walked per packet */

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ICMP_    1
#define IPPROTO_IPIP_    4
#define IPPROTO_TCP_     6
#define IPPROTO_UDP_     17
#define IPPROTO_IPV6_    41
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAG_    44
#define IPPROTO_GRE_     47
#define IPPROTO_ESP_     50
#define IPPROTO_AH_      51
#define IPPROTO_ICMPV6_  58
#define IPPROTO_NONE_    59
#define IPPROTO_DSTOPTS_ 60
/* The IPv6 mobility header (135) is not an extension header here: Zeek treats
 * it as one only when built with ENABLE_MOBILE_IPV6 (off by default); a default
 * build hands it to the unknown-transport analyzer, which logs a connection. */

struct ph_decoder {
    ph_decode_cfg cfg;
    uint64_t *counters;
    ph_frag_table *frag;
    uint64_t own_counters[PH_C__COUNT];  /* used when the caller passes no array */
    uint8_t hdrbuf[PH_FRAG_MAX_HDR];     /* header kept from an offset-0 fragment */
    uint8_t tun_port_bits[65536 / 8];    /* UDP ports of enabled UDP tunnels */
    uint8_t tun_udp;                     /* some UDP tunnel is enabled (ports or Teredo signature) */
    /* 802.11 A-MSDU subframes not decoded yet (ph_decode_next); rest == 0: none */
    struct {
        const uint8_t *p;                /* the next subframe, in the packet (or a reassembled buffer) */
        uint32_t rest;                   /* its bytes and those after it */
        int frame_cut, in_rebuilt, depth;
        const uint8_t *wire_base;
        uint32_t wire_len;
        ph_pkt pkt;                      /* the frame (data stays the caller's) */
        ph_parsed snap;                  /* the packet as it was at the 802.11 header */
    } sub;
};

/* Per-packet decoding context. */
typedef struct dctx {
    ph_decoder *d;
    const ph_pkt *pkt;
    ph_parsed *out;
    int depth;         /* link headers seen so far */
    int frame_cut;     /* wire length > captured length (Zeek skips UDP checksums) */
    const uint8_t *wire_base;  /* the buffer the current IP packet lies in ... */
    uint32_t wire_len;         /* ... and how many bytes it had on the wire */
    int in_rebuilt;    /* inside a reassembled datagram (its buffer must not be reused) */
    int inner_failed;  /* a UDP tunnel's inner packet was not usable (Zeek mode: outer flows only) */
    int in_amsdu;      /* inside an A-MSDU subframe (a nested A-MSDU gives its first subframe only) */
} dctx;

static int link_ethernet(dctx *c, const uint8_t *p, uint32_t len);
static int link_ieee80211(dctx *c, const uint8_t *p, uint32_t len);
static int decode_ip(dctx *c, const uint8_t *p, uint32_t len);
static int tun_udp(dctx *c);
static int tun_ip(dctx *c, uint8_t proto, const uint8_t *p, uint32_t wirelen, uint32_t caplen);

/* ------------------------------------------------------------------ */
/* Configuration and lifetime                                          */
/* ------------------------------------------------------------------ */
void ph_decode_cfg_default(ph_decode_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->ignore_checksums = 0;
    cfg->frag_max_datagrams = 4096;
    cfg->frag_max_bytes = 16u * 1024u * 1024u;
    cfg->frag_timeout_ns = 30 * PH_NS_PER_SEC;
    cfg->tunnel_strip = 0;
    cfg->tunnel_max_depth = 2;
    cfg->teredo_dpd = 1;
    for (int i = 0; i < PH_TUN__N; i++)
        cfg->tunnel_enable[i] = 1;
    cfg->tunnel_ports[PH_TUN_VXLAN][0] = PH_VXLAN_PORT;
    cfg->tunnel_ports[PH_TUN_GENEVE][0] = PH_GENEVE_PORT;
    cfg->tunnel_ports[PH_TUN_TEREDO][0] = PH_TEREDO_PORT;
    cfg->tunnel_ports[PH_TUN_GTPV1][0] = PH_GTPU_PORT;
    cfg->tunnel_ports[PH_TUN_AYIYA][0] = PH_AYIYA_PORT;
}

ph_decoder *ph_decoder_new(const ph_decode_cfg *cfg, uint64_t *counters)
{
    ph_decoder *d = calloc(1, sizeof *d);

    if (!d)
        return NULL;
    if (cfg)
        d->cfg = *cfg;
    else
        ph_decode_cfg_default(&d->cfg);
    d->counters = counters ? counters : d->own_counters;
    if (d->cfg.tunnel_max_depth > PH_MAX_ENCAP)
        d->cfg.tunnel_max_depth = PH_MAX_ENCAP;
    for (int t = PH_TUN_VXLAN; t < PH_TUN__N; t++) {
        if (!d->cfg.tunnel_enable[t] || !d->cfg.tunnel_max_depth)
            continue;
        for (int i = 0; i < PH_TUN_MAX_PORTS; i++) {
            uint16_t port = d->cfg.tunnel_ports[t][i];
            if (port) {
                d->tun_port_bits[port >> 3] |= (uint8_t)(1u << (port & 7));
                d->tun_udp = 1;
            }
        }
    }
    if (d->cfg.teredo_dpd && d->cfg.tunnel_enable[PH_TUN_TEREDO] && d->cfg.tunnel_max_depth)
        d->tun_udp = 1;
    d->frag = ph_frag_new(d->cfg.frag_max_datagrams, d->cfg.frag_max_bytes, d->cfg.frag_timeout_ns, d->counters);
    if (!d->frag)
        goto error;
    return d;

error:
    ph_decoder_free(d);
    return NULL;
}

void ph_decoder_free(ph_decoder *d)
{
    if (!d)
        return;
    ph_frag_free(d->frag);
    free(d);
}

void ph_decoder_expire(ph_decoder *d, int64_t now_ns) { ph_frag_expire(d->frag, now_ns); }
void ph_decoder_flush(ph_decoder *d) { ph_frag_flush(d->frag); }
uint32_t ph_decoder_frag_pending(const ph_decoder *d) { return ph_frag_pending(d->frag); }
uint64_t ph_decoder_frag_bytes(const ph_decoder *d) { return ph_frag_bytes(d->frag); }
int ph_decode_pending(const ph_decoder *d) { return d->sub.rest != 0; }

/* ================================================================== */
/* Transport                                                           */
/* ================================================================== */

/* Checksums are verified only when asked and the whole segment was captured. */
static inline int want_verify(const dctx *c)
{
    return !c->d->cfg.ignore_checksums && !(c->out->flags & PH_PF_TRUNCATED);
}

static int l4_tcp(dctx *c)
{
    ph_parsed *o = c->out;
    const uint8_t *t = o->l4;
    uint32_t doff;

    if (o->l4_len < 20 || o->l4_caplen < 20)
        return PH_C_TRUNCATED_L4;
    doff = (uint32_t)(t[12] >> 4) * 4u;
    if (doff < 20)
        return PH_C_BAD_L4_HEADER;
    if (doff > o->l4_len || doff > o->l4_caplen)   /* Zeek: truncated_header */
        return PH_C_TRUNCATED_L4;
    o->sport = ph_be16(t);
    o->dport = ph_be16(t + 2);
    o->tcp_seq = ph_be32(t + 4);
    o->tcp_ack = ph_be32(t + 8);
    o->tcp_flags = t[13];
    o->tcp_win = ph_be16(t + 14);
    o->payload_len = o->l4_len - doff;

    if (o->tcp_flags & PH_TCP_SYN) {
        /* Options walk as Zeek's build_syn_packet_val: stop at EOL or at a
         * trashed length; the last window-scale option wins. */
        uint32_t i = 20;
        while (i < doff) {
            uint8_t kind = t[i];
            uint8_t olen;
            if (kind == 0)
                break;
            if (kind == 1) {
                i++;
                continue;
            }
            if (i + 1 >= doff)
                break;
            olen = t[i + 1];
            if (olen == 0 || i + olen > doff)
                break;
            if (kind == 3 && olen >= 3) {
                o->tcp_wscale = t[i + 2];   /* raw; RFC 7323 caps use at 14 */
                o->flags |= PH_PF_TCP_WSCALE;
            }
            i += olen;
        }
    }
    if (want_verify(c) && !ph_csum_l4_ok(o->ipver, o->saddr, o->daddr, IPPROTO_TCP_, t, o->l4_len, 1))
        o->flags |= PH_PF_L4_CSUM_BAD;
    return PH_DEC_OK;
}

static int l4_udp(dctx *c)
{
    ph_parsed *o = c->out;
    const uint8_t *u = o->l4;
    uint16_t cks;
    int verify;

    if (o->l4_len < 8 || o->l4_caplen < 8)
        return PH_C_TRUNCATED_L4;
    o->sport = ph_be16(u);
    o->dport = ph_be16(u + 2);
    o->udp_len = ph_be16(u + 4);
    if (o->udp_len < 8)
        return PH_C_BAD_L4_HEADER;
    o->payload_len = o->udp_len - 8u;   /* Zeek counts the UDP length field */
    cks = ph_be16(u + 6);

    /* Zeek (udp/UDP.cc): verified over the IP payload length, only when the
     * frame was captured whole; IPv4 checksum 0 means none; VXLAN to its port
     * with checksum 0 is accepted; IPv6 must validate. */
    verify = want_verify(c) && !c->frame_cut;
    if (verify && cks == 0) {
        if (o->ipver == 4)
            verify = 0;
        else if (o->dport == PH_VXLAN_PORT && o->l4_len > 8 + 8 + 14 && (u[8] & 0x08))
            verify = 0;
    }
    if (verify && !ph_csum_l4_ok(o->ipver, o->saddr, o->daddr, IPPROTO_UDP_, u, o->l4_len, 1)) {
        o->flags |= PH_PF_L4_CSUM_BAD;   /* Zeek: no decapsulation either */
        return PH_DEC_OK;
    }
    if (c->d->tun_udp)
        return tun_udp(c);
    return PH_DEC_OK;
}

static int l4_icmp(dctx *c)
{
    ph_parsed *o = c->out;

    if (o->l4_len < 8 || o->l4_caplen < 8)
        return PH_C_TRUNCATED_L4;
    o->icmp_type = o->l4[0];
    o->icmp_code = o->l4[1];
    o->payload_len = o->l4_len - 8u;
    if (want_verify(c) &&
        !ph_csum_l4_ok(o->ipver, o->saddr, o->daddr, o->proto, o->l4, o->l4_len, o->proto == IPPROTO_ICMPV6_))
        o->flags |= PH_PF_L4_CSUM_BAD;
    return PH_DEC_OK;
}

/* Dispatch on the transport protocol. l4_caplen <= l4_len. */
static int decode_l4(dctx *c, uint8_t proto, const uint8_t *l4, uint32_t l4_len, uint32_t l4_caplen)
{
    ph_parsed *o = c->out;

    o->proto = proto;
    o->l4 = l4;
    o->l4_len = l4_len;
    o->l4_caplen = l4_caplen;
    switch (proto) {
    case IPPROTO_TCP_:
        return l4_tcp(c);
    case IPPROTO_UDP_:
        return l4_udp(c);
    case IPPROTO_ICMP_:
    case IPPROTO_ICMPV6_:
        return l4_icmp(c);
    case IPPROTO_IPIP_:
    case IPPROTO_IPV6_:
    case IPPROTO_GRE_:
        return tun_ip(c, proto, l4, l4_len, l4_caplen);
    case IPPROTO_NONE_:
        /* Zeek (ip/IP.cc): "ipv6_no_next" weird, no connection. */
        return PH_C_NO_CONNECTION;
    case 132:
        /* SCTP: Zeek logs it as unknown_transport with ports 0/0 (the Zeek formats write it so),
         * but the flow key and the Community ID use its ports. A header too short for the
         * ports keeps 0/0. */
        if (l4_caplen >= 4) {
            o->sport = ph_be16(o->l4);
            o->dport = ph_be16(o->l4 + 2);
        }
        return PH_DEC_OK;
    default:
        /* everything else: Zeek's unknown_transport, ports 0/0. */
        return PH_DEC_OK;
    }
}

/* ================================================================== */
/* IP                                                                  */
/* ================================================================== */

/* Bytes the frame had on the wire from p on (Zeek compares the IP length with
 * the wire length, not the capture: "truncated_IP_len"). */
static inline uint32_t wire_avail(const dctx *c, const uint8_t *p)
{
    uint32_t off = (uint32_t)(p - c->wire_base);
    return c->wire_len > off ? c->wire_len - off : 0;
}

/* A reassembled datagram (or an IPv6 atomic fragment) in the frag buffer. */
static int decode_rebuilt(dctx *c, uint8_t *buf, uint32_t hdr_len, uint32_t data_len);

static int ipv4_fragment(dctx *c, const uint8_t *p, uint32_t ihl, uint32_t total, uint32_t foff, int mf)
{
    ph_decoder *d = c->d;
    ph_frag_key k;
    uint8_t *buf;
    uint32_t hl, dl;
    int r;

    if (c->in_rebuilt)
        return PH_C_FRAGMENT_DROPPED;   /* a fragment inside a reassembled tunnel packet */
    memset(&k, 0, sizeof k);
    memcpy(k.src, p + 12, 4);
    memcpy(k.dst, p + 16, 4);
    k.id = ph_be16(p + 4);
    k.proto = p[9];
    k.ipver = 4;
    if (foff == 0) {
        memcpy(d->hdrbuf, p, ihl);
        d->hdrbuf[6] &= 0x40;   /* keep DF, clear MF and offset */
        d->hdrbuf[7] = 0;
    }
    r = ph_frag_add(d->frag, &k, c->pkt->ts_ns, foff, mf, d->hdrbuf, ihl, p + ihl, total - ihl, &buf, &hl, &dl);
    if (r == PH_FRAG_HELD)
        return PH_C_FRAGMENT_HELD;
    if (r == PH_FRAG_DROPPED)
        return PH_C_FRAGMENT_DROPPED;
    return decode_rebuilt(c, buf, hl, dl);
}

/* IPv4 (RFC 791). rebuilt: p is a reassembled datagram of exactly len bytes
 * whose header was checked when its fragments arrived. */
static int decode_ipv4(dctx *c, const uint8_t *p, uint32_t len, int rebuilt, uint32_t rebuilt_len)
{
    ph_parsed *o = c->out;
    uint32_t ihl = (uint32_t)(p[0] & 0x0f) * 4u;
    uint32_t field = ph_be16(p + 2), total = field, cap;
    uint16_t fragw = ph_be16(p + 6);
    uint32_t foff = (uint32_t)(fragw & 0x1fff) * 8u;
    int mf = (fragw & 0x2000) != 0;

    if (rebuilt)
        total = field = rebuilt_len;
    if (total == 0) {
        /* TSO zeroes the length: Zeek accepts it only with -C, using the
         * captured length; its IP byte count then adds the field, 0. */
        if (!c->d->cfg.ignore_checksums)
            return PH_C_BAD_IP_HEADER;
        total = len;
    }
    if (!rebuilt && wire_avail(c, p) < total)
        return PH_C_BAD_IP_HEADER;
    if (ihl > total)
        return PH_C_BAD_IP_HEADER;
    if (ihl > len)
        return PH_C_TRUNCATED_IP;
    if (ihl < 20)
        return PH_C_BAD_IP_HEADER;
    if (!rebuilt && !c->d->cfg.ignore_checksums && !ph_csum_ipv4_ok(p, ihl))
        return PH_C_BAD_IP_CHECKSUM;

    o->ipver = 4;
    memcpy(o->saddr, p + 12, 4);
    memcpy(o->daddr, p + 16, 4);
    if (!rebuilt && (foff || mf)) {
        if (len >= total)
            return ipv4_fragment(c, p, ihl, total, foff, mf);
        /* Zeek: an incompletely captured fragment is not reassembled; only
         * the first one is analysed, alone (header-only traces). */
        if (foff)
            return PH_C_FRAGMENT_DROPPED;
    }
    cap = len < total ? len : total;
    if (len < total)
        o->flags |= PH_PF_TRUNCATED;
    o->ip_len = field;
    return decode_l4(c, p[9], p + ihl, total - ihl, cap - ihl);
}

/* IPv6 fragment header at p + off; unfrag = bytes before it, nh_pos = the
 * byte holding the next-header value that points at it. */
static int ipv6_fragment(dctx *c, const uint8_t *p, uint32_t total, uint32_t off, uint32_t nh_pos)
{
    ph_decoder *d = c->d;
    const uint8_t *fh = p + off;
    uint16_t fo = ph_be16(fh + 2);
    uint32_t foff = fo & 0xfff8u, hl, dl;
    int mf = fo & 1, r;
    const uint8_t *hdr = p;
    uint8_t *buf;
    ph_frag_key k;

    if (c->in_rebuilt)
        return PH_C_FRAGMENT_DROPPED;   /* a fragment inside a reassembled tunnel packet */
    if (foff == 0 && off <= PH_FRAG_MAX_HDR) {
        memcpy(d->hdrbuf, p, off);
        d->hdrbuf[nh_pos] = fh[0];  /* the header before now points past the fragment header */
        hdr = d->hdrbuf;
    }
    if (foff == 0 && !mf) {
        /* Atomic fragment (RFC 6946): processed alone, never mixed with a
         * datagram under reassembly; like Zeek, without its fragment header. */
        buf = off <= PH_FRAG_MAX_HDR ? ph_frag_single(d->frag, hdr, off, fh + 8, total - off - 8) : NULL;
        if (!buf)
            return PH_C_FRAGMENT_DROPPED;
        return decode_rebuilt(c, buf, off, total - off - 8);
    }
    memset(&k, 0, sizeof k);
    memcpy(k.src, p + 8, 16);
    memcpy(k.dst, p + 24, 16);
    k.id = ph_be32(fh + 4);
    k.proto = 0;
    k.ipver = 6;
    r = ph_frag_add(d->frag, &k, c->pkt->ts_ns, foff, mf, hdr, off, fh + 8, total - off - 8, &buf, &hl, &dl);
    if (r == PH_FRAG_HELD)
        return PH_C_FRAGMENT_HELD;
    if (r == PH_FRAG_DROPPED)
        return PH_C_FRAGMENT_DROPPED;
    return decode_rebuilt(c, buf, hl, dl);
}

/* Routing header (Zeek IPv6_Hdr_Chain::ProcessRoutingHeader): type 0 with
 * segments left names the final destination in its last 16 bytes (type 2 does
 * too, but only in Zeek builds with ENABLE_MOBILE_IPV6, off by default). */
static void ipv6_routing(ph_parsed *o, const uint8_t *rh, uint32_t hl, int *routed)
{
    uint8_t type = rh[2], segleft = rh[3], len8 = rh[1];

    if (*routed)
        return;   /* RFC 8200: at most one; Zeek keeps the first */
    if (type == 0 && segleft > 0 && len8 >= 2 && len8 % 2 == 0) {
        memcpy(o->daddr, rh + hl - 16, 16);
        *routed = 1;
    }
}

/* IPv6 (RFC 8200) with its extension header chain. */
static int decode_ipv6(dctx *c, const uint8_t *p, uint32_t len, int rebuilt, uint32_t rebuilt_len)
{
    ph_parsed *o = c->out;
    uint32_t total, off = 40, nh_pos = 6, hl, n, cap;
    uint8_t nh;
    int routed = 0;

    if (len < 40)
        return PH_C_TRUNCATED_IP;
    total = rebuilt ? rebuilt_len : (uint32_t)ph_be16(p + 4) + 40u;
    nh = p[6];
    if (!rebuilt && wire_avail(c, p) < total)
        return PH_C_BAD_IP_HEADER;
    o->ipver = 6;
    memcpy(o->saddr, p + 8, 16);
    memcpy(o->daddr, p + 24, 16);

    for (n = 0;; n++) {
        switch (nh) {
        case IPPROTO_HOPOPTS_:
        case IPPROTO_ROUTING_:
        case IPPROTO_DSTOPTS_:
        case IPPROTO_FRAG_:
        case IPPROTO_AH_:
        case IPPROTO_ESP_:
            break;
        default:
            goto transport;
        }
        if (n >= MAX_IPV6_EXT)
            return PH_C_BAD_IP_HEADER;
        if (nh == IPPROTO_ESP_)   /* Zeek: the rest is encrypted, no connection */
            return PH_C_NO_CONNECTION;
        if (off + 2 > total)
            return PH_C_BAD_IP_HEADER;
        if (off + 2 > len)
            return PH_C_TRUNCATED_IP;
        if (nh == IPPROTO_FRAG_)
            hl = 8;
        else if (nh == IPPROTO_AH_)
            hl = 8u + 4u * p[off + 1];   /* (len + 2) 4-byte units */
        else
            hl = 8u + 8u * p[off + 1];
        if (off + hl > total)         /* includes a jumbogram's payload length 0 */
            return PH_C_BAD_IP_HEADER;
        if (off + hl > len)
            return PH_C_TRUNCATED_IP;
        if (nh == IPPROTO_ROUTING_)
            ipv6_routing(o, p + off, hl, &routed);
        if (nh == IPPROTO_FRAG_) {
            uint16_t fo = ph_be16(p + off + 2);
            if (rebuilt)
                return PH_C_BAD_IP_HEADER;   /* nested fragmentation */
            if (len >= total)
                return ipv6_fragment(c, p, total, off, nh_pos);
            if (fo & 0xfff8u)
                return PH_C_FRAGMENT_DROPPED;
            /* First fragment cut by the capture: analysed alone, as Zeek,
             * whose header chain ends at the fragment header. */
            nh = p[off];
            off += hl;
            goto transport;
        }
        nh_pos = off;
        nh = p[off];
        off += hl;
    }

transport:
    cap = len < total ? len : total;
    if (len < total)
        o->flags |= PH_PF_TRUNCATED;
    o->ip_len = total;
    return decode_l4(c, nh, p + off, total - off, cap - off);
}

static int decode_rebuilt(dctx *c, uint8_t *buf, uint32_t hdr_len, uint32_t data_len)
{
    uint32_t total = hdr_len + data_len;

    c->out->flags |= PH_PF_REASSEMBLED;
    c->frame_cut = 0;   /* Zeek: a reassembled packet has wire length == capture length */
    c->in_rebuilt = 1;
    c->wire_base = buf;
    c->wire_len = total;
    if ((buf[0] >> 4) == 4) {
        buf[2] = (uint8_t)(total >> 8);
        buf[3] = (uint8_t)total;
        return decode_ipv4(c, buf, total, 1, total);
    }
    buf[4] = (uint8_t)((total - 40) >> 8);
    buf[5] = (uint8_t)(total - 40);
    return decode_ipv6(c, buf, total, 1, total);
}

/* IP by its version nibble, whatever the link layer claimed (as Zeek). */
static int decode_ip(dctx *c, const uint8_t *p, uint32_t len)
{
    if (len < 20)
        return PH_C_TRUNCATED_IP;
    switch (p[0] >> 4) {
    case 4:
        return decode_ipv4(c, p, len, 0, 0);
    case 6:
        return decode_ipv6(c, p, len, 0, 0);
    default:
        return PH_C_BAD_IP_HEADER;
    }
}

/* ================================================================== */
/* Tunnels (header parsers in ph_tunnel.c)                             */
/* ================================================================== */

/* Push the current (outer) packet onto the encapsulation stack and decode
 * the inner packet at p (caplen bytes captured of wirelen). */
static int tun_descend(dctx *c, const ph_tun_hdr *h, const uint8_t *p, uint32_t caplen, uint32_t wirelen)
{
    ph_parsed *o = c->out;
    ph_encap *e = &o->encap[o->nencap++];
    const uint8_t *q = p + h->off;
    uint32_t len = caplen - h->off, wire = wirelen > h->off ? wirelen - h->off : 0;

    memcpy(e->saddr, o->saddr, 16);
    memcpy(e->daddr, o->daddr, 16);
    e->ip_len = o->ip_len;
    e->key = h->key;
    e->type = h->type;
    e->ipver = o->ipver;
    e->flags = (uint8_t)((h->has_key ? PH_EF_KEY : 0) | ((o->flags & PH_PF_HAS_MAC) ? PH_EF_MAC : 0) |
                         ((o->flags & PH_PF_TRUNCATED) ? PH_EF_TRUNCATED : 0));
    if (ph_tun_is_udp(h->type)) {
        e->sport = o->sport;
        e->dport = o->dport;
        e->udp_len = o->udp_len;
    } else {
        e->sport = e->dport = e->udp_len = 0;
    }
    e->nvlan = o->nvlan;
    e->vlan[0] = o->vlan[0];
    e->vlan[1] = o->vlan[1];
    memcpy(e->smac, o->smac, 6);
    memcpy(e->dmac, o->dmac, 6);
    if (c->d->cfg.tunnel_strip && !o->ctx && h->has_key) {
        /* mirroring mode: the outermost session id keys the flows */
        if (h->type == PH_TUN_VXLAN || h->type == PH_TUN_GENEVE)
            o->ctx = PH_CTX_VNI << 32 | h->key;
        else if (h->type == PH_TUN_GRE || h->type == PH_TUN_ERSPAN)
            o->ctx = PH_CTX_KEY << 32 | h->key;
    }

    /* the inner packet starts afresh */
    o->flags = 0;
    o->nvlan = 0;
    o->vlan[0] = o->vlan[1] = 0;
    memset(o->smac, 0, 6);
    memset(o->dmac, 0, 6);
    o->sport = o->dport = 0;
    o->proto = 0;
    o->payload_len = 0;
    o->udp_len = 0;
    o->tcp_seq = o->tcp_ack = 0;
    o->tcp_win = 0;
    o->tcp_flags = o->tcp_wscale = 0;
    o->icmp_type = o->icmp_code = 0;
    c->wire_base = q;
    c->wire_len = wire;
    c->frame_cut = len < wire;

    switch (h->next) {
    case PH_NEXT_ETH:
        return link_ethernet(c, q, len);
    case PH_NEXT_80211:
        return link_ieee80211(c, q, len);
    default:
        return decode_ip(c, q, len);
    }
}

/* The tunnel type of a UDP packet (PH_TUN_NONE if none): its destination
 * port, then its source port, then Zeek's Teredo signature. */
static int udp_tunnel_type(const dctx *c, const uint8_t *pl, uint32_t cap)
{
    const ph_decoder *d = c->d;
    uint16_t ports[2] = {c->out->dport, c->out->sport};

    for (int k = 0; k < 2; k++) {
        uint16_t port = ports[k];
        if (!((d->tun_port_bits[port >> 3] >> (port & 7)) & 1))
            continue;
        for (int t = PH_TUN_VXLAN; t < PH_TUN__N; t++) {
            if (!d->cfg.tunnel_enable[t])
                continue;
            for (int i = 0; i < PH_TUN_MAX_PORTS; i++)
                if (d->cfg.tunnel_ports[t][i] == port)
                    return t;
        }
    }
    if (d->cfg.teredo_dpd && d->cfg.tunnel_enable[PH_TUN_TEREDO] && d->cfg.tunnel_max_depth &&
        ph_tun_teredo_signature(pl, cap))
        return -PH_TUN_TEREDO;   /* by signature: a failed parse is just not Teredo */
    return PH_TUN_NONE;
}

/* A UDP datagram whose checksum is fine: decapsulate it if it is a tunnel.
 * The UDP packet itself stays the flow of the outer connection (Zeek logs it). */
static int tun_udp(dctx *c)
{
    ph_parsed *o = c->out;
    ph_decoder *d = c->d;
    const uint8_t *pl = o->l4 + 8;
    uint32_t wire = (o->udp_len < o->l4_len ? o->udp_len : o->l4_len) - 8u;
    uint32_t cap = o->l4_caplen - 8u;
    ph_tun_hdr h;
    int type, r;

    if (cap > wire)
        cap = wire;
    type = udp_tunnel_type(c, pl, cap);
    if (type == PH_TUN_NONE)
        return PH_DEC_OK;
    switch (type < 0 ? -type : type) {
    case PH_TUN_VXLAN: r = ph_tun_vxlan(pl, cap, &h); break;
    case PH_TUN_GENEVE: r = ph_tun_geneve(pl, cap, &h); break;
    case PH_TUN_TEREDO: r = ph_tun_teredo(pl, cap, wire, &h); break;
    case PH_TUN_GTPV1: r = ph_tun_gtpv1(pl, cap, &h); break;
    default: r = ph_tun_ayiya(pl, cap, &h); break;
    }
    if (r != PH_TUNR_OK) {
        if ((r == PH_TUNR_TRUNC || r == PH_TUNR_BAD) && type > 0)
            d->counters[PH_C_TUNNEL_BAD_HEADER]++;
        return PH_DEC_OK;   /* a plain UDP packet of the outer connection */
    }
    if (o->nencap >= d->cfg.tunnel_max_depth) {
        d->counters[PH_C_TUNNEL_TOO_DEEP]++;   /* Zeek: exceeded_tunnel_max_depth */
        return PH_DEC_OK;
    }
    r = tun_descend(c, &h, pl, cap, wire);
    if (r != PH_DEC_OK && !d->cfg.tunnel_strip) {
        /* Zeek mode: the outer UDP connection still counts the packet; an inner
         * fragment waits for its datagram without being a held packet */
        if (r == PH_C_FRAGMENT_HELD)
            ph_frag_unhold_last(d->frag);
        if (!c->inner_failed)
            d->counters[PH_C_TUNNEL_INNER_DROPPED]++;
        c->inner_failed = 1;
        return PH_DEC_OK;
    }
    return r;
}

/* IP protocols 4 (IPv4), 41 (IPv6) and 47 (GRE): no outer connection. */
static int tun_ip(dctx *c, uint8_t proto, const uint8_t *p, uint32_t wirelen, uint32_t caplen)
{
    ph_decoder *d = c->d;
    ph_tun_hdr h;
    int r;

    if (proto == IPPROTO_GRE_)
        r = ph_tun_gre(p, caplen, &h);
    else
        r = ph_tun_ipip(proto, p, caplen, &h);
    if (!d->cfg.tunnel_max_depth || !d->cfg.tunnel_enable[h.type])
        return PH_C_UNSUPPORTED_TUNNEL;
    if (r == PH_TUNR_NONE)
        return PH_C_NO_CONNECTION;      /* PPTP acknowledgment, PPP control... */
    if (r != PH_TUNR_OK) {
        d->counters[PH_C_TUNNEL_BAD_HEADER]++;
        return PH_C_UNSUPPORTED_TUNNEL;
    }
    if (c->out->nencap >= d->cfg.tunnel_max_depth) {
        d->counters[PH_C_TUNNEL_TOO_DEEP]++;
        return PH_C_UNSUPPORTED_TUNNEL;
    }
    return tun_descend(c, &h, p, caplen, wirelen);
}

/* ================================================================== */
/* Link layers                                                         */
/* ================================================================== */

static int link_vlan(dctx *c, const uint8_t *p, uint32_t len);
static int link_mpls(dctx *c, const uint8_t *p, uint32_t len);
static int link_pppoe(dctx *c, const uint8_t *p, uint32_t len);
static int link_pbb(dctx *c, const uint8_t *p, uint32_t len);
static int link_vntag(dctx *c, const uint8_t *p, uint32_t len);
static int link_llc(dctx *c, const uint8_t *p, uint32_t len, uint32_t dlen);

/* An Ethertype (>= 1536) and the bytes after it. */
static int ethertype(dctx *c, uint32_t type, const uint8_t *p, uint32_t len)
{
    if (++c->depth > MAX_LINK_DEPTH)
        return PH_C_NOT_IP;
    switch (type) {
    case 0x0800:
    case 0x86dd:
        return decode_ip(c, p, len);
    case 0x8100: /* 802.1Q */
    case 0x88a8: /* 802.1ad */
    case 0x9100: /* QinQ (pre-standard) */
        return link_vlan(c, p, len);
    case 0x8847: /* MPLS unicast */
    case 0x8848: /* MPLS multicast */
        return link_mpls(c, p, len);
    case 0x8864: /* PPPoE session */
        return link_pppoe(c, p, len);
    case 0x88e7: /* 802.1ah PBB */
        return link_pbb(c, p, len);
    case 0x8926: /* Cisco VN-Tag */
        return link_vntag(c, p, len);
    default:
        return PH_C_NOT_IP;
    }
}

/* A type/length field as found after Ethernet addresses or a VLAN tag. */
static int type_or_length(dctx *c, uint32_t type, const uint8_t *p, uint32_t len)
{
    if (type >= 1536)
        return ethertype(c, type, p, len);
    if (type <= 1500)
        return link_llc(c, p, len, type);
    return PH_C_NOT_IP;   /* 1501..1535 undefined */
}

/* 802.3 length frame: 802.2 LLC, IP only with SNAP and OUI 0 (as Zeek). */
static int link_llc(dctx *c, const uint8_t *p, uint32_t len, uint32_t dlen)
{
    uint32_t h;

    if (len < dlen)
        return PH_C_TRUNCATED_LINK;
    if (len < 2 || p[0] != 0xaa || p[1] != 0xaa)
        return PH_C_NOT_IP;   /* plain LLC (STP, ...) or Novell raw */
    if (len < 3)
        return PH_C_TRUNCATED_LINK;
    h = (p[2] & 0x03) == 0x03 ? 3 : 4;   /* U-format control is 1 byte */
    if (len < h + 5)
        return PH_C_TRUNCATED_LINK;
    if (p[h] || p[h + 1] || p[h + 2])
        return PH_C_NOT_IP;
    return ethertype(c, ph_be16(p + h + 3), p + h + 5, len - h - 5);
}

static int link_ethernet(dctx *c, const uint8_t *p, uint32_t len)
{
    ph_parsed *o = c->out;

    if (len < 14)
        return PH_C_TRUNCATED_LINK;
    if (p[12] == 0x89 && p[13] == 0x03) {   /* Cisco FabricPath: 16 bytes, then Ethernet */
        if (len < 16 + 14)
            return PH_C_TRUNCATED_LINK;
        p += 16;
        len -= 16;
    }
    memcpy(o->dmac, p, 6);
    memcpy(o->smac, p + 6, 6);
    o->flags |= PH_PF_HAS_MAC;
    return type_or_length(c, ph_be16(p + 12), p + 14, len - 14);
}

/* 802.1Q / 802.1ad tag: keep the first two VLAN ids, outer first. */
static int link_vlan(dctx *c, const uint8_t *p, uint32_t len)
{
    ph_parsed *o = c->out;

    if (len < 4)
        return PH_C_TRUNCATED_LINK;
    if (o->nvlan < 2)
        o->vlan[o->nvlan++] = ph_be16(p) & 0x0fff;
    return type_or_length(c, ph_be16(p + 2), p + 4, len - 4);
}

/* MPLS label stack; the payload type is not encoded (RFC 3032): like Zeek,
 * guess IPv4/IPv6 from the version nibble after the bottom of the stack. */
static int link_mpls(dctx *c, const uint8_t *p, uint32_t len)
{
    int bottom = 0;

    while (!bottom) {
        if (len < 4)
            return PH_C_TRUNCATED_LINK;
        bottom = p[2] & 0x01;
        p += 4;
        len -= 4;
    }
    if (len < 1)
        return PH_C_TRUNCATED_LINK;
    if ((p[0] >> 4) == 4 || (p[0] >> 4) == 6)
        return decode_ip(c, p, len);
    return PH_C_NOT_IP;   /* pseudowire, control word... */
}

/* PPP protocol number -> IP or not. */
static int ppp_proto(dctx *c, uint32_t proto, const uint8_t *p, uint32_t len)
{
    if (proto == 0x0021 || proto == 0x0057)
        return decode_ip(c, p, len);
    return PH_C_NOT_IP;
}

/* PPPoE session stage: 6-byte header, then the 2-byte PPP protocol. */
static int link_pppoe(dctx *c, const uint8_t *p, uint32_t len)
{
    if (len < 8)
        return PH_C_TRUNCATED_LINK;
    return ppp_proto(c, ph_be16(p + 6), p + 8, len - 8);
}

/* 802.1ah: 4-byte I-tag, then the customer Ethernet frame (its MACs win). */
static int link_pbb(dctx *c, const uint8_t *p, uint32_t len)
{
    if (len < 4 + 14)
        return PH_C_TRUNCATED_LINK;
    return link_ethernet(c, p + 4, len - 4);
}

/* Cisco VN-Tag: 4 bytes of tag, then the next Ethertype. */
static int link_vntag(dctx *c, const uint8_t *p, uint32_t len)
{
    if (len < 6)
        return PH_C_TRUNCATED_LINK;
    return type_or_length(c, ph_be16(p + 4), p + 6, len - 6);
}

/* PPP (LINKTYPE_PPP, LINKTYPE_PPP_HDLC): optional 0xff 0x03 address/control,
 * then a 2-byte protocol (or 1 byte with protocol field compression). */
static int link_ppp(dctx *c, const uint8_t *p, uint32_t len)
{
    if (len >= 2 && p[0] == 0xff && p[1] == 0x03) {
        p += 2;
        len -= 2;
    }
    if (len < 1)
        return PH_C_TRUNCATED_LINK;
    if (p[0] & 0x01)   /* compressed: odd first byte is the whole protocol */
        return ppp_proto(c, p[0], p + 1, len - 1);
    if (len < 2)
        return PH_C_TRUNCATED_LINK;
    return ppp_proto(c, ph_be16(p), p + 2, len - 2);
}

/* BSD null/loopback: a 4-byte address family, host-endian for LINKTYPE_NULL,
 * big-endian for LINKTYPE_LOOP; both byte orders are accepted. */
static int af_is_ip(uint32_t af)
{
    return af == 2 || af == 24 || af == 28 || af == 30;   /* AF_INET; AF_INET6 of BSDs/macOS */
}

static int link_null(dctx *c, const uint8_t *p, uint32_t len)
{
    if (len < 4)
        return PH_C_TRUNCATED_LINK;
    if (af_is_ip(ph_le32(p)) || af_is_ip(ph_be32(p)))
        return decode_ip(c, p + 4, len - 4);
    return PH_C_NOT_IP;
}

/* Linux cooked capture v1: 16 bytes, protocol (Ethertype) last. */
static int link_sll(dctx *c, const uint8_t *p, uint32_t len)
{
    if (len < 16)
        return PH_C_TRUNCATED_LINK;
    return ethertype(c, ph_be16(p + 14), p + 16, len - 16);
}

/* Linux cooked capture v2: 20 bytes, protocol (Ethertype) first. */
static int link_sll2(dctx *c, const uint8_t *p, uint32_t len)
{
    if (len < 20)
        return PH_C_TRUNCATED_LINK;
    return ethertype(c, ph_be16(p), p + 20, len - 20);
}

/* LLC/SNAP with the zero OUI (encapsulated Ethernet), then the Ethertype. */
static int llc_snap(dctx *c, const uint8_t *p, uint32_t len)
{
    if (len < 8)
        return PH_C_TRUNCATED_LINK;
    if (p[0] != 0xaa || p[1] != 0xaa || p[2] != 0x03 || p[3] || p[4] || p[5])
        return PH_C_NOT_IP;
    return ethertype(c, ph_be16(p + 6), p + 8, len - 8);
}

/* One A-MSDU subframe at p (DA, SA, length, then the MSDU: LLC/SNAP and
 * payload), len bytes of the frame left from p. If more subframes follow and
 * this one decoded, they are kept for ph_decode_next. A subframe is padded to
 * a multiple of 4 bytes except the last (802.11-2016 9.3.2.2.2; Zeek pads by
 * length % 4, which differs for even lengths). A subframe cut by the capture
 * is decoded as far as it goes and ends the frame; fewer than 14 bytes after
 * a subframe (an FCS, padding) are not a subframe. */
static int amsdu_subframe(dctx *c, const uint8_t *p, uint32_t len)
{
    ph_decoder *d = c->d;
    uint32_t sub, used;
    int r;

    if (len < 14)
        return PH_C_TRUNCATED_LINK;
    sub = ph_be16(p + 12);
    if (sub > len - 14)
        sub = len - 14;
    used = 14 + sub;
    used += (4u - (used & 3u)) & 3u;
    c->in_amsdu = 1;
    r = llc_snap(c, p + 14, sub);
    if ((r == PH_DEC_OK || r == PH_C_FRAGMENT_HELD) && used + 14 <= len) {
        d->sub.p = p + used;
        d->sub.rest = len - used;
    }
    return r;
}

/* IEEE 802.11 data frame (as Zeek's IEEE802_11 analyzer, plus the HT control
 * field), then LLC/SNAP. An A-MSDU gives one decoded packet per subframe
 * (ph_decode_next), as Zeek forwards each. */
static int link_ieee80211(dctx *c, const uint8_t *p, uint32_t len)
{
    ph_parsed *o = c->out;
    ph_decoder *d = c->d;
    uint8_t fc0, fc1;
    uint32_t hl = 24, sa, da;
    int amsdu = 0;

    if (len < 24)
        return PH_C_TRUNCATED_LINK;
    fc0 = p[0];
    fc1 = p[1];
    if (((fc0 >> 2) & 0x03) != 2)   /* management, control, extension */
        return PH_C_NOT_IP;
    if ((fc0 >> 4) & 0x04)          /* data subtypes without data (Null...) */
        return PH_C_NOT_IP;
    if ((fc1 & 0x03) == 0x03)       /* ToDS and FromDS: address 4 */
        hl += 6;
    if ((fc0 >> 4) & 0x08) {        /* QoS data: 2-byte QoS control */
        if (len < hl + 2)
            return PH_C_TRUNCATED_LINK;
        amsdu = (p[hl] & 0x80) != 0;
        hl += 2;
        if (fc1 & 0x80)             /* +HTC/Order: 4-byte HT control */
            hl += 4;
    }
    if (fc1 & 0x40)                 /* protected: encrypted payload */
        return PH_C_NOT_IP;
    if (len < hl)
        return PH_C_TRUNCATED_LINK;
    switch (fc1 & 0x03) {
    case 0x00: sa = 10; da = 4; break;
    case 0x01: sa = 10; da = 16; break;   /* to DS: addr3 = DA */
    case 0x02: sa = 16; da = 4; break;    /* from DS: addr3 = SA */
    default: sa = 24; da = 16; break;     /* WDS: addr4 = SA, addr3 = DA */
    }
    memcpy(o->smac, p + sa, 6);
    memcpy(o->dmac, p + da, 6);
    o->flags |= PH_PF_HAS_MAC;
    p += hl;
    len -= hl;
    if (!amsdu)
        return llc_snap(c, p, len);
    if (c->in_amsdu) {
        /* an A-MSDU inside a subframe: its first subframe only */
        uint32_t sub;
        if (len < 14)
            return PH_C_TRUNCATED_LINK;
        sub = ph_be16(p + 12);
        return llc_snap(c, p + 14, sub < len - 14 ? sub : len - 14);
    }
    /* what every subframe starts from */
    o->amsdu = (uint8_t)(o->nencap + 1);
    d->sub.frame_cut = c->frame_cut;
    d->sub.in_rebuilt = c->in_rebuilt;
    d->sub.depth = c->depth;
    d->sub.wire_base = c->wire_base;
    d->sub.wire_len = c->wire_len;
    d->sub.pkt = *c->pkt;
    memcpy(&d->sub.snap, o, sizeof *o);
    return amsdu_subframe(c, p, len);
}

/* Radiotap: little-endian header length at byte 2, then 802.11. */
static int link_radiotap(dctx *c, const uint8_t *p, uint32_t len)
{
    uint32_t rl;

    if (len < 8)
        return PH_C_TRUNCATED_LINK;
    rl = ph_le16(p + 2);
    if (rl < 8 || rl >= len)
        return PH_C_TRUNCATED_LINK;
    return link_ieee80211(c, p + rl, len - rl);
}

/* ================================================================== */
/* Entry point                                                         */
/* ================================================================== */
int ph_decode(ph_decoder *d, const ph_pkt *pkt, ph_parsed *out)
{
    dctx c;
    const uint8_t *p = pkt->data;
    uint32_t len = pkt->caplen;

    int r;

    memset(out, 0, PH_PARSED_CLEAR);
    d->sub.rest = 0;
    out->ts_ns = pkt->ts_ns;
    if (pkt->mirror_id)
        out->ctx = PH_CTX_VNI << 32 | (pkt->mirror_id - 1u);
    c.d = d;
    c.pkt = pkt;
    c.out = out;
    c.depth = 0;
    c.frame_cut = pkt->wirelen > pkt->caplen;
    c.wire_base = pkt->data;
    c.wire_len = pkt->wirelen > pkt->caplen ? pkt->wirelen : pkt->caplen;
    c.in_rebuilt = 0;
    c.inner_failed = 0;
    c.in_amsdu = 0;

    switch (pkt->linktype) {
    case PH_LT_ETHERNET:
        r = link_ethernet(&c, p, len);
        break;
    case PH_LT_RAW:
    case PH_LT_IPV4:
    case PH_LT_IPV6:
    case PH_LT_DLT_RAW12:
    case PH_LT_DLT_RAW14:
        r = decode_ip(&c, p, len);
        break;
    case PH_LT_NULL:
    case PH_LT_LOOP:
        r = link_null(&c, p, len);
        break;
    case PH_LT_LINUX_SLL:
        r = link_sll(&c, p, len);
        break;
    case PH_LT_LINUX_SLL2:
        r = link_sll2(&c, p, len);
        break;
    case PH_LT_PPP:
    case PH_LT_PPP_HDLC:
        r = link_ppp(&c, p, len);
        break;
    case PH_LT_IEEE802_11:
        r = link_ieee80211(&c, p, len);
        break;
    case PH_LT_RADIOTAP:
        r = link_radiotap(&c, p, len);
        break;
    default:
        return PH_C_UNSUPPORTED_LINKTYPE;
    }
    out->inner_ok = (uint8_t)!c.inner_failed;
    if (r == PH_DEC_OK && out->nencap && out->inner_ok)
        d->counters[PH_C_TUNNEL_DECAPSULATED]++;
    return r;
}

int ph_decode_next(ph_decoder *d, ph_parsed *out)
{
    dctx c;
    const uint8_t *p = d->sub.p;
    uint32_t len = d->sub.rest;
    int r;

    if (!len)
        return PH_C_TRUNCATED_LINK;
    d->sub.rest = 0;
    memcpy(out, &d->sub.snap, sizeof *out);
    out->amsdu_more = 1;
    c.d = d;
    c.pkt = &d->sub.pkt;
    c.out = out;
    c.depth = d->sub.depth;
    c.frame_cut = d->sub.frame_cut;
    c.wire_base = d->sub.wire_base;
    c.wire_len = d->sub.wire_len;
    c.in_rebuilt = d->sub.in_rebuilt;
    c.inner_failed = 0;
    c.in_amsdu = 1;
    r = amsdu_subframe(&c, p, len);
    /* a subframe is no packet of its own in the disposition counters (the
     * engine counts it in AMSDU_SUBFRAMES*), so a fragment it carries is not a
     * held packet: dropping its datagram later must not move it to DROPPED */
    if (r == PH_C_FRAGMENT_HELD)
        ph_frag_unhold_last(d->frag);
    out->inner_ok = (uint8_t)!c.inner_failed;
    return r;
}
