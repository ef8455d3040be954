/* HTTPS client for the fogfabric API on libcurl: one easy handle per
 * client (reused, so TLS sessions and connections are kept), bearer auth,
 * JSON in and out, problem+json turned into one line for humans. */
#include "api/client.h"
#include "api/speclog.h"
#include "common/buf.h"
#include "common/curlinit.h"
#include "common/ids.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <curl/curl.h>
#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

struct api_client {
    char *url;
    char *key;
    char *ca_file;
    char *key_pin;      /* "sha256//<base64>" the server's key must match */
    bool capture_pin;   /* record the pin of the server's key (seen_pin) */
    char *seen_pin;
    long timeout_s;
    long connect_s;
    long stall_s;
    CURL *curl;
};

struct api_client *api_client_new(const char *url, const char *key,
                                  const char *ca_file)
{
    curl_init_once();
    if (!url || !*url)
        return NULL;
    struct api_client *c = xcalloc(1, sizeof(*c));
    c->url = xstrdup(url);
    size_t n = strlen(c->url);
    while (n > 0 && c->url[n - 1] == '/')
        c->url[--n] = '\0';
    c->key = key ? xstrdup(key) : NULL;
    c->ca_file = ca_file ? xstrdup(ca_file) : NULL;
    c->timeout_s = 30;
    c->connect_s = 10;
    c->stall_s = 0;
    c->curl = curl_easy_init();
    if (!c->curl) {
        api_client_free(c);
        return NULL;
    }
    return c;
}

void api_client_free(struct api_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->url);
    if (c->key)
        explicit_bzero(c->key, strlen(c->key));
    free(c->key);
    free(c->ca_file);
    free(c->key_pin);
    free(c->seen_pin);
    free(c);
}

void api_client_set_timeout(struct api_client *c, long seconds)
{
    c->timeout_s = seconds < 0 ? 0 : seconds;
}

void api_client_set_key_pin(struct api_client *c, const char *pin)
{
    free(c->key_pin);
    c->key_pin = pin && *pin ? xstrdup(pin) : NULL;
}

void api_client_capture_key_pin(struct api_client *c)
{
    c->capture_pin = true;
}

const char *api_client_seen_key_pin(const struct api_client *c)
{
    return c->seen_pin;
}

void api_client_set_connect_timeout(struct api_client *c, long seconds)
{
    c->connect_s = seconds < 1 ? 1 : seconds;
}

void api_client_set_stall(struct api_client *c, long seconds)
{
    c->stall_s = seconds < 0 ? 0 : seconds;
}

void api_client_set_key(struct api_client *c, const char *key)
{
    free(c->key);
    c->key = key ? xstrdup(key) : NULL;
}

/* One header line every client of this process sends (see
 * api_client_set_process_header); NULL: none. */
static char *process_header;

void api_client_set_process_header(const char *line)
{
    free(process_header);
    process_header = line ? xstrdup(line) : NULL;
}

void api_reply_clear(struct api_reply *r)
{
    if (!r)
        return;
    json_decref(r->json);
    free(r->body);
    free(r->content_type);
    free(r->error);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    /* A client never needs more than this from our API (console tails
     * are 64 KiB, pages bounded); refuse a server that sends more. */
    if (b->len + size * n > (64u << 20))
        return 0;
    buf_append(b, data, size * n);
    return size * n;
}

/* Response headers, kept as received ("Name: value\r\n" lines); those of
 * an interim or redirected answer are dropped when the next status line
 * starts. */
static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    size_t len = size * n;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0)
        b->len = 0;
    if (b->len + len > (64u << 10))
        return 0;
    buf_append(b, data, len);
    return len;
}

/* A dead peer is noticed without waiting for the request's timeout: TCP
 * keepalive probes an idle connection after 5 s, every 5 s, and gives up
 * after 3 unanswered (libcurl before 8.9 has no option for the count);
 * with a stall limit, data left unacknowledged that long gives up too. */
static int on_socket(void *arg, curl_socket_t fd, curlsocktype purpose)
{
    const struct api_client *c = arg;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKOPT_OK;
    int cnt = 3;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    if (c->stall_s > 0) {
        unsigned user_ms = (unsigned)c->stall_s * 1000u;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms,
                         sizeof(user_ms));
    }
    return CURL_SOCKOPT_OK;
}

/* Common options; the caller adds method and body. */
static struct curl_slist *prepare(struct api_client *c, const char *path,
                                  struct buf *body, struct buf *headers,
                                  char *errbuf)
{
    CURL *h = c->curl;
    curl_easy_reset(h);
    _cleanup_free_ char *url = xasprintf("%s%s", c->url, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, c->timeout_s);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->connect_s);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 5L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 5L);
    curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, on_socket);
    curl_easy_setopt(h, CURLOPT_SOCKOPTDATA, c);
    /* Under 1 byte/s for stall_s seconds is a dead transfer. */
    if (c->stall_s > 0) {
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->stall_s);
    }
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, headers);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    if (c->ca_file) {
        /* Only this CA: without clearing CAPATH libcurl would also load
         * the system bundle (about 14 MiB of heap per handle). */
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
        curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
    }
    if (c->key_pin)
        curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, c->key_pin);
    if (c->capture_pin)
        curl_easy_setopt(h, CURLOPT_CERTINFO, 1L);
    struct curl_slist *hdr = NULL;
    hdr = curl_slist_append(hdr, "Accept: application/json");
    hdr = curl_slist_append(hdr, "Expect:");
    if (process_header)
        hdr = curl_slist_append(hdr, process_header);
    if (c->key) {
        _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", c->key);
        hdr = curl_slist_append(hdr, auth);
        explicit_bzero(auth, strlen(auth));
    }
    return hdr;
}

/* The pin of the server certificate of the last transfer (the first in
 * the chain curl reports), into c->seen_pin; NULL when none. */
static void record_key_pin(struct api_client *c)
{
    struct curl_certinfo *ci = NULL;
    free(c->seen_pin);
    c->seen_pin = NULL;
    if (curl_easy_getinfo(c->curl, CURLINFO_CERTINFO, &ci) != CURLE_OK ||
        !ci || ci->num_of_certs < 1)
        return;
    for (struct curl_slist *l = ci->certinfo[0]; l; l = l->next)
        if (startswith(l->data, "Cert:"))
            c->seen_pin = api_cert_key_pin(l->data + strlen("Cert:"));
}

static int perform(struct api_client *c, struct curl_slist *hdr,
                   struct buf *body, struct buf *headers, const char *errbuf,
                   const char *req, size_t req_len, struct api_reply *ret)
{
    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hdr);
    if (cc != CURLE_OK) {
        ret->error = xstrdup(*errbuf ? errbuf : curl_easy_strerror(cc));
        buf_free(body);
        buf_free(headers);
        return -EIO;
    }
    ret->headers = headers->data ? buf_steal(headers) : xstrdup("");
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ret->status);
    if (c->capture_pin)
        record_key_pin(c);
    char *ct = NULL;
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
    ret->content_type = ct ? xstrdup(ct) : NULL;
    ret->body_len = body->len;
    ret->body = body->data ? buf_steal(body) : xstrdup("");
    if (ret->content_type && strstr(ret->content_type, "json") && ret->body_len)
        ret->json = json_loadb(ret->body, ret->body_len, 0, NULL);
    api_speclog_record(h, req, req_len, ret->status, ret->content_type,
                       ret->body, ret->body_len);
    return 0;
}

int api_request_raw(struct api_client *c, const char *method,
                    const char *path, const void *data, size_t len,
                    const char *content_type, struct api_reply *ret)
{
    memset(ret, 0, sizeof(*ret));
    struct buf body = BUF_INIT, headers = BUF_INIT;
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdr = prepare(c, path, &body, &headers, errbuf);
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    if (streq(method, "HEAD"))
        curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
    if (data) {
        _cleanup_free_ char *ctype = xasprintf("Content-Type: %s",
                                               content_type ? content_type :
                                               "application/octet-stream");
        hdr = curl_slist_append(hdr, ctype);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    bool json = data && content_type && strstr(content_type, "json");
    return perform(c, hdr, &body, &headers, errbuf, json ? data : NULL,
                   json ? len : 0, ret);
}

int api_request(struct api_client *c, const char *method, const char *path,
                const json_t *json, const char *idem_key,
                struct api_reply *ret)
{
    memset(ret, 0, sizeof(*ret));
    struct buf body = BUF_INIT, headers = BUF_INIT;
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdr = prepare(c, path, &body, &headers, errbuf);
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    _cleanup_free_ char *text = NULL;
    if (json) {
        text = json_dumps(json, JSON_COMPACT);
        if (!text) {
            curl_slist_free_all(hdr);
            buf_free(&headers);
            ret->error = xstrdup("cannot encode the request body");
            return -EINVAL;
        }
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)strlen(text));
    } else if (!streq(method, "GET") && !streq(method, "DELETE")) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    if (idem_key) {
        _cleanup_free_ char *h = xasprintf("Idempotency-Key: %s", idem_key);
        hdr = curl_slist_append(hdr, h);
    }
    return perform(c, hdr, &body, &headers, errbuf, text,
                   text ? strlen(text) : 0, ret);
}

static size_t on_read_file(char *out, size_t size, size_t n, void *arg)
{
    return fread(out, 1, size * n, (FILE *)arg);
}

int api_request_file(struct api_client *c, const char *method,
                     const char *path, const char *file,
                     struct api_reply *ret)
{
    memset(ret, 0, sizeof(*ret));
    FILE *f = fopen(file, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        ret->error = xasprintf("cannot read '%s': %s", file,
                               f ? "not a regular file" : strerror(errno));
        if (f)
            fclose(f);
        return -EINVAL;
    }
    struct buf body = BUF_INIT, headers = BUF_INIT;
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdr = prepare(c, path, &body, &headers, errbuf);
    hdr = curl_slist_append(hdr, "Content-Type: application/octet-stream");
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c->curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c->curl, CURLOPT_READFUNCTION, on_read_file);
    curl_easy_setopt(c->curl, CURLOPT_READDATA, f);
    curl_easy_setopt(c->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
    /* Large uploads take as long as they take. */
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 0L);
    int r = perform(c, hdr, &body, &headers, errbuf, NULL, 0, ret);
    fclose(f);
    return r;
}

const char *api_reply_header(const struct api_reply *r, const char *name,
                             size_t *ret_len)
{
    size_t nl = strlen(name);
    for (const char *p = r->headers; p && *p; ) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (v < p + len && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = p + len;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *ret_len = (size_t)(ve - v);
            return v;
        }
        p = end ? end + 1 : p + len;
    }
    return NULL;
}

int64_t api_reply_retry_ms(const struct api_reply *r, int64_t dflt_ms,
                           int64_t min_ms, int64_t max_ms)
{
    int64_t ms = dflt_ms;
    size_t n = 0;
    const char *v = r ? api_reply_header(r, "Retry-After", &n) : NULL;
    if (v && n > 0 && n < 64) {
        char text[64];
        memcpy(text, v, n);
        text[n] = '\0';
        bool digits = true;
        for (size_t i = 0; i < n; i++)
            digits = digits && text[i] >= '0' && text[i] <= '9';
        if (digits) {
            /* Any number of digits: a huge one is just "long". */
            ms = n > 9 ? max_ms : (int64_t)strtol(text, NULL, 10) * 1000;
        } else {
            time_t at = curl_getdate(text, NULL);
            if (at != (time_t)-1)
                ms = ((int64_t)at - (int64_t)time(NULL)) * 1000;
        }
    }
    if (ms < min_ms)
        ms = min_ms;
    if (ms > max_ms)
        ms = max_ms;
    uint32_t j;
    random_bytes(&j, sizeof(j));
    ms += (int64_t)(j % (uint32_t)(ms / 4 + 1));
    return ms > max_ms ? max_ms : ms;
}

char *api_reply_describe(const struct api_reply *r)
{
    if (r->status == 0)
        return xstrdup(r->error ? r->error : "no answer");
    const char *detail = json_string_value(json_object_get(r->json, "detail"));
    const char *field = json_string_value(json_object_get(r->json, "field"));
    if (detail && field && !strstr(detail, field))
        return xasprintf("%s (%s)", detail, field);
    if (detail)
        return xstrdup(detail);
    return xasprintf("HTTP %ld", r->status);
}

char *api_cert_fingerprint(const char *pem)
{
    gnutls_x509_crt_t crt;
    gnutls_datum_t d = { (unsigned char *)pem, (unsigned)strlen(pem) };
    uint8_t fp[32];
    size_t len = sizeof(fp);

    if (gnutls_x509_crt_init(&crt) < 0)
        return NULL;
    int r = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM);
    if (r >= 0)
        r = gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, fp, &len);
    gnutls_x509_crt_deinit(crt);
    if (r < 0 || len != sizeof(fp))
        return NULL;
    char *out = xmalloc(2 * sizeof(fp) + 1);
    hex_encode(fp, sizeof(fp), out);
    return out;
}

/* Only blanks around the one PEM block: anything else (a second block,
 * trailing bytes) would be trusted by a CA-file reader without being the
 * certificate the token pins. */
static bool only_space(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return false;
    return true;
}

int api_ca_accept(const char *data, size_t len, const char *sha256_hex,
                  char **ret_pem)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    static const char end_mark[] = "-----END CERTIFICATE-----";
    if (!data || !sha256_hex || !is_hex(sha256_hex, 64))
        return -EINVAL;
    /* Text only: a NUL would hide whatever follows it from strstr. */
    if (len == 0 || len > (1u << 20) || memchr(data, '\0', len))
        return -EBADMSG;
    _cleanup_free_ char *text = xstrndup(data, len);
    const char *b = strstr(text, begin);
    /* The end marker after the whole begin marker: the two must not
     * share dashes ("-----BEGIN CERTIFICATE-------END CERTIFICATE-----"
     * once made the span between them negative). */
    const char *inner = b ? b + strlen(begin) : NULL;
    const char *e = inner ? strstr(inner, end_mark) : NULL;
    if (!b || !e || !only_space(text, b) ||
        !only_space(e + strlen(end_mark), text + len))
        return -EBADMSG;
    /* One block only, nothing between its markers that starts another. */
    if (memmem(inner, (size_t)(e - inner), "-----", 5))
        return -EBADMSG;

    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) < 0)
        return -ENOMEM;
    gnutls_datum_t in = { (unsigned char *)b,
                          (unsigned)(e + strlen(end_mark) - b) };
    uint8_t fp[32];
    size_t fp_len = sizeof(fp);
    unsigned critical = 0;
    gnutls_datum_t out = { NULL, 0 };
    int r = -EBADMSG;
    if (gnutls_x509_crt_import(crt, &in, GNUTLS_X509_FMT_PEM) < 0 ||
        gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, fp,
                                        &fp_len) < 0 ||
        fp_len != sizeof(fp))
        goto out;
    char have[65], want[65];
    hex_encode(fp, sizeof(fp), have);
    for (size_t i = 0; i < 64; i++)
        want[i] = (char)(sha256_hex[i] | 0x20); /* hex digits: lower case */
    want[64] = '\0';
    if (!mem_eq_ct(have, want, 64)) {
        r = -EPERM;
        goto out;
    }
    /* The pinned certificate must be a CA to anchor anything. */
    if (gnutls_x509_crt_get_basic_constraints(crt, &critical, NULL, NULL) <= 0)
        goto out;
    /* Hand back our own encoding of exactly that certificate, not the
     * bytes we were sent. */
    if (gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &out) < 0)
        goto out;
    *ret_pem = xstrndup((const char *)out.data, out.size);
    gnutls_free(out.data);
    r = 0;
out:
    gnutls_x509_crt_deinit(crt);
    return r;
}

char *api_cert_key_pin(const char *pem)
{
    gnutls_x509_crt_t crt = NULL;
    gnutls_pubkey_t pub = NULL;
    gnutls_datum_t in = { (unsigned char *)pem, (unsigned)strlen(pem) };
    gnutls_datum_t spki = { NULL, 0 }, digest, b64 = { NULL, 0 };
    uint8_t sha[32];
    char *out = NULL;
    if (gnutls_x509_crt_init(&crt) < 0 || gnutls_pubkey_init(&pub) < 0)
        goto out;
    if (gnutls_x509_crt_import(crt, &in, GNUTLS_X509_FMT_PEM) < 0 ||
        gnutls_pubkey_import_x509(pub, crt, 0) < 0 ||
        gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &spki) < 0 ||
        gnutls_hash_fast(GNUTLS_DIG_SHA256, spki.data, spki.size, sha) < 0)
        goto out;
    digest = (gnutls_datum_t){ sha, sizeof(sha) };
    if (gnutls_base64_encode2(&digest, &b64) < 0)
        goto out;
    out = xasprintf("sha256//%.*s", (int)b64.size, (const char *)b64.data);
out:
    gnutls_free(b64.data);
    gnutls_free(spki.data);
    if (pub)
        gnutls_pubkey_deinit(pub);
    if (crt)
        gnutls_x509_crt_deinit(crt);
    return out;
}

int api_fetch_ca(const char *url, const char *sha256_hex, char **ret_pem)
{
    curl_init_once();
    if (!url || !sha256_hex || !is_hex(sha256_hex, 64))
        return -EINVAL;
    CURL *h = curl_easy_init();
    if (!h)
        return -ENOMEM;
    struct buf body = BUF_INIT;
    _cleanup_free_ char *full = xasprintf("%s/v1/ca", url);
    curl_easy_setopt(h, CURLOPT_URL, full);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    /* Nothing is trusted yet: what we get is accepted only if it is the
     * one certificate whose hash the join token carries. */
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (cc != CURLE_OK || status != 200) {
        buf_free(&body);
        return -EIO;
    }
    int r = api_ca_accept(body.data ? body.data : "", body.len, sha256_hex,
                          ret_pem);
    buf_free(&body);
    return r;
}

/* ---- protocol upgrades ------------------------------------------------ */

/* The most of a refusal's body kept. */
#define UPGRADE_BODY_MAX 65536

struct api_stream {
    struct api_client *c;
    char *pending; /* bytes that came with the 101, returned first */
    size_t pending_len, pending_off;
    int fd;
};

static int wait_fd(CURL *h, bool out, int timeout_ms)
{
    curl_socket_t fd = CURL_SOCKET_BAD;
    curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &fd);
    if (fd == CURL_SOCKET_BAD)
        return -EIO;
    struct pollfd pf = { (int)fd, out ? POLLOUT : POLLIN, 0 };
    int n = poll(&pf, 1, timeout_ms);
    return n > 0 ? 0 : n == 0 ? -ETIME : -errno;
}

static int send_all(CURL *h, const char *p, size_t n, int timeout_ms)
{
    int64_t until = mono_ms() + timeout_ms;
    while (n > 0) {
        size_t sent = 0;
        CURLcode cc = curl_easy_send(h, p, n, &sent);
        if (cc == CURLE_AGAIN) {
            int64_t left = until - mono_ms();
            if (left <= 0 || wait_fd(h, true, (int)left) < 0)
                return -ETIME;
            continue;
        }
        if (cc != CURLE_OK)
            return -EIO;
        p += sent, n -= sent;
    }
    return 0;
}

/* Read the answer's head (and, for a refusal, its body) into `in`;
 * *ret_head_len: bytes up to and with the blank line. */
static int read_head(CURL *h, struct buf *in, size_t *ret_head_len,
                     int timeout_ms)
{
    int64_t until = mono_ms() + timeout_ms;
    char chunk[4096];
    for (;;) {
        const char *end = in->len ? memmem(in->data, in->len, "\r\n\r\n", 4)
                                  : NULL;
        if (end) {
            *ret_head_len = (size_t)(end - in->data) + 4;
            return 0;
        }
        if (in->len > 65536)
            return -EBADMSG;
        size_t got = 0;
        CURLcode cc = curl_easy_recv(h, chunk, sizeof(chunk), &got);
        if (cc == CURLE_AGAIN) {
            int64_t left = until - mono_ms();
            if (left <= 0 || wait_fd(h, false, (int)left) < 0)
                return -ETIME;
            continue;
        }
        if (cc != CURLE_OK || got == 0)
            return -EIO;
        buf_append(in, chunk, got);
    }
}

/* The rest of a refusal's body, up to `want` bytes past the head (what
 * api_upgrade_head allows). */
static void read_body(CURL *h, struct buf *in, size_t head_len, size_t want,
                      int timeout_ms)
{
    int64_t until = mono_ms() + timeout_ms;
    char chunk[4096];
    while (in->len < head_len + want) {
        size_t got = 0;
        CURLcode cc = curl_easy_recv(h, chunk, sizeof(chunk), &got);
        if (cc == CURLE_AGAIN) {
            int64_t left = until - mono_ms();
            if (left <= 0 || wait_fd(h, false, (int)left) < 0)
                return;
            continue;
        }
        if (cc != CURLE_OK || got == 0)
            return;
        buf_append(in, chunk, got);
    }
}

int api_upgrade_head(const char *head, size_t head_len, struct api_reply *ret,
                     size_t *ret_body_len)
{
    /* The status line alone, so that nothing past the head is read. */
    size_t line = strcspn(head, "\r\n");
    if (line > head_len)
        line = head_len;
    _cleanup_free_ char *first = xstrndup(head, line);
    int status = 0;
    if (sscanf(first, "HTTP/1.%*d %d", &status) != 1 || status < 100 ||
        status > 599)
        return -EBADMSG;
    ret->status = status;
    ret->headers = xstrndup(head, head_len);
    size_t n = 0;
    const char *cl = api_reply_header(ret, "Content-Length", &n);
    /* Digits only; past the bound (however far) is the bound; anything
     * else is no length: take what came with the head. */
    size_t want = 0, i = 0;
    for (; cl && i < n && cl[i] >= '0' && cl[i] <= '9'; i++)
        if ((want = want * 10 + (size_t)(cl[i] - '0')) > UPGRADE_BODY_MAX)
            want = UPGRADE_BODY_MAX + 1;
    if (!cl || i < n || n == 0)
        want = 0;
    *ret_body_len = want > UPGRADE_BODY_MAX ? UPGRADE_BODY_MAX : want;
    return 0;
}

void api_upgrade_refusal(struct api_reply *ret, const char *body, size_t len)
{
    if (len > UPGRADE_BODY_MAX)
        len = UPGRADE_BODY_MAX;
    /* A copy of every byte (a NUL inside included), NUL-terminated. */
    ret->body = xmalloc(len + 1);
    if (len)
        memcpy(ret->body, body, len);
    ret->body[len] = '\0';
    ret->body_len = len;
    size_t n = 0;
    const char *ct = api_reply_header(ret, "Content-Type", &n);
    if (ct && memmem(ct, n, "json", 4) && len)
        ret->json = json_loadb(ret->body, len, 0, NULL);
}

int api_upgrade(struct api_client *c, const char *path, const char *protocol,
                struct api_reply *ret, struct api_stream **ret_stream)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    struct buf body = BUF_INIT, headers = BUF_INIT;
    *ret = (struct api_reply){ 0 };
    struct curl_slist *hdr = prepare(c, path, &body, &headers, errbuf);
    curl_slist_free_all(hdr);
    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
    CURLcode cc = curl_easy_perform(h);
    /* errbuf and the buffers live on this stack only; the handle lives
     * on with the stream. */
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, NULL);
    buf_free(&body);
    buf_free(&headers);
    if (cc != CURLE_OK) {
        ret->error = xstrdup(*errbuf ? errbuf : curl_easy_strerror(cc));
        return -EIO;
    }
    const char *hostport = strstr(c->url, "://");
    hostport = hostport ? hostport + 3 : c->url;
    struct buf req = BUF_INIT;
    buf_printf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\n"
               "Upgrade: %s\r\n", path, hostport, protocol);
    if (c->key)
        buf_printf(&req, "Authorization: Bearer %s\r\n", c->key);
    buf_printf(&req, "\r\n");
    int timeout_ms = (int)(c->timeout_s > 0 ? c->timeout_s : 30) * 1000;
    int e = send_all(h, req.data, req.len, timeout_ms);
    explicit_bzero(req.data, req.len);
    buf_free(&req);
    struct buf in = BUF_INIT;
    size_t head_len = 0;
    if (e == 0)
        e = read_head(h, &in, &head_len, timeout_ms);
    if (e < 0) {
        ret->error = xstrdup(e == -ETIME ? "no answer to the upgrade in time"
                                         : "connection lost during upgrade");
        buf_free(&in);
        return -EIO;
    }
    size_t want = 0;
    if (api_upgrade_head(in.data, head_len, ret, &want) < 0) {
        ret->error = xstrdup("malformed answer to the upgrade");
        buf_free(&in);
        return -EIO;
    }
    if (ret->status != 101) {
        read_body(h, &in, head_len, want, timeout_ms);
        api_upgrade_refusal(ret, in.data + head_len, in.len - head_len);
        buf_free(&in);
        return -EPROTO;
    }
    struct api_stream *s = xcalloc(1, sizeof(*s));
    s->c = c;
    s->pending_len = in.len - head_len;
    s->pending = s->pending_len ? xstrndup(in.data + head_len, s->pending_len)
                                : NULL;
    curl_socket_t fd = CURL_SOCKET_BAD;
    curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &fd);
    s->fd = (int)fd;
    buf_free(&in);
    *ret_stream = s;
    return 0;
}

ssize_t api_stream_send(struct api_stream *s, const void *data, size_t n)
{
    size_t sent = 0;
    CURLcode cc = curl_easy_send(s->c->curl, data, n, &sent);
    if (cc == CURLE_AGAIN)
        return -EAGAIN;
    return cc == CURLE_OK ? (ssize_t)sent : -EIO;
}

int api_stream_send_all(struct api_stream *s, const void *data, size_t n,
                        int timeout_ms)
{
    return send_all(s->c->curl, data, n, timeout_ms);
}

ssize_t api_stream_recv(struct api_stream *s, void *data, size_t n)
{
    if (s->pending_off < s->pending_len) {
        size_t k = s->pending_len - s->pending_off;
        k = k < n ? k : n;
        memcpy(data, s->pending + s->pending_off, k);
        s->pending_off += k;
        return (ssize_t)k;
    }
    size_t got = 0;
    CURLcode cc = curl_easy_recv(s->c->curl, data, n, &got);
    if (cc == CURLE_AGAIN)
        return -EAGAIN;
    return cc == CURLE_OK ? (ssize_t)got : -EIO;
}

int api_stream_fd(const struct api_stream *s) { return s->fd; }

void api_stream_free(struct api_stream *s)
{
    if (!s)
        return;
    /* The connection is the stream's alone: drop it with the handle's
     * state, so the client's next request opens a fresh one. */
    curl_easy_reset(s->c->curl);
    curl_easy_cleanup(s->c->curl);
    s->c->curl = curl_easy_init();
    free(s->pending);
    free(s);
}
