/* Network resource allocation for the controller. */
#include "controller/netalloc.h"

#include "common/buf.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "netfabric/ipam.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>

static int cidr_parse(const char *text, int min, int max, uint32_t *ret_net,
                      int *ret_prefix);

static char *ip_text(uint32_t ip)
{
    struct in_addr a = { htonl(ip) };
    char t[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, t, sizeof(t));
    return xstrdup(t);
}

int netalloc_parse_cidr(const char *text, uint32_t *ret_net, int *ret_prefix)
{
    return cidr_parse(text, 16, 29, ret_net, ret_prefix);
}

/* Any IPv4 range "a.b.c.d/p" with p in [min, max] and no host bits. */
static int cidr_parse(const char *text, int min, int max, uint32_t *ret_net,
                      int *ret_prefix)
{
    struct ipam_cidr c;
    if (ipam_cidr_parse(text, true, &c, NULL) < 0 || c.prefix < min ||
        c.prefix > max)
        return -EINVAL;
    *ret_net = c.net;
    *ret_prefix = c.prefix;
    return 0;
}

static bool cidr_overlap(uint32_t n1, int p1, uint32_t n2, int p2)
{
    uint32_t mask = ipam_mask(p1 < p2 ? p1 : p2);
    return (n1 & mask) == (n2 & mask);
}

static bool cidr_inside(uint32_t net, int prefix, uint32_t pool, int pool_prefix)
{
    return prefix >= pool_prefix && cidr_overlap(net, prefix, pool, pool_prefix);
}

/* The live networks' ranges, loaded once for a scan. */
struct net_ranges {
    size_t n;
    uint32_t *net;
    int *prefix;
};

static int ranges_load(struct store *s, struct net_ranges *ret)
{
    json_auto_t *rows = NULL;
    size_t i;
    json_t *row;
    if (store_lock(s, "networks", NULL) < 0 ||
        store_query(s, &rows, "SELECT cidr FROM networks WHERE deleted_at IS "
                              "NULL", "") < 0)
        return -EIO;
    size_t n = json_array_size(rows);
    ret->n = 0;
    ret->net = xcalloc(n + 1, sizeof(uint32_t));
    ret->prefix = xcalloc(n + 1, sizeof(int));
    json_array_foreach(rows, i, row)
        if (cidr_parse(json_str(row, "cidr"), 0, 32, &ret->net[ret->n],
                       &ret->prefix[ret->n]) == 0)
            ret->n++;
    return 0;
}

static void ranges_clear(struct net_ranges *r)
{
    free(r->net);
    free(r->prefix);
}

static bool ranges_overlap(const struct net_ranges *r, uint32_t net, int prefix)
{
    for (size_t i = 0; i < r->n; i++)
        if (cidr_overlap(net, prefix, r->net[i], r->prefix[i]))
            return true;
    return false;
}

bool netalloc_cidr_taken(struct store *s, uint32_t net, int prefix)
{
    struct net_ranges r;
    if (ranges_load(s, &r) < 0)
        return true;
    bool taken = ranges_overlap(&r, net, prefix);
    ranges_clear(&r);
    return taken;
}

/* Default networks come from here; tenants' own ranges never do. */
#define DEFAULT_POOL_NET ((10u << 24) | (128u << 16))
#define DEFAULT_POOL_PREFIX 9

int netalloc_cidr_allowed(const char *pools, const char *mesh, uint32_t net,
                          int prefix)
{
    uint32_t mnet, pnet;
    int mprefix, pprefix;
    if (cidr_parse(mesh, 0, 32, &mnet, &mprefix) < 0)
        return -EINVAL;
    if (cidr_overlap(net, prefix, mnet, mprefix))
        return -EADDRNOTAVAIL;
    if (cidr_overlap(net, prefix, DEFAULT_POOL_NET, DEFAULT_POOL_PREFIX))
        return -EPERM;
    _cleanup_free_ char *copy = xstrdup(pools ? pools : "");
    char *save = NULL;
    for (char *t = strtok_r(copy, ", ", &save); t;
         t = strtok_r(NULL, ", ", &save)) {
        if (cidr_parse(t, 0, 32, &pnet, &pprefix) < 0)
            return -EINVAL;
        if (cidr_inside(net, prefix, pnet, pprefix))
            return 0;
    }
    return -EPERM;
}

int netalloc_pools_check(const char *pools, const char *mesh, char **ret_why)
{
    uint32_t mnet, pnet;
    int mprefix, pprefix;
    if (cidr_parse(mesh, 0, 32, &mnet, &mprefix) < 0) {
        *ret_why = xasprintf("mesh range '%s' is not a.b.c.d/p", mesh);
        return -EINVAL;
    }
    _cleanup_free_ char *copy = xstrdup(pools ? pools : "");
    char *save = NULL;
    for (char *t = strtok_r(copy, ", ", &save); t;
         t = strtok_r(NULL, ", ", &save)) {
        if (cidr_parse(t, 0, 32, &pnet, &pprefix) < 0) {
            *ret_why = xasprintf("tenant pool '%s' is not a network address "
                                 "a.b.c.d/p", t);
            return -EINVAL;
        }
        if (cidr_overlap(pnet, pprefix, mnet, mprefix) ||
            cidr_overlap(pnet, pprefix, DEFAULT_POOL_NET, DEFAULT_POOL_PREFIX)) {
            *ret_why = xasprintf("tenant pool '%s' overlaps the mesh (%s) or "
                                 "the default networks (10.128.0.0/9)", t,
                                 mesh);
            return -EINVAL;
        }
    }
    return 0;
}

int64_t netalloc_next_vxlan(struct store *s)
{
    return store_query_int(s, 999, "SELECT MAX(vxlan_id) FROM networks", "") + 1;
}

char *netalloc_default_cidr(struct store *s)
{
    /* One load of the live ranges, not a query per candidate: a crowded
     * pool must not make every create scan the table 32768 times. */
    struct net_ranges r;
    if (ranges_load(s, &r) < 0)
        return NULL;
    char *out = NULL;
    for (uint32_t k = 0; k < 32768 && !out; k++) {
        uint32_t net = DEFAULT_POOL_NET + (k << 8);
        if (!ranges_overlap(&r, net, 24)) {
            _cleanup_free_ char *ip = ip_text(net);
            out = xasprintf("%s/24", ip);
        }
    }
    ranges_clear(&r);
    return out;
}

char *netalloc_gateway(uint32_t net) { return ip_text(net + 1); }

const char netalloc_sql_lowest_free[] =
    "SELECT addr FROM net_free WHERE network_id = $1 ORDER BY addr LIMIT 1";

/* A network's free map (schema 049), made once: the addresses its VMs
 * held before integer addresses (only in vm_nics) recorded when it has
 * none in net_addrs yet, then every gap below the highest taken one put
 * in net_free. Its addr_top, or -errno. */
static int64_t map_make(struct store *s, const char *network_id,
                        uint32_t first)
{
    json_auto_t *rows = NULL;
    size_t i;
    json_t *row;
    int e = 0;
    if (store_query_int(s, -1, "SELECT COUNT(*) FROM net_addrs WHERE "
                               "network_id = $1", "s", network_id) == 0) {
        if ((e = store_query(s, &rows, "SELECT vm_id, address FROM vm_nics "
                                       "WHERE network_id = $1", "s",
                             network_id)) < 0)
            return e;
        json_array_foreach(rows, i, row) {
            struct in_addr in;
            if (inet_pton(AF_INET, json_str(row, "address"), &in) != 1)
                continue;
            e = store_exec(s, "INSERT INTO net_addrs (network_id, addr, vm_id) "
                              "VALUES ($1, $2, $3)", "sis", network_id,
                           (int64_t)ntohl(in.s_addr), json_str(row, "vm_id"));
            if (e < 0)
                return e;
        }
        json_decref(rows);
        rows = NULL;
    }
    if ((e = store_query(s, &rows, "SELECT addr FROM net_addrs WHERE "
                                   "network_id = $1 ORDER BY addr", "s",
                         network_id)) < 0)
        return e;
    int64_t top = first;
    json_array_foreach(rows, i, row) {
        int64_t a = json_int(row, "addr", 0);
        for (; top < a && e >= 0; top++)
            e = store_exec(s, "INSERT INTO net_free (network_id, addr) VALUES "
                              "($1, $2)", "si", network_id, top);
        if (e < 0)
            return e;
        if (a >= top)
            top = a + 1;
    }
    e = store_exec(s, "UPDATE networks SET addr_top = $1 WHERE id = $2", "is",
                   top, network_id);
    return e < 0 ? e : top;
}

char *netalloc_address(struct store *s, const char *network_id,
                       const char *vm_id)
{
    json_auto_t *nw = NULL;
    uint32_t net;
    int prefix;
    if (store_lock(s, "network", network_id) < 0 ||
        store_query_one(s, &nw, "SELECT cidr, addr_top FROM networks WHERE "
                                "id = $1", "s", network_id) < 0 ||
        netalloc_parse_cidr(json_str(nw, "cidr"), &net, &prefix) < 0)
        return NULL;
    /* .0 network, .1 gateway, last broadcast. */
    int64_t first = (int64_t)net + 2;
    int64_t last = (int64_t)net + ((int64_t)1 << (32 - prefix)) - 2;
    int64_t top = json_int(nw, "addr_top", 0);
    if (top == 0 && (top = map_make(s, network_id, (uint32_t)first)) < 0)
        return NULL;
    /* The lowest free address: the least given back, else the top. */
    int64_t cand = store_query_int(s, -1, netalloc_sql_lowest_free, "s",
                                   network_id);
    int e;
    if (cand >= 0)
        e = store_exec(s, "DELETE FROM net_free WHERE network_id = $1 AND "
                          "addr = $2", "si", network_id, cand);
    else if ((cand = top) > last)
        return NULL;
    else
        e = store_exec(s, "UPDATE networks SET addr_top = $1 WHERE id = $2",
                       "is", top + 1, network_id);
    if (e < 0 || cand < first || cand > last ||
        store_exec(s, "INSERT INTO net_addrs (network_id, addr, vm_id) VALUES "
                      "($1, $2, $3)", "sis", network_id, cand, vm_id) < 0)
        return NULL;
    return ip_text((uint32_t)cand);
}

int netalloc_release(struct store *s, const char *vm_id)
{
    /* Back into each network's free map (a network without one yet counts
     * what net_addrs lacks as free when it makes it). Nothing else
     * changes, so a release takes no network's lock. */
    int e = store_exec(s, "INSERT INTO net_free (network_id, addr) SELECT "
                          "a.network_id, a.addr FROM net_addrs a JOIN "
                          "networks w ON w.id = a.network_id WHERE a.vm_id = "
                          "$1 AND a.addr < w.addr_top", "s", vm_id);
    if (e >= 0)
        e = store_exec(s, "DELETE FROM net_addrs WHERE vm_id = $1", "s", vm_id);
    return e < 0 ? e : 0;
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

/* The node's range and its taken ports for proto (sorted). */
static int port_facts(struct store *s, const char *node_id, const char *proto,
                      json_t **ret_node, json_t **ret_used)
{
    json_auto_t *node = NULL, *used = NULL;
    if (store_query_one(s, &node, "SELECT name, port_min, port_max FROM nodes "
                                  "WHERE id = $1", "s", node_id) < 0 ||
        store_query(s, &used, "SELECT host_port FROM ports WHERE node_id = $1 "
                              "AND proto = $2 AND host_port IS NOT NULL "
                              "ORDER BY host_port", "ss", node_id, proto) < 0)
        return -EIO;
    *ret_node = TAKE_PTR(node);
    *ret_used = TAKE_PTR(used);
    return 0;
}

/* Lowest port of lo..hi not in the sorted `used`, or -ENOSPC. */
static int64_t port_lowest_free(json_t *used, int64_t lo, int64_t hi)
{
    int64_t cand = lo;
    for (size_t i = 0; i < json_array_size(used) && cand <= hi; i++) {
        int64_t p = json_int(json_array_get(used, i), "host_port", 0);
        if (p < cand)
            continue;
        if (p > cand)
            break;
        cand = p + 1;
    }
    return cand <= hi ? cand : -ENOSPC;
}

int64_t netalloc_host_port(struct store *s, const char *node_id,
                           const char *proto, int64_t want)
{
    json_auto_t *node = NULL, *used = NULL;
    if (store_lock(s, "node", node_id) < 0 ||
        port_facts(s, node_id, proto, &node, &used) < 0)
        return -EIO;
    int64_t lo = json_int(node, "port_min", 20000), hi = json_int(node, "port_max", 29999);
    if (want <= 0)
        return port_lowest_free(used, lo, hi);
    for (size_t i = 0; i < json_array_size(used); i++)
        if (json_int(json_array_get(used, i), "host_port", 0) == want)
            return -EADDRINUSE;
    if ((want < lo || want > hi) &&
        store_query_int(s, 0, "SELECT COUNT(*) FROM node_permit_ports WHERE "
                              "node_id = $1 AND port = $2", "si", node_id,
                        want) != 1)
        return -EACCES;
    return want;
}

char *netalloc_port_offer(struct store *s, const char *node_id,
                          const char *proto)
{
    json_auto_t *node = NULL, *used = NULL, *permit = NULL;
    if (port_facts(s, node_id, proto, &node, &used) < 0 ||
        store_query(s, &permit, "SELECT port FROM node_permit_ports WHERE "
                                "node_id = $1 ORDER BY port", "s", node_id) < 0)
        return NULL;
    int64_t lo = json_int(node, "port_min", 20000), hi = json_int(node, "port_max", 29999);
    int64_t free_port = port_lowest_free(used, lo, hi);
    struct buf b = BUF_INIT;
    buf_printf(&b, "node '%s' publishes %lld-%lld", json_str(node, "name"),
               (long long)lo, (long long)hi);
    if (free_port > 0)
        buf_printf(&b, " (lowest free %lld/%s)", (long long)free_port, proto);
    else
        buf_printf(&b, " (all taken for %s)", proto);
    size_t i;
    json_t *row;
    json_array_foreach(permit, i, row) {
        int64_t p = json_int(row, "port", 0);
        bool taken = false;
        for (size_t k = 0; k < json_array_size(used); k++)
            if (json_int(json_array_get(used, k), "host_port", 0) == p)
                taken = true;
        buf_printf(&b, "%s%lld%s", i == 0 ? " and permits " : ", ",
                   (long long)p, taken ? " (taken)" : "");
    }
    return buf_steal(&b);
}

char *netalloc_ports_refusal(struct store *s, const char *vm_id)
{
    json_auto_t *want = NULL, *nodes = NULL;
    if (store_query(s, &want, "SELECT proto, want_port FROM ports WHERE "
                              "vm_id = $1 AND want_port > 0 AND "
                              "host_port IS NULL ORDER BY proto, want_port",
                    "s", vm_id) < 0 || json_array_size(want) == 0 ||
        store_query_int(s, 0, "SELECT COUNT(*) FROM nodes n WHERE n.approved "
                              "= 1 AND n.removed_at IS NULL AND "
                              NETALLOC_PORTS_FIT_SQL("$1"), "s", vm_id) > 0)
        return NULL;
    store_query(s, &nodes, "SELECT id FROM nodes WHERE approved = 1 AND "
                           "removed_at IS NULL ORDER BY created_at, id LIMIT 3",
                "");
    /* With no node yet the VM waits, as any VM does. */
    if (json_array_size(nodes) == 0)
        return NULL;
    struct buf b = BUF_INIT;
    size_t i;
    json_t *row;
    json_array_foreach(want, i, row)
        buf_printf(&b, "%s%lld/%s", i == 0 ? "no node can publish host port "
                                             "" : ", ",
                   (long long)json_int(row, "want_port", 0),
                   json_str(row, "proto"));
    buf_printf(&b, " (each must be free and in the node's range or among "
                   "the ports its provider permits)");
    json_array_foreach(nodes, i, row) {
        _cleanup_free_ char *offer = netalloc_port_offer(
            s, json_str(row, "id"), json_str(json_array_get(want, 0), "proto"));
        if (offer)
            buf_printf(&b, "%s%s", i == 0 ? ": " : "; ", offer);
    }
    return buf_steal(&b);
}

int netalloc_permit_set(struct store *s, const char *node_id,
                        const uint16_t *ports, size_t n)
{
    /* Status posts repeat the list: write only when it changed. */
    json_auto_t *now = NULL;
    if (store_query(s, &now, "SELECT port FROM node_permit_ports WHERE "
                             "node_id = $1", "s", node_id) < 0)
        return -EIO;
    size_t k;
    json_t *row;
    bool same = json_array_size(now) == n;
    json_array_foreach(now, k, row) {
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found |= ports[i] == json_int(row, "port", 0);
        same &= found;
    }
    if (same)
        return 0;
    int r = store_exec(s, "DELETE FROM node_permit_ports WHERE node_id = $1",
                       "s", node_id);
    for (size_t i = 0; i < n && r >= 0; i++)
        r = store_exec(s, "INSERT INTO node_permit_ports (node_id, port) "
                          "VALUES ($1, $2) ON CONFLICT DO NOTHING", "si",
                       node_id, (int64_t)ports[i]);
    return r < 0 ? r : 0;
}

/* ---- IPv6 ---------------------------------------------------------------- */

int netalloc_ula48(struct store *s, uint8_t ret[6])
{
    json_auto_t *row = NULL;
    uint8_t b[6] = { 0xfd };
    random_bytes(b + 1, 5);
    char hex[13];
    for (int i = 0; i < 6; i++)
        snprintf(hex + 2 * i, 3, "%02x", b[i]);
    /* The first writer's value stays: replicas racing here agree on it. */
    if (store_exec(s, "INSERT INTO settings (key, value) VALUES ('ula48', $1) "
                      "ON CONFLICT DO NOTHING", "s", hex) < 0 ||
        store_query_one(s, &row, "SELECT value FROM settings WHERE key = "
                                 "'ula48'", "") < 0)
        return -EIO;
    const char *v = json_str(row, "value");
    if (!v || strlen(v) != 12 || strncmp(v, "fd", 2) != 0)
        return -EINVAL;
    for (int i = 0; i < 6; i++) {
        unsigned x;
        if (sscanf(v + 2 * i, "%2x", &x) != 1 || !isxdigit((unsigned char)v[2 * i]) ||
            !isxdigit((unsigned char)v[2 * i + 1]))
            return -EINVAL;
        ret[i] = (uint8_t)x;
    }
    return 0;
}

int64_t netalloc_subnet6(struct store *s)
{
    if (store_lock(s, "networks", NULL) < 0)
        return -EIO;
    int64_t cand = 1;
    if (store_query_int(s, 0, "SELECT COUNT(*) FROM networks WHERE deleted_at "
                              "IS NULL AND subnet6 = 1", "") != 0)
        cand = store_query_int(s, -1, "SELECT a.subnet6 + 1 FROM networks a "
                                      "WHERE a.deleted_at IS NULL AND "
                                      "a.subnet6 IS NOT NULL AND NOT EXISTS "
                                      "(SELECT 1 FROM networks b WHERE "
                                      "b.deleted_at IS NULL AND b.subnet6 = "
                                      "a.subnet6 + 1) ORDER BY a.subnet6 "
                                      "LIMIT 1", "");
    if (cand < 0)
        return -EIO;
    return cand > 0xffff ? -ENOSPC : cand;
}

static char *v6_text(const uint8_t ula[6], uint16_t subnet, uint64_t host,
                     const char *suffix)
{
    struct in6_addr a = { 0 };
    memcpy(a.s6_addr, ula, 6);
    a.s6_addr[6] = (uint8_t)(subnet >> 8);
    a.s6_addr[7] = (uint8_t)subnet;
    for (int i = 0; i < 8; i++)
        a.s6_addr[15 - i] = (uint8_t)(host >> (8 * i));
    char t[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &a, t, sizeof(t));
    return xasprintf("%s%s", t, suffix);
}

char *netalloc_cidr6(const uint8_t ula[6], uint16_t subnet)
{
    return v6_text(ula, subnet, 0, "/64");
}

char *netalloc_gateway6(const uint8_t ula[6], uint16_t subnet)
{
    return v6_text(ula, subnet, 1, "");
}

char *netalloc_address6(const char *cidr6, const char *cidr4,
                        const char *addr4)
{
    struct ipam_cidr c4;
    uint32_t a4;
    struct in6_addr p;
    if (!cidr6 || !cidr4 || !addr4 ||
        ipam_cidr_parse(cidr4, true, &c4, NULL) < 0 ||
        ipam_addr_parse(addr4, &a4) < 0 || !ipam_cidr_contains(&c4, a4))
        return NULL;
    const char *slash = strchr(cidr6, '/');
    if (!slash || strcmp(slash, "/64") != 0 || slash - cidr6 >= INET6_ADDRSTRLEN)
        return NULL;
    char head[INET6_ADDRSTRLEN];
    memcpy(head, cidr6, (size_t)(slash - cidr6));
    head[slash - cidr6] = '\0';
    if (inet_pton(AF_INET6, head, &p) != 1)
        return NULL;
    uint32_t host = a4 - c4.net;
    if (host < 2)
        return NULL;
    uint16_t subnet = (uint16_t)(p.s6_addr[6] << 8 | p.s6_addr[7]);
    return v6_text(p.s6_addr, subnet, host, "");
}

/* Give network `id` subnet6, cidr6 and gateway6. 0 or -errno. */
static int network_v6_set(struct store *s, const uint8_t ula[6],
                          const char *id)
{
    int64_t sub = netalloc_subnet6(s);
    if (sub < 0)
        return (int)sub;
    _cleanup_free_ char *cidr6 = netalloc_cidr6(ula, (uint16_t)sub);
    _cleanup_free_ char *gw6 = netalloc_gateway6(ula, (uint16_t)sub);
    int e = store_exec(s, "UPDATE networks SET subnet6 = $1, cidr6 = $2, "
                          "gateway6 = $3 WHERE id = $4", "isss", sub, cidr6,
                       gw6, id);
    return e < 0 ? e : 0;
}

int netalloc_network_v6(struct store *s, const char *network_id)
{
    uint8_t ula[6];
    int e = netalloc_ula48(s, ula);
    return e < 0 ? e : network_v6_set(s, ula, network_id);
}

char *netalloc_nic_address6(struct store *s, const char *network_id,
                            const char *addr4)
{
    json_auto_t *nw = NULL;
    if (store_query_one(s, &nw, "SELECT cidr, cidr6 FROM networks WHERE id = "
                                "$1", "s", network_id) < 0)
        return NULL;
    return netalloc_address6(json_str(nw, "cidr6"), json_str(nw, "cidr"),
                             addr4);
}

/* Record addresses6 of every live VM without it, from its NICs. */
static int vms_v6_fill(struct store *s)
{
    json_auto_t *rows = NULL;
    size_t i;
    json_t *row;
    int e = store_query(s, &rows, "SELECT c.vm_id, c.address, w.cidr, "
                                  "w.cidr6 FROM vms v JOIN vm_nics c ON "
                                  "c.vm_id = v.id JOIN networks w ON w.id = "
                                  "c.network_id WHERE v.addresses6 IS NULL "
                                  "AND v.deleted_at IS NULL ORDER BY c.vm_id, "
                                  "c.idx", "");
    json_auto_t *list = json_array();
    for (i = 0; e >= 0 && i <= json_array_size(rows); i++) {
        row = json_array_get(rows, i);
        const char *prev = i > 0 ? json_str(json_array_get(rows, i - 1),
                                            "vm_id") : NULL;
        /* A VM's list is complete when the next row is another VM's. */
        if (prev && (!row || strcmp(prev, json_str(row, "vm_id")) != 0)) {
            _cleanup_free_ char *text = json_dumps_compact(list);
            e = store_exec(s, "UPDATE vms SET addresses6 = $1 WHERE id = $2",
                           "ss", text, prev);
            json_array_clear(list);
        }
        if (!row)
            break;
        _cleanup_free_ char *a6 = netalloc_address6(
            json_str(row, "cidr6"), json_str(row, "cidr"),
            json_str(row, "address"));
        if (a6)
            json_array_append_new(list, json_string(a6));
    }
    return e < 0 ? e : 0;
}

int netalloc_v6_backfill(struct store *s)
{
    json_auto_t *rows = NULL;
    int e;
    for (int attempt = 0; attempt < STORE_TX_RETRIES; attempt++) {
        if ((e = store_tx_begin(s)) < 0)
            return e;
        uint8_t ula[6];
        size_t i;
        json_t *row;
        json_decref(rows);
        rows = NULL;
        if ((e = netalloc_ula48(s, ula)) >= 0 &&
            (e = store_lock(s, "networks", NULL)) >= 0 &&
            (e = store_query(s, &rows, "SELECT id FROM networks WHERE "
                                       "deleted_at IS NULL AND subnet6 IS "
                                       "NULL ORDER BY created_at, id", "")) >= 0)
            json_array_foreach(rows, i, row)
                if ((e = network_v6_set(s, ula, json_str(row, "id"))) < 0)
                    break;
        if (e >= 0)
            e = vms_v6_fill(s);
        if (e < 0) {
            store_tx_rollback(s);
            if (e == -EAGAIN || store_tx_lost_conflict(s))
                continue;
            return e;
        }
        if ((e = store_tx_commit(s)) == 0) {
            if (json_array_size(rows) > 0)
                log_info("networks: gave %zu network(s) an IPv6 /64",
                         json_array_size(rows));
            return 0;
        }
        if (e != -EAGAIN)
            return e;
    }
    return -EAGAIN;
}
