/* Web ingress through the hub's edge, end to end in a network namespace
 * of the test's own: the controller writes haproxy.cfg and reloads a real
 * HAProxy (master-worker, SIGUSR2) bound to the hub's address; a node
 * agent on libvirt's test driver reports a public address; nftables DNAT
 * plays the node's published ports towards the VM's address, where the
 * "VM" serves TLS (openssl s_server with a throwaway certificate) and
 * plain HTTP. curl with SNI reaches the VM through the edge in
 * passthrough (it trusts only the VM's certificate), Host routes on 80,
 * unknown names are refused, a health check that turns unhealthy takes
 * the route out, the route follows the node's address and the VM to
 * another node and host port (as a restore leaves it), and after
 * ingress-remove nothing routes. The API refuses hostile hostnames,
 * unpublished ports, a hostname another account holds and routes past
 * the per-VM bound, with problem+json; fogctl adds, lists and removes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HUB "192.0.2.1"
#define NODE_IP "198.51.100.7"
#define NODE_IP2 "198.51.100.8"
#define HOST "www.example.org"

static struct tu_ctl ctl;
static struct tu_agent agent;
static char *dir, *cfg_path, *pid_path, *cert, *key, *tenant_key,
    *other_key, *vm_id, *vm_addr, *haproxy, *openssl, *curl, *nft_bin;
static int64_t tls_port, http_port; /* the published host ports */
static pid_t tls_pid = -1, haproxy_pid = -1;
static char *serve_args[16];
static const char *agent_args[] = { "--public-ip", NODE_IP, NULL };
static const char *agent_args2[] = { "--public-ip", NODE_IP2, NULL };

static json_t *api(const char *k, const char *method, const char *path,
                   const char *body, long want)
{
    return tu_api_want(&ctl, k, method, path, body, want);
}

/* ---- the VM's services ---- */

static void tls_start(void)
{
    _cleanup_free_ char *accept = xasprintf("%s:443", vm_addr);
    char *argv[] = { openssl, "s_server", "-accept", accept, "-cert", cert,
                     "-key", key, "-www", "-quiet", NULL };
    _cleanup_free_ char *log = xasprintf("%s/s_server.log", dir);
    tls_pid = tu_spawn(argv, log);
    assert_true(tls_pid > 0);
    /* Up once it accepts a connection. */
    for (int i = 0; i < 100; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET,
                                 .sin_port = htons(443) };
        inet_pton(AF_INET, vm_addr, &a.sin_addr);
        int ok = connect(fd, (struct sockaddr *)&a, sizeof(a));
        close(fd);
        if (ok == 0)
            return;
        usleep(50 * 1000);
    }
    fail_msg("openssl s_server did not start");
}

static void tls_stop(void)
{
    if (tls_pid > 0)
        tu_kill(tls_pid, SIGKILL);
    tls_pid = -1;
}

static int http_fd = -1;
static pthread_t http_thread;
static volatile int saw_forwarded_for; /* a request named its client */

static void *http_main(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(http_fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char b[2048];
        ssize_t n = read(c, b, sizeof(b) - 1);
        if (n > 0) {
            b[n] = '\0';
            if (strcasestr(b, "\r\nX-Forwarded-For: "))
                saw_forwarded_for = 1;
        }
        static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 15\r\n"
                                 "Connection: close\r\n\r\nhello from vm\r\n";
        if (n > 0 && write(c, ok, sizeof(ok) - 1) < 0) {
            /* the client left */
        }
        close(c);
    }
}

static void http_start(void)
{
    http_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(http_fd >= 0);
    int one = 1;
    setsockopt(http_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(80) };
    assert_int_equal(inet_pton(AF_INET, vm_addr, &a.sin_addr), 1);
    assert_int_equal(bind(http_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(http_fd, 16), 0);
    assert_int_equal(pthread_create(&http_thread, NULL, http_main, NULL), 0);
}

/* ---- clients ---- */

/* curl through the edge for `host` on `scheme`, trusting only the VM's
 * certificate; its exit status, the body in *ret_body (may be NULL). */
static int fetch(const char *scheme, const char *host, char **ret_body)
{
    int port = streq(scheme, "https") ? 443 : 80;
    _cleanup_free_ char *resolve = xasprintf("%s:%d:%s", host, port, HUB);
    _cleanup_free_ char *url = xasprintf("%s://%s/", scheme, host);
    char *argv[] = { curl, "-sS", "--fail", "--max-time", "5", "--cacert",
                     cert, "--resolve", resolve, url, NULL };
    int st = -1;
    char *out = tu_run(argv, &st);
    if (ret_body)
        *ret_body = out;
    else
        free(out);
    return st;
}

static char *config_text(void)
{
    char *t = NULL;
    size_t n;
    if (file_read(cfg_path, 1 << 20, &t, &n) < 0)
        return xstrdup("");
    return t;
}

/* Wait up to ms for the edge's file to hold (or, !present, lack) needle;
 * ms waited or -1. */
static int64_t wait_config(const char *needle, bool present, int64_t ms)
{
    int64_t t0 = mono_ms();
    while (mono_ms() - t0 < ms) {
        _cleanup_free_ char *t = config_text();
        if ((strstr(t, needle) != NULL) == present)
            return mono_ms() - t0;
        usleep(100 * 1000);
    }
    return -1;
}

/* Wait up to ms until fetching host over scheme exits (or, !ok, fails). */
static int64_t wait_fetch(const char *scheme, const char *host, bool ok,
                          int64_t ms)
{
    int64_t t0 = mono_ms();
    while (mono_ms() - t0 < ms) {
        if ((fetch(scheme, host, NULL) == 0) == ok)
            return mono_ms() - t0;
        usleep(200 * 1000);
    }
    return -1;
}

static json_t *routes(void)
{
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/ingress", vm_id);
    return tu_list(&ctl, tenant_key, p);
}

static char *route_status(int port)
{
    json_auto_t *l = routes();
    size_t i;
    json_t *it;
    json_array_foreach(l, i, it)
        if (json_int(it, "port", 0) == port)
            return xstrdup(json_str(it, "status"));
    return xstrdup("none");
}

static int64_t wait_status(int port, const char *want, int64_t ms)
{
    int64_t t0 = mono_ms();
    while (mono_ms() - t0 < ms) {
        _cleanup_free_ char *s = route_status(port);
        if (streq(s, want))
            return mono_ms() - t0;
        usleep(100 * 1000);
    }
    return -1;
}

/* ---- setup ---- */

static int64_t host_port_of(const json_t *ports, int vm_port)
{
    size_t i;
    json_t *it;
    json_array_foreach(ports, i, it)
        if (json_int(it, "vm_port", 0) == vm_port)
            return json_int(it, "host_port", -1);
    return -1;
}

static int setup(void **state)
{
    (void)state;
    dir = tu_tempdir("ingress");
    cfg_path = xasprintf("%s/haproxy.cfg", dir);
    pid_path = xasprintf("%s/haproxy.pid", dir);
    cert = xasprintf("%s/vm.crt", dir);
    key = xasprintf("%s/vm.key", dir);
    /* The VM's own certificate, made here and held by the VM alone. */
    char *mk[] = { openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                   "-out", cert, "-days", "1", "-subj", "/CN=" HOST,
                   "-addext", "subjectAltName=DNS:" HOST, NULL };
    int st = -1;
    free(tu_run(mk, &st));
    assert_int_equal(st, 0);

    int n = 0;
    serve_args[n++] = "--heartbeat";
    serve_args[n++] = "1";
    serve_args[n++] = "--ingress-config";
    serve_args[n++] = cfg_path;
    serve_args[n++] = "--ingress-reload";
    serve_args[n++] = xasprintf("kill -USR2 $(cat %s)", pid_path);
    serve_args[n++] = "--ingress-https-bind";
    serve_args[n++] = HUB ":443";
    serve_args[n++] = "--ingress-http-bind";
    serve_args[n++] = HUB ":80";
    serve_args[n] = NULL;
    tu_ctl_start(&ctl, (const char *const *)serve_args);
    /* The edge starts from the controller's first file. */
    assert_true(wait_config("frontend fog_https", true, 10000) >= 0);
    /* Master-worker in the foreground: SIGUSR2 to the master (its pid in
     * pid_path) reloads the file. */
    char *hp[] = { haproxy, "-W", "-f", cfg_path, "-p", pid_path, NULL };
    _cleanup_free_ char *hlog = xasprintf("%s/haproxy.log", dir);
    haproxy_pid = tu_spawn(hp, hlog);
    assert_true(haproxy_pid > 0);
    for (int i = 0; i < 100 && access(pid_path, F_OK) < 0; i++)
        usleep(50 * 1000);
    assert_int_equal(access(pid_path, F_OK), 0);

    tenant_key = tu_account(&ctl, "web", "tenant");
    other_key = tu_account(&ctl, "rival", "tenant");
    json_decref(api(tenant_key, "POST", "/v1/networks",
                    "{\"name\":\"lan\",\"cidr\":\"10.77.0.0/24\"}", 201));
    tu_agent_start(&agent, &ctl, "n1", 4, 4096);
    agent.extra = agent_args; /* the node's public address */
    tu_agent_restart(&agent);
    json_auto_t *vm = tu_vm_post(
        &ctl, tenant_key, "web", 1,
        "\"networks\":[\"lan\"],\"ports\":[{\"proto\":\"tcp\",\"vm_port\":"
        "443},{\"proto\":\"tcp\",\"vm_port\":80}],\"health_checks\":[{"
        "\"type\":\"tcp\",\"port\":443,\"interval_s\":1,\"timeout_s\":1,"
        "\"fall\":1,\"rise\":1}]", 201);
    vm_id = xstrdup(json_str(vm, "id"));
    vm_addr = xstrdup(json_string_value(json_array_get(
        json_object_get(vm, "addresses"), 0)));
    _cleanup_free_ char *pp = xasprintf("/v1/vms/%s/ports", vm_id);
    for (int i = 0; i < 100 && (tls_port <= 0 || http_port <= 0); i++) {
        json_auto_t *ports = tu_list(&ctl, tenant_key, pp);
        tls_port = host_port_of(ports, 443);
        http_port = host_port_of(ports, 80);
        if (tls_port <= 0 || http_port <= 0)
            usleep(100 * 1000);
    }
    assert_true(tls_port > 0 && http_port > 0);
    /* The VM's address answers here (on lo), and the node's published
     * ports reach it as the node's DNAT would. */
    assert_int_equal(tu_ip("addr add %s/32 dev lo", vm_addr), 0);
    _cleanup_free_ char *nft = xasprintf(
        "table ip fogtest {\n chain out {\n  type nat hook output priority "
        "-100\n  ip daddr { %s, %s } tcp dport %lld dnat to %s:443\n"
        "  ip daddr { %s, %s } tcp dport %lld dnat to %s:80\n }\n}\n",
        NODE_IP, NODE_IP2, (long long)tls_port, vm_addr, NODE_IP, NODE_IP2,
        (long long)http_port, vm_addr);
    char *nargv[] = { nft_bin, nft, NULL };
    _cleanup_free_ char *nout = tu_run(nargv, &st);
    if (st != 0)
        fail_msg("nft: %s", nout);
    tls_start();
    http_start();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tls_stop();
    if (http_fd >= 0) {
        shutdown(http_fd, SHUT_RDWR);
        pthread_join(http_thread, NULL);
        close(http_fd);
    }
    if (haproxy_pid > 0)
        tu_kill(haproxy_pid, SIGTERM);
    tu_agent_destroy(&agent);
    tu_ctl_destroy(&ctl);
    if (dir)
        tu_rmrf(dir);
    return 0;
}

/* ---- the API ---- */

static void hostile_hostnames_and_unpublished_ports_are_refused(void **state)
{
    (void)state;
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/ingress", vm_id);
    static const char *const bad[] = {
        "{\"hostname\":\"www.example.org\\nbackend x\"}",
        "{\"hostname\":\"www example.org\"}",
        "{\"hostname\":\"www.example.org }\"}",
        "{\"hostname\":\"*.example.org\"}",
        "{\"hostname\":\"localhost\"}",
        "{\"hostname\":\"192.0.2.1\"}",
        "{\"hostname\":\"-a.example.org\"}",
        "{\"hostname\":\"\"}",
        "{\"hostname\":7}",
        "{\"hostname\":\"www.example.org\",\"port\":8443}",
        "{\"hostname\":\"www.example.org\",\"port\":81}",
        "{\"hostname\":\"www.example.org\",\"vm_port\":0}",
        "{\"hostname\":\"www.example.org\",\"extra\":1}",
        "[]",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        long st = 0;
        json_auto_t *j = tu_api(&ctl, tenant_key, "POST", p, bad[i], &st);
        if (st != 400)
            fail_msg("%s answered %ld", bad[i], st);
        assert_non_null(json_str(j, "detail"));
    }
    /* VM port 8443 is not published: refused with the way out. */
    json_auto_t *np = api(tenant_key, "POST", p,
                          "{\"hostname\":\"" HOST "\",\"vm_port\":8443}",
                          409);
    assert_string_equal(json_str(np, "type") + strlen(json_str(np, "type")) -
                            strlen("port-not-published"),
                        "port-not-published");
    assert_non_null(strstr(json_str(np, "detail"), "port-add"));
    /* Nothing was stored. */
    json_auto_t *l = routes();
    assert_int_equal(json_array_size(l), 0);
    /* Another tenant cannot touch the VM at all. */
    json_decref(api(other_key, "POST", p, "{\"hostname\":\"x.example.org\"}",
                    404));
}

static void a_hostname_belongs_to_one_account(void **state)
{
    (void)state;
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/ingress", vm_id);
    json_auto_t *a = api(tenant_key, "POST", p,
                         "{\"hostname\":\"WWW.Example.org\"}", 201);
    assert_string_equal(json_str(a, "hostname"), HOST);
    assert_int_equal(json_int(a, "port", 0), 443);
    assert_int_equal(json_int(a, "vm_port", 0), 443);
    json_auto_t *b = api(tenant_key, "POST", p,
                         "{\"hostname\":\"" HOST "\",\"port\":80}", 201);
    assert_int_equal(json_int(b, "vm_port", 0), 80);
    /* The same route again, and the name from another account's VM. */
    json_decref(api(tenant_key, "POST", p, "{\"hostname\":\"" HOST "\"}",
                    409));
    json_auto_t *ovm = tu_vm_post(&ctl, other_key, "rivalvm", 1,
                                  "\"ports\":[{\"proto\":\"tcp\",\"vm_port\":"
                                  "443}]", 201);
    _cleanup_free_ char *op = xasprintf("/v1/vms/%s/ingress",
                                        json_str(ovm, "id"));
    json_auto_t *c = api(other_key, "POST", op, "{\"hostname\":\"" HOST
                         "\",\"port\":443}", 409);
    assert_non_null(strstr(json_str(c, "detail"), "taken"));
    /* The rival sees none of the web tenant's routes. */
    json_auto_t *mine = tu_list(&ctl, other_key, "/v1/ingress");
    assert_int_equal(json_array_size(mine), 0);
    json_auto_t *all = tu_list(&ctl, tenant_key, "/v1/ingress");
    assert_int_equal(json_array_size(all), 2);
    _cleanup_free_ char *dp = xasprintf("/v1/vms/%s", json_str(ovm, "id"));
    json_decref(api(other_key, "DELETE", dp, NULL, 202));
}

static void a_vm_has_a_bounded_number_of_routes(void **state)
{
    (void)state;
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/ingress", vm_id);
    /* Two exist; fill up to 16 with names on 80. */
    for (int i = 0; i < 14; i++) {
        _cleanup_free_ char *b = xasprintf(
            "{\"hostname\":\"n%d.example.org\",\"port\":80}", i);
        json_decref(api(tenant_key, "POST", p, b, 201));
    }
    json_auto_t *full = api(tenant_key, "POST", p,
                            "{\"hostname\":\"n99.example.org\",\"port\":80}",
                            409);
    assert_non_null(strstr(json_str(full, "detail"), "16"));
    for (int i = 0; i < 14; i++) {
        _cleanup_free_ char *d = xasprintf("%s/n%d.example.org", p, i);
        json_decref(api(tenant_key, "DELETE", d, NULL, 204));
    }
    json_auto_t *l = routes();
    assert_int_equal(json_array_size(l), 2);
}

/* ---- the edge ---- */

static void sni_reaches_the_vm_in_passthrough(void **state)
{
    (void)state;
    _cleanup_free_ char *server = xasprintf("server vm %s:%lld", NODE_IP,
                                            (long long)tls_port);
    assert_true(wait_config(server, true, 5000) >= 0);
    assert_true(wait_status(443, "up", 10000) >= 0);
    /* curl trusts only the VM's certificate: success means the TLS
     * session ended in the VM, not at the hub. */
    int64_t ms = wait_fetch("https", HOST, true, 10000);
    if (ms < 0) {
        _cleanup_free_ char *t = config_text();
        fail_msg("no TLS answer through the edge; config:\n%s", t);
    }
    printf("TLS through the edge after %lld ms\n", (long long)ms);
    _cleanup_free_ char *body = NULL;
    assert_int_equal(fetch("https", HOST, &body), 0);
    assert_non_null(strstr(body, "s_server"));
    /* The certificate the client sees names the VM's host. */
    _cleanup_free_ char *conn = xstrdup(HUB ":443");
    char *sc[] = { openssl, "s_client", "-connect", conn, "-servername",
                   HOST, NULL };
    int st = -1;
    _cleanup_free_ char *out = tu_run(sc, &st);
    assert_non_null(strstr(out, "CN = " HOST));
}

static void unknown_names_are_refused(void **state)
{
    (void)state;
    assert_int_not_equal(fetch("https", "nope.example.org", NULL), 0);
    _cleanup_free_ char *body = NULL;
    assert_int_not_equal(fetch("http", "nope.example.org", &body), 0);
}

static void host_routes_plain_http(void **state)
{
    (void)state;
    assert_true(wait_fetch("http", HOST, true, 10000) >= 0);
    _cleanup_free_ char *body = NULL;
    saw_forwarded_for = 0;
    assert_int_equal(fetch("http", HOST, &body), 0);
    assert_string_equal(body, "hello from vm\r\n");
    assert_true(saw_forwarded_for);
}

static void an_unhealthy_service_is_taken_out_of_ingress(void **state)
{
    (void)state;
    tls_stop();
    int64_t ms = wait_status(443, "down", 15000);
    assert_true(ms >= 0);
    printf("route down %lld ms after the service stopped\n", (long long)ms);
    _cleanup_free_ char *server = xasprintf("server vm %s:%lld", NODE_IP,
                                            (long long)tls_port);
    assert_true(wait_config(server, false, 5000) >= 0);
    assert_true(wait_fetch("https", HOST, false, 5000) >= 0);
    json_auto_t *l = routes();
    json_t *r = tu_find(l, "status", "down");
    assert_non_null(r);
    assert_non_null(strstr(json_str(r, "reason"), "health"));
    /* Plain HTTP on the same VM stays routed. */
    assert_int_equal(fetch("http", HOST, NULL), 0);
    tls_start();
    assert_true(wait_status(443, "up", 15000) >= 0);
    assert_true(wait_fetch("https", HOST, true, 10000) >= 0);
}

static void the_route_follows_the_node_address(void **state)
{
    (void)state;
    /* As after a migration: the VM's node is reached elsewhere now (its
     * provider moved it to another public address). */
    agent.extra = agent_args2;
    tu_agent_restart(&agent);
    _cleanup_free_ char *server = xasprintf("server vm %s:%lld", NODE_IP2,
                                            (long long)tls_port);
    assert_true(wait_config(server, true, 5000) >= 0);
    assert_true(wait_fetch("https", HOST, true, 10000) >= 0);
}

static void fogctl_adds_lists_and_removes(void **state)
{
    (void)state;
    int st = -1;
    _cleanup_free_ char *bad = tu_fogctl(&ctl, tenant_key, &st, "ingress-add",
                                         "web", "api.example.org", "--port",
                                         "8080", NULL);
    assert_int_not_equal(st, 0);
    _cleanup_free_ char *add = tu_fogctl(&ctl, tenant_key, &st, "ingress-add",
                                         "web", "api.example.org", "--port",
                                         "80", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(add, "api.example.org:80"));
    _cleanup_free_ char *list = tu_fogctl(&ctl, tenant_key, &st,
                                          "ingress-list", "web", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(list, "api.example.org"));
    assert_non_null(strstr(list, HOST));
    _cleanup_free_ char *all = tu_fogctl(&ctl, tenant_key, &st,
                                         "ingress-list", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(all, "api.example.org"));
    assert_true(wait_fetch("http", "api.example.org", true, 10000) >= 0);
    _cleanup_free_ char *rm = tu_fogctl(&ctl, tenant_key, &st,
                                        "ingress-remove", "web",
                                        "api.example.org", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *again = tu_fogctl(&ctl, tenant_key, &st,
                                           "ingress-remove", "web",
                                           "api.example.org", NULL);
    assert_int_not_equal(st, 0);
}

static void after_remove_nothing_routes(void **state)
{
    (void)state;
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/ingress/%s", vm_id, HOST);
    json_decref(api(tenant_key, "DELETE", p, NULL, 204));
    json_decref(api(tenant_key, "DELETE", p, NULL, 404));
    assert_true(wait_config("backend t_" HOST "\n", false, 5000) >= 0);
    assert_true(wait_config("backend h_" HOST "\n", false, 5000) >= 0);
    assert_true(wait_fetch("https", HOST, false, 10000) >= 0);
    assert_true(wait_fetch("http", HOST, false, 10000) >= 0);
    /* The name is free again: the rival may take it. */
    json_auto_t *ovm = tu_vm_post(&ctl, other_key, "rival2", 1,
                                  "\"ports\":[{\"proto\":\"tcp\",\"vm_port\":"
                                  "443}]", 201);
    _cleanup_free_ char *op = xasprintf("/v1/vms/%s/ingress",
                                        json_str(ovm, "id"));
    json_decref(api(other_key, "POST", op, "{\"hostname\":\"" HOST "\"}",
                    201));
}

static void the_route_follows_the_vm_to_another_node(void **state)
{
    (void)state;
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/ingress", vm_id);
    json_auto_t *r = api(tenant_key, "POST", p,
                         "{\"hostname\":\"moved.example.org\"}", 201);
    _cleanup_free_ char *backend = xasprintf(
        "backend t_moved.example.org\n    mode tcp\n    server vm %s:%lld\n",
        NODE_IP2, (long long)tls_port);
    assert_true(wait_config(backend, true, 5000) >= 0);
    /* As a restore or migration leaves it: the VM on another node, its
     * port published there on another host port. */
    char *n2_id = NULL, *n2_cred = NULL;
    assert_int_equal(tu_node_join(&ctl, ctl.admin_key, "n2",
                                  "\"public_ip\":\"203.0.113.9\"", &n2_id,
                                  &n2_cred), 201);
    tu_sql(&ctl, "UPDATE vms SET node_id = '%s' WHERE id = '%s'", n2_id,
           vm_id);
    tu_sql(&ctl, "UPDATE nodes SET public_ip = '203.0.113.9' WHERE id = "
           "'%s'", n2_id);
    tu_sql(&ctl, "UPDATE ports SET node_id = '%s', host_port = 31443 WHERE "
           "vm_id = '%s' AND vm_port = 443", n2_id, vm_id);
    /* As a move tells the VM's networks (netrecords_vm_changed). */
    tu_sql(&ctl, "UPDATE networks SET dns_rev = dns_rev + 1 WHERE id IN "
           "(SELECT network_id FROM vm_nics WHERE vm_id = '%s')", vm_id);
    tu_sql(&ctl, "INSERT INTO net_dns_log (network_id, dns_rev, vm_id) "
           "SELECT id, dns_rev, '%s' FROM networks WHERE id IN (SELECT "
           "network_id FROM vm_nics WHERE vm_id = '%s')", vm_id, vm_id);
    _cleanup_free_ char *moved = xstrdup(
        "backend t_moved.example.org\n    mode tcp\n    server vm "
        "203.0.113.9:31443\n");
    int64_t ms = wait_config(moved, true, 5000);
    assert_true(ms >= 0);
    printf("edge followed the VM to its new node in %lld ms\n",
           (long long)ms);
    json_auto_t *l = routes();
    json_t *it = tu_find(l, "hostname", "moved.example.org");
    assert_string_equal(json_str(it, "backend"), "203.0.113.9:31443");
    free(n2_id);
    free(n2_cred);
}

int main(void)
{
    if (unshare(CLONE_NEWNET) < 0) {
        printf("cannot make a network namespace (needs root): skipped\n");
        return 77;
    }
    if (!tu_ip_bin() || tu_ip("link set lo up") != 0 ||
        tu_ip("addr add " HUB "/32 dev lo") != 0 ||
        tu_ip("addr add " NODE_IP "/32 dev lo") != 0 ||
        tu_ip("addr add " NODE_IP2 "/32 dev lo") != 0) {
        printf("no ip(8): skipped\n");
        return 77;
    }
    haproxy = tu_which("haproxy");
    openssl = tu_which("openssl");
    curl = tu_which("curl");
    nft_bin = tu_which("nft");
    if (!haproxy || !openssl || !curl || !nft_bin) {
        printf("needs haproxy, openssl, curl and nft: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hostile_hostnames_and_unpublished_ports_are_refused),
        cmocka_unit_test(a_hostname_belongs_to_one_account),
        cmocka_unit_test(a_vm_has_a_bounded_number_of_routes),
        cmocka_unit_test(sni_reaches_the_vm_in_passthrough),
        cmocka_unit_test(unknown_names_are_refused),
        cmocka_unit_test(host_routes_plain_http),
        cmocka_unit_test(an_unhealthy_service_is_taken_out_of_ingress),
        cmocka_unit_test(the_route_follows_the_node_address),
        cmocka_unit_test(fogctl_adds_lists_and_removes),
        cmocka_unit_test(after_remove_nothing_routes),
        cmocka_unit_test(the_route_follows_the_vm_to_another_node),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
