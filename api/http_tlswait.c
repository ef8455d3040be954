/* TLS handshakes that wait for their client off the event loop: see
 * api/http_tlswait.h. */
#include "api/http_tlswait.h"

#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <stdatomic.h>
#include <microhttpd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* One TLS connection. `handshaking` is the connection thread's alone; the
 * rest under w->lock. */
struct http_tlswait_conn {
    struct http_tlswait *w;
    struct MHD_Connection *conn;
    int fd;
    int64_t deadline;   /* mono ms: its handshake is over by then */
    bool handshaking;
    bool suspended;     /* by this module, in w's list */
    bool in_epoll;      /* registered with w->epfd (one-shot) */
    struct http_tlswait_conn *prev, *next;
};

/* How often the thread looks for handshakes past their deadline. */
#define SWEEP_MS 1000
/* The most descriptors the table below covers (8 MiB of it; pages no
 * descriptor reaches are never touched). */
#define BY_FD_MAX (1u << 20)

/* Every TLS connection of the process by its socket. GnuTLS keeps the
 * socket as the session's transport (what it reads and writes, and what
 * kernel TLS would be set up on), so the pull function is handed the
 * descriptor alone; a socket is a connection's from its start until
 * after its close is notified. Sized once, by the descriptor limit. */
static _Atomic(struct http_tlswait_conn *) *by_fd;
static size_t n_by_fd;
static pthread_once_t by_fd_once = PTHREAD_ONCE_INIT;

static void by_fd_init(void)
{
    struct rlimit rl;
    n_by_fd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < BY_FD_MAX
                  ? (size_t)rl.rlim_cur : BY_FD_MAX;
    by_fd = xcalloc(n_by_fd, sizeof(*by_fd));
}

static struct http_tlswait_conn *conn_of(int fd)
{
    return fd >= 0 && (size_t)fd < n_by_fd ? atomic_load(&by_fd[fd]) : NULL;
}

static void unlink_conn(struct http_tlswait *w, struct http_tlswait_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        w->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->suspended = false;
    w->n--;
}

/* The handshake of c read nothing: suspend its connection until its
 * socket has something for it. On the connection's thread, inside the
 * handshake libmicrohttpd runs for it, which then returns at once. */
static void suspend(struct http_tlswait_conn *c)
{
    struct http_tlswait *w = c->w;
    pthread_mutex_lock(&w->lock);
    if (w->stopping || c->suspended) {
        pthread_mutex_unlock(&w->lock);
        return;
    }
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
                              .data.ptr = c };
    MHD_suspend_connection(c->conn);
    /* A socket that is readable already fires at once. */
    if (epoll_ctl(w->epfd, c->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd,
                  &ev) < 0) {
        pthread_mutex_unlock(&w->lock);
        MHD_resume_connection(c->conn); /* waits as before */
        return;
    }
    c->in_epoll = true;
    c->suspended = true;
    c->prev = NULL;
    c->next = w->head;
    if (w->head)
        w->head->prev = c;
    w->head = c;
    w->n++;
    w->suspends++;
    pthread_mutex_unlock(&w->lock);
}

/* GnuTLS's read of the socket, as its own (a plain recv()), but a
 * handshake's read that finds nothing suspends the connection. */
static ssize_t tw_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
    int fd = (int)(intptr_t)p;
    ssize_t n = recv(fd, buf, len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        struct http_tlswait_conn *c = conn_of(fd);
        if (c && c->handshaking)
            suspend(c);
        errno = EAGAIN;
    }
    return n;
}

/* The client's Finished is in: whatever is read from here on is records,
 * which libmicrohttpd waits for as it should. */
static int tw_finished(gnutls_session_t session, unsigned int htype,
                       unsigned when, unsigned int incoming,
                       const gnutls_datum_t *msg)
{
    (void)htype, (void)when, (void)msg;
    struct http_tlswait_conn *c = conn_of(gnutls_transport_get_int(session));
    if (incoming && c)
        c->handshaking = false;
    return 0;
}

/* Resume c (taken out of the list by the caller, under w->lock), shut
 * down first where `end`. */
static void resume(struct http_tlswait_conn *c, bool end)
{
    if (end)
        shutdown(c->fd, SHUT_RDWR);
    MHD_resume_connection(c->conn);
}

static void *tlswait_main(void *arg)
{
    struct http_tlswait *w = arg;
    struct epoll_event ev[64];
    int64_t sweep_at = mono_ms() + SWEEP_MS;
    for (;;) {
        int64_t left = sweep_at - mono_ms();
        int n = epoll_wait(w->epfd, ev, ARRAY_SIZE(ev),
                           left > 0 ? (int)left : 0);
        if (n < 0 && errno != EINTR) {
            log_error("http: waiting for TLS clients: %s", strerror(errno));
            n = 0;
        }
        struct http_tlswait_conn *go[64];
        size_t n_go = 0;
        bool stop = false;
        pthread_mutex_lock(&w->lock);
        for (int i = 0; i < n; i++) {
            struct http_tlswait_conn *c = ev[i].data.ptr;
            if (!c) {
                stop = true;
                continue;
            }
            if (c->suspended) {
                unlink_conn(w, c);
                go[n_go++] = c;
            }
        }
        stop = stop || w->stopping;
        pthread_mutex_unlock(&w->lock);
        /* Suspended, so libmicrohttpd neither frees nor touches them. */
        for (size_t i = 0; i < n_go; i++)
            resume(go[i], false);
        if (stop)
            return NULL;
        if (mono_ms() < sweep_at)
            continue;
        /* Handshakes past their deadline end, a few at a time. */
        int64_t now = mono_ms();
        do {
            n_go = 0;
            pthread_mutex_lock(&w->lock);
            struct http_tlswait_conn *c = w->head, *next;
            for (; c && n_go < ARRAY_SIZE(go); c = next) {
                next = c->next;
                if (c->deadline <= now) {
                    unlink_conn(w, c);
                    go[n_go++] = c;
                }
            }
            pthread_mutex_unlock(&w->lock);
            for (size_t i = 0; i < n_go; i++)
                resume(go[i], true);
        } while (n_go == ARRAY_SIZE(go));
        sweep_at = now + SWEEP_MS;
    }
}

int http_tlswait__start(struct http_tlswait *w, int64_t timeout_ms)
{
    pthread_once(&by_fd_once, by_fd_init);
    *w = (struct http_tlswait){ .epfd = -1, .wake = -1,
                                .timeout_ms = timeout_ms };
    pthread_mutex_init(&w->lock, NULL);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    int r = 0;
    if (w->epfd < 0 || w->wake < 0 ||
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wake, &ev) < 0)
        r = -errno;
    else if ((r = -pthread_create(&w->thread, NULL, tlswait_main, w)) == 0)
        w->started = true;
    if (r < 0)
        http_tlswait__free(w);
    return r;
}

void http_tlswait__notify(struct http_tlswait *w, struct MHD_Connection *conn,
                          void **socket_context, int code)
{
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct http_tlswait_conn *c = *socket_context;
        if (!c)
            return;
        pthread_mutex_lock(&w->lock);
        if (c->suspended) /* not expected: a suspended one is not closed */
            unlink_conn(w, c);
        /* Its socket is still open here, and so still this one's. */
        if (c->in_epoll)
            epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        pthread_mutex_unlock(&w->lock);
        atomic_store(&by_fd[c->fd], NULL);
        free(c);
        *socket_context = NULL;
        return;
    }
    if (code != MHD_CONNECTION_NOTIFY_STARTED)
        return;
    const union MHD_ConnectionInfo *ts =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    const union MHD_ConnectionInfo *fd =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ts || !ts->tls_session || !fd || fd->connect_fd < 0 ||
        (size_t)fd->connect_fd >= n_by_fd)
        return; /* waits as libmicrohttpd makes it */
    struct http_tlswait_conn *c = xcalloc(1, sizeof(*c));
    *c = (struct http_tlswait_conn){ .w = w, .conn = conn,
                                     .fd = fd->connect_fd,
                                     .deadline = mono_ms() + w->timeout_ms,
                                     .handshaking = true };
    atomic_store(&by_fd[c->fd], c);
    gnutls_session_t s = ts->tls_session;
    gnutls_transport_set_pull_function(s, tw_pull);
    gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_FINISHED,
                                       GNUTLS_HOOK_POST, tw_finished);
    *socket_context = c;
}

void http_tlswait__stop(struct http_tlswait *w)
{
    if (!w->started)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true; /* none is suspended from here on */
    pthread_mutex_unlock(&w->lock);
    /* The thread first: an event it holds may name a connection that,
     * once resumed here, its thread could close and free. */
    uint64_t one = 1;
    if (write(w->wake, &one, sizeof(one)) != sizeof(one))
        log_error("http: cannot stop the TLS waiting thread: %s",
                  strerror(errno));
    pthread_join(w->thread, NULL);
    w->started = false;
    pthread_mutex_lock(&w->lock);
    struct http_tlswait_conn *c;
    while ((c = w->head)) {
        unlink_conn(w, c);
        resume(c, true);
    }
    pthread_mutex_unlock(&w->lock);
}

void http_tlswait__free(struct http_tlswait *w)
{
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->wake >= 0)
        close(w->wake);
    w->epfd = w->wake = -1;
    pthread_mutex_destroy(&w->lock);
}

void http_tlswait__counts(struct http_tlswait *w, size_t *now,
                          uint64_t *total)
{
    pthread_mutex_lock(&w->lock);
    *now = w->n;
    *total = w->suspends;
    pthread_mutex_unlock(&w->lock);
}
