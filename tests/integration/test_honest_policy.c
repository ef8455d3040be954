/* Node policies are whitelists by content, against the real controller: a
 * policy entry names a catalog image by its sha256 and a template by its
 * name and its image's sha256, fixed when the policy is set. A VM made
 * from a listed template with another image or other user data is no
 * longer that template, and a tenant's private image under a listed name
 * never matches. A node that accepts the hub's verified pool accepts
 * exactly its members, by content: a member runs, a non-member and a
 * tenant's private image renamed as a member wait with the policy filter
 * named. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

/* Templates from the tree; no inspection; a long heartbeat so the node
 * stays online between this test's polls. */
static const char *const ctl_args[] = { "--templates-dir", "images/templates",
                                        "--no-inspect", "--heartbeat", "30",
                                        NULL };

static struct tu_ctl ctl;
static char *work, *alice_key, *bob_key, *prov_key, *node_cred, *node_id;

static json_t *api(const char *key, const char *method, const char *path,
                   const char *body, long want)
{
    long st;
    json_t *j = tu_api(&ctl, key, method, path, body, &st);
    if (st != want)
        fail_msg("%s %s: status %ld, want %ld: %s", method, path, st, want,
                 json_str(j, "detail") ? json_str(j, "detail") : "");
    return j;
}


/* Import a qcow2 of virtual size vsize as `name` (public: --public);
 * returns its sha256 (caller frees). */
static char *image(const char *key, const char *name, uint64_t vsize,
                   bool public)
{
    size_t len;
    _cleanup_free_ uint8_t *q = tu_qcow2(vsize, &len);
    _cleanup_free_ char *p = xasprintf("%s/%s-%llu.qcow2", work, name,
                                       (unsigned long long)vsize);
    assert_int_equal(file_write_atomic(p, q, len, 0600), 0);
    int st;
    _cleanup_free_ char *out = tu_fogctl(&ctl, key, &st, "image-import",
                                         name, p, "--json",
                                         public ? "--public" : NULL, NULL);
    if (st != 0)
        fail_msg("image-import %s exited %d: %s", name, st, out);
    json_auto_t *j = json_loads(out, 0, NULL);
    assert_non_null(json_str(j, "sha256"));
    return xstrdup(json_str(j, "sha256"));
}

/* Create a VM as key with body members `more`; returns the VM. */
static json_t *create(const char *key, const char *name, const char *more)
{
    _cleanup_free_ char *b = xasprintf("{\"name\":\"%s\",%s}", name, more);
    return api(key, "POST", "/v1/vms", b, 201);
}

/* The VM named `name` of key's holder after the node polled `tries`
 * times (until it has a node). */
static json_t *vm_after_polls(const char *key, const char *name, int tries)
{
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s", name);
    json_t *v = NULL;
    for (int i = 0; i < tries; i++) {
        json_decref(api(node_cred, "GET", "/v1/agent/desired?wait=0", NULL,
                        200));
        json_decref(v);
        v = api(key, "GET", p, NULL, 200);
        if (json_str(v, "node_id"))
            break;
        usleep(250 * 1000);
    }
    return v;
}

static void set_policy(const char *body)
{
    _cleanup_free_ char *p = xasprintf("/v1/nodes/%s/policy", node_id);
    json_decref(api(prov_key, "PUT", p, body, 200));
}

static int setup(void **state)
{
    (void)state;
    tu_ctl_start(&ctl, ctl_args);
    work = tu_tempdir("ho-policy");
    setenv("HOME", work, 1);
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("FOG_CONFIG");
    alice_key = tu_account(&ctl, "alice", "tenant");
    bob_key = tu_account(&ctl, "bob", "tenant");
    prov_key = tu_account(&ctl, "prov", "provider");
    assert_int_equal(tu_node_join(&ctl, prov_key, "ho-rig", NULL, &node_id,
                                  &node_cred), 201);
    _cleanup_free_ char *ap = xasprintf("/v1/nodes/%s/approve", node_id);
    long st;
    json_decref(tu_api(&ctl, ctl.admin_key, "POST", ap, "{}", &st));
    assert_true(st == 200 || st == 201);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_ctl_destroy(&ctl);
    tu_rmrf(work);
    free(work);
    free(alice_key);
    free(bob_key);
    free(prov_key);
    free(node_cred);
    free(node_id);
    return 0;
}

static void policies_match_content_not_names(void **state)
{
    (void)state;
    /* The hub's public fog-tiny (template tiny-web's image), and Alice's
     * private image under the same name with other content. */
    _cleanup_free_ char *pub = image(ctl.admin_key, "fog-tiny", 64 << 20, true);
    _cleanup_free_ char *priv = image(alice_key, "fog-tiny", 96 << 20, false);
    assert_string_not_equal(pub, priv);

    /* The node accepts template tiny-web only: the entry records the
     * content of its image. */
    set_policy("{\"templates\":[\"tiny-web\"]}");
    _cleanup_free_ char *pp = xasprintf("/v1/nodes/%s/policy", node_id);
    json_auto_t *pol = api(prov_key, "GET", pp, NULL, 200);
    json_t *e0 = json_array_get(json_object_get(pol, "entries"), 0);
    assert_string_equal(json_str(e0, "kind"), "template");
    assert_string_equal(json_str(e0, "name"), "tiny-web");
    assert_string_equal(json_str(e0, "sha256"), pub);
    /* A template the hub does not have is refused. */
    long st;
    json_auto_t *bad = tu_api(&ctl, prov_key, "PUT", pp,
                              "{\"templates\":[\"no-such\"]}", &st);
    assert_int_equal(st, 400);
    assert_string_equal(json_str(bad, "field"), "templates");

    /* Bob's VM from the template as it is: placed. */
    json_decref(create(bob_key, "ho-ok", "\"template\":\"tiny-web\""));
    json_auto_t *ok = vm_after_polls(bob_key, "ho-ok", 40);
    assert_string_equal(json_str(ok, "node_id"), node_id);
    assert_string_equal(json_str(ok, "template"), "tiny-web");

    /* The template with other user data, or another image, is another
     * application: created, only based on the template, and not placed
     * on a node that accepts the template. */
    json_auto_t *ud = create(bob_key, "ho-ud", "\"template\":\"tiny-web\","
                             "\"user_data\":\"#cloud-config\\nruncmd: "
                             "[[sh, -c, 'mine coins']]\\n\"");
    assert_true(json_is_null(json_object_get(ud, "template")));
    assert_string_equal(json_str(ud, "based_on"), "tiny-web");
    json_auto_t *img = create(bob_key, "ho-img", "\"template\":\"tiny-web\","
                              "\"image\":\"ho-local\"");
    assert_string_equal(json_str(img, "based_on"), "tiny-web");
    /* The same image and user data as the template's change nothing. */
    json_auto_t *same = create(bob_key, "ho-same",
                               "\"template\":\"tiny-web\",\"image\":"
                               "\"fog-tiny\",\"power_state\":\"stopped\"");
    assert_string_equal(json_str(same, "template"), "tiny-web");
    /* Alice's VM from the template runs her private fog-tiny: not the
     * template's content. */
    json_auto_t *ap = create(alice_key, "ho-priv", "\"template\":\"tiny-web\"");
    assert_string_equal(json_str(ap, "template"), "tiny-web");
    static const char *const held[][2] = { { "ho-ud", "b" }, { "ho-img", "b" },
                                           { "ho-priv", "a" } };
    for (size_t i = 0; i < ARRAY_SIZE(held); i++) {
        json_auto_t *v = vm_after_polls(held[i][1][0] == 'a' ? alice_key
                                                             : bob_key,
                                        held[i][0], 4);
        if (json_str(v, "node_id"))
            fail_msg("%s was placed on a node that accepts only template "
                     "tiny-web", held[i][0]);
        assert_string_equal(json_str(v, "state"), "pending");
    }

    /* The node accepts image fog-tiny, meaning the public one: any user
     * data on it is fine, Alice's private namesake is not. */
    set_policy("{\"images\":[\"fog-tiny\"]}");
    json_auto_t *pol2 = api(prov_key, "GET", pp, NULL, 200);
    json_t *e1 = json_array_get(json_object_get(pol2, "entries"), 0);
    assert_string_equal(json_str(e1, "sha256"), pub);
    json_decref(create(alice_key, "ho-priv2", "\"vcpus\":1,\"memory_mib\":"
                       "128,\"disk_gib\":1,\"image\":\"fog-tiny\","
                       "\"allow_tcg\":true"));
    json_auto_t *ud2 = vm_after_polls(bob_key, "ho-ud", 40);
    assert_string_equal(json_str(ud2, "node_id"), node_id);
    json_auto_t *p2 = vm_after_polls(alice_key, "ho-priv2", 4);
    assert_null(json_str(p2, "node_id"));
    json_auto_t *p1 = vm_after_polls(alice_key, "ho-priv", 1);
    assert_null(json_str(p1, "node_id"));
    json_auto_t *i1 = vm_after_polls(bob_key, "ho-img", 1);
    assert_null(json_str(i1, "node_id"));

    /* An image entry that names no catalog image is a node-local image:
     * it matches that name only where no catalog image is used. */
    set_policy("{\"images\":[\"ho-local\"]}");
    json_auto_t *pol3 = api(prov_key, "GET", pp, NULL, 200);
    json_t *e2 = json_array_get(json_object_get(pol3, "entries"), 0);
    assert_true(json_is_null(json_object_get(e2, "sha256")));
    assert_string_equal(json_str(e2, "local_image"), "ho-local");
    json_auto_t *i2 = vm_after_polls(bob_key, "ho-img", 40);
    assert_string_equal(json_str(i2, "node_id"), node_id);
    json_auto_t *p3 = vm_after_polls(alice_key, "ho-priv2", 2);
    assert_null(json_str(p3, "node_id"));
}

static void verified_pool_accepts_exactly_its_members(void **state)
{
    (void)state;
    _cleanup_free_ char *tiny = image(ctl.admin_key, "fog-tiny", 64 << 20,
                                      true);
    _cleanup_free_ char *pool = image(ctl.admin_key, "ho-pool", 80 << 20, true);
    _cleanup_free_ char *other = image(ctl.admin_key, "ho-other", 72 << 20,
                                       true);
    _cleanup_free_ char *priv = image(alice_key, "ho-pool", 88 << 20, false);

    /* The admin verifies ho-pool by content and the template tiny-web
     * (with fog-tiny's content); nobody else may. */
    _cleanup_free_ char *add = xasprintf("{\"sha256\":\"%s\"}", pool);
    json_decref(api(prov_key, "POST", "/v1/pool", add, 403));
    json_decref(api(ctl.admin_key, "POST", "/v1/pool", add, 201));
    json_auto_t *p = api(ctl.admin_key, "POST", "/v1/pool",
                         "{\"template\":\"tiny-web\"}", 201);
    json_t *members = json_object_get(p, "members");
    assert_int_equal(json_array_size(members), 2);
    assert_string_equal(json_str(tu_find(members, "kind", "template"),
                                 "sha256"), tiny);
    json_decref(api(ctl.admin_key, "POST", "/v1/pool",
                    "{\"sha256\":\"not-hex\"}", 400));
    /* fogctl shows the pool to anyone; adding is the admin's alone, with
     * exactly one of --image and --template. */
    int st = -1;
    _cleanup_free_ char *ls = tu_fogctl(&ctl, bob_key, &st, "pool-list", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(ls, pool));
    assert_non_null(strstr(ls, "tiny-web"));
    _cleanup_free_ char *both = tu_fogctl(&ctl, ctl.admin_key, &st,
                                          "pool-add", "--image", pool,
                                          "--template", "tiny-web", NULL);
    assert_int_not_equal(st, 0);
    _cleanup_free_ char *theirs = tu_fogctl(&ctl, prov_key, &st, "pool-add",
                                            "--image", other, NULL);
    assert_int_not_equal(st, 0);

    /* The provider accepts the pool as a whole. */
    set_policy("{\"pool\":\"verified\"}");
    _cleanup_free_ char *pp = xasprintf("/v1/nodes/%s/policy", node_id);
    json_auto_t *pol = api(prov_key, "GET", pp, NULL, 200);
    assert_string_equal(json_str(pol, "pool"), "verified");
    assert_true(json_is_true(json_object_get(pol, "restricted")));

    static const char *const sized = "\"vcpus\":1,\"memory_mib\":128,"
                                     "\"disk_gib\":1,\"allow_tcg\":true,";
    _cleanup_free_ char *m = xasprintf("%s\"image\":\"ho-pool\"", sized);
    _cleanup_free_ char *o = xasprintf("%s\"image\":\"ho-other\"", sized);
    /* A member runs: the verified image, and the verified template. */
    json_decref(create(bob_key, "pl-member", m));
    json_auto_t *v1 = vm_after_polls(bob_key, "pl-member", 40);
    assert_string_equal(json_str(v1, "node_id"), node_id);
    json_decref(create(bob_key, "pl-tmpl", "\"template\":\"tiny-web\""));
    json_auto_t *v2 = vm_after_polls(bob_key, "pl-tmpl", 40);
    assert_string_equal(json_str(v2, "node_id"), node_id);
    /* A public image nobody verified, and Alice's private image renamed
     * ho-pool, wait: the policy filter is named. */
    json_auto_t *n1 = create(bob_key, "pl-other", o);
    json_auto_t *n2 = create(alice_key, "pl-renamed", m);
    json_t *held[] = { n1, n2 };
    for (size_t i = 0; i < ARRAY_SIZE(held); i++) {
        assert_true(json_is_null(json_object_get(held[i], "node_id")));
        assert_int_equal(json_int(json_object_get(json_object_get(held[i],
                         "placement"), "filtered"), "policy", 0), 1);
        assert_non_null(strstr(json_str(held[i], "state_reason"),
                               "policy removed 1"));
    }
    json_auto_t *still = vm_after_polls(alice_key, "pl-renamed", 4);
    assert_null(json_str(still, "node_id"));

    /* Removed from the pool: no longer accepted (an empty pool accepts
     * nothing). */
    _cleanup_free_ char *del = xasprintf("/v1/pool/%s", pool);
    json_decref(api(ctl.admin_key, "DELETE", del, NULL, 204));
    json_decref(api(ctl.admin_key, "DELETE", del, NULL, 404));
    _cleanup_free_ char *rm = tu_fogctl(&ctl, ctl.admin_key, &st,
                                        "pool-remove", "tiny-web", NULL);
    assert_int_equal(st, 0);
    json_auto_t *left = api(bob_key, "GET", "/v1/pool", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(left, "members")), 0);
    json_auto_t *gone = create(bob_key, "pl-after", m);
    assert_true(json_is_null(json_object_get(gone, "node_id")));
    (void)other;
    (void)priv;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(policies_match_content_not_names,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            verified_pool_accepts_exactly_its_members, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
