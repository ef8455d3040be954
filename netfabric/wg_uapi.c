/* wireguard-go backend: starts the daemon for an interface and speaks the
 * UAPI key=value protocol (keys in hex, not base64) on its socket. */
#include "netfabric/wg_uapi.h"
#include "common/netcheck.h"

#include "common/fs.h"
#include "common/proc.h"
#include "common/log.h"
#include "netfabric/link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>


#define UAPI_DEFAULT_DIR "/var/run/wireguard"
#define UAPI_REPLY_MAX (16u << 20)
#define UAPI_TIMEOUT_MS 5000

char *wg_uapi_socket_path(const struct wg_opts *o, const char *ifname)
{
    const char *dir = o && o->uapi_dir ? o->uapi_dir : UAPI_DEFAULT_DIR;
    return xasprintf("%s/%s.sock", dir, ifname);
}

int wg_uapi_format_set(const struct wg_device *d, struct buf *out)
{
    int r = wg_device_validate(d);
    if (r < 0)
        return r;
    char hex[WGKEY_HEX_LEN + 1];
    buf_puts(out, "set=1\n");
    if (d->has_private_key) {
        wgkey_to_hex(d->private_key, hex);
        buf_printf(out, "private_key=%s\n", hex);
        explicit_bzero(hex, sizeof(hex));
    }
    if (d->has_listen_port)
        buf_printf(out, "listen_port=%u\n", d->listen_port);
    if (d->replace_peers)
        buf_puts(out, "replace_peers=true\n");
    for (size_t i = 0; i < d->n_peers; i++) {
        const struct wg_peer *p = &d->peers[i];
        wgkey_to_hex(p->public_key, hex);
        buf_printf(out, "public_key=%s\n", hex);
        if (p->remove) {
            buf_puts(out, "remove=true\n");
            continue;
        }
        if (p->endpoint.sa.sa_family != 0) {
            buf_puts(out, "endpoint=");
            wg_endpoint_format(&p->endpoint, out);
            buf_puts(out, "\n");
        }
        buf_printf(out, "persistent_keepalive_interval=%u\n", p->keepalive);
        if (p->replace_allowed_ips)
            buf_puts(out, "replace_allowed_ips=true\n");
        for (size_t k = 0; k < p->n_allowed_ips; k++) {
            buf_puts(out, "allowed_ip=");
            wg_allowed_ip_format(&p->allowed_ips[k], out);
            buf_puts(out, "\n");
        }
    }
    buf_puts(out, "\n");
    return 0;
}

static int parse_u64(const char *v, uint64_t *ret)
{
    int64_t x;
    int r = parse_int64(v, 0, INT64_MAX, &x);
    if (r < 0)
        return r;
    *ret = (uint64_t)x;
    return 0;
}

static int parse_errno_value(const char *v)
{
    int64_t e;
    if (parse_int64(v, INT32_MIN, INT32_MAX, &e) < 0)
        return -EBADMSG;
    return e == 0 ? 0 : -EIO;
}

int wg_uapi_parse_get(const char *text, struct wg_device *ret)
{
    struct wg_device d = { 0 };
    _cleanup_free_ char *copy = xstrdup(text);
    struct wg_peer *peer = NULL;
    int r = -EBADMSG;
    char *save = NULL;

    for (char *line = strtok_r(copy, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq)
            goto out_clear;
        *eq = '\0';
        const char *k = line, *v = eq + 1;
        uint64_t u;
        if (streq(k, "errno")) {
            r = parse_errno_value(v);
            if (r < 0)
                goto out_clear;
            wg_device_clear(ret);
            *ret = d;
            explicit_bzero(copy, strlen(text));
            return 0;
        } else if (streq(k, "private_key") && !peer) {
            if (wgkey_from_hex(v, d.private_key) < 0)
                goto out_clear;
            d.has_private_key = !wgkey_is_zero(d.private_key);
            if (d.has_private_key)
                wgkey_public(d.private_key, d.public_key);
        } else if (streq(k, "listen_port") && !peer) {
            if (parse_u64(v, &u) < 0 || u > 65535)
                goto out_clear;
            d.has_listen_port = true;
            d.listen_port = (uint16_t)u;
        } else if (streq(k, "public_key")) {
            uint8_t key[WGKEY_LEN];
            if (wgkey_from_hex(v, key) < 0)
                goto out_clear;
            peer = wg_device_add_peer(&d);
            memcpy(peer->public_key, key, WGKEY_LEN);
        } else if (!peer) {
            continue; /* fwmark and keys added by later versions */
        } else if (streq(k, "endpoint")) {
            if (wg_endpoint_parse(v, &peer->endpoint) < 0)
                goto out_clear;
        } else if (streq(k, "allowed_ip")) {
            struct wg_allowed_ip a;
            if (wg_allowed_ip_parse(v, &a) < 0)
                goto out_clear;
            *wg_peer_add_allowed_ip(peer) = a;
        } else if (streq(k, "persistent_keepalive_interval")) {
            if (parse_u64(v, &u) < 0 || u > 65535)
                goto out_clear;
            peer->keepalive = (uint16_t)u;
        } else if (streq(k, "last_handshake_time_sec")) {
            if (parse_u64(v, &u) < 0)
                goto out_clear;
            peer->last_handshake_sec = (int64_t)u;
        } else if (streq(k, "rx_bytes")) {
            if (parse_u64(v, &peer->rx_bytes) < 0)
                goto out_clear;
        } else if (streq(k, "tx_bytes")) {
            if (parse_u64(v, &peer->tx_bytes) < 0)
                goto out_clear;
        }
    }
out_clear:
    explicit_bzero(copy, strlen(text));
    wg_device_clear(&d);
    return r == 0 ? -EBADMSG : r;
}

int wg_uapi_parse_set_reply(const char *text)
{
    const char *e = strstr(text, "errno=");
    if (!e || (e != text && e[-1] != '\n'))
        return -EBADMSG;
    _cleanup_free_ char *v = xstrndup(e + 6, strcspn(e + 6, "\n"));
    return parse_errno_value(v);
}

static int uapi_connect(const struct wg_opts *o, const char *ifname)
{
    if (!net_ifname_ok(ifname))
        return -EINVAL;
    _cleanup_free_ char *path = wg_uapi_socket_path(o, ifname);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sun.sun_path))
        return -ENAMETOOLONG;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int r = errno == ECONNREFUSED ? -ENODEV : -errno;
        close(fd);
        return r == -ENOENT ? -ENODEV : r;
    }
    return fd;
}

/* Send a request and read the reply up to the blank line that ends it. */
static int uapi_transact(const struct wg_opts *o, const char *ifname,
                         const char *req, size_t req_len, char **ret_reply)
{
    _cleanup_close_ int fd = uapi_connect(o, ifname);
    if (fd < 0)
        return fd;
    for (size_t off = 0; off < req_len;) {
        ssize_t n = send(fd, req + off, req_len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        off += (size_t)n;
    }
    struct buf reply = BUF_INIT;
    char chunk[4096];
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int pr = poll(&p, 1, UAPI_TIMEOUT_MS);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            buf_free(&reply);
            return pr == 0 ? -ETIMEDOUT : -errno;
        }
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int r = -errno;
            buf_free(&reply);
            return r;
        }
        if (n == 0)
            break;
        buf_append(&reply, chunk, (size_t)n);
        if (reply.len > UAPI_REPLY_MAX) {
            buf_free(&reply);
            return -EFBIG;
        }
        if (reply.len >= 2 && memcmp(reply.data + reply.len - 2, "\n\n", 2) == 0)
            break;
    }
    explicit_bzero(chunk, sizeof(chunk));
    *ret_reply = buf_steal(&reply);
    return 0;
}

static int uapi_set(const struct wg_opts *o, const struct wg_device *d)
{
    struct buf req = BUF_INIT;
    int r = wg_uapi_format_set(d, &req);
    if (r < 0) {
        buf_free(&req);
        return r;
    }
    _cleanup_free_ char *reply = NULL;
    r = uapi_transact(o, d->name, buf_str(&req), req.len, &reply);
    explicit_bzero(req.data, req.len);
    buf_free(&req);
    if (r < 0)
        return r;
    return wg_uapi_parse_set_reply(reply);
}

static int uapi_get(const struct wg_opts *o, const char *ifname,
                    struct wg_device *ret)
{
    _cleanup_free_ char *reply = NULL;
    int r = uapi_transact(o, ifname, "get=1\n\n", 7, &reply);
    if (r < 0)
        return r;
    struct wg_device d = { 0 };
    r = wg_uapi_parse_get(reply, &d);
    explicit_bzero(reply, strlen(reply));
    if (r < 0)
        return r;
    snprintf(d.name, sizeof(d.name), "%s", ifname);
    wg_device_clear(ret);
    *ret = d;
    return 0;
}

static bool uapi_alive(const struct wg_opts *o, const char *ifname)
{
    int fd = uapi_connect(o, ifname);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* Start wireguard-go for the interface. It daemonises itself: the process
 * we spawn exits once the device and its socket exist. */
static int uapi_create(const struct wg_opts *o, const char *ifname)
{
    if (!net_ifname_ok(ifname))
        return -EINVAL;
    if (uapi_alive(o, ifname))
        return 0;
    const char *prog = o && o->wireguard_go ? o->wireguard_go : "wireguard-go";
    char *const argv[] = { (char *)prog, (char *)ifname, NULL };
    int r = spawn_wait(argv, false);
    if (r < 0)
        return r;
    for (int i = 0; i < UAPI_TIMEOUT_MS / 20; i++) {
        if (uapi_alive(o, ifname))
            return 0;
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return -ETIMEDOUT;
}

/* Deleting the tun device makes wireguard-go exit and remove its socket. */
static int uapi_remove(const struct wg_opts *o, const char *ifname)
{
    if (!net_ifname_ok(ifname))
        return -EINVAL;
    int r = link_delete(ifname);
    if (r < 0)
        return r;
    _cleanup_free_ char *path = wg_uapi_socket_path(o, ifname);
    for (int i = 0; i < 100; i++) {
        if (access(path, F_OK) < 0)
            break;
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return 0;
}

const struct wg_backend wg_backend_uapi = {
    .name = "wireguard-go (UAPI)",
    .create = uapi_create,
    .set = uapi_set,
    .get = uapi_get,
    .remove = uapi_remove,
};
