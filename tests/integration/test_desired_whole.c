/* The node's desired document is served whole or not at all: a store
 * error at any step of building it is a 503 problem (never a document
 * with a part left empty), and every answer announces how long the
 * controller holds a poll. The error is injected through the controller's
 * FOG_TEST_FAIL_DESIRED seam. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentproto.h"
#include "api/client.h"
#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static struct tu_ctl ctl;
static char *fault_path, *node_cred;
static struct api_client *node;

static int setup(void **state)
{
    char *dir = tu_tempdir("desired");
    fault_path = xasprintf("%s/fail", dir);
    free(dir);
    setenv("FOG_TEST_FAIL_DESIRED", fault_path, 1);
    static const char *args[] = { "--longpoll", "7", NULL };
    tu_ctl_start(&ctl, args);
    unsetenv("FOG_TEST_FAIL_DESIRED");

    node_cred = tu_node_register(&ctl, "node-d", NULL);
    /* A peer, so the document has one. */
    free(tu_node_register(&ctl, "node-p", "\"wg_public_key\":"
                          "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\""));
    node = api_client_new(ctl.url, node_cred, ctl.ca);
    struct api_reply rep;
    assert_int_equal(api_request(node, "GET", "/v1/agent/desired", NULL, NULL,
                                 &rep), 0);
    api_reply_clear(&rep);
    free(tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/accounts",
                      "{\"name\":\"ten\",\"role\":\"tenant\"}", 201, NULL));
    _cleanup_free_ char *tkey = tu_api_field(&ctl, ctl.admin_key, "POST",
                                             "/v1/keys",
                                             "{\"account\":\"ten\"}", 201,
                                             "secret");
    free(tu_api_field(&ctl, tkey, "POST", "/v1/vms",
                      "{\"name\":\"web\",\"vcpus\":1,\"memory_mib\":128,"
                      "\"disk_gib\":1,\"image\":\"fog-tiny\","
                      "\"allow_tcg\":true,\"ports\":[{\"proto\":\"tcp\","
                      "\"vm_port\":80}]}", 201, NULL));
    return 0;
}

static int teardown(void **state)
{
    api_client_free(node);
    unlink(fault_path);
    char *dir = xstrdup(fault_path);
    *strrchr(dir, '/') = '\0';
    tu_rmrf(dir);
    free(dir);
    free(fault_path);
    free(node_cred);
    tu_ctl_destroy(&ctl);
    return 0;
}

/* GET the desired document now; its status, body in *ret (new ref). */
static long get_desired(json_t **ret, char **ret_wait)
{
    struct api_reply rep;
    assert_int_equal(api_request(node, "GET", "/v1/agent/desired?wait=0",
                                 NULL, NULL, &rep), 0);
    long st = rep.status;
    *ret = json_incref(rep.json);
    size_t len = 0;
    const char *w = api_reply_header(&rep, AGENT_POLL_WAIT_HEADER, &len);
    if (ret_wait)
        *ret_wait = w ? xstrndup(w, len) : NULL;
    api_reply_clear(&rep);
    return st;
}

static void a_store_error_at_any_step_is_a_503_never_a_partial_document(void **state)
{
    json_auto_t *whole = NULL;
    _cleanup_free_ char *wait = NULL;
    /* The VM is placed on the node by the scheduler (may take a pass). */
    int64_t end = mono_ms() + 30000;
    for (;;) {
        json_decref(whole);
        free(wait);
        assert_int_equal(get_desired(&whole, &wait), 200);
        if (json_array_size(json_object_get(whole, "vms")) == 1 &&
            json_array_size(json_object_get(whole, "ports")) == 1)
            break;
        if (mono_ms() > end)
            fail_msg("the VM never reached the node's document");
        usleep(100000);
    }
    assert_string_equal(wait, "7");
    assert_int_equal(json_array_size(json_object_get(whole, "networks")), 1);
    assert_int_equal(json_array_size(json_object_get(whole, "peers")), 1);

    static const char *const steps[] = { "", "node", "vms", "keys", "gpus",
                                         "nics", "networks", "remote",
                                         "ports", "peers" };
    for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
        assert_int_equal(file_write_atomic(fault_path, steps[i],
                                           strlen(steps[i]), 0600), 0);
        json_auto_t *p = NULL;
        long st = get_desired(&p, NULL);
        if (st != 503)
            fail_msg("store error at step '%s': status %ld, want 503",
                     steps[i], st);
        assert_string_equal(json_str(p, "type"), "urn:fog:problem:unavailable");
        assert_null(json_object_get(p, "vms"));
    }
    /* The store answers again: the same whole document. */
    assert_int_equal(unlink(fault_path), 0);
    json_auto_t *again = NULL;
    assert_int_equal(get_desired(&again, NULL), 200);
    assert_true(json_equal(again, whole));

    /* A wish longer than the controller holds is held that long, not
     * refused; a malformed one is. */
    json_auto_t *w1 = tu_api(&ctl, node_cred, "GET",
                             "/v1/agent/desired?wait=3600", NULL, NULL);
    assert_non_null(json_object_get(w1, "vms"));
    long st;
    json_auto_t *w2 = tu_api(&ctl, node_cred, "GET",
                             "/v1/agent/desired?wait=x", NULL, &st);
    assert_int_equal(st, 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_store_error_at_any_step_is_a_503_never_a_partial_document),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
