/* The node's policy over desired documents: host ports only in our range
 * and not in use, bridges only those of the document's own networks, VM
 * addresses only inside their network, images only from the controller's
 * image route, tenant networks clear of the host's routes and the mesh.
 * Host facts come in as data so every rule is a pure function. */
#include "nodeagent/policy.h"

#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "netfabric/state.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>

/* ---- host facts ---- */

static void add_port(uint16_t **ports, size_t *n, uint16_t port)
{
    for (size_t i = 0; i < *n; i++)
        if ((*ports)[i] == port)
            return;
    *ports = xrealloc(*ports, (*n + 1) * sizeof(**ports));
    (*ports)[(*n)++] = port;
}

static void add_net(struct policy_net **nets, size_t *n, uint32_t addr,
                    int prefix, uint32_t vxlan_id)
{
    *nets = xrealloc(*nets, (*n + 1) * sizeof(**nets));
    (*nets)[(*n)++] = (struct policy_net){
        { addr & ipam_mask(prefix), prefix }, vxlan_id };
}

/* N when ifname is our bridge fogbr<N>, else 0. */
static uint32_t bridge_vxlan(const char *ifname)
{
    int64_t id;
    if (!startswith(ifname, "fogbr") ||
        parse_int64(ifname + 5, 1, (1 << 24) - 1, &id) < 0)
        return 0;
    char canon[IFNAMSIZ];
    netfabric_bridge_name((uint32_t)id, canon);
    return streq(canon, ifname) ? (uint32_t)id : 0;
}

/* The next line of *p (without its newline) as an owned string, or NULL
 * at the end. */
static char *next_line(const char **p)
{
    if (!*p || !**p)
        return NULL;
    const char *end = strchr(*p, '\n');
    size_t len = end ? (size_t)(end - *p) : strlen(*p);
    char *l = xstrndup(*p, len);
    *p = end ? end + 1 : NULL;
    return l;
}

int policy_parse_proc_net(const char *text, bool listen_only,
                          uint16_t **ports, size_t *n)
{
    const char *p = text;
    _cleanup_free_ char *head = next_line(&p);
    const char *h = head;
    while (h && *h == ' ')
        h++;
    if (!h || !startswith(h, "sl"))
        return -EINVAL;
    for (;;) {
        _cleanup_free_ char *l = next_line(&p);
        if (!l)
            break;
        char *save = NULL;
        char *sl = strtok_r(l, " \t", &save);
        char *local = strtok_r(NULL, " \t", &save);
        strtok_r(NULL, " \t", &save); /* remote */
        char *st = strtok_r(NULL, " \t", &save);
        if (!sl || !st)
            continue; /* blank or truncated line */
        char *colon = strrchr(local, ':'), *end;
        if (!colon)
            return -EINVAL;
        errno = 0;
        unsigned long port = strtoul(colon + 1, &end, 16);
        unsigned long state = strtoul(st, NULL, 16);
        if (errno || *end || port > 65535)
            return -EINVAL;
        if (port == 0 || (listen_only && state != 0x0A /* TCP_LISTEN */))
            continue;
        add_port(ports, n, (uint16_t)port);
    }
    return 0;
}

int policy_parse_route(const char *text, struct policy_net **nets, size_t *n)
{
    const char *p = text;
    _cleanup_free_ char *head = next_line(&p);
    if (!head || !startswith(head, "Iface"))
        return -EINVAL;
    for (;;) {
        _cleanup_free_ char *l = next_line(&p);
        if (!l)
            break;
        char *save = NULL, *f[8];
        size_t k = 0;
        for (char *t = strtok_r(l, " \t", &save); t && k < ARRAY_SIZE(f);
             t = strtok_r(NULL, " \t", &save))
            f[k++] = t;
        if (k == 0)
            continue;
        if (k < 8)
            return -EINVAL;
        char *e1, *e2;
        errno = 0;
        /* The kernel prints the big-endian words as native integers. */
        uint32_t dst = ntohl((uint32_t)strtoul(f[1], &e1, 16));
        uint32_t mask = ntohl((uint32_t)strtoul(f[7], &e2, 16));
        if (errno || *e1 || *e2)
            return -EINVAL;
        int prefix = __builtin_popcount(mask);
        if (mask != ipam_mask(prefix))
            return -EINVAL;
        if (prefix == 0)
            continue; /* the default route covers everything: no fact */
        add_net(nets, n, dst, prefix, bridge_vxlan(f[0]));
    }
    return 0;
}

int policy_parse_ipv6_route(const char *text, struct policy_net6 **nets,
                            size_t *n)
{
    const char *p = text;
    for (;;) {
        _cleanup_free_ char *l = next_line(&p);
        if (!l)
            break;
        char hex[33], dev[IFNAMSIZ + 1];
        unsigned plen;
        if (!*l)
            continue;
        if (sscanf(l, "%32s %x %*s %*s %*s %*s %*s %*s %*s %16s", hex, &plen,
                   dev) != 3 || strlen(hex) != 32 ||
            strspn(hex, "0123456789abcdefABCDEF") != 32 || plen > 128)
            return -EINVAL;
        struct in6_addr a;
        for (int i = 0; i < 16; i++) {
            unsigned byte = 0;
            sscanf(hex + 2 * i, "%2x", &byte);
            a.s6_addr[i] = (uint8_t)byte;
        }
        if (plen == 0 || IN6_IS_ADDR_LINKLOCAL(&a) ||
            IN6_IS_ADDR_MULTICAST(&a))
            continue;
        *nets = xrealloc(*nets, (*n + 1) * sizeof(**nets));
        (*nets)[(*n)++] = (struct policy_net6){ a, (int)plen,
                                                bridge_vxlan(dev) };
    }
    return 0;
}

void policy_parse_fib_trie(const char *text, struct policy_net **nets,
                           size_t *n)
{
    size_t routes = *n;
    const char *p = text;
    uint32_t last = 0;
    bool have = false;
    for (;;) {
        _cleanup_free_ char *l = next_line(&p);
        if (!l)
            break;
        char *leaf = strstr(l, "|-- ");
        if (leaf) {
            have = ipam_addr_parse(leaf + 4, &last) == 0;
            continue;
        }
        if (have && strstr(l, "/32 host LOCAL")) {
            bool dup = false;
            uint32_t owner = 0;
            for (size_t i = 0; i < *n && !dup; i++)
                dup = (*nets)[i].cidr.prefix == 32 && (*nets)[i].cidr.net == last;
            for (size_t i = 0; i < routes && !owner; i++)
                if ((*nets)[i].vxlan_id &&
                    ipam_cidr_contains(&(*nets)[i].cidr, last))
                    owner = (*nets)[i].vxlan_id;
            if (!dup)
                add_net(nets, n, last, 32, owner);
        }
    }
}

static int read_net(const char *root, const char *name, char **ret)
{
    _cleanup_free_ char *rel = xasprintf("/proc/net/%s", name);
    _cleanup_free_ char *path = path_join_root(root, rel);
    return file_read(path, 64 << 20, ret, NULL);
}

int policy_host_collect(const char *root, struct policy_host *h)
{
    static const struct { const char *name; bool tcp, must; } tables[] = {
        { "tcp", true, true }, { "tcp6", true, false },
        { "udp", false, true }, { "udp6", false, false },
    };
    int r;
    h->facts_known = false;
    for (size_t i = 0; i < ARRAY_SIZE(tables); i++) {
        _cleanup_free_ char *text = NULL;
        if ((r = read_net(root, tables[i].name, &text)) < 0) {
            if (tables[i].must)
                return r;
            continue;
        }
        r = tables[i].tcp ?
                policy_parse_proc_net(text, true, &h->tcp_ports, &h->n_tcp) :
                policy_parse_proc_net(text, false, &h->udp_ports, &h->n_udp);
        if (r < 0)
            return r;
    }
    _cleanup_free_ char *route = NULL, *trie = NULL;
    if ((r = read_net(root, "route", &route)) < 0 ||
        (r = policy_parse_route(route, &h->nets, &h->n_nets)) < 0)
        return r;
    if (read_net(root, "fib_trie", &trie) == 0)
        policy_parse_fib_trie(trie, &h->nets, &h->n_nets);
    /* Absent on a host without IPv6: no IPv6 route to clash with. */
    _cleanup_free_ char *route6 = NULL;
    if (read_net(root, "ipv6_route", &route6) == 0 &&
        (r = policy_parse_ipv6_route(route6, &h->nets6, &h->n_nets6)) < 0)
        return r;
    h->facts_known = true;
    return 0;
}

void policy_host_clear(struct policy_host *h)
{
    free(h->tcp_ports);
    free(h->udp_ports);
    free(h->nets);
    free(h->nets6);
    h->tcp_ports = h->udp_ports = NULL;
    h->nets = NULL;
    h->nets6 = NULL;
    h->n_tcp = h->n_udp = h->n_nets = h->n_nets6 = 0;
    h->facts_known = false;
}

/* ---- rules ---- */

bool policy_cidr_overlap(const struct ipam_cidr *a, const struct ipam_cidr *b)
{
    int p = a->prefix < b->prefix ? a->prefix : b->prefix;
    return (a->net & ipam_mask(p)) == (b->net & ipam_mask(p));
}

bool policy_image_url_ok(const char *url, const char *controller,
                         const char *image_id)
{
    static const char prefix[] = "/v1/images/", suffix[] = "/file";
    if (!url)
        return false;
    if (url[0] != '/') {
        /* Absolute: only the controller we joined, spelt as we know it. */
        size_t cl = controller ? strlen(controller) : 0;
        while (cl > 0 && controller[cl - 1] == '/')
            cl--;
        if (cl == 0 || strncmp(url, controller, cl) != 0 || url[cl] != '/')
            return false;
        url += cl;
    }
    /* Exactly prefix + uuid + suffix: no "..", query, fragment or escape
     * can hide in that shape. */
    if (!startswith(url, prefix))
        return false;
    const char *id = url + strlen(prefix);
    if (strlen(id) != UUID_STR_LEN + strlen(suffix) ||
        !streq(id + UUID_STR_LEN, suffix))
        return false;
    char uuid[UUID_STR_LEN + 1];
    memcpy(uuid, id, UUID_STR_LEN);
    uuid[UUID_STR_LEN] = '\0';
    if (!uuid_is_valid(uuid))
        return false;
    return !image_id || streq(uuid, image_id);
}

/* Ranges no tenant network may use: "this" network, loopback, link-local,
 * multicast and reserved. */
static const struct ipam_cidr reserved[] = {
    { 0x00000000, 8 }, { 0x7f000000, 8 }, { 0xa9fe0000, 16 },
    { 0xe0000000, 4 }, { 0xf0000000, 4 },
};

/* ---- filtering ---- */

struct refusals {
    json_t *list;
    size_t dropped;  /* past AGENT_REFUSED_MAX */
};

/* Input quoted in a reason: at most 64 printable characters. */
static char *quote(const char *s)
{
    if (!s)
        return xstrdup("(none)");
    size_t len = strlen(s), n = len > 64 ? 64 : len;
    char *q = xasprintf("'%.*s%s'", (int)n, s, len > n ? "..." : "");
    for (char *c = q + 1; *c; c++)
        if (!isprint((unsigned char)*c))
            *c = '?';
    return q;
}

static void refuse(struct refusals *rf, const char *object, const char *fmt,
                   ...) _printf_(3, 4);
static void refuse(struct refusals *rf, const char *object, const char *fmt,
                   ...)
{
    if (json_array_size(rf->list) >= AGENT_REFUSED_MAX - 1) {
        rf->dropped++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *reason;
    if (vasprintf(&reason, fmt, ap) < 0)
        abort();
    va_end(ap);
    if (strlen(reason) > AGENT_REFUSED_REASON_MAX)
        reason[AGENT_REFUSED_REASON_MAX] = '\0';
    json_array_append_new(rf->list, json_pack("{s:s, s:s}", "object", object,
                                              "reason", reason));
    free(reason);
}

/* A network the policy accepted. */
struct pnet {
    const json_t *j;
    uint32_t vxlan_id;
    struct ipam_cidr cidr;
    uint32_t gateway;
    char bridge[IFNAMSIZ];
    bool has_v6;
    struct in6_addr prefix6; /* a unique local /64 */
};

/* An accepted VM's NIC address, for ports and duplicate checks. */
struct paddr {
    const char *vm_id;
    uint32_t addr;
    uint8_t mac[6];
};

struct filter {
    const struct policy_host *h;
    struct refusals rf;
    bool has_mesh;
    struct ipam_cidr mesh;
    uint16_t mesh_port;
    struct pnet *nets;
    size_t n_nets;
    char (*refused_bridges)[IFNAMSIZ];
    size_t n_refused_bridges;
    struct paddr *addrs;
    size_t n_addrs;
    char (*vms)[UUID_STR_LEN + 1];  /* accepted, not deleted */
    size_t n_vms;
    char (*deleted)[UUID_STR_LEN + 1]; /* being deleted */
    size_t n_deleted;
    uint8_t published[2][65536 / 8];   /* accepted host ports: udp, tcp */
};

static bool int_in(const json_t *o, const char *k, int64_t lo, int64_t hi,
                   int64_t *ret)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi)
        return false;
    if (ret)
        *ret = json_integer_value(v);
    return true;
}

static bool prefix6_overlap(const struct in6_addr *a, int pa,
                            const struct in6_addr *b, int pb)
{
    int p = pa < pb ? pa : pb;
    for (int bit = 0; bit < p; bit++) {
        uint8_t m = (uint8_t)(0x80 >> (bit % 8));
        if ((a->s6_addr[bit / 8] & m) != (b->s6_addr[bit / 8] & m))
            return false;
    }
    return true;
}

/* Why network `w`'s optional IPv6 /64 is refused (owned), or NULL: it must
 * be a unique local /64 with its gateway inside, clear of the host's IPv6
 * routes and addresses and of the other networks' /64s. */
static char *network_check6(struct filter *f, const json_t *w, struct pnet *n)
{
    const json_t *jc = json_object_get(w, AGENT_NET_CIDR6);
    const json_t *jg = json_object_get(w, AGENT_NET_GATEWAY6);
    if (!jc && !jg)
        return NULL;
    const char *c = json_string_value(jc), *g = json_string_value(jg);
    const char *slash = c ? strchr(c, '/') : NULL;
    char head[INET6_ADDRSTRLEN];
    struct in6_addr gw;
    static const uint8_t zero[8];
    if (!slash || !streq(slash, "/64") || (size_t)(slash - c) >= sizeof(head))
        goto bad;
    memcpy(head, c, (size_t)(slash - c));
    head[slash - c] = '\0';
    if (inet_pton(AF_INET6, head, &n->prefix6) != 1 ||
        (n->prefix6.s6_addr[0] & 0xfe) != 0xfc ||
        memcmp(n->prefix6.s6_addr + 8, zero, 8) != 0 || !g ||
        inet_pton(AF_INET6, g, &gw) != 1 ||
        memcmp(gw.s6_addr, n->prefix6.s6_addr, 8) != 0 ||
        memcmp(&gw, &n->prefix6, 16) == 0)
        goto bad;
    for (size_t i = 0; i < f->h->n_nets6; i++) {
        const struct policy_net6 *hn = &f->h->nets6[i];
        if (hn->vxlan_id == n->vxlan_id ||
            !prefix6_overlap(&n->prefix6, 64, &hn->net, hn->prefix))
            continue;
        char t[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &hn->net, t, sizeof(t));
        return xasprintf("cidr6 %s overlaps the host's %s/%d", c, t,
                         hn->prefix);
    }
    for (size_t i = 0; i < f->n_nets; i++)
        if (f->nets[i].has_v6 &&
            memcmp(f->nets[i].prefix6.s6_addr, n->prefix6.s6_addr, 8) == 0)
            return xasprintf("cidr6 %s overlaps network %u", c,
                             f->nets[i].vxlan_id);
    n->has_v6 = true;
    return NULL;
bad:;
    _cleanup_free_ char *q = quote(c);
    return xasprintf("cidr6 %s is not a unique local /64 with its gateway "
                     "inside", q);
}

/* Why network `w` is refused (owned), or NULL when it is accepted into
 * *ret. */
static char *network_check(struct filter *f, const json_t *w,
                           struct pnet *ret)
{
    struct pnet n = { .j = w };
    int64_t id;
    if (!json_is_object(w))
        return xstrdup("not an object");
    if (!int_in(w, "vxlan_id", 1, (1 << 24) - 1, &id))
        return xstrdup("vxlan_id is not in 1..16777215");
    n.vxlan_id = (uint32_t)id;
    netfabric_bridge_name(n.vxlan_id, n.bridge);
    if (ipam_cidr_parse(json_str(w, "cidr"), true, &n.cidr, NULL) < 0 ||
        n.cidr.prefix < 8 || n.cidr.prefix > 30) {
        _cleanup_free_ char *q = quote(json_str(w, "cidr"));
        return xasprintf("cidr %s is not an IPv4 network of /8../30", q);
    }
    uint32_t bcast = n.cidr.net | ~ipam_mask(n.cidr.prefix);
    if (ipam_addr_parse(json_str(w, "gateway"), &n.gateway) < 0 ||
        !ipam_cidr_contains(&n.cidr, n.gateway) || n.gateway == n.cidr.net ||
        n.gateway == bcast)
        return xstrdup("gateway is not a host address of the cidr");
    if (json_object_get(w, "mtu") && !int_in(w, "mtu", 576, 9000, NULL))
        return xstrdup("mtu is not in 576..9000");
    const char *br = json_str(w, "bridge");
    if (json_object_get(w, "bridge") && !streq(br, n.bridge)) {
        _cleanup_free_ char *q = quote(br);
        return xasprintf("bridge %s is not the network's own %s", q,
                         n.bridge);
    }
    _cleanup_free_ char *cidr = ipam_cidr_format(&n.cidr);
    for (size_t i = 0; i < ARRAY_SIZE(reserved); i++)
        if (policy_cidr_overlap(&n.cidr, &reserved[i]))
            return xasprintf("cidr %s overlaps a reserved range", cidr);
    if (!f->h->facts_known)
        return xstrdup("the host's routes are unknown");
    for (size_t i = 0; i < f->h->n_nets; i++) {
        const struct policy_net *hn = &f->h->nets[i];
        /* The network's own bridge, built from an earlier document. */
        if (hn->vxlan_id == n.vxlan_id)
            continue;
        if (policy_cidr_overlap(&n.cidr, &hn->cidr)) {
            _cleanup_free_ char *t = ipam_cidr_format(&hn->cidr);
            return xasprintf("cidr %s overlaps the host's %s", cidr, t);
        }
    }
    if (f->has_mesh && policy_cidr_overlap(&n.cidr, &f->mesh))
        return xasprintf("cidr %s overlaps the mesh range", cidr);
    char *why6 = network_check6(f, w, &n);
    if (why6)
        return why6;
    for (size_t i = 0; i < f->n_nets; i++) {
        if (f->nets[i].vxlan_id == n.vxlan_id)
            return xstrdup("vxlan_id appears twice");
        if (policy_cidr_overlap(&n.cidr, &f->nets[i].cidr))
            return xasprintf("cidr %s overlaps network %u", cidr,
                             f->nets[i].vxlan_id);
    }
    size_t k;
    json_t *v;
    json_t *vteps = json_object_get(w, "vteps"), *macs = json_object_get(w, "macs");
    if ((vteps && !json_is_array(vteps)) || (macs && !json_is_array(macs)))
        return xstrdup("vteps or macs is not an array");
    json_array_foreach(vteps, k, v) {
        uint32_t a;
        /* VXLAN goes to other nodes over the mesh, nowhere else. */
        if (ipam_addr_parse(json_string_value(v), &a) < 0 || !f->has_mesh ||
            !ipam_cidr_contains(&f->mesh, a))
            return xasprintf("vteps[%zu] is not a mesh address", k);
    }
    json_array_foreach(macs, k, v) {
        uint8_t mac[6];
        uint32_t a;
        if (!json_is_object(v) || ipam_mac_parse(json_str(v, "mac"), mac) < 0 ||
            (mac[0] & 1) || ipam_addr_parse(json_str(v, "vtep"), &a) < 0 ||
            !f->has_mesh || !ipam_cidr_contains(&f->mesh, a))
            return xasprintf("macs[%zu] is not a unicast MAC at a mesh "
                             "address", k);
    }
    *ret = n;
    return NULL;
}

/* Network `id` as the last accepted document had it, if it can stay
 * beside the networks accepted so far: it passed the policy then, and
 * tearing its bridge down under running VMs is not the node's to do. Its
 * entry is used as it was, for VMs on it too. */
static bool network_carry(struct filter *f, int64_t id, struct pnet *ret)
{
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(f->h->applied, "networks"), i, w) {
        struct pnet n = { .j = w };
        if (json_int(w, "vxlan_id", 0) != id)
            continue;
        n.vxlan_id = (uint32_t)id;
        netfabric_bridge_name(n.vxlan_id, n.bridge);
        if (ipam_cidr_parse(json_str(w, "cidr"), true, &n.cidr, NULL) < 0 ||
            ipam_addr_parse(json_str(w, "gateway"), &n.gateway) < 0)
            return false;
        for (size_t k = 0; k < f->n_nets; k++)
            if (f->nets[k].vxlan_id == n.vxlan_id ||
                policy_cidr_overlap(&n.cidr, &f->nets[k].cidr))
                return false;
        *ret = n;
        return true;
    }
    return false;
}

static void filter_networks(struct filter *f, const json_t *arr, json_t *out)
{
    size_t i;
    json_t *w;
    json_array_foreach(arr, i, w) {
        struct pnet n;
        char *why = network_check(f, w, &n);
        int64_t id = json_int(w, "vxlan_id", -1);
        bool carried = why && id >= 1 && id < (1 << 24) &&
                       network_carry(f, id, &n);
        if (!why || carried) {
            f->nets = xrealloc(f->nets, (f->n_nets + 1) * sizeof(*f->nets));
            f->nets[f->n_nets++] = n;
            json_array_append(out, (json_t *)n.j);
        }
        if (!why)
            continue;
        if (carried) {
            _cleanup_free_ char *obj = xasprintf("network %lld", (long long)id);
            refuse(&f->rf, obj, "%s; it stays as it was", why);
            free(why);
            continue;
        }
        _cleanup_free_ char *obj = (id >= 1 && id < (1 << 24)) ?
            xasprintf("network %lld", (long long)id) :
            xasprintf("networks[%zu]", i);
        refuse(&f->rf, obj, "%s", why);
        if (id >= 1 && id < (1 << 24)) {
            /* So that its VMs are refused as being on it. */
            f->refused_bridges = xrealloc(f->refused_bridges,
                                          (f->n_refused_bridges + 1) * IFNAMSIZ);
            netfabric_bridge_name((uint32_t)id,
                                  f->refused_bridges[f->n_refused_bridges++]);
        }
        free(why);
    }
}

static bool text_ok(const char *s, size_t max)
{
    if (!s || !*s || strlen(s) > max)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* Why NIC `nic` (index k) of VM `id` is refused, or NULL; on acceptance
 * its address and MAC go to *ret. */
static char *nic_check(struct filter *f, const json_t *nic, size_t k,
                       struct paddr *ret)
{
    if (!json_is_object(nic))
        return xasprintf("nics[%zu] is not an object", k);
    uint8_t mac[6];
    static const uint8_t zero[6];
    if (ipam_mac_parse(json_str(nic, "mac"), mac) < 0 || (mac[0] & 1) ||
        memcmp(mac, zero, 6) == 0) {
        _cleanup_free_ char *q = quote(json_str(nic, "mac"));
        return xasprintf("nics[%zu].mac %s is not a unicast MAC", k, q);
    }
    const char *br = json_str(nic, "bridge");
    const struct pnet *n = NULL;
    for (size_t i = 0; i < f->n_nets && !n; i++)
        if (streq(f->nets[i].bridge, br))
            n = &f->nets[i];
    if (!n) {
        _cleanup_free_ char *q = quote(br);
        for (size_t i = 0; i < f->n_refused_bridges; i++)
            if (streq(f->refused_bridges[i], br))
                return xasprintf("nics[%zu] is on refused network bridge %s",
                                 k, q);
        return xasprintf("nics[%zu].bridge %s is not the bridge of a network "
                         "in this document", k, q);
    }
    const char *nid = json_str(nic, "network_id");
    if (json_object_get(nic, "network_id") &&
        !streq(nid, json_str(n->j, "id")))
        return xasprintf("nics[%zu].network_id is not the network of %s", k,
                         n->bridge);
    uint32_t a, bcast = n->cidr.net | ~ipam_mask(n->cidr.prefix);
    _cleanup_free_ char *cidr = ipam_cidr_format(&n->cidr);
    if (ipam_addr_parse(json_str(nic, "address"), &a) < 0 ||
        !ipam_cidr_contains(&n->cidr, a) || a == n->cidr.net || a == bcast ||
        a == n->gateway) {
        _cleanup_free_ char *q = quote(json_str(nic, "address"));
        return xasprintf("nics[%zu].address %s is not a host address of %s",
                         k, q, cidr);
    }
    if (json_object_get(nic, "prefix") &&
        !int_in(nic, "prefix", n->cidr.prefix, n->cidr.prefix, NULL))
        return xasprintf("nics[%zu].prefix is not that of %s", k, cidr);
    uint32_t gw;
    if (json_object_get(nic, "gateway") &&
        (ipam_addr_parse(json_str(nic, "gateway"), &gw) < 0 ||
         gw != n->gateway))
        return xasprintf("nics[%zu].gateway is not the gateway of %s", k,
                         cidr);
    if (json_object_get(nic, "mtu") && !int_in(nic, "mtu", 68, 65535, NULL))
        return xasprintf("nics[%zu].mtu is not in 68..65535", k);
    for (size_t i = 0; i < f->n_addrs; i++) {
        if (f->addrs[i].addr == a)
            return xasprintf("nics[%zu].address is another VM's", k);
        if (memcmp(f->addrs[i].mac, mac, 6) == 0)
            return xasprintf("nics[%zu].mac is another VM's", k);
    }
    ret->addr = a;
    memcpy(ret->mac, mac, 6);
    return NULL;
}

/* Why VM `vm` is refused, or NULL; its NIC addresses go to f->addrs. */
static char *vm_check(struct filter *f, const json_t *vm, const char *id)
{
    const struct policy_host *h = f->h;
    if (!text_ok(json_str(vm, "name"), POLICY_NAME_MAX))
        return xasprintf("name is not 1..%d printable characters",
                         POLICY_NAME_MAX);
    int64_t max_cpu = h->vcpus > 0 ? h->vcpus : 4096;
    int64_t max_mem = h->memory_mib > 0 ? h->memory_mib : INT64_C(1) << 32;
    int64_t max_disk = h->disk_gib > 0 ? h->disk_gib : INT64_C(1) << 30;
    if (!int_in(vm, "vcpus", 1, max_cpu, NULL))
        return xasprintf("vcpus is not in 1..%lld (the host's)",
                         (long long)max_cpu);
    if (!int_in(vm, "memory_mib", 16, max_mem, NULL))
        return xasprintf("memory_mib is not in 16..%lld (the host's)",
                         (long long)max_mem);
    if (!int_in(vm, "disk_gib", 1, max_disk, NULL))
        return xasprintf("disk_gib is not in 1..%lld (the host's)",
                         (long long)max_disk);
    json_t *ud = json_object_get(vm, "user_data");
    if (ud && !json_is_null(ud) &&
        (!json_is_string(ud) ||
         json_string_length(ud) > POLICY_USER_DATA_MAX))
        return xasprintf("user_data is over %d bytes", POLICY_USER_DATA_MAX);
    json_t *keys = json_object_get(vm, "ssh_keys"), *key;
    size_t k;
    if (keys && !json_is_null(keys) &&
        (!json_is_array(keys) || json_array_size(keys) > POLICY_SSH_KEYS_MAX))
        return xasprintf("ssh_keys is not a list of at most %d keys",
                         POLICY_SSH_KEYS_MAX);
    json_array_foreach(keys, k, key)
        if (!json_is_string(key) ||
            json_string_length(key) > POLICY_SSH_KEY_MAX)
            return xasprintf("ssh_keys[%zu] is not a key of at most %d bytes",
                             k, POLICY_SSH_KEY_MAX);
    json_t *src = json_object_get(vm, "image_source");
    if (src && !json_is_null(src)) {
        const char *url = json_str(src, "url");
        json_t *iid = json_object_get(src, "id");
        if (!json_is_object(src) ||
            !policy_image_url_ok(url, h->controller,
                                 iid ? json_string_value(iid) : NULL) ||
            (iid && !json_is_string(iid))) {
            _cleanup_free_ char *q = quote(url);
            return xasprintf("image_source.url %s is not this controller's "
                             "image route", q);
        }
    }
    json_t *nics = json_object_get(vm, "nics"), *nic;
    if (nics && !json_is_null(nics) &&
        (!json_is_array(nics) || json_array_size(nics) > POLICY_NICS_MAX))
        return xasprintf("nics is not a list of at most %d", POLICY_NICS_MAX);
    size_t first = f->n_addrs;
    json_array_foreach(nics, k, nic) {
        struct paddr pa = { .vm_id = id };
        char *why = nic_check(f, nic, k, &pa);
        if (why) {
            f->n_addrs = first; /* none of its addresses stand */
            return why;
        }
        f->addrs = xrealloc(f->addrs, (f->n_addrs + 1) * sizeof(*f->addrs));
        f->addrs[f->n_addrs++] = pa;
    }
    return NULL;
}

static void filter_vms(struct filter *f, const json_t *arr, json_t *out)
{
    size_t i;
    json_t *vm;
    json_array_foreach(arr, i, vm) {
        const char *id = json_is_object(vm) ? json_str(vm, "id") : NULL;
        if (!uuid_is_valid(id)) {
            _cleanup_free_ char *obj = xasprintf("vms[%zu]", i);
            refuse(&f->rf, obj, "not an object with a valid id");
            continue;
        }
        _cleanup_free_ char *obj = xasprintf("vm %s", id);
        bool dup = false;
        for (size_t k = 0; k < f->n_vms && !dup; k++)
            dup = streq(f->vms[k], id);
        if (dup) {
            refuse(&f->rf, obj, "the VM appears twice");
            continue;
        }
        /* Deleting what is ours needs no trust in the rest of the entry. */
        if (json_bool(vm, "deleted", false)) {
            f->deleted = xrealloc(f->deleted,
                                  (f->n_deleted + 1) * sizeof(*f->deleted));
            snprintf(f->deleted[f->n_deleted++], UUID_STR_LEN + 1, "%s", id);
            json_array_append(out, vm);
            continue;
        }
        char *why = vm_check(f, vm, id);
        if (why) {
            refuse(&f->rf, obj, "%s", why);
            free(why);
            continue;
        }
        f->vms = xrealloc(f->vms, (f->n_vms + 1) * sizeof(*f->vms));
        snprintf(f->vms[f->n_vms++], UUID_STR_LEN + 1, "%s", id);
        json_array_append(out, vm);
    }
}

static bool has_port(const uint16_t *ports, size_t n, int64_t port)
{
    for (size_t i = 0; i < n; i++)
        if (ports[i] == port)
            return true;
    return false;
}

static int paddr_cmp(const void *a, const void *b)
{
    uint32_t x = ((const struct paddr *)a)->addr;
    uint32_t y = ((const struct paddr *)b)->addr;
    return x < y ? -1 : x > y;
}

/* Why published port `p` is refused, or NULL; an accepted one is marked
 * in f->published. */
static char *port_check(struct filter *f, const json_t *p)
{
    const struct policy_host *h = f->h;
    const char *proto = json_str(p, "proto");
    bool tcp = streq(proto, "tcp");
    int64_t hp, vp;
    if (!tcp && !streq(proto, "udp"))
        return xstrdup("proto is not tcp or udp");
    if (!int_in(p, "host_port", 1, 65535, &hp) ||
        !int_in(p, "vm_port", 1, 65535, &vp))
        return xstrdup("host_port or vm_port is not in 1..65535");
    if ((hp < h->port_min || hp > h->port_max) &&
        !has_port(h->permit_ports, h->n_permit, hp))
        return xasprintf("host port %lld is outside this node's range "
                         "%lld..%lld and not among its permitted ports",
                         (long long)hp, (long long)h->port_min,
                         (long long)h->port_max);
    if (hp == h->wg_port || hp == f->mesh_port)
        return xasprintf("host port %lld is the mesh's WireGuard port",
                         (long long)hp);
    if (!h->facts_known)
        return xstrdup("the host's listening ports are unknown");
    if (tcp ? has_port(h->tcp_ports, h->n_tcp, hp) :
              has_port(h->udp_ports, h->n_udp, hp))
        return xasprintf("host port %s/%lld is in use on the host", proto,
                         (long long)hp);
    uint8_t *bit = &f->published[tcp][hp / 8];
    if (*bit & (1u << (hp % 8)))
        return xstrdup("host port published twice");
    /* Addresses are unique among accepted VMs and only theirs are in
     * f->addrs (sorted): the address names the VM. */
    const char *vm_id = json_str(p, "vm_id");
    struct paddr key = { .addr = 0 };
    if (f->n_addrs > 0 &&
        ipam_addr_parse(json_str(p, "vm_address"), &key.addr) == 0) {
        const struct paddr *m = bsearch(&key, f->addrs, f->n_addrs,
                                        sizeof(*f->addrs), paddr_cmp);
        if (m && streq(m->vm_id, vm_id)) {
            *bit |= (uint8_t)(1u << (hp % 8));
            return NULL;
        }
    }
    bool vm_ok = false;
    for (size_t k = 0; k < f->n_vms && !vm_ok; k++)
        vm_ok = streq(f->vms[k], vm_id);
    if (!vm_ok)
        return xstrdup("vm_id is not an accepted VM of this document");
    _cleanup_free_ char *qa = quote(json_str(p, "vm_address"));
    return xasprintf("vm_address %s is not an address of the VM", qa);
}

static void filter_ports(struct filter *f, const json_t *arr, json_t *out)
{
    size_t i;
    json_t *p;
    json_array_foreach(arr, i, p) {
        /* A VM being deleted takes its ports along: nothing to refuse. */
        bool gone = false;
        for (size_t k = 0; k < f->n_deleted && !gone; k++)
            gone = streq(f->deleted[k], json_str(p, "vm_id"));
        if (gone)
            continue;
        char *why = json_is_object(p) ? port_check(f, p) :
                                        xstrdup("not an object");
        if (!why) {
            json_array_append(out, p);
            continue;
        }
        const char *proto = json_str(p, "proto");
        int64_t hp = json_int(p, "host_port", -1);
        _cleanup_free_ char *obj =
            (streq(proto, "tcp") || streq(proto, "udp")) && hp >= 0 &&
                    hp <= 65535 ?
                xasprintf("port %s/%lld", proto, (long long)hp) :
                xasprintf("ports[%zu]", i);
        refuse(&f->rf, obj, "%s", why);
        free(why);
    }
}

/* Mesh peers may speak only for mesh addresses: a peer whose allowed IPs
 * reach beyond the mesh range could send us packets from any address. */
static void filter_peers(struct filter *f, const json_t *arr, json_t *out)
{
    size_t i;
    json_t *p;
    json_array_foreach(arr, i, p) {
        const char *why = NULL;
        json_t *ips = json_object_get(p, "allowed_ips"), *ip;
        size_t k;
        if (!f->has_mesh)
            continue; /* no mesh of ours to put them on: nothing to say */
        if (!json_is_object(p) || !json_is_array(ips))
            why = "not an object with allowed_ips";
        json_array_foreach(ips, k, ip) {
            struct ipam_cidr c;
            if (!why && (ipam_cidr_parse(json_string_value(ip), true, &c,
                                         NULL) < 0 ||
                         c.prefix < f->mesh.prefix ||
                         !ipam_cidr_contains(&f->mesh, c.net)))
                why = "allowed_ips reach beyond the mesh range";
        }
        if (!why) {
            json_array_append(out, p);
            continue;
        }
        const char *node = json_is_object(p) ? json_str(p, "node_id") : NULL;
        _cleanup_free_ char *obj = uuid_is_valid(node) ?
            xasprintf("peer %s", node) : xasprintf("peers[%zu]", i);
        refuse(&f->rf, obj, "%s", why);
    }
}

/* The member `key` of doc as an array to filter; a member that is there
 * but no array is refused as a whole. */
static const json_t *member(struct filter *f, const json_t *doc,
                            const char *key)
{
    json_t *v = json_object_get(doc, key);
    if (v && !json_is_array(v) && !json_is_null(v))
        refuse(&f->rf, key, "not an array");
    return json_is_array(v) ? v : NULL;
}

int policy_filter(const json_t *doc, const struct policy_host *h,
                  json_t **ret_accepted, json_t **ret_refused)
{
    if (!json_is_object(doc))
        return -EINVAL;
    /* 16 KiB of port bitmaps: on the heap, not the agent's stack. */
    _cleanup_free_ struct filter *f = xcalloc(1, sizeof(*f));
    f->h = h;
    f->rf.list = json_array();
    json_t *mesh = json_object_get(doc, "mesh");
    uint32_t ma;
    int64_t mp;
    if (json_is_object(mesh) &&
        ipam_addr_parse(json_str(mesh, "address"), &ma) == 0 &&
        int_in(mesh, "prefix", 8, 32, &mp)) {
        f->has_mesh = true;
        f->mesh = (struct ipam_cidr){ ma & ipam_mask((int)mp), (int)mp };
        f->mesh_port = (uint16_t)json_int(mesh, "listen_port", 0);
    }
    json_t *nets = json_array(), *vms = json_array(), *ports = json_array();
    json_t *peers = json_array();
    filter_peers(f, member(f, doc, "peers"), peers);
    filter_networks(f, member(f, doc, "networks"), nets);
    filter_vms(f, member(f, doc, "vms"), vms);
    if (f->n_addrs > 0)
        qsort(f->addrs, f->n_addrs, sizeof(*f->addrs), paddr_cmp);
    filter_ports(f, member(f, doc, "ports"), ports);
    /* Objects are short by construction (ids, indexes, port numbers). */
    if (f->rf.dropped > 0) {
        _cleanup_free_ char *more = xasprintf("%zu further refusals not "
                                              "listed", f->rf.dropped);
        json_array_append_new(f->rf.list, json_pack("{s:s, s:s}", "object",
                                                    "more", "reason", more));
    }
    json_t *acc = json_copy((json_t *)doc);
    json_object_set_new(acc, "networks", nets);
    json_object_set_new(acc, "vms", vms);
    json_object_set_new(acc, "ports", ports);
    json_object_set_new(acc, "peers", peers);
    free(f->nets);
    free(f->refused_bridges);
    free(f->addrs);
    free(f->vms);
    free(f->deleted);
    *ret_accepted = acc;
    *ret_refused = f->rf.list;
    return 0;
}
