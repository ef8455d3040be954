/* Kernel WireGuard over generic netlink with libnl-genl: SET_DEVICE split
 * over several messages when large, GET_DEVICE dumps merged back into one
 * device. The interface itself is an rtnetlink link of kind "wireguard". */
#include "netfabric/wg_genl.h"
#include "common/netcheck.h"

#include "netfabric/link.h"
#include "netfabric/nlerr.h"

#include <errno.h>
#include <linux/wireguard.h>
#include <netlink/attr.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <stdio.h>

void wg_genl_msgs_free(struct nl_msg **msgs, size_t n)
{
    if (!msgs)
        return;
    for (size_t i = 0; i < n; i++)
        nlmsg_free(msgs[i]);
    free(msgs);
}

static int put_device(struct nl_msg *m, const struct wg_device *d, int family,
                      bool first)
{
    if (!genlmsg_put(m, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0,
                     NLM_F_REQUEST | NLM_F_ACK, WG_CMD_SET_DEVICE,
                     WG_GENL_VERSION) ||
        nla_put_string(m, WGDEVICE_A_IFNAME, d->name) < 0)
        return -EMSGSIZE;
    if (!first)
        return 0;
    if ((d->has_private_key &&
         nla_put(m, WGDEVICE_A_PRIVATE_KEY, WGKEY_LEN, d->private_key) < 0) ||
        (d->has_listen_port &&
         nla_put_u16(m, WGDEVICE_A_LISTEN_PORT, d->listen_port) < 0) ||
        (d->replace_peers &&
         nla_put_u32(m, WGDEVICE_A_FLAGS, WGDEVICE_F_REPLACE_PEERS) < 0))
        return -EMSGSIZE;
    return 0;
}

/* The attributes sent once per peer, in its first chunk. */
static int put_peer_header(struct nl_msg *m, const struct wg_peer *p)
{
    uint32_t flags = 0;
    if (p->remove)
        flags |= WGPEER_F_REMOVE_ME;
    if (p->replace_allowed_ips)
        flags |= WGPEER_F_REPLACE_ALLOWEDIPS;
    if (flags && nla_put_u32(m, WGPEER_A_FLAGS, flags) < 0)
        return -EMSGSIZE;
    if (p->remove)
        return 0;
    if (p->endpoint.sa.sa_family == AF_INET &&
        nla_put(m, WGPEER_A_ENDPOINT, sizeof(p->endpoint.in), &p->endpoint.in) < 0)
        return -EMSGSIZE;
    if (p->endpoint.sa.sa_family == AF_INET6 &&
        nla_put(m, WGPEER_A_ENDPOINT, sizeof(p->endpoint.in6),
                &p->endpoint.in6) < 0)
        return -EMSGSIZE;
    if (nla_put_u16(m, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, p->keepalive) < 0)
        return -EMSGSIZE;
    return 0;
}

static int put_allowed_ip(struct nl_msg *m, const struct wg_allowed_ip *a)
{
    struct nlattr *an = nla_nest_start(m, NLA_F_NESTED);
    if (!an)
        return -EMSGSIZE;
    size_t len = a->family == AF_INET ? 4 : 16;
    if (nla_put_u16(m, WGALLOWEDIP_A_FAMILY, (uint16_t)a->family) < 0 ||
        nla_put(m, WGALLOWEDIP_A_IPADDR, (int)len, &a->addr) < 0 ||
        nla_put_u8(m, WGALLOWEDIP_A_CIDR_MASK, a->cidr) < 0) {
        nla_nest_cancel(m, an);
        return -EMSGSIZE;
    }
    nla_nest_end(m, an);
    return 0;
}

/* Fill one message with as many peers (and allowed IPs of the current
 * peer, from *ai on) as fit; advances *pi and *ai. Sets *progress when
 * anything of a peer was written. */
static void put_peers(struct nl_msg *m, const struct wg_device *d, size_t *pi,
                      size_t *ai, bool *progress)
{
    struct nlattr *peers = nla_nest_start(m, WGDEVICE_A_PEERS | NLA_F_NESTED);
    if (!peers)
        return;
    while (*pi < d->n_peers) {
        const struct wg_peer *p = &d->peers[*pi];
        struct nlattr *pn = nla_nest_start(m, NLA_F_NESTED);
        if (!pn)
            break;
        if (nla_put(m, WGPEER_A_PUBLIC_KEY, WGKEY_LEN, p->public_key) < 0 ||
            (*ai == 0 && put_peer_header(m, p) < 0)) {
            nla_nest_cancel(m, pn);
            break;
        }
        size_t n_ips = p->remove ? 0 : p->n_allowed_ips;
        if (*ai < n_ips) {
            struct nlattr *ips = nla_nest_start(m, WGPEER_A_ALLOWEDIPS |
                                                       NLA_F_NESTED);
            size_t before = *ai;
            while (ips && *ai < n_ips && put_allowed_ip(m, &p->allowed_ips[*ai]) == 0)
                (*ai)++;
            if (!ips || *ai == before) {
                if (ips)
                    nla_nest_cancel(m, ips);
                nla_nest_cancel(m, pn);
                break;
            }
            nla_nest_end(m, ips);
        }
        nla_nest_end(m, pn);
        *progress = true;
        if (*ai < n_ips)
            break; /* the rest of this peer goes in the next message */
        (*pi)++;
        *ai = 0;
    }
    nla_nest_end(m, peers);
}

int wg_genl_build_set(const struct wg_device *d, int family, size_t max_size,
                      struct nl_msg ***ret_msgs, size_t *ret_n)
{
    int r = wg_device_validate(d);
    if (r < 0)
        return r;
    struct nl_msg **msgs = NULL;
    size_t n = 0, pi = 0, ai = 0;
    bool first = true;

    while (first || pi < d->n_peers) {
        struct nl_msg *m = nlmsg_alloc_size(max_size);
        if (!m) {
            r = -ENOMEM;
            goto out_free;
        }
        msgs = xrealloc(msgs, (n + 1) * sizeof(*msgs));
        msgs[n++] = m;
        r = put_device(m, d, family, first);
        if (r < 0)
            goto out_free;
        bool progress = false;
        if (pi < d->n_peers)
            put_peers(m, d, &pi, &ai, &progress);
        if (!progress && !first) {
            r = -EMSGSIZE;
            goto out_free;
        }
        first = false;
    }
    *ret_msgs = msgs;
    *ret_n = n;
    return 0;

out_free:
    wg_genl_msgs_free(msgs, n);
    return r;
}

static struct nla_policy device_policy[WGDEVICE_A_MAX + 1] = {
    [WGDEVICE_A_IFINDEX] = { .type = NLA_U32 },
    [WGDEVICE_A_IFNAME] = { .type = NLA_STRING, .maxlen = IFNAMSIZ },
    [WGDEVICE_A_PRIVATE_KEY] = { .minlen = WGKEY_LEN, .maxlen = WGKEY_LEN },
    [WGDEVICE_A_PUBLIC_KEY] = { .minlen = WGKEY_LEN, .maxlen = WGKEY_LEN },
    [WGDEVICE_A_FLAGS] = { .type = NLA_U32 },
    [WGDEVICE_A_LISTEN_PORT] = { .type = NLA_U16 },
    [WGDEVICE_A_FWMARK] = { .type = NLA_U32 },
    [WGDEVICE_A_PEERS] = { .type = NLA_NESTED },
};

static struct nla_policy peer_policy[WGPEER_A_MAX + 1] = {
    [WGPEER_A_PUBLIC_KEY] = { .minlen = WGKEY_LEN, .maxlen = WGKEY_LEN },
    [WGPEER_A_PRESHARED_KEY] = { .minlen = WGKEY_LEN, .maxlen = WGKEY_LEN },
    [WGPEER_A_FLAGS] = { .type = NLA_U32 },
    [WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL] = { .type = NLA_U16 },
    [WGPEER_A_RX_BYTES] = { .type = NLA_U64 },
    [WGPEER_A_TX_BYTES] = { .type = NLA_U64 },
    [WGPEER_A_ALLOWEDIPS] = { .type = NLA_NESTED },
    [WGPEER_A_PROTOCOL_VERSION] = { .type = NLA_U32 },
};

static struct nla_policy allowedip_policy[WGALLOWEDIP_A_MAX + 1] = {
    [WGALLOWEDIP_A_FAMILY] = { .type = NLA_U16 },
    [WGALLOWEDIP_A_CIDR_MASK] = { .type = NLA_U8 },
};

static int parse_allowed_ip(struct nlattr *attr, struct wg_peer *p)
{
    struct nlattr *tb[WGALLOWEDIP_A_MAX + 1];
    if (nla_parse_nested(tb, WGALLOWEDIP_A_MAX, attr, allowedip_policy) < 0 ||
        !tb[WGALLOWEDIP_A_FAMILY] || !tb[WGALLOWEDIP_A_IPADDR] ||
        !tb[WGALLOWEDIP_A_CIDR_MASK])
        return -EBADMSG;
    struct wg_allowed_ip a = { .family = nla_get_u16(tb[WGALLOWEDIP_A_FAMILY]),
                               .cidr = nla_get_u8(tb[WGALLOWEDIP_A_CIDR_MASK]) };
    int len = nla_len(tb[WGALLOWEDIP_A_IPADDR]);
    if (!((a.family == AF_INET && len == 4 && a.cidr <= 32) ||
          (a.family == AF_INET6 && len == 16 && a.cidr <= 128)))
        return -EBADMSG;
    memcpy(&a.addr, nla_data(tb[WGALLOWEDIP_A_IPADDR]), (size_t)len);
    *wg_peer_add_allowed_ip(p) = a;
    return 0;
}

static int parse_peer(struct nlattr *attr, struct wg_device *acc)
{
    struct nlattr *tb[WGPEER_A_MAX + 1];
    if (nla_parse_nested(tb, WGPEER_A_MAX, attr, peer_policy) < 0 ||
        !tb[WGPEER_A_PUBLIC_KEY])
        return -EBADMSG;
    const uint8_t *key = nla_data(tb[WGPEER_A_PUBLIC_KEY]);
    struct wg_peer *p = NULL;
    if (acc->n_peers > 0 &&
        wgkey_equal(acc->peers[acc->n_peers - 1].public_key, key))
        p = &acc->peers[acc->n_peers - 1]; /* continuation of a split peer */
    else {
        p = wg_device_add_peer(acc);
        memcpy(p->public_key, key, WGKEY_LEN);
    }
    if (tb[WGPEER_A_FLAGS]) {
        uint32_t f = nla_get_u32(tb[WGPEER_A_FLAGS]);
        p->remove |= (f & WGPEER_F_REMOVE_ME) != 0;
        p->replace_allowed_ips |= (f & WGPEER_F_REPLACE_ALLOWEDIPS) != 0;
    }
    if (tb[WGPEER_A_ENDPOINT]) {
        int len = nla_len(tb[WGPEER_A_ENDPOINT]);
        const struct sockaddr *sa = nla_data(tb[WGPEER_A_ENDPOINT]);
        if (len == sizeof(struct sockaddr_in) && sa->sa_family == AF_INET)
            memcpy(&p->endpoint.in, sa, sizeof(struct sockaddr_in));
        else if (len == sizeof(struct sockaddr_in6) && sa->sa_family == AF_INET6)
            memcpy(&p->endpoint.in6, sa, sizeof(struct sockaddr_in6));
        else
            return -EBADMSG;
    }
    if (tb[WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL])
        p->keepalive = nla_get_u16(tb[WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL]);
    if (tb[WGPEER_A_LAST_HANDSHAKE_TIME] &&
        nla_len(tb[WGPEER_A_LAST_HANDSHAKE_TIME]) >= (int)sizeof(int64_t)) {
        int64_t sec;
        memcpy(&sec, nla_data(tb[WGPEER_A_LAST_HANDSHAKE_TIME]), sizeof(sec));
        p->last_handshake_sec = sec;
    }
    if (tb[WGPEER_A_RX_BYTES])
        p->rx_bytes = nla_get_u64(tb[WGPEER_A_RX_BYTES]);
    if (tb[WGPEER_A_TX_BYTES])
        p->tx_bytes = nla_get_u64(tb[WGPEER_A_TX_BYTES]);
    if (tb[WGPEER_A_ALLOWEDIPS]) {
        struct nlattr *a;
        int rem;
        nla_for_each_nested(a, tb[WGPEER_A_ALLOWEDIPS], rem)
            if (parse_allowed_ip(a, p) < 0)
                return -EBADMSG;
    }
    return 0;
}

int wg_genl_parse(const struct nlmsghdr *nlh, struct wg_device *acc)
{
    struct nlattr *tb[WGDEVICE_A_MAX + 1];
    if (genlmsg_parse((struct nlmsghdr *)nlh, 0, tb, WGDEVICE_A_MAX,
                      device_policy) < 0)
        return -EBADMSG;
    if (tb[WGDEVICE_A_IFNAME])
        snprintf(acc->name, sizeof(acc->name), "%s",
                 nla_get_string(tb[WGDEVICE_A_IFNAME]));
    if (tb[WGDEVICE_A_PRIVATE_KEY]) {
        memcpy(acc->private_key, nla_data(tb[WGDEVICE_A_PRIVATE_KEY]), WGKEY_LEN);
        acc->has_private_key = !wgkey_is_zero(acc->private_key);
    }
    if (tb[WGDEVICE_A_PUBLIC_KEY])
        memcpy(acc->public_key, nla_data(tb[WGDEVICE_A_PUBLIC_KEY]), WGKEY_LEN);
    if (tb[WGDEVICE_A_LISTEN_PORT]) {
        acc->has_listen_port = true;
        acc->listen_port = nla_get_u16(tb[WGDEVICE_A_LISTEN_PORT]);
    }
    if (tb[WGDEVICE_A_FLAGS] &&
        (nla_get_u32(tb[WGDEVICE_A_FLAGS]) & WGDEVICE_F_REPLACE_PEERS))
        acc->replace_peers = true;
    if (tb[WGDEVICE_A_PEERS]) {
        struct nlattr *p;
        int rem;
        nla_for_each_nested(p, tb[WGDEVICE_A_PEERS], rem)
            if (parse_peer(p, acc) < 0)
                return -EBADMSG;
    }
    return 0;
}

static int genl_open(struct nl_sock **ret_sk, int *ret_family)
{
    struct nl_sock *sk = netfabric__nl_open(NETLINK_GENERIC);
    if (!sk)
        return -ENOMEM;
    int family = genl_ctrl_resolve(sk, WG_GENL_NAME);
    if (family < 0) {
        nl_socket_free(sk);
        return -EPROTONOSUPPORT;
    }
    *ret_sk = sk;
    *ret_family = family;
    return 0;
}

static int genl_create(const struct wg_opts *o, const char *ifname)
{
    if (!net_ifname_ok(ifname))
        return -EINVAL;
    int r = link_create_kind(ifname, "wireguard");
    if (r == -EEXIST) {
        _cleanup_free_ char *kind = link_kind(ifname);
        return streq(kind, "wireguard") ? 0 : -EEXIST;
    }
    return r;
}

static int genl_set(const struct wg_opts *o, const struct wg_device *d)
{
    _cleanup_nl_sock_ struct nl_sock *sk = NULL;
    int family;
    int r = genl_open(&sk, &family);
    if (r < 0)
        return r;
    struct nl_msg **msgs = NULL;
    size_t n = 0;
    r = wg_genl_build_set(d, family, (size_t)getpagesize(), &msgs, &n);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n && r == 0; i++) {
        r = nl_send_auto(sk, msgs[i]);
        r = r < 0 ? netfabric__nlerr(r) : netfabric__nlerr(nl_wait_for_ack(sk));
    }
    wg_genl_msgs_free(msgs, n);
    return r;
}

static int get_cb(struct nl_msg *msg, void *arg)
{
    return wg_genl_parse(nlmsg_hdr(msg), arg) < 0 ? NL_STOP : NL_OK;
}

static int genl_get(const struct wg_opts *o, const char *ifname,
                    struct wg_device *ret)
{
    if (!net_ifname_ok(ifname))
        return -EINVAL;
    _cleanup_nl_sock_ struct nl_sock *sk = NULL;
    int family;
    int r = genl_open(&sk, &family);
    if (r < 0)
        return r;
    _cleanup_nlmsg_ struct nl_msg *m = nlmsg_alloc();
    if (!m)
        return -ENOMEM;
    if (!genlmsg_put(m, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0,
                     NLM_F_REQUEST | NLM_F_DUMP, WG_CMD_GET_DEVICE,
                     WG_GENL_VERSION) ||
        nla_put_string(m, WGDEVICE_A_IFNAME, ifname) < 0)
        return -ENOMEM;
    struct wg_device d = { 0 };
    nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, get_cb, &d);
    r = nl_send_auto(sk, m);
    if (r >= 0)
        r = nl_recvmsgs_default(sk);
    if (r < 0) {
        wg_device_clear(&d);
        return netfabric__nlerr(r);
    }
    wg_device_clear(ret);
    *ret = d;
    return 0;
}

static int genl_remove(const struct wg_opts *o, const char *ifname)
{
    if (!net_ifname_ok(ifname))
        return -EINVAL;
    return link_delete(ifname);
}

const struct wg_backend wg_backend_genl = {
    .name = "kernel (generic netlink)",
    .create = genl_create,
    .set = genl_set,
    .get = genl_get,
    .remove = genl_remove,
};
