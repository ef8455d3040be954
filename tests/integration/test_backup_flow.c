/* VM backups through the API with the node's side spoken directly: a
 * backup is listed with the VM's key in its node's desired document only,
 * the upload resumes at the size the hub holds, a wrong digest is refused
 * (422) and the bytes dropped, a commit makes the backup ready with the
 * exact bytes stored, a failure is recorded with its reason, another node
 * and another tenant are refused, the key shows in no tenant answer, and
 * deleting a backup or its VM removes the stored bytes. All of it twice:
 * on the directory store, then on an S3 bucket (s3rver on loopback, when
 * tools/npm-deps.sh installed it). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "controller/bstore_s3.h"
#include "tests/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static struct tu_ctl ctl;
static char *alice, *bob;
static char *a_id, *a_cred, *b_id, *b_cred;
static const char *const serve_args[] = { "--heartbeat", "3600", NULL };
static struct tu_s3 s3;   /* pid > 0: the controller keeps backups there */
static char *s3_url;
static const char *s3_args[10];

static json_t *api(const char *key, const char *method, const char *path,
                   const char *body, long want)
{
    return tu_api_want(&ctl, key, method, path, body, want);
}

/* PUT bytes at offset as the node holding cred: the status; the answer's
 * "size" in *ret_size. */
static long put_chunk(const char *cred, const char *id, uint64_t off,
                      const void *data, size_t len, int64_t *ret_size)
{
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/backups/%s?offset=%llu",
                                         ctl.url, id, (unsigned long long)off);
    struct tu_resp r = { 0 };
    long st = tu_http("PUT", url, cred, ctl.ca, data, len,
                      "application/octet-stream", NULL, &r);
    json_auto_t *j = r.body ? json_loads(r.body, 0, NULL) : NULL;
    if (ret_size)
        *ret_size = json_int(j, "size", -1);
    tu_resp_clear(&r);
    return st;
}

static int64_t held(const char *cred, const char *id)
{
    _cleanup_free_ char *p = xasprintf("/v1/agent/backups/%s", id);
    json_auto_t *j = api(cred, "GET", p, NULL, 200);
    return json_int(j, "size", -1);
}

/* Everything alice can see of her VM and its backups, as one text. */
static char *tenant_view(void)
{
    static const char *const paths[] = { "/v1/vms/bk-web",
                                         "/v1/vms/bk-web/backups",
                                         "/v1/events?limit=200", "/v1/vms" };
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        json_auto_t *j = api(alice, "GET", paths[i], NULL, 200);
        _cleanup_free_ char *t = json_dumps(j, JSON_COMPACT);
        buf_printf(&b, "%s\n", t);
    }
    return buf_steal(&b);
}

/* The stored bytes of blob `id` (caller frees): 0, or -ENOENT. */
static int stored_read(const char *id, size_t max, char **ret, size_t *ret_len)
{
    if (s3.pid <= 0) {
        _cleanup_free_ char *file = xasprintf("%s/backups/%s", ctl.dir, id);
        return file_read(file, max, ret, ret_len);
    }
    _cleanup_free_ char *spool = xasprintf("%s/reader", s3.dir);
    struct bstore_s3_opts o = { .url = s3_url, .key_file = s3.key_file,
                                .spool_dir = spool };
    _cleanup_(bstore_freep) struct bstore *s = NULL;
    assert_int_equal(bstore_s3_new(&o, &s), 0);
    _cleanup_close_ int fd = -1;
    uint64_t size = 0;
    int e = s->ops->open(s, id, &fd, &size);
    if (e < 0)
        return e;
    assert_true(size <= max);
    char *data = xmalloc(size + 1);
    assert_int_equal(fd_read_full(fd, data, size), (ssize_t)size);
    *ret = data;
    *ret_len = size;
    return 0;
}

/* Where an upload's bytes wait for their commit. */
static char *upload_path(const char *id)
{
    return xasprintf("%s/%s/%s.part", ctl.dir,
                     s3.pid > 0 ? "s3-spool" : "backups", id);
}

static int setup_on(const char *const *args)
{
    tu_ctl_start(&ctl, args);
    alice = tu_account(&ctl, "bk-alice", "tenant");
    bob = tu_account(&ctl, "bk-bob", "tenant");
    assert_int_equal(tu_node_join(&ctl, ctl.admin_key, "bk-a", NULL, &a_id,
                                  &a_cred), 201);
    assert_int_equal(tu_node_join(&ctl, ctl.admin_key, "bk-b", NULL, &b_id,
                                  &b_cred), 201);
    json_decref(api(a_cred, "POST", "/v1/agent/status", "{\"vms\":[]}", 200));
    json_decref(api(b_cred, "POST", "/v1/agent/status", "{\"vms\":[]}", 200));
    return 0;
}

static int setup(void **state)
{
    return setup_on(serve_args);
}

static int setup_s3(void **state)
{
    assert_int_equal(tu_s3_raw(&s3, "PUT", "fog-flow", NULL), 200);
    s3_url = xasprintf("http://127.0.0.1:%d/fog-flow", s3.port);
    const char *a[] = { "--heartbeat", "3600", "--backup-store", s3_url,
                        "--s3-region", "eu-west-1", "--s3-access-key-file",
                        s3.key_file, NULL };
    memcpy(s3_args, a, sizeof(a));
    return setup_on(s3_args);
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    free(alice);
    free(bob);
    free(a_id);
    free(a_cred);
    free(b_id);
    free(b_cred);
    return 0;
}

static void backups_upload_with_resume_verify_and_stay_secret(void **state)
{
    json_decref(api(alice, "POST", "/v1/vms",
                    "{\"name\":\"bk-web\",\"vcpus\":1,\"memory_mib\":128,"
                    "\"disk_gib\":1,\"allow_tcg\":true,\"image\":\"fog-tiny\"}",
                    201));
    json_auto_t *vm = api(alice, "GET", "/v1/vms/bk-web", NULL, 200);
    bool on_a = streq(json_str(vm, "node_id"), a_id);
    const char *host = on_a ? a_cred : b_cred, *other = on_a ? b_cred : a_cred;

    /* Another tenant sees no VM; the owner gets a pending backup. */
    json_decref(api(bob, "POST", "/v1/vms/bk-web/backups", NULL, 404));
    json_auto_t *bk = api(alice, "POST", "/v1/vms/bk-web/backups", NULL, 202);
    assert_string_equal(json_str(bk, "state"), "pending");
    assert_string_equal(json_str(bk, "kind"), "manual");
    _cleanup_free_ char *id = xstrdup(json_str(bk, "id"));
    _cleanup_free_ char *bpath = xasprintf("/v1/vms/bk-web/backups/%s", id);
    json_decref(api(bob, "GET", "/v1/vms/bk-web/backups", NULL, 404));
    json_decref(api(alice, "GET", "/v1/vms/bk-web/backups/nope", NULL, 404));

    /* The hosting node's document names it with the key; the other's
     * does not carry the VM at all. */
    json_auto_t *d = api(host, "GET", "/v1/agent/desired", NULL, 200);
    json_t *dv = json_array_get(json_object_get(d, "vms"), 0);
    assert_non_null(dv);
    const char *key = json_str(dv, "backup_key");
    assert_true(is_lower_hex(key, 64));
    assert_string_equal(json_str(json_array_get(json_object_get(dv, "backups"),
                                                0), "id"), id);
    _cleanup_free_ char *keep_key = xstrdup(key);
    json_auto_t *d2 = api(other, "GET", "/v1/agent/desired", NULL, 200);
    _cleanup_free_ char *d2t = json_dumps(d2, JSON_COMPACT);
    assert_null(strstr(d2t, keep_key));

    /* Another node is refused every call, as a missing backup would be. */
    _cleanup_free_ char *np = xasprintf("/v1/agent/backups/%s", id);
    _cleanup_free_ char *cp = xasprintf("/v1/agent/backups/%s/commit", id);
    _cleanup_free_ char *fp = xasprintf("/v1/agent/backups/%s/fail", id);
    json_decref(api(other, "GET", np, NULL, 404));
    assert_int_equal(put_chunk(other, id, 0, "x", 1, NULL), 404);
    json_decref(api(other, "POST", fp, "{\"error\":\"no\"}", 404));
    /* A tenant may not speak for a node. */
    json_decref(api(alice, "GET", np, NULL, 403));

    /* 3 chunks of a sealed-looking blob; the upload stops after two and
     * resumes at the size the hub reports. */
    size_t len = 3 * 70000 + 123;
    uint8_t *blob = xmalloc(len);
    random_bytes(blob, len);
    char sha[65];
    sha256_hex(blob, len, sha);
    assert_int_equal(held(host, id), 0);
    int64_t size;
    assert_int_equal(put_chunk(host, id, 0, blob, 70000, &size), 200);
    assert_int_equal(size, 70000);
    /* A repeated chunk is refused with the size to go on from. */
    assert_int_equal(put_chunk(host, id, 0, blob, 70000, &size), 409);
    assert_int_equal(size, 70000);
    assert_int_equal(put_chunk(host, id, 70000, blob + 70000, 70000, &size),
                     200);
    json_auto_t *up = api(alice, "GET", bpath, NULL, 200);
    assert_string_equal(json_str(up, "state"), "uploading");
    int64_t at = held(host, id);
    assert_int_equal(at, 140000);
    /* A bad offset is a 400, not a write. */
    assert_int_equal(put_chunk(host, id, 0, NULL, 0, NULL), 409);
    _cleanup_free_ char *bad = xasprintf("%s/v1/agent/backups/%s?offset=-1",
                                         ctl.url, id);
    struct tu_resp r = { 0 };
    assert_int_equal(tu_http("PUT", bad, host, ctl.ca, "x", 1,
                             "application/octet-stream", NULL, &r), 400);
    tu_resp_clear(&r);
    assert_int_equal(put_chunk(host, id, (uint64_t)at, blob + at,
                               len - (size_t)at, &size), 200);
    assert_int_equal(size, (int64_t)len);

    /* A commit whose digest is not the bytes': 422, and they are gone. */
    char wrong[65];
    memcpy(wrong, sha, sizeof(wrong));
    wrong[0] = wrong[0] == '0' ? '1' : '0';
    _cleanup_free_ char *cw = xasprintf("{\"size\":%zu,\"sha256\":\"%s\"}",
                                        len, wrong);
    json_auto_t *p422 = api(host, "POST", cp, cw, 422);
    assert_string_equal(json_str(p422, "type"),
                        "urn:fog:problem:digest-mismatch");
    assert_int_equal(held(host, id), 0);
    json_decref(api(host, "POST", cp, "{\"size\":1,\"sha256\":\"ABC\"}", 400));

    /* Sent again in one go and committed: ready, with the exact bytes. */
    assert_int_equal(put_chunk(host, id, 0, blob, len, &size), 200);
    _cleanup_free_ char *cr = xasprintf("{\"size\":%zu,\"sha256\":\"%s\"}",
                                        len, sha);
    json_auto_t *done = api(host, "POST", cp, cr, 200);
    assert_string_equal(json_str(done, "state"), "ready");
    assert_int_equal(json_int(done, "size", -1), (int64_t)len);
    assert_string_equal(json_str(done, "sha256"), sha);
    assert_non_null(json_str(done, "done_at"));
    /* A commit repeated after a lost answer is the same answer; bytes after
     * the commit are refused. */
    json_decref(api(host, "POST", cp, cr, 200));
    assert_int_equal(put_chunk(host, id, len, "x", 1, NULL), 409);
    json_auto_t *st = api(host, "GET", np, NULL, 200);
    assert_true(json_is_true(json_object_get(st, "committed")));
    _cleanup_free_ char *stored = NULL;
    size_t stored_len = 0;
    assert_int_equal(stored_read(id, len + 1, &stored, &stored_len), 0);
    assert_int_equal(stored_len, len);
    assert_memory_equal(stored, blob, len);
    free(blob);
    /* The document no longer lists it, nor the key. */
    json_auto_t *d3 = api(host, "GET", "/v1/agent/desired", NULL, 200);
    json_t *dv3 = json_array_get(json_object_get(d3, "vms"), 0);
    assert_null(json_object_get(dv3, "backups"));
    assert_null(json_object_get(dv3, "backup_key"));

    /* A failure keeps its reason (control characters replaced). */
    json_auto_t *f = api(alice, "POST", "/v1/vms/bk-web/backups", NULL, 202);
    _cleanup_free_ char *fid = xstrdup(json_str(f, "id"));
    _cleanup_free_ char *ffp = xasprintf("/v1/agent/backups/%s/fail", fid);
    json_decref(api(host, "POST", ffp, "{\"error\":\"qemu-img: no\\nspace\"}",
                    204));
    _cleanup_free_ char *fget = xasprintf("/v1/vms/bk-web/backups/%s", fid);
    json_auto_t *fj = api(alice, "GET", fget, NULL, 200);
    assert_string_equal(json_str(fj, "state"), "failed");
    assert_string_equal(json_str(fj, "error"), "qemu-img: no?space");
    json_decref(api(host, "POST", ffp, "{\"error\":\"again\"}", 409));

    /* At most VM_BACKUPS_PENDING_MAX under way. */
    _cleanup_free_ char *gid = NULL;
    for (int i = 0; i < 4; i++) {
        json_auto_t *p = api(alice, "POST", "/v1/vms/bk-web/backups", NULL,
                             202);
        free(gid);
        gid = xstrdup(json_str(p, "id"));
    }
    json_auto_t *q = api(alice, "POST", "/v1/vms/bk-web/backups", NULL, 409);
    assert_string_equal(json_str(q, "type"), "urn:fog:problem:quota-exceeded");
    /* Those are asked for as incremental ones on the ready backup (the
     * first, full, backup said why it was full), and the node is offered
     * that parent. */
    _cleanup_free_ char *gpath = xasprintf("/v1/vms/bk-web/backups/%s", gid);
    json_auto_t *gj = api(alice, "GET", gpath, NULL, 200);
    assert_string_equal(json_str(gj, "mode"), "incremental");
    assert_string_equal(json_str(gj, "parent"), id);
    assert_null(json_str(gj, "full_reason"));
    assert_string_equal(json_str(done, "mode"), "full");
    assert_null(json_str(done, "parent"));
    assert_non_null(strstr(json_str(done, "full_reason"), "no ready backup"));
    json_auto_t *d4 = api(host, "GET", "/v1/agent/desired", NULL, 200);
    json_t *bl = json_object_get(json_array_get(json_object_get(d4, "vms"), 0),
                                 "backups");
    assert_int_equal(json_array_size(bl), 4);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(json_str(json_array_get(bl, i), "parent"), id);

    /* Events on the tenant, and the key in none of her answers. */
    _cleanup_free_ char *view = tenant_view();
    assert_non_null(strstr(view, "vm.backup_ready"));
    assert_non_null(strstr(view, "vm.backup_failed"));
    assert_null(strstr(view, keep_key));
    assert_int_equal(tu_count_in_file(ctl.log, keep_key), 0);

    /* fogctl: the list shows the ready backup with its size; errors are
     * one line and a non-zero exit. */
    int cst;
    _cleanup_free_ char *lst = tu_fogctl(&ctl, alice, &cst, "backup-list",
                                         "bk-web", NULL);
    assert_int_equal(cst, 0);
    _cleanup_free_ char *row = xasprintf("%s  manual", id);
    _cleanup_free_ char *lenw = xasprintf(" %zu ", len);
    assert_non_null(strstr(lst, row));
    assert_non_null(strstr(lst, lenw));
    assert_non_null(strstr(lst, "failed"));
    tu_run_with_stderr = true;
    _cleanup_free_ char *e1 = tu_fogctl(&ctl, bob, &cst, "backup-list",
                                        "bk-web", NULL);
    assert_int_not_equal(cst, 0);
    assert_non_null(strstr(e1, "fogctl: "));
    _cleanup_free_ char *e2 = tu_fogctl(&ctl, alice, &cst, "backup-delete",
                                        "bk-web", "../../x", NULL);
    assert_int_not_equal(cst, 0);
    assert_non_null(strstr(e2, "fogctl: "));
    assert_null(strchr(strchr(e2, '\n') ? strchr(e2, '\n') + 1 : "", '\n'));
    _cleanup_free_ char *e4 = tu_fogctl(&ctl, alice, &cst, "backup-delete",
                                        "bk-web", fid + 1, NULL);
    assert_int_not_equal(cst, 0);
    assert_non_null(strstr(e4, "has no backup by that id"));
    _cleanup_free_ char *e3 = tu_fogctl(&ctl, alice, &cst, "backup-create",
                                        "bk-web", NULL);
    assert_int_not_equal(cst, 0);
    assert_non_null(strstr(e3, "backups under way"));
    tu_run_with_stderr = false;

    /* Deleting the backup removes its bytes, once no backup is built on
     * it: until then 409 naming them. */
    json_decref(api(bob, "DELETE", bpath, NULL, 404));
    json_auto_t *dep = api(alice, "DELETE", bpath, NULL, 409);
    assert_string_equal(json_str(dep, "type"),
                        "urn:fog:problem:backup-has-dependents");
    assert_non_null(strstr(json_str(dep, "detail"), gid));
    assert_int_equal(json_array_size(json_object_get(dep, "dependents")), 4);
    size_t di;
    json_t *dk;
    json_array_foreach(json_object_get(dep, "dependents"), di, dk) {
        _cleanup_free_ char *kp = xasprintf("/v1/vms/bk-web/backups/%s",
                                            json_str(dk, "id"));
        json_decref(api(alice, "DELETE", kp, NULL, 204));
    }
    _cleanup_free_ char *dl = tu_fogctl(&ctl, alice, &cst, "backup-delete",
                                        "bk-web", id, NULL);
    assert_int_equal(cst, 0);
    assert_non_null(strstr(dl, "deleted"));
    json_decref(api(alice, "GET", bpath, NULL, 404));
    struct stat sb;
    char *none = NULL;
    size_t none_len = 0;
    assert_int_equal(stored_read(id, len + 1, &none, &none_len), -ENOENT);

    /* A backup goes with its VM: rows and bytes. With none ready left,
     * a new one is full. */
    json_auto_t *h = api(alice, "POST", "/v1/vms/bk-web/backups", NULL, 202);
    const char *hid = json_str(h, "id");
    assert_string_equal(json_str(h, "mode"), "full");
    assert_null(json_str(h, "parent"));
    assert_int_equal(put_chunk(host, hid, 0, "abc", 3, NULL), 200);
    _cleanup_free_ char *gfile = upload_path(hid);
    assert_int_equal(stat(gfile, &sb), 0);
    json_decref(api(alice, "DELETE", "/v1/vms/bk-web", NULL, 202));
    _cleanup_free_ char *gone = xasprintf("{\"vms\":[{\"id\":\"%s\","
                                          "\"state\":\"deleted\"}]}",
                                          json_str(vm, "id"));
    json_decref(api(host, "POST", "/v1/agent/status", gone, 200));
    json_decref(api(alice, "GET", "/v1/vms/bk-web", NULL, 404));
    assert_int_equal(stat(gfile, &sb), -1);
    _cleanup_free_ char *gp = xasprintf("/v1/agent/backups/%s", hid);
    json_decref(api(host, "GET", gp, NULL, 404));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backups_upload_with_resume_verify_and_stay_secret),
    };
    int r = cmocka_run_group_tests(tests, setup, teardown);
    if (tu_s3_start(&s3) < 0) {
        printf("node or s3rver missing: the S3 store is not tested\n");
        return r;
    }
    r |= cmocka_run_group_tests(tests, setup_s3, teardown);
    tu_s3_destroy(&s3);
    free(s3_url);
    return r;
}
