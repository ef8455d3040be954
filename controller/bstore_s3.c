/* The S3 backup store: committed blobs are objects named by their id in
 * one bucket of an S3-compatible object store, spoken to over its REST
 * API (path-style URLs, SigV4 signed by libcurl).
 *
 * Uploads are spooled on local disk (a directory store under the data
 * dir) and sent to the bucket at their commit, after the digest check.
 * Why not one multipart upload fed by the agent's chunks: S3 parts must be
 * at least 5 MiB (but the last), the agent's chunks are smaller, a chunk
 * resent after a lost answer must not become a part twice, and the
 * digest must be checked before anything is sealed. A spool gets all of
 * that from the directory store as it is (append at the received size,
 * resume after a restart, a running digest), and the bucket only ever
 * holds whole, checked blobs. The price is local disk for the uploads in
 * flight. At the commit a blob up to part_size goes in one PutObject, a
 * larger one as a multipart upload read from the spool (S3 caps a single
 * PUT at 5 GiB). A blob whose send failed stays in the spool, committed
 * there, and the next commit of it checks its digest again and resends.
 *
 * Reads stream: s3_read is a ranged GetObject whose bytes go to the
 * reader as they arrive (a restore's node gets its first byte as S3 sends
 * it, and resumes from an offset), stopped when the reader refuses them
 * or, while S3 is silent, when its len-0 call says it has gone. s3_open
 * downloads the whole object into an unnamed file first, for small reads
 * and tests. */
#include "controller/bstore_s3.h"
#include "common/buf.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/timeutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define S3_PART_DEFAULT (64ULL << 20)
#define S3_PART_MIN (5ULL << 20)
#define S3_PUT_MAX (5ULL << 30)
#define S3_PARTS_MAX 10000
/* Largest XML answer read into memory (a list page is ~300 KB). */
#define S3_XML_MAX (8U << 20)

struct bstore_s3 {
    struct bstore pub;
    struct bstore *spool;
    char *base;   /* "https://host[:port]/bucket" */
    char *sigv4;  /* "aws:amz:REGION:s3" */
    char *userpwd; /* "KEY:SECRET" */
    char *ca;     /* CA file, or NULL for the system's */
    char *spool_dir;
    uint64_t part_size;
};

#define S3_OF(s) ((struct bstore_s3 *)(s))

/* One request and what came back. */
struct s3_req {
    const char *method;
    const char *id;    /* object key, or NULL for the bucket */
    /* Without '?', or NULL. libcurl 7.88 signs it as written, so it is
     * written in SigV4's canonical form: keys sorted, every one with '=',
     * values escaped by curl_easy_escape(). */
    const char *query;
    int in_fd;         /* body read from here (pread), -1: none */
    uint64_t in_off, in_len;
    const char *body;  /* or a body in memory (POST) */
    size_t body_len;
    const char *payload_sha; /* hex SHA-256 of the body, NULL: unsigned */
    int out_fd;        /* a 2xx body goes here, -1: into out */
    /* Or a ranged GET whose 206 body goes to sink: bytes from sink_off,
     * sink_left of them. */
    bstore_write_fn sink;
    void *sink_ctx;
    uint64_t sink_off, sink_left;
    int sink_err;      /* why the body was refused */
    int64_t range_start; /* of the answer's Content-Range, -1: none */
    struct buf out;
    long status;
    uint64_t length;   /* Content-Length of the answer */
    char *etag;
};

static void s3_req_done(struct s3_req *q)
{
    buf_free(&q->out);
    free(q->etag);
}

static size_t s3_read_cb(char *ptr, size_t size, size_t n, void *ud)
{
    struct s3_req *q = ud;
    size_t want = size * n;
    if (want > q->in_len)
        want = (size_t)q->in_len;
    if (want == 0)
        return 0;
    ssize_t got;
    do
        got = pread(q->in_fd, ptr, want, (off_t)q->in_off);
    while (got < 0 && errno == EINTR);
    if (got <= 0)
        return CURL_READFUNC_ABORT; /* the spool file shrank or failed */
    q->in_off += (uint64_t)got;
    q->in_len -= (uint64_t)got;
    return (size_t)got;
}

/* A ranged GET's body, passed on once the answer is known to be the
 * range asked for. */
static size_t s3_sink_cb(struct s3_req *q, const char *ptr, size_t len)
{
    if (q->sink_err)
        return 0;
    if (q->status != 206 || q->range_start != (int64_t)q->sink_off ||
        len > q->sink_left) {
        log_error("backup store: GET %s from byte %llu answered HTTP %ld "
                  "from byte %lld (%zu bytes, %llu asked)", q->id,
                  (unsigned long long)q->sink_off, q->status,
                  (long long)q->range_start, len,
                  (unsigned long long)q->sink_left);
        q->sink_err = -EIO;
        return 0;
    }
    int e = q->sink(q->sink_ctx, ptr, len);
    if (e < 0) {
        q->sink_err = e;
        return 0;
    }
    q->sink_off += len;
    q->sink_left -= len;
    q->range_start = (int64_t)q->sink_off;
    return len;
}

/* While a ranged GET waits for bytes: does its reader still want them? */
static int s3_progress_cb(void *ud, curl_off_t dt, curl_off_t dn,
                          curl_off_t ut, curl_off_t un)
{
    struct s3_req *q = ud;
    if (q->sink_err)
        return 1;
    int e = q->sink(q->sink_ctx, NULL, 0);
    if (e < 0)
        q->sink_err = e;
    return e < 0;
}

static size_t s3_write_cb(char *ptr, size_t size, size_t n, void *ud)
{
    struct s3_req *q = ud;
    size_t len = size * n;
    bool ok2xx = q->status == 0 || (q->status >= 200 && q->status < 300);
    if (q->sink && ok2xx)
        return s3_sink_cb(q, ptr, len);
    if (q->out_fd >= 0 && ok2xx)
        return fd_write_full(q->out_fd, ptr, len) == 0 ? len : 0;
    if (q->out.len + len > S3_XML_MAX)
        return 0;
    buf_append(&q->out, ptr, len);
    return len;
}

static size_t s3_header_cb(char *ptr, size_t size, size_t n, void *ud)
{
    struct s3_req *q = ud;
    size_t len = size * n;
    if (len > 5 && !strncasecmp(ptr, "ETag:", 5)) {
        const char *v = ptr + 5;
        size_t vl = len - 5;
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' ||
                      v[vl - 1] == ' '))
            vl--;
        free(q->etag);
        q->etag = xstrndup(v, vl);
    } else if (len > 20 && !strncasecmp(ptr, "Content-Range: bytes ", 20)) {
        unsigned long long a;
        char line[64];
        snprintf(line, sizeof(line), "%.*s", (int)(len < 63 ? len : 63),
                 ptr + 20);
        q->range_start = sscanf(line, "%llu-", &a) == 1 && a <= INT64_MAX
                             ? (int64_t)a : -1;
    } else if (len > 5 && !strncasecmp(ptr, "HTTP/", 5)) {
        /* The status line of each answer (a 100 Continue comes first), so
         * an error's body is kept for the log, not written to out_fd. */
        char line[64];
        long st = 0;
        snprintf(line, sizeof(line), "%.*s", (int)(len < 63 ? len : 63), ptr);
        q->status = sscanf(line, "%*s %ld", &st) == 1 ? st : 0;
    }
    return len;
}

/* The answer's <Error><Code>, for the log; "" when there is none. */
static char *s3_error_code(const struct buf *b)
{
    const char *s = strstr(buf_str(b), "<Code>");
    const char *e = s ? strstr(s, "</Code>") : NULL;
    if (!s || !e || e - s > 80)
        return xstrdup("");
    return xstrndup(s + 6, (size_t)(e - s - 6));
}

/* Run `q`. 0 on a 2xx answer; otherwise -ENOENT for 404, -EACCES for
 * 401/403, -EIO for the rest (logged, with S3's error code). */
static int s3_do(struct bstore_s3 *s, struct s3_req *q)
{
    _cleanup_free_ char *url = xasprintf("%s%s%s%s%s", s->base,
                                         q->id ? "/" : "", q->id ? q->id : "",
                                         q->query ? "?" : "",
                                         q->query ? q->query : "");
    CURL *c = curl_easy_init();
    if (!c)
        return -ENOMEM;
    struct curl_slist *h = NULL;
    _cleanup_free_ char *sha_h = xasprintf("x-amz-content-sha256: %s",
                                           q->payload_sha ? q->payload_sha
                                                          : "UNSIGNED-PAYLOAD");
    h = curl_slist_append(h, sha_h);
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
    /* A stalled transfer, not a long one, is a failure. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s->sigv4);
    curl_easy_setopt(c, CURLOPT_USERPWD, s->userpwd);
    if (s->ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, s->ca);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s3_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, s3_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, q);
    _cleanup_free_ char *range = NULL;
    if (q->sink) {
        range = xasprintf("%llu-%llu", (unsigned long long)q->sink_off,
                          (unsigned long long)(q->sink_off + q->sink_left -
                                               1));
        curl_easy_setopt(c, CURLOPT_RANGE, range);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, s3_progress_cb);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, q);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    }
    if (streq(q->method, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (q->in_fd >= 0) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, s3_read_cb);
        curl_easy_setopt(c, CURLOPT_READDATA, q);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
                         (curl_off_t)q->in_len);
    } else if (streq(q->method, "POST")) {
        h = curl_slist_append(h, "Content-Type: application/xml");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)q->body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body ? q->body : "");
    } else if (!streq(q->method, "GET")) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    CURLcode cr = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &q->status);
    curl_off_t cl = -1;
    curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    q->length = cl > 0 ? (uint64_t)cl : 0;
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (q->sink_err)
        return q->sink_err; /* said where it happened, or the reader's */
    if (cr != CURLE_OK && !(q->status == 404 && cr == CURLE_WRITE_ERROR)) {
        log_error("backup store: %s %s: %s", q->method, url,
                  curl_easy_strerror(cr));
        return -EIO;
    }
    if (q->status >= 200 && q->status < 300)
        return 0;
    if (q->status == 404)
        return -ENOENT;
    _cleanup_free_ char *code = s3_error_code(&q->out);
    log_error("backup store: %s %s: HTTP %ld %s", q->method, url, q->status,
              code);
    return q->status == 401 || q->status == 403 ? -EACCES : -EIO;
}

#define S3_REQ(m) { .method = (m), .in_fd = -1, .out_fd = -1, \
                    .range_start = -1, .out = BUF_INIT }

/* Size of object `id`: 0, -ENOENT or -errno. */
static int s3_head(struct bstore_s3 *s, const char *id, uint64_t *ret_size)
{
    struct s3_req q = S3_REQ("HEAD");
    q.id = id;
    int e = s3_do(s, &q);
    if (e == 0 && ret_size)
        *ret_size = q.length;
    s3_req_done(&q);
    return e;
}

/* The text of the first child element of `n` named `name`, or NULL. */
static xmlNode *xml_child(xmlNode *n, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE &&
            streq((const char *)c->name, name))
            return c;
    return NULL;
}

static char *xml_text(xmlNode *n, const char *name)
{
    xmlNode *c = xml_child(n, name);
    if (!c)
        return NULL;
    xmlChar *t = xmlNodeGetContent(c);
    char *r = xstrdup(t ? (const char *)t : "");
    xmlFree(t);
    return r;
}

static xmlDoc *xml_parse(const struct buf *b)
{
    return xmlReadMemory(buf_str(b), (int)b->len, "s3.xml", NULL,
                         XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

/* Every object of the bucket named by an id the store accepts, with its
 * time: ListObjectsV2, page by page. */
static int s3_list_all(struct bstore_s3 *s, struct bstore_entry **ret,
                       size_t *ret_n)
{
    size_t n = 0, cap = 8;
    struct bstore_entry *v = xcalloc(cap, sizeof(*v));
    _cleanup_free_ char *token = NULL;
    int e = 0;
    for (;;) {
        _cleanup_free_ char *query = NULL;
        if (token) {
            char *esc = curl_easy_escape(NULL, token, 0);
            if (!esc) {
                e = -ENOMEM;
                break;
            }
            query = xasprintf("continuation-token=%s&list-type=2", esc);
            curl_free(esc);
        } else {
            query = xstrdup("list-type=2");
        }
        struct s3_req q = S3_REQ("GET");
        q.query = query;
        e = s3_do(s, &q);
        xmlDoc *doc = e == 0 ? xml_parse(&q.out) : NULL;
        s3_req_done(&q);
        if (e < 0)
            break;
        xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
        if (!root || !streq((const char *)root->name, "ListBucketResult")) {
            log_error("backup store %s: ListObjectsV2 answered no listing",
                      s->base);
            xmlFreeDoc(doc);
            e = -EIO;
            break;
        }
        for (xmlNode *c = root->children; c; c = c->next) {
            if (c->type != XML_ELEMENT_NODE ||
                !streq((const char *)c->name, "Contents"))
                continue;
            _cleanup_free_ char *key = xml_text(c, "Key");
            _cleanup_free_ char *mod = xml_text(c, "LastModified");
            if (!key || !bstore_id_ok(key))
                continue; /* not the store's */
            int64_t t = 0;
            if (mod && strlen(mod) >= 19) {
                char z[21];
                snprintf(z, sizeof(z), "%.19sZ", mod);
                if (time_parse_rfc3339(z, &t) < 0)
                    t = 0;
            }
            if (n == cap)
                v = xrealloc(v, (cap *= 2) * sizeof(*v));
            snprintf(v[n].id, sizeof(v[n].id), "%s", key);
            v[n].committed = true;
            v[n].mtime = t;
            n++;
        }
        _cleanup_free_ char *trunc = xml_text(root, "IsTruncated");
        free(token);
        token = xml_text(root, "NextContinuationToken");
        xmlFreeDoc(doc);
        if (!trunc || !streq(trunc, "true") || !token || !*token)
            break;
    }
    if (e < 0) {
        free(v);
        return e;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static int s3_begin(struct bstore *st, const char *id)
{
    struct bstore_s3 *s = S3_OF(st);
    if (!bstore_id_ok(id))
        return -EINVAL;
    /* The upload goes on (a begin comes with every chunk): no request. */
    bool sealed = true;
    int e = s->spool->ops->stat(s->spool, id, NULL, &sealed);
    if (e == 0 && !sealed)
        return 0;
    e = s3_head(s, id, NULL);
    if (e == 0)
        return -EEXIST;
    if (e != -ENOENT)
        return e;
    e = s->spool->ops->begin(s->spool, id);
    /* Sealed in the spool but not sent yet: still an open upload. */
    return e == -EEXIST ? 0 : e;
}

static int s3_append(struct bstore *st, const char *id, uint64_t offset,
                     const void *data, size_t len, uint64_t *ret_size)
{
    struct bstore_s3 *s = S3_OF(st);
    return s->spool->ops->append(s->spool, id, offset, data, len, ret_size);
}

static int s3_stat(struct bstore *st, const char *id, uint64_t *ret_size,
                   bool *ret_committed)
{
    struct bstore_s3 *s = S3_OF(st);
    if (!bstore_id_ok(id))
        return -EINVAL;
    uint64_t n = 0;
    bool sealed = false;
    int e = s->spool->ops->stat(s->spool, id, &n, &sealed);
    if (e == 0) {
        /* In the spool, sealed or not, it is not in the bucket yet. */
        if (ret_size)
            *ret_size = n;
        if (ret_committed)
            *ret_committed = false;
        return 0;
    }
    if (e != -ENOENT)
        return e;
    e = s3_head(s, id, &n);
    if (e < 0)
        return e;
    if (ret_size)
        *ret_size = n;
    if (ret_committed)
        *ret_committed = true;
    return 0;
}

/* Send the spooled blob `fd` (`size` bytes, hashing to `sha256`) as a
 * multipart upload of part_size parts; aborted on any failure. */
static int s3_put_multipart(struct bstore_s3 *s, const char *id, int fd,
                            uint64_t size)
{
    struct s3_req q = S3_REQ("POST");
    q.id = id;
    q.query = "uploads=";
    int e = s3_do(s, &q);
    xmlDoc *doc = e == 0 ? xml_parse(&q.out) : NULL;
    s3_req_done(&q);
    if (e < 0)
        return e;
    _cleanup_free_ char *upload = xml_text(doc ? xmlDocGetRootElement(doc)
                                               : NULL, "UploadId");
    xmlFreeDoc(doc);
    if (!upload || !*upload) {
        log_error("backup store %s: CreateMultipartUpload gave no UploadId",
                  s->base);
        return -EIO;
    }
    char *esc = curl_easy_escape(NULL, upload, 0);
    if (!esc)
        return -ENOMEM;
    _cleanup_free_ char *upload_q = xasprintf("uploadId=%s", esc);
    curl_free(esc);

    struct buf done = BUF_INIT;
    buf_puts(&done, "<CompleteMultipartUpload>");
    unsigned part = 1;
    for (uint64_t off = 0; e == 0 && off < size; off += s->part_size,
                                                 part++) {
        _cleanup_free_ char *pq = xasprintf("partNumber=%u&%s", part,
                                            upload_q);
        struct s3_req p = S3_REQ("PUT");
        p.id = id;
        p.query = pq;
        p.in_fd = fd;
        p.in_off = off;
        p.in_len = size - off < s->part_size ? size - off : s->part_size;
        e = s3_do(s, &p);
        if (e == 0 && (!p.etag || strpbrk(p.etag, "<>&"))) {
            log_error("backup store %s: UploadPart gave no ETag", s->base);
            e = -EIO;
        }
        if (e == 0)
            buf_printf(&done, "<Part><PartNumber>%u</PartNumber>"
                              "<ETag>%s</ETag></Part>", part, p.etag);
        s3_req_done(&p);
    }
    buf_puts(&done, "</CompleteMultipartUpload>");
    if (e == 0) {
        struct s3_req c = S3_REQ("POST");
        c.id = id;
        c.query = upload_q;
        c.body = buf_str(&done);
        c.body_len = done.len;
        e = s3_do(s, &c);
        /* S3 may answer 200 with an error in the body. */
        if (e == 0 && strstr(buf_str(&c.out), "<Error>")) {
            _cleanup_free_ char *code = s3_error_code(&c.out);
            log_error("backup store %s: CompleteMultipartUpload: %s",
                      s->base, code);
            e = -EIO;
        }
        s3_req_done(&c);
    }
    buf_free(&done);
    if (e < 0) {
        struct s3_req a = S3_REQ("DELETE");
        a.id = id;
        a.query = upload_q;
        (void)s3_do(s, &a);
        s3_req_done(&a);
    }
    return e;
}

static int s3_commit(struct bstore *st, const char *id, const char *sha256,
                     uint64_t size)
{
    struct bstore_s3 *s = S3_OF(st);
    if (!bstore_id_ok(id))
        return -EINVAL;
    bool sealed = false;
    int e = s->spool->ops->stat(s->spool, id, NULL, &sealed);
    if (e < 0)
        return e;
    if (!sealed) {
        /* Checks size and digest; discards the upload on a mismatch. */
        e = s->spool->ops->commit(s->spool, id, sha256, size);
        if (e < 0)
            return e;
    }
    _cleanup_close_ int fd = -1;
    uint64_t n = 0;
    e = s->spool->ops->open(s->spool, id, &fd, &n);
    if (e < 0)
        return e;
    if (sealed) {
        /* Sealed by an earlier commit whose send failed: its digest was
         * checked against that commit's, so check this one's. */
        char got[65];
        e = sha256_fd(fd, &n, got);
        if (e < 0)
            return e;
        if (n != size || !sha256 || !streq(got, sha256)) {
            s->spool->ops->remove(s->spool, id);
            return -EBADMSG;
        }
    }
    if (n > s->part_size) {
        e = s3_put_multipart(s, id, fd, n);
    } else {
        struct s3_req q = S3_REQ("PUT");
        q.id = id;
        q.in_fd = fd;
        q.in_len = n;
        /* S3 checks the bytes it got against the digest we checked. */
        q.payload_sha = sha256;
        e = s3_do(s, &q);
        s3_req_done(&q);
    }
    if (e < 0)
        return e;
    /* -ENOENT: a commit of the same blob at the same time sent it too. */
    e = s->spool->ops->remove(s->spool, id);
    return e == -ENOENT ? 0 : e;
}

static int s3_open(struct bstore *st, const char *id, int *ret_fd,
                   uint64_t *ret_size)
{
    struct bstore_s3 *s = S3_OF(st);
    if (!bstore_id_ok(id))
        return -EINVAL;
    /* An unnamed file beside the spool: on the hub's disk while the reader
     * holds it, gone when it is closed. The whole object is read before
     * this returns, so the first byte of a large blob waits for all of
     * it: restores stream through s3_read instead. */
    _cleanup_close_ int fd = open(s->spool_dir, O_TMPFILE | O_RDWR |
                                  O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    struct s3_req q = S3_REQ("GET");
    q.id = id;
    q.out_fd = fd;
    int e = s3_do(s, &q);
    s3_req_done(&q);
    if (e < 0)
        return e;
    struct stat sb;
    if (fstat(fd, &sb) < 0 || lseek(fd, 0, SEEK_SET) < 0)
        return -errno;
    *ret_size = (uint64_t)sb.st_size;
    *ret_fd = fd;
    fd = -1;
    return 0;
}

static int s3_read(struct bstore *st, const char *id, uint64_t offset,
                   uint64_t len, bstore_write_fn write, void *ctx)
{
    struct bstore_s3 *s = S3_OF(st);
    if (!bstore_id_ok(id) || offset > UINT64_MAX - len ||
        offset + len > (uint64_t)INT64_MAX)
        return -EINVAL;
    if (len == 0)
        return s3_head(s, id, NULL);
    struct s3_req q = S3_REQ("GET");
    q.id = id;
    q.sink = write;
    q.sink_ctx = ctx;
    q.sink_off = offset;
    q.sink_left = len;
    int e = s3_do(s, &q);
    if (e == 0 && q.sink_left) {
        log_error("backup store %s: GET %s ended %llu bytes short", s->base,
                  id, (unsigned long long)q.sink_left);
        e = -EIO;
    }
    s3_req_done(&q);
    return e;
}

static int s3_remove(struct bstore *st, const char *id)
{
    struct bstore_s3 *s = S3_OF(st);
    if (!bstore_id_ok(id))
        return -EINVAL;
    int e1 = s->spool->ops->remove(s->spool, id);
    if (e1 < 0 && e1 != -ENOENT)
        return e1;
    /* DeleteObject answers 204 for a missing key too: ask first. */
    int e2 = s3_head(s, id, NULL);
    if (e2 == 0) {
        struct s3_req q = S3_REQ("DELETE");
        q.id = id;
        e2 = s3_do(s, &q);
        s3_req_done(&q);
    }
    if (e1 == 0 || e2 == 0)
        return 0;
    return e2;
}

static int s3_list(struct bstore *st, char ***ret_ids, size_t *ret_n)
{
    struct bstore_s3 *s = S3_OF(st);
    struct bstore_entry *v = NULL;
    size_t n = 0;
    int e = s3_list_all(s, &v, &n);
    if (e < 0)
        return e;
    char **ids = xcalloc(n + 1, sizeof(*ids));
    for (size_t i = 0; i < n; i++)
        ids[i] = xstrdup(v[i].id);
    free(v);
    *ret_ids = ids;
    if (ret_n)
        *ret_n = n;
    return 0;
}

static int s3_entries(struct bstore *st, struct bstore_entry **ret,
                      size_t *ret_n)
{
    struct bstore_s3 *s = S3_OF(st);
    struct bstore_entry *v = NULL, *u = NULL;
    size_t n = 0, m = 0;
    int e = s3_list_all(s, &v, &n);
    if (e < 0)
        return e;
    e = s->spool->ops->entries(s->spool, &u, &m);
    if (e < 0) {
        free(v);
        return e;
    }
    v = xrealloc(v, (n + m + 1) * sizeof(*v));
    for (size_t i = 0; i < m; i++) {
        v[n] = u[i];
        v[n++].committed = false; /* not in the bucket yet */
    }
    free(u);
    *ret = v;
    *ret_n = n;
    return 0;
}

static void s3_free(struct bstore *st)
{
    struct bstore_s3 *s = S3_OF(st);
    bstore_free(s->spool);
    free(s->base);
    free(s->sigv4);
    if (s->userpwd)
        explicit_bzero(s->userpwd, strlen(s->userpwd));
    free(s->userpwd);
    free(s->ca);
    free(s->spool_dir);
    free(s);
}

static const struct bstore_ops s3_ops = {
    .begin = s3_begin,
    .append = s3_append,
    .stat = s3_stat,
    .commit = s3_commit,
    .open = s3_open,
    .read = s3_read,
    .remove = s3_remove,
    .list = s3_list,
    .entries = s3_entries,
    .free = s3_free,
};

/* S3's bucket rule: 3 to 63 of [a-z0-9.-], a letter or digit at the ends. */
static bool bucket_ok(const char *b, size_t len)
{
    if (len < 3 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') ||
              ((b[i] == '.' || b[i] == '-') && i > 0 && i < len - 1)))
            return false;
    return true;
}

/* "s3://bucket" or "http[s]://host[:port]/bucket" into the base URL of
 * path-style requests, or NULL. */
static char *base_url(const char *url, const char *region)
{
    if (!strncmp(url, "s3://", 5)) {
        const char *b = url + 5;
        if (!bucket_ok(b, strlen(b)))
            return NULL;
        return xasprintf("https://s3.%s.amazonaws.com/%s", region, b);
    }
    const char *rest = !strncmp(url, "https://", 8) ? url + 8
                       : !strncmp(url, "http://", 7) ? url + 7 : NULL;
    const char *slash = rest ? strchr(rest, '/') : NULL;
    if (!slash || slash == rest)
        return NULL;
    for (const char *p = rest; p < slash; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    "0123456789.-:[]", *p))
            return NULL;
    size_t blen = strlen(slash + 1);
    if (blen && slash[blen] == '/')
        blen--;
    if (!bucket_ok(slash + 1, blen))
        return NULL;
    return xasprintf("%.*s", (int)(slash + 1 + blen - url), url);
}

/* The region rule: letters, digits and '-' ("us-east-1"). */
static bool region_ok(const char *r)
{
    if (!r || !*r || strlen(r) > 32)
        return false;
    for (const char *p = r; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '-'))
            return false;
    return true;
}

/* KEY:SECRET from a file only its owner may read. */
static int read_keys(const char *path, char **ret)
{
    struct stat sb;
    if (stat(path, &sb) < 0) {
        int e = -errno;
        log_error("backup store: access key file %s: %s", path, strerror(-e));
        return e;
    }
    if (sb.st_mode & 077) {
        log_error("backup store: access key file %s must not be readable "
                  "by others (mode 0600)", path);
        return -EPERM;
    }
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    int e = file_read(path, 4096, &data, &len);
    if (e < 0) {
        log_error("backup store: access key file %s: %s", path, strerror(-e));
        return e;
    }
    while (len && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        data[--len] = '\0';
    char *colon = strchr(data, ':');
    bool ok = colon && colon > data && colon[1] && strlen(data) == len;
    for (size_t i = 0; ok && i < len; i++)
        if ((unsigned char)data[i] <= ' ' || data[i] == 0x7f)
            ok = false;
    if (!ok) {
        explicit_bzero(data, len);
        log_error("backup store: access key file %s does not hold one line "
                  "KEY:SECRET", path);
        return -EINVAL;
    }
    *ret = TAKE_PTR(data);
    return 0;
}

int bstore_s3_new(const struct bstore_s3_opts *o, struct bstore **ret)
{
    const char *region = o->region ? o->region : "us-east-1";
    if (!region_ok(region)) {
        log_error("backup store: invalid S3 region '%s'", region);
        return -EINVAL;
    }
    _cleanup_free_ char *base = base_url(o->url, region);
    if (!base) {
        log_error("backup store: '%s' is not s3://BUCKET or "
                  "https://HOST[:PORT]/BUCKET", o->url);
        return -EINVAL;
    }
    if (!o->key_file) {
        log_error("backup store %s: an access key file is needed", base);
        return -EINVAL;
    }
    if (o->ca_file && access(o->ca_file, R_OK) < 0) {
        int e = -errno;
        log_error("backup store: CA file %s: %s", o->ca_file, strerror(-e));
        return e;
    }
    if (o->part_size && (o->part_size < S3_PART_MIN ||
                         o->part_size > S3_PUT_MAX)) {
        log_error("backup store: part size %llu is outside S3's 5 MiB..5 GiB",
                  (unsigned long long)o->part_size);
        return -EINVAL;
    }
    _cleanup_free_ char *keys = NULL;
    /* At start-up, before the request threads: it is not thread-safe. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int e = read_keys(o->key_file, &keys);
    if (e < 0)
        return e;
    struct bstore *spool = NULL;
    e = bstore_dir_new(o->spool_dir, o->max_size, &spool);
    if (e < 0)
        return e;
    struct bstore_s3 *s = xcalloc(1, sizeof(*s));
    s->pub.ops = &s3_ops;
    s->pub.max_size = o->max_size;
    s->spool = spool;
    s->base = TAKE_PTR(base);
    s->sigv4 = xasprintf("aws:amz:%s:s3", region);
    s->userpwd = TAKE_PTR(keys);
    s->ca = o->ca_file ? xstrdup(o->ca_file) : NULL;
    s->spool_dir = xstrdup(o->spool_dir);
    s->part_size = o->part_size ? o->part_size : S3_PART_DEFAULT;
    /* Blobs past the parts S3 allows could never be sent. */
    if (!s->pub.max_size ||
        s->pub.max_size / S3_PARTS_MAX > s->part_size)
        s->pub.max_size = s->part_size * S3_PARTS_MAX;
    spool->max_size = s->pub.max_size;
    *ret = &s->pub;
    return 0;
}
