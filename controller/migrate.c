/* fog-controller migrate-store: the sqlite store's rows moved into
 * PostgreSQL. Both sides get their schema from the same migrations, so a
 * table has the same columns on both; rows are read from one sqlite read
 * snapshot (a serving controller keeps writing meanwhile) and written in
 * one PostgreSQL transaction that commits only once counts and ledger
 * balances match. Ids are UUIDs and counters live in rows, so there are
 * no database sequences to carry over. */
#include "controller/migrate.h"

#include "common/buf.h"
#include "common/jsonutil.h"
#include "controller/store_backend.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Rows per INSERT: PostgreSQL takes at most 65535 parameters. */
#define MIGRATE_BATCH 200

static void store_closep(struct store **s)
{
    store_close(*s);
}
#define _cleanup_store_ _cleanup_(store_closep)

/* Table and column names come from our own schema; anything else is
 * refused rather than quoted into SQL. */
static bool ident_ok(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

/* The tables to move, parents before children (by foreign keys), as a
 * JSON array of names. 0 or -errno. */
static int tables_ordered(struct store *src, json_t **ret)
{
    json_auto_t *rows = NULL;
    int r = store_query(src, &rows,
                        "SELECT name FROM sqlite_master WHERE type = 'table' "
                        "AND name NOT LIKE 'sqlite_%' AND name <> "
                        "'schema_migrations' ORDER BY name", "");
    if (r < 0)
        return r;
    size_t n = json_array_size(rows);
    json_auto_t *deps = json_object(), *order = json_array();
    for (size_t i = 0; i < n; i++) {
        const char *t = json_str(json_array_get(rows, i), "name");
        if (!ident_ok(t)) {
            fprintf(stderr, "fog-controller: migrate-store: unexpected table "
                            "name '%s'\n", t ? t : "");
            return -EINVAL;
        }
        json_t *fk = NULL;
        if ((r = store_query(src, &fk, "SELECT DISTINCT \"table\" AS parent "
                                       "FROM pragma_foreign_key_list($1)",
                             "s", t)) < 0)
            return r;
        json_object_set_new(deps, t, fk);
    }
    /* Kahn's order: a table goes once all its parents went. */
    while (json_array_size(order) < n) {
        bool progress = false;
        for (size_t i = 0; i < n; i++) {
            const char *t = json_str(json_array_get(rows, i), "name");
            json_t *fk = json_object_get(deps, t);
            if (!fk)
                continue; /* placed */
            bool ready = true;
            size_t k;
            json_t *p;
            json_array_foreach(fk, k, p) {
                const char *parent = json_str(p, "parent");
                if (parent && !streq(parent, t) &&
                    json_object_get(deps, parent))
                    ready = false;
            }
            if (!ready)
                continue;
            json_array_append_new(order, json_string(t));
            json_object_del(deps, t);
            progress = true;
        }
        if (!progress) {
            fprintf(stderr, "fog-controller: migrate-store: the tables' "
                            "foreign keys form a cycle\n");
            return -EINVAL;
        }
    }
    *ret = json_incref(order);
    return 0;
}

/* Column names of table t in their declared order. */
static int table_columns(struct store *src, const char *t, json_t **ret)
{
    json_auto_t *rows = NULL;
    int r = store_query(src, &rows, "SELECT name FROM pragma_table_info($1) "
                                    "ORDER BY cid", "s", t);
    if (r < 0)
        return r;
    size_t i;
    json_t *c;
    json_array_foreach(rows, i, c) {
        if (!ident_ok(json_str(c, "name"))) {
            fprintf(stderr, "fog-controller: migrate-store: unexpected "
                            "column name in table '%s'\n", t);
            return -EINVAL;
        }
    }
    *ret = json_incref(rows);
    return 0;
}

/* One row's values as arguments (strings borrowed from row). */
static int row_args(const char *t, json_t *cols, json_t *row,
                    struct store_arg *args)
{
    size_t i;
    json_t *c;
    json_array_foreach(cols, i, c) {
        json_t *v = json_object_get(row, json_str(c, "name"));
        if (!v || json_is_null(v)) {
            args[i] = (struct store_arg){ .type = 's', .s = NULL };
        } else if (json_is_integer(v)) {
            args[i] = (struct store_arg){ .type = 'i',
                                          .i = json_integer_value(v) };
        } else if (json_is_string(v)) {
            args[i] = (struct store_arg){ .type = 's',
                                          .s = json_string_value(v) };
        } else {
            fprintf(stderr, "fog-controller: migrate-store: table '%s' "
                            "column '%s' holds a value that is neither "
                            "integer nor text\n", t, json_str(c, "name"));
            return -EINVAL;
        }
    }
    return 0;
}

/* INSERT INTO t (cols) VALUES (...), ... for `nrows` rows. */
static char *insert_sql(const char *t, json_t *cols, size_t nrows)
{
    struct buf b = { 0 };
    size_t nc = json_array_size(cols), k;
    json_t *c;
    buf_printf(&b, "INSERT INTO %s (", t);
    json_array_foreach(cols, k, c)
        buf_printf(&b, "%s%s", k ? ", " : "", json_str(c, "name"));
    _cleanup_free_ char *values = store_values_sql(nrows, nc, NULL);
    buf_printf(&b, ") VALUES %s", values);
    return buf_steal(&b);
}

/* Copy table t's rows from the snapshot into dst; rows copied added to
 * *count. Pages by rowid so a big table is never held whole. */
static int copy_table(struct store *src, struct store *dst, const char *t,
                      int64_t *count)
{
    json_auto_t *cols = NULL;
    int r = table_columns(src, t, &cols);
    if (r < 0)
        return r;
    size_t nc = json_array_size(cols);
    _cleanup_free_ char *select = xasprintf(
        "SELECT rowid AS fog__rowid, * FROM %s WHERE rowid > $1 "
        "ORDER BY rowid LIMIT %d", t, MIGRATE_BATCH);
    _cleanup_free_ struct store_arg *args =
        xcalloc(nc * MIGRATE_BATCH, sizeof(*args));
    int64_t after = -1;
    for (;;) {
        json_auto_t *rows = NULL;
        if ((r = store_query(src, &rows, select, "i", after)) < 0)
            return r;
        size_t n = json_array_size(rows);
        if (n == 0)
            return 0;
        for (size_t i = 0; i < n; i++)
            if ((r = row_args(t, cols, json_array_get(rows, i),
                              args + i * nc)) < 0)
                return r;
        _cleanup_free_ char *ins = insert_sql(t, cols, n);
        if ((r = store_execa(dst, ins, args, n * nc)) < 0) {
            fprintf(stderr, "fog-controller: migrate-store: writing table "
                            "'%s' failed: %s\n", t, strerror(-r));
            return r;
        }
        *count += (int64_t)n;
        after = json_int(json_array_get(rows, n - 1), "fog__rowid", after);
        if (n < MIGRATE_BATCH)
            return 0;
    }
}

/* Each ledger account's balance as {account: sum}, from the entries. */
static int ledger_sums(struct store *s, json_t **ret)
{
    json_auto_t *rows = NULL;
    int r = store_query(s, &rows, "SELECT account, SUM(amount) AS total FROM "
                                  "ledger_entry GROUP BY account", "");
    if (r < 0)
        return r;
    json_t *sums = json_object();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_object_set_new(sums, json_str(row, "account"),
                            json_integer(json_int(row, "total", 0)));
    *ret = sums;
    return 0;
}

/* Rows in table t, or def when it cannot be counted. */
static int64_t table_count(struct store *s, const char *t, int64_t def)
{
    _cleanup_free_ char *sql = xasprintf("SELECT COUNT(*) FROM %s", t);
    return store_query_int(s, def, sql, "");
}

/* Counts of every table and the ledger as seen by both sides. */
static int verify(struct store *src, struct store *dst, json_t *tables,
                  struct migrate_report *rep)
{
    size_t i;
    json_t *t;
    json_array_foreach(tables, i, t) {
        int64_t a = table_count(src, json_string_value(t), -1);
        int64_t b = table_count(dst, json_string_value(t), -2);
        if (a != b) {
            fprintf(stderr, "fog-controller: migrate-store: table '%s' has "
                            "%lld rows in sqlite but %lld in PostgreSQL\n",
                    json_string_value(t), (long long)a, (long long)b);
            return -EIO;
        }
    }
    json_auto_t *sa = NULL, *sb = NULL;
    int r = ledger_sums(src, &sa);
    if (r == 0)
        r = ledger_sums(dst, &sb);
    if (r < 0)
        return r;
    if (!json_equal(sa, sb)) {
        fprintf(stderr, "fog-controller: migrate-store: ledger balances "
                        "differ after the copy\n");
        return -EIO;
    }
    /* The running balances agree with the entries they sum, on arrival
     * as they did at the source. */
    json_auto_t *bal = NULL;
    if ((r = store_query(dst, &bal, "SELECT account, balance FROM "
                                    "ledger_balances", "")) < 0)
        return r;
    json_t *row;
    json_array_foreach(bal, i, row) {
        const char *acct = json_str(row, "account");
        json_t *e = json_object_get(sb, acct ? acct : "");
        int64_t want = e ? json_integer_value(e) : 0;
        if (json_int(row, "balance", 0) != want) {
            fprintf(stderr, "fog-controller: migrate-store: ledger account "
                            "'%s' balance %lld does not sum its entries "
                            "(%lld)\n", acct ? acct : "",
                    (long long)json_int(row, "balance", 0), (long long)want);
            return -EIO;
        }
    }
    rep->accounts = (unsigned)json_object_size(sb);
    rep->ledger_total = store_query_int(dst, 0, "SELECT COALESCE(SUM(amount), "
                                                "0) FROM ledger_entry", "");
    return 0;
}

/* 0 when dst holds no row in any of the tables. */
static int check_empty(struct store *dst, json_t *tables)
{
    size_t i;
    json_t *t;
    json_array_foreach(tables, i, t) {
        int64_t n = table_count(dst, json_string_value(t), -1);
        if (n != 0) {
            fprintf(stderr, "fog-controller: migrate-store: the destination "
                            "is not empty (table '%s' has %lld rows): "
                            "refusing to merge stores\n",
                    json_string_value(t), (long long)n);
            return -EEXIST;
        }
    }
    return 0;
}

int migrate_store(const char *from, const char *to, struct migrate_report *ret)
{
    if (!startswith(to, "postgresql://") && !startswith(to, "postgres://")) {
        fprintf(stderr, "fog-controller: migrate-store: --to must be a "
                        "postgresql:// address, not '%s'\n", to);
        return -EINVAL;
    }
    if (startswith(from, "postgresql://") || startswith(from, "postgres://")) {
        fprintf(stderr, "fog-controller: migrate-store: --from must be a "
                        "sqlite store (fog.db)\n");
        return -EINVAL;
    }
    if (access(from, R_OK) < 0) {
        int r = -errno;
        fprintf(stderr, "fog-controller: migrate-store: cannot read '%s': "
                        "%s\n", from, strerror(-r));
        return r;
    }
    _cleanup_store_ struct store *src = NULL;
    _cleanup_store_ struct store *dst = NULL;
    int r = store_open(from, &src);
    if (r < 0) {
        fprintf(stderr, "fog-controller: migrate-store: cannot open the "
                        "sqlite store '%s'\n", from);
        return r;
    }
    if ((r = store_open(to, &dst)) < 0) {
        fprintf(stderr, "fog-controller: migrate-store: cannot open the "
                        "PostgreSQL store\n");
        return r;
    }
    if (store_schema_version(src) != store_schema_version(dst)) {
        fprintf(stderr, "fog-controller: migrate-store: schema versions "
                        "differ (sqlite %u, PostgreSQL %u)\n",
                store_schema_version(src), store_schema_version(dst));
        return -ESTALE;
    }
    /* One read snapshot on a reader connection: the serving controller's
     * writes go on, none of them lands half in the copy. */
    store_route_reads(src, true);
    if ((r = store_tx_begin_read(src)) < 0)
        return r;
    struct migrate_report rep = { 0 };
    json_auto_t *tables = NULL;
    bool dst_tx = false;
    if ((r = tables_ordered(src, &tables)) < 0)
        goto out;
    if ((r = store_tx_begin(dst)) < 0)
        goto out;
    dst_tx = true;
    if ((r = check_empty(dst, tables)) < 0)
        goto out;
    size_t i;
    json_t *t;
    json_array_foreach(tables, i, t) {
        if ((r = copy_table(src, dst, json_string_value(t), &rep.rows)) < 0)
            goto out;
        rep.tables++;
    }
    if ((r = verify(src, dst, tables, &rep)) < 0)
        goto out;
    dst_tx = false;
    if ((r = store_tx_commit(dst)) < 0) {
        fprintf(stderr, "fog-controller: migrate-store: commit failed: %s\n",
                strerror(-r));
        goto out;
    }
    if (ret)
        *ret = rep;
out:
    if (dst_tx)
        store_tx_rollback(dst);
    store_tx_rollback(src);
    store_route_reads(src, false);
    return r;
}
