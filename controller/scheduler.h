/* Placement of pending VMs onto nodes, and node health. Runs on VM
 * creation and from the reconciler thread. */
#pragma once

#include "controller/app.h"

/* Place one pending VM if some node fits; otherwise record why not in its
 * state_reason. 1 placed, 0 not placed, -errno on store failure. */
int scheduler_place(struct app *a, const char *vm_id);
/* Try every pending VM. Returns how many were placed. */
int scheduler_run(struct app *a);
/* Mark VMs of nodes silent for three heartbeat intervals `unknown`. */
void health_check(struct app *a);

/* Background thread running scheduler_run + health_check every second. */
int reconciler_start(struct app *a);
void reconciler_stop(void);
