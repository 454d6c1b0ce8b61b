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
 *
 * SHA-1 has two block functions with identical results: portable C, and the
 * x86 SHA extensions (SHA-NI: sha1rnds4/sha1nexte/sha1msg1/sha1msg2), chosen
 * at run time from CPUID, so the default build runs on any x86-64 (no
 * -march needed) and uses the instructions where the CPU has them. A
 * Community ID tuple is at most 40 bytes, so its digest is one block.
 */
#include "ph_cid.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PH_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------ */
/* SHA-1                                                               */
/* ------------------------------------------------------------------ */

static inline uint32_t rol32(uint32_t x, unsigned n) { return (x << n) | (x >> (32u - n)); }

static void sha1_block_c(uint32_t h[5], const uint8_t *p)
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

#ifdef PH_SHA_NI
/* One group of four rounds (g = 0..19) of the SHA-NI schedule: the message
 * words M0..M3 rotate, E0/E1 alternate; msg1/xor/msg2 run only in the groups
 * where the next words still need them (Intel's reference sequence). */
#define SHA1_G(g, Ex, Ey, Mc, Mn, Mn2, Mp, f)                                    \
    do {                                                                         \
        Ex = _mm_sha1nexte_epu32(Ex, Mc);                                        \
        Ey = abcd;                                                               \
        if ((g) >= 3 && (g) <= 18)                                               \
            Mn = _mm_sha1msg2_epu32(Mn, Mc);                                     \
        abcd = _mm_sha1rnds4_epu32(abcd, Ex, f);                                 \
        if ((g) <= 16)                                                           \
            Mp = _mm_sha1msg1_epu32(Mp, Mc);                                     \
        if ((g) >= 2 && (g) <= 17)                                               \
            Mn2 = _mm_xor_si128(Mn2, Mc);                                        \
    } while (0)

__attribute__((target("sha,sse4.1,ssse3")))
static void sha1_block_ni(uint32_t h[5], const uint8_t *p)
{
    const __m128i bswap = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(const void *)h), 0x1b);
    __m128i e0 = _mm_set_epi32((int)h[4], 0, 0, 0), e1;
    const __m128i abcd_save = abcd, e0_save = e0;
    __m128i m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)p), bswap);
    __m128i m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 16)), bswap);
    __m128i m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 32)), bswap);
    __m128i m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 48)), bswap);

    /* group 0: E is added, not "next-e"d */
    e0 = _mm_add_epi32(e0, m0);
    e1 = abcd;
    abcd = _mm_sha1rnds4_epu32(abcd, e0, 0);
    /*      g  Ex  Ey  cur next n+2 prev f */
    SHA1_G(1,  e1, e0, m1, m2, m3, m0, 0);
    SHA1_G(2,  e0, e1, m2, m3, m0, m1, 0);
    SHA1_G(3,  e1, e0, m3, m0, m1, m2, 0);
    SHA1_G(4,  e0, e1, m0, m1, m2, m3, 0);
    SHA1_G(5,  e1, e0, m1, m2, m3, m0, 1);
    SHA1_G(6,  e0, e1, m2, m3, m0, m1, 1);
    SHA1_G(7,  e1, e0, m3, m0, m1, m2, 1);
    SHA1_G(8,  e0, e1, m0, m1, m2, m3, 1);
    SHA1_G(9,  e1, e0, m1, m2, m3, m0, 1);
    SHA1_G(10, e0, e1, m2, m3, m0, m1, 2);
    SHA1_G(11, e1, e0, m3, m0, m1, m2, 2);
    SHA1_G(12, e0, e1, m0, m1, m2, m3, 2);
    SHA1_G(13, e1, e0, m1, m2, m3, m0, 2);
    SHA1_G(14, e0, e1, m2, m3, m0, m1, 2);
    SHA1_G(15, e1, e0, m3, m0, m1, m2, 3);
    SHA1_G(16, e0, e1, m0, m1, m2, m3, 3);
    SHA1_G(17, e1, e0, m1, m2, m3, m0, 3);
    SHA1_G(18, e0, e1, m2, m3, m0, m1, 3);
    SHA1_G(19, e1, e0, m3, m0, m1, m2, 3);

    e0 = _mm_sha1nexte_epu32(e0, e0_save);
    abcd = _mm_add_epi32(abcd, abcd_save);
    _mm_storeu_si128((__m128i *)(void *)h, _mm_shuffle_epi32(abcd, 0x1b));
    h[4] = (uint32_t)_mm_extract_epi32(e0, 3);
}
#undef SHA1_G

/* CPUID: SHA (leaf 7 EBX bit 29), SSE4.1 (leaf 1 ECX bit 19), SSSE3 (ECX bit 9). */
static int cpu_has_sha_ni(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 19)) || !(c & (1u << 9)))
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 29) & 1;
}
#endif

/* 0 = not probed yet, 1 = portable C, 2 = SHA-NI (a benign, idempotent race) */
static int sha1_impl;

static int sha1_impl_get(void)
{
    int v = __atomic_load_n(&sha1_impl, __ATOMIC_RELAXED);
    if (!v) {
#ifdef PH_SHA_NI
        v = cpu_has_sha_ni() ? 2 : 1;
#else
        v = 1;
#endif
        __atomic_store_n(&sha1_impl, v, __ATOMIC_RELAXED);
    }
    return v;
}

static inline void sha1_block(uint32_t h[5], const uint8_t *p)
{
#ifdef PH_SHA_NI
    if (sha1_impl_get() == 2) {
        sha1_block_ni(h, p);
        return;
    }
#endif
    sha1_block_c(h, p);
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

/* memcmp of two addresses (4 or 16 bytes), inline: they compare as big-endian numbers */
static inline int addr_cmp(const uint8_t *x, const uint8_t *y, size_t alen)
{
    uint64_t a, b;
    if (alen == 4) {
        a = ph_be32(x);
        b = ph_be32(y);
    } else {
        a = (uint64_t)ph_be32(x) << 32 | ph_be32(x + 4);
        b = (uint64_t)ph_be32(y) << 32 | ph_be32(y + 4);
        if (a == b) {
            a = (uint64_t)ph_be32(x + 8) << 32 | ph_be32(x + 12);
            b = (uint64_t)ph_be32(y + 8) << 32 | ph_be32(y + 12);
        }
    }
    return (a > b) - (a < b);
}

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
        int c = addr_cmp(saddr, daddr, alen);
        /* ordered: a < b, or equal addresses and (ports present) sport < dport */
        int ordered = c < 0 || (c == 0 && has_ports && sport < dport);
        if (!ordered) {
            a = daddr;
            b = saddr;
            pa = dport;
            pb = sport;
        }
    }

    /* the tuple is at most 40 bytes: one padded SHA-1 block */
    uint8_t buf[64] = {0};
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
    buf[n] = 0x80;
    buf[62] = (uint8_t)(n * 8 >> 8);
    buf[63] = (uint8_t)(n * 8);

    uint32_t h[5] = { 0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u, 0xc3d2e1f0u };
    sha1_block(h, buf);
    for (int i = 0; i < 5; i++) {
        uint8_t w[4] = { (uint8_t)(h[i] >> 24), (uint8_t)(h[i] >> 16), (uint8_t)(h[i] >> 8), (uint8_t)h[i] };
        memcpy(digest + 4 * i, w, 4);   /* one (byte-swapping) store */
    }
}

/* Base64 two characters at a time: 12 bits -> 2 characters (8 KiB, filled
 * once when the library is loaded, before any thread can use it). */
static char b64_pairs[4096][2];

__attribute__((constructor)) static void b64_fill(void)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 4096; i++) {
        b64_pairs[i][0] = tab[i >> 6];
        b64_pairs[i][1] = tab[i & 63];
    }
}

void ph_cid_b64(const uint8_t digest[20], char out[32])
{
    char *o = out;
    *o++ = '1';
    *o++ = ':';
    int i = 0;
    for (; i + 3 <= 20; i += 3) {
        uint32_t v = ((uint32_t)digest[i] << 16) | ((uint32_t)digest[i + 1] << 8) | digest[i + 2];
        memcpy(o, b64_pairs[v >> 12], 2);
        memcpy(o + 2, b64_pairs[v & 4095], 2);
        o += 4;
    }
    /* 20 = 6*3 + 2: two bytes left, one '=' of padding */
    uint32_t v = ((uint32_t)digest[i] << 16) | ((uint32_t)digest[i + 1] << 8);
    memcpy(o, b64_pairs[v >> 12], 2);
    o[2] = b64_pairs[v & 4095][0];
    o[3] = '=';
    o[4] = '\0';
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
