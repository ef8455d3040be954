/* Helpers shared by test binaries: temp dirs, spawning our daemons on
 * ephemeral ports, and waiting for them. Not linked into the product. */
#pragma once

#include "common/util.h"

#include <sys/types.h>

/* mkdtemp under $TMPDIR (or /tmp); caller frees; aborts on failure. */
char *tu_tempdir(const char *tag);
/* rm -rf a directory tree made by a test. */
void tu_rmrf(const char *path);
/* Path of a built binary: $O/../bin/NAME resolved from the repo root. */
char *tu_bin(const char *name);
/* A free TCP port on 127.0.0.1 (bound then released). */
int tu_free_port(void);
/* Spawn argv with stdout+stderr to logfile; returns pid or -errno. */
pid_t tu_spawn(char *const argv[], const char *logfile);
/* Run argv to completion capturing stdout (caller frees). Exit status in
 * *ret_status (-1 if killed). stdin from /dev/null. */
char *tu_run(char *const argv[], int *ret_status);
/* Send sig and reap: the exit status, or -1 when killed by a signal. */
int tu_kill(pid_t pid, int sig);
/* Wait until a TCP connect to 127.0.0.1:port succeeds. 0 or -ETIMEDOUT. */
int tu_wait_port(int port, int timeout_ms);

/* ---- a controller under test ---- */
struct tu_ctl {
    char *dir;      /* data dir (temp) */
    char *url;      /* https://127.0.0.1:PORT */
    char *ca;       /* dir/ca.pem */
    char *admin_key;
    char *log;      /* log file path */
    int port;
    pid_t pid;
    const char *const *extra; /* serve's extra arguments (caller's array) */
};
/* fog-controller init + serve on a free port; waits until it answers.
 * extra_args (NULL-terminated, may be NULL; must outlive the controller,
 * restarts reuse them) are added to `serve`, after "--grace 0" (balance
 * limits off) so a test can turn them on.
 * Aborts the test binary on failure. */
void tu_ctl_start(struct tu_ctl *c, const char *const *extra_args);
/* Restart `serve` on the same data dir and port (after tu_ctl_stop). */
void tu_ctl_restart(struct tu_ctl *c);
/* SIGTERM (or sig) and reap; the data dir stays. */
void tu_ctl_stop(struct tu_ctl *c, int sig);
/* Stop if running and remove everything. */
void tu_ctl_destroy(struct tu_ctl *c);

/* ---- raw HTTPS for tests (libcurl): exact bytes, any headers ---- */
struct tu_resp {
    long status;
    char *body;          /* NUL-terminated */
    size_t len;
    char *content_type;
};
/* method + url + bearer key (or NULL) + CA file; body of body_len bytes
 * (body NULL = none) sent as content_type (NULL = application/json);
 * extra_header e.g. "Idempotency-Key: x" or NULL. Returns status or -1. */
long tu_http(const char *method, const char *url, const char *key,
             const char *ca, const char *body, size_t body_len,
             const char *content_type, const char *extra_header,
             struct tu_resp *ret);
void tu_resp_clear(struct tu_resp *r);

/* ---- a throwaway PostgreSQL cluster (server binaries of Debian 12) ---- */
struct tu_pg {
    char *dir;  /* cluster and Unix socket directory */
    char *uri;  /* postgresql:///postgres?host=DIR&user=fog */
    pid_t pid;
};
/* initdb + postgres on a Unix socket only, as the postgres user; false
 * (nothing left running) when the server or root is not available. */
bool tu_pg_start(struct tu_pg *pg);
void tu_pg_stop(struct tu_pg *pg);
