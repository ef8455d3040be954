/* An agent of an older contract than the controller's keeps working:
 * the node agent as it was built at the last commit of contract 1
 * (tools/old-agent.sh builds it from this checkout's git history) joins
 * today's controller on libvirt's test driver, runs a VM through create,
 * stop, start and delete, and posts statuses the controller takes; it
 * takes and restores full backups (it is never offered an incremental
 * one, nor a chain to restore). The controller records which contract
 * each node speaks (a current agent beside it says AGENT_CONTRACT),
 * refuses a version older than it serves with 426 and a misshapen one
 * with 400. Skipped (77) when the checkout has no git history holding
 * that commit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentproto.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct tu_ctl ctl;
static struct tu_agent old_agent, new_agent;
static char *old_bin, *tenant_key;
static const char *const serve_args[] = { "--heartbeat", "1", NULL };

static json_t *api(const char *key, const char *method, const char *path,
                   const char *body, long want)
{
    return tu_api_want(&ctl, key, method, path, body, want);
}

/* Milliseconds until GET path's string member `field` reads `want`, or
 * -1 after ms. */
static int64_t wait_field(const char *key, const char *path,
                          const char *field, const char *want, int64_t ms)
{
    int64_t t0 = mono_ms();
    while (mono_ms() - t0 < ms) {
        long st;
        json_auto_t *j = tu_api(&ctl, key, "GET", path, NULL, &st);
        if (st == 200 && streq(json_str(j, field) ? json_str(j, field) : "",
                               want))
            return mono_ms() - t0;
        usleep(100 * 1000);
    }
    return -1;
}

static int64_t node_contract(const char *name)
{
    _cleanup_free_ char *p = xasprintf("/v1/nodes/%s", name);
    json_auto_t *n = api(ctl.admin_key, "GET", p, NULL, 200);
    return json_int(n, "agent_contract", -1);
}

static int setup(void **state)
{
    (void)state;
    const char *o = getenv("O");
    _cleanup_free_ char *out = xasprintf("%s/old-agent", o && *o ? o : "build");
    char *argv[] = { "/bin/sh", "tools/old-agent.sh", out, NULL };
    int st;
    old_bin = tu_run(argv, &st);
    if (st == 77) {
        printf("no git history holding the previous contract's agent: "
               "skipped\n");
        exit(77);
    }
    assert_int_equal(st, 0);
    old_bin[strcspn(old_bin, "\n")] = '\0';
    assert_int_equal(access(old_bin, X_OK), 0);
    tu_ctl_start(&ctl, serve_args);
    tenant_key = tu_account(&ctl, "web", "tenant");
    tu_agent_start_bin(&old_agent, &ctl, "old1", 4, 4096, old_bin);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_agent_destroy(&old_agent);
    tu_agent_destroy(&new_agent);
    tu_ctl_destroy(&ctl);
    free(old_bin);
    free(tenant_key);
    return 0;
}

static void the_older_agent_runs_a_vm_through_its_life(void **state)
{
    (void)state;
    /* The only node: the VM goes to the older agent. */
    json_decref(tu_vm_post(&ctl, tenant_key, "web", 1, NULL, 201));
    int64_t ms = wait_field(tenant_key, "/v1/vms/web", "state", "running",
                            30000);
    printf("# running on the older agent after %lld ms\n", (long long)ms);
    assert_true(ms >= 0);
    json_auto_t *vm = api(tenant_key, "GET", "/v1/vms/web", NULL, 200);
    assert_string_equal(json_str(vm, "node_name") ? json_str(vm, "node_name") : "", "old1");
    json_decref(api(tenant_key, "POST", "/v1/vms/web/stop", NULL, 202));
    assert_true(wait_field(tenant_key, "/v1/vms/web", "state", "stopped",
                           30000) >= 0);
    json_decref(api(tenant_key, "POST", "/v1/vms/web/start", NULL, 202));
    assert_true(wait_field(tenant_key, "/v1/vms/web", "state", "running",
                           30000) >= 0);
    /* Statuses keep being taken: the node stays online. */
    assert_true(wait_field(ctl.admin_key, "/v1/nodes/old1", "state",
                           "online", 10000) >= 0);
    json_decref(api(tenant_key, "DELETE", "/v1/vms/web", NULL, 202));
    int64_t t0 = mono_ms();
    long st = 200;
    while (st != 404 && mono_ms() - t0 < 30000) {
        json_decref(tu_api(&ctl, tenant_key, "GET", "/v1/vms/web", NULL, &st));
        if (st != 404)
            usleep(100 * 1000);
    }
    assert_int_equal(st, 404);
}

/* GET path's member `field` once `state` reads `want` (NULL after ms);
 * caller frees. */
static json_t *wait_state(const char *path, const char *want, int64_t ms)
{
    int64_t t0 = mono_ms();
    while (mono_ms() - t0 < ms) {
        long st;
        json_t *j = tu_api(&ctl, tenant_key, "GET", path, NULL, &st);
        if (st == 200 && streq(json_str(j, "state") ? json_str(j, "state")
                                                    : "", want))
            return j;
        json_decref(j);
        usleep(200 * 1000);
    }
    return NULL;
}

/* The older agent backs a VM up and restores it; it is offered only full
 * backups (it cannot take incremental ones), and a chain of incremental
 * backups is never restored on it. */
static void the_older_agent_backs_up_and_restores_full_backups(void **state)
{
    (void)state;
    json_decref(tu_vm_post(&ctl, tenant_key, "bk", 1, NULL, 201));
    assert_true(wait_field(tenant_key, "/v1/vms/bk", "state", "running",
                           30000) >= 0);
    json_auto_t *b = api(tenant_key, "POST", "/v1/vms/bk/backups", NULL, 202);
    assert_string_equal(json_str(b, "mode"), "full");
    assert_non_null(strstr(json_str(b, "full_reason") ? json_str(b,
                           "full_reason") : "", "too old"));
    _cleanup_free_ char *path = xasprintf("/v1/vms/bk/backups/%s",
                                          json_str(b, "id"));
    json_auto_t *ready = wait_state(path, "ready", 60000);
    assert_non_null(ready);
    json_decref(api(tenant_key, "POST", "/v1/vms/bk/stop", NULL, 202));
    assert_true(wait_field(tenant_key, "/v1/vms/bk", "state", "stopped",
                           30000) >= 0);
    /* Were it the top of a chain, this agent could not restore it. */
    tu_sql(&ctl, "UPDATE vm_backups SET mode = 'incremental' WHERE id = '%s'",
           json_str(b, "id"));
    _cleanup_free_ char *body = xasprintf(
        "{\"backup\":\"%s\",\"node\":\"old1\"}", json_str(b, "id"));
    long st;
    json_auto_t *refused = tu_api(&ctl, tenant_key, "POST",
                                  "/v1/vms/bk/restore", body, &st);
    assert_int_equal(st, 409);
    assert_non_null(strstr(json_str(refused, "detail") ? json_str(refused,
                           "detail") : "", "too old"));
    tu_sql(&ctl, "UPDATE vm_backups SET mode = 'full' WHERE id = '%s'",
           json_str(b, "id"));
    json_decref(api(tenant_key, "POST", "/v1/vms/bk/restore", body, 202));
    /* Restored as it was left (stopped), and the placement restores no
     * more once the node reported it. */
    int64_t end = mono_ms() + 60000;
    char *rb = NULL;
    while (mono_ms() < end) {
        free(rb);
        rb = tu_sql_text(&ctl, "SELECT COALESCE(restore_backup, 'none') "
                         "FROM vms WHERE name = 'bk'");
        if (streq(rb, "none"))
            break;
        usleep(200 * 1000);
    }
    assert_string_equal(rb, "none");
    free(rb);
    assert_true(wait_field(tenant_key, "/v1/vms/bk", "state", "stopped",
                           30000) >= 0);
    json_decref(api(tenant_key, "POST", "/v1/vms/bk/start", NULL, 202));
    assert_true(wait_field(tenant_key, "/v1/vms/bk", "state", "running",
                           30000) >= 0);
}

static void each_node_shows_the_contract_its_agent_speaks(void **state)
{
    (void)state;
    tu_agent_start(&new_agent, &ctl, "new1", 4, 4096);
    assert_true(wait_field(ctl.admin_key, "/v1/nodes/new1", "state",
                           "online", 15000) >= 0);
    assert_int_equal(node_contract("old1"), 1);
    assert_int_equal(node_contract("new1"), AGENT_CONTRACT);
    int st;
    _cleanup_free_ char *info = tu_fogctl(&ctl, ctl.admin_key, &st,
                                          "nodeinfo", "old1", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *c = tu_field(info, "agent_contract");
    assert_non_null(c);
    assert_string_equal(c, "1");
}

/* POST /v1/agent/register naming contract `v` with an empty body: the
 * status; whether the answer names the header in *ret_names. */
static long register_with(const char *v, bool *ret_names)
{
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/register", ctl.url);
    _cleanup_free_ char *h = xasprintf("%s: %s", AGENT_CONTRACT_HEADER, v);
    struct tu_resp r;
    long st = tu_http("POST", url, NULL, ctl.ca, "{}", 2, NULL, h, &r);
    *ret_names = strstr(r.body, AGENT_CONTRACT_HEADER) != NULL;
    free(r.body);
    free(r.content_type);
    return st;
}

static void older_or_misshapen_contracts_are_refused(void **state)
{
    (void)state;
    bool names;
    assert_int_equal(register_with("0", &names), 426);
    assert_true(names);
    static const char *const bad[] = { "two", "-1", "1000", "2x", "1 2" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_int_equal(register_with(bad[i], &names), 400);
        assert_true(names);
    }
    /* Versions it serves get as far as the body (empty: refused for
     * that, not for the version). */
    for (int v = AGENT_CONTRACT_MIN; v <= AGENT_CONTRACT; v++) {
        char t[16];
        snprintf(t, sizeof(t), "%d", v);
        long st = register_with(t, &names);
        assert_true(st == 400 || st == 422);
        assert_false(names);
    }
    /* A node's call naming an old contract is refused before its
     * credential is even read. */
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/desired?wait=0",
                                         ctl.url);
    _cleanup_free_ char *h = xasprintf("%s: 0", AGENT_CONTRACT_HEADER);
    struct tu_resp r;
    assert_int_equal(tu_http("GET", url, "fogn_x.y", ctl.ca, NULL, 0, NULL,
                             h, &r), 426);
    free(r.body);
    free(r.content_type);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_older_agent_runs_a_vm_through_its_life),
        cmocka_unit_test(the_older_agent_backs_up_and_restores_full_backups),
        cmocka_unit_test(each_node_shows_the_contract_its_agent_speaks),
        cmocka_unit_test(older_or_misshapen_contracts_are_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
