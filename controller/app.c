/* The controller's route table and the hooks around every handler:
 * authentication, role checks, idempotent POST replay, the event log. */
#include "controller/app.h"

#include "api/agentproto.h"

#include "common/buf.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/auth.h"
#include "controller/bstore.h"
#include "controller/desired_cache.h"
#include "controller/guard.h"
#include "controller/handlers.h"
#include "controller/scheduler.h"

#include <ctype.h>
#include <pthread.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

/* Successful calls of QUIET routes are not written to the event log (agent
 * heartbeats would drown it); refusals still are. */
#define QUIET (1u << 8)
/* Mutating routes that open no request transaction: their handlers write
 * outside the store first (a backup chunk to disk, a digest over a whole
 * blob) or check a benchmark answer, and then make short transactions of
 * their own (app_tx_begin), so slow work never holds the store. No Idempotency-Key: only nodes call
 * them, and each call is safe to repeat. */
#define NO_TX (1u << 9)
/* Byte transfers of backups (a chunk up, a blob down): not counted against
 * the node's request rate. A 2 GiB backup is 256 chunks of 8 MiB sent in
 * seconds, which --rate-node (requests of a node per second) would pace to
 * 80 MiB/s; each is bounded by its size instead, and the agents' address
 * limit (checked before the credential) still applies. */
#define BULK (1u << 10)

const struct http_route app_routes[] = {
    { "GET", "/healthz", h_healthz, ALLOW_PUBLIC },
    { "GET", "/readyz", h_readyz, ALLOW_PUBLIC },
    { "GET", "/metrics", h_metrics, ALLOW_ADMIN },
    { "GET", "/v1/ca", h_ca, ALLOW_PUBLIC },

    { "POST", "/v1/accounts", h_account_create, ALLOW_ADMIN },
    { "GET", "/v1/accounts", h_account_list, ALLOW_USERS },
    { "GET", "/v1/accounts/{id}", h_account_get, ALLOW_USERS },
    { "GET", "/v1/accounts/{id}/balance", h_account_balance, ALLOW_USERS },
    { "POST", "/v1/accounts/{id}/credit", h_account_credit, ALLOW_ADMIN },
    { "GET", "/v1/accounts/{id}/quotas", h_account_quotas_get, ALLOW_USERS },
    { "PUT", "/v1/accounts/{id}/quotas", h_account_quotas_put, ALLOW_ADMIN },

    { "POST", "/v1/keys", h_key_create, ALLOW_USERS },
    { "GET", "/v1/keys", h_key_list, ALLOW_USERS },
    { "DELETE", "/v1/keys/{id}", h_key_delete, ALLOW_USERS },

    { "POST", "/v1/vms", h_vm_create, ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/vms", h_vm_list, ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/vms/{id}", h_vm_get, ALLOW_ADMIN | ALLOW_TENANT },
    { "DELETE", "/v1/vms/{id}", h_vm_delete, ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/start", h_vm_start, ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/stop", h_vm_stop, ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/reboot", h_vm_reboot, ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/destroy", h_vm_destroy, ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/resize", h_vm_resize, ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/suspend", h_vm_suspend, ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/resume", h_vm_resume, ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/autostart", h_vm_autostart, ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/vms/{id}/console", h_vm_console, ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/vms/{id}/console/attach", h_vm_console_attach,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/vms/{id}/xml", h_vm_xml, ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/restore", h_vm_restore, ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/migrate", h_vm_migrate, ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/vms/{id}/migration", h_vm_migration,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/restart-policy", h_vm_restart_policy,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/vms/{id}/ingress", h_ingress_list, ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/ingress", h_ingress_add, ALLOW_ADMIN | ALLOW_TENANT },
    { "DELETE", "/v1/vms/{id}/ingress/{hostname}", h_ingress_remove,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/ingress", h_ingress_all, ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/vms/{id}/health-checks", h_health_list,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/health-checks", h_health_add,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/vms/{id}/health-checks/{check}", h_health_get,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "DELETE", "/v1/vms/{id}/health-checks/{check}", h_health_remove,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/backup-schedule", h_vm_backup_schedule,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/snapshots", h_snapshot_create,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/vms/{id}/snapshots", h_snapshot_list,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/vms/{id}/snapshots/{snap}", h_snapshot_get,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "DELETE", "/v1/vms/{id}/snapshots/{snap}", h_snapshot_delete,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/snapshots/{snap}/revert", h_snapshot_revert,
      ALLOW_ADMIN | ALLOW_TENANT },

    { "POST", "/v1/vms/{id}/backups", h_backup_create,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/vms/{id}/backups", h_backup_list, ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/vms/{id}/backups/{backup}", h_backup_get,
      ALLOW_ADMIN | ALLOW_TENANT },
    { "DELETE", "/v1/vms/{id}/backups/{backup}", h_backup_delete,
      ALLOW_ADMIN | ALLOW_TENANT },

    { "POST", "/v1/join-tokens", h_jointoken_create,
      ALLOW_ADMIN | ALLOW_PROVIDER },
    { "GET", "/v1/nodes", h_node_list, ALLOW_ADMIN | ALLOW_PROVIDER },
    { "GET", "/v1/nodes/{id}", h_node_get, ALLOW_ADMIN | ALLOW_PROVIDER },
    { "POST", "/v1/nodes/{id}/approve", h_node_approve, ALLOW_ADMIN },
    { "DELETE", "/v1/nodes/{id}", h_node_delete, ALLOW_ADMIN | ALLOW_PROVIDER },
    { "POST", "/v1/nodes/{id}/drain", h_node_drain, ALLOW_ADMIN | ALLOW_PROVIDER },
    { "POST", "/v1/nodes/{id}/undrain", h_node_undrain,
      ALLOW_ADMIN | ALLOW_PROVIDER },
    { "GET", "/v1/nodes/{id}/offer", h_offer_get, ALLOW_ADMIN | ALLOW_PROVIDER },
    { "PUT", "/v1/nodes/{id}/offer", h_offer_put, ALLOW_ADMIN | ALLOW_PROVIDER },
    { "PUT", "/v1/nodes/{id}/market", h_node_market_put,
      ALLOW_ADMIN | ALLOW_PROVIDER },
    { "GET", "/v1/offers", h_offers_list, ALLOW_USERS },
    { "GET", "/v1/gpus", h_gpu_list, ALLOW_ADMIN | ALLOW_PROVIDER },
    { "POST", "/v1/nodes/{id}/gpus/offer", h_gpu_offer,
      ALLOW_ADMIN | ALLOW_PROVIDER },
    { "POST", "/v1/nodes/{id}/gpus/withdraw", h_gpu_withdraw,
      ALLOW_ADMIN | ALLOW_PROVIDER },
    { "GET", "/v1/nodes/{id}/policy", h_node_policy_get,
      ALLOW_ADMIN | ALLOW_PROVIDER },
    { "PUT", "/v1/nodes/{id}/policy", h_node_policy_put,
      ALLOW_ADMIN | ALLOW_PROVIDER },
    { "GET", "/v1/pool", h_pool_list, ALLOW_USERS },
    { "POST", "/v1/pool", h_pool_add, ALLOW_ADMIN },
    { "DELETE", "/v1/pool/{id}", h_pool_remove, ALLOW_ADMIN },

    { "GET", "/v1/usage", h_usage_list, ALLOW_USERS },
    { "GET", "/v1/invoices", h_invoice_get, ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/payouts", h_payout_get, ALLOW_ADMIN | ALLOW_PROVIDER },
    { "GET", "/v1/ledger", h_ledger_list, ALLOW_ADMIN },
    { "POST", "/v1/ledger/{id}/reverse", h_ledger_reverse, ALLOW_ADMIN },

    { "GET", "/v1/events", h_event_list, ALLOW_USERS },

    { "POST", "/v1/images", h_image_create, ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/images", h_image_list, ALLOW_USERS },
    { "GET", "/v1/images/{id}", h_image_get, ALLOW_USERS },
    { "DELETE", "/v1/images/{id}", h_image_delete, ALLOW_ADMIN | ALLOW_TENANT },
    { "PUT", "/v1/images/{id}/file", h_image_upload, ALLOW_ADMIN | ALLOW_TENANT,
      h_image_upload_sink },
    { "GET", "/v1/images/{id}/file", h_image_download,
      ALLOW_ADMIN | ALLOW_TENANT | ALLOW_NODE | QUIET },
    { "GET", "/v1/templates", h_template_list, ALLOW_USERS },
    { "GET", "/v1/templates/{name}", h_template_get, ALLOW_USERS },
    { "POST", "/v1/ssh-keys", h_sshkey_create, ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/ssh-keys", h_sshkey_list, ALLOW_ADMIN | ALLOW_TENANT },
    { "DELETE", "/v1/ssh-keys/{id}", h_sshkey_delete, ALLOW_ADMIN | ALLOW_TENANT },

    { "POST", "/v1/networks", h_net_create, ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/networks", h_net_list, ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/networks/{id}", h_net_get, ALLOW_ADMIN | ALLOW_TENANT },
    { "DELETE", "/v1/networks/{id}", h_net_delete, ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/vms/{id}/ports", h_port_list, ALLOW_ADMIN | ALLOW_TENANT },
    { "POST", "/v1/vms/{id}/ports", h_port_add, ALLOW_ADMIN | ALLOW_TENANT },
    { "DELETE", "/v1/vms/{id}/ports/{port}", h_port_remove,
      ALLOW_ADMIN | ALLOW_TENANT },

    { "POST", "/v1/agent/register", h_agent_register, ALLOW_PUBLIC },
    { "GET", "/v1/agent/desired", h_agent_desired, ALLOW_NODE },
    /* Status posts carry console tails and usage samples beside the VM
     * list (api/agentproto.h). */
    { "POST", "/v1/agent/status", h_agent_status, ALLOW_NODE | QUIET, NULL,
      AGENT_STATUS_BODY_MAX },
    { "GET", "/v1/agent/console/{session}", h_agent_console, ALLOW_NODE },
    { "GET", "/v1/agent/relay", h_agent_relay, ALLOW_NODE },
    { "POST", "/v1/agent/console/{session}/log", h_agent_console_log,
      ALLOW_NODE, NULL, CONSOLE_LOG_MAX },
    { "GET", AGENT_BACKUP_PATH "/{id}/blob", h_agent_backup_blob,
      ALLOW_NODE | BULK },
    /* Backup uploads (api/agentproto.h): chunks are raw bytes. */
    { "GET", AGENT_BACKUP_PATH "/{id}", h_agent_backup_stat,
      ALLOW_NODE | QUIET },
    { "PUT", AGENT_BACKUP_PATH "/{id}", h_agent_backup_put,
      ALLOW_NODE | QUIET | NO_TX | BULK, NULL, AGENT_BACKUP_CHUNK_MAX },
    { "POST", AGENT_BACKUP_PATH "/{id}/commit", h_agent_backup_commit,
      ALLOW_NODE | QUIET | NO_TX },
    { "POST", AGENT_BACKUP_PATH "/{id}/fail", h_agent_backup_fail,
      ALLOW_NODE | QUIET },
    { "POST", AGENT_BENCH_PATH "/{id}", h_agent_benchmark,
      ALLOW_NODE | NO_TX, NULL, AGENT_BENCH_ANSWER_MAX },
    { "GET", AGENT_BENCH_PROBE_PATH "/{file}", h_agent_probe,
      ALLOW_NODE | QUIET },
};
const size_t app_n_routes = ARRAY_SIZE(app_routes);

static void reqctx_free(void *p)
{
    struct reqctx *c = p;
    if (!c)
        return;
    free(c->target);
    free(c->event_detail);
    free(c->idem_key);
    if (c->stream && c->stream_free)
        c->stream_free(c->stream);
    free(c);
}

struct reqctx *reqctx_of(struct http_request *r)
{
    struct reqctx *c = http_req_user(r);
    if (!c) {
        c = xcalloc(1, sizeof(*c));
        http_req_set_user(r, c, reqctx_free);
    }
    return c;
}

void reqctx_set_target(struct http_request *r, const char *id)
{
    struct reqctx *c = reqctx_of(r);
    free(c->target);
    c->target = id ? xstrdup(id) : NULL;
}

void reqctx_set_detail(struct http_request *r, const char *fmt, ...)
{
    struct reqctx *c = reqctx_of(r);
    va_list ap;
    free(c->event_detail);
    va_start(ap, fmt);
    if (vasprintf(&c->event_detail, fmt, ap) < 0)
        abort();
    va_end(ap);
}

const char *role_name(enum role role)
{
    static const char *names[ROLE_MAX] = { "none", "admin", "tenant",
                                           "provider", "node" };
    return role < ROLE_MAX ? names[role] : "none";
}

static enum role role_parse(const char *s)
{
    if (streq(s, "admin"))
        return ROLE_ADMIN;
    if (streq(s, "tenant"))
        return ROLE_TENANT;
    if (streq(s, "provider"))
        return ROLE_PROVIDER;
    return ROLE_NONE;
}

static unsigned role_bit(enum role role)
{
    switch (role) {
    case ROLE_ADMIN: return ALLOW_ADMIN;
    case ROLE_TENANT: return ALLOW_TENANT;
    case ROLE_PROVIDER: return ALLOW_PROVIDER;
    case ROLE_NODE: return ALLOW_NODE;
    default: return 0;
    }
}

/* Resolve the bearer credential into the request context: 0, -EACCES for
 * a missing, unknown or wrong credential, or the store's -errno (a store
 * that cannot answer must not read as a revoked key). */
static int authenticate(struct app *a, struct http_request *r,
                        struct reqctx *c)
{
    const char *h = http_req_header(r, "Authorization");
    char id[AUTH_ID_LEN + 1], secret[AUTH_SECRET_LEN + 1];
    json_auto_t *row = NULL;

    int e;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return -EACCES;
    const char *tok = h + 7;
    if (auth_token_split(tok, "fog", id, secret)) {
        e = store_query_one(a->store, &row,
                            "SELECT k.salt, k.hash, k.account_id, a.role, "
                            "k.last_used_at FROM api_keys k JOIN accounts a "
                            "ON a.id = "
                            "k.account_id WHERE k.id = $1 AND k.revoked_at "
                            "IS NULL", "s", id);
        if (e < 0)
            return e == -ENOENT ? -EACCES : e;
        if (!auth_verify(json_str(row, "salt"), json_str(row, "hash"), secret))
            return -EACCES;
        c->role = role_parse(json_str(row, "role"));
        snprintf(c->account_id, sizeof(c->account_id), "%s",
                 json_str(row, "account_id"));
        snprintf(c->actor, sizeof(c->actor), "key:%s", id);
        /* Kept to the minute, and written only when it moves: a read
         * never waits for the writer's lock (behind other requests'
         * transactions) just to learn there was nothing to write. */
        int64_t now = now_s();
        if (json_int(row, "last_used_at", 0) < now - 60)
            store_exec(a->store,
                       "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 "
                       "AND (last_used_at IS NULL OR last_used_at < $3)",
                       "isi", now, id, now - 60);
        return c->role != ROLE_NONE ? 0 : -EACCES;
    }
    if (auth_token_split(tok, "fogn", id, secret)) {
        e = store_query_one(a->store, &row,
                            "SELECT id, cred_salt, cred_hash, account_id FROM "
                            "nodes WHERE cred_id = $1 AND removed_at IS NULL",
                            "s", id);
        if (e < 0)
            return e == -ENOENT ? -EACCES : e;
        if (!auth_verify(json_str(row, "cred_salt"), json_str(row, "cred_hash"),
                         secret))
            return -EACCES;
        c->role = ROLE_NODE;
        snprintf(c->account_id, sizeof(c->account_id), "%s",
                 json_str(row, "account_id"));
        snprintf(c->actor, sizeof(c->actor), "%s", json_str(row, "id"));
        return 0;
    }
    return -EACCES;
}

static bool idempotency_key_valid(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++)
        if (k[i] < 0x21 || k[i] > 0x7e)
            return false;
    return true;
}

/* A request's id: the caller's X-Request-Id when it is 1 to 64 of
 * [A-Za-z0-9._-], else a new UUID; echoed in the reply and carried by
 * every log line of the request (REQUEST_ID in the journal). */
static void request_id_begin(struct http_request *r)
{
    const char *given = http_req_header(r, "X-Request-Id");
    size_t n = given ? strlen(given) : 0;
    bool ok = n > 0 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)given[i]) || strchr("._-", given[i]);
    char id[UUID_STR_LEN + 1];
    if (!ok)
        uuid_generate_str(id);
    log_ctx_clear();
    log_ctx_set(LOG_CTX_REQUEST, ok ? given : id);
    http_reply_header(r, "X-Request-Id", ok ? given : id);
}

/* An agent call's contract version (AGENT_CONTRACT_HEADER) into
 * c->contract: 1 when not named (agents older than the header). false,
 * with 400 or 426 sent, when it is not a number or older than this
 * controller serves. */
static bool contract_admit(struct http_request *r, struct reqctx *c)
{
    const char *v = http_req_header(r, AGENT_CONTRACT_HEADER);
    int64_t n = 1;
    if (v && parse_int64(v, 0, AGENT_CONTRACT_MAX_VALUE, &n) < 0) {
        http_reply_problem(r, 400, "validation", AGENT_CONTRACT_HEADER,
                           "%s must be a contract version (a number)",
                           AGENT_CONTRACT_HEADER);
        return false;
    }
    if (n < AGENT_CONTRACT_MIN) {
        http_reply_problem(r, 426, "agent-too-old", AGENT_CONTRACT_HEADER,
                           "this agent speaks contract %lld; this controller "
                           "serves %d to %d: upgrade the agent",
                           (long long)n, AGENT_CONTRACT_MIN, AGENT_CONTRACT);
        return false;
    }
    c->contract = (int)n;
    return true;
}

static bool method_mutates(const char *m)
{
    return !streq(m, "GET") && !streq(m, "HEAD");
}

/* Whether the caller may make this call: its peer, credential, rate and
 * role; false when it was answered (401, 403, 429...). */
static bool admit(struct app *a, struct http_request *r,
                  const struct http_route *route, struct reqctx *c)
{
    if (!guard_admit_peer(a, r))
        return false;
    c->contract = 1;
    if (startswith(route->pattern, "/v1/agent/") && !contract_admit(r, c))
        return false;
    if (route->flags & ALLOW_PUBLIC)
        return true;
    int e = authenticate(a, r, c);
    if (e == -EACCES) {
        http_reply_header(r, "WWW-Authenticate", "Bearer");
        http_reply_problem(r, 401, "unauthorized", NULL,
                           "missing, malformed, unknown or revoked credential");
        return false;
    }
    if (e < 0) {
        reply_store_error(r, e, "credential");
        return false;
    }
    if (c->role == ROLE_NODE)
        log_ctx_set(LOG_CTX_NODE, c->actor);
    if (!(route->flags & BULK) && !guard_admit_caller(a, r, c))
        return false;
    if (!(route->flags & role_bit(c->role))) {
        http_reply_problem(r, 403, "forbidden", NULL,
                           "a %s may not call %s %s", role_name(c->role),
                           route->method, route->pattern);
        return false;
    }
    const char *ik = http_req_header(r, "Idempotency-Key");
    if (ik && !idempotency_key_valid(ik)) {
        http_reply_problem(r, 400, "validation", "Idempotency-Key",
                           "Idempotency-Key must be 1 to 255 visible "
                           "ASCII characters");
        return false;
    }
    return true;
}

/* Whether the request says a body follows its headers. */
static bool declares_body(struct http_request *r)
{
    const char *cl = http_req_header(r, "Content-Length");
    return (cl && !streq(cl, "0")) || http_req_header(r, "Transfer-Encoding");
}

bool app_before(struct http_request *r, const struct http_route *route,
                void *app)
{
    struct app *a = app;

    request_id_begin(r);
    /* Reads never wait for a write in progress, this hook's own included
     * (the credential's lookup of a mutating call): it runs on the
     * connection's thread, which a wait for the writer's lock would take
     * from every other connection it serves, reads too. A mutating call
     * goes to the writer in app_begin, on the thread that runs it. */
    store_route_reads(a->store, true);
    /* A call with a body is admitted on its headers, before the body is
     * read (a GET's too, which no route reads: a stranger's is never
     * parsed). A GET or HEAD without one is admitted in app_begin, which
     * comes in the same call of the thread as its handler: there the
     * credential's lookup shares the handler's snapshot. */
    if (!method_mutates(http_req_method(r)) && !declares_body(r))
        return true;
    return admit(a, r, route, reqctx_of(r));
}

/* Settings built by hand (tests, benchmarks) may leave it 0: a day. */
static int64_t idempotency_ttl(const struct app *a)
{
    return a->cfg.idempotency_ttl_s > 0 ? a->cfg.idempotency_ttl_s : 86400;
}

/* What a key is bound to: method, path and body, hashed. */
static void request_hash(struct http_request *r, char out[2 * SHA256_LEN + 1])
{
    size_t len;
    const char *body = http_req_body(r, &len);
    struct buf b = BUF_INIT;
    buf_printf(&b, "%s\n%s\n", http_req_method(r), http_req_path(r));
    if (body)
        buf_append(&b, body, len);
    sha256_hex(b.data, b.len, out);
    buf_free(&b);
}

/* Answer from a stored idempotency row: the first reply again, or 422 when
 * the key was used for another request. */
static void idempotency_replay(struct http_request *r, json_t *row,
                               const char *hash)
{
    if (!streq(json_str(row, "req_hash"), hash)) {
        http_reply_problem(r, 422, "idempotency-key-reused", "Idempotency-Key",
                           "Idempotency-Key was already used for a different "
                           "request (method, path or body)");
        return;
    }
    const char *body = json_str(row, "body");
    http_reply_header(r, "Idempotent-Replayed", "true");
    http_reply_text(r, (int)json_int(row, "status", 200),
                    json_str(row, "content_type"), xstrdup(body ? body : ""),
                    body ? strlen(body) : 0);
    reqctx_set_detail(r, "replayed");
}

/* Every mutating call runs in one store transaction that the after-hook
 * commits together with its event and, under an Idempotency-Key, its
 * reply: a crash anywhere leaves either all of it or none. The key is
 * reserved first, inside that transaction, so a concurrent duplicate
 * waits on it (the store's lock here; the unique key across replicas)
 * and then replays. Streamed uploads keep their own transactions. */
/* Nodes whose change this thread's open request (or app_tx_begin()
 * transaction) has not committed yet: their polls are woken after the
 * commit, since a poll woken before it may read the old revision and
 * park again. Backup blobs whose rows it deletes go after the commit
 * too: a rollback keeps row and blob, a failed unlink only an orphan
 * (which the sweep removes), never a row without its blob. */
static _Thread_local struct buf wake_after_commit; /* NUL-separated ids */
/* Effects outside the store (app_after_commit), in order. */
struct deferred {
    void (*fn)(struct app *, const char *);
    char *arg;
};
static _Thread_local struct deferred *after_commit;
static _Thread_local size_t n_after_commit;
static _Thread_local bool wake_all_after_commit;
static _Thread_local bool request_tx_open; /* set by app_begin */

/* The request's changes did not commit: nothing to wake or drop. Freed,
 * not kept: request threads end without a destructor. */
static void wake_discard(void)
{
    buf_free(&wake_after_commit);
    for (size_t i = 0; i < n_after_commit; i++)
        free(after_commit[i].arg);
    free(after_commit);
    after_commit = NULL;
    n_after_commit = 0;
    wake_all_after_commit = false;
    request_tx_open = false;
}

void app_after_commit(struct app *a, void (*fn)(struct app *, const char *),
                      const char *arg)
{
    if (!request_tx_open) {
        fn(a, arg);
        return;
    }
    after_commit = xrealloc(after_commit,
                            (n_after_commit + 1) * sizeof(*after_commit));
    after_commit[n_after_commit++] = (struct deferred){
        fn, arg ? xstrdup(arg) : NULL };
}

void app_backup_blob_remove(struct app *a, const char *id)
{
    int e = fs_test_fault("FOG_TEST_FAULT", "bstore-remove")
                ? -EIO : a->backups->ops->remove(a->backups, id);
    if (e < 0 && e != -ENOENT)
        log_warn("cannot remove backup blob %s (the orphan sweep will): %s",
                 id, strerror(-e));
}

static void wake_committed(struct app *a)
{
    /* Taken first: an effect may open a transaction of its own. */
    struct deferred *run = after_commit;
    size_t n = n_after_commit;
    after_commit = NULL;
    n_after_commit = 0;
    for (size_t i = 0; i < n; i++) {
        run[i].fn(a, run[i].arg);
        free(run[i].arg);
    }
    free(run);
    if (wake_all_after_commit)
        app_nodes_wake(a, NULL);
    for (size_t i = 0; !wake_all_after_commit && i < wake_after_commit.len;
         i += strlen(wake_after_commit.data + i) + 1)
        app_nodes_wake(a, wake_after_commit.data + i);
    wake_discard();
}

int app_tx_begin(struct app *a)
{
    int e = store_tx_begin(a->store);
    if (e == 0)
        request_tx_open = true;
    return e;
}

bool app_hold_begin(void)
{
    if (request_tx_open)
        return false;
    request_tx_open = true;
    return true;
}

void app_hold_end(struct app *a, bool held, bool committed)
{
    if (!held)
        return;
    if (committed)
        wake_committed(a);
    else
        wake_discard();
}

int app_tx_commit(struct app *a)
{
    int e = store_tx_commit(a->store);
    if (e == 0)
        wake_committed(a);
    else
        wake_discard();
    return e;
}

void app_tx_rollback(struct app *a)
{
    store_tx_rollback(a->store);
    wake_discard();
}

void app_backup_blob_drop(struct app *a, const char *id)
{
    if (!id || !a->backups)
        return;
    app_after_commit(a, app_backup_blob_remove, id);
}

bool app_begin(struct http_request *r, const struct http_route *route,
               void *app)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const char *ik = http_req_header(r, "Idempotency-Key");
    bool mutates = method_mutates(http_req_method(r));

    store_route_reads(a->store, !mutates);
    if (!mutates) {
        /* One snapshot for the call's reads, credential included, until
         * app_after (or app_park): each read is then not a transaction
         * of its own, and the answer shows one state of the store. */
        store_snapshot_begin(a->store);
        /* One with a body was admitted on its headers (app_before). */
        return declares_body(r) || admit(a, r, route, c);
    }
    if (route->sink || (route->flags & NO_TX))
        return true;
    if (!c->account_id[0])
        ik = NULL; /* public routes: no account to scope a key to */
    char hash[2 * SHA256_LEN + 1];
    if (ik)
        request_hash(r, hash);
    for (int attempt = 0;; attempt++) {
        int e = store_tx_begin(a->store);
        if (e < 0) {
            reply_store_error(r, e, "request");
            return false;
        }
        c->tx_open = c->tx_ran = true;
        request_tx_open = true;
        if (!ik)
            return true;
        json_auto_t *row = NULL;
        e = store_query_one(a->store, &row,
                            "SELECT req_hash, status, content_type, body, "
                            "created_at FROM idempotency WHERE account_id = "
                            "$1 AND key = $2", "ss", c->account_id, ik);
        if (e == 0 && json_int(row, "created_at", 0) <
                          now_s() - idempotency_ttl(a)) {
            e = store_exec(a->store, "DELETE FROM idempotency WHERE "
                           "account_id = $1 AND key = $2", "ss",
                           c->account_id, ik);
            e = e < 0 ? e : -ENOENT;
        }
        if (e == 0) {
            store_tx_rollback(a->store);
            c->tx_open = false;
            idempotency_replay(r, row, hash);
            return false;
        }
        if (e == -ENOENT)
            e = store_exec(a->store,
                           "INSERT INTO idempotency (account_id, key, method, "
                           "path, req_hash, status, content_type, body, "
                           "created_at) VALUES ($1, $2, $3, $4, $5, 0, '', '', "
                           "$6)", "sssssi", c->account_id, ik,
                           http_req_method(r), http_req_path(r), hash, now_s());
        if (e >= 0) {
            c->idem_key = xstrdup(ik);
            return true;
        }
        store_tx_rollback(a->store);
        c->tx_open = false;
        /* Another replica reserved the key and has committed since: look
         * again, once, and replay its answer. */
        if (e != -EEXIST || attempt > 0) {
            reply_store_error(r, e, "request");
            return false;
        }
    }
}

int app_backup_store(struct app *a, struct bstore **ret)
{
    if (!a->backups)
        return -ENOENT;
    *ret = a->backups;
    return 0;
}

int app_event(struct app *a, const char *account_id, const char *actor,
              const char *action, const char *target, int status,
              const char *detail)
{
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    int e = store_exec(a->store,
                       "INSERT INTO events (id, time_ms, account_id, actor, "
                       "action, target, status, detail) VALUES ($1, $2, $3, "
                       "$4, $5, $6, $7, $8)", "sissssis", id, now_ms(),
                       account_id, actor, action, target, (int64_t)status,
                       detail ? detail : "");
    return e < 0 ? e : 0;
}

/* Delete in bounded batches, so the store is never held long; returns
 * how many rows went. */
static int prune_batches(struct app *a, const char *sql, int64_t cutoff)
{
    int n = 0, e;
    do {
        e = store_exec(a->store, sql, "i", cutoff);
        n += e > 0 ? e : 0;
    } while (e == 1000);
    return n;
}

void app_prune(struct app *a)
{
    int n = 0;
    if (a->cfg.event_retention_s > 0)
        n += prune_batches(a, "DELETE FROM events WHERE id IN (SELECT id FROM "
                              "events WHERE time_ms < $1 ORDER BY time_ms "
                              "LIMIT 1000)",
                           now_ms() - a->cfg.event_retention_s * 1000);
    n += prune_batches(a, "DELETE FROM idempotency WHERE (account_id, key) IN "
                          "(SELECT account_id, key FROM idempotency WHERE "
                          "created_at < $1 ORDER BY created_at LIMIT 1000)",
                       now_s() - idempotency_ttl(a));
    if (n > 0)
        log_debug("pruned %d expired events and idempotency keys", n);
}

/* The problem detail of an error reply, for the event log. */
static char *reply_detail(struct http_request *r)
{
    size_t len;
    const char *body = http_req_reply_body(r, &len);
    if (!body || !startswith(http_req_reply_type(r), "application/problem"))
        return NULL;
    json_auto_t *j = json_loadb(body, len, 0, NULL);
    const char *d = json_str(j, "detail");
    return d ? xstrdup(d) : NULL;
}

/* The reply to keep under an idempotency key: the whole reply, except that
 * one carrying a secret (a key, a node credential, a join token) keeps
 * only the created object's id, since secrets are never at rest. */
static char *idempotency_body(struct http_request *r, struct reqctx *c)
{
    size_t len;
    const char *body = http_req_reply_body(r, &len);
    if (!c->reply_secret)
        return xstrndup(body ? body : "", body ? len : 0);
    json_t *j = json_pack("{s:s?, s:s}", "id", c->target, "detail",
                          "the first answer carried a secret, which is shown "
                          "only once");
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return text;
}

/* Requests run again after losing a serialization conflict. */
static _Atomic uint64_t store_retries;

uint64_t app_store_retries(void)
{
    return atomic_load(&store_retries);
}

/* Run the request again when its transaction, now ended, lost a conflict
 * with another replica's (PostgreSQL 40001/40P01) and was rolled back
 * whole: the handler wrote nothing but through that transaction, so a
 * second run starts from the same state as the client's own retry would,
 * only sooner. After a short, jittered wait (the winner commits and the
 * losers do not collide again in step); at most APP_STORE_RETRIES times,
 * then the 503 stands. True when the request runs again. */
static bool retry_lost_conflict(struct app *a, struct http_request *r,
                                struct reqctx *c)
{
    if (!c->tx_ran || c->tx_open || !store_tx_lost_conflict(a->store) ||
        c->retries >= APP_STORE_RETRIES)
        return false;
    int64_t cap = APP_RETRY_MAX_MS;
    if (c->retries < 8 && (APP_RETRY_BASE_MS << c->retries) < cap)
        cap = APP_RETRY_BASE_MS << c->retries;
    uint16_t rnd;
    random_bytes(&rnd, sizeof(rnd));
    int64_t ms = cap / 2 + (int64_t)rnd % (cap / 2 + 1);
    if (!http_req_retry(r))
        return false;
    c->retries++;
    atomic_fetch_add(&store_retries, 1);
    log_debug("store: the request lost a conflict; running it again in "
              "%lld ms (%u of %u)", (long long)ms, c->retries,
              APP_STORE_RETRIES);
    /* What the lost attempt noted goes with it. */
    free(c->target);
    free(c->event_detail);
    free(c->idem_key);
    c->target = c->event_detail = c->idem_key = NULL;
    c->reply_secret = c->no_event = c->tx_ran = false;
    nanosleep(&(struct timespec){ ms / 1000, (ms % 1000) * 1000000 }, NULL);
    return true;
}

void app_after(struct http_request *r, const struct http_route *route,
               void *app)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const char *method = http_req_method(r);
    int status = http_req_status(r);
    int e = 0;

    store_snapshot_end(a->store);
    if (!method_mutates(method))
        return;
    /* A server error undoes the call: nothing of it happened, and a retry
     * under the same key may go ahead. */
    if (c->tx_open && status >= 500) {
        store_tx_rollback(a->store);
        c->tx_open = false;
        wake_discard();
    }
    if (status >= 500 && retry_lost_conflict(a, r, c)) {
        wake_committed(a);
        return;
    }
    if (c->tx_open && c->idem_key) {
        _cleanup_free_ char *keep = idempotency_body(r, c);
        e = store_exec(a->store,
                       "UPDATE idempotency SET status = $1, content_type = $2, "
                       "body = $3, resource_id = $4 WHERE account_id = $5 AND "
                       "key = $6", "isssss", (int64_t)status,
                       http_req_reply_type(r), keep, c->target,
                       c->account_id, c->idem_key);
        if (e == 0)
            e = -EIO; /* the reservation vanished: our bug */
    }

    /* Unauthenticated calls write nothing (a flood of them must not grow
     * the store); quiet routes log only what went wrong. */
    bool quiet = route && (route->flags & QUIET);
    bool log = c->account_id[0] || (c->tx_open && status < 400);
    if (quiet && status < 400 && !c->event_detail)
        log = false;
    if (status == 429 || c->no_event)
        log = false; /* throttled: a flood must not write a row each */
    if (log && e >= 0) {
        _cleanup_free_ char *problem = status >= 400 ? reply_detail(r) : NULL;
        _cleanup_free_ char *action = xasprintf("%s %.200s", method,
                                                http_req_path(r));
        const char *target = c->target ? c->target : http_req_param(r, 0);
        /* Path words come from outside: only keep them when they look sane. */
        if (target && !uuid_is_valid(target) && !name_is_valid(target))
            target = NULL;
        e = app_event(a, c->account_id[0] ? c->account_id : NULL,
                      c->actor[0] ? c->actor : NULL, action, target, status,
                      c->event_detail ? c->event_detail : problem);
    }
    if (!c->tx_open) {
        wake_committed(a);
        return;
    }
    c->tx_open = false;
    if (e < 0) {
        store_tx_rollback(a->store);
        wake_discard();
        if (retry_lost_conflict(a, r, c))
            return;
    } else {
        /* Test seam: the commit fails as a lost store would. */
        if (fs_test_fault("FOG_TEST_FAULT", "request-commit")) {
            store_tx_rollback(a->store);
            e = -EIO;
        } else {
            e = store_tx_commit(a->store);
        }
        if (e == 0) {
            wake_committed(a);
            return;
        }
        wake_discard();
        if (retry_lost_conflict(a, r, c))
            return;
    }
    /* Neither the effect nor its record is stored: say so, so the client
     * retries instead of trusting an answer that did not happen. */
    http_reply_reset(r);
    reply_store_error(r, e, "request");
}

void app_park(struct http_request *r, const struct http_route *route,
              void *app)
{
    (void)r;
    (void)route;
    struct app *a = app;
    store_snapshot_end(a->store);
}

/* ---- helpers ---------------------------------------------------------- */

void reply_items(struct http_request *r, json_t *rows,
                 json_t *(*render)(json_t *row))
{
    json_t *items = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_array_append_new(items, render(row));
    http_reply_json(r, 200, json_pack("{s:o}", "items", items));
}

bool body_check(struct http_request *r, const struct jfield *fields, size_t n,
                bool required)
{
    json_t *body = http_req_json(r);
    size_t len;
    http_req_body(r, &len);
    if (!body) {
        if (len > 0) {
            http_reply_problem(r, 415, "unsupported-media-type", NULL,
                               "the body must be application/json");
            return false;
        }
        if (!required)
            return true;
        http_reply_problem(r, 400, "validation", NULL,
                           "a JSON object body is required");
        return false;
    }
    struct jerr e = { 0 };
    if (json_check(body, fields, n, &e) < 0) {
        bool unknown = startswith(e.detail, "unknown field");
        http_reply_problem(r, 400, unknown ? "unknown-field" : "validation",
                           e.field && *e.field ? e.field : NULL, "%s",
                           e.detail);
        jerr_clear(&e);
        return false;
    }
    return true;
}

bool page_parse(struct http_request *r, struct page *p)
{
    const char *l = http_req_query(r, "limit"), *cur = http_req_query(r, "cursor");
    p->limit = 100;
    p->after_time = -1;
    p->after_id[0] = '\0';
    if (l && parse_int64(l, 1, 500, &p->limit) < 0) {
        http_reply_problem(r, 400, "validation", "limit",
                           "limit must be an integer from 1 to 500");
        return false;
    }
    if (cur) {
        const char *dot = strchr(cur, '.');
        _cleanup_free_ char *t = dot ? xstrndup(cur, (size_t)(dot - cur)) : NULL;
        if (!dot || parse_int64(t, 0, INT64_MAX, &p->after_time) < 0 ||
            !uuid_is_valid(dot + 1)) {
            http_reply_problem(r, 400, "validation", "cursor",
                               "cursor is not one this server gave out");
            return false;
        }
        memcpy(p->after_id, dot + 1, UUID_STR_LEN + 1);
    }
    return true;
}

/* The answer's text up to the end of items, then next_cursor. */
static void page_end(struct http_request *r, struct jsonw *w, const char *cursor)
{
    jsonw_arr_end(w);
    jsonw_key(w, "next_cursor");
    jsonw_str(w, cursor);
    jsonw_obj_end(w);
    http_reply_jsonw(r, 200, w);
}

static void page_begin(struct jsonw *w)
{
    jsonw_obj_begin(w);
    jsonw_key(w, "items");
    jsonw_arr_begin(w);
}

void page_reply(struct http_request *r, const struct page *p, json_t *rows,
                const char *time_col, json_t *(*render)(json_t *row))
{
    struct jsonw w = JSONW_INIT;
    size_t n = json_array_size(rows);
    page_begin(&w);
    for (size_t i = 0; i < n && (int64_t)i < p->limit; i++) {
        json_auto_t *o = render(json_array_get(rows, i));
        jsonw_json(&w, o);
    }
    _cleanup_free_ char *cursor = NULL;
    if ((int64_t)n > p->limit) {
        json_t *last = json_array_get(rows, (size_t)p->limit - 1);
        cursor = xasprintf("%lld.%s", (long long)json_int(last, time_col, 0),
                           json_str(last, "id"));
    }
    json_decref(rows);
    page_end(r, &w, cursor);
}

static bool page_query(struct http_request *r, struct app *a, const char *sql,
                       struct page *p, json_t **ret_rows,
                       void (*fn)(struct store_row *row, void *data),
                       void *data, const char *what)
{
    struct reqctx *c = reqctx_of(r);
    if (!page_parse(r, p))
        return false;
    int e = ret_rows
                ? store_query(a->store, ret_rows, sql, "bsisi",
                              c->role == ROLE_ADMIN, c->account_id,
                              p->after_time, p->after_id, p->limit + 1)
                : store_query_each(a->store, fn, data, sql, "bsisi",
                                   c->role == ROLE_ADMIN, c->account_id,
                                   p->after_time, p->after_id, p->limit + 1);
    if (e < 0) {
        reply_store_error(r, e, what);
        return false;
    }
    return true;
}

void page_list(struct http_request *r, struct app *a, const char *sql,
               const char *time_col, json_t *(*render)(json_t *row),
               const char *what)
{
    struct page p;
    json_t *rows;
    if (page_query(r, a, sql, &p, &rows, NULL, NULL, what))
        page_reply(r, &p, rows, time_col, render);
}

/* page_list_write's walk: the first limit rows written, the cursor taken
 * from the last of them, the extra one only says there are more. */
struct page_walk {
    struct jsonw w;
    const struct page *p;
    const char *time_col;
    void (*write)(struct jsonw *w, struct store_row *row);
    int64_t n;
    char *cursor;
    int64_t last_time;
    char *last_id;
};

static void page_walk_row(struct store_row *row, void *data)
{
    struct page_walk *pw = data;
    if (pw->n++ == pw->p->limit) {
        pw->cursor = xasprintf("%lld.%s", (long long)pw->last_time,
                               pw->last_id ? pw->last_id : "");
        return;
    }
    if (pw->n > pw->p->limit)
        return;
    jsonw_obj_begin(&pw->w);
    pw->write(&pw->w, row);
    jsonw_obj_end(&pw->w);
    if (pw->n == pw->p->limit) {
        pw->last_time = store_row_int(row, pw->time_col, 0);
        const char *id = store_row_str(row, "id");
        pw->last_id = id ? xstrdup(id) : NULL;
    }
}

void page_list_write(struct http_request *r, struct app *a, const char *sql,
                     const char *time_col,
                     void (*write)(struct jsonw *w, struct store_row *row),
                     const char *what)
{
    struct page p;
    struct page_walk pw = { JSONW_INIT, &p, time_col, write, 0, NULL, 0, NULL };
    page_begin(&pw.w);
    if (page_query(r, a, sql, &p, NULL, page_walk_row, &pw, what))
        page_end(r, &pw.w, pw.cursor);
    buf_free(&pw.w.b);
    free(pw.cursor);
    free(pw.last_id);
}

void reply_store_error(struct http_request *r, int err, const char *what)
{
    switch (err) {
    case -EEXIST:
        http_reply_problem(r, 409, "conflict", "name", "%s already exists",
                           what);
        break;
    case -ENOENT:
        http_reply_problem(r, 404, "not-found", NULL, "no such %s", what);
        break;
    case -EINVAL:
        http_reply_problem(r, 409, "constraint", NULL,
                           "the %s conflicts with the stored state", what);
        break;
    case -ENOSPC:
        http_reply_problem(r, 507, "store-full", NULL,
                           "the controller's store is out of space; nothing "
                           "was changed, reads still work");
        break;
    case -EAGAIN:
        http_reply_header(r, "Retry-After", "1");
        http_reply_problem(r, 503, "store-busy", NULL,
                           "the request kept losing to concurrent ones in "
                           "the store; nothing was changed, retry");
        break;
    case -EBUSY:
        http_reply_header(r, "Retry-After", "1");
        http_reply_problem(r, 503, "store-busy", NULL,
                           "the store is busy; nothing was changed, retry");
        break;
    default:
        http_reply_header(r, "Retry-After", "2");
        http_reply_problem(r, 503, "store-unavailable", NULL,
                           "the store cannot be reached; nothing was changed, "
                           "retry");
        break;
    }
}

void app_nodes_wake(struct app *a, const char *node_id)
{
    /* The wall clock, for timing a change's way to the agent. */
    log_debug("node %s: desired state changed, polls woken at %" PRId64
              " (unix us)", node_id ? node_id : "*", now_us());
    desired_cache_invalidate(node_id);
    if (a->http)
        http_server_wake(a->http, node_id);
}

void app_all_nodes_changed(struct app *a)
{
    store_exec(a->store, "UPDATE nodes SET revision = revision + 1, whole_rev "
               "= revision + 1 WHERE removed_at IS NULL", "");
    scheduler_fleet_changed(); /* a node joined, was approved or left */
    /* Inside a request the polls are woken once it commits: woken now,
     * they would only find the revision they have and park again. */
    if (request_tx_open)
        wake_all_after_commit = true;
    else
        app_nodes_wake(a, NULL);
    store_notify_node(a->store, "*");
}

/* app_node_changed() past the node's revision. */
static void node_wake(struct app *a, const char *node_id)
{
    if (request_tx_open)
        buf_append(&wake_after_commit, node_id, strlen(node_id) + 1);
    else
        app_nodes_wake(a, node_id);
    store_notify_node(a->store, node_id);
}

/* The VM's part changes with the next revision of the node it is on now
 * (whichever node's revision its caller moves next). Written before that
 * bump: outside a transaction a build may come between the two, and a
 * mark the revision has not reached yet only reads the VM once more,
 * where one written after the bump could be missed by that build. */
static void vm_part_changed(struct app *a, const char *vm_id)
{
    store_exec(a->store, "UPDATE vms SET desired_rev = (SELECT n.revision + "
               "1 FROM nodes n WHERE n.id = vms.node_id) WHERE id = $1", "s",
               vm_id);
}

void app_node_changed(struct app *a, const char *node_id)
{
    if (!node_id)
        return;
    store_exec(a->store, "UPDATE nodes SET revision = revision + 1, whole_rev "
               "= revision + 1 WHERE id = $1", "s", node_id);
    node_wake(a, node_id);
}

void app_vm_changed(struct app *a, const char *node_id, const char *vm_id)
{
    if (!node_id)
        return;
    if (!vm_id) {
        app_node_changed(a, node_id);
        return;
    }
    vm_part_changed(a, vm_id);
    app_node_members_changed(a, node_id);
}

void app_node_members_changed(struct app *a, const char *node_id)
{
    if (!node_id)
        return;
    store_exec(a->store, "UPDATE nodes SET revision = revision + 1 WHERE id = "
               "$1", "s", node_id);
    node_wake(a, node_id);
}

void app_nodes_changed_vms(struct app *a, json_t *changes)
{
    const char *id;
    json_t *v;
    if (json_object_size(changes) == 0)
        return;
    if (!streq(store_backend_name(a->store), "sqlite")) {
        json_object_foreach(changes, id, v) {
            if (!json_is_array(v)) {
                app_node_changed(a, id);
                continue;
            }
            size_t i;
            json_t *vm;
            json_array_foreach(v, i, vm)
                vm_part_changed(a, json_string_value(vm));
            app_node_members_changed(a, id);
        }
        return;
    }
    _cleanup_free_ char *text = json_dumps_compact(changes);
    store_exec(a->store, "UPDATE vms SET desired_rev = (SELECT n.revision + "
               "1 FROM nodes n WHERE n.id = vms.node_id) WHERE id IN (SELECT "
               "v.value FROM json_each($1) j, json_each(j.value) v WHERE "
               "j.type = 'array')", "s", text);
    /* A node given null: anything may have changed. */
    store_exec(a->store, "UPDATE nodes SET revision = revision + 1, whole_rev "
               "= CASE WHEN id IN (SELECT key FROM json_each($1) WHERE type "
               "= 'null') THEN revision + 1 ELSE whole_rev END WHERE id IN "
               "(SELECT key FROM json_each($1))", "s", text);
    json_object_foreach(changes, id, v)
        node_wake(a, id);
}

void app_nodes_changed(struct app *a, json_t *ids)
{
    size_t i;
    json_t *v;
    json_auto_t *changes = json_object();
    json_array_foreach(ids, i, v)
        if (json_is_string(v))
            json_object_set_new(changes, json_string_value(v), json_null());
    app_nodes_changed_vms(a, changes);
}
