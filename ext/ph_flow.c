/*
 * ph_flow.c -- the bidirectional flow table (see ph_flow.h).
 *
 * Table: open addressing with linear probing over 64-bit slots
 * (hash << 32 | flow index + 1), sized to a power of two with load <= 0.75 at
 * full capacity; deletion by backward shift (no tombstones). Flows live in
 * chunks of 1024 allocated on demand up to cfg->capacity, so memory grows
 * with use and is bounded by the capacity; what only some flows need (TCP or
 * UDP state, rarely used TCP endpoint parts, tunnel records) is in pools of
 * fixed-size records grown the same way (ph_flow_int.h). Nothing is
 * allocated per packet.
 *
 * Time is packet time. Each packet first advances the clock; timers due at or
 * before it run first, as Zeek runs its timers before the packet. (Timer
 * structures are in ph_flow_timer.c, Zeek's TCP rules in ph_flow_tcp.c.)
 *
 * Timers:
 *  - Inactivity (Zeek's per-connection inactivity timer; UDP 1 min, ICMP and
 *    other IP 1 min, TCP starting with the UDP timeout and switching to 5 min
 *    once past the handshake, 1 h for 21/22/23/513/tcp): a hashed timing
 *    wheel of 2^15 buckets of ~134 ms. A flow sits in the bucket of the
 *    deadline it had when inserted; when a bucket has fully passed, each flow
 *    in it either expires (last_time + timeout <= now) or is re-inserted at
 *    its current deadline, exactly like Zeek's re-arming inactivity timer.
 *    Per packet nothing moves: a flow is touched again only once per timeout.
 *    A lookup also checks the deadline, so a packet never joins a connection
 *    that Zeek would already have expired (exact semantics; only the export
 *    of untouched idle flows may lag by up to one bucket).
 *  - TCP timers (attempt 5 s, session expire check 5 s then every 6 s, close
 *    delay 5 s) and interim-update deadlines: a binary min-heap over flows
 *    keyed by each flow's earliest deadline, run exactly when packet time
 *    reaches it (Zeek dispatches its timers with the current packet time).
 *
 * Eviction (table full): the victim is the flow with the earliest inactivity
 * deadline, found at the head of the first non-empty wheel bucket (a flow
 * about to time out anyway; within a timeout class, the least recently
 * active, to the bucket width). Buckets list flows in insertion order, and a
 * head that was active since it was inserted moves to the bucket of its
 * current deadline first (a bounded number per eviction), so a flood of new
 * flows evicts the oldest idle ones, never a flow that keeps sending. It is
 * exported with end_reason PH_END_EVICTED and counted in PH_C_EVICTIONS.
 *
 * Export order is deterministic: removal order (timers in deadline order,
 * wheel buckets in time order and list order), and at flush by start time,
 * then flow id.
 */
#include "ph_flow_int.h"
#include "ph_ports.h"

#include <stdlib.h>

/* history letters and their 5-bit codes (ph_flow_int.h ph_hist_at) */
const char ph_hist_sym[32] = "\0SHADFRCGTWIQshadfrcgtwiq^Xx";
const uint8_t ph_hist_code[128] = {
    ['S'] = 1, ['H'] = 2, ['A'] = 3, ['D'] = 4, ['F'] = 5, ['R'] = 6, ['C'] = 7, ['G'] = 8,
    ['T'] = 9, ['W'] = 10, ['I'] = 11, ['Q'] = 12,
    ['s'] = 13, ['h'] = 14, ['a'] = 15, ['d'] = 16, ['f'] = 17, ['r'] = 18, ['c'] = 19, ['g'] = 20,
    ['t'] = 21, ['w'] = 22, ['i'] = 23, ['q'] = 24, ['^'] = 25, ['X'] = 26, ['x'] = 27,
};

const uint32_t ph_pow10_u32[11] = {
    1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u, 1000000000u,
    1410065408u /* 10^10 mod 2^32, as Zeek's threshold overflows */
};

/* ------------------------------------------------------------------ */
/* Configuration                                                       */
/* ------------------------------------------------------------------ */
void ph_flow_cfg_default(ph_flow_cfg *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->tcp_inactivity_ns = 300 * PH_NS_PER_SEC;
    cfg->udp_inactivity_ns = 60 * PH_NS_PER_SEC;
    cfg->icmp_inactivity_ns = 60 * PH_NS_PER_SEC;
    cfg->other_inactivity_ns = 60 * PH_NS_PER_SEC;
    cfg->tcp_attempt_ns = 5 * PH_NS_PER_SEC;
    cfg->tcp_close_delay_ns = 5 * PH_NS_PER_SEC;
    cfg->tcp_session_timer_ns = 6 * PH_NS_PER_SEC;
    cfg->tcp_linger_ns = 5 * PH_NS_PER_SEC;
    cfg->long_inactivity_ns = (int64_t)PH_ZEEK_LONG_INACTIVITY_S * PH_NS_PER_SEC;
    cfg->active_timeout_ns = 600 * PH_NS_PER_SEC;
    cfg->dns_session_ns = 10 * PH_NS_PER_SEC;
    cfg->capacity = 1u << 20;
    cfg->cid_seed = 0;
    cfg->emit_updates = 0;
    cfg->first_n = PH_FIRST_N;
    cfg->vlan_in_key = 1;
    cfg->tunnel_strip = 0;
    cfg->tunnel_max_changes = 5;
    for (size_t i = 0; i < PH_ZEEK_N_TCP_SERVER_PORTS; i++)
        cfg->tcp_server_ports[ph_zeek_tcp_server_ports[i] >> 3] |= (uint8_t)(1u << (ph_zeek_tcp_server_ports[i] & 7));
    for (size_t i = 0; i < PH_ZEEK_N_UDP_SERVER_PORTS; i++)
        cfg->udp_server_ports[ph_zeek_udp_server_ports[i] >> 3] |= (uint8_t)(1u << (ph_zeek_udp_server_ports[i] & 7));
}

static inline int port_bit(const uint8_t *bm, uint16_t port) { return (bm[port >> 3] >> (port & 7)) & 1; }

/* ------------------------------------------------------------------ */
/* Keys                                                                */
/* ------------------------------------------------------------------ */
static int icmp4_counterpart(int type, int code, int *oneway)
{
    *oneway = 0;
    switch (type) {
    case 8: return 0;
    case 0: return 8;
    case 13: return 14;
    case 14: return 13;
    case 15: return 16;
    case 16: return 15;
    case 10: return 9;
    case 9: return 10;
    case 17: return 18;
    case 18: return 17;
    default: *oneway = 1; return code;
    }
}

static int icmp6_counterpart(int type, int code, int *oneway)
{
    *oneway = 0;
    switch (type) {
    case 128: return 129;
    case 129: return 128;
    case 133: return 134;
    case 134: return 133;
    case 135: return 136;
    case 136: return 135;
    case 130: return 131;
    case 131: return 130;
    case 139: return 140;
    case 140: return 139;
    case 144: return 145;
    case 145: return 144;
    default: *oneway = 1; return code;
    }
}

static inline uint32_t key_hash(const uint64_t w[7])
{
    /* two 64x64->128 multiplies over the seven words (the address words are
     * folded pairwise: a IPv4 key has w[1] = w[3] = 0; the tunnel context,
     * almost always 0, is folded into the port word) */
    uint64_t h = ph_mum(w[0] ^ w[3] ^ 0xa0761d6478bd642full, w[1] ^ w[2] ^ 0xe7037ed1a0b428dbull)
               + ph_mum(w[4] ^ w[6] ^ 0x8ebc6af09c88c6e3ull, w[5] ^ 0x589965cc75374cc3ull);
    h = ph_mum(h, 0x1d8e4e27c47d124full);
    return (uint32_t)(h ^ (h >> 32));
}

static inline int key_eq(const ph_fkey *x, const ph_fkey *y)
{
    return ((x->w[0] ^ y->w[0]) | (x->w[1] ^ y->w[1]) | (x->w[2] ^ y->w[2]) | (x->w[3] ^ y->w[3]) |
            (x->w[4] ^ y->w[4]) | (x->w[5] ^ y->w[5]) | (x->w[6] ^ y->w[6])) == 0;
}

/* Protocols for which Zeek never makes a connection (ESP, IPv6 mobility,
 * no-next-header) or that are tunnels the decoder did not take apart. */
static inline int no_connection_proto(uint8_t proto)
{
    return proto == 50 || proto == 135 || proto == 59 || proto == 4 || proto == 41 || proto == 47;
}

/* Build the canonical key of a packet. Returns the flow kind; *src_is_a tells
 * whether the packet's source is key side a. */
static int build_key(const ph_flowtab *t, const ph_parsed *p, ph_fkey *k, int *src_is_a)
{
    uint16_t sp, dp;
    int oneway = 0, kind;
    switch (p->proto) {
    case 6: kind = PH_K_TCP; sp = p->sport; dp = p->dport; break;
    case 17: kind = PH_K_UDP; sp = p->sport; dp = p->dport; break;
    case 1:
        kind = PH_K_ICMP;
        sp = p->icmp_type;
        dp = (uint16_t)icmp4_counterpart(p->icmp_type, p->icmp_code, &oneway);
        break;
    case 58:
        kind = PH_K_ICMP;
        sp = p->icmp_type;
        dp = (uint16_t)icmp6_counterpart(p->icmp_type, p->icmp_code, &oneway);
        break;
    case 132: kind = PH_K_OTHER; sp = p->sport; dp = p->dport; break; /* SCTP: keyed by ports */
    default: kind = PH_K_OTHER; sp = dp = 0; break;
    }
    /* canonical order: any total order works; compare the addresses as two
     * native 64-bit words, then the ports */
    uint64_t s0, s1, d0, d1;
    if (p->ipver == 4) {
        /* 4-byte loads: the decoder just stored 4 bytes there (a wider load
         * would stall on store forwarding); the rest of the words is zero */
        uint32_t s4, d4;
        memcpy(&s4, p->saddr, 4);
        memcpy(&d4, p->daddr, 4);
        s0 = s4;
        d0 = d4;
        s1 = d1 = 0;
    } else {
        memcpy(&s0, p->saddr, 8);
        memcpy(&s1, p->saddr + 8, 8);
        memcpy(&d0, p->daddr, 8);
        memcpy(&d1, p->daddr + 8, 8);
    }
    int src_first = oneway || (s0 != d0 ? s0 < d0 : s1 != d1 ? s1 < d1 : sp <= dp);
    uint64_t vl = 0;
    if (t->cfg.vlan_in_key) {
        /* as Zeek's vlan_fivetuple: the tag values (0 when absent) are keyed */
        if (p->nvlan >= 1)
            vl = p->vlan[0];
        if (p->nvlan >= 2)
            vl |= (uint64_t)p->vlan[1] << 16;
    }
    if (src_first) {
        k->w[0] = s0; k->w[1] = s1; k->w[2] = d0; k->w[3] = d1;
        k->w[4] = sp | (uint64_t)dp << 16 | vl << 32;
    } else {
        k->w[0] = d0; k->w[1] = d1; k->w[2] = s0; k->w[3] = s1;
        k->w[4] = dp | (uint64_t)sp << 16 | vl << 32;
    }
    *src_is_a = src_first;
    k->w[5] = p->proto | (uint64_t)p->ipver << 8 | (uint64_t)oneway << 16;
    k->w[6] = p->ctx;
    k->w[5] |= (uint64_t)key_hash(k->w) << 32;
    return kind;
}

/* ------------------------------------------------------------------ */
/* Hash table                                                          */
/* ------------------------------------------------------------------ */
static ph_flow *lookup(const ph_flowtab *t, const ph_fkey *k, uint32_t *slot_out)
{
    uint32_t i = ph_key_hash(k) & t->mask;
    for (;;) {
        uint64_t s = t->slots[i];
        if (!s) {
            *slot_out = i;
            return NULL;
        }
        if ((uint32_t)(s >> 32) == ph_key_hash(k)) {
            ph_flow *f = ph_flow_at(t, (uint32_t)s - 1);
            if (key_eq(&f->k, k)) {
                *slot_out = i;
                return f;
            }
        }
        i = (i + 1) & t->mask;
    }
}

/* Double the slot array (rehash). Called when the load would exceed 3/4;
 * never beyond the size needed for the capacity. */
static void slots_grow(ph_flowtab *t)
{
    uint64_t n = (uint64_t)t->mask + 1, nn = n * 2;
    if (nn > t->max_slots)
        return;
    uint64_t *ns = calloc(nn, sizeof *ns);
    if (!ns)
        return;   /* keep the current array (load may go above 3/4; still correct) */
    uint32_t nmask = (uint32_t)(nn - 1);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t v = t->slots[i];
        if (!v)
            continue;
        uint32_t j = (uint32_t)(v >> 32) & nmask;
        while (ns[j])
            j = (j + 1) & nmask;
        ns[j] = v;
    }
    free(t->slots);
    t->slots = ns;
    t->mask = nmask;
}

static void slot_insert(ph_flowtab *t, uint32_t hash, uint32_t idx)
{
    uint32_t i = hash & t->mask;
    while (t->slots[i])
        i = (i + 1) & t->mask;
    t->slots[i] = ((uint64_t)hash << 32) | (idx + 1);
}

static void slot_delete(ph_flowtab *t, uint32_t hash, uint32_t idx)
{
    uint64_t want = ((uint64_t)hash << 32) | (idx + 1);
    uint32_t i = hash & t->mask;
    while (t->slots[i] != want)
        i = (i + 1) & t->mask;
    /* backward-shift deletion */
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        uint64_t s = t->slots[j];
        if (!s)
            break;
        uint32_t home = (uint32_t)(s >> 32) & t->mask;
        /* move s into the hole at i unless its home lies cyclically in (i, j] */
        int in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            t->slots[i] = s;
            i = j;
        }
    }
    t->slots[i] = 0;
}

/* ------------------------------------------------------------------ */
/* Flow allocation and removal                                         */
/* ------------------------------------------------------------------ */
static int alloc_index(ph_flowtab *t, uint32_t *idx)
{
    if (t->free_head) {
        *idx = t->free_head - 1;
        t->free_head = ph_flow_at(t, *idx)->wnext;
        return 0;
    }
    if (t->n_used >= t->capacity)
        return -1;
    uint32_t c = t->n_used >> PH_CHUNK_SHIFT;
    if (c >= t->nchunks) {
        ph_flow *chunk = calloc(PH_CHUNK, sizeof(ph_flow));
        if (!chunk)
            return -1;
        if (t->uchunks) {
            t->uchunks[c] = malloc(PH_CHUNK * sizeof(int64_t));
            if (!t->uchunks[c]) {
                free(chunk);
                return -1;
            }
        }
        t->chunks[c] = chunk;
        t->nchunks = c + 1;
    }
    *idx = t->n_used++;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Record pools (per-protocol state, ph_flow_int.h)                    */
/* ------------------------------------------------------------------ */
int ph_pool_init(ph_pool *p, uint32_t max, uint32_t esz)
{
    memset(p, 0, sizeof *p);
    p->max = max;
    p->esz = esz;
    p->chunks = calloc(((size_t)max + PH_POOL_CHUNK - 1) >> PH_POOL_SHIFT, sizeof *p->chunks);
    return p->chunks ? 0 : -1;
}

uint32_t ph_pool_alloc(ph_pool *p)
{
    uint32_t i;
    if (p->free) {
        i = p->free - 1u;
        memcpy(&p->free, (char *)p->chunks[i >> PH_POOL_SHIFT] + (size_t)(i & (PH_POOL_CHUNK - 1u)) * p->esz, 4);
        return i + 1u;
    }
    if (p->n_used >= p->max)
        return 0;
    uint32_t c = p->n_used >> PH_POOL_SHIFT;
    if (c >= p->nchunks) {
        void *chunk = malloc((size_t)PH_POOL_CHUNK * p->esz);
        if (!chunk)
            return 0;
        p->chunks[c] = chunk;
        p->nchunks = c + 1;
    }
    return ++p->n_used;
}

void ph_pool_release(ph_pool *p, uint32_t x)
{
    uint32_t i = x - 1u;
    memcpy((char *)p->chunks[i >> PH_POOL_SHIFT] + (size_t)(i & (PH_POOL_CHUNK - 1u)) * p->esz, &p->free, 4);
    p->free = x;
}

size_t ph_pool_bytes(const ph_pool *p)
{
    return (((size_t)p->max + PH_POOL_CHUNK - 1) >> PH_POOL_SHIFT) * sizeof *p->chunks +
           (size_t)p->nchunks * PH_POOL_CHUNK * p->esz;
}

void ph_pool_free(ph_pool *p)
{
    if (p->chunks)
        for (uint32_t c = 0; c < p->nchunks; c++)
            free(p->chunks[c]);
    free(p->chunks);
    memset(p, 0, sizeof *p);
}

static void tun_release(ph_flowtab *t, ph_flow *f);

static void flow_unlink(ph_flowtab *t, ph_flow *f, uint32_t idx)
{
    ph_flow_gen_removed(t, f);
    if (f->kind == PH_K_TCP) {
        ph_tcp_release(t, f);
        ph_pool_release(&t->tcp, f->kx);
    } else if (f->kx) {
        ph_pool_release(&t->udp, f->kx);
    }
    f->kx = 0;
    tun_release(t, f);
    slot_delete(t, ph_key_hash(&f->k), idx);
    ph_wheel_unlink(t, f);
    ph_timer_unlink(t, f);
    f->kind = PH_K_FREE;
    f->wnext = t->free_head;
    t->free_head = idx + 1;
    t->active--;
}

void ph_flow_remove(ph_flowtab *t, ph_flow *f, uint32_t idx, int reason)
{
    ph_flow_export(t, f, reason, 0);
    flow_unlink(t, f, idx);
}

/* ------------------------------------------------------------------ */
/* Role flips and shared helpers                                       */
/* ------------------------------------------------------------------ */
#define SWAP(T, x, y) do { T tmp_ = (x); (x) = (y); (y) = tmp_; } while (0)

/* Connection::FlipRoles: swap everything per direction, append '^'.
 * The history letters and the once-per-direction "seen" bits are not
 * swapped (as in Zeek). */
void ph_flow_flip(ph_flowtab *t, ph_flow *f)
{
    f->orig_is_a ^= 1;
    SWAP(uint64_t, f->pkts[0], f->pkts[1]);
    SWAP(uint64_t, f->ipb[0], f->ipb[1]);
    SWAP(int64_t, f->last_pkt[0], f->last_pkt[1]);
    SWAP(ph_dstat, f->fd[0], f->fd[1]);
    SWAP(uint32_t, f->empty[0], f->empty[1]);
    uint8_t m[6];
    memcpy(m, f->mac[0], 6);
    memcpy(f->mac[0], f->mac[1], 6);
    memcpy(f->mac[1], m, 6);
    if (f->kind == PH_K_TCP) {
        ph_tcp_st *st = ph_tcp(t, f);
        SWAP(ph_tcp_ep, st->ep[0], st->ep[1]);
        for (int i = 0; i < 8; i++)
            SWAP(uint16_t, st->tcpf[0][i], st->tcpf[1][i]);
        if (st->wx) {
            ph_tcp_wide *w = ph_tcp_wide_of(t, st);
            for (int i = 0; i < 8; i++)
                SWAP(uint32_t, w->tcpf[0][i], w->tcpf[1][i]);
        }
        uint16_t fps = f->cf & (PH_CF_FPS_ORIG | PH_CF_FPS_RESP);
        f->cf &= (uint16_t)~(PH_CF_FPS_ORIG | PH_CF_FPS_RESP | PH_CF_PARTIAL);
        if (fps & PH_CF_FPS_ORIG)
            f->cf |= PH_CF_FPS_RESP;
        if (fps & PH_CF_FPS_RESP)
            f->cf |= PH_CF_FPS_ORIG;
    } else if (f->kx) {
        ph_udp_st *u = ph_udp(t, f);
        SWAP(int64_t, u->len[0], u->len[1]);
        SWAP(uint32_t, u->chk[0], u->chk[1]);
        SWAP(uint16_t, u->chkx[0], u->chkx[1]);
    }
    f->fdir ^= (uint8_t)((1u << f->fn) - 1);
    f->cf |= PH_CF_FLIPPED;
    ph_hist_add(f, '^');
}

/* Connection::SetInactivityTimeout. The wheel is lazy about longer timeouts;
 * a shorter one re-inserts the flow so it is not kept past its deadline. */
void ph_flow_set_tmo(ph_flowtab *t, ph_flow *f, int tmo)
{
    if (f->tmo == tmo || t->tmo_ns[f->tmo] == t->tmo_ns[tmo]) {
        f->tmo = (uint8_t)tmo;
        return;
    }
    int shorter = t->tmo_ns[tmo] < t->tmo_ns[f->tmo];
    f->tmo = (uint8_t)tmo;
    if (shorter && f->wslot != PH_WHEEL_NONE) {
        ph_wheel_unlink(t, f);
        ph_wheel_insert(t, f, f->self, ph_flow_deadline(t, f));
    }
}

/* first_iat gaps in 32 bits: exact nanoseconds below 2^31 ns (2.1 s), then
 * microseconds (to 2^30 us, 17.9 min), milliseconds (to 2^29 ms, 6.2 days)
 * and seconds (to 2^29 s, 17 years: past any timeout); the prefix says which
 * (decoded in ph_flow_export.c). */
static inline uint32_t encode_gap(uint64_t x)
{
    if (x < (1ull << 31))
        return (uint32_t)x;
    if (x / 1000u < (1ull << 30))
        return (uint32_t)(0x80000000u | x / 1000u);
    if (x / 1000000u < (1ull << 29))
        return (uint32_t)(0xc0000000u | x / 1000000u);
    uint64_t s = x / 1000000000u;
    return (uint32_t)(0xe0000000u | (s < (1ull << 29) ? s : (1ull << 29) - 1));
}

/* Count the TCP flags of a packet in direction d: in 16 bits while they fit,
 * then (all of them) in a wide record. */
static void tcp_flags_count(ph_flowtab *t, ph_tcp_st *st, int d, uint8_t flags)
{
    if (!st->wx) {
        int full = 0;
        for (uint8_t fl = flags; fl; fl &= (uint8_t)(fl - 1))
            full |= st->tcpf[d][__builtin_ctz(fl)] == UINT16_MAX;
        if (!full) {
            for (uint8_t fl = flags; fl; fl &= (uint8_t)(fl - 1))
                st->tcpf[d][__builtin_ctz(fl)]++;
            return;
        }
        uint32_t wx = ph_pool_alloc(&t->wide);
        if (!wx) {
            /* out of memory: the counters that can still count do */
            for (uint8_t fl = flags; fl; fl &= (uint8_t)(fl - 1))
                if (st->tcpf[d][__builtin_ctz(fl)] < UINT16_MAX)
                    st->tcpf[d][__builtin_ctz(fl)]++;
            return;
        }
        st->wx = wx;
        ph_tcp_wide *w = ph_tcp_wide_of(t, st);
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 8; j++)
                w->tcpf[i][j] = st->tcpf[i][j];
    }
    ph_tcpflags_count(ph_tcp_wide_of(t, st)->tcpf[d], flags);
}

/* ConnSize: count one packet in direction d, and its features. */
void ph_flow_count(ph_flowtab *t, ph_flow *f, int d, const ph_parsed *p)
{
    int64_t ts = p->ts_ns;
    ph_dstat *D = &f->fd[d];
    uint64_t gap_any = 0;
    int64_t last_any = f->last_pkt[0] > f->last_pkt[1] ? f->last_pkt[0] : f->last_pkt[1];

    f->pkts[d]++;
    f->ipb[d] += p->ip_len;
    ph_dstat_size(D, p->ip_len);
    if (f->last_pkt[d] != INT64_MIN)
        ph_dstat_iat(D, ts > f->last_pkt[d] ? (uint64_t)(ts - f->last_pkt[d]) : 0);
    if (last_any != INT64_MIN) {
        gap_any = ts > last_any ? (uint64_t)(ts - last_any) : 0;
        ph_istat_add(&f->fb, gap_any);
    }
    f->last_pkt[d] = ts;
    if (f->kind == PH_K_TCP)
        tcp_flags_count(t, ph_tcp(t, f), d, p->tcp_flags);
    if (p->payload_len == 0)
        f->empty[d]++;
    if (f->fn < t->cfg.first_n) {
        f->fsz[f->fn] = p->ip_len > 0xffff ? 0xffff : (uint16_t)p->ip_len;
        if (f->fn)   /* the first packet's gap is 0 (nothing before it), not kept */
            f->fiat[f->fn - 1] = encode_gap(gap_any);
        if (d)
            f->fdir |= (uint8_t)(1u << f->fn);
        f->fn++;
    }
}

/* ------------------------------------------------------------------ */
/* Per packet                                                          */
/* ------------------------------------------------------------------ */
static int want_flip(const ph_flowtab *t, int kind, const ph_parsed *p)
{
    int flip = 0;
    if (kind == PH_K_TCP) {
        /* TCPAnalyzer::WantConnection: only without a pure SYN */
        uint8_t fl = p->tcp_flags;
        if (!(fl & PH_TCP_SYN) || (fl & PH_TCP_ACK)) {
            if (port_bit(t->cfg.tcp_server_ports, p->sport)) {
                if (port_bit(t->cfg.tcp_server_ports, p->dport))
                    flip = !(fl & PH_TCP_SYN) && p->sport < p->dport;
                else
                    flip = 1;
            }
        }
    } else if (kind == PH_K_UDP) {
        flip = port_bit(t->cfg.udp_server_ports, p->sport) && !port_bit(t->cfg.udp_server_ports, p->dport);
    }
    if (flip && p->ipver == 4 && p->daddr[0] == 255 && p->daddr[1] == 255 && p->daddr[2] == 255 &&
        p->daddr[3] == 255)
        flip = 0;   /* never flip towards the IPv4 broadcast address */
    return flip;
}

static ph_flow *flow_create(ph_flowtab *t, const ph_parsed *p, const ph_fkey *k, int kind, int src_is_a,
                            uint32_t *idx_out)
{
    uint32_t idx;
    if (t->active >= t->capacity && ph_evict_one(t) < 0)
        return NULL;
    if ((uint64_t)(t->active + 1) * 4 > ((uint64_t)t->mask + 1) * 3) {
        slots_grow(t);
        /* the slot array could not grow: keep probing loops bounded */
        if ((uint64_t)(t->active + 1) * 8 > ((uint64_t)t->mask + 1) * 7)
            return NULL;
    }
    if (alloc_index(t, &idx) < 0)
        return NULL;
    ph_flow *f = ph_flow_at(t, idx);
    uint32_t kx = 0;
    if (kind == PH_K_TCP || kind == PH_K_UDP || kind == PH_K_ICMP) {
        kx = ph_pool_alloc(kind == PH_K_TCP ? &t->tcp : &t->udp);
        if (!kx) {
            /* out of memory: the index goes back to the free list */
            f->kind = PH_K_FREE;
            f->wnext = t->free_head;
            t->free_head = idx + 1;
            return NULL;
        }
    }
    memset(f, 0, sizeof *f);
    f->kx = kx;
    f->k = *k;
    f->self = idx;
    slot_insert(t, ph_key_hash(k), idx);
    f->kind = (uint8_t)kind;
    f->wslot = PH_WHEEL_NONE;
    f->ts_start = f->last_time = p->ts_ns;
    f->gen = ph_flow_gen_new(t, ph_key_hash(k), p->ts_ns);
    f->last_pkt[0] = f->last_pkt[1] = INT64_MIN;
    ph_dstat_init(&f->fd[0]);
    ph_dstat_init(&f->fd[1]);
    ph_istat_init(&f->fb);
    f->orig_is_a = (uint8_t)src_is_a;
    f->vl[0] = p->nvlan >= 1 ? p->vlan[0] : 0;
    f->vl[1] = p->nvlan >= 2 ? p->vlan[1] : 0;
    if (p->flags & PH_PF_HAS_MAC) {
        f->cf |= PH_CF_MAC;
        memcpy(f->mac[0], p->smac, 6);
        memcpy(f->mac[1], p->dmac, 6);
    }
    switch (kind) {
    case PH_K_TCP: f->tmo = PH_TMO_UDP; break;
    case PH_K_UDP: f->tmo = PH_TMO_UDP; break;
    case PH_K_ICMP: f->tmo = PH_TMO_ICMP; break;
    default: f->tmo = PH_TMO_OTHER; break;
    }
    if (kind == PH_K_TCP) {
        ph_tcp_init(t, f);
    } else if (kx) {
        ph_udp_st *u = ph_udp(t, f);
        memset(u, 0, sizeof *u);
        u->len[0] = u->len[1] = -1;
        u->tm_dns = PH_NO_TIME;
    }
    if (want_flip(t, kind, p))
        ph_flow_flip(t, f);
    if (t->uchunks)   /* emit_updates with an active timeout */
        *ph_flow_upd(t, f) = p->ts_ns + t->cfg.active_timeout_ns;
    if (kind == PH_K_UDP && t->cfg.dns_session_ns > 0) {
        /* Zeek's DNS analyzer (attached by responder port) ends a UDP connection
         * idle for dns_session_timeout - 1 s, checked every dns_session_timeout */
        uint16_t rp = f->orig_is_a ? ph_key_pb(k) : ph_key_pa(k);
        if (rp == 53 || rp == 137 || rp == 5353 || rp == 5355)
            ph_udp(t, f)->tm_dns = p->ts_ns + t->cfg.dns_session_ns;
    }
    ph_wheel_insert(t, f, idx, ph_flow_deadline(t, f));
    ph_flow_timers_changed(t, f);
    t->active++;
    t->ctr[PH_C_FLOWS_CREATED]++;
    *idx_out = idx;
    return f;
}

static int simple_packet(ph_flowtab *t, ph_flow *f, const ph_parsed *p, int is_orig)
{
    int d = !is_orig;
    if (f->kind == PH_K_UDP) {
        ph_udp_st *u = ph_udp(t, f);
        if (p->flags & PH_PF_L4_CSUM_BAD) {
            ph_hist_scaled(f, &u->chk[d], &u->chkx[d], 0, is_orig ? 'C' : 'c');
            return PH_C_BAD_CHECKSUM;
        }
        ph_flow_touch(f, p->ts_ns);
        ph_hist_check(f, is_orig ? 0x1 : 0x2, is_orig ? 'D' : 'd');
        int64_t ulen = (int64_t)p->udp_len - 8;
        u->len[d] = u->len[d] < 0 ? ulen : u->len[d] + ulen;
        ph_flow_count(t, f, d, p);
        return PH_C_IN_FLOW;
    }
    if (f->kind == PH_K_ICMP) {
        if (p->flags & PH_PF_L4_CSUM_BAD)
            return PH_C_BAD_CHECKSUM;
        ph_flow_touch(f, p->ts_ns);
        ph_udp_st *u = ph_udp(t, f);
        int64_t len = (int64_t)p->l4_len - 8;
        u->len[d] = u->len[d] < 0 ? len : u->len[d] + len;
        /* ConnSize sees only fully captured ICMP: a cut one updates the
         * connection (time, bytes) but is not in its packets */
        if (p->l4_caplen < p->l4_len)
            return PH_C_TRUNCATED_L4;
        ph_flow_count(t, f, d, p);
        return PH_C_IN_FLOW;
    }
    ph_flow_touch(f, p->ts_ns);
    ph_flow_count(t, f, d, p);
    return PH_C_IN_FLOW;
}

/* ------------------------------------------------------------------ */
/* Tunnels (Zeek: src/Conn.cc CheckEncapsulation, conn/main.zeek)      */
/* ------------------------------------------------------------------ */
/* How a packet reached the table: the encapsulation stack above it. */
typedef struct ph_tctx {
    uint64_t sig;          /* identity of the stack, as Zeek compares EncapsulationStacks (0 = none) */
    uint64_t parent;       /* uid of the innermost enclosing tunnel (0 = none) */
    const ph_encap *e;     /* the innermost enclosing layer (metadata), or NULL */
} ph_tctx;


/* Zeek gives IP-in-IP and GRE tunnels a synthetic uid per address pair
 * (either order); here a deterministic one, from the pair. */
static uint64_t ip_tunnel_uid(const ph_encap *e)
{
    const uint8_t *a = e->saddr, *b = e->daddr;
    uint64_t a0, a1, b0, b1;
    if (memcmp(a, b, 16) > 0) {
        a = e->daddr;
        b = e->saddr;
    }
    memcpy(&a0, a, 8);
    memcpy(&a1, a + 8, 8);
    memcpy(&b0, b, 8);
    memcpy(&b1, b + 8, 8);
    uint64_t h = ph_mum(a0 ^ 0x2d358dccaa6c78a5ull, a1 ^ 0x8bb84b93962eacc9ull) ^
                 ph_mum(b0 ^ 0x4b33a62ed433d4a3ull, b1 ^ 0x4d5a2da51de1aa47ull) ^ e->ipver;
    h = ph_fmix64(h);
    return h ? h : 1;
}

/* The flow's tunnel record, made on first use (NULL only without memory). */
static ph_tun_info *tun_make(ph_flowtab *t, ph_flow *f)
{
    uint32_t i;
    if (f->tunx)
        return ph_tun_get(t, f);
    if (t->tfree) {
        i = t->tfree - 1;
        t->tfree = t->tchunks[i / PH_TUN_CHUNK][i % PH_TUN_CHUNK].next;
    } else {
        uint32_t c = t->tn_used / PH_TUN_CHUNK;
        if (c >= (t->capacity + PH_TUN_CHUNK - 1) / PH_TUN_CHUNK)
            return NULL;   /* cannot happen: one record per live flow at most */
        if (!t->tchunks[c]) {
            t->tchunks[c] = malloc(PH_TUN_CHUNK * sizeof(ph_tun_info));
            if (!t->tchunks[c])
                return NULL;
            t->tnchunks = c + 1;
        }
        i = t->tn_used++;
    }
    f->tunx = i + 1;
    ph_tun_info *ti = ph_tun_get(t, f);
    memset(ti, 0, sizeof *ti);
    return ti;
}

static void tun_release(ph_flowtab *t, ph_flow *f)
{
    if (!f->tunx)
        return;
    ph_tun_get(t, f)->next = t->tfree;
    t->tfree = f->tunx;
    f->tunx = 0;
}

/* The uid of a flow that is a tunnel parent: its flow id, computed once. */
static uint64_t flow_uid(ph_flowtab *t, ph_flow *f)
{
    ph_tun_info *ti = tun_make(t, f);
    uint64_t id;
    uint8_t digest[20];
    if (ti && ti->uid)
        return ti->uid;
    ph_flow_ids(t, f, digest, &id);
    if (ti)
        ti->uid = id;
    return id;
}

static void tun_add_parent(ph_tun_info *ti, uint64_t uid)
{
    if (!uid || !ti)
        return;
    for (int i = 0; i < ti->nparents; i++)
        if (ti->parents[i] == uid)
            return;
    if (ti->nparents < PH_TUN_PARENTS)
        ti->parents[ti->nparents++] = uid;
}

/* A new flow: remember its tunnel context. */
static void tun_init(ph_flowtab *t, ph_flow *f, const ph_tctx *tc)
{
    if (!tc->sig && !tc->parent && !tc->e)
        return;
    ph_tun_info *ti = tun_make(t, f);
    if (!ti)
        return;
    ti->sig = tc->sig;
    tun_add_parent(ti, tc->parent);
    if (tc->e) {
        ti->type = tc->e->type;
        ti->ipver = tc->e->ipver;
        ti->key = tc->e->key;
        ti->keyok = (tc->e->flags & PH_EF_KEY) != 0;
        memcpy(ti->outer[0], tc->e->saddr, 16);
        memcpy(ti->outer[1], tc->e->daddr, 16);
    }
}

/* The packet came through another encapsulation than the last one (or none):
 * Zeek's tunnel_changed, at most tunnel_max_changes times, then 'X'. */
static void tun_change(ph_flowtab *t, ph_flow *f, const ph_tctx *tc)
{
    ph_tun_info *ti = tun_make(t, f);
    uint8_t changes = ti ? ti->changes : 0;
    if (!t->cfg.tunnel_max_changes || changes < t->cfg.tunnel_max_changes) {
        if (ti && ti->changes < 255)
            ti->changes++;
        if (tc)
            tun_add_parent(ti, tc->parent);
    } else if (!(f->cf & PH_CF_TUNX)) {
        f->cf |= PH_CF_TUNX;
        ph_hist_add(f, 'X');
    }
    if (ti)
        ti->sig = tc ? tc->sig : 0;
}

/* The encapsulation stack of the flow's last packet (0 = direct). */
static inline uint64_t tun_sig(const ph_flowtab *t, const ph_flow *f)
{
    return f->tunx ? ph_tun_get(t, f)->sig : 0;
}

/* Account one packet in its flow; tc: its tunnel context (NULL = direct).
 * *fout (if fout) receives the flow, or NULL. */
static int flow_packet(ph_flowtab *t, const ph_parsed *p, const ph_tctx *tc, ph_flow **fout, const ph_pkey *pk)
{
    ph_fkey k;
    int src_is_a, created = 0, kind;
    uint32_t slot, idx;

    if (fout)
        *fout = NULL;
    if (no_connection_proto(p->proto))
        return PH_C_NO_CONNECTION;
    if (pk && pk->kind >= 0) {
        memcpy(k.w, pk->w, sizeof k.w);
        kind = pk->kind;
        src_is_a = pk->src_is_a;
    } else
        kind = build_key(t, p, &k, &src_is_a);
    ph_flow *f = lookup(t, &k, &slot);
    if (f) {
        idx = (uint32_t)t->slots[slot] - 1;
        if (ph_flow_deadline(t, f) <= t->now) {
            ph_flow_remove(t, f, idx, PH_END_INACTIVITY);
            f = NULL;
        } else if (kind == PH_K_TCP && ph_tcp_is_reuse(t, f, p)) {
            t->ctr[PH_C_TCP_REUSE]++;
            ph_flow_remove(t, f, idx, PH_END_TCP_REUSE);
            f = NULL;
        }
    }
    if (!f) {
        f = flow_create(t, p, &k, kind, src_is_a, &idx);
        if (!f)
            return PH_C_FLOW_TABLE_FULL;
        created = 1;
        if (tc)
            tun_init(t, f, tc);
    }
    if (fout)
        *fout = f;
    if (!created && tun_sig(t, f) != (tc ? tc->sig : 0))
        tun_change(t, f, tc);
    int is_orig = (src_is_a == f->orig_is_a) ||
                  (k.w[0] == k.w[2] && k.w[1] == k.w[3] && ph_key_pa(&k) == ph_key_pb(&k));
    if (kind == PH_K_TCP)
        return ph_tcp_packet(t, f, p, is_orig);
    return simple_packet(t, f, p, is_orig);
}

/* The outer UDP packet of a UDP tunnel layer, as a packet of its own. */
static void outer_udp(const ph_parsed *p, const ph_encap *e, ph_parsed *q)
{
    memset(q, 0, PH_PARSED_CLEAR);
    q->ts_ns = p->ts_ns;
    q->flags = (uint16_t)(((e->flags & PH_EF_MAC) ? PH_PF_HAS_MAC : 0) |
                          ((e->flags & PH_EF_TRUNCATED) ? PH_PF_TRUNCATED : 0));
    q->ipver = e->ipver;
    q->proto = 17;
    memcpy(q->saddr, e->saddr, 16);
    memcpy(q->daddr, e->daddr, 16);
    q->sport = e->sport;
    q->dport = e->dport;
    q->nvlan = e->nvlan;
    q->vlan[0] = e->vlan[0];
    q->vlan[1] = e->vlan[1];
    memcpy(q->smac, e->smac, 6);
    memcpy(q->dmac, e->dmac, 6);
    q->ip_len = e->ip_len;
    q->udp_len = e->udp_len;
    q->payload_len = e->udp_len >= 8 ? e->udp_len - 8u : 0;
    q->l4_len = q->l4_caplen = e->udp_len;
    q->ctx = p->ctx;   /* Zeek mode: only a listener's mirroring session */
}

/* A decapsulated packet. Zeek mode: each UDP tunnel layer is a packet of
 * its outer connection; the inner packet (if usable) is keyed by its own
 * tuple and learns its tunnel parents. Mirroring mode: only the inner packet,
 * keyed with the session id (ph_parsed.ctx the decoder set). */
static int tunnel_packet(ph_flowtab *t, const ph_parsed *p)
{
    ph_tctx tc = {0, 0, NULL};
    int disp = PH_C_IN_FLOW, i = 0;
    /* A-MSDU: the layers in front of the 802.11 header are counted once, with
     * the first subframe; the others take the tunnel context it had there */
    int at = p->amsdu ? p->amsdu - 1 : -1;

    if (p->amsdu_more && at > 0) {
        tc.sig = t->amsdu_sig;
        tc.parent = t->amsdu_parent;
        tc.e = &p->encap[at - 1];
        i = at;
    }
    for (; i < p->nencap && i < PH_MAX_ENCAP; i++) {
        const ph_encap *e = &p->encap[i];
        uint64_t uid;
        if (i == at && !p->amsdu_more) {
            t->amsdu_sig = tc.sig;
            t->amsdu_parent = tc.parent;
        }
        if (t->cfg.tunnel_strip) {
            tc.e = e;
            continue;
        }
        if (ph_tun_is_udp(e->type)) {
            ph_parsed q;
            ph_flow *of;
            outer_udp(p, e, &q);
            disp = flow_packet(t, &q, tc.sig || tc.e ? &tc : NULL, &of, NULL);
            /* Zeek's EncapsulatingConn is made from the outer connection (its
             * originator and responder), so both directions are one layer */
            uid = of ? flow_uid(t, of) : 0;
        } else {
            uid = ip_tunnel_uid(e);
        }
        tc.sig = ph_fmix64(ph_mum(tc.sig ^ 0x9e3779b97f4a7c15ull, uid ^ ((uint64_t)e->type << 56)) + 1);
        if (!tc.sig)
            tc.sig = 1;
        tc.parent = uid;
        tc.e = e;
    }
    if (i == at && !p->amsdu_more) {
        t->amsdu_sig = tc.sig;
        t->amsdu_parent = tc.parent;
    }
    if (!p->inner_ok)
        return disp;
    return flow_packet(t, p, &tc, NULL, NULL);
}

int ph_flowtab_packet(ph_flowtab *t, const ph_parsed *p, const ph_pkey *pk)
{
    ph_flowtab_advance(t, p->ts_ns);
    if (p->nencap)
        return tunnel_packet(t, p);
    return flow_packet(t, p, NULL, NULL, pk);
}

/* Three stages, so that none waits for memory: this packet's slot line is
 * prefetched now; the flow of the packet PH_PF_LAG calls back is looked up
 * in its (by now cached) slot and its lines are prefetched; the out-of-line
 * state (TCP or UDP) of the flow of the packet PH_PF_LAG2 calls after that
 * is found through the (by now cached) flow and prefetched. Only hashes and
 * flow indices are kept between calls, never the packets. */
_Static_assert(sizeof(((ph_pkey *)0)->w) == sizeof(ph_fkey), "ph_pkey carries a whole ph_fkey");

void ph_flowtab_prefetch(ph_flowtab *t, const ph_parsed *p, ph_pkey *pk)
{
    ph_fkey k;
    int src_is_a;
    uint64_t now = 0;
    uint32_t fnow = 0;
    if (!no_connection_proto(p->proto) && !p->nencap) {
        int kind = build_key(t, p, &k, &src_is_a);
        __builtin_prefetch(&t->slots[ph_key_hash(&k) & t->mask]);
        now = 1ull << 32 | ph_key_hash(&k);
        if (pk) {
            memcpy(pk->w, k.w, sizeof k.w);
            pk->kind = kind;
            pk->src_is_a = src_is_a;
        }
    } else if (pk)
        pk->kind = -1;
    uint32_t n = t->pf_n++;
    uint64_t *lag = &t->pf_lag[n & (PH_PF_LAG - 1)];
    uint64_t then = *lag;
    *lag = now;
    if (then) {
        uint32_t h = (uint32_t)then, i = h & t->mask;
        /* the flow's slot: its home slot or, pushed along by linear probing,
         * a later one of the same (cached) line of 8 slots */
        for (uint32_t end = (i | 7u) <= t->mask ? (i | 7u) : t->mask; i <= end; i++) {
            uint64_t v = t->slots[i];
            if (!v)
                break;
            if ((uint32_t)(v >> 32) != h)
                continue;
            /* every line of the flow: a packet touches most of them */
            ph_prefetch_bytes(ph_flow_at(t, (uint32_t)v - 1), sizeof(ph_flow), 0);
            fnow = (uint32_t)v;
            break;
        }
    }
    uint32_t *lag2 = &t->pf_idx[n & (PH_PF_LAG2 - 1)];
    uint32_t fthen = *lag2;
    *lag2 = fnow;
    if (!fthen)
        return;
    ph_flow_prefetch_kx(t, ph_flow_at(t, fthen - 1));
}

void ph_flow_prefetch_kx(const ph_flowtab *t, const ph_flow *f)
{
    if (!f->kx)
        return;
    if (f->kind == PH_K_TCP)
        ph_prefetch_bytes(ph_tcp(t, f), sizeof(ph_tcp_st), 0);
    else if (f->kind == PH_K_UDP || f->kind == PH_K_ICMP)
        ph_prefetch_bytes(ph_udp(t, f), sizeof(ph_udp_st), 0);
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                           */
/* ------------------------------------------------------------------ */
ph_flowtab *ph_flowtab_new(const ph_flow_cfg *cfg, uint64_t *counters, ph_emit_fn emit, void *ctx)
{
    ph_flowtab *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->cfg = *cfg;
    if (t->cfg.capacity < 1)
        t->cfg.capacity = 1;
    if (t->cfg.first_n > PH_FIRST_N)
        t->cfg.first_n = PH_FIRST_N;
    if (t->cfg.n_local_nets > 64)
        t->cfg.n_local_nets = 64;
    t->capacity = t->cfg.capacity;
    t->ctr = counters;
    t->emit = emit;
    t->ctx = ctx;
    /* slots: start small, double with the number of live flows up to the
     * size that keeps the load <= 3/4 at full capacity */
    uint64_t want = (uint64_t)t->capacity * 4 / 3 + 1, n = 16;
    while (n < want)
        n <<= 1;
    if (n > (1ull << 32))
        goto error;
    t->max_slots = n;
    if (n > PH_SLOTS_INITIAL)
        n = PH_SLOTS_INITIAL;
    t->mask = (uint32_t)(n - 1);
    t->slots = calloc(n, sizeof *t->slots);
    t->nchunks = 0;
    t->chunks = calloc((t->capacity + PH_CHUNK - 1) >> PH_CHUNK_SHIFT, sizeof *t->chunks);
    t->heap = malloc((size_t)t->capacity * sizeof *t->heap);
    t->hpos = calloc(t->capacity, sizeof *t->hpos);
    t->wheel = calloc(PH_WHEEL_SIZE, sizeof *t->wheel);
    t->wtail = calloc(PH_WHEEL_SIZE, sizeof *t->wtail);
    t->wbits = calloc(PH_WHEEL_SIZE / 64, sizeof *t->wbits);
    t->tchunks = calloc((t->capacity + PH_TUN_CHUNK - 1) / PH_TUN_CHUNK, sizeof *t->tchunks);
    if (!t->slots || !t->chunks || !t->heap || !t->hpos || !t->wheel || !t->wtail || !t->wbits || !t->tchunks)
        goto error;
    if (t->cfg.emit_updates && t->cfg.active_timeout_ns > 0) {
        t->uchunks = calloc((t->capacity + PH_CHUNK - 1) >> PH_CHUNK_SHIFT, sizeof *t->uchunks);
        if (!t->uchunks)
            goto error;
    }
    if (ph_pool_init(&t->tcp, t->capacity, sizeof(ph_tcp_st)) < 0 ||
        ph_pool_init(&t->udp, t->capacity, sizeof(ph_udp_st)) < 0 ||
        ph_pool_init(&t->cold, t->capacity > UINT32_MAX / 2 ? UINT32_MAX : t->capacity * 2u, sizeof(ph_tcp_cold)) < 0 ||
        ph_pool_init(&t->wide, t->capacity, sizeof(ph_tcp_wide)) < 0)
        goto error;
    t->now = t->prev_now = INT64_MIN;
    t->tmo_ns[PH_TMO_UDP] = cfg->udp_inactivity_ns;
    t->tmo_ns[PH_TMO_TCP] = cfg->tcp_inactivity_ns;
    t->tmo_ns[PH_TMO_LONG] = cfg->long_inactivity_ns > 0 ? cfg->long_inactivity_ns : cfg->tcp_inactivity_ns;
    t->tmo_ns[PH_TMO_ICMP] = cfg->icmp_inactivity_ns;
    t->tmo_ns[PH_TMO_OTHER] = cfg->other_inactivity_ns;
    for (int i = 0; i < PH_TMO_N; i++)
        if (t->tmo_ns[i] <= 0)
            t->tmo_ns[i] = INT64_MAX / 4;   /* 0 = no inactivity timeout */
    return t;
error:
    ph_flowtab_free(t);
    return NULL;
}

void ph_flowtab_free(ph_flowtab *t)
{
    if (!t)
        return;
    if (t->chunks)
        for (uint32_t c = 0; c < t->nchunks; c++)
            free(t->chunks[c]);
    free(t->chunks);
    if (t->uchunks)
        for (uint32_t c = 0; c < t->nchunks; c++)
            free(t->uchunks[c]);
    free(t->uchunks);
    free(t->slots);
    free(t->heap);
    free(t->hpos);
    free(t->wheel);
    free(t->wtail);
    free(t->wbits);
    for (uint32_t c = 0; c < t->xnchunks; c++)
        free(t->xchunks[c]);
    if (t->tchunks)
        for (uint32_t c = 0; c < t->tnchunks; c++)
            free(t->tchunks[c]);
    free(t->tchunks);
    ph_pool_free(&t->tcp);
    ph_pool_free(&t->udp);
    ph_pool_free(&t->cold);
    ph_pool_free(&t->wide);
    free(t->fl);
    free(t);
}

typedef struct flush_ent {
    int64_t ts;
    uint64_t id;
    uint32_t idx;
    uint8_t digest[20];
} flush_ent;

static int flush_cmp(const void *a, const void *b)
{
    const flush_ent *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/* Order the open flows for a flush (by start time, then id); without memory
 * for the list, export them at once in table order instead. */
static void flush_begin(ph_flowtab *t, int reason)
{
    t->fl_reason = reason;
    t->fl_n = t->fl_pos = 0;
    flush_ent *v = malloc((size_t)t->active * sizeof *v);
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->n_used; i++) {
        ph_flow *f = ph_flow_at(t, i);
        if (f->kind == PH_K_FREE)
            continue;
        if (v) {
            v[n].ts = f->ts_start;
            ph_flow_ids(t, f, v[n].digest, &v[n].id);
            v[n].idx = i;
            n++;
        } else {
            ph_flow_remove(t, f, i, ph_flow_deadline(t, f) <= t->now ? PH_END_INACTIVITY : reason);   /* out of memory: table order */
        }
    }
    if (!v)
        return;
    qsort(v, n, sizeof *v, flush_cmp);
    t->fl = v;
    t->fl_n = n;
}

size_t ph_flowtab_flush_step(ph_flowtab *t, int reason, size_t max)
{
    if (!t->fl) {
        if (!t->active)
            return 0;
        flush_begin(t, reason);
        if (!t->fl)
            return 0;
    }
    flush_ent *v = t->fl;
    uint32_t end = t->fl_n;
    if (max && max < end - t->fl_pos)
        end = t->fl_pos + (uint32_t)max;
    for (uint32_t i = t->fl_pos; i < end; i++) {
        ph_flow *f = ph_flow_at(t, v[i].idx);
        /* a flow already past its inactivity deadline (the wheel exports
         * those when their bucket ends) timed out rather than being flushed */
        int why = ph_flow_deadline(t, f) <= t->now ? PH_END_INACTIVITY : t->fl_reason;
        ph_flow_export_ids(t, f, why, 0, v[i].digest, v[i].id);
        flow_unlink(t, f, v[i].idx);
    }
    t->fl_pos = end;
    if (end < t->fl_n)
        return t->fl_n - end;
    free(t->fl);
    t->fl = NULL;
    t->fl_n = t->fl_pos = 0;
    return 0;
}

void ph_flowtab_flush(ph_flowtab *t, int reason)
{
    ph_flowtab_flush_step(t, reason, 0);
}

size_t ph_flowtab_active(const ph_flowtab *t) { return t->active; }

size_t ph_flowtab_memory(const ph_flowtab *t)
{
    return sizeof *t + ((size_t)t->mask + 1) * sizeof *t->slots +
           (size_t)t->nchunks * PH_CHUNK * sizeof(ph_flow) +
           ((t->capacity + PH_CHUNK - 1) >> PH_CHUNK_SHIFT) * sizeof *t->chunks +
           (t->uchunks ? ((t->capacity + PH_CHUNK - 1) >> PH_CHUNK_SHIFT) * sizeof *t->uchunks +
                         (size_t)t->nchunks * PH_CHUNK * sizeof(int64_t) : 0) +
           (size_t)t->capacity * (sizeof *t->heap + sizeof *t->hpos) + PH_WHEEL_SIZE * (sizeof *t->wheel + sizeof *t->wtail) +
           PH_WHEEL_SIZE / 64 * sizeof *t->wbits +
           (size_t)t->xnchunks * PH_OOO_POOL_CHUNK * sizeof(ph_ooo_blk) +
           ((t->capacity + PH_TUN_CHUNK - 1) / PH_TUN_CHUNK) * sizeof *t->tchunks +
           (size_t)t->tnchunks * PH_TUN_CHUNK * sizeof(ph_tun_info) +
           ph_pool_bytes(&t->tcp) + ph_pool_bytes(&t->udp) + ph_pool_bytes(&t->cold) +
           ph_pool_bytes(&t->wide);
}
