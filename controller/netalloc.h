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
/* The first free address after the run of taken ones that starts at $2
 * in network $1 (tests read its query plan). */
extern const char netalloc_sql_run_end[];
/* Free every address vm_id holds. 0 or -errno. */
int netalloc_release(struct store *s, const char *vm_id);
/* A random locally administered unicast MAC not yet used; caller frees. */
char *netalloc_mac(struct store *s);
/* A free host port for proto on the node: `want` if it is in the node's
 * range and free, else the lowest free one. -ENOSPC when none. */
int64_t netalloc_host_port(struct store *s, const char *node_id,
                           const char *proto, int64_t want);
