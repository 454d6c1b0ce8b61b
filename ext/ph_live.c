/*
 * ph_live.c -- live sources: AF_PACKET TPACKET_V3 ring and VXLAN/GENEVE UDP
 * listener (see ph_live.h for the contract).
 *
 * The ring: the kernel fills blocks of block_size bytes with variable-length
 * packets and hands a block to user space (TP_STATUS_USER) when it is full or
 * retire_ms after its first packet. We read the packets of the current block,
 * give the block back (TP_STATUS_KERNEL) and go on with the next one, in ring
 * order. A call that reaches the batch size in the middle of a block keeps its
 * place: the next call carries on from the next packet of that block.
 *
 * Setup order (ph_live_open_ring) closes the window in which a socket would
 * see packets that are not its own: the socket is created with protocol 0 (no
 * traffic), a drop-all filter is attached, the ring is mapped, the socket is
 * bound to the interface, joins the fanout group, and only then the real
 * filter replaces the drop-all one (or the filter is removed).
 *
 * The tunnel listener: a non-blocking UDP socket read with recvmmsg in
 * batches of PH_TUN_SLOTS datagrams; a call that reaches the batch size keeps
 * the datagrams not yet processed for the next call.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "ph_live.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PH_LT_ETHERNET_ 1
#define PH_LT_RAW_      101

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void ph_live_cfg_default(ph_live_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->block_size = 1u << 18;
    cfg->block_count = 256;
    cfg->frame_size = 2048;
    cfg->retire_ms = 10;
    cfg->fanout_group = -1;
    cfg->fanout_defrag = 1;
    cfg->promisc = 1;
}

#ifdef __linux__

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PH_TUN_SLOTS    32            /* datagrams per recvmmsg */
#define PH_TUN_BUF      65536         /* bytes per datagram buffer (larger ones are truncated) */
#define PH_TUN_CTRL     64            /* control bytes per datagram (SCM_TIMESTAMPNS) */
#define PH_POLL_MAX_MS  250           /* longest single wait: the timers run at least this often */
#define PH_VXLAN_HLEN   8
#define PH_GENEVE_HLEN  8
#define PH_ETH_P_TEB    0x6558        /* Transparent Ethernet Bridging (GENEVE protocol type) */

/* room for tpacket3_hdr + sockaddr_ll before the frame (where a VLAN tag can go back) */
#define PH_RING_HDR (TPACKET_ALIGN(sizeof(struct tpacket3_hdr)) + sizeof(struct sockaddr_ll))

struct ph_live {
    int kind;                 /* 0: ring; PH_TUN_VXLAN / PH_TUN_GENEVE */
    int fd;
    int linktype;
    char err[256];
    ph_live_stats st;
    /* ring */
    char ifname[IFNAMSIZ];
    unsigned ifindex;
    uint8_t *ring;
    size_t ring_len;
    uint32_t block_size, block_count;
    uint32_t cur;             /* block being read, in ring order */
    int in_block;             /* cur is ours (TP_STATUS_USER) and partly read */
    uint32_t pkt_left;        /* packets of cur not read yet */
    uint32_t pkt_off;         /* offset of the next one in cur */
    uint8_t *scratch;         /* VLAN re-insertion when a frame has no headroom */
    /* tunnel */
    uint16_t port;
    struct mmsghdr *msgs;
    struct iovec *iov;
    uint8_t *bufs;
    uint8_t *ctrl;
    unsigned nready, next;    /* datagrams received / processed of the last recvmmsg */
};

static int64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * PH_NS_PER_SEC + ts.tv_nsec;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void live_err(ph_live *l, const char *what)
{
    snprintf(l->err, sizeof(l->err), "%s: %s", what, strerror(errno));
}

/* ------------------------------------------------------------------ */
/* Interface                                                           */
/* ------------------------------------------------------------------ */
int ph_live_linktype(const char *ifname, char *err, size_t errlen)
{
    struct ifreq ifr;
    int fd, rc = -1;
    if (ifname == NULL || ifname[0] == '\0' || strlen(ifname) >= IFNAMSIZ) {
        set_err(err, errlen, "interface name must be 1 to %d characters", IFNAMSIZ - 1);
        return -1;
    }
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_err(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, ifname, strlen(ifname));
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
        if (errno == ENODEV)
            set_err(err, errlen, "interface %s does not exist", ifname);
        else
            set_err(err, errlen, "interface %s: %s", ifname, strerror(errno));
        goto done;
    }
    switch (ifr.ifr_hwaddr.sa_family) {
    case ARPHRD_ETHER:
    case ARPHRD_LOOPBACK:      /* lo carries an all-zero Ethernet header */
        rc = PH_LT_ETHERNET_;
        break;
    case ARPHRD_NONE:          /* tun, WireGuard: the packet socket gives raw IP */
    case ARPHRD_PPP:
    case ARPHRD_TUNNEL:
    case ARPHRD_TUNNEL6:
    case ARPHRD_IPGRE:
#ifdef ARPHRD_RAWIP
    case ARPHRD_RAWIP:
#endif
        rc = PH_LT_RAW_;
        break;
    default:
        set_err(err, errlen, "interface %s: link type %u (ARPHRD) is not supported", ifname,
                (unsigned)ifr.ifr_hwaddr.sa_family);
    }
done:
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Ring: open                                                          */
/* ------------------------------------------------------------------ */
static const char *ring_cfg_problem(const ph_live_cfg *c)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t total = (uint64_t)c->block_size * c->block_count;
    if (page <= 0)
        page = 4096;
    if (c->block_size < (uint32_t)page || c->block_size % (uint32_t)page != 0)
        return "block_size must be a multiple of the page size";
    if (c->block_count < 1)
        return "block_count must be at least 1";
    if (c->frame_size < TPACKET3_HDRLEN || c->frame_size % TPACKET_ALIGNMENT != 0)
        return "frame_size must be a multiple of 16 and at least 68";
    if (c->frame_size > c->block_size || c->block_size % c->frame_size != 0)
        return "frame_size must divide block_size";
    if (total > ((uint64_t)1 << 34))
        return "the ring (block_size * block_count) must be at most 16 GiB";
    if (c->retire_ms < 1 || c->retire_ms > 60000)
        return "retire_ms must be between 1 and 60000";
    if (c->fanout_group < -1 || c->fanout_group > 65535)
        return "fanout group must be between 0 and 65535";
    if (c->filter_len > BPF_MAXINSNS || (c->filter_len > 0 && c->filter == NULL))
        return "the BPF program is empty or longer than 4096 instructions";
    return NULL;
}

static const char *priv_hint(int e)
{
    return (e == EPERM || e == EACCES) ? " (needs CAP_NET_RAW and CAP_NET_ADMIN)" : "";
}

/* A handle with nothing open yet (what ph_live_close expects). */
static ph_live *live_alloc(int linktype, char *err, size_t errlen)
{
    ph_live *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    l->fd = -1;
    l->ring = MAP_FAILED;
    l->linktype = linktype;
    return l;
}

ph_live *ph_live_open_ring(const ph_live_cfg *cfg, int *code, char *err, size_t errlen)
{
    ph_live *l = NULL;
    const char *problem;
    struct sock_filter drop_all = BPF_STMT(BPF_RET | BPF_K, 0);
    struct sock_fprog prog;
    struct tpacket_req3 req;
    struct sockaddr_ll sll;
    struct packet_mreq mreq;
    unsigned ifindex;
    int v, lt, e;

    *code = PH_LIVE_ERROR;
    problem = ring_cfg_problem(cfg);
    if (problem != NULL) {
        set_err(err, errlen, "%s", problem);
        return NULL;
    }
    lt = ph_live_linktype(cfg->ifname, err, errlen);
    if (lt < 0)
        return NULL;
    ifindex = if_nametoindex(cfg->ifname);
    if (ifindex == 0) {
        set_err(err, errlen, "interface %s does not exist", cfg->ifname);
        return NULL;
    }
    l = live_alloc(lt, err, errlen);
    if (l == NULL)
        return NULL;
    l->block_size = cfg->block_size;
    l->block_count = cfg->block_count;
    l->ifindex = ifindex;
    memcpy(l->ifname, cfg->ifname, strlen(cfg->ifname) + 1);   /* length checked by ph_live_linktype */

    l->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (l->fd < 0) {
        e = errno;
        set_err(err, errlen, "AF_PACKET socket: %s%s", strerror(e), priv_hint(e));
        goto error;
    }
    prog.len = 1;
    prog.filter = &drop_all;
    if (setsockopt(l->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0) {
        set_err(err, errlen, "SO_ATTACH_FILTER: %s", strerror(errno));
        goto error;
    }
    v = TPACKET_V3;
    if (setsockopt(l->fd, SOL_PACKET, PACKET_VERSION, &v, sizeof(v)) < 0) {
        set_err(err, errlen, "PACKET_VERSION TPACKET_V3: %s", strerror(errno));
        goto error;
    }
    memset(&req, 0, sizeof(req));
    req.tp_block_size = cfg->block_size;
    req.tp_block_nr = cfg->block_count;
    req.tp_frame_size = cfg->frame_size;
    req.tp_frame_nr = (cfg->block_size / cfg->frame_size) * cfg->block_count;
    req.tp_retire_blk_tov = cfg->retire_ms;
    if (setsockopt(l->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0) {
        e = errno;
        set_err(err, errlen, "PACKET_RX_RING (%u blocks of %u bytes): %s", cfg->block_count,
                cfg->block_size, strerror(e));
        goto error;
    }
    l->ring_len = (size_t)cfg->block_size * cfg->block_count;
    l->ring = mmap(NULL, l->ring_len, PROT_READ | PROT_WRITE, MAP_SHARED, l->fd, 0);
    if (l->ring == MAP_FAILED) {
        set_err(err, errlen, "mmap of the ring (%zu bytes): %s", l->ring_len, strerror(errno));
        goto error;
    }
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = (int)ifindex;
    if (bind(l->fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
        set_err(err, errlen, "bind to %s: %s", cfg->ifname, strerror(errno));
        goto error;
    }
    if (cfg->promisc) {
        memset(&mreq, 0, sizeof(mreq));
        mreq.mr_ifindex = (int)ifindex;
        mreq.mr_type = PACKET_MR_PROMISC;
        if (setsockopt(l->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof(mreq)) < 0) {
            e = errno;
            set_err(err, errlen, "promiscuous mode on %s: %s%s", cfg->ifname, strerror(e), priv_hint(e));
            goto error;
        }
    }
    if (cfg->fanout_group >= 0) {
        v = cfg->fanout_group
            | ((PACKET_FANOUT_HASH | (cfg->fanout_defrag ? PACKET_FANOUT_FLAG_DEFRAG : 0)) << 16);
        if (setsockopt(l->fd, SOL_PACKET, PACKET_FANOUT, &v, sizeof(v)) < 0) {
            e = errno;
            set_err(err, errlen, "PACKET_FANOUT group %d on %s: %s%s", cfg->fanout_group, cfg->ifname,
                    strerror(e), e == EINVAL ? " (the group exists with another mode or interface)" : "");
            goto error;
        }
    }
    if (cfg->filter_len > 0) {
        prog.len = (unsigned short)cfg->filter_len;
        prog.filter = (struct sock_filter *)cfg->filter;
        if (setsockopt(l->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0) {
            set_err(err, errlen, "the kernel rejected the BPF filter: %s", strerror(errno));
            goto error;
        }
    } else {
        v = 0;
        if (setsockopt(l->fd, SOL_SOCKET, SO_DETACH_FILTER, &v, sizeof(v)) < 0) {
            set_err(err, errlen, "SO_DETACH_FILTER: %s", strerror(errno));
            goto error;
        }
    }
    return l;

error:
    ph_live_close(l);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Ring: read                                                          */
/* ------------------------------------------------------------------ */
static inline struct tpacket_block_desc *ring_block(const ph_live *l, uint32_t i)
{
    return (struct tpacket_block_desc *)(l->ring + (size_t)i * l->block_size);
}

/* One packet of the current block at l->pkt_off. Returns ph_engine_packet's result. */
static int ring_packet(ph_live *l, ph_engine *e, uint8_t *blk)
{
    struct tpacket3_hdr h;
    ph_pkt pkt;
    uint32_t off = l->pkt_off;
    uint8_t *frame;
    uint32_t snap, len;

    if ((uint64_t)off + sizeof(h) > l->block_size) {
        l->pkt_left = 0;   /* the kernel wrote past its block: give up on the rest */
        return 0;
    }
    memcpy(&h, blk + off, sizeof(h));
    l->pkt_off = h.tp_next_offset ? off + h.tp_next_offset : l->block_size;
    l->pkt_left--;
    snap = h.tp_snaplen;
    len = h.tp_len;
    if ((uint64_t)off + h.tp_mac + snap > l->block_size || h.tp_mac < sizeof(h))
        return 0;
    frame = blk + off + h.tp_mac;

    memset(&pkt, 0, sizeof(pkt));
    pkt.data = frame;
    pkt.caplen = snap;
    pkt.wirelen = len;
    pkt.ts_ns = (int64_t)h.tp_sec * PH_NS_PER_SEC + h.tp_nsec;
    pkt.linktype = (uint32_t)l->linktype;

    /* The kernel took the outer VLAN tag off the frame into tp_vlan_tci: put
     * it back so the decoder sees the frame as it was on the wire. */
    if ((h.tp_status & TP_STATUS_VLAN_VALID) && l->linktype == PH_LT_ETHERNET_ && snap >= 12) {
        uint16_t tpid = (h.tp_status & TP_STATUS_VLAN_TPID_VALID) && h.hv1.tp_vlan_tpid
                        ? h.hv1.tp_vlan_tpid : ETH_P_8021Q;
        uint16_t tci = (uint16_t)h.hv1.tp_vlan_tci;
        uint8_t *dst;
        if (h.tp_mac >= PH_RING_HDR + 4) {
            dst = frame - 4;                     /* headroom before the frame: in place */
            memmove(dst, frame, 12);
        } else {
            if (l->scratch == NULL && (l->scratch = malloc((size_t)l->block_size + 4)) == NULL)
                return PH_RUN_NOMEM;
            dst = l->scratch;
            memcpy(dst, frame, 12);
            memcpy(dst + 16, frame + 12, snap - 12);
        }
        dst[12] = (uint8_t)(tpid >> 8);
        dst[13] = (uint8_t)tpid;
        dst[14] = (uint8_t)(tci >> 8);
        dst[15] = (uint8_t)tci;
        pkt.data = dst;
        pkt.caplen = snap + 4;
        pkt.wirelen = len + 4;
        l->st.vlan_restored++;
    }
    if (pkt.caplen < pkt.wirelen)
        l->st.truncated++;
    l->st.packets++;
    l->st.bytes += pkt.caplen;
    return ph_engine_packet(e, &pkt);
}

/* Read ready blocks (at most one lap of the ring). 1: batch reached,
 * 0: no block ready or lap done, PH_LIVE_NOMEM. */
static int ring_drain(ph_live *l, ph_engine *e, size_t batch)
{
    for (uint32_t n = 0; n < l->block_count; n++) {
        struct tpacket_block_desc *bd = ring_block(l, l->cur);
        if (!l->in_block) {
            uint32_t status = __atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE);
            if (!(status & TP_STATUS_USER))
                return 0;
            l->in_block = 1;
            l->pkt_left = bd->hdr.bh1.num_pkts;
            l->pkt_off = bd->hdr.bh1.offset_to_first_pkt;
        }
        while (l->pkt_left > 0) {
            if (ring_packet(l, e, (uint8_t *)bd) == PH_RUN_NOMEM)
                return PH_LIVE_NOMEM;
            if (ph_engine_queued(e) >= batch && l->pkt_left > 0)
                return 1;
        }
        __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        l->in_block = 0;
        l->cur = (l->cur + 1) % l->block_count;
        l->st.blocks++;
        if (ph_engine_queued(e) >= batch)
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Tunnel listener                                                     */
/* ------------------------------------------------------------------ */
ph_live *ph_live_open_tunnel(int kind, const char *addr, uint16_t port, int *code,
                             char *err, size_t errlen)
{
    ph_live *l = NULL;
    struct sockaddr_storage ss;
    socklen_t slen;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    int family, v;

    *code = PH_LIVE_ERROR;
    if (kind != PH_TUN_VXLAN && kind != PH_TUN_GENEVE) {
        set_err(err, errlen, "tunnel kind must be vxlan or geneve");
        return NULL;
    }
    if (addr == NULL || addr[0] == '\0')
        addr = "0.0.0.0";
    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        family = AF_INET;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        slen = sizeof(*s4);
    } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        family = AF_INET6;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        slen = sizeof(*s6);
    } else {
        set_err(err, errlen, "bind address %s is not an IPv4 or IPv6 address", addr);
        return NULL;
    }
    l = live_alloc(PH_LT_ETHERNET_, err, errlen);
    if (l == NULL)
        return NULL;
    l->kind = kind;
    l->msgs = calloc(PH_TUN_SLOTS, sizeof(*l->msgs));
    l->iov = calloc(PH_TUN_SLOTS, sizeof(*l->iov));
    l->bufs = malloc((size_t)PH_TUN_SLOTS * PH_TUN_BUF);
    l->ctrl = malloc((size_t)PH_TUN_SLOTS * PH_TUN_CTRL);
    if (l->msgs == NULL || l->iov == NULL || l->bufs == NULL || l->ctrl == NULL) {
        set_err(err, errlen, "out of memory");
        goto error;
    }
    l->fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0) {
        set_err(err, errlen, "UDP socket: %s", strerror(errno));
        goto error;
    }
    /* a large receive buffer rides out bursts; FORCE needs CAP_NET_ADMIN, the
     * plain one is capped at net.core.rmem_max: best effort either way */
    v = 32 << 20;
    if (setsockopt(l->fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) < 0)
        (void)setsockopt(l->fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
    v = 1;
    (void)setsockopt(l->fd, SOL_SOCKET, SO_TIMESTAMPNS, &v, sizeof(v));
    if (bind(l->fd, (struct sockaddr *)&ss, slen) < 0) {
        set_err(err, errlen, "bind UDP %s port %u: %s", addr, (unsigned)port, strerror(errno));
        goto error;
    }
    slen = sizeof(ss);
    if (getsockname(l->fd, (struct sockaddr *)&ss, &slen) < 0) {
        set_err(err, errlen, "getsockname: %s", strerror(errno));
        goto error;
    }
    l->port = ntohs(family == AF_INET ? s4->sin_port : s6->sin6_port);
    return l;

error:
    ph_live_close(l);
    return NULL;
}

static inline uint32_t be24(const uint8_t *p) { return ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2]; }

/* Strip the VXLAN/GENEVE header: 0 and the inner frame's offset and VNI, or -1 (counted). */
static int tun_decap(ph_live *l, const uint8_t *b, uint32_t got, uint32_t *hlen, uint32_t *vni)
{
    if (l->kind == PH_TUN_VXLAN) {
        /* flags(8: I = 0x08) reserved(24) VNI(24) reserved(8) */
        if (got < PH_VXLAN_HLEN || !(b[0] & 0x08)) {
            l->st.tunnel_bad++;
            return -1;
        }
        *hlen = PH_VXLAN_HLEN;
        *vni = be24(b + 4);
    } else {
        /* ver(2) optlen(6, 4-byte words) O(1) C(1) rsvd(6) protocol(16) VNI(24) rsvd(8) options */
        uint32_t h;
        if (got < PH_GENEVE_HLEN || (b[0] >> 6) != 0) {
            l->st.tunnel_bad++;
            return -1;
        }
        h = PH_GENEVE_HLEN + (uint32_t)(b[0] & 0x3f) * 4;
        if (got < h) {
            l->st.tunnel_bad++;
            return -1;
        }
        if ((b[1] & 0x80) || ph_be16(b + 2) != PH_ETH_P_TEB) {
            l->st.tunnel_unsupported++;   /* OAM frame, or not Ethernet inside */
            return -1;
        }
        *hlen = h;
        *vni = be24(b + 4);
    }
    if (got == *hlen) {
        l->st.tunnel_bad++;               /* header and nothing inside */
        return -1;
    }
    return 0;
}

static int64_t msg_ts(struct msghdr *mh)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            return (int64_t)ts.tv_sec * PH_NS_PER_SEC + ts.tv_nsec;
        }
    }
    return real_ns();
}

static int tun_datagram(ph_live *l, ph_engine *e, unsigned i)
{
    struct mmsghdr *m = &l->msgs[i];
    const uint8_t *b = l->bufs + (size_t)i * PH_TUN_BUF;
    uint32_t len = m->msg_len;                       /* real length (MSG_TRUNC) */
    uint32_t got = len < PH_TUN_BUF ? len : PH_TUN_BUF;
    uint32_t hlen = 0, vni = 0;
    ph_pkt pkt;

    l->st.datagrams++;
    if (tun_decap(l, b, got, &hlen, &vni) != 0)
        return 0;
    memset(&pkt, 0, sizeof(pkt));
    pkt.data = b + hlen;
    pkt.caplen = got - hlen;
    pkt.wirelen = len - hlen;
    pkt.ts_ns = msg_ts(&m->msg_hdr);
    pkt.linktype = PH_LT_ETHERNET_;
    pkt.mirror_id = vni + 1;   /* the mirror session: part of the flow key, observer.ingress */
    if (pkt.caplen < pkt.wirelen)
        l->st.truncated++;
    l->st.packets++;
    l->st.bytes += pkt.caplen;
    return ph_engine_packet(e, &pkt);
}

/* Like ring_drain: 1 batch reached, 0 nothing more now, PH_LIVE_NOMEM. */
static int tun_drain(ph_live *l, ph_engine *e, size_t batch)
{
    for (int round = 0; round < 64; round++) {
        if (l->next >= l->nready) {
            int n;
            for (unsigned i = 0; i < PH_TUN_SLOTS; i++) {
                struct msghdr *mh = &l->msgs[i].msg_hdr;
                l->iov[i].iov_base = l->bufs + (size_t)i * PH_TUN_BUF;
                l->iov[i].iov_len = PH_TUN_BUF;
                memset(mh, 0, sizeof(*mh));
                mh->msg_iov = &l->iov[i];
                mh->msg_iovlen = 1;
                mh->msg_control = l->ctrl + (size_t)i * PH_TUN_CTRL;
                mh->msg_controllen = PH_TUN_CTRL;
                l->msgs[i].msg_len = 0;
            }
            n = recvmmsg(l->fd, l->msgs, PH_TUN_SLOTS, MSG_DONTWAIT | MSG_TRUNC, NULL);
            if (n <= 0) {
                if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    l->st.recv_errors++;
                l->nready = l->next = 0;
                return 0;
            }
            l->nready = (unsigned)n;
            l->next = 0;
        }
        while (l->next < l->nready) {
            if (tun_datagram(l, e, l->next++) == PH_RUN_NOMEM)
                return PH_LIVE_NOMEM;
            if (ph_engine_queued(e) >= batch)
                return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The loop                                                            */
/* ------------------------------------------------------------------ */
int ph_live_run(ph_live *l, ph_engine *e, int timeout_ms, size_t batch)
{
    int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int rc;

    if (batch == 0)
        batch = 1;
    for (;;) {
        rc = l->kind == 0 ? ring_drain(l, e, batch) : tun_drain(l, e, batch);
        if (rc != 0)
            return rc;               /* PH_LIVE_BATCH or PH_LIVE_NOMEM */
        /* idle (or one lap done): the timers follow the wall clock */
        ph_engine_advance(e, real_ns());
        if (e->nomem)
            return PH_LIVE_NOMEM;
        if (ph_engine_queued(e) >= batch)
            return PH_LIVE_BATCH;
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            return PH_LIVE_TIMEOUT;
        struct pollfd pfd = { .fd = l->fd, .events = POLLIN | POLLERR, .revents = 0 };
        int n = poll(&pfd, 1, (int)(left < PH_POLL_MAX_MS ? left : PH_POLL_MAX_MS));
        if (n < 0) {
            if (errno == EINTR)
                return PH_LIVE_TIMEOUT;   /* let the caller's signal handlers run */
            live_err(l, "poll");
            return PH_LIVE_ERROR;
        }
        if (n > 0 && (pfd.revents & (POLLERR | POLLNVAL)) && !(pfd.revents & POLLIN)) {
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (pfd.revents & POLLNVAL) {
                snprintf(l->err, sizeof(l->err), "the capture socket is closed");
                return PH_LIVE_ERROR;
            }
            if (getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr != 0) {
                /* ENETDOWN: the interface went down (the socket works again when it is
                 * up) or was deleted (the socket stays silent: the caller must reopen) */
                if (soerr == ENETDOWN && l->kind == 0 && if_nametoindex(l->ifname) != l->ifindex)
                    snprintf(l->err, sizeof(l->err), "interface %s no longer exists", l->ifname);
                else if (soerr == ENETDOWN && l->kind == 0)
                    snprintf(l->err, sizeof(l->err), "interface %s is down", l->ifname);
                else
                    snprintf(l->err, sizeof(l->err), "capture socket: %s", strerror(soerr));
                return PH_LIVE_ERROR;
            }
        }
    }
}

void ph_live_stats_get(ph_live *l, ph_live_stats *out)
{
    if (l->kind == 0 && l->fd >= 0) {
        struct tpacket_stats_v3 ks;
        socklen_t len = sizeof(ks);
        memset(&ks, 0, sizeof(ks));
        /* the kernel resets its counters on every read: accumulate */
        if (getsockopt(l->fd, SOL_PACKET, PACKET_STATISTICS, &ks, &len) == 0) {
            l->st.kernel_packets += ks.tp_packets;
            l->st.kernel_drops += ks.tp_drops;
            l->st.kernel_freezes += ks.tp_freeze_q_cnt;
        }
    }
    *out = l->st;
}

const char *ph_live_error(const ph_live *l) { return l->err; }
uint16_t ph_live_port(const ph_live *l) { return l->port; }
int ph_live_fd(const ph_live *l) { return l->fd; }
int ph_live_linktype_of(const ph_live *l) { return l->linktype; }

void ph_live_close(ph_live *l)
{
    if (l == NULL)
        return;
    if (l->ring != MAP_FAILED && l->ring != NULL)
        munmap(l->ring, l->ring_len);
    if (l->fd >= 0)
        close(l->fd);
    free(l->scratch);
    free(l->msgs);
    free(l->iov);
    free(l->bufs);
    free(l->ctrl);
    free(l);
}

#else /* not Linux: the binding builds, every open says why it cannot work */

struct ph_live { int unused; };

int ph_live_linktype(const char *ifname, char *err, size_t errlen)
{
    set_err(err, errlen, "live capture needs Linux (AF_PACKET)");
    return -1;
}

ph_live *ph_live_open_ring(const ph_live_cfg *cfg, int *code, char *err, size_t errlen)
{
    *code = PH_LIVE_ENOTSUP;
    set_err(err, errlen, "live capture needs Linux (AF_PACKET)");
    return NULL;
}

ph_live *ph_live_open_tunnel(int kind, const char *addr, uint16_t port, int *code, char *err, size_t errlen)
{
    *code = PH_LIVE_ENOTSUP;
    set_err(err, errlen, "the tunnel listener needs Linux (recvmmsg)");
    return NULL;
}

int ph_live_run(ph_live *l, ph_engine *e, int timeout_ms, size_t batch) { return PH_LIVE_ENOTSUP; }
void ph_live_stats_get(ph_live *l, ph_live_stats *out) { memset(out, 0, sizeof(*out)); }
const char *ph_live_error(const ph_live *l) { return "not supported on this system"; }
uint16_t ph_live_port(const ph_live *l) { return 0; }
int ph_live_fd(const ph_live *l) { return -1; }
int ph_live_linktype_of(const ph_live *l) { return -1; }
void ph_live_close(ph_live *l) { (void)l; }

#endif
