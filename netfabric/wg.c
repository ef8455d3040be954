/* WireGuard device configs shared by both backends, and the one place
 * that picks the backend (kernel over generic netlink, else wireguard-go). */
#include "netfabric/wg.h"
#include "common/netcheck.h"

#include "common/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <stdio.h>
#include <linux/wireguard.h>

void wg_device_clear(struct wg_device *d)
{
    for (size_t i = 0; i < d->n_peers; i++)
        free(d->peers[i].allowed_ips);
    free(d->peers);
    explicit_bzero(d, sizeof(*d));
}

struct wg_peer *wg_device_add_peer(struct wg_device *d)
{
    d->peers = xrealloc(d->peers, (d->n_peers + 1) * sizeof(*d->peers));
    struct wg_peer *p = &d->peers[d->n_peers++];
    memset(p, 0, sizeof(*p));
    return p;
}

struct wg_allowed_ip *wg_peer_add_allowed_ip(struct wg_peer *p)
{
    p->allowed_ips = xrealloc(p->allowed_ips,
                              (p->n_allowed_ips + 1) * sizeof(*p->allowed_ips));
    struct wg_allowed_ip *a = &p->allowed_ips[p->n_allowed_ips++];
    memset(a, 0, sizeof(*a));
    return a;
}

struct wg_peer *wg_device_find_peer(const struct wg_device *d,
                                    const uint8_t key[WGKEY_LEN])
{
    for (size_t i = 0; i < d->n_peers; i++)
        if (wgkey_equal(d->peers[i].public_key, key))
            return &d->peers[i];
    return NULL;
}

static bool host_bits_clear(const uint8_t *addr, size_t len, unsigned cidr)
{
    for (size_t bit = cidr; bit < len * 8; bit++)
        if (addr[bit / 8] & (0x80 >> (bit % 8)))
            return false;
    return true;
}

int wg_allowed_ip_parse(const char *text, struct wg_allowed_ip *ret)
{
    if (!text || strlen(text) > INET6_ADDRSTRLEN + 4)
        return -EINVAL;
    _cleanup_free_ char *copy = xstrdup(text);
    char *slash = strchr(copy, '/');
    if (!slash)
        return -EINVAL;
    *slash = '\0';
    struct wg_allowed_ip a = { 0 };
    int64_t cidr;
    if (inet_pton(AF_INET, copy, &a.addr.ip4) == 1) {
        a.family = AF_INET;
        if (parse_int64(slash + 1, 0, 32, &cidr) < 0)
            return -EINVAL;
    } else if (inet_pton(AF_INET6, copy, &a.addr.ip6) == 1) {
        a.family = AF_INET6;
        if (parse_int64(slash + 1, 0, 128, &cidr) < 0)
            return -EINVAL;
    } else {
        return -EINVAL;
    }
    a.cidr = (uint8_t)cidr;
    if (!host_bits_clear((const uint8_t *)&a.addr,
                         a.family == AF_INET ? 4 : 16, a.cidr))
        return -EINVAL;
    *ret = a;
    return 0;
}

void wg_allowed_ip_format(const struct wg_allowed_ip *a, struct buf *b)
{
    char t[INET6_ADDRSTRLEN];
    if (!inet_ntop(a->family, &a->addr, t, sizeof(t)))
        return;
    buf_printf(b, "%s/%u", t, a->cidr);
}

int wg_endpoint_parse(const char *text, union wg_endpoint *ret)
{
    if (!text || strlen(text) > INET6_ADDRSTRLEN + 8)
        return -EINVAL;
    _cleanup_free_ char *copy = xstrdup(text);
    char *host = copy, *port;
    union wg_endpoint e;
    memset(&e, 0, sizeof(e));
    if (host[0] == '[') {
        char *close = strchr(host, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        *close = '\0';
        host++;
        port = close + 2;
    } else {
        port = strrchr(host, ':');
        if (!port)
            return -EINVAL;
        *port++ = '\0';
    }
    int64_t p;
    if (parse_int64(port, 1, 65535, &p) < 0)
        return -EINVAL;
    if (inet_pton(AF_INET, host, &e.in.sin_addr) == 1) {
        e.in.sin_family = AF_INET;
        e.in.sin_port = htons((uint16_t)p);
    } else if (inet_pton(AF_INET6, host, &e.in6.sin6_addr) == 1) {
        e.in6.sin6_family = AF_INET6;
        e.in6.sin6_port = htons((uint16_t)p);
    } else {
        return -EINVAL;
    }
    *ret = e;
    return 0;
}

void wg_endpoint_format(const union wg_endpoint *e, struct buf *b)
{
    char t[INET6_ADDRSTRLEN];
    if (e->sa.sa_family == AF_INET &&
        inet_ntop(AF_INET, &e->in.sin_addr, t, sizeof(t)))
        buf_printf(b, "%s:%u", t, ntohs(e->in.sin_port));
    else if (e->sa.sa_family == AF_INET6 &&
             inet_ntop(AF_INET6, &e->in6.sin6_addr, t, sizeof(t)))
        buf_printf(b, "[%s]:%u", t, ntohs(e->in6.sin6_port));
}

int wg_device_validate(const struct wg_device *d)
{
    if (!net_ifname_ok(d->name))
        return -EINVAL;
    for (size_t i = 0; i < d->n_peers; i++) {
        const struct wg_peer *p = &d->peers[i];
        if (wgkey_is_zero(p->public_key))
            return -EINVAL;
        int fam = p->endpoint.sa.sa_family;
        if (fam != 0 && fam != AF_INET && fam != AF_INET6)
            return -EINVAL;
        for (size_t k = 0; k < p->n_allowed_ips; k++) {
            const struct wg_allowed_ip *a = &p->allowed_ips[k];
            if ((a->family != AF_INET || a->cidr > 32) &&
                (a->family != AF_INET6 || a->cidr > 128))
                return -EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (wgkey_equal(d->peers[j].public_key, p->public_key))
                return -EINVAL;
    }
    return 0;
}

static bool genl_family_resolves(void)
{
    struct nl_sock *sk = nl_socket_alloc();
    if (!sk)
        return false;
    bool ok = genl_connect(sk) == 0 &&
              genl_ctrl_resolve(sk, WG_GENL_NAME) >= 0;
    nl_socket_free(sk);
    return ok;
}

const struct wg_backend *wg_backend_pick(void)
{
    const char *force = getenv("FOG_WG_BACKEND");
    if (streq(force, "uapi"))
        return &wg_backend_uapi;
    if (streq(force, "genl"))
        return &wg_backend_genl;
    if (genl_family_resolves())
        return &wg_backend_genl;
    log_debug("no kernel WireGuard here; using %s", wg_backend_uapi.name);
    return &wg_backend_uapi;
}
