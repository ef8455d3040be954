/* The node's health checker (nodeagent/hcheck.h). Each check is a small
 * state machine over one non-blocking socket: connect (tcp, http), send
 * the request (http, udp), read the answer (http status line, udp
 * datagram). All sockets of all checks wait in one poll(), so a node with
 * hundreds of checks uses one thread and no more. */
#include "nodeagent/hcheck.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

enum phase { PH_IDLE, PH_CONNECT, PH_SEND, PH_READ };

/* What an HTTP check reads at most: the status line is all it needs. */
#define HTTP_READ_MAX 512
/* Probes under way at once (each holds a socket): the rest wait for the
 * next step, so a node with many checks never runs out of descriptors. */
#define HCHECK_INFLIGHT_MAX 256

struct entry {
    char vm_id[37];
    char address[46];
    int64_t gen;
    struct hc_spec spec;
    char *key;              /* spec, address and gen: what keeps state */
    enum hc_state state;
    int passes, fails;      /* in a row */
    char output[HC_OUTPUT_MAX + 1];
    int64_t next_at;        /* monotonic ms */
    /* The probe under way. */
    enum phase phase;
    int fd;
    int64_t deadline;
    char *req;
    size_t req_len, sent;
    char buf[HTTP_READ_MAX + 1];
    size_t len;
};

struct hcheck {
    struct entry *v;
    size_t n;
};

struct hcheck *hcheck_new(void)
{
    return xcalloc(1, sizeof(struct hcheck));
}

static void probe_end(struct entry *e)
{
    if (e->fd >= 0)
        close(e->fd);
    e->fd = -1;
    free(e->req);
    e->req = NULL;
    e->phase = PH_IDLE;
    e->len = e->sent = 0;
}

static void entry_clear(struct entry *e)
{
    probe_end(e);
    hc_spec_clear(&e->spec);
    free(e->key);
}

void hcheck_free(struct hcheck *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++)
        entry_clear(&h->v[i]);
    free(h->v);
    free(h);
}

static char *target_key(const struct hcheck_target *t)
{
    _cleanup_json_ json_t *j = hc_spec_to_json(t->spec);
    _cleanup_free_ char *s = json_dumps_compact(j);
    return xasprintf("%s|%s|%lld|%s", t->vm_id, t->address,
                     (long long)t->gen, s);
}

static void spec_copy(struct hc_spec *dst, const struct hc_spec *src)
{
    *dst = *src;
    dst->path = src->path ? xstrdup(src->path) : NULL;
    dst->payload = NULL;
    dst->expect = NULL;
    if (src->payload) {
        dst->payload = xmalloc(src->payload_len);
        memcpy(dst->payload, src->payload, src->payload_len);
    }
    if (src->expect) {
        dst->expect = xmalloc(src->expect_len);
        memcpy(dst->expect, src->expect, src->expect_len);
    }
}

void hcheck_set(struct hcheck *h, const struct hcheck_target *t, size_t n)
{
    struct entry *nv = xcalloc(n + 1, sizeof(*nv));
    int64_t now = mono_ms();
    for (size_t i = 0; i < n; i++) {
        char *key = target_key(&t[i]);
        struct entry *old = NULL;
        for (size_t k = 0; k < h->n && !old; k++)
            if (h->v[k].key && streq(h->v[k].key, key) &&
                streq(h->v[k].spec.id, t[i].spec->id))
                old = &h->v[k];
        if (old) {
            nv[i] = *old;
            old->key = NULL; /* moved */
            old->fd = -1;
            old->req = NULL;
            old->spec = (struct hc_spec){ 0 };
            free(key);
            continue;
        }
        struct entry *e = &nv[i];
        *e = (struct entry){ .fd = -1, .key = key, .next_at = now,
                             .gen = t[i].gen };
        memcpy(e->vm_id, t[i].vm_id, sizeof(e->vm_id));
        snprintf(e->address, sizeof(e->address), "%s", t[i].address);
        spec_copy(&e->spec, t[i].spec);
        snprintf(e->output, sizeof(e->output), "not checked yet");
    }
    for (size_t k = 0; k < h->n; k++)
        entry_clear(&h->v[k]);
    free(h->v);
    h->v = nv;
    h->n = n;
}

/* ---- one probe ---- */

static void probe_done(struct entry *e, bool pass, bool *changed,
                       const char *fmt, ...) _printf_(4, 5);

static void probe_done(struct entry *e, bool pass, bool *changed,
                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->output, sizeof(e->output), fmt, ap);
    va_end(ap);
    probe_end(e);
    enum hc_state was = e->state;
    if (pass) {
        e->fails = 0;
        if (e->passes < HC_THRESHOLD_MAX)
            e->passes++;
        if (e->passes >= e->spec.rise)
            e->state = HC_HEALTHY;
    } else {
        e->passes = 0;
        if (e->fails < HC_THRESHOLD_MAX)
            e->fails++;
        if (e->fails >= e->spec.fall)
            e->state = HC_UNHEALTHY;
    }
    if (e->state != was)
        *changed = true;
}

static socklen_t addr_of(const char *text, int port,
                         struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        return sizeof(*a4);
    }
    if (inet_pton(AF_INET6, text, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        return sizeof(*a6);
    }
    return 0;
}

static void http_request(struct entry *e)
{
    bool v6 = strchr(e->address, ':') != NULL;
    e->req = xasprintf("GET %s HTTP/1.0\r\nHost: %s%s%s:%d\r\n"
                       "User-Agent: fog-healthcheck\r\nAccept: */*\r\n"
                       "Connection: close\r\n\r\n", e->spec.path,
                       v6 ? "[" : "", e->address, v6 ? "]" : "",
                       e->spec.port);
    e->req_len = strlen(e->req);
    e->sent = 0;
    e->phase = PH_SEND;
}

static void probe_start(struct entry *e, int64_t now, bool *changed)
{
    e->next_at = now + (int64_t)e->spec.interval_s * 1000;
    e->deadline = now + (int64_t)e->spec.timeout_s * 1000;
    struct sockaddr_storage ss;
    socklen_t sl = addr_of(e->address, e->spec.port, &ss);
    if (!sl) {
        probe_done(e, false, changed, "no usable address");
        return;
    }
    bool udp = e->spec.type == HC_UDP;
    e->fd = socket(ss.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) |
                   SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (e->fd < 0) {
        probe_done(e, false, changed, "socket: %s", strerror(errno));
        return;
    }
    if (connect(e->fd, (struct sockaddr *)&ss, sl) < 0 &&
        errno != EINPROGRESS) {
        probe_done(e, false, changed, "connect: %s", strerror(errno));
        return;
    }
    if (udp) {
        if (send(e->fd, e->spec.payload, e->spec.payload_len, 0) < 0) {
            probe_done(e, false, changed, "send: %s", strerror(errno));
            return;
        }
        e->phase = PH_READ;
        return;
    }
    e->phase = PH_CONNECT;
}

/* The HTTP answer so far: true once it is judged. */
static bool http_judge(struct entry *e, bool eof, bool *changed)
{
    e->buf[e->len] = 0;
    char *eol = strstr(e->buf, "\r\n");
    if (!eol)
        eol = strchr(e->buf, '\n');
    if (!eol && !eof && e->len < HTTP_READ_MAX)
        return false;
    int code = 0;
    char sp = 0;
    if (strncmp(e->buf, "HTTP/1.", 7) != 0 || e->len < 12 ||
        sscanf(e->buf + 8, "%c%3d", &sp, &code) != 2 || sp != ' ' ||
        code < 100 || code > 599) {
        probe_done(e, false, changed, eof && e->len == 0
                                          ? "connection closed without an "
                                            "answer"
                                          : "not an HTTP answer");
        return true;
    }
    bool pass = code >= e->spec.status_min && code <= e->spec.status_max;
    if (pass)
        probe_done(e, true, changed, "HTTP %d", code);
    else
        probe_done(e, false, changed, "HTTP %d, expected %d-%d", code,
                   e->spec.status_min, e->spec.status_max);
    return true;
}

static void probe_io(struct entry *e, short revents, bool *changed)
{
    if (e->phase == PH_CONNECT) {
        int err = 0;
        socklen_t l = sizeof(err);
        if (getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
            err = errno;
        if (err) {
            probe_done(e, false, changed, "connect: %s", strerror(err));
            return;
        }
        if (!(revents & POLLOUT))
            return;
        if (e->spec.type == HC_TCP) {
            probe_done(e, true, changed, "connected");
            return;
        }
        http_request(e);
    }
    if (e->phase == PH_SEND) {
        ssize_t w = send(e->fd, e->req + e->sent, e->req_len - e->sent,
                         MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            probe_done(e, false, changed, "send: %s", strerror(errno));
            return;
        }
        if (w > 0)
            e->sent += (size_t)w;
        if (e->sent == e->req_len)
            e->phase = PH_READ;
        return;
    }
    if (e->phase != PH_READ || !(revents & (POLLIN | POLLERR | POLLHUP)))
        return;
    if (e->spec.type == HC_UDP) {
        uint8_t dg[HC_PAYLOAD_MAX];
        ssize_t n = recv(e->fd, dg, sizeof(dg), 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            probe_done(e, false, changed, "%s", errno == ECONNREFUSED
                                                    ? "port unreachable"
                                                    : strerror(errno));
            return;
        }
        if (e->spec.expect &&
            ((size_t)n < e->spec.expect_len ||
             memcmp(dg, e->spec.expect, e->spec.expect_len) != 0))
            probe_done(e, false, changed, "answer of %zd bytes does not "
                       "start with the expected %zu", n, e->spec.expect_len);
        else
            probe_done(e, true, changed, "answer of %zd bytes", n);
        return;
    }
    ssize_t n = recv(e->fd, e->buf + e->len, HTTP_READ_MAX - e->len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        probe_done(e, false, changed, "read: %s", strerror(errno));
        return;
    }
    e->len += (size_t)n;
    http_judge(e, n == 0, changed);
}

static short probe_events(const struct entry *e)
{
    return e->phase == PH_READ ? POLLIN : POLLOUT;
}

bool hcheck_step(struct hcheck *h, int max_wait_ms, int wake_fd)
{
    bool changed = false;
    int64_t now = mono_ms();
    size_t inflight = 0;
    for (size_t i = 0; i < h->n; i++)
        inflight += h->v[i].phase != PH_IDLE;
    bool waiting = false; /* due, but over the cap */
    for (size_t i = 0; i < h->n; i++) {
        if (h->v[i].phase != PH_IDLE || now < h->v[i].next_at)
            continue;
        if (inflight >= HCHECK_INFLIGHT_MAX) {
            waiting = true;
            continue;
        }
        probe_start(&h->v[i], now, &changed);
        inflight += h->v[i].phase != PH_IDLE;
    }
    /* Wait no longer than the nearest deadline or next probe. */
    int64_t until = now + max_wait_ms;
    size_t busy = 0;
    for (size_t i = 0; i < h->n; i++) {
        const struct entry *e = &h->v[i];
        int64_t t = e->phase == PH_IDLE ? e->next_at : e->deadline;
        /* One over the cap waits for a socket to end, not its time. */
        if (t < until && !(waiting && e->phase == PH_IDLE && t <= now))
            until = t;
        busy += e->phase != PH_IDLE;
    }
    _cleanup_free_ struct pollfd *pf = xcalloc(busy + 1, sizeof(*pf));
    _cleanup_free_ size_t *idx = xcalloc(busy + 1, sizeof(*idx));
    size_t np = 0;
    for (size_t i = 0; i < h->n; i++)
        if (h->v[i].phase != PH_IDLE) {
            pf[np] = (struct pollfd){ h->v[i].fd, probe_events(&h->v[i]), 0 };
            idx[np++] = i;
        }
    if (wake_fd >= 0)
        pf[np] = (struct pollfd){ wake_fd, POLLIN, 0 };
    int wait = until > now ? (int)(until - now) : 0;
    int r = poll(pf, np + (wake_fd >= 0), changed ? 0 : wait);
    if (r < 0 && errno != EINTR)
        return changed;
    for (size_t k = 0; r > 0 && k < np; k++)
        if (pf[k].revents)
            probe_io(&h->v[idx[k]], pf[k].revents, &changed);
    now = mono_ms();
    for (size_t i = 0; i < h->n; i++) {
        struct entry *e = &h->v[i];
        if (e->phase != PH_IDLE && now >= e->deadline)
            probe_done(e, false, &changed, "%s within %d s",
                       e->phase == PH_CONNECT ? "no connection"
                                              : "no answer",
                       e->spec.timeout_s);
    }
    return changed;
}

void hcheck_results(const struct hcheck *h, struct hcheck_result **ret,
                    size_t *ret_n)
{
    struct hcheck_result *r = xcalloc(h->n + 1, sizeof(*r));
    for (size_t i = 0; i < h->n; i++) {
        const struct entry *e = &h->v[i];
        memcpy(r[i].vm_id, e->vm_id, sizeof(r[i].vm_id));
        memcpy(r[i].h.id, e->spec.id, sizeof(r[i].h.id));
        r[i].h.state = e->state;
        r[i].h.output = xstrdup(e->output);
    }
    *ret = r;
    *ret_n = h->n;
}

void hcheck_results_free(struct hcheck_result *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++)
        free(r[i].h.output);
    free(r);
}

bool hcheck_probe_once(const struct hc_spec *s, const char *address,
                       char ret_output[HC_OUTPUT_MAX + 1])
{
    struct entry e = { .fd = -1 };
    spec_copy(&e.spec, s);
    e.spec.rise = e.spec.fall = 1;
    snprintf(e.address, sizeof(e.address), "%s", address);
    bool changed = false;
    probe_start(&e, mono_ms(), &changed);
    struct hcheck h = { &e, 1 };
    while (e.phase != PH_IDLE)
        hcheck_step(&h, 100, -1);
    snprintf(ret_output, HC_OUTPUT_MAX + 1, "%s", e.output);
    bool pass = e.state == HC_HEALTHY;
    entry_clear(&e);
    return pass;
}

/* ---- the thread ---- */

struct hcheck_runner {
    pthread_t thread;
    pthread_mutex_t lock;
    int efd;
    bool stop;
    void (*changed)(void *);
    void *data;
    struct hcheck *engine;      /* the thread's own */
    /* Handed over under the lock. */
    bool has_next;
    struct hcheck_target *next;
    struct hc_spec *next_specs;
    size_t n_next;
    struct hcheck_result *results;
    size_t n_results;
};

static void next_free(struct hcheck_runner *r)
{
    for (size_t i = 0; i < r->n_next; i++)
        hc_spec_clear(&r->next_specs[i]);
    free(r->next_specs);
    free(r->next);
    r->next = NULL;
    r->next_specs = NULL;
    r->n_next = 0;
    r->has_next = false;
}

/* Publish the engine's states for hcheck_runner_results. */
static void runner_publish(struct hcheck_runner *r)
{
    struct hcheck_result *res;
    size_t n;
    hcheck_results(r->engine, &res, &n);
    pthread_mutex_lock(&r->lock);
    hcheck_results_free(r->results, r->n_results);
    r->results = res;
    r->n_results = n;
    pthread_mutex_unlock(&r->lock);
}

static void *runner_main(void *arg)
{
    struct hcheck_runner *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        if (r->stop) {
            pthread_mutex_unlock(&r->lock);
            break;
        }
        bool set = r->has_next;
        if (set) {
            hcheck_set(r->engine, r->next, r->n_next);
            next_free(r);
        }
        pthread_mutex_unlock(&r->lock);
        if (set) /* checks gone are gone from the report at once */
            runner_publish(r);
        /* Idle without checks: a new set or a stop kicks the eventfd. */
        bool changed = hcheck_step(r->engine, 60000, r->efd);
        uint64_t v;
        if (read(r->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
            break;
        runner_publish(r);
        if (changed && r->changed)
            r->changed(r->data);
    }
    return NULL;
}

struct hcheck_runner *hcheck_runner_start(void (*changed)(void *), void *data)
{
    struct hcheck_runner *r = xcalloc(1, sizeof(*r));
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0) {
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->lock, NULL);
    r->changed = changed;
    r->data = data;
    r->engine = hcheck_new();
    if (pthread_create(&r->thread, NULL, runner_main, r) != 0) {
        hcheck_free(r->engine);
        close(r->efd);
        free(r);
        return NULL;
    }
    return r;
}

static void runner_kick(struct hcheck_runner *r)
{
    uint64_t one = 1;
    if (write(r->efd, &one, sizeof(one)) < 0) {
        /* The counter is already set: the thread wakes anyway. */
    }
}

void hcheck_runner_stop(struct hcheck_runner *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_mutex_unlock(&r->lock);
    runner_kick(r);
    pthread_join(r->thread, NULL);
    next_free(r);
    hcheck_results_free(r->results, r->n_results);
    hcheck_free(r->engine);
    close(r->efd);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

void hcheck_runner_sync(struct hcheck_runner *r,
                        const struct hcheck_target *t, size_t n)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    next_free(r);
    r->next = xcalloc(n + 1, sizeof(*r->next));
    r->next_specs = xcalloc(n + 1, sizeof(*r->next_specs));
    for (size_t i = 0; i < n; i++) {
        r->next[i] = t[i];
        spec_copy(&r->next_specs[i], t[i].spec);
        r->next[i].spec = &r->next_specs[i];
    }
    r->n_next = n;
    r->has_next = true;
    pthread_mutex_unlock(&r->lock);
    runner_kick(r);
}

void hcheck_runner_results(struct hcheck_runner *r, const char *vm_id,
                           struct hcheck_result **ret, size_t *ret_n)
{
    *ret = NULL;
    *ret_n = 0;
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    struct hcheck_result *out = xcalloc(r->n_results + 1, sizeof(*out));
    size_t n = 0;
    for (size_t i = 0; i < r->n_results; i++)
        if (streq(r->results[i].vm_id, vm_id)) {
            out[n] = r->results[i];
            out[n++].h.output = xstrdup(r->results[i].h.output);
        }
    pthread_mutex_unlock(&r->lock);
    *ret = out;
    *ret_n = n;
}
