/* A status post refused for some of its usage samples names each of them
 * (index, VM, sequence number, reason) and only them; the node sends the
 * others again and they are counted, so one bad sample never costs the
 * good ones their billing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentproto.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static struct tu_ctl ctl;
static char *node_cred, *vm_id, *tenant_key;

static char *must(const char *key, const char *method, const char *path,
                  const char *body, long want, const char *field)
{
    return tu_api_field(&ctl, key, method, path, body, want, field);
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
    /* Placed on the node (the scheduler may take a pass). */
    int64_t end = mono_ms() + 30000;
    for (;;) {
        json_auto_t *v = tu_api(&ctl, tenant_key, "GET", "/v1/vms/web", NULL,
                                &st);
        if (st == 200 && json_str(v, "node_id"))
            break;
        if (mono_ms() > end)
            fail_msg("VM web was never placed");
        usleep(100000);
    }
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    free(node_cred);
    free(vm_id);
    free(tenant_key);
    return 0;
}

static int64_t samples_counted(void)
{
    long st;
    json_auto_t *u = tu_api(&ctl, ctl.admin_key, "GET", "/v1/usage?vm=web",
                            NULL, &st);
    assert_int_equal(st, 200);
    return json_int(json_array_get(json_object_get(u, "items"), 0), "samples",
                    0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(only_the_refused_sample_is_named_and_the_others_are_counted),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
