/* api/http_server's streamed answers: with a single connection thread, a
 * stream whose producer waits (a slow source) has sent its first bytes and
 * still lets another request through; a Range gives the producer its span
 * (206); a producer that fails midway cuts the body short; a client that
 * hangs up while the producer waits, and a server stopped meanwhile, both
 * tell the producer to stop (-ECANCELED), and stop returns only once it
 * has; past the most streams at once, 503. No timing: the producer waits for the test to release it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/http_server.h"
#include "api/http_stream.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BODY (2u << 20)
#define FIRST (64u << 10) /* written before the producer waits */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static bool released, fail_midway, producer_done;
static int producer_result;
static uint64_t producer_off, producer_len;

static uint8_t byte_at(uint64_t i)
{
    return (uint8_t)(i * 7 + i / 251);
}

/* The body's bytes [off, off + len), FIRST of them, then (once released)
 * the rest, or a failure; while held it asks now and then whether to go
 * on, as a store waiting on its source does. */
static int produce(struct http_stream *st, uint64_t off, uint64_t len,
                   void *ctx)
{
    (void)ctx;
    uint8_t chunk[4096];
    uint64_t done = 0;
    int e = 0;
    pthread_mutex_lock(&lock);
    producer_off = off;
    producer_len = len;
    pthread_mutex_unlock(&lock);
    while (e == 0 && done < len) {
        if (done >= FIRST) {
            pthread_mutex_lock(&lock);
            bool go = released;
            pthread_mutex_unlock(&lock);
            if (fail_midway) {
                e = -EIO;
                break;
            }
            if (!go) {
                e = http_stream_write(st, NULL, 0);
                usleep(20000);
                continue;
            }
        }
        size_t n = len - done < sizeof(chunk) ? (size_t)(len - done)
                                              : sizeof(chunk);
        for (size_t i = 0; i < n; i++)
            chunk[i] = byte_at(off + done + i);
        e = http_stream_write(st, chunk, n);
        done += n;
    }
    pthread_mutex_lock(&lock);
    producer_result = e;
    producer_done = true;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    return e;
}

static void h_stream(struct http_request *r, void *app)
{
    (void)app;
    http_reply_stream(r, "application/octet-stream", BODY, produce, NULL,
                      NULL);
}

static void h_fast(struct http_request *r, void *app)
{
    (void)app;
    http_reply_text(r, 200, "text/plain", xstrdup("fast"), 4);
}

static const struct http_route routes[] = {
    { "GET", "/stream", h_stream, 0, NULL, 0 },
    { "GET", "/fast", h_fast, 0, NULL, 0 },
};

static struct http_server *srv;

struct client {
    const char *path, *range;
    size_t hang_up_at; /* > 0: close once this many bytes came */
    pthread_t thr;
    uint64_t got;
    bool bad;          /* a byte differed */
    uint64_t from;     /* offset of the first byte */
    long status;
    CURLcode cr;
};

static size_t client_write(char *p, size_t size, size_t n, void *ud)
{
    struct client *c = ud;
    size_t len = size * n;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < len; i++)
        if ((uint8_t)p[i] != byte_at(c->from + c->got + i))
            c->bad = true;
    c->got += len;
    bool stop = c->hang_up_at && c->got >= c->hang_up_at;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    return stop ? 0 : len;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", http_server_port(srv),
             c->path);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, client_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (c->range)
        curl_easy_setopt(h, CURLOPT_RANGE, c->range);
    c->cr = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
    curl_easy_cleanup(h);
    return NULL;
}

static void start(void)
{
    released = fail_midway = producer_done = false;
    producer_result = 1;
    struct http_server_opts o = { .listen = "127.0.0.1:0", .routes = routes,
                                  .n_routes = ARRAY_SIZE(routes),
                                  .max_body = 4096, .threads = 1 };
    assert_int_equal(http_server_start(&o, &srv), 0);
}

static void release(void)
{
    pthread_mutex_lock(&lock);
    released = true;
    pthread_mutex_unlock(&lock);
}

/* Wait until the client has `n` bytes (the producer has reached its
 * wait): false after a minute. */
static bool wait_bytes(struct client *c, uint64_t n)
{
    int64_t end = mono_ms() + 60000;
    pthread_mutex_lock(&lock);
    while (c->got < n && mono_ms() < end) {
        pthread_mutex_unlock(&lock);
        usleep(10000);
        pthread_mutex_lock(&lock);
    }
    bool ok = c->got >= n;
    pthread_mutex_unlock(&lock);
    return ok;
}

static void wait_producer(void)
{
    pthread_mutex_lock(&lock);
    while (!producer_done)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
}

static long get_fast(void)
{
    struct client c = { .path = "/fast", .from = 0 };
    client_main(&c);
    return c.cr == CURLE_OK ? c.status : -1;
}

static void first_bytes_flow_and_the_thread_stays_free(void **state)
{
    (void)state;
    start();
    struct client c = { .path = "/stream" };
    assert_int_equal(pthread_create(&c.thr, NULL, client_main, &c), 0);
    assert_true(wait_bytes(&c, FIRST));
    /* the one connection thread is not held by the waiting stream */
    assert_int_equal(get_fast(), 200);
    release();
    pthread_join(c.thr, NULL);
    assert_int_equal(c.cr, CURLE_OK);
    assert_int_equal(c.status, 200);
    assert_int_equal(c.got, BODY);
    assert_false(c.bad);
    wait_producer();
    assert_int_equal(producer_result, 0);
    http_server_stop(srv, 0);
}

static void range_gives_the_producer_its_span(void **state)
{
    (void)state;
    start();
    release();
    struct client c = { .path = "/stream", .range = "1000001-",
                        .from = 1000001 };
    client_main(&c);
    assert_int_equal(c.cr, CURLE_OK);
    assert_int_equal(c.status, 206);
    assert_int_equal(c.got, BODY - 1000001);
    assert_false(c.bad);
    wait_producer();
    assert_int_equal(producer_off, 1000001);
    assert_int_equal(producer_len, BODY - 1000001);
    http_server_stop(srv, 0);
}

static void failure_midway_cuts_the_body(void **state)
{
    (void)state;
    start();
    fail_midway = true;
    struct client c = { .path = "/stream" };
    client_main(&c);
    assert_int_equal(c.cr, CURLE_PARTIAL_FILE);
    assert_int_equal(c.got, FIRST);
    assert_false(c.bad);
    wait_producer();
    assert_int_equal(producer_result, -EIO);
    /* the server goes on */
    assert_int_equal(get_fast(), 200);
    http_server_stop(srv, 0);
}

static void client_gone_stops_the_producer(void **state)
{
    (void)state;
    start();
    struct client c = { .path = "/stream", .hang_up_at = FIRST };
    client_main(&c);
    assert_int_equal(c.cr, CURLE_WRITE_ERROR);
    /* never released: only the hang-up ends it */
    wait_producer();
    assert_int_equal(producer_result, -ECANCELED);
    http_server_stop(srv, 0);
}

/* Past HTTP_STREAMS_MAX streams at once, 503 with Retry-After; the
 * streams under way are not disturbed. */
static void streams_past_the_limit_are_refused(void **state)
{
    (void)state;
    enum { N = HTTP_STREAMS_MAX };
    start();
    struct client *cs = xcalloc(N, sizeof(*cs));
    for (int i = 0; i < N; i++) {
        cs[i].path = "/stream";
        assert_int_equal(pthread_create(&cs[i].thr, NULL, client_main,
                                        &cs[i]), 0);
    }
    for (int i = 0; i < N; i++)
        assert_true(wait_bytes(&cs[i], FIRST));
    struct client extra = { .path = "/stream" };
    client_main(&extra);
    assert_int_equal(extra.cr, CURLE_OK);
    assert_int_equal(extra.status, 503);
    release();
    for (int i = 0; i < N; i++) {
        pthread_join(cs[i].thr, NULL);
        assert_int_equal(cs[i].status, 200);
        assert_int_equal(cs[i].got, BODY);
        assert_false(cs[i].bad);
    }
    free(cs);
    http_server_stop(srv, 0);
}

static void stop_ends_a_waiting_stream(void **state)
{
    (void)state;
    start();
    struct client c = { .path = "/stream" };
    assert_int_equal(pthread_create(&c.thr, NULL, client_main, &c), 0);
    assert_true(wait_bytes(&c, FIRST));
    http_server_stop(srv, 0);
    /* returned only once the producer had */
    pthread_mutex_lock(&lock);
    bool done = producer_done;
    pthread_mutex_unlock(&lock);
    assert_true(done);
    assert_int_equal(producer_result, -ECANCELED);
    pthread_join(c.thr, NULL);
    assert_int_not_equal(c.cr, CURLE_OK);
    assert_true(c.got < BODY);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_bytes_flow_and_the_thread_stays_free),
        cmocka_unit_test(range_gives_the_producer_its_span),
        cmocka_unit_test(failure_midway_cuts_the_body),
        cmocka_unit_test(client_gone_stops_the_producer),
        cmocka_unit_test(streams_past_the_limit_are_refused),
        cmocka_unit_test(stop_ends_a_waiting_stream),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return r;
}
