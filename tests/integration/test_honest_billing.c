/* A provider's node that lies about usage, against the real controller
 * (accrual every second, heartbeat every second): this test speaks the
 * agent protocol itself. A tenant is billed only for seconds where it
 * wanted the VM running, the node reported it running and the node was
 * heartbeating: "running" reports after a stop, a destroy or a delete,
 * claims far in the future or before the VM existed, and claims for a VM
 * placed on another node are never billed, and what was capped is counted
 * against the node. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

static const char *const ctl_args[] = { "--accrual-interval", "1",
                                        "--heartbeat", "1", "--longpoll", "1",
                                        NULL };
/* A report may join the last one this many seconds later (3 heartbeats). */
#define MAX_GAP_S 3

static struct tu_ctl ctl;
static char *tenant_key, *rig1_cred, *rig2_cred;

static json_t *api(const char *key, const char *method, const char *path,
                   const char *body, long want)
{
    long st;
    json_t *j = tu_api(&ctl, key, method, path, body, &st);
    if (st != want)
        fail_msg("%s %s: status %ld, want %ld: %s", method, path, st, want,
                 json_str(j, "detail") ? json_str(j, "detail") : "");
    return j;
}

/* ---- the lying node ---- */

/* vm id -> [last seq, end of the last claim] */
static json_t *claims;
/* VM ids the node reports running whatever the controller wants. */
static json_t *liar;

/* One round: read the desired state; report running (with a sample up to
 * now) what should run and every VM in `liar`, the rest stopped. */
static void agent_tick(void)
{
    json_auto_t *desired = api(rig1_cred, "GET", "/v1/agent/desired?wait=0",
                               NULL, 200);
    json_auto_t *vms = json_array(), *samples = json_array();
    int64_t now = now_s();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(desired, "vms"), i, v) {
        const char *id = json_str(v, "id");
        bool run = json_object_get(liar, id) ||
                   (streq(json_str(v, "power"), "running") &&
                    !json_bool(v, "deleted", false));
        json_array_append_new(vms, json_pack("{s:s, s:s}", "id", id, "state",
                                             run ? "running" : "stopped"));
        json_t *c = json_object_get(claims, id);
        if (!run)
            continue;
        if (!c) {
            json_object_set_new(claims, id, json_pack("[i, I]", 0,
                                                      (json_int_t)now));
            continue;
        }
        int64_t seq = json_integer_value(json_array_get(c, 0)) + 1;
        int64_t from = json_integer_value(json_array_get(c, 1));
        if (now <= from)
            continue;
        json_array_append_new(samples, json_pack("{s:s, s:I, s:I, s:I}", "vm",
                                                 id, "seq", (json_int_t)seq,
                                                 "start", (json_int_t)from,
                                                 "end", (json_int_t)now));
        json_array_set_new(c, 0, json_integer((json_int_t)seq));
        json_array_set_new(c, 1, json_integer((json_int_t)now));
    }
    json_auto_t *body = json_pack("{s:O, s:O}", "vms", vms, "samples", samples);
    _cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
    json_decref(api(rig1_cred, "POST", "/v1/agent/status", text, 200));
}

/* One extra sample of VM id over [start, end) with the next sequence
 * number, sent by node `cred` expecting `want`. */
static void claim(const char *cred, const char *id, int64_t start,
                  int64_t end, long want)
{
    json_t *c = json_object_get(claims, id);
    int64_t seq = json_integer_value(json_array_get(c, 0)) + 1;
    _cleanup_free_ char *body = xasprintf(
        "{\"samples\":[{\"vm\":\"%s\",\"seq\":%lld,\"start\":%lld,\"end\":"
        "%lld}]}", id, (long long)seq, (long long)start, (long long)end);
    json_decref(api(cred, "POST", "/v1/agent/status", body, want));
    if (want == 200)
        json_array_set_new(c, 0, json_integer((json_int_t)seq));
}

static void nap_ms(int ms) { usleep((useconds_t)ms * 1000); }

/* Tick for `seconds` of the controller's clock. */
static void tick_for(int64_t seconds)
{
    int64_t end = now_s() + seconds;
    while (now_s() < end) {
        agent_tick();
        nap_ms(250);
    }
}

/* The tenant's usage row of VM `name`. */
static json_t *usage_of(const char *name)
{
    _cleanup_free_ char *p = xasprintf("/v1/usage?vm=%s", name);
    json_auto_t *u = api(tenant_key, "GET", p, NULL, 200);
    json_t *row = json_array_get(json_object_get(u, "items"), 0);
    if (!row)
        fail_msg("no usage for VM %s", name);
    return json_incref(row);
}

static int64_t usage_int(const char *name, const char *field)
{
    json_auto_t *u = usage_of(name);
    return json_int(u, field, -1);
}

/* Create a running VM and tick until the controller has billed some of
 * its running time; returns its id (caller frees). */
static char *vm_running(const char *name)
{
    _cleanup_free_ char *b = xasprintf(
        "{\"name\":\"%s\",\"vcpus\":1,\"memory_mib\":128,\"disk_gib\":1,"
        "\"image\":\"tiny\",\"allow_tcg\":true}", name);
    json_auto_t *v = api(tenant_key, "POST", "/v1/vms", b, 201);
    char *id = xstrdup(json_str(v, "id"));
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s", name);
    int64_t deadline = mono_ms() + 60000;
    for (;;) {
        agent_tick();
        json_auto_t *g = api(tenant_key, "GET", p, NULL, 200);
        if (json_str(g, "node_id") && json_object_get(claims, id) &&
            usage_int(name, "billable_seconds_total") > 0)
            break;
        if (mono_ms() > deadline)
            fail_msg("VM %s never ran", name);
        nap_ms(250);
    }
    return id;
}

/* ---- fixtures ---- */


static int setup(void **state)
{
    (void)state;
    tu_ctl_start(&ctl, ctl_args);
    claims = json_object();
    liar = json_object();
    tenant_key = tu_account(&ctl, "acme", "tenant");
    rig1_cred = tu_node_register(&ctl, "ho-rig1", NULL);
    rig2_cred = tu_node_register(&ctl, "ho-rig2", NULL);
    agent_tick(); /* rig1 heartbeats; rig2 never does, so VMs land on rig1 */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_ctl_destroy(&ctl);
    json_decref(claims);
    json_decref(liar);
    free(tenant_key);
    free(rig1_cred);
    free(rig2_cred);
    return 0;
}

/* ---- tests ---- */

static void running_claims_after_stop_destroy_or_delete_are_not_billed(void **state)
{
    (void)state;
    static const char *const names[] = { "ho-stop", "ho-destroy", "ho-delete",
                                         "ho-future", "ho-honest" };
    static const char *const verb[] = { "stop", "destroy", NULL, "stop", NULL };
    char *ids[ARRAY_SIZE(names)];
    int64_t before[ARRAY_SIZE(names)];
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        ids[i] = vm_running(names[i]);
    /* ho-future: the node claims the next hour in advance. */
    int64_t now = now_s();
    claim(rig1_cred, ids[3], now, now + 3600, 200);
    /* The tenant stops, destroys and deletes; the node keeps saying
     * "running" for all of them and claiming every second. */
    for (size_t i = 0; i < 4; i++) {
        json_object_set_new(liar, ids[i], json_true());
        _cleanup_free_ char *p = verb[i]
                                     ? xasprintf("/v1/vms/%s/%s", names[i],
                                                 verb[i])
                                     : xasprintf("/v1/vms/%s", names[i]);
        json_decref(api(tenant_key, verb[i] ? "POST" : "DELETE", p,
                        verb[i] ? "{}" : NULL, 202));
    }
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        before[i] = usage_int(names[i], "billable_seconds_total");
    tick_for(4 * MAX_GAP_S);
    for (size_t i = 0; i < 4; i++) {
        /* Claims the node had not sent yet for time up to the request
         * (at most the allowed silence) are all that may still count. */
        int64_t after = usage_int(names[i], "billable_seconds_total");
        if (after > before[i] + MAX_GAP_S + 1)
            fail_msg("%s: billed %lld s after the tenant's request, while "
                     "the node lied for %d s", names[i],
                     (long long)(after - before[i]), 4 * MAX_GAP_S);
        /* The lie is counted against the node. */
        assert_true(usage_int(names[i], "capped_seconds_total") >=
                    4 * MAX_GAP_S - MAX_GAP_S - 1);
    }
    /* ho-future: the hour claimed in advance is capped, not waiting to be
     * billed. */
    assert_true(usage_int(names[3], "capped_seconds_total") >= 3600 - 60);
    /* The honest VM kept being billed over the same seconds. */
    assert_true(usage_int(names[4], "billable_seconds_total") >
                before[4] + MAX_GAP_S + 1);
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        free(ids[i]);
}

static void claims_outside_the_vm_or_the_node_are_not_billed(void **state)
{
    (void)state;
    _cleanup_free_ char *id = vm_running("ho-life");
    int64_t capped0 = usage_int("ho-life", "capped_seconds_total");
    int64_t bill0 = usage_int("ho-life", "billable_seconds_total");
    /* A day before the VM existed. */
    int64_t now = now_s();
    claim(rig1_cred, id, now - 86400 - 3600, now - 86400, 200);
    /* Another node speaks of this VM: refused, nothing counted. */
    _cleanup_free_ char *body = xasprintf(
        "{\"vms\":[{\"id\":\"%s\",\"state\":\"running\"}]}", id);
    json_decref(api(rig2_cred, "POST", "/v1/agent/status", body, 403));
    _cleanup_free_ char *sbody = xasprintf(
        "{\"samples\":[{\"vm\":\"%s\",\"seq\":99999,\"start\":%lld,\"end\":"
        "%lld}]}", id, (long long)now - 60, (long long)now);
    json_decref(api(rig2_cred, "POST", "/v1/agent/status", sbody, 403));
    /* A claim that ends far in the future. */
    claim(rig1_cred, id, now + 86400, now + 2 * 86400, 200);
    agent_tick();
    int64_t capped = usage_int("ho-life", "capped_seconds_total") - capped0;
    assert_true(capped >= 3600 + 86400);
    /* Billed time grew by no more than the seconds that really passed. */
    int64_t bill = usage_int("ho-life", "billable_seconds_total");
    assert_true(bill - bill0 <= now_s() - now + MAX_GAP_S + 1);
    /* The node's record carries what was capped, for its reputation. */
    json_auto_t *n = api(ctl.admin_key, "GET", "/v1/nodes/ho-rig1", NULL, 200);
    assert_true(json_int(n, "capped_usage_seconds", 0) >= capped);
    json_auto_t *n2 = api(ctl.admin_key, "GET", "/v1/nodes/ho-rig2", NULL, 200);
    assert_int_equal(json_int(n2, "capped_usage_seconds", -1), 0);
    /* /metrics says the same, per node. */
    _cleanup_free_ char *text = tu_metrics_text(&ctl);
    assert_true(tu_metric(text, "fog_node_capped_usage_seconds_total{node="
                                "\"ho-rig1\",") ==
                (double)json_int(n, "capped_usage_seconds", 0));
    assert_true(tu_metric(text, "fog_node_capped_usage_seconds_total{node="
                                "\"ho-rig2\",") == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(running_claims_after_stop_destroy_or_delete_are_not_billed),
        cmocka_unit_test(claims_outside_the_vm_or_the_node_are_not_billed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
