/* Direct tries for relayed mesh peers (nodeagent/meshdirect.h). The
 * thread reads the device every second (four times a second during a
 * try) while there are relayed peers, and sets one peer's endpoint at a
 * time; meshdirect_hold keeps it off while the agent sets the device
 * whole, so neither undoes the other. */
#include "nodeagent/meshdirect.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "netfabric/wg.h"

#include <arpa/inet.h>
#include <linux/icmp.h>
#include <netinet/in.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum md_state { MD_RELAY, MD_TRYING, MD_DIRECT };

struct md_peer {
    char node_id[37];
    uint8_t key[WGKEY_LEN];
    union wg_endpoint cand, relay, direct;
    uint32_t mesh_ip;
    enum md_state state;
    int64_t since;          /* unix seconds of the current path */
    int64_t next_try;       /* monotonic ms */
    int64_t backoff_ms;
    int64_t window_end, poke_at, last_rx;
    int64_t relay_seen;     /* direct: its packets came relayed since */
    uint64_t rx, rx_mark;
};

struct meshdirect {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    bool stop, started;
    char *ifname, *wireguard_go;
    struct meshdirect_opts o;
    struct md_peer *peers;
    size_t n;
    int poke_fd;            /* UDP */
    int echo_fd;            /* raw ICMP (CAP_NET_RAW); -1: none */
};

/* A delay of ms with up to a quarter more, so that the pairs of a mesh
 * do not all try at once. */
static int64_t jitter(int64_t ms)
{
    uint32_t r;
    random_bytes(&r, sizeof(r));
    return ms + (int64_t)(r % (uint32_t)(ms / 4 + 1));
}

static bool is_relay(const union wg_endpoint *e)
{
    return e->sa.sa_family == AF_INET &&
           ntohl(e->in.sin_addr.s_addr) == INADDR_LOOPBACK;
}

static char *ep_text(const union wg_endpoint *e)
{
    struct buf b = { 0 };
    wg_endpoint_format(e, &b);
    char *s = buf_steal(&b);
    return s ? s : xstrdup("");
}

/* Set peer p's endpoint to e, keeping its keepalive. 0 or -errno. */
static int set_endpoint(struct meshdirect *md, const struct md_peer *p,
                        const struct wg_peer *have,
                        const union wg_endpoint *e)
{
    struct wg_device d = { 0 };
    snprintf(d.name, sizeof(d.name), "%s", md->ifname);
    struct wg_peer *w = wg_device_add_peer(&d);
    memcpy(w->public_key, p->key, WGKEY_LEN);
    w->endpoint = *e;
    w->keepalive = have->keepalive;
    struct wg_opts o = { .wireguard_go = md->wireguard_go };
    int r = wg_device_validate(&d);
    if (r == 0)
        r = wg_backend_pick()->set(&o, &d);
    wg_device_clear(&d);
    if (r < 0)
        log_warn("mesh peer %s: cannot set its endpoint: %s", p->node_id,
                 strerror(-r));
    return r;
}

/* Draw an answer through the tunnel: an ICMP echo request to the peer's
 * mesh address (where we may send one) and a datagram to its discard
 * port (ICMP port unreachable back). Its WireGuard sends what answers
 * along the endpoint it now has for us; a peer that answers neither
 * still sends a keepalive 10 s after our data. */
static void poke(struct meshdirect *md, struct md_peer *p, int64_t now)
{
    p->poke_at = now + 1000;
    if (!p->mesh_ip)
        return;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(9),
                              .sin_addr.s_addr = htonl(p->mesh_ip) };
    if (md->poke_fd >= 0)
        (void)!sendto(md->poke_fd, "", 0, MSG_DONTWAIT,
                      (struct sockaddr *)&sa, sizeof(sa));
    if (md->echo_fd >= 0) {
        /* Type 8, code 0, checksum, id, sequence: the checksum of these
         * eight bytes is the complement of their 16-bit sum. */
        uint8_t echo[8] = { 8, 0, 0, 0, 0x66, 0x67, 0, 1 };
        uint32_t sum = 0;
        for (size_t i = 0; i < sizeof(echo); i += 2)
            sum += (uint32_t)echo[i] << 8 | echo[i + 1];
        while (sum >> 16)
            sum = (sum & 0xffff) + (sum >> 16);
        echo[2] = (uint8_t)(~sum >> 8);
        echo[3] = (uint8_t)~sum;
        sa.sin_port = 0;
        (void)!sendto(md->echo_fd, echo, sizeof(echo), MSG_DONTWAIT,
                      (struct sockaddr *)&sa, sizeof(sa));
    }
}

static void to_relay(struct meshdirect *md, struct md_peer *p,
                     const struct wg_peer *have, int64_t now)
{
    set_endpoint(md, p, have, &p->relay);
    if (p->state == MD_DIRECT)
        p->since = now_s();
    p->state = MD_RELAY;
    p->next_try = now + jitter(p->backoff_ms);
    p->backoff_ms = p->backoff_ms * 2 > md->o.retry_max_s * 1000
                        ? md->o.retry_max_s * 1000 : p->backoff_ms * 2;
}

static void to_direct(struct meshdirect *md, struct md_peer *p,
                      const struct wg_peer *have, int64_t now, const char *why)
{
    _cleanup_free_ char *ep = ep_text(&have->endpoint);
    log_info("mesh peer %s: direct path works (%s %s), relay left",
             p->node_id, why, ep);
    p->state = MD_DIRECT;
    p->since = now_s();
    p->direct = have->endpoint;
    p->last_rx = now;
    p->relay_seen = 0;
    p->backoff_ms = md->o.retry_s * 1000;
}

/* Read back the rx counter right after setting an endpoint: bytes that
 * arrived before the set do not count for the direct path. */
static void mark(struct meshdirect *md, struct md_peer *p)
{
    struct wg_opts o = { .wireguard_go = md->wireguard_go };
    struct wg_device d = { 0 };
    if (wg_backend_pick()->get(&o, md->ifname, &d) == 0) {
        struct wg_peer *w = wg_device_find_peer(&d, p->key);
        if (w)
            p->rx_mark = p->rx = w->rx_bytes;
    }
    wg_device_clear(&d);
}

static void peer_tick(struct meshdirect *md, struct md_peer *p,
                      const struct wg_peer *w, int64_t now)
{
    bool got = w->rx_bytes > p->rx;
    p->rx = w->rx_bytes;
    bool via_relay = is_relay(&w->endpoint);
    switch (p->state) {
    case MD_RELAY:
        if (!via_relay && w->endpoint.sa.sa_family && got) {
            /* The peer's packets come straight: it found the path. */
            to_direct(md, p, w, now, "its packets come straight from");
        } else if (now >= p->next_try && p->cand.sa.sa_family) {
            if (set_endpoint(md, p, w, &p->cand) < 0) {
                p->next_try = now + jitter(p->backoff_ms);
                break;
            }
            p->state = MD_TRYING;
            p->window_end = now + md->o.window_s * 1000;
            mark(md, p);
            poke(md, p, now);
            if (log_enabled(LOG_DEBUG)) {
                _cleanup_free_ char *ep = ep_text(&p->cand);
                log_debug("mesh peer %s: trying the direct path at %s",
                          p->node_id, ep);
            }
        }
        break;
    case MD_TRYING:
        if (via_relay) {
            /* Its packets still come through the relay (WireGuard roamed
             * back): ours keep going direct for the window. */
            if (now < p->window_end && set_endpoint(md, p, w, &p->cand) == 0)
                mark(md, p);
        } else if (p->rx > p->rx_mark) {
            to_direct(md, p, w, now, "a try answered from");
            break;
        }
        if (now >= p->window_end) {
            if (log_enabled(LOG_DEBUG)) {
                _cleanup_free_ char *ep = ep_text(&w->endpoint);
                log_debug("mesh peer %s: no direct answer (endpoint %s, %llu "
                          "bytes since), back to the relay", p->node_id, ep,
                          (unsigned long long)(p->rx - p->rx_mark));
            }
            to_relay(md, p, w, now);
        } else if (now >= p->poke_at) {
            poke(md, p, now);
        }
        break;
    case MD_DIRECT:
        if (via_relay) {
            /* Its packets came through the relay (its side set the relay
             * socket again): ours keep going direct, which roams it back
             * if the path works; a window of that and it fell back. */
            if (!p->relay_seen)
                p->relay_seen = now;
            if (now - p->relay_seen > md->o.window_s * 1000) {
                log_info("mesh peer %s: its packets come through the relay: "
                         "relayed again", p->node_id);
                p->backoff_ms = md->o.retry_s * 1000;
                to_relay(md, p, w, now);
                break;
            }
            if (set_endpoint(md, p, w, &p->direct) == 0)
                mark(md, p);
            if (now >= p->poke_at)
                poke(md, p, now);
            break;
        }
        if (got) {
            p->relay_seen = 0;
            p->last_rx = now;
        }
        if (now - p->last_rx > md->o.timeout_s * 1000) {
            log_warn("mesh peer %s: nothing from its direct path for %llds: "
                     "back to the relay", p->node_id,
                     (long long)md->o.timeout_s);
            p->backoff_ms = md->o.retry_s * 1000;
            to_relay(md, p, w, now);
        } else {
            if (w->endpoint.sa.sa_family)
                p->direct = w->endpoint;
            /* Quiet: draw an answer before the timeout says it is gone. */
            if (now - p->last_rx > md->o.timeout_s * 1000 / 3 &&
                now >= p->poke_at)
                poke(md, p, now);
        }
        break;
    }
}

/* One look at every followed peer; how long to wait for the next. */
static int64_t tick_all(struct meshdirect *md)
{
    int64_t wait_ms = 1000;
    struct wg_opts o = { .wireguard_go = md->wireguard_go };
    struct wg_device d = { 0 };
    int64_t now = mono_ms();
    if (wg_backend_pick()->get(&o, md->ifname, &d) == 0)
        for (size_t i = 0; i < md->n; i++) {
            struct wg_peer *w = wg_device_find_peer(&d, md->peers[i].key);
            if (w)
                peer_tick(md, &md->peers[i], w, now);
            if (md->peers[i].state == MD_TRYING)
                wait_ms = 250;
        }
    wg_device_clear(&d);
    return wait_ms;
}

static void *meshdirect_main(void *arg)
{
    struct meshdirect *md = arg;
    pthread_mutex_lock(&md->lock);
    while (!md->stop) {
        if (!md->n) {
            /* Nothing relayed: sleep until meshdirect_sync names peers. */
            pthread_cond_wait(&md->cond, &md->lock);
            continue;
        }
        int64_t wait_ms = tick_all(md);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        ts.tv_sec += wait_ms / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&md->cond, &md->lock, &ts);
    }
    pthread_mutex_unlock(&md->lock);
    return NULL;
}

struct meshdirect *meshdirect_start(const char *ifname,
                                    const char *wireguard_go,
                                    const struct meshdirect_opts *o)
{
    struct meshdirect *md = xcalloc(1, sizeof(*md));
    pthread_mutex_init(&md->lock, NULL);
    pthread_cond_init(&md->cond, NULL);
    md->ifname = xstrdup(ifname);
    md->wireguard_go = wireguard_go ? xstrdup(wireguard_go) : NULL;
    md->o = *o;
    md->poke_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    /* Replies are WireGuard's to count, not ours to read: the raw socket
     * takes no ICMP type at all (it would get a copy of every one). */
    md->echo_fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    uint32_t none = ~UINT32_C(0);
    if (md->echo_fd >= 0 &&
        setsockopt(md->echo_fd, SOL_RAW, ICMP_FILTER, &none, sizeof(none)) < 0) {
        close(md->echo_fd);
        md->echo_fd = -1;
    }
    int e = pthread_create(&md->thread, NULL, meshdirect_main, md);
    md->started = e == 0;
    if (e) {
        log_error("cannot start the direct path thread: %s", strerror(e));
        md->stop = true;
        meshdirect_stop(md);
        return NULL;
    }
    return md;
}

void meshdirect_stop(struct meshdirect *md)
{
    if (!md)
        return;
    if (md->started) {
        pthread_mutex_lock(&md->lock);
        md->stop = true;
        pthread_cond_signal(&md->cond);
        pthread_mutex_unlock(&md->lock);
        pthread_join(md->thread, NULL);
    }
    if (md->poke_fd >= 0)
        close(md->poke_fd);
    if (md->echo_fd >= 0)
        close(md->echo_fd);
    pthread_mutex_destroy(&md->lock);
    pthread_cond_destroy(&md->cond);
    free(md->peers);
    free(md->ifname);
    free(md->wireguard_go);
    free(md);
}

void meshdirect_hold(struct meshdirect *md)
{
    if (md)
        pthread_mutex_lock(&md->lock);
}

void meshdirect_release(struct meshdirect *md)
{
    if (md)
        pthread_mutex_unlock(&md->lock);
}

void meshdirect_sync(struct meshdirect *md, const struct meshdirect_peer *p,
                     size_t n, char **ret_endpoints)
{
    struct md_peer *next = xcalloc(n + 1, sizeof(*next));
    int64_t now = mono_ms();
    for (size_t i = 0; i < n; i++) {
        struct md_peer *q = &next[i];
        struct md_peer *old = NULL;
        for (size_t k = 0; k < md->n && !old; k++)
            if (streq(md->peers[k].node_id, p[i].node_id))
                old = &md->peers[k];
        if (old) {
            *q = *old;
        } else {
            snprintf(q->node_id, sizeof(q->node_id), "%s", p[i].node_id);
            q->state = MD_RELAY;
            q->since = now_s();
            q->next_try = now + jitter(md->o.first_s * 1000);
            q->backoff_ms = md->o.retry_s * 1000;
        }
        memcpy(q->key, p[i].public_key, WGKEY_LEN);
        q->mesh_ip = p[i].mesh_ip;
        memset(&q->cand, 0, sizeof(q->cand));
        if (p[i].candidate)
            (void)wg_endpoint_parse(p[i].candidate, &q->cand);
        q->relay = (union wg_endpoint){ .in = {
            .sin_family = AF_INET, .sin_port = htons(p[i].relay_port),
            .sin_addr.s_addr = htonl(INADDR_LOOPBACK) } };
        const union wg_endpoint *e =
            q->state == MD_DIRECT ? &q->direct
            : q->state == MD_TRYING ? &q->cand : &q->relay;
        ret_endpoints[i] = ep_text(e);
    }
    free(md->peers);
    md->peers = next;
    md->n = n;
    pthread_cond_signal(&md->cond);
}

struct meshdirect_state *meshdirect_paths(struct meshdirect *md,
                                          size_t *ret_n)
{
    *ret_n = 0;
    if (!md)
        return NULL;
    pthread_mutex_lock(&md->lock);
    struct meshdirect_state *s = NULL;
    if (md->n) {
        s = xcalloc(md->n, sizeof(*s));
        for (size_t i = 0; i < md->n; i++) {
            memcpy(s[i].node_id, md->peers[i].node_id, sizeof(s[i].node_id));
            s[i].path = md->peers[i].state == MD_DIRECT ? MESHDIRECT_DIRECT
                                                         : MESHDIRECT_RELAY;
            s[i].since = md->peers[i].since;
        }
    }
    *ret_n = md->n;
    pthread_mutex_unlock(&md->lock);
    return s;
}
