/* A client told to come back later (429 or 503) waits what the answer's
 * Retry-After says, bounded and with a little jitter: api_reply_retry_ms
 * on every form of the header, and the node's backup worker, whose next
 * ask comes when the hub said and not after a fixed pause.
 *
 * The HTTP core runs a request again when its after-hook asks
 * (http_req_retry), before anything is sent: the handler and the
 * begin-hook run once more, each time on the body as the client sent it,
 * the client gets only the last answer, and the headers the before-hook
 * set stay while those of the dropped attempt go. A streamed upload is
 * never run again. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/client.h"
#include "api/http_server.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "nodeagent/backupjob.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static atomic_int begins, runs, afters;
static int want_runs;     /* the after-hook retries until this many */
static bool retry_refused; /* http_req_retry said no */

static void h_count(struct http_request *r, void *app)
{
    int n = atomic_fetch_add(&runs, 1) + 1;
    json_t *b = http_req_json(r);
    /* A handler that changes its input must not see it changed again. */
    json_int_t seen = json_integer_value(json_object_get(b, "n"));
    json_object_set_new(b, "n", json_integer(seen + 100));
    char v[16];
    snprintf(v, sizeof(v), "%d", n);
    http_reply_header(r, "X-Attempt-Header", v);
    http_reply_json(r, n < want_runs ? 503 : 201,
                    json_pack("{s:i, s:I}", "attempt", n, "n", seen));
}

static int sink(struct http_request *r, const void *data, size_t n, void *app)
{
    return 0;
}

static void h_upload(struct http_request *r, void *app)
{
    atomic_fetch_add(&runs, 1);
    http_reply_json(r, 503, json_pack("{}"));
}

static bool before(struct http_request *r, const struct http_route *route,
                   void *app)
{
    http_reply_header(r, "X-Request-Id", "req-1");
    return true;
}

static bool begin(struct http_request *r, const struct http_route *route,
                  void *app)
{
    atomic_fetch_add(&begins, 1);
    return true;
}

static void after(struct http_request *r, const struct http_route *route,
                  void *app)
{
    atomic_fetch_add(&afters, 1);
    if (http_req_status(r) >= 500 && atomic_load(&runs) < want_runs + 1 &&
        !http_req_retry(r))
        retry_refused = true;
}

/* What /busy answers with: its Retry-After ("" none). */
static char busy_after[64];
static int busy_status = 429;

static void h_busy(struct http_request *r, void *app)
{
    if (busy_after[0])
        http_reply_header(r, "Retry-After", busy_after);
    http_reply_problem(r, busy_status, "rate-limited", NULL, "slow down");
}

/* The hub's backup routes, busy: each GET of a backup's size is timed. */
#define ASKS_MAX 8
static int64_t asks[ASKS_MAX];
static atomic_int n_asks;

static void h_backup_size(struct http_request *r, void *app)
{
    int n = atomic_fetch_add(&n_asks, 1);
    if (n < ASKS_MAX)
        asks[n] = mono_ms();
    h_busy(r, app);
}

static const struct http_route routes[] = {
    { "GET", "/busy", h_busy, 0, NULL, 0 },
    { "GET", "/v1/agent/backups/{id}", h_backup_size, 0, NULL, 0 },
    { "POST", "/count", h_count, 0, NULL, 0 },
    { "PUT", "/upload", h_upload, 0, sink, 0 },
};

static void reset(int want)
{
    begins = runs = afters = 0;
    want_runs = want;
    retry_refused = false;
}

static void retried_until_success_only_last_answer_sent(void **state)
{
    struct http_server_opts o = {
        .listen = "127.0.0.1:0", .routes = routes,
        .n_routes = ARRAY_SIZE(routes), .max_body = 1 << 16, .threads = 1,
        .before = before, .begin = begin, .after = after,
    };
    struct http_server *srv;
    assert_int_equal(http_server_start(&o, &srv), 0);
    _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d",
                                         http_server_port(srv));
    struct api_client *c = api_client_new(url, NULL, NULL);

    reset(3);
    json_auto_t *body = json_pack("{s:i}", "n", 7);
    struct api_reply rep;
    assert_int_equal(api_request(c, "POST", "/count", body, NULL, &rep), 0);
    assert_int_equal(rep.status, 201);
    assert_int_equal(json_int(rep.json, "attempt", 0), 3);
    assert_int_equal(json_int(rep.json, "n", 0), 7); /* the body afresh */
    assert_int_equal(begins, 3);
    assert_int_equal(runs, 3);
    assert_int_equal(afters, 3);
    size_t n = 0;
    const char *id = api_reply_header(&rep, "X-Request-Id", &n);
    assert_non_null(id);
    assert_int_equal(n, 5);
    assert_memory_equal(id, "req-1", 5);
    /* One X-Attempt-Header only, the last attempt's. */
    const char *h = api_reply_header(&rep, "X-Attempt-Header", &n);
    assert_non_null(h);
    assert_memory_equal(h, "3", 1);
    assert_null(strstr(h + n, "X-Attempt-Header"));
    assert_false(retry_refused);
    api_reply_clear(&rep);

    /* A streamed upload is not run again: the core refuses. */
    reset(1);
    assert_int_equal(api_request_raw(c, "PUT", "/upload", "abc", 3,
                                     "application/octet-stream", &rep), 0);
    assert_int_equal(rep.status, 503);
    assert_int_equal(runs, 1);
    assert_true(retry_refused);
    api_reply_clear(&rep);

    api_client_free(c);
    http_server_stop(srv, 0);
}

/* A server of the test's routes with no hooks; its URL. */
static char *plain_server(struct http_server **ret)
{
    struct http_server_opts o = {
        .listen = "127.0.0.1:0", .routes = routes,
        .n_routes = ARRAY_SIZE(routes), .max_body = 1 << 16, .threads = 1,
    };
    assert_int_equal(http_server_start(&o, ret), 0);
    return xasprintf("http://127.0.0.1:%d", http_server_port(*ret));
}

static int64_t retry_ms_for(struct api_client *c, const char *after,
                            int status)
{
    snprintf(busy_after, sizeof(busy_after), "%s", after);
    busy_status = status;
    struct api_reply rep;
    assert_int_equal(api_request(c, "GET", "/busy", NULL, NULL, &rep), 0);
    assert_int_equal(rep.status, status);
    int64_t ms = api_reply_retry_ms(&rep, 5000, 1000, 60000);
    api_reply_clear(&rep);
    return ms;
}

static void retry_after_honoured_bounded_jittered(void **state)
{
    struct http_server *srv;
    _cleanup_free_ char *url = plain_server(&srv);
    struct api_client *c = api_client_new(url, NULL, NULL);
    bool jittered = false;
    for (int i = 0; i < 20; i++) {
        /* Seconds: that long, plus at most a quarter. */
        int64_t ms = retry_ms_for(c, "3", 429);
        assert_in_range(ms, 3000, 3750);
        jittered = jittered || ms != 3000;
        assert_in_range(retry_ms_for(c, "2", 503), 2000, 2500);
        /* Bounded: 0 waits the least, a day or a 30-digit number the
         * most; none, garbage or a negative number: the default. */
        assert_in_range(retry_ms_for(c, "0", 429), 1000, 1250);
        assert_int_equal(retry_ms_for(c, "86400", 429), 60000);
        assert_int_equal(retry_ms_for(c, "999999999999999999999999999999",
                                      429), 60000);
        assert_in_range(retry_ms_for(c, "", 429), 5000, 6250);
        assert_in_range(retry_ms_for(c, "soon", 429), 5000, 6250);
        assert_in_range(retry_ms_for(c, "-3", 429), 5000, 6250);
    }
    assert_true(jittered);
    /* An HTTP date ten seconds ahead; one in the past waits the least. */
    char date[64];
    time_t t = time(NULL) + 10;
    struct tm tm;
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT",
             gmtime_r(&t, &tm));
    assert_in_range(retry_ms_for(c, date, 429), 8000, 12500);
    t = time(NULL) - 100;
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT",
             gmtime_r(&t, &tm));
    assert_in_range(retry_ms_for(c, date, 429), 1000, 1250);
    /* No reply at all: the default. */
    assert_in_range(api_reply_retry_ms(NULL, 5000, 1000, 60000), 5000, 6250);
    api_client_free(c);
    http_server_stop(srv, 0);
}

/* The backup worker asks the hub for a backup's size; the hub answers
 * 429 with Retry-After: 1, and the next ask comes a second later, not
 * after the worker's own 5 s. */
static void backup_worker_waits_what_the_hub_says(void **state)
{
    struct http_server *srv;
    _cleanup_free_ char *url = plain_server(&srv);
    char dir[] = "/tmp/fog-retry-XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(busy_after, sizeof(busy_after), "1");
    busy_status = 429;
    n_asks = 0;
    struct backupjob_opts bo = {
        .data_dir = dir, .qemu_img = "/bin/false", .controller = url,
    };
    struct backupjob *b = backupjob_new(&bo);
    const char *vm = "0b7d3c4e-2f59-4d35-9a0e-6f1f8a3c2b10";
    const char *bk = "5c1e9a77-3d0b-4e8c-8d6a-2a4b7f0e9c21";
    json_auto_t *doc = json_pack(
        "{s:[{s:s, s:s, s:[{s:s}]}]}", "vms", "id", vm, "backup_key",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "backups", "id", bk);
    struct virt_dom d = { .state = VIRT_RUNNING };
    snprintf(d.meta.vm_id, sizeof(d.meta.vm_id), "%s", vm);
    backupjob_sync(b, doc, &d, 1);
    int64_t t0 = mono_ms();
    while (atomic_load(&n_asks) < 3 && mono_ms() - t0 < 15000)
        usleep(20000);
    backupjob_free(b);
    http_server_stop(srv, 0);
    assert_true(n_asks >= 3);
    for (int i = 1; i < 3; i++) {
        int64_t gap = asks[i] - asks[i - 1];
        printf("ask %d came %lld ms after the one before\n", i,
               (long long)gap);
        assert_in_range(gap, 950, 2000);
    }
    _cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    /* This server is the HTTP core with routes of the test's own, not the
     * API: its answers are not checked against the API's spec. */
    unsetenv("FOG_SPEC_LOG");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(retried_until_success_only_last_answer_sent),
        cmocka_unit_test(retry_after_honoured_bounded_jittered),
        cmocka_unit_test(backup_worker_waits_what_the_hub_says),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
