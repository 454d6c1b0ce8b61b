/*
 * ph_flow_tcp.c -- Zeek's TCP connection semantics for conn.log.
 *
 * Follows, in behaviour, Zeek's TCPSessionAdapter::Process (per packet:
 * endpoint initialisation, relative sequence numbers, history letters,
 * zero windows, sequence/ack tracking, the endpoint state machine, acks
 * revealing content gaps, data delivery, close handling), TCP_Endpoint
 * (Size(), scaled history entries) and TCP_Reassembler (which sequence
 * ranges were seen; gaps reported when an ack passes a hole). See
 * shared/zeek-conn-semantics.md sections 1-5.
 *
 * The reassembler keeps no payload: per direction, the contiguously
 * delivered point (r_last), the trim point (r_trim), the highest block end
 * (r_top, so "has blocks" is r_top > r_trim) and the ranges received above
 * a hole: up to PH_OOO_MAX in the endpoint's cold record (ph_tcp_cold, made on
 * first use), up to PH_OOO_BIG in an extension
 * block from the table's pool (PH_OOO_POOL_MAX blocks, allocated on demand,
 * returned when the holes close or the flow ends). Only beyond that (or with
 * the pool used up) are the two ranges with the smallest hole between them
 * merged, that hole then counting as received.
 */
#include "ph_flow_int.h"

#include <stdlib.h>

typedef struct tcp_pkt {
    ph_flowtab *t;
    ph_flow *f;
    const ph_parsed *p;
    ph_tcp_st *st;      /* f's TCP state */
    int e;              /* sender's endpoint index (follows role flips) */
    int is_orig;        /* Zeek's is_orig: fixed for the packet (stale after a flip, as in Zeek's state machine) */
    int len;            /* payload length */
    uint8_t fl;         /* TCP flags */
    uint8_t established;/* connection_established raised */
    uint8_t tdirty;     /* timers changed */
} tcp_pkt;

#define SYN(c) ((c)->fl & PH_TCP_SYN)
#define FIN(c) ((c)->fl & PH_TCP_FIN)
#define RST(c) ((c)->fl & PH_TCP_RST)
#define ACK(c) ((c)->fl & PH_TCP_ACK)

static inline ph_tcp_ep *EP(tcp_pkt *c, int i) { return &c->st->ep[i]; }

static inline int is_handshake(int s)
{
    return s == PH_TCPS_INACTIVE || s == PH_TCPS_SYN_SENT || s == PH_TCPS_SYN_ACK_SENT;
}

static inline int is_clean(const ph_tcp_ep *x)
{
    return x->state == PH_TCPS_ESTABLISHED ||
           (x->state == PH_TCPS_CLOSED && x->prev_state == PH_TCPS_ESTABLISHED);
}

static inline char role_case(int i, char up) { return i ? (char)(up + ('a' - 'A')) : up; }

/* The endpoint's cold record, made on first use (NULL only without memory). */
static inline ph_tcp_cold *cold_of(const ph_flowtab *t, const ph_tcp_ep *x)
{
    return PH_POOL_AT(&t->cold, ph_tcp_cold, x->cx - 1u);
}

static ph_tcp_cold *cold_make(ph_flowtab *t, ph_tcp_ep *x)
{
    if (x->cx)
        return cold_of(t, x);
    uint32_t cx = ph_pool_alloc(&t->cold);
    if (!cx)
        return NULL;
    x->cx = cx;
    ph_tcp_cold *k = cold_of(t, x);
    memset(k, 0, sizeof *k);
    return k;
}

/* TCP_Endpoint::{ChecksumError,DidRxmit,ZeroWindow,Gap}: scaled letters */
static inline void ep_scaled(ph_flowtab *t, ph_flow *f, ph_tcp_st *st, int i, int which, char up)
{
    ph_tcp_cold *k = cold_make(t, &st->ep[i]);
    if (k)
        ph_hist_scaled(f, &k->shc[which], &k->shx, which * 4, role_case(i, up));
}

/* ------------------------------------------------------------------ */
/* Sequence arithmetic (TCP_Endpoint / TCPSessionAdapter helpers)      */
/* ------------------------------------------------------------------ */
static inline uint64_t full64(uint32_t v, uint32_t wraps) { return ((uint64_t)wraps << 32) + v; }

static inline int no_data_acked(const ph_tcp_ep *x)
{
    uint64_t a = full64(x->ack_seq, x->ack_wraps), s = x->start;
    return a == s || a == s + 1;
}

/* get_relative_seq: a 32-bit delta from the start when no wrap happened
 * (negative values come back sign-extended, as in Zeek), else 64-bit. */
static uint64_t relative_seq(const ph_tcp_ep *x, uint32_t cur, uint32_t last, uint32_t wraps, int *underflow)
{
    int32_t delta = (int32_t)(cur - last);
    if (delta < 0) {
        if (wraps && cur > last)
            --wraps;
    } else if (delta > 0) {
        if (cur < last)
            ++wraps;
    }
    if (wraps == 0) {
        delta = (int32_t)(cur - x->start);
        if (delta < 0)
            *underflow = 1;
        return (uint64_t)(int64_t)delta;
    }
    return full64(cur, wraps) - (uint64_t)x->start;
}

uint64_t ph_tcp_size(const ph_flowtab *t, const ph_flow *f, int d)
{
    const ph_tcp_st *st = ph_tcp(t, f);
    const ph_tcp_ep *x = &st->ep[d], *y = &st->ep[d ^ 1];
    if (x->prev_state == PH_TCPS_SYN_SENT && x->state == PH_TCPS_RESET && y->state == PH_TCPS_INACTIVE &&
        !no_data_acked(x))
        return 0;   /* a half-open connection discovered and aborted */
    uint64_t l = full64(x->last_seq, x->seq_wraps), a = full64(x->ack_seq, x->ack_wraps);
    uint64_t size = (l > a ? l : a) - (uint64_t)x->start;
    if (size)
        size--;     /* SYN octet */
    if ((x->epf & PH_EP_FIN) && size)
        size--;     /* FIN octet */
    return size;
}

static void init_endpoint(ph_tcp_ep *x, uint8_t fl, uint32_t first, uint32_t last)
{
    int syn = fl & PH_TCP_SYN;
    switch (x->state) {
    case PH_TCPS_INACTIVE:
        if (syn) {
            x->ack_seq = x->start = first;
        } else {
            /* partial connection: number as though a SYN preceded it */
            x->ack_seq = x->start = first - 1;
            last = first;
        }
        x->last_seq = last;
        break;
    case PH_TCPS_SYN_SENT:
    case PH_TCPS_SYN_ACK_SENT:
        if (syn && first != x->start) {
            x->start = x->ack_seq = first;
            x->last_seq = last;
        }
        break;
    case PH_TCPS_ESTABLISHED:
    case PH_TCPS_PARTIAL:
        if (syn) {
            x->start = x->ack_seq = first;
            x->last_seq = last;
        }
        break;
    case PH_TCPS_RESET:
        if (syn && x->prev_state == PH_TCPS_INACTIVE) {
            x->start = x->ack_seq = first;
            x->last_seq = last;
        }
        break;
    default:
        break;
    }
}

static void update_ack_seq(ph_tcp_ep *x, uint32_t ack)
{
    int32_t delta = (int32_t)(ack - x->ack_seq);
    if (ack == 0 && delta > PH_TOO_LARGE_SEQ_DELTA)
        return;   /* more likely a broken ack than a wrap onto 0 */
    if (delta > 0) {
        if (ack < x->ack_seq)
            x->ack_wraps++;
        x->ack_seq = ack;
    }
}

static inline void set_last_seq(ph_tcp_ep *x, uint32_t v)
{
    if (v < x->last_seq)
        x->seq_wraps++;
    x->last_seq = v;
}

/* update_last_seq; a payload that does not advance the sequence is a 'T' */
static int32_t update_last_seq(tcp_pkt *c, uint32_t last)
{
    ph_tcp_ep *x = EP(c, c->e);
    int32_t delta = (int32_t)(last - x->last_seq);
    if ((SYN(c) || RST(c)) && (delta > PH_TOO_LARGE_SEQ_DELTA || delta < -PH_TOO_LARGE_SEQ_DELTA))
        ;
    else if (FIN(c) && x->last_seq == x->start + 1u)
        set_last_seq(x, last);   /* > 2 GB connections seen only by SYN and FIN */
    else if (x->state == PH_TCPS_RESET)
        ;
    else if (delta > 0)
        set_last_seq(x, last);
    else if (c->len > 0)
        ep_scaled(c->t, c->f, c->st, c->e, PH_SH_T, 'T');
    return delta;
}

/* ------------------------------------------------------------------ */
/* Roles and history                                                   */
/* ------------------------------------------------------------------ */
static void flip_in_packet(tcp_pkt *c)
{
    ph_flow_flip(c->t, c->f);
    c->e ^= 1;
}

/* TCP_Endpoint::CheckHistory for the sender. A connection whose whole
 * history is a SYN-ACK ("H") and then sees a pure ACK or data is flipped and
 * its history becomes "^h" before the letter is added. */
static int ep_check(tcp_pkt *c, uint32_t mask, char code)
{
    ph_flow *f = c->f;
    if ((mask == PH_HIST_ACK || mask == PH_HIST_DATA) && f->hlen == 1 && ph_hist_at(f, 0) == 'H') {
        flip_in_packet(c);
        ph_hist_set(f, 0, '^');
        ph_hist_set(f, 1, 'h');
        f->hlen = 2;
        f->cf |= PH_CF_FPS_ORIG;   /* the missing SYN no longer makes it partial (zeek/zeek#2552) */
    }
    if (c->e) {
        mask <<= 16;
        code = role_case(1, code);
    }
    return ph_hist_check(f, mask, code);
}

static inline void ep_add(tcp_pkt *c, char code) { ph_hist_add(c->f, role_case(c->e, code)); }

static void update_history(tcp_pkt *c, uint64_t rel_seq)
{
    int bits = !!SYN(c) + !!FIN(c) + !!RST(c);
    if (bits > 1) {
        if (FIN(c) && RST(c))
            ep_check(c, PH_HIST_FINRST, 'I');
        else
            ep_check(c, PH_HIST_MULTI, 'Q');
    } else if (bits == 1) {
        ph_tcp_ep *x = EP(c, c->e);
        if (SYN(c)) {
            char code = ACK(c) ? 'H' : 'S';
            if (ep_check(c, PH_HIST_SYN, code) && (uint32_t)rel_seq != x->hist_last[0])
                ep_add(c, code);
            x->hist_last[0] = (uint32_t)rel_seq;
        } else if (FIN(c)) {
            /* a FIN's sequence number is at the end of its data */
            uint32_t v = (uint32_t)(rel_seq + (uint64_t)(int64_t)c->len);
            if (ep_check(c, PH_HIST_FIN, 'F') && v != x->hist_last[1])
                ep_add(c, 'F');
            x->hist_last[1] = v;
        } else {
            if (ep_check(c, PH_HIST_RST, 'R') && (uint32_t)rel_seq != x->hist_last[2])
                ep_add(c, 'R');
            x->hist_last[2] = (uint32_t)rel_seq;
        }
    } else if (c->len) {
        ep_check(c, PH_HIST_DATA, 'D');
    } else if (ACK(c)) {
        ep_check(c, PH_HIST_ACK, 'A');
    }
}

/* ------------------------------------------------------------------ */
/* State machine                                                       */
/* ------------------------------------------------------------------ */
/* TCP_Endpoint::SetState: leaving the handshake while the peer is still in
 * it switches the connection to the TCP inactivity timeout. */
static void set_state(tcp_pkt *c, int i, int st)
{
    ph_tcp_ep *x = EP(c, i), *y = EP(c, i ^ 1);
    if (st == x->state)
        return;
    if (!is_handshake(st) && is_handshake(x->state) && is_handshake(y->state))
        ph_flow_set_tmo(c->t, c->f, PH_TMO_TCP);
    x->prev_state = x->state;
    x->state = (uint8_t)st;
}

static inline void connection_reset(tcp_pkt *c) { c->f->cf &= (uint16_t)~PH_CF_ACTIVE; }

static void inactive_state(tcp_pkt *c, uint32_t base_seq, int *do_close, int *gen_event)
{
    ph_flow *f = c->f;
    if (SYN(c)) {
        if (c->is_orig) {
            set_state(c, c->e, ACK(c) ? PH_TCPS_SYN_ACK_SENT : PH_TCPS_SYN_SENT);
            if (c->t->cfg.tcp_attempt_ns) {
                c->st->tm[PH_TM_ATTEMPT] = c->p->ts_ns + c->t->cfg.tcp_attempt_ns;
                c->tdirty = 1;
            }
        } else {
            if (!ACK(c) && EP(c, c->e ^ 1)->state == PH_TCPS_SYN_ACK_SENT && base_seq == EP(c, c->e)->start) {
                /* SYN/SYN-ACK reversal: flip and establish */
                f->cf &= (uint16_t)~PH_CF_PARTIAL;
                flip_in_packet(c);
                set_state(c, c->e ^ 1, PH_TCPS_ESTABLISHED);
                f->cf |= PH_CF_FPS_ORIG;
            }
            if (EP(c, c->e ^ 1)->state == PH_TCPS_SYN_SENT)
                set_state(c, c->e ^ 1, PH_TCPS_ESTABLISHED);
            set_state(c, c->e, PH_TCPS_ESTABLISHED);
            if (EP(c, c->e ^ 1)->state != PH_TCPS_PARTIAL)
                c->established = 1;
        }
    }
    if (FIN(c)) {
        set_state(c, c->e, PH_TCPS_CLOSED);
        *do_close = *gen_event = 1;
    }
    if (RST(c)) {
        int ps = EP(c, c->e ^ 1)->state, reject;
        set_state(c, c->e, PH_TCPS_RESET);
        if (c->is_orig)
            reject = ps == PH_TCPS_ESTABLISHED;
        else
            reject = ps == PH_TCPS_SYN_SENT || ps == PH_TCPS_SYN_ACK_SENT;
        *do_close = 1;
        *gen_event = !reject;
    }
    if (EP(c, c->e)->state == PH_TCPS_INACTIVE) {
        if (!c->is_orig && c->len == 0 && c->st->ep[0].state == PH_TCPS_SYN_SENT) {
            /* an ack of the initial SYN before the SYN-ACK: stays inactive */
        } else if (ACK(c) && EP(c, c->e ^ 1)->state == PH_TCPS_ESTABLISHED) {
            set_state(c, c->e, PH_TCPS_ESTABLISHED);
            f->cf &= (uint16_t)~PH_CF_PARTIAL;
            f->cf |= c->is_orig ? PH_CF_FPS_ORIG : PH_CF_FPS_RESP;
        } else {
            set_state(c, c->e, PH_TCPS_PARTIAL);
        }
    }
}

static void syn_sent_state(tcp_pkt *c, int *do_close, int *gen_event)
{
    if (FIN(c)) {
        set_state(c, c->e, PH_TCPS_CLOSED);
        *do_close = *gen_event = 1;
    }
    if (RST(c)) {
        set_state(c, c->e, PH_TCPS_RESET);
        connection_reset(c);
        *do_close = 1;
    }
}

static void established_state(tcp_pkt *c, int *do_close, int *gen_event)
{
    ph_tcp_ep *x = EP(c, c->e), *y = EP(c, c->e ^ 1);
    if (SYN(c) && x->state == PH_TCPS_PARTIAL && y->state == PH_TCPS_INACTIVE && !ACK(c))
        set_state(c, c->e, PH_TCPS_SYN_SENT);
    if (FIN(c) && !RST(c)) {
        set_state(c, c->e, PH_TCPS_CLOSED);
        if (y->state == PH_TCPS_RESET && y->prev_state == PH_TCPS_CLOSED)
            set_state(c, c->e ^ 1, PH_TCPS_CLOSED);   /* FIN then RST: a normal close */
        *do_close = *gen_event = 1;
    }
    if (RST(c)) {
        set_state(c, c->e, PH_TCPS_RESET);
        *do_close = 1;
        if (y->state != PH_TCPS_RESET || y->prev_state != PH_TCPS_ESTABLISHED)
            connection_reset(c);
    }
}

static void closed_state(tcp_pkt *c, int *do_close)
{
    ph_tcp_ep *x = EP(c, c->e);
    if (RST(c) && EP(c, c->e ^ 1)->state != PH_TCPS_CLOSED) {
        set_state(c, c->e, PH_TCPS_RESET);
        if (!(x->epf & PH_EP_DID_CLOSE))
            *do_close = 1;
    }
}

static void update_state_machine(tcp_pkt *c, uint32_t base_seq, int *do_close, int *gen_event)
{
    switch (EP(c, c->e)->state) {
    case PH_TCPS_INACTIVE: inactive_state(c, base_seq, do_close, gen_event); break;
    case PH_TCPS_SYN_SENT:
    case PH_TCPS_SYN_ACK_SENT: syn_sent_state(c, do_close, gen_event); break;
    case PH_TCPS_ESTABLISHED:
    case PH_TCPS_PARTIAL: established_state(c, do_close, gen_event); break;
    case PH_TCPS_CLOSED: closed_state(c, do_close); break;
    default: break;   /* RESET is terminal */
    }
}

/* ------------------------------------------------------------------ */
/* Reassembly bookkeeping                                              */
/* ------------------------------------------------------------------ */
static inline int has_blocks(const ph_tcp_ep *x) { return x->r_top > x->r_trim; }

/* Out-of-order ranges live in the endpoint's cold record (up to PH_OOO_MAX)
 * or, while more holes are open, in an extension block of PH_OOO_BIG ranges
 * from the table's bounded pool. */
static inline ph_ooo_blk *xblk(const ph_flowtab *t, uint32_t i)
{
    return &t->xchunks[i / PH_OOO_POOL_CHUNK][i % PH_OOO_POOL_CHUNK];
}

/* NULL only for an endpoint without a cold record (then n_ooo is 0). */
static inline uint32_t (*ranges(const ph_flowtab *t, ph_tcp_ep *x))[2]
{
    if (!x->cx)
        return NULL;
    ph_tcp_cold *k = cold_of(t, x);
    return k->xooo ? xblk(t, k->xooo - 1u)->r : k->ooo;
}

static int xblk_alloc(ph_flowtab *t, uint32_t *i)
{
    if (t->xfree) {
        *i = t->xfree - 1;
        t->xfree = xblk(t, *i)->r[0][0];
        return 0;
    }
    if (t->xn_used >= PH_OOO_POOL_MAX)
        return -1;
    uint32_t c = t->xn_used / PH_OOO_POOL_CHUNK;
    if (!t->xchunks[c]) {
        t->xchunks[c] = malloc(PH_OOO_POOL_CHUNK * sizeof(ph_ooo_blk));
        if (!t->xchunks[c])
            return -1;
        t->xnchunks = c + 1;
    }
    *i = t->xn_used++;
    return 0;
}

/* Give the endpoint's block back, keeping its first n ranges in the endpoint. */
static void xblk_release(ph_flowtab *t, ph_tcp_ep *x, int n)
{
    if (!x->cx)
        return;
    ph_tcp_cold *k = cold_of(t, x);
    if (!k->xooo)
        return;
    ph_ooo_blk *b = xblk(t, k->xooo - 1u);
    memcpy(k->ooo, b->r, (size_t)n * sizeof k->ooo[0]);
    b->r[0][0] = t->xfree;
    t->xfree = k->xooo;
    k->xooo = 0;
}

void ph_tcp_release(ph_flowtab *t, ph_flow *f)
{
    ph_tcp_st *st = ph_tcp(t, f);
    for (int i = 0; i < 2; i++) {
        ph_tcp_ep *x = &st->ep[i];
        xblk_release(t, x, 0);
        if (x->cx)
            ph_pool_release(&t->cold, x->cx);
        x->cx = 0;
    }
    if (st->wx)
        ph_pool_release(&t->wide, st->wx);
    st->wx = 0;
}

static inline void clear_blocks(ph_flowtab *t, ph_tcp_ep *x)
{
    x->r_top = 0;
    x->n_ooo = 0;
    xblk_release(t, x, 0);
}

/* Move the delivered point to v (>= r_last), re-basing the ranges above. */
static void set_r_last(ph_flowtab *t, ph_tcp_ep *x, uint64_t v)
{
    uint64_t delta = v - x->r_last;
    uint32_t (*r)[2] = ranges(t, x);
    int n = 0;
    for (int i = 0; i < x->n_ooo; i++) {
        if (r[i][1] <= delta)
            continue;   /* entirely below the new point */
        r[n][0] = r[i][0] > delta ? (uint32_t)(r[i][0] - delta) : 0;
        r[n][1] = (uint32_t)(r[i][1] - delta);
        n++;
    }
    x->n_ooo = (uint8_t)n;
    x->r_last = v;
    if (n <= PH_OOO_MAX)
        xblk_release(t, x, n);
}

/* Deliver ranges that now start at the delivered point. */
static int deliver_contiguous(ph_flowtab *t, ph_tcp_ep *x)
{
    int moved = 0;
    while (x->n_ooo && ranges(t, x)[0][0] == 0) {
        set_r_last(t, x, x->r_last + ranges(t, x)[0][1]);
        moved = 1;
    }
    return moved;
}

static void ooo_add(ph_flowtab *t, ph_tcp_ep *x, uint64_t s, uint64_t u)
{
    uint64_t so = s - x->r_last, uo = u - x->r_last;
    if (so > UINT32_MAX)
        return;   /* > 4 GB above the delivered point: ignore */
    if (uo > UINT32_MAX)
        uo = UINT32_MAX;
    uint32_t ns = (uint32_t)so, nu = (uint32_t)uo;
    ph_tcp_cold *k = cold_make(t, x);
    if (!k)
        return;   /* out of memory: the range is not remembered */
    uint32_t (*r)[2] = ranges(t, x);
    /* merge with every overlapping or touching range */
    int n = 0;
    uint32_t tmp[PH_OOO_BIG + 1][2];
    int placed = 0;
    for (int i = 0; i < x->n_ooo; i++) {
        uint32_t rs = r[i][0], ru = r[i][1];
        if (ru < ns) {
            tmp[n][0] = rs;
            tmp[n][1] = ru;
            n++;
        } else if (rs > nu) {
            if (!placed) {
                tmp[n][0] = ns;
                tmp[n][1] = nu;
                n++;
                placed = 1;
            }
            tmp[n][0] = rs;
            tmp[n][1] = ru;
            n++;
        } else {
            if (rs < ns)
                ns = rs;
            if (ru > nu)
                nu = ru;
        }
    }
    if (!placed) {
        tmp[n][0] = ns;
        tmp[n][1] = nu;
        n++;
    }
    int cap = k->xooo ? PH_OOO_BIG : PH_OOO_MAX;
    uint32_t bi;
    if (n > cap && !k->xooo && xblk_alloc(t, &bi) == 0) {
        k->xooo = (uint16_t)(bi + 1);
        cap = PH_OOO_BIG;
    }
    if (n > cap) {
        /* too many holes open (or the pool is used up): merge across the
         * smallest one, which then counts as received */
        int best = 0;
        for (int i = 1; i < n - 1; i++)
            if (tmp[i + 1][0] - tmp[i][1] < tmp[best + 1][0] - tmp[best][1])
                best = i;
        tmp[best][1] = tmp[best + 1][1];
        for (int i = best + 1; i < n - 1; i++) {
            tmp[i][0] = tmp[i + 1][0];
            tmp[i][1] = tmp[i + 1][1];
        }
        n--;
    }
    memcpy(ranges(t, x), tmp, (size_t)n * sizeof tmp[0]);
    x->n_ooo = (uint8_t)n;
}

static uint64_t undelivered_bytes(const ph_tcp_ep *x)
{
    if (!has_blocks(x))
        return 0;
    return x->r_top > x->r_last ? x->r_top - x->r_last : 0;
}

static uint64_t data_size(const ph_flowtab *t, ph_tcp_ep *x)
{
    if (!has_blocks(x))
        return 0;
    uint64_t top = x->r_top < x->r_last ? x->r_top : x->r_last;
    uint64_t n = top > x->r_trim ? top - x->r_trim : 0;
    uint32_t (*r)[2] = ranges(t, x);
    for (int i = 0; i < x->n_ooo; i++)
        n += r[i][1] - r[i][0];
    return n;
}

/* TCP_Reassembler::Gap: counted only while both endpoints are established
 * (or closed from established), as missed_bytes and a scaled 'G'. */
static void gap(tcp_pkt *c, int r, uint64_t len)
{
    if (is_clean(EP(c, r)) && is_clean(EP(c, r ^ 1))) {
        ep_scaled(c->t, c->f, c->st, r, PH_SH_G, 'G');
        c->st->missed += len;
    }
}

/* BlockInserted's tail: nothing acked yet but more than an initial window
 * sent: stop holding the delivered data. */
static void after_delivery(tcp_pkt *c, int r)
{
    ph_tcp_ep *x = EP(c, r);
    if (no_data_acked(x) && ph_tcp_size(c->t, c->f, r) > PH_TCP_MAX_INITIAL_WINDOW && x->r_last > x->r_trim)
        x->r_trim = x->r_last;
}

/* TCP_Reassembler::Undelivered: the peer acked up_to without us having
 * seen everything below it. */
static void undelivered(tcp_pkt *c, int r, uint64_t up_to)
{
    ph_tcp_ep *x = EP(c, r);
    if (up_to <= 2 && (c->f->cf & PH_CF_PARTIAL))
        return;   /* the faked SYN octet (or a keep-alive) of a partial connection */
    if (!(x->epf & PH_EP_SKIP)) {
        while (x->n_ooo && x->r_last + ranges(c->t, x)[0][0] < up_to) {
            uint64_t s = x->r_last + ranges(c->t, x)[0][0];
            gap(c, r, s - x->r_last);
            set_r_last(c->t, x, s);
            deliver_contiguous(c->t, x);
            after_delivery(c, r);
        }
        if (up_to > x->r_last)
            gap(c, r, up_to - x->r_last);
    }
    if (up_to > x->r_last)
        set_r_last(c->t, x, up_to);
}

/* Reassembler::TrimToSeq */
static void trim_to_seq(tcp_pkt *c, int r, uint64_t seq)
{
    ph_tcp_ep *x = EP(c, r);
    if (seq > x->r_last)
        undelivered(c, r, seq);
    if (deliver_contiguous(c->t, x))
        after_delivery(c, r);
    if (seq > x->r_trim)
        x->r_trim = seq;
}

/* TCP_Reassembler::DataPending for endpoint r. */
static int data_pending(tcp_pkt *c, int r)
{
    ph_tcp_ep *x = EP(c, r);
    if (x->epf & PH_EP_SKIP)
        return 0;
    uint64_t delivered = (uint64_t)x->start + x->r_last;
    uint64_t last = full64(x->last_seq, x->seq_wraps);
    if (last < delivered)
        return 0;
    if (delivered != last - 1 && delivered != last)
        return 1;
    if (x->state != PH_TCPS_RESET && has_blocks(EP(c, r ^ 1)))
        return 1;
    return 0;
}

static void connection_closed(tcp_pkt *c, int r, int gen_event);

/* TCP_Reassembler::CheckEOF -> TCPSessionAdapter::EndpointEOF */
static void check_eof(tcp_pkt *c, int r)
{
    ph_tcp_ep *x = EP(c, r);
    ph_flow *f = c->f;
    if ((x->epf & PH_EP_EOF) ||
        !((x->epf & PH_EP_FIN) || x->state == PH_TCPS_CLOSED || x->state == PH_TCPS_RESET) ||
        data_pending(c, r))
        return;
    x->epf |= PH_EP_EOF;
    if (f->cf & PH_CF_DEFERRED) {
        connection_closed(c, r, (f->cf & PH_CF_DEF_GEN) != 0);
        f->cf &= (uint16_t)~PH_CF_DEFERRED;
    }
}

/* TCP_Reassembler::AckReceived on endpoint r's data. */
static void ack_received(tcp_pkt *c, int r, uint64_t seq)
{
    ph_tcp_ep *x = EP(c, r);
    if ((x->epf & PH_EP_FIN) && seq >= x->fin_seq)
        seq = x->fin_seq - 1;   /* do not count the FIN octet */
    if (seq <= x->r_trim)
        return;
    trim_to_seq(c, r, seq);
    check_eof(c, r);
}

/* Reassembler::NewBlock + BlockInserted for data [seq, upper). */
static void new_block(tcp_pkt *c, int r, uint64_t seq, uint64_t upper)
{
    ph_tcp_ep *x = EP(c, r);
    if (upper <= seq || upper <= x->r_trim)
        return;
    if (seq < x->r_trim)
        seq = x->r_trim;
    if (upper > x->r_top)
        x->r_top = upper;
    if (seq <= x->r_last) {
        if (upper > x->r_last) {
            set_r_last(c->t, x, upper);
            deliver_contiguous(c->t, x);
            after_delivery(c, r);
        }
    } else {
        ooo_add(c->t, x, seq, upper);
    }
}

/* TCP_Endpoint::DataSent -> TCP_Reassembler::DataSent */
static void data_sent(tcp_pkt *c, int r, uint64_t seq, int len)
{
    const ph_parsed *p = c->p;
    int64_t hdr = (int64_t)p->l4_len - p->payload_len;
    if ((int64_t)p->l4_caplen - hdr < len)
        return;   /* payload not fully captured: not delivered (a gap later) */
    ph_tcp_ep *x = EP(c, r);
    if (x->epf & PH_EP_SKIP)
        return;
    uint64_t ack = full64(x->ack_seq, x->ack_wraps) - (uint64_t)x->start;
    uint64_t upper = seq + (uint64_t)len;
    if (seq < ack) {
        if (upper <= ack)
            return;   /* already acked */
        seq = ack;
    }
    new_block(c, r, seq, upper);
    if (no_data_acked(x) && undelivered_bytes(x) > PH_TCP_MAX_ABOVE_HOLE) {
        clear_blocks(c->t, x);
        x->epf |= PH_EP_SKIP;
    }
    if (data_size(c->t, x) > PH_TCP_EXCESSIVE_DATA) {
        clear_blocks(c->t, x);
        x->epf |= PH_EP_SKIP;
    }
}

/* TCPSessionAdapter::ConnectionClosed for endpoint r. */
static void connection_closed(tcp_pkt *c, int r, int gen_event)
{
    ph_flow *f = c->f;
    const ph_flow_cfg *cfg = &c->t->cfg;
    ph_tcp_ep *x = EP(c, r), *y = EP(c, r ^ 1);
    if (data_pending(c, r)) {
        f->cf |= PH_CF_DEFERRED;
        if (!(f->cf & PH_CF_DEF_GEN) && gen_event)
            f->cf |= PH_CF_DEF_GEN;
        return;
    }
    f->cf &= (uint16_t)~PH_CF_DEFERRED;
    if (x->epf & PH_EP_DID_CLOSE)
        return;
    x->epf |= PH_EP_DID_CLOSE;
    int complete = x->state == PH_TCPS_RESET || (y->epf & PH_EP_DID_CLOSE) || y->state == PH_TCPS_INACTIVE;
    if (complete) {
        if (x->prev_state != PH_TCPS_INACTIVE || y->state != PH_TCPS_INACTIVE) {
            if (f->cf & PH_CF_DEF_GEN) {
                gen_event = 1;
                f->cf &= (uint16_t)~PH_CF_DEF_GEN;
            }
            if (gen_event)
                f->cf &= (uint16_t)~PH_CF_ACTIVE;   /* ConnectionFinished */
        }
        /* CancelTimers, then remove after the close delay */
        c->st->tm[PH_TM_EXPIRE1] = c->st->tm[PH_TM_EXPIRE2] = c->st->tm[PH_TM_ATTEMPT] = PH_NO_TIME;
        c->st->tm[PH_TM_DELETE] = f->last_time + cfg->tcp_close_delay_ns;
        c->tdirty = 1;
    } else if (x->prev_state != PH_TCPS_INACTIVE) {
        /* half close: look for the other side closing too */
        int64_t when = f->last_time + cfg->tcp_session_timer_ns;
        int64_t *tm = c->st->tm;
        if (tm[PH_TM_EXPIRE2] == PH_NO_TIME)
            tm[PH_TM_EXPIRE2] = when;
        else if (tm[PH_TM_EXPIRE1] == PH_NO_TIME)
            tm[PH_TM_EXPIRE1] = when;
        else if (when < tm[PH_TM_EXPIRE2])
            tm[PH_TM_EXPIRE2] = when;
        c->tdirty = 1;
    }
}

/* base/protocols/conn/inactivity.zeek on connection_established */
static void established_hook(tcp_pkt *c)
{
    ph_flow *f = c->f;
    const ph_flow_cfg *cfg = &c->t->cfg;
    if (cfg->long_inactivity_ns <= 0)
        return;
    uint16_t pa = ph_key_pa(&f->k), pb = ph_key_pb(&f->k);
    uint16_t op = f->orig_is_a ? pa : pb, rp = f->orig_is_a ? pb : pa;
    uint16_t sp = rp;
    if (c->st->ep[0].state == PH_TCPS_INACTIVE) {
        int rl = (cfg->tcp_server_ports[rp >> 3] >> (rp & 7)) & 1;
        int ol = (cfg->tcp_server_ports[op >> 3] >> (op & 7)) & 1;
        if (!rl && ol)
            sp = op;
    }
    if (sp == 21 || sp == 22 || sp == 23 || sp == 513)
        ph_flow_set_tmo(c->t, f, PH_TMO_LONG);
}

/* ------------------------------------------------------------------ */
/* Dormant expire checks                                               */
/* ------------------------------------------------------------------ */
/* Zeek re-arms the session expire check every 6 s for the whole life of a
 * connection, but a check can only act while the connection is active and
 * an endpoint has closed or both are inactive. Outside those periods the
 * chain is kept out of the heap (its deadlines stay in tm[]); when it can act
 * again, each deadline is rolled forward: a tick due at or before this
 * packet but after the previous one was dispatched now (exact: re-armed at
 * now + 6 s); older ticks are assumed dispatched at their deadline (Zeek
 * dispatches them at the first packet after; the phase may differ when
 * traffic was sparse). */
void ph_tcp_expire_relevance(ph_flowtab *t, ph_flow *f)
{
    ph_tcp_st *st = ph_tcp(t, f);
    const ph_tcp_ep *o = &st->ep[0], *r = &st->ep[1];
    int rel = (f->cf & PH_CF_ACTIVE) &&
              (((o->epf | r->epf) & PH_EP_DID_CLOSE) ||
               (o->state == PH_TCPS_INACTIVE && r->state == PH_TCPS_INACTIVE));
    if (rel == !!(f->cf & PH_CF_EXPREL))
        return;
    if (!rel) {
        f->cf &= (uint16_t)~PH_CF_EXPREL;
        return;
    }
    f->cf |= PH_CF_EXPREL;
    int64_t now = t->now, period = t->cfg.tcp_session_timer_ns;
    for (int j = PH_TM_EXPIRE1; j <= PH_TM_EXPIRE2; j++) {
        int64_t d = st->tm[j];
        if (d == PH_NO_TIME || d > now || period <= 0)
            continue;
        int64_t last = d + (now - d) / period * period;   /* last tick <= now */
        st->tm[j] = last > t->prev_now ? now + period : last + period;
    }
}

/* ------------------------------------------------------------------ */
/* Public entry points                                                 */
/* ------------------------------------------------------------------ */
void ph_tcp_init(ph_flowtab *t, ph_flow *f)
{
    ph_tcp_st *st = ph_tcp(t, f);
    memset(st, 0, sizeof *st);
    for (int i = 0; i < 2; i++)
        st->ep[i].r_last = st->ep[i].r_trim = 1;
    for (int i = 0; i < PH_TM_UPDATE; i++)
        st->tm[i] = PH_NO_TIME;
    f->cf |= PH_CF_ACTIVE | PH_CF_EXPREL;   /* both endpoints inactive: checks can act */
    /* the session expire check starts at tcp_SYN_timeout */
    st->tm[PH_TM_EXPIRE1] = f->ts_start + t->cfg.tcp_attempt_ns;
}

/* TCPSessionAdapter::IsReuse: only a SYN can start a new connection. */
int ph_tcp_is_reuse(const ph_flowtab *t, const ph_flow *f, const ph_parsed *p)
{
    uint8_t fl = p->tcp_flags;
    const ph_tcp_st *st = ph_tcp(t, f);
    const ph_tcp_ep *o = &st->ep[0], *r = &st->ep[1], *co = o;
    if (!(fl & PH_TCP_SYN))
        return 0;
    if (fl & PH_TCP_ACK) {
        if (o->state != PH_TCPS_INACTIVE)
            return 0;
        co = r;
    }
    if (!((o->epf | r->epf) & PH_EP_DID_CLOSE)) {
        if (p->tcp_seq == co->start)
            return 0;   /* retransmission */
        if (!(fl & PH_TCP_ACK) && co->state == PH_TCPS_SYN_ACK_SENT && r->state == PH_TCPS_INACTIVE &&
            p->tcp_seq == r->start)
            return 0;   /* SYN and SYN-ACK seen reversed */
    }
    return 1;
}

int ph_tcp_expire_timer(ph_flowtab *t, ph_flow *f, int slot, int *reason)
{
    if (!(f->cf & PH_CF_ACTIVE))
        return 0;
    ph_tcp_st *st = ph_tcp(t, f);
    const ph_tcp_ep *o = &st->ep[0], *r = &st->ep[1];
    int64_t now = t->now;
    if (f->last_time + t->cfg.tcp_linger_ns < now) {
        int oc = o->epf & PH_EP_DID_CLOSE, rc = r->epf & PH_EP_DID_CLOSE;
        if ((oc || rc) &&
            ((oc && rc) || o->state == PH_TCPS_RESET || r->state == PH_TCPS_RESET ||
             o->state == PH_TCPS_INACTIVE || r->state == PH_TCPS_INACTIVE)) {
            f->cf &= (uint16_t)~PH_CF_ACTIVE;
            *reason = PH_END_TCP_CLOSED;
            return 1;
        }
        if (o->state == PH_TCPS_INACTIVE && r->state == PH_TCPS_INACTIVE) {
            *reason = PH_END_INACTIVITY;
            return 1;
        }
    }
    st->tm[slot] = now + t->cfg.tcp_session_timer_ns;
    return 0;
}

int ph_tcp_attempt_timer(ph_flowtab *t, ph_flow *f)
{
    const ph_tcp_st *st = ph_tcp(t, f);
    const ph_tcp_ep *o = &st->ep[0], *r = &st->ep[1];
    if (!(f->cf & PH_CF_ACTIVE))
        return 0;
    return (o->state == PH_TCPS_SYN_SENT || o->state == PH_TCPS_SYN_ACK_SENT) && r->state == PH_TCPS_INACTIVE;
}

int ph_tcp_packet(ph_flowtab *t, ph_flow *f, const ph_parsed *p, int is_orig)
{
    tcp_pkt c = { t, f, p, ph_tcp(t, f), is_orig ? 0 : 1, is_orig, (int)p->payload_len, p->tcp_flags, 0, 0 };

    if (p->flags & PH_PF_L4_CSUM_BAD) {
        ep_scaled(t, f, c.st, c.e, PH_SH_C, 'C');
        return PH_C_BAD_CHECKSUM;
    }

    /* SetPartialStatus */
    if (c.e == 0) {
        if (!(f->cf & PH_CF_FPS_ORIG)) {
            f->cf &= (uint16_t)~PH_CF_PARTIAL;
            if (!SYN(&c) || ACK(&c))
                f->cf |= PH_CF_PARTIAL;
        }
    } else if (!(f->cf & (PH_CF_FPS_RESP | PH_CF_PARTIAL)) && !SYN(&c)) {
        f->cf |= PH_CF_PARTIAL;
    }

    int seg_len = c.len + (SYN(&c) ? 1 : 0) + (FIN(&c) ? 1 : 0);
    if (RST(&c))
        seg_len -= c.len;   /* RST payload is not part of the stream */
    uint32_t base_seq = p->tcp_seq, ack_seq = p->tcp_ack;
    uint32_t one_past = base_seq + (uint32_t)seg_len;

    init_endpoint(EP(&c, c.e), c.fl, base_seq, one_past);
    int underflow = 0;
    ph_tcp_ep *x = EP(&c, c.e);
    uint64_t rel_seq = relative_seq(x, base_seq, x->last_seq, x->seq_wraps, &underflow);

    update_history(&c, rel_seq);   /* may flip roles */
    x = EP(&c, c.e);
    ph_tcp_ep *y = EP(&c, c.e ^ 1);

    /* update_window: only the zero-window letter matters here */
    if ((((uint32_t)p->tcp_win) << x->wscale) == 0 && !RST(&c) && y->state != PH_TCPS_CLOSED &&
        x->state != PH_TCPS_RESET)
        ep_scaled(t, f, c.st, c.e, PH_SH_W, 'W');

    if (!((c.st->ep[0].epf & c.st->ep[1].epf) & PH_EP_DID_CLOSE))
        ph_flow_touch(f, p->ts_ns);

    if (SYN(&c)) {
        /* init_window: scaling counts only if both SYNs offer it */
        if (!(p->flags & PH_PF_TCP_WSCALE)) {
            x->wscale = 0;
            if (ACK(&c))
                y->wscale = 0;
        } else {
            x->wscale = p->tcp_wscale > 14 ? 14 : p->tcp_wscale;
        }
    }
    if (FIN(&c)) {
        x->epf |= PH_EP_FIN;
        x->fin_seq = rel_seq + (uint64_t)(int64_t)seg_len;
    }

    uint64_t rel_ack = 0;
    if (ACK(&c)) {
        if (y->state == PH_TCPS_INACTIVE) {
            /* init_peer: number the peer as though its SYN was seen */
            rel_ack = 1;
            y->start = y->ack_seq = y->last_seq = ack_seq - 1;
        } else {
            int au = 0;
            rel_ack = relative_seq(y, ack_seq, y->ack_seq, y->ack_wraps, &au);
            if (au)
                rel_ack = 0;
            else if (!RST(&c))
                update_ack_seq(y, ack_seq);   /* acks in RSTs are not trusted */
        }
    }

    update_last_seq(&c, one_past);

    int do_close = 0, gen_event = 0;
    update_state_machine(&c, base_seq, &do_close, &gen_event);   /* may flip roles */

    if (ACK(&c))
        ack_received(&c, c.e ^ 1, rel_ack);

    /* CheckPIA_FirstPacket */
    f->cf |= c.is_orig ? PH_CF_FPS_ORIG : PH_CF_FPS_RESP;

    uint64_t rel_data_seq = SYN(&c) ? rel_seq + 1 : rel_seq;
    if (c.len > 0 && !RST(&c) && !underflow)
        data_sent(&c, c.e, rel_data_seq, c.len);
    check_eof(&c, c.e);
    if (do_close)
        connection_closed(&c, c.e, gen_event);
    if (c.established)
        established_hook(&c);

    /* ConnSize counts by the sender's role after any flip in this packet
     * (zeek/zeek#5047; older Zeek used the stale direction) */
    ph_flow_count(t, f, c.e, p);
    uint16_t rel = f->cf & PH_CF_EXPREL;
    ph_tcp_expire_relevance(t, f);
    if (c.tdirty || rel != (f->cf & PH_CF_EXPREL))
        ph_flow_timers_changed(t, f);
    return PH_C_IN_FLOW;
}
