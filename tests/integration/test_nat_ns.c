/* Public address discovery in namespaces: the controller (in this test's
 * own namespace, the "internet") answers address probes on UDP ports
 * PROBE_PORT and PROBE_PORT + 1, and three real agents (libvirt
 * test:///default, host networking with wireguard-go) probe from their
 * WireGuard port:
 *  - one on the internet itself: NAT "none", mapped to its own address;
 *  - one behind a router doing nftables masquerade, which keeps source
 *    ports: "endpoint-independent", mapped to the router's address and the
 *    WireGuard port, and peers get that mapping although the node
 *    configured a LAN endpoint;
 *  - one behind `masquerade fully-random`: "endpoint-dependent", mapped to
 *    the router's address and another port, which peers get.
 * Also: the probe ports answer only well-formed requests, with an answer
 * the size of the request, and at most the burst per source at once.
 * Root, iproute2 and wireguard-go are needed; else skipped (77). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/probe.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "controller/probe.h"
#include "netfabric/nft.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define HUB_ADDR "198.51.100.1"
#define PROBE_PORT 3478
#define PROBE_PORT_TEXT "3478"
/* Made-up key of a node that never runs; its desired document shows
 * what endpoints peers are given. */
#define WATCHER_KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

enum { DIRECT, EIM, EDM, N_NODES };

static struct tu_nat_node nodes[N_NODES] = {
    [DIRECT] = { "nat-direct", "198.51.100.10", NULL, NULL, NULL },
    [EIM] = { "nat-eim", "198.51.100.11", "10.0.1", "masquerade",
              "10.0.1.2:51820" },
    [EDM] = { "nat-edm", "198.51.100.12", "10.0.2", "masquerade fully-random",
              NULL },
};

static struct tu_ctl ctl;
static char *tmp, *watcher;

static int setup(void **state)
{
    assert_int_equal(tu_nat_hub(HUB_ADDR "/24"), 0);
    for (int i = 0; i < N_NODES; i++)
        assert_int_equal(tu_nat_node_build(&nodes[i], "nat", i), 0);
    tmp = tu_tempdir("nat");
    _cleanup_free_ char *images = xasprintf("%s/images", tmp);
    assert_int_equal(mkdir(images, 0755), 0);
    static const char *args[] = { "--heartbeat", "1", "--no-inspect",
                                  "--probe-port", PROBE_PORT_TEXT, NULL };
    tu_ctl_start_on(&ctl, HUB_ADDR, args);
    watcher = tu_node_register(&ctl, "nat-watcher",
                               "\"wg_public_key\":\"" WATCHER_KEY "\","
                               "\"endpoint\":\"198.51.100.99:51820\"");
    for (int i = 0; i < N_NODES; i++)
        assert_int_equal(tu_nat_node_start(&ctl, HUB_ADDR, tmp, &nodes[i]),
                         0);
    return 0;
}

static bool torn_down;

static int teardown(void **state)
{
    torn_down = true;
    for (int i = 0; i < N_NODES; i++)
        tu_nat_node_destroy(&nodes[i]);
    if (ctl.dir)
        tu_ctl_destroy(&ctl);
    if (tmp)
        tu_rmrf(tmp);
    free(tmp);
    free(watcher);
    tmp = watcher = NULL;
    return 0;
}

/* GET /v1/nodes/NAME's reachability once the node reported it (new
 * reference), or NULL after 40 s. */
static json_t *reach_of(const struct tu_nat_node *n)
{
    _cleanup_free_ char *path = xasprintf("/v1/nodes/%s", n->name);
    int64_t end = mono_ms() + 40000;
    while (mono_ms() < end) {
        long st;
        json_auto_t *o = tu_api(&ctl, ctl.admin_key, "GET", path, NULL, &st);
        json_t *r = json_object_get(o, "reachability");
        if (st == 200 && json_str(r, "nat"))
            return json_incref(r);
        usleep(200000);
    }
    fprintf(stderr, "%s never reported its reachability; log %s\n", n->name,
            n->log);
    return NULL;
}

/* The endpoint the watcher's desired document gives node n. */
static char *peer_endpoint(const struct tu_nat_node *n)
{
    long st;
    json_auto_t *d = tu_api(&ctl, watcher, "GET", "/v1/agent/desired", NULL,
                            &st);
    assert_int_equal(st, 200);
    json_t *p = tu_find(json_object_get(d, "peers"), "name", n->name);
    return p && json_str(p, "endpoint") ? xstrdup(json_str(p, "endpoint"))
                                        : NULL;
}

static void a_node_without_nat_is_class_none(void **state)
{
    json_auto_t *r = reach_of(&nodes[DIRECT]);
    assert_non_null(r);
    assert_string_equal(json_str(r, "nat"), "none");
    assert_string_equal(json_str(r, "mapped_endpoint"), "198.51.100.10:51820");
    _cleanup_free_ char *ep = peer_endpoint(&nodes[DIRECT]);
    assert_string_equal(ep, "198.51.100.10:51820");
}

static void masquerade_keeping_ports_is_endpoint_independent(void **state)
{
    json_auto_t *r = reach_of(&nodes[EIM]);
    assert_non_null(r);
    assert_string_equal(json_str(r, "nat"), "endpoint-independent");
    assert_string_equal(json_str(r, "mapped_endpoint"), "198.51.100.11:51820");
    /* Peers get the mapping, not the LAN endpoint the node configured. */
    _cleanup_free_ char *ep = peer_endpoint(&nodes[EIM]);
    assert_string_equal(ep, "198.51.100.11:51820");
    assert_string_equal(json_str(r, "peer_endpoint"), "198.51.100.11:51820");
    int st;
    _cleanup_free_ char *out = tu_fogctl(&ctl, ctl.admin_key, &st, "nodeinfo",
                                         "nat-eim", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *nat = tu_field(out, "nat");
    _cleanup_free_ char *mapped = tu_field(out, "mapped_endpoint");
    assert_non_null(nat);
    assert_string_equal(nat, "endpoint-independent");
    assert_non_null(mapped);
    assert_string_equal(mapped, "198.51.100.11:51820");
}

static void random_masquerade_is_endpoint_dependent(void **state)
{
    json_auto_t *r = reach_of(&nodes[EDM]);
    assert_non_null(r);
    assert_string_equal(json_str(r, "nat"), "endpoint-dependent");
    const char *mapped = json_str(r, "mapped_endpoint");
    assert_non_null(mapped);
    struct probe_ep e;
    assert_int_equal(probe_ep_parse(mapped, &e), 0);
    char want_ip[4];
    inet_pton(AF_INET, "198.51.100.12", want_ip);
    assert_memory_equal(e.addr, want_ip, 4);
    printf("fully-random masquerade mapped the WireGuard port to %s\n",
           mapped);
    /* Peers get the mapping (the fallback would be the router's address
     * with port 51820). */
    _cleanup_free_ char *ep = peer_endpoint(&nodes[EDM]);
    assert_string_equal(ep, mapped);
}

/* ---- the responder's manners, from this namespace ---- */

static int probe_fd(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons(PROBE_PORT) };
    inet_pton(AF_INET, HUB_ADDR, &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Datagrams that come back within ms; their sizes in sizes[]. */
static int answers(int fd, int ms, ssize_t *sizes, int max)
{
    int n = 0;
    int64_t end = mono_ms() + ms;
    for (;;) {
        int64_t left = end - mono_ms();
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            return n;
        uint8_t b[2048];
        ssize_t got = recv(fd, b, sizeof(b), 0);
        if (n < max)
            sizes[n] = got;
        n++;
    }
}

static void the_probe_port_answers_only_well_formed_requests_at_a_bounded_rate(void **state)
{
    int fd = probe_fd();
    struct probe_msg m = { .type = PROBE_REQUEST };
    uint8_t req[PROBE_SIZE], big[PROBE_SIZE * 20];
    memset(m.txid, 7, sizeof(m.txid));
    assert_int_equal(probe_encode(&m, req), 0);
    ssize_t sizes[64];

    /* Not ours: a longer datagram with a valid head, a short one, another
     * version, an answer sent as a request. None is answered. */
    memset(big, 0, sizeof(big));
    memcpy(big, req, sizeof(req));
    assert_int_equal(send(fd, big, sizeof(big), 0), (ssize_t)sizeof(big));
    assert_int_equal(send(fd, req, 20, 0), 20);
    uint8_t bad[PROBE_SIZE];
    memcpy(bad, req, sizeof(bad));
    bad[4] = 2;
    assert_int_equal(send(fd, bad, sizeof(bad), 0), (ssize_t)sizeof(bad));
    struct probe_msg ans = { .type = PROBE_ANSWER, .family = AF_INET,
                             .port = 1 };
    assert_int_equal(probe_encode(&ans, bad), 0);
    assert_int_equal(send(fd, bad, sizeof(bad), 0), (ssize_t)sizeof(bad));
    assert_int_equal(answers(fd, 1000, sizes, 64), 0);

    /* A burst of good requests: answered up to the burst, each answer
     * exactly as long as the request. */
    for (int i = 0; i < 60; i++)
        assert_int_equal(send(fd, req, sizeof(req), 0), (ssize_t)sizeof(req));
    int n = answers(fd, 1500, sizes, 64);
    printf("60 requests at once: %d answered (burst %d, %d/s)\n", n,
           PROBE_BURST, PROBE_RATE);
    assert_true(n >= 1);
    assert_true(n <= PROBE_BURST + 2 * PROBE_RATE);
    for (int i = 0; i < n && i < 64; i++)
        assert_int_equal(sizes[i], PROBE_SIZE);
    close(fd);

    /* The controller counts them: at least the burst answered, and the
     * four malformed requests and the ones over the rate dropped. */
    _cleanup_free_ char *text = tu_metrics_text(&ctl);
    const char *ok = strstr(text,
                            "fog_probe_requests_total{result=\"answered\"} ");
    const char *no = strstr(text,
                            "fog_probe_requests_total{result=\"dropped\"} ");
    assert_non_null(ok);
    assert_non_null(no);
    assert_true(atoll(strchr(ok, ' ') + 1) >= n);
    assert_true(atoll(strchr(no, ' ') + 1) >= 4 + 60 - n);
}

int main(void)
{
    if (tu_wg_netns_enter() != 0)
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_node_without_nat_is_class_none),
        cmocka_unit_test(masquerade_keeping_ports_is_endpoint_independent),
        cmocka_unit_test(random_masquerade_is_endpoint_dependent),
        cmocka_unit_test(the_probe_port_answers_only_well_formed_requests_at_a_bounded_rate),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    if (!torn_down)
        teardown(NULL);
    return failed;
}
