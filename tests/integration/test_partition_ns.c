/* Fail closed on the desired-state path, and partitions, with the
 * controller and a real agent (libvirt test:///default, host networking
 * with its mesh and tenant bridge) in two network namespaces:
 *  - a store error while the controller builds the node's document is a
 *    503, and the agent keeps its bridge and WireGuard peers as they were
 *    (with a partial document it would prune them), then converges once
 *    the store answers again;
 *  - a stop requested while the link between them is cut for 60 s reaches
 *    the node within 10 s of the heal (the agent's poll follows the
 *    controller's announced wait and TCP keepalive notices the dead
 *    connection, rather than a fixed 330 s timeout).
 * Root, iproute2, wireguard-go and qemu-img are needed; else skipped. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "netfabric/resolver.h"
#include "tests/testutil.h"

#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define CTL_ADDR "10.213.7.1"
#define NODE_ADDR "10.213.7.2"
#define PARTITION_S 60
#define HEAL_DEADLINE_MS 10000

/* Made-up WireGuard public keys of two peer nodes that never run. */
#define PEER1_KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define PEER2_KEY "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="

static struct tu_ctl ctl;
static char ns[32], veth[16], wg[16];
static char *tmp, *fault_path, *data_dir, *image_dir, *agent_log, *tenant_key;
static pid_t agent_pid = -1;

/* Run a command inside the node's namespace; its stdout (caller frees). */
static char *in_ns(const char *prog, const char *a1, const char *a2,
                   const char *a3, const char *a4, int *ret_status)
{
    char *argv[] = { (char *)tu_ip_bin(), "netns", "exec", ns, (char *)prog,
                     (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL };
    return tu_run(argv, ret_status);
}

static char *wg_peers(void)
{
    int st;
    return in_ns("wg", "show", wg, "peers", NULL, &st);
}

/* The node's bridges (names, one a line). */
static char *bridges(void)
{
    int st;
    return in_ns(tu_ip_bin(), "-o", "link", "show", NULL, &st);
}

static bool has_bridge(void)
{
    _cleanup_free_ char *b = bridges();
    return b && strstr(b, "fogbr");
}

static int count_in_log(const char *needle)
{
    return tu_count_in_file(agent_log, needle);
}

static const char *vm_state(void)
{
    static char state[32];
    long st;
    json_auto_t *v = tu_api(&ctl, tenant_key, "GET", "/v1/vms/web", NULL, &st);
    snprintf(state, sizeof(state), "%s",
             st == 200 && json_str(v, "state") ? json_str(v, "state") : "?");
    return state;
}

static bool wait_state(const char *want, int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms;
    while (mono_ms() < end) {
        if (streq(vm_state(), want))
            return true;
        usleep(50000);
    }
    fprintf(stderr, "vm web: state %s, never %s\n", vm_state(), want);
    return false;
}

static bool wait_peers(const char *want, const char *not_want, int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms;
    while (mono_ms() < end) {
        _cleanup_free_ char *p = wg_peers();
        if (p && strstr(p, want) && !(not_want && strstr(p, not_want)))
            return true;
        usleep(100000);
    }
    _cleanup_free_ char *p = wg_peers();
    fprintf(stderr, "peers of %s: '%s', wanted %s\n", wg, p ? p : "", want);
    return false;
}

/* A node that never runs: registered with an admin's token (approved). */
static void register_peer(const char *name, const char *key, const char *ep)
{
    _cleanup_free_ char *extra = xasprintf(
        "\"wg_public_key\":\"%s\",\"endpoint\":\"%s\"", key, ep);
    free(tu_node_register(&ctl, name, extra));
}

static int setup(void **state)
{
    _cleanup_free_ char *qemu_img = tu_which("qemu-img");
    assert_non_null(qemu_img);
    assert_int_equal(tu_ns_add(ns), 0);
    assert_int_equal(tu_ip("link add %s type veth peer name eth0 netns %s",
                           veth, ns), 0);
    assert_int_equal(tu_ip("addr add " CTL_ADDR "/24 dev %s", veth), 0);
    assert_int_equal(tu_ip("link set %s up", veth), 0);
    assert_int_equal(tu_ip("-n %s addr add " NODE_ADDR "/24 dev eth0", ns), 0);
    assert_int_equal(tu_ip("-n %s link set eth0 up", ns), 0);

    tmp = tu_tempdir("fc");
    data_dir = xasprintf("%s/data", tmp);
    image_dir = xasprintf("%s/images", tmp);
    agent_log = xasprintf("%s/agent.log", tmp);
    fault_path = xasprintf("%s/fail-desired", tmp);
    /* The controller inherits the seam; it is armed by creating the file. */
    setenv("FOG_TEST_FAIL_DESIRED", fault_path, 1);
    static const char *args[] = { "--heartbeat", "2", "--no-inspect", NULL };
    tu_ctl_start_on(&ctl, CTL_ADDR, args);
    unsetenv("FOG_TEST_FAIL_DESIRED");

    free(tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/accounts",
                      "{\"name\":\"fc-tenant\",\"role\":\"tenant\"}", 201,
                      NULL));
    tenant_key = tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/keys",
                              "{\"account\":\"fc-tenant\"}", 201, "secret");
    assert_int_equal(mkdir_p(image_dir, 0755), 0);
    _cleanup_free_ char *base = xasprintf("%s/tiny.qcow2", image_dir);
    char *mk[] = { qemu_img, "create", "-q", "-f", "qcow2", base, "64M", NULL };
    int st;
    free(tu_run(mk, &st));
    assert_int_equal(st, 0);

    register_peer("fc-peer1", PEER1_KEY, "10.213.7.9:51820");
    _cleanup_free_ char *tok = tu_api_field(&ctl, ctl.admin_key, "POST",
                                            "/v1/join-tokens", "{}", 201,
                                            "token");
    _cleanup_free_ char *agent_bin = tu_bin("fog-nodeagent");
    _cleanup_free_ char *url = xasprintf("https://" CTL_ADDR ":%d", ctl.port);
    char *join[] = { (char *)tu_ip_bin(), "netns", "exec", ns, agent_bin,
                     "join", "--controller", url, "--token", tok,
                     "--data-dir", data_dir, "--libvirt", "test:///default",
                     "--name", "fc-node", "--endpoint", NODE_ADDR ":51820",
                     NULL };
    _cleanup_free_ char *out = tu_run(join, &st);
    if (st != 0)
        fail_msg("join failed (%d): %s", st, out);
    char *run[] = { (char *)tu_ip_bin(), "netns", "exec", ns, agent_bin, "run",
                    "--data-dir", data_dir, "--image-dir", image_dir,
                    "--shutdown-timeout", "2", "--mesh-ifname", wg,
                    "--verbose", NULL };
    agent_pid = tu_spawn(run, agent_log);
    assert_true(agent_pid > 0);
    free(tu_api_field(&ctl, tenant_key, "POST", "/v1/vms",
                      "{\"name\":\"web\",\"vcpus\":1,\"memory_mib\":128,"
                      "\"disk_gib\":1,\"image\":\"tiny\",\"allow_tcg\":true}",
                      201, NULL));
    if (!wait_state("running", 60000))
        fail_msg("the VM never ran; agent log %s", agent_log);
    return 0;
}

/* Also run after a failed setup (cmocka skips the group teardown then). */
static bool torn_down;

static int teardown(void **state)
{
    torn_down = true;
    if (agent_pid > 0)
        tu_kill(agent_pid, SIGTERM);
    agent_pid = -1;
    /* The network's resolver outlives the agent, as its VMs do. */
    if (data_dir) {
        _cleanup_free_ char *dns = xasprintf("%s/dns", data_dir);
        struct nf_state s = { .dns_dir = dns };
        resolver_stop_all(&s);
    }
    tu_wg_remove(ns, wg);
    tu_ip("netns del %s", ns);
    tu_ip("link del %s", veth);
    if (ctl.dir)
        tu_ctl_destroy(&ctl);
    if (tmp)
        tu_rmrf(tmp);
    free(tmp);
    tmp = NULL;
    free(fault_path);
    free(data_dir);
    free(image_dir);
    free(agent_log);
    free(tenant_key);
    fault_path = data_dir = image_dir = agent_log = tenant_key = NULL;
    return 0;
}

static void a_store_error_is_a_503_and_the_node_keeps_networks_and_peers(void **state)
{
    /* Applied: the tenant bridge of the VM's network and the one peer. */
    int64_t end = mono_ms() + 30000;
    while (!has_bridge() && mono_ms() < end)
        usleep(100000);
    assert_true(has_bridge());
    assert_true(wait_peers(PEER1_KEY, NULL, 30000));

    /* The peers part of the next document cannot be read, and a second
     * peer joins: every node's document changes. */
    int before = count_in_log("desired state unavailable");
    assert_int_equal(file_write_atomic(fault_path, "peers\n", 6, 0600), 0);
    register_peer("fc-peer2", PEER2_KEY, "10.213.7.10:51820");
    end = mono_ms() + 30000;
    while (count_in_log("desired state unavailable") == before &&
           mono_ms() < end)
        usleep(100000);
    assert_true(count_in_log("desired state unavailable") > before);
    assert_true(count_in_log("retry") > 0); /* the controller's 503 detail */
    /* Nothing was taken away: the bridge and the peer stay. */
    assert_true(has_bridge());
    _cleanup_free_ char *peers = wg_peers();
    assert_non_null(strstr(peers, PEER1_KEY));
    assert_null(strstr(peers, PEER2_KEY));
    assert_string_equal(vm_state(), "running");

    /* The store answers again: the node converges on the whole document. */
    assert_int_equal(unlink(fault_path), 0);
    assert_true(wait_peers(PEER2_KEY, NULL, 30000));
    _cleanup_free_ char *now = wg_peers();
    assert_non_null(strstr(now, PEER1_KEY));
    assert_true(has_bridge());
}

static void a_stop_during_a_partition_reaches_the_node_soon_after_heal(void **state)
{
    assert_true(wait_state("running", 30000));
    /* Let the agent park a fresh poll, as it does when idle. */
    usleep(3000 * 1000);
    int64_t cut = mono_ms();
    assert_int_equal(tu_ip("link set %s down", veth), 0);
    usleep(5000 * 1000);
    long st;
    json_auto_t *r = tu_api(&ctl, tenant_key, "POST", "/v1/vms/web/stop",
                            NULL, &st);
    assert_true(st >= 200 && st < 300);
    int64_t left = cut + PARTITION_S * 1000 - mono_ms();
    if (left > 0)
        usleep((useconds_t)left * 1000);
    assert_string_not_equal(vm_state(), "stopped");
    assert_int_equal(tu_ip("link set %s up", veth), 0);
    int64_t heal = mono_ms();
    /* Poll the controller's view until the node reports the VM stopped:
     * the stop has then been applied there. */
    int64_t end = heal + HEAL_DEADLINE_MS;
    while (!streq(vm_state(), "stopped") && mono_ms() < end)
        usleep(50000);
    int64_t took = mono_ms() - heal;
    printf("partition %d s: stop applied %lld ms after heal (limit %d ms)\n",
           PARTITION_S, (long long)took, HEAL_DEADLINE_MS);
    if (!streq(vm_state(), "stopped"))
        fail_msg("stop not applied within %d ms of heal; agent log %s",
                 HEAL_DEADLINE_MS, agent_log);
}

int main(void)
{
    _cleanup_free_ char *qemu_img = tu_which("qemu-img");
    if (!qemu_img) {
        printf("qemu-img is not installed\n");
        return 77;
    }
    /* The controller's side lives in a namespace of this test's own. */
    if (tu_wg_netns_enter() != 0)
        return 77;
    snprintf(ns, sizeof(ns), "fc-node-%d", (int)getpid());
    snprintf(veth, sizeof(veth), "fc%dc", (int)getpid() % 10000000);
    snprintf(wg, sizeof(wg), "fcwg%d", (int)getpid() % 10000000);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_store_error_is_a_503_and_the_node_keeps_networks_and_peers),
        cmocka_unit_test(a_stop_during_a_partition_reaches_the_node_soon_after_heal),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    if (!torn_down)
        teardown(NULL);
    return failed;
}
