/* Answering nodes' public address probes (controller/probe.h). One
 * thread polls both sockets and a pipe that stops it; answers are sent
 * from the socket the request reached, so a NAT that maps per
 * destination shows a different source on each. */
#include "controller/probe.h"
#include "api/probe.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "controller/ratelimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Source addresses whose buckets are kept. */
#define PROBE_KEYS 65536

struct probe_server {
    int fds[PROBE_PORTS];
    int stop_pipe[2];
    pthread_t thread;
    struct ratelimit *rl;
    atomic_uint_fast64_t answered, dropped;
};

/* The host part of "ADDR:PORT" or "[V6]:PORT" (caller frees); NULL when
 * there is none. */
static char *listen_host(const char *listen)
{
    if (listen[0] == '[') {
        const char *end = strchr(listen, ']');
        return end ? xstrndup(listen + 1, (size_t)(end - listen - 1)) : NULL;
    }
    const char *colon = strrchr(listen, ':');
    return colon ? xstrndup(listen, (size_t)(colon - listen)) : NULL;
}

static int bind_udp(const char *host, int port, int *ret_fd)
{
    if (port < 1 || port > 65535)
        return -EINVAL;
    char service[12];
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints = { .ai_socktype = SOCK_DGRAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    int g = getaddrinfo(*host ? host : NULL, service, &hints, &res);
    if (g != 0) {
        log_error("cannot resolve '%s': %s", host, gai_strerror(g));
        return -EADDRNOTAVAIL;
    }
    int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    0);
    int e = fd < 0 ? -errno : 0;
    if (fd >= 0 && bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
        e = -errno;
        close(fd);
    }
    freeaddrinfo(res);
    if (e < 0) {
        log_error("cannot bind UDP %s port %d: %s", host, port,
                  strerror(-e));
        return e;
    }
    *ret_fd = fd;
    return 0;
}

int probe_udp_bind(const char *listen, int port, int *ret_fd)
{
    _cleanup_free_ char *host = listen_host(listen);
    if (!host) {
        log_error("no address in '%s'", listen);
        return -EINVAL;
    }
    return bind_udp(host, port, ret_fd);
}

/* Answer one request waiting on socket `which`, or drop it. */
static void serve_one(struct probe_server *p, int which)
{
    uint8_t pkt[PROBE_SIZE + 1];
    struct sockaddr_storage from;
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(p->fds[which], pkt, sizeof(pkt), 0,
                         (struct sockaddr *)&from, &fl);
    if (n < 0)
        return;
    struct probe_msg m;
    struct probe_msg ans = { .type = PROBE_ANSWER,
                             .responder = (uint8_t)which };
    char key[INET6_ADDRSTRLEN] = "";
    if (from.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&from;
        ans.family = AF_INET;
        memcpy(ans.addr, &s->sin_addr, 4);
        ans.port = ntohs(s->sin_port);
    } else if (from.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&from;
        ans.family = AF_INET6;
        memcpy(ans.addr, &s->sin6_addr, 16);
        ans.port = ntohs(s->sin6_port);
    }
    int64_t retry;
    if (!ans.family || ans.port == 0 ||
        probe_decode(pkt, (size_t)n, &m) < 0 || m.type != PROBE_REQUEST ||
        !inet_ntop(ans.family, ans.addr, key, sizeof(key)) ||
        !ratelimit_take(p->rl, key, mono_ms(), &retry)) {
        atomic_fetch_add(&p->dropped, 1);
        return;
    }
    memcpy(ans.txid, m.txid, PROBE_TXID_LEN);
    uint8_t out[PROBE_SIZE];
    if (probe_encode(&ans, out) == 0 &&
        sendto(p->fds[which], out, sizeof(out), 0, (struct sockaddr *)&from,
               fl) == (ssize_t)sizeof(out))
        atomic_fetch_add(&p->answered, 1);
    else
        atomic_fetch_add(&p->dropped, 1);
}

static void *probe_main(void *arg)
{
    struct probe_server *p = arg;
    struct pollfd pf[PROBE_PORTS + 1];
    for (int i = 0; i < PROBE_PORTS; i++)
        pf[i] = (struct pollfd){ .fd = p->fds[i], .events = POLLIN };
    pf[PROBE_PORTS] = (struct pollfd){ .fd = p->stop_pipe[0],
                                       .events = POLLIN };
    for (;;) {
        if (poll(pf, PROBE_PORTS + 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("probe: poll: %s", strerror(errno));
            break;
        }
        if (pf[PROBE_PORTS].revents)
            break;
        for (int i = 0; i < PROBE_PORTS; i++)
            if (pf[i].revents & POLLIN)
                serve_one(p, i);
    }
    return NULL;
}

int probe_server_start(const char *listen, int port,
                       struct probe_server **ret)
{
    if (port < 1 || port > 65534)
        return -EINVAL;
    _cleanup_free_ char *host = listen_host(listen);
    if (!host) {
        log_error("probe: no address in '%s'", listen);
        return -EINVAL;
    }
    struct probe_server *p = xcalloc(1, sizeof(*p));
    p->fds[0] = p->fds[1] = p->stop_pipe[0] = p->stop_pipe[1] = -1;
    int e = 0;
    for (int i = 0; i < PROBE_PORTS && e == 0; i++)
        e = bind_udp(host, port + i, &p->fds[i]);
    if (e == 0 && pipe2(p->stop_pipe, O_CLOEXEC) < 0)
        e = -errno;
    if (e == 0) {
        p->rl = ratelimit_new(PROBE_RATE, PROBE_BURST, PROBE_KEYS);
        if ((e = -pthread_create(&p->thread, NULL, probe_main, p)) < 0)
            log_error("probe: cannot start its thread: %s", strerror(-e));
    }
    if (e < 0) {
        for (int i = 0; i < PROBE_PORTS; i++)
            if (p->fds[i] >= 0)
                close(p->fds[i]);
        if (p->stop_pipe[0] >= 0) {
            close(p->stop_pipe[0]);
            close(p->stop_pipe[1]);
        }
        ratelimit_free(p->rl);
        free(p);
        return e;
    }
    log_info("answering address probes on UDP ports %d and %d", port,
             port + 1);
    *ret = p;
    return 0;
}

void probe_server_stop(struct probe_server *p)
{
    if (!p)
        return;
    if (write(p->stop_pipe[1], "x", 1) != 1)
        log_warn("probe: cannot wake its thread");
    pthread_join(p->thread, NULL);
    for (int i = 0; i < PROBE_PORTS; i++)
        close(p->fds[i]);
    close(p->stop_pipe[0]);
    close(p->stop_pipe[1]);
    ratelimit_free(p->rl);
    free(p);
}

void probe_server_counts(struct probe_server *p, uint64_t *ret_answered,
                         uint64_t *ret_dropped)
{
    *ret_answered = p ? atomic_load(&p->answered) : 0;
    *ret_dropped = p ? atomic_load(&p->dropped) : 0;
}
