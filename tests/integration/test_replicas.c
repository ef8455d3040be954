/* Two controller replicas on one PostgreSQL database, as in a scaled-out
 * deployment: what one writes the other serves; a node parked on one is
 * woken by a change made through the other (LISTEN/NOTIFY); concurrent
 * creates through both never overcommit a node nor collide on addresses;
 * both ride out a database restart; exactly one replica schedules, and
 * when it stops the other takes over. Skipped without the PostgreSQL
 * server. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>

static struct tu_pg pg;
static char *dir, *ca, *admin, *logs[2], *urls[2];
static pid_t pids[2];
static int ports[2];

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void serve(int i)
{
    _cleanup_free_ char *bin = tu_bin("fog-controller");
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", ports[i]);
    /* Rate limits off, as tu_ctl's: a round makes over 50 calls with the
     * admin key, above the default 20 a second, and the default burst of
     * 100 ran out near the last round. */
    char *argv[] = { bin, "serve", "--data-dir", dir, "--database", pg.uri,
                     "--listen", listen, "--grace", "0", "--heartbeat", "1",
                     "--rate-ip", "0", "--rate-key", "0", "--rate-agent-ip",
                     "0", "--rate-node", "0", NULL };
    pids[i] = tu_spawn(argv, logs[i]);
    assert_true(pids[i] > 0);
    assert_int_equal(tu_wait_port(ports[i], 10000), 0);
}

static json_t *call(int i, const char *key, const char *method,
                    const char *path, const char *body, long *ret_status)
{
    const struct tu_ctl replica = { .url = urls[i], .ca = ca };
    return tu_api(&replica, key, method, path, body, ret_status);
}

static int setup(void **state)
{
    if (!tu_pg_start(&pg)) {
        tu_pg_stop(&pg);
        return 0;
    }
    dir = tu_tempdir("replicas");
    ca = xasprintf("%s/ca.pem", dir);
    _cleanup_free_ char *bin = tu_bin("fog-controller");
    char *argv[] = { bin, "init", "--data-dir", dir, "--database", pg.uri, NULL };
    int st;
    _cleanup_free_ char *out = tu_run(argv, &st);
    char *k = out ? strstr(out, "admin key: ") : NULL;
    if (st != 0 || !k) {
        fprintf(stderr, "init failed: %s\n", out ? out : "");
        return -1;
    }
    admin = xstrndup(k + 11, strcspn(k + 11, "\n"));
    for (int i = 0; i < 2; i++) {
        ports[i] = tu_free_port();
        urls[i] = xasprintf("https://127.0.0.1:%d", ports[i]);
        logs[i] = xasprintf("%s/controller-%d.log", dir, i);
        serve(i);
    }
    return 0;
}

static int teardown(void **state)
{
    for (int i = 0; i < 2; i++) {
        if (pids[i] > 0)
            tu_kill(pids[i], SIGTERM);
        free(urls[i]);
        free(logs[i]);
    }
    if (dir)
        tu_rmrf(dir);
    tu_pg_stop(&pg);
    free(dir);
    free(ca);
    free(admin);
    return 0;
}

/* Register a node through replica i with an admin token from replica j. */
static char *node_join(int i, int j, const char *name, char **ret_id)
{
    long st;
    json_auto_t *t = call(j, admin, "POST", "/v1/join-tokens", "{}", &st);
    assert_int_equal(st, 201);
    _cleanup_free_ char *body = xasprintf(
        "{\"token\":\"%s\",\"name\":\"%s\",\"inventory\":{\"vcpus\":8,"
        "\"memory_mib\":8192,\"disk_gib\":100,\"kvm\":false}}",
        json_str(t, "token"), name);
    json_auto_t *reg = call(i, NULL, "POST", "/v1/agent/register", body, &st);
    assert_int_equal(st, 201);
    *ret_id = xstrdup(json_str(reg, "node_id"));
    return xstrdup(json_str(reg, "credential"));
}

static void nap_ms(long ms)
{
    nanosleep(&(struct timespec){ ms / 1000, (ms % 1000) * 1000000 }, NULL);
}

/* A node's heartbeat (a poll that does not wait), through replica i. */
static void heartbeat(int i, const char *cred)
{
    long st;
    json_auto_t *d = call(i, cred, "GET", "/v1/agent/desired?wait=0", NULL, &st);
    assert_int_equal(st, 200);
}

/* One API call on its own thread. Jobs live in a pool, not on a test's
 * stack: an assertion that fails leaves the test while its jobs still
 * run, and the test's teardown then waits for them (jobs_reap), so that
 * they neither write into a stack frame that is gone nor load the
 * replicas under the next test. */
struct job {
    pthread_t t;
    bool used, running;
    int replica;
    const char *key, *method;
    char *path, *body;
    long status;
    json_t *reply;
    double took;
    _Atomic bool done;
};

static void *job_run(void *arg)
{
    struct job *j = arg;
    double t0 = now_s();
    j->reply = call(j->replica, j->key, j->method, j->path, j->body, &j->status);
    j->took = now_s() - t0;
    j->done = true;
    return NULL;
}

/* A round holds 50 at most (2 joins, 24 creates, 24 deletes). */
#define JOBS_MAX 64
static struct job jobs_pool[JOBS_MAX];

static struct job *job_start(int replica, const char *key, const char *method,
                             char *path, char *body)
{
    struct job *j = jobs_pool;
    while (j < jobs_pool + JOBS_MAX && j->used)
        j++;
    if (j == jobs_pool + JOBS_MAX) {
        free(path);
        free(body);
        fail_msg("more than %d jobs at once", JOBS_MAX);
    }
    *j = (struct job){ .used = true, .replica = replica, .key = key,
                       .method = method, .path = path, .body = body };
    if (pthread_create(&j->t, NULL, job_run, j) != 0) {
        free(path);
        free(body);
        *j = (struct job){ 0 };
        fail_msg("pthread_create failed");
    }
    j->running = true;
    return j;
}

/* Wait for j's call to end; its status and reply stay readable until
 * jobs_reap(). */
static void job_join(struct job *j)
{
    if (!j->running)
        return;
    pthread_join(j->t, NULL);
    j->running = false;
    free(j->path);
    free(j->body);
    j->path = j->body = NULL;
}

/* Wait for every job still running and free them all. */
static void jobs_reap(void)
{
    for (size_t i = 0; i < JOBS_MAX; i++) {
        if (!jobs_pool[i].used)
            continue;
        job_join(&jobs_pool[i]);
        json_decref(jobs_pool[i].reply);
        jobs_pool[i] = (struct job){ 0 };
    }
}

static int test_teardown(void **state)
{
    (void)state;
    jobs_reap();
    return 0;
}

/* After a round that failed: the VMs its creates made go too, so that
 * the next test's node does not take them. */
static int creates_teardown(void **state)
{
    for (size_t i = 0; i < JOBS_MAX; i++) {
        struct job *j = &jobs_pool[i];
        if (!j->used)
            continue;
        job_join(j);
        const char *id = json_str(j->reply, "id");
        if (streq(j->method, "POST") && j->status == 201 && id &&
            json_str(j->reply, "state")) {
            long st;
            _cleanup_free_ char *p = xasprintf("/v1/vms/%s", id);
            json_decref(call(0, admin, "DELETE", p, NULL, &st));
        }
    }
    return test_teardown(state);
}

/* A gauge of replica i's /metrics (-1 when unreadable). */
static long long metric(int i, const char *name)
{
    const struct tu_ctl replica = { .url = urls[i], .ca = ca };
    _cleanup_free_ char *url = xasprintf("%s/metrics", replica.url);
    struct tu_resp r;
    long st = tu_http("GET", url, admin, ca, NULL, 0, NULL, NULL, &r);
    long long v = -1;
    _cleanup_free_ char *pat = xasprintf("\n%s ", name);
    const char *at = st == 200 ? strstr(r.body, pat) : NULL;
    if (at)
        v = strtoll(at + strlen(pat), NULL, 10);
    tu_resp_clear(&r);
    return v;
}

/* How many replicas say they lead; asserts never both. -1 when one of
 * them cannot say. */
static int leaders(void)
{
    long long l0 = metric(0, "fog_leader"), l1 = metric(1, "fog_leader");
    if (l0 < 0 || l1 < 0)
        return -1;
    assert_false(l0 == 1 && l1 == 1);
    return (int)(l0 + l1);
}

static char *vm_state(int i, const char *vm)
{
    long st;
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s", vm);
    json_auto_t *v = call(i, admin, "GET", p, NULL, &st);
    return st == 200 ? xstrdup(json_str(v, "state")) : NULL;
}

static void replicas_share_state_wake_and_fail_over(void **state)
{
    if (!pg.uri)
        skip();
    long st;
    /* Written through one, served by the other. */
    json_auto_t *acct = call(0, admin, "POST", "/v1/accounts",
                             "{\"name\":\"shared\",\"role\":\"tenant\"}", &st);
    assert_int_equal(st, 201);
    json_auto_t *seen = call(1, admin, "GET", "/v1/accounts/shared", NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_str(seen, "id"), json_str(acct, "id"));

    /* A node registered on replica 1 parks its poll there. */
    _cleanup_free_ char *node_id = NULL;
    _cleanup_free_ char *cred = node_join(1, 0, "pg-node", &node_id);
    json_auto_t *d0 = call(1, cred, "GET", "/v1/agent/desired", NULL, &st);
    assert_int_equal(st, 200);
    json_int_t rev = json_integer_value(json_object_get(d0, "revision"));

    /* A VM created through replica 0 is placed (by whichever replica
     * leads) and the node's poll on replica 1 answers at once. */
    json_auto_t *vm = call(0, admin, "POST", "/v1/vms",
                           "{\"name\":\"v1\",\"vcpus\":1,\"memory_mib\":128,"
                           "\"disk_gib\":1,\"image\":\"tiny\",\"allow_tcg\":true}",
                           &st);
    assert_int_equal(st, 201);
    _cleanup_free_ char *p = xasprintf("/v1/agent/desired?since=%lld&wait=20",
                                       (long long)rev);
    double t0 = now_s();
    json_auto_t *d1 = call(1, cred, "GET", p, NULL, &st);
    double waited = now_s() - t0;
    assert_int_equal(st, 200);
    assert_true(json_integer_value(json_object_get(d1, "revision")) > rev);
    assert_int_equal(json_array_size(json_object_get(d1, "vms")), 1);
    assert_true(waited < 10.0);
    _cleanup_free_ char *s1 = vm_state(1, json_str(vm, "id"));
    assert_string_equal(s1, "scheduled");

    /* Replica 0 stops; replica 1 alone still schedules. */
    assert_int_equal(tu_kill(pids[0], SIGTERM), 0);
    pids[0] = 0;
    json_auto_t *vm2 = call(1, admin, "POST", "/v1/vms",
                            "{\"name\":\"v2\",\"vcpus\":1,\"memory_mib\":128,"
                            "\"disk_gib\":1,\"image\":\"tiny\",\"allow_tcg\":true}",
                            &st);
    assert_int_equal(st, 201);
    bool placed = false;
    for (int i = 0; i < 100 && !placed; i++) {
        /* Keep the node alive while we wait. */
        json_auto_t *hb = call(1, cred, "GET", "/v1/agent/desired?wait=0", NULL,
                               &st);
        _cleanup_free_ char *s2 = vm_state(1, json_str(vm2, "id"));
        placed = streq(s2, "scheduled");
        if (!placed)
            nanosleep(&(struct timespec){ 0, 200 * 1000 * 1000 }, NULL);
    }
    assert_true(placed);
}

/* Rounds of creates racing through both replicas onto one fresh 8-vCPU
 * node each: the node never holds more than 8 vCPUs, yet fills; no valid
 * create is refused (two replicas once picked one address, and placed
 * nine 1-vCPU VMs on 8 vCPUs). Two nodes joining at once through the two
 * replicas get distinct mesh addresses. */
/* The creates of a round go one at a time through the database (the
 * account's and the network's locks), so a sanitizer build, several times
 * slower, runs fewer rounds; FOG_PG_ROUNDS=n runs n. */
#ifdef __SANITIZE_ADDRESS__
#define ROUNDS 4
#else
#define ROUNDS 20
#endif
#define CREATES 24

static void concurrent_creates_never_overcommit_nor_refuse(void **state)
{
    if (!pg.uri)
        skip();
    double t_all = now_s();
    const char *env = getenv("FOG_PG_ROUNDS");
    int rounds = env && atoi(env) > 0 ? atoi(env) : ROUNDS;
    for (int round = 0; round < rounds; round++) {
        double t_round = now_s();
        /* Two nodes join at once, one through each replica; only the
         * first ever heartbeats, so it alone takes VMs. */
        struct job *join[2];
        for (int i = 0; i < 2; i++) {
            long st;
            json_auto_t *t = call(i, admin, "POST", "/v1/join-tokens", "{}", &st);
            assert_int_equal(st, 201);
            join[i] = job_start(i, NULL, "POST", xstrdup("/v1/agent/register"),
                      xasprintf("{\"token\":\"%s\",\"name\":\"pg-r%d-%d\","
                                "\"inventory\":{\"vcpus\":8,\"memory_mib\":"
                                "65536,\"disk_gib\":1000,\"kvm\":false}}",
                                json_str(t, "token"), round, i));
        }
        for (int i = 0; i < 2; i++)
            job_join(join[i]);
        for (int i = 0; i < 2; i++)
            assert_int_equal(join[i]->status, 201);
        assert_string_not_equal(json_str(join[0]->reply, "mesh_ip"),
                                json_str(join[1]->reply, "mesh_ip"));
        const char *node = json_str(join[0]->reply, "node_id");
        const char *cred = json_str(join[0]->reply, "credential");
        heartbeat(0, cred);

        struct job *jobs[CREATES];
        for (int k = 0; k < CREATES; k++)
            jobs[k] = job_start(k % 2, admin, "POST", xstrdup("/v1/vms"),
                      xasprintf("{\"name\":\"pg-r%d-v%d\",\"vcpus\":1,"
                                "\"memory_mib\":64,\"disk_gib\":1,\"image\":"
                                "\"tiny\",\"allow_tcg\":true}", round, k));
        for (int k = 0; k < CREATES; k++)
            job_join(jobs[k]);
        for (int k = 0; k < CREATES; k++)
            if (jobs[k]->status != 201)
                fail_msg("round %d: create %d refused with %ld: %s", round, k,
                         jobs[k]->status,
                         json_str(jobs[k]->reply, "detail") ?: "");

        /* The node fills (the leader places what a create left pending,
         * while the node keeps reporting) and never overflows. */
        _cleanup_free_ char *npath = xasprintf("/v1/nodes/%s", node);
        int64_t used = 0;
        for (double until = now_s() + 60; used < 8 && now_s() < until;) {
            long st;
            heartbeat(round % 2, cred);
            json_auto_t *n = call(round % 2, admin, "GET", npath, NULL, &st);
            assert_int_equal(st, 200);
            used = json_int(json_object_get(n, "used"), "vcpus", -1);
            if (used > 8)
                fail_msg("round %d: %lld vCPUs placed on an 8-vCPU node",
                         round, (long long)used);
            if (used < 8)
                nap_ms(100);
        }
        assert_int_equal(used, 8);

        /* The VMs left pending go (all at once, through both replicas),
         * so that no round inherits any; deleting a placed one only marks
         * it on its full node. */
        struct job *dels[CREATES] = { 0 };
        for (int k = 0; k < CREATES; k++)
            if (!streq(json_str(jobs[k]->reply, "state"), "scheduled"))
                dels[k] = job_start(k % 2, admin, "DELETE",
                                    xasprintf("/v1/vms/%s",
                                              json_str(jobs[k]->reply, "id")),
                                    NULL);
        for (int k = 0; k < CREATES; k++)
            if (dels[k])
                job_join(dels[k]);
        for (int k = 0; k < CREATES; k++)
            if (dels[k])
                assert_int_equal(dels[k]->status, 202);
        jobs_reap();
        fprintf(stderr, "round %d: %.1f s\n", round, now_s() - t_round);
    }
    fprintf(stderr, "%d rounds of %d concurrent creates: %.1f s\n", rounds,
            CREATES, now_s() - t_all);
}

/* The database restarts under running replicas: /healthz stays 200,
 * /readyz is 503 while it is down, calls succeed again within 5 s of its
 * return without restarting a replica, listening resumes, and one
 * replica at a time leads. */
static void database_restart_is_ridden_out(void **state)
{
    if (!pg.uri)
        skip();
    long st;
    _cleanup_free_ char *node_id = NULL;
    _cleanup_free_ char *cred = node_join(0, 0, "pg-restart", &node_id);
    int lead = -1;
    for (double until = now_s() + 30; lead != 1 && now_s() < until;) {
        lead = leaders();
        if (lead != 1)
            nap_ms(100);
    }
    assert_int_equal(lead, 1);

    tu_pg_halt(&pg);
    for (int i = 0; i < 2; i++) {
        json_auto_t *h = call(i, NULL, "GET", "/healthz", NULL, &st);
        assert_int_equal(st, 200);
        json_auto_t *rd = call(i, NULL, "GET", "/readyz", NULL, &st);
        assert_int_equal(st, 503);
        json_auto_t *acc = call(i, admin, "GET", "/v1/accounts", NULL, &st);
        assert_int_not_equal(st, 200);
    }
    assert_true(tu_pg_resume(&pg));
    double back = now_s();

    /* Both serve again within 5 s of the database's return. */
    bool ok[2] = { false, false };
    while (!(ok[0] && ok[1]) && now_s() - back < 5.0) {
        for (int i = 0; i < 2; i++) {
            json_auto_t *acc = call(i, admin, "GET", "/v1/accounts", NULL, &st);
            ok[i] = ok[i] || st == 200;
        }
        if (!(ok[0] && ok[1]))
            nap_ms(50);
    }
    fprintf(stderr, "serving again %.2f s after the database\n",
            now_s() - back);
    assert_true(ok[0] && ok[1]);
    for (int i = 0; i < 2; i++) {
        json_auto_t *rd = call(i, NULL, "GET", "/readyz", NULL, &st);
        assert_int_equal(st, 200);
        assert_true(json_int(rd, "schema_version", 0) > 0);
    }

    /* One replica takes the lead again, never both. */
    lead = -1;
    for (double until = now_s() + 30; lead != 1 && now_s() < until;) {
        lead = leaders();
        if (lead != 1)
            nap_ms(100);
    }
    assert_int_equal(lead, 1);
    for (int k = 0; k < 10; k++)
        assert_int_equal(leaders(), 1);

    /* Replica 1 listens again: a node parked there is woken by a change
     * made through replica 0 (another node joining), long before its
     * poll would run out. */
    struct job *poll = NULL;
    json_int_t rev = -1;
    bool parked = false;
    /* Park it (again, should anything else change the node meanwhile). */
    for (int tries = 0; tries < 5 && !parked; tries++) {
        if (tries > 0)
            job_join(poll);
        json_auto_t *d0 = call(1, cred, "GET", "/v1/agent/desired?wait=0",
                               NULL, &st);
        assert_int_equal(st, 200);
        rev = json_integer_value(json_object_get(d0, "revision"));
        long long parked0 = metric(1, "fog_agent_longpolls");
        poll = job_start(1, cred, "GET",
                  xasprintf("/v1/agent/desired?since=%lld&wait=30",
                            (long long)rev), NULL);
        for (double until = now_s() + 30; !parked && !poll->done &&
                                          now_s() < until;) {
            parked = metric(1, "fog_agent_longpolls") > parked0;
            if (!parked)
                nap_ms(50);
        }
    }
    assert_true(parked);
    _cleanup_free_ char *other_id = NULL;
    _cleanup_free_ char *other = node_join(0, 0, "pg-restart-2", &other_id);
    job_join(poll);
    assert_int_equal(poll->status, 200);
    assert_true(json_integer_value(json_object_get(poll->reply, "revision")) > rev);
    assert_true(poll->took < 25.0);

    /* Gone again, so that later placements do not pick them. */
    const char *ids[] = { node_id, other_id };
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
        _cleanup_free_ char *p = xasprintf("/v1/nodes/%s", ids[i]);
        json_auto_t *d = call(0, admin, "DELETE", p, NULL, &st);
        assert_int_equal(st, 204);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(concurrent_creates_never_overcommit_nor_refuse,
                                  creates_teardown),
        cmocka_unit_test_teardown(database_restart_is_ridden_out, test_teardown),
        cmocka_unit_test_teardown(replicas_share_state_wake_and_fail_over,
                                  test_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
