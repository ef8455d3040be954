/* Snapshots through the API, fogctl and the node agent against libvirt's
 * test driver: a running VM's snapshot is a checkpoint and a stopped one's
 * covers the disk, each is taken once however often the node reconciles,
 * a revert is done once, a deleted snapshot leaves the node, and bad
 * names, duplicates and other tenants are refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

static struct tu_ctl ctl;
static struct tu_agent agent;
static char *tenant_key;

/* fogctl as the tenant: stdout+stderr (caller frees), status in *st. */
static char *fogctl(int *st, const char *first, ...) __attribute__((sentinel));
static char *fogctl(int *st, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    tu_run_with_stderr = true;
    char *out = tu_fogctlv(&ctl, tenant_key, st, first, ap);
    tu_run_with_stderr = false;
    va_end(ap);
    return out;
}

#define FOGCTL_OK(...)                                                         \
    do {                                                                       \
        int st_;                                                               \
        _cleanup_free_ char *o_ = fogctl(&st_, __VA_ARGS__, NULL);             \
        if (st_ != 0)                                                          \
            fail_msg("fogctl exited %d: %s", st_, o_);                        \
    } while (0)

/* GET path as the tenant until its field is want; false on timeout. */
static bool wait_field(const char *path, const char *field, const char *want,
                       int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms;
    while (mono_ms() < end) {
        long st;
        json_auto_t *j = tu_api(&ctl, tenant_key, "GET", path, NULL, &st);
        if (st == 200 && streq(json_str(j, field), want))
            return true;
        usleep(50000);
    }
    fprintf(stderr, "%s: %s never became %s\n", path, field, want);
    return false;
}

static int setup(void **state)
{
    static const char *ctl_args[] = { "--heartbeat", "1", "--longpoll", "5",
                                      "--no-inspect", NULL };
    tu_ctl_start(&ctl, ctl_args);
    tenant_key = tu_account(&ctl, "alice", "tenant");
    tu_agent_start(&agent, &ctl, "sn-node-1", 8, 16384);
    return 0;
}

static int teardown(void **state)
{
    tu_agent_destroy(&agent);
    tu_ctl_destroy(&ctl);
    free(tenant_key);
    return 0;
}

/* A problem+json answer of status `want` and type urn:fog:problem:slug. */
static void assert_problem(const char *method, const char *path,
                           const char *body, long want, const char *slug)
{
    long code;
    json_auto_t *j = tu_api(&ctl, tenant_key, method, path, body, &code);
    _cleanup_free_ char *type = xasprintf("urn:fog:problem:%s", slug);
    if (code != want || !streq(json_str(j, "type"), type) ||
        !json_str(j, "detail"))
        fail_msg("%s %s answered %ld (%s), not %ld %s", method, path, code,
                 json_str(j, "type") ? json_str(j, "type") : "no problem",
                 want, type);
}

/* How often the agent logged `what` followed by snapshot `name`. */
static int in_log(const char *what, const char *name)
{
    _cleanup_free_ char *needle = xasprintf("%s %s", what, name);
    return tu_count_in_file(agent.log, needle);
}

static void snapshots_are_taken_reverted_and_deleted_once(void **state)
{
    FOGCTL_OK("create", "web", "--cpus", "1", "--memory", "128M", "--disk",
              "1G", "--image", "tiny", "--allow-tcg", "--wait", "--timeout",
              "60");
    _cleanup_free_ char *id = tu_api_field(&ctl, tenant_key, "GET",
                                           "/v1/vms/web", NULL, 200, "id");

    /* A running VM: a checkpoint of memory and disk. */
    int st;
    _cleanup_free_ char *out = fogctl(&st, "snapshot-create", "web", "s1",
                                      "--wait", "--timeout", "60", NULL);
    if (st != 0) {
        char *cat[] = { "/usr/bin/tail", "-n", "30", ctl.log, agent.log, NULL };
        int s2;
        char *t = tu_run(cat, &s2);
        fprintf(stderr, "%s\n", t);
        fail_msg("snapshot-create exited %d: %s", st, out);
    }
    assert_non_null(strstr(out, "Domain snapshot s1 created (checkpoint)"));
    json_auto_t *s1 = tu_api(&ctl, tenant_key, "GET",
                             "/v1/vms/web/snapshots/s1", NULL, NULL);
    assert_string_equal(json_str(s1, "state"), "ready");
    assert_string_equal(json_str(s1, "consistency"), "checkpoint");
    assert_non_null(json_str(s1, "taken_at"));

    /* Refused: a name taken, a name that is no hostname, a VM or a
     * snapshot that does not exist, another tenant's VM. */
    free(out);
    out = fogctl(&st, "snapshot-create", "web", "s1", NULL);
    assert_int_equal(st, 1);
    assert_non_null(strstr(out, "already has a snapshot named 's1'"));
    assert_problem("POST", "/v1/vms/web/snapshots", "{\"name\":\"s1\"}", 409,
                   "conflict");
    long code;
    json_auto_t *bad = tu_api(&ctl, tenant_key, "POST", "/v1/vms/web/snapshots",
                              "{\"name\":\"Bad_Name\"}", &code);
    assert_int_equal(code, 400);
    assert_string_equal(json_str(bad, "field"), "name");
    free(out);
    out = fogctl(&st, "snapshot-create", "web", "Bad_Name", NULL);
    assert_int_equal(st, 1);
    assert_non_null(strstr(out, "name"));
    assert_true(strchr(out, '\n') == out + strlen(out) - 1); /* one line */
    assert_problem("POST", "/v1/vms/web/snapshots/nope/revert", NULL, 404,
                   "not-found");
    assert_problem("GET", "/v1/vms/web/snapshots/nope", NULL, 404,
                   "not-found");
    assert_problem("DELETE", "/v1/vms/web/snapshots/nope", NULL, 404,
                   "not-found");
    assert_problem("GET", "/v1/vms/nope/snapshots", NULL, 404, "not-found");
    assert_problem("POST", "/v1/vms/nope/snapshots", "{}", 404, "not-found");
    /* A reference that is not UTF-8 is refused like any unknown one (the
     * controller once died quoting it back), and the controller lives on. */
    assert_problem("GET", "/v1/vms/web/snapshots/%FF%FEs1", NULL, 404,
                   "not-found");
    assert_problem("GET", "/v1/vms/%FF%FE/snapshots", NULL, 404,
                   "not-found");
    json_decref(tu_api(&ctl, tenant_key, "GET", "/v1/vms/web/snapshots/s1",
                       NULL, &code));
    assert_int_equal(code, 200);
    _cleanup_free_ char *bob = tu_account(&ctl, "bob", "tenant");
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s/snapshots", id);
    json_decref(tu_api(&ctl, bob, "GET", path, NULL, &code));
    assert_int_equal(code, 404);
    json_decref(tu_api(&ctl, bob, "POST", path, "{}", &code));
    assert_int_equal(code, 404);
    _cleanup_free_ char *bob_s1 = xasprintf("%s/s1/revert", path);
    json_decref(tu_api(&ctl, bob, "POST", bob_s1, NULL, &code));
    assert_int_equal(code, 404);

    /* A revert happens once, and the VM runs on. */
    FOGCTL_OK("snapshot-revert", "web", "s1", "--wait", "--timeout", "60");
    assert_int_equal(in_log("reverted to snapshot", "s1"), 1);
    assert_true(wait_field("/v1/vms/web", "state", "running", 30000));

    /* An unnamed snapshot is named by the time, as virsh does; more
     * passes of the node take nothing twice and revert nothing again. */
    free(out);
    out = fogctl(&st, "snapshot-create", "web", "--wait", NULL);
    assert_int_equal(st, 0);
    FOGCTL_OK("destroy", "web", "--wait", "--timeout", "60");
    FOGCTL_OK("snapshot-create", "web", "off", "--wait", "--timeout", "60");
    json_auto_t *off = tu_api(&ctl, tenant_key, "GET",
                              "/v1/vms/web/snapshots/off", NULL, NULL);
    assert_string_equal(json_str(off, "consistency"), "powered-off");
    assert_int_equal(in_log("snapshot", "s1 taken"), 1);
    assert_int_equal(in_log("reverted to snapshot", "s1"), 1);

    /* A stopped VM reverted to a checkpoint stays off: libvirt would bring
     * the guest back running, and the next pass would power it off only
     * after it ran on the reverted disk. No power-off is needed; a later
     * pass (the snapshot taken after) has seen it. */
    int stops = tu_count_in_file(agent.log, "destroyed") +
                tu_count_in_file(agent.log, "shutting down");
    FOGCTL_OK("snapshot-revert", "web", "s1", "--wait", "--timeout", "60");
    FOGCTL_OK("snapshot-create", "web", "later", "--wait", "--timeout", "60");
    FOGCTL_OK("snapshot-delete", "web", "later", "--wait", "--timeout", "60");
    assert_int_equal(in_log("reverted to snapshot", "s1"), 2);
    assert_int_equal(tu_count_in_file(agent.log, "destroyed") +
                         tu_count_in_file(agent.log, "shutting down"),
                     stops);
    json_auto_t *web = tu_api(&ctl, tenant_key, "GET", "/v1/vms/web", NULL,
                              NULL);
    assert_string_equal(json_str(web, "state"), "stopped");

    /* Deleted: gone from the node, then from the list. */
    FOGCTL_OK("snapshot-delete", "web", "s1", "--wait", "--timeout", "60");
    assert_int_equal(in_log("snapshot", "s1 deleted"), 1);
    json_auto_t *list = tu_api(&ctl, tenant_key, "GET", "/v1/vms/web/snapshots",
                               NULL, &code);
    assert_int_equal(code, 200);
    json_t *items = json_object_get(list, "items");
    assert_int_equal(json_array_size(items), 2);
    assert_null(tu_find(items, "name", "s1"));
    assert_non_null(tu_find(items, "name", "off"));
    free(out);
    out = fogctl(&st, "snapshot-list", "web", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "powered-off"));
    assert_non_null(strstr(out, "ready"));

    /* fogctl help names each verb with its virsh name. */
    free(out);
    out = fogctl(&st, "help", NULL);
    assert_int_equal(st, 0);
    static const char *const verbs[][2] = {
        { "snapshot-create", "snapshot-create-as" },
        { "snapshot-list", "snapshot-list" },
        { "snapshot-info", "snapshot-info" },
        { "snapshot-revert", "snapshot-revert" },
        { "snapshot-delete", "snapshot-delete" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(verbs); i++) {
        _cleanup_free_ char *verb = xasprintf("  %s ", verbs[i][0]);
        _cleanup_free_ char *virsh = xasprintf("[virsh %s]", verbs[i][1]);
        const char *at = strstr(out, verb);
        const char *tag = at ? strstr(at, virsh) : NULL;
        if (!tag || memchr(at, '\n', (size_t)(tag - at)))
            fail_msg("fogctl help lacks '%s ... %s'", verbs[i][0], virsh);
    }
}

/* The node comes back from a restart having lost the domain (the test
 * driver keeps nothing): the VM is made afresh, its snapshots are
 * reported lost, none is taken again under its old name and the revert
 * done before is not done again. */
static void a_restarted_node_repeats_nothing(void **state)
{
    tu_agent_restart(&agent);
    assert_true(wait_field("/v1/vms/web/snapshots/off", "state", "lost",
                           60000));
    assert_true(wait_field("/v1/vms/web", "state", "stopped", 60000));
    /* A new snapshot is taken; the node has had time to act on the old. */
    FOGCTL_OK("snapshot-create", "web", "again", "--wait", "--timeout", "60");
    assert_int_equal(in_log("snapshot", "off taken"), 1);
    assert_int_equal(in_log("reverted to snapshot", "s1"), 2);
    assert_int_equal(in_log("snapshot", "again taken"), 1);
    json_auto_t *off = tu_api(&ctl, tenant_key, "GET",
                              "/v1/vms/web/snapshots/off", NULL, NULL);
    assert_string_equal(json_str(off, "state"), "lost");
    /* A lost snapshot cannot be reverted to, and goes at once. */
    assert_problem("POST", "/v1/vms/web/snapshots/off/revert", NULL, 409,
                   "conflict");
    long code;
    json_decref(tu_api(&ctl, tenant_key, "DELETE", "/v1/vms/web/snapshots/off",
                       NULL, &code));
    assert_int_equal(code, 204);
    assert_problem("GET", "/v1/vms/web/snapshots/off", NULL, 404, "not-found");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(snapshots_are_taken_reverted_and_deleted_once),
        cmocka_unit_test(a_restarted_node_repeats_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
