/* Backup schedules, retention and the backup store's hygiene: the
 * leader's passes that start each VM's scheduled backup when it is due,
 * prune its scheduled backups past its keep, and sweep the store of blobs
 * no row owns and of uploads nobody finishes. */
#pragma once

#include "controller/app.h"

#include <stdint.h>

/* The schedules a VM may have, NULL-terminated (a JF_ENUM's choices):
 * "off", "hourly", "daily", "weekly". */
extern const char *const bsched_names[];

/* How many scheduled backups a VM keeps: 1 .. BSCHED_KEEP_MAX. */
#define BSCHED_KEEP_MAX 1000
/* The most scheduled backups the leader starts in one pass (about a
 * second), so a hub whose VMs all fell due while it was down starts them
 * a few at a time. */
#define BSCHED_STARTS_PER_PASS 10
/* A VM whose backup is due but cannot start now (one under way, its node
 * unreachable, its domain not made yet) is tried again this much later. */
#define BSCHED_RETRY_S 60
/* Each VM's slot lies at its own offset (a hash of its id) into the
 * first BSCHED_SPREAD_S seconds of each period (all of an hour for
 * hourly): 1,000 VMs due "at midnight" start over an hour, not at once. */
#define BSCHED_SPREAD_S 3600
/* How often retention looks at every VM besides right after a scheduled
 * backup is ready, and how often the store is swept (also at start). */
#define BSCHED_PRUNE_S 600
#define BSCHED_SWEEP_S 3600
/* The sweep leaves the files of a backup failed less than this long ago:
 * a commit under way when it failed may still make it ready. */
#define BSCHED_FAILED_KEEP_S 3600

/* Seconds between a schedule's backups; 0 for "off" or an unknown one. */
int64_t bsched_period_s(const char *schedule);

/* The first slot of VM vm_id under `schedule` strictly after `now`:
 * periods are aligned to UTC (hours, midnights, Mondays), the VM's offset
 * into them fixed by its id. 0 for "off". Pure. */
int64_t bsched_next(const char *schedule, const char *vm_id, int64_t now);

/* Set VM vm_id's schedule ("off" drops it; its backups stay) and, when
 * keep > 0, how many scheduled backups it keeps; the next slot is counted
 * from now. Inside the caller's transaction; the store's result. */
int bsched_set(struct app *a, const char *vm_id, const char *schedule,
               int64_t keep);

/* Retention should look at the VMs soon (a scheduled backup became
 * ready, a keep was lowered). */
void bsched_prune_wanted(void);

/* The leader's pass: start the backups that are due (event
 * vm.backup_scheduled; never a second one under way for a VM), prune
 * scheduled backups past each VM's keep, oldest first (event
 * vm.backup_pruned; never one a placement restores from or a migration
 * moves through, never the VM's newest ready backup) and failed scheduled
 * backups past the same count, and sweep the store
 * at start and every BSCHED_SWEEP_S. */
void bsched_tick(struct app *a);

/* Sweep the backup store: blobs and uploads no row owns, and files of
 * backups failed over BSCHED_FAILED_KEEP_S ago, are removed; a backup
 * under way whose bytes have not moved for the hub's
 * backup-abandon-after is failed as abandoned (event vm.backup_failed),
 * its upload removed by a later sweep. Returns how many files went,
 * or -errno when the store cannot be listed. */
int bsched_sweep(struct app *a);

/* Orphans removed by this process since it started: committed blobs
 * (blob) and partial uploads (upload), for /metrics. */
void bsched_orphans_removed(uint64_t *ret_blobs, uint64_t *ret_uploads);
