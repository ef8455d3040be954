/* Unit tests for nodeagent/vmseen: the sorted set of what the controller
 * holds of each VM, its lookups and forgetting the VMs that went. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "nodeagent/vmseen.h"

#include <stdio.h>
#include <string.h>

static void vm_id(unsigned i, char out[37])
{
    snprintf(out, 37, "%08x-0000-4000-8000-%012x", i * 2654435761u, i);
}

static void entries_are_found_again_with_what_was_set(void **state)
{
    struct vm_seen_set s = { 0 };
    char id[37];
    /* In an order that is not the ids' own. */
    for (unsigned i = 0; i < 500; i++) {
        vm_id(i, id);
        struct vm_seen *e = vm_seen_get(&s, id);
        assert_string_equal(e->id, id);
        assert_false(e->posted);
        e->size = (off_t)i;
        e->posted = true;
    }
    assert_int_equal(s.n, 500);
    for (size_t i = 1; i < s.n; i++)
        assert_true(strcmp(s.v[i - 1].id, s.v[i].id) < 0);
    for (unsigned i = 0; i < 500; i++) {
        vm_id(i, id);
        struct vm_seen *e = vm_seen_get(&s, id);
        assert_true(e->posted);
        assert_int_equal(e->size, (off_t)i);
    }
    assert_int_equal(s.n, 500); /* lookups made none */
    vm_seen_free(&s);
}

/* An id longer than an entry holds is found again, not added anew on
 * each lookup (the set grew by one per report before). */
static void a_long_id_is_one_entry(void **state)
{
    struct vm_seen_set s = { 0 };
    char id[65];
    memset(id, 'a', 64);
    id[64] = '\0';
    for (int i = 0; i < 3; i++)
        vm_seen_get(&s, id)->posted = true;
    assert_int_equal(s.n, 1);
    vm_seen_get(&s, id)->xml_known = true;
    vm_seen_touched(&s, id);
    assert_false(vm_seen_get(&s, id)->xml_known);
    assert_true(vm_seen_get(&s, id)->posted);
    assert_int_equal(s.n, 1);
    vm_seen_free(&s);
}

static void vms_no_longer_desired_are_forgotten(void **state)
{
    struct vm_seen_set s = { 0 };
    char id[37];
    json_auto_t *doc = json_pack("{s:[]}", "vms");
    json_t *vms = json_object_get(doc, "vms");
    /* 1,000 VMs came; the document names every tenth. */
    for (unsigned i = 0; i < 1000; i++) {
        vm_id(i, id);
        vm_seen_get(&s, id)->xml_known = true;
        if (i % 10 == 0)
            json_array_append_new(vms, json_pack("{s:s}", "id", id));
    }
    vm_seen_forget(&s, doc);
    assert_int_equal(s.n, 100);
    assert_true(s.cap < 1000); /* the room went back too */
    for (unsigned i = 0; i < 1000; i += 10) {
        vm_id(i, id);
        assert_true(vm_seen_get(&s, id)->xml_known); /* kept as it was */
    }
    assert_int_equal(s.n, 100);
    /* One forgotten comes back blank. */
    vm_id(7, id);
    assert_false(vm_seen_get(&s, id)->xml_known);
    assert_int_equal(s.n, 101);
    /* A document without VMs forgets them all. */
    json_auto_t *empty = json_object();
    vm_seen_forget(&s, empty);
    assert_int_equal(s.n, 0);
    vm_seen_free(&s);
}

static void touched_clears_one_or_all(void **state)
{
    struct vm_seen_set s = { 0 };
    char a[37], b[37];
    vm_id(1, a);
    vm_id(2, b);
    vm_seen_get(&s, a)->xml_known = true;
    vm_seen_get(&s, b)->xml_known = true;
    vm_seen_touched(&s, a);
    assert_false(vm_seen_get(&s, a)->xml_known);
    assert_true(vm_seen_get(&s, b)->xml_known);
    vm_seen_touched(&s, "not-a-vm"); /* nothing made, nothing cleared */
    assert_int_equal(s.n, 2);
    assert_true(vm_seen_get(&s, b)->xml_known);
    vm_seen_touched(&s, NULL);
    assert_false(vm_seen_get(&s, b)->xml_known);
    vm_seen_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(entries_are_found_again_with_what_was_set),
        cmocka_unit_test(a_long_id_is_one_entry),
        cmocka_unit_test(vms_no_longer_desired_are_forgotten),
        cmocka_unit_test(touched_clears_one_or_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
