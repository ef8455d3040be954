/* A client generated from api/openapi.yaml by real generators
 * (openapi-typescript + openapi-fetch, compiled by tsc --strict and run by
 * node; tests/spec/generated_client.sh) creates a VM, sees it run on an
 * agent using libvirt's test driver, lists it and deletes it. Skips (77)
 * when node or the pinned npm packages (tools/npm-deps.sh) are missing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>

static struct tu_ctl ctl;
static struct tu_agent agent;
static char *tenant_key;

static int setup(void **state)
{
    static const char *ctl_args[] = { "--heartbeat", "1", "--longpoll", "5",
                                      "--no-inspect", NULL };
    tu_ctl_start(&ctl, ctl_args);
    free(tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/accounts",
                      "{\"name\":\"as-gen\",\"role\":\"tenant\"}", 201, NULL));
    tenant_key = tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/keys",
                              "{\"account\":\"as-gen\"}", 201, "secret");
    tu_agent_start(&agent, &ctl, "as-node", 4, 8192);
    return 0;
}

static int teardown(void **state)
{
    tu_agent_destroy(&agent);
    tu_ctl_destroy(&ctl);
    free(tenant_key);
    return 0;
}

static void generated_client_creates_lists_and_deletes_a_vm(void **state)
{
    setenv("FOG_URL", ctl.url, 1);
    setenv("FOG_KEY", tenant_key, 1);
    setenv("FOG_CA", ctl.ca, 1);
    setenv("FOG_IMAGE", "tiny", 1);
    char *argv[] = { "/bin/sh", "tests/spec/generated_client.sh", NULL };
    int st;
    bool saved = tu_run_with_stderr;
    tu_run_with_stderr = true;
    _cleanup_free_ char *out = tu_run(argv, &st);
    tu_run_with_stderr = saved;
    printf("%s", out);
    if (st == 77) {
        free(TAKE_PTR(out)); /* skip() leaves without the cleanups */
        skip();
    }
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "running on as-node"));
    assert_non_null(strstr(out, "gone: urn:fog:problem:not-found"));

    /* What the client did is what the API holds: no VM is left, and the
     * create and delete are the tenant's events. */
    long code;
    json_auto_t *vms = tu_api(&ctl, tenant_key, "GET", "/v1/vms", NULL, &code);
    assert_int_equal(code, 200);
    assert_int_equal(json_array_size(json_object_get(vms, "items")), 0);
    json_auto_t *ev = tu_api(&ctl, tenant_key, "GET", "/v1/events", NULL,
                             &code);
    assert_int_equal(code, 200);
    assert_non_null(tu_find(json_object_get(ev, "items"), "action",
                            "POST /v1/vms"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(generated_client_creates_lists_and_deletes_a_vm),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
