/* fog-controller backup and restore: a backup taken while the controller
 * serves and writes is one consistent snapshot; restoring it into a
 * stopped controller brings back exactly the rows it held; files that are
 * not a fogfabric store are refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>

static struct tu_ctl ctl;
static char *tmp, *ctl_bin;

static int setup(void **state)
{
    tu_ctl_start(&ctl, NULL);
    tmp = tu_tempdir("pkbackup");
    ctl_bin = tu_bin("fog-controller");
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    if (tmp)
        tu_rmrf(tmp);
    free(tmp);
    free(ctl_bin);
    return 0;
}

static int64_t query_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int64_t v = -1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static int run_ctl(const char *verb, const char *flag, const char *file)
{
    char *argv[] = { ctl_bin, (char *)verb, "--data-dir", ctl.dir,
                     (char *)flag, (char *)file, NULL };
    int st;
    _cleanup_free_ char *out = tu_run(argv, &st);
    return st;
}

static void a_backup_while_serving_is_consistent_and_restores(void **state)
{
    /* A populated store: a tenant with a key and two VMs. */
    free(tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/accounts",
                      "{\"name\":\"alice\",\"role\":\"tenant\"}", 201, NULL));
    _cleanup_free_ char *key = tu_api_field(&ctl, ctl.admin_key, "POST",
                                            "/v1/keys",
                                            "{\"account\":\"alice\"}", 201,
                                            "secret");
    for (int i = 0; i < 2; i++) {
        _cleanup_free_ char *body = xasprintf(
            "{\"name\":\"vm%d\",\"vcpus\":1,\"memory_mib\":128,"
            "\"disk_gib\":1,\"image\":\"tiny\",\"allow_tcg\":true}", i);
        free(tu_api_field(&ctl, key, "POST", "/v1/vms", body, 201, NULL));
    }

    /* The backup runs while another client keeps writing. */
    struct tu_writer w;
    tu_writer_start(&w, &ctl, "w");
    tu_writer_wait(&w, 3);
    _cleanup_free_ char *bak = xasprintf("%s/fog-backup.db", tmp);
    int st = run_ctl("backup", "--to", bak);
    tu_writer_wait(&w, tu_writer_count(&w) + 2);
    int64_t total = tu_writer_stop(&w);
    assert_int_equal(st, 0);
    struct stat sb;
    assert_int_equal(stat(bak, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    /* One snapshot: accounts w0..wK with no gap, and the rows before. */
    int64_t ws = query_int(bak, "SELECT COUNT(*) FROM accounts WHERE name "
                                "LIKE 'w%'");
    assert_true(ws >= 3);
    _cleanup_free_ char *last = xasprintf(
        "SELECT COUNT(*) FROM accounts WHERE name = 'w%lld'",
        (long long)(ws - 1));
    assert_int_equal(query_int(bak, last), 1);
    assert_int_equal(query_int(bak, "SELECT COUNT(*) FROM vms"), 2);
    assert_int_equal(query_int(bak, "SELECT COUNT(*) FROM accounts WHERE "
                                    "name = 'alice'"), 1);
    assert_true(total > ws);

    /* Restore into the stopped controller: the later accounts are gone,
     * the snapshot's rows and the keys work again. */
    tu_ctl_stop(&ctl, SIGTERM);
    assert_int_equal(run_ctl("restore", "--from", bak), 0);
    tu_ctl_restart(&ctl);
    long code;
    json_auto_t *vms = tu_api(&ctl, key, "GET", "/v1/vms", NULL, &code);
    assert_int_equal(code, 200);
    json_t *list = json_is_array(vms) ? vms : json_object_get(vms, "items");
    assert_int_equal(json_array_size(list), 2);
    _cleanup_free_ char *gone = xasprintf("/v1/accounts/w%lld",
                                          (long long)(total - 1));
    json_auto_t *g = tu_api(&ctl, ctl.admin_key, "GET", gone, NULL, &code);
    assert_int_equal(code, 404);
    _cleanup_free_ char *kept = xasprintf("/v1/accounts/w%lld",
                                          (long long)(ws - 1));
    json_auto_t *k = tu_api(&ctl, ctl.admin_key, "GET", kept, NULL, &code);
    assert_int_equal(code, 200);
}

static void what_is_not_a_store_is_refused(void **state)
{
    _cleanup_free_ char *junk = xasprintf("%s/junk.db", tmp);
    assert_int_equal(file_write_atomic(junk, "not sqlite", 10, 0600), 0);
    assert_int_equal(run_ctl("restore", "--from", junk), 1);
    /* An sqlite file of another program. */
    _cleanup_free_ char *other = xasprintf("%s/other.db", tmp);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(other, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(run_ctl("restore", "--from", other), 1);
    _cleanup_free_ char *none = xasprintf("%s/none.db", tmp);
    assert_int_equal(run_ctl("restore", "--from", none), 1);
    assert_int_equal(run_ctl("backup", "--from", none), 2);
    /* The controller still serves its own store. */
    long code;
    json_auto_t *j = tu_api(&ctl, ctl.admin_key, "GET", "/v1/accounts", NULL,
                            &code);
    assert_int_equal(code, 200);
}

int main(void)
{
    tu_sqlite_only("fog-controller backup and restore copy the hub's sqlite "
                   "file; a PostgreSQL store is backed up with its own tools");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_backup_while_serving_is_consistent_and_restores),
        cmocka_unit_test(what_is_not_a_store_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
