/* Restore: a VM started again from one of its backups in the hub's store,
 * on a node placement picks (or the one named), keeping its id, name,
 * addresses and host ports. The new node fetches the sealed blob from the
 * route here, which serves it only to the node the VM is placed on. */
#include "api/agentproto.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/bstore.h"
#include "controller/handlers.h"
#include "controller/restore.h"
#include "controller/scheduler.h"

#include <errno.h>
#include <unistd.h>

/* Whether the VM (a row of vm_lookup) may leave its node now: it is
 * stopped there, or that node is gone (removed or silent for three
 * heartbeats). NULL, or why not (static text). */
static const char *restore_refusal(struct app *a, const json_t *vm)
{
    if (streq(json_str(vm, "desired_state"), "deleted"))
        return "the VM is being deleted";
    if (!restore_node_reachable(a, json_str(vm, "node_id")))
        return NULL;
    if (restore_vm_runs(vm))
        return "the VM runs on a reachable node: stop it first";
    return NULL;
}

bool restore_node_reachable(struct app *a, const char *node)
{
    return node &&
        store_query_int(a->store, 0, "SELECT COUNT(*) FROM nodes WHERE id = "
                        "$1 AND removed_at IS NULL AND last_seen >= $2", "si",
                        node, now_s() - 3 * a->cfg.heartbeat_s) > 0;
}

bool restore_vm_runs(const json_t *vm)
{
    const char *st = json_str(vm, "state");
    return !streq(json_str(vm, "desired_state"), "stopped") ||
           streq(st, "running") || streq(st, "paused") ||
           streq(st, "creating");
}

bool restore_node_arg(struct app *a, struct http_request *r,
                      const char *node, json_t **ret_pin)
{
    int e = store_query_one(a->store, ret_pin, "SELECT id, name FROM nodes "
                            "WHERE (id = $1 OR name = $1) AND approved = 1 "
                            "AND removed_at IS NULL ORDER BY created_at, id "
                            "LIMIT 1", "s", node);
    if (e == -ENOENT) {
        http_reply_problem(r, 404, "not-found", "node",
                           "no approved node '%s'", node);
        return false;
    }
    if (e < 0) {
        reply_store_error(r, e, "node");
        return false;
    }
    return true;
}

int restore_start(struct app *a, const char *vm_id, const char *backup_id,
                  const char *pin, const char *actor, char **ret_why)
{
    json_auto_t *vm = NULL;
    int e = store_query_one(a->store, &vm, "SELECT v.account_id, v.node_id, "
                            "n.name AS node_name FROM vms v LEFT JOIN nodes n "
                            "ON n.id = v.node_id WHERE v.id = $1", "s", vm_id);
    if (e < 0)
        return e;
    char node[UUID_STR_LEN + 1];
    e = scheduler_replace(a, vm_id, pin, backup_id, node, ret_why);
    if (e <= 0)
        return e;
    json_auto_t *to = NULL;
    store_query_one(a->store, &to, "SELECT name FROM nodes WHERE id = $1",
                    "s", node);
    _cleanup_free_ char *detail = xasprintf(
        "from backup %s on node '%s'%s%s%s", backup_id,
        json_str(to, "name") ? json_str(to, "name") : node,
        json_str(vm, "node_name") ? " (was on '" : "",
        json_str(vm, "node_name") ? json_str(vm, "node_name") : "",
        json_str(vm, "node_name") ? "')" : "");
    e = app_event(a, json_str(vm, "account_id"), actor, "vm.restore", vm_id,
                  202, detail);
    return e < 0 ? e : 1;
}

HANDLER(h_vm_restore)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const struct jfield fields[] = {
        { "backup", JF_STRING, true, 36, 36, NULL },
        { "node", JF_STRING, false, 1, 255, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), false))
        return;
    json_t *b = http_req_json(r);
    const char *backup = json_str(b, "backup"), *node = json_str(b, "node");
    if (!uuid_is_valid(backup)) {
        http_reply_problem(r, 400, "validation", "backup",
                           "backup must be a backup's id");
        return;
    }
    json_auto_t *vm = NULL, *bk = NULL, *pin = NULL;
    int e = vm_lookup(a, r, &vm);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    const char *id = json_str(vm, "id");
    const char *why = restore_refusal(a, vm);
    if (why) {
        http_reply_problem(r, 409, "conflict", NULL, "%s", why);
        return;
    }
    e = store_query_one(a->store, &bk, "SELECT state, error FROM vm_backups "
                        "WHERE id = $1 AND vm_id = $2", "ss", backup, id);
    if (e == -ENOENT) {
        http_reply_problem(r, 404, "not-found", "backup",
                           "the VM has no backup %s", backup);
        return;
    }
    if (e < 0) {
        reply_store_error(r, e, "backup");
        return;
    }
    if (!streq(json_str(bk, "state"), "ready")) {
        http_reply_problem(r, 409, "conflict", "backup",
                           "backup %s is %s, not ready", backup,
                           json_str(bk, "state"));
        return;
    }
    if (node && !restore_node_arg(a, r, node, &pin))
        return;
    _cleanup_free_ char *refused = NULL;
    e = restore_start(a, id, backup, pin ? json_str(pin, "id") : NULL,
                      c->actor, &refused);
    if (e == 0) {
        http_reply_problem(r, 409, "conflict", node ? "node" : NULL, "%s",
                           refused);
        return;
    }
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    reqctx_set_detail(r, "restore from backup %s", backup);
    reply_vm(a, r, 202, id);
}

/* A blob streamed from the store (api/http_server.h http_stream_fn). */
struct blob_read {
    struct bstore *bs; /* the app's: lives past the HTTP server */
    char id[UUID_STR_LEN + 1];
};

static int blob_write(void *st, const void *data, size_t len)
{
    return http_stream_write(st, data, len);
}

static int blob_produce(struct http_stream *st, uint64_t off, uint64_t len,
                        void *ctx)
{
    struct blob_read *b = ctx;
    int e = b->bs->ops->read(b->bs, b->id, off, len, blob_write, st);
    if (e == -ENOENT)
        log_error("backup %s: its blob is missing from the store", b->id);
    return e;
}

HANDLER(h_agent_backup_blob)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const char *id = http_req_param(r, 0);
    json_auto_t *row = NULL;
    /* Only the node the backup's VM is placed on reads it. */
    int e = id && uuid_is_valid(id)
                ? store_query_one(a->store, &row,
                                  "SELECT b.id, b.sha256, b.size FROM "
                                  "vm_backups b "
                                  "JOIN vms v ON v.id = b.vm_id WHERE b.id = "
                                  "$1 AND b.state = 'ready' AND v.node_id = $2 "
                                  "AND v.deleted_at IS NULL", "ss", id,
                                  c->actor)
                : -ENOENT;
    if (e == -ENOENT) {
        log_warn("node %s asked for backup '%.40s', which no VM of its has "
                 "ready: refused", c->actor, id ? id : "");
        http_reply_problem(r, 404, "not-found", NULL,
                           "no ready backup of a VM on this node");
        return;
    }
    if (e < 0) {
        reply_store_error(r, e, "backup");
        return;
    }
    struct bstore *bs;
    int fd = -1;
    /* The size it was committed with: a streamed read asks the store
     * nothing on this (connection) thread. */
    uint64_t size = (uint64_t)json_int(row, "size", 0);
    if ((e = app_backup_store(a, &bs)) == 0 && !bs->ops->read)
        e = bs->ops->open(bs, id, &fd, &size);
    if (e < 0) {
        log_error("backup %s: its blob cannot be opened: %s", id,
                  strerror(-e));
        http_reply_problem(r, 500, "internal", NULL,
                           "the backup's content is missing");
        return;
    }
    _cleanup_free_ char *etag = xasprintf("\"%s\"", json_str(row, "sha256"));
    http_reply_header(r, "ETag", etag);
    /* Never loaded whole: from the fd, or passed on as the store sends it
     * (the span a resumed fetch asks for, not from 0). */
    if (!bs->ops->read) {
        http_reply_file(r, "application/octet-stream", fd, size);
        return;
    }
    struct blob_read *b = xcalloc(1, sizeof(*b));
    b->bs = bs;
    snprintf(b->id, sizeof(b->id), "%s", id);
    http_reply_stream(r, "application/octet-stream", size, blob_produce, b,
                      free);
}

int restore_seen(struct app *a, const char *vm_id, const char *state)
{
    /* A domain exists at this placement: the backup has done its work. */
    if (!streq(state, "running") && !streq(state, "stopped") &&
        !streq(state, "paused"))
        return 0;
    return store_exec(a->store, "UPDATE vms SET restore_backup = NULL WHERE "
                      "id = $1 AND restore_backup IS NOT NULL", "s", vm_id);
}

const char *const restore_policies[] = { "none", "on-host-failure", NULL };

/* No backup to come back from: the VM is lost, saying why. */
static void evacuate_lose(struct app *a, const json_t *v, int64_t silent_s)
{
    const char *id = json_str(v, "id");
    _cleanup_free_ char *why = xasprintf(
        "node '%s' unreachable for %lld s and the VM has no ready backup to "
        "restore from", json_str(v, "node_name"), (long long)silent_s);
    if (store_exec(a->store, "UPDATE vms SET state = 'lost', state_reason = "
                   "$1, updated_at = $2 WHERE id = $3 AND state <> 'lost'",
                   "sis", why, now_s(), id) > 0) {
        log_warn("vm %s: %s", id, why);
        app_event(a, json_str(v, "account_id"), "hub", "vm.lost", id, 200,
                  why);
    }
}

void evacuate_tick(struct app *a)
{
    int64_t now = now_s(), cutoff = now - a->cfg.evacuate_after_s;
    json_auto_t *rows = NULL;
    if (store_query(a->store, &rows,
                    "SELECT v.id, v.account_id, v.node_id, v.state, "
                    "v.state_reason, n.name AS node_name, n.last_seen, "
                    "n.removed_at, (SELECT b.id FROM vm_backups b WHERE "
                    "b.vm_id = v.id AND b.state = 'ready' ORDER BY "
                    "b.created_at DESC, b.id DESC LIMIT 1) AS backup FROM vms "
                    "v JOIN nodes n ON n.id = v.node_id WHERE "
                    "v.restart_policy = 'on-host-failure' AND v.deleted_at IS "
                    "NULL AND v.desired_state <> 'deleted' AND (n.removed_at "
                    "IS NOT NULL OR n.last_seen < $1) ORDER BY v.id LIMIT 100",
                    "i", cutoff) < 0)
        return;
    size_t i;
    json_t *v;
    json_array_foreach(rows, i, v) {
        if (!store_leading(a->store))
            break;
        const char *id = json_str(v, "id"), *bk = json_str(v, "backup");
        /* A node removed as gone is not waited for. */
        int64_t since = json_int(v, "last_seen", now);
        if (!bk) {
            /* Lost once: a lost VM is left to its owner. */
            if (!streq(json_str(v, "state"), "lost"))
                evacuate_lose(a, v, now - since);
            continue;
        }
        _cleanup_free_ char *why = NULL;
        /* The nodes' polls wake once the move has committed. */
        int e = app_tx_begin(a);
        if (e == 0)
            e = restore_start(a, id, bk, NULL, "hub", &why);
        if (e > 0) {
            _cleanup_free_ char *d = xasprintf(
                "node '%s' unreachable for %lld s: restored from backup %s",
                json_str(v, "node_name"), (long long)(now - since), bk);
            e = app_event(a, json_str(v, "account_id"), "hub", "vm.evacuate",
                          id, 202, d);
            if (e >= 0 && (e = app_tx_commit(a)) >= 0) {
                log_info("vm %s: %s", id, d);
                continue;
            }
        } else if (e == 0) {
            /* Nowhere to go now: say so once, try again next pass. */
            _cleanup_free_ char *r = xasprintf("evacuation waits: %s", why);
            if (store_exec(a->store, "UPDATE vms SET state_reason = $1 WHERE "
                           "id = $2 AND COALESCE(state_reason, '') <> $1",
                           "ss", r, id) > 0)
                app_event(a, json_str(v, "account_id"), "hub",
                          "vm.evacuate", id, 409, r);
            if (app_tx_commit(a) >= 0)
                continue;
        }
        if (store_in_tx(a->store))
            app_tx_rollback(a);
        log_warn("vm %s: evacuation failed: %s", id, strerror(e < 0 ? -e : EIO));
    }
}
