/* Console sessions: the table of open sessions and the splice between a
 * tenant's and a node's upgraded connections (bounded buffers, both
 * closed when either side closes, idle and total limits). */
#include "controller/console.h"

#include "api/agentproto.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/termtext.h"
#include "common/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

struct console_session {
    struct console_session *next;
    char *id, *vm_id, *node_id;
    struct http_upgraded *node, *tenant;
    bool stop;     /* taken over or abandoned: the splice ends */
    bool splicing; /* the splice thread owns the connections */
    int64_t opened_ms;
    uint32_t log_bytes; /* a log session: what the reader asked for */
    char *log;          /* the node's answer, once it came */
    size_t log_len;
};

/* A session no one is splicing this long after it opened was left by its
 * tenant (a reader gone before the node answered, an attach whose 101
 * never reached its client): it goes, so it never holds the console. */
#define SESSION_STALE_MS ((CONSOLE_JOIN_TIMEOUT_S + 10) * 1000LL)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct console_session *sessions;

static struct console_session *find_locked(const char *id)
{
    for (struct console_session *s = sessions; s; s = s->next)
        if (streq(s->id, id))
            return s;
    return NULL;
}

static void unlink_locked(struct console_session *s)
{
    for (struct console_session **pp = &sessions; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            return;
        }
}

static void session_free(struct console_session *s)
{
    http_upgraded_close(s->node);
    http_upgraded_close(s->tenant);
    free(s->id);
    free(s->vm_id);
    free(s->node_id);
    free(s->log);
    free(s);
}

/* Take stale sessions out of the table into *gone (a list to end). */
static void reap_stale_locked(struct console_session **gone)
{
    int64_t now = mono_ms();
    for (struct console_session **pp = &sessions; *pp;) {
        struct console_session *s = *pp;
        if (!s->splicing && now - s->opened_ms > SESSION_STALE_MS) {
            *pp = s->next;
            s->stop = true;
            s->next = *gone;
            *gone = s;
            continue;
        }
        pp = &s->next;
    }
}

static void session_end(struct app *a, struct console_session *s);

static void end_all(struct app *a, struct console_session *gone)
{
    while (gone) {
        struct console_session *s = gone;
        gone = s->next;
        log_info("console session %s of VM %s left unattended: ended", s->id,
                 s->vm_id);
        session_end(a, s);
    }
}

/* A new session at the head of the table (lock held). */
static struct console_session *add_locked(const char *vm_id,
                                          const char *node_id)
{
    struct console_session *s = xcalloc(1, sizeof(*s));
    s->id = random_hex(16);
    s->vm_id = xstrdup(vm_id);
    s->node_id = xstrdup(node_id);
    s->opened_ms = mono_ms();
    s->next = sessions;
    sessions = s;
    return s;
}

int console_open(struct app *a, const char *vm_id, const char *node_id,
                 bool force, char **ret_id)
{
    struct console_session *gone = NULL, *stale = NULL;
    pthread_mutex_lock(&lock);
    reap_stale_locked(&stale);
    for (struct console_session *s = sessions; s; s = s->next) {
        if (!streq(s->vm_id, vm_id) || s->stop || s->log_bytes)
            continue;
        if (!force) {
            pthread_mutex_unlock(&lock);
            return -EBUSY;
        }
        s->stop = true;
        if (!s->splicing) { /* still waiting for the node: end it here */
            unlink_locked(s);
            gone = s;
        }
        break;
    }
    *ret_id = xstrdup(add_locked(vm_id, node_id)->id);
    pthread_mutex_unlock(&lock);
    end_all(a, stale);
    if (gone) {
        _cleanup_free_ char *tag = xasprintf("console:%s", gone->id);
        http_server_wake(a->http, tag);
        session_free(gone);
    }
    return 0;
}

int console_open_log(struct app *a, const char *vm_id, const char *node_id,
                     uint32_t bytes, char **ret_id)
{
    if (bytes == 0 || bytes > CONSOLE_LOG_MAX)
        return -EINVAL;
    struct console_session *stale = NULL;
    pthread_mutex_lock(&lock);
    reap_stale_locked(&stale);
    size_t n = 0;
    for (struct console_session *s = sessions; s; s = s->next)
        n += s->log_bytes && streq(s->vm_id, vm_id);
    int r = -EBUSY;
    if (n < CONSOLE_LOG_READERS_MAX) {
        struct console_session *s = add_locked(vm_id, node_id);
        s->log_bytes = bytes;
        *ret_id = xstrdup(s->id);
        r = 0;
    }
    pthread_mutex_unlock(&lock);
    end_all(a, stale);
    return r;
}

int console_log_put(struct app *a, const char *id, const char *node_id,
                    const char *data, size_t len)
{
    pthread_mutex_lock(&lock);
    struct console_session *s = find_locked(id);
    int r = !s || s->stop || !s->log_bytes || !streq(s->node_id, node_id)
                ? -ENOENT
            : s->log ? -EALREADY
                     : 0;
    if (r == 0) {
        /* The node is a provider: what it sends is cleaned as its status
         * posts' tails are, and never more than was asked for. */
        s->log = console_sanitize(data, len, SIZE_MAX, s->log_bytes);
        s->log_len = strlen(s->log);
    }
    pthread_mutex_unlock(&lock);
    if (r == 0) {
        _cleanup_free_ char *tag = xasprintf("console:%s", id);
        http_server_wake(a->http, tag);
    }
    return r;
}

int console_log_take(struct app *a, const char *id, char **ret,
                     size_t *ret_len)
{
    pthread_mutex_lock(&lock);
    struct console_session *s = find_locked(id);
    int r = !s || s->stop ? -ENOENT : s->log != NULL;
    if (r == 1) {
        *ret = s->log;
        *ret_len = s->log_len;
        s->log = NULL;
        s->stop = true;
    }
    pthread_mutex_unlock(&lock);
    if (r == 1)
        session_end(a, s);
    return r;
}

int console_join_check(const char *id, const char *node_id)
{
    pthread_mutex_lock(&lock);
    struct console_session *s = find_locked(id);
    int r = !s || s->stop || s->log_bytes || !streq(s->node_id, node_id)
                ? -ENOENT
            : s->node                                    ? -EALREADY
                                                         : 0;
    pthread_mutex_unlock(&lock);
    return r;
}

void console_node_joined(struct app *a, const char *id,
                         struct http_upgraded *u)
{
    pthread_mutex_lock(&lock);
    struct console_session *s = find_locked(id);
    if (s && !s->stop && !s->node) {
        s->node = u;
        u = NULL;
    }
    pthread_mutex_unlock(&lock);
    http_upgraded_close(u); /* the session ended meanwhile */
    _cleanup_free_ char *tag = xasprintf("console:%s", id);
    http_server_wake(a->http, tag);
}

int console_ready(const char *id)
{
    pthread_mutex_lock(&lock);
    struct console_session *s = find_locked(id);
    int r = !s || s->stop ? -ENOENT : s->node != NULL;
    pthread_mutex_unlock(&lock);
    return r;
}

/* Take session `id` out of the table and tell its node (the desired
 * document no longer lists it). */
static void session_end(struct app *a, struct console_session *s)
{
    pthread_mutex_lock(&lock);
    unlink_locked(s);
    pthread_mutex_unlock(&lock);
    app_node_changed(a, s->node_id);
    session_free(s);
}

void console_abandon(struct app *a, const char *id)
{
    pthread_mutex_lock(&lock);
    struct console_session *s = find_locked(id);
    if (s && s->splicing)
        s = NULL;
    if (s)
        s->stop = true;
    pthread_mutex_unlock(&lock);
    if (s)
        session_end(a, s);
}

/* One direction of the splice: bytes read from `from`, not yet written
 * to `to`. */
struct pipe_dir {
    int from, to;
    char buf[CONSOLE_BUFFER];
    size_t len, off;
    bool eof;
};

/* Move what can move without blocking; -1 when the connection ended. */
static int dir_step(struct pipe_dir *d, short rev_from, short rev_to,
                    int64_t *last)
{
    if (d->len == 0 && (rev_from & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = read(d->from, d->buf, sizeof(d->buf));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return -1;
        if (n > 0) {
            d->len = (size_t)n;
            d->off = 0;
            *last = mono_ms();
        }
    }
    if (d->len > d->off && (rev_to & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t n = send(d->to, d->buf + d->off, d->len - d->off,
                         MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        if (n > 0)
            d->off += (size_t)n;
        if (d->off == d->len)
            d->len = d->off = 0;
    }
    return 0;
}

struct splice_job {
    struct app *a;
    struct console_session *s;
};

/* Write early bytes (read by the server before the switch) in full. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        struct pollfd pf = { fd, POLLOUT, 0 };
        if (poll(&pf, 1, 10000) <= 0)
            return -EIO;
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        if (w > 0)
            p += w, n -= (size_t)w;
    }
    return 0;
}

static void *splice_main(void *arg)
{
    struct splice_job *job = arg;
    struct console_session *s = job->s;
    struct app *a = job->a;
    free(job);

    int tfd = http_upgraded_fd(s->tenant), nfd = http_upgraded_fd(s->node);
    fcntl(tfd, F_SETFL, fcntl(tfd, F_GETFL) | O_NONBLOCK);
    fcntl(nfd, F_SETFL, fcntl(nfd, F_GETFL) | O_NONBLOCK);
    size_t n;
    const char *early = http_upgraded_early(s->node, &n);
    bool ok = write_all(tfd, early, n) == 0;
    early = http_upgraded_early(s->tenant, &n);
    ok = ok && write_all(nfd, early, n) == 0;

    struct pipe_dir *up = xcalloc(1, sizeof(*up)),
                    *down = xcalloc(1, sizeof(*down));
    up->from = tfd, up->to = nfd;
    down->from = nfd, down->to = tfd;
    int64_t start = mono_ms(), last = start, hangup = 0;
    while (ok) {
        pthread_mutex_lock(&lock);
        bool stop = s->stop;
        pthread_mutex_unlock(&lock);
        int64_t now = mono_ms();
        if (stop || now - last > CONSOLE_IDLE_S * 1000LL ||
            now - start > CONSOLE_TOTAL_S * 1000LL)
            break;
        /* A side that hung up: pass on what is still in flight for a
         * moment, then end. */
        if (!hangup && (http_upgraded_peer_gone(s->tenant) ||
                        http_upgraded_peer_gone(s->node)))
            hangup = now + 300;
        if (hangup && now >= hangup)
            break;
        struct pollfd pf[2] = {
            { tfd, (short)((up->len ? 0 : POLLIN) | (down->len ? POLLOUT : 0)),
              0 },
            { nfd, (short)((down->len ? 0 : POLLIN) | (up->len ? POLLOUT : 0)),
              0 },
        };
        /* Short, so a takeover is seen soon. */
        if (poll(pf, 2, 200) < 0 && errno != EINTR)
            break;
        if (dir_step(up, pf[0].revents, pf[1].revents, &last) < 0 ||
            dir_step(down, pf[1].revents, pf[0].revents, &last) < 0)
            break;
    }
    free(up);
    free(down);
    log_info("console session %s of VM %s ended after %lld ms%s", s->id,
             s->vm_id, (long long)(mono_ms() - start),
             hangup ? " (a side hung up)" : "");
    session_end(a, s);
    return NULL;
}

void console_tenant_attached(struct app *a, const char *id,
                             struct http_upgraded *u)
{
    pthread_mutex_lock(&lock);
    struct console_session *s = find_locked(id);
    if (s && (s->stop || s->splicing || !s->node))
        s = NULL;
    if (s) {
        s->tenant = u;
        s->splicing = true;
    }
    pthread_mutex_unlock(&lock);
    if (!s) {
        http_upgraded_close(u);
        return;
    }
    struct splice_job *job = xcalloc(1, sizeof(*job));
    job->a = a;
    job->s = s;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, splice_main, job) != 0) {
        free(job);
        log_warn("console session %s: no thread to splice it", id);
        pthread_mutex_lock(&lock);
        s->stop = true;
        pthread_mutex_unlock(&lock);
        session_end(a, s);
    }
    pthread_attr_destroy(&attr);
}

void console_node_sessions(const char *node_id, struct am_desired *doc)
{
    pthread_mutex_lock(&lock);
    for (struct console_session *s = sessions; s; s = s->next) {
        /* An answered log session leaves the node nothing to do. */
        if (s->stop || s->log || !streq(s->node_id, node_id))
            continue;
        doc->consoles = xrealloc(doc->consoles,
                                 (doc->n_consoles + 1) * sizeof(*doc->consoles));
        doc->consoles[doc->n_consoles++] = (struct am_console){
            xstrdup(s->id), xstrdup(s->vm_id), s->log_bytes };
    }
    pthread_mutex_unlock(&lock);
}

size_t console_count(void)
{
    pthread_mutex_lock(&lock);
    size_t n = 0;
    for (struct console_session *s = sessions; s; s = s->next)
        n++;
    pthread_mutex_unlock(&lock);
    return n;
}
