/* Reputation: the pure score, and the bookkeeping that feeds it from the
 * store (see reputation.h). Observations are kept in milli-units so the
 * store holds integers on sqlite and PostgreSQL alike. */
#include "controller/reputation.h"

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/store.h"

#include <errno.h>
#include <math.h>

/* What one event of each kind weighs against the score: 1 / (1 + sum). */
#define REP_W_FAULT 0.15
#define REP_W_CAPPED_S (1.0 / 300)   /* five capped minutes = one unit */
#define REP_W_BENCH 0.5
#define REP_W_EVICTION 0.3

double rep_decay(double v, int64_t dt, int64_t half_life)
{
    if (half_life <= 0 || dt <= 0)
        return v;
    return v * exp2(-(double)dt / (double)half_life);
}

double rep_score(const struct rep_obs *o)
{
    double seen = o->up_s + o->down_s;
    if (!(seen > 0))
        return -1;
    double avail = o->up_s / seen;
    double penalty = REP_W_FAULT * o->faults + REP_W_CAPPED_S * o->capped_s +
                     REP_W_BENCH * o->bench_wrong +
                     REP_W_EVICTION * o->evictions;
    double s = avail / (1 + (penalty > 0 ? penalty : 0));
    if (o->bench_ratio >= 0)
        s *= 0.5 + 0.5 * (o->bench_ratio < 1 ? o->bench_ratio : 1);
    return s < 0 ? 0 : s > 1 ? 1 : s;
}

static const char *const fault_col[REP_FAULT_MAX] = {
    [REP_FAULT_VM] = "faults",
    [REP_FAULT_BENCH] = "bench_wrong",
    [REP_FAULT_EVICTION] = "evictions",
};

int reputation_fault(struct app *a, const char *node_id, enum rep_fault kind)
{
    if (kind < 0 || kind >= REP_FAULT_MAX)
        return -EINVAL;
    const char *c = fault_col[kind];
    /* Evictions are also counted whole, for nodeinfo and offers. */
    bool ev = kind == REP_FAULT_EVICTION;
    _cleanup_free_ char *sql = xasprintf(
        "INSERT INTO node_trust (node_id, %s, %supdated_at) VALUES ($1, 1000, "
        "%s$2) ON CONFLICT (node_id) DO UPDATE SET %s = node_trust.%s + 1000%s",
        c, ev ? "evictions_total, " : "", ev ? "1, " : "", c, c,
        ev ? ", evictions_total = node_trust.evictions_total + 1" : "");
    int e = store_exec(a->store, sql, "si", node_id, now_s());
    return e < 0 ? e : 0;
}

int reputation_status_seen(struct app *a, const char *node_id,
                           const char *vm_id, const char *state,
                           bool by_guest)
{
    if (by_guest || !(streq(state, "stopped") || streq(state, "creating")))
        return 0;
    int64_t n = store_query_int(
        a->store, -1,
        "SELECT COUNT(*) FROM vms WHERE id = $1 AND node_id = $2 AND "
        "deleted_at IS NULL AND desired_state = 'running' AND state IN "
        "('running', 'unknown') AND running_gen = start_gen", "ss", vm_id,
        node_id);
    if (n <= 0)
        return n < 0 ? -EIO : 0;
    int e = reputation_fault(a, node_id, REP_FAULT_EVICTION);
    if (e < 0)
        return e;
    log_warn("node %s reported VM %s %s while it should run: eviction "
             "counted", node_id, vm_id, state);
    return 1;
}

/* One node's row (nodes joined with node_trust) brought to `now`. */
static int tick_one(struct app *a, json_t *row, int64_t now, int64_t cutoff)
{
    int64_t half = a->cfg.reputation_half_life_s;
    bool fresh = !json_is_integer(json_object_get(row, "updated_at"));
    int64_t last = fresh ? now : json_int(row, "updated_at", now);
    int64_t dt = now - last;
    /* A hub that was away saw nothing: never more than three heartbeats
     * are judged at once. */
    if (dt > 3 * a->cfg.heartbeat_s)
        dt = 3 * a->cfg.heartbeat_s;
    if (dt < 0)
        dt = 0;
    bool up = json_int(row, "last_seen", 0) >= cutoff;
    double k = rep_decay(1, dt, half);
    struct rep_obs o = {
        .up_s = json_int(row, "up_ms", 0) / 1000.0 * k + (up ? (double)dt : 0),
        .down_s = json_int(row, "down_ms", 0) / 1000.0 * k +
                  (up ? 0 : (double)dt),
        .faults = json_int(row, "faults", 0) / 1000.0 * k,
        .capped_s = json_int(row, "capped_ms", 0) / 1000.0 * k,
        .bench_wrong = json_int(row, "bench_wrong", 0) / 1000.0 * k,
        .evictions = json_int(row, "evictions", 0) / 1000.0 * k,
        .bench_ratio = json_is_integer(json_object_get(row, "bench_pct"))
                           ? (double)json_int(row, "bench_pct", 0) / 100.0
                           : -1,
    };
    /* Capped usage grows only; what grew since the last tick counts. */
    int64_t capped = json_int(row, "capped_s", 0);
    int64_t seen = json_int(row, "capped_seen", 0);
    if (!fresh && capped > seen)
        o.capped_s += (double)(capped - seen);
    double s = rep_score(&o);
    json_int_t score = s < 0 ? -1 : (json_int_t)llround(s * 100);
    int e = store_exec(
        a->store,
        "INSERT INTO node_trust (node_id, up_ms, down_ms, faults, capped_ms, "
        "capped_seen, bench_wrong, evictions, score, updated_at) VALUES ($1, "
        "$2, $3, $4, $5, $6, $7, $8, CASE WHEN $9 < 0 THEN NULL ELSE $9 END, "
        "$10) ON CONFLICT (node_id) DO UPDATE SET up_ms = $2, down_ms = $3, "
        "faults = $4, capped_ms = $5, capped_seen = $6, bench_wrong = $7, "
        "evictions = $8, score = CASE WHEN $9 < 0 THEN NULL ELSE $9 END, "
        "updated_at = $10",
        "siiiiiiiii", json_str(row, "id"), (int64_t)llround(o.up_s * 1000),
        (int64_t)llround(o.down_s * 1000), (int64_t)llround(o.faults * 1000),
        (int64_t)llround(o.capped_s * 1000), capped,
        (int64_t)llround(o.bench_wrong * 1000),
        (int64_t)llround(o.evictions * 1000), (int64_t)score, now);
    return e < 0 ? e : 0;
}

int reputation_tick(struct app *a)
{
    json_auto_t *rows = NULL;
    int64_t now = now_s();
    int e = store_query(
        a->store, &rows,
        "SELECT n.id, n.last_seen, n.capped_s, t.up_ms, t.down_ms, t.faults, "
        "t.capped_ms, t.capped_seen, t.bench_wrong, t.evictions, t.bench_pct, "
        "t.updated_at FROM nodes n LEFT JOIN node_trust t ON t.node_id = n.id "
        "WHERE n.approved = 1 AND n.removed_at IS NULL", "");
    if (e < 0)
        return e;
    if ((e = store_tx_begin(a->store)) < 0)
        return e;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        if ((e = tick_one(a, row, now, now - 3 * a->cfg.heartbeat_s)) < 0)
            break;
    if (e < 0) {
        store_tx_rollback(a->store);
        return e;
    }
    return store_tx_commit(a->store);
}
