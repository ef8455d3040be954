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

#include "api/http_server.h"

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

/* A node's connection upgraded to RELAY_UPGRADE_PROTOCOL: frames after
 * their lengths both ways. Only the node it authenticated as may
 * register over it. */
struct relay_stream {
    struct http_upgraded *u;
    int fd;
    uint8_t id[RELAY_ID_LEN];
    uint8_t in[RELAY_STREAM_PREFIX + RELAY_FRAME_MAX];
    size_t in_len;
    uint8_t out[RELAY_STREAM_OUT];
    size_t out_len;
};

struct relay_node {
    bool used;
    struct relay_stream *st;    /* registered over this stream; NULL: UDP */
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
    struct relay_stream *streams[RELAY_STREAMS_MAX];
    pthread_mutex_t lock;       /* guards pending and stopped */
    struct relay_stream *pending[RELAY_STREAMS_MAX];
    size_t n_pending;
    bool stopped;               /* its thread is gone: take no stream */
    atomic_uint_fast64_t forwarded, dropped, registered, tcp;
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
        if (s->nodes[i].used && !s->nodes[i].st &&
            addr_equal(&s->nodes[i].addr, s->nodes[i].addr_len, a, al))
            return &s->nodes[i];
    return NULL;
}

/* Register (or move) a node that presented a valid token. false when the
 * table is full of live nodes. */
static bool hello(struct relay_server *s, const struct relay_frame *f,
                  const struct sockaddr_storage *from, socklen_t fl,
                  struct relay_stream *st, enum probe_nat nat,
                  int64_t expires, int64_t now_ms, int64_t wall)
{
    struct relay_node *n = by_id(s, f->id);
    /* Another node's old registration from this address (a NAT reused
     * the mapping) is forgotten. */
    struct relay_node *other = st ? NULL : by_addr(s, from, fl);
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
    if (!n->used || n->st != st ||
        (!st && !addr_equal(&n->addr, n->addr_len, from, fl))) {
        char idt[37];
        relay_id_format(f->id, idt);
        log_debug("relay: node %s registered over %s", idt, st ? "TCP" : "UDP");
    }
    *n = (struct relay_node){ .used = true, .st = st, .nat = nat,
                              .expires = expires, .seen_ms = now_ms };
    if (!st) {
        n->addr = *from;
        n->addr_len = fl;
    }
    memcpy(n->id, f->id, RELAY_ID_LEN);
    return true;
}

/* Write what stream st has waiting; false once the connection failed. */
static bool stream_flush(struct relay_stream *st)
{
    while (st->out_len > 0) {
        ssize_t w = send(st->fd, st->out, st->out_len,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        memmove(st->out, st->out + w, st->out_len - (size_t)w);
        st->out_len -= (size_t)w;
    }
    return true;
}

/* Send frame pkt (len bytes) to node n over its transport. A stream's
 * frame that does not fit what it has waiting is lost, as a datagram
 * would be. */
static bool deliver(struct relay_server *s, struct relay_node *n,
                    const uint8_t *pkt, size_t len)
{
    if (!n->st)
        return sendto(s->fd, pkt, len, 0, (struct sockaddr *)&n->addr,
                      n->addr_len) == (ssize_t)len;
    struct relay_stream *st = n->st;
    if (RELAY_STREAM_PREFIX + len > sizeof(st->out) - st->out_len)
        return false;
    st->out[st->out_len] = (uint8_t)(len >> 8);
    st->out[st->out_len + 1] = (uint8_t)len;
    memcpy(st->out + st->out_len + RELAY_STREAM_PREFIX, pkt, len);
    st->out_len += RELAY_STREAM_PREFIX + len;
    atomic_fetch_add(&s->tcp, 1);
    stream_flush(st);
    return true;
}

/* One frame, from UDP address `from` or (st not NULL) from a stream;
 * pkt has room for a frame of RELAY_FRAME_MAX. The rate is per UDP
 * source address and port, or per stream's node. */
static void serve_frame(struct relay_server *s, uint8_t *pkt, size_t got,
                        const struct sockaddr_storage *from, socklen_t fl,
                        struct relay_stream *st)
{
    int64_t now_ms = mono_ms(), wall = now_s(), retry;
    char key[INET6_ADDRSTRLEN + 8] = "";
    uint16_t port = 0;
    if (st) {
        relay_id_format(st->id, key);
        port = 1;
        atomic_fetch_add(&s->tcp, 1);
    } else if (from->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)from;
        inet_ntop(AF_INET, &a->sin_addr, key, sizeof(key));
        port = ntohs(a->sin_port);
    } else if (from->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)from;
        inet_ntop(AF_INET6, &a->sin6_addr, key, sizeof(key));
        port = ntohs(a->sin6_port);
    }
    if (!st)
        snprintf(key + strlen(key), sizeof(key) - strlen(key), "/%u",
                 (unsigned)port);
    struct relay_frame f;
    if (port == 0 || relay_decode(pkt, got, &f) < 0 ||
        !ratelimit_take(s->rl, key, now_ms, &retry))
        goto out_drop;
    if (f.type == RELAY_HELLO) {
        enum probe_nat nat;
        int64_t expires;
        if ((st && memcmp(f.id, st->id, RELAY_ID_LEN) != 0) ||
            relay_token_check(s->secret, f.id, f.token, wall, &nat,
                              &expires) < 0 ||
            !hello(s, &f, from, fl, st, nat, expires, now_ms, wall))
            goto out_drop;
        /* Said back, shorter than the hello, to the node that proved
         * itself: it tells the node its transport works. */
        struct relay_node *n = by_id(s, f.id);
        struct relay_frame w = { .type = RELAY_WELCOME };
        memcpy(w.id, f.id, RELAY_ID_LEN);
        uint8_t out[RELAY_WELCOME_LEN];
        size_t len;
        if (n && relay_encode(&w, out, sizeof(out), &len) == 0)
            deliver(s, n, out, len);
        return;
    }
    struct relay_node *src = st ? by_id(s, st->id) : by_addr(s, from, fl);
    struct relay_node *dst = by_id(s, f.id);
    if (f.type != RELAY_DATA || !src || src->st != st || !dst || src == dst ||
        !live(src, now_ms, wall) || !live(dst, now_ms, wall) ||
        !relay_path_needed(src->nat, dst->nat))
        goto out_drop;
    /* The same frame with the source's id in place of the destination's:
     * exactly as long as what came in. */
    memcpy(pkt + RELAY_HDR_LEN, src->id, RELAY_ID_LEN);
    if (!deliver(s, dst, pkt, got))
        goto out_drop;
    atomic_fetch_add(&s->forwarded, 1);
    return;
out_drop:
    atomic_fetch_add(&s->dropped, 1);
}

/* Handle one datagram waiting on the socket. */
static void serve_one(struct relay_server *s)
{
    uint8_t pkt[RELAY_FRAME_MAX + 1];
    struct sockaddr_storage from;
    socklen_t fl = sizeof(from);
    ssize_t got = recvfrom(s->fd, pkt, sizeof(pkt), 0,
                           (struct sockaddr *)&from, &fl);
    if (got >= 0)
        serve_frame(s, pkt, (size_t)got, &from, fl, NULL);
}

/* Close stream i and forget the node registered over it. */
static void stream_end(struct relay_server *s, size_t i)
{
    struct relay_stream *st = s->streams[i];
    for (size_t k = 0; k < RELAY_NODES_MAX; k++)
        if (s->nodes[k].used && s->nodes[k].st == st) {
            s->nodes[k].used = false;
            atomic_fetch_sub(&s->registered, 1);
        }
    char idt[37];
    relay_id_format(st->id, idt);
    log_debug("relay: node %s's TCP connection closed", idt);
    http_upgraded_close(st->u);
    free(st);
    s->streams[i] = NULL;
}

/* Serve every whole frame stream st has read; false when it broke the
 * framing. */
static bool stream_frames(struct relay_server *s, struct relay_stream *st)
{
    size_t off = 0, frame, used;
    int r;
    while ((r = relay_stream_next(st->in + off, st->in_len - off, &frame,
                                  &used)) == 1) {
        uint8_t pkt[RELAY_FRAME_MAX];
        memcpy(pkt, st->in + off + RELAY_STREAM_PREFIX, frame);
        serve_frame(s, pkt, frame, NULL, 0, st);
        off += used;
    }
    if (r < 0) {
        atomic_fetch_add(&s->dropped, 1);
        return false;
    }
    memmove(st->in, st->in + off, st->in_len - off);
    st->in_len -= off;
    return true;
}

/* Read what stream st has for us and serve every whole frame; false when
 * it ended or broke the framing. */
static bool stream_read(struct relay_server *s, struct relay_stream *st)
{
    for (int i = 0; i < 64; i++) {
        ssize_t got = recv(st->fd, st->in + st->in_len,
                           sizeof(st->in) - st->in_len, MSG_DONTWAIT);
        if (got == 0)
            return false;
        if (got < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        st->in_len += (size_t)got;
        if (!stream_frames(s, st))
            return false;
    }
    return true;
}

/* Take the streams handed over since the last wake-up. */
static void streams_take(struct relay_server *s)
{
    pthread_mutex_lock(&s->lock);
    for (size_t k = 0; k < s->n_pending; k++) {
        struct relay_stream *st = s->pending[k];
        /* One connection per node: a newer one replaces the older. */
        for (size_t j = 0; j < RELAY_STREAMS_MAX; j++)
            if (s->streams[j] &&
                memcmp(s->streams[j]->id, st->id, RELAY_ID_LEN) == 0)
                stream_end(s, j);
        size_t i = 0;
        while (i < RELAY_STREAMS_MAX && s->streams[i])
            i++;
        if (i == RELAY_STREAMS_MAX) {
            log_warn("relay: %d TCP connections already: one refused",
                     RELAY_STREAMS_MAX);
            http_upgraded_close(st->u);
            free(st);
            continue;
        }
        s->streams[i] = st;
        /* Frames sent with the request come first. */
        size_t n;
        const char *early = http_upgraded_early(st->u, &n);
        if (n > sizeof(st->in)) {
            stream_end(s, i);
            continue;
        }
        if (n > 0)
            memcpy(st->in, early, n);
        st->in_len = n;
        if (!stream_frames(s, st))
            stream_end(s, i);
    }
    s->n_pending = 0;
    pthread_mutex_unlock(&s->lock);
}

static void *relay_main(void *arg)
{
    struct relay_server *s = arg;
    struct pollfd pf[2 + RELAY_STREAMS_MAX];
    size_t at[2 + RELAY_STREAMS_MAX];
    for (;;) {
        nfds_t n = 0;
        pf[n++] = (struct pollfd){ .fd = s->fd, .events = POLLIN };
        pf[n++] = (struct pollfd){ .fd = s->stop_pipe[0], .events = POLLIN };
        for (size_t i = 0; i < RELAY_STREAMS_MAX; i++)
            if (s->streams[i]) {
                at[n] = i;
                pf[n++] = (struct pollfd){
                    .fd = s->streams[i]->fd,
                    .events = POLLIN | (s->streams[i]->out_len ? POLLOUT : 0)
                };
            }
        /* A stream's client hanging up is only seen by asking (TLS):
         * every second at least. */
        if (poll(pf, n, 1000) < 0) {
            if (errno == EINTR)
                continue;
            log_error("relay: poll: %s", strerror(errno));
            break;
        }
        if (pf[1].revents) {
            char b[64];
            ssize_t r = read(s->stop_pipe[0], b, sizeof(b));
            if (r > 0 && memchr(b, 'x', (size_t)r))
                break;
            streams_take(s);
        }
        /* A batch per wake-up, so a busy socket is drained promptly. */
        for (int i = 0; i < 64 && (pf[0].revents & POLLIN); i++) {
            serve_one(s);
            struct pollfd one = { .fd = s->fd, .events = POLLIN };
            if (poll(&one, 1, 0) <= 0)
                break;
        }
        for (nfds_t k = 2; k < n; k++) {
            struct relay_stream *st = s->streams[at[k]];
            if (!st || st->fd != pf[k].fd)
                continue;
            bool ok = !(pf[k].revents & (POLLERR | POLLNVAL));
            if (ok && (pf[k].revents & (POLLIN | POLLHUP)))
                ok = stream_read(s, st);
            if (ok && (pf[k].revents & POLLOUT))
                ok = stream_flush(st);
            if (!ok || http_upgraded_peer_gone(st->u))
                stream_end(s, at[k]);
        }
    }
    for (size_t i = 0; i < RELAY_STREAMS_MAX; i++)
        if (s->streams[i])
            stream_end(s, i);
    streams_take(s);
    for (size_t i = 0; i < RELAY_STREAMS_MAX; i++)
        if (s->streams[i])
            stream_end(s, i);
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
    pthread_mutex_init(&s->lock, NULL);
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
    pthread_mutex_lock(&s->lock);
    bool stopped = s->stopped;
    s->stopped = true;
    pthread_mutex_unlock(&s->lock);
    if (stopped)
        return;
    if (write(s->stop_pipe[1], "x", 1) != 1)
        log_warn("relay: cannot wake its thread");
    pthread_join(s->thread, NULL);
}

void relay_server_free(struct relay_server *s)
{
    if (!s)
        return;
    relay_server_stop(s);
    close(s->fd);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    ratelimit_free(s->rl);
    pthread_mutex_destroy(&s->lock);
    explicit_bzero(s->secret, sizeof(s->secret));
    free(s);
}

void relay_server_stream(struct relay_server *s, const char *node_id,
                         struct http_upgraded *u)
{
    struct relay_stream *st = xcalloc(1, sizeof(*st));
    st->u = u;
    st->fd = http_upgraded_fd(u);
    if (relay_id_parse(node_id, st->id) < 0) {
        http_upgraded_close(u);
        free(st);
        return;
    }
    pthread_mutex_lock(&s->lock);
    bool taken = !s->stopped && s->n_pending < RELAY_STREAMS_MAX;
    if (taken)
        s->pending[s->n_pending++] = st;
    pthread_mutex_unlock(&s->lock);
    if (!taken) {
        http_upgraded_close(u);
        free(st);
        return;
    }
    if (write(s->stop_pipe[1], "s", 1) != 1)
        log_warn("relay: cannot wake its thread");
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
                         uint64_t *ret_dropped, uint64_t *ret_nodes,
                         uint64_t *ret_tcp)
{
    *ret_tcp = s ? atomic_load(&s->tcp) : 0;
    *ret_forwarded = s ? atomic_load(&s->forwarded) : 0;
    *ret_dropped = s ? atomic_load(&s->dropped) : 0;
    *ret_nodes = s ? atomic_load(&s->registered) : 0;
}
