/* A relayed mesh pair goes direct once direct works, and back to the
 * relay when it breaks, in namespaces: the controller (the "internet")
 * answers address probes and relays; two real agents (libvirt
 * test:///default, wireguard-go) sit behind an endpoint-independent NAT
 * (EIM) and a symmetric one (EDM), so the controller relays the pair.
 * Their direct tries fail until EIM's router forwards the WireGuard port;
 * then the next try of EDM's agent works (WireGuard takes authenticated
 * packets straight from the peer), EIM's WireGuard roams to EDM's address
 * with it, the pair stays direct and the hub forwards nothing more for
 * it. Once EIM's router drops UDP between the two, both fall back to the
 * relay and the mesh ping comes back; once it lets them through again
 * the pair goes direct again while the ping keeps working. Short
 * intervals through the agents' --direct-* options. Root, iproute2 and wireguard-go are
 * needed; else skipped (77). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "netfabric/nft.h"
#include "netfabric/wg.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <sched.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define HUB_ADDR "198.51.100.1"
#define EDM_WAN "198.51.100.22"

enum { EIM, EDM, N_NODES };

/* Tries every 12 s (the first after 2), a window of 1 s, and a direct
 * path silent for 6 s goes back to the relay. (12 s: the keepalive a
 * peer's WireGuard sends 10 s after our data, which roams us too, comes
 * between two tries, not in a window.) */
static const char *const agent_args[] = {
    "--direct-first", "2", "--direct-retry", "12", "--direct-retry-max", "12",
    "--direct-window", "1", "--direct-timeout", "6", NULL };

struct node {
    struct tu_nat_node t;
    char *id, *mesh;
};

static struct node nodes[N_NODES] = {
    [EIM] = { { "up-eim", "198.51.100.21", "10.0.21", "masquerade", NULL,
                .run_args = agent_args } },
    [EDM] = { { "up-edm", EDM_WAN, "10.0.22", "masquerade fully-random", NULL,
                .run_args = agent_args } },
};

static struct tu_ctl ctl;
static char *tmp;
static bool torn_down;

static int nft_fn(void *arg)
{
    _cleanup_free_ char *err = NULL;
    int r = nft_apply(arg, false, &err);
    if (r < 0)
        fprintf(stderr, "nft: %s\n", err ? err : "?");
    return r < 0 ? 1 : 0;
}

/* Forget every connection the namespace tracks (a conntrack flush over
 * ctnetlink: IPCTNL_MSG_CT_DELETE with no tuple), as a router does when
 * its forwarding rules change: a flow the router took for itself before
 * the forward existed would otherwise keep matching while its packets
 * keep coming. */
static int ct_flush_fn(void *arg)
{
    (void)arg;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0)
        return 1;
    struct {
        struct nlmsghdr h;
        struct nfgenmsg g;
    } req = { .h = { .nlmsg_len = sizeof(req),
                     .nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) |
                                   IPCTNL_MSG_CT_DELETE,
                     .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK },
              .g = { .nfgen_family = AF_INET, .version = NFNETLINK_V0 } };
    struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
    char ans[512];
    int ok = sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&sa,
                    sizeof(sa)) == (ssize_t)sizeof(req) &&
             recv(fd, ans, sizeof(ans), 0) >= (ssize_t)(sizeof(struct nlmsghdr) +
                                                         sizeof(int)) &&
             ((struct nlmsgerr *)NLMSG_DATA((struct nlmsghdr *)ans))->error == 0;
    close(fd);
    return ok ? 0 : 1;
}

/* Run nftables script on node n's router. */
static void router_nft(int n, const char *script)
{
    assert_int_equal(tu_in_ns(nodes[n].t.router, nft_fn, (void *)script), 0);
}

static json_t *node_get(int n)
{
    _cleanup_free_ char *path = xasprintf("/v1/nodes/%s", nodes[n].t.name);
    long st;
    json_t *o = tu_api(&ctl, ctl.admin_key, "GET", path, NULL, &st);
    assert_int_equal(st, 200);
    return o;
}

/* The path node n reports for its peer j ("" while none). */
static char *path_of(int n, int j)
{
    json_auto_t *o = node_get(n);
    json_t *p = tu_find(json_object_get(json_object_get(o, "reachability"),
                                        "mesh_paths"),
                        "peer", nodes[j].t.name);
    return xstrdup(json_str(p, "path") ? json_str(p, "path") : "");
}

/* Wait up to ms until both report the pair's path as `want` (a prefix:
 * "relay" matches relay-udp and relay-tcp). */
static bool pair_path_within(const char *want, int ms)
{
    int64_t end = mono_ms() + ms;
    do {
        _cleanup_free_ char *a = path_of(EIM, EDM), *b = path_of(EDM, EIM);
        if (strncmp(a, want, strlen(want)) == 0 &&
            strncmp(b, want, strlen(want)) == 0)
            return true;
        usleep(250000);
    } while (mono_ms() < end);
    return false;
}

static void learn(struct node *n)
{
    int64_t end = mono_ms() + 40000;
    while (mono_ms() < end && !n->mesh) {
        json_auto_t *o = node_get((int)(n - nodes));
        if (json_str(o, "mesh_ip") &&
            json_str(json_object_get(o, "reachability"), "nat")) {
            n->id = xstrdup(json_str(o, "id"));
            n->mesh = xstrdup(json_str(o, "mesh_ip"));
        } else {
            usleep(200000);
        }
    }
    if (!n->mesh)
        fail_msg("%s never joined the mesh; log %s", n->t.name, n->t.log);
}

/* Whether node h's WireGuard sends to its one peer (the other node)
 * through a local relay socket: 1 yes, 0 no (direct), 64 unreadable
 * (exit status of a child in h's namespace). */
static int via_relay_fn(void *arg)
{
    const struct node *h = arg;
    struct wg_device d = { 0 };
    struct wg_opts o = { 0 };
    if (wg_backend_pick()->get(&o, h->t.wg, &d) < 0)
        return 64;
    const struct wg_peer *p = d.n_peers == 1 ? &d.peers[0] : NULL;
    int r = !p ? 64 : p->endpoint.sa.sa_family == AF_INET &&
                      ntohl(p->endpoint.in.sin_addr.s_addr) == INADDR_LOOPBACK;
    wg_device_clear(&d);
    return r;
}

static int via_relay(int h)
{
    int r = 64;
    for (int i = 0; i < 10 && r == 64; i++) {
        if (i)
            usleep(200000);
        r = tu_in_ns(nodes[h].t.ns, via_relay_fn, &nodes[h]);
    }
    return r;
}

static bool ping(int h, int j)
{
    return tu_ping(nodes[h].t.ns, NULL, nodes[j].mesh, 2000);
}

static bool ping_within(int h, int j, int ms)
{
    int64_t end = mono_ms() + ms;
    do {
        if (ping(h, j))
            return true;
    } while (mono_ms() < end);
    return false;
}

static long long forwarded(void)
{
    _cleanup_free_ char *text = tu_metrics_text(&ctl);
    static const char key[] = "fog_relay_packets_total{result=\"forwarded\"} ";
    const char *at = strstr(text, key);
    assert_non_null(at);
    return atoll(at + strlen(key));
}

static bool log_says(int n, const char *what)
{
    _cleanup_free_ char *text = NULL;
    size_t len;
    return file_read(nodes[n].t.log, 16 << 20, &text, &len) == 0 &&
           strstr(text, what);
}

/* Whether the events hold one with this action about node n. */
static bool event_seen(const char *action, int n)
{
    long st;
    json_auto_t *o = tu_api(&ctl, ctl.admin_key, "GET", "/v1/events?limit=200",
                            NULL, &st);
    assert_int_equal(st, 200);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(o, "items"), i, e)
        if (streq(json_str(e, "action"), action) &&
            streq(json_str(e, "target"), nodes[n].id))
            return true;
    return false;
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(tu_nat_hub(HUB_ADDR "/24"), 0);
    for (int i = 0; i < N_NODES; i++)
        assert_int_equal(tu_nat_node_build(&nodes[i].t, "up", i), 0);
    tmp = tu_tempdir("upgrade");
    _cleanup_free_ char *images = xasprintf("%s/images", tmp);
    assert_int_equal(mkdir(images, 0755), 0);
    static const char *args[] = { "--heartbeat", "1", "--no-inspect",
                                  "--probe-port", "3478", "--relay-port",
                                  "3480", NULL };
    tu_ctl_start_on(&ctl, HUB_ADDR, args);
    for (int i = 0; i < N_NODES; i++)
        assert_int_equal(tu_nat_node_start(&ctl, HUB_ADDR, tmp, &nodes[i].t),
                         0);
    for (int i = 0; i < N_NODES; i++)
        learn(&nodes[i]);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    torn_down = true;
    for (int i = 0; i < N_NODES; i++) {
        tu_nat_node_destroy(&nodes[i].t);
        free(nodes[i].id);
        free(nodes[i].mesh);
        nodes[i].id = nodes[i].mesh = NULL;
    }
    if (ctl.dir)
        tu_ctl_destroy(&ctl);
    if (tmp)
        tu_rmrf(tmp);
    free(tmp);
    tmp = NULL;
    return 0;
}

/* Without a way in, the tries fail and the pair stays on the relay,
 * pinging through it. */
static void while_direct_fails_the_pair_stays_relayed(void **state)
{
    (void)state;
    int64_t t0 = mono_ms();
    assert_true(ping_within(EIM, EDM, 30000));
    printf("first ping through the relay after %lld ms\n",
           (long long)(mono_ms() - t0));
    assert_true(pair_path_within("relay-udp", 10000));
    /* Both agents tried (the first try 2 s after the peer came). */
    int64_t end = mono_ms() + 15000;
    while (mono_ms() < end && !(log_says(EIM, "no direct answer") &&
                                log_says(EDM, "no direct answer")))
        usleep(250000);
    assert_true(log_says(EIM, "no direct answer"));
    assert_true(log_says(EDM, "no direct answer"));
    assert_true(ping_within(EIM, EDM, 5000));
    assert_true(ping_within(EDM, EIM, 5000));
    assert_true(pair_path_within("relay-udp", 1000));
    assert_false(log_says(EIM, "direct path works"));
    assert_false(log_says(EDM, "direct path works"));
}

/* Until both report direct (up to ms), pinging EDM -> EIM meanwhile
 * when `pinging`; the pings lost into *ret_lost of *ret_sent. */
static bool direct_within(int ms, bool pinging, int *ret_sent, int *ret_lost)
{
    int64_t end = mono_ms() + ms;
    *ret_sent = *ret_lost = 0;
    do {
        if (pinging) {
            ++*ret_sent;
            *ret_lost += !ping(EDM, EIM);
        }
        if (pair_path_within("direct", 0))
            return true;
    } while (mono_ms() < end);
    return false;
}

/* The pair's packets do not pass the hub: ten pings, no frame. */
static void pings_bypass_the_hub(void)
{
    long long before = forwarded();
    for (int i = 0; i < 5; i++) {
        assert_true(ping(EIM, EDM));
        assert_true(ping(EDM, EIM));
    }
    long long after = forwarded();
    printf("relay frames forwarded over 10 direct pings: %lld\n",
           after - before);
    assert_int_equal(after, before);
}

/* EIM's router forwards the WireGuard port: the symmetric NAT's node
 * reaches it directly, both WireGuards take the direct path and the hub
 * forwards nothing more for the pair. The pair is idle and both hosts
 * drop UDP to port 9: only the ICMP echo a try sends through the tunnel
 * draws the answer WireGuard judges by, and keeps the idle pair direct
 * past the timeout. */
static void an_idle_pair_goes_direct_once_a_port_forward_lets_it_in(void **state)
{
    (void)state;
    for (int i = 0; i < N_NODES; i++)
        assert_int_equal(tu_in_ns(nodes[i].t.ns, nft_fn, (void *)
                                  "add table inet nopoke\n"
                                  "add chain inet nopoke in { type filter hook "
                                  "input priority 0; }\n"
                                  "add rule inet nopoke in udp dport 9 drop\n"),
                         0);
    _cleanup_free_ char *fwd = xasprintf(
        "add table ip pfwd\n"
        "add chain ip pfwd pre { type nat hook prerouting priority dstnat; }\n"
        "add rule ip pfwd pre iifname \"eth0\" udp dport 51820 dnat to "
        "%s.2:51820\n", nodes[EIM].t.lan);
    router_nft(EIM, fwd);
    assert_int_equal(tu_in_ns(nodes[EIM].t.router, ct_flush_fn, NULL), 0);
    int64_t t0 = mono_ms();
    int sent, lost;
    /* Tries come every 12-15 s (--direct-retry 12 and its jitter); the
     * one under way when the forward appeared may fail, so two periods. */
    assert_true(direct_within(40000, false, &sent, &lost));
    printf("idle pair direct %lld ms after the port forward\n",
           (long long)(mono_ms() - t0));
    assert_int_equal(via_relay(EIM), 0);
    assert_int_equal(via_relay(EDM), 0);
    /* EDM's own try was answered (by the echo: nothing else answers
     * within its window); EIM followed it, whether or not a try of its
     * own was under way. */
    assert_true(log_says(EDM, "direct path works (a try answered from"));
    assert_true(log_says(EIM, "direct path works"));
    /* Idle past --direct-timeout (6 s): the echoes keep it direct, at
     * next to no cost to the agent. */
    double cpu0 = tu_cpu_s(nodes[EDM].t.pid);
    assert_true(cpu0 >= 0);
    sleep(8);
    double used = tu_cpu_s(nodes[EDM].t.pid) - cpu0;
    printf("agent CPU over 8 s with its idle peer direct: %.2f s\n", used);
    assert_true(used < 0.5);
    assert_true(pair_path_within("direct", 0));
    pings_bypass_the_hub();
    assert_true(event_seen("node.mesh-direct", EIM));
    assert_true(event_seen("node.mesh-direct", EDM));
    /* And the node view says since when. */
    json_auto_t *o = node_get(EDM);
    json_t *p = tu_find(json_object_get(json_object_get(o, "reachability"),
                                        "mesh_paths"), "peer", "up-eim");
    assert_string_equal(json_str(p, "node_id"), nodes[EIM].id);
    assert_true(json_int(p, "since", 0) > now_s() - 60);
    int st;
    _cleanup_free_ char *out = tu_fogctl(&ctl, ctl.admin_key, &st, "nodeinfo",
                                         "up-edm", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "up-eim direct since"));
}

/* UDP between the two dropped on EIM's router (the hub still reached):
 * both go back to the relay and the ping comes back. */
static void when_direct_breaks_the_pair_falls_back_to_the_relay(void **state)
{
    (void)state;
    router_nft(EIM, "add table inet nodirect\n"
                    "add chain inet nodirect through { type filter hook forward "
                    "priority -10; }\n"
                    "add rule inet nodirect through ip saddr " EDM_WAN " meta "
                    "l4proto udp drop\n"
                    "add rule inet nodirect through ip daddr " EDM_WAN " meta "
                    "l4proto udp drop\n");
    int64_t t0 = mono_ms();
    assert_true(pair_path_within("relay", 20000));
    printf("pair back on the relay %lld ms after direct broke\n",
           (long long)(mono_ms() - t0));
    assert_true(ping_within(EIM, EDM, 10000));
    printf("ping back %lld ms after direct broke\n",
           (long long)(mono_ms() - t0));
    long long before = forwarded();
    assert_true(ping_within(EDM, EIM, 5000));
    assert_true(forwarded() >= before + 2);
    assert_int_equal(via_relay(EIM), 1);
    assert_int_equal(via_relay(EDM), 1);
    assert_true(event_seen("node.mesh-relayed", EIM) ||
                event_seen("node.mesh-relayed", EDM));
}

/* The router lets UDP between them through again: at the next try the
 * pair is direct again, the mesh ping working all along. */
static void when_direct_works_again_the_pair_upgrades_while_pinging(void **state)
{
    (void)state;
    router_nft(EIM, "delete table inet nodirect\n");
    assert_int_equal(tu_in_ns(nodes[EIM].t.router, ct_flush_fn, NULL), 0);
    int64_t t0 = mono_ms();
    int sent, lost;
    assert_true(direct_within(40000, true, &sent, &lost));
    printf("pair direct again %lld ms after the path opened; %d of %d pings "
           "lost meanwhile\n", (long long)(mono_ms() - t0), lost, sent);
    /* A failed try loses at most a window of one direction's packets. */
    assert_true(lost <= 4);
    assert_int_equal(via_relay(EIM), 0);
    assert_int_equal(via_relay(EDM), 0);
    pings_bypass_the_hub();
}

int main(void)
{
    if (tu_wg_netns_enter() != 0)
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(while_direct_fails_the_pair_stays_relayed),
        cmocka_unit_test(an_idle_pair_goes_direct_once_a_port_forward_lets_it_in),
        cmocka_unit_test(when_direct_breaks_the_pair_falls_back_to_the_relay),
        cmocka_unit_test(when_direct_works_again_the_pair_upgrades_while_pinging),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    if (!torn_down)
        teardown(NULL);
    return failed;
}
