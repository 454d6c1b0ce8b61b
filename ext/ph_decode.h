/*
 * ph_decode.h -- link layer -> IP -> transport decoding.
 *
 * One function per link layer / header in ph_decode.c; IP fragment
 * reassembly with bounded memory lives in ph_frag.c; checksums in ph_csum.c.
 */
#ifndef PH_DECODE_H
#define PH_DECODE_H

#include "ph_types.h"

/* pcap LINKTYPE_* values we decode */
#define PH_LT_NULL        0    /* BSD loopback, host-endian AF_ value */
#define PH_LT_ETHERNET    1
#define PH_LT_PPP         9
#define PH_LT_RAW         101  /* raw IPv4/IPv6 */
#define PH_LT_PPP_HDLC    50
#define PH_LT_IEEE802_11  105
#define PH_LT_LOOP        108  /* OpenBSD loopback, big-endian AF_ value */
#define PH_LT_LINUX_SLL   113
#define PH_LT_RADIOTAP    127
#define PH_LT_IPV4        228
#define PH_LT_IPV6        229
#define PH_LT_LINUX_SLL2  276
#define PH_LT_DLT_RAW12   12   /* DLT_RAW on some BSDs */
#define PH_LT_DLT_RAW14   14   /* DLT_RAW on OpenBSD */

#define PH_TUN_MAX_PORTS 4   /* ports per UDP tunnel type */

typedef struct ph_decode_cfg {
    int ignore_checksums;          /* Zeek -C: verify nothing */
    uint32_t frag_max_datagrams;   /* concurrent datagrams under reassembly (default 4096) */
    uint32_t frag_max_bytes;       /* total bytes buffered for reassembly (default 16 MiB) */
    int64_t frag_timeout_ns;       /* incomplete datagram lifetime (default 30 s, packet time) */
    /* tunnels (ph_tunnel.h, docs/architecture.md "Tunnels") */
    uint8_t tunnel_strip;          /* 0: Zeek-compatible reporting; 1: mirroring mode (strip silently,
                                      the outermost VNI/GRE key joins the flow key) */
    uint8_t tunnel_max_depth;      /* nested encapsulations taken apart (Zeek's Tunnel::max_depth = 2;
                                      at most PH_MAX_ENCAP; 0 = no decapsulation) */
    uint8_t teredo_dpd;            /* Teredo on any UDP port whose payload matches Zeek's dpd_teredo (1) */
    uint8_t tunnel_enable[PH_TUN__N];   /* per PH_TUN_* type: decapsulate it (default 1) */
    uint16_t tunnel_ports[PH_TUN__N][PH_TUN_MAX_PORTS];   /* UDP tunnels' ports, 0 = unused */
} ph_decode_cfg;

void ph_decode_cfg_default(ph_decode_cfg *cfg);

typedef struct ph_decoder ph_decoder;

/* counters: the engine's PH_C__COUNT array; the decoder increments informational
 * counters (FRAGMENTS_REASSEMBLED, FRAG_OVERFLOW, FRAG_TIMEOUT) and, when it
 * drops fragments it had reported as PH_C_FRAGMENT_HELD, moves them from
 * FRAGMENT_HELD to FRAGMENT_DROPPED so the disposition sum stays exact. */
ph_decoder *ph_decoder_new(const ph_decode_cfg *cfg, uint64_t *counters);
void ph_decoder_free(ph_decoder *d);

/* Decode one packet. Returns PH_DEC_OK with *out filled, or the index of the
 * disposition counter (PH_C_*) that the caller must increment for this packet
 * (PH_C_FRAGMENT_HELD for a fragment absorbed into an incomplete datagram). */
int ph_decode(ph_decoder *d, const ph_pkt *pkt, ph_parsed *out);

/* An 802.11 A-MSDU is one captured frame with several packets (subframes):
 * ph_decode returns the first; while ph_decode_pending, each ph_decode_next
 * returns the next one (same return codes; out->amsdu_more is set). Valid
 * only before the next ph_decode and while the frame's data is. A subframe is
 * not counted as a packet disposition: PH_C_FRAGMENT_HELD from ph_decode_next
 * is not remembered as held, so its datagram's drop leaves FRAGMENT_HELD alone. */
int ph_decode_pending(const ph_decoder *d);
int ph_decode_next(ph_decoder *d, ph_parsed *out);

/* Expire incomplete datagrams older than the timeout at packet time now_ns. */
void ph_decoder_expire(ph_decoder *d, int64_t now_ns);
/* End of input: drop every incomplete datagram (counted as FRAGMENT_DROPPED). */
void ph_decoder_flush(ph_decoder *d);

/* Incomplete datagrams under reassembly, and the bytes they hold (for metrics). */
uint32_t ph_decoder_frag_pending(const ph_decoder *d);
uint64_t ph_decoder_frag_bytes(const ph_decoder *d);

#endif /* PH_DECODE_H */
