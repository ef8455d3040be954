/* GPU routes: the provider's (and admin's) list of GPUs per node, and
 * choosing which are offered. Tenants see GPU models only through
 * /v1/offers. */
#include "controller/gpus.h"
#include "controller/handlers.h"

#include <errno.h>

static json_t *gpu_render(json_t *row)
{
    json_t *fns = json_loads(json_str(row, "functions"), 0, NULL);
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:s, s:b, s:b, s:b}",
        "node_id", json_str(row, "node_id"), "node_name",
        json_str(row, "node_name"), "address", json_str(row, "address"),
        "model", json_str(row, "model"), "vendor", json_str(row, "vendor"),
        "name", json_str(row, "name"), "functions",
        json_is_array(fns) ? fns : json_array(), "numa_node",
        (json_int_t)json_int(row, "numa_node", -1), "iommu_group",
        (json_int_t)json_int(row, "iommu_group", -1), "cpulist",
        json_str(row, "cpulist"), "usable", json_int(row, "usable", 0) != 0,
        "present", json_int(row, "present", 0) != 0, "offered",
        json_int(row, "offered", 0) != 0);
    char id[16];
    snprintf(id, sizeof(id), "%s:%s", json_str(row, "vendor_id"),
             json_str(row, "device_id"));
    json_object_set_new(o, "id", json_string(id));
    json_t *reason = json_object_get(row, "reason");
    json_object_set(o, "reason", json_is_string(reason) ? reason : json_null());
    json_t *vm = json_object_get(row, "vm_id");
    json_object_set(o, "vm_id", json_is_string(vm) ? vm : json_null());
    return o;
}

#define GPU_COLS                                                               \
    "g.node_id, n.name AS node_name, g.address, g.model, g.vendor_id, "        \
    "g.device_id, g.vendor, g.name, g.functions, g.numa_node, g.iommu_group, " \
    "g.cpulist, g.usable, g.reason, g.present, g.offered, g.vm_id"

/* The GPUs the caller may see (node_id NULL: on every node), ordered by
 * node and address, as {"gpus": [...]}; NULL on a store error. */
static json_t *gpus_list(struct app *a, struct http_request *r,
                         const char *node_id)
{
    struct reqctx *c = reqctx_of(r);
    json_auto_t *rows = NULL;
    if (store_query(a->store, &rows,
                    "SELECT " GPU_COLS " FROM gpus g JOIN nodes n ON n.id = "
                    "g.node_id WHERE n.removed_at IS NULL AND ($1 = 1 OR "
                    "n.account_id = $2) AND (CAST($3 AS TEXT) IS NULL OR "
                    "g.node_id = $3) ORDER BY n.created_at, n.id, g.address",
                    "bss",
                    c->role == ROLE_ADMIN, c->account_id, node_id) < 0)
        return NULL;
    json_t *list = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_array_append_new(list, gpu_render(row));
    return json_pack("{s:o}", "gpus", list);
}

HANDLER(h_gpu_list)
{
    struct app *a = app;
    const char *node = http_req_query(r, "node");
    json_auto_t *row = NULL;
    if (node) {
        /* node_find reads the route's parameter; look the node up here. */
        struct reqctx *c = reqctx_of(r);
        if ((!uuid_is_valid(node) && !name_is_valid(node)) ||
            store_query_one(a->store, &row,
                            "SELECT id FROM nodes WHERE removed_at IS NULL AND "
                            "(id = $1 OR name = $1) AND ($2 = 1 OR account_id "
                            "= $3) ORDER BY (id = $1) DESC", "sbs", node,
                            c->role == ROLE_ADMIN, c->account_id) < 0) {
            http_reply_problem(r, 404, "not-found", "node",
                               "no node '%s' of yours", node);
            return;
        }
    }
    json_t *out = gpus_list(a, r, row ? json_str(row, "id") : NULL);
    if (!out) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    http_reply_json(r, 200, out);
}

/* Offer or withdraw the GPUs named in the body ({"addresses": [...]} or
 * {"all": true}) on the route's node. Offering names only usable GPUs
 * (409 with the reason otherwise); `all` offers every usable one.
 * Withdrawing leaves a GPU with the VM holding it until that VM lets go. */
static void gpu_offer_set(struct app *a, struct http_request *r, bool offer)
{
    static const struct jfield fields[] = {
        { "addresses", JF_ARRAY, false, 1, 64, NULL },
        { "all", JF_BOOL, false, 0, 0, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), true))
        return;
    json_t *b = http_req_json(r), *addrs = json_object_get(b, "addresses");
    bool all = json_bool(b, "all", false);
    if (!all == !addrs) {
        http_reply_problem(r, 400, "validation", "addresses",
                           "name the GPUs in 'addresses' or set 'all'");
        return;
    }
    size_t i;
    json_t *v;
    json_array_foreach(addrs, i, v)
        if (!gpu_addr_ok(json_string_value(v))) {
            http_reply_problem(r, 400, "validation", "addresses",
                               "addresses[%zu] must be a PCI address "
                               "dddd:bb:ss.f (lower-case hex)", i);
            return;
        }
    json_auto_t *node = NULL;
    int e = node_find(a, r, &node);
    if (e < 0) {
        reply_store_error(r, e, "node");
        return;
    }
    const char *node_id = json_str(node, "id");
    if (store_tx_begin(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    if (all) {
        e = store_exec(a->store, "UPDATE gpus SET offered = $1 WHERE node_id "
                       "= $2 AND ($1 = 0 OR usable = 1)", "bs", offer, node_id);
    }
    json_array_foreach(addrs, i, v) {
        const char *addr = json_string_value(v);
        json_auto_t *g = NULL;
        e = store_query_one(a->store, &g, "SELECT usable, reason FROM gpus "
                            "WHERE node_id = $1 AND address = $2", "ss",
                            node_id, addr);
        if (e == -ENOENT) {
            store_tx_rollback(a->store);
            http_reply_problem(r, 404, "not-found", "addresses",
                               "node %s reports no GPU at %s",
                               json_str(node, "name"), addr);
            return;
        }
        if (e >= 0 && offer && json_int(g, "usable", 0) == 0) {
            store_tx_rollback(a->store);
            http_reply_problem(r, 409, "conflict", "addresses",
                               "GPU %s cannot be offered: %s", addr,
                               json_str(g, "reason") ? json_str(g, "reason")
                                                     : "unusable");
            return;
        }
        if (e >= 0)
            e = store_exec(a->store, "UPDATE gpus SET offered = $1 WHERE "
                           "node_id = $2 AND address = $3", "bss", offer,
                           node_id, addr);
        if (e < 0)
            break;
    }
    if (e < 0) {
        store_tx_rollback(a->store);
        reply_store_error(r, e, "GPU");
        return;
    }
    if (store_tx_commit(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    json_t *out = gpus_list(a, r, node_id);
    if (!out) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    http_reply_json(r, 200, out);
}

HANDLER(h_gpu_offer) { gpu_offer_set(app, r, true); }
HANDLER(h_gpu_withdraw) { gpu_offer_set(app, r, false); }
