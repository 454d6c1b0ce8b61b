/*
 * ph_engine.c -- the packet loop (see ph_engine.h).
 *
 * Two sides per packet:
 *   reading side:  reader -> decoder (checksums, fragments) -> ph_eslot
 *   table side:    ph_eslot -> flow table -> export queue
 * The flow table reads no packet bytes through a slot, only the fields the
 * decoder copied into ph_parsed (l4 is cleared), so decoding may run ahead.
 *
 * One thread (ph_engine_packet, small inputs, one CPU): read, decode and
 * update one packet at a time; once the table holds PH_PF_MIN_FLOWS flows
 * (more than the CPU caches keep), decode PH_AHEAD packets ahead and
 * prefetch their flows.
 *
 * Pipelined (ph_engine_run with PH_PIPE_AUTO, >= 2 CPUs and at least
 * PH_PIPE_MIN_BYTES buffered, e.g. an mmap'd file): a helper thread, started
 * and joined inside the call, runs the reading side -- where every capture
 * byte is first touched: page faults, checksums -- into a ring of
 * PH_RING_SIZE slots, while the calling thread runs the table side.
 *   - single producer, single consumer; the indices are published every
 *     PH_PUB slots with release/acquire atomics;
 *   - a side that has to wait spins briefly, yields, then sleeps on a
 *     condition variable (woken by the other side, 1 ms at the latest);
 *   - the table side, when it finds the ring empty, maps the next pages of
 *     the capture (MADV_POPULATE_READ, up to PH_POP_AHEAD ahead) so the
 *     reading side takes fewer page faults, and the reading side prefetches
 *     PH_RD_PREFETCH bytes ahead (prefetches only work on mapped pages);
 *     with a large table, the table side prefetches each packet's flow
 *     PH_PF_DIST slots ahead;
 *   - the reader, decoder and their counters (dctr) belong to the helper
 *     while it runs, the flow table, queue and counters[] to the caller;
 *   - when the batch size is reached the helper is told to stop, the slots
 *     it filled are still processed, and it is joined before ph_engine_run
 *     returns: between calls there is no thread, no pending packet and
 *     nothing shared;
 *   - if the two sides spent most of a call waiting for each other (a busy
 *     machine gives them one CPU between them), the next PH_PIPE_RETRY calls
 *     run in one thread.
 *
 * Either way the table sees the same packets in the same order as a plain
 * read-decode-update loop, so the output is identical; only the point where
 * a batch ends may move by the packets decoded ahead.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "ph_engine.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

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
    "tunnel_decapsulated",
    "tunnel_inner_dropped",
    "tunnel_too_deep",
    "tunnel_bad_header",
    "amsdu_subframes",
    "amsdu_subframes_dropped",
};

#define PH_FRAG_EXPIRE_EVERY_NS (1 * PH_NS_PER_SEC)

/* flows in the table from which prefetching them pays (12+ MiB of flows) */
#ifndef PH_PF_MIN_FLOWS
#define PH_PF_MIN_FLOWS 16384u
#endif
#define PH_MAX_SUBFRAMES 4096       /* A-MSDU subframes of one live frame (a 64 KiB frame has fewer) */
#define PH_AHEAD 16u                  /* one thread, large table: packets decoded ahead */

/* pipelined ph_engine_run (see the top of this file) */
#define PH_RING_SIZE 1024u            /* slots (a power of two): ~120 KiB */
#define PH_PUB 16u                    /* indices published every PH_PUB slots */
#define PH_PF_DIST 16u                /* flows prefetched this many slots ahead (the table
                                         prefetches the slot now, the flow 8 calls later) */
#define PH_RD_PREFETCH 8192u          /* capture bytes prefetched ahead of the reader */
#define PH_POP_CHUNK (256u << 10)     /* pages mapped ahead per step ... */
#define PH_POP_AHEAD (8u << 20)       /* ... up to this far ahead of the reader */
#define PH_PAGE 4096u
#define PH_DROP_CHUNK (4u << 20)      /* file mappings: page-table entries dropped per step ... */
#define PH_DROP_BEHIND (2u << 20)     /* ... once the reader is this far past the chunk */
#define PH_SPIN 1024                  /* pause instructions before a waiting side yields */
#define PH_PIPE_RETRY 3u              /* calls run in one thread after one where ... */
#define PH_PIPE_MAX_IDLE 0.7          /* ... the sides waited more than this share of the time */
#ifndef PH_PIPE_MIN_BYTES
#define PH_PIPE_MIN_BYTES (4u << 20)  /* PH_PIPE_AUTO: buffered bytes worth a thread */
#endif

/* A decoded packet between the two sides. */
struct ph_eslot {
    ph_parsed p;       /* valid when disp == PH_DEC_OK */
    int64_t ts;        /* packet time (advances the table's clock otherwise) */
    int disp;          /* PH_DEC_OK or the decoder's disposition (already counted) */
    int extra;         /* an A-MSDU subframe after the first: its table disposition is not counted */
    ph_pkey pk;        /* the flow key, when the table side built it ahead (prefetch); kind < 0: not */
};

/* ------------------------------------------------------------------ */
/* Export queue                                                        */
/* ------------------------------------------------------------------ */
/* The queue with room for ncap records (>= qlen); -1 if out of memory (the queue stays). */
static int queue_resize(ph_engine *e, size_t ncap)
{
    ph_flow_rec *nq = realloc(e->queue, ncap * sizeof *nq);
    if (!nq)
        return -1;
    e->queue = nq;
    e->qcap = ncap;
    return 0;
}

static int queue_grow(ph_engine *e, size_t ncap);

static ph_flow_rec *engine_emit(void *ctx)
{
    ph_engine *e = ctx;
    if (e->qlen == e->qcap && e->qhead) {
        /* Python took part of the queue: move the rest to the front */
        memmove(e->queue, e->queue + e->qhead, (e->qlen - e->qhead) * sizeof *e->queue);
        e->qlen -= e->qhead;
        e->qhead = 0;
    }
    if (e->qlen == e->qcap) {
        size_t ncap = e->qcap ? e->qcap * 2 : e->qfirst ? e->qfirst : 1024;
        if (queue_grow(e, ncap) < 0) {
            e->nomem = 1;  /* the record is lost; reported as PH_RUN_NOMEM */
            return NULL;
        }
    }
    return &e->queue[e->qlen++];
}

ph_flow_rec *ph_engine_detach(ph_engine *e, size_t *n, size_t *cap)
{
    *n = *cap = 0;
    if (!e->queue || e->qhead || !e->qlen)
        return NULL;
    ph_flow_rec *q = e->queue;
    *n = e->qlen;
    *cap = e->qcap;
    e->queue = NULL;
    e->qlen = e->qcap = 0;
    if (*n < *cap - *cap / 4) {
        /* mostly empty (the last batch of an input): whoever keeps it should
         * not keep the room too; shrinking is done in place */
        ph_flow_rec *shrunk = realloc(q, *n * sizeof *q);
        if (shrunk) {
            q = shrunk;
            *cap = *n;
        }
    }
    return q;
}

int ph_engine_reuse(ph_engine *e, ph_flow_rec *q, size_t cap)
{
    if (e->queue || !q || !cap)
        return 0;
    e->queue = q;
    e->qcap = cap;
    e->qhead = e->qlen = 0;
    return 1;
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                           */
/* ------------------------------------------------------------------ */
static int cpus_available(void)
{
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        return CPU_COUNT(&set);
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

ph_engine *ph_engine_new(const ph_decode_cfg *dcfg, const ph_flow_cfg *fcfg)
{
    ph_engine *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->dec = ph_decoder_new(dcfg, e->dctr);
    if (!e->dec)
        goto error;
    e->tab = ph_flowtab_new(fcfg, e->counters, engine_emit, e);
    if (!e->tab)
        goto error;
    e->ring = malloc(PH_RING_SIZE * sizeof *e->ring);
    if (!e->ring)
        goto error;
    ph_reader_init(&e->reader);
    e->last_ts = INT64_MIN;
    e->next_frag_expire = INT64_MIN;
    e->pipeline = PH_PIPE_AUTO;
    e->ncpu = cpus_available();
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
    free(e->ring);
    free(e->queue);
    free(e);
}

void ph_engine_begin_capture(ph_engine *e)
{
    ph_reader_init(&e->reader);
    memset(&e->err, 0, sizeof e->err);
    e->sub_pending = 0;
}

void ph_engine_feed(ph_engine *e, const uint8_t *buf, size_t len, int final)
{
    e->file_mapped = 0;
    ph_reader_feed(&e->reader, buf, len, final);
}

void ph_engine_feed_file(ph_engine *e, const uint8_t *buf, size_t len, int final)
{
    ph_reader_feed(&e->reader, buf, len, final);
    e->file_mapped = buf != NULL && ((uintptr_t)buf & (PH_PAGE - 1)) == 0;
    e->drop_next = (uintptr_t)buf;
}

size_t ph_engine_consumed(const ph_engine *e) { return ph_reader_consumed(&e->reader); }

uint64_t ph_engine_offset(const ph_engine *e) { return e->reader.base_offset + e->reader.pos; }

/* The reading side's counters join counters[] (the decoder may have moved
 * fragments from held to dropped: unsigned wrap-around adds up exactly). */
static void fold_counters(ph_engine *e)
{
    for (int i = 0; i < PH_C__COUNT; i++) {
        e->counters[i] += e->dctr[i];
        e->dctr[i] = 0;
    }
}

/* ------------------------------------------------------------------ */
/* The two sides                                                       */
/* ------------------------------------------------------------------ */
static inline void engine_time(ph_engine *e, int64_t ts)
{
    if (ts <= e->last_ts)
        return;
    e->last_ts = ts;
    if (ts >= e->next_frag_expire) {
        ph_decoder_expire(e->dec, ts);
        /* saturating: ph_engine_packet/advance take any time (the reader clamps its own) */
        e->next_frag_expire = ts > INT64_MAX - PH_FRAG_EXPIRE_EVERY_NS ? INT64_MAX : ts + PH_FRAG_EXPIRE_EVERY_NS;
    }
}

/* Reading side: decode one packet into *s. Returns the reader's PH_RD_*. */
/* A file mapping: drop the page-table entries of what the reader has left
 * PH_DROP_BEHIND behind (ph_engine_feed_file). The slots still queued hold no
 * pointer into the capture (the decoder copied what the table needs), and a
 * page touched again would simply be read back from the page cache. */
static void drop_behind(ph_engine *e)
{
    uintptr_t pos = (uintptr_t)e->reader.buf + e->reader.pos;
    while (pos - e->drop_next >= PH_DROP_CHUNK + PH_DROP_BEHIND) {
        madvise((void *)e->drop_next, PH_DROP_CHUNK, MADV_DONTNEED);
        e->drop_next += PH_DROP_CHUNK;
    }
}

/* The next subframe of the A-MSDU read last (one captured frame, several packets). */
static int read_subframe(ph_engine *e, ph_eslot *s)
{
    s->extra = 1;
    s->pk.kind = -1;
    s->disp = ph_decode_next(e->dec, &s->p);
    s->ts = s->p.ts_ns;
    e->dctr[s->disp == PH_DEC_OK ? PH_C_AMSDU_SUBFRAMES : PH_C_AMSDU_SUBFRAMES_DROPPED]++;
    e->sub_pending = s->disp == PH_DEC_OK && ph_decode_pending(e->dec);
    s->p.l4 = NULL;
    return PH_RD_PACKET;
}

static inline int read_one(ph_engine *e, ph_eslot *s)
{
    ph_pkt pkt;
    if (__builtin_expect(e->sub_pending, 0))
        return read_subframe(e, s);
    pkt.mirror_id = 0;   /* capture files carry no mirroring session (the reader leaves it) */
    int rc = ph_reader_next(&e->reader, &pkt, &e->err);
    if (rc != PH_RD_PACKET)
        return rc;
    if (e->file_mapped && (uintptr_t)e->reader.buf + e->reader.pos - e->drop_next >= PH_DROP_CHUNK + PH_DROP_BEHIND)
        drop_behind(e);
    e->dctr[PH_C_PACKETS_READ]++;
    e->dctr[PH_C_BYTES_READ] += pkt.caplen;
    engine_time(e, pkt.ts_ns);
    s->ts = pkt.ts_ns;
    s->extra = 0;
    s->pk.kind = -1;
    s->disp = ph_decode(e->dec, &pkt, &s->p);
    if (s->disp != PH_DEC_OK)
        e->dctr[s->disp]++;
    if (__builtin_expect(s->p.amsdu, 0))
        e->sub_pending = ph_decode_pending(e->dec);
    s->p.l4 = NULL;   /* may point into a buffer the decoder reuses before the slot is consumed */
    return PH_RD_PACKET;
}

/* Table side: one slot. */
static inline void table_one(ph_engine *e, const ph_eslot *s)
{
    if (s->disp == PH_DEC_OK) {
        int d = ph_flowtab_packet(e->tab, &s->p, &s->pk);
        if (!s->extra)
            e->counters[d]++;
    } else
        ph_flowtab_advance(e->tab, s->ts);
}

static int run_status(int rd)
{
    switch (rd) {
    case PH_RD_NEED_MORE: return PH_RUN_NEED_MORE;
    case PH_RD_EOF: return PH_RUN_EOF;
    case PH_RD_PACKET: return PH_RUN_YIELD;   /* stopped at max_packets */
    default: return PH_RUN_ERROR;
    }
}

/* ------------------------------------------------------------------ */
/* One thread                                                          */
/* ------------------------------------------------------------------ */
/* With a large table (flows no longer in the CPU caches), decode PH_AHEAD
 * packets ahead and prefetch their flows: the misses of several packets then
 * overlap. A full batch ends production; the packets decoded are processed. */
static int run_ahead(ph_engine *e, size_t batch, uint64_t max_packets)
{
    ph_eslot ring[2 * PH_AHEAD];
    uint32_t head = 0, tail = 0;
    uint64_t produced = 0;
    int rd = PH_RD_PACKET, full = 0;
    for (;;) {
        while (rd == PH_RD_PACKET && !full && tail - head < PH_AHEAD && produced < max_packets) {
            ph_eslot *s = &ring[tail % (2 * PH_AHEAD)];
            rd = read_one(e, s);
            if (rd != PH_RD_PACKET)
                break;
            produced++;
            tail++;
            if (s->disp == PH_DEC_OK)
                ph_flowtab_prefetch(e->tab, &s->p, &s->pk);
        }
        if (head == tail)
            break;
        table_one(e, &ring[head++ % (2 * PH_AHEAD)]);
        if (e->nomem)
            break;
        if (ph_engine_queued(e) >= batch)
            full = 1;
    }
    fold_counters(e);
    if (e->nomem)
        return PH_RUN_NOMEM;
    return full ? PH_RUN_BATCH : run_status(rd);
}

static int run_inline(ph_engine *e, size_t batch, uint64_t max_packets)
{
    if (ph_flowtab_active(e->tab) >= PH_PF_MIN_FLOWS)
        return run_ahead(e, batch, max_packets);
    ph_eslot s;
    int rd = PH_RD_PACKET, full = 0;
    for (uint64_t n = 0; n < max_packets; n++) {
        rd = read_one(e, &s);
        if (rd != PH_RD_PACKET)
            break;
        table_one(e, &s);
        if (e->nomem)
            break;
        if (ph_engine_queued(e) >= batch) {
            full = 1;
            break;
        }
    }
    fold_counters(e);
    if (e->nomem)
        return PH_RUN_NOMEM;
    return full ? PH_RUN_BATCH : run_status(rd);
}

/* ------------------------------------------------------------------ */
/* Pipelined                                                           */
/* ------------------------------------------------------------------ */
typedef struct ph_pipe {
    ph_engine *e;
    uint64_t max_packets;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* written by the reading side */
    _Alignas(64) uint32_t tail;      /* slots filled */
    uint32_t done;                   /* the reading side has stopped; rd is final */
    int rd;                          /* its last PH_RD_* */
    uint32_t rwait;                  /* it sleeps, waiting for free slots */
    double rwaited;                  /* seconds it waited */
    uintptr_t rpos;                  /* address of the next capture byte it reads */
    uint32_t ids_busy;               /* it is completing records (queue_grow waits) */
    size_t ids_next;                 /* records before this one have their ids */
    uint64_t ids_done;               /* records it completed */
    /* page-table population ahead of the reading side (either side) */
    _Alignas(64) uintptr_t pop_next; /* next address to populate */
    uintptr_t pop_end;               /* end of the buffer, rounded up to a page */
    /* written by the table side */
    _Alignas(64) uint32_t head;      /* slots consumed */
    uint32_t stop;                   /* ask the reading side to stop */
    uint32_t twait;                  /* it sleeps, waiting for slots */
    double twaited;                  /* seconds it waited */
    size_t qdone;                    /* records [0, qdone) of the queue are written (but for deferred ids) */
    ph_flow_rec *qbase;              /* the queue (moves when it grows) */
    uint32_t qmoving;                /* the queue is about to move: the reading side keeps off */
} ph_pipe;

static double wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void pipe_wait_slow(ph_pipe *q, uint32_t *flag, int (*ready)(ph_pipe *, uint32_t), uint32_t arg)
{
    for (int i = 0; i < PH_SPIN; i++) {
        if (ready(q, arg))
            return;
        cpu_relax();
    }
    for (int i = 0; i < 8; i++) {
        if (ready(q, arg))
            return;
        sched_yield();
    }
    pthread_mutex_lock(&q->mu);
    __atomic_store_n(flag, 1, __ATOMIC_SEQ_CST);
    while (!ready(q, arg)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 1000000;   /* 1 ms: a safety net, wake-ups come earlier */
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&q->cv, &q->mu, &ts);
    }
    __atomic_store_n(flag, 0, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&q->mu);
}

/* Wait until ready(q, arg) holds: spin, yield, then sleep with *flag set
 * (the other side signals after publishing when it sees the flag). The
 * time spent is added to *waited. */
static void pipe_wait(ph_pipe *q, uint32_t *flag, int (*ready)(ph_pipe *, uint32_t), uint32_t arg, double *waited)
{
    if (ready(q, arg))
        return;
    double t0 = wall_clock();
    pipe_wait_slow(q, flag, ready, arg);
    *waited += wall_clock() - t0;
}

static void pipe_wake(ph_pipe *q, uint32_t *flag)
{
    if (__atomic_load_n(flag, __ATOMIC_SEQ_CST)) {
        pthread_mutex_lock(&q->mu);
        pthread_cond_signal(&q->cv);
        pthread_mutex_unlock(&q->mu);
    }
}

static int has_room(ph_pipe *q, uint32_t tail)
{
    return tail - __atomic_load_n(&q->head, __ATOMIC_SEQ_CST) < PH_RING_SIZE ||
           __atomic_load_n(&q->stop, __ATOMIC_SEQ_CST);
}

/* Map the next chunk of the capture ahead of the reading side (the page
 * faults it would take otherwise). Returns 0 when there is nothing to do. */
static int populate_step(ph_pipe *q)
{
#ifdef MADV_POPULATE_READ
    uintptr_t next = __atomic_load_n(&q->pop_next, __ATOMIC_RELAXED);
    if (next >= q->pop_end || next > __atomic_load_n(&q->rpos, __ATOMIC_RELAXED) + PH_POP_AHEAD)
        return 0;
    uintptr_t a = __atomic_fetch_add(&q->pop_next, PH_POP_CHUNK, __ATOMIC_RELAXED);
    if (a >= q->pop_end)
        return 0;
    size_t n = q->pop_end - a < PH_POP_CHUNK ? q->pop_end - a : PH_POP_CHUNK;
    if (madvise((void *)a, n, MADV_POPULATE_READ) != 0 && errno == EINVAL)
        __atomic_store_n(&q->pop_next, q->pop_end, __ATOMIC_RELAXED);   /* not supported: stop */
    return 1;
#else
    (void)q;
    return 0;
#endif
}

static int has_data(ph_pipe *q, uint32_t head)
{
    return __atomic_load_n(&q->tail, __ATOMIC_SEQ_CST) != head || __atomic_load_n(&q->done, __ATOMIC_SEQ_CST);
}

/* Deferred record ids (ph_flowtab_defer_ids). In a pipelined call the table
 * exports records without their ids, and whenever the reading side waits
 * for free slots -- the table side is the slower one, most of all under a
 * flood of one-packet flows, where each packet exports a flow -- it computes
 * them (the Community ID's SHA-1 and base64, the flow id) for the records
 * written so far. The queue is the table side's: the reading side touches a record only
 * after the table side published it as written (qdone), and only the id
 * fields of records the table side no longer touches; when the queue must
 * grow (move), the table side raises qmoving and waits until the reading
 * side is out (ids_busy), a handshake of sequentially consistent stores and
 * loads. What is left when the call ends, the table side completes after the
 * join. */
#define PH_IDS_CHUNK 8u

/* Complete the records of [from, to) exported with deferred ids; returns how many. */
static uint64_t ids_complete(const ph_flowtab *t, ph_flow_rec *base, size_t from, size_t to)
{
    uint64_t n = 0;
    for (size_t i = from; i < to; i++)
        if (ph_rec_ids_pending(&base[i])) {
            ph_rec_ids(t, &base[i]);
            n++;
        }
    return n;
}

static int ids_step(ph_pipe *q)
{
    int did = 0;
    __atomic_store_n(&q->ids_busy, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&q->qmoving, __ATOMIC_SEQ_CST)) {
        ph_flow_rec *base = __atomic_load_n(&q->qbase, __ATOMIC_ACQUIRE);
        size_t done = __atomic_load_n(&q->qdone, __ATOMIC_ACQUIRE), i = q->ids_next;
        size_t end = done - i > PH_IDS_CHUNK ? i + PH_IDS_CHUNK : done;
        q->ids_done += ids_complete(q->e->tab, base, i, end);
        did = end > i;
        q->ids_next = end;
    }
    __atomic_store_n(&q->ids_busy, 0, __ATOMIC_SEQ_CST);
    return did;
}

static int queue_grow(ph_engine *e, size_t ncap)
{
    ph_pipe *q = e->pipe;
    if (!q)
        return queue_resize(e, ncap);
    __atomic_store_n(&q->qmoving, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&q->ids_busy, __ATOMIC_SEQ_CST))
        cpu_relax();
    int rc = queue_resize(e, ncap);
    __atomic_store_n(&q->qbase, e->queue, __ATOMIC_RELEASE);
    __atomic_store_n(&q->qmoving, 0, __ATOMIC_SEQ_CST);
    return rc;
}

static void *reading_side(void *arg)
{
    ph_pipe *q = arg;
    ph_engine *e = q->e;
    uint32_t tail = 0, head = 0;
    uint64_t produced = 0;
    uintptr_t pf = 0;
    int rd = PH_RD_PACKET;
    while (produced < q->max_packets) {
        if (tail - head == PH_RING_SIZE) {
            head = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
            if (tail - head == PH_RING_SIZE) {
                __atomic_store_n(&q->tail, tail, __ATOMIC_SEQ_CST);
                pipe_wake(q, &q->twait);
                while (!has_room(q, tail) && ids_step(q))
                    ;
                pipe_wait(q, &q->rwait, has_room, tail, &q->rwaited);
                head = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
            }
        }
        if (__atomic_load_n(&q->stop, __ATOMIC_RELAXED))
            break;
        rd = read_one(e, &e->ring[tail & (PH_RING_SIZE - 1)]);
        if (rd != PH_RD_PACKET)
            break;
        produced++;
        {   /* prefetch ahead; the bytes right behind a page fault come in time */
            uintptr_t end = (uintptr_t)e->reader.buf + e->reader.pos + PH_RD_PREFETCH;
            if (end > q->pop_end)
                end = q->pop_end;
            if (pf < (uintptr_t)e->reader.buf + e->reader.pos)
                pf = ((uintptr_t)e->reader.buf + e->reader.pos) & ~(uintptr_t)63;
            for (; pf < end; pf += 64)
                __builtin_prefetch((const void *)pf);
        }
        if (++tail % PH_PUB == 0) {
            __atomic_store_n(&q->rpos, (uintptr_t)e->reader.buf + e->reader.pos, __ATOMIC_RELAXED);
            __atomic_store_n(&q->tail, tail, __ATOMIC_SEQ_CST);
            pipe_wake(q, &q->twait);
        }
    }
    q->rd = rd;
    __atomic_store_n(&q->tail, tail, __ATOMIC_SEQ_CST);
    __atomic_store_n(&q->done, 1, __ATOMIC_SEQ_CST);
    pipe_wake(q, &q->twait);
    return NULL;
}

/* Returns 1 and the run status in *rc, or 0 if no thread could be started. */
static int run_pipelined(ph_engine *e, size_t batch, uint64_t max_packets, int *rc)
{
    ph_pipe *q = aligned_alloc(64, (sizeof *q + 63) & ~(size_t)63);
    if (!q)
        return 0;
    memset(q, 0, sizeof *q);
    q->e = e;
    q->max_packets = max_packets;
    q->rpos = (uintptr_t)e->reader.buf + e->reader.pos;
    q->pop_next = q->rpos & ~(uintptr_t)4095;
    q->pop_end = ((uintptr_t)e->reader.buf + e->reader.len + 4095) & ~(uintptr_t)4095;
    q->qbase = e->queue;
    q->qdone = q->ids_next = e->qlen;
    double w0 = wall_clock();
    if (pthread_mutex_init(&q->mu, NULL)) {
        free(q);
        return 0;
    }
    if (pthread_cond_init(&q->cv, NULL)) {
        pthread_mutex_destroy(&q->mu);
        free(q);
        return 0;
    }
    /* the helper blocks every signal: they go to the caller (Python's thread) */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&q->thread, NULL, reading_side, q);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        pthread_cond_destroy(&q->cv);
        pthread_mutex_destroy(&q->mu);
        free(q);
        return 0;
    }

    /* ids are deferred unless Python took part of the queue (records would
     * move to its front) */
    if (!e->qhead) {
        e->pipe = q;
        ph_flowtab_defer_ids(e->tab, 1);
    }
    ph_eslot *ring = e->ring;
    uint32_t head = 0, tail = 0;
    int full = 0, big = 0;
    for (;;) {
        if (head == tail) {
            tail = __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE);
            if (head == tail) {
                if (__atomic_load_n(&q->done, __ATOMIC_ACQUIRE)) {
                    tail = __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE);
                    if (head == tail)
                        break;
                } else {
                    __atomic_store_n(&q->head, head, __ATOMIC_SEQ_CST);
                    pipe_wake(q, &q->rwait);
                    if (!populate_step(q))   /* idle: map pages for the reading side */
                        pipe_wait(q, &q->twait, has_data, head, &q->twaited);
                }
                continue;
            }
        }
        if (head % PH_RING_SIZE == 0)
            big = ph_flowtab_active(e->tab) >= PH_PF_MIN_FLOWS;
        if (big && tail - head > PH_PF_DIST) {
            ph_eslot *ahead = &ring[(head + PH_PF_DIST) & (PH_RING_SIZE - 1)];
            if (ahead->disp == PH_DEC_OK)   /* the slot is the table side's until head passes it */
                ph_flowtab_prefetch(e->tab, &ahead->p, &ahead->pk);
        }
        if (!e->nomem)
            table_one(e, &ring[head & (PH_RING_SIZE - 1)]);
        if (e->pipe)
            __atomic_store_n(&q->qdone, e->qlen, __ATOMIC_RELEASE);
        if (++head % PH_PUB == 0) {
            __atomic_store_n(&q->head, head, __ATOMIC_SEQ_CST);
            pipe_wake(q, &q->rwait);
        }
        if (!full && (e->nomem || ph_engine_queued(e) >= batch)) {
            full = 1;   /* stop reading; what was read is still processed */
            __atomic_store_n(&q->stop, 1, __ATOMIC_SEQ_CST);
            pipe_wake(q, &q->rwait);
        }
    }
    pthread_join(q->thread, NULL);
    if (e->pipe) {
        ph_flowtab_defer_ids(e->tab, 0);
        e->pipe = NULL;
        ids_complete(e->tab, e->queue, q->ids_next, e->qlen);
        e->ids_deferred += q->ids_done;
    }
    int rd = q->rd;
    /* Did the two sides work at the same time? On a busy machine they may
     * get one CPU between them, each waiting while the other runs; then
     * run in one thread for a while before trying again. */
    double wall = wall_clock() - w0;
    if (wall > 0.005 && q->rwaited + q->twaited > PH_PIPE_MAX_IDLE * wall)
        e->pipe_skip = PH_PIPE_RETRY;
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
    fold_counters(e);
    if (e->nomem)
        *rc = PH_RUN_NOMEM;
    else
        *rc = full ? PH_RUN_BATCH : run_status(rd);
    return 1;
}

/* ------------------------------------------------------------------ */
/* Entry points                                                        */
/* ------------------------------------------------------------------ */
int ph_engine_run(ph_engine *e, size_t batch, uint64_t max_packets)
{
    int rc;
    /* a new queue holds the batch and what the packets in flight may add */
    e->qfirst = batch < (1u << 20) ? batch + batch / 4 + PH_RING_SIZE : (1u << 20);
    if (e->pipe_skip)
        e->pipe_skip--;
    else if (e->pipeline != PH_PIPE_OFF && e->ncpu >= 2 && max_packets >= 2 * PH_RING_SIZE &&
        (e->pipeline == PH_PIPE_ON || e->reader.len - e->reader.pos >= PH_PIPE_MIN_BYTES) &&
        run_pipelined(e, batch, max_packets, &rc))
        return rc;
    return run_inline(e, batch, max_packets);
}

int ph_engine_packet(ph_engine *e, const ph_pkt *pkt)
{
    ph_eslot s;
    e->dctr[PH_C_PACKETS_READ]++;
    e->dctr[PH_C_BYTES_READ] += pkt->caplen;
    engine_time(e, pkt->ts_ns);
    s.ts = pkt->ts_ns;
    s.extra = 0;
    s.pk.kind = -1;
    s.disp = ph_decode(e->dec, pkt, &s.p);
    if (s.disp != PH_DEC_OK)
        e->dctr[s.disp]++;
    e->sub_pending = s.p.amsdu && ph_decode_pending(e->dec);
    table_one(e, &s);
    /* the frame's further A-MSDU subframes (its data is valid during this call) */
    for (int n = 0; e->sub_pending && !e->nomem && n < PH_MAX_SUBFRAMES; n++) {
        read_subframe(e, &s);
        table_one(e, &s);
    }
    e->sub_pending = 0;
    fold_counters(e);
    return e->nomem ? PH_RUN_NOMEM : 0;
}

void ph_engine_advance(ph_engine *e, int64_t now_ns)
{
    engine_time(e, now_ns);
    ph_flowtab_advance(e->tab, now_ns);
    fold_counters(e);
}

void ph_engine_finish(ph_engine *e, int reason)
{
    ph_engine_finish_step(e, reason, 0);
}

size_t ph_engine_finish_step(ph_engine *e, int reason, size_t max)
{
    ph_decoder_flush(e->dec);   /* fragments still held (nothing the second time) */
    /* room for this step at once (one allocation instead of doublings; if it
     * fails, the queue grows as usual) */
    size_t n = ph_flowtab_active(e->tab);
    size_t want = e->qlen + (max && max < n ? max : n);
    if (want > e->qcap)
        (void)queue_resize(e, want);
    size_t left = ph_flowtab_flush_step(e->tab, reason, max);
    fold_counters(e);
    return left;
}
