/*
 * ph_format.c -- flow records -> ECS NDJSON, Zeek conn.log JSON, Zeek conn.log TSV.
 *
 * Every record is written into space reserved up front (a per-format upper
 * bound), so the field writers below bump a pointer without checks; the only
 * failure is running out of memory while reserving, which returns -1 and
 * leaves the buffer as it was before the call.
 *
 * Numbers are formatted by hand (no printf on the hot path). Times and
 * durations come from the integer nanosecond fields and are rounded to whole
 * microseconds in integer arithmetic, so "1300475167.096535" is exactly what
 * the capture said, with no binary floating point in between:
 *   zeek-tsv   ts and duration with 6 decimals, as Zeek's ASCII writer (%.6f);
 *   zeek-json  the same value with trailing zeros dropped and at least one
 *              decimal ("1300475167.0"), as Zeek's JSON writer (rapidjson's
 *              shortest round-trip form) prints a microsecond timestamp;
 *              durations are the exact microsecond value (0.01436) where Zeek
 *              would print its double subtraction (0.014359951019287109);
 *   ecs        ISO 8601 UTC with 6 fractional digits ("2011-03-18T19:06:07.096535Z"),
 *              event.duration in integer nanoseconds (ts_end - ts_start).
 *
 * Zeek parity details: like Zeek, the zeek-* formats log ports 0/0 and proto
 * "unknown_transport" for everything but TCP, UDP, ICMP and ICMPv6 (SCTP too;
 * ECS keeps SCTP's ports); duration/orig_bytes/resp_bytes only when
 * ts_end > ts_start; history unset when empty; local_orig/local_resp only when
 * local networks are known; service and tunnel_parents are unset ("-" in TSV,
 * absent in JSON). ECS puts an ICMP flow's id.orig_p/id.resp_p under
 * zeek.connection.icmp.type/.code exactly as Elastic's Zeek integration does
 * (so for request/reply types "code" is Zeek's counterpart type).
 */
#include "ph_format.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------ */
/* Growable buffer                                                     */
/* ------------------------------------------------------------------ */

int ph_buf_reserve(ph_buf *b, size_t extra)
{
    if (extra <= b->cap - b->len)
        return 0;
    if (extra > (SIZE_MAX >> 1) - b->len) /* no object may exceed PTRDIFF_MAX */
        return -1;
    size_t need = b->len + extra;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *p = (char *)realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

void ph_buf_free(ph_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------------ */
/* Numbers                                                             */
/* ------------------------------------------------------------------ */

static const char DIGITS2[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static inline int u64_ndigits(uint64_t v)
{
    int n = 1;
    for (;;) {
        if (v < 10) return n;
        if (v < 100) return n + 1;
        if (v < 1000) return n + 2;
        if (v < 10000) return n + 3;
        v /= 10000u;
        n += 4;
    }
}

/* exactly ndig digits of v (v < 10^ndig), written backwards from p + ndig */
static inline void put_digits(char *p, uint64_t v, int ndig)
{
    char *e = p + ndig;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100u);
        v /= 100u;
        e -= 2;
        memcpy(e, DIGITS2 + 2 * r, 2);
    }
    if (v >= 10) {
        e -= 2;
        memcpy(e, DIGITS2 + 2 * v, 2);
    } else {
        *--e = (char)('0' + v);
    }
    while (e > p)             /* leading zeros when ndig is wider than v */
        *--e = '0';
}

static inline char *put_u64(char *p, uint64_t v)
{
    int n = u64_ndigits(v);
    put_digits(p, v, n);
    return p + n;
}

/* exactly 6 digits, with leading zeros (v < 10^6) */
static inline char *put_6digits(char *p, uint32_t v)
{
    uint32_t hi = v / 10000u, lo = v % 10000u;
    memcpy(p, DIGITS2 + 2 * hi, 2);
    memcpy(p + 2, DIGITS2 + 2 * (lo / 100u), 2);
    memcpy(p + 4, DIGITS2 + 2 * (lo % 100u), 2);
    return p + 6;
}

/* 32-bit values: the common case for counters and sizes, cheaper than the u64 path */
static inline char *put_u32(char *p, uint32_t v)
{
    if (v < 10) {
        *p = (char)('0' + v);
        return p + 1;
    }
    if (v < 100) {
        memcpy(p, DIGITS2 + 2 * v, 2);
        return p + 2;
    }
    int n = v < 1000 ? 3 : v < 10000 ? 4 : v < 100000 ? 5 : v < 1000000 ? 6 : v < 10000000 ? 7
          : v < 100000000 ? 8 : v < 1000000000 ? 9 : 10;
    char *e = p + n;
    while (v >= 100) {
        uint32_t r = v % 100u;
        v /= 100u;
        e -= 2;
        memcpy(e, DIGITS2 + 2 * r, 2);
    }
    if (v >= 10)
        memcpy(e - 2, DIGITS2 + 2 * v, 2);
    else
        e[-1] = (char)('0' + v);
    return p + n;
}

static inline char *put_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(p, (uint64_t)v);
}

static inline char *put_mem(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* Copy n bytes in 16-byte chunks: may write up to 15 bytes past p + n (inside
 * the reserved record space) and read up to 15 past s + n (callers guarantee
 * the source has that slack). Faster than a memcpy call for short fragments. */
static inline char *put_chunks(char *p, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i += 16)
        memcpy(p + i, s + i, 16);
    return p + n;
}
#define PUT(p, lit) put_mem((p), (lit), sizeof(lit) - 1)

/* "<int>.<6 digits>" or, with trim, trailing zeros dropped keeping one digit */
static char *put_fixed6(char *p, int neg, uint64_t micros, int trim)
{
    uint64_t ip = micros / 1000000u;
    uint32_t fr = (uint32_t)(micros % 1000000u);
    if (neg && micros)
        *p++ = '-';
    p = ip <= UINT32_MAX ? put_u32(p, (uint32_t)ip) : put_u64(p, ip);
    *p++ = '.';
    if (!trim)
        return put_6digits(p, fr);
    int nd = 6;
    while (nd > 1 && fr % 10u == 0) {
        fr /= 10u;
        nd--;
    }
    put_digits(p, fr, nd);
    return p + nd;
}

/* nanoseconds -> microseconds, rounded half away from zero */
static inline uint64_t ns_to_us_round(uint64_t ns) { return ns / 1000u + (ns % 1000u >= 500u); }

/* signed nanoseconds as seconds with microsecond precision */
static char *put_secs(char *p, int64_t ns, int trim)
{
    int neg = ns < 0;
    uint64_t mag = neg ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    return put_fixed6(p, neg, ns_to_us_round(mag), trim);
}

/* A double with 6 fixed decimals; never NaN/inf (written as 0). Values below
 * 9e12 go through an exact integer path (one rounding of v*1e6); larger ones
 * (whose binary precision is coarser than 1e-3 anyway) use %.17g, which may
 * give an exponent ("1e+20"), and always show as a float ("9000000000000.0"). */
static char *put_double6(char *p, double v)
{
    if (v == 0.0 || !isfinite(v))
        return PUT(p, "0.000000");
    int neg = v < 0;
    double a = neg ? -v : v;
    if (a < 9.0e12)
        return put_fixed6(p, neg, (uint64_t)(int64_t)(a * 1e6 + 0.5), 0); /* < 2^63: one cvttsd2si */
    char tmp[48];
    int n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return PUT(p, "0.000000");
    /* whatever the locale's decimal point is (',' or a multi-byte one), write '.' */
    int point = 0, exp = 0;
    for (int i = 0; i < n;) {
        char c = tmp[i];
        if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e') {
            exp |= c == 'e';
            *p++ = c;
            i++;
            continue;
        }
        *p++ = '.';
        point = 1;
        while (i < n && !(tmp[i] >= '0' && tmp[i] <= '9'))
            i++;
    }
    if (!point && !exp)
        p = PUT(p, ".0"); /* stay a JSON float, like every other value of the field */
    return p;
}

/* ------------------------------------------------------------------ */
/* Addresses                                                           */
/* ------------------------------------------------------------------ */

static inline char *put_u8dec(char *p, unsigned v)
{
    if (v >= 100) {
        *p++ = (char)('0' + v / 100);
        v %= 100;
        memcpy(p, DIGITS2 + 2 * v, 2);
        return p + 2;
    }
    if (v >= 10) {
        memcpy(p, DIGITS2 + 2 * v, 2);
        return p + 2;
    }
    *p++ = (char)('0' + v);
    return p;
}

static char *put_ipv4(char *p, const uint8_t *a)
{
    p = put_u8dec(p, a[0]);
    *p++ = '.';
    p = put_u8dec(p, a[1]);
    *p++ = '.';
    p = put_u8dec(p, a[2]);
    *p++ = '.';
    return put_u8dec(p, a[3]);
}

static const char HEXL[] = "0123456789abcdef";
static const char HEXU[] = "0123456789ABCDEF";

static inline char *put_hex16(char *p, unsigned w)
{
    /* lowercase, no leading zeros (RFC 5952 4.1, 4.3) */
    if (w >= 0x1000) *p++ = HEXL[(w >> 12) & 15];
    if (w >= 0x100) *p++ = HEXL[(w >> 8) & 15];
    if (w >= 0x10) *p++ = HEXL[(w >> 4) & 15];
    *p++ = HEXL[w & 15];
    return p;
}

/* RFC 5952 text: the longest run (first on a tie) of two or more zero groups
 * becomes "::"; IPv4-mapped addresses (::ffff:0:0/96) end in dotted quad. */
static char *put_ipv6(char *p, const uint8_t *a)
{
    unsigned w[8];
    for (int i = 0; i < 8; i++)
        w[i] = ((unsigned)a[2 * i] << 8) | a[2 * i + 1];

    if (!w[0] && !w[1] && !w[2] && !w[3] && !w[4] && w[5] == 0xffff) {
        p = PUT(p, "::ffff:");
        return put_ipv4(p, a + 12);
    }

    int best = -1, bestlen = 1;
    for (int i = 0; i < 8;) {
        if (w[i]) {
            i++;
            continue;
        }
        int j = i;
        while (j < 8 && !w[j])
            j++;
        if (j - i > bestlen) {
            best = i;
            bestlen = j - i;
        }
        i = j;
    }

    for (int i = 0; i < 8; i++) {
        if (i == best) {
            *p++ = ':';
            *p++ = ':';
            i += bestlen - 1;
            continue;
        }
        if (i > 0 && i != best + bestlen)
            *p++ = ':';
        p = put_hex16(p, w[i]);
    }
    return p;
}

static inline char *put_addr(char *p, uint8_t ipver, const uint8_t *a)
{
    return ipver == 4 ? put_ipv4(p, a) : put_ipv6(p, a);
}

/* ECS MAC form AA-BB-CC-DD-EE-FF */
static char *put_mac(char *p, const uint8_t *m)
{
    for (int i = 0; i < 6; i++) {
        if (i)
            *p++ = '-';
        *p++ = HEXU[m[i] >> 4];
        *p++ = HEXU[m[i] & 15];
    }
    return p;
}

/* ------------------------------------------------------------------ */
/* Strings                                                             */
/* ------------------------------------------------------------------ */

/* Length of a valid UTF-8 sequence of 2..4 bytes at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* A JSON string (with quotes). Valid UTF-8 passes through; control characters
 * and invalid bytes become \u00XX escapes. Worst case 6 bytes per input byte + 2. */
static char *put_json_str(char *p, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    *p++ = '"';
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            *p++ = (char)c;
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = utf8_seq(s + i, n - i);
            if (k) {
                p = put_mem(p, (const char *)s + i, k);
                i += k;
                continue;
            }
        }
        *p++ = '\\';
        switch (c) {
        case '"': *p++ = '"'; break;
        case '\\': *p++ = '\\'; break;
        case '\n': *p++ = 'n'; break;
        case '\r': *p++ = 'r'; break;
        case '\t': *p++ = 't'; break;
        default:
            p = PUT(p, "u00");
            *p++ = HEXL[c >> 4];
            *p++ = HEXL[c & 15];
        }
        i++;
    }
    *p++ = '"';
    return p;
}

/* A Zeek TSV field: printable ASCII as is; control characters (the tab
 * separator among them), non-ASCII bytes and the backslash as \xNN, as Zeek's
 * ASCII writer escapes. Worst case 4 bytes per byte. */
static char *put_tsv_str(char *p, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            *p++ = (char)c;
        } else {
            *p++ = '\\';
            *p++ = 'x';
            *p++ = HEXL[c >> 4];
            *p++ = HEXL[c & 15];
        }
    }
    return p;
}

/* ------------------------------------------------------------------ */
/* Names                                                               */
/* ------------------------------------------------------------------ */

/* conn_state and end_reason names come from the generated ph_record.h (pyhunt/schema.py). */
static inline const char *conn_state_name(uint8_t cs)
{
    return cs < PH_N_CONN_STATES ? ph_conn_state_names[cs] : "OTH";
}

static inline int is_icmp(uint8_t proto) { return proto == 1 || proto == 58; }

/* Zeek's transport_proto enum: ICMPv6 is "icmp" too; SCTP and the rest are unknown. */
static inline int zeek_has_ports(uint8_t proto) { return proto == 6 || proto == 17 || is_icmp(proto); }

static char *put_zeek_proto(char *p, uint8_t proto)
{
    switch (proto) {
    case 6: return PUT(p, "tcp");
    case 17: return PUT(p, "udp");
    case 1:
    case 58: return PUT(p, "icmp");
    default: return PUT(p, "unknown_transport");
    }
}

/* ECS network.transport: IANA protocol keywords, lowercase; else the number */
static char *put_ecs_transport(char *p, uint8_t proto)
{
    switch (proto) {
    case 1: return PUT(p, "icmp");
    case 2: return PUT(p, "igmp");
    case 4: return PUT(p, "ipv4");
    case 6: return PUT(p, "tcp");
    case 17: return PUT(p, "udp");
    case 41: return PUT(p, "ipv6");
    case 46: return PUT(p, "rsvp");
    case 47: return PUT(p, "gre");
    case 50: return PUT(p, "esp");
    case 51: return PUT(p, "ah");
    case 58: return PUT(p, "ipv6-icmp");
    case 88: return PUT(p, "eigrp");
    case 89: return PUT(p, "ospf");
    case 103: return PUT(p, "pim");
    case 112: return PUT(p, "vrrp");
    case 115: return PUT(p, "l2tp");
    case 132: return PUT(p, "sctp");
    default: return put_u64(p, proto);
    }
}

/* ------------------------------------------------------------------ */
/* uid                                                                 */
/* ------------------------------------------------------------------ */

#define PH_UID_DIGITS 11 /* 62^11 > 2^64 */

static char *put_uid(char *p, uint64_t id)
{
    static const char B62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    *p++ = 'C';
    for (int i = PH_UID_DIGITS - 1; i >= 0; i--) {
        p[i] = B62[id % 62u];
        id /= 62u;
    }
    return p + PH_UID_DIGITS;
}

void ph_format_uid(uint64_t flow_id, char out[16])
{
    char *e = put_uid(out, flow_id);
    *e = '\0';
}

#define N_PARENTS ((int)(sizeof(((ph_flow_rec *)0)->tunnel_parents) / sizeof(uint64_t)))

static inline int has_parents(const ph_flow_rec *r) { return r->tunnel_parents[0] != 0; }

/* tunnel_parents as a JSON array of uids, or Zeek TSV's comma-separated set. */
static char *put_parents(char *p, const ph_flow_rec *r, int json)
{
    if (json)
        *p++ = '[';
    for (int i = 0; i < N_PARENTS && r->tunnel_parents[i]; i++) {
        if (i)
            *p++ = ',';
        if (json)
            *p++ = '"';
        p = put_uid(p, r->tunnel_parents[i]);
        if (json)
            *p++ = '"';
    }
    if (json)
        *p++ = ']';
    return p;
}

/* ------------------------------------------------------------------ */
/* ISO 8601 time                                                       */
/* ------------------------------------------------------------------ */

/* days since 1970-01-01 -> civil date (proleptic Gregorian; H. Hinnant's algorithm) */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

/* "2011-03-18T04:26:07.096535Z" (microseconds, rounded; UTC) */
static char *put_iso(char *p, int64_t ns)
{
    int neg = ns < 0;
    uint64_t mag = neg ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    uint64_t us = ns_to_us_round(mag);
    int64_t secs;
    uint32_t frac;
    if (!neg) {
        secs = (int64_t)(us / 1000000u);
        frac = (uint32_t)(us % 1000000u);
    } else {
        /* floor towards -inf so the fraction stays positive */
        secs = -(int64_t)(us / 1000000u);
        frac = (uint32_t)(us % 1000000u);
        if (frac) {
            secs -= 1;
            frac = 1000000u - frac;
        }
    }
    int64_t days = secs / 86400;
    int64_t sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days -= 1;
    }
    int64_t y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    if (y < 0 || y > 9999)
        y = y < 0 ? 0 : 9999; /* outside ISO's 4-digit range: clamp (int64 ns cannot reach it) */
    put_digits(p, (uint64_t)y, 4);
    p += 4;
    *p++ = '-';
    memcpy(p, DIGITS2 + 2 * mo, 2);
    p += 2;
    *p++ = '-';
    memcpy(p, DIGITS2 + 2 * d, 2);
    p += 2;
    *p++ = 'T';
    unsigned hh = (unsigned)(sod / 3600), mm = (unsigned)(sod / 60 % 60), ss = (unsigned)(sod % 60);
    memcpy(p, DIGITS2 + 2 * hh, 2);
    p += 2;
    *p++ = ':';
    memcpy(p, DIGITS2 + 2 * mm, 2);
    p += 2;
    *p++ = ':';
    memcpy(p, DIGITS2 + 2 * ss, 2);
    p += 2;
    *p++ = '.';
    put_digits(p, frac, 6);
    p += 6;
    *p++ = 'Z';
    return p;
}

/* ------------------------------------------------------------------ */
/* Record helpers                                                      */
/* ------------------------------------------------------------------ */

static inline size_t field_strlen(const char *s, size_t cap)
{
    const char *z = (const char *)memchr(s, 0, cap);
    return z ? (size_t)(z - s) : cap;
}

static inline int has_duration(const ph_flow_rec *r) { return r->ts_end > r->ts_start; }

static inline uint64_t duration_ns(const ph_flow_rec *r)
{
    return has_duration(r) ? (uint64_t)r->ts_end - (uint64_t)r->ts_start : 0;
}

/* ------------------------------------------------------------------ */
/* Zeek conn.log JSON                                                  */
/* ------------------------------------------------------------------ */

/* Upper bound of one line: fixed text + 40-byte history and 32-byte
 * community id fully escaped (6x). */
#define ZEEK_LINE_MAX 2048

static char *zeek_json_line(char *p, const ph_flow_rec *r)
{
    int ports = zeek_has_ports(r->proto);

    p = PUT(p, "{\"ts\":");
    p = put_secs(p, r->ts_start, 1);
    p = PUT(p, ",\"uid\":\"");
    p = put_uid(p, r->flow_id);
    p = PUT(p, "\",\"id.orig_h\":\"");
    p = put_addr(p, r->ip_version, r->orig_h);
    p = PUT(p, "\",\"id.orig_p\":");
    p = put_u64(p, ports ? r->orig_p : 0);
    p = PUT(p, ",\"id.resp_h\":\"");
    p = put_addr(p, r->ip_version, r->resp_h);
    p = PUT(p, "\",\"id.resp_p\":");
    p = put_u64(p, ports ? r->resp_p : 0);
    p = PUT(p, ",\"proto\":\"");
    p = put_zeek_proto(p, r->proto);
    *p++ = '"';
    if (has_duration(r)) {
        p = PUT(p, ",\"duration\":");
        p = put_fixed6(p, 0, ns_to_us_round(duration_ns(r)), 1);
        p = PUT(p, ",\"orig_bytes\":");
        p = put_u64(p, r->orig_bytes);
        p = PUT(p, ",\"resp_bytes\":");
        p = put_u64(p, r->resp_bytes);
    }
    p = PUT(p, ",\"conn_state\":\"");
    const char *cs = conn_state_name(r->conn_state);
    p = put_mem(p, cs, strlen(cs));
    *p++ = '"';
    if (r->flags & PH_RF_LOCAL_KNOWN) {
        p = (r->flags & PH_RF_LOCAL_ORIG) ? PUT(p, ",\"local_orig\":true") : PUT(p, ",\"local_orig\":false");
        p = (r->flags & PH_RF_LOCAL_RESP) ? PUT(p, ",\"local_resp\":true") : PUT(p, ",\"local_resp\":false");
    }
    p = PUT(p, ",\"missed_bytes\":");
    p = put_u64(p, r->missed_bytes);
    size_t hl = field_strlen(r->history, sizeof(r->history));
    if (hl) {
        p = PUT(p, ",\"history\":");
        p = put_json_str(p, r->history, hl);
    }
    p = PUT(p, ",\"orig_pkts\":");
    p = put_u64(p, r->orig_pkts);
    p = PUT(p, ",\"orig_ip_bytes\":");
    p = put_u64(p, r->orig_ip_bytes);
    p = PUT(p, ",\"resp_pkts\":");
    p = put_u64(p, r->resp_pkts);
    p = PUT(p, ",\"resp_ip_bytes\":");
    p = put_u64(p, r->resp_ip_bytes);
    if (has_parents(r)) {
        p = PUT(p, ",\"tunnel_parents\":");
        p = put_parents(p, r, 1);
    }
    p = PUT(p, ",\"ip_proto\":");
    p = put_u64(p, r->proto);
    size_t cl = field_strlen(r->community_id, sizeof(r->community_id));
    if (cl) {
        p = PUT(p, ",\"community_id\":");
        p = put_json_str(p, r->community_id, cl);
    }
    p = PUT(p, "}\n");
    return p;
}

/* ------------------------------------------------------------------ */
/* Zeek conn.log TSV                                                   */
/* ------------------------------------------------------------------ */

static char *zeek_tsv_line(char *p, const ph_flow_rec *r)
{
    int ports = zeek_has_ports(r->proto);

    p = put_secs(p, r->ts_start, 0);
    *p++ = '\t';
    p = put_uid(p, r->flow_id);
    *p++ = '\t';
    p = put_addr(p, r->ip_version, r->orig_h);
    *p++ = '\t';
    p = put_u64(p, ports ? r->orig_p : 0);
    *p++ = '\t';
    p = put_addr(p, r->ip_version, r->resp_h);
    *p++ = '\t';
    p = put_u64(p, ports ? r->resp_p : 0);
    *p++ = '\t';
    p = put_zeek_proto(p, r->proto);
    p = PUT(p, "\t-\t"); /* service: unset */
    if (has_duration(r)) {
        p = put_fixed6(p, 0, ns_to_us_round(duration_ns(r)), 0);
        *p++ = '\t';
        p = put_u64(p, r->orig_bytes);
        *p++ = '\t';
        p = put_u64(p, r->resp_bytes);
        *p++ = '\t';
    } else {
        p = PUT(p, "-\t-\t-\t");
    }
    const char *cs = conn_state_name(r->conn_state);
    p = put_mem(p, cs, strlen(cs));
    if (r->flags & PH_RF_LOCAL_KNOWN) {
        p = (r->flags & PH_RF_LOCAL_ORIG) ? PUT(p, "\tT") : PUT(p, "\tF");
        p = (r->flags & PH_RF_LOCAL_RESP) ? PUT(p, "\tT\t") : PUT(p, "\tF\t");
    } else {
        p = PUT(p, "\t-\t-\t");
    }
    p = put_u64(p, r->missed_bytes);
    *p++ = '\t';
    size_t hl = field_strlen(r->history, sizeof(r->history));
    if (hl)
        p = put_tsv_str(p, r->history, hl);
    else
        *p++ = '-';
    *p++ = '\t';
    p = put_u64(p, r->orig_pkts);
    *p++ = '\t';
    p = put_u64(p, r->orig_ip_bytes);
    *p++ = '\t';
    p = put_u64(p, r->resp_pkts);
    *p++ = '\t';
    p = put_u64(p, r->resp_ip_bytes);
    *p++ = '\t';
    if (has_parents(r))
        p = put_parents(p, r, 0);
    else
        *p++ = '-';   /* unset, as Zeek logs it for direct connections */
    *p++ = '\t';
    p = put_u64(p, r->proto);
    *p++ = '\t';
    size_t cl = field_strlen(r->community_id, sizeof(r->community_id));
    if (cl)
        p = put_tsv_str(p, r->community_id, cl);
    else
        *p++ = '-';
    *p++ = '\n';
    return p;
}

static const char TSV_FIELDS[] =
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\t"
    "orig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\t"
    "orig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\tip_proto\tcommunity_id\n";
static const char TSV_TYPES[] =
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\t"
    "bool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\tcount\tstring\n";

int ph_format_tsv_header(ph_buf *out, const char *open_time)
{
    static const char head[] = "#separator \\x09\n"
                               "#set_separator\t,\n"
                               "#empty_field\t(empty)\n"
                               "#unset_field\t-\n"
                               "#path\tconn\n"
                               "#open\t";
    size_t tl = open_time ? strlen(open_time) : 0;
    if (ph_buf_reserve(out, sizeof(head) + tl * 4 + 1 + sizeof(TSV_FIELDS) + sizeof(TSV_TYPES)) != 0)
        return -1;
    char *p = out->data + out->len;
    p = PUT(p, head);
    p = put_tsv_str(p, open_time ? open_time : "", tl);
    *p++ = '\n';
    p = PUT(p, TSV_FIELDS);
    p = PUT(p, TSV_TYPES);
    out->len = (size_t)(p - out->data);
    return 0;
}

int ph_format_tsv_footer(ph_buf *out, const char *close_time)
{
    size_t tl = close_time ? strlen(close_time) : 0;
    if (ph_buf_reserve(out, 8 + tl * 4) != 0)
        return -1;
    char *p = out->data + out->len;
    p = PUT(p, "#close\t");
    p = put_tsv_str(p, close_time ? close_time : "", tl);
    *p++ = '\n';
    out->len = (size_t)(p - out->data);
    return 0;
}

/* ------------------------------------------------------------------ */
/* ECS: generic pyhunt.flow.* features from the generated field table  */
/* ------------------------------------------------------------------ */

/* The JSON skeleton around the feature values is the same for every record:
 * for each feature (in ph_rec_feature_order, sorted by ECS path) the text that
 * precedes its value (closing the previous path's objects, a comma, opening new
 * objects, the key), and after the last one the closing braces. Built once per
 * ph_format_records call into this plan. */
#define PLAN_POOL 4096
#define PLAN_SLACK 16 /* put_chunks reads past the last fragment */
#define PLAN_MAXDEPTH 8

typedef struct feat_plan {
    uint16_t off[PH_REC_NFEATURES], len[PH_REC_NFEATURES];
    uint8_t limit_first[PH_REC_NFEATURES]; /* a first_* array: only first_n slots are written */
    uint16_t tail_off, tail_len;
    size_t max_value_bytes;  /* upper bound of all values together */
    char pool[PLAN_POOL];
} feat_plan;

typedef struct path_parts {
    int n;                       /* number of components */
    const char *s[PLAN_MAXDEPTH];
    size_t l[PLAN_MAXDEPTH];
} path_parts;

static int split_path(const char *path, path_parts *pp)
{
    pp->n = 0;
    const char *c = path;
    for (;;) {
        const char *dot = strchr(c, '.');
        size_t l = dot ? (size_t)(dot - c) : strlen(c);
        if (pp->n == PLAN_MAXDEPTH || l == 0)
            return -1;
        pp->s[pp->n] = c;
        pp->l[pp->n] = l;
        pp->n++;
        if (!dot)
            return 0;
        c = dot + 1;
    }
}

/* worst-case bytes of one value of the given kind/size */
static size_t value_max(char kind)
{
    switch (kind) {
    case 'f': return 40;     /* fixed6 below 9e12 (21) or %.17g (<= 24) + ".0" */
    case 'i': return 21;
    case 'u': return 20;
    default: return 0;
    }
}

static int build_plan(feat_plan *fp)
{
    size_t used = 0, values = 0;
    path_parts prev = {0}, cur;
    memset(fp->pool, 0, sizeof(fp->pool)); /* put_chunks may read the slack after the last fragment */
    for (int k = 0; k < PH_REC_NFEATURES; k++) {
        const ph_rec_field *f = &ph_rec_fields[ph_rec_feature_order[k]];
        if (!f->ecs || split_path(f->ecs, &cur) != 0)
            return -1;
        int pdirs = prev.n ? prev.n - 1 : 0, cdirs = cur.n - 1;
        int common = 0;
        while (common < pdirs && common < cdirs && prev.l[common] == cur.l[common] &&
               memcmp(prev.s[common], cur.s[common], cur.l[common]) == 0)
            common++;
        size_t need = (size_t)(pdirs - common) + 1 + 3;
        for (int i = common; i < cur.n; i++)
            need += cur.l[i] + 5;
        if (used + need + PLAN_SLACK > PLAN_POOL)
            return -1;
        char *p = fp->pool + used, *start = p;
        for (int i = common; i < pdirs; i++)
            *p++ = '}';
        *p++ = ','; /* the enclosing object always holds something already */
        for (int i = common; i < cdirs; i++) {
            *p++ = '"';
            p = put_mem(p, cur.s[i], cur.l[i]);
            p = PUT(p, "\":{");
        }
        *p++ = '"';
        p = put_mem(p, cur.s[cdirs], cur.l[cdirs]);
        p = PUT(p, "\":");
        fp->limit_first[k] = f->count > 1 && strncmp(f->name, "first_", 6) == 0;
        fp->off[k] = (uint16_t)used;
        fp->len[k] = (uint16_t)(p - start);
        used += (size_t)(p - start);
        if (f->kind == 'S')
            values += (size_t)f->count * 6 + 2;
        else if (f->count > 1)
            values += 2 + (size_t)f->count * (value_max(f->kind) + 1);
        else
            values += value_max(f->kind);
        prev = cur;
    }
    int pdirs = prev.n ? prev.n - 1 : 0;
    if (used + (size_t)pdirs > PLAN_POOL)
        return -1;
    fp->tail_off = (uint16_t)used;
    memset(fp->pool + used, '}', (size_t)pdirs);
    fp->tail_len = (uint16_t)pdirs;
    used += (size_t)pdirs;
    fp->max_value_bytes = values + used;
    return 0;
}

static char *put_scalar(char *p, const char *src, char kind, unsigned elem)
{
    switch (kind) {
    case 'f': {
        double v;
        memcpy(&v, src, sizeof(v));
        return put_double6(p, v);
    }
    case 'i':
        switch (elem) {
        case 1: { int8_t v; memcpy(&v, src, 1); return put_i64(p, v); }
        case 2: { int16_t v; memcpy(&v, src, 2); return put_i64(p, v); }
        case 4: { int32_t v; memcpy(&v, src, 4); return put_i64(p, v); }
        default: { int64_t v; memcpy(&v, src, 8); return put_i64(p, v); }
        }
    default:
        switch (elem) {
        case 1: return put_u32(p, (uint8_t)*src);
        case 2: { uint16_t v; memcpy(&v, src, 2); return put_u32(p, v); }
        case 4: { uint32_t v; memcpy(&v, src, 4); return put_u32(p, v); }
        default: { uint64_t v; memcpy(&v, src, 8); return put_u64(p, v); }
        }
    }
}

/* The pyhunt.tunnel object (inside "pyhunt", after "flow"). */
static char *put_tunnel(char *p, const ph_flow_rec *r)
{
    static const char *const names[] = {"", "ip", "gre", "erspan", "vxlan", "geneve", "teredo", "gtpv1", "ayiya"};
    const char *n = r->tunnel_type < sizeof(names) / sizeof(names[0]) ? names[r->tunnel_type] : "unknown";
    p = PUT(p, ",\"tunnel\":{\"type\":\"");
    p = put_mem(p, n, strlen(n));
    *p++ = '"';
    if (r->flags & PH_RF_TUNNEL_KEY) {
        p = (r->tunnel_type == PH_TUN_VXLAN || r->tunnel_type == PH_TUN_GENEVE) ? PUT(p, ",\"vni\":")
                                                                               : PUT(p, ",\"key\":");
        p = put_u64(p, r->tunnel_key);
    }
    p = PUT(p, ",\"outer\":{\"source\":{\"ip\":\"");
    p = put_addr(p, r->tunnel_ipver, r->tunnel_outer_src);
    p = PUT(p, "\"},\"destination\":{\"ip\":\"");
    p = put_addr(p, r->tunnel_ipver, r->tunnel_outer_dst);
    return PUT(p, "\"}}}");
}

static char *put_features(char *p, const ph_flow_rec *r, const feat_plan *fp)
{
    const char *base = (const char *)r;
    unsigned first_n = r->first_n;
    for (int k = 0; k < PH_REC_NFEATURES; k++) {
        const ph_rec_field *f = &ph_rec_fields[ph_rec_feature_order[k]];
        p = put_chunks(p, fp->pool + fp->off[k], fp->len[k]);
        const char *src = base + f->offset;
        if (f->kind == 'S') {
            p = put_json_str(p, src, field_strlen(src, f->count));
        } else if (f->count == 1) {
            p = put_scalar(p, src, f->kind, f->elem);
        } else {
            /* first_* arrays hold first_n meaningful slots */
            unsigned n = f->count;
            if (fp->limit_first[k] && first_n < n)
                n = first_n;
            *p++ = '[';
            for (unsigned i = 0; i < n; i++) {
                if (i)
                    *p++ = ',';
                p = put_scalar(p, src + (size_t)i * f->elem, f->kind, f->elem);
            }
            *p++ = ']';
        }
    }
    if (!(r->flags & PH_RF_TUNNEL) || fp->tail_len < 1)
        return put_mem(p, fp->pool + fp->tail_off, fp->tail_len);
    /* close all but "pyhunt", add pyhunt.tunnel, close "pyhunt" */
    p = put_mem(p, fp->pool + fp->tail_off, (size_t)fp->tail_len - 1u);
    p = put_tunnel(p, r);
    *p++ = '}';
    return p;
}

/* ------------------------------------------------------------------ */
/* ECS document                                                        */
/* ------------------------------------------------------------------ */

/* fixed text of an ECS document without the features and the two option strings */
/* The members of an ECS source/destination object: ip, port (if the protocol has ports),
 * mac (if known: mac != NULL), bytes (IP level) and packets. */
static char *put_ecs_endpoint(char *p, uint8_t v, const uint8_t *addr, int ports, uint16_t port,
                              const uint8_t *mac, uint64_t ip_bytes, uint64_t pkts)
{
    p = PUT(p, "\"ip\":\"");
    p = put_addr(p, v, addr);
    *p++ = '"';
    if (ports) {
        p = PUT(p, ",\"port\":");
        p = put_u64(p, port);
    }
    if (mac) {
        p = PUT(p, ",\"mac\":\"");
        p = put_mac(p, mac);
        *p++ = '"';
    }
    p = PUT(p, ",\"bytes\":");
    p = put_u64(p, ip_bytes);
    p = PUT(p, ",\"packets\":");
    return put_u64(p, pkts);
}

/* ECS version the documents follow (ecs.version). */
#define PH_ECS_VERSION "8.11.0"

/* pyhunt.schema.END_REASONS, by index (event.reason). */
static const char *end_reason_name(uint8_t r)
{
    return r < PH_N_END_REASONS ? ph_end_reason_names[r] : "unknown";
}

#define ECS_FIXED_MAX 3584   /* includes the tunnel objects (< 400 bytes) */

typedef struct ecs_ctx {
    const char *observer;
    size_t observer_len;
    const char *dataset;
    size_t dataset_len;
    feat_plan plan;
} ecs_ctx;

static char *ecs_doc(char *p, const ph_flow_rec *r, const ecs_ctx *cx)
{
    int icmp = is_icmp(r->proto);
    int ports = r->proto == 6 || r->proto == 17 || r->proto == 132;
    uint8_t v = r->ip_version;

    char uid[PH_UID_DIGITS + 1], *start = p + 15;
    put_uid(uid, r->flow_id);

    p = PUT(p, "{\"@timestamp\":\"");
    p = put_iso(p, r->ts_start);
    size_t start_len = (size_t)(p - start);
    p = PUT(p, "\",\"ecs\":{\"version\":\"" PH_ECS_VERSION "\"}");
    p = PUT(p, ",\"event\":{\"kind\":\"event\",\"category\":[\"network\"],\"type\":");
    p = (r->flags & PH_RF_UPDATE) ? PUT(p, "[\"connection\",\"info\"]") : PUT(p, "[\"connection\",\"end\"]");
    p = PUT(p, ",\"dataset\":");
    p = put_json_str(p, cx->dataset, cx->dataset_len);
    p = PUT(p, ",\"id\":\"");
    p = put_mem(p, uid, sizeof(uid));
    p = PUT(p, "\",\"start\":\"");
    p = put_mem(p, start, start_len);
    p = PUT(p, "\",\"end\":\"");
    p = put_iso(p, r->ts_end);
    p = PUT(p, "\",\"duration\":");
    p = put_u64(p, duration_ns(r));
    p = PUT(p, ",\"reason\":\"");
    {
        const char *why = end_reason_name(r->end_reason);
        p = put_mem(p, why, strlen(why));
    }
    *p++ = '"';

    p = PUT(p, "},\"source\":{");
    p = put_ecs_endpoint(p, v, r->orig_h, ports, r->orig_p, (r->flags & PH_RF_MAC) ? r->orig_mac : NULL,
                         r->orig_ip_bytes, r->orig_pkts);
    p = PUT(p, "},\"destination\":{");
    p = put_ecs_endpoint(p, v, r->resp_h, ports, r->resp_p, (r->flags & PH_RF_MAC) ? r->resp_mac : NULL,
                         r->resp_ip_bytes, r->resp_pkts);

    p = PUT(p, "},\"network\":{\"transport\":\"");
    p = put_ecs_transport(p, r->proto);
    p = PUT(p, "\",\"iana_number\":\"");
    p = put_u64(p, r->proto);
    p = (v == 4) ? PUT(p, "\",\"type\":\"ipv4\"") : PUT(p, "\",\"type\":\"ipv6\"");
    p = PUT(p, ",\"bytes\":");
    p = put_u64(p, r->orig_ip_bytes + r->resp_ip_bytes);
    p = PUT(p, ",\"packets\":");
    p = put_u64(p, r->orig_pkts + r->resp_pkts);
    size_t cl = field_strlen(r->community_id, sizeof(r->community_id));
    if (cl) {
        p = PUT(p, ",\"community_id\":");
        p = put_json_str(p, r->community_id, cl);
    }
    if (r->flags & PH_RF_VLAN) {
        p = PUT(p, ",\"vlan\":{\"id\":\"");
        p = put_u64(p, r->vlan);
        p = PUT(p, "\"}");
    }
    if (r->flags & PH_RF_INNER_VLAN) {
        p = PUT(p, ",\"inner\":{\"vlan\":{\"id\":\"");
        p = put_u64(p, r->inner_vlan);
        p = PUT(p, "\"}}");
    }
    if (r->flags & PH_RF_LOCAL_KNOWN) {
        int lo = (r->flags & PH_RF_LOCAL_ORIG) != 0, lr = (r->flags & PH_RF_LOCAL_RESP) != 0;
        p = PUT(p, ",\"direction\":\"");
        if (lo && lr)
            p = PUT(p, "internal\"");
        else if (lo)
            p = PUT(p, "outbound\"");
        else if (lr)
            p = PUT(p, "inbound\"");
        else
            p = PUT(p, "external\"");
    }

    p = PUT(p, "},\"related\":{\"ip\":[\"");
    p = put_addr(p, v, r->orig_h);
    if (memcmp(r->orig_h, r->resp_h, v == 4 ? 4 : 16) != 0) {
        p = PUT(p, "\",\"");
        p = put_addr(p, v, r->resp_h);
    }
    p = PUT(p, "\"]},\"observer\":{");
    if (cx->observer) {
        p = PUT(p, "\"hostname\":");
        p = put_json_str(p, cx->observer, cx->observer_len);
        *p++ = ',';
    }
    p = PUT(p, "\"type\":\"sensor\",\"product\":\"pyhunt\",\"vendor\":\"pyhunt\"");
    if (r->flags & PH_RF_INGRESS) {
        p = PUT(p, ",\"ingress\":{\"interface\":{\"id\":\"");
        p = put_u64(p, r->ingress_id);
        p = PUT(p, "\"}}");
    }
    *p++ = '}';

    p = PUT(p, ",\"zeek\":{\"session_id\":\"");
    p = put_mem(p, uid, sizeof(uid));
    p = PUT(p, "\",\"connection\":{\"state\":\"");
    const char *cs = conn_state_name(r->conn_state);
    p = put_mem(p, cs, strlen(cs));
    *p++ = '"';
    size_t hl = field_strlen(r->history, sizeof(r->history));
    if (hl) {
        p = PUT(p, ",\"history\":");
        p = put_json_str(p, r->history, hl);
    }
    p = PUT(p, ",\"missed_bytes\":");
    p = put_u64(p, r->missed_bytes);
    if (r->flags & PH_RF_LOCAL_KNOWN) {
        p = (r->flags & PH_RF_LOCAL_ORIG) ? PUT(p, ",\"local_orig\":true") : PUT(p, ",\"local_orig\":false");
        p = (r->flags & PH_RF_LOCAL_RESP) ? PUT(p, ",\"local_resp\":true") : PUT(p, ",\"local_resp\":false");
    }
    if (has_parents(r)) {
        p = PUT(p, ",\"tunnel_parents\":");
        p = put_parents(p, r, 1);
    }
    if (icmp) {
        /* as Elastic's Zeek integration: type = id.orig_p, code = id.resp_p */
        p = PUT(p, ",\"icmp\":{\"type\":");
        p = put_u64(p, r->orig_p);
        p = PUT(p, ",\"code\":");
        p = put_u64(p, r->resp_p);
        *p++ = '}';
    }
    p = PUT(p, "}}");

    p = put_features(p, r, &cx->plan);
    p = PUT(p, "}\n");
    return p;
}

/* ------------------------------------------------------------------ */
/* Entry point                                                         */
/* ------------------------------------------------------------------ */

int ph_format_records(ph_buf *out, int format, const ph_flow_rec *recs, size_t n,
                      const ph_format_opts *opts)
{
    size_t start_len = out->len;
    size_t bound;
    ecs_ctx *cx = NULL;

    switch (format) {
    case PH_FORMAT_ZEEK_JSON:
    case PH_FORMAT_ZEEK_TSV:
        bound = ZEEK_LINE_MAX;
        break;
    case PH_FORMAT_ECS:
        cx = (ecs_ctx *)malloc(sizeof(*cx));
        if (!cx || build_plan(&cx->plan) != 0)
            goto error;
        cx->observer = opts ? opts->observer_name : NULL;
        cx->observer_len = cx->observer ? strlen(cx->observer) : 0;
        cx->dataset = (opts && opts->dataset) ? opts->dataset : "pyhunt.flow";
        cx->dataset_len = strlen(cx->dataset);
        if (cx->observer_len > (SIZE_MAX - 2 * ECS_FIXED_MAX) / 12 || cx->dataset_len > (SIZE_MAX - 2 * ECS_FIXED_MAX) / 12)
            goto error;
        bound = ECS_FIXED_MAX + cx->plan.max_value_bytes + 6 * (cx->observer_len + cx->dataset_len) + PLAN_SLACK;
        break;
    default:
        goto error; /* unknown format: the binding validates names, so this is a caller bug */
    }

    for (size_t i = 0; i < n; i++) {
        if (ph_buf_reserve(out, bound) != 0)
            goto error;
        char *p = out->data + out->len;
        if (format == PH_FORMAT_ZEEK_JSON)
            p = zeek_json_line(p, &recs[i]);
        else if (format == PH_FORMAT_ZEEK_TSV)
            p = zeek_tsv_line(p, &recs[i]);
        else
            p = ecs_doc(p, &recs[i], cx);
        out->len = (size_t)(p - out->data);
    }
    free(cx);
    return 0;

error:
    free(cx);
    out->len = start_len;
    return -1;
}
