/* Image cache and downloader. The file's modification time records its
 * last use (atime is unreliable under relatime/noatime). A download holds
 * an flock on its .part file, so two processes sharing a cache directory
 * do not interleave writes; inside one process a table of flights makes
 * later callers wait for the first one's result. */
#include "images/fetch.h"
#include "images/addrpolicy.h"
#include "images/fetch_sink.h"

#include "common/curlinit.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/timeutil.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define FETCH_DEFAULT_ATTEMPTS 5
#define FETCH_DEFAULT_STALL_S 30
#define FETCH_STALE_PART_S (24 * 3600)

struct flight {
    char sha[2 * SHA256_LEN + 1];
    unsigned refs;
    bool done;
    int result;
    char *reason;
    pthread_cond_t cond;
    struct flight *next;
};

struct fetch_cache {
    char *dir;
    uint64_t budget;
    char *ca_file;
    char *key_pin;
    char *auth_header;
    unsigned attempts;
    long stall_s;
    fetch_in_use_fn in_use;
    void *in_use_data;
    const volatile int *cancel;
    const struct addrpolicy *policy;
    uint64_t max_bytes;
    bool page_cache;
    pthread_mutex_t lock;
    struct flight *flights;
    struct fetch_stats stats;
};

static bool digest_ok(const char *s)
{
    if (!s || strlen(s) != 2 * SHA256_LEN)
        return false;
    for (size_t i = 0; i < 2 * SHA256_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static char *reasonf(const char *fmt, ...) _printf_(1, 2);
static char *reasonf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    return s;
}

struct fetch_cache *fetch_cache_new(const struct fetch_opts *o,
                                    char **ret_reason)
{
    int e;
    if (!o || !o->dir || !*o->dir) {
        if (ret_reason)
            *ret_reason = xstrdup("no cache directory given");
        return NULL;
    }
    if ((e = mkdir_p(o->dir, 0700)) < 0) {
        if (ret_reason)
            *ret_reason = reasonf("cannot create cache directory '%s': %s",
                                  o->dir, strerror(-e));
        return NULL;
    }
    curl_init_once();
    struct fetch_cache *c = xcalloc(1, sizeof(*c));
    c->dir = xstrdup(o->dir);
    c->budget = o->budget_bytes;
    c->ca_file = o->ca_file ? xstrdup(o->ca_file) : NULL;
    c->key_pin = o->key_pin ? xstrdup(o->key_pin) : NULL;
    c->auth_header = o->bearer ? xasprintf("Authorization: Bearer %s",
                                           o->bearer)
                               : NULL;
    c->attempts = o->attempts ? o->attempts : FETCH_DEFAULT_ATTEMPTS;
    c->stall_s = o->stall_timeout_s > 0 ? o->stall_timeout_s
                                        : FETCH_DEFAULT_STALL_S;
    c->in_use = o->in_use;
    c->in_use_data = o->in_use_data;
    c->cancel = o->cancel;
    c->policy = o->policy;
    c->max_bytes = o->max_bytes;
    c->page_cache = o->page_cache;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void fetch_cache_free(struct fetch_cache *c)
{
    if (!c)
        return;
    while (c->flights) {
        struct flight *f = c->flights;
        c->flights = f->next;
        pthread_cond_destroy(&f->cond);
        free(f->reason);
        free(f);
    }
    pthread_mutex_destroy(&c->lock);
    if (c->auth_header)
        explicit_bzero(c->auth_header, strlen(c->auth_header));
    free(c->auth_header);
    free(c->ca_file);
    free(c->key_pin);
    free(c->dir);
    free(c);
}

char *fetch_cache_path(struct fetch_cache *c, const char *sha256)
{
    if (!digest_ok(sha256))
        return NULL;
    return xasprintf("%s/%s", c->dir, sha256);
}

bool fetch_cache_has(struct fetch_cache *c, const char *sha256)
{
    _cleanup_free_ char *p = fetch_cache_path(c, sha256);
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

void fetch_cache_stats(struct fetch_cache *c, struct fetch_stats *ret)
{
    pthread_mutex_lock(&c->lock);
    *ret = c->stats;
    pthread_mutex_unlock(&c->lock);
}

static void stat_add(struct fetch_cache *c, uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&c->lock);
    *field += n;
    pthread_mutex_unlock(&c->lock);
}

/* ---- eviction ---- */

struct centry {
    char sha[2 * SHA256_LEN + 1];
    uint64_t size;
    int64_t mtime_ns;
};

static int centry_cmp(const void *a, const void *b)
{
    const struct centry *x = a, *y = b;
    if (x->mtime_ns != y->mtime_ns)
        return x->mtime_ns < y->mtime_ns ? -1 : 1;
    return strcmp(x->sha, y->sha);
}

static bool in_flight_locked(struct fetch_cache *c, const char *sha)
{
    for (struct flight *f = c->flights; f; f = f->next)
        if (streq(f->sha, sha))
            return true;
    return false;
}

/* Called with c->lock held. */
static uint64_t evict_locked(struct fetch_cache *c, uint64_t reserve,
                             const char *keep, bool dry)
{
    DIR *d = opendir(c->dir);
    struct centry *ents = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    struct dirent *de;

    if (!d)
        return 0;
    while ((de = readdir(d))) {
        struct stat st;
        size_t len = strlen(de->d_name);
        bool part = len == 2 * SHA256_LEN + 5 &&
                    streq(de->d_name + 2 * SHA256_LEN, ".part");
        char sha[2 * SHA256_LEN + 1];
        if (len != 2 * SHA256_LEN && !part)
            continue;
        memcpy(sha, de->d_name, 2 * SHA256_LEN);
        sha[2 * SHA256_LEN] = '\0';
        if (!digest_ok(sha) ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (part) {
            /* An abandoned partial download: nobody resumes it any more. */
            if (!dry && !in_flight_locked(c, sha) &&
                now_s() - st.st_mtim.tv_sec > FETCH_STALE_PART_S)
                unlinkat(dirfd(d), de->d_name, 0);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            ents = xrealloc(ents, cap * sizeof(*ents));
        }
        memcpy(ents[n].sha, sha, sizeof(sha));
        ents[n].size = (uint64_t)st.st_size;
        ents[n].mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 +
                           st.st_mtim.tv_nsec;
        total += ents[n].size;
        n++;
    }
    if (!dry && c->budget) {
        uint64_t limit = reserve < c->budget ? c->budget - reserve : 0;
        if (n > 1)
            qsort(ents, n, sizeof(*ents), centry_cmp);
        for (size_t i = 0; i < n && total > limit; i++) {
            if (streq(ents[i].sha, keep) || in_flight_locked(c, ents[i].sha) ||
                (c->in_use && c->in_use(ents[i].sha, c->in_use_data)))
                continue;
            if (unlinkat(dirfd(d), ents[i].sha, 0) == 0) {
                total -= ents[i].size;
                c->stats.evicted++;
            }
        }
    }
    closedir(d);
    free(ents);
    return total;
}

uint64_t fetch_cache_evict(struct fetch_cache *c, uint64_t reserve)
{
    pthread_mutex_lock(&c->lock);
    uint64_t r = evict_locked(c, reserve, NULL, false);
    pthread_mutex_unlock(&c->lock);
    return r;
}

uint64_t fetch_cache_usage(struct fetch_cache *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t r = evict_locked(c, 0, NULL, true);
    pthread_mutex_unlock(&c->lock);
    return r;
}

/* ---- one transfer (written by images/fetch_sink.c) ---- */

struct xfer {
    struct fetch_sink *sink;
    uint64_t have;     /* bytes received: in the .part file or on their
                          way there */
    uint64_t resume;   /* offset asked for with Range */
    uint64_t limit;    /* expected size, 0 = unknown */
    long status;       /* of the last response seen */
    int64_t range_start; /* from Content-Range, -1 when absent */
    bool started;      /* first body byte of this attempt seen */
    int err;           /* why the write callback stopped */
    char *reason;
    const struct addrpolicy *policy;
    char *refused;     /* why the policy refused an address */
};

static size_t on_header(char *data, size_t size, size_t nmemb, void *user)
{
    struct xfer *x = user;
    size_t len = size * nmemb;
    _cleanup_free_ char *line = xstrndup(data, len);
    if (startswith(line, "HTTP/")) {
        const char *sp = strchr(line, ' ');
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        x->range_start = -1;
    } else if (strncasecmp(line, "Content-Range:", 14) == 0) {
        const char *p = line + 14;
        while (*p == ' ')
            p++;
        if (strncasecmp(p, "bytes ", 6) == 0) {
            char *end;
            unsigned long long v = strtoull(p + 6, &end, 10);
            if (end != p + 6 && *end == '-')
                x->range_start = (int64_t)v;
        }
    }
    return len;
}

/* Every socket libcurl opens, for the first URL and each redirect, comes
 * here with the address it is about to connect to: the one place where
 * a name that resolves (or rebinds) to an internal address is caught. */
static curl_socket_t on_opensocket(void *user, curlsocktype purpose,
                                   struct curl_sockaddr *addr)
{
    struct xfer *x = user;
    char *why = NULL;
    if (purpose != CURLSOCKTYPE_IPCXN ||
        addrpolicy_check(x->policy, &addr->addr, addr->addrlen, &why) < 0) {
        /* A name may resolve to several refused addresses: keep all. */
        char *all = xasprintf("%s%s%s", x->refused ? x->refused : "",
                              x->refused ? "; " : "",
                              why ? why : "not a plain connection");
        free(why);
        free(x->refused);
        x->refused = all;
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC,
                  addr->protocol);
}

static int part_reset(struct xfer *x)
{
    x->have = 0;
    return fetch_sink_reset(x->sink);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    struct xfer *x = user;
    size_t len = size * nmemb;

    if (!x->started) {
        x->started = true;
        if (x->status == 206) {
            if (x->range_start < 0 || (uint64_t)x->range_start != x->resume) {
                x->err = -EAGAIN; /* retry from scratch */
                x->reason = reasonf("server resumed at the wrong offset");
                x->resume = 0;
                part_reset(x);
                return 0;
            }
        } else if (x->status == 200) {
            if (x->have > 0 && (x->err = part_reset(x)) < 0) {
                x->reason = reasonf("cannot truncate: %s", strerror(-x->err));
                return 0;
            }
        } else {
            return 0; /* an error page: judged after perform */
        }
    }
    if (x->limit && x->have + len > x->limit) {
        x->err = -EBADMSG;
        x->reason = reasonf("server sent more than the %llu bytes expected",
                            (unsigned long long)x->limit);
        return 0;
    }
    int e = fetch_sink_add(x->sink, data, len);
    if (e < 0) {
        x->err = e;
        x->reason = reasonf("cannot write the image: %s", strerror(-e));
        return 0;
    }
    x->have += len;
    return len;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    const volatile int *cancel = user;
    return cancel && *cancel ? 1 : 0;
}

static bool cancelled(const struct fetch_cache *c)
{
    return c->cancel && *c->cancel;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static int download(struct fetch_cache *c, const char *url, const char *sha,
                    uint64_t size, char **reason)
{
    _cleanup_free_ char *final = xasprintf("%s/%s", c->dir, sha);
    _cleanup_free_ char *part = xasprintf("%s/%s.part", c->dir, sha);
    _cleanup_close_ int fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct fetch_sink *sink = NULL;
    struct stat st;
    int e;

    if (fd < 0) {
        e = -errno;
        *reason = reasonf("cannot create '%s': %s", part, strerror(-e));
        return e;
    }
    if (flock(fd, LOCK_EX) < 0) {
        e = -errno;
        *reason = reasonf("cannot lock '%s': %s", part, strerror(-e));
        return e;
    }
    /* Another process may have finished while we waited for the lock;
     * drop the empty .part we may have made, not anyone else's. */
    if (stat(final, &st) == 0) {
        struct stat ps, fs;
        if (fstat(fd, &fs) == 0 && fs.st_size == 0 && stat(part, &ps) == 0 &&
            ps.st_ino == fs.st_ino && ps.st_dev == fs.st_dev)
            unlink(part);
        return 0;
    }
    if (fstat(fd, &st) < 0) {
        e = -errno;
        *reason = reasonf("cannot stat '%s': %s", part, strerror(-e));
        return e;
    }
    /* The same file again for O_DIRECT writes, where it can be had. */
    int dfd = c->page_cache ? -1
                            : open(part, O_WRONLY | O_DIRECT | O_CLOEXEC);
    struct stat ds;
    if (dfd >= 0 && (fstat(dfd, &ds) < 0 || ds.st_ino != st.st_ino ||
                     ds.st_dev != st.st_dev)) {
        close(dfd);
        dfd = -1;
    }
    /* What an earlier attempt left in the .part file is hashed first. */
    if ((e = fetch_sink_new(fd, dfd, (uint64_t)st.st_size, &sink)) < 0) {
        *reason = reasonf("cannot start writing the image: %s", strerror(-e));
        return e;
    }
    struct xfer x = { .sink = sink, .have = (uint64_t)st.st_size,
                      .limit = size ? size : c->max_bytes,
                      .policy = c->policy };
    if (x.limit && x.have > x.limit)
        part_reset(&x);

    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    if (!h)
        abort();
    if (c->auth_header)
        hdrs = curl_slist_append(hdrs, c->auth_header);
    bool complete = false;
    e = -EIO;
    char errbuf[CURL_ERROR_SIZE];
    for (unsigned attempt = 0; attempt < c->attempts && !complete; attempt++) {
        if (attempt > 0)
            usleep(100000u * (1u << (attempt < 5 ? attempt : 5)));
        if (cancelled(c)) {
            e = -ECANCELED;
            free(*reason);
            *reason = reasonf("fetching the image was cancelled");
            break;
        }
        curl_easy_reset(h);
        errbuf[0] = '\0';
        x.started = false;
        x.status = 0;
        x.range_start = -1;
        x.err = 0;
        free(x.reason);
        x.reason = NULL;
        x.resume = x.have;
        char range[32];
        if (x.have > 0) {
            snprintf(range, sizeof(range), "%llu-",
                     (unsigned long long)x.have);
            curl_easy_setopt(h, CURLOPT_RANGE, range);
            stat_add(c, &c->stats.resumed, 1);
        }
        stat_add(c, &c->stats.downloads, 1);
        uint64_t before = x.have;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->stall_s);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
        curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L * 1024);
        if (c->cancel) {
            curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
            curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
            curl_easy_setopt(h, CURLOPT_XFERINFODATA, c->cancel);
        }
        if (c->ca_file) {
            /* Only this CA: without clearing CAPATH libcurl would also load
             * the system bundle (about 14 MiB of heap per handle). */
            curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
            curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
        }
        if (c->key_pin)
            curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, c->key_pin);
        if (hdrs)
            curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        if (c->policy) {
            /* A proxy would connect for us, out of the policy's sight. */
            curl_easy_setopt(h, CURLOPT_PROXY, "");
            curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
            curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &x);
        }
        free(x.refused);
        x.refused = NULL;
        CURLcode cc = curl_easy_perform(h);
        /* What came is written before the next attempt resumes after it. */
        int se = fetch_sink_sync(sink);
        if (se < 0 && x.err >= 0) {
            x.err = se;
            free(x.reason);
            x.reason = reasonf("cannot write the image: %s", strerror(-se));
        }
        stat_add(c, &c->stats.bytes, x.have >= before ? x.have - before
                                                       : x.have);
        if (x.err == -EBADMSG || (x.err < 0 && x.err != -EAGAIN)) {
            e = x.err;
            free(*reason);
            *reason = TAKE_PTR(x.reason);
            break;
        }
        if (x.err == -EAGAIN)
            continue;
        if (cc != CURLE_OK && x.refused) {
            /* Not a passing fault: asking again gets the same answer. */
            e = -EACCES;
            free(*reason);
            *reason = reasonf("the image source address is not allowed: %s",
                              x.refused);
            break;
        }
        if (cc == CURLE_OK && (x.status == 200 || x.status == 206)) {
            complete = !size || x.have >= size;
            if (!complete) {
                free(*reason);
                *reason = reasonf("fetching the image failed: the transfer "
                                  "ended after %llu of %llu bytes",
                                  (unsigned long long)x.have,
                                  (unsigned long long)size);
            }
        } else if (x.status == 416 && x.have > 0) {
            /* Nothing after our offset: the .part is already whole. */
            complete = true;
        } else if (cc == CURLE_TOO_MANY_REDIRECTS ||
                   cc == CURLE_UNSUPPORTED_PROTOCOL ||
                   cc == CURLE_URL_MALFORMAT) {
            /* A redirect loop, or one to a scheme we do not follow: the
             * server's own answer, the same next time. */
            e = -EIO;
            free(*reason);
            *reason = reasonf("fetching the image failed: %s",
                              errbuf[0] ? errbuf : curl_easy_strerror(cc));
            break;
        } else if (x.status >= 400 && x.status < 500 && x.status != 408 &&
                   x.status != 429) {
            e = -EIO;
            free(*reason);
            *reason = reasonf("fetching the image failed: HTTP %ld", x.status);
            break;
        } else {
            free(*reason);
            if (cc != CURLE_OK)
                *reason = reasonf("fetching the image failed: %s",
                                  errbuf[0] ? errbuf : curl_easy_strerror(cc));
            else
                *reason = reasonf("fetching the image failed: HTTP %ld",
                                  x.status);
        }
    }
    free(x.reason);
    free(x.refused);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    uint8_t got[SHA256_LEN];
    int he = fetch_sink_finish(sink, got);
    if (complete && he < 0) {
        complete = false;
        e = he;
        free(*reason);
        *reason = reasonf("cannot write or hash the image: %s",
                          strerror(-he));
    }
    if (!complete) {
        if (cancelled(c) && e != -EBADMSG)
            e = -ECANCELED;
        if (e == -EBADMSG) {
            unlink(part);
            stat_add(c, &c->stats.mismatches, 1);
        }
        if (!*reason)
            *reason = reasonf("fetching the image failed");
        return e;
    }
    free(*reason);
    *reason = NULL;

    char got_hex[2 * SHA256_LEN + 1];
    hex_encode(got, SHA256_LEN, got_hex);
    if (size && x.have != size) {
        unlink(part);
        stat_add(c, &c->stats.mismatches, 1);
        *reason = reasonf("image is %llu bytes, expected %llu",
                          (unsigned long long)x.have,
                          (unsigned long long)size);
        return -EBADMSG;
    }
    if (!streq(got_hex, sha)) {
        unlink(part);
        stat_add(c, &c->stats.mismatches, 1);
        *reason = reasonf("image content does not match its SHA-256 "
                          "(expected %s, got %s)", sha, got_hex);
        return -EBADMSG;
    }
    if (fdatasync(fd) < 0 || fchmod(fd, 0644) < 0 || rename(part, final) < 0) {
        e = -errno;
        *reason = reasonf("cannot store the image: %s", strerror(-e));
        return e;
    }
    fsync_dir(c->dir);
    return 0;
}

int fetch_get(struct fetch_cache *c, const char *url, const char *sha256,
              uint64_t size, char **ret_path, char **ret_reason)
{
    char *reason = NULL;
    int e;

    if (!digest_ok(sha256)) {
        if (ret_reason)
            *ret_reason = xstrdup("image digest must be 64 lowercase hex "
                                  "characters");
        return -EINVAL;
    }
    _cleanup_free_ char *path = xasprintf("%s/%s", c->dir, sha256);

    pthread_mutex_lock(&c->lock);
    struct stat st;
    if (stat(path, &st) == 0) {
        utimensat(AT_FDCWD, path, NULL, 0);
        c->stats.hits++;
        pthread_mutex_unlock(&c->lock);
        *ret_path = TAKE_PTR(path);
        return 0;
    }
    struct flight *f;
    for (f = c->flights; f; f = f->next)
        if (streq(f->sha, sha256))
            break;
    if (f) {
        /* Someone is fetching it: wait for their result. */
        f->refs++;
        while (!f->done)
            pthread_cond_wait(&f->cond, &c->lock);
        e = f->result;
        reason = f->reason ? xstrdup(f->reason) : NULL;
        if (e == 0)
            c->stats.hits++;
    } else {
        f = xcalloc(1, sizeof(*f));
        memcpy(f->sha, sha256, sizeof(f->sha));
        f->refs = 1;
        pthread_cond_init(&f->cond, NULL);
        f->next = c->flights;
        c->flights = f;
        if (c->budget)
            evict_locked(c, size, NULL, false);
        pthread_mutex_unlock(&c->lock);

        e = download(c, url, sha256, size, &reason);

        pthread_mutex_lock(&c->lock);
        f->done = true;
        f->result = e;
        f->reason = reason ? xstrdup(reason) : NULL;
        pthread_cond_broadcast(&f->cond);
    }
    if (--f->refs == 0) {
        for (struct flight **pp = &c->flights; *pp; pp = &(*pp)->next)
            if (*pp == f) {
                *pp = f->next;
                break;
            }
        pthread_cond_destroy(&f->cond);
        free(f->reason);
        free(f);
    }
    if (e == 0 && c->budget)
        evict_locked(c, 0, sha256, false);
    pthread_mutex_unlock(&c->lock);

    if (e < 0) {
        if (ret_reason)
            *ret_reason = reason ? reason : xstrdup("fetching the image failed");
        else
            free(reason);
        return e;
    }
    free(reason);
    *ret_path = TAKE_PTR(path);
    return 0;
}
