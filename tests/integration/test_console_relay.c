/* The interactive console relay: a tenant attaches to its VM's console
 * by HTTP Upgrade, the controller lists the session in the hosting
 * node's desired document, the node (this test speaks its side) connects
 * out with its credential, and the controller splices the two: bytes
 * both ways, owner only, the hosting node only, one client at a time,
 * either side closing closes the other, an event per attach. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentproto.h"
#include "api/client.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static struct tu_ctl ctl;
static char *tenant_key, *other_key;
static char *cred[2]; /* nodes cn-n1, cn-n2 */
static char *vm_id;
static int host;      /* index of the node hosting the VM */

/* Report the VM running on the node that hosts it. */
static void report_running(void)
{
    _cleanup_free_ char *body = xasprintf(
        "{\"vms\":[{\"id\":\"%s\",\"state\":\"running\"}]}", vm_id);
    free(tu_api_field(&ctl, cred[host], "POST", "/v1/agent/status", body,
                      200, NULL));
}

static int setup(void **state)
{
    tu_ctl_start(&ctl, NULL);
    tenant_key = tu_account(&ctl, "cn-owner", "tenant");
    other_key = tu_account(&ctl, "cn-other", "tenant");
    cred[0] = tu_market_node(&ctl, "cn-n1", NULL, "1");
    cred[1] = tu_market_node(&ctl, "cn-n2", NULL, "1");
    json_auto_t *vm = tu_vm_post(&ctl, tenant_key, "cn-vm", 1, NULL, 201);
    vm_id = xstrdup(json_str(vm, "id"));
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s", vm_id);
    _cleanup_free_ char *node = tu_api_field(&ctl, tenant_key, "GET", path,
                                             NULL, 200, "node_name");
    assert_true(streq(node, "cn-n1") || streq(node, "cn-n2"));
    host = streq(node, "cn-n2");
    report_running();
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    free(tenant_key);
    free(other_key);
    free(cred[0]);
    free(cred[1]);
    free(vm_id);
    return 0;
}

/* An upgraded connection and the client under it. */
struct conn {
    struct api_client *c;
    struct api_stream *s;
    long status;     /* the answer when not upgraded */
    char *type;      /* its problem type */
};

static void conn_open(struct conn *k, const char *key, const char *path)
{
    *k = (struct conn){ 0 };
    k->c = api_client_new(ctl.url, key, ctl.ca);
    api_client_set_timeout(k->c, 60);
    struct api_reply rep;
    int e = api_upgrade(k->c, path, CONSOLE_UPGRADE_PROTOCOL, &rep, &k->s);
    if (e == -EIO)
        fail_msg("upgrade of %s: %s", path, rep.error);
    k->status = rep.status;
    k->type = json_str(rep.json, "type") ? xstrdup(json_str(rep.json, "type"))
                                         : NULL;
    api_reply_clear(&rep);
}

static void conn_close(struct conn *k)
{
    api_stream_free(k->s);
    api_client_free(k->c);
    free(k->type);
    *k = (struct conn){ 0 };
}

/* Read until `want` has arrived (true) or the peer closed or 30 s
 * passed (false). */
static bool conn_expect(struct conn *k, const char *want)
{
    char got[4096];
    size_t n = 0;
    int64_t end = mono_ms() + 30000;
    while (mono_ms() < end) {
        ssize_t r = api_stream_recv(k->s, got + n, sizeof(got) - 1 - n);
        if (r == -EAGAIN) {
            struct pollfd pf = { api_stream_fd(k->s), POLLIN, 0 };
            poll(&pf, 1, 200);
            continue;
        }
        if (r <= 0)
            return false;
        n += (size_t)r;
        got[n] = '\0';
        if (strstr(got, want))
            return true;
        if (n == sizeof(got) - 1)
            return false;
    }
    return false;
}

/* True once the peer closed (recv 0 or an error) within 30 s. */
static bool conn_closed(struct conn *k)
{
    char b[256];
    int64_t end = mono_ms() + 30000;
    while (mono_ms() < end) {
        ssize_t r = api_stream_recv(k->s, b, sizeof(b));
        if (r == 0 || (r < 0 && r != -EAGAIN))
            return true;
        if (r == -EAGAIN) {
            struct pollfd pf = { api_stream_fd(k->s), POLLIN, 0 };
            poll(&pf, 1, 200);
        }
    }
    return false;
}

static void *tenant_attach(void *arg)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s/console/attach", vm_id);
    conn_open(arg, tenant_key, path);
    return NULL;
}

/* The session the node's desired document lists for the VM, waiting up
 * to 30 s for it; NULL when none came. Caller frees. */
static char *session_of(int node)
{
    int64_t end = mono_ms() + 30000;
    while (mono_ms() < end) {
        report_running(); /* a node that stops reporting loses its VMs */
        json_auto_t *d = tu_api(&ctl, cred[node], "GET",
                                "/v1/agent/desired?wait=0", NULL, NULL);
        json_t *c = json_array_get(json_object_get(d, AGENT_CONSOLES), 0);
        if (c && streq(json_str(c, "vm_id"), vm_id))
            return xstrdup(json_str(c, "id"));
        usleep(50 * 1000);
    }
    return NULL;
}

/* The number of sessions the node's document lists. */
static size_t sessions_listed(int node)
{
    json_auto_t *d = tu_api(&ctl, cred[node], "GET",
                            "/v1/agent/desired?wait=0", NULL, NULL);
    return json_array_size(json_object_get(d, AGENT_CONSOLES));
}

static void test_console_relays_owner_and_hosting_node_only(void **state)
{
    struct conn tenant, node, other, second;
    pthread_t t;

    /* Another tenant does not even learn the VM exists. */
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s/console/attach", vm_id);
    conn_open(&other, other_key, path);
    assert_null(other.s);
    assert_int_equal(other.status, 404);
    conn_close(&other);
    /* A plain GET is told to upgrade. */
    long st;
    json_decref(tu_api(&ctl, tenant_key, "GET", path, NULL, &st));
    assert_int_equal(st, 426);

    report_running();
    assert_int_equal(pthread_create(&t, NULL, tenant_attach, &tenant), 0);
    _cleanup_free_ char *sid = session_of(host);
    assert_non_null(sid);
    assert_int_equal(sessions_listed(!host), 0);

    /* Only the hosting node may join. */
    _cleanup_free_ char *join = xasprintf("/v1/agent/console/%s", sid);
    conn_open(&other, cred[!host], join);
    assert_null(other.s);
    assert_int_equal(other.status, 404);
    conn_close(&other);

    conn_open(&node, cred[host], join);
    assert_non_null(node.s);
    pthread_join(t, NULL);
    assert_non_null(tenant.s);

    /* Bytes both ways. */
    assert_int_equal(api_stream_send_all(tenant.s, "echo $((6*7))\n", 14,
                                         10000), 0);
    assert_true(conn_expect(&node, "echo $((6*7))\n"));
    assert_int_equal(api_stream_send_all(node.s, "42\r\n# ", 6, 10000), 0);
    assert_true(conn_expect(&tenant, "42\r\n# "));

    /* One client at a time; the node cannot join twice. */
    conn_open(&second, tenant_key, path);
    assert_null(second.s);
    assert_int_equal(second.status, 409);
    conn_close(&second);
    conn_open(&other, cred[host], join);
    assert_null(other.s);
    assert_int_equal(other.status, 409);
    conn_close(&other);

    /* The node hanging up ends the tenant's session, and the document no
     * longer lists it. */
    conn_close(&node);
    assert_true(conn_closed(&tenant));
    conn_close(&tenant);
    int64_t end = mono_ms() + 30000;
    while (sessions_listed(host) > 0 && mono_ms() < end)
        usleep(50 * 1000);
    assert_int_equal(sessions_listed(host), 0);

    /* The attach is in the owner's event log. */
    json_auto_t *events = tu_list(&ctl, tenant_key, "/v1/events?limit=500");
    size_t i, n = 0;
    json_t *e;
    json_array_foreach(events, i, e)
        if (streq(json_str(e, "action"), "vm.console-attach") &&
            streq(json_str(e, "target"), vm_id))
            n++;
    assert_int_equal(n, 1);
}

/* The hosting node joins the session an attach opened. */
static void node_join(struct conn *node)
{
    _cleanup_free_ char *sid = session_of(host);
    assert_non_null(sid);
    _cleanup_free_ char *join = xasprintf("/v1/agent/console/%s", sid);
    conn_open(node, cred[host], join);
    assert_non_null(node->s);
}

static void test_console_tenant_leaving_closes_node_side(void **state)
{
    struct conn tenant, node;
    pthread_t t;
    report_running();
    assert_int_equal(pthread_create(&t, NULL, tenant_attach, &tenant), 0);
    node_join(&node);
    pthread_join(t, NULL);
    assert_non_null(tenant.s);
    assert_int_equal(api_stream_send_all(node.s, "login: ", 7, 10000), 0);
    assert_true(conn_expect(&tenant, "login: "));
    conn_close(&tenant);
    assert_true(conn_closed(&node));
    conn_close(&node);
}

struct fogctl_run {
    const char *key;
    char *out;
    int status;
};

static void *fogctl_console(void *arg)
{
    struct fogctl_run *f = arg;
    f->out = tu_fogctl(&ctl, f->key, &f->status, "console", "cn-vm", NULL);
    return NULL;
}

/* fogctl console with stdin not a terminal (here /dev/null): it attaches,
 * prints virsh's banner and what the console sends, and leaves once
 * stdin has ended and the console fell quiet; another tenant gets a
 * one-line error and a non-zero exit. */
static void test_console_fogctl_pipes_console_output(void **state)
{
    struct conn node;
    struct fogctl_run f = { tenant_key, NULL, -1 };
    pthread_t t;
    report_running();
    assert_int_equal(pthread_create(&t, NULL, fogctl_console, &f), 0);
    node_join(&node);
    assert_int_equal(api_stream_send_all(node.s, "cn-guest login: ", 16,
                                         10000), 0);
    pthread_join(t, NULL);
    assert_int_equal(f.status, 0);
    assert_non_null(strstr(f.out, "Connected to domain 'cn-vm'"));
    assert_non_null(strstr(f.out, "Escape character is ^]"));
    assert_non_null(strstr(f.out, "cn-guest login: "));
    free(f.out);
    assert_true(conn_closed(&node));
    conn_close(&node);

    struct fogctl_run g = { other_key, NULL, -1 };
    fogctl_console(&g);
    assert_int_not_equal(g.status, 0);
    free(g.out);
}

static void *fogctl_log(void *arg)
{
    struct fogctl_run *f = arg;
    f->out = tu_fogctl(&ctl, f->key, &f->status, "console", "cn-vm", "--log",
                       "--bytes", "200000", NULL);
    return NULL;
}

/* A node's answer to log session `id` as node `node`: the HTTP status. */
static long post_log(int node, const char *id, const char *body, size_t len)
{
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/console/%s/log",
                                         ctl.url, id);
    struct tu_resp rep = { 0 };
    long st = tu_http("POST", url, cred[node], ctl.ca, body, len,
                      "text/plain", NULL, &rep);
    tu_resp_clear(&rep);
    return st;
}

/* The log beyond the tail the controller keeps: the tail it keeps is cut
 * to `bytes` on a character; more is read from the hosting node, which
 * is asked in its desired document (log_bytes) and answers once; what it
 * sends is cleaned and cut to what was asked; another node cannot
 * answer; bad sizes are refused. */
static void test_console_log_reads_more_than_the_tail(void **state)
{
    _cleanup_free_ char *st = xasprintf(
        "{\"vms\":[{\"id\":\"%s\",\"state\":\"running\","
        "\"console_tail\":\"boot: one\\nboot: \u00e9t\u00e9\\n\"}]}",
        vm_id);
    free(tu_api_field(&ctl, cred[host], "POST", "/v1/agent/status", st, 200,
                      NULL));
    _cleanup_free_ char *url = xasprintf("%s/v1/vms/%s/console?bytes=5",
                                         ctl.url, vm_id);
    struct tu_resp rep = { 0 };
    assert_int_equal(tu_http("GET", url, tenant_key, ctl.ca, NULL, 0, NULL,
                             NULL, &rep), 200);
    /* The last 5 bytes start inside the first "é": the answer starts
     * after it. */
    assert_string_equal(rep.body, "t\u00e9\n");
    tu_resp_clear(&rep);
    static const char *const bad[] = { "0", "-1", "1048577", "12x", "" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        _cleanup_free_ char *p = xasprintf("/v1/vms/%s/console?bytes=%s",
                                           vm_id, bad[i]);
        long code = 0;
        json_auto_t *e = tu_api(&ctl, tenant_key, "GET", p, NULL, &code);
        assert_int_equal(code, 400);
    }

    /* 250,000 bytes on the node: a first line that must be cut, a middle
     * one 150,000 bytes from the end (beyond any tail the controller
     * keeps), colours, a stray control byte, a last line. */
    size_t len = 250000;
    char *log = xmalloc(len);
    memset(log, 'x', len);
    for (size_t i = 99; i < len; i += 100)
        log[i] = '\n';
    memcpy(log, "FIRSTLINE", 9);
    memcpy(log + 100000, "MIDDLELINE", 10);
    static const char ok[] = "[\x1b[0;32m  OK  \x1b[0m] Started\x01";
    memcpy(log + 200000, ok, sizeof(ok) - 1);
    memcpy(log + len - 9, "LASTLINE\n", 9);

    struct fogctl_run f = { tenant_key, NULL, -1 };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fogctl_log, &f), 0);
    _cleanup_free_ char *id = session_of(host);
    assert_non_null(id);
    json_auto_t *d = tu_api(&ctl, cred[host], "GET",
                            "/v1/agent/desired?wait=0", NULL, NULL);
    json_t *c = json_array_get(json_object_get(d, AGENT_CONSOLES), 0);
    assert_int_equal(json_integer_value(json_object_get(
                         c, AGENT_CONSOLE_LOG_BYTES)), 200000);
    assert_int_equal(post_log(!host, id, log, len), 404);
    assert_int_equal(post_log(host, id, log, len), 204);
    assert_int_not_equal(post_log(host, id, log, len), 204);
    pthread_join(t, NULL);
    free(log);
    assert_int_equal(f.status, 0);
    assert_null(strstr(f.out, "FIRSTLINE"));
    assert_non_null(strstr(f.out, "MIDDLELINE"));
    assert_non_null(strstr(f.out, "LASTLINE"));
    /* The view strips the colours; the stray byte was cleaned. */
    assert_non_null(strstr(f.out, "[  OK  ] Started?"));
    assert_null(strchr(f.out, 0x1b));
    assert_true(strlen(f.out) <= 200000 + 1);
    free(f.out);
    /* Answered, the session is gone from the node's document. */
    assert_int_equal(sessions_listed(host), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_console_relays_owner_and_hosting_node_only),
        cmocka_unit_test(test_console_tenant_leaving_closes_node_side),
        cmocka_unit_test(test_console_fogctl_pipes_console_output),
        cmocka_unit_test(test_console_log_reads_more_than_the_tail),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
