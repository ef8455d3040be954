/* The store side of VM health checks (migration 033): adding them, what
 * the desired document carries, the states nodes report (an event on each
 * change) and the restart action with its back-off, run by the leading
 * replica. */
#pragma once

#include "api/agentmsg.h"
#include "controller/app.h"

/* Add the check in `body` (the API's JSON, checked here) to VM vm_id,
 * inside the caller's transaction. 0 with its id in ret_id; -EINVAL with
 * *err (caller clears); -E2BIG when the VM has HC_PER_VM_MAX already;
 * -errno from the store. */
int vmhealth_add(struct store *s, const char *vm_id, const json_t *body,
                 char ret_id[37], struct jerr *err);
/* The checks of VM vm_id with their states, as the API shows them (a new
 * array; caller owns). NULL on a store error. */
json_t *vmhealth_list(struct store *s, const char *vm_id);
/* One check as the API shows it (caller owns), or NULL. */
json_t *vmhealth_get(struct store *s, const char *vm_id, const char *id);
/* Delete check id of vm_id: 1 when one went, 0 when none, -errno. */
int vmhealth_remove(struct store *s, const char *vm_id, const char *id);
/* Delete all checks of a VM that goes. */
void vmhealth_drop_vm(struct store *s, const char *vm_id);

/* The health checks of every VM placed on node_id (or of vm_id only,
 * when it is placed there), for its desired document: rows {vm_id, id,
 * spec} in order of vm_id, then of creation. 0 or -errno. */
int vmhealth_desired_node(struct store *s, const char *node_id,
                          const char *vm_id, json_t **ret_rows);
/* Fill vm->checks from `rows` (vmhealth_desired_node()'s of this VM). A
 * stored spec that cannot be read is logged and left out. */
void vmhealth_desired_from(const json_t *rows, struct am_vm *vm);

/* What node_id reported of VM v (already checked to be on it): each
 * check's state, an event `vm.health` on every change; a VM not
 * running has its checks unknown. Inside the status transaction. */
void vmhealth_record(struct app *a, const char *node_id,
                     const struct am_vm_status *v, int64_t now);

/* Restart VMs whose check with action restart has been unhealthy for its
 * grace, at most once per back-off (hc_restart_backoff_s): through the
 * desired state, as a tenant's reboot, with an event
 * `vm.health-restart`; after HC_RESTARTS_MAX in a row no more until the
 * check is healthy again. The number restarted. */
int vmhealth_tick(struct app *a, int64_t now);
