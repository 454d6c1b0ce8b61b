/*
 * ph_flow_int.h -- internals of the flow table, shared by ph_flow*.c only.
 *
 *   ph_flow.c         table, memory, flow creation, packet dispatch, public API
 *   ph_flow_timer.c   timer heap, inactivity wheel, timer dispatch, eviction victim
 *   ph_flow_tcp.c     Zeek's TCP analyzer semantics (endpoint state machine,
 *                     sequence tracking, history, content gaps, close timers)
 *   ph_flow_export.c  flow -> ph_flow_rec (conn_state, sizes, features, IDs)
 *   ph_stats.h        feature accumulators
 *
 * Direction index d: 0 = originator, 1 = responder (current roles; a role
 * flip swaps every per-direction member).
 */
#ifndef PH_FLOW_INT_H
#define PH_FLOW_INT_H

#include "ph_flow.h"
#include "ph_stats.h"

/* ------------------------------------------------------------------ */
/* Constants                                                           */
/* ------------------------------------------------------------------ */
#define PH_NO_TIME INT64_MAX          /* unset timer */
#define PH_HIST_MAX 39                /* history letters kept (ph_flow_rec.history is 40 incl. NUL) */
#define PH_HIST_BYTES 25              /* ... as 5-bit codes (ph_hist_code) */
#define PH_OOO_MAX 3                  /* out-of-order ranges kept in the flow per TCP direction */
#define PH_OOO_BIG 16                 /* ranges of an extension block (more holes open at once) */
#ifndef PH_OOO_POOL_MAX
#define PH_OOO_POOL_MAX 65535u        /* extension blocks per table: at most 8 MiB */
#endif
#define PH_OOO_POOL_CHUNK 256u        /* extension blocks are allocated 256 at a time */
#ifndef PH_GEN_SLOTS
#define PH_GEN_SLOTS 1024u            /* same-tick removals remembered for flow ids (ph_flow_export.c) */
#endif
#define PH_PF_LAG 8                   /* ph_flowtab_prefetch: slot first, the flow PH_PF_LAG calls later, */
#define PH_PF_LAG2 4                  /* its TCP/UDP state PH_PF_LAG2 calls after that */
#define PH_CHUNK_SHIFT 10             /* flows are allocated in chunks of 1024 */
#define PH_CHUNK (1u << PH_CHUNK_SHIFT)
#define PH_SLOTS_INITIAL 4096         /* the slot array grows from here */

/* Zeek TCP constants (TCPSessionAdapter.cc, init-bare.zeek) */
#define PH_TOO_LARGE_SEQ_DELTA 1048576
#define PH_TCP_MAX_INITIAL_WINDOW 16384          /* tcp_max_initial_window */
#define PH_TCP_MAX_ABOVE_HOLE 16384              /* tcp_max_above_hole_without_any_acks */
#define PH_TCP_EXCESSIVE_DATA (10u * 1024 * 1024)  /* tcp_excessive_data_without_further_acks */

/* flow kinds (0 = free slot) */
enum { PH_K_FREE = 0, PH_K_TCP, PH_K_UDP, PH_K_ICMP, PH_K_OTHER };

/* inactivity classes */
enum { PH_TMO_UDP = 0, PH_TMO_TCP, PH_TMO_LONG, PH_TMO_ICMP, PH_TMO_OTHER, PH_TMO_N };

/* per-flow timers kept in the heap (Zeek analyzer timers, plus interim updates) */
enum { PH_TM_EXPIRE1 = 0, PH_TM_EXPIRE2, PH_TM_ATTEMPT, PH_TM_DELETE, PH_TM_UPDATE, PH_TM_DNS, PH_TM_N };

/* Zeek TCP endpoint states (script enum values) */
enum { PH_TCPS_INACTIVE = 0, PH_TCPS_SYN_SENT, PH_TCPS_SYN_ACK_SENT, PH_TCPS_PARTIAL,
       PH_TCPS_ESTABLISHED, PH_TCPS_CLOSED, PH_TCPS_RESET };

/* scaled (logarithmic) history entries: C G T W */
enum { PH_SH_C = 0, PH_SH_G, PH_SH_T, PH_SH_W };

/* ph_tcp_ep.epf bits */
#define PH_EP_DID_CLOSE 0x01
#define PH_EP_FIN       0x02   /* FIN_cnt > 0 */
#define PH_EP_EOF       0x04   /* reassembler did_EOF */
#define PH_EP_SKIP      0x08   /* reassembler skip_deliveries */

/* ph_flow.cf bits */
#define PH_CF_MAC        0x0001
#define PH_CF_FLIPPED    0x0002
#define PH_CF_ACTIVE     0x0004   /* TCPSessionAdapter::is_active */
#define PH_CF_PARTIAL    0x0008   /* is_partial */
#define PH_CF_DEFERRED   0x0010   /* close_deferred */
#define PH_CF_DEF_GEN    0x0020   /* deferred_gen_event */
#define PH_CF_FPS_ORIG   0x0040   /* first_packet_seen & ORIG */
#define PH_CF_FPS_RESP   0x0080   /* first_packet_seen & RESP */
#define PH_CF_EXPREL     0x0100   /* TCP expire checks can act: their timers are in the heap */
#define PH_CF_TUNX       0x0200   /* history 'X' written: too many tunnel changes */
#define PH_CF_LANE       0x0400   /* its timers are in a lane (ph_flow_timer.c), not in the heap */

#define PH_TUN_PARENTS 4          /* tunnel parents kept per flow (Zeek's limit of changes keeps it small) */
#define PH_TUN_CHUNK 1024u        /* tunnel records are allocated 1024 at a time */

/* history "seen" masks (TCP_Endpoint::HistoryMasks; responder = << 16) */
#define PH_HIST_SYN  0x01
#define PH_HIST_FIN  0x02
#define PH_HIST_RST  0x04
#define PH_HIST_FINRST 0x08
#define PH_HIST_DATA 0x10
#define PH_HIST_ACK  0x20
#define PH_HIST_MULTI 0x40

/* ------------------------------------------------------------------ */
/* Flow state                                                          */
/* ------------------------------------------------------------------ */

/* The table key: canonically ordered endpoints, as seven 64-bit words built in
 * registers (never re-read through narrower stores):
 *   w[0..1] address a (16 bytes as in the packet; IPv4 in the first 4)
 *   w[2..3] address b
 *   w[4]    port a | port b << 16 | VLAN << 32 | inner VLAN << 48
 *   w[5]    proto | IP version << 8 | one-way << 16 | hash << 32
 *   w[6]    tunnel context ph_parsed.ctx (mirroring session), 0 for most flows
 * The hash is part of w[5] (equal keys have equal hashes). */
typedef struct ph_fkey {
    uint64_t w[7];
} ph_fkey;

static inline const uint8_t *ph_key_a(const ph_fkey *k) { return (const uint8_t *)&k->w[0]; }
static inline const uint8_t *ph_key_b(const ph_fkey *k) { return (const uint8_t *)&k->w[2]; }
static inline uint16_t ph_key_pa(const ph_fkey *k) { return (uint16_t)k->w[4]; }
static inline uint16_t ph_key_pb(const ph_fkey *k) { return (uint16_t)(k->w[4] >> 16); }
static inline uint8_t ph_key_proto(const ph_fkey *k) { return (uint8_t)k->w[5]; }
static inline uint8_t ph_key_ipver(const ph_fkey *k) { return (uint8_t)(k->w[5] >> 8); }
static inline uint32_t ph_key_hash(const ph_fkey *k) { return (uint32_t)(k->w[5] >> 32); }

/* One TCP endpoint: TCP_Endpoint's sequence state plus its reassembler's
 * bookkeeping (which ranges of its data were seen; no payload is kept).
 * What most endpoints never need (scaled history counters, out-of-order
 * ranges) is in a ph_tcp_cold record, made on first use. */
typedef struct ph_tcp_ep {
    uint64_t fin_seq;        /* relative seq just past the FIN (FIN_seq) */
    uint64_t r_last;         /* last_reassem_seq: delivered (contiguous) up to */
    uint64_t r_trim;         /* trim_seq: acked/trimmed up to */
    uint64_t r_top;          /* highest block end inserted since the last clear */
    uint32_t start;          /* start_seq (int64 in Zeek, but always a 32-bit value) */
    uint32_t last_seq, ack_seq;
    uint32_t hist_last[3];   /* low 32 bits of the relative seq of the last SYN, FIN, RST */
    uint16_t seq_wraps, ack_wraps;  /* 2^48 bytes per direction before these wrap */
    uint8_t state, prev_state;
    uint8_t epf;             /* PH_EP_* */
    uint8_t wscale;
    uint8_t n_ooo;           /* out-of-order ranges (in the cold record or its extension block) */
    uint32_t cx;             /* cold record (ph_tcp_cold index + 1), 0 = none yet */
} ph_tcp_ep;

/* The rarely needed part of a TCP endpoint, from the table's cold pool: made
 * at the endpoint's first scaled history event (bad checksum, content gap,
 * retransmission, zero window) or first out-of-order range, kept until the
 * flow ends. */
typedef struct ph_tcp_cold {
    uint32_t ooo[PH_OOO_MAX][2];  /* received ranges above r_last, as offsets from r_last */
    uint32_t shc[4];         /* scaled history counters C G T W */
    uint16_t shx;            /* their thresholds: 4-bit powers of ten */
    uint16_t xooo;           /* extension block of out-of-order ranges (index + 1, 0 = ooo[] above) */
} ph_tcp_cold;

/* Out-of-order ranges of an endpoint with more than PH_OOO_MAX holes open. */
typedef struct ph_ooo_blk {
    uint32_t r[PH_OOO_BIG][2];
} ph_ooo_blk;

/* TCP state of a flow (PH_K_TCP only), out of line in the table's TCP pool. */
typedef struct ph_tcp_st {
    ph_tcp_ep ep[2];
    int64_t tm[PH_TM_UPDATE];  /* PH_TM_EXPIRE1 .. PH_TM_DELETE; PH_NO_TIME = unset */
    uint64_t missed;           /* missed_bytes (content gaps) */
    uint16_t tcpf[2][8];       /* per direction: packets with FIN SYN RST PSH ACK URG ECE CWR (bit order), */
    uint32_t wx;               /* ... until one reaches 65,535: then all are in ph_tcp_wide wx - 1 (0 = none) */
} ph_tcp_st;

/* The flag counters of a TCP flow with 65,535 packets of one flag in a
 * direction, from the table's wide pool. */
typedef struct ph_tcp_wide {
    uint32_t tcpf[2][8];
} ph_tcp_wide;

/* UDP/ICMP state of a flow, out of line in the table's UDP pool. */
typedef struct ph_udp_st {
    int64_t len[2];            /* UDP/ICMP payload bytes; < 0 = endpoint inactive */
    int64_t tm_dns;            /* PH_TM_DNS (UDP only; PH_NO_TIME = unset) */
    uint32_t chk[2];           /* UDP bad-checksum counters (C/c) */
    uint16_t chkx[2];
} ph_udp_st;

/* One flow: what every flow needs, whatever its protocol, in 408 bytes
 * (6.4 cache lines). State only some flows need lives out of line, found by
 * index: TCP endpoints, TCP timers, missed bytes and flag counters
 * (ph_tcp_st, kx), UDP/ICMP sizes and the DNS timer (ph_udp_st, kx), the
 * rarely used parts of TCP endpoints (ph_tcp_cold, ph_tcp_ep.cx; extension
 * blocks ph_ooo_blk), wide flag counters (ph_tcp_wide), tunnel records
 * (ph_tun_info, tunx), interim-update timers (ph_flowtab.uchunks, by flow
 * index, only with interim updates on). Offsets:
 *     0  key (56)
 *    56  wheel links, index; wheel slot, kind, timeout class (the heap
 *        position is in ph_flowtab.hpos)
 *    72  roles, history length, flags, history seen-mask, generation
 *    84  kx, tunx, timer lane link; 96 ts_start, last_time, last packet per direction
 *   128  packets and IP bytes per direction
 *   160  per-direction statistics (2 x 56), both-direction gaps (40)
 *   312  empty-packet counters, MACs, VLANs
 *   336  first-N gaps (the first packet's gap is always 0 and not kept),
 *        first-N sizes, history (39 letters of 5 bits), first-N count and
 *        directions (1 byte of padding) */
typedef struct ph_flow {
    /* --- lookup, timer links, kind (first cache line) --- */
    ph_fkey k;
    uint32_t wnext, wprev;   /* inactivity wheel list (index + 1, 0 = none) */
    uint32_t self;           /* this flow's index */
    uint16_t wslot;          /* wheel bucket (valid when linked) */
    uint8_t kind;            /* PH_K_* */
    uint8_t tmo;             /* PH_TMO_* */
    /* --- per packet --- */
    uint8_t orig_is_a;       /* originator = key side a */
    uint8_t hlen;
    uint16_t cf;             /* PH_CF_* */
    uint32_t hist_seen;
    uint32_t gen;            /* earlier flows on this key with this ts_start (flow id; 0 almost always) */
    uint32_t kx;             /* ph_tcp_st (TCP) or ph_udp_st (UDP, ICMP) index + 1; 0 = none (other IP) */
    uint32_t tunx;           /* tunnel record (ph_tun_info index + 1), 0 = none (most flows) */
    uint32_t lnext;          /* timer lane: the next flow (index + 1, 0 = the tail; with PH_CF_LANE) */
    int64_t ts_start;
    int64_t last_time;       /* Zeek's last_time (duration end) */
    int64_t last_pkt[2];     /* last counted packet per direction (INT64_MIN = none) */
    uint64_t pkts[2], ipb[2];
    /* --- features and labels --- */
    ph_dstat fd[2];
    ph_istat fb;             /* inter-arrival, both directions */
    uint32_t empty[2];       /* packets without transport payload, per direction */
    uint8_t mac[2][6];
    uint16_t vl[2];          /* VLAN ids of the first packet (0 = none) */
    uint32_t fiat[PH_FIRST_N - 1];  /* gaps of packets 1.. of the first N, encoded: < 2^31 = ns, else 2^31 | microseconds */
    uint16_t fsz[PH_FIRST_N];
    uint8_t hist[PH_HIST_BYTES];  /* history letters, 5 bits each (ph_hist_at / ph_hist_add) */
    uint8_t fn;              /* first_n packets recorded */
    uint8_t fdir;            /* bit i: packet i came from the responder */
} ph_flow;

_Static_assert(sizeof(ph_flow) <= 408, "ph_flow grew past 408 bytes (see the layout comment)");
_Static_assert((PH_HIST_MAX - 1) * 5 / 8 + 2 <= PH_HIST_BYTES, "the two-byte access to the last history letter stays inside");
_Static_assert(sizeof(ph_tcp_ep) <= 72, "ph_tcp_ep grew");
_Static_assert(sizeof(ph_tcp_st) <= 224, "ph_tcp_st grew");
_Static_assert(sizeof(ph_udp_st) <= 40, "ph_udp_st grew");

/* What a flow knows about tunnels, kept out of line (only tunnelled flows and
 * tunnel parents have one): at most one per flow, so the pool is bounded by
 * the table's capacity. */
typedef struct ph_tun_info {
    uint64_t uid;            /* the flow's id, computed once when it is a tunnel parent (0 = not yet) */
    uint64_t parents[PH_TUN_PARENTS];   /* uids of enclosing tunnels (Zeek's tunnel_parents) */
    uint8_t outer[2][16];    /* outer source/destination of the innermost tunnel of the first packet */
    uint32_t key;            /* its VNI / key / TEID */
    uint32_t next;           /* free list (index + 1) */
    uint8_t type;            /* its PH_TUN_* (0 = the flow itself is not tunnelled) */
    uint8_t ipver;
    uint8_t keyok;
    uint8_t nparents;
    uint8_t changes;         /* encapsulation changes counted (Zeek's tunnel_changes) */
    uint64_t sig;            /* encapsulation stack of the flow's last packet (0 = direct; ph_flow.c tunnels) */
} ph_tun_info;

/* Timer lanes (ph_flow_timer.c): a flow whose earliest timer is its TCP
 * attempt timer, or its DNS session timer, waits in a FIFO list instead of
 * the heap when its key is not earlier than the lane's tail. */
enum { PH_LANE_ATTEMPT = 0, PH_LANE_DNS = 1, PH_LANES = 2 };

/* 12 bytes: one per flow of the capacity */
typedef struct __attribute__((packed)) ph_heap_ent {
    int64_t t;
    uint32_t idx;
} ph_heap_ent;
_Static_assert(sizeof(ph_heap_ent) == 12, "ph_heap_ent is packed");

/* A pool of fixed-size records allocated in chunks of PH_POOL_CHUNK on
 * demand, up to max records; free records are listed through their first
 * 4 bytes (index + 1). Records never move. */
#define PH_POOL_SHIFT 10
#define PH_POOL_CHUNK (1u << PH_POOL_SHIFT)
typedef struct ph_pool {
    void **chunks;           /* room for every chunk the max needs */
    uint32_t nchunks;        /* allocated chunks */
    uint32_t n_used;         /* high-water mark of indices */
    uint32_t free;           /* free list (index + 1) */
    uint32_t max;            /* records at most */
    uint32_t esz;            /* record size */
} ph_pool;

#define PH_POOL_AT(pool, T, i) (&((T *)(pool)->chunks[(i) >> PH_POOL_SHIFT])[(i) & (PH_POOL_CHUNK - 1u)])

#define PH_WHEEL_BITS 15
#define PH_WHEEL_SIZE (1u << PH_WHEEL_BITS)
#define PH_WHEEL_GRAN_SHIFT 27   /* bucket width 2^27 ns ~ 134 ms; span ~ 73 min */

struct ph_flowtab {
    uint64_t *ctr;
    ph_emit_fn emit;
    void *ctx;
    /* hash table: slot = (hash << 32) | (flow index + 1), 0 = empty */
    uint64_t *slots;
    uint32_t mask;
    uint64_t max_slots;      /* slot count needed for the capacity at load 3/4 */
    /* flows */
    ph_flow **chunks;
    int64_t **uchunks;       /* interim-update timers beside the flows' chunks (only with cfg.emit_updates, else NULL) */
    uint32_t nchunks;        /* allocated chunks */
    uint32_t capacity;
    uint32_t n_used;         /* high-water mark of flow indices */
    uint32_t free_head;      /* free list (index + 1), linked through wnext */
    uint32_t active;
    /* timers */
    ph_heap_ent *heap;
    uint32_t *hpos;          /* per flow index: its heap position + 1 (0 = not in the heap); beside
                                the heap, not in the flow, so a sift touches no flow's line; for a
                                flow in a lane (PH_CF_LANE), the flow before it (index + 1, 0 = head) */
    uint32_t hn;
    uint32_t lhead[PH_LANES], ltail[PH_LANES];   /* timer lanes (index + 1, 0 = empty) */
    int64_t lhead_t[PH_LANES], ltail_t[PH_LANES];  /* their head's and tail's timer keys (the head's: ... */
    uint8_t lstale[PH_LANES];                      /* ... a lower bound of it when lstale) */
    uint32_t *wheel;         /* bucket heads (index + 1) */
    uint32_t *wtail;         /* bucket tails (index + 1): a bucket lists its flows in insertion order */
    uint64_t *wbits;         /* non-empty buckets */
    int64_t wcur;            /* next absolute bucket number to process */
    int64_t now;
    int64_t prev_now;        /* the packet time before now */
    int64_t tmo_ns[PH_TMO_N];
    int64_t next_due;        /* lower bound of the earliest heap timer */
    uint64_t pf_lag[PH_PF_LAG];   /* ph_flowtab_prefetch: 1 << 32 | hash of the last calls (0 = none) */
    uint32_t pf_idx[PH_PF_LAG2];  /* ph_flowtab_prefetch: flows whose lines were prefetched (index + 1, 0 = none) */
    uint32_t pf_n;
    /* extension blocks of out-of-order ranges (ph_flow_tcp.c) */
    ph_ooo_blk *xchunks[(PH_OOO_POOL_MAX + PH_OOO_POOL_CHUNK) / PH_OOO_POOL_CHUNK];
    uint32_t xnchunks, xn_used, xfree;   /* xfree: free list (index + 1), linked through r[0][0] */
    /* per-protocol flow state (ph_flow.kx): TCP and UDP/ICMP, up to the capacity each */
    ph_pool tcp, udp;
    ph_pool cold;            /* ph_tcp_cold records (ph_tcp_ep.cx), up to two per flow */
    ph_pool wide;            /* ph_tcp_wide records (ph_tcp_st.wx), up to one per flow */
    /* tunnel records (ph_flow.c): chunks allocated on demand, up to the capacity */
    ph_tun_info **tchunks;
    uint32_t tnchunks, tn_used, tfree;
    uint64_t amsdu_sig, amsdu_parent;  /* tunnel context of the last A-MSDU's first subframe */
    /* flows removed in the current tick that started in it (flow ids, ph_flow_export.c) */
    struct { uint64_t epoch; uint32_t hash, next; } gen_tab[PH_GEN_SLOTS];
    uint64_t gen_epoch;      /* entries of other epochs are free; 0 = never used */
    int64_t gen_now;         /* the tick of gen_epoch */
    uint32_t gen_used;       /* its entries */
    uint32_t gen_sat;        /* 0, or 1 + flows created since the tick filled gen_tab */
    ph_flow_rec rec;         /* scratch export record (when emit has no room) */
    uint8_t defer_ids;       /* ph_flowtab_defer_ids: export records without their ids */
    struct flush_ent *fl;    /* a flush under way (ph_flowtab_flush_step): the flows in export order ... */
    uint32_t fl_n, fl_pos;   /* ... how many, and how many were exported */
    int fl_reason;
    ph_flow_cfg cfg;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */
/* low ^ high half of the 128-bit product (key hash, flow ids, tunnel signatures) */
static inline uint64_t ph_mum(uint64_t a, uint64_t b)
{
    ph_u128 r = (ph_u128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* MurmurHash3's 64-bit finalizer */
static inline uint64_t ph_fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

static inline ph_flow *ph_flow_at(const ph_flowtab *t, uint32_t idx)
{
    return &t->chunks[idx >> PH_CHUNK_SHIFT][idx & (PH_CHUNK - 1)];
}

static inline ph_tcp_st *ph_tcp(const ph_flowtab *t, const ph_flow *f)
{
    return PH_POOL_AT(&t->tcp, ph_tcp_st, f->kx - 1u);
}

/* The flow's interim-update timer (PH_TM_UPDATE), NULL without interim updates. */
static inline int64_t *ph_flow_upd(const ph_flowtab *t, const ph_flow *f)
{
    return t->uchunks ? &t->uchunks[f->self >> PH_CHUNK_SHIFT][f->self & (PH_CHUNK - 1)] : NULL;
}

static inline ph_tcp_wide *ph_tcp_wide_of(const ph_flowtab *t, const ph_tcp_st *st)
{
    return PH_POOL_AT(&t->wide, ph_tcp_wide, st->wx - 1u);
}

static inline ph_udp_st *ph_udp(const ph_flowtab *t, const ph_flow *f)
{
    return PH_POOL_AT(&t->udp, ph_udp_st, f->kx - 1u);
}

/* The flow's timer i (PH_TM_*), or NULL when its kind has none. */
static inline int64_t *ph_flow_tm(const ph_flowtab *t, ph_flow *f, int i)
{
    if (i == PH_TM_UPDATE)
        return ph_flow_upd(t, f);
    if (f->kind == PH_K_TCP)
        return i < PH_TM_UPDATE ? &ph_tcp(t, f)->tm[i] : NULL;
    if (i == PH_TM_DNS && f->kind == PH_K_UDP)
        return &ph_udp(t, f)->tm_dns;
    return NULL;
}

static inline ph_tun_info *ph_tun_get(const ph_flowtab *t, const ph_flow *f)
{
    uint32_t i = f->tunx - 1u;
    return f->tunx ? &t->tchunks[i / PH_TUN_CHUNK][i % PH_TUN_CHUNK] : NULL;
}

/* History letters are kept as 5-bit codes: index into ph_hist_sym, from
 * ph_hist_code (0 = not a history letter; none is ever added). */
extern const char ph_hist_sym[32];
extern const uint8_t ph_hist_code[128];

static inline char ph_hist_at(const ph_flow *f, int i)
{
    unsigned pos = (unsigned)i * 5u;
    uint16_t w;
    memcpy(&w, f->hist + (pos >> 3), 2);
    return ph_hist_sym[(w >> (pos & 7u)) & 0x1fu];
}

/* Letter i becomes c (i < PH_HIST_MAX). */
static inline void ph_hist_set(ph_flow *f, int i, char c)
{
    unsigned pos = (unsigned)i * 5u, sh = pos & 7u;
    uint16_t w;
    memcpy(&w, f->hist + (pos >> 3), 2);
    w = (uint16_t)((w & ~(0x1fu << sh)) | ((unsigned)ph_hist_code[(uint8_t)c & 0x7fu] << sh));
    memcpy(f->hist + (pos >> 3), &w, 2);
}

static inline void ph_hist_add(ph_flow *f, char c)
{
    if (f->hlen < PH_HIST_MAX)
        ph_hist_set(f, f->hlen++, c);
}

/* Connection::CheckHistory: add the letter the first time mask is seen.
 * Returns 1 if it had been seen before. */
static inline int ph_hist_check(ph_flow *f, uint32_t mask, char code)
{
    if (f->hist_seen & mask)
        return 1;
    f->hist_seen |= mask;
    ph_hist_add(f, code);
    return 0;
}

/* Connection::ScaledHistoryEntry with base 10: add the letter on the 1st,
 * 10th, 100th ... occurrence. cnt/shx hold the counter and the threshold
 * exponent (4 bits at shift sh). */
extern const uint32_t ph_pow10_u32[11];
static inline void ph_hist_scaled(ph_flow *f, uint32_t *cnt, uint16_t *shx, int sh, char code)
{
    unsigned x = (*shx >> sh) & 0xf;
    uint32_t thr = ph_pow10_u32[x];
    if (++*cnt != thr)
        return;
    ph_hist_add(f, code);
    uint32_t nt = thr * 10u;
    if (nt <= thr || x >= 10)
        *cnt = 0;   /* wrapped: reset the counter, keep the threshold (as Zeek) */
    else
        *shx = (uint16_t)((*shx & ~(0xfu << sh)) | ((x + 1) << sh));
}

/* ------------------------------------------------------------------ */
/* Shared internal functions                                           */
/* ------------------------------------------------------------------ */
#define PH_WHEEL_NONE 0xffffu   /* ph_flow.wslot: not in the wheel */

static inline int64_t ph_flow_deadline(const ph_flowtab *t, const ph_flow *f)
{
    return f->last_time + t->tmo_ns[f->tmo];
}

/* ph_flow.c */
int ph_pool_init(ph_pool *p, uint32_t max, uint32_t esz);
uint32_t ph_pool_alloc(ph_pool *p);        /* index + 1 of a record (not cleared), 0 = none left */
void ph_pool_release(ph_pool *p, uint32_t x);   /* x: index + 1 */
size_t ph_pool_bytes(const ph_pool *p);
void ph_pool_free(ph_pool *p);
void ph_flow_remove(ph_flowtab *t, ph_flow *f, uint32_t idx, int reason);
void ph_flow_flip(ph_flowtab *t, ph_flow *f);
void ph_flow_set_tmo(ph_flowtab *t, ph_flow *f, int tmo);

/* ph_flow_timer.c */
void ph_flow_timers_changed(ph_flowtab *t, ph_flow *f);
void ph_heap_remove(ph_flowtab *t, ph_flow *f);
void ph_timer_unlink(ph_flowtab *t, ph_flow *f);   /* out of the heap or its lane */
/* Something else is about to change the table: end a flush under way. */
static inline void ph_flush_end(ph_flowtab *t)
{
    if (t->fl)
        ph_flowtab_flush_step(t, t->fl_reason, 0);
}
/* Prefetch every cache line of n bytes at p (for writing if write, a constant). */
static inline void ph_prefetch_bytes(const void *p, size_t n, int write)
{
    const char *c = p;
    for (size_t off = 0; off < n; off += 64) {
        if (write)
            __builtin_prefetch(c + off, 1);
        else
            __builtin_prefetch(c + off);
    }
    if (write)
        __builtin_prefetch(c + n - 1, 1);
    else
        __builtin_prefetch(c + n - 1);
}
/* prefetch the flow's per-protocol record (its first line must be at hand: kx, kind) */
void ph_flow_prefetch_kx(const ph_flowtab *t, const ph_flow *f);
void ph_wheel_insert(ph_flowtab *t, ph_flow *f, uint32_t idx, int64_t deadline);
void ph_wheel_unlink(ph_flowtab *t, ph_flow *f);
int ph_evict_one(ph_flowtab *t);
void ph_flow_count(ph_flowtab *t, ph_flow *f, int d, const ph_parsed *p);
static inline void ph_flow_touch(ph_flow *f, int64_t ts) { f->last_time = ts; }

/* ph_flow_tcp.c */
void ph_tcp_init(ph_flowtab *t, ph_flow *f);
void ph_tcp_release(ph_flowtab *t, ph_flow *f);   /* give back extension blocks */
void ph_tcp_expire_relevance(ph_flowtab *t, ph_flow *f);
int ph_tcp_is_reuse(const ph_flowtab *t, const ph_flow *f, const ph_parsed *p);
int ph_tcp_packet(ph_flowtab *t, ph_flow *f, const ph_parsed *p, int is_orig);
/* timer callbacks; return 1 if the flow must be removed (*reason set) */
int ph_tcp_expire_timer(ph_flowtab *t, ph_flow *f, int slot, int *reason);
int ph_tcp_attempt_timer(ph_flowtab *t, ph_flow *f);
uint64_t ph_tcp_size(const ph_flowtab *t, const ph_flow *f, int d);

/* ph_flow_export.c */
void ph_flow_export(ph_flowtab *t, ph_flow *f, int reason, int update);
/* the same with the IDs already computed (flush) */
/* digest NULL: ids deferred (ph_flowtab_defer_ids, ph_rec_ids) */
void ph_flow_export_ids(ph_flowtab *t, ph_flow *f, int reason, int update, const uint8_t digest[20], uint64_t flow_id);
void ph_flow_ids(const ph_flowtab *t, const ph_flow *f, uint8_t digest[20], uint64_t *flow_id);
uint32_t ph_flow_gen_new(ph_flowtab *t, uint32_t hash, int64_t ts_start);
void ph_flow_gen_removed(ph_flowtab *t, const ph_flow *f);

#endif /* PH_FLOW_INT_H */
