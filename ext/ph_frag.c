/*
 * ph_frag.c -- IPv4/IPv6 fragment reassembly (see ph_frag.h for the policy).
 *
 * Layout: a hash table of incomplete datagrams (chained, keyed SipHash-1-3 so
 * that an attacker cannot aim fragments at one bucket), plus a list in
 * creation order used for timeouts and for evicting the oldest datagram.
 * Each datagram has one data buffer indexed by fragment offset (grown
 * geometrically, or sized exactly once the last fragment is known) and a
 * sorted array of disjoint, non-adjacent received ranges, so in-order
 * fragments merge into a single range and completion is an O(1) test.
 */
#include "ph_frag.h"

#include <stdlib.h>
#include <time.h>

typedef struct frag_range {
    uint32_t lo, hi;                 /* [lo, hi) received */
} frag_range;

typedef struct frag_dgram {
    ph_frag_key key;
    uint64_t hash;
    struct frag_dgram *hnext;        /* hash chain */
    struct frag_dgram *older, *newer;/* creation-order list */
    int64_t created_ns;
    uint8_t *data;                   /* fragmentable part, indexed by offset */
    uint32_t cap;                    /* bytes allocated at data */
    uint8_t *hdr;                    /* kept header (from the offset-0 fragment) */
    uint32_t hdr_len;
    uint32_t frag_size;              /* expected data length, valid if have_last */
    uint8_t have_last, have_hdr;
    uint32_t n_held;                 /* fragments reported as PH_C_FRAGMENT_HELD */
    uint64_t bytes;                  /* accounted against the table budget */
    uint32_t nr;
    frag_range r[PH_FRAG_MAX_RANGES];
} frag_dgram;

struct ph_frag_table {
    uint64_t *counters;
    uint32_t max_dgrams;
    uint64_t max_bytes;
    int64_t timeout_ns;
    frag_dgram **buckets;
    uint32_t mask;
    frag_dgram *oldest, *newest;
    uint32_t n;
    uint64_t bytes;
    uint64_t k0, k1;                 /* SipHash key */
    uint8_t *out;                    /* PH_FRAG_MAX_HDR + PH_FRAG_MAX_DATA */
    frag_dgram *last_held;           /* datagram of the last PH_FRAG_HELD (ph_frag_unhold_last) */
};

/* ------------------------------------------------------------------ */
/* Keyed hash (SipHash-1-3 over the 40-byte serialized key)            */
/* ------------------------------------------------------------------ */
#define ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND(v0, v1, v2, v3)                                   \
    do {                                                           \
        v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32); \
        v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2;                   \
        v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0;                   \
        v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32); \
    } while (0)

static uint64_t siphash13(uint64_t k0, uint64_t k1, const uint8_t *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)len << 56, m;
    size_t i, left = len & 7;

    for (i = 0; i + 8 <= len; i += 8) {
        m = ph_le64(in + i);
        v3 ^= m;
        SIPROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    for (size_t j = 0; j < left; j++)
        b |= (uint64_t)in[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t key_hash(const ph_frag_table *t, const ph_frag_key *k)
{
    uint8_t b[40];

    memcpy(b, k->src, 16);
    memcpy(b + 16, k->dst, 16);
    b[32] = (uint8_t)(k->id >> 24);
    b[33] = (uint8_t)(k->id >> 16);
    b[34] = (uint8_t)(k->id >> 8);
    b[35] = (uint8_t)k->id;
    b[36] = k->proto;
    b[37] = k->ipver;
    b[38] = b[39] = 0;
    return siphash13(t->k0, t->k1, b, sizeof b);
}

static int key_eq(const ph_frag_key *a, const ph_frag_key *b)
{
    return a->id == b->id && a->proto == b->proto && a->ipver == b->ipver &&
           memcmp(a->src, b->src, 16) == 0 && memcmp(a->dst, b->dst, 16) == 0;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------------ */
/* Table                                                               */
/* ------------------------------------------------------------------ */
ph_frag_table *ph_frag_new(uint32_t max_datagrams, uint64_t max_bytes, int64_t timeout_ns, uint64_t *counters)
{
    ph_frag_table *t;
    uint32_t nb = 16;
    uint64_t seed;
    int local;

    if (!counters)
        return NULL;
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->counters = counters;
    t->max_dgrams = max_datagrams ? max_datagrams : 1;
    t->max_bytes = max_bytes;
    t->timeout_ns = timeout_ns;
    while (nb < t->max_dgrams && nb < (1u << 20))
        nb <<= 1;
    t->mask = nb - 1;
    t->buckets = calloc(nb, sizeof *t->buckets);
    t->out = malloc(PH_FRAG_MAX_HDR + PH_FRAG_MAX_DATA);
    if (!t->buckets || !t->out)
        goto error;
    /* The seed only changes bucket placement, never results. */
    seed = (uint64_t)(uintptr_t)t ^ ((uint64_t)(uintptr_t)&local << 17) ^ (uint64_t)time(NULL);
    t->k0 = splitmix64(&seed);
    t->k1 = splitmix64(&seed);
    return t;

error:
    free(t->buckets);
    free(t->out);
    free(t);
    return NULL;
}

static void dgram_unlink(ph_frag_table *t, frag_dgram *dg)
{
    frag_dgram **pp = &t->buckets[dg->hash & t->mask];

    while (*pp && *pp != dg)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = dg->hnext;
    if (dg->older)
        dg->older->newer = dg->newer;
    else
        t->oldest = dg->newer;
    if (dg->newer)
        dg->newer->older = dg->older;
    else
        t->newest = dg->older;
    t->n--;
    t->bytes -= dg->bytes;
    if (t->last_held == dg)
        t->last_held = NULL;
    free(dg->data);
    free(dg->hdr);
    free(dg);
}

/* Drop an incomplete datagram: its held fragments become dropped ones. */
static void dgram_drop(ph_frag_table *t, frag_dgram *dg, int reason)
{
    t->counters[PH_C_FRAGMENT_HELD] -= dg->n_held;
    t->counters[PH_C_FRAGMENT_DROPPED] += dg->n_held;
    t->counters[reason]++;
    dgram_unlink(t, dg);
}

void ph_frag_free(ph_frag_table *t)
{
    if (!t)
        return;
    while (t->oldest)
        dgram_unlink(t, t->oldest);
    free(t->buckets);
    free(t->out);
    free(t);
}

void ph_frag_expire(ph_frag_table *t, int64_t now_ns)
{
    int64_t limit;

    if (t->timeout_ns <= 0 || now_ns < INT64_MIN + t->timeout_ns)
        return;                          /* nothing can be that old */
    limit = now_ns - t->timeout_ns;      /* now - created >= timeout, without overflow */
    while (t->oldest && t->oldest->created_ns <= limit)
        dgram_drop(t, t->oldest, PH_C_FRAG_TIMEOUT);
}

void ph_frag_flush(ph_frag_table *t)
{
    while (t->oldest)
        dgram_drop(t, t->oldest, PH_C_FRAG_TIMEOUT);
}

uint32_t ph_frag_pending(const ph_frag_table *t) { return t->n; }
uint64_t ph_frag_bytes(const ph_frag_table *t) { return t->bytes; }

/* Make room for delta more bytes on behalf of dg by evicting the oldest other
 * datagrams. Returns 0 if the budget cannot hold them even then. */
static int reserve(ph_frag_table *t, frag_dgram *dg, uint64_t delta)
{
    while (t->bytes + delta > t->max_bytes) {
        frag_dgram *victim = t->oldest;
        if (victim == dg)
            victim = dg->newer;
        if (!victim)
            return 0;
        dgram_drop(t, victim, PH_C_FRAG_OVERFLOW);
    }
    return 1;
}

static frag_dgram *lookup(ph_frag_table *t, const ph_frag_key *k, uint64_t h)
{
    frag_dgram *dg;

    for (dg = t->buckets[h & t->mask]; dg; dg = dg->hnext)
        if (dg->hash == h && key_eq(&dg->key, k))
            return dg;
    return NULL;
}

static frag_dgram *create(ph_frag_table *t, const ph_frag_key *k, uint64_t h, int64_t ts_ns)
{
    frag_dgram *dg;

    if (t->n >= t->max_dgrams && t->oldest)
        dgram_drop(t, t->oldest, PH_C_FRAG_OVERFLOW);
    if (!reserve(t, NULL, sizeof *dg))
        return NULL;
    dg = calloc(1, sizeof *dg);
    if (!dg)
        return NULL;
    dg->key = *k;
    dg->hash = h;
    dg->created_ns = ts_ns;
    dg->bytes = sizeof *dg;
    dg->hnext = t->buckets[h & t->mask];
    t->buckets[h & t->mask] = dg;
    dg->older = t->newest;
    if (t->newest)
        t->newest->newer = dg;
    else
        t->oldest = dg;
    t->newest = dg;
    t->n++;
    t->bytes += dg->bytes;
    return dg;
}

/* Grow dg's data buffer to hold at least need bytes. */
static int grow(ph_frag_table *t, frag_dgram *dg, uint32_t need)
{
    uint32_t ncap;
    uint8_t *nd;

    if (need <= dg->cap)
        return 1;
    if (dg->have_last && dg->frag_size >= need)
        ncap = dg->frag_size;            /* exact size is known */
    else {
        ncap = dg->cap ? dg->cap * 2 : 2048;
        if (ncap < need)
            ncap = need;
        if (ncap > PH_FRAG_MAX_DATA)
            ncap = PH_FRAG_MAX_DATA;
    }
    if (!reserve(t, dg, ncap - dg->cap))
        return 0;
    nd = realloc(dg->data, ncap);
    if (!nd)
        return 0;
    t->bytes += ncap - dg->cap;
    dg->bytes += ncap - dg->cap;
    dg->data = nd;
    dg->cap = ncap;
    return 1;
}

/* Merge [lo, hi) from src into dg: copy only bytes not received yet (first
 * writer wins) and keep the range array sorted, disjoint and non-adjacent.
 * Returns 0 when one more range would exceed PH_FRAG_MAX_RANGES. */
static int merge(frag_dgram *dg, uint32_t lo, uint32_t hi, const uint8_t *src)
{
    uint32_t i, j, a = 0, b = dg->nr, cur = lo, nlo, nhi;

    /* i = first range with r.hi >= lo (ranges are sorted on both ends) */
    while (a < b) {
        uint32_t m = a + (b - a) / 2;
        if (dg->r[m].hi < lo)
            a = m + 1;
        else
            b = m;
    }
    i = a;
    for (j = i; j < dg->nr && dg->r[j].lo <= hi; j++)
        ;
    if (i == j && dg->nr >= PH_FRAG_MAX_RANGES)
        return 0;
    for (uint32_t k = i; k < j; k++) {
        if (dg->r[k].lo > cur)
            memcpy(dg->data + cur, src + (cur - lo), dg->r[k].lo - cur);
        if (dg->r[k].hi > cur)
            cur = dg->r[k].hi;
    }
    if (cur < hi)
        memcpy(dg->data + cur, src + (cur - lo), hi - cur);
    if (i == j) {
        memmove(&dg->r[i + 1], &dg->r[i], (dg->nr - i) * sizeof dg->r[0]);
        dg->r[i].lo = lo;
        dg->r[i].hi = hi;
        dg->nr++;
        return 1;
    }
    nlo = dg->r[i].lo < lo ? dg->r[i].lo : lo;
    nhi = dg->r[j - 1].hi > hi ? dg->r[j - 1].hi : hi;
    dg->r[i].lo = nlo;
    dg->r[i].hi = nhi;
    memmove(&dg->r[i + 1], &dg->r[j], (dg->nr - j) * sizeof dg->r[0]);
    dg->nr -= j - i - 1;
    return 1;
}

int ph_frag_add(ph_frag_table *t, const ph_frag_key *k, int64_t ts_ns, uint32_t offset, int more,
                const uint8_t *hdr, uint32_t hdr_len, const uint8_t *data, uint32_t len,
                uint8_t **out, uint32_t *out_hdr_len, uint32_t *out_data_len)
{
    uint64_t h = key_hash(t, k);
    frag_dgram *dg;
    uint32_t hi;
    int invalid = offset > PH_FRAG_MAX_DATA || len > PH_FRAG_MAX_DATA - offset ||
                  (offset == 0 && hdr_len > PH_FRAG_MAX_HDR);

    ph_frag_expire(t, ts_ns);
    dg = lookup(t, k, h);
    if (invalid) {
        if (dg)
            dgram_drop(t, dg, PH_C_FRAG_OVERFLOW);
        else
            t->counters[PH_C_FRAG_OVERFLOW]++;
        return PH_FRAG_DROPPED;
    }
    if (!dg) {
        dg = create(t, k, h, ts_ns);
        if (!dg) {
            t->counters[PH_C_FRAG_OVERFLOW]++;
            return PH_FRAG_DROPPED;
        }
    }
    hi = offset + len;

    if (offset == 0 && !dg->have_hdr) {
        if (!reserve(t, dg, hdr_len) || !(dg->hdr = malloc(hdr_len ? hdr_len : 1)))
            goto overflow;
        memcpy(dg->hdr, hdr, hdr_len);
        dg->hdr_len = hdr_len;
        dg->have_hdr = 1;
        dg->bytes += hdr_len;
        t->bytes += hdr_len;
    }
    /* Zeek (Frag.cc): the expected size comes from the last fragment; the
     * largest end wins if several disagree, and a later fragment reaching
     * beyond it extends it. */
    if (!more) {
        if (!dg->have_last || hi > dg->frag_size)
            dg->frag_size = hi;
        dg->have_last = 1;
    } else if (dg->have_last && hi > dg->frag_size)
        dg->frag_size = hi;

    if (len) {
        if (!grow(t, dg, hi) || !merge(dg, offset, hi, data))
            goto overflow;
    }

    if (dg->have_last && dg->have_hdr && dg->nr && dg->r[0].lo == 0 && dg->r[0].hi >= dg->frag_size) {
        uint32_t size = dg->r[0].hi;
        memcpy(t->out, dg->hdr, dg->hdr_len);
        memcpy(t->out + dg->hdr_len, dg->data, size);
        *out = t->out;
        *out_hdr_len = dg->hdr_len;
        *out_data_len = size;
        t->counters[PH_C_FRAGMENTS_REASSEMBLED]++;
        dgram_unlink(t, dg);            /* its held fragments stay held: absorbed */
        return PH_FRAG_DONE;
    }
    dg->n_held++;
    t->last_held = dg;
    return PH_FRAG_HELD;

overflow:
    dgram_drop(t, dg, PH_C_FRAG_OVERFLOW);
    return PH_FRAG_DROPPED;
}

void ph_frag_unhold_last(ph_frag_table *t)
{
    if (t->last_held && t->last_held->n_held)
        t->last_held->n_held--;
    t->last_held = NULL;
}

uint8_t *ph_frag_single(ph_frag_table *t, const uint8_t *hdr, uint32_t hdr_len, const uint8_t *data, uint32_t len)
{
    if (hdr_len > PH_FRAG_MAX_HDR || len > PH_FRAG_MAX_DATA)
        return NULL;
    memcpy(t->out, hdr, hdr_len);
    memcpy(t->out + hdr_len, data, len);
    return t->out;
}
