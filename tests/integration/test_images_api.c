/* The image, template and SSH key API served in-process on loopback with
 * a temporary database: uploads are judged by content (hostile qcow2s get
 * 422 and the image shows why), content is served with ranges, URL
 * imports are verified, images in use cannot be deleted, tenants see only
 * their own and public images. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "controller/auth.h"
#include "controller/catalog.h"
#include "controller/handlers.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>


#define AT (ALLOW_ADMIN | ALLOW_TENANT)
static const struct http_route routes[] = {
    { "POST", "/v1/images", h_image_create, AT, NULL },
    { "GET", "/v1/images", h_image_list, ALLOW_USERS, NULL },
    { "GET", "/v1/images/{id}", h_image_get, ALLOW_USERS, NULL },
    { "DELETE", "/v1/images/{id}", h_image_delete, AT, NULL },
    { "PUT", "/v1/images/{id}/file", h_image_upload, AT, h_image_upload_sink },
    { "GET", "/v1/images/{id}/file", h_image_download, AT | ALLOW_NODE, NULL },
    { "GET", "/v1/templates", h_template_list, ALLOW_USERS, NULL },
    { "GET", "/v1/templates/{name}", h_template_get, ALLOW_USERS, NULL },
    { "POST", "/v1/ssh-keys", h_sshkey_create, AT, NULL },
    { "GET", "/v1/ssh-keys", h_sshkey_list, AT, NULL },
    { "DELETE", "/v1/ssh-keys/{id}", h_sshkey_delete, AT, NULL },
};

static struct app A;
static char *dir, *base;
static char *admin_key, *alice_key, *bob_key;
static char alice_id[UUID_STR_LEN + 1];

static char *account(const char *name, const char *role, char *ret_id)
{
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    assert_true(store_exec(A.store, "INSERT INTO accounts (id, name, role, "
                           "created_at) VALUES ($1, $2, $3, $4)", "sssi", id,
                           name, role, now_s()) == 1);
    struct auth_key k;
    assert_int_equal(key_insert(A.store, id, "test", &k), 0);
    char *tok = xstrdup(k.token);
    auth_key_clear(&k);
    if (ret_id)
        memcpy(ret_id, id, sizeof(id));
    return tok;
}

/* method path as key, body; returns the parsed JSON (caller decrefs) and
 * the status in *st. */
static json_t *call(const char *method, const char *path, const char *key,
                    const void *body, size_t len, const char *ctype,
                    const char *hdr, long *st, struct tu_resp *raw)
{
    _cleanup_free_ char *url = xasprintf("%s%s", base, path);
    struct tu_resp r;
    *st = tu_http(method, url, key, NULL, body, len, ctype, hdr, &r);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    if (raw)
        *raw = r;
    else
        tu_resp_clear(&r);
    return j;
}

static json_t *jcall(const char *method, const char *path, const char *key,
                     const char *json, long *st)
{
    return call(method, path, key, json, json ? strlen(json) : 0, NULL, NULL,
                st, NULL);
}

/* ---- fixtures ---- */

/* A 64 MiB qcow2 v3 with one data cluster (clusters of CS bytes). */
#define CS TU_QCOW2_CLUSTER
static uint8_t *qcow2_image(size_t *len)
{
    return tu_qcow2(64ULL << 20, len);
}

static char *create_image(const char *key, const char *name, long want)
{
    _cleanup_free_ char *body = xasprintf("{\"name\": \"%s\"}", name);
    long st;
    json_auto_t *j = jcall("POST", "/v1/images", key, body, &st);
    assert_int_equal(st, want);
    return st == 201 ? xstrdup(json_str(j, "id")) : NULL;
}

static json_t *upload(const char *key, const char *id, const void *data,
                      size_t len, long *st)
{
    _cleanup_free_ char *path = xasprintf("/v1/images/%s/file", id);
    return call("PUT", path, key, data, len, "application/octet-stream", NULL,
                st, NULL);
}

/* Files in a directory (0 when it does not exist). */
static int dir_entries(const char *path)
{
    DIR *d = opendir(path);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* ---- tests ---- */

static void good_qcow2_upload_is_ready_and_served_with_ranges(void **state)
{
    _cleanup_free_ char *id = create_image(alice_key, "good", 201);
    size_t len;
    _cleanup_free_ uint8_t *img = qcow2_image(&len);
    long st;
    json_auto_t *j = upload(alice_key, id, img, len, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_str(j, "state"), "ready");
    assert_string_equal(json_str(j, "format"), "qcow2");
    assert_int_equal(json_int(j, "size", 0), len);
    assert_int_equal(json_int(j, "virtual_size", 0), 64 << 20);
    char hex[65];
    sha256_hex(img, len, hex);
    assert_string_equal(json_str(j, "sha256"), hex);
    _cleanup_free_ char *stored = catalog_path(&A, hex);
    assert_int_equal(access(stored, R_OK), 0);

    _cleanup_free_ char *path = xasprintf("/v1/images/%s/file", id);
    struct tu_resp raw;
    json_decref(call("GET", path, alice_key, NULL, 0, NULL,
                     "Range: bytes=327680-327689", &st, &raw));
    assert_int_equal(st, 206);
    assert_int_equal(raw.len, 10);
    assert_memory_equal(raw.body, img + 5 * CS, 10);
    tu_resp_clear(&raw);
    /* A suffix of 2^64 bytes once wrapped around to the whole file. */
    json_decref(call("GET", path, alice_key, NULL, 0, NULL,
                     "Range: bytes=-18446744073709551616", &st, &raw));
    assert_int_equal(st, 416);
    tu_resp_clear(&raw);
    json_decref(call("GET", path, alice_key, NULL, 0, NULL, NULL, &st, &raw));
    assert_int_equal(st, 200);
    assert_int_equal(raw.len, len);
    assert_memory_equal(raw.body, img, len);
    tu_resp_clear(&raw);

    /* a second upload to a ready image is refused */
    json_decref(upload(alice_key, id, img, len, &st));
    assert_int_equal(st, 409);

    /* inspection ran in the background (skipped here: no appliance) */
    _cleanup_free_ char *gp = xasprintf("/v1/images/%s", id);
    bool skipped = false;
    for (int i = 0; i < 100 && !skipped; i++) {
        json_auto_t *g = jcall("GET", gp, alice_key, NULL, &st);
        skipped = streq(json_str(g, "inspection"), "skipped");
        if (!skipped)
            usleep(20000);
    }
    assert_true(skipped);
}

static void hostile_uploads_are_refused_with_the_reason(void **state)
{
    size_t len;
    _cleanup_free_ uint8_t *img = qcow2_image(&len);
    static const char target[] = "/etc/passwd";
    struct {
        const char *name;
        size_t len;
        const char *reason;
    } cases[] = {
        { "backing", len, "backing file" },
        { "truncated", 4 * CS + 100, "truncated" },
        { "text", 4096, "text" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        _cleanup_free_ uint8_t *body = xmalloc(len);
        memcpy(body, img, len);
        if (i == 0) {
            memcpy(body + 512, target, sizeof(target) - 1);
            tu_put_be64(body, 8, 512);
            tu_put_be32(body, 16, sizeof(target) - 1);
        } else if (i == 2) {
            for (size_t k = 0; k < cases[i].len; k++)
                body[k] = "root:x:0:0:root:/root:/bin/sh\n"[k % 30];
        }
        _cleanup_free_ char *name = xasprintf("bad-%s", cases[i].name);
        _cleanup_free_ char *id = create_image(alice_key, name, 201);
        long st;
        json_auto_t *j = upload(alice_key, id, body, cases[i].len, &st);
        assert_int_equal(st, 422);
        if (!strstr(json_str(j, "detail"), cases[i].reason))
            fail_msg("%s: '%s'", cases[i].name, json_str(j, "detail"));
        _cleanup_free_ char *gp = xasprintf("/v1/images/%s", id);
        json_auto_t *g = jcall("GET", gp, alice_key, NULL, &st);
        assert_string_equal(json_str(g, "state"), "error");
        assert_non_null(strstr(json_str(g, "state_reason"), cases[i].reason));
        /* nothing but good content is kept */
        _cleanup_free_ char *tmpdir = xasprintf("%s/images/tmp", dir);
        assert_int_equal(dir_entries(tmpdir), 0);
        /* a corrected upload to the same image is accepted */
        if (i == 2) {
            json_auto_t *ok = upload(alice_key, id, img, len, &st);
            assert_int_equal(st, 200);
            assert_string_equal(json_str(ok, "state"), "ready");
        }
    }
}

static void visibility_and_ownership_are_enforced(void **state)
{
    long st;
    json_decref(jcall("POST", "/v1/images", alice_key,
                      "{\"name\": \"pub\", \"visibility\": \"public\"}", &st));
    assert_int_equal(st, 403);
    _cleanup_free_ char *pub = NULL;
    json_auto_t *p = jcall("POST", "/v1/images", admin_key,
                           "{\"name\": \"shared\", \"visibility\": "
                           "\"public\"}", &st);
    assert_int_equal(st, 201);
    pub = xstrdup(json_str(p, "id"));
    _cleanup_free_ char *mine = create_image(alice_key, "secret", 201);

    _cleanup_free_ char *mp = xasprintf("/v1/images/%s", mine);
    _cleanup_free_ char *pp = xasprintf("/v1/images/%s", pub);
    json_decref(jcall("GET", mp, bob_key, NULL, &st));
    assert_int_equal(st, 404);
    json_decref(jcall("GET", "/v1/images/secret", bob_key, NULL, &st));
    assert_int_equal(st, 404);
    json_decref(jcall("GET", pp, bob_key, NULL, &st));
    assert_int_equal(st, 200);
    json_decref(jcall("DELETE", pp, bob_key, NULL, &st));
    assert_int_equal(st, 404);
    json_decref(jcall("DELETE", mp, bob_key, NULL, &st));
    assert_int_equal(st, 404);
    _cleanup_free_ char *up = xasprintf("/v1/images/%s/file", mine);
    json_decref(call("PUT", up, bob_key, "xxxx", 4, "application/octet-stream",
                     NULL, &st, NULL));
    assert_int_equal(st, 404);

    json_auto_t *list = jcall("GET", "/v1/images?limit=500", bob_key, NULL, &st);
    assert_int_equal(st, 200);
    size_t i;
    json_t *it;
    bool saw_pub = false;
    json_array_foreach(json_object_get(list, "items"), i, it) {
        assert_string_not_equal(json_str(it, "id"), mine);
        saw_pub |= streq(json_str(it, "id"), pub);
    }
    assert_true(saw_pub);

    /* same name twice for one owner */
    create_image(alice_key, "secret", 409);
    json_decref(jcall("POST", "/v1/images", alice_key,
                      "{\"name\": \"u\", \"url\": \"file:///etc/passwd\", "
                      "\"sha256\": \"" "0000000000000000000000000000000000000000"
                      "000000000000000000000000\"}", &st));
    assert_int_equal(st, 400);
    json_decref(jcall("POST", "/v1/images", alice_key,
                      "{\"name\": \"u\", \"url\": \"http://x/y\"}", &st));
    assert_int_equal(st, 400);
}

static void image_in_use_cannot_be_deleted(void **state)
{
    _cleanup_free_ char *id = create_image(alice_key, "used", 201);
    size_t len;
    _cleanup_free_ uint8_t *img = qcow2_image(&len);
    img[5 * CS] ^= 0xff; /* distinct content from the other tests */
    long st;
    json_decref(upload(alice_key, id, img, len, &st));
    assert_int_equal(st, 200);
    char vm[UUID_STR_LEN + 1];
    uuid_generate_str(vm);
    assert_int_equal(store_exec(A.store,
                                "INSERT INTO vms (id, account_id, name, vcpus, "
                                "memory_mib, disk_gib, image, desired_state, "
                                "state, created_at, updated_at, image_id) "
                                "VALUES ($1, $2, 'vm1', 1, 64, 1, 'used', "
                                "'running', 'pending', 0, 0, $3)", "sss", vm,
                                alice_id, id), 1);
    _cleanup_free_ char *p = xasprintf("/v1/images/%s", id);
    json_auto_t *j = jcall("DELETE", p, alice_key, NULL, &st);
    assert_int_equal(st, 409);
    assert_non_null(strstr(json_str(j, "detail"), "used by 1 VM"));
    store_exec(A.store, "UPDATE vms SET deleted_at = 1 WHERE id = $1", "s", vm);
    json_decref(jcall("DELETE", p, alice_key, NULL, &st));
    assert_int_equal(st, 204);
    json_decref(jcall("GET", p, alice_key, NULL, &st));
    assert_int_equal(st, 404);
    char hex[65];
    sha256_hex(img, len, hex);
    _cleanup_free_ char *stored = catalog_path(&A, hex);
    assert_int_equal(access(stored, F_OK), -1); /* collected */
}

/* ---- URL imports against small servers on loopback ---- */

/* A server on one loopback address: /disk.qcow2 and /secret answer 200
 * with `body`, /redirect answers 302 to `location`, /loop to itself,
 * /file to a file: URL, anything else 404. */
struct srv {
    const char *addr;
    int fd, port;
    const uint8_t *body;
    size_t len;
    char *location;
    volatile int hits;
    volatile bool stop;
    pthread_t thr;
};

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    while (!s->stop) {
        struct pollfd p = { .fd = s->fd, .events = POLLIN };
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0)
            continue;
        __atomic_add_fetch(&s->hits, 1, __ATOMIC_SEQ_CST);
        char req[4096];
        ssize_t n = recv(fd, req, sizeof(req) - 1, 0);
        req[n > 0 ? n : 0] = '\0';
        _cleanup_free_ char *hdr = NULL;
        bool body = false;
        if (startswith(req, "GET /disk.qcow2 ") ||
            startswith(req, "GET /secret ")) {
            hdr = xasprintf("HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                            "Connection: close\r\n\r\n", s->len);
            body = true;
        } else if ((startswith(req, "GET /redirect ") && s->location) ||
                   startswith(req, "GET /loop ") ||
                   startswith(req, "GET /file ")) {
            hdr = xasprintf("HTTP/1.1 302 Found\r\nLocation: %s\r\n"
                            "Content-Length: 0\r\nConnection: close\r\n\r\n",
                            startswith(req, "GET /loop ") ? "/loop"
                            : startswith(req, "GET /file ")
                                ? "file:///etc/passwd"
                                : s->location);
        } else {
            hdr = xstrdup("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                          "Connection: close\r\n\r\n");
        }
        send(fd, hdr, strlen(hdr), MSG_NOSIGNAL);
        if (body)
            send(fd, s->body, s->len, MSG_NOSIGNAL);
        shutdown(fd, SHUT_RDWR);
        close(fd);
    }
    return NULL;
}

/* Serve on addr; location (owned, may be NULL) is where /redirect goes. */
static void srv_start(struct srv *s, const char *addr, const uint8_t *body,
                      size_t len, char *location)
{
    memset(s, 0, sizeof(*s));
    s->location = location;
    s->addr = addr;
    s->body = body;
    s->len = len;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    assert_int_equal(inet_pton(AF_INET, addr, &a.sin_addr), 1);
    socklen_t al = sizeof(a);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->fd, 8), 0);
    getsockname(s->fd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thr, NULL, srv_main, s), 0);
}

static void srv_stop(struct srv *s)
{
    s->stop = true;
    pthread_join(s->thr, NULL);
    close(s->fd);
    free(s->location);
    s->location = NULL;
}

/* Poll the image until it leaves not_state (generous: loaded CI). */
static json_t *wait_state(const char *id, const char *not_state)
{
    _cleanup_free_ char *p = xasprintf("/v1/images/%s", id);
    int64_t deadline = now_ms() + 60000;
    while (now_ms() < deadline) {
        long st;
        json_t *j = jcall("GET", p, alice_key, NULL, &st);
        if (!streq(json_str(j, "state"), not_state))
            return j;
        json_decref(j);
        usleep(25000);
    }
    fail_msg("image %s stayed %s", id, not_state);
    return NULL;
}

/* POST an import of url with digest sha as alice; the reply and status. */
static json_t *import(const char *name, const char *url, const char *sha,
                      long *st)
{
    _cleanup_free_ char *body = xasprintf(
        "{\"name\": \"%s\", \"url\": \"%s\", \"sha256\": \"%s\"}", name, url,
        sha);
    return jcall("POST", "/v1/images", alice_key, body, st);
}

/* Import url as `name` (201) and wait until it settles. */
static json_t *import_settled(const char *name, const char *url,
                              const char *sha)
{
    long st;
    json_auto_t *j = import(name, url, sha, &st);
    assert_int_equal(st, 201);
    return wait_state(json_str(j, "id"), "importing");
}

/* What a tenant reads about a failed import (state_reason, or a problem's
 * detail) holds none of libcurl's words, a port scanner's oracle; nothing
 * in the reply carries the digest of what was fetched. */
static void assert_no_leak(const json_t *j, const char *fetched_sha)
{
    const char *said = json_str(j, "state_reason");
    if (!said)
        said = json_str(j, "detail");
    assert_non_null(said);
    static const char *const words[] = { "curl", "onnect", "refused",
                                         "resolve", "timed out", "HTTP",
                                         "expected", "got ", "port",
                                         "127.", "loopback" };
    for (size_t i = 0; i < ARRAY_SIZE(words); i++)
        if (strcasestr(said, words[i]))
            fail_msg("the reply says '%s': %s", words[i], said);
    _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
    if (fetched_sha && strstr(text, fetched_sha))
        fail_msg("the reply carries the fetched digest: %s", text);
}

static void url_import_is_verified_before_it_is_ready(void **state)
{
    size_t len;
    _cleanup_free_ uint8_t *img = qcow2_image(&len);
    img[5 * CS + 1] ^= 0x5a;
    static struct srv pub; /* static: outlives a failed test's longjmp */
    srv_start(&pub, "127.0.0.2", img, len, NULL); /* allow-listed */

    char hex[65];
    sha256_hex(img, len, hex);
    _cleanup_free_ char *url = xasprintf("http://127.0.0.2:%d/disk.qcow2",
                                         pub.port);
    json_auto_t *r = import_settled("imported", url, hex);
    assert_string_equal(json_str(r, "state"), "ready");
    assert_string_equal(json_str(r, "format"), "qcow2");

    /* the wrong digest: refused, saying so but not what came back */
    json_auto_t *rb = import_settled("tampered", url, "11111111111111111111"
                                     "11111111111111111111111111111111111111"
                                     "111111");
    assert_string_equal(json_str(rb, "state"), "error");
    assert_string_equal(json_str(rb, "state_reason"), CATALOG_IMPORT_MISMATCH);
    assert_no_leak(rb, hex);

    /* a source that fails: one fixed sentence, not the transfer's words */
    _cleanup_free_ char *gone = xasprintf("http://127.0.0.2:%d/missing",
                                          pub.port);
    json_auto_t *rg = import_settled("missing", gone, hex);
    assert_string_equal(json_str(rg, "state"), "error");
    assert_string_equal(json_str(rg, "state_reason"), CATALOG_IMPORT_FAILED);
    assert_no_leak(rg, NULL);
    srv_stop(&pub);
}

/* The image is in error for the owner's fixed sentence, nothing of it can
 * be downloaded, and the admin's event says what was refused. */
static void assert_refused_and_nothing_kept(const json_t *r,
                                            const char *secret_sha)
{
    const char *id = json_str(r, "id");
    assert_string_equal(json_str(r, "state"), "error");
    assert_string_equal(json_str(r, "state_reason"),
                        CATALOG_IMPORT_NOT_ALLOWED);
    assert_no_leak(r, NULL);
    long st;
    _cleanup_free_ char *fp = xasprintf("/v1/images/%s/file", id);
    struct tu_resp raw;
    json_decref(call("GET", fp, alice_key, NULL, 0, NULL, NULL, &st, &raw));
    assert_int_equal(st, 409);
    assert_null(memmem(raw.body, raw.len, "internal only", 13));
    tu_resp_clear(&raw);
    _cleanup_free_ char *stored = catalog_path(&A, secret_sha);
    assert_int_equal(access(stored, F_OK), -1);
    _cleanup_free_ char *importdir = xasprintf("%s/images/import", dir);
    assert_int_equal(dir_entries(importdir), 0);
    json_auto_t *ev = NULL;
    assert_int_equal(store_query_one(A.store, &ev, "SELECT detail FROM "
                                     "events WHERE target = $1 AND action = "
                                     "'image-error' AND account_id IS NULL",
                                     "s", id), 0);
    assert_non_null(strstr(json_str(ev, "detail"), "is a loopback address"));
}

static void url_imports_never_reach_internal_addresses(void **state)
{
    /* The secret: a valid disk image only loopback can read, so a fetch
     * that reached it would make a ready, downloadable image. */
    size_t len;
    _cleanup_free_ uint8_t *secret = qcow2_image(&len);
    memcpy(secret + 5 * CS, "internal only", 13);
    char ssha[65];
    sha256_hex(secret, len, ssha);
    static struct srv in, pub; /* static: outlive a failed test's longjmp */
    srv_start(&in, "127.0.0.1", secret, len, NULL);
    srv_start(&pub, "127.0.0.2", NULL, 0,
              xasprintf("http://127.0.0.1:%d/secret", in.port));
    long st;

    /* a literal internal address, in any spelling: refused at once */
    static const char *const direct[] = { "127.0.0.1", "[::ffff:127.0.0.1]",
                                          "2130706433", "127.1" };
    for (size_t i = 0; i < ARRAY_SIZE(direct); i++) {
        _cleanup_free_ char *url = xasprintf("http://%s:%d/secret", direct[i],
                                             in.port);
        _cleanup_free_ char *name = xasprintf("direct-%zu", i);
        json_auto_t *j = import(name, url, ssha, &st);
        assert_int_equal(st, 422);
        assert_string_equal(json_str(j, "type"),
                            "urn:fog:problem:source-not-allowed");
        assert_string_equal(json_str(j, "field"), "url");
        assert_string_equal(json_str(j, "detail"), CATALOG_IMPORT_NOT_ALLOWED);
        assert_no_leak(j, ssha);
        _cleanup_free_ char *gp = xasprintf("/v1/images/%s", name);
        json_decref(jcall("GET", gp, alice_key, NULL, &st));
        assert_int_equal(st, 404); /* no image was made */
    }

    /* the allowed server redirects inward: refused at the redirect, with
     * the wrong digest (nothing says what came back) and the right one */
    _cleanup_free_ char *redir = xasprintf("http://127.0.0.2:%d/redirect",
                                           pub.port);
    json_auto_t *r1 = import_settled("redirect-guess", redir,
                                     "22222222222222222222222222222222222222"
                                     "22222222222222222222222222");
    assert_refused_and_nothing_kept(r1, ssha);
    json_auto_t *r2 = import_settled("redirect", redir, ssha);
    assert_refused_and_nothing_kept(r2, ssha);
    assert_true(pub.hits >= 2); /* the allowed server was asked */

    /* a name that resolves to loopback: refused when connecting */
    _cleanup_free_ char *byname = xasprintf("http://localhost:%d/secret",
                                            in.port);
    json_auto_t *r3 = import_settled("by-name", byname, ssha);
    assert_refused_and_nothing_kept(r3, ssha);

    /* redirects follow http(s) only, and not for ever */
    _cleanup_free_ char *to_file = xasprintf("http://127.0.0.2:%d/file",
                                             pub.port);
    json_auto_t *f4 = import_settled("to-file", to_file, ssha);
    assert_string_equal(json_str(f4, "state_reason"), CATALOG_IMPORT_FAILED);
    int before = pub.hits;
    _cleanup_free_ char *loop = xasprintf("http://127.0.0.2:%d/loop",
                                          pub.port);
    json_auto_t *f5 = import_settled("loop", loop, ssha);
    assert_string_equal(json_str(f5, "state_reason"), CATALOG_IMPORT_FAILED);
    assert_no_leak(f5, NULL);
    int loops = pub.hits - before;
    if (loops < 2 || loops > 6) /* the first ask and at most 5 redirects */
        fail_msg("a redirect loop was asked %d times", loops);

    /* and the secret server never saw a connection */
    assert_int_equal(in.hits, 0);
    srv_stop(&pub);
    srv_stop(&in);
}

static void templates_are_listed_and_fetched(void **state)
{
    long st;
    json_auto_t *l = jcall("GET", "/v1/templates", bob_key, NULL, &st);
    assert_int_equal(st, 200);
    json_t *items = json_object_get(l, "items");
    static const char *const want[] = { "game-server", "nginx", "tiny-echo",
                                        "tiny-web" };
    size_t found = 0, i;
    json_t *it;
    json_array_foreach(items, i, it)
        for (size_t k = 0; k < ARRAY_SIZE(want); k++)
            found += streq(json_str(it, "name"), want[k]);
    if (found != ARRAY_SIZE(want))
        fail_msg("shipped templates missing or invalid: %s",
                 json_dumps_compact(l));
    json_auto_t *t = jcall("GET", "/v1/templates/nginx", bob_key, NULL, &st);
    assert_int_equal(st, 200);
    assert_true(startswith(json_str(t, "user_data"), "#cloud-config"));
    assert_int_equal(json_int(json_array_get(json_object_get(t, "ports"), 0),
                              "vm_port", 0), 80);
    json_decref(jcall("GET", "/v1/templates/nope", bob_key, NULL, &st));
    assert_int_equal(st, 404);
    json_decref(jcall("GET", "/v1/templates/..%2fetc", bob_key, NULL, &st));
    assert_int_equal(st, 404);
}

static void ssh_keys_are_checked_listed_and_deleted(void **state)
{
    long st;
    /* ssh-ed25519 with a 32-byte key of zeros */
    static const char key[] =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAA alice@laptop";
    _cleanup_free_ char *body = xasprintf(
        "{\"name\": \"laptop\", \"public_key\": \"%s\\n\"}", key);
    json_auto_t *j = jcall("POST", "/v1/ssh-keys", alice_key, body, &st);
    assert_int_equal(st, 201);
    assert_string_equal(json_str(j, "public_key"), key);
    assert_string_equal(json_str(j, "type"), "ssh-ed25519");
    assert_true(startswith(json_str(j, "fingerprint"), "SHA256:"));

    static const char *const bad[] = {
        "{\"name\": \"x\", \"public_key\": \"not a key at all\"}",
        "{\"name\": \"x\", \"public_key\": \"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA x\"}",
        "{\"name\": \"x\", \"public_key\": \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\\n"
        "runcmd: [reboot]\"}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        json_decref(jcall("POST", "/v1/ssh-keys", alice_key, bad[i], &st));
        assert_int_equal(st, 400);
    }
    json_decref(jcall("POST", "/v1/ssh-keys", alice_key, body, &st));
    assert_int_equal(st, 409);

    json_auto_t *l = jcall("GET", "/v1/ssh-keys", alice_key, NULL, &st);
    assert_int_equal(json_array_size(json_object_get(l, "items")), 1);
    json_auto_t *lb = jcall("GET", "/v1/ssh-keys", bob_key, NULL, &st);
    assert_int_equal(json_array_size(json_object_get(lb, "items")), 0);
    json_decref(jcall("DELETE", "/v1/ssh-keys/laptop", bob_key, NULL, &st));
    assert_int_equal(st, 404);
    json_decref(jcall("DELETE", "/v1/ssh-keys/laptop", alice_key, NULL, &st));
    assert_int_equal(st, 204);
    json_auto_t *l2 = jcall("GET", "/v1/ssh-keys", alice_key, NULL, &st);
    assert_int_equal(json_array_size(json_object_get(l2, "items")), 0);
}

static void restart_returns_cut_uploads_to_pending(void **state)
{
    _cleanup_free_ char *id = create_image(alice_key, "cut", 201);
    store_exec(A.store, "UPDATE images SET state = 'uploading' WHERE id = $1",
               "s", id);
    catalog_resume(&A);
    _cleanup_free_ char *p = xasprintf("/v1/images/%s", id);
    long st;
    json_auto_t *j = jcall("GET", p, alice_key, NULL, &st);
    assert_string_equal(json_str(j, "state"), "pending");
    size_t len;
    _cleanup_free_ uint8_t *img = qcow2_image(&len);
    img[5 * CS + 3] ^= 0x33;
    json_decref(upload(alice_key, id, img, len, &st));
    assert_int_equal(st, 200);
}

static int setup(void **state)
{
    dir = tu_tempdir("images-api");
    A.cfg.data_dir = dir;
    A.cfg.max_image_gib = 1;
    A.cfg.templates_dir = (char *)"images/templates";
    A.cfg.import_allow = (char *)"127.0.0.2/32"; /* the "public" server */
    /* Quotas are test_guard's subject: none here (-1). */
    A.cfg.quota_images = A.cfg.quota_ssh_keys = -1;
    _cleanup_free_ char *db = tu_new_store_address(dir);
    if (store_open(db, &A.store) < 0)
        return -1;
    admin_key = account("admin", "admin", NULL);
    alice_key = account("alice", "tenant", alice_id);
    bob_key = account("bob", "tenant", NULL);
    struct http_server_opts o = {
        .listen = "127.0.0.1:0", .routes = routes,
        .n_routes = ARRAY_SIZE(routes), .max_body = 1 << 20, .threads = 2,
        .before = app_before, .begin = app_begin,
        .after = app_after, .park = app_park, .app = &A,
    };
    if (http_server_start(&o, &A.http) < 0)
        return -1;
    base = xasprintf("http://127.0.0.1:%d", http_server_port(A.http));
    return 0;
}

static int teardown(void **state)
{
    http_server_stop(A.http, 1000);
    catalog_shutdown();
    store_close(A.store);
    tu_rmrf(dir);
    free(dir);
    free(base);
    free(admin_key);
    free(alice_key);
    free(bob_key);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_qcow2_upload_is_ready_and_served_with_ranges),
        cmocka_unit_test(hostile_uploads_are_refused_with_the_reason),
        cmocka_unit_test(visibility_and_ownership_are_enforced),
        cmocka_unit_test(image_in_use_cannot_be_deleted),
        cmocka_unit_test(url_import_is_verified_before_it_is_ready),
        cmocka_unit_test(url_imports_never_reach_internal_addresses),
        cmocka_unit_test(templates_are_listed_and_fetched),
        cmocka_unit_test(ssh_keys_are_checked_listed_and_deleted),
        cmocka_unit_test(restart_returns_cut_uploads_to_pending),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
