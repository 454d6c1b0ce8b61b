/*
 * ph_tunnel.h -- tunnel headers: one parser per encapsulation.
 *
 * Each parser looks at the bytes after the outer IP (IP-in-IP, GRE) or UDP
 * (VXLAN, GENEVE, Teredo, GTP-U, AYIYA) header and says where the inner
 * packet starts and what it is; ph_decode.c does the descent (it owns the
 * link-layer and IP decoders) and the bookkeeping of the encapsulation stack
 * (ph_parsed.encap[]). The parsers read nothing past caplen and follow what
 * Zeek accepts (src/packet_analysis/protocol/{vxlan,geneve,gre,iptunnel,
 * teredo,gtpv1,ayiya}), so that what is decapsulated is what Zeek
 * decapsulates; docs/architecture.md "Tunnels".
 */
#ifndef PH_TUNNEL_H
#define PH_TUNNEL_H

#include "ph_types.h"

/* Zeek's default ports (Tunnel::vxlan_ports, geneve_ports, teredo ports,
 * GTPv1 user plane, AYIYA). */
#define PH_VXLAN_PORT  4789
#define PH_GENEVE_PORT 6081
#define PH_TEREDO_PORT 3544
#define PH_GTPU_PORT   2152
#define PH_AYIYA_PORT  5072

/* What follows a tunnel header. */
enum { PH_NEXT_NONE = 0, PH_NEXT_ETH, PH_NEXT_IP, PH_NEXT_IPV4, PH_NEXT_IPV6, PH_NEXT_80211 };

/* Parser results. */
#define PH_TUNR_OK    0   /* h is filled: the inner packet starts at p + h->off */
#define PH_TUNR_TRUNC 1   /* the tunnel header is cut by the capture */
#define PH_TUNR_BAD   2   /* malformed header, or a payload Zeek does not decapsulate (GRE routing,
                             unknown protocol type, VXLAN without the I flag...) */
#define PH_TUNR_NONE  3   /* well formed, but it carries no packet (GTP signalling, AYIYA
                             non-forward messages, a Teredo payload that is not IPv6) */

typedef struct ph_tun_hdr {
    uint32_t off;     /* header bytes before the inner packet */
    uint32_t key;     /* VNI, GRE key, ERSPAN session id or TEID, if has_key */
    uint8_t next;     /* PH_NEXT_* */
    uint8_t has_key;
    uint8_t type;     /* PH_TUN_* (GRE: PH_TUN_ERSPAN for ERSPAN types I-III) */
    uint8_t ppp;      /* GRE version 1: a PPP header was skipped (PPTP) */
} ph_tun_hdr;

/* p: the tunnel header; caplen: bytes captured from p; wirelen: bytes the
 * outer header says follow (UDP length - 8, IP payload length). */
int ph_tun_ipip(uint8_t proto, const uint8_t *p, uint32_t caplen, ph_tun_hdr *h);
int ph_tun_gre(const uint8_t *p, uint32_t caplen, ph_tun_hdr *h);
int ph_tun_vxlan(const uint8_t *p, uint32_t caplen, ph_tun_hdr *h);
int ph_tun_geneve(const uint8_t *p, uint32_t caplen, ph_tun_hdr *h);
int ph_tun_teredo(const uint8_t *p, uint32_t caplen, uint32_t wirelen, ph_tun_hdr *h);
int ph_tun_gtpv1(const uint8_t *p, uint32_t caplen, ph_tun_hdr *h);
int ph_tun_ayiya(const uint8_t *p, uint32_t caplen, ph_tun_hdr *h);

/* Zeek's dpd_teredo signature (base/protocols/tunnels/dpd.sig): Teredo on a
 * port other than 3544 when the payload starts like a Teredo packet. */
int ph_tun_teredo_signature(const uint8_t *p, uint32_t caplen);

/* "vxlan", "geneve", ... ("" for PH_TUN_NONE). */
const char *ph_tun_name(int type);

#endif /* PH_TUNNEL_H */
