/*
 * ph_capture.c -- capture readers: classic pcap and pcapng over a memory buffer.
 *
 * The reader walks a caller-owned buffer and never copies packet data. It only
 * advances r->pos past complete records or blocks, so that when the buffer ends
 * inside one (and more data may follow) it can return PH_RD_NEED_MORE and let
 * the caller re-feed from ph_reader_consumed() on.
 *
 * Every length read from the file is checked against the bytes actually present
 * before it is used; nothing is allocated from a file-supplied length.
 */
#include "ph_capture.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

/* ------------------------------------------------------------------ */
/* Formats                                                             */
/* ------------------------------------------------------------------ */
#define PCAP_MAGIC_US      0xa1b2c3d4u  /* microsecond timestamps */
#define PCAP_MAGIC_NS      0xa1b23c4du  /* nanosecond timestamps */
#define PCAP_MAGIC_KUZ     0xa1b2cd34u  /* "modified" (Kuznetzov) pcap: 24-byte record headers */
#define PCAP_FILE_HDR_LEN  24u
#define PCAP_REC_HDR_LEN   16u
#define PCAP_KUZ_HDR_LEN   24u

#define PCAPNG_SHB         0x0A0D0D0Au  /* palindromic: readable in either byte order */
#define PCAPNG_BOM         0x1A2B3C4Du
#define PCAPNG_IDB         0x00000001u
#define PCAPNG_PB          0x00000002u  /* obsolete Packet Block */
#define PCAPNG_SPB         0x00000003u
#define PCAPNG_EPB         0x00000006u

#define PCAPNG_OPT_END          0
#define PCAPNG_OPT_IF_TSRESOL   9
#define PCAPNG_OPT_IF_TSOFFSET  14

#define PCAPNG_MIN_BLOCK   12u  /* type + length + trailing length */
#define PCAPNG_SHB_MIN     28u
#define PCAPNG_IDB_MIN     20u
#define PCAPNG_EPB_MIN     32u
#define PCAPNG_PB_MIN      32u
#define PCAPNG_SPB_MIN     16u

#define TSRESOL_DEFAULT    6u   /* microseconds */

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */
static inline uint32_t ld32(int be, const uint8_t *p) { return be ? ph_be32(p) : ph_le32(p); }
static inline uint16_t ld16(int be, const uint8_t *p) { return be ? ph_be16(p) : ph_le16(p); }
static inline uint64_t ld64(int be, const uint8_t *p)
{
    return be ? ((uint64_t)ph_be32(p) << 32) | ph_be32(p + 4) : ph_le64(p);
}

static int rd_error(ph_error *err, uint64_t offset, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->offset = offset;
    }
    return PH_RD_ERROR;
}

/* Buffer ends inside a record: wait for more, or fail if no more will come. */
static int rd_short(const ph_reader *r, ph_error *err, const char *what)
{
    uint64_t off = r->base_offset + r->pos;
    if (!r->final)
        return PH_RD_NEED_MORE;
    return rd_error(err, off, "truncated %s at byte %" PRIu64 ": the capture was cut short", what, off);
}

/* ------------------------------------------------------------------ */
/* Timestamp conversion (pcapng if_tsresol / if_tsoffset)              */
/* ------------------------------------------------------------------ */
static const uint64_t pow10_u64[20] = {
    1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
    100000000ull, 1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull,
    10000000000000ull, 100000000000000ull, 1000000000000000ull, 10000000000000000ull,
    100000000000000000ull, 1000000000000000000ull, 10000000000000000000ull,
};

/* Full 64x64 -> 128-bit product, portable. */
static void mul_64x64(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
    uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;
    *lo = (mid << 32) | (uint32_t)p00;
    *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

static int64_t sat_add_i64(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

/* Set up an interface's conversion for a given if_tsresol value.
 * Fast path (raw <= ts_fast_max): ns = raw * ts_mul (ts_div == 1) or raw / ts_div. */
static void iface_set_tsresol(ph_iface *ifc, uint8_t tsresol)
{
    ifc->tsresol = tsresol;
    ifc->ts_mul = 1;
    ifc->ts_div = 1;
    ifc->ts_fast_max = 0; /* slow path for everything but raw == 0 */
    if (tsresol & 0x80)
        return;           /* power of two: exact 128-bit slow path */
    if (tsresol <= 9) {
        ifc->ts_mul = (int64_t)pow10_u64[9 - tsresol];
        ifc->ts_fast_max = (uint64_t)(INT64_MAX / ifc->ts_mul);
    } else if (tsresol - 9 <= 18) {
        ifc->ts_div = (int64_t)pow10_u64[tsresol - 9];
        ifc->ts_fast_max = (uint64_t)INT64_MAX;
    }
}

/* Exact conversion of any raw value at any resolution; saturates at INT64_MAX. */
static int64_t ts_slow(const ph_iface *ifc, uint64_t raw)
{
    unsigned res = ifc->tsresol;
    if (res & 0x80) {
        unsigned s = res & 0x7f; /* ns = raw * 1e9 / 2^s */
        uint64_t hi, lo;
        mul_64x64(raw, (uint64_t)PH_NS_PER_SEC, &hi, &lo);
        if (s >= 64) {
            lo = hi >> (s - 64);
            hi = 0;
        } else if (s > 0) {
            lo = (lo >> s) | (hi << (64 - s));
            hi >>= s;
        }
        return (hi || lo > (uint64_t)INT64_MAX) ? INT64_MAX : (int64_t)lo;
    }
    if (res <= 9)
        return raw > ifc->ts_fast_max ? INT64_MAX : (int64_t)raw * ifc->ts_mul;
    if (res - 9 <= 19)
        return (int64_t)(raw / pow10_u64[res - 9]);
    return 0; /* units finer than 1e-28 s: any 64-bit count is < 1 ns */
}

static inline int64_t iface_ts(const ph_iface *ifc, uint64_t raw)
{
    int64_t ns;
    if (raw <= ifc->ts_fast_max)
        ns = ifc->ts_div == 1 ? (int64_t)raw * ifc->ts_mul : (int64_t)raw / ifc->ts_div;
    else
        ns = ts_slow(ifc, raw);
    if (ifc->ts_offset_ns)
        ns = sat_add_i64(ns, ifc->ts_offset_ns);
    if (ns > PH_TS_LIMIT)
        ns = PH_TS_LIMIT;   /* see PH_TS_LIMIT: later sums and differences cannot overflow */
    else if (ns < -PH_TS_LIMIT)
        ns = -PH_TS_LIMIT;
    return ns;
}

static int64_t secs_to_ns_sat(int64_t s)
{
    if (s > INT64_MAX / PH_NS_PER_SEC)
        return INT64_MAX;
    if (s < INT64_MIN / PH_NS_PER_SEC)
        return INT64_MIN;
    return s * PH_NS_PER_SEC;
}

/* ------------------------------------------------------------------ */
/* Buffer management                                                   */
/* ------------------------------------------------------------------ */
void ph_reader_init(ph_reader *r)
{
    memset(r, 0, sizeof *r);
    r->final = 1;
}

void ph_reader_feed(ph_reader *r, const uint8_t *buf, size_t len, int final)
{
    r->base_offset += r->pos; /* the caller re-feeds from the old consumed point */
    r->buf = buf;
    r->len = buf ? len : 0;
    r->pos = 0;
    r->final = final;
}

size_t ph_reader_consumed(const ph_reader *r) { return r->pos; }

/* ------------------------------------------------------------------ */
/* Classic pcap                                                        */
/* ------------------------------------------------------------------ */
static int pcap_open(ph_reader *r, uint32_t magic_be, ph_error *err)
{
    size_t avail = r->len - r->pos;
    const uint8_t *p = r->buf + r->pos;
    uint64_t off = r->base_offset + r->pos;
    int be;
    uint32_t magic, linktype;
    uint16_t vmaj, vmin;

    if (avail < PCAP_FILE_HDR_LEN) {
        if (!r->final)
            return PH_RD_NEED_MORE;
        return rd_error(err, off, "truncated pcap file header: the input ends after %zu of its %u bytes",
                        avail, PCAP_FILE_HDR_LEN);
    }
    be = magic_be == PCAP_MAGIC_US || magic_be == PCAP_MAGIC_NS || magic_be == PCAP_MAGIC_KUZ;
    magic = ld32(be, p);
    vmaj = ld16(be, p + 4);
    vmin = ld16(be, p + 6);
    if (vmaj < 2)
        return rd_error(err, off + 4, "unsupported pcap version %u.%u at byte %" PRIu64 " (archaic format)",
                        vmaj, vmin, off + 4);
    /* As libpcap: before 2.3 the caplen and len fields were written swapped; 2.3
     * files may be either way (swap when caplen > len). */
    r->lens_swapped = (vmaj == 2 && vmin < 3) ? 1 : (vmaj == 2 && vmin == 3) ? 2 : 0;
    /* link type: low 16 bits; bits 26-31 carry FCS information */
    linktype = ld32(be, p + 20) & 0xFFFFu;

    r->format = PH_FMT_PCAP;
    r->big_endian = be;
    r->swapped = be; /* reading little-endian would be wrong */
    r->rec_hdr_len = magic == PCAP_MAGIC_KUZ ? PCAP_KUZ_HDR_LEN : PCAP_REC_HDR_LEN;
    r->n_ifaces = 1;
    memset(&r->ifaces[0], 0, sizeof r->ifaces[0]);
    r->ifaces[0].linktype = linktype;
    r->ifaces[0].snaplen = ld32(be, p + 16);
    r->ifaces[0].ts_mul = magic == PCAP_MAGIC_NS ? 1 : 1000;
    r->ifaces[0].ts_div = 1;
    r->pos += PCAP_FILE_HDR_LEN;
    return PH_RD_PACKET; /* header accepted (caller goes on to read a record) */
}

/* Every record, every case (streaming, swapped lengths, modified format). */
static int pcap_next_slow(ph_reader *r, ph_pkt *pkt, ph_error *err)
{
    size_t avail = r->len - r->pos;
    size_t hl = r->rec_hdr_len;
    const uint8_t *h = r->buf + r->pos;
    uint64_t off = r->base_offset + r->pos;
    int be = r->big_endian;
    uint32_t sec, frac, caplen, wirelen;

    if (avail < hl) {
        if (avail == 0 && r->final)
            return PH_RD_EOF;
        return rd_short(r, err, "packet record");
    }
    sec = ld32(be, h);
    frac = ld32(be, h + 4);
    caplen = ld32(be, h + 8);
    wirelen = ld32(be, h + 12);
    if (r->lens_swapped == 1 || (r->lens_swapped == 2 && caplen > wirelen)) {
        uint32_t t = caplen;
        caplen = wirelen;
        wirelen = t;
    }
    if (caplen > PH_MAX_RECORD)
        return rd_error(err, off, "packet record at byte %" PRIu64 " claims %" PRIu32 " bytes, more than any capture holds",
                        off, caplen);
    if (avail - hl < caplen)
        return rd_short(r, err, "packet record");
    pkt->data = h + hl;
    pkt->caplen = caplen;
    pkt->wirelen = wirelen < caplen ? caplen : wirelen;
    pkt->ts_ns = (int64_t)sec * PH_NS_PER_SEC + (int64_t)frac * r->ifaces[0].ts_mul;
    pkt->linktype = r->ifaces[0].linktype;
    pkt->ifindex = 0;
    r->pos += hl + caplen;
    r->records++;
    return PH_RD_PACKET;
}

/* ------------------------------------------------------------------ */
/* pcapng                                                              */
/* ------------------------------------------------------------------ */
static int ng_bad_len(ph_error *err, uint64_t off, const char *what, uint32_t blen)
{
    return rd_error(err, off, "bad pcapng block length at byte %" PRIu64 ": %" PRIu32 " bytes is too short for %s",
                    off, blen, what);
}

/* Interface Description Block: link type, snaplen, if_tsresol, if_tsoffset. */
static int ng_idb(ph_reader *r, const uint8_t *p, uint32_t blen, int be, uint64_t off, ph_error *err)
{
    ph_iface *ifc;
    uint8_t tsresol = TSRESOL_DEFAULT;
    int64_t tsoffset = 0;
    size_t o = 16, end = (size_t)blen - 4;

    if (blen < PCAPNG_IDB_MIN)
        return ng_bad_len(err, off, "an interface description block", blen);
    if (r->n_ifaces >= PH_MAX_INTERFACES)
        return rd_error(err, off, "interface description block at byte %" PRIu64 " defines more than %d interfaces in one pcapng section",
                        off, PH_MAX_INTERFACES);
    /* Options; a malformed option list ends the list (the block itself is sound). */
    while (o + 4 <= end) {
        uint16_t code = ld16(be, p + o), olen = ld16(be, p + o + 2);
        size_t padded = ((size_t)olen + 3u) & ~(size_t)3u;
        if (code == PCAPNG_OPT_END || olen > end - o - 4)
            break;
        if (code == PCAPNG_OPT_IF_TSRESOL && olen >= 1)
            tsresol = p[o + 4];
        else if (code == PCAPNG_OPT_IF_TSOFFSET && olen >= 8)
            tsoffset = (int64_t)ld64(be, p + o + 4);
        if (padded > end - o - 4)
            break;
        o += 4 + padded;
    }
    ifc = &r->ifaces[r->n_ifaces++];
    memset(ifc, 0, sizeof *ifc);
    ifc->linktype = ld16(be, p + 8);
    ifc->snaplen = ld32(be, p + 12);
    iface_set_tsresol(ifc, tsresol);
    ifc->ts_offset_ns = secs_to_ns_sat(tsoffset);
    return 0;
}

/* Section Header Block: byte order, version; interfaces reset. */
static int ng_shb(ph_reader *r, const uint8_t *p, uint32_t blen, int be, uint64_t off, ph_error *err)
{
    uint16_t vmaj, vmin;
    if (blen < PCAPNG_SHB_MIN)
        return ng_bad_len(err, off, "a section header block", blen);
    vmaj = ld16(be, p + 12);
    vmin = ld16(be, p + 14);
    if (vmaj != 1)
        return rd_error(err, off + 12, "unsupported pcapng version %u.%u in the section header at byte %" PRIu64,
                        vmaj, vmin, off);
    r->big_endian = be;
    r->swapped = be;
    r->n_ifaces = 0;
    return 0;
}

static int ng_iface_error(const ph_reader *r, ph_error *err, uint64_t off, uint32_t ifid)
{
    return rd_error(err, off, "packet block at byte %" PRIu64 " refers to interface %" PRIu32 ", but its pcapng section describes only %" PRIu32 " interface(s)",
                    off, ifid, r->n_ifaces);
}

static int pcapng_next(ph_reader *r, ph_pkt *pkt, ph_error *err)
{
    for (;;) {
        size_t avail = r->len - r->pos;
        const uint8_t *p = r->buf + r->pos;
        uint64_t off = r->base_offset + r->pos;
        int be = r->big_endian;
        uint32_t type, blen, ifid, caplen, wirelen;
        uint64_t raw;
        const ph_iface *ifc;

        if (avail < PCAPNG_MIN_BLOCK) {
            if (avail == 0 && r->final)
                return PH_RD_EOF;
            return rd_short(r, err, "pcapng block");
        }
        if (ph_be32(p) == PCAPNG_SHB) {
            uint32_t bom = ph_be32(p + 8);
            if (bom == PCAPNG_BOM)
                be = 1;
            else if (ph_le32(p + 8) == PCAPNG_BOM)
                be = 0;
            else
                return rd_error(err, off + 8, "bad pcapng byte-order magic 0x%08" PRIx32 " in the section header at byte %" PRIu64,
                                bom, off);
        }
        type = ld32(be, p);
        blen = ld32(be, p + 4);
        if (blen < PCAPNG_MIN_BLOCK || (blen & 3u))
            return rd_error(err, off, "bad pcapng block length at byte %" PRIu64 ": %" PRIu32 " is not a multiple of 4 of at least 12",
                            off, blen);
        if (blen > PH_MAX_RECORD)
            return rd_error(err, off, "pcapng block at byte %" PRIu64 " claims %" PRIu32 " bytes, more than any capture holds",
                            off, blen);
        if (avail < blen)
            return rd_short(r, err, "pcapng block");
        if (ld32(be, p + blen - 4) != blen)
            return rd_error(err, off, "bad pcapng block length at byte %" PRIu64 ": %" PRIu32 " at the start, %" PRIu32 " at the end",
                            off, blen, ld32(be, p + blen - 4));

        switch (type) {
        case PCAPNG_EPB:
            if (blen < PCAPNG_EPB_MIN)
                return ng_bad_len(err, off, "an enhanced packet block", blen);
            ifid = ld32(be, p + 8);
            raw = ((uint64_t)ld32(be, p + 12) << 32) | ld32(be, p + 16);
            caplen = ld32(be, p + 20);
            wirelen = ld32(be, p + 24);
            pkt->data = p + 28;
            goto packet;
        case PCAPNG_PB:
            if (blen < PCAPNG_PB_MIN)
                return ng_bad_len(err, off, "a packet block", blen);
            ifid = ld16(be, p + 8);
            raw = ((uint64_t)ld32(be, p + 12) << 32) | ld32(be, p + 16);
            caplen = ld32(be, p + 20);
            wirelen = ld32(be, p + 24);
            pkt->data = p + 28;
            goto packet;
        case PCAPNG_SPB:
            if (blen < PCAPNG_SPB_MIN)
                return ng_bad_len(err, off, "a simple packet block", blen);
            if (r->n_ifaces == 0)
                return ng_iface_error(r, err, off, 0);
            wirelen = ld32(be, p + 8);
            caplen = blen - PCAPNG_SPB_MIN;
            if (wirelen < caplen)
                caplen = wirelen;
            if (r->ifaces[0].snaplen && r->ifaces[0].snaplen < caplen)
                caplen = r->ifaces[0].snaplen;
            pkt->data = p + 12;
            pkt->caplen = caplen;
            pkt->wirelen = wirelen;
            pkt->ts_ns = r->last_ts_ns; /* SPBs carry no timestamp */
            pkt->linktype = r->ifaces[0].linktype;
            pkt->ifindex = 0;
            r->pos += blen;
            r->records++;
            return PH_RD_PACKET;
        case PCAPNG_SHB:
            if (ng_shb(r, p, blen, be, off, err))
                return PH_RD_ERROR;
            r->pos += blen;
            continue;
        case PCAPNG_IDB:
            if (ng_idb(r, p, blen, be, off, err))
                return PH_RD_ERROR;
            r->pos += blen;
            continue;
        default:
            r->skipped_blocks++;
            r->pos += blen;
            continue;
        }

    packet: /* EPB and PB: data at p + 28, fixed part 28 bytes + trailing length */
        if (ifid >= r->n_ifaces)
            return ng_iface_error(r, err, off, ifid);
        if (caplen > blen - PCAPNG_EPB_MIN)
            return rd_error(err, off, "packet block at byte %" PRIu64 " claims %" PRIu32 " captured bytes but holds only %" PRIu32,
                            off, caplen, blen - PCAPNG_EPB_MIN);
        ifc = &r->ifaces[ifid];
        pkt->caplen = caplen;
        pkt->wirelen = wirelen < caplen ? caplen : wirelen;
        pkt->ts_ns = r->last_ts_ns = iface_ts(ifc, raw);
        pkt->linktype = ifc->linktype;
        pkt->ifindex = ifid;
        r->pos += blen;
        r->records++;
        return PH_RD_PACKET;
    }
}

/* ------------------------------------------------------------------ */
/* Format detection                                                    */
/* ------------------------------------------------------------------ */
static int rd_open(ph_reader *r, ph_error *err)
{
    size_t avail = r->len - r->pos;
    uint64_t off = r->base_offset + r->pos;
    uint32_t magic;

    if (avail < 4) {
        if (!r->final)
            return PH_RD_NEED_MORE;
        if (avail == 0 && off == 0)
            return rd_error(err, 0, "empty file, not a capture");
        return rd_error(err, off, "truncated capture file header: the input ends after %" PRIu64 " bytes",
                        off + avail);
    }
    magic = ph_be32(r->buf + r->pos);
    switch (magic) {
    case PCAP_MAGIC_US: case 0xd4c3b2a1u:
    case PCAP_MAGIC_NS: case 0x4d3cb2a1u:
    case PCAP_MAGIC_KUZ: case 0x34cdb2a1u:
        return pcap_open(r, magic, err);
    case PCAPNG_SHB:
        r->format = PH_FMT_PCAPNG; /* the SHB itself is read as a block */
        return PH_RD_PACKET;
    default:
        if ((magic >> 16) == 0x1f8bu)
            return rd_error(err, off, "not a pcap or pcapng file (magic 0x%08" PRIx32 "): it looks gzip-compressed", magic);
        return rd_error(err, off, "not a pcap or pcapng file (magic 0x%08" PRIx32 ")", magic);
    }
}

/* ------------------------------------------------------------------ */
/* Entry point                                                         */
/* ------------------------------------------------------------------ */
int ph_reader_next(ph_reader *r, ph_pkt *pkt, ph_error *err)
{
    if (r->format == PH_FMT_PCAP) {
        /* Hot path: a complete standard record in the buffer. */
        size_t avail = r->len - r->pos;
        if (avail >= PCAP_REC_HDR_LEN && r->rec_hdr_len == PCAP_REC_HDR_LEN && !r->lens_swapped) {
            const uint8_t *h = r->buf + r->pos;
            int be = r->big_endian;
            uint32_t caplen = ld32(be, h + 8);
            if (caplen <= avail - PCAP_REC_HDR_LEN) { /* also bounds caplen by the buffer */
                uint32_t wirelen = ld32(be, h + 12);
                if (caplen <= PH_MAX_RECORD) {
                    pkt->data = h + PCAP_REC_HDR_LEN;
                    pkt->caplen = caplen;
                    pkt->wirelen = wirelen < caplen ? caplen : wirelen;
                    pkt->ts_ns = (int64_t)ld32(be, h) * PH_NS_PER_SEC
                               + (int64_t)ld32(be, h + 4) * r->ifaces[0].ts_mul;
                    pkt->linktype = r->ifaces[0].linktype;
                    pkt->ifindex = 0;
                    r->pos += PCAP_REC_HDR_LEN + caplen;
                    r->records++;
                    return PH_RD_PACKET;
                }
            }
        }
        return pcap_next_slow(r, pkt, err);
    }
    if (r->format == PH_FMT_PCAPNG)
        return pcapng_next(r, pkt, err);
    {
        int rc = rd_open(r, err);
        if (rc != PH_RD_PACKET)
            return rc;
        return ph_reader_next(r, pkt, err);
    }
}
