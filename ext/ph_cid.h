/*
 * ph_cid.h -- SHA-1 and Community ID v1 (https://github.com/corelight/community-id-spec).
 */
#ifndef PH_CID_H
#define PH_CID_H

#include "ph_types.h"

typedef struct ph_sha1 {
    uint32_t h[5];
    uint64_t nbytes;
    uint8_t block[64];
    uint32_t fill;
} ph_sha1;

void ph_sha1_init(ph_sha1 *s);
void ph_sha1_update(ph_sha1 *s, const void *data, size_t len);
void ph_sha1_final(ph_sha1 *s, uint8_t digest[20]);

/* Community ID v1 of a flow tuple. Addresses: IPv4 in the first 4 bytes (ipver 4) or
 * 16 bytes (ipver 6). For ICMP/ICMPv6 pass type as sport and code as dport: the
 * function applies the spec's type/code counterpart mapping and ordering.
 * Ports/addresses are in host order as seen on the wire (src -> dst).
 * Writes the 20-byte digest; ph_cid_b64 formats "1:<base64>" (31 bytes incl. NUL). */
void ph_cid_digest(uint16_t seed, uint8_t ipver, uint8_t proto,
                   const uint8_t *saddr, const uint8_t *daddr,
                   uint16_t sport, uint16_t dport, uint8_t digest[20]);
void ph_cid_b64(const uint8_t digest[20], char out[32]);
void ph_cid_hex(const uint8_t digest[20], char out[44]); /* "1:" + 40 hex + NUL */

#endif /* PH_CID_H */
