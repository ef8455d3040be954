/* The agent contract, agent side: the controller's desired document as
 * the node agent reads it: the network state (netfabric/state.c) and the
 * firewall built from it (netfabric/nftplan.c), each VM entry's check and
 * the reconcile planner over domains in every state (nodeagent/reconcile.c),
 * the per-VM status, and the meter's retain. */
#include "tests/fuzz/fuzz.h"
#include "common/buf.h"
#include "netfabric/nftplan.h"
#include "netfabric/state.h"
#include "nodeagent/meter.h"
#include "nodeagent/reconcile.h"

#include <stdio.h>

static void network(const json_t *doc)
{
    struct nf_state st;
    char *err = NULL;
    if (netfabric_state_from_json(doc, NULL, &st, &err) == 0) {
        struct buf out = BUF_INIT;
        (void)nftplan_build(&st, &out);
        buf_free(&out);
        nf_state_clear(&st);
    } else if (!err) {
        abort(); /* a refusal names the member */
    }
    free(err);
}

/* Domains for the document's VMs, in states picked by `seed`: the planner
 * must cope with any observation, not only the ones it caused. */
static size_t domains(const json_t *vms, uint8_t seed, struct virt_dom **ret)
{
    size_t n = json_array_size(vms), k = 0, i;
    struct virt_dom *d = xcalloc(n + 1, sizeof(*d));
    json_t *vm;
    json_array_foreach(vms, i, vm) {
        const char *id = json_str(vm, "id");
        unsigned s = seed + (unsigned)i;
        if (!id || strlen(id) >= sizeof(d[k].meta.vm_id) || s % 5 == 4)
            continue;
        struct virt_dom *x = &d[k++];
        snprintf(x->meta.vm_id, sizeof(x->meta.vm_id), "%s", id);
        x->state = (enum virt_state)(s % VIRT_STATE_MAX);
        x->stopped_by_guest = s & 8;
        x->meta.power_running = s & 16;
        x->meta.reboot_gen = json_int(vm, "reboot_gen", 0) - (s & 1);
        x->meta.start_gen = json_int(vm, "start_gen", 0) - ((s >> 1) & 1);
        x->meta.disk_gib = json_int(vm, "disk_gib", 1) - ((s >> 2) & 1);
        x->vcpus = json_int(vm, "vcpus", 1);
        x->memory_mib = json_int(vm, "memory_mib", 64);
        x->autostart = s & 32;
        x->shutdown_deadline_ms = (s & 64) ? 1000 : 0;
        if (s & 128)
            reconcile_spec_hash(vm, s & 1, x->meta.spec);
    }
    *ret = d;
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fuzz_quiet();
    json_auto_t *doc = json_loadb((const char *)data + 1, size - 1, 0, NULL);
    if (!doc)
        return 0;
    network(doc);

    json_t *vms = json_object_get(doc, "vms");
    size_t i;
    json_t *vm;
    json_array_foreach(vms, i, vm) {
        char *why = NULL, hash[65];
        if (reconcile_vm_check(vm, &why) < 0 && !why)
            abort();
        free(why);
        reconcile_spec_hash(vm, true, hash);
    }
    struct virt_dom *doms;
    size_t n = domains(vms, data[0], &doms);
    struct reconcile_plan plan;
    reconcile_plan(doc, doms, n, data[0] & 1, 2000, &plan);
    for (size_t k = 0; k < plan.n; k++)
        if (plan.actions[k].op >= RC_OP_MAX ||
            (plan.actions[k].op == RC_REJECT) != !!plan.actions[k].reason)
            abort(); /* a rejection and only it carries a reason */
    reconcile_plan_free(&plan);
    json_array_foreach(vms, i, vm) {
        const char *st, *why;
        const char *id = json_str(vm, "id");
        const struct virt_dom *d = id ? virt_doms_find(doms, n, id) : NULL;
        reconcile_status(vm, d, (i & 1) ? "boom" : NULL, &st, &why);
        if (!st)
            abort();
        (void)reconcile_down_by_itself(vm, d);
    }
    free(doms);

    struct meter *m = meter_new(NULL, 0);
    meter_observe(m, "00000000-0000-4000-8000-000000000001", true, 10);
    meter_retain(m, vms);
    meter_free(m);
    return 0;
}
