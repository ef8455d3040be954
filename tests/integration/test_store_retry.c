/* Two controller replicas on one PostgreSQL database whose transactions
 * are SERIALIZABLE (default_transaction_isolation, as an operator may set
 * it): concurrent network creates through both lose serialization
 * conflicts to each other, and the controller runs the losers again
 * itself, so every create answers 201 without a client retry, none is
 * applied twice (one network and one event each), and the retries show
 * in fog_store_retries_total. Creates from a template whose image the
 * hub imports by URL, through both at once, share one import and one
 * download. Skipped without the PostgreSQL server. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#define ROUNDS 4
#define CREATES 16

static struct tu_pg pg;
static char *dir, *ca, *admin, *db, *urls[2], *tdir;
static pid_t pids[2];
/* A template's image, served on loopback (slowly: creates meet the
 * import), and its digest. */
static uint8_t *img;
static char img_sha[65];
static struct tu_file file;
static struct tu_file_srv srv = { .files = &file, .n = 1, .delay_ms = 500 };

static json_t *call(int i, const char *method, const char *path,
                    const char *body, long *ret_status)
{
    const struct tu_ctl replica = { .url = urls[i], .ca = ca };
    return tu_api(&replica, admin, method, path, body, ret_status);
}

static int setup(void **state)
{
    if (!tu_pg_start(&pg)) {
        tu_pg_stop(&pg);
        return 0;
    }
    db = xasprintf("%s&options=-c%%20default_transaction_isolation%%3D"
                   "serializable", pg.uri);
    dir = tu_tempdir("store-retry");
    ca = xasprintf("%s/ca.pem", dir);
    _cleanup_free_ char *bin = tu_bin("fog-controller");
    char *init[] = { bin, "init", "--data-dir", dir, "--database", db, NULL };
    int st;
    _cleanup_free_ char *out = tu_run(init, &st);
    char *k = out ? strstr(out, "admin key: ") : NULL;
    if (st != 0 || !k) {
        fprintf(stderr, "init failed: %s\n", out ? out : "");
        return -1;
    }
    admin = xstrndup(k + 11, strcspn(k + 11, "\n"));
    size_t len;
    img = tu_qcow2(64ULL << 20, &len);
    sha256_hex(img, len, img_sha);
    file = (struct tu_file){ "/os.qcow2", img, len };
    tu_file_srv_start(&srv, "127.0.0.2");
    tdir = xasprintf("%s/templates", dir);
    _cleanup_free_ char *t = xasprintf(
        "{\"name\":\"app\",\"image\":\"app-os\",\"image_url\":"
        "\"http://127.0.0.2:%d/os.qcow2\",\"image_sha256\":\"%s\","
        "\"vcpus\":1,\"memory_mib\":128,\"disk_gib\":1}", srv.port,
        img_sha);
    tu_put_file(tdir, "app.json", t);
    for (int i = 0; i < 2; i++) {
        int port = tu_free_port();
        char listen[32];
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        urls[i] = xasprintf("https://127.0.0.1:%d", port);
        _cleanup_free_ char *log = xasprintf("%s/controller-%d.log", dir, i);
        char *argv[] = { bin, "serve", "--data-dir", dir, "--database", db,
                         "--listen", listen, "--grace", "0",
                         "--templates-dir", tdir, "--import-allow",
                         "127.0.0.2/32", "--no-inspect", NULL };
        pids[i] = tu_spawn(argv, log);
        if (pids[i] <= 0 || tu_wait_port(port, 10000) != 0)
            return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    for (int i = 0; i < 2; i++) {
        if (pids[i] > 0)
            tu_kill(pids[i], SIGTERM);
        free(urls[i]);
    }
    if (dir)
        tu_rmrf(dir);
    tu_pg_stop(&pg);
    if (img)
        tu_file_srv_stop(&srv);
    free(img);
    free(tdir);
    free(dir);
    free(ca);
    free(admin);
    free(db);
    return 0;
}

/* fog_store_retries_total of replica i. */
static double retries(int i)
{
    const struct tu_ctl replica = { .url = urls[i], .ca = ca, .admin_key = admin };
    _cleanup_free_ char *text = tu_metrics_text(&replica);
    return tu_metric(text, "fog_store_retries_total ");
}

struct job {
    pthread_t t;
    int replica;
    char *body;
    long status;
    json_t *reply;
};

static void *job_run(void *arg)
{
    struct job *j = arg;
    j->reply = call(j->replica, "POST", "/v1/networks", j->body, &j->status);
    return NULL;
}

/* How many of `rows` have member k equal to v. */
static size_t count(const json_t *rows, const char *k, const char *v)
{
    size_t n = 0, i;
    json_t *row;
    json_array_foreach(rows, i, row)
        n += streq(json_str(row, k), v);
    return n;
}

static void conflicting_creates_are_run_again_not_refused(void **state)
{
    if (!pg.uri)
        skip();
    double before = retries(0) + retries(1);
    char *ids[ROUNDS * CREATES];
    for (int round = 0; round < ROUNDS; round++) {
        struct job jobs[CREATES];
        for (int k = 0; k < CREATES; k++) {
            jobs[k] = (struct job){
                .replica = k % 2,
                .body = xasprintf("{\"name\":\"r%d-n%d\",\"cidr\":\"10.%d.%d."
                                  "0/24\"}", round, k, 100 + round, k) };
            assert_int_equal(pthread_create(&jobs[k].t, NULL, job_run, &jobs[k]),
                             0);
        }
        /* every job ends before any is judged: a failed assertion leaves
         * the test, and a job still running would write into its frame */
        for (int k = 0; k < CREATES; k++)
            pthread_join(jobs[k].t, NULL);
        for (int k = 0; k < CREATES; k++) {
            if (jobs[k].status != 201)
                fail_msg("round %d: create %d answered %ld: %s", round, k,
                         jobs[k].status, json_str(jobs[k].reply, "detail") ?: "");
            ids[round * CREATES + k] = xstrdup(json_str(jobs[k].reply, "id"));
            json_decref(jobs[k].reply);
            free(jobs[k].body);
        }
    }
    double after = retries(0) + retries(1);
    fprintf(stderr, "%d creates, %.0f run again after a lost conflict\n",
            ROUNDS * CREATES, after - before);
    /* The conflicts happened, and were absorbed. */
    assert_true(before >= 0);
    assert_true(after > before);

    /* Each applied once: one network per name, one event per create. */
    long st;
    json_auto_t *nets = call(0, "GET", "/v1/networks?limit=500", NULL, &st);
    assert_int_equal(st, 200);
    json_auto_t *events = call(1, "GET", "/v1/events?limit=500", NULL, &st);
    assert_int_equal(st, 200);
    json_t *items = json_object_get(nets, "items");
    json_t *evs = json_object_get(events, "items");
    for (int round = 0; round < ROUNDS; round++)
        for (int k = 0; k < CREATES; k++) {
            char name[32];
            snprintf(name, sizeof(name), "r%d-n%d", round, k);
            assert_int_equal(count(items, "name", name), 1);
        }
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
        assert_int_equal(count(items, "id", ids[i]), 1);
        size_t n = 0, k;
        json_t *ev;
        json_array_foreach(evs, k, ev)
            n += streq(json_str(ev, "target"), ids[i]) &&
                 streq(json_str(ev, "action"), "POST /v1/networks") &&
                 json_int(ev, "status", 0) == 201;
        assert_int_equal(n, 1);
        free(ids[i]);
    }
}

static void *vm_run(void *arg)
{
    struct job *j = arg;
    j->reply = call(j->replica, "POST", "/v1/vms", j->body, &j->status);
    return NULL;
}

/* Creates from a template whose image the hub imports by URL, through
 * both replicas at once: every one answers 201 (conflicts are run again),
 * all share one image row, and the image is downloaded once, after its
 * row committed (the import worker of the replica that made it finds the
 * row and makes the image ready). */
static void template_creates_share_one_import_across_replicas(void **state)
{
    if (!pg.uri)
        skip();
    struct job jobs[CREATES];
    for (int k = 0; k < CREATES; k++) {
        jobs[k] = (struct job){
            .replica = k % 2,
            .body = xasprintf("{\"name\":\"tv%d\",\"template\":\"app\","
                              "\"power_state\":\"stopped\"}", k) };
        assert_int_equal(pthread_create(&jobs[k].t, NULL, vm_run, &jobs[k]),
                         0);
    }
    for (int k = 0; k < CREATES; k++)
        pthread_join(jobs[k].t, NULL);
    _cleanup_free_ char *image_id = NULL;
    for (int k = 0; k < CREATES; k++) {
        if (jobs[k].status != 201)
            fail_msg("create %d answered %ld: %s", k, jobs[k].status,
                     json_str(jobs[k].reply, "detail") ?: "");
        const char *id = json_str(jobs[k].reply, "image_id");
        assert_non_null(id);
        if (!image_id)
            image_id = xstrdup(id);
        assert_string_equal(id, image_id);
        json_decref(jobs[k].reply);
        free(jobs[k].body);
    }
    _cleanup_free_ char *path = xasprintf("/v1/images/%s", image_id);
    int64_t deadline = now_ms() + 60000;
    for (;;) {
        long st;
        json_auto_t *im = call(1, "GET", path, NULL, &st);
        assert_int_equal(st, 200);
        if (streq(json_str(im, "state"), "ready")) {
            assert_string_equal(json_str(im, "sha256"), img_sha);
            assert_string_equal(json_str(im, "visibility"), "public");
            break;
        }
        if (now_ms() > deadline)
            fail_msg("the image stayed %s", json_str(im, "state"));
        usleep(100 * 1000);
    }
    assert_int_equal(tu_file_srv_hits(&srv), 1);
    long st;
    json_auto_t *all = call(0, "GET", "/v1/images?limit=500", NULL, &st);
    assert_int_equal(count(json_object_get(all, "items"), "name", "app-os"),
                     1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conflicting_creates_are_run_again_not_refused),
        cmocka_unit_test(template_creates_share_one_import_across_replicas),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
