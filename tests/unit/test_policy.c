/* Unit tests for nodeagent/policy: the host facts read from fixture /proc
 * files, and each rule of the node's policy over desired documents (what
 * is refused, what still applies, and that deletions always go through). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/jsonutil.h"
#include "netfabric/nftplan.h"
#include "nodeagent/policy.h"
#include "tests/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

/* ---- fixture /proc/net files ---- */

/* sshd on 22 (v4), 8443 and 20500 listening, 20600 only connected. */
static const char *const TCP =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
    "retrnsmt   uid  timeout inode\n"
    "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 "
    "00000000     0        0 1506 1 0000000000000000 100 0 0 10 0\n"
    "   1: 0100007F:20FB 00000000:0000 0A 00000000:00000000 00:00000000 "
    "00000000     0        0 1507 1 0000000000000000 100 0 0 10 0\n"
    "   2: 0100007F:5014 00000000:0000 0A 00000000:00000000 00:00000000 "
    "00000000     0        0 1508 1 0000000000000000 100 0 0 10 0\n"
    "   3: 0100007F:5078 0100007F:E583 01 00000000:00000000 00:00000000 "
    "00000000     0        0 1509 1 0000000000000000 100 0 0 10 0\n";
/* A v6-only listener on 20501. */
static const char *const TCP6 =
    "  sl  local_address                         remote_address          "
    "              st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
    "inode\n"
    "   0: 00000000000000000000000000000000:5015 "
    "00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 "
    "00000000     0        0 2001 1 0000000000000000 100 0 0 10 0\n";
/* A game server bound on udp/20700 (state 07: unconnected). */
static const char *const UDP =
    "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
    "retrnsmt   uid  timeout inode ref pointer drops\n"
    "  100: 00000000:50DC 00000000:0000 07 00000000:00000000 00:00000000 "
    "00000000     0        0 3001 2 0000000000000000 0\n";
/* Default route, the LAN 192.168.1.0/24 and docker's 172.17.0.0/16. */
static const char *const ROUTE =
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\t"
    "Window\tIRTT\n"
    "eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    "eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
/* Our own address 203.0.113.7 (a /32 with no route of its own). */
static const char *const FIB_TRIE =
    "Main:\n"
    "  +-- 0.0.0.0/0 3 0 5\n"
    "     |-- 0.0.0.0\n"
    "        /0 universe UNICAST\n"
    "Local:\n"
    "     +-- 127.0.0.0/8 2 0 2\n"
    "           |-- 127.0.0.1\n"
    "              /32 host LOCAL\n"
    "        |-- 127.255.255.255\n"
    "           /32 link BROADCAST\n"
    "     |-- 203.0.113.7\n"
    "        /32 host LOCAL\n";

/* IPv6: a LAN ULA /64 on eth0 with the host's address in it, the
 * network fd12:3456:789a:1::/64 already on its bridge fogbr1000 (with the
 * gateway), link-local, multicast, loopback, the default route. */
static const char *const ROUTE6 =
    "fd990000000000000000000000000000 40 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
    "fd990000000000000000000000000002 80 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000000 00000004 00000000 80200001     eth0\n"
    "fd123456789a00010000000000000000 40 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000001 00000000 00000001 fogbr1000\n"
    "fd123456789a00010000000000000001 80 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000000 00000004 00000000 80200001 fogbr1000\n"
    "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0\n"
    "ff000000000000000000000000000000 08 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0\n"
    "00000000000000000000000000000001 80 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000000 00000003 00000000 80200001       lo\n"
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "fd990000000000000000000000000001 00000400 00000003 00000000 00000003     eth0\n";

static void write_fixture(const char *root, const char *name, const char *text)
{
    _cleanup_free_ char *dir = xasprintf("%s/proc/net", root);
    assert_int_equal(mkdir_p(dir, 0755), 0);
    _cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
    assert_int_equal(file_write_atomic(path, text, strlen(text), 0644), 0);
}

static const char *const CONTROLLER = "https://hub.example:8443";
static const char *const VM1 = "0123abcd-0000-4000-8000-000000000001";
static const char *const VM2 = "0123abcd-0000-4000-8000-000000000002";
static const char *const IMG = "aaaabbbb-0000-4000-8000-00000000000a";

/* A host with the fixture facts and the default settings. */
static void host_init(struct policy_host *h)
{
    *h = (struct policy_host){ .port_min = 20000, .port_max = 29999,
                               .wg_port = 51820, .controller = CONTROLLER,
                               .vcpus = 8, .memory_mib = 16384,
                               .disk_gib = 500 };
    assert_int_equal(policy_parse_proc_net(TCP, true, &h->tcp_ports,
                                           &h->n_tcp), 0);
    assert_int_equal(policy_parse_proc_net(TCP6, true, &h->tcp_ports,
                                           &h->n_tcp), 0);
    assert_int_equal(policy_parse_proc_net(UDP, false, &h->udp_ports,
                                           &h->n_udp), 0);
    assert_int_equal(policy_parse_route(ROUTE, &h->nets, &h->n_nets), 0);
    policy_parse_fib_trie(FIB_TRIE, &h->nets, &h->n_nets);
    assert_int_equal(policy_parse_ipv6_route(ROUTE6, &h->nets6, &h->n_nets6),
                     0);
    h->facts_known = true;
}

/* An honest document: one network, VM1 on it with a published port, VM2
 * without NICs on a catalog image. */
static json_t *good_doc(void)
{
    json_t *d = json_pack(
        "{s:I, s:s, s:{s:s, s:i, s:i}, s:[], "
        "s:[{s:s, s:i, s:s, s:s, s:i, s:s, s:[s], s:[]}], "
        "s:[{s:s, s:s, s:i, s:i, s:s}], "
        "s:[{s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:[{s:s, s:s, s:s, s:i, "
        "s:s, s:i, s:s}]}, "
        "{s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:{s:s, s:s, s:s}}]}",
        "revision", (json_int_t)3, "node_id", "n1",
        "mesh", "address", "100.96.0.1", "prefix", 12, "listen_port", 51820,
        "peers",
        "networks", "id", "w1", "vxlan_id", 1000, "cidr", "10.1.0.0/24",
        "gateway", "10.1.0.1", "mtu", 1370, "bridge", "fogbr1000", "vteps",
        "100.96.0.2", "macs",
        "ports", "vm_id", VM1, "proto", "tcp", "host_port", 20080, "vm_port",
        80, "vm_address", "10.1.0.5",
        "vms", "id", VM1, "name", "web", "vcpus", 2, "memory_mib", 512,
        "disk_gib", 10, "image", "tiny", "power", "running", "nics",
        "network_id", "w1", "mac", "52:54:00:00:00:05", "address", "10.1.0.5",
        "prefix", 24, "gateway", "10.1.0.1", "mtu", 1370, "bridge",
        "fogbr1000",
        "id", VM2, "name", "game", "vcpus", 1, "memory_mib", 256, "disk_gib",
        5, "image", "debian", "power", "running", "image_source", "id", IMG,
        "url", "/v1/images/aaaabbbb-0000-4000-8000-00000000000a/file",
        "sha256", "00");
    assert_non_null(d);
    return d;
}

static json_t *at(json_t *doc, const char *list, size_t i)
{
    return json_array_get(json_object_get(doc, list), i);
}

/* Filter doc (taken) on the fixture host; the accepted part and the
 * refusals are returned. */
static void run(json_t *doc, json_t **acc, json_t **ref)
{
    struct policy_host h;
    host_init(&h);
    assert_int_equal(policy_filter(doc, &h, acc, ref), 0);
    policy_host_clear(&h);
    json_decref(doc);
}

/* The reason given for `object`, or NULL when it was not refused. */
static const char *reason_of(const json_t *ref, const char *object)
{
    size_t i;
    json_t *e;
    json_array_foreach(ref, i, e)
        if (streq(json_str(e, "object"), object))
            return json_str(e, "reason");
    return NULL;
}

static bool has_entry(const json_t *acc, const char *list, const char *key,
                      const char *value)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(acc, list), i, e)
        if (streq(json_str(e, key), value))
            return true;
    return false;
}

static bool has_port(const json_t *acc, const char *proto, int64_t port)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(acc, "ports"), i, e)
        if (streq(json_str(e, "proto"), proto) &&
            json_int(e, "host_port", 0) == port)
            return true;
    return false;
}

/* Append a port of VM1 to doc. */
static void add_port(json_t *doc, const char *proto, int port,
                     const char *vm_id, const char *addr)
{
    json_array_append_new(json_object_get(doc, "ports"),
                          json_pack("{s:s, s:s, s:i, s:i, s:s}", "vm_id",
                                    vm_id, "proto", proto, "host_port", port,
                                    "vm_port", 80, "vm_address", addr));
}

static void expect_substr(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("'%s' does not say '%s'", hay ? hay : "(not refused)",
                 needle);
}

/* ---- facts ---- */

static void proc_net_lists_listening_tcp_and_bound_udp_ports(void **state)
{
    uint16_t *p = NULL;
    size_t n = 0;
    assert_int_equal(policy_parse_proc_net(TCP, true, &p, &n), 0);
    /* 22, 8443 and 20500 listen; 20600 is a connection, not a listener. */
    assert_int_equal(n, 3);
    assert_int_equal(p[0], 22);
    assert_int_equal(p[1], 8443);
    assert_int_equal(p[2], 20500);
    assert_int_equal(policy_parse_proc_net(TCP6, true, &p, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(p[3], 20501);
    free(p);
    p = NULL;
    n = 0;
    assert_int_equal(policy_parse_proc_net(UDP, false, &p, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(p[0], 20700);
    free(p);
    p = NULL;
    n = 0;
    assert_int_equal(policy_parse_proc_net("garbage\n", true, &p, &n),
                     -EINVAL);
    assert_int_equal(policy_parse_proc_net("  sl  local\n 0: 0100007F 0 0A\n",
                                           true, &p, &n), -EINVAL);
    free(p);
}

static void route_lists_non_default_routes_and_fib_trie_own_addresses(void **state)
{
    struct policy_net *c = NULL;
    size_t n = 0;
    assert_int_equal(policy_parse_route(ROUTE, &c, &n), 0);
    assert_int_equal(n, 2);
    _cleanup_free_ char *a = ipam_cidr_format(&c[0].cidr);
    _cleanup_free_ char *b = ipam_cidr_format(&c[1].cidr);
    assert_string_equal(a, "192.168.1.0/24");
    assert_string_equal(b, "172.17.0.0/16");
    policy_parse_fib_trie(FIB_TRIE, &c, &n);
    assert_int_equal(n, 4);
    _cleanup_free_ char *lo = ipam_cidr_format(&c[2].cidr);
    _cleanup_free_ char *own = ipam_cidr_format(&c[3].cidr);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(c[i].vxlan_id, 0);
    assert_string_equal(lo, "127.0.0.1/32");
    assert_string_equal(own, "203.0.113.7/32");
    free(c);
    c = NULL;
    n = 0;
    assert_int_equal(policy_parse_route("nothing\n", &c, &n), -EINVAL);
    /* A mask with holes is not a route table. */
    assert_int_equal(policy_parse_route("Iface\tDestination\n"
                                        "e\t0001A8C0\t0\t1\t0\t0\t0\t00FF00FF\n",
                                        &c, &n), -EINVAL);
    free(c);
}

static void host_facts_come_from_the_root_prefix(void **state)
{
    _cleanup_free_ char *root = xasprintf("%s/root1", tu_dir);
    write_fixture(root, "tcp", TCP);
    write_fixture(root, "udp", UDP);
    write_fixture(root, "route", ROUTE);
    struct policy_host h = { 0 };
    /* No tcp6, udp6 or fib_trie (IPv6 off, old kernel): still known. */
    assert_int_equal(policy_host_collect(root, &h), 0);
    assert_true(h.facts_known);
    assert_int_equal(h.n_tcp, 3);
    assert_int_equal(h.n_udp, 1);
    assert_int_equal(h.n_nets, 2);
    policy_host_clear(&h);
    write_fixture(root, "tcp6", TCP6);
    write_fixture(root, "fib_trie", FIB_TRIE);
    assert_int_equal(policy_host_collect(root, &h), 0);
    assert_int_equal(h.n_tcp, 4);
    assert_int_equal(h.n_nets, 4);
    policy_host_clear(&h);
    /* Without the route table nothing is known. */
    _cleanup_free_ char *root2 = xasprintf("%s/root2", tu_dir);
    write_fixture(root2, "tcp", TCP);
    write_fixture(root2, "udp", UDP);
    assert_int_equal(policy_host_collect(root2, &h), -ENOENT);
    assert_false(h.facts_known);
    policy_host_clear(&h);
}

/* ---- rules ---- */

/* Once network 1000 is built, its bridge's route and gateway address are
 * on the host: they must not refuse network 1000 itself next time, but
 * still keep any other network off that range. */
static void a_networks_own_bridge_does_not_refuse_it(void **state)
{
    static const char *const route =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "fogbr1000\t0000010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
        "fogbr10000x\t0000040A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
    static const char *const trie =
        "Local:\n"
        "     |-- 10.1.0.1\n"
        "        /32 host LOCAL\n"
        "     |-- 10.4.0.1\n"
        "        /32 host LOCAL\n";
    struct policy_host h;
    host_init(&h);
    free(h.nets);
    h.nets = NULL;
    h.n_nets = 0;
    assert_int_equal(policy_parse_route(route, &h.nets, &h.n_nets), 0);
    policy_parse_fib_trie(trie, &h.nets, &h.n_nets);
    assert_int_equal(h.n_nets, 4);
    assert_int_equal(h.nets[0].vxlan_id, 1000);
    assert_int_equal(h.nets[1].vxlan_id, 0);  /* not quite our name */
    assert_int_equal(h.nets[2].vxlan_id, 1000); /* the gateway address */
    assert_int_equal(h.nets[3].vxlan_id, 0);

    json_t *doc = good_doc(), *acc, *ref;
    json_array_append_new(json_object_get(doc, "networks"),
                          json_pack("{s:s, s:i, s:s, s:s}", "id", "w4",
                                    "vxlan_id", 1004, "cidr", "10.4.0.0/24",
                                    "gateway", "10.4.0.1"));
    assert_int_equal(policy_filter(doc, &h, &acc, &ref), 0);
    assert_null(reason_of(ref, "network 1000"));
    expect_substr(reason_of(ref, "network 1004"), "overlaps the host's");
    json_decref(acc);
    json_decref(ref);
    /* Another network on network 1000's range is refused. */
    json_object_set_new(at(doc, "networks", 0), "vxlan_id", json_integer(1001));
    json_object_set_new(at(doc, "networks", 0), "bridge",
                        json_string("fogbr1001"));
    assert_int_equal(policy_filter(doc, &h, &acc, &ref), 0);
    expect_substr(reason_of(ref, "network 1001"), "overlaps the host's 10.1.0.0/24");
    json_decref(acc);
    json_decref(ref);
    json_decref(doc);
    policy_host_clear(&h);
}

/* Filter doc (taken): nothing refused, all of it accepted as it was. */
static void expect_whole(json_t *doc)
{
    json_t *acc, *ref;
    json_t *orig = json_deep_copy(doc);
    run(doc, &acc, &ref);
    assert_int_equal(json_array_size(ref), 0);
    assert_true(json_equal(acc, orig));
    json_decref(orig);
    json_decref(acc);
    json_decref(ref);
}

static void an_honest_document_passes_whole(void **state)
{
    expect_whole(good_doc());
}

static void permitted_well_known_ports_pass_beyond_the_range(void **state)
{
    static const uint16_t permit[] = { 22, 80, 27015 };
    json_t *doc = good_doc(), *acc, *ref;
    add_port(doc, "tcp", 80, VM1, "10.1.0.5");      /* permitted */
    add_port(doc, "udp", 27015, VM1, "10.1.0.5");   /* permitted, in range */
    add_port(doc, "tcp", 443, VM1, "10.1.0.5");     /* not permitted */
    add_port(doc, "tcp", 22, VM1, "10.1.0.5");      /* permitted, sshd */
    struct policy_host h;
    host_init(&h);
    h.permit_ports = permit;
    h.n_permit = ARRAY_SIZE(permit);
    assert_int_equal(policy_filter(doc, &h, &acc, &ref), 0);
    policy_host_clear(&h);
    json_decref(doc);
    assert_true(has_port(acc, "tcp", 80));
    assert_true(has_port(acc, "udp", 27015));
    expect_substr(reason_of(ref, "port tcp/443"), "not among its permitted");
    expect_substr(reason_of(ref, "port tcp/22"), "in use on the host");
    json_decref(acc);
    json_decref(ref);
}

static void host_ports_only_in_range_and_not_in_use(void **state)
{
    json_t *doc = good_doc(), *acc, *ref;
    add_port(doc, "tcp", 22, VM1, "10.1.0.5");      /* host's sshd, range */
    add_port(doc, "tcp", 8443, VM1, "10.1.0.5");    /* below the range */
    add_port(doc, "udp", 51820, VM1, "10.1.0.5");   /* WireGuard, range */
    add_port(doc, "udp", 30000, VM1, "10.1.0.5");   /* above the range */
    add_port(doc, "tcp", 20500, VM1, "10.1.0.5");   /* listening v4 */
    add_port(doc, "tcp", 20501, VM1, "10.1.0.5");   /* listening v6 */
    add_port(doc, "udp", 20700, VM1, "10.1.0.5");   /* bound udp */
    add_port(doc, "tcp", 20700, VM1, "10.1.0.5");   /* free in tcp */
    add_port(doc, "tcp", 20600, VM1, "10.1.0.5");   /* only a connection */
    add_port(doc, "tcp", 20080, VM1, "10.1.0.5");   /* published twice */
    run(doc, &acc, &ref);
    expect_substr(reason_of(ref, "port tcp/22"), "outside this node's range");
    expect_substr(reason_of(ref, "port tcp/8443"), "outside");
    expect_substr(reason_of(ref, "port udp/30000"), "outside");
    expect_substr(reason_of(ref, "port tcp/20500"), "in use on the host");
    expect_substr(reason_of(ref, "port tcp/20501"), "in use on the host");
    expect_substr(reason_of(ref, "port udp/20700"), "in use on the host");
    expect_substr(reason_of(ref, "port tcp/20080"), "published twice");
    assert_true(has_port(acc, "tcp", 20080));
    assert_true(has_port(acc, "tcp", 20700));
    assert_true(has_port(acc, "tcp", 20600));
    assert_false(has_port(acc, "tcp", 22));
    assert_false(has_port(acc, "tcp", 8443));
    assert_false(has_port(acc, "tcp", 20500));
    assert_false(has_port(acc, "tcp", 20501));
    assert_false(has_port(acc, "udp", 20700));
    assert_int_equal(json_array_size(json_object_get(acc, "ports")), 3);
    json_decref(acc);
    json_decref(ref);
}

static void the_wireguard_port_is_never_published(void **state)
{
    json_t *doc = good_doc(), *acc, *ref;
    /* Ours from the settings, and the one the document gives the mesh. */
    json_object_set_new(json_object_get(doc, "mesh"), "listen_port",
                        json_integer(21000));
    add_port(doc, "udp", 21000, VM1, "10.1.0.5");
    add_port(doc, "tcp", 21000, VM1, "10.1.0.5");
    add_port(doc, "udp", 22000, VM1, "10.1.0.5");
    struct policy_host h;
    host_init(&h);
    h.wg_port = 22000;
    assert_int_equal(policy_filter(doc, &h, &acc, &ref), 0);
    policy_host_clear(&h);
    json_decref(doc);
    expect_substr(reason_of(ref, "port udp/21000"), "WireGuard");
    expect_substr(reason_of(ref, "port tcp/21000"), "WireGuard");
    expect_substr(reason_of(ref, "port udp/22000"), "WireGuard");
    assert_int_equal(json_array_size(json_object_get(acc, "ports")), 1);
    json_decref(acc);
    json_decref(ref);
}

static void port_targets_only_the_vms_own_address(void **state)
{
    json_t *doc = good_doc(), *acc, *ref;
    add_port(doc, "tcp", 20001, VM1, "192.168.1.10");  /* a LAN host */
    add_port(doc, "tcp", 20002, VM1, "10.1.0.6");      /* not VM1's */
    add_port(doc, "tcp", 20003, VM2, "10.1.0.5");      /* VM1's, for VM2 */
    add_port(doc, "tcp", 20004, "ffffffff-0000-4000-8000-000000000000",
             "10.1.0.5");                               /* no such VM */
    run(doc, &acc, &ref);
    expect_substr(reason_of(ref, "port tcp/20001"), "not an address of the VM");
    expect_substr(reason_of(ref, "port tcp/20002"), "not an address of the VM");
    expect_substr(reason_of(ref, "port tcp/20003"), "not an address of the VM");
    expect_substr(reason_of(ref, "port tcp/20004"), "not an accepted VM");
    assert_int_equal(json_array_size(json_object_get(acc, "ports")), 1);
    json_decref(acc);
    json_decref(ref);
}

static void unknown_host_facts_refuse_ports_and_networks(void **state)
{
    json_t *doc = good_doc(), *acc, *ref;
    struct policy_host h;
    host_init(&h);
    h.facts_known = false;
    assert_int_equal(policy_filter(doc, &h, &acc, &ref), 0);
    policy_host_clear(&h);
    json_decref(doc);
    expect_substr(reason_of(ref, "network 1000"), "unknown");
    expect_substr(reason_of(ref, "vm 0123abcd-0000-4000-8000-000000000001"),
                  "refused network");
    expect_substr(reason_of(ref, "port tcp/20080"), "unknown");
    /* The VM without NICs still runs. */
    assert_true(has_entry(acc, "vms", "id", VM2));
    assert_int_equal(json_array_size(json_object_get(acc, "vms")), 1);
    json_decref(acc);
    json_decref(ref);
}

/* Set VM1's first NIC's `key` to the string `value`. */
static json_t *doc_nic(const char *key, const char *value)
{
    json_t *doc = good_doc();
    json_t *nic = json_array_get(json_object_get(at(doc, "vms", 0), "nics"), 0);
    json_object_set_new(nic, key, json_string(value));
    return doc;
}

static void bridges_are_only_the_documents_own_networks(void **state)
{
    static const char *const bad[] = { "docker0", "eth0", "fogbr1001",
                                       "virbr0", "lo" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        json_t *acc, *ref;
        run(doc_nic("bridge", bad[i]), &acc, &ref);
        const char *why = reason_of(ref, "vm 0123abcd-0000-4000-8000-000000000001");
        expect_substr(why, "is not the bridge of a network in this document");
        expect_substr(why, bad[i]);
        assert_false(has_entry(acc, "vms", "id", VM1));
        /* Its port goes with it; the other VM stays. */
        assert_int_equal(json_array_size(json_object_get(acc, "ports")), 0);
        expect_substr(reason_of(ref, "port tcp/20080"), "not an accepted VM");
        assert_true(has_entry(acc, "vms", "id", VM2));
        json_decref(acc);
        json_decref(ref);
    }
    /* A network claiming another bridge than its own is refused, and so
     * is the VM on it. */
    json_t *doc = good_doc(), *acc, *ref;
    json_object_set_new(at(doc, "networks", 0), "bridge", json_string("eth0"));
    run(doc, &acc, &ref);
    expect_substr(reason_of(ref, "network 1000"), "bridge 'eth0'");
    expect_substr(reason_of(ref, "vm 0123abcd-0000-4000-8000-000000000001"),
                  "refused network");
    assert_int_equal(json_array_size(json_object_get(acc, "networks")), 0);
    json_decref(acc);
    json_decref(ref);
}

static void vm_addresses_only_host_addresses_inside_the_cidr(void **state)
{
    static const struct { const char *key, *value, *why; } bad[] = {
        { "address", "10.2.0.5", "not a host address of 10.1.0.0/24" },
        { "address", "192.168.1.1", "not a host address" },
        { "address", "10.1.0.1", "not a host address" },   /* gateway */
        { "address", "10.1.0.0", "not a host address" },   /* network */
        { "address", "10.1.0.255", "not a host address" }, /* broadcast */
        { "mac", "01:00:5e:00:00:01", "not a unicast MAC" },
        { "mac", "00:00:00:00:00:00", "not a unicast MAC" },
        { "mac", "zz", "not a unicast MAC" },
        { "gateway", "10.1.0.254", "not the gateway" },
        { "network_id", "w9", "network_id" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        json_t *acc, *ref;
        run(doc_nic(bad[i].key, bad[i].value), &acc, &ref);
        expect_substr(reason_of(ref, "vm 0123abcd-0000-4000-8000-000000000001"),
                      bad[i].why);
        assert_false(has_entry(acc, "vms", "id", VM1));
        json_decref(acc);
        json_decref(ref);
    }
    /* Another VM may not take VM1's address or MAC. */
    json_t *doc = good_doc(), *acc, *ref;
    json_t *vm2 = at(doc, "vms", 1);
    json_object_set(vm2, "nics", json_object_get(at(doc, "vms", 0), "nics"));
    run(doc, &acc, &ref);
    expect_substr(reason_of(ref, "vm 0123abcd-0000-4000-8000-000000000002"),
                  "another VM's");
    assert_true(has_entry(acc, "vms", "id", VM1));
    json_decref(acc);
    json_decref(ref);
}

/* Set network 1000's cidr and gateway. */
static json_t *doc_cidr(const char *cidr, const char *gw, const char *addr)
{
    json_t *doc = good_doc();
    json_object_set_new(at(doc, "networks", 0), "cidr", json_string(cidr));
    json_object_set_new(at(doc, "networks", 0), "gateway", json_string(gw));
    json_t *nic = json_array_get(json_object_get(at(doc, "vms", 0), "nics"), 0);
    json_object_set_new(nic, "address", json_string(addr));
    json_object_set_new(nic, "gateway", json_string(gw));
    json_object_set_new(at(doc, "ports", 0), "vm_address", json_string(addr));
    return doc;
}

static void networks_over_host_routes_mesh_or_reserved_are_refused(void **state)
{
    static const struct { const char *cidr, *gw, *addr, *why; } bad[] = {
        { "192.168.1.0/24", "192.168.1.254", "192.168.1.5", "192.168.1.0/24" },
        { "192.168.0.0/16", "192.168.0.1", "192.168.0.5", "the host's" },
        { "172.17.5.0/24", "172.17.5.1", "172.17.5.5", "172.17.0.0/16" },
        { "203.0.113.0/24", "203.0.113.1", "203.0.113.5", "203.0.113.7/32" },
        { "100.100.0.0/24", "100.100.0.1", "100.100.0.5", "mesh range" },
        { "127.0.0.0/24", "127.0.0.1", "127.0.0.5", "reserved" },
        { "169.254.169.0/24", "169.254.169.1", "169.254.169.5", "reserved" },
        { "10.1.0.0/31", "10.1.0.1", "10.1.0.0", "not an IPv4 network" },
        { "10.1.0.0/24", "10.1.0.0", "10.1.0.5", "gateway" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        json_t *acc, *ref;
        run(doc_cidr(bad[i].cidr, bad[i].gw, bad[i].addr), &acc, &ref);
        expect_substr(reason_of(ref, "network 1000"), bad[i].why);
        assert_int_equal(json_array_size(json_object_get(acc, "networks")), 0);
        assert_false(has_entry(acc, "vms", "id", VM1));
        assert_int_equal(json_array_size(json_object_get(acc, "ports")), 0);
        json_decref(acc);
        json_decref(ref);
    }
    /* Two networks of one document may not overlap either, and VXLAN goes
     * only to mesh addresses. */
    json_t *doc = good_doc(), *acc, *ref;
    json_array_append_new(json_object_get(doc, "networks"),
                          json_pack("{s:s, s:i, s:s, s:s}", "id", "w2",
                                    "vxlan_id", 1001, "cidr", "10.1.0.128/25",
                                    "gateway", "10.1.0.129"));
    json_array_append_new(json_object_get(doc, "networks"),
                          json_pack("{s:s, s:i, s:s, s:s, s:[s]}", "id", "w3",
                                    "vxlan_id", 1002, "cidr", "10.3.0.0/24",
                                    "gateway", "10.3.0.1", "vteps",
                                    "192.168.1.20"));
    run(doc, &acc, &ref);
    expect_substr(reason_of(ref, "network 1001"), "overlaps network 1000");
    expect_substr(reason_of(ref, "network 1002"), "mesh address");
    assert_int_equal(json_array_size(json_object_get(acc, "networks")), 1);
    json_decref(acc);
    json_decref(ref);
}

/* good_doc with network w1 dual-stack: /64 cidr6 and gateway6. */
static json_t *doc_v6(const char *cidr6, const char *gw6)
{
    json_t *doc = good_doc();
    json_t *w = at(doc, "networks", 0);
    json_object_set_new(w, "cidr6", json_string(cidr6));
    json_object_set_new(w, "gateway6", json_string(gw6));
    return doc;
}

static void ipv6_routes_leave_out_default_link_local_and_multicast(void **state)
{
    (void)state;
    struct policy_net6 *c = NULL;
    size_t n = 0;
    assert_int_equal(policy_parse_ipv6_route(ROUTE6, &c, &n), 0);
    assert_int_equal(n, 5); /* two of eth0, two of fogbr1000, loopback */
    assert_int_equal(c[0].prefix, 64);
    assert_int_equal(c[0].vxlan_id, 0);
    assert_int_equal(c[2].vxlan_id, 1000);
    free(c);
    c = NULL;
    n = 0;
    assert_int_equal(policy_parse_ipv6_route("zz 40 x\n", &c, &n), -EINVAL);
    free(c);
}

static void ipv6_prefixes_are_unique_local_and_clear_of_the_host(void **state)
{
    (void)state;
    json_t *acc, *ref, *doc;
    /* The network's own /64, already on its bridge: accepted whole. */
    expect_whole(doc_v6("fd12:3456:789a:1::/64", "fd12:3456:789a:1::1"));
    static const struct { const char *cidr6, *gw6, *why; } bad[] = {
        { "fd99::/64", "fd99::1", "overlaps the host's fd99::/64" },
        { "::1/64", "::2", "not a unique local" },
        { "2001:db8:1::/64", "2001:db8:1::1", "not a unique local" },
        { "fd12:3456:789a:1::/48", "fd12:3456:789a:1::1", "not a unique local" },
        { "fd12:3456:789a:1::5/64", "fd12:3456:789a:1::1", "not a unique local" },
        { "fd12:3456:789a:1::/64", "fd12:3456:789a:2::1", "gateway" },
        { "fd12:3456:789a:1::/64", "fd12:3456:789a:1::", "gateway" },
        { "fd12:3456:789a:1::/64\" drop", "fd12:3456:789a:1::1", "not a unique" },
        { "fd12:3456:789a:1::/64", "junk", "gateway" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        run(doc_v6(bad[i].cidr6, bad[i].gw6), &acc, &ref);
        expect_substr(reason_of(ref, "network 1000"), bad[i].why);
        assert_int_equal(json_array_size(json_object_get(acc, "networks")), 0);
        json_decref(acc);
        json_decref(ref);
    }
    /* A second network with the same /64 (one the host has not yet). */
    doc = doc_v6("fd12:3456:789a:7::/64", "fd12:3456:789a:7::1");
    json_array_append_new(json_object_get(doc, "networks"),
                          json_pack("{s:s, s:i, s:s, s:s, s:s, s:s}", "id",
                                    "w2", "vxlan_id", 1001, "cidr",
                                    "10.2.0.0/24", "gateway", "10.2.0.1",
                                    "cidr6", "fd12:3456:789a:7::/64",
                                    "gateway6", "fd12:3456:789a:7::1"));
    run(doc, &acc, &ref);
    expect_substr(reason_of(ref, "network 1001"), "overlaps network 1000");
    assert_int_equal(json_array_size(json_object_get(acc, "networks")), 1);
    json_decref(acc);
    json_decref(ref);
}

static void image_sources_only_from_the_controllers_image_route(void **state)
{
    const char *rel = "/v1/images/aaaabbbb-0000-4000-8000-00000000000a/file";
    assert_true(policy_image_url_ok(rel, CONTROLLER, NULL));
    assert_true(policy_image_url_ok(rel, CONTROLLER, IMG));
    assert_true(policy_image_url_ok("https://hub.example:8443/v1/images/"
                                    "aaaabbbb-0000-4000-8000-00000000000a/file",
                                    "https://hub.example:8443/", IMG));
    static const char *const bad[] = {
        "https://evil.example/x.qcow2",
        "https://evil.example/v1/images/aaaabbbb-0000-4000-8000-00000000000a/file",
        "https://hub.example:8443.evil.example/v1/images/"
        "aaaabbbb-0000-4000-8000-00000000000a/file",
        "https://hub.example:8443@evil.example/v1/images/"
        "aaaabbbb-0000-4000-8000-00000000000a/file",
        "http://hub.example:8443/v1/images/aaaabbbb-0000-4000-8000-00000000000a/file",
        "/v1/images/aaaabbbb-0000-4000-8000-00000000000a/file?x=1",
        "/v1/images/aaaabbbb-0000-4000-8000-00000000000a/file#x",
        "/v1/images/../../v1/agent/desired/aaaa/file",
        "/v1/images/aaaabbbb-0000-4000-8000-00000000000a/../file",
        "/v1/images/aaaabbbb-0000-4000-8000-00000000000a",
        "/v1/agent/desired",
        "//evil.example/x.qcow2",
        "file:///etc/shadow",
        "",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        if (policy_image_url_ok(bad[i], CONTROLLER, NULL))
            fail_msg("accepted '%s'", bad[i]);
    assert_false(policy_image_url_ok(NULL, CONTROLLER, NULL));
    /* The route must name the image the entry is about. */
    assert_false(policy_image_url_ok(rel, CONTROLLER,
                                     "aaaabbbb-0000-4000-8000-00000000000b"));

    json_t *doc = good_doc(), *acc, *ref;
    json_object_set_new(json_object_get(at(doc, "vms", 1), "image_source"),
                        "url", json_string("https://evil.example/x.qcow2"));
    run(doc, &acc, &ref);
    expect_substr(reason_of(ref, "vm 0123abcd-0000-4000-8000-000000000002"),
                  "'https://evil.example/x.qcow2' is not this controller's");
    assert_false(has_entry(acc, "vms", "id", VM2));
    assert_true(has_entry(acc, "vms", "id", VM1));
    json_decref(acc);
    json_decref(ref);
}

static void names_and_sizes_stay_within_bounds(void **state)
{
    static const char *const bad[] = { "vcpus", "memory_mib", "disk_gib",
                                       "name", "user_data", "ssh_keys" };
    json_t *vals[ARRAY_SIZE(bad)];
    vals[0] = json_integer(9);                 /* the host has 8 */
    vals[1] = json_integer(16385);             /* the host has 16384 */
    vals[2] = json_integer(501);               /* the host has 500 */
    vals[3] = json_string("web\nX-Injected: 1");
    char *big = xcalloc(POLICY_USER_DATA_MAX + 2, 1);
    memset(big, 'a', POLICY_USER_DATA_MAX + 1);
    vals[4] = json_string(big);
    free(big);
    vals[5] = json_array();
    for (int k = 0; k <= POLICY_SSH_KEYS_MAX; k++)
        json_array_append_new(vals[5], json_string("ssh-ed25519 AAAA"));
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        json_t *doc = good_doc(), *acc, *ref;
        json_object_set_new(at(doc, "vms", 1), bad[i], vals[i]);
        run(doc, &acc, &ref);
        expect_substr(reason_of(ref, "vm 0123abcd-0000-4000-8000-000000000002"),
                      bad[i]);
        assert_false(has_entry(acc, "vms", "id", VM2));
        assert_true(has_entry(acc, "vms", "id", VM1));
        json_decref(acc);
        json_decref(ref);
    }
}

static void mesh_peers_speak_only_for_mesh_addresses(void **state)
{
    static const char *const A = "0123abcd-0000-4000-8000-0000000000e1";
    static const char *const B = "0123abcd-0000-4000-8000-0000000000e2";
    static const char *const C = "0123abcd-0000-4000-8000-0000000000e3";
    json_t *doc = good_doc(), *acc, *ref;
    json_t *peers = json_object_get(doc, "peers");
    json_array_append_new(peers, json_pack("{s:s, s:[s]}", "node_id", A,
                                           "allowed_ips", "100.96.0.2/32"));
    json_array_append_new(peers, json_pack("{s:s, s:[s, s]}", "node_id", B,
                                           "allowed_ips", "100.96.0.3/32",
                                           "0.0.0.0/0"));
    json_array_append_new(peers, json_pack("{s:s, s:[s]}", "node_id", C,
                                           "allowed_ips", "192.168.1.0/24"));
    json_array_append_new(peers, json_pack("{s:s, s:[s]}", "node_id", "x",
                                           "allowed_ips", "100.0.0.0/8"));
    run(doc, &acc, &ref);
    assert_null(reason_of(ref, "peer 0123abcd-0000-4000-8000-0000000000e1"));
    expect_substr(reason_of(ref, "peer 0123abcd-0000-4000-8000-0000000000e2"),
                  "beyond the mesh");
    expect_substr(reason_of(ref, "peer 0123abcd-0000-4000-8000-0000000000e3"),
                  "beyond the mesh");
    expect_substr(reason_of(ref, "peers[3]"), "beyond the mesh");
    assert_int_equal(json_array_size(json_object_get(acc, "peers")), 1);
    assert_true(has_entry(acc, "peers", "node_id", A));
    json_decref(acc);
    json_decref(ref);
}

/* A network accepted before and refused now (the host gained a route over
 * it, or the document changed it) stays as it was, VMs on it included. */
static void a_refused_network_already_built_stays_as_it_was(void **state)
{
    json_t *applied = good_doc();
    json_t *doc = good_doc(), *acc, *ref;
    json_object_set_new(at(doc, "networks", 0), "cidr",
                        json_string("192.168.1.0/24"));
    json_object_set_new(at(doc, "networks", 0), "gateway",
                        json_string("192.168.1.1"));
    /* A newcomer whose range overlaps the kept one is not built. */
    json_array_append_new(json_object_get(doc, "networks"),
                          json_pack("{s:s, s:i, s:s, s:s}", "id", "w2",
                                    "vxlan_id", 1001, "cidr", "10.1.0.0/16",
                                    "gateway", "10.1.0.1"));
    struct policy_host h;
    host_init(&h);
    h.applied = applied;
    assert_int_equal(policy_filter(doc, &h, &acc, &ref), 0);
    expect_substr(reason_of(ref, "network 1000"), "it stays as it was");
    expect_substr(reason_of(ref, "network 1001"), "overlaps network 1000");
    json_t *nets = json_object_get(acc, "networks");
    assert_int_equal(json_array_size(nets), 1);
    assert_string_equal(json_str(json_array_get(nets, 0), "cidr"),
                        "10.1.0.0/24");
    assert_true(has_entry(acc, "vms", "id", VM1));
    assert_true(has_port(acc, "tcp", 20080));
    json_decref(acc);
    json_decref(ref);
    /* Without it applied before, the network is simply refused. */
    h.applied = NULL;
    assert_int_equal(policy_filter(doc, &h, &acc, &ref), 0);
    assert_false(has_entry(acc, "networks", "id", "w1"));
    assert_false(has_entry(acc, "vms", "id", VM1));
    json_decref(acc);
    json_decref(ref);
    policy_host_clear(&h);
    json_decref(doc);
    json_decref(applied);
}

static void deleted_vms_go_through_whatever_their_spec_says(void **state)
{
    json_t *doc = good_doc(), *acc, *ref;
    json_t *vm2 = at(doc, "vms", 1);
    json_object_set_new(vm2, "deleted", json_true());
    json_object_set_new(vm2, "vcpus", json_integer(100000));
    json_object_set_new(json_object_get(vm2, "image_source"), "url",
                        json_string("https://evil.example/x.qcow2"));
    add_port(doc, "tcp", 20081, VM2, "10.1.0.77");
    run(doc, &acc, &ref);
    assert_int_equal(json_array_size(ref), 0);
    assert_true(has_entry(acc, "vms", "id", VM2));
    /* Its port goes with it, unremarked; the other VM's stays. */
    assert_false(has_port(acc, "tcp", 20081));
    assert_true(has_port(acc, "tcp", 20080));
    json_decref(acc);
    json_decref(ref);
}

static void the_refusal_list_is_bounded(void **state)
{
    json_t *doc = good_doc(), *acc, *ref;
    for (int p = 1; p <= 200; p++)
        add_port(doc, "tcp", p, VM1, "10.1.0.5");
    run(doc, &acc, &ref);
    assert_int_equal(json_array_size(ref), AGENT_REFUSED_MAX);
    json_t *last = json_array_get(ref, AGENT_REFUSED_MAX - 1);
    assert_string_equal(json_str(last, "object"), "more");
    expect_substr(json_str(last, "reason"), "137 further refusals");
    /* The honest port still applies. */
    assert_true(has_port(acc, "tcp", 20080));
    json_decref(acc);
    json_decref(ref);
}

/* What the firewall is planned from is the accepted part: no DNAT for a
 * refused port, no bridge for a refused network. */
static void the_planned_ruleset_holds_only_what_was_accepted(void **state)
{
    json_t *doc = good_doc(), *acc, *ref;
    add_port(doc, "tcp", 22, VM1, "10.1.0.5");
    add_port(doc, "tcp", 20090, VM1, "192.168.1.10");
    run(doc, &acc, &ref);
    struct nf_state s;
    char *err = NULL;
    assert_int_equal(netfabric_state_from_json(acc, NULL, &s, &err), 0);
    struct buf b = BUF_INIT;
    assert_int_equal(nftplan_build(&s, &b), 0);
    const char *plan = buf_str(&b);
    assert_non_null(strstr(plan, "tcp dport 20080 dnat to 10.1.0.5"));
    assert_null(strstr(plan, "dport 22 "));
    assert_null(strstr(plan, "192.168.1.10"));
    buf_free(&b);
    nf_state_clear(&s);
    json_decref(acc);
    json_decref(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(proc_net_lists_listening_tcp_and_bound_udp_ports),
        cmocka_unit_test(route_lists_non_default_routes_and_fib_trie_own_addresses),
        cmocka_unit_test(host_facts_come_from_the_root_prefix),
        cmocka_unit_test(an_honest_document_passes_whole),
        cmocka_unit_test(a_networks_own_bridge_does_not_refuse_it),
        cmocka_unit_test(host_ports_only_in_range_and_not_in_use),
        cmocka_unit_test(permitted_well_known_ports_pass_beyond_the_range),
        cmocka_unit_test(the_wireguard_port_is_never_published),
        cmocka_unit_test(port_targets_only_the_vms_own_address),
        cmocka_unit_test(unknown_host_facts_refuse_ports_and_networks),
        cmocka_unit_test(bridges_are_only_the_documents_own_networks),
        cmocka_unit_test(vm_addresses_only_host_addresses_inside_the_cidr),
        cmocka_unit_test(networks_over_host_routes_mesh_or_reserved_are_refused),
        cmocka_unit_test(ipv6_routes_leave_out_default_link_local_and_multicast),
        cmocka_unit_test(ipv6_prefixes_are_unique_local_and_clear_of_the_host),
        cmocka_unit_test(image_sources_only_from_the_controllers_image_route),
        cmocka_unit_test(names_and_sizes_stay_within_bounds),
        cmocka_unit_test(mesh_peers_speak_only_for_mesh_addresses),
        cmocka_unit_test(a_refused_network_already_built_stays_as_it_was),
        cmocka_unit_test(deleted_vms_go_through_whatever_their_spec_says),
        cmocka_unit_test(the_refusal_list_is_bounded),
        cmocka_unit_test(the_planned_ruleset_holds_only_what_was_accepted),
    };
    return cmocka_run_group_tests(tests, tu_dir_setup, tu_dir_teardown);
}
