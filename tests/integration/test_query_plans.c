/* The statements on the API's hot paths are answered through indexes:
 * sqlite's EXPLAIN QUERY PLAN for each shows no full scan of a table and
 * no temporary sort, so a dropped index or a rewritten WHERE that defeats
 * one fails here rather than as a slowdown at 100,000 VMs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "controller/handlers.h"
#include "controller/netalloc.h"
#include "controller/scheduler.h"
#include "controller/store.h"
#include "tests/testutil.h"

#include <stdio.h>

static char *dir;
static struct store *s;

static int setup(void **state)
{
    dir = tu_tempdir("sc-plans");
    _cleanup_free_ char *db = xasprintf("%s/fog.db", dir);
    return store_open(db, &s) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    store_close(s);
    tu_rmrf(dir);
    free(dir);
    return 0;
}

/* The plan's steps of sql, one text per row (caller owns). */
static json_t *plan(const char *sql, const char *types, const char *a1,
                    const char *a2, int64_t i3, const char *a4, int64_t i5)
{
    _cleanup_free_ char *q = xasprintf("EXPLAIN QUERY PLAN %s", sql);
    json_t *rows = NULL;
    int e;
    if (streq(types, "ssb"))
        e = store_query(s, &rows, q, types, a1, a2, (int)i3);
    else if (streq(types, "ss"))
        e = store_query(s, &rows, q, types, a1, a2);
    else if (streq(types, "si"))
        e = store_query(s, &rows, q, types, a1, i3);
    else if (streq(types, "s"))
        e = store_query(s, &rows, q, types, a1);
    else if (!*types)
        e = store_query(s, &rows, q, "");
    else /* page_list's */
        e = store_query(s, &rows, q, "bsisi", (int)(a1 != NULL), a2, i3, a4,
                        i5);
    assert_int_equal(e, 0);
    return rows;
}

/* Every step searches an index; none scans a table or sorts. */
static void assert_indexed(const char *what, json_t *rows)
{
    size_t i;
    json_t *row;
    assert_true(json_array_size(rows) > 0);
    json_array_foreach(rows, i, row) {
        const char *d = json_str(row, "detail");
        if (startswith(d, "SCAN ") || strstr(d, "TEMP B-TREE"))
            fail_msg("%s: '%s' in its plan", what, d);
    }
    json_decref(rows);
}

static void vm_lookups_search_by_key(void **state)
{
    assert_indexed("VM by id", plan(vm_sql_by_id, "ssb", "x", "a", 0, NULL, 0));
    assert_indexed("VM by id (admin)",
                   plan(vm_sql_by_id, "ssb", "x", "a", 1, NULL, 0));
    assert_indexed("VM by own name",
                   plan(vm_sql_by_own_name, "ss", "web", "a", 0, NULL, 0));
    assert_indexed("VM by any name",
                   plan(vm_sql_by_any_name, "s", "web", NULL, 0, NULL, 0));
}

static void vm_lists_walk_only_their_page(void **state)
{
    assert_indexed("admin's VM list", plan(vm_sql_list_all, "page", "admin",
                                           "a", 0, "", 101));
    assert_indexed("tenant's VM list", plan(vm_sql_list_own, "page", NULL,
                                            "a", 0, "", 101));
    /* The tenant's list seeks to its own rows, not everyone's. */
    json_t *rows = plan(vm_sql_list_own, "page", NULL, "a", 5, "x", 101);
    assert_non_null(strstr(json_str(json_array_get(rows, 0), "detail"),
                           "account_id=?"));
    json_decref(rows);
}

static void address_allocation_searches_the_key(void **state)
{
    assert_indexed("first free address",
                   plan(netalloc_sql_lowest_free, "s", "w", NULL, 0, NULL, 0));
}

static void the_scheduler_reads_its_pending_vms_in_index_order(void **state)
{
    assert_indexed("pending VMs",
                   plan(scheduler_sql_pending, "", NULL, NULL, 0, NULL, 0));
}

/* A batch's read of its VMs' rows looks each up by id, and their images
 * too, never walking the pending VMs (or any table). */
static void the_scheduler_reads_a_batch_by_id(void **state)
{
    json_t *rows = plan(scheduler_sql_ahead, "s", "[\"x\",\"y\"]", NULL, 0,
                        NULL, 0);
    size_t i, by_id = 0;
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *d = json_str(row, "detail");
        if (startswith(d, "SCAN ") && !startswith(d, "SCAN w VIRTUAL TABLE"))
            fail_msg("batch read: '%s' in its plan", d);
        if ((startswith(d, "SEARCH vms ") || startswith(d, "SEARCH i ")) &&
            strstr(d, "(id=?)"))
            by_id++;
    }
    assert_int_equal(by_id, 2);
    json_decref(rows);
}

int main(void)
{
    tu_sqlite_only("sqlite's query plans (PostgreSQL has the same indexes "
                   "from the same migrations)");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vm_lookups_search_by_key),
        cmocka_unit_test(vm_lists_walk_only_their_page),
        cmocka_unit_test(address_allocation_searches_the_key),
        cmocka_unit_test(the_scheduler_reads_its_pending_vms_in_index_order),
        cmocka_unit_test(the_scheduler_reads_a_batch_by_id),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
