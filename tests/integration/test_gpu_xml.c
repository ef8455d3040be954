/* GPU passthrough domain XML from fake sysfs trees: managed hostdevs for
 * every function of each card, q35 with a PCIe root port per card, vCPUs
 * and the emulator pinned to the GPUs' local CPUs, memory on their node.
 * Each document validates with virt-xml-validate (test_gpu_define.sh
 * defines them on a real libvirtd; starting needs the hardware) and the
 * hostdevs parse back, as a restarted agent reads them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "nodeagent/gpu.h"
#include "nodeagent/vmxml.h"
#include "tests/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <sys/wait.h>

static const char *const VM_ID = "6f1c2a5e-8d1b-4c4e-9b7a-0c2d3e4f5a6b";

/* A rig: cards 0000:1N:00 (GPU + audio) in groups 20+N, N < 4 on NUMA
 * node 0 (CPUs 0-15), the others on node 1 (CPUs 16-31); card 0000:30:00
 * shares group 40 with a USB host; nothing in groups without IOMMU. */
static void rig(const char *root, bool iommu)
{
    for (int i = 0; i < 8; i++) {
        char a[16], b[16];
        snprintf(a, sizeof(a), "0000:%02x:00.0", 0x10 + i);
        snprintf(b, sizeof(b), "0000:%02x:00.1", 0x10 + i);
        const char *cpus = i < 4 ? "0-15" : "16-31";
        int grp = iommu ? 20 + i : -1;
        tu_fake_pci(root, &(struct tu_pci_fn){ a, 0x030000, 0x10de, 0x2684,
                                               grp, i / 4, cpus, NULL });
        tu_fake_pci(root, &(struct tu_pci_fn){ b, 0x040300, 0x10de, 0x22ba,
                                               grp, i / 4, cpus,
                                               "snd_hda_intel" });
    }
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:30:00.0", 0x030000, 0x10de,
                                           0x2204, iommu ? 40 : -1, 0, "0-15",
                                           NULL });
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:31:00.0", 0x0c0330, 0x1b21,
                                           0x1242, iommu ? 40 : -1, 0, "0-15",
                                           "xhci_hcd" });
}

static char *gpu_xml(const struct gpu_plan *p, bool extras)
{
    struct vmxml_meta m = { .name = "gpu-vm", .power_running = true };
    snprintf(m.vm_id, sizeof(m.vm_id), "%s", VM_ID);
    struct vmxml_gpu gpus[16];
    for (size_t i = 0; i < p->n; i++) {
        gpus[i] = p->gpus[i];
        gpus[i].rom_file = extras ? "/var/lib/fog/rom/card.rom" : NULL;
    }
    struct vmxml_nic nic = { "52:54:00:12:34:56", "fogbr7", 1370, NULL };
    struct vmxml_spec s = { .meta = &m, .vcpus = 4, .memory_mib = 1024,
                            .kvm = true,
                            .disk_path = "/var/lib/fog/disks/x.qcow2",
                            .console_log = "/var/lib/fog/console/x.log",
                            .nics = &nic, .n_nics = 1, .gpus = gpus,
                            .n_gpus = p->n, .cpuset = p->cpuset,
                            .nodeset = p->nodeset, .hugepages = extras,
                            .hide_kvm = extras };
    char *xml = NULL;
    assert_int_equal(vmxml_build(&s, &xml), 0);
    return xml;
}

static void must_contain(const char *xml, const char *needle)
{
    if (!strstr(xml, needle))
        fail_msg("'%s' not in:\n%s", needle, xml);
}

/* virt-xml-validate against libvirt's domain schema. */
static void validates(const char *xml)
{
    _cleanup_free_ char *path = xasprintf("%s/domain.xml", tu_dir);
    assert_int_equal(file_write_atomic(path, xml, strlen(xml), 0644), 0);
    _cleanup_free_ char *prog = tu_which("virt-xml-validate");
    assert_non_null(prog); /* libvirt-clients, in tools/deps.sh */
    char *argv[] = { prog, path, "domain", NULL };
    int st;
    _cleanup_free_ char *out = tu_run(argv, &st);
    if (st != 0) {
        if (getenv("GP_KEEP"))
            file_write_atomic(getenv("GP_KEEP"), xml, strlen(xml), 0644);
        fail_msg("virt-xml-validate: %s\n%s", out ? out : "", xml);
    }
}

/* With FOG_GPU_XML_DIR set, keep the document as DIR/NAME.xml for
 * tests/e2e/test_gpu_define.sh, which defines it on a real libvirtd. */
static char *defined(const char *xml, const char *name)
{
    const char *dir = getenv("FOG_GPU_XML_DIR");
    if (dir) {
        _cleanup_free_ char *p = xasprintf("%s/%s.xml", dir, name);
        assert_int_equal(file_write_atomic(p, xml, strlen(xml), 0644), 0);
    }
    return xstrdup(xml);
}

static void card_with_audio_passes_both_functions_pinned_to_its_node(void **state)
{
    _cleanup_free_ char *root = xasprintf("%s/sys1", tu_dir);
    rig(root, true);
    struct gpu_inventory inv;
    assert_int_equal(gpu_inventory_collect(root, &inv), 0);
    const char *addrs[] = { "0000:15:00.0" };
    struct gpu_plan p;
    assert_int_equal(gpu_plan_build(&inv, addrs, 1, &p), 0);
    assert_string_equal(p.cpuset, "16-31");
    assert_string_equal(p.nodeset, "1");
    _cleanup_free_ char *xml = gpu_xml(&p, false);
    must_contain(xml, "machine=\"q35\"");
    must_contain(xml, "<vcpupin vcpu=\"3\" cpuset=\"16-31\"/>");
    must_contain(xml, "<emulatorpin cpuset=\"16-31\"/>");
    must_contain(xml, "<memory mode=\"strict\" nodeset=\"1\"/>");
    must_contain(xml, "model=\"pcie-root-port\"");
    must_contain(xml, "bus=\"0x15\" slot=\"0x00\" function=\"0x1\"");
    validates(xml);
    _cleanup_free_ char *back = defined(xml, "card");
    char **hd = NULL;
    assert_int_equal(vmxml_hostdevs_parse(back, &hd), 0);
    assert_non_null(hd[0]);
    assert_string_equal(hd[0], "0000:15:00.0");
    assert_string_equal(hd[1], "0000:15:00.1");
    assert_null(hd[2]);
    vmxml_strv_free(hd);
    /* Managed: libvirt moves the functions to vfio-pci and back. */
    must_contain(back, "managed=\"yes\"");
    gpu_plan_clear(&p);
    gpu_inventory_clear(&inv);
}

static void two_cards_with_rom_hugepages_and_hidden_kvm_define(void **state)
{
    _cleanup_free_ char *root = xasprintf("%s/sys2", tu_dir);
    rig(root, true);
    struct gpu_inventory inv;
    assert_int_equal(gpu_inventory_collect(root, &inv), 0);
    const char *addrs[] = { "0000:10:00.0", "0000:11:00.0" };
    struct gpu_plan p;
    assert_int_equal(gpu_plan_build(&inv, addrs, 2, &p), 0);
    assert_string_equal(p.cpuset, "0-15");
    assert_string_equal(p.nodeset, "0");
    _cleanup_free_ char *xml = gpu_xml(&p, true);
    must_contain(xml, "<hidden state=\"on\"/>");
    must_contain(xml, "<hugepages/>");
    must_contain(xml, "<rom file=\"/var/lib/fog/rom/card.rom\"/>");
    validates(xml);
    _cleanup_free_ char *back = defined(xml, "two-cards");
    char **hd = NULL;
    assert_int_equal(vmxml_hostdevs_parse(back, &hd), 0);
    size_t n = 0;
    while (hd[n])
        n++;
    assert_int_equal(n, 4);
    vmxml_strv_free(hd);
    gpu_plan_clear(&p);
    gpu_inventory_clear(&inv);
}

static void cards_on_two_nodes_pin_to_both(void **state)
{
    _cleanup_free_ char *root = xasprintf("%s/sys3", tu_dir);
    rig(root, true);
    struct gpu_inventory inv;
    assert_int_equal(gpu_inventory_collect(root, &inv), 0);
    const char *addrs[] = { "0000:13:00.0", "0000:14:00.0" };
    struct gpu_plan p;
    assert_int_equal(gpu_plan_build(&inv, addrs, 2, &p), 0);
    assert_string_equal(p.cpuset, "0-15,16-31");
    assert_string_equal(p.nodeset, "0,1");
    _cleanup_free_ char *xml = gpu_xml(&p, false);
    validates(xml);
    free(defined(xml, "two-nodes"));
    gpu_plan_clear(&p);
    gpu_inventory_clear(&inv);
}

static void unusable_or_unknown_gpus_are_not_planned(void **state)
{
    _cleanup_free_ char *root = xasprintf("%s/sys4", tu_dir);
    _cleanup_free_ char *bare = xasprintf("%s/sys5", tu_dir);
    rig(root, true);
    rig(bare, false);
    struct gpu_inventory inv, noiommu;
    assert_int_equal(gpu_inventory_collect(root, &inv), 0);
    assert_int_equal(gpu_inventory_collect(bare, &noiommu), 0);
    struct gpu_plan p;
    const char *shared[] = { "0000:30:00.0" }, *nope[] = { "0000:99:00.0" },
               *ok[] = { "0000:10:00.0" };
    assert_int_equal(gpu_plan_build(&inv, shared, 1, &p), -EBUSY);
    assert_int_equal(gpu_plan_build(&inv, nope, 1, &p), -ENODEV);
    assert_int_equal(gpu_plan_build(&noiommu, ok, 1, &p), -EBUSY);
    gpu_inventory_clear(&inv);
    gpu_inventory_clear(&noiommu);
}

static void hostile_addresses_and_cpusets_are_refused(void **state)
{
    struct vmxml_meta m = { .name = "x" };
    snprintf(m.vm_id, sizeof(m.vm_id), "%s", VM_ID);
    const char *bad[] = { "0000:01:00.0'/><x a='" };
    struct vmxml_gpu g = { bad, 1, NULL };
    struct vmxml_spec s = { .meta = &m, .vcpus = 1, .memory_mib = 64,
                            .disk_path = "/d/x.qcow2",
                            .console_log = "/d/x.log", .gpus = &g,
                            .n_gpus = 1 };
    char *xml = NULL;
    assert_int_equal(vmxml_build(&s, &xml), -EINVAL);
    const char *good[] = { "0000:01:00.0" };
    g.functions = good;
    s.cpuset = "0-3\"/>";
    assert_int_equal(vmxml_build(&s, &xml), -EINVAL);
    s.cpuset = "0-3";
    s.nodeset = "0;1";
    assert_int_equal(vmxml_build(&s, &xml), -EINVAL);
    s.nodeset = "0";
    assert_int_equal(vmxml_build(&s, &xml), 0);
    free(xml);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(card_with_audio_passes_both_functions_pinned_to_its_node),
        cmocka_unit_test(two_cards_with_rom_hugepages_and_hidden_kvm_define),
        cmocka_unit_test(cards_on_two_nodes_pin_to_both),
        cmocka_unit_test(unusable_or_unknown_gpus_are_not_planned),
        cmocka_unit_test(hostile_addresses_and_cpusets_are_refused),
    };
    return cmocka_run_group_tests(tests, tu_dir_setup, tu_dir_teardown);
}
