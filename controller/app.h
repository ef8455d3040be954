/* The controller as one object: store, HTTP server, settings, and the
 * request context every handler sees (who is calling, what it touched). */
#pragma once

#include "api/agentmsg.h"

#include "api/http_server.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/jsonw.h"
#include "controller/store.h"

#include <jansson.h>

/* Who may call a route: bits in http_route.flags. */
enum {
    ALLOW_ADMIN = 1 << 0,
    ALLOW_TENANT = 1 << 1,
    ALLOW_PROVIDER = 1 << 2,
    ALLOW_NODE = 1 << 3,
    ALLOW_PUBLIC = 1 << 4, /* no credential needed */
    ALLOW_USERS = ALLOW_ADMIN | ALLOW_TENANT | ALLOW_PROVIDER,
};

enum role { ROLE_NONE, ROLE_ADMIN, ROLE_TENANT, ROLE_PROVIDER, ROLE_NODE,
            ROLE_MAX };

struct app_settings {
    char *data_dir;
    char *database;
    char *listen;
    bool plain_http;
    int64_t probe_port;      /* UDP address probes (probe.c); 0: off */
    int64_t relay_port;      /* UDP WireGuard relay (relay.c); 0: off */
    int64_t heartbeat_s;     /* agents report this often */
    int64_t longpoll_s;      /* longest hold of GET /v1/agent/desired */
    int64_t idempotency_ttl_s; /* how long a key's answer is kept */
    int64_t event_retention_s; /* how long events are kept */
    int64_t max_body;        /* bytes */
    int64_t threads;
    int64_t write_threads;
    int64_t write_nice;
    int64_t conn_slice_us;
    int64_t max_vcpus, max_memory_mib, max_disk_gib;
    int64_t max_image_gib;
    int64_t max_backup_gib;  /* bytes one sealed backup may reach, GiB */
    char *backup_store;      /* NULL: DATA/backups; else an S3 bucket URL */
    char *s3_region, *s3_key_file, *s3_ca;
    char *mesh_cidr;
    char *templates_dir;
    bool inspect;       /* libguestfs inspection of imported images */
    char *import_allow;  /* CIDRs URL imports may reach though internal */
    /* billing */
    int64_t accrual_s;       /* seconds between accrual runs */
    int64_t accrual_batch;   /* VMs accrued per store transaction */
    int64_t fee_bps;         /* platform fee in basis points */
    int64_t grace_s;         /* balance must cover this much running */
    char *token_symbol;
    char *default_offer;     /* "vcpu=0.01,mem=0.005,disk=0.1,gpu=0.5,port=0.001" */
    int64_t sla_credit_bps;  /* outage credit, basis points of its price */
    int64_t evacuate_after_s; /* restore on-host-failure VMs of a node
                                 unreachable this long (restore.c) */
    int64_t backup_abandon_s; /* a backup with no new bytes this long is
                                 failed, its upload removed (bsched.c) */
    int64_t backup_full_every; /* a full backup at least every this many
                                  of a VM, incremental ones between */
    /* placement (scheduler.c) */
    char *default_max_price; /* tokens per hour of a VM without a cap */
    int64_t weight_price, weight_spread, weight_reputation;
    int64_t weight_benchmark;
    int64_t reputation_half_life_s; /* observations halve this often */
    /* benchmark challenges (benchmark.c) */
    int64_t bench_every_s;   /* one per node this often; 0: none (-1 as
                              * parsed: a day with a probe guest, else 0) */
    int64_t bench_memory_mib, bench_rounds, bench_lanes;
    int64_t bench_timeout_s; /* to answer one */
    int64_t bench_ref;       /* steps/s per lane that back a whole vCPU */
    char *bench_guest;       /* the probe guest nodes fetch; "": none */
    /* tenant limits: network pools (netalloc.c) and quotas (quota.c) */
    char *tenant_pools;      /* "10.0.0.0/9,172.16.0.0/12" */
    int64_t quota_networks, quota_vms, quota_ports, quota_images,
        quota_ssh_keys, quota_api_keys;
    /* request admission (guard.c): connections and requests per second */
    int64_t per_ip_connections;
    int64_t tls_handshake_timeout_s;
    int64_t rate_ip, burst_ip, rate_agent_ip, burst_agent_ip;
    int64_t rate_key, burst_key, rate_node, burst_node;
    /* logging */
    char *log_level;         /* error, warn, info, debug */
    char *journal;           /* auto, on, off */
    char *journal_socket;    /* the journal's native socket */
    /* the web ingress edge (ingress.c): HAProxy's file, its reload */
    char *ingress_config;    /* "": no edge */
    char *ingress_reload;    /* shell command run after each write */
    char *ingress_https_bind, *ingress_http_bind; /* HAProxy bind words */
    /* the public DNS zone (pubzone.c): its domain, dnsmasq's hosts file */
    char *public_zone;        /* "": no zone */
    char *public_zone_file;   /* the hosts file dnsmasq reads */
    char *public_zone_reload; /* shell command run after each write */
};

struct app {
    struct app_settings cfg;
    struct store *store;
    struct http_server *http;
    char *ca_pem;
    char ca_sha256[65];
    struct guard *guard;     /* rate limit tables (guard.c) */
    struct probe_server *probe; /* UDP address probes (probe.c); NULL: off */
    struct relay_server *relay; /* WireGuard relay (relay.c); NULL: off */
    struct bstore *backups;  /* the backup store (bstore.h) */
    /* The probe guest the hub serves (benchmark.c); has_probe false:
     * none (nodes use their own). */
    bool has_probe;
    struct am_probe_file probe_kernel, probe_initrd;
};

/* Per-request context, attached as the request's user data. */
struct reqctx {
    enum role role;
    char account_id[UUID_STR_LEN + 1];
    char actor[64];        /* key id or node id */
    char *target;          /* object the call touched, for the event log */
    char *event_detail;    /* extra words for the event log */
    bool tx_open;          /* the call's store transaction is open */
    bool tx_ran;           /* this attempt opened that transaction */
    char *idem_key;        /* Idempotency-Key reserved in that transaction */
    bool reply_secret;     /* the reply carries a secret: never stored */
    bool no_event;         /* changed nothing (a dry run): no event */
    unsigned retries;      /* runs again after a lost store conflict */
    int contract;          /* an agent call's contract version (1..) */
    void *stream;          /* state of a streamed upload */
    void (*stream_free)(void *);
};

struct reqctx *reqctx_of(struct http_request *r);
void reqctx_set_target(struct http_request *r, const char *id);
void reqctx_set_detail(struct http_request *r, const char *fmt, ...)
    _printf_(2, 3);
const char *role_name(enum role role);

/* The route table (every route the controller serves) and its size. */
extern const struct http_route app_routes[];
extern const size_t app_n_routes;

/* Hooks for the HTTP core: authentication at header time (for a GET or
 * HEAD, once it runs, inside its read snapshot); the call's transaction
 * and idempotency reservation (or replay) once the body is read; the
 * event, the idempotency record and the commit after it; a parked call's
 * snapshot let go. */
bool app_before(struct http_request *r, const struct http_route *route,
                void *app);
bool app_begin(struct http_request *r, const struct http_route *route,
               void *app);
void app_after(struct http_request *r, const struct http_route *route,
               void *app);
void app_park(struct http_request *r, const struct http_route *route,
              void *app);

/* A mutating request whose transaction lost a serialization conflict
 * with another replica's runs again up to APP_STORE_RETRIES times, the
 * n-th after a random wait between half and all of APP_RETRY_BASE_MS
 * << (n - 1), at most APP_RETRY_MAX_MS, before the client is answered
 * 503 (about a second of waits in all). Calls that all touch one table
 * under SERIALIZABLE commit one after the other, so the last of a burst
 * may lose once for each call ahead of it. */
#define APP_STORE_RETRIES 12
#define APP_RETRY_BASE_MS 8
#define APP_RETRY_MAX_MS 128
/* How many times this process ran a request again so (since start). */
uint64_t app_store_retries(void);

/* The hub's store of VM backups (a->backups, the directory DATA/backups
 * opened at start). 0 and *ret (borrowed), or -ENOENT without one. */
struct bstore;
int app_backup_store(struct app *a, struct bstore **ret);

/* Record an event outside the request path (scheduler, health).
 * 0 or -errno. */
int app_event(struct app *a, const char *account_id, const char *actor,
               const char *action, const char *target, int status,
               const char *detail);

/* Delete events and idempotency keys past their retention, in small
 * batches. Run by the leading replica. */
void app_prune(struct app *a);

/* ---- helpers for handlers ---- */
/* Check the JSON body against fields; answers 400 and returns false. */
bool body_check(struct http_request *r, const struct jfield *fields, size_t n,
                bool required);
/* Pagination: parse ?limit and ?cursor; false after answering 400. */
struct page {
    int64_t limit;
    int64_t after_time;
    char after_id[UUID_STR_LEN + 1];
};
bool page_parse(struct http_request *r, struct page *p);
/* Answer {"items": rows[0..limit), "next_cursor"} from limit+1 rows that
 * carry created_at and id (or time and id). Steals rows. */
void page_reply(struct http_request *r, const struct page *p, json_t *rows,
                const char *time_col, json_t *(*render)(json_t *row));

/* The tail of a keyset-paginated query over TIME and ID columns: $3 is
 * the cursor's time, $4 its id, $5 the limit + 1 (page_list binds them).
 * The first term lets an index on (..., time, id) seek to the cursor. */
#define PAGE_KEYSET(time, id)                                                  \
    time " >= $3 AND (" time " > $3 OR (" time " = $3 AND " id " > $4)) "     \
    "ORDER BY " time ", " id " LIMIT $5"
/* Answer one page of a list: `sql` sees $1 = caller is an admin, $2 = the
 * caller's account id, and ends in PAGE_KEYSET. `what` names the objects
 * in errors. */
void page_list(struct http_request *r, struct app *a, const char *sql,
               const char *time_col, json_t *(*render)(json_t *row),
               const char *what);
/* page_list with each row written straight into the answer's text by
 * `write` (the object's members, see jsonw.h), no tree per row. */
void page_list_write(struct http_request *r, struct app *a, const char *sql,
                     const char *time_col,
                     void (*write)(struct jsonw *w, struct store_row *row),
                     const char *what);

/* Answer a store error as problem+json. */
void reply_store_error(struct http_request *r, int err, const char *what);

/* Bump a node's desired-state revision and wake its parked long polls,
 * with the cached document they are answered from invalidated first.
 * Inside a request's transaction both wait for its commit (and never
 * happen when it rolls back); elsewhere call it after the change has
 * committed: a poll woken earlier would read the old state. */
void app_node_changed(struct app *a, const char *node_id);
/* Each says what its change touched, as the store keeps it for builds
 * that read only what changed (schema 047): app_node_changed() anything;
 * app_vm_changed() where the change touched nothing of the node's
 * document but VM vm_id's part (its row and the rows that hang off it:
 * NICs, snapshots, backups, GPUs, health checks) and the members outside
 * the VM list (networks, ports, peers, mesh), which every build reads
 * whole. VM vm_id may have come onto the node or left it. */
void app_vm_changed(struct app *a, const char *node_id, const char *vm_id);
/* app_node_changed() where the change touched only those members. */
void app_node_members_changed(struct app *a, const char *node_id);
/* app_node_changed() for each node in ids (a JSON array of node ids), their
 * revisions moved by one statement on sqlite. */
void app_nodes_changed(struct app *a, json_t *ids);
/* As app_nodes_changed(), for `changes`: {node id: [ids of the VMs whose
 * parts changed, as app_vm_changed(); none: app_node_members_changed()]
 * or null (anything: app_node_changed())}, each node's revision moved by
 * one. */
void app_nodes_changed_vms(struct app *a, json_t *changes);
/* A store transaction outside a request (the leader's passes, routes
 * that keep their own): as inside a request, the node wakes and blob
 * drops it asks for wait for its commit and never happen when it rolls
 * back. Nested store transactions inside it are fine. 0 or -errno, as
 * store_tx_begin() / store_tx_commit(). */
int app_tx_begin(struct app *a);
int app_tx_commit(struct app *a);
void app_tx_rollback(struct app *a);
/* The same for a store transaction begun without app_tx_begin(): from
 * app_hold_begin() the wakes and effects asked for wait for
 * app_hold_end(), which runs them when `committed`, else drops them.
 * app_hold_begin() returns false inside a request or app_tx_begin()
 * (whose end runs them): pass its answer to app_hold_end() as `held`. */
bool app_hold_begin(void);
void app_hold_end(struct app *a, bool held, bool committed);
/* Remove backup blob `id` from the backup store once the transaction that
 * deletes (or fails) its row has committed; at once outside one. A failed
 * removal leaves an orphan for the sweep (bsched.h), never a row without
 * its blob. Test seam: FOG_TEST_FAULT naming a file that holds
 * "bstore-remove" makes the removal fail ("request-commit" makes a
 * request's commit fail as a lost store would, "bstore-slow" makes each
 * backup chunk's write take 3 s, "backup-put-slow" each chunk wait 0.5 s
 * after its row was read, "commit-slow" each store commit 1 s). */
void app_backup_blob_drop(struct app *a, const char *id);
/* Remove the backup blob (or upload) now, logging a failure other than
 * its absence, which the orphan sweep then retries. */
void app_backup_blob_remove(struct app *a, const char *id);
/* An effect outside the store (a download started, files collected) that
 * the current request's or app_tx_begin()'s changes call for: run with
 * `arg` (copied; may be NULL) once those changes have committed, never
 * when they roll back, so a request run again after a lost conflict does
 * it once; at once outside a transaction. */
void app_after_commit(struct app *a, void (*fn)(struct app *, const char *),
                      const char *arg);
/* Every node's desired state changed (mesh membership); as above. */
void app_all_nodes_changed(struct app *a);
/* Node node_id's desired state (every node's when NULL) changed in a
 * committed transaction, here or on another replica: invalidate its
 * cached document, then wake its parked polls. */
void app_nodes_wake(struct app *a, const char *node_id);
