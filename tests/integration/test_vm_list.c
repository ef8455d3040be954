/* GET /v1/vms, written straight from the store's rows: pages by cursor
 * reach every VM of the caller once, in (created_at, id) order, and nobody
 * else's; each item is the single view's object without its single-view
 * members (interfaces included in both); hostile label text comes back
 * as it went in. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <stdio.h>

static struct tu_ctl ctl;
static char *key_a, *key_b;
/* Quotes, a backslash, a control character, non-ASCII, markup. */
static const char evil_label[] = "k=\"q\\\x01\xc3\xa9</script>";

static int setup(void **state)
{
    tu_ctl_start(&ctl, NULL);
    key_a = tu_account(&ctl, "list-a", "tenant");
    key_b = tu_account(&ctl, "list-b", "tenant");
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    free(key_a);
    free(key_b);
    return 0;
}

/* GET path as key: 200 and a page object. */
static json_t *page(const char *key, const char *path)
{
    long st = 0;
    json_t *p = tu_api(&ctl, key, "GET", path, NULL, &st);
    if (st != 200 || !json_is_array(json_object_get(p, "items")) ||
        !json_object_get(p, "next_cursor"))
        fail_msg("GET %s answered %ld", path, st);
    return p;
}

static void pages_reach_every_vm_once_in_order_and_items_match_the_view(
    void **state)
{
    char *ids[5];
    for (int i = 0; i < 5; i++) {
        _cleanup_free_ char *name = xasprintf("lv-%d", i);
        json_auto_t *labels = json_pack("{s:[s]}", "labels",
                                        i == 3 ? evil_label : "env=prod");
        _cleanup_free_ char *l = json_dumps(labels, JSON_COMPACT);
        l[strlen(l) - 1] = '\0'; /* the members, without braces */
        json_auto_t *vm = tu_vm_post(&ctl, key_a, name, 1, l + 1, 201);
        ids[i] = xstrdup(json_str(vm, "id"));
    }
    json_decref(tu_vm_post(&ctl, key_b, "lv-other", 1, NULL, 201));
    /* One VM's interfaces as its node reported them. */
    tu_sql(&ctl, "UPDATE vms SET interfaces = '[{\"target\":\"vnet0\","
                 "\"type\":\"bridge\",\"source\":\"fog0\",\"model\":"
                 "\"virtio\",\"mac\":\"52:54:00:12:34:56\"}]' WHERE id = "
                 "'%s'", ids[1]);

    /* Two at a time: pages of 2, 2 and 1, the last without a cursor. */
    int seen = 0;
    char last_at[32] = "", last_id[40] = "";
    _cleanup_free_ char *evil_id = xstrdup(ids[3]);
    _cleanup_free_ char *nic_id = xstrdup(ids[1]);
    _cleanup_free_ char *cursor = NULL;
    for (int pg = 0; pg < 3; pg++) {
        _cleanup_free_ char *path =
            cursor ? xasprintf("/v1/vms?limit=2&cursor=%s", cursor)
                   : xstrdup("/v1/vms?limit=2");
        json_auto_t *p = page(key_a, path);
        json_t *items = json_object_get(p, "items");
        assert_int_equal(json_array_size(items), pg < 2 ? 2 : 1);
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
            assert_true(seen < 5);
            /* Each of ours once, ordered by (created_at, id). */
            const char *id = json_str(it, "id");
            int k = 0;
            while (k < 5 && (!ids[k] || !streq(ids[k], id)))
                k++;
            assert_true(k < 5);
            free(ids[k]);
            ids[k] = NULL;
            const char *at = json_str(it, "created_at");
            assert_non_null(at);
            int c = strcmp(at, last_at);
            assert_true(c > 0 || (c == 0 && strcmp(id, last_id) > 0));
            snprintf(last_at, sizeof(last_at), "%s", at);
            snprintf(last_id, sizeof(last_id), "%s", id);
            seen++;
            /* The list item is the single view less its own members. */
            _cleanup_free_ char *vp = xasprintf("/v1/vms/%s",
                                                json_str(it, "id"));
            long st = 0;
            json_auto_t *one = tu_api(&ctl, key_a, "GET", vp, NULL, &st);
            assert_int_equal(st, 200);
            assert_non_null(json_object_get(one, "deal"));
            assert_true(json_is_array(json_object_get(one, "gpus")));
            assert_true(json_is_array(json_object_get(one, "interfaces")));
            /* The list carries the interfaces too (they are a column). */
            assert_true(json_is_array(json_object_get(it, "interfaces")));
            assert_true(json_is_array(json_object_get(one, "health_checks")));
            json_object_del(one, "deal");
            json_object_del(one, "gpus");
            json_object_del(one, "health_checks");
            if (!json_equal(one, it)) {
                _cleanup_free_ char *a = json_dumps(one, JSON_SORT_KEYS);
                _cleanup_free_ char *b = json_dumps(it, JSON_SORT_KEYS);
                fail_msg("view %s\nlist %s", a, b);
            }
        }
        json_t *next = json_object_get(p, "next_cursor");
        free(cursor);
        cursor = NULL;
        if (pg < 2) {
            assert_true(json_is_string(next));
            cursor = xstrdup(json_string_value(next));
        } else {
            assert_true(json_is_null(next));
        }
    }
    assert_int_equal(seen, 5);

    /* A page exactly as long as what is left has no cursor either. */
    json_auto_t *all = page(key_a, "/v1/vms?limit=5");
    assert_int_equal(json_array_size(json_object_get(all, "items")), 5);
    assert_true(json_is_null(json_object_get(all, "next_cursor")));

    /* The reported interfaces are on the list item. */
    json_t *nic = tu_find(json_object_get(all, "items"), "id", nic_id);
    assert_non_null(nic);
    json_t *ifs = json_object_get(nic, "interfaces");
    assert_int_equal(json_array_size(ifs), 1);
    assert_string_equal(json_str(json_array_get(ifs, 0), "target"), "vnet0");
    assert_string_equal(json_str(json_array_get(ifs, 0), "mac"),
                        "52:54:00:12:34:56");

    /* Stored label text comes back as it was given. */
    json_t *evil = tu_find(json_object_get(all, "items"), "id", evil_id);
    assert_non_null(evil);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(evil, "labels"), 0)),
                        evil_label);
    assert_true(json_is_array(json_object_get(evil, "addresses")));
    assert_string_equal(json_str(evil, "state"), "pending");
    assert_false(json_is_true(json_object_get(evil, "paused")));
    assert_true(json_is_true(json_object_get(evil, "autostart")));
    assert_true(json_is_true(json_object_get(evil, "allow_tcg")));
    assert_int_equal(json_int(evil, "vcpus", 0), 1);
    assert_true(json_is_string(json_object_get(evil, "created_at")));

    /* The other tenant sees only its own; the admin sees all six. */
    json_auto_t *b = page(key_b, "/v1/vms");
    assert_int_equal(json_array_size(json_object_get(b, "items")), 1);
    assert_string_equal(json_str(json_array_get(json_object_get(b, "items"), 0),
                                 "name"), "lv-other");
    json_auto_t *adm = page(ctl.admin_key, "/v1/vms?limit=500");
    assert_int_equal(json_array_size(json_object_get(adm, "items")), 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            pages_reach_every_vm_once_in_order_and_items_match_the_view),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
