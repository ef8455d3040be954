/* Network resource allocation for the controller. */
#include "controller/netalloc.h"

#include "common/ids.h"
#include "common/jsonutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>

static char *ip_text(uint32_t ip)
{
    struct in_addr a = { htonl(ip) };
    char t[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, t, sizeof(t));
    return xstrdup(t);
}

int netalloc_parse_cidr(const char *text, uint32_t *ret_net, int *ret_prefix)
{
    if (!text || strlen(text) > 18)
        return -EINVAL;
    _cleanup_free_ char *copy = xstrdup(text);
    char *slash = strchr(copy, '/');
    struct in_addr a;
    int64_t p;
    if (!slash)
        return -EINVAL;
    *slash = '\0';
    if (inet_pton(AF_INET, copy, &a) != 1 ||
        parse_int64(slash + 1, 16, 29, &p) < 0)
        return -EINVAL;
    uint32_t ip = ntohl(a.s_addr), mask = ~0u << (32 - p);
    if ((ip & ~mask) != 0)
        return -EINVAL;
    *ret_net = ip;
    *ret_prefix = (int)p;
    return 0;
}

bool netalloc_cidr_taken(struct store *s, uint32_t net, int prefix)
{
    json_auto_t *rows = NULL;
    size_t i;
    json_t *row;
    if (store_lock(s, "networks", NULL) < 0 ||
        store_query(s, &rows, "SELECT cidr FROM networks WHERE deleted_at IS "
                              "NULL", "") < 0)
        return true;
    json_array_foreach(rows, i, row) {
        uint32_t n2;
        int p2;
        if (netalloc_parse_cidr(json_str(row, "cidr"), &n2, &p2) < 0)
            continue;
        int p = prefix < p2 ? prefix : p2;
        uint32_t mask = ~0u << (32 - p);
        if ((net & mask) == (n2 & mask))
            return true;
    }
    return false;
}

int64_t netalloc_next_vxlan(struct store *s)
{
    return store_query_int(s, 999, "SELECT MAX(vxlan_id) FROM networks", "") + 1;
}

char *netalloc_default_cidr(struct store *s)
{
    uint32_t base = (10u << 24) | (128u << 16);
    for (uint32_t k = 0; k < 32768; k++) {
        uint32_t net = base + (k << 8);
        if (!netalloc_cidr_taken(s, net, 24)) {
            _cleanup_free_ char *ip = ip_text(net);
            return xasprintf("%s/24", ip);
        }
    }
    return NULL;
}

char *netalloc_gateway(uint32_t net) { return ip_text(net + 1); }

char *netalloc_address(struct store *s, const char *network_id)
{
    json_auto_t *nw = NULL, *used = NULL;
    uint32_t net;
    int prefix;
    if (store_lock(s, "network", network_id) < 0 ||
        store_query_one(s, &nw, "SELECT cidr FROM networks WHERE id = $1", "s",
                        network_id) < 0 ||
        netalloc_parse_cidr(json_str(nw, "cidr"), &net, &prefix) < 0 ||
        store_query(s, &used, "SELECT address FROM vm_nics WHERE network_id = $1",
                    "s", network_id) < 0)
        return NULL;
    uint32_t size = 1u << (32 - prefix);
    /* .0 network, .1 gateway, last broadcast. */
    for (uint32_t off = 2; off + 1 < size; off++) {
        _cleanup_free_ char *cand = ip_text(net + off);
        bool taken = false;
        size_t i;
        json_t *row;
        json_array_foreach(used, i, row)
            if (streq(json_str(row, "address"), cand)) {
                taken = true;
                break;
            }
        if (!taken)
            return TAKE_PTR(cand);
    }
    return NULL;
}

char *netalloc_mac(struct store *s)
{
    for (;;) {
        uint8_t b[3];
        random_bytes(b, sizeof(b));
        /* 52:54:00 is QEMU's own prefix; keep it so guests look familiar. */
        char *mac = xasprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]);
        if (store_query_int(s, 0, "SELECT COUNT(*) FROM vm_nics WHERE mac = $1",
                            "s", mac) == 0)
            return mac;
        free(mac);
    }
}

int64_t netalloc_host_port(struct store *s, const char *node_id,
                           const char *proto, int64_t want)
{
    json_auto_t *node = NULL, *used = NULL;
    if (store_lock(s, "node", node_id) < 0 ||
        store_query_one(s, &node, "SELECT port_min, port_max FROM nodes WHERE "
                                  "id = $1", "s", node_id) < 0 ||
        store_query(s, &used, "SELECT host_port FROM ports WHERE node_id = $1 "
                              "AND proto = $2 AND host_port IS NOT NULL "
                              "ORDER BY host_port", "ss", node_id, proto) < 0)
        return -EIO;
    int64_t lo = json_int(node, "port_min", 20000), hi = json_int(node, "port_max", 29999);
    size_t n = json_array_size(used);
    bool want_free = want >= lo && want <= hi;
    for (size_t i = 0; want_free && i < n; i++)
        if (json_int(json_array_get(used, i), "host_port", 0) == want)
            want_free = false;
    if (want_free)
        return want;
    /* Lowest gap in the sorted list. */
    int64_t cand = lo;
    for (size_t i = 0; i < n && cand <= hi; i++) {
        int64_t p = json_int(json_array_get(used, i), "host_port", 0);
        if (p < cand)
            continue;
        if (p > cand)
            break;
        cand = p + 1;
    }
    return cand <= hi ? cand : -ENOSPC;
}
