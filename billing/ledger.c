/* Building and checking balanced transactions; posting them is the
 * store's business (controller/accrual.c). */
#include "billing/ledger.h"

#include <errno.h>

struct ledger_tx *ledger_tx_new(const char *kind, const char *memo)
{
    struct ledger_tx *tx = xcalloc(1, sizeof(*tx));
    tx->kind = xstrdup(kind);
    tx->memo = memo ? xstrdup(memo) : NULL;
    return tx;
}

void ledger_tx_free(struct ledger_tx *tx)
{
    if (!tx)
        return;
    for (size_t i = 0; i < tx->n; i++)
        free(tx->e[i].account);
    free(tx->e);
    free(tx->kind);
    free(tx->memo);
    free(tx->reverses);
    free(tx);
}

int ledger_tx_add(struct ledger_tx *tx, const char *account, int64_t amount)
{
    if (!account || !*account || amount == INT64_MIN)
        return -EINVAL;
    for (size_t i = 0; i < tx->n; i++) {
        if (!streq(tx->e[i].account, account))
            continue;
        int64_t sum;
        if (__builtin_add_overflow(tx->e[i].amount, amount, &sum) ||
            sum == INT64_MIN)
            return -ERANGE;
        tx->e[i].amount = sum;
        if (sum == 0) {
            free(tx->e[i].account);
            memmove(tx->e + i, tx->e + i + 1, (tx->n - i - 1) * sizeof(*tx->e));
            tx->n--;
        }
        return 0;
    }
    if (amount == 0)
        return 0;
    if (tx->n == tx->cap) {
        tx->cap = tx->cap ? 2 * tx->cap : 4;
        tx->e = xrealloc(tx->e, tx->cap * sizeof(*tx->e));
    }
    tx->e[tx->n].account = xstrdup(account);
    tx->e[tx->n].amount = amount;
    tx->n++;
    return 0;
}

int ledger_tx_move(struct ledger_tx *tx, const char *from, const char *to,
                   int64_t amount)
{
    if (amount <= 0 || streq(from, to))
        return -EINVAL;
    int r = ledger_tx_add(tx, from, -amount);
    if (r < 0)
        return r;
    r = ledger_tx_add(tx, to, amount);
    if (r < 0)
        ledger_tx_add(tx, from, amount); /* undo the first half */
    return r;
}

int ledger_tx_check(const struct ledger_tx *tx)
{
    if (tx->n == 0)
        return -ENODATA;
    if (tx->n < 2)
        return -EINVAL;
    __int128 sum = 0;
    for (size_t i = 0; i < tx->n; i++) {
        if (tx->e[i].amount == 0 || tx->e[i].amount == INT64_MIN)
            return -EINVAL;
        sum += tx->e[i].amount;
    }
    return sum == 0 ? 0 : -EINVAL;
}

int64_t ledger_tx_amount(const struct ledger_tx *tx, const char *account)
{
    for (size_t i = 0; i < tx->n; i++)
        if (streq(tx->e[i].account, account))
            return tx->e[i].amount;
    return 0;
}

struct ledger_tx *ledger_tx_reverse(const struct ledger_tx *tx,
                                    const char *tx_id, const char *memo)
{
    if (ledger_tx_check(tx) < 0)
        return NULL;
    struct ledger_tx *r = ledger_tx_new("reversal", memo);
    r->reverses = tx_id ? xstrdup(tx_id) : NULL;
    for (size_t i = 0; i < tx->n; i++)
        ledger_tx_add(r, tx->e[i].account, -tx->e[i].amount);
    return r;
}
