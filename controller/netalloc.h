/* Allocation of network resources by the controller: tenant network
 * ranges and VXLAN ids, VM addresses and MACs, published host ports.
 * Callers hold a store transaction; each allocation first takes the store
 * lock of what it allocates from (the network, the node, all networks), so
 * replicas sharing a PostgreSQL database allocate one after the other; a
 * UNIQUE index backs every allocated value. */
#pragma once

#include "controller/store.h"

/* Parse "a.b.c.d/p" as a tenant network: the address must be the network
 * address and p in 16..29. 0 or -EINVAL. */
int netalloc_parse_cidr(const char *text, uint32_t *ret_net, int *ret_prefix);
/* May a tenant pick this range? It must lie inside one of `pools`
 * ("a.b.c.d/p,..."), clear of the mesh range `mesh` and of the default
 * networks' pool (10.128.0.0/9). 0, -EPERM (outside every pool),
 * -EADDRNOTAVAIL (overlaps the mesh), -EINVAL (a setting does not parse). */
int netalloc_cidr_allowed(const char *pools, const char *mesh, uint32_t net,
                          int prefix);
/* Check the pools setting once at start: ranges that overlap neither the
 * mesh nor the default networks' pool. 0, or -EINVAL and why in *ret_why
 * (caller frees). */
int netalloc_pools_check(const char *pools, const char *mesh, char **ret_why);
/* True if the range overlaps any live network (or the store failed). */
bool netalloc_cidr_taken(struct store *s, uint32_t net, int prefix);
/* Next VXLAN id (1000 and up), after netalloc_cidr_taken() in the same
 * transaction (which holds the lock of all networks). */
int64_t netalloc_next_vxlan(struct store *s);
/* A free /24 in 10.128.0.0/9 for a tenant's default network; caller frees
 * the "a.b.c.d/24" text. NULL when exhausted. */
char *netalloc_default_cidr(struct store *s);
/* The gateway (first host) of a range, as text; caller frees. */
char *netalloc_gateway(uint32_t net);
/* The lowest free host address in the network (gateway excluded),
 * recorded as vm_id's; caller frees. NULL when the network is full (or
 * the store failed). Inside the caller's transaction. */
char *netalloc_address(struct store *s, const char *network_id,
                       const char *vm_id);
/* The lowest address given back to network $1's free map (tests read its
 * query plan). */
extern const char netalloc_sql_lowest_free[];
/* Free every address vm_id holds. 0 or -errno. */
int netalloc_release(struct store *s, const char *vm_id);
/* A random locally administered unicast MAC not yet used; caller frees. */
char *netalloc_mac(struct store *s);
/* A host port for proto on the node. A requested port (`want` > 0) is
 * honoured or refused, never replaced: it must be free and in the node's
 * range or among the well-known ports its provider permits (-EADDRINUSE,
 * -EACCES otherwise). Without one, the lowest free port of the range;
 * -ENOSPC when none. */
int64_t netalloc_host_port(struct store *s, const char *node_id,
                           const char *proto, int64_t want);
/* SQL condition on node `n`: every host port that VM `vm` (an SQL
 * expression, e.g. a placeholder) requested and has not yet got is free
 * on n and inside n's range or permitted there. For placement filters. */
#define NETALLOC_PORTS_FIT_SQL(vm)                                             \
    "NOT EXISTS (SELECT 1 FROM ports q WHERE q.vm_id = " vm " AND "            \
    "q.want_port > 0 AND q.host_port IS NULL AND (((q.want_port < "    \
    "n.port_min OR q.want_port > n.port_max) AND NOT EXISTS (SELECT 1 FROM "   \
    "node_permit_ports pp WHERE pp.node_id = n.id AND pp.port = "              \
    "q.want_port)) OR EXISTS (SELECT 1 FROM ports u WHERE u.node_id = n.id "   \
    "AND u.proto = q.proto AND u.host_port = q.want_port)))"
/* What node `node_id` offers for proto, for a refusal's detail: "node
 * 'NAME' publishes 20000-29999 (lowest free 20001) and permits 80, 443".
 * Caller frees; NULL when the node is unknown. */
char *netalloc_port_offer(struct store *s, const char *node_id,
                          const char *proto);
/* Why VM `vm_id`'s requested host ports fit no approved node, naming up
 * to three nodes' offers; caller frees. NULL when they fit one, when
 * there is no approved node yet, or when the VM requested none. */
char *netalloc_ports_refusal(struct store *s, const char *vm_id);
/* Replace the well-known ports node_id permits with ports[0..n) (distinct,
 * as the agent contract's decoder checked) unless they are the same.
 * 0 or -errno. */
int netalloc_permit_set(struct store *s, const char *node_id,
                        const uint16_t *ports, size_t n);

/* ---- IPv6: a ULA /64 next to every network's IPv4 range ---------------- */

/* The controller-wide ULA /48 (RFC 4193: fd + 40 random bits), made once
 * and kept in settings; *ret gets its 6 bytes. 0 or -errno. */
int netalloc_ula48(struct store *s, uint8_t ret[6]);
/* The lowest subnet id (1..65535) no live network holds, under the lock of
 * all networks; -ENOSPC when none is left, -EIO. */
int64_t netalloc_subnet6(struct store *s);
/* "fdxx:xxxx:xxxx:ssss::/64" and its gateway "...::1"; caller frees. */
char *netalloc_cidr6(const uint8_t ula[6], uint16_t subnet);
char *netalloc_gateway6(const uint8_t ula[6], uint16_t subnet);
/* A VM's IPv6 address: the /64 of cidr6 with the host number of its IPv4
 * address `addr4` inside `cidr4` (10.0.0.7 in 10.0.0.0/24 -> prefix::7),
 * so it is stable and unique as the IPv4 one is and never the gateway
 * (::1). Caller frees; NULL when any of them does not parse or addr4 lies
 * outside cidr4. */
char *netalloc_address6(const char *cidr6, const char *cidr4,
                        const char *addr4);
/* Give every live network without a /64 one (networks from before IPv6),
 * in one transaction. 0 or -errno. */
int netalloc_v6_backfill(struct store *s);
/* Give network_id its /64 (subnet6, cidr6, gateway6), inside the caller's
 * transaction. 0, -ENOSPC or -errno. */
int netalloc_network_v6(struct store *s, const char *network_id);
/* The IPv6 address of a NIC with IPv4 address addr4 in network_id (see
 * netalloc_address6); caller frees; NULL when the network has no /64. */
char *netalloc_nic_address6(struct store *s, const char *network_id,
                            const char *addr4);
