/* The controller's state store. One interface; the embedded backend is
 * sqlite3 (store_sqlite.c). SQL is written portably with $1..$n
 * placeholders so the same statements run on PostgreSQL.
 *
 * Writes are serialised by one lock; a transaction holds it from
 * store_tx_begin() to store_tx_commit()/store_tx_rollback(). Reads of
 * threads routed to readers (store_route_reads) bypass it. Rows come back
 * as jansson objects keyed by column name (integers as JSON integers, NULL as
 * JSON null). */
#pragma once

#include "common/util.h"

#include <jansson.h>

struct store;

/* Open (creating) the database and apply pending migrations: a file path
 * for sqlite, a postgresql:// URI for PostgreSQL.
 * 0 or -errno. */
int store_open(const char *path, struct store **ret);
void store_close(struct store *s);
/* Highest applied migration version. */
unsigned store_schema_version(struct store *s);
/* "sqlite" or "postgresql". */
const char *store_backend_name(struct store *s);

/* True when this controller runs the scheduler and health checks: always
 * with sqlite; with PostgreSQL, the replica holding an advisory lock. */
bool store_try_lead(struct store *s);
/* True while the last store_try_lead() succeeded and the connection that
 * holds the lock has not been lost since: a leader that lost it stops
 * acting until store_try_lead() takes the lock again. */
bool store_leading(struct store *s);
/* Store reachable and migrations current: 0, -EIO when the database cannot
 * be reached, -ESTALE when it lacks migrations this build has. The applied
 * version goes to *ret_version on 0 and -ESTALE. */
int store_ready(struct store *s, unsigned *ret_version);
/* Announce a node's changed desired state to every replica (no-op with
 * sqlite, where there is only one). */
void store_notify_node(struct store *s, const char *node_id);
/* Call fn(node_id, data) when another replica announces a change.
 * 0 or -errno; no-op with sqlite. */
int store_listen(struct store *s, void (*fn)(const char *, void *), void *data);

/* Send the calling thread's reads (SELECTs outside a write transaction,
 * and its store_tx_begin_read() transactions) to read-only connections
 * when on, so they never wait for the writer; off: everything goes to the
 * writer. Request threads turn it on for GET and HEAD. No-op where the
 * backend has no readers (PostgreSQL). */
void store_route_reads(struct store *s, bool on);
/* Whether the calling thread's reads go to read-only connections. */
bool store_reads_routed(struct store *s);

/* The calling thread's reads until store_snapshot_end() share one
 * snapshot on one reader, where the backend gains by it: with sqlite each
 * read outside a transaction is a transaction of its own, and starting
 * and ending one takes locks that every connection of the process shares
 * (the WAL index's). A request's reads then take them once, not once per
 * statement, and see one state of the store. A no-op where the backend
 * gains nothing (PostgreSQL), inside a transaction, or when every reader
 * is busy (the reads then go one by one, as without it). A write by the
 * thread meanwhile ends it, so the thread's later reads see that write.
 * Never to be held across a wait: a request parked for a long poll ends it
 * first. */
void store_snapshot_begin(struct store *s);
void store_snapshot_end(struct store *s);

/* The store's one slot for state derived from it (the scheduler's fleet
 * cache): the address of the slot, whose value store_close() hands to
 * free_fn (the first caller's). The caller serialises access. */
void **store_slot(struct store *s, void (*free_fn)(void *));

/* Transactions nest: the outermost is a real transaction, inner ones are
 * savepoints that commit into (or roll back out of) the outer one. 0 or
 * -errno; a failed begin leaves nothing open. A lost connection is made
 * again (with backoff) at the next outermost store_tx_begin() or statement
 * outside a transaction. */
int store_tx_begin(struct store *s);
/* A transaction that only reads, seeing one consistent snapshot of the
 * store (REPEATABLE READ on PostgreSQL); end it with store_tx_rollback(). */
int store_tx_begin_read(struct store *s);
/* 0, -EAGAIN when a statement of the transaction lost a conflict with
 * another replica's (it was rolled back: run it again, at most
 * STORE_TX_RETRIES times), -EIO. */
int store_tx_commit(struct store *s);
#define STORE_TX_RETRIES 8
void store_tx_rollback(struct store *s);
/* True when a statement or the commit of the calling thread's last write
 * transaction lost a conflict with another replica's (serialization
 * failure, deadlock). Once that transaction was rolled back (or its
 * commit failed), running it again may well succeed. */
bool store_tx_lost_conflict(struct store *s);
/* True when the calling thread reads in a transaction that has written
 * nothing (store_tx_begin_read()'s, or one nested in it): what it reads
 * was committed, and may be kept past it. */
bool store_reads_committed(struct store *s);
/* True when the calling thread has a transaction open. */
bool store_in_tx(struct store *s);

/* Arguments are described by `types`, one letter each:
 *   's' const char * (NULL binds SQL NULL)   'i' int64_t   'b' bool (int)
 * store_exec returns the number of rows changed or -errno: -EEXIST on a
 * uniqueness violation, -ENOENT when a referenced row is missing, -EINVAL on
 * another constraint, -ENOSPC when the disk is full, -EBUSY when the store
 * stayed locked, -EAGAIN when the transaction lost a conflict
 * (serialization failure, deadlock), -EIO on other errors. */
int store_exec(struct store *s, const char *sql, const char *types, ...);
/* store_exec with the arguments as an array (struct store_arg, see
 * store_backend.h), for statements whose argument count is known only at
 * run time (bulk copies). Same returns as store_exec. */
struct store_arg;
int store_execa(struct store *s, const char *sql, const struct store_arg *args,
                size_t n);
/* "($1, $2), ($3, $4)": the VALUES rows of a statement taking `rows`
 * rows of `cols` arguments each, numbered from $1 (row by row), for
 * store_execa. With types (one SQL type name per column, or NULL), each
 * placeholder is CAST to its column's type, for VALUES whose types the
 * server cannot infer (PostgreSQL, outside INSERT). Caller frees. */
char *store_values_sql(size_t rows, size_t cols, const char *const *types);
/* A statement writing many rows: head, the VALUES rows of `cols`
 * arguments (cast to `types` when not NULL, as store_values_sql), then
 * tail. Its texts, for 2^k rows up to 2^max_log2 (0: STORE_ROWS_MAX),
 * are made once and kept (the store keeps each prepared): declare one
 * static per statement, e.g. static struct store_rows st = { head, tail,
 * cols, NULL, 0 }. sqlite's parse of a statement costs the square of its
 * "$N" count: thousands of them cost milliseconds each time the
 * statement is prepared again (a new connection, a full cache). */
#define STORE_ROWS_MAX_LOG2 7
#define STORE_ROWS_MAX (1u << STORE_ROWS_MAX_LOG2)
struct store_rows {
    const char *head, *tail;
    size_t cols;
    const char *const *types;
    unsigned max_log2;
    char *_Atomic text[STORE_ROWS_MAX_LOG2 + 1];
};
/* Write n rows through st, in statements of at most 2^max_log2 rows
 * (a remainder in smaller powers of two), fill(ctx, i, args) giving row
 * i's st->cols arguments. The count of rows the statements changed, or
 * store_exec's -errno of the first that failed (the rows before it are
 * written: the caller rolls back). */
int store_exec_rows(struct store *s, struct store_rows *st, size_t n,
                    void (*fill)(const void *ctx, size_t i,
                                 struct store_arg *args),
                    const void *ctx);
/* Inside a transaction: wait for, then hold until it ends, the lock named
 * (kind, id) (id may be NULL), so that read-then-write allocations of other
 * replicas' transactions naming it go one after the other; statements after
 * it see what they committed. No-op with sqlite, where one writer at a
 * time already holds. 0, -EAGAIN (deadlock: run the transaction again) or
 * -EIO. */
int store_lock(struct store *s, const char *kind, const char *id);
/* All rows as a JSON array (caller owns). 0 or -EIO. */
int store_query(struct store *s, json_t **ret_rows, const char *sql,
                const char *types, ...);
/* The first row (caller owns); -ENOENT when there is none. */
int store_query_one(struct store *s, json_t **ret_row, const char *sql,
                    const char *types, ...);
/* A column's value in a row that store_query_each() hands out; text is
 * NUL-terminated and lives as long as the row. */
enum store_type { STORE_NULL, STORE_INT, STORE_TEXT, STORE_TYPE_MAX };
struct store_value {
    enum store_type type;
    int64_t i;
    const char *s;
    size_t len;
};
/* One result row, valid only during the callback it is handed to (or
 * as long as the JSON row of store_row_of_json()). The backend fills it:
 * get() looks a column up by name, starting where the last lookup
 * matched (hint), as columns are mostly asked for in order. */
struct store_row {
    struct store_value (*get)(struct store_row *r, const char *col);
    void *impl;
    int hint;
};
/* The value of column col; STORE_NULL when the row has no such column. */
struct store_value store_row_get(struct store_row *r, const char *col);
/* Integer column col, def when it is not an integer. */
int64_t store_row_int(struct store_row *r, const char *col, int64_t def);
/* Text column col (NUL-terminated), NULL when it is not text. */
const char *store_row_str(struct store_row *r, const char *col);
/* A row of store_query() / store_query_one() seen as a store_row, for
 * code that takes both (row is borrowed). */
void store_row_of_json(json_t *row, struct store_row *ret);
/* Call fn(row, data) for each result row, in order, without building a
 * JSON object per row (where the backend can: sqlite; otherwise through
 * one). 0 or -errno as store_query. */
int store_query_each(struct store *s, void (*fn)(struct store_row *row,
                                                 void *data),
                     void *data, const char *sql, const char *types, ...);
/* Single integer of the first column of the first row (def if none). */
int64_t store_query_int(struct store *s, int64_t def, const char *sql,
                        const char *types, ...);
