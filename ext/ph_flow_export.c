/*
 * ph_flow_export.c -- flow state -> ph_flow_rec.
 *
 * conn_state is computed here, once per record, from the final endpoint
 * states (conn/main.zeek `conn_state`). The Community ID is computed here too
 * (never per packet), and the flow id is derived from it, the start time,
 * the VLAN ids and the flow's generation g:
 *
 *   d0, d1 = digest[0..8), digest[8..16) as little-endian 64-bit words
 *   d2     = digest[16..20) as a little-endian 32-bit word
 *   v      = vlan | inner_vlan << 16
 *   h      = mum(d0 ^ K0, d1 ^ K1) ^ mum(d2 ^ K2, ts_start ^ K3) ^ mum(v ^ K4, K5)
 *   h     ^= mum(g ^ K6, K7)          only when g != 0
 *   h     ^= mum(c ^ K8, K9)          only when the tunnel context c != 0 (mirroring session)
 *   flow_id = ph_fmix64(h)      (mum(a, b) = low ^ high half of the 128-bit a*b;
 *                             K0..K7 and ph_fmix64 as in the code below)
 *
 * which is deterministic across runs and machines and stays the same for the
 * interim updates and the final record of one flow.
 *
 * The generation separates connections on one key (tuple and VLANs) that
 * start at the same packet time: TCP reuse by a SYN with the same timestamp,
 * or a flow evicted or timed out and re-created by a packet of the same
 * tick. It is 0 for the first flow of a key at a start time -- so ids do not
 * depend on other traffic in the normal case -- and one more than the last
 * flow of that key and start time otherwise. The table remembers the removed
 * flows that had started in the current tick (packet time t->now) in a small
 * open-addressed set (PH_GEN_SLOTS entries, keyed by key hash and start time,
 * reset lazily when the clock moves). Flows of different keys that share a
 * 32-bit hash just share the counter (still distinct ids). If one tick fills
 * the set (hundreds of same-tick re-creations), every further flow created in
 * that tick gets generation 2^31 + its creation number within the tick, which
 * no other flow of the tick can have. Bounded memory, exact for captures in
 * time order; a flow created by an out-of-order packet (time < t->now) keeps
 * generation 0.
 */
#include "ph_flow_int.h"
#include "ph_cid.h"

static inline const uint8_t *orig_h(const ph_flow *f) { return f->orig_is_a ? ph_key_a(&f->k) : ph_key_b(&f->k); }
static inline const uint8_t *resp_h(const ph_flow *f) { return f->orig_is_a ? ph_key_b(&f->k) : ph_key_a(&f->k); }
static inline uint16_t orig_p(const ph_flow *f) { return f->orig_is_a ? ph_key_pa(&f->k) : ph_key_pb(&f->k); }
static inline uint16_t resp_p(const ph_flow *f) { return f->orig_is_a ? ph_key_pb(&f->k) : ph_key_pa(&f->k); }


static uint64_t flow_id_of(const uint8_t digest[20], uint64_t v, int64_t ts_start, uint32_t gen, uint64_t ctx)
{
    uint64_t d0 = ph_le64(digest), d1 = ph_le64(digest + 8), d2 = ph_le32(digest + 16);
    uint64_t h = ph_mum(d0 ^ 0xa0761d6478bd642full, d1 ^ 0xe7037ed1a0b428dbull) ^
                 ph_mum(d2 ^ 0x8ebc6af09c88c6e3ull, (uint64_t)ts_start ^ 0x589965cc75374cc3ull) ^
                 ph_mum(v ^ 0x1d8e4e27c47d124full, 0x9e3779b97f4a7c15ull);
    if (gen)
        h ^= ph_mum(gen ^ 0xd6e8feb86659fd93ull, 0xc2b2ae3d27d4eb4full);
    if (ctx)
        h ^= ph_mum(ctx ^ 0x165667b19e3779f9ull, 0x27d4eb2f165667c5ull);
    return ph_fmix64(h);
}

void ph_flow_ids(const ph_flowtab *t, const ph_flow *f, uint8_t digest[20], uint64_t *flow_id)
{
    ph_cid_digest(t->cfg.cid_seed, ph_key_ipver(&f->k), ph_key_proto(&f->k), orig_h(f), resp_h(f), orig_p(f),
                  resp_p(f), digest);
    *flow_id = flow_id_of(digest, f->vl[0] | (uint64_t)f->vl[1] << 16, f->ts_start, f->gen, f->k.w[6]);
}

/* The same from a record exported with deferred ids: its own fields hold
 * the tuple, start time and VLANs (as the flow had them), community_id the
 * generation (bytes 4..7) and the tunnel context word (8..15). */
void ph_rec_ids(const ph_flowtab *t, ph_flow_rec *r)
{
    uint8_t digest[20];
    uint32_t gen;
    uint64_t ctx;
    memcpy(&gen, r->community_id + 4, 4);
    memcpy(&ctx, r->community_id + 8, 8);
    ph_cid_digest(t->cfg.cid_seed, r->ip_version, r->proto, r->orig_h, r->resp_h, r->orig_p, r->resp_p, digest);
    r->flow_id = flow_id_of(digest, r->vlan | (uint64_t)r->inner_vlan << 16, r->ts_start, gen, ctx);
    memset(r->community_id, 0, sizeof r->community_id);
    ph_cid_b64(digest, r->community_id);
}

void ph_flowtab_defer_ids(ph_flowtab *t, int on) { t->defer_ids = (uint8_t)!!on; }

/* Same-tick generation set (see the top of this file). */
static void gen_tick(ph_flowtab *t)
{
    if (!t->gen_epoch || t->gen_now != t->now) {
        t->gen_epoch++;        /* entries of older ticks no longer match */
        t->gen_now = t->now;
        t->gen_used = 0;
        t->gen_sat = 0;
    }
}

/* Record a flow being removed; only flows that started in this tick matter. */
void ph_flow_gen_removed(ph_flowtab *t, const ph_flow *f)
{
    if (f->ts_start != t->now)
        return;
    gen_tick(t);
    if (t->gen_sat)
        return;   /* every flow created in this tick gets a fresh number anyway */
    uint32_t h = ph_key_hash(&f->k), i = h & (PH_GEN_SLOTS - 1);
    for (;;) {   /* ends: at most 3/4 of the slots are used */
        if (t->gen_tab[i].epoch != t->gen_epoch) {
            if (t->gen_used + 1 >= PH_GEN_SLOTS * 3 / 4) {
                t->gen_sat = 1;
                return;
            }
            t->gen_tab[i].epoch = t->gen_epoch;
            t->gen_tab[i].hash = h;
            t->gen_tab[i].next = f->gen + 1;
            t->gen_used++;
            return;
        }
        if (t->gen_tab[i].hash == h) {
            if (f->gen + 1 > t->gen_tab[i].next)
                t->gen_tab[i].next = f->gen + 1;
            return;
        }
        i = (i + 1) & (PH_GEN_SLOTS - 1);
    }
}

/* The generation of a flow being created at ts_start. */
uint32_t ph_flow_gen_new(ph_flowtab *t, uint32_t hash, int64_t ts_start)
{
    if (ts_start != t->now || !t->gen_epoch || t->gen_now != t->now)
        return 0;
    if (t->gen_sat)
        return 0x80000000u | t->gen_sat++;
    for (uint32_t i = hash & (PH_GEN_SLOTS - 1);; i = (i + 1) & (PH_GEN_SLOTS - 1)) {
        if (t->gen_tab[i].epoch != t->gen_epoch)
            return 0;
        if (t->gen_tab[i].hash == hash)
            return t->gen_tab[i].next;
    }
}

/* history matches ^?S[^HAFGIQ]*R.* (whole string), as conn/main.zeek */
static int rstos0_history(const ph_flow *f)
{
    int i = 0;
    if (i < f->hlen && ph_hist_at(f, i) == '^')
        i++;
    if (i >= f->hlen || ph_hist_at(f, i) != 'S')
        return 0;
    for (i++; i < f->hlen; i++) {
        char c = ph_hist_at(f, i);
        if (c == 'R')
            return 1;
        if (c == 'H' || c == 'A' || c == 'F' || c == 'G' || c == 'I' || c == 'Q')
            return 0;
    }
    return 0;
}

static int conn_state(const ph_flowtab *t, const ph_flow *f, uint64_t osize, uint64_t rsize)
{
    if (f->kind == PH_K_UDP) {
        const ph_udp_st *u = ph_udp(t, f);
        int o = u->len[0] >= 0, r = u->len[1] >= 0;
        return o ? (r ? PH_CS_SF : PH_CS_S0) : (r ? PH_CS_SHR : PH_CS_OTH);
    }
    if (f->kind != PH_K_TCP)
        return PH_CS_OTH;
    const ph_tcp_st *st = ph_tcp(t, f);
    int os = st->ep[0].state, rs = st->ep[1].state;
    int o_in = os == PH_TCPS_INACTIVE || os == PH_TCPS_PARTIAL;
    int r_in = rs == PH_TCPS_INACTIVE || rs == PH_TCPS_PARTIAL;
    if (rs == PH_TCPS_RESET) {
        if (os == PH_TCPS_SYN_SENT || os == PH_TCPS_SYN_ACK_SENT ||
            (os == PH_TCPS_RESET && osize == 0 && rsize == 0))
            return PH_CS_REJ;
        return o_in ? PH_CS_RSTRH : PH_CS_RSTR;
    }
    if (os == PH_TCPS_RESET) {
        if (r_in)
            return rstos0_history(f) ? PH_CS_RSTOS0 : PH_CS_OTH;
        return PH_CS_RSTO;
    }
    if (rs == PH_TCPS_CLOSED && os == PH_TCPS_CLOSED)
        return PH_CS_SF;
    if (os == PH_TCPS_CLOSED)
        return r_in ? PH_CS_SH : PH_CS_S2;
    if (rs == PH_TCPS_CLOSED)
        return o_in ? PH_CS_SHR : PH_CS_S3;
    if (os == PH_TCPS_SYN_SENT && rs == PH_TCPS_INACTIVE)
        return PH_CS_S0;
    if (os == PH_TCPS_ESTABLISHED && rs == PH_TCPS_ESTABLISHED)
        return PH_CS_S1;
    return PH_CS_OTH;
}

static int in_local_nets(const ph_flow_cfg *cfg, const uint8_t *addr, uint8_t ipver)
{
    for (uint32_t i = 0; i < cfg->n_local_nets; i++) {
        const uint8_t *net = cfg->local_nets[i].addr;
        unsigned bits = cfg->local_nets[i].prefix;
        if (cfg->local_nets[i].ipver != ipver)
            continue;
        if (bits > (ipver == 4 ? 32u : 128u))
            bits = ipver == 4 ? 32u : 128u;
        unsigned full = bits / 8, rest = bits % 8;
        if (memcmp(addr, net, full) != 0)
            continue;
        if (rest) {
            uint8_t m = (uint8_t)(0xffu << (8 - rest));
            if ((addr[full] & m) != (net[full] & m))
                continue;
        }
        return 1;
    }
    return 0;
}

static inline double ns_to_s(uint64_t ns) { return (double)ns / 1e9; }

/* first_iat gaps (ph_flow.c encode_gap): 0 + 31 bits of ns, 10 + 30 bits of
 * microseconds, 110 + 29 bits of milliseconds, 111 + 29 bits of seconds */
static double decode_gap(uint32_t v)
{
    if (!(v & 0x80000000u))
        return (double)v / 1e9;
    if (!(v & 0x40000000u))
        return (double)(v & 0x3fffffffu) * 1e-6;
    if (!(v & 0x20000000u))
        return (double)(v & 0x1fffffffu) * 1e-3;
    return (double)(v & 0x1fffffffu);
}

/* Fill the per-direction and both-direction features. */
static void export_features(const ph_flowtab *t, const ph_flow *f, ph_flow_rec *r)
{
    const ph_dstat *o = &f->fd[0], *s = &f->fd[1];
    uint64_t no = f->pkts[0], nr = f->pkts[1], nb = no + nr;
    ph_moments(no, f->ipb[0], o->sz_sq, &r->orig_size_mean, &r->orig_size_std);
    ph_moments(nr, f->ipb[1], s->sz_sq, &r->resp_size_mean, &r->resp_size_std);
    ph_moments(nb, f->ipb[0] + f->ipb[1], (ph_u128)o->sz_sq + s->sz_sq, &r->both_size_mean, &r->both_size_std);
    r->orig_size_min = no ? o->sz_min : 0;
    r->orig_size_max = o->sz_max;
    r->resp_size_min = nr ? s->sz_min : 0;
    r->resp_size_max = s->sz_max;
    r->both_size_min = nb ? (o->sz_min < s->sz_min ? o->sz_min : s->sz_min) : 0;
    r->both_size_max = o->sz_max > s->sz_max ? o->sz_max : s->sz_max;

    if (no > 1) {
        ph_moments(no - 1, o->iat_sum, ph_u128x_get(o->iat_sq), &r->orig_iat_mean, &r->orig_iat_std);
        r->orig_iat_mean /= 1e9;
        r->orig_iat_std /= 1e9;
        r->orig_iat_min = ns_to_s(o->iat_min);
        r->orig_iat_max = ns_to_s(o->iat_max);
    }
    if (nr > 1) {
        ph_moments(nr - 1, s->iat_sum, ph_u128x_get(s->iat_sq), &r->resp_iat_mean, &r->resp_iat_std);
        r->resp_iat_mean /= 1e9;
        r->resp_iat_std /= 1e9;
        r->resp_iat_min = ns_to_s(s->iat_min);
        r->resp_iat_max = ns_to_s(s->iat_max);
    }
    if (nb > 1) {
        ph_moments(nb - 1, f->fb.sum, ph_u128x_get(f->fb.sq), &r->both_iat_mean, &r->both_iat_std);
        r->both_iat_mean /= 1e9;
        r->both_iat_std /= 1e9;
        r->both_iat_min = ns_to_s(f->fb.min);
        r->both_iat_max = ns_to_s(f->fb.max);
    }

    if (f->kind == PH_K_TCP) {
        /* tcpf[] is in flag bit order: FIN SYN RST PSH ACK URG ECE CWR */
        const ph_tcp_st *st = ph_tcp(t, f);
        uint32_t of[8], sf[8];
        for (int i = 0; i < 8; i++) {
            of[i] = st->wx ? ph_tcp_wide_of(t, st)->tcpf[0][i] : st->tcpf[0][i];
            sf[i] = st->wx ? ph_tcp_wide_of(t, st)->tcpf[1][i] : st->tcpf[1][i];
        }
        r->orig_fin = of[0]; r->orig_syn = of[1]; r->orig_rst = of[2]; r->orig_psh = of[3];
        r->orig_ack = of[4]; r->orig_urg = of[5]; r->orig_ece = of[6]; r->orig_cwr = of[7];
        r->resp_fin = sf[0]; r->resp_syn = sf[1]; r->resp_rst = sf[2]; r->resp_psh = sf[3];
        r->resp_ack = sf[4]; r->resp_urg = sf[5]; r->resp_ece = sf[6]; r->resp_cwr = sf[7];
    }
    r->orig_empty_pkts = f->empty[0];
    r->resp_empty_pkts = f->empty[1];

    r->first_n = f->fn;
    for (int i = 0; i < f->fn; i++) {
        r->first_dirs[i] = (f->fdir >> i) & 1 ? -1 : 1;
        r->first_sizes[i] = f->fsz[i];
        r->first_iat[i] = i ? decode_gap(f->fiat[i - 1]) : 0.0;
    }
}

void ph_flow_export(ph_flowtab *t, ph_flow *f, int reason, int update)
{
    uint8_t digest[20];
    uint64_t id;
    if (t->defer_ids) {
        ph_flow_export_ids(t, f, reason, update, NULL, 0);
        return;
    }
    ph_flow_ids(t, f, digest, &id);
    ph_flow_export_ids(t, f, reason, update, digest, id);
}

void ph_flow_export_ids(ph_flowtab *t, ph_flow *f, int reason, int update, const uint8_t digest[20], uint64_t flow_id)
{
    ph_flow_rec *r = t->emit(t->ctx);
    if (!r)
        r = &t->rec;
    memset(r, 0, sizeof *r);

    if (digest) {
        r->flow_id = flow_id;
        ph_cid_b64(digest, r->community_id);
    } else {
        /* deferred (ph_rec_ids): community_id[0] stays 0 */
        memcpy(r->community_id + 4, &f->gen, 4);
        memcpy(r->community_id + 8, &f->k.w[6], 8);
    }
    r->ts_start = f->ts_start;
    r->ts_end = f->last_time;
    r->orig_pkts = f->pkts[0];
    r->resp_pkts = f->pkts[1];
    r->orig_ip_bytes = f->ipb[0];
    r->resp_ip_bytes = f->ipb[1];
    if (f->kind == PH_K_TCP) {
        r->orig_bytes = ph_tcp_size(t, f, 0);
        r->resp_bytes = ph_tcp_size(t, f, 1);
        r->missed_bytes = ph_tcp(t, f)->missed;
    } else if (f->kind == PH_K_UDP || f->kind == PH_K_ICMP) {
        const ph_udp_st *u = ph_udp(t, f);
        r->orig_bytes = u->len[0] > 0 ? (uint64_t)u->len[0] : 0;
        r->resp_bytes = u->len[1] > 0 ? (uint64_t)u->len[1] : 0;
    }
    export_features(t, f, r);

    r->vlan = f->vl[0];
    r->inner_vlan = f->vl[1];
    r->orig_p = orig_p(f);
    r->resp_p = resp_p(f);
    memcpy(r->orig_h, orig_h(f), 16);
    memcpy(r->resp_h, resp_h(f), 16);
    uint16_t fl = 0;
    if (f->vl[0])
        fl |= PH_RF_VLAN;
    if (f->vl[1])
        fl |= PH_RF_INNER_VLAN;
    if (f->cf & PH_CF_MAC) {
        fl |= PH_RF_MAC;
        memcpy(r->orig_mac, f->mac[0], 6);
        memcpy(r->resp_mac, f->mac[1], 6);
    }
    if (update)
        fl |= PH_RF_UPDATE;
    if (f->cf & PH_CF_FLIPPED)
        fl |= PH_RF_FLIPPED;
    if (t->cfg.n_local_nets) {
        fl |= PH_RF_LOCAL_KNOWN;
        if (in_local_nets(&t->cfg, r->orig_h, ph_key_ipver(&f->k)))
            fl |= PH_RF_LOCAL_ORIG;
        if (in_local_nets(&t->cfg, r->resp_h, ph_key_ipver(&f->k)))
            fl |= PH_RF_LOCAL_RESP;
    }
    const ph_tun_info *ti = ph_tun_get(t, f);
    if (ti && ti->type) {
        fl |= PH_RF_TUNNEL;
        r->tunnel_type = ti->type;
        r->tunnel_ipver = ti->ipver;
        memcpy(r->tunnel_outer_src, ti->outer[0], 16);
        memcpy(r->tunnel_outer_dst, ti->outer[1], 16);
        if (ti->keyok) {
            fl |= PH_RF_TUNNEL_KEY;
            r->tunnel_key = ti->key;
        }
    }
    if (f->k.w[6]) {
        fl |= PH_RF_INGRESS;
        r->ingress_id = (uint32_t)f->k.w[6];
    }
    for (int i = 0; ti && i < ti->nparents && i < 4; i++)
        r->tunnel_parents[i] = ti->parents[i];
    r->flags = fl;
    r->ip_version = ph_key_ipver(&f->k);
    r->proto = ph_key_proto(&f->k);
    r->conn_state = (uint8_t)conn_state(t, f, r->orig_bytes, r->resp_bytes);
    r->end_reason = (uint8_t)reason;
    for (int i = 0; i < f->hlen; i++)
        r->history[i] = ph_hist_at(f, i);
    r->history[f->hlen] = 0;

    if (update)
        t->ctr[PH_C_FLOW_UPDATES]++;
    else
        t->ctr[PH_C_FLOWS_EXPORTED]++;
}
