/*
 * phbench.c -- stage drivers and floors for pyhunt's benchmarks (benchmarks/).
 *
 * Built as a shared library (loaded with ctypes by benchmarks/cstages.py) together with the
 * engine's own ext/ph_capture.c, ext/ph_decode.c, ext/ph_frag.c and ext/ph_csum.c, so the "read"
 * and "decode" stages run exactly the engine's reader and decoder, without the flow table:
 *
 *   phb_read     mmap the capture, ph_reader_next() every record (pcap or pcapng)
 *   phb_decode   the same plus ph_decode() of every packet to L4 (checksums verified, as the engine)
 *
 * and the floors the stages are compared with, measured on the same page-cached file:
 *
 *   phb_cat      read(2) the file into a 1 MiB buffer (what `cat file > /dev/null` does)
 *   phb_touch    mmap the file and sum every 64-bit word (every byte reaches the CPU)
 *   phb_probe    a bare C flow meter (classic pcap only): mmap, Ethernet/VLAN, IPv4/IPv6,
 *                TCP/UDP/ICMP to L4 without checksums, a bidirectional open-addressing hash table
 *                with per-direction packets/bytes and first/last time, software prefetch a few
 *                packets ahead. No Zeek state, features, Community ID or export: a floor.
 *
 * Every function fills a phb_result and returns 0, or -1 with errno-like failure (file cannot be
 * opened or mapped, not a capture, out of memory). `make -C benchmarks/c` also builds a command
 * line driver: ./phbench STAGE FILE.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ph_capture.h"
#include "ph_decode.h"

typedef struct phb_result {
    uint64_t packets;      /* records read */
    uint64_t bytes;        /* bytes of the file (cat/touch) or captured packet bytes (others) */
    uint64_t ok;           /* decode: packets decoded to L4; probe: packets counted in a flow */
    uint64_t flows;        /* probe: distinct bidirectional flows */
    uint64_t check;        /* a value derived from the data (keeps the compiler honest) */
    double seconds;        /* wall time inside the call */
} phb_result;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------ */
/* Mapping a file                                                      */
/* ------------------------------------------------------------------ */
typedef struct map {
    const uint8_t *p;
    size_t len;
} map;

static int map_open(const char *path, map *m)
{
    struct stat st;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) {
        close(fd);
        return -1;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return -1;
    madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);  /* as pyhunt/sources.py does */
    m->p = p;
    m->len = (size_t)st.st_size;
    return 0;
}

static void map_close(map *m) { munmap((void *)m->p, m->len); }

/* ------------------------------------------------------------------ */
/* Floors: reading the bytes                                           */
/* ------------------------------------------------------------------ */
int phb_cat(const char *path, phb_result *r)
{
    static uint8_t buf[1 << 20];
    double t0 = now();
    memset(r, 0, sizeof *r);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        r->bytes += (uint64_t)n;
        r->check += buf[0];
    }
    close(fd);
    r->seconds = now() - t0;
    return 0;
}

int phb_touch(const char *path, phb_result *r)
{
    map m;
    double t0 = now();
    memset(r, 0, sizeof *r);
    if (map_open(path, &m) != 0)
        return -1;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0, words = m.len / 8;
    for (; i + 4 <= words; i += 4) {
        uint64_t w[4];
        memcpy(w, m.p + i * 8, sizeof w);
        s0 += w[0];
        s1 += w[1];
        s2 += w[2];
        s3 += w[3];
    }
    for (size_t j = i * 8; j < m.len; j++)
        s0 += m.p[j];
    r->bytes = m.len;
    r->check = s0 + s1 + s2 + s3;
    map_close(&m);
    r->seconds = now() - t0;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The engine's stages without the flow table                          */
/* ------------------------------------------------------------------ */
int phb_read(const char *path, phb_result *r)
{
    map m;
    ph_reader *rd;
    ph_pkt pkt;
    ph_error err;
    int rc;
    double t0 = now();

    memset(r, 0, sizeof *r);
    if (map_open(path, &m) != 0)
        return -1;
    rd = malloc(sizeof *rd);
    if (!rd) {
        map_close(&m);
        return -1;
    }
    ph_reader_init(rd);
    ph_reader_feed(rd, m.p, m.len, 1);
    while ((rc = ph_reader_next(rd, &pkt, &err)) == PH_RD_PACKET) {
        r->packets++;
        r->bytes += pkt.caplen;
        r->check += (uint64_t)pkt.ts_ns ^ pkt.linktype;
    }
    free(rd);
    map_close(&m);
    r->seconds = now() - t0;
    return rc == PH_RD_EOF ? 0 : -1;
}

int phb_decode(const char *path, int ignore_checksums, phb_result *r)
{
    map m;
    ph_reader *rd;
    ph_decoder *dec;
    ph_decode_cfg cfg;
    ph_pkt pkt;
    ph_parsed out;
    ph_error err;
    int rc;
    static uint64_t counters[PH_C__COUNT];
    double t0 = now();

    memset(r, 0, sizeof *r);
    memset(counters, 0, sizeof counters);
    if (map_open(path, &m) != 0)
        return -1;
    rd = malloc(sizeof *rd);
    ph_decode_cfg_default(&cfg);
    cfg.ignore_checksums = ignore_checksums;
    dec = rd ? ph_decoder_new(&cfg, counters) : NULL;
    if (!dec) {
        free(rd);
        map_close(&m);
        return -1;
    }
    ph_reader_init(rd);
    ph_reader_feed(rd, m.p, m.len, 1);
    while ((rc = ph_reader_next(rd, &pkt, &err)) == PH_RD_PACKET) {
        r->packets++;
        r->bytes += pkt.caplen;
        if (ph_decode(dec, &pkt, &out) == PH_DEC_OK) {
            r->ok++;
            r->check += (uint64_t)out.sport * 31u + out.dport + out.proto + out.ip_len +
                        !(out.flags & PH_PF_L4_CSUM_BAD);
        }
    }
    ph_decoder_free(dec);
    free(rd);
    map_close(&m);
    r->seconds = now() - t0;
    return rc == PH_RD_EOF ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* The bare C flow probe (floor of the "flows" stage)                  */
/* ------------------------------------------------------------------ */
typedef struct pkey {
    uint8_t a[16], b[16];   /* endpoints, smaller first */
    uint16_t pa, pb;
    uint16_t vlan;
    uint8_t proto, ver;
} pkey;

typedef struct pent {
    pkey k;
    uint64_t hash;          /* 0 = empty */
    uint64_t pkts[2], bytes[2];
    int64_t first, last;
} pent;

typedef struct pinfo {
    pkey k;
    uint64_t hash;
    uint32_t len;
    int dir;
    int64_t ts;
    int valid;
} pinfo;

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t key_hash(const pkey *k)
{
    uint64_t w[5], h = 0x9e3779b97f4a7c15ULL;
    memcpy(w, k->a, 16);
    memcpy(w + 2, k->b, 16);
    w[4] = (uint64_t)k->pa | (uint64_t)k->pb << 16 | (uint64_t)k->vlan << 32 | (uint64_t)k->proto << 48 |
           (uint64_t)k->ver << 56;
    for (int i = 0; i < 5; i++)
        h = mix64(h ^ w[i]) + (uint64_t)i;
    return h | 1;
}

/* Parse one pcap record's frame (Ethernet) to a canonical key; valid = 0 if not IP. */
static void probe_parse(const uint8_t *f, uint32_t caplen, int64_t ts, pinfo *pi)
{
    uint32_t off = 14;
    uint16_t et, vlan = 0, sp = 0, dp = 0;
    uint8_t proto, src[16] = {0}, dst[16] = {0}, ver;
    uint32_t l4, iplen;

    pi->valid = 0;
    if (caplen < 14)
        return;
    et = (uint16_t)(f[12] << 8 | f[13]);
    for (int i = 0; i < 2 && (et == 0x8100 || et == 0x88a8); i++) {
        if (caplen < off + 4)
            return;
        if (i == 0)
            vlan = (uint16_t)((f[off] << 8 | f[off + 1]) & 0xfff);
        et = (uint16_t)(f[off + 2] << 8 | f[off + 3]);
        off += 4;
    }
    if (et == 0x0800) {
        if (caplen < off + 20)
            return;
        uint32_t ihl = (f[off] & 15u) * 4u;
        ver = 4;
        proto = f[off + 9];
        iplen = (uint32_t)(f[off + 2] << 8 | f[off + 3]);
        memcpy(src, f + off + 12, 4);
        memcpy(dst, f + off + 16, 4);
        l4 = off + ihl;
    } else if (et == 0x86dd) {
        if (caplen < off + 40)
            return;
        ver = 6;
        proto = f[off + 6];
        iplen = (uint32_t)(f[off + 4] << 8 | f[off + 5]) + 40u;
        memcpy(src, f + off + 8, 16);
        memcpy(dst, f + off + 24, 16);
        l4 = off + 40;
    } else {
        return;
    }
    if ((proto == 6 || proto == 17) && caplen >= l4 + 4) {
        sp = (uint16_t)(f[l4] << 8 | f[l4 + 1]);
        dp = (uint16_t)(f[l4 + 2] << 8 | f[l4 + 3]);
    } else if ((proto == 1 || proto == 58) && caplen >= l4 + 2) {
        sp = f[l4];
        dp = (uint16_t)(f[l4] ^ ((proto == 1) ? 8 : 1));  /* (type, counterpart): echo pairs up */
    }
    int swap = memcmp(src, dst, 16) > 0 || (memcmp(src, dst, 16) == 0 && sp > dp);
    memset(&pi->k, 0, sizeof pi->k);
    memcpy(pi->k.a, swap ? dst : src, 16);
    memcpy(pi->k.b, swap ? src : dst, 16);
    pi->k.pa = swap ? dp : sp;
    pi->k.pb = swap ? sp : dp;
    pi->k.vlan = vlan;
    pi->k.proto = proto;
    pi->k.ver = ver;
    pi->dir = swap;
    pi->len = iplen;
    pi->ts = ts;
    pi->hash = key_hash(&pi->k);
    pi->valid = 1;
}

typedef struct ptab {
    pent *e;
    uint64_t mask, used;
} ptab;

static int ptab_grow(ptab *t)
{
    uint64_t n = (t->mask + 1) * 2;
    pent *e = calloc(n, sizeof *e);
    if (!e)
        return -1;
    for (uint64_t i = 0; t->e && i <= t->mask; i++) {
        if (!t->e[i].hash)
            continue;
        uint64_t j = t->e[i].hash & (n - 1);
        while (e[j].hash)
            j = (j + 1) & (n - 1);
        e[j] = t->e[i];
    }
    free(t->e);
    t->e = e;
    t->mask = n - 1;
    return 0;
}

#define PROBE_AHEAD 8

int phb_probe(const char *path, phb_result *r)
{
    map m;
    ptab t = {NULL, (1u << 16) - 1, 0};
    pinfo ring[PROBE_AHEAD];
    size_t pos = 24;
    int bigend, nsec, head = 0, fill = 0;
    double t0 = now();

    memset(r, 0, sizeof *r);
    if (map_open(path, &m) != 0)
        return -1;
    if (m.len < 24) {
        map_close(&m);
        return -1;
    }
    uint32_t magic = ph_le32(m.p);
    bigend = magic == 0xd4c3b2a1u || magic == 0x4d3cb2a1u;
    nsec = magic == 0xa1b23c4du || magic == 0x4d3cb2a1u;
    if (!bigend && magic != 0xa1b2c3d4u && magic != 0xa1b23c4du) {
        map_close(&m);
        return -1;   /* classic pcap only */
    }
    t.e = calloc(t.mask + 1, sizeof *t.e);
    if (!t.e) {
        map_close(&m);
        return -1;
    }
    for (;;) {
        /* keep PROBE_AHEAD parsed packets in flight; prefetch each one's slot when parsed */
        while (fill < PROBE_AHEAD && pos + 16 <= m.len) {
            const uint8_t *h = m.p + pos;
            uint32_t sec = bigend ? ph_be32(h) : ph_le32(h);
            uint32_t frac = bigend ? ph_be32(h + 4) : ph_le32(h + 4);
            uint32_t caplen = bigend ? ph_be32(h + 8) : ph_le32(h + 8);
            if (caplen > m.len - pos - 16)
                break;
            pinfo *pi = &ring[(head + fill) % PROBE_AHEAD];
            probe_parse(h + 16, caplen, (int64_t)sec * 1000000000 + (nsec ? frac : frac * 1000ull), pi);
            if (pi->valid)
                __builtin_prefetch(&t.e[pi->hash & t.mask], 1, 1);
            r->packets++;
            r->bytes += caplen;
            pos += 16 + (size_t)caplen;
            fill++;
        }
        if (fill == 0)
            break;
        pinfo *pi = &ring[head];
        head = (head + 1) % PROBE_AHEAD;
        fill--;
        if (!pi->valid)
            continue;
        uint64_t j = pi->hash & t.mask;
        pent *e;
        for (;;) {
            e = &t.e[j];
            if (!e->hash || (e->hash == pi->hash && memcmp(&e->k, &pi->k, sizeof pi->k) == 0))
                break;
            j = (j + 1) & t.mask;
        }
        if (!e->hash) {
            e->hash = pi->hash;
            e->k = pi->k;
            e->first = pi->ts;
            t.used++;
            if (t.used * 2 > t.mask + 1) {
                e->pkts[pi->dir]++;
                e->bytes[pi->dir] += pi->len;
                e->last = pi->ts;
                r->ok++;
                if (ptab_grow(&t) != 0) {
                    free(t.e);
                    map_close(&m);
                    return -1;
                }
                for (int i = 0; i < fill; i++) {   /* re-prefetch for the new table */
                    pinfo *q = &ring[(head + i) % PROBE_AHEAD];
                    if (q->valid)
                        __builtin_prefetch(&t.e[q->hash & t.mask], 1, 1);
                }
                continue;
            }
        }
        e->pkts[pi->dir]++;
        e->bytes[pi->dir] += pi->len;
        e->last = pi->ts;
        r->ok++;
    }
    r->flows = t.used;
    for (uint64_t i = 0; i <= t.mask; i++)
        r->check += t.e[i].pkts[0] * 3 + t.e[i].bytes[1];
    free(t.e);
    map_close(&m);
    r->seconds = now() - t0;
    return 0;
}

#ifdef PHBENCH_MAIN
int main(int argc, char **argv)
{
    phb_result r;
    int rc;
    if (argc != 3) {
        fprintf(stderr, "usage: %s cat|touch|read|decode|probe FILE\n", argv[0]);
        return 2;
    }
    const char *s = argv[1], *f = argv[2];
    if (!strcmp(s, "cat")) rc = phb_cat(f, &r);
    else if (!strcmp(s, "touch")) rc = phb_touch(f, &r);
    else if (!strcmp(s, "read")) rc = phb_read(f, &r);
    else if (!strcmp(s, "decode")) rc = phb_decode(f, 0, &r);
    else if (!strcmp(s, "probe")) rc = phb_probe(f, &r);
    else {
        fprintf(stderr, "unknown stage %s\n", s);
        return 2;
    }
    if (rc != 0) {
        fprintf(stderr, "%s: failed on %s\n", s, f);
        return 1;
    }
    printf("%s: %.3f s, %llu packets (%.2f M/s), %llu bytes (%.2f GB/s), ok %llu, flows %llu\n", s, r.seconds,
           (unsigned long long)r.packets, r.packets / r.seconds / 1e6, (unsigned long long)r.bytes,
           r.bytes / r.seconds / 1e9, (unsigned long long)r.ok, (unsigned long long)r.flows);
    return 0;
}
#endif
