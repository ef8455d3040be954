/* Streamed answers: a producer thread per answer writes into a ring
 * buffer of HTTP_STREAM_BUF bytes; libmicrohttpd's content reader takes
 * from it on the connection's thread and suspends the connection when it
 * is empty, the producer resuming it with the next bytes. The producer
 * blocks while the buffer is full (the client is behind); libmicrohttpd's
 * connection timeout ends a client that takes nothing. */
#include "api/http_stream.h"

#include "common/log.h"

#include <errno.h>
#include <microhttpd.h>
#include <poll.h>

/* The most handed to libmicrohttpd per content reader call. */
#define STREAM_BLOCK (64u << 10)

struct http_stream {
    struct http_streams *set;
    struct MHD_Connection *conn;
    int sock;
    pthread_mutex_t lock;
    pthread_cond_t cond;   /* room in the buffer, or gone */
    uint8_t *buf;
    size_t head, fill;     /* fill bytes from head, wrapping */
    bool suspended;        /* the connection waits for bytes */
    bool gone;             /* nobody reads any more */
    bool ended;            /* the producer returned err */
    int err;
    unsigned refs;         /* the producer, the answer */
    uint64_t off, len, written;
    http_stream_fn fn;
    void *ctx;
    void (*ctx_free)(void *);
    struct http_stream *next, *prev; /* in set while the producer runs */
};

void http_streams__init(struct http_streams *set)
{
    memset(set, 0, sizeof(*set));
    pthread_mutex_init(&set->lock, NULL);
    pthread_cond_init(&set->idle, NULL);
}

/* With st->lock held: let the connection run again. */
static void stream_wake_locked(struct http_stream *st)
{
    if (st->suspended) {
        st->suspended = false;
        MHD_resume_connection(st->conn);
    }
}

void http_streams__stop(struct http_streams *set)
{
    pthread_mutex_lock(&set->lock);
    set->stopping = true;
    for (struct http_stream *st = set->head; st; st = st->next) {
        pthread_mutex_lock(&st->lock);
        st->gone = true;
        stream_wake_locked(st);
        pthread_cond_broadcast(&st->cond);
        pthread_mutex_unlock(&st->lock);
    }
    pthread_mutex_unlock(&set->lock);
}

void http_streams__wait(struct http_streams *set)
{
    pthread_mutex_lock(&set->lock);
    while (set->n)
        pthread_cond_wait(&set->idle, &set->lock);
    pthread_mutex_unlock(&set->lock);
    pthread_mutex_destroy(&set->lock);
    pthread_cond_destroy(&set->idle);
}

static void stream_unref(struct http_stream *st)
{
    pthread_mutex_lock(&st->lock);
    bool last = --st->refs == 0;
    pthread_mutex_unlock(&st->lock);
    if (!last)
        return;
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->cond);
    free(st->buf);
    free(st);
}

void http_stream__drop(struct http_stream *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->lock);
    st->gone = true;
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->lock);
    stream_unref(st);
}

int http_stream_write(struct http_stream *st, const void *data, size_t len)
{
    const uint8_t *p = data;
    pthread_mutex_lock(&st->lock);
    /* A connection waiting for bytes is not read by libmicrohttpd, which
     * so would not see its client hang up: look here (the socket lives
     * while the connection is suspended). */
    if (!len && st->suspended && st->sock >= 0) {
        struct pollfd pf = { st->sock, POLLRDHUP, 0 };
        if (poll(&pf, 1, 0) > 0 &&
            (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) {
            st->gone = true;
            stream_wake_locked(st); /* it closes the connection */
        }
    }
    if (len > st->len - st->written) {
        pthread_mutex_unlock(&st->lock);
        return -EFBIG; /* more than the answer's length: the producer's bug */
    }
    while (len && !st->gone) {
        while (st->fill == HTTP_STREAM_BUF && !st->gone)
            pthread_cond_wait(&st->cond, &st->lock);
        if (st->gone)
            break;
        size_t tail = (st->head + st->fill) % HTTP_STREAM_BUF;
        size_t n = HTTP_STREAM_BUF - st->fill;
        if (n > HTTP_STREAM_BUF - tail)
            n = HTTP_STREAM_BUF - tail;
        if (n > len)
            n = len;
        memcpy(st->buf + tail, p, n);
        st->fill += n;
        st->written += n;
        p += n;
        len -= n;
        stream_wake_locked(st);
    }
    int r = st->gone ? -ECANCELED : 0;
    pthread_mutex_unlock(&st->lock);
    return r;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct http_stream *st = cls;
    (void)pos;
    pthread_mutex_lock(&st->lock);
    if (st->fill) {
        size_t n = st->fill;
        if (n > HTTP_STREAM_BUF - st->head)
            n = HTTP_STREAM_BUF - st->head;
        if (n > max)
            n = max;
        memcpy(out, st->buf + st->head, n);
        st->head = (st->head + n) % HTTP_STREAM_BUF;
        st->fill -= n;
        pthread_cond_broadcast(&st->cond);
        pthread_mutex_unlock(&st->lock);
        return (ssize_t)n;
    }
    if (st->gone || st->ended) {
        /* Short of the length sent: libmicrohttpd closes the connection,
         * and the client resumes with a Range. */
        pthread_mutex_unlock(&st->lock);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    /* Nothing yet: the producer resumes the connection with its next
     * bytes (or its end), so no thread waits here. */
    st->suspended = true;
    MHD_suspend_connection(st->conn);
    pthread_mutex_unlock(&st->lock);
    return 0;
}

/* The response is destroyed: sent, or its connection closed. */
static void stream_free_cb(void *cls)
{
    http_stream__drop(cls);
}

static void *stream_main(void *arg)
{
    struct http_stream *st = arg;
    int e = st->fn(st, st->off, st->len, st->ctx);
    if (st->ctx_free)
        st->ctx_free(st->ctx);
    st->ctx = NULL;
    pthread_mutex_lock(&st->lock);
    if (e == 0 && st->written != st->len)
        e = -EIO;
    if (e < 0 && e != -ECANCELED && !st->gone)
        log_debug("streamed answer ends at byte %llu of %llu: %s",
                  (unsigned long long)(st->off + st->written),
                  (unsigned long long)(st->off + st->len), strerror(-e));
    st->ended = true;
    st->err = e;
    stream_wake_locked(st);
    pthread_mutex_unlock(&st->lock);

    struct http_streams *set = st->set;
    pthread_mutex_lock(&set->lock);
    if (st->prev)
        st->prev->next = st->next;
    else
        set->head = st->next;
    if (st->next)
        st->next->prev = st->prev;
    if (--set->n == 0)
        pthread_cond_broadcast(&set->idle);
    pthread_mutex_unlock(&set->lock);
    stream_unref(st);
    return NULL;
}

int http_stream__new(struct http_streams *set, struct MHD_Connection *conn,
                     int sock, uint64_t off, uint64_t len, http_stream_fn fn,
                     void *ctx, void (*ctx_free)(void *),
                     struct http_stream **ret)
{
    struct http_stream *st = xcalloc(1, sizeof(*st));
    st->set = set;
    st->conn = conn;
    st->sock = sock;
    st->buf = xmalloc(HTTP_STREAM_BUF);
    st->off = off;
    st->len = len;
    st->fn = fn;
    st->ctx = ctx;
    st->ctx_free = ctx_free;
    st->refs = 2;
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->cond, NULL);

    int e = 0;
    pthread_mutex_lock(&set->lock);
    if (set->stopping)
        e = -ESHUTDOWN;
    else if (set->n >= HTTP_STREAMS_MAX)
        e = -EBUSY;
    pthread_attr_t attr;
    if (e == 0) {
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_t t;
        e = -pthread_create(&t, &attr, stream_main, st);
        pthread_attr_destroy(&attr);
    }
    if (e == 0) {
        st->next = set->head;
        if (set->head)
            set->head->prev = st;
        set->head = st;
        set->n++;
    }
    pthread_mutex_unlock(&set->lock);
    if (e < 0) {
        if (ctx_free)
            ctx_free(ctx);
        pthread_mutex_destroy(&st->lock);
        pthread_cond_destroy(&st->cond);
        free(st->buf);
        free(st);
        return e;
    }
    *ret = st;
    return 0;
}

struct MHD_Response *http_stream__response(struct http_stream *st,
                                           uint64_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_callback(
        len, STREAM_BLOCK, stream_read, st, stream_free_cb);
    if (!resp)
        http_stream__drop(st);
    return resp;
}
