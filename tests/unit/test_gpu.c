/* GPU inventory on fake sysfs trees: a card with its audio function in one
 * group, a group shared with a foreign device, a rig of 8 GPUs on two NUMA
 * nodes, a host without IOMMU, and a card its host driver is using. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "nodeagent/gpu.h"
#include "tests/testutil.h"

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

#define T(f) cmocka_unit_test_setup_teardown(f, tree_setup, tree_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(card_and_audio_in_one_group_are_usable),
        T(group_shared_with_a_foreign_device_is_refused),
        T(mining_rig_of_eight_gpus_on_two_numa_nodes),
        T(without_iommu_no_gpu_is_usable),
        T(card_held_by_a_host_driver_in_use_is_refused),
        T(host_without_pci_sysfs_has_no_gpus),
        T(addresses_and_models_are_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
