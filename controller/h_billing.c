/* Billing routes: node offers, admin credits, usage, tenant invoices,
 * provider payouts and the ledger. Every statement is computed from ledger
 * entries and checked to reconcile before it is answered. */
#include "billing/money.h"
#include "billing/period.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/handlers.h"
#include "controller/scheduler.h"

#include <errno.h>

/* key: "12.5" (decimal tokens) and key_nano: 12500000000. */
static void put_amount(json_t *o, const char *key, int64_t nano)
{
    _cleanup_free_ char *t = money_format(nano, NULL);
    _cleanup_free_ char *k = xasprintf("%s_nano", key);
    json_object_set_new(o, key, json_string(t));
    json_object_set_new(o, k, json_integer((json_int_t)nano));
}

static void put_time(json_t *o, const char *key, int64_t t)
{
    char s[21];
    time_format_rfc3339(t, s);
    json_object_set_new(o, key, json_string(s));
}

/* ---- offers ---- */

static const char *const offer_keys[] = { "vcpu_hour", "mem_gib_hour",
                                          "disk_gib_month", "gpu_hour",
                                          "port_hour" };

static void offer_get(const struct rating_offer *o, int64_t v[5])
{
    v[0] = o->vcpu_hour, v[1] = o->mem_gib_hour, v[2] = o->disk_gib_month;
    v[3] = o->gpu_hour, v[4] = o->port_hour;
}

static json_t *offer_render(struct app *a, const char *node_id)
{
    json_auto_t *row = NULL;
    const struct billing_cfg *cfg = billing_config();
    int64_t v[5];
    json_t *o = json_pack("{s:s, s:s}", "node_id", node_id, "currency",
                          cfg->symbol);
    bool def = store_query_one(a->store, &row, "SELECT * FROM node_offers "
                               "WHERE node_id = $1", "s", node_id) < 0;
    if (def) {
        offer_get(&cfg->default_offer, v);
    } else {
        for (size_t i = 0; i < ARRAY_SIZE(offer_keys); i++)
            v[i] = json_int(row, offer_keys[i], 0);
    }
    for (size_t i = 0; i < ARRAY_SIZE(offer_keys); i++) {
        _cleanup_free_ char *t = money_format(v[i], NULL);
        json_object_set_new(o, offer_keys[i], json_string(t));
    }
    json_t *models = def ? NULL : json_loads(json_str(row, "gpu_models"), 0,
                                             NULL);
    json_object_set_new(o, "gpu_models", json_is_object(models) ? models
                                                                : json_object());
    if (models && !json_is_object(models))
        json_decref(models);
    json_object_set_new(o, "default", json_boolean(def));
    if (!def)
        put_time(o, "updated_at", json_int(row, "updated_at", 0));
    return o;
}

HANDLER(h_offer_get)
{
    struct app *a = app;
    json_auto_t *node = NULL;
    int e = node_find(a, r, &node);
    if (e < 0) {
        reply_store_error(r, e, "node");
        return;
    }
    http_reply_json(r, 200, offer_render(a, json_str(node, "id")));
}

HANDLER(h_offer_put)
{
    struct app *a = app;
    static const struct jfield fields[] = {
        { "vcpu_hour", JF_STRING, false, 1, 32, NULL },
        { "mem_gib_hour", JF_STRING, false, 1, 32, NULL },
        { "disk_gib_month", JF_STRING, false, 1, 32, NULL },
        { "gpu_hour", JF_STRING, false, 1, 32, NULL },
        { "port_hour", JF_STRING, false, 1, 32, NULL },
        { "gpu_models", JF_OBJECT, false, 0, 0, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), true))
        return;
    json_t *b = http_req_json(r);
    json_auto_t *node = NULL;
    int e = node_find(a, r, &node);
    if (e < 0) {
        reply_store_error(r, e, "node");
        return;
    }
    /* Prices not given keep the default offer's. */
    int64_t v[5];
    offer_get(&billing_config()->default_offer, v);
    for (size_t i = 0; i < ARRAY_SIZE(offer_keys); i++) {
        const char *t = json_str(b, offer_keys[i]);
        if (t && (money_parse(t, &v[i]) < 0 || v[i] < 0)) {
            http_reply_problem(r, 400, "validation", offer_keys[i],
                               "%s must be a non-negative decimal amount of "
                               "tokens with at most 9 decimals, like \"0.01\"",
                               offer_keys[i]);
            return;
        }
    }
    json_t *gm = json_object_get(b, "gpu_models");
    json_auto_t *models = json_object();
    const char *model;
    json_t *mv;
    json_object_foreach(gm, model, mv) {
        int64_t p;
        if (json_object_size(gm) > 64 || strlen(model) == 0 ||
            strlen(model) > 128 || !json_is_string(mv) ||
            money_parse(json_string_value(mv), &p) < 0 || p < 0) {
            http_reply_problem(r, 400, "validation", "gpu_models",
                               "gpu_models maps up to 64 model names to "
                               "decimal prices per GPU-hour");
            return;
        }
        _cleanup_free_ char *t = money_format(p, NULL);
        json_object_set_new(models, model, json_string(t));
    }
    _cleanup_free_ char *mtext = json_dumps_compact(models);
    e = store_exec(a->store,
                   "INSERT INTO node_offers (node_id, vcpu_hour, mem_gib_hour, "
                   "disk_gib_month, gpu_hour, port_hour, gpu_models, "
                   "updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON "
                   "CONFLICT (node_id) DO UPDATE SET vcpu_hour = "
                   "excluded.vcpu_hour, mem_gib_hour = excluded.mem_gib_hour, "
                   "disk_gib_month = excluded.disk_gib_month, gpu_hour = "
                   "excluded.gpu_hour, port_hour = excluded.port_hour, "
                   "gpu_models = excluded.gpu_models, updated_at = "
                   "excluded.updated_at", "siiiiisi", json_str(node, "id"),
                   v[0], v[1], v[2], v[3], v[4], mtext, now_s());
    if (e < 0) {
        reply_store_error(r, e, "offer");
        return;
    }
    scheduler_fleet_changed();
    http_reply_json(r, 200, offer_render(a, json_str(node, "id")));
}

/* ---- credits and reversals ---- */

HANDLER(h_account_credit)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    static const struct jfield fields[] = {
        { "amount", JF_STRING, true, 1, 32, NULL },
        { "memo", JF_STRING, false, 0, 200, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), true))
        return;
    json_t *b = http_req_json(r);
    int64_t amount;
    if (money_parse(json_str(b, "amount"), &amount) < 0 || amount <= 0) {
        http_reply_problem(r, 400, "validation", "amount",
                           "amount must be a positive decimal amount of "
                           "tokens with at most 9 decimals, like \"100\"");
        return;
    }
    const char *ref = http_req_param(r, 0);
    json_auto_t *acct = NULL;
    if (!ref || (!uuid_is_valid(ref) && !name_is_valid(ref)) ||
        store_query_one(a->store, &acct, "SELECT id FROM accounts WHERE id = "
                        "$1 OR name = $1", "s", ref) < 0) {
        http_reply_problem(r, 404, "not-found", NULL, "no such account");
        return;
    }
    const char *id = json_str(acct, "id");
    reqctx_set_target(r, id);
    struct ledger_tx *tx = ledger_tx_new("credit", json_str(b, "memo"));
    ledger_tx_move(tx, LEDGER_HUB_DEPOSITS, id, amount);
    struct ledger_post_info info = { .actor = c->actor };
    char tx_id[UUID_STR_LEN + 1];
    int64_t now = now_s();
    int e = store_tx_begin(a->store);
    if (e == 0) {
        e = billing_post(a->store, tx, &info, now, tx_id);
        if (e < 0)
            store_tx_rollback(a->store);
        else
            e = store_tx_commit(a->store);
    }
    ledger_tx_free(tx);
    if (e < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    _cleanup_free_ char *t = money_format(amount, billing_config()->symbol);
    reqctx_set_detail(r, "credited %s", t);
    json_t *o = json_pack("{s:s, s:s, s:s}", "tx_id", tx_id, "account_id", id,
                          "memo", json_str(b, "memo") ? json_str(b, "memo") : "");
    put_amount(o, "amount", amount);
    json_t *bal = billing_balance_json(a->store, id);
    if (!bal) {
        json_decref(o);
        reply_store_error(r, -EIO, "balance");
        return;
    }
    json_object_update(o, bal);
    json_decref(bal);
    http_reply_json(r, 201, o);
}

HANDLER(h_ledger_reverse)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    static const struct jfield fields[] = {
        { "memo", JF_STRING, false, 0, 200, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), false))
        return;
    const char *id = http_req_param(r, 0);
    json_auto_t *orig = NULL, *entries = NULL;
    if (!uuid_is_valid(id) ||
        store_query_one(a->store, &orig, "SELECT kind, vm_id FROM ledger_tx "
                        "WHERE id = $1", "s", id) < 0 ||
        store_query(a->store, &entries, "SELECT account, amount FROM "
                    "ledger_entry WHERE tx_id = $1", "s", id) < 0) {
        http_reply_problem(r, 404, "not-found", NULL, "no such transaction");
        return;
    }
    reqctx_set_target(r, id);
    struct ledger_tx *tx = ledger_tx_new(json_str(orig, "kind"), NULL);
    size_t i;
    json_t *en;
    json_array_foreach(entries, i, en)
        ledger_tx_add(tx, json_str(en, "account"), json_int(en, "amount", 0));
    json_t *b = http_req_json(r);
    struct ledger_tx *rev = ledger_tx_reverse(tx, id, json_str(b, "memo"));
    ledger_tx_free(tx);
    if (!rev) {
        http_reply_problem(r, 500, "internal", NULL, "transaction %s does not "
                           "balance", id);
        return;
    }
    struct ledger_post_info info = { .actor = c->actor,
                                     .vm_id = json_str(orig, "vm_id") };
    char rev_id[UUID_STR_LEN + 1];
    int e = store_tx_begin(a->store);
    if (e == 0) {
        e = billing_post(a->store, rev, &info, now_s(), rev_id);
        if (e < 0)
            store_tx_rollback(a->store);
        else
            e = store_tx_commit(a->store);
    }
    ledger_tx_free(rev);
    if (e == -EEXIST) {
        http_reply_problem(r, 409, "conflict", NULL,
                           "transaction %s was already reversed", id);
        return;
    }
    if (e < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    http_reply_json(r, 201, json_pack("{s:s, s:s}", "tx_id", rev_id,
                                      "reverses", id));
}

/* ---- statements ---- */

/* Which account a statement is about: the caller's own, or for an admin
 * ?account=ID|NAME. False after answering. */
static bool statement_account(struct app *a, struct http_request *r,
                              char ret_id[UUID_STR_LEN + 1])
{
    struct reqctx *c = reqctx_of(r);
    const char *ref = http_req_query(r, "account");
    if (!ref || c->role != ROLE_ADMIN) {
        memcpy(ret_id, c->account_id, UUID_STR_LEN + 1);
        return true;
    }
    json_auto_t *row = NULL;
    if ((!uuid_is_valid(ref) && !name_is_valid(ref)) ||
        store_query_one(a->store, &row, "SELECT id FROM accounts WHERE id = "
                        "$1 OR name = $1", "s", ref) < 0) {
        http_reply_problem(r, 404, "not-found", "account", "no such account");
        return false;
    }
    memcpy(ret_id, json_str(row, "id"), UUID_STR_LEN + 1);
    return true;
}

static bool statement_period(struct http_request *r, int64_t *start,
                             int64_t *end, char period[8])
{
    const char *p = http_req_query(r, "period");
    if (!p) {
        period_of(now_s(), period);
        p = period;
    }
    if (period_parse(p, start, end) < 0) {
        http_reply_problem(r, 400, "validation", "period",
                           "period must be a month like 2026-11");
        return false;
    }
    memcpy(period, p, 8);
    return true;
}

static int64_t sum_entries(struct store *s, const char *account, int64_t from,
                           int64_t to, const char *kind)
{
    return store_query_int(s, 0,
                           "SELECT COALESCE(SUM(e.amount), 0) FROM "
                           "ledger_entry e JOIN ledger_tx t ON t.id = e.tx_id "
                           "WHERE e.account = $1 AND e.time_s >= $2 AND "
                           "e.time_s < $3 AND ($4 = '' OR t.kind = $4)",
                           "siis", account, from, to, kind ? kind : "");
}

HANDLER(h_usage_list)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const char *vm = http_req_query(r, "vm");
    const char *from_s = http_req_query(r, "from"), *to_s = http_req_query(r, "to");
    int64_t from = 0, to = INT64_MAX;
    if ((from_s && time_parse_rfc3339(from_s, &from) < 0) ||
        (to_s && time_parse_rfc3339(to_s, &to) < 0) || to < from) {
        http_reply_problem(r, 400, "validation", from_s ? "from" : "to",
                           "from and to must be RFC 3339 UTC times like "
                           "2026-11-01T00:00:00Z, from before to");
        return;
    }
    if (vm && !uuid_is_valid(vm) && !name_is_valid(vm)) {
        http_reply_problem(r, 400, "validation", "vm", "vm must be a VM name "
                           "or id");
        return;
    }
    json_auto_t *rows = NULL;
    int e = store_query(
        a->store, &rows,
        "SELECT v.id, v.name, v.account_id, v.node_id, u.billable_s, "
        "u.claimed_s, u.capped_s, u.samples, u.duplicates, "
        "(SELECT COALESCE(SUM(t.seconds), 0) FROM ledger_tx t WHERE t.vm_id "
        "= v.id AND t.kind = 'accrual' AND t.time_s >= $1 AND t.time_s < $2) "
        "AS seconds, "
        "(SELECT COALESCE(-SUM(e.amount), 0) FROM ledger_tx t JOIN "
        "ledger_entry e ON e.tx_id = t.id AND e.account = v.account_id WHERE "
        "t.vm_id = v.id AND t.kind = 'accrual' AND t.time_s >= $1 AND "
        "t.time_s < $2) AS charged "
        "FROM vms v JOIN vm_usage u ON u.vm_id = v.id WHERE "
        "($3 = 'admin' OR ($3 = 'tenant' AND v.account_id = $4) OR ($3 = "
        "'provider' AND EXISTS (SELECT 1 FROM deals d WHERE d.vm_id = v.id "
        "AND d.provider_id = $4))) AND ($5 = '' OR v.id = $5 OR (v.name = $5 "
        "AND v.deleted_at IS NULL)) ORDER BY v.name, v.id LIMIT 10000",
        "iisss", from, to, role_name(c->role), c->account_id, vm ? vm : "");
    if (e < 0) {
        reply_store_error(r, e, "usage");
        return;
    }
    json_t *items = json_array();
    int64_t tot_s = 0, tot_c = 0;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        int64_t bill = json_int(row, "billable_s", 0);
        int64_t claim = json_int(row, "claimed_s", 0);
        json_t *o = json_pack("{s:s, s:s, s:O, s:I, s:I, s:I, s:I, s:I, s:I}",
                              "vm_id", json_str(row, "id"), "vm_name",
                              json_str(row, "name"), "node_id",
                              json_object_get(row, "node_id"), "seconds",
                              (json_int_t)json_int(row, "seconds", 0),
                              "billable_seconds_total", (json_int_t)bill,
                              "claimed_seconds_total", (json_int_t)claim,
                              "capped_seconds_total",
                              (json_int_t)json_int(row, "capped_s", 0),
                              "samples",
                              (json_int_t)json_int(row, "samples", 0),
                              "duplicate_samples",
                              (json_int_t)json_int(row, "duplicates", 0));
        put_amount(o, "charged", json_int(row, "charged", 0));
        tot_s += json_int(row, "seconds", 0);
        tot_c += json_int(row, "charged", 0);
        json_array_append_new(items, o);
    }
    json_t *out = json_pack("{s:o, s:I, s:s}", "items", items, "seconds",
                            (json_int_t)tot_s, "currency",
                            billing_config()->symbol);
    put_amount(out, "charged", tot_c);
    http_reply_json(r, 200, out);
}

HANDLER(h_invoice_get)
{
    struct app *a = app;
    char acct[UUID_STR_LEN + 1], period[8];
    int64_t start, end;
    if (!statement_period(r, &start, &end, period) ||
        !statement_account(a, r, acct))
        return;
    json_auto_t *lines = NULL, *credits = NULL;
    int e = store_query(
        a->store, &lines,
        "SELECT t.vm_id, MAX(v.name) AS vm_name, SUM(t.seconds) AS seconds, "
        "-SUM(e.amount) AS amount FROM ledger_entry e JOIN ledger_tx t ON t.id "
        "= e.tx_id LEFT JOIN vms v ON v.id = t.vm_id WHERE e.account = $1 AND "
        "e.time_s >= $2 AND e.time_s < $3 AND t.kind = 'accrual' GROUP BY "
        "t.vm_id ORDER BY MAX(v.name), t.vm_id", "sii", acct, start, end);
    if (e == 0)
        e = store_query(a->store, &credits,
                        "SELECT t.id, t.time_s, t.memo, e.amount FROM "
                        "ledger_entry e JOIN ledger_tx t ON t.id = e.tx_id "
                        "WHERE e.account = $1 AND e.time_s >= $2 AND e.time_s "
                        "< $3 AND t.kind = 'credit' ORDER BY t.time_s, t.id",
                        "sii", acct, start, end);
    if (e < 0) {
        reply_store_error(r, e, "invoice");
        return;
    }
    int64_t opening = sum_entries(a->store, acct, INT64_MIN, start, NULL);
    int64_t closing = sum_entries(a->store, acct, INT64_MIN, end, NULL);
    int64_t credited = sum_entries(a->store, acct, start, end, "credit");
    int64_t adjusted = sum_entries(a->store, acct, start, end, "reversal");
    int64_t charged = 0, seconds = 0;
    json_t *items = json_array(), *cr = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(lines, i, row) {
        json_t *o = json_pack("{s:O, s:O, s:I}", "vm_id",
                              json_object_get(row, "vm_id"), "vm_name",
                              json_object_get(row, "vm_name"), "seconds",
                              (json_int_t)json_int(row, "seconds", 0));
        put_amount(o, "amount", json_int(row, "amount", 0));
        charged += json_int(row, "amount", 0);
        seconds += json_int(row, "seconds", 0);
        json_array_append_new(items, o);
    }
    json_array_foreach(credits, i, row) {
        json_t *o = json_pack("{s:s, s:s}", "tx_id", json_str(row, "id"),
                              "memo", json_str(row, "memo"));
        put_time(o, "time", json_int(row, "time_s", 0));
        put_amount(o, "amount", json_int(row, "amount", 0));
        json_array_append_new(cr, o);
    }
    /* The statement must add up to the ledger to the nano. */
    if (opening + credited + adjusted - charged != closing) {
        log_error("billing: invoice %s for %s does not reconcile", period, acct);
        json_decref(items);
        json_decref(cr);
        http_reply_problem(r, 500, "internal", NULL,
                           "the ledger does not reconcile for this period");
        return;
    }
    json_t *out = json_pack("{s:s, s:s, s:o, s:o, s:I, s:s, s:b}", "account_id",
                            acct, "period", period, "lines", items, "credits",
                            cr, "seconds", (json_int_t)seconds, "currency",
                            billing_config()->symbol, "reconciled", 1);
    put_time(out, "from", start);
    put_time(out, "to", end);
    put_amount(out, "opening_balance", opening);
    put_amount(out, "charges", charged);
    put_amount(out, "credits_total", credited);
    put_amount(out, "adjustments", adjusted);
    put_amount(out, "closing_balance", closing);
    http_reply_json(r, 200, out);
}

HANDLER(h_payout_get)
{
    struct app *a = app;
    char acct[UUID_STR_LEN + 1], period[8];
    int64_t start, end;
    if (!statement_period(r, &start, &end, period) ||
        !statement_account(a, r, acct))
        return;
    json_auto_t *lines = NULL;
    int e = store_query(
        a->store, &lines,
        "SELECT t.vm_id, d.node_id, MAX(n.name) AS node_name, "
        "SUM(CASE WHEN e.account = $1 THEN t.seconds ELSE 0 END) AS seconds, "
        "SUM(CASE WHEN e.account = $1 THEN e.amount ELSE 0 END) AS net, "
        "SUM(CASE WHEN e.account = 'hub:fees' THEN e.amount ELSE 0 END) AS fee, "
        "-SUM(CASE WHEN e.account = d.tenant_id THEN e.amount ELSE 0 END) AS "
        "gross FROM ledger_tx t JOIN deals d ON d.id = t.deal_id JOIN "
        "ledger_entry e ON e.tx_id = t.id LEFT JOIN nodes n ON n.id = "
        "d.node_id WHERE t.kind = 'accrual' AND d.provider_id = $1 AND "
        "t.time_s >= $2 AND t.time_s < $3 GROUP BY t.vm_id, d.node_id ORDER "
        "BY MAX(n.name), t.vm_id", "sii", acct, start, end);
    if (e < 0) {
        reply_store_error(r, e, "payout");
        return;
    }
    int64_t gross = 0, fee = 0, net = 0, seconds = 0;
    json_t *items = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(lines, i, row) {
        json_t *o = json_pack("{s:O, s:O, s:O, s:I}", "vm_id",
                              json_object_get(row, "vm_id"), "node_id",
                              json_object_get(row, "node_id"), "node_name",
                              json_object_get(row, "node_name"), "seconds",
                              (json_int_t)json_int(row, "seconds", 0));
        put_amount(o, "gross", json_int(row, "gross", 0));
        put_amount(o, "fee", json_int(row, "fee", 0));
        put_amount(o, "net", json_int(row, "net", 0));
        gross += json_int(row, "gross", 0);
        fee += json_int(row, "fee", 0);
        net += json_int(row, "net", 0);
        seconds += json_int(row, "seconds", 0);
        json_array_append_new(items, o);
    }
    int64_t earned = sum_entries(a->store, acct, start, end, "accrual");
    int64_t adjusted = sum_entries(a->store, acct, start, end, "reversal");
    int64_t opening = sum_entries(a->store, acct, INT64_MIN, start, NULL);
    int64_t closing = sum_entries(a->store, acct, INT64_MIN, end, NULL);
    int64_t other = closing - opening - earned - adjusted;
    if (earned != net || gross != net + fee) {
        log_error("billing: payout %s for %s does not reconcile", period, acct);
        json_decref(items);
        http_reply_problem(r, 500, "internal", NULL,
                           "the ledger does not reconcile for this period");
        return;
    }
    json_t *out = json_pack("{s:s, s:s, s:o, s:I, s:s, s:b}", "account_id",
                            acct, "period", period, "lines", items, "seconds",
                            (json_int_t)seconds, "currency",
                            billing_config()->symbol, "reconciled", 1);
    put_time(out, "from", start);
    put_time(out, "to", end);
    put_amount(out, "gross", gross);
    put_amount(out, "fees", fee);
    put_amount(out, "net", net);
    put_amount(out, "adjustments", adjusted);
    put_amount(out, "other", other);
    put_amount(out, "opening_balance", opening);
    put_amount(out, "closing_balance", closing);
    http_reply_json(r, 200, out);
}

/* ---- the ledger (admin) ---- */

static json_t *tx_render(json_t *row)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:O, s:O, s:O, s:I, s:O}", "id",
                          json_str(row, "id"), "kind", json_str(row, "kind"),
                          "memo", json_str(row, "memo"), "actor",
                          json_object_get(row, "actor"), "vm_id",
                          json_object_get(row, "vm_id"), "deal_id",
                          json_object_get(row, "deal_id"), "seconds",
                          (json_int_t)json_int(row, "seconds", 0), "reverses",
                          json_object_get(row, "reverses"));
    put_time(o, "time", json_int(row, "time_s", 0));
    json_t *entries = json_array();
    size_t i;
    json_t *en;
    json_array_foreach(json_object_get(row, "entries"), i, en) {
        json_t *x = json_pack("{s:s}", "account", json_str(en, "account"));
        put_amount(x, "amount", json_int(en, "amount", 0));
        json_array_append_new(entries, x);
    }
    json_object_set_new(o, "entries", entries);
    return o;
}

HANDLER(h_ledger_list)
{
    struct app *a = app;
    struct page p;
    const char *acct = http_req_query(r, "account");
    if (!page_parse(r, &p))
        return;
    if (acct && strlen(acct) > 64) {
        http_reply_problem(r, 400, "validation", "account", "account too long");
        return;
    }
    json_t *rows;
    int e = store_query(a->store, &rows,
                        "SELECT t.id, t.time_s, t.kind, t.memo, t.actor, "
                        "t.vm_id, t.deal_id, t.seconds, t.reverses FROM "
                        "ledger_tx t WHERE ($1 = '' OR EXISTS (SELECT 1 FROM "
                        "ledger_entry e WHERE e.tx_id = t.id AND e.account = "
                        "$1)) AND (t.time_s > $2 OR (t.time_s = $2 AND t.id > "
                        "$3)) ORDER BY t.time_s, t.id LIMIT $4", "sisi",
                        acct ? acct : "", p.after_time, p.after_id,
                        p.limit + 1);
    if (e < 0) {
        reply_store_error(r, e, "ledger");
        return;
    }
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        json_t *entries = NULL;
        if (store_query(a->store, &entries, "SELECT account, amount FROM "
                        "ledger_entry WHERE tx_id = $1 ORDER BY amount, "
                        "account", "s", json_str(row, "id")) == 0)
            json_object_set_new(row, "entries", entries);
    }
    page_reply(r, &p, rows, "time_s", tx_render);
}

HANDLER(h_account_balance)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const char *ref = http_req_param(r, 0);
    json_auto_t *row = NULL;
    if (!ref || (!uuid_is_valid(ref) && !name_is_valid(ref)) ||
        store_query_one(a->store, &row, "SELECT id FROM accounts WHERE (id = "
                        "$1 OR name = $1) AND ($2 = 1 OR id = $3)", "sbs", ref,
                        c->role == ROLE_ADMIN, c->account_id) < 0) {
        http_reply_problem(r, 404, "not-found", NULL, "no such account");
        return;
    }
    json_t *o = billing_balance_json(a->store, json_str(row, "id"));
    if (!o) {
        reply_store_error(r, -EIO, "balance");
        return;
    }
    json_object_set_new(o, "account_id", json_string(json_str(row, "id")));
    http_reply_json(r, 200, o);
}
