/* GPUs on the controller through its API: a node's report is stored per
 * GPU, the provider offers and withdraws them (an unusable one is refused
 * with its reason), tenants cannot list them, a malformed report is
 * refused, and fogctl gpu-list shows them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentmsg.h"
#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <pthread.h>
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

struct ask {
    const char *key, *body;
    json_t *vm;
    long st;
};

static void *ask_main(void *p)
{
    struct ask *q = p;
    q->vm = tu_api(&ctl, q->key, "POST", "/v1/vms", q->body, &q->st);
    return NULL;
}

static const char *vm_node(const char *key, const char *id)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s", id);
    json_t *vm = tu_api(&ctl, key, "GET", path, NULL, NULL);
    static char node[64];
    const char *n = json_str(vm, "node_id");
    snprintf(node, sizeof(node), "%s", n ? n : "");
    json_decref(vm);
    return node;
}

/* GET /v1/offers?QUERY as key: the offers (caller decrefs). */
static json_t *offers_of(const char *key, const char *query)
{
    _cleanup_free_ char *p = xasprintf("/v1/offers%s", query);
    long st;
    json_t *o = tu_api(&ctl, key, "GET", p, NULL, &st);
    assert_int_equal(st, 200);
    json_t *list = json_incref(json_object_get(o, "offers"));
    json_decref(o);
    assert_true(json_is_array(list));
    return list;
}

static void two_tenants_race_for_the_last_gpu(void **state)
{
    (void)state;
    tu_ctl_start(&ctl, NULL);
    _cleanup_free_ char *cred = tu_node_register(&ctl, "gc-one", "\"gpus\":["
        GC_GPU("0000:01:00.0", "0000:01:00.1", "0", "true", "") "]");
    json_decref(tu_api(&ctl, cred, "GET", "/v1/agent/desired", NULL, NULL));
    free(tu_api_field(&ctl, ctl.admin_key, "POST",
                      "/v1/nodes/gc-one/gpus/offer", "{\"all\":true}", 200,
                      NULL));
    _cleanup_free_ char *k1 = tu_account(&ctl, "gc-t1", "tenant");
    _cleanup_free_ char *k2 = tu_account(&ctl, "gc-t2", "tenant");
    /* The offer counts the free GPU per model, and filters on it. */
    json_auto_t *offers = offers_of(k1, "?gpu=GeForceRTX4090");
    assert_int_equal(json_array_size(offers), 1);
    assert_int_equal(json_int(json_object_get(json_array_get(offers, 0),
                                              "gpus_free"),
                              "GeForceRTX4090", 0), 1);
    json_auto_t *two = offers_of(k1, "?gpu=GeForceRTX4090:2");
    assert_int_equal(json_array_size(two), 0);
    long ost;
    json_auto_t *obad = tu_api(&ctl, k1, "GET", "/v1/offers?gpu=a/b", NULL,
                               &ost);
    assert_int_equal(ost, 400);
    assert_string_equal(json_str(obad, "field"), "gpu");
    struct ask q[2] = {
        { k1, "{\"name\":\"g1\",\"vcpus\":1,\"memory_mib\":128,"
              "\"disk_gib\":1,\"image\":\"tiny\",\"allow_tcg\":true,"
              "\"gpu\":\"GeForceRTX4090:1\"}", NULL, 0 },
        { k2, "{\"name\":\"g2\",\"vcpus\":1,\"memory_mib\":128,"
              "\"disk_gib\":1,\"image\":\"tiny\",\"allow_tcg\":true,"
              "\"gpu\":\"GeForceRTX4090\"}", NULL, 0 },
    };
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, ask_main, &q[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(q[0].st, 201);
    assert_int_equal(q[1].st, 201);
    int placed = 0, winner = -1;
    for (int i = 0; i < 2; i++)
        if (*vm_node(q[i].key, json_str(q[i].vm, "id"))) {
            placed++;
            winner = i;
        }
    assert_int_equal(placed, 1);
    /* The winner holds the GPU; the other waits, the gpu filter named. */
    json_auto_t *gl = tu_api(&ctl, ctl.admin_key, "GET", "/v1/gpus", NULL,
                             NULL);
    assert_string_equal(json_str(json_array_get(json_object_get(gl, "gpus"),
                                                0), "vm_id"),
                        json_str(q[winner].vm, "id"));
    /* Held: no longer free in the offer. */
    json_auto_t *after = offers_of(k1, "?gpu=GeForceRTX4090");
    assert_int_equal(json_array_size(after), 0);
    json_auto_t *all_offers = offers_of(k1, "");
    assert_int_equal(json_int(json_object_get(json_array_get(all_offers, 0),
                                              "gpus_free"),
                              "GeForceRTX4090", 0), 0);
    /* The winner's VM names what it asked for and what it holds. */
    _cleanup_free_ char *wp = xasprintf("/v1/vms/%s",
                                        json_str(q[winner].vm, "id"));
    json_auto_t *wv = tu_api(&ctl, q[winner].key, "GET", wp, NULL, NULL);
    assert_string_equal(json_str(wv, "gpu"), "GeForceRTX4090:1");
    json_t *held = json_array_get(json_object_get(wv, "gpus"), 0);
    assert_string_equal(json_str(held, "address"), "0000:01:00.0");
    assert_int_equal(json_array_size(json_object_get(held, "functions")), 2);
    int drc;
    _cleanup_free_ char *di = tu_fogctl(&ctl, q[winner].key, &drc, "dominfo",
                                        json_str(q[winner].vm, "id"), NULL);
    assert_int_equal(drc, 0);
    assert_non_null(strstr(di, "0000:01:00.0 (GeForceRTX4090)"));
    /* The node's desired document carries the card, every function of it
     * and where it sits, and reads back through the contract. */
    json_auto_t *doc = tu_api(&ctl, cred, "GET", "/v1/agent/desired", NULL,
                              NULL);
    json_t *dv = tu_find(json_object_get(doc, "vms"), "id",
                         json_str(q[winner].vm, "id"));
    assert_non_null(dv);
    json_t *dg = json_array_get(json_object_get(dv, AGENT_VM_GPUS), 0);
    assert_int_equal(json_array_size(json_object_get(dv, AGENT_VM_GPUS)), 1);
    assert_string_equal(json_str(dg, "address"), "0000:01:00.0");
    json_t *dfn = json_object_get(dg, "functions");
    assert_int_equal(json_array_size(dfn), 2);
    assert_string_equal(json_string_value(json_array_get(dfn, 1)),
                        "0000:01:00.1");
    assert_int_equal(json_int(dg, "numa_node", -2), 0);
    assert_string_equal(json_str(dg, "cpulist"), "0-7");
    struct am_desired dd;
    struct jerr dje = { 0 };
    assert_int_equal(am_desired_decode(doc, &dd, &dje), 0);
    assert_int_equal(dd.n_vms, 1);
    assert_int_equal(dd.vms[0].n_gpus, 1);
    assert_int_equal(dd.vms[0].gpus[0].n_functions, 2);
    json_auto_t *again = am_desired_encode(&dd);
    /* The VMs read back as sent (a network's VMs sent as AGENT_NET_VMS
     * are read into its names and MACs too: not the same text). */
    assert_true(json_equal(json_object_get(again, "vms"),
                           json_object_get(doc, "vms")));
    am_desired_clear(&dd);
    _cleanup_free_ char *lp = xasprintf("/v1/vms/%s",
                                        json_str(q[1 - winner].vm, "id"));
    json_auto_t *loser = tu_api(&ctl, q[1 - winner].key, "GET", lp, NULL, NULL);
    _cleanup_free_ char *lt = json_dumps(loser, 0);
    assert_non_null(strstr(lt, "gpu"));
    assert_int_equal(json_array_size(json_object_get(loser, "gpus")), 0);
    /* A bad request names the field. */
    long st;
    json_auto_t *bad = tu_api(&ctl, k1, "POST", "/v1/vms",
                              "{\"name\":\"g3\",\"vcpus\":1,\"memory_mib\":"
                              "128,\"disk_gib\":1,\"image\":\"tiny\","
                              "\"gpu\":\"<x>:99\"}", &st);
    assert_int_equal(st, 400);
    assert_string_equal(json_str(bad, "field"), "gpu");
    /* fogctl create --gpu: the last GPU is held, so a dry run finds no
     * node and says why; a malformed model is the hub's 400. */
    int rc;
    tu_run_with_stderr = true;
    _cleanup_free_ char *dry = tu_fogctl(&ctl, k1, &rc, "create", "g4",
                                         "--cpus", "1", "--memory", "128M",
                                         "--disk", "1G", "--image", "tiny",
                                         "--allow-tcg", "--gpu",
                                         "GeForceRTX4090:1", "--dry-run",
                                         NULL);
    if (rc != 1 || !strstr(dry, "gpu"))
        fail_msg("fogctl create --gpu --dry-run: exit %d, '%s'", rc, dry);
    _cleanup_free_ char *badc = tu_fogctl(&ctl, k1, &rc, "create", "g5",
                                          "--cpus", "1", "--memory", "128M",
                                          "--disk", "1G", "--image", "tiny",
                                          "--gpu", "<x>:99", NULL);
    tu_run_with_stderr = false;
    assert_int_equal(rc, 1);
    assert_non_null(strstr(badc, "gpu"));
    for (int i = 0; i < 2; i++)
        json_decref(q[i].vm);
    tu_ctl_destroy(&ctl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gpus_are_stored_offered_and_withdrawn),
        cmocka_unit_test(two_tenants_race_for_the_last_gpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
