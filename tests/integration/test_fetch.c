/* images/fetch against a small HTTP server on loopback that can drop the
 * connection midway, ignore ranges, delay, and serve tampered bytes:
 * downloads resume, a mismatch never lands in the cache, concurrent
 * callers share one download, eviction keeps what is in use, an
 * address policy judges every connection, and the O_DIRECT writes and
 * those through the page cache land the same bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/ids.h"
#include "common/timeutil.h"
#include "images/addrpolicy.h"
#include "images/fetch.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOB (3u << 20)
#define NBLOBS 3

/* ---- the server ---- */

static struct srv {
    int lfd;
    int port;
    pthread_t thr;
    volatile bool stop;
    pthread_mutex_t lock;
    uint8_t *blob[NBLOBS];
    char sha[NBLOBS][65];
    /* behaviour */
    int drop_after;        /* > 0: close after this many body bytes ... */
    int drops_left;        /* ... this many times */
    bool tamper;
    bool ignore_range;
    bool extra_bytes;
    int delay_ms;
    /* what it saw */
    int requests;
    int range_requests;
    long long last_range;
} S;

static void srv_reset(void)
{
    pthread_mutex_lock(&S.lock);
    S.drop_after = S.drops_left = 0;
    S.tamper = S.ignore_range = S.extra_bytes = false;
    S.delay_ms = 0;
    S.requests = S.range_requests = 0;
    S.last_range = -1;
    pthread_mutex_unlock(&S.lock);
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        c += w;
        n -= (size_t)w;
    }
}

static void serve_one(int fd)
{
    char req[8192];
    size_t len = 0;
    while (len < sizeof(req) - 1) {
        ssize_t n = recv(fd, req + len, sizeof(req) - 1 - len, 0);
        if (n <= 0)
            return;
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    int idx = -1;
    if (sscanf(req, "GET /blob/%d ", &idx) != 1 || idx < 0 || idx >= NBLOBS) {
        static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: "
                                 "0\r\nConnection: close\r\n\r\n";
        pthread_mutex_lock(&S.lock);
        S.requests++;
        pthread_mutex_unlock(&S.lock);
        send_all(fd, nf, sizeof(nf) - 1);
        return;
    }
    long long from = -1;
    for (char *l = strstr(req, "\r\n"); l; l = strstr(l + 2, "\r\n"))
        if (strncasecmp(l + 2, "Range: bytes=", 13) == 0)
            from = atoll(l + 15);

    pthread_mutex_lock(&S.lock);
    S.requests++;
    if (from >= 0) {
        S.range_requests++;
        S.last_range = from;
    }
    int drop = 0;
    if (S.drops_left > 0) {
        S.drops_left--;
        drop = S.drop_after;
    }
    bool tamper = S.tamper, ignore = S.ignore_range, extra = S.extra_bytes;
    int delay = S.delay_ms;
    pthread_mutex_unlock(&S.lock);
    if (delay)
        usleep((useconds_t)delay * 1000);

    size_t start = (from >= 0 && !ignore) ? (size_t)from : 0;
    if (start > BLOB)
        start = BLOB;
    size_t total = extra ? BLOB + 4096 : BLOB;
    _cleanup_free_ uint8_t *body = xcalloc(1, total);
    memcpy(body, S.blob[idx], BLOB);
    if (tamper)
        body[BLOB / 2] ^= 0x01;
    char hdr[256];
    int hl;
    if (start > 0 && start == total) {
        hl = snprintf(hdr, sizeof(hdr), "HTTP/1.1 416 Range Not Satisfiable\r\n"
                      "Content-Range: bytes */%zu\r\nContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n", total);
        send_all(fd, hdr, (size_t)hl);
        return;
    }
    if (start > 0)
        hl = snprintf(hdr, sizeof(hdr), "HTTP/1.1 206 Partial Content\r\n"
                      "Content-Range: bytes %zu-%zu/%zu\r\nContent-Length: "
                      "%zu\r\nConnection: close\r\n\r\n", start, total - 1,
                      total, total - start);
    else
        hl = snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nContent-Length: "
                      "%zu\r\nConnection: close\r\n\r\n", total);
    send_all(fd, hdr, (size_t)hl);
    size_t n = total - start;
    if (drop > 0 && (size_t)drop < n)
        n = (size_t)drop;
    send_all(fd, body + start, n);
}

static void *srv_main(void *arg)
{
    while (!S.stop) {
        struct pollfd p = { .fd = S.lfd, .events = POLLIN };
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(S.lfd, NULL, NULL);
        if (fd < 0)
            continue;
        serve_one(fd);
        shutdown(fd, SHUT_RDWR);
        close(fd);
    }
    return NULL;
}

static char *url_of(int idx)
{
    return xasprintf("http://127.0.0.1:%d/blob/%d", S.port, idx);
}

/* ---- fixtures ---- */

static char *dir;
/* Caches write through the page cache rather than with O_DIRECT. */
static bool page_cache;

static struct fetch_cache *cache_open(const char *sub, uint64_t budget,
                                      fetch_in_use_fn in_use, void *data)
{
    _cleanup_free_ char *d = xasprintf("%s/%s", dir, sub);
    struct fetch_opts o = { .dir = d, .budget_bytes = budget, .attempts = 4,
                            .stall_timeout_s = 5, .in_use = in_use,
                            .in_use_data = data, .page_cache = page_cache };
    char *why = NULL;
    struct fetch_cache *c = fetch_cache_new(&o, &why);
    if (!c)
        fail_msg("cache: %s", why);
    return c;
}

static void assert_cached_equal(struct fetch_cache *c, int idx)
{
    _cleanup_free_ char *p = fetch_cache_path(c, S.sha[idx]);
    _cleanup_free_ char *data = NULL;
    size_t len;
    assert_int_equal(file_read(p, BLOB * 2, &data, &len), 0);
    assert_int_equal(len, BLOB);
    assert_memory_equal(data, S.blob[idx], BLOB);
}

static void download_is_verified_cached_and_reused(void **state)
{
    srv_reset();
    struct fetch_cache *c = cache_open("a", 0, NULL, NULL);
    _cleanup_free_ char *url = url_of(0);
    _cleanup_free_ char *path = NULL, *path2 = NULL, *why = NULL;
    assert_int_equal(fetch_get(c, url, S.sha[0], BLOB, &path, &why), 0);
    assert_cached_equal(c, 0);
    assert_true(fetch_cache_has(c, S.sha[0]));
    assert_int_equal(fetch_get(c, url, S.sha[0], BLOB, &path2, &why), 0);
    assert_string_equal(path, path2);
    assert_int_equal(S.requests, 1);
    struct fetch_stats st;
    fetch_cache_stats(c, &st);
    assert_int_equal(st.downloads, 1);
    assert_int_equal(st.hits, 1);
    assert_int_equal(fetch_cache_usage(c), BLOB);
    fetch_cache_free(c);
}

/* Blob 1 into cache `sub`, the connection dropped twice after `drop`
 * bytes: each attempt resumes at the byte after the last one received. */
static void resume_after_two_drops(const char *sub, int drop)
{
    srv_reset();
    S.drop_after = drop;
    S.drops_left = 2;
    struct fetch_cache *c = cache_open(sub, 0, NULL, NULL);
    _cleanup_free_ char *url = url_of(1);
    _cleanup_free_ char *path = NULL, *why = NULL;
    assert_int_equal(fetch_get(c, url, S.sha[1], BLOB, &path, &why), 0);
    assert_cached_equal(c, 1);
    assert_int_equal(S.requests, 3);
    assert_int_equal(S.range_requests, 2);
    assert_int_equal(S.last_range, 2 * drop);
    struct fetch_stats st;
    fetch_cache_stats(c, &st);
    assert_int_equal(st.resumed, 2);
    assert_int_equal(st.bytes, BLOB); /* nothing fetched twice */
    fetch_cache_free(c);
}

static void interrupted_download_resumes_with_range(void **state)
{
    resume_after_two_drops("b", 1 << 20);
}

/* Blob 2 into cache `sub`, whose .part holds its first 1,000,000 bytes
 * as a crash left them. */
static void resume_a_crash_part(const char *sub)
{
    srv_reset();
    struct fetch_cache *c = cache_open(sub, 0, NULL, NULL);
    _cleanup_free_ char *part = xasprintf("%s/%s/%s.part", dir, sub,
                                          S.sha[2]);
    assert_int_equal(file_write_atomic(part, S.blob[2], 1000000, 0600), 0);
    _cleanup_free_ char *url = url_of(2);
    _cleanup_free_ char *path = NULL, *why = NULL;
    assert_int_equal(fetch_get(c, url, S.sha[2], BLOB, &path, &why), 0);
    assert_cached_equal(c, 2);
    assert_int_equal(S.requests, 1);
    assert_int_equal(S.last_range, 1000000);
    struct stat st;
    assert_int_equal(stat(part, &st), -1);
    fetch_cache_free(c);
}

static void partial_file_left_by_a_crash_is_resumed(void **state)
{
    resume_a_crash_part("c");
}

/* Dropped at offsets no block boundary divides: each attempt resumes at
 * the exact byte after the last one received, and the O_DIRECT writes
 * (whole blocks) rewrite the odd end of the last attempt unchanged. */
static void interrupted_at_odd_offsets_resumes_exactly(void **state)
{
    resume_after_two_drops("odd", 1000003);
}

/* Resident pages of the file at path (mincore on a mapping of it). */
static size_t resident_pages(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    assert_true(m != MAP_FAILED);
    long pg = sysconf(_SC_PAGESIZE);
    size_t n = ((size_t)st.st_size + (size_t)pg - 1) / (size_t)pg, in = 0;
    unsigned char *v = xcalloc(n, 1);
    assert_int_equal(mincore(m, (size_t)st.st_size, v), 0);
    for (size_t i = 0; i < n; i++)
        in += v[i] & 1;
    free(v);
    munmap(m, (size_t)st.st_size);
    return in;
}

/* A download does not fill the page cache where the file system takes
 * O_DIRECT: of a 3 MiB image (whole blocks) no page stays resident. With
 * page_cache, it does. */
static void direct_writes_leave_the_page_cache_alone(void **state)
{
    _cleanup_free_ char *probe = xasprintf("%s/direct-probe", dir);
    int pfd = open(probe, O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
    if (pfd < 0) {
        unlink(probe);
        skip(); /* this file system refuses O_DIRECT */
    }
    close(pfd);
    unlink(probe);
    srv_reset();
    for (int pc = 0; pc < 2; pc++) {
        page_cache = pc;
        _cleanup_free_ char *sub = xasprintf("resident-%d", pc);
        struct fetch_cache *c = cache_open(sub, 0, NULL, NULL);
        _cleanup_free_ char *url = url_of(2);
        _cleanup_free_ char *path = NULL, *why = NULL;
        assert_int_equal(fetch_get(c, url, S.sha[2], BLOB, &path, &why), 0);
        size_t in = resident_pages(path);
        if (pc)
            assert_true(in > 0);
        else
            assert_int_equal(in, 0);
        assert_cached_equal(c, 2);
        fetch_cache_free(c);
    }
    page_cache = false;
}

/* The page cache path resumes as the O_DIRECT one does. */
static void page_cache_writes_resume_too(void **state)
{
    page_cache = true;
    resume_after_two_drops("pc-b", 1 << 20);
    resume_after_two_drops("pc-odd", 1000003);
    resume_a_crash_part("pc-c");
    page_cache = false;
}

static void server_ignoring_range_still_gives_right_bytes(void **state)
{
    srv_reset();
    S.drop_after = 1 << 20;
    S.drops_left = 1;
    S.ignore_range = true;
    struct fetch_cache *c = cache_open("d", 0, NULL, NULL);
    _cleanup_free_ char *url = url_of(0);
    _cleanup_free_ char *path = NULL, *why = NULL;
    assert_int_equal(fetch_get(c, url, S.sha[0], BLOB, &path, &why), 0);
    assert_cached_equal(c, 0);
    assert_int_equal(S.requests, 2);
    fetch_cache_free(c);
}

static void tampered_bytes_are_refused_and_not_kept(void **state)
{
    srv_reset();
    S.tamper = true;
    struct fetch_cache *c = cache_open("e", 0, NULL, NULL);
    _cleanup_free_ char *url = url_of(0);
    _cleanup_free_ char *path = NULL, *why = NULL;
    assert_int_equal(fetch_get(c, url, S.sha[0], BLOB, &path, &why), -EBADMSG);
    assert_null(path);
    print_message("  %s\n", why);
    assert_non_null(strstr(why, "SHA-256"));
    assert_false(fetch_cache_has(c, S.sha[0]));
    _cleanup_free_ char *part = xasprintf("%s/e/%s.part", dir, S.sha[0]);
    assert_int_equal(access(part, F_OK), -1);
    struct fetch_stats st;
    fetch_cache_stats(c, &st);
    assert_int_equal(st.mismatches, 1);

    /* a later honest server is fetched from scratch */
    srv_reset();
    free(why);
    why = NULL;
    assert_int_equal(fetch_get(c, url, S.sha[0], BLOB, &path, &why), 0);
    assert_cached_equal(c, 0);
    assert_int_equal(S.range_requests, 0);
    fetch_cache_free(c);
}

static void more_bytes_than_announced_are_refused(void **state)
{
    srv_reset();
    S.extra_bytes = true;
    struct fetch_cache *c = cache_open("f", 0, NULL, NULL);
    _cleanup_free_ char *url = url_of(1);
    _cleanup_free_ char *path = NULL, *why = NULL;
    assert_int_equal(fetch_get(c, url, S.sha[1], BLOB, &path, &why), -EBADMSG);
    print_message("  %s\n", why);
    assert_false(fetch_cache_has(c, S.sha[1]));
    fetch_cache_free(c);
}

static void http_errors_and_bad_digests_fail_fast(void **state)
{
    srv_reset();
    struct fetch_cache *c = cache_open("g", 0, NULL, NULL);
    _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d/missing", S.port);
    _cleanup_free_ char *path = NULL, *why = NULL;
    assert_int_equal(fetch_get(c, url, S.sha[1], BLOB, &path, &why), -EIO);
    assert_non_null(strstr(why, "404"));
    assert_int_equal(S.requests, 1);
    free(why);
    why = NULL;
    assert_int_equal(fetch_get(c, url, "../../etc/passwd", 0, &path, &why),
                     -EINVAL);
    assert_null(fetch_cache_path(c, "ABCD"));
    fetch_cache_free(c);
}

/* With a policy, a refused address is never connected to nor retried,
 * and an allowed one is reached directly even when the environment names
 * a proxy (which would connect out of the policy's sight). */
static void policy_refuses_internal_addresses_and_ignores_proxies(
    void **state)
{
    srv_reset();
    _cleanup_free_ char *d = xasprintf("%s/p", dir);
    struct addrpolicy *none, *lo;
    assert_int_equal(addrpolicy_new(NULL, &none, NULL), 0);
    assert_int_equal(addrpolicy_new("127.0.0.1/32", &lo, NULL), 0);
    struct fetch_opts o = { .dir = d, .attempts = 4, .policy = none };
    struct fetch_cache *c = fetch_cache_new(&o, NULL);
    _cleanup_free_ char *url = url_of(0);
    _cleanup_free_ char *path = NULL, *why = NULL;
    assert_int_equal(fetch_get(c, url, S.sha[0], BLOB, &path, &why), -EACCES);
    assert_non_null(strstr(why, "127.0.0.1 is a loopback address"));
    assert_int_equal(S.requests, 0);
    struct fetch_stats fs;
    fetch_cache_stats(c, &fs);
    assert_int_equal(fs.downloads, 1); /* no second attempt */
    assert_false(fetch_cache_has(c, S.sha[0]));
    fetch_cache_free(c);

    setenv("http_proxy", "http://127.0.0.1:9", 1);
    o.policy = lo;
    c = fetch_cache_new(&o, NULL);
    int e = fetch_get(c, url, S.sha[0], BLOB, &path, NULL);
    unsetenv("http_proxy");
    assert_int_equal(e, 0);
    assert_int_equal(S.requests, 1);
    fetch_cache_free(c);
    addrpolicy_free(none);
    addrpolicy_free(lo);
}

struct racer {
    struct fetch_cache *c;
    const char *url;
    int result;
    char *path;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    char *why = NULL;
    r->result = fetch_get(r->c, r->url, S.sha[2], BLOB, &r->path, &why);
    free(why);
    return NULL;
}

static void concurrent_requests_share_one_download(void **state)
{
    srv_reset();
    S.delay_ms = 300;
    struct fetch_cache *c = cache_open("h", 0, NULL, NULL);
    _cleanup_free_ char *url = url_of(2);
    struct racer r[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (struct racer){ .c = c, .url = url, .result = -1 };
        pthread_create(&t[i], NULL, race, &r[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL); /* all, before any is judged */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r[i].result, 0);
        assert_non_null(r[i].path);
        free(r[i].path);
    }
    assert_int_equal(S.requests, 1);
    assert_cached_equal(c, 2);
    fetch_cache_free(c);
}

static volatile int cancel_flag;

static void *cancel_soon(void *arg)
{
    usleep(200000);
    cancel_flag = 1;
    return NULL;
}

static void cancel_stops_a_stalled_transfer_and_keeps_nothing(void **state)
{
    srv_reset();
    S.delay_ms = 4000;
    _cleanup_free_ char *d = xasprintf("%s/k", dir);
    struct fetch_opts o = { .dir = d, .cancel = &cancel_flag };
    char *why = NULL, *path = NULL;
    struct fetch_cache *c = fetch_cache_new(&o, &why);
    assert_non_null(c);
    _cleanup_free_ char *url = url_of(0);
    pthread_t t;
    pthread_create(&t, NULL, cancel_soon, NULL);
    int64_t t0 = now_ms();
    int e = fetch_get(c, url, S.sha[0], BLOB, &path, &why);
    int64_t took = now_ms() - t0;
    pthread_join(t, NULL);
    assert_int_equal(e, -ECANCELED);
    assert_true(took < 3000);
    assert_false(fetch_cache_has(c, S.sha[0]));
    free(why);
    fetch_cache_free(c);
}

static bool keep_blob0(const char *sha, void *data)
{
    return streq(sha, S.sha[0]);
}

static void lru_entries_are_evicted_under_budget(void **state)
{
    srv_reset();
    struct fetch_cache *c = cache_open("i", BLOB * 2 + BLOB / 2, NULL, NULL);
    _cleanup_free_ char *u0 = url_of(0), *u1 = url_of(1), *u2 = url_of(2);
    char *p, *why = NULL;
    assert_int_equal(fetch_get(c, u0, S.sha[0], BLOB, &p, &why), 0);
    free(p);
    usleep(20000);
    assert_int_equal(fetch_get(c, u1, S.sha[1], BLOB, &p, &why), 0);
    free(p);
    usleep(20000);
    /* use 0 again: 1 becomes the least recently used */
    assert_int_equal(fetch_get(c, u0, S.sha[0], BLOB, &p, &why), 0);
    free(p);
    usleep(20000);
    assert_int_equal(fetch_get(c, u2, S.sha[2], BLOB, &p, &why), 0);
    free(p);
    assert_true(fetch_cache_has(c, S.sha[0]));
    assert_false(fetch_cache_has(c, S.sha[1]));
    assert_true(fetch_cache_has(c, S.sha[2]));
    assert_true(fetch_cache_usage(c) <= BLOB * 2 + BLOB / 2);
    fetch_cache_free(c);

    /* an entry in use survives even when it is the oldest */
    struct fetch_cache *k = cache_open("j", BLOB, keep_blob0, NULL);
    assert_int_equal(fetch_get(k, u0, S.sha[0], BLOB, &p, &why), 0);
    free(p);
    usleep(20000);
    assert_int_equal(fetch_get(k, u1, S.sha[1], BLOB, &p, &why), 0);
    free(p);
    assert_true(fetch_cache_has(k, S.sha[0]));
    assert_true(fetch_cache_has(k, S.sha[1])); /* just fetched: kept */
    usleep(20000);
    assert_int_equal(fetch_get(k, u2, S.sha[2], BLOB, &p, &why), 0);
    free(p);
    assert_true(fetch_cache_has(k, S.sha[0]));
    assert_false(fetch_cache_has(k, S.sha[1]));
    assert_true(fetch_cache_has(k, S.sha[2]));
    struct fetch_stats st;
    fetch_cache_stats(k, &st);
    assert_int_equal(st.evicted, 1);
    fetch_cache_free(k);
    assert_null(why);
}

static int setup(void **state)
{
    dir = tu_tempdir("fetch");
    pthread_mutex_init(&S.lock, NULL);
    for (int i = 0; i < NBLOBS; i++) {
        S.blob[i] = xmalloc(BLOB);
        random_bytes(S.blob[i], BLOB);
        sha256_hex(S.blob[i], BLOB, S.sha[i]);
    }
    S.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    if (S.lfd < 0 || bind(S.lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(S.lfd, 16) < 0 ||
        getsockname(S.lfd, (struct sockaddr *)&a, &al) < 0)
        return -1;
    S.port = ntohs(a.sin_port);
    pthread_create(&S.thr, NULL, srv_main, NULL);
    return 0;
}

static int teardown(void **state)
{
    S.stop = true;
    pthread_join(S.thr, NULL);
    close(S.lfd);
    for (int i = 0; i < NBLOBS; i++)
        free(S.blob[i]);
    tu_rmrf(dir);
    free(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(download_is_verified_cached_and_reused),
        cmocka_unit_test(interrupted_download_resumes_with_range),
        cmocka_unit_test(partial_file_left_by_a_crash_is_resumed),
        cmocka_unit_test(interrupted_at_odd_offsets_resumes_exactly),
        cmocka_unit_test(direct_writes_leave_the_page_cache_alone),
        cmocka_unit_test(page_cache_writes_resume_too),
        cmocka_unit_test(server_ignoring_range_still_gives_right_bytes),
        cmocka_unit_test(tampered_bytes_are_refused_and_not_kept),
        cmocka_unit_test(more_bytes_than_announced_are_refused),
        cmocka_unit_test(http_errors_and_bad_digests_fail_fast),
        cmocka_unit_test(policy_refuses_internal_addresses_and_ignores_proxies),
        cmocka_unit_test(concurrent_requests_share_one_download),
        cmocka_unit_test(lru_entries_are_evicted_under_budget),
        cmocka_unit_test(cancel_stops_a_stalled_transfer_and_keeps_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
