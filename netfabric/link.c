/* rtnetlink through libnl-route: the links, addresses and FDB entries a
 * node needs for its mesh and tenant networks. */
#include "netfabric/link.h"

#include "netfabric/nlerr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_addr.h>
#include <linux/if_bridge.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/vxlan.h>

static void rtnl_link_putp(struct rtnl_link **l)
{
    if (*l)
        rtnl_link_put(*l);
}
#define _cleanup_link_ __attribute__((cleanup(rtnl_link_putp)))

static void nl_addr_putp(struct nl_addr **a)
{
    if (*a)
        nl_addr_put(*a);
}
#define _cleanup_nl_addr_ __attribute__((cleanup(nl_addr_putp)))

static void nl_cache_freep(struct nl_cache **c)
{
    if (*c)
        nl_cache_free(*c);
}
#define _cleanup_cache_ __attribute__((cleanup(nl_cache_freep)))

static bool name_ok(const char *name)
{
    return name && name[0] != '\0' && strlen(name) < IFNAMSIZ;
}

/* The kernel's view of a link; -ENODEV when absent. */
static int link_get(struct nl_sock *sk, const char *name,
                    struct rtnl_link **ret)
{
    if (!name_ok(name))
        return -EINVAL;
    int r = rtnl_link_get_kernel(sk, 0, name, ret);
    if (r < 0) {
        r = netfabric__nlerr(r);
        return r == -ENOENT || r == -ENODEV ? -ENODEV : r;
    }
    return 0;
}

int link_index(const char *name, int *ret_ifindex)
{
    _cleanup_nl_sock_ struct nl_sock *sk = netfabric__nl_open(NETLINK_ROUTE);
    _cleanup_link_ struct rtnl_link *l = NULL;
    if (!sk)
        return -ENOMEM;
    int r = link_get(sk, name, &l);
    if (r < 0)
        return r;
    *ret_ifindex = rtnl_link_get_ifindex(l);
    return 0;
}

bool link_exists(const char *name)
{
    int idx;
    return link_index(name, &idx) == 0;
}

char *link_kind(const char *name)
{
    _cleanup_nl_sock_ struct nl_sock *sk = netfabric__nl_open(NETLINK_ROUTE);
    _cleanup_link_ struct rtnl_link *l = NULL;
    if (!sk || link_get(sk, name, &l) < 0)
        return NULL;
    const char *kind = rtnl_link_get_type(l);
    return kind ? xstrdup(kind) : NULL;
}

int link_create_kind(const char *name, const char *kind)
{
    if (!name_ok(name))
        return -EINVAL;
    _cleanup_nl_sock_ struct nl_sock *sk = netfabric__nl_open(NETLINK_ROUTE);
    _cleanup_link_ struct rtnl_link *l = rtnl_link_alloc();
    if (!sk || !l)
        return -ENOMEM;
    rtnl_link_set_name(l, name);
    int r = rtnl_link_set_type(l, kind);
    if (r < 0)
        return netfabric__nlerr(r);
    return netfabric__nlerr(rtnl_link_add(sk, l, NLM_F_CREATE | NLM_F_EXCL));
}

int link_create_bridge(const char *name)
{
    int r = link_create_kind(name, "bridge");
    if (r == -EEXIST) {
        _cleanup_free_ char *kind = link_kind(name);
        return streq(kind, "bridge") ? 0 : -EEXIST;
    }
    return r;
}

int link_create_vxlan(const char *name, const struct link_vxlan *cfg)
{
    if (!name_ok(name) || cfg->id == 0 || cfg->id >= (1u << 24))
        return -EINVAL;
    _cleanup_nl_sock_ struct nl_sock *sk = netfabric__nl_open(NETLINK_ROUTE);
    if (!sk)
        return -ENOMEM;
    _cleanup_link_ struct rtnl_link *old = NULL;
    if (link_get(sk, name, &old) == 0) {
        uint32_t id = 0;
        if (streq(rtnl_link_get_type(old), "vxlan") &&
            rtnl_link_vxlan_get_id(old, &id) == 0 && id == cfg->id)
            return 0;
        return -EEXIST;
    }
    _cleanup_link_ struct rtnl_link *l = rtnl_link_vxlan_alloc();
    if (!l)
        return -ENOMEM;
    rtnl_link_set_name(l, name);
    rtnl_link_vxlan_set_id(l, cfg->id);
    if (cfg->local) {
        uint32_t be = htonl(cfg->local);
        _cleanup_nl_addr_ struct nl_addr *a = nl_addr_build(AF_INET, &be, 4);
        if (!a)
            return -ENOMEM;
        rtnl_link_vxlan_set_local(l, a);
    }
    if (cfg->dev) {
        _cleanup_link_ struct rtnl_link *dev = NULL;
        int r = link_get(sk, cfg->dev, &dev);
        if (r < 0)
            return r;
        rtnl_link_vxlan_set_link(l, (uint32_t)rtnl_link_get_ifindex(dev));
    }
    rtnl_link_vxlan_set_port(l, cfg->dstport ? cfg->dstport : 4789);
    rtnl_link_vxlan_set_learning(l, cfg->learning ? 1 : 0);
    return netfabric__nlerr(rtnl_link_add(sk, l, NLM_F_CREATE | NLM_F_EXCL));
}

int link_delete(const char *name)
{
    _cleanup_nl_sock_ struct nl_sock *sk = netfabric__nl_open(NETLINK_ROUTE);
    _cleanup_link_ struct rtnl_link *l = NULL;
    if (!sk)
        return -ENOMEM;
    int r = link_get(sk, name, &l);
    if (r < 0)
        return r;
    r = netfabric__nlerr(rtnl_link_delete(sk, l));
    return r == -ENOENT ? -ENODEV : r;
}

/* Apply one change built by fill() to an existing link. */
static int link_change(const char *name,
                       int (*fill)(struct nl_sock *, struct rtnl_link *,
                                   const void *),
                       const void *arg)
{
    _cleanup_nl_sock_ struct nl_sock *sk = netfabric__nl_open(NETLINK_ROUTE);
    _cleanup_link_ struct rtnl_link *l = NULL;
    _cleanup_link_ struct rtnl_link *ch = rtnl_link_alloc();
    if (!sk || !ch)
        return -ENOMEM;
    int r = link_get(sk, name, &l);
    if (r < 0)
        return r;
    r = fill(sk, ch, arg);
    if (r < 0)
        return r;
    return netfabric__nlerr(rtnl_link_change(sk, l, ch, 0));
}

static int fill_master(struct nl_sock *sk, struct rtnl_link *ch, const void *arg)
{
    const char *master = arg;
    int idx = 0;
    if (master) {
        _cleanup_link_ struct rtnl_link *m = NULL;
        int r = link_get(sk, master, &m);
        if (r < 0)
            return r;
        idx = rtnl_link_get_ifindex(m);
    }
    rtnl_link_set_master(ch, idx);
    return 0;
}

int link_set_master(const char *name, const char *master)
{
    return link_change(name, fill_master, master);
}

char *link_master(const char *name)
{
    _cleanup_nl_sock_ struct nl_sock *sk = netfabric__nl_open(NETLINK_ROUTE);
    _cleanup_link_ struct rtnl_link *l = NULL;
    if (!sk || link_get(sk, name, &l) < 0)
        return NULL;
    int idx = rtnl_link_get_master(l);
    if (idx <= 0)
        return NULL;
    char n[IFNAMSIZ];
    if (!if_indextoname((unsigned)idx, n))
        return NULL;
    return xstrdup(n);
}

static int fill_mtu(struct nl_sock *sk, struct rtnl_link *ch, const void *arg)
{
    rtnl_link_set_mtu(ch, *(const unsigned *)arg);
    return 0;
}

int link_set_mtu(const char *name, unsigned mtu)
{
    if (mtu < 68 || mtu > 65535)
        return -EINVAL;
    return link_change(name, fill_mtu, &mtu);
}

int link_get_mtu(const char *name, unsigned *ret_mtu)
{
    _cleanup_nl_sock_ struct nl_sock *sk = netfabric__nl_open(NETLINK_ROUTE);
    _cleanup_link_ struct rtnl_link *l = NULL;
    if (!sk)
        return -ENOMEM;
    int r = link_get(sk, name, &l);
    if (r < 0)
        return r;
    *ret_mtu = rtnl_link_get_mtu(l);
    return 0;
}

static int fill_up(struct nl_sock *sk, struct rtnl_link *ch, const void *arg)
{
    if (*(const bool *)arg)
        rtnl_link_set_flags(ch, IFF_UP);
    else
        rtnl_link_unset_flags(ch, IFF_UP);
    return 0;
}

int link_set_up(const char *name, bool up)
{
    return link_change(name, fill_up, &up);
}

bool link_is_up(const char *name)
{
    _cleanup_nl_sock_ struct nl_sock *sk = netfabric__nl_open(NETLINK_ROUTE);
    _cleanup_link_ struct rtnl_link *l = NULL;
    if (!sk || link_get(sk, name, &l) < 0)
        return false;
    return (rtnl_link_get_flags(l) & IFF_UP) != 0;
}

/* Add or delete an address of `family` (its bytes in network order) with
 * IFA_* `flags` on the add. */
static int addr_op(const char *name, int family, const void *bytes, int prefix,
                   bool add, unsigned flags)
{
    size_t len = family == AF_INET6 ? 16 : 4;
    if (prefix < 0 || prefix > (int)len * 8)
        return -EINVAL;
    int idx;
    int r = link_index(name, &idx);
    if (r < 0)
        return r;
    _cleanup_nl_sock_ struct nl_sock *sk = netfabric__nl_open(NETLINK_ROUTE);
    struct rtnl_addr *a = rtnl_addr_alloc();
    _cleanup_nl_addr_ struct nl_addr *local = nl_addr_build(family, bytes, len);
    if (!sk || !a || !local) {
        if (a)
            rtnl_addr_put(a);
        return -ENOMEM;
    }
    nl_addr_set_prefixlen(local, prefix);
    rtnl_addr_set_ifindex(a, idx);
    rtnl_addr_set_local(a, local);
    rtnl_addr_set_prefixlen(a, prefix);
    if (add) {
        if (flags)
            rtnl_addr_set_flags(a, flags);
        r = netfabric__nlerr(rtnl_addr_add(sk, a, NLM_F_CREATE | NLM_F_EXCL));
        if (r == -EEXIST)
            r = 0;
    } else {
        r = netfabric__nlerr(rtnl_addr_delete(sk, a, 0));
        if (r == -EADDRNOTAVAIL || r == -ENOENT)
            r = 0;
    }
    rtnl_addr_put(a);
    return r;
}

int link_addr6_add(const char *name, const struct in6_addr *addr, int prefix)
{
    return addr_op(name, AF_INET6, addr, prefix, true, IFA_F_NODAD);
}

int link_addr_add(const char *name, uint32_t addr, int prefix)
{
    uint32_t be = htonl(addr);
    return addr_op(name, AF_INET, &be, prefix, true, 0);
}

int link_addr_del(const char *name, uint32_t addr, int prefix)
{
    uint32_t be = htonl(addr);
    return addr_op(name, AF_INET, &be, prefix, false, 0);
}

/* IPv4 addresses on link idx, or on every link when idx is 0. */
static int addrs_v4(int idx, struct link_addr **ret, size_t *ret_n)
{
    _cleanup_nl_sock_ struct nl_sock *sk = netfabric__nl_open(NETLINK_ROUTE);
    _cleanup_cache_ struct nl_cache *cache = NULL;
    if (!sk)
        return -ENOMEM;
    int r = rtnl_addr_alloc_cache(sk, &cache);
    if (r < 0)
        return netfabric__nlerr(r);
    struct link_addr *out = NULL;
    size_t n = 0;
    for (struct nl_object *o = nl_cache_get_first(cache); o;
         o = nl_cache_get_next(o)) {
        struct rtnl_addr *a = (struct rtnl_addr *)o;
        struct nl_addr *local = rtnl_addr_get_local(a);
        if ((idx && rtnl_addr_get_ifindex(a) != idx) ||
            rtnl_addr_get_family(a) != AF_INET || !local ||
            nl_addr_get_len(local) != 4)
            continue;
        uint32_t be;
        memcpy(&be, nl_addr_get_binary_addr(local), 4);
        out = xrealloc(out, (n + 1) * sizeof(*out));
        out[n].addr = ntohl(be);
        out[n].prefix = rtnl_addr_get_prefixlen(a);
        n++;
    }
    *ret = out;
    *ret_n = n;
    return 0;
}

int link_addr_list(const char *name, struct link_addr **ret, size_t *ret_n)
{
    int idx;
    int r = link_index(name, &idx);
    if (r < 0)
        return r;
    return addrs_v4(idx, ret, ret_n);
}

int link_addr_is_local(uint32_t addr)
{
    _cleanup_free_ struct link_addr *all = NULL;
    size_t n;
    int r = addrs_v4(0, &all, &n);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if (all[i].addr == addr)
            return 1;
    return 0;
}

static int fdb_op(const char *dev, const uint8_t mac[6], uint32_t dst, int type,
                  int flags)
{
    int idx;
    int r = link_index(dev, &idx);
    if (r < 0)
        return r;
    _cleanup_nl_sock_ struct nl_sock *sk = netfabric__nl_open(NETLINK_ROUTE);
    _cleanup_nlmsg_ struct nl_msg *msg = nlmsg_alloc_simple(type, flags);
    if (!sk || !msg)
        return -ENOMEM;
    struct ndmsg ndm = {
        .ndm_family = AF_BRIDGE,
        .ndm_ifindex = idx,
        .ndm_state = NUD_NOARP | NUD_PERMANENT,
        .ndm_flags = NTF_SELF,
    };
    uint32_t be = htonl(dst);
    if (nlmsg_append(msg, &ndm, sizeof(ndm), NLMSG_ALIGNTO) < 0 ||
        nla_put(msg, NDA_LLADDR, 6, mac) < 0 ||
        (dst && nla_put(msg, NDA_DST, 4, &be) < 0))
        return -ENOMEM;
    r = nl_send_auto(sk, msg);
    if (r < 0)
        return netfabric__nlerr(r);
    return netfabric__nlerr(nl_wait_for_ack(sk));
}

int link_fdb_append(const char *dev, const uint8_t mac[6], uint32_t dst)
{
    int r = fdb_op(dev, mac, dst, RTM_NEWNEIGH,
                   NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND);
    return r == -EEXIST ? 0 : r;
}

int link_fdb_del(const char *dev, const uint8_t mac[6], uint32_t dst)
{
    int r = fdb_op(dev, mac, dst, RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK);
    return r == -ENOENT || r == -EADDRNOTAVAIL ? 0 : r;
}

struct fdb_walk {
    int ifindex;
    struct link_fdb *out;
    size_t n;
};

static int fdb_walk_cb(struct nl_msg *msg, void *arg)
{
    struct fdb_walk *w = arg;
    struct nlmsghdr *nlh = nlmsg_hdr(msg);
    struct nlattr *tb[NDA_MAX + 1];
    if (nlh->nlmsg_type != RTM_NEWNEIGH ||
        nlmsg_parse(nlh, sizeof(struct ndmsg), tb, NDA_MAX, NULL) < 0)
        return NL_OK;
    const struct ndmsg *ndm = nlmsg_data(nlh);
    if (ndm->ndm_family != AF_BRIDGE || ndm->ndm_ifindex != w->ifindex ||
        !tb[NDA_LLADDR] || nla_len(tb[NDA_LLADDR]) != 6 || !tb[NDA_DST] ||
        nla_len(tb[NDA_DST]) != 4)
        return NL_OK;
    uint32_t be;
    memcpy(&be, nla_data(tb[NDA_DST]), 4);
    w->out = xrealloc(w->out, (w->n + 1) * sizeof(*w->out));
    memcpy(w->out[w->n].mac, nla_data(tb[NDA_LLADDR]), 6);
    w->out[w->n].dst = ntohl(be);
    w->n++;
    return NL_OK;
}

int link_fdb_list(const char *dev, struct link_fdb **ret, size_t *ret_n)
{
    struct fdb_walk w = { 0 };
    int r = link_index(dev, &w.ifindex);
    if (r < 0)
        return r;
    _cleanup_nl_sock_ struct nl_sock *sk = netfabric__nl_open(NETLINK_ROUTE);
    if (!sk)
        return -ENOMEM;
    struct ndmsg ndm = { .ndm_family = AF_BRIDGE };
    r = nl_send_simple(sk, RTM_GETNEIGH, NLM_F_DUMP, &ndm, sizeof(ndm));
    if (r < 0)
        return netfabric__nlerr(r);
    nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, fdb_walk_cb, &w);
    r = nl_recvmsgs_default(sk);
    if (r < 0) {
        free(w.out);
        return netfabric__nlerr(r);
    }
    *ret = w.out;
    *ret_n = w.n;
    return 0;
}

int link_list_names(const char *prefix, char ***ret_names)
{
    _cleanup_nl_sock_ struct nl_sock *sk = netfabric__nl_open(NETLINK_ROUTE);
    _cleanup_cache_ struct nl_cache *cache = NULL;
    if (!sk)
        return -ENOMEM;
    int r = rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache);
    if (r < 0)
        return netfabric__nlerr(r);
    char **names = xcalloc(1, sizeof(char *));
    size_t n = 0;
    for (struct nl_object *o = nl_cache_get_first(cache); o;
         o = nl_cache_get_next(o)) {
        const char *name = rtnl_link_get_name((struct rtnl_link *)o);
        if (!name || !startswith(name, prefix ? prefix : ""))
            continue;
        names = xrealloc(names, (n + 2) * sizeof(char *));
        names[n++] = xstrdup(name);
        names[n] = NULL;
    }
    *ret_names = names;
    return 0;
}

void link_names_free(char **names)
{
    if (!names)
        return;
    for (char **p = names; *p; p++)
        free(*p);
    free(names);
}
