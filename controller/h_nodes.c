/* Nodes: join tokens, listing, approval, draining, removal and the node's
 * policy (which templates and images it accepts). Providers see, restrict,
 * drain and remove only their own nodes; approval is the admin's. */
#include "api/jointoken.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "controller/availwin.h"
#include "controller/catalog.h"
#include "controller/desired.h"
#include "controller/guard.h"
#include "controller/handlers.h"
#include "controller/meshpath.h"
#include "controller/reputation.h"
#include "controller/scheduler.h"

#include <errno.h>

/* Most names one list of a node's policy may hold. */
#define NODE_POLICY_MAX 64

#define NODE_COLS                                                              \
    "n.id, n.name, n.account_id, n.approved, n.kvm, n.arch, n.cpu_model, "     \
    "n.vcpus, n.memory_mib, n.disk_gib, n.mesh_ip, n.endpoint, "               \
    "n.observed_endpoint, n.public_ip, n.port_min, n.port_max, n.last_seen, "  \
    "n.created_at, n.cap_vcpus, n.agent_contract, "                            \
    "n.cap_memory_mib, n.cap_disk_gib, n.reported_vcpus, "                     \
    "n.reported_memory_mib, n.reported_disk_gib, n.capped_s, n.drained, "      \
    "(SELECT COALESCE(SUM(v.vcpus), 0) FROM vms v WHERE v.node_id = n.id AND " \
    "v.deleted_at IS NULL) AS used_vcpus, (SELECT COALESCE(SUM(v.memory_mib), " \
    "0) FROM vms v WHERE v.node_id = n.id AND v.deleted_at IS NULL) AS "       \
    "used_memory_mib, (SELECT COALESCE(SUM(v.disk_gib), 0) FROM vms v WHERE "  \
    "v.node_id = n.id AND v.deleted_at IS NULL) AS used_disk_gib, "            \
    "(SELECT COUNT(*) FROM vms v WHERE v.node_id = n.id AND v.deleted_at IS "  \
    "NULL) AS vm_count, (SELECT t.score FROM node_trust t WHERE t.node_id = " \
    "n.id) AS reputation, (SELECT t.bench_score FROM node_trust t WHERE "      \
    "t.node_id = n.id) AS benchmark, (SELECT t.bench_pct FROM node_trust t " \
    "WHERE t.node_id = n.id) AS benchmark_pct, (SELECT t.bench_vcpus FROM "   \
    "node_trust t WHERE t.node_id = n.id) AS benchmark_vcpus, "                \
    "(SELECT t.evictions_total FROM "                                          \
    "node_trust t WHERE t.node_id = n.id) AS evictions, n.avail_windows, "   \
    "n.avail_tz_min, n.wg_port, n.nat_class, n.mapped_endpoint, n.reach_at"

/* Heartbeat interval, for rendering online/unreachable; set at start. */
int64_t node_heartbeat_s = 5;

json_t *node_render(json_t *row)
{
    json_t *o = json_object();
    static const char *const copy[] = { "id", "name", "account_id", "arch",
                                        "cpu_model", "mesh_ip", "endpoint",
                                        "observed_endpoint", "vm_count" };
    /* Usage this node claimed that was never billed, for its reputation. */
    json_object_set_new(o, "capped_usage_seconds",
                        json_integer(json_int(row, "capped_s", 0)));
    /* Percent, from what the hub observed; null until observed. */
    json_t *rep = json_object_get(row, "reputation");
    json_object_set_new(o, "reputation",
                        json_is_integer(rep) ? json_incref(rep) : json_null());
    /* VMs that should run and that the node took away, as the hub saw. */
    json_object_set_new(o, "evictions",
                        json_integer(json_int(row, "evictions", 0)));
    /* The last verified benchmark (steps/s per vCPU), the share of an
     * approved vCPU it backs, in percent, and the vCPUs it backs (the
     * node takes VMs up to them); null until one passed. */
    static const char *const bench[] = { "benchmark", "benchmark_pct",
                                         "benchmark_vcpus" };
    for (size_t i = 0; i < ARRAY_SIZE(bench); i++) {
        json_t *b = json_object_get(row, bench[i]);
        json_object_set_new(o, bench[i], json_is_integer(b) ? json_incref(b)
                                                            : json_null());
    }
    for (size_t i = 0; i < ARRAY_SIZE(copy); i++) {
        json_t *v = json_object_get(row, copy[i]);
        json_object_set(o, copy[i], v ? v : json_null());
    }
    /* Where published ports answer: the provider's --public-ip, else the
     * address the node was last seen connecting from. */
    const char *pub = json_str(row, "public_ip");
    const char *seen_from = json_str(row, "observed_endpoint");
    json_object_set_new(o, "public_ip", pub ? json_string(pub) :
                        seen_from ? json_string(seen_from) : json_null());
    json_object_set_new(o, "public_ip_source",
                        pub ? json_string("configured") :
                        seen_from ? json_string("observed") : json_null());
    /* How its WireGuard port is reached: what its address probe found
     * (nat null until it reported) and the endpoint peers are given. */
    json_t *reach = json_object();
    json_object_set_new(reach, "public_ip", pub ? json_string(pub) :
                        seen_from ? json_string(seen_from) : json_null());
    const char *mapped = json_str(row, "mapped_endpoint");
    const char *nat = json_str(row, "nat_class");
    json_object_set_new(reach, "mapped_endpoint",
                        mapped ? json_string(mapped) : json_null());
    json_object_set_new(reach, "nat", nat ? json_string(nat) : json_null());
    char when[21];
    json_t *at = json_object_get(row, "reach_at");
    if (json_is_integer(at))
        time_format_rfc3339(json_integer_value(at), when);
    json_object_set_new(reach, "checked_at", json_is_integer(at) ?
                        json_string(when) : json_null());
    _cleanup_free_ char *peer_ep = desired_peer_endpoint(row);
    json_object_set_new(reach, "peer_endpoint",
                        peer_ep ? json_string(peer_ep) : json_null());
    json_object_set_new(o, "reachability", reach);
    json_object_set_new(o, "port_range",
                        json_sprintf("%lld-%lld",
                                     (long long)json_int(row, "port_min", 0),
                                     (long long)json_int(row, "port_max", 0)));
    json_object_set_new(o, "approved", json_boolean(json_int(row, "approved", 0)));
    json_object_set_new(o, "kvm", json_boolean(json_int(row, "kvm", 0)));
    /* The contract version its agent last spoke (api/agentproto.h). */
    json_object_set_new(o, "agent_contract",
                        json_integer(json_int(row, "agent_contract", 1)));
    json_object_set_new(o, "drained",
                        json_boolean(json_int(row, "drained", 0)));
    /* When new VMs may be placed on it (none: always). */
    json_object_set_new(o, "windows",
                        availwin_list_json(json_str(row, "avail_windows")));
    _cleanup_free_ char *tz =
        availwin_tz_format((int)json_int(row, "avail_tz_min", 0));
    json_object_set_new(o, "tz", json_string(tz));
    json_object_set_new(o, "capacity",
                        json_pack("{s:I, s:I, s:I}", "vcpus",
                                  (json_int_t)json_int(row, "vcpus", 0),
                                  "memory_mib",
                                  (json_int_t)json_int(row, "memory_mib", 0),
                                  "disk_gib",
                                  (json_int_t)json_int(row, "disk_gib", 0)));
    json_object_set_new(o, "used",
                        json_pack("{s:I, s:I, s:I}", "vcpus",
                                  (json_int_t)json_int(row, "used_vcpus", 0),
                                  "memory_mib",
                                  (json_int_t)json_int(row, "used_memory_mib", 0),
                                  "disk_gib",
                                  (json_int_t)json_int(row, "used_disk_gib", 0)));
    /* What the admin approved and what the node last said it has; the
     * capacity above is the lower of the two. */
    static const char *const caps[] = { "vcpus", "memory_mib", "disk_gib" };
    static const char *const prefixes[] = { "cap_", "reported_" };
    static const char *const keys[] = { "approved_capacity",
                                        "reported_capacity" };
    for (size_t p = 0; p < ARRAY_SIZE(prefixes); p++) {
        json_t *c = json_object();
        bool any = false;
        for (size_t k = 0; k < ARRAY_SIZE(caps); k++) {
            _cleanup_free_ char *col = xasprintf("%s%s", prefixes[p], caps[k]);
            json_t *v = json_object_get(row, col);
            any = any || json_is_integer(v);
            json_object_set(c, caps[k], v ? v : json_null());
        }
        json_object_set_new(o, keys[p], any ? c : json_null());
        if (!any)
            json_decref(c);
    }
    json_t *seen = json_object_get(row, "last_seen");
    const char *state = "new";
    char t[21];
    if (json_is_integer(seen)) {
        state = json_integer_value(seen) >= now_s() - 3 * node_heartbeat_s
                    ? "online" : "unreachable";
        time_format_rfc3339(json_integer_value(seen), t);
        json_object_set_new(o, "last_seen", json_string(t));
    } else {
        json_object_set_new(o, "last_seen", json_null());
    }
    json_object_set_new(o, "state", json_string(state));
    time_format_rfc3339(json_int(row, "created_at", 0), t);
    json_object_set_new(o, "created_at", json_string(t));
    return o;
}

int node_find(struct app *a, struct http_request *r, json_t **ret)
{
    struct reqctx *c = reqctx_of(r);
    const char *ref = http_req_param(r, 0);
    if (!ref || (!uuid_is_valid(ref) && !name_is_valid(ref)))
        return -ENOENT;
    json_t *rows;
    int e = store_query(a->store, &rows,
                        "SELECT " NODE_COLS " FROM nodes n WHERE n.removed_at "
                        "IS NULL AND (n.id = $1 OR n.name = $1) AND ($2 = 1 OR "
                        "n.account_id = $3) ORDER BY (n.id = $1) DESC, "
                        "(n.account_id = $3) DESC", "sbs", ref,
                        c->role == ROLE_ADMIN, c->account_id);
    if (e < 0)
        return e;
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        return -ENOENT;
    }
    *ret = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    reqctx_set_target(r, json_str(*ret, "id"));
    return 0;
}

HANDLER(h_jointoken_create)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    static const struct jfield fields[] = {
        { "ttl_s", JF_INT, false, 60, 604800, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), false))
        return;
    int64_t ttl = json_int(http_req_json(r), "ttl_s", 3600);
    _cleanup_free_ char *secret = random_hex(16);
    char hash[65], t[21];
    sha256_hex(secret, strlen(secret), hash);
    int64_t now = now_s();
    int e = store_exec(a->store,
                       "INSERT INTO join_tokens (hash, account_id, created_at, "
                       "expires_at) VALUES ($1, $2, $3, $4)", "ssii", hash,
                       c->account_id, now, now + ttl);
    if (e < 0) {
        reply_store_error(r, e, "join token");
        return;
    }
    _cleanup_free_ char *token = jointoken_format(secret, a->ca_sha256);
    reqctx_of(r)->reply_secret = true;
    time_format_rfc3339(now + ttl, t);
    http_reply_json(r, 201, json_pack("{s:s, s:s}", "token", token,
                                      "expires_at", t));
}

HANDLER(h_node_list)
{
    page_list(r, app,
              "SELECT " NODE_COLS " FROM nodes n WHERE n.removed_at IS NULL "
              "AND ($1 = 1 OR n.account_id = $2) AND "
              PAGE_KEYSET("n.created_at", "n.id"),
              "created_at", node_render, "node");
}

/* {"templates": [...], "images": [...]} of a node, sorted; NULL on a
 * store error. */
static json_t *policy_render(struct app *a, const char *node_id)
{
    json_auto_t *rows = NULL, *pool = NULL;
    if (store_query(a->store, &rows, "SELECT kind, name, digest, "
                    "local_image FROM node_policy WHERE node_id = $1 ORDER "
                    "BY kind, name", "s", node_id) < 0 ||
        store_query(a->store, &pool, "SELECT policy_pool FROM nodes WHERE "
                    "id = $1", "s", node_id) < 0)
        return NULL;
    const char *pname = json_str(json_array_get(pool, 0), "policy_pool");
    json_t *templates = json_array(), *images = json_array();
    json_t *entries = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        json_array_append_new(streq(json_str(row, "kind"), "template")
                                  ? templates : images,
                              json_string(json_str(row, "name")));
        json_array_append_new(entries, json_pack(
            "{s:s, s:s, s:O?, s:O?}", "kind", json_str(row, "kind"), "name",
            json_str(row, "name"), "sha256", json_object_get(row, "digest"),
            "local_image", json_object_get(row, "local_image")));
    }
    return json_pack("{s:s, s:o, s:o, s:o, s:s?, s:b}", "node_id", node_id,
                     "templates", templates, "images", images, "entries",
                     entries, "pool", pname, "restricted",
                     pname || json_array_size(templates) +
                                  json_array_size(images) > 0);
}

HANDLER(h_node_get)
{
    struct app *a = app;
    json_auto_t *row = NULL;
    int e = node_find(a, r, &row);
    if (e < 0) {
        reply_store_error(r, e, "node");
        return;
    }
    json_t *o = node_render(row);
    json_auto_t *permit = NULL;
    json_t *ports = json_array();
    size_t i;
    json_t *it;
    store_query(a->store, &permit, "SELECT port FROM node_permit_ports WHERE "
                "node_id = $1 ORDER BY port", "s", json_str(row, "id"));
    json_array_foreach(permit, i, it)
        json_array_append(ports, json_object_get(it, "port"));
    json_object_set_new(o, "permit_ports", ports);
    /* The peers it reaches through the hub's relay, by the rule its
     * desired document follows. */
    json_auto_t *peers = NULL;
    json_t *relayed = json_array();
    store_query(a->store, &peers, "SELECT name, nat_class, agent_contract "
                "FROM nodes WHERE "
                "id <> $1 AND approved = 1 AND removed_at IS NULL AND "
                "wg_public_key IS NOT NULL AND mesh_ip IS NOT NULL ORDER BY "
                "name", "s", json_str(row, "id"));
    json_array_foreach(peers, i, it)
        if (desired_peer_relayed(a, row, it))
            json_array_append(relayed, json_object_get(it, "name"));
    json_object_set_new(json_object_get(o, "reachability"), "relayed_peers",
                        relayed);
    /* And the path each of those takes now, as the node reports it. */
    json_object_set_new(json_object_get(o, "reachability"), "mesh_paths",
                        meshpath_render(a, json_str(row, "id")));
    json_t *pol = policy_render(a, json_str(row, "id"));
    if (pol) {
        json_object_del(pol, "node_id");
        json_object_set_new(o, "policy", pol);
    }
    http_reply_json(r, 200, o);
}

HANDLER(h_node_policy_get)
{
    struct app *a = app;
    json_auto_t *row = NULL;
    int e = node_find(a, r, &row);
    if (e < 0) {
        reply_store_error(r, e, "node");
        return;
    }
    json_t *pol = policy_render(a, json_str(row, "id"));
    if (!pol) {
        http_reply_problem(r, 500, "internal", NULL, "store error");
        return;
    }
    http_reply_json(r, 200, pol);
}

/* Check one list of the policy body: strings that are names (templates)
 * or names / ids (images), duplicates dropped. false after answering. */
static bool policy_list_check(struct http_request *r, json_t *list,
                              const char *field, bool ids_too)
{
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it) {
        const char *s = json_string_value(it);
        if (!s || !(name_is_valid(s) || (ids_too && uuid_is_valid(s)))) {
            http_reply_problem(r, 400, "validation", field,
                               "%s[%zu] must be a name (lowercase letters, "
                               "digits and '-')%s", field, i,
                               ids_too ? " or an image id" : "");
            return false;
        }
    }
    return true;
}

/* What a policy entry naming image `ref` matches, fixed when the policy is
 * set: the sha256 of the catalog image it names (by id, public or the
 * node owner's own; by name, a public one, the oldest first), else the
 * node-local image of that name. 0 or -errno. */
static int policy_image_resolve(struct app *a, const char *owner,
                                const char *ref, char **ret_digest,
                                char **ret_local)
{
    json_auto_t *img = NULL;
    int e = store_query_one(a->store, &img,
                            "SELECT sha256 FROM images WHERE deleted_at IS "
                            "NULL AND state = 'ready' AND sha256 IS NOT NULL "
                            "AND ((id = $1 AND (visibility = 'public' OR "
                            "account_id = $2)) OR (name = $1 AND visibility "
                            "= 'public')) ORDER BY (id = $1) DESC, "
                            "created_at, id LIMIT 1", "ss", ref, owner);
    *ret_digest = *ret_local = NULL;
    if (e == 0)
        *ret_digest = xstrdup(json_str(img, "sha256"));
    else if (e == -ENOENT)
        *ret_local = xstrdup(ref);
    return e == -ENOENT ? 0 : e;
}

/* A template's image content: its pinned digest, else what its image
 * name resolves to as above. */
static int policy_template_resolve(struct app *a, const char *owner,
                                   const json_t *t, char **ret_digest,
                                   char **ret_local)
{
    const char *pin = json_str(t, "image_sha256");
    if (!pin)
        return policy_image_resolve(a, owner, json_str(t, "image"),
                                    ret_digest, ret_local);
    *ret_digest = xstrdup(pin);
    *ret_local = NULL;
    return 0;
}

HANDLER(h_node_policy_put)
{
    struct app *a = app;
    static const char *const pools[] = { "verified", "none", NULL };
    static const struct jfield fields[] = {
        { "templates", JF_ARRAY, false, 0, NODE_POLICY_MAX, NULL },
        { "images", JF_ARRAY, false, 0, NODE_POLICY_MAX, NULL },
        { "pool", JF_ENUM, false, 0, 0, pools },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), true))
        return;
    json_t *b = http_req_json(r);
    json_t *templates = json_object_get(b, "templates");
    json_t *images = json_object_get(b, "images");
    json_auto_t *row = NULL;
    int e = node_find(a, r, &row);
    if (e < 0) {
        reply_store_error(r, e, "node");
        return;
    }
    if (!policy_list_check(r, templates, "templates", false) ||
        !policy_list_check(r, images, "images", true))
        return;
    const char *node_id = json_str(row, "id");
    if (store_tx_begin(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    e = store_exec(a->store, "DELETE FROM node_policy WHERE node_id = $1", "s",
                   node_id);
    /* The pool is part of the policy a PUT replaces: without it, none. */
    const char *pool = json_str(b, "pool");
    if (e >= 0)
        e = store_exec(a->store, "UPDATE nodes SET policy_pool = $1 WHERE id "
                       "= $2", "ss", pool && streq(pool, "verified") ?
                       "verified" : NULL, node_id);
    static const char *const kinds[] = { "template", "image" };
    json_t *lists[] = { templates, images };
    for (size_t k = 0; k < ARRAY_SIZE(kinds) && e >= 0; k++) {
        size_t i;
        json_t *it;
        json_array_foreach(lists[k], i, it) {
            const char *name = json_string_value(it);
            if (store_query_int(a->store, 0, "SELECT COUNT(*) FROM "
                                "node_policy WHERE node_id = $1 AND kind = "
                                "$2 AND name = $3", "sss", node_id, kinds[k],
                                name) > 0)
                continue; /* listed twice */
            /* A template is its name and its image's content. */
            json_auto_t *t = k == 0 ? catalog_template(a, name) : NULL;
            if (k == 0 && !t) {
                store_tx_rollback(a->store);
                http_reply_problem(r, 400, "validation", "templates",
                                   "templates[%zu]: no such template '%s'", i,
                                   name);
                return;
            }
            _cleanup_free_ char *digest = NULL, *local = NULL;
            e = t ? policy_template_resolve(a, json_str(row, "account_id"),
                                            t, &digest, &local)
                  : policy_image_resolve(a, json_str(row, "account_id"), name,
                                         &digest, &local);
            if (e < 0)
                break;
            e = store_exec(a->store, "INSERT INTO node_policy (node_id, kind, "
                           "name, digest, local_image) VALUES ($1, $2, $3, "
                           "$4, $5)", "sssss", node_id, kinds[k], name,
                           digest, local);
            if (e < 0)
                break;
        }
    }
    if (e < 0) {
        store_tx_rollback(a->store);
        reply_store_error(r, e, "node policy");
        return;
    }
    if (store_tx_commit(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    scheduler_fleet_changed();
    json_t *pol = policy_render(a, node_id);
    if (!pol) {
        http_reply_problem(r, 500, "internal", NULL, "store error");
        return;
    }
    reqctx_set_detail(r, "templates %zu, images %zu, pool %s",
                      json_array_size(json_object_get(pol, "templates")),
                      json_array_size(json_object_get(pol, "images")),
                      json_str(pol, "pool") ? json_str(pol, "pool") : "none");
    http_reply_json(r, 200, pol);
}

/* Approval records the capacity the scheduler may use on the node: the
 * figures given in the body, else what the node reports now. Later
 * reports above it are clamped (h_agent.c). */
HANDLER(h_node_approve)
{
    struct app *a = app;
    static const struct jfield fields[] = {
        { "vcpus", JF_INT, false, 1, NODE_MAX_VCPUS, NULL },
        { "memory_mib", JF_INT, false, 64, NODE_MAX_MEMORY_MIB, NULL },
        { "disk_gib", JF_INT, false, 0, NODE_MAX_DISK_GIB, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), false))
        return;
    json_t *b = http_req_json(r);
    json_auto_t *row = NULL, *again = NULL;
    int e = node_find(a, r, &row);
    if (e < 0) {
        reply_store_error(r, e, "node");
        return;
    }
    static const char *const cols[] = { "vcpus", "memory_mib", "disk_gib" };
    int64_t cap[3], use[3];
    for (size_t k = 0; k < ARRAY_SIZE(cols); k++) {
        _cleanup_free_ char *rep = xasprintf("reported_%s", cols[k]);
        int64_t reported = json_int(row, rep, json_int(row, cols[k], 0));
        cap[k] = json_int(b, cols[k], reported);
        use[k] = reported < cap[k] ? reported : cap[k];
    }
    store_exec(a->store, "UPDATE nodes SET approved = 1, cap_vcpus = $1, "
               "cap_memory_mib = $2, cap_disk_gib = $3, vcpus = $4, "
               "memory_mib = $5, disk_gib = $6 WHERE id = $7", "iiiiiis",
               cap[0], cap[1], cap[2], use[0], use[1], use[2],
               json_str(row, "id"));
    reqctx_set_detail(r, "capacity %lld vCPUs, %lld MiB, %lld GiB",
                      (long long)cap[0], (long long)cap[1], (long long)cap[2]);
    app_all_nodes_changed(a);
    if (node_find(a, r, &again) < 0) {
        http_reply_problem(r, 500, "internal", NULL, "node vanished");
        return;
    }
    http_reply_json(r, 200, node_render(again));
}

bool retire_unused(struct app *a, struct http_request *r, const char *kind,
                   const char *id, const char *count_sql,
                   const char *retire_sql, const char *what)
{
    if (store_tx_begin(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return false;
    }
    int64_t users = -1;
    if (store_lock(a->store, kind, id) == 0)
        users = store_query_int(a->store, -1, count_sql, "s", id);
    if (users != 0) {
        store_tx_rollback(a->store);
        if (users < 0)
            http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        else
            http_reply_problem(r, 409, "conflict", NULL,
                               "%s is used by %lld VMs", what,
                               (long long)users);
        return false;
    }
    if (store_exec(a->store, retire_sql, "is", now_s(), id) < 0) {
        store_tx_rollback(a->store);
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return false;
    }
    if (store_tx_commit(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return false;
    }
    return true;
}

/* A VM that should run, lost with its node: an eviction. 0 or -errno. */
static int node_vm_evicted(struct app *a, const char *node_id, json_t *vm)
{
    if (!streq(json_str(vm, "desired_state"), "running"))
        return 0;
    return reputation_fault(a, node_id, REP_FAULT_EVICTION);
}

/* Mark the VMs of node `node_id` (being removed while unreachable) lost:
 * their disks were there. Each stays deletable, with the reason, and an
 * event on its tenant's account says so; those already being deleted are
 * deleted now. Inside the caller's transaction. */
static int node_vms_lose(struct app *a, const char *node_id,
                         const char *node_name)
{
    json_auto_t *rows = NULL;
    int e = store_query(a->store, &rows, "SELECT id, account_id, name, "
                        "desired_state FROM vms WHERE node_id = $1 AND "
                        "deleted_at IS NULL ORDER BY id", "s", node_id);
    if (e < 0)
        return e;
    _cleanup_free_ char *why = xasprintf("node '%s' was removed while "
                                         "unreachable; the VM's disk was on "
                                         "it", node_name);
    int64_t now = now_s();
    size_t i;
    json_t *v;
    json_array_foreach(rows, i, v) {
        const char *id = json_str(v, "id");
        if (streq(json_str(v, "desired_state"), "deleted"))
            e = vm_delete_finish(a, id, now);
        else if ((e = node_vm_evicted(a, node_id, v)) >= 0 &&
                 (e = store_exec(a->store, "UPDATE vms SET state = 'lost', "
                                 "state_reason = $1, desired_state = "
                                 "'stopped', updated_at = $2 WHERE id = $3",
                                 "sis", why, now, id)) >= 0)
            e = app_event(a, json_str(v, "account_id"), node_id, "vm.lost", id,
                          200, why);
        if (e < 0 && e != -ENOENT)
            return e;
    }
    return 0;
}

/* DELETE /v1/nodes/{id}?force=true: a node that is gone for good. Its VMs
 * become `lost` (never undeletable); refused while the node reports. */
static void node_remove_forced(struct app *a, struct http_request *r,
                               json_t *row)
{
    const char *id = json_str(row, "id");
    int64_t cutoff = now_s() - 3 * a->cfg.heartbeat_s;
    if (json_is_integer(json_object_get(row, "last_seen")) &&
        json_int(row, "last_seen", 0) >= cutoff) {
        http_reply_problem(r, 409, "conflict", "force",
                           "node '%s' is online: drain it and delete or "
                           "stop its VMs, or remove it once it is gone",
                           json_str(row, "name"));
        return;
    }
    if (store_tx_begin(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    int e = store_lock(a->store, "node", id);
    if (e == 0)
        e = node_vms_lose(a, id, json_str(row, "name"));
    if (e == 0)
        e = store_exec(a->store, "UPDATE nodes SET removed_at = $1 WHERE "
                       "id = $2", "is", now_s(), id);
    if (e < 0 || store_tx_commit(a->store) < 0) {
        if (e < 0)
            store_tx_rollback(a->store);
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    reqctx_set_detail(r, "forced while unreachable: %lld VMs lost",
                      (long long)json_int(row, "vm_count", 0));
    app_all_nodes_changed(a); /* peers drop it */
    http_reply_text(r, 204, "application/json", NULL, 0);
}

HANDLER(h_node_delete)
{
    struct app *a = app;
    json_auto_t *row = NULL;
    const char *force = http_req_query(r, "force");
    if (force && !streq(force, "true") && !streq(force, "false")) {
        http_reply_problem(r, 400, "validation", "force",
                           "force must be true or false");
        return;
    }
    int e = node_find(a, r, &row);
    if (e < 0) {
        reply_store_error(r, e, "node");
        return;
    }
    if (streq(force, "true")) {
        node_remove_forced(a, r, row);
        return;
    }
    /* Counted under the node's lock, which placements on it take: no VM
     * lands on a node as it goes. */
    if (!retire_unused(a, r, "node", json_str(row, "id"),
                       "SELECT COUNT(*) FROM vms WHERE node_id = $1 AND "
                       "deleted_at IS NULL",
                       "UPDATE nodes SET removed_at = $1 WHERE id = $2",
                       "node"))
        return;
    app_all_nodes_changed(a); /* peers drop it */
    http_reply_text(r, 204, "application/json", NULL, 0);
}

/* Drain (no new placements) or undrain a node; its VMs stay. */
static void node_set_drained(struct app *a, struct http_request *r,
                             bool drained)
{
    json_auto_t *row = NULL, *again = NULL;
    int e = node_find(a, r, &row);
    if (e < 0) {
        reply_store_error(r, e, "node");
        return;
    }
    if ((e = store_exec(a->store, "UPDATE nodes SET drained = $1 WHERE id = "
                        "$2", "bs", drained, json_str(row, "id"))) < 0 ||
        (e = node_find(a, r, &again)) < 0) {
        reply_store_error(r, e, "node");
        return;
    }
    scheduler_fleet_changed();
    http_reply_json(r, 200, node_render(again));
}

HANDLER(h_node_drain) { node_set_drained(app, r, true); }
HANDLER(h_node_undrain) { node_set_drained(app, r, false); }

static json_t *event_render(json_t *row)
{
    char t[21];
    time_format_rfc3339(json_int(row, "time_ms", 0) / 1000, t);
    json_t *o = json_object();
    static const char *const copy[] = { "id", "account_id", "actor", "action",
                                        "target", "status", "detail" };
    for (size_t i = 0; i < ARRAY_SIZE(copy); i++) {
        json_t *v = json_object_get(row, copy[i]);
        json_object_set(o, copy[i], v ? v : json_null());
    }
    json_object_set_new(o, "time", json_string(t));
    return o;
}

HANDLER(h_event_list)
{
    page_list(r, app,
              "SELECT id, time_ms, account_id, actor, action, target, status, "
              "detail FROM events WHERE ($1 = 1 OR account_id = $2) AND "
              PAGE_KEYSET("time_ms", "id"),
              "time_ms", event_render, "event");
}

/* ---- the hub's verified application pool ---- */

static json_t *pool_render(struct app *a)
{
    json_auto_t *rows = NULL;
    if (store_query(a->store, &rows, "SELECT kind, name, digest FROM "
                    "pool_members ORDER BY kind, name", "") < 0)
        return NULL;
    json_t *members = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_array_append_new(members, json_pack(
            "{s:s, s:s, s:s}", "kind", json_str(row, "kind"), "name",
            json_str(row, "name"), "sha256", json_str(row, "digest")));
    return json_pack("{s:s, s:o}", "pool", "verified", "members", members);
}

HANDLER(h_pool_list)
{
    json_t *o = pool_render(app);
    if (!o) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    http_reply_json(r, 200, o);
}

/* POST /v1/pool: {"sha256": HEX} adds an image by content, {"template":
 * NAME} a template with its image's content (a public catalog image). */
HANDLER(h_pool_add)
{
    struct app *a = app;
    static const struct jfield fields[] = {
        { "sha256", JF_STRING, false, 64, 64, NULL },
        { "template", JF_NAME, false, 0, 0, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), true))
        return;
    json_t *b = http_req_json(r);
    const char *sha = json_str(b, "sha256"), *tmpl = json_str(b, "template");
    if (!sha == !tmpl) {
        http_reply_problem(r, 400, "validation", "sha256",
                           "give either sha256 (an image's content) or "
                           "template (a template's name)");
        return;
    }
    for (const char *c = sha; c && *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) {
            http_reply_problem(r, 400, "validation", "sha256",
                               "sha256 '%s' is not 64 lowercase hex digits",
                               sha);
            return;
        }
    _cleanup_free_ char *digest = sha ? xstrdup(sha) : NULL, *local = NULL;
    if (tmpl) {
        json_auto_t *t = catalog_template(a, tmpl);
        if (!t) {
            http_reply_problem(r, 400, "validation", "template",
                               "no such template '%s'", tmpl);
            return;
        }
        int e = policy_template_resolve(a, "", t, &digest, &local);
        if (e < 0) {
            reply_store_error(r, e, "pool");
            return;
        }
        if (!digest) {
            http_reply_problem(r, 409, "conflict", "template",
                               "template '%s' runs image '%s', which is no "
                               "public catalog image: its content cannot be "
                               "verified", tmpl, json_str(t, "image"));
            return;
        }
    }
    int e = store_exec(a->store, "INSERT INTO pool_members (kind, name, "
                       "digest, added_at) VALUES ($1, $2, $3, $4) ON "
                       "CONFLICT (kind, name) DO UPDATE SET digest = $3",
                       "sssi", tmpl ? "template" : "image",
                       tmpl ? tmpl : sha, digest, now_s());
    if (e < 0) {
        reply_store_error(r, e, "pool");
        return;
    }
    scheduler_fleet_changed();
    reqctx_set_detail(r, "%s %s", tmpl ? "template" : "image",
                      tmpl ? tmpl : sha);
    json_t *o = pool_render(a);
    http_reply_json(r, 201, o ? o : json_object());
}

/* DELETE /v1/pool/{id}: the member named id (a template's name or an
 * image's sha256). */
HANDLER(h_pool_remove)
{
    struct app *a = app;
    const char *ref = http_req_param(r, 0);
    int e = ref ? store_exec(a->store, "DELETE FROM pool_members WHERE name "
                             "= $1", "s", ref) : 0;
    if (e < 0) {
        reply_store_error(r, e, "pool");
        return;
    }
    if (e == 0) {
        http_reply_problem(r, 404, "not-found", NULL,
                           "no pool member '%s'", ref ? ref : "");
        return;
    }
    scheduler_fleet_changed();
    http_reply_text(r, 204, "application/json", NULL, 0);
}
