/* GPUs on the controller through its API: a node's report is stored per
 * GPU, the provider offers and withdraws them (an unusable one is refused
 * with its reason), tenants cannot list them, a malformed report is
 * refused, and fogctl gpu-list shows them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <string.h>

static struct tu_ctl ctl;

/* Two RTX 4090s on NUMA nodes 0 and 1, one unusable card. */
#define GC_GPU(addr, fn, numa, usable, extra)                                  \
    "{\"address\":\"" addr "\",\"id\":\"10de:2684\",\"model\":"               \
    "\"GeForceRTX4090\",\"vendor\":\"NVIDIA Corporation\",\"name\":"          \
    "\"AD102 [GeForce RTX 4090]\",\"functions\":[{\"address\":\"" addr       \
    "\"},{\"address\":\"" fn "\"}],\"iommu_group\":12,\"numa_node\":" numa    \
    ",\"cpulist\":\"0-7\",\"usable\":" usable extra "}"
#define GC_REPORT                                                              \
    "\"iommu\":true,\"gpus\":[" GC_GPU("0000:01:00.0", "0000:01:00.1", "0",   \
                                       "true", "") ","                        \
    GC_GPU("0000:81:00.0", "0000:81:00.1", "1", "true", "") ","               \
    GC_GPU("0000:02:00.0", "0000:02:00.1", "0", "false",                      \
           ",\"reason\":\"IOMMU group 12 also holds 0000:02:00.2\"") "]"

static void gpus_are_stored_offered_and_withdrawn(void **state)
{
    (void)state;
    tu_ctl_start(&ctl, NULL);
    _cleanup_free_ char *cred = tu_node_register(&ctl, "gc-rig", GC_REPORT);
    long st;
    json_auto_t *all = tu_api(&ctl, ctl.admin_key, "GET", "/v1/gpus", NULL,
                              &st);
    assert_int_equal(st, 200);
    json_t *list = json_object_get(all, "gpus");
    assert_int_equal(json_array_size(list), 3);
    json_t *bad = tu_find(list, "address", "0000:02:00.0");
    assert_false(json_is_true(json_object_get(bad, "usable")));
    assert_non_null(strstr(json_str(bad, "reason"), "0000:02:00.2"));
    json_t *g = tu_find(list, "address", "0000:81:00.0");
    assert_string_equal(json_str(g, "model"), "GeForceRTX4090");
    assert_int_equal(json_int(g, "numa_node", -9), 1);
    assert_false(json_is_true(json_object_get(g, "offered")));
    assert_int_equal(json_array_size(json_object_get(g, "functions")), 2);

    /* An unusable GPU cannot be offered; the reason is in the answer. */
    json_auto_t *no = tu_api(&ctl, ctl.admin_key, "POST",
                             "/v1/nodes/gc-rig/gpus/offer",
                             "{\"addresses\":[\"0000:02:00.0\"]}", &st);
    assert_int_equal(st, 409);
    assert_non_null(strstr(json_str(no, "detail"), "0000:02:00.2"));
    json_auto_t *unknown = tu_api(&ctl, ctl.admin_key, "POST",
                                  "/v1/nodes/gc-rig/gpus/offer",
                                  "{\"addresses\":[\"0000:09:00.0\"]}", &st);
    assert_int_equal(st, 404);
    json_auto_t *badaddr = tu_api(&ctl, ctl.admin_key, "POST",
                                  "/v1/nodes/gc-rig/gpus/offer",
                                  "{\"addresses\":[\"../../x\"]}", &st);
    assert_int_equal(st, 400);
    assert_string_equal(json_str(badaddr, "field"), "addresses");

    /* --all offers the usable ones only. */
    json_auto_t *off = tu_api(&ctl, ctl.admin_key, "POST",
                              "/v1/nodes/gc-rig/gpus/offer",
                              "{\"all\":true}", &st);
    assert_int_equal(st, 200);
    list = json_object_get(off, "gpus");
    assert_true(json_is_true(json_object_get(
        tu_find(list, "address", "0000:01:00.0"), "offered")));
    assert_false(json_is_true(json_object_get(
        tu_find(list, "address", "0000:02:00.0"), "offered")));

    /* Withdraw one through fogctl; gpu-list shows it. */
    int rc;
    _cleanup_free_ char *w = tu_fogctl(&ctl, ctl.admin_key, &rc,
                                       "gpu-withdraw", "gc-rig",
                                       "0000:81:00.0", NULL);
    assert_int_equal(rc, 0);
    _cleanup_free_ char *ls = tu_fogctl(&ctl, ctl.admin_key, &rc, "--json",
                                        "gpu-list", "gc-rig", NULL);
    assert_int_equal(rc, 0);
    json_auto_t *lj = json_loads(ls, 0, NULL);
    assert_false(json_is_true(json_object_get(
        tu_find(json_object_get(lj, "gpus"), "address", "0000:81:00.0"),
        "offered")));
    _cleanup_free_ char *both = tu_fogctl(&ctl, ctl.admin_key, &rc,
                                          "gpu-offer", "gc-rig", "--all",
                                          "0000:81:00.0", NULL);
    assert_int_not_equal(rc, 0);

    /* Tenants do not list GPUs. */
    _cleanup_free_ char *tkey = tu_account(&ctl, "gc-ten", "tenant");
    json_auto_t *tl = tu_api(&ctl, tkey, "GET", "/v1/gpus", NULL, &st);
    assert_int_equal(st, 403);

    /* A status post with a malformed report is refused as a whole. */
    json_auto_t *ref = tu_api(&ctl, cred, "POST", "/v1/agent/status",
                              "{\"gpus\":[{\"address\":\"0000:01:00.0\","
                              "\"id\":\"10de:2684\",\"model\":\"a b\","
                              "\"functions\":[{\"address\":\"0000:01:00.0\"}],"
                              "\"usable\":true}]}", &st);
    assert_int_equal(st, 400);
    assert_string_equal(json_str(ref, "field"), "gpus");
    /* A later report without a GPU marks it absent, keeping its offer. */
    json_auto_t *ok = tu_api(&ctl, cred, "POST", "/v1/agent/status",
                             "{\"iommu\":true,\"gpus\":[" GC_GPU(
                                 "0000:01:00.0", "0000:01:00.1", "0", "true",
                                 "") "]}", &st);
    assert_int_equal(st, 200);
    json_auto_t *after = tu_api(&ctl, ctl.admin_key, "GET",
                                "/v1/gpus?node=gc-rig", NULL, &st);
    json_t *gone = tu_find(json_object_get(after, "gpus"), "address",
                           "0000:81:00.0");
    assert_false(json_is_true(json_object_get(gone, "present")));
    tu_ctl_destroy(&ctl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gpus_are_stored_offered_and_withdrawn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
