/*
 * ph_engine.c -- the packet loop (see ph_engine.h).
 */
#include "ph_engine.h"

#include <stdlib.h>

/* Names of the PH_C_* counters, in enum order (reported in summaries and metrics). */
const char *const ph_counter_names[PH_C__COUNT] = {
    "packets_read",
    "bytes_read",
    "in_flow",
    "bad_checksum",
    "fragment_held",
    "fragment_dropped",
    "not_ip",
    "unsupported_linktype",
    "truncated_link",
    "truncated_ip",
    "bad_ip_header",
    "bad_ip_checksum",
    "truncated_l4",
    "bad_l4_header",
    "unsupported_tunnel",
    "no_connection",
    "flow_table_full",
    "flows_created",
    "flows_exported",
    "flow_updates",
    "evictions",
    "fragments_reassembled",
    "frag_overflow",
    "frag_timeout",
    "tcp_reuse",
    "link_unknown_seen",
};

#define PH_FRAG_EXPIRE_EVERY_NS (1 * PH_NS_PER_SEC)

/* ------------------------------------------------------------------ */
/* Export queue                                                        */
/* ------------------------------------------------------------------ */
static void engine_emit(void *ctx, const ph_flow_rec *rec)
{
    ph_engine *e = ctx;
    if (e->qlen == e->qcap) {
        size_t ncap = e->qcap ? e->qcap * 2 : 1024;
        ph_flow_rec *nq = realloc(e->queue, ncap * sizeof *nq);
        if (!nq) {
            e->nomem = 1;  /* the record is lost; reported as PH_RUN_NOMEM */
            return;
        }
        e->queue = nq;
        e->qcap = ncap;
    }
    e->queue[e->qlen++] = *rec;
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                           */
/* ------------------------------------------------------------------ */
ph_engine *ph_engine_new(const ph_decode_cfg *dcfg, const ph_flow_cfg *fcfg)
{
    ph_engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->dec = ph_decoder_new(dcfg, e->counters);
    if (!e->dec)
        goto error;
    e->tab = ph_flowtab_new(fcfg, e->counters, engine_emit, e);
    if (!e->tab)
        goto error;
    ph_reader_init(&e->reader);
    e->last_ts = INT64_MIN;
    e->next_frag_expire = INT64_MIN;
    return e;
error:
    ph_engine_free(e);
    return NULL;
}

void ph_engine_free(ph_engine *e)
{
    if (!e)
        return;
    if (e->tab)
        ph_flowtab_free(e->tab);
    if (e->dec)
        ph_decoder_free(e->dec);
    free(e->queue);
    free(e);
}

void ph_engine_begin_capture(ph_engine *e)
{
    ph_reader_init(&e->reader);
    memset(&e->err, 0, sizeof e->err);
}

void ph_engine_feed(ph_engine *e, const uint8_t *buf, size_t len, int final)
{
    ph_reader_feed(&e->reader, buf, len, final);
}

size_t ph_engine_consumed(const ph_engine *e) { return ph_reader_consumed(&e->reader); }

uint64_t ph_engine_offset(const ph_engine *e) { return e->reader.base_offset + e->reader.pos; }

/* ------------------------------------------------------------------ */
/* Per packet                                                          */
/* ------------------------------------------------------------------ */
static inline void engine_time(ph_engine *e, int64_t ts)
{
    if (ts <= e->last_ts)
        return;
    e->last_ts = ts;
    if (ts >= e->next_frag_expire) {
        ph_decoder_expire(e->dec, ts);
        e->next_frag_expire = ts + PH_FRAG_EXPIRE_EVERY_NS;
    }
}

int ph_engine_packet(ph_engine *e, const ph_pkt *pkt)
{
    ph_parsed p;
    int disp;

    e->counters[PH_C_PACKETS_READ]++;
    e->counters[PH_C_BYTES_READ] += pkt->caplen;
    engine_time(e, pkt->ts_ns);
    disp = ph_decode(e->dec, pkt, &p);
    if (disp == PH_DEC_OK)
        disp = ph_flowtab_packet(e->tab, &p);
    else
        ph_flowtab_advance(e->tab, pkt->ts_ns);
    e->counters[disp]++;
    return e->nomem ? PH_RUN_NOMEM : 0;
}

int ph_engine_run(ph_engine *e, size_t batch, uint64_t max_packets)
{
    ph_pkt pkt;
    for (uint64_t n = 0;; n++) {
        if (n >= max_packets)
            return PH_RUN_YIELD;
        int rc = ph_reader_next(&e->reader, &pkt, &e->err);
        if (rc != PH_RD_PACKET) {
            if (rc == PH_RD_NEED_MORE)
                return PH_RUN_NEED_MORE;
            if (rc == PH_RD_EOF)
                return PH_RUN_EOF;
            return PH_RUN_ERROR;
        }
        if (ph_engine_packet(e, &pkt) == PH_RUN_NOMEM)
            return PH_RUN_NOMEM;
        if (e->qlen >= batch)
            return PH_RUN_BATCH;
    }
}

void ph_engine_advance(ph_engine *e, int64_t now_ns)
{
    engine_time(e, now_ns);
    ph_flowtab_advance(e->tab, now_ns);
}

void ph_engine_finish(ph_engine *e, int reason)
{
    ph_decoder_flush(e->dec);
    ph_flowtab_flush(e->tab, reason);
}
