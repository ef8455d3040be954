/* Snapshots of a VM's domain: planned from the desired entry's list and
 * revert generation against what libvirt holds, carried out through
 * virt.c, reported in the status. */
#include "nodeagent/snapshot.h"

#include "api/agentmsg.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "nodeagent/disk.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

int snapshot_check(const json_t *vm, char **ret_reason)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(vm, AGENT_VM_SNAPSHOTS), i, s)
        if (!uuid_is_valid(json_str(s, "id")) ||
            !name_is_valid(json_str(s, "name"))) {
            *ret_reason = xasprintf("desired state unusable: snapshots[%zu] "
                                    "needs an id and a hostname-like name", i);
            return -EINVAL;
        }
    json_t *rv = json_object_get(vm, AGENT_VM_REVERT);
    if (rv && !json_is_null(rv) &&
        (!json_is_integer(json_object_get(rv, "gen")) ||
         json_int(rv, "gen", -1) < 0 ||
         !uuid_is_valid(json_str(rv, "snapshot_id")))) {
        *ret_reason = xstrdup("desired state unusable: revert needs a "
                              "generation and a snapshot id");
        return -EINVAL;
    }
    return 0;
}

static const struct vmxml_snap *held_by_id(const struct virt_dom *d,
                                           const char *id)
{
    for (size_t k = 0; k < d->n_snaps; k++)
        if (streq(d->snaps[k].id, id))
            return &d->snaps[k];
    return NULL;
}

static void add_snap(struct reconcile_plan *p, enum reconcile_op op,
                     const json_t *vm, const char *name, const char *snap_id)
{
    struct reconcile_action *a = reconcile__add(p, op, json_str(vm, "id"), vm,
                                                NULL);
    a->snap = name ? xstrdup(name) : NULL;
    snprintf(a->snap_id, sizeof(a->snap_id), "%s", snap_id ? snap_id : "");
}

bool snapshot_plan(struct reconcile_plan *p, const json_t *vm,
                   const struct virt_dom *d)
{
    json_t *want = json_object_get(vm, AGENT_VM_SNAPSHOTS);
    size_t i;
    json_t *s;
    if (!d)
        return false;
    /* What the document does not ask for (or asks for afresh under the
     * same name) goes first, so its name is free. */
    for (size_t k = 0; k < d->n_snaps; k++) {
        bool keep = false;
        json_array_foreach(want, i, s)
            keep = keep || streq(json_str(s, "id"), d->snaps[k].id);
        if (!keep)
            add_snap(p, RC_SNAPSHOT_DELETE, vm, d->snaps[k].name, NULL);
    }
    /* One the node reported once and no longer holds is lost (the domain
     * was made afresh): taking it now would give its name to another
     * state of the disk. */
    json_array_foreach(want, i, s)
        if (!held_by_id(d, json_str(s, "id")) &&
            !json_is_true(json_object_get(s, "taken")))
            add_snap(p, RC_SNAPSHOT_CREATE, vm, json_str(s, "name"),
                     json_str(s, "id"));
    json_t *rv = json_object_get(vm, AGENT_VM_REVERT);
    if (!json_is_object(rv) || json_int(rv, "gen", 0) <= d->meta.revert_gen)
        return false;
    const char *sid = json_str(rv, "snapshot_id");
    const struct vmxml_snap *held = held_by_id(d, sid);
    const json_t *asked = NULL;
    json_array_foreach(want, i, s)
        if (streq(json_str(s, "id"), sid))
            asked = s;
    if (!asked)
        held = NULL; /* deleted since: nothing to revert to */
    else if (!held && !json_is_true(json_object_get(asked, "taken")))
        return false; /* taken in this pass: reverted to in the next */
    /* Without the snapshot (gone with an earlier domain) the executor
     * records the revert as impossible. */
    add_snap(p, RC_SNAPSHOT_REVERT, vm, held ? held->name : NULL, sid);
    return true;
}

/* Drop the VM's backup checkpoints: libvirt refuses snapshot operations
 * on a stopped domain that has any, and QEMU cannot load a snapshot
 * under active dirty bitmaps; a reverted disk is not what they tracked
 * anyway. The next backup is a full one. */
static void checkpoints_drop(struct reconcile_ctx *c, const char *vm_id)
{
    _cleanup_free_ char *disk = disk_overlay_path(c->data_dir, vm_id);
    int r = virt_checkpoints_drop(c->virt, vm_id, c->qemu_img, disk);
    if (r > 0)
        log_info("vm %s: %d backup checkpoint%s dropped: its next backup "
                 "is a full one", vm_id, r, r > 1 ? "s" : "");
    else if (r < 0 && r != -EOPNOTSUPP && r != -ENOENT)
        log_warn("vm %s: cannot drop its backup checkpoints: %s", vm_id,
                 virt_error());
}

static int do_revert(struct reconcile_ctx *c, const struct reconcile_action *a,
                     struct virt_dom *d, int64_t rev, int64_t now_ms)
{
    const json_t *vm = a->vm, *rv = json_object_get(vm, AGENT_VM_REVERT);
    bool run = streq(json_str(vm, "power"), "running");
    int r;
    if (!d)
        return -ENOENT;
    if (a->snap)
        checkpoints_drop(c, a->vm_id);
    if (a->snap && (r = virt_snapshot_revert(c->virt, a->vm_id, a->snap,
                                             run)) < 0) {
        reconcile__vfail(c, a, "snapshot revert", rev, now_ms);
        return r;
    }
    /* The revert brought back the definition (and our metadata) of when
     * the snapshot was taken: ours is written again, with no spec hash so
     * the next pass redefines the domain from the document, and the power
     * state it was driven to, so the next pass stops it when it should
     * not run. Done once: a crash right here repeats only the revert. */
    struct vmxml_meta m = d->meta;
    m.name = (char *)json_str(vm, "name");
    m.revert_gen = json_int(rv, "gen", 0);
    m.power_running = run;
    m.spec[0] = '\0';
    if (run) {
        m.start_gen = json_int(vm, "start_gen", 0);
        m.reboot_gen = json_int(vm, "reboot_gen", 0);
    }
    if ((r = virt_set_meta(c->virt, &m)) < 0) {
        reconcile__vfail(c, a, "metadata", rev, now_ms);
        return r;
    }
    d->meta.revert_gen = m.revert_gen;
    d->meta.power_running = m.power_running;
    d->meta.spec[0] = '\0';
    if (!a->snap) {
        reconcile__fail(c, a, xasprintf("snapshot %s to revert to is not on "
                                        "this node", a->snap_id), rev, now_ms);
        return -ENOENT;
    }
    log_info("vm %s: reverted to snapshot %s", a->vm_id, a->snap);
    return 0;
}

int snapshot_execute(struct reconcile_ctx *c, const struct reconcile_action *a,
                     struct virt_dom *d, int64_t rev, int64_t now_ms)
{
    int r;
    switch (a->op) {
    case RC_SNAPSHOT_CREATE: {
        bool running = d && (d->state == VIRT_RUNNING || d->state == VIRT_PAUSED);
        if (!running)
            checkpoints_drop(c, a->vm_id);
        if ((r = virt_snapshot_create(c->virt, a->vm_id, a->snap,
                                      a->snap_id)) < 0) {
            reconcile__vfail(c, a, "snapshot", rev, now_ms);
            return r;
        }
        log_info("vm %s: snapshot %s taken (%s)", a->vm_id, a->snap,
                 running ? SNAPSHOT_CONSISTENCY_CHECKPOINT :
                           SNAPSHOT_CONSISTENCY_POWERED_OFF);
        return 0;
    }
    case RC_SNAPSHOT_DELETE:
        if (!d || (d->state != VIRT_RUNNING && d->state != VIRT_PAUSED))
            checkpoints_drop(c, a->vm_id);
        if ((r = virt_snapshot_delete(c->virt, a->vm_id, a->snap)) < 0 &&
            r != -ENOENT) {
            reconcile__vfail(c, a, "snapshot delete", rev, now_ms);
            return r;
        }
        log_info("vm %s: snapshot %s deleted", a->vm_id, a->snap);
        return 0;
    case RC_SNAPSHOT_REVERT:
        return do_revert(c, a, d, rev, now_ms);
    default:
        return -EINVAL;
    }
}

void snapshot_status(const struct virt_dom *d, struct am_vm_status *o,
                     struct buf *sig)
{
    if (!d)
        return;
    o->has_snapshots = true;
    o->snapshots = xcalloc(d->n_snaps + 1, sizeof(*o->snapshots));
    for (size_t k = 0; k < d->n_snaps; k++) {
        const struct vmxml_snap *s = &d->snaps[k];
        o->snapshots[o->n_snapshots++] = (struct am_snapshot){
            .id = xstrdup(s->id),
            .name = xstrdup(s->name),
            .consistency = xstrdup(s->checkpoint ?
                                       SNAPSHOT_CONSISTENCY_CHECKPOINT :
                                       SNAPSHOT_CONSISTENCY_POWERED_OFF),
            .created_at = s->created_at,
        };
        buf_printf(sig, "%s,", s->id);
    }
    o->revert_gen = d->meta.revert_gen;
    buf_printf(sig, "r%" PRId64 ";", d->meta.revert_gen);
}
