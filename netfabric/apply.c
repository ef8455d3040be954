/* Desired network state to kernel state: the mesh through a WireGuard
 * backend, tenant networks through rtnetlink, the firewall through
 * nftables. Each step reads what is there and changes only the difference,
 * so WireGuard sessions and FDB entries that stay are left alone. */
#include "netfabric/apply.h"
#include "common/netcheck.h"

#include "common/buf.h"
#include "common/fs.h"
#include "common/log.h"
#include "netfabric/link.h"
#include "netfabric/nft.h"
#include "netfabric/nftplan.h"
#include "netfabric/resolver.h"
#include "netfabric/wg.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>

#define WG_OVERHEAD 80 /* IPv6 underlay worst case (FACTS: 60 for IPv4) */

static void keep_first(int *acc, int r, const char *what)
{
    if (r < 0) {
        log_debug("netfabric: %s: %s", what, strerror(-r));
        if (*acc == 0)
            *acc = r;
    }
}

const char *netfabric_mesh_backend(void)
{
    return wg_backend_pick()->name;
}

static void opts_of(const struct nf_state *s, struct wg_opts *o)
{
    o->uapi_dir = s->uapi_dir;
    o->wireguard_go = s->wireguard_go;
}

/* The WireGuard config that turns `have` into `want`: changed device
 * fields, every wanted peer (allowed IPs replaced), removal of the rest. */
static int mesh_plan(const struct nf_state *want, const struct wg_device *have,
                     struct wg_device *d)
{
    snprintf(d->name, sizeof(d->name), "%s", want->mesh_ifname);
    if (want->has_private_key &&
        (!have->has_private_key ||
         !wgkey_equal(have->private_key, want->private_key))) {
        d->has_private_key = true;
        memcpy(d->private_key, want->private_key, WGKEY_LEN);
    }
    if (!have->has_listen_port || have->listen_port != want->listen_port) {
        d->has_listen_port = true;
        d->listen_port = want->listen_port;
    }
    for (size_t i = 0; i < have->n_peers; i++) {
        bool wanted = false;
        for (size_t k = 0; k < want->n_peers && !wanted; k++)
            wanted = wgkey_equal(want->peers[k].public_key,
                                 have->peers[i].public_key);
        if (!wanted) {
            struct wg_peer *p = wg_device_add_peer(d);
            memcpy(p->public_key, have->peers[i].public_key, WGKEY_LEN);
            p->remove = true;
        }
    }
    for (size_t k = 0; k < want->n_peers; k++) {
        const struct nf_peer *w = &want->peers[k];
        struct wg_peer *p = wg_device_add_peer(d);
        memcpy(p->public_key, w->public_key, WGKEY_LEN);
        p->keepalive = w->keepalive;
        p->replace_allowed_ips = true;
        if (w->endpoint && wg_endpoint_parse(w->endpoint, &p->endpoint) < 0)
            return -EINVAL;
        for (size_t j = 0; j < w->n_allowed_ips; j++) {
            struct wg_allowed_ip *a = wg_peer_add_allowed_ip(p);
            a->family = AF_INET;
            a->addr.ip4.s_addr = htonl(w->allowed_ips[j].net);
            a->cidr = (uint8_t)w->allowed_ips[j].prefix;
        }
    }
    return wg_device_validate(d);
}

static int mesh_apply(const struct nf_state *want)
{
    const struct wg_backend *be = wg_backend_pick();
    struct wg_opts o;
    opts_of(want, &o);
    int r = be->create(&o, want->mesh_ifname);
    if (r < 0)
        return r;
    struct wg_device have = { 0 }, d = { 0 };
    r = be->get(&o, want->mesh_ifname, &have);
    if (r == 0)
        r = mesh_plan(want, &have, &d);
    if (r == 0)
        r = be->set(&o, &d);
    wg_device_clear(&have);
    wg_device_clear(&d);
    if (r < 0)
        return r;

    unsigned underlay = want->underlay_mtu ? want->underlay_mtu : 1500;
    int acc = 0;
    keep_first(&acc, link_set_mtu(want->mesh_ifname, underlay - WG_OVERHEAD),
               "mesh MTU");
    struct link_addr *addrs = NULL;
    size_t n = 0;
    if (link_addr_list(want->mesh_ifname, &addrs, &n) == 0)
        for (size_t i = 0; i < n; i++)
            if (addrs[i].addr != want->mesh_addr ||
                addrs[i].prefix != want->mesh_prefix)
                keep_first(&acc, link_addr_del(want->mesh_ifname, addrs[i].addr,
                                               addrs[i].prefix), "mesh address");
    free(addrs);
    keep_first(&acc, link_addr_add(want->mesh_ifname, want->mesh_addr,
                                   want->mesh_prefix), "mesh address");
    keep_first(&acc, link_set_up(want->mesh_ifname, true), "mesh up");
    return acc;
}

static bool fdb_wanted(const struct nf_network *n, const struct link_fdb *e)
{
    static const uint8_t zero[6];
    for (size_t i = 0; i < n->n_vteps; i++)
        if (memcmp(e->mac, zero, 6) == 0 && e->dst == n->vteps[i])
            return true;
    for (size_t i = 0; i < n->n_macs; i++)
        if (memcmp(e->mac, n->macs[i].mac, 6) == 0 && e->dst == n->macs[i].vtep)
            return true;
    return false;
}

static int fdb_apply(const struct nf_network *n)
{
    static const uint8_t zero[6];
    struct link_fdb *have = NULL;
    size_t n_have = 0;
    int acc = 0;
    int r = link_fdb_list(n->vxlan, &have, &n_have);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n_have; i++)
        if (!fdb_wanted(n, &have[i]))
            keep_first(&acc, link_fdb_del(n->vxlan, have[i].mac, have[i].dst),
                       "fdb del");
    free(have);
    for (size_t i = 0; i < n->n_vteps; i++)
        keep_first(&acc, link_fdb_append(n->vxlan, zero, n->vteps[i]),
                   "fdb flood entry");
    for (size_t i = 0; i < n->n_macs; i++)
        keep_first(&acc, link_fdb_append(n->vxlan, n->macs[i].mac,
                                         n->macs[i].vtep), "fdb entry");
    return acc;
}

/* Write `value` to /proc/sys/net/ipv6/conf/IFNAME/KEY (under proc_root). */
static int sysctl6_set(const struct nf_state *want, const char *ifname,
                       const char *key, const char *value)
{
    _cleanup_free_ char *rel = xasprintf("/proc/sys/net/ipv6/conf/%s/%s",
                                         ifname, key);
    _cleanup_free_ char *path = path_join_root(want->proc_root, rel);
    _cleanup_free_ char *cur = NULL;
    size_t n = strlen(value);
    if (file_read(path, 16, &cur, NULL) == 0 && strncmp(cur, value, n) == 0 &&
        (cur[n] == '\n' || cur[n] == '\0'))
        return 0;
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (write(fd, value, n) != (ssize_t)n)
        return -errno;
    return 0;
}

/* False on a host booted without IPv6 (ipv6.disable=1): its networks
 * stay IPv4 only rather than failing on every apply. */
static bool ipv6_on(const struct nf_state *want)
{
    _cleanup_free_ char *p = path_join_root(want->proc_root,
                                            "/proc/sys/net/ipv6");
    return access(p, F_OK) == 0;
}

static int network_apply(const struct nf_state *want, const struct nf_network *n)
{
    int r = link_create_bridge(n->bridge);
    if (r < 0)
        return r;
    int acc = 0;
    keep_first(&acc, link_set_mtu(n->bridge, n->mtu), "bridge MTU");
    struct link_addr *addrs = NULL;
    size_t n_addrs = 0;
    if (link_addr_list(n->bridge, &addrs, &n_addrs) == 0)
        for (size_t i = 0; i < n_addrs; i++)
            if (addrs[i].addr != n->gateway || addrs[i].prefix != n->cidr.prefix)
                keep_first(&acc, link_addr_del(n->bridge, addrs[i].addr,
                                               addrs[i].prefix), "old gateway");
    free(addrs);
    keep_first(&acc, link_addr_add(n->bridge, n->gateway, n->cidr.prefix),
               "gateway address");
    if (n->has_v6 && ipv6_on(want)) {
        /* The bridge is a router to its VMs, never a host taking their
         * (or a remote node's) advertisements. */
        keep_first(&acc, sysctl6_set(want, n->bridge, "accept_ra", "0"),
                   "bridge accept_ra");
        keep_first(&acc, link_addr6_add(n->bridge, &n->gateway6, 64),
                   "IPv6 gateway address");
    }
    keep_first(&acc, link_set_up(n->bridge, true), "bridge up");
    if (!want->has_mesh)
        return acc;
    struct link_vxlan vx = {
        .id = n->vxlan_id,
        .local = want->mesh_addr,
        .dev = want->mesh_ifname,
        .dstport = NF_VXLAN_PORT,
        .learning = false,
    };
    r = link_create_vxlan(n->vxlan, &vx);
    if (r < 0)
        return r;
    keep_first(&acc, link_set_mtu(n->vxlan, n->mtu), "vxlan MTU");
    keep_first(&acc, link_set_master(n->vxlan, n->bridge), "vxlan master");
    keep_first(&acc, link_set_up(n->vxlan, true), "vxlan up");
    keep_first(&acc, fdb_apply(n), "fdb");
    return acc;
}

/* "fogbr123" -> true (digits after the prefix, nothing else). */
static bool ours(const char *name, const char *prefix)
{
    if (!startswith(name, prefix) || name[strlen(prefix)] == '\0')
        return false;
    for (const char *p = name + strlen(prefix); *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* Remove our bridges and their VXLANs that are not in want (all of them
 * when want is NULL). */
static int networks_prune(const struct nf_state *want)
{
    char **names = NULL;
    int acc = 0;
    int r = link_list_names("vxlan", &names);
    if (r < 0)
        return r;
    for (char **p = names; *p; p++) {
        if (!ours(*p, "vxlan"))
            continue;
        bool keep = false;
        for (size_t i = 0; want && i < want->n_networks; i++)
            keep |= streq(want->networks[i].vxlan, *p);
        _cleanup_free_ char *master = link_master(*p);
        if (!keep && master && ours(master, "fogbr"))
            keep_first(&acc, link_delete(*p), "vxlan delete");
    }
    link_names_free(names);
    r = link_list_names("fogbr", &names);
    if (r < 0)
        return r;
    for (char **p = names; *p; p++) {
        if (!ours(*p, "fogbr"))
            continue;
        bool keep = false;
        for (size_t i = 0; want && i < want->n_networks; i++)
            keep |= streq(want->networks[i].bridge, *p);
        if (!keep)
            keep_first(&acc, link_delete(*p), "bridge delete");
    }
    link_names_free(names);
    return acc;
}

static int firewall_apply(const struct nf_state *want)
{
    /* A public address the host does not hold is its router's: behind
     * NAT the provider forwards the port range to the host, so published
     * ports arrive at one of its own addresses and DNAT matches any of
     * them, as with no public address. Unreadable addresses keep the
     * stricter match. The plan needs no key. */
    struct nf_state plan = *want;
    explicit_bzero(plan.private_key, sizeof(plan.private_key));
    plan.has_private_key = false;
    if (plan.public_addr && link_addr_is_local(plan.public_addr) == 0)
        plan.public_addr = 0;
    struct buf script = BUF_INIT;
    int r = nftplan_script(&plan, &script);
    _cleanup_free_ char *err = NULL;
    if (r == 0)
        r = nft_apply(buf_str(&script), false, &err);
    if (r < 0 && err)
        log_debug("netfabric: nftables: %s", err);
    buf_free(&script);
    return r;
}

/* Tenant networks are routed to their gateway and NATed out: the node
 * must forward IPv4, as libvirt's NAT networks also turn on. */
static int forwarding_enable(const struct nf_state *want)
{
    _cleanup_free_ char *path = path_join_root(want->proc_root,
                                               "/proc/sys/net/ipv4/ip_forward");
    _cleanup_free_ char *cur = NULL;
    if (file_read(path, 16, &cur, NULL) == 0 && cur[0] == '1')
        return 0;
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (write(fd, "1\n", 2) != 2)
        return -errno;
    return 0;
}

/* IPv6 forwarding, for published ports and egress over IPv6: only where
 * the node has a global IPv6 address. Forwarding makes the kernel ignore
 * router advertisements on links with accept_ra 1, so those the host
 * configures from them get 2 first (take them while forwarding). */
static int forwarding6_enable(const struct nf_state *want)
{
    bool v6 = false;
    for (size_t i = 0; i < want->n_networks; i++)
        v6 |= want->networks[i].has_v6;
    if (!v6 || !want->has_public_addr6 || !ipv6_on(want))
        return 0;
    _cleanup_free_ char *cur = NULL;
    _cleanup_free_ char *fwd = path_join_root(
        want->proc_root, "/proc/sys/net/ipv6/conf/all/forwarding");
    if (file_read(fwd, 16, &cur, NULL) == 0 && cur[0] == '1')
        return 0;
    _cleanup_free_ char *dir = path_join_root(want->proc_root,
                                              "/proc/sys/net/ipv6/conf");
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || streq(e->d_name, "all") ||
            !net_ifname_ok(e->d_name))
            continue;
        _cleanup_free_ char *p = xasprintf("%s/%s/accept_ra", dir, e->d_name);
        _cleanup_free_ char *ra = NULL;
        if (file_read(p, 16, &ra, NULL) == 0 && ra[0] == '1')
            sysctl6_set(want, e->d_name, "accept_ra", "2");
    }
    if (d)
        closedir(d);
    return sysctl6_set(want, "all", "forwarding", "1");
}

int netfabric_apply(const struct nf_state *want)
{
    int acc = 0;
    if (want->n_networks > 0)
        keep_first(&acc, forwarding_enable(want), "ip_forward");
    keep_first(&acc, forwarding6_enable(want), "IPv6 forwarding");
    if (want->has_mesh)
        keep_first(&acc, mesh_apply(want), "mesh");
    keep_first(&acc, networks_prune(want), "prune networks");
    for (size_t i = 0; i < want->n_networks; i++)
        keep_first(&acc, network_apply(want, &want->networks[i]), "network");
    keep_first(&acc, firewall_apply(want), "firewall");
    /* After the bridges: dnsmasq binds to their gateway addresses. */
    keep_first(&acc, resolver_sync(want), "resolvers");
    return acc;
}

int netfabric_teardown(const struct nf_state *s)
{
    int acc = 0;
    struct buf script = BUF_INIT;
    nftplan_teardown(&script);
    keep_first(&acc, nft_apply(buf_str(&script), false, NULL), "firewall");
    buf_free(&script);
    keep_first(&acc, resolver_stop_all(s), "resolvers");
    keep_first(&acc, networks_prune(NULL), "networks");
    if (net_ifname_ok(s->mesh_ifname) && link_exists(s->mesh_ifname)) {
        struct wg_opts o;
        opts_of(s, &o);
        keep_first(&acc, wg_backend_pick()->remove(&o, s->mesh_ifname), "mesh");
    }
    return acc;
}
