/* IPv4 address, MAC and host port planning as pure functions: no I/O, no
 * state. Addresses are uint32_t in host byte order. */
#pragma once

#include "common/util.h"

#include <netinet/in.h>

struct ipam_cidr {
    uint32_t net;   /* network address, host bits zero */
    int prefix;     /* 0..32 */
};

#define IPAM_ADDR_STRLEN 16 /* "255.255.255.255" + NUL */
#define IPAM_MAC_STRLEN 18  /* "52:54:00:aa:bb:cc" + NUL */

/* Parse dotted-quad IPv4 text. 0 or -EINVAL. */
int ipam_addr_parse(const char *text, uint32_t *ret_addr);
/* Format an address into out. */
void ipam_addr_format(uint32_t addr, char out[IPAM_ADDR_STRLEN]);

/* Parse "a.b.c.d/p". With strict, host bits must be zero; otherwise they
 * are cleared and the address itself returned in ret_addr (may be NULL),
 * so "10.0.0.5/24" reads as an interface address. 0 or -EINVAL. */
int ipam_cidr_parse(const char *text, bool strict, struct ipam_cidr *ret_cidr,
                    uint32_t *ret_addr);
/* Parse a comma-separated list of strict CIDRs ("10.0.0.0/8,
 * 192.168.1.0/24"; spaces around items allowed; "" or NULL is the empty
 * list). *ret_cidrs is owned by the caller (NULL when empty). 0 or
 * -EINVAL. */
int ipam_cidr_list_parse(const char *text, struct ipam_cidr **ret_cidrs,
                         size_t *ret_n);
/* "a.b.c.d/p"; caller frees. */
char *ipam_cidr_format(const struct ipam_cidr *c);
/* Netmask of a prefix length (0 for /0). */
uint32_t ipam_mask(int prefix);
bool ipam_cidr_contains(const struct ipam_cidr *c, uint32_t addr);
/* Usable host addresses: 2^(32-p) - 2, or 2 for /31 and 1 for /32. */
uint64_t ipam_host_count(const struct ipam_cidr *c);

/* The n-th host address (n from 1), skipping the network and broadcast
 * addresses. 0 or -ERANGE when the range has fewer hosts. */
int ipam_nth_host(const struct ipam_cidr *c, uint64_t n, uint32_t *ret_addr);
/* The gateway: first host. 0 or -ERANGE. */
int ipam_gateway(const struct ipam_cidr *c, uint32_t *ret_addr);
/* Lowest host address that is neither the gateway nor in used[0..n_used).
 * 0, or -ENOSPC when the range is full. */
int ipam_next_free(const struct ipam_cidr *c, const uint32_t *used,
                   size_t n_used, uint32_t *ret_addr);

/* MACs: 6 bytes. Parse "aa:bb:cc:dd:ee:ff" (either case). 0 or -EINVAL. */
int ipam_mac_parse(const char *text, uint8_t ret_mac[6]);
/* Lowercase colon form into out. */
void ipam_mac_format(const uint8_t mac[6], char out[IPAM_MAC_STRLEN]);
/* Unicast with the locally administered bit set. */
bool ipam_mac_is_local_unicast(const uint8_t mac[6]);
/* A stable MAC 52:54:00:xx:xx:xx derived from a seed (e.g. a VM id and NIC
 * index) through SHA-256. */
void ipam_mac_derive(const void *seed, size_t seed_len, uint8_t ret_mac[6]);
/* A random 52:54:00:xx:xx:xx MAC not in used[0..n_used). 0, or -ENOSPC
 * when no free one was found after many tries. */
int ipam_mac_alloc(const uint8_t (*used)[6], size_t n_used, uint8_t ret_mac[6]);

/* A host port in [lo, hi] not in used[0..n_used): `want` when it is in range
 * and free, else the lowest free one. Returns the port, -EADDRINUSE when
 * `want` (non-zero) is taken or out of range, -ENOSPC when all are taken,
 * -EINVAL for a bad range. want == 0 means any. */
int ipam_port_alloc(uint16_t lo, uint16_t hi, const uint16_t *used,
                    size_t n_used, uint16_t want);
