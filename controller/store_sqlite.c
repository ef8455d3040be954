/* sqlite3 backend of the store: WAL, foreign keys, busy timeout, numbered
 * migrations compiled in, one recursive lock around the connection. */
#include "controller/store.h"

#include "common/log.h"
#include "common/timeutil.h"
#include "controller/schema.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>

struct store {
    sqlite3 *db;
    pthread_mutex_t lock;
};

static void lock_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

static int exec_plain(struct store *s, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        log_error("store: %s", err ? err : "unknown error");
        sqlite3_free(err);
        return -EIO;
    }
    return 0;
}

static int migrate(struct store *s)
{
    int r = exec_plain(s, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                          " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                          " applied_at BIGINT NOT NULL)");
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
        if (exec_plain(s, m->sql) < 0 ||
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

int store_open(const char *path, struct store **ret)
{
    struct store *s = xcalloc(1, sizeof(*s));
    lock_init(&s->lock);
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        log_error("store: cannot open '%s': %s", path,
                  s->db ? sqlite3_errmsg(s->db) : "out of memory");
        store_close(s);
        return -EIO;
    }
    sqlite3_busy_timeout(s->db, 5000);
    if (exec_plain(s, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;"
                      "PRAGMA synchronous=NORMAL;") < 0 ||
        migrate(s) < 0) {
        store_close(s);
        return -EIO;
    }
    *ret = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

unsigned store_schema_version(struct store *s)
{
    return (unsigned)store_query_int(s, 0, "SELECT MAX(version) FROM "
                                           "schema_migrations", "");
}

int store_tx_begin(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    if (exec_plain(s, "BEGIN IMMEDIATE") < 0) {
        pthread_mutex_unlock(&s->lock);
        return -EIO;
    }
    return 0;
}

int store_tx_commit(struct store *s)
{
    int r = exec_plain(s, "COMMIT");
    if (r < 0)
        exec_plain(s, "ROLLBACK");
    pthread_mutex_unlock(&s->lock);
    return r;
}

void store_tx_rollback(struct store *s)
{
    exec_plain(s, "ROLLBACK");
    pthread_mutex_unlock(&s->lock);
}

/* Prepare and bind by name "$N" so the order of placeholders in the text
 * does not matter (sqlite numbers "$N" by first appearance otherwise). */
static int prepare(struct store *s, sqlite3_stmt **ret, const char *sql,
                   const char *types, va_list ap)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_error("store: prepare failed: %s: %s", sqlite3_errmsg(s->db), sql);
        return -EIO;
    }
    if (sqlite3_bind_parameter_count(st) != (int)strlen(types)) {
        /* Our bug: the argument list does not match the statement. */
        log_error("store: %d placeholders but %zu arguments: %s",
                  sqlite3_bind_parameter_count(st), strlen(types), sql);
        abort();
    }
    for (unsigned i = 0; types[i]; i++) {
        char name[16];
        snprintf(name, sizeof(name), "$%u", i + 1);
        int idx = sqlite3_bind_parameter_index(st, name);
        int rc = SQLITE_OK;
        switch (types[i]) {
        case 's': {
            const char *v = va_arg(ap, const char *);
            if (!idx)
                break;
            rc = v ? sqlite3_bind_text(st, idx, v, -1, SQLITE_TRANSIENT)
                   : sqlite3_bind_null(st, idx);
            break;
        }
        case 'i': {
            int64_t v = va_arg(ap, int64_t);
            if (idx)
                rc = sqlite3_bind_int64(st, idx, v);
            break;
        }
        case 'b': {
            int v = va_arg(ap, int);
            if (idx)
                rc = sqlite3_bind_int(st, idx, v ? 1 : 0);
            break;
        }
        default:
            abort(); /* our bug: unknown type letter */
        }
        if (rc != SQLITE_OK) {
            sqlite3_finalize(st);
            return -EIO;
        }
    }
    *ret = st;
    return 0;
}

static json_t *row_json(sqlite3_stmt *st)
{
    json_t *row = json_object();
    int n = sqlite3_column_count(st);
    for (int c = 0; c < n; c++) {
        const char *name = sqlite3_column_name(st, c);
        json_t *v;
        switch (sqlite3_column_type(st, c)) {
        case SQLITE_INTEGER:
            v = json_integer(sqlite3_column_int64(st, c));
            break;
        case SQLITE_NULL:
            v = json_null();
            break;
        default:
            v = json_stringn((const char *)sqlite3_column_text(st, c),
                             (size_t)sqlite3_column_bytes(st, c));
            if (!v) /* not UTF-8: never produced by us, keep it visible */
                v = json_string("");
            break;
        }
        json_object_set_new(row, name, v);
    }
    return row;
}

static int vexec(struct store *s, const char *sql, const char *types,
                 va_list ap)
{
    sqlite3_stmt *st;
    pthread_mutex_lock(&s->lock);
    int r = prepare(s, &st, sql, types, ap);
    if (r == 0) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
            r = sqlite3_changes(s->db);
        } else if ((rc & 0xff) == SQLITE_CONSTRAINT) {
            log_debug("store: constraint: %s", sqlite3_errmsg(s->db));
            r = -EEXIST;
        } else {
            log_error("store: %s", sqlite3_errmsg(s->db));
            r = -EIO;
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

int store_exec(struct store *s, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int r = vexec(s, sql, types, ap);
    va_end(ap);
    return r;
}

static int vquery(struct store *s, json_t **ret_rows, const char *sql,
                  const char *types, va_list ap)
{
    sqlite3_stmt *st;
    pthread_mutex_lock(&s->lock);
    int r = prepare(s, &st, sql, types, ap);
    if (r == 0) {
        json_t *rows = json_array();
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            json_array_append_new(rows, row_json(st));
        if (rc != SQLITE_DONE) {
            log_error("store: %s", sqlite3_errmsg(s->db));
            json_decref(rows);
            r = -EIO;
        } else {
            *ret_rows = rows;
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

int store_query(struct store *s, json_t **ret_rows, const char *sql,
                const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int r = vquery(s, ret_rows, sql, types, ap);
    va_end(ap);
    return r;
}

int store_query_one(struct store *s, json_t **ret_row, const char *sql,
                    const char *types, ...)
{
    va_list ap;
    json_t *rows;
    va_start(ap, types);
    int r = vquery(s, &rows, sql, types, ap);
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
    json_t *rows;
    va_start(ap, types);
    int r = vquery(s, &rows, sql, types, ap);
    va_end(ap);
    if (r < 0)
        return def;
    int64_t v = def;
    json_t *row = json_array_get(rows, 0);
    if (row) {
        const char *k;
        json_t *val;
        json_object_foreach(row, k, val) {
            if (json_is_integer(val))
                v = json_integer_value(val);
            break;
        }
    }
    json_decref(rows);
    return v;
}
