/* Templates that name their image by URL and digest, against the real
 * controller and an agent on libvirt's test driver: the first creates
 * from such a template make the hub import the image once (a loopback
 * server counts the downloads), as a public image of its own; the VMs
 * wait pending with the reason meanwhile and are placed once it is
 * ready. A wrong digest or a source that does not serve the image fails
 * the waiting VM with the reason and leaves nothing in the catalog; a
 * template that names a URL without a digest is not offered at all. A
 * template that pins its catalog image by digest (no URL) takes only that
 * content, never another image of the same name. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#define SRV_ADDR "127.0.0.2"

static struct tu_ctl ctl;
static struct tu_agent agent;
static char *tmp, *tdir, *alice_key, *fault_file;
static uint8_t *img, *img2;
static size_t img_len, img2_len;
static char img_sha[65], img2_sha[65];

/* The image server on loopback, a little slow so that concurrent creates
 * meet the import: /disk.qcow2 and /late.qcow2 (another image). */
static struct tu_file files[2];
static struct tu_file_srv srv = { .files = files, .n = 2, .delay_ms = 500 };

static void put_template(const char *name, const char *image,
                         const char *file, const char *sha)
{
    _cleanup_free_ char *url = xasprintf("http://%s:%d/%s", SRV_ADDR,
                                         srv.port, file);
    json_auto_t *t = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:b}", "name",
                               name, "image", image, "image_url", url,
                               "vcpus", 1, "memory_mib", 128, "disk_gib", 1,
                               "allow_tcg", 1);
    if (sha)
        json_object_set_new(t, "image_sha256", json_string(sha));
    _cleanup_free_ char *text = json_dumps(t, JSON_INDENT(2));
    _cleanup_free_ char *rel = xasprintf("%s.json", name);
    tu_put_file(tdir, rel, text);
}

/* A template naming a catalog image and its digest, without a URL. */
static void put_pinned(const char *name, const char *image, const char *sha)
{
    _cleanup_free_ char *text = xasprintf(
        "{\"name\":\"%s\",\"image\":\"%s\",\"image_sha256\":\"%s\","
        "\"vcpus\":1,\"memory_mib\":128,\"disk_gib\":1,\"allow_tcg\":true}",
        name, image, sha);
    _cleanup_free_ char *rel = xasprintf("%s.json", name);
    tu_put_file(tdir, rel, text);
}

/* ---- helpers ---- */

/* The controller's test seam: `step` fails from now on (NULL: none). */
static void fault(const char *step)
{
    tu_fault(fault_file, step);
}

static int hits(void)
{
    return tu_file_srv_hits(&srv);
}

static json_t *vm_get(const char *name)
{
    long st;
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s", name);
    json_t *j = tu_api(&ctl, alice_key, "GET", p, NULL, &st);
    assert_int_equal(st, 200);
    return j;
}

/* Wait until VM name's state is `state` (generous: a loaded machine). */
static json_t *vm_wait(const char *name, const char *state)
{
    int64_t deadline = now_ms() + 60000;
    for (;;) {
        json_t *j = vm_get(name);
        if (streq(json_str(j, "state"), state))
            return j;
        if (now_ms() > deadline)
            fail_msg("VM %s stayed %s (%s), want %s", name,
                     json_str(j, "state"), json_str(j, "state_reason"),
                     state);
        json_decref(j);
        usleep(100 * 1000);
    }
}

/* The catalog's live images named `name`, as the admin lists them. */
static size_t images_named(const char *name, json_t **ret_first)
{
    json_auto_t *all = tu_list(&ctl, ctl.admin_key, "/v1/images");
    size_t i, n = 0;
    json_t *row;
    json_array_foreach(all, i, row)
        if (streq(json_str(row, "name"), name)) {
            if (n++ == 0 && ret_first)
                *ret_first = json_incref(row);
        }
    return n;
}

struct create {
    const char *name;
    long status;
    json_t *reply;
};

static void *create_main(void *arg)
{
    struct create *c = arg;
    _cleanup_free_ char *body = xasprintf("{\"name\":\"%s\",\"template\":"
                                          "\"imp\"}", c->name);
    c->reply = tu_api(&ctl, alice_key, "POST", "/v1/vms", body, &c->status);
    return NULL;
}

/* ---- tests ---- */

static void concurrent_creates_share_one_verified_import(void **state)
{
    (void)state;
    assert_int_equal(images_named("imp-os", NULL), 0);
    struct create c[2] = { { .name = "imp1" }, { .name = "imp2" } };
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, create_main, &c[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        if (c[i].status != 201)
            fail_msg("create %s: %ld %s", c[i].name, c[i].status,
                     json_str(c[i].reply, "detail"));
        assert_string_equal(json_str(c[i].reply, "template"), "imp");
        assert_string_equal(json_str(c[i].reply, "image"), "imp-os");
        assert_non_null(json_str(c[i].reply, "image_id"));
    }
    /* One image row for both. */
    assert_string_equal(json_str(c[0].reply, "image_id"),
                        json_str(c[1].reply, "image_id"));
    /* The first answer came while the (slow) download ran: it waits and
     * says why. */
    const char *why = json_str(c[0].reply, "state_reason");
    if (!streq(json_str(c[0].reply, "state"), "pending") || !why ||
        !strstr(why, "waiting for image 'imp-os'"))
        why = json_str(c[1].reply, "state_reason");
    assert_non_null(why);
    assert_non_null(strstr(why, "waiting for image 'imp-os' to be imported"));

    json_auto_t *v1 = vm_wait("imp1", "running");
    json_auto_t *v2 = vm_wait("imp2", "running");
    assert_non_null(json_str(v1, "node_id"));
    assert_string_equal(json_str(v1, "node_id"), json_str(v2, "node_id"));
    assert_int_equal(hits(), 1);

    /* The hub's public image, verified, ready; the node fetched it by
     * digest. */
    json_auto_t *im = NULL;
    assert_int_equal(images_named("imp-os", &im), 1);
    assert_string_equal(json_str(im, "visibility"), "public");
    assert_string_equal(json_str(im, "state"), "ready");
    assert_string_equal(json_str(im, "sha256"), img_sha);
    assert_string_equal(json_str(im, "id"), json_str(c[0].reply, "image_id"));
    _cleanup_free_ char *cached = xasprintf("%s/cache/%s", agent.data_dir,
                                            img_sha);
    assert_int_equal(access(cached, R_OK), 0);

    /* A later create uses the image already there: no new download. */
    json_auto_t *v3 = tu_api_want(&ctl, alice_key, "POST", "/v1/vms",
                                  "{\"name\":\"imp3\",\"template\":\"imp\","
                                  "\"power_state\":\"stopped\"}", 201);
    assert_string_equal(json_str(v3, "image_id"), json_str(im, "id"));
    assert_int_equal(hits(), 1);
    for (int i = 0; i < 2; i++)
        json_decref(c[i].reply);
}

/* After imp-os (img) is in the catalog: a template pinning imp-os to img
 * launches it; one pinning imp-os to another digest is refused with 409
 * naming the pin, and downloads nothing; one pinning an image the
 * catalog lacks likewise; a request naming its own image is not held to
 * the template's pin. */
static void a_pinned_template_takes_only_its_digest(void **state)
{
    (void)state;
    long st;
    json_auto_t *ok = tu_api_want(&ctl, alice_key, "POST", "/v1/vms",
                                  "{\"name\":\"pin1\",\"template\":"
                                  "\"pinok\",\"power_state\":\"stopped\"}",
                                  201);
    assert_string_equal(json_str(ok, "image"), "imp-os");
    json_auto_t *im = NULL;
    assert_int_equal(images_named("imp-os", &im), 1);
    assert_string_equal(json_str(ok, "image_id"), json_str(im, "id"));

    int before = hits();
    json_auto_t *bad = tu_api(&ctl, alice_key, "POST", "/v1/vms",
                              "{\"name\":\"pin2\",\"template\":"
                              "\"pinother\"}", &st);
    assert_int_equal(st, 409);
    assert_string_equal(json_str(bad, "field"), "template");
    assert_non_null(strstr(json_str(bad, "detail"), img2_sha));
    assert_non_null(strstr(json_str(bad, "detail"), "imp-os"));
    json_auto_t *none = tu_api(&ctl, alice_key, "POST", "/v1/vms",
                               "{\"name\":\"pin3\",\"template\":"
                               "\"pinnone\"}", &st);
    assert_int_equal(st, 409);
    assert_string_equal(json_str(none, "field"), "template");
    assert_int_equal(hits(), before);
    assert_int_equal(images_named("none-os", NULL), 0);
    /* Nothing was created by the refusals. */
    json_decref(tu_api(&ctl, alice_key, "GET", "/v1/vms/pin2", NULL, &st));
    assert_int_equal(st, 404);

    /* Naming the template's image by its name is still the template's
     * image, pin and all. */
    json_auto_t *same = tu_api(&ctl, alice_key, "POST", "/v1/vms",
                               "{\"name\":\"pin4\",\"template\":"
                               "\"pinother\",\"image\":\"imp-os\"}", &st);
    assert_int_equal(st, 409);
    /* Another image (here by id) replaces the template's, pin and all:
     * the VM is only based on the template. */
    _cleanup_free_ char *body = xasprintf(
        "{\"name\":\"pin5\",\"template\":\"pinother\",\"image\":"
        "\"%s\",\"power_state\":\"stopped\"}", json_str(im, "id"));
    json_auto_t *own = tu_api_want(&ctl, alice_key, "POST", "/v1/vms", body,
                                   201);
    assert_string_equal(json_str(own, "image_id"), json_str(im, "id"));
    assert_null(json_str(own, "template"));
    assert_string_equal(json_str(own, "based_on"), "pinother");

    /* A node policy listing a pinned template accepts that content, not
     * what the catalog calls by the template's image name. */
    json_auto_t *pol = tu_api_want(&ctl, ctl.admin_key, "PUT",
                                   "/v1/nodes/n1/policy",
                                   "{\"templates\":[\"pinother\"]}", 200);
    json_t *entry = json_array_get(json_object_get(pol, "entries"), 0);
    assert_string_equal(json_str(entry, "name"), "pinother");
    assert_string_equal(json_str(entry, "sha256"), img2_sha);
    json_decref(tu_api_want(&ctl, ctl.admin_key, "PUT", "/v1/nodes/n1/policy",
                            "{\"templates\":[]}", 200));
}

static void a_wrong_digest_fails_the_vm_and_leaves_nothing(void **state)
{
    (void)state;
    int before = hits();
    json_auto_t *v = tu_api_want(&ctl, alice_key, "POST", "/v1/vms",
                                 "{\"name\":\"bad1\",\"template\":\"bad\"}",
                                 201);
    assert_string_equal(json_str(v, "image"), "bad-os");
    json_auto_t *e = vm_wait("bad1", "error");
    assert_null(json_str(e, "node_id"));
    const char *why = json_str(e, "state_reason");
    assert_non_null(why);
    assert_non_null(strstr(why, "image 'bad-os' could not be imported"));
    assert_non_null(strstr(why, "does not match its SHA-256"));
    assert_int_equal(hits(),
                     before + 1);
    assert_int_equal(images_named("bad-os", NULL), 0);
    /* The failed VM stays off every node. */
    usleep(1500 * 1000);
    json_auto_t *e2 = vm_get("bad1");
    assert_string_equal(json_str(e2, "state"), "error");
    assert_null(json_str(e2, "node_id"));

    /* The next create tries again (a new download), and fails the same. */
    json_auto_t *w = tu_api_want(&ctl, alice_key, "POST", "/v1/vms",
                                 "{\"name\":\"bad2\",\"template\":\"bad\"}",
                                 201);
    json_auto_t *e3 = vm_wait("bad2", "error");
    assert_int_equal(hits(),
                     before + 2);
    assert_int_equal(images_named("bad-os", NULL), 0);

    /* A source that does not serve the image: the same, with its reason. */
    json_auto_t *g = tu_api_want(&ctl, alice_key, "POST", "/v1/vms",
                                 "{\"name\":\"gone1\",\"template\":"
                                 "\"gone\"}", 201);
    json_auto_t *e4 = vm_wait("gone1", "error");
    assert_non_null(strstr(json_str(e4, "state_reason"),
                           "image 'gone-os' could not be imported: the image "
                           "source could not be fetched"));
    assert_null(json_str(e4, "node_id"));
    assert_int_equal(images_named("gone-os", NULL), 0);

    /* A VM failed this way is deleted like any other. */
    long st;
    json_decref(tu_api(&ctl, alice_key, "DELETE", "/v1/vms/gone1", NULL,
                       &st));
    assert_true(st == 202 || st == 204);
    int64_t deadline = now_ms() + 30000;
    for (;;) {
        json_decref(tu_api(&ctl, alice_key, "GET", "/v1/vms/gone1", NULL,
                           &st));
        if (st == 404)
            break;
        if (now_ms() > deadline)
            fail_msg("VM gone1 was never deleted");
        usleep(100 * 1000);
    }
}

/* Effects outside the store happen once the request's changes commit,
 * never for changes rolled back: a create whose commit fails starts no
 * download and leaves no image; an image deletion whose commit fails
 * keeps the image's content. */
static void effects_wait_for_the_commit(void **state)
{
    (void)state;
    int before = hits();
    fault("request-commit");
    json_auto_t *f = tu_api_want(&ctl, alice_key, "POST", "/v1/vms",
                                 "{\"name\":\"fc1\",\"template\":"
                                 "\"late\"}", 503);
    fault(NULL);
    usleep(1500 * 1000);
    assert_int_equal(hits(), before);
    assert_int_equal(images_named("late-os", NULL), 0);
    long st;
    json_auto_t *g = tu_api(&ctl, alice_key, "GET", "/v1/vms/fc1", NULL, &st);
    assert_int_equal(st, 404);

    /* Committed: one download, the image ready, the VM placed. */
    json_auto_t *v = tu_api_want(&ctl, alice_key, "POST", "/v1/vms",
                                 "{\"name\":\"fc2\",\"template\":"
                                 "\"late\"}", 201);
    json_auto_t *r = vm_wait("fc2", "running");
    assert_int_equal(hits(), before + 1);
    json_auto_t *im = NULL;
    assert_int_equal(images_named("late-os", &im), 1);
    _cleanup_free_ char *content = xasprintf("%s/images/%s", ctl.dir,
                                             img2_sha);
    assert_int_equal(access(content, R_OK), 0);

    /* A deletion that does not commit leaves the content in place. */
    json_decref(tu_api_want(&ctl, alice_key, "DELETE", "/v1/vms/fc2", NULL,
                            202));
    int64_t deadline = now_ms() + 30000;
    for (;;) {
        json_decref(tu_api(&ctl, alice_key, "GET", "/v1/vms/fc2", NULL, &st));
        if (st == 404)
            break;
        if (now_ms() > deadline)
            fail_msg("VM fc2 was never deleted");
        usleep(200 * 1000);
    }
    _cleanup_free_ char *p = xasprintf("/v1/images/%s", json_str(im, "id"));
    fault("request-commit");
    json_decref(tu_api_want(&ctl, ctl.admin_key, "DELETE", p, NULL, 503));
    fault(NULL);
    assert_int_equal(images_named("late-os", NULL), 1);
    assert_int_equal(access(content, R_OK), 0);
    /* Committed: the content no live image uses goes with it. */
    json_decref(tu_api_want(&ctl, ctl.admin_key, "DELETE", p, NULL, 204));
    assert_int_equal(images_named("late-os", NULL), 0);
    assert_int_equal(access(content, F_OK), -1);
}

/* No digest, or one that is not 64 hex characters: not offered. */
static void a_url_without_a_digest_is_refused_at_load(void **state)
{
    (void)state;
    long st;
    json_auto_t *l = tu_api(&ctl, alice_key, "GET", "/v1/templates", NULL,
                            &st);
    assert_int_equal(st, 200);
    json_t *items = json_is_array(l) ? l : json_object_get(l, "items");
    assert_non_null(tu_find(items, "name", "imp"));
    assert_null(tu_find(items, "name", "nosha"));
    assert_null(tu_find(items, "name", "badsha"));
    assert_null(tu_find(items, "name", "upsha"));
    /* fogctl shows where the image comes from and its digest. */
    int fst;
    _cleanup_free_ char *info =
        tu_fogctl(&ctl, alice_key, &fst, "template-info", "imp", NULL);
    assert_int_equal(fst, 0);
    _cleanup_free_ char *shown = tu_field(info, "image_sha256");
    assert_string_equal(shown, img_sha);
    _cleanup_free_ char *url = tu_field(info, "image_url");
    assert_non_null(strstr(url, "/disk.qcow2"));
    json_auto_t *v = tu_api(&ctl, alice_key, "POST", "/v1/vms",
                            "{\"name\":\"ns1\",\"template\":\"nosha\"}", &st);
    assert_int_equal(st, 400);
    assert_string_equal(json_str(v, "field"), "template");
}

static int setup(void **state)
{
    (void)state;
    tmp = tu_tempdir("tmplimport");
    tdir = xasprintf("%s/templates", tmp);
    assert_int_equal(mkdir_p(tdir, 0755), 0);
    img = tu_qcow2(64ULL << 20, &img_len);
    sha256_hex(img, img_len, img_sha);
    img2 = tu_qcow2(32ULL << 20, &img2_len);
    sha256_hex(img2, img2_len, img2_sha);
    assert_string_not_equal(img_sha, img2_sha);
    files[0] = (struct tu_file){ "/disk.qcow2", img, img_len };
    files[1] = (struct tu_file){ "/late.qcow2", img2, img2_len };
    tu_file_srv_start(&srv, SRV_ADDR);
    put_template("imp", "imp-os", "disk.qcow2", img_sha);
    put_template("bad", "bad-os", "disk.qcow2",
                 "0000000000000000000000000000000000000000000000000000000000"
                 "000000");
    put_template("nosha", "nosha-os", "disk.qcow2", NULL);
    put_template("late", "late-os", "late.qcow2", img2_sha);
    put_template("gone", "gone-os", "missing.qcow2", img_sha);
    put_template("badsha", "badsha-os", "disk.qcow2",
                 "zz00000000000000000000000000000000000000000000000000000000"
                 "000000");
    /* Upper case: the digest is compared as lowercase text. */
    put_pinned("pinok", "imp-os", img_sha);
    put_pinned("pinother", "imp-os", img2_sha);
    put_pinned("pinnone", "none-os", img_sha);
    put_template("upsha", "upsha-os", "disk.qcow2",
                 "AB00000000000000000000000000000000000000000000000000000000"
                 "000000");
    fault_file = xasprintf("%s/fault", tmp);
    setenv("FOG_TEST_FAULT", fault_file, 1);
    static const char *args[9];
    args[0] = "--templates-dir";
    args[1] = tdir;
    args[2] = "--import-allow";
    args[3] = SRV_ADDR "/32";
    args[4] = "--no-inspect";
    args[5] = "--heartbeat";
    args[6] = "1";
    args[7] = NULL;
    tu_ctl_start(&ctl, args);
    alice_key = tu_account(&ctl, "alice", "tenant");
    tu_agent_start(&agent, &ctl, "n1", 8, 16384);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_agent_destroy(&agent);
    tu_ctl_destroy(&ctl);
    tu_file_srv_stop(&srv);
    tu_rmrf(tmp);
    free(tmp);
    free(tdir);
    free(fault_file);
    unsetenv("FOG_TEST_FAULT");
    free(img);
    free(img2);
    free(alice_key);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_url_without_a_digest_is_refused_at_load),
        cmocka_unit_test(concurrent_creates_share_one_verified_import),
        cmocka_unit_test(a_pinned_template_takes_only_its_digest),
        cmocka_unit_test(a_wrong_digest_fails_the_vm_and_leaves_nothing),
        cmocka_unit_test(effects_wait_for_the_commit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
