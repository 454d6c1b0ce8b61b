/*
 * ph_flow.h -- the bidirectional flow table with Zeek's conn.log semantics.
 *
 * Input: decoded packets (ph_parsed) in capture order. Output: ph_flow_rec
 * records handed to an emit callback when a flow ends (Zeek's removal rules,
 * timeouts, TCP reuse, eviction, end of input) or, for long flows, as interim
 * updates every active_timeout. Time is packet time: timers run as packets
 * arrive (bounded work per packet) and on ph_flowtab_advance().
 */
#ifndef PH_FLOW_H
#define PH_FLOW_H

#include "ph_types.h"
#include "ph_record.h"

typedef struct ph_flow_cfg {
    /* Zeek's timeouts (scripts/base/init-bare.zeek), nanoseconds */
    int64_t tcp_inactivity_ns;      /* 300 s */
    int64_t udp_inactivity_ns;      /* 60 s */
    int64_t icmp_inactivity_ns;     /* 60 s */
    int64_t other_inactivity_ns;    /* 60 s (unknown_ip_inactivity_timeout) */
    int64_t tcp_attempt_ns;         /* 5 s  (tcp_attempt_delay / tcp_SYN_timeout) */
    int64_t tcp_close_delay_ns;     /* 5 s */
    int64_t tcp_session_timer_ns;   /* 6 s */
    int64_t tcp_linger_ns;          /* 5 s  (tcp_connection_linger) */
    int64_t long_inactivity_ns;     /* 3600 s for ports 21,22,23,513/tcp (conn/inactivity.zeek); 0 = off */
    int64_t active_timeout_ns;      /* interim update period; 0 disables */
    int64_t dns_session_ns;         /* 10 s: Zeek's dns_session_timeout, for UDP flows whose responder port
                                       is a DNS analyzer port (53, 137, 5353, 5355); 0 = off */
    uint32_t capacity;              /* max concurrent flows; eviction beyond (see docs/counters.md) */
    uint16_t cid_seed;              /* Community ID seed */
    uint8_t ignore_checksums;       /* Zeek -C (the decoder does the checking; kept for reference) */
    uint8_t emit_updates;           /* export interim update records */
    uint8_t first_n;                /* 0..PH_FIRST_N packets recorded individually */
    /* likely_server_ports: bit p set = port p is a likely server port */
    uint8_t tcp_server_ports[65536 / 8];
    uint8_t udp_server_ports[65536 / 8];
    /* local networks for local_orig/local_resp (network order, IPv4 in first 4 bytes) */
    uint32_t n_local_nets;
    struct { uint8_t addr[16]; uint8_t ipver; uint8_t prefix; } local_nets[64];
    /* 1 (default): outer and inner VLAN ids are part of the flow key (as Zeek's
     * policy/frameworks/conn_key/vlan_fivetuple); 0: Zeek's default key, without
     * VLANs (both directions of a flow routed between two VLANs are one flow). */
    uint8_t vlan_in_key;
    /* tunnels: 1 = mirroring mode (ph_decode_cfg.tunnel_strip: no outer flows, no
     * tunnel_parents); Zeek's Tunnel::max_changes_per_connection (5; 0 = no limit),
     * after which a flow gets history 'X' and no more tunnel parents */
    uint8_t tunnel_strip;
    uint8_t tunnel_max_changes;
} ph_flow_cfg;

/* Zeek's defaults (timeouts, capacity 1<<20, seed 0, first_n 8, Zeek's likely_server_ports). */
void ph_flow_cfg_default(ph_flow_cfg *cfg);

/* Export: returns where the next record is to be written (the table fills it
 * in place before it calls anything else), or NULL when there is no room (the
 * record is then built in a scratch record and dropped; the caller counts it). */
typedef ph_flow_rec *(*ph_emit_fn)(void *ctx);

typedef struct ph_flowtab ph_flowtab;

/* A packet's table key, built once by ph_flowtab_prefetch and used again by
 * ph_flowtab_packet for the same packet (kind < 0: none was built). */
typedef struct ph_pkey {
    uint64_t w[7];
    int32_t kind;
    int32_t src_is_a;
} ph_pkey;

/* counters: the engine's PH_C__COUNT array (FLOWS_CREATED, FLOWS_EXPORTED, FLOW_UPDATES,
 * EVICTIONS, TCP_REUSE are incremented here). */
ph_flowtab *ph_flowtab_new(const ph_flow_cfg *cfg, uint64_t *counters, ph_emit_fn emit, void *ctx);
void ph_flowtab_free(ph_flowtab *t);

/* Account one decoded packet (pk: its key if ph_flowtab_prefetch built it,
 * else NULL). Returns the disposition counter for it:
 * PH_C_IN_FLOW, PH_C_BAD_CHECKSUM (flow created/looked up, packet ignored),
 * PH_C_NO_CONNECTION, or PH_C_FLOW_TABLE_FULL. */
int ph_flowtab_packet(ph_flowtab *t, const ph_parsed *p, const ph_pkey *pk);

/* Optional: prefetch the table slot and flow of a packet that will be passed
 * to ph_flowtab_packet soon (call it one packet ahead). pk (or NULL) receives
 * the key it builds, for ph_flowtab_packet to use again. */
void ph_flowtab_prefetch(ph_flowtab *t, const ph_parsed *p, ph_pkey *pk);

/* Run timers up to packet time now_ns (the engine calls this for packets that
 * did not reach the table too, so time always advances). */
void ph_flowtab_advance(ph_flowtab *t, int64_t now_ns);

/* Export every open flow (end of input or shutdown), reason PH_END_*. */
void ph_flowtab_flush(ph_flowtab *t, int reason);
/* The same in steps: the first call orders the open flows (as the flush
 * does), each call exports up to max of them (0 = all) and returns how many
 * are left; the reason of the first call holds until the flush ends. While a
 * flush is under way nothing else may change the table: ph_flowtab_packet and
 * ph_flowtab_advance end it first. */
size_t ph_flowtab_flush_step(ph_flowtab *t, int reason, size_t max);

/* Deferred ids (the pipelined engine, ph_engine.c): while on, a record is
 * exported without its flow_id and
 * community_id -- community_id[0] is then 0 and its bytes 4..15 keep what the
 * ids need besides the record's own fields -- and ph_rec_ids must complete it
 * before anyone reads it. The Community ID's SHA-1 is the largest single cost
 * of exporting a flow; the reading side, idle during a flood of one-packet
 * flows, computes them instead. */
void ph_flowtab_defer_ids(ph_flowtab *t, int on);
static inline int ph_rec_ids_pending(const ph_flow_rec *r) { return r->community_id[0] == 0; }
/* Complete a record exported with deferred ids (any thread; reads only the
 * record and the table's configuration). */
void ph_rec_ids(const ph_flowtab *t, ph_flow_rec *r);

/* Flows currently in the table, and bytes of memory the table holds. */
size_t ph_flowtab_active(const ph_flowtab *t);
size_t ph_flowtab_memory(const ph_flowtab *t);

#endif /* PH_FLOW_H */
