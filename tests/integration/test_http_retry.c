/* The HTTP core runs a request again when its after-hook asks
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

#include <stdatomic.h>
#include <stdio.h>

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

static const struct http_route routes[] = {
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

int main(void)
{
    /* This server is the HTTP core with routes of the test's own, not the
     * API: its answers are not checked against the API's spec. */
    unsetenv("FOG_SPEC_LOG");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(retried_until_success_only_last_answer_sent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
