/* Network links in the current network namespace through rtnetlink
 * (libnl-route): bridges, VXLAN devices, masters, MTU, state, IPv4
 * addresses and bridge FDB entries. Each call opens its own socket, so
 * callers may switch namespaces between calls. All return 0 or -errno. */
#pragma once

#include "common/util.h"

#include <net/if.h>
#include <netinet/in.h>

struct link_vxlan {
    uint32_t id;       /* VNI */
    uint32_t local;    /* local VTEP address, host order; 0 = none */
    const char *dev;   /* underlay device (the mesh interface), or NULL */
    uint16_t dstport;  /* UDP port; 0 = 4789 */
    bool learning;     /* MAC learning (we keep it off: FDB is static) */
};

struct link_fdb {
    uint8_t mac[6];
    uint32_t dst; /* remote VTEP, host order; 0 when none */
};

struct link_addr {
    uint32_t addr; /* host order */
    int prefix;
};

/* ifindex of a link; -ENODEV when absent. */
int link_index(const char *name, int *ret_ifindex);
bool link_exists(const char *name);
/* The link's kind ("bridge", "vxlan", "wireguard", "tun"...), caller frees;
 * NULL when absent or without a kind. */
char *link_kind(const char *name);

/* Create a link of a kind with no parameters (bridge, wireguard, dummy).
 * -EEXIST when a link of that name exists. */
int link_create_kind(const char *name, const char *kind);
/* Create a bridge; an existing bridge of that name is fine (0). */
int link_create_bridge(const char *name);
/* Create a VXLAN device; an existing one with the same VNI is fine (0),
 * one with another VNI gives -EEXIST. */
int link_create_vxlan(const char *name, const struct link_vxlan *cfg);
/* Delete a link; -ENODEV when absent. */
int link_delete(const char *name);

/* Enslave to a bridge; master NULL releases. */
int link_set_master(const char *name, const char *master);
/* The master's name (caller frees) or NULL. */
char *link_master(const char *name);
int link_set_mtu(const char *name, unsigned mtu);
int link_get_mtu(const char *name, unsigned *ret_mtu);
int link_set_up(const char *name, bool up);
bool link_is_up(const char *name);

/* Add an IPv4 address (already present = 0) / delete it (absent = 0). */
int link_addr_add(const char *name, uint32_t addr, int prefix);
int link_addr_del(const char *name, uint32_t addr, int prefix);
/* Add an IPv6 address without duplicate address detection (every node's
 * bridge holds the same gateway; the firewall keeps them apart). Already
 * present = 0. */
int link_addr6_add(const char *name, const struct in6_addr *addr, int prefix);
/* IPv4 addresses on a link; *ret owned by the caller (free). */
int link_addr_list(const char *name, struct link_addr **ret, size_t *ret_n);
/* Whether IPv4 address addr (host order) is on one of this namespace's
 * links: 1 or 0, or -errno when they cannot be read. */
int link_addr_is_local(uint32_t addr);

/* Append a static FDB entry mac -> dst on a VXLAN device (bridge fdb
 * append ... self permanent). An identical entry already there is fine. */
int link_fdb_append(const char *dev, const uint8_t mac[6], uint32_t dst);
/* Delete one such entry; absent = 0. */
int link_fdb_del(const char *dev, const uint8_t mac[6], uint32_t dst);
/* The device's own FDB entries that carry a destination; *ret owned by the
 * caller (free). */
int link_fdb_list(const char *dev, struct link_fdb **ret, size_t *ret_n);

/* Names of links starting with prefix; a NULL-terminated array the caller
 * frees with link_names_free. */
int link_list_names(const char *prefix, char ***ret_names);
void link_names_free(char **names);
