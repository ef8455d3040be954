/* Relayed pairs' paths as the nodes report them (controller/meshpath.h). */
#include "controller/meshpath.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/util.h"
#include "controller/store.h"

#include <errno.h>

static bool is_direct(const char *path)
{
    return path && streq(path, AGENT_MESH_PATH_DIRECT);
}

int meshpath_record(struct app *a, const char *node_id,
                    const struct am_mesh_path *p, size_t n)
{
    json_auto_t *have = NULL, *me = NULL;
    int e = store_query(a->store, &have, "SELECT m.peer_id, m.path, n.name "
                        "FROM node_mesh_paths m JOIN nodes n ON n.id = "
                        "m.peer_id WHERE m.node_id = $1", "s", node_id);
    if (e < 0 || (e = store_query_one(a->store, &me, "SELECT account_id, name "
                                      "FROM nodes WHERE id = $1", "s",
                                      node_id)) < 0)
        return e;
    size_t i;
    json_t *row;
    /* Peers no longer reported (no longer relayed): forgotten. */
    json_array_foreach(have, i, row) {
        bool kept = false;
        for (size_t k = 0; k < n && !kept; k++)
            kept = streq(p[k].node_id, json_str(row, "peer_id"));
        if (!kept && (e = store_exec(a->store, "DELETE FROM node_mesh_paths "
                                     "WHERE node_id = $1 AND peer_id = $2",
                                     "ss", node_id,
                                     json_str(row, "peer_id"))) < 0)
            return e;
    }
    for (size_t k = 0; k < n; k++) {
        const char *old = NULL, *peer = NULL;
        json_array_foreach(have, i, row)
            if (streq(json_str(row, "peer_id"), p[k].node_id)) {
                old = json_str(row, "path");
                peer = json_str(row, "name");
            }
        json_auto_t *prow = NULL;
        if (!old) {
            e = store_query_one(a->store, &prow, "SELECT name FROM nodes "
                                "WHERE id = $1 AND id <> $2 AND approved = 1 "
                                "AND removed_at IS NULL", "ss", p[k].node_id,
                                node_id);
            if (e == -ENOENT)
                continue;
            if (e < 0)
                return e;
            peer = json_str(prow, "name");
        } else if (streq(old, p[k].path)) {
            continue;
        }
        e = store_exec(a->store, old
                       ? "UPDATE node_mesh_paths SET path = $3, since = $4 "
                         "WHERE node_id = $1 AND peer_id = $2"
                       : "INSERT INTO node_mesh_paths (node_id, peer_id, path, "
                         "since) VALUES ($1, $2, $3, $4)", "sssi", node_id,
                       p[k].node_id, p[k].path, p[k].since);
        if (e < 0)
            return e;
        /* A pair that goes direct, or leaves direct, is news. */
        if (is_direct(old) != is_direct(p[k].path)) {
            _cleanup_free_ char *d = xasprintf(
                "node %s to %s: %s (was %s)", json_str(me, "name"), peer,
                p[k].path, old ? old : "relay");
            app_event(a, json_str(me, "account_id"), node_id,
                      is_direct(p[k].path) ? "node.mesh-direct"
                                           : "node.mesh-relayed",
                      node_id, 200, d);
            log_info("mesh path: %s", d);
        }
    }
    return 0;
}

json_t *meshpath_render(struct app *a, const char *node_id)
{
    json_auto_t *rows = NULL;
    json_t *out = json_array();
    if (store_query(a->store, &rows, "SELECT n.name, m.peer_id, m.path, "
                    "m.since FROM node_mesh_paths m JOIN nodes n ON n.id = "
                    "m.peer_id WHERE m.node_id = $1 AND n.removed_at IS NULL "
                    "ORDER BY n.name", "s", node_id) < 0)
        return out;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_array_append_new(out, json_pack(
            "{s:O, s:O, s:O, s:O}", "peer", json_object_get(row, "name"),
            "node_id", json_object_get(row, "peer_id"), "path",
            json_object_get(row, "path"), "since",
            json_object_get(row, "since")));
    return out;
}
