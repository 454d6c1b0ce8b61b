/*
 * fuzz_engine.c -- libFuzzer target for the whole engine: capture reader ->
 * decoder -> flow table (Zeek state machine, timers, eviction) -> export
 * queue -> ph_format in every format (ECS, Zeek JSON, Zeek TSV).
 *
 * The input is a capture file. A PRNG seeded with a hash of the input picks
 * the configuration (table capacity down to 1 flow so eviction runs, timeouts,
 * interim updates, first_n, checksum checking, VLANs in the key, fragment
 * limits), whether the file is fed whole or streamed in chunks, the batch size,
 * and whether the same capture is read a second time (several files are one
 * stream). Single-threaded (PH_PIPE_OFF) so a crash replays exactly.
 * Checked after every batch: each record serializes to exactly one line in
 * each format; at the end: the dispositions add up to packets_read, the table
 * is empty, and every exported record was counted.
 */
#include "fuzz_util.h"
#include "ph_engine.h"
#include "ph_format.h"

#define MAX_STEPS 4000000u

typedef struct fuzz_state {
    ph_buf out;
    uint64_t records, updates;
    size_t take;   /* records taken per look at the queue while reading (0 = all; the rest waits) */
} fuzz_state;

/* Take (at most max, 0 = all) queued records: count and format them. */
static void format_queue(ph_engine *e, fuzz_state *st, size_t max)
{
    size_t n;
    const ph_flow_rec *q = ph_engine_queue(e, &n);
    if (max && n > max)
        n = max;
    static const ph_format_opts opts_list[2] = {{NULL, NULL}, {"sensor \"1\"\n", "pyhunt.fuzz"}};

    for (size_t i = 0; i < n; i++) {
        if (q[i].flags & PH_RF_UPDATE)
            st->updates++;
        else
            st->records++;
    }
    for (int fmt = PH_FORMAT_ECS; fmt <= PH_FORMAT_ZEEK_TSV; fmt++) {
        st->out.len = 0;
        FUZZ_CHECK(ph_format_records(&st->out, fmt, q, n, &opts_list[fmt & 1]) == 0);
        size_t lines = 0;
        for (size_t i = 0; i < st->out.len; i++) {
            FUZZ_CHECK(st->out.data[i] != '\0');
            lines += st->out.data[i] == '\n';
        }
        FUZZ_CHECK(lines == n);
        FUZZ_CHECK(n == 0 || st->out.data[st->out.len - 1] == '\n');
    }
    for (size_t i = 0; i < n; i++) {
        char uid[16];
        ph_format_uid(q[i].flow_id, uid);
        FUZZ_CHECK(memchr(uid, 0, sizeof uid) != NULL);
    }
    ph_engine_consume(e, n);
}

static void drain_queue(ph_engine *e, fuzz_state *st)
{
    while (ph_engine_queued(e))
        format_queue(e, st, 0);
}

/* Run the engine over the buffer fed last until it needs more or stops. */
static int run_buffer(ph_engine *e, size_t batch, fuzz_state *st)
{
    for (uint32_t step = 0; step < MAX_STEPS; step++) {
        int rc = ph_engine_run(e, batch, 1 + step % 97);   /* small max_packets: YIELD paths */
        if (rc == PH_RUN_BATCH || rc == PH_RUN_YIELD) {
            format_queue(e, st, st->take);
            continue;
        }
        FUZZ_CHECK(rc != PH_RUN_NOMEM);
        return rc;
    }
    FUZZ_CHECK(!"engine loop did not end");
    return PH_RUN_ERROR;
}

static void read_capture(ph_engine *e, const uint8_t *data, size_t size, int streamed, uint64_t *seed,
                         size_t batch, fuzz_state *st)
{
    ph_engine_begin_capture(e);
    if (!streamed) {
        uint8_t *buf = fuzz_dup(data, size);
        ph_engine_feed(e, size ? buf : NULL, size, 1);
        int rc = run_buffer(e, batch, st);
        FUZZ_CHECK(rc == PH_RUN_EOF || rc == PH_RUN_ERROR);
        ph_engine_begin_capture(e);   /* drop the reader's pointer before freeing */
        free(buf);
        return;
    }
    uint8_t *buf = NULL;
    size_t blen = 0, off = 0;
    for (uint32_t step = 0; step < MAX_STEPS; step++) {
        int final = fuzz_stream_chunk(seed, data, size, &off, &buf, &blen);
        ph_engine_feed(e, buf, blen, final);
        int rc = run_buffer(e, batch, st);
        if (rc == PH_RUN_NEED_MORE) {
            FUZZ_CHECK(!final);
            size_t c = ph_engine_consumed(e);
            memmove(buf, buf + c, blen - c);
            blen -= c;
            continue;
        }
        FUZZ_CHECK(rc == PH_RUN_EOF || rc == PH_RUN_ERROR);
        break;
    }
    ph_engine_begin_capture(e);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ph_flow_cfg fcfg;     /* 16 KiB of port bitmaps: not on the stack */
    ph_decode_cfg dcfg;
    fuzz_state st;
    uint64_t seed = fuzz_hash(data, size);
    uint64_t v = fuzz_next(&seed);
    static const uint32_t caps[4] = {1, 2, 7, 4096};

    ph_decode_cfg_default(&dcfg);
    ph_flow_cfg_default(&fcfg);
    fcfg.capacity = caps[v & 3];
    dcfg.ignore_checksums = fcfg.ignore_checksums = (v >> 2) & 1;
    fcfg.emit_updates = (v >> 3) & 1;
    fcfg.active_timeout_ns = ((v >> 4) & 1) ? PH_NS_PER_SEC : 0;
    fcfg.first_n = (uint8_t)((v >> 5) % 10);          /* 9 is above PH_FIRST_N: clamped */
    fcfg.vlan_in_key = (v >> 9) & 1;
    if ((v >> 10) & 1) {
        fcfg.tcp_inactivity_ns = fcfg.udp_inactivity_ns = fcfg.icmp_inactivity_ns =
            fcfg.other_inactivity_ns = 2 * PH_NS_PER_SEC;
        dcfg.frag_timeout_ns = PH_NS_PER_SEC;
    }
    if ((v >> 11) & 1) {
        dcfg.frag_max_datagrams = 2;
        dcfg.frag_max_bytes = 8192;
    }
    if ((v >> 12) & 1) {   /* 10.0.0.0/8 and fd00::/8 local */
        fcfg.n_local_nets = 2;
        memset(fcfg.local_nets, 0, sizeof fcfg.local_nets[0] * 2);
        fcfg.local_nets[0].addr[0] = 10;
        fcfg.local_nets[0].ipver = 4;
        fcfg.local_nets[0].prefix = 8;
        fcfg.local_nets[1].addr[0] = 0xfd;
        fcfg.local_nets[1].ipver = 6;
        fcfg.local_nets[1].prefix = 8;
    }
    int streamed = (v >> 13) & 1;
    int twice = ((v >> 14) & 7) == 0;
    size_t batch = 1 + (size_t)((v >> 17) % 64);

    ph_engine *e = ph_engine_new(&dcfg, &fcfg);
    FUZZ_CHECK(e != NULL);
    e->pipeline = PH_PIPE_OFF;
    memset(&st, 0, sizeof st);
    st.take = ((v >> 23) & 1) ? 1 + (size_t)((v >> 24) % 5) : 0;

    read_capture(e, data, size, streamed, &seed, batch, &st);
    if (twice)
        read_capture(e, data, size, !streamed, &seed, batch, &st);
    /* the end: the whole flush at once, or in steps of a few records with the
     * queue taken between them (and, sometimes, time advanced mid-flush, which
     * ends it) */
    size_t step = ((v >> 27) & 1) ? 1 + (size_t)((v >> 28) % 8) : 0;
    if (!step && e->last_ts > INT64_MIN && e->last_ts < INT64_MAX - 7200 * PH_NS_PER_SEC) {
        ph_engine_advance(e, e->last_ts + 7200 * PH_NS_PER_SEC);   /* live-capture timers */
        drain_queue(e, &st);
    }
    if (step) {
        int advance_mid = (v >> 31) & 1;
        for (size_t left = 1, k = 0; left; k++) {
            left = ph_engine_finish_step(e, PH_END_END_OF_INPUT, step);
            drain_queue(e, &st);
            if (left && advance_mid && k == 1 && e->last_ts > INT64_MIN) {
                ph_engine_advance(e, e->last_ts);
                drain_queue(e, &st);
                FUZZ_CHECK(ph_flowtab_active(e->tab) == 0);
            }
        }
    } else {
        ph_engine_finish(e, PH_END_END_OF_INPUT);
        drain_queue(e, &st);
    }

    uint64_t sum = 0;
    for (int i = PH_C_IN_FLOW; i < PH_C__DISPOSITION_END; i++)
        sum += e->counters[i];
    FUZZ_CHECK(sum == e->counters[PH_C_PACKETS_READ]);
    FUZZ_CHECK(e->counters[PH_C_FLOW_TABLE_FULL] == 0);
    FUZZ_CHECK(ph_flowtab_active(e->tab) == 0);
    FUZZ_CHECK(ph_decoder_frag_pending(e->dec) == 0);
    FUZZ_CHECK(st.records == e->counters[PH_C_FLOWS_EXPORTED]);
    FUZZ_CHECK(st.updates == e->counters[PH_C_FLOW_UPDATES]);
    FUZZ_CHECK(e->counters[PH_C_FLOWS_EXPORTED] == e->counters[PH_C_FLOWS_CREATED]);

    ph_buf_free(&st.out);
    ph_engine_free(e);
    return 0;
}
