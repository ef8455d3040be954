/* The S3 backup store against s3rver on loopback, beside the directory
 * store: one blob of each size appended in 1 MiB chunks (the agent's),
 * committed (digest check, then PutObject or a 64 MiB-part multipart
 * upload from the spool) and opened for reading (GetObject into a temp
 * file; the directory store just opens its file). Then a restore of a
 * 256 MiB blob from S3 as a node fetches it, through the HTTP server core
 * on loopback (plain HTTP): the whole object downloaded before the answer
 * (what the hub did before streaming: open + http_reply_file) against
 * passed on as it arrives (read + http_reply_stream), time to the first
 * byte and MiB/s. Prints markdown tables, medians over the runs. s3rver
 * is JavaScript on the same cores: its figures bound the store's own cost
 * from above, not S3's speed. Skipped (77) without node and s3rver.
 * Usage: bench_bstore_s3 [RUNS [MIB...]], default 3 16 128; the restore's
 * size from FOG_BENCH_RESTORE_MIB (default 256, 0: none). */
#include "api/http_server.h"
#include "bench/bench_util.h"
#include "common/ids.h"
#include "controller/bstore_s3.h"
#include "tests/testutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CHUNK (1 << 20)
#define ID "0b5c2a2e-6d5f-4c61-9d0a-1c6f6b0f7a11"

static void die(const char *what, int e)
{
    fprintf(stderr, "bench_bstore_s3: %s: %s\n", what, strerror(-e));
    exit(1);
}

/* ms of append, commit and read of one blob of `len` bytes. */
static void one(struct bstore *s, const uint8_t *data, size_t len,
                const char *hex, double ms[3])
{
    int e;
    double t0 = bench_now_ms();
    if ((e = s->ops->begin(s, ID)) < 0)
        die("begin", e);
    for (size_t off = 0; off < len; off += CHUNK) {
        size_t n = len - off < CHUNK ? len - off : CHUNK;
        if ((e = s->ops->append(s, ID, off, data + off, n, NULL)) < 0)
            die("append", e);
    }
    double t1 = bench_now_ms();
    if ((e = s->ops->commit(s, ID, hex, len)) < 0)
        die("commit", e);
    double t2 = bench_now_ms();
    int fd = -1;
    uint64_t size = 0;
    if ((e = s->ops->open(s, ID, &fd, &size)) < 0)
        die("open", e);
    if (size != len)
        die("open: wrong size", -EIO);
    close(fd);
    double t3 = bench_now_ms();
    if ((e = s->ops->remove(s, ID)) < 0)
        die("remove", e);
    ms[0] = t1 - t0;
    ms[1] = t2 - t1;
    ms[2] = t3 - t2;
}

/* ---- a restore through the HTTP server ---- */
static struct bstore *restore_store;

static void h_whole(struct http_request *r, void *app)
{
    int fd = -1;
    uint64_t size = 0;
    int e = restore_store->ops->open(restore_store, ID, &fd, &size);
    if (e < 0) {
        http_reply_problem(r, 500, "internal", NULL, "%s", strerror(-e));
        return;
    }
    http_reply_file(r, "application/octet-stream", fd, size);
}

static int stream_write(void *st, const void *data, size_t len)
{
    return http_stream_write(st, data, len);
}

static int stream_produce(struct http_stream *st, uint64_t off, uint64_t len,
                          void *ctx)
{
    return restore_store->ops->read(restore_store, ID, off, len,
                                    stream_write, st);
}

static void h_stream(struct http_request *r, void *app)
{
    uint64_t size = 0;
    int e = restore_store->ops->stat(restore_store, ID, &size, NULL);
    if (e < 0) {
        http_reply_problem(r, 500, "internal", NULL, "%s", strerror(-e));
        return;
    }
    http_reply_stream(r, "application/octet-stream", size, stream_produce,
                      NULL, NULL);
}

static size_t count_cb(char *p, size_t size, size_t n, void *ud)
{
    *(uint64_t *)ud += size * n;
    return size * n;
}

/* GET url: ms to the first body byte and in all. */
static void fetch_timed(const char *url, uint64_t want, double ms[2])
{
    CURL *c = curl_easy_init();
    uint64_t got = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, count_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode cr = curl_easy_perform(c);
    long st = 0;
    curl_off_t first = 0, total = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_easy_getinfo(c, CURLINFO_STARTTRANSFER_TIME_T, &first);
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME_T, &total);
    curl_easy_cleanup(c);
    if (cr != CURLE_OK || st != 200 || got != want)
        die("restore fetch", -EIO);
    ms[0] = (double)first / 1e3;
    ms[1] = (double)total / 1e3;
}

static void bench_restore(struct bstore *s, int runs, int mib)
{
    size_t len = (size_t)mib << 20;
    uint8_t *data = xmalloc(len);
    uint64_t seed = 3;
    for (size_t k = 0; k < len; k++)
        data[k] = (uint8_t)tu_xorshift(&seed);
    char hex[65];
    sha256_hex(data, len, hex);
    int e;
    if ((e = s->ops->begin(s, ID)) < 0 ||
        (e = s->ops->append(s, ID, 0, data, len, NULL)) < 0 ||
        (e = s->ops->commit(s, ID, hex, len)) < 0)
        die("restore blob", e);
    free(data);
    restore_store = s;
    static const struct http_route routes[] = {
        { "GET", "/whole", h_whole, 0, NULL, 0 },
        { "GET", "/stream", h_stream, 0, NULL, 0 },
    };
    struct http_server_opts o = { .listen = "127.0.0.1:0", .routes = routes,
                                  .n_routes = ARRAY_SIZE(routes),
                                  .max_body = 4096 };
    struct http_server *srv = NULL;
    if ((e = http_server_start(&o, &srv)) < 0)
        die("http server", e);
    printf("\n| restore from s3 (s3rver), %d MiB | first byte ms | MiB/s |\n"
           "|---|---:|---:|\n", mib);
    const char *paths[2] = { "/whole", "/stream" };
    const char *names[2] = { "whole object first (before)",
                             "streamed (after)" };
    for (int p = 0; p < 2; p++) {
        _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d%s",
                                             http_server_port(srv), paths[p]);
        double *first = xcalloc((size_t)runs, sizeof(double));
        double *rate = xcalloc((size_t)runs, sizeof(double));
        for (int r = 0; r < runs; r++) {
            double ms[2];
            fetch_timed(url, len, ms);
            first[r] = ms[0];
            rate[r] = ms[1] > 0 ? mib / (ms[1] / 1e3) : 0;
        }
        qsort(first, (size_t)runs, sizeof(double), bench_cmp_double);
        qsort(rate, (size_t)runs, sizeof(double), bench_cmp_double);
        printf("| %s | %.0f | %.0f |\n", names[p], first[runs / 2],
               rate[runs / 2]);
        free(first);
        free(rate);
    }
    http_server_stop(srv, 0);
    if ((e = s->ops->remove(s, ID)) < 0)
        die("remove", e);
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 3;
    if (runs < 1 || runs > 50)
        runs = 3;
    struct tu_s3 srv;
    if (tu_s3_start(&srv) < 0) {
        printf("node or s3rver missing: run sh tools/npm-deps.sh\n");
        return 77;
    }
    if (tu_s3_raw(&srv, "PUT", "fog-bench", NULL) != 200)
        die("create bucket", -EIO);
    _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d/fog-bench",
                                         srv.port);
    _cleanup_free_ char *spool = xasprintf("%s/spool", srv.dir);
    _cleanup_free_ char *dir = xasprintf("%s/dirstore", srv.dir);
    struct bstore_s3_opts o = { .url = url, .key_file = srv.key_file,
                                .spool_dir = spool };
    struct bstore *stores[2] = { NULL, NULL };
    const char *names[2] = { "directory", "s3 (s3rver)" };
    int e;
    if ((e = bstore_dir_new(dir, 0, &stores[0])) < 0 ||
        (e = bstore_s3_new(&o, &stores[1])) < 0)
        die("store", e);

    static const int def[] = { 16, 128 };
    int nsizes = argc > 2 ? argc - 2 : (int)ARRAY_SIZE(def);
    printf("| store | MiB | append MiB/s | commit MiB/s | open ms |\n");
    printf("|---|---:|---:|---:|---:|\n");
    for (int i = 0; i < nsizes; i++) {
        int mib = argc > 2 ? atoi(argv[i + 2]) : def[i];
        if (mib < 1 || mib > 4096)
            continue;
        size_t len = (size_t)mib << 20;
        uint8_t *data = xmalloc(len);
        uint64_t seed = 1;
        for (size_t k = 0; k < len; k++)
            data[k] = (uint8_t)tu_xorshift(&seed);
        char hex[65];
        sha256_hex(data, len, hex);
        for (int st = 0; st < 2; st++) {
            double *m[3];
            for (int p = 0; p < 3; p++)
                m[p] = xcalloc((size_t)runs, sizeof(double));
            for (int r = 0; r < runs; r++) {
                double ms[3];
                one(stores[st], data, len, hex, ms);
                for (int p = 0; p < 3; p++)
                    m[p][r] = ms[p];
            }
            printf("| %s | %d |", names[st], mib);
            for (int p = 0; p < 3; p++) {
                qsort(m[p], (size_t)runs, sizeof(double), bench_cmp_double);
                double med = m[p][runs / 2];
                if (p == 2) /* a blob ready to stream: GetObject on S3 */
                    printf(" %.1f |", med);
                else
                    printf(" %.0f |", med > 0 ? mib / (med / 1e3) : 0.0);
                free(m[p]);
            }
            printf("\n");
        }
        free(data);
    }
    const char *rm = getenv("FOG_BENCH_RESTORE_MIB");
    int restore_mib = rm ? atoi(rm) : 256;
    if (restore_mib > 0 && restore_mib <= 4096)
        bench_restore(stores[1], runs, restore_mib);
    bstore_free(stores[0]);
    bstore_free(stores[1]);
    tu_s3_destroy(&srv);
    return 0;
}
