/*
 * fuzz_util.h -- helpers shared by the libFuzzer targets in fuzz/.
 *
 * Every target is deterministic for a given input: whatever it varies (chunk
 * sizes, engine configuration) comes from a PRNG seeded with a hash of the
 * input, so a crashing file replays the same way (tests/test_fuzz_regressions.py).
 * FUZZ_CHECK() aborts on a broken invariant: libFuzzer reports it as a crash.
 */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                               \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

/* FNV-1a over the input: the seed of everything a target varies. */
static inline uint64_t fuzz_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static inline uint64_t fuzz_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A chunk length for streaming input: mostly small (record headers straddle
 * buffer ends), sometimes large. Never 0 while bytes are left. */
static inline size_t fuzz_chunk(uint64_t *s, size_t left)
{
    uint64_t v = fuzz_next(s);
    size_t n;
    switch (v & 3) {
    case 0: n = 1 + (size_t)((v >> 8) % 8); break;
    case 1: n = 1 + (size_t)((v >> 8) % 64); break;
    case 2: n = 1 + (size_t)((v >> 8) % 1024); break;
    default: n = 1 + (size_t)((v >> 8) % 65536); break;
    }
    return n < left ? n : left;
}

/* Copy into a fresh allocation of exactly n bytes, so that AddressSanitizer
 * catches a read one byte past the end (the fuzzer's own buffer may be longer
 * than the part a target hands on). */
static inline uint8_t *fuzz_dup(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    FUZZ_CHECK(d != NULL);
    if (n)
        memcpy(d, p, n);
    return d;
}

/* Read every byte: AddressSanitizer checks the whole range, and the sum keeps
 * the loop from being optimized away. */
static inline uint64_t fuzz_touch(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* Streaming: move the next chunk of data (from *off, length from fuzz_chunk)
 * onto the end of *buf, reallocated to exactly the bytes it holds so that
 * AddressSanitizer sees any read past them. Returns whether the chunk was the
 * last one. The caller keeps the unconsumed tail of *buf between calls. */
static inline int fuzz_stream_chunk(uint64_t *seed, const uint8_t *data, size_t size, size_t *off,
                                    uint8_t **buf, size_t *blen)
{
    size_t chunk = fuzz_chunk(seed, size - *off);
    uint8_t *nb = malloc(*blen + chunk ? *blen + chunk : 1);
    FUZZ_CHECK(nb != NULL);
    if (*blen)
        memcpy(nb, *buf, *blen);
    if (chunk)
        memcpy(nb + *blen, data + *off, chunk);
    free(*buf);
    *buf = nb;
    *blen += chunk;
    *off += chunk;
    return *off == size;
}

#endif /* FUZZ_UTIL_H */
