/* A status post refused for some of its usage samples names each of them
 * (index, VM, sequence number, reason) and only them; the node sends the
 * others again and they are counted, so one bad sample never costs the
 * good ones their billing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentproto.h"
#include "common/buf.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static struct tu_ctl ctl;
static char *node_cred, *vm_id, *vm2_id, *tenant_key;

static char *must(const char *key, const char *method, const char *path,
                  const char *body, long want, const char *field)
{
    return tu_api_field(&ctl, key, method, path, body, want, field);
}

/* Wait until VM `name` is placed on the node (the scheduler may take a
 * pass). */
static void placed(const char *name)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s", name);
    int64_t end = mono_ms() + 30000;
    for (;;) {
        long st;
        json_auto_t *v = tu_api(&ctl, tenant_key, "GET", path, NULL, &st);
        if (st == 200 && json_str(v, "node_id"))
            return;
        if (mono_ms() > end)
            fail_msg("VM %s was never placed", name);
        usleep(100000);
    }
}

static int setup(void **state)
{
    tu_ctl_start(&ctl, NULL);
    node_cred = tu_node_register(&ctl, "node-s", NULL);
    long st;
    /* Asking for its desired state makes the node alive for placement. */
    json_auto_t *d = tu_api(&ctl, node_cred, "GET", "/v1/agent/desired",
                            NULL, &st);
    assert_int_equal(st, 200);
    free(must(ctl.admin_key, "POST", "/v1/accounts",
              "{\"name\":\"ten\",\"role\":\"tenant\"}", 201, NULL));
    tenant_key = must(ctl.admin_key, "POST", "/v1/keys",
                      "{\"account\":\"ten\"}", 201, "secret");
    vm_id = must(tenant_key, "POST", "/v1/vms",
                 "{\"name\":\"web\",\"vcpus\":1,\"memory_mib\":128,"
                 "\"disk_gib\":1,\"image\":\"fog-tiny\",\"allow_tcg\":true}",
                 201, "id");
    vm2_id = must(tenant_key, "POST", "/v1/vms",
                  "{\"name\":\"db\",\"vcpus\":1,\"memory_mib\":128,"
                  "\"disk_gib\":1,\"image\":\"fog-tiny\",\"allow_tcg\":true}",
                  201, "id");
    placed("web");
    placed("db");
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    free(node_cred);
    free(vm_id);
    free(vm2_id);
    free(tenant_key);
    return 0;
}

static int64_t samples_counted_of(const char *name)
{
    long st;
    _cleanup_free_ char *path = xasprintf("/v1/usage?vm=%s", name);
    json_auto_t *u = tu_api(&ctl, ctl.admin_key, "GET", path, NULL, &st);
    assert_int_equal(st, 200);
    return json_int(json_array_get(json_object_get(u, "items"), 0), "samples",
                    0);
}

static int64_t samples_counted(void)
{
    return samples_counted_of("web");
}

/* POST /v1/agent/status as the node; the answer's body in *ret. */
static long post(const char *samples, json_t **ret)
{
    _cleanup_free_ char *body = xasprintf(
        "{\"vms\":[{\"id\":\"%s\",\"state\":\"running\"}],\"samples\":%s}",
        vm_id, samples);
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/status", ctl.url);
    struct tu_resp resp = { 0 };
    long st = tu_http("POST", url, node_cred, ctl.ca, body, strlen(body),
                      NULL, NULL, &resp);
    *ret = resp.body ? json_loads(resp.body, 0, NULL) : NULL;
    tu_resp_clear(&resp);
    return st;
}

static void only_the_refused_sample_is_named_and_the_others_are_counted(void **state)
{
    long long t = (long long)time(NULL);
    _cleanup_free_ char *good1 = xasprintf(
        "{\"vm\":\"%s\",\"seq\":1,\"start\":%lld,\"end\":%lld}", vm_id, t - 2, t - 1);
    _cleanup_free_ char *good3 = xasprintf(
        "{\"vm\":\"%s\",\"seq\":3,\"start\":%lld,\"end\":%lld}", vm_id, t - 1, t);
    /* Ends before it starts. */
    _cleanup_free_ char *bad = xasprintf(
        "{\"vm\":\"%s\",\"seq\":2,\"start\":%lld,\"end\":%lld}", vm_id, t, t - 5);
    _cleanup_free_ char *foreign = xasprintf(
        "{\"vm\":\"%s\",\"seq\":9,\"start\":%lld,\"end\":%lld}",
        "0badc0de-0000-4000-8000-000000000009", t - 1, t);

    _cleanup_free_ char *three = xasprintf("[%s,%s,%s]", good1, bad, good3);
    json_auto_t *p = NULL;
    assert_int_equal(post(three, &p), 400);
    json_t *rej = json_object_get(p, AGENT_REJECTED_SAMPLES);
    assert_int_equal(json_array_size(rej), 1);
    json_t *r0 = json_array_get(rej, 0);
    assert_int_equal(json_int(r0, "index", -1), 1);
    assert_string_equal(json_str(r0, "vm"), vm_id);
    assert_int_equal(json_int(r0, "seq", -1), 2);
    assert_non_null(strstr(json_str(r0, "reason"), "end before start"));
    /* The refused post counted nothing. */
    assert_int_equal(samples_counted(), 0);

    /* A sample about a VM not on this node: 403, and only it is named. */
    _cleanup_free_ char *mixed = xasprintf("[%s,%s,%s]", good1, foreign, good3);
    json_auto_t *p2 = NULL;
    assert_int_equal(post(mixed, &p2), 403);
    json_t *rej2 = json_object_get(p2, AGENT_REJECTED_SAMPLES);
    assert_int_equal(json_array_size(rej2), 1);
    assert_int_equal(json_int(json_array_get(rej2, 0), "index", -1), 1);
    assert_int_equal(json_int(json_array_get(rej2, 0), "seq", -1), 9);
    assert_non_null(strstr(json_str(json_array_get(rej2, 0), "reason"),
                           "not placed"));

    /* The node sends the others again: both are counted. */
    _cleanup_free_ char *rest = xasprintf("[%s,%s]", good1, good3);
    json_auto_t *ok = NULL;
    assert_int_equal(post(rest, &ok), 200);
    assert_int_equal(samples_counted(), 2);
}

/* A full post (AGENT_SAMPLES_MAX samples, two VMs) with one sample whose
 * time goes back against its sequence number, one in the future past the
 * contract's bound and one with a negative start: those three are named,
 * and once the node sends the rest again every other sample of both VMs
 * is counted. */
static void one_bad_sample_costs_neither_vm_its_other_samples(void **state)
{
    const size_t n = AGENT_SAMPLES_MAX, back = 700, future = 1501, neg = 1800;
    long long t = (long long)time(NULL) - (long long)n;
    struct buf all = { 0 }, rest = { 0 };
    buf_printf(&all, "[");
    buf_printf(&rest, "[");
    for (size_t i = 0; i < n; i++) {
        /* Even ones about web (seq from 100), odd ones about db. */
        const char *vm = i % 2 ? vm2_id : vm_id;
        long long seq = (long long)(i / 2) + (i % 2 ? 1 : 100);
        long long start = t + (long long)i, end = start + 1;
        if (i == back)
            start = t - 1000;
        if (i == future)
            start = (INT64_C(1) << 40) + 1, end = start;
        if (i == neg)
            start = -5;
        _cleanup_free_ char *smp = xasprintf(
            "{\"vm\":\"%s\",\"seq\":%lld,\"start\":%lld,\"end\":%lld}", vm,
            seq, start, end);
        buf_printf(&all, "%s%s", i ? "," : "", smp);
        if (i != back && i != future && i != neg)
            buf_printf(&rest, "%s%s", rest.len > 1 ? "," : "", smp);
    }
    buf_printf(&all, "]");
    buf_printf(&rest, "]");
    int64_t web0 = samples_counted_of("web"), db0 = samples_counted_of("db");

    json_auto_t *p = NULL;
    assert_int_equal(post(all.data, &p), 400);
    json_t *rej = json_object_get(p, AGENT_REJECTED_SAMPLES);
    assert_int_equal(json_array_size(rej), 3);
    assert_int_equal(json_int(json_array_get(rej, 0), "index", -1), back);
    assert_non_null(strstr(json_str(json_array_get(rej, 0), "reason"),
                           "not monotonic"));
    assert_int_equal(json_int(json_array_get(rej, 1), "index", -1), future);
    assert_non_null(strstr(json_str(json_array_get(rej, 1), "reason"),
                           "'start'"));
    assert_int_equal(json_int(json_array_get(rej, 2), "index", -1), neg);
    assert_non_null(strstr(json_str(json_array_get(rej, 2), "reason"),
                           "'start'"));
    assert_int_equal(samples_counted_of("web") - web0, 0);

    json_auto_t *ok = NULL;
    assert_int_equal(post(rest.data, &ok), 200);
    int64_t web = samples_counted_of("web") - web0,
            db = samples_counted_of("db") - db0;
    print_message("one post of %zu samples with 3 bad: %lld of web and %lld "
                  "of db counted after one resend\n", n, (long long)web,
                  (long long)db);
    assert_int_equal(web, (int64_t)n / 2 - 2);
    assert_int_equal(db, (int64_t)n / 2 - 1);
    buf_free(&all);
    buf_free(&rest);
}

/* More samples than one post may carry: the body is refused as a whole,
 * naming the member. */
static void a_post_past_the_sample_bound_is_refused(void **state)
{
    struct buf all = { 0 };
    buf_printf(&all, "[");
    for (size_t i = 0; i <= AGENT_SAMPLES_MAX; i++)
        buf_printf(&all, "%s{\"vm\":\"%s\",\"seq\":%zu,\"start\":1,"
                   "\"end\":2}", i ? "," : "", vm_id, i + 5000);
    buf_printf(&all, "]");
    json_auto_t *p = NULL;
    assert_int_equal(post(all.data, &p), 400);
    assert_string_equal(json_str(p, "field"), "samples");
    buf_free(&all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(only_the_refused_sample_is_named_and_the_others_are_counted),
        cmocka_unit_test(one_bad_sample_costs_neither_vm_its_other_samples),
        cmocka_unit_test(a_post_past_the_sample_bound_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
