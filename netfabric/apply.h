/* The one entry point the node agent calls: make this node's network match
 * the desired state (mesh device and peers, tenant bridges with VXLAN and
 * FDB, firewall and NAT). Idempotent: applying the same state twice
 * changes nothing the second time. */
#pragma once

#include "netfabric/state.h"

/* Apply want in the current network namespace. Every part is attempted
 * even when an earlier one fails; returns 0 or the first -errno. The mesh
 * keeps sessions with peers that stay (no replace-all), networks and links
 * not wanted any more are removed (only our own: fogbrN and the vxlanN
 * enslaved to them), the firewall is replaced in one transaction, and
 * the networks' resolvers follow (resolver_sync) when want->dns_dir is
 * set. */
int netfabric_apply(const struct nf_state *want);

/* Remove everything netfabric made: our nftables tables, the resolvers
 * under s->dns_dir, every fogbrN
 * bridge with its vxlanN, and the mesh interface named in s. 0 or the
 * first -errno. */
int netfabric_teardown(const struct nf_state *s);

/* The backend used for the mesh, for the agent to report. */
const char *netfabric_mesh_backend(void);
