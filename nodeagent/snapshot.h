/* A VM's snapshots on its node: checking what the desired document asks
 * (api/agentproto.h), planning the libvirt calls that get the domain
 * there, carrying them out, and reporting what the domain holds. The
 * controller's wish is keyed by snapshot id (kept in each snapshot's
 * description), so a retried or repeated document never takes one twice. */
#pragma once

#include "api/agentmsg.h"
#include "common/buf.h"
#include "nodeagent/reconcile.h"

/* Check the snapshot members of desired VM entry `vm`. 0, or -EINVAL with
 * a reason (caller frees). */
int snapshot_check(const json_t *vm, char **ret_reason);

/* Append to p the snapshot actions that move domain `d` (NULL: none yet,
 * nothing to do) towards entry `vm`: deletions of snapshots it should not
 * hold, then creations, then a revert whose generation is newer than the
 * domain's. True when a revert was planned. Pure. */
bool snapshot_plan(struct reconcile_plan *p, const json_t *vm,
                   const struct virt_dom *d);

/* Carry out one RC_SNAPSHOT_* action on the pass's working copy `d` of the
 * domain. 0, or -errno after recording the failure. */
int snapshot_execute(struct reconcile_ctx *c, const struct reconcile_action *a,
                     struct virt_dom *d, int64_t rev, int64_t now_ms);

/* Add the snapshots domain `d` holds and its revert generation to status
 * entry `o`, and a summary of them to `sig`. Nothing without a domain. */
void snapshot_status(const struct virt_dom *d, struct am_vm_status *o,
                     struct buf *sig);
