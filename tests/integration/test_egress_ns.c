/* Integration test of the egress policy for tenant VMs, in network
 * namespaces this test makes: a provider host running the nftables plan
 * through netfabric_apply, two VMs on a tenant bridge (veths stand in for
 * taps), a LAN host on private segments behind the provider host, a
 * metadata host at 169.254.169.254 and an internet host in the benchmark
 * range 198.18.0.0/15. Sinks in the LAN, metadata and host namespaces
 * count every datagram and connection that arrives: the VM's attempts must
 * leave them at zero while the internet host gets its TCP and UDP, until
 * the provider opts the LAN range in. Needs root; skips (77) without it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "netfabric/apply.h"
#include "netfabric/nft.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#define UDP_PORT 7001
#define TCP_PORT 7002
#define PUB_PORT 20080

#define VM1 "0123abcd-0000-4000-8000-000000000001"
#define VM2 "4567abcd-0000-4000-8000-000000000002"
#define VM1_MAC "52:54:00:00:77:05"
#define VM2_MAC "52:54:00:00:77:06"
#define VM1_IP "10.77.0.5"
#define VM2_IP "10.77.0.6"
#define GATEWAY "10.77.0.1"
#define HOST_LAN "192.168.93.1"
#define HOST_WAN "198.18.0.1"
#define INET_IP "198.18.0.2"
#define METADATA "169.254.169.254"

/* Where a sink runs; its counts live in shared memory. */
enum sink { SINK_LAN, SINK_METADATA, SINK_HOST, SINK_INET, SINK_VM2, SINK_MAX };

struct shared {
    int64_t udp[SINK_MAX];
    int64_t tcp[SINK_MAX];
    char udp_from[SINK_MAX][INET_ADDRSTRLEN]; /* last datagram's source */
    char seen[64]; /* what a TCP client read back: its address as seen */
};
static struct shared *sh;

static char P[16];
static char ns_host[32], ns_vm1[32], ns_vm2[32], ns_vm3[32], ns_lan[32],
    ns_md[32], ns_inet[32];
static pid_t sinks[SINK_MAX];

/* ---- sinks: count every UDP datagram and TCP connection ---- */
struct sink_arg {
    enum sink k;
    int ready_fd;
};

static int sink_fn(void *arg)
{
    const struct sink_arg *a = arg;
    int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_ANY) };
    sa.sin_port = htons(UDP_PORT);
    if (bind(u, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return 1;
    sa.sin_port = htons(TCP_PORT);
    if (bind(t, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(t, 16) < 0)
        return 1;
    if (write(a->ready_fd, "r", 1) != 1)
        return 1;
    for (;;) {
        struct pollfd pf[2] = { { .fd = u, .events = POLLIN },
                                { .fd = t, .events = POLLIN } };
        if (poll(pf, 2, -1) < 0)
            continue;
        struct sockaddr_in peer;
        socklen_t pl = sizeof(peer);
        if (pf[0].revents & POLLIN) {
            char d[64];
            if (recvfrom(u, d, sizeof(d), 0, (struct sockaddr *)&peer, &pl) >= 0) {
                inet_ntop(AF_INET, &peer.sin_addr, sh->udp_from[a->k],
                          sizeof(sh->udp_from[a->k]));
                __atomic_add_fetch(&sh->udp[a->k], 1, __ATOMIC_SEQ_CST);
            }
        }
        pl = sizeof(peer);
        if (pf[1].revents & POLLIN) {
            int c = accept(t, (struct sockaddr *)&peer, &pl);
            if (c >= 0) {
                __atomic_add_fetch(&sh->tcp[a->k], 1, __ATOMIC_SEQ_CST);
                char s[INET_ADDRSTRLEN];
                inet_ntop(AF_INET, &peer.sin_addr, s, sizeof(s));
                (void)!write(c, s, strlen(s));
                close(c);
            }
        }
    }
}

static int sink_start(enum sink k, const char *ns)
{
    int p[2];
    if (pipe(p) < 0)
        return -1;
    struct sink_arg a = { k, p[1] };
    sinks[k] = tu_ns_fork(ns, sink_fn, &a);
    close(p[1]);
    char c;
    struct pollfd pf = { .fd = p[0], .events = POLLIN };
    int ok = sinks[k] > 0 && poll(&pf, 1, 20000) > 0 && read(p[0], &c, 1) == 1;
    close(p[0]);
    return ok ? 0 : -1;
}

/* ---- clients, run inside a namespace ---- */
struct client_arg {
    const char *dst;
    int port;
    int timeout_ms;
};

static int udp_fn(void *arg)
{
    const struct client_arg *a = arg;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)a->port) };
    inet_pton(AF_INET, a->dst, &sa.sin_addr);
    /* No route is an answer too: the datagram left or it did not. */
    return sendto(fd, "egress", 6, 0, (struct sockaddr *)&sa, sizeof(sa)) == 6 ? 0 : 1;
}

/* 0 when connected within the timeout (the server's text in sh->seen). */
static int tcp_fn(void *arg)
{
    const struct client_arg *a = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)a->port) };
    inet_pton(AF_INET, a->dst, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
        return 1;
    struct pollfd pf = { .fd = fd, .events = POLLOUT };
    int err = 0;
    socklen_t el = sizeof(err);
    if (poll(&pf, 1, a->timeout_ms) <= 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err)
        return 1;
    pf.events = POLLIN;
    if (poll(&pf, 1, 20000) <= 0)
        return 1;
    ssize_t n = read(fd, sh->seen, sizeof(sh->seen) - 1);
    sh->seen[n > 0 ? n : 0] = '\0';
    return 0;
}

static void udp_send(const char *ns, const char *dst, int port)
{
    struct client_arg a = { dst, port, 0 };
    assert_int_equal(tu_in_ns(ns, udp_fn, &a), 0);
}

/* True when a TCP connection from ns to dst:port opens within timeout_ms;
 * what the server saw as our address is then in sh->seen. */
static bool tcp_connects(const char *ns, const char *dst, int port,
                         int timeout_ms)
{
    struct client_arg a = { dst, port, timeout_ms };
    sh->seen[0] = '\0';
    return tu_in_ns(ns, tcp_fn, &a) == 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait (generously) until *counter reaches want. */
static bool wait_count(const int64_t *counter, int64_t want)
{
    for (int64_t end = now_ms() + 20000; now_ms() < end;) {
        if (__atomic_load_n(counter, __ATOMIC_SEQ_CST) >= want)
            return true;
        poll(NULL, 0, 50);
    }
    return false;
}

/* ---- the provider host's plan ---- */
struct apply_arg {
    const struct ipam_cidr *allow;
    size_t n_allow;
};

static const char *DOC =
    "{\"mesh\": null, \"peers\": [],"
    " \"networks\": [{\"vxlan_id\": 1000, \"cidr\": \"10.77.0.0/24\","
    "   \"gateway\": \"" GATEWAY "\", \"mtu\": 1370, \"bridge\": \"fogbr1000\","
    "   \"vteps\": [], \"macs\": []}],"
    " \"ports\": [{\"vm_id\": \"" VM2 "\", \"proto\": \"tcp\", \"host_port\": 20080,"
    "   \"vm_port\": 7002, \"vm_address\": \"" VM2_IP "\"}],"
    " \"vms\": [{\"id\": \"" VM1 "\", \"nics\": [{\"mac\": \"" VM1_MAC "\","
    "   \"address\": \"" VM1_IP "\", \"bridge\": \"fogbr1000\"}]},"
    "  {\"id\": \"" VM2 "\", \"nics\": [{\"mac\": \"" VM2_MAC "\","
    "   \"address\": \"" VM2_IP "\", \"bridge\": \"fogbr1000\"}]}]}";

static int apply_fn(void *arg)
{
    const struct apply_arg *a = arg;
    struct nf_state s;
    if (tu_nf_state(DOC, &s) != 0)
        return 1;
    s.public_addr = 0;
    s.egress_allow = a->allow;
    s.n_egress_allow = a->n_allow;
    int r = netfabric_apply(&s);
    if (r < 0)
        fprintf(stderr, "netfabric_apply: %s\n", strerror(-r));
    nf_state_clear(&s);
    return r < 0;
}

static void apply_plan(const char *allow)
{
    struct apply_arg a = { 0 };
    struct ipam_cidr *v = NULL;
    assert_int_equal(ipam_cidr_list_parse(allow, &v, &a.n_allow), 0);
    a.allow = v;
    assert_int_equal(tu_in_ns(ns_host, apply_fn, &a), 0);
    free(v);
}

/* Packets counted by the first rule of `chain` in our inet table that
 * holds `match` and a counter: the child writes them into sh->seen. */
struct counter_arg {
    const char *chain, *match;
};

static int counter_fn(void *arg)
{
    struct counter_arg *a = arg;
    _cleanup_free_ char *cmd = xasprintf("list chain inet fogfabric %s", a->chain);
    _cleanup_free_ char *out = NULL;
    if (nft_query(cmd, &out, NULL) < 0)
        return 1;
    const char *line = strstr(out, a->match);
    const char *c = line ? strstr(line, "counter packets ") : NULL;
    if (!c || memchr(line, '\n', (size_t)(c - line)))
        return 1;
    long long n;
    if (sscanf(c, "counter packets %lld", &n) != 1)
        return 1;
    snprintf(sh->seen, sizeof(sh->seen), "%lld", n);
    return 0;
}

static int64_t drops(const char *chain, const char *match)
{
    struct counter_arg a = { chain, match };
    assert_int_equal(tu_in_ns(ns_host, counter_fn, &a), 0);
    return strtoll(sh->seen, NULL, 10);
}

/* Wait until the drop counter reaches want: the packets reached the host
 * and were dropped there, not lost on the way. */
static bool wait_drops(const char *chain, const char *match, int64_t want)
{
    for (int64_t end = now_ms() + 20000; now_ms() < end;) {
        if (drops(chain, match) >= want)
            return true;
        poll(NULL, 0, 100);
    }
    return false;
}

#define FWD_DROP "ip daddr @blocked4 counter"
#define TAP_DROP "iifname \"fogt*\" counter"
#define IN_DROP "\t\tcounter packets"

/* ---- topology ---- */
static void add_vm(const char *ns, const char *vm_id, const char *mac,
                   const char *cidr)
{
    char tap[IFNAMSIZ];
    assert_int_equal(netfabric_tap_name(vm_id, 0, tap), 0);
    assert_int_equal(tu_ns_add(ns), 0);
    assert_int_equal(tu_ns_wire(ns_host, "fogbr1000", tap, ns, cidr), 0);
    assert_int_equal(tu_ip("-n %s link set eth0 address %s", ns, mac), 0);
    assert_int_equal(tu_ip("-n %s route add default via %s", ns, GATEWAY), 0);
}

/* A segment: bridge br in the provider host with address host_cidr, and
 * namespace ns on it at peer_cidr. */
static int segment(const char *br, const char *host_cidr, const char *ns,
                   const char *veth, const char *peer_cidr)
{
    if (tu_ip("-n %s link add %s type bridge", ns_host, br) ||
        tu_ip("-n %s addr add %s dev %s", ns_host, host_cidr, br) ||
        tu_ip("-n %s link set %s up", ns_host, br) || tu_ns_add(ns))
        return -1;
    return tu_ns_wire(ns_host, br, veth, ns, peer_cidr);
}

static int topo_setup(void **state)
{
    snprintf(ns_host, sizeof(ns_host), "%s-host", P);
    snprintf(ns_vm1, sizeof(ns_vm1), "%s-vm1", P);
    snprintf(ns_vm2, sizeof(ns_vm2), "%s-vm2", P);
    snprintf(ns_vm3, sizeof(ns_vm3), "%s-vm3", P);
    snprintf(ns_lan, sizeof(ns_lan), "%s-lan", P);
    snprintf(ns_md, sizeof(ns_md), "%s-md", P);
    snprintf(ns_inet, sizeof(ns_inet), "%s-inet", P);
    if (tu_ns_add(ns_host) != 0)
        return -1;
    /* The LAN host holds an address in every private range we route to
     * it: RFC 1918 (three), CGNAT. */
    if (segment("eglan", HOST_LAN "/24", ns_lan, "eglanv", "192.168.93.2/24") ||
        tu_ip("-n %s addr add 10.93.0.1/24 dev eglan", ns_host) ||
        tu_ip("-n %s addr add 172.16.93.1/24 dev eglan", ns_host) ||
        tu_ip("-n %s addr add 100.64.93.1/24 dev eglan", ns_host) ||
        tu_ip("-n %s addr add 10.93.0.2/24 dev eth0", ns_lan) ||
        tu_ip("-n %s addr add 172.16.93.2/24 dev eth0", ns_lan) ||
        tu_ip("-n %s addr add 100.64.93.2/24 dev eth0", ns_lan))
        return -1;
    if (segment("egmd", "169.254.0.1/16", ns_md, "egmdv", METADATA "/16"))
        return -1;
    if (segment("egwan", HOST_WAN "/24", ns_inet, "egwanv", INET_IP "/24") ||
        tu_ip("-n %s route add default via %s", ns_host, INET_IP))
        return -1;
    return 0;
}

static int topo_teardown(void **state)
{
    for (int k = 0; k < SINK_MAX; k++)
        if (sinks[k] > 0)
            tu_kill(sinks[k], SIGKILL);
    const char *all[] = { ns_vm1, ns_vm2, ns_vm3, ns_lan, ns_md, ns_inet,
                          ns_host };
    for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
        _cleanup_free_ char *path = xasprintf("/run/netns/%s", all[i]);
        if (access(path, F_OK) == 0)
            tu_ip("netns del %s", all[i]);
    }
    return 0;
}

static void start_everything(void)
{
    apply_plan("");
    add_vm(ns_vm1, VM1, VM1_MAC, VM1_IP "/24");
    add_vm(ns_vm2, VM2, VM2_MAC, VM2_IP "/24");
    assert_int_equal(sink_start(SINK_LAN, ns_lan), 0);
    assert_int_equal(sink_start(SINK_METADATA, ns_md), 0);
    assert_int_equal(sink_start(SINK_HOST, ns_host), 0);
    assert_int_equal(sink_start(SINK_INET, ns_inet), 0);
    assert_int_equal(sink_start(SINK_VM2, ns_vm2), 0);
    /* The sinks count what reaches them: the provider host itself
     * reaches its LAN and the metadata address. */
    udp_send(ns_host, "192.168.93.2", UDP_PORT);
    udp_send(ns_host, METADATA, UDP_PORT);
    assert_true(wait_count(&sh->udp[SINK_LAN], 1));
    assert_true(wait_count(&sh->udp[SINK_METADATA], 1));
    assert_true(tcp_connects(ns_host, METADATA, TCP_PORT, 20000));
    assert_true(tcp_connects(ns_lan, HOST_LAN, TCP_PORT, 20000));
}

static const char *const PRIVATE[] = {
    "192.168.93.2", "10.93.0.2", "172.16.93.2", "100.64.93.2", METADATA,
};

static void vm_reaches_internet_but_not_lan_metadata_or_host(void **state)
{
    start_everything();
    int64_t lan_udp = sh->udp[SINK_LAN], lan_tcp = sh->tcp[SINK_LAN];
    int64_t md_udp = sh->udp[SINK_METADATA], md_tcp = sh->tcp[SINK_METADATA];
    int64_t host_udp = sh->udp[SINK_HOST], host_tcp = sh->tcp[SINK_HOST];
    int64_t fwd0 = drops("forward", FWD_DROP), in0 = drops("input", IN_DROP);

    /* Private, CGNAT and link-local destinations: nothing arrives. */
    for (size_t i = 0; i < ARRAY_SIZE(PRIVATE); i++) {
        udp_send(ns_vm1, PRIVATE[i], UDP_PORT);
        if (tcp_connects(ns_vm1, PRIVATE[i], TCP_PORT, 1500))
            fail_msg("the VM connected to %s", PRIVATE[i]);
        assert_false(tu_ping(ns_vm1, NULL, PRIVATE[i], 1000));
    }
    /* The host itself, on the gateway, its LAN and its public address:
     * nothing but ICMP echo on the gateway. */
    udp_send(ns_vm1, GATEWAY, UDP_PORT);
    udp_send(ns_vm1, HOST_LAN, UDP_PORT);
    udp_send(ns_vm1, HOST_WAN, UDP_PORT);
    assert_false(tcp_connects(ns_vm1, GATEWAY, TCP_PORT, 1500));
    assert_false(tcp_connects(ns_vm1, HOST_LAN, TCP_PORT, 1500));
    assert_false(tcp_connects(ns_vm1, HOST_WAN, TCP_PORT, 1500));
    assert_false(tu_ping(ns_vm1, NULL, HOST_LAN, 1000));
    assert_true(tu_ping(ns_vm1, NULL, GATEWAY, 8000));

    /* The internet: TCP and UDP arrive, masqueraded behind the host. */
    assert_true(tcp_connects(ns_vm1, INET_IP, TCP_PORT, 20000));
    assert_string_equal(sh->seen, HOST_WAN);
    int64_t inet_udp = sh->udp[SINK_INET];
    udp_send(ns_vm1, INET_IP, UDP_PORT);
    assert_true(wait_count(&sh->udp[SINK_INET], inet_udp + 1));
    assert_string_equal(sh->udp_from[SINK_INET], HOST_WAN);

    /* Every attempt above reached the host and met our drops (one UDP
     * datagram, at least one SYN and one echo per private address; three
     * datagrams, three SYNs and an echo to the host), so the silence of
     * the sinks is theirs. */
    assert_true(wait_drops("forward", FWD_DROP,
                           fwd0 + 3 * (int64_t)ARRAY_SIZE(PRIVATE)));
    assert_true(wait_drops("input", IN_DROP, in0 + 7));
    assert_int_equal(sh->udp[SINK_LAN], lan_udp);
    assert_int_equal(sh->tcp[SINK_LAN], lan_tcp);
    assert_int_equal(sh->udp[SINK_METADATA], md_udp);
    assert_int_equal(sh->tcp[SINK_METADATA], md_tcp);
    assert_int_equal(sh->udp[SINK_HOST], host_udp);
    assert_int_equal(sh->tcp[SINK_HOST], host_tcp);

    /* VM to VM within the tenant network works, unNATed. */
    assert_true(tcp_connects(ns_vm1, VM2_IP, TCP_PORT, 20000));
    assert_string_equal(sh->seen, VM1_IP);
    assert_true(tu_ping(ns_vm1, NULL, VM2_IP, 8000));
    int64_t vm_udp = sh->udp[SINK_VM2];
    udp_send(ns_vm1, VM2_IP, UDP_PORT);
    assert_true(wait_count(&sh->udp[SINK_VM2], vm_udp + 1));

    /* A published port answers the LAN: DNAT replies go back to a private
     * address. */
    assert_true(tcp_connects(ns_lan, HOST_LAN, PUB_PORT, 20000));
    assert_string_equal(sh->seen, "192.168.93.2");
}

static void opted_in_lan_range_becomes_reachable(void **state)
{
    apply_plan("192.168.93.0/24");
    int64_t lan_udp = sh->udp[SINK_LAN], md_udp = sh->udp[SINK_METADATA];
    int64_t host_tcp = sh->tcp[SINK_HOST];

    assert_true(tcp_connects(ns_vm1, "192.168.93.2", TCP_PORT, 20000));
    assert_string_equal(sh->seen, HOST_LAN); /* masqueraded */
    udp_send(ns_vm1, "192.168.93.2", UDP_PORT);
    assert_true(wait_count(&sh->udp[SINK_LAN], lan_udp + 1));
    assert_true(tu_ping(ns_vm1, NULL, "192.168.93.2", 8000));

    /* Only that range: the same LAN host's other ranges, the metadata
     * address and the host itself stay closed. */
    int64_t fwd0 = drops("forward", FWD_DROP), in0 = drops("input", IN_DROP);
    assert_false(tcp_connects(ns_vm1, "10.93.0.2", TCP_PORT, 1500));
    assert_false(tcp_connects(ns_vm1, METADATA, TCP_PORT, 1500));
    udp_send(ns_vm1, METADATA, UDP_PORT);
    assert_false(tcp_connects(ns_vm1, HOST_LAN, TCP_PORT, 1500));
    assert_true(wait_drops("forward", FWD_DROP, fwd0 + 3));
    assert_true(wait_drops("input", IN_DROP, in0 + 1));
    assert_int_equal(sh->udp[SINK_METADATA], md_udp);
    assert_int_equal(sh->tcp[SINK_HOST], host_tcp);

    /* Withdrawn again: closed. */
    apply_plan("");
    assert_false(tcp_connects(ns_vm1, "192.168.93.2", TCP_PORT, 1500));
}

/* A tap that is on no bridge (libvirt has not enslaved it yet, or it
 * slipped off): the host would answer ARP for its own addresses on it and
 * take the VM's packets, but our tables drop them first. */
static void tap_on_no_bridge_gets_nothing_through(void **state)
{
    char tap[IFNAMSIZ];
    assert_int_equal(netfabric_tap_name("89abcdef-0000-4000-8000-000000000003",
                                        0, tap), 0);
    assert_int_equal(tu_ns_add(ns_vm3), 0);
    assert_int_equal(tu_ip("-n %s link add %s type veth peer name eth0 netns %s",
                           ns_host, tap, ns_vm3), 0);
    assert_int_equal(tu_ip("-n %s link set %s up", ns_host, tap), 0);
    assert_int_equal(tu_ip("-n %s addr add 10.77.0.9/24 dev eth0", ns_vm3), 0);
    assert_int_equal(tu_ip("-n %s link set eth0 up", ns_vm3), 0);
    /* On-link: it ARPs for each destination itself. */
    assert_int_equal(tu_ip("-n %s route add default dev eth0", ns_vm3), 0);

    int64_t host_udp = sh->udp[SINK_HOST], inet_udp = sh->udp[SINK_INET];
    int64_t lan_udp = sh->udp[SINK_LAN];
    int64_t taps0 = drops("input", TAP_DROP) + drops("forward", TAP_DROP);
    udp_send(ns_vm3, HOST_LAN, UDP_PORT);
    udp_send(ns_vm3, GATEWAY, UDP_PORT);
    assert_false(tcp_connects(ns_vm3, HOST_LAN, TCP_PORT, 1500));
    assert_false(tu_ping(ns_vm3, NULL, HOST_LAN, 1000));
    bool seen = false;
    for (int64_t end = now_ms() + 20000; !seen && now_ms() < end;
         poll(NULL, 0, 100))
        seen = drops("input", TAP_DROP) + drops("forward", TAP_DROP) >= taps0 + 3;
    assert_true(seen);
    assert_int_equal(sh->udp[SINK_HOST], host_udp);
    assert_int_equal(sh->udp[SINK_INET], inet_udp);
    assert_int_equal(sh->udp[SINK_LAN], lan_udp);
}

int main(void)
{
    int r = tu_ns_test_begin(sizeof(*sh), (void **)&sh);
    if (r != 0)
        return r;
    snprintf(P, sizeof(P), "eg%d", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vm_reaches_internet_but_not_lan_metadata_or_host),
        cmocka_unit_test(opted_in_lan_range_becomes_reachable),
        cmocka_unit_test(tap_on_no_bridge_gets_nothing_through),
    };
    return cmocka_run_group_tests_name("egress policy", tests, topo_setup,
                                       topo_teardown);
}
