/* Liveness and readiness, CA distribution and Prometheus metrics. */
#include "common/buf.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "controller/handlers.h"

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
    static const char *const vm_states[] = {
        "pending", "scheduled", "creating", "running", "stopped", "crashed",
        "unknown", "error", "deleting", "lost", NULL };
    static const char *const node_states[] = { "new", "online",
                                               "unreachable", NULL };
    gauge_by(a, &out, "fog_vms", "VMs by state.", "state", vm_states,
             "SELECT state AS k, COUNT(*) AS n FROM vms WHERE deleted_at IS "
             "NULL GROUP BY state");
    gauge_by(a, &out, "fog_nodes", "Nodes by state.", "state", node_states,
             nodes_sql);
    buf_printf(&out, "# HELP fog_agent_longpolls Parked agent long polls.\n"
                     "# TYPE fog_agent_longpolls gauge\nfog_agent_longpolls %zu\n",
               http_server_parked(a->http));
    size_t len = out.len;
    http_reply_text(r, 200, "text/plain; version=0.0.4", buf_steal(&out), len);
}
