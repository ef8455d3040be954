/* HTTP(S) server core over libmicrohttpd: routing, bounded bodies, problem
 * errors, parked long polls and request metrics. */
#include "api/http_server.h"
#include "api/http_stream.h"
#include "api/http_tlswait.h"

#include "common/jsonw.h"
#include "common/log.h"
#include "common/timeutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_PARAMS 4
#define MAX_HEADERS 8
#define N_BUCKETS 12

static const double latency_le[N_BUCKETS] = { 0.001, 0.0025, 0.005, 0.01,
                                              0.025, 0.05,   0.1,   0.25,
                                              0.5,   1,      2.5,   10 };

/* The most of a refused body read (and dropped) so the client gets its 413. */
#define HTTP_DRAIN_MAX (16u << 20)

struct http_request {
    struct http_server *srv;
    struct MHD_Connection *conn;
    char *method;
    char *path;
    const struct http_route *route;
    char *params[MAX_PARAMS];
    struct buf body;
    size_t max_body;    /* this route's limit, known once routed */
    unsigned long long content_length; /* declared, or ULLONG_MAX */
    bool too_big;
    json_t *json;
    char peer[INET6_ADDRSTRLEN];
    int64_t started_ms;

    bool routed;        /* route looked up and before-hook run */
    bool sink_failed;
    uint64_t streamed;
    int reply_fd;       /* >= 0: answer with this file */
    uint64_t fd_off, fd_len; /* its span, or a stream's length */
    struct http_stream *stream; /* or answer with this stream */

    /* reply */
    int status;
    char *reply_type;
    char *reply_body;
    size_t reply_len;
    bool answered;
    char *hdr_name[MAX_HEADERS];
    char *hdr_value[MAX_HEADERS];
    unsigned n_hdr;

    /* long poll */
    bool park_requested;
    bool parked;
    uint64_t wake_gen_seen; /* server's wake_gen when the handler ran */
    bool resumed;
    bool timed_out;
    bool retry;         /* the after-hook asked to run it again */
    unsigned n_hdr_before; /* headers the before-hook set: kept on a retry */
    char *park_tag;
    int64_t park_deadline;
    struct http_request *park_next;

    /* run by a writer thread (mutating calls) */
    struct http_request *work_next;
    struct log_ctx_saved log_ctx; /* the before-hook's, for the writer */
    bool work_done;     /* answered there: send it */

    /* protocol upgrade */
    char *upgrade_proto;
    http_upgrade_fn upgrade_fn;
    void *upgrade_arg;

    void *user;
    void (*user_free)(void *);
};

struct http_upgraded {
    http_upgrade_fn fn;
    void *arg;
    struct MHD_UpgradeResponseHandle *urh;
    int fd;
    int peer_fd; /* the client's TCP socket, owned by the server */
    char *early;
    size_t early_len;
};

struct route_stats {
    uint64_t by_status[6][100]; /* [status/100][status%100] */
};

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_server_opts opts;
    int port;

    /* The server accepts its connections itself and hands them to MHD
     * (see acceptor_main). */
    int listen_fd;
    int accept_stop; /* eventfd: the acceptor returns when it is set */
    pthread_t acceptor;
    int64_t accept_warned; /* mono_ms of the last warning it logged */

    pthread_mutex_t park_lock;
    struct http_request *parked; /* singly linked */
    uint64_t wake_gen;           /* bumped by every wake */
    size_t n_parked;
    pthread_t timer;
    pthread_cond_t timer_cond;
    bool stopping;

    pthread_mutex_t stats_lock;
    struct route_stats *stats; /* n_routes + 1 (unmatched) */
    uint64_t lat_bucket[N_BUCKETS + 1];
    uint64_t lat_count;
    double lat_sum;
    uint64_t longpolls;    /* answered after being parked */

    /* Writers: mutating calls run on these, so that a call waiting for
     * the store's single writer never holds up the reads that share its
     * connection thread. */
    pthread_mutex_t work_lock;
    pthread_cond_t work_cond;
    struct http_request *work_head, *work_tail;
    pthread_t *writers;
    unsigned n_writers;
    bool work_stop;

    struct http_streams streams; /* answers still being produced */
    struct http_tlswait tlswait;  /* handshakes waiting for their client */
};

/* ---- routing ---------------------------------------------------------- */

/* Match path against pattern; on success fill params (owned copies). */
static bool route_match(const char *pattern, const char *path,
                        char *params[MAX_PARAMS])
{
    unsigned np = 0;
    const char *p = pattern, *s = path;

    while (*p && *s) {
        if (*p != '/' || *s != '/')
            return false;
        p++, s++;
        const char *pe = strchrnul(p, '/'), *se = strchrnul(s, '/');
        if (*p == '{') {
            if (se == s || np >= MAX_PARAMS)
                return false;
            params[np++] = xstrndup(s, (size_t)(se - s));
        } else if ((size_t)(pe - p) != (size_t)(se - s) ||
                   strncmp(p, s, (size_t)(pe - p)) != 0) {
            return false;
        }
        p = pe, s = se;
    }
    return *p == '\0' && *s == '\0';
}

static void free_params(char *params[MAX_PARAMS])
{
    for (unsigned i = 0; i < MAX_PARAMS; i++) {
        free(params[i]);
        params[i] = NULL;
    }
}

/* Find the route for method+path. When none serves this method, the
 * methods that serve the path are appended to *allow ("GET, POST"): 405
 * with that Allow header (RFC 9110 section 15.5.6) rather than 404. */
static const struct http_route *route_find(struct http_server *s,
                                           struct http_request *r,
                                           struct buf *allow)
{
    for (size_t i = 0; i < s->opts.n_routes; i++) {
        const struct http_route *rt = &s->opts.routes[i];
        char *params[MAX_PARAMS] = { 0 };
        if (!route_match(rt->pattern, r->path, params)) {
            free_params(params); /* a partial match may have taken some */
            continue;
        }
        if (streq(rt->method, r->method)) {
            memcpy(r->params, params, sizeof(params));
            return rt;
        }
        free_params(params);
        buf_printf(allow, "%s%s", allow->len ? ", " : "", rt->method);
    }
    return NULL;
}

/* ---- request accessors ------------------------------------------------ */

const char *http_req_method(const struct http_request *r) { return r->method; }
const char *http_req_path(const struct http_request *r) { return r->path; }
const struct http_route *http_req_route(const struct http_request *r)
{
    return r->route;
}

const char *http_req_param(const struct http_request *r, unsigned n)
{
    return n < MAX_PARAMS ? r->params[n] : NULL;
}

const char *http_req_query(const struct http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_req_header(const struct http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

json_t *http_req_json(const struct http_request *r) { return r->json; }

const char *http_req_body(const struct http_request *r, size_t *ret_len)
{
    if (ret_len)
        *ret_len = r->body.len;
    return buf_str(&r->body);
}

const char *http_req_peer(const struct http_request *r) { return r->peer; }

void http_req_set_user(struct http_request *r, void *user,
                       void (*free_fn)(void *))
{
    if (r->user && r->user_free)
        r->user_free(r->user);
    r->user = user;
    r->user_free = free_fn;
}

void *http_req_user(const struct http_request *r) { return r->user; }
bool http_req_answered(const struct http_request *r) { return r->answered; }
uint64_t http_req_streamed(const struct http_request *r) { return r->streamed; }
int http_req_status(const struct http_request *r) { return r->status; }
bool http_req_resumed(const struct http_request *r) { return r->resumed; }
bool http_req_timed_out(const struct http_request *r) { return r->timed_out; }

bool http_req_stopping(const struct http_request *r)
{
    return r->srv->stopping;
}

const char *http_req_reply_body(const struct http_request *r, size_t *len)
{
    if (len)
        *len = r->reply_len;
    return r->reply_body;
}

const char *http_req_reply_type(const struct http_request *r)
{
    return r->reply_type;
}

/* ---- replies ---------------------------------------------------------- */

void http_reply_text(struct http_request *r, int status,
                     const char *content_type, char *body, size_t len)
{
    if (r->answered) {
        /* A second answer is our bug; keep the first. */
        free(body);
        return;
    }
    r->answered = true;
    r->status = status;
    r->reply_type = xstrdup(content_type);
    r->reply_body = body ? body : xstrdup("");
    r->reply_len = body ? len : 0;
}

void http_reply_json(struct http_request *r, int status, json_t *body)
{
    if (!body) {
        http_reply_text(r, status, "application/json", NULL, 0);
        return;
    }
    char *text = json_dumps(body, JSON_INDENT(0) | JSON_COMPACT);
    json_decref(body);
    if (!text)
        abort();
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len++] = '\n';
    text[len] = '\0';
    http_reply_text(r, status, "application/json", text, len);
}

void http_reply_jsonw(struct http_request *r, int status, struct jsonw *w)
{
    buf_append(&w->b, "\n", 1);
    size_t len = w->b.len;
    w->comma = false;
    http_reply_text(r, status, "application/json", buf_steal(&w->b), len);
}

static const char *status_title(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 422: return "Unprocessable Content";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default: return "Error";
    }
}

static void reply_vproblem(struct http_request *r, int status,
                           const char *slug, const char *field, json_t *extra,
                           const char *fmt, va_list ap) _printf_(6, 0);
static void reply_vproblem(struct http_request *r, int status,
                           const char *slug, const char *field, json_t *extra,
                           const char *fmt, va_list ap)
{
    char *detail;

    if (vasprintf(&detail, fmt, ap) < 0)
        abort();
    /* A detail quoting what the client sent may not be UTF-8, which JSON
     * cannot carry: such bytes are shown as '?' rather than failing. */
    json_t *p = NULL;
    for (int pass = 0; !p && pass < 2; pass++) {
        for (char *c = detail; pass && *c; c++)
            if ((unsigned char)*c >= 0x80)
                *c = '?';
        p = json_pack("{s:s+, s:s, s:i, s:s}", "type", "urn:fog:problem:",
                      slug, "title", status_title(status), "status", status,
                      "detail", detail);
    }
    if (!p)
        abort(); /* out of memory, or a slug that is not UTF-8: our bug */
    if (field)
        json_object_set_new(p, "field", json_string(field));
    if (extra)
        json_object_update_missing(p, extra);
    json_decref(extra);
    free(detail);
    char *text = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    http_reply_text(r, status, "application/problem+json", text, strlen(text));
}

void http_reply_upgrade(struct http_request *r, const char *protocol,
                        http_upgrade_fn fn, void *arg)
{
    if (r->answered)
        return;
    http_reply_text(r, 101, "application/octet-stream", NULL, 0);
    r->upgrade_proto = xstrdup(protocol);
    r->upgrade_fn = fn;
    r->upgrade_arg = arg;
}

int http_upgraded_fd(const struct http_upgraded *u) { return u->fd; }

const char *http_upgraded_early(const struct http_upgraded *u,
                                size_t *ret_len)
{
    *ret_len = u->early_len;
    return u->early;
}

bool http_upgraded_peer_gone(const struct http_upgraded *u)
{
    if (u->peer_fd < 0)
        return false;
    struct pollfd pf = { u->peer_fd, POLLRDHUP, 0 };
    return poll(&pf, 1, 0) > 0 &&
           (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

void http_upgraded_close(struct http_upgraded *u)
{
    if (!u)
        return;
    /* The server may not get round to a connection that was parked
     * before its upgrade: hang up the client's socket itself (the server
     * still owns and closes it). */
    if (u->peer_fd >= 0)
        shutdown(u->peer_fd, SHUT_RDWR);
    MHD_upgrade_action(u->urh, MHD_UPGRADE_ACTION_CLOSE);
    free(u->early);
    free(u);
}

static void on_upgrade(void *cls, struct MHD_Connection *conn, void *req_cls,
                       const char *extra_in, size_t extra_in_size,
                       MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    struct http_upgraded *u = cls;
    u->urh = urh;
    u->fd = sock;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    u->peer_fd = ci ? ci->connect_fd : -1;
    /* What is written goes out at once (an interactive console, relayed
     * packets): no waiting to fill a segment, nothing corked after the
     * 101. */
    if (u->peer_fd >= 0) {
        int on = 1, off = 0;
        (void)setsockopt(u->peer_fd, IPPROTO_TCP, TCP_NODELAY, &on,
                         sizeof(on));
        (void)setsockopt(u->peer_fd, IPPROTO_TCP, TCP_CORK, &off,
                         sizeof(off));
    }
    u->early = extra_in_size ? xstrndup(extra_in, extra_in_size) : NULL;
    u->early_len = extra_in_size;
    u->fn(u, u->arg);
}

void http_reply_reset(struct http_request *r)
{
    free(r->reply_type);
    free(r->reply_body);
    r->reply_type = r->reply_body = NULL;
    r->reply_len = 0;
    for (unsigned i = 0; i < r->n_hdr; i++) {
        free(r->hdr_name[i]);
        free(r->hdr_value[i]);
    }
    r->n_hdr = 0;
    if (r->reply_fd >= 0)
        close(r->reply_fd);
    r->reply_fd = -1;
    http_stream__drop(r->stream);
    r->stream = NULL;
    r->status = 0;
    r->answered = false;
    free(r->upgrade_proto);
    r->upgrade_proto = NULL;
    r->upgrade_fn = NULL;
}

void http_reply_problem(struct http_request *r, int status, const char *slug,
                        const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_vproblem(r, status, slug, field, NULL, fmt, ap);
    va_end(ap);
}

void http_reply_problem_ext(struct http_request *r, int status,
                            const char *slug, const char *field, json_t *extra,
                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_vproblem(r, status, slug, field, extra, fmt, ap);
    va_end(ap);
}

void http_reply_header(struct http_request *r, const char *name,
                       const char *value)
{
    if (r->n_hdr >= MAX_HEADERS)
        return;
    r->hdr_name[r->n_hdr] = xstrdup(name);
    r->hdr_value[r->n_hdr] = xstrdup(value);
    r->n_hdr++;
}

/* Digits [p, end) as a uint64: false when empty, not all digits or past
 * UINT64_MAX (strtoull would take signs and blanks, and saturate). */
static bool parse_u64_digits(const char *p, const char *end, uint64_t *ret)
{
    uint64_t v = 0;
    if (p == end)
        return false;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return false;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *ret = v;
    return true;
}

int http_parse_range(const char *h, uint64_t size, uint64_t *ret_off,
                     uint64_t *ret_len)
{
    if (!h)
        return 1;
    if (strncmp(h, "bytes=", 6) != 0)
        return -1;
    const char *p = h + 6, *dash = strchr(p, '-'), *end = p + strlen(p);
    if (!dash || size == 0)
        return -1;
    uint64_t a, b;
    if (p == dash) { /* suffix: the last b bytes, all of them if fewer */
        if (!parse_u64_digits(dash + 1, end, &b) || b == 0)
            return -1;
        if (b > size)
            b = size;
        *ret_off = size - b;
        *ret_len = b;
        return 0;
    }
    if (!parse_u64_digits(p, dash, &a) || a >= size)
        return -1;
    b = size - 1;
    if (dash + 1 < end) {
        if (!parse_u64_digits(dash + 1, end, &b) || b < a)
            return -1;
        if (b >= size)
            b = size - 1;
    }
    *ret_off = a;
    *ret_len = b - a + 1;
    return 0;
}

/* The span of a body of `size` bytes that the request's Range asks for:
 * 0 (a range) or 1 (the whole body) with *ret_off and *ret_len, or -1
 * when it answered 416. */
static int reply_range(struct http_request *r, uint64_t size,
                       uint64_t *ret_off, uint64_t *ret_len)
{
    *ret_off = 0;
    *ret_len = size;
    int pr = http_parse_range(http_req_header(r, "Range"), size, ret_off,
                              ret_len);
    if (pr < 0) {
        _cleanup_free_ char *cr = xasprintf("bytes */%llu",
                                            (unsigned long long)size);
        http_reply_header(r, "Content-Range", cr);
        http_reply_problem(r, 416, "range-not-satisfiable", "Range",
                           "the requested range is outside the %llu bytes",
                           (unsigned long long)size);
    }
    return pr;
}

/* Answer 206 with Content-Range (pr 0) or 200 for the span of reply_range. */
static void reply_span(struct http_request *r, const char *content_type,
                       int pr, uint64_t off, uint64_t len, uint64_t size)
{
    http_reply_header(r, "Accept-Ranges", "bytes");
    if (pr == 0) {
        _cleanup_free_ char *cr = xasprintf(
            "bytes %llu-%llu/%llu", (unsigned long long)off,
            (unsigned long long)(off + len - 1), (unsigned long long)size);
        http_reply_header(r, "Content-Range", cr);
    }
    http_reply_text(r, pr == 0 ? 206 : 200, content_type, NULL, 0);
    r->fd_off = off;
    r->fd_len = len;
}

void http_reply_file(struct http_request *r, const char *content_type,
                     int fd, uint64_t size)
{
    uint64_t off, len;
    int pr = reply_range(r, size, &off, &len);
    if (pr < 0) {
        close(fd);
        return;
    }
    reply_span(r, content_type, pr, off, len, size);
    r->reply_fd = fd;
}

void http_reply_stream(struct http_request *r, const char *content_type,
                       uint64_t size, http_stream_fn fn, void *ctx,
                       void (*ctx_free)(void *))
{
    uint64_t off, len;
    int pr = r->answered ? -1 : reply_range(r, size, &off, &len);
    if (pr < 0 || len == 0) {
        if (pr >= 0) /* an empty body: nothing to make */
            reply_span(r, content_type, pr, off, len, size);
        if (ctx_free)
            ctx_free(ctx);
        return;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct http_stream *st = NULL;
    int e = http_stream__new(&r->srv->streams, r->conn,
                             ci ? ci->connect_fd : -1, off, len, fn, ctx,
                             ctx_free, &st);
    if (e < 0) {
        http_reply_header(r, "Retry-After", "5");
        http_reply_problem(r, 503, "unavailable", NULL,
                           "cannot stream this answer now: %s",
                           strerror(-e));
        return;
    }
    reply_span(r, content_type, pr, off, len, size);
    r->stream = st;
}

/* ---- metrics ---------------------------------------------------------- */

static void stats_record(struct http_server *s, struct http_request *r)
{
    size_t idx = r->route ? (size_t)(r->route - s->opts.routes)
                          : s->opts.n_routes;
    int st = r->status;
    double secs = (double)(mono_ms() - r->started_ms) / 1000.0;

    if (st < 100 || st > 599)
        st = 500;
    pthread_mutex_lock(&s->stats_lock);
    s->stats[idx].by_status[st / 100][st % 100]++;
    /* A long poll that was parked lasts as long as nothing changed, not
     * as long as the server took: it would only fill the +Inf bucket. */
    if (r->resumed) {
        s->longpolls++;
        pthread_mutex_unlock(&s->stats_lock);
        return;
    }
    unsigned b = 0;
    while (b < N_BUCKETS && secs > latency_le[b])
        b++;
    s->lat_bucket[b]++;
    s->lat_count++;
    s->lat_sum += secs;
    pthread_mutex_unlock(&s->stats_lock);
}

void http_server_metrics(struct http_server *s, struct buf *out)
{
    pthread_mutex_lock(&s->stats_lock);
    buf_puts(out, "# HELP fog_http_requests_total HTTP requests by route and "
                  "status.\n# TYPE fog_http_requests_total counter\n");
    for (size_t i = 0; i <= s->opts.n_routes; i++) {
        for (int c = 1; c < 6; c++) {
            for (int d = 0; d < 100; d++) {
                uint64_t n = s->stats[i].by_status[c][d];
                if (!n)
                    continue;
                if (i < s->opts.n_routes)
                    buf_printf(out,
                               "fog_http_requests_total{method=\"%s\","
                               "route=\"%s\",code=\"%d\"} %llu\n",
                               s->opts.routes[i].method,
                               s->opts.routes[i].pattern, c * 100 + d,
                               (unsigned long long)n);
                else
                    buf_printf(out,
                               "fog_http_requests_total{route=\"unmatched\","
                               "code=\"%d\"} %llu\n",
                               c * 100 + d, (unsigned long long)n);
            }
        }
    }
    buf_printf(out, "# HELP fog_http_longpolls_total Answered requests that "
                    "were parked as long polls (not in the latency "
                    "histogram).\n# TYPE fog_http_longpolls_total counter\n"
                    "fog_http_longpolls_total %llu\n",
               (unsigned long long)s->longpolls);
    if (s->opts.tls_cert_pem) {
        size_t waiting;
        uint64_t waits;
        http_tlswait__counts(&s->tlswait, &waiting, &waits);
        buf_printf(out, "# HELP fog_http_tls_handshakes_waiting TLS "
                        "handshakes set aside until their client sends.\n"
                        "# TYPE fog_http_tls_handshakes_waiting gauge\n"
                        "fog_http_tls_handshakes_waiting %zu\n"
                        "# HELP fog_http_tls_handshake_waits_total Times a "
                        "TLS handshake was set aside to wait for its "
                        "client.\n# TYPE fog_http_tls_handshake_waits_total "
                        "counter\nfog_http_tls_handshake_waits_total %llu\n",
                   waiting, (unsigned long long)waits);
    }
    buf_puts(out, "# HELP fog_http_request_duration_seconds Request latency "
                  "(parked long polls left out)."
                  "\n# TYPE fog_http_request_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (unsigned b = 0; b < N_BUCKETS; b++) {
        cum += s->lat_bucket[b];
        buf_printf(out, "fog_http_request_duration_seconds_bucket{le=\"%g\"} "
                        "%llu\n", latency_le[b], (unsigned long long)cum);
    }
    cum += s->lat_bucket[N_BUCKETS];
    buf_printf(out,
               "fog_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
               "fog_http_request_duration_seconds_sum %.6f\n"
               "fog_http_request_duration_seconds_count %llu\n",
               (unsigned long long)cum, s->lat_sum,
               (unsigned long long)s->lat_count);
    pthread_mutex_unlock(&s->stats_lock);
}

/* ---- long polls ------------------------------------------------------- */

void http_req_park(struct http_request *r, const char *tag,
                   int64_t deadline_mono_ms)
{
    free(r->park_tag);
    r->park_tag = xstrdup(tag ? tag : "");
    if (deadline_mono_ms >= 0)
        r->park_deadline = deadline_mono_ms;
    r->park_requested = true;
}

/* Called with park_lock held: unlink and resume. */
static void park_resume_locked(struct http_server *s, struct http_request **pp,
                               bool timed_out)
{
    struct http_request *r = *pp;
    *pp = r->park_next;
    r->park_next = NULL;
    r->timed_out = timed_out;
    s->n_parked--;
    MHD_resume_connection(r->conn);
}

void http_server_wake(struct http_server *s, const char *tag)
{
    pthread_mutex_lock(&s->park_lock);
    s->wake_gen++;
    struct http_request **pp = &s->parked;
    while (*pp) {
        if (!tag || streq((*pp)->park_tag, tag))
            park_resume_locked(s, pp, false);
        else
            pp = &(*pp)->park_next;
    }
    pthread_mutex_unlock(&s->park_lock);
}

size_t http_server_parked(struct http_server *s)
{
    pthread_mutex_lock(&s->park_lock);
    size_t n = s->n_parked;
    pthread_mutex_unlock(&s->park_lock);
    return n;
}

static void *park_timer(void *arg)
{
    struct http_server *s = arg;

    pthread_mutex_lock(&s->park_lock);
    while (!s->stopping) {
        int64_t now = mono_ms();
        struct http_request **pp = &s->parked;
        while (*pp) {
            if ((*pp)->park_deadline <= now)
                park_resume_locked(s, pp, true);
            else
                pp = &(*pp)->park_next;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->timer_cond, &s->park_lock, &ts);
    }
    pthread_mutex_unlock(&s->park_lock);
    return NULL;
}

/* ---- libmicrohttpd glue ----------------------------------------------- */

static void request_free(struct http_request *r)
{
    if (!r)
        return;
    free(r->method);
    free(r->path);
    free_params(r->params);
    buf_free(&r->body);
    if (r->json)
        json_decref(r->json);
    free(r->reply_type);
    free(r->reply_body);
    for (unsigned i = 0; i < r->n_hdr; i++) {
        free(r->hdr_name[i]);
        free(r->hdr_value[i]);
    }
    free(r->park_tag);
    free(r->upgrade_proto);
    if (r->reply_fd >= 0)
        close(r->reply_fd);
    http_stream__drop(r->stream);
    if (r->user && r->user_free)
        r->user_free(r->user);
    free(r);
}

static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = cls;
    http_tlswait__notify(&s->tlswait, conn, socket_context, (int)code);
}

static void on_completed(void *cls, struct MHD_Connection *conn,
                         void **con_cls, enum MHD_RequestTerminationCode toe)
{
    request_free(*con_cls);
    *con_cls = NULL;
}

static void peer_text(struct MHD_Connection *conn, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = '\0';
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out,
                  (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
                  (socklen_t)n);
}

static enum MHD_Result send_reply(struct http_server *s, struct http_request *r)
{
    struct MHD_Response *resp;
    if (r->upgrade_fn) {
        /* The handle lives until the callee closes it; a client gone
         * before the switch leaves it unused (freed with the response
         * never: the upgrade callback is its only owner). */
        struct http_upgraded *u = xcalloc(1, sizeof(*u));
        u->fn = r->upgrade_fn;
        u->arg = r->upgrade_arg;
        u->fd = -1;
        resp = MHD_create_response_for_upgrade(on_upgrade, u);
        if (!resp) {
            free(u);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE,
                                r->upgrade_proto);
    } else if (r->reply_fd >= 0) {
        resp = MHD_create_response_from_fd_at_offset64(r->fd_len, r->reply_fd,
                                                       r->fd_off);
        if (resp)
            r->reply_fd = -1; /* MHD closes it now */
    } else if (r->stream) {
        resp = http_stream__response(r->stream, r->fd_len);
        r->stream = NULL; /* the response's now, or dropped */
    } else {
        /* Not copied: the body is the request's, freed only once libmicrohttpd
         * is done with the request (on_completed), and a 100-VM page copied
         * again was a twentieth of its answer's CPU. */
        resp = MHD_create_response_from_buffer(r->reply_len, r->reply_body,
                                               MHD_RESPMEM_PERSISTENT);
    }
    if (!resp)
        return MHD_NO;
    if (!r->upgrade_fn)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                r->reply_type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    for (unsigned i = 0; i < r->n_hdr; i++)
        MHD_add_response_header(resp, r->hdr_name[i], r->hdr_value[i]);
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    stats_record(s, r);
    return ok;
}

static bool content_is_json(const char *ct)
{
    if (!ct)
        return false;
    size_t n = strlen("application/json");
    return strncasecmp(ct, "application/json", n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* Parse the body when it is JSON; answer 400/415 on failure. */
static bool parse_body(struct http_request *r)
{
    if (r->body.len == 0)
        return true;
    const char *ct = http_req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!content_is_json(ct)) {
        /* Raw bodies are allowed only for routes that read them raw; the
         * application decides. JSON routes see json == NULL and a body. */
        return true;
    }
    json_error_t je;
    json_decref(r->json); /* a retried attempt reads the body afresh */
    r->json = json_loadb(r->body.data, r->body.len,
                         JSON_REJECT_DUPLICATES,
                         &je);
    if (!r->json) {
        http_reply_problem(r, 400, "malformed-json", NULL,
                           "malformed JSON at line %d column %d: %s",
                           je.line, je.column, je.text);
        return false;
    }
    return true;
}

/* At header time: find the route and run the before-hook, so a request
 * is refused before its body is read. */
static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

/* libmicrohttpd decodes %XX in the path and in query values in place,
 * %00 included, and that NUL then ends the string: "/v1/vms/web%00/ports/x"
 * would be served as "/v1/vms/web". Every escape but %00 is decoded;
 * %00 stays as text, which route_request answers 404 in a path and
 * which no query value passes validation with. */
static size_t unescape_no_nul(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    char *w = s;
    for (const char *p = s; *p;) {
        int hi = p[0] == '%' ? hex_digit(p[1]) : -1;
        int lo = hi >= 0 ? hex_digit(p[2]) : -1;
        if (lo >= 0 && (hi | lo) != 0) {
            *w++ = (char)(hi * 16 + lo);
            p += 3;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static void route_request(struct http_server *s, struct http_request *r)
{
    struct buf allow = { 0 };

    r->routed = true;
    /* Left undecoded by unescape_no_nul: no resource has such a name. */
    if (strstr(r->path, "%00")) {
        http_reply_problem(r, 404, "not-found", NULL,
                           "no such resource (the path holds an encoded NUL "
                           "byte)");
        return;
    }
    r->route = route_find(s, r, &allow);
    if (!r->route) {
        if (allow.len) {
            http_reply_problem(r, 405, "method-not-allowed", NULL,
                               "method %s not allowed on this resource",
                               r->method);
            http_reply_header(r, "Allow", buf_str(&allow));
        } else
            http_reply_problem(r, 404, "not-found", NULL, "no such resource");
        buf_free(&allow);
        return;
    }
    /* Methods of the path tried before the one that matched. */
    buf_free(&allow);
    r->max_body = r->route->max_body ? r->route->max_body : s->opts.max_body;
    if (r->content_length != ULLONG_MAX && r->content_length > r->max_body)
        r->too_big = true;
    /* A client still sending when we close loses our answer to the reset
     * (curl: "Failed sending data to the peer"). So a body up to
     * HTTP_DRAIN_MAX is read and dropped and the 413 follows it; only a
     * larger declared one is refused at once, on its headers. */
    if (r->too_big && !r->route->sink &&
        r->content_length > HTTP_DRAIN_MAX) {
        http_reply_problem(r, 413, "payload-too-large", NULL,
                           "request body larger than %zu bytes", r->max_body);
        return;
    }
    if (r->too_big && !r->route->sink)
        return; /* drained in on_access, answered by dispatch */
    if (s->opts.before)
        s->opts.before(r, r->route, s->opts.app);
}

static void dispatch(struct http_server *s, struct http_request *r)
{
    if (r->too_big && !r->route->sink) {
        http_reply_problem(r, 413, "payload-too-large", NULL,
                           "request body larger than %zu bytes", r->max_body);
        return;
    }
    if (!r->route->sink && !parse_body(r))
        return;
    r->n_hdr_before = r->n_hdr;
    if (s->opts.begin && !s->opts.begin(r, r->route, s->opts.app))
        return;
    r->route->fn(r, s->opts.app);
}

bool http_req_retry(struct http_request *r)
{
    /* A parked request's client may have been told nothing yet, but the
     * handler ran more than once already: not worth the bookkeeping. */
    if (r->resumed || r->parked || r->route->sink || r->upgrade_fn)
        return false;
    r->retry = true;
    return true;
}

/* Drop the answer of an attempt the after-hook gave up on, keeping the
 * headers the before-hook set (the request id). */
static void reply_drop_attempt(struct http_request *r)
{
    unsigned keep = r->n_hdr_before;
    if (keep > r->n_hdr)
        keep = r->n_hdr;
    char *names[MAX_HEADERS], *values[MAX_HEADERS];
    for (unsigned i = 0; i < keep; i++) {
        names[i] = r->hdr_name[i];
        values[i] = r->hdr_value[i];
        r->hdr_name[i] = r->hdr_value[i] = NULL;
    }
    http_reply_reset(r);
    for (unsigned i = 0; i < keep; i++) {
        r->hdr_name[i] = names[i];
        r->hdr_value[i] = values[i];
    }
    r->n_hdr = keep;
}

static bool work_push(struct http_server *s, struct http_request *r);
static bool run_request(struct http_server *s, struct http_request *r,
                        bool may_park);

/* The kernel's struct sched_attr (its first version, 48 bytes): glibc
 * has no wrapper, and <linux/sched/types.h> clashes with <sched.h>. */
struct thread_sched_attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period; /* ns; runtime: the slice */
};

/* The calling thread at SCHED_OTHER and its present nice value, asking
 * for a slice of slice_us. */
static void thread_slice(unsigned slice_us)
{
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)gettid());
    struct thread_sched_attr at = {
        .size = sizeof(at),
        .policy = SCHED_OTHER,
        .nice = errno ? 0 : nice,
        .runtime = (uint64_t)slice_us * 1000,
    };
    if (syscall(SYS_sched_setattr, 0, &at, 0) < 0)
        log_debug("http: cannot set a thread's scheduling: %s",
                  strerror(errno));
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct http_server *s = cls;
    struct http_request *r = *con_cls;
    static __thread bool sched_set;

    if (!sched_set) {
        /* Once per connection thread (libmicrohttpd starts them). */
        sched_set = true;
        if (s->opts.conn_slice_us)
            thread_slice(s->opts.conn_slice_us);
    }
    if (!r) {
        r = xcalloc(1, sizeof(*r));
        r->srv = s;
        r->conn = conn;
        r->method = xstrdup(method);
        r->path = xstrdup(url);
        r->started_ms = mono_ms();
        peer_text(conn, r->peer, sizeof(r->peer));
        r->reply_fd = -1;
        const char *cl = MHD_lookup_connection_value(
            conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        r->content_length = ULLONG_MAX;
        if (cl) {
            errno = 0;
            char *end;
            unsigned long long n = strtoull(cl, &end, 10);
            /* A malformed length is as good as an overlong one. */
            r->content_length = (errno || *end || end == cl) ? ULLONG_MAX - 1 : n;
        }
        *con_cls = r;
        route_request(s, r);
        if (r->answered) {
            /* Refused on its headers: answer now, never read the body. */
            if (s->opts.after)
                s->opts.after(r, r->route, s->opts.app);
            return send_reply(s, r);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (r->route->sink) {
            if (!r->sink_failed &&
                r->route->sink(r, upload_data, *upload_data_size,
                               s->opts.app) < 0)
                r->sink_failed = true;
            r->streamed += *upload_data_size;
        } else if (!r->too_big &&
                   r->body.len + *upload_data_size <= r->max_body) {
            buf_append(&r->body, upload_data, *upload_data_size);
        } else {
            r->too_big = true;
            r->streamed += *upload_data_size;
            if (r->streamed > HTTP_DRAIN_MAX)
                return MHD_NO; /* an endless chunked body: close */
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->work_done)
        return send_reply(s, r); /* a writer answered it */
    if (r->answered)
        return MHD_NO; /* already queued; should not happen */
    if (work_push(s, r))
        return MHD_YES;
    if (run_request(s, r, true))
        return MHD_YES; /* parked */
    return send_reply(s, r);
}

/* Run a request whose body is read: its handler (again, for a parked one
 * woken), the after-hook and retries, leaving the answer in r. true when
 * it parked instead (only where may_park: on its connection's thread). */
static bool run_request(struct http_server *s, struct http_request *r,
                        bool may_park)
{
    struct MHD_Connection *conn = r->conn;
    pthread_mutex_lock(&s->park_lock);
    r->wake_gen_seen = s->wake_gen;
    pthread_mutex_unlock(&s->park_lock);
    if (r->parked) {
        r->parked = false;
        r->resumed = true;
        r->park_requested = false;
        r->route->fn(r, s->opts.app);
    } else {
        dispatch(s, r);
    }

    /* A wake may have come between the handler's look at its state and
     * here; then run it again instead of sleeping through the change. */
    for (;;) {
        if (r->answered || !r->park_requested)
            break;
        if (!may_park) {
            r->park_requested = false;
            http_reply_problem(r, 500, "internal", NULL,
                               "a mutating call may not wait");
            break;
        }
        /* Before the look at missed wakes: a handler run again for one
         * must not read the state it saw. */
        if (s->opts.park)
            s->opts.park(r, r->route, s->opts.app);
        pthread_mutex_lock(&s->park_lock);
        bool missed = s->wake_gen != r->wake_gen_seen;
        r->wake_gen_seen = s->wake_gen;
        if (!missed && !s->stopping) {
            r->parked = true;
            r->park_next = s->parked;
            s->parked = r;
            s->n_parked++;
            MHD_suspend_connection(conn);
            pthread_mutex_unlock(&s->park_lock);
            return true;
        }
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->park_lock);
        r->park_requested = false;
        r->resumed = true;
        r->timed_out = stopping || r->park_deadline <= mono_ms();
        r->route->fn(r, s->opts.app);
    }
    if (!r->answered)
        http_reply_problem(r, 500, "internal", NULL, "handler gave no answer");
    if (s->opts.after)
        s->opts.after(r, r->route, s->opts.app);
    /* Nothing was sent yet: an attempt the after-hook undid whole (its
     * transaction lost to another's) runs again from the begin-hook. */
    while (r->retry) {
        r->retry = false;
        reply_drop_attempt(r);
        dispatch(s, r);
        if (!r->answered)
            http_reply_problem(r, 500, "internal", NULL,
                               "handler gave no answer");
        if (s->opts.after)
            s->opts.after(r, r->route, s->opts.app);
    }
    return false;
}

/* ---- writers ------------------------------------------------------------ */

static bool method_mutates(const char *m)
{
    return !streq(m, "GET") && !streq(m, "HEAD");
}

/* Hand a mutating call whose body is read to the writers, its connection
 * suspended until one has answered it; false (run it here) for reads,
 * streamed uploads, a woken parked request, or once the server stops. */
static bool work_push(struct http_server *s, struct http_request *r)
{
    if (!s->n_writers || r->parked || r->route->sink ||
        !method_mutates(r->method))
        return false;
    pthread_mutex_lock(&s->work_lock);
    if (s->work_stop) {
        pthread_mutex_unlock(&s->work_lock);
        return false;
    }
    log_ctx_save(&r->log_ctx);
    MHD_suspend_connection(r->conn);
    r->work_next = NULL;
    if (s->work_tail)
        s->work_tail->work_next = r;
    else
        s->work_head = r;
    s->work_tail = r;
    pthread_cond_signal(&s->work_cond);
    pthread_mutex_unlock(&s->work_lock);
    return true;
}

static void *writer_main(void *arg)
{
    struct http_server *s = arg;
    pthread_setname_np(pthread_self(), "fog-writer");
    if (s->opts.write_nice)
        setpriority(PRIO_PROCESS, (id_t)gettid(), s->opts.write_nice);
    pthread_mutex_lock(&s->work_lock);
    for (;;) {
        while (!s->work_head && !s->work_stop)
            pthread_cond_wait(&s->work_cond, &s->work_lock);
        struct http_request *r = s->work_head;
        if (!r)
            break; /* stopping, nothing left */
        s->work_head = r->work_next;
        if (!s->work_head)
            s->work_tail = NULL;
        pthread_mutex_unlock(&s->work_lock);
        log_ctx_restore(&r->log_ctx);
        run_request(s, r, false);
        log_ctx_clear();
        /* The connection's thread sends it and may free r at once. */
        r->work_done = true;
        MHD_resume_connection(r->conn);
        pthread_mutex_lock(&s->work_lock);
    }
    pthread_mutex_unlock(&s->work_lock);
    return NULL;
}

static int parse_listen(const char *listen, struct sockaddr_storage *ss)
{
    const char *colon = strrchr(listen, ':');
    if (!colon)
        return -EINVAL;
    _cleanup_free_ char *host = xstrndup(listen, (size_t)(colon - listen));
    int64_t port;
    if (parse_int64(colon + 1, 0, 65535, &port) < 0)
        return -EINVAL;
    memset(ss, 0, sizeof(*ss));
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        host[hl - 1] = '\0';
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
            return -EINVAL;
        return 0;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
        return -EINVAL;
    return 0;
}

/* ---- accepting -------------------------------------------------------- */

/* The server listens and accepts itself, and hands each connection to MHD
 * (MHD_add_connection). MHD could do both, but then the only way to stop
 * accepting while the connections being served finish is
 * MHD_quiesce_daemon(), and with epoll and a pool of threads that call
 * races the workers' own removal of the listening socket from their epoll
 * sets: the loser gets ENOENT and libmicrohttpd aborts the process.
 * Stopping our own acceptor and closing the socket has no such race, and
 * a client that connects while the server stops is refused at once. */

static int listen_on(const struct sockaddr_storage *ss, int *ret_port)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    if (bind(fd, (const struct sockaddr *)ss, len) < 0 ||
        listen(fd, 1024) < 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &blen) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    *ret_port = ntohs(bound.ss_family == AF_INET6
                          ? ((struct sockaddr_in6 *)&bound)->sin6_port
                          : ((struct sockaddr_in *)&bound)->sin_port);
    return fd;
}

/* Out of descriptors or memory: accepting again at once would spin, so
 * wait a little (or for the stop). Returns false when stopping. */
static bool accept_backoff(struct http_server *s, int err)
{
    int64_t now = mono_ms();
    if (now - s->accept_warned >= 10000) {
        s->accept_warned = now;
        log_warn("http: cannot accept a connection: %s", strerror(err));
    }
    struct pollfd p = { .fd = s->accept_stop, .events = POLLIN };
    return poll(&p, 1, 100) <= 0; /* timed out or interrupted */
}

static void *acceptor_main(void *arg)
{
    struct http_server *s = arg;
    for (;;) {
        struct pollfd p[2] = {
            { .fd = s->accept_stop, .events = POLLIN },
            { .fd = s->listen_fd, .events = POLLIN },
        };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("http: poll on the listening socket: %s",
                      strerror(errno));
            return NULL;
        }
        if (p[0].revents)
            return NULL;
        for (;;) {
            struct sockaddr_storage peer;
            socklen_t plen = sizeof(peer);
            int fd = accept4(s->listen_fd, (struct sockaddr *)&peer, &plen,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                /* MHD closes the socket itself when it refuses it (at
                 * its connection limits). */
                if (MHD_add_connection(s->daemon, fd,
                                       (const struct sockaddr *)&peer,
                                       plen) != MHD_YES)
                    log_debug("http: connection refused: %s",
                              strerror(errno));
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (!accept_backoff(s, errno))
                return NULL;
            break;
        }
    }
}

int http_server_start(const struct http_server_opts *o,
                      struct http_server **ret)
{
    struct sockaddr_storage ss;
    int r = parse_listen(o->listen, &ss);
    if (r < 0)
        return r;
    int port = 0;
    int lfd = listen_on(&ss, &port);
    if (lfd < 0)
        return lfd;
    int stopfd = eventfd(0, EFD_CLOEXEC);
    if (stopfd < 0) {
        r = -errno;
        close(lfd);
        return r;
    }

    struct http_server *s = xcalloc(1, sizeof(*s));
    s->opts = *o;
    if (!s->opts.threads)
        s->opts.threads = 2;
    s->listen_fd = lfd;
    s->accept_stop = stopfd;
    s->port = port;
    s->stats = xcalloc(o->n_routes + 1, sizeof(*s->stats));
    pthread_mutex_init(&s->park_lock, NULL);
    pthread_mutex_init(&s->stats_lock, NULL);
    pthread_cond_init(&s->timer_cond, NULL);
    pthread_mutex_init(&s->work_lock, NULL);
    pthread_cond_init(&s->work_cond, NULL);
    http_streams__init(&s->streams);

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                     MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE;
    if (o->tls_cert_pem) {
        flags |= MHD_USE_TLS;
        int64_t hs = o->tls_handshake_timeout_ms > 0
                         ? o->tls_handshake_timeout_ms
                         : HTTP_SERVER_TLS_HANDSHAKE_MS;
        if ((r = http_tlswait__start(&s->tlswait, hs)) < 0) {
            close(lfd);
            close(stopfd);
            free(s->stats);
            free(s);
            return r;
        }
    }

    struct MHD_OptionItem opts[] = {
        { MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL },
        { MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape_no_nul, NULL },
        { MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)s->opts.threads, NULL },
        { MHD_OPTION_CONNECTION_TIMEOUT, 90, NULL },
        { MHD_OPTION_CONNECTION_LIMIT, 20000, NULL },
        { MHD_OPTION_PER_IP_CONNECTION_LIMIT,
          (intptr_t)s->opts.per_ip_connections, NULL },
        /* Plain HTTP: the first of these ends the list. */
        { o->tls_cert_pem ? MHD_OPTION_NOTIFY_CONNECTION : MHD_OPTION_END,
          (intptr_t)on_connection, s },
        { o->tls_cert_pem ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0,
          (void *)o->tls_cert_pem },
        { o->tls_key_pem ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0,
          (void *)o->tls_key_pem },
        { o->tls_cert_pem ? MHD_OPTION_HTTPS_PRIORITIES : MHD_OPTION_END, 0,
          (void *)HTTP_SERVER_TLS_PRIORITIES },
        { MHD_OPTION_END, 0, NULL },
    };
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s,
                                 MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!s->daemon) {
        r = errno ? -errno : -EINVAL;
        if (o->tls_cert_pem) {
            http_tlswait__stop(&s->tlswait);
            http_tlswait__free(&s->tlswait);
        }
        close(lfd);
        close(stopfd);
        free(s->stats);
        free(s);
        return r;
    }
    pthread_create(&s->timer, NULL, park_timer, s);
    s->n_writers = s->opts.write_threads ? s->opts.write_threads
                                         : s->opts.threads;
    s->writers = xcalloc(s->n_writers, sizeof(*s->writers));
    for (unsigned i = 0; i < s->n_writers; i++)
        pthread_create(&s->writers[i], NULL, writer_main, s);
    pthread_create(&s->acceptor, NULL, acceptor_main, s);
    *ret = s;
    return 0;
}

int http_server_port(const struct http_server *s) { return s->port; }

void http_server_stop(struct http_server *s, int grace_ms)
{
    if (!s)
        return;
    /* No new connection from here on: a client is refused at once. */
    uint64_t one = 1;
    if (write(s->accept_stop, &one, sizeof(one)) != sizeof(one))
        log_error("http: cannot stop accepting: %s", strerror(errno));
    pthread_join(s->acceptor, NULL);
    close(s->listen_fd);
    close(s->accept_stop);
    /* Handshakes still waiting for their client end now. */
    if (s->opts.tls_cert_pem)
        http_tlswait__stop(&s->tlswait);
    pthread_mutex_lock(&s->park_lock);
    s->stopping = true;
    pthread_cond_signal(&s->timer_cond);
    pthread_mutex_unlock(&s->park_lock);
    pthread_join(s->timer, NULL);
    http_server_wake(s, NULL);
    int64_t until = mono_ms() + grace_ms;
    while (mono_ms() < until) {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(
            s->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!di || di->num_connections == 0)
            break;
        struct timespec ts = { 0, 20 * 1000000 };
        nanosleep(&ts, NULL);
    }
    /* Writers finish what they hold (its connections resume); calls that
     * come after run on their connection's thread. */
    pthread_mutex_lock(&s->work_lock);
    s->work_stop = true;
    pthread_cond_broadcast(&s->work_cond);
    pthread_mutex_unlock(&s->work_lock);
    for (unsigned i = 0; i < s->n_writers; i++)
        pthread_join(s->writers[i], NULL);
    free(s->writers);
    /* No connection may stay suspended on a stream past here; producers
     * (which read the application's stores) are done before we return. */
    http_streams__stop(&s->streams);
    MHD_stop_daemon(s->daemon);
    if (s->opts.tls_cert_pem)
        http_tlswait__free(&s->tlswait);
    http_streams__wait(&s->streams);
    pthread_mutex_destroy(&s->park_lock);
    pthread_mutex_destroy(&s->stats_lock);
    pthread_cond_destroy(&s->timer_cond);
    pthread_mutex_destroy(&s->work_lock);
    pthread_cond_destroy(&s->work_cond);
    free(s->stats);
    free(s);
}
