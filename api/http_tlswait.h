/* TLS handshakes of the HTTP server core (api/http_server.c) that wait for
 * their client off the event loop, internal to it.
 *
 * libmicrohttpd (0.9.75, and its code up to now) leaves a connection whose
 * handshake is waiting for the client's next flight marked ready to read
 * in its epoll loop: the connection thread calls the handshake again at
 * once, over and over, until those bytes come. That is a round trip of a
 * core per new connection, and a core for as long as a client that sent
 * its first flight and then nothing keeps the connection open.
 *
 * Here GnuTLS reads the socket of every TLS connection through this
 * module's pull function. When a read inside a handshake finds nothing,
 * the connection is suspended and its socket watched by a thread of this
 * module; it resumes when the client sends (or hangs up). A
 * handshake not over within the timeout is shut down and resumed, and
 * libmicrohttpd closes it. Once the handshake is over, reads that find
 * nothing go back to libmicrohttpd's own waiting, which is right. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct MHD_Connection;
struct http_tlswait_conn;

struct http_tlswait {
    pthread_mutex_t lock;
    int epfd;                        /* sockets of suspended handshakes */
    int wake;                        /* eventfd: the thread stops */
    pthread_t thread;
    struct http_tlswait_conn *head;  /* suspended, doubly linked */
    size_t n;
    int64_t timeout_ms;
    uint64_t suspends;               /* how often one was suspended */
    bool stopping;
    bool started;
};

/* Start the watching thread; handshakes end within timeout_ms of their
 * connection's start. 0 or -errno. */
int http_tlswait__start(struct http_tlswait *w, int64_t timeout_ms);
/* For MHD_OPTION_NOTIFY_CONNECTION of a daemon started after
 * http_tlswait__start() succeeded (code: an
 * enum MHD_ConnectionNotificationCode): a TLS connection starts (its
 * reads go through this module from now on) or is closed (its state is
 * freed). */
void http_tlswait__notify(struct http_tlswait *w, struct MHD_Connection *conn,
                          void **socket_context, int code);
/* Before MHD_stop_daemon: every suspended handshake is shut down and
 * resumed (libmicrohttpd then closes it), none is suspended again, and the
 * thread has returned. */
void http_tlswait__stop(struct http_tlswait *w);
/* After MHD_stop_daemon (every connection closed): free what is left. */
void http_tlswait__free(struct http_tlswait *w);
/* Handshakes suspended now, and how often one was since the start. */
void http_tlswait__counts(struct http_tlswait *w, size_t *now,
                          uint64_t *total);
