/* Tenant networks and published ports. Networks are per tenant, never
 * overlap (they share each node's routing table), and are refused for
 * deletion while a VM uses them. */
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/handlers.h"
#include "controller/netalloc.h"
#include "controller/quota.h"
#include "controller/scheduler.h"

#include <errno.h>
#include <stdio.h>

#define NET_COLS                                                               \
    "w.id, w.account_id, w.name, w.cidr, w.gateway, w.cidr6, w.gateway6, "   \
    "w.vxlan_id, "                                                             \
    "w.is_default, w.created_at, (SELECT COUNT(*) FROM vm_nics c WHERE "      \
    "c.network_id = w.id) AS vm_count"

static json_t *net_render(json_t *row)
{
    char t[21];
    time_format_rfc3339(json_int(row, "created_at", 0), t);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:b, s:I, s:i, s:s}",
                     "id", json_str(row, "id"), "account_id",
                     json_str(row, "account_id"), "name", json_str(row, "name"),
                     "cidr", json_str(row, "cidr"), "gateway",
                     json_str(row, "gateway"), "vxlan_id",
                     (json_int_t)json_int(row, "vxlan_id", 0), "default",
                     json_int(row, "is_default", 0) != 0, "vm_count",
                     (json_int_t)json_int(row, "vm_count", 0), "mtu", 1370,
                     "created_at", t);
    /* Networks get their /64 at creation or at the controller's start. */
    if (json_str(row, "cidr6")) {
        json_object_set_new(o, "cidr6", json_string(json_str(row, "cidr6")));
        json_object_set_new(o, "gateway6",
                            json_string(json_str(row, "gateway6")));
    }
    return o;
}

int network_insert(struct store *s, const char *account_id, const char *name,
                   const char *cidr, bool is_default, char ret_id[37])
{
    uint32_t net;
    int prefix;
    if (netalloc_parse_cidr(cidr, &net, &prefix) < 0)
        return -EINVAL;
    if (netalloc_cidr_taken(s, net, prefix))
        return -EADDRINUSE;
    _cleanup_free_ char *gw = netalloc_gateway(net);
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    int e = store_exec(s,
                       "INSERT INTO networks (id, account_id, name, cidr, "
                       "gateway, vxlan_id, is_default, created_at) VALUES ($1, "
                       "$2, $3, $4, $5, $6, $7, $8)", "sssssibi", id,
                       account_id, name, cidr, gw, netalloc_next_vxlan(s),
                       is_default, now_s());
    if (e < 0 || (e = netalloc_network_v6(s, id)) < 0)
        return e;
    memcpy(ret_id, id, UUID_STR_LEN + 1);
    return 0;
}

int network_resolve(struct store *s, const char *account_id, const char *ref,
                    char ret_id[37])
{
    json_auto_t *row = NULL;
    if (!ref) {
        /* Under the account's lock, so that concurrent first VMs of an
         * account through two replicas make one default network. */
        if (store_lock(s, "default-network", account_id) == 0 &&
            store_query_one(s, &row, "SELECT id FROM networks WHERE "
                                     "account_id = $1 AND is_default = 1 AND "
                                     "deleted_at IS NULL", "s", account_id) == 0) {
            memcpy(ret_id, json_str(row, "id"), UUID_STR_LEN + 1);
            return 0;
        }
        _cleanup_free_ char *cidr = netalloc_default_cidr(s);
        if (!cidr)
            return -ENOSPC;
        return network_insert(s, account_id, "default", cidr, true, ret_id);
    }
    if (!uuid_is_valid(ref) && !name_is_valid(ref))
        return -ENOENT;
    int e = store_query_one(s, &row, "SELECT id FROM networks WHERE account_id "
                                     "= $1 AND (id = $2 OR name = $2) AND "
                                     "deleted_at IS NULL", "ss", account_id, ref);
    if (e < 0) {
        if (e == -ENOENT && streq(ref, "default"))
            return network_resolve(s, account_id, NULL, ret_id);
        return e;
    }
    memcpy(ret_id, json_str(row, "id"), UUID_STR_LEN + 1);
    return 0;
}

static int net_find(struct app *a, struct http_request *r, json_t **ret)
{
    struct reqctx *c = reqctx_of(r);
    const char *ref = http_req_param(r, 0);
    if (!ref || (!uuid_is_valid(ref) && !name_is_valid(ref)))
        return -ENOENT;
    json_t *rows;
    int e = store_query(a->store, &rows,
                        "SELECT " NET_COLS " FROM networks w WHERE "
                        "w.deleted_at IS NULL AND (w.id = $1 OR (w.name = $1 "
                        "AND w.account_id = $2)) AND ($3 = 1 OR w.account_id = "
                        "$2)", "ssb", ref, c->account_id, c->role == ROLE_ADMIN);
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

HANDLER(h_net_create)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    static const struct jfield fields[] = {
        { "name", JF_NAME, true, 0, 0, NULL },
        { "cidr", JF_STRING, true, 9, 18, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), true))
        return;
    json_t *b = http_req_json(r);
    char id[UUID_STR_LEN + 1];
    uint32_t net;
    int prefix;
    if (netalloc_parse_cidr(json_str(b, "cidr"), &net, &prefix) < 0) {
        http_reply_problem(r, 400, "validation", "cidr",
                           "cidr must be a network address with a prefix "
                           "from /16 to /29, like 10.1.0.0/24");
        return;
    }
    int e = netalloc_cidr_allowed(a->cfg.tenant_pools, a->cfg.mesh_cidr, net,
                                  prefix);
    if (e == -EADDRNOTAVAIL) {
        http_reply_problem(r, 409, "conflict", "cidr",
                           "%s overlaps the hub's mesh range %s",
                           json_str(b, "cidr"), a->cfg.mesh_cidr);
        return;
    }
    if (e < 0) {
        http_reply_problem(r, 400, "validation", "cidr",
                           "%s is outside the ranges tenants' networks may "
                           "use: %s", json_str(b, "cidr"),
                           a->cfg.tenant_pools);
        return;
    }
    if (quota_tx_begin(a, r, c->account_id, QUOTA_NETWORKS, 1) < 0)
        return;
    e = network_insert(a->store, c->account_id, json_str(b, "name"),
                           json_str(b, "cidr"), false, id);
    if (e < 0) {
        store_tx_rollback(a->store);
        if (e == -EINVAL)
            http_reply_problem(r, 400, "validation", "cidr",
                               "cidr must be a network address with a prefix "
                               "from /16 to /29, like 10.1.0.0/24");
        else if (e == -EADDRINUSE)
            http_reply_problem(r, 409, "conflict", "cidr",
                               "%s overlaps an existing network",
                               json_str(b, "cidr"));
        else if (e == -ENOSPC)
            http_reply_problem(r, 409, "insufficient-capacity", "cidr",
                               "no IPv6 subnet is left for a new network");
        else
            reply_store_error(r, e, "a network with this name");
        return;
    }
    if (store_tx_commit(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    reqctx_set_target(r, id);
    json_auto_t *row = NULL;
    store_query_one(a->store, &row, "SELECT " NET_COLS " FROM networks w WHERE "
                    "w.id = $1", "s", id);
    http_reply_json(r, 201, net_render(row));
}

HANDLER(h_net_list)
{
    page_list(r, app,
              "SELECT " NET_COLS " FROM networks w WHERE w.deleted_at IS NULL "
              "AND ($1 = 1 OR w.account_id = $2) AND "
              PAGE_KEYSET("w.created_at", "w.id"),
              "created_at", net_render, "network");
}

HANDLER(h_net_get)
{
    struct app *a = app;
    json_auto_t *row = NULL;
    int e = net_find(a, r, &row);
    if (e < 0) {
        reply_store_error(r, e, "network");
        return;
    }
    http_reply_json(r, 200, net_render(row));
}

HANDLER(h_net_delete)
{
    struct app *a = app;
    json_auto_t *row = NULL;
    int e = net_find(a, r, &row);
    if (e < 0) {
        reply_store_error(r, e, "network");
        return;
    }
    if (json_int(row, "vm_count", 0) > 0) {
        http_reply_problem(r, 409, "conflict", NULL,
                           "network is used by %lld VMs",
                           (long long)json_int(row, "vm_count", 0));
        return;
    }
    e = store_exec(a->store, "UPDATE networks SET deleted_at = $1 WHERE id = "
                   "$2", "is", now_s(), json_str(row, "id"));
    if (e < 0) {
        reply_store_error(r, e, "network");
        return;
    }
    http_reply_text(r, 204, "application/json", NULL, 0);
}

/* ---- published ports ---- */

static json_t *port_render(json_t *row)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "id", json_str(row, "id"),
                          "vm_id", json_str(row, "vm_id"), "proto",
                          json_str(row, "proto"), "vm_port",
                          (json_int_t)json_int(row, "vm_port", 0));
    json_t *hp = json_object_get(row, "host_port");
    json_object_set(o, "host_port", hp ? hp : json_null());
    /* The provider's --public-ip, else where the node connects from. */
    const char *ip = json_str(row, "public_ip");
    if (!ip)
        ip = json_str(row, "observed_ip");
    json_object_set_new(o, "public_ip", ip ? json_string(ip) : json_null());
    json_object_set_new(o, "public_address",
                        ip && json_is_integer(hp) ?
                            json_sprintf(strchr(ip, ':') ? "[%s]:%lld" :
                                                           "%s:%lld", ip,
                                         (long long)json_integer_value(hp)) :
                            json_null());
    /* Over IPv6 too where the node has a global address and the VM a
     * dual-stack network: the same host port. */
    const char *ip6 = json_str(row, "public_ip6");
    if (ip6 && json_int(row, "has6", 0) && json_is_integer(hp))
        json_object_set_new(o, "public_address6",
                            json_sprintf("[%s]:%lld", ip6,
                                         (long long)json_integer_value(hp)));
    return o;
}

static const char *const protos[] = { "tcp", "udp", NULL };
const struct jfield port_fields[3] = {
    { "proto", JF_ENUM, true, 0, 0, protos },
    { "vm_port", JF_INT, true, 1, 65535, NULL },
    { "host_port", JF_INT, false, 1, 65535, NULL },
};

int port_insert(struct store *s, const char *vm_id, const char *node_id,
                json_t *spec, char ret_id[37])
{
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    int64_t want = json_int(spec, "host_port", 0);
    int64_t host = -1;
    if (node_id) {
        host = netalloc_host_port(s, node_id, json_str(spec, "proto"), want);
        if (host < 0)
            return (int)host;
    }
    const char *sql = host >= 0
        ? "INSERT INTO ports (id, vm_id, proto, vm_port, want_port, node_id, "
          "host_port, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        : "INSERT INTO ports (id, vm_id, proto, vm_port, want_port, node_id, "
          "created_at) VALUES ($1, $2, $3, $4, $5, $6, $8)";
    int e;
    if (host >= 0)
        e = store_exec(s, sql, "sssiisii", id, vm_id, json_str(spec, "proto"),
                       json_int(spec, "vm_port", 0), want, node_id, host,
                       now_s());
    else
        e = store_exec(s, "INSERT INTO ports (id, vm_id, proto, vm_port, "
                          "want_port, created_at) VALUES ($1, $2, $3, $4, $5, "
                          "$6)", "sssiii", id, vm_id, json_str(spec, "proto"),
                       json_int(spec, "vm_port", 0), want, now_s());
    if (e < 0)
        return e;
    if (ret_id)
        memcpy(ret_id, id, UUID_STR_LEN + 1);
    return 0;
}

#define PORT_SELECT                                                            \
    "SELECT p.id, p.vm_id, p.proto, p.vm_port, p.host_port, n.public_ip, "    \
    "n.public_ip6, (SELECT COUNT(*) FROM vm_nics c JOIN networks w ON w.id = " \
    "c.network_id WHERE c.vm_id = p.vm_id AND c.idx = 0 AND w.cidr6 IS NOT "   \
    "NULL) AS has6, n.observed_endpoint AS observed_ip FROM "                  \
    "ports p LEFT JOIN nodes n ON n.id = p.node_id "

HANDLER(h_port_list)
{
    struct app *a = app;
    json_auto_t *vm = NULL, *rows = NULL;
    int e = vm_lookup(a, r, &vm);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    store_query(a->store, &rows, PORT_SELECT "WHERE p.vm_id = $1 ORDER BY "
                "p.proto, p.vm_port", "s", json_str(vm, "id"));
    json_t *items = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_array_append_new(items, port_render(row));
    http_reply_json(r, 200, json_pack("{s:o, s:n}", "items", items,
                                      "next_cursor"));
}

HANDLER(h_port_add)
{
    struct app *a = app;
    if (!body_check(r, port_fields, ARRAY_SIZE(port_fields), true))
        return;
    json_auto_t *vm = NULL, *row = NULL;
    int e = vm_lookup(a, r, &vm);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    char id[UUID_STR_LEN + 1];
    if (quota_tx_begin(a, r, json_str(vm, "account_id"), QUOTA_PORTS, 1) < 0)
        return;
    e = port_insert(a->store, json_str(vm, "id"), json_str(vm, "node_id"),
                    http_req_json(r), id);
    if (e >= 0)
        e = billing_deal_reshape(a, json_str(vm, "id")); /* port-hours */
    if (e < 0) {
        store_tx_rollback(a->store);
        if (e == -ENOSPC)
            http_reply_problem(r, 409, "insufficient-capacity", "host_port",
                               "no free host port on the VM's node");
        else if (e == -EADDRINUSE || e == -EACCES) {
            json_t *b = http_req_json(r);
            _cleanup_free_ char *offer = netalloc_port_offer(
                a->store, json_str(vm, "node_id"), json_str(b, "proto"));
            http_reply_problem(r, 409, "port-unavailable", "host_port",
                               "host port %lld/%s is %s: %s",
                               (long long)json_int(b, "host_port", 0),
                               json_str(b, "proto"),
                               e == -EADDRINUSE ? "taken on the VM's node" :
                                   "neither in the node's range nor permitted "
                                   "by its provider", offer ? offer : "");
        } else
            reply_store_error(r, e, "this port");
        return;
    }
    store_tx_commit(a->store);
    app_node_changed(a, json_str(vm, "node_id"));
    store_query_one(a->store, &row, PORT_SELECT "WHERE p.id = $1", "s", id);
    http_reply_json(r, 201, port_render(row));
}

HANDLER(h_port_remove)
{
    struct app *a = app;
    json_auto_t *vm = NULL;
    int e = vm_lookup(a, r, &vm);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    const char *pid = http_req_param(r, 1);
    if (!uuid_is_valid(pid) ||
        store_exec(a->store, "DELETE FROM ports WHERE id = $1 AND vm_id = $2",
                   "ss", pid, json_str(vm, "id")) <= 0) {
        http_reply_problem(r, 404, "not-found", NULL, "no such port");
        return;
    }
    if (store_tx_begin(a->store) == 0) {
        if (billing_deal_reshape(a, json_str(vm, "id")) < 0)
            store_tx_rollback(a->store);
        else
            store_tx_commit(a->store);
    }
    app_node_changed(a, json_str(vm, "node_id"));
    http_reply_text(r, 204, "application/json", NULL, 0);
}
