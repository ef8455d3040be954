/* sqlite3 backend of the store: WAL, foreign keys, busy timeout. "$N"
 * placeholders are bound by name so their order in the text is free.
 * Prepared statements are kept in a small cache keyed by their text:
 * the controller runs the same few hundred statements over and over, and
 * parsing them again each time was a tenth of an accrual run. A statement
 * asked for again with the same pointer (a literal) is found through that
 * pointer and one comparison of the text, not a hash of it; each keeps
 * where its "$N" are, so binding looks no name up. The store front
 * serialises calls, so the cache needs no lock of its own. */
#include "common/log.h"
#include "controller/store_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#define SQ_CACHE 128

struct sq_cached {
    char *sql;
    uint64_t hash;
    uint64_t used;      /* tick of last use, for eviction */
    sqlite3_stmt *st;
    int *param;         /* param[k]: the index of "$k+1", 0 when absent */
    int n_param;        /* sqlite3_bind_parameter_count() */
};

/* Slots of the pointer index: text pointer -> cache entry (a hint,
 * checked against the entry's text). */
#define SQ_BY_PTR 512

struct sq_ckpt;

struct sq_conn {
    sqlite3 *db;
    struct sq_ckpt *ckpt; /* the writer's checkpointer, or NULL */
    uint64_t tick;
    struct sq_cached cache[SQ_CACHE];
    const char *ptr_key[SQ_BY_PTR];
    struct sq_cached *ptr_val[SQ_BY_PTR];
};

static uint64_t sql_hash(const char *s)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* An sqlite result code as -errno (see store_backend.h), logged once. */
static int sq_errno(sqlite3 *db, int rc)
{
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        log_debug("store: constraint: %s", sqlite3_errmsg(db));
        return -EEXIST;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        log_debug("store: constraint: %s", sqlite3_errmsg(db));
        return -ENOENT;
    default:
        break;
    }
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        log_debug("store: constraint: %s", sqlite3_errmsg(db));
        return -EINVAL;
    case SQLITE_FULL:
        log_error("store: %s", sqlite3_errmsg(db));
        return -ENOSPC;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        log_error("store: %s", sqlite3_errmsg(db));
        return -EBUSY;
    default:
        log_error("store: %s", sqlite3_errmsg(db));
        return -EIO;
    }
}

/* How much of the database file is mapped (bytes): the rest is read. */
#define SQ_MMAP_SIZE "1073741824"

static struct sq_cached *stmt_get(struct sq_conn *c, const char *sql);

/* Whether sql is one statement of transaction control (BEGIN, COMMIT,
 * ROLLBACK, SAVEPOINT, RELEASE): run through the statement cache, not
 * parsed again each time (a scheduler batch opens and releases a
 * savepoint per placement). */
static bool tx_control(const char *sql)
{
    static const char *const words[] = { "BEGIN", "COMMIT", "ROLLBACK",
                                         "SAVEPOINT ", "RELEASE " };
    if (strchr(sql, ';'))
        return false;
    for (size_t i = 0; i < ARRAY_SIZE(words); i++)
        if (strncmp(sql, words[i], strlen(words[i])) == 0)
            return true;
    return false;
}

static int sq_exec_plain(void *conn, const char *sql)
{
    struct sq_conn *c = conn;
    struct sq_cached *e = tx_control(sql) ? stmt_get(c, sql) : NULL;
    if (e) {
        int rc;
        while ((rc = sqlite3_step(e->st)) == SQLITE_ROW)
            ;
        int r = rc == SQLITE_DONE
                    ? 0
                    : sq_errno(c->db, sqlite3_extended_errcode(c->db));
        sqlite3_reset(e->st);
        return r;
    }
    char *err = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        sqlite3_free(err);
        return sq_errno(c->db, sqlite3_extended_errcode(c->db));
    }
    return 0;
}

static void sq_ckpt_stop(struct sq_ckpt *k);

static void sq_close(void *conn)
{
    struct sq_conn *c = conn;
    if (!c)
        return;
    sq_ckpt_stop(c->ckpt);
    for (size_t i = 0; i < SQ_CACHE; i++) {
        sqlite3_finalize(c->cache[i].st);
        free(c->cache[i].sql);
        free(c->cache[i].param);
    }
    sqlite3_close(c->db);
    free(c);
}

/* Once per process, before sqlite's first use: no count of the memory
 * sqlite holds. Keeping it takes one mutex, shared by every connection,
 * around each of sqlite's allocations and frees. The writer and the
 * checkpointer take it at a low priority (--write-nice, SQ_CKPT_NICE); a
 * reader of a GET then waited for one of them to get a CPU again while
 * it held it, most of the futex waits of the request threads under a
 * stream of POSTs. Nothing here reads the count (sqlite3_memory_used,
 * a soft heap limit). */
static void sq_global_config(void)
{
    if (sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) != SQLITE_OK)
        log_debug("store: sqlite was initialised already; memory status "
                  "stays on");
}

/* A connection to path opened with flags (busy timeout set), or -EIO
 * (reported). */
static int sq_connect(const char *path, int flags, const char *why,
                      struct sq_conn **ret)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sq_global_config);
    sqlite3 *db = NULL;
    /* No mutex of sqlite's own: store.c uses each connection under its
     * lock (the writer's, or the reader's it took), and with one, every
     * column read of a list took and released it (a tenth of a page's
     * CPU). */
    if (sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        log_error("store: cannot open '%s'%s: %s", path, why,
                  db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -EIO;
    }
    sqlite3_busy_timeout(db, 5000);
    struct sq_conn *c = xcalloc(1, sizeof(*c));
    c->db = db;
    /* Pages read through a mapping of the file, not pread() into each
     * connection's own 2 MB cache: past that cache (some 10k VMs) every
     * read copied its pages from the kernel again, half of a GET's CPU
     * at 100k VMs. Shared by all connections; a no-op where sqlite was
     * built without mmap. */
    sq_exec_plain(c, "PRAGMA mmap_size=" SQ_MMAP_SIZE);
    *ret = c;
    return 0;
}

/* WAL checkpoints off the committing thread: sqlite's own runs one inside
 * the commit that takes the WAL past 1,000 pages, an eighth of a create's
 * time under a stream of POSTs (copying pages back and two fdatasyncs
 * while the store's write lock is held). A thread with its own connection
 * runs a passive one instead; only a WAL that it lets grow to 16 times
 * that is checkpointed in the commit again.
 *
 * That thread holds the store's write lock (the one every use of the
 * writer's connection holds) while sqlite checkpoints: sqlite up to 3.51.2
 * (Debian 12 has 3.40) can lose committed pages when one connection starts
 * a checkpoint while another's commit starts the WAL again from its head
 * (the "WAL-reset bug" of sqlite's WAL documentation, fixed in 3.51.3);
 * under a stream of placements that corrupted the database in about a
 * third of the runs of bench_sched. So a checkpoint never overlaps a
 * write (a write that comes meanwhile waits for it). What took long in it
 * is done outside the lock: the WAL's frames are flushed to disk first
 * (the checkpoint's own flush of the WAL then has little left), and the
 * pages copied back are flushed afterwards (SQ_CKPT_SYNC). Readers never
 * wait for it. */
#define SQ_CKPT_PAGES 1000
/* The checkpointer's nice value, the writers' own by default
 * (--write-nice): its page copies, made while it holds their lock, take
 * the CPU from no read. A WAL it leaves behind is bounded by the 16x rule
 * above. */
#define SQ_CKPT_NICE 19
/* The WAL starts again from its head only when a write transaction begins
 * on a WAL checkpointed to its end, which a checkpointer running beside a
 * steady writer never sees: the writer commits again while it copies. The
 * WAL then grew to the 16x bound, each time, and the commit that reached
 * it waited for a checkpoint of it (3-13 ms, most of it fdatasync). So once
 * the checkpointer has left at most this many frames behind, the commit
 * copies them itself (two fdatasyncs of a few pages), and the next write
 * transaction starts the WAL again. */
#define SQ_CKPT_TAIL 64
/* Not before the WAL holds this many: each such commit waits about a
 * millisecond, and at 1,000 pages one commit in some 300 did, which put
 * that millisecond in the p99 of placements. */
#define SQ_CKPT_TAIL_FROM (4 * SQ_CKPT_PAGES)
/* The checkpointer flushes the pages it copied to disk each time this many
 * more are copied: the commit that checkpoints the tail flushes the rest,
 * and the database's fdatasync (done only by a checkpoint that reaches
 * the WAL's end) wrote back every page copied since the WAL began, 3-13
 * ms of it. Not after every copy: each flush is a journal commit of the
 * filesystem, which the writer's appends to the WAL then wait for (the
 * POSTs a second of bench_scale fell by some 5%). */
#define SQ_CKPT_SYNC 256

struct sq_ckpt {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct sq_conn *conn; /* its own */
    bool due, stop;
    /* The WAL's cycle (counted by the hook: a WAL holding fewer frames than
     * at the last commit started again) and the frames of it that the
     * checkpointer last left checkpointed, -1 for none yet. */
    unsigned cycle;
    int backfilled;
    int last_pages; /* the WAL's frames at the last commit */
    int next_tail;  /* no tail checkpoint in a commit before this many */
    int db_fd;      /* the database file, for fdatasync; -1 if not open */
    int wal_fd;     /* its WAL, opened once it exists; -1 until then */
    char *wal_path;
    pthread_mutex_t *writer_lock; /* the store's (sq_share_lock) */
    int synced;     /* frames of this cycle copied and flushed to disk */
};

/* The writer's, after each commit, under the store's write lock. */
static int sq_wal_hook(void *data, sqlite3 *db, const char *name, int pages)
{
    struct sq_ckpt *k = data;
    pthread_mutex_lock(&k->lock);
    if (pages < k->last_pages) {
        k->cycle++;
        k->backfilled = -1;
        k->synced = 0;
        k->next_tail = SQ_CKPT_TAIL_FROM;
    }
    k->last_pages = pages;
    bool tail = pages >= k->next_tail && k->backfilled >= 0 &&
                pages - k->backfilled <= SQ_CKPT_TAIL;
    pthread_mutex_unlock(&k->lock);
    bool all = false;
    /* Busy (the checkpointer is at work) costs nothing: the next commit
     * tries again. Once one ran, a WAL that readers keep from starting
     * again is not checkpointed in a commit for another half cycle. */
    if (tail || pages >= 16 * SQ_CKPT_PAGES) {
        int log = -1, done = -1;
        if (sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE,
                                      &log, &done) == SQLITE_OK) {
            all = done == log;
            pthread_mutex_lock(&k->lock);
            k->next_tail = pages + SQ_CKPT_PAGES / 2;
            pthread_mutex_unlock(&k->lock);
        }
    }
    if (pages >= SQ_CKPT_PAGES && !all) {
        pthread_mutex_lock(&k->lock);
        k->due = true;
        pthread_cond_signal(&k->cond);
        pthread_mutex_unlock(&k->lock);
    }
    return SQLITE_OK;
}

static void *sq_ckpt_main(void *arg)
{
    struct sq_ckpt *k = arg;
    pthread_setname_np(pthread_self(), "fog-checkpoint");
    setpriority(PRIO_PROCESS, (id_t)gettid(), SQ_CKPT_NICE);
    pthread_mutex_lock(&k->lock);
    for (;;) {
        while (!k->due && !k->stop)
            pthread_cond_wait(&k->cond, &k->lock);
        if (k->stop)
            break;
        k->due = false;
        unsigned cycle = k->cycle;
        pthread_mutex_t *writer = k->writer_lock;
        pthread_mutex_unlock(&k->lock);
        /* The WAL does not go away while connections are open: sqlite
         * writes it again from its head, and keeps no lock on it. */
        if (k->wal_fd < 0 && k->wal_path)
            k->wal_fd = open(k->wal_path, O_RDONLY | O_CLOEXEC);
        if (k->wal_fd >= 0)
            fdatasync(k->wal_fd);
        int done = -1;
        if (writer)
            pthread_mutex_lock(writer);
        int rc = sqlite3_wal_checkpoint_v2(k->conn->db, NULL,
                                           SQLITE_CHECKPOINT_PASSIVE, NULL,
                                           &done);
        if (writer)
            pthread_mutex_unlock(writer);
        pthread_mutex_lock(&k->lock);
        bool sync = false;
        if (rc == SQLITE_OK && k->cycle == cycle) {
            k->backfilled = done;
            if (done < k->synced)
                k->synced = 0;
            sync = done - k->synced >= SQ_CKPT_SYNC && k->db_fd >= 0;
        }
        if (!sync)
            continue;
        pthread_mutex_unlock(&k->lock);
        bool synced = fdatasync(k->db_fd) == 0;
        pthread_mutex_lock(&k->lock);
        if (synced && k->cycle == cycle)
            k->synced = done;
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

/* Start the checkpointer of the writer c on path; without one (no second
 * connection), sqlite's own checkpoints stay. */
static void sq_ckpt_start(struct sq_conn *c, const char *path)
{
    struct sq_conn *own;
    if (streq(path, ":memory:") || path[0] == '\0' ||
        sq_connect(path, SQLITE_OPEN_READWRITE, " to checkpoint", &own) < 0)
        return;
    /* A connection learns the file is in WAL mode when it first reads it;
     * until then its checkpoints do nothing. */
    if (sq_exec_plain(own, "PRAGMA journal_mode=WAL") < 0) {
        sq_close(own);
        return;
    }
    struct sq_ckpt *k = xcalloc(1, sizeof(*k));
    k->conn = own;
    k->backfilled = -1;
    k->next_tail = SQ_CKPT_TAIL_FROM;
    const char *file = sqlite3_db_filename(own->db, "main");
    k->db_fd = file && *file ? open(file, O_RDONLY | O_CLOEXEC) : -1;
    k->wal_fd = -1;
    k->wal_path = file && *file ? xasprintf("%s-wal", file) : NULL;
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->cond, NULL);
    if (pthread_create(&k->thread, NULL, sq_ckpt_main, k) != 0) {
        pthread_mutex_destroy(&k->lock);
        pthread_cond_destroy(&k->cond);
        if (k->db_fd >= 0)
            close(k->db_fd);
        free(k->wal_path);
        sq_close(own);
        free(k);
        return;
    }
    c->ckpt = k;
    sqlite3_wal_hook(c->db, sq_wal_hook, k);
}

static void sq_ckpt_stop(struct sq_ckpt *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->lock);
    k->stop = true;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    sq_close(k->conn);
    if (k->db_fd >= 0)
        close(k->db_fd);
    if (k->wal_fd >= 0)
        close(k->wal_fd);
    free(k->wal_path);
    pthread_mutex_destroy(&k->lock);
    pthread_cond_destroy(&k->cond);
    free(k);
}

/* The checkpointer of writer conn holds lock while it checkpoints. */
static void sq_share_lock(void *conn, pthread_mutex_t *lock)
{
    struct sq_conn *c = conn;
    if (!c || !c->ckpt)
        return;
    pthread_mutex_lock(&c->ckpt->lock);
    c->ckpt->writer_lock = lock;
    pthread_mutex_unlock(&c->ckpt->lock);
}

static int sq_open(const char *path, void **ret_conn)
{
    struct sq_conn *c;
    if (sq_connect(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "", &c) < 0)
        return -EIO;
    /* Temporary files in memory: a savepoint inside a transaction (each
     * placement of a scheduler batch, a handler's inside a request) keeps
     * the pages it changes in a sub-journal, which past 64 KiB went to a
     * file and cost a write for every page touched. */
    if (sq_exec_plain(c, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;"
                         "PRAGMA synchronous=NORMAL; "
                         "PRAGMA temp_store=MEMORY;") < 0) {
        sq_close(c);
        return -EIO;
    }
    sq_ckpt_start(c, path);
    *ret_conn = c;
    return 0;
}

/* Readers share the writer's WAL: a read sees the last commit and never
 * waits for a writer (only, briefly, for a checkpoint's start). */
static int sq_open_reader(const char *path, void **ret_conn)
{
    struct sq_conn *c;
    if (streq(path, ":memory:") || path[0] == '\0')
        return -EOPNOTSUPP;
    if (sq_connect(path, SQLITE_OPEN_READONLY, " to read", &c) < 0)
        return -EIO;
    *ret_conn = c;
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
            if (!v) /* not UTF-8: never produced by us */
                v = json_string("");
            break;
        }
        json_object_set_new(row, name, v);
    }
    return row;
}

static size_t ptr_slot(const char *sql)
{
    return (size_t)(((uintptr_t)sql >> 3) * 0x9e3779b97f4a7c15u >> 32) %
           SQ_BY_PTR;
}

/* Where each "$N" of st is. */
static void param_map(struct sq_cached *e)
{
    e->n_param = sqlite3_bind_parameter_count(e->st);
    e->param = xcalloc((size_t)e->n_param + 1, sizeof(*e->param));
    for (int k = 1; k <= e->n_param; k++) {
        const char *name = sqlite3_bind_parameter_name(e->st, k);
        char *end;
        long v = name && name[0] == '$' ? strtol(name + 1, &end, 10) : 0;
        if (v >= 1 && v <= e->n_param && *end == '\0')
            e->param[v - 1] = k;
    }
}

/* The cache entry for sql, prepared on first use; NULL on a prepare
 * error (reported). */
static struct sq_cached *stmt_get(struct sq_conn *c, const char *sql)
{
    size_t slot = ptr_slot(sql);
    struct sq_cached *e = c->ptr_val[slot];
    c->tick++;
    if (c->ptr_key[slot] == sql && e && e->st && strcmp(e->sql, sql) == 0) {
        e->used = c->tick;
        return e;
    }
    uint64_t h = sql_hash(sql);
    struct sq_cached *victim = &c->cache[0];
    for (size_t i = 0; i < SQ_CACHE; i++) {
        e = &c->cache[i];
        if (e->st && e->hash == h && strcmp(e->sql, sql) == 0) {
            e->used = c->tick;
            c->ptr_key[slot] = sql;
            c->ptr_val[slot] = e;
            return e;
        }
        if (!e->st || (victim->st && e->used < victim->used))
            victim = e;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
                           NULL) != SQLITE_OK) {
        log_error("store: prepare failed: %s: %s", sqlite3_errmsg(c->db), sql);
        return NULL;
    }
    sqlite3_finalize(victim->st);
    free(victim->sql);
    free(victim->param);
    *victim = (struct sq_cached){ xstrdup(sql), h, c->tick, st, NULL, 0 };
    param_map(victim);
    c->ptr_key[slot] = sql;
    c->ptr_val[slot] = victim;
    return victim;
}

/* Leave a cached statement ready for its next use. */
static void stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* The cached statement for sql with args bound, or -EIO. */
static int sq_bind(struct sq_conn *c, const char *sql,
                   const struct store_arg *args, size_t n,
                   sqlite3_stmt **ret)
{
    struct sq_cached *e = stmt_get(c, sql);
    if (!e)
        return -EIO;
    sqlite3_stmt *st = e->st;
    if (e->n_param != (int)n) {
        /* Our bug: the argument list does not match the statement. */
        log_error("store: %d placeholders but %zu arguments: %s",
                  e->n_param, n, sql);
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        int idx = e->param[i];
        int rc = SQLITE_OK;
        if (!idx)
            continue;
        if (args[i].type == 's')
            rc = args[i].s ? sqlite3_bind_text(st, idx, args[i].s, -1,
                                               SQLITE_TRANSIENT)
                           : sqlite3_bind_null(st, idx);
        else
            rc = sqlite3_bind_int64(st, idx, args[i].i);
        if (rc != SQLITE_OK) {
            stmt_done(st);
            return -EIO;
        }
    }
    *ret = st;
    return 0;
}

/* How a stepped statement ended: rows changed or -errno. */
static int sq_end(struct sq_conn *c, sqlite3_stmt *st, int rc)
{
    int r = rc == SQLITE_DONE
                ? sqlite3_changes(c->db)
                : sq_errno(c->db, sqlite3_extended_errcode(c->db));
    stmt_done(st);
    return r;
}

static int sq_exec(void *conn, const char *sql, const struct store_arg *args,
                   size_t n, json_t **ret_rows)
{
    struct sq_conn *c = conn;
    sqlite3_stmt *st;
    if (sq_bind(c, sql, args, n, &st) < 0)
        return -EIO;
    json_t *rows = ret_rows ? json_array() : NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (rows)
            json_array_append_new(rows, row_json(st));
    int r = sq_end(c, st, rc);
    if (r < 0) {
        json_decref(rows);
        return r;
    }
    if (ret_rows)
        *ret_rows = rows;
    return r;
}

/* A statement being walked by sq_exec_each, its column names read once:
 * each sqlite3_column_name() call takes the connection's mutex. The memo
 * remembers, per column name pointer asked for (callers pass literals),
 * the column it named last, so a row written member by member in any
 * order finds each column with one comparison instead of a scan. */
#define SQ_MEMO 128 /* a power of two, above twice the columns asked for */
struct sq_walk {
    sqlite3_stmt *st;
    int n;
    const char **names;
    int memo_used;
    struct {
        const char *col;
        int at;
    } memo[SQ_MEMO];
};

/* The column named col, -1 when there is none. */
static int sq_column_of(struct sq_walk *w, struct store_row *r,
                        const char *col)
{
    size_t m = (((uintptr_t)col * UINT64_C(0x9e3779b97f4a7c15)) >> 32) &
               (SQ_MEMO - 1);
    /* Open addressing: the names asked for keep their slots for the whole
     * walk. The name is compared again on a hit: the pointer may be a
     * buffer whose text changed since. */
    while (w->memo[m].col) {
        if (w->memo[m].col == col) {
            int at = w->memo[m].at;
            if (strcmp(w->names[at], col) == 0)
                return at;
            break;
        }
        m = (m + 1) & (SQ_MEMO - 1);
    }
    for (int k = 0; k < w->n; k++) {
        int c = (r->hint + k) % w->n;
        if (!w->names[c] || strcmp(w->names[c], col) != 0)
            continue;
        r->hint = c + 1;
        if (!w->memo[m].col && w->memo_used < SQ_MEMO / 2) {
            w->memo[m].col = col;
            w->memo[m].at = c;
            w->memo_used++;
        }
        return c;
    }
    return -1;
}

static struct store_value sq_row_get(struct store_row *r, const char *col)
{
    struct sq_walk *w = r->impl;
    sqlite3_stmt *st = w->st;
    int c = sq_column_of(w, r, col);
    if (c >= 0) {
        switch (sqlite3_column_type(st, c)) {
        case SQLITE_INTEGER:
            return (struct store_value){ STORE_INT, sqlite3_column_int64(st, c),
                                         NULL, 0 };
        case SQLITE_NULL:
            break;
        default: {
            const char *t = (const char *)sqlite3_column_text(st, c);
            if (!t) /* out of memory */
                break;
            return (struct store_value){ STORE_TEXT, 0, t,
                                         (size_t)sqlite3_column_bytes(st, c) };
        }
        }
    }
    return (struct store_value){ STORE_NULL, 0, NULL, 0 };
}

static int sq_exec_each(void *conn, const char *sql,
                        const struct store_arg *args, size_t n,
                        void (*fn)(struct store_row *row, void *data),
                        void *data)
{
    struct sq_conn *c = conn;
    sqlite3_stmt *st;
    if (sq_bind(c, sql, args, n, &st) < 0)
        return -EIO;
    struct sq_walk w = { .st = st };
    _cleanup_free_ const char **names = NULL;
    struct store_row row = { sq_row_get, &w, 0 };
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        /* Read after the first step, which may prepare the statement
         * again (schema change) and so replace its names. */
        if (!names) {
            w.n = sqlite3_column_count(st);
            names = xcalloc(w.n > 0 ? (size_t)w.n : 1, sizeof(*names));
            for (int i = 0; i < w.n; i++)
                names[i] = sqlite3_column_name(st, i);
            w.names = names;
        }
        row.hint = 0;
        fn(&row, data);
    }
    return sq_end(c, st, rc);
}

const struct store_ops store_sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .open_reader = sq_open_reader,
    .share_lock = sq_share_lock,
    .exec_plain = sq_exec_plain,
    .exec = sq_exec,
    .exec_each = sq_exec_each,
    .begin_sql = "BEGIN IMMEDIATE",
    .shared_snapshot_pays = true,
};
