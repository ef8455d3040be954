/* The node's own policy over the desired documents the controller sends:
 * the hub (or whoever sits between it and us) may lie, so every document
 * is checked against facts of this host before anything is applied, and
 * whatever falls outside the policy is left out and reported. Pure
 * functions of the document and the host facts, plus one collector that
 * reads those facts through the root prefix. */
#pragma once

#include "api/agentproto.h"
#include "common/util.h"
#include "netfabric/ipam.h"

#include <jansson.h>

/* Bounds of what one entry may say (the controller's own limits or a
 * little above them; nothing honest comes near). */
#define POLICY_NAME_MAX 255
#define POLICY_USER_DATA_MAX 65536
#define POLICY_SSH_KEYS_MAX 64
#define POLICY_SSH_KEY_MAX 16384
#define POLICY_NICS_MAX 16

/* A route or address of the host. Those on a bridge of ours (fogbr<N>)
 * belong to tenant network N: they are there because we built it, and
 * only network N may overlap them. */
struct policy_net {
    struct ipam_cidr cidr;
    uint32_t vxlan_id;  /* 0: the host's own */
};

/* An IPv6 route of the host (/proc/net/ipv6_route). */
struct policy_net6 {
    struct in6_addr net;
    int prefix;
    uint32_t vxlan_id;  /* 0: the host's own */
};

/* What the policy is checked against. The arrays are owned (freed by
 * policy_host_clear); `controller` is borrowed. */
struct policy_host {
    int64_t port_min, port_max;  /* host ports the controller may publish */
    const uint16_t *permit_ports; /* and these beyond the range (borrowed) */
    size_t n_permit;
    uint16_t wg_port;            /* our WireGuard listen port (0: none) */
    const char *controller;      /* URL images are fetched from */
    const json_t *applied;       /* the document last accepted, or NULL */
    int64_t vcpus, memory_mib, disk_gib; /* the host's size (0: unknown) */
    /* False when the listening ports or routes could not be read: then no
     * port is published and no network built (fail closed). */
    bool facts_known;
    uint16_t *tcp_ports;         /* listening TCP ports (v4 and v6) */
    size_t n_tcp;
    uint16_t *udp_ports;         /* bound UDP ports */
    size_t n_udp;
    struct policy_net *nets;     /* routes and the host's own addresses */
    size_t n_nets;
    struct policy_net6 *nets6;   /* IPv6 ones (none on a host without) */
    size_t n_nets6;
};

/* Add the routes and own addresses of an /proc/net/ipv6_route text to
 * *nets and *n, but for the default route, link-local and multicast. 0 or
 * -EINVAL when a line does not parse. */
int policy_parse_ipv6_route(const char *text, struct policy_net6 **nets,
                            size_t *n);

/* Add the local ports of a /proc/net/{tcp,tcp6,udp,udp6} text to
 * *ports and *n (reallocated): with `listen_only`, only sockets in LISTEN.
 * 0 or -EINVAL when the text is not such a table. */
int policy_parse_proc_net(const char *text, bool listen_only,
                          uint16_t **ports, size_t *n);
/* Add the non-default routes of a /proc/net/route text to *nets and *n.
 * 0 or -EINVAL. */
int policy_parse_route(const char *text, struct policy_net **nets, size_t *n);
/* Add the host's own IPv4 addresses (as /32) listed as LOCAL in a
 * /proc/net/fib_trie text to *nets and *n; an address inside a route of
 * one of our bridges already there belongs to that bridge's network. */
void policy_parse_fib_trie(const char *text, struct policy_net **nets,
                           size_t *n);

/* Fill the facts of *h (its settings are left as they are) from
 * ROOT/proc/net/{tcp,tcp6,udp,udp6,route,fib_trie}. The v6 tables and
 * fib_trie may be missing. 0, or -errno when a mandatory table is
 * unreadable (facts_known stays false; nothing logged). */
int policy_host_collect(const char *root, struct policy_host *h);
void policy_host_clear(struct policy_host *h);

/* True when a and b share an address. */
bool policy_cidr_overlap(const struct ipam_cidr *a, const struct ipam_cidr *b);
/* True when `url` names the controller's own file route of an image,
 * "/v1/images/<uuid>/file", relative or under exactly `controller`; with
 * `image_id` non-NULL the uuid must be that id. */
bool policy_image_url_ok(const char *url, const char *controller,
                         const char *image_id);

/* Check desired document `doc` against *h. *ret_accepted is a copy of
 * the document without what the policy refuses (the caller applies only
 * that); *ret_refused an array of {object, reason} (both new references),
 * at most AGENT_REFUSED_MAX long, the last entry counting any left out.
 * Granularity, the way an operator would have it: a refused mesh peer,
 * network, VM or published port is left out and whatever exists of it
 * stays as it is (the reconciler leaves alone domains not in the
 * document; a refused network that h->applied holds is carried over as it
 * was, so the bridge under its VMs stays); the rest of the document still
 * applies. The exception is a published port: one refused now is
 * withdrawn, as keeping its DNAT is the very hijack the policy prevents.
 * A VM on a refused network is refused, and so is a port of a refused VM.
 * Deleted VMs are kept whatever their spec says, so deletions always go
 * through; their ports are left out without a word. 0, or -EINVAL when
 * `doc` is not an object. */
int policy_filter(const json_t *doc, const struct policy_host *h,
                  json_t **ret_accepted, json_t **ret_refused);
