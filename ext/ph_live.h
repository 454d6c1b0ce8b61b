/*
 * ph_live.h -- live packet sources for the engine (Linux):
 *
 *   ring    AF_PACKET socket with a TPACKET_V3 memory-mapped RX ring on one
 *           interface: promiscuous, optional PACKET_FANOUT (hash) group,
 *           optional classic BPF filter, kernel counters (PACKET_STATISTICS);
 *   tunnel  UDP socket receiving VXLAN or GENEVE (mirrored traffic, no
 *           privileges needed), batched with recvmmsg; the inner Ethernet
 *           frame goes to the engine.
 *
 * ph_live_run() is the loop: it takes packets from the source, feeds each to
 * ph_engine_packet, runs the engine's timers on the wall clock while the
 * source is idle, and returns when the export queue holds a batch or the
 * timeout passes. It touches no Python object: the binding calls it without
 * the GIL. On other systems every open fails with PH_LIVE_ENOTSUP.
 */
#ifndef PH_LIVE_H
#define PH_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "ph_engine.h"

/* ph_live_run results (>= 0) and errors (< 0) */
#define PH_LIVE_BATCH     1    /* export queue reached the batch size */
#define PH_LIVE_TIMEOUT   0    /* timeout_ms passed (or a signal interrupted the wait) */
#define PH_LIVE_ERROR   (-1)   /* system error: ph_live_error() */
#define PH_LIVE_NOMEM   (-2)   /* the engine could not grow its export queue */
#define PH_LIVE_ENOTSUP (-3)   /* not built for this system (not Linux) */

#define PH_TUN_VXLAN  1
#define PH_TUN_GENEVE 2

typedef struct ph_live_cfg {
    const char *ifname;
    uint32_t block_size;       /* ring block bytes, multiple of the page size (default 256 KiB) */
    uint32_t block_count;      /* ring blocks (default 256: 64 MiB) */
    uint32_t frame_size;       /* tp_frame_size (default 2048; TPACKET_V3 packs packets of any size) */
    uint32_t retire_ms;        /* a block goes to user space after this long even if not full (default 10) */
    int fanout_group;          /* PACKET_FANOUT group id 0-65535, or -1 for none */
    int fanout_defrag;         /* 1: PACKET_FANOUT_FLAG_DEFRAG (the kernel reassembles IPv4 fragments) */
    int promisc;               /* 1: PACKET_MR_PROMISC membership */
    const void *filter;        /* classic BPF program (struct sock_filter[]), or NULL */
    uint32_t filter_len;       /* instructions in filter */
} ph_live_cfg;

typedef struct ph_live_stats {
    uint64_t packets;          /* packets given to the engine */
    uint64_t bytes;            /* their captured bytes (inner frame for tunnels) */
    uint64_t truncated;        /* captured shorter than on the wire (ring: block space; tunnel: buffer) */
    uint64_t vlan_restored;    /* ring: 802.1Q/802.1ad tags put back from tp_vlan_tci */
    uint64_t blocks;           /* ring: blocks consumed */
    uint64_t kernel_packets;   /* ring: PACKET_STATISTICS tp_packets (accepted by the filter, drops included) */
    uint64_t kernel_drops;     /* ring: tp_drops (ring full) */
    uint64_t kernel_freezes;   /* ring: tp_freeze_q_cnt (times the ring was full) */
    uint64_t datagrams;        /* tunnel: UDP datagrams received */
    uint64_t tunnel_bad;       /* tunnel: header missing, too short, wrong flags/version */
    uint64_t tunnel_unsupported; /* tunnel: GENEVE payload that is not Ethernet, or an OAM frame */
    uint64_t recv_errors;      /* tunnel: recvmmsg errors other than "no data" */
} ph_live_stats;

typedef struct ph_live ph_live;

void ph_live_cfg_default(ph_live_cfg *cfg);

/* pcap LINKTYPE of the interface's frames on a packet socket (1 Ethernet,
 * 101 raw IP), or -1 with a message in err (missing interface, other type). */
int ph_live_linktype(const char *ifname, char *err, size_t errlen);

/* Open a ring on cfg->ifname. NULL and a message in err on failure
 * (errno-style code in *code: PH_LIVE_ERROR or PH_LIVE_ENOTSUP). */
ph_live *ph_live_open_ring(const ph_live_cfg *cfg, int *code, char *err, size_t errlen);

/* Open a tunnel listener on addr (IPv4 or IPv6 literal, NULL = 0.0.0.0)
 * and port (0 = any; see ph_live_port). */
ph_live *ph_live_open_tunnel(int kind, const char *addr, uint16_t port, int *code,
                             char *err, size_t errlen);

/* Poll the source, feed the engine, advance its timers on the wall clock
 * when idle; return PH_LIVE_BATCH once the engine's queue holds >= batch
 * records, PH_LIVE_TIMEOUT after timeout_ms (0: take what is ready, do not
 * wait), or an error. Safe to call again after any result. */
int ph_live_run(ph_live *l, ph_engine *e, int timeout_ms, size_t batch);

/* Counters; for a ring this reads (and accumulates) PACKET_STATISTICS. */
void ph_live_stats_get(ph_live *l, ph_live_stats *out);
const char *ph_live_error(const ph_live *l);
uint16_t ph_live_port(const ph_live *l);       /* tunnel: bound UDP port */
int ph_live_fd(const ph_live *l);
int ph_live_linktype_of(const ph_live *l);
void ph_live_close(ph_live *l);

#endif /* PH_LIVE_H */
