/* /v1/vms/{id}/backups and the node's side of them (AGENT_BACKUP_PATH):
 * a tenant asks for a backup (a 'pending' row listed in its node's desired
 * document with the VM's key), the node seals the disk and uploads it
 * with resume into the hub's backup store (controller/bstore.h), and the
 * commit checks the bytes before the row is 'ready'. The key never leaves
 * the store except in the desired document of the VM's own node. */
#include "api/agentproto.h"
#include "common/buf.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/bsched.h"
#include "controller/bstore.h"
#include "controller/handlers.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKUP_COLS "b.id, b.vm_id, b.kind, b.state, b.error, b.size, " \
                    "b.sha256, b.created_at, b.done_at, b.mode, " \
                    "b.parent_id, b.full_reason"

static json_t *backup_render(json_t *row)
{
    json_t *o = json_object();
    static const char *const copy[][2] = {
        { "id", "id" }, { "vm_id", "vm_id" }, { "kind", "kind" },
        { "state", "state" }, { "error", "error" }, { "size", "size" },
        { "sha256", "sha256" }, { "mode", "mode" }, { "parent_id", "parent" },
        { "full_reason", "full_reason" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(copy); i++) {
        json_t *v = json_object_get(row, copy[i][0]);
        json_object_set(o, copy[i][1], v ? v : json_null());
    }
    static const char *const times[] = { "created_at", "done_at" };
    for (size_t i = 0; i < ARRAY_SIZE(times); i++) {
        json_t *v = json_object_get(row, times[i]);
        char t[21];
        if (json_is_integer(v))
            time_format_rfc3339(json_integer_value(v), t);
        json_object_set_new(o, times[i],
                            json_is_integer(v) ? json_string(t) : json_null());
    }
    return o;
}

/* The VM of the route and, with ret_backup, its backup by the id in the
 * second parameter. Answers and returns false when either is missing. */
static bool backup_target(struct app *a, struct http_request *r,
                          json_t **ret_vm, json_t **ret_backup)
{
    json_auto_t *vm = NULL;
    int e = vm_lookup(a, r, &vm);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return false;
    }
    if (ret_backup) {
        const char *ref = http_req_param(r, 1);
        bool ok = ref && uuid_is_valid(ref);
        e = ok ? store_query_one(a->store, ret_backup, "SELECT " BACKUP_COLS
                                 " FROM vm_backups b WHERE b.vm_id = $1 AND "
                                 "b.id = $2", "ss", json_str(vm, "id"), ref)
               : -ENOENT;
        if (e == -ENOENT) {
            /* Only a well-formed reference is quoted back. */
            http_reply_problem(r, 404, "not-found", NULL,
                               "VM %s has no backup %s%s%s",
                               http_req_param(r, 0), ok ? "'" : "",
                               ok ? ref : "by that id", ok ? "'" : "");
            return false;
        }
        if (e < 0) {
            reply_store_error(r, e, "backup");
            return false;
        }
    }
    *ret_vm = json_incref(vm);
    return true;
}

static void reply_backup(struct app *a, struct http_request *r, int status,
                         const char *id)
{
    json_auto_t *row = NULL;
    if (store_query_one(a->store, &row, "SELECT " BACKUP_COLS
                        " FROM vm_backups b WHERE b.id = $1", "s", id) < 0) {
        http_reply_problem(r, 500, "internal", NULL, "backup vanished");
        return;
    }
    http_reply_json(r, status, backup_render(row));
}

/* The parent of a new backup of VM `vm`: its last ready backup when
 * that was taken on the VM's node and its chain leaves room under the
 * hub's full-every (*ret_parent, caller frees); else NULL and why the
 * new one is full in *ret_why (static text). 0 or -errno. */
static int backup_parent_pick(struct app *a, const json_t *vm,
                              const char *kind, char **ret_parent,
                              const char **ret_why)
{
    *ret_parent = NULL;
    if (streq(kind, "migrate")) {
        *ret_why = "a migration moves the whole disk";
        return 0;
    }
    if (store_query_int(a->store, 1, "SELECT agent_contract FROM nodes "
                        "WHERE id = $1", "s", json_str(vm, "node_id")) <
        AGENT_CONTRACT_INCREMENTAL) {
        *ret_why = "the VM's node runs an agent too old for incremental "
                   "backups";
        return 0;
    }
    json_auto_t *last = NULL;
    int e = store_query_one(a->store, &last, "SELECT id, node_id, mode, "
                            "parent_id FROM vm_backups WHERE vm_id = $1 AND "
                            "state = 'ready' ORDER BY created_at DESC, id "
                            "DESC LIMIT 1", "s", json_str(vm, "id"));
    if (e == -ENOENT) {
        *ret_why = "the VM has no ready backup to build on";
        return 0;
    }
    if (e < 0)
        return e;
    if (!streq(json_str(last, "node_id"), json_str(vm, "node_id"))) {
        *ret_why = "the VM's last backup was taken on another node";
        return 0;
    }
    /* The incremental backups under it, down to its full one. */
    int64_t depth = 0;
    json_auto_t *cur = json_incref(last);
    while (streq(json_str(cur, "mode"), BACKUP_MODE_INCREMENTAL) &&
           depth < BACKUP_CHAIN_MAX) {
        json_t *up = NULL;
        e = store_query_one(a->store, &up, "SELECT id, mode, parent_id FROM "
                            "vm_backups WHERE id = $1", "s",
                            json_str(cur, "parent_id"));
        if (e < 0 && e != -ENOENT)
            return e;
        json_decref(cur);
        cur = up;
        depth++;
        if (!up)
            break;
    }
    if (depth + 1 >= a->cfg.backup_full_every) {
        *ret_why = "the VM's chain of incremental backups is full: one in "
                   "backup-full-every is full";
        return 0;
    }
    *ret_parent = xstrdup(json_str(last, "id"));
    return 0;
}

int backup_add(struct app *a, const json_t *vm, const char *kind,
               char ret_id[UUID_STR_LEN + 1])
{
    const char *vm_id = json_str(vm, "id");
    int e;
    /* Under the VM's lock, so two requests cannot both take the last
     * place. */
    if ((e = store_lock(a->store, "vm", vm_id)) < 0)
        return e;
    if (store_query_int(a->store, 0, "SELECT COUNT(*) FROM vm_backups WHERE "
                        "vm_id = $1 AND state IN ('pending', 'uploading')",
                        "s", vm_id) >= VM_BACKUPS_PENDING_MAX)
        return -EDQUOT;
    /* Made once, by the CSPRNG, the first time the VM is backed up; never
     * rendered to anyone but the VM's node. */
    _cleanup_free_ char *key = random_hex(32);
    if ((e = store_exec(a->store, "UPDATE vms SET backup_key = $1 WHERE id = "
                        "$2 AND backup_key IS NULL", "ss", key, vm_id)) < 0)
        return e;
    _cleanup_free_ char *parent = NULL;
    const char *why = NULL;
    if ((e = backup_parent_pick(a, vm, kind, &parent, &why)) < 0)
        return e;
    uuid_generate_str(ret_id);
    /* Incremental when the node can (it says otherwise at the commit). */
    e = store_exec(a->store, "INSERT INTO vm_backups (id, vm_id, node_id, "
                   "kind, state, created_at, mode, parent_id, full_reason) "
                   "VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8)",
                   "ssssisss", ret_id, vm_id, json_str(vm, "node_id"), kind,
                   now_s(), parent ? BACKUP_MODE_INCREMENTAL : BACKUP_MODE_FULL,
                   parent, why);
    return e < 0 ? e : 0;
}

void reply_backups_under_way(struct http_request *r, const json_t *vm)
{
    http_reply_problem(r, 409, "quota-exceeded", NULL,
                       "VM %s has %d backups under way, the most it may "
                       "have: wait for one to finish", json_str(vm, "name"),
                       VM_BACKUPS_PENDING_MAX);
}

HANDLER(h_backup_create)
{
    struct app *a = app;
    if (!body_check(r, NULL, 0, false))
        return;
    json_auto_t *vm = NULL;
    if (!backup_target(a, r, &vm, NULL))
        return;
    const char *why = NULL;
    if (streq(json_str(vm, "desired_state"), "deleted"))
        why = "the VM is being deleted";
    else if (streq(json_str(vm, "state"), "lost"))
        why = "the VM is lost";
    else if (!json_str(vm, "node_id"))
        why = "the VM is not placed on a node yet";
    if (why) {
        http_reply_problem(r, 409, "conflict", NULL, "%s", why);
        return;
    }
    const char *vm_id = json_str(vm, "id");
    char id[UUID_STR_LEN + 1];
    int e;
    if ((e = store_tx_begin(a->store)) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    e = backup_add(a, vm, "manual", id);
    if (e == 0)
        e = store_tx_commit(a->store);
    else
        store_tx_rollback(a->store);
    if (e == -EDQUOT) {
        reply_backups_under_way(r, vm);
        return;
    }
    if (e < 0) {
        reply_store_error(r, e, "backup");
        return;
    }
    reqctx_set_detail(r, "backup %s of VM %s", id, vm_id);
    app_node_changed(a, json_str(vm, "node_id"));
    reply_backup(a, r, 202, id);
}

HANDLER(h_backup_list)
{
    struct app *a = app;
    json_auto_t *vm = NULL, *rows = NULL;
    if (!backup_target(a, r, &vm, NULL))
        return;
    int e = store_query(a->store, &rows, "SELECT " BACKUP_COLS " FROM "
                        "vm_backups b WHERE b.vm_id = $1 ORDER BY "
                        "b.created_at, b.id", "s", json_str(vm, "id"));
    if (e < 0) {
        reply_store_error(r, e, "backup");
        return;
    }
    reply_items(r, rows, backup_render);
}

HANDLER(h_backup_get)
{
    struct app *a = app;
    json_auto_t *vm = NULL, *b = NULL;
    if (backup_target(a, r, &vm, &b))
        http_reply_json(r, 200, backup_render(b));
}

HANDLER(h_backup_delete)
{
    struct app *a = app;
    json_auto_t *vm = NULL, *b = NULL;
    if (!backup_target(a, r, &vm, &b))
        return;
    const char *id = json_str(b, "id");
    /* A node may be fetching it to start the VM from it. */
    if (store_query_int(a->store, 0, "SELECT COUNT(*) FROM vms WHERE "
                        "restore_backup = $1", "s", id) > 0) {
        http_reply_problem(r, 409, "backup-in-use", "id",
                           "backup %s is being restored onto the VM's node; "
                           "delete it once the VM runs from it", id);
        return;
    }
    /* A chain is never broken: the backups on top of this one go
     * first. */
    json_auto_t *kids = NULL;
    int e = store_query(a->store, &kids, "SELECT id FROM vm_backups WHERE "
                        "parent_id = $1 ORDER BY created_at, id", "s", id);
    if (e < 0) {
        reply_store_error(r, e, "backup");
        return;
    }
    if (json_array_size(kids) > 0) {
        struct buf names = { 0 };
        size_t k;
        json_t *kid;
        json_array_foreach(kids, k, kid)
            buf_printf(&names, "%s%s", k ? ", " : "", json_str(kid, "id"));
        http_reply_problem_ext(r, 409, "backup-has-dependents", "id",
                               json_pack("{s:O}", "dependents", kids),
                               "backup %s is the base of incremental backup%s "
                               "%s: delete %s first", id,
                               json_array_size(kids) > 1 ? "s" : "",
                               buf_str(&names),
                               json_array_size(kids) > 1 ? "them" : "it");
        buf_free(&names);
        return;
    }
    e = store_exec(a->store, "DELETE FROM vm_backups WHERE id = $1 AND NOT "
                   "EXISTS (SELECT 1 FROM vm_backups k WHERE k.parent_id = "
                   "$1)", "s", id);
    if (e < 0) {
        reply_store_error(r, e, "backup");
        return;
    }
    if (e == 0) {
        http_reply_problem(r, 409, "backup-has-dependents", "id",
                           "backup %s became the base of another backup; "
                           "list the VM's backups again", id);
        return;
    }
    /* The blob goes once the row's delete has committed; a node still
     * sending finds it gone. */
    app_backup_blob_drop(a, id);
    reqctx_set_detail(r, "backup %s of VM %s", id, json_str(vm, "id"));
    if (!streq(json_str(b, "state"), "ready") &&
        !streq(json_str(b, "state"), "failed"))
        app_node_changed(a, json_str(vm, "node_id"));
    http_reply_text(r, 204, "application/json", NULL, 0);
}

int backups_drop_vm(struct app *a, const char *vm_id)
{
    json_auto_t *rows = NULL;
    int e = store_query(a->store, &rows, "SELECT id FROM vm_backups WHERE "
                        "vm_id = $1", "s", vm_id);
    if (e < 0)
        return e;
    if ((e = store_exec(a->store, "DELETE FROM vm_backups WHERE vm_id = $1",
                        "s", vm_id)) < 0)
        return e;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        app_backup_blob_drop(a, json_str(row, "id"));
    return 0;
}

/* ---- the node's side ---------------------------------------------------- */

/* The backup of the route, when the calling node hosts its VM: the row
 * with the VM's account_id, name and node_id. Answers 404 otherwise
 * (another node learns nothing of it) and returns false. */
static bool agent_backup(struct app *a, struct http_request *r,
                         json_t **ret_row)
{
    struct reqctx *c = reqctx_of(r);
    const char *id = http_req_param(r, 0);
    json_auto_t *row = NULL;
    int e = -ENOENT;
    if (id && uuid_is_valid(id) && bstore_id_ok(id))
        e = store_query_one(a->store, &row, "SELECT b.id, b.state, b.vm_id, "
                            "b.kind, b.size, b.sha256, b.parent_id, v.node_id, "
                            "v.account_id, v.name FROM vm_backups b JOIN vms "
                            "v ON v.id = "
                            "b.vm_id WHERE b.id = $1 AND v.deleted_at IS NULL",
                            "s", id);
    if (e == 0 && !streq(json_str(row, "node_id"), c->actor)) {
        log_warn("node %s asked for backup %s of a VM it does not host",
                 c->actor, id);
        e = -ENOENT;
    }
    if (e == -ENOENT) {
        http_reply_problem(r, 404, "not-found", "id",
                           "no such backup for this node");
        return false;
    }
    if (e < 0) {
        reply_store_error(r, e, "backup");
        return false;
    }
    *ret_row = TAKE_PTR(row);
    return true;
}

/* Whether the row still takes bytes; answers 409 and returns false when
 * it does not. */
static bool agent_backup_open(struct http_request *r, const json_t *row)
{
    const char *st = json_str(row, "state");
    if (streq(st, "pending") || streq(st, "uploading"))
        return true;
    http_reply_problem(r, 409, "conflict", "id", "backup %s is %s",
                       json_str(row, "id"), st);
    return false;
}

static void reply_bstore_error(struct http_request *r, int e)
{
    if (e == -EFBIG)
        http_reply_problem(r, 413, "payload-too-large", NULL,
                           "the backup is larger than the hub keeps");
    else
        http_reply_problem(r, 500, "internal", NULL,
                           "backup store: %s", strerror(-e));
}

/* Whether the backup's row went while a chunk or a stat made its part
 * file: the delete that took it may have dropped the blob before this
 * request (re)made the file, which would then stay. The file goes and
 * the node is answered as for a backup it no longer has. */
static bool agent_backup_gone_meanwhile(struct app *a, struct http_request *r,
                                        const char *id)
{
    if (store_query_int(a->store, 1, "SELECT COUNT(*) FROM vm_backups WHERE "
                        "id = $1", "s", id) != 0)
        return false; /* still there, or the store cannot say: kept */
    app_backup_blob_remove(a, id);
    http_reply_problem(r, 404, "not-found", "id",
                       "no such backup for this node");
    return true;
}

HANDLER(h_agent_backup_stat)
{
    struct app *a = app;
    struct bstore *s = a->backups;
    json_auto_t *row = NULL;
    if (!agent_backup(a, r, &row))
        return;
    const char *id = json_str(row, "id");
    if (streq(json_str(row, "state"), "ready")) {
        http_reply_json(r, 200, json_pack("{s:I, s:b}", "size",
                                          (json_int_t)json_int(row, "size", 0),
                                          "committed", 1));
        return;
    }
    if (!agent_backup_open(r, row))
        return;
    uint64_t size = 0;
    bool committed = false;
    int e = s->ops->begin(s, id);
    if (e == 0)
        e = s->ops->stat(s, id, &size, &committed);
    if (agent_backup_gone_meanwhile(a, r, id))
        return;
    if (e < 0) {
        reply_bstore_error(r, e);
        return;
    }
    http_reply_json(r, 200, json_pack("{s:I, s:b}", "size", (json_int_t)size,
                                      "committed", committed));
}

HANDLER(h_agent_backup_put)
{
    struct app *a = app;
    struct bstore *s = a->backups;
    json_auto_t *row = NULL;
    if (!agent_backup(a, r, &row) || !agent_backup_open(r, row))
        return;
    const char *id = json_str(row, "id");
    const char *q = http_req_query(r, "offset");
    char *end = NULL;
    errno = 0;
    unsigned long long off = q && *q >= '0' && *q <= '9' ?
        strtoull(q, &end, 10) : 0;
    if (!q || !end || *end || errno || off > INT64_MAX) {
        http_reply_problem(r, 400, "validation", "offset",
                           "offset must be the decimal byte offset of the "
                           "body in the backup");
        return;
    }
    size_t len = 0;
    const char *body = http_req_body(r, &len);
    uint64_t size = 0;
    /* Test seam: a chunk that waits after its row was read, so that a
     * test deletes the backup in between. */
    if (fs_test_fault("FOG_TEST_FAULT", "backup-put-slow"))
        nanosleep(&(struct timespec){ 0, 500 * 1000 * 1000 }, NULL);
    int e = s->ops->begin(s, id);
    if (e == 0)
        e = s->ops->append(s, id, off, body ? body : "", len, &size);
    if (agent_backup_gone_meanwhile(a, r, id))
        return;
    if (e == -ESPIPE) {
        http_reply_problem_ext(r, 409, "conflict", "offset",
                               json_pack("{s:I}", "size", (json_int_t)size),
                               "offset %llu is not the %" PRIu64 " bytes "
                               "received", off, size);
        return;
    }
    if (e < 0) {
        reply_bstore_error(r, e);
        return;
    }
    if (streq(json_str(row, "state"), "pending") &&
        (e = store_exec(a->store, "UPDATE vm_backups SET state = 'uploading' "
                        "WHERE id = $1 AND state = 'pending'", "s", id)) < 0) {
        reply_store_error(r, e, "backup");
        return;
    }
    http_reply_json(r, 200, json_pack("{s:I}", "size", (json_int_t)size));
}

HANDLER(h_agent_backup_commit)
{
    static const char *const modes[] = { BACKUP_MODE_FULL,
                                         BACKUP_MODE_INCREMENTAL, NULL };
    static const struct jfield fields[] = {
        { "size", JF_INT, true, 0, INT64_MAX, NULL },
        { "sha256", JF_STRING, true, 64, 64, NULL },
        { "mode", JF_ENUM, false, 0, 0, modes },
        { "full_reason", JF_STRING, false, 1, AGENT_BACKUP_ERROR_MAX, NULL },
    };
    struct app *a = app;
    struct bstore *s = a->backups;
    struct reqctx *c = reqctx_of(r);
    if (!body_check(r, fields, ARRAY_SIZE(fields), true))
        return;
    json_auto_t *row = NULL;
    if (!agent_backup(a, r, &row))
        return;
    const json_t *body = http_req_json(r);
    const char *sha = json_str(body, "sha256");
    int64_t size = json_int(body, "size", 0);
    if (!is_lower_hex(sha, 64)) {
        http_reply_problem(r, 400, "validation", "sha256",
                           "sha256 must be 64 lowercase hex characters");
        return;
    }
    const char *id = json_str(row, "id");
    bool incremental = streq(json_str(body, "mode"), BACKUP_MODE_INCREMENTAL);
    if (incremental && !json_str(row, "parent_id")) {
        http_reply_problem(r, 400, "validation", "mode",
                           "backup %s was asked for as a full one", id);
        return;
    }
    _cleanup_free_ char *full_why = json_str(body, "full_reason") ?
        node_text(json_str(body, "full_reason"), AGENT_BACKUP_ERROR_MAX) :
        NULL;
    /* A commit retried after its answer was lost. */
    if (streq(json_str(row, "state"), "ready") &&
        streq(json_str(row, "sha256"), sha) &&
        json_int(row, "size", -1) == size) {
        reply_backup(a, r, 200, id);
        return;
    }
    if (!agent_backup_open(r, row))
        return;
    int e = s->ops->commit(s, id, sha, (uint64_t)size);
    if (e == -EBADMSG) {
        /* The store dropped the bytes: the node starts again from 0. */
        store_exec(a->store, "UPDATE vm_backups SET state = 'pending' WHERE "
                   "id = $1", "s", id);
        http_reply_problem(r, 422, "digest-mismatch", "sha256",
                           "the bytes received are not %lld bytes hashing "
                           "to %s: send them again", (long long)size, sha);
        return;
    }
    if (e == -ENOENT) {
        http_reply_problem(r, 409, "conflict", "id",
                           "no upload of backup %s is open", id);
        return;
    }
    if (e < 0) {
        reply_bstore_error(r, e);
        return;
    }
    /* The digest was checked and the blob sealed outside any store
     * transaction (the route opens none); the row changes in a short
     * one, with its event, and the node is woken after it commits. */
    _cleanup_free_ char *detail = xasprintf("backup %s of VM %s: %lld bytes",
                                            id, json_str(row, "name"),
                                            (long long)size);
    if ((e = app_tx_begin(a)) == 0) {
        /* Bytes that checked out are kept even when the backup was
         * failed meanwhile (a migration that ended while they were
         * hashed): only a deleted row drops them. */
        /* The node took the increment offered, or the whole disk. */
        if (incremental)
            e = store_exec(a->store, "UPDATE vm_backups SET state = "
                           "'ready', size = $1, sha256 = $2, done_at = $3, "
                           "error = NULL, full_reason = NULL WHERE id = $4 "
                           "AND state <> 'ready'", "isis", size, sha,
                           now_s(), id);
        else
            e = store_exec(a->store, "UPDATE vm_backups SET state = "
                           "'ready', size = $1, sha256 = $2, done_at = $3, "
                           "error = NULL, mode = 'full', parent_id = NULL, "
                           /* The hub's reason when it asked for a full
                            * one, else the node's. */
                           "full_reason = CASE WHEN parent_id IS NULL THEN "
                           "COALESCE(full_reason, $5, $6) ELSE COALESCE($5, "
                           "$6) END WHERE id = $4 AND state <> 'ready'",
                           "isisss",
                           size, sha, now_s(), id, full_why,
                           "the node took the whole disk");
        if (e > 0)
            e = app_event(a, json_str(row, "account_id"), c->actor,
                          "vm.backup_ready", json_str(row, "vm_id"), 200,
                          detail);
        if (e >= 0)
            app_node_changed(a, c->actor);
        if (e < 0)
            app_tx_rollback(a);
        else
            e = app_tx_commit(a);
    }
    if (e < 0) {
        reply_store_error(r, e, "backup");
        return;
    }
    json_auto_t *now = NULL;
    e = store_query_one(a->store, &now, "SELECT state FROM vm_backups WHERE "
                        "id = $1", "s", id);
    if (e == -ENOENT || (e == 0 && !streq(json_str(now, "state"), "ready"))) {
        /* Deleted or failed while its bytes were checked: they go too. */
        app_backup_blob_drop(a, id);
        if (e == 0)
            http_reply_problem(r, 409, "conflict", "id", "backup %s is %s",
                               id, json_str(now, "state"));
        else
            http_reply_problem(r, 404, "not-found", "id",
                               "no such backup for this node");
        return;
    }
    if (streq(json_str(row, "kind"), "scheduled"))
        bsched_prune_wanted();
    reply_backup(a, r, 200, id);
}

HANDLER(h_agent_backup_fail)
{
    static const struct jfield fields[] = {
        { "error", JF_STRING, true, 1, AGENT_BACKUP_ERROR_MAX, NULL },
    };
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    if (!body_check(r, fields, ARRAY_SIZE(fields), true))
        return;
    json_auto_t *row = NULL;
    if (!agent_backup(a, r, &row) || !agent_backup_open(r, row))
        return;
    const char *id = json_str(row, "id");
    _cleanup_free_ char *why = node_text(json_str(http_req_json(r), "error"),
                                         AGENT_BACKUP_ERROR_MAX);
    /* A failed backup is nobody's base and needs none. */
    int e = store_exec(a->store, "UPDATE vm_backups SET state = 'failed', "
                       "error = $1, done_at = $2, parent_id = NULL WHERE id "
                       "= $3", "sis", why, now_s(), id);
    if (e < 0) {
        reply_store_error(r, e, "backup");
        return;
    }
    app_backup_blob_drop(a, id);
    if (streq(json_str(row, "kind"), "scheduled"))
        bsched_prune_wanted();
    _cleanup_free_ char *detail = xasprintf("backup %s of VM %s failed: %s",
                                            id, json_str(row, "name"), why);
    app_event(a, json_str(row, "account_id"), c->actor, "vm.backup_failed",
              json_str(row, "vm_id"), 200, detail);
    app_node_changed(a, c->actor);
    http_reply_text(r, 204, "application/json", NULL, 0);
}
