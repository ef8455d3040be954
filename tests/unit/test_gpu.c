/* GPU inventory on fake sysfs trees: a card with its audio function in one
 * group, a group shared with a foreign device, a rig of 8 GPUs on two NUMA
 * nodes, a host without IOMMU, and a card its host driver is using; the
 * pci.ids names without libpci's database held between inventories. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentmsg.h"
#include "common/fs.h"
#include "nodeagent/gpu.h"
#include "tests/testutil.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>

static char *root;

static int tree_setup(void **state)
{
    static int n;
    tu_dir_setup(state);
    root = xasprintf("%s/t%d", tu_dir, n++);
    return 0;
}

static int tree_teardown(void **state)
{
    free(root);
    root = NULL;
    return tu_dir_teardown(state);
}

static void one_card(int group)
{
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:00:01.0", 0x060400, 0x8086,
                                           0x1901, group, 0, "0-7", "pcieport" });
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:01:00.0", 0x030000, 0x10de,
                                           0x2684, group, 0, "0-7", NULL });
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:01:00.1", 0x040300, 0x10de,
                                           0x22ba, group, 0, "0-7",
                                           "snd_hda_intel" });
}

static void card_and_audio_in_one_group_are_usable(void **state)
{
    one_card(12);
    struct gpu_inventory inv;
    assert_int_equal(gpu_inventory_collect(root, &inv), 0);
    assert_true(inv.iommu);
    assert_int_equal(inv.n, 1);
    const struct gpu *g = gpu_inventory_find(&inv, "0000:01:00.0");
    assert_non_null(g);
    assert_null(g->reason);
    assert_true(g->isolatable);
    assert_int_equal(g->vendor, 0x10de);
    assert_int_equal(g->device, 0x2684);
    assert_int_equal(g->subsys_device, 0x1234);
    /* Names from pci.ids, not from a table of ours. */
    assert_string_equal(g->vendor_name, "NVIDIA Corporation");
    assert_string_equal(g->device_name, "AD102 [GeForce RTX 4090]");
    assert_string_equal(g->model, "GeForceRTX4090");
    assert_int_equal(g->iommu_group, 12);
    assert_int_equal(g->n_group, 3); /* bridge, GPU, audio */
    assert_int_equal(g->n_functions, 2);
    assert_string_equal(g->functions[0].addr, "0000:01:00.0");
    assert_string_equal(g->functions[1].addr, "0000:01:00.1");
    assert_int_equal(g->functions[1].class_code, 0x040300);
    assert_string_equal(g->functions[1].driver, "snd_hda_intel");
    assert_string_equal(g->driver, "");
    assert_int_equal(g->numa_node, 0);
    assert_string_equal(g->cpulist, "0-7");

    json_auto_t *j = gpu_inventory_to_json(&inv);
    json_t *o = json_array_get(j, 0);
    assert_true(json_is_true(json_object_get(o, "usable")));
    assert_string_equal(json_string_value(json_object_get(o, "model")),
                        "GeForceRTX4090");
    assert_int_equal(json_array_size(json_object_get(o, "functions")), 2);
    gpu_inventory_clear(&inv);
}

static void group_shared_with_a_foreign_device_is_refused(void **state)
{
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:02:00.0", 0x030000, 0x10de,
                                           0x2204, 13, 0, "0-7", NULL });
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:03:00.0", 0x0c0330, 0x1b21,
                                           0x1242, 13, 0, "0-7", "xhci_hcd" });
    struct gpu_inventory inv;
    assert_int_equal(gpu_inventory_collect(root, &inv), 0);
    assert_int_equal(inv.n, 1);
    const struct gpu *g = &inv.gpus[0];
    assert_false(g->isolatable);
    assert_non_null(g->reason);
    assert_non_null(strstr(g->reason, "0000:03:00.0"));
    assert_non_null(strstr(g->reason, "group 13"));
    assert_int_equal(g->n_functions, 1); /* the USB host is not the card's */
    json_auto_t *j = gpu_inventory_to_json(&inv);
    assert_true(json_is_false(json_object_get(json_array_get(j, 0), "usable")));
    gpu_inventory_clear(&inv);
}

static void mining_rig_of_eight_gpus_on_two_numa_nodes(void **state)
{
    for (int i = 0; i < 8; i++) {
        char a[16], b[16];
        snprintf(a, sizeof(a), "0000:%02x:00.0", 0x10 + i);
        snprintf(b, sizeof(b), "0000:%02x:00.1", 0x10 + i);
        const char *cpus = i < 4 ? "0-15" : "16-31";
        tu_fake_pci(root, &(struct tu_pci_fn){ a, 0x030000, 0x10de, 0x2204,
                                               20 + i, i / 4, cpus, "vfio-pci" });
        tu_fake_pci(root, &(struct tu_pci_fn){ b, 0x040300, 0x10de, 0x1aef,
                                               20 + i, i / 4, cpus, "vfio-pci" });
    }
    struct gpu_inventory inv;
    assert_int_equal(gpu_inventory_collect(root, &inv), 0);
    assert_int_equal(inv.n, 8);
    for (size_t i = 0; i < 8; i++) {
        const struct gpu *g = &inv.gpus[i];
        assert_null(g->reason);
        assert_int_equal(g->numa_node, (int)i / 4);
        assert_string_equal(g->cpulist, i < 4 ? "0-15" : "16-31");
        assert_int_equal(g->iommu_group, 20 + (int)i);
        assert_string_equal(g->model, "GeForceRTX3090");
        assert_string_equal(g->driver, "vfio-pci");
        assert_int_equal(g->n_functions, 2);
    }
    gpu_inventory_clear(&inv);
}

static void without_iommu_no_gpu_is_usable(void **state)
{
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:01:00.0", 0x030000, 0x1002,
                                           0x744c, -1, -1, NULL, NULL });
    struct gpu_inventory inv;
    assert_int_equal(gpu_inventory_collect(root, &inv), 0);
    assert_false(inv.iommu);
    assert_int_equal(inv.n, 1);
    assert_non_null(inv.gpus[0].reason);
    assert_non_null(strstr(inv.gpus[0].reason, "IOMMU is off"));
    assert_int_equal(inv.gpus[0].numa_node, -1);
    assert_string_equal(inv.gpus[0].vendor_name,
                        "Advanced Micro Devices, Inc. [AMD/ATI]");
    gpu_inventory_clear(&inv);
}

static void card_held_by_a_host_driver_in_use_is_refused(void **state)
{
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:01:00.0", 0x030000, 0x10de,
                                           0x2684, 1, 0, "0-3", "nvidia" });
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:02:00.0", 0x030200, 0x10de,
                                           0x20b0, 2, 0, "0-3", "nouveau" });
    tu_fake_module(root, "nvidia", 3);
    tu_fake_module(root, "nouveau", 0);
    struct gpu_inventory inv;
    assert_int_equal(gpu_inventory_collect(root, &inv), 0);
    assert_int_equal(inv.n, 2);
    const struct gpu *busy = gpu_inventory_find(&inv, "0000:01:00.0");
    const struct gpu *idle = gpu_inventory_find(&inv, "0000:02:00.0");
    assert_non_null(busy->reason);
    assert_non_null(strstr(busy->reason, "'nvidia'"));
    /* Bound but idle: libvirt's managed hostdev can detach it. */
    assert_null(idle->reason);
    assert_string_equal(idle->model, "A100SXM440GB");
    gpu_inventory_clear(&inv);
}

static void host_without_pci_sysfs_has_no_gpus(void **state)
{
    struct gpu_inventory inv;
    assert_int_equal(gpu_inventory_collect(root, &inv), 0);
    assert_int_equal(inv.n, 0);
    gpu_inventory_clear(&inv);
}

static void addresses_and_models_are_checked(void **state)
{
    assert_true(vmxml_pci_addr_ok("0000:01:00.0"));
    assert_false(vmxml_pci_addr_ok("0000:01:00.8"));
    assert_false(vmxml_pci_addr_ok("0000:0A:00.0"));
    assert_false(vmxml_pci_addr_ok("0000:01:00.0/../x"));
    assert_false(vmxml_pci_addr_ok("../0:01:00.0"));
    _cleanup_free_ char *m = gpu_model_of("", 0x1234, 0xabcd);
    assert_string_equal(m, "1234:abcd");
    _cleanup_free_ char *h = gpu_model_of("GH100[H100 SXM5 80GB]", 0x10de, 1);
    assert_string_equal(h, "H100SXM580GB");
}

/* A host as a hostile controller sees it: the card of one_card(), a second
 * card driving the host's console, a NIC and a disk controller. */
static void host_with_nic_and_disk(struct gpu_inventory *inv)
{
    one_card(12);
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:02:00.0", 0x030000, 0x1002,
                                           0x73bf, 13, 0, "0-7", "amdgpu" });
    _cleanup_free_ char *boot = xasprintf("%s/sys/bus/pci/devices/"
                                          "0000:02:00.0/boot_vga", root);
    assert_int_equal(file_write_atomic(boot, "1\n", 2, 0644), 0);
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:05:00.0", 0x020000, 0x8086,
                                           0x15b8, 14, 0, "0-7", "e1000e" });
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:00:17.0", 0x010601, 0x8086,
                                           0xa352, 15, 0, "0-7", "ahci" });
    assert_int_equal(gpu_inventory_collect(root, inv), 0);
}

/* The reason gpu_plan_checked gives for one request, which must be
 * refused (caller frees). */
static char *refusal(const struct gpu_inventory *inv,
                     const struct gpu_request *req, size_t n,
                     const struct gpu_held *held, size_t n_held)
{
    struct gpu_plan p = { 0 };
    char *why = NULL;
    assert_int_equal(gpu_plan_checked(inv, req, n, held, n_held, &p, &why),
                     -EPERM);
    assert_non_null(why);
    assert_null(p.gpus);
    return why;
}

static void must_say(char *why, const char *needle)
{
    if (!strstr(why, needle))
        fail_msg("'%s' not in the reason '%s'", needle, why);
    free(why);
}

static void only_the_nodes_own_usable_gpus_are_passed_through(void **state)
{
    struct gpu_inventory inv;
    host_with_nic_and_disk(&inv);
    const char *const card[] = { "0000:01:00.0", "0000:01:00.1" };
    const char *const gpu_only[] = { "0000:01:00.0" };
    struct gpu_request ok = { "0000:01:00.0", card, 2 };
    struct gpu_plan p;
    char *why = NULL;
    assert_int_equal(gpu_plan_checked(&inv, &ok, 1, NULL, 0, &p, &why), 0);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.gpus[0].n_functions, 2);
    assert_string_equal(p.gpus[0].functions[1], "0000:01:00.1");
    assert_string_equal(p.cpuset, "0-7");
    assert_string_equal(p.nodeset, "0");
    gpu_plan_clear(&p);
    /* The plan takes the card's functions from the inventory: a
     * controller naming fewer cannot split the group. */
    struct gpu_request fewer = { "0000:01:00.0", gpu_only, 1 };
    assert_int_equal(gpu_plan_checked(&inv, &fewer, 1, NULL, 0, &p, &why), 0);
    assert_int_equal(p.gpus[0].n_functions, 2);
    gpu_plan_clear(&p);

    /* The host's NIC and disk controller are no GPUs, whatever is sent. */
    const char *const nic[] = { "0000:05:00.0" };
    const char *const sata[] = { "0000:00:17.0" };
    must_say(refusal(&inv, &(struct gpu_request){ "0000:05:00.0", nic, 1 }, 1,
                     NULL, 0),
             "0000:05:00.0 is not a GPU of this node");
    must_say(refusal(&inv, &(struct gpu_request){ "0000:00:17.0", sata, 1 },
                     1, NULL, 0),
             "0000:00:17.0 is not a GPU of this node");
    /* Nor as a companion function of a real card. */
    const char *const smuggled[] = { "0000:01:00.0", "0000:05:00.0" };
    must_say(refusal(&inv, &(struct gpu_request){ "0000:01:00.0", smuggled,
                                                  2 }, 1, NULL, 0),
             "0000:05:00.0 is not a function of the card at 0000:01:00.0");
    const char *const nowhere[] = { "0000:09:00.0" };
    must_say(refusal(&inv, &(struct gpu_request){ "0000:09:00.0", nowhere,
                                                  1 }, 1, NULL, 0),
             "0000:09:00.0 is not a GPU of this node");
    const char *const odd[] = { "../../../x" };
    must_say(refusal(&inv, &(struct gpu_request){ "../../../x", odd, 1 }, 1,
                     NULL, 0),
             "not a PCI address");
    /* The host's boot display stays the host's. */
    const char *const boot[] = { "0000:02:00.0" };
    must_say(refusal(&inv, &(struct gpu_request){ "0000:02:00.0", boot, 1 },
                     1, NULL, 0),
             "boot display");
    /* A card another domain holds (even one function of it) is in use,
     * and one card is not given twice to the same VM. */
    const struct gpu_held held[] = { { "0000:01:00.1", "fog-other" } };
    must_say(refusal(&inv, &ok, 1, held, 1), "domain 'fog-other'");
    const struct gpu_request twice[] = { ok, fewer };
    must_say(refusal(&inv, twice, 2, NULL, 0), "assigned twice");
    gpu_inventory_clear(&inv);
}

static void without_iommu_nothing_is_passed_through(void **state)
{
    one_card(-1);
    struct gpu_inventory inv;
    assert_int_equal(gpu_inventory_collect(root, &inv), 0);
    const char *const card[] = { "0000:01:00.0" };
    must_say(refusal(&inv, &(struct gpu_request){ "0000:01:00.0", card, 1 },
                     1, NULL, 0),
             "IOMMU is off");
    gpu_inventory_clear(&inv);
}

/* A desired document whose VM holds gpus `g` (JSON text). */
static json_t *doc_with_gpus(const char *g)
{
    _cleanup_free_ char *text = xasprintf(
        "{\"revision\":1,\"node_id\":\"n1\",\"mesh\":null,\"vms\":[{"
        "\"id\":\"6f1c2a5e-8d1b-4c4e-9b7a-0c2d3e4f5a6b\",\"name\":\"g\","
        "\"vcpus\":1,\"memory_mib\":128,\"disk_gib\":1,\"power\":"
        "\"running\",\"gpus\":%s}],\"networks\":[],\"ports\":[],"
        "\"peers\":[]}", g);
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    return j;
}

static void the_contract_bounds_and_checks_a_vms_gpus(void **state)
{
    struct am_desired d;
    struct jerr je = { 0 };
    json_auto_t *ok = doc_with_gpus("[{\"address\":\"0000:01:00.0\","
                                    "\"functions\":[\"0000:01:00.0\","
                                    "\"0000:01:00.1\"],\"numa_node\":1,"
                                    "\"cpulist\":\"8-15\"}]");
    assert_int_equal(am_desired_decode(ok, &d, &je), 0);
    assert_int_equal(d.vms[0].n_gpus, 1);
    assert_string_equal(d.vms[0].gpus[0].functions[1], "0000:01:00.1");
    assert_int_equal(d.vms[0].gpus[0].numa_node, 1);
    json_auto_t *back = am_desired_encode(&d);
    json_t *vm_in = json_array_get(json_object_get(ok, "vms"), 0);
    json_t *vm_out = json_array_get(json_object_get(back, "vms"), 0);
    assert_true(json_equal(json_object_get(vm_out, AGENT_VM_GPUS),
                           json_object_get(vm_in, AGENT_VM_GPUS)));
    am_desired_clear(&d);
    static const char *const bad[] = {
        "[{\"address\":\"0000:01:00.0/../x\",\"functions\":[\"0000:01:00.0\"]}]",
        "[{\"address\":\"0000:01:00.0\",\"functions\":[\"/dev/sda\"]}]",
        "[{\"address\":\"0000:01:00.0\",\"functions\":[]}]",
        "[{\"address\":\"0000:01:00.0\",\"functions\":[\"0000:01:00.0\"],"
        "\"cpulist\":\"0-7;rm\"}]",
        "[{\"address\":\"0000:01:00.0\",\"functions\":[\"0000:01:00.0\"],"
        "\"numa_node\":-2}]",
        "[{\"address\":\"0000:01:00.0\",\"functions\":[\"0000:01:00.0\","
        "\"0000:01:00.1\",\"0000:01:00.2\",\"0000:01:00.3\",\"0000:01:00.4\","
        "\"0000:01:00.5\",\"0000:01:00.6\",\"0000:01:00.7\",\"0000:01:01.0\"]}]",
        "{}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        json_auto_t *j = doc_with_gpus(bad[i]);
        if (am_desired_decode(j, &d, &je) != -EINVAL)
            fail_msg("accepted gpus %s", bad[i]);
        assert_string_equal(je.field, "vms");
        assert_non_null(strstr(je.detail, "gpus"));
        jerr_clear(&je);
    }
}

#define T(f) cmocka_unit_test_setup_teardown(f, tree_setup, tree_teardown)

/* libpci's parsed pci.ids (about 2 MiB of heap) is not held after an
 * inventory, and a second one finds the names without it. First in the
 * list: no lookup may have loaded the database before. */
static void the_name_database_is_not_kept_after_an_inventory(void **state)
{
    one_card(3);
    struct gpu_inventory inv;
    size_t before = mallinfo2().uordblks;
    assert_int_equal(gpu_inventory_collect(root, &inv), 0);
    assert_int_equal(inv.n, 1);
    assert_string_equal(inv.gpus[0].vendor_name, "NVIDIA Corporation");
    size_t held = mallinfo2().uordblks;
    assert_true(held < before + 256 * 1024);
    gpu_inventory_clear(&inv);
    assert_int_equal(gpu_inventory_collect(root, &inv), 0);
    assert_string_equal(inv.gpus[0].vendor_name, "NVIDIA Corporation");
    assert_true(inv.gpus[0].device_name[0] != '\0');
    assert_true(mallinfo2().uordblks < before + 256 * 1024);
    gpu_inventory_clear(&inv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(the_name_database_is_not_kept_after_an_inventory),
        T(card_and_audio_in_one_group_are_usable),
        T(group_shared_with_a_foreign_device_is_refused),
        T(mining_rig_of_eight_gpus_on_two_numa_nodes),
        T(without_iommu_no_gpu_is_usable),
        T(card_held_by_a_host_driver_in_use_is_refused),
        T(host_without_pci_sysfs_has_no_gpus),
        T(addresses_and_models_are_checked),
        T(only_the_nodes_own_usable_gpus_are_passed_through),
        T(without_iommu_nothing_is_passed_through),
        T(the_contract_bounds_and_checks_a_vms_gpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
