/* Backup schedules, retention and the backup store's hygiene, with the
 * controller's clock moved through its test seam (FOG_TEST_CLOCK) and the
 * node's side spoken directly: a due schedule starts exactly one backup
 * and never a second while one is under way; keep=N prunes the oldest
 * scheduled backups, never the newest, one being restored, or a manual
 * one, and failed scheduled ones past the same count; the sweep removes
 * planted orphans (at start and periodically) and abandoned uploads,
 * never a live blob, and counts them; a backup delete whose unlink fails
 * leaves no row, and one whose commit fails keeps its blob; a chunk on a
 * slow disk holds no store transaction; an evacuation wakes the new
 * node's poll after its commit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct tu_ctl ctl;
static char *alice;
static char *a_id, *a_cred, *b_id, *b_cred;
static char *clock_file, *fault_file, *tmp;
static char *vm_id, *host_cred;
/* The clock as the controller sees it is the wall clock plus skew. */
static int64_t skew;
/* What the VM's node reports of it. */
static const char *vm_state = "running";
static const char *const serve_args[] = { "--heartbeat", "3600", NULL };

static json_t *api(const char *key, const char *method, const char *path,
                   const char *body, long want)
{
    return tu_api_want(&ctl, key, method, path, body, want);
}

static void set_skew(int64_t s)
{
    skew = s;
    _cleanup_free_ char *t = xasprintf("%lld\n", (long long)s);
    assert_int_equal(file_write_atomic(clock_file, t, strlen(t), 0600), 0);
}

/* Move the controller's clock to `at` (plus a little, as its passes run
 * once a second) and tell it both nodes are still there. */
static void clock_to(int64_t at)
{
    set_skew(at - (int64_t)time(NULL));
    json_decref(api(a_cred, "POST", "/v1/agent/status", "{\"vms\":[]}", 200));
    _cleanup_free_ char *st = xasprintf("{\"vms\":[{\"id\":\"%s\",\"state\":"
                                        "\"%s\"}]}", vm_id, vm_state);
    json_decref(api(host_cred, "POST", "/v1/agent/status", st, 200));
}

static void fault(const char *step)
{
    tu_fault(fault_file, step);
}

static json_t *backups(void)
{
    json_auto_t *j = api(alice, "GET", "/v1/vms/sc-web/backups", NULL, 200);
    return json_incref(json_object_get(j, "items"));
}

/* Wait up to ms for the VM to have n backups; the list. */
static json_t *wait_backups(size_t n, int ms)
{
    int64_t end = mono_ms() + ms;
    for (;;) {
        json_t *l = backups();
        if (json_array_size(l) == n || mono_ms() > end)
            return l;
        json_decref(l);
        usleep(100 * 1000);
    }
}

static int64_t next_at(void)
{
    json_auto_t *vm = api(alice, "GET", "/v1/vms/sc-web", NULL, 200);
    int64_t t = 0;
    assert_int_equal(time_parse_rfc3339(json_str(vm, "backup_next_at"), &t),
                     0);
    return t;
}

static char *blob_path(const char *id, bool part)
{
    return xasprintf("%s/backups/%s%s", ctl.dir, id, part ? ".part" : "");
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static bool wait_gone(const char *path, int ms)
{
    int64_t end = mono_ms() + ms;
    while (exists(path) && mono_ms() < end)
        usleep(100 * 1000);
    return !exists(path);
}

/* Upload and commit backup id as its node would. */
static void complete(const char *id)
{
    assert_int_equal(tu_backup_complete(&ctl, host_cred, id, NULL, NULL),
                     200);
}

static double metric(const char *prefix)
{
    _cleanup_free_ char *m = tu_metrics_text(&ctl);
    return tu_metric(m, prefix);
}

static int count_events(const char *action)
{
    _cleanup_free_ char *n = tu_sql_text(&ctl, "SELECT COUNT(*) FROM events "
                                         "WHERE action = '%s' AND target = "
                                         "'%s'", action, vm_id);
    return atoi(n ? n : "0");
}

static int setup(void **state)
{
    tmp = tu_tempdir("bsched");
    clock_file = xasprintf("%s/clock", tmp);
    fault_file = xasprintf("%s/fault", tmp);
    setenv("FOG_TEST_CLOCK", clock_file, 1);
    setenv("FOG_TEST_FAULT", fault_file, 1);
    set_skew(0);
    tu_ctl_start(&ctl, serve_args);
    alice = tu_account(&ctl, "sc-alice", "tenant");
    assert_int_equal(tu_node_join(&ctl, ctl.admin_key, "sc-a", NULL, &a_id,
                                  &a_cred), 201);
    assert_int_equal(tu_node_join(&ctl, ctl.admin_key, "sc-b", NULL, &b_id,
                                  &b_cred), 201);
    json_decref(api(a_cred, "POST", "/v1/agent/status", "{\"vms\":[]}", 200));
    json_decref(api(b_cred, "POST", "/v1/agent/status", "{\"vms\":[]}", 200));
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    tu_rmrf(tmp);
    free(tmp);
    free(clock_file);
    free(fault_file);
    free(alice);
    free(a_id);
    free(a_cred);
    free(b_id);
    free(b_cred);
    free(vm_id);
    unsetenv("FOG_TEST_CLOCK");
    unsetenv("FOG_TEST_FAULT");
    return 0;
}

/* fogctl create --backup-schedule hourly --backup-keep 2: the VM shows
 * its schedule; nothing starts before its slot, exactly one backup at it,
 * and none more while that one is under way. */
static void due_schedule_starts_exactly_one_backup(void **state)
{
    int st;
    _cleanup_free_ char *out = tu_fogctl(
        &ctl, alice, &st, "create", "sc-web", "--cpus", "1", "--memory",
        "128M", "--disk", "1G", "--image", "fog-tiny", "--allow-tcg",
        "--backup-schedule", "hourly", "--backup-keep", "2", NULL);
    if (st != 0)
        fail_msg("create exited %d: %s", st, out);
    json_auto_t *vm = api(alice, "GET", "/v1/vms/sc-web", NULL, 200);
    vm_id = xstrdup(json_str(vm, "id"));
    assert_string_equal(json_str(vm, "backup_schedule"), "hourly");
    assert_int_equal(json_int(vm, "backup_keep", 0), 2);
    host_cred = streq(json_str(vm, "node_id"), a_id) ? a_cred : b_cred;
    free(out);
    out = tu_fogctl(&ctl, alice, &st, "dominfo", "sc-web", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *shown = tu_field(out, "backup_schedule");
    assert_non_null(shown);
    assert_string_equal(shown, "hourly");

    /* Its slot is within the next hour, at the VM's own offset. */
    int64_t t = next_at();
    assert_true(t > now_s() && t <= now_s() + 3600);

    clock_to(t - 30);
    usleep(2500 * 1000);
    json_auto_t *none = backups();
    assert_int_equal(json_array_size(none), 0);

    clock_to(t);
    json_auto_t *one = wait_backups(1, 10000);
    assert_int_equal(json_array_size(one), 1);
    json_t *b1 = json_array_get(one, 0);
    assert_string_equal(json_str(b1, "kind"), "scheduled");
    assert_string_equal(json_str(b1, "state"), "pending");
    assert_int_equal(count_events("vm.backup_scheduled"), 1);
    /* The next slot is an hour on. */
    assert_int_equal(next_at(), t + 3600);

    /* The next slot comes while the first is still under way: nothing
     * more starts, and the VM tries again a minute later. */
    clock_to(t + 3600);
    usleep(2500 * 1000);
    json_auto_t *still = backups();
    assert_int_equal(json_array_size(still), 1);
    assert_int_equal(count_events("vm.backup_scheduled"), 1);
    int64_t retry = next_at();
    assert_true(retry > t + 3600 && retry <= t + 3600 + 65);

    /* Once it is in, the retry starts the second, of the VM stopped. */
    complete(json_str(b1, "id"));
    vm_state = "stopped";
    clock_to(retry);
    json_auto_t *two = wait_backups(2, 10000);
    assert_int_equal(json_array_size(two), 2);
    assert_int_equal(count_events("vm.backup_scheduled"), 2);
    vm_state = "running";

    /* The spelling: create --schedule daily --keep 3. */
    free(out);
    out = tu_fogctl(&ctl, alice, &st, "create", "sc-other", "--cpus", "1",
                    "--memory", "128M", "--disk", "1G", "--image", "fog-tiny",
                    "--allow-tcg", "--stopped", "--schedule", "daily",
                    "--keep", "3", NULL);
    if (st != 0)
        fail_msg("create exited %d: %s", st, out);
    json_auto_t *other = api(alice, "GET", "/v1/vms/sc-other", NULL, 200);
    assert_string_equal(json_str(other, "backup_schedule"), "daily");
    assert_int_equal(json_int(other, "backup_keep", 0), 3);
    int64_t d = 0;
    assert_int_equal(time_parse_rfc3339(json_str(other, "backup_next_at"), &d),
                     0);
    assert_true(d > now_s() && d <= now_s() + 86400 && d % 86400 < 3600);
    json_decref(api(alice, "DELETE", "/v1/vms/sc-other", NULL, 202));

    /* Off stops it; the API refuses a keep of 0 or an unknown schedule. */
    free(out);
    out = tu_fogctl(&ctl, alice, &st, "backup-schedule", "sc-web", "off", NULL);
    assert_int_equal(st, 0);
    json_auto_t *off = api(alice, "GET", "/v1/vms/sc-web", NULL, 200);
    assert_string_equal(json_str(off, "backup_schedule"), "off");
    assert_true(json_is_null(json_object_get(off, "backup_next_at")));
    json_decref(api(alice, "POST", "/v1/vms/sc-web/backup-schedule",
                    "{\"schedule\":\"hourly\",\"keep\":0}", 400));
    json_decref(api(alice, "POST", "/v1/vms/sc-web/backup-schedule",
                    "{\"schedule\":\"sometimes\"}", 400));
    tu_run_with_stderr = true;
    free(out);
    out = tu_fogctl(&ctl, alice, &st, "backup-schedule", "sc-web", "daily",
                    "--keep", "0", NULL);
    assert_int_not_equal(st, 0);
    assert_non_null(strstr(out, "--keep"));
    free(out);
    out = tu_fogctl(&ctl, alice, &st, "backup-schedule", "no-such-vm",
                    "daily", NULL);
    assert_int_not_equal(st, 0);
    assert_non_null(strstr(out, "fogctl: "));
    tu_run_with_stderr = false;
}

/* keep=2: a third ready scheduled backup prunes the oldest one (row, blob
 * and an event); one a placement restores from is never pruned, nor a
 * manual one, nor the newest. */
static void keep_prunes_the_oldest_never_the_newest_or_in_use(void **state)
{
    int st;
    /* A manual backup, older than the scheduled ones to come. */
    json_auto_t *man = api(alice, "POST", "/v1/vms/sc-web/backups", NULL, 202);
    _cleanup_free_ char *manual = xstrdup(json_str(man, "id"));
    json_auto_t *l = backups();
    /* The second scheduled one is still pending: in. */
    for (size_t i = 0; i < json_array_size(l); i++)
        if (!streq(json_str(json_array_get(l, i), "state"), "ready"))
            complete(json_str(json_array_get(l, i), "id"));

    _cleanup_free_ char *out = tu_fogctl(&ctl, alice, &st, "backup-schedule",
                                         "sc-web", "hourly", "--keep", "2",
                                         NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "keeping 2"));
    clock_to(next_at());
    json_auto_t *four = wait_backups(4, 10000);
    assert_int_equal(json_array_size(four), 4);
    /* Oldest first: scheduled 1, scheduled 2, manual, scheduled 3. */
    json_t *s3 = NULL;
    for (size_t i = 0; i < 4; i++) {
        json_t *b = json_array_get(four, i);
        if (streq(json_str(b, "state"), "pending"))
            s3 = b;
    }
    assert_non_null(s3);
    _cleanup_free_ char *s3id = xstrdup(json_str(s3, "id"));
    _cleanup_free_ char *s1id = NULL, *s2id = NULL;
    for (size_t i = 0; i < 4; i++) {
        json_t *b = json_array_get(four, i);
        if (!streq(json_str(b, "kind"), "scheduled") ||
            streq(json_str(b, "id"), s3id))
            continue;
        if (!s1id)
            s1id = xstrdup(json_str(b, "id"));
        else
            s2id = xstrdup(json_str(b, "id"));
    }
    assert_non_null(s2id);
    _cleanup_free_ char *s1file = blob_path(s1id, false);
    _cleanup_free_ char *s2file = blob_path(s2id, false);
    assert_true(exists(s1file));

    complete(s3id);
    json_auto_t *three = wait_backups(3, 10000);
    assert_int_equal(json_array_size(three), 3);
    assert_null(tu_find(three, "id", s1id));
    assert_non_null(tu_find(three, "id", s2id));
    assert_non_null(tu_find(three, "id", s3id));
    assert_non_null(tu_find(three, "id", manual));
    assert_true(wait_gone(s1file, 5000));
    assert_true(exists(s2file));
    assert_int_equal(count_events("vm.backup_pruned"), 1);

    /* keep=1 while s2 is what a placement restores from: s2 stays, s3 is
     * the newest, the manual one is not the schedule's. */
    tu_sql(&ctl, "UPDATE vms SET restore_backup = '%s' WHERE id = '%s'", s2id,
           vm_id);
    free(out);
    out = tu_fogctl(&ctl, alice, &st, "backup-schedule", "sc-web", "hourly",
                    "--keep", "1", NULL);
    assert_int_equal(st, 0);
    usleep(2500 * 1000);
    json_auto_t *kept = backups();
    assert_int_equal(json_array_size(kept), 3);
    assert_true(exists(s2file));

    /* Restored: now s2 goes, s3 (the newest) and the manual one stay. */
    tu_sql(&ctl, "UPDATE vms SET restore_backup = NULL WHERE id = '%s'", vm_id);
    json_decref(api(alice, "POST", "/v1/vms/sc-web/backup-schedule",
                    "{\"schedule\":\"hourly\",\"keep\":1}", 200));
    json_auto_t *two = wait_backups(2, 10000);
    assert_int_equal(json_array_size(two), 2);
    assert_non_null(tu_find(two, "id", s3id));
    assert_non_null(tu_find(two, "id", manual));
    assert_true(wait_gone(s2file, 5000));
    assert_int_equal(count_events("vm.backup_pruned"), 2);
}

/* Files no backup owns are removed when the controller starts, a live
 * blob is not, and the metric counts them. */
static void sweep_removes_planted_orphans_not_live_blobs(void **state)
{
    char orphan[UUID_STR_LEN + 1], part[UUID_STR_LEN + 1];
    uuid_generate_str(orphan);
    uuid_generate_str(part);
    _cleanup_free_ char *of = blob_path(orphan, false);
    _cleanup_free_ char *pf = blob_path(part, true);
    _cleanup_free_ char *junk = xasprintf("%s/backups/notes.txt", ctl.dir);
    assert_int_equal(file_write_atomic(of, "x", 1, 0600), 0);
    assert_int_equal(file_write_atomic(pf, "y", 1, 0600), 0);
    assert_int_equal(file_write_atomic(junk, "z", 1, 0600), 0);
    json_auto_t *l = backups();
    size_t n = json_array_size(l);
    assert_true(n > 0);

    tu_ctl_stop(&ctl, SIGTERM);
    tu_ctl_restart(&ctl);
    assert_true(wait_gone(of, 10000));
    assert_true(wait_gone(pf, 10000));
    /* Not the store's: left alone. */
    assert_true(exists(junk));
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *live = blob_path(
            json_str(json_array_get(l, i), "id"), false);
        assert_true(exists(live));
    }
    json_auto_t *after = backups();
    assert_int_equal(json_array_size(after), n);
    assert_true(metric("fog_backup_orphans_removed_total{kind=\"blob\"}") >=
                1);
    assert_true(metric("fog_backup_orphans_removed_total{kind=\"upload\"}") >=
                1);
    /* Debian 12: package prometheus. */
    _cleanup_free_ char *promtool = tu_which("promtool");
    if (promtool) {
        _cleanup_free_ char *text = tu_metrics_text(&ctl);
        assert_int_equal(tu_promtool(promtool, tmp, "check metrics", text), 0);
    }
}

/* A delete whose unlink fails answers 204 with no row left (the blob is
 * an orphan the next sweep removes); a delete whose commit fails keeps
 * both row and blob. */
static void delete_never_leaves_a_row_without_its_blob(void **state)
{
    json_auto_t *l = backups();
    assert_true(json_array_size(l) >= 2);
    _cleanup_free_ char *x = xstrdup(json_str(json_array_get(l, 0), "id"));
    _cleanup_free_ char *y = xstrdup(json_str(json_array_get(l, 1), "id"));
    _cleanup_free_ char *xf = blob_path(x, false), *yf = blob_path(y, false);
    _cleanup_free_ char *xp = xasprintf("/v1/vms/sc-web/backups/%s", x);
    _cleanup_free_ char *yp = xasprintf("/v1/vms/sc-web/backups/%s", y);
    assert_true(exists(xf));
    assert_true(exists(yf));

    /* The commit fails: 503, and the backup is whole. */
    fault("request-commit");
    json_decref(api(alice, "DELETE", yp, NULL, 503));
    fault(NULL);
    json_auto_t *ry = api(alice, "GET", yp, NULL, 200);
    assert_string_equal(json_str(ry, "state"), "ready");
    assert_true(exists(yf));

    /* The unlink fails: the row is gone, the bytes stay as an orphan. */
    double before = metric("fog_backup_orphans_removed_total{kind=\"blob\"}");
    fault("bstore-remove");
    json_decref(api(alice, "DELETE", xp, NULL, 204));
    fault(NULL);
    json_decref(api(alice, "GET", xp, NULL, 404));
    assert_true(exists(xf));
    _cleanup_free_ char *rows = tu_sql_text(&ctl, "SELECT COUNT(*) FROM "
                                            "vm_backups WHERE id = '%s'", x);
    assert_string_equal(rows, "0");
    /* The periodic sweep removes it. */
    clock_to(now_s() + 3601);
    assert_true(wait_gone(xf, 10000));
    assert_true(exists(yf));
    assert_true(metric("fog_backup_orphans_removed_total{kind=\"blob\"}") >=
                before + 1);
}

struct slow_put {
    const char *id;
    long status;
};

static void *slow_put(void *arg)
{
    struct slow_put *p = arg;
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/backups/%s?offset=0",
                                         ctl.url, p->id);
    struct tu_resp r = { 0 };
    p->status = tu_http("PUT", url, host_cred, ctl.ca, "abc", 3,
                        "application/octet-stream", NULL, &r);
    tu_resp_clear(&r);
    return NULL;
}

/* A chunk written to a slow disk holds no store transaction: another
 * write goes through meanwhile. */
static void slow_chunk_write_does_not_hold_the_store(void **state)
{
    json_auto_t *b = api(alice, "POST", "/v1/vms/sc-web/backups", NULL, 202);
    struct slow_put p = { json_str(b, "id"), 0 };
    fault("bstore-slow");
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_put, &p), 0);
    /* Its upload is open: the chunk is being written. A request made now
     * reaches another HTTP worker (the PUT's is busy), so only a store
     * held by the PUT can make it wait. */
    _cleanup_free_ char *pf = blob_path(p.id, true);
    int64_t end = mono_ms() + 5000;
    while (!exists(pf) && mono_ms() < end)
        usleep(20 * 1000);
    usleep(200 * 1000);
    int64_t start = mono_ms();
    json_decref(api(alice, "POST", "/v1/vms/sc-web/backup-schedule",
                    "{\"schedule\":\"hourly\"}", 200));
    int64_t took = mono_ms() - start;
    pthread_join(t, NULL);
    fault(NULL);
    assert_int_equal(p.status, 200);
    if (took >= 1500)
        fail_msg("a write waited %lld ms for a chunk's disk write",
                 (long long)took);
    /* Failed by its node: it leaves nothing under way. */
    _cleanup_free_ char *fp = xasprintf("/v1/agent/backups/%s/fail", p.id);
    json_decref(api(host_cred, "POST", fp, "{\"error\":\"test\"}", 204));
}

/* A backup whose node stopped sending is failed as abandoned after
 * backup-abandon-after, and its partial upload removed. */
static void abandoned_upload_is_failed_and_removed(void **state)
{
    json_auto_t *b = api(alice, "POST", "/v1/vms/sc-web/backups", NULL, 202);
    _cleanup_free_ char *id = xstrdup(json_str(b, "id"));
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/backups/%s?offset=0",
                                         ctl.url, id);
    struct tu_resp r = { 0 };
    assert_int_equal(tu_http("PUT", url, host_cred, ctl.ca, "abc", 3,
                             "application/octet-stream", NULL, &r), 200);
    tu_resp_clear(&r);
    _cleanup_free_ char *pf = blob_path(id, true);
    assert_true(exists(pf));
    double before = metric("fog_backup_orphans_removed_total{kind=\"upload\"}");
    /* Within the limit: kept. */
    clock_to(now_s() + 3601);
    usleep(2500 * 1000);
    assert_true(exists(pf));
    /* Past it (a day by default): failed, and its bytes gone with the
     * sweep an hour after. */
    clock_to(now_s() + 86400 + 3601);
    _cleanup_free_ char *p = xasprintf("/v1/vms/sc-web/backups/%s", id);
    int64_t end = mono_ms() + 10000;
    json_t *f = NULL;
    do {
        json_decref(f);
        usleep(100 * 1000);
        f = api(alice, "GET", p, NULL, 200);
    } while (!streq(json_str(f, "state"), "failed") && mono_ms() < end);
    assert_string_equal(json_str(f, "state"), "failed");
    assert_non_null(strstr(json_str(f, "error"), "abandoned"));
    json_decref(f);
    clock_to(now_s() + 3601);
    assert_true(wait_gone(pf, 10000));
    assert_true(metric("fog_backup_orphans_removed_total{kind=\"upload\"}") >=
                before + 1);
}

/* The id of the VM's pending scheduled backup, waited for up to ms. */
static char *wait_pending_scheduled(int ms)
{
    int64_t end = mono_ms() + ms;
    do {
        json_auto_t *l = backups();
        for (size_t i = 0; i < json_array_size(l); i++) {
            json_t *b = json_array_get(l, i);
            if (streq(json_str(b, "kind"), "scheduled") &&
                streq(json_str(b, "state"), "pending"))
                return xstrdup(json_str(b, "id"));
        }
        usleep(100 * 1000);
    } while (mono_ms() < end);
    return NULL;
}

/* keep=1: of two failed scheduled backups only the newer stays. */
static void failed_scheduled_backups_past_keep_are_pruned(void **state)
{
    _cleanup_free_ char *f1 = NULL, *f2 = NULL;
    for (int k = 0; k < 2; k++) {
        clock_to(next_at());
        char *id = wait_pending_scheduled(10000);
        assert_non_null(id);
        _cleanup_free_ char *fp = xasprintf("/v1/agent/backups/%s/fail", id);
        json_decref(api(host_cred, "POST", fp, "{\"error\":\"disk gone\"}",
                        204));
        *(k ? &f2 : &f1) = id;
    }
    int64_t end = mono_ms() + 10000;
    size_t failed;
    bool has_f2;
    do {
        usleep(200 * 1000);
        json_auto_t *l = backups();
        failed = 0;
        for (size_t i = 0; i < json_array_size(l); i++) {
            json_t *b = json_array_get(l, i);
            failed += streq(json_str(b, "kind"), "scheduled") &&
                      streq(json_str(b, "state"), "failed");
        }
        has_f2 = tu_find(l, "id", f2) != NULL;
        if (failed == 1 && has_f2 && !tu_find(l, "id", f1))
            break;
    } while (mono_ms() < end);
    assert_int_equal(failed, 1);
    assert_true(has_f2);
}

/* The VM's node goes silent: the leader restores it on the other node,
 * whose parked poll is woken after that commits (a poll woken before it
 * reads the old revision and parks again until its wait runs out). */
static void evacuation_wakes_the_new_node_after_its_commit(void **state)
{
    json_decref(api(alice, "POST", "/v1/vms/sc-web/restart-policy",
                    "{\"restart_policy\":\"on-host-failure\"}", 202));
    const char *other = host_cred == a_cred ? b_cred : a_cred;
    json_auto_t *d = api(other, "GET", "/v1/agent/desired", NULL, 200);
    struct tu_poll p;
    tu_poll_start(&p, &ctl, other, json_int(d, "revision", -1), 20);
    usleep(500 * 1000);
    fault("commit-slow");
    /* Past three heartbeats and evacuate-after for the VM's node; the
     * other one speaks. */
    set_skew(skew + 3 * 3600 + 600);
    int64_t start = mono_ms();
    json_decref(api(other, "POST", "/v1/agent/status", "{\"vms\":[]}", 200));
    _cleanup_free_ char *body = NULL;
    int64_t took = tu_poll_join(&p, start, &body);
    fault(NULL);
    assert_non_null(body);
    if (!strstr(body, vm_id) || took > 10000)
        fail_msg("the new node's poll answered after %lld ms, %s the VM",
                 (long long)took, strstr(body, vm_id) ? "with" : "without");
    json_auto_t *vm = api(alice, "GET", "/v1/vms/sc-web", NULL, 200);
    assert_string_not_equal(json_str(vm, "node_id"),
                            host_cred == a_cred ? a_id : b_id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(due_schedule_starts_exactly_one_backup),
        cmocka_unit_test(keep_prunes_the_oldest_never_the_newest_or_in_use),
        cmocka_unit_test(sweep_removes_planted_orphans_not_live_blobs),
        cmocka_unit_test(delete_never_leaves_a_row_without_its_blob),
        cmocka_unit_test(slow_chunk_write_does_not_hold_the_store),
        cmocka_unit_test(abandoned_upload_is_failed_and_removed),
        cmocka_unit_test(failed_scheduled_backups_past_keep_are_pruned),
        cmocka_unit_test(evacuation_wakes_the_new_node_after_its_commit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
