/* Billing in the controller: what agents report becomes usage state, usage
 * becomes balanced ledger postings at the locked deal price, and balances
 * limit what tenants may run. Every posting shares one store transaction
 * with the cursor it advances. */
#include "controller/accrual.h"

#include "billing/money.h"
#include "billing/usage.h"
#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/store_backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

static struct billing_cfg cfg = {
    .accrual_s = 60,
    .fee_bps = 500,
    .grace_s = 3600,
    .settle_s = 86400,
    .max_gap_s = 15,
    .symbol = MONEY_DEFAULT_SYMBOL,
    .default_offer = {
        .vcpu_hour = 10000000,      /* 0.01 per vCPU-hour */
        .mem_gib_hour = 5000000,    /* 0.005 per GiB-hour */
        .disk_gib_month = 100000000, /* 0.1 per GiB-month */
        .gpu_hour = 500000000,      /* 0.5 per GPU-hour */
        .port_hour = 1000000,       /* 0.001 per port-hour */
    },
};

const struct billing_cfg *billing_config(void) { return &cfg; }

int billing_offer_parse(const char *text, struct rating_offer *offer)
{
    struct rating_offer o = *offer;
    _cleanup_free_ char *copy = xstrdup(text ? text : "");
    char *save = NULL;
    for (char *kv = strtok_r(copy, ",", &save); kv;
         kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        int64_t v;
        if (!eq)
            return -EINVAL;
        *eq = '\0';
        if (money_parse(eq + 1, &v) < 0 || v < 0)
            return -EINVAL;
        if (streq(kv, "vcpu"))
            o.vcpu_hour = v;
        else if (streq(kv, "mem"))
            o.mem_gib_hour = v;
        else if (streq(kv, "disk"))
            o.disk_gib_month = v;
        else if (streq(kv, "gpu"))
            o.gpu_hour = v;
        else if (streq(kv, "port"))
            o.port_hour = v;
        else
            return -EINVAL;
    }
    *offer = o;
    return 0;
}

int billing_configure(int64_t accrual_s, int64_t fee_bps, int64_t grace_s,
                      int64_t heartbeat_s, const char *symbol,
                      const char *default_offer)
{
    struct billing_cfg c = cfg;
    if (accrual_s < 1 || fee_bps < 0 || fee_bps > RATING_BPS_MAX ||
        grace_s < 0 || heartbeat_s < 1) {
        fprintf(stderr, "billing: accrual interval, fee (0..10000 bps), "
                        "grace or heartbeat out of range\n");
        return -EINVAL;
    }
    c.accrual_s = accrual_s;
    c.fee_bps = fee_bps;
    c.grace_s = grace_s;
    c.max_gap_s = 3 * heartbeat_s;
    if (symbol) {
        size_t n = strlen(symbol);
        if (n == 0 || n >= sizeof(c.symbol)) {
            fprintf(stderr, "billing: token symbol '%s' must be 1 to %zu "
                            "characters\n", symbol, sizeof(c.symbol) - 1);
            return -EINVAL;
        }
        memcpy(c.symbol, symbol, n + 1);
    }
    if (default_offer && billing_offer_parse(default_offer, &c.default_offer) < 0) {
        fprintf(stderr, "billing: invalid default offer '%s' (want "
                        "vcpu=0.01,mem=0.005,disk=0.1,gpu=0.5,port=0.001)\n",
                default_offer);
        return -EINVAL;
    }
    cfg = c;
    return 0;
}

/* ---- ledger posting ---- */

int billing_post(struct store *s, const struct ledger_tx *tx,
                 const struct ledger_post_info *info, int64_t now,
                 char ret_id[UUID_STR_LEN + 1])
{
    struct ledger_batch *b = ledger_batch_new();
    char id[UUID_STR_LEN + 1];
    int e = ledger_batch_add(b, tx, info, now, id);
    if (e == 0)
        e = ledger_batch_post(s, b);
    ledger_batch_free(b);
    if (e == 0 && ret_id)
        memcpy(ret_id, id, sizeof(id));
    return e;
}

int billing_balance(struct store *s, const char *account, int64_t *ret)
{
    json_auto_t *row = NULL;
    int e = store_query_one(s, &row, "SELECT balance FROM ledger_balances "
                            "WHERE account = $1", "s", account);
    if (e < 0 && e != -ENOENT)
        return e;
    *ret = e == 0 ? json_int(row, "balance", 0) : 0;
    return 0;
}

json_t *billing_balance_json(struct store *s, const char *account)
{
    int64_t b;
    if (billing_balance(s, account, &b) < 0)
        return NULL;
    _cleanup_free_ char *text = money_format(b, NULL);
    return json_pack("{s:s, s:I, s:s}", "balance", text, "balance_nano",
                     (json_int_t)b, "currency", cfg.symbol);
}

/* ---- usage ingestion ---- */

/* A VM's usage state, the seconds of its claims already counted as capped
 * and when it was saved (all zero for a VM never reported). */
static int usage_load(struct store *s, const char *vm_id, struct usage_vm *ret,
                      int64_t *ret_capped, int64_t *ret_at)
{
    json_auto_t *row = NULL;
    int e = store_query_one(s, &row, "SELECT state, capped_s, updated_at FROM "
                                     "vm_usage WHERE vm_id = $1", "s", vm_id);
    *ret_capped = 0;
    *ret_at = 0;
    if (e == -ENOENT) {
        *ret = (struct usage_vm)USAGE_VM_INIT;
        return 0;
    }
    if (e < 0)
        return e;
    json_auto_t *j = json_loads(json_str(row, "state"), 0, NULL);
    if (usage_vm_from_json(j, ret) < 0) {
        log_error("billing: usage state of VM %s is corrupt", vm_id);
        return -EIO;
    }
    *ret_capped = json_int(row, "capped_s", 0);
    *ret_at = json_int(row, "updated_at", 0);
    return 0;
}

static int usage_save(struct store *s, const char *vm_id, const char *node_id,
                      const struct usage_vm *u, int64_t capped_s,
                      int64_t new_samples, int64_t dups, int64_t now)
{
    json_auto_t *j = usage_vm_to_json(u);
    _cleanup_free_ char *text = json_dumps_compact(j);
    return store_exec(s,
                      "INSERT INTO vm_usage (vm_id, node_id, state, billable_s, "
                      "claimed_s, capped_s, samples, duplicates, updated_at) "
                      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT "
                      "(vm_id) DO UPDATE SET node_id = excluded.node_id, "
                      "state = excluded.state, billable_s = "
                      "excluded.billable_s, claimed_s = excluded.claimed_s, "
                      "capped_s = excluded.capped_s, samples = "
                      "vm_usage.samples + excluded.samples, duplicates = "
                      "vm_usage.duplicates + excluded.duplicates, updated_at "
                      "= excluded.updated_at", "sssiiiiii", vm_id, node_id,
                      text, usage_vm_billable(u), usage_vm_claimed(u),
                      capped_s, new_samples, dups, now);
}

/* Claimed seconds that can no longer become billable at `now`: claims
 * before the point where the next running report could join the current
 * observed stretch (the last report, or now when the stretch is broken),
 * less what was billed. Only grows. */
static int64_t max_i64(int64_t x, int64_t y) { return x > y ? x : y; }
static int64_t min_i64(int64_t x, int64_t y) { return x < y ? x : y; }

static int64_t usage_final_capped(const struct usage_vm *u, int64_t now)
{
    int64_t cut = u->obs_last >= 0 && now - u->obs_last <= cfg.max_gap_s
                      ? u->obs_last : now;
    int64_t c = usage_vm_claimed(u) - usage_ivset_cover(&u->claimed, cut,
                                                        INT64_MAX) -
                usage_vm_billable(u);
    return max_i64(c, 0);
}

/* Save a VM's usage with `more` seconds newly capped, counted against the
 * node (owned by account `owner`) too. */
static int usage_commit(struct app *a, const char *node_id, const char *owner,
                        const char *vm_id, const struct usage_vm *u,
                        int64_t capped_was, int64_t more, int64_t fresh,
                        int64_t dups, int64_t now)
{
    int e = usage_save(a->store, vm_id, node_id, u, capped_was + more, fresh,
                       dups, now);
    if (e < 0 || more == 0)
        return e;
    if ((e = store_exec(a->store, "UPDATE nodes SET capped_s = capped_s + $1 "
                        "WHERE id = $2", "is", more, node_id)) < 0)
        return e;
    /* Claims run a little ahead of the controller's view between reports;
     * more than the allowed silence is a claim it never saw. */
    if (more > cfg.max_gap_s) {
        _cleanup_free_ char *d = xasprintf(
            "node %s claimed %lld s of VM %s that the controller did not "
            "observe running while its tenant wanted it (node silent, VM not "
            "reported running, stopped or deleted by its tenant, or claimed "
            "outside the VM's lifetime): capped", node_id, (long long)more,
            vm_id);
        app_event(a, owner, node_id, "billing.usage-capped", vm_id, 200, d);
        log_warn("billing: %s", d);
    }
    return 0;
}

/* Apply one VM's observation (state string or NULL) and samples. A
 * "running" report counts only while the tenant wants the VM running;
 * claims are cut to the VM's lifetime up to a little past now, and what
 * was cut or can no longer be billed is counted against the node. */
static int ingest_vm(struct app *a, const char *node_id, const char *owner,
                     const char *vm_id, const char *state,
                     const struct am_sample *samples, json_t *idx,
                     int64_t now)
{
    json_auto_t *vm = NULL;
    int e = store_query_one(a->store, &vm, "SELECT desired_state, "
                            "deleted_at, created_at FROM vms WHERE id = $1",
                            "s", vm_id);
    if (e < 0)
        return e;
    bool wanted = streq(json_str(vm, "desired_state"), "running") &&
                  json_is_null(json_object_get(vm, "deleted_at"));
    int64_t born = json_int(vm, "created_at", 0);
    int64_t latest = now + cfg.max_gap_s; /* an honest node's clock skew */
    struct usage_vm u;
    int64_t capped_was, saved_at;
    if ((e = usage_load(a->store, vm_id, &u, &capped_was, &saved_at)) < 0)
        return e;
    int64_t final_was = usage_final_capped(&u, saved_at);
    /* Observe first: a sample ending now is covered by this very report. */
    /* Paused keeps the VM's memory on the node: billed as running. */
    if ((streq(state, "running") || streq(state, "paused")) && wanted)
        usage_vm_observe(&u, now, cfg.max_gap_s);
    else if (state)
        usage_vm_observe_stop(&u);
    int64_t fresh = 0, dups = 0, cut = 0;
    size_t i;
    json_t *k;
    json_array_foreach(idx, i, k) {
        const struct am_sample *sj = &samples[json_integer_value(k)];
        int64_t start = sj->start, end = sj->end;
        struct usage_sample smp = { sj->seq,
                                    max_i64(start, born),
                                    min_i64(end, latest) };
        if (smp.end < smp.start)
            smp.end = smp.start; /* wholly outside: recorded as seen */
        if (usage_vm_sample(&u, &smp) == USAGE_NEW) {
            fresh++;
            cut += (end - start) - (smp.end - smp.start);
        } else {
            dups++;
        }
    }
    /* Fold old intervals away now and then (bounded state). */
    int64_t horizon = now - cfg.settle_s;
    if (horizon > u.settled_before + 3600)
        usage_vm_settle(&u, horizon);
    e = usage_commit(a, node_id, owner, vm_id, &u, capped_was,
                     cut + max_i64(0, usage_final_capped(&u, now) - final_was),
                     fresh, dups, now);
    usage_vm_free(&u);
    return e;
}

/* The tenant stopped or deleted the VM at `now`: its observed running
 * stretch ends here, whatever the node says later. */
int billing_vm_unwanted(struct app *a, const char *vm_id, int64_t now)
{
    json_auto_t *row = NULL;
    int e = store_query_one(a->store, &row, "SELECT u.node_id, n.account_id "
                            "FROM vm_usage u JOIN nodes n ON n.id = u.node_id "
                            "WHERE u.vm_id = $1", "s", vm_id);
    if (e == -ENOENT)
        return 0; /* never reported: nothing observed */
    struct usage_vm u;
    int64_t capped, saved_at;
    if (e < 0 || (e = usage_load(a->store, vm_id, &u, &capped, &saved_at)) < 0)
        return e;
    now = max_i64(now, saved_at);
    int64_t final_was = usage_final_capped(&u, saved_at);
    if (u.obs_last >= 0 && now > u.obs_last)
        usage_vm_observe(&u, now, cfg.max_gap_s);
    usage_vm_observe_stop(&u);
    e = usage_commit(a, json_str(row, "node_id"), json_str(row, "account_id"),
                     vm_id, &u, capped,
                     max_i64(0, usage_final_capped(&u, now) - final_was), 0, 0,
                     now);
    usage_vm_free(&u);
    return e;
}

/* Is VM `id` placed on node_id? Looked up once per post, in *mine. */
static bool vm_is_mine(struct app *a, const char *node_id, json_t *mine,
                       const char *id)
{
    json_t *known = json_object_get(mine, id);
    if (!known) {
        known = json_boolean(store_query_int(a->store, 0,
                                             "SELECT COUNT(*) FROM vms WHERE "
                                             "id = $1 AND node_id = $2", "ss",
                                             id, node_id) > 0);
        json_object_set_new(mine, id, known);
    }
    return json_is_true(known);
}

json_t *billing_samples_rejected(struct app *a, const char *node_id,
                                 const struct am_sample *samples, size_t n)
{
    json_t *out = json_array();
    json_auto_t *mine = json_object(); /* vm id -> true/false */
    for (size_t i = 0; i < n; i++) {
        const struct am_sample *v = &samples[i];
        const char *reason = v->refused;
        if (!reason && !vm_is_mine(a, node_id, mine, v->vm))
            reason = "VM not placed on this node";
        if (!reason)
            continue;
        json_t *r = json_pack("{s:I, s:s}", "index", (json_int_t)i, "reason",
                              reason);
        if (v->vm)
            json_object_set_new(r, "vm", json_string(v->vm));
        if (v->seq > 0)
            json_object_set_new(r, "seq", json_integer((json_int_t)v->seq));
        json_array_append_new(out, r);
    }
    return out;
}

int billing_ingest_status(struct app *a, const char *node_id, json_t *vms,
                          const struct am_sample *samples, size_t n,
                          size_t *ret_bad)
{
    return billing_ingest_status_at(a, node_id, vms, samples, n, now_s(),
                                    ret_bad);
}

int billing_ingest_status_at(struct app *a, const char *node_id, json_t *vms,
                             const struct am_sample *samples, size_t n,
                             int64_t now, size_t *ret_bad)
{
    json_auto_t *by_vm = json_object(); /* vm id -> [sample indexes] */
    json_auto_t *states = json_object(); /* vm id -> reported state */
    json_auto_t *mine = json_object();
    size_t i;
    json_t *v;

    for (i = 0; i < n; i++) {
        const char *id = samples[i].vm;
        int e = samples[i].refused ? -EINVAL :
                !vm_is_mine(a, node_id, mine, id) ? -EPERM : 0;
        if (e < 0) {
            if (ret_bad)
                *ret_bad = i;
            return e;
        }
        json_t *list = json_object_get(by_vm, id);
        if (!list) {
            list = json_array();
            json_object_set_new(by_vm, id, list);
        }
        json_array_append_new(list, json_integer((json_int_t)i));
    }
    json_array_foreach(vms, i, v) {
        const char *id = json_str(v, "id"), *st = json_str(v, "state");
        if (id && st) {
            json_object_set_new(states, id, json_string(st));
            if (!json_object_get(by_vm, id))
                json_object_set_new(by_vm, id, json_array());
        }
    }
    if (json_object_size(by_vm) == 0)
        return 0;
    json_auto_t *node = NULL;
    store_query_one(a->store, &node, "SELECT account_id FROM nodes WHERE id = "
                                     "$1", "s", node_id);
    const char *id;
    json_t *idx;
    json_object_foreach(by_vm, id, idx) {
        int e = ingest_vm(a, node_id, json_str(node, "account_id"), id,
                          json_str(states, id), samples, idx, now);
        if (e < 0)
            return e;
    }
    return 0;
}

/* ---- deals ---- */

static void deal_offer(json_t *d, struct rating_offer *o, struct rating_shape *sh)
{
    *o = (struct rating_offer){ json_int(d, "vcpu_hour", 0),
                                json_int(d, "mem_gib_hour", 0),
                                json_int(d, "disk_gib_month", 0),
                                json_int(d, "gpu_hour", 0),
                                json_int(d, "port_hour", 0) };
    *sh = (struct rating_shape){ json_int(d, "vcpus", 0),
                                 json_int(d, "memory_mib", 0),
                                 json_int(d, "disk_gib", 0),
                                 json_int(d, "gpus", 0),
                                 json_int(d, "ports", 0) };
}

#define DEAL_COLS                                                              \
    "d.id, d.vm_id, d.node_id, d.tenant_id, d.provider_id, d.vcpu_hour, "     \
    "d.mem_gib_hour, d.disk_gib_month, d.gpu_hour, d.port_hour, d.vcpus, "    \
    "d.memory_mib, d.disk_gib, d.gpus, d.ports, d.fee_bps, d.base_s, "        \
    "d.billed_s, d.charged, d.fees, d.created_at, d.closed_at"

/* What an accrual step needs of a deal (strings borrowed from its row,
 * or owned where the pass keeps them). */
struct deal_due {
    const char *id, *vm_id, *tenant_id, *provider_id;
    struct rating_offer o;
    struct rating_shape sh;
    int64_t fee_bps, base_s, billed_s;
};

static void deal_due_of_row(struct store_row *r, struct deal_due *ret)
{
    *ret = (struct deal_due){
        store_row_str(r, "id"), store_row_str(r, "vm_id"),
        store_row_str(r, "tenant_id"), store_row_str(r, "provider_id"),
        { store_row_int(r, "vcpu_hour", 0), store_row_int(r, "mem_gib_hour", 0),
          store_row_int(r, "disk_gib_month", 0), store_row_int(r, "gpu_hour", 0),
          store_row_int(r, "port_hour", 0) },
        { store_row_int(r, "vcpus", 0), store_row_int(r, "memory_mib", 0),
          store_row_int(r, "disk_gib", 0), store_row_int(r, "gpus", 0),
          store_row_int(r, "ports", 0) },
        store_row_int(r, "fee_bps", 0), store_row_int(r, "base_s", 0),
        store_row_int(r, "billed_s", 0) };
}

/* The deal's pending step up to the VM's billable seconds: 1 with the
 * balanced transaction in *ret_tx (caller frees), the split in *ret_sp
 * and the new cursor in *ret_upto; 0 when nothing is due (none yet, or
 * too little to cost a nano-token: the cursor stays, and the cumulative
 * charge picks the fraction up later); -errno when it cannot be rated
 * (not reported: a failed batch is posted VM by VM, deal_accrue says). */
static int deal_step(const struct deal_due *d, int64_t billable_s,
                     struct ledger_tx **ret_tx, struct rating_split *ret_sp,
                     int64_t *ret_upto)
{
    int64_t rel = billable_s - d->base_s;
    struct rating_split sp;
    if (rel <= d->billed_s)
        return 0;
    int e = rating_step(&d->o, &d->sh, d->fee_bps, d->billed_s, rel, &sp);
    if (e < 0)
        return e;
    if (sp.tenant == 0)
        return 0;
    struct ledger_tx *tx = ledger_tx_new("accrual", NULL);
    if ((e = ledger_tx_add(tx, d->tenant_id, -sp.tenant)) < 0 ||
        (e = ledger_tx_add(tx, d->provider_id, sp.provider)) < 0 ||
        (e = ledger_tx_add(tx, LEDGER_HUB_FEES, sp.fee)) < 0) {
        ledger_tx_free(tx);
        return e;
    }
    *ret_tx = tx;
    *ret_sp = sp;
    *ret_upto = rel;
    return 1;
}

/* Post the deal's pending step up to the VM's billable seconds, inside the
 * caller's transaction. *ret_posted: 1 when a ledger transaction was
 * written. 0 or -errno. */
static int deal_accrue(struct app *a, json_t *deal, int64_t billable_s,
                       int64_t now, int *ret_posted)
{
    struct store_row row;
    struct deal_due d;
    struct ledger_tx *tx;
    struct rating_split sp;
    int64_t rel;
    store_row_of_json(deal, &row);
    deal_due_of_row(&row, &d);
    *ret_posted = 0;
    int e = deal_step(&d, billable_s, &tx, &sp, &rel);
    if (e < 0)
        log_error("billing: deal %s cannot be rated (%s)", d.id,
                  strerror(-e));
    if (e <= 0)
        return e;
    struct ledger_post_info info = { "accrual", d.vm_id, d.id,
                                     rel - d.billed_s, rel };
    e = billing_post(a->store, tx, &info, now, NULL);
    ledger_tx_free(tx);
    if (e < 0)
        return e;
    e = store_exec(a->store,
                   "UPDATE deals SET billed_s = $1, charged = charged + $2, "
                   "fees = fees + $3 WHERE id = $4 AND billed_s = $5", "iiisi",
                   rel, sp.tenant, sp.fee, d.id, d.billed_s);
    if (e == 0)
        return -EAGAIN; /* someone else moved the cursor: roll back */
    if (e < 0)
        return e;
    *ret_posted = 1;
    return 0;
}

int billing_sla_credit(struct app *a, const char *deal_id, const char *vm_id,
                       int64_t seconds, int64_t bps, const char *memo,
                       int64_t *ret_nano, char ret_tx[UUID_STR_LEN + 1])
{
    json_auto_t *deal = NULL;
    struct rating_offer o;
    struct rating_shape sh;
    int64_t charge;
    *ret_nano = 0;
    if (seconds <= 0 || bps <= 0)
        return 0;
    int e = store_query_one(a->store, &deal, "SELECT " DEAL_COLS " FROM "
                            "deals d WHERE d.id = $1", "s", deal_id);
    if (e < 0)
        return e;
    deal_offer(deal, &o, &sh);
    if ((e = rating_charge(&o, &sh, seconds, &charge)) < 0)
        return e;
    if (charge > INT64_MAX / bps)
        return -ERANGE;
    int64_t credit = charge * bps / RATING_BPS_MAX;
    if (credit <= 0)
        return 0;
    struct ledger_tx *tx = ledger_tx_new("credit", memo);
    e = ledger_tx_move(tx, json_str(deal, "provider_id"),
                       json_str(deal, "tenant_id"), credit);
    struct ledger_post_info info = { .actor = LEDGER_HUB_SLA, .vm_id = vm_id,
                                     .seconds = seconds };
    if (e == 0)
        e = billing_post(a->store, tx, &info, now_s(), ret_tx);
    ledger_tx_free(tx);
    if (e < 0)
        return e;
    *ret_nano = credit;
    return 0;
}

static int vm_open_deal(struct store *s, const char *vm_id, json_t **ret)
{
    return store_query_one(s, ret, "SELECT " DEAL_COLS " FROM deals d JOIN "
                           "vms v ON v.deal_id = d.id WHERE v.id = $1", "s",
                           vm_id);
}

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

/* The deal row of VM vm_id on node_id: the VM's shape and owner from
 * `vm` (account_id, vcpus, memory_mib, disk_gib, gpu_model, gpu_count,
 * ports), the node's owner and offer from `node` (provider_id, and when it
 * has an offer offer_node, its prices and gpu_models), or the prices of
 * deal `old` when not NULL; fee_bps, billed from base seconds; a new id.
 * Nothing is written. */
static void deal_row(const char *vm_id, const char *node_id, const json_t *vm,
                     const json_t *node, json_t *old, int64_t fee_bps,
                     int64_t base, int64_t now, struct deal_row *d)
{
    struct rating_offer o = cfg.default_offer;
    struct rating_shape unused;
    if (old) {
        deal_offer(old, &o, &unused);
    } else if (json_str(node, "offer_node")) {
        o = (struct rating_offer){ json_int(node, "vcpu_hour", 0),
                                   json_int(node, "mem_gib_hour", 0),
                                   json_int(node, "disk_gib_month", 0),
                                   json_int(node, "gpu_hour", 0),
                                   json_int(node, "port_hour", 0) };
        /* A GPU model the node prices on its own is locked at that price. */
        json_auto_t *models = json_loads(json_str(node, "gpu_models") ?
                                         json_str(node, "gpu_models") : "{}",
                                         0, NULL);
        const char *mp = json_string_value(json_object_get(
            models, json_str(vm, "gpu_model") ? json_str(vm, "gpu_model")
                                              : ""));
        int64_t v;
        if (mp && money_parse(mp, &v) == 0 && v >= 0)
            o.gpu_hour = v;
    }
    *d = (struct deal_row){ .vm_id = xstrdup(vm_id),
                            .node_id = xstrdup(node_id),
                            .tenant_id = dup_or_null(json_str(vm,
                                                              "account_id")),
                            .provider_id = dup_or_null(json_str(node,
                                                                "provider_id")),
                            .offer = o,
                            .vcpus = json_int(vm, "vcpus", 0),
                            .memory_mib = json_int(vm, "memory_mib", 0),
                            .disk_gib = json_int(vm, "disk_gib", 0),
                            .gpus = json_int(vm, "gpu_count", 0),
                            .ports = json_int(vm, "ports", 0),
                            .fee_bps = fee_bps,
                            .base_s = base,
                            .created_at = now };
    uuid_generate_str(d->id);
}

void billing_deal_row_free(struct deal_row *d)
{
    free(d->vm_id);
    free(d->node_id);
    free(d->tenant_id);
    free(d->provider_id);
    memset(d, 0, sizeof(*d));
}

void billing_deal_row_open(const char *vm_id, const char *node_id,
                           const json_t *vm, const json_t *node,
                           struct deal_row *ret)
{
    deal_row(vm_id, node_id, vm, node, NULL, cfg.fee_bps, 0, now_s(), ret);
}

static void fill_deal(const void *ctx, size_t i, struct store_arg *a)
{
    const struct deal_row *d = &((const struct deal_row *)ctx)[i];
    const int64_t v[] = { d->offer.vcpu_hour, d->offer.mem_gib_hour,
                          d->offer.disk_gib_month, d->offer.gpu_hour,
                          d->offer.port_hour, d->vcpus, d->memory_mib,
                          d->disk_gib, d->gpus, d->ports, d->fee_bps,
                          d->base_s, d->created_at };
    a[0] = store_arg_s(d->id);
    a[1] = store_arg_s(d->vm_id);
    a[2] = store_arg_s(d->node_id);
    a[3] = store_arg_s(d->tenant_id);
    a[4] = store_arg_s(d->provider_id);
    for (size_t k = 0; k < ARRAY_SIZE(v); k++)
        a[5 + k] = store_arg_i(v[k]);
}

int billing_deals_insert(struct store *s, const struct deal_row *rows,
                         size_t n)
{
    static struct store_rows st = {
        ("INSERT INTO deals (id, vm_id, node_id, tenant_id, provider_id, "
         "vcpu_hour, mem_gib_hour, disk_gib_month, gpu_hour, port_hour, "
         "vcpus, memory_mib, disk_gib, gpus, ports, fee_bps, base_s, "
         "created_at) VALUES "), "", 18, NULL, 4 };
    int e = store_exec_rows(s, &st, n, fill_deal, rows);
    return e < 0 ? e : 0;
}

/* deal_row() written: its prices to *ret_locked when not NULL; its id
 * to ret_id when not NULL, else the VM is pointed at it here. */
static int deal_insert(struct app *a, const char *vm_id, const char *node_id,
                       const json_t *vm, const json_t *node, json_t *old,
                       int64_t fee_bps, int64_t base, int64_t now,
                       struct rating_offer *ret_locked,
                       char ret_id[UUID_STR_LEN + 1])
{
    struct deal_row d;
    deal_row(vm_id, node_id, vm, node, old, fee_bps, base, now, &d);
    int e = billing_deals_insert(a->store, &d, 1);
    if (e >= 0 && ret_id)
        memcpy(ret_id, d.id, sizeof(d.id));
    else if (e >= 0)
        e = store_exec(a->store, "UPDATE vms SET deal_id = $1 WHERE id = $2",
                       "ss", d.id, vm_id);
    if (e >= 0 && ret_locked)
        *ret_locked = d.offer;
    billing_deal_row_free(&d);
    return e < 0 ? e : 0;
}

/* New deal for the VM; with keep_prices the old deal's prices and fee
 * carry over (only the shape changes). The prices locked go to
 * *ret_locked when not NULL; with ret_id, the new deal's id goes there
 * and the caller points the VM at it (vms.deal_id), else it is done here.
 * One read gathers the VM, its usage and ports, the node's owner and its
 * offer; the old deal is read only when the VM has one. */
static int deal_relock(struct app *a, const char *vm_id, const char *node_id,
                       bool keep_prices, struct rating_offer *ret_locked,
                       char ret_id[UUID_STR_LEN + 1])
{
    json_auto_t *vm = NULL, *old = NULL;
    int64_t now = now_s(), base = 0, fee_bps = cfg.fee_bps;
    int e, posted;

    if ((e = store_query_one(a->store, &vm,
                             "SELECT v.account_id, v.vcpus, v.memory_mib, "
                             "v.disk_gib, v.gpu_model, v.gpu_count, "
                             "v.deal_id, COALESCE(u.billable_s, 0) AS "
                             "billable_s, (SELECT COUNT(*) FROM ports p WHERE "
                             "p.vm_id = v.id) AS ports, n.account_id AS "
                             "provider_id, o.node_id AS offer_node, "
                             "o.vcpu_hour, o.mem_gib_hour, o.disk_gib_month, "
                             "o.gpu_hour, o.port_hour, o.gpu_models FROM vms "
                             "v JOIN nodes n ON n.id = $2 LEFT JOIN vm_usage "
                             "u ON u.vm_id = v.id LEFT JOIN node_offers o ON "
                             "o.node_id = n.id WHERE v.id = $1", "ss", vm_id,
                             node_id)) < 0)
        return e;
    e = json_str(vm, "deal_id") ? vm_open_deal(a->store, vm_id, &old)
                                : -ENOENT;
    if (e == 0) {
        /* Settle the old price up to now before the new one applies. */
        if ((e = deal_accrue(a, old, json_int(vm, "billable_s", 0), now,
                             &posted)) < 0)
            return e;
        base = json_int(vm, "billable_s", 0);
        if ((e = store_exec(a->store, "UPDATE deals SET closed_at = $1 WHERE "
                            "id = $2", "is", now, json_str(old, "id"))) < 0)
            return e;
    } else if (e != -ENOENT) {
        return e;
    }
    if (keep_prices && old)
        fee_bps = json_int(old, "fee_bps", cfg.fee_bps);
    return deal_insert(a, vm_id, node_id, vm, vm, keep_prices ? old : NULL,
                       fee_bps, base, now, ret_locked, ret_id);
}

int billing_deal_open(struct app *a, const char *vm_id, const char *node_id,
                      const json_t *vm, const json_t *node,
                      struct rating_offer *ret, char ret_deal[UUID_STR_LEN + 1])
{
    return deal_insert(a, vm_id, node_id, vm, node, NULL, cfg.fee_bps, 0,
                       now_s(), ret, ret_deal);
}

int billing_deal_lock(struct app *a, const char *vm_id, const char *node_id)
{
    return deal_relock(a, vm_id, node_id, false, NULL, NULL);
}

int billing_deal_lock_offer(struct app *a, const char *vm_id,
                            const char *node_id, struct rating_offer *ret,
                            char ret_deal[UUID_STR_LEN + 1])
{
    return deal_relock(a, vm_id, node_id, false, ret, ret_deal);
}

int billing_deal_reshape(struct app *a, const char *vm_id)
{
    json_auto_t *vm = NULL;
    int e = store_query_one(a->store, &vm, "SELECT node_id, deal_id FROM vms "
                            "WHERE id = $1", "s", vm_id);
    if (e < 0)
        return e;
    if (!json_str(vm, "node_id") || !json_str(vm, "deal_id"))
        return 0; /* priced when placed */
    return deal_relock(a, vm_id, json_str(vm, "node_id"), true, NULL, NULL);
}

json_t *billing_offer_json(const struct rating_offer *o)
{
    const int64_t v[] = { o->vcpu_hour, o->mem_gib_hour, o->disk_gib_month,
                          o->gpu_hour, o->port_hour };
    static const char *const keys[] = { "vcpu_hour", "mem_gib_hour",
                                        "disk_gib_month", "gpu_hour",
                                        "port_hour" };
    json_t *j = json_object();
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        _cleanup_free_ char *t = money_format(v[i], NULL);
        json_object_set_new(j, keys[i], json_string(t));
    }
    return j;
}

json_t *billing_vm_deal(struct app *a, const char *vm_id)
{
    json_auto_t *d = NULL;
    if (vm_open_deal(a->store, vm_id, &d) < 0)
        return NULL;
    static const char *const prices[] = { "vcpu_hour", "mem_gib_hour",
                                          "disk_gib_month", "gpu_hour",
                                          "port_hour" };
    static const char *const shape[] = { "vcpus", "memory_mib", "disk_gib",
                                         "gpus", "ports" };
    json_t *p = json_object(), *s = json_object();
    for (size_t i = 0; i < ARRAY_SIZE(prices); i++) {
        _cleanup_free_ char *t = money_format(json_int(d, prices[i], 0), NULL);
        json_object_set_new(p, prices[i], json_string(t));
        json_object_set(s, shape[i], json_object_get(d, shape[i]));
    }
    struct rating_offer o;
    struct rating_shape sh;
    int64_t hour = 0;
    deal_offer(d, &o, &sh);
    rating_cost_ceil(&o, &sh, RATING_SECONDS_PER_HOUR, &hour);
    char since[21];
    time_format_rfc3339(json_int(d, "created_at", 0), since);
    _cleanup_free_ char *ht = money_format(hour, NULL);
    _cleanup_free_ char *ct = money_format(json_int(d, "charged", 0), NULL);
    return json_pack("{s:s, s:s, s:o, s:o, s:s, s:I, s:s, s:I, s:s, s:s}", "id",
                     json_str(d, "id"), "node_id", json_str(d, "node_id"),
                     "prices", p, "shape", s, "per_hour", ht, "fee_bps",
                     (json_int_t)json_int(d, "fee_bps", 0), "since", since,
                     "billed_seconds", (json_int_t)json_int(d, "billed_s", 0),
                     "charged", ct, "currency", cfg.symbol);
}

/* ---- accrual ---- */

/* VMs accrued per store transaction (see accrual_run): a writer waits
 * for one batch at most. */
static size_t accrual_batch = ACCRUAL_BATCH_DEFAULT;

void accrual_set_batch(size_t n)
{
    accrual_batch = n ? n : ACCRUAL_BATCH_DEFAULT;
}

/* One VM's step in its own store transaction (a savepoint inside the
 * batch's, see accrual_run). 1 posted, 0 nothing to do, -errno (rolled
 * back). */
static int accrue_vm(struct app *a, const char *vm_id, int64_t now)
{
    json_auto_t *vm = NULL, *deal = NULL;
    int e, posted = 0;

    if ((e = store_tx_begin(a->store)) < 0)
        return e;
    /* Re-read inside the transaction: the list may be stale. */
    e = store_query_one(a->store, &vm,
                        "SELECT v.node_id, v.deal_id, u.billable_s FROM vms v "
                        "JOIN vm_usage u ON u.vm_id = v.id WHERE v.id = $1",
                        "s", vm_id);
    if (e == 0 && !json_str(vm, "deal_id") && json_str(vm, "node_id"))
        /* Placed before prices were locked at placement: lock now. */
        e = billing_deal_lock(a, vm_id, json_str(vm, "node_id"));
    if (e == 0)
        e = vm_open_deal(a->store, vm_id, &deal);
    if (e == 0)
        e = deal_accrue(a, deal, json_int(vm, "billable_s", 0), now, &posted);
    if (e < 0) {
        store_tx_rollback(a->store);
        return e == -ENOENT ? 0 : e;
    }
    if ((e = store_tx_commit(a->store)) < 0)
        return e;
    return posted;
}

/* Add a running deal's grace cost to its tenant's need. */
static void need_row(struct store_row *r, void *data)
{
    json_t *needs = data;
    struct deal_due d;
    deal_due_of_row(r, &d);
    int64_t c = 0, sum = json_int(needs, d.tenant_id, 0);
    if (rating_cost_ceil(&d.o, &d.sh, cfg.grace_s, &c) < 0 ||
        __builtin_add_overflow(sum, c, &sum))
        sum = INT64_MAX;
    json_object_set_new(needs, d.tenant_id, json_integer((json_int_t)sum));
}

/* Grace cost of every running deal, per tenant: {tenant: need}. Rows are
 * summed as they come (no JSON per deal: 100,000 running VMs). */
static json_t *running_needs(struct app *a, const char *only_tenant,
                             const char *except_vm)
{
    json_t *needs = json_object();
    if (store_query_each(a->store, need_row, needs,
                         "SELECT " DEAL_COLS " FROM deals d JOIN vms v ON "
                         "v.deal_id = d.id WHERE v.desired_state = 'running' "
                         "AND v.deleted_at IS NULL AND ($1 = '' OR "
                         "d.tenant_id = $1) AND v.id <> $2", "ss",
                         only_tenant ? only_tenant : "",
                         except_vm ? except_vm : "") < 0) {
        json_decref(needs);
        return NULL; /* unknown is not "nothing running" */
    }
    return needs;
}

static void stop_tenant(struct app *a, const char *tenant, int64_t balance,
                        int64_t now)
{
    json_auto_t *vms = NULL;
    size_t i;
    json_t *v;
    if (store_query(a->store, &vms,
                    "SELECT id, node_id FROM vms WHERE account_id = $1 AND "
                    "desired_state = 'running' AND deleted_at IS NULL", "s",
                    tenant) < 0)
        return;
    _cleanup_free_ char *bal = money_format(balance, cfg.symbol);
    json_array_foreach(vms, i, v) {
        /* Stopped, and its billing ends, in one transaction. */
        if (store_tx_begin(a->store) < 0)
            continue;
        if (store_exec(a->store,
                       "UPDATE vms SET desired_state = 'stopped', updated_at "
                       "= $1 WHERE id = $2 AND desired_state = 'running'",
                       "is", now, json_str(v, "id")) <= 0 ||
            billing_vm_unwanted(a, json_str(v, "id"), now) < 0) {
            store_tx_rollback(a->store);
            continue;
        }
        if (store_tx_commit(a->store) < 0)
            continue;
        app_node_changed(a, json_str(v, "node_id"));
        _cleanup_free_ char *d = xasprintf(
            "balance %s is exhausted: VM stopped (not deleted); top up the "
            "account and start it again", bal);
        app_event(a, tenant, "billing", "billing.vm-stopped",
                  json_str(v, "id"), 402, d);
    }
    log_info("billing: account %s has balance %s: stopped %zu VMs", tenant,
             bal, json_array_size(vms));
    store_exec(a->store,
               "INSERT INTO billing_notices (account_id, stopped_at) VALUES "
               "($1, $2) ON CONFLICT (account_id) DO UPDATE SET stopped_at = "
               "excluded.stopped_at", "si", tenant, now);
}

static void warn_tenant(struct app *a, const char *tenant, int64_t balance,
                        int64_t need, int64_t now)
{
    int64_t last = store_query_int(a->store, -1,
                                   "SELECT COALESCE(warned_at, -1) FROM "
                                   "billing_notices WHERE account_id = $1",
                                   "s", tenant);
    if (last >= 0 && now - last < 3600)
        return;
    _cleanup_free_ char *bal = money_format(balance, cfg.symbol);
    _cleanup_free_ char *nd = money_format(need, cfg.symbol);
    _cleanup_free_ char *d = xasprintf(
        "balance %s does not cover %lld s of the running VMs (%s): they will "
        "be stopped when it runs out", bal, (long long)cfg.grace_s, nd);
    app_event(a, tenant, "billing", "billing.low-balance", tenant, 200, d);
    store_exec(a->store,
               "INSERT INTO billing_notices (account_id, warned_at) VALUES "
               "($1, $2) ON CONFLICT (account_id) DO UPDATE SET warned_at = "
               "excluded.warned_at", "si", tenant, now);
}

/* Warn or stop tenants whose balance cannot carry their running VMs. */
static void enforce(struct app *a, int64_t now)
{
    if (cfg.grace_s == 0)
        return; /* limits off */
    json_auto_t *needs = running_needs(a, NULL, NULL);
    const char *tenant;
    if (!needs)
        return; /* the store cannot say: stop nobody on a guess */
    json_t *n;
    json_object_foreach(needs, tenant, n) {
        json_auto_t *acct = NULL;
        if (store_query_one(a->store, &acct, "SELECT role FROM accounts WHERE "
                            "id = $1", "s", tenant) < 0 ||
            streq(json_str(acct, "role"), "admin"))
            continue;
        int64_t balance, need = json_integer_value(n);
        if (billing_balance(a->store, tenant, &balance) < 0)
            continue; /* unknown is not zero: stop nobody on a guess */
        if (balance <= 0)
            stop_tenant(a, tenant, balance, now);
        else if (balance < need)
            warn_tenant(a, tenant, balance, need, now);
    }
}

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static struct accrual_stats stats;

void accrual_stats_get(struct accrual_stats *ret)
{
    pthread_mutex_lock(&stats_lock);
    *ret = stats;
    pthread_mutex_unlock(&stats_lock);
}

/* A VM owing a step, as the pass read it (the deal's strings owned;
 * d.id NULL when the VM has no deal yet). */
struct owing {
    struct deal_due d;
    int64_t billable_s;
};

struct owing_list {
    struct owing *v;
    size_t n, cap;
};

static void owing_row(struct store_row *r, void *data)
{
    struct owing_list *l = data;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    struct owing *w = &l->v[l->n++];
    deal_due_of_row(r, &w->d);
    bool has_deal = w->d.id != NULL;
    w->d.id = has_deal ? xstrdup(w->d.id) : NULL;
    w->d.vm_id = xstrdup(store_row_str(r, "u_vm_id"));
    w->d.tenant_id = has_deal ? xstrdup(w->d.tenant_id) : NULL;
    w->d.provider_id = has_deal ? xstrdup(w->d.provider_id) : NULL;
    w->billable_s = store_row_int(r, "billable_s", 0);
}

static void owing_list_clear(struct owing_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->v[i].d.id);
        free((char *)l->v[i].d.vm_id);
        free((char *)l->v[i].d.tenant_id);
        free((char *)l->v[i].d.provider_id);
    }
    free(l->v);
    *l = (struct owing_list){ 0 };
}

/* Deals' cursors moved per statement (arguments per row: id, cursor as
 * read, new cursor, charged, fees). */
#define CURSOR_ROWS 128
#define CURSOR_COLS 5

/* Move the cursors of n deals (args: CURSOR_COLS per deal), each only
 * where it still stands as read. 0, -EAGAIN when one had moved (the
 * caller rolls back) or the store's -errno. */
static int cursors_move(struct store *s, const struct store_arg *args,
                        size_t n)
{
    static const char *const types[CURSOR_COLS] = { "TEXT", "BIGINT",
                                                    "BIGINT", "BIGINT",
                                                    "BIGINT" };
    for (size_t at = 0; at < n; at += CURSOR_ROWS) {
        size_t rows = n - at < CURSOR_ROWS ? n - at : CURSOR_ROWS;
        _cleanup_free_ char *values = store_values_sql(rows, CURSOR_COLS,
                                                       types);
        _cleanup_free_ char *sql = xasprintf(
            "UPDATE deals SET billed_s = x.column3, charged = charged + "
            "x.column4, fees = fees + x.column5 FROM (VALUES %s) AS x WHERE "
            "deals.id = x.column1 AND deals.billed_s = x.column2", values);
        int e = store_execa(s, sql, args + at * CURSOR_COLS,
                            rows * CURSOR_COLS);
        if (e < 0)
            return e;
        if ((size_t)e != rows)
            return -EAGAIN; /* a cursor moved since the pass read it */
    }
    return 0;
}

/* The steps of w[0..n) in one store transaction: their cursors moved and
 * their ledger transactions posted with a few statements. *ret_posted:
 * steps posted. 0, or -errno with nothing posted (rolled back). */
static int accrue_batch(struct app *a, struct owing *w, size_t n, int64_t now,
                        int *ret_posted)
{
    _cleanup_free_ struct store_arg *cur = xcalloc(n * CURSOR_COLS + 1,
                                                   sizeof(*cur));
    struct ledger_batch *b = ledger_batch_new();
    size_t moved = 0;
    int e = 0;
    for (size_t i = 0; i < n && e >= 0; i++) {
        struct ledger_tx *tx;
        struct rating_split sp;
        int64_t rel;
        const struct deal_due *d = &w[i].d;
        if ((e = deal_step(d, w[i].billable_s, &tx, &sp, &rel)) <= 0)
            continue;
        struct ledger_post_info info = { "accrual", d->vm_id, d->id,
                                         rel - d->billed_s, rel };
        e = ledger_batch_add(b, tx, &info, now, NULL);
        ledger_tx_free(tx);
        struct store_arg *c = cur + moved++ * CURSOR_COLS;
        c[0] = (struct store_arg){ .type = 's', .s = d->id };
        c[1] = (struct store_arg){ .type = 'i', .i = d->billed_s };
        c[2] = (struct store_arg){ .type = 'i', .i = rel };
        c[3] = (struct store_arg){ .type = 'i', .i = sp.tenant };
        c[4] = (struct store_arg){ .type = 'i', .i = sp.fee };
    }
    *ret_posted = 0;
    if (e >= 0 && moved > 0 && (e = store_tx_begin(a->store)) == 0) {
        /* The cursors first: a deal moved meanwhile posts nothing. */
        if ((e = cursors_move(a->store, cur, moved)) < 0 ||
            (e = ledger_batch_post(a->store, b)) < 0)
            store_tx_rollback(a->store);
        else
            e = store_tx_commit(a->store);
    }
    ledger_batch_free(b);
    if (e < 0)
        return e;
    *ret_posted = (int)moved;
    return 0;
}

/* The steps of w[0..n) one by one, each in a savepoint of one store
 * transaction: for VMs without a deal yet, and for a batch that failed
 * as a whole (a deal moved meanwhile, a step that cannot be rated), so
 * that one VM never holds the others back. *ret_failed counts VMs not
 * accrued. Steps posted, or -errno when the transaction failed. */
static int accrue_each(struct app *a, struct owing *w, size_t n, int64_t now,
                       int *ret_failed)
{
    int posted = 0;
    if (store_tx_begin(a->store) < 0) {
        *ret_failed += (int)n;
        return -EIO;
    }
    for (size_t i = 0; i < n; i++) {
        int r = accrue_vm(a, w[i].d.vm_id, now);
        if (r > 0)
            posted++;
        else if (r < 0)
            (*ret_failed)++;
    }
    if (store_tx_commit(a->store) < 0) {
        *ret_failed += (int)n;
        return -EIO;
    }
    return posted;
}

int accrual_run(struct app *a, int64_t now)
{
    struct owing_list l = { 0 };
    int posted = 0, failed = 0;
    int64_t t0 = mono_ms(), longest = 0;

    /* Every VM owing a step, with its deal and usage, in one read: the
     * steps are computed here, not read VM by VM. */
    int e = store_query_each(a->store, owing_row, &l,
                             "SELECT u.vm_id AS u_vm_id, u.billable_s, "
                             DEAL_COLS " FROM vm_usage u JOIN "
                             "vms v ON v.id = u.vm_id LEFT JOIN deals d ON "
                             "d.id = v.deal_id WHERE v.node_id IS NOT NULL "
                             "AND (d.id IS NULL OR d.base_s + d.billed_s < "
                             "u.billable_s)", "");
    if (e < 0) {
        owing_list_clear(&l);
        return e;
    }
    /* Test seam: a pass that waits a second after its read, so that a
     * test changes a deal in between. */
    if (fs_test_fault("FOG_TEST_FAULT", "accrual-slow"))
        nanosleep(&(struct timespec){ 1, 0 }, NULL);
    /* VMs placed before prices were locked at placement (no deal): locked
     * now, one by one, moved to the end of the list. */
    size_t n = 0;
    _cleanup_free_ struct owing *lone = xcalloc(l.n + 1, sizeof(*lone));
    size_t n_lone = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (l.v[i].d.id)
            l.v[n++] = l.v[i];
        else
            lone[n_lone++] = l.v[i];
    }
    if (n_lone) {
        memcpy(l.v + n, lone, n_lone * sizeof(*lone));
        int r = accrue_each(a, l.v + n, n_lone, now, &failed);
        posted += r > 0 ? r : 0;
    }
    /* Batches of VMs share one transaction: a commit per batch, and a
     * writer waits for one batch at most. A batch that cannot be posted
     * whole is posted VM by VM; what fails then still owes and is
     * accrued next time. */
    int64_t redone = 0;
    for (size_t at = 0; at < n; at += accrual_batch) {
        size_t m = n - at < accrual_batch ? n - at : accrual_batch;
        int64_t b0 = mono_ms();
        int done;
        if (accrue_batch(a, l.v + at, m, now, &done) == 0) {
            posted += done;
        } else {
            int r = accrue_each(a, l.v + at, m, now, &failed);
            posted += r > 0 ? r : 0;
            redone++;
        }
        if (mono_ms() - b0 > longest)
            longest = mono_ms() - b0;
    }
    owing_list_clear(&l);
    if (failed)
        log_warn("billing: %d VMs could not be accrued this round; they will "
                 "be next time", failed);
    enforce(a, now);
    int64_t t1 = mono_ms();
    pthread_mutex_lock(&stats_lock);
    stats.passes++;
    stats.last_end_ms = t1;
    stats.last_duration_ms = t1 - t0;
    stats.last_batch_max_ms = longest;
    stats.batches_redone += redone;
    pthread_mutex_unlock(&stats_lock);
    return posted;
}

/* ---- balance limits ---- */

static int check_funds(struct app *a, const char *account_id,
                       const char *except_vm, int64_t extra, int64_t *ret_need)
{
    json_auto_t *acct = NULL;
    int e = store_query_one(a->store, &acct, "SELECT role FROM accounts WHERE "
                            "id = $1", "s", account_id);
    if (e < 0)
        return e;
    if (streq(json_str(acct, "role"), "admin") || cfg.grace_s == 0)
        return 0;
    json_auto_t *needs = running_needs(a, account_id, except_vm);
    if (!needs)
        return -EIO;
    int64_t need = json_int(needs, account_id, 0), balance;
    if (__builtin_add_overflow(need, extra, &need))
        need = INT64_MAX;
    if ((e = billing_balance(a->store, account_id, &balance)) < 0)
        return e;
    if (balance <= 0 || balance < need) {
        if (ret_need)
            *ret_need = need;
        return -EDQUOT;
    }
    return 0;
}

int billing_check_create(struct app *a, const char *account_id,
                         const struct rating_shape *shape, int64_t *ret_need)
{
    int64_t extra = 0;
    if (shape && rating_cost_ceil(&cfg.default_offer, shape, cfg.grace_s,
                                  &extra) < 0)
        extra = INT64_MAX;
    return check_funds(a, account_id, NULL, extra, ret_need);
}

int billing_check_start(struct app *a, const char *vm_id, int64_t *ret_need)
{
    json_auto_t *vm = NULL, *deal = NULL;
    int e = store_query_one(a->store, &vm, "SELECT account_id, vcpus, "
                            "memory_mib, disk_gib FROM vms WHERE id = $1", "s",
                            vm_id);
    if (e < 0)
        return e;
    struct rating_offer o = cfg.default_offer;
    struct rating_shape sh = { json_int(vm, "vcpus", 0),
                               json_int(vm, "memory_mib", 0),
                               json_int(vm, "disk_gib", 0), 0, 0 };
    if (vm_open_deal(a->store, vm_id, &deal) == 0)
        deal_offer(deal, &o, &sh);
    int64_t extra = 0;
    if (rating_cost_ceil(&o, &sh, cfg.grace_s, &extra) < 0)
        extra = INT64_MAX;
    return check_funds(a, json_str(vm, "account_id"), vm_id, extra, ret_need);
}

/* ---- the accrual thread ---- */

static pthread_t acc_thread;
static pthread_mutex_t acc_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t acc_cond = PTHREAD_COND_INITIALIZER;
static bool acc_stop, acc_running;

static void *accrual_loop(void *arg)
{
    struct app *a = arg;
    pthread_mutex_lock(&acc_lock);
    while (!acc_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += cfg.accrual_s;
        pthread_cond_timedwait(&acc_cond, &acc_lock, &ts);
        if (acc_stop)
            break;
        pthread_mutex_unlock(&acc_lock);
        if (store_try_lead(a->store)) {
            int64_t t0 = mono_ms();
            int n = accrual_run(a, now_s());
            log_debug("billing: accrual posted %d transactions in %lld ms", n,
                      (long long)(mono_ms() - t0));
        }
        pthread_mutex_lock(&acc_lock);
    }
    pthread_mutex_unlock(&acc_lock);
    return NULL;
}

int accrual_start(struct app *a)
{
    acc_stop = false;
    pthread_mutex_lock(&stats_lock);
    stats.started_ms = mono_ms();
    pthread_mutex_unlock(&stats_lock);
    int r = pthread_create(&acc_thread, NULL, accrual_loop, a);
    if (r)
        return -r;
    acc_running = true;
    return 0;
}

void accrual_stop(void)
{
    if (!acc_running)
        return;
    pthread_mutex_lock(&acc_lock);
    acc_stop = true;
    pthread_cond_signal(&acc_cond);
    pthread_mutex_unlock(&acc_lock);
    pthread_join(acc_thread, NULL);
    acc_running = false;
}
