/* Desired state vs libvirt. The planner is a pure function of the desired
 * document and the observed domains (with what the agent last did, kept in
 * their metadata); the executor performs the actions with libvirt and
 * qemu-img and remembers failures for the status report. */
#include "nodeagent/reconcile.h"

#include "api/agentmsg.h"
#include "common/netcheck.h"

#include "api/agentproto.h"
#include "api/desired_delta.h"
#include "common/buf.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "images/fetch.h"
#include "netfabric/state.h"
#include "nodeagent/disk.h"
#include "nodeagent/gpu.h"
#include "nodeagent/guestseed.h"
#include "nodeagent/restore.h"
#include "nodeagent/snapshot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

static const char *const op_names[RC_OP_MAX] = {
    [RC_REJECT] = "reject",         [RC_CREATE] = "create",
    [RC_REDEFINE] = "redefine",     [RC_GROW_DISK] = "grow-disk",
    [RC_AUTOSTART] = "autostart",   [RC_START] = "start",
    [RC_RESUME] = "resume",         [RC_SUSPEND] = "suspend",
    [RC_REBOOT] = "reboot",
    [RC_SHUTDOWN] = "shutdown",     [RC_DESTROY] = "destroy",
    [RC_MARK_STOPPED] = "mark-stopped", [RC_MARK_RUNNING] = "mark-running",
    [RC_DELETE] = "delete",
    [RC_PURGE] = "purge",
    [RC_SNAPSHOT_CREATE] = "snapshot-create",
    [RC_SNAPSHOT_DELETE] = "snapshot-delete",
    [RC_SNAPSHOT_REVERT] = "snapshot-revert",
};

/* Wall clock in ms (the executor's now_ms arguments are monotonic). */
static int64_t wall_ms(void)
{
    return now_ms();
}

json_t *reconcile_doc_read(const json_t *doc, const char *node_id,
                           char **ret_why)
{
    struct am_desired d;
    struct jerr je = { 0 };
    if (am_desired_decode(doc, &d, &je) < 0) {
        if (ret_why)
            *ret_why = xstrdup(je.detail);
        jerr_clear(&je);
        return NULL;
    }
    json_t *out = NULL;
    if (node_id && streq(d.node_id, node_id))
        out = am_desired_encode(&d);
    else if (ret_why)
        *ret_why = xasprintf("a document for node '%s', not this one",
                             d.node_id);
    am_desired_clear(&d);
    return out;
}

int reconcile_delta_read(const json_t *held, const json_t *delta,
                         const char *node_id, json_t **ret_doc,
                         char **ret_why)
{
    /* Shape and base checked as the merge checks them. */
    json_auto_t *merged = NULL;
    int e = desired_delta_apply(held, delta, &merged);
    if (e < 0)
        return e;
    /* A list past its bound is the whole reader's to refuse. */
    if (json_array_size(json_object_get(merged, "vms")) > AGENT_LIST_MAX) {
        json_t *w = reconcile_doc_read(merged, node_id, ret_why);
        if (!w)
            return -EBADMSG;
        *ret_doc = w;
        return 0;
    }
    /* The merged members with the delta's VMs alone: what is new. */
    json_auto_t *probe = json_copy(merged);
    json_t *vms = json_object_get(delta, "vms");
    json_object_set_new(probe, "vms", vms ? json_copy(vms) : json_array());
    json_auto_t *read = reconcile_doc_read(probe, node_id, ret_why);
    if (!read)
        return -EBADMSG;
    /* Those read, merged into the held document (read before). */
    json_auto_t *d = json_copy(read);
    json_object_set(d, DESIRED_DELTA_FROM,
                    json_object_get(delta, DESIRED_DELTA_FROM));
    json_t *removed = json_object_get(delta, DESIRED_DELTA_REMOVED);
    json_object_set_new(d, DESIRED_DELTA_REMOVED,
                        removed ? json_copy(removed) : json_array());
    /* A network's VMs were merged whole into `read`: they replace the
     * held list, not merge into it again. */
    json_t *items = json_object_get(read, AGENT_NET_VMS);
    json_object_del(d, AGENT_NET_VMS);
    int e2 = desired_delta_apply(held, d, ret_doc);
    if (e2 == 0 && items)
        json_object_set(*ret_doc, AGENT_NET_VMS, items);
    return e2;
}

bool reconcile_doc_whole(const json_t *doc, const char *node_id)
{
    json_t *j = reconcile_doc_read(doc, node_id, NULL);
    json_decref(j);
    return j != NULL;
}

const char *reconcile_op_name(enum reconcile_op op)
{
    return op < RC_OP_MAX ? op_names[op] : "?";
}

int reconcile_vm_check(const json_t *vm, char **ret_reason)
{
    static const char *const power[] = { "running", "stopped", NULL };
    static const struct jfield fields[] = {
        { "id", JF_UUID, true, 0, 0, NULL },
        { "name", JF_STRING, true, 1, 255, NULL },
        { "vcpus", JF_INT, true, 1, NODE_MAX_VCPUS, NULL },
        { "memory_mib", JF_INT, true, VM_MIN_MEMORY_MIB, NODE_MAX_MEMORY_MIB,
          NULL },
        { "disk_gib", JF_INT, true, 1, NODE_MAX_DISK_GIB, NULL },
        { "image", JF_NAME, true, 0, 0, NULL },
        { "power", JF_ENUM, true, 0, 0, power },
        { "stop_force", JF_BOOL, false, 0, 0, NULL },
        { "deleted", JF_BOOL, false, 0, 0, NULL },
        { AGENT_VM_PAUSED, JF_BOOL, false, 0, 0, NULL },
        { AGENT_VM_AUTOSTART, JF_BOOL, false, 0, 0, NULL },
        { "reboot_gen", JF_INT, false, 0, INT64_MAX, NULL },
        { "start_gen", JF_INT, false, 0, INT64_MAX, NULL },
        { "nics", JF_ARRAY, false, 0, 64, NULL },
        { AGENT_VM_SNAPSHOTS, JF_ARRAY, false, 0, VM_SNAPSHOTS_MAX, NULL },
        { AGENT_VM_REVERT, JF_OBJECT, false, 0, 0, NULL },
    };
    json_t *copy = json_object();
    const char *k;
    json_t *v;
    /* Fields this agent does not use yet (image_source, ssh_keys,
     * user_data, ...) are not its business to refuse. */
    json_object_foreach((json_t *)vm, k, v)
        for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
            if (streq(k, fields[i].name) && !json_is_null(v))
                json_object_set(copy, k, v);
    struct jerr je = { 0 };
    int r = json_is_object(vm) ?
                json_check(copy, fields, ARRAY_SIZE(fields), &je) : -EINVAL;
    json_decref(copy);
    if (r < 0) {
        *ret_reason = xasprintf("desired state unusable: %s",
                                je.detail ? je.detail : "not an object");
        jerr_clear(&je);
        return -EINVAL;
    }
    if (!vmxml_text_ok(json_str(vm, "name"))) {
        *ret_reason = xstrdup("desired state unusable: name has control "
                              "characters");
        return -EINVAL;
    }
    if (snapshot_check(vm, ret_reason) < 0)
        return -EINVAL;
    size_t i;
    json_t *nic;
    json_array_foreach(json_object_get(vm, "nics"), i, nic) {
        int64_t mtu = json_int(nic, "mtu", 0);
        if (!net_mac_ok(json_str(nic, "mac")) ||
            !net_ifname_ok(json_str(nic, "bridge")) || mtu < 0 ||
            (mtu > 0 && (mtu < 68 || mtu > 65535))) {
            *ret_reason = xasprintf("desired state unusable: nics[%zu] has a "
                                    "bad mac, bridge or mtu", i);
            return -EINVAL;
        }
    }
    return 0;
}

void reconcile_spec_hash(const json_t *vm, bool kvm, char out[65])
{
    struct buf b = BUF_INIT;
    /* v2: a seed disk, NIC tap names and the small-guest devices. */
    buf_printf(&b, "v2|%s|%" PRId64 "|%" PRId64 "|%d", json_str(vm, "name"),
               json_int(vm, "vcpus", 0), json_int(vm, "memory_mib", 0), kvm);
    size_t i;
    json_t *nic;
    json_array_foreach(json_object_get(vm, "nics"), i, nic)
        buf_printf(&b, "|%s,%s,%" PRId64, json_str(nic, "mac"),
                   json_str(nic, "bridge"), json_int(nic, "mtu", 0));
    /* Only VMs with GPUs hash them, so other definitions stay as made. */
    json_t *gpu, *fn;
    json_array_foreach(json_object_get(vm, AGENT_VM_GPUS), i, gpu) {
        size_t k;
        buf_printf(&b, "|gpu:%s", json_str(gpu, "address"));
        json_array_foreach(json_object_get(gpu, "functions"), k, fn)
            buf_printf(&b, ",%s", json_string_value(fn));
    }
    sha256_hex(b.data, b.len, out);
    buf_free(&b);
}

bool reconcile_want_autostart(const json_t *vm)
{
    return streq(json_str(vm, "power"), "running") &&
           json_bool(vm, AGENT_VM_AUTOSTART, true);
}

struct reconcile_action *reconcile__add(struct reconcile_plan *p,
                                        enum reconcile_op op, const char *id,
                                        const json_t *vm, char *reason)
{
    p->actions = xrealloc(p->actions, (p->n + 1) * sizeof(*p->actions));
    struct reconcile_action *a = &p->actions[p->n++];
    *a = (struct reconcile_action){ .op = op, .vm = vm, .reason = reason };
    snprintf(a->vm_id, sizeof(a->vm_id), "%s", id);
    return a;
}

static void add(struct reconcile_plan *p, enum reconcile_op op,
                const char *id, const json_t *vm, char *reason)
{
    reconcile__add(p, op, id, vm, reason);
}

static void plan_vm(struct reconcile_plan *p, const json_t *vm,
                    const struct virt_dom *d, bool kvm, int64_t now_ms)
{
    const char *id = json_str(vm, "id");
    bool want_run = streq(json_str(vm, "power"), "running");
    bool want_pause = want_run && json_bool(vm, AGENT_VM_PAUSED, false);
    int64_t gen = json_int(vm, "reboot_gen", 0);
    int64_t sgen = json_int(vm, "start_gen", 0);

    if (json_bool(vm, "deleted", false)) {
        add(p, d ? RC_DELETE : RC_PURGE, id, vm, NULL);
        return;
    }
    switch (reconcile_fence(vm, d)) {
    case RC_FENCE_DESTROY:
        /* The next pass makes this placement's domain afresh. */
        add(p, RC_DELETE, id, vm, NULL);
        return;
    case RC_FENCE_HOLD:
        return;
    default:
        break;
    }
    if (!d) {
        add(p, RC_CREATE, id, vm, NULL);
        if (want_run)
            add(p, RC_START, id, vm, NULL);
        if (want_pause)
            add(p, RC_SUSPEND, id, vm, NULL);
        return;
    }
    /* A revert changes the domain under the power actions: they wait for
     * the next pass, which sees it reverted. */
    if (snapshot_plan(p, vm, d))
        return;
    char spec[65];
    reconcile_spec_hash(vm, kvm, spec);
    if (!streq(spec, d->meta.spec))
        add(p, RC_REDEFINE, id, vm, NULL);
    if (json_int(vm, "disk_gib", 0) > d->meta.disk_gib)
        add(p, RC_GROW_DISK, id, vm, NULL);
    /* Never libvirt's autostart: at boot, libvirtd would start the domain
     * before this agent hears whether the hub placed the VM elsewhere
     * meanwhile (its node silent past evacuate-after), and it would run
     * twice. A host reboot brings back what is meant to run and allowed
     * to (the VM's autostart flag) through the start below, once the
     * document that still places it here has arrived. */
    if (d->autostart)
        add(p, RC_AUTOSTART, id, vm, NULL);

    bool up = d->state == VIRT_RUNNING || d->state == VIRT_PAUSED;
    if (want_run) {
        if (d->state == VIRT_PAUSED && !want_pause)
            add(p, RC_RESUME, id, vm, NULL);
        if (up) {
            if (gen > d->meta.reboot_gen)
                add(p, RC_REBOOT, id, vm, NULL);
            else if (!d->meta.power_running || sgen > d->meta.start_gen)
                /* So that a later poweroff from inside reads as such. */
                add(p, RC_MARK_RUNNING, id, vm, NULL);
            if (want_pause && d->state == VIRT_RUNNING)
                add(p, RC_SUSPEND, id, vm, NULL);
        } else if (!d->meta.power_running || gen > d->meta.reboot_gen ||
                   sgen > d->meta.start_gen ||
                   (d->lost_with_host && reconcile_want_autostart(vm))) {
            /* Started when asked to run after being stopped by us, or when
             * asked to start or reboot since it went down, or when its
             * host went down under it (a reboot) and its autostart flag is
             * on; a VM that stopped by itself while meant to run (guest
             * poweroff, crash) stays down and is reported until then. A
             * VM held paused comes back paused (after a host reboot,
             * say). */
            add(p, RC_START, id, vm, NULL);
            if (want_pause)
                add(p, RC_SUSPEND, id, vm, NULL);
        }
        return;
    }
    if (up) {
        if (json_bool(vm, "stop_force", false) ||
            (d->shutdown_deadline_ms > 0 && now_ms >= d->shutdown_deadline_ms))
            add(p, RC_DESTROY, id, vm, NULL);
        else if (d->shutdown_deadline_ms == 0 ||
                 (d->shutdown_repeat_ms > 0 && now_ms >= d->shutdown_repeat_ms)) {
            /* Asked again until the deadline: a guest still booting, or
             * busy, misses an ACPI request; a paused guest hears none. */
            if (d->state == VIRT_PAUSED)
                add(p, RC_RESUME, id, vm, NULL);
            add(p, RC_SHUTDOWN, id, vm, NULL);
        }
    } else if (d->meta.power_running || gen != d->meta.reboot_gen) {
        add(p, RC_MARK_STOPPED, id, vm, NULL);
    }
}

enum reconcile_fence reconcile_fence(const json_t *vm,
                                     const struct virt_dom *d)
{
    if (!vm)
        return d ? RC_FENCE_DESTROY : RC_FENCE_KEEP;
    if (!d)
        return RC_FENCE_KEEP;
    int64_t gen = json_int(vm, "place_gen", 0);
    /* Made before placements had generations: adopted. */
    if (d->meta.place_gen < 0)
        return RC_FENCE_KEEP;
    if (gen < d->meta.place_gen)
        return RC_FENCE_HOLD;
    return gen == d->meta.place_gen ? RC_FENCE_KEEP : RC_FENCE_DESTROY;
}

void reconcile_plan_orphans(const json_t *doc, const struct virt_dom *doms,
                            size_t n_doms, struct reconcile_plan *p)
{
    json_t *approved = json_object_get(doc, "approved");
    json_t *vms = json_object_get(doc, "vms");
    if (!json_is_array(vms) || (approved && !json_is_true(approved)))
        return;
    json_auto_t *by_id = json_object(); /* the last VM of an id wins */
    size_t i;
    json_t *vm;
    json_array_foreach(vms, i, vm)
        if (json_str(vm, "id"))
            json_object_set(by_id, json_str(vm, "id"), vm);
    for (size_t k = 0; k < n_doms; k++) {
        const json_t *listed = json_object_get(by_id, doms[k].meta.vm_id);
        if (reconcile_fence(listed, &doms[k]) == RC_FENCE_DESTROY && !listed)
            add(p, RC_DELETE, doms[k].meta.vm_id, NULL, NULL);
    }
}

void reconcile_plan(const json_t *desired, const struct virt_dom *doms,
                    size_t n_doms, bool kvm, int64_t now_ms,
                    struct reconcile_plan *ret)
{
    struct reconcile_plan p = { NULL, 0 };
    size_t i;
    json_t *vm;
    json_array_foreach(json_object_get(desired, "vms"), i, vm) {
        char *reason = NULL;
        const char *id = json_str(vm, "id");
        if (!uuid_is_valid(id))
            continue; /* nothing can be said about it */
        if (reconcile_vm_check(vm, &reason) < 0) {
            add(&p, RC_REJECT, id, vm, reason);
            continue;
        }
        const struct virt_dom *d = virt_doms_find(doms, n_doms, id);
        plan_vm(&p, vm, d, kvm, now_ms);
    }
    *ret = p;
}

void reconcile_plan_free(struct reconcile_plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->actions[i].reason);
        free(p->actions[i].snap);
    }
    free(p->actions);
    *p = (struct reconcile_plan){ NULL, 0 };
}

void reconcile_status(const json_t *vm, const struct virt_dom *d,
                      const char *error, const char **ret_state,
                      const char **ret_reason)
{
    bool want_run = streq(json_str(vm, "power"), "running");
    const char *state, *reason = error;
    if (json_bool(vm, "deleted", false) && !d) {
        *ret_state = "deleted";
        *ret_reason = NULL;
        return;
    }
    if (!d) {
        state = error ? "error" : "creating";
    } else {
        switch (d->state) {
        case VIRT_RUNNING:
            state = "running";
            break;
        case VIRT_PAUSED:
            state = "paused";
            break;
        case VIRT_CRASHED:
            state = "crashed";
            if (!reason)
                reason = "the guest crashed";
            break;
        default:
            if (error && want_run) {
                state = "error";
            } else {
                state = "stopped";
                if (!reason && want_run && d->meta.power_running)
                    reason = d->stopped_by_guest ?
                                 "shut down from inside the guest" :
                                 "stopped outside fogfabric";
            }
            break;
        }
    }
    *ret_state = state;
    *ret_reason = reason;
}

bool reconcile_down_by_itself(const json_t *vm, const struct virt_dom *d)
{
    if (!d || !d->meta.power_running || !streq(json_str(vm, "power"), "running") ||
        json_bool(vm, "deleted", false) ||
        (d->state != VIRT_STOPPED && d->state != VIRT_CRASHED))
        return false;
    /* Its host went down under it: started again (plan_vm), unless its
     * autostart flag says it stays down, which then reads as its own
     * stop. */
    if (d->lost_with_host && reconcile_want_autostart(vm))
        return false;
    return json_int(vm, "start_gen", 0) <= d->meta.start_gen &&
           json_int(vm, "reboot_gen", 0) <= d->meta.reboot_gen;
}

/* ---- executor ---- */

struct reconcile_vm_mem {
    char id[37];
    char seed_hash[65];  /* digest of the seed last written, or "" */
    int64_t shutdown_deadline_ms;
    int64_t shutdown_repeat_ms;
    int64_t shutdown_timeout_ms; /* of the shutdown under way */
    char *note;          /* a forced power-off, for the status */
    char *error;
    int64_t error_at_ms;
    int64_t error_rev;
};

/* c->mem is in the order of the VMs' ids (a pass looks each up). */
static struct reconcile_vm_mem *mem_find(const struct reconcile_ctx *c,
                                         const char *id, size_t *at)
{
    bool found;
    *at = sorted_at(c->mem, c->n_mem, sizeof(*c->mem),
                    offsetof(struct reconcile_vm_mem, id), id, &found);
    return found ? &c->mem[*at] : NULL;
}

static struct reconcile_vm_mem *mem_get(struct reconcile_ctx *c,
                                        const char *id, bool create)
{
    size_t at;
    struct reconcile_vm_mem *m = mem_find(c, id, &at);
    if (m || !create)
        return m;
    m = sorted_insert(&c->mem, &c->n_mem, sizeof(*c->mem), at);
    snprintf(m->id, sizeof(m->id), "%s", id);
    return m;
}

void reconcile_annotate(struct reconcile_ctx *c, struct virt_dom *doms,
                        size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct reconcile_vm_mem *m = mem_get(c, doms[i].meta.vm_id, false);
        bool up = doms[i].state == VIRT_RUNNING || doms[i].state == VIRT_PAUSED;
        if (m && !up)
            m->shutdown_deadline_ms = m->shutdown_repeat_ms = 0;
        doms[i].shutdown_deadline_ms = m ? m->shutdown_deadline_ms : 0;
        doms[i].shutdown_repeat_ms = m ? m->shutdown_repeat_ms : 0;
    }
}

const char *reconcile_vm_note(const struct reconcile_ctx *c,
                              const char *vm_id)
{
    size_t at;
    const struct reconcile_vm_mem *m = mem_find(c, vm_id, &at);
    return m ? m->note : NULL;
}

const char *reconcile_vm_error(const struct reconcile_ctx *c,
                               const char *vm_id)
{
    size_t at;
    const struct reconcile_vm_mem *m = mem_find(c, vm_id, &at);
    return m ? m->error : NULL;
}

int64_t reconcile_next_deadline(const struct reconcile_ctx *c)
{
    int64_t next = 0;
    for (size_t i = 0; i < c->n_mem; i++) {
        int64_t at[] = { c->mem[i].shutdown_deadline_ms,
                         c->mem[i].shutdown_repeat_ms };
        for (size_t k = 0; k < ARRAY_SIZE(at); k++)
            if (at[k] > 0 && (next == 0 || at[k] < next))
                next = at[k];
    }
    return next;
}

void reconcile_forget(struct reconcile_ctx *c, const json_t *desired)
{
    size_t k = 0, n_ids;
    _cleanup_free_ const char **ids =
        json_keys_sorted(json_object_get(desired, "vms"), "id", &n_ids);
    for (size_t i = 0; i < c->n_mem; i++) {
        if (json_keys_has(ids, n_ids, c->mem[i].id))
            c->mem[k++] = c->mem[i];
        else {
            free(c->mem[i].error);
            free(c->mem[i].note);
        }
    }
    c->n_mem = k;
}

void reconcile_ctx_free(struct reconcile_ctx *c)
{
    for (size_t i = 0; i < c->n_mem; i++) {
        free(c->mem[i].error);
        free(c->mem[i].note);
    }
    free(c->mem);
    c->mem = NULL;
    c->n_mem = 0;
}

/* Record a failure (taking `msg`), logging it only when it is new. */
void reconcile__fail(struct reconcile_ctx *c, const struct reconcile_action *a,
                     char *msg, int64_t rev, int64_t now_ms)
{
    struct reconcile_vm_mem *m = mem_get(c, a->vm_id, true);
    if (!streq(m->error, msg))
        log_warn("vm %s: %s failed: %s", a->vm_id, reconcile_op_name(a->op),
                 msg);
    free(m->error);
    m->error = msg;
    m->error_at_ms = now_ms;
    m->error_rev = rev;
}

void reconcile__vfail(struct reconcile_ctx *c,
                      const struct reconcile_action *a, const char *what,
                      int64_t rev, int64_t now_ms)
{
    reconcile__fail(c, a, xasprintf("%s: %s", what, virt_error()), rev,
                    now_ms);
}

/* The passthrough plan for the GPUs VM entry `vm` was assigned (an empty
 * plan when none), checked against this node's own inventory under
 * c->root, cross-checked with libvirt, and the functions every other
 * domain holds. 0, or -errno with *ret_why (caller frees). The plan points
 * into *inv, which the caller clears after it. */
static int gpu_plan_for(struct reconcile_ctx *c, const json_t *vm,
                        struct gpu_inventory *inv, struct gpu_plan *ret,
                        char **ret_why)
{
    const json_t *gpus = json_object_get(vm, AGENT_VM_GPUS);
    size_t n = json_array_size(gpus);
    *ret = (struct gpu_plan){ 0 };
    *inv = (struct gpu_inventory){ 0 };
    if (n == 0)
        return 0;
    char **devs = NULL;
    if (virt_pci_devices(c->virt, &devs) < 0)
        devs = NULL; /* a driver without node devices: sysfs alone */
    int r = gpu_inventory_read(c->root, devs, inv);
    vmxml_strv_free(devs);
    if (r < 0) {
        *ret_why = xasprintf("cannot read this node's GPUs: %s", strerror(-r));
        return r;
    }
    char **addrs = NULL, **doms = NULL;
    if ((r = virt_hostdevs(c->virt, &addrs, &doms)) < 0) {
        *ret_why = xasprintf("cannot read which devices the host's domains "
                             "hold: %s", virt_error());
        return r;
    }
    _cleanup_free_ char *self = vmxml_domain_name(json_str(vm, "id"));
    size_t n_held = 0;
    _cleanup_free_ struct gpu_held *held = NULL;
    for (size_t i = 0; addrs[i]; i++) {
        if (streq(doms[i], self))
            continue;
        held = xrealloc(held, (n_held + 1) * sizeof(*held));
        held[n_held++] = (struct gpu_held){ addrs[i], doms[i] };
    }
    _cleanup_free_ struct gpu_request *req = xcalloc(n, sizeof(*req));
    for (size_t i = 0; i < n; i++) {
        const json_t *g = json_array_get(gpus, i), *fns;
        fns = json_object_get(g, "functions");
        const char **fv = xcalloc(json_array_size(fns) + 1, sizeof(*fv));
        for (size_t k = 0; k < json_array_size(fns); k++)
            fv[k] = json_string_value(json_array_get(fns, k));
        req[i] = (struct gpu_request){ json_str(g, "address"), fv,
                                       json_array_size(fns) };
    }
    r = gpu_plan_checked(inv, req, n, held, n_held, ret, ret_why);
    for (size_t i = 0; i < n; i++)
        free((void *)req[i].functions);
    vmxml_strv_free(addrs);
    vmxml_strv_free(doms);
    if (r < 0)
        gpu_inventory_clear(inv);
    return r;
}

/* The definition of a VM from its desired entry and the metadata to keep.
 * 0, or -errno with *ret_why (caller frees). */
static int build_xml(struct reconcile_ctx *c, const json_t *vm,
                     struct vmxml_meta *meta, char **ret_xml, char **ret_why)
{
    _cleanup_free_ char *disk = disk_overlay_path(c->data_dir, meta->vm_id);
    _cleanup_free_ char *con = disk_console_path(c->data_dir, meta->vm_id);
    _cleanup_free_ char *seed = guestseed_path(c->data_dir, meta->vm_id);
    json_t *nics = json_object_get(vm, "nics");
    size_t n = json_array_size(nics);
    _cleanup_free_ struct vmxml_nic *nv = xcalloc(n + 1, sizeof(*nv));
    _cleanup_free_ char (*taps)[IFNAMSIZ] = xcalloc(n + 1, IFNAMSIZ);
    for (size_t i = 0; i < n; i++) {
        json_t *nic = json_array_get(nics, i);
        /* The firewall knows a VM's tap by this name. */
        if (netfabric_tap_name(meta->vm_id, (unsigned)i, taps[i]) < 0) {
            *ret_why = xstrdup("cannot build the domain definition");
            return -EINVAL;
        }
        nv[i] = (struct vmxml_nic){ json_str(nic, "mac"),
                                    json_str(nic, "bridge"),
                                    json_int(nic, "mtu", 0), taps[i] };
    }
    reconcile_spec_hash(vm, c->kvm, meta->spec);
    struct vmxml_spec s = {
        .meta = meta,
        .vcpus = json_int(vm, "vcpus", 1),
        .memory_mib = json_int(vm, "memory_mib", 64),
        .kvm = c->kvm,
        .arch = c->arch,
        .disk_path = disk,
        .seed_path = seed,
        .console_log = con,
        .nics = nv,
        .n_nics = n,
        .limits = c->limits,
    };
    struct gpu_inventory inv;
    struct gpu_plan plan;
    int r = gpu_plan_for(c, vm, &inv, &plan, ret_why);
    if (r < 0)
        return r;
    s.gpus = plan.gpus;
    s.n_gpus = plan.n;
    s.cpuset = plan.cpuset;
    s.nodeset = plan.nodeset;
    if ((r = vmxml_build(&s, ret_xml)) < 0)
        *ret_why = xstrdup("cannot build the domain definition");
    gpu_plan_clear(&plan);
    gpu_inventory_clear(&inv);
    return r;
}

static void meta_from(struct vmxml_meta *m, const json_t *vm,
                      const struct virt_dom *d)
{
    if (d) {
        *m = d->meta;
        m->name = (char *)json_str(vm, "name");
        /* An adopted domain takes the placement it was adopted for. */
        if (m->place_gen < 0)
            m->place_gen = json_int(vm, "place_gen", 0);
        return;
    }
    *m = (struct vmxml_meta){ .name = (char *)json_str(vm, "name"),
                              .power_running = false,
                              .reboot_gen = json_int(vm, "reboot_gen", 0),
                              .start_gen = json_int(vm, "start_gen", 0),
                              .place_gen = json_int(vm, "place_gen", 0),
                              .disk_gib = json_int(vm, "disk_gib", 1) };
    snprintf(m->vm_id, sizeof(m->vm_id), "%s", json_str(vm, "id"));
}

/* Write the VM's seed when it is missing or says something new. */
static int ensure_seed(struct reconcile_ctx *c, const struct reconcile_action *a,
                       int64_t rev, int64_t now_ms)
{
    struct reconcile_vm_mem *m = mem_get(c, a->vm_id, true);
    char *err = NULL;
    int r = guestseed_ensure(c->data_dir, a->vm, c->gateway_dns,
                             m->seed_hash, &err);
    if (r < 0)
        reconcile__fail(c, a, err, rev, now_ms);
    return r;
}

static int do_create(struct reconcile_ctx *c, const struct reconcile_action *a,
                     int64_t rev, int64_t now_ms)
{
    const json_t *vm = a->vm;
    if (!c->kvm && !c->allow_tcg) {
        reconcile__fail(c, a, xstrdup("no KVM on this node and TCG is not allowed"), rev,
             now_ms);
        return -EPERM;
    }
    _cleanup_free_ char *base = NULL, *err = NULL;
    const char *fmt = NULL;
    int r;
    _cleanup_free_ char *disk = disk_overlay_path(c->data_dir, a->vm_id);
    _cleanup_free_ char *condir = xasprintf("%s/console", c->data_dir);
    if ((r = mkdir_p(condir, 0711)) < 0) {
        reconcile__fail(c, a, xasprintf("cannot create '%s': %s", condir, strerror(-r)),
             rev, now_ms);
        return r;
    }
    json_t *src = json_object_get(vm, "image_source");
    if (json_is_object(json_object_get(vm, AGENT_VM_RESTORE))) {
        /* Placed from a backup: that disk or none, never a fresh one. */
        if ((r = restore_disk(c->cache, c->controller, c->qemu_img,
                                 vm, disk, &err)) < 0) {
            reconcile__fail(c, a, TAKE_PTR(err), rev, now_ms);
            return r;
        }
        log_info("vm %s: disk restored from backup %s", a->vm_id,
                 json_str(json_object_get(vm, AGENT_VM_RESTORE), "backup"));
    } else if (json_is_object(src) && c->cache) {
        /* A catalog image: fetched by digest into the cache. */
        const char *url = json_str(src, "url"), *sha = json_str(src, "sha256");
        const char *f = json_str(src, "format");
        int64_t size = json_int(src, "size", 0);
        if (!url || !sha || !(streq(f, "qcow2") || streq(f, "raw")) ||
            size < 0) {
            reconcile__fail(c, a, xstrdup("image_source is incomplete"), rev, now_ms);
            return -EINVAL;
        }
        _cleanup_free_ char *full = url[0] == '/' && c->controller ?
            xasprintf("%s%s", c->controller, url) : xstrdup(url);
        if ((r = fetch_get(c->cache, full, sha, (uint64_t)size, &base,
                           &err)) < 0) {
            reconcile__fail(c, a, xasprintf("image fetch: %s", err ? err : strerror(-r)),
                 rev, now_ms);
            return r;
        }
    } else if ((r = disk_base_find(c->image_dir, json_str(vm, "image"), &base,
                                   &fmt, &err)) < 0) {
        if (json_is_object(src))
            reconcile__fail(c, a, xasprintf("image_source fetch not available; %s", err),
                 rev, now_ms);
        else
            reconcile__fail(c, a, TAKE_PTR(err), rev, now_ms);
        return r;
    }
    if (base && (r = disk_overlay_create(base, disk,
                                         json_int(vm, "disk_gib", 1),
                                         &err)) < 0) {
        reconcile__fail(c, a, TAKE_PTR(err), rev, now_ms);
        return r;
    }
    if ((r = ensure_seed(c, a, rev, now_ms)) < 0)
        return r;
    struct vmxml_meta meta;
    meta_from(&meta, vm, NULL);
    _cleanup_free_ char *xml = NULL, *why = NULL;
    if ((r = build_xml(c, vm, &meta, &xml, &why)) < 0) {
        reconcile__fail(c, a, TAKE_PTR(why), rev, now_ms);
        return r;
    }
    int64_t called = wall_ms();
    if ((r = virt_define(c->virt, xml)) < 0) {
        reconcile__vfail(c, a, "define", rev, now_ms);
        return r;
    }
    /* The wall clock, for measuring how fast a request reaches libvirt. */
    log_debug("vm %s: libvirt define called at %" PRId64 " (unix ms)",
              a->vm_id, called);
    log_info("vm %s: created domain %s%s", a->vm_id, VMXML_NAME_PREFIX,
             a->vm_id);
    return 0;
}

/* Record what was done in the domain's metadata; `d` (the pass's working
 * copy of the domain) follows, so later actions of the pass see it. */
static int set_meta(struct reconcile_ctx *c, const struct reconcile_action *a,
                    struct virt_dom *d, bool power_running, int64_t reboot_gen,
                    int64_t start_gen, int64_t disk_gib)
{
    struct vmxml_meta m;
    meta_from(&m, a->vm, d);
    if (!d) { /* just created: the definition carries the desired values */
        m.disk_gib = json_int(a->vm, "disk_gib", 1);
        reconcile_spec_hash(a->vm, c->kvm, m.spec);
    }
    m.power_running = power_running;
    m.reboot_gen = reboot_gen;
    m.start_gen = start_gen;
    m.disk_gib = disk_gib;
    int r = virt_set_meta(c->virt, &m);
    if (r == 0 && d) {
        d->meta.power_running = power_running;
        d->meta.reboot_gen = reboot_gen;
        d->meta.start_gen = start_gen;
        d->meta.disk_gib = disk_gib;
    }
    return r;
}

static int64_t meta_disk(const struct reconcile_action *a,
                         const struct virt_dom *d)
{
    return d ? d->meta.disk_gib : json_int(a->vm, "disk_gib", 1);
}

static int execute_one(struct reconcile_ctx *c, const struct reconcile_action *a,
                       struct virt_dom *d, int64_t rev, int64_t now_ms)
{
    const json_t *vm = a->vm;
    int64_t gen = json_int(vm, "reboot_gen", 0);
    int64_t sgen = json_int(vm, "start_gen", 0);
    struct reconcile_vm_mem *m;
    _cleanup_free_ char *err = NULL;
    int r;

    switch (a->op) {
    case RC_REJECT:
        reconcile__fail(c, a, xstrdup(a->reason), rev, now_ms);
        return -EINVAL;
    case RC_CREATE:
        return do_create(c, a, rev, now_ms);
    case RC_REDEFINE: {
        struct vmxml_meta meta;
        _cleanup_free_ char *xml = NULL, *why = NULL;
        meta_from(&meta, vm, d);
        if ((r = build_xml(c, vm, &meta, &xml, &why)) < 0) {
            reconcile__fail(c, a, TAKE_PTR(why), rev, now_ms);
            return r;
        }
        if ((r = virt_define(c->virt, xml)) < 0) {
            reconcile__vfail(c, a, "redefine", rev, now_ms);
            return r;
        }
        if (d)
            memcpy(d->meta.spec, meta.spec, sizeof(d->meta.spec));
        log_info("vm %s: definition updated", a->vm_id);
        return 0;
    }
    case RC_GROW_DISK: {
        int64_t gib = json_int(vm, "disk_gib", 1);
        r = -EOPNOTSUPP;
        if (d && d->state != VIRT_STOPPED && d->state != VIRT_CRASHED)
            r = virt_block_resize(c->virt, a->vm_id, (uint64_t)gib << 30);
        if (r == -EOPNOTSUPP) {
            _cleanup_free_ char *disk = disk_overlay_path(c->data_dir, a->vm_id);
            r = disk_grow(c->qemu_img, disk, gib, &err);
            if (r < 0) {
                reconcile__fail(c, a, TAKE_PTR(err), rev, now_ms);
                return r;
            }
        } else if (r < 0) {
            reconcile__vfail(c, a, "disk resize", rev, now_ms);
            return r;
        }
        if ((r = set_meta(c, a, d, d ? d->meta.power_running : false,
                          d ? d->meta.reboot_gen : gen,
                          d ? d->meta.start_gen : sgen, gib)) < 0) {
            reconcile__vfail(c, a, "metadata", rev, now_ms);
            return r;
        }
        log_info("vm %s: disk grown to %" PRId64 " GiB", a->vm_id, gib);
        return 0;
    }
    case RC_AUTOSTART:
        if ((r = virt_set_autostart(c->virt, a->vm_id, false)) < 0)
            reconcile__vfail(c, a, "autostart", rev, now_ms);
        return r;
    case RC_START:
        if ((r = ensure_seed(c, a, rev, now_ms)) < 0)
            return r;
        int64_t called = wall_ms();
        if ((r = virt_start(c->virt, a->vm_id)) < 0) {
            reconcile__vfail(c, a, "start", rev, now_ms);
            return r;
        }
        log_debug("vm %s: libvirt create called at %" PRId64 " (unix ms)",
                  a->vm_id, called);
        if (set_meta(c, a, d, true, gen, sgen, meta_disk(a, d)) < 0)
            log_warn("vm %s: cannot record its power state: %s", a->vm_id,
                     virt_error());
        if ((m = mem_get(c, a->vm_id, false))) {
            free(m->note);
            m->note = NULL;
        }
        log_info("vm %s: started", a->vm_id);
        return 0;
    case RC_RESUME:
        if ((r = virt_resume(c->virt, a->vm_id)) < 0)
            reconcile__vfail(c, a, "resume", rev, now_ms);
        else
            log_info("vm %s: resumed", a->vm_id);
        return r;
    case RC_SUSPEND:
        if ((r = virt_suspend(c->virt, a->vm_id)) < 0)
            reconcile__vfail(c, a, "suspend", rev, now_ms);
        else
            log_info("vm %s: suspended", a->vm_id);
        return r;
    case RC_REBOOT:
        /* The guest reads its seed again as it boots. */
        if ((r = ensure_seed(c, a, rev, now_ms)) < 0)
            return r;
        r = virt_reboot(c->virt, a->vm_id);
        if (r == -EOPNOTSUPP &&
            (r = virt_destroy(c->virt, a->vm_id)) == 0)
            r = virt_start(c->virt, a->vm_id);
        if (r < 0) {
            reconcile__vfail(c, a, "reboot", rev, now_ms);
            return r;
        }
        if (set_meta(c, a, d, true, gen, sgen, meta_disk(a, d)) < 0)
            log_warn("vm %s: cannot record its reboot: %s", a->vm_id,
                     virt_error());
        log_info("vm %s: rebooted", a->vm_id);
        return 0;
    case RC_SHUTDOWN:
        /* Recorded first, so the shut-off that follows reads as ours. */
        if ((r = set_meta(c, a, d, false, gen, sgen, meta_disk(a, d))) < 0) {
            reconcile__vfail(c, a, "metadata", rev, now_ms);
            return r;
        }
        if ((r = virt_shutdown(c->virt, a->vm_id)) < 0) {
            reconcile__vfail(c, a, "shutdown", rev, now_ms);
            return r;
        }
        m = mem_get(c, a->vm_id, true);
        if (m->shutdown_deadline_ms == 0) {
            int64_t s = json_int(vm, "shutdown_timeout_s", 0);
            m->shutdown_deadline_ms =
                now_ms + (s > 0 ? s * 1000 : c->shutdown_timeout_ms);
            m->shutdown_timeout_ms = m->shutdown_deadline_ms - now_ms;
            log_info("vm %s: shutting down", a->vm_id);
        } else {
            log_debug("vm %s: shutdown asked again", a->vm_id);
        }
        m->shutdown_repeat_ms = now_ms + VM_SHUTDOWN_REPEAT_S * 1000;
        if (m->shutdown_repeat_ms >= m->shutdown_deadline_ms)
            m->shutdown_repeat_ms = 0;
        return 0;
    case RC_DESTROY:
        if ((r = set_meta(c, a, d, false, gen, sgen, meta_disk(a, d))) < 0) {
            reconcile__vfail(c, a, "metadata", rev, now_ms);
            return r;
        }
        if ((r = virt_destroy(c->virt, a->vm_id)) < 0) {
            reconcile__vfail(c, a, "destroy", rev, now_ms);
            return r;
        }
        m = mem_get(c, a->vm_id, true);
        if (m->shutdown_deadline_ms > 0 && !json_bool(vm, "stop_force", false)) {
            free(m->note);
            m->note = xasprintf(AGENT_FORCED_OFF_REASON ": the guest did not "
                                "shut down within %" PRId64 " s",
                                m->shutdown_timeout_ms / 1000);
            log_warn("vm %s: %s", a->vm_id, m->note);
        } else {
            log_info("vm %s: destroyed", a->vm_id);
        }
        m->shutdown_deadline_ms = m->shutdown_repeat_ms = 0;
        return 0;
    case RC_MARK_STOPPED:
        if ((r = set_meta(c, a, d, false, gen, sgen, meta_disk(a, d))) < 0)
            reconcile__vfail(c, a, "metadata", rev, now_ms);
        return r;
    case RC_MARK_RUNNING:
        if ((r = set_meta(c, a, d, true, d ? d->meta.reboot_gen : gen, sgen,
                          meta_disk(a, d))) < 0)
            reconcile__vfail(c, a, "metadata", rev, now_ms);
        return r;
    case RC_DELETE:
        if ((r = virt_undefine(c->virt, a->vm_id)) < 0 && r != -ENOENT) {
            reconcile__vfail(c, a, "undefine", rev, now_ms);
            return r;
        }
        log_info("vm %s: domain undefined", a->vm_id);
        __attribute__((fallthrough)); /* its files go too */
    case RC_PURGE:
        if ((r = disk_remove(c->data_dir, a->vm_id)) < 0) {
            reconcile__fail(c, a, xasprintf("cannot remove its files: %s", strerror(-r)),
                 rev, now_ms);
            return r;
        }
        return a->op == RC_DELETE ? 0 : 1;
    case RC_SNAPSHOT_CREATE:
    case RC_SNAPSHOT_DELETE:
    case RC_SNAPSHOT_REVERT:
        return snapshot_execute(c, a, d, rev, now_ms);
    case RC_OP_MAX:
        break;
    }
    return -EINVAL;
}

int reconcile_execute(struct reconcile_ctx *c, const struct reconcile_plan *p,
                      const struct virt_dom *doms, size_t n_doms, int64_t rev,
                      int64_t now_ms)
{
    int changed = 0;
    const char *failed_vm = NULL;
    struct virt_dom work;   /* the current VM's domain as the pass changes it */
    bool have_work = false;
    for (size_t i = 0; i < p->n; i++) {
        const struct reconcile_action *a = &p->actions[i];
        /* After one action of a VM fails, its later ones wait. */
        if (failed_vm && streq(failed_vm, a->vm_id))
            continue;
        struct reconcile_vm_mem *m = mem_get(c, a->vm_id, false);
        /* A VM that just failed is retried on a new revision or after a
         * pause, not on every wake-up. Deletions always proceed. */
        if (m && m->error && a->op != RC_DELETE && a->op != RC_PURGE &&
            m->error_rev == rev && now_ms - m->error_at_ms < c->retry_ms)
            continue;
        if (i == 0 || !streq(p->actions[i - 1].vm_id, a->vm_id)) {
            const struct virt_dom *d = virt_doms_find(doms, n_doms, a->vm_id);
            have_work = d != NULL;
            if (d)
                work = *d; /* name stays borrowed */
        }
        int r = execute_one(c, a, have_work ? &work : NULL, rev, now_ms);
        if (r < 0) {
            failed_vm = a->vm_id;
            continue;
        }
        if (r == 0)
            changed++;
        /* Success of the VM's last action clears its error. */
        bool last = i + 1 == p->n || !streq(p->actions[i + 1].vm_id, a->vm_id);
        if (last && (m = mem_get(c, a->vm_id, false)) && m->error) {
            free(m->error);
            m->error = NULL;
        }
    }
    /* A VM with nothing left to do has converged: its error is history. */
    for (size_t k = 0; k < c->n_mem; k++) {
        bool planned = false;
        for (size_t i = 0; i < p->n && !planned; i++)
            planned = streq(p->actions[i].vm_id, c->mem[k].id);
        if (!planned && c->mem[k].error) {
            free(c->mem[k].error);
            c->mem[k].error = NULL;
        }
    }
    return changed;
}
