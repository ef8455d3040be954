/* The node's side of the hub's WireGuard relay (nodeagent/meshrelay.h).
 * The thread owns the sockets; meshrelay_sync() and meshrelay_target()
 * change the tables under the lock and wake it. A peer dropped by a sync
 * is only marked: the thread closes its socket, so poll() never sees a
 * descriptor closed under it. */
#include "nodeagent/meshrelay.h"
#include "api/client.h"
#include "api/relay.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "nodeagent/natprobe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct mr_peer {
    bool used, dead;
    uint8_t id[RELAY_ID_LEN];
    int fd;
    uint16_t port;
};

struct meshrelay {
    pthread_mutex_t lock;
    pthread_t thread;
    int wake[2];
    bool stop, retarget;
    uint8_t id[RELAY_ID_LEN];
    uint16_t wg_port;
    char *url;
    int hub_port;
    bool have_token;
    uint8_t token[RELAY_TOKEN_LEN];
    int hub_fd;             /* connected to the hub; -1: none */
    int64_t hello_at;       /* next hello, monotonic ms */
    /* Over TCP where UDP gets no welcome: the controller's HTTPS
     * connection upgraded to RELAY_UPGRADE_PROTOCOL, with what was read
     * of its next frame. */
    char *cred, *ca_path, *key_pin;
    struct api_client *tc;
    struct api_stream *ts;
    uint8_t tin[RELAY_STREAM_PREFIX + RELAY_FRAME_MAX];
    size_t tin_len;
    int64_t unanswered;     /* a UDP hello waits for its welcome since */
    int64_t tcp_retry_at;   /* no TCP connection tried before */
    int64_t udp_try_at;     /* over TCP: the next UDP hello */
    struct mr_peer peers[MESHRELAY_PEERS_MAX];
    atomic_uint_fast64_t out, in;
};

static void wake(struct meshrelay *m)
{
    if (write(m->wake[1], "x", 1) < 0 && errno != EAGAIN)
        log_debug("relay: cannot wake its thread: %s", strerror(errno));
}

/* Connect a socket to the hub named by m->url and m->hub_port. */
static void hub_connect(struct meshrelay *m)
{
    if (m->hub_fd >= 0)
        close(m->hub_fd);
    m->hub_fd = -1;
    uint32_t hub;
    if (!m->url || m->hub_port <= 0 || natprobe_url_ipv4(m->url, &hub) < 0)
        return;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)m->hub_port),
                              .sin_addr.s_addr = hub };
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        log_warn("relay: cannot reach the hub's port %d: %s", m->hub_port,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    m->hub_fd = fd;
    m->hello_at = 0;
}

static void tcp_close(struct meshrelay *m, const char *why)
{
    if (!m->ts)
        return;
    log_info("relay: TCP connection to the hub closed: %s", why);
    api_stream_free(m->ts);
    api_client_free(m->tc);
    m->ts = NULL;
    m->tc = NULL;
    m->tin_len = 0;
}

/* Send frame f to the hub over TCP; false (and the connection closed)
 * when it could not go whole. */
static bool tcp_send(struct meshrelay *m, const struct relay_frame *f)
{
    uint8_t out[RELAY_STREAM_PREFIX + RELAY_FRAME_MAX];
    size_t len;
    if (relay_stream_encode(f, out, sizeof(out), &len) < 0)
        return false;
    if (api_stream_send_all(m->ts, out, len, 1000) == 0)
        return true;
    tcp_close(m, "cannot send");
    return false;
}

/* Open the TCP connection (the lock is let go meanwhile: it waits on the
 * network). */
static void tcp_open(struct meshrelay *m, int64_t now)
{
    m->tcp_retry_at = now + RELAY_HELLO_S * 1000;
    if (!m->cred || !m->url)
        return;
    _cleanup_free_ char *url = xstrdup(m->url);
    struct api_client *c = api_client_new(url, m->cred, m->ca_path);
    api_client_set_key_pin(c, m->key_pin);
    api_client_set_connect_timeout(c, 5);
    api_client_set_timeout(c, 10);
    struct api_reply rep;
    struct api_stream *st = NULL;
    pthread_mutex_unlock(&m->lock);
    int e = api_upgrade(c, "/v1/agent/relay", RELAY_UPGRADE_PROTOCOL, &rep,
                        &st);
    pthread_mutex_lock(&m->lock);
    if (e < 0) {
        _cleanup_free_ char *msg = api_reply_describe(&rep);
        log_warn("relay: no answer over UDP and none over TCP: %s", msg);
        api_reply_clear(&rep);
        api_client_free(c);
        return;
    }
    api_reply_clear(&rep);
    log_info("relay: no answer over UDP: frames go to the hub over TCP");
    m->tc = c;
    m->ts = st;
    m->tin_len = 0;
    m->hello_at = 0;
    m->udp_try_at = mono_ms() + RELAY_UDP_RETRY_S * 1000;
}

/* Hellos over the transport in use, and the choice of transport: UDP
 * until a hello goes unwelcomed RELAY_UDP_WAIT_MS, then TCP, with a
 * hello over UDP now and then to go back once it is welcomed. */
static void send_hello(struct meshrelay *m, int64_t now)
{
    if (m->hub_fd < 0 || !m->have_token)
        return;
    struct relay_frame f = { .type = RELAY_HELLO };
    memcpy(f.id, m->id, RELAY_ID_LEN);
    memcpy(f.token, m->token, RELAY_TOKEN_LEN);
    uint8_t out[RELAY_HELLO_LEN];
    size_t len;
    if (relay_encode(&f, out, sizeof(out), &len) < 0)
        return;
    if (m->unanswered && now - m->unanswered >= RELAY_UDP_WAIT_MS) {
        m->unanswered = 0;
        if (!m->ts && now >= m->tcp_retry_at)
            tcp_open(m, now);
        /* That UDP hello may have moved the registration to UDP: say it
         * again over TCP. */
        else if (m->ts)
            m->hello_at = 0;
        now = mono_ms();
    }
    /* Over TCP, a UDP try alone: a TCP hello with it would take the
     * registration back before the welcome. */
    bool udp = !m->ts || now >= m->udp_try_at;
    if (m->ts && udp && now >= m->hello_at - 1000)
        m->hello_at = now + 1000;
    if (now < m->hello_at && !(m->ts && udp))
        return;
    if (udp) {
        if (send(m->hub_fd, out, len, 0) < 0)
            log_debug("relay: hello: %s", strerror(errno));
        if (!m->unanswered)
            m->unanswered = now;
        if (m->ts)
            m->udp_try_at = now + RELAY_UDP_RETRY_S * 1000;
    }
    if (m->ts && now >= m->hello_at)
        tcp_send(m, &f);
    if (now >= m->hello_at)
        m->hello_at = now + RELAY_HELLO_S * 1000;
}

/* When the loop must run next for hellos and the transport choice. */
static int64_t hello_due(const struct meshrelay *m)
{
    int64_t t = m->hello_at;
    if (m->unanswered && m->unanswered + RELAY_UDP_WAIT_MS < t)
        t = m->unanswered + RELAY_UDP_WAIT_MS;
    if (m->ts && m->udp_try_at < t)
        t = m->udp_try_at;
    return t;
}

static struct mr_peer *peer_by_id(struct meshrelay *m, const uint8_t *id)
{
    for (size_t i = 0; i < MESHRELAY_PEERS_MAX; i++)
        if (m->peers[i].used && !m->peers[i].dead &&
            memcmp(m->peers[i].id, id, RELAY_ID_LEN) == 0)
            return &m->peers[i];
    return NULL;
}

/* A frame from the hub over either transport: one from a relayed peer
 * goes to WireGuard from that peer's local socket. A welcome over UDP
 * means UDP works: the TCP connection is let go. */
static void from_hub_frame(struct meshrelay *m, const uint8_t *pkt,
                           size_t len, bool udp)
{
    struct sockaddr_in wg = { .sin_family = AF_INET,
                              .sin_port = htons(m->wg_port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct relay_frame f;
    if (relay_decode(pkt, len, &f) < 0)
        return;
    if (f.type == RELAY_WELCOME && udp &&
        memcmp(f.id, m->id, RELAY_ID_LEN) == 0) {
        m->unanswered = 0;
        if (m->ts) {
            tcp_close(m, "UDP reaches the hub again");
            /* The hub forgets a node whose connection closed: say hello
             * over UDP again at once. */
            m->hello_at = 0;
        }
        return;
    }
    struct mr_peer *p = f.type == RELAY_DATA ? peer_by_id(m, f.id) : NULL;
    if (p && sendto(p->fd, f.payload, f.payload_len, 0,
                    (struct sockaddr *)&wg, sizeof(wg)) > 0)
        atomic_fetch_add(&m->in, 1);
}

static void from_hub(struct meshrelay *m)
{
    for (int i = 0; i < 64; i++) {
        uint8_t pkt[RELAY_FRAME_MAX + 1];
        ssize_t got = recv(m->hub_fd, pkt, sizeof(pkt), 0);
        if (got < 0)
            return;
        from_hub_frame(m, pkt, (size_t)got, true);
    }
}

/* Everything the TCP connection has now (TLS may hold bytes the socket
 * no longer shows: read until there are none). */
static void from_hub_tcp(struct meshrelay *m)
{
    while (m->ts) {
        ssize_t got = api_stream_recv(m->ts, m->tin + m->tin_len,
                                      sizeof(m->tin) - m->tin_len);
        if (got == -EAGAIN)
            return;
        if (got <= 0) {
            tcp_close(m, got == 0 ? "the hub hung up" : "cannot read");
            return;
        }
        m->tin_len += (size_t)got;
        size_t off = 0, frame, used;
        int r;
        while ((r = relay_stream_next(m->tin + off, m->tin_len - off, &frame,
                                      &used)) == 1) {
            from_hub_frame(m, m->tin + off + RELAY_STREAM_PREFIX, frame,
                           false);
            off += used;
        }
        if (r < 0) {
            tcp_close(m, "a frame of a bad length");
            return;
        }
        memmove(m->tin, m->tin + off, m->tin_len - off);
        m->tin_len -= off;
    }
}

/* What WireGuard sent to peer p's local socket goes to the hub for p. */
static void to_hub(struct meshrelay *m, struct mr_peer *p)
{
    for (int i = 0; i < 64; i++) {
        uint8_t payload[RELAY_PAYLOAD_MAX + 1];
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        ssize_t got = recvfrom(p->fd, payload, sizeof(payload), 0,
                               (struct sockaddr *)&from, &fl);
        if (got < 0)
            return;
        /* Only our WireGuard's port; nothing over what a frame holds. */
        if (from.sin_family != AF_INET || ntohs(from.sin_port) != m->wg_port ||
            got == 0 || got > RELAY_PAYLOAD_MAX || m->hub_fd < 0)
            continue;
        struct relay_frame f = { .type = RELAY_DATA, .payload = payload,
                                 .payload_len = (size_t)got };
        memcpy(f.id, p->id, RELAY_ID_LEN);
        uint8_t out[RELAY_FRAME_MAX];
        size_t len;
        if (m->ts ? tcp_send(m, &f)
                  : relay_encode(&f, out, sizeof(out), &len) == 0 &&
                        send(m->hub_fd, out, len, 0) == (ssize_t)len)
            atomic_fetch_add(&m->out, 1);
    }
}

static void *meshrelay_main(void *arg)
{
    struct meshrelay *m = arg;
    struct pollfd pf[MESHRELAY_PEERS_MAX + 3];
    struct mr_peer *who[MESHRELAY_PEERS_MAX + 3];
    pthread_mutex_lock(&m->lock);
    while (!m->stop) {
        for (size_t i = 0; i < MESHRELAY_PEERS_MAX; i++) {
            struct mr_peer *p = &m->peers[i];
            if (p->used && p->dead) {
                close(p->fd);
                *p = (struct mr_peer){ .fd = -1 };
            }
        }
        if (m->retarget) {
            m->retarget = false;
            tcp_close(m, "the hub's relay changed");
            m->unanswered = 0;
            m->tcp_retry_at = 0;
            hub_connect(m);
        }
        int64_t now = mono_ms();
        send_hello(m, now);
        nfds_t n = 0;
        pf[n] = (struct pollfd){ .fd = m->wake[0], .events = POLLIN };
        who[n++] = NULL;
        if (m->hub_fd >= 0) {
            pf[n] = (struct pollfd){ .fd = m->hub_fd, .events = POLLIN };
            who[n++] = NULL;
        }
        int tcp_fd = m->ts ? api_stream_fd(m->ts) : -1;
        if (tcp_fd >= 0) {
            pf[n] = (struct pollfd){ .fd = tcp_fd, .events = POLLIN };
            who[n++] = NULL;
        }
        for (size_t i = 0; i < MESHRELAY_PEERS_MAX; i++)
            if (m->peers[i].used) {
                pf[n] = (struct pollfd){ .fd = m->peers[i].fd,
                                         .events = POLLIN };
                who[n++] = &m->peers[i];
            }
        int64_t left = m->hub_fd >= 0 && m->have_token ? hello_due(m) - now
                                                       : 60000;
        pthread_mutex_unlock(&m->lock);
        int r = poll(pf, n, (int)(left < 0 ? 0 : left));
        pthread_mutex_lock(&m->lock);
        if (r <= 0)
            continue;
        if (pf[0].revents) {
            char b[64];
            while (read(m->wake[0], b, sizeof(b)) > 0)
                ;
        }
        for (nfds_t i = 1; i < n; i++) {
            /* A pending error (an ICMP unreachable from a hub that stopped
             * relaying) is taken by the next recv(): else poll() would
             * report it again at once, forever. */
            if (!(pf[i].revents & (POLLIN | POLLERR)))
                continue;
            if (!who[i] && pf[i].fd == m->hub_fd)
                from_hub(m);
            else if (!who[i] && pf[i].fd == tcp_fd && m->ts)
                from_hub_tcp(m);
            else if (who[i] && who[i]->used && !who[i]->dead &&
                     who[i]->fd == pf[i].fd)
                to_hub(m, who[i]);
        }
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

struct meshrelay *meshrelay_start(const char *node_id, uint16_t wg_port,
                                  const char *credential, const char *ca_path,
                                  const char *key_pin)
{
    struct meshrelay *m = xcalloc(1, sizeof(*m));
    m->cred = credential ? xstrdup(credential) : NULL;
    m->ca_path = ca_path ? xstrdup(ca_path) : NULL;
    m->key_pin = key_pin ? xstrdup(key_pin) : NULL;
    if (relay_id_parse(node_id, m->id) < 0) {
        log_error("relay: node id '%s' is no UUID", node_id);
        free(m);
        return NULL;
    }
    m->wg_port = wg_port;
    m->hub_fd = -1;
    for (size_t i = 0; i < MESHRELAY_PEERS_MAX; i++)
        m->peers[i].fd = -1;
    pthread_mutex_init(&m->lock, NULL);
    if (pipe2(m->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        log_error("relay: pipe: %s", strerror(errno));
        free(m);
        return NULL;
    }
    int e = pthread_create(&m->thread, NULL, meshrelay_main, m);
    if (e != 0) {
        log_error("relay: cannot start its thread: %s", strerror(e));
        close(m->wake[0]);
        close(m->wake[1]);
        free(m);
        return NULL;
    }
    return m;
}

void meshrelay_stop(struct meshrelay *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    m->stop = true;
    pthread_mutex_unlock(&m->lock);
    wake(m);
    pthread_join(m->thread, NULL);
    for (size_t i = 0; i < MESHRELAY_PEERS_MAX; i++)
        if (m->peers[i].used)
            close(m->peers[i].fd);
    if (m->hub_fd >= 0)
        close(m->hub_fd);
    api_stream_free(m->ts);
    api_client_free(m->tc);
    free(m->cred);
    free(m->ca_path);
    free(m->key_pin);
    close(m->wake[0]);
    close(m->wake[1]);
    pthread_mutex_destroy(&m->lock);
    free(m->url);
    free(m);
}

void meshrelay_target(struct meshrelay *m, const char *url, int port,
                      const char *token_hex)
{
    if (!m)
        return;
    uint8_t tok[RELAY_TOKEN_LEN];
    bool have = port > 0 && port < 65536 && token_hex &&
                strlen(token_hex) == RELAY_TOKEN_HEX &&
                hex_decode(token_hex, tok, sizeof(tok)) == 0;
    if (!have)
        port = 0;
    pthread_mutex_lock(&m->lock);
    bool moved = port != m->hub_port || !streq(url, m->url);
    if (moved) {
        free(m->url);
        m->url = url ? xstrdup(url) : NULL;
        m->hub_port = port;
        m->retarget = true;
        if (port)
            log_info("relay: the hub relays on UDP port %d", port);
    }
    /* A fresh token is said at once only when the registration is new;
     * otherwise with the next hello, well before the old one expires. */
    if (have && (!m->have_token || moved))
        m->hello_at = 0;
    m->have_token = have;
    if (have)
        memcpy(m->token, tok, sizeof(tok));
    pthread_mutex_unlock(&m->lock);
    wake(m);
}

/* A fresh local socket for a peer: 0 and its fd and port, or -errno. */
static int local_socket(int *ret_fd, uint16_t *ret_port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        int e = -errno;
        if (fd >= 0)
            close(fd);
        return e;
    }
    *ret_fd = fd;
    *ret_port = ntohs(sa.sin_port);
    return 0;
}

void meshrelay_sync(struct meshrelay *m, const char *const *ids, size_t n,
                    uint16_t *ret_ports)
{
    if (!m) {
        memset(ret_ports, 0, n * sizeof(*ret_ports));
        return;
    }
    pthread_mutex_lock(&m->lock);
    bool keep[MESHRELAY_PEERS_MAX] = { false };
    for (size_t k = 0; k < n; k++) {
        ret_ports[k] = 0;
        uint8_t id[RELAY_ID_LEN];
        if (relay_id_parse(ids[k], id) < 0)
            continue;
        struct mr_peer *p = peer_by_id(m, id);
        for (size_t i = 0; !p && i < MESHRELAY_PEERS_MAX; i++)
            if (!m->peers[i].used) {
                int fd = -1;
                uint16_t port = 0;
                int e = local_socket(&fd, &port);
                if (e < 0) {
                    log_warn("relay: no local socket for peer %s: %s", ids[k],
                             strerror(-e));
                    break;
                }
                p = &m->peers[i];
                *p = (struct mr_peer){ .used = true, .fd = fd, .port = port };
                memcpy(p->id, id, RELAY_ID_LEN);
                log_info("relay: peer %s through the hub, local port %u",
                         ids[k], (unsigned)port);
            }
        if (!p)
            continue;
        keep[p - m->peers] = true;
        ret_ports[k] = p->port;
    }
    for (size_t i = 0; i < MESHRELAY_PEERS_MAX; i++)
        if (m->peers[i].used && !keep[i])
            m->peers[i].dead = true;
    pthread_mutex_unlock(&m->lock);
    wake(m);
}

void meshrelay_counts(struct meshrelay *m, uint64_t *ret_out,
                      uint64_t *ret_in)
{
    *ret_out = m ? atomic_load(&m->out) : 0;
    *ret_in = m ? atomic_load(&m->in) : 0;
}

bool meshrelay_over_tcp(struct meshrelay *m)
{
    if (!m)
        return false;
    pthread_mutex_lock(&m->lock);
    bool tcp = m->ts != NULL;
    pthread_mutex_unlock(&m->lock);
    return tcp;
}
