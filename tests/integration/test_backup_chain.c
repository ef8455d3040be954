/* Chains of incremental backups in the hub's store, the node's side
 * spoken directly: a VM's backups are offered as increments on its last
 * ready one until the chain reaches --backup-full-every, then a full one
 * starts the next chain; a commit as incremental of a backup asked for as
 * full is refused; a node's full answer clears the parent and keeps its
 * reason; a failed backup is nobody's base; retention never prunes a
 * backup another builds on (the chain past the keep goes whole, top
 * first); the desired document of a VM placed from an incremental backup
 * names its chain, full one first; a backup taken on another node (after
 * a move) is no parent. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static struct tu_ctl ctl;
static char *alice, *a_id, *a_cred, *tmp, *clock_file, *vm_id;
static const char *const serve_args[] = { "--heartbeat", "3600",
                                          "--backup-full-every", "3", NULL };

static json_t *api(const char *key, const char *method, const char *path,
                   const char *body, long want)
{
    return tu_api_want(&ctl, key, method, path, body, want);
}

static void clock_to(int64_t at);
static void clock_to(int64_t at)
{
    _cleanup_free_ char *t = xasprintf("%lld\n", (long long)(at - time(NULL)));
    assert_int_equal(file_write_atomic(clock_file, t, strlen(t), 0600), 0);
    _cleanup_free_ char *st = xasprintf("{\"vms\":[{\"id\":\"%s\",\"state\":"
                                        "\"running\"}]}", vm_id);
    json_decref(api(a_cred, "POST", "/v1/agent/status", st, 200));
}

static json_t *backup(const char *id)
{
    _cleanup_free_ char *p = xasprintf("/v1/vms/ch-web/backups/%s", id);
    return api(alice, "GET", p, NULL, 200);
}

/* Each backup asked for 10 s after the one before (the store orders
 * them by second). */
static int64_t ticks;

static char *request(void)
{
    clock_to(time(NULL) + 10 * ++ticks);
    json_auto_t *b = api(alice, "POST", "/v1/vms/ch-web/backups", NULL, 202);
    return xstrdup(json_str(b, "id"));
}

static long commit(const char *id, const char *mode, const char *why)
{
    return tu_backup_complete(&ctl, a_cred, id, mode, why);
}

/* A new backup, taken as the node would: incremental when offered. */
static char *take(void)
{
    char *id = request();
    json_auto_t *b = backup(id);
    bool inc = streq(json_str(b, "mode"), "incremental");
    assert_int_equal(commit(id, inc ? "incremental" : "full", NULL), 200);
    return id;
}

static int setup(void **state)
{
    tmp = tu_tempdir("bchain");
    clock_file = xasprintf("%s/clock", tmp);
    assert_int_equal(file_write_atomic(clock_file, "0\n", 2, 0600), 0);
    setenv("FOG_TEST_CLOCK", clock_file, 1);
    tu_ctl_start(&ctl, serve_args);
    alice = tu_account(&ctl, "ch-alice", "tenant");
    assert_int_equal(tu_node_join(&ctl, ctl.admin_key, "ch-a", NULL, &a_id,
                                  &a_cred), 201);
    json_decref(api(a_cred, "POST", "/v1/agent/status", "{\"vms\":[]}", 200));
    int st;
    _cleanup_free_ char *out = tu_fogctl(
        &ctl, alice, &st, "create", "ch-web", "--cpus", "1", "--memory",
        "128M", "--disk", "1G", "--image", "fog-tiny", "--allow-tcg", NULL);
    if (st != 0)
        fail_msg("create exited %d: %s", st, out);
    json_auto_t *vm = api(alice, "GET", "/v1/vms/ch-web", NULL, 200);
    vm_id = xstrdup(json_str(vm, "id"));
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    tu_rmrf(tmp);
    free(tmp);
    free(clock_file);
    free(alice);
    free(a_id);
    free(a_cred);
    free(vm_id);
    unsetenv("FOG_TEST_CLOCK");
    return 0;
}

static void chains_offered_until_full_every(void **state)
{
    /* First: full, with the hub's reason; an incremental commit of it is
     * refused. */
    _cleanup_free_ char *f1 = request();
    json_auto_t *b1 = backup(f1);
    assert_string_equal(json_str(b1, "mode"), "full");
    assert_null(json_str(b1, "parent"));
    assert_non_null(strstr(json_str(b1, "full_reason"), "no ready backup"));
    assert_int_equal(commit(f1, "incremental", NULL), 400);
    assert_int_equal(commit(f1, "full", NULL), 200);

    /* Then increments, each on the one before, up to full-every (3):
     * full, incremental, incremental, full. */
    _cleanup_free_ char *i1 = take(), *i2 = take(), *f2 = take();
    json_auto_t *j1 = backup(i1), *j2 = backup(i2), *k2 = backup(f2);
    assert_string_equal(json_str(j1, "mode"), "incremental");
    assert_string_equal(json_str(j1, "parent"), f1);
    assert_string_equal(json_str(j2, "mode"), "incremental");
    assert_string_equal(json_str(j2, "parent"), i1);
    assert_string_equal(json_str(k2, "mode"), "full");
    assert_null(json_str(k2, "parent"));
    assert_non_null(strstr(json_str(k2, "full_reason"), "backup-full-every"));

    /* Offered an increment, the node answers full: no parent, its
     * reason. */
    _cleanup_free_ char *n1 = request();
    json_auto_t *o1 = backup(n1);
    assert_string_equal(json_str(o1, "parent"), f2);
    assert_int_equal(commit(n1, "full", "the VM was not running"), 200);
    json_auto_t *o2 = backup(n1);
    assert_string_equal(json_str(o2, "mode"), "full");
    assert_null(json_str(o2, "parent"));
    assert_string_equal(json_str(o2, "full_reason"), "the VM was not running");

    /* A failed one is nobody's base and has none. */
    _cleanup_free_ char *x = request();
    _cleanup_free_ char *fp = xasprintf("/v1/agent/backups/%s/fail", x);
    json_decref(api(a_cred, "POST", fp, "{\"error\":\"no\"}", 204));
    json_auto_t *xf = backup(x);
    assert_null(json_str(xf, "parent"));
    _cleanup_free_ char *n2 = take();
    json_auto_t *o3 = backup(n2);
    assert_string_equal(json_str(o3, "parent"), n1);

    /* Deleting a base: 409 naming what builds on it. */
    _cleanup_free_ char *bp = xasprintf("/v1/vms/ch-web/backups/%s", i1);
    json_auto_t *dep = api(alice, "DELETE", bp, NULL, 409);
    assert_non_null(strstr(json_str(dep, "detail"), i2));
    _cleanup_free_ char *tp = xasprintf("/v1/vms/ch-web/backups/%s", i2);
    json_decref(api(alice, "DELETE", tp, NULL, 204));
    json_decref(api(alice, "DELETE", bp, NULL, 204));
    /* The failed one, and the full f1 alone now, go too. */
    _cleanup_free_ char *xp = xasprintf("/v1/vms/ch-web/backups/%s", x);
    json_decref(api(alice, "DELETE", xp, NULL, 204));
    _cleanup_free_ char *f1p = xasprintf("/v1/vms/ch-web/backups/%s", f1);
    json_decref(api(alice, "DELETE", f1p, NULL, 204));
}

/* The desired document of a VM placed from an incremental backup names
 * the backups under it, its full one first. */
static void restore_names_the_chain(void **state)
{
    json_auto_t *l = api(alice, "GET", "/v1/vms/ch-web/backups", NULL, 200);
    /* Left: f2 (full), n1 (full), n2 (on n1). */
    json_t *items = json_object_get(l, "items");
    const char *top = NULL, *base = NULL;
    size_t i;
    json_t *b;
    json_array_foreach(items, i, b)
        if (json_str(b, "parent")) {
            top = json_str(b, "id");
            base = json_str(b, "parent");
        }
    assert_non_null(top);
    tu_sql(&ctl, "UPDATE vms SET restore_backup = '%s' WHERE id = '%s'", top,
           vm_id);
    json_auto_t *d = api(a_cred, "GET", "/v1/agent/desired", NULL, 200);
    json_t *rs = json_object_get(json_array_get(json_object_get(d, "vms"), 0),
                                 "restore");
    assert_string_equal(json_str(rs, "backup"), top);
    json_t *chain = json_object_get(rs, "chain");
    assert_int_equal(json_array_size(chain), 1);
    assert_string_equal(json_str(json_array_get(chain, 0), "backup"), base);
    assert_int_equal(strlen(json_str(json_array_get(chain, 0), "sha256")),
                     64);
    /* The base is not deleted: the top builds on it. */
    _cleanup_free_ char *bp = xasprintf("/v1/vms/ch-web/backups/%s", base);
    json_decref(api(alice, "DELETE", bp, NULL, 409));
    tu_sql(&ctl, "UPDATE vms SET restore_backup = NULL WHERE id = '%s'",
           vm_id);
}

/* keep=1 with a chain: the backups past the keep that another builds on
 * stay while it does; once a new full one is the newest, the whole old
 * chain goes, top first. */
static void retention_keeps_chains_whole(void **state)
{
    json_decref(api(alice, "POST", "/v1/vms/ch-web/backup-schedule",
                    "{\"schedule\":\"hourly\",\"keep\":1}", 200));
    json_auto_t *vm = api(alice, "GET", "/v1/vms/ch-web", NULL, 200);
    int64_t t = 0;
    assert_int_equal(time_parse_rfc3339(json_str(vm, "backup_next_at"), &t),
                     0);
    /* Three scheduled backups, each at its slot an hour apart. */
    char *ids[3] = { NULL, NULL, NULL };
    bool inc[3];
    for (int k = 0; k < 3; k++) {
        clock_to(t + 3600 * k + 10 * ticks);
        int64_t end = mono_ms() + 10000;
        char *found = NULL;
        while (!found && mono_ms() < end) {
            json_auto_t *l = api(alice, "GET", "/v1/vms/ch-web/backups", NULL,
                                 200);
            size_t i;
            json_t *b;
            json_array_foreach(json_object_get(l, "items"), i, b)
                if (streq(json_str(b, "state"), "pending"))
                    found = xstrdup(json_str(b, "id"));
            if (!found)
                usleep(100 * 1000);
        }
        assert_non_null(found);
        json_auto_t *b = backup(found);
        inc[k] = streq(json_str(b, "mode"), "incremental");
        assert_int_equal(commit(found, inc[k] ? "incremental" : "full",
                                NULL), 200);
        ids[k] = found;
    }
    /* s0 on n2 (chain n1 <- n2 <- s0: depth 2, full-every 3), s1 full,
     * s2 on s1. */
    assert_true(inc[0]);
    assert_false(inc[1]);
    json_auto_t *s2 = backup(ids[2]);
    assert_string_equal(json_str(s2, "parent"), ids[1]);
    /* keep=1: s0 went once s1 was ready; s2 is kept (newest), and s1,
     * past the keep, is its base: kept. */
    int64_t end = mono_ms() + 10000;
    long st = 200;
    while (mono_ms() < end) {
        _cleanup_free_ char *p0 = xasprintf("/v1/vms/ch-web/backups/%s",
                                            ids[0]);
        json_auto_t *g = tu_api(&ctl, alice, "GET", p0, NULL, &st);
        if (st == 404)
            break;
        usleep(100 * 1000);
    }
    assert_int_equal(st, 404);
    /* s2's commit asked for a prune pass too: s1 stays under it. */
    usleep(2500 * 1000);
    json_decref(backup(ids[1]));
    json_decref(backup(ids[2]));
    for (int k = 0; k < 3; k++)
        free(ids[k]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chains_offered_until_full_every),
        cmocka_unit_test(restore_names_the_chain),
        cmocka_unit_test(retention_keeps_chains_whole),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
