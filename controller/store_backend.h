/* What a store backend implements (store_sqlite.c, store_pg.c). store.c
 * picks one from the database address and does the shared work: locking,
 * migrations, argument checking. Rows are JSON objects keyed by column. */
#pragma once

#include "controller/store.h"

#include <pthread.h>
#include <stdarg.h>

/* One bound argument, already decoded from the caller's varargs. */
struct store_arg {
    char type;         /* 's', 'i', 'b' */
    const char *s;     /* NULL = SQL NULL */
    int64_t i;
};

static inline struct store_arg store_arg_s(const char *v)
{
    return (struct store_arg){ .type = 's', .s = v };
}

static inline struct store_arg store_arg_i(int64_t v)
{
    return (struct store_arg){ .type = 'i', .i = v };
}

struct store_ops {
    const char *name;
    /* 0 or -errno; *ret_conn is the backend's connection. */
    int (*open)(const char *address, void **ret_conn);
    void (*close)(void *conn);
    /* A read-only connection to the same database, for reads that must
     * not wait on the writer (sqlite in WAL mode); NULL where the backend
     * has none. 0 or -errno. */
    int (*open_reader)(const char *address, void **ret_conn);
    /* The lock every use of the writer's connection holds (store.c's),
     * for the backend's own threads that must not run beside a write;
     * NULL where the backend has none. */
    void (*share_lock)(void *conn, pthread_mutex_t *lock);
    /* Plain statements without arguments (BEGIN, migrations). */
    int (*exec_plain)(void *conn, const char *sql);
    /* Rows changed or -errno: -EEXIST (unique key), -ENOENT (a referenced
     * row is missing), -EINVAL (other constraints), -ENOSPC (disk or quota
     * full), -EBUSY (locked past the timeout), -EIO otherwise. When
     * ret_rows is not NULL, the result rows go there (JSON array). */
    int (*exec)(void *conn, const char *sql, const struct store_arg *args,
                size_t n, json_t **ret_rows);
    /* exec handing each result row to fn without a JSON object per row;
     * NULL where the backend has none (exec's rows are walked instead). */
    int (*exec_each)(void *conn, const char *sql, const struct store_arg *args,
                     size_t n, void (*fn)(struct store_row *row, void *data),
                     void *data);
    const char *begin_sql;
    /* A failed statement poisons the open transaction (PostgreSQL): the
     * front guards writes inside transactions with a savepoint. */
    bool error_aborts_tx;
    /* Run after begin_sql for a read-only snapshot (NULL: begin_sql's
     * transaction already sees one). */
    const char *snapshot_sql;
    /* Reads that share one read transaction cost less than each in its
     * own (store_snapshot_begin): sqlite, whose every read transaction
     * takes the WAL index's locks, shared by all connections. */
    bool shared_snapshot_pays;
    /* Leadership among controller replicas: true when this connection
     * holds (or just took) the lock; a single sqlite controller always
     * leads. */
    bool (*try_lead)(void *conn);
    /* False once the connection to the database server is lost; NULL for
     * an embedded database. */
    bool (*alive)(void *conn);
    /* Connect again after a loss, at most as often as a backoff allows:
     * 0 when connected, -EAGAIN while backing off, -EIO on failure. */
    int (*reconnect)(void *conn);
    /* Statement taking a lock named by ($1 kind, $2 id) until the end of
     * the transaction; NULL where one writer at a time already holds. */
    const char *lock_sql;
    /* Tell every replica that a node's desired state changed; the
     * listener calls on_node_changed(node_id) in each (PostgreSQL
     * NOTIFY/LISTEN). NULL for a single-process backend. */
    void (*notify)(void *conn, const char *node_id);
    int (*listen)(const char *address, void (*on_node_changed)(const char *,
                                                                void *),
                  void *data);
    void (*unlisten)(void);
};

extern const struct store_ops store_sqlite_ops;
extern const struct store_ops store_pg_ops;
