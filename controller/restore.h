/* Starting a VM again from a backup: the placement part (restore, and the
 * leader's passes that move VMs) and the node report that ends it. */
#pragma once

#include "controller/app.h"

/* Place VM vm_id anew from its ready backup backup_id (checked by the
 * caller) on node `pin` (an id) or the node placement picks, and record
 * event vm.restore by `actor`. 1 placed, 0 with *ret_why (caller frees)
 * when it cannot move, -errno. */
int restore_start(struct app *a, const char *vm_id, const char *backup_id,
                  const char *pin, const char *actor, char **ret_why);

/* The leader's evacuation pass: each VM with restart policy
 * on-host-failure whose node has been unreachable (or removed) for the
 * hub's evacuate-after is restored on another node from its latest ready
 * backup (event vm.evacuate); without a backup it is marked lost with the
 * reason (event vm.lost); when no node can take it, it waits with the
 * reason in state_reason and is tried again next pass. */
void evacuate_tick(struct app *a);

/* The restart policies a VM may have. */
extern const char *const restore_policies[];

/* Node report: VM vm_id is `state` on the node it is placed on. Once its
 * domain exists there, the placement no longer restores (restore_backup
 * cleared). Inside the caller's transaction; the store's result. */
int restore_seen(struct app *a, const char *vm_id, const char *state);
