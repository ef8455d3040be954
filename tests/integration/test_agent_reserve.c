/* A provider's own share of its machine: the agent's --reserve-* figures
 * keep capacity out of what the node offers, so the scheduler never
 * places into it; the per-VM limits the provider sets reach the domain
 * definition in a form libvirt's schema accepts; and the agent's
 * --metrics-listen endpoint (like the controller's /metrics) serves text
 * promtool accepts, with the VMs the node runs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "nodeagent/vmxml.h"
#include "tests/testutil.h"

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

static struct tu_ctl ctl;
static char *tmp, *data_dir, *image_dir, *root_dir, *agent_bin, *tenant_key;
static char *agent_log, *promtool, *metrics_url;
static pid_t agent_pid = -1;

static int setup(void **state)
{
    _cleanup_free_ char *qemu_img = tu_which("qemu-img");
    if (!qemu_img) {
        printf("qemu-img is not installed\n");
        exit(77);
    }
    promtool = tu_which("promtool"); /* Debian 12: package prometheus */
    static const char *ctl_args[] = { "--heartbeat", "1", "--longpoll", "5",
                                      "--no-inspect", NULL };
    tu_ctl_start(&ctl, ctl_args);
    tmp = tu_tempdir("pkreserve");
    data_dir = xasprintf("%s/data", tmp);
    image_dir = xasprintf("%s/images", tmp);
    root_dir = xasprintf("%s/root", tmp);
    agent_log = xasprintf("%s/agent.log", tmp);
    agent_bin = tu_bin("fog-nodeagent");

    tu_fake_host(root_dir, 8, 16384);

    assert_int_equal(mkdir_p(image_dir, 0755), 0);
    _cleanup_free_ char *base = xasprintf("%s/tiny.qcow2", image_dir);
    char *mk[] = { qemu_img, "create", "-q", "-f", "qcow2", base, "64M", NULL };
    int st;
    free(tu_run(mk, &st));
    assert_int_equal(st, 0);

    free(tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/accounts",
                      "{\"name\":\"alice\",\"role\":\"tenant\"}", 201, NULL));
    tenant_key = tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/keys",
                              "{\"account\":\"alice\"}", 201, "secret");
    return 0;
}

static int teardown(void **state)
{
    if (agent_pid > 0) {
        kill(agent_pid, SIGKILL);
        waitpid(agent_pid, NULL, 0);
    }
    tu_ctl_destroy(&ctl);
    if (tmp)
        tu_rmrf(tmp);
    free(tmp);
    free(data_dir);
    free(image_dir);
    free(root_dir);
    free(agent_bin);
    free(tenant_key);
    free(agent_log);
    free(promtool);
    free(metrics_url);
    return 0;
}

/* Poll GET /v1/vms/NAME until `field` equals want (or, want NULL, is a
 * non-empty string); false after the deadline. */
static bool wait_vm(const char *name, const char *field, const char *want)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s", name);
    int64_t end = mono_ms() + 30000;
    while (mono_ms() < end) {
        long st;
        json_auto_t *j = tu_api(&ctl, tenant_key, "GET", path, NULL, &st);
        const char *v = st == 200 ? json_str(j, field) : NULL;
        if (v && (want ? streq(v, want) : *v != '\0'))
            return true;
        usleep(50000);
    }
    fprintf(stderr, "vm %s: %s never became %s\n", name, field,
            want ? want : "set");
    return false;
}

static void a_reservation_leaving_nothing_is_refused(void **state)
{
    _cleanup_free_ char *tok = tu_api_field(&ctl, ctl.admin_key, "POST",
                                            "/v1/join-tokens", "{}", 201,
                                            "token");
    _cleanup_free_ char *dir = xasprintf("%s/greedy", tmp);
    char *argv[] = { agent_bin, "join", "--controller", ctl.url, "--token",
                     tok, "--data-dir", dir, "--root", root_dir,
                     "--libvirt", "test:///default", "--reserve-vcpus", "8",
                     NULL };
    int st;
    _cleanup_free_ char *out = tu_run(argv, &st);
    assert_int_not_equal(st, 0);
    long code;
    json_auto_t *n = tu_api(&ctl, ctl.admin_key, "GET", "/v1/nodes/greedy",
                            NULL, &code);
    assert_int_equal(code, 404);
}

static void reserved_capacity_stays_out_of_placement(void **state)
{
    _cleanup_free_ char *tok = tu_api_field(&ctl, ctl.admin_key, "POST",
                                            "/v1/join-tokens", "{}", 201,
                                            "token");
    char *jargv[] = { agent_bin, "join", "--controller", ctl.url, "--token",
                      tok, "--data-dir", data_dir, "--root", root_dir,
                      "--libvirt", "test:///default", "--name", "pk-node",
                      "--reserve-vcpus", "6", "--reserve-memory-mib", "12288",
                      NULL };
    int st;
    free(tu_run(jargv, &st));
    assert_int_equal(st, 0);
    long code;
    json_auto_t *n = tu_api(&ctl, ctl.admin_key, "GET", "/v1/nodes/pk-node",
                            NULL, &code);
    assert_int_equal(code, 200);
    json_t *cap = json_object_get(n, "capacity");
    assert_int_equal(json_int(cap, "vcpus", 0), 2);
    assert_int_equal(json_int(cap, "memory_mib", 0), 4096);

    int port = tu_free_port();
    _cleanup_free_ char *listen = xasprintf("127.0.0.1:%d", port);
    metrics_url = xasprintf("http://%s/metrics", listen);
    char *argv[] = { agent_bin, "run", "--data-dir", data_dir, "--image-dir",
                     image_dir, "--root", root_dir, "--heartbeat", "1",
                     "--network", "none", "--reserve-vcpus", "6",
                     "--reserve-memory-mib", "12288", "--cpu-cap-pct", "50",
                     "--disk-iops", "200", "--net-kbps", "1000",
                     "--metrics-listen", listen, "--verbose", NULL };
    agent_pid = tu_spawn(argv, agent_log);
    assert_true(agent_pid > 0);

    /* Three vCPUs: more than the node offers, though the host has 8. */
    free(tu_api_field(&ctl, tenant_key, "POST", "/v1/vms",
                      "{\"name\":\"big\",\"vcpus\":3,\"memory_mib\":128,"
                      "\"disk_gib\":1,\"image\":\"tiny\",\"allow_tcg\":true}",
                      201, NULL));
    assert_true(wait_vm("big", "state_reason", NULL));
    /* Two fit, and run. */
    free(tu_api_field(&ctl, tenant_key, "POST", "/v1/vms",
                      "{\"name\":\"fits\",\"vcpus\":2,\"memory_mib\":128,"
                      "\"disk_gib\":1,\"image\":\"tiny\",\"allow_tcg\":true}",
                      201, NULL));
    assert_true(wait_vm("fits", "state", "running"));
    /* Now the node's offer is used up: one more vCPU waits, although six
     * of the host's CPUs sit idle for their owner. */
    free(tu_api_field(&ctl, tenant_key, "POST", "/v1/vms",
                      "{\"name\":\"more\",\"vcpus\":1,\"memory_mib\":128,"
                      "\"disk_gib\":1,\"image\":\"tiny\",\"allow_tcg\":true}",
                      201, NULL));
    assert_true(wait_vm("more", "state_reason", NULL));
    json_auto_t *more = tu_api(&ctl, tenant_key, "GET", "/v1/vms/more", NULL,
                               &code);
    /* Placed VMs name their node in these members; unplaced ones hold
     * null. */
    json_auto_t *fits = tu_api(&ctl, tenant_key, "GET", "/v1/vms/fits", NULL,
                               &code);
    assert_string_equal(json_str(fits, "node_name"), "pk-node");
    assert_true(json_is_null(json_object_get(more, "node_id")));
    assert_true(json_is_null(json_object_get(more, "node_name")));
    assert_non_null(strstr(json_str(more, "state_reason"), "1 vCPUs"));
    json_auto_t *big = tu_api(&ctl, tenant_key, "GET", "/v1/vms/big", NULL,
                              &code);
    assert_true(json_is_null(json_object_get(big, "node_id")));
    assert_true(json_is_null(json_object_get(big, "node_name")));

    /* The heartbeats that reported "fits" running carried the reduced
     * inventory too: the capacity is still the offer, not the host. */
    json_auto_t *n2 = tu_api(&ctl, ctl.admin_key, "GET", "/v1/nodes/pk-node",
                             NULL, &code);
    assert_int_equal(json_int(json_object_get(n2, "capacity"), "vcpus", 0), 2);
}

static void the_owners_limits_pass_libvirts_schema(void **state)
{
    _cleanup_free_ char *validate = tu_which("virt-xml-validate");
    if (!validate)
        skip();
    struct vmxml_meta m = { .name = "web", .power_running = true };
    snprintf(m.vm_id, sizeof(m.vm_id), "1b4e28ba-2fa1-41d2-883f-0016d3cca427");
    memset(m.spec, 'a', 64);
    struct vmxml_nic nic = { "52:54:00:12:34:56", "fogbr7", 1370,
                             "fogtap0" };
    struct vmxml_limits l = { .cpu_shares = 100, .cpu_cap_pct = 50,
                              .disk_iops = 500, .disk_bytes_sec = 20 << 20,
                              .net_kbps = 12500 };
    struct vmxml_spec s = { .meta = &m, .vcpus = 2, .memory_mib = 512,
                            .disk_path = "/var/lib/fog/x.qcow2",
                            .console_log = "/var/lib/fog/x.log",
                            .nics = &nic, .n_nics = 1, .limits = &l };
    _cleanup_free_ char *xml = NULL;
    assert_int_equal(vmxml_build(&s, &xml), 0);
    _cleanup_free_ char *path = xasprintf("%s/limits.xml", tmp);
    assert_int_equal(file_write_atomic(path, xml, strlen(xml), 0600), 0);
    char *argv[] = { validate, path, "domain", NULL };
    int st;
    _cleanup_free_ char *out = tu_run(argv, &st);
    if (st != 0)
        fail_msg("virt-xml-validate: %s\n%s", out, xml);
}

static void both_metrics_endpoints_pass_promtool(void **state)
{
    assert_non_null(metrics_url);
    /* The agent's figures: the running VM, passes run, a contact. */
    struct tu_resp r;
    int64_t end = mono_ms() + 30000;
    bool seen = false;
    while (!seen && mono_ms() < end) {
        if (tu_http("GET", metrics_url, NULL, NULL, NULL, 0, NULL, NULL,
                    &r) == 200)
            seen = strstr(r.body, "fog_agent_vms{state=\"running\"} 1\n") &&
                   !strstr(r.body, "fog_agent_reconcile_passes_total 0\n") &&
                   !strstr(r.body,
                           "fog_agent_last_contact_timestamp_seconds 0\n");
        if (!seen) {
            tu_resp_clear(&r);
            usleep(100000);
        }
    }
    assert_true(seen);
    assert_non_null(strstr(r.content_type, "text/plain"));
    assert_non_null(strstr(r.body, "# TYPE fog_agent_pending_samples gauge"));
    assert_non_null(strstr(r.body, "fog_agent_image_cache_hits_total"));
    if (promtool)
        assert_int_equal(tu_promtool(promtool, tmp, "check metrics", r.body), 0);
    tu_resp_clear(&r);
    _cleanup_free_ char *other = xasprintf("%.*s/nothing",
                                           (int)(strlen(metrics_url) - 8),
                                           metrics_url);
    assert_int_equal(tu_http("GET", other, NULL, NULL, NULL, 0, NULL, NULL,
                             &r), 404);
    tu_resp_clear(&r);

    _cleanup_free_ char *url = xasprintf("%s/metrics", ctl.url);
    assert_int_equal(tu_http("GET", url, ctl.admin_key, ctl.ca, NULL, 0, NULL,
                             NULL, &r), 200);
    /* The controller knows what the provider keeps back. */
    assert_true(tu_metric(r.body, "fog_node_reserved_vcpus{node=\"pk-node\",")
                == 6);
    assert_true(tu_metric(r.body,
                          "fog_node_reserved_memory_bytes{node=\"pk-node\",")
                == 12288.0 * 1048576);
    assert_true(tu_metric(r.body, "fog_node_capacity_vcpus{node=\"pk-node\",")
                == 2);
    if (promtool)
        assert_int_equal(tu_promtool(promtool, tmp, "check metrics", r.body), 0);
    tu_resp_clear(&r);
    if (!promtool)
        skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_reservation_leaving_nothing_is_refused),
        cmocka_unit_test(reserved_capacity_stays_out_of_placement),
        cmocka_unit_test(the_owners_limits_pass_libvirts_schema),
        cmocka_unit_test(both_metrics_endpoints_pass_promtool),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
