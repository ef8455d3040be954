/* Unit tests for netfabric/nftplan and the desired-document parser that
 * feeds it: the exact rules for isolation, anti-spoofing, DNAT and
 * masquerade, and refusal of documents that could inject text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "netfabric/nftplan.h"
#include "netfabric/resolver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>

static const char *DOC =
    "{\"revision\": 7, \"node_id\": \"n1\","
    " \"mesh\": {\"address\": \"100.96.0.1\", \"prefix\": 12, \"listen_port\": 51820},"
    " \"peers\": [{\"node_id\": \"n2\", \"name\": \"b\","
    "   \"public_key\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\","
    "   \"endpoint\": \"192.0.2.2:51820\", \"allowed_ips\": [\"100.96.0.2/32\"],"
    "   \"keepalive\": 25}],"
    " \"networks\": [{\"id\": \"w1\", \"vxlan_id\": 1000, \"cidr\": \"10.1.0.0/24\","
    "   \"gateway\": \"10.1.0.1\", \"mtu\": 1370, \"bridge\": \"fogbr1000\","
    "   \"vteps\": [\"100.96.0.2\"], \"macs\": [{\"mac\": \"52:54:00:00:00:22\","
    "   \"vtep\": \"100.96.0.2\"}]},"
    "  {\"id\": \"w2\", \"vxlan_id\": 1001, \"cidr\": \"10.2.0.0/24\","
    "   \"gateway\": \"10.2.0.1\", \"mtu\": 1370, \"bridge\": \"fogbr1001\","
    "   \"vteps\": [], \"macs\": []}],"
    " \"ports\": [{\"vm_id\": \"v\", \"proto\": \"tcp\", \"host_port\": 20080,"
    "   \"vm_port\": 80, \"vm_address\": \"10.1.0.5\"},"
    "  {\"vm_id\": \"v\", \"proto\": \"udp\", \"host_port\": 27015,"
    "   \"vm_port\": 27015, \"vm_address\": \"10.1.0.5\"}],"
    " \"vms\": [{\"id\": \"0123abcd-0000-4000-8000-000000000001\", \"deleted\": false,"
    "   \"nics\": [{\"network_id\": \"w1\", \"mac\": \"52:54:00:00:00:05\","
    "   \"address\": \"10.1.0.5\", \"prefix\": 24, \"gateway\": \"10.1.0.1\","
    "   \"mtu\": 1370, \"bridge\": \"fogbr1000\"}]},"
    "  {\"id\": \"ffffeeee-0000-4000-8000-000000000002\", \"deleted\": true,"
    "   \"nics\": [{\"network_id\": \"w2\", \"mac\": \"52:54:00:00:00:09\","
    "   \"address\": \"10.2.0.9\", \"bridge\": \"fogbr1001\"}]},"
    "  {\"id\": \"99998888-0000-4000-8000-000000000003\","
    "   \"nics\": [{\"network_id\": \"w2\", \"mac\": \"52:54:00:00:00:07\","
    "   \"address\": \"10.2.0.7\", \"bridge\": \"fogbr1001\"}]}]}";

static void load(const char *text, struct nf_state *s)
{
    json_error_t je;
    json_t *doc = json_loads(text, 0, &je);
    assert_non_null(doc);
    char *err = NULL;
    int r = netfabric_state_from_json(doc, NULL, s, &err);
    if (r < 0)
        fprintf(stderr, "parse error: %s\n", err ? err : "?");
    assert_int_equal(r, 0);
    json_decref(doc);
}

static char *subst(const char *text, const char *from, const char *to);

/* Parse a variant of DOC with one substring replaced; expect -EINVAL. */
static void expect_rejected(const char *from, const char *to)
{
    const char *at = strstr(DOC, from);
    if (!at)
        fprintf(stderr, "not in the document: %s\n", from);
    assert_non_null(at);
    char *text = xasprintf("%.*s%s%s", (int)(at - DOC), DOC, to, at + strlen(from));
    json_t *doc = json_loads(text, 0, NULL);
    assert_non_null(doc);
    struct nf_state s;
    char *err = NULL;
    int r = netfabric_state_from_json(doc, NULL, &s, &err);
    if (r == 0) {
        fprintf(stderr, "accepted: %s\n", to);
        nf_state_clear(&s);
    }
    assert_int_equal(r, -EINVAL);
    assert_non_null(err);
    free(err);
    json_decref(doc);
    free(text);
}

static void desired_document_parses_into_state(void **state)
{
    struct nf_state s;
    load(DOC, &s);
    assert_true(s.has_mesh);
    assert_string_equal(s.mesh_ifname, "fogwg0");
    assert_int_equal(s.mesh_prefix, 12);
    assert_int_equal(s.listen_port, 51820);
    assert_int_equal(s.n_peers, 1);
    assert_string_equal(s.peers[0].endpoint, "192.0.2.2:51820");
    assert_int_equal(s.peers[0].keepalive, 25);
    assert_int_equal(s.peers[0].n_allowed_ips, 1);
    assert_int_equal(s.peers[0].allowed_ips[0].prefix, 32);
    assert_int_equal(s.n_networks, 2);
    assert_string_equal(s.networks[0].bridge, "fogbr1000");
    assert_string_equal(s.networks[0].vxlan, "vxlan1000");
    assert_int_equal(s.networks[0].mtu, 1370);
    assert_int_equal(s.networks[0].n_vteps, 1);
    assert_int_equal(s.networks[0].n_macs, 1);
    assert_int_equal(s.networks[0].macs[0].mac[5], 0x22);
    assert_int_equal(s.n_published, 2);
    assert_int_equal(s.published[1].proto, IPPROTO_UDP);
    /* The deleted VM's NIC is not guarded any more. */
    assert_int_equal(s.n_vmports, 2);
    assert_string_equal(s.vmports[0].tap, "fogt0123abcd0");
    assert_string_equal(s.vmports[1].tap, "fogt999988880");
    nf_state_clear(&s);

    char tap[IFNAMSIZ];
    assert_int_equal(netfabric_tap_name("0123abcd-ef", 12, tap), 0);
    assert_string_equal(tap, "fogt0123abcd12");
    assert_int_equal(netfabric_tap_name("0123abc", 0, tap), -EINVAL);
    assert_int_equal(netfabric_tap_name("../../etc", 0, tap), -EINVAL);
    assert_int_equal(netfabric_tap_name("0123abcd", 100, tap), -EINVAL);
}

static void hostile_documents_are_refused(void **state)
{
    expect_rejected("\"bridge\": \"fogbr1000\",", "\"bridge\": \"br\\\" accept\",");
    expect_rejected("\"bridge\": \"fogbr1000\"}]},", "\"bridge\": \"x y\"}]},");
    expect_rejected("\"10.1.0.0/24\"", "\"10.1.0.7/24\"");
    expect_rejected("\"gateway\": \"10.1.0.1\", \"mtu\": 1370, \"bridge\": \"fogbr1000\",",
                    "\"gateway\": \"10.9.0.1\", \"mtu\": 1370, \"bridge\": \"fogbr1000\",");
    expect_rejected("\"proto\": \"tcp\"", "\"proto\": \"sctp\"");
    expect_rejected("\"host_port\": 20080", "\"host_port\": 70000");
    expect_rejected("\"host_port\": 20080", "\"host_port\": 0");
    expect_rejected("\"vm_address\": \"10.1.0.5\"}", "\"vm_address\": \"10.1.0.5; drop\"}");
    expect_rejected("\"mac\": \"52:54:00:00:00:05\"", "\"mac\": \"01:00:5e:00:00:05\"");
    expect_rejected("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "short");
    expect_rejected("\"192.0.2.2:51820\"", "\"evil.example:51820\"");
    expect_rejected("\"vxlan_id\": 1001", "\"vxlan_id\": 1000");
    expect_rejected("\"vxlan_id\": 1001", "\"vxlan_id\": 16777216");
    /* the same host port published twice */
    expect_rejected("\"proto\": \"udp\", \"host_port\": 27015",
                    "\"proto\": \"tcp\", \"host_port\": 20080");
    expect_rejected("\"id\": \"0123abcd-", "\"id\": \"zz23abcd-");
    expect_rejected("\"listen_port\": 51820", "\"listen_port\": \"51820\"");
}

/* The first whole line `line` in text (after a newline or tab), or NULL. */
static const char *find_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = strstr(text, line); p; p = strstr(p + 1, line)) {
        bool start = p == text || p[-1] == '\n' || p[-1] == '\t';
        if (start && (p[n] == '\n' || p[n] == '\0'))
            return p;
    }
    return NULL;
}

static bool has_line(const char *text, const char *line)
{
    return find_line(text, line) != NULL;
}

static void plan_isolates_networks_and_guards_ports(void **state)
{
    struct nf_state s;
    load(DOC, &s);
    struct buf b = BUF_INIT;
    assert_int_equal(nftplan_build(&s, &b), 0);
    const char *t = buf_str(&b);
    /* Isolation between tenant bridges and from the mesh. */
    assert_true(has_line(t, "elements = { \"fogbr1000\", \"fogbr1001\" }"));
    assert_true(has_line(t, "iifname @bridges oifname @bridges drop"));
    /* Bridged within one network (br_netfilter) passes, before the drop. */
    assert_true(has_line(t, "iifname \"fogbr1000\" oifname \"fogbr1000\" accept"));
    assert_true(has_line(t, "iifname \"fogbr1001\" oifname \"fogbr1001\" accept"));
    assert_true(strstr(t, "iifname \"fogbr1001\" oifname \"fogbr1001\" accept") <
                strstr(t, "iifname @bridges oifname @bridges drop"));
    assert_true(has_line(t, "iifname @bridges oifname \"fogwg0\" drop"));
    assert_true(has_line(t, "oifname @bridges drop"));
    assert_true(has_line(t, "ct status dnat oifname @bridges accept"));
    /* The accept for replies comes before the drops. */
    assert_true(strstr(t, "ct state established,related accept") <
                strstr(t, "oifname @bridges drop"));
    /* Anti-spoofing: only the VM's MAC and MAC+IP pass its tap. */
    assert_true(has_line(t, "elements = { \"fogt0123abcd0\", \"fogt999988880\" }"));
    assert_true(has_line(t, "elements = { \"fogt0123abcd0\" . 52:54:00:00:00:05, "
                            "\"fogt999988880\" . 52:54:00:00:00:07 }"));
    assert_true(has_line(t, "elements = { \"fogt0123abcd0\" . 52:54:00:00:00:05 . "
                            "10.1.0.5, \"fogt999988880\" . 52:54:00:00:00:07 . "
                            "10.2.0.7 }"));
    assert_true(has_line(t, "iifname . ether saddr != @vm_macs drop"));
    assert_true(has_line(t, "ether type ip iifname . ether saddr . ip saddr "
                            "@vm_addrs accept"));
    assert_true(has_line(t, "ether type ip udp sport 67 drop"));
    /* ARP about the anycast gateway never crosses between nodes. */
    assert_true(has_line(t, "iifname \"vxlan1000\" ether type arp arp saddr ip 10.1.0.1 drop"));
    assert_true(has_line(t, "iifname \"vxlan1000\" ether type arp arp daddr ip 10.1.0.1 drop"));
    assert_true(has_line(t, "iifname \"vxlan1001\" ether type arp arp saddr ip 10.2.0.1 drop"));
    assert_null(strstr(t, "10.2.0.9")); /* deleted VM */
    /* NAT: DNAT from any local address, masquerade per network. */
    assert_true(has_line(t, "fib daddr type local tcp dport 20080 dnat to 10.1.0.5:80"));
    assert_true(has_line(t, "fib daddr type local udp dport 27015 dnat to 10.1.0.5:27015"));
    assert_true(has_line(t, "ip saddr 10.1.0.0/24 oifname != \"fogbr1000\" masquerade"));
    assert_true(has_line(t, "ip saddr 10.2.0.0/24 oifname != \"fogbr1001\" masquerade"));

    /* With a public address, DNAT matches only it. */
    buf_reset(&b);
    assert_int_equal(ipam_addr_parse("203.0.113.9", &s.public_addr), 0);
    assert_int_equal(nftplan_build(&s, &b), 0);
    assert_true(has_line(buf_str(&b),
                         "ip daddr 203.0.113.9 tcp dport 20080 dnat to 10.1.0.5:80"));
    assert_null(strstr(buf_str(&b), "fib daddr"));

    /* The same state gives the same text. */
    struct buf b2 = BUF_INIT;
    assert_int_equal(nftplan_build(&s, &b2), 0);
    assert_string_equal(buf_str(&b), buf_str(&b2));
    buf_free(&b2);

    /* A name that slipped past the parser is still refused. */
    strcpy(s.vmports[0].tap, "a\"b");
    buf_reset(&b);
    assert_int_equal(nftplan_build(&s, &b), -EINVAL);
    buf_free(&b);
    nf_state_clear(&s);
}

/* The text of chain `name` in t (up to its closing brace); NULL if none. */
static char *chain_of(const char *t, const char *name)
{
    char *head = xasprintf("\tchain %s {\n", name);
    const char *p = strstr(t, head);
    free(head);
    if (!p)
        return NULL;
    const char *end = strstr(p, "\n\t}\n");
    assert_non_null(end);
    return xasprintf("%.*s", (int)(end - p + 1), p);
}

/* Offset of the first whole line `line` in t, failing when there is none. */
static size_t at(const char *t, const char *line)
{
    const char *p = find_line(t, line);
    if (!p)
        fail_msg("no line '%s' in:\n%s", line, t);
    return (size_t)(p - t);
}

#define BLOCKED4_LINE                                                          \
    "elements = { 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, "        \
    "169.254.0.0/16, 172.16.0.0/12, 192.0.0.0/24, 192.168.0.0/16, "           \
    "224.0.0.0/4, 240.0.0.0/4 }"
#define BLOCKED6_LINE                                                          \
    "elements = { ::1, ::ffff:0:0/96, fc00::/7, fe80::/10, ff00::/8 }"
#define DROP4 "iifname @bridges ip daddr @blocked4 counter drop"
#define DROP6 "iifname @bridges ip6 daddr @blocked6 counter drop"

static void plan_keeps_vms_off_private_ranges_and_the_host(void **state)
{
    struct nf_state s;
    load(DOC, &s);
    struct buf b = BUF_INIT;
    assert_int_equal(nftplan_build(&s, &b), 0);
    const char *t = buf_str(&b);
    /* RFC 1918, CGNAT, link-local (metadata), loopback, multicast,
     * reserved and broadcast; the IPv6 counterparts. */
    assert_true(has_line(t, BLOCKED4_LINE));
    assert_true(has_line(t, BLOCKED6_LINE));
    /* The internet stays: the benchmark range is not blocked. */
    assert_null(strstr(t, "198.18."));

    char *fwd = chain_of(t, "forward");
    assert_non_null(fwd);
    /* The host's own forwarding is not ours to drop. */
    assert_true(has_line(fwd, "type filter hook forward priority filter; policy accept;"));
    size_t drop4 = at(fwd, DROP4);
    assert_true(at(fwd, DROP6) > drop4);
    /* Replies (published-port DNAT included), VM to VM within a network
     * and DNATed flows pass before the drops. */
    assert_true(at(fwd, "ct state established,related accept") < drop4);
    assert_true(at(fwd, "iifname \"fogbr1000\" oifname \"fogbr1000\" accept") < drop4);
    assert_true(at(fwd, "ct status dnat oifname @bridges accept") < drop4);
    /* A tap seen at the IP layer has slipped its bridge: dropped first. */
    assert_true(at(fwd, "iifname \"fogt*\" counter drop") <
                at(fwd, "ct state established,related accept"));
    /* The mesh range by address, besides the mesh interface. */
    assert_true(at(fwd, "iifname @bridges ip daddr 100.96.0.0/12 drop") < drop4);
    /* Nothing private is let through without an opt-in. */
    assert_null(strstr(fwd, "ip daddr 10."));
    assert_null(strstr(fwd, "ip daddr 192.168."));
    free(fwd);

    /* The host: only echo to each network's own gateway, then drop; no
     * DHCP or DNS (guests are configured statically, public resolvers). */
    char *in = chain_of(t, "input");
    assert_non_null(in);
    size_t drop = at(in, "counter drop");
    assert_true(at(in, "iifname \"fogt*\" counter drop") <
                at(in, "iifname != @bridges accept"));
    assert_true(at(in, "iifname != @bridges accept") < drop);
    assert_true(at(in, "ct state established,related accept") < drop);
    assert_true(at(in, "iifname \"fogbr1000\" ip daddr 10.1.0.1 icmp type "
                       "echo-request accept") < drop);
    assert_true(at(in, "iifname \"fogbr1001\" ip daddr 10.2.0.1 icmp type "
                       "echo-request accept") < drop);
    assert_null(strstr(in, "dport"));
    assert_null(strstr(in, "meta l4proto icmp accept"));
    free(in);
    buf_free(&b);
    nf_state_clear(&s);
}

static void opted_in_ranges_accept_after_isolation_before_the_drops(void **state)
{
    struct nf_state s;
    load(DOC, &s);
    struct ipam_cidr allow[2];
    assert_int_equal(ipam_cidr_parse("192.168.1.0/24", true, &allow[0], NULL), 0);
    assert_int_equal(ipam_cidr_parse("169.254.169.254/32", true, &allow[1], NULL), 0);
    s.egress_allow = allow;
    s.n_egress_allow = 2;
    struct buf b = BUF_INIT;
    assert_int_equal(nftplan_build(&s, &b), 0);
    char *fwd = chain_of(buf_str(&b), "forward");
    assert_non_null(fwd);
    size_t lan = at(fwd, "iifname @bridges ip daddr 192.168.1.0/24 accept");
    size_t md = at(fwd, "iifname @bridges ip daddr 169.254.169.254/32 accept");
    /* In the order given, before the drops of private ranges... */
    assert_true(lan < md);
    assert_true(md < at(fwd, DROP4));
    /* ...but after isolation: an opt-in never opens another tenant's
     * bridge or the mesh. */
    assert_true(at(fwd, "iifname @bridges oifname @bridges drop") < lan);
    assert_true(at(fwd, "iifname @bridges oifname \"fogwg0\" drop") < lan);
    assert_true(at(fwd, "iifname @bridges ip daddr 100.96.0.0/12 drop") < lan);
    assert_true(at(fwd, "oifname @bridges drop") < lan);
    free(fwd);
    /* The host stays closed whatever is opted in. */
    char *in = chain_of(buf_str(&b), "input");
    assert_null(strstr(in, "192.168.1.0/24"));
    free(in);

    /* A range that cannot be written exactly is refused, not widened. */
    allow[0].net |= 5;
    buf_reset(&b);
    assert_int_equal(nftplan_build(&s, &b), -EINVAL);
    allow[0].net &= ~5u;
    allow[1].prefix = 33;
    assert_int_equal(nftplan_build(&s, &b), -EINVAL);
    buf_free(&b);
    nf_state_clear(&s);
}

static const char *DNS_DOC =
    "{\"mesh\": null, \"networks\": [{\"vxlan_id\": 7, \"cidr\": \"10.7.0.0/24\","
    "  \"gateway\": \"10.7.0.1\", \"bridge\": \"fogbr7\", \"dns_label\": \"acme\","
    "  \"records\": [{\"name\": \"web\", \"address\": \"10.7.0.5\"},"
    "   {\"name\": \"evil\\n10.7.0.9 web\", \"address\": \"10.7.0.6\"},"
    "   {\"name\": \"a b\", \"address\": \"10.7.0.6\"},"
    "   {\"name\": \"-x\", \"address\": \"10.7.0.6\"},"
    "   {\"name\": \"far\", \"address\": \"192.0.2.1\"},"
    "   {\"name\": \"db\", \"address\": \"10.7.0.6\"}]},"
    " {\"vxlan_id\": 8, \"cidr\": \"10.8.0.0/24\", \"gateway\": \"10.8.0.1\","
    "  \"bridge\": \"fogbr8\"}]}";

static void hosts_file_has_one_line_per_valid_name(void **state)
{
    (void)state;
    struct nf_state s;
    load(DNS_DOC, &s);
    struct buf b = BUF_INIT;
    assert_int_equal(resolver_hosts_render(&s.networks[0], &b), 4);
    assert_string_equal(buf_str(&b),
                        "10.7.0.5 web web.acme.internal\n"
                        "10.7.0.6 db db.acme.internal\n");
    buf_free(&b);
    nf_state_clear(&s);
}

/* With a /64: an AAAA line after each A line, the resolver listens on
 * the IPv6 gateway too and the firewall opens DNS there. */
static void names_answer_aaaa_on_the_ipv6_gateway(void **state)
{
    (void)state;
    _cleanup_free_ char *a = subst(DNS_DOC, "\"gateway\": \"10.7.0.1\",",
                                   "\"gateway\": \"10.7.0.1\", \"cidr6\": "
                                   "\"fd07::/64\", \"gateway6\": \"fd07::1\",");
    _cleanup_free_ char *b = subst(a, "\"address\": \"10.7.0.5\"",
                                   "\"address\": \"10.7.0.5\", \"address6\": "
                                   "\"fd07::5\"");
    /* outside the /64, or the gateway: no AAAA */
    _cleanup_free_ char *c = subst(b, "{\"name\": \"db\", \"address\": \"10.7.0.6\"",
                                   "{\"name\": \"db\", \"address\": \"10.7.0.6\", "
                                   "\"address6\": \"fd08::6\"");
    _cleanup_free_ char *d = subst(c, "{\"name\": \"-x\", \"address\": \"10.7.0.6\"",
                                   "{\"name\": \"gw\", \"address\": \"10.7.0.9\", "
                                   "\"address6\": \"fd07::1\"");
    struct nf_state s;
    load(d, &s);
    struct buf h = BUF_INIT;
    assert_int_equal(resolver_hosts_render(&s.networks[0], &h), 3);
    assert_string_equal(buf_str(&h),
                        "10.7.0.5 web web.acme.internal\n"
                        "fd07::5 web web.acme.internal\n"
                        "10.7.0.9 gw gw.acme.internal\n"
                        "10.7.0.6 db db.acme.internal\n");
    buf_free(&h);
    struct buf argv = BUF_INIT;
    size_t n = resolver_argv_render(&s, &s.networks[0], "/d", &argv);
    bool v4 = false, v6 = false;
    const char *p = argv.data;
    for (size_t i = 0; i < n; i++, p += strlen(p) + 1) {
        v4 |= streq(p, "--listen-address=10.7.0.1");
        v6 |= streq(p, "--listen-address=fd07::1");
    }
    assert_true(v4 && v6);
    buf_free(&argv);
    s.dns_dir = "/d";
    struct buf b2 = BUF_INIT;
    assert_int_equal(nftplan_build(&s, &b2), 0);
    assert_true(has_line(buf_str(&b2), "iifname \"fogbr7\" ip6 daddr fd07::1 "
                                       "meta l4proto { tcp, udp } th dport 53 "
                                       "accept"));
    buf_free(&b2);
    nf_state_clear(&s);
}

static void dns_is_opened_to_each_serving_gateway_only(void **state)
{
    (void)state;
    struct nf_state s;
    load(DNS_DOC, &s);
    struct buf b = BUF_INIT;
    assert_int_equal(nftplan_build(&s, &b), 0);
    assert_null(strstr(buf_str(&b), "dport 53")); /* no resolvers run */
    buf_free(&b);
    s.dns_dir = "/run/fog-dns";
    assert_int_equal(nftplan_build(&s, &b), 0);
    const char *rule = "\t\tiifname \"fogbr7\" ip daddr 10.7.0.1 meta l4proto "
                       "{ tcp, udp } th dport 53 accept\n";
    const char *at = strstr(buf_str(&b), rule);
    assert_non_null(at);
    assert_null(strstr(at + strlen(rule), "dport 53")); /* fogbr8: no names */
    /* Before the input chain's final drop. */
    assert_non_null(strstr(at, "\t\tcounter drop\n\t}\n"));
    buf_free(&b);
    nf_state_clear(&s);
}

static void empty_state_plans_tables_without_elements(void **state)
{
    struct nf_state s;
    load("{\"mesh\": null, \"peers\": [], \"networks\": [], \"ports\": [],"
         " \"vms\": []}", &s);
    assert_false(s.has_mesh);
    struct buf b = BUF_INIT;
    assert_int_equal(nftplan_build(&s, &b), 0);
    assert_non_null(strstr(buf_str(&b), "set bridges {\n\t\ttype ifname\n\t}\n"));
    assert_null(strstr(buf_str(&b), "set vm_ports {\n\t\ttype ifname\n\t\telements"));
    /* No mesh address yet: no mesh range to name (CGNAT covers it). */
    assert_null(strstr(buf_str(&b), "100.96.0.0/12"));
    assert_null(strstr(buf_str(&b), "dnat to"));
    assert_null(strstr(buf_str(&b), "masquerade"));
    assert_non_null(strstr(buf_str(&b), "table inet fogfabric {"));
    buf_free(&b);
    nf_state_clear(&s);
}

static void script_replaces_our_tables_in_one_transaction(void **state)
{
    struct nf_state s;
    load(DOC, &s);
    struct buf b = BUF_INIT;
    assert_int_equal(nftplan_script(&s, &b), 0);
    const char *t = buf_str(&b);
    const char *head = "add table inet fogfabric\n"
                       "delete table inet fogfabric\n"
                       "add table ip fogfabric_nat\n"
                       "delete table ip fogfabric_nat\n"
                       "add table ip6 fogfabric_nat6\n"
                       "delete table ip6 fogfabric_nat6\n"
                       "add table bridge fogfabric\n"
                       "delete table bridge fogfabric\n"
                       "table inet fogfabric {\n";
    assert_true(startswith(t, head));
    /* Only our own tables are ever named. */
    for (const char *p = strstr(t, "table "); p; p = strstr(p + 1, "table ")) {
        bool ours = startswith(p, "table inet fogfabric") ||
                    startswith(p, "table ip fogfabric_nat") ||
                    startswith(p, "table ip6 fogfabric_nat6") ||
                    startswith(p, "table bridge fogfabric");
        assert_true(ours);
    }
    buf_free(&b);
    nf_state_clear(&s);
}

/* DOC with `from` replaced by `to` (once; caller frees). */
static char *subst(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    if (!at)
        fail_msg("not in the document: %s", from);
    return xasprintf("%.*s%s%s", (int)(at - text), text, to,
                     at + strlen(from));
}

#define W1_V4 "\"gateway\": \"10.1.0.1\", \"mtu\": 1370,"
#define W1_V6 W1_V4 " \"cidr6\": \"fd12:3456:789a:1::/64\", " \
    "\"gateway6\": \"fd12:3456:789a:1::1\","
#define NIC5_V4 "\"address\": \"10.1.0.5\","
#define NIC5_V6 NIC5_V4 " \"address6\": \"fd12:3456:789a:1::5\","
#define NIC7_V4 "\"address\": \"10.2.0.7\","
/* w2 has no /64: an address in w1's is not the NIC's. */
#define NIC7_V6 NIC7_V4 " \"address6\": \"fd12:3456:789a:1::7\","

/* DOC with IPv6 on network w1 and its VM's NIC (caller frees). */
static char *doc6(void)
{
    _cleanup_free_ char *a = subst(DOC, W1_V4, W1_V6);
    _cleanup_free_ char *b = subst(a, NIC5_V4, NIC5_V6);
    return subst(b, NIC7_V4, NIC7_V6);
}

static void ipv6_parses_only_inside_the_networks_own_prefix(void **state)
{
    _cleanup_free_ char *text = doc6();
    struct nf_state s;
    load(text, &s);
    assert_true(s.networks[0].has_v6);
    assert_false(s.networks[1].has_v6);
    assert_true(s.vmports[0].has_addr6);
    assert_false(s.vmports[1].has_addr6);
    char t[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &s.vmports[0].link_local, t, sizeof(t));
    assert_string_equal(t, "fe80::5054:ff:fe00:5"); /* EUI-64 of the MAC */
    assert_true(s.published[0].has_vm_addr6);
    inet_ntop(AF_INET6, &s.published[0].vm_addr6, t, sizeof(t));
    assert_string_equal(t, "fd12:3456:789a:1::5");
    nf_state_clear(&s);

    /* Not a ULA /64, host bits, the gateway outside, garbage: refused. */
    static const char *const bad[][2] = {
        { "fd12:3456:789a:1::/64", "fd12:3456:789a:1::/48" },
        { "fd12:3456:789a:1::/64", "fd12:3456:789a:1::5/64" },
        { "fd12:3456:789a:1::/64", "2001:db8:1::/64" },
        { "fd12:3456:789a:1::/64", "fd12:3456:789a:1::/64\\\" drop" },
        { "\"fd12:3456:789a:1::1\"", "\"fd12:3456:789a:2::1\"" },
        { "\"fd12:3456:789a:1::1\"", "\"fd12:3456:789a:1::\"" },
        { "\"fd12:3456:789a:1::1\"", "\"10.1.0.1\"" },
        { "\"fd12:3456:789a:1::1\"", "5" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        _cleanup_free_ char *v = subst(text, bad[i][0], bad[i][1]);
        json_auto_t *doc = json_loads(v, 0, NULL);
        assert_non_null(doc);
        char *err = NULL;
        if (netfabric_state_from_json(doc, NULL, &s, &err) == 0) {
            nf_state_clear(&s);
            fail_msg("accepted: %s", bad[i][1]);
        }
        assert_non_null(strstr(err, "cidr6"));
        free(err);
    }
    /* Two networks with one /64 would put one gateway on two bridges. */
    _cleanup_free_ char *dup = subst(
        text, "\"gateway\": \"10.2.0.1\",",
        "\"gateway\": \"10.2.0.1\", \"cidr6\": \"fd12:3456:789a:1::/64\", "
        "\"gateway6\": \"fd12:3456:789a:1::1\",");
    json_auto_t *dj = json_loads(dup, 0, NULL);
    assert_non_null(dj);
    char *derr = NULL;
    assert_int_equal(netfabric_state_from_json(dj, NULL, &s, &derr), -EINVAL);
    assert_non_null(strstr(derr, "networks[1].cidr6: duplicate"));
    free(derr);
    /* A NIC address outside the /64, or the gateway: that NIC has none. */
    static const char *const off[] = { "fd12:3456:789a:2::5",
                                       "fd12:3456:789a:1::1",
                                       "fd12:3456:789a:1::", "10.1.0.5" };
    for (size_t i = 0; i < ARRAY_SIZE(off); i++) {
        _cleanup_free_ char *to = xasprintf(NIC5_V4 " \"address6\": \"%s\",",
                                            off[i]);
        _cleanup_free_ char *v = subst(text, NIC5_V6, to);
        load(v, &s);
        assert_false(s.vmports[0].has_addr6);
        assert_false(s.published[0].has_vm_addr6);
        nf_state_clear(&s);
    }
}

static void plan_guards_ipv6_like_ipv4(void **state)
{
    _cleanup_free_ char *text = doc6();
    struct nf_state s;
    load(text, &s);
    struct buf b = BUF_INIT;
    assert_int_equal(nftplan_build(&s, &b), 0);
    const char *t = buf_str(&b);
    /* The tap: its address and link-local with its MAC, nothing else. */
    assert_true(has_line(t, "elements = { \"fogt0123abcd0\" . 52:54:00:00:00:05 . "
                            "fd12:3456:789a:1::5, \"fogt0123abcd0\" . "
                            "52:54:00:00:00:05 . fe80::5054:ff:fe00:5 }"));
    assert_null(strstr(t, "fd12:3456:789a:1::7"));
    assert_true(has_line(t, "icmpv6 type { nd-router-advert, nd-redirect } drop"));
    assert_true(has_line(t, "iifname \"fogt0123abcd0\" icmpv6 type nd-neighbor-advert "
                            "@th,64,128 != { 0xfd123456789a00010000000000000005, "
                            "0xfe80000000000000505400fffe000005 } drop"));
    assert_true(has_line(t, "ether type ip6 iifname . ether saddr . ip6 saddr "
                            "@vm_addrs6 accept"));
    /* Order: the advertisement checks before the accept, the drop last. */
    assert_true(at(t, "icmpv6 type { nd-router-advert, nd-redirect } drop") <
                at(t, "ether type ip6 iifname . ether saddr . ip6 saddr "
                      "@vm_addrs6 accept"));
    /* Neighbour discovery about the gateway and RAs stay off the VXLAN. */
    assert_true(has_line(t, "iifname \"vxlan1000\" icmpv6 type { nd-neighbor-solicit, "
                            "nd-neighbor-advert } ip6 saddr fd12:3456:789a:1::1 drop"));
    assert_true(has_line(t, "iifname \"vxlan1000\" icmpv6 type { nd-neighbor-solicit, "
                            "nd-neighbor-advert } @th,64,128 "
                            "0xfd123456789a00010000000000000001 drop"));
    assert_true(has_line(t, "iifname \"vxlan1000\" icmpv6 type nd-router-advert drop"));
    assert_null(strstr(t, "iifname \"vxlan1001\" icmpv6"));
    /* The host: neighbour discovery and echo on the IPv6 gateway. */
    _cleanup_free_ char *input = chain_of(t, "input");
    assert_true(has_line(input, "iifname \"fogbr1000\" icmpv6 type { "
                                "nd-neighbor-solicit, nd-neighbor-advert } ip6 "
                                "hoplimit 255 accept"));
    assert_true(has_line(input, "iifname \"fogbr1000\" ip6 daddr "
                                "fd12:3456:789a:1::1 icmpv6 type echo-request accept"));
    assert_null(strstr(input, "fogbr1001\" icmpv6"));
    /* NAT66 out; no published port over IPv6 without a public address. */
    assert_true(has_line(t, "ip6 saddr fd12:3456:789a:1::/64 oifname != "
                            "\"fogbr1000\" masquerade"));
    assert_null(strstr(t, "dnat to ["));
    /* With one: the same host ports to the VM's IPv6 address. */
    buf_reset(&b);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::5", &s.public_addr6), 1);
    s.has_public_addr6 = true;
    assert_int_equal(nftplan_build(&s, &b), 0);
    t = buf_str(&b);
    _cleanup_free_ char *pre = chain_of(strstr(t, "table ip6 fogfabric_nat6"),
                                        "prerouting");
    assert_true(has_line(pre, "ip6 daddr 2001:db8::5 tcp dport 20080 dnat to "
                              "[fd12:3456:789a:1::5]:80"));
    assert_true(has_line(pre, "ip6 daddr 2001:db8::5 udp dport 27015 dnat to "
                              "[fd12:3456:789a:1::5]:27015"));
    buf_free(&b);
    nf_state_clear(&s);

    /* Without IPv6 in the document, the tap passes no IPv6 at all. */
    load(DOC, &s);
    assert_int_equal(nftplan_build(&s, &b), 0);
    assert_non_null(strstr(buf_str(&b), "set vm_addrs6 {\n\t\ttype ifname . "
                                        "ether_addr . ipv6_addr\n\t}\n"));
    assert_null(strstr(buf_str(&b), "@th,64,128"));
    assert_null(strstr(buf_str(&b), "ip6 saddr fd"));
    buf_free(&b);
    nf_state_clear(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(desired_document_parses_into_state),
        cmocka_unit_test(hostile_documents_are_refused),
        cmocka_unit_test(plan_isolates_networks_and_guards_ports),
        cmocka_unit_test(plan_keeps_vms_off_private_ranges_and_the_host),
        cmocka_unit_test(opted_in_ranges_accept_after_isolation_before_the_drops),
        cmocka_unit_test(empty_state_plans_tables_without_elements),
        cmocka_unit_test(hosts_file_has_one_line_per_valid_name),
        cmocka_unit_test(dns_is_opened_to_each_serving_gateway_only),
        cmocka_unit_test(script_replaces_our_tables_in_one_transaction),
        cmocka_unit_test(ipv6_parses_only_inside_the_networks_own_prefix),
        cmocka_unit_test(plan_guards_ipv6_like_ipv4),
        cmocka_unit_test(names_answer_aaaa_on_the_ipv6_gateway),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
