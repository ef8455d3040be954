/* A backup blob in an S3 bucket (s3rver on loopback) reaches the node as
 * the hub gets it from S3, never downloaded whole first. The hub speaks
 * to s3rver through a relay here that can hold S3's answer after its
 * first GATE bytes: with it held, the node's fetch still gets its first
 * bytes (a hub that read the whole object first would send none until
 * the gate opens, so no timing is measured), then the whole blob with the
 * digest the node checks. A fetch resumed with a Range makes the hub ask
 * S3 for that range only; a client that goes away mid-stream (S3 held or
 * flowing) leaves the hub with no more threads, descriptors or S3
 * connections than before; S3 failing midway cuts the node's answer, and
 * the node's fetch resumes it and checks the digest. Skipped (77) without
 * node and s3rver. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentproto.h"
#include "common/buf.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "controller/bstore_s3.h"
#include "images/fetch.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <nettle/sha2.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define BLOB_MIB 64
#define GATE (4u << 20) /* S3 bytes let through per connection while held */
#define RELAY_BUF (64u << 10)

static struct tu_s3 s3;
static struct tu_ctl ctl;
static char *node_key, *backup_id;
static uint8_t *blob;
/* serve's extra arguments: they outlive the controller */
static char *args[] = { "--backup-store", NULL, "--s3-access-key-file", NULL,
                        NULL };
static size_t blob_len;

/* ---- the relay between the hub and s3rver ---- */
static struct {
    int fd, port;
    pthread_t thr;
    pthread_mutex_t lock;
    bool held;          /* S3's answers stop after GATE bytes */
    uint64_t cut_at;    /* > 0: the next answer this long is cut there */
    unsigned cuts;
    unsigned open;      /* connections from the hub still open */
    uint64_t from_s3;   /* body and head bytes relayed to the hub */
    struct buf heads;   /* the start of each request the hub sent */
    bool stop;
} relay = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void *relay_conn(void *arg)
{
    int hub = (int)(intptr_t)arg;
    int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)s3.port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    uint64_t fwd = 0;
    bool head_logged = false;
    char *b = xmalloc(RELAY_BUF);
    if (connect(up, (struct sockaddr *)&a, sizeof(a)) == 0) {
        for (;;) {
            pthread_mutex_lock(&relay.lock);
            bool held = relay.held, stop = relay.stop;
            pthread_mutex_unlock(&relay.lock);
            if (stop)
                break;
            size_t room = !held ? RELAY_BUF : fwd >= GATE ? 0
                          : GATE - fwd < RELAY_BUF ? GATE - fwd
                                                     : RELAY_BUF;
            struct pollfd p[2] = { { hub, POLLIN | POLLRDHUP, 0 },
                                   { up, room ? POLLIN : 0, 0 } };
            if (poll(p, 2, 50) < 0)
                break;
            if (p[0].revents) {
                ssize_t n = read(hub, b, RELAY_BUF);
                if (n <= 0)
                    break; /* the hub hung up */
                if (!head_logged) {
                    pthread_mutex_lock(&relay.lock);
                    buf_append(&relay.heads, b, (size_t)n < 1024 ? (size_t)n
                                                                 : 1024);
                    buf_puts(&relay.heads, "\n--\n");
                    pthread_mutex_unlock(&relay.lock);
                    head_logged = true;
                }
                if (fd_write_full(up, b, (size_t)n) < 0)
                    break;
            }
            if (room && p[1].revents) {
                ssize_t n = read(up, b, room);
                if (n <= 0)
                    break;
                if (fd_write_full(hub, b, (size_t)n) < 0)
                    break;
                fwd += (uint64_t)n;
                pthread_mutex_lock(&relay.lock);
                relay.from_s3 += (uint64_t)n;
                bool cut = relay.cut_at && fwd >= relay.cut_at;
                if (cut) {
                    relay.cut_at = 0;
                    relay.cuts++;
                }
                pthread_mutex_unlock(&relay.lock);
                if (cut)
                    break; /* S3 fails midway */
            }
        }
    }
    free(b);
    close(up);
    close(hub);
    pthread_mutex_lock(&relay.lock);
    relay.open--;
    pthread_mutex_unlock(&relay.lock);
    return NULL;
}

static void *relay_main(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept4(relay.fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            return NULL;
        pthread_mutex_lock(&relay.lock);
        bool stop = relay.stop;
        if (!stop)
            relay.open++;
        pthread_mutex_unlock(&relay.lock);
        if (stop) {
            close(c);
            return NULL;
        }
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, relay_conn, (void *)(intptr_t)c) != 0)
            abort();
        pthread_attr_destroy(&at);
    }
}

static void relay_hold(bool held)
{
    pthread_mutex_lock(&relay.lock);
    relay.held = held;
    pthread_mutex_unlock(&relay.lock);
}

static unsigned relay_open(void)
{
    pthread_mutex_lock(&relay.lock);
    unsigned n = relay.open;
    pthread_mutex_unlock(&relay.lock);
    return n;
}

/* ---- a node's fetch of the blob ---- */
struct fetch {
    const char *id;    /* the backup, NULL: backup_id */
    const char *range; /* "bytes=N-" or NULL */
    size_t stop_after; /* > 0: hang up once this many bytes came */
    pthread_mutex_t lock;
    uint64_t got;
    struct sha256_ctx sha;
    long status;
    CURLcode cr;
    bool done;
    pthread_t thr;
};

static size_t fetch_write(char *p, size_t size, size_t n, void *ud)
{
    struct fetch *f = ud;
    size_t len = size * n;
    pthread_mutex_lock(&f->lock);
    sha256_update(&f->sha, len, (const uint8_t *)p);
    f->got += len;
    bool stop = f->stop_after && f->got >= f->stop_after;
    pthread_mutex_unlock(&f->lock);
    return stop ? 0 : len;
}

static void *fetch_main(void *arg)
{
    struct fetch *f = arg;
    _cleanup_free_ char *url = xasprintf("%s%s/%s/blob", ctl.url,
                                         AGENT_BACKUP_PATH,
                                         f->id ? f->id : backup_id);
    _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s",
                                          node_key);
    _cleanup_free_ char *contract = xasprintf("%s: %d", AGENT_CONTRACT_HEADER,
                                              AGENT_CONTRACT);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    h = curl_slist_append(h, contract);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, ctl.ca);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fetch_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    if (f->range)
        curl_easy_setopt(c, CURLOPT_RANGE, f->range + 6);
    CURLcode cr = curl_easy_perform(c);
    long st = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    pthread_mutex_lock(&f->lock);
    f->cr = cr;
    f->status = st;
    f->done = true;
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

static void fetch_start(struct fetch *f)
{
    pthread_mutex_init(&f->lock, NULL);
    sha256_init(&f->sha);
    assert_int_equal(pthread_create(&f->thr, NULL, fetch_main, f), 0);
}

/* Wait until the fetch has `bytes` or is done, for up to timeout_ms: the
 * bytes it has. */
static uint64_t fetch_wait(struct fetch *f, uint64_t bytes, int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms;
    for (;;) {
        pthread_mutex_lock(&f->lock);
        uint64_t got = f->got;
        bool done = f->done;
        pthread_mutex_unlock(&f->lock);
        if (got >= bytes || done || mono_ms() >= end)
            return got;
        usleep(20000);
    }
}

/* Join the fetch; its digest in hex. */
static void fetch_join(struct fetch *f, char hex[65])
{
    pthread_join(f->thr, NULL);
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256_digest(&f->sha, sizeof(d), d);
    hex_encode(d, sizeof(d), hex);
    pthread_mutex_destroy(&f->lock);
}

/* ---- the hub's resources ---- */
/* Entries of /proc/PID/what. */
static unsigned count_dir(pid_t pid, const char *what)
{
    _cleanup_free_ char *p = xasprintf("/proc/%d/%s", (int)pid, what);
    DIR *d = opendir(p);
    unsigned n = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* How many of the hub's open files are under its S3 spool (where it once
 * downloaded a blob before answering). */
static unsigned hub_spool_files(void)
{
    _cleanup_free_ char *dir = xasprintf("/proc/%d/fd", (int)ctl.pid);
    _cleanup_free_ char *spool = xasprintf("%s/s3-spool", ctl.dir);
    DIR *d = opendir(dir);
    unsigned n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        char to[4096];
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, e->d_name);
        ssize_t l = readlink(p, to, sizeof(to) - 1);
        if (l > 0) {
            to[l] = '\0';
            n += strncmp(to, spool, strlen(spool)) == 0;
        }
    }
    if (d)
        closedir(d);
    return n;
}

/* The hub's peak resident memory so far, in KiB. */
static long hub_peak_kib(void)
{
    _cleanup_free_ char *p = xasprintf("/proc/%d/status", (int)ctl.pid);
    _cleanup_free_ char *text = NULL;
    if (file_read(p, 1 << 16, &text, NULL) < 0)
        return -1;
    const char *h = strstr(text, "VmHWM:");
    return h ? strtol(h + 6, NULL, 10) : -1;
}

static unsigned hub_fds(void) { return count_dir(ctl.pid, "fd"); }
static unsigned hub_threads(void)
{
    return count_dir(ctl.pid, "task");
}

/* Within 30 s the hub is back to at most `fds` and `threads` and holds no
 * S3 connection. */
static bool hub_back_to(unsigned fds, unsigned threads)
{
    int64_t end = mono_ms() + 30000;
    while (mono_ms() < end) {
        if (hub_fds() <= fds && hub_threads() <= threads &&
            relay_open() == 0)
            return true;
        usleep(100000);
    }
    fprintf(stderr, "hub: %u fds (was %u), %u threads (was %u), %u S3 "
            "connections\n", hub_fds(), fds, hub_threads(), threads,
            relay_open());
    return false;
}

/* ---- the tests ---- */

static void first_bytes_reach_the_node_while_s3_is_held(void **state)
{
    (void)state;
    long peak_before = hub_peak_kib();
    assert_true(peak_before > 0);
    relay_hold(true);
    struct fetch f = { 0 };
    fetch_start(&f);
    /* A hub that downloads the object first sends nothing while S3 is
     * held: this wait would run out. */
    uint64_t got = fetch_wait(&f, 1 << 20, 60000);
    unsigned spooled = hub_spool_files();
    pthread_mutex_lock(&relay.lock);
    uint64_t from_s3 = relay.from_s3;
    pthread_mutex_unlock(&relay.lock);
    relay_hold(false);
    char hex[65], want[65];
    fetch_join(&f, hex);
    assert_true(got >= 1 << 20);
    assert_true(from_s3 < blob_len / 4);
    assert_int_equal(spooled, 0);
    assert_int_equal(f.cr, CURLE_OK);
    assert_int_equal(f.status, 200);
    assert_int_equal(f.got, blob_len);
    sha256_hex(blob, blob_len, want);
    assert_string_equal(hex, want);
    /* nothing like the object held in memory on its way */
    long grew = hub_peak_kib() - peak_before;
    if (grew > 16 << 10)
        fail_msg("the hub's peak memory grew by %ld KiB", grew);
}

static void range_resumes_with_a_ranged_get(void **state)
{
    (void)state;
    uint64_t off = (40u << 20) + 123;
    _cleanup_free_ char *range = xasprintf("bytes=%llu-",
                                           (unsigned long long)off);
    pthread_mutex_lock(&relay.lock);
    buf_free(&relay.heads);
    relay.from_s3 = 0;
    pthread_mutex_unlock(&relay.lock);
    struct fetch f = { .range = range };
    fetch_start(&f);
    char hex[65], want[65];
    fetch_join(&f, hex);
    assert_int_equal(f.cr, CURLE_OK);
    assert_int_equal(f.status, 206);
    assert_int_equal(f.got, blob_len - off);
    sha256_hex(blob + off, blob_len - off, want);
    assert_string_equal(hex, want);
    /* S3 was asked for that span, and sent about that much */
    _cleanup_free_ char *asked = xasprintf("Range: bytes=%llu-%llu",
                                           (unsigned long long)off,
                                           (unsigned long long)blob_len - 1);
    pthread_mutex_lock(&relay.lock);
    bool ranged = strstr(buf_str(&relay.heads), asked) != NULL;
    uint64_t from_s3 = relay.from_s3;
    pthread_mutex_unlock(&relay.lock);
    if (!ranged)
        fail_msg("S3 was not asked for '%s': %s", asked,
                 buf_str(&relay.heads));
    assert_true(from_s3 < blob_len - off + 65536);
}

static void client_gone_frees_the_hub(void **state)
{
    (void)state;
    /* what a finished fetch leaves: the baseline */
    unsigned fds = hub_fds(), threads = hub_threads();
    assert_true(fds > 0 && threads > 0);
    for (int held = 1; held >= 0; held--) {
        relay_hold(held);
        struct fetch f = { .stop_after = held ? 1 : 8u << 20 };
        fetch_start(&f);
        char hex[65];
        fetch_join(&f, hex);
        assert_int_equal(f.cr, CURLE_WRITE_ERROR);
        /* S3 held, the hub sees its client hang up without a byte more
         * from S3; flowing, at its next write. */
        if (!hub_back_to(fds, threads))
            fail_msg("the hub kept what the %s stream held",
                     held ? "held" : "flowing");
    }
    relay_hold(false);
}

/* S3's answer cut midway: the hub cuts its own, and the node's fetch
 * (images/fetch.c, as the agent runs it) resumes from what it has and
 * checks the digest of the whole. */
static void s3_failure_midway_is_resumed_by_the_node(void **state)
{
    (void)state;
    pthread_mutex_lock(&relay.lock);
    relay.cut_at = 8u << 20;
    relay.cuts = 0;
    pthread_mutex_unlock(&relay.lock);
    _cleanup_free_ char *dir = xasprintf("%s/node-cache", s3.dir);
    struct fetch_opts o = { .dir = dir, .ca_file = ctl.ca,
                            .bearer = node_key };
    _cleanup_free_ char *why = NULL;
    struct fetch_cache *cache = fetch_cache_new(&o, &why);
    assert_non_null(cache);
    _cleanup_free_ char *url = xasprintf("%s%s/%s/blob", ctl.url,
                                         AGENT_BACKUP_PATH, backup_id);
    char sha[65];
    sha256_hex(blob, blob_len, sha);
    _cleanup_free_ char *path = NULL;
    int e = fetch_get(cache, url, sha, blob_len, &path, &why);
    if (e < 0)
        fail_msg("fetch: %s", why ? why : strerror(-e));
    struct fetch_stats st;
    fetch_cache_stats(cache, &st);
    fetch_cache_free(cache);
    pthread_mutex_lock(&relay.lock);
    unsigned cuts = relay.cuts;
    pthread_mutex_unlock(&relay.lock);
    assert_int_equal(cuts, 1);
    assert_true(st.resumed >= 1);
    assert_int_equal(st.mismatches, 0);
    assert_int_equal(st.bytes, blob_len); /* no byte twice */
}

/* A ready backup whose object is not in the bucket: the answer (its size
 * from the backup's row, S3 not asked on the connection thread) ends
 * without a byte, and the hub says why. */
static void missing_object_cuts_the_answer(void **state)
{
    (void)state;
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    tu_sql(&ctl, "INSERT INTO vm_backups (id, vm_id, kind, state, size, "
           "sha256, created_at, done_at) SELECT '%s', vm_id, 'manual', "
           "'ready', 1000, sha256, 2, 2 FROM vm_backups WHERE id = '%s'", id,
           backup_id);
    struct fetch f = { .id = id };
    fetch_start(&f);
    char hex[65];
    fetch_join(&f, hex);
    assert_int_equal(f.cr, CURLE_PARTIAL_FILE);
    assert_int_equal(f.got, 0);
    _cleanup_free_ char *why = xasprintf("backup %s: its blob is missing", id);
    assert_int_equal(tu_count_in_file(ctl.log, why), 1);
}

static int setup(void **state)
{
    (void)state;
    if (tu_s3_raw(&s3, "PUT", "fog-stream", NULL) != 200)
        return -1;
    relay.port = tu_free_port();
    relay.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)relay.port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(relay.fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(relay.fd, 64) < 0 ||
        pthread_create(&relay.thr, NULL, relay_main, NULL) != 0)
        return -1;

    args[1] = xasprintf("http://127.0.0.1:%d/fog-stream", relay.port);
    args[3] = s3.key_file;
    tu_ctl_start(&ctl, (const char *const *)args);
    node_key = tu_node_register(&ctl, "st-node", NULL);
    _cleanup_free_ char *tenant = tu_account(&ctl, "alice", "tenant");
    json_auto_t *vm = tu_vm_post(&ctl, tenant, "big", 1,
                                 "\"power_state\":\"stopped\"", 201);
    const char *vm_id = json_str(vm, "id");
    tu_sql(&ctl, "UPDATE vms SET node_id = (SELECT id FROM nodes WHERE name "
           "= 'st-node') WHERE id = '%s'", vm_id);

    /* The blob, put straight into the bucket. */
    blob_len = (size_t)BLOB_MIB << 20;
    blob = xmalloc(blob_len);
    uint64_t seed = 5;
    for (size_t i = 0; i < blob_len; i++)
        blob[i] = (uint8_t)tu_xorshift(&seed);
    char sha[65], id[UUID_STR_LEN + 1];
    sha256_hex(blob, blob_len, sha);
    uuid_generate_str(id);
    backup_id = xstrdup(id);
    _cleanup_free_ char *direct = xasprintf("http://127.0.0.1:%d/fog-stream",
                                            s3.port);
    _cleanup_free_ char *spool = xasprintf("%s/writer", s3.dir);
    struct bstore_s3_opts o = { .url = direct, .key_file = s3.key_file,
                                .spool_dir = spool };
    struct bstore *bs = NULL;
    if (bstore_s3_new(&o, &bs) < 0 || bs->ops->begin(bs, id) < 0 ||
        bs->ops->append(bs, id, 0, blob, blob_len, NULL) < 0 ||
        bs->ops->commit(bs, id, sha, blob_len) < 0)
        return -1;
    bstore_free(bs);
    tu_sql(&ctl, "INSERT INTO vm_backups (id, vm_id, kind, state, size, "
           "sha256, created_at, done_at) VALUES ('%s', '%s', 'manual', "
           "'ready', %llu, '%s', 1, 1)", id, vm_id, (unsigned long long)blob_len,
           sha);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    /* A sanitizer build of the hub says what it found at its exit. */
    tu_ctl_stop(&ctl, SIGTERM);
    int found = tu_count_in_file(ctl.log, "Sanitizer") +
                tu_count_in_file(ctl.log, "runtime error");
    if (found) {
        _cleanup_free_ char *log = NULL;
        (void)file_read(ctl.log, 1 << 20, &log, NULL);
        fprintf(stderr, "the hub's log reports %d sanitizer findings:\n%s\n",
                found, log ? log : "");
    }
    tu_ctl_destroy(&ctl);
    pthread_mutex_lock(&relay.lock);
    relay.stop = true;
    pthread_mutex_unlock(&relay.lock);
    shutdown(relay.fd, SHUT_RDWR);
    pthread_join(relay.thr, NULL);
    close(relay.fd);
    buf_free(&relay.heads);
    free(args[1]);
    free(node_key);
    free(backup_id);
    free(blob);
    return found ? -1 : 0;
}

int main(void)
{
    if (tu_s3_start(&s3) < 0) {
        printf("node or s3rver missing: run sh tools/npm-deps.sh\n");
        return 77;
    }
    /* A sanitizer build of the hub keeps what it frees in a quarantine
     * (256 MiB by default), which its peak memory would count. */
    const char *asan = getenv("ASAN_OPTIONS");
    _cleanup_free_ char *asan_opts = xasprintf(
        "%s%squarantine_size_mb=4", asan ? asan : "",
        asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", asan_opts, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_bytes_reach_the_node_while_s3_is_held),
        cmocka_unit_test(range_resumes_with_a_ranged_get),
        cmocka_unit_test(client_gone_frees_the_hub),
        cmocka_unit_test(s3_failure_midway_is_resumed_by_the_node),
        cmocka_unit_test(missing_object_cuts_the_answer),
    };
    int r = cmocka_run_group_tests(tests, setup, teardown);
    tu_s3_destroy(&s3);
    return r;
}
