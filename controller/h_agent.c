/* The node agent protocol: register with a join token, long-poll the
 * desired state, post status. A node speaks only about its own VMs. */
#include "api/agentproto.h"
#include "api/jointoken.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/auth.h"
#include "controller/desired.h"
#include "controller/guard.h"
#include "controller/handlers.h"
#include "controller/netalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

/* The lowest free mesh address (never the range's first or last), under
 * the mesh lock so that replicas hand out one address once; the UNIQUE
 * index on nodes.mesh_ip backs it. Caller frees; NULL when the range is
 * full or the store failed. */
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
    json_auto_t *rows = NULL;
    if (store_lock(a->store, "mesh", NULL) < 0 ||
        store_query(a->store, &rows, "SELECT mesh_ip FROM nodes WHERE mesh_ip "
                    "IS NOT NULL", "") < 0)
        return NULL;
    size_t n = json_array_size(rows), k = 0, i;
    json_t *row;
    _cleanup_free_ uint32_t *used = xcalloc(n ? n : 1, sizeof(*used));
    json_array_foreach(rows, i, row) {
        if (inet_pton(AF_INET, json_str(row, "mesh_ip"), &in) == 1)
            used[k++] = ntohl(in.s_addr) - net;
    }
    qsort(used, k, sizeof(*used), cmp_u32);
    uint32_t off = 1;
    for (i = 0; i < k && used[i] <= off; i++)
        if (used[i] == off)
            off++;
    if ((uint64_t)off + 1 >= size)
        return NULL;
    struct in_addr out = { htonl(net + off) };
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &out, text, sizeof(text));
    return xstrdup(text);
}

/* A node's permitted well-known ports: distinct integers 1..65535. */
static bool permit_ports_ok(const json_t *ports)
{
    size_t i, k;
    json_t *p, *q;
    json_array_foreach(ports, i, p) {
        if (!json_is_integer(p) || json_integer_value(p) < 1 ||
            json_integer_value(p) > 65535)
            return false;
        json_array_foreach(ports, k, q)
            if (k < i && json_integer_value(q) == json_integer_value(p))
                return false;
    }
    return true;
}

#define PERMIT_PORTS_WHY                                                       \
    "'" AGENT_PERMIT_PORTS "' must be a list of distinct port numbers from 1 " \
    "to 65535"

/* Where a node says it is reached must be an address others can use:
 * both end up in firewall rules and WireGuard peers on every node, so
 * loopback, link-local, multicast or a free-text host:port would turn
 * peers against their own hosts. false after answering 400. */
static bool reach_ok(struct http_request *r, json_t *body)
{
    const char *ip = json_str(body, "public_ip");
    const char *ep = json_str(body, "endpoint");
    if (ip && !guard_ip_public(ip)) {
        http_reply_problem(r, 400, "validation", "public_ip",
                           "'public_ip' must be an IP address that is not "
                           "loopback, unspecified, link-local or multicast");
        return false;
    }
    if (ep && !guard_endpoint_ok(ep)) {
        http_reply_problem(r, 400, "validation", "endpoint",
                           "'endpoint' must be IP:PORT or [IPv6]:PORT with a "
                           "port from 1 to 65535 and an address that is not "
                           "loopback, unspecified, link-local or multicast");
        return false;
    }
    if (!permit_ports_ok(json_object_get(body, AGENT_PERMIT_PORTS))) {
        http_reply_problem(r, 400, "validation", AGENT_PERMIT_PORTS,
                           PERMIT_PORTS_WHY);
        return false;
    }
    return true;
}

/* Bounds of a node's inventory: `vcpus`..`disk_gib` (required at
 * register), then the optional rest. */
#define INV_FIELDS(req)                                                        \
    { "vcpus", JF_INT, req, 1, NODE_MAX_VCPUS, NULL },                         \
    { "memory_mib", JF_INT, req, 64, NODE_MAX_MEMORY_MIB, NULL },              \
    { "disk_gib", JF_INT, req, 0, NODE_MAX_DISK_GIB, NULL },                   \
    { "kvm", JF_BOOL, req, 0, 0, NULL },                                       \
    { "arch", JF_STRING, false, 0, 32, NULL },                                 \
    { "cpu_model", JF_STRING, false, 0, 128, NULL }

/* Capacity columns: what the node reported, what an admin approved, and
 * what the scheduler uses (the lower of the two). */
static const char *const cap_cols[] = { "vcpus", "memory_mib", "disk_gib" };

/* Record the capacity a node reports. Once approved, the figure the
 * scheduler uses never exceeds the approved one; a report above it is
 * clamped and an event says so (once per new figure). Inside the
 * caller's transaction. */
static void capacity_record(struct app *a, const char *node_id, json_t *inv)
{
    json_auto_t *row = NULL;
    if (!inv || store_query_one(a->store, &row,
                                "SELECT account_id, approved, cap_vcpus, "
                                "cap_memory_mib, cap_disk_gib, reported_vcpus, "
                                "reported_memory_mib, reported_disk_gib FROM "
                                "nodes WHERE id = $1", "s", node_id) < 0)
        return;
    bool approved = json_int(row, "approved", 0) != 0;
    for (size_t k = 0; k < ARRAY_SIZE(cap_cols); k++) {
        json_t *v = json_object_get(inv, cap_cols[k]);
        if (!json_is_integer(v))
            continue;
        int64_t got = json_integer_value(v), use = got;
        _cleanup_free_ char *cap_col = xasprintf("cap_%s", cap_cols[k]);
        _cleanup_free_ char *rep_col = xasprintf("reported_%s", cap_cols[k]);
        json_t *cap = json_object_get(row, cap_col);
        if (approved && json_is_integer(cap) && got > json_integer_value(cap)) {
            use = json_integer_value(cap);
            if (json_int(row, rep_col, -1) != got) {
                _cleanup_free_ char *d = xasprintf(
                    "node reported %s %lld, above the %lld approved: the "
                    "scheduler uses %lld", cap_cols[k], (long long)got,
                    (long long)use, (long long)use);
                app_event(a, json_str(row, "account_id"), node_id,
                          "node.capacity-clamped", node_id, 200, d);
                log_warn("node %s: %s", node_id, d);
            }
        }
        _cleanup_free_ char *sql = xasprintf(
            "UPDATE nodes SET %s = $1, %s = $2 WHERE id = $3", cap_cols[k],
            rep_col);
        store_exec(a->store, sql, "iis", use, got, node_id);
    }
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
        { AGENT_PERMIT_PORTS, JF_ARRAY, false, 0, AGENT_PERMIT_PORTS_MAX, NULL },
    };
    static const struct jfield inv_fields[] = { INV_FIELDS(true) };
    if (!body_check(r, fields, ARRAY_SIZE(fields), true) ||
        !reach_ok(r, http_req_json(r)))
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
        e = netalloc_permit_set(a->store, node_id,
                                json_object_get(b, AGENT_PERMIT_PORTS));
    /* A node an admin's token admits is approved with what it reports. */
    if (e >= 0)
        e = store_exec(a->store,
                       "UPDATE nodes SET reported_vcpus = vcpus, "
                       "reported_memory_mib = memory_mib, reported_disk_gib "
                       "= disk_gib, cap_vcpus = CASE WHEN approved = 1 THEN "
                       "vcpus END, cap_memory_mib = CASE WHEN approved = 1 "
                       "THEN memory_mib END, cap_disk_gib = CASE WHEN "
                       "approved = 1 THEN disk_gib END WHERE id = $1", "s",
                       node_id);
    /* A token admits one node, also when two replicas see it at once. */
    if (e >= 0)
        e = store_exec(a->store,
                       "UPDATE join_tokens SET used_at = $1, node_id = $2 "
                       "WHERE hash = $3 AND used_at IS NULL", "iss", now,
                       node_id, hash);
    if (e == 0) {
        store_tx_rollback(a->store);
        auth_key_clear(&cred);
        http_reply_problem(r, 401, "unauthorized", "token",
                           "unknown, used or expired join token");
        return;
    }
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
    c->reply_secret = true;
    http_reply_json(r, 201, json_pack("{s:s, s:s, s:s?, s:I, s:b}", "node_id",
                                      node_id, "credential", cred.token,
                                      "mesh_ip", mesh_ip, "heartbeat_s",
                                      (json_int_t)a->cfg.heartbeat_s,
                                      "approved", approved));
    auth_key_clear(&cred);
}

/* No document: 404 for a removed node, else 503 (the agent keeps what it
 * has and retries). */
static void reply_desired_error(struct http_request *r, const char *node_id,
                                int e)
{
    if (e == -ENOENT) {
        http_reply_problem(r, 404, "not-found", NULL, "node removed");
        return;
    }
    log_warn("desired state of node %s not built: %s", node_id, strerror(-e));
    http_reply_problem(r, 503, "unavailable", NULL,
                       "desired state unavailable (%s); retry", strerror(-e));
}

HANDLER(h_agent_desired)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const char *node_id = c->actor;
    const char *since_s = http_req_query(r, "since"), *wait_s = http_req_query(r, "wait");
    int64_t since = -1, wait = a->cfg.longpoll_s;

    if ((since_s && parse_int64(since_s, 0, INT64_MAX, &since) < 0) ||
        (wait_s && parse_int64(wait_s, 0, 3600, &wait) < 0)) {
        http_reply_problem(r, 400, "validation", since_s ? "since" : "wait",
                           "since must be a revision; wait 0..3600 seconds");
        return;
    }
    /* A longer wish is held as long as this controller holds any poll,
     * which every answer announces. */
    if (wait > a->cfg.longpoll_s)
        wait = a->cfg.longpoll_s;
    json_auto_t *node = NULL;
    int e = store_query_one(a->store, &node, "SELECT revision, approved FROM nodes "
                            "WHERE id = $1 AND removed_at IS NULL", "s",
                            node_id);
    if (e < 0) {
        reply_desired_error(r, node_id, e);
        return;
    }
    int64_t rev = json_int(node, "revision", 0);
    bool approved = json_int(node, "approved", 0) != 0;
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
    /* Whole or nothing: the agent keeps what it has on a 503. Until an
     * admin approves it, a node learns nothing of the others: a document
     * with no peers, VMs, networks or ports (approval bumps the revision,
     * so the parked poll wakes to the real one). */
    json_t *doc = NULL;
    if (approved)
        e = desired_build(a, node_id, &doc);
    else
        doc = desired_build_unapproved(node_id, rev);
    if (e < 0) {
        reply_desired_error(r, node_id, e);
        return;
    }
    _cleanup_free_ char *wait_text = xasprintf("%lld",
                                               (long long)a->cfg.longpoll_s);
    http_reply_header(r, AGENT_POLL_WAIT_HEADER, wait_text);
    http_reply_json(r, 200, doc);
}

/* 400 (malformed) or 403 (foreign VM) naming each refused sample in
 * AGENT_REJECTED_SAMPLES; `first` is the one the detail quotes. */
static void reply_samples_refused(struct http_request *r, int status,
                                  json_t *rejected, size_t first)
{
    json_t *p = json_pack(
        "{s:s, s:s, s:i, s:s, s:O}", "type",
        status == 403 ? "urn:fog:problem:forbidden" :
                        "urn:fog:problem:validation",
        "title", status == 403 ? "Forbidden" : "Bad Request", "status", status,
        "field", "samples", AGENT_REJECTED_SAMPLES, rejected);
    _cleanup_free_ char *detail = xasprintf(
        "%zu usage sample(s) refused, first samples[%zu]: %s; send the "
        "others again without them", json_array_size(rejected), first,
        status == 403 ? "about a VM not placed on this node" :
                        "must be {vm, seq >= 1, start, end >= start} (unix "
                        "seconds)");
    json_object_set_new(p, "detail", json_string(detail));
    char *text = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    http_reply_text(r, status, "application/problem+json", text, strlen(text));
}

/* At most `max` bytes of a node's text (cut on a UTF-8 character
 * boundary), control characters replaced: it goes to the event log, which
 * people read. Caller frees. */
static char *node_text(const char *s, size_t max)
{
    if (!s)
        s = "";
    size_t len = strnlen(s, max);
    while (len > 0 && len < strlen(s) && ((unsigned char)s[len] & 0xC0) == 0x80)
        len--;
    char *t = xstrndup(s, len);
    for (char *c = t; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    return t;
}

/* An event on the VM's tenant: its node forced the power off after the
 * shutdown deadline. */
static void vm_event_forced_off(struct app *a, const char *node_id,
                                const char *vm_id, const char *reason)
{
    json_auto_t *vm = NULL;
    if (store_query_one(a->store, &vm, "SELECT account_id FROM vms WHERE id "
                        "= $1", "s", vm_id) == 0)
        app_event(a, json_str(vm, "account_id"), node_id, "vm.forced-off",
                  vm_id, 200, reason);
}

/* Record what node `node_id` says its policy refused of its desired
 * document: one event each, with the node as actor, on the node owner's
 * log. A node decides what it reports, so the list is bounded in count
 * and length here, whatever it sends; malformed entries are skipped. */
static void refusals_record(struct app *a, const char *node_id,
                            const json_t *list)
{
    if (json_array_size(list) == 0)
        return;
    _cleanup_json_ json_t *node = NULL;
    store_query_one(a->store, &node,
                    "SELECT account_id FROM nodes WHERE id = $1", "s", node_id);
    const char *owner = json_str(node, "account_id");
    size_t i, n = 0;
    json_t *e;
    json_array_foreach(list, i, e) {
        if (n == AGENT_REFUSED_MAX)
            break;
        const char *obj = json_str(e, "object"), *why = json_str(e, "reason");
        if (!obj || !why)
            continue;
        _cleanup_free_ char *o = node_text(obj, AGENT_REFUSED_OBJECT_MAX);
        _cleanup_free_ char *w = node_text(why, AGENT_REFUSED_REASON_MAX);
        app_event(a, owner, node_id, "agent.refused", o, 200, w);
        n++;
    }
    log_warn("node %s refused %zu object(s) of its desired state", node_id,
             json_array_size(list));
}

/* What node `node_id` says it holds of VM `vm_id`'s snapshots (entry `v`
 * of its status, already checked): the ones it reports are ready, ready
 * ones it no longer reports are lost (the VM was made afresh), deleted
 * ones it no longer reports are gone; and the last revert it carried
 * out. Nothing when the entry carries no list (no domain yet). */
static void snapshots_record(struct app *a, const char *vm_id, const json_t *v)
{
    json_t *list = json_object_get(v, AGENT_VM_SNAPSHOTS);
    json_t *rg = json_object_get(v, AGENT_VM_REVERT_GEN);
    if (json_is_integer(rg))
        store_exec(a->store, "UPDATE vms SET revert_done_gen = $1 WHERE id = "
                   "$2 AND revert_done_gen < $1 AND revert_gen >= $1", "is",
                   (int64_t)json_integer_value(rg), vm_id);
    if (!json_is_array(list))
        return;
    json_auto_t *rows = NULL;
    if (store_query(a->store, &rows, "SELECT id, state FROM vm_snapshots "
                    "WHERE vm_id = $1", "s", vm_id) < 0)
        return;
    size_t i, k;
    json_t *row, *s;
    json_array_foreach(rows, i, row) {
        const char *id = json_str(row, "id"), *st = json_str(row, "state");
        const json_t *held = NULL;
        json_array_foreach(list, k, s)
            if (streq(json_str(s, "id"), id))
                held = s;
        if (held && (streq(st, "pending") || streq(st, "lost")))
            store_exec(a->store, "UPDATE vm_snapshots SET state = 'ready', "
                       "consistency = $1, taken_at = $2 WHERE id = $3", "sis",
                       json_str(held, "consistency"),
                       json_int(held, "created_at", now_s()), id);
        else if (!held && streq(st, "ready"))
            store_exec(a->store, "UPDATE vm_snapshots SET state = 'lost' "
                       "WHERE id = $1", "s", id);
        else if (!held && streq(st, "deleting"))
            store_exec(a->store, "DELETE FROM vm_snapshots WHERE id = $1",
                       "s", id);
    }
}

/* Check a status entry's snapshot list. 0 or -EINVAL (detail in *err). */
static int snapshots_check(const json_t *list, size_t vm_index,
                           struct jerr *err)
{
    static const char *const kinds[] = { SNAPSHOT_CONSISTENCY_CHECKPOINT,
                                         SNAPSHOT_CONSISTENCY_POWERED_OFF,
                                         NULL };
    static const struct jfield fields[] = {
        { "id", JF_UUID, true, 0, 0, NULL },
        { "name", JF_NAME, true, 0, 0, NULL },
        { "consistency", JF_ENUM, true, 0, 0, kinds },
        { "created_at", JF_INT, false, 0, INT64_MAX, NULL },
    };
    struct jerr je = { 0 };
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s)
        if (json_check(s, fields, ARRAY_SIZE(fields), &je) < 0) {
            *err = (struct jerr){ xstrdup("vms"), xasprintf(
                "vms[%zu].snapshots[%zu]: %s", vm_index, i, je.detail) };
            jerr_clear(&je);
            return -EINVAL;
        }
    return 0;
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
    { "refused", JF_ARRAY, false, 0, 100000, NULL },
    { AGENT_PERMIT_PORTS, JF_ARRAY, false, 0, AGENT_PERMIT_PORTS_MAX, NULL },
};

/* Set *err to a copy of field and a formatted detail; -EINVAL. */
static int status_refuse(struct jerr *err, const char *field, char *detail)
{
    *err = (struct jerr){ xstrdup(field), detail };
    return -EINVAL;
}

int agent_status_check(const json_t *b, struct jerr *err)
{
    static const struct jfield vm_fields[] = {
        { "id", JF_UUID, true, 0, 0, NULL },
        { "state", JF_ENUM, true, 0, 0, vm_states },
        { "reason", JF_STRING, false, 0, 1024, NULL },
        { "console_tail", JF_STRING, false, 0, 65536, NULL },
        { "addresses", JF_ARRAY, false, 0, NODE_MAX_VM_ADDRESSES, NULL },
        { "by_guest", JF_BOOL, false, 0, 0, NULL },
        { "start_gen", JF_INT, false, 0, INT64_MAX, NULL },
        { AGENT_VM_SNAPSHOTS, JF_ARRAY, false, 0, 4 * VM_SNAPSHOTS_MAX, NULL },
        { AGENT_VM_REVERT_GEN, JF_INT, false, 0, INT64_MAX, NULL },
    };
    static const struct jfield inv_fields[] = {
        INV_FIELDS(false),
        { "free_vcpus", JF_INT, false, 0, NODE_MAX_VCPUS, NULL },
        { "free_memory_mib", JF_INT, false, 0, NODE_MAX_MEMORY_MIB, NULL },
        { "free_disk_gib", JF_INT, false, 0, NODE_MAX_DISK_GIB, NULL },
    };
    struct jerr je = { 0 };
    if (json_check(b, status_fields, ARRAY_SIZE(status_fields), err) < 0)
        return -EINVAL;
    const char *ip = json_str(b, "public_ip"), *ep = json_str(b, "endpoint");
    if (ip && !guard_ip_public(ip))
        return status_refuse(err, "public_ip", xstrdup(
            "'public_ip' must be an IP address that is not loopback, "
            "unspecified, link-local or multicast"));
    if (ep && !guard_endpoint_ok(ep))
        return status_refuse(err, "endpoint", xstrdup(
            "'endpoint' must be IP:PORT or [IPv6]:PORT with a port from 1 to "
            "65535 and an address that is not loopback, unspecified, "
            "link-local or multicast"));
    if (!permit_ports_ok(json_object_get(b, AGENT_PERMIT_PORTS)))
        return status_refuse(err, AGENT_PERMIT_PORTS,
                             xstrdup(PERMIT_PORTS_WHY));
    json_t *inv = json_object_get(b, "inventory");
    if (inv && json_check(inv, inv_fields, ARRAY_SIZE(inv_fields), &je) < 0) {
        int e = status_refuse(err, "inventory",
                              xasprintf("inventory: %s", je.detail));
        jerr_clear(&je);
        return e;
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(b, "vms"), i, v) {
        if (json_check(v, vm_fields, ARRAY_SIZE(vm_fields), &je) < 0) {
            int e = status_refuse(err, "vms",
                                  xasprintf("vms[%zu]: %s", i, je.detail));
            jerr_clear(&je);
            return e;
        }
        if (snapshots_check(json_object_get(v, AGENT_VM_SNAPSHOTS), i,
                            err) < 0)
            return -EINVAL;
        json_t *addrs = json_object_get(v, "addresses");
        if (addrs && !guard_addresses_ok(addrs))
            return status_refuse(err, "vms", xasprintf(
                "vms[%zu].addresses must be a list of at most %d IP "
                "addresses", i, NODE_MAX_VM_ADDRESSES));
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
    capacity_record(a, node_id, inv);
    if (json_object_get(b, AGENT_PERMIT_PORTS))
        netalloc_permit_set(a->store, node_id,
                            json_object_get(b, AGENT_PERMIT_PORTS));
    if (inv && json_object_get(inv, "kvm"))
        store_exec(a->store, "UPDATE nodes SET kvm = $1 WHERE id = $2", "bs",
                   json_bool(inv, "kvm", false), node_id);
    json_array_foreach(vms, i, v) {
        const char *id = json_str(v, "id"), *st = json_str(v, "state");
        if (streq(st, "deleted")) {
            if (store_query_int(a->store, 0, "SELECT COUNT(*) FROM vms "
                                "WHERE id = $1 AND desired_state = 'deleted'",
                                "s", id) == 1 &&
                vm_delete_finish(a, id, now) == 0)
                app_node_changed(a, node_id);
            continue;
        }
        json_t *addrs = json_object_get(v, "addresses");
        _cleanup_free_ char *addr_text = addrs ? json_dumps_compact(addrs) : NULL;
        int changed = store_exec(
            a->store,
            "UPDATE vms SET state = $1, state_reason = $2, updated_at "
            "= $3, addresses = COALESCE($4, addresses) WHERE id = $5 "
            "AND deleted_at IS NULL AND (state <> $1 OR "
            "COALESCE(state_reason, '') <> COALESCE($2, '') OR addresses <> "
            "COALESCE($4, addresses))",
            "ssiss", st, json_str(v, "reason"), now, addr_text, id);
        /* A power-off the node had to force is the tenant's to know. */
        if (changed > 0 && json_str(v, "reason") &&
            startswith(json_str(v, "reason"), AGENT_FORCED_OFF_REASON))
            vm_event_forced_off(a, node_id, id, json_str(v, "reason"));
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
        snapshots_record(a, id, v);
        if (json_str(v, "console_tail"))
            store_exec(a->store, "UPDATE vms SET console = $1 WHERE id = $2",
                       "ss", json_str(v, "console_tail"), id);
    }
    size_t bad = 0;
    int be = billing_ingest_status(a, node_id, vms,
                                   json_object_get(b, "samples"), &bad);
    if (be < 0) {
        if (be == -EPERM || be == -EINVAL) {
            /* Name every refused sample, so the node drops those and
             * sends the rest again. */
            json_auto_t *rej = billing_samples_rejected(
                a, node_id, json_object_get(b, "samples"));
            store_tx_rollback(a->store);
            if (be == -EPERM) {
                reqctx_set_detail(r, "node %s sent usage of a VM it does not "
                                     "host: refused", node_id);
                log_warn("node %s sent usage of a foreign VM: refused",
                         node_id);
            }
            reply_samples_refused(r, be == -EPERM ? 403 : 400, rej, bad);
            return;
        }
        store_tx_rollback(a->store);
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    refusals_record(a, node_id, json_object_get(b, "refused"));
    if (store_tx_commit(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    if (moved)
        app_all_nodes_changed(a);
    int64_t rev = store_query_int(a->store, 0,
                                  "SELECT revision FROM nodes WHERE id = $1",
                                  "s", node_id);
    http_reply_json(r, 200, json_pack("{s:I, s:s}", "revision",
                                      (json_int_t)rev, AGENT_OBSERVED_IP,
                                      http_req_peer(r)));
}
