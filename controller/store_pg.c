/* PostgreSQL backend of the store (libpq), for when one controller machine
 * is outgrown: the same portable SQL with $N placeholders, rows typed from
 * the column types (integers stay integers). */
#include "common/log.h"
#include "controller/store_backend.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>

/* Type oids from pg_type.h (stable since forever). */
#define PG_INT8OID 20
#define PG_INT2OID 21
#define PG_INT4OID 23
#define PG_BOOLOID 16
#define PG_NUMERICOID 1700

static int pg_check(PGconn *c, PGresult *res, const char *sql)
{
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return 0;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state && strncmp(state, "23", 2) == 0) {
        log_debug("store: constraint: %s", PQerrorMessage(c));
        if (streq(state, "23505"))
            return -EEXIST; /* unique_violation */
        if (streq(state, "23503"))
            return -ENOENT; /* foreign_key_violation */
        return -EINVAL;
    }
    log_error("store: %s (%s)", PQerrorMessage(c), sql);
    if (state && (streq(state, "53100") || streq(state, "53200")))
        return -ENOSPC; /* disk_full, out_of_memory */
    if (state && streq(state, "55P03"))
        return -EBUSY; /* lock_not_available */
    return -EIO;
}

static int pg_open(const char *uri, void **ret_conn)
{
    PGconn *c = PQconnectdb(uri);
    if (PQstatus(c) != CONNECTION_OK) {
        log_error("store: cannot connect to PostgreSQL: %s", PQerrorMessage(c));
        PQfinish(c);
        return -EIO;
    }
    PGresult *res = PQexec(c, "SET client_min_messages = warning");
    PQclear(res);
    *ret_conn = c;
    return 0;
}

static void pg_close(void *conn) { PQfinish(conn); }

static int pg_exec_plain(void *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    int r = pg_check(conn, res, sql);
    /* COMMIT of a transaction a statement aborted answers "ROLLBACK". */
    if (r == 0 && streq(sql, "COMMIT") && streq(PQcmdStatus(res), "ROLLBACK"))
        r = -EIO;
    PQclear(res);
    return r;
}

static json_t *pg_rows(PGresult *res)
{
    json_t *rows = json_array();
    int nr = PQntuples(res), nf = PQnfields(res);
    for (int i = 0; i < nr; i++) {
        json_t *row = json_object();
        for (int f = 0; f < nf; f++) {
            json_t *v;
            const char *text = PQgetvalue(res, i, f);
            Oid t = PQftype(res, f);
            if (PQgetisnull(res, i, f))
                v = json_null();
            else if (t == PG_INT8OID || t == PG_INT4OID || t == PG_INT2OID)
                v = json_integer(strtoll(text, NULL, 10));
            else if (t == PG_BOOLOID)
                v = json_integer(text[0] == 't');
            else if (t == PG_NUMERICOID && !strchr(text, '.'))
                v = json_integer(strtoll(text, NULL, 10)); /* SUM(bigint) */
            else
                v = json_string(text);
            json_object_set_new(row, PQfname(res, f), v ? v : json_string(""));
        }
        json_array_append_new(rows, row);
    }
    return rows;
}

static int pg_exec(void *conn, const char *sql, const struct store_arg *args,
                   size_t n, json_t **ret_rows)
{
    const char **values = xcalloc(n ? n : 1, sizeof(char *));
    char **owned = xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        if (args[i].type == 's') {
            values[i] = args[i].s;
        } else {
            owned[i] = xasprintf("%lld", (long long)args[i].i);
            values[i] = owned[i];
        }
    }
    PGresult *res = PQexecParams(conn, sql, (int)n, NULL, values, NULL, NULL, 0);
    int r = pg_check(conn, res, sql);
    if (r == 0) {
        const char *tuples = PQcmdTuples(res);
        r = tuples && *tuples ? atoi(tuples) : 0;
        if (ret_rows)
            *ret_rows = pg_rows(res);
    }
    PQclear(res);
    for (size_t i = 0; i < n; i++)
        free(owned[i]);
    free(owned);
    free(values);
    return r;
}

static bool pg_try_lead(void *conn)
{
    PGresult *res = PQexec(conn, "SELECT pg_try_advisory_lock(6713191)");
    bool held = PQresultStatus(res) == PGRES_TUPLES_OK &&
                PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return held;
}

static void pg_notify(void *conn, const char *node_id)
{
    const char *v[1] = { node_id };
    PGresult *res = PQexecParams(conn, "SELECT pg_notify('fog_node', $1)", 1,
                                 NULL, v, NULL, NULL, 0);
    PQclear(res);
}

/* One listening connection per process, drained by its own thread. */
static struct {
    PGconn *conn;
    pthread_t thread;
    int stop_pipe[2];
    void (*fn)(const char *, void *);
    void *data;
} listener;

static void *listen_loop(void *arg)
{
    int sock = PQsocket(listener.conn);
    for (;;) {
        struct pollfd p[2] = { { sock, POLLIN, 0 },
                               { listener.stop_pipe[0], POLLIN, 0 } };
        if (poll(p, 2, -1) < 0)
            continue;
        if (p[1].revents)
            break;
        if (!PQconsumeInput(listener.conn))
            break;
        PGnotify *n;
        while ((n = PQnotifies(listener.conn))) {
            listener.fn(n->extra, listener.data);
            PQfreemem(n);
        }
    }
    return NULL;
}

static int pg_listen(const char *address, void (*fn)(const char *, void *),
                     void *data)
{
    void *conn;
    int r = pg_open(address, &conn);
    if (r < 0)
        return r;
    if (pg_exec_plain(conn, "LISTEN fog_node") < 0 ||
        pipe(listener.stop_pipe) < 0) {
        PQfinish(conn);
        return -EIO;
    }
    listener.conn = conn;
    listener.fn = fn;
    listener.data = data;
    pthread_create(&listener.thread, NULL, listen_loop, NULL);
    return 0;
}

static void pg_unlisten(void)
{
    if (!listener.conn)
        return;
    if (write(listener.stop_pipe[1], "x", 1) < 0)
        log_debug("store: cannot stop the listener");
    pthread_join(listener.thread, NULL);
    close(listener.stop_pipe[0]);
    close(listener.stop_pipe[1]);
    PQfinish(listener.conn);
    listener.conn = NULL;
}

const struct store_ops store_pg_ops = {
    .try_lead = pg_try_lead,
    .notify = pg_notify,
    .listen = pg_listen,
    .unlisten = pg_unlisten,
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .exec_plain = pg_exec_plain,
    .exec = pg_exec,
    .begin_sql = "BEGIN",
    .error_aborts_tx = true,
    .snapshot_sql = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
};
