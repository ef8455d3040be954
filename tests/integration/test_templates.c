/* Images, templates, SSH keys and node policies through fogctl against the
 * real controller: a qcow2 made by qemu-img is imported and shown, VMs are
 * created from templates with explicit overrides, images that are not
 * ready are refused, hostile names never get through, and a node's policy
 * decides where VMs land. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#define PUBKEY                                                                 \
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxg" \
    "ZGhscHR4f alice@laptop\n"

/* Templates from the tree; no libguestfs appliance (slow under TCG); a long
 * heartbeat so registered test nodes stay online without an agent. */
static const char *const ctl_args[] = { "--templates-dir", "images/templates",
                                        "--no-inspect", "--heartbeat", "30",
                                        NULL };

static struct tu_ctl ctl;
static char *home, *work, *qemu_img;
static char *alice_key, *prov_key;

/* ---- helpers ---- */

/* The output of a fogctl --json verb parsed (the caller adds --json). */
#define FOGCTL_JSON(key, st, ...)                                              \
    json_from(tu_fogctl(&ctl, key, st, __VA_ARGS__))
static json_t *json_from(char *out)
{
    json_t *j = out ? json_loads(out, 0, NULL) : NULL;
    free(out);
    return j;
}

static char *must_api(const char *key, const char *method, const char *path,
                      const char *body, long want, const char *out_field)
{
    long st;
    json_auto_t *j = tu_api(&ctl, key, method, path, body, &st);
    if (st != want)
        fail_msg("%s %s: status %ld, want %ld (%s)", method, path, st, want,
                 json_str(j, "detail") ? json_str(j, "detail") : "");
    return out_field ? xstrdup(json_str(j, out_field)) : NULL;
}

static char *make_account(const char *name, const char *role)
{
    int st;
    _cleanup_free_ char *o1 = tu_fogctl(
        &ctl, ctl.admin_key, &st, "account-create", name, "--role", role, NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *o2 = tu_fogctl(&ctl, ctl.admin_key, &st, "key-create",
                                        "--account", name, NULL);
    assert_int_equal(st, 0);
    char *key = tu_field(o2, "key");
    assert_non_null(key);
    return key;
}

static char *write_file(const char *name, const char *text)
{
    char *p = xasprintf("%s/%s", work, name);
    assert_int_equal(file_write_atomic(p, text, strlen(text), 0600), 0);
    return p;
}

/* A small qcow2 made by qemu-img (a real writer, not our own fixture). */
static char *make_qcow2(const char *name, const char *size)
{
    char *p = xasprintf("%s/%s", work, name);
    char *argv[] = { qemu_img, (char *)"create", (char *)"-q", (char *)"-f",
                     (char *)"qcow2", p, (char *)size, NULL };
    int st;
    free(tu_run(argv, &st));
    assert_int_equal(st, 0);
    return p;
}

/* ---- fixtures ---- */

static int setup(void **state)
{
    (void)state;
    tu_ctl_start(&ctl, ctl_args);
    home = tu_tempdir("tmpl-home");
    work = tu_tempdir("tmpl-work");
    setenv("HOME", home, 1);
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("FOG_CONFIG");
    alice_key = make_account("alice", "tenant");
    prov_key = make_account("prov", "provider");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_ctl_destroy(&ctl);
    tu_rmrf(home);
    tu_rmrf(work);
    free(home);
    free(work);
    free(alice_key);
    free(prov_key);
    return 0;
}

/* ---- tests ---- */

static void image_import_uploads_lists_and_shows_inspection(void **state)
{
    (void)state;
    _cleanup_free_ char *img = make_qcow2("base.qcow2", "64M");
    int st;
    _cleanup_free_ char *out =
        tu_fogctl(&ctl, alice_key, &st, "image-import", "fog-tiny", img, NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "state ready"));

    _cleanup_free_ char *list =
        tu_fogctl(&ctl, alice_key, &st, "image-list", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(list, "fog-tiny"));
    assert_non_null(strstr(list, "ready"));
    assert_non_null(strstr(list, "qcow2"));

    /* Inspection runs after the import, off the request path: here it is
     * turned off, and the image says so. */
    json_t *j = NULL;
    for (int i = 0; i < 50; i++) {
        json_decref(j);
        j = FOGCTL_JSON(alice_key, &st, "image-info", "fog-tiny", "--json",
                        NULL);
        assert_int_equal(st, 0);
        if (streq(json_str(j, "inspection"), "skipped"))
            break;
        nanosleep(&(struct timespec){ 0, 100 * 1000 * 1000 }, NULL);
    }
    assert_string_equal(json_str(j, "inspection"), "skipped");
    assert_string_equal(json_str(j, "visibility"), "private");
    assert_int_equal(json_int(j, "virtual_size", 0), 64 << 20);
    assert_int_equal(strlen(json_str(j, "sha256")), 64);
    json_decref(j);

    _cleanup_free_ char *info =
        tu_fogctl(&ctl, alice_key, &st, "image-info", "fog-tiny", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *s = tu_field(info, "state");
    _cleanup_free_ char *fmt = tu_field(info, "format");
    _cleanup_free_ char *os = tu_field(info, "os_type");
    _cleanup_free_ char *arch = tu_field(info, "os_arch");
    _cleanup_free_ char *insp = tu_field(info, "inspection");
    assert_string_equal(s, "ready");
    assert_string_equal(fmt, "qcow2");
    assert_non_null(os); /* shown, unknown without inspection */
    assert_non_null(arch);
    assert_string_equal(insp, "skipped");

    /* Only an admin publishes for everyone. */
    _cleanup_free_ char *o2 = tu_fogctl(&ctl, alice_key, &st, "image-import",
                                        "pub", img, "--public", NULL);
    assert_int_equal(st, 1);
    _cleanup_free_ char *pub = make_qcow2("pub.qcow2", "32M");
    _cleanup_free_ char *o3 =
        tu_fogctl(&ctl, ctl.admin_key, &st, "image-import", "pub-base", pub,
                  "--public", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *list2 =
        tu_fogctl(&ctl, alice_key, &st, "image-list", NULL);
    assert_non_null(strstr(list2, "pub-base"));
    assert_non_null(strstr(list2, "public"));

    /* Usage errors are 2, and nothing is created. */
    _cleanup_free_ char *o4 =
        tu_fogctl(&ctl, alice_key, &st, "image-import", "x", NULL);
    assert_int_equal(st, 2);
    _cleanup_free_ char *o5 =
        tu_fogctl(&ctl, alice_key, &st, "image-import", "x", "--url",
                  "https://example.org/x.qcow2", NULL);
    assert_int_equal(st, 2);
    _cleanup_free_ char *o6 =
        tu_fogctl(&ctl, alice_key, &st, "image-info", "x", NULL);
    assert_int_equal(st, 1);
}

/* The controller's own API stands for an internal service: an import
 * from it is refused at once by address, and by name when connecting,
 * and fogctl exits 1 either way. */
static void url_import_of_the_controller_itself_is_refused(void **state)
{
    (void)state;
    int st;
    static const char sha[] = "0123456789abcdef0123456789abcdef0123456789abc"
                              "def0123456789abcdef";
    _cleanup_free_ char *direct = xasprintf("%s/v1/ca", ctl.url);
    _cleanup_free_ char *o1 = tu_fogctl(&ctl, alice_key, &st, "image-import",
                                        "inside", "--url", direct,
                                        "--sha256", sha, NULL);
    assert_int_equal(st, 1);
    _cleanup_free_ char *o2 =
        tu_fogctl(&ctl, alice_key, &st, "image-info", "inside", NULL);
    assert_int_equal(st, 1); /* nothing was made */

    _cleanup_free_ char *byname = xasprintf("https://localhost:%d/v1/ca",
                                            ctl.port);
    _cleanup_free_ char *o3 = tu_fogctl(&ctl, alice_key, &st, "image-import",
                                        "inside", "--url", byname,
                                        "--sha256", sha, "--wait",
                                        "--timeout", "120", NULL);
    assert_int_equal(st, 1);
    json_auto_t *j = FOGCTL_JSON(alice_key, &st, "image-info", "inside",
                                 "--json", NULL);
    assert_int_equal(st, 0);
    assert_string_equal(json_str(j, "state"), "error");
    assert_string_equal(json_str(j, "state_reason"),
                        "the image source address is not allowed");
}

static void wrong_content_is_refused_and_a_retry_fills_the_image(void **state)
{
    (void)state;
    int st;
    /* A text file named .qcow2: judged by content, refused, and the image
     * shows why. */
    _cleanup_free_ char *txt = write_file("notes.qcow2", "just some text\n");
    _cleanup_free_ char *o1 =
        tu_fogctl(&ctl, alice_key, &st, "image-import", "retry", txt, NULL);
    assert_int_equal(st, 1);
    json_auto_t *j = FOGCTL_JSON(alice_key, &st, "image-info", "retry",
                                 "--json", NULL);
    assert_int_equal(st, 0);
    assert_string_equal(json_str(j, "state"), "error");
    assert_non_null(json_str(j, "state_reason"));

    /* A qcow2 whose backing file is a host file is refused too. */
    _cleanup_free_ char *base = make_qcow2("hostbase.qcow2", "16M");
    _cleanup_free_ char *ovl = xasprintf("%s/overlay.qcow2", work);
    char *argv[] = { qemu_img, (char *)"create", (char *)"-q", (char *)"-f",
                     (char *)"qcow2", (char *)"-F", (char *)"qcow2",
                     (char *)"-b", base, ovl, NULL };
    free(tu_run(argv, &st));
    assert_int_equal(st, 0);
    _cleanup_free_ char *o2 =
        tu_fogctl(&ctl, alice_key, &st, "image-import", "backed", ovl, NULL);
    assert_int_equal(st, 1);
    json_auto_t *b = FOGCTL_JSON(alice_key, &st, "image-info", "backed",
                                 "--json", NULL);
    assert_string_equal(json_str(b, "state"), "error");
    assert_non_null(strstr(json_str(b, "state_reason"), "backing"));

    /* Importing again under the same name uploads into the refused image. */
    _cleanup_free_ char *good = make_qcow2("good.qcow2", "16M");
    _cleanup_free_ char *o3 =
        tu_fogctl(&ctl, alice_key, &st, "image-import", "retry", good, NULL);
    assert_int_equal(st, 0);
    json_auto_t *k = FOGCTL_JSON(alice_key, &st, "image-info", "retry",
                                 "--json", NULL);
    assert_string_equal(json_str(k, "state"), "ready");
    assert_string_equal(json_str(k, "id"), json_str(j, "id"));

    /* A ready image is not overwritten by a second import. */
    _cleanup_free_ char *o4 =
        tu_fogctl(&ctl, alice_key, &st, "image-import", "retry", good, NULL);
    assert_int_equal(st, 1);
    _cleanup_free_ char *o5 =
        tu_fogctl(&ctl, alice_key, &st, "image-delete", "retry", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *o6 =
        tu_fogctl(&ctl, alice_key, &st, "image-info", "retry", NULL);
    assert_int_equal(st, 1);
}

static void templates_are_listed_and_shown(void **state)
{
    (void)state;
    int st;
    _cleanup_free_ char *list =
        tu_fogctl(&ctl, alice_key, &st, "template-list", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(list, "nginx"));
    assert_non_null(strstr(list, "game-server"));
    assert_non_null(strstr(list, "tiny-web"));
    assert_non_null(strstr(list, "30000/udp"));

    _cleanup_free_ char *info =
        tu_fogctl(&ctl, alice_key, &st, "template-info", "tiny-web", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *image = tu_field(info, "image");
    _cleanup_free_ char *ports = tu_field(info, "ports");
    assert_string_equal(image, "fog-tiny");
    assert_string_equal(ports, "80/tcp");
    assert_non_null(strstr(info, "user_data:\n#cloud-config\n"));

    json_auto_t *j = FOGCTL_JSON(alice_key, &st, "template-info", "nginx",
                                 "--json", NULL);
    assert_int_equal(st, 0);
    assert_int_equal(json_int(j, "memory_mib", 0), 1024);

    _cleanup_free_ char *o1 =
        tu_fogctl(&ctl, alice_key, &st, "template-info", "nope", NULL);
    assert_int_equal(st, 1);
}

static void ssh_keys_are_added_listed_and_removed(void **state)
{
    (void)state;
    int st;
    _cleanup_free_ char *pub = write_file("id.pub", PUBKEY);
    _cleanup_free_ char *o1 =
        tu_fogctl(&ctl, alice_key, &st, "key-add", "laptop", pub, NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(o1, "SHA256:"));
    _cleanup_free_ char *list =
        tu_fogctl(&ctl, alice_key, &st, "ssh-key-list", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(list, "laptop"));
    assert_non_null(strstr(list, "ssh-ed25519"));

    /* A private key or garbage never becomes a key. */
    _cleanup_free_ char *priv = write_file(
        "id", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn==\n"
              "-----END OPENSSH PRIVATE KEY-----\n");
    _cleanup_free_ char *o2 =
        tu_fogctl(&ctl, alice_key, &st, "key-add", "priv", priv, NULL);
    assert_int_equal(st, 1);
    _cleanup_free_ char *junk = write_file("junk.pub", "ssh-ed25519 AAAA\n");
    _cleanup_free_ char *o3 =
        tu_fogctl(&ctl, alice_key, &st, "key-add", "junk", junk, NULL);
    assert_int_equal(st, 1);
    _cleanup_free_ char *o4 =
        tu_fogctl(&ctl, alice_key, &st, "key-add", "laptop", pub, NULL);
    assert_int_equal(st, 1); /* name taken */

    json_auto_t *j = FOGCTL_JSON(alice_key, &st, "ssh-key-list", "--json",
                                 NULL);
    assert_int_equal(json_array_size(j), 1);

    _cleanup_free_ char *o5 =
        tu_fogctl(&ctl, alice_key, &st, "ssh-key-remove", "laptop", NULL);
    assert_int_equal(st, 0);
    json_auto_t *k = FOGCTL_JSON(alice_key, &st, "ssh-key-list", "--json",
                                 NULL);
    assert_int_equal(json_array_size(k), 0);
    _cleanup_free_ char *o6 =
        tu_fogctl(&ctl, alice_key, &st, "ssh-key-remove", "laptop", NULL);
    assert_int_equal(st, 1);
}

/* The VM's published ports as "vm_port/proto" words, sorted by the API. */
static char *vm_ports(const char *vm)
{
    long st;
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/ports", vm);
    json_auto_t *j = tu_api(&ctl, alice_key, "GET", p, NULL, &st);
    assert_int_equal(st, 200);
    char *out = xstrdup("");
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(j, "items"), i, it) {
        char *n = xasprintf("%s%s%lld/%s", out, *out ? "," : "",
                            (long long)json_int(it, "vm_port", 0),
                            json_str(it, "proto"));
        free(out);
        out = n;
    }
    return out;
}

static void create_from_template_takes_defaults_and_overrides(void **state)
{
    (void)state;
    int st;
    json_auto_t *img = FOGCTL_JSON(alice_key, &st, "image-info", "fog-tiny",
                                   "--json", NULL);
    assert_int_equal(st, 0);

    /* Defaults from the template, memory given explicitly. */
    json_auto_t *v = FOGCTL_JSON(alice_key, &st, "create", "web1",
                                 "--template", "tiny-web", "--memory", "256M",
                                 "--json", NULL);
    assert_int_equal(st, 0);
    assert_string_equal(json_str(v, "template"), "tiny-web");
    assert_int_equal(json_int(v, "vcpus", 0), 1);
    assert_int_equal(json_int(v, "memory_mib", 0), 256);
    assert_int_equal(json_int(v, "disk_gib", 0), 1);
    assert_true(json_is_true(json_object_get(v, "allow_tcg")));
    assert_string_equal(json_str(v, "image"), "fog-tiny");
    /* The template's image is the tenant's catalog image: the node will
     * fetch it. */
    assert_string_equal(json_str(v, "image_id"), json_str(img, "id"));
    assert_true(json_int(v, "user_data_size", 0) > 20);
    _cleanup_free_ char *p1 = vm_ports("web1");
    assert_string_equal(p1, "80/tcp");

    /* Explicit user-data, ports and sizes replace the template's. */
    _cleanup_free_ char *ud = write_file("ud.yaml", "#cloud-config\n");
    json_auto_t *w = FOGCTL_JSON(alice_key, &st, "create", "web2",
                                 "--template", "tiny-web", "--cpus", "2",
                                 "--disk", "3G", "--user-data", ud,
                                 "--publish", "8081:81/udp", "--stopped",
                                 "--json", NULL);
    assert_int_equal(st, 0);
    assert_int_equal(json_int(w, "vcpus", 0), 2);
    assert_int_equal(json_int(w, "memory_mib", 0), 128);
    assert_int_equal(json_int(w, "disk_gib", 0), 3);
    assert_int_equal(json_int(w, "user_data_size", 0), strlen("#cloud-config\n"));
    assert_string_equal(json_str(w, "desired_state"), "stopped");
    _cleanup_free_ char *p2 = vm_ports("web2");
    assert_string_equal(p2, "81/udp");

    /* An explicit empty port list means no ports. */
    long ls;
    json_auto_t *x = tu_api(&ctl, alice_key, "POST", "/v1/vms",
                            "{\"name\":\"web3\",\"template\":\"tiny-echo\","
                            "\"ports\":[],\"power_state\":\"stopped\"}",
                            &ls);
    assert_int_equal(ls, 201);
    _cleanup_free_ char *p3 = vm_ports("web3");
    assert_string_equal(p3, "");
    /* ... and the template's two otherwise. */
    json_auto_t *y = tu_api(&ctl, alice_key, "POST", "/v1/vms",
                            "{\"name\":\"web4\",\"template\":\"tiny-echo\","
                            "\"power_state\":\"stopped\"}",
                            &ls);
    assert_int_equal(ls, 201);
    _cleanup_free_ char *p4 = vm_ports("web4");
    assert_non_null(strstr(p4, "27015/udp"));
    assert_non_null(strstr(p4, "7/tcp"));

    /* A plain --image naming a catalog image sets image_id; a name the
     * catalog does not know stays an image local to the node. */
    json_auto_t *c1 = FOGCTL_JSON(alice_key, &st, "create", "plain1", "--cpus",
                                  "1", "--memory", "128M", "--disk", "1G",
                                  "--image", "pub-base", "--stopped", "--json",
                                  NULL);
    assert_int_equal(st, 0);
    assert_non_null(json_str(c1, "image_id"));
    assert_null(json_str(c1, "template"));
    json_auto_t *c2 = FOGCTL_JSON(alice_key, &st, "create", "plain2", "--cpus",
                                  "1", "--memory", "128M", "--disk", "1G",
                                  "--image", "local-only", "--stopped",
                                  "--json", NULL);
    assert_int_equal(st, 0);
    assert_string_equal(json_str(c2, "image"), "local-only");
    assert_null(json_str(c2, "image_id"));

    /* Without a template the sizes stay required. */
    _cleanup_free_ char *o1 = tu_fogctl(&ctl, alice_key, &st, "create", "bad",
                                        "--image", "fog-tiny", NULL);
    assert_int_equal(st, 2);
    json_auto_t *z = tu_api(&ctl, alice_key, "POST", "/v1/vms",
                            "{\"name\":\"bad\",\"image\":\"fog-tiny\"}", &ls);
    assert_int_equal(ls, 400);
    assert_string_equal(json_str(z, "field"), "vcpus");

    /* An image in use cannot be deleted. */
    _cleanup_free_ char *o2 =
        tu_fogctl(&ctl, alice_key, &st, "image-delete", "fog-tiny", NULL);
    assert_int_equal(st, 1);
}

static void create_refuses_an_image_that_is_not_ready(void **state)
{
    (void)state;
    long ls;
    int st;
    /* Waiting for its upload: pending. */
    free(must_api(alice_key, "POST", "/v1/images", "{\"name\":\"slow\"}", 201,
                  NULL));
    json_auto_t *j = tu_api(&ctl, alice_key, "POST", "/v1/vms",
                            "{\"name\":\"s1\",\"vcpus\":1,\"memory_mib\":128,"
                            "\"disk_gib\":1,\"image\":\"slow\"}",
                            &ls);
    assert_int_equal(ls, 409);
    assert_string_equal(json_str(j, "field"), "image");
    assert_non_null(strstr(json_str(j, "detail"), "not ready"));
    _cleanup_free_ char *o1 =
        tu_fogctl(&ctl, alice_key, &st, "create", "s1", "--cpus", "1",
                  "--memory", "128M", "--disk", "1G", "--image", "slow", NULL);
    assert_int_equal(st, 1);

    /* A template whose image is the tenant's pending catalog image. */
    free(must_api(alice_key, "POST", "/v1/images", "{\"name\":\"debian-12\"}",
                  201, NULL));
    _cleanup_free_ char *o2 = tu_fogctl(&ctl, alice_key, &st, "create", "s2",
                                        "--template", "nginx", NULL);
    assert_int_equal(st, 1);

    /* Refused content: error, with its reason in the answer. */
    _cleanup_free_ char *txt = write_file("bad.img", "not an image\n");
    _cleanup_free_ char *o3 =
        tu_fogctl(&ctl, alice_key, &st, "image-import", "broken", txt, NULL);
    assert_int_equal(st, 1);
    json_auto_t *k = tu_api(&ctl, alice_key, "POST", "/v1/vms",
                            "{\"name\":\"s3\",\"vcpus\":1,\"memory_mib\":128,"
                            "\"disk_gib\":1,\"image\":\"broken\"}",
                            &ls);
    assert_int_equal(ls, 409);
    assert_non_null(strstr(json_str(k, "detail"), "error"));

    /* Nothing was created by the refusals. */
    json_auto_t *l = tu_api(&ctl, alice_key, "GET", "/v1/vms/s1", NULL, &ls);
    assert_int_equal(ls, 404);
    json_auto_t *m = tu_api(&ctl, alice_key, "GET", "/v1/vms/s2", NULL, &ls);
    assert_int_equal(ls, 404);

    /* A ready image's minimum disk: an explicit smaller disk is refused. */
    _cleanup_free_ char *big = make_qcow2("big.qcow2", "3G");
    _cleanup_free_ char *o4 =
        tu_fogctl(&ctl, alice_key, &st, "image-import", "big", big, NULL);
    assert_int_equal(st, 0);
    json_auto_t *n = tu_api(&ctl, alice_key, "POST", "/v1/vms",
                            "{\"name\":\"s4\",\"vcpus\":1,\"memory_mib\":128,"
                            "\"disk_gib\":2,\"image\":\"big\"}",
                            &ls);
    assert_int_equal(ls, 400);
    assert_string_equal(json_str(n, "field"), "disk_gib");
    json_auto_t *o = tu_api(&ctl, alice_key, "POST", "/v1/vms",
                            "{\"name\":\"s4\",\"vcpus\":1,\"memory_mib\":128,"
                            "\"disk_gib\":3,\"image\":\"big\",\"power_state\":"
                            "\"stopped\"}",
                            &ls);
    assert_int_equal(ls, 201);
}

static void hostile_names_are_refused(void **state)
{
    (void)state;
    long ls;
    int st;
    static const char *const bad_templates[] = {
        "../../etc/passwd", "nginx/../nginx", "Nginx", "a b", "-x",
        "nginx\n", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad_templates); i++) {
        json_auto_t *t = json_pack("{s:s, s:s}", "name", "h1", "template",
                                   bad_templates[i]);
        _cleanup_free_ char *body = json_dumps(t, 0);
        json_auto_t *j = tu_api(&ctl, alice_key, "POST", "/v1/vms", body, &ls);
        if (ls != 400)
            fail_msg("template '%s' answered %ld", bad_templates[i], ls);
        assert_string_equal(json_str(j, "field"), "template");
    }
    _cleanup_free_ char *o1 = tu_fogctl(&ctl, alice_key, &st, "create", "h1",
                                        "--template", "../../etc/passwd", NULL);
    assert_int_equal(st, 1);
    json_auto_t *u = tu_api(&ctl, alice_key, "POST", "/v1/vms",
                            "{\"name\":\"h1\",\"template\":\"no-such\"}", &ls);
    assert_int_equal(ls, 400);
    /* A template the directory does not hold, reached by path tricks. */
    json_auto_t *g = tu_api(&ctl, alice_key, "GET",
                            "/v1/templates/..%2F..%2Fetc%2Fpasswd", NULL, &ls);
    assert_int_equal(ls, 404);
    _cleanup_free_ char *o2 =
        tu_fogctl(&ctl, alice_key, &st, "template-info", "../nginx", NULL);
    assert_int_equal(st, 1);

    /* Image names: the catalog's rules, whatever the client sends. */
    _cleanup_free_ char *img = make_qcow2("h.qcow2", "16M");
    static const char *const bad_images[] = { "../x", "A", "x y", "x;rm",
                                              "x\ty" };
    for (size_t i = 0; i < ARRAY_SIZE(bad_images); i++) {
        _cleanup_free_ char *o = tu_fogctl(&ctl, alice_key, &st, "image-import",
                                           bad_images[i], img, NULL);
        if (st != 1)
            fail_msg("image name '%s' gave exit %d", bad_images[i], st);
        json_auto_t *v = json_pack("{s:s, s:i, s:i, s:i, s:s}", "name", "h2",
                                   "vcpus", 1, "memory_mib", 128, "disk_gib",
                                   1, "image", bad_images[i]);
        _cleanup_free_ char *body = json_dumps(v, 0);
        json_auto_t *j = tu_api(&ctl, alice_key, "POST", "/v1/vms", body, &ls);
        assert_int_equal(ls, 400);
    }
    /* An image id that is nobody's (or someone else's private one). */
    json_auto_t *n = tu_api(&ctl, alice_key, "POST", "/v1/vms",
                            "{\"name\":\"h3\",\"vcpus\":1,\"memory_mib\":128,"
                            "\"disk_gib\":1,\"image\":"
                            "\"00000000-0000-4000-8000-000000000000\"}",
                            &ls);
    assert_int_equal(ls, 400);
    _cleanup_free_ char *o3 =
        tu_fogctl(&ctl, alice_key, &st, "key-add", "../k", "/dev/null", NULL);
    assert_int_equal(st, 1);
    json_auto_t *l = FOGCTL_JSON(alice_key, &st, "image-list", "--json", NULL);
    for (size_t i = 0; i < json_array_size(l); i++)
        assert_true(name_is_valid(json_str(json_array_get(l, i), "name")));
}

/* ---- node policy ---- */

struct node {
    char *id, *cred;
};

static void node_register(const char *creator_key, const char *name,
                          struct node *ret)
{
    _cleanup_free_ char *tok = must_api(creator_key, "POST", "/v1/join-tokens",
                                        "{}", 201, "token");
    _cleanup_free_ char *body = xasprintf(
        "{\"token\":\"%s\",\"name\":\"%s\",\"inventory\":{\"vcpus\":64,"
        "\"memory_mib\":65536,\"disk_gib\":1000,\"kvm\":false}}", tok, name);
    long st;
    json_auto_t *j =
        tu_api(&ctl, NULL, "POST", "/v1/agent/register", body, &st);
    assert_int_equal(st, 201);
    ret->id = xstrdup(json_str(j, "node_id"));
    ret->cred = xstrdup(json_str(j, "credential"));
}

/* An agent's contact: the node is online for three heartbeats. */
static json_t *node_poll(const struct node *n)
{
    long st;
    json_t *j =
        tu_api(&ctl, n->cred, "GET", "/v1/agent/desired?wait=0", NULL, &st);
    assert_int_equal(st, 200);
    return j;
}

static void node_free(struct node *n)
{
    free(n->id);
    free(n->cred);
}

/* Wait until the VM has a node (or the timeout); returns the VM. */
static json_t *vm_placed(const char *key, const char *name,
                         const struct node *a, const struct node *b, int tries)
{
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s", name);
    json_t *v = NULL;
    for (int i = 0; i < tries; i++) {
        json_decref(node_poll(a));
        json_decref(node_poll(b));
        long st;
        json_decref(v);
        v = tu_api(&ctl, key, "GET", p, NULL, &st);
        assert_int_equal(st, 200);
        if (json_str(v, "node_name"))
            break;
        nanosleep(&(struct timespec){ 0, 250 * 1000 * 1000 }, NULL);
    }
    return v;
}

static void node_policy_decides_where_vms_land(void **state)
{
    (void)state;
    int st;
    long ls;
    struct node na, nb;
    /* node-a joins with an admin's token (admitted at once); node-b with a
     * provider's, approved by the admin. */
    /* The hub publishes fog-tiny, template tiny-web's image; Alice has a
     * private image of that name with other content. A node's policy
     * names content, fixed when it is set. */
    _cleanup_free_ char *pt = make_qcow2("pub-tiny.qcow2", "48M");
    _cleanup_free_ char *o00 = tu_fogctl(&ctl, ctl.admin_key, &st,
                                         "image-import", "fog-tiny", pt,
                                         "--public", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *carol_key = make_account("carol", "tenant");
    node_register(ctl.admin_key, "node-a", &na);
    node_register(prov_key, "node-b", &nb);
    _cleanup_free_ char *o0 =
        tu_fogctl(&ctl, ctl.admin_key, &st, "node-approve", "node-b", NULL);
    assert_int_equal(st, 0);

    _cleanup_free_ char *o1 =
        tu_fogctl(&ctl, ctl.admin_key, &st, "node-policy", "node-a",
                  "--template", "tiny-web", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *o2 =
        tu_fogctl(&ctl, prov_key, &st, "node-policy", "node-b", "--image",
                  "pub-base", "--image", "pub-base", NULL);
    assert_int_equal(st, 0);
    /* A provider restricts only its own nodes; a tenant none. */
    _cleanup_free_ char *o3 = tu_fogctl(&ctl, prov_key, &st, "node-policy",
                                        "node-a", "--clear", NULL);
    assert_int_equal(st, 1);
    _cleanup_free_ char *pa = xasprintf("/v1/nodes/%s/policy", na.id);
    json_auto_t *t1 = tu_api(&ctl, alice_key, "PUT", pa, "{}", &ls);
    assert_int_equal(ls, 403);

    /* The policies read back (duplicates dropped). */
    _cleanup_free_ char *show =
        tu_fogctl(&ctl, prov_key, &st, "node-policy", "node-b", NULL);
    assert_int_equal(st, 0);
    _cleanup_free_ char *imgs = tu_field(show, "images");
    assert_string_equal(imgs, "pub-base");
    json_auto_t *pj = FOGCTL_JSON(ctl.admin_key, &st, "node-policy", "node-a",
                                  "--json", NULL);
    assert_int_equal(json_array_size(json_object_get(pj, "templates")), 1);
    assert_int_equal(json_array_size(json_object_get(pj, "images")), 0);
    _cleanup_free_ char *np = xasprintf("/v1/nodes/%s", na.id);
    json_auto_t *node = tu_api(&ctl, ctl.admin_key, "GET", np, NULL, &ls);
    assert_true(json_is_true(json_object_get(json_object_get(node, "policy"),
                                             "restricted")));

    /* Hostile or malformed policies are refused and change nothing. */
    static const char *const bad[] = {
        "{\"templates\":[\"../x\"]}", "{\"images\":[\"a b\"]}",
        "{\"templates\":\"tiny-web\"}", "{\"templates\":[1]}",
        "{\"gpus\":[]}", "[]",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        json_auto_t *j = tu_api(&ctl, ctl.admin_key, "PUT", pa, bad[i], &ls);
        if (ls != 400)
            fail_msg("policy %s answered %ld", bad[i], ls);
    }
    _cleanup_free_ char *o4 =
        tu_fogctl(&ctl, ctl.admin_key, &st, "node-policy", "node-a",
                  "--template", "Bad/Name", NULL);
    assert_int_equal(st, 1);
    json_auto_t *pj2 = FOGCTL_JSON(ctl.admin_key, &st, "node-policy", "node-a",
                                   "--json", NULL);
    json_t *kept = json_array_get(json_object_get(pj2, "templates"), 0);
    assert_string_equal(json_string_value(kept), "tiny-web");

    json_decref(node_poll(&na));
    json_decref(node_poll(&nb));
    /* From template tiny-web (the public fog-tiny): only node-a accepts
     * it. */
    _cleanup_free_ char *c1 = tu_fogctl(&ctl, carol_key, &st, "create", "pa1",
                                        "--template", "tiny-web", NULL);
    assert_int_equal(st, 0);
    json_auto_t *v1 = vm_placed(carol_key, "pa1", &na, &nb, 40);
    assert_string_equal(json_str(v1, "node_name"), "node-a");
    /* The node is told where to fetch the catalog image. */
    json_auto_t *desired = node_poll(&na);
    json_t *vms = json_object_get(desired, "vms"), *mine = NULL;
    for (size_t i = 0; i < json_array_size(vms); i++)
        if (streq(json_str(json_array_get(vms, i), "name"), "pa1"))
            mine = json_array_get(vms, i);
    assert_non_null(mine);
    json_t *src = json_object_get(mine, "image_source");
    assert_string_equal(json_str(src, "id"), json_str(v1, "image_id"));
    assert_int_equal(strlen(json_str(src, "sha256")), 64);

    /* Alice's tiny-web runs her private fog-tiny: nobody accepts it. */
    _cleanup_free_ char *c0 = tu_fogctl(&ctl, alice_key, &st, "create", "pa2",
                                        "--template", "tiny-web", NULL);
    assert_int_equal(st, 0);
    json_auto_t *v0 = vm_placed(alice_key, "pa2", &na, &nb, 4);
    assert_null(json_str(v0, "node_name"));

    /* Image pub-base, no template: only node-b accepts it. */
    _cleanup_free_ char *c2 = tu_fogctl(
        &ctl, alice_key, &st, "create", "pb1", "--cpus", "1", "--memory",
        "128M", "--disk", "1G", "--image", "pub-base", "--allow-tcg", NULL);
    assert_int_equal(st, 0);
    json_auto_t *v2 = vm_placed(alice_key, "pb1", &na, &nb, 40);
    assert_string_equal(json_str(v2, "node_name"), "node-b");

    /* Template tiny-echo: nobody accepts it; the reason says so. */
    _cleanup_free_ char *c3 = tu_fogctl(&ctl, alice_key, &st, "create", "pe1",
                                        "--template", "tiny-echo", NULL);
    assert_int_equal(st, 0);
    json_auto_t *v3 = vm_placed(alice_key, "pe1", &na, &nb, 4);
    assert_null(json_str(v3, "node_name"));
    assert_string_equal(json_str(v3, "state"), "pending");
    assert_non_null(strstr(json_str(v3, "state_reason"),
                           "accepts template 'tiny-echo'"));

    /* Lifting node-a's restriction lets the scheduler place it there. */
    _cleanup_free_ char *o5 = tu_fogctl(&ctl, ctl.admin_key, &st, "node-policy",
                                        "node-a", "--clear", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(o5, "accepts every"));
    json_auto_t *v4 = vm_placed(alice_key, "pe1", &na, &nb, 40);
    assert_string_equal(json_str(v4, "node_name"), "node-a");
    _cleanup_free_ char *dom =
        tu_fogctl(&ctl, alice_key, &st, "dominfo", "pe1", NULL);
    _cleanup_free_ char *dn = tu_field(dom, "node_name");
    assert_string_equal(dn, "node-a");

    node_free(&na);
    node_free(&nb);
}

int main(void)
{
    qemu_img = tu_which("qemu-img");
    if (!qemu_img) {
        printf("qemu-img not found (Debian package qemu-utils)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(image_import_uploads_lists_and_shows_inspection),
        cmocka_unit_test(wrong_content_is_refused_and_a_retry_fills_the_image),
        cmocka_unit_test(url_import_of_the_controller_itself_is_refused),
        cmocka_unit_test(templates_are_listed_and_shown),
        cmocka_unit_test(ssh_keys_are_added_listed_and_removed),
        cmocka_unit_test(create_from_template_takes_defaults_and_overrides),
        cmocka_unit_test(create_refuses_an_image_that_is_not_ready),
        cmocka_unit_test(hostile_names_are_refused),
        cmocka_unit_test(node_policy_decides_where_vms_land),
    };
    int r = cmocka_run_group_tests(tests, setup, teardown);
    free(qemu_img);
    return r;
}
