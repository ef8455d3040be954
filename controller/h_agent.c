/* The node agent protocol: register with a join token, long-poll the
 * desired state, post status. A node speaks only about its own VMs. */
#include "api/agentmsg.h"
#include "api/jointoken.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/auth.h"
#include "api/desired_delta.h"
#include "controller/desired.h"
#include "controller/desired_cache.h"
#include "controller/gpus.h"
#include "controller/guard.h"
#include "controller/handlers.h"
#include "controller/meshpath.h"
#include "controller/restore.h"
#include "controller/netalloc.h"
#include "controller/relay.h"
#include "controller/reputation.h"
#include "controller/vmhealth.h"

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

/* A node's body as the contract's decoder reads it: 415 when it is not
 * JSON, 400 when there is none. false after answering. */
static bool agent_body(struct http_request *r, json_t **ret)
{
    size_t len;
    http_req_body(r, &len);
    json_t *body = http_req_json(r);
    if (!body) {
        if (len > 0)
            http_reply_problem(r, 415, "unsupported-media-type", NULL,
                               "the body must be application/json");
        else
            http_reply_problem(r, 400, "validation", NULL,
                               "a JSON object body is required");
        return false;
    }
    *ret = body;
    return true;
}

/* 400 naming the member the decoder (or a check after it) refused. */
static void reply_refused(struct http_request *r, struct jerr *je)
{
    bool unknown = startswith(je->detail, "unknown field");
    http_reply_problem(r, 400, unknown ? "unknown-field" : "validation",
                       je->field && *je->field ? je->field : NULL, "%s",
                       je->detail);
    jerr_clear(je);
}

/* Where a node says it is reached must be an address others can use:
 * both end up in firewall rules and WireGuard peers on every node, so
 * loopback, link-local, multicast or a free-text host:port would turn
 * peers against their own hosts. -EINVAL with *err filled. */
static int reach_check(const char *ip, const char *ep, struct jerr *err)
{
    if (ip && !guard_ip_public(ip)) {
        *err = (struct jerr){ xstrdup("public_ip"), xstrdup(
            "'public_ip' must be an IP address that is not loopback, "
            "unspecified, link-local or multicast") };
        return -EINVAL;
    }
    if (ep && !guard_endpoint_ok(ep)) {
        *err = (struct jerr){ xstrdup("endpoint"), xstrdup(
            "'endpoint' must be IP:PORT or [IPv6]:PORT with a port from 1 to "
            "65535 and an address that is not loopback, unspecified, "
            "link-local or multicast") };
        return -EINVAL;
    }
    return 0;
}

/* Capacity columns: what the node reported, what an admin approved, and
 * what the scheduler uses (the lower of the two). */
static const char *const cap_cols[] = { "vcpus", "memory_mib", "disk_gib" };

/* Record the capacity a node reports. Once approved, the figure the
 * scheduler uses never exceeds the approved one; a report above it is
 * clamped and an event says so (once per new figure). Inside the
 * caller's transaction. */
static void capacity_record(struct app *a, const char *node_id,
                            const struct am_inventory *inv)
{
    json_auto_t *row = NULL;
    if (store_query_one(a->store, &row,
                        "SELECT account_id, approved, cap_vcpus, "
                        "cap_memory_mib, cap_disk_gib, reported_vcpus, "
                        "reported_memory_mib, reported_disk_gib FROM "
                        "nodes WHERE id = $1", "s", node_id) < 0)
        return;
    bool approved = json_int(row, "approved", 0) != 0;
    const int64_t figure[] = { inv->vcpus, inv->memory_mib, inv->disk_gib };
    const unsigned has[] = { AM_INV_VCPUS, AM_INV_MEMORY, AM_INV_DISK };
    for (size_t k = 0; k < ARRAY_SIZE(cap_cols); k++) {
        if (!(inv->has & has[k]))
            continue;
        int64_t got = figure[k], use = got;
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

/* Record what the node's provider keeps back, as reported with its
 * capacity (none given with a capacity report: nothing kept). 0 or
 * -errno; inside the caller's transaction. */
static int reserve_record(struct app *a, const char *node_id,
                          const struct am_inventory *inv)
{
    if (!(inv->has & (AM_INV_RESERVED | AM_INV_VCPUS)))
        return 0;
    bool has = inv->has & AM_INV_RESERVED;
    int e = store_exec(a->store,
                       "UPDATE nodes SET reserved_vcpus = $1, "
                       "reserved_memory_mib = $2, reserved_disk_gib = $3 "
                       "WHERE id = $4", "iiis", has ? inv->reserved_vcpus : 0,
                       has ? inv->reserved_memory_mib : 0,
                       has ? inv->reserved_disk_gib : 0, node_id);
    return e < 0 ? e : 0;
}

HANDLER(h_agent_register)
{
    struct app *a = app;
    json_t *body;
    _cleanup_(am_register_clear) struct am_register g = { 0 };
    struct jerr je = { 0 };
    if (!agent_body(r, &body))
        return;
    if (am_register_decode(body, &g, &je) < 0 ||
        reach_check(g.public_ip, g.endpoint, &je) < 0) {
        reply_refused(r, &je);
        return;
    }
    if (g.gpus && gpus_report_check(g.gpus, &je) < 0) {
        http_reply_problem(r, 400, "validation", je.field, "%s", je.detail);
        jerr_clear(&je);
        return;
    }
    const struct am_inventory *inv = &g.inventory;
    char secret[JOINTOKEN_SECRET_HEX + 1], ca[JOINTOKEN_CA_HEX + 1], hash[65];
    if (!jointoken_parse(g.token, secret, ca)) {
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
        "created_at, agent_contract) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
        "$9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        "ssssssbbssiiissssii", node_id,
        g.name, json_str(tok, "account_id"), cred.id, cred.salt, cred.hash,
        approved, inv->kvm, inv->arch ? inv->arch : "",
        inv->cpu_model ? inv->cpu_model : "", inv->vcpus, inv->memory_mib,
        inv->disk_gib, mesh_ip, g.wg_public_key, g.endpoint, http_req_peer(r),
        now, (int64_t)reqctx_of(r)->contract);
    if (e >= 0)
        e = store_exec(a->store,
                       "UPDATE nodes SET wg_port = $1, public_ip = $2, "
                       "port_min = $3, port_max = $4 WHERE id = $5", "isiis",
                       g.wg_port ? g.wg_port : 51820, g.public_ip,
                       g.port_min ? g.port_min : 20000,
                       g.port_max ? g.port_max : 29999, node_id);
    if (e >= 0)
        e = netalloc_permit_set(a->store, node_id, g.permit_ports,
                                g.n_permit_ports);
    if (e >= 0 && g.gpus)
        e = gpus_record(a->store, node_id, g.gpus, g.iommu);
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
    if (e >= 0)
        e = reserve_record(a, node_id, inv);
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

/* Every answer announces how long this controller holds a poll. */
static void reply_poll_wait(struct http_request *r, struct app *a)
{
    char v[24];
    snprintf(v, sizeof(v), "%lld", (long long)a->cfg.longpoll_s);
    http_reply_header(r, AGENT_POLL_WAIT_HEADER, v);
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

/* A poll a change woke: answered from the node's document as the cache
 * holds it (built once for all the polls the change woke), never reading
 * the store itself; parked again when the document is still the one it
 * has. */
static void desired_woken(struct http_request *r, struct app *a,
                          const char *node_id, int64_t since, int64_t rev_min,
                          int64_t wait, bool delta)
{
    struct desired_text *t = NULL;
    /* A GET: a build never waits for a write (the thread may have served
     * a POST since this request began). */
    store_route_reads(a->store, true);
    int e = desired_cache_get(a, node_id, since, rev_min, delta, &t);
    if (e < 0) {
        reply_desired_error(r, node_id, e);
        return;
    }
    if (t->revision == since && wait > 0 && !http_req_stopping(r)) {
        desired_text_unref(t);
        /* Woken for another reason with nothing new: keep waiting until
         * the original deadline, which the core remembers. */
        http_req_park(r, node_id, -1);
        return;
    }
    char *text = xmalloc(t->len + 1);
    memcpy(text, t->text, t->len + 1);
    size_t len = t->len;
    desired_text_unref(t);
    reply_poll_wait(r, a);
    http_reply_text(r, 200, "application/json", text, len);
}

HANDLER(h_agent_desired)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const char *node_id = c->actor;
    const char *since_s = http_req_query(r, "since"), *wait_s = http_req_query(r, "wait");
    const char *delta_s = http_req_query(r, DESIRED_DELTA_QUERY);
    int64_t since = -1, wait = a->cfg.longpoll_s, delta = 0;

    const char *bad = NULL;
    if (since_s && parse_int64(since_s, 0, INT64_MAX, &since) < 0)
        bad = "since";
    else if (wait_s && parse_int64(wait_s, 0, 3600, &wait) < 0)
        bad = "wait";
    else if (delta_s && parse_int64(delta_s, 0, 1, &delta) < 0)
        bad = DESIRED_DELTA_QUERY;
    if (bad) {
        http_reply_problem(r, 400, "validation", bad,
                           "since must be a revision; wait 0..3600 seconds; "
                           "delta 0 or 1");
        return;
    }
    /* A longer wish is held as long as this controller holds any poll,
     * which every answer announces. */
    if (wait > a->cfg.longpoll_s)
        wait = a->cfg.longpoll_s;
    /* The polls one change wakes share one build of the new document and
     * write no last_seen (one change wakes thousands, and each write would
     * take the store in turn); a fresh ask or a timeout reads the store
     * itself. */
    if (http_req_resumed(r) && !http_req_timed_out(r)) {
        desired_woken(r, a, node_id, since, since, wait, delta);
        return;
    }
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
    /* Asking counts as contact: the node is alive. A parked poll counted
     * when it came in. */
    if (!http_req_resumed(r))
        store_exec(a->store, "UPDATE nodes SET last_seen = $1 WHERE id = $2",
                   "is", now_s(), node_id);
    if (rev == since && wait > 0 && !http_req_timed_out(r) &&
        !http_req_stopping(r)) {
        http_req_park(r, node_id, mono_ms() + wait * 1000);
        return;
    }
    /* An agent that merges deltas is answered from the cache, which keeps
     * what each document it serves is made of: the base of the next
     * delta. */
    if (delta) {
        /* An ask for the whole document (at the agent's start, and its
         * periodic resync) is built from the store, not taken from the
         * cache: the resync is what heals a drift a cached document
         * would carry on. */
        if (since < 0)
            desired_cache_rebuild(node_id);
        /* Not older than the revision just read: a change another
         * replica committed may not have invalidated the cache yet. */
        desired_woken(r, a, node_id, since, rev, 0, true);
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
    reply_poll_wait(r, a);
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
                        "seconds), a higher seq never starting earlier");
    json_object_set_new(p, "detail", json_string(detail));
    char *text = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    http_reply_text(r, status, "application/problem+json", text, strlen(text));
}

char *node_text(const char *s, size_t max)
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
                            const struct am_refusal *list, size_t n_list)
{
    if (n_list == 0)
        return;
    _cleanup_json_ json_t *node = NULL;
    store_query_one(a->store, &node,
                    "SELECT account_id FROM nodes WHERE id = $1", "s", node_id);
    const char *owner = json_str(node, "account_id");
    size_t n = 0;
    for (size_t i = 0; i < n_list && n < AGENT_REFUSED_MAX; i++) {
        const char *obj = list[i].object, *why = list[i].reason;
        if (!obj || !why)
            continue;
        _cleanup_free_ char *o = node_text(obj, AGENT_REFUSED_OBJECT_MAX);
        _cleanup_free_ char *w = node_text(why, AGENT_REFUSED_REASON_MAX);
        app_event(a, owner, node_id, "agent.refused", o, 200, w);
        n++;
    }
    log_warn("node %s refused %zu object(s) of its desired state", node_id,
             n_list);
}

/* What node `node_id` says it holds of VM `vm_id`'s snapshots (entry `v`
 * of its status, already checked): the ones it reports are ready, ready
 * ones it no longer reports are lost (the VM was made afresh), deleted
 * ones it no longer reports are gone; and the last revert it carried
 * out. Nothing when the entry carries no list (no domain yet). Whether
 * that changed the VM's part of the node's document. */
static bool snapshots_record(struct app *a, const struct am_vm_status *v)
{
    if (!v->has_snapshots)
        return false;
    /* A revert done, a snapshot taken or lost: the document changes. */
    bool changed = store_exec(a->store, "UPDATE vms SET revert_done_gen = $1 "
                              "WHERE id = $2 AND revert_done_gen < $3 AND "
                              "revert_gen >= $4", "isii", v->revert_gen,
                              v->id, v->revert_gen, v->revert_gen) > 0;
    json_auto_t *rows = NULL;
    if (store_query(a->store, &rows, "SELECT id, state FROM vm_snapshots "
                    "WHERE vm_id = $1", "s", v->id) < 0)
        return changed;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *id = json_str(row, "id"), *st = json_str(row, "state");
        const struct am_snapshot *held = NULL;
        for (size_t k = 0; k < v->n_snapshots && !held; k++)
            if (streq(v->snapshots[k].id, id))
                held = &v->snapshots[k];
        if (held && (streq(st, "pending") || streq(st, "lost")))
            changed |= store_exec(a->store, "UPDATE vm_snapshots SET state = "
                                  "'ready', consistency = $1, taken_at = $2 "
                                  "WHERE id = $3", "sis", held->consistency,
                                  held->created_at ? held->created_at :
                                  now_s(), id) > 0;
        else if (!held && streq(st, "ready"))
            changed |= store_exec(a->store, "UPDATE vm_snapshots SET state = "
                                  "'lost' WHERE id = $1", "s", id) > 0;
        else if (!held && streq(st, "deleting"))
            store_exec(a->store, "DELETE FROM vm_snapshots WHERE id = $1",
                       "s", id);
    }
    return changed;
}

/* Store a VM's reported domain XML and its interfaces. */
static void domain_record(struct app *a, const struct am_vm_status *v)
{
    json_auto_t *ifs = json_array();
    for (size_t i = 0; i < v->n_ifaces; i++) {
        const struct am_iface *f = &v->ifaces[i];
        json_array_append_new(ifs, json_pack("{s:s?, s:s, s:s?, s:s?, s:s}",
                                             "target", f->target, "type",
                                             f->type, "source", f->source,
                                             "model", f->model, "mac",
                                             f->mac));
    }
    _cleanup_free_ char *text = json_dumps_compact(ifs);
    store_exec(a->store, "UPDATE vms SET domain_xml = $1, interfaces = $2 "
               "WHERE id = $3", "sss", v->domain_xml, text, v->id);
}

/* The node's global IPv6 address (published ports answer there): not
 * loopback, link-local, multicast, and not unique local either. */
static int reach_check6(const char *ip, struct jerr *err)
{
    struct in6_addr a;
    if (ip && (!guard_ip_public(ip) || inet_pton(AF_INET6, ip, &a) != 1 ||
               IN6_IS_ADDR_V4MAPPED(&a) || (a.s6_addr[0] & 0xfe) == 0xfc)) {
        *err = (struct jerr){ xstrdup(AGENT_PUBLIC_IP6), xstrdup(
            "'" AGENT_PUBLIC_IP6 "' must be a global IPv6 address") };
        return -EINVAL;
    }
    return 0;
}

int agent_status_decode(const json_t *b, struct am_status *ret,
                        struct jerr *err)
{
    struct am_status st = { 0 };
    int e = am_status_decode(b, &st, err);
    if (e < 0)
        return e;
    if ((e = reach_check(st.public_ip, st.endpoint, err)) < 0 ||
        (e = reach_check6(st.public_ip6, err)) < 0 ||
        (st.gpus && (e = gpus_report_check(st.gpus, err)) < 0)) {
        am_status_clear(&st);
        return e;
    }
    for (size_t i = 0; i < st.n_vms; i++) {
        if (st.vms[i].addresses && !guard_addresses_ok(st.vms[i].addresses)) {
            *err = (struct jerr){ xstrdup("vms"), xasprintf(
                "vms[%zu].addresses must be a list of at most %d IP "
                "addresses", i, NODE_MAX_VM_ADDRESSES) };
            am_status_clear(&st);
            return -EINVAL;
        }
    }
    *ret = st;
    return 0;
}

HANDLER(h_agent_status)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const char *node_id = c->actor;
    json_t *body;
    _cleanup_(am_status_clear) struct am_status b = { 0 };
    struct jerr je = { 0 };
    if (!agent_body(r, &body))
        return;
    if (agent_status_decode(body, &b, &je) < 0) {
        reply_refused(r, &je);
        return;
    }
    if (store_tx_begin(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    /* Refuse the whole post if it speaks of any VM not placed here (the
     * node's VMs read at once: a query per VM held the writer longer). */
    json_auto_t *placed = NULL, *here = json_object();
    if (b.n_vms > 0 &&
        store_query(a->store, &placed, "SELECT id FROM vms WHERE node_id = "
                    "$1", "s", node_id) < 0) {
        store_tx_rollback(a->store);
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    size_t k;
    json_t *row;
    json_array_foreach(placed, k, row)
        if (json_str(row, "id"))
            json_object_set(here, json_str(row, "id"), json_true());
    for (size_t i = 0; i < b.n_vms; i++) {
        const char *id = b.vms[i].id;
        if (!json_object_get(here, id)) {
            store_tx_rollback(a->store);
            reqctx_set_target(r, id);
            reqctx_set_detail(r, "node %s reported on VM %s, which it does "
                                 "not host: refused", node_id, id);
            log_ctx_set(LOG_CTX_VM, id);
            log_warn("node %s reported on foreign VM %s: refused", node_id, id);
            http_reply_problem(r, 403, "forbidden", "vms",
                               "VM %s is not placed on this node", id);
            return;
        }
    }
    int64_t now = now_s();
    /* A node that moved (another address seen or reported) must reach its
     * peers' configuration: every node's desired state changes. Read with
     * the contract its agent last spoke (below). */
    json_auto_t *was = NULL;
    store_query_one(a->store, &was,
                    "SELECT CASE WHEN approved = 1 AND (COALESCE("
                    "observed_endpoint, '') <> $2 OR COALESCE($3, endpoint, "
                    "'') <> COALESCE(endpoint, '')) THEN 1 ELSE 0 END AS "
                    "moved, agent_contract FROM nodes WHERE id = $1",
                    "sss", node_id, http_req_peer(r), b.endpoint);
    bool moved = json_int(was, "moved", 0) != 0;
    /* A new mapping or class changes the endpoint its peers are given. */
    if (b.has_reach) {
        moved = moved ||
                store_query_int(a->store, 0,
                                "SELECT COUNT(*) FROM nodes WHERE id = $1 AND "
                                "approved = 1 AND (COALESCE(mapped_endpoint, "
                                "'') <> COALESCE($2, '') OR COALESCE("
                                "nat_class, '') <> $3)", "sss", node_id,
                                b.mapped_endpoint, b.nat) > 0;
        store_exec(a->store, "UPDATE nodes SET nat_class = $1, "
                   "mapped_endpoint = $2, reach_at = $3 WHERE id = $4",
                   "ssis", b.nat, b.mapped_endpoint, now, node_id);
    }
    /* An agent that begins or stops taking AGENT_NET_VMS (upgraded or
     * downgraded) gets its next document whole, in its form. */
    int contract = reqctx_of(r)->contract;
    bool reform = (json_int(was, "agent_contract", 1) >=
                   AGENT_CONTRACT_NET_VMS) !=
                  (contract >= AGENT_CONTRACT_NET_VMS);
    store_exec(a->store,
               "UPDATE nodes SET last_seen = $1, observed_endpoint = $2, "
               "endpoint = COALESCE($3, endpoint), public_ip = COALESCE($4, "
               "public_ip), agent_contract = $5, public_ip6 = $7 WHERE id = "
               "$6", "isssiss", now, http_req_peer(r), b.endpoint,
               b.public_ip, (int64_t)contract, node_id, b.public_ip6);
    if (b.has_inventory) {
        capacity_record(a, node_id, &b.inventory);
        reserve_record(a, node_id, &b.inventory);
    }
    if (b.has_permit_ports)
        netalloc_permit_set(a->store, node_id, b.permit_ports,
                            b.n_permit_ports);
    if (b.gpus)
        gpus_record(a->store, node_id, b.gpus, b.iommu);
    if (b.inventory.has & AM_INV_KVM)
        store_exec(a->store, "UPDATE nodes SET kvm = $1 WHERE id = $2", "bs",
                   b.inventory.kvm, node_id);
    for (size_t i = 0; i < b.n_vms; i++) {
        const struct am_vm_status *v = &b.vms[i];
        const char *id = v->id, *st = v->state;
        if (streq(st, "deleted")) {
            if (store_query_int(a->store, 0, "SELECT COUNT(*) FROM vms "
                                "WHERE id = $1 AND desired_state = 'deleted'",
                                "s", id) == 1 &&
                vm_delete_finish(a, id, now) == 0)
                app_vm_changed(a, node_id, id);
            continue;
        }
        /* Stopped or gone while it should run: the node evicted it. */
        reputation_status_seen(a, node_id, id, st, v->by_guest);
        _cleanup_free_ char *addr_text =
            v->addresses ? json_dumps_compact(v->addresses) : NULL;
        int changed = store_exec(
            a->store,
            "UPDATE vms SET state = $1, state_reason = $2, updated_at "
            "= $3, addresses = COALESCE($4, addresses), running_gen = CASE "
            "WHEN $1 = 'running' THEN start_gen ELSE running_gen END WHERE id = $5 "
            "AND deleted_at IS NULL AND (state <> $1 OR "
            "COALESCE(state_reason, '') <> COALESCE($2, '') OR addresses <> "
            "COALESCE($4, addresses))",
            "ssiss", st, v->reason, now, addr_text, id);
        /* A VM that failed to start or crashed counts against the node
         * (once per change of state). */
        if (changed > 0 && (streq(st, "error") || streq(st, "crashed")))
            reputation_fault(a, node_id, REP_FAULT_VM);
        /* A power-off the node had to force is the tenant's to know. */
        if (changed > 0 && v->reason &&
            startswith(v->reason, AGENT_FORCED_OFF_REASON))
            vm_event_forced_off(a, node_id, id, v->reason);
        /* Shut down (or crashed) from inside: the VM's desire follows, as
         * a powered-off server stays off, unless the tenant has asked to
         * start it again since (a newer start generation). */
        /* The node's document changes with it, so its revision moves:
         * a cached document at the old revision would still say running
         * (an agent starting afresh would start the VM again). */
        if (v->by_guest &&
            (streq(st, "stopped") || streq(st, "crashed")) &&
            store_exec(a->store,
                       "UPDATE vms SET desired_state = 'stopped', updated_at "
                       "= $1 WHERE id = $2 AND desired_state = 'running' AND "
                       "start_gen <= $3", "isi", now, id,
                       v->start_gen) > 0)
            app_vm_changed(a, node_id, id);
        /* What the report changed of the VM's part of the document moves
         * the revision, as above. */
        bool snapped = snapshots_record(a, v);
        bool restored = restore_seen(a, id, st) > 0;
        if (snapped || restored)
            app_vm_changed(a, node_id, id);
        if (v->console_tail)
            store_exec(a->store, "UPDATE vms SET console = $1 WHERE id = $2",
                       "ss", v->console_tail, id);
        /* Kept as text for the tenant; only the node's typed interfaces
         * are read. A post without it keeps what was stored. */
        if (v->domain_xml)
            domain_record(a, v);
        vmhealth_record(a, node_id, v, now);
    }
    size_t bad = 0;
    /* Billing reads the (decoded) VM list and the samples, naming each
     * sample it refuses. */
    int be = billing_ingest_status(a, node_id, json_object_get(body, "vms"),
                                   b.samples, b.n_samples, &bad);
    if (be < 0) {
        if (be == -EPERM || be == -EINVAL) {
            /* Name every refused sample, so the node drops those and
             * sends the rest again. */
            json_auto_t *rej = billing_samples_rejected(a, node_id,
                                                        b.samples,
                                                        b.n_samples);
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
    refusals_record(a, node_id, b.refused, b.n_refused);
    if (b.has_mesh_paths &&
        meshpath_record(a, node_id, b.mesh_paths, b.n_mesh_paths) < 0) {
        store_tx_rollback(a->store);
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    if (store_tx_commit(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    if (moved)
        app_all_nodes_changed(a);
    else if (reform)
        app_node_changed(a, node_id);
    int64_t rev = store_query_int(a->store, 0,
                                  "SELECT revision FROM nodes WHERE id = $1",
                                  "s", node_id);
    json_t *ans = json_pack("{s:I, s:s}", "revision", (json_int_t)rev,
                            AGENT_OBSERVED_IP, http_req_peer(r));
    if (a->cfg.probe_port > 0)
        json_object_set_new(ans, AGENT_PROBE_PORT,
                            json_integer(a->cfg.probe_port));
    /* A relay token signs the NAT class the node has now: the relay puts
     * a pair on its path by the same rule as the desired documents. */
    if (a->relay) {
        enum probe_nat nat = PROBE_NAT_UNKNOWN;
        char tok[RELAY_TOKEN_HEX + 1];
        json_auto_t *me = NULL;
        if (store_query_one(a->store, &me, "SELECT nat_class FROM nodes "
                            "WHERE id = $1", "s", node_id) < 0 ||
            probe_nat_parse(json_str(me, "nat_class"), &nat) < 0)
            nat = PROBE_NAT_UNKNOWN;
        if (relay_server_token(a->relay, node_id, nat, tok) == 0) {
            json_object_set_new(ans, AGENT_RELAY_PORT,
                                json_integer(a->cfg.relay_port));
            json_object_set_new(ans, AGENT_RELAY_TOKEN, json_string(tok));
            json_object_set_new(ans, AGENT_MESH_PATHS, json_true());
        }
    }
    http_reply_json(r, 200, ans);
}

static void relay_upgraded(struct http_upgraded *u, void *arg)
{
    void **p = arg;
    relay_server_stream(p[0], p[1], u);
    free(p[1]);
    free(p);
}

/* The relay over TCP, for a node whose UDP does not reach the hub. */
HANDLER(h_agent_relay)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    if (!a->relay) {
        http_reply_problem(r, 404, "no-relay", NULL,
                           "this controller relays for no node "
                           "(--relay-port is not set)");
        return;
    }
    if (!upgrade_asked(r, RELAY_UPGRADE_PROTOCOL))
        return;
    void **p = xcalloc(2, sizeof(void *));
    p[0] = a->relay;
    p[1] = xstrdup(c->actor);
    http_reply_upgrade(r, RELAY_UPGRADE_PROTOCOL, relay_upgraded, p);
}
