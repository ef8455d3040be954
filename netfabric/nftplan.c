/* nftables planning: the rule text for one node's tenant networks, VM
 * ports and published ports. Names are checked before they reach the text
 * and every list is written in the order given, so a plan is stable. */
#include "netfabric/nftplan.h"
#include "common/netcheck.h"

#include "netfabric/wg.h"

#include <arpa/inet.h>
#include <errno.h>

static void put_addr(struct buf *b, uint32_t a)
{
    char t[IPAM_ADDR_STRLEN];
    ipam_addr_format(a, t);
    buf_puts(b, t);
}

static void put_addr6(struct buf *b, const struct in6_addr *a)
{
    char t[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, a, t, sizeof(t));
    buf_puts(b, t);
}

/* An IPv6 address as the 128-bit integer a raw payload match compares
 * (nft 1.0.6 has no name for the neighbour discovery target). */
static void put_addr6_raw(struct buf *b, const struct in6_addr *a)
{
    buf_puts(b, "0x");
    for (int i = 0; i < 16; i++)
        buf_printf(b, "%02x", a->s6_addr[i]);
}

/* The target address of a neighbour solicitation or advertisement: bits
 * 64..191 of the ICMPv6 header. */
#define ND_TARGET "@th,64,128"

static void put_mac(struct buf *b, const uint8_t mac[6])
{
    char t[IPAM_MAC_STRLEN];
    ipam_mac_format(mac, t);
    buf_puts(b, t);
}

static int check_names(const struct nf_state *s)
{
    if (!net_ifname_ok(s->mesh_ifname))
        return -EINVAL;
    for (size_t i = 0; i < s->n_networks; i++)
        if (!net_ifname_ok(s->networks[i].bridge) ||
            !net_ifname_ok(s->networks[i].vxlan))
            return -EINVAL;
    for (size_t i = 0; i < s->n_vmports; i++)
        if (!net_ifname_ok(s->vmports[i].tap))
            return -EINVAL;
    for (size_t i = 0; i < s->n_published; i++) {
        const struct nf_publish *p = &s->published[i];
        if ((p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP) ||
            p->host_port == 0 || p->vm_port == 0)
            return -EINVAL;
    }
    for (size_t i = 0; i < s->n_egress_allow; i++) {
        const struct ipam_cidr *c = &s->egress_allow[i];
        if (c->prefix < 0 || c->prefix > 32 || (c->net & ~ipam_mask(c->prefix)))
            return -EINVAL;
    }
    if (s->has_mesh && (s->mesh_prefix < 0 || s->mesh_prefix > 32))
        return -EINVAL;
    return 0;
}

/* Destinations a tenant VM never reaches unless the provider opts in:
 * "this" network, RFC 1918, CGNAT (which holds the default mesh range),
 * loopback, link-local (the 169.254.169.254 metadata address), IETF
 * protocol assignments (DS-Lite's 192.0.0.0/29), multicast, reserved and
 * broadcast. Sorted and disjoint, as an interval set needs. The benchmark
 * range 198.18.0.0/15 is left out: it is not a LAN range, and tests stand
 * in for the internet with it. */
static const char *const BLOCKED4[] = {
    "0.0.0.0/8",      "10.0.0.0/8",     "100.64.0.0/10",
    "127.0.0.0/8",    "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24",   "192.168.0.0/16", "224.0.0.0/4",
    "240.0.0.0/4",
};
/* The IPv6 counterparts: loopback, IPv4-mapped, unique local, link-local,
 * multicast. VM taps pass no IPv6 at all (bridge table), so these guard
 * only what reaches a bridge some other way. */
static const char *const BLOCKED6[] = {
    "::1", "::ffff:0:0/96", "fc00::/7", "fe80::/10", "ff00::/8",
};

static void put_set(struct buf *b, const char *name, const char *type,
                    const char *const *elems, size_t n)
{
    buf_printf(b, "\tset %s {\n\t\ttype %s\n\t\tflags interval\n"
                  "\t\telements = { ", name, type);
    for (size_t i = 0; i < n; i++)
        buf_printf(b, "%s%s", i ? ", " : "", elems[i]);
    buf_puts(b, " }\n\t}\n");
}

static void put_cidr(struct buf *b, const struct ipam_cidr *c)
{
    put_addr(b, c->net);
    buf_printf(b, "/%d", c->prefix);
}

/* Forwarded traffic out of tenant bridges, after the isolation drops:
 * never to the mesh range, then the provider's opt-ins, then no private
 * destination. Whatever is left is internet egress (masqueraded). */
static void put_egress(const struct nf_state *s, struct buf *b)
{
    if (s->has_mesh) {
        struct ipam_cidr mesh = { s->mesh_addr & ipam_mask(s->mesh_prefix),
                                  s->mesh_prefix };
        buf_puts(b, "\t\tiifname @bridges ip daddr ");
        put_cidr(b, &mesh);
        buf_puts(b, " drop\n");
    }
    for (size_t i = 0; i < s->n_egress_allow; i++) {
        buf_puts(b, "\t\tiifname @bridges ip daddr ");
        put_cidr(b, &s->egress_allow[i]);
        buf_puts(b, " accept\n");
    }
    buf_puts(b, "\t\tiifname @bridges ip daddr @blocked4 counter drop\n"
                "\t\tiifname @bridges ip6 daddr @blocked6 counter drop\n");
}

/* A VM's tap shows at the IP layer only when it is on no bridge (bridged
 * and br_netfilter traffic carries the bridge's name): a tap that slipped
 * its bridge gets nothing through, before any accept. */
#define TAP_ESCAPED "\t\tiifname \"" NF_TAP_PREFIX "*\" counter drop\n"

/* Into the host from tenant bridges: replies to what the host started,
 * ICMP echo and DNS (UDP and TCP 53, the network's resolver) to the
 * network's own gateway only; nothing else (guests have static addresses
 * from cloud-init, so no DHCP). DNS is opened only where the node runs
 * resolvers (dns_dir) and only for networks that serve names (a label). */
static void put_input(const struct nf_state *s, struct buf *b)
{
    buf_puts(b, "\tchain input {\n"
                "\t\ttype filter hook input priority filter; policy accept;\n"
                TAP_ESCAPED
                "\t\tiifname != @bridges accept\n"
                "\t\tct state established,related accept\n");
    for (size_t i = 0; i < s->n_networks; i++) {
        const struct nf_network *n = &s->networks[i];
        buf_printf(b, "\t\tiifname \"%s\" ip daddr ", n->bridge);
        put_addr(b, n->gateway);
        buf_puts(b, " icmp type echo-request accept\n");
        if (n->has_v6) {
            /* Neighbour discovery with the host (link-local hop limit
             * 255 only) and echo to the IPv6 gateway. */
            buf_printf(b, "\t\tiifname \"%s\" icmpv6 type { "
                          "nd-neighbor-solicit, nd-neighbor-advert } ip6 "
                          "hoplimit 255 accept\n", n->bridge);
            buf_printf(b, "\t\tiifname \"%s\" ip6 daddr ", n->bridge);
            put_addr6(b, &n->gateway6);
            buf_puts(b, " icmpv6 type echo-request accept\n");
        }
        if (!s->dns_dir || !n->dns_label)
            continue;
        buf_printf(b, "\t\tiifname \"%s\" ip daddr ", n->bridge);
        put_addr(b, n->gateway);
        buf_puts(b, " meta l4proto { tcp, udp } th dport 53 accept\n");
        if (n->has_v6) {
            buf_printf(b, "\t\tiifname \"%s\" ip6 daddr ", n->bridge);
            put_addr6(b, &n->gateway6);
            buf_puts(b, " meta l4proto { tcp, udp } th dport 53 accept\n");
        }
    }
    buf_puts(b, "\t\tcounter drop\n"
                "\t}\n");
}

static void put_inet(const struct nf_state *s, struct buf *b)
{
    buf_puts(b, "table " NFTPLAN_TABLE_INET " {\n"
                "\tset bridges {\n\t\ttype ifname\n");
    if (s->n_networks > 0) {
        buf_puts(b, "\t\telements = { ");
        for (size_t i = 0; i < s->n_networks; i++)
            buf_printf(b, "%s\"%s\"", i ? ", " : "", s->networks[i].bridge);
        buf_puts(b, " }\n");
    }
    buf_puts(b, "\t}\n");
    put_set(b, "blocked4", "ipv4_addr", BLOCKED4, ARRAY_SIZE(BLOCKED4));
    put_set(b, "blocked6", "ipv6_addr", BLOCKED6, ARRAY_SIZE(BLOCKED6));
    /* Policy accept: a drop in any base chain is final, so the host's own
     * forwarding (containers, VPNs) must not fall into ours; every rule
     * that drops names our bridges. */
    buf_puts(b, "\tchain forward {\n"
                "\t\ttype filter hook forward priority filter; policy accept;\n"
                TAP_ESCAPED
                "\t\tct state established,related accept\n");
    /* With br_netfilter loaded, frames bridged within one network reach
     * this hook too, in and out through the same bridge: they pass. */
    for (size_t i = 0; i < s->n_networks; i++)
        buf_printf(b, "\t\tiifname \"%s\" oifname \"%s\" accept\n",
                   s->networks[i].bridge, s->networks[i].bridge);
    buf_printf(b,
               "\t\tct status dnat oifname @bridges accept\n"
               "\t\tiifname @bridges oifname @bridges drop\n"
               "\t\tiifname @bridges oifname \"%s\" drop\n"
               "\t\toifname @bridges drop\n",
               s->mesh_ifname);
    put_egress(s, b);
    buf_puts(b, "\t}\n");
    put_input(s, b);
    buf_puts(b, "}\n");
}

static void put_dnat_rules(const struct nf_state *s, struct buf *b)
{
    for (size_t i = 0; i < s->n_published; i++) {
        const struct nf_publish *p = &s->published[i];
        const char *proto = p->proto == IPPROTO_TCP ? "tcp" : "udp";
        buf_puts(b, "\t\t");
        if (s->public_addr) {
            buf_puts(b, "ip daddr ");
            put_addr(b, s->public_addr);
        } else {
            buf_puts(b, "fib daddr type local");
        }
        buf_printf(b, " %s dport %u dnat to ", proto, p->host_port);
        put_addr(b, p->vm_addr);
        buf_printf(b, ":%u\n", p->vm_port);
    }
}

/* A NAT table: published ports DNATed in prerouting (from outside) and
 * output (from the node itself), the networks masqueraded out. */
static void put_nat_table(const struct nf_state *s, struct buf *b,
                          const char *table,
                          void (*dnat)(const struct nf_state *, struct buf *),
                          void (*masquerade)(const struct nf_state *, struct buf *))
{
    buf_printf(b, "table %s {\n"
                  "\tchain prerouting {\n"
                  "\t\ttype nat hook prerouting priority dstnat; policy accept;\n",
               table);
    dnat(s, b);
    buf_puts(b, "\t}\n"
                "\tchain output {\n"
                "\t\ttype nat hook output priority -100; policy accept;\n");
    dnat(s, b);
    buf_puts(b, "\t}\n"
                "\tchain postrouting {\n"
                "\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
    masquerade(s, b);
    buf_puts(b, "\t}\n}\n");
}

static void put_masquerade_rules(const struct nf_state *s, struct buf *b)
{
    for (size_t i = 0; i < s->n_networks; i++) {
        const struct nf_network *n = &s->networks[i];
        buf_puts(b, "\t\tip saddr ");
        put_addr(b, n->cidr.net);
        buf_printf(b, "/%d oifname != \"%s\" masquerade\n", n->cidr.prefix,
                   n->bridge);
    }
}

/* IPv6 published ports: DNAT from the node's global IPv6 address to the
 * VM's address (its unique local one), the same host port as IPv4. Only
 * with such an address: without one nothing reaches the node over IPv6
 * from outside. */
static void put_dnat6_rules(const struct nf_state *s, struct buf *b)
{
    for (size_t i = 0; s->has_public_addr6 && i < s->n_published; i++) {
        const struct nf_publish *p = &s->published[i];
        if (!p->has_vm_addr6)
            continue;
        buf_puts(b, "\t\tip6 daddr ");
        put_addr6(b, &s->public_addr6);
        buf_printf(b, " %s dport %u dnat to [",
                   p->proto == IPPROTO_TCP ? "tcp" : "udp", p->host_port);
        put_addr6(b, &p->vm_addr6);
        buf_printf(b, "]:%u\n", p->vm_port);
    }
}

/* NAT66: the unique local /64s leave masqueraded behind the node's global
 * address, as IPv4 does (a routed prefix per node would be the
 * alternative). */
static void put_masquerade6_rules(const struct nf_state *s, struct buf *b)
{
    for (size_t i = 0; i < s->n_networks; i++) {
        const struct nf_network *n = &s->networks[i];
        if (!n->has_v6)
            continue;
        buf_puts(b, "\t\tip6 saddr ");
        put_addr6(b, &n->prefix6);
        buf_printf(b, "/64 oifname != \"%s\" masquerade\n", n->bridge);
    }
}

static void put_bridge(const struct nf_state *s, struct buf *b)
{
    buf_puts(b, "table " NFTPLAN_TABLE_BRIDGE " {\n"
                "\tset vm_ports {\n\t\ttype ifname\n");
    if (s->n_vmports > 0) {
        buf_puts(b, "\t\telements = { ");
        for (size_t i = 0; i < s->n_vmports; i++)
            buf_printf(b, "%s\"%s\"", i ? ", " : "", s->vmports[i].tap);
        buf_puts(b, " }\n");
    }
    buf_puts(b, "\t}\n\tset vm_macs {\n\t\ttype ifname . ether_addr\n");
    if (s->n_vmports > 0) {
        buf_puts(b, "\t\telements = { ");
        for (size_t i = 0; i < s->n_vmports; i++) {
            buf_printf(b, "%s\"%s\" . ", i ? ", " : "", s->vmports[i].tap);
            put_mac(b, s->vmports[i].mac);
        }
        buf_puts(b, " }\n");
    }
    buf_puts(b, "\t}\n\tset vm_addrs {\n"
                "\t\ttype ifname . ether_addr . ipv4_addr\n");
    if (s->n_vmports > 0) {
        buf_puts(b, "\t\telements = { ");
        for (size_t i = 0; i < s->n_vmports; i++) {
            buf_printf(b, "%s\"%s\" . ", i ? ", " : "", s->vmports[i].tap);
            put_mac(b, s->vmports[i].mac);
            buf_puts(b, " . ");
            put_addr(b, s->vmports[i].addr);
        }
        buf_puts(b, " }\n");
    }
    buf_puts(b, "\t}\n\tset vm_addrs6 {\n"
                "\t\ttype ifname . ether_addr . ipv6_addr\n");
    bool any6 = false;
    for (size_t i = 0; i < s->n_vmports; i++) {
        const struct nf_vmport *v = &s->vmports[i];
        if (!v->has_addr6)
            continue;
        for (int k = 0; k < 2; k++) {
            buf_printf(b, "%s\"%s\" . ", any6 ? ", " : "\t\telements = { ",
                       v->tap);
            put_mac(b, v->mac);
            buf_puts(b, " . ");
            put_addr6(b, k == 0 ? &v->addr6 : &v->link_local);
            any6 = true;
        }
    }
    if (any6)
        buf_puts(b, " }\n");
    buf_puts(b,
             "\t}\n"
             "\tchain prerouting {\n"
             "\t\ttype filter hook prerouting priority -200; policy accept;\n");
    /* Every node's bridge holds the network's gateway address (anycast)
     * with its own MAC: ARP about it stays on its node. A remote node's
     * answer, or its request, would teach local VMs that node's MAC for
     * the gateway, and their egress and the replies of published ports
     * would leave through that node, whose conntrack knows nothing of
     * them. */
    for (size_t i = 0; i < s->n_networks; i++) {
        const struct nf_network *n = &s->networks[i];
        buf_printf(b, "\t\tiifname \"%s\" ether type arp arp saddr ip ",
                   n->vxlan);
        put_addr(b, n->gateway);
        buf_printf(b, " drop\n\t\tiifname \"%s\" ether type arp arp daddr "
                      "ip ", n->vxlan);
        put_addr(b, n->gateway);
        buf_puts(b, " drop\n");
        if (!n->has_v6)
            continue;
        /* Its IPv6 twin: neighbour discovery from or about the gateway's
         * IPv6 address, and router advertisements, stay on their node. */
        buf_printf(b, "\t\tiifname \"%s\" icmpv6 type { nd-neighbor-solicit, "
                      "nd-neighbor-advert } ip6 saddr ", n->vxlan);
        put_addr6(b, &n->gateway6);
        buf_printf(b, " drop\n\t\tiifname \"%s\" icmpv6 type { "
                      "nd-neighbor-solicit, nd-neighbor-advert } " ND_TARGET
                      " ", n->vxlan);
        put_addr6_raw(b, &n->gateway6);
        buf_printf(b, " drop\n\t\tiifname \"%s\" icmpv6 type "
                      "nd-router-advert drop\n", n->vxlan);
    }
    buf_puts(b,
             "\t\tiifname != @vm_ports accept\n"
             "\t\tiifname . ether saddr != @vm_macs drop\n"
             "\t\tether type arp iifname . arp saddr ether . arp saddr ip "
             "@vm_addrs accept\n"
             "\t\tether type ip udp sport 67 drop\n"
             "\t\tether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 "
             "udp sport 68 udp dport 67 accept\n"
             "\t\tether type ip iifname . ether saddr . ip saddr @vm_addrs "
             "accept\n"
             /* A VM is no router, and advertises only its own addresses. */
             "\t\ticmpv6 type { nd-router-advert, nd-redirect } drop\n");
    for (size_t i = 0; i < s->n_vmports; i++) {
        const struct nf_vmport *v = &s->vmports[i];
        if (!v->has_addr6)
            continue;
        buf_printf(b, "\t\tiifname \"%s\" icmpv6 type nd-neighbor-advert "
                      ND_TARGET " != { ", v->tap);
        put_addr6_raw(b, &v->addr6);
        buf_puts(b, ", ");
        put_addr6_raw(b, &v->link_local);
        buf_puts(b, " } drop\n");
    }
    buf_puts(b,
             "\t\tether type ip6 iifname . ether saddr . ip6 saddr "
             "@vm_addrs6 accept\n"
             "\t\tdrop\n"
             "\t}\n"
             "}\n");
}

int nftplan_build(const struct nf_state *s, struct buf *out)
{
    int r = check_names(s);
    if (r < 0)
        return r;
    put_inet(s, out);
    put_nat_table(s, out, NFTPLAN_TABLE_NAT, put_dnat_rules,
                  put_masquerade_rules);
    put_nat_table(s, out, NFTPLAN_TABLE_NAT6, put_dnat6_rules,
                  put_masquerade6_rules);
    put_bridge(s, out);
    return 0;
}

int nftplan_script(const struct nf_state *s, struct buf *out)
{
    struct buf body = BUF_INIT;
    int r = nftplan_build(s, &body);
    if (r < 0) {
        buf_free(&body);
        return r;
    }
    nftplan_teardown(out);
    buf_append(out, body.data, body.len);
    buf_free(&body);
    return 0;
}

void nftplan_teardown(struct buf *out)
{
    /* "add" makes each table exist so the "delete" never fails. */
    buf_puts(out, "add table " NFTPLAN_TABLE_INET "\n"
                  "delete table " NFTPLAN_TABLE_INET "\n"
                  "add table " NFTPLAN_TABLE_NAT "\n"
                  "delete table " NFTPLAN_TABLE_NAT "\n"
                  "add table " NFTPLAN_TABLE_NAT6 "\n"
                  "delete table " NFTPLAN_TABLE_NAT6 "\n"
                  "add table " NFTPLAN_TABLE_BRIDGE "\n"
                  "delete table " NFTPLAN_TABLE_BRIDGE "\n");
}
