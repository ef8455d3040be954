/* /v1/vms/{id}/snapshots: a VM's snapshots as its tenant asks for them.
 * The controller only records the wish (a row, a revert generation) and
 * puts it in the node's desired document; the node takes, reverts and
 * deletes them through libvirt and reports what it holds, which moves
 * each row on (controller/h_agent.c, snapshots_record). */
#include "api/agentproto.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "controller/handlers.h"

#include <errno.h>
#include <stdio.h>

#define SNAP_COLS "s.id, s.vm_id, s.name, s.state, s.consistency, "        \
                  "s.created_at, s.taken_at, (v.revert_snapshot = s.id AND " \
                  "v.revert_done_gen < v.revert_gen) AS reverting"
#define SNAP_FROM " FROM vm_snapshots s JOIN vms v ON v.id = s.vm_id "

static json_t *snapshot_render(json_t *row)
{
    json_t *o = json_object();
    static const char *const copy[] = { "id", "vm_id", "name", "state",
                                        "consistency" };
    for (size_t i = 0; i < ARRAY_SIZE(copy); i++) {
        json_t *v = json_object_get(row, copy[i]);
        json_object_set(o, copy[i], v ? v : json_null());
    }
    static const char *const times[] = { "created_at", "taken_at" };
    for (size_t i = 0; i < ARRAY_SIZE(times); i++) {
        json_t *v = json_object_get(row, times[i]);
        char t[21];
        if (json_is_integer(v))
            time_format_rfc3339(json_integer_value(v), t);
        json_object_set_new(o, times[i],
                            json_is_integer(v) ? json_string(t) : json_null());
    }
    json_object_set_new(o, "reverting",
                        json_boolean(json_int(row, "reverting", 0) != 0));
    return o;
}

/* The VM of the route and, with `snap_param`, its snapshot named (or with
 * the id) by the second parameter. Answers and returns false when either
 * is missing. */
static bool snapshot_target(struct app *a, struct http_request *r,
                            json_t **ret_vm, json_t **ret_snap)
{
    json_auto_t *vm = NULL;
    int e = vm_lookup(a, r, &vm);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return false;
    }
    if (ret_snap) {
        const char *ref = http_req_param(r, 1);
        bool ok = ref && (name_is_valid(ref) || uuid_is_valid(ref));
        e = -ENOENT;
        if (ok)
            e = store_query_one(a->store, ret_snap, "SELECT " SNAP_COLS
                                SNAP_FROM "WHERE s.vm_id = $1 AND (s.name = "
                                "$2 OR s.id = $3)", "sss", json_str(vm, "id"),
                                ref, ref);
        if (e < 0) {
            /* Only a well-formed reference is quoted back. */
            if (e == -ENOENT)
                http_reply_problem(r, 404, "not-found", NULL,
                                   "VM %s has no snapshot %s%s%s",
                                   http_req_param(r, 0), ok ? "'" : "",
                                   ok ? ref : "by that name", ok ? "'" : "");
            else
                reply_store_error(r, e, "snapshot");
            return false;
        }
    }
    *ret_vm = json_incref(vm);
    return true;
}

/* A VM whose snapshots may change: placed, not being deleted, not lost. */
static bool snapshot_vm_usable(struct http_request *r, const json_t *vm)
{
    const char *why = NULL;
    if (streq(json_str(vm, "desired_state"), "deleted"))
        why = "the VM is being deleted";
    else if (streq(json_str(vm, "state"), "lost"))
        why = "the VM is lost";
    else if (!json_str(vm, "node_id"))
        why = "the VM is not placed on a node yet";
    if (why)
        http_reply_problem(r, 409, "conflict", NULL, "%s", why);
    return !why;
}

static void reply_snapshot(struct app *a, struct http_request *r, int status,
                           const char *id)
{
    json_auto_t *row = NULL;
    if (store_query_one(a->store, &row, "SELECT " SNAP_COLS SNAP_FROM
                        "WHERE s.id = $1", "s", id) < 0) {
        http_reply_problem(r, 500, "internal", NULL, "snapshot vanished");
        return;
    }
    http_reply_json(r, status, snapshot_render(row));
}

HANDLER(h_snapshot_create)
{
    static const struct jfield fields[] = {
        { "name", JF_NAME, false, 0, 0, NULL },
    };
    struct app *a = app;
    if (!body_check(r, fields, ARRAY_SIZE(fields), false))
        return;
    json_auto_t *vm = NULL;
    if (!snapshot_target(a, r, &vm, NULL) || !snapshot_vm_usable(r, vm))
        return;
    const char *vm_id = json_str(vm, "id");
    int64_t now = now_s();
    /* virsh names an unnamed snapshot by its creation time, too. */
    _cleanup_free_ char *name = json_str(http_req_json(r), "name") ?
        xstrdup(json_str(http_req_json(r), "name")) :
        xasprintf("%lld", (long long)now);
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    int e;
    if ((e = store_tx_begin(a->store)) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    /* Under the VM's lock, so two requests cannot both take the last
     * place. Lost ones hold none. */
    if ((e = store_lock(a->store, "vm", vm_id)) == 0 &&
        store_query_int(a->store, 0, "SELECT COUNT(*) FROM vm_snapshots "
                        "WHERE vm_id = $1 AND state <> 'lost'", "s",
                        vm_id) >= VM_SNAPSHOTS_MAX) {
        store_tx_rollback(a->store);
        http_reply_problem(r, 409, "quota-exceeded", NULL,
                           "VM %s has %d snapshots, the most it may have: "
                           "delete one first", json_str(vm, "name"),
                           VM_SNAPSHOTS_MAX);
        return;
    }
    if (e == 0)
        e = store_exec(a->store, "INSERT INTO vm_snapshots (id, vm_id, name, "
                       "state, created_at) VALUES ($1, $2, $3, 'pending', $4)",
                       "sssi", id, vm_id, name, now);
    if (e >= 0)
        e = store_tx_commit(a->store);
    else
        store_tx_rollback(a->store);
    if (e == -EEXIST) {
        http_reply_problem(r, 409, "conflict", "name",
                           "VM %s already has a snapshot named '%s'",
                           json_str(vm, "name"), name);
        return;
    }
    if (e < 0) {
        reply_store_error(r, e, "snapshot");
        return;
    }
    reqctx_set_detail(r, "snapshot %s of VM %s", name, vm_id);
    app_node_changed(a, json_str(vm, "node_id"));
    reply_snapshot(a, r, 202, id);
}

HANDLER(h_snapshot_list)
{
    struct app *a = app;
    json_auto_t *vm = NULL, *rows = NULL;
    if (!snapshot_target(a, r, &vm, NULL))
        return;
    int e = store_query(a->store, &rows, "SELECT " SNAP_COLS SNAP_FROM
                        "WHERE s.vm_id = $1 ORDER BY s.created_at, s.name",
                        "s", json_str(vm, "id"));
    if (e < 0) {
        reply_store_error(r, e, "snapshot");
        return;
    }
    reply_items(r, rows, snapshot_render);
}

HANDLER(h_snapshot_get)
{
    struct app *a = app;
    json_auto_t *vm = NULL, *snap = NULL;
    if (snapshot_target(a, r, &vm, &snap))
        http_reply_json(r, 200, snapshot_render(snap));
}

HANDLER(h_snapshot_delete)
{
    struct app *a = app;
    json_auto_t *vm = NULL, *snap = NULL;
    if (!snapshot_target(a, r, &vm, &snap))
        return;
    const char *id = json_str(snap, "id");
    /* A lost snapshot is on no node: it goes now. Any other goes once the
     * node no longer reports it. */
    int e = streq(json_str(snap, "state"), "lost") ?
        store_exec(a->store, "DELETE FROM vm_snapshots WHERE id = $1", "s", id) :
        store_exec(a->store, "UPDATE vm_snapshots SET state = 'deleting' "
                   "WHERE id = $1", "s", id);
    if (e < 0) {
        reply_store_error(r, e, "snapshot");
        return;
    }
    if (streq(json_str(snap, "state"), "lost")) {
        http_reply_text(r, 204, "application/json", NULL, 0);
        return;
    }
    app_node_changed(a, json_str(vm, "node_id"));
    reply_snapshot(a, r, 202, id);
}

HANDLER(h_snapshot_revert)
{
    struct app *a = app;
    json_auto_t *vm = NULL, *snap = NULL;
    if (!snapshot_target(a, r, &vm, &snap) || !snapshot_vm_usable(r, vm))
        return;
    if (!streq(json_str(snap, "state"), "ready")) {
        http_reply_problem(r, 409, "conflict", NULL,
                           "snapshot '%s' is %s: only a ready snapshot can "
                           "be reverted to", json_str(snap, "name"),
                           json_str(snap, "state"));
        return;
    }
    const char *id = json_str(snap, "id");
    int e = store_exec(a->store, "UPDATE vms SET revert_gen = revert_gen + 1, "
                       "revert_snapshot = $1, updated_at = $2 WHERE id = $3",
                       "sis", id, now_s(), json_str(vm, "id"));
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    reqctx_set_detail(r, "revert of VM %s to snapshot %s",
                      json_str(vm, "id"), json_str(snap, "name"));
    app_node_changed(a, json_str(vm, "node_id"));
    reply_snapshot(a, r, 202, id);
}
