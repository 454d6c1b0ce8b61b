/*
 * ph_flow_timer.c -- the flow table's clocks (see the policy in ph_flow.c):
 * a binary min-heap of per-flow TCP/DNS/update deadlines, with FIFO lanes for
 * the constant-delay ones, run exactly at packet time, and a lazy hashed
 * timing wheel for inactivity, which also chooses eviction victims.
 */
#include "ph_flow_int.h"

/* ------------------------------------------------------------------ */
/* Timer heap                                                          */
/* ------------------------------------------------------------------ */
static inline void heap_place(ph_flowtab *t, uint32_t pos, ph_heap_ent e)
{
    t->heap[pos] = e;
    t->hpos[e.idx] = pos + 1;
}

static inline int heap_less(ph_heap_ent a, ph_heap_ent b)
{
    return a.t < b.t || (a.t == b.t && a.idx < b.idx);
}

static void heap_sift_up(ph_flowtab *t, uint32_t pos, ph_heap_ent e)
{
    while (pos > 0) {
        uint32_t parent = (pos - 1) >> 1;
        if (!heap_less(e, t->heap[parent]))
            break;
        heap_place(t, pos, t->heap[parent]);
        pos = parent;
    }
    heap_place(t, pos, e);
}

static void heap_sift_down(ph_flowtab *t, uint32_t pos, ph_heap_ent e)
{
    for (;;) {
        uint32_t c = 2 * pos + 1;
        if (c >= t->hn)
            break;
        if (c + 1 < t->hn && heap_less(t->heap[c + 1], t->heap[c]))
            c++;
        if (!heap_less(t->heap[c], e))
            break;
        heap_place(t, pos, t->heap[c]);
        pos = c;
    }
    heap_place(t, pos, e);
}

void ph_heap_remove(ph_flowtab *t, ph_flow *f)
{
    uint32_t pos = t->hpos[f->self] - 1;
    t->hpos[f->self] = 0;
    ph_heap_ent last = t->heap[--t->hn];
    if (pos == t->hn)
        return;
    if (pos > 0 && heap_less(last, t->heap[(pos - 1) >> 1]))
        heap_sift_up(t, pos, last);
    else
        heap_sift_down(t, pos, last);
}

/* A flow's timer key: its earliest timer (PH_NO_TIME if none). TCP expire
 * checks count only while they can act (PH_CF_EXPREL; see
 * ph_tcp_expire_relevance). *lane: the lane the flow may wait in (the key is
 * its attempt or DNS timer), or -1. */
static int64_t timer_key(const ph_flowtab *t, const ph_flow *f, int *lane)
{
    const int64_t *upd = ph_flow_upd(t, f);
    int64_t m = upd ? *upd : PH_NO_TIME;
    int l = -1;
    if (f->kind == PH_K_TCP) {
        const int64_t *tm = ph_tcp(t, f)->tm;
        for (int i = (f->cf & PH_CF_EXPREL) ? 0 : PH_TM_ATTEMPT; i < PH_TM_UPDATE; i++)
            if (tm[i] < m) {
                m = tm[i];
                l = i == PH_TM_ATTEMPT ? PH_LANE_ATTEMPT : -1;
            }
    } else if (f->kind == PH_K_UDP) {
        int64_t d = ph_udp(t, f)->tm_dns;
        if (d < m) {
            m = d;
            l = PH_LANE_DNS;
        }
    }
    *lane = l;
    return m;
}

/* ------------------------------------------------------------------ */
/* Timer lanes                                                         */
/* ------------------------------------------------------------------ */
/* Most timers are set a constant delay after the packet that sets them: the
 * TCP attempt timer (tcp_attempt_delay after the SYN) and the DNS session
 * timer. Packet time only moves forward, so such keys mostly arrive in
 * order, and a FIFO list keeps them sorted at O(1) per insert and removal --
 * where the heap costs a sift through lines long evicted from the caches,
 * on every eviction of a flood (each victim holds one of the earliest
 * timers). A flow joins a lane's tail only if its key (time, then flow
 * index, the heap's order) is not before the tail's; otherwise it goes to the
 * heap. The earliest timer is then the least of the heap's root and the
 * lanes' heads, in the same total order, so timers run in exactly the order
 * a heap alone would run them. Links: ph_flow.lnext forward, hpos backward;
 * keys are not stored but recomputed from the flow (timer_key), except the
 * tails' and the heads', which are cached (a head's as a lower bound after
 * the head before it left). */
static inline int lane_of(const ph_flow *f) { return f->kind == PH_K_TCP ? PH_LANE_ATTEMPT : PH_LANE_DNS; }

static inline int64_t key_of(const ph_flowtab *t, uint32_t x)
{
    int lane;
    return timer_key(t, ph_flow_at(t, x - 1), &lane);
}

static void lane_unlink(ph_flowtab *t, ph_flow *f)
{
    int l = lane_of(f);
    uint32_t prev = t->hpos[f->self], next = f->lnext;
    if (prev)
        ph_flow_at(t, prev - 1)->lnext = next;
    else {
        /* the old head's key stays as a lower bound of the new head's (the
         * lane is in order): the new head, often a flow far from the caches,
         * is read only once that bound is due (timer_due) */
        t->lhead[l] = next;
        t->lstale[l] = 1;
    }
    if (next)
        t->hpos[next - 1] = prev;
    else if ((t->ltail[l] = prev) != 0)
        t->ltail_t[l] = key_of(t, prev);
    t->hpos[f->self] = 0;
    f->lnext = 0;
    f->cf &= (uint16_t)~PH_CF_LANE;
}

/* Whether a flow of key m may follow the lane's tail. */
static inline int lane_takes(const ph_flowtab *t, int l, int64_t m, uint32_t idx)
{
    if (!t->ltail[l])
        return 1;
    ph_heap_ent tail = { t->ltail_t[l], t->ltail[l] - 1 }, e = { m, idx };
    return heap_less(tail, e);
}

static void lane_append(ph_flowtab *t, ph_flow *f, int l, int64_t m)
{
    uint32_t x = f->self + 1;
    if (t->ltail[l]) {
        ph_flow_at(t, t->ltail[l] - 1)->lnext = x;
        t->hpos[f->self] = t->ltail[l];
    } else {
        t->lhead[l] = x;
        t->lhead_t[l] = m;
        t->lstale[l] = 0;
        t->hpos[f->self] = 0;
    }
    t->ltail[l] = x;
    t->ltail_t[l] = m;
    f->lnext = 0;
    f->cf |= PH_CF_LANE;
}

/* A flow in a lane whose key changed to m: whether it is still in order
 * between its neighbours (then it stays, and a cached key is updated). */
static int lane_keeps(ph_flowtab *t, ph_flow *f, int l, int64_t m)
{
    uint32_t prev = t->hpos[f->self], next = f->lnext;
    ph_heap_ent e = { m, f->self };
    if (prev) {
        ph_heap_ent p = { key_of(t, prev), prev - 1 };
        if (!heap_less(p, e))
            return 0;
    }
    if (next) {
        ph_heap_ent n = { key_of(t, next), next - 1 };
        if (!heap_less(e, n))
            return 0;
    }
    if (!prev) {
        t->lhead_t[l] = m;
        t->lstale[l] = 0;
    }
    if (!next)
        t->ltail_t[l] = m;
    return 1;
}

/* Take a flow out of the heap or its lane (its timers are gone). */
void ph_timer_unlink(ph_flowtab *t, ph_flow *f)
{
    if (f->cf & PH_CF_LANE)
        lane_unlink(t, f);
    else if (t->hpos[f->self])
        ph_heap_remove(t, f);
}

/* The earliest timer due at now, in (time, flow index) order over the heap
 * and the lanes: 1 and its flow index in *idx, or 0. */
static inline int timer_due(ph_flowtab *t, int64_t now, uint32_t *idx)
{
    ph_heap_ent best = { 0, 0 };
    int any = 0;
    if (t->hn && t->heap[0].t <= now) {
        best = t->heap[0];
        any = 1;
    }
    for (int l = 0; l < PH_LANES; l++)
        if (t->lhead[l] && t->lhead_t[l] <= now) {
            if (t->lstale[l]) {
                t->lhead_t[l] = key_of(t, t->lhead[l]);
                t->lstale[l] = 0;
                if (t->lhead_t[l] > now)
                    continue;
            }
            ph_heap_ent e = { t->lhead_t[l], t->lhead[l] - 1 };
            if (!any || heap_less(e, best)) {
                best = e;
                any = 1;
            }
        }
    *idx = best.idx;
    return any;
}

/* Re-key a flow after its timers changed: keep it where it is if it is still
 * in order there, else move it to a lane's tail or into the heap. */
void ph_flow_timers_changed(ph_flowtab *t, ph_flow *f)
{
    int lane;
    int64_t m = timer_key(t, f, &lane);
    if (f->cf & PH_CF_LANE) {
        if (m != PH_NO_TIME && lane == lane_of(f) && lane_keeps(t, f, lane, m))
            return;
        lane_unlink(t, f);
    }
    if (m == PH_NO_TIME) {
        if (t->hpos[f->self])
            ph_heap_remove(t, f);
        return;
    }
    if (lane >= 0 && lane_takes(t, lane, m, f->self)) {
        if (t->hpos[f->self])
            ph_heap_remove(t, f);
        lane_append(t, f, lane, m);
        return;
    }
    if (!t->hpos[f->self]) {
        ph_heap_ent e = { m, f->self };
        t->hn++;
        heap_sift_up(t, t->hn - 1, e);
        return;
    }
    uint32_t pos = t->hpos[f->self] - 1;
    ph_heap_ent e = t->heap[pos];
    int64_t old = e.t;
    e.t = m;
    if (m < old)
        heap_sift_up(t, pos, e);
    else if (m > old)
        heap_sift_down(t, pos, e);
}

/* ------------------------------------------------------------------ */
/* Inactivity wheel                                                    */
/* ------------------------------------------------------------------ */
void ph_wheel_unlink(ph_flowtab *t, ph_flow *f)
{
    if (f->wslot == PH_WHEEL_NONE)
        return;
    if (f->wprev)
        ph_flow_at(t, f->wprev - 1)->wnext = f->wnext;
    else {
        t->wheel[f->wslot] = f->wnext;
        if (!f->wnext)
            t->wbits[f->wslot >> 6] &= ~(1ull << (f->wslot & 63));
    }
    if (f->wnext)
        ph_flow_at(t, f->wnext - 1)->wprev = f->wprev;
    else
        t->wtail[f->wslot] = f->wprev;
    f->wslot = PH_WHEEL_NONE;
    f->wnext = f->wprev = 0;
}

void ph_wheel_insert(ph_flowtab *t, ph_flow *f, uint32_t idx, int64_t deadline)
{
    int64_t b = deadline >> PH_WHEEL_GRAN_SHIFT;
    if (b < t->wcur)
        b = t->wcur;
    if (b - t->wcur >= (int64_t)PH_WHEEL_SIZE)
        b = t->wcur + PH_WHEEL_SIZE - 1;   /* beyond the span: re-checked when reached */
    uint32_t slot = (uint32_t)b & (PH_WHEEL_SIZE - 1);
    f->wslot = (uint16_t)slot;
    f->wnext = 0;
    f->wprev = t->wtail[slot];       /* appended: a bucket is in insertion order */
    if (f->wprev)
        ph_flow_at(t, f->wprev - 1)->wnext = idx + 1;
    else
        t->wheel[slot] = idx + 1;
    t->wtail[slot] = idx + 1;
    t->wbits[slot >> 6] |= 1ull << (slot & 63);
}

/* Under a flood every packet evicts, and a victim was last touched about a
 * capacity's worth of flows ago: its lines are far from the caches. The next
 * victims are the bucket's next flows, so fetch them ahead: the line of the
 * head after next (its first line names the one after it), and for the next
 * head, whose first line the unlink just wrote, its hash slot and its TCP/UDP
 * record. */
static void prefetch_victims(const ph_flowtab *t, uint32_t slot)
{
    uint32_t h1 = t->wheel[slot];
    if (!h1)
        return;
    const ph_flow *f1 = ph_flow_at(t, h1 - 1);
    __builtin_prefetch(&t->slots[ph_key_hash(&f1->k) & t->mask]);
    ph_flow_prefetch_kx(t, f1);
    if (!f1->wnext)
        return;
    ph_prefetch_bytes(ph_flow_at(t, f1->wnext - 1), sizeof(ph_flow), 1);
}

/* Heads of stale buckets moved per eviction at most (see ph_evict_one). */
#define PH_EVICT_MOVES 64

/* Pick and export the flow with the earliest inactivity deadline: the head of
 * the first non-empty bucket. The wheel is lazy -- a flow stays in the bucket
 * of the deadline it had when it was inserted, though it may have been active
 * since -- so a head whose current deadline lies in a later bucket moves there
 * first (to that bucket's tail), and a head more recently active than the flow
 * behind it moves to the tail of its bucket, and the scan goes on. At most PH_EVICT_MOVES
 * flows move per eviction, and a moved flow does not move again until it is
 * active again, so the cost per packet stays bounded. */
int ph_evict_one(ph_flowtab *t)
{
    for (uint32_t moves = 0;; moves++) {
        uint32_t start = (uint32_t)t->wcur & (PH_WHEEL_SIZE - 1), slot = UINT32_MAX;
        for (uint32_t n = 0; n <= PH_WHEEL_SIZE; n += 64) {
            uint32_t s = (start + n) & (PH_WHEEL_SIZE - 1);
            uint32_t w = s >> 6;
            uint64_t bits = t->wbits[w];
            if (n == 0)
                bits &= ~0ull << (s & 63);
            if (!bits)
                continue;
            slot = (w << 6) | (uint32_t)__builtin_ctzll(bits);
            break;
        }
        if (slot == UINT32_MAX)
            return -1;
        uint32_t idx = t->wheel[slot] - 1;
        ph_flow *f = ph_flow_at(t, idx);
        int64_t bucket = t->wcur + (int64_t)((slot - start) & (PH_WHEEL_SIZE - 1));
        int64_t d = ph_flow_deadline(t, f);
        int later = (d >> PH_WHEEL_GRAN_SHIFT) > bucket &&
                    (d >> PH_WHEEL_GRAN_SHIFT) - t->wcur < (int64_t)PH_WHEEL_SIZE;
        /* same bucket, but active after the flow behind it was inserted: to the tail */
        int newer = f->wnext && f->last_time > ph_flow_at(t, f->wnext - 1)->last_time;
        if (moves < PH_EVICT_MOVES && (later || newer)) {
            ph_wheel_unlink(t, f);
            ph_wheel_insert(t, f, idx, d);
            continue;
        }
        t->ctr[PH_C_EVICTIONS]++;
        ph_flow_remove(t, f, idx, PH_END_EVICTED);
        prefetch_victims(t, slot);
        return 0;
    }
}

/* ------------------------------------------------------------------ */
/* Timers                                                              */
/* ------------------------------------------------------------------ */
static void run_flow_timers(ph_flowtab *t, uint32_t idx, int64_t now)
{
    ph_flow *f = ph_flow_at(t, idx);
    for (;;) {
        int j = -1;
        int64_t tj = 0, *pj = NULL;
        int first = (f->kind == PH_K_TCP && !(f->cf & PH_CF_EXPREL)) ? PH_TM_ATTEMPT : 0;
        for (int i = first; i < PH_TM_N; i++) {
            int64_t *pi = ph_flow_tm(t, f, i);
            if (pi && *pi <= now && (j < 0 || *pi < tj)) {
                j = i;
                tj = *pi;
                pj = pi;
            }
        }
        if (j < 0)
            break;
        /* Zeek would already have removed a connection idle since before this timer */
        if (ph_flow_deadline(t, f) <= tj) {
            ph_flow_remove(t, f, idx, PH_END_INACTIVITY);
            return;
        }
        *pj = PH_NO_TIME;
        int reason = PH_END_INACTIVITY;
        switch (j) {
        case PH_TM_EXPIRE1:
        case PH_TM_EXPIRE2:
            if (ph_tcp_expire_timer(t, f, j, &reason)) {
                ph_flow_remove(t, f, idx, reason);
                return;
            }
            break;
        case PH_TM_ATTEMPT:
            if (ph_tcp_attempt_timer(t, f)) {
                ph_flow_remove(t, f, idx, PH_END_INACTIVITY);
                return;
            }
            break;
        case PH_TM_DELETE:
            ph_flow_remove(t, f, idx, PH_END_TCP_CLOSED);
            return;
        case PH_TM_UPDATE: {
            /* an interim record if the flow was active since the previous one */
            int64_t at = t->cfg.active_timeout_ns, next = tj + at;
            if (f->last_time > tj - at || tj - at <= f->ts_start)
                ph_flow_export(t, f, PH_END_ACTIVE_TIMEOUT, 1);
            if (next <= now)
                next = tj + ((now - tj) / at + 1) * at;
            *pj = next;
            break;
        }
        case PH_TM_DNS:
            /* DNS_Analyzer::ExpireTimer, run with the current packet time */
            if (now - f->last_time >= t->cfg.dns_session_ns - PH_NS_PER_SEC) {
                ph_flow_remove(t, f, idx, PH_END_INACTIVITY);
                return;
            }
            ph_udp(t, f)->tm_dns = now + t->cfg.dns_session_ns;
            break;
        }
    }
    ph_flow_timers_changed(t, f);
}

static void wheel_process_slot(ph_flowtab *t, uint32_t slot, int64_t now)
{
    uint32_t cur = t->wheel[slot];
    t->wheel[slot] = 0;
    t->wtail[slot] = 0;
    t->wbits[slot >> 6] &= ~(1ull << (slot & 63));
    while (cur) {
        uint32_t idx = cur - 1;
        ph_flow *f = ph_flow_at(t, idx);
        cur = f->wnext;
        f->wslot = PH_WHEEL_NONE;
        f->wnext = f->wprev = 0;
        int64_t d = ph_flow_deadline(t, f);
        if (d <= now)
            ph_flow_remove(t, f, idx, PH_END_INACTIVITY);
        else
            ph_wheel_insert(t, f, idx, d);
    }
}

static void wheel_advance(ph_flowtab *t, int64_t now)
{
    int64_t target = now >> PH_WHEEL_GRAN_SHIFT;
    if (t->wcur >= target)
        return;
    if (target - t->wcur > (int64_t)PH_WHEEL_SIZE) {
        /* a long jump in time: visit every bucket once */
        t->wcur = target;
        for (uint32_t s = 0; s < PH_WHEEL_SIZE; s++)
            if (t->wbits[s >> 6] & (1ull << (s & 63)))
                wheel_process_slot(t, s, now);
        return;
    }
    while (t->wcur < target) {
        uint32_t slot = (uint32_t)t->wcur & (PH_WHEEL_SIZE - 1);
        t->wcur++;
        if (t->wbits[slot >> 6] & (1ull << (slot & 63)))
            wheel_process_slot(t, slot, now);
    }
}

void ph_flowtab_advance(ph_flowtab *t, int64_t now_ns)
{
    ph_flush_end(t);
    if (t->now == INT64_MIN) {
        t->wcur = now_ns >> PH_WHEEL_GRAN_SHIFT;
        t->prev_now = now_ns;
    }
    if (now_ns > t->now) {
        t->prev_now = t->now;
        t->now = now_ns;
    }
    int64_t now = t->now;
    uint32_t idx;
    while (timer_due(t, now, &idx))
        run_flow_timers(t, idx, now);
    wheel_advance(t, now);
}

