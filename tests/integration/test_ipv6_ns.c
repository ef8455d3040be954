/* IPv6 in a tenant network, in network namespaces this test makes: a
 * provider host applying the plan through netfabric_apply (bridge with the
 * IPv6 gateway, nftables with the tap filter, NAT66 and DNAT6), a VM on
 * the bridge (a veth stands in for its tap) and an "internet" host on the
 * provider's WAN segment, where the host has its global IPv6 address. The
 * VM reaches its gateway over IPv6, a source it does not own is dropped at
 * its tap, its egress is masqueraded to the internet, and its published
 * port answers at the host's IPv6 address. Needs root; skips (77)
 * without it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "netfabric/apply.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/icmp6.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#define VM1 "0123abcd-0000-4000-8000-000000000001"
#define VM1_MAC "52:54:00:00:66:05"
#define VM1_IP "10.66.0.5"
#define VM1_IP6 "fd66:6666:6666:1::5"
#define SPOOF_IP6 "fd66:6666:6666:1::99"
#define GATEWAY "10.66.0.1"
#define GATEWAY6 "fd66:6666:6666:1::1"
#define HOST_WAN6 "2001:db8:66::1"
#define INET_IP6 "2001:db8:66::2"
#define VM_PORT 7002
#define HOST_PORT 20080

static const char *DOC =
    "{\"mesh\": null, \"peers\": [],"
    " \"networks\": [{\"vxlan_id\": 1000, \"cidr\": \"10.66.0.0/24\","
    "   \"gateway\": \"" GATEWAY "\", \"cidr6\": \"fd66:6666:6666:1::/64\","
    "   \"gateway6\": \"" GATEWAY6 "\", \"mtu\": 1370, \"bridge\": \"fogbr1000\","
    "   \"vteps\": [], \"macs\": []}],"
    " \"ports\": [{\"vm_id\": \"" VM1 "\", \"proto\": \"tcp\", \"host_port\": 20080,"
    "   \"vm_port\": 7002, \"vm_address\": \"" VM1_IP "\"}],"
    " \"vms\": [{\"id\": \"" VM1 "\", \"nics\": [{\"mac\": \"" VM1_MAC "\","
    "   \"address\": \"" VM1_IP "\", \"address6\": \"" VM1_IP6 "\","
    "   \"bridge\": \"fogbr1000\"}]}]}";

#define SINK_PORT 9006

static char P[16];
static char ns_host[32], ns_vm[32], ns_inet[32];
static pid_t server, sink;
/* Shared with the children: [0] unused, [1..] the text a TCP client
 * read, [SINK_REAL], [SINK_SPOOF] datagrams the internet sink got. */
static int *shared;
#define SINK_REAL 40
#define SINK_SPOOF 41

static int apply_fn(void *arg)
{
    (void)arg;
    struct nf_state s;
    if (tu_nf_state(DOC, &s) != 0)
        return 1;
    s.public_addr = 0;
    s.has_public_addr6 = true;
    inet_pton(AF_INET6, HOST_WAN6, &s.public_addr6);
    int r = netfabric_apply(&s);
    if (r < 0)
        fprintf(stderr, "netfabric_apply: %s\n", strerror(-r));
    nf_state_clear(&s);
    return r < 0;
}

/* No duplicate address detection in this namespace: addresses usable at
 * once (the guest's init does the same). */
static int nodad_fn(void *arg)
{
    const char *dev = arg;
    char path[96];
    int bad = 0;
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/accept_dad",
                 i ? dev : "default");
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        bad |= fd < 0 || write(fd, "0", 1) != 1;
        if (fd >= 0)
            close(fd);
    }
    return bad;
}

struct ping6_arg {
    const char *src, *dst;
    int timeout_ms;
};

/* ICMPv6 echo in the namespace: 0 on a reply, 1 on none, 2 on no socket. */
static int ping6_fn(void *arg)
{
    const struct ping6_arg *a = arg;
    _cleanup_close_ int fd = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
    if (fd < 0)
        return 2;
    struct sockaddr_in6 dst = { .sin6_family = AF_INET6 };
    inet_pton(AF_INET6, a->dst, &dst.sin6_addr);
    if (a->src) {
        struct sockaddr_in6 src = { .sin6_family = AF_INET6 };
        inet_pton(AF_INET6, a->src, &src.sin6_addr);
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
            return 2;
    }
    uint16_t id = (uint16_t)getpid();
    for (int waited = 0, seq = 1; waited < a->timeout_ms; seq++) {
        struct icmp6_hdr h = { .icmp6_type = ICMP6_ECHO_REQUEST };
        h.icmp6_id = htons(id);
        h.icmp6_seq = htons((uint16_t)seq);
        sendto(fd, &h, sizeof(h), 0, (struct sockaddr *)&dst, sizeof(dst));
        for (int slice = 0; slice < 4; slice++, waited += 50) {
            struct pollfd pf = { .fd = fd, .events = POLLIN };
            if (poll(&pf, 1, 50) <= 0)
                continue;
            struct icmp6_hdr r;
            struct sockaddr_in6 from;
            socklen_t fl = sizeof(from);
            ssize_t n = recvfrom(fd, &r, sizeof(r), 0, (struct sockaddr *)&from,
                                 &fl);
            if (n >= (ssize_t)sizeof(r) && r.icmp6_type == ICMP6_ECHO_REPLY &&
                ntohs(r.icmp6_id) == id &&
                memcmp(&from.sin6_addr, &dst.sin6_addr, 16) == 0)
                return 0;
        }
    }
    return 1;
}

static bool ping6(const char *ns, const char *src, const char *dst, int ms)
{
    struct ping6_arg a = { src, dst, ms };
    return tu_in_ns(ns, ping6_fn, &a) == 0;
}

/* A TCP server on [::]:VM_PORT writing the client's address as it sees
 * it, then closing; runs until killed. */
static int server_fn(void *arg)
{
    (void)arg;
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in6 sa = { .sin6_family = AF_INET6,
                               .sin6_port = htons(VM_PORT),
                               .sin6_addr = IN6ADDR_ANY_INIT };
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(fd, 8) < 0)
        return 1;
    for (;;) {
        struct sockaddr_in6 from;
        socklen_t fl = sizeof(from);
        int c = accept(fd, (struct sockaddr *)&from, &fl);
        if (c < 0)
            continue;
        char t[INET6_ADDRSTRLEN] = "";
        inet_ntop(AF_INET6, &from.sin6_addr, t, sizeof(t));
        if (write(c, t, strlen(t)) < 0)
            shared[0] = -1;
        close(c);
    }
}

/* The internet host's UDP sink: counts datagrams by their first byte
 * ('r' real source, 's' spoofed). */
static int sink_fn(void *arg)
{
    (void)arg;
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 sa = { .sin6_family = AF_INET6,
                               .sin6_port = htons(SINK_PORT),
                               .sin6_addr = IN6ADDR_ANY_INIT };
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return 1;
    for (;;) {
        char c;
        if (recv(fd, &c, 1, 0) == 1)
            __atomic_add_fetch(&shared[c == 's' ? SINK_SPOOF : SINK_REAL], 1,
                               __ATOMIC_SEQ_CST);
    }
}

struct send_arg {
    const char *src;
    char tag;
};

static int send_fn(void *arg)
{
    const struct send_arg *a = arg;
    _cleanup_close_ int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 src = { .sin6_family = AF_INET6 };
    struct sockaddr_in6 dst = { .sin6_family = AF_INET6,
                                .sin6_port = htons(SINK_PORT) };
    inet_pton(AF_INET6, a->src, &src.sin6_addr);
    inet_pton(AF_INET6, INET_IP6, &dst.sin6_addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
        return 1;
    for (int i = 0; i < 3; i++)
        if (sendto(fd, &a->tag, 1, 0, (struct sockaddr *)&dst, sizeof(dst)) != 1)
            return 1;
    return 0;
}

static void udp6_send(const char *src, char tag)
{
    struct send_arg a = { src, tag };
    assert_int_equal(tu_in_ns(ns_vm, send_fn, &a), 0);
}

/* Connect to [dst]:port from the namespace and read what the server
 * says into shared (as text after the int). 0 on an answer. */
struct connect_arg {
    const char *dst;
    int port;
};

static int connect_fn(void *arg)
{
    const struct connect_arg *a = arg;
    for (int tries = 0; tries < 40; tries++) {
        _cleanup_close_ int fd = socket(AF_INET6, SOCK_STREAM, 0);
        struct sockaddr_in6 sa = { .sin6_family = AF_INET6,
                                   .sin6_port = htons((uint16_t)a->port) };
        inet_pton(AF_INET6, a->dst, &sa.sin6_addr);
        struct timeval tv = { 1, 0 };
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            poll(NULL, 0, 250);
            continue;
        }
        char *out = (char *)&shared[1];
        ssize_t n = read(fd, out, INET6_ADDRSTRLEN - 1);
        if (n > 0) {
            out[n] = '\0';
            return 0;
        }
    }
    return 1;
}

static bool tcp6_answers(const char *ns, const char *dst, int port)
{
    struct connect_arg a = { dst, port };
    return tu_in_ns(ns, connect_fn, &a) == 0;
}

static int topo_setup(void **state)
{
    (void)state;
    snprintf(ns_host, sizeof(ns_host), "%s-host", P);
    snprintf(ns_vm, sizeof(ns_vm), "%s-vm", P);
    snprintf(ns_inet, sizeof(ns_inet), "%s-inet", P);
    char tap[IFNAMSIZ];
    if (tu_ns_add(ns_host) || tu_in_ns(ns_host, nodad_fn, "lo") ||
        tu_ip("-n %s link add v6wan type bridge", ns_host) ||
        tu_ip("-n %s link set v6wan up", ns_host) ||
        tu_ip("-n %s addr add " HOST_WAN6 "/64 dev v6wan nodad", ns_host) ||
        tu_ns_add(ns_inet) || tu_in_ns(ns_inet, nodad_fn, "lo") ||
        tu_ns_wire(ns_host, "v6wan", "v6wanv", ns_inet, "198.18.66.2/24") ||
        tu_ip("-n %s addr add " INET_IP6 "/64 dev eth0 nodad", ns_inet))
        return -1;
    if (tu_in_ns(ns_host, apply_fn, NULL) != 0)
        return -1;
    /* The VM: its MAC before IPv6 comes up, so its link-local address is
     * the EUI-64 one the firewall expects. */
    if (netfabric_tap_name(VM1, 0, tap) < 0 || tu_ns_add(ns_vm) ||
        tu_in_ns(ns_vm, nodad_fn, "lo") ||
        tu_ns_wire(ns_host, "fogbr1000", tap, ns_vm, VM1_IP "/24") ||
        tu_ip("-n %s link set eth0 down", ns_vm) ||
        tu_ip("-n %s link set eth0 address " VM1_MAC, ns_vm) ||
        tu_in_ns(ns_vm, nodad_fn, "eth0") ||
        tu_ip("-n %s link set eth0 up", ns_vm) ||
        tu_ip("-n %s addr add " VM1_IP6 "/64 dev eth0 nodad", ns_vm) ||
        tu_ip("-n %s addr add " SPOOF_IP6 "/64 dev eth0 nodad", ns_vm) ||
        tu_ip("-n %s route add default via " GATEWAY, ns_vm) ||
        tu_ip("-n %s -6 route add default via " GATEWAY6, ns_vm))
        return -1;
    server = tu_ns_fork(ns_vm, server_fn, NULL);
    sink = tu_ns_fork(ns_inet, sink_fn, NULL);
    return server > 0 && sink > 0 ? 0 : -1;
}

static int topo_teardown(void **state)
{
    (void)state;
    if (server > 0)
        tu_kill(server, SIGKILL);
    if (sink > 0)
        tu_kill(sink, SIGKILL);
    const char *all[] = { ns_vm, ns_inet, ns_host };
    for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
        _cleanup_free_ char *path = xasprintf("/run/netns/%s", all[i]);
        if (access(path, F_OK) == 0)
            tu_ip("netns del %s", all[i]);
    }
    return 0;
}

static void vm_reaches_its_gateway_over_ipv6(void **state)
{
    (void)state;
    assert_true(ping6(ns_vm, VM1_IP6, GATEWAY6, 8000));
}

static void vm_egress_is_masqueraded_to_the_internet(void **state)
{
    (void)state;
    /* The internet host has no route to the ULA: an answer means the
     * echo left with the host's address. */
    assert_true(ping6(ns_vm, VM1_IP6, INET_IP6, 8000));
}

static void spoofed_sources_are_dropped_at_the_tap(void **state)
{
    (void)state;
    /* Datagrams from an address of the /64 that is not the VM's, then
     * from its own: once the later ones arrive, the earlier would have. */
    udp6_send(SPOOF_IP6, 's');
    udp6_send(VM1_IP6, 'r');
    for (int i = 0; i < 100 && __atomic_load_n(&shared[SINK_REAL],
                                                __ATOMIC_SEQ_CST) < 3; i++)
        poll(NULL, 0, 50);
    assert_int_equal(__atomic_load_n(&shared[SINK_REAL], __ATOMIC_SEQ_CST), 3);
    poll(NULL, 0, 200);
    assert_int_equal(__atomic_load_n(&shared[SINK_SPOOF], __ATOMIC_SEQ_CST), 0);
    /* Nor does an echo from it get an answer (its neighbour
     * advertisement for the address is dropped too). */
    assert_false(ping6(ns_vm, SPOOF_IP6, GATEWAY6, 1000));
}

static void published_port_answers_at_the_hosts_ipv6_address(void **state)
{
    (void)state;
    assert_true(tcp6_answers(ns_inet, HOST_WAN6, HOST_PORT));
    /* DNAT only: the VM sees the client as it is. */
    assert_string_equal((char *)&shared[1], INET_IP6);
}

int main(void)
{
    int r = tu_ns_test_begin(256, (void **)&shared);
    if (r != 0)
        return r;
    snprintf(P, sizeof(P), "v6%d", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vm_reaches_its_gateway_over_ipv6),
        cmocka_unit_test(vm_egress_is_masqueraded_to_the_internet),
        cmocka_unit_test(spoofed_sources_are_dropped_at_the_tap),
        cmocka_unit_test(published_port_answers_at_the_hosts_ipv6_address),
    };
    return cmocka_run_group_tests_name("ipv6 tenant network", tests,
                                       topo_setup, topo_teardown);
}
