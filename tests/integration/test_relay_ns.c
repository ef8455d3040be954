/* The hub's WireGuard relay in namespaces: the controller (in this test's
 * own namespace, the "internet") answers address probes and relays on
 * RELAY_PORT; three real agents (libvirt test:///default, host networking
 * with wireguard-go):
 *  - one on the internet itself (NAT "none"),
 *  - one behind nftables masquerade keeping ports (endpoint-independent),
 *  - one behind `masquerade fully-random` (endpoint-dependent).
 * The two behind NAT have no direct path: the controller puts the pair on
 * the relay path. While the hub refuses its UDP relay port their agents
 * carry the frames over TCP (HTTPS upgraded to fog-relay); once it is
 * open they go back to UDP; either way they complete a WireGuard
 * handshake and ping each other's mesh address, the frames counted by the
 * hub. The node without NAT reaches both directly. A fourth node's router
 * drops all UDP: it has no NAT class and no path but the relay over TCP,
 * through which it pings the node behind the symmetric NAT.
 * Root, iproute2 and wireguard-go are needed; else skipped (77). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/client.h"
#include "api/relay.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "netfabric/nft.h"
#include "netfabric/wg.h"
#include "netfabric/wgkey.h"
#include "nodeagent/meshrelay.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define HUB_ADDR "198.51.100.1"
#define PROBE_PORT_TEXT "3478"
#define RELAY_PORT 3480
#define RELAY_PORT_TEXT "3480"
/* Made-up key of a node that never runs; its desired document shows
 * the peers' keys and paths. */
#define WATCHER_KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

enum { DIRECT, EIM, EDM, NOUDP, N_NODES };

struct node {
    struct tu_nat_node t;
    char *mesh, *pub;       /* its mesh address and public key */
};

/* NOUDP's router forwards no UDP at all, either way. */
static int udp_drop_fn(void *arg)
{
    (void)arg;
    _cleanup_free_ char *err = NULL;
    int r = nft_apply("add table inet noudp\n"
                      "add chain inet noudp through { type filter hook forward "
                      "priority 0; }\n"
                      "add rule inet noudp through meta l4proto udp drop\n",
                      false, &err);
    if (r < 0)
        fprintf(stderr, "nft: %s\n", err ? err : "?");
    return r < 0 ? 1 : 0;
}

/* The relay alone: no direct tries (test_relay_upgrade_ns has them). */
static const char *const agent_args[] = { "--direct-retry", "0", NULL };

static struct node nodes[N_NODES] = {
    [DIRECT] = { { "rl-direct", "198.51.100.10", NULL, NULL, NULL,
                   .run_args = agent_args } },
    [EIM] = { { "rl-eim", "198.51.100.11", "10.0.1", "masquerade", NULL,
                .run_args = agent_args } },
    [EDM] = { { "rl-edm", "198.51.100.12", "10.0.2", "masquerade fully-random",
                NULL, .run_args = agent_args } },
    [NOUDP] = { { "rl-noudp", "198.51.100.13", "10.0.3", "masquerade", NULL,
                  .run_args = agent_args } },
};

static struct tu_ctl ctl;
static char *tmp, *watcher;

static int nft_run(const char *script)
{
    _cleanup_free_ char *err = NULL;
    int r = nft_apply(script, false, &err);
    if (r < 0)
        fprintf(stderr, "nft: %s\n", err ? err : "?");
    return r < 0 ? 1 : 0;
}

/* The relay off: the hub refuses everything to its relay port with ICMP
 * port unreachable, as a closed port would. */
static void relay_block(bool on)
{
    assert_int_equal(nft_run(on ? "add table inet relayblock\n"
                                  "add chain inet relayblock in { type filter "
                                  "hook input priority 0; }\n"
                                  "add rule inet relayblock in udp dport "
                                  RELAY_PORT_TEXT " reject\n"
                                : "delete table inet relayblock\n"), 0);
}

/* Node n's mesh address and key (from the watcher's document) once the
 * pair of them is known, its NAT class once reported. */
static void learn(struct node *n)
{
    _cleanup_free_ char *path = xasprintf("/v1/nodes/%s", n->t.name);
    int64_t end = mono_ms() + 40000;
    while (mono_ms() < end && !(n->mesh && n->pub)) {
        long st;
        json_auto_t *o = tu_api(&ctl, ctl.admin_key, "GET", path, NULL, &st);
        json_auto_t *d = tu_api(&ctl, watcher, "GET", "/v1/agent/desired",
                                NULL, &st);
        json_t *p = tu_find(json_object_get(d, "peers"), "name", n->t.name);
        /* Without UDP no probe is answered: no NAT class. */
        if (json_str(o, "mesh_ip") && json_str(p, "public_key") &&
            (n == &nodes[NOUDP] ||
             json_str(json_object_get(o, "reachability"), "nat"))) {
            n->mesh = xstrdup(json_str(o, "mesh_ip"));
            n->pub = xstrdup(json_str(p, "public_key"));
        }
        if (!n->mesh)
            usleep(200000);
    }
    if (!n->mesh)
        fail_msg("%s never joined the mesh; log %s", n->t.name, n->t.log);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(tu_nat_hub(HUB_ADDR "/24"), 0);
    for (int i = 0; i < N_NODES; i++)
        assert_int_equal(tu_nat_node_build(&nodes[i].t, "rl", i), 0);
    assert_int_equal(tu_in_ns(nodes[NOUDP].t.router, udp_drop_fn, NULL), 0);
    relay_block(true);
    tmp = tu_tempdir("relay");
    _cleanup_free_ char *images = xasprintf("%s/images", tmp);
    assert_int_equal(mkdir(images, 0755), 0);
    static const char *args[] = { "--heartbeat", "1", "--no-inspect",
                                  "--probe-port", PROBE_PORT_TEXT,
                                  "--relay-port", RELAY_PORT_TEXT, NULL };
    tu_ctl_start_on(&ctl, HUB_ADDR, args);
    watcher = tu_node_register(&ctl, "rl-watcher",
                               "\"wg_public_key\":\"" WATCHER_KEY "\","
                               "\"endpoint\":\"198.51.100.99:51820\"");
    for (int i = 0; i < N_NODES; i++)
        assert_int_equal(tu_nat_node_start(&ctl, HUB_ADDR, tmp, &nodes[i].t),
                         0);
    for (int i = 0; i < N_NODES; i++)
        learn(&nodes[i]);
    return 0;
}

static bool torn_down;

static int teardown(void **state)
{
    (void)state;
    torn_down = true;
    for (int i = 0; i < N_NODES; i++) {
        struct node *n = &nodes[i];
        tu_nat_node_destroy(&n->t);
        free(n->mesh);
        free(n->pub);
        n->mesh = n->pub = NULL;
    }
    if (ctl.dir)
        tu_ctl_destroy(&ctl);
    if (tmp)
        tu_rmrf(tmp);
    free(tmp);
    free(watcher);
    tmp = watcher = NULL;
    return 0;
}

/* What node h's WireGuard says of peer j, as the exit status of a child
 * in h's namespace: bit 0 set when no handshake yet, bit 1 when its
 * endpoint is on loopback (a relay socket), 64 when unreadable. */
struct peer_arg {
    const struct node *h, *j;
};

static int peer_fn(void *arg)
{
    const struct peer_arg *a = arg;
    uint8_t key[WGKEY_LEN];
    struct wg_device d = { 0 };
    struct wg_opts o = { 0 };
    if (wgkey_from_base64(a->j->pub, key) < 0 ||
        wg_backend_pick()->get(&o, a->h->t.wg, &d) < 0)
        return 64;
    struct wg_peer *p = wg_device_find_peer(&d, key);
    int r = p ? 0 : 64;
    if (p && p->last_handshake_sec <= 0)
        r |= 1;
    if (p && p->endpoint.sa.sa_family == AF_INET &&
        ntohl(p->endpoint.in.sin_addr.s_addr) == INADDR_LOOPBACK)
        r |= 2;
    wg_device_clear(&d);
    return r;
}

/* Read again a few times when unreadable: the agent may be setting the
 * device's peers (a peer's endpoint changed) just then. */
static int peer_state(int h, int j)
{
    struct peer_arg a = { &nodes[h], &nodes[j] };
    int r = 64;
    for (int i = 0; i < 10 && r == 64; i++) {
        if (i)
            usleep(200000);
        r = tu_in_ns(nodes[h].t.ns, peer_fn, &a);
    }
    return r;
}

/* Wait up to ms for h to ping j's mesh address. */
static bool ping_within(int h, int j, int ms)
{
    int64_t end = mono_ms() + ms;
    do {
        if (tu_ping(nodes[h].t.ns, NULL, nodes[j].mesh, 2000))
            return true;
    } while (mono_ms() < end);
    return false;
}

/* Print the mean time of 50 echoes from h to j, each from a child in h's
 * namespace (a figure, not a check: it includes the fork). */
static int cmp_ms(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* 50 pings from node h to address dst, each timed with its fork: the
 * median (ms), printed with the mean. */
static double print_rtt_to(int h, const char *dst, const char *what)
{
    int ok = 0;
    double t[50], sum = 0;
    for (int i = 0; i < 50; i++) {
        int64_t t0 = mono_ms();
        ok += tu_ping(nodes[h].t.ns, NULL, dst, 2000);
        t[i] = (double)(mono_ms() - t0);
        sum += t[i];
    }
    qsort(t, 50, sizeof(t[0]), cmp_ms);
    printf("%s: %d/50 answered, %.2f ms each with the fork (median %.0f "
           "ms)\n", what, ok, sum / 50.0, t[25]);
    return t[25];
}

static double print_rtt(int h, int j, const char *what)
{
    return print_rtt_to(h, nodes[j].mesh, what);
}

static long long relay_count(const char *result)
{
    _cleanup_free_ char *text = tu_metrics_text(&ctl);
    _cleanup_free_ char *key = xasprintf("fog_relay_packets_total{result="
                                         "\"%s\"} ", result);
    const char *at = strstr(text, key);
    assert_non_null(at);
    return atoll(at + strlen(key));
}

static json_t *relayed_peers(int h)
{
    _cleanup_free_ char *path = xasprintf("/v1/nodes/%s", nodes[h].t.name);
    long st;
    json_auto_t *o = tu_api(&ctl, ctl.admin_key, "GET", path, NULL, &st);
    assert_int_equal(st, 200);
    json_t *r = json_object_get(json_object_get(o, "reachability"),
                                "relayed_peers");
    assert_true(json_is_array(r));
    return json_incref(r);
}

static bool names(const json_t *arr, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
        if (json_is_string(v) && streq(json_string_value(v), name))
            return true;
    return false;
}

static void the_controller_puts_only_the_two_natted_nodes_on_the_relay(void **state)
{
    (void)state;
    json_auto_t *eim = relayed_peers(EIM);
    json_auto_t *edm = relayed_peers(EDM);
    json_auto_t *direct = relayed_peers(DIRECT);
    assert_true(names(eim, "rl-edm"));
    assert_false(names(eim, "rl-direct"));
    assert_true(names(edm, "rl-eim"));
    assert_false(names(edm, "rl-direct"));
    assert_int_equal(json_array_size(direct), 0);
    int st;
    _cleanup_free_ char *out = tu_fogctl(&ctl, ctl.admin_key, &st, "nodeinfo",
                                         "rl-eim", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "rl-edm"));
}

static long long tcp_frames(void)
{
    _cleanup_free_ char *text = tu_metrics_text(&ctl);
    const char *at = strstr(text, "\nfog_relay_tcp_frames_total ");
    assert_non_null(at);
    return atoll(at + strlen("\nfog_relay_tcp_frames_total "));
}

/* Whether node n's agent log says `what`, waiting up to ms. */
static bool log_says(int n, const char *what, int ms)
{
    int64_t end = mono_ms() + ms;
    do {
        _cleanup_free_ char *text = NULL;
        size_t len;
        if (file_read(nodes[n].t.log, 16 << 20, &text, &len) == 0 &&
            strstr(text, what))
            return true;
        usleep(200000);
    } while (mono_ms() < end);
    return false;
}

static void with_the_relay_port_refused_the_natted_pair_goes_over_tcp(void **state)
{
    (void)state;
    /* Both agents made local relay sockets the peers' endpoints. */
    int64_t end = mono_ms() + 20000;
    while (mono_ms() < end && (peer_state(EIM, EDM) & 2) == 0)
        usleep(200000);
    assert_int_equal(peer_state(EIM, EDM) & 2, 2);
    assert_int_equal(peer_state(EDM, EIM) & 2, 2);
    int64_t t0 = mono_ms();
    assert_true(ping_within(EIM, EDM, 40000));
    printf("first ping over the relay's TCP transport after %lld ms\n",
           (long long)(mono_ms() - t0));
    assert_true(log_says(EIM, "frames go to the hub over TCP", 1000));
    assert_true(log_says(EDM, "frames go to the hub over TCP", 1000));
    assert_int_equal(peer_state(EIM, EDM), 2);  /* handshake, relayed */
    long long before = tcp_frames();
    assert_true(tu_ping(nodes[EDM].t.ns, NULL, nodes[EIM].mesh, 5000));
    /* The echo and its reply, each in and out over TCP. */
    assert_true(tcp_frames() >= before + 4);
    /* A few ms like UDP, not the 40 ms delays of small writes held back
     * (Nagle's algorithm against delayed acknowledgements: ~80 ms more an
     * echo). Against a ping of the node's own mesh address in the same
     * run, medians: what the fork and a loaded machine (sanitizers, other
     * work) cost both alike. */
    double own = print_rtt_to(EIM, nodes[EIM].mesh, "ping of its own address");
    assert_true(print_rtt(EIM, EDM, "mesh echo through the relay over TCP") <
                own + 40.0);
    /* Over TCP, an idle agent's relay waits: it does not spin. */
    double cpu0 = tu_cpu_s(nodes[EIM].t.pid);
    sleep(3);
    assert_true(cpu0 >= 0);
    double used = tu_cpu_s(nodes[EIM].t.pid) - cpu0;
    printf("agent CPU over 3 s relaying over TCP: %.2f s\n", used);
    assert_true(used < 0.3);
}

/* UDP blocked on the way (its router), the node has no class and is
 * relayed with every node behind NAT: its frames go over TCP, those of
 * the node behind the symmetric NAT (back on UDP) over UDP. Without the
 * TCP transport it has no path to anyone but the hub. */
static void a_node_without_udp_pings_through_the_hub_over_tcp(void **state)
{
    (void)state;
    int64_t t0 = mono_ms();
    assert_true(ping_within(NOUDP, EDM, 40000));
    printf("node without UDP: first ping to the symmetric NAT's node after "
           "%lld ms\n", (long long)(mono_ms() - t0));
    assert_int_equal(peer_state(NOUDP, EDM), 2);
    assert_int_equal(peer_state(EDM, NOUDP), 2);
    assert_true(log_says(NOUDP, "frames go to the hub over TCP", 1000));
    long long before = tcp_frames(), fwd = relay_count("forwarded");
    assert_true(tu_ping(nodes[EDM].t.ns, NULL, nodes[NOUDP].mesh, 5000));
    assert_true(tcp_frames() >= before + 2);
    assert_true(relay_count("forwarded") >= fwd + 2);
    print_rtt(NOUDP, EDM, "mesh echo TCP to UDP through the relay");
    /* It never goes back to a UDP that does not work. */
    assert_false(log_says(NOUDP, "UDP reaches the hub again", 0));
}

static void through_the_relay_the_natted_pair_handshakes_and_pings(void **state)
{
    (void)state;
    relay_block(false);
    int64_t t0 = mono_ms();
    /* Back to UDP at the next try, the TCP connection let go. */
    assert_true(log_says(EIM, "UDP reaches the hub again",
                         (RELAY_UDP_RETRY_S + 10) * 1000));
    assert_true(log_says(EDM, "UDP reaches the hub again",
                         (RELAY_UDP_RETRY_S + 10) * 1000));
    printf("both agents back on UDP %lld ms after the port opened\n",
           (long long)(mono_ms() - t0));
    assert_true(ping_within(EIM, EDM, 40000));
    assert_int_equal(peer_state(EIM, EDM), 2);  /* handshake, relayed */
    assert_int_equal(peer_state(EDM, EIM), 2);
    long long before = relay_count("forwarded");
    assert_true(tu_ping(nodes[EDM].t.ns, NULL, nodes[EIM].mesh, 5000));
    long long after = relay_count("forwarded");
    printf("relay frames forwarded: %lld, %lld after one more ping; "
           "dropped %lld\n", before, after, relay_count("dropped"));
    assert_true(before > 0);
    assert_true(after >= before + 2);   /* the echo and its reply */
    print_rtt(EIM, EDM, "mesh echo through the relay");
    /* Every agent registered (the node without NAT too: it has relayed
     * peers in the watcher), and the series are well formed. */
    _cleanup_free_ char *text = tu_metrics_text(&ctl);
    const char *nodes_line = strstr(text, "\nfog_relay_nodes ");
    assert_non_null(nodes_line);
    assert_true(atoll(nodes_line + strlen("\nfog_relay_nodes ")) >= 2);
    _cleanup_free_ char *promtool = tu_which("promtool");
    if (promtool)
        assert_int_equal(tu_promtool(promtool, tmp, "check metrics", text), 0);
}

static void a_node_without_nat_reaches_both_directly(void **state)
{
    (void)state;
    assert_true(ping_within(DIRECT, EIM, 30000));
    assert_true(ping_within(DIRECT, EDM, 30000));
    assert_true(ping_within(EDM, DIRECT, 10000));
    print_rtt(EDM, DIRECT, "mesh echo direct");
    /* Real endpoints, not relay sockets, on both sides. */
    assert_int_equal(peer_state(DIRECT, EIM), 0);
    assert_int_equal(peer_state(DIRECT, EDM), 0);
    assert_int_equal(peer_state(EIM, DIRECT), 0);
    assert_int_equal(peer_state(EDM, DIRECT), 0);
}

/* Hostile datagrams from the internet to the relay port: none is
 * answered, none forwarded. */
static void the_relay_answers_nothing_to_strangers(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(RELAY_PORT) };
    inet_pton(AF_INET, HUB_ADDR, &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    long long fwd = relay_count("forwarded"), drop = relay_count("dropped");
    /* A hello with a made-up token for a real node, and data for it. */
    struct relay_frame f = { .type = RELAY_HELLO };
    assert_int_equal(relay_id_parse("00000000-0000-4000-8000-000000000001",
                                    f.id), 0);
    uint8_t out[RELAY_FRAME_MAX];
    size_t len;
    assert_int_equal(relay_encode(&f, out, sizeof(out), &len), 0);
    assert_int_equal(send(fd, out, len, 0), (ssize_t)len);
    uint8_t payload[100] = { 1 };
    f = (struct relay_frame){ .type = RELAY_DATA, .payload = payload,
                              .payload_len = sizeof(payload) };
    assert_int_equal(relay_encode(&f, out, sizeof(out), &len), 0);
    assert_int_equal(send(fd, out, len, 0), (ssize_t)len);
    assert_int_equal(send(fd, "garbage", 7, 0), 7);
    struct timeval tv = { .tv_sec = 1 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint8_t b[64];
    assert_true(recv(fd, b, sizeof(b), 0) < 0);
    close(fd);
    assert_true(relay_count("dropped") >= drop + 3);
    (void)fwd;
}

/* A socket of this namespace connected to the relay port. */
static int relay_fd(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(RELAY_PORT) };
    inet_pton(AF_INET, HUB_ADDR, &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = { .tv_usec = 700000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static char *node_id(const char *name)
{
    _cleanup_free_ char *path = xasprintf("/v1/nodes/%s", name);
    return tu_api_field(&ctl, ctl.admin_key, "GET", path, NULL, 200, "id");
}

/* Post a status for a registered node (cred) reporting NAT class nat and
 * say hello from fd with the token the answer carries. */
static void hello_as(int fd, const char *cred, const char *name,
                     const char *nat)
{
    _cleanup_free_ char *body = xasprintf(
        "{\"vms\":[],\"reachability\":{\"nat\":\"%s\","
        "\"mapped_endpoint\":\"198.51.100.98:51820\"}}", nat);
    long st;
    json_auto_t *ans = tu_api(&ctl, cred, "POST", "/v1/agent/status", body,
                              &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_int(ans, "relay_port", 0), RELAY_PORT);
    const char *tok = json_str(ans, "relay_token");
    assert_non_null(tok);
    struct relay_frame f = { .type = RELAY_HELLO };
    _cleanup_free_ char *id = node_id(name);
    assert_int_equal(relay_id_parse(id, f.id), 0);
    assert_int_equal(hex_decode(tok, f.token, RELAY_TOKEN_LEN), 0);
    uint8_t out[RELAY_HELLO_LEN];
    size_t len;
    assert_int_equal(relay_encode(&f, out, sizeof(out), &len), 0);
    assert_int_equal(send(fd, out, len, 0), (ssize_t)len);
    usleep(200000);
}

/* Send a data frame for node `to` from fd; true when fd2 receives it
 * from `from`, unchanged but for the id. Frames from other nodes are
 * passed over: the real agents relay WireGuard handshakes to the
 * watchers, which they have as peers. */
static bool carried(int fd, int fd2, const char *from, const char *to)
{
    uint8_t payload[200], out[RELAY_FRAME_MAX], in[RELAY_FRAME_MAX];
    memset(payload, 0xa5, sizeof(payload));
    struct relay_frame f = { .type = RELAY_DATA, .payload = payload,
                             .payload_len = sizeof(payload) }, g;
    _cleanup_free_ char *to_id = node_id(to), *from_id = node_id(from);
    assert_int_equal(relay_id_parse(to_id, f.id), 0);
    size_t len;
    assert_int_equal(relay_encode(&f, out, sizeof(out), &len), 0);
    assert_int_equal(send(fd, out, len, 0), (ssize_t)len);
    uint8_t want[RELAY_ID_LEN];
    assert_int_equal(relay_id_parse(from_id, want), 0);
    for (;;) {
        ssize_t got = recv(fd2, in, sizeof(in), 0);
        if (got < 0)
            return false;
        assert_int_equal(relay_decode(in, (size_t)got, &g), 0);
        if (memcmp(g.id, want, RELAY_ID_LEN) != 0)
            continue;
        assert_int_equal(got, (ssize_t)len);
        assert_memory_equal(g.payload, payload, sizeof(payload));
        return true;
    }
}

/* Two registered nodes get each other's frames only while their signed
 * classes put them on the relay path; a token registers only its own
 * node. */
static void the_relay_forwards_only_between_paired_nodes(void **state)
{
    (void)state;
    _cleanup_free_ char *w2 = tu_node_register(
        &ctl, "rl-watcher2", "\"wg_public_key\":\"AQECAwQFBgcICQoLDA0ODxAREh"
        "MUFRYXGBkaGxwdHh8=\",\"endpoint\":\"198.51.100.98:51820\"");
    int a = relay_fd(), b = relay_fd();
    hello_as(a, watcher, "rl-watcher", "endpoint-dependent");
    hello_as(b, w2, "rl-watcher2", "none");
    /* A class none node is reached directly: nothing relayed. */
    assert_false(carried(a, b, "rl-watcher", "rl-watcher2"));
    assert_false(carried(b, a, "rl-watcher2", "rl-watcher"));
    /* Behind a symmetric NAT now: relayed both ways. */
    hello_as(b, w2, "rl-watcher2", "endpoint-dependent");
    assert_true(carried(a, b, "rl-watcher", "rl-watcher2"));
    assert_true(carried(b, a, "rl-watcher2", "rl-watcher"));
    /* The watcher's token does not register it as another node: b stays
     * rl-watcher2. */
    long st;
    json_auto_t *ans = tu_api(&ctl, watcher, "POST", "/v1/agent/status",
                              "{\"vms\":[]}", &st);
    assert_int_equal(st, 200);
    struct relay_frame f = { .type = RELAY_HELLO };
    _cleanup_free_ char *eim = node_id("rl-eim");
    assert_int_equal(relay_id_parse(eim, f.id), 0);
    assert_int_equal(hex_decode(json_str(ans, "relay_token"), f.token,
                                RELAY_TOKEN_LEN), 0);
    uint8_t out[RELAY_HELLO_LEN];
    size_t len;
    assert_int_equal(relay_encode(&f, out, sizeof(out), &len), 0);
    assert_int_equal(send(b, out, len, 0), (ssize_t)len);
    usleep(200000);
    assert_true(carried(b, a, "rl-watcher2", "rl-watcher"));
    close(a);
    close(b);
}

/* The next frame of type `type` for `id` on stream s within ms: 1; 0
 * when none came; -1 once the hub closed the connection. */
static int stream_wait(struct api_stream *s, enum relay_type type,
                       const uint8_t *id, int ms)
{
    static uint8_t buf[2 * (RELAY_STREAM_PREFIX + RELAY_FRAME_MAX)];
    static size_t have;
    int64_t end = mono_ms() + ms;
    for (;;) {
        size_t frame, used;
        int r;
        while ((r = relay_stream_next(buf, have, &frame, &used)) == 1) {
            struct relay_frame f;
            bool hit = relay_decode(buf + RELAY_STREAM_PREFIX, frame, &f) == 0 &&
                       f.type == type &&
                       memcmp(f.id, id, RELAY_ID_LEN) == 0;
            memmove(buf, buf + used, have - used);
            have -= used;
            if (hit)
                return 1;
        }
        assert_true(r == 0);
        int64_t left = end - mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd pf = { api_stream_fd(s), POLLIN, 0 };
        poll(&pf, 1, (int)left);
        ssize_t got;
        while ((got = api_stream_recv(s, buf + have, sizeof(buf) - have)) > 0)
            have += (size_t)got;
        if (got == 0 || got == -EIO) {
            have = 0;
            return -1;
        }
    }
}

static void stream_put(struct api_stream *s, const struct relay_frame *f)
{
    uint8_t out[RELAY_STREAM_PREFIX + RELAY_FRAME_MAX];
    size_t len;
    assert_int_equal(relay_stream_encode(f, out, sizeof(out), &len), 0);
    assert_int_equal(api_stream_send_all(s, out, len, 2000), 0);
}

/* The TCP transport: a node's credential and an upgrade to fog-relay
 * only; over it a hello is welcomed only for the node itself; a node's
 * newer connection ends its older one; a length over a frame's largest
 * ends the connection. */
static void the_tcp_relay_takes_only_its_own_node(void **state)
{
    (void)state;
    long st;
    json_auto_t *o = tu_api(&ctl, ctl.admin_key, "GET", "/v1/agent/relay",
                            NULL, &st);
    assert_true(st == 401 || st == 403);
    json_auto_t *o2 = tu_api(&ctl, watcher, "GET", "/v1/agent/relay", NULL,
                             &st);
    assert_int_equal(st, 426);
    json_auto_t *ans = tu_api(&ctl, watcher, "POST", "/v1/agent/status",
                              "{\"vms\":[]}", &st);
    assert_int_equal(st, 200);
    struct relay_frame f = { .type = RELAY_HELLO };
    assert_int_equal(hex_decode(json_str(ans, "relay_token"), f.token,
                                RELAY_TOKEN_LEN), 0);
    _cleanup_free_ char *me = node_id("rl-watcher"), *eim = node_id("rl-eim");
    uint8_t me_id[RELAY_ID_LEN], eim_id[RELAY_ID_LEN];
    assert_int_equal(relay_id_parse(me, me_id), 0);
    assert_int_equal(relay_id_parse(eim, eim_id), 0);

    struct api_client *c = api_client_new(ctl.url, watcher, ctl.ca);
    struct api_reply rep;
    struct api_stream *s = NULL;
    assert_int_equal(api_upgrade(c, "/v1/agent/relay", RELAY_UPGRADE_PROTOCOL,
                                 &rep, &s), 0);
    api_reply_clear(&rep);
    /* Another node's id, whatever the token: dropped, not welcomed. */
    long long drop = relay_count("dropped");
    memcpy(f.id, eim_id, RELAY_ID_LEN);
    stream_put(s, &f);
    assert_int_equal(stream_wait(s, RELAY_WELCOME, eim_id, 1000), 0);
    assert_true(relay_count("dropped") >= drop + 1);
    /* Its own: welcomed over the connection. */
    memcpy(f.id, me_id, RELAY_ID_LEN);
    stream_put(s, &f);
    assert_int_equal(stream_wait(s, RELAY_WELCOME, me_id, 3000), 1);
    /* A second connection of the same node replaces the first. */
    struct api_client *c2 = api_client_new(ctl.url, watcher, ctl.ca);
    struct api_stream *s2 = NULL;
    assert_int_equal(api_upgrade(c2, "/v1/agent/relay",
                                 RELAY_UPGRADE_PROTOCOL, &rep, &s2), 0);
    api_reply_clear(&rep);
    assert_int_equal(stream_wait(s, RELAY_WELCOME, me_id, 5000), -1);
    api_stream_free(s);
    api_client_free(c);
    s = s2;
    c = c2;
    stream_put(s, &f);
    assert_int_equal(stream_wait(s, RELAY_WELCOME, me_id, 3000), 1);
    /* A length past any frame: the hub hangs up. */
    static const uint8_t huge[2] = { 0xff, 0xff };
    assert_int_equal(api_stream_send_all(s, huge, 2, 2000), 0);
    assert_int_equal(stream_wait(s, RELAY_WELCOME, me_id, 5000), -1);
    api_stream_free(s);
    api_client_free(c);
}

/* Without address probes no node has a class and every pair would be
 * relayed: the controller refuses to start so. */
static void the_relay_needs_the_address_probe(void **state)
{
    (void)state;
    _cleanup_free_ char *dir = xasprintf("%s/lone", tmp);
    _cleanup_free_ char *bin = tu_bin("fog-controller");
    int st;
    char *init[] = { bin, "init", "--data-dir", dir, NULL };
    _cleanup_free_ char *o1 = tu_run(init, &st);
    assert_int_equal(st, 0);
    char *serve[] = { bin, "serve", "--data-dir", dir, "--listen",
                      "127.0.0.1:0", "--relay-port", "3999", NULL };
    tu_run_with_stderr = true;
    _cleanup_free_ char *o2 = tu_run(serve, &st);
    tu_run_with_stderr = false;
    assert_int_not_equal(st, 0);
    assert_non_null(strstr(o2, "--relay-port needs --probe-port"));
}

int main(void)
{
    if (tu_wg_netns_enter() != 0)
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_controller_puts_only_the_two_natted_nodes_on_the_relay),
        cmocka_unit_test(with_the_relay_port_refused_the_natted_pair_goes_over_tcp),
        cmocka_unit_test(through_the_relay_the_natted_pair_handshakes_and_pings),
        cmocka_unit_test(a_node_without_udp_pings_through_the_hub_over_tcp),
        cmocka_unit_test(a_node_without_nat_reaches_both_directly),
        cmocka_unit_test(the_relay_answers_nothing_to_strangers),
        cmocka_unit_test(the_relay_forwards_only_between_paired_nodes),
        cmocka_unit_test(the_tcp_relay_takes_only_its_own_node),
        cmocka_unit_test(the_relay_needs_the_address_probe),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    if (!torn_down)
        teardown(NULL);
    return failed;
}
