/* Parked agent long polls: one change to a node's desired state answers
 * every poll parked for that node, each with the new document (never a
 * stale copy of the old one), and no other node's poll; a poll nothing
 * wakes is answered at the end of its wait with the unchanged revision.
 * The woken polls share one cached document per node: a later change, an
 * approval or the node's removal must never answer that copy. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define POLLS_A 3

static struct tu_ctl ctl;
static char *cred_a, *cred_b, *tenant_key;

static int setup(void **state)
{
    /* Long enough that no poll ends by its wait while the test runs. */
    static const char *args[] = { "--longpoll", "120", NULL };
    tu_ctl_start(&ctl, args);
    cred_a = tu_node_register(&ctl, "wake-a", NULL);
    tenant_key = tu_account(&ctl, "ten", "tenant");
    free(tu_api_field(&ctl, tenant_key, "POST", "/v1/vms",
                      "{\"name\":\"web\",\"vcpus\":1,\"memory_mib\":128,"
                      "\"disk_gib\":1,\"image\":\"fog-tiny\","
                      "\"allow_tcg\":true}", 201, NULL));
    /* The only node takes the VM (the scheduler may need a pass). */
    int64_t end = mono_ms() + 60000;
    for (;;) {
        json_auto_t *d = tu_api(&ctl, cred_a, "GET", "/v1/agent/desired",
                                NULL, NULL);
        if (json_array_size(json_object_get(d, "vms")) == 1)
            break;
        if (mono_ms() > end)
            fail_msg("the VM never reached node wake-a");
        usleep(100000);
    }
    cred_b = tu_node_register(&ctl, "wake-b", NULL);
    return 0;
}

static int teardown(void **state)
{
    free(cred_a);
    free(cred_b);
    free(tenant_key);
    tu_ctl_destroy(&ctl);
    return 0;
}

/* The node's document now (a fresh ask, never parked). */
static json_t *desired_now(const char *cred)
{
    long st;
    json_t *d = tu_api(&ctl, cred, "GET", "/v1/agent/desired", NULL, &st);
    assert_int_equal(st, 200);
    return d;
}

static json_int_t revision(const json_t *d)
{
    return json_integer_value(json_object_get(d, "revision"));
}

static long long parked_polls(void)
{
    _cleanup_free_ char *url = xasprintf("%s/metrics", ctl.url);
    struct tu_resp r;
    long st = tu_http("GET", url, ctl.admin_key, ctl.ca, NULL, 0, NULL, NULL,
                      &r);
    long long v = -1;
    const char *at = st == 200 ? strstr(r.body, "\nfog_agent_longpolls ")
                               : NULL;
    if (at)
        v = strtoll(at + strlen("\nfog_agent_longpolls "), NULL, 10);
    tu_resp_clear(&r);
    return v;
}

struct poll {
    CURL *easy;
    struct curl_slist *hdr;
    struct buf body;
    bool done;
    long status;
};

static size_t poll_write(char *p, size_t sz, size_t n, void *arg)
{
    buf_append(arg, p, sz * n);
    return sz * n;
}

static void poll_start(CURLM *multi, struct poll *p, const char *cred,
                       json_int_t since, int wait)
{
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/desired?since=%lld&"
                                         "wait=%d", ctl.url, (long long)since,
                                         wait);
    _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", cred);
    memset(p, 0, sizeof(*p));
    p->hdr = curl_slist_append(NULL, auth);
    p->easy = curl_easy_init();
    curl_easy_setopt(p->easy, CURLOPT_URL, url);
    curl_easy_setopt(p->easy, CURLOPT_CAINFO, ctl.ca);
    curl_easy_setopt(p->easy, CURLOPT_HTTPHEADER, p->hdr);
    curl_easy_setopt(p->easy, CURLOPT_WRITEFUNCTION, poll_write);
    curl_easy_setopt(p->easy, CURLOPT_WRITEDATA, &p->body);
    curl_easy_setopt(p->easy, CURLOPT_PRIVATE, p);
    curl_multi_add_handle(multi, p->easy);
}

static void poll_end(CURLM *multi, struct poll *p)
{
    curl_multi_remove_handle(multi, p->easy);
    curl_easy_cleanup(p->easy);
    curl_slist_free_all(p->hdr);
    buf_free(&p->body);
}

/* Drive the transfers for up to ms; mark the ones that finished. */
static void drive(CURLM *multi, int ms)
{
    int64_t end = mono_ms() + ms;
    do {
        int running;
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct poll *p;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&p);
            assert_int_equal(m->data.result, CURLE_OK);
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE,
                              &p->status);
            p->done = true;
        }
        curl_multi_poll(multi, NULL, 0, 50, NULL);
    } while (mono_ms() < end);
}

static bool all_done(const struct poll *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!p[i].done)
            return false;
    return true;
}

/* Start n polls of cred's node at `since` and drive them until the
 * controller holds every one of them. */
static void park(CURLM *multi, struct poll *p, size_t n, const char *cred,
                 json_int_t since)
{
    long long parked0 = parked_polls();
    for (size_t i = 0; i < n; i++)
        poll_start(multi, &p[i], cred, since, 120);
    int64_t end = mono_ms() + 60000;
    while (parked_polls() < parked0 + (long long)n) {
        if (mono_ms() > end)
            fail_msg("the polls never parked (%lld parked, %lld before)",
                     parked_polls(), parked0);
        drive(multi, 100);
    }
    for (size_t i = 0; i < n; i++)
        assert_false(p[i].done);
}

/* Drive until the n polls are answered; a minute is far more than any
 * wake takes, so a poll still parked then was not woken. */
static void await(CURLM *multi, struct poll *p, size_t n, const char *what)
{
    int64_t end = mono_ms() + 60000;
    while (!all_done(p, n)) {
        if (mono_ms() > end)
            fail_msg("%s left the polls parked (%lld parked)", what,
                     parked_polls());
        drive(multi, 100);
    }
}

/* Each of the n answered polls is 200 with exactly the document a fresh
 * ask reads now, `fresh`. */
static void assert_fresh(struct poll *p, size_t n, const json_t *fresh)
{
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(p[i].status, 200);
        buf_append(&p[i].body, "", 1);
        json_auto_t *d = json_loads(p[i].body.data, 0, NULL);
        assert_non_null(d);
        if (!json_equal(d, fresh))
            fail_msg("woken poll %zu got revision %lld%s, a fresh ask "
                     "revision %lld", i, (long long)revision(d),
                     json_is_false(json_object_get(d, "approved"))
                         ? " (unapproved)" : "",
                     (long long)revision(fresh));
    }
}

static void end_polls(CURLM *multi, struct poll *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        poll_end(multi, &p[i]);
}

/* The id of node `name` as the admin lists it (caller frees). */
static char *node_id(const char *name)
{
    json_auto_t *nodes = tu_list(&ctl, ctl.admin_key, "/v1/nodes");
    json_t *n = tu_find(nodes, "name", name);
    assert_non_null(n);
    return xstrdup(json_str(n, "id"));
}

static const char *vm_power(const json_t *d)
{
    return json_str(json_array_get(json_object_get(d, "vms"), 0), "power");
}

static void a_change_wakes_exactly_its_nodes_polls_with_the_new_document(
    void **state)
{
    json_auto_t *a0 = desired_now(cred_a), *b0 = desired_now(cred_b);
    long long parked0 = parked_polls();
    CURLM *multi = curl_multi_init();
    struct poll pa[POLLS_A], pb;
    for (size_t i = 0; i < POLLS_A; i++)
        poll_start(multi, &pa[i], cred_a, revision(a0), 120);
    poll_start(multi, &pb, cred_b, revision(b0), 120);

    int64_t end = mono_ms() + 60000;
    while (parked_polls() < parked0 + POLLS_A + 1) {
        if (mono_ms() > end)
            fail_msg("the polls never parked (%lld parked)", parked_polls());
        drive(multi, 100);
    }
    for (size_t i = 0; i < POLLS_A; i++)
        assert_false(pa[i].done);
    assert_false(pb.done);

    /* One change to node a: its VM is asked to stop. */
    free(tu_api_field(&ctl, tenant_key, "POST", "/v1/vms/web/stop", "{}", 202,
                      NULL));
    end = mono_ms() + 60000;
    while (!all_done(pa, POLLS_A)) {
        if (mono_ms() > end)
            fail_msg("a change left node a's polls parked (%lld parked, "
                     "revision %lld -> %lld)", parked_polls(),
                     (long long)revision(a0),
                     (long long)revision(desired_now(cred_a)));
        drive(multi, 100);
    }
    json_auto_t *a1 = desired_now(cred_a);
    assert_true(revision(a1) > revision(a0));
    assert_string_equal(json_str(json_array_get(json_object_get(a1, "vms"), 0),
                                 "power"), "stopped");
    for (size_t i = 0; i < POLLS_A; i++) {
        assert_int_equal(pa[i].status, 200);
        buf_append(&pa[i].body, "", 1);
        json_auto_t *d = json_loads(pa[i].body.data, 0, NULL);
        assert_non_null(d);
        /* The document at the new revision, as a fresh ask reads it. */
        if (!json_equal(d, a1))
            fail_msg("woken poll %zu got revision %lld, the store has %lld",
                     i, (long long)revision(d), (long long)revision(a1));
    }

    /* Node b's revision did not move: its poll is still parked. */
    json_auto_t *b1 = desired_now(cred_b);
    assert_int_equal(revision(b1), revision(b0));
    drive(multi, 500);
    assert_false(pb.done);
    assert_int_equal(parked_polls(), parked0 + 1);

    for (size_t i = 0; i < POLLS_A; i++)
        poll_end(multi, &pa[i]);
    poll_end(multi, &pb);
    curl_multi_cleanup(multi);
}

static void a_poll_nothing_wakes_ends_at_its_wait_unchanged(void **state)
{
    json_auto_t *b0 = desired_now(cred_b);
    CURLM *multi = curl_multi_init();
    struct poll p;
    poll_start(multi, &p, cred_b, revision(b0), 1);
    int64_t end = mono_ms() + 60000;
    while (!p.done) {
        if (mono_ms() > end)
            fail_msg("a poll outlived its wait");
        drive(multi, 100);
    }
    assert_int_equal(p.status, 200);
    buf_append(&p.body, "", 1);
    json_auto_t *d = json_loads(p.body.data, 0, NULL);
    assert_non_null(d);
    assert_int_equal(revision(d), revision(b0));
    poll_end(multi, &p);
    curl_multi_cleanup(multi);
}

/* Woken twice in a row: the second change must not answer the document
 * the first one's polls were given (the cache holds it, at the revision
 * these polls now have). */
static void each_change_answers_its_own_document_never_the_cached_one(
    void **state)
{
    CURLM *multi = curl_multi_init();
    struct poll p[POLLS_A];
    static const char *const steps[][2] = { { "start", "running" },
                                            { "stop", "stopped" },
                                            { "start", "running" } };
    for (size_t k = 0; k < ARRAY_SIZE(steps); k++) {
        json_auto_t *d0 = desired_now(cred_a);
        park(multi, p, POLLS_A, cred_a, revision(d0));
        _cleanup_free_ char *path = xasprintf("/v1/vms/web/%s", steps[k][0]);
        free(tu_api_field(&ctl, tenant_key, "POST", path, "{}", 202, NULL));
        await(multi, p, POLLS_A, steps[k][0]);
        json_auto_t *d1 = desired_now(cred_a);
        assert_true(revision(d1) > revision(d0));
        assert_string_equal(vm_power(d1), steps[k][1]);
        assert_fresh(p, POLLS_A, d1);
        end_polls(multi, p, POLLS_A);
    }
    curl_multi_cleanup(multi);
}

/* A node waiting for approval has polls parked on its bare document (the
 * cache holds it after a wake); approving it must answer them with its
 * real document, never the bare one. */
static void approval_answers_the_real_document_not_the_cached_bare_one(
    void **state)
{
    _cleanup_free_ char *prov = tu_account(&ctl, "wprov", "provider");
    _cleanup_free_ char *id = NULL, *cred = NULL;
    assert_int_equal(tu_node_join(&ctl, prov, "wake-pend", NULL, &id, &cred),
                     201);
    CURLM *multi = curl_multi_init();
    struct poll p[2];

    /* Another node joins: every node's revision moves, and the woken poll
     * of the waiting one is answered from the cache with its bare
     * document. */
    json_auto_t *d0 = desired_now(cred);
    assert_true(json_is_false(json_object_get(d0, "approved")));
    park(multi, p, 1, cred, revision(d0));
    free(tu_node_register(&ctl, "wake-joiner", NULL));
    await(multi, p, 1, "a node joining");
    json_auto_t *d1 = desired_now(cred);
    assert_true(json_is_false(json_object_get(d1, "approved")));
    assert_fresh(p, 1, d1);
    end_polls(multi, p, 1);

    park(multi, p, 2, cred, revision(d1));
    _cleanup_free_ char *path = xasprintf("/v1/nodes/%s/approve", id);
    free(tu_api_field(&ctl, ctl.admin_key, "POST", path, "{}", 200, NULL));
    await(multi, p, 2, "the approval");
    json_auto_t *d2 = desired_now(cred);
    assert_null(json_object_get(d2, "approved"));
    assert_true(revision(d2) > revision(d1));
    assert_fresh(p, 2, d2);
    end_polls(multi, p, 2);
    curl_multi_cleanup(multi);
}

/* A removed node's parked polls are told it is gone (404), never given
 * the document the cache holds for it. */
static void a_removed_nodes_polls_get_404_not_its_cached_document(
    void **state)
{
    _cleanup_free_ char *cred = tu_node_register(&ctl, "wake-gone", NULL);
    _cleanup_free_ char *id = node_id("wake-gone");
    CURLM *multi = curl_multi_init();
    struct poll p[2];

    /* Fill the cache: a joining node wakes this one's poll. */
    json_auto_t *d0 = desired_now(cred);
    park(multi, p, 1, cred, revision(d0));
    free(tu_node_register(&ctl, "wake-joiner2", NULL));
    await(multi, p, 1, "a node joining");
    json_auto_t *d1 = desired_now(cred);
    assert_fresh(p, 1, d1);
    end_polls(multi, p, 1);

    park(multi, p, 2, cred, revision(d1));
    _cleanup_free_ char *path = xasprintf("/v1/nodes/%s", id);
    long st = 0;
    json_decref(tu_api(&ctl, ctl.admin_key, "DELETE", path, NULL, &st));
    assert_int_equal(st, 204);
    await(multi, p, 2, "the removal");
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(p[i].status, 404);
    end_polls(multi, p, 2);
    curl_multi_cleanup(multi);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_change_wakes_exactly_its_nodes_polls_with_the_new_document),
        cmocka_unit_test(a_poll_nothing_wakes_ends_at_its_wait_unchanged),
        cmocka_unit_test(each_change_answers_its_own_document_never_the_cached_one),
        cmocka_unit_test(approval_answers_the_real_document_not_the_cached_bare_one),
        cmocka_unit_test(a_removed_nodes_polls_get_404_not_its_cached_document),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
