/* The node agent end to end against the real controller and libvirt's test
 * driver: join (CA pinned by the token), VM create/stop/resize/start/
 * reboot/delete through the API, the agent killed and restarted, adoption
 * of domains that survived it, the controller killed and restarted, and a
 * node reporting on a VM that is not its own. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "nodeagent/disk.h"
#include "nodeagent/vmxml.h"
#include "tests/testutil.h"

#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>

static struct tu_ctl ctl;
static char *tmp, *data_dir, *image_dir, *root_dir, *agent_bin, *tenant_key;
static char *agent_log, *vm_id;
static pid_t agent_pid = -1;
static int agent_runs;

static json_t *api(const char *key, const char *method, const char *path,
                   const char *body, long *ret_status)
{
    _cleanup_free_ char *url = xasprintf("%s%s", ctl.url, path);
    struct tu_resp r;
    long st = tu_http(method, url, key, ctl.ca, body, body ? strlen(body) : 0,
                      NULL, NULL, &r);
    if (ret_status)
        *ret_status = st;
    json_t *j = json_loads(r.body ? r.body : "", 0, NULL);
    tu_resp_clear(&r);
    return j;
}

static char *api_field(const char *key, const char *method, const char *path,
                       const char *body, long want, const char *field)
{
    long st;
    json_auto_t *j = api(key, method, path, body, &st);
    if (st != want)
        fail_msg("%s %s: status %ld, want %ld", method, path, st, want);
    return field ? xstrdup(json_str(j, field) ? json_str(j, field) : "") : NULL;
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
                     "--verbose", NULL };
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
    _cleanup_free_ char *text = NULL;
    if (file_read(agent_log, 64 << 20, &text, NULL) < 0)
        return 0;
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
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
        json_auto_t *j = api(tenant_key, "GET", path, NULL, &st);
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

/* A program in $PATH, or NULL. */
static char *which(const char *prog)
{
    const char *path = getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin";
    _cleanup_free_ char *copy = xstrdup(path);
    char *save = NULL;
    for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char *p = xasprintf("%s/%s", d, prog);
        if (access(p, X_OK) == 0)
            return p;
        free(p);
    }
    return NULL;
}

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
    qemu_img = which("qemu-img");
    if (!qemu_img) {
        printf("qemu-img is not installed\n");
        exit(77);
    }
    const char *ctl_args[] = { "--heartbeat", "1", "--longpoll", "5", NULL };
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
                     "--name", "node-1", "--root", root_dir, NULL };
    _cleanup_free_ char *out = NULL;
    assert_int_equal(run_cmd(argv, &out), 0);
    assert_non_null(strstr(out, "joined as node-1"));

    _cleanup_free_ char *cred = xasprintf("%s/node.json", data_dir);
    struct stat st;
    assert_int_equal(stat(cred, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* A second join from the same data dir is refused before any call. */
    _cleanup_free_ char *tok2 = api_field(ctl.admin_key, "POST",
                                          "/v1/join-tokens", "{}", 201, "token");
    argv[5] = tok2;
    assert_int_not_equal(run_cmd(argv, NULL), 0);

    /* The inventory came from the fake root. */
    long code;
    json_auto_t *n = api(ctl.admin_key, "GET", "/v1/nodes/node-1", NULL, &code);
    assert_int_equal(code, 200);
    json_t *cap = json_object_get(n, "capacity");
    assert_int_equal(json_int(cap, "vcpus", 0), 8);
    assert_int_equal(json_int(cap, "memory_mib", 0), 16384);
    assert_string_equal(json_str(n, "cpu_model"), "Fake CPU <&> @ 3GHz");
    assert_false(json_bool(n, "kvm", true));
}

static void a_vm_is_created_started_and_reported_running(void **state)
{
    agent_start("test:///default");
    vm_id = api_field(tenant_key, "POST", "/v1/vms",
                      "{\"name\":\"web\",\"vcpus\":1,\"memory_mib\":128,"
                      "\"disk_gib\":1,\"image\":\"tiny\",\"allow_tcg\":true}",
                      201, "id");
    assert_true(wait_vm("web", "state", "running", 15000));
    _cleanup_free_ char *disk = disk_overlay_path(data_dir, vm_id);
    assert_int_equal(virtual_size(disk), INT64_C(1) << 30);
    _cleanup_free_ char *created = xasprintf("vm %s: created domain", vm_id);
    assert_int_equal(count_in_log(created), 1);
}

static void stop_resize_start_reboot_through_the_api(void **state)
{
    free(api_field(tenant_key, "POST", "/v1/vms/web/stop", NULL, 202, NULL));
    assert_true(wait_vm("web", "state", "stopped", 10000));
    free(api_field(tenant_key, "POST", "/v1/vms/web/resize",
                   "{\"vcpus\":2,\"memory_mib\":256,\"disk_gib\":3}", 202,
                   NULL));
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

    free(api_field(tenant_key, "POST", "/v1/vms/web/start", NULL, 202, NULL));
    assert_true(wait_vm("web", "state", "running", 10000));
    _cleanup_free_ char *rebooted = xasprintf("vm %s: rebooted", vm_id);
    free(api_field(tenant_key, "POST", "/v1/vms/web/reboot", NULL, 202, NULL));
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
        _cleanup_free_ char *url = xasprintf("%s/v1/vms/web/console", ctl.url);
        struct tu_resp r;
        if (tu_http("GET", url, tenant_key, ctl.ca, NULL, 0, NULL, NULL, &r) ==
                200 && strstr(r.body, "boot ok\n<&>"))
            seen = true;
        tu_resp_clear(&r);
        usleep(100000);
    }
    assert_true(seen);
}

static void a_killed_agent_restarts_and_converges_without_duplicates(void **state)
{
    _cleanup_free_ char *disk = disk_overlay_path(data_dir, vm_id);
    struct stat before, after;
    assert_int_equal(stat(disk, &before), 0);
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
}

/* The domain as it would survive an agent restart on a real host: running,
 * defined with our metadata (what the agent had recorded), next to a domain
 * that is not ours. */
static char *node_xml_with_survivor(void)
{
    _cleanup_free_ char *disk = disk_overlay_path(data_dir, vm_id);
    _cleanup_free_ char *con = disk_console_path(data_dir, vm_id);
    long st;
    json_auto_t *vm = api(tenant_key, "GET", "/v1/vms/web", NULL, &st);
    struct vmxml_meta meta = { .name = "web", .power_running = true,
                               .reboot_gen = json_int(vm, "reboot_gen", 0),
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
    _cleanup_free_ char *xml = node_xml_with_survivor();
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
    _cleanup_free_ char *body = xasprintf(
        "{\"vms\":[{\"id\":\"%s\",\"state\":\"stopped\"}]}", vm_id);
    long st;
    json_auto_t *j = api(cred, "POST", "/v1/agent/status", body, &st);
    assert_true(st == 403 || st == 404);
    /* Recorded as an event, and the VM's state is untouched. */
    json_auto_t *ev = api(ctl.admin_key, "GET", "/v1/events?limit=200", NULL,
                          &st);
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
    free(api_field(tenant_key, "DELETE", "/v1/vms/web", NULL, 202, NULL));
    assert_true(wait_vm("web", NULL, NULL, 15000));
    _cleanup_free_ char *disk = disk_overlay_path(data_dir, vm_id);
    _cleanup_free_ char *con = disk_console_path(data_dir, vm_id);
    assert_int_not_equal(access(disk, F_OK), 0);
    assert_int_not_equal(access(con, F_OK), 0);
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
        cmocka_unit_test(stop_resize_start_reboot_through_the_api),
        cmocka_unit_test(a_killed_agent_restarts_and_converges_without_duplicates),
        cmocka_unit_test(a_restarted_agent_adopts_surviving_domains),
        cmocka_unit_test(the_controller_restarting_midway_disturbs_nothing),
        cmocka_unit_test(a_node_cannot_report_on_a_vm_it_does_not_host),
        cmocka_unit_test(delete_removes_the_domain_and_its_disk),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
