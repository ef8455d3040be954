/* Authorisation matrix: every route x every role x own/foreign object,
 * against the real controller over HTTPS. Removing any role or ownership
 * check makes some row answer differently and the test fail. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <stdio.h>

enum who { ADMIN, TA, TB, PA, PB, NODE, NONE, WHO_MAX };
static const char *who_name[WHO_MAX] = { "admin", "tenant-a", "tenant-b",
                                         "provider-a", "provider-b", "node",
                                         "anonymous" };

static struct tu_ctl ctl;
static char *keys[WHO_MAX];
static char *acct_a, *acct_b, *vm_a, *node_id, *key_a_id, *node_b_cred;
static char *net_a, *port_a;

static json_t *call(enum who w, const char *method, const char *path,
                    const char *body, long *ret_status)
{
    return tu_api(&ctl, keys[w], method, path, body, ret_status);
}

static char *must(enum who w, const char *method, const char *path,
                  const char *body, long want, const char *field)
{
    return tu_api_field(&ctl, keys[w], method, path, body, want, field);
}

/* Placeholders in paths: replaced before each call. */
static char *expand(const char *tmpl)
{
    struct { const char *k; const char *v; } subst[] = {
        { "{vmA}", vm_a }, { "{acctA}", acct_a }, { "{acctB}", acct_b },
        { "{node}", node_id }, { "{keyA}", key_a_id }, { "{netA}", net_a },
        { "{portA}", port_a },
    };
    char *s = xstrdup(tmpl);
    for (size_t i = 0; i < ARRAY_SIZE(subst); i++) {
        char *p = strstr(s, subst[i].k);
        if (!p)
            continue;
        *p = '\0';
        char *n = xasprintf("%s%s%s", s, subst[i].v, p + strlen(subst[i].k));
        free(s);
        s = n;
    }
    return s;
}

struct row {
    const char *method;
    const char *path;
    const char *body;
    long want[WHO_MAX]; /* admin, TA, TB, PA, PB, NODE, NONE; 0 = skip */
};

/* Read-only and refusal rows: safe to run for every role in any order. */
static const struct row matrix[] = {
    { "GET", "/healthz", NULL, { 200, 200, 200, 200, 200, 200, 200 } },
    { "GET", "/v1/ca", NULL, { 200, 200, 200, 200, 200, 200, 200 } },
    { "GET", "/metrics", NULL, { 200, 403, 403, 403, 403, 403, 401 } },
    { "GET", "/v1/accounts", NULL, { 200, 200, 200, 200, 200, 403, 401 } },
    { "GET", "/v1/accounts/{acctA}", NULL, { 200, 200, 404, 404, 404, 403, 401 } },
    { "POST", "/v1/accounts", "{\"name\":\"x\",\"role\":\"tenant\"}",
      { 0, 403, 403, 403, 403, 403, 401 } },
    { "GET", "/v1/keys", NULL, { 200, 200, 200, 200, 200, 403, 401 } },
    { "POST", "/v1/keys", "{\"account\":\"{acctA}\"}",
      { 0, 0, 404, 404, 404, 403, 401 } },
    { "DELETE", "/v1/keys/{keyA}", NULL, { 0, 0, 404, 404, 404, 403, 401 } },
    { "GET", "/v1/vms", NULL, { 200, 200, 200, 403, 403, 403, 401 } },
    { "POST", "/v1/vms", "{}", { 400, 400, 400, 403, 403, 403, 401 } },
    { "GET", "/v1/vms/{vmA}", NULL, { 200, 200, 404, 403, 403, 403, 401 } },
    { "GET", "/v1/vms/{vmA}/console", NULL, { 200, 200, 404, 403, 403, 403, 401 } },
    { "DELETE", "/v1/vms/{vmA}", NULL, { 0, 0, 404, 403, 403, 403, 401 } },
    { "POST", "/v1/vms/{vmA}/start", NULL, { 0, 0, 404, 403, 403, 403, 401 } },
    { "POST", "/v1/vms/{vmA}/stop", NULL, { 0, 0, 404, 403, 403, 403, 401 } },
    { "POST", "/v1/vms/{vmA}/reboot", NULL, { 0, 0, 404, 403, 403, 403, 401 } },
    { "POST", "/v1/vms/{vmA}/destroy", NULL, { 0, 0, 404, 403, 403, 403, 401 } },
    { "POST", "/v1/vms/{vmA}/resize", "{\"disk_gib\":3}",
      { 0, 0, 404, 403, 403, 403, 401 } },
    { "POST", "/v1/join-tokens", "{}", { 201, 403, 403, 201, 201, 403, 401 } },
    { "GET", "/v1/nodes", NULL, { 200, 403, 403, 200, 200, 403, 401 } },
    { "GET", "/v1/nodes/{node}", NULL, { 200, 403, 403, 200, 404, 403, 401 } },
    { "POST", "/v1/nodes/{node}/approve", NULL, { 0, 403, 403, 403, 403, 403, 401 } },
    { "DELETE", "/v1/nodes/{node}", NULL, { 0, 403, 403, 0, 404, 403, 401 } },
    { "GET", "/v1/nodes/{node}/policy", NULL,
      { 200, 403, 403, 200, 404, 403, 401 } },
    { "PUT", "/v1/nodes/{node}/policy", "{}",
      { 200, 403, 403, 200, 404, 403, 401 } },
    { "GET", "/v1/events", NULL, { 200, 200, 200, 200, 200, 403, 401 } },
    { "GET", "/v1/networks", NULL, { 200, 200, 200, 403, 403, 403, 401 } },
    { "POST", "/v1/networks", "{\"name\":\"n\",\"cidr\":\"10.9.0.0/24\"}",
      { 0, 0, 0, 403, 403, 403, 401 } },
    { "GET", "/v1/networks/{netA}", NULL, { 200, 200, 404, 403, 403, 403, 401 } },
    { "DELETE", "/v1/networks/{netA}", NULL, { 409, 409, 404, 403, 403, 403, 401 } },
    { "GET", "/v1/vms/{vmA}/ports", NULL, { 200, 200, 404, 403, 403, 403, 401 } },
    { "POST", "/v1/vms/{vmA}/ports", "{\"proto\":\"udp\",\"vm_port\":53}",
      { 0, 0, 404, 403, 403, 403, 401 } },
    { "DELETE", "/v1/vms/{vmA}/ports/{portA}", NULL,
      { 0, 0, 404, 403, 403, 403, 401 } },
    { "GET", "/v1/vms/{vmA}/health-checks", NULL,
      { 200, 200, 404, 403, 403, 403, 401 } },
    { "POST", "/v1/vms/{vmA}/health-checks", "{\"type\":\"tcp\",\"port\":22}",
      { 0, 0, 404, 403, 403, 403, 401 } },
    { "DELETE", "/v1/vms/{vmA}/health-checks/00000000-0000-4000-8000-000000000001",
      NULL, { 404, 404, 404, 403, 403, 403, 401 } },
    { "GET", "/v1/agent/desired?wait=0", NULL, { 403, 403, 403, 403, 403, 200, 401 } },
    { "POST", "/v1/agent/status", "{\"vms\":[]}",
      { 403, 403, 403, 403, 403, 200, 401 } },
    { "POST", "/v1/agent/register",
      "{\"token\":\"fogjoin.00000000000000000000000000000000."
      "0000000000000000000000000000000000000000000000000000000000000000\","
      "\"name\":\"n\",\"inventory\":{\"vcpus\":1,\"memory_mib\":64,"
      "\"disk_gib\":1,\"kvm\":false}}",
      { 401, 401, 401, 401, 401, 401, 401 } },
};

static int setup(void **state)
{
    tu_ctl_start(&ctl, NULL);
    keys[ADMIN] = xstrdup(ctl.admin_key);
    acct_a = must(ADMIN, "POST", "/v1/accounts",
                  "{\"name\":\"tenant-a\",\"role\":\"tenant\"}", 201, "id");
    acct_b = must(ADMIN, "POST", "/v1/accounts",
                  "{\"name\":\"tenant-b\",\"role\":\"tenant\"}", 201, "id");
    free(must(ADMIN, "POST", "/v1/accounts",
              "{\"name\":\"prov-a\",\"role\":\"provider\"}", 201, "id"));
    free(must(ADMIN, "POST", "/v1/accounts",
              "{\"name\":\"prov-b\",\"role\":\"provider\"}", 201, "id"));
    keys[TA] = must(ADMIN, "POST", "/v1/keys", "{\"account\":\"tenant-a\"}", 201, "secret");
    keys[TB] = must(ADMIN, "POST", "/v1/keys", "{\"account\":\"tenant-b\"}", 201, "secret");
    keys[PA] = must(ADMIN, "POST", "/v1/keys", "{\"account\":\"prov-a\"}", 201, "secret");
    keys[PB] = must(ADMIN, "POST", "/v1/keys", "{\"account\":\"prov-b\"}", 201, "secret");
    key_a_id = must(TA, "POST", "/v1/keys", "{\"description\":\"spare\"}", 201, "id");

    /* Provider A's node joins with A's token; provider B's with B's. */
    const char *inv = "\"inventory\":{\"vcpus\":8,\"memory_mib\":8192,"
                      "\"disk_gib\":100,\"kvm\":false}";
    _cleanup_free_ char *tok = must(PA, "POST", "/v1/join-tokens", "{}", 201, "token");
    _cleanup_free_ char *reg = xasprintf("{\"token\":\"%s\",\"name\":\"node-a\",%s}",
                                         tok, inv);
    long st;
    json_auto_t *j = call(NONE, "POST", "/v1/agent/register", reg, &st);
    assert_int_equal(st, 201);
    node_id = xstrdup(json_str(j, "node_id"));
    keys[NODE] = xstrdup(json_str(j, "credential"));
    _cleanup_free_ char *tok_b = must(PB, "POST", "/v1/join-tokens", "{}", 201, "token");
    _cleanup_free_ char *reg_b = xasprintf(
        "{\"token\":\"%s\",\"name\":\"node-b\",%s}", tok_b, inv);
    json_auto_t *jb = call(NONE, "POST", "/v1/agent/register", reg_b, &st);
    assert_int_equal(st, 201);
    node_b_cred = xstrdup(json_str(jb, "credential"));

    /* A join token is single use. */
    json_auto_t *again = call(NONE, "POST", "/v1/agent/register", reg, &st);
    assert_int_equal(st, 401);

    free(must(ADMIN, "POST", "/v1/nodes/node-a/approve", NULL, 200, NULL));
    vm_a = must(TA, "POST", "/v1/vms",
                "{\"name\":\"web\",\"vcpus\":1,\"memory_mib\":128,"
                "\"disk_gib\":1,\"image\":\"fog-tiny\",\"allow_tcg\":true,"
                "\"ports\":[{\"proto\":\"tcp\",\"vm_port\":80}]}",
                201, "id");
    net_a = must(TA, "GET", "/v1/networks/default", NULL, 200, "id");
    long st2;
    json_auto_t *ports = call(TA, "GET", "/v1/vms/web/ports", NULL, &st2);
    assert_int_equal(json_array_size(json_object_get(ports, "items")), 1);
    port_a = xstrdup(json_str(json_array_get(json_object_get(ports, "items"), 0), "id"));
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    for (int i = 0; i < WHO_MAX; i++)
        free(keys[i]);
    free(acct_a);
    free(acct_b);
    free(vm_a);
    free(node_id);
    free(key_a_id);
    free(node_b_cred);
    free(net_a);
    free(port_a);
    return 0;
}

static void every_route_answers_each_role_as_the_matrix_says(void **state)
{
    int bad = 0;
    for (size_t i = 0; i < ARRAY_SIZE(matrix); i++) {
        const struct row *m = &matrix[i];
        _cleanup_free_ char *path = expand(m->path);
        _cleanup_free_ char *body = m->body ? expand(m->body) : NULL;
        for (int w = 0; w < WHO_MAX; w++) {
            if (!m->want[w])
                continue;
            long st;
            json_auto_t *j = call(w, m->method, path, body, &st);
            if (st != m->want[w]) {
                fprintf(stderr, "MISMATCH %s %s as %s: got %ld, want %ld\n",
                        m->method, m->path, who_name[w], st, m->want[w]);
                bad++;
            }
            if (st >= 400 && !json_str(j, "type"))
                fprintf(stderr, "error without problem type: %s %s\n",
                        m->method, m->path), bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static void foreign_objects_never_appear_in_lists(void **state)
{
    long st;
    json_auto_t *b = call(TB, "GET", "/v1/vms", NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(json_object_get(b, "items")), 0);
    json_auto_t *a = call(TA, "GET", "/v1/vms", NULL, &st);
    assert_int_equal(json_array_size(json_object_get(a, "items")), 1);
    json_auto_t *ad = call(ADMIN, "GET", "/v1/vms", NULL, &st);
    assert_int_equal(json_array_size(json_object_get(ad, "items")), 1);

    json_auto_t *acc = call(TB, "GET", "/v1/accounts", NULL, &st);
    assert_int_equal(json_array_size(json_object_get(acc, "items")), 1);
    assert_string_equal(json_str(json_array_get(json_object_get(acc, "items"), 0), "id"),
                        acct_b);

    json_auto_t *nb = call(PB, "GET", "/v1/nodes", NULL, &st);
    json_t *items = json_object_get(nb, "items");
    for (size_t i = 0; i < json_array_size(items); i++)
        assert_string_not_equal(json_str(json_array_get(items, i), "id"), node_id);

    json_auto_t *ev = call(TB, "GET", "/v1/events?limit=500", NULL, &st);
    json_t *evs = json_object_get(ev, "items");
    for (size_t i = 0; i < json_array_size(evs); i++) {
        const char *acct = json_str(json_array_get(evs, i), "account_id");
        assert_true(acct && strcmp(acct, acct_b) == 0);
    }
    json_auto_t *keys_b = call(TB, "GET", "/v1/keys", NULL, &st);
    json_t *ks = json_object_get(keys_b, "items");
    for (size_t i = 0; i < json_array_size(ks); i++)
        assert_string_equal(json_str(json_array_get(ks, i), "account_id"), acct_b);
}

static void a_foreign_tenant_cannot_change_a_vm(void **state)
{
    long st;
    /* After every refused mutation above, tenant A's VM is as it was. */
    json_auto_t *v = call(TA, "GET", "/v1/vms/web", NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_str(v, "desired_state"), "running");
    assert_int_equal(json_int(v, "disk_gib", 0), 1);
    assert_int_equal(json_int(v, "reboot_gen", -1), 0);
    /* Tenant B may reuse the name: names are per owner. */
    _cleanup_free_ char *idb = must(TB, "POST", "/v1/vms",
                                    "{\"name\":\"web\",\"vcpus\":1,"
                                    "\"memory_mib\":128,\"disk_gib\":1,"
                                    "\"image\":\"fog-tiny\"}", 201, "id");
    assert_string_not_equal(idb, vm_a);
    /* ... and by name each sees its own. */
    json_auto_t *vb = call(TB, "GET", "/v1/vms/web", NULL, &st);
    assert_string_equal(json_str(vb, "id"), idb);
}

static void owners_can_act_on_their_own_objects(void **state)
{
    long st;
    json_auto_t *r1 = call(TA, "POST", "/v1/vms/web/reboot", NULL, &st);
    assert_int_equal(st, 202);
    assert_int_equal(json_int(r1, "reboot_gen", 0), 1);
    json_auto_t *r2 = call(TA, "POST", "/v1/vms/web/resize", "{\"disk_gib\":2}", &st);
    assert_int_equal(st, 202);
    json_auto_t *r3 = call(TA, "POST", "/v1/vms/web/resize", "{\"disk_gib\":1}", &st);
    assert_int_equal(st, 400); /* disks only grow */
    json_auto_t *r4 = call(TA, "POST", "/v1/vms/web/resize", "{\"vcpus\":2}", &st);
    assert_int_equal(st, 409); /* not while running */
    _cleanup_free_ char *kp = xasprintf("/v1/keys/%s", key_a_id);
    json_auto_t *r6 = call(TA, "DELETE", kp, NULL, &st);
    assert_int_equal(st, 204);
    /* A revoked key stops working at once. */
    json_auto_t *r7 = call(ADMIN, "DELETE", kp, NULL, &st);
    assert_int_equal(st, 404);
    /* Provider B cannot remove provider A's node. */
    _cleanup_free_ char *np = xasprintf("/v1/nodes/%s", node_id);
    json_auto_t *r8 = call(PB, "DELETE", np, NULL, &st);
    assert_int_equal(st, 404);
}

static void a_node_may_not_report_on_another_nodes_vm(void **state)
{
    long st;
    /* Node B (unapproved, so it can host nothing) reports on tenant A's
     * VM: refused, whatever node the VM is on. */
    _cleanup_free_ char *body = xasprintf(
        "{\"vms\":[{\"id\":\"%s\",\"state\":\"crashed\"}]}", vm_a);
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/status", ctl.url);
    st = tu_http("POST", url, node_b_cred, ctl.ca, body, strlen(body), NULL,
                 NULL, NULL);
    assert_int_equal(st, 403);
    /* The refusal is in the event log. */
    json_auto_t *ev = call(ADMIN, "GET", "/v1/events?limit=500", NULL, &st);
    json_t *items = json_object_get(ev, "items");
    bool found = false;
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *e = json_array_get(items, i);
        if (json_int(e, "status", 0) == 403 &&
            strstr(json_str(e, "action"), "/v1/agent/status") &&
            json_str(e, "target") && strcmp(json_str(e, "target"), vm_a) == 0)
            found = true;
    }
    assert_true(found);
    /* And the VM's state did not move. */
    json_auto_t *v = call(TA, "GET", "/v1/vms/web", NULL, &st);
    assert_string_not_equal(json_str(v, "state"), "crashed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_route_answers_each_role_as_the_matrix_says),
        cmocka_unit_test(foreign_objects_never_appear_in_lists),
        cmocka_unit_test(a_foreign_tenant_cannot_change_a_vm),
        cmocka_unit_test(owners_can_act_on_their_own_objects),
        cmocka_unit_test(a_node_may_not_report_on_another_nodes_vm),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
