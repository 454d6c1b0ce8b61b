/*
 * fuzz_capture.c -- libFuzzer target for the capture readers (ext/ph_capture.c).
 *
 * The input is a capture file (classic pcap or pcapng). It is read twice:
 * whole, as one final buffer (an mmap'd file), and streamed in chunks of
 * pseudo-random sizes the way pyhunt.flows feeds a gzip stream (keep the bytes
 * from ph_reader_consumed() on, append the next chunk, feed again). Both reads
 * must return the same packets and end the same way (EOF, or the same error
 * at the same byte offset); every packet must lie inside the buffer it came
 * from, and the reader must never ask for more data after the final buffer.
 */
#include "fuzz_util.h"
#include "ph_capture.h"

#define MAX_STEPS 4000000u   /* bounds every loop: far more records than any input holds */

typedef struct read_sum {
    uint64_t packets;
    uint64_t hash;
    int rc;                  /* PH_RD_EOF or PH_RD_ERROR */
    ph_error err;
} read_sum;

static uint64_t mix(uint64_t h, uint64_t v)
{
    return (h ^ v) * 0x100000001b3ULL + 0x9e3779b97f4a7c15ULL;
}

/* Read packets from the current buffer until the reader stops; returns PH_RD_*. */
static int drain(ph_reader *r, const uint8_t *buf, size_t len, read_sum *s)
{
    for (uint32_t step = 0; step < MAX_STEPS; step++) {
        ph_pkt pkt;
        int rc = ph_reader_next(r, &pkt, &s->err);
        if (rc != PH_RD_PACKET)
            return rc;
        FUZZ_CHECK(pkt.caplen <= PH_MAX_RECORD);
        FUZZ_CHECK(pkt.wirelen >= pkt.caplen);
        if (pkt.caplen) {
            FUZZ_CHECK(pkt.data != NULL);
            FUZZ_CHECK(pkt.data >= buf && pkt.data + pkt.caplen <= buf + len);
        }
        FUZZ_CHECK(ph_reader_consumed(r) <= len);
        s->packets++;
        s->hash = mix(s->hash, (uint64_t)pkt.ts_ns);
        s->hash = mix(s->hash, ((uint64_t)pkt.caplen << 32) | pkt.wirelen);
        s->hash = mix(s->hash, ((uint64_t)pkt.linktype << 32) | pkt.ifindex);
        s->hash = mix(s->hash, fuzz_touch(pkt.data, pkt.caplen));
    }
    FUZZ_CHECK(!"reader loop did not end");
    return PH_RD_ERROR;
}

static void read_whole(const uint8_t *data, size_t size, read_sum *s)
{
    static ph_reader r;     /* ~10 KiB of interface table: not on the stack */
    uint8_t *buf = fuzz_dup(data, size);
    ph_reader_init(&r);
    ph_reader_feed(&r, size ? buf : NULL, size, 1);
    s->rc = drain(&r, buf, size, s);
    FUZZ_CHECK(s->rc == PH_RD_EOF || s->rc == PH_RD_ERROR);
    free(buf);
}

static void read_streamed(const uint8_t *data, size_t size, uint64_t seed, read_sum *s)
{
    static ph_reader r;
    uint8_t *buf = NULL;
    size_t blen = 0, off = 0;

    ph_reader_init(&r);
    for (uint32_t step = 0; step < MAX_STEPS; step++) {
        int final = fuzz_stream_chunk(&seed, data, size, &off, &buf, &blen);
        ph_reader_feed(&r, buf, blen, final);
        int rc = drain(&r, buf, blen, s);
        if (rc == PH_RD_NEED_MORE) {
            FUZZ_CHECK(!final);
            size_t c = ph_reader_consumed(&r);
            FUZZ_CHECK(c <= blen);
            memmove(buf, buf + c, blen - c);   /* keep the unconsumed tail */
            blen -= c;
            continue;
        }
        s->rc = rc;
        FUZZ_CHECK(rc == PH_RD_EOF || rc == PH_RD_ERROR);
        break;
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    read_sum whole, streamed;
    memset(&whole, 0, sizeof whole);
    memset(&streamed, 0, sizeof streamed);
    read_whole(data, size, &whole);
    read_streamed(data, size, fuzz_hash(data, size), &streamed);

    FUZZ_CHECK(whole.packets == streamed.packets);
    FUZZ_CHECK(whole.hash == streamed.hash);
    FUZZ_CHECK(whole.rc == streamed.rc);
    if (whole.rc == PH_RD_ERROR) {
        FUZZ_CHECK(whole.err.offset == streamed.err.offset);
        FUZZ_CHECK(whole.err.offset <= size);
        FUZZ_CHECK(memchr(whole.err.msg, 0, sizeof whole.err.msg) != NULL);
        FUZZ_CHECK(strcmp(whole.err.msg, streamed.err.msg) == 0);
    }
    return 0;
}
