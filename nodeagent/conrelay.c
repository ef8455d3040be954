/* Console relays: one thread per session, between a libvirt console
 * stream (non-blocking) and the upgraded connection to the controller. */
#include "nodeagent/conrelay.h"

#include "api/agentproto.h"
#include "api/client.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "nodeagent/console.h"
#include "nodeagent/disk.h"

#include <errno.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

struct session {
    struct session *next;
    struct conrelay *owner;
    char *id, *vm_id;
    uint32_t log_bytes; /* a log session: send this much of the log */
    atomic_bool stop;
    atomic_bool done;
    pthread_t thread;
};

struct conrelay {
    char *controller, *credential, *ca_path, *key_pin, *uri, *data_dir;
    struct session *sessions;
};

struct conrelay *conrelay_new(const char *controller, const char *credential,
                              const char *ca_path, const char *key_pin,
                              const char *uri, const char *data_dir)
{
    struct conrelay *r = xcalloc(1, sizeof(*r));
    r->controller = xstrdup(controller);
    r->credential = xstrdup(credential);
    r->ca_path = ca_path ? xstrdup(ca_path) : NULL;
    r->key_pin = key_pin ? xstrdup(key_pin) : NULL;
    r->uri = xstrdup(uri);
    r->data_dir = xstrdup(data_dir);
    return r;
}

/* The controller's client for one session (the node's credential). */
static struct api_client *session_client(struct conrelay *r)
{
    struct api_client *c = api_client_new(r->controller, r->credential,
                                          r->ca_path);
    api_client_set_key_pin(c, r->key_pin);
    api_client_set_connect_timeout(c, 5);
    api_client_set_timeout(c, 20);
    return c;
}

/* A log session: the end of the VM's serial log, cleaned as status tails
 * are, posted to the controller. No log yet sends an empty one. */
static void send_log(struct session *s)
{
    struct conrelay *r = s->owner;
    _cleanup_free_ char *log = disk_console_path(r->data_dir, s->vm_id);
    _cleanup_free_ char *path = xasprintf("/v1/agent/console/%s/log", s->id);
    char *text = NULL;
    off_t size;
    int64_t mtime;
    int e = console_tail(log, SIZE_MAX, s->log_bytes, &text, &size, &mtime);
    if (e < 0 && e != -ENOENT)
        log_warn("console log of VM %s unreadable: %s", s->vm_id,
                 strerror(-e));
    struct api_client *c = session_client(r);
    struct api_reply rep;
    api_request_raw(c, "POST", path, text ? text : "", text ? strlen(text) : 0,
                    "text/plain; charset=utf-8", &rep);
    if (rep.status != 204) {
        _cleanup_free_ char *msg = api_reply_describe(&rep);
        log_warn("console log of VM %s not sent: %s", s->vm_id, msg);
    }
    api_reply_clear(&rep);
    api_client_free(c);
    free(text);
}

/* Send all of buf to the console stream; -1 when it failed. */
static int stream_put(struct session *s, virStreamPtr st, const char *buf,
                      size_t n)
{
    while (n > 0 && !atomic_load(&s->stop)) {
        int w = virStreamSend(st, buf, n);
        if (w == -2) {
            struct timespec ts = { 0, 10 * 1000000 };
            nanosleep(&ts, NULL);
            continue;
        }
        if (w < 0)
            return -1;
        buf += w, n -= (size_t)w;
    }
    return 0;
}

/* Pump until either side ends or the session is stopped. */
static void pump(struct session *s, virStreamPtr st, struct api_stream *as)
{
    char buf[16384];
    while (!atomic_load(&s->stop)) {
        struct pollfd pf = { api_stream_fd(as), POLLIN, 0 };
        poll(&pf, 1, 50);
        /* From the controller to the guest. */
        for (;;) {
            ssize_t n = api_stream_recv(as, buf, sizeof(buf));
            if (n == -EAGAIN)
                break;
            if (n <= 0 || stream_put(s, st, buf, (size_t)n) < 0)
                return;
        }
        /* From the guest to the controller. */
        for (;;) {
            int n = virStreamRecv(st, buf, sizeof(buf));
            if (n == -2)
                break;
            if (n <= 0)
                return;
            if (api_stream_send_all(as, buf, (size_t)n, 10000) < 0)
                return;
        }
    }
}

static void *session_main(void *arg)
{
    struct session *s = arg;
    struct conrelay *r = s->owner;
    if (s->log_bytes) {
        send_log(s);
        atomic_store(&s->done, true);
        return NULL;
    }
    _cleanup_free_ char *name = xasprintf("fog-%s", s->vm_id);
    _cleanup_free_ char *path = xasprintf("/v1/agent/console/%s", s->id);
    virConnectPtr conn = virConnectOpen(r->uri);
    virDomainPtr dom = conn ? virDomainLookupByName(conn, name) : NULL;
    virStreamPtr st = conn ? virStreamNew(conn, VIR_STREAM_NONBLOCK) : NULL;
    struct api_client *c = NULL;
    struct api_stream *as = NULL;
    if (!dom || !st ||
        virDomainOpenConsole(dom, NULL, st, VIR_DOMAIN_CONSOLE_FORCE) < 0) {
        virErrorPtr e = virGetLastError();
        log_warn("console of VM %s cannot be opened: %s", s->vm_id,
                 e && e->message ? e->message : "no domain");
        goto out;
    }
    c = session_client(r);
    struct api_reply rep;
    if (api_upgrade(c, path, CONSOLE_UPGRADE_PROTOCOL, &rep, &as) < 0) {
        _cleanup_free_ char *msg = api_reply_describe(&rep);
        log_warn("console session %s of VM %s not joined: %s", s->id,
                 s->vm_id, msg);
        api_reply_clear(&rep);
        goto out;
    }
    api_reply_clear(&rep);
    log_info("console session %s of VM %s joined", s->id, s->vm_id);
    pump(s, st, as);
    log_info("console session %s of VM %s ended", s->id, s->vm_id);
out:
    api_stream_free(as);
    api_client_free(c);
    if (st) {
        virStreamAbort(st);
        virStreamFree(st);
    }
    if (dom)
        virDomainFree(dom);
    if (conn)
        virConnectClose(conn);
    atomic_store(&s->done, true);
    return NULL;
}

static bool session_id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > CONSOLE_SESSION_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdef", id[i]))
            return false;
    return true;
}

static const json_t *listed(const json_t *doc, const char *id)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(doc, AGENT_CONSOLES), i, c)
        if (streq(json_str(c, "id"), id))
            return c;
    return NULL;
}

static void session_reap(struct session *s)
{
    pthread_join(s->thread, NULL);
    free(s->id);
    free(s->vm_id);
    free(s);
}

void conrelay_sync(struct conrelay *r, const json_t *doc)
{
    /* Stop the unlisted; reap the finished. */
    for (struct session **pp = &r->sessions; *pp;) {
        struct session *s = *pp;
        if (!listed(doc, s->id))
            atomic_store(&s->stop, true);
        /* One still connecting is reaped on a later pass, never waited
         * for here. */
        if (atomic_load(&s->done)) {
            *pp = s->next;
            session_reap(s);
            continue;
        }
        pp = &s->next;
    }
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(doc, AGENT_CONSOLES), i, c) {
        const char *id = json_str(c, "id"), *vm = json_str(c, "vm_id");
        if (!session_id_ok(id) || !uuid_is_valid(vm))
            continue;
        bool known = false;
        for (struct session *s = r->sessions; s && !known; s = s->next)
            known = streq(s->id, id);
        if (known)
            continue;
        struct session *s = xcalloc(1, sizeof(*s));
        s->owner = r;
        s->id = xstrdup(id);
        s->vm_id = xstrdup(vm);
        json_int_t lb = json_integer_value(
            json_object_get(c, AGENT_CONSOLE_LOG_BYTES));
        s->log_bytes = lb > 0 && lb <= CONSOLE_LOG_MAX ? (uint32_t)lb : 0;
        if (pthread_create(&s->thread, NULL, session_main, s) != 0) {
            log_warn("no thread for console session %s", id);
            free(s->id);
            free(s->vm_id);
            free(s);
            continue;
        }
        s->next = r->sessions;
        r->sessions = s;
    }
}

void conrelay_free(struct conrelay *r)
{
    if (!r)
        return;
    for (struct session *s = r->sessions; s; s = s->next)
        atomic_store(&s->stop, true);
    while (r->sessions) {
        struct session *s = r->sessions;
        r->sessions = s->next;
        session_reap(s);
    }
    free(r->controller);
    free(r->credential);
    free(r->ca_path);
    free(r->key_pin);
    free(r->uri);
    free(r->data_dir);
    free(r);
}
