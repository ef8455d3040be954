/* Interactive serial console: a VM's owner attaches by HTTP Upgrade, the
 * VM's node is asked (in its desired document) to connect out to the
 * same session, and the two upgraded connections are spliced
 * (controller/console.c). */
#include "api/agentproto.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/console.h"
#include "controller/handlers.h"

#include <errno.h>
#include <strings.h>

/* Whether header value `v` lists token `tok` (comma separated, any case). */
static bool header_has_token(const char *v, const char *tok)
{
    size_t n = strlen(tok);
    while (v && *v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        size_t len = strcspn(v, ", \t");
        if (len == n && strncasecmp(v, tok, n) == 0)
            return true;
        v += len;
    }
    return false;
}

bool upgrade_asked(struct http_request *r, const char *protocol)
{
    if (header_has_token(http_req_header(r, "Upgrade"), protocol) &&
        header_has_token(http_req_header(r, "Connection"), "upgrade"))
        return true;
    http_reply_header(r, "Upgrade", protocol);
    http_reply_problem(r, 426, "upgrade-required", "Upgrade",
                       "this is reached with Connection: Upgrade and "
                       "Upgrade: %s", protocol);
    return false;
}

/* What a waiting tenant request keeps between its runs. */
struct attach_wait {
    char *session;
    int64_t deadline;
};

static void attach_wait_free(void *p)
{
    struct attach_wait *w = p;
    if (!w)
        return;
    free(w->session);
    free(w);
}

static void tenant_upgraded(struct http_upgraded *u, void *arg)
{
    struct app *a = ((void **)arg)[0];
    char *id = ((void **)arg)[1];
    console_tenant_attached(a, id, u);
    free(id);
    free(arg);
}

static void node_upgraded(struct http_upgraded *u, void *arg)
{
    struct app *a = ((void **)arg)[0];
    char *id = ((void **)arg)[1];
    console_node_joined(a, id, u);
    free(id);
    free(arg);
}

/* The (app, session id) pair an upgrade callback gets; it frees both. */
static void *upgrade_arg(struct app *a, const char *id)
{
    void **p = xcalloc(2, sizeof(void *));
    p[0] = a;
    p[1] = xstrdup(id);
    return p;
}

/* Keep session `id` (taken) with the request, tell its node, and say
 * until when the request waits for it. */
static struct attach_wait *wait_start(struct app *a, struct http_request *r,
                                      char *id, const char *node)
{
    struct reqctx *c = reqctx_of(r);
    struct attach_wait *w = xcalloc(1, sizeof(*w));
    w->session = id;
    w->deadline = mono_ms() + CONSOLE_JOIN_TIMEOUT_S * 1000LL;
    c->stream = w;
    c->stream_free = attach_wait_free;
    app_node_changed(a, node);
    return w;
}

/* Wait on for the node unless the session is gone or the time is up:
 * then it is abandoned and the answer is 504, the node "did not `what`". */
static void park_or_give_up(struct app *a, struct http_request *r,
                            struct attach_wait *w, bool gone,
                            const char *what)
{
    if (gone || http_req_stopping(r) || mono_ms() >= w->deadline) {
        console_abandon(a, w->session);
        http_reply_problem(r, 504, "node-unreachable", "id",
                           "the VM's node did not %s within %d s", what,
                           CONSOLE_JOIN_TIMEOUT_S);
        return;
    }
    _cleanup_free_ char *tag = xasprintf("console:%s", w->session);
    http_req_park(r, tag, w->deadline);
}

/* Answer once the node has joined (101), gave up (504) or the session
 * was taken over (409); else park again. */
static void attach_resume(struct app *a, struct http_request *r,
                          struct attach_wait *w)
{
    struct reqctx *c = reqctx_of(r);
    int st = console_ready(w->session);
    if (st == 1) {
        app_event(a, c->account_id, c->actor, "vm.console-attach", c->target,
                  101, NULL);
        http_reply_upgrade(r, CONSOLE_UPGRADE_PROTOCOL, tenant_upgraded,
                           upgrade_arg(a, w->session));
        return;
    }
    if (st < 0) {
        http_reply_problem(r, 409, "console-taken", "id",
                           "another client took the console over");
        return;
    }
    park_or_give_up(a, r, w, false, "connect to the console");
}

HANDLER(h_vm_console_attach)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);

    if (http_req_resumed(r)) {
        attach_resume(a, r, c->stream);
        return;
    }
    if (!upgrade_asked(r, CONSOLE_UPGRADE_PROTOCOL))
        return;
    json_auto_t *vm = NULL;
    int e = vm_lookup(a, r, &vm);
    /* Owner only: an admin reads the log, but types into no one's VM. */
    if (e == 0 && !streq(json_str(vm, "account_id"), c->account_id))
        e = -ENOENT;
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    const char *state = json_str(vm, "state"), *node = json_str(vm, "node_id");
    if (!node || !state || (!streq(state, "running") && !streq(state, "paused"))) {
        http_reply_problem(r, 409, "not-running", "id",
                           "VM %s is not running on a node (state %s)",
                           json_str(vm, "name"), state ? state : "none");
        return;
    }
    const char *force = http_req_query(r, "force");
    char *id = NULL;
    e = console_open(a, json_str(vm, "id"), node,
                     force && (streq(force, "true") || streq(force, "1")), &id);
    if (e == -EBUSY) {
        http_reply_problem(r, 409, "console-busy", "id",
                           "a client is attached to the console of VM %s "
                           "(force=true takes it over)", json_str(vm, "name"));
        return;
    }
    attach_resume(a, r, wait_start(a, r, id, node));
}

/* A log read: answer once the node sent the log (200), or give up (504). */
void console_log_resume(struct app *a, struct http_request *r)
{
    struct attach_wait *w = reqctx_of(r)->stream;
    char *log = NULL;
    size_t n = 0;
    int st = console_log_take(a, w->session, &log, &n);
    if (st == 1) {
        http_reply_text(r, 200, "text/plain; charset=utf-8", log, n);
        return;
    }
    park_or_give_up(a, r, w, st < 0, "send its console log");
}

void console_log_read(struct app *a, struct http_request *r,
                      const json_t *vm, uint32_t bytes)
{
    const char *node = json_str(vm, "node_id");
    if (!node) {
        http_reply_problem(r, 409, "no-node", "id",
                           "VM %s is on no node: only the log its node last "
                           "reported can be read (bytes at most %u)",
                           json_str(vm, "name"), AGENT_CONSOLE_TAIL_MAX);
        return;
    }
    char *id = NULL;
    if (console_open_log(a, json_str(vm, "id"), node, bytes, &id) < 0) {
        http_reply_header(r, "Retry-After", "5");
        http_reply_problem(r, 429, "too-many-readers", "id",
                           "%d reads of VM %s's console log are waiting "
                           "already", CONSOLE_LOG_READERS_MAX,
                           json_str(vm, "name"));
        return;
    }
    wait_start(a, r, id, node);
    console_log_resume(a, r);
}

HANDLER(h_agent_console_log)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    size_t n = 0;
    const char *body = http_req_body(r, &n);
    int e = console_log_put(a, http_req_param(r, 0), c->actor, body, n);
    if (e == -EALREADY) {
        http_reply_problem(r, 409, "console-answered", "id",
                           "this console log was sent already");
        return;
    }
    if (e < 0) {
        http_reply_problem(r, 404, "not-found", "id",
                           "no such console log request for this node");
        return;
    }
    http_reply_text(r, 204, "application/json", NULL, 0);
}

HANDLER(h_agent_console)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const char *id = http_req_param(r, 0);

    if (!upgrade_asked(r, CONSOLE_UPGRADE_PROTOCOL))
        return;
    int e = console_join_check(id, c->actor);
    if (e == -EALREADY) {
        http_reply_problem(r, 409, "console-joined", "id",
                           "console session already joined");
        return;
    }
    if (e < 0) {
        log_warn("node %s asked to join console session it was not given",
                 c->actor);
        http_reply_problem(r, 404, "not-found", "id",
                           "no such console session for this node");
        return;
    }
    http_reply_upgrade(r, CONSOLE_UPGRADE_PROTOCOL, node_upgraded,
                       upgrade_arg(a, id));
}
