/* The controller's state store. One interface; the embedded backend is
 * sqlite3 (store_sqlite.c). SQL is written portably with $1..$n
 * placeholders so the same statements run on PostgreSQL.
 *
 * Every call is serialised by one lock; a transaction holds it from
 * store_tx_begin() to store_tx_commit()/store_tx_rollback(). Rows come back
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
/* Announce a node's changed desired state to every replica (no-op with
 * sqlite, where there is only one). */
void store_notify_node(struct store *s, const char *node_id);
/* Call fn(node_id, data) when another replica announces a change.
 * 0 or -errno; no-op with sqlite. */
int store_listen(struct store *s, void (*fn)(const char *, void *), void *data);

/* Transactions nest: the outermost is a real transaction, inner ones are
 * savepoints that commit into (or roll back out of) the outer one. 0 or
 * -errno; a failed begin leaves nothing open. */
int store_tx_begin(struct store *s);
/* A transaction that only reads, seeing one consistent snapshot of the
 * store (REPEATABLE READ on PostgreSQL); end it with store_tx_rollback(). */
int store_tx_begin_read(struct store *s);
int store_tx_commit(struct store *s);
void store_tx_rollback(struct store *s);
/* True when the calling thread has a transaction open. */
bool store_in_tx(struct store *s);

/* Arguments are described by `types`, one letter each:
 *   's' const char * (NULL binds SQL NULL)   'i' int64_t   'b' bool (int)
 * store_exec returns the number of rows changed or -errno: -EEXIST on a
 * uniqueness violation, -ENOENT when a referenced row is missing, -EINVAL on
 * another constraint, -ENOSPC when the disk is full, -EBUSY when the store
 * stayed locked, -EIO on other errors. */
int store_exec(struct store *s, const char *sql, const char *types, ...);
/* All rows as a JSON array (caller owns). 0 or -EIO. */
int store_query(struct store *s, json_t **ret_rows, const char *sql,
                const char *types, ...);
/* The first row (caller owns); -ENOENT when there is none. */
int store_query_one(struct store *s, json_t **ret_row, const char *sql,
                    const char *types, ...);
/* Single integer of the first column of the first row (def if none). */
int64_t store_query_int(struct store *s, int64_t def, const char *sql,
                        const char *types, ...);
