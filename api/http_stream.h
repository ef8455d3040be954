/* Streamed answers of the HTTP server core (api/http_server.c), internal
 * to it: a producer on a thread of its own fills a bounded buffer that
 * libmicrohttpd drains as the client takes it, the connection suspended
 * while the buffer is empty, so neither a slow source nor a slow client
 * holds a connection thread. The public side is http_reply_stream() and
 * http_stream_write() in api/http_server.h. */
#pragma once

#include "api/http_server.h"

#include <pthread.h>

struct MHD_Connection;
struct MHD_Response;

/* Bytes buffered between a producer and its client, and the most a
 * server streams at once (more are answered 503). */
#define HTTP_STREAM_BUF (1u << 20)
#define HTTP_STREAMS_MAX 64

/* The server's streams whose producers still run: stopped and waited for
 * when the server stops. */
struct http_streams {
    pthread_mutex_t lock;
    pthread_cond_t idle;      /* signalled when n drops to 0 */
    struct http_stream *head; /* doubly linked through next/prev */
    unsigned n;
    bool stopping;
};

void http_streams__init(struct http_streams *set);
/* Before MHD_stop_daemon: every stream is told its client is gone and no
 * connection stays suspended on one; no new stream starts. */
void http_streams__stop(struct http_streams *set);
/* After MHD_stop_daemon: wait until every producer has returned, then
 * free the set's own state. */
void http_streams__wait(struct http_streams *set);

/* Start producing bytes [off, off + len) with fn on a new thread for the
 * answer on `conn` (its socket `sock`, polled for a hang-up while the
 * connection waits). ctx is freed with ctx_free once fn has returned, or
 * here on failure. 0 and *ret (the answer's reference, handed to
 * http_stream__response() or dropped with http_stream__drop()), -EBUSY
 * past HTTP_STREAMS_MAX, -ESHUTDOWN when the server stops, or -errno. */
int http_stream__new(struct http_streams *set, struct MHD_Connection *conn,
                     int sock, uint64_t off, uint64_t len, http_stream_fn fn,
                     void *ctx, void (*ctx_free)(void *),
                     struct http_stream **ret);
/* The libmicrohttpd response of `len` bytes read from st, which takes the
 * answer's reference (dropped here when it cannot be made: NULL). */
struct MHD_Response *http_stream__response(struct http_stream *st,
                                           uint64_t len);
/* An answer that will not be sent: its producer stops. Accepts NULL. */
void http_stream__drop(struct http_stream *st);
