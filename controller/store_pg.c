/* PostgreSQL backend of the store (libpq), for when one controller machine
 * is outgrown: the same portable SQL with $N placeholders, rows typed from
 * the column types (integers stay integers). A lost connection is made
 * again with backoff; so is the listening one, which re-LISTENs. */
#include "common/log.h"
#include "common/timeutil.h"
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

/* Reconnection backoff: the first attempt at once, then doubling. */
#define PG_RETRY_MIN_MS 100
#define PG_RETRY_MAX_MS 1000

/* A connection and when it may next be made again after a loss. */
struct pg_conn {
    PGconn *c;
    int64_t retry_at_ms, retry_ms;
    bool lost_logged;
};

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
    /* Serialization failure, deadlock: the transaction lost a conflict with
     * another replica's and may be run again. */
    if (state && (streq(state, "40001") || streq(state, "40P01"))) {
        log_debug("store: conflict: %s", PQerrorMessage(c));
        return -EAGAIN;
    }
    /* The statement that failed the transaction was reported already. */
    if (state && streq(state, "25P02")) {
        log_debug("store: %s (%s)", PQerrorMessage(c), sql);
        return -EIO;
    }
    if (PQstatus(c) == CONNECTION_BAD) {
        log_debug("store: connection lost: %s (%s)", PQerrorMessage(c), sql);
        return -EIO;
    }
    log_error("store: %s (%s)", PQerrorMessage(c), sql);
    if (state && (streq(state, "53100") || streq(state, "53200")))
        return -ENOSPC; /* disk_full, out_of_memory */
    if (state && streq(state, "55P03"))
        return -EBUSY; /* lock_not_available */
    return -EIO;
}

/* Connect with a bounded wait (unless the address sets its own): a
 * database host that went silent must not hold the store forever. */
static PGconn *pg_connect(const char *uri)
{
    const char *const keys[] = { "connect_timeout", "dbname", NULL };
    const char *const values[] = { "5", uri, NULL };
    PGconn *c = PQconnectdbParams(keys, values, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        log_error("store: cannot connect to PostgreSQL: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PGresult *res = PQexec(c, "SET client_min_messages = warning");
    PQclear(res);
    return c;
}

static int pg_exec_plain(void *conn, const char *sql);
static void pg_close(void *conn);

static int pg_open(const char *uri, void **ret_conn)
{
    PGconn *c = pg_connect(uri);
    if (!c)
        return -EIO;
    struct pg_conn *pc = xcalloc(1, sizeof(*pc));
    pc->c = c;
    *ret_conn = pc;
    return 0;
}

/* A reader: its own session, which refuses writes; GETs read through a
 * few of these while the writer's session holds a transaction. */
static int pg_open_reader(const char *uri, void **ret_conn)
{
    int r = pg_open(uri, ret_conn);
    if (r < 0)
        return r;
    if (pg_exec_plain(*ret_conn, "SET SESSION CHARACTERISTICS AS "
                                 "TRANSACTION READ ONLY") < 0) {
        pg_close(*ret_conn);
        *ret_conn = NULL;
        return -EIO;
    }
    return 0;
}

static void pg_close(void *conn)
{
    struct pg_conn *pc = conn;
    PQfinish(pc->c);
    free(pc);
}

static bool pg_alive(void *conn)
{
    return PQstatus(((struct pg_conn *)conn)->c) == CONNECTION_OK;
}

static int pg_reconnect(void *conn)
{
    struct pg_conn *pc = conn;
    if (PQstatus(pc->c) == CONNECTION_OK)
        return 0;
    int64_t now = mono_ms();
    if (now < pc->retry_at_ms)
        return -EAGAIN;
    if (!pc->lost_logged)
        log_warn("store: lost the connection to PostgreSQL: reconnecting");
    pc->lost_logged = true;
    PQreset(pc->c);
    if (PQstatus(pc->c) != CONNECTION_OK) {
        pc->retry_ms = pc->retry_ms ? pc->retry_ms * 2 : PG_RETRY_MIN_MS;
        if (pc->retry_ms > PG_RETRY_MAX_MS)
            pc->retry_ms = PG_RETRY_MAX_MS;
        pc->retry_at_ms = now + pc->retry_ms;
        return -EIO;
    }
    PGresult *res = PQexec(pc->c, "SET client_min_messages = warning");
    PQclear(res);
    log_info("store: connected to PostgreSQL again");
    pc->retry_ms = pc->retry_at_ms = 0;
    pc->lost_logged = false;
    return 0;
}

static int pg_exec_plain(void *conn, const char *sql)
{
    PGconn *c = ((struct pg_conn *)conn)->c;
    PGresult *res = PQexec(c, sql);
    int r = pg_check(c, res, sql);
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
    PGconn *c = ((struct pg_conn *)conn)->c;
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
    PGresult *res = PQexecParams(c, sql, (int)n, NULL, values, NULL, NULL, 0);
    int r = pg_check(c, res, sql);
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
    PGresult *res = PQexec(((struct pg_conn *)conn)->c,
                           "SELECT pg_try_advisory_lock(6713191)");
    bool held = PQresultStatus(res) == PGRES_TUPLES_OK &&
                PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return held;
}

static void pg_notify(void *conn, const char *node_id)
{
    const char *v[1] = { node_id };
    PGresult *res = PQexecParams(((struct pg_conn *)conn)->c,
                                 "SELECT pg_notify('fog_node', $1)", 1, NULL,
                                 v, NULL, NULL, 0);
    PQclear(res);
}

/* One listening connection per process, drained by its own thread. */
static struct {
    struct pg_conn *conn;
    pthread_t thread;
    int stop_pipe[2];
    void (*fn)(const char *, void *);
    void *data;
} listener;

/* Wait ms for the stop pipe: true when asked to stop. */
static bool listen_stopping(int ms)
{
    struct pollfd p = { listener.stop_pipe[0], POLLIN, 0 };
    return poll(&p, 1, ms) > 0;
}

/* Connect the listening connection again and LISTEN once more, with
 * backoff, until it works or the thread is asked to stop. Notifications
 * sent meanwhile are lost, so every node counts as changed afterwards. */
static bool listen_revive(void)
{
    for (;;) {
        int wait = pg_reconnect(listener.conn);
        if (wait == 0) {
            if (pg_exec_plain(listener.conn, "LISTEN fog_node") == 0)
                break;
            PQreset(listener.conn->c); /* refused LISTEN: start over */
        }
        if (listen_stopping(listener.conn->retry_ms ? (int)listener.conn->retry_ms
                                                     : PG_RETRY_MIN_MS))
            return false;
    }
    log_info("store: listening for changes again");
    listener.fn("*", listener.data);
    return true;
}

static void *listen_loop(void *arg)
{
    for (;;) {
        int sock = PQsocket(listener.conn->c);
        struct pollfd p[2] = { { sock, POLLIN, 0 },
                               { listener.stop_pipe[0], POLLIN, 0 } };
        if (poll(p, 2, -1) < 0)
            continue;
        if (p[1].revents)
            break;
        if (!PQconsumeInput(listener.conn->c) ||
            PQstatus(listener.conn->c) != CONNECTION_OK) {
            if (!listen_revive())
                break;
            continue;
        }
        PGnotify *n;
        while ((n = PQnotifies(listener.conn->c))) {
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
        pg_close(conn);
        return -EIO;
    }
    listener.conn = conn;
    listener.fn = fn;
    listener.data = data;
    if ((r = pthread_create(&listener.thread, NULL, listen_loop, NULL))) {
        close(listener.stop_pipe[0]);
        close(listener.stop_pipe[1]);
        pg_close(conn);
        listener.conn = NULL;
        return -r;
    }
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
    pg_close(listener.conn);
    listener.conn = NULL;
}

const struct store_ops store_pg_ops = {
    .try_lead = pg_try_lead,
    .alive = pg_alive,
    .reconnect = pg_reconnect,
    /* A transaction-scoped advisory lock (two-key space, apart from the
     * leader's one-key lock) on a hash of the key. */
    .lock_sql = "SELECT pg_advisory_xact_lock(6713192, hashtext($1::text || "
                "'/' || $2::text))",
    .notify = pg_notify,
    .listen = pg_listen,
    .unlisten = pg_unlisten,
    .name = "postgresql",
    .open = pg_open,
    .open_reader = pg_open_reader,
    .close = pg_close,
    .exec_plain = pg_exec_plain,
    .exec = pg_exec,
    .begin_sql = "BEGIN",
    .error_aborts_tx = true,
    .snapshot_sql = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
};
