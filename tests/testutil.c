/* Test helpers: temp dirs, processes, ports. */
#include "tests/testutil.h"
#include "common/fs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/stat.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

char *tu_tempdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = xasprintf("%s/fog-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        abort();
    }
    return tmpl;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

void tu_rmrf(const char *path)
{
    if (path && getenv("FOG_KEEP_TMP") == NULL)
        nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_bin(const char *name)
{
    const char *dir = getenv("FOG_BIN");
    return xasprintf("%s/%s", dir && *dir ? dir : "bin", name);
}

int tu_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        abort();
    close(fd);
    return ntohs(a.sin_port);
}

pid_t tu_spawn(char *const argv[], const char *logfile)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, logfile,
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int r = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return r ? -r : pid;
}

char *tu_run(char *const argv[], int *ret_status)
{
    int p[2];
    posix_spawn_file_actions_t fa;
    pid_t pid;
    if (pipe(p) < 0)
        abort();
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    int r = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (r) {
        close(p[0]);
        *ret_status = -1;
        return xstrdup("");
    }
    size_t cap = 4096, len = 0;
    char *out = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap)
            out = xrealloc(out, cap *= 2);
        ssize_t n = read(p[0], out + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    close(p[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    *ret_status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

int tu_kill(pid_t pid, int sig)
{
    int status = 0;
    if (pid <= 0)
        return -1;
    kill(pid, sig);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int tu_wait_port(int port, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port) };
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
        close(fd);
        if (r == 0)
            return 0;
        struct timespec ts = { 0, 20 * 1000000 };
        nanosleep(&ts, NULL);
    }
    return -ETIMEDOUT;
}

/* ---- controller fixture ---------------------------------------------- */

#include <curl/curl.h>

static void ctl_spawn(struct tu_ctl *c, const char *const *extra)
{
    char port[16];
    snprintf(port, sizeof(port), "127.0.0.1:%d", c->port);
    _cleanup_free_ char *bin = tu_bin("fog-controller");
    /* Balance limits are off unless a test turns them on (--grace N):
     * most tests are not about billing. */
    char *argv[40] = { bin, (char *)"serve", (char *)"--data-dir", c->dir,
                       (char *)"--listen", port, (char *)"--grace", (char *)"0" };
    int n = 8;
    for (const char *const *e = extra; e && *e && n < 38; e++)
        argv[n++] = (char *)*e;
    argv[n] = NULL;
    c->pid = tu_spawn(argv, c->log);
    if (c->pid < 0 || tu_wait_port(c->port, 10000) < 0) {
        fprintf(stderr, "controller did not start; log %s\n", c->log);
        abort();
    }
}

void tu_ctl_start(struct tu_ctl *c, const char *const *extra_args)
{
    memset(c, 0, sizeof(*c));
    c->dir = tu_tempdir("ctl");
    c->ca = xasprintf("%s/ca.pem", c->dir);
    c->log = xasprintf("%s/controller.log", c->dir);
    _cleanup_free_ char *bin = tu_bin("fog-controller");
    char *argv[] = { bin, (char *)"init", (char *)"--data-dir", c->dir, NULL };
    int st;
    _cleanup_free_ char *out = tu_run(argv, &st);
    char *k = strstr(out, "admin key: ");
    if (st != 0 || !k) {
        fprintf(stderr, "fog-controller init failed (%d): %s\n", st, out);
        abort();
    }
    k += strlen("admin key: ");
    c->admin_key = xstrndup(k, strcspn(k, "\n"));
    c->port = tu_free_port();
    c->url = xasprintf("https://127.0.0.1:%d", c->port);
    c->extra = extra_args;
    ctl_spawn(c, extra_args);
}

void tu_ctl_restart(struct tu_ctl *c) { ctl_spawn(c, c->extra); }

void tu_ctl_stop(struct tu_ctl *c, int sig)
{
    int st = tu_kill(c->pid, sig ? sig : SIGTERM);
    c->pid = 0;
    /* A clean stop exits 0; under the sanitizers a leak or error found at
     * exit makes it non-zero, and that fails the test here. */
    if ((sig == 0 || sig == SIGTERM) && st != 0) {
        fprintf(stderr, "fog-controller exited %d after SIGTERM; log %s\n",
                st, c->log);
        _cleanup_free_ char *text = NULL;
        size_t len;
        if (file_read(c->log, 1 << 20, &text, &len) == 0)
            fputs(len > 8192 ? text + len - 8192 : text, stderr);
        abort();
    }
}

void tu_ctl_destroy(struct tu_ctl *c)
{
    if (c->pid > 0)
        tu_ctl_stop(c, SIGTERM);
    tu_rmrf(c->dir);
    free(c->dir);
    free(c->url);
    free(c->ca);
    free(c->admin_key);
    free(c->log);
    memset(c, 0, sizeof(*c));
}

/* ---- raw HTTPS --------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct tu_resp *r = ud;
    size_t len = size * n;
    r->body = xrealloc(r->body, r->len + len + 1);
    memcpy(r->body + r->len, p, len);
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}

long tu_http(const char *method, const char *url, const char *key,
             const char *ca, const char *body, size_t body_len,
             const char *content_type, const char *extra_header,
             struct tu_resp *ret)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    struct tu_resp r = { 0 };
    char *auth = NULL, *ct = NULL;

    r.body = xstrdup("");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    if (key) {
        auth = xasprintf("Authorization: Bearer %s", key);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (body) {
        ct = xasprintf("Content-Type: %s",
                       content_type ? content_type : "application/json");
        hdrs = curl_slist_append(hdrs, ct);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    if (extra_header)
        hdrs = curl_slist_append(hdrs, extra_header);
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
        char *t = NULL;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
        curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &t);
        r.content_type = xstrdup(t ? t : "");
    } else {
        r.status = -1;
        r.content_type = xstrdup("");
        fprintf(stderr, "tu_http %s %s: %s\n", method, url,
                curl_easy_strerror(rc));
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    free(auth);
    free(ct);
    long status = r.status;
    if (ret)
        *ret = r;
    else
        tu_resp_clear(&r);
    return status;
}

void tu_resp_clear(struct tu_resp *r)
{
    free(r->body);
    free(r->content_type);
    memset(r, 0, sizeof(*r));
}

/* ---- a throwaway PostgreSQL cluster ---- */
#define PG_BIN "/usr/lib/postgresql/15/bin"

/* Run argv as the postgres user (the server refuses root). */
static int as_postgres(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
            _exit(126);
        if (log && !freopen(log, "a", stdout))
            _exit(126);
        if (log && !freopen(log, "a", stderr))
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

bool tu_pg_start(struct tu_pg *b)
{
    struct stat st;
    if (stat(PG_BIN "/postgres", &st) < 0 || !getpwnam("postgres") ||
        getuid() != 0)
        return false;
    b->dir = tu_tempdir("store-pg");
    struct passwd *pw = getpwnam("postgres");
    if (chown(b->dir, pw->pw_uid, pw->pw_gid) < 0)
        return false;
    _cleanup_free_ char *data = xasprintf("%s/data", b->dir);
    _cleanup_free_ char *log = xasprintf("%s/pg.log", b->dir);
    char *init[] = { PG_BIN "/initdb", "-D", data, "-A", "trust", "-U", "fog",
                     "--no-sync", NULL };
    int status;
    pid_t p = as_postgres(init, log);
    waitpid(p, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return false;
    char *run[] = { PG_BIN "/postgres", "-D", data, "-k", b->dir, "-c",
                    "listen_addresses=", "-c", "fsync=off", NULL };
    b->pid = as_postgres(run, log);
    b->uri = xasprintf("postgresql:///postgres?host=%s&user=fog", b->dir);
    _cleanup_free_ char *sock = xasprintf("%s/.s.PGSQL.5432", b->dir);
    for (int i = 0; i < 100; i++) {
        if (stat(sock, &st) == 0) {
            /* The socket appears before the server accepts logins. */
            char *ready[] = { PG_BIN "/pg_isready", "-q", "-h", b->dir, NULL };
            int ready_st;
            free(tu_run(ready, &ready_st));
            if (ready_st == 0)
                return true;
        }
        nanosleep(&(struct timespec){ 0, 100 * 1000 * 1000 }, NULL);
    }
    return false;
}

void tu_pg_stop(struct tu_pg *b)
{
    if (b->pid > 0)
        tu_kill(b->pid, SIGINT);
    b->pid = 0;
    if (b->dir)
        tu_rmrf(b->dir);
    free(b->dir);
    free(b->uri);
    b->dir = b->uri = NULL;
}
