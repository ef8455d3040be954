/* The hub's WireGuard relay (controller/relay.h). The thread owns the
 * table of registered nodes; HTTP threads only make tokens from the
 * secret, which never changes after start. The table is small and
 * scanned per frame: fine for the nodes one hub relays for. */
#include "controller/relay.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "controller/probe.h"
#include "controller/ratelimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct relay_node {
    bool used;
    uint8_t id[RELAY_ID_LEN];
    struct sockaddr_storage addr;
    socklen_t addr_len;
    enum probe_nat nat;
    int64_t expires;        /* the token's, unix seconds */
    int64_t seen_ms;        /* last hello, monotonic */
};

struct relay_server {
    int fd;
    int stop_pipe[2];
    pthread_t thread;
    uint8_t secret[RELAY_SECRET_LEN];
    struct ratelimit *rl;
    struct relay_node nodes[RELAY_NODES_MAX];
    atomic_uint_fast64_t forwarded, dropped, registered;
};

static bool addr_equal(const struct sockaddr_storage *a, socklen_t al,
                       const struct sockaddr_storage *b, socklen_t bl)
{
    if (al != bl || a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port &&
               x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
}

static bool live(const struct relay_node *n, int64_t now_ms, int64_t wall)
{
    return n->used && n->expires > wall &&
           now_ms - n->seen_ms < RELAY_IDLE_S * 1000;
}

static struct relay_node *by_id(struct relay_server *s, const uint8_t *id)
{
    for (size_t i = 0; i < RELAY_NODES_MAX; i++)
        if (s->nodes[i].used && memcmp(s->nodes[i].id, id, RELAY_ID_LEN) == 0)
            return &s->nodes[i];
    return NULL;
}

static struct relay_node *by_addr(struct relay_server *s,
                                  const struct sockaddr_storage *a,
                                  socklen_t al)
{
    for (size_t i = 0; i < RELAY_NODES_MAX; i++)
        if (s->nodes[i].used &&
            addr_equal(&s->nodes[i].addr, s->nodes[i].addr_len, a, al))
            return &s->nodes[i];
    return NULL;
}

/* Register (or move) a node that presented a valid token. false when the
 * table is full of live nodes. */
static bool hello(struct relay_server *s, const struct relay_frame *f,
                  const struct sockaddr_storage *from, socklen_t fl,
                  enum probe_nat nat, int64_t expires, int64_t now_ms,
                  int64_t wall)
{
    struct relay_node *n = by_id(s, f->id);
    /* Another node's old registration from this address (a NAT reused
     * the mapping) is forgotten. */
    struct relay_node *other = by_addr(s, from, fl);
    if (other && other != n) {
        other->used = false;
        atomic_fetch_sub(&s->registered, 1);
    }
    for (size_t i = 0; !n && i < RELAY_NODES_MAX; i++)
        if (!live(&s->nodes[i], now_ms, wall)) {
            n = &s->nodes[i];
            if (!n->used)
                atomic_fetch_add(&s->registered, 1);
        }
    if (!n)
        return false;
    if (!n->used || !addr_equal(&n->addr, n->addr_len, from, fl)) {
        char idt[37];
        relay_id_format(f->id, idt);
        log_debug("relay: node %s registered", idt);
    }
    *n = (struct relay_node){ .used = true, .addr = *from, .addr_len = fl,
                              .nat = nat, .expires = expires,
                              .seen_ms = now_ms };
    memcpy(n->id, f->id, RELAY_ID_LEN);
    return true;
}

/* Handle one datagram waiting on the socket. */
static void serve_one(struct relay_server *s)
{
    uint8_t pkt[RELAY_FRAME_MAX + 1];
    struct sockaddr_storage from;
    socklen_t fl = sizeof(from);
    ssize_t got = recvfrom(s->fd, pkt, sizeof(pkt), 0,
                           (struct sockaddr *)&from, &fl);
    if (got < 0)
        return;
    int64_t now_ms = mono_ms(), wall = now_s(), retry;
    char key[INET6_ADDRSTRLEN + 8] = "";
    uint16_t port = 0;
    if (from.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&from;
        inet_ntop(AF_INET, &a->sin_addr, key, sizeof(key));
        port = ntohs(a->sin_port);
    } else if (from.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)&from;
        inet_ntop(AF_INET6, &a->sin6_addr, key, sizeof(key));
        port = ntohs(a->sin6_port);
    }
    snprintf(key + strlen(key), sizeof(key) - strlen(key), "/%u",
             (unsigned)port);
    struct relay_frame f;
    if (port == 0 || relay_decode(pkt, (size_t)got, &f) < 0 ||
        !ratelimit_take(s->rl, key, now_ms, &retry))
        goto out_drop;
    if (f.type == RELAY_HELLO) {
        enum probe_nat nat;
        int64_t expires;
        if (relay_token_check(s->secret, f.id, f.token, wall, &nat,
                              &expires) < 0 ||
            !hello(s, &f, &from, fl, nat, expires, now_ms, wall))
            goto out_drop;
        return;
    }
    struct relay_node *src = by_addr(s, &from, fl);
    struct relay_node *dst = by_id(s, f.id);
    if (!src || !dst || src == dst || !live(src, now_ms, wall) ||
        !live(dst, now_ms, wall) || !relay_path_needed(src->nat, dst->nat))
        goto out_drop;
    /* The same frame with the source's id in place of the destination's:
     * exactly as long as what came in. */
    memcpy(pkt + RELAY_HDR_LEN, src->id, RELAY_ID_LEN);
    if (sendto(s->fd, pkt, (size_t)got, 0, (struct sockaddr *)&dst->addr,
               dst->addr_len) != got)
        goto out_drop;
    atomic_fetch_add(&s->forwarded, 1);
    return;
out_drop:
    atomic_fetch_add(&s->dropped, 1);
}

static void *relay_main(void *arg)
{
    struct relay_server *s = arg;
    struct pollfd pf[2] = {
        { .fd = s->fd, .events = POLLIN },
        { .fd = s->stop_pipe[0], .events = POLLIN },
    };
    for (;;) {
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("relay: poll: %s", strerror(errno));
            break;
        }
        if (pf[1].revents)
            break;
        /* A batch per wake-up, so a busy socket is drained promptly. */
        for (int i = 0; i < 64 && (pf[0].revents & POLLIN); i++) {
            serve_one(s);
            struct pollfd one = { .fd = s->fd, .events = POLLIN };
            if (poll(&one, 1, 0) <= 0)
                break;
        }
    }
    return NULL;
}

int relay_server_start(const char *listen, int port,
                       struct relay_server **ret)
{
    struct relay_server *s = xcalloc(1, sizeof(*s));
    s->stop_pipe[0] = s->stop_pipe[1] = -1;
    int e = probe_udp_bind(listen, port, &s->fd);
    if (e < 0) {
        free(s);
        return e;
    }
    if (pipe2(s->stop_pipe, O_CLOEXEC) < 0)
        e = -errno;
    random_bytes(s->secret, sizeof(s->secret));
    s->rl = ratelimit_new(RELAY_RATE, RELAY_BURST, RELAY_NODES_MAX * 4);
    if (e == 0 && (e = -pthread_create(&s->thread, NULL, relay_main, s)) < 0)
        log_error("relay: cannot start its thread: %s", strerror(-e));
    if (e < 0) {
        close(s->fd);
        if (s->stop_pipe[0] >= 0) {
            close(s->stop_pipe[0]);
            close(s->stop_pipe[1]);
        }
        ratelimit_free(s->rl);
        explicit_bzero(s->secret, sizeof(s->secret));
        free(s);
        return e;
    }
    log_info("relaying WireGuard between nodes on UDP port %d", port);
    *ret = s;
    return 0;
}

void relay_server_stop(struct relay_server *s)
{
    if (!s)
        return;
    if (write(s->stop_pipe[1], "x", 1) != 1)
        log_warn("relay: cannot wake its thread");
    pthread_join(s->thread, NULL);
    close(s->fd);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    ratelimit_free(s->rl);
    explicit_bzero(s->secret, sizeof(s->secret));
    free(s);
}

int relay_server_token(struct relay_server *s, const char *node_id,
                       enum probe_nat nat, char out[RELAY_TOKEN_HEX + 1])
{
    uint8_t id[RELAY_ID_LEN], tok[RELAY_TOKEN_LEN];
    if (!s || relay_id_parse(node_id, id) < 0)
        return -EINVAL;
    relay_token_make(s->secret, id, now_s() + RELAY_TOKEN_S, nat, tok);
    hex_encode(tok, sizeof(tok), out);
    return 0;
}

void relay_server_counts(struct relay_server *s, uint64_t *ret_forwarded,
                         uint64_t *ret_dropped, uint64_t *ret_nodes)
{
    *ret_forwarded = s ? atomic_load(&s->forwarded) : 0;
    *ret_dropped = s ? atomic_load(&s->dropped) : 0;
    *ret_nodes = s ? atomic_load(&s->registered) : 0;
}
