/*
 * ph_frag.h -- IPv4/IPv6 fragment reassembly with bounded memory and CPU.
 *
 * Datagrams are keyed by (source, destination, identification, protocol, IP
 * version); for IPv6 the protocol is 0 because RFC 8200 keys reassembly on
 * (source, destination, identification) only. Limits:
 *   - at most max_datagrams incomplete datagrams; a new one evicts the oldest;
 *   - at most max_bytes buffered in total (data buffers, kept headers and the
 *     per-datagram state); growing past it evicts the oldest other datagrams,
 *     and drops the growing one if that is not enough;
 *   - a datagram carries at most PH_FRAG_MAX_DATA bytes after its header and a
 *     kept header of at most PH_FRAG_MAX_HDR bytes; a fragment beyond either
 *     limit invalidates its datagram;
 *   - at most PH_FRAG_MAX_RANGES disjoint byte ranges (holes + 1) per datagram,
 *     so each fragment costs O(log ranges + ranges merged);
 *   - an incomplete datagram expires timeout_ns after its first fragment
 *     (packet time; timeout_ns <= 0 means never, as Zeek's frag_timeout 0).
 * Overlaps: first writer wins -- bytes already received are never overwritten
 * by a later fragment (duplicates and retransmissions are absorbed).
 * Completion follows Zeek (src/Frag.cc): once the last fragment (MF=0) is
 * known, the datagram is complete when the bytes from offset 0 are contiguous
 * up to the largest end seen from a last fragment (or any later fragment that
 * extends it); its length is the end of that contiguous run.
 *
 * Counters: every fragment reported as held is remembered per datagram; when a
 * datagram is dropped they move from PH_C_FRAGMENT_HELD to
 * PH_C_FRAGMENT_DROPPED and PH_C_FRAG_TIMEOUT (timeout, flush) or
 * PH_C_FRAG_OVERFLOW (eviction, limits) is incremented once per datagram.
 * PH_C_FRAGMENTS_REASSEMBLED counts completed datagrams.
 */
#ifndef PH_FRAG_H
#define PH_FRAG_H

#include "ph_types.h"

#define PH_FRAG_MAX_DATA   65535u  /* fragmentable bytes of one datagram */
#define PH_FRAG_MAX_HDR    8192u   /* IPv4 header, or IPv6 unfragmentable part */
#define PH_FRAG_MAX_RANGES 64u     /* disjoint received ranges per datagram */

#define PH_FRAG_HELD    0          /* absorbed; datagram still incomplete */
#define PH_FRAG_DONE    1          /* datagram complete: see ph_frag_add */
#define PH_FRAG_DROPPED 2          /* this fragment (and its datagram, if any) dropped */

typedef struct ph_frag_key {
    uint8_t src[16];               /* IPv4: first 4 bytes, rest zero */
    uint8_t dst[16];
    uint32_t id;                   /* IPv4 16-bit or IPv6 32-bit identification */
    uint8_t proto;                 /* IPv4 protocol; 0 for IPv6 */
    uint8_t ipver;                 /* 4 or 6 */
} ph_frag_key;

typedef struct ph_frag_table ph_frag_table;

/* counters: the engine's PH_C__COUNT array (never NULL). */
ph_frag_table *ph_frag_new(uint32_t max_datagrams, uint64_t max_bytes, int64_t timeout_ns, uint64_t *counters);
void ph_frag_free(ph_frag_table *t);

/* Offer one fragment: data[0..len) goes at byte offset `offset` of the
 * fragmentable part; more = the MF flag. hdr[0..hdr_len) is kept from the
 * fragment with offset 0 (the caller prepares it: IPv4 header, or the IPv6
 * header and unfragmentable extension headers with the next-header field that
 * pointed at the fragment header already rewritten).
 * PH_FRAG_DONE: *out points to hdr_len + data_len bytes (kept header followed
 * by the reassembled data) in a table-owned buffer that stays valid until the
 * next ph_frag_add/ph_frag_single call; the caller patches length fields. */
int ph_frag_add(ph_frag_table *t, const ph_frag_key *k, int64_t ts_ns, uint32_t offset, int more,
                const uint8_t *hdr, uint32_t hdr_len, const uint8_t *data, uint32_t len,
                uint8_t **out, uint32_t *out_hdr_len, uint32_t *out_data_len);

/* The fragment of the last PH_FRAG_HELD is not a held packet after all: its
 * packet was counted elsewhere (a UDP tunnel whose outer connection takes the
 * packet while the inner fragment waits). When its datagram is dropped, only
 * the fragments reported as held move from held to dropped. */
void ph_frag_unhold_last(ph_frag_table *t);

/* Build a datagram from one unfragmented piece (IPv6 atomic fragment) in the
 * same output buffer, without touching the table. NULL if over the limits. */
uint8_t *ph_frag_single(ph_frag_table *t, const uint8_t *hdr, uint32_t hdr_len, const uint8_t *data, uint32_t len);

/* Drop incomplete datagrams whose first fragment is timeout_ns or more older than now_ns. */
void ph_frag_expire(ph_frag_table *t, int64_t now_ns);
/* Drop every incomplete datagram (end of input; counted as timeouts). */
void ph_frag_flush(ph_frag_table *t);

/* Incomplete datagrams held, and bytes accounted against max_bytes. */
uint32_t ph_frag_pending(const ph_frag_table *t);
uint64_t ph_frag_bytes(const ph_frag_table *t);

#endif /* PH_FRAG_H */
