/*
 * ph_stats.h -- per-flow feature accumulators (pyhunt.schema `_features`).
 *
 * Moments are kept as exact integer sums (sum x, sum x^2) rather than as a
 * running floating-point mean: the population mean and standard deviation
 * computed from them at export are exact (what Welford's method approximates),
 * the per-packet update needs no division, and combining two directions into
 * "both" is an exact addition of sums. Packet sizes are IP lengths (< 2^17),
 * so sum x^2 fits 64 bits; inter-arrival times are nanoseconds, so their
 * sum of squares is 128 bits, kept as two 64-bit halves (ph_u128x: 8-byte
 * alignment, no padding in the flow). The sum of sizes is the flow's IP byte
 * counter (ph_flow.ipb), so it is not kept twice; TCP flag counters live with
 * the TCP state (ph_tcp_st.tcpf, 16 bits until one would overflow, then 32 in
 * a ph_tcp_wide record) and empty-packet counters in the flow.
 */
#ifndef PH_STATS_H
#define PH_STATS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

__extension__ typedef unsigned __int128 ph_u128;

/* A 128-bit counter stored as two 64-bit words (8-byte aligned). */
typedef struct ph_u128x {
    uint64_t lo, hi;
} ph_u128x;

static inline ph_u128 ph_u128x_get(ph_u128x v) { return (ph_u128)v.hi << 64 | v.lo; }

static inline void ph_u128x_add(ph_u128x *v, ph_u128 x)
{
    ph_u128 s = ph_u128x_get(*v) + x;
    v->lo = (uint64_t)s;
    v->hi = (uint64_t)(s >> 64);
}

/* One direction's packet statistics (the sum of sizes is ph_flow.ipb[d]). */
typedef struct ph_dstat {
    uint64_t sz_sq;         /* sum of squared IP lengths */
    uint64_t iat_sum;       /* sum of inter-arrival times (ns) */
    ph_u128x iat_sq;        /* sum of squared inter-arrival times (ns^2) */
    uint64_t iat_min, iat_max;
    uint32_t sz_min, sz_max;
} ph_dstat;

/* Inter-arrival statistics over both directions. */
typedef struct ph_istat {
    uint64_t sum;
    ph_u128x sq;
    uint64_t min, max;
} ph_istat;

static inline void ph_dstat_init(ph_dstat *d)
{
    memset(d, 0, sizeof *d);
    d->sz_min = UINT32_MAX;
    d->iat_min = UINT64_MAX;
}

static inline void ph_istat_init(ph_istat *s)
{
    memset(s, 0, sizeof *s);
    s->min = UINT64_MAX;
}

static inline void ph_istat_add(ph_istat *s, uint64_t x)
{
    s->sum += x;
    ph_u128x_add(&s->sq, (ph_u128)x * x);
    if (x < s->min)
        s->min = x;
    if (x > s->max)
        s->max = x;
}

static inline void ph_dstat_size(ph_dstat *d, uint32_t len)
{
    d->sz_sq += (uint64_t)len * len;
    if (len < d->sz_min)
        d->sz_min = len;
    if (len > d->sz_max)
        d->sz_max = len;
}

static inline void ph_dstat_iat(ph_dstat *d, uint64_t x)
{
    d->iat_sum += x;
    ph_u128x_add(&d->iat_sq, (ph_u128)x * x);
    if (x < d->iat_min)
        d->iat_min = x;
    if (x > d->iat_max)
        d->iat_max = x;
}

/* Count the TCP flag bits of one packet in tcpf[8] (PH_TCP_* bit order). */
static inline void ph_tcpflags_count(uint32_t tcpf[8], uint8_t flags)
{
    while (flags) {
        tcpf[__builtin_ctz(flags)]++;
        flags &= (uint8_t)(flags - 1);
    }
}

static inline double ph_u128_to_double(ph_u128 v)
{
    return (v >> 64) ? (double)v : (double)(uint64_t)v;
}

/* Population mean and standard deviation of n values from their sums.
 * var * n^2 = n * sum(x^2) - sum(x)^2 is computed exactly in 128 bits when it
 * fits (always for packet sizes), then rounded once to double. */
static inline void ph_moments(uint64_t n, uint64_t sum, ph_u128 sq, double *mean, double *std)
{
    if (n == 0) {
        *mean = 0.0;
        *std = 0.0;
        return;
    }
    double dn = (double)n;
    *mean = (double)sum / dn;
    if (n == 1) {
        *std = 0.0;
        return;
    }
    ph_u128 a, b = (ph_u128)sum * sum;
    double var;
    if (!__builtin_mul_overflow(sq, (ph_u128)n, &a)) {
        var = a > b ? ph_u128_to_double(a - b) / (dn * dn) : 0.0;
    } else {
        double m = (double)sum / dn;
        var = ph_u128_to_double(sq) / dn - m * m;
        if (var < 0)
            var = 0;
    }
    *std = sqrt(var);
}

#endif /* PH_STATS_H */
