/* Posting many balanced ledger transactions in one go: their ledger_tx
 * and ledger_entry rows in multi-row INSERTs, and each account's balance
 * moved once for all of them, inside the caller's store transaction. One
 * transaction (billing_post) is a batch of one; the accrual pass posts
 * thousands per batch. */
#pragma once

#include "billing/ledger.h"
#include "common/ids.h"
#include "controller/store.h"

/* Where a transaction came from: accrual steps carry vm_id, deal_id,
 * seconds and upto_s (NULL/0 otherwise). */
struct ledger_post_info {
    const char *actor;
    const char *vm_id;
    const char *deal_id;
    int64_t seconds;
    int64_t upto_s;
};

struct ledger_batch;

/* An empty batch (caller frees with ledger_batch_free). */
struct ledger_batch *ledger_batch_new(void);
void ledger_batch_free(struct ledger_batch *b);
/* Add a copy of tx, posted at unix time `now` (info may be NULL); its new
 * id goes to ret_id (may be NULL). 0, -EINVAL (tx does not balance) or
 * -ERANGE (an account's movement in the batch overflows). */
int ledger_batch_add(struct ledger_batch *b, const struct ledger_tx *tx,
                     const struct ledger_post_info *info, int64_t now,
                     char ret_id[UUID_STR_LEN + 1]);
/* Transactions added since the last post. */
size_t ledger_batch_count(const struct ledger_batch *b);
/* Write what was added, inside the caller's store transaction, and empty
 * the batch. 0, -EEXIST (an accrual step or reversal in it was already
 * posted) or the store's -errno; on failure the caller rolls back. */
int ledger_batch_post(struct store *s, struct ledger_batch *b);
