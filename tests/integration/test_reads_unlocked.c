/* Reads never wait for the store's writer: while another connection holds
 * sqlite's write lock (as a long write transaction would), GETs with a key
 * used a moment ago still answer at once. An authenticated request used to
 * issue its key's last-use UPDATE on every call, which queued each GET
 * behind the writer's lock (here for the controller's 5 s busy timeout).
 * The wait below is 4 s, shorter than that timeout, and the answers need
 * milliseconds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <pthread.h>
#include <sqlite3.h>
#include <time.h>

static struct tu_ctl ctl;
static char *key;

struct getter {
    const char *path;
    long status;
    bool done;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

static void *get_main(void *arg)
{
    struct getter *g = arg;
    long st = 0;
    json_decref(tu_api(&ctl, key, "GET", g->path, NULL, &st));
    pthread_mutex_lock(&g->lock);
    g->status = st;
    g->done = true;
    pthread_cond_signal(&g->cond);
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

static void gets_answer_while_the_write_lock_is_held(void **state)
{
    (void)state;
    /* The key's last use is now: nothing to write for the next minute. */
    free(tu_api_field(&ctl, key, "POST", "/v1/vms",
                      "{\"name\":\"r1\",\"vcpus\":1,\"memory_mib\":64,"
                      "\"disk_gib\":1,\"image\":\"tiny\",\"power_state\":"
                      "\"stopped\"}", 201, NULL));
    _cleanup_free_ char *path = xasprintf("%s/fog.db", ctl.dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    static const char *const paths[] = { "/v1/vms", "/v1/vms/r1",
                                         "/v1/networks" };
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        struct getter g = { paths[i], 0, false, PTHREAD_MUTEX_INITIALIZER,
                            PTHREAD_COND_INITIALIZER };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, get_main, &g), 0);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 4;
        pthread_mutex_lock(&g.lock);
        while (!g.done &&
               pthread_cond_timedwait(&g.cond, &g.lock, &until) == 0)
            ;
        bool done = g.done;
        pthread_mutex_unlock(&g.lock);
        if (!done) {
            /* Let it through so the thread can be joined, then fail. */
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            pthread_join(t, NULL);
            fail_msg("GET %s waited for the writer's lock", paths[i]);
        }
        pthread_join(t, NULL);
        assert_int_equal(g.status, 200);
    }
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
}

static int setup(void **state)
{
    (void)state;
    tu_ctl_start(&ctl, NULL);
    key = tu_account(&ctl, "reader", "tenant");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_ctl_destroy(&ctl);
    free(key);
    return 0;
}

int main(void)
{
    tu_sqlite_only("it holds sqlite's write lock");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gets_answer_while_the_write_lock_is_held),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
