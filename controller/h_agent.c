/* The node agent protocol: register with a join token, long-poll the
 * desired state, post status. A node speaks only about its own VMs. */
#include "api/jointoken.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/auth.h"
#include "controller/desired.h"
#include "controller/handlers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>

/* Next free mesh address: the mesh range's base plus one more than the
 * highest offset handed out so far. */
static char *mesh_next(struct app *a)
{
    _cleanup_free_ char *base = xstrdup(a->cfg.mesh_cidr);
    char *slash = strchr(base, '/');
    struct in_addr in;
    if (slash)
        *slash = '\0';
    if (inet_pton(AF_INET, base, &in) != 1)
        return NULL;
    int prefix = slash ? atoi(slash + 1) : 12;
    uint32_t net = ntohl(in.s_addr);
    uint32_t size = prefix >= 32 ? 1u : (1u << (32 - prefix));
    int64_t n = store_query_int(a->store, 0, "SELECT COUNT(*) FROM nodes", "");
    if ((uint64_t)n + 2 >= size)
        return NULL;
    struct in_addr out = { htonl(net + (uint32_t)n + 1) };
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &out, text, sizeof(text));
    return xstrdup(text);
}

/* An address a node says it has must be one: it ends up in firewall
 * rules on every node. */
static bool addr_ok(struct http_request *r, const char *ip)
{
    struct in6_addr a;
    if (!ip || inet_pton(AF_INET, ip, &a) == 1 || inet_pton(AF_INET6, ip, &a) == 1)
        return true;
    http_reply_problem(r, 400, "validation", "public_ip",
                       "'public_ip' must be an IP address");
    return false;
}

HANDLER(h_agent_register)
{
    struct app *a = app;
    static const struct jfield fields[] = {
        { "token", JF_STRING, true, 1, 200, NULL },
        { "name", JF_NAME, true, 0, 0, NULL },
        { "inventory", JF_OBJECT, true, 0, 0, NULL },
        { "wg_public_key", JF_STRING, false, 44, 44, NULL },
        { "endpoint", JF_STRING, false, 1, 80, NULL },
        { "wg_port", JF_INT, false, 1, 65535, NULL },
        { "public_ip", JF_STRING, false, 7, 45, NULL },
        { "port_min", JF_INT, false, 1, 65535, NULL },
        { "port_max", JF_INT, false, 1, 65535, NULL },
    };
    static const struct jfield inv_fields[] = {
        { "vcpus", JF_INT, true, 1, 4096, NULL },
        { "memory_mib", JF_INT, true, 64, INT64_C(1) << 32, NULL },
        { "disk_gib", JF_INT, true, 0, INT64_C(1) << 30, NULL },
        { "kvm", JF_BOOL, true, 0, 0, NULL },
        { "arch", JF_STRING, false, 0, 32, NULL },
        { "cpu_model", JF_STRING, false, 0, 128, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), true) ||
        !addr_ok(r, json_str(http_req_json(r), "public_ip")))
        return;
    json_t *b = http_req_json(r), *inv = json_object_get(b, "inventory");
    struct jerr je = { 0 };
    if (json_check(inv, inv_fields, ARRAY_SIZE(inv_fields), &je) < 0) {
        http_reply_problem(r, 400, "validation", "inventory", "inventory: %s",
                           je.detail);
        jerr_clear(&je);
        return;
    }
    char secret[JOINTOKEN_SECRET_HEX + 1], ca[JOINTOKEN_CA_HEX + 1], hash[65];
    if (!jointoken_parse(json_str(b, "token"), secret, ca)) {
        http_reply_problem(r, 401, "unauthorized", "token",
                           "malformed join token");
        return;
    }
    sha256_hex(secret, strlen(secret), hash);

    int64_t now = now_s();
    json_auto_t *tok = NULL;
    if (store_tx_begin(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    if (store_query_one(a->store, &tok,
                        "SELECT t.account_id, a.role FROM join_tokens t JOIN "
                        "accounts a ON a.id = t.account_id WHERE t.hash = $1 "
                        "AND t.used_at IS NULL AND t.expires_at > $2", "si",
                        hash, now) < 0) {
        store_tx_rollback(a->store);
        http_reply_problem(r, 401, "unauthorized", "token",
                           "unknown, used or expired join token");
        return;
    }
    char node_id[UUID_STR_LEN + 1];
    uuid_generate_str(node_id);
    struct auth_key cred;
    auth_key_generate("fogn", &cred);
    _cleanup_free_ char *mesh_ip = mesh_next(a);
    /* Tokens made by an admin admit the node at once; a provider's node
     * waits for an admin's approval. */
    bool approved = streq(json_str(tok, "role"), "admin");
    int e = store_exec(
        a->store,
        "INSERT INTO nodes (id, name, account_id, cred_id, cred_salt, "
        "cred_hash, approved, kvm, arch, cpu_model, vcpus, memory_mib, "
        "disk_gib, mesh_ip, wg_public_key, endpoint, observed_endpoint, "
        "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
        "$12, $13, $14, $15, $16, $17, $18)", "ssssssbbssiiissssi", node_id,
        json_str(b, "name"), json_str(tok, "account_id"), cred.id, cred.salt,
        cred.hash, approved, json_bool(inv, "kvm", false),
        json_str(inv, "arch") ? json_str(inv, "arch") : "",
        json_str(inv, "cpu_model") ? json_str(inv, "cpu_model") : "",
        json_int(inv, "vcpus", 0), json_int(inv, "memory_mib", 0),
        json_int(inv, "disk_gib", 0), mesh_ip, json_str(b, "wg_public_key"),
        json_str(b, "endpoint"), http_req_peer(r), now);
    if (e >= 0)
        e = store_exec(a->store,
                       "UPDATE nodes SET wg_port = $1, public_ip = $2, "
                       "port_min = $3, port_max = $4 WHERE id = $5", "isiis",
                       json_int(b, "wg_port", 51820), json_str(b, "public_ip"),
                       json_int(b, "port_min", 20000),
                       json_int(b, "port_max", 29999), node_id);
    if (e >= 0)
        e = store_exec(a->store,
                       "UPDATE join_tokens SET used_at = $1, node_id = $2 "
                       "WHERE hash = $3", "iss", now, node_id, hash);
    if (e < 0) {
        store_tx_rollback(a->store);
        auth_key_clear(&cred);
        reply_store_error(r, e, "a node with this name");
        return;
    }
    if (store_tx_commit(a->store) < 0) {
        auth_key_clear(&cred);
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    if (approved)
        app_all_nodes_changed(a); /* every peer learns the new node */
    struct reqctx *c = reqctx_of(r);
    snprintf(c->account_id, sizeof(c->account_id), "%s",
             json_str(tok, "account_id"));
    snprintf(c->actor, sizeof(c->actor), "%s", node_id);
    reqctx_set_target(r, node_id);
    http_reply_json(r, 201, json_pack("{s:s, s:s, s:s?, s:I, s:b}", "node_id",
                                      node_id, "credential", cred.token,
                                      "mesh_ip", mesh_ip, "heartbeat_s",
                                      (json_int_t)a->cfg.heartbeat_s,
                                      "approved", approved));
    auth_key_clear(&cred);
}

HANDLER(h_agent_desired)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const char *node_id = c->actor;
    const char *since_s = http_req_query(r, "since"), *wait_s = http_req_query(r, "wait");
    int64_t since = -1, wait = a->cfg.longpoll_s;

    if ((since_s && parse_int64(since_s, 0, INT64_MAX, &since) < 0) ||
        (wait_s && parse_int64(wait_s, 0, a->cfg.longpoll_s, &wait) < 0)) {
        http_reply_problem(r, 400, "validation", since_s ? "since" : "wait",
                           "since must be a revision; wait 0..%lld seconds",
                           (long long)a->cfg.longpoll_s);
        return;
    }
    int64_t rev = store_query_int(a->store, -1,
                                  "SELECT revision FROM nodes WHERE id = $1 "
                                  "AND removed_at IS NULL", "s", node_id);
    if (rev < 0) {
        http_reply_problem(r, 404, "not-found", NULL, "node removed");
        return;
    }
    /* Asking counts as contact: the node is alive. */
    store_exec(a->store, "UPDATE nodes SET last_seen = $1 WHERE id = $2", "is",
               now_s(), node_id);
    if (rev == since && wait > 0 && !http_req_timed_out(r) &&
        !http_req_stopping(r)) {
        if (!http_req_resumed(r)) {
            http_req_park(r, node_id, mono_ms() + wait * 1000);
            return;
        }
        /* Woken for another reason with nothing new: keep waiting until the
         * original deadline, which the core remembers. */
        http_req_park(r, node_id, -1);
        return;
    }
    http_reply_json(r, 200, desired_build(a, node_id, rev));
}

static const char *const vm_states[] = { "creating", "running", "stopped",
                                         "crashed", "paused", "error",
                                         "deleted", NULL };

static const struct jfield status_fields[] = {
    { "inventory", JF_OBJECT, false, 0, 0, NULL },
    { "vms", JF_ARRAY, false, 0, 100000, NULL },
    { "samples", JF_ARRAY, false, 0, 1000000, NULL },
    { "endpoint", JF_STRING, false, 1, 80, NULL },
    { "public_ip", JF_STRING, false, 7, 45, NULL },
};

int agent_status_check(const json_t *b, struct jerr *err)
{
    static const struct jfield vm_fields[] = {
        { "id", JF_UUID, true, 0, 0, NULL },
        { "state", JF_ENUM, true, 0, 0, vm_states },
        { "reason", JF_STRING, false, 0, 1024, NULL },
        { "console_tail", JF_STRING, false, 0, 65536, NULL },
        { "addresses", JF_ARRAY, false, 0, 64, NULL },
        { "by_guest", JF_BOOL, false, 0, 0, NULL },
        { "start_gen", JF_INT, false, 0, INT64_MAX, NULL },
    };
    static const struct jfield inv_fields[] = {
        { "vcpus", JF_INT, false, 1, 4096, NULL },
        { "memory_mib", JF_INT, false, 64, INT64_C(1) << 32, NULL },
        { "disk_gib", JF_INT, false, 0, INT64_C(1) << 30, NULL },
        { "kvm", JF_BOOL, false, 0, 0, NULL },
        { "arch", JF_STRING, false, 0, 32, NULL },
        { "cpu_model", JF_STRING, false, 0, 128, NULL },
        { "free_vcpus", JF_INT, false, 0, 4096, NULL },
        { "free_memory_mib", JF_INT, false, 0, INT64_C(1) << 32, NULL },
        { "free_disk_gib", JF_INT, false, 0, INT64_C(1) << 30, NULL },
    };
    struct jerr je = { 0 };
    if (json_check(b, status_fields, ARRAY_SIZE(status_fields), err) < 0)
        return -EINVAL;
    const char *ip = json_str(b, "public_ip");
    struct in6_addr in;
    if (ip && inet_pton(AF_INET, ip, &in) != 1 && inet_pton(AF_INET6, ip, &in) != 1) {
        *err = (struct jerr){ xstrdup("public_ip"),
                              xstrdup("'public_ip' must be an IP address") };
        return -EINVAL;
    }
    json_t *inv = json_object_get(b, "inventory");
    if (inv && json_check(inv, inv_fields, ARRAY_SIZE(inv_fields), &je) < 0) {
        *err = (struct jerr){ xstrdup("inventory"),
                              xasprintf("inventory: %s", je.detail) };
        jerr_clear(&je);
        return -EINVAL;
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(b, "vms"), i, v) {
        if (json_check(v, vm_fields, ARRAY_SIZE(vm_fields), &je) < 0) {
            *err = (struct jerr){ xstrdup("vms"),
                                  xasprintf("vms[%zu]: %s", i, je.detail) };
            jerr_clear(&je);
            return -EINVAL;
        }
    }
    return 0;
}

HANDLER(h_agent_status)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const char *node_id = c->actor;
    if (!body_check(r, status_fields, ARRAY_SIZE(status_fields), true))
        return;
    json_t *b = http_req_json(r), *vms = json_object_get(b, "vms");
    json_t *inv = json_object_get(b, "inventory");
    struct jerr je = { 0 };
    size_t i;
    json_t *v;

    if (agent_status_check(b, &je) < 0) {
        http_reply_problem(r, 400, "validation", je.field, "%s", je.detail);
        jerr_clear(&je);
        return;
    }
    if (store_tx_begin(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    /* Refuse the whole post if it speaks of any VM not placed here. */
    json_array_foreach(vms, i, v) {
        const char *id = json_str(v, "id");
        if (store_query_int(a->store, 0,
                            "SELECT COUNT(*) FROM vms WHERE id = $1 AND "
                            "node_id = $2", "ss", id, node_id) == 0) {
            store_tx_rollback(a->store);
            reqctx_set_target(r, id);
            reqctx_set_detail(r, "node %s reported on VM %s, which it does "
                                 "not host: refused", node_id, id);
            log_warn("node %s reported on foreign VM %s: refused", node_id, id);
            http_reply_problem(r, 403, "forbidden", "vms",
                               "VM %s is not placed on this node", id);
            return;
        }
    }
    int64_t now = now_s();
    /* A node that moved (another address seen or reported) must reach its
     * peers' configuration: every node's desired state changes. */
    bool moved = store_query_int(
                     a->store, 0,
                     "SELECT COUNT(*) FROM nodes WHERE id = $1 AND approved = 1 "
                     "AND (COALESCE(observed_endpoint, '') <> $2 OR COALESCE($3, "
                     "endpoint, '') <> COALESCE(endpoint, ''))", "sss", node_id,
                     http_req_peer(r), json_str(b, "endpoint")) > 0;
    store_exec(a->store,
               "UPDATE nodes SET last_seen = $1, observed_endpoint = $2, "
               "endpoint = COALESCE($3, endpoint), public_ip = COALESCE($4, "
               "public_ip) WHERE id = $5", "issss", now, http_req_peer(r),
               json_str(b, "endpoint"), json_str(b, "public_ip"), node_id);
    static const char *const inv_cols[] = { "vcpus", "memory_mib",
                                             "disk_gib" };
    for (size_t k = 0; inv && k < ARRAY_SIZE(inv_cols); k++) {
        if (!json_object_get(inv, inv_cols[k]))
            continue;
        _cleanup_free_ char *sql = xasprintf(
            "UPDATE nodes SET %s = $1 WHERE id = $2", inv_cols[k]);
        store_exec(a->store, sql, "is", json_int(inv, inv_cols[k], 0), node_id);
    }
    if (inv && json_object_get(inv, "kvm"))
        store_exec(a->store, "UPDATE nodes SET kvm = $1 WHERE id = $2", "bs",
                   json_bool(inv, "kvm", false), node_id);
    json_array_foreach(vms, i, v) {
        const char *id = json_str(v, "id"), *st = json_str(v, "state");
        if (streq(st, "deleted")) {
            if (store_exec(a->store,
                           "UPDATE vms SET state = 'deleted', deleted_at = "
                           "$1, updated_at = $1 WHERE id = $2 AND "
                           "desired_state = 'deleted' AND deleted_at IS NULL",
                           "is", now, id) > 0) {
                vm_networks_changed(a, id);
                vm_release(a, id);
                app_node_changed(a, node_id);
            }
            continue;
        }
        json_t *addrs = json_object_get(v, "addresses");
        _cleanup_free_ char *addr_text = addrs ? json_dumps_compact(addrs) : NULL;
        store_exec(a->store,
                   "UPDATE vms SET state = $1, state_reason = $2, updated_at "
                   "= $3, addresses = COALESCE($4, addresses) WHERE id = $5 "
                   "AND (state <> $1 OR COALESCE(state_reason, '') <> "
                   "COALESCE($2, '') OR addresses <> COALESCE($4, addresses))",
                   "ssiss", st, json_str(v, "reason"), now, addr_text, id);
        /* Shut down (or crashed) from inside: the VM's desire follows, as
         * a powered-off server stays off, unless the tenant has asked to
         * start it again since (a newer start generation). */
        if (json_bool(v, "by_guest", false) &&
            (streq(st, "stopped") || streq(st, "crashed")))
            store_exec(a->store,
                       "UPDATE vms SET desired_state = 'stopped', updated_at "
                       "= $1 WHERE id = $2 AND desired_state = 'running' AND "
                       "start_gen <= $3", "isi", now, id,
                       json_int(v, "start_gen", 0));
        if (json_str(v, "console_tail"))
            store_exec(a->store, "UPDATE vms SET console = $1 WHERE id = $2",
                       "ss", json_str(v, "console_tail"), id);
    }
    size_t bad = 0;
    int be = billing_ingest_status(a, node_id, vms,
                                   json_object_get(b, "samples"), &bad);
    if (be < 0) {
        store_tx_rollback(a->store);
        if (be == -EPERM) {
            reqctx_set_detail(r, "node %s sent usage of a VM it does not "
                                 "host: refused", node_id);
            log_warn("node %s sent usage of a foreign VM: refused", node_id);
            http_reply_problem(r, 403, "forbidden", "samples",
                               "samples[%zu] is about a VM not placed on this "
                               "node", bad);
        } else if (be == -EINVAL) {
            http_reply_problem(r, 400, "validation", "samples",
                               "samples[%zu] must be {vm, seq >= 1, start, "
                               "end >= start} (unix seconds)", bad);
        } else {
            http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        }
        return;
    }
    if (store_tx_commit(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    if (moved)
        app_all_nodes_changed(a);
    int64_t rev = store_query_int(a->store, 0,
                                  "SELECT revision FROM nodes WHERE id = $1",
                                  "s", node_id);
    http_reply_json(r, 200, json_pack("{s:I}", "revision", (json_int_t)rev));
}
