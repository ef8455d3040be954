/* Node agent benchmark against libvirt's test driver: time from
 * POST /v1/vms until the agent calls libvirt's define and create for the
 * new domain (read from the agent's debug log, which stamps each call with
 * the wall clock), the floor it compares to (the domain XML the agent
 * made, defined and started directly through a test driver connection of
 * this process, as many domains as VMs), and the agent's resident memory and CPU time per idle
 * minute with a few VMs defined and running, and its resident and anonymous
 * memory idle with none, a few and many VMs (FOG_BENCH_SMAPS=DIR keeps
 * each point's /proc/PID/smaps there). All that runs libvirt's test driver
 * inside the agent (test:///default), which pages in libvirt's own driver
 * code; the idle point is measured again as deployed, the agent a thin
 * client of a libvirtd over its unix socket (a private one, as
 * tests/e2e/lib.sh starts, serving the test driver: test+unix://),
 * printed as "-" with the reason where it cannot start (not root, no
 * libvirtd, not run from the source tree). Prints a table; figures, not
 * pass/fail.
 *
 *   bench_agent [VMS=200] [IDLE_VMS=20] [IDLE_WINDOW_S=60] */
#include "api/client.h"
#include "bench/bench_util.h"
#include "common/buf.h"
#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct node {
    struct tu_ctl ctl;
    char *dir, *data, *images, *root, *log, *bin;
    pid_t agent;
    struct api_client *api;
    size_t log_off;      /* how much of the log has been scanned */
    struct buf seen;     /* the scanned text */
    size_t mark;         /* where in it the VM waited for may start */
};

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t pct(int64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_i64);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static void die(const char *what)
{
    fprintf(stderr, "bench_agent: %s\n", what);
    exit(1);
}

static void write_text(const char *dir, const char *rel, const char *text)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, rel);
    _cleanup_free_ char *d = xstrdup(p);
    *strrchr(d, '/') = '\0';
    if (mkdir_p(d, 0755) < 0 ||
        file_write_atomic(p, text, strlen(text), 0644) < 0)
        die("cannot write the fake host");
}

/* A controller and one joined agent on a fake host big enough for the
 * VMs (no /dev/kvm: TCG), with a sparse raw base image "tiny"; the agent
 * talks to libvirt at uri. */
static void node_start(struct node *n, int cpus, const char *uri)
{
    *n = (struct node){ .agent = -1, .seen = BUF_INIT };
    /* FOG_BENCH_CTL_LOG=FILE keeps the controller's log, at debug level
     * (its stamps time a change's way from the POST to the agent). */
    const char *ctl_log = getenv("FOG_BENCH_CTL_LOG");
    static const char *const debug[] = { "--log-level", "debug", NULL };
    tu_ctl_start(&n->ctl, ctl_log && *ctl_log ? debug : NULL);
    n->dir = tu_tempdir("bench-agent");
    n->data = xasprintf("%s/data", n->dir);
    n->images = xasprintf("%s/images", n->dir);
    n->root = xasprintf("%s/root", n->dir);
    n->log = xasprintf("%s/agent.log", n->dir);
    n->bin = tu_bin("fog-nodeagent");
    struct buf cpu = BUF_INIT;
    for (int i = 0; i < cpus; i++)
        buf_printf(&cpu, "processor\t: %d\nmodel name\t: Bench CPU\n\n", i);
    write_text(n->root, "proc/cpuinfo", buf_str(&cpu));
    buf_free(&cpu);
    _cleanup_free_ char *mem = xasprintf("MemTotal: %lld kB\n",
                                         (long long)cpus * 1024 * 1024);
    write_text(n->root, "proc/meminfo", mem);
    _cleanup_free_ char *online = xasprintf("0-%d\n", cpus - 1);
    write_text(n->root, "sys/devices/system/cpu/online", online);
    tu_fake_proc_net(n->root);
    write_text(n->images, "tiny.img", "");
    _cleanup_free_ char *img = xasprintf("%s/tiny.img", n->images);
    if (truncate(img, 64 << 20) < 0)
        die("cannot size the base image");

    n->api = api_client_new(n->ctl.url, n->ctl.admin_key, n->ctl.ca);
    struct api_reply rep;
    json_auto_t *none = json_object();
    if (api_request(n->api, "POST", "/v1/join-tokens", none, NULL, &rep) < 0 ||
        rep.status != 201)
        die("cannot make a join token");
    _cleanup_free_ char *tok = xstrdup(json_str(rep.json, "token"));
    api_reply_clear(&rep);
    char *join[] = { n->bin, "join", "--controller", n->ctl.url, "--token", tok,
                     "--data-dir", n->data, "--libvirt", (char *)uri,
                     "--name", "bench", "--root", n->root, NULL };
    int st;
    free(tu_run(join, &st));
    if (st != 0)
        die("join failed");
    char *run[] = { n->bin, "run", "--data-dir", n->data, "--image-dir",
                    n->images, "--root", n->root, "--network", "none",
                    "--verbose", NULL };
    n->agent = tu_spawn(run, n->log);
    if (n->agent <= 0)
        die("cannot start the agent");
    /* Placement wants a node the controller has heard from. */
    int64_t end = mono_ms() + 20000;
    bool seen = false;
    while (!seen && mono_ms() < end) {
        if (api_request(n->api, "GET", "/v1/nodes/bench", NULL, NULL, &rep) == 0 &&
            rep.status == 200 && json_str(rep.json, "last_seen"))
            seen = true;
        api_reply_clear(&rep);
        if (!seen)
            usleep(50000);
    }
    if (!seen)
        die("the agent never reached the controller");
    usleep(200000);
}

static void node_stop(struct node *n)
{
    if (n->agent > 0)
        tu_kill(n->agent, SIGTERM);
    api_client_free(n->api);
    const char *ctl_log = getenv("FOG_BENCH_CTL_LOG");
    if (ctl_log && *ctl_log && n->ctl.pid > 0) {
        tu_ctl_stop(&n->ctl, SIGTERM);
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (access(ctl_log, F_OK) < 0 && /* the first node's */
            file_read(n->ctl.log, 256 << 20, &text, &len) == 0)
            file_write_atomic(ctl_log, text, len, 0644);
    }
    tu_ctl_destroy(&n->ctl);
    /* FOG_BENCH_LOG=FILE keeps the agent's log (its stamps time a pass). */
    const char *keep = getenv("FOG_BENCH_LOG");
    if (keep && *keep && access(keep, F_OK) < 0) { /* the first node's */
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (file_read(n->log, 256 << 20, &text, &len) == 0)
            file_write_atomic(keep, text, len, 0644);
    }
    tu_rmrf(n->dir);
    free(n->dir);
    free(n->data);
    free(n->images);
    free(n->root);
    free(n->log);
    free(n->bin);
    buf_free(&n->seen);
}

/* Read what the agent logged since last time: only that (reading the
 * whole log every 2 ms took CPU from the daemons being timed). */
static void log_scan(struct node *n)
{
    int fd = open(n->log, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char chunk[65536];
    ssize_t got;
    while ((got = pread(fd, chunk, sizeof(chunk), (off_t)n->log_off)) > 0) {
        buf_append(&n->seen, chunk, (size_t)got);
        n->log_off += (size_t)got;
    }
    close(fd);
}

/* The unix ms stamped on "vm ID: libvirt WHAT called at MS", or -1. */
static int64_t log_stamp(struct node *n, const char *id, const char *what)
{
    _cleanup_free_ char *needle = xasprintf("vm %s: libvirt %s called at ",
                                            id, what);
    const char *p = strstr(buf_str(&n->seen) + n->mark, needle);
    if (!p)
        return -1;
    /* A line read before it was all written is read again next time. */
    char *end = NULL;
    long long v = strtoll(p + strlen(needle), &end, 10);
    return *end == ' ' ? v : -1;
}

/* The domain XML VM id's node reported (its status posts carry it). */
static char *vm_xml(struct node *n, const char *id)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s/xml", id);
    int64_t end = mono_ms() + 20000;
    while (mono_ms() < end) {
        struct api_reply rep;
        if (api_request(n->api, "GET", path, NULL, NULL, &rep) == 0 &&
            rep.status == 200 && rep.body) {
            char *xml = xstrndup(rep.body, rep.body_len);
            api_reply_clear(&rep);
            return xml;
        }
        api_reply_clear(&rep);
        usleep(50000);
    }
    die("the node never reported a domain XML");
    return NULL;
}

/* xml with the text of element <tag> replaced by `with`. */
static char *xml_swap(const char *xml, const char *tag, const char *with)
{
    _cleanup_free_ char *open = xasprintf("<%s>", tag);
    _cleanup_free_ char *close = xasprintf("</%s>", tag);
    const char *a = strstr(xml, open), *b = a ? strstr(a, close) : NULL;
    if (!b)
        die("the reported domain XML lacks a name or uuid");
    a += strlen(open);
    return xasprintf("%.*s%s%s", (int)(a - xml), xml, with, b);
}

static int64_t us_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The floor: `xml` defined and started as n domains (each its own name
 * and uuid) one after the other on a fresh test driver connection, as
 * the agent does on its own; each pair of calls timed in us. */
static void floor_measure(const char *xml, int n, int64_t *us)
{
    virConnectPtr conn = virConnectOpen("test:///default");
    if (!conn)
        die("cannot open libvirt's test driver");
    for (int i = 0; i < n; i++) {
        char name[64], uuid[37];
        snprintf(name, sizeof(name), "floor-%d", i);
        snprintf(uuid, sizeof(uuid), "f100f100-0000-4000-8000-%012x", i);
        _cleanup_free_ char *x1 = xml_swap(xml, "name", name);
        _cleanup_free_ char *x2 = xml_swap(x1, "uuid", uuid);
        int64_t t0 = us_now();
        virDomainPtr d = virDomainDefineXML(conn, x2);
        if (!d || virDomainCreate(d) < 0)
            die("the floor's define or create failed");
        us[i] = us_now() - t0;
        virDomainFree(d);
    }
    virConnectClose(conn);
}

static char *vm_create(struct node *n, int i)
{
    n->mark = n->seen.len; /* nothing of this VM was logged before */
    _cleanup_free_ char *name = xasprintf("bench-%d", i);
    json_auto_t *body = json_pack("{s:s, s:i, s:i, s:i, s:s, s:b}", "name",
                                  name, "vcpus", 1, "memory_mib", 128,
                                  "disk_gib", 1, "image", "tiny", "allow_tcg",
                                  1);
    struct api_reply rep;
    if (api_request(n->api, "POST", "/v1/vms", body, NULL, &rep) < 0 ||
        rep.status != 201) {
        fprintf(stderr, "create failed: %ld %s\n", rep.status,
                rep.body ? rep.body : "");
        exit(1);
    }
    char *id = xstrdup(json_str(rep.json, "id"));
    api_reply_clear(&rep);
    return id;
}

/* Wait until the agent logged its create call for VM id; the stamps. */
static void wait_created(struct node *n, const char *id, int64_t *ret_define,
                         int64_t *ret_create)
{
    int64_t end = mono_ms() + 30000;
    while (mono_ms() < end) {
        log_scan(n);
        int64_t c = log_stamp(n, id, "create");
        if (c > 0) {
            *ret_define = log_stamp(n, id, "define");
            *ret_create = c;
            return;
        }
        usleep(2000);
    }
    die("the agent did not start a VM within 30 s (see its log)");
}

/* utime + stime of a process in clock ticks. */
static long long cpu_ticks(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_free_ char *text = NULL;
    if (file_read(path, 1 << 16, &text, NULL) < 0)
        return -1;
    const char *p = strrchr(text, ')');
    unsigned long long ut = 0, st = 0;
    /* After "pid (comm)": state and fields 4..13, then utime, stime. */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                            "%llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

/* A field of /proc/PID/FILE in KiB: status's VmRSS (all resident pages)
 * or RssAnon (the process's own, without shared library text), or
 * smaps_rollup's Pss (shared pages divided among the processes mapping
 * them, which RSS counts whole). */
static long rss_kib(pid_t pid, const char *file, const char *field)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    _cleanup_free_ char *text = NULL;
    if (file_read(path, 1 << 16, &text, NULL) < 0)
        return -1;
    const char *p = strstr(text, field);
    return p ? strtol(p + strlen(field), NULL, 10) : -1;
}

struct mem {
    long rss, pss, anon; /* KiB */
};

/* The agent's resident and anonymous memory now; with FOG_BENCH_SMAPS
 * set to a folder, its smaps is copied there as smaps-<tag> to see where
 * the memory goes. */
static struct mem mem_of(pid_t pid, const char *tag)
{
    struct mem m = { rss_kib(pid, "status", "VmRSS:"),
                     rss_kib(pid, "smaps_rollup", "\nPss:"),
                     rss_kib(pid, "status", "RssAnon:") };
    const char *dir = getenv("FOG_BENCH_SMAPS");
    if (dir && *dir) {
        _cleanup_free_ char *from = xasprintf("/proc/%d/smaps", (int)pid);
        _cleanup_free_ char *to = xasprintf("%s/smaps-%s", dir, tag);
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (file_read(from, 64 << 20, &text, &len) < 0 ||
            file_write_atomic(to, text, len, 0644) < 0)
            die("cannot copy the agent's smaps");
    }
    return m;
}

static void row(const char *what, const char *value)
{
    printf("| %-76s | %22s |\n", what, value);
}

/* "RSS / PSS / anonymous MiB" of m. */
static void mem_cell(char *v, size_t size, const struct mem *m)
{
    snprintf(v, size, "%.1f / %.1f / %.1f MiB", (double)m->rss / 1024.0,
             (double)m->pss / 1024.0, (double)m->anon / 1024.0);
}

/* The idle cost of an agent on libvirt uri with vms VMs running: its
 * memory after `window` seconds in *ret_mem (smaps tagged TAG-VMS) and
 * its CPU ms per idle minute. */
static double idle_measure(const char *uri, int vms, int window,
                           const char *tag, struct mem *ret_mem)
{
    struct node n;
    node_start(&n, vms + 8, uri);
    for (int i = 0; i < vms; i++) {
        _cleanup_free_ char *id = vm_create(&n, i);
        int64_t d, c;
        wait_created(&n, id, &d, &c);
    }
    sleep(5); /* let the status posts settle */
    long long t0 = cpu_ticks(n.agent);
    int64_t w0 = mono_ms();
    sleep((unsigned)window);
    long long t1 = cpu_ticks(n.agent);
    int64_t w1 = mono_ms();
    _cleanup_free_ char *t = xasprintf("%s-%d", tag, vms);
    *ret_mem = mem_of(n.agent, t);
    node_stop(&n);
    if (t0 < 0 || t1 < 0)
        die("cannot read the agent's CPU time");
    return (double)(t1 - t0) * 1000.0 / (double)sysconf(_SC_CLK_TCK) *
           60000.0 / (double)(w1 - w0);
}

/* A private libvirtd (tests/e2e/lib.sh's: its own mount namespace, config
 * and socket), run from the source tree; its folder, or NULL with the
 * reason in *ret_why. Stopped by libvirtd_stop, or at exit. */
static char *libvirtd_dir;

static void libvirtd_stop(void)
{
    if (!libvirtd_dir)
        return;
    _cleanup_free_ char *bash = tu_which("bash");
    char *argv[] = { bash, "-c", ". tests/e2e/lib.sh && e2e__stop_libvirtd \"$1\"",
                     "bash", libvirtd_dir, NULL };
    int st;
    free(tu_run(argv, &st));
    free(libvirtd_dir);
    libvirtd_dir = NULL;
}

static char *libvirtd_start(char **ret_why)
{
    _cleanup_free_ char *bash = tu_which("bash");
    _cleanup_free_ char *lvd = tu_which("libvirtd");
    if (geteuid() != 0) {
        *ret_why = xstrdup("needs root");
        return NULL;
    }
    if (!bash || !lvd) {
        *ret_why = xstrdup("bash or libvirtd is not installed");
        return NULL;
    }
    if (access("tests/e2e/lib.sh", R_OK) < 0) {
        *ret_why = xstrdup("not run from the source tree");
        return NULL;
    }
    /* On success the folder is the last line; on failure lib.sh's own
     * cleanup stops what it started and the reason is the last line. The
     * output goes to a file: the daemon keeps it open. */
    _cleanup_free_ char *tmp = tu_tempdir("bench-libvirtd");
    _cleanup_free_ char *log = xasprintf("%s/out", tmp);
    char *argv[] = { bash, "-c", ". tests/e2e/lib.sh && e2e_start_libvirtd && "
                     "E2E_CLEANUPS=() && echo \"$E2E_LIBVIRT_DIR\"", "bash", NULL };
    pid_t pid = tu_spawn(argv, log);
    int st = -1;
    if (pid > 0)
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
    _cleanup_free_ char *out = NULL;
    if (file_read(log, 1 << 20, &out, NULL) < 0)
        out = xstrdup("");
    tu_rmrf(tmp);
    size_t len = strlen(out);
    while (len && out[len - 1] == '\n')
        out[--len] = '\0';
    char *last = strrchr(out, '\n');
    last = last ? last + 1 : out;
    if (pid <= 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || last[0] != '/') {
        *ret_why = xstrdup(*last ? last : "libvirtd did not start");
        return NULL;
    }
    libvirtd_dir = xstrdup(last);
    atexit(libvirtd_stop);
    return xstrdup(last);
}

int main(int argc, char **argv)
{
    int nvms = argc > 1 ? atoi(argv[1]) : 200;
    int idle_vms = argc > 2 ? atoi(argv[2]) : 20;
    int window = argc > 3 ? atoi(argv[3]) : 60;
    if (nvms < 1 || idle_vms < 0 || window < 1)
        die("usage: bench_agent [VMS] [IDLE_VMS] [IDLE_WINDOW_S]");

    /* 1. Latency, one VM at a time so no request waits behind another. */
    struct node n;
    node_start(&n, nvms + 8, "test:///default");
    sleep(5); /* the first reports and polls done */
    struct mem m0 = mem_of(n.agent, "0");
    int64_t *def = xcalloc((size_t)nvms, sizeof(*def));
    int64_t *cre = xcalloc((size_t)nvms, sizeof(*cre));
    int64_t *flo = xcalloc((size_t)nvms, sizeof(*flo));
    int64_t *pst = xcalloc((size_t)nvms, sizeof(*pst));
    _cleanup_free_ char *last = NULL;
    /* What the creates cost each daemon, whatever else the machine runs:
     * steadier than their latency, which the log stamps give in ms. */
    double ctl_cpu0 = proc_cpu_ms(n.ctl.pid), agent_cpu0 = proc_cpu_ms(n.agent);
    for (int i = 0; i < nvms; i++) {
        int64_t t0 = now_ms();
        free(last);
        last = vm_create(&n, i);
        pst[i] = now_ms() - t0;
        int64_t d, c;
        wait_created(&n, last, &d, &c);
        def[i] = d - t0;
        cre[i] = c - t0;
    }
    double ctl_cpu = (proc_cpu_ms(n.ctl.pid) - ctl_cpu0) / nvms;
    double agent_cpu = (proc_cpu_ms(n.agent) - agent_cpu0) / nvms;
    sleep(5); /* let the status posts settle */
    _cleanup_free_ char *xml = vm_xml(&n, last);
    floor_measure(xml, nvms, flo);
    _cleanup_free_ char *tag_n = xasprintf("%d", nvms);
    struct mem mn = mem_of(n.agent, tag_n);
    node_stop(&n);

    /* 2. Idle cost with idle_vms running, the test driver in-process. */
    struct mem mi;
    double cpu_in = idle_measure("test:///default", idle_vms, window, "idle",
                                 &mi);

    /* 3. The same with the agent as deployed: libvirt's remote driver to
     * a libvirtd over its unix socket (serving the test driver there). */
    struct mem mr = { -1, -1, -1 };
    double cpu_re = -1;
    _cleanup_free_ char *why = NULL;
    _cleanup_free_ char *ldir = libvirtd_start(&why);
    if (ldir) {
        _cleanup_free_ char *uri = xasprintf("test+unix:///default?socket="
                                             "%s/run/libvirt-sock", ldir);
        cpu_re = idle_measure(uri, idle_vms, window, "remote", &mr);
        libvirtd_stop();
    }

    char v[64];
    printf("\n| %-76s | %22s |\n", "node agent (libvirt's test driver in-process "
           "unless said)", "value");
    printf("|%s|%s|\n", "--------------------------------------------------------"
           "----------------------", "------------------------");
    snprintf(v, sizeof(v), "%lld ms", (long long)pct(pst, (size_t)nvms, 0.5));
    _cleanup_free_ char *l0 = xasprintf("POST /v1/vms answered, p50 (%d VMs)", nvms);
    row(l0, v);
    snprintf(v, sizeof(v), "%lld ms", (long long)pct(def, (size_t)nvms, 0.5));
    _cleanup_free_ char *l1 = xasprintf("POST /v1/vms -> libvirt define, p50 (%d VMs)", nvms);
    row(l1, v);
    snprintf(v, sizeof(v), "%lld ms", (long long)pct(def, (size_t)nvms, 0.99));
    _cleanup_free_ char *l2 = xasprintf("POST /v1/vms -> libvirt define, p99 (%d VMs)", nvms);
    row(l2, v);
    snprintf(v, sizeof(v), "%lld ms", (long long)pct(cre, (size_t)nvms, 0.5));
    _cleanup_free_ char *l3 = xasprintf("POST /v1/vms -> libvirt create, p50 (%d VMs)", nvms);
    row(l3, v);
    snprintf(v, sizeof(v), "%lld ms", (long long)pct(cre, (size_t)nvms, 0.99));
    _cleanup_free_ char *l4 = xasprintf("POST /v1/vms -> libvirt create, p99 (%d VMs)", nvms);
    row(l4, v);
    int64_t f50 = pct(flo, (size_t)nvms, 0.5);
    snprintf(v, sizeof(v), "%.2f ms", (double)f50 / 1000.0);
    _cleanup_free_ char *l7 = xasprintf("floor: direct define + create, p50 (%d "
                                        "domains)", nvms);
    row(l7, v);
    snprintf(v, sizeof(v), "%.2f ms",
             (double)pct(flo, (size_t)nvms, 0.99) / 1000.0);
    _cleanup_free_ char *l8 = xasprintf("floor: direct define + create, p99 (%d "
                                        "domains)", nvms);
    row(l8, v);
    snprintf(v, sizeof(v), "%.1fx", f50 > 0 ?
             (double)pct(cre, (size_t)nvms, 0.5) * 1000.0 / (double)f50 : 0.0);
    row("create p50 / floor p50", v);
    snprintf(v, sizeof(v), "%.2f / %.2f ms", ctl_cpu, agent_cpu);
    _cleanup_free_ char *lc = xasprintf("CPU per create, controller / agent "
                                        "(%d VMs, one at a time)", nvms);
    row(lc, v);
    const struct {
        int vms;
        struct mem m;
    } at[] = { { 0, m0 }, { idle_vms, mi }, { nvms, mn } };
    for (size_t i = 0; i < ARRAY_SIZE(at); i++) {
        mem_cell(v, sizeof(v), &at[i].m);
        _cleanup_free_ char *l = xasprintf("agent RSS / PSS / anonymous, %d "
                                           "VMs running, idle", at[i].vms);
        row(l, v);
    }
    snprintf(v, sizeof(v), "%.1f ms", cpu_in);
    _cleanup_free_ char *l6 = xasprintf("agent CPU per idle minute, %d VMs (%d s window)",
                                        idle_vms, window);
    row(l6, v);
    /* The row the agent's memory goal is judged by. */
    _cleanup_free_ char *l9 = xasprintf("agent RSS / PSS / anonymous, %d VMs "
                                        "running, idle, libvirtd over its socket",
                                        idle_vms);
    _cleanup_free_ char *l10 = xasprintf("agent CPU per idle minute, %d VMs, "
                                         "libvirtd over its socket", idle_vms);
    if (ldir) {
        mem_cell(v, sizeof(v), &mr);
        row(l9, v);
        snprintf(v, sizeof(v), "%.1f ms", cpu_re);
        row(l10, v);
    } else {
        row(l9, "-");
        row(l10, "-");
        printf("(no private libvirtd: %s)\n", why);
    }
    free(def);
    free(cre);
    free(flo);
    free(pst);
    return 0;
}
