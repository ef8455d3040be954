/* Liveness and readiness, CA distribution and Prometheus metrics. */
#include "common/buf.h"
#include "common/jsonutil.h"
#include "common/promtext.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/bsched.h"
#include "controller/handlers.h"
#include "controller/probe.h"
#include "controller/relay.h"

#include <errno.h>

/* Liveness: the process serves; the store is not asked. */
HANDLER(h_healthz)
{
    http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

/* Readiness: the store answers and has every migration of this build. */
HANDLER(h_readyz)
{
    struct app *a = app;
    unsigned version = 0;
    int e = store_ready(a->store, &version);
    if (e == -ESTALE) {
        http_reply_problem(r, 503, "unavailable", NULL,
                           "the database is at schema version %u: migrations "
                           "pending", version);
        return;
    }
    if (e < 0) {
        http_reply_problem(r, 503, "unavailable", NULL,
                           "the %s database cannot be reached",
                           store_backend_name(a->store));
        return;
    }
    http_reply_json(r, 200, json_pack("{s:s, s:I}", "status", "ready",
                                      "schema_version", (json_int_t)version));
}

HANDLER(h_ca)
{
    struct app *a = app;
    http_reply_text(r, 200, "application/x-pem-file", xstrdup(a->ca_pem),
                    strlen(a->ca_pem));
}

/* One gauge series per label value: every value of `known`
 * (NULL-terminated) even at 0, so a series reads 0 rather than vanishing,
 * then any other value the query (columns k, n) returns. */
static void gauge_by(struct app *a, struct buf *out, const char *metric,
                     const char *help, const char *label,
                     const char *const *known, const char *sql)
{
    json_auto_t *rows = NULL;
    size_t i;
    json_t *row;

    buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", metric, help, metric);
    if (store_query(a->store, &rows, sql, "") < 0)
        return;
    for (const char *const *k = known; *k; k++) {
        json_t *hit = NULL;
        json_array_foreach(rows, i, row)
            if (streq(json_str(row, "k"), *k))
                hit = row;
        buf_printf(out, "%s{%s=\"%s\"} %lld\n", metric, label, *k,
                   (long long)(hit ? json_int(hit, "n", 0) : 0));
    }
    json_array_foreach(rows, i, row) {
        bool listed = false;
        for (const char *const *k = known; *k; k++)
            listed = listed || streq(json_str(row, "k"), *k);
        if (!listed)
            buf_printf(out, "%s{%s=\"%s\"} %lld\n", metric, label,
                       json_str(row, "k"), (long long)json_int(row, "n", 0));
    }
}

/* One series per node of each family below: the node's capacity the
 * scheduler places into, what its provider keeps back, what placed VMs
 * hold (in the units of the name), and usage it claimed but was capped. */
static const struct {
    const char *name, *type, *col, *help;
    int64_t scale;
} node_families[] = {
    { "fog_node_capacity_vcpus", "gauge", "vcpus",
      "vCPUs the node offers to placement (after its provider's reservation "
      "and any approved cap).", 1 },
    { "fog_node_reserved_vcpus", "gauge", "reserved_vcpus",
      "vCPUs the provider keeps for itself (--reserve-vcpus).", 1 },
    { "fog_node_allocated_vcpus", "gauge", "vm_vcpus",
      "vCPUs of the VMs placed on the node.", 1 },
    { "fog_node_capacity_memory_bytes", "gauge", "memory_mib",
      "Memory the node offers to placement.", 1 << 20 },
    { "fog_node_reserved_memory_bytes", "gauge", "reserved_memory_mib",
      "Memory the provider keeps for itself (--reserve-memory-mib).", 1 << 20 },
    { "fog_node_allocated_memory_bytes", "gauge", "vm_memory_mib",
      "Memory of the VMs placed on the node.", 1 << 20 },
    { "fog_node_capacity_disk_bytes", "gauge", "disk_gib",
      "Disk the node offers to placement.", 1 << 30 },
    { "fog_node_reserved_disk_bytes", "gauge", "reserved_disk_gib",
      "Disk the provider keeps for itself (--reserve-disk-gib).", 1 << 30 },
    { "fog_node_allocated_disk_bytes", "gauge", "vm_disk_gib",
      "Disk of the VMs placed on the node.", 1 << 30 },
    { "fog_node_last_seen_timestamp_seconds", "gauge", "last_seen",
      "When the node's agent last spoke to the controller (0: never).", 1 },
    { "fog_node_capped_usage_seconds_total", "counter", "capped_s",
      "Usage seconds the node claimed that were not billed (capped).", 1 },
};

/* `{node="NAME",node_id="ID"` of row (no closing brace). */
static void node_labels(struct buf *out, json_t *row)
{
    buf_puts(out, "{node=\"");
    prom_label_value(out, json_str(row, "name"));
    buf_puts(out, "\",node_id=\"");
    prom_label_value(out, json_str(row, "id"));
    buf_puts(out, "\"");
}

/* Per-node capacity and use: one query over every node not removed (a
 * removed node's series vanish), VMs summed in one grouped subquery. */
static void node_series(struct app *a, struct buf *out)
{
    json_auto_t *rows = NULL;
    size_t i;
    json_t *row;
    int e = store_query(
        a->store, &rows,
        "SELECT n.id, n.name, n.vcpus, n.memory_mib, n.disk_gib, "
        "n.reserved_vcpus, n.reserved_memory_mib, n.reserved_disk_gib, "
        "COALESCE(n.last_seen, 0) AS last_seen, n.capped_s, "
        "COALESCE(u.vcpus, 0) AS vm_vcpus, COALESCE(u.mem, 0) AS "
        "vm_memory_mib, COALESCE(u.disk, 0) AS vm_disk_gib FROM nodes n LEFT "
        "JOIN (SELECT node_id, SUM(vcpus) AS vcpus, SUM(memory_mib) AS mem, "
        "SUM(disk_gib) AS disk FROM vms WHERE node_id IS NOT NULL AND "
        "deleted_at IS NULL GROUP BY node_id) u ON u.node_id = n.id WHERE "
        "n.removed_at IS NULL ORDER BY n.id", "");
    for (size_t f = 0; f < ARRAY_SIZE(node_families); f++) {
        prom_family(out, node_families[f].name, node_families[f].type,
                    node_families[f].help);
        if (e < 0)
            continue;
        json_array_foreach(rows, i, row) {
            buf_puts(out, node_families[f].name);
            node_labels(out, row);
            buf_printf(out, "} %lld\n",
                       (long long)(json_int(row, node_families[f].col, 0) *
                                   node_families[f].scale));
        }
    }

    /* Each GPU in exactly one state: held by a VM, unusable (or gone),
     * offered and free, or usable but withdrawn by its provider. */
    json_auto_t *gpus = NULL;
    prom_family(out, "fog_node_gpus", "gauge",
                "GPUs of each node by state (offered: free for placement).");
    if (store_query(a->store, &gpus,
                    "SELECT n.id, n.name, CASE WHEN g.vm_id IS NOT NULL THEN "
                    "'assigned' WHEN g.usable = 0 OR g.present = 0 THEN "
                    "'unusable' WHEN g.offered = 1 THEN 'offered' ELSE "
                    "'withdrawn' END AS k, COUNT(*) AS n FROM gpus g JOIN "
                    "nodes n ON n.id = g.node_id WHERE n.removed_at IS NULL "
                    "GROUP BY n.id, n.name, k ORDER BY n.id, k", "") < 0)
        return;
    json_array_foreach(gpus, i, row) {
        buf_puts(out, "fog_node_gpus");
        node_labels(out, row);
        buf_printf(out, ",state=\"%s\"} %lld\n", json_str(row, "k"),
                   (long long)json_int(row, "n", 0));
    }
}

/* The accrual loop's passes (this process's) and the ledger's volume:
 * per transaction kind, the sum of what accounts received (each
 * transaction sums to zero, so the positive side is what moved). */
static void billing_series(struct app *a, struct buf *out)
{
    struct accrual_stats st;
    accrual_stats_get(&st);
    int64_t now = mono_ms(), since = st.passes ? st.last_end_ms : st.started_ms;
    prom_family(out, "fog_accrual_interval_seconds", "gauge",
                "Seconds between accrual passes (--accrual-interval).");
    buf_printf(out, "fog_accrual_interval_seconds %lld\n",
               (long long)billing_config()->accrual_s);
    prom_family(out, "fog_accrual_passes_total", "counter",
                "Accrual passes this process completed.");
    buf_printf(out, "fog_accrual_passes_total %lld\n", (long long)st.passes);
    prom_family(out, "fog_accrual_lag_seconds", "gauge",
                "Seconds since the last completed accrual pass (since the "
                "accrual loop started, before the first).");
    buf_printf(out, "fog_accrual_lag_seconds %.3f\n",
               since ? (double)(now - since) / 1000.0 : 0.0);
    prom_family(out, "fog_accrual_pass_duration_seconds", "gauge",
                "How long the last completed accrual pass took.");
    buf_printf(out, "fog_accrual_pass_duration_seconds %.3f\n",
               (double)st.last_duration_ms / 1000.0);
    prom_family(out, "fog_accrual_batch_max_seconds", "gauge",
                "The longest store transaction of the last accrual pass "
                "(what a write request may have waited for it).");
    buf_printf(out, "fog_accrual_batch_max_seconds %.3f\n",
               (double)st.last_batch_max_ms / 1000.0);
    prom_family(out, "fog_accrual_batches_redone_total", "counter",
                "Accrual batches that could not be posted whole and were "
                "posted VM by VM.");
    buf_printf(out, "fog_accrual_batches_redone_total %lld\n",
               (long long)st.batches_redone);

    static const char *const kinds[] = { "accrual", "credit", "reversal",
                                         NULL };
    json_auto_t *rows = NULL;
    prom_family(out, "fog_ledger_tokens", "gauge",
                "Tokens moved by ledger transactions of each kind (sum of "
                "the positive entries).");
    if (store_query(a->store, &rows,
                    "SELECT t.kind AS k, COALESCE(SUM(e.amount), 0) AS n FROM "
                    "ledger_entry e JOIN ledger_tx t ON t.id = e.tx_id WHERE "
                    "e.amount > 0 GROUP BY t.kind", "") < 0)
        return;
    for (const char *const *k = kinds; *k; k++) {
        size_t i;
        json_t *row;
        int64_t nano = 0;
        json_array_foreach(rows, i, row)
            if (streq(json_str(row, "k"), *k))
                nano = json_int(row, "n", 0);
        buf_printf(out, "fog_ledger_tokens{kind=\"%s\"} %lld.%09lld\n", *k,
                   (long long)(nano / 1000000000),
                   (long long)(nano % 1000000000));
    }
}

HANDLER(h_metrics)
{
    struct app *a = app;
    struct buf out = BUF_INIT;
    _cleanup_free_ char *nodes_sql = xasprintf(
        "SELECT CASE WHEN last_seen IS NULL THEN 'new' WHEN last_seen >= %lld "
        "THEN 'online' ELSE 'unreachable' END AS k, COUNT(*) AS n FROM nodes "
        "WHERE removed_at IS NULL GROUP BY k",
        (long long)(now_s() - 3 * a->cfg.heartbeat_s));

    /* First: read before any store call of this request can change it. */
    buf_printf(&out, "# HELP fog_leader 1 while this replica leads "
                     "(scheduler, health, accrual).\n# TYPE fog_leader "
                     "gauge\nfog_leader %d\n", store_leading(a->store));
    http_server_metrics(a->http, &out);
    prom_family(&out, "fog_store_retries_total", "counter",
                "Requests run again by this process after their store "
                "transaction lost a conflict with another replica's.");
    buf_printf(&out, "fog_store_retries_total %llu\n",
               (unsigned long long)app_store_retries());
    if (a->probe) {
        uint64_t answered = 0, dropped = 0;
        probe_server_counts(a->probe, &answered, &dropped);
        prom_family(&out, "fog_probe_requests_total", "counter",
                    "UDP address probes by result: answered, or dropped "
                    "(malformed, or over their source's rate).");
        buf_printf(&out, "fog_probe_requests_total{result=\"answered\"} %llu\n"
                         "fog_probe_requests_total{result=\"dropped\"} %llu\n",
                   (unsigned long long)answered, (unsigned long long)dropped);
    }
    if (a->relay) {
        uint64_t fwd = 0, drop = 0, nodes = 0, tcp = 0;
        relay_server_counts(a->relay, &fwd, &drop, &nodes, &tcp);
        prom_family(&out, "fog_relay_packets_total", "counter",
                    "Frames the WireGuard relay received, by result: "
                    "forwarded to a registered peer, or dropped (malformed, "
                    "unregistered, not on a relayed path, over the rate).");
        buf_printf(&out, "fog_relay_packets_total{result=\"forwarded\"} %llu\n"
                         "fog_relay_packets_total{result=\"dropped\"} %llu\n",
                   (unsigned long long)fwd, (unsigned long long)drop);
        prom_family(&out, "fog_relay_nodes", "gauge",
                    "Nodes registered with the WireGuard relay.");
        buf_printf(&out, "fog_relay_nodes %llu\n", (unsigned long long)nodes);
        prom_family(&out, "fog_relay_tcp_frames_total", "counter",
                    "Frames the WireGuard relay received or sent over nodes' "
                    "HTTPS connections upgraded to fog-relay (where UDP is "
                    "blocked).");
        buf_printf(&out, "fog_relay_tcp_frames_total %llu\n",
                   (unsigned long long)tcp);
    }
    uint64_t orphan_blobs, orphan_uploads;
    bsched_orphans_removed(&orphan_blobs, &orphan_uploads);
    prom_family(&out, "fog_backup_orphans_removed_total", "counter",
                "Files the backup store sweep removed: committed blobs no "
                "backup owns (blob), and uploads of missing, failed or "
                "abandoned backups (upload).");
    buf_printf(&out, "fog_backup_orphans_removed_total{kind=\"blob\"} %llu\n"
                     "fog_backup_orphans_removed_total{kind=\"upload\"} "
                     "%llu\n", (unsigned long long)orphan_blobs,
               (unsigned long long)orphan_uploads);
    static const char *const vm_states[] = {
        "pending", "scheduled", "creating", "running", "stopped", "crashed",
        "unknown", "error", "deleting", "lost", "paused", NULL };
    static const char *const node_states[] = { "new", "online",
                                               "unreachable", NULL };
    gauge_by(a, &out, "fog_vms", "VMs by state.", "state", vm_states,
             "SELECT state AS k, COUNT(*) AS n FROM vms WHERE deleted_at IS "
             "NULL GROUP BY state");
    gauge_by(a, &out, "fog_nodes", "Nodes by state.", "state", node_states,
             nodes_sql);
    static const char *const check_states[] = { "unknown", "healthy",
                                                "unhealthy", NULL };
    gauge_by(a, &out, "fog_health_checks", "VM health checks by the state "
             "their nodes report.", "state", check_states,
             "SELECT h.state AS k, COUNT(*) AS n FROM health_checks h JOIN "
             "vms v ON v.id = h.vm_id WHERE v.deleted_at IS NULL GROUP BY "
             "h.state");
    buf_printf(&out, "# HELP fog_agent_longpolls Parked agent long polls.\n"
                     "# TYPE fog_agent_longpolls gauge\nfog_agent_longpolls %zu\n",
               http_server_parked(a->http));
    node_series(a, &out);
    billing_series(a, &out);
    size_t len = out.len;
    http_reply_text(r, 200, "text/plain; version=0.0.4", buf_steal(&out), len);
}
