/* Unit tests for nodeagent/hcheck.c: each kind of probe against local
 * listeners on 127.0.0.1 (open and closed TCP ports, HTTP servers that
 * answer 200, 500, garbage or nothing, UDP servers that answer or stay
 * silent), and rise/fall over the engine. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "nodeagent/hcheck.h"
#include "common/timeutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A listener on 127.0.0.1 (an ephemeral port) serving `reply` to each
 * TCP connection (NULL: hold it, answer nothing) or each UDP datagram. */
struct srv {
    int fd, port;
    bool udp;
    const char *reply;
    pthread_t thread;
};

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    for (;;) {
        if (s->udp) {
            char b[600];
            struct sockaddr_in from;
            socklen_t fl = sizeof(from);
            ssize_t n = recvfrom(s->fd, b, sizeof(b), 0,
                                 (struct sockaddr *)&from, &fl);
            if (n <= 0) /* shut down */
                return NULL;
            if (s->reply)
                sendto(s->fd, s->reply, strlen(s->reply), 0,
                       (struct sockaddr *)&from, fl);
            continue;
        }
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char b[1024];
        ssize_t n = read(c, b, sizeof(b));
        (void)n;
        if (s->reply) {
            ssize_t w = write(c, s->reply, strlen(s->reply));
            (void)w;
            close(c);
        }
        /* else: held open, never answered (leaks until the test ends) */
    }
}

static void srv_start(struct srv *s, bool udp, const char *reply, bool serve)
{
    *s = (struct srv){ .udp = udp, .reply = reply };
    s->fd = socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t l = sizeof(a);
    getsockname(s->fd, (struct sockaddr *)&a, &l);
    s->port = ntohs(a.sin_port);
    if (!udp)
        assert_int_equal(listen(s->fd, 16), 0);
    if (serve)
        assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
}

static void srv_stop(struct srv *s)
{
    shutdown(s->fd, SHUT_RDWR);
    if (s->thread)
        pthread_join(s->thread, NULL);
    close(s->fd);
}

static struct hc_spec spec_of(const char *json)
{
    json_auto_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    struct hc_spec s;
    struct jerr je = { 0 };
    assert_int_equal(hc_spec_from_json(j, true, &s, &je), 0);
    return s;
}

/* A check given as JSON whose "%d" is the port, probed once. */
static bool probe(const char *tmpl, int port, char out[HC_OUTPUT_MAX + 1])
{
    char json[512];
    const char *at = strstr(tmpl, "%d");
    assert_non_null(at);
    snprintf(json, sizeof(json), "%.*s%d%s", (int)(at - tmpl), tmpl, port,
             at + 2);
    struct hc_spec s = spec_of(json);
    bool ok = hcheck_probe_once(&s, "127.0.0.1", out);
    hc_spec_clear(&s);
    return ok;
}

static void tcp_passes_on_an_open_port_fails_on_a_closed_one(void **state)
{
    (void)state;
    char out[HC_OUTPUT_MAX + 1];
    struct srv s;
    srv_start(&s, false, NULL, false); /* listening, never accepting */
    assert_true(probe("{\"type\":\"tcp\",\"port\":%d}", s.port, out));
    assert_string_equal(out, "connected");
    int port = s.port;
    srv_stop(&s);
    assert_false(probe("{\"type\":\"tcp\",\"port\":%d}", port, out));
    assert_non_null(strstr(out, "refused"));
}

static void http_judges_the_status_line(void **state)
{
    (void)state;
    char out[HC_OUTPUT_MAX + 1];
    struct srv s;
    srv_start(&s, false, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
              true);
    assert_true(probe("{\"type\":\"http\",\"port\":%d,\"path\":\"/healthz\"}",
                      s.port, out));
    assert_string_equal(out, "HTTP 200");
    srv_stop(&s);

    srv_start(&s, false, "HTTP/1.0 500 Internal Server Error\r\n\r\n", true);
    assert_false(probe("{\"type\":\"http\",\"port\":%d}", s.port, out));
    assert_string_equal(out, "HTTP 500, expected 200-399");
    /* A range that takes 500 passes it. */
    assert_true(probe("{\"type\":\"http\",\"port\":%d,\"status_min\":500,"
                      "\"status_max\":503}", s.port, out));
    srv_stop(&s);

    srv_start(&s, false, "SSH-2.0-OpenSSH_9.2\r\n", true);
    assert_false(probe("{\"type\":\"http\",\"port\":%d}", s.port, out));
    assert_string_equal(out, "not an HTTP answer");
    srv_stop(&s);

    srv_start(&s, false, "", true); /* closes at once */
    assert_false(probe("{\"type\":\"http\",\"port\":%d}", s.port, out));
    assert_string_equal(out, "connection closed without an answer");
    srv_stop(&s);
}

static void http_times_out_on_a_silent_server(void **state)
{
    (void)state;
    char out[HC_OUTPUT_MAX + 1];
    struct srv s;
    srv_start(&s, false, NULL, true); /* accepts, never answers */
    int64_t t0 = mono_ms();
    assert_false(probe("{\"type\":\"http\",\"port\":%d,\"timeout_s\":1}",
                       s.port, out));
    int64_t took = mono_ms() - t0;
    assert_string_equal(out, "no answer within 1 s");
    assert_true(took >= 900 && took < 2000);
    srv_stop(&s);
}

static void udp_wants_an_answer_that_starts_right(void **state)
{
    (void)state;
    char out[HC_OUTPUT_MAX + 1];
    struct srv s;
    srv_start(&s, true, "\xff\xff\xff\xffI game status", true);
    /* "\xff\xff\xff\xffTSource Engine Query" and its answer's prefix. */
    const char *q = "{\"type\":\"udp\",\"port\":%d,\"payload_hex\":"
                    "\"ffffffff54536f7572636520456e67696e6520517565727900\","
                    "\"expect_hex\":\"ffffffff49\"}";
    assert_true(probe(q, s.port, out));
    assert_string_equal(out, "answer of 17 bytes");
    assert_false(probe("{\"type\":\"udp\",\"port\":%d,\"payload_hex\":\"00\","
                       "\"expect_hex\":\"ffffffff41\"}", s.port, out));
    assert_non_null(strstr(out, "does not start with"));
    srv_stop(&s);

    srv_start(&s, true, NULL, true); /* takes the datagram, says nothing */
    assert_false(probe("{\"type\":\"udp\",\"port\":%d,\"payload_hex\":\"00\","
                       "\"timeout_s\":1}", s.port, out));
    assert_string_equal(out, "no answer within 1 s");
    int port = s.port;
    srv_stop(&s);
    /* Nobody on the port: ICMP port unreachable, at once. */
    int64_t t0 = mono_ms();
    assert_false(probe("{\"type\":\"udp\",\"port\":%d,\"payload_hex\":\"00\"}",
                       port, out));
    assert_string_equal(out, "port unreachable");
    assert_true(mono_ms() - t0 < 1000);
}

/* Step the engine until the check reaches `want` or ms pass; the time
 * it took, or -1. */
static int64_t wait_state(struct hcheck *h, enum hc_state want, int64_t ms)
{
    int64_t t0 = mono_ms();
    while (mono_ms() - t0 < ms) {
        hcheck_step(h, 100, -1);
        struct hcheck_result *r;
        size_t n;
        hcheck_results(h, &r, &n);
        bool done = n == 1 && r[0].h.state == want;
        hcheck_results_free(r, n);
        if (done)
            return mono_ms() - t0;
    }
    return -1;
}

#define CHECK_ID "0b5b7d3e-2f55-4c7a-9a43-2b1b1b6f0c11"
#define VM_ID "0b5b7d3e-2f55-4c7a-9a43-2b1b1b6f0c12"

/* A tcp check CHECK_ID of 127.0.0.1:port every second, rise and fall as
 * given, for VM_ID. */
static struct hc_spec tcp_check(int port, int rise, int fall)
{
    char json[256];
    snprintf(json, sizeof(json), "{\"id\":\"" CHECK_ID "\",\"type\":\"tcp\","
             "\"port\":%d,\"interval_s\":1,\"rise\":%d,\"fall\":%d}", port,
             rise, fall);
    return spec_of(json);
}

static void rise_and_fall_count_probes_in_a_row(void **state)
{
    (void)state;
    struct srv s;
    srv_start(&s, false, NULL, false);
    struct hc_spec sp = tcp_check(s.port, 2, 2);
    struct hcheck_target t = { .vm_id = VM_ID, .address = "127.0.0.1",
                               .gen = 1, .spec = &sp };
    struct hcheck *h = hcheck_new();
    hcheck_set(h, &t, 1);
    /* Two passes one interval apart. */
    int64_t took = wait_state(h, HC_HEALTHY, 3000);
    assert_true(took >= 900 && took < 2000);
    /* The same set again keeps the state. */
    hcheck_set(h, &t, 1);
    assert_true(wait_state(h, HC_HEALTHY, 200) >= 0);
    srv_stop(&s);
    took = wait_state(h, HC_UNHEALTHY, 4000);
    assert_true(took >= 0 && took <= 2300);
    /* A new reboot generation starts over: unknown until it falls. */
    t.gen = 2;
    hcheck_set(h, &t, 1);
    struct hcheck_result *r;
    size_t n;
    hcheck_results(h, &r, &n);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].h.state, HC_UNKNOWN);
    assert_string_equal(r[0].h.id, sp.id);
    hcheck_results_free(r, n);
    hcheck_free(h);
    hc_spec_clear(&sp);
}

static atomic_int changes;
static void on_change(void *data)
{
    (void)data;
    atomic_fetch_add(&changes, 1);
}

static void runner_reports_changes_per_vm_and_stops(void **state)
{
    (void)state;
    struct srv s;
    srv_start(&s, false, NULL, false);
    struct hc_spec sp = tcp_check(s.port, 1, 1);
    struct hcheck_target t = { .vm_id = VM_ID, .address = "127.0.0.1",
                               .spec = &sp };
    struct hcheck_runner *r = hcheck_runner_start(on_change, NULL);
    assert_non_null(r);
    hcheck_runner_sync(r, &t, 1);
    hc_spec_clear(&sp); /* copied */
    int64_t t0 = mono_ms();
    while (atomic_load(&changes) == 0 && mono_ms() - t0 < 3000)
        usleep(20 * 1000);
    assert_int_equal(atomic_load(&changes), 1);
    struct hcheck_result *res;
    size_t n;
    hcheck_runner_results(r, t.vm_id, &res, &n);
    assert_int_equal(n, 1);
    assert_int_equal(res[0].h.state, HC_HEALTHY);
    assert_string_equal(res[0].h.output, "connected");
    hcheck_results_free(res, n);
    hcheck_runner_results(r, "0b5b7d3e-2f55-4c7a-9a43-2b1b1b6f0c99", &res,
                          &n);
    assert_int_equal(n, 0);
    hcheck_results_free(res, n);
    /* An empty set: nothing left to report. */
    hcheck_runner_sync(r, NULL, 0);
    t0 = mono_ms();
    do {
        usleep(20 * 1000);
        hcheck_runner_results(r, t.vm_id, &res, &n);
        hcheck_results_free(res, n);
    } while (n && mono_ms() - t0 < 2000);
    assert_int_equal(n, 0);
    /* Stops at once, though it idles for a minute. */
    t0 = mono_ms();
    hcheck_runner_stop(r);
    assert_true(mono_ms() - t0 < 500);
    srv_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tcp_passes_on_an_open_port_fails_on_a_closed_one),
        cmocka_unit_test(http_judges_the_status_line),
        cmocka_unit_test(http_times_out_on_a_silent_server),
        cmocka_unit_test(udp_wants_an_answer_that_starts_right),
        cmocka_unit_test(rise_and_fall_count_probes_in_a_row),
        cmocka_unit_test(runner_reports_changes_per_vm_and_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
