/* Reads never wait for the store's writer: while another connection holds
 * sqlite's write lock (as a long write transaction would), GETs with a key
 * used a moment ago still answer at once. An authenticated request used to
 * issue its key's last-use UPDATE on every call, which queued each GET
 * behind the writer's lock (here for the controller's 5 s busy timeout).
 * The wait below is 4 s, shorter than that timeout, and the answers need
 * milliseconds. The controller runs one connection thread, so a read
 * answered there while writes wait proves they never held that thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static struct tu_ctl ctl;
static char *key;

struct getter {
    const char *method, *path, *body;
    long status;
    bool done;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

static void *get_main(void *arg)
{
    struct getter *g = arg;
    long st = 0;
    json_decref(tu_api(&ctl, key, g->method, g->path, g->body, &st));
    pthread_mutex_lock(&g->lock);
    g->status = st;
    g->done = true;
    pthread_cond_signal(&g->cond);
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

static void call_start(struct getter *g, pthread_t *t)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    assert_int_equal(pthread_create(t, NULL, get_main, g), 0);
}

/* Whether g answered within ms. */
static bool call_wait(struct getter *g, int ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&g->lock);
    while (!g->done &&
           pthread_cond_timedwait(&g->cond, &g->lock, &until) == 0)
        ;
    bool done = g->done;
    pthread_mutex_unlock(&g->lock);
    return done;
}

/* Another connection to the controller's store holding its write lock
 * (as a long write transaction would); ROLLBACK and close it to let go. */
static sqlite3 *write_lock_take(void)
{
    _cleanup_free_ char *path = xasprintf("%s/fog.db", ctl.dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    return db;
}

static void gets_answer_while_the_write_lock_is_held(void **state)
{
    (void)state;
    /* The key's last use is now: nothing to write for the next minute. */
    free(tu_api_field(&ctl, key, "POST", "/v1/vms",
                      "{\"name\":\"r1\",\"vcpus\":1,\"memory_mib\":64,"
                      "\"disk_gib\":1,\"image\":\"tiny\",\"power_state\":"
                      "\"stopped\"}", 201, NULL));
    sqlite3 *db = write_lock_take();
    static const char *const paths[] = { "/v1/vms", "/v1/vms/r1",
                                         "/v1/networks" };
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        struct getter g = { "GET", paths[i], NULL, 0, false, {}, {} };
        pthread_t t;
        call_start(&g, &t);
        if (!call_wait(&g, 4000)) {
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

/* A POST whose transaction waits for the write lock holds the store's
 * writer; the next POST's credential is looked up on the connection
 * thread, from a reader, so that thread still answers a GET at once
 * (looked up on the writer, it waited there and the GET behind it). */
static void gets_answer_while_posts_wait_for_the_writer(void **state)
{
    (void)state;
    sqlite3 *db = write_lock_take();
    static const char *const vm =
        "{\"name\":\"%s\",\"vcpus\":1,\"memory_mib\":64,\"disk_gib\":1,"
        "\"image\":\"tiny\",\"power_state\":\"stopped\"}";
    _cleanup_free_ char *b1 = xasprintf(vm, "w1");
    _cleanup_free_ char *b2 = xasprintf(vm, "w2");
    struct getter p1 = { "POST", "/v1/vms", b1, 0, false, {}, {} };
    struct getter p2 = { "POST", "/v1/vms", b2, 0, false, {}, {} };
    struct getter g = { "GET", "/v1/vms", NULL, 0, false, {}, {} };
    pthread_t t1, t2, tg;
    struct timespec d = { 0, 300 * 1000 * 1000 };
    call_start(&p1, &t1);
    nanosleep(&d, NULL); /* p1 holds the writer, waiting for the lock */
    call_start(&p2, &t2);
    nanosleep(&d, NULL);
    call_start(&g, &tg);
    bool answered = call_wait(&g, 2500);
    bool posts_waited = !p1.done && !p2.done;
    /* Let the POSTs through so the threads can be joined. */
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    pthread_join(tg, NULL);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    if (!answered)
        fail_msg("GET /v1/vms waited behind POSTs waiting for the writer");
    assert_true(posts_waited);
    assert_int_equal(g.status, 200);
    assert_int_equal(p1.status, 201);
    assert_int_equal(p2.status, 201);
}

/* A thread's "se.slice" in ns from its /proc sched file, -1 without. */
static long long slice_of(const char *sched_path)
{
    _cleanup_free_ char *text = NULL;
    if (file_read(sched_path, 1 << 16, &text, NULL) < 0)
        return -1;
    const char *at = strstr(text, "\nse.slice");
    if (!at || !(at = strchr(at, ':')))
        return -1;
    return strtoll(at + 1, NULL, 10);
}

/* Whether this kernel keeps a slice a thread asks for (EEVDF's custom
 * slices, Linux 6.12): this thread asks for 100 us, then for the default
 * again. */
static bool kernel_takes_slices(void)
{
    struct {
        uint32_t size, policy;
        uint64_t flags;
        int32_t nice;
        uint32_t priority;
        uint64_t runtime, deadline, period;
    } at = { sizeof(at), SCHED_OTHER, 0, 0, 0, 100000, 0, 0 };
    if (syscall(SYS_sched_setattr, 0, &at, 0) < 0)
        return false;
    bool took = slice_of("/proc/thread-self/sched") == 100000;
    at.runtime = 0;
    syscall(SYS_sched_setattr, 0, &at, 0);
    return took;
}

/* When the CPU is short, a request's connection thread runs first: the
 * writers (fog-writer) sit at nice 19 and the connection thread that
 * served a request asks for a 100 us slice, which the kernel's EEVDF
 * scheduler puts on a CPU ahead of threads that run longer (the test
 * checks the slice only where the kernel keeps one). */
static void reads_get_the_cpu_before_writes(void **state)
{
    (void)state;
    struct getter g = { "GET", "/v1/vms", NULL, 0, false, {}, {} };
    pthread_t t;
    call_start(&g, &t);
    assert_true(call_wait(&g, 10000));
    pthread_join(t, NULL);
    assert_int_equal(g.status, 200);

    _cleanup_free_ char *tasks = xasprintf("/proc/%d/task", (int)ctl.pid);
    DIR *d = opendir(tasks);
    assert_non_null(d);
    int writers = 0, conns = 0, main_nice = 99, conn_nice = 99;
    long long conn_slice = -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *cp = xasprintf("%s/%s/comm", tasks, de->d_name);
        _cleanup_free_ char *sp = xasprintf("%s/%s/stat", tasks, de->d_name);
        _cleanup_free_ char *comm = NULL, *stat = NULL;
        if (file_read(cp, 256, &comm, NULL) < 0 ||
            file_read(sp, 4096, &stat, NULL) < 0)
            continue; /* the thread ended meanwhile */
        /* Field 19 of stat, counted after "(comm)": the nice value. */
        const char *p = strrchr(stat, ')');
        int nice = 99;
        assert_non_null(p);
        assert_int_equal(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u "
                                       "%*u %*u %*u %*u %*u %*d %*d %*d "
                                       "%d", &nice), 1);
        if (startswith(comm, "fog-writer")) {
            writers++;
            if (nice != 19)
                fail_msg("writer thread %s runs at nice %d", de->d_name,
                         nice);
        } else if (startswith(comm, "MHD-")) {
            conns++;
            _cleanup_free_ char *sch = xasprintf("%s/%s/sched", tasks,
                                                 de->d_name);
            conn_slice = slice_of(sch);
            conn_nice = nice;
        } else if (atoi(de->d_name) == (int)ctl.pid) {
            main_nice = nice;
        }
    }
    closedir(d);
    assert_int_equal(writers, 4);
    assert_int_equal(conns, 1); /* --threads 1 */
    /* The slice is asked for at the nice value the process runs at
     * (0 unless the suite itself runs under nice). */
    assert_int_equal(conn_nice, main_nice);
    if (kernel_takes_slices())
        assert_int_equal(conn_slice, 100000);
    else
        printf("(this kernel keeps no custom slice: not checked)\n");
}

static int setup(void **state)
{
    (void)state;
    static const char *const args[] = { "--threads", "1", NULL };
    tu_ctl_start(&ctl, args);
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
        cmocka_unit_test(gets_answer_while_posts_wait_for_the_writer),
        cmocka_unit_test(reads_get_the_cpu_before_writes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
