/* The desired document as deltas: an agent that holds revision REV and
 * asks with delta=1 is sent only what changed, which merged into REV is
 * the whole document; a base the controller does not hold (another
 * revision, a restart) gets the whole document. Through creates, stops,
 * starts, a resize and a delete, interleaved with the agent's timed full
 * resyncs, its restart and the controller's, the agent ends with the
 * whole document applied and libvirt (test driver) as desired, although
 * a pass for a delta looks up only the domains the delta names. The
 * agent's reports of what it did move no revision. A document built
 * from the one before reads only the VMs a change touched. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/client.h"
#include "api/desired_delta.h"
#include "common/fs.h"
#include "common/jsonutil.h"
#include "nodeagent/reconcile.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <signal.h>
#include <time.h>

static struct tu_ctl ctl;
static struct tu_agent agent;
static char *key, *node_id;
static struct api_client *node;

static int setup(void **state)
{
    static const char *ctl_args[] = { "--heartbeat", "60", "--longpoll", "5",
                                      "--no-inspect", NULL };
    static const char *const run[] = { "--heartbeat", "60",
                                       "--resync-interval", "1", NULL };
    /* Rows are written here behind the controller's back, which its check
     * of documents built from the one before (tests/run.sh) would take for
     * a change that touched more than it said. */
    unsetenv("FOG_TEST_DESIRED_VERIFY");
    tu_ctl_start(&ctl, ctl_args);
    key = tu_account(&ctl, "dl-tenant", "tenant");
    tu_agent_start(&agent, &ctl, "dl-node", 8, 16384);
    agent.extra = run;
    tu_agent_restart(&agent);
    /* The agent's own credential: a second poll of the same node. */
    _cleanup_free_ char *path = xasprintf("%s/node.json", agent.data_dir);
    json_error_t err;
    json_auto_t *st = json_load_file(path, 0, &err);
    assert_non_null(st);
    node_id = xstrdup(json_str(st, "node_id"));
    /* The test's own calls speak the agent's contract, as it does: a
     * contract that changes the document's form would move it. */
    char h[64];
    snprintf(h, sizeof(h), "%s: %d", AGENT_CONTRACT_HEADER, AGENT_CONTRACT);
    api_client_set_process_header(h);
    node = api_client_new(ctl.url, json_str(st, "credential"), ctl.ca);
    return 0;
}

static int teardown(void **state)
{
    api_client_free(node);
    tu_agent_destroy(&agent);
    tu_ctl_destroy(&ctl);
    free(key);
    free(node_id);
    return 0;
}

/* GET /v1/agent/desired`query` as the node: the 200 answer. */
static json_t *desired(const char *query)
{
    _cleanup_free_ char *path = xasprintf("/v1/agent/desired%s", query);
    struct api_reply rep;
    assert_int_equal(api_request(node, "GET", path, NULL, NULL, &rep), 0);
    if (rep.status != 200)
        fail_msg("%s: %ld", path, rep.status);
    json_t *j = json_incref(rep.json);
    api_reply_clear(&rep);
    return j;
}

static json_t *delta_since(int64_t rev)
{
    _cleanup_free_ char *q = xasprintf("?since=%lld&wait=0&delta=1",
                                       (long long)rev);
    return desired(q);
}

static void sleep_ms(long ms)
{
    nanosleep(&(struct timespec){ ms / 1000, (ms % 1000) * 1000000 }, NULL);
}

static void the_controller_answers_deltas_a_base_it_lacks_whole(void **state)
{
    json_auto_t *w1 = desired("?delta=1");
    int64_t r1 = json_int(w1, "revision", -1);
    json_auto_t *a = tu_vm_post(&ctl, key, "dl-a", 1, NULL, 201);
    json_auto_t *d = delta_since(r1);
    /* Only the new VM travels; merged, it is the whole document. */
    assert_int_equal(json_int(d, DESIRED_DELTA_FROM, -1), r1);
    assert_int_equal(json_array_size(json_object_get(d, "vms")), 1);
    assert_string_equal(json_str(json_array_get(json_object_get(d, "vms"),
                                                0), "id"),
                        json_str(a, "id"));
    json_auto_t *merged = NULL;
    assert_int_equal(desired_delta_apply(w1, d, &merged), 0);
    json_auto_t *w2 = desired("");
    assert_int_equal(json_int(d, "revision", -1), json_int(w2, "revision", -2));
    assert_true(json_equal(merged, w2));
    /* A change of a VM: that VM alone. */
    _cleanup_free_ char *stop = xasprintf("/v1/vms/%s/stop",
                                          json_str(a, "id"));
    json_decref(tu_api_want(&ctl, key, "POST", stop, NULL, 202));
    json_auto_t *d2 = delta_since(json_int(w2, "revision", -1));
    assert_int_equal(json_array_size(json_object_get(d2, "vms")), 1);
    json_auto_t *merged2 = NULL;
    assert_int_equal(desired_delta_apply(w2, d2, &merged2), 0);
    json_auto_t *w3 = desired("");
    assert_true(json_equal(merged2, w3));
    assert_string_equal(json_str(json_array_get(json_object_get(d2, "vms"),
                                                0), "power"),
                        "stopped");
    /* Nothing new (a poll that timed out): an empty delta. */
    json_auto_t *none = delta_since(json_int(w3, "revision", -1));
    assert_int_equal(json_int(none, DESIRED_DELTA_FROM, -1),
                     json_int(w3, "revision", -2));
    assert_int_equal(json_array_size(json_object_get(none, "vms")), 0);
    assert_int_equal(json_array_size(json_object_get(none,
                                                     DESIRED_DELTA_REMOVED)),
                     0);
    /* A revision it holds no base of: whole. Without delta=1: whole. */
    json_auto_t *o = delta_since(r1 > 0 ? r1 - 1 : 999999);
    assert_false(desired_delta_is(o));
    assert_true(json_equal(o, w3));
    _cleanup_free_ char *q = xasprintf("?since=%lld&wait=0", (long long)r1);
    json_auto_t *plain = desired(q);
    assert_false(desired_delta_is(plain));
    /* delta is 0 or 1. */
    struct api_reply rep;
    assert_int_equal(api_request(node, "GET", "/v1/agent/desired?delta=2",
                                 NULL, NULL, &rep), 0);
    assert_int_equal(rep.status, 400);
    assert_string_equal(json_str(rep.json, "field"), "delta");
    api_reply_clear(&rep);
}

/* The memory of VM `id` in document `doc`; -1 when it is not there. */
static int64_t doc_memory(const json_t *doc, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(doc, "vms"), i, v)
        if (streq(json_str(v, "id"), id))
            return json_int(v, "memory_mib", -1);
    return -1;
}

/* An ask for the whole document (an agent's start and its resync) is
 * built from the store, not served from the cache: a change that reached
 * the store without moving the node's revision (here written behind the
 * controller's back) is in it. */
static void a_whole_ask_reads_the_store(void **state)
{
    json_auto_t *vm = tu_vm_post(&ctl, key, "dl-w", 1, NULL, 201);
    const char *id = json_str(vm, "id");
    _cleanup_free_ char *stop = xasprintf("/v1/vms/%s/stop", id);
    json_decref(tu_api_want(&ctl, key, "POST", stop, NULL, 202));
    json_auto_t *w1 = desired("?delta=1");
    int64_t mem = doc_memory(w1, id);
    assert_true(mem > 0);
    tu_sql(&ctl, "UPDATE vms SET memory_mib = memory_mib + 64 WHERE id = '%s'",
           id);
    json_auto_t *w2 = desired("?delta=1");
    assert_false(desired_delta_is(w2));
    assert_int_equal(doc_memory(w2, id), mem + 64);
}

static void wait_state(const char *id, const char *want);

/* A change says what it touched (schema 047): a document built from the
 * one before reads only the VMs changed, so a drift of another VM's row
 * (written behind the controller's back, no revision moved) stays out of
 * it, until a whole read, or a change that may have touched anything,
 * which reads everything. The agent is held still meanwhile: its timed
 * resync would read everything. */
static void a_change_reads_only_the_vms_it_names(void **state)
{
    json_auto_t *va = tu_vm_post(&ctl, key, "dl-na", 1, NULL, 201);
    json_auto_t *vb = tu_vm_post(&ctl, key, "dl-nb", 1, NULL, 201);
    const char *a = json_str(va, "id"), *b = json_str(vb, "id");
    wait_state(a, "running");
    wait_state(b, "running");
    assert_int_equal(kill(agent.pid, SIGSTOP), 0);
    json_auto_t *w1 = desired("?delta=1"); /* whole: the base */
    int64_t r1 = json_int(w1, "revision", -1), mem = doc_memory(w1, b);
    assert_true(mem > 0);
    tu_sql(&ctl, "UPDATE vms SET memory_mib = memory_mib + 64 WHERE id = "
           "'%s'", b);
    _cleanup_free_ char *stop = xasprintf("/v1/vms/%s/stop", a);
    json_decref(tu_api_want(&ctl, key, "POST", stop, NULL, 202));
    json_auto_t *d = delta_since(r1);
    assert_int_equal(json_int(d, DESIRED_DELTA_FROM, -1), r1);
    assert_int_equal(json_array_size(json_object_get(d, "vms")), 1);
    assert_string_equal(json_str(json_array_get(json_object_get(d, "vms"),
                                                0), "id"), a);
    json_auto_t *m1 = NULL;
    assert_int_equal(desired_delta_apply(w1, d, &m1), 0);
    assert_int_equal(doc_memory(m1, b), mem); /* B was not read */
    /* A whole read has the drift. */
    json_auto_t *w2 = desired("?delta=1");
    assert_int_equal(doc_memory(w2, b), mem + 64);
    /* A change that may have touched anything (as app_node_changed()
     * writes it): everything is read again. */
    tu_sql(&ctl, "UPDATE vms SET memory_mib = memory_mib + 64 WHERE id = "
           "'%s'", b);
    tu_sql(&ctl, "UPDATE nodes SET revision = revision + 1, whole_rev = "
           "revision + 1 WHERE id = '%s'", node_id);
    json_auto_t *d2 = delta_since(json_int(w2, "revision", -1));
    /* Revision w2 was built twice, differently (the drift): no base for a
     * delta, so the whole document comes. */
    json_auto_t *m2 = NULL;
    if (desired_delta_is(d2))
        assert_int_equal(desired_delta_apply(w2, d2, &m2), 0);
    else
        m2 = json_incref(d2);
    assert_int_equal(json_int(m2, "revision", -1),
                     json_int(w2, "revision", -1) + 1);
    assert_int_equal(doc_memory(m2, b), mem + 128);
    assert_int_equal(kill(agent.pid, SIGCONT), 0);
}

/* Poll, for at most 30 s, until VM `id`'s state is `want`. */
static void wait_state(const char *id, const char *want)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s", id);
    time_t end = time(NULL) + 30;
    for (;;) {
        long st;
        json_auto_t *vm = tu_api(&ctl, key, "GET", path, NULL, &st);
        if (want ? st == 200 && streq(json_str(vm, "state"), want) :
                   st == 404)
            return;
        if (time(NULL) > end)
            fail_msg("VM %s: state '%s' (%ld), want '%s'", id,
                     json_str(vm, "state"), st, want ? want : "gone");
        sleep_ms(100);
    }
}

/* The agent's applied document (accepted.json) is the whole one, as the
 * agent reads it, within 30 s. */
static void wait_agent_whole(void)
{
    _cleanup_free_ char *path = xasprintf("%s/accepted.json",
                                          agent.data_dir);
    time_t end = time(NULL) + 30;
    for (;;) {
        json_auto_t *whole = desired("");
        json_auto_t *want = reconcile_doc_read(whole, node_id, NULL);
        json_error_t err;
        json_auto_t *have = json_load_file(path, 0, &err);
        assert_non_null(want);
        if (have && json_equal(have, want))
            return;
        if (time(NULL) > end) {
            _cleanup_free_ char *h = json_dumps(have, JSON_SORT_KEYS);
            _cleanup_free_ char *w = json_dumps(want, JSON_SORT_KEYS);
            fail_msg("agent holds:\n%s\nwhole:\n%s", h ? h : "(none)", w);
        }
        sleep_ms(100);
    }
}

/* Wait, for at most 15 s, until the agent's log holds `needle` more
 * than `than` times. */
static void wait_log(const char *needle, int than)
{
    time_t end = time(NULL) + 15;
    while (tu_count_in_file(agent.log, needle) <= than) {
        if (time(NULL) > end)
            fail_msg("no '%s' in %s", needle, agent.log);
        sleep_ms(100);
    }
}

/* A create moves the node's document once: the agent's reports of what
 * it did (the VM running, its state again) change no document, so they
 * move no revision, and the agent makes no second pass for them. */
static void a_report_that_changes_no_document_moves_no_revision(void **state)
{
    json_auto_t *vm = tu_vm_post(&ctl, key, "dl-r", 1, NULL, 201);
    const char *id = json_str(vm, "id");
    wait_state(id, "running"); /* the agent's own report is in */
    json_auto_t *w1 = desired("");
    static const char *const states[] = { "running", "stopped", "running" };
    for (size_t i = 0; i < ARRAY_SIZE(states); i++) {
        json_auto_t *body = json_pack("{s:[{s:s, s:s}]}", "vms", "id", id,
                                      "state", states[i]);
        struct api_reply rep;
        assert_int_equal(api_request(node, "POST", "/v1/agent/status", body,
                                     NULL, &rep), 0);
        assert_int_equal(rep.status, 200);
        api_reply_clear(&rep);
    }
    json_auto_t *w2 = desired("");
    assert_int_equal(json_int(w2, "revision", -1),
                     json_int(w1, "revision", -2));
    assert_true(json_equal(w1, w2));
}

static void changes_survive_deltas_resyncs_and_a_restart(void **state)
{
    int st;
    json_auto_t *b = tu_vm_post(&ctl, key, "dl-b", 1, NULL, 201);
    json_auto_t *c = tu_vm_post(&ctl, key, "dl-c", 1, NULL, 201);
    wait_state(json_str(b, "id"), "running");
    _cleanup_free_ char *o1 = tu_fogctl(&ctl, key, &st, "destroy", "dl-b",
                                        NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *rpath = xasprintf("/v1/vms/%s/resize",
                                           json_str(b, "id"));
    wait_state(json_str(b, "id"), "stopped");
    json_decref(tu_api_want(&ctl, key, "POST", rpath,
                            "{\"memory_mib\": 256}", 202));
    /* Each second a full resync comes between the deltas. */
    wait_log("full resync", 1);
    wait_agent_whole();

    /* From here on no timed resync: what follows comes as deltas, and a
     * lost one stays lost. The agent starts again (a full resync, its
     * domains gone with the test driver) and so does the controller (no
     * base for the agent's revision: whole once, then deltas). */
    static const char *const no_resync[] = { "--heartbeat", "60",
                                             "--resync-interval", "0", NULL };
    agent.extra = no_resync;
    tu_agent_restart(&agent);
    tu_ctl_stop(&ctl, SIGTERM);
    tu_ctl_restart(&ctl);
    wait_state(json_str(c, "id"), "running");
    int deltas = tu_count_in_file(agent.log, "(delta)");
    _cleanup_free_ char *o2 = tu_fogctl(&ctl, key, &st, "start", "dl-b",
                                        NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *o3 = tu_fogctl(&ctl, key, &st, "delete", "dl-c",
                                        NULL);
    assert_int_equal(st, 0);
    json_auto_t *d = tu_vm_post(&ctl, key, "dl-d", 1, NULL, 201);
    wait_state(json_str(d, "id"), "running");
    _cleanup_free_ char *o4 = tu_fogctl(&ctl, key, &st, "destroy", "dl-d",
                                        NULL);
    assert_int_equal(st, 0);

    wait_state(json_str(b, "id"), "running");
    wait_state(json_str(c, "id"), NULL);
    wait_state(json_str(d, "id"), "stopped");
    wait_agent_whole();
    /* The resize reached libvirt. */
    _cleanup_free_ char *x = tu_fogctl(&ctl, key, &st, "dumpxml", "dl-b",
                                       NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(x, "<memory unit='KiB'>262144</memory>"));
    /* The changes after the restarts came as deltas, and passes acted on
     * them looking up only the domains they named. */
    assert_true(tu_count_in_file(agent.log, "(delta)") > deltas);
    assert_true(tu_count_in_file(agent.log, "those named looked up") > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_controller_answers_deltas_a_base_it_lacks_whole),
        cmocka_unit_test(a_whole_ask_reads_the_store),
        cmocka_unit_test(a_report_that_changes_no_document_moves_no_revision),
        cmocka_unit_test(a_change_reads_only_the_vms_it_names),
        cmocka_unit_test(changes_survive_deltas_resyncs_and_a_restart),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
