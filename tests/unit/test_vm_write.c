/* The VM encoder that answers GET /v1/vms and GET /v1/vms/{id}: written
 * straight from the sqlite row it must be byte for byte what it writes
 * from the row as a jansson object, and what jansson writes for the same
 * values, for VMs with every optional member set and absent, strings that
 * need escapes, Unicode and bytes that are not UTF-8. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "common/jsonw.h"
#include "controller/handlers.h"
#include "controller/store.h"
#include "tests/testutil.h"

#include <time.h>

#define ACCOUNT "00000000-0000-4000-8000-000000000001"
#define NODE "00000000-0000-4000-8000-000000000002"
#define VM_FULL "00000000-0000-4000-8000-00000000000a"
#define VM_BARE "00000000-0000-4000-8000-00000000000b"
#define VM_BAD "00000000-0000-4000-8000-00000000000c"
#define OTHER "00000000-0000-4000-8000-000000000003"
#define VM_BYTES "00000000-0000-4000-8000-00000000000d"
/* Quotes, a backslash, control characters jansson and we escape alike, a
 * slash, Unicode from two planes. */
#define HOSTILE "say \"hi\" \\ back\n\t\x01 /etc <b>&amp; \xc5\xbc\xc3\xb3\xc5\x82w " \
                "\xf0\x9f\x90\xa2 \xe2\x80\xa8"

struct fixture {
    char *dir;
    struct store *s;
};

/* A statement ran: store_exec answers the rows it changed. */
static void ok(int r, int want)
{
    assert_int_equal(r, want);
}

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    f->dir = tu_tempdir("vmwrite");
    _cleanup_free_ char *db = xasprintf("%s/fog.db", f->dir);
    assert_int_equal(store_open(db, &f->s), 0);
    struct store *s = f->s;
    ok(store_exec(s, "INSERT INTO accounts (id, name, role, "
                                   "created_at) VALUES ($1, 'acme', 'admin', 1)",
                                "s", ACCOUNT), 1);
    ok(store_exec(s, "INSERT INTO nodes (id, name, account_id, "
                                   "cred_id, cred_salt, cred_hash, created_at, "
                                   "public_ip6) VALUES ($1, $2, $3, 'c', 's', "
                                   "'h', 1, '2001:db8::7')",
                                "sss", NODE, "node \"one\"", ACCOUNT), 1);
    /* Every optional member set, strings needing escapes in each. */
    ok(
        store_exec(s, "INSERT INTO vms (id, account_id, name, vcpus, "
                      "memory_mib, disk_gib, image, allow_tcg, user_data, "
                      "desired_state, state, state_reason, node_id, "
                      "reboot_gen, addresses, addresses6, template, based_on, "
                      "place_gen, shutdown_timeout_s, created_at, updated_at, "
                      "max_price, region, labels, anti_affinity, "
                      "min_reputation, placement, price_hour, gpu_model, "
                      "gpu_count, paused, autostart, restart_policy, "
                      "backup_schedule, backup_keep, backup_next_at, "
                      "interfaces) VALUES ($1, $2, 'full', 4, 4096, 20, $3, 1, "
                      "'#cloud-config', 'running', 'running', $4, $5, "
                      "9223372036854775807, '[\"10.0.0.2\",\"10.0.1.2\"]', "
                      "'[\"fd00::2\"]', $3, $4, -9223372036854775808, 0, "
                      "951782400, 4102444799, 1500000, $4, "
                      "'[\"a=b\",\"\xc3\xa9=\\\"x\\\"\"]', $4, 3, "
                      "'{\"node\":\"n1\",\"why\":[1,2.5,null,true]}', 250000, "
                      "'rtx-4090', 2, 1, 0, 'always', '0 3 * * *', 2, "
                      "253402300799, '[{\"mac\":\"52:54:00:00:00:01\"}]')",
                   "sssss", VM_FULL, ACCOUNT, "img " HOSTILE, HOSTILE, NODE),
        1);
    /* Every optional member absent: no node, no times to come, no money. */
    ok(store_exec(s, "INSERT INTO vms (id, account_id, name, "
                                   "vcpus, memory_mib, disk_gib, image, "
                                   "desired_state, state, created_at, "
                                   "updated_at) VALUES ($1, $2, 'bare', 1, 128, "
                                   "1, 'tiny', 'stopped', 'stopped', 0, 0)",
                                "ss", VM_BARE, ACCOUNT), 1);
    /* Columns a writer got wrong: JSON columns that are not JSON, a time
     * that is text. */
    ok(store_exec(s, "INSERT INTO vms (id, account_id, name, vcpus, "
                     "memory_mib, disk_gib, image, desired_state, state, "
                     "state_reason, addresses, labels, placement, interfaces, "
                     "created_at, updated_at) VALUES ($1, $2, 'bad', 1, 128, 1, "
                     "'tiny', 'stopped', 'stopped', '', '[\"1\"', '{}', '[]', "
                     "'x', 'yesterday', 5)", "ss", VM_BAD, ACCOUNT),
       1);
    /* Bytes that are not UTF-8 (which a jansson row cannot hold: another
     * account's, so the list compared below leaves it out). */
    ok(store_exec(s, "INSERT INTO accounts (id, name, role, created_at) "
                     "VALUES ($1, 'other', 'tenant', 1)", "s", OTHER),
       1);
    ok(store_exec(s, "INSERT INTO vms (id, account_id, name, vcpus, "
                     "memory_mib, disk_gib, image, desired_state, state, "
                     "state_reason, created_at, updated_at) VALUES ($1, $2, "
                     "'bytes', 1, 128, 1, 'tiny', 'stopped', 'stopped', $3, 1, "
                     "1)", "sss", VM_BYTES, OTHER, "bad \xff\xfe utf8 \xc5"),
       1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    tu_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void write_object(struct store_row *row, void *data)
{
    struct jsonw *w = data;
    jsonw_obj_begin(w);
    vm_write(w, row);
    jsonw_obj_end(w);
}

/* The VMs the list statement returns, written from the sqlite rows. */
static char *render_rows(struct store *s, const char *id)
{
    struct jsonw w = JSONW_INIT;
    jsonw_arr_begin(&w);
    if (id)
        assert_int_equal(store_query_each(s, write_object, &w, vm_sql_by_id,
                                          "ssb", id, ACCOUNT, true), 0);
    else
        assert_int_equal(store_query_each(s, write_object, &w,
                                          vm_sql_list_own, "bsisi", false,
                                          ACCOUNT, (int64_t)0, "",
                                          (int64_t)100), 0);
    jsonw_arr_end(&w);
    return buf_steal(&w.b);
}

/* The same, written from each row as a jansson object. */
static char *render_json_rows(struct store *s, const char *id)
{
    json_auto_t *rows = NULL;
    if (id)
        assert_int_equal(store_query(s, &rows, vm_sql_by_id, "ssb", id,
                                     ACCOUNT, true), 0);
    else
        assert_int_equal(store_query(s, &rows, vm_sql_list_own, "bsisi",
                                     false, ACCOUNT, (int64_t)0, "",
                                     (int64_t)100), 0);
    struct jsonw w = JSONW_INIT;
    jsonw_arr_begin(&w);
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        struct store_row r;
        store_row_of_json(row, &r);
        write_object(&r, &w);
    }
    jsonw_arr_end(&w);
    return buf_steal(&w.b);
}

static void rows_and_jansson_objects_write_the_same_bytes(void **state)
{
    struct fixture *f = *state;
    /* NULL: the tenant's list, all three in one walk of the statement. */
    const char *ids[] = { VM_FULL, VM_BARE, VM_BAD, NULL };
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
        _cleanup_free_ char *fast = render_rows(f->s, ids[i]);
        _cleanup_free_ char *slow = render_json_rows(f->s, ids[i]);
        assert_string_equal(fast, slow);
    }
}

/* What jansson writes for the parsed answer is the answer itself: the
 * escapes, numbers and spliced JSON columns are the ones a JSON library
 * writes (jansson escapes control characters as we do for \x01). */
static void jansson_writes_the_same_text(void **state)
{
    struct fixture *f = *state;
    const char *ids[] = { VM_FULL, VM_BARE };
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
        _cleanup_free_ char *fast = render_rows(f->s, ids[i]);
        json_error_t e;
        json_auto_t *v = json_loads(fast, 0, &e);
        assert_non_null(v);
        _cleanup_free_ char *ref = json_dumps(v, JSON_COMPACT |
                                                 JSON_PRESERVE_ORDER |
                                                 JSON_REAL_PRECISION(17));
        assert_string_equal(fast, ref);
    }
}

/* The members themselves: each value the row holds, under its name. */
static void members_hold_the_stored_values(void **state)
{
    struct fixture *f = *state;
    _cleanup_free_ char *full = render_rows(f->s, VM_FULL);
    json_auto_t *a = json_loads(full, 0, NULL);
    assert_non_null(a);
    json_t *v = json_array_get(a, 0);
    assert_string_equal(json_str(v, "state_reason"), HOSTILE);
    assert_string_equal(json_str(v, "image"), "img " HOSTILE);
    assert_string_equal(json_str(v, "node_name"), "node \"one\"");
    assert_string_equal(json_str(v, "public_ip6"), "2001:db8::7");
    assert_int_equal(json_int(v, "reboot_gen", 0), INT64_MAX);
    assert_int_equal(json_int(v, "place_gen", 0), INT64_MIN);
    assert_int_equal(json_int(v, "shutdown_timeout_s", 1), 0);
    assert_int_equal(json_int(v, "user_data_size", 0), 13);
    assert_string_equal(json_str(v, "created_at"), "2000-02-29T00:00:00Z");
    assert_string_equal(json_str(v, "updated_at"), "2099-12-31T23:59:59Z");
    assert_string_equal(json_str(v, "backup_next_at"), "9999-12-31T23:59:59Z");
    assert_string_equal(json_str(v, "gpu"), "rtx-4090:2");
    assert_true(json_is_true(json_object_get(v, "allow_tcg")));
    assert_true(json_is_true(json_object_get(v, "paused")));
    assert_true(json_is_false(json_object_get(v, "autostart")));
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(v, "labels"), 1)),
                        "\xc3\xa9=\"x\"");
    assert_int_equal(json_array_size(json_object_get(v, "addresses")), 2);
    assert_true(json_is_object(json_object_get(v, "placement")));

    _cleanup_free_ char *bare = render_rows(f->s, VM_BARE);
    json_auto_t *b = json_loads(bare, 0, NULL);
    assert_non_null(b);
    v = json_array_get(b, 0);
    assert_true(json_is_null(json_object_get(v, "state_reason")));
    assert_true(json_is_null(json_object_get(v, "node_name")));
    assert_null(json_object_get(v, "public_ip6"));
    assert_true(json_is_null(json_object_get(v, "max_price")));
    assert_true(json_is_null(json_object_get(v, "placement")));
    assert_true(json_is_null(json_object_get(v, "gpu")));
    assert_true(json_is_null(json_object_get(v, "backup_next_at")));
    assert_string_equal(json_str(v, "backup_schedule"), "off");
    assert_string_equal(json_str(v, "created_at"), "1970-01-01T00:00:00Z");
    assert_int_equal(json_array_size(json_object_get(v, "interfaces")), 0);

    /* A broken column becomes its empty value, bytes that are not UTF-8
     * the replacement character, and the answer stays JSON. */
    _cleanup_free_ char *bytes = render_rows(f->s, VM_BYTES);
    json_auto_t *d = json_loads(bytes, 0, NULL);
    assert_non_null(d);
    assert_string_equal(json_str(json_array_get(d, 0), "state_reason"),
                        "bad \xef\xbf\xbd\xef\xbf\xbd utf8 \xef\xbf\xbd");
    _cleanup_free_ char *bad = render_rows(f->s, VM_BAD);
    json_auto_t *c = json_loads(bad, 0, NULL);
    assert_non_null(c);
    v = json_array_get(c, 0);
    assert_int_equal(json_array_size(json_object_get(v, "addresses")), 0);
    assert_int_equal(json_array_size(json_object_get(v, "labels")), 0);
    assert_true(json_is_null(json_object_get(v, "placement")));
    assert_int_equal(json_array_size(json_object_get(v, "interfaces")), 0);
    assert_true(json_is_null(json_object_get(v, "created_at")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rows_and_jansson_objects_write_the_same_bytes),
        cmocka_unit_test(jansson_writes_the_same_text),
        cmocka_unit_test(members_hold_the_stored_values),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
