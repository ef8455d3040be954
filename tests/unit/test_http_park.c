/* api/http_server's park hook: what a begin-hook holds for its connection
 * thread (the controller's read snapshot) is let go before the request
 * parks, so neither another request that thread serves meanwhile nor the
 * parked handler run again after a wake sees it. One connection thread,
 * so the second request is served by the parked one's thread. No timing:
 * the parked request waits for the test's wake. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/http_server.h"
#include "common/util.h"
#include "tests/testutil.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* What the begin-hook holds for the thread it runs on, as a snapshot. */
static __thread bool held;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int parks, begins_found_held, resumed_found_held, n_parked_asks;
static bool woke;

static bool begin(struct http_request *r, const struct http_route *route,
                  void *app)
{
    (void)r;
    (void)route;
    (void)app;
    pthread_mutex_lock(&lock);
    if (held)
        begins_found_held++;
    pthread_mutex_unlock(&lock);
    held = true;
    return true;
}

static void after(struct http_request *r, const struct http_route *route,
                  void *app)
{
    (void)r;
    (void)route;
    (void)app;
    held = false;
}

static void park(struct http_request *r, const struct http_route *route,
                 void *app)
{
    (void)r;
    (void)route;
    (void)app;
    pthread_mutex_lock(&lock);
    parks++;
    pthread_mutex_unlock(&lock);
    held = false;
}

static void h_wait(struct http_request *r, void *app)
{
    (void)app;
    if (http_req_resumed(r)) {
        pthread_mutex_lock(&lock);
        if (held)
            resumed_found_held++;
        bool go = woke;
        pthread_mutex_unlock(&lock);
        if (go) {
            http_reply_text(r, 200, "text/plain", xstrdup("woke"), 4);
            return;
        }
    }
    pthread_mutex_lock(&lock);
    n_parked_asks++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    http_req_park(r, "w", -1);
}

static void h_fast(struct http_request *r, void *app)
{
    (void)app;
    http_reply_text(r, 200, "text/plain", xstrdup("fast"), 4);
}

static const struct http_route routes[] = {
    { "GET", "/wait", h_wait, 0, NULL, 0 },
    { "GET", "/fast", h_fast, 0, NULL, 0 },
};

static struct http_server *srv;

static long get(const char *path)
{
    _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d%s",
                                         http_server_port(srv), path);
    struct tu_resp resp = { 0 };
    long status = tu_http("GET", url, NULL, NULL, NULL, 0, NULL, NULL, &resp);
    tu_resp_clear(&resp);
    return status;
}

static void *wait_thread(void *arg)
{
    long *status = arg;
    *status = get("/wait");
    return NULL;
}

static void a_parked_request_holds_nothing_of_its_thread(void **state)
{
    (void)state;
    struct http_server_opts o = {
        .listen = "127.0.0.1:0",
        .routes = routes,
        .n_routes = ARRAY_SIZE(routes),
        .max_body = 4096,
        .threads = 1, /* the other requests share the parked one's thread */
        .begin = begin,
        .after = after,
        .park = park,
    };
    assert_int_equal(http_server_start(&o, &srv), 0);
    long status = 0;
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &status);
    pthread_mutex_lock(&lock);
    while (n_parked_asks == 0)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    /* Parked now (or about to, on the same thread, before the next
     * request): served by that thread, these begin with nothing held. */
    assert_int_equal(get("/fast"), 200);
    assert_int_equal(get("/fast"), 200);
    /* Woken without a change first: it runs, parks again. */
    http_server_wake(srv, "w");
    pthread_mutex_lock(&lock);
    while (n_parked_asks < 2)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    assert_int_equal(get("/fast"), 200);
    pthread_mutex_lock(&lock);
    woke = true;
    pthread_mutex_unlock(&lock);
    http_server_wake(srv, "w");
    pthread_join(t, NULL);
    assert_int_equal(status, 200);
    http_server_stop(srv, 1000);
    srv = NULL;
    assert_int_equal(begins_found_held, 0);
    assert_int_equal(resumed_found_held, 0);
    /* Each time the handler asked to park, the hook ran first. */
    assert_true(n_parked_asks >= 2);
    assert_int_equal(parks, n_parked_asks);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_parked_request_holds_nothing_of_its_thread),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return r;
}
