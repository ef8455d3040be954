/* Probing from the WireGuard port (nodeagent/natprobe.h).
 *
 * The mapping that matters is the one a NAT gives WireGuard's own socket,
 * so the requests must leave from that port while WireGuard (kernel or
 * wireguard-go) holds it. A raw IPPROTO_UDP socket does that: we write
 * the UDP header ourselves with the WireGuard port as source, and the same
 * raw socket receives a copy of every UDP datagram the host takes in,
 * including the answers to that port (WireGuard gets them too and drops
 * them: "FOGP" is no WireGuard message type). One path serves before and
 * after the interface is up, and the NAT sees exactly WireGuard's
 * 5-tuple source. It needs CAP_NET_RAW, which the agent has (it already
 * drives netlink and nftables). */
#include "nodeagent/natprobe.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define ROUND_TIMEOUT_MS 3000
#define RESEND_MS 1000

struct natprobe {
    uint16_t wg_port;
    int64_t interval_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    char *url;              /* (lock) */
    int port;               /* (lock) */
    bool target_new;        /* (lock) */
    bool have;              /* (lock) a round finished */
    enum probe_nat nat;     /* (lock) */
    char mapped[PROBE_EP_TEXT_MAX]; /* (lock) */
};

/* The UDP checksum over the IPv4 pseudo-header. */
static uint16_t udp_sum(uint32_t src, uint32_t dst, const uint8_t *udp,
                        size_t len)
{
    uint32_t sum = 0;
    const uint8_t *s = (const uint8_t *)&src, *d = (const uint8_t *)&dst;
    sum += (uint32_t)(s[0] << 8 | s[1]) + (uint32_t)(s[2] << 8 | s[3]);
    sum += (uint32_t)(d[0] << 8 | d[1]) + (uint32_t)(d[2] << 8 | d[3]);
    sum += IPPROTO_UDP + (uint32_t)len;
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += (uint32_t)(udp[i] << 8 | udp[i + 1]);
    if (len & 1)
        sum += (uint32_t)(udp[len - 1] << 8);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    uint16_t r = (uint16_t)~sum;
    return r ? r : 0xffff;
}

/* Our address towards hub: what the kernel's route picks. */
static int local_addr(uint32_t hub, uint16_t port, uint32_t *ret)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr.s_addr = hub };
    socklen_t sl = sizeof(sa);
    int e = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &sl) < 0 ? -errno : 0;
    close(fd);
    if (e == 0)
        *ret = sa.sin_addr.s_addr;
    return e;
}

static int send_req(int fd, uint32_t src, uint32_t hub, uint16_t sport,
                    uint16_t dport, const uint8_t txid[PROBE_TXID_LEN])
{
    uint8_t pkt[sizeof(struct udphdr) + PROBE_SIZE];
    struct probe_msg m = { .type = PROBE_REQUEST };
    memcpy(m.txid, txid, PROBE_TXID_LEN);
    if (probe_encode(&m, pkt + sizeof(struct udphdr)) < 0)
        return -EINVAL;
    struct udphdr h = { .source = htons(sport), .dest = htons(dport),
                        .len = htons(sizeof(pkt)), .check = 0 };
    memcpy(pkt, &h, sizeof(h));
    h.check = htons(udp_sum(src, hub, pkt, sizeof(pkt)));
    memcpy(pkt, &h, sizeof(h));
    struct sockaddr_in to = { .sin_family = AF_INET,
                              .sin_addr.s_addr = hub };
    return sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&to,
                  sizeof(to)) == (ssize_t)sizeof(pkt) ? 0 : -errno;
}

/* Take one datagram off the raw socket; fill ret_mapped[i] when it is
 * responder i's answer to our request. */
static void read_answer(int fd, uint32_t hub, uint16_t probe_port,
                        uint16_t wg_port,
                        uint8_t txids[PROBE_PORTS][PROBE_TXID_LEN],
                        struct probe_ep ret_mapped[PROBE_PORTS])
{
    uint8_t pkt[2048];
    ssize_t n = recv(fd, pkt, sizeof(pkt), MSG_DONTWAIT);
    if (n < (ssize_t)sizeof(struct iphdr))
        return;
    struct iphdr ip;
    memcpy(&ip, pkt, sizeof(ip));
    size_t ihl = (size_t)ip.ihl * 4;
    if (ip.version != 4 || ihl < sizeof(ip) || ip.protocol != IPPROTO_UDP ||
        ip.saddr != hub ||
        (size_t)n != ihl + sizeof(struct udphdr) + PROBE_SIZE)
        return;
    struct udphdr u;
    memcpy(&u, pkt + ihl, sizeof(u));
    int which = ntohs(u.source) - probe_port;
    struct probe_msg m;
    if (ntohs(u.dest) != wg_port || which < 0 || which >= PROBE_PORTS ||
        probe_decode(pkt + ihl + sizeof(u), PROBE_SIZE, &m) < 0 ||
        m.type != PROBE_ANSWER || m.responder != which ||
        memcmp(m.txid, txids[which], PROBE_TXID_LEN) != 0)
        return;
    ret_mapped[which] = (struct probe_ep){ .family = m.family,
                                           .port = m.port };
    memcpy(ret_mapped[which].addr, m.addr, sizeof(m.addr));
}

int natprobe_round(uint32_t hub, uint16_t probe_port, uint16_t wg_port,
                   int timeout_ms, struct probe_ep *ret_local,
                   struct probe_ep ret_mapped[PROBE_PORTS])
{
    uint32_t src = 0;
    int e = local_addr(hub, probe_port, &src);
    if (e < 0)
        return e;
    int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP);
    if (fd < 0)
        return -errno;
    struct sockaddr_in me = { .sin_family = AF_INET, .sin_addr.s_addr = src };
    if (bind(fd, (struct sockaddr *)&me, sizeof(me)) < 0) {
        e = -errno;
        close(fd);
        return e;
    }
    uint8_t txids[PROBE_PORTS][PROBE_TXID_LEN];
    if (getrandom(txids, sizeof(txids), 0) != (ssize_t)sizeof(txids)) {
        close(fd);
        return -EIO;
    }
    struct probe_ep mapped[PROBE_PORTS] = { 0 };
    int64_t end = mono_ms() + timeout_ms, next_send = 0;
    int sent = 0;
    for (;;) {
        int64_t now = mono_ms();
        bool all = true;
        for (int i = 0; i < PROBE_PORTS; i++)
            all = all && mapped[i].family;
        if (all || now >= end)
            break;
        if (now >= next_send) {
            for (int i = 0; i < PROBE_PORTS; i++)
                if (!mapped[i].family &&
                    (e = send_req(fd, src, hub, wg_port,
                                  (uint16_t)(probe_port + i), txids[i])) == 0)
                    sent++;
            next_send = now + RESEND_MS;
        }
        int64_t wait = (next_send < end ? next_send : end) - now;
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        if (poll(&pf, 1, (int)(wait > 0 ? wait : 0)) > 0)
            read_answer(fd, hub, probe_port, wg_port, txids, mapped);
    }
    close(fd);
    if (sent == 0)
        return e < 0 ? e : -EIO;
    *ret_local = (struct probe_ep){ .family = AF_INET, .port = wg_port };
    memcpy(ret_local->addr, &src, 4);
    memcpy(ret_mapped, mapped, sizeof(mapped));
    return 0;
}

int natprobe_url_ipv4(const char *url, uint32_t *ret)
{
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    if (*h == '[')
        return -EAFNOSUPPORT;
    size_t n = strcspn(h, ":/");
    _cleanup_free_ char *host = xstrndup(h, n);
    struct addrinfo hints = { .ai_family = AF_INET,
                              .ai_socktype = SOCK_DGRAM };
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return -EADDRNOTAVAIL;
    *ret = ((const struct sockaddr_in *)res->ai_addr)->sin_addr.s_addr;
    freeaddrinfo(res);
    return 0;
}

static void *natprobe_main(void *arg)
{
    struct natprobe *np = arg;
    int64_t next = 0;
    pthread_mutex_lock(&np->lock);
    for (;;) {
        while (!np->stop && !np->target_new &&
               (!np->port || !np->url || mono_ms() < next)) {
            if (!np->port || !np->url || next == 0) {
                pthread_cond_wait(&np->cond, &np->lock);
                continue;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t left = next - mono_ms();
            ts.tv_sec += left / 1000;
            ts.tv_nsec += (left % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&np->cond, &np->lock, &ts);
        }
        if (np->stop)
            break;
        np->target_new = false;
        _cleanup_free_ char *url = xstrdup(np->url);
        int port = np->port;
        pthread_mutex_unlock(&np->lock);

        uint32_t hub;
        struct probe_ep local = { 0 }, mapped[PROBE_PORTS] = { 0 };
        int e = natprobe_url_ipv4(url, &hub);
        if (e == 0)
            e = natprobe_round(hub, (uint16_t)port, np->wg_port,
                               ROUND_TIMEOUT_MS, &local, mapped);
        enum probe_nat nat = probe_classify(&local, mapped);
        char text[PROBE_EP_TEXT_MAX] = "";
        if (probe_ep_format(&mapped[0], text) < 0 &&
            probe_ep_format(&mapped[1], text) < 0)
            text[0] = '\0';
        if (e < 0)
            log_warn("address probe of %s port %d failed: %s", url, port,
                     strerror(-e));
        else
            log_debug("address probe: NAT %s, mapped %s", probe_nat_name(nat),
                      *text ? text : "-");

        pthread_mutex_lock(&np->lock);
        if (e == 0) {
            if (!np->have || np->nat != nat || !streq(np->mapped, text))
                log_info("address probe from UDP port %u: NAT %s, mapped "
                         "endpoint %s", (unsigned)np->wg_port,
                         probe_nat_name(nat), *text ? text : "none");
            np->have = true;
            np->nat = nat;
            memcpy(np->mapped, text, sizeof(text));
        }
        next = mono_ms() + np->interval_ms;
    }
    pthread_mutex_unlock(&np->lock);
    return NULL;
}

struct natprobe *natprobe_start(uint16_t wg_port, int64_t interval_s)
{
    struct natprobe *np = xcalloc(1, sizeof(*np));
    np->wg_port = wg_port;
    np->interval_ms = interval_s * 1000;
    pthread_mutex_init(&np->lock, NULL);
    pthread_cond_init(&np->cond, NULL);
    if (pthread_create(&np->thread, NULL, natprobe_main, np) != 0) {
        log_warn("address probe: cannot start its thread");
        free(np);
        return NULL;
    }
    return np;
}

void natprobe_stop(struct natprobe *np)
{
    if (!np)
        return;
    pthread_mutex_lock(&np->lock);
    np->stop = true;
    pthread_cond_signal(&np->cond);
    pthread_mutex_unlock(&np->lock);
    pthread_join(np->thread, NULL);
    free(np->url);
    free(np);
}

void natprobe_target(struct natprobe *np, const char *url, int port)
{
    if (!np)
        return;
    pthread_mutex_lock(&np->lock);
    if (port != np->port || !np->url || !streq(np->url, url)) {
        free(np->url);
        np->url = xstrdup(url);
        np->port = port;
        np->target_new = port > 0;
        pthread_cond_signal(&np->cond);
    }
    pthread_mutex_unlock(&np->lock);
}

bool natprobe_result(struct natprobe *np, enum probe_nat *ret_nat,
                     char ret_mapped[PROBE_EP_TEXT_MAX])
{
    if (!np)
        return false;
    pthread_mutex_lock(&np->lock);
    bool have = np->have;
    if (have) {
        *ret_nat = np->nat;
        memcpy(ret_mapped, np->mapped, PROBE_EP_TEXT_MAX);
    }
    pthread_mutex_unlock(&np->lock);
    return have;
}
