/* Node lifecycle against a real controller over HTTPS: a VM on a node
 * that stopped reporting can be deleted (its name is free again and the
 * node's desired document no longer lists it), a node that is gone can be
 * force-removed (its VMs become `lost`, stay deletable and free their
 * names), and a drained node takes no new VMs until it is undrained. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <unistd.h>

/* A node is unreachable after three silent heartbeats of one second. */
static const char *const serve_args[] = { "--heartbeat", "1", NULL };
/* Generous: a loaded CI machine under ASan. */
#define WAIT_MS 60000

static struct tu_ctl ctl;
static char *tenant_key, *prov_key, *prov2_key;

static int setup(void **state)
{
    (void)state;
    tu_ctl_start(&ctl, serve_args);
    free(tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/accounts",
                      "{\"name\":\"lc-tenant\",\"role\":\"tenant\"}", 201,
                      NULL));
    free(tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/accounts",
                      "{\"name\":\"lc-prov\",\"role\":\"provider\"}", 201,
                      NULL));
    free(tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/accounts",
                      "{\"name\":\"lc-prov2\",\"role\":\"provider\"}", 201,
                      NULL));
    tenant_key = tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/keys",
                              "{\"account\":\"lc-tenant\"}", 201, "secret");
    prov_key = tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/keys",
                            "{\"account\":\"lc-prov\"}", 201, "secret");
    prov2_key = tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/keys",
                             "{\"account\":\"lc-prov2\"}", 201, "secret");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_ctl_destroy(&ctl);
    free(tenant_key);
    free(prov_key);
    free(prov2_key);
    return 0;
}

/* A node of provider lc-prov, approved by the admin; its credential. */
static char *node_join(const char *name)
{
    char *cred = NULL, *id = NULL;
    assert_int_equal(tu_node_join(&ctl, prov_key, name, NULL, &id, &cred),
                     201);
    _cleanup_free_ char *path = xasprintf("/v1/nodes/%s/approve", name);
    free(tu_api_field(&ctl, ctl.admin_key, "POST", path, NULL, 200, NULL));
    free(id);
    return cred;
}

static void node_heartbeat(const char *cred)
{
    long st;
    json_auto_t *j = tu_api(&ctl, cred, "POST", "/v1/agent/status", "{}", &st);
    assert_int_equal(st, 200);
}

/* String member `field` of GET path as key (NULL when absent or not 200);
 * caller frees. */
static char *get_field(const char *key, const char *path, const char *field)
{
    long st;
    json_auto_t *j = tu_api(&ctl, key, "GET", path, NULL, &st);
    const char *v = st == 200 ? json_str(j, field) : NULL;
    return v ? xstrdup(v) : NULL;
}

/* Poll until node `name` reads `state` (heartbeating it when `cred` is
 * given); the deadline is generous. */
static void node_wait_state(const char *name, const char *state,
                            const char *cred)
{
    _cleanup_free_ char *path = xasprintf("/v1/nodes/%s", name);
    int64_t until = mono_ms() + WAIT_MS;
    for (;;) {
        if (cred)
            node_heartbeat(cred);
        _cleanup_free_ char *s = get_field(ctl.admin_key, path, "state");
        if (s && streq(s, state))
            return;
        if (mono_ms() > until)
            fail_msg("node %s never became %s (is %s)", name, state,
                     s ? s : "?");
        usleep(200 * 1000);
    }
}

static char *vm_create(const char *name)
{
    _cleanup_free_ char *body = xasprintf(
        "{\"name\":\"%s\",\"vcpus\":1,\"memory_mib\":128,\"disk_gib\":1,"
        "\"image\":\"fog-tiny\",\"allow_tcg\":true}", name);
    return tu_api_field(&ctl, tenant_key, "POST", "/v1/vms", body, 201, "id");
}

static bool list_has(const char *key, const char *path, const char *id)
{
    long st;
    json_auto_t *j = tu_api(&ctl, key, "GET", path, NULL, &st);
    assert_int_equal(st, 200);
    return tu_find(json_object_get(j, "items"), "id", id) != NULL;
}

static bool desired_lists(const char *cred, const char *vm_id)
{
    long st;
    json_auto_t *d = tu_api(&ctl, cred, "GET", "/v1/agent/desired", NULL, &st);
    assert_int_equal(st, 200);
    return tu_find(json_object_get(d, "vms"), "id", vm_id) != NULL;
}

/* A new node `node` of lc-prov, heartbeating, and VM `vm` placed on it:
 * the VM's id and path, the node's credential. */
static void vm_on_new_node(const char *node, const char *vm, char **ret_id,
                           char **ret_path, char **ret_cred)
{
    *ret_cred = node_join(node);
    node_heartbeat(*ret_cred);
    *ret_id = vm_create(vm);
    *ret_path = xasprintf("/v1/vms/%s", *ret_id);
    _cleanup_free_ char *on = get_field(tenant_key, *ret_path, "node_name");
    assert_non_null(on);
    assert_string_equal(on, node);
}

static void test_delete_on_unreachable_node_completes(void **state)
{
    (void)state;
    _cleanup_free_ char *cred = NULL, *id = NULL, *vpath = NULL;
    vm_on_new_node("lc-dead", "lc-web", &id, &vpath, &cred);
    /* The node stops reporting. */
    node_wait_state("lc-dead", "unreachable", NULL);
    _cleanup_free_ char *st = tu_api_field(&ctl, tenant_key, "DELETE", vpath,
                                           NULL, 202, "state");
    assert_string_equal(st, "deleted");
    /* Gone from every list, its name free. */
    long code;
    json_auto_t *gone = tu_api(&ctl, tenant_key, "GET", vpath, NULL, &code);
    assert_int_equal(code, 404);
    assert_false(list_has(tenant_key, "/v1/vms", id));
    assert_false(list_has(ctl.admin_key, "/v1/vms", id));
    /* The event says what happened. */
    json_auto_t *ev = tu_api(&ctl, ctl.admin_key, "GET",
                             "/v1/events?limit=200", NULL, &code);
    bool said = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(ev, "items"), i, e)
        said = said || (streq(json_str(e, "target"), id) &&
                         json_str(e, "detail") &&
                         strstr(json_str(e, "detail"), "node unreachable"));
    assert_true(said);
    /* When the node returns, its desired document no longer lists the VM
     * (so its agent removes the domain). */
    assert_false(desired_lists(cred, id));
    node_heartbeat(cred);
    /* The name is free: a new VM of that name lands on the node again, and
     * deleting it while the node reports waits for the node. */
    _cleanup_free_ char *id2 = vm_create("lc-web");
    assert_string_not_equal(id, id2);
    assert_true(desired_lists(cred, id2));
    _cleanup_free_ char *vpath2 = xasprintf("/v1/vms/%s", id2);
    _cleanup_free_ char *st2 = tu_api_field(&ctl, tenant_key, "DELETE", vpath2,
                                            NULL, 202, "state");
    assert_string_equal(st2, "deleting");
    _cleanup_free_ char *done = xasprintf(
        "{\"vms\":[{\"id\":\"%s\",\"state\":\"deleted\"}]}", id2);
    json_auto_t *ok = tu_api(&ctl, cred, "POST", "/v1/agent/status", done,
                             &code);
    assert_int_equal(code, 200);
    assert_false(list_has(tenant_key, "/v1/vms", id2));
    /* With no VM left the node can be removed the plain way. */
    json_auto_t *rm = tu_api(&ctl, prov_key, "DELETE", "/v1/nodes/lc-dead",
                             NULL, &code);
    assert_int_equal(code, 204);
}

static void test_force_remove_of_dead_node_frees_names(void **state)
{
    (void)state;
    _cleanup_free_ char *cred = NULL, *id = NULL, *vpath = NULL;
    vm_on_new_node("lc-gone", "lc-db", &id, &vpath, &cred);
    long code;
    /* Plain removal refuses a node with VMs; forced, one that reports. */
    json_auto_t *busy = tu_api(&ctl, prov_key, "DELETE", "/v1/nodes/lc-gone",
                               NULL, &code);
    assert_int_equal(code, 409);
    json_auto_t *online = tu_api(&ctl, prov_key, "DELETE",
                                 "/v1/nodes/lc-gone?force=true", NULL, &code);
    assert_int_equal(code, 409);
    assert_string_equal(json_str(online, "field"), "force");
    json_auto_t *bad = tu_api(&ctl, prov_key, "DELETE",
                              "/v1/nodes/lc-gone?force=yes", NULL, &code);
    assert_int_equal(code, 400);
    /* Another provider cannot touch it. */
    json_auto_t *other = tu_api(&ctl, prov2_key, "DELETE",
                                "/v1/nodes/lc-gone?force=true", NULL, &code);
    assert_int_equal(code, 404);

    node_wait_state("lc-gone", "unreachable", NULL);
    /* The provider removes its dead node with fogctl. */
    int status;
    _cleanup_free_ char *out = tu_fogctl(&ctl, prov_key, &status,
                                         "node-remove", "lc-gone", "--force",
                                         NULL);
    assert_int_equal(status, 0);
    assert_non_null(strstr(out, "removed"));
    assert_false(list_has(ctl.admin_key, "/v1/nodes", "lc-gone"));
    /* Its VM is lost, with the reason, and an event on the tenant. */
    _cleanup_free_ char *st = get_field(tenant_key, vpath, "state");
    assert_string_equal(st, "lost");
    _cleanup_free_ char *why = get_field(tenant_key, vpath, "state_reason");
    assert_non_null(why);
    assert_non_null(strstr(why, "lc-gone"));
    json_auto_t *ev = tu_api(&ctl, tenant_key, "GET", "/v1/events?limit=200",
                             NULL, &code);
    bool said = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(ev, "items"), i, e)
        said = said || (streq(json_str(e, "action"), "vm.lost") &&
                        streq(json_str(e, "target"), id));
    assert_true(said);
    /* It cannot be started; it can be deleted, and its name is free. */
    _cleanup_free_ char *spath = xasprintf("/v1/vms/%s/start", id);
    json_auto_t *start = tu_api(&ctl, tenant_key, "POST", spath, NULL, &code);
    assert_int_equal(code, 409);
    _cleanup_free_ char *del = tu_api_field(&ctl, tenant_key, "DELETE", vpath,
                                            NULL, 202, "state");
    assert_string_equal(del, "deleted");
    assert_false(list_has(tenant_key, "/v1/vms", id));
    _cleanup_free_ char *again = vm_create("lc-db");
    assert_string_not_equal(again, id);
}

static void test_drained_node_takes_no_new_vms(void **state)
{
    (void)state;
    _cleanup_free_ char *cred = node_join("lc-busy");
    node_heartbeat(cred);
    int status;
    /* Only its own provider (or the admin) drains it. */
    _cleanup_free_ char *no = tu_fogctl(&ctl, prov2_key, &status, "node-drain",
                                        "lc-busy", NULL);
    assert_int_not_equal(status, 0);
    _cleanup_free_ char *out = tu_fogctl(&ctl, prov_key, &status, "node-drain",
                                         "lc-busy", NULL);
    assert_int_equal(status, 0);
    _cleanup_free_ char *info = tu_fogctl(&ctl, prov_key, &status, "nodeinfo",
                                          "lc-busy", NULL);
    assert_int_equal(status, 0);
    _cleanup_free_ char *drained = tu_field(info, "drained");
    assert_non_null(drained);
    assert_string_equal(drained, "yes");
    _cleanup_free_ char *list = tu_fogctl(&ctl, ctl.admin_key, &status,
                                          "nodelist", NULL);
    assert_int_equal(status, 0);
    assert_non_null(strstr(list, "DRAINED"));

    /* A new VM waits, saying why, while the node reports and has room. */
    _cleanup_free_ char *id = vm_create("lc-app");
    _cleanup_free_ char *vpath = xasprintf("/v1/vms/%s", id);
    for (int i = 0; i < 3; i++) { /* several scheduler passes */
        node_heartbeat(cred);
        usleep(1100 * 1000);
    }
    _cleanup_free_ char *st = get_field(tenant_key, vpath, "state");
    assert_string_equal(st, "pending");
    assert_null(get_field(tenant_key, vpath, "node_id"));
    _cleanup_free_ char *why = get_field(tenant_key, vpath, "state_reason");
    assert_non_null(why);

    /* Undrained, it takes the VM. */
    _cleanup_free_ char *un = tu_fogctl(&ctl, prov_key, &status,
                                        "node-undrain", "lc-busy", NULL);
    assert_int_equal(status, 0);
    int64_t until = mono_ms() + WAIT_MS;
    for (;;) {
        node_heartbeat(cred);
        _cleanup_free_ char *n = get_field(tenant_key, vpath, "node_name");
        if (n && streq(n, "lc-busy"))
            break;
        if (mono_ms() > until)
            fail_msg("the VM never landed on the undrained node");
        usleep(200 * 1000);
    }
    _cleanup_free_ char *info2 = tu_fogctl(&ctl, prov_key, &status, "nodeinfo",
                                           "lc-busy", NULL);
    _cleanup_free_ char *d2 = tu_field(info2, "drained");
    assert_string_equal(d2, "no");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_delete_on_unreachable_node_completes, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_force_remove_of_dead_node_frees_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drained_node_takes_no_new_vms,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
