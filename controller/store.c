/* The store front: picks the backend from the address (a path for sqlite,
 * postgresql:// for PostgreSQL), serialises writes with one recursive lock,
 * sends a request thread's reads to a small pool of read-only connections
 * where the backend has them, applies the numbered migrations, and decodes
 * typed arguments. */
#include "controller/store.h"

#include "common/buf.h"
#include "common/fs.h"

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/schema.h"
#include "controller/store_backend.h"

#include <assert.h>
#include <errno.h>
#include <time.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

/* Read-only connections, opened on first use: enough that the request
 * threads rarely queue for one. */
#define STORE_READERS 4

struct store_reader {
    pthread_mutex_t lock;
    void *conn;
    bool failed;        /* cannot be opened here: reads go to the writer */
    int64_t retry_at_ms; /* a server's reader that failed: try again then */
};
/* How long reads go to the writer after a database server's reader could
 * not be opened or reconnected. */
#define READER_RETRY_MS 2000

struct store {
    const struct store_ops *ops;
    struct store_reader readers[STORE_READERS];
    void *conn;
    char *address;
    bool listening;
    bool leading;
    /* Depth of the transaction a statement lost a conflict in (0: none):
     * rolling back to a savepoint below it heals the transaction, else
     * its commit answers -EAGAIN. */
    unsigned conflict_at;
    pthread_mutex_t lock;
    unsigned tx_depth; /* open transactions of the lock's holder */
    bool tx_reading;   /* the outermost is store_tx_begin_read()'s */
    void *slot;        /* store_slot() */
    void (*slot_free)(void *);
};

/* What the calling thread does with a store: which one's reads go to the
 * readers (store_route_reads), which one it holds a write transaction of,
 * and the reader that holds its read-only transaction, if any. */
static __thread struct store *tls_reads, *tls_writing, *tls_pinned_store;
static __thread struct store_reader *tls_pinned;
static __thread unsigned tls_pinned_depth;
/* The store whose store_snapshot_begin() holds one level of this
 * thread's pinned reader, while it lasts. */
static __thread struct store *tls_snapshot;
/* A statement of this thread's current (or last) write transaction, or
 * its commit, lost a conflict with another's. */
static __thread bool tls_lost_conflict;

void store_route_reads(struct store *s, bool on)
{
    tls_reads = on ? s : NULL;
}

bool store_reads_routed(struct store *s)
{
    return tls_reads == s;
}

static bool sql_reads(const char *sql)
{
    return strncmp(sql, "SELECT", 6) == 0;
}

/* A reader for this thread's statement, locked, or NULL for the writer:
 * only reads, only from threads routed to readers, never inside a write
 * transaction (which must see its own writes). With !wait, NULL as well
 * when every reader is busy. */
static struct store_reader *reader_take(struct store *s, bool wait)
{
    if (!s->ops->open_reader || tls_reads != s || tls_writing == s)
        return NULL;
    static __thread unsigned spin;
    struct store_reader *rd = NULL;
    for (size_t i = 0; i < STORE_READERS && !rd; i++) {
        struct store_reader *c = &s->readers[(spin + i) % STORE_READERS];
        if (pthread_mutex_trylock(&c->lock) == 0)
            rd = c;
    }
    if (!rd && !wait)
        return NULL;
    if (!rd) {
        rd = &s->readers[spin++ % STORE_READERS];
        pthread_mutex_lock(&rd->lock);
    }
    /* A server's reader (PostgreSQL) may lose its session to a restart:
     * it opens a new one (at most every READER_RETRY_MS), and meanwhile
     * its reads go to the writer. An embedded database's reader (sqlite)
     * that cannot open never will. */
    int64_t now = mono_ms();
    if (rd->conn && s->ops->alive && !s->ops->alive(rd->conn)) {
        s->ops->close(rd->conn);
        rd->conn = NULL;
    }
    if (!rd->conn && !rd->failed && now >= rd->retry_at_ms) {
        int r = s->ops->open_reader(s->address, &rd->conn);
        if (r < 0 && !s->ops->alive)
            rd->failed = true;
        else if (r < 0)
            rd->retry_at_ms = now + READER_RETRY_MS;
    }
    if (!rd->conn) {
        pthread_mutex_unlock(&rd->lock);
        return NULL;
    }
    return rd;
}

static void reader_give(struct store_reader *rd)
{
    pthread_mutex_unlock(&rd->lock);
}

/* Notice a lost connection (with the lock held): leadership went with the
 * session; outside a transaction, connect again (a statement inside one
 * must not silently run in a new session). */
static void store_watch(struct store *s)
{
    if (!s->ops->alive || s->ops->alive(s->conn))
        return;
    s->leading = false;
    if (s->tx_depth == 0)
        s->ops->reconnect(s->conn);
}

static int migrate(struct store *s)
{
    int r = s->ops->exec_plain(s->conn,
                               "CREATE TABLE IF NOT EXISTS schema_migrations ("
                               " version INTEGER PRIMARY KEY, name TEXT NOT "
                               "NULL, applied_at BIGINT NOT NULL)");
    if (r < 0)
        return r;
    int64_t have = store_query_int(s, 0, "SELECT MAX(version) FROM "
                                         "schema_migrations", "");
    for (unsigned i = 0; i < schema_migration_count; i++) {
        const struct schema_migration *m = &schema_migrations[i];
        if (m->version <= have)
            continue;
        if ((r = store_tx_begin(s)) < 0)
            return r;
        if (s->ops->exec_plain(s->conn, m->sql) < 0 ||
            store_exec(s, "INSERT INTO schema_migrations (version, name, "
                          "applied_at) VALUES ($1, $2, $3)", "isi",
                       (int64_t)m->version, m->name, now_s()) < 0) {
            store_tx_rollback(s);
            log_error("store: migration %s failed", m->name);
            return -EIO;
        }
        if ((r = store_tx_commit(s)) < 0)
            return r;
        log_debug("store: applied migration %s", m->name);
    }
    return 0;
}

int store_open(const char *address, struct store **ret)
{
    struct store *s = xcalloc(1, sizeof(*s));
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&s->lock, &a);
    pthread_mutexattr_destroy(&a);
    for (size_t i = 0; i < STORE_READERS; i++)
        pthread_mutex_init(&s->readers[i].lock, NULL);
    s->ops = startswith(address, "postgresql://") ||
                     startswith(address, "postgres://")
                 ? &store_pg_ops
                 : &store_sqlite_ops;
    s->address = xstrdup(address);
    int r = s->ops->open(address, &s->conn);
    if (r >= 0 && s->ops->share_lock)
        s->ops->share_lock(s->conn, &s->lock);
    if (r < 0 || (r = migrate(s)) < 0) {
        store_close(s);
        return r < 0 ? r : -EIO;
    }
    *ret = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    if (s->listening && s->ops->unlisten)
        s->ops->unlisten();
    if (s->slot_free)
        s->slot_free(s->slot);
    if (s->conn)
        s->ops->close(s->conn);
    for (size_t i = 0; i < STORE_READERS; i++) {
        if (s->readers[i].conn)
            s->ops->close(s->readers[i].conn);
        pthread_mutex_destroy(&s->readers[i].lock);
    }
    pthread_mutex_destroy(&s->lock);
    free(s->address);
    free(s);
}

const char *store_backend_name(struct store *s) { return s->ops->name; }

void **store_slot(struct store *s, void (*free_fn)(void *))
{
    if (!s->slot_free)
        s->slot_free = free_fn;
    return &s->slot;
}

unsigned store_schema_version(struct store *s)
{
    return (unsigned)store_query_int(s, 0, "SELECT MAX(version) FROM "
                                           "schema_migrations", "");
}

bool store_try_lead(struct store *s)
{
    if (!s->ops->try_lead)
        return true;
    pthread_mutex_lock(&s->lock);
    store_watch(s);
    bool r = s->ops->try_lead(s->conn);
    s->leading = r;
    pthread_mutex_unlock(&s->lock);
    return r;
}

bool store_leading(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    bool r = !s->ops->try_lead || s->leading;
    pthread_mutex_unlock(&s->lock);
    return r;
}

int store_lock(struct store *s, const char *kind, const char *id)
{
    if (!s->ops->lock_sql)
        return 0;
    int r = store_exec(s, s->ops->lock_sql, "ss", kind, id ? id : "");
    return r < 0 ? r : 0;
}

int store_ready(struct store *s, unsigned *ret_version)
{
    json_auto_t *row = NULL;
    if (store_query_one(s, &row, "SELECT MAX(version) AS v FROM "
                                 "schema_migrations", "") < 0)
        return -EIO;
    unsigned have = (unsigned)json_int(row, "v", 0), want = 0;
    for (unsigned i = 0; i < schema_migration_count; i++)
        if (schema_migrations[i].version > want)
            want = schema_migrations[i].version;
    *ret_version = have;
    return have >= want ? 0 : -ESTALE;
}

void store_notify_node(struct store *s, const char *node_id)
{
    if (!s->ops->notify)
        return;
    pthread_mutex_lock(&s->lock);
    store_watch(s);
    s->ops->notify(s->conn, node_id);
    pthread_mutex_unlock(&s->lock);
}

int store_listen(struct store *s, void (*fn)(const char *, void *), void *data)
{
    if (!s->ops->listen)
        return 0;
    int r = s->ops->listen(s->address, fn, data);
    s->listening = r == 0;
    return r;
}

/* The outermost transaction is a real BEGIN; one opened inside it (a
 * handler's own, inside the request's) is a SAVEPOINT, so the inner one
 * can roll back alone while the outer decides for the whole. The recursive
 * lock makes the depth belong to one thread at a time. */
int store_tx_begin(struct store *s)
{
    store_snapshot_end(s); /* the thread's reads after this see its write */
    pthread_mutex_lock(&s->lock);
    int r;
    if (s->tx_depth == 0) {
        store_watch(s);
        r = s->ops->exec_plain(s->conn, s->ops->begin_sql);
        /* A connection found lost by BEGIN itself: nothing ran yet, so
         * begin once more on the new one. */
        if (r < 0 && s->ops->alive && !s->ops->alive(s->conn)) {
            store_watch(s);
            if (s->ops->alive(s->conn))
                r = s->ops->exec_plain(s->conn, s->ops->begin_sql);
        }
        s->conflict_at = 0;
        s->tx_reading = false;
        tls_lost_conflict = false;
    } else {
        char sql[48];
        snprintf(sql, sizeof(sql), "SAVEPOINT fog_sp%u", s->tx_depth);
        r = s->ops->exec_plain(s->conn, sql);
    }
    if (r < 0) {
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    s->tx_depth++;
    tls_writing = s;
    return 0;
}

/* A read-only transaction on a reader: the snapshot starts with its first
 * read and lasts until the rollback. 0, or -EAGAIN when no reader serves
 * this thread (the writer takes it) or, with !wait, none is free. */
static int reader_tx_begin(struct store *s, bool wait)
{
    if (tls_writing == s)
        return -EAGAIN; /* inside a write transaction: its snapshot */
    if (tls_pinned_store == s) {
        tls_pinned_depth++;
        return 0;
    }
    if (tls_pinned_store)
        return -EAGAIN; /* one pinned reader per thread */
    struct store_reader *rd = reader_take(s, wait);
    if (!rd)
        return -EAGAIN;
    int r = s->ops->exec_plain(rd->conn, "BEGIN");
    /* One snapshot for the whole read where a transaction does not
     * already give one (PostgreSQL's READ COMMITTED). */
    if (r == 0 && s->ops->snapshot_sql &&
        (r = s->ops->exec_plain(rd->conn, s->ops->snapshot_sql)) < 0)
        s->ops->exec_plain(rd->conn, "ROLLBACK");
    if (r < 0) {
        reader_give(rd);
        return r;
    }
    tls_pinned_store = s;
    tls_pinned = rd;
    tls_pinned_depth = 1;
    return 0;
}

/* End this thread's read-only transaction (or one level of it). */
static void reader_tx_end(void)
{
    if (--tls_pinned_depth > 0)
        return;
    tls_pinned_store->ops->exec_plain(tls_pinned->conn, "ROLLBACK");
    reader_give(tls_pinned);
    tls_pinned = NULL;
    tls_pinned_store = NULL;
}

void store_snapshot_end(struct store *s)
{
    if (tls_snapshot != s)
        return;
    tls_snapshot = NULL;
    reader_tx_end();
}

void store_snapshot_begin(struct store *s)
{
    store_snapshot_end(s); /* one left open must not serve a later read */
    /* A reader taken without waiting: with every reader held by another
     * thread's snapshot, this one's reads queue one statement at a time,
     * not a request at a time. */
    if (s->ops->shared_snapshot_pays && !tls_pinned_store &&
        reader_tx_begin(s, false) == 0)
        tls_snapshot = s;
}

int store_tx_begin_read(struct store *s)
{
    int r = reader_tx_begin(s, true);
    if (r != -EAGAIN)
        return r;
    r = store_tx_begin(s);
    if (r == 0 && s->tx_depth == 1)
        s->tx_reading = true;
    /* Inside another transaction the snapshot is that one's. */
    if (r < 0 || !s->ops->snapshot_sql || s->tx_depth > 1)
        return r;
    if (s->ops->exec_plain(s->conn, s->ops->snapshot_sql) < 0) {
        store_tx_rollback(s);
        return -EIO;
    }
    return 0;
}

int store_tx_commit(struct store *s)
{
    int r;
    if (tls_pinned_store == s && tls_writing != s) {
        reader_tx_end();
        return 0;
    }
    assert(s->tx_depth > 0);
    s->tx_depth--;
    if (s->tx_depth == 0)
        tls_writing = NULL;
    if (s->tx_depth == 0) {
        /* Test seam: a store that takes a second to commit, so a test
         * sees what others do in between. */
        if (fs_test_fault("FOG_TEST_FAULT", "commit-slow"))
            nanosleep(&(struct timespec){ 1, 0 }, NULL);
        /* After a lost conflict PostgreSQL answers COMMIT with a
         * rollback. */
        r = s->conflict_at ? -EAGAIN : s->ops->exec_plain(s->conn, "COMMIT");
        if (r < 0)
            s->ops->exec_plain(s->conn, "ROLLBACK");
        /* A conflict found at COMMIT (SERIALIZABLE) counts the same. */
        if (r == -EAGAIN)
            tls_lost_conflict = true;
    } else {
        char sql[48];
        snprintf(sql, sizeof(sql), "RELEASE SAVEPOINT fog_sp%u", s->tx_depth);
        r = s->ops->exec_plain(s->conn, sql);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

void store_tx_rollback(struct store *s)
{
    if (tls_pinned_store == s && tls_writing != s) {
        reader_tx_end();
        return;
    }
    assert(s->tx_depth > 0);
    s->tx_depth--;
    if (s->tx_depth == 0)
        tls_writing = NULL;
    if (s->tx_depth == 0) {
        s->ops->exec_plain(s->conn, "ROLLBACK");
    } else {
        char sql[96];
        snprintf(sql, sizeof(sql),
                 "ROLLBACK TO SAVEPOINT fog_sp%u; RELEASE SAVEPOINT fog_sp%u",
                 s->tx_depth, s->tx_depth);
        s->ops->exec_plain(s->conn, sql);
        if (s->conflict_at > s->tx_depth)
            s->conflict_at = 0; /* the conflict went with the savepoint */
    }
    pthread_mutex_unlock(&s->lock);
}

bool store_reads_committed(struct store *s)
{
    if (tls_pinned_store == s && tls_writing != s)
        return true;
    return tls_writing == s && s->tx_reading;
}

bool store_tx_lost_conflict(struct store *s)
{
    (void)s;
    return tls_lost_conflict;
}

bool store_in_tx(struct store *s)
{
    /* A snapshot of store_snapshot_begin()'s alone is no transaction. */
    if (tls_pinned_store == s &&
        !(tls_snapshot == s && tls_pinned_depth == 1))
        return true;
    /* Without waiting: a lock another thread holds is no transaction of
     * this one's (a scheduler's refresh asks while a POST writes). */
    if (pthread_mutex_trylock(&s->lock) != 0)
        return false;
    bool r = s->tx_depth > 0;
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* Where a statement's result rows go: an array of JSON objects, or each
 * row to a callback; both NULL for none. */
struct sink {
    json_t **rows;
    void (*fn)(struct store_row *row, void *data);
    void *data;
};

static int run_args(struct store *s, const char *sql,
                    const struct store_arg *args, size_t n,
                    const struct sink *out);

/* Decode varargs per the type letters; count must match the placeholders
 * ("$1".."$n"), which the backend checks. */
static int run_to(struct store *s, const char *sql, const char *types,
                  va_list ap, const struct sink *out)
{
    size_t n = strlen(types);
    struct store_arg *args = xcalloc(n ? n : 1, sizeof(*args));
    for (size_t i = 0; i < n; i++) {
        args[i].type = types[i];
        switch (types[i]) {
        case 's': args[i].s = va_arg(ap, const char *); break;
        case 'i': args[i].i = va_arg(ap, int64_t); break;
        case 'b': args[i].i = va_arg(ap, int) ? 1 : 0; break;
        default: abort(); /* our bug: unknown type letter */
        }
    }
    int r = run_args(s, sql, args, n, out);
    free(args);
    return r;
}

static int run(struct store *s, const char *sql, const char *types,
               va_list ap, json_t **ret_rows)
{
    struct sink out = { ret_rows, NULL, NULL };
    return run_to(s, sql, types, ap, &out);
}

char *store_values_sql(size_t rows, size_t cols, const char *const *types)
{
    struct buf b = BUF_INIT;
    for (size_t r = 0; r < rows; r++) {
        buf_puts(&b, r ? ", (" : "(");
        for (size_t k = 0; k < cols; k++) {
            size_t n = r * cols + k + 1;
            if (types)
                buf_printf(&b, "%sCAST($%zu AS %s)", k ? ", " : "", n,
                           types[k]);
            else
                buf_printf(&b, "%s$%zu", k ? ", " : "", n);
        }
        buf_puts(&b, ")");
    }
    return buf_steal(&b);
}

int store_execa(struct store *s, const char *sql, const struct store_arg *args,
                size_t n)
{
    struct sink none = { 0 };
    return run_args(s, sql, args, n, &none);
}

/* st's text for 2^k rows, made by the first caller that needs it. */
static const char *rows_sql(struct store_rows *st, unsigned k)
{
    char *t = atomic_load(&st->text[k]);
    if (t)
        return t;
    _cleanup_free_ char *values = store_values_sql((size_t)1 << k, st->cols,
                                                   st->types);
    char *mine = xasprintf("%s%s%s", st->head, values, st->tail);
    if (atomic_compare_exchange_strong(&st->text[k], &t, mine))
        return mine;
    free(mine); /* another thread's came first: t is it */
    return t;
}

int store_exec_rows(struct store *s, struct store_rows *st, size_t n,
                    void (*fill)(const void *ctx, size_t i,
                                 struct store_arg *args),
                    const void *ctx)
{
    _cleanup_free_ struct store_arg *args =
        xcalloc(STORE_ROWS_MAX * st->cols, sizeof(*args));
    int changed = 0;
    for (size_t at = 0; at < n;) {
        unsigned k = st->max_log2 && st->max_log2 < STORE_ROWS_MAX_LOG2
                         ? st->max_log2
                         : STORE_ROWS_MAX_LOG2;
        while (((size_t)1 << k) > n - at)
            k--;
        size_t rows = (size_t)1 << k;
        for (size_t r = 0; r < rows; r++)
            fill(ctx, at + r, args + r * st->cols);
        int e = store_execa(s, rows_sql(st, k), args, rows * st->cols);
        if (e < 0)
            return e;
        changed += e;
        at += rows;
    }
    return changed;
}

static struct store_value json_row_get(struct store_row *r, const char *col)
{
    json_t *v = json_object_get(r->impl, col);
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_INTEGER:
        return (struct store_value){ STORE_INT, json_integer_value(v), NULL, 0 };
    case JSON_STRING:
        return (struct store_value){ STORE_TEXT, 0, json_string_value(v),
                                     json_string_length(v) };
    default:
        return (struct store_value){ STORE_NULL, 0, NULL, 0 };
    }
}

void store_row_of_json(json_t *row, struct store_row *ret)
{
    *ret = (struct store_row){ json_row_get, row, 0 };
}

struct store_value store_row_get(struct store_row *r, const char *col)
{
    return r->get(r, col);
}

int64_t store_row_int(struct store_row *r, const char *col, int64_t def)
{
    struct store_value v = r->get(r, col);
    return v.type == STORE_INT ? v.i : def;
}

const char *store_row_str(struct store_row *r, const char *col)
{
    struct store_value v = r->get(r, col);
    return v.type == STORE_TEXT ? v.s : NULL;
}

/* One statement on conn, its rows to out. */
static int exec_to(struct store *s, void *conn, const char *sql,
                   const struct store_arg *args, size_t n,
                   const struct sink *out)
{
    if (!out->fn)
        return s->ops->exec(conn, sql, args, n, out->rows);
    if (s->ops->exec_each)
        return s->ops->exec_each(conn, sql, args, n, out->fn, out->data);
    json_t *rows = NULL;
    int r = s->ops->exec(conn, sql, args, n, &rows);
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        struct store_row sr;
        store_row_of_json(row, &sr);
        out->fn(&sr, out->data);
    }
    json_decref(rows);
    return r;
}

/* Run one statement on a reader (reads of routed threads) or the writer. */
static int run_args(struct store *s, const char *sql,
                    const struct store_arg *args, size_t n,
                    const struct sink *out)
{
    if (sql_reads(sql) && tls_writing != s) {
        struct store_reader *rd = tls_pinned_store == s ? tls_pinned : NULL;
        bool own = !rd && (rd = reader_take(s, true)) != NULL;
        if (rd) {
            int r = exec_to(s, rd->conn, sql, args, n, out);
            if (own)
                reader_give(rd);
            return r;
        }
    }
    if (!sql_reads(sql))
        store_snapshot_end(s); /* the thread's reads after it see it */
    pthread_mutex_lock(&s->lock);
    store_watch(s);
    /* PostgreSQL aborts the whole transaction on any failed statement; a
     * write that may fail on a constraint (and be answered 409) gets a
     * savepoint of its own so the request's transaction lives on. A lost
     * conflict still dooms the transaction it happened in (conflict_at). */
    bool guard = s->tx_depth > 0 && s->ops->error_aborts_tx &&
                 strncmp(sql, "SELECT", 6) != 0;
    if (guard && s->ops->exec_plain(s->conn, "SAVEPOINT fog_stmt") < 0)
        guard = false;
    int r = exec_to(s, s->conn, sql, args, n, out);
    if (r == -EAGAIN && s->tx_depth > 0) {
        s->conflict_at = s->tx_depth;
        /* Even when a savepoint heals the transaction, a caller that
         * gives up on it after this lost to a concurrent writer. */
        tls_lost_conflict = true;
    }
    if (guard)
        s->ops->exec_plain(s->conn,
                           r < 0 ? "ROLLBACK TO SAVEPOINT fog_stmt; RELEASE "
                                   "SAVEPOINT fog_stmt"
                                 : "RELEASE SAVEPOINT fog_stmt");
    if (r < 0)
        store_watch(s);
    pthread_mutex_unlock(&s->lock);
    return r;
}

int store_exec(struct store *s, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int r = run(s, sql, types, ap, NULL);
    va_end(ap);
    return r;
}

int store_query(struct store *s, json_t **ret_rows, const char *sql,
                const char *types, ...)
{
    va_list ap;
    json_t *rows = NULL;
    va_start(ap, types);
    int r = run(s, sql, types, ap, &rows);
    va_end(ap);
    if (r < 0)
        return r;
    *ret_rows = rows ? rows : json_array();
    return 0;
}

int store_query_each(struct store *s, void (*fn)(struct store_row *row,
                                                 void *data),
                     void *data, const char *sql, const char *types, ...)
{
    va_list ap;
    struct sink out = { NULL, fn, data };
    va_start(ap, types);
    int r = run_to(s, sql, types, ap, &out);
    va_end(ap);
    return r < 0 ? r : 0;
}

int store_query_one(struct store *s, json_t **ret_row, const char *sql,
                    const char *types, ...)
{
    va_list ap;
    json_t *rows = NULL;
    va_start(ap, types);
    int r = run(s, sql, types, ap, &rows);
    va_end(ap);
    if (r < 0)
        return r;
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        return -ENOENT;
    }
    *ret_row = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    return 0;
}

int64_t store_query_int(struct store *s, int64_t def, const char *sql,
                        const char *types, ...)
{
    va_list ap;
    json_t *rows = NULL;
    va_start(ap, types);
    int r = run(s, sql, types, ap, &rows);
    va_end(ap);
    if (r < 0)
        return def;
    int64_t v = def;
    json_t *row = json_array_get(rows, 0);
    const char *k;
    json_t *val;
    json_object_foreach(row, k, val) {
        if (json_is_integer(val))
            v = json_integer_value(val);
        break;
    }
    json_decref(rows);
    return v;
}
