/* Billing inside the controller: usage ingestion from agent posts, deals
 * locked at placement, the accrual loop posting balanced ledger
 * transactions (one store transaction per VM step, so a crash never posts
 * twice or loses a step), balance limits, and ledger posting. */
#pragma once

#include "api/agentmsg.h"
#include "billing/ledger.h"
#include "billing/rating.h"
#include "controller/app.h"
#include "controller/ledger_batch.h"

#include <jansson.h>

/* Billing settings; defaults until billing_configure() is called. */
struct billing_cfg {
    int64_t accrual_s;       /* seconds between accrual runs */
    int64_t fee_bps;         /* platform fee, basis points of each charge */
    int64_t grace_s;         /* balance must cover this much running;
                                0 turns balance limits off */
    int64_t settle_s;        /* samples older than this are too late */
    int64_t max_gap_s;       /* running reports further apart leave a hole */
    char symbol[16];         /* token symbol for printing */
    struct rating_offer default_offer;
};

/* Apply settings. `default_offer` is "vcpu=0.01,mem=0.005,disk=0.5,gpu=1,
 * port=0.001" (decimal tokens; missing keys keep their default; NULL keeps
 * all). max_gap_s 0 means three heartbeats of `heartbeat_s`.
 * 0, or -EINVAL with a message on stderr naming the bad part. */
int billing_configure(int64_t accrual_s, int64_t fee_bps, int64_t grace_s,
                      int64_t heartbeat_s, const char *symbol,
                      const char *default_offer);
/* The settings in force (never NULL). */
const struct billing_cfg *billing_config(void);
/* Parse "vcpu=..,mem=..,disk=..,gpu=..,port=.." over *offer (keys not named
 * keep their value). 0 or -EINVAL. */
int billing_offer_parse(const char *text, struct rating_offer *offer);

/* Ingest one agent status post, inside the caller's store transaction:
 * `vms` the reported states ([{id, state}...]) are the controller's own
 * observations (running while the node keeps reporting); `samples` (n of
 * them, as api/agentmsg decoded them) the node's claims. Duplicated or
 * retried samples count once; claims beyond what was observed are capped
 * and an event says so. 0, -EINVAL (a sample the decoder refused,
 * *ret_bad names it: its index), -EPERM (a sample about a VM not placed
 * on this node; *ret_bad is its index) or -EIO. Nothing is counted
 * unless all are good: the node sends the good ones again. */
int billing_ingest_status(struct app *a, const char *node_id, json_t *vms,
                          const struct am_sample *samples, size_t n,
                          size_t *ret_bad);
/* Every sample of a post that billing_ingest_status would refuse, as a new
 * array of {index, vm, seq, reason} (vm and seq absent when the sample had
 * none usable); empty when all are acceptable. Reads the store only. */
json_t *billing_samples_rejected(struct app *a, const char *node_id,
                                 const struct am_sample *samples, size_t n);
/* The same as observed at unix time `now` (tests replay hours in seconds). */
int billing_ingest_status_at(struct app *a, const char *node_id, json_t *vms,
                             const struct am_sample *samples, size_t n,
                             int64_t now, size_t *ret_bad);

/* The tenant no longer wants VM vm_id running (stop or delete at `now`,
 * inside the caller's transaction): no running report after this is
 * billed until it is started again. 0 or -errno. */
int billing_vm_unwanted(struct app *a, const char *vm_id, int64_t now);

/* Lock the price of a VM just placed on node_id (the deal), inside the
 * caller's store transaction: the node's offer (or the default), the VM's
 * shape and published ports, the current fee. A VM that already has a deal
 * is accrued up to now on it first and the old deal closed. 0 or -errno. */
int billing_deal_lock(struct app *a, const char *vm_id, const char *node_id);
/* billing_deal_lock(), the prices locked to *ret, but the VM is left to
 * the caller to point at the new deal: its id goes to ret_deal, for
 * vms.deal_id in the caller's own update of the VM row, in the same
 * transaction. */
int billing_deal_lock_offer(struct app *a, const char *vm_id,
                            const char *node_id, struct rating_offer *ret,
                            char ret_deal[UUID_STR_LEN + 1]);
/* billing_deal_lock_offer() for a VM that has no deal yet, from what the
 * caller read in its transaction, without a read of its own: the VM's
 * account_id, vcpus, memory_mib, disk_gib, gpu_model, gpu_count and ports
 * (the count of its published ports) in `vm`; the node's owner as
 * provider_id and, when the node has an offer, offer_node (not null),
 * vcpu_hour, mem_gib_hour, disk_gib_month, gpu_hour, port_hour and
 * gpu_models in `node`, read with the node's lock held. */
int billing_deal_open(struct app *a, const char *vm_id, const char *node_id,
                      const json_t *vm, const json_t *node,
                      struct rating_offer *ret, char ret_deal[UUID_STR_LEN + 1]);
/* A deal row as billing_deal_open() writes it, kept to be written with
 * others (billing_deals_insert). */
struct deal_row {
    char id[UUID_STR_LEN + 1];
    char *vm_id, *node_id, *tenant_id, *provider_id; /* owned */
    struct rating_offer offer;
    int64_t vcpus, memory_mib, disk_gib, gpus, ports, fee_bps, base_s,
        created_at;
};
/* billing_deal_open()'s deal (the same `vm` and `node`), not written:
 * into *ret (free with billing_deal_row_free), its prices in ret->offer. */
void billing_deal_row_open(const char *vm_id, const char *node_id,
                           const json_t *vm, const json_t *node,
                           struct deal_row *ret);
void billing_deal_row_free(struct deal_row *d);
/* Write n deal rows with multi-row INSERTs, inside the caller's store
 * transaction (the VMs are pointed at them by the caller). 0 or -errno. */
int billing_deals_insert(struct store *s, const struct deal_row *rows,
                         size_t n);
/* The VM's shape changed (resize, ports added or removed): accrue up to now
 * on the current deal and continue on a new one with the same prices and
 * fee, inside the caller's store transaction. No-op for an unplaced VM.
 * 0 or -errno. */
int billing_deal_reshape(struct app *a, const char *vm_id);

/* Post every VM's pending usage (batches of VMs per store transaction,
 * each step's ledger rows with the deal cursor it advances), then
 * enforce balances: warn tenants whose balance will not cover grace_s,
 * stop (never delete) the running VMs of tenants with nothing left.
 * Returns the number of ledger transactions posted, or -errno. */
int accrual_run(struct app *a, int64_t now);
/* VMs accrual_run posts per store transaction (0: the default,
 * ACCRUAL_BATCH_DEFAULT): the longest a writer waits for it. */
#define ACCRUAL_BATCH_DEFAULT 5000
void accrual_set_batch(size_t n);
/* Background thread running accrual_run every accrual_s seconds (only on
 * the leading replica). 0 or -errno. */
int accrual_start(struct app *a);
void accrual_stop(void);

/* What this process knows of its accrual passes, for /metrics: passes
 * completed, when the last one ended, how long it and its longest store
 * transaction took (monotonic ms; 0 before the first), batches that could
 * not be posted whole and were posted VM by VM instead (a deal moved
 * meanwhile, a step that cannot be rated), and when the accrual thread
 * started (0: never). */
struct accrual_stats {
    int64_t passes;
    int64_t last_end_ms;
    int64_t last_duration_ms;
    int64_t last_batch_max_ms;
    int64_t batches_redone;
    int64_t started_ms;
};
void accrual_stats_get(struct accrual_stats *ret);

/* Post a checked transaction inside the caller's store transaction:
 * ledger_tx + ledger_entry rows and balances. Accrual steps carry vm_id,
 * deal_id, seconds and upto_s in info (see controller/ledger_batch.h).
 * *ret_id (may be NULL) receives the new id. 0, -EINVAL (unbalanced),
 * -EEXIST (this step or reversal was already posted) or -EIO. */
int billing_post(struct store *s, const struct ledger_tx *tx,
                 const struct ledger_post_info *info, int64_t now,
                 char ret_id[UUID_STR_LEN + 1]);

/* Balance of a ledger account (account UUID or LEDGER_HUB_*), nano, in
 * *ret (0 for an account with no postings). 0 or the store's -errno: a
 * balance that cannot be read is never taken for zero. */
int billing_balance(struct store *s, const char *account, int64_t *ret);
/* {"balance": "12.5", "balance_nano": N, "currency": "FOG"} (new ref), or
 * NULL when the store cannot say. */
json_t *billing_balance_json(struct store *s, const char *account);

/* May this account create a VM of `shape` (priced at the default offer)?
 * Needs a positive balance covering grace_s of its running deals plus the
 * new VM. Admin accounts are never limited, nobody is with grace_s 0. 0, -EDQUOT (*ret_need is the
 * balance needed) or -errno. */
int billing_check_create(struct app *a, const char *account_id,
                         const struct rating_shape *shape, int64_t *ret_need);
/* Same for starting a stopped VM, priced at its deal. */
int billing_check_start(struct app *a, const char *vm_id, int64_t *ret_need);

/* SLA credit for an outage of `seconds` of VM vm_id on deal deal_id:
 * bps/10000 of what those seconds cost at the deal's prices (no fee)
 * moves from the deal's provider to its tenant as one balanced ledger
 * transaction (kind credit, actor LEDGER_HUB_SLA, with `memo`), inside
 * the caller's store transaction. *ret_nano: the amount moved (0 when it
 * rounds to nothing: nothing is posted; ret_tx then untouched). 0 or
 * -errno. */
int billing_sla_credit(struct app *a, const char *deal_id, const char *vm_id,
                       int64_t seconds, int64_t bps, const char *memo,
                       int64_t *ret_nano, char ret_tx[UUID_STR_LEN + 1]);

/* The VM's current deal as its API object {node_id, prices (decimal),
 * shape, fee_bps, since, billed_seconds, charged} (new ref), or NULL when
 * it has none. */
json_t *billing_vm_deal(struct app *a, const char *vm_id);

/* Prices of an offer as decimal token strings: {vcpu_hour, mem_gib_hour,
 * disk_gib_month, gpu_hour, port_hour}. */
json_t *billing_offer_json(const struct rating_offer *o);

/* Route handlers of controller/h_billing.c. */
void h_offer_get(struct http_request *r, void *app);
void h_offer_put(struct http_request *r, void *app);
void h_offers_list(struct http_request *r, void *app);
void h_node_market_put(struct http_request *r, void *app);
void h_account_credit(struct http_request *r, void *app);
void h_account_balance(struct http_request *r, void *app);
void h_ledger_reverse(struct http_request *r, void *app);
void h_ledger_list(struct http_request *r, void *app);
void h_usage_list(struct http_request *r, void *app);
void h_invoice_get(struct http_request *r, void *app);
void h_payout_get(struct http_request *r, void *app);
