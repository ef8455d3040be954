/* GPU passthrough by the agent's reconciler on libvirt's test driver over
 * a fake sysfs tree: a VM assigned a card is defined with a managed
 * hostdev for every function of it, a VM the controller assigned the
 * host's NIC (or a card another domain holds) fails with the reason in
 * its status and no domain, and an agent started afresh reads what the
 * domains hold from their XML. The test driver defines such domains but
 * cannot pass anything through: starting them needs the hardware. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/jsonutil.h"
#include "nodeagent/reconcile.h"
#include "tests/testutil.h"

#include <errno.h>
#include <libvirt/libvirt.h>
#include <stdio.h>

static const char *const VM_A = "6f1c2a5e-8d1b-4c4e-9b7a-0c2d3e4f5a6b";
static const char *const VM_NIC = "7a2d3b6f-9e2c-4d5f-8c8b-1d3e4f5a6b7c";
static const char *const VM_B = "8b3e4c7a-af3d-4e6a-9d9c-2e4f5a6b7c8d";

static char *root, *data_dir, *image_dir;

/* One card (GPU + audio) in group 12 behind a bridge, and the host's NIC
 * alone in group 14. */
static void host_tree(void)
{
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:00:01.0", 0x060400, 0x8086,
                                           0x1901, 12, 0, "0-7", "pcieport" });
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:01:00.0", 0x030000, 0x10de,
                                           0x2684, 12, 0, "0-7", NULL });
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:01:00.1", 0x040300, 0x10de,
                                           0x22ba, 12, 0, "0-7",
                                           "snd_hda_intel" });
    tu_fake_pci(root, &(struct tu_pci_fn){ "0000:05:00.0", 0x020000, 0x8086,
                                           0x15b8, 14, 0, "0-7", "e1000e" });
}

/* The desired entry of VM id holding the card at addr (functions fns, a
 * JSON array text). */
static json_t *vm_entry(const char *id, const char *name, const char *addr,
                        const char *fns)
{
    _cleanup_free_ char *text = xasprintf(
        "{\"id\":\"%s\",\"name\":\"%s\",\"vcpus\":1,\"memory_mib\":128,"
        "\"disk_gib\":1,\"image\":\"tiny\",\"power\":\"stopped\","
        "\"place_gen\":1,\"nics\":[],\"gpus\":[{\"address\":\"%s\","
        "\"functions\":%s,\"numa_node\":0,\"cpulist\":\"0-7\"}]}",
        id, name, addr, fns);
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    return j;
}

/* One reconcile pass of an agent with context c over document doc. */
static void pass(struct reconcile_ctx *c, const json_t *doc)
{
    struct virt_dom *doms = NULL;
    size_t n = 0;
    assert_int_equal(virt_list(c->virt, &doms, &n), 0);
    struct reconcile_plan plan;
    reconcile_plan(doc, doms, n, false, 0, &plan);
    reconcile_execute(c, &plan, doms, n, 1, 0);
    reconcile_plan_free(&plan);
    virt_doms_free(doms, n);
}

static void agent_ctx(struct reconcile_ctx *c)
{
    *c = (struct reconcile_ctx){ .data_dir = data_dir, .image_dir = image_dir,
                                 .qemu_img = "qemu-img", .arch = "x86_64",
                                 .root = root, .kvm = false,
                                 .allow_tcg = true,
                                 .shutdown_timeout_ms = 1000 };
    assert_int_equal(virt_open("test:///default", NULL, NULL, &c->virt), 0);
}

static json_t *doc_of(json_t *vm)
{
    json_t *d = json_pack("{s:I, s:o}", "revision", (json_int_t)1, "vms",
                          json_array());
    json_array_append_new(json_object_get(d, "vms"), vm);
    return d;
}

/* The PCI hostdevs of domain fog-<id> as libvirt has it, or NULL when
 * there is no such domain. */
static char **hostdevs_of(virConnectPtr conn, const char *id)
{
    _cleanup_free_ char *name = xasprintf("fog-%s", id);
    virDomainPtr d = virDomainLookupByName(conn, name);
    if (!d)
        return NULL;
    char *xml = virDomainGetXMLDesc(d, 0);
    virDomainFree(d);
    assert_non_null(xml);
    char **hd = NULL;
    assert_int_equal(vmxml_hostdevs_parse(xml, &hd), 0);
    if (!strstr(xml, "managed=\"yes\"") && !strstr(xml, "managed='yes'"))
        fail_msg("hostdevs not managed:\n%s", xml);
    free(xml);
    return hd;
}

static void gpus_pass_through_checked_and_are_recovered_after_restart(
    void **state)
{
    tu_dir_setup(state);
    root = xasprintf("%s/host", tu_dir);
    data_dir = xasprintf("%s/data", tu_dir);
    image_dir = xasprintf("%s/images", tu_dir);
    host_tree();
    assert_int_equal(mkdir_p(image_dir, 0755), 0);
    _cleanup_free_ char *img = xasprintf("%s/tiny.qcow2", image_dir);
    _cleanup_free_ char *qemu_img = tu_which("qemu-img");
    if (!qemu_img)
        skip();
    char *argv[] = { qemu_img, "create", "-q", "-f", "qcow2", img, "64M",
                     NULL };
    int st;
    free(tu_run(argv, &st));
    assert_int_equal(st, 0);
    /* Held open for the whole test: the test driver's default state lives
     * as long as a connection to it, so the "restarted agent" below meets
     * the domains the first one made. */
    virConnectPtr conn = virConnectOpen("test:///default");
    assert_non_null(conn);

    struct reconcile_ctx c;
    agent_ctx(&c);
    /* A: the card, both functions. The controller names only the GPU:
     * the agent still passes the whole card. */
    json_auto_t *doc = doc_of(vm_entry(VM_A, "a", "0000:01:00.0",
                                       "[\"0000:01:00.0\"]"));
    pass(&c, doc);
    if (reconcile_vm_error(&c, VM_A))
        fail_msg("vm a: %s", reconcile_vm_error(&c, VM_A));
    char **hd = hostdevs_of(conn, VM_A);
    assert_non_null(hd);
    assert_non_null(hd[0]);
    assert_string_equal(hd[0], "0000:01:00.0");
    assert_non_null(hd[1]);
    assert_string_equal(hd[1], "0000:01:00.1");
    assert_null(hd[2]);
    vmxml_strv_free(hd);

    /* A hostile controller assigns the host's NIC: refused, no domain,
     * the reason in the VM's status. */
    json_array_append_new(json_object_get(doc, "vms"),
                          vm_entry(VM_NIC, "nic", "0000:05:00.0",
                                   "[\"0000:05:00.0\"]"));
    pass(&c, doc);
    const char *why = reconcile_vm_error(&c, VM_NIC);
    assert_non_null(why);
    if (!strstr(why, "0000:05:00.0 is not a GPU of this node"))
        fail_msg("reason: %s", why);
    assert_null(hostdevs_of(conn, VM_NIC));
    const char *state_s, *reason;
    reconcile_status(json_array_get(json_object_get(doc, "vms"), 1), NULL, why,
                     &state_s, &reason);
    assert_string_equal(state_s, "error");
    /* Smuggled in as a function of the real card: refused too. */
    json_auto_t *smuggle = doc_of(vm_entry(VM_NIC, "nic", "0000:01:00.0",
                                           "[\"0000:01:00.0\","
                                           "\"0000:05:00.0\"]"));
    json_array_insert(json_object_get(smuggle, "vms"), 0,
                      json_array_get(json_object_get(doc, "vms"), 0));
    c.retry_ms = 0;
    pass(&c, smuggle);
    why = reconcile_vm_error(&c, VM_NIC);
    assert_non_null(why);
    if (!strstr(why, "not a function of the card"))
        fail_msg("reason: %s", why);
    assert_null(hostdevs_of(conn, VM_NIC));
    virt_free(c.virt);
    reconcile_ctx_free(&c);

    /* The agent starts afresh, remembering nothing: what A holds is read
     * from its domain, so B asking for the same card is refused... */
    agent_ctx(&c);
    json_auto_t *doc2 = doc_of(vm_entry(VM_B, "b", "0000:01:00.0",
                                        "[\"0000:01:00.0\",\"0000:01:00.1\"]"));
    json_array_insert(json_object_get(doc2, "vms"), 0,
                      json_array_get(json_object_get(doc, "vms"), 0));
    pass(&c, doc2);
    why = reconcile_vm_error(&c, VM_B);
    assert_non_null(why);
    _cleanup_free_ char *holder = xasprintf("domain 'fog-%s'", VM_A);
    if (!strstr(why, holder))
        fail_msg("reason: %s", why);
    assert_null(hostdevs_of(conn, VM_B));
    /* ... while A keeps its card. */
    assert_null(reconcile_vm_error(&c, VM_A));
    hd = hostdevs_of(conn, VM_A);
    assert_non_null(hd);
    assert_string_equal(hd[0], "0000:01:00.0");
    vmxml_strv_free(hd);

    /* A deleted: its claim goes with its definition, and B gets the card
     * on the next pass. */
    json_object_set_new(json_array_get(json_object_get(doc2, "vms"), 0),
                        "deleted", json_true());
    pass(&c, doc2);
    pass(&c, doc2);
    assert_null(hostdevs_of(conn, VM_A));
    if (reconcile_vm_error(&c, VM_B))
        fail_msg("vm b: %s", reconcile_vm_error(&c, VM_B));
    hd = hostdevs_of(conn, VM_B);
    assert_non_null(hd);
    assert_string_equal(hd[1], "0000:01:00.1");
    vmxml_strv_free(hd);
    virt_free(c.virt);
    reconcile_ctx_free(&c);
    virConnectClose(conn);
    free(root);
    free(data_dir);
    free(image_dir);
    tu_dir_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            gpus_pass_through_checked_and_are_recovered_after_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
