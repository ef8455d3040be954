/* api/http_server runs mutating calls on its writer threads: with a single
 * connection thread, a GET is answered while a POST's handler is still
 * held (it would wait behind it if the POST ran on the connection
 * thread); the POST's answer still reaches its client, carrying the
 * request's log context to the writer; a server stopped with a call on a
 * writer lets it finish first. No timing: the POST's handler waits for
 * the test to release it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/http_server.h"
#include "common/log.h"
#include "common/util.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static bool post_entered, post_released;
static char post_saw_ctx[LOG_CTX_LEN];

static void h_fast(struct http_request *r, void *app)
{
    (void)app;
    http_reply_text(r, 200, "text/plain", xstrdup("fast"), 4);
}

static void h_slow(struct http_request *r, void *app)
{
    (void)app;
    struct log_ctx_saved now;
    log_ctx_save(&now);
    pthread_mutex_lock(&lock);
    snprintf(post_saw_ctx, sizeof(post_saw_ctx), "%s",
             now.v[LOG_CTX_REQUEST]);
    post_entered = true;
    pthread_cond_broadcast(&cond);
    while (!post_released)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    http_reply_text(r, 201, "text/plain", xstrdup("slow"), 4);
}

/* The before-hook sets a request's log context on the connection thread,
 * as the controller's does. */
static bool before(struct http_request *r, const struct http_route *route,
                   void *app)
{
    (void)r;
    (void)route;
    (void)app;
    log_ctx_set(LOG_CTX_REQUEST, "req-42");
    return true;
}

static const struct http_route routes[] = {
    { "GET", "/fast", h_fast, 0, NULL, 0 },
    { "POST", "/slow", h_slow, 0, NULL, 0 },
};

static struct http_server *srv;

static long call(const char *method, const char *path, long timeout_s)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", http_server_port(srv),
             path);
    CURL *h = curl_easy_init();
    FILE *sink = fopen("/dev/null", "we");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (streq(method, "POST"))
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "{}");
    curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    long status = -1;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    fclose(sink);
    return status;
}

static void *post_thread(void *arg)
{
    long *status = arg;
    *status = call("POST", "/slow", 60);
    return NULL;
}

static void wait_post_entered(void)
{
    pthread_mutex_lock(&lock);
    while (!post_entered)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
}

static void release_post(void)
{
    pthread_mutex_lock(&lock);
    post_released = true;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void start(void)
{
    post_entered = post_released = false;
    struct http_server_opts o = {
        .listen = "127.0.0.1:0",
        .routes = routes,
        .n_routes = ARRAY_SIZE(routes),
        .max_body = 4096,
        .threads = 1, /* one connection thread: the POST's, were it there */
        .write_threads = 1,
        .before = before,
    };
    assert_int_equal(http_server_start(&o, &srv), 0);
}

static void a_read_is_answered_while_a_write_is_held(void **state)
{
    (void)state;
    start();
    long post_status = 0;
    pthread_t t;
    pthread_create(&t, NULL, post_thread, &post_status);
    wait_post_entered();
    /* Were the POST's handler on the only connection thread, this would
     * wait until it is released, which only happens after it. */
    assert_int_equal(call("GET", "/fast", 20), 200);
    assert_int_equal(call("GET", "/fast", 20), 200);
    release_post();
    pthread_join(t, NULL);
    assert_int_equal(post_status, 201);
    assert_string_equal(post_saw_ctx, "req-42");
    http_server_stop(srv, 1000);
    srv = NULL;
}


static void *stop_thread(void *arg)
{
    (void)arg;
    http_server_stop(srv, 5000);
    return NULL;
}

static void stopping_lets_a_held_write_finish(void **state)
{
    (void)state;
    start();
    long post_status = 0;
    pthread_t t, s;
    pthread_create(&t, NULL, post_thread, &post_status);
    wait_post_entered();
    pthread_create(&s, NULL, stop_thread, NULL);
    release_post();
    pthread_join(s, NULL);
    pthread_join(t, NULL);
    assert_int_equal(post_status, 201);
    srv = NULL;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_read_is_answered_while_a_write_is_held),
        cmocka_unit_test(stopping_lets_a_held_write_finish),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return r;
}
