/* Address policy for fetches on a tenant's behalf. Addresses are compared
 * as bytes in network order after one normalisation: an IPv4-mapped IPv6
 * address is its IPv4 address, so "::ffff:127.0.0.1" is never a way
 * around a rule written for 127.0.0.1. */
#include "images/addrpolicy.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>

struct net {
    int family;     /* AF_INET or AF_INET6 */
    uint8_t a[16];  /* 4 or 16 bytes used, host bits zero */
    unsigned prefix;
};

struct addrpolicy {
    struct net *allow;
    size_t n_allow;
    struct net *own;
    size_t n_own;
};

static const char *const class_names[ADDR_CLASS_MAX] = {
    [ADDR_PUBLIC] = "public",
    [ADDR_UNSPECIFIED] = "unspecified",
    [ADDR_LOOPBACK] = "loopback",
    [ADDR_PRIVATE] = "private",
    [ADDR_LINK_LOCAL] = "link-local",
    [ADDR_CGNAT] = "shared (CGNAT)",
    [ADDR_MULTICAST] = "multicast",
    [ADDR_BROADCAST] = "broadcast",
    [ADDR_UNIQUE_LOCAL] = "unique-local",
    [ADDR_RESERVED] = "reserved",
};

const char *addr_class_name(enum addr_class c)
{
    return c < ADDR_CLASS_MAX ? class_names[c] : "reserved";
}

static unsigned addr_len(int family)
{
    return family == AF_INET ? 4 : 16;
}

/* The address of `sa` as (family, bytes), IPv4-mapped IPv6 as IPv4.
 * false for other families or a short length. */
static bool addr_get(const struct sockaddr *sa, socklen_t len, int *family,
                     uint8_t out[16])
{
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                        0xff, 0xff };
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        *family = AF_INET;
        return true;
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(b, mapped, sizeof(mapped)) == 0) {
            memcpy(out, b + 12, 4);
            *family = AF_INET;
        } else {
            memcpy(out, b, 16);
            *family = AF_INET6;
        }
        return true;
    }
    return false;
}

/* The IPv4 address an IPv6 address carries (compatible ::/96 but :: and
 * ::1, NAT64 64:ff9b::/96, 6to4 2002::/16), or false. */
static bool v6_embedded_v4(const uint8_t b[16], uint8_t out[4])
{
    static const uint8_t zero[12] = { 0 };
    static const uint8_t nat64[12] = { 0, 0x64, 0xff, 0x9b };
    if (memcmp(b, zero, 12) == 0) {
        uint32_t v = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
                     (uint32_t)b[14] << 8 | b[15];
        if (v <= 1)
            return false;
        memcpy(out, b + 12, 4);
        return true;
    }
    if (memcmp(b, nat64, 12) == 0) {
        memcpy(out, b + 12, 4);
        return true;
    }
    if (b[0] == 0x20 && b[1] == 0x02) {
        memcpy(out, b + 2, 4);
        return true;
    }
    return false;
}

static bool v4_in(uint32_t v, uint32_t net, unsigned prefix)
{
    uint32_t mask = prefix ? 0xffffffffu << (32 - prefix) : 0;
    return (v & mask) == net;
}

static enum addr_class classify_v4(const uint8_t b[4])
{
    static const struct {
        uint32_t net;
        unsigned prefix;
        enum addr_class c;
    } table[] = {
        { 0x00000000, 8, ADDR_UNSPECIFIED },  /* "this network" */
        { 0x7f000000, 8, ADDR_LOOPBACK },
        { 0x0a000000, 8, ADDR_PRIVATE },
        { 0xac100000, 12, ADDR_PRIVATE },
        { 0xc0a80000, 16, ADDR_PRIVATE },
        { 0xa9fe0000, 16, ADDR_LINK_LOCAL },
        { 0x64400000, 10, ADDR_CGNAT },
        { 0xffffffff, 32, ADDR_BROADCAST },
        { 0xe0000000, 4, ADDR_MULTICAST },
        { 0xf0000000, 4, ADDR_RESERVED },
        { 0xc0000000, 24, ADDR_RESERVED },    /* IETF protocol assignments */
        { 0xc0000200, 24, ADDR_RESERVED },    /* TEST-NET-1 */
        { 0xc6336400, 24, ADDR_RESERVED },    /* TEST-NET-2 */
        { 0xcb007100, 24, ADDR_RESERVED },    /* TEST-NET-3 */
        { 0xc6120000, 15, ADDR_RESERVED },    /* benchmarking */
        { 0xc0586300, 24, ADDR_RESERVED },    /* 6to4 relay anycast */
    };
    uint32_t v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
                 (uint32_t)b[2] << 8 | b[3];
    for (size_t i = 0; i < ARRAY_SIZE(table); i++)
        if (v4_in(v, table[i].net, table[i].prefix))
            return table[i].c;
    return ADDR_PUBLIC;
}

static bool bytes_in(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, net, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

static enum addr_class classify_v6(const uint8_t b[16])
{
    static const uint8_t any[16] = { 0 };
    static const uint8_t one[16] = { [15] = 1 };
    static const struct {
        uint8_t net[16];
        unsigned prefix;
        enum addr_class c;
    } table[] = {
        { { 0xff }, 8, ADDR_MULTICAST },
        { { 0xfe, 0x80 }, 10, ADDR_LINK_LOCAL },
        { { 0xfe, 0xc0 }, 10, ADDR_PRIVATE },      /* old site-local */
        { { 0xfc }, 7, ADDR_UNIQUE_LOCAL },
        { { 0x20, 0x01, 0x0d, 0xb8 }, 32, ADDR_RESERVED }, /* docs */
        { { 0x01 }, 64, ADDR_RESERVED },           /* discard 100::/64 */
        { { 0, 0x64, 0xff, 0x9b, 0, 1 }, 48, ADDR_RESERVED }, /* local NAT64 */
    };
    uint8_t v4[4];
    if (memcmp(b, any, 16) == 0)
        return ADDR_UNSPECIFIED;
    if (memcmp(b, one, 16) == 0)
        return ADDR_LOOPBACK;
    if (v6_embedded_v4(b, v4))
        return classify_v4(v4);
    for (size_t i = 0; i < ARRAY_SIZE(table); i++)
        if (bytes_in(b, table[i].net, table[i].prefix))
            return table[i].c;
    return ADDR_PUBLIC;
}

enum addr_class addr_classify(const struct sockaddr *sa, socklen_t len)
{
    int family;
    uint8_t b[16];
    if (!addr_get(sa, len, &family, b))
        return ADDR_RESERVED;
    return family == AF_INET ? classify_v4(b) : classify_v6(b);
}

/* ---- the policy ---- */

static void net_mask(struct net *n)
{
    unsigned bits = addr_len(n->family) * 8;
    for (unsigned i = n->prefix; i < bits; i++)
        n->a[i / 8] &= (uint8_t)~(0x80 >> (i % 8));
}

/* One allow-list entry: "addr" or "addr/prefix". */
static int net_parse(const char *text, struct net *ret)
{
    struct net n = { 0 };
    _cleanup_free_ char *addr = xstrdup(text);
    char *slash = strchr(addr, '/');
    if (slash)
        *slash = '\0';
    if (inet_pton(AF_INET, addr, n.a) == 1) {
        n.family = AF_INET;
    } else if (inet_pton(AF_INET6, addr, n.a) == 1) {
        n.family = AF_INET6;
    } else {
        return -EINVAL;
    }
    int64_t prefix = addr_len(n.family) * 8;
    if (slash && parse_int64(slash + 1, 0, prefix, &prefix) < 0)
        return -EINVAL;
    n.prefix = (unsigned)prefix;
    /* "::ffff:a.b.c.d/p" with p >= 96 is the IPv4 range a.b.c.d/(p-96). */
    static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
    if (n.family == AF_INET6 && n.prefix >= 96 &&
        memcmp(n.a, mapped, sizeof(mapped)) == 0) {
        memmove(n.a, n.a + 12, 4);
        memset(n.a + 4, 0, 12);
        n.family = AF_INET;
        n.prefix -= 96;
    }
    net_mask(&n);
    *ret = n;
    return 0;
}

int addrpolicy_new(const char *allow, struct addrpolicy **ret,
                   char **ret_reason)
{
    struct addrpolicy *p = xcalloc(1, sizeof(*p));
    _cleanup_free_ char *copy = xstrdup(allow ? allow : "");
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t l = strlen(tok);
        while (l > 0 && (tok[l - 1] == ' ' || tok[l - 1] == '\t'))
            tok[--l] = '\0';
        if (l == 0)
            continue;
        struct net n;
        if (net_parse(tok, &n) < 0) {
            if (ret_reason)
                *ret_reason = xasprintf("'%s' is not an IPv4 or IPv6 address "
                                        "or CIDR range", tok);
            addrpolicy_free(p);
            return -EINVAL;
        }
        p->allow = xrealloc(p->allow, (p->n_allow + 1) * sizeof(*p->allow));
        p->allow[p->n_allow++] = n;
    }
    *ret = p;
    return 0;
}

void addrpolicy_free(struct addrpolicy *p)
{
    if (!p)
        return;
    free(p->allow);
    free(p->own);
    free(p);
}

static void own_add(struct addrpolicy *p, int family, const uint8_t *b)
{
    struct net n = { .family = family, .prefix = addr_len(family) * 8 };
    memcpy(n.a, b, addr_len(family));
    for (size_t i = 0; i < p->n_own; i++)
        if (p->own[i].family == family &&
            memcmp(p->own[i].a, n.a, addr_len(family)) == 0)
            return;
    p->own = xrealloc(p->own, (p->n_own + 1) * sizeof(*p->own));
    p->own[p->n_own++] = n;
}

void addrpolicy_add_own(struct addrpolicy *p, const struct sockaddr *sa,
                        socklen_t len)
{
    int family;
    uint8_t b[16];
    if (addr_get(sa, len, &family, b))
        own_add(p, family, b);
}

int addrpolicy_add_interfaces(struct addrpolicy *p)
{
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) < 0)
        return -errno;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr)
            continue;
        if (i->ifa_addr->sa_family == AF_INET)
            addrpolicy_add_own(p, i->ifa_addr, sizeof(struct sockaddr_in));
        else if (i->ifa_addr->sa_family == AF_INET6)
            addrpolicy_add_own(p, i->ifa_addr, sizeof(struct sockaddr_in6));
    }
    freeifaddrs(ifs);
    return 0;
}

void addrpolicy_add_listen(struct addrpolicy *p, const char *listen)
{
    if (!listen)
        return;
    _cleanup_free_ char *host = NULL;
    const char *colon = strrchr(listen, ':');
    if (listen[0] == '[') {
        const char *end = strchr(listen, ']');
        if (!end)
            return;
        host = xstrndup(listen + 1, (size_t)(end - listen - 1));
    } else {
        host = colon ? xstrndup(listen, (size_t)(colon - listen))
                     : xstrdup(listen);
    }
    uint8_t b[16] = { 0 }, zero[16] = { 0 };
    if (inet_pton(AF_INET, host, b) == 1) {
        if (memcmp(b, zero, 4) != 0)
            own_add(p, AF_INET, b);
    } else if (inet_pton(AF_INET6, host, b) == 1) {
        struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
        memcpy(&s6.sin6_addr, b, 16);
        if (memcmp(b, zero, 16) != 0)
            addrpolicy_add_own(p, (struct sockaddr *)&s6, sizeof(s6));
    }
}

static bool nets_contain(const struct net *nets, size_t n, int family,
                         const uint8_t *b, bool exact)
{
    for (size_t i = 0; i < n; i++)
        if (nets[i].family == family &&
            (!exact || nets[i].prefix == addr_len(family) * 8) &&
            bytes_in(b, nets[i].a, nets[i].prefix))
            return true;
    return false;
}

/* Is (family, b), or the IPv4 address it carries, one of the host's own? */
static bool is_own(const struct addrpolicy *p, int family, const uint8_t *b)
{
    uint8_t v4[4];
    if (nets_contain(p->own, p->n_own, family, b, true))
        return true;
    return family == AF_INET6 && v6_embedded_v4(b, v4) &&
           nets_contain(p->own, p->n_own, AF_INET, v4, true);
}

int addrpolicy_check(const struct addrpolicy *p, const struct sockaddr *sa,
                     socklen_t len, char **ret_why)
{
    int family;
    uint8_t b[16];
    char text[INET6_ADDRSTRLEN] = "?";
    if (!addr_get(sa, len, &family, b)) {
        if (ret_why)
            *ret_why = xstrdup("not an IP address");
        return -EACCES;
    }
    inet_ntop(family, b, text, sizeof(text));
    bool in_allow = nets_contain(p->allow, p->n_allow, family, b, false);
    enum addr_class c = family == AF_INET ? classify_v4(b) : classify_v6(b);
    if (c != ADDR_PUBLIC && !in_allow) {
        if (ret_why)
            *ret_why = xasprintf("%s is a %s address", text,
                                 addr_class_name(c));
        return -EACCES;
    }
    /* Only an allow-list entry naming this very address opens the host's
     * own: a range never does. */
    if (is_own(p, family, b) &&
        !nets_contain(p->allow, p->n_allow, family, b, true)) {
        if (ret_why)
            *ret_why = xasprintf("%s is an address of this host", text);
        return -EACCES;
    }
    return 0;
}

int addrpolicy_check_url(const struct addrpolicy *p, const char *url,
                         char **ret_why)
{
    CURLU *u = curl_url();
    char *host = NULL;
    if (!u)
        abort();
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host) {
        curl_url_cleanup(u);
        if (ret_why)
            *ret_why = xstrdup("the URL does not parse");
        return -EINVAL;
    }
    curl_url_cleanup(u);
    _cleanup_free_ char *h = xstrdup(host);
    curl_free(host);
    size_t l = strlen(h);
    int r = 0;
    if (l >= 2 && h[0] == '[' && h[l - 1] == ']') {
        h[l - 1] = '\0';
        struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
        if (inet_pton(AF_INET6, h + 1, &s6.sin6_addr) == 1)
            r = addrpolicy_check(p, (struct sockaddr *)&s6, sizeof(s6),
                                 ret_why);
    } else {
        /* inet_aton reads the old spellings too (2130706433, 0x7f.1). */
        struct sockaddr_in s4 = { .sin_family = AF_INET };
        if (inet_aton(h, &s4.sin_addr))
            r = addrpolicy_check(p, (struct sockaddr *)&s4, sizeof(s4),
                                 ret_why);
    }
    return r;
}
