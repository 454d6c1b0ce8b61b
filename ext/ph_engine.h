/*
 * ph_engine.h -- the packet loop: capture reader -> decoder -> flow table ->
 * export queue. Everything per packet happens here, in C, without the GIL;
 * Python sees flow records in batches (ph_engine_queue / ph_engine_clear).
 *
 * On a machine with two or more CPUs and a large buffered input (an mmap'd
 * file), ph_engine_run reads and decodes in a helper thread that lives only
 * inside the call, while the calling thread updates the flow table (see
 * ph_engine.c). Either way the flow table sees exactly the same packets in
 * the same order: the output is the same.
 */
#ifndef PH_ENGINE_H
#define PH_ENGINE_H

#include "ph_types.h"
#include "ph_capture.h"
#include "ph_decode.h"
#include "ph_flow.h"

#define PH_RUN_YIELD     2   /* max_packets processed (lets the caller report progress) */
#define PH_RUN_BATCH     1   /* export queue reached the batch size */
#define PH_RUN_NEED_MORE 0   /* reader needs more bytes (streaming input) */
#define PH_RUN_EOF      (-1) /* final buffer fully read */
#define PH_RUN_ERROR    (-2) /* corrupt capture: ph_engine_error() */
#define PH_RUN_NOMEM    (-3) /* out of memory growing the export queue */

/* Pipeline switch (ph_engine.pipeline; set it between calls). */
#define PH_PIPE_OFF  0       /* one thread */
#define PH_PIPE_AUTO 1       /* helper thread with >= 2 CPUs and >= 4 MiB buffered (default) */
#define PH_PIPE_ON   2       /* helper thread with >= 2 CPUs, any input (tests) */

typedef struct ph_eslot ph_eslot;

typedef struct ph_engine {
    uint64_t counters[PH_C__COUNT];
    ph_reader reader;
    ph_decoder *dec;
    ph_flowtab *tab;
    ph_flow_rec *queue;      /* exported records waiting for Python */
    size_t qhead, qlen, qcap;   /* records [qhead, qlen) are queued */
    size_t qfirst;           /* capacity of a new queue: the batch size of the last run and some room */
    int nomem;
    int pipeline;            /* PH_PIPE_* (default PH_PIPE_AUTO) */
    int ncpu;                /* CPUs this process may run on */
    unsigned pipe_skip;      /* calls left to run in one thread (the sides did not overlap) */
    int64_t last_ts;         /* newest packet time seen */
    int64_t next_frag_expire;
    /* The buffer is a read-only mapping of a file (ph_engine_feed_file): the
     * reading side drops the page-table entries of what it has read (the data
     * stays in the page cache), so that the process does not keep the whole
     * file mapped and the final munmap has little left to tear down. */
    int file_mapped;
    uintptr_t drop_next;     /* first address not yet dropped */
    int sub_pending;         /* the frame read last has A-MSDU subframes left (ph_decode_next) */
    ph_error err;
    /* the reading side's counters (reader, decoder): added into counters[]
     * whenever a call returns, so each side writes only its own array */
    uint64_t dctr[PH_C__COUNT];
    ph_eslot *ring;          /* decoded packets waiting for the flow table (pipelined) */
    struct ph_pipe *pipe;    /* the pipelined call under way (ph_engine.c), else NULL */
    uint64_t ids_deferred;   /* records whose ids the reading side computed (diagnostic) */
} ph_engine;

extern const char *const ph_counter_names[PH_C__COUNT];

ph_engine *ph_engine_new(const ph_decode_cfg *dcfg, const ph_flow_cfg *fcfg);
void ph_engine_free(ph_engine *e);

/* Start reading a new capture (keeps the flow table: several files are one stream). */
void ph_engine_begin_capture(ph_engine *e);
void ph_engine_feed(ph_engine *e, const uint8_t *buf, size_t len, int final);
/* The same for a buffer that is a whole read-only, shared mapping of a file
 * (page-aligned): pages already read may be dropped from the mapping (they are
 * read again from the file if touched), never a byte of anything else. */
void ph_engine_feed_file(ph_engine *e, const uint8_t *buf, size_t len, int final);
size_t ph_engine_consumed(const ph_engine *e);
/* Absolute byte offset of the reader in the current capture. */
uint64_t ph_engine_offset(const ph_engine *e);

/* Process packets until the export queue holds >= batch records, max_packets
 * were read, or the input stops; returns PH_RUN_*. Pipelined, the packets
 * already decoded when the batch size is reached are processed too (at most
 * 1024), so the queue may hold a few more records than batch; no packet is
 * left half-processed between calls. */
int ph_engine_run(ph_engine *e, size_t batch, uint64_t max_packets);
/* Process one packet (live capture). Returns 0, or PH_RUN_NOMEM. */
int ph_engine_packet(ph_engine *e, const ph_pkt *pkt);
/* Run timers up to now_ns (live capture: wall clock when idle). */
void ph_engine_advance(ph_engine *e, int64_t now_ns);
/* End of input: drop incomplete fragments, export every open flow. */
void ph_engine_finish(ph_engine *e, int reason);
/* The same in steps of at most max records (0 = all): returns how many open
 * flows are left to export (0 = done). Records go to the queue as usual; take
 * them between steps. A run, packet or advance call ends a flush under way. */
size_t ph_engine_finish_step(ph_engine *e, int reason, size_t max);

/* Export queue access: records [qhead, qlen) wait for Python; the pointer is
 * valid until the next call that may export (run, packet, advance, finish). */
static inline size_t ph_engine_queued(const ph_engine *e) { return e->qlen - e->qhead; }
static inline const ph_flow_rec *ph_engine_queue(const ph_engine *e, size_t *n)
{
    *n = e->qlen - e->qhead;
    return e->queue ? e->queue + e->qhead : NULL;   /* no queue before the first record */
}
/* Hand the whole queue over without copying: returns the records (the caller
 * frees them with free()) and sets *n, or NULL (*n = 0) when there is nothing
 * to hand over whole (no records, or some were taken already); *cap is its
 * room in records. The next export starts a new queue, sized for the batch,
 * unless one comes back first (ph_engine_reuse). */
ph_flow_rec *ph_engine_detach(ph_engine *e, size_t *n, size_t *cap);
/* A queue handed over earlier, back for reuse (room for cap records): kept
 * (returns 1) when the engine has no queue, else left to the caller (0). */
int ph_engine_reuse(ph_engine *e, ph_flow_rec *q, size_t cap);
/* The first n queued records were taken (n <= ph_engine_queued). */
static inline void ph_engine_consume(ph_engine *e, size_t n)
{
    e->qhead += n;
    if (e->qhead >= e->qlen)
        e->qhead = e->qlen = 0;
}
static inline void ph_engine_clear(ph_engine *e) { e->qhead = e->qlen = 0; }

#endif /* PH_ENGINE_H */
