/*
 * ph_capture.h -- capture readers: classic pcap and pcapng over a memory buffer.
 *
 * The reader never copies packet data: it walks a buffer that the caller owns
 * (an mmap'd file, or a chunk of a decompressed stream). Streaming works by
 * feeding: when a record straddles the end of a non-final buffer, next()
 * returns PH_RD_NEED_MORE; the caller keeps the bytes from ph_reader_consumed()
 * on, appends more data and calls ph_reader_feed() again.
 */
#ifndef PH_CAPTURE_H
#define PH_CAPTURE_H

#include "ph_types.h"

#define PH_RD_PACKET     1   /* *pkt filled */
#define PH_RD_NEED_MORE  0   /* buffer ends inside a record (non-final buffer) */
#define PH_RD_EOF       (-1) /* clean end of the final buffer */
#define PH_RD_ERROR     (-2) /* corrupt capture: err filled (message + absolute byte offset) */

#define PH_FMT_UNKNOWN 0
#define PH_FMT_PCAP    1
#define PH_FMT_PCAPNG  2

#define PH_MAX_INTERFACES 256
#define PH_MAX_RECORD (256u * 1024u * 1024u) /* larger length fields are corruption */
/* Packet timestamps are clamped to [-PH_TS_LIMIT, PH_TS_LIMIT] ns (about 146
 * years either side of 1970; classic pcap cannot go past 2106 anyway), so the
 * layers after the reader can add timeouts of up to INT64_MAX / 4 and subtract
 * two timestamps without signed overflow (a hostile pcapng if_tsoffset or
 * 64-bit tick count would otherwise reach INT64_MAX). */
#define PH_TS_LIMIT (((int64_t)1 << 62) - 1)

typedef struct ph_iface {
    uint32_t linktype;
    uint32_t snaplen;
    int64_t ts_mul;   /* multiply raw units by ts_mul ... */
    int64_t ts_div;   /* ... then divide by ts_div to get ns */
    int64_t ts_offset_ns;
    uint64_t ts_fast_max; /* raw <= ts_fast_max: ns = raw * ts_mul / ts_div cannot overflow */
    uint8_t tsresol;      /* pcapng if_tsresol (exact slow path for any other raw value) */
} ph_iface;

typedef struct ph_reader {
    /* current buffer */
    const uint8_t *buf;
    size_t len;
    size_t pos;            /* offset of the next unread byte within buf */
    int final;             /* no more data after buf */
    uint64_t base_offset;  /* absolute file offset of buf[0] */
    /* format state */
    int format;            /* PH_FMT_* (set once the header is read) */
    int swapped;           /* pcap: byte order differs from little-endian reading */
    int big_endian;        /* pcapng section / pcap header is big-endian */
    uint32_t n_ifaces;
    ph_iface ifaces[PH_MAX_INTERFACES];
    uint64_t records;      /* packet records returned */
    uint64_t skipped_blocks; /* pcapng blocks skipped (unknown types, stats, NRB...) */
    uint32_t rec_hdr_len;  /* pcap: record header size (16; 24 for the modified/Kuznetzov format) */
    int lens_swapped;      /* pcap < 2.3: caplen/len fields swapped (1 always, 2 when caplen > len) */
    int64_t last_ts_ns;    /* pcapng: last packet timestamp (Simple Packet Blocks have none) */
} ph_reader;

void ph_reader_init(ph_reader *r);
/* Give the reader a buffer that starts at absolute offset r->base_offset + consumed
 * (i.e. the caller re-feeds unconsumed bytes first). */
void ph_reader_feed(ph_reader *r, const uint8_t *buf, size_t len, int final);
/* Bytes of the current buffer consumed so far (everything before them may be discarded). */
size_t ph_reader_consumed(const ph_reader *r);
/* Next packet; see PH_RD_*. On PH_RD_ERROR, err->msg says what and err->offset where.
 * Tolerances: caplen above the snaplen is accepted (up to PH_MAX_RECORD); wirelen is
 * raised to caplen when a file says less; a pcapng Simple Packet Block (no timestamp)
 * gets the timestamp of the previous packet. Timestamps saturate at +-PH_TS_LIMIT. */
int ph_reader_next(ph_reader *r, ph_pkt *pkt, ph_error *err);

#endif /* PH_CAPTURE_H */
