/* Test helpers: temp dirs, processes, ports, the controller and its
 * clients, image fixtures and network namespaces. */
#include "tests/testutil.h"

#include "api/agentmsg.h"
#include "api/agentproto.h"
#include "api/speclog.h"
#include "common/jsonutil.h"
#include "common/buf.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/timeutil.h"
#include "common/jsonutil.h"
#include "netfabric/link.h"
#include "netfabric/nft.h"
#include "netfabric/state.h"
#include "netfabric/wg_uapi.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
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

void tu_rmrf_freep(char **p)
{
    tu_rmrf(*p);
    free(*p);
    *p = NULL;
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
    return tu_run_env(argv, environ, ret_status);
}

bool tu_run_with_stderr;

char *tu_run_env(char *const argv[], char *const envp[], int *ret_status)
{
    int p[2];
    posix_spawn_file_actions_t fa;
    pid_t pid;
    if (pipe(p) < 0)
        abort();
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    if (tu_run_with_stderr)
        posix_spawn_file_actions_adddup2(&fa, p[1], 2);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    int r = posix_spawn(&pid, argv[0], &fa, NULL, argv, envp);
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

int tu_promtool(const char *promtool, const char *dir, const char *check,
                const char *text)
{
    _cleanup_free_ char *path = xasprintf("%s/promtool-input.txt", dir);
    if (text && file_write_atomic(path, text, strlen(text), 0600) < 0)
        abort();
    _cleanup_free_ char *cmd = xasprintf("'%s' %s%s%s%s 2>&1", promtool,
                                         check, text ? " < '" : "",
                                         text ? path : "", text ? "'" : "");
    char *argv[] = { "/bin/sh", "-c", cmd, NULL };
    int st;
    _cleanup_free_ char *out = tu_run(argv, &st);
    if (st != 0)
        fprintf(stderr, "promtool %s: %s\n", check, out ? out : "");
    return st;
}

double tu_metric(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p) {
        if (strncmp(p, prefix, n) != 0)
            continue;
        const char *eol = strchr(p, '\n');
        const char *sp = p + n;
        for (const char *q = p + n; *q && q != eol; q++)
            if (*q == ' ')
                sp = q;
        return strtod(sp, NULL);
    }
    return NAN;
}

char *tu_metrics_text(const struct tu_ctl *ctl)
{
    _cleanup_free_ char *url = xasprintf("%s/metrics", ctl->url);
    struct tu_resp r;
    if (tu_http("GET", url, ctl->admin_key, ctl->ca, NULL, 0, NULL, NULL,
                &r) != 200) {
        fprintf(stderr, "GET %s did not answer 200\n", url);
        abort();
    }
    char *body = r.body;
    r.body = NULL;
    tu_resp_clear(&r);
    return body;
}

char *tu_which(const char *prog)
{
    const char *path = getenv("PATH");
    _cleanup_free_ char *dirs = xasprintf(
        "%s:/usr/sbin:/sbin", path && *path ? path : "/usr/bin:/bin");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d;
         d = strtok_r(NULL, ":", &save)) {
        char *p = xasprintf("%s/%s", d, prog);
        if (access(p, X_OK) == 0)
            return p;
        free(p);
    }
    return NULL;
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

/* ---- a scratch directory for a cmocka group ---------------------------- */

char *tu_dir;

void tu_put_file(const char *dir, const char *rel, const char *text)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, rel);
    _cleanup_free_ char *d = xstrdup(p);
    *strrchr(d, '/') = '\0';
    if (mkdir_p(d, 0755) < 0 ||
        file_write_atomic(p, text, strlen(text), 0644) < 0) {
        fprintf(stderr, "cannot write '%s'\n", p);
        abort();
    }
}

void tu_fake_host(const char *root, int cpus, int64_t mem_mib)
{
    struct buf b = BUF_INIT;
    for (int i = 0; i < cpus; i++)
        buf_printf(&b, "processor\t: %d\nmodel name\t: Fake CPU\n\n", i);
    tu_put_file(root, "proc/cpuinfo", buf_str(&b));
    buf_free(&b);
    _cleanup_free_ char *mem = xasprintf("MemTotal:       %lld kB\n",
                                         (long long)mem_mib * 1024);
    tu_put_file(root, "proc/meminfo", mem);
    _cleanup_free_ char *online = xasprintf("0-%d\n", cpus - 1);
    tu_put_file(root, "sys/devices/system/cpu/online", online);
    tu_fake_proc_net(root);
}

void tu_fake_proc_net(const char *root)
{
    static const struct { const char *name, *text; } t[] = {
        { "tcp", "  sl  local_address rem_address   st tx_queue rx_queue tr "
                 "tm->when retrnsmt   uid  timeout inode\n" },
        { "udp", "   sl  local_address rem_address   st tx_queue rx_queue tr "
                 "tm->when retrnsmt   uid  timeout inode ref pointer drops\n" },
        { "route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\t"
                   "Metric\tMask\t\tMTU\tWindow\tIRTT\n" },
    };
    _cleanup_free_ char *dir = xasprintf("%s/proc/net", root);
    if (mkdir_p(dir, 0755) < 0) {
        fprintf(stderr, "cannot create %s\n", dir);
        abort();
    }
    for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, t[i].name);
        if (file_write_atomic(p, t[i].text, strlen(t[i].text), 0644) < 0) {
            fprintf(stderr, "cannot write %s\n", p);
            abort();
        }
    }
}

static void tu_put(const char *dir, const char *name, const char *fmt, ...)
    _printf_(3, 4);
static void tu_put(const char *dir, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        abort();
    va_end(ap);
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
    if (mkdir_p(dir, 0755) < 0 ||
        file_write_atomic(p, text, strlen(text), 0644) < 0) {
        fprintf(stderr, "cannot write %s\n", p);
        abort();
    }
}

static void tu_link(const char *target, const char *dir, const char *name)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
    if (mkdir_p(dir, 0755) < 0 || (unlink(p), symlink(target, p)) < 0) {
        fprintf(stderr, "cannot link %s\n", p);
        abort();
    }
}

void tu_fake_pci(const char *root, const struct tu_pci_fn *f)
{
    _cleanup_free_ char *dev = xasprintf("%s/sys/bus/pci/devices/%s", root,
                                         f->addr);
    tu_put(dev, "class", "0x%06x\n", f->cls);
    tu_put(dev, "vendor", "0x%04x\n", f->vendor);
    tu_put(dev, "device", "0x%04x\n", f->device);
    tu_put(dev, "subsystem_vendor", "0x%04x\n", f->vendor);
    tu_put(dev, "subsystem_device", "0x%04x\n", 0x1234u);
    tu_put(dev, "numa_node", "%d\n", f->numa);
    tu_put(dev, "local_cpulist", "%s\n", f->cpulist ? f->cpulist : "");
    if (f->driver) {
        _cleanup_free_ char *drv = xasprintf("%s/sys/bus/pci/drivers/%s",
                                             root, f->driver);
        _cleanup_free_ char *t = xasprintf("../../drivers/%s",
                                           f->driver);
        if (mkdir_p(drv, 0755) < 0)
            abort();
        tu_link(t, dev, "driver");
    }
    if (f->group >= 0) {
        _cleanup_free_ char *g = xasprintf("%s/sys/kernel/iommu_groups/%d/"
                                           "devices", root, f->group);
        _cleanup_free_ char *t = xasprintf("../../../../kernel/iommu_groups/%d",
                                           f->group);
        _cleanup_free_ char *back = xasprintf("../../../../bus/pci/devices/%s",
                                              f->addr);
        tu_link(t, dev, "iommu_group");
        tu_link(back, g, f->addr);
    }
}

void tu_fake_module(const char *root, const char *name, int refcnt)
{
    _cleanup_free_ char *dir = xasprintf("%s/sys/module/%s", root, name);
    tu_put(dir, "refcnt", "%d\n", refcnt);
}

int tu_dir_setup(void **state)
{
    const char *name = program_invocation_short_name;
    tu_dir = tu_tempdir(startswith(name, "test_") ? name + 5 : name);
    return 0;
}

int tu_dir_teardown(void **state)
{
    tu_rmrf(tu_dir);
    free(tu_dir);
    tu_dir = NULL;
    return 0;
}

/* ---- image fixtures ------------------------------------------------------ */

void tu_put_be32(uint8_t *b, size_t off, uint32_t v)
{
    v = htobe32(v);
    memcpy(b + off, &v, 4);
}

void tu_put_be64(uint8_t *b, size_t off, uint64_t v)
{
    v = htobe64(v);
    memcpy(b + off, &v, 8);
}

uint8_t *tu_qcow2(uint64_t vsize, size_t *ret_len)
{
    const uint64_t cs = TU_QCOW2_CLUSTER, per_l1 = cs / 8 * cs;
    size_t len = 6 * TU_QCOW2_CLUSTER;
    uint8_t *h = xcalloc(1, len);
    memcpy(h, "QFI\xfb", 4);
    tu_put_be32(h, 4, 3);           /* version */
    tu_put_be32(h, 20, 16);         /* cluster_bits */
    tu_put_be64(h, 24, vsize);      /* size */
    tu_put_be32(h, 36, (uint32_t)((vsize + per_l1 - 1) / per_l1)); /* l1_size */
    tu_put_be64(h, 40, 3 * cs);     /* l1_table_offset */
    tu_put_be64(h, 48, 1 * cs);     /* refcount_table_offset */
    tu_put_be32(h, 56, 1);          /* refcount_table_clusters */
    tu_put_be32(h, 96, 4);          /* refcount_order: 16 bits */
    tu_put_be32(h, 100, 104);       /* header_length */
    tu_put_be64(h + cs, 0, 2 * cs); /* reftable[0] -> refcount block */
    for (int i = 0; i < 6; i++)     /* refcount of clusters 0..5 = 1 */
        h[2 * cs + 2 * i + 1] = 1;
    tu_put_be64(h + 3 * cs, 0, (1ULL << 63) | 4 * cs); /* L1[0] -> L2 */
    tu_put_be64(h + 4 * cs, 0, (1ULL << 63) | 5 * cs); /* L2[0] -> data */
    for (size_t i = 0; i < cs; i++)
        h[5 * cs + i] = (uint8_t)(i * 7);
    *ret_len = len;
    return h;
}

/* ---- controller fixture ---------------------------------------------- */

#include <curl/curl.h>

static void ctl_spawn(struct tu_ctl *c, const char *const *extra)
{
    char port[16];
    snprintf(port, sizeof(port), "%s:%d", c->any_addr ? "0.0.0.0" :
                                                         "127.0.0.1", c->port);
    _cleanup_free_ char *bin = tu_bin("fog-controller");
    /* Balance and rate limits, and benchmark challenges, are off unless a
     * test turns them on (--grace N, --rate-ip N, --bench-every N...):
     * most tests are not about them. */
    char *argv[48] = { bin, (char *)"serve", (char *)"--data-dir", c->dir,
                       (char *)"--listen", port, (char *)"--grace", (char *)"0",
                       (char *)"--rate-ip", (char *)"0", (char *)"--rate-key",
                       (char *)"0", (char *)"--rate-agent-ip", (char *)"0",
                       (char *)"--rate-node", (char *)"0",
                       (char *)"--per-ip-connections", (char *)"0",
                       (char *)"--bench-every", (char *)"0" };
    int n = 20;
    if (c->database) {
        argv[n++] = (char *)"--database";
        argv[n++] = c->database;
    }
    for (const char *const *e = extra; e && *e && n < 46; e++)
        argv[n++] = (char *)*e;
    argv[n] = NULL;
    c->pid = tu_spawn(argv, c->log);
    if (c->pid < 0 || tu_wait_port(c->port, 10000) < 0) {
        fprintf(stderr, "controller did not start; log %s\n", c->log);
        abort();
    }
}

/* ---- the suite on PostgreSQL ---------------------------------------- */

static struct tu_pg suite_pg;
static pid_t suite_pg_owner;
static int suite_pg_n;
static char *suite_database(void);

bool tu_on_pg(void)
{
    const char *v = getenv("FOG_TEST_DATABASE");
    return v && streq(v, "postgresql");
}

char *tu_store_address(const struct tu_ctl *ctl)
{
    return ctl->database ? xstrdup(ctl->database)
                         : xasprintf("%s/fog.db", ctl->dir);
}

char *tu_new_store_address(const char *dir)
{
    char *db = suite_database();
    return db ? db : xasprintf("%s/fog.db", dir);
}

void tu_sqlite_only(const char *why)
{
    if (!tu_on_pg())
        return;
    printf("sqlite only: %s\n", why);
    exit(77);
}

/* Only the process that started the cluster stops it (forked children
 * run atexit handlers too). */
static void suite_pg_stop(void)
{
    if (suite_pg_owner == getpid())
        tu_pg_stop(&suite_pg);
}

/* On PostgreSQL: an empty database for one more controller, its address
 * (caller frees); else NULL. */
static char *suite_database(void)
{
    if (!tu_on_pg())
        return NULL;
    if (!suite_pg.uri) {
        if (!tu_pg_start(&suite_pg)) {
            fprintf(stderr, "FOG_TEST_DATABASE=postgresql: cannot start a "
                            "PostgreSQL 15 cluster (root and the server "
                            "package are needed)\n");
            abort();
        }
        suite_pg_owner = getpid();
        atexit(suite_pg_stop);
        fprintf(stderr, "controllers on PostgreSQL: %s\n", suite_pg.dir);
    }
    char name[32];
    snprintf(name, sizeof(name), "ctl%d", ++suite_pg_n);
    PGconn *pc = PQconnectdb(suite_pg.uri);
    _cleanup_free_ char *q = xasprintf("CREATE DATABASE %s", name);
    PGresult *res = PQstatus(pc) == CONNECTION_OK ? PQexec(pc, q) : NULL;
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "%s: %s\n", q, PQerrorMessage(pc));
        abort();
    }
    PQclear(res);
    PQfinish(pc);
    return xasprintf("postgresql:///%s?host=%s&user=fog", name, suite_pg.dir);
}

/* One statement on a controller's PostgreSQL database: its result, which
 * the caller clears; aborts when it fails. */
static PGresult *pg_sql(const struct tu_ctl *ctl, const char *q)
{
    PGconn *pc = PQconnectdb(ctl->database);
    PGresult *res = PQstatus(pc) == CONNECTION_OK ? PQexec(pc, q) : NULL;
    if (!res || (PQresultStatus(res) != PGRES_COMMAND_OK &&
                 PQresultStatus(res) != PGRES_TUPLES_OK)) {
        fprintf(stderr, "%s: %s\n", q, PQerrorMessage(pc));
        abort();
    }
    PQfinish(pc);
    return res;
}

/* init (with --san addr when given, and init_args) and serve. */
static void ctl_start(struct tu_ctl *c, const char *addr,
                      const char *const *init_args,
                      const char *const *extra_args)
{
    memset(c, 0, sizeof(*c));
    c->any_addr = addr != NULL;
    c->dir = tu_tempdir("ctl");
    c->ca = xasprintf("%s/ca.pem", c->dir);
    c->log = xasprintf("%s/controller.log", c->dir);
    _cleanup_free_ char *bin = tu_bin("fog-controller");
    char *argv[20] = { bin, (char *)"init", (char *)"--data-dir", c->dir };
    int na = 4;
    if ((c->database = suite_database())) {
        argv[na++] = (char *)"--database";
        argv[na++] = c->database;
    }
    if (addr) {
        argv[na++] = (char *)"--san";
        argv[na++] = (char *)addr;
    }
    for (const char *const *e = init_args; e && *e && na < 19; e++)
        argv[na++] = (char *)*e;
    argv[na] = NULL;
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

void tu_ctl_start_init(struct tu_ctl *c, const char *const *init_args,
                       const char *const *extra_args)
{
    ctl_start(c, NULL, init_args, extra_args);
}

void tu_ctl_start(struct tu_ctl *c, const char *const *extra_args)
{
    ctl_start(c, NULL, NULL, extra_args);
}

void tu_ctl_start_on(struct tu_ctl *c, const char *addr,
                     const char *const *extra_args)
{
    ctl_start(c, addr, NULL, extra_args);
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
    if (getenv("FOG_TEST_KEEP"))    /* to read its log after a failure */
        fprintf(stderr, "kept %s\n", c->dir);
    else
        tu_rmrf(c->dir);
    free(c->dir);
    free(c->url);
    free(c->ca);
    free(c->admin_key);
    free(c->log);
    free(c->database);
    memset(c, 0, sizeof(*c));
}

/* ---- fogctl and the API ------------------------------------------------ */

static bool is_fog_var(const char *entry)
{
    static const char *const names[] = { "FOG_URL=", "FOG_CA=", "FOG_KEY=" };
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (startswith(entry, names[i]))
            return true;
    return false;
}

char *tu_fogctlv(const struct tu_ctl *ctl, const char *key, int *ret_status,
                 const char *first, va_list ap)
{
    _cleanup_free_ char *bin = tu_bin("fogctl");
    size_t nargv = 0, capv = 8;
    char **argv = xmalloc(capv * sizeof(*argv));
    argv[nargv++] = bin;
    for (const char *w = first; w; w = va_arg(ap, const char *)) {
        if (nargv + 2 > capv)
            argv = xrealloc(argv, (capv *= 2) * sizeof(*argv));
        argv[nargv++] = (char *)w;
    }
    argv[nargv] = NULL;

    size_t nenv = 0, n = 0;
    while (environ[nenv])
        nenv++;
    char **envp = xcalloc(nenv + 4, sizeof(*envp));
    for (size_t i = 0; i < nenv; i++)
        if (!is_fog_var(environ[i]))
            envp[n++] = environ[i];
    _cleanup_free_ char *url = ctl ? xasprintf("FOG_URL=%s", ctl->url) : NULL;
    _cleanup_free_ char *ca = ctl ? xasprintf("FOG_CA=%s", ctl->ca) : NULL;
    _cleanup_free_ char *k = key ? xasprintf("FOG_KEY=%s", key) : NULL;
    if (url)
        envp[n++] = url;
    if (ca)
        envp[n++] = ca;
    if (k)
        envp[n++] = k;
    envp[n] = NULL;

    char *out = tu_run_env(argv, envp, ret_status);
    free(argv);
    free(envp);
    return out;
}

char *tu_fogctl(const struct tu_ctl *ctl, const char *key, int *ret_status,
                const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    char *out = tu_fogctlv(ctl, key, ret_status, first, ap);
    va_end(ap);
    return out;
}

char *tu_field(const char *text, const char *label)
{
    size_t n = strlen(label);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, label, n) == 0 && p[n] == ':') {
            p += n + 1;
            while (*p == ' ')
                p++;
            return xstrndup(p, strcspn(p, "\n"));
        }
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return NULL;
}

json_t *tu_api(const struct tu_ctl *ctl, const char *key, const char *method,
               const char *path, const char *body, long *ret_status)
{
    _cleanup_free_ char *url = xasprintf("%s%s", ctl->url, path);
    /* A test posing as a node speaks today's contract, as the agent does
     * (the controller reads it on agent calls only). */
    char contract[64];
    snprintf(contract, sizeof(contract), "%s: %d", AGENT_CONTRACT_HEADER,
             AGENT_CONTRACT);
    struct tu_resp r;
    long st = tu_http(method, url, key, ctl->ca, body, body ? strlen(body) : 0,
                      NULL, contract, &r);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    tu_resp_clear(&r);
    if (ret_status)
        *ret_status = st;
    return j;
}

int tu_count_in_file(const char *path, const char *needle)
{
    _cleanup_free_ char *text = NULL;
    if (file_read(path, 64 << 20, &text, NULL) < 0)
        return 0;
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void *file_srv_main(void *arg)
{
    struct tu_file_srv *s = arg;
    while (!__atomic_load_n(&s->stop, __ATOMIC_SEQ_CST)) {
        struct pollfd p = { .fd = s->fd, .events = POLLIN };
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0)
            continue;
        char req[4096];
        ssize_t n = recv(fd, req, sizeof(req) - 1, 0);
        req[n > 0 ? n : 0] = '\0';
        const struct tu_file *f = NULL;
        for (size_t i = 0; i < s->n && !f; i++) {
            _cleanup_free_ char *line = xasprintf("GET %s ", s->files[i].path);
            if (startswith(req, line))
                f = &s->files[i];
        }
        _cleanup_free_ char *hdr = NULL;
        if (f) {
            __atomic_add_fetch(&s->hits, 1, __ATOMIC_SEQ_CST);
            if (s->delay_ms > 0)
                usleep((useconds_t)s->delay_ms * 1000);
            hdr = xasprintf("HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                            "Connection: close\r\n\r\n", f->len);
        } else {
            hdr = xstrdup("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                          "Connection: close\r\n\r\n");
        }
        send(fd, hdr, strlen(hdr), MSG_NOSIGNAL);
        if (f)
            send(fd, f->body, f->len, MSG_NOSIGNAL);
        shutdown(fd, SHUT_RDWR);
        close(fd);
    }
    return NULL;
}

void tu_file_srv_start(struct tu_file_srv *s, const char *addr)
{
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t al = sizeof(a);
    if (s->fd < 0 || inet_pton(AF_INET, addr, &a.sin_addr) != 1 ||
        bind(s->fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(s->fd, 16) < 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &al) < 0 ||
        pthread_create(&s->thr, NULL, file_srv_main, s) != 0) {
        fprintf(stderr, "cannot serve files on %s: %s\n", addr,
                strerror(errno));
        abort();
    }
    s->port = ntohs(a.sin_port);
}

void tu_file_srv_stop(struct tu_file_srv *s)
{
    __atomic_store_n(&s->stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(s->thr, NULL);
    close(s->fd);
}

int tu_file_srv_hits(struct tu_file_srv *s)
{
    return __atomic_load_n(&s->hits, __ATOMIC_SEQ_CST);
}

void tu_fault(const char *path, const char *step)
{
    if (!step) {
        unlink(path);
        return;
    }
    if (file_write_atomic(path, step, strlen(step), 0600) < 0) {
        fprintf(stderr, "cannot write %s\n", path);
        abort();
    }
}

long tu_backup_complete(const struct tu_ctl *ctl, const char *cred,
                        const char *id, const char *mode,
                        const char *full_reason)
{
    char data[64], sha[65];
    snprintf(data, sizeof(data), "sealed bytes of %s", id);
    sha256_hex(data, strlen(data), sha);
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/backups/%s?offset=0",
                                         ctl->url, id);
    struct tu_resp r = { 0 };
    long st = tu_http("PUT", url, cred, ctl->ca, data, strlen(data),
                      "application/octet-stream", NULL, &r);
    tu_resp_clear(&r);
    if (st != 200 && st != 409) /* 409: the hub holds them already */
        return st;
    _cleanup_free_ char *cp = xasprintf("/v1/agent/backups/%s/commit", id);
    json_auto_t *body = json_pack("{s:i, s:s}", "size", (int)strlen(data),
                                  "sha256", sha);
    if (mode)
        json_object_set_new(body, "mode", json_string(mode));
    if (full_reason)
        json_object_set_new(body, "full_reason", json_string(full_reason));
    _cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
    json_auto_t *ans = tu_api(ctl, cred, "POST", cp, text, &st);
    return st;
}

json_t *tu_api_want(const struct tu_ctl *ctl, const char *key,
                    const char *method, const char *path, const char *body,
                    long want)
{
    long st;
    json_t *j = tu_api(ctl, key, method, path, body, &st);
    if (st != want) {
        char *t = j ? json_dumps(j, 0) : NULL;
        fprintf(stderr, "%s %s: %ld, wanted %ld: %s\n", method, path, st, want,
                t ? t : "");
        free(t);
        abort();
    }
    return j;
}

char *tu_api_field(const struct tu_ctl *ctl, const char *key,
                   const char *method, const char *path, const char *body,
                   long want, const char *field)
{
    long st;
    json_t *j = tu_api(ctl, key, method, path, body, &st);
    if (st != want) {
        fprintf(stderr, "%s %s: status %ld, want %ld\n", method, path, st,
                want);
        abort();
    }
    char *v = field ? xstrdup(json_str(j, field) ? json_str(j, field) : "")
                    : NULL;
    json_decref(j);
    return v;
}

json_t *tu_desired_read(const json_t *doc)
{
    struct am_desired d;
    struct jerr je = { 0 };
    if (am_desired_decode(doc, &d, &je) < 0) {
        fprintf(stderr, "desired document refused: %s: %s\n", je.field,
                je.detail);
        abort();
    }
    json_t *read = am_desired_encode(&d);
    am_desired_clear(&d);
    return read;
}

json_t *tu_net_vm(int vxlan, const char *name, const char *mac,
                  const char *vtep)
{
    char id[40];
    snprintf(id, sizeof(id), AGENT_NET_VM_ID_FMT, (long long)vxlan, mac);
    json_t *o = json_pack("{s:s, s:i, s:s, s:s, s:s}", "id", id, "vxlan_id",
                          vxlan, "name", name, "address", "10.1.0.9", "mac",
                          mac);
    if (vtep)
        json_object_set_new(o, "vtep", json_string(vtep));
    return o;
}

json_t *tu_find(json_t *arr, const char *field, const char *value)
{
    size_t i;
    json_t *it;
    json_array_foreach(arr, i, it)
        if (streq(json_str(it, field), value))
            return it;
    return NULL;
}

json_t *tu_list(const struct tu_ctl *ctl, const char *key, const char *path)
{
    long code;
    json_t *j = tu_api(ctl, key, "GET", path, NULL, &code);
    json_t *items = json_is_array(j) ? j : json_object_get(j, "items");
    if (code != 200 || !json_is_array(items)) {
        fprintf(stderr, "GET %s answered %ld, not a list\n", path, code);
        abort();
    }
    json_incref(items);
    json_decref(j);
    return items;
}

static void *writer_loop(void *arg)
{
    struct tu_writer *w = arg;
    for (int i = 0; __atomic_load_n(&w->on, __ATOMIC_SEQ_CST); i++) {
        _cleanup_free_ char *body = xasprintf(
            "{\"name\":\"%s%d\",\"role\":\"tenant\"}", w->prefix, i);
        free(tu_api_field(w->ctl, w->ctl->admin_key, "POST", "/v1/accounts",
                          body, 201, NULL));
        __atomic_store_n(&w->written, i + 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

void tu_writer_start(struct tu_writer *w, const struct tu_ctl *ctl,
                     const char *prefix)
{
    *w = (struct tu_writer){ .ctl = ctl, .prefix = prefix, .on = 1 };
    pthread_t t;
    if (pthread_create(&t, NULL, writer_loop, w) != 0)
        abort();
    w->thread = (unsigned long)t;
}

int tu_writer_count(struct tu_writer *w)
{
    return __atomic_load_n(&w->written, __ATOMIC_SEQ_CST);
}

void tu_writer_wait(struct tu_writer *w, int n)
{
    while (tu_writer_count(w) < n)
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
}

int tu_writer_stop(struct tu_writer *w)
{
    __atomic_store_n(&w->on, 0, __ATOMIC_SEQ_CST);
    pthread_join((pthread_t)w->thread, NULL);
    return tu_writer_count(w);
}

static void *poll_run(void *arg)
{
    struct tu_poll *p = arg;
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/desired?since=%lld&"
                                         "wait=%lld", p->ctl->url,
                                         (long long)p->since,
                                         (long long)p->wait_s);
    struct tu_resp r = { 0 };
    tu_http("GET", url, p->cred, p->ctl->ca, NULL, 0, NULL, NULL, &r);
    p->answered_ms = mono_ms();
    p->body = r.body ? xstrdup(r.body) : NULL;
    tu_resp_clear(&r);
    return NULL;
}

void tu_poll_start(struct tu_poll *p, const struct tu_ctl *ctl,
                   const char *cred, int64_t since, int64_t wait_s)
{
    *p = (struct tu_poll){ .ctl = ctl, .cred = cred, .since = since,
                           .wait_s = wait_s };
    pthread_t t;
    if (pthread_create(&t, NULL, poll_run, p) != 0)
        abort();
    p->thread = (unsigned long)t;
}

int64_t tu_poll_join(struct tu_poll *p, int64_t from_ms, char **ret_body)
{
    pthread_join((pthread_t)p->thread, NULL);
    *ret_body = p->body;
    p->body = NULL;
    return p->answered_ms - from_ms;
}

char *tu_account(const struct tu_ctl *ctl, const char *name,
                 const char *role)
{
    _cleanup_free_ char *b = xasprintf("{\"name\":\"%s\",\"role\":\"%s\"}",
                                       name, role);
    free(tu_api_field(ctl, ctl->admin_key, "POST", "/v1/accounts", b, 201,
                      NULL));
    _cleanup_free_ char *kb = xasprintf("{\"account\":\"%s\"}", name);
    return tu_api_field(ctl, ctl->admin_key, "POST", "/v1/keys", kb, 201,
                        "secret");
}

char *tu_node_register(const struct tu_ctl *ctl, const char *name,
                       const char *extra)
{
    char *tok = tu_api_field(ctl, ctl->admin_key, "POST", "/v1/join-tokens",
                             "{}", 201, "token");
    char *body = xasprintf(
        "{\"token\":\"%s\",\"name\":\"%s\",%s%s\"inventory\":{\"vcpus\":8,"
        "\"memory_mib\":8192,\"disk_gib\":100,\"kvm\":false}}", tok, name,
        extra ? extra : "", extra ? "," : "");
    char *cred = tu_api_field(ctl, NULL, "POST", "/v1/agent/register", body,
                              201, "credential");
    free(tok);
    free(body);
    return cred;
}

char *tu_market_node(const struct tu_ctl *ctl, const char *name,
                     const char *extra, const char *vcpu_hour)
{
    char *cred = tu_node_register(ctl, name, extra);
    json_decref(tu_api(ctl, cred, "GET", "/v1/agent/desired", NULL, NULL));
    _cleanup_free_ char *path = xasprintf("/v1/nodes/%s/offer", name);
    _cleanup_free_ char *offer = xasprintf(
        "{\"vcpu_hour\":\"%s\",\"mem_gib_hour\":\"0\",\"disk_gib_month\":"
        "\"0\",\"port_hour\":\"0\"}", vcpu_hour);
    free(tu_api_field(ctl, ctl->admin_key, "PUT", path, offer, 200, NULL));
    return cred;
}

/* ---- a node agent ------------------------------------------------------- */

/* Run the joined agent of a (its log appended to). */
static void agent_run(struct tu_agent *a)
{
    _cleanup_free_ char *bin = a->bin ? xstrdup(a->bin)
                                      : tu_bin("fog-nodeagent");
    char *argv[32] = { bin, "run", "--data-dir", a->data_dir, "--image-dir",
                       a->image_dir, "--root", a->root, "--heartbeat", "1",
                       "--network", "none", "--verbose", NULL };
    size_t n = 13;
    for (size_t i = 0; a->extra && a->extra[i] && n + 1 < ARRAY_SIZE(argv);
         i++)
        argv[n++] = (char *)a->extra[i];
    argv[n] = NULL;
    a->pid = tu_spawn(argv, a->log);
    if (a->pid < 0)
        abort();
}

void tu_agent_start(struct tu_agent *a, const struct tu_ctl *ctl,
                    const char *name, int cpus, int64_t mem_mib)
{
    tu_agent_start_bin(a, ctl, name, cpus, mem_mib, NULL);
}

void tu_agent_start_bin(struct tu_agent *a, const struct tu_ctl *ctl,
                        const char *name, int cpus, int64_t mem_mib,
                        const char *agent_bin)
{
    _cleanup_free_ char *qemu_img = tu_which("qemu-img");
    if (!qemu_img) {
        printf("qemu-img is not installed\n");
        exit(77);
    }
    memset(a, 0, sizeof(*a));
    a->pid = -1;
    a->dir = tu_tempdir("agent");
    a->data_dir = xasprintf("%s/data", a->dir);
    a->image_dir = xasprintf("%s/images", a->dir);
    a->root = xasprintf("%s/root", a->dir);
    a->log = xasprintf("%s/agent.log", a->dir);
    a->bin = agent_bin ? xstrdup(agent_bin) : NULL;
    tu_fake_host(a->root, cpus, mem_mib);
    if (mkdir_p(a->image_dir, 0755) < 0)
        abort();
    _cleanup_free_ char *base = xasprintf("%s/tiny.qcow2", a->image_dir);
    char *mk[] = { qemu_img, "create", "-q", "-f", "qcow2", base, "64M", NULL };
    int st;
    free(tu_run(mk, &st));
    _cleanup_free_ char *bin = a->bin ? xstrdup(a->bin)
                                      : tu_bin("fog-nodeagent");
    _cleanup_free_ char *tok = tu_api_field(ctl, ctl->admin_key, "POST",
                                            "/v1/join-tokens", "{}", 201,
                                            "token");
    char *jargv[] = { bin, "join", "--controller", ctl->url, "--token", tok,
                      "--data-dir", a->data_dir, "--root", a->root,
                      "--libvirt", "test:///default", "--name", (char *)name,
                      NULL };
    if (st == 0)
        free(tu_run(jargv, &st));
    if (st != 0) {
        fprintf(stderr, "agent %s: qemu-img or join failed\n", name);
        abort();
    }
    agent_run(a);
}

void tu_agent_restart(struct tu_agent *a)
{
    if (a->pid > 0)
        tu_kill(a->pid, SIGKILL);
    agent_run(a);
}

void tu_agent_destroy(struct tu_agent *a)
{
    if (a->pid > 0)
        tu_kill(a->pid, SIGKILL);
    if (a->dir)
        tu_rmrf(a->dir);
    free(a->dir);
    free(a->bin);
    a->bin = NULL;
    free(a->data_dir);
    free(a->image_dir);
    free(a->root);
    free(a->log);
    memset(a, 0, sizeof(*a));
}

json_t *tu_vm_post(const struct tu_ctl *ctl, const char *key,
                   const char *name, int vcpus, const char *extra, long want)
{
    _cleanup_free_ char *body = xasprintf(
        "{\"name\":\"%s\",\"vcpus\":%d,\"memory_mib\":128,\"disk_gib\":1,"
        "\"image\":\"tiny\",\"allow_tcg\":true%s%s}", name, vcpus,
        extra ? "," : "", extra ? extra : "");
    long st;
    json_t *j = tu_api(ctl, key, "POST", "/v1/vms", body, &st);
    if (st != want) {
        fprintf(stderr, "POST /v1/vms %s: status %ld, want %ld\n", body, st,
                want);
        abort();
    }
    return j;
}

static sqlite3 *sql_open(const struct tu_ctl *ctl)
{
    _cleanup_free_ char *db = xasprintf("%s/fog.db", ctl->dir);
    sqlite3 *h = NULL;
    if (sqlite3_open(db, &h) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", db, h ? sqlite3_errmsg(h) : "no memory");
        abort();
    }
    sqlite3_busy_timeout(h, 10000);
    return h;
}

void tu_sql(const struct tu_ctl *ctl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *q = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    if (ctl->database) {
        PQclear(pg_sql(ctl, q));
        sqlite3_free(q);
        return;
    }
    sqlite3 *h = sql_open(ctl);
    char *err = NULL;
    if (sqlite3_exec(h, q, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", q, err);
        abort();
    }
    sqlite3_free(q);
    sqlite3_close(h);
}

char *tu_sql_text(const struct tu_ctl *ctl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *q = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    if (ctl->database) {
        PGresult *res = pg_sql(ctl, q);
        char *v = PQntuples(res) > 0 && PQnfields(res) > 0 &&
                          !PQgetisnull(res, 0, 0)
                      ? xstrdup(PQgetvalue(res, 0, 0)) : NULL;
        PQclear(res);
        sqlite3_free(q);
        return v;
    }
    sqlite3 *h = sql_open(ctl);
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    if (sqlite3_prepare_v2(h, q, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", q, sqlite3_errmsg(h));
        abort();
    }
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        out = xstrdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_free(q);
    sqlite3_close(h);
    return out;
}

/* ---- raw HTTPS --------------------------------------------------------- */

size_t tu_resp_write(char *p, size_t size, size_t n, void *ud)
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
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, tu_resp_write);
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
    /* One header line, or several separated by '\n'. */
    for (const char *hl = extra_header; hl && *hl;) {
        size_t n = strcspn(hl, "\n");
        _cleanup_free_ char *line = xstrndup(hl, n);
        hdrs = curl_slist_append(hdrs, line);
        hl += n + (hl[n] == '\n');
    }
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
        char *t = NULL;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
        curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &t);
        r.content_type = xstrdup(t ? t : "");
        bool json = body && (!content_type || strstr(content_type, "json"));
        api_speclog_record(h, json ? body : NULL, json ? body_len : 0,
                           r.status, t, r.body, r.len);
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

/* ---- network namespaces ------------------------------------------------ */

const char *tu_ip_bin(void)
{
    static const char *const paths[] = { "/usr/sbin/ip", "/sbin/ip",
                                         "/usr/bin/ip", "/bin/ip" };
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

int tu_ip(const char *fmt, ...)
{
    va_list ap;
    char *line;
    va_start(ap, fmt);
    if (vasprintf(&line, fmt, ap) < 0)
        abort();
    va_end(ap);
    char *argv[64] = { (char *)tu_ip_bin() };
    int n = 1;
    char *save = NULL;
    for (char *t = strtok_r(line, " ", &save); t && n < 63;
         t = strtok_r(NULL, " ", &save))
        argv[n++] = t;
    argv[n] = NULL;
    int st = -1;
    char *out = argv[0] ? tu_run(argv, &st) : xstrdup("ip not installed");
    if (st != 0)
        fprintf(stderr, "ip %s: exit %d: %s\n", fmt, st, out);
    free(out);
    free(line);
    return st;
}

int tu_ns_add(const char *ns)
{
    int r = tu_ip("netns add %s", ns);
    return r ? r : tu_ip("-n %s link set lo up", ns);
}

int tu_ns_wire(const char *bridge_ns, const char *bridge, const char *veth,
               const char *ns, const char *cidr)
{
    int r = tu_ip("-n %s link add %s type veth peer name eth0 netns %s",
                  bridge_ns, veth, ns);
    if (r == 0)
        r = tu_ip("-n %s link set %s master %s up", bridge_ns, veth, bridge);
    if (r == 0)
        r = tu_ip("-n %s addr add %s dev eth0", ns, cidr);
    if (r == 0)
        r = tu_ip("-n %s link set eth0 up", ns);
    return r;
}

static int ns_enter(const char *ns)
{
    if (!ns) {
        if (unshare(CLONE_NEWNET) < 0)
            return 121;
        return link_set_up("lo", true) < 0 ? 122 : 0;
    }
    _cleanup_free_ char *path = xasprintf("/run/netns/%s", ns);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 || setns(fd, CLONE_NEWNET) < 0 ? 120 : 0;
}

pid_t tu_ns_fork(const char *ns, int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int r = ns_enter(ns);
        if (r == 0)
            r = fn(arg);
        fflush(NULL);
        _exit(r);
    }
    return pid;
}

int tu_reap(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 250;
}

int tu_in_ns(const char *ns, int (*fn)(void *), void *arg)
{
    pid_t pid = tu_ns_fork(ns, fn, arg);
    return pid < 0 ? -1 : tu_reap(pid);
}

struct ping_arg {
    const char *src, *dst;
    int timeout_ms;
};

static uint16_t inet_csum(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < len; i += 2)
        s += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (len & 1)
        s += (uint32_t)(p[len - 1] << 8);
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return htons((uint16_t)~s);
}

/* In the namespace: 0 on an echo reply, 1 on none, 2 without a socket. */
static int ping_fn(void *arg)
{
    const struct ping_arg *a = arg;
    _cleanup_close_ int fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    if (fd < 0)
        return 2;
    struct sockaddr_in dst = { .sin_family = AF_INET };
    inet_pton(AF_INET, a->dst, &dst.sin_addr);
    if (a->src) {
        struct sockaddr_in src = { .sin_family = AF_INET };
        inet_pton(AF_INET, a->src, &src.sin_addr);
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
            fprintf(stderr, "ping: cannot bind %s: %m\n", a->src);
            return 2;
        }
    }
    uint16_t id = (uint16_t)getpid();
    for (int waited = 0, seq = 1; waited < a->timeout_ms; seq++) {
        uint8_t pkt[64] = { 0 };
        struct icmphdr *h = (struct icmphdr *)pkt;
        h->type = ICMP_ECHO;
        h->un.echo.id = htons(id);
        h->un.echo.sequence = htons((uint16_t)seq);
        h->checksum = inet_csum(pkt, sizeof(pkt));
        sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&dst, sizeof(dst));
        for (int slice = 0; slice < 4; slice++, waited += 50) {
            struct pollfd pf = { .fd = fd, .events = POLLIN };
            if (poll(&pf, 1, 50) <= 0)
                continue;
            uint8_t buf[1500];
            struct sockaddr_in from;
            socklen_t fl = sizeof(from);
            ssize_t n = recvfrom(fd, buf, sizeof(buf), 0,
                                 (struct sockaddr *)&from, &fl);
            if (n < 28 || from.sin_addr.s_addr != dst.sin_addr.s_addr)
                continue;
            size_t ihl = (size_t)(buf[0] & 0x0f) * 4;
            const struct icmphdr *r = (const struct icmphdr *)(buf + ihl);
            if (r->type == ICMP_ECHOREPLY && ntohs(r->un.echo.id) == id)
                return 0;
        }
    }
    return 1;
}

bool tu_ping(const char *ns, const char *src, const char *dst, int timeout_ms)
{
    struct ping_arg a = { src, dst, timeout_ms };
    return tu_in_ns(ns, ping_fn, &a) == 0;
}

bool tu_have_wireguard_go(void)
{
    _cleanup_free_ char *p = tu_which("wireguard-go");
    return p != NULL;
}

static int wg_remove_fn(void *arg)
{
    const char *ifname = arg;
    struct wg_opts o = { 0 };
    if (link_exists(ifname))
        return wg_backend_uapi.remove(&o, ifname) < 0;
    return 0;
}

int tu_wg_remove(const char *ns, const char *ifname)
{
    return tu_in_ns(ns, wg_remove_fn, (void *)ifname);
}

int tu_nf_state(const char *doc, struct nf_state *ret)
{
    json_t *j = json_loads(doc, 0, NULL);
    char *err = NULL;
    int r = j ? netfabric_state_from_json(j, NULL, ret, &err) : -EINVAL;
    json_decref(j);
    if (r < 0) {
        fprintf(stderr, "document refused: %s\n", err ? err : "?");
        free(err);
        return 1;
    }
    return 0;
}

int tu_ns_test_begin(size_t size, void **ret_shared)
{
    if (geteuid() != 0) {
        printf("needs root for network namespaces\n");
        return 77;
    }
    if (!tu_ip_bin()) {
        printf("iproute2 not installed\n");
        return 77;
    }
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 1;
    *ret_shared = m;
    return 0;
}

int tu_wg_netns_enter(void)
{
    if (geteuid() != 0 || !tu_ip_bin() || !tu_have_wireguard_go()) {
        printf("needs root, iproute2 and wireguard-go\n");
        return 77;
    }
    if (unshare(CLONE_NEWNET) < 0 || tu_ip("link set lo up") != 0) {
        printf("cannot make a network namespace\n");
        return 77;
    }
    return 0;
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
    b->uri = xasprintf("postgresql:///postgres?host=%s&user=fog", b->dir);
    return tu_pg_resume(b);
}

void tu_pg_halt(struct tu_pg *b)
{
    if (b->pid > 0)
        tu_kill(b->pid, SIGINT); /* fast shutdown: sessions are cut */
    b->pid = 0;
}

bool tu_pg_resume(struct tu_pg *b)
{
    struct stat st;
    _cleanup_free_ char *data = xasprintf("%s/data", b->dir);
    _cleanup_free_ char *log = xasprintf("%s/pg.log", b->dir);
    char *run[] = { PG_BIN "/postgres", "-D", data, "-k", b->dir, "-c",
                    "listen_addresses=", "-c", "fsync=off", NULL };
    b->pid = as_postgres(run, log);
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
    tu_pg_halt(b);
    if (b->dir)
        tu_rmrf(b->dir);
    free(b->dir);
    free(b->uri);
    b->dir = b->uri = NULL;
}

long tu_node_join(const struct tu_ctl *ctl, const char *token_key,
                  const char *name, const char *fields, char **ret_id,
                  char **ret_cred)
{
    long st;
    json_auto_t *t = tu_api(ctl, token_key, "POST", "/v1/join-tokens", "{}",
                            &st);
    if (st != 201)
        return st;
    _cleanup_free_ char *body = xasprintf(
        "{\"token\":\"%s\",\"name\":\"%s\",%s%s\"inventory\":{\"vcpus\":4,"
        "\"memory_mib\":8192,\"disk_gib\":100,\"kvm\":true}}",
        json_str(t, "token"), name, fields ? fields : "", fields ? "," : "");
    json_auto_t *reg = tu_api(ctl, NULL, "POST", "/v1/agent/register", body,
                              &st);
    if (st == 201) {
        *ret_id = xstrdup(json_str(reg, "node_id"));
        *ret_cred = xstrdup(json_str(reg, "credential"));
    }
    return st;
}

uint64_t tu_xorshift(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

int tu_nat_hub(const char *hub_cidr)
{
    return tu_ip("link add hubbr type bridge") ||
           tu_ip("addr add %s dev hubbr", hub_cidr) ||
           tu_ip("link set hubbr up");
}

static int nat_forward_on(void *arg)
{
    (void)arg;
    int fd = open("/proc/sys/net/ipv4/ip_forward", O_WRONLY);
    int ok = fd >= 0 && write(fd, "1", 1) == 1;
    if (fd >= 0)
        close(fd);
    return ok ? 0 : 1;
}

static int nat_router_rules(void *arg)
{
    _cleanup_free_ char *script = xasprintf(
        "add table ip natr\n"
        "add chain ip natr post { type nat hook postrouting priority "
        "srcnat; }\n"
        "add rule ip natr post oifname \"eth0\" %s\n", (const char *)arg);
    _cleanup_free_ char *err = NULL;
    int r = nft_apply(script, false, &err);
    if (r < 0)
        fprintf(stderr, "nft: %s\n", err ? err : "?");
    return r < 0 ? 1 : 0;
}

int tu_nat_node_build(struct tu_nat_node *n, const char *tag, int idx)
{
    static int seq;
    snprintf(n->ns, sizeof(n->ns), "%s%d-n%d", tag, (int)getpid(), idx);
    snprintf(n->router, sizeof(n->router), "%s%d-r%d", tag, (int)getpid(),
             idx);
    /* wireguard-go's sockets share one directory across namespaces: the
     * name is this process's alone, so two runs at once never meet. */
    snprintf(n->wg, sizeof(n->wg), "%.3s%xw%u", tag,
             (unsigned)getpid() & 0xffffffu, (unsigned)idx & 0xffu);
    const char *outside = n->lan ? n->router : n->ns;
    char veth[16];
    snprintf(veth, sizeof(veth), "h%d_%d", (int)getpid() % 100000, seq++);
    _cleanup_free_ char *wan = xasprintf("%s/24", n->wan);
    if (tu_ns_add(n->ns) || (n->lan && tu_ns_add(n->router)) ||
        tu_ip("link add %s type veth peer name eth0 netns %s", veth,
              outside) ||
        tu_ip("link set %s master hubbr up", veth) ||
        tu_ip("-n %s addr add %s dev eth0", outside, wan) ||
        tu_ip("-n %s link set eth0 up", outside))
        return 1;
    if (!n->lan)
        return 0;
    return tu_ip("-n %s link add lan0 type veth peer name eth0 netns %s",
                 n->router, n->ns) ||
           tu_ip("-n %s addr add %s.1/24 dev lan0", n->router, n->lan) ||
           tu_ip("-n %s link set lan0 up", n->router) ||
           tu_ip("-n %s addr add %s.2/24 dev eth0", n->ns, n->lan) ||
           tu_ip("-n %s link set eth0 up", n->ns) ||
           tu_ip("-n %s route add default via %s.1", n->ns, n->lan) ||
           tu_in_ns(n->router, nat_forward_on, NULL) ||
           tu_in_ns(n->router, nat_router_rules, (void *)n->router_nat);
}

int tu_nat_node_start(const struct tu_ctl *ctl, const char *hub_addr,
                      const char *dir, struct tu_nat_node *n)
{
    int st;
    n->data_dir = xasprintf("%s/%s", dir, n->name);
    n->log = xasprintf("%s/%s.log", dir, n->name);
    _cleanup_free_ char *images = xasprintf("%s/images", dir);
    _cleanup_free_ char *tok = tu_api_field(ctl, ctl->admin_key, "POST",
                                            "/v1/join-tokens", "{}", 201,
                                            "token");
    _cleanup_free_ char *agent_bin = tu_bin("fog-nodeagent");
    _cleanup_free_ char *url = xasprintf("https://%s:%d", hub_addr,
                                         ctl->port);
    char *join[] = { (char *)tu_ip_bin(), "netns", "exec", n->ns, agent_bin,
                     "join", "--controller", url, "--token", tok,
                     "--data-dir", n->data_dir, "--libvirt", "test:///default",
                     "--name", (char *)n->name, NULL, NULL, NULL };
    if (n->endpoint) {
        join[16] = "--endpoint";
        join[17] = (char *)n->endpoint;
    }
    _cleanup_free_ char *out = tu_run(join, &st);
    if (st != 0) {
        fprintf(stderr, "join of %s failed (%d): %s\n", n->name, st, out);
        return 1;
    }
    char *run[32] = { (char *)tu_ip_bin(), "netns", "exec", n->ns, agent_bin,
                      "run", "--data-dir", n->data_dir, "--image-dir", images,
                      "--mesh-ifname", n->wg, "--verbose", NULL };
    size_t at = 13;
    for (size_t i = 0; n->run_args && n->run_args[i] && i < 16; i++)
        run[at++] = (char *)n->run_args[i];
    n->pid = tu_spawn(run, n->log);
    return n->pid > 0 ? 0 : 1;
}

/* CPU seconds process pid has used so far (user and system). */
double tu_cpu_s(pid_t pid)
{
    _cleanup_free_ char *path = xasprintf("/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    char line[2048];
    bool got = f && fgets(line, sizeof(line), f);
    if (f)
        fclose(f);
    /* Fields 14 and 15, counted after the command's closing ')'. */
    const char *p = got ? strrchr(line, ')') : NULL;
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
                     "%llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

void tu_nat_node_destroy(struct tu_nat_node *n)
{
    if (n->pid > 0)
        tu_kill(n->pid, SIGTERM);
    n->pid = -1;
    if (*n->ns) {
        tu_wg_remove(n->ns, n->wg);
        tu_ip("netns del %s", n->ns);
    }
    if (n->lan && *n->router)
        tu_ip("netns del %s", n->router);
    free(n->data_dir);
    free(n->log);
    n->data_dir = n->log = NULL;
}

void tu_s3_resume(struct tu_s3 *s)
{
    _cleanup_free_ char *port = xasprintf("%d", s->port);
    _cleanup_free_ char *data = xasprintf("%s/data", s->dir);
    _cleanup_free_ char *log = xasprintf("%s/s3rver.log", s->dir);
    if (mkdir_p(data, 0700) < 0)
        abort();
    char *argv[] = { s->node, s->js, "-d", data, "-a", "127.0.0.1",
                     "-p", port, "--no-vhost-buckets", NULL, NULL, NULL,
                     NULL, NULL, NULL, NULL };
    if (s->cert) {
        char *tls[] = { "--cert", s->cert, "--key", s->key,
                        "--configure-bucket", "fog-tls" };
        memcpy(&argv[9], tls, sizeof(tls));
    }
    s->pid = tu_spawn(argv, log);
    if (s->pid < 0 || tu_wait_port(s->port, 20000) < 0) {
        fprintf(stderr, "s3rver did not start; log %s\n", log);
        abort();
    }
}

int tu_s3_start(struct tu_s3 *s)
{
    return tu_s3_start_tls(s, NULL, NULL);
}

int tu_s3_start_tls(struct tu_s3 *s, const char *cert, const char *key)
{
    const char *o = getenv("O");
    *s = (struct tu_s3){ .pid = -1 };
    for (int i = 0; i < 2 && !s->js; i++) {
        char *js = xasprintf("%s/js/node_modules/s3rver/bin/s3rver.js",
                             i == 0 && o && *o ? o : "build");
        if (access(js, R_OK) == 0)
            s->js = js;
        else
            free(js);
    }
    s->node = tu_which("node");
    if (!s->js || !s->node) {
        free(s->js);
        free(s->node);
        return -ENOENT;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    s->cert = cert ? xstrdup(cert) : NULL;
    s->key = key ? xstrdup(key) : NULL;
    s->dir = tu_tempdir("s3rver");
    s->key_file = xasprintf("%s/s3.key", s->dir);
    if (file_write_atomic(s->key_file, "S3RVER:S3RVER\n", 14, 0600) < 0)
        abort();
    s->port = tu_free_port();
    tu_s3_resume(s);
    return 0;
}

void tu_s3_halt(struct tu_s3 *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = -1;
}

void tu_s3_destroy(struct tu_s3 *s)
{
    tu_s3_halt(s);
    if (s->dir)
        tu_rmrf(s->dir);
    free(s->dir);
    free(s->js);
    free(s->node);
    free(s->key_file);
    free(s->cert);
    free(s->key);
    *s = (struct tu_s3){ .pid = -1 };
}

static size_t s3_discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

long tu_s3_raw(const struct tu_s3 *s, const char *method, const char *path,
               const char *body)
{
    CURL *c = curl_easy_init();
    if (!c)
        abort();
    _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d/%s", s->port,
                                         path);
    struct curl_slist *h = curl_slist_append(NULL, "x-amz-content-sha256: "
                                                   "UNSIGNED-PAYLOAD");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:s3");
    curl_easy_setopt(c, CURLOPT_USERPWD, "S3RVER:S3RVER");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s3_discard);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}
