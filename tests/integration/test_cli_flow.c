/* fogctl against the real controller: the admin makes a tenant and its
 * key, the tenant drives a VM through every verb, another tenant cannot
 * see it, login saves settings, and errors have the promised exit codes
 * (0 done, 1 failed with one line, 2 usage). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <sys/stat.h>

static struct tu_ctl ctl;
static char *home;

static char *make_tenant(const char *name)
{
    int st;
    _cleanup_free_ char *o1 =
        tu_fogctl(&ctl, ctl.admin_key, &st, "account-create", name, "--role",
                  "tenant", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *o2 = tu_fogctl(&ctl, ctl.admin_key, &st, "key-create",
                                        "--account", name, NULL);
    assert_int_equal(st, 0);
    char *key = tu_field(o2, "key");
    assert_non_null(key);
    assert_true(startswith(key, "fog_"));
    return key;
}

static int setup(void **state)
{
    tu_ctl_start(&ctl, NULL);
    home = tu_tempdir("fogctl-home");
    setenv("HOME", home, 1);
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("FOG_CONFIG");
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    tu_rmrf(home);
    free(home);
    return 0;
}

static void tenant_drives_a_vm_through_every_verb(void **state)
{
    _cleanup_free_ char *key = make_tenant("cli-alice");
    int st;
    _cleanup_free_ char *c = tu_fogctl(
        &ctl, key, &st, "create", "web", "--cpus", "2", "--memory", "256M",
        "--disk", "2G", "--image", "tiny", "--publish", "8080:80/tcp", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(c, "VM web created"));

    _cleanup_free_ char *info =
        tu_fogctl(&ctl, key, &st, "dominfo", "web", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *state_ = tu_field(info, "state");
    _cleanup_free_ char *mem = tu_field(info, "memory_mib");
    _cleanup_free_ char *reason = tu_field(info, "state_reason");
    _cleanup_free_ char *ports = tu_field(info, "ports");
    assert_string_equal(state_, "pending");
    assert_string_equal(mem, "256");
    /* No node yet: the reason says why it waits. */
    assert_non_null(reason);
    assert_non_null(strstr(reason, "node"));
    assert_non_null(strstr(ports, "/tcp"));

    _cleanup_free_ char *js =
        tu_fogctl(&ctl, key, &st, "dominfo", "web", "--json", NULL);
    assert_int_equal(st, 0);
    json_auto_t *vm = json_loads(js, 0, NULL);
    assert_non_null(vm);
    assert_int_equal(json_integer_value(json_object_get(vm, "vcpus")), 2);

    _cleanup_free_ char *l = tu_fogctl(&ctl, key, &st, "list", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(l, "web"));

    _cleanup_free_ char *s1 =
        tu_fogctl(&ctl, key, &st, "shutdown", "web", NULL);
    assert_int_equal(st, 0);
    /* Stopped VMs leave `list` but stay in `list --all`, as in virsh. */
    _cleanup_free_ char *l2 = tu_fogctl(&ctl, key, &st, "list", NULL);
    assert_null(strstr(l2, "web"));
    _cleanup_free_ char *l3 = tu_fogctl(&ctl, key, &st, "list", "--all", NULL);
    assert_non_null(strstr(l3, "web"));
    _cleanup_free_ char *s2 = tu_fogctl(&ctl, key, &st, "start", "web", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *s3 = tu_fogctl(&ctl, key, &st, "destroy", "web", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *s4 = tu_fogctl(&ctl, key, &st, "resize", "web",
                                        "--cpus", "1", "--json", NULL);
    assert_int_equal(st, 0);
    json_auto_t *resized = json_loads(s4, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(resized, "vcpus")), 1);
    _cleanup_free_ char *s5 = tu_fogctl(&ctl, key, &st, "undefine", "web",
                                        "--remove-all-storage", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *gone =
        tu_fogctl(&ctl, key, &st, "dominfo", "web", NULL);
    assert_int_equal(st, 1);

    /* The audit log records what the tenant did. */
    _cleanup_free_ char *ev =
        tu_fogctl(&ctl, key, &st, "events", "--json", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(ev, "POST /v1/vms"));
    assert_non_null(strstr(ev, "DELETE /v1/vms/"));
}

static void incus_and_openstack_names_are_aliases(void **state)
{
    _cleanup_free_ char *key = make_tenant("cli-dave");
    int st;
    _cleanup_free_ char *c =
        tu_fogctl(&ctl, key, &st, "launch", "alias", "--cpus", "1", "--memory",
                  "128M", "--disk", "1G", "--image", "tiny", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *i =
        tu_fogctl(&ctl, key, &st, "info", "alias", "--json", NULL);
    assert_int_equal(st, 0);
    json_auto_t *vm = json_loads(i, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(vm, "desired_state")),
                        "running");
    _cleanup_free_ char *addr =
        tu_fogctl(&ctl, key, &st, "domifaddr", "alias", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(addr, "eth0"));
    /* stop --force is destroy: stopped at once, by force. */
    _cleanup_free_ char *s =
        tu_fogctl(&ctl, key, &st, "stop", "alias", "--force", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *i2 =
        tu_fogctl(&ctl, key, &st, "info", "alias", "--json", NULL);
    json_auto_t *vm2 = json_loads(i2, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(vm2, "desired_state")),
                        "stopped");
    _cleanup_free_ char *d = tu_fogctl(&ctl, key, &st, "delete", "alias", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *gone =
        tu_fogctl(&ctl, key, &st, "info", "alias", NULL);
    assert_int_equal(st, 1);
}

static void other_tenant_cannot_see_or_touch_the_vm(void **state)
{
    _cleanup_free_ char *ka = make_tenant("cli-bob");
    _cleanup_free_ char *kb = make_tenant("cli-carol");
    int st;
    _cleanup_free_ char *c =
        tu_fogctl(&ctl, ka, &st, "create", "secret", "--cpus", "1", "--memory",
                  "128M", "--disk", "1G", "--image", "tiny", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *l = tu_fogctl(&ctl, kb, &st, "list", "--all", NULL);
    assert_int_equal(st, 0);
    assert_null(strstr(l, "secret"));
    _cleanup_free_ char *d =
        tu_fogctl(&ctl, kb, &st, "dominfo", "secret", NULL);
    assert_int_equal(st, 1);
    _cleanup_free_ char *u =
        tu_fogctl(&ctl, kb, &st, "undefine", "secret", NULL);
    assert_int_equal(st, 1);
    _cleanup_free_ char *still =
        tu_fogctl(&ctl, ka, &st, "dominfo", "secret", NULL);
    assert_int_equal(st, 0);
    /* A tenant is not an admin. */
    _cleanup_free_ char *ac = tu_fogctl(&ctl, kb, &st, "account-create", "evil",
                                        "--role", "admin", NULL);
    assert_int_equal(st, 1);
}

static void admin_verbs_for_nodes_and_tokens(void **state)
{
    int st;
    _cleanup_free_ char *t =
        tu_fogctl(&ctl, ctl.admin_key, &st, "join-token", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *tok = tu_field(t, "token");
    assert_non_null(tok);
    assert_true(startswith(tok, "fogjoin."));
    _cleanup_free_ char *nl =
        tu_fogctl(&ctl, ctl.admin_key, &st, "nodelist", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(nl, "NAME"));
    _cleanup_free_ char *ni =
        tu_fogctl(&ctl, ctl.admin_key, &st, "nodeinfo", "nope", NULL);
    assert_int_equal(st, 1);
}

static void errors_have_their_exit_codes(void **state)
{
    int st;
    _cleanup_free_ char *o1 =
        tu_fogctl(&ctl, ctl.admin_key, &st, "no-such-verb", NULL);
    assert_int_equal(st, 2);
    _cleanup_free_ char *o2 =
        tu_fogctl(&ctl, ctl.admin_key, &st, "create", NULL);
    assert_int_equal(st, 2);
    _cleanup_free_ char *o3 =
        tu_fogctl(&ctl, ctl.admin_key, &st, "create", "x", "--cpus", "1",
                  "--memory", "lots", "--disk", "1G", "--image", "i", NULL);
    assert_int_equal(st, 2);
    _cleanup_free_ char *o4 =
        tu_fogctl(&ctl, ctl.admin_key, &st, "list", "--bogus", NULL);
    assert_int_equal(st, 2);
    /* A name the API refuses is an error from the server: exit 1. */
    _cleanup_free_ char *o5 = tu_fogctl(
        &ctl, ctl.admin_key, &st, "create", "Bad<Name>", "--cpus", "1",
        "--memory", "128M", "--disk", "1G", "--image", "tiny", NULL);
    assert_int_equal(st, 1);
    _cleanup_free_ char *o6 =
        tu_fogctl(&ctl, "fog_0000000000000000_00", &st, "list", NULL);
    assert_int_equal(st, 1);
    _cleanup_free_ char *h = tu_fogctl(&ctl, NULL, &st, "help", "create", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(h, "usage: fogctl create"));
}

/* What a virsh user types answers as virsh would. */
static void virsh_verbs_answer_as_virsh_does(void **state)
{
    _cleanup_free_ char *key = make_tenant("cli-virsh");
    int st;
    _cleanup_free_ char *c = tu_fogctl(
        &ctl, key, &st, "create", "vw", "--cpus", "1", "--memory", "128M",
        "--disk", "1G", "--image", "tiny", "--json", NULL);
    assert_int_equal(st, 0);
    json_auto_t *vm = json_loads(c, 0, NULL);
    assert_non_null(vm);
    const char *id = json_string_value(json_object_get(vm, "id"));
    _cleanup_free_ char *c2 = tu_fogctl(
        &ctl, key, &st, "create", "vs", "--cpus", "1", "--memory", "128M",
        "--disk", "1G", "--image", "tiny", "--stopped", NULL);
    assert_int_equal(st, 0);

    /* start on an active VM, shutdown/reboot/destroy on an inactive one */
    tu_run_with_stderr = true;
    _cleanup_free_ char *e1 = tu_fogctl(&ctl, key, &st, "start", "vw", NULL);
    assert_int_equal(st, 1);
    assert_non_null(strstr(e1, "is already active"));
    static const char *const down[] = { "shutdown", "reboot", "destroy" };
    for (size_t i = 0; i < ARRAY_SIZE(down); i++) {
        _cleanup_free_ char *e = tu_fogctl(&ctl, key, &st, down[i], "vs", NULL);
        assert_int_equal(st, 1);
        assert_non_null(strstr(e, "domain is not running"));
    }
    tu_run_with_stderr = false;

    /* domstate; the libvirt domain name fog-<id> names the VM */
    _cleanup_free_ char *ds = tu_fogctl(&ctl, key, &st, "domstate", "vs", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *vsinfo = tu_fogctl(&ctl, key, &st, "dominfo", "vs", NULL);
    _cleanup_free_ char *vsstate = tu_field(vsinfo, "state");
    _cleanup_free_ char *want = xasprintf("%s\n", vsstate);
    assert_string_equal(ds, want); /* one word, no table */
    _cleanup_free_ char *dom = xasprintf("fog-%s", id);
    _cleanup_free_ char *di = tu_fogctl(&ctl, key, &st, "dominfo", dom, NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *dn = tu_field(di, "name");
    assert_string_equal(dn, "vw");

    /* list filters */
    _cleanup_free_ char *l1 = tu_fogctl(&ctl, key, &st, "list", "--name", NULL);
    assert_int_equal(st, 0);
    assert_string_equal(l1, "vw\n");
    _cleanup_free_ char *l2 =
        tu_fogctl(&ctl, key, &st, "list", "--inactive", "--name", NULL);
    assert_string_equal(l2, "vs\n");
    _cleanup_free_ char *l3 =
        tu_fogctl(&ctl, key, &st, "list", "--all", "--uuid", NULL);
    assert_non_null(strstr(l3, id));
    assert_null(strstr(l3, "vw"));
    _cleanup_free_ char *l4 =
        tu_fogctl(&ctl, key, &st, "list", "--state-running", "--name", NULL);
    assert_int_equal(st, 0);
    assert_string_equal(l4, ""); /* no node: nothing runs yet */

    /* undefine deletes no disks unasked */
    tu_run_with_stderr = true;
    _cleanup_free_ char *u1 = tu_fogctl(&ctl, key, &st, "undefine", "vs", NULL);
    tu_run_with_stderr = false;
    assert_int_equal(st, 1);
    assert_non_null(strstr(u1, "--remove-all-storage"));
    _cleanup_free_ char *still = tu_fogctl(&ctl, key, &st, "domstate", "vs", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *u2 = tu_fogctl(&ctl, key, &st, "undefine", "vs",
                                        "--remove-all-storage", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *d = tu_fogctl(&ctl, key, &st, "delete", "vw", NULL);
    assert_int_equal(st, 0);

    /* help names the virsh verbs */
    _cleanup_free_ char *h = tu_fogctl(&ctl, NULL, &st, "help", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(h, "[virsh undefine --remove-all-storage]"));
    assert_non_null(strstr(h, "[virsh domstate]"));
}

/* setvcpus/setmem --config change a stopped VM (setmem's bare size is
 * KiB, as in virsh) and fail as virsh does on a running one. */
static void setvcpus_and_setmem_change_a_stopped_vm(void **state)
{
    _cleanup_free_ char *key = make_tenant("cli-setsize");
    int st;
    free(tu_fogctl(&ctl, key, &st, "create", "sz", "--cpus", "1", "--memory",
                   "128M", "--disk", "1G", "--image", "tiny", "--stopped",
                   NULL));
    assert_int_equal(st, 0);
    free(tu_fogctl(&ctl, key, &st, "create", "sr", "--cpus", "1", "--memory",
                   "128M", "--disk", "1G", "--image", "tiny", NULL));
    assert_int_equal(st, 0);

    free(tu_fogctl(&ctl, key, &st, "setvcpus", "sz", "2", "--config", NULL));
    assert_int_equal(st, 0);
    free(tu_fogctl(&ctl, key, &st, "setmem", "sz", "262144", "--config",
                   NULL));
    assert_int_equal(st, 0);
    long code;
    json_auto_t *vm = tu_api(&ctl, key, "GET", "/v1/vms/sz", NULL, &code);
    assert_int_equal(code, 200);
    assert_int_equal(json_int(vm, "vcpus", 0), 2);
    assert_int_equal(json_int(vm, "memory_mib", 0), 256);
    free(tu_fogctl(&ctl, key, &st, "setmem", "sz", "512M", NULL));
    assert_int_equal(st, 0);

    tu_run_with_stderr = true;
    _cleanup_free_ char *e1 = tu_fogctl(&ctl, key, &st, "setvcpus", "sr", "2",
                                        "--config", NULL);
    assert_int_equal(st, 1);
    _cleanup_free_ char *e2 = tu_fogctl(&ctl, key, &st, "setmem", "sz",
                                        "lots", NULL);
    tu_run_with_stderr = false;
    assert_non_null(strstr(e1, "stopped"));
    assert_int_equal(st, 2);
    assert_non_null(strstr(e2, "invalid size 'lots'"));
    json_auto_t *vm2 = tu_api(&ctl, key, "GET", "/v1/vms/sz", NULL, &code);
    assert_int_equal(json_int(vm2, "memory_mib", 0), 512);
    free(tu_fogctl(&ctl, key, &st, "delete", "sz", NULL));
    free(tu_fogctl(&ctl, key, &st, "delete", "sr", NULL));
}

/* Names are hostnames; vCPUs stay within what the pc machine takes. */
static void names_are_hostnames_and_vcpus_fit_the_machine(void **state)
{
    int st;
    tu_run_with_stderr = true;
    _cleanup_free_ char *o = tu_fogctl(
        &ctl, ctl.admin_key, &st, "create", "web-", "--cpus", "1", "--memory",
        "128M", "--disk", "1G", "--image", "tiny", NULL);
    assert_int_equal(st, 1);
    assert_non_null(strstr(o, "hostname"));
    _cleanup_free_ char *bin = tu_bin("fog-controller");
    _cleanup_free_ char *dir = tu_tempdir("gu-vcpus");
    _cleanup_free_ char *out = tu_run(
        (char *const[]){ bin, "serve", "--max-vcpus", "256", "--data-dir",
                         dir, NULL }, &st);
    tu_run_with_stderr = false;
    tu_rmrf(dir);
    assert_int_not_equal(st, 0);
    assert_non_null(strstr(out, "from 1 to 255"));
}

static void server_is_verified_against_the_ca(void **state)
{
    int st;
    /* Without our CA the system store does not know the server. */
    struct tu_ctl system_ca = ctl;
    system_ca.ca = (char *)"/etc/ssl/certs/ca-certificates.crt";
    _cleanup_free_ char *o = tu_fogctl(&system_ca, ctl.admin_key, &st, "list",
                                       NULL);
    assert_int_equal(st, 1);
}

static void login_saves_settings_privately(void **state)
{
    int st;
    _cleanup_free_ char *o =
        tu_fogctl(&ctl, NULL, &st, "login", "--url", ctl.url, "--key",
                  ctl.admin_key, "--ca", ctl.ca, NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *cfg = xasprintf("%s/.config/fogctl/config", home);
    struct stat sb;
    assert_int_equal(stat(cfg, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    /* No FOG_URL, FOG_CA or FOG_KEY: the saved settings serve. */
    _cleanup_free_ char *l = tu_fogctl(NULL, NULL, &st, "account-list", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(l, "admin"));
    /* A wrong key is refused at login and nothing is written. */
    _cleanup_free_ char *bad =
        tu_fogctl(&ctl, NULL, &st, "login", "--url", ctl.url, "--key",
                  "fog_1111111111111111_22", "--ca", ctl.ca, NULL);
    assert_int_equal(st, 1);
    _cleanup_free_ char *text = NULL;
    size_t len;
    assert_int_equal(file_read(cfg, 1 << 16, &text, &len), 0);
    assert_non_null(strstr(text, ctl.admin_key));
    unlink(cfg);
}

static void shell_reads_verbs_from_stdin(void **state)
{
    _cleanup_free_ char *dir = tu_tempdir("fogctl-shell");
    _cleanup_free_ char *in = xasprintf("%s/in", dir);
    const char *script = "account-list --json\ncreate 'sh vm'\nquit\n";
    assert_int_equal(file_write_atomic(in, script, strlen(script), 0600), 0);
    _cleanup_free_ char *fogctl = tu_bin("fogctl");
    _cleanup_free_ char *cmd = xasprintf("exec %s < %s", fogctl, in);
    char *argv[] = { "/bin/sh", "-c", cmd, NULL };
    setenv("FOG_URL", ctl.url, 1);
    setenv("FOG_CA", ctl.ca, 1);
    setenv("FOG_KEY", ctl.admin_key, 1);
    int st;
    _cleanup_free_ char *out = tu_run(argv, &st);
    json_error_t err;
    json_auto_t *list = json_loads(out, JSON_DISABLE_EOF_CHECK, &err);
    assert_non_null(list);
    assert_true(json_array_size(list) >= 1);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tenant_drives_a_vm_through_every_verb),
        cmocka_unit_test(incus_and_openstack_names_are_aliases),
        cmocka_unit_test(other_tenant_cannot_see_or_touch_the_vm),
        cmocka_unit_test(admin_verbs_for_nodes_and_tokens),
        cmocka_unit_test(errors_have_their_exit_codes),
        cmocka_unit_test(virsh_verbs_answer_as_virsh_does),
        cmocka_unit_test(setvcpus_and_setmem_change_a_stopped_vm),
        cmocka_unit_test(names_are_hostnames_and_vcpus_fit_the_machine),
        cmocka_unit_test(server_is_verified_against_the_ca),
        cmocka_unit_test(login_saves_settings_privately),
        cmocka_unit_test(shell_reads_verbs_from_stdin),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
