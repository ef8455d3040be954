/* Deltas of the desired document (api/desired_delta): a delta made
 * between two revisions and merged into the older gives the newer whole
 * (VMs added, changed, removed; members changed or added), only what
 * changed travels, a dropped member or too many changes give no delta,
 * and a merge into another revision or of a malformed delta is refused
 * with nothing written. Random runs too: FOG_SEED=N repeats one. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/desired_delta.h"
#include "common/jsonutil.h"
#include "common/util.h"

#include "tests/testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static json_t *vm(const char *id, int mem, const char *state)
{
    return json_pack("{s:s, s:i, s:s, s:[{s:s}]}", "id", id, "memory_mib",
                     mem, "desired_state", state, "interfaces", "mac",
                     "52:54:00:00:00:01");
}

/* A document of n VMs "00000000-...-%012d" at revision rev. */
static json_t *doc_of(int64_t rev, int n)
{
    json_t *vms = json_array();
    for (int i = 0; i < n; i++) {
        char id[37];
        snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", i);
        json_array_append_new(vms, vm(id, 512, "running"));
    }
    return json_pack("{s:I, s:s, s:o, s:[], s:[], s:{s:s}}", "revision",
                     (json_int_t)rev, "node_id", "node-1", "vms", vms,
                     "networks", "ports", "mesh", "ip", "10.99.0.1");
}

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (!j)
        fail_msg("not JSON: %s: %s", err.text, text);
    return j;
}

/* The delta base -> cur as JSON (NULL: none), checked to merge into
 * base as cur. */
static json_t *delta_checked(const json_t *base, const json_t *cur)
{
    struct desired_parts *pb = desired_parts_new(base);
    struct desired_parts *pc = desired_parts_new(cur);
    assert_non_null(pb);
    assert_non_null(pc);
    desired_parts_drop_text(pb); /* a base keeps digests only */
    size_t len = 0;
    /* The whole assembled from the parts is the document. */
    _cleanup_free_ char *whole = desired_parts_text(pc, &len);
    assert_non_null(whole);
    assert_int_equal(len, strlen(whole));
    json_auto_t *wj = parse(whole);
    assert_true(json_equal(wj, cur));
    assert_null(desired_parts_text(pb, &len)); /* no texts: no whole */
    _cleanup_free_ char *text = desired_delta_text(pb, pc, &len);
    desired_parts_free(pb);
    desired_parts_free(pc);
    if (!text)
        return NULL;
    assert_int_equal(len, strlen(text));
    assert_int_equal(text[len - 1], '\n');
    json_t *d = parse(text);
    assert_true(desired_delta_is(d));
    json_auto_t *merged = NULL;
    assert_int_equal(desired_delta_apply(base, d, &merged), 0);
    if (!json_equal(merged, cur)) {
        _cleanup_free_ char *m = json_dumps(merged, JSON_SORT_KEYS);
        _cleanup_free_ char *w = json_dumps(cur, JSON_SORT_KEYS);
        fail_msg("merged:\n%s\nwhole:\n%s", m, w);
    }
    return d;
}

static void test_add_change_remove(void **state)
{
    json_auto_t *a = doc_of(4, 20);
    json_auto_t *b = json_deep_copy(a);
    json_object_set_new(b, "revision", json_integer(5));
    json_t *vms = json_object_get(b, "vms");
    json_object_set_new(json_array_get(vms, 3), "desired_state",
                        json_string("stopped"));
    json_array_remove(vms, 7);
    json_array_append_new(vms, vm("ffffffff-0000-4000-8000-000000000001",
                                  1024, "running"));
    json_auto_t *d = delta_checked(a, b);
    assert_non_null(d);
    assert_int_equal(json_int(d, "revision", -1), 5);
    assert_int_equal(json_int(d, DESIRED_DELTA_FROM, -1), 4);
    /* Only the changed and the new VM travel, the removed by id. */
    json_t *dv = json_object_get(d, "vms");
    assert_int_equal(json_array_size(dv), 2);
    assert_string_equal(json_str(json_array_get(dv, 0), "id"),
                        "00000000-0000-4000-8000-000000000003");
    assert_string_equal(json_str(json_array_get(dv, 1), "id"),
                        "ffffffff-0000-4000-8000-000000000001");
    json_t *rm = json_object_get(d, DESIRED_DELTA_REMOVED);
    assert_int_equal(json_array_size(rm), 1);
    assert_string_equal(json_string_value(json_array_get(rm, 0)),
                        "00000000-0000-4000-8000-000000000007");
    /* Unchanged members stay home; node_id always comes. */
    assert_null(json_object_get(d, "mesh"));
    assert_null(json_object_get(d, "networks"));
    assert_string_equal(json_str(d, "node_id"), "node-1");
}

static void test_members(void **state)
{
    json_auto_t *a = doc_of(1, 3);
    json_auto_t *b = json_deep_copy(a);
    json_object_set_new(b, "revision", json_integer(2));
    json_object_set_new(b, "mesh", json_pack("{s:s}", "ip", "10.99.0.2"));
    json_object_set_new(b, "consoles", json_pack("[{s:s}]", "id", "c1"));
    json_auto_t *d = delta_checked(a, b);
    assert_non_null(d);
    assert_non_null(json_object_get(d, "mesh"));
    assert_non_null(json_object_get(d, "consoles"));
    assert_int_equal(json_array_size(json_object_get(d, "vms")), 0);
    /* A member dropped: no delta says it, the whole goes. */
    json_auto_t *c = json_deep_copy(b);
    json_object_set_new(c, "revision", json_integer(3));
    json_object_del(c, "consoles");
    assert_null(delta_checked(b, c));
}

/* An item of AGENT_NET_VMS: VM i of network vxlan. */
static json_t *net_vm(int vxlan, int i, const char *vtep)
{
    char mac[18], name[16];
    snprintf(mac, sizeof(mac), "02:fb:00:00:%02x:%02x", (unsigned)vxlan & 0xff,
             (unsigned)i & 0xff);
    snprintf(name, sizeof(name), "vm%d", i);
    return tu_net_vm(vxlan, name, mac, vtep);
}

/* doc_of(rev, 3) with n0 items of network 1000 and n1 of 1001. */
static json_t *doc_items(int64_t rev, int n0, int n1)
{
    json_t *d = doc_of(rev, 3);
    json_t *items = json_array();
    for (int i = 0; i < n0; i++)
        json_array_append_new(items, net_vm(1000, i, "100.96.0.2"));
    for (int i = 0; i < n1; i++)
        json_array_append_new(items, net_vm(1001, i, NULL));
    json_object_set_new(d, AGENT_NET_VMS, items);
    return d;
}

static void test_net_vms(void **state)
{
    json_auto_t *a = doc_items(1, 12, 3);
    json_auto_t *b = doc_items(2, 13, 2); /* one added, one gone */
    json_t *items = json_object_get(b, AGENT_NET_VMS);
    json_object_set_new(json_array_get(items, 4), "vtep",
                        json_string("100.96.0.7"));
    json_auto_t *d = delta_checked(a, b);
    assert_non_null(d);
    /* Only the changed and the new item travel, the removed by id. */
    json_t *dv = json_object_get(d, AGENT_NET_VMS);
    assert_int_equal(json_array_size(dv), 2);
    assert_string_equal(json_str(json_array_get(dv, 0), "id"),
                        "00001000/02:fb:00:00:e8:04");
    assert_string_equal(json_str(json_array_get(dv, 1), "id"),
                        "00001000/02:fb:00:00:e8:0c");
    json_t *rm = json_object_get(d, DESIRED_DELTA_REMOVED_NET_VMS);
    assert_int_equal(json_array_size(rm), 1);
    assert_string_equal(json_string_value(json_array_get(rm, 0)),
                        "00001001/02:fb:00:00:e9:02");
    assert_int_equal(json_array_size(json_object_get(d, "vms")), 0);
    assert_null(json_object_get(d, "networks"));
    /* A network gone whole, another come whole. */
    json_auto_t *c = doc_items(3, 12, 0);
    json_auto_t *d2 = delta_checked(b, c);
    assert_non_null(d2);
    assert_int_equal(json_array_size(json_object_get(
                         d2, DESIRED_DELTA_REMOVED_NET_VMS)), 3);
    json_auto_t *e = doc_items(4, 12, 3);
    json_auto_t *d3 = delta_checked(c, e);
    assert_int_equal(json_array_size(json_object_get(d3, AGENT_NET_VMS)), 3);
    /* Most items changed: the whole document goes. */
    json_auto_t *f = doc_items(5, 12, 3);
    for (size_t i = 0; i < 9; i++)
        json_object_set_new(json_array_get(json_object_get(f, AGENT_NET_VMS),
                                           i), "vtep", json_string("x"));
    assert_null(delta_checked(e, f));
    /* A document that begins the list: whole. */
    json_auto_t *g = doc_of(6, 3);
    json_auto_t *h = doc_items(7, 1, 0);
    assert_null(delta_checked(g, h));
    /* Two items with one id: not a document to cut. */
    json_auto_t *dup = doc_items(8, 2, 0);
    json_array_append_new(json_object_get(dup, AGENT_NET_VMS),
                          net_vm(1000, 1, NULL));
    assert_null(desired_parts_new(dup));
}

/* A run shared by two documents is not looked into: no item travels. */
static void test_shared_run(void **state)
{
    json_auto_t *a = doc_of(1, 3), *b = doc_of(2, 3);
    struct desired_part *items = xcalloc(2, sizeof(*items));
    for (int i = 0; i < 2; i++) {
        json_auto_t *it = net_vm(1000, i, NULL);
        items[i].key = xstrdup(json_str(it, "id"));
        items[i].text = json_dumps(it, JSON_COMPACT);
    }
    struct desired_run *run = desired_run_new("00001000", items, 2);
    struct desired_parts *pa = desired_parts_new(a);
    struct desired_parts *pb = desired_parts_new(b);
    struct desired_run *ra[1] = { desired_run_ref(run) }, *rb[1] = { run };
    desired_parts_put_runs(pa, ra, 1);
    desired_parts_put_runs(pb, rb, 1);
    desired_parts_drop_text(pa);
    size_t len = 0;
    _cleanup_free_ char *t = desired_delta_text(pa, pb, &len);
    assert_non_null(t);
    json_auto_t *d = parse(t);
    assert_int_equal(json_array_size(json_object_get(d, AGENT_NET_VMS)), 0);
    assert_int_equal(json_array_size(json_object_get(
                         d, DESIRED_DELTA_REMOVED_NET_VMS)), 0);
    /* The whole text carries the run's items. */
    _cleanup_free_ char *w = desired_parts_text(pb, &len);
    json_auto_t *wj = parse(w);
    assert_int_equal(json_array_size(json_object_get(wj, AGENT_NET_VMS)), 2);
    desired_parts_free(pa);
    desired_parts_free(pb);
}

static void test_too_many(void **state)
{
    json_auto_t *a = doc_of(1, 20);
    json_auto_t *b = json_deep_copy(a);
    json_object_set_new(b, "revision", json_integer(2));
    json_t *vms = json_object_get(b, "vms");
    for (size_t i = 0; i < 11; i++)
        json_object_set_new(json_array_get(vms, i), "memory_mib",
                            json_integer(2048));
    assert_null(delta_checked(a, b));
    /* A small document: any change goes as a delta. */
    json_auto_t *s = doc_of(1, 2);
    json_auto_t *t = doc_of(2, 0);
    json_auto_t *d = delta_checked(s, t);
    assert_non_null(d);
    assert_int_equal(json_array_size(json_object_get(d, DESIRED_DELTA_REMOVED)),
                     2);
}

static void test_apply_refused(void **state)
{
    json_auto_t *a = doc_of(4, 3);
    json_auto_t *out = NULL;
    json_auto_t *other = parse("{\"revision\":6,\"delta_from\":5,\"vms\":[],"
                               "\"removed_vms\":[]}");
    assert_int_equal(desired_delta_apply(a, other, &out), -ESTALE);
    assert_int_equal(desired_delta_apply(NULL, other, &out), -ESTALE);
    assert_null(out);
    static const char *const bad[] = {
        "[]",
        "{\"revision\":5,\"delta_from\":\"4\",\"vms\":[]}",
        "{\"delta_from\":4,\"vms\":[]}",
        "{\"revision\":5,\"delta_from\":4,\"vms\":{}}",
        "{\"revision\":5,\"delta_from\":4,\"vms\":[1]}",
        "{\"revision\":5,\"delta_from\":4,\"vms\":[{\"id\":7}]}",
        "{\"revision\":5,\"delta_from\":4,\"vms\":[{\"id\":\"x\"},{\"id\":\"x\"}]}",
        "{\"revision\":5,\"delta_from\":4,\"removed_vms\":[null]}",
        "{\"revision\":5,\"delta_from\":4,\"removed_vms\":\"x\"}",
        "{\"revision\":5,\"delta_from\":4,\"vms\":[{\"id\":\"x\"}],"
        "\"removed_vms\":[\"x\"]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_auto_t *d = parse(bad[i]);
        if (desired_delta_apply(a, d, &out) != -EINVAL)
            fail_msg("accepted: %s", bad[i]);
        assert_null(out);
    }
    /* The base is left as it was. */
    json_auto_t *copy = doc_of(4, 3);
    assert_true(json_equal(a, copy));
    /* A document that is not one gives no parts. */
    json_auto_t *notdoc = parse("{\"revision\":1,\"vms\":[{\"name\":\"a\"}]}");
    assert_null(desired_parts_new(notdoc));
    json_auto_t *dup = parse("{\"revision\":1,\"vms\":[{\"id\":\"a\"},"
                             "{\"id\":\"a\"}]}");
    assert_null(desired_parts_new(dup));
}

/* The whole text assembled from a cut is the document it was cut from,
 * escapes and all, in id order whatever order the document had. */
static void test_whole_from_parts(void **state)
{
    (void)state;
    json_auto_t *d = parse("{\"revision\":9,\"node_id\":\"n\\\"1\",\"mesh\":"
                           "{\"a\\u00e9\":[1,null]},\"vms\":[{\"id\":\"b\","
                           "\"x\":\"\\n\"},{\"id\":\"a\"}]}");
    struct desired_parts *p = desired_parts_new(d);
    assert_non_null(p);
    size_t len = 0;
    _cleanup_free_ char *text = desired_parts_text(p, &len);
    assert_non_null(text);
    assert_int_equal(text[len - 1], '\n');
    json_auto_t *got = parse(text);
    json_auto_t *want = parse("{\"revision\":9,\"node_id\":\"n\\\"1\",\"mesh\":"
                              "{\"a\\u00e9\":[1,null]},\"vms\":[{\"id\":\"a\"},"
                              "{\"id\":\"b\",\"x\":\"\\n\"}]}");
    assert_true(json_equal(got, want));
    desired_parts_drop_text(p);
    assert_null(desired_parts_text(p, &len));
    desired_parts_free(p);
}

/* A random generator's state from FOG_SEED or the clock, printed. */
static uint64_t seeded(void)
{
    const char *s = getenv("FOG_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
    print_message("seed %" PRIu64 "\n", seed);
    return seed | 1;
}

/* Random chains of changes: each delta merged into the previous merge
 * gives the whole document, or there is none and the whole is taken. */
static void test_random_chain(void **state)
{
    uint64_t rng = seeded();
    json_auto_t *held = doc_of(1, 30);
    json_auto_t *cur = json_deep_copy(held);
    for (int step = 2; step < 200; step++) {
        json_t *next = json_deep_copy(cur);
        json_object_set_new(next, "revision", json_integer(step));
        json_t *vms = json_object_get(next, "vms");
        int changes = (int)(tu_xorshift(&rng) % 4);
        for (int c = 0; c < changes; c++) {
            size_t n = json_array_size(vms);
            switch (tu_xorshift(&rng) % 4) {
            case 0:
                if (n)
                    json_array_remove(vms, tu_xorshift(&rng) % n);
                break;
            case 1: {
                char id[37];
                snprintf(id, sizeof(id), "%08x-0000-4000-8000-000000000000",
                         (unsigned)(tu_xorshift(&rng) & 0xffffffff));
                /* Kept in id order, as the controller lists them. */
                size_t at = 0;
                while (at < n && strcmp(json_str(json_array_get(vms, at),
                                                 "id"), id) < 0)
                    at++;
                if (at < n && streq(json_str(json_array_get(vms, at), "id"),
                                    id))
                    break;
                json_array_insert_new(vms, at, vm(id, 256, "running"));
                break;
            }
            case 2:
                if (n)
                    json_object_set_new(
                        json_array_get(vms, tu_xorshift(&rng) % n),
                        "memory_mib",
                        json_integer((json_int_t)(tu_xorshift(&rng) % 9999)));
                break;
            default:
                json_object_set_new(next, "ports",
                                    json_pack("[i]", step));
            }
        }
        json_auto_t *d = delta_checked(cur, next);
        json_t *merged = NULL;
        if (d)
            assert_int_equal(desired_delta_apply(held, d, &merged), 0);
        else
            merged = json_incref(next);
        assert_true(json_equal(merged, next));
        json_decref(held);
        held = merged;
        json_decref(cur);
        cur = next;
    }
}

/* The document `whole` with only the VMs of ids in its list. */
static json_t *only_vms(const json_t *whole, char ids[][37], size_t n)
{
    json_t *d = json_deep_copy(whole);
    json_t *vms = json_object_get(d, "vms");
    for (size_t i = json_array_size(vms); i-- > 0;) {
        bool named = false;
        for (size_t k = 0; k < n && !named; k++)
            named = streq(ids[k], json_str(json_array_get(vms, i), "id"));
        if (!named)
            json_array_remove(vms, i);
    }
    return d;
}

/* Parts made from the former document's and a document holding only the
 * changed VMs are those of the whole new document: same digests, same
 * text; a document holding a VM the change did not name is refused. */
static void test_update_random(void **state)
{
    uint64_t rng = seeded();
    json_auto_t *cur = doc_of(1, 20);
    struct desired_parts *held = desired_parts_new(cur);
    for (int step = 2; step < 300; step++) {
        json_t *next = json_deep_copy(cur);
        json_object_set_new(next, "revision", json_integer(step));
        json_t *vms = json_object_get(next, "vms");
        char ids[4][37];
        size_t n_ids = 0;
        int changes = (int)(tu_xorshift(&rng) % 4);
        for (int c = 0; c < changes; c++) {
            size_t n = json_array_size(vms), at;
            switch (tu_xorshift(&rng) % 4) {
            case 0: /* one goes */
                if (!n)
                    break;
                at = tu_xorshift(&rng) % n;
                snprintf(ids[n_ids++], 37, "%s",
                         json_str(json_array_get(vms, at), "id"));
                json_array_remove(vms, at);
                break;
            case 1: { /* one comes, in id order */
                char id[37];
                snprintf(id, sizeof(id), "%08x-0000-4000-8000-000000000000",
                         (unsigned)(tu_xorshift(&rng) & 0xffffffff));
                at = 0;
                while (at < n && strcmp(json_str(json_array_get(vms, at),
                                                 "id"), id) < 0)
                    at++;
                if (at < n &&
                    streq(json_str(json_array_get(vms, at), "id"), id))
                    break;
                json_array_insert_new(vms, at, vm(id, 256, "running"));
                snprintf(ids[n_ids++], 37, "%s", id);
                break;
            }
            case 2: /* one changes */
                if (!n)
                    break;
                at = tu_xorshift(&rng) % n;
                json_object_set_new(json_array_get(vms, at), "memory_mib",
                                    json_integer((json_int_t)step));
                snprintf(ids[n_ids++], 37, "%s",
                         json_str(json_array_get(vms, at), "id"));
                break;
            default: /* a member changes */
                json_object_set_new(next, "ports", json_pack("[i]", step));
            }
        }
        /* A VM named that did not change is read again, and is the same. */
        if (json_array_size(vms) && n_ids < 4 && tu_xorshift(&rng) % 2)
            snprintf(ids[n_ids++], 37, "%s",
                     json_str(json_array_get(vms, 0), "id"));
        json_auto_t *part = only_vms(next, ids, n_ids);
        const char *idv[4];
        for (size_t k = 0; k < n_ids; k++)
            idv[k] = ids[k];
        struct desired_parts *made =
            desired_parts_update(held, part, idv, n_ids);
        struct desired_parts *want = desired_parts_new(next);
        assert_non_null(made);
        assert_int_equal(made->revision, step);
        assert_memory_equal(desired_parts_whole(made),
                            desired_parts_whole(want), sizeof(want->whole));
        size_t l1 = 0, l2 = 0;
        _cleanup_free_ char *t1 = desired_parts_text(made, &l1);
        _cleanup_free_ char *t2 = desired_parts_text(want, &l2);
        assert_string_equal(t1, t2);
        /* The new document whole where only some VMs were asked for: a
         * VM it holds that the change did not name is refused. */
        if (json_array_size(vms) > n_ids)
            assert_null(desired_parts_update(held, next, idv, n_ids));
        desired_parts_free(want);
        desired_parts_free(held);
        held = made;
        json_decref(cur);
        cur = next;
    }
    desired_parts_free(held);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_change_remove),
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_too_many),
        cmocka_unit_test(test_net_vms),
        cmocka_unit_test(test_shared_run),
        cmocka_unit_test(test_apply_refused),
        cmocka_unit_test(test_random_chain),
        cmocka_unit_test(test_whole_from_parts),
        cmocka_unit_test(test_update_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
