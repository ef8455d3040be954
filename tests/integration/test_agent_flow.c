/* The node agent end to end against the real controller and libvirt's test
 * driver: join (CA pinned by the token), VM create/stop/resize/start/
 * reboot/delete through the API, the agent killed and restarted, adoption
 * of domains that survived it, a VM whose host went down under it started
 * again by the agent (never by libvirt), a VM powered off from inside
 * staying off until started again, the controller killed and restarted,
 * and a node reporting on a VM that is not its own. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "nodeagent/disk.h"
#include "nodeagent/guestseed.h"
#include "netfabric/wgkey.h"
#include "nodeagent/vmxml.h"
#include "tests/testutil.h"

#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static struct tu_ctl ctl;
static char *tmp, *data_dir, *image_dir, *root_dir, *agent_bin, *tenant_key;
static char *agent_log, *vm_id;
static pid_t agent_pid = -1;
static int agent_runs;

static char *api_field(const char *key, const char *method, const char *path,
                       const char *body, long want, const char *field)
{
    return tu_api_field(&ctl, key, method, path, body, want, field);
}

/* Run fogctl as the tenant; its stdout (caller frees), exit status 0
 * asserted. The lifecycle below goes through it, as a tenant would. */
static char *fogctl_ok(const char *first, ...)
{
    va_list ap;
    int st;
    va_start(ap, first);
    char *out = tu_fogctlv(&ctl, tenant_key, &st, first, ap);
    va_end(ap);
    if (st != 0)
        fail_msg("fogctl %s exited %d: %s", first, st, out);
    return out;
}

static void write_file(const char *dir, const char *rel, const char *text)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, rel);
    _cleanup_free_ char *d = xstrdup(p);
    *strrchr(d, '/') = '\0';
    assert_int_equal(mkdir_p(d, 0755), 0);
    assert_int_equal(file_write_atomic(p, text, strlen(text), 0644), 0);
}

static int run_cmd(char *const argv[], char **ret_out)
{
    int st;
    char *out = tu_run(argv, &st);
    if (ret_out)
        *ret_out = out;
    else
        free(out);
    return st;
}

static void agent_start(const char *uri)
{
    free(agent_log);
    agent_log = xasprintf("%s/agent-%d.log", tmp, ++agent_runs);
    char *argv[] = { agent_bin, "run", "--data-dir", data_dir, "--image-dir",
                     image_dir, "--root", root_dir, "--heartbeat", "1",
                     "--shutdown-timeout", "2", "--libvirt", (char *)uri,
                     "--network", "none", "--verbose", NULL };
    agent_pid = tu_spawn(argv, agent_log);
    assert_true(agent_pid > 0);
}

static int agent_stop(int sig)
{
    if (agent_pid <= 0)
        return -1;
    kill(agent_pid, sig);
    int st = -1;
    int64_t end = mono_ms() + 10000;
    while (mono_ms() < end) {
        pid_t p = waitpid(agent_pid, &st, WNOHANG);
        if (p == agent_pid)
            break;
        usleep(20000);
    }
    if (mono_ms() >= end) {
        kill(agent_pid, SIGKILL);
        waitpid(agent_pid, &st, 0);
    }
    agent_pid = -1;
    return st;
}

static int count_in_log(const char *needle)
{
    return tu_count_in_file(agent_log, needle);
}

/* Poll GET /v1/vms/NAME until field == want (or 404 when want is NULL). */
static bool wait_vm(const char *name, const char *field, const char *want,
                    int timeout_ms)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s", name);
    int64_t end = mono_ms() + timeout_ms;
    char last[128] = "";
    while (mono_ms() < end) {
        long st;
        json_auto_t *j = tu_api(&ctl, tenant_key, "GET", path, NULL, &st);
        if (!want && st == 404)
            return true;
        if (want && st == 200 && streq(json_str(j, field), want))
            return true;
        snprintf(last, sizeof(last), "%ld %s %s", st, json_str(j, field),
                 json_str(j, "state_reason") ? json_str(j, "state_reason") : "");
        usleep(50000);
    }
    fprintf(stderr, "vm %s: %s never became %s (last: %s)\n", name, field,
            want ? want : "gone", last);
    return false;
}

static char *qemu_img;

static int64_t virtual_size(const char *path)
{
    char *argv[] = { qemu_img, "info", "--output=json", "-U", (char *)path,
                     NULL };
    _cleanup_free_ char *out = NULL;
    if (run_cmd(argv, &out) != 0)
        return -1;
    json_auto_t *j = json_loads(out, 0, NULL);
    return json_int(j, "virtual-size", -1);
}

static int setup(void **state)
{
    qemu_img = tu_which("qemu-img");
    if (!qemu_img) {
        printf("qemu-img is not installed\n");
        exit(77);
    }
    /* Restarts reuse these, so they outlive setup(). Image inspection
     * (libguestfs) is not what this test is about. */
    static const char *ctl_args[] = { "--heartbeat", "1", "--longpoll", "5",
                                      "--no-inspect", NULL };
    tu_ctl_start(&ctl, ctl_args);
    tmp = tu_tempdir("agentflow");
    data_dir = xasprintf("%s/data", tmp);
    image_dir = xasprintf("%s/images", tmp);
    root_dir = xasprintf("%s/root", tmp);
    agent_bin = tu_bin("fog-nodeagent");

    /* A fake host: 8 CPUs, 16 GiB, no /dev/kvm. */
    struct buf cpu = BUF_INIT;
    for (int i = 0; i < 8; i++)
        buf_printf(&cpu, "processor\t: %d\nmodel name\t: Fake CPU <&> @ 3GHz\n\n", i);
    write_file(root_dir, "proc/cpuinfo", buf_str(&cpu));
    buf_free(&cpu);
    write_file(root_dir, "proc/meminfo", "MemTotal:       16777216 kB\n"
                                          "MemFree:         1000000 kB\n");
    write_file(root_dir, "sys/devices/system/cpu/online", "0-7\n");
    tu_fake_proc_net(root_dir);

    assert_int_equal(mkdir_p(image_dir, 0755), 0);
    _cleanup_free_ char *base = xasprintf("%s/tiny.qcow2", image_dir);
    char *mk[] = { qemu_img, "create", "-q", "-f", "qcow2", base, "64M", NULL };
    assert_int_equal(run_cmd(mk, NULL), 0);

    free(api_field(ctl.admin_key, "POST", "/v1/accounts",
                   "{\"name\":\"alice\",\"role\":\"tenant\"}", 201, NULL));
    tenant_key = api_field(ctl.admin_key, "POST", "/v1/keys",
                           "{\"account\":\"alice\"}", 201, "secret");
    return 0;
}

static int teardown(void **state)
{
    agent_stop(SIGKILL);
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
    free(vm_id);
    free(qemu_img);
    return 0;
}

static void join_pins_the_ca_and_registers_once(void **state)
{
    _cleanup_free_ char *tok = api_field(ctl.admin_key, "POST",
                                         "/v1/join-tokens", "{}", 201, "token");
    assert_int_equal(strlen(tok), 8 + 32 + 1 + 64);

    /* The same token with another CA hash: the controller is refused. */
    _cleanup_free_ char *bad = xstrdup(tok);
    bad[41] = bad[41] == '0' ? '1' : '0';
    _cleanup_free_ char *bad_dir = xasprintf("%s/bad", tmp);
    char *bad_argv[] = { agent_bin, "join", "--controller", ctl.url, "--token",
                         bad, "--data-dir", bad_dir, "--root", root_dir, NULL };
    assert_int_not_equal(run_cmd(bad_argv, NULL), 0);
    _cleanup_free_ char *bad_state = xasprintf("%s/node.json", bad_dir);
    assert_int_not_equal(access(bad_state, F_OK), 0);

    char *argv[] = { agent_bin, "join", "--controller", ctl.url, "--token", tok,
                     "--data-dir", data_dir, "--libvirt", "test:///default",
                     "--name", "node-1", "--root", root_dir, "--endpoint",
                     "192.0.2.10:51999", "--wg-port", "51999", "--port-min",
                     "21000", "--port-max", "21999", NULL };
    _cleanup_free_ char *out = NULL;
    assert_int_equal(run_cmd(argv, &out), 0);
    assert_non_null(strstr(out, "joined as node-1"));

    _cleanup_free_ char *cred = xasprintf("%s/node.json", data_dir);
    struct stat st;
    assert_int_equal(stat(cred, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* The mesh key was made on the node and stays private. */
    _cleanup_free_ char *key = xasprintf("%s/wg.key", data_dir);
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0077, 0);

    /* Settings the option table cannot judge are refused up front. */
    static const char *const bad_opts[][2] = {
        { "--network", "bridged" }, { "--public-ip", "10.0.0" },
        { "--public-ip", "::1" }, { "--endpoint", "nohostport" },
        { "--endpoint", "host:99999" }, { "--mesh-ifname", "wg0;x" },
        { "--port-min", "30000" }, { "--allow-egress", "192.168.1.5/24" },
        { "--allow-egress", "10.0.0.0/8," }, { "--allow-egress", "fc00::/7" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad_opts); i++) {
        char *bargv[] = { agent_bin, "run", "--data-dir", data_dir,
                          (char *)bad_opts[i][0], (char *)bad_opts[i][1],
                          NULL };
        assert_int_equal(run_cmd(bargv, NULL), 2);
    }

    /* A second join from the same data dir is refused before any call. */
    _cleanup_free_ char *tok2 = api_field(ctl.admin_key, "POST",
                                          "/v1/join-tokens", "{}", 201, "token");
    argv[5] = tok2;
    assert_int_not_equal(run_cmd(argv, NULL), 0);

    /* The inventory came from the fake root. */
    long code;
    json_auto_t *n =
        tu_api(&ctl, ctl.admin_key, "GET", "/v1/nodes/node-1", NULL, &code);
    assert_int_equal(code, 200);
    json_t *cap = json_object_get(n, "capacity");
    assert_int_equal(json_int(cap, "vcpus", 0), 8);
    assert_int_equal(json_int(cap, "memory_mib", 0), 16384);
    assert_string_equal(json_str(n, "cpu_model"), "Fake CPU <&> @ 3GHz");
    assert_false(json_bool(n, "kvm", true));
    assert_string_equal(json_str(n, "endpoint"), "192.0.2.10:51999");
}

static void a_vm_is_created_started_and_reported_running(void **state)
{
    agent_start("test:///default");
    free(fogctl_ok("create", "web", "--cpus", "1", "--memory", "128M", "--disk",
                   "1G", "--image", "tiny", "--allow-tcg", NULL));
    vm_id = api_field(tenant_key, "GET", "/v1/vms/web", NULL, 200, "id");
    assert_true(wait_vm("web", "state", "running", 15000));
    _cleanup_free_ char *disk = disk_overlay_path(data_dir, vm_id);
    assert_int_equal(virtual_size(disk), INT64_C(1) << 30);
    _cleanup_free_ char *created = xasprintf("vm %s: created domain", vm_id);
    assert_int_equal(count_in_log(created), 1);
    /* Its NoCloud seed was written on the start path: a cidata volume
     * naming the VM. */
    _cleanup_free_ char *seed = guestseed_path(data_dir, vm_id);
    _cleanup_free_ char *iso = NULL;
    size_t len = 0;
    assert_int_equal(file_read(seed, 1 << 20, &iso, &len), 0);
    assert_true(len >= 32768 + 2048);
    assert_memory_equal(iso + 32768 + 1, "CD001", 5);
    assert_non_null(memmem(iso, len, "cidata", 6));
    const char *host = "local-hostname: \"web\"";
    assert_non_null(memmem(iso, len, host, strlen(host)));
    struct stat st;
    assert_int_equal(stat(seed, &st), 0);
    assert_int_equal(st.st_mode & 0077, 0);
}

static void a_catalog_image_is_fetched_into_the_cache(void **state)
{
    /* A tenant's image, uploaded to the controller. */
    _cleanup_free_ char *img_id = api_field(tenant_key, "POST", "/v1/images",
                                            "{\"name\":\"cat\"}", 201, "id");
    _cleanup_free_ char *src = xasprintf("%s/cat.qcow2", tmp);
    char *mk[] = { qemu_img, "create", "-q", "-f", "qcow2", src, "32M", NULL };
    assert_int_equal(run_cmd(mk, NULL), 0);
    _cleanup_free_ char *bytes = NULL;
    size_t len = 0;
    assert_int_equal(file_read(src, 64 << 20, &bytes, &len), 0);
    _cleanup_free_ char *url = xasprintf("%s/v1/images/%s/file", ctl.url,
                                         img_id);
    struct tu_resp r;
    assert_int_equal(tu_http("PUT", url, tenant_key, ctl.ca, bytes, len,
                             "application/octet-stream", NULL, &r), 200);
    tu_resp_clear(&r);
    char sha[65];
    sha256_hex(bytes, len, sha);

    _cleanup_free_ char *id = api_field(
        tenant_key, "POST", "/v1/vms",
        "{\"name\":\"cat\",\"vcpus\":1,\"memory_mib\":128,\"disk_gib\":1,"
        "\"image\":\"cat\",\"allow_tcg\":true}", 201, "id");
    assert_true(wait_vm("cat", "state", "running", 15000));
    /* Fetched by digest, verified, and the VM's disk sits on it. */
    _cleanup_free_ char *cached = xasprintf("%s/cache/%s", data_dir, sha);
    assert_int_equal(access(cached, R_OK), 0);
    _cleanup_free_ char *disk = disk_overlay_path(data_dir, id);
    char *info[] = { qemu_img, "info", "--output=json", "-U", disk, NULL };
    _cleanup_free_ char *out = NULL;
    assert_int_equal(run_cmd(info, &out), 0);
    json_auto_t *j = json_loads(out, 0, NULL);
    assert_string_equal(json_str(j, "backing-filename"), cached);
    assert_int_equal(json_int(j, "virtual-size", 0), INT64_C(1) << 30);

    free(api_field(tenant_key, "DELETE", "/v1/vms/cat", NULL, 202, NULL));
    assert_true(wait_vm("cat", NULL, NULL, 15000));
    assert_int_not_equal(access(disk, F_OK), 0);
    /* The base stays for the next VM (until the cache needs room). */
    assert_int_equal(access(cached, R_OK), 0);
}

/* The controller's usage counters of the VM: samples and duplicates. */
static void usage_of_web(int64_t *ret_samples, int64_t *ret_dups,
                         int64_t *ret_claimed)
{
    long st;
    json_auto_t *u =
        tu_api(&ctl, ctl.admin_key, "GET", "/v1/usage?vm=web", NULL, &st);
    json_t *item = json_array_get(json_object_get(u, "items"), 0);
    *ret_samples = json_int(item, "samples", 0);
    *ret_dups = json_int(item, "duplicate_samples", 0);
    *ret_claimed = json_int(item, "claimed_seconds_total", 0);
}

static bool wait_samples(int64_t at_least, int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms, n = 0, d, c;
    while (mono_ms() < end) {
        usage_of_web(&n, &d, &c);
        if (n >= at_least)
            return true;
        usleep(100000);
    }
    fprintf(stderr, "usage samples: %lld, wanted %lld\n", (long long)n,
            (long long)at_least);
    return false;
}

static void running_time_is_reported_in_numbered_samples(void **state)
{
    assert_true(wait_samples(3, 10000));
    int64_t n, dups, claimed;
    usage_of_web(&n, &dups, &claimed);
    assert_int_equal(dups, 0);
    assert_true(claimed >= 1);
    /* The numbers are kept on the node for the next agent. */
    _cleanup_free_ char *path = xasprintf("%s/meter.json", data_dir);
    _cleanup_free_ char *text = NULL;
    assert_int_equal(file_read(path, 1 << 20, &text, NULL), 0);
    json_auto_t *j = json_loads(text, 0, NULL);
    json_t *mine = json_object_get(json_object_get(j, "vms"), vm_id);
    assert_true(json_int(mine, "next_seq", 0) >= 4);
}

/* A sample the controller refuses (it starts past any time it accepts) is
 * named in the refusal: the agent drops that one alone, and the good
 * sample sent with it is counted (posting it again is a duplicate). */
static void a_refused_sample_is_dropped_alone_and_the_rest_counted(void **state)
{
    assert_int_equal(WEXITSTATUS(agent_stop(SIGTERM)), 0);
    _cleanup_free_ char *path = xasprintf("%s/meter.json", data_dir);
    _cleanup_free_ char *text = NULL;
    assert_int_equal(file_read(path, 1 << 20, &text, NULL), 0);
    json_auto_t *j = json_loads(text, 0, NULL);
    json_t *mine = json_object_get(json_object_get(j, "vms"), vm_id);
    json_int_t bad = json_int(mine, "next_seq", 0), good = bad + 1;
    json_int_t t = (json_int_t)time(NULL);
    assert_true(bad >= 1);
    json_array_append_new(json_object_get(mine, "pending"),
                          json_pack("[I, I, I]", bad, (json_int_t)1 << 41,
                                    ((json_int_t)1 << 41) + 5));
    json_array_append_new(json_object_get(mine, "pending"),
                          json_pack("[I, I, I]", good, t - 3, t - 1));
    json_object_set_new(mine, "next_seq", json_integer(good + 1));
    _cleanup_free_ char *edited = json_dumps(j, JSON_COMPACT);
    assert_int_equal(file_write_atomic(path, edited, strlen(edited), 0600), 0);

    agent_start("test:///default");
    _cleanup_free_ char *refused = xasprintf(
        "vm %s: usage sample %lld refused by the controller", vm_id,
        (long long)bad);
    int64_t end = mono_ms() + 20000;
    bool gone = false;
    while (mono_ms() < end && !(count_in_log(refused) == 1 && gone)) {
        usleep(100000);
        _cleanup_free_ char *now = NULL;
        if (file_read(path, 1 << 20, &now, NULL) < 0)
            continue;
        json_auto_t *m = json_loads(now, 0, NULL);
        json_t *pend = json_object_get(json_object_get(
                                           json_object_get(m, "vms"), vm_id),
                                       "pending");
        gone = true;
        for (size_t i = 0; i < json_array_size(pend); i++) {
            json_int_t seq = json_integer_value(
                json_array_get(json_array_get(pend, i), 0));
            if (seq == bad || seq == good)
                gone = false;
        }
    }
    assert_int_equal(count_in_log(refused), 1);
    assert_true(gone);

    /* The good one was taken: the controller sees it again as a duplicate. */
    int64_t n0, d0, c0, n1, d1, c1;
    usage_of_web(&n0, &d0, &c0);
    _cleanup_free_ char *node_json = xasprintf("%s/node.json", data_dir);
    _cleanup_free_ char *ntext = NULL;
    assert_int_equal(file_read(node_json, 1 << 20, &ntext, NULL), 0);
    json_auto_t *node = json_loads(ntext, 0, NULL);
    _cleanup_free_ char *body = xasprintf(
        "{\"samples\":[{\"vm\":\"%s\",\"seq\":%lld,\"start\":%lld,"
        "\"end\":%lld}]}", vm_id, (long long)good, (long long)(t - 3),
        (long long)(t - 1));
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/status", ctl.url);
    assert_int_equal(tu_http("POST", url, json_str(node, "credential"), ctl.ca,
                             body, strlen(body), NULL, NULL, NULL), 200);
    usage_of_web(&n1, &d1, &c1);
    assert_int_equal(d1, d0 + 1);
    assert_true(wait_vm("web", "state", "running", 15000));
}

static void stop_resize_start_reboot_through_fogctl(void **state)
{
    free(fogctl_ok("shutdown", "web", NULL));
    assert_true(wait_vm("web", "state", "stopped", 10000));
    free(fogctl_ok("resize", "web", "--cpus", "2", "--memory", "256M", "--disk",
                   "3G", NULL));
    _cleanup_free_ char *disk = disk_overlay_path(data_dir, vm_id);
    int64_t end = mono_ms() + 10000;
    while (mono_ms() < end && virtual_size(disk) != INT64_C(3) << 30)
        usleep(50000);
    assert_int_equal(virtual_size(disk), INT64_C(3) << 30);
    _cleanup_free_ char *redef = xasprintf("vm %s: definition updated", vm_id);
    end = mono_ms() + 5000;
    while (mono_ms() < end && count_in_log(redef) < 1)
        usleep(50000);
    assert_int_equal(count_in_log(redef), 1);

    free(fogctl_ok("start", "web", NULL));
    assert_true(wait_vm("web", "state", "running", 10000));
    _cleanup_free_ char *rebooted = xasprintf("vm %s: rebooted", vm_id);
    free(fogctl_ok("reboot", "web", NULL));
    end = mono_ms() + 10000;
    while (mono_ms() < end && count_in_log(rebooted) < 1)
        usleep(50000);
    assert_int_equal(count_in_log(rebooted), 1);
    assert_true(wait_vm("web", "state", "running", 5000));
    /* The console log the domain writes is served by the API. */
    _cleanup_free_ char *con = disk_console_path(data_dir, vm_id);
    write_file(tmp, "x", "");
    assert_int_equal(file_write_atomic(con, "boot ok\n<&>\n", 12, 0644), 0);
    end = mono_ms() + 5000;
    bool seen = false;
    while (mono_ms() < end && !seen) {
        _cleanup_free_ char *out = fogctl_ok("console", "web", "--log", NULL);
        seen = out && strstr(out, "boot ok\n<&>");
        usleep(100000);
    }
    assert_true(seen);
}

static void a_killed_agent_restarts_and_converges_without_duplicates(void **state)
{
    _cleanup_free_ char *disk = disk_overlay_path(data_dir, vm_id);
    struct stat before, after;
    assert_int_equal(stat(disk, &before), 0);
    int64_t samples0, dups0, claimed0;
    usage_of_web(&samples0, &dups0, &claimed0);
    agent_stop(SIGKILL);
    /* The test driver lived in the killed process: the new agent finds no
     * domain and must rebuild it from the desired state, on the same disk. */
    agent_start("test:///default");
    _cleanup_free_ char *created = xasprintf("vm %s: created domain", vm_id);
    int64_t end = mono_ms() + 10000;
    while (mono_ms() < end && count_in_log(created) < 1)
        usleep(50000);
    assert_true(wait_vm("web", "state", "running", 10000));
    usleep(1500000); /* a few more passes: nothing more may be created */
    assert_int_equal(count_in_log(created), 1);
    assert_int_equal(stat(disk, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
    assert_int_equal(virtual_size(disk), INT64_C(3) << 30);
    /* Sampling goes on with new numbers: at most the one sample in flight
     * when the agent died comes again (and is counted once). */
    assert_true(wait_samples(samples0 + 3, 10000));
    int64_t samples1, dups1, claimed1;
    usage_of_web(&samples1, &dups1, &claimed1);
    assert_true(dups1 - dups0 <= 1);
    assert_true(claimed1 > claimed0);
}

/* The VM's entry in the node's desired state, as the agent sees it. */
static json_t *desired_vm(void)
{
    _cleanup_free_ char *path = xasprintf("%s/node.json", data_dir);
    _cleanup_free_ char *text = NULL;
    assert_int_equal(file_read(path, 1 << 16, &text, NULL), 0);
    json_auto_t *node = json_loads(text, 0, NULL);
    long st;
    json_auto_t *doc = tu_api(&ctl, json_str(node, "credential"), "GET",
                              "/v1/agent/desired", NULL, &st);
    assert_int_equal(st, 200);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(doc, "vms"), i, v)
        if (streq(json_str(v, "id"), vm_id))
            return json_incref(v);
    fail_msg("vm %s is not in the desired state", vm_id);
    return NULL;
}

/* The domain as it would survive an agent restart on a real host: running
 * (or, with `shut_off`, powered off from inside while the agent was away),
 * defined with our metadata (what the agent had recorded), next to a domain
 * that is not ours. */
static char *node_xml_with(bool shut_off)
{
    _cleanup_free_ char *disk = disk_overlay_path(data_dir, vm_id);
    _cleanup_free_ char *con = disk_console_path(data_dir, vm_id);
    long st;
    json_auto_t *vm = tu_api(&ctl, tenant_key, "GET", "/v1/vms/web", NULL, &st);
    json_auto_t *want = desired_vm();
    struct vmxml_meta meta = { .name = "web", .power_running = true,
                               .reboot_gen = json_int(vm, "reboot_gen", 0),
                               .start_gen = json_int(want, "start_gen", -1),
                               .place_gen = json_int(want, "place_gen", 0),
                               .disk_gib = 3 };
    snprintf(meta.vm_id, sizeof(meta.vm_id), "%s", vm_id);
    /* Its spec hash is left empty: the agent may only redefine it. */
    struct vmxml_spec spec = { .meta = &meta, .vcpus = 2, .memory_mib = 256,
                               .kvm = false, .disk_path = disk,
                               .console_log = con };
    _cleanup_free_ char *dom = NULL;
    assert_int_equal(vmxml_build(&spec, &dom), 0);
    char *decl = strstr(dom, "?>");
    const char *body = decl ? decl + 2 : dom;
    _cleanup_free_ char *off = NULL;
    if (shut_off) {
        /* The test driver's own namespace sets the run state. */
        const char *open_tag = "<domain type=\"qemu\">";
        char *at = strstr(body, open_tag), *end = strstr(body, "</domain>");
        assert_non_null(at);
        assert_non_null(end);
        off = xasprintf("%.*s<domain type=\"qemu\" xmlns:test=\"http://"
                        "libvirt.org/schemas/domain/test/1.0\">%.*s"
                        "<test:runstate>5</test:runstate>\n%s",
                        (int)(at - body), body,
                        (int)(end - at - strlen(open_tag)),
                        at + strlen(open_tag), end);
        body = off;
    }
    return xasprintf(
        "<node>\n"
        "<cpu><mhz>3000</mhz><model>Fake</model><active>8</active>"
        "<nodes>1</nodes><sockets>1</sockets><cores>8</cores>"
        "<threads>1</threads></cpu><memory>16777216</memory>\n"
        "<domain type='test'><name>other</name><memory>8192</memory>"
        "<os><type>hvm</type></os></domain>\n%s\n</node>\n", body);
}

static void a_restarted_agent_adopts_surviving_domains(void **state)
{
    agent_stop(SIGTERM);
    _cleanup_free_ char *xml = node_xml_with(false);
    _cleanup_free_ char *path = xasprintf("%s/node.xml", tmp);
    assert_int_equal(file_write_atomic(path, xml, strlen(xml), 0644), 0);
    _cleanup_free_ char *uri = xasprintf("test://%s", path);
    agent_start(uri);
    assert_true(wait_vm("web", "state", "running", 10000));
    usleep(1500000);
    /* Adopted: neither defined again nor started again. The spec of the
     * survivor differs only in its hash, so at most a redefinition. */
    _cleanup_free_ char *created = xasprintf("vm %s: created domain", vm_id);
    _cleanup_free_ char *started = xasprintf("vm %s: started", vm_id);
    assert_int_equal(count_in_log(created), 0);
    assert_int_equal(count_in_log(started), 0);
    assert_int_equal(count_in_log("other"), 0);
}

/* The agent starts again on a host where the VM's domain is shut off for
 * no reason libvirt knows (the test driver loads it so, as libvirtd does
 * after a reboot or a power cut). */
static void agent_restart_with_the_domain_lost(void)
{
    agent_stop(SIGTERM);
    _cleanup_free_ char *xml = node_xml_with(true);
    _cleanup_free_ char *path = xasprintf("%s/node-off.xml", tmp);
    assert_int_equal(file_write_atomic(path, xml, strlen(xml), 0644), 0);
    _cleanup_free_ char *uri = xasprintf("test://%s", path);
    agent_start(uri);
}

/* libvirt's own autostart is never set (a rebooted host must not run a
 * placement the hub moved elsewhere before its agent hears so): after a
 * reboot the agent starts the VM still placed here and meant to run. */
static void a_host_reboot_brings_the_vm_back_through_the_agent(void **state)
{
    agent_restart_with_the_domain_lost();
    /* The hub still says running from before the restart: wait for the
     * agent's own start, then for the state it reports after it. */
    _cleanup_free_ char *started = xasprintf("vm %s: started", vm_id);
    for (int i = 0; i < 100 && count_in_log(started) < 1; i++)
        usleep(100 * 1000);
    assert_int_equal(count_in_log(started), 1);
    assert_true(wait_vm("web", "state", "running", 10000));
    usleep(1500000);
    assert_true(wait_vm("web", "desired_state", "running", 1000));
    assert_true(wait_vm("web", "state", "running", 1000));
    assert_int_equal(count_in_log(started), 1);
}

static void a_guest_poweroff_is_reported_and_start_starts_it_again(void **state)
{
    /* While the agent is away, the VM goes down, and its autostart flag
     * says it stays down: as a guest's own poweroff, which libvirt cannot
     * tell apart once libvirtd restarted. */
    free(api_field(tenant_key, "POST", "/v1/vms/web/autostart",
                   "{\"autostart\":false}", 202, NULL));
    agent_restart_with_the_domain_lost();
    /* Reported stopped; the controller's desire follows; it stays down. */
    assert_true(wait_vm("web", "state", "stopped", 10000));
    assert_true(wait_vm("web", "desired_state", "stopped", 10000));
    usleep(1500000);
    _cleanup_free_ char *started = xasprintf("vm %s: started", vm_id);
    assert_int_equal(count_in_log(started), 0);
    assert_true(wait_vm("web", "state", "stopped", 1000));
    /* A start through the API starts it again. */
    free(api_field(tenant_key, "POST", "/v1/vms/web/start", NULL, 202, NULL));
    assert_true(wait_vm("web", "state", "running", 10000));
    assert_true(wait_vm("web", "desired_state", "running", 1000));
    assert_int_equal(count_in_log(started), 1);
}

static void the_controller_restarting_midway_disturbs_nothing(void **state)
{
    tu_ctl_stop(&ctl, SIGKILL);
    usleep(1500000);
    /* The agent is still there while its controller is gone. */
    assert_int_equal(kill(agent_pid, 0), 0);
    tu_ctl_restart(&ctl);
    assert_true(wait_vm("web", "state", "running", 10000));
    free(api_field(tenant_key, "POST", "/v1/vms/web/stop", NULL, 202, NULL));
    assert_true(wait_vm("web", "state", "stopped", 15000));
    free(api_field(tenant_key, "POST", "/v1/vms/web/start", NULL, 202, NULL));
    assert_true(wait_vm("web", "state", "running", 15000));
}

static void a_node_cannot_report_on_a_vm_it_does_not_host(void **state)
{
    _cleanup_free_ char *tok = api_field(ctl.admin_key, "POST",
                                         "/v1/join-tokens", "{}", 201, "token");
    _cleanup_free_ char *reg = xasprintf(
        "{\"token\":\"%s\",\"name\":\"intruder\",\"inventory\":{\"vcpus\":1,"
        "\"memory_mib\":64,\"disk_gib\":1,\"kvm\":false}}", tok);
    _cleanup_free_ char *cred = api_field(NULL, "POST", "/v1/agent/register",
                                          reg, 201, "credential");
    /* The newcomer learns node-1 as a mesh peer by the public key of the
     * private key node-1 keeps, at the port and endpoint it gave. */
    _cleanup_free_ char *key_path = xasprintf("%s/wg.key", data_dir);
    uint8_t priv[WGKEY_LEN], pub[WGKEY_LEN];
    char pub64[WGKEY_B64_LEN + 1];
    assert_int_equal(wgkey_load_or_create(key_path, priv), 0);
    wgkey_public(priv, pub);
    wgkey_to_base64(pub, pub64);
    long dst;
    json_auto_t *desired =
        tu_api(&ctl, cred, "GET", "/v1/agent/desired", NULL, &dst);
    assert_int_equal(dst, 200);
    json_t *peer = json_array_get(json_object_get(desired, "peers"), 0);
    assert_non_null(peer);
    assert_string_equal(json_str(peer, "public_key"), pub64);
    assert_string_equal(json_str(peer, "endpoint"), "192.0.2.10:51999");
    _cleanup_free_ char *body = xasprintf(
        "{\"vms\":[{\"id\":\"%s\",\"state\":\"stopped\"}]}", vm_id);
    long st;
    json_auto_t *j = tu_api(&ctl, cred, "POST", "/v1/agent/status", body, &st);
    assert_true(st == 403 || st == 404);
    /* A malformed entry is refused as a whole, naming the member. */
    static const char *const bad[][3] = {
        { "{\"vms\":[{\"id\":\"x\",\"state\":\"running\"}]}", "vms", "vms[0]: " },
        { "{\"inventory\":{\"vcpus\":0}}", "inventory", "inventory: " },
        { "{\"public_ip\":\"1.2.3.4; drop\"}", "public_ip", "'public_ip'" },
    };
    for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
        json_auto_t *p = tu_api(&ctl, cred, "POST", "/v1/agent/status",
                                bad[k][0], &st);
        assert_int_equal(st, 400);
        assert_string_equal(json_str(p, "field"), bad[k][1]);
        assert_true(startswith(json_str(p, "detail"), bad[k][2]));
    }
    /* Recorded as an event, and the VM's state is untouched. */
    json_auto_t *ev =
        tu_api(&ctl, ctl.admin_key, "GET", "/v1/events?limit=200", NULL, &st);
    bool found = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(ev, "items"), i, e)
        if (json_str(e, "detail") && strstr(json_str(e, "detail"), vm_id) &&
            strstr(json_str(e, "detail"), "refused"))
            found = true;
    assert_true(found);
    assert_true(wait_vm("web", "state", "running", 3000));
}

static void delete_removes_the_domain_and_its_disk(void **state)
{
    free(fogctl_ok("undefine", "web", "--remove-all-storage", NULL));
    assert_true(wait_vm("web", NULL, NULL, 15000));
    _cleanup_free_ char *disk = disk_overlay_path(data_dir, vm_id);
    _cleanup_free_ char *con = disk_console_path(data_dir, vm_id);
    assert_int_not_equal(access(disk, F_OK), 0);
    assert_int_not_equal(access(con, F_OK), 0);
    _cleanup_free_ char *seed = guestseed_path(data_dir, vm_id);
    assert_int_not_equal(access(seed, F_OK), 0);
    _cleanup_free_ char *undef = xasprintf("vm %s: domain undefined", vm_id);
    assert_int_equal(count_in_log(undef), 1);
    /* SIGTERM is a clean exit. */
    int st = agent_stop(SIGTERM);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(join_pins_the_ca_and_registers_once),
        cmocka_unit_test(a_vm_is_created_started_and_reported_running),
        cmocka_unit_test(running_time_is_reported_in_numbered_samples),
        cmocka_unit_test(a_refused_sample_is_dropped_alone_and_the_rest_counted),
        cmocka_unit_test(a_catalog_image_is_fetched_into_the_cache),
        cmocka_unit_test(stop_resize_start_reboot_through_fogctl),
        cmocka_unit_test(a_killed_agent_restarts_and_converges_without_duplicates),
        cmocka_unit_test(a_restarted_agent_adopts_surviving_domains),
        cmocka_unit_test(a_host_reboot_brings_the_vm_back_through_the_agent),
        cmocka_unit_test(a_guest_poweroff_is_reported_and_start_starts_it_again),
        cmocka_unit_test(the_controller_restarting_midway_disturbs_nothing),
        cmocka_unit_test(a_node_cannot_report_on_a_vm_it_does_not_host),
        cmocka_unit_test(delete_removes_the_domain_and_its_disk),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
