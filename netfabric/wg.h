/* One small interface over the two ways to drive WireGuard: the kernel
 * module over generic netlink (wg_genl.c) and wireguard-go over its UAPI
 * socket (wg_uapi.c). wg.c picks one. A struct wg_device is both what we
 * ask for (set) and what we read back (get). */
#pragma once

#include "common/buf.h"
#include "common/util.h"
#include "netfabric/wgkey.h"

#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct wg_allowed_ip {
    int family; /* AF_INET or AF_INET6 */
    union {
        struct in_addr ip4;
        struct in6_addr ip6;
    } addr;
    uint8_t cidr;
};

union wg_endpoint {
    struct sockaddr sa; /* sa_family 0: no endpoint */
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

struct wg_peer {
    uint8_t public_key[WGKEY_LEN];
    bool remove;              /* set: delete this peer */
    bool replace_allowed_ips; /* set: allowed_ips replace the current list */
    union wg_endpoint endpoint;
    uint16_t keepalive;       /* persistent keepalive, seconds, 0 = off */
    struct wg_allowed_ip *allowed_ips;
    size_t n_allowed_ips;
    /* Read back by get only. */
    int64_t last_handshake_sec;
    uint64_t rx_bytes, tx_bytes;
};

struct wg_device {
    char name[IFNAMSIZ];
    bool has_private_key;
    uint8_t private_key[WGKEY_LEN];
    uint8_t public_key[WGKEY_LEN]; /* get: derived from the private key */
    bool has_listen_port;
    uint16_t listen_port;
    bool replace_peers; /* set: peers not listed are removed */
    struct wg_peer *peers;
    size_t n_peers;
};

/* Where the userspace implementation lives; NULL fields take defaults. */
struct wg_opts {
    const char *uapi_dir;     /* default "/var/run/wireguard" */
    const char *wireguard_go; /* program, looked up in PATH; default "wireguard-go" */
};

/* Free the peer arrays and wipe the private key; the struct is left zeroed. */
void wg_device_clear(struct wg_device *d);
/* Append a zeroed peer owned by d; the pointer is valid until the next add. */
struct wg_peer *wg_device_add_peer(struct wg_device *d);
/* Append a zeroed allowed IP owned by the peer. */
struct wg_allowed_ip *wg_peer_add_allowed_ip(struct wg_peer *p);
/* The peer with this public key, or NULL. */
struct wg_peer *wg_device_find_peer(const struct wg_device *d,
                                    const uint8_t key[WGKEY_LEN]);

/* "10.0.0.0/24" or "fd00::/64" (host bits must be clear). 0 or -EINVAL. */
int wg_allowed_ip_parse(const char *text, struct wg_allowed_ip *ret);
/* Append the text form of an allowed IP to b. */
void wg_allowed_ip_format(const struct wg_allowed_ip *a, struct buf *b);
/* Numeric "a.b.c.d:port" or "[v6]:port" (no name lookup). 0 or -EINVAL. */
int wg_endpoint_parse(const char *text, union wg_endpoint *ret);
/* Append the text form of an endpoint to b (nothing when unset). */
void wg_endpoint_format(const union wg_endpoint *e, struct buf *b);
/* Check a device config before any of it reaches a backend (a UAPI set
 * stops at the first bad line, half applied). 0 or -EINVAL. */
int wg_device_validate(const struct wg_device *d);

/* A backend. All return 0 or -errno. */
struct wg_backend {
    const char *name;
    /* Make the interface exist (no-op when it does). */
    int (*create)(const struct wg_opts *o, const char *ifname);
    /* Apply a configuration to d->name. */
    int (*set)(const struct wg_opts *o, const struct wg_device *d);
    /* Read the configuration and peer statistics; *ret is cleared first
     * and owned by the caller (wg_device_clear). */
    int (*get)(const struct wg_opts *o, const char *ifname,
               struct wg_device *ret);
    /* Remove the interface (-ENODEV when absent). */
    int (*remove)(const struct wg_opts *o, const char *ifname);
};

extern const struct wg_backend wg_backend_genl;
extern const struct wg_backend wg_backend_uapi;

/* The kernel backend when the "wireguard" generic netlink family resolves
 * in this network namespace, else the userspace one. FOG_WG_BACKEND=uapi
 * or =genl in the environment forces a choice. Never NULL. */
const struct wg_backend *wg_backend_pick(void);
