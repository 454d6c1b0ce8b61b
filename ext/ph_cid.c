/*
 * ph_cid.c -- SHA-1 (FIPS 180-4) and Community ID v1.
 *
 * Community ID v1 (corelight/community-id-spec, reference: pycommunityid):
 *
 *   sha1( seed(2, BE) . saddr . daddr . proto(1) . 0(1) [. sport(2, BE) . dport(2, BE)] )
 *
 * rendered as "1:" + base64(digest) (or "1:" + hex). Ports are hashed only for
 * the port-bearing protocols TCP, UDP, SCTP, ICMP and ICMPv6; for any other IP
 * protocol the tuple ends after the padding byte. The endpoints are ordered so
 * that the smaller address (or, for equal addresses, the smaller port) comes
 * first, which makes both directions of a flow hash alike.
 *
 * ICMP/ICMPv6 map (type, code) to port equivalents the way Zeek does: request
 * and reply types have a counterpart (echo 8<->0, ...) which becomes the
 * destination "port", so a request and its reply share one ID; every other
 * type is one-way: the code is the destination "port" and the endpoints keep
 * their order (no flip).
 */
#include "ph_cid.h"

/* ------------------------------------------------------------------ */
/* SHA-1                                                               */
/* ------------------------------------------------------------------ */

static inline uint32_t rol32(uint32_t x, unsigned n) { return (x << n) | (x >> (32u - n)); }

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80];
    for (int t = 0; t < 16; t++)
        w[t] = ph_be32(p + 4 * t);
    for (int t = 16; t < 80; t++)
        w[t] = rol32(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);

    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int t = 0; t < 80; t++) {
        uint32_t f, k;
        if (t < 20) {
            f = (b & c) | (~b & d);          /* Ch */
            k = 0x5a827999u;
        } else if (t < 40) {
            f = b ^ c ^ d;                   /* Parity */
            k = 0x6ed9eba1u;
        } else if (t < 60) {
            f = (b & c) | (b & d) | (c & d); /* Maj */
            k = 0x8f1bbcdcu;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6u;
        }
        uint32_t tmp = rol32(a, 5) + f + e + k + w[t];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = tmp;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void ph_sha1_init(ph_sha1 *s)
{
    s->h[0] = 0x67452301u;
    s->h[1] = 0xefcdab89u;
    s->h[2] = 0x98badcfeu;
    s->h[3] = 0x10325476u;
    s->h[4] = 0xc3d2e1f0u;
    s->nbytes = 0;
    s->fill = 0;
}

void ph_sha1_update(ph_sha1 *s, const void *data, size_t len)
{
    const uint8_t *p = (const uint8_t *)data;
    s->nbytes += len;
    if (s->fill) {
        size_t take = 64 - s->fill;
        if (take > len)
            take = len;
        memcpy(s->block + s->fill, p, take);
        s->fill += (uint32_t)take;
        p += take;
        len -= take;
        if (s->fill < 64)
            return;
        sha1_block(s->h, s->block);
        s->fill = 0;
    }
    while (len >= 64) {
        sha1_block(s->h, p);
        p += 64;
        len -= 64;
    }
    if (len) {
        memcpy(s->block, p, len);
        s->fill = (uint32_t)len;
    }
}

void ph_sha1_final(ph_sha1 *s, uint8_t digest[20])
{
    uint64_t bits = s->nbytes * 8u;
    uint8_t pad[72];
    /* 0x80, zeros up to 56 mod 64, then the 64-bit big-endian bit length */
    size_t padlen = (s->fill < 56) ? (56 - s->fill) : (120 - s->fill);
    memset(pad, 0, sizeof(pad));
    pad[0] = 0x80;
    for (int i = 0; i < 8; i++)
        pad[padlen + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t keep = s->nbytes;
    ph_sha1_update(s, pad, padlen + 8);
    s->nbytes = keep;
    for (int i = 0; i < 5; i++) {
        digest[4 * i + 0] = (uint8_t)(s->h[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        digest[4 * i + 3] = (uint8_t)(s->h[i]);
    }
}

/* ------------------------------------------------------------------ */
/* ICMP type/code -> port equivalents (as Zeek's ICMP4/6_counterpart)  */
/* ------------------------------------------------------------------ */

/* Counterpart of a request/reply type, or -1 for one-way messages. */
static int icmp4_counterpart(unsigned type)
{
    switch (type) {
    case 8:  return 0;    /* echo request -> echo reply */
    case 0:  return 8;
    case 13: return 14;   /* timestamp */
    case 14: return 13;
    case 15: return 16;   /* information */
    case 16: return 15;
    case 10: return 9;    /* router solicitation -> advertisement */
    case 9:  return 10;
    case 17: return 18;   /* address mask */
    case 18: return 17;
    default: return -1;
    }
}

static int icmp6_counterpart(unsigned type)
{
    switch (type) {
    case 128: return 129; /* echo request -> reply */
    case 129: return 128;
    case 130: return 131; /* MLD listener query -> report */
    case 131: return 130;
    case 133: return 134; /* router solicitation -> advertisement */
    case 134: return 133;
    case 135: return 136; /* neighbour solicitation -> advertisement */
    case 136: return 135;
    case 139: return 140; /* node information (who-are-you) query -> reply */
    case 140: return 139;
    case 144: return 145; /* home agent address discovery request -> reply */
    case 145: return 144;
    default:  return -1;
    }
}

/* ------------------------------------------------------------------ */
/* Community ID                                                        */
/* ------------------------------------------------------------------ */

void ph_cid_digest(uint16_t seed, uint8_t ipver, uint8_t proto,
                   const uint8_t *saddr, const uint8_t *daddr,
                   uint16_t sport, uint16_t dport, uint8_t digest[20])
{
    size_t alen = (ipver == 4) ? 4 : 16;
    int has_ports = (proto == 6 || proto == 17 || proto == 132 || proto == 1 || proto == 58);
    int one_way = 0;

    if (proto == 1 || proto == 58) {
        int cp = (proto == 1) ? icmp4_counterpart(sport) : icmp6_counterpart(sport);
        if (cp >= 0)
            dport = (uint16_t)cp;     /* two-way: the code is not part of the tuple */
        else
            one_way = 1;              /* one-way: dport stays the code, no flip */
    }

    const uint8_t *a = saddr, *b = daddr;
    uint16_t pa = sport, pb = dport;
    if (!one_way) {
        int c = memcmp(saddr, daddr, alen);
        /* ordered: a < b, or equal addresses and (ports present) sport < dport */
        int ordered = c < 0 || (c == 0 && has_ports && sport < dport);
        if (!ordered) {
            a = daddr;
            b = saddr;
            pa = dport;
            pb = sport;
        }
    }

    uint8_t buf[2 + 16 + 16 + 2 + 4];
    size_t n = 0;
    buf[n++] = (uint8_t)(seed >> 8);
    buf[n++] = (uint8_t)seed;
    memcpy(buf + n, a, alen);
    n += alen;
    memcpy(buf + n, b, alen);
    n += alen;
    buf[n++] = proto;
    buf[n++] = 0;
    if (has_ports) {
        buf[n++] = (uint8_t)(pa >> 8);
        buf[n++] = (uint8_t)pa;
        buf[n++] = (uint8_t)(pb >> 8);
        buf[n++] = (uint8_t)pb;
    }

    ph_sha1 s;
    ph_sha1_init(&s);
    ph_sha1_update(&s, buf, n);
    ph_sha1_final(&s, digest);
}

void ph_cid_b64(const uint8_t digest[20], char out[32])
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = out;
    *o++ = '1';
    *o++ = ':';
    int i = 0;
    for (; i + 3 <= 20; i += 3) {
        uint32_t v = ((uint32_t)digest[i] << 16) | ((uint32_t)digest[i + 1] << 8) | digest[i + 2];
        *o++ = tab[(v >> 18) & 63];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    /* 20 = 6*3 + 2: two bytes left, one '=' of padding */
    uint32_t v = ((uint32_t)digest[i] << 16) | ((uint32_t)digest[i + 1] << 8);
    *o++ = tab[(v >> 18) & 63];
    *o++ = tab[(v >> 12) & 63];
    *o++ = tab[(v >> 6) & 63];
    *o++ = '=';
    *o = '\0';
}

void ph_cid_hex(const uint8_t digest[20], char out[44])
{
    static const char hx[] = "0123456789abcdef";
    char *o = out;
    *o++ = '1';
    *o++ = ':';
    for (int i = 0; i < 20; i++) {
        *o++ = hx[digest[i] >> 4];
        *o++ = hx[digest[i] & 15];
    }
    *o = '\0';
}
