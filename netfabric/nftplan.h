/* The node's firewall and NAT as nftables text, planned from an nf_state
 * with no I/O: our own tables only (inet fogfabric, ip fogfabric_nat,
 * bridge fogfabric), replaced as a whole in one transaction. */
#pragma once

#include "common/buf.h"
#include "netfabric/state.h"

#define NFTPLAN_TABLE_INET "inet fogfabric"
#define NFTPLAN_TABLE_NAT "ip fogfabric_nat"
#define NFTPLAN_TABLE_NAT6 "ip6 fogfabric_nat6"
#define NFTPLAN_TABLE_BRIDGE "bridge fogfabric"

/* Append the four table definitions for s to out:
 * - inet fogfabric: no forwarding between tenant bridges or from them to
 *   the mesh; into a bridge only replies and DNATed flows; out of a bridge
 *   no private, link-local, CGNAT, loopback, multicast or reserved
 *   destination (IPv4 and IPv6) except s->egress_allow, which never opens
 *   the mesh or another tenant; the host itself answers VMs only ICMP echo
 *   and (with s->dns_dir, for a network with a DNS label) DNS on their
 *   own gateway (IPv4 and IPv6), neighbour discovery, and
 *   replies to what it started.
 * - ip fogfabric_nat: DNAT of each published port from the public address
 *   (any local address when s->public_addr is 0) and masquerade for each
 *   network's egress.
 * - ip6 fogfabric_nat6: for networks with IPv6, DNAT of each published
 *   port from s->public_addr6 (only when has_public_addr6) to the VM's
 *   IPv6 address, and masquerade (NAT66) of each /64's egress.
 * - bridge fogfabric: a VM's tap passes only frames from its MAC, ARP for
 *   its MAC and address, and IPv4 from its address (plus DHCP discovery);
 *   IPv6 only from its IPv6 and EUI-64 link-local addresses, neighbour
 *   advertisements only for those, no router advertisements or
 *   redirects; no DHCP server replies, no other ethertypes. From the
 *   VXLAN, ARP and neighbour discovery from or about the gateway and
 *   router advertisements are dropped (each node holds the gateway).
 * 0 or -EINVAL when s names something that cannot be written safely. */
int nftplan_build(const struct nf_state *s, struct buf *out);

/* Append one transaction that replaces our tables with the plan for s
 * (add, delete, define: works whether or not they exist). 0 or -EINVAL. */
int nftplan_script(const struct nf_state *s, struct buf *out);

/* Append the transaction that removes our tables (present or not). */
void nftplan_teardown(struct buf *out);
