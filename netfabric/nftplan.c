/* nftables planning: the rule text for one node's tenant networks, VM
 * ports and published ports. Names are checked before they reach the text
 * and every list is written in the order given, so a plan is stable. */
#include "netfabric/nftplan.h"

#include "netfabric/wg.h"

#include <errno.h>

static void put_addr(struct buf *b, uint32_t a)
{
    char t[IPAM_ADDR_STRLEN];
    ipam_addr_format(a, t);
    buf_puts(b, t);
}

static void put_mac(struct buf *b, const uint8_t mac[6])
{
    char t[IPAM_MAC_STRLEN];
    ipam_mac_format(mac, t);
    buf_puts(b, t);
}

static int check_names(const struct nf_state *s)
{
    if (!wg_ifname_valid(s->mesh_ifname))
        return -EINVAL;
    for (size_t i = 0; i < s->n_networks; i++)
        if (!wg_ifname_valid(s->networks[i].bridge))
            return -EINVAL;
    for (size_t i = 0; i < s->n_vmports; i++)
        if (!wg_ifname_valid(s->vmports[i].tap))
            return -EINVAL;
    for (size_t i = 0; i < s->n_published; i++) {
        const struct nf_publish *p = &s->published[i];
        if ((p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP) ||
            p->host_port == 0 || p->vm_port == 0)
            return -EINVAL;
    }
    return 0;
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
    buf_puts(b, "\t}\n"
                "\tchain forward {\n"
                "\t\ttype filter hook forward priority filter; policy accept;\n"
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
               "\t\toifname @bridges drop\n"
               "\t}\n"
               "\tchain input {\n"
               "\t\ttype filter hook input priority filter; policy accept;\n"
               "\t\tiifname != @bridges accept\n"
               "\t\tct state established,related accept\n"
               "\t\tmeta l4proto icmp accept\n"
               "\t\tudp dport { 53, 67 } accept\n"
               "\t\ttcp dport 53 accept\n"
               "\t\tdrop\n"
               "\t}\n"
               "}\n",
               s->mesh_ifname);
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

static void put_nat(const struct nf_state *s, struct buf *b)
{
    buf_puts(b, "table " NFTPLAN_TABLE_NAT " {\n"
                "\tchain prerouting {\n"
                "\t\ttype nat hook prerouting priority dstnat; policy accept;\n");
    put_dnat_rules(s, b);
    buf_puts(b, "\t}\n"
                "\tchain output {\n"
                "\t\ttype nat hook output priority -100; policy accept;\n");
    put_dnat_rules(s, b);
    buf_puts(b, "\t}\n"
                "\tchain postrouting {\n"
                "\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
    for (size_t i = 0; i < s->n_networks; i++) {
        const struct nf_network *n = &s->networks[i];
        buf_puts(b, "\t\tip saddr ");
        put_addr(b, n->cidr.net);
        buf_printf(b, "/%d oifname != \"%s\" masquerade\n", n->cidr.prefix,
                   n->bridge);
    }
    buf_puts(b, "\t}\n}\n");
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
    buf_puts(b,
             "\t}\n"
             "\tchain prerouting {\n"
             "\t\ttype filter hook prerouting priority -200; policy accept;\n"
             "\t\tiifname != @vm_ports accept\n"
             "\t\tiifname . ether saddr != @vm_macs drop\n"
             "\t\tether type arp iifname . arp saddr ether . arp saddr ip "
             "@vm_addrs accept\n"
             "\t\tether type ip udp sport 67 drop\n"
             "\t\tether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 "
             "udp sport 68 udp dport 67 accept\n"
             "\t\tether type ip iifname . ether saddr . ip saddr @vm_addrs "
             "accept\n"
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
    put_nat(s, out);
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
                  "add table " NFTPLAN_TABLE_BRIDGE "\n"
                  "delete table " NFTPLAN_TABLE_BRIDGE "\n");
}
