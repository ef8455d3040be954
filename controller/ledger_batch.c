/* Many ledger transactions written with few statements: an accrual pass
 * posts three rows per VM, and a statement per row (each with its own
 * balance update of the same few accounts) was most of its cost. */
#include "controller/ledger_batch.h"

#include "common/buf.h"
#include "controller/store_backend.h"

#include <errno.h>

struct batch_tx {
    char id[UUID_STR_LEN + 1];
    char *kind, *memo, *actor, *vm_id, *deal_id, *reverses; /* owned */
    int64_t time_s, seconds, upto_s;
    bool has_step; /* upto_s set (an accrual step) */
};

struct batch_entry {
    size_t tx;     /* index in txs */
    char *account; /* owned */
    int64_t amount;
};

struct ledger_batch {
    struct batch_tx *txs;
    size_t n_tx, cap_tx;
    struct batch_entry *entries;
    size_t n_entries, cap_entries;
    json_t *moved; /* account -> sum of its amounts in the batch */
};

struct ledger_batch *ledger_batch_new(void)
{
    struct ledger_batch *b = xcalloc(1, sizeof(*b));
    b->moved = json_object();
    return b;
}

static void batch_clear(struct ledger_batch *b)
{
    for (size_t i = 0; i < b->n_tx; i++) {
        struct batch_tx *t = &b->txs[i];
        free(t->kind);
        free(t->memo);
        free(t->actor);
        free(t->vm_id);
        free(t->deal_id);
        free(t->reverses);
    }
    for (size_t i = 0; i < b->n_entries; i++)
        free(b->entries[i].account);
    b->n_tx = 0;
    b->n_entries = 0;
    json_object_clear(b->moved);
}

void ledger_batch_free(struct ledger_batch *b)
{
    if (!b)
        return;
    batch_clear(b);
    free(b->txs);
    free(b->entries);
    json_decref(b->moved);
    free(b);
}

size_t ledger_batch_count(const struct ledger_batch *b) { return b->n_tx; }

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

int ledger_batch_add(struct ledger_batch *b, const struct ledger_tx *tx,
                     const struct ledger_post_info *info, int64_t now,
                     char ret_id[UUID_STR_LEN + 1])
{
    static const struct ledger_post_info none = { 0 };
    if (ledger_tx_check(tx) < 0)
        return -EINVAL;
    if (!info)
        info = &none;
    /* Each account's movement first: nothing is added when one overflows. */
    int64_t sums[tx->n];
    for (size_t i = 0; i < tx->n; i++) {
        json_t *v = json_object_get(b->moved, tx->e[i].account);
        if (__builtin_add_overflow(v ? json_integer_value(v) : 0,
                                   tx->e[i].amount, &sums[i]))
            return -ERANGE;
    }
    for (size_t i = 0; i < tx->n; i++)
        json_object_set_new(b->moved, tx->e[i].account,
                            json_integer((json_int_t)sums[i]));
    if (b->n_tx == b->cap_tx) {
        b->cap_tx = b->cap_tx ? 2 * b->cap_tx : 16;
        b->txs = xrealloc(b->txs, b->cap_tx * sizeof(*b->txs));
    }
    struct batch_tx *t = &b->txs[b->n_tx];
    *t = (struct batch_tx){ .kind = xstrdup(tx->kind),
                            .memo = xstrdup(tx->memo ? tx->memo : ""),
                            .actor = dup_or_null(info->actor),
                            .vm_id = dup_or_null(info->vm_id),
                            .deal_id = dup_or_null(info->deal_id),
                            .reverses = dup_or_null(tx->reverses),
                            .time_s = now,
                            .seconds = info->seconds,
                            .upto_s = info->upto_s,
                            .has_step = info->deal_id != NULL };
    uuid_generate_time_str(t->id);
    for (size_t i = 0; i < tx->n; i++) {
        if (b->n_entries == b->cap_entries) {
            b->cap_entries = b->cap_entries ? 2 * b->cap_entries : 32;
            b->entries = xrealloc(b->entries,
                                  b->cap_entries * sizeof(*b->entries));
        }
        b->entries[b->n_entries++] = (struct batch_entry){
            b->n_tx, xstrdup(tx->e[i].account), tx->e[i].amount };
    }
    if (ret_id)
        memcpy(ret_id, t->id, sizeof(t->id));
    b->n_tx++;
    return 0;
}

enum batch_stmt { STMT_TX, STMT_ENTRY, STMT_BALANCE, STMT_MAX };

static struct store_rows stmts[STMT_MAX] = {
    { ("INSERT INTO ledger_tx (id, time_s, kind, memo, actor, vm_id, "
       "deal_id, seconds, upto_s, reverses) VALUES "), "", 10, NULL, 0 },
    { "INSERT INTO ledger_entry (tx_id, account, amount, time_s) VALUES ", "",
      4, NULL, 0 },
    { "INSERT INTO ledger_balances (account, balance) VALUES ",
      (" ON CONFLICT (account) DO UPDATE SET balance = "
       "ledger_balances.balance + excluded.balance"), 2, NULL, 0 },
};

/* Write n rows of `which`, fill(i, args) giving row i's arguments. */
static int write_rows(struct store *s, enum batch_stmt which, size_t n,
                      void (*fill)(const void *ctx, size_t i,
                                   struct store_arg *args),
                      const void *ctx)
{
    int e = store_exec_rows(s, &stmts[which], n, fill, ctx);
    return e < 0 ? e : 0;
}

static void fill_tx(const void *ctx, size_t i, struct store_arg *a)
{
    const struct batch_tx *t = &((const struct ledger_batch *)ctx)->txs[i];
    a[0] = store_arg_s(t->id);
    a[1] = store_arg_i(t->time_s);
    a[2] = store_arg_s(t->kind);
    a[3] = store_arg_s(t->memo);
    a[4] = store_arg_s(t->actor);
    a[5] = store_arg_s(t->vm_id);
    a[6] = store_arg_s(t->deal_id);
    a[7] = store_arg_i(t->seconds);
    a[8] = t->has_step ? store_arg_i(t->upto_s) : store_arg_s(NULL);
    a[9] = store_arg_s(t->reverses);
}

static void fill_entry(const void *ctx, size_t i, struct store_arg *a)
{
    const struct ledger_batch *b = ctx;
    const struct batch_entry *en = &b->entries[i];
    a[0] = store_arg_s(b->txs[en->tx].id);
    a[1] = store_arg_s(en->account);
    a[2] = store_arg_i(en->amount);
    a[3] = store_arg_i(b->txs[en->tx].time_s);
}

/* The batch's accounts in a flat list, for fill_balance. */
struct moved {
    const char **account;
    int64_t *amount;
};

static void fill_balance(const void *ctx, size_t i, struct store_arg *a)
{
    const struct moved *m = ctx;
    a[0] = store_arg_s(m->account[i]);
    a[1] = store_arg_i(m->amount[i]);
}

int ledger_batch_post(struct store *s, struct ledger_batch *b)
{
    size_t n = json_object_size(b->moved), i = 0;
    _cleanup_free_ const char **account = xcalloc(n ? n : 1, sizeof(char *));
    _cleanup_free_ int64_t *amount = xcalloc(n ? n : 1, sizeof(int64_t));
    const char *k;
    json_t *v;
    json_object_foreach(b->moved, k, v) {
        account[i] = k;
        amount[i++] = json_integer_value(v);
    }
    struct moved m = { account, amount };
    int e = write_rows(s, STMT_TX, b->n_tx, fill_tx, b);
    /* Past the transactions, a duplicate is our bug, not a repeat. */
    if (e == 0 && (e = write_rows(s, STMT_ENTRY, b->n_entries, fill_entry,
                                  b)) == -EEXIST)
        e = -EIO;
    if (e == 0 && (e = write_rows(s, STMT_BALANCE, i, fill_balance,
                                  &m)) == -EEXIST)
        e = -EIO;
    batch_clear(b);
    return e;
}
