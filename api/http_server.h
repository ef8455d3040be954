/* HTTP(S) server core over libmicrohttpd: route table with {param}
 * segments, bounded JSON bodies, problem+json errors, parked long polls
 * (suspend/resume, no thread each) and per-route request metrics.
 * The application supplies the routes and a hook run before each handler
 * (authentication); it never sees libmicrohttpd itself. */
#pragma once

#include "common/buf.h"
#include "common/util.h"

#include <jansson.h>

struct http_server;
struct http_request;

typedef void (*http_handler_fn)(struct http_request *req, void *app);

/* Receives a streamed request body chunk by chunk (routes with a sink
 * never buffer their body). Return 0, or -errno to stop reading: the
 * handler then runs and should answer the error it recorded. */
typedef int (*http_sink_fn)(struct http_request *req, const void *data,
                            size_t len, void *app);

struct http_route {
    const char *method;  /* "GET", "POST", "DELETE", ... */
    const char *pattern; /* "/v1/vms/{id}/start": {x} matches one segment */
    http_handler_fn fn;
    unsigned flags;      /* application-defined (roles, no-auth, ...) */
    http_sink_fn sink;   /* NULL: body buffered up to max_body */
    size_t max_body;     /* 0: the server's max_body */
};

/* How long a TLS handshake may take by default, from its connection's
 * start (a client that sends its first flight and then nothing holds a
 * connection until then). */
#define HTTP_SERVER_TLS_HANDSHAKE_MS 30000

/* The TLS the server speaks (a GnuTLS priority string): 1.2 and 1.3
 * only, AEAD ciphers only (no CBC, no SHA-1 MACs), forward-secret ECDHE
 * key exchange; the server's preference wins. X25519 comes first among
 * the key-exchange groups: OpenSSL's clients (curl, wrk, most language
 * runtimes) and browsers send a TLS 1.3 key share for X25519 alone, and a
 * server that prefers another group answers them with a HelloRetryRequest,
 * a round trip more on every new connection. GnuTLS clients send a P-256
 * share as well, so either order suits them. */
#define HTTP_SERVER_TLS_PRIORITIES                                           \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:"   \
    "+CHACHA20-POLY1305:+AES-128-GCM:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:"   \
    "+ECDHE-RSA:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:" \
    "+GROUP-SECP521R1:+GROUP-X448:%SERVER_PRECEDENCE"

struct http_server_opts {
    const char *listen;       /* "127.0.0.1:8443", "[::1]:0", "0.0.0.0:8443" */
    const char *tls_cert_pem; /* NULL: plain HTTP */
    const char *tls_key_pem;
    const struct http_route *routes;
    size_t n_routes;
    size_t max_body;          /* bytes; larger bodies get 413 */
    unsigned threads;         /* worker threads (epoll each), default 2 */
    /* Threads that run mutating calls (not GET or HEAD, not streamed
     * uploads) once their body is read, while the connection threads go
     * on serving others: a write waiting for the store never delays a
     * read. Default (0): as many as `threads`. */
    unsigned write_threads;
    int write_nice;           /* the writers' nice value (0: as the rest) */
    /* Scheduling slice (microseconds) each connection thread asks of the
     * kernel once it serves a request: a short one gets a thread woken
     * by a request onto a CPU ahead of longer-running work (Linux 6.12 or
     * later, EEVDF; older kernels ignore it). 0: the kernel's default. */
    unsigned conn_slice_us;
    unsigned per_ip_connections; /* open connections per client; 0: any */
    /* A TLS handshake not over this long after its connection came is
     * ended (0: HTTP_SERVER_TLS_HANDSHAKE_MS). While it waits for the
     * client it costs no CPU (api/http_tlswait.h). */
    int64_t tls_handshake_timeout_ms;
    /* Called before the handler; returns false when it has answered the
     * request itself (401, 403...). May be NULL. */
    bool (*before)(struct http_request *req, const struct http_route *route,
                   void *app);
    /* Called once the body is read, right before the handler runs (not
     * again when a parked request resumes); returns false when it has
     * answered the request itself. May be NULL. */
    bool (*begin)(struct http_request *req, const struct http_route *route,
                  void *app);
    /* Called after a handler answered (not for parked requests until they
     * are answered). May be NULL. */
    void (*after)(struct http_request *req, const struct http_route *route,
                  void *app);
    /* Called when a handler asks to park, on its connection's thread,
     * before it parks (or runs again for a wake it missed): what the
     * begin-hook holds for the thread is let go here, as the thread goes
     * on to serve others. May be NULL. */
    void (*park)(struct http_request *req, const struct http_route *route,
                 void *app);
    void *app;
};

/* Start serving. 0 and *ret, or -errno (address in use, bad TLS...). */
int http_server_start(const struct http_server_opts *o,
                      struct http_server **ret);
/* Stop accepting (the listening socket is closed: a client that connects
 * from here on is refused), answer parked requests, wait up to grace_ms
 * for the connections still open to finish, then free everything.
 * Accepts NULL. */
void http_server_stop(struct http_server *s, int grace_ms);
/* The TCP port actually bound (useful with port 0). */
int http_server_port(const struct http_server *s);
/* Resume parked requests whose tag equals `tag` (all when NULL): their
 * handler runs again and sees http_req_resumed(). Thread-safe. */
void http_server_wake(struct http_server *s, const char *tag);
/* Number of currently parked requests. */
size_t http_server_parked(struct http_server *s);
/* Prometheus text for request counts and latency histogram. */
void http_server_metrics(struct http_server *s, struct buf *out);

/* ---- request side ---- */
const char *http_req_method(const struct http_request *r);
const char *http_req_path(const struct http_request *r);
/* The n-th {param} of the matched route (0-based) or NULL. */
const char *http_req_param(const struct http_request *r, unsigned n);
const char *http_req_query(const struct http_request *r, const char *name);
const char *http_req_header(const struct http_request *r, const char *name);
/* Parsed JSON body (owned by the request) or NULL when the body is empty. */
json_t *http_req_json(const struct http_request *r);
const char *http_req_body(const struct http_request *r, size_t *ret_len);
/* Peer address as "ip" text. */
const char *http_req_peer(const struct http_request *r);
const struct http_route *http_req_route(const struct http_request *r);
/* Application data attached to the request, freed with `free_fn` at the end. */
void http_req_set_user(struct http_request *r, void *user,
                       void (*free_fn)(void *));
void *http_req_user(const struct http_request *r);

/* ---- answering: exactly one reply per request ---- */
/* Steals `body` (may be NULL for an empty body). */
void http_reply_json(struct http_request *r, int status, json_t *body);
/* Answer the JSON text written into w (its buffer is taken; w is left
 * empty). */
struct jsonw;
void http_reply_jsonw(struct http_request *r, int status, struct jsonw *w);
/* Steals `body`. */
void http_reply_text(struct http_request *r, int status,
                     const char *content_type, char *body, size_t len);
/* RFC 9457 problem: type urn:fog:problem:<slug>; field may be NULL. */
void http_reply_problem(struct http_request *r, int status, const char *slug,
                        const char *field, const char *fmt, ...)
    _printf_(5, 6);
/* http_reply_problem with extension members (RFC 9457 section 3.2) taken
 * from `extra` (stolen; may be NULL); they never replace the standard
 * ones. */
void http_reply_problem_ext(struct http_request *r, int status,
                            const char *slug, const char *field, json_t *extra,
                            const char *fmt, ...) _printf_(6, 7);
void http_reply_header(struct http_request *r, const char *name,
                       const char *value);
/* From an after-hook: run the request again from the begin-hook once the
 * hook returns, its answer so far dropped (but for the headers the
 * before-hook set), since nothing of it has been sent. For an attempt
 * whose every effect the hook undid. false where the core cannot (the
 * request was parked, streams its body or switches protocols). */
bool http_req_retry(struct http_request *r);
/* Take back the answer given so far (body, headers, file), so that an
 * after-hook whose commit failed can answer something else. */
void http_reply_reset(struct http_request *r);
/* Answer with `len` bytes of an open file from `offset` (the core closes
 * fd). Honours a single "Range: bytes=a-b" request header: 206 with
 * Content-Range, or 416 when unsatisfiable. */
void http_reply_file(struct http_request *r, const char *content_type,
                     int fd, uint64_t size);
/* ---- streamed answers ---- */
struct http_stream;
/* Produces bytes [off, off + len) of a streamed answer, in order, through
 * http_stream_write(); runs on a thread of its own, never a connection's.
 * 0 once all len bytes are written, or -errno: the connection is then
 * closed short of the length it announced, so the client sees the body
 * cut and may resume with a Range. */
typedef int (*http_stream_fn)(struct http_stream *st, uint64_t off,
                              uint64_t len, void *ctx);
/* Answer with a body of `size` bytes that fn makes while it is sent: the
 * first bytes go out as soon as fn writes them, at most a bounded buffer
 * lies between fn and the client, and no connection thread waits on
 * either. Honours a Range as http_reply_file does (fn gets the span).
 * ctx is freed with ctx_free (may be NULL) once fn has returned, or when
 * fn never runs. Past HTTP_STREAMS_MAX (api/http_stream.h) answers at
 * once 503. */
void http_reply_stream(struct http_request *r, const char *content_type,
                       uint64_t size, http_stream_fn fn, void *ctx,
                       void (*ctx_free)(void *));
/* Hand the next `len` bytes to the client, waiting while it is behind.
 * 0, or -ECANCELED once the client has gone, the answer was dropped or
 * the server stops: the producer should return then. With len 0 only
 * asks that (and notices a client that hung up while no bytes came):
 * a producer waiting on a slow source calls it now and then. */
int http_stream_write(struct http_stream *st, const void *data, size_t len);

/* Parse a Range header value against a file of `size` bytes: one range,
 * "bytes=a-b", "bytes=a-" or "bytes=-n", digits only, nothing that
 * overflows 64 bits. 0 with the span in *ret_off and *ret_len, 1 when h
 * is NULL (no range: the whole file), -1 when unsatisfiable or malformed
 * (answer 416). */
int http_parse_range(const char *h, uint64_t size, uint64_t *ret_off,
                     uint64_t *ret_len);
/* Bytes received by a sink so far. */
uint64_t http_req_streamed(const struct http_request *r);
bool http_req_answered(const struct http_request *r);
int http_req_status(const struct http_request *r);
/* The body of the reply (for idempotency records); NULL before replying. */
const char *http_req_reply_body(const struct http_request *r, size_t *len);
const char *http_req_reply_type(const struct http_request *r);

/* ---- protocol upgrades (RFC 9110 section 7.8) ---- */
/* A connection taken over after its 101: fd carries raw bytes both ways
 * (with TLS, a local socket the server relays through the TLS session). */
struct http_upgraded;
/* Called on a server thread right after the 101 went out, with the
 * upgraded connection (owned by the callee, who must end it with
 * http_upgraded_close()). It must not block: hand the connection on. */
typedef void (*http_upgrade_fn)(struct http_upgraded *u, void *arg);
/* Answer 101 Switching Protocols to `protocol` (the request's Upgrade
 * header should name it; the caller checks) and hand the connection to
 * fn(u, arg). If the client goes away first, fn is never called. */
void http_reply_upgrade(struct http_request *r, const char *protocol,
                        http_upgrade_fn fn, void *arg);
/* The socket (never close it yourself). */
int http_upgraded_fd(const struct http_upgraded *u);
/* Bytes the client sent after its request headers, read by the server
 * before the upgrade: they come first. */
const char *http_upgraded_early(const struct http_upgraded *u,
                                size_t *ret_len);
/* True once the client has hung up its connection. With TLS the server
 * relays through fd and does not pass the client's close on, so a relay
 * asks here (the TCP socket seen hung up, without reading from it). */
bool http_upgraded_peer_gone(const struct http_upgraded *u);
/* Close the connection and free u. Thread-safe; accepts NULL. */
void http_upgraded_close(struct http_upgraded *u);

/* ---- long polls ---- */
/* Instead of answering, park the request until http_server_wake(tag) or
 * until the monotonic deadline; then the handler runs again. */
void http_req_park(struct http_request *r, const char *tag,
                   int64_t deadline_mono_ms);
bool http_req_resumed(const struct http_request *r);
bool http_req_timed_out(const struct http_request *r);
/* True when the server is shutting down (answer parked requests now). */
bool http_req_stopping(const struct http_request *r);
