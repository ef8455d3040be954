/* Placement of pending VMs onto nodes, and node health. Runs on VM
 * creation and from the reconciler thread. */
#pragma once

#include "controller/app.h"
#include "controller/placement.h"

/* What a VM asks of placement: req, with the storage its label selectors
 * and anti-affinity nodes point into. */
struct sched_ask {
    struct place_req req;
    json_t *labels, *avoid;
    /* Host ports the VM asked for and has not got ({proto, want_port}),
     * the nodes holding one of them already, and the nodes permitting one
     * outside their range ({node_id, port}); NULL when none were asked. */
    json_t *wanted, *taken, *permits;
    const char **lab, **av, **bl;
    /* req.port_blocked as indexes into the fleet it was last worked out
     * on, as a kept decision takes it. */
    size_t *bl_at, n_bl_at;
};
/* Fill q->req's labels (from labels_json, a JSON array of "key=value"), its
 * avoid list (nodes with a live VM of account_id's anti-affinity group,
 * other than vm_id; none when group is NULL) and the nodes where vm_id's
 * requested host ports do not fit (none without vm_id). 0 or -errno. */
int sched_ask_fill(struct app *a, struct sched_ask *q, const char *account_id,
                   const char *vm_id, const char *labels_json,
                   const char *group);
void sched_ask_free(struct sched_ask *q);

/* The hub's default cap in nano-tokens per hour, -1 for none. */
int64_t scheduler_default_cap(const struct app *a);

/* Decide where r would go now, placing nothing: 1 and *ret_choice {node_id,
 * price_hour, offer, filtered, ...}, 0 and *ret_choice {filtered, reason}
 * when no node passes, -errno on store failure. */
int scheduler_decide(struct app *a, const struct place_req *r,
                     json_t **ret_choice);

/* Place one pending VM if some node fits; otherwise record why not in its
 * state_reason. 1 placed, 0 not placed, -errno on store failure. */
int scheduler_place(struct app *a, const char *vm_id);
/* Place VM vm_id anew from backup backup_id (a restore, migration or
 * evacuation): on node `pin` when not NULL, else on the best node other
 * than the one it is on, through the filters a create passes; its
 * published ports keep their host ports on the new node or it does not
 * move. Bumps its placement generation (fencing the old node's domain),
 * sets restore_backup, closes its deal and opens one at the new node's
 * offer within the VM's price cap. Runs as a (nested) transaction of its
 * own. 1 and ret_node; 0 and *ret_why (caller frees) when it cannot move
 * (nothing changed); -errno. */
int scheduler_replace(struct app *a, const char *vm_id, const char *pin,
                      const char *backup_id, char ret_node[UUID_STR_LEN + 1],
                      char **ret_why);
/* Say that what placement sees of some node changed (approval, removal,
 * drain, offer, region, labels, policy): the next placement loads the
 * fleet again instead of deciding on the cached one. */
void scheduler_fleet_changed(void);
/* Load the cached fleet again when decisions used it and it is getting
 * old, so that they seldom load it themselves; nothing inside a
 * transaction or for a fleet nothing used since its load. The reconciler
 * calls it every tick. */
void scheduler_fleet_refresh(struct app *a);
/* Try every pending VM. Returns how many were placed. */
int scheduler_run(struct app *a);
/* Mark VMs of nodes silent for three heartbeat intervals `unknown`. */
void health_check(struct app *a);

/* scheduler_run's statement for the VMs it places (test_query_plans). */
extern const char scheduler_sql_pending[];
/* Its read of those VMs' rows, a batch's few at a time. */
extern const char scheduler_sql_ahead[];

/* Background thread running scheduler_run + health_check every second. */
int reconciler_start(struct app *a);
void reconciler_stop(void);
