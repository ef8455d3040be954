/* controller/bstore_s3 against a real S3 implementation (s3rver, from
 * tools/js, on loopback): the same contract checks as the directory store
 * (tests/bstore_contract.h), then what only this store does: a blob
 * larger than a part goes up as a multipart upload and reads back whole,
 * a commit whose send failed (the object store down) keeps the upload
 * and the next commit sends it, objects the store did not name are left
 * out of its listings, a refused key is -EACCES, and the options are
 * checked (URL, region, key file mode). Each test gets a bucket of its
 * own. As s3rver does not check V4 signatures, the last test recomputes
 * them as AWS does for every request the store sends. Skipped (77) when
 * node or s3rver is not installed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/fs.h"
#include "controller/bstore_s3.h"
#include "controller/pki.h"
#include "tests/testutil.h"
#include "tests/bstore_contract.h"

#include <arpa/inet.h>
#include <nettle/hmac.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <sys/stat.h>

static struct tu_s3 srv;
static char bucket[32]; /* this test's */
static unsigned n_bucket;

static char *key_file(const char *name, const char *text, mode_t mode)
{
    char *p = xasprintf("%s/%s", tu_dir, name);
    assert_int_equal(file_write_atomic(p, text, strlen(text), mode), 0);
    assert_int_equal(chmod(p, mode), 0);
    return p;
}

static int s3_setup(void **state)
{
    tu_dir_setup(state);
    snprintf(bucket, sizeof(bucket), "fogtest-%u", ++n_bucket);
    assert_int_equal(tu_s3_raw(&srv, "PUT", bucket, NULL), 200);
    return 0;
}

static struct bstore *open_s3(uint64_t max, uint64_t part, const char *keys)
{
    _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d/%s", srv.port,
                                         bucket);
    _cleanup_free_ char *spool = xasprintf("%s/spool", tu_dir);
    _cleanup_free_ char *kf = key_file("s3.key", keys, 0600);
    struct bstore_s3_opts o = { .url = url, .key_file = kf,
                                .spool_dir = spool, .max_size = max,
                                .part_size = part };
    struct bstore *s = NULL;
    assert_int_equal(bstore_s3_new(&o, &s), 0);
    return s;
}

static struct bstore *bstore_contract_open(uint64_t max)
{
    return open_s3(max, 0, "S3RVER:S3RVER\n");
}

/* The store lists blob `id` and no other. */
static void list_is_only(struct bstore *s, const char *id)
{
    char **ids = NULL;
    size_t n = 0;
    assert_int_equal(s->ops->list(s, &ids, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], id);
    bstore_ids_free(ids);
}

static void multipart_above_part_size_reads_back_whole(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = open_s3(0, 5 << 20,
                                                       "S3RVER:S3RVER");
    size_t len = (11 << 20) + 12345; /* three parts, the last short */
    _cleanup_free_ uint8_t *data = xmalloc(len);
    uint64_t seed = 7;
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)tu_xorshift(&seed);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    /* in the agent's chunks, not aligned to parts */
    for (size_t off = 0; off < len; off += 1000003) {
        size_t n = len - off < 1000003 ? len - off : 1000003;
        assert_int_equal(s->ops->append(s, ID1, off, data + off, n, NULL), 0);
    }
    char hex[65];
    sha256_hex(data, len, hex);
    assert_int_equal(s->ops->commit(s, ID1, hex, len), 0);
    uint64_t n = 0;
    bool committed = false;
    assert_int_equal(s->ops->stat(s, ID1, &n, &committed), 0);
    assert_true(committed);
    assert_int_equal(n, len);
    int fd = -1;
    assert_int_equal(s->ops->open(s, ID1, &fd, &n), 0);
    assert_int_equal(n, len);
    _cleanup_free_ uint8_t *back = xmalloc(len);
    assert_int_equal(fd_read_full(fd, back, len), (ssize_t)len);
    close(fd);
    assert_memory_equal(back, data, len);
    /* nothing of it is left in the spool */
    _cleanup_free_ char *spooled = xasprintf("%s/spool/%s", tu_dir, ID1);
    assert_int_equal(access(spooled, F_OK), -1);
}

/* What a read passed on, and when to stop it. */
struct collect {
    struct buf b;
    unsigned calls;
    int stop_after; /* > 0: refuse the call after this many */
};

static int collect_write(void *ctx, const void *data, size_t len)
{
    struct collect *c = ctx;
    if (!len)
        return 0;
    if (c->stop_after > 0 && c->calls == (unsigned)c->stop_after)
        return -ECANCELED;
    c->calls++;
    buf_append(&c->b, data, len);
    return 0;
}

/* read passes on exactly the span asked for, from any offset (a ranged
 * GetObject), stops when its reader does, and fails on a span past the
 * blob or a blob that is not there. */
static void read_passes_on_the_span_asked(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = bstore_contract_open(0);
    assert_non_null(s->ops->read);
    size_t len = (3 << 20) + 777;
    _cleanup_free_ uint8_t *data = xmalloc(len);
    uint64_t seed = 11;
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)tu_xorshift(&seed);
    char hex[65];
    sha256_hex(data, len, hex);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    assert_int_equal(s->ops->append(s, ID1, 0, data, len, NULL), 0);
    assert_int_equal(s->ops->commit(s, ID1, hex, len), 0);
    struct { uint64_t off, n; } spans[] = {
        { 0, len }, { 1234567, len - 1234567 }, { len - 1, 1 },
        { 99, 4096 },
    };
    for (size_t i = 0; i < ARRAY_SIZE(spans); i++) {
        struct collect c = { .b = BUF_INIT };
        assert_int_equal(s->ops->read(s, ID1, spans[i].off, spans[i].n,
                                      collect_write, &c), 0);
        assert_int_equal(c.b.len, spans[i].n);
        assert_memory_equal(c.b.data, data + spans[i].off, spans[i].n);
        buf_free(&c.b);
    }
    /* the reader stops it: its error, and no more calls */
    struct collect c = { .b = BUF_INIT, .stop_after = 1 };
    assert_int_equal(s->ops->read(s, ID1, 0, len, collect_write, &c),
                     -ECANCELED);
    assert_int_equal(c.calls, 1);
    assert_true(c.b.len < len);
    buf_free(&c.b);
    /* past the end, at the end, not there, not an id */
    struct collect d = { .b = BUF_INIT };
    assert_int_equal(s->ops->read(s, ID1, 10, len, collect_write, &d), -EIO);
    assert_int_equal(s->ops->read(s, ID1, len, 1, collect_write, &d), -EIO);
    assert_int_equal(s->ops->read(s, ID2, 0, 1, collect_write, &d), -ENOENT);
    assert_int_equal(s->ops->read(s, "../x", 0, 1, collect_write, &d),
                     -EINVAL);
    assert_int_equal(s->ops->read(s, ID1, UINT64_MAX, 2, collect_write, &d),
                     -EINVAL);
    buf_free(&d.b);
}

static void failed_send_keeps_the_upload(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = bstore_contract_open(0);
    char hex[65], other[65];
    sha256_hex("hello world", 11, hex);
    sha256_hex("hellO world", 11, other);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    assert_int_equal(s->ops->append(s, ID1, 0, "hello world", 11, NULL), 0);
    tu_s3_halt(&srv);
    assert_int_equal(s->ops->commit(s, ID1, hex, 11), -EIO);
    tu_s3_resume(&srv);
    uint64_t n = 0;
    bool committed = true;
    assert_int_equal(s->ops->stat(s, ID1, &n, &committed), 0);
    assert_int_equal(n, 11);
    assert_false(committed);
    /* still the store's: the sweep sees an open upload */
    struct bstore_entry *en = NULL;
    size_t count = 0;
    assert_int_equal(s->ops->entries(s, &en, &count), 0);
    assert_int_equal(count, 1);
    assert_false(en[0].committed);
    free(en);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    /* the digest is checked again at the retry */
    assert_int_equal(s->ops->begin(s, ID2), 0);
    assert_int_equal(s->ops->append(s, ID2, 0, "hello world", 11, NULL), 0);
    tu_s3_halt(&srv);
    assert_int_equal(s->ops->commit(s, ID2, hex, 11), -EIO);
    tu_s3_resume(&srv);
    assert_int_equal(s->ops->commit(s, ID2, other, 11), -EBADMSG);
    assert_int_equal(s->ops->stat(s, ID2, &n, NULL), -ENOENT);

    assert_int_equal(s->ops->commit(s, ID1, hex, 11), 0);
    int fd = -1;
    assert_int_equal(s->ops->open(s, ID1, &fd, &n), 0);
    char back[16] = { 0 };
    assert_int_equal(read(fd, back, sizeof(back)), 11);
    close(fd);
    assert_memory_equal(back, "hello world", 11);
}

static void foreign_objects_left_out(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = bstore_contract_open(0);
    _cleanup_free_ char *p1 = xasprintf("%s/notes.txt", bucket);
    _cleanup_free_ char *p2 = xasprintf("%s/0B5C2A2E-6D5F-4C61-9D0A-"
                                        "1C6F6B0F7A11", bucket);
    _cleanup_free_ char *p3 = xasprintf("%s/%s.part", bucket, ID2);
    assert_int_equal(tu_s3_raw(&srv, "PUT", p1, "x"), 200);
    assert_int_equal(tu_s3_raw(&srv, "PUT", p2, "x"), 200);
    assert_int_equal(tu_s3_raw(&srv, "PUT", p3, "x"), 200);
    char hex[65];
    sha256_hex("", 0, hex);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    assert_int_equal(s->ops->commit(s, ID1, hex, 0), 0);
    list_is_only(s, ID1);
    struct bstore_entry *en = NULL;
    size_t n = 0;
    assert_int_equal(s->ops->entries(s, &en, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(en[0].id, ID1);
    free(en);
    /* an empty blob reads back empty */
    int fd = -1;
    uint64_t size = 9;
    assert_int_equal(s->ops->open(s, ID1, &fd, &size), 0);
    assert_int_equal(size, 0);
    close(fd);
}

static void refused_key_and_bad_options(void **state)
{
    (void)state;
    {
        _cleanup_(bstore_freep) struct bstore *s = open_s3(0, 0, "NOPE:x");
        char **ids = NULL;
        assert_int_equal(s->ops->list(s, &ids, NULL), -EACCES);
        assert_int_equal(s->ops->begin(s, ID1), -EACCES);
        int fd = -1;
        uint64_t n = 0;
        assert_int_equal(s->ops->open(s, ID1, &fd, &n), -EACCES);
    }
    _cleanup_free_ char *spool = xasprintf("%s/spool", tu_dir);
    _cleanup_free_ char *good = key_file("good.key", "A:B\n", 0600);
    _cleanup_free_ char *open_mode = key_file("open.key", "A:B\n", 0644);
    _cleanup_free_ char *no_colon = key_file("nc.key", "AB\n", 0600);
    _cleanup_free_ char *two = key_file("two.key", "A:B\nC:D\n", 0600);
    _cleanup_free_ char *missing = xasprintf("%s/none.key", tu_dir);
    struct {
        const char *url, *region, *key, *ca;
        uint64_t part;
        int want;
    } bad[] = {
        { "s3://Bad_Bucket", NULL, good, NULL, 0, -EINVAL },
        { "s3://ab", NULL, good, NULL, 0, -EINVAL },
        { "s3://fog-backups", "us east", good, NULL, 0, -EINVAL },
        { "ftp://host/bucket", NULL, good, NULL, 0, -EINVAL },
        { "https://host", NULL, good, NULL, 0, -EINVAL },
        { "https://host/", NULL, good, NULL, 0, -EINVAL },
        { "https://host/b/../x", NULL, good, NULL, 0, -EINVAL },
        { "https://h@st/bucket", NULL, good, NULL, 0, -EINVAL },
        { "https://host/bucket?x=1", NULL, good, NULL, 0, -EINVAL },
        { "https://host/bucket", NULL, open_mode, NULL, 0, -EPERM },
        { "https://host/bucket", NULL, no_colon, NULL, 0, -EINVAL },
        { "https://host/bucket", NULL, two, NULL, 0, -EINVAL },
        { "https://host/bucket", NULL, missing, NULL, 0, -ENOENT },
        { "https://host/bucket", NULL, NULL, NULL, 0, -EINVAL },
        { "https://host/bucket", NULL, good, missing, 0, -ENOENT },
        { "https://host/bucket", NULL, good, NULL, 1 << 20, -EINVAL },
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct bstore_s3_opts o = { .url = bad[i].url,
                                    .region = bad[i].region,
                                    .key_file = bad[i].key,
                                    .ca_file = bad[i].ca,
                                    .spool_dir = spool,
                                    .part_size = bad[i].part };
        struct bstore *s = NULL;
        assert_int_equal(bstore_s3_new(&o, &s), bad[i].want);
        assert_null(s);
    }
    struct bstore_s3_opts o = { .url = "s3://fog-backups.eu",
                                .region = "eu-west-1", .key_file = good,
                                .spool_dir = spool };
    struct bstore *s = NULL;
    assert_int_equal(bstore_s3_new(&o, &s), 0);
    bstore_free(s);
}

/* Over HTTPS the store trusts the CA of --s3-ca, or the system's: a
 * certificate of another CA is refused. */
static void https_with_its_ca(void **state)
{
    (void)state;
    _cleanup_free_ char *pki = xasprintf("%s/pki", tu_dir);
    assert_int_equal(mkdir_p(pki, 0700), 0);
    assert_int_equal(pki_init(pki, NULL, NULL, 0), 0);
    _cleanup_free_ char *cert = xasprintf("%s/server.pem", pki);
    _cleanup_free_ char *key = xasprintf("%s/server.key", pki);
    _cleanup_free_ char *ca = xasprintf("%s/ca.pem", pki);
    struct tu_s3 tls;
    assert_int_equal(tu_s3_start_tls(&tls, cert, key), 0);
    _cleanup_free_ char *url = xasprintf("https://127.0.0.1:%d/fog-tls",
                                         tls.port);
    _cleanup_free_ char *spool = xasprintf("%s/spool", tu_dir);
    char hex[65];
    sha256_hex("abc", 3, hex);
    for (int with_ca = 0; with_ca < 2; with_ca++) {
        struct bstore_s3_opts o = { .url = url, .key_file = tls.key_file,
                                    .ca_file = with_ca ? ca : NULL,
                                    .spool_dir = spool };
        struct bstore *s = NULL;
        assert_int_equal(bstore_s3_new(&o, &s), 0);
        if (!with_ca) {
            assert_int_equal(s->ops->begin(s, ID1), -EIO);
        } else {
            assert_int_equal(s->ops->begin(s, ID1), 0);
            assert_int_equal(s->ops->append(s, ID1, 0, "abc", 3, NULL), 0);
            assert_int_equal(s->ops->commit(s, ID1, hex, 3), 0);
            list_is_only(s, ID1);
        }
        bstore_free(s);
    }
    tu_s3_destroy(&tls);
}

/* ---- SigV4 as AWS checks it ----
 * s3rver does not check V4 signatures, so the requests the store sends
 * also go to a listener here that recomputes each signature from the
 * request as it arrived, with the canonical query form (keys sorted,
 * each with '=', values escaped) that S3 uses, and answers as S3 would. */
struct sig_srv {
    int fd, port;
    int good, bad, pages;
    pthread_t thr;
};

static void hmac(const uint8_t *key, size_t klen, const char *msg,
                 uint8_t out[SHA256_DIGEST_SIZE])
{
    struct hmac_sha256_ctx c;
    hmac_sha256_set_key(&c, klen, key);
    hmac_sha256_update(&c, strlen(msg), (const uint8_t *)msg);
    hmac_sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}

static int unhex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* AWS's URI encoding of a decoded query key or value. */
static void aws_escape(struct buf *b, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%' && i + 2 < len) {
            c = (char)(unhex(s[i + 1]) * 16 + unhex(s[i + 2]));
            i += 2;
        }
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || strchr("-_.~", c))
            buf_append(b, &c, 1);
        else
            buf_printf(b, "%%%02X", (unsigned char)c);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *canon_query(const char *q)
{
    char *parts[16];
    size_t n = 0;
    _cleanup_free_ char *dup = xstrdup(q);
    char *save = NULL;
    for (char *p = strtok_r(dup, "&", &save); p && n < 16;
         p = strtok_r(NULL, "&", &save)) {
        struct buf b = BUF_INIT;
        char *eq = strchr(p, '=');
        aws_escape(&b, p, eq ? (size_t)(eq - p) : strlen(p));
        buf_puts(&b, "=");
        if (eq)
            aws_escape(&b, eq + 1, strlen(eq + 1));
        parts[n++] = buf_steal(&b);
    }
    qsort(parts, n, sizeof(*parts), cmp_str);
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        buf_printf(&b, "%s%s", i ? "&" : "", parts[i]);
        free(parts[i]);
    }
    buf_puts(&b, "");
    return buf_steal(&b);
}

/* The value of header `name` (lower case) in the request head, or NULL. */
static char *header(const char *head, const char *name)
{
    for (const char *l = strstr(head, "\r\n"); l; l = strstr(l, "\r\n")) {
        l += 2;
        size_t nl = strlen(name);
        if (!strncasecmp(l, name, nl) && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            while (e > v && e[-1] == ' ')
                e--;
            return xstrndup(v, (size_t)(e - v));
        }
    }
    return NULL;
}

static bool sig_ok(const char *head)
{
    char method[16], target[512];
    if (sscanf(head, "%15s %511s", method, target) != 2)
        return false;
    _cleanup_free_ char *auth = header(head, "authorization");
    _cleanup_free_ char *date = header(head, "x-amz-date");
    _cleanup_free_ char *payload = header(head, "x-amz-content-sha256");
    if (!auth || !date || !payload || strlen(date) != 16)
        return false;
    const char *sh = strstr(auth, "SignedHeaders=");
    const char *sg = strstr(auth, "Signature=");
    const char *cr = strstr(auth, "Credential=S3RVER/");
    if (!sh || !sg || !cr)
        return false;
    _cleanup_free_ char *signed_h = xstrndup(sh + 14, strcspn(sh + 14, ","));
    char *qm = strchr(target, '?');
    if (qm)
        *qm = '\0';
    _cleanup_free_ char *cq = canon_query(qm ? qm + 1 : "");
    struct buf creq = BUF_INIT;
    buf_printf(&creq, "%s\n%s\n%s\n", method, target, cq);
    _cleanup_free_ char *names = xstrdup(signed_h);
    char *save = NULL;
    for (char *n = strtok_r(names, ";", &save); n;
         n = strtok_r(NULL, ";", &save)) {
        _cleanup_free_ char *v = header(head, n);
        buf_printf(&creq, "%s:%s\n", n, v ? v : "");
    }
    buf_printf(&creq, "\n%s\n%s", signed_h, payload);
    char ch[65];
    sha256_hex(creq.data, creq.len, ch);
    buf_free(&creq);
    _cleanup_free_ char *sts = xasprintf("AWS4-HMAC-SHA256\n%s\n%.8s/"
                                         "eu-west-1/s3/aws4_request\n%s",
                                         date, date, ch);
    uint8_t k[SHA256_DIGEST_SIZE], k2[SHA256_DIGEST_SIZE];
    _cleanup_free_ char *d8 = xstrndup(date, 8);
    hmac((const uint8_t *)"AWS4S3RVER", 10, d8, k);
    hmac(k, sizeof(k), "eu-west-1", k2);
    hmac(k2, sizeof(k2), "s3", k);
    hmac(k, sizeof(k), "aws4_request", k2);
    hmac(k2, sizeof(k2), sts, k);
    char want[65];
    hex_encode(k, sizeof(k), want);
    return !strncmp(sg + 10, want, 64);
}

static void *sig_thread(void *arg)
{
    struct sig_srv *s = arg;
    for (;;) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        struct buf in = BUF_INIT;
        char chunk[65536];
        ssize_t n;
        char *end = NULL;
        while (!(end = strstr(buf_str(&in), "\r\n\r\n")) &&
               (n = read(c, chunk, sizeof(chunk))) > 0)
            buf_append(&in, chunk, (size_t)n);
        if (!end) {
            close(c);
            buf_free(&in);
            if (!in.len)
                return NULL; /* the stop poke */
            continue;
        }
        _cleanup_free_ char *head = xstrndup(in.data,
                                             (size_t)(end - in.data) + 2);
        _cleanup_free_ char *cl = header(head, "content-length");
        size_t want = (size_t)(end - in.data) + 4 + (cl ? strtoul(cl, NULL,
                                                                   10) : 0);
        while (in.len < want && (n = read(c, chunk, sizeof(chunk))) > 0)
            buf_append(&in, chunk, (size_t)n);
        if (sig_ok(head))
            s->good++;
        else
            s->bad++;
        const char *body = "";
        const char *status = "200 OK";
        const char *extra = "";
        if (!strncmp(head, "HEAD ", 5)) {
            status = "404 Not Found";
        } else if (strstr(head, "?uploads")) {
            body = "<InitiateMultipartUploadResult><UploadId>u/1+=</UploadId>"
                   "</InitiateMultipartUploadResult>";
        } else if (!strncmp(head, "PUT ", 4)) {
            extra = "ETag: \"e1\"\r\n";
        } else if (strstr(head, "list-type=2") &&
                   !strstr(head, "continuation-token")) {
            s->pages++;
            body = "<ListBucketResult><IsTruncated>true</IsTruncated>"
                   "<NextContinuationToken>t/+= x</NextContinuationToken>"
                   "</ListBucketResult>";
        } else if (strstr(head, "continuation-token=t%2F%2B%3D%20x")) {
            s->pages++;
            body = "<ListBucketResult><IsTruncated>false</IsTruncated>"
                   "<Contents><Key>" ID2 "</Key><LastModified>"
                   "2026-01-02T03:04:05.000Z</LastModified></Contents>"
                   "</ListBucketResult>";
        } else if (!strncmp(head, "POST ", 5)) {
            body = "<CompleteMultipartUploadResult/>";
        }
        _cleanup_free_ char *ans = xasprintf(
            "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\nConnection: close\r\n"
            "\r\n%s", status, extra, strncmp(head, "HEAD ", 5) ?
            strlen(body) : 0, strncmp(head, "HEAD ", 5) ? body : "");
        (void)fd_write_full(c, ans, strlen(ans));
        close(c);
        buf_free(&in);
    }
}

static void requests_signed_as_aws_checks(void **state)
{
    (void)state;
    struct sig_srv srvs = { .port = tu_free_port() };
    srvs.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)srvs.port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(srvs.fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(srvs.fd, 8), 0);
    assert_int_equal(pthread_create(&srvs.thr, NULL, sig_thread, &srvs), 0);

    _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d/fog-sig",
                                         srvs.port);
    _cleanup_free_ char *spool = xasprintf("%s/spool", tu_dir);
    _cleanup_free_ char *kf = key_file("s3.key", "S3RVER:S3RVER", 0600);
    struct bstore_s3_opts o = { .url = url, .region = "eu-west-1",
                                .key_file = kf, .spool_dir = spool,
                                .part_size = 5 << 20 };
    struct bstore *s = NULL;
    assert_int_equal(bstore_s3_new(&o, &s), 0);
    size_t len = (5 << 20) + 100; /* a multipart upload of two parts */
    _cleanup_free_ char *data = xcalloc(1, len);
    char hex[65];
    sha256_hex(data, len, hex);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    assert_int_equal(s->ops->append(s, ID1, 0, data, len, NULL), 0);
    assert_int_equal(s->ops->commit(s, ID1, hex, len), 0);
    sha256_hex("abc", 3, hex); /* and a PutObject */
    assert_int_equal(s->ops->begin(s, ID1), 0);
    assert_int_equal(s->ops->append(s, ID1, 0, "abc", 3, NULL), 0);
    assert_int_equal(s->ops->commit(s, ID1, hex, 3), 0);
    list_is_only(s, ID2);
    bstore_free(s);

    shutdown(srvs.fd, SHUT_RDWR);
    int poke = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    (void)connect(poke, (struct sockaddr *)&a, sizeof(a));
    close(poke);
    pthread_join(srvs.thr, NULL);
    close(srvs.fd);
    /* HEAD, create, 2 parts, complete, HEAD, PUT, 2 list pages */
    assert_int_equal(srvs.pages, 2);
    assert_int_equal(srvs.bad, 0);
    assert_int_equal(srvs.good, 9);
}

int main(void)
{
    if (tu_s3_start(&srv) < 0) {
        printf("node or s3rver missing: run sh tools/npm-deps.sh\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        BSTORE_CONTRACT_TESTS(s3_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(multipart_above_part_size_reads_back_whole,
                                        s3_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(read_passes_on_the_span_asked,
                                        s3_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(failed_send_keeps_the_upload,
                                        s3_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(foreign_objects_left_out, s3_setup,
                                        tu_dir_teardown),
        cmocka_unit_test_setup_teardown(refused_key_and_bad_options,
                                        s3_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(https_with_its_ca, tu_dir_setup,
                                        tu_dir_teardown),
        cmocka_unit_test_setup_teardown(requests_signed_as_aws_checks,
                                        tu_dir_setup, tu_dir_teardown),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    tu_s3_destroy(&srv);
    return r;
}
