/* Relayed mesh peers try the direct path now and then and keep it once
 * it works. One thread: for a relayed peer it sets the peer's WireGuard
 * endpoint to its direct candidate for a short window (sending a packet
 * through the tunnel to draw an answer) and judges by WireGuard alone:
 * received bytes while the peer's endpoint is not the local relay socket
 * mean authenticated packets came straight from the peer (WireGuard
 * roams a peer's endpoint to the source of its packets). Success keeps
 * the peer direct; failure puts the relay socket back at once and tries
 * again later with backoff and jitter. A direct peer that sends nothing
 * straight for the timeout, or whose packets keep coming through the
 * relay for a window while ours go direct (the other side fell back),
 * goes back to the relay. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum meshdirect_path {
    MESHDIRECT_RELAY,
    MESHDIRECT_DIRECT,
};

struct meshdirect_opts {
    int64_t first_s;     /* first try of a newly relayed peer after */
    int64_t retry_s;     /* next tries after, doubling up to retry_max_s */
    int64_t retry_max_s;
    int64_t window_s;    /* a try lasts this long at most */
    int64_t timeout_s;   /* a direct peer silent this long: back to relay */
};

/* A relayed peer as the desired document gives it. */
struct meshdirect_peer {
    const char *node_id;
    const uint8_t *public_key;  /* WGKEY_LEN bytes */
    const char *candidate;      /* its direct "IP:PORT"; NULL: none */
    uint16_t relay_port;        /* its local relay socket on 127.0.0.1 */
    uint32_t mesh_ip;           /* host order; 0: none (no poke) */
};

struct meshdirect;

/* Start for WireGuard interface ifname (wireguard_go: as for netfabric;
 * NULL: default). NULL when the thread cannot start (logged). Free with
 * meshdirect_stop(). */
struct meshdirect *meshdirect_start(const char *ifname,
                                    const char *wireguard_go,
                                    const struct meshdirect_opts *o);
void meshdirect_stop(struct meshdirect *md);

/* Hold off the thread while the caller sets the whole WireGuard device
 * (meshdirect_sync's endpoints must be what it sets); NULL is fine. */
void meshdirect_hold(struct meshdirect *md);
void meshdirect_release(struct meshdirect *md);

/* Follow exactly these n relayed peers (under meshdirect_hold): each
 * one's WireGuard endpoint for the device goes to ret_endpoints[i]
 * (owned by the caller): its relay socket, or the direct endpoint where
 * the peer is direct or being tried. */
void meshdirect_sync(struct meshdirect *md, const struct meshdirect_peer *p,
                     size_t n, char **ret_endpoints);

struct meshdirect_state {
    char node_id[37];
    enum meshdirect_path path;
    int64_t since;      /* unix seconds */
};
/* The followed peers' paths (owned array, *ret_n entries; NULL when
 * none). */
struct meshdirect_state *meshdirect_paths(struct meshdirect *md,
                                          size_t *ret_n);
