/* Outages and SLA credits (see outage.h). */
#include "controller/outage.h"

#include "billing/money.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/ids.h"
#include "controller/accrual.h"
#include "controller/store.h"

#include <errno.h>

static int64_t max3(int64_t x, int64_t y, int64_t z)
{
    int64_t m = x > y ? x : y;
    return m > z ? m : z;
}

/* Open an outage for each VM that should run on a silent node and has
 * none open. The unique index on open outages makes a second replica's
 * insert fail, never double one. */
static int outages_open(struct app *a, int64_t cutoff, int64_t since)
{
    json_auto_t *rows = NULL;
    int e = store_query(
        a->store, &rows,
        "SELECT v.id, v.node_id, v.deal_id, n.last_seen, (SELECT "
        "MAX(o.end_s) FROM vm_outages o WHERE o.vm_id = v.id) AS prev_end "
        "FROM vms v JOIN nodes n ON n.id = v.node_id WHERE v.node_id IN "
        "(SELECT id FROM nodes WHERE last_seen < $1 AND removed_at IS NULL) "
        "AND v.deleted_at IS NULL AND v.desired_state = 'running' AND "
        "v.deal_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM vm_outages o "
        "WHERE o.vm_id = v.id AND o.end_s IS NULL)", "i", cutoff);
    if (e < 0)
        return e;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        char id[UUID_STR_LEN + 1];
        uuid_generate_str(id);
        int64_t start = max3(json_int(row, "last_seen", 0), since,
                             json_int(row, "prev_end", 0));
        e = store_exec(a->store, "INSERT INTO vm_outages (id, vm_id, "
                       "node_id, deal_id, start_s) VALUES ($1, $2, $3, $4, "
                       "$5)", "ssssi", id, json_str(row, "id"),
                       json_str(row, "node_id"), json_str(row, "deal_id"),
                       start);
        if (e < 0 && e != -EEXIST)
            return e;
    }
    return 0;
}

/* Close outage `o` at `now` and credit it, in one transaction: the close
 * is conditional on the outage still being open, so it happens once. */
static int outage_close(struct app *a, json_t *o, int64_t now)
{
    int64_t start = json_int(o, "start_s", now);
    int64_t seconds = now > start ? now - start : 0;
    int64_t bps = __atomic_load_n(&a->cfg.sla_credit_bps, __ATOMIC_RELAXED);
    int64_t credit = 0;
    char tx[UUID_STR_LEN + 1] = "";
    _cleanup_free_ char *memo = xasprintf(
        "SLA credit: node '%s' unreachable for %lld s while VM '%s' should "
        "have run (%lld.%02lld x its price)", json_str(o, "node_name"),
        (long long)seconds, json_str(o, "vm_name"), (long long)(bps / 10000),
        (long long)(bps % 10000 / 100));
    int e = store_tx_begin(a->store);
    if (e < 0)
        return e;
    e = store_exec(a->store, "UPDATE vm_outages SET end_s = $1, credit = 0 "
                   "WHERE id = $2 AND end_s IS NULL", "is", now,
                   json_str(o, "id"));
    if (e == 0)
        e = -EALREADY; /* another replica closed it */
    if (e > 0)
        e = billing_sla_credit(a, json_str(o, "deal_id"), json_str(o, "vm_id"),
                               seconds, bps, memo, &credit, tx);
    if (e == 0 && credit > 0)
        e = store_exec(a->store, "UPDATE vm_outages SET credit = $1, tx_id = "
                       "$2 WHERE id = $3", "iss", credit, tx,
                       json_str(o, "id"));
    if (e >= 0 && credit > 0) {
        _cleanup_free_ char *amount = money_format(credit,
                                                   billing_config()->symbol);
        _cleanup_free_ char *detail = xasprintf("%s: %s credited", memo,
                                                amount);
        e = app_event(a, json_str(o, "account_id"), LEDGER_HUB_SLA,
                      "vm.outage_credit", json_str(o, "vm_id"), 200, detail);
    }
    if (e < 0) {
        store_tx_rollback(a->store);
        return e == -EALREADY ? 0 : e;
    }
    if ((e = store_tx_commit(a->store)) < 0)
        return e;
    if (credit > 0)
        log_info("outage of VM %s on node %s: %lld s, %lld nano credited",
                 json_str(o, "vm_id"), json_str(o, "node_id"),
                 (long long)seconds, (long long)credit);
    return 1;
}

int outage_tick(struct app *a, int64_t since)
{
    int64_t now = now_s(), cutoff = now - 3 * a->cfg.heartbeat_s;
    int e = outages_open(a, cutoff, since);
    if (e < 0)
        return e;
    json_auto_t *rows = NULL;
    e = store_query(
        a->store, &rows,
        "SELECT o.id, o.vm_id, o.node_id, o.deal_id, o.start_s, v.name AS "
        "vm_name, v.account_id, n.name AS node_name FROM vm_outages o JOIN "
        "vms v ON v.id = o.vm_id JOIN nodes n ON n.id = o.node_id WHERE "
        "o.end_s IS NULL AND (n.last_seen >= $1 OR n.removed_at IS NOT NULL "
        "OR v.deleted_at IS NOT NULL OR v.desired_state <> 'running' OR "
        "v.node_id IS NULL OR v.node_id <> o.node_id)", "i", cutoff);
    if (e < 0)
        return e;
    int closed = 0;
    size_t i;
    json_t *o;
    json_array_foreach(rows, i, o) {
        if ((e = outage_close(a, o, now)) < 0) {
            log_error("outage of VM %s: not closed (%s); next pass retries",
                      json_str(o, "vm_id"), strerror(-e));
            return e;
        }
        closed += e;
    }
    return closed;
}
