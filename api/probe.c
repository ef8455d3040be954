/* The public address probe's packets (api/probe.h): a fixed 48-byte
 * layout, the same length both ways, and the NAT classification. */
#include "api/probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Offsets in a packet. */
enum {
    OFF_MAGIC = 0,      /* "FOGP" */
    OFF_VERSION = 4,
    OFF_TYPE = 5,
    OFF_RESPONDER = 6,  /* answers: which port answered */
    OFF_FAMILY = 7,     /* answers: 4 or 6 */
    OFF_TXID = 8,
    OFF_PORT = 24,      /* answers: big-endian */
    OFF_ADDR = 28,      /* answers: 4 or 16 bytes; the rest zero */
    OFF_END = 44,       /* zero padding up to PROBE_SIZE */
};

static const uint8_t magic[4] = { 'F', 'O', 'G', 'P' };

static bool zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

int probe_encode(const struct probe_msg *m, uint8_t out[PROBE_SIZE])
{
    memset(out, 0, PROBE_SIZE);
    memcpy(out + OFF_MAGIC, magic, sizeof(magic));
    out[OFF_VERSION] = PROBE_VERSION;
    memcpy(out + OFF_TXID, m->txid, PROBE_TXID_LEN);
    if (m->type == PROBE_REQUEST) {
        out[OFF_TYPE] = PROBE_REQUEST;
        return 0;
    }
    if (m->type != PROBE_ANSWER || m->responder >= PROBE_PORTS ||
        (m->family != AF_INET && m->family != AF_INET6))
        return -EINVAL;
    out[OFF_TYPE] = PROBE_ANSWER;
    out[OFF_RESPONDER] = m->responder;
    out[OFF_FAMILY] = m->family == AF_INET ? 4 : 6;
    out[OFF_PORT] = (uint8_t)(m->port >> 8);
    out[OFF_PORT + 1] = (uint8_t)m->port;
    memcpy(out + OFF_ADDR, m->addr, m->family == AF_INET ? 4 : 16);
    return 0;
}

int probe_decode(const uint8_t *data, size_t len, struct probe_msg *ret)
{
    if (!data || len != PROBE_SIZE ||
        memcmp(data + OFF_MAGIC, magic, sizeof(magic)) != 0 ||
        data[OFF_VERSION] != PROBE_VERSION)
        return -EBADMSG;
    struct probe_msg m = { .type = data[OFF_TYPE] };
    memcpy(m.txid, data + OFF_TXID, PROBE_TXID_LEN);
    if (m.type == PROBE_REQUEST) {
        if (!zero(data + OFF_RESPONDER, 2) ||
            !zero(data + OFF_PORT, PROBE_SIZE - OFF_PORT))
            return -EBADMSG;
        *ret = m;
        return 0;
    }
    if (m.type != PROBE_ANSWER || data[OFF_RESPONDER] >= PROBE_PORTS ||
        !zero(data + OFF_PORT + 2, 2) ||
        !zero(data + OFF_END, PROBE_SIZE - OFF_END))
        return -EBADMSG;
    size_t alen;
    if (data[OFF_FAMILY] == 4) {
        m.family = AF_INET;
        alen = 4;
    } else if (data[OFF_FAMILY] == 6) {
        m.family = AF_INET6;
        alen = 16;
    } else {
        return -EBADMSG;
    }
    if (!zero(data + OFF_ADDR + alen, 16 - alen))
        return -EBADMSG;
    m.responder = data[OFF_RESPONDER];
    m.port = (uint16_t)(data[OFF_PORT] << 8 | data[OFF_PORT + 1]);
    memcpy(m.addr, data + OFF_ADDR, alen);
    *ret = m;
    return 0;
}

static const char *const nat_names[PROBE_NAT_MAX] = {
    [PROBE_NAT_UNKNOWN] = "unknown",
    [PROBE_NAT_NONE] = "none",
    [PROBE_NAT_INDEPENDENT] = "endpoint-independent",
    [PROBE_NAT_DEPENDENT] = "endpoint-dependent",
};

const char *probe_nat_name(enum probe_nat n)
{
    return n >= 0 && n < PROBE_NAT_MAX ? nat_names[n] : "unknown";
}

int probe_nat_parse(const char *s, enum probe_nat *ret)
{
    for (int i = 0; s && i < PROBE_NAT_MAX; i++)
        if (strcmp(s, nat_names[i]) == 0) {
            *ret = (enum probe_nat)i;
            return 0;
        }
    return -EINVAL;
}

static bool ep_equal(const struct probe_ep *a, const struct probe_ep *b)
{
    return a->family && a->family == b->family && a->port == b->port &&
           memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

enum probe_nat probe_classify(const struct probe_ep *local,
                              const struct probe_ep mapped[PROBE_PORTS])
{
    const struct probe_ep *first = mapped[0].family ? &mapped[0] :
                                   mapped[1].family ? &mapped[1] : NULL;
    if (!first)
        return PROBE_NAT_UNKNOWN;
    if (local && ep_equal(local, first))
        return PROBE_NAT_NONE;
    if (!mapped[0].family || !mapped[1].family)
        return PROBE_NAT_UNKNOWN;
    return ep_equal(&mapped[0], &mapped[1]) ? PROBE_NAT_INDEPENDENT
                                            : PROBE_NAT_DEPENDENT;
}

int probe_ep_format(const struct probe_ep *e, char out[PROBE_EP_TEXT_MAX])
{
    char a[INET6_ADDRSTRLEN];
    if (!e->family || !inet_ntop(e->family, e->addr, a, sizeof(a)))
        return -EINVAL;
    int n = snprintf(out, PROBE_EP_TEXT_MAX,
                     e->family == AF_INET6 ? "[%s]:%u" : "%s:%u", a,
                     (unsigned)e->port);
    return n > 0 && n < PROBE_EP_TEXT_MAX ? 0 : -EINVAL;
}

int probe_ep_parse(const char *s, struct probe_ep *ret)
{
    if (!s || strlen(s) >= PROBE_EP_TEXT_MAX)
        return -EINVAL;
    struct probe_ep e = { 0 };
    char host[INET6_ADDRSTRLEN + 1];
    const char *port;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
            return -EINVAL;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        e.family = AF_INET6;
        port = end + 2;
    } else {
        const char *colon = strchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof(host))
            return -EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        e.family = AF_INET;
        port = colon + 1;
    }
    if (inet_pton(e.family, host, e.addr) != 1)
        return -EINVAL;
    unsigned v = 0;
    size_t n = strlen(port);
    if (n == 0 || n > 5 || port[0] == '0')
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (port[i] < '0' || port[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(port[i] - '0');
    }
    if (v > 65535)
        return -EINVAL;
    e.port = (uint16_t)v;
    *ret = e;
    return 0;
}
