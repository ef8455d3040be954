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

/* ---- URL import against a one-file server ---- */

static int srv_fd, srv_port;
static uint8_t *srv_body;
static size_t srv_len;
static volatile bool srv_stop;

static void *srv_main(void *arg)
{
    while (!srv_stop) {
        struct pollfd p = { .fd = srv_fd, .events = POLLIN };
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(srv_fd, NULL, NULL);
        if (fd < 0)
            continue;
        char req[4096];
        ssize_t n = recv(fd, req, sizeof(req) - 1, 0);
        (void)n;
        char hdr[128];
        int hl = snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nContent-Length: "
                          "%zu\r\nConnection: close\r\n\r\n", srv_len);
        send(fd, hdr, (size_t)hl, MSG_NOSIGNAL);
        send(fd, srv_body, srv_len, MSG_NOSIGNAL);
        shutdown(fd, SHUT_RDWR);
        close(fd);
    }
    return NULL;
}

static json_t *wait_state(const char *id, const char *not_state)
{
    _cleanup_free_ char *p = xasprintf("/v1/images/%s", id);
    for (int i = 0; i < 200; i++) {
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

static void url_import_is_verified_before_it_is_ready(void **state)
{
    srv_body = qcow2_image(&srv_len);
    srv_body[5 * CS + 1] ^= 0x5a;
    srv_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    assert_int_equal(bind(srv_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(srv_fd, 8), 0);
    getsockname(srv_fd, (struct sockaddr *)&a, &al);
    srv_port = ntohs(a.sin_port);
    pthread_t t;
    pthread_create(&t, NULL, srv_main, NULL);

    char hex[65];
    sha256_hex(srv_body, srv_len, hex);
    long st;
    _cleanup_free_ char *good = xasprintf(
        "{\"name\": \"imported\", \"url\": \"http://127.0.0.1:%d/disk.qcow2\", "
        "\"sha256\": \"%s\"}", srv_port, hex);
    json_auto_t *j = jcall("POST", "/v1/images", alice_key, good, &st);
    assert_int_equal(st, 201);
    assert_string_equal(json_str(j, "state"), "importing");
    json_auto_t *r = wait_state(json_str(j, "id"), "importing");
    assert_string_equal(json_str(r, "state"), "ready");
    assert_string_equal(json_str(r, "format"), "qcow2");

    /* the wrong digest: refused, with the reason */
    _cleanup_free_ char *bad = xasprintf(
        "{\"name\": \"tampered\", \"url\": \"http://127.0.0.1:%d/disk.qcow2\", "
        "\"sha256\": \"%s\"}", srv_port,
        "1111111111111111111111111111111111111111111111111111111111111111");
    json_auto_t *b = jcall("POST", "/v1/images", alice_key, bad, &st);
    assert_int_equal(st, 201);
    json_auto_t *rb = wait_state(json_str(b, "id"), "importing");
    assert_string_equal(json_str(rb, "state"), "error");
    assert_non_null(strstr(json_str(rb, "state_reason"), "SHA-256"));

    srv_stop = true;
    pthread_join(t, NULL);
    close(srv_fd);
    free(srv_body);
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
    /* Quotas are test_guard's subject: none here (-1). */
    A.cfg.quota_images = A.cfg.quota_ssh_keys = -1;
    _cleanup_free_ char *db = xasprintf("%s/fog.db", dir);
    if (store_open(db, &A.store) < 0)
        return -1;
    admin_key = account("admin", "admin", NULL);
    alice_key = account("alice", "tenant", alice_id);
    bob_key = account("bob", "tenant", NULL);
    struct http_server_opts o = {
        .listen = "127.0.0.1:0", .routes = routes,
        .n_routes = ARRAY_SIZE(routes), .max_body = 1 << 20, .threads = 2,
        .before = app_before, .after = app_after, .app = &A,
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
        cmocka_unit_test(templates_are_listed_and_fetched),
        cmocka_unit_test(ssh_keys_are_checked_listed_and_deleted),
        cmocka_unit_test(restart_returns_cut_uploads_to_pending),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
