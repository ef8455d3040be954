/* Health checks end to end on libvirt's test driver: the controller, a
 * node agent and the "VM's service" all run in a network namespace of
 * the test's own, where the VM's tenant address is put on lo and served
 * by a listener the test starts and stops. A stopped service turns
 * unhealthy within interval x fall (plus the post), with an event; it
 * recovers the same way; the restart action restarts the VM through its
 * desired state, once per back-off; the API refuses hostile checks with
 * problem+json, fogctl reads the --health syntax and dominfo shows the
 * state; /metrics counts checks by state; a stopped VM's checks read
 * unknown and it is never restarted. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/healthcheck.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct tu_ctl ctl;
static struct tu_agent agent;
static char *tenant_key, *vm_id, *vm_addr, *check_id;
/* The controller judges nodes (and runs health actions) after three of
 * its heartbeats: keep them short. */
static const char *const serve_args[] = { "--heartbeat", "1", NULL };

/* Interval 1 s, fall 2, restart after 2 unhealthy intervals. */
#define CHECK_JSON                                                             \
    "{\"type\":\"http\",\"port\":8080,\"path\":\"/healthz\",\"interval_s\":1," \
    "\"timeout_s\":1,\"fall\":2,\"rise\":1,\"action\":\"restart\","            \
    "\"restart_after\":2}"

/* ---- the VM's web service: an HTTP server on vm_addr:8080 ---- */

static int srv_fd = -1;
static pthread_t srv_thread;

static void *srv_main(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(srv_fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char b[1024];
        ssize_t n = read(c, b, sizeof(b));
        static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                 "Connection: close\r\n\r\nok";
        if (n > 0 && write(c, ok, sizeof(ok) - 1) < 0) {
            /* the checker gave up: nothing to do */
        }
        close(c);
    }
}

static void service_start(void)
{
    srv_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(srv_fd >= 0);
    int one = 1;
    setsockopt(srv_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(8080) };
    assert_int_equal(inet_pton(AF_INET, vm_addr, &a.sin_addr), 1);
    assert_int_equal(bind(srv_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(srv_fd, 16), 0);
    assert_int_equal(pthread_create(&srv_thread, NULL, srv_main, NULL), 0);
}

static void service_stop(void)
{
    shutdown(srv_fd, SHUT_RDWR);
    pthread_join(srv_thread, NULL);
    close(srv_fd);
    srv_fd = -1;
}

/* A game server's status port: vm_addr:27015/udp answers "pong " and
 * what it got. */
static void *udp_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    for (;;) {
        char b[600];
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(fd, b + 5, sizeof(b) - 5, 0,
                             (struct sockaddr *)&from, &fl);
        if (n <= 0)
            return NULL;
        memcpy(b, "pong ", 5);
        sendto(fd, b, (size_t)n + 5, 0, (struct sockaddr *)&from, fl);
    }
}

/* ---- the API ---- */

static json_t *api(const char *key, const char *method, const char *path,
                   const char *body, long want)
{
    return tu_api_want(&ctl, key, method, path, body, want);
}

static json_t *vm_get(void)
{
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s", vm_id);
    return api(tenant_key, "GET", p, NULL, 200);
}

/* How many of `list` (events) hold `text` in their detail. */
static size_t with_detail(const json_t *list, const char *text)
{
    size_t n = 0, i;
    json_t *e;
    json_array_foreach(list, i, e)
        n += json_str(e, "detail") && strstr(json_str(e, "detail"), text);
    return n;
}

/* The check's state as GET /v1/vms/{id} shows it (caller frees). */
static char *check_state(void)
{
    json_auto_t *vm = vm_get();
    json_t *c = json_array_get(json_object_get(vm, "health_checks"), 0);
    return xstrdup(json_str(c, "state") ? json_str(c, "state") : "");
}

/* Milliseconds until the check reads `want`, or -1 after ms. */
static int64_t wait_check(const char *want, int64_t ms)
{
    int64_t t0 = mono_ms();
    while (mono_ms() - t0 < ms) {
        _cleanup_free_ char *s = check_state();
        if (streq(s, want))
            return mono_ms() - t0;
        usleep(100 * 1000);
    }
    return -1;
}

static int64_t reboot_gen(void)
{
    json_auto_t *vm = vm_get();
    return json_int(vm, "reboot_gen", -1);
}

/* Events of `action` on the VM. */
static json_t *events(const char *action)
{
    json_auto_t *ev = api(tenant_key, "GET", "/v1/events?limit=500", NULL,
                          200);
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(ev, "items"), i, e)
        if (streq(json_str(e, "action"), action) &&
            streq(json_str(e, "target"), vm_id))
            json_array_append(out, e);
    return out;
}

static int setup(void **state)
{
    (void)state;
    tu_ctl_start(&ctl, serve_args);
    tenant_key = tu_account(&ctl, "web", "tenant");
    json_decref(api(tenant_key, "POST", "/v1/networks",
                    "{\"name\":\"lan\",\"cidr\":\"10.77.0.0/24\"}", 201));
    tu_agent_start(&agent, &ctl, "n1", 4, 4096);
    json_auto_t *vm = tu_vm_post(&ctl, tenant_key, "web", 1,
                                 "\"networks\":[\"lan\"],\"health_checks\":["
                                 CHECK_JSON "]", 201);
    vm_id = xstrdup(json_str(vm, "id"));
    vm_addr = xstrdup(json_string_value(json_array_get(
        json_object_get(vm, "addresses"), 0)));
    json_auto_t *got = vm_get();
    json_t *c = json_array_get(json_object_get(got, "health_checks"), 0);
    check_id = xstrdup(json_str(c, "id") ? json_str(c, "id") : "");
    /* The VM's address answers here: on lo of our namespace. */
    assert_int_equal(tu_ip("addr add %s/32 dev lo", vm_addr), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (srv_fd >= 0)
        service_stop();
    tu_agent_destroy(&agent);
    tu_ctl_destroy(&ctl);
    free(tenant_key);
    free(vm_id);
    free(vm_addr);
    free(check_id);
    return 0;
}

static void create_carries_the_check_and_it_starts_unknown(void **state)
{
    (void)state;
    assert_true(uuid_is_valid(check_id));
    json_auto_t *vm = vm_get();
    json_t *c = json_array_get(json_object_get(vm, "health_checks"), 0);
    assert_string_equal(json_str(c, "type"), "http");
    assert_string_equal(json_str(c, "path"), "/healthz");
    assert_int_equal(json_int(c, "port", 0), 8080);
    assert_string_equal(json_str(c, "action"), "restart");
    /* Nothing answers yet: it falls after its two failures, or is still
     * unknown; never healthy. */
    _cleanup_free_ char *s = check_state();
    assert_false(streq(s, "healthy"));
}

static void a_running_service_is_healthy(void **state)
{
    (void)state;
    /* Before it answers the VM may be restarted by the action; that is
     * checked below. */
    service_start();
    int64_t took = wait_check("healthy", 15000);
    assert_true(took >= 0);
    json_auto_t *vm = vm_get();
    json_t *c = json_array_get(json_object_get(vm, "health_checks"), 0);
    assert_string_equal(json_str(c, "output"), "HTTP 200");
    assert_non_null(json_str(c, "since"));
    assert_int_equal(json_int(c, "restarts", -1), 0);
}

static void a_stopped_service_is_unhealthy_within_interval_times_fall(
    void **state)
{
    (void)state;
    json_auto_t *before = events("vm.health");
    int64_t gen = reboot_gen();
    service_stop();
    /* interval 1 s x fall 2, plus one probe's timeout and the post. */
    int64_t took = wait_check("unhealthy", 6000);
    printf("# unhealthy %lld ms after the service stopped (interval 1 s, "
           "fall 2)\n", (long long)took);
    assert_true(took >= 0 && took <= 2000 + 1500);
    json_auto_t *vm = vm_get();
    json_t *c = json_array_get(json_object_get(vm, "health_checks"), 0);
    assert_non_null(strstr(json_str(c, "output"), "refused"));
    json_auto_t *after = events("vm.health");
    assert_int_equal(with_detail(after, "(8080/http): healthy -> unhealthy"),
                     with_detail(before, "(8080/http): healthy -> unhealthy")
                         + 1);
    /* The VM was not restarted yet: its grace is 2 intervals more. */
    assert_int_equal(reboot_gen(), gen);
}

static void the_restart_action_restarts_once_per_backoff(void **state)
{
    (void)state;
    /* Grace: restart_after 2 x interval 1 s; then waits of 2, 4, 8 s
     * (each restart starts the check over on the node: unknown, then
     * unhealthy after its fall). Watch 14 s. */
    int64_t g0 = reboot_gen(), t0 = mono_ms();
    int64_t seen[16];
    size_t n = 0;
    int64_t g = g0;
    while (mono_ms() - t0 < 14000 && n < 16) {
        int64_t now = reboot_gen();
        if (now != g) {
            assert_int_equal(now, g + 1); /* one at a time */
            seen[n++] = mono_ms() - t0;
            g = now;
        }
        usleep(100 * 1000);
    }
    for (size_t i = 0; i < n; i++)
        printf("# restart %zu at +%lld ms\n", i + 1, (long long)seen[i]);
    /* Restarted, but not every interval: at most 4 in 14 s (a restart
     * per interval would be 14). */
    assert_true(n >= 2 && n <= 4);
    /* Each wait at least the back-off: 2 s, then 4 s (second clock). */
    for (size_t i = 1; i < n; i++)
        assert_true(seen[i] - seen[i - 1] >= (int64_t)(1000 << i) - 1100);
    json_auto_t *ev = events("vm.health-restart");
    assert_true(json_array_size(ev) >= n);
    assert_int_equal(with_detail(ev, "unhealthy for"), json_array_size(ev));
    /* The VM's desire never changed: it is restarted, not stopped. */
    json_auto_t *vm = vm_get();
    assert_string_equal(json_str(vm, "desired_state"), "running");
    /* After HC_RESTARTS_MAX in a row the action gives up (until the check
     * is healthy again), whatever the waits. */
    tu_sql(&ctl, "UPDATE health_checks SET restarts = %d, restarted_at = 0 "
           "WHERE id = '%s'", HC_RESTARTS_MAX, check_id);
    int64_t gen = reboot_gen();
    sleep(5); /* over two graces and the longest wait seen above */
    assert_int_equal(reboot_gen(), gen);
}

static void recovery_flips_back_and_restarts_stop(void **state)
{
    (void)state;
    service_start();
    int64_t took = wait_check("healthy", 6000);
    printf("# healthy again %lld ms after the service came back\n",
           (long long)took);
    assert_true(took >= 0 && took <= 1000 + 1500 + 2000);
    json_auto_t *after = events("vm.health");
    assert_true(with_detail(after, "-> healthy") >= 2);
    int64_t g = reboot_gen();
    sleep(4);
    assert_int_equal(reboot_gen(), g);
    json_auto_t *vm = vm_get();
    json_t *c = json_array_get(json_object_get(vm, "health_checks"), 0);
    assert_int_equal(json_int(c, "restarts", -1), 0);
}

static void metrics_count_checks_by_state(void **state)
{
    (void)state;
    _cleanup_free_ char *m = tu_metrics_text(&ctl);
    assert_true(tu_metric(m, "fog_health_checks{state=\"healthy\"}") == 1);
    assert_true(tu_metric(m, "fog_health_checks{state=\"unhealthy\"}") == 0);
    assert_true(tu_metric(m, "fog_health_checks{state=\"unknown\"}") == 0);
    _cleanup_free_ char *promtool = tu_which("promtool");
    if (promtool)
        assert_int_equal(tu_promtool(promtool, ctl.dir, "check metrics", m),
                         0);
}

static void hostile_checks_are_refused(void **state)
{
    (void)state;
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/health-checks", vm_id);
    static const char *const bad[][2] = {
        { "{\"type\":\"http\",\"port\":80,\"path\":\"/x\\r\\nHost: evil\"}",
          "path" },
        { "{\"type\":\"http\",\"port\":80,\"interval_s\":-1}", "interval_s" },
        { "{\"type\":\"http\",\"port\":80,\"interval_s\":4294967297}",
          "interval_s" },
        { "{\"type\":\"tcp\",\"port\":0}", "port" },
        { "{\"type\":\"udp\",\"port\":27015}", "payload_hex" },
        { "{\"type\":\"tcp\",\"port\":22,\"timeout_s\":30}", "timeout_s" },
        { "{\"type\":\"tcp\",\"port\":22,\"id\":"
          "\"0b5b7d3e-2f55-4c7a-9a43-2b1b1b6f0c11\"}", "id" },
        { "[]", NULL },
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        long st;
        json_auto_t *j = tu_api(&ctl, tenant_key, "POST", p, bad[i][0], &st);
        assert_int_equal(st, 400);
        if (bad[i][1])
            assert_string_equal(json_str(j, "field"), bad[i][1]);
    }
    /* A payload over the bound. */
    _cleanup_free_ char *hex = xmalloc(2 * HC_PAYLOAD_MAX + 3);
    memset(hex, 'a', 2 * HC_PAYLOAD_MAX + 2);
    hex[2 * HC_PAYLOAD_MAX + 2] = 0;
    _cleanup_free_ char *big = xasprintf("{\"type\":\"udp\",\"port\":27015,"
                                         "\"payload_hex\":\"%s\"}", hex);
    long st;
    json_decref(tu_api(&ctl, tenant_key, "POST", p, big, &st));
    assert_int_equal(st, 400);
    /* A create with a bad check makes no VM. */
    json_auto_t *v = tu_vm_post(&ctl, tenant_key, "web2", 1,
                                "\"health_checks\":[{\"type\":\"tcp\","
                                "\"port\":70000}]", 400);
    assert_string_equal(json_str(v, "field"), "health_checks");
    /* Up to HC_PER_VM_MAX per VM, then 409. */
    for (int i = 1; i < HC_PER_VM_MAX; i++)
        json_decref(api(tenant_key, "POST", p,
                        "{\"type\":\"tcp\",\"port\":22}", 201));
    json_auto_t *full = api(tenant_key, "POST", p,
                            "{\"type\":\"tcp\",\"port\":22}", 409);
    /* Another tenant sees none of it. */
    _cleanup_free_ char *other = tu_account(&ctl, "other", "tenant");
    json_decref(api(other, "GET", p, NULL, 404));
    json_decref(api(other, "POST", p, "{\"type\":\"tcp\",\"port\":22}", 404));
    /* Remove the extras again (and an unknown id is 404). */
    json_auto_t *list = api(tenant_key, "GET", p, NULL, 200);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(list, "items"), i, c) {
        if (streq(json_str(c, "id"), check_id))
            continue;
        _cleanup_free_ char *d = xasprintf("%s/%s", p, json_str(c, "id"));
        json_decref(api(tenant_key, "DELETE", d, NULL, 204));
    }
    _cleanup_free_ char *d = xasprintf("%s/not-an-id", p);
    json_decref(api(tenant_key, "DELETE", d, NULL, 404));
}

static void fogctl_adds_lists_and_shows_checks(void **state)
{
    (void)state;
    int st;
    _cleanup_free_ char *out = tu_fogctl(&ctl, tenant_key, &st, "health-add",
                                         "web", "8080:tcp,interval=2,fall=1",
                                         NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "health check"));
    /* A published game port with its status query checked: text in,
     * the answer's first bytes expected. */
    int ufd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in ua = { .sin_family = AF_INET,
                              .sin_port = htons(27015) };
    assert_int_equal(inet_pton(AF_INET, vm_addr, &ua.sin_addr), 1);
    assert_int_equal(bind(ufd, (struct sockaddr *)&ua, sizeof(ua)), 0);
    pthread_t ut;
    assert_int_equal(pthread_create(&ut, NULL, udp_main,
                                    (void *)(intptr_t)ufd), 0);
    _cleanup_free_ char *pub = tu_fogctl(
        &ctl, tenant_key, &st, "port-add", "web", "27015/udp", "--health",
        "27015:udp,send=status,expect=pong st,interval=1,fall=1", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(pub, "health check"));
    _cleanup_free_ char *list = tu_fogctl(&ctl, tenant_key, &st,
                                          "health-list", "web", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(list, "tcp"));
    assert_non_null(strstr(list, "http"));
    /* dominfo names each check and its state once the node reported. */
    int64_t t0 = mono_ms();
    char *info = NULL;
    while (mono_ms() - t0 < 8000) {
        free(info);
        info = tu_fogctl(&ctl, tenant_key, &st, "dominfo", "web", NULL);
        if (info && strstr(info, "8080/tcp healthy (connected)") &&
            strstr(info, "27015/udp healthy"))
            break;
        usleep(200 * 1000);
    }
    assert_non_null(info);
    assert_non_null(strstr(info, "8080/http healthy (HTTP 200)"));
    assert_non_null(strstr(info, "8080/tcp healthy (connected)"));
    assert_non_null(strstr(info, "27015/udp healthy (answer of 11 bytes)"));
    free(info);
    /* The game server stops answering: its check falls. */
    shutdown(ufd, SHUT_RDWR);
    pthread_join(ut, NULL);
    close(ufd);
    t0 = mono_ms();
    info = NULL;
    while (mono_ms() - t0 < 8000) {
        free(info);
        info = tu_fogctl(&ctl, tenant_key, &st, "dominfo", "web", NULL);
        if (info && strstr(info, "27015/udp unhealthy"))
            break;
        usleep(200 * 1000);
    }
    assert_non_null(info);
    assert_non_null(strstr(info, "27015/udp unhealthy (port unreachable)"));
    free(info);
    /* Bad syntax: a one-line message and exit status 2, nothing sent. */
    tu_run_with_stderr = true;
    _cleanup_free_ char *bad = tu_fogctl(&ctl, tenant_key, &st, "health-add",
                                         "web", "8080:http:/a,interval=-3",
                                         NULL);
    tu_run_with_stderr = false;
    assert_int_equal(st, 2);
    assert_non_null(strstr(bad, "interval"));
    tu_run_with_stderr = true;
    _cleanup_free_ char *bad2 = tu_fogctl(
        &ctl, tenant_key, &st, "create", "x", "--cpus", "1", "--memory",
        "128M", "--disk", "1G", "--image", "tiny", "--health", "80:gopher",
        NULL);
    tu_run_with_stderr = false;
    assert_int_equal(st, 2);
    assert_non_null(strstr(bad2, "invalid --health"));
}

static void a_stopped_vm_has_its_checks_unknown_and_is_not_restarted(
    void **state)
{
    (void)state;
    service_stop();
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/stop", vm_id);
    json_decref(api(tenant_key, "POST", p, NULL, 202));
    assert_true(wait_check("unknown", 15000) >= 0);
    json_auto_t *vm = vm_get();
    json_t *c = json_array_get(json_object_get(vm, "health_checks"), 0);
    assert_string_equal(json_str(c, "output"), "the VM is not running");
    int64_t g = reboot_gen();
    sleep(4); /* two graces: a running VM would have been restarted */
    assert_int_equal(reboot_gen(), g);
    _cleanup_free_ char *s = check_state();
    assert_string_equal(s, "unknown");
}

int main(void)
{
    /* A network namespace of our own: the VM's address goes on its lo. */
    if (unshare(CLONE_NEWNET) < 0) {
        printf("cannot make a network namespace (needs root): skipped\n");
        return 77;
    }
    if (!tu_ip_bin() || tu_ip("link set lo up") != 0) {
        printf("no ip(8): skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_carries_the_check_and_it_starts_unknown),
        cmocka_unit_test(a_running_service_is_healthy),
        cmocka_unit_test(
            a_stopped_service_is_unhealthy_within_interval_times_fall),
        cmocka_unit_test(the_restart_action_restarts_once_per_backoff),
        cmocka_unit_test(recovery_flips_back_and_restarts_stop),
        cmocka_unit_test(metrics_count_checks_by_state),
        cmocka_unit_test(hostile_checks_are_refused),
        cmocka_unit_test(fogctl_adds_lists_and_shows_checks),
        cmocka_unit_test(
            a_stopped_vm_has_its_checks_unknown_and_is_not_restarted),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
