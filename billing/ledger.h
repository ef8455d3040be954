/* Double-entry transactions: a set of (ledger account, amount) entries
 * that sums to exactly zero. Money only moves between accounts; it is never
 * created or destroyed (deposits come from the hub's deposits account).
 * Corrections are reversing transactions, never edits. */
#pragma once

#include "common/util.h"

#include <jansson.h>

/* System ledger accounts (user accounts are their UUIDs). */
#define LEDGER_HUB_FEES "hub:fees"
#define LEDGER_HUB_DEPOSITS "hub:deposits"
/* The actor of SLA credits the hub posts itself. */
#define LEDGER_HUB_SLA "hub:sla"

struct ledger_entry {
    char *account; /* owned */
    int64_t amount; /* nano-tokens; positive = the account receives */
};

struct ledger_tx {
    char *kind;     /* "accrual", "credit", "reversal", ... (owned) */
    char *memo;     /* owned, may be NULL */
    char *reverses; /* id of the transaction this one undoes, or NULL */
    struct ledger_entry *e;
    size_t n, cap;
};

/* New empty transaction (caller frees with ledger_tx_free). */
struct ledger_tx *ledger_tx_new(const char *kind, const char *memo);
void ledger_tx_free(struct ledger_tx *tx);
/* Add an entry; amounts to the same account are combined, zero amounts
 * leave no entry. 0, -EINVAL (no account, INT64_MIN) or -ERANGE. */
int ledger_tx_add(struct ledger_tx *tx, const char *account, int64_t amount);
/* Move `amount` (> 0) from one account to another. 0 or -errno. */
int ledger_tx_move(struct ledger_tx *tx, const char *from, const char *to,
                   int64_t amount);
/* 0 when the transaction may be posted: at least two entries, summing to
 * zero. -EINVAL otherwise (-ENODATA when it has no entries at all). */
int ledger_tx_check(const struct ledger_tx *tx);
/* Amount of one account in the transaction (0 if absent). */
int64_t ledger_tx_amount(const struct ledger_tx *tx, const char *account);
/* The opposite transaction undoing `tx` (posted with id `tx_id`); kind
 * "reversal". Caller frees. NULL if tx does not check. */
struct ledger_tx *ledger_tx_reverse(const struct ledger_tx *tx,
                                    const char *tx_id, const char *memo);
