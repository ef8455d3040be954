/* Backup schedules, retention and store hygiene (see bsched.h). Every
 * change is a short transaction of its own whose node wakes and blob
 * removals wait for its commit (app_tx_begin), so a pass never holds the
 * store across a file operation. */
#include "controller/bsched.h"

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/bstore.h"
#include "controller/handlers.h"
#include "controller/restore.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const bsched_names[] = { "off", "hourly", "daily", "weekly",
                                     NULL };

static atomic_bool prune_wanted = true;
static _Atomic uint64_t removed_blobs, removed_uploads;
/* Only the leader's reconciler thread reads and writes these. */
static int64_t prune_at, sweep_at;

int64_t bsched_period_s(const char *schedule)
{
    if (streq(schedule, "hourly"))
        return 3600;
    if (streq(schedule, "daily"))
        return 86400;
    if (streq(schedule, "weekly"))
        return 7 * 86400;
    return 0;
}

/* FNV-1a: a VM's offset must be the same on every replica and after every
 * restart, and spread evenly over random UUIDs. */
static uint64_t id_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; s && *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

int64_t bsched_next(const char *schedule, const char *vm_id, int64_t now)
{
    int64_t period = bsched_period_s(schedule);
    if (period == 0)
        return 0;
    /* Weeks start on Monday: 1970-01-05 00:00 UTC. */
    int64_t base = period == 7 * 86400 ? 4 * 86400 : 0;
    int64_t spread = period < BSCHED_SPREAD_S ? period : BSCHED_SPREAD_S;
    int64_t off = (int64_t)(id_hash(vm_id) % (uint64_t)spread);
    int64_t k = (now - base) / period - ((now - base) % period < 0);
    int64_t next = base + k * period + off;
    while (next <= now)
        next += period;
    return next;
}

int bsched_set(struct app *a, const char *vm_id, const char *schedule,
               int64_t keep)
{
    int64_t next = bsched_next(schedule, vm_id, now_s());
    bool on = next > 0;
    int e = store_exec(a->store, "UPDATE vms SET backup_schedule = $1, "
                       "backup_next_at = $2, updated_at = $3 WHERE id = $4",
                       "siis", on ? schedule : NULL, on ? next : 0, now_s(),
                       vm_id);
    if (e >= 0 && !on)
        e = store_exec(a->store, "UPDATE vms SET backup_next_at = NULL WHERE "
                       "id = $1", "s", vm_id);
    if (e >= 0 && keep > 0)
        e = store_exec(a->store, "UPDATE vms SET backup_keep = $1 WHERE id = "
                       "$2", "is", keep, vm_id);
    if (e >= 0)
        bsched_prune_wanted();
    return e < 0 ? e : 0;
}

void bsched_prune_wanted(void)
{
    atomic_store(&prune_wanted, true);
}

void bsched_orphans_removed(uint64_t *ret_blobs, uint64_t *ret_uploads)
{
    *ret_blobs = atomic_load(&removed_blobs);
    *ret_uploads = atomic_load(&removed_uploads);
}

/* ---- starting what is due ------------------------------------------------ */

/* Why VM `vm` (a row of bsched_start's) cannot start its due backup now:
 * NULL when it can; *ret_skip when the slot is skipped rather than tried
 * again in BSCHED_RETRY_S. */
static const char *start_refusal(struct app *a, const json_t *vm,
                                 bool *ret_skip)
{
    const char *st = json_str(vm, "state");
    *ret_skip = true;
    if (streq(json_str(vm, "desired_state"), "deleted"))
        return "the VM is being deleted";
    if (streq(st, "lost"))
        return "the VM is lost";
    *ret_skip = false;
    if (!json_str(vm, "node_id"))
        return "the VM is not placed";
    /* A backup is taken of a domain its node has made, running or not. */
    if (!streq(st, "running") && !streq(st, "stopped") &&
        !streq(st, "paused") && !streq(st, "crashed"))
        return "the VM's domain is not made yet";
    if (!restore_node_reachable(a, json_str(vm, "node_id")))
        return "its node is unreachable";
    if (store_query_int(a->store, 1, "SELECT COUNT(*) FROM vm_backups WHERE "
                        "vm_id = $1 AND state IN ('pending', 'uploading')",
                        "s", json_str(vm, "id")) > 0)
        return "a backup of it is under way";
    return NULL;
}

/* Start VM vm_id's backup if it is (still) due at `now`, or move its next
 * try on. 0 or -errno. */
static int bsched_start(struct app *a, const char *vm_id, int64_t now)
{
    json_auto_t *vm = NULL;
    _cleanup_free_ char *d = NULL;
    int e = app_tx_begin(a);
    if (e < 0)
        return e;
    if ((e = store_lock(a->store, "vm", vm_id)) < 0)
        goto out;
    e = store_query_one(a->store, &vm, "SELECT id, account_id, name, node_id, "
                        "state, desired_state, backup_schedule, "
                        "backup_next_at FROM vms WHERE id = $1 AND "
                        "deleted_at IS NULL", "s", vm_id);
    if (e < 0)
        goto out;
    const char *sched = json_str(vm, "backup_schedule");
    int64_t due = json_int(vm, "backup_next_at", INT64_MAX);
    int64_t next = bsched_next(sched, vm_id, now);
    if (next == 0) {
        /* No schedule (any more): nothing is due. */
        e = store_exec(a->store, "UPDATE vms SET backup_next_at = NULL WHERE "
                       "id = $1", "s", vm_id);
        goto out;
    }
    if (due > now) {
        e = 0; /* moved on meanwhile */
        goto out;
    }
    bool skip;
    const char *why = start_refusal(a, vm, &skip);
    char id[UUID_STR_LEN + 1];
    if (!why) {
        e = backup_add(a, vm, "scheduled", id);
        if (e == -EDQUOT)
            why = "a backup of it is under way";
        else if (e < 0)
            goto out;
    }
    if (why) {
        int64_t retry = skip || now + BSCHED_RETRY_S > next
                            ? next : now + BSCHED_RETRY_S;
        log_debug("vm %s: scheduled backup waits: %s", vm_id, why);
        e = store_exec(a->store, "UPDATE vms SET backup_next_at = $1 WHERE "
                       "id = $2", "is", retry, vm_id);
        goto out;
    }
    if ((e = store_exec(a->store, "UPDATE vms SET backup_next_at = $1 WHERE "
                        "id = $2", "is", next, vm_id)) < 0)
        goto out;
    d = xasprintf("backup %s started by its %s schedule", id, sched);
    if ((e = app_event(a, json_str(vm, "account_id"), "hub:schedule",
                       "vm.backup_scheduled", vm_id, 202, d)) < 0)
        goto out;
    app_node_changed(a, json_str(vm, "node_id"));
    log_info("vm %s: %s", vm_id, d);
out:
    if (e < 0) {
        app_tx_rollback(a);
        return e == -ENOENT ? 0 : e; /* gone meanwhile */
    }
    return app_tx_commit(a);
}

/* ---- retention ------------------------------------------------------------ */

/* Prune backup `id` of VM `v` when it is still in `state` (ready, or
 * failed), not in use and not the VM's newest ready backup: its row in
 * one transaction with its event, its blob after the commit. 1 pruned, 0
 * kept, -errno. */
static int prune_one(struct app *a, const json_t *v, const char *id,
                     const char *state)
{
    const char *vm_id = json_str(v, "id");
    _cleanup_free_ char *d = NULL;
    int e = app_tx_begin(a);
    if (e < 0)
        return e;
    if ((e = store_lock(a->store, "vm", vm_id)) < 0)
        goto fail;
    e = store_exec(a->store, "DELETE FROM vm_backups WHERE id = $1 AND "
                   "vm_id = $2 AND state = $3 AND NOT EXISTS (SELECT 1 "
                   "FROM vms WHERE restore_backup = $1) AND NOT EXISTS "
                   "(SELECT 1 FROM vms WHERE migrate_backup = $1) AND NOT "
                   "EXISTS (SELECT 1 FROM vm_backups k WHERE k.parent_id = "
                   "$1) AND id <> "
                   "COALESCE((SELECT b.id FROM vm_backups b WHERE b.vm_id = "
                   "$2 AND b.state = 'ready' ORDER BY b.created_at DESC, "
                   "b.id DESC LIMIT 1), '')", "sss", id, vm_id, state);
    if (e <= 0)
        goto fail;
    d = xasprintf("%sbackup %s pruned: the VM keeps its newest %lld "
                  "%sscheduled backups", streq(state, "failed") ? "failed " : "",
                  id, (long long)json_int(v, "backup_keep", 0),
                  streq(state, "failed") ? "failed " : "");
    if ((e = app_event(a, json_str(v, "account_id"), "hub:schedule",
                       "vm.backup_pruned", vm_id, 200, d)) < 0)
        goto fail;
    app_backup_blob_drop(a, id);
    if ((e = app_tx_commit(a)) < 0)
        return e;
    log_info("vm %s: %s", vm_id, d);
    return 1;
fail:
    app_tx_rollback(a);
    return e < 0 ? e : 0;
}

/* Each VM with a schedule and more scheduled backups in `state` than it
 * keeps: the oldest past its keep go, except those in use. Failed ones
 * are kept as many, so a schedule that keeps failing shows its latest
 * reasons without growing the list for ever. */
static void prune_pass(struct app *a, const char *state)
{
    json_auto_t *vms = NULL;
    if (store_query(a->store, &vms, "SELECT v.id, v.account_id, "
                    "v.backup_keep FROM vms v WHERE v.backup_schedule IS NOT "
                    "NULL AND v.deleted_at IS NULL AND (SELECT COUNT(*) FROM "
                    "vm_backups b WHERE b.vm_id = v.id AND b.kind = "
                    "'scheduled' AND b.state = $1) > v.backup_keep "
                    "ORDER BY v.id LIMIT 100", "s", state) < 0)
        return;
    size_t i;
    json_t *v;
    json_array_foreach(vms, i, v) {
        json_auto_t *rows = NULL;
        if (!store_leading(a->store) ||
            store_query(a->store, &rows, "SELECT id FROM vm_backups WHERE "
                        "vm_id = $1 AND kind = 'scheduled' AND state = $2 "
                        "ORDER BY created_at DESC, id DESC", "ss",
                        json_str(v, "id"), state) < 0)
            break;
        size_t keep = (size_t)json_int(v, "backup_keep", 1);
        /* Those past the keep, the newest first: a backup others build
         * on stays while they do, so a chain past the keep goes in one
         * pass from its top down, and one with a kept backup on top of it
         * stays whole. */
        for (size_t k = keep; k < json_array_size(rows); k++) {
            const char *id = json_str(json_array_get(rows, k), "id");
            int e = prune_one(a, v, id, state);
            if (e < 0)
                log_warn("vm %s: cannot prune backup %s: %s",
                         json_str(v, "id"), id, strerror(-e));
        }
    }
}

/* ---- the store's hygiene --------------------------------------------------- */

static void count_removed(struct app *a, const struct bstore_entry *en,
                          const char *why)
{
    int e = a->backups->ops->remove(a->backups, en->id);
    if (e < 0 && e != -ENOENT) {
        log_warn("backup store: cannot remove %s %s: %s",
                 en->committed ? "blob" : "upload", en->id, strerror(-e));
        return;
    }
    atomic_fetch_add(en->committed ? &removed_blobs : &removed_uploads, 1);
    log_info("backup store: removed %s %s: %s",
             en->committed ? "blob" : "upload", en->id, why);
}

/* Fail backup `id` (a row: id, vm_id, account_id, name, node_id) as
 * abandoned; its upload goes with a later sweep (BSCHED_FAILED_KEEP_S),
 * since a commit under way would still make it ready. True when it did. */
static bool abandon(struct app *a, const json_t *row, int64_t idle_s)
{
    const char *id = json_str(row, "id");
    _cleanup_free_ char *why = xasprintf("abandoned: no bytes from its node "
                                         "for %lld s", (long long)idle_s);
    if (app_tx_begin(a) < 0)
        return false;
    int n = store_exec(a->store, "UPDATE vm_backups SET state = 'failed', "
                       "error = $1, done_at = $2 WHERE id = $3 AND state IN "
                       "('pending', 'uploading')", "sis", why, now_s(), id);
    int e = n;
    if (n > 0) {
        _cleanup_free_ char *d = xasprintf("backup %s of VM %s failed: %s",
                                           id, json_str(row, "name"), why);
        e = app_event(a, json_str(row, "account_id"), "hub",
                      "vm.backup_failed", json_str(row, "vm_id"), 200, d);
        app_node_changed(a, json_str(row, "node_id"));
    }
    if (e < 0) {
        app_tx_rollback(a);
        return false;
    }
    if (app_tx_commit(a) < 0 || n == 0)
        return false;
    log_warn("backup %s: %s", id, why);
    return true;
}

#define SWEEP_ROW "SELECT b.id, b.vm_id, b.state, b.created_at, v.account_id, " \
                  "v.name, v.node_id FROM vm_backups b JOIN vms v ON v.id = "   \
                  "b.vm_id "

int bsched_sweep(struct app *a)
{
    _cleanup_free_ struct bstore_entry *en = NULL;
    size_t n = 0;
    int e = a->backups->ops->entries(a->backups, &en, &n);
    if (e < 0) {
        log_warn("backup store: cannot list it: %s", strerror(-e));
        return e;
    }
    uint64_t b0, u0;
    bsched_orphans_removed(&b0, &u0);
    int64_t now = now_s(), limit = a->cfg.backup_abandon_s;
    json_auto_t *uploads = json_object(); /* id -> mtime of its upload */
    for (size_t i = 0; i < n; i++) {
        json_auto_t *row = NULL;
        /* A row is made before its first byte is taken and deleted before
         * its blob: a file without one is an orphan. */
        e = store_query_one(a->store, &row, "SELECT b.id, b.state, "
                            "b.done_at FROM vm_backups b WHERE b.id = $1",
                            "s", en[i].id);
        if (e == -ENOENT) {
            count_removed(a, &en[i], "no backup owns it");
            continue;
        }
        if (e < 0)
            continue;
        /* A backup failed an hour ago is never read nor written again
         * (a commit under way when it failed still makes it ready). An
         * upload of a ready one is left alone: its commit may be renaming
         * it now. */
        const char *st = json_str(row, "state");
        if (streq(st, "failed") &&
            json_int(row, "done_at", now) < now - BSCHED_FAILED_KEEP_S)
            count_removed(a, &en[i], "its backup failed");
        else if (streq(st, "failed"))
            continue;
        else if (!en[i].committed && !streq(st, "ready"))
            json_object_set_new(uploads, en[i].id,
                                json_integer(en[i].mtime));
    }
    /* Backups under way whose node has sent nothing for `limit`: counted
     * from their upload's last byte, or their creation before the first. */
    json_auto_t *rows = NULL;
    if (store_query(a->store, &rows, SWEEP_ROW "WHERE b.state IN ('pending', "
                    "'uploading') AND b.created_at < $1 ORDER BY b.created_at "
                    "LIMIT 1000", "i", now - limit) == 0) {
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row) {
            json_t *m = json_object_get(uploads, json_str(row, "id"));
            int64_t last = m ? json_integer_value(m)
                             : json_int(row, "created_at", now);
            if (last >= now - limit)
                continue;
            abandon(a, row, now - last);
        }
    }
    uint64_t b1, u1;
    bsched_orphans_removed(&b1, &u1);
    return (int)((b1 - b0) + (u1 - u0));
}

/* ---- the pass -------------------------------------------------------------- */

void bsched_tick(struct app *a)
{
    int64_t now = now_s();
    json_auto_t *rows = NULL;
    if (store_query(a->store, &rows, "SELECT id FROM vms WHERE backup_next_at "
                    "<= $1 AND deleted_at IS NULL ORDER BY backup_next_at, id "
                    "LIMIT $2", "ii", now,
                    (int64_t)BSCHED_STARTS_PER_PASS) == 0) {
        size_t i;
        json_t *v;
        json_array_foreach(rows, i, v) {
            if (!store_leading(a->store))
                return;
            int e = bsched_start(a, json_str(v, "id"), now);
            if (e < 0)
                log_warn("vm %s: scheduled backup: %s", json_str(v, "id"),
                         strerror(-e));
        }
    }
    if (atomic_exchange(&prune_wanted, false) || now >= prune_at ||
        now < prune_at - BSCHED_PRUNE_S) {
        prune_pass(a, "ready");
        prune_pass(a, "failed");
        prune_at = now + BSCHED_PRUNE_S;
    }
    if (now >= sweep_at || now < sweep_at - BSCHED_SWEEP_S) {
        bsched_sweep(a);
        sweep_at = now + BSCHED_SWEEP_S;
    }
}
