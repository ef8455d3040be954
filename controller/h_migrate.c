/* Cold migration: a stopped VM moves to another node through the hub's
 * backup store. The route takes a backup of kind 'migrate' on the VM's
 * node (as a tenant's backup is taken) and records the migration on the
 * VM; the leader's migrate_tick() places the VM anew from that backup
 * once it is ready (restore_start: same id, name, addresses and host
 * ports, the old deal closed and one opened at the new node's price), or
 * ends the migration 'failed' with the reason, the VM untouched where it
 * was. A start is refused while the backup is under way; deleting that
 * backup cancels the migration. */
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/bstore.h"
#include "controller/handlers.h"
#include "controller/restore.h"

#include <errno.h>

#define MOVED_MEANWHILE "the VM was moved meanwhile (restore or evacuation)"
#define MIGRATION_COLS "v.migrate_state, v.migrate_backup, v.migrate_error, " \
                       "f.name AS from_name, v.migrate_from, t.name AS "     \
                       "to_name, v.migrate_to"
#define MIGRATION_FROM " FROM vms v LEFT JOIN nodes f ON f.id = "           \
                       "v.migrate_from LEFT JOIN nodes t ON t.id = "        \
                       "v.migrate_to "

/* The node's name, or its id when its row is gone; JSON null for none. */
static json_t *node_ref(const json_t *row, const char *name, const char *id)
{
    const char *s = json_str(row, name) ? json_str(row, name)
                                        : json_str(row, id);
    return s ? json_string(s) : json_null();
}

static json_t *migration_render(const json_t *row)
{
    const char *err = json_str(row, "migrate_error");
    const char *bk = json_str(row, "migrate_backup");
    return json_pack("{s:s, s:o, s:o, s:o, s:o}", "state",
                     json_str(row, "migrate_state"), "backup",
                     bk ? json_string(bk) : json_null(), "from",
                     node_ref(row, "from_name", "migrate_from"), "to",
                     node_ref(row, "to_name", "migrate_to"), "error",
                     err ? json_string(err) : json_null());
}

/* Answer VM vm_id's migration with `status`; 404 no-migration when it
 * never had one. */
static void reply_migration(struct app *a, struct http_request *r,
                            int status, const char *vm_id)
{
    json_auto_t *row = NULL;
    int e = store_query_one(a->store, &row, "SELECT " MIGRATION_COLS
                            MIGRATION_FROM "WHERE v.id = $1", "s", vm_id);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    if (!json_str(row, "migrate_state")) {
        http_reply_problem(r, 404, "no-migration", NULL,
                           "the VM has never been migrated");
        return;
    }
    http_reply_json(r, status, migration_render(row));
}

bool migrate_under_way(struct app *a, const char *vm_id)
{
    return store_query_int(a->store, 0, "SELECT COUNT(*) FROM vms WHERE id = "
                           "$1 AND migrate_state = 'backing-up'", "s",
                           vm_id) > 0;
}

/* Why the VM cannot begin a migration now (static text), or NULL. */
static const char *migrate_refusal(struct app *a, const json_t *vm)
{
    if (streq(json_str(vm, "desired_state"), "deleted"))
        return "the VM is being deleted";
    if (streq(json_str(vm, "state"), "lost"))
        return "the VM is lost: restore it from a backup (fogctl restore)";
    if (!json_str(vm, "node_id"))
        return "the VM is not placed on a node yet";
    if (!restore_node_reachable(a, json_str(vm, "node_id")))
        return "the VM's node is unreachable: restore it from a backup "
               "(fogctl restore)";
    if (restore_vm_runs(vm))
        return "the VM runs: stop it first";
    return NULL;
}

HANDLER(h_vm_migrate)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const struct jfield fields[] = {
        { "node", JF_STRING, false, 1, 255, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), false))
        return;
    const char *node = json_str(http_req_json(r), "node");
    json_auto_t *vm = NULL, *pin = NULL;
    int e = vm_lookup(a, r, &vm);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    const char *id = json_str(vm, "id"), *from = json_str(vm, "node_id");
    const char *why = migrate_refusal(a, vm);
    if (why) {
        http_reply_problem(r, 409, "conflict", NULL, "%s", why);
        return;
    }
    if (node && !restore_node_arg(a, r, node, &pin))
        return;
    if (pin && streq(json_str(pin, "id"), from)) {
        http_reply_problem(r, 409, "conflict", "node",
                           "the VM is on node '%s' already",
                           json_str(pin, "name"));
        return;
    }
    char bk[UUID_STR_LEN + 1];
    if ((e = store_tx_begin(a->store)) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    /* backup_add takes the VM's lock: a second request waits, then sees
     * this one's migration. */
    e = backup_add(a, vm, "migrate", bk);
    if (e == 0 && migrate_under_way(a, id))
        e = -EALREADY;
    if (e == 0)
        e = store_exec(a->store, "UPDATE vms SET migrate_state = "
                       "'backing-up', migrate_backup = $1, migrate_to = $2, "
                       "migrate_from = $3, migrate_error = NULL, updated_at = "
                       "$4 WHERE id = $5", "sssis", bk,
                       pin ? json_str(pin, "id") : NULL, from, now_s(), id);
    if (e >= 0)
        e = store_tx_commit(a->store);
    else
        store_tx_rollback(a->store);
    if (e == -EALREADY) {
        http_reply_problem(r, 409, "conflict", NULL,
                           "a migration of the VM is already under way");
        return;
    }
    if (e == -EDQUOT) {
        reply_backups_under_way(r, vm);
        return;
    }
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    reqctx_set_detail(r, "migration of VM %s through backup %s%s%s", id, bk,
                      pin ? " to node " : "", pin ? json_str(pin, "id") : "");
    log_info("vm %s: migration by %s begins with backup %s", id, c->actor, bk);
    app_node_changed(a, from);
    reply_migration(a, r, 202, id);
}

HANDLER(h_vm_migration)
{
    struct app *a = app;
    json_auto_t *vm = NULL;
    int e = vm_lookup(a, r, &vm);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    reply_migration(a, r, 200, json_str(vm, "id"));
}

/* The migration of VM `v` (a row of migrate_tick's) ends 'failed' with
 * why; the VM stays where it was. Its backup, if still to come, is no
 * longer wanted: failed too (the node stops sending it), so it holds no
 * place among the VM's backups under way. */
static int migrate_fail(struct app *a, const json_t *v, const char *why)
{
    const char *id = json_str(v, "id"), *bk = json_str(v, "migrate_backup");
    int e = store_exec(a->store, "UPDATE vms SET migrate_state = 'failed', "
                       "migrate_error = $1 WHERE id = $2 AND migrate_state = "
                       "'backing-up'", "ss", why, id);
    if (e <= 0)
        return e;
    _cleanup_free_ char *berr = xasprintf("its migration failed: %s", why);
    e = bk ? store_exec(a->store, "UPDATE vm_backups SET state = 'failed', "
                        "error = $1, done_at = $2 WHERE id = $3 AND state IN "
                        "('pending', 'uploading')", "sis", berr, now_s(), bk)
           : 0;
    if (e < 0)
        return e;
    /* Its bytes stay until the sweep: a commit under way may still make
     * the backup ready (h_backups.c), and must find them. */
    if (e > 0)
        app_node_changed(a, json_str(v, "node_id"));
    log_warn("vm %s: migration failed: %s", id, why);
    _cleanup_free_ char *d = xasprintf("migration from node '%s' failed: %s",
                                       json_str(v, "from_name"), why);
    return app_event(a, json_str(v, "account_id"), "hub:migrate",
                     "vm.migrate", id, 409, d);
}

/* Move VM `v` from its ready backup: 0 when the migration ended (moved
 * or failed), -errno to try again next pass. */
static int migrate_move(struct app *a, const json_t *v)
{
    const char *id = json_str(v, "id"), *bk = json_str(v, "migrate_backup");
    _cleanup_free_ char *why = NULL;
    json_auto_t *now = NULL;
    /* Nodes are woken (and a dropped backup's bytes removed) only once
     * the move commits. */
    int e = app_tx_begin(a);
    if (e < 0)
        return e;
    if ((e = store_lock(a->store, "vm", id)) < 0)
        goto fail;
    /* Read again under the lock: a start may have come in between. */
    if ((e = store_query_one(a->store, &now, "SELECT desired_state, "
                             "node_id, migrate_from, migrate_state FROM vms "
                             "WHERE id = $1", "s", id)) < 0)
        goto fail;
    if (!streq(json_str(now, "migrate_state"), "backing-up")) {
        app_tx_rollback(a);
        return 0;
    }
    if (!streq(json_str(now, "desired_state"), "stopped")) {
        e = migrate_fail(a, v, "started during its migration");
    } else if (!streq(json_str(now, "node_id"),
                      json_str(now, "migrate_from"))) {
        e = migrate_fail(a, v, MOVED_MEANWHILE);
    } else if ((e = restore_start(a, id, bk, json_str(v, "migrate_to"),
                                  "hub:migrate", &why)) == 0) {
        e = migrate_fail(a, v, why);
    } else if (e > 0) {
        json_auto_t *to = NULL;
        e = store_query_one(a->store, &to, "SELECT v.node_id, n.name FROM vms "
                            "v JOIN nodes n ON n.id = v.node_id WHERE v.id = "
                            "$1", "s", id);
        if (e == 0)
            e = store_exec(a->store, "UPDATE vms SET migrate_state = "
                           "'moved', migrate_to = $1 WHERE id = $2", "ss",
                           json_str(to, "node_id"), id);
        if (e >= 0) {
            _cleanup_free_ char *d = xasprintf(
                "from node '%s' to node '%s' through backup %s",
                json_str(v, "from_name"), json_str(to, "name"), bk);
            log_info("vm %s: moved %s", id, d);
            e = app_event(a, json_str(v, "account_id"), "hub:migrate",
                          "vm.migrate", id, 200, d);
        }
    }
    if (e >= 0 && (e = app_tx_commit(a)) >= 0)
        return 0;
fail:
    if (store_in_tx(a->store))
        app_tx_rollback(a);
    return e;
}

void migrate_tick(struct app *a, bool judge_nodes)
{
    json_auto_t *rows = NULL;
    if (store_query(a->store, &rows,
                    "SELECT v.id, v.account_id, v.desired_state, v.deleted_at, "
                    "v.node_id, v.migrate_from, "
                    "v.migrate_backup, v.migrate_to, COALESCE(f.name, "
                    "v.migrate_from) AS from_name, b.state AS backup_state, "
                    "b.error AS backup_error FROM vms v LEFT JOIN nodes f ON "
                    "f.id = v.migrate_from LEFT JOIN vm_backups b ON b.id = "
                    "v.migrate_backup WHERE v.migrate_state = 'backing-up' "
                    "ORDER BY v.id LIMIT 100", "") < 0)
        return;
    size_t i;
    json_t *v;
    json_array_foreach(rows, i, v) {
        if (!store_leading(a->store))
            break;
        const char *id = json_str(v, "id"), *bs = json_str(v, "backup_state");
        int e = 0;
        if (!json_is_null(json_object_get(v, "deleted_at")) ||
            streq(json_str(v, "desired_state"), "deleted")) {
            /* Nothing to move any more: the VM goes, its backups too. */
            e = store_exec(a->store, "UPDATE vms SET migrate_state = NULL, "
                           "migrate_backup = NULL, migrate_to = NULL, "
                           "migrate_from = NULL, migrate_error = NULL WHERE "
                           "id = $1", "s", id);
        } else if (!streq(json_str(v, "desired_state"), "stopped")) {
            e = migrate_fail(a, v, "started during its migration");
        } else if (!streq(json_str(v, "node_id"),
                          json_str(v, "migrate_from"))) {
            e = migrate_fail(a, v, MOVED_MEANWHILE);
        } else if (!bs) {
            e = migrate_fail(a, v, "its backup was deleted");
        } else if (streq(bs, "failed")) {
            _cleanup_free_ char *w = xasprintf(
                "the backup failed: %s", json_str(v, "backup_error")
                                             ? json_str(v, "backup_error")
                                             : "no reason given");
            e = migrate_fail(a, v, w);
        } else if (streq(bs, "ready")) {
            e = migrate_move(a, v);
        } else if (judge_nodes &&
                   !restore_node_reachable(a, json_str(v, "node_id"))) {
            /* Its node will not send the backup now: nothing moved, and
             * the VM may be started or restored again. */
            _cleanup_free_ char *w = xasprintf(
                "node '%s' became unreachable before the backup was in: "
                "restore the VM from a backup (fogctl restore) or migrate "
                "it again", json_str(v, "from_name"));
            e = migrate_fail(a, v, w);
        }
        if (e < 0)
            log_warn("vm %s: migration pass: %s", id, strerror(-e));
    }
}
