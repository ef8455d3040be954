/* Two controller replicas on one PostgreSQL database, as in a scaled-out
 * deployment: what one writes the other serves; a node parked on one is
 * woken by a change made through the other (LISTEN/NOTIFY); exactly one
 * replica schedules, and when it stops the other takes over. Skipped
 * without the PostgreSQL server. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "tests/testutil.h"

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
    char *argv[] = { bin, "serve", "--data-dir", dir, "--database", pg.uri,
                     "--listen", listen, "--grace", "0", "--heartbeat", "1",
                     NULL };
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(replicas_share_state_wake_and_fail_over),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
