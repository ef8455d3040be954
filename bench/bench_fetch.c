/* Image distribution benchmark: the agent's cache fetching a 1 GiB catalog
 * image from a real controller over loopback (download, SHA-256 check,
 * fdatasync, rename) against plain `curl -o` of the same URL, interleaved
 * runs, medians and the ratio, and the CPU time each client and the
 * server spent; fetch_get also through the page cache (its page_cache
 * option) beside its O_DIRECT default. Over HTTPS and plain HTTP. */
#include "bench/bench_util.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "images/fetch.h"
#include "tests/testutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#define IMAGE_BYTES (1ULL << 30)
#define MIB (1024.0 * 1024.0)

static double now_s_f(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* CPU seconds (user and system) of this process or of its waited-for
 * children (who: RUSAGE_SELF or RUSAGE_CHILDREN). */
static double rusage_s(int who)
{
    struct rusage ru;
    if (getrusage(who, &ru) < 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, size_t n)
{
    double *s = xcalloc(n, sizeof(double));
    memcpy(s, v, n * sizeof(double));
    qsort(s, n, sizeof(double), cmp_double);
    double m = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    free(s);
    return m;
}

/* The image body: xorshift64 output, incompressible and not sparse, made
 * while it is uploaded so no source copy needs the disk space. */
struct gen {
    uint64_t state;
    uint64_t left;
};

static size_t gen_read(char *buf, size_t size, size_t nitems, void *data)
{
    struct gen *g = data;
    /* Whole words: the size is a multiple of 8 and curl's buffer is
     * kilobytes. */
    size_t n = size * nitems;
    if (n > g->left)
        n = (size_t)g->left;
    n &= ~(size_t)7;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t x = g->state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        g->state = x;
        memcpy(buf + i, &x, 8);
    }
    g->left -= n;
    return n;
}

/* PUT the generated GiB as the image's content; its SHA-256 (from the
 * controller's answer) in ret_sha. 0 or -EIO. */
static int upload(const struct tu_ctl *ctl, const char *id, char *ret_sha)
{
    CURL *h = curl_easy_init();
    _cleanup_free_ char *url = xasprintf("%s/v1/images/%s/file", ctl->url, id);
    _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s",
                                          ctl->admin_key);
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
    struct gen g = { .state = 0x9e3779b97f4a7c15ULL, .left = IMAGE_BYTES };
    struct tu_resp resp = { 0 };
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, gen_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &g);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)IMAGE_BYTES);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_CAINFO, ctl->ca);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, tu_resp_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    CURLcode cr = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    int r = -EIO;
    json_t *j = resp.body ? json_loads(resp.body, 0, NULL) : NULL;
    const char *sha = json_str(j, "sha256");
    if (cr != CURLE_OK || status != 200 || !sha || strlen(sha) != 64 ||
        !streq(json_str(j, "state"), "ready"))
        fprintf(stderr, "upload failed: %s, HTTP %ld: %s\n",
                curl_easy_strerror(cr), status, resp.body ? resp.body : "");
    else {
        memcpy(ret_sha, sha, 65);
        r = 0;
    }
    json_decref(j);
    free(resp.body);
    return r;
}

/* CPU seconds a transfer took: the client's and the server's. */
struct cpu {
    double client, server;
};

/* One fetch_get into an empty cache dir, writing with O_DIRECT (its
 * default) or through the page cache; seconds or -1, and the CPU its
 * threads and the server (pid) spent in *cpu. */
static double run_fetch(const char *work, const char *url, const char *ca,
                        const char *key, const char *sha, pid_t server,
                        bool page_cache, struct cpu *cpu)
{
    _cleanup_free_ char *dir = xasprintf("%s/cache", work);
    char *reason = NULL;
    struct fetch_opts o = { .dir = dir, .ca_file = ca, .bearer = key,
                            .page_cache = page_cache };
    struct fetch_cache *c = fetch_cache_new(&o, &reason);
    if (!c) {
        fprintf(stderr, "fetch_cache_new: %s\n", reason);
        free(reason);
        return -1;
    }
    char *path = NULL;
    double c0 = rusage_s(RUSAGE_SELF), s0 = proc_cpu_ms(server);
    double t0 = now_s_f();
    int e = fetch_get(c, url, sha, IMAGE_BYTES, &path, &reason);
    double t = now_s_f() - t0;
    cpu->client = rusage_s(RUSAGE_SELF) - c0;
    cpu->server = (proc_cpu_ms(server) - s0) / 1e3;
    struct stat st;
    if (e < 0 || stat(path, &st) < 0 || (uint64_t)st.st_size != IMAGE_BYTES) {
        fprintf(stderr, "fetch_get: %s\n", e < 0 ? reason : "wrong size");
        t = -1;
    }
    free(reason);
    free(path);
    fetch_cache_free(c);
    tu_rmrf(dir);
    return t;
}

/* One `curl -s -o FILE`; seconds in *ret_curl, and the fdatasync of its
 * file afterwards (what fetch_get does before it renames) in *ret_sync,
 * the CPU curl and the server (pid) spent in *cpu. 0 or -1. */
static int run_curl(const char *curl, const char *work, const char *url,
                    const char *ca, const char *hdr_file, pid_t server,
                    double *ret_curl, double *ret_sync, struct cpu *cpu)
{
    _cleanup_free_ char *out = xasprintf("%s/curl.out", work);
    _cleanup_free_ char *hdr = xasprintf("@%s", hdr_file);
    char *argv[] = { (char *)curl, (char *)"-s", (char *)"-S",
                     (char *)"--fail", (char *)"--cacert", (char *)ca,
                     (char *)"-H", hdr, (char *)"-o", out, (char *)url, NULL };
    int st;
    double c0 = rusage_s(RUSAGE_CHILDREN), s0 = proc_cpu_ms(server);
    double t0 = now_s_f();
    free(tu_run(argv, &st));
    double t1 = now_s_f();
    cpu->client = rusage_s(RUSAGE_CHILDREN) - c0;
    cpu->server = (proc_cpu_ms(server) - s0) / 1e3;
    int fd = open(out, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    int r = -1;
    if (st != 0 || fd < 0 || fstat(fd, &sb) < 0 ||
        (uint64_t)sb.st_size != IMAGE_BYTES) {
        fprintf(stderr, "curl failed (exit %d)\n", st);
    } else if (fdatasync(fd) == 0) {
        *ret_curl = t1 - t0;
        *ret_sync = now_s_f() - t0;
        r = 0;
    }
    if (fd >= 0)
        close(fd);
    unlink(out);
    return r;
}

struct result {
    const char *transport;
    double fetch, fetch_pc, curl, curl_sync; /* medians, seconds */
    double fetch_min, curl_sync_min;         /* fastest runs, seconds */
    struct cpu fetch_cpu, fetch_pc_cpu, curl_cpu; /* medians, CPU seconds */
};

static double minimum(const double *v, size_t n)
{
    double m = v[0];
    for (size_t i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

/* `runs` interleaved rounds against the controller at url, each a
 * fetch_get with O_DIRECT, one through the page cache and a curl (the
 * order rotates so none always goes first). 0 or -1. */
static int measure(const char *curl, const char *work, const char *url,
                   const char *ca, const char *key, const char *hdr_file,
                   const char *sha, pid_t server, int runs,
                   struct result *ret)
{
    double *f = xcalloc((size_t)runs, sizeof(double));
    double *c = xcalloc((size_t)runs, sizeof(double));
    double *cs = xcalloc((size_t)runs, sizeof(double));
    double *fp = xcalloc((size_t)runs, sizeof(double));
    double *cpu[6];
    for (size_t j = 0; j < ARRAY_SIZE(cpu); j++)
        cpu[j] = xcalloc((size_t)runs, sizeof(double));
    int r = -1;
    for (int i = 0; i < runs; i++) {
        struct cpu fc = { 0, 0 }, pc = { 0, 0 }, cc = { 0, 0 };
        for (int k = 0; k < 3; k++) {
            int which = (k + i) % 3;
            if (which == 0) {
                if ((f[i] = run_fetch(work, url, ca, key, sha, server, false,
                                      &fc)) < 0)
                    goto out;
            } else if (which == 1) {
                if ((fp[i] = run_fetch(work, url, ca, key, sha, server, true,
                                       &pc)) < 0)
                    goto out;
            } else if (run_curl(curl, work, url, ca, hdr_file, server, &c[i],
                                &cs[i], &cc) < 0) {
                goto out;
            }
        }
        cpu[0][i] = fc.client;
        cpu[1][i] = fc.server;
        cpu[2][i] = cc.client;
        cpu[3][i] = cc.server;
        cpu[4][i] = pc.client;
        cpu[5][i] = pc.server;
        fprintf(stderr, "  %s run %d: fetch %.2f s, through the page cache "
                "%.2f s, curl %.2f s (+sync %.2f s); CPU s client/server: "
                "fetch %.2f/%.2f, page cache %.2f/%.2f, curl %.2f/%.2f\n",
                ret->transport, i + 1, f[i], fp[i], c[i], cs[i], fc.client,
                fc.server, pc.client, pc.server, cc.client, cc.server);
    }
    ret->fetch = median(f, (size_t)runs);
    ret->fetch_pc = median(fp, (size_t)runs);
    ret->fetch_min = minimum(f, (size_t)runs);
    ret->curl_sync_min = minimum(cs, (size_t)runs);
    ret->fetch_pc_cpu = (struct cpu){ median(cpu[4], (size_t)runs),
                                      median(cpu[5], (size_t)runs) };
    ret->curl = median(c, (size_t)runs);
    ret->curl_sync = median(cs, (size_t)runs);
    ret->fetch_cpu = (struct cpu){ median(cpu[0], (size_t)runs),
                                   median(cpu[1], (size_t)runs) };
    ret->curl_cpu = (struct cpu){ median(cpu[2], (size_t)runs),
                                  median(cpu[3], (size_t)runs) };
    r = 0;
out:
    free(f);
    free(c);
    free(cs);
    free(fp);
    for (size_t j = 0; j < ARRAY_SIZE(cpu); j++)
        free(cpu[j]);
    return r;
}

static char *find_curl(void)
{
    static const char *const dirs[] = { "/usr/bin", "/usr/local/bin", "/bin" };
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        char *p = xasprintf("%s/curl", dirs[i]);
        if (access(p, X_OK) == 0)
            return p;
        free(p);
    }
    return NULL;
}

/* POST the image record; its id (caller frees) or NULL. */
static char *image_create(const struct tu_ctl *ctl)
{
    long st;
    json_auto_t *j = tu_api(ctl, ctl->admin_key, "POST", "/v1/images",
                            "{\"name\": \"bench-1g\"}", &st);
    if (st != 201 || !json_str(j, "id")) {
        fprintf(stderr, "image create: HTTP %ld %s\n", st,
                json_str(j, "detail") ? json_str(j, "detail") : "");
        return NULL;
    }
    return xstrdup(json_str(j, "id"));
}

static void print_table(const struct result *res, size_t n, int runs,
                        double up_s)
{
    printf("\nFetching a 1 GiB image from fog-controller on loopback, "
           "median of %d interleaved runs\n(upload of the image took %.1f s; "
           "%ld CPUs shared by server and clients)\n\n", runs, up_s,
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("| transport | fetch_get (download + SHA-256 + fdatasync) | "
           "fetch_get through the page cache | curl -o | curl -o, then "
           "fdatasync | fetch / curl | fetch / (curl + fdatasync) | fastest "
           "fetch / fastest (curl + fdatasync) |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < n; i++) {
        const struct result *x = &res[i];
        printf("| %s | %.2f s (%.0f MiB/s) | %.2f s | %.2f s (%.0f MiB/s) | "
               "%.2f s (%.0f MiB/s) | %.2f | %.2f | %.2f |\n", x->transport,
               x->fetch, IMAGE_BYTES / MIB / x->fetch, x->fetch_pc, x->curl,
               IMAGE_BYTES / MIB / x->curl, x->curl_sync,
               IMAGE_BYTES / MIB / x->curl_sync, x->fetch / x->curl,
               x->fetch / x->curl_sync, x->fetch_min / x->curl_sync_min);
    }
    /* A fresh page cache page can cost far more than its copy on a
     * virtual machine (the host backs it on first touch): curl's times
     * swing with that, and the fastest runs compare the work alone. */
    /* CPU time does not depend on what else the machine runs: where the
     * wall clock ratio is above 1 on 2 shared cores, this says whose
     * work it is. */
    printf("\n| transport | CPU s: fetch_get / its server | CPU s: "
           "fetch_get through the page cache / its server | CPU s: curl / "
           "its server | client CPU fetch / curl |\n");
    printf("|---|---|---|---|---|\n");
    for (size_t i = 0; i < n; i++) {
        const struct result *x = &res[i];
        printf("| %s | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.2f |\n",
               x->transport, x->fetch_cpu.client, x->fetch_cpu.server,
               x->fetch_pc_cpu.client, x->fetch_pc_cpu.server,
               x->curl_cpu.client, x->curl_cpu.server,
               x->curl_cpu.client > 0 ?
               x->fetch_cpu.client / x->curl_cpu.client : 0.0);
    }
}

/* Create and upload the image, measure over the transports asked for and
 * print the table. 0 or -1. */
static int bench(struct tu_ctl *ctl, const char *work, const char *curl,
                 int runs, const char *which)
{
    static const char *const http_args[] = { "--no-inspect", "--plain-http",
                                             NULL };
    struct result res[2];
    size_t nres = 0;
    char sha[65];

    _cleanup_free_ char *id = image_create(ctl);
    if (!id)
        return -1;
    double t0 = now_s_f();
    if (upload(ctl, id, sha) < 0)
        return -1;
    double up_s = now_s_f() - t0;

    /* curl reads the key from a file (not its argv, which ps shows). */
    _cleanup_free_ char *hdr_file = xasprintf("%s/auth.hdr", work);
    _cleanup_free_ char *hdr = xasprintf("Authorization: Bearer %s\n",
                                         ctl->admin_key);
    FILE *hf = fopen(hdr_file, "we");
    if (!hf || fputs(hdr, hf) < 0 || fclose(hf) != 0) {
        perror(hdr_file);
        return -1;
    }

    if (!streq(which, "http")) {
        _cleanup_free_ char *url = xasprintf("%s/v1/images/%s/file",
                                             ctl->url, id);
        res[nres] = (struct result){ .transport = "https" };
        if (measure(curl, work, url, ctl->ca, ctl->admin_key, hdr_file, sha,
                    ctl->pid, runs, &res[nres]) < 0)
            return -1;
        nres++;
    }
    if (!streq(which, "https")) {
        /* The same data dir and image, served without TLS. */
        tu_ctl_stop(ctl, SIGTERM);
        ctl->extra = http_args;
        tu_ctl_restart(ctl);
        _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d/v1/images/"
                                             "%s/file", ctl->port, id);
        res[nres] = (struct result){ .transport = "http" };
        if (measure(curl, work, url, ctl->ca, ctl->admin_key, hdr_file, sha,
                    ctl->pid, runs, &res[nres]) < 0)
            return -1;
        nres++;
    }
    print_table(res, nres, runs, up_s);
    return 0;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 5;
    const char *which = argc > 2 ? argv[2] : "both";
    if (runs < 1 || runs > 100 || !(streq(which, "https") ||
                                    streq(which, "http") ||
                                    streq(which, "both"))) {
        fprintf(stderr, "usage: bench_fetch [RUNS] [https|http|both]\n");
        return 2;
    }
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    /* The controller's copy plus one downloaded copy at a time (the image
     * is generated while it is uploaded, never stored twice). */
    struct statvfs vfs;
    uint64_t need = 2 * IMAGE_BYTES + (256ULL << 20);
    if (statvfs(tmp, &vfs) < 0 ||
        (uint64_t)vfs.f_bavail * vfs.f_frsize < need) {
        printf("bench_fetch: needs %llu MiB free in %s\n",
               (unsigned long long)(need >> 20), tmp);
        return 77;
    }
    _cleanup_free_ char *curl = find_curl();
    _cleanup_free_ char *ctl_bin = tu_bin("fog-controller");
    if (!curl || access(ctl_bin, X_OK) < 0) {
        printf("bench_fetch: needs curl and %s\n", ctl_bin);
        return 77;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);

    /* No inspection: an appliance booting on the same cores would skew
     * every figure. */
    static const char *const https_args[] = { "--no-inspect", NULL };
    struct tu_ctl ctl;
    tu_ctl_start(&ctl, https_args);
    char *work = tu_tempdir("bench-fetch");
    int rc = bench(&ctl, work, curl, runs, which) < 0 ? 1 : 0;
    tu_ctl_destroy(&ctl);
    tu_rmrf(work);
    free(work);
    curl_global_cleanup();
    return rc;
}
