/*
 * ph_csum.h -- Internet checksums (RFC 1071) for IPv4 headers and transports.
 *
 * Every function returns or compares one's-complement sums folded to 16 bits,
 * in network order value (the value a big-endian 16-bit load would give).
 * A checksummed region is valid when its folded sum is 0xffff.
 */
#ifndef PH_CSUM_H
#define PH_CSUM_H

#include "ph_types.h"

/* One's-complement sum of len bytes read as big-endian 16-bit words (an odd
 * last byte is padded with zero), folded to 16 bits, not complemented.
 * Reads 8 bytes at a time with a wide accumulator: no per-byte loop. */
uint32_t ph_csum_sum(const uint8_t *p, size_t len);

/* One's-complement addition of two folded sums. */
static inline uint32_t ph_csum_add(uint32_t a, uint32_t b)
{
    a += b;
    return (a & 0xffffu) + (a >> 16);
}

/* Sum of the TCP/UDP/ICMPv6 pseudo header (RFC 768/793 for IPv4, RFC 8200
 * section 8.1 for IPv6). Addresses are 4 (ipver 4) or 16 bytes. */
uint32_t ph_csum_pseudo(int ipver, const uint8_t *saddr, const uint8_t *daddr, uint8_t proto, uint32_t len);

/* Nonzero when the IPv4 header of ihl bytes carries a correct checksum. */
int ph_csum_ipv4_ok(const uint8_t *hdr, size_t ihl);

/* Nonzero when the transport segment l4[0..len) verifies. with_pseudo = 0 for
 * ICMPv4 (no pseudo header), 1 for TCP, UDP and ICMPv6. */
int ph_csum_l4_ok(int ipver, const uint8_t *saddr, const uint8_t *daddr, uint8_t proto,
                  const uint8_t *l4, uint32_t len, int with_pseudo);

#endif /* PH_CSUM_H */
