/* The desired-state document, as sent by the controller, turned into the
 * plain values netfabric plans from. Everything in it is input: checked. */
#include "netfabric/state.h"
#include "common/netcheck.h"

#include "api/agentproto.h"
#include "common/jsonutil.h"
#include "netfabric/wg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

void nf_state_clear(struct nf_state *s)
{
    for (size_t i = 0; i < s->n_peers; i++) {
        free(s->peers[i].node_id);
        free(s->peers[i].endpoint);
        free(s->peers[i].allowed_ips);
    }
    free(s->peers);
    for (size_t i = 0; i < s->n_networks; i++) {
        free(s->networks[i].vteps);
        free(s->networks[i].macs);
        free(s->networks[i].dns_label);
        for (size_t k = 0; k < s->networks[i].n_records; k++)
            free(s->networks[i].records[k].name);
        free(s->networks[i].records);
    }
    free(s->networks);
    free(s->vmports);
    free(s->published);
    explicit_bzero(s, sizeof(*s));
}

int netfabric_tap_name(const char *vm_id, unsigned idx, char out[IFNAMSIZ])
{
    char hex[9];
    size_t n = 0;
    for (const char *p = vm_id; p && *p && n < 8; p++) {
        char c = *p;
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))
            hex[n++] = c;
        else if (c != '-')
            return -EINVAL;
    }
    if (n < 8 || idx > 99)
        return -EINVAL;
    hex[8] = '\0';
    snprintf(out, IFNAMSIZ, NF_TAP_PREFIX "%s%u", hex, idx);
    return 0;
}

void netfabric_bridge_name(uint32_t vxlan_id, char out[IFNAMSIZ])
{
    snprintf(out, IFNAMSIZ, "fogbr%u", vxlan_id);
}

void netfabric_vxlan_name(uint32_t vxlan_id, char out[IFNAMSIZ])
{
    snprintf(out, IFNAMSIZ, "vxlan%u", vxlan_id);
}

void netfabric_link_local(const uint8_t mac[6], struct in6_addr *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->s6_addr[0] = 0xfe;
    ret->s6_addr[1] = 0x80;
    ret->s6_addr[8] = mac[0] ^ 0x02;
    ret->s6_addr[9] = mac[1];
    ret->s6_addr[10] = mac[2];
    ret->s6_addr[11] = 0xff;
    ret->s6_addr[12] = 0xfe;
    ret->s6_addr[13] = mac[3];
    ret->s6_addr[14] = mac[4];
    ret->s6_addr[15] = mac[5];
}

/* IPv6 text (no prefix). 0 or -EINVAL. */
static int addr6_parse(const char *text, struct in6_addr *ret)
{
    if (!text || strlen(text) >= INET6_ADDRSTRLEN ||
        inet_pton(AF_INET6, text, ret) != 1)
        return -EINVAL;
    return 0;
}

static bool in_prefix64(const struct in6_addr *prefix, const struct in6_addr *a)
{
    return memcmp(prefix->s6_addr, a->s6_addr, 8) == 0;
}

/* A network's optional /64 and gateway: a unique local /64 ("p::/64",
 * host bits zero) and a gateway inside it. Absent: IPv4 only. */
static int parse_v6(const json_t *w, struct nf_network *n)
{
    const char *cidr6 = json_str(w, AGENT_NET_CIDR6);
    const char *gw6 = json_str(w, AGENT_NET_GATEWAY6);
    if (!json_object_get(w, AGENT_NET_CIDR6) &&
        !json_object_get(w, AGENT_NET_GATEWAY6))
        return 0;
    const char *slash = cidr6 ? strchr(cidr6, '/') : NULL;
    char head[INET6_ADDRSTRLEN];
    if (!slash || !streq(slash, "/64") ||
        (size_t)(slash - cidr6) >= sizeof(head))
        return -EINVAL;
    memcpy(head, cidr6, (size_t)(slash - cidr6));
    head[slash - cidr6] = '\0';
    static const uint8_t zero[8];
    if (addr6_parse(head, &n->prefix6) < 0 ||
        memcmp(n->prefix6.s6_addr + 8, zero, 8) != 0 ||
        (n->prefix6.s6_addr[0] & 0xfe) != 0xfc ||
        addr6_parse(gw6, &n->gateway6) < 0 ||
        !in_prefix64(&n->prefix6, &n->gateway6) ||
        memcmp(&n->gateway6, &n->prefix6, 16) == 0)
        return -EINVAL;
    n->has_v6 = true;
    return 0;
}

static int fail(char **ret_error, const char *fmt, ...) _printf_(2, 3);
static int fail(char **ret_error, const char *fmt, ...)
{
    if (ret_error) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
            *ret_error = NULL;
        va_end(ap);
    }
    return -EINVAL;
}

static int get_u16(const json_t *o, const char *k, uint16_t *ret)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > 65535)
        return -EINVAL;
    *ret = (uint16_t)json_integer_value(v);
    return 0;
}

static int parse_mesh(const json_t *m, struct nf_state *s, char **err)
{
    if (!m || json_is_null(m))
        return 0;
    if (!json_is_object(m))
        return fail(err, "mesh: not an object");
    if (ipam_addr_parse(json_str(m, "address"), &s->mesh_addr) < 0)
        return fail(err, "mesh.address: invalid");
    int64_t p = json_int(m, "prefix", -1);
    if (p < 8 || p > 32)
        return fail(err, "mesh.prefix: invalid");
    s->mesh_prefix = (int)p;
    if (get_u16(m, "listen_port", &s->listen_port) < 0 || s->listen_port == 0)
        return fail(err, "mesh.listen_port: invalid");
    s->has_mesh = true;
    return 0;
}

static int parse_peers(const json_t *arr, struct nf_state *s, char **err)
{
    size_t i;
    json_t *p;
    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return fail(err, "peers: not an array");
    s->peers = xcalloc(json_array_size(arr) + 1, sizeof(*s->peers));
    json_array_foreach(arr, i, p) {
        struct nf_peer *q = &s->peers[s->n_peers++];
        if (!json_is_object(p))
            return fail(err, "peers[%zu]: not an object", i);
        if (json_str(p, "node_id"))
            q->node_id = xstrdup(json_str(p, "node_id"));
        if (wgkey_from_base64(json_str(p, "public_key"), q->public_key) < 0)
            return fail(err, "peers[%zu].public_key: invalid", i);
        const char *ep = json_str(p, "endpoint");
        union wg_endpoint e;
        if (ep && wg_endpoint_parse(ep, &e) < 0)
            return fail(err, "peers[%zu].endpoint: invalid '%s'", i, ep);
        if (ep)
            q->endpoint = xstrdup(ep);
        json_t *kv = json_object_get(p, "keepalive");
        if (kv && get_u16(p, "keepalive", &q->keepalive) < 0)
            return fail(err, "peers[%zu].keepalive: invalid", i);
        json_t *ips = json_object_get(p, "allowed_ips");
        if (!json_is_array(ips))
            return fail(err, "peers[%zu].allowed_ips: not an array", i);
        q->allowed_ips = xcalloc(json_array_size(ips) + 1,
                                 sizeof(*q->allowed_ips));
        size_t k;
        json_t *ip;
        json_array_foreach(ips, k, ip) {
            if (ipam_cidr_parse(json_string_value(ip), true,
                                &q->allowed_ips[q->n_allowed_ips], NULL) < 0)
                return fail(err, "peers[%zu].allowed_ips[%zu]: invalid", i, k);
            q->n_allowed_ips++;
        }
        for (size_t j = 0; j + 1 < s->n_peers; j++)
            if (wgkey_equal(s->peers[j].public_key, q->public_key))
                return fail(err, "peers[%zu].public_key: duplicate", i);
    }
    return 0;
}

static int parse_ifname(const json_t *o, const char *k, char out[IFNAMSIZ])
{
    const char *v = json_str(o, k);
    if (!net_ifname_ok(v))
        return -EINVAL;
    snprintf(out, IFNAMSIZ, "%s", v);
    return 0;
}

/* The network's names. A label is checked here (it names the resolver's
 * zone); record names are kept as sent and checked where the hosts file
 * is written, so one odd name costs only its own line. -EINVAL for a bad
 * label, -EBADMSG for bad records. */
static int parse_names(const json_t *w, struct nf_network *n)
{
    const json_t *label = json_object_get(w, AGENT_NET_DNS_LABEL);
    const json_t *recs = json_object_get(w, AGENT_NET_RECORDS);
    if (label && !json_is_null(label)) {
        if (!net_dns_label_ok(json_string_value(label)))
            return -EINVAL;
        n->dns_label = xstrdup(json_string_value(label));
    }
    if (!recs || json_is_null(recs))
        return 0;
    if (!json_is_array(recs) || json_array_size(recs) > AGENT_NET_RECORDS_MAX)
        return -EBADMSG;
    n->records = xcalloc(json_array_size(recs) + 1, sizeof(*n->records));
    size_t k;
    json_t *v;
    json_array_foreach(recs, k, v) {
        const char *name = json_str(v, "name");
        uint32_t addr;
        if (!name || strlen(name) > AGENT_TEXT_MAX ||
            ipam_addr_parse(json_str(v, "address"), &addr) < 0)
            return -EBADMSG;
        struct nf_record *rec = &n->records[n->n_records++];
        rec->name = xstrdup(name);
        rec->addr = addr;
        /* AAAA only inside the network's own /64. */
        if (n->has_v6 && json_str(v, AGENT_REC_ADDRESS6) &&
            addr6_parse(json_str(v, AGENT_REC_ADDRESS6), &rec->addr6) == 0 &&
            in_prefix64(&n->prefix6, &rec->addr6))
            rec->has_addr6 = true;
    }
    return 0;
}

static int parse_networks(const json_t *arr, struct nf_state *s, char **err)
{
    size_t i;
    json_t *w;
    int e;
    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return fail(err, "networks: not an array");
    s->networks = xcalloc(json_array_size(arr) + 1, sizeof(*s->networks));
    json_array_foreach(arr, i, w) {
        struct nf_network *n = &s->networks[s->n_networks++];
        if (!json_is_object(w))
            return fail(err, "networks[%zu]: not an object", i);
        int64_t id = json_int(w, "vxlan_id", 0);
        if (id < 1 || id >= (1 << 24))
            return fail(err, "networks[%zu].vxlan_id: invalid", i);
        n->vxlan_id = (uint32_t)id;
        netfabric_vxlan_name(n->vxlan_id, n->vxlan);
        if (ipam_cidr_parse(json_str(w, "cidr"), true, &n->cidr, NULL) < 0 ||
            n->cidr.prefix < 8 || n->cidr.prefix > 30)
            return fail(err, "networks[%zu].cidr: invalid", i);
        if (ipam_addr_parse(json_str(w, "gateway"), &n->gateway) < 0 ||
            !ipam_cidr_contains(&n->cidr, n->gateway))
            return fail(err, "networks[%zu].gateway: invalid", i);
        int64_t mtu = json_int(w, "mtu", 1370);
        if (mtu < 576 || mtu > 9000)
            return fail(err, "networks[%zu].mtu: invalid", i);
        n->mtu = (unsigned)mtu;
        if (json_object_get(w, "bridge")) {
            if (parse_ifname(w, "bridge", n->bridge) < 0)
                return fail(err, "networks[%zu].bridge: invalid", i);
        } else {
            netfabric_bridge_name(n->vxlan_id, n->bridge);
        }
        for (size_t j = 0; j + 1 < s->n_networks; j++)
            if (s->networks[j].vxlan_id == n->vxlan_id ||
                streq(s->networks[j].bridge, n->bridge))
                return fail(err, "networks[%zu]: duplicate", i);
        json_t *vteps = json_object_get(w, "vteps");
        json_t *macs = json_object_get(w, "macs");
        if ((vteps && !json_is_array(vteps)) || (macs && !json_is_array(macs)))
            return fail(err, "networks[%zu]: vteps/macs not arrays", i);
        n->vteps = xcalloc(json_array_size(vteps) + 1, sizeof(*n->vteps));
        size_t k;
        json_t *v;
        json_array_foreach(vteps, k, v)
            if (ipam_addr_parse(json_string_value(v), &n->vteps[n->n_vteps++]) < 0)
                return fail(err, "networks[%zu].vteps[%zu]: invalid", i, k);
        n->macs = xcalloc(json_array_size(macs) + 1, sizeof(*n->macs));
        json_array_foreach(macs, k, v) {
            struct nf_mac *m = &n->macs[n->n_macs++];
            if (!json_is_object(v) || ipam_mac_parse(json_str(v, "mac"), m->mac) < 0 ||
                ipam_addr_parse(json_str(v, "vtep"), &m->vtep) < 0 ||
                (m->mac[0] & 1))
                return fail(err, "networks[%zu].macs[%zu]: invalid", i, k);
        }
        if (parse_v6(w, n) < 0)
            return fail(err, "networks[%zu].%s: invalid", i, AGENT_NET_CIDR6);
        for (size_t j = 0; n->has_v6 && j + 1 < s->n_networks; j++)
            if (s->networks[j].has_v6 &&
                memcmp(&s->networks[j].prefix6, &n->prefix6, 8) == 0)
                return fail(err, "networks[%zu].%s: duplicate", i,
                            AGENT_NET_CIDR6);
        if ((e = parse_names(w, n)) < 0)
            return fail(err, "networks[%zu].%s: invalid", i,
                        e == -EBADMSG ? AGENT_NET_RECORDS : AGENT_NET_DNS_LABEL);
    }
    return 0;
}

static int parse_ports(const json_t *arr, struct nf_state *s, char **err)
{
    size_t i;
    json_t *p;
    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return fail(err, "ports: not an array");
    s->published = xcalloc(json_array_size(arr) + 1, sizeof(*s->published));
    json_array_foreach(arr, i, p) {
        struct nf_publish *q = &s->published[s->n_published++];
        const char *proto = json_is_object(p) ? json_str(p, "proto") : NULL;
        if (streq(proto, "tcp"))
            q->proto = IPPROTO_TCP;
        else if (streq(proto, "udp"))
            q->proto = IPPROTO_UDP;
        else
            return fail(err, "ports[%zu].proto: invalid", i);
        if (get_u16(p, "host_port", &q->host_port) < 0 || q->host_port == 0 ||
            get_u16(p, "vm_port", &q->vm_port) < 0 || q->vm_port == 0)
            return fail(err, "ports[%zu]: invalid port", i);
        if (ipam_addr_parse(json_str(p, "vm_address"), &q->vm_addr) < 0)
            return fail(err, "ports[%zu].vm_address: invalid", i);
        for (size_t j = 0; j + 1 < s->n_published; j++)
            if (s->published[j].proto == q->proto &&
                s->published[j].host_port == q->host_port)
                return fail(err, "ports[%zu]: host port %u published twice", i,
                            q->host_port);
    }
    return 0;
}

/* A NIC's IPv6 address counts only inside the /64 of the network on its
 * bridge and not as the gateway: anything else leaves the NIC IPv4 only
 * (its tap then passes no IPv6 at all). */
static void nic_v6(const struct nf_state *s, const json_t *nic,
                   struct nf_vmport *v)
{
    struct in6_addr a;
    if (addr6_parse(json_str(nic, AGENT_NIC_ADDRESS6), &a) < 0)
        return;
    for (size_t i = 0; i < s->n_networks; i++) {
        const struct nf_network *n = &s->networks[i];
        if (!streq(n->bridge, v->bridge) || !n->has_v6 ||
            !in_prefix64(&n->prefix6, &a) ||
            memcmp(&a, &n->gateway6, 16) == 0 ||
            memcmp(&a, &n->prefix6, 16) == 0)
            continue;
        v->addr6 = a;
        v->has_addr6 = true;
        netfabric_link_local(v->mac, &v->link_local);
    }
}

/* A published port answers over IPv6 at the IPv6 address of the NIC
 * holding its IPv4 address. */
static void ports_v6(struct nf_state *s)
{
    for (size_t i = 0; i < s->n_published; i++)
        for (size_t k = 0; k < s->n_vmports; k++)
            if (s->vmports[k].has_addr6 &&
                s->vmports[k].addr == s->published[i].vm_addr) {
                s->published[i].has_vm_addr6 = true;
                s->published[i].vm_addr6 = s->vmports[k].addr6;
            }
}

static int parse_vms(const json_t *arr, struct nf_state *s, char **err)
{
    size_t i;
    json_t *vm;
    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return fail(err, "vms: not an array");
    json_array_foreach(arr, i, vm) {
        if (!json_is_object(vm))
            return fail(err, "vms[%zu]: not an object", i);
        if (json_bool(vm, "deleted", false))
            continue;
        json_t *nics = json_object_get(vm, "nics");
        if (!nics)
            continue;
        if (!json_is_array(nics))
            return fail(err, "vms[%zu].nics: not an array", i);
        size_t k;
        json_t *nic;
        json_array_foreach(nics, k, nic) {
            s->vmports = xrealloc(s->vmports,
                                  (s->n_vmports + 1) * sizeof(*s->vmports));
            struct nf_vmport *v = &s->vmports[s->n_vmports++];
            memset(v, 0, sizeof(*v));
            if (netfabric_tap_name(json_str(vm, "id"), (unsigned)k, v->tap) < 0)
                return fail(err, "vms[%zu].id: invalid", i);
            if (!json_is_object(nic) || ipam_mac_parse(json_str(nic, "mac"), v->mac) < 0 ||
                (v->mac[0] & 1))
                return fail(err, "vms[%zu].nics[%zu].mac: invalid", i, k);
            if (ipam_addr_parse(json_str(nic, "address"), &v->addr) < 0)
                return fail(err, "vms[%zu].nics[%zu].address: invalid", i, k);
            if (parse_ifname(nic, "bridge", v->bridge) < 0)
                return fail(err, "vms[%zu].nics[%zu].bridge: invalid", i, k);
            nic_v6(s, nic, v);
        }
    }
    return 0;
}

int netfabric_state_from_json(const json_t *doc, const char *mesh_ifname,
                              struct nf_state *ret, char **ret_error)
{
    struct nf_state s = { 0 };
    if (ret_error)
        *ret_error = NULL;
    if (!json_is_object(doc))
        return fail(ret_error, "document: not an object");
    if (!mesh_ifname)
        mesh_ifname = NF_MESH_IFNAME;
    if (!net_ifname_ok(mesh_ifname))
        return fail(ret_error, "mesh interface '%s': invalid", mesh_ifname);
    snprintf(s.mesh_ifname, sizeof(s.mesh_ifname), "%s", mesh_ifname);
    int r = parse_mesh(json_object_get(doc, "mesh"), &s, ret_error);
    if (r == 0)
        r = parse_peers(json_object_get(doc, "peers"), &s, ret_error);
    if (r == 0)
        r = parse_networks(json_object_get(doc, "networks"), &s, ret_error);
    if (r == 0)
        r = parse_ports(json_object_get(doc, "ports"), &s, ret_error);
    if (r == 0)
        r = parse_vms(json_object_get(doc, "vms"), &s, ret_error);
    if (r == 0)
        ports_v6(&s);
    if (r < 0) {
        nf_state_clear(&s);
        return r;
    }
    *ret = s;
    return 0;
}
