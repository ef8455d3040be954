/* IPv4, MAC and port planning. Pure functions over plain values, so the
 * controller and the agent agree on the arithmetic and tests need no I/O. */
#include "netfabric/ipam.h"

#include "common/ids.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>

int ipam_addr_parse(const char *text, uint32_t *ret_addr)
{
    struct in_addr a;
    if (!text || strlen(text) >= IPAM_ADDR_STRLEN ||
        inet_pton(AF_INET, text, &a) != 1)
        return -EINVAL;
    *ret_addr = ntohl(a.s_addr);
    return 0;
}

void ipam_addr_format(uint32_t addr, char out[IPAM_ADDR_STRLEN])
{
    struct in_addr a = { htonl(addr) };
    if (!inet_ntop(AF_INET, &a, out, IPAM_ADDR_STRLEN))
        out[0] = '\0';
}

uint32_t ipam_mask(int prefix)
{
    if (prefix <= 0)
        return 0;
    if (prefix >= 32)
        return 0xffffffffu;
    return ~0u << (32 - prefix);
}

int ipam_cidr_parse(const char *text, bool strict, struct ipam_cidr *ret_cidr,
                    uint32_t *ret_addr)
{
    if (!text || strlen(text) > 18)
        return -EINVAL;
    char copy[19];
    memcpy(copy, text, strlen(text) + 1);
    char *slash = strchr(copy, '/');
    if (!slash)
        return -EINVAL;
    *slash = '\0';
    uint32_t addr;
    int64_t p;
    if (ipam_addr_parse(copy, &addr) < 0 || parse_int64(slash + 1, 0, 32, &p) < 0)
        return -EINVAL;
    uint32_t mask = ipam_mask((int)p);
    if (strict && (addr & ~mask) != 0)
        return -EINVAL;
    ret_cidr->net = addr & mask;
    ret_cidr->prefix = (int)p;
    if (ret_addr)
        *ret_addr = addr;
    return 0;
}

int ipam_cidr_list_parse(const char *text, struct ipam_cidr **ret_cidrs,
                         size_t *ret_n)
{
    struct ipam_cidr *v = NULL;
    size_t n = 0;
    for (const char *p = text ? text : ""; *p;) {
        p += strspn(p, " ");
        if (!*p && n == 0)
            break; /* blank */
        size_t len = strcspn(p, ", ");
        const char *q = p + len + strspn(p + len, " ");
        if (len == 0 || len > 18 || (*q && *q != ',') ||
            (*q == ',' && q[1 + strspn(q + 1, " ")] == '\0')) {
            free(v);
            return -EINVAL;
        }
        char one[19];
        memcpy(one, p, len);
        one[len] = '\0';
        v = xrealloc(v, (n + 1) * sizeof(*v));
        if (ipam_cidr_parse(one, true, &v[n], NULL) < 0) {
            free(v);
            return -EINVAL;
        }
        n++;
        p = *q ? q + 1 : q;
    }
    *ret_cidrs = v;
    *ret_n = n;
    return 0;
}

char *ipam_cidr_format(const struct ipam_cidr *c)
{
    char a[IPAM_ADDR_STRLEN];
    ipam_addr_format(c->net, a);
    return xasprintf("%s/%d", a, c->prefix);
}

bool ipam_cidr_contains(const struct ipam_cidr *c, uint32_t addr)
{
    return (addr & ipam_mask(c->prefix)) == c->net;
}

uint64_t ipam_host_count(const struct ipam_cidr *c)
{
    if (c->prefix >= 32)
        return 1;
    if (c->prefix == 31)
        return 2;
    return (UINT64_C(1) << (32 - c->prefix)) - 2;
}

int ipam_nth_host(const struct ipam_cidr *c, uint64_t n, uint32_t *ret_addr)
{
    if (n == 0 || n > ipam_host_count(c))
        return -ERANGE;
    /* /31 and /32 have no network or broadcast address (RFC 3021). */
    uint64_t off = c->prefix >= 31 ? n - 1 : n;
    *ret_addr = c->net + (uint32_t)off;
    return 0;
}

int ipam_gateway(const struct ipam_cidr *c, uint32_t *ret_addr)
{
    return ipam_nth_host(c, 1, ret_addr);
}

static bool addr_used(uint32_t a, const uint32_t *used, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (used[i] == a)
            return true;
    return false;
}

int ipam_next_free(const struct ipam_cidr *c, const uint32_t *used,
                   size_t n_used, uint32_t *ret_addr)
{
    uint64_t hosts = ipam_host_count(c);
    /* Host 1 is the gateway; start after it unless it is the only one. */
    for (uint64_t n = hosts > 1 ? 2 : 1; n <= hosts; n++) {
        uint32_t a;
        if (ipam_nth_host(c, n, &a) < 0)
            break;
        if (!addr_used(a, used, n_used)) {
            *ret_addr = a;
            return 0;
        }
    }
    return -ENOSPC;
}

int ipam_mac_parse(const char *text, uint8_t ret_mac[6])
{
    uint8_t mac[6];
    if (!text || strlen(text) != 17)
        return -EINVAL;
    for (int i = 0; i < 6; i++) {
        const char *p = text + 3 * i;
        if (i < 5 && p[2] != ':')
            return -EINVAL;
        char pair[3] = { p[0], p[1], '\0' };
        if (hex_decode(pair, &mac[i], 1) < 0)
            return -EINVAL;
    }
    memcpy(ret_mac, mac, 6);
    return 0;
}

void ipam_mac_format(const uint8_t mac[6], char out[IPAM_MAC_STRLEN])
{
    snprintf(out, IPAM_MAC_STRLEN, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0],
             mac[1], mac[2], mac[3], mac[4], mac[5]);
}

bool ipam_mac_is_local_unicast(const uint8_t mac[6])
{
    return (mac[0] & 0x01) == 0 && (mac[0] & 0x02) != 0;
}

void ipam_mac_derive(const void *seed, size_t seed_len, uint8_t ret_mac[6])
{
    uint8_t h[SHA256_LEN];
    sha256(seed, seed_len, h);
    ret_mac[0] = 0x52;
    ret_mac[1] = 0x54;
    ret_mac[2] = 0x00;
    memcpy(ret_mac + 3, h, 3);
}

static bool mac_used(const uint8_t mac[6], const uint8_t (*used)[6], size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(used[i], mac, 6) == 0)
            return true;
    return false;
}

int ipam_mac_alloc(const uint8_t (*used)[6], size_t n_used, uint8_t ret_mac[6])
{
    uint8_t mac[6] = { 0x52, 0x54, 0x00 };
    for (int tries = 0; tries < 4096; tries++) {
        random_bytes(mac + 3, 3);
        if (!mac_used(mac, used, n_used)) {
            memcpy(ret_mac, mac, 6);
            return 0;
        }
    }
    return -ENOSPC;
}

static bool port_used(uint16_t p, const uint16_t *used, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (used[i] == p)
            return true;
    return false;
}

int ipam_port_alloc(uint16_t lo, uint16_t hi, const uint16_t *used,
                    size_t n_used, uint16_t want)
{
    if (lo == 0 || lo > hi)
        return -EINVAL;
    if (want != 0) {
        if (want < lo || want > hi || port_used(want, used, n_used))
            return -EADDRINUSE;
        return want;
    }
    for (uint32_t p = lo; p <= hi; p++)
        if (!port_used((uint16_t)p, used, n_used))
            return (int)p;
    return -ENOSPC;
}
