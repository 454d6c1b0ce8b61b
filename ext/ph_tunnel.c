/*
 * ph_tunnel.c -- tunnel headers, one parser per encapsulation (see ph_tunnel.h).
 *
 * Every parser checks the captured length before each read, loads
 * multi-byte fields byte-wise, and distinguishes a cut header (TRUNC) from a
 * malformed or unsupported one (BAD).
 */
#include "ph_tunnel.h"

static const char *const TUN_NAMES[PH_TUN__N] = {
    "", "ip", "gre", "erspan", "vxlan", "geneve", "teredo", "gtpv1", "ayiya",
};

const char *ph_tun_name(int type)
{
    return type > 0 && type < PH_TUN__N ? TUN_NAMES[type] : "";
}

/* Ethertype of an encapsulated payload -> PH_NEXT_*. */
static int next_of_ethertype(uint16_t et)
{
    switch (et) {
    case 0x6558: return PH_NEXT_ETH;   /* transparent Ethernet bridging */
    case 0x0800: return PH_NEXT_IPV4;
    case 0x86dd: return PH_NEXT_IPV6;
    default: return PH_NEXT_NONE;
    }
}

/* ------------------------------------------------------------------ */
/* IP in IP (protocols 4 and 41; 6in4 is IPv6 in IPv4)                 */
/* ------------------------------------------------------------------ */
int ph_tun_ipip(uint8_t proto, const uint8_t *p, uint32_t caplen, ph_tun_hdr *h)
{
    memset(h, 0, sizeof *h);
    h->type = PH_TUN_IP;
    if (caplen < 1)
        return PH_TUNR_TRUNC;
    /* Zeek: the inner version must be the one the protocol number names */
    if (proto == 4 && (p[0] >> 4) != 4)
        return PH_TUNR_BAD;
    if (proto == 41 && (p[0] >> 4) != 6)
        return PH_TUNR_BAD;
    h->next = proto == 4 ? PH_NEXT_IPV4 : PH_NEXT_IPV6;
    return PH_TUNR_OK;
}

/* ------------------------------------------------------------------ */
/* GRE (RFC 2784/2890), enhanced GRE of PPTP (RFC 2637), ERSPAN I-III  */
/* ------------------------------------------------------------------ */
#define GRE_C 0x8000
#define GRE_R 0x4000
#define GRE_K 0x2000
#define GRE_S 0x1000
#define GRE_A 0x0080   /* version 1: acknowledgment number present */

/* PPP inside PPTP's GRE: address/control (optional), protocol (1 or 2 bytes);
 * only IPv4 (0x21) and IPv6 (0x57) go on (Zeek: non_ip_packet_in_encap). */
static int gre_ppp(const uint8_t *p, uint32_t caplen, uint32_t off, ph_tun_hdr *h)
{
    uint32_t proto;

    if (caplen >= off + 2 && p[off] == 0xff && p[off + 1] == 0x03)
        off += 2;
    if (caplen < off + 1)
        return caplen == off ? PH_TUNR_NONE : PH_TUNR_TRUNC;   /* an acknowledgment alone carries nothing */
    if (p[off] & 0x01) {
        proto = p[off];
        off += 1;
    } else {
        if (caplen < off + 2)
            return PH_TUNR_TRUNC;
        proto = ph_be16(p + off);
        off += 2;
    }
    h->ppp = 1;
    h->off = off;
    if (proto == 0x21)
        h->next = PH_NEXT_IPV4;
    else if (proto == 0x57)
        h->next = PH_NEXT_IPV6;
    else
        return PH_TUNR_NONE;
    return PH_TUNR_OK;
}

int ph_tun_gre(const uint8_t *p, uint32_t caplen, ph_tun_hdr *h)
{
    uint16_t fv, proto;
    uint32_t off = 4;
    int ver;

    memset(h, 0, sizeof *h);
    h->type = PH_TUN_GRE;
    if (caplen < 4)
        return PH_TUNR_TRUNC;
    fv = ph_be16(p);
    proto = ph_be16(p + 2);
    ver = fv & 0x7;
    if (ver > 1 || (fv & GRE_R))
        return PH_TUNR_BAD;     /* Zeek: unknown_gre_version, gre_routing */
    if (fv & GRE_C)
        off += 4;               /* checksum + reserved */
    if (fv & GRE_K) {
        if (caplen < off + 4)
            return PH_TUNR_TRUNC;
        h->key = ph_be32(p + off);
        h->has_key = 1;
        off += 4;
    }
    if (fv & GRE_S)
        off += 4;
    if (ver == 1) {
        if (fv & GRE_A)
            off += 4;
        if (proto != 0x880b || !(fv & GRE_K))
            return PH_TUNR_BAD;  /* Zeek: egre_protocol_type */
        if (caplen < off)
            return PH_TUNR_TRUNC;
        return gre_ppp(p, caplen, off, h);
    }
    if (caplen < off)
        return PH_TUNR_TRUNC;

    switch (proto) {
    case 0x88be:
        /* ERSPAN: type I has no sequence number and no header of its own,
         * type II an 8-byte header (version, VLAN, session id, index) */
        h->type = PH_TUN_ERSPAN;
        if (fv & GRE_S) {
            if (caplen < off + 8)
                return PH_TUNR_TRUNC;
            h->key = ph_be16(p + off + 2) & 0x03ffu;
            h->has_key = 1;
            off += 8;
        }
        h->next = PH_NEXT_ETH;
        break;
    case 0x22eb:
        /* ERSPAN type III: 12 bytes, plus an 8-byte platform sub-header
         * when the O flag (last bit) is set */
        h->type = PH_TUN_ERSPAN;
        if (caplen < off + 12)
            return PH_TUNR_TRUNC;
        h->key = ph_be16(p + off + 2) & 0x03ffu;
        h->has_key = 1;
        if (p[off + 11] & 0x01)
            off += 8;
        off += 12;
        h->next = PH_NEXT_ETH;
        break;
    default:
        if (proto >= 0x8200 && proto <= 0x8fff && proto != 0x86dd) {
            h->next = PH_NEXT_80211;   /* Aruba access points: an 802.11 frame */
            break;
        }
        h->next = (uint8_t)next_of_ethertype(proto);
        if (h->next == PH_NEXT_NONE)
            return PH_TUNR_BAD;    /* Zeek: unknown_gre_protocol */
        break;
    }
    if (caplen < off)
        return PH_TUNR_TRUNC;
    h->off = off;
    return PH_TUNR_OK;
}

/* ------------------------------------------------------------------ */
/* VXLAN (RFC 7348)                                                    */
/* ------------------------------------------------------------------ */
int ph_tun_vxlan(const uint8_t *p, uint32_t caplen, ph_tun_hdr *h)
{
    memset(h, 0, sizeof *h);
    h->type = PH_TUN_VXLAN;
    if (caplen < 8)
        return PH_TUNR_TRUNC;
    if (!(p[0] & 0x08))
        return PH_TUNR_BAD;     /* Zeek: the I flag must be set */
    h->key = (uint32_t)p[4] << 16 | (uint32_t)p[5] << 8 | p[6];
    h->has_key = 1;
    h->off = 8;
    h->next = PH_NEXT_ETH;
    return PH_TUNR_OK;
}

/* ------------------------------------------------------------------ */
/* GENEVE (RFC 8926): options are skipped                              */
/* ------------------------------------------------------------------ */
int ph_tun_geneve(const uint8_t *p, uint32_t caplen, ph_tun_hdr *h)
{
    uint32_t off;

    memset(h, 0, sizeof *h);
    h->type = PH_TUN_GENEVE;
    if (caplen < 8)
        return PH_TUNR_TRUNC;
    if (p[0] >> 6)
        return PH_TUNR_BAD;     /* version 0 only */
    off = 8u + (uint32_t)(p[0] & 0x3f) * 4u;
    if (caplen < off)
        return PH_TUNR_TRUNC;
    h->key = (uint32_t)p[4] << 16 | (uint32_t)p[5] << 8 | p[6];
    h->has_key = 1;
    h->off = off;
    h->next = (uint8_t)next_of_ethertype(ph_be16(p + 2));
    return h->next == PH_NEXT_NONE ? PH_TUNR_NONE : PH_TUNR_OK;
}

/* ------------------------------------------------------------------ */
/* Teredo (RFC 4380): authentication and origin indicators, then IPv6  */
/* ------------------------------------------------------------------ */
int ph_tun_teredo(const uint8_t *p, uint32_t caplen, uint32_t wirelen, ph_tun_hdr *h)
{
    uint32_t off = 0, total;
    int auth = 0, origin = 0;

    memset(h, 0, sizeof *h);
    h->type = PH_TUN_TEREDO;
    for (int i = 0; i < 3; i++) {   /* at most: authentication, origin, IPv6 */
        if (caplen < off + 2)
            return PH_TUNR_TRUNC;
        if (p[off] == 0 && p[off + 1] == 0) {
            if (origin)
                return PH_TUNR_BAD;
            if (caplen < off + 8)
                return PH_TUNR_TRUNC;
            origin = 1;
            off += 8;
        } else if (p[off] == 0 && p[off + 1] == 1) {
            if (origin || auth)
                return PH_TUNR_BAD;
            if (caplen < off + 4)
                return PH_TUNR_TRUNC;
            auth = 1;
            off += 4u + p[off + 2] + p[off + 3] + 8u + 1u;   /* ids, nonce, confirmation */
        } else {
            break;
        }
    }
    if (caplen < off + 40)
        return caplen < off + 1 || (p[off] >> 4) == 6 ? PH_TUNR_TRUNC : PH_TUNR_NONE;
    if ((p[off] >> 4) != 6)
        return PH_TUNR_NONE;   /* Zeek: not IPv6, no decapsulation */
    /* Zeek takes the IPv6 packet only if it fills the datagram exactly, except
     * a bubble (no next header, no payload) followed by data */
    total = 40u + ph_be16(p + off + 4);
    if (wirelen < off + total)
        return PH_TUNR_BAD;
    if (wirelen > off + total && !(p[off + 6] == 59 && total == 40))
        return PH_TUNR_BAD;
    h->off = off;
    h->next = PH_NEXT_IPV6;
    return PH_TUNR_OK;
}

int ph_tun_teredo_signature(const uint8_t *p, uint32_t caplen)
{
    static const uint8_t prefix[4] = {0x20, 0x01, 0x00, 0x00};

    if (caplen < 2)
        return 0;
    if (p[0] == 0 && p[1] <= 1)
        return 1;   /* origin indication or authentication */
    if ((p[0] >> 4) != 6 || caplen < 40)
        return 0;
    /* IPv6 from or to a Teredo address (2001:0::/32) */
    return memcmp(p + 8, prefix, 4) == 0 || memcmp(p + 24, prefix, 4) == 0;
}

/* ------------------------------------------------------------------ */
/* GTPv1-U (3GPP TS 29.281): G-PDUs only                               */
/* ------------------------------------------------------------------ */
int ph_tun_gtpv1(const uint8_t *p, uint32_t caplen, ph_tun_hdr *h)
{
    uint32_t off = 8;
    uint8_t fl;

    memset(h, 0, sizeof *h);
    h->type = PH_TUN_GTPV1;
    if (caplen < 8)
        return PH_TUNR_TRUNC;
    fl = p[0];
    if ((fl >> 5) != 1 || !(fl & 0x10))
        return PH_TUNR_BAD;      /* version 1, protocol type GTP (not GTP') */
    h->key = ph_be32(p + 4);     /* TEID */
    h->has_key = 1;
    if (p[1] != 0xff)
        return PH_TUNR_NONE;     /* signalling (echo, error indication...): nothing inside */
    if (fl & 0x07) {
        /* sequence number, N-PDU number, next extension header type */
        uint8_t next;
        if (caplen < off + 4)
            return PH_TUNR_TRUNC;
        next = p[off + 3];
        off += 4;
        if (fl & 0x04) {
            /* extension headers: length in 4-byte units, the last byte names the next */
            for (int n = 0; next != 0; n++) {
                uint32_t elen;
                if (n >= 16)
                    return PH_TUNR_BAD;
                if (caplen < off + 1)
                    return PH_TUNR_TRUNC;
                elen = (uint32_t)p[off] * 4u;
                if (elen == 0)
                    return PH_TUNR_BAD;
                if (caplen < off + elen)
                    return PH_TUNR_TRUNC;
                next = p[off + elen - 1];
                off += elen;
            }
        }
    }
    if (caplen < off + 1)
        return PH_TUNR_TRUNC;
    h->off = off;
    h->next = PH_NEXT_IP;   /* IPv4 or IPv6 by the version nibble */
    if ((p[off] >> 4) != 4 && (p[off] >> 4) != 6)
        return PH_TUNR_BAD;     /* Zeek: GTPv1_invalid_IP_version */
    return PH_TUNR_OK;
}

/* ------------------------------------------------------------------ */
/* AYIYA (Anything In Anything, SixXS)                                 */
/* ------------------------------------------------------------------ */
int ph_tun_ayiya(const uint8_t *p, uint32_t caplen, ph_tun_hdr *h)
{
    uint32_t off;

    memset(h, 0, sizeof *h);
    h->type = PH_TUN_AYIYA;
    if (caplen < 8)
        return PH_TUNR_TRUNC;
    /* identity length 2^(high nibble), signature length 4 * (high nibble) */
    off = 8u + (1u << (p[0] >> 4)) + (uint32_t)(p[1] >> 4) * 4u;
    if ((p[2] & 0x0f) != 1)
        return PH_TUNR_NONE;     /* only "forward" messages carry a packet */
    if (p[3] != 4 && p[3] != 41)
        return PH_TUNR_NONE;     /* Zeek: ayiya_tunnel_non_ip */
    if (caplen < off + 1)
        return PH_TUNR_TRUNC;
    h->off = off;
    h->next = p[3] == 4 ? PH_NEXT_IPV4 : PH_NEXT_IPV6;
    if ((p[off] >> 4) != (p[3] == 4 ? 4 : 6))
        return PH_TUNR_BAD;
    return PH_TUNR_OK;
}
