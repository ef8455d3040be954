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

/* The node a request names in "node" (id or name): approved and not
 * removed, as {id, name} in *ret_pin. Answers 404 (or the store's error)
 * and returns false otherwise. */
bool restore_node_arg(struct app *a, struct http_request *r,
                      const char *node, json_t **ret_pin);
/* Whether node `node` (an id, may be NULL) is approved-and-present and
 * has reported within three heartbeats. */
bool restore_node_reachable(struct app *a, const char *node);
/* Whether the VM (a row of vm_lookup) runs, or is meant to: it cannot
 * leave a reachable node so. */
bool restore_vm_runs(const json_t *vm);

/* Whether VM vm_id's migration is taking its backup (a start is refused
 * meanwhile). */
bool migrate_under_way(struct app *a, const char *vm_id);

/* The leader's migration pass: each VM whose migration is 'backing-up'
 * moves once its backup is ready and it is still stopped (restore_start
 * on the pinned node or the one placement picks; event vm.migrate), and
 * its migration fails with the reason when the backup failed or went,
 * the VM was started or moved (restore, evacuation) meanwhile, no node
 * can take it (nothing moves), or, with judge_nodes (the leader trusts
 * nodes' last reports), its node became unreachable before the backup
 * was in. The migration of a VM being deleted is dropped. */
void migrate_tick(struct app *a, bool judge_nodes);

/* The restart policies a VM may have. */
extern const char *const restore_policies[];

/* Node report: VM vm_id is `state` on the node it is placed on. Once its
 * domain exists there, the placement no longer restores (restore_backup
 * cleared). Inside the caller's transaction; the store's result. */
int restore_seen(struct app *a, const char *vm_id, const char *state);
