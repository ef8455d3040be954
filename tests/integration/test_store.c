/* The store's queries on both backends: migrations, bound parameters
 * (no string ever becomes SQL), uniqueness, transactions, NULLs and
 * 64-bit integers. sqlite always; PostgreSQL when its server binaries are
 * installed (a throwaway cluster on a Unix socket in a temp dir), plus
 * leader election and cross-replica notifications there. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "controller/netalloc.h"
#include "controller/schema.h"
#include "controller/store.h"
#include "tests/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <pwd.h>
#include <glob.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct backend {
    char *dir;
    char *uri;
};
static struct backend sq;
static struct tu_pg pgc;
static struct backend pg;

/* The highest migration number (numbers may skip). */
static unsigned schema_files(void)
{
    glob_t g;
    unsigned n = 0;
    if (glob("controller/schema/[0-9][0-9][0-9]_*.sql", 0, NULL, &g) != 0)
        return 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        unsigned v = (unsigned)atoi(g.gl_pathv[i] + strlen("controller/schema/"));
        if (v > n)
            n = v;
    }
    globfree(&g);
    return n;
}

static int setup(void **state)
{
    sq.dir = tu_tempdir("store-sqlite");
    sq.uri = xasprintf("%s/fog.db", sq.dir);
    if (tu_pg_start(&pgc))
        pg.uri = pgc.uri;
    else
        fprintf(stderr, "PostgreSQL server not available: its cases are "
                        "skipped\n");
    return 0;
}

static int teardown(void **state)
{
    tu_pg_stop(&pgc);
    tu_rmrf(sq.dir);
    free(sq.dir);
    free(sq.uri);
    return 0;
}

static struct store *open_or_skip(struct backend *b)
{
    if (!b->uri) {
        skip();
        return NULL;
    }
    struct store *s;
    assert_int_equal(store_open(b->uri, &s), 0);
    return s;
}

/* What store_query_each handed out, row by row. */
struct each_seen {
    int rows;
    char names[4][64];
    int64_t created[4];
    enum store_type missing[4], absent[4], created_as_text[4];
};

static void each_row(struct store_row *row, void *data)
{
    struct each_seen *e = data;
    int i = e->rows++;
    if (i >= 4)
        return;
    /* Asked for out of the select's order: lookups by name wrap. */
    e->missing[i] = store_row_get(row, "missing").type;
    e->created[i] = store_row_int(row, "created_at", -1);
    const char *n = store_row_str(row, "name");
    snprintf(e->names[i], sizeof(e->names[i]), "%s", n ? n : "(none)");
    e->absent[i] = store_row_get(row, "no_such_column").type;
    e->created_as_text[i] = store_row_str(row, "created_at") ? STORE_TEXT
                                                              : STORE_INT;
}

static void check_queries(struct backend *b)
{
    struct store *s = open_or_skip(b);
    unsigned want = schema_files();
    assert_true(want >= 3);
    assert_int_equal(store_schema_version(s), want);

    /* A hostile string is data, never SQL. */
    const char *evil = "x'); DROP TABLE accounts; --";
    assert_int_equal(store_exec(s, "INSERT INTO accounts (id, name, role, "
                                   "created_at) VALUES ($1, $2, $3, $4)",
                                "sssi", "a1", evil, "tenant", INT64_C(5000000000)),
                     1);
    json_auto_t *row = NULL;
    assert_int_equal(store_query_one(s, &row, "SELECT name, created_at FROM "
                                              "accounts WHERE id = $1",
                                     "s", "a1"),
                     0);
    assert_string_equal(json_str(row, "name"), evil);
    /* 64-bit integers survive both backends (PostgreSQL's BIGINT). */
    assert_int_equal(json_int(row, "created_at", 0), INT64_C(5000000000));

    /* Uniqueness is -EEXIST, so handlers answer 409. */
    assert_int_equal(store_exec(s, "INSERT INTO accounts (id, name, role, "
                                   "created_at) VALUES ($1, $2, $3, $4)",
                                "sssi", "a2", evil, "tenant", INT64_C(1)),
                     -EEXIST);
    /* A CHECK constraint is no name clash: -EINVAL, its own answer. */
    assert_int_equal(store_exec(s, "INSERT INTO accounts (id, name, role, "
                                   "created_at) VALUES ($1, $2, $3, $4)",
                                "sssi", "a3", "n3", "emperor", INT64_C(1)),
                     -EINVAL);

    /* A rolled-back transaction leaves nothing. */
    assert_int_equal(store_tx_begin(s), 0);
    assert_int_equal(store_exec(s, "INSERT INTO accounts (id, name, role, "
                                   "created_at) VALUES ($1, $2, $3, $4)",
                                "sssi", "a4", "n4", "tenant", INT64_C(1)),
                     1);
    store_tx_rollback(s);
    assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM accounts "
                                            "WHERE id = $1", "s", "a4"),
                     0);
    /* A committed one stays. */
    assert_int_equal(store_tx_begin(s), 0);
    assert_int_equal(store_exec(s, "INSERT INTO accounts (id, name, role, "
                                   "created_at) VALUES ($1, $2, $3, $4)",
                                "sssi", "a5", "n5", "provider", INT64_C(1)),
                     1);
    assert_int_equal(store_tx_commit(s), 0);

    /* NULL binds and reads back as JSON null; a bool binds as 0/1. */
    assert_int_equal(store_exec(s, "INSERT INTO accounts (id, name, role, "
                                   "created_at) VALUES ($1, $2, $3, $4)",
                                "sssi", "a6", "n6", "tenant", INT64_C(0)),
                     1);
    json_auto_t *rows = NULL;
    assert_int_equal(store_query(s, &rows, "SELECT id, NULL AS missing FROM "
                                           "accounts WHERE ($1 = 1 OR id = $2) "
                                           "ORDER BY id", "bs", false, NULL),
                     0);
    assert_int_equal(json_array_size(rows), 0);
    json_decref(rows);
    rows = NULL;
    assert_int_equal(store_query(s, &rows, "SELECT id, NULL AS missing FROM "
                                           "accounts WHERE ($1 = 1 OR id = $2) "
                                           "ORDER BY id", "bs", true, NULL),
                     0);
    assert_int_equal(json_array_size(rows), 3);
    assert_true(json_is_null(json_object_get(json_array_get(rows, 0), "missing")));
    /* The same rows walked one by one, without a JSON object each. */
    struct each_seen e = { 0 };
    assert_int_equal(store_query_each(s, each_row, &e, "SELECT id, name, "
                                      "NULL AS missing, created_at FROM "
                                      "accounts WHERE ($1 = 1 OR id = $2) "
                                      "ORDER BY id", "bs", true, NULL),
                     0);
    assert_int_equal(e.rows, 3);
    assert_string_equal(e.names[0], "x'); DROP TABLE accounts; --");
    assert_int_equal(e.created[0], INT64_C(5000000000));
    assert_string_equal(e.names[1], "n5");
    assert_int_equal(e.created[2], 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(e.missing[i], STORE_NULL);
        assert_int_equal(e.absent[i], STORE_NULL);
        assert_int_equal(e.created_as_text[i], STORE_INT);
    }
    e = (struct each_seen){ 0 };
    assert_int_equal(store_query_each(s, each_row, &e, "SELECT id FROM "
                                      "accounts WHERE id = $1", "s", "none"),
                     0);
    assert_int_equal(e.rows, 0);
    assert_int_equal(store_query_int(s, 42, "SELECT created_at FROM accounts "
                                            "WHERE id = $1", "s", "none"),
                     42);
    assert_int_equal(store_query_one(s, &row, "SELECT id FROM accounts WHERE "
                                              "id = $1", "s", "none"),
                     -ENOENT);
    store_close(s);

    /* Reopening applies nothing twice and keeps the data. */
    assert_int_equal(store_open(b->uri, &s), 0);
    assert_int_equal(store_schema_version(s), want);
    assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM accounts", ""),
                     3);
    store_close(s);
}

static void sqlite_queries_bind_and_constrain(void **state)
{
    check_queries(&sq);
}

static void postgresql_queries_bind_and_constrain(void **state)
{
    check_queries(&pg);
}

/* A VM "vmN" of account na1 with one interface in network w1 at addr, as
 * a controller before integer addresses recorded it (vm_nics only). */
static void vm_with_nic(struct store *s, int n, const char *addr)
{
    char id[16], mac[32];
    snprintf(id, sizeof(id), "vm%d", n);
    snprintf(mac, sizeof(mac), "52:54:00:00:00:%02x", n);
    assert_int_equal(store_exec(s, "INSERT INTO vms (id, account_id, name, "
                                   "vcpus, memory_mib, disk_gib, image, "
                                   "desired_state, state, created_at, "
                                   "updated_at) VALUES ($1, 'na1', $1, 1, 64, "
                                   "1, 'i', 'running', 'pending', 1, 1)",
                                "s", id), 1);
    assert_int_equal(store_exec(s, "INSERT INTO vm_nics (vm_id, idx, "
                                   "network_id, mac, address) VALUES ($1, 0, "
                                   "'w1', $2, $3)", "sss", id, mac, addr), 1);
}

static char *alloc_for(struct store *s, int n)
{
    char id[16];
    snprintf(id, sizeof(id), "vm%d", n);
    assert_int_equal(store_tx_begin(s), 0);
    char *addr = netalloc_address(s, "w1", id);
    assert_int_equal(store_tx_commit(s), 0);
    return addr;
}

/* Network w1's free map (schema 049) matches its taken addresses: below
 * addr_top, net_free holds exactly the addresses net_addrs lacks, from the
 * first host (.2 of net) up. */
static void assert_map_whole(struct store *s, int64_t net)
{
    int64_t top = store_query_int(s, -1, "SELECT addr_top FROM networks "
                                         "WHERE id = 'w1'", "");
    assert_true(top >= net + 2);
    for (int64_t a = net + 2; a < top; a++) {
        int64_t taken = store_query_int(s, -1, "SELECT COUNT(*) FROM "
                                               "net_addrs WHERE network_id = "
                                               "'w1' AND addr = $1", "i", a);
        int64_t free = store_query_int(s, -1, "SELECT COUNT(*) FROM net_free "
                                              "WHERE network_id = 'w1' AND "
                                              "addr = $1", "i", a);
        if (taken + free != 1)
            fail_msg("address %" PRId64 ": taken %" PRId64 ", free %" PRId64,
                     a - net, taken, free);
    }
    assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM net_free "
                                            "WHERE network_id = 'w1' AND "
                                            "addr >= $1", "i", top), 0);
}

/* Addresses are the lowest free host of the network: a network's rows
 * from before integer addresses count as taken, a freed address is the
 * next one handed out, and a full network gives none. */
static void check_addresses(struct backend *b)
{
    struct store *s = open_or_skip(b);
    assert_int_equal(store_exec(s, "INSERT INTO accounts (id, name, role, "
                                   "created_at) VALUES ('na1', 'nn1', "
                                   "'tenant', 1)", ""), 1);
    /* A /29: hosts .2 to .6 (.1 the gateway, .7 broadcast). */
    assert_int_equal(store_exec(s, "INSERT INTO networks (id, account_id, "
                                   "name, cidr, gateway, vxlan_id, "
                                   "created_at) VALUES ('w1', 'na1', 'w', "
                                   "'10.9.0.0/29', '10.9.0.1', 5000, 1)", ""),
                     1);
    /* Rows as an older controller left them: .2 and .4 taken. */
    vm_with_nic(s, 1, "10.9.0.2");
    vm_with_nic(s, 2, "10.9.0.4");
    _cleanup_free_ char *a3 = alloc_for(s, 3);
    _cleanup_free_ char *a4 = alloc_for(s, 4);
    _cleanup_free_ char *a5 = alloc_for(s, 5);
    _cleanup_free_ char *a6 = alloc_for(s, 6);
    assert_string_equal(a3, "10.9.0.3");
    assert_string_equal(a4, "10.9.0.5");
    assert_string_equal(a5, "10.9.0.6");
    assert_null(a6);
    const int64_t net = (10 << 24) | (9 << 16);
    assert_map_whole(s, net);
    /* The lowest freed address comes back first. */
    assert_int_equal(netalloc_release(s, "vm4"), 0);
    assert_int_equal(netalloc_release(s, "vm1"), 0);
    assert_map_whole(s, net);
    _cleanup_free_ char *again = alloc_for(s, 7);
    assert_map_whole(s, net);
    _cleanup_free_ char *again2 = alloc_for(s, 8);
    _cleanup_free_ char *none = alloc_for(s, 9);
    assert_string_equal(again, "10.9.0.2");
    assert_string_equal(again2, "10.9.0.5");
    assert_null(none);
    assert_map_whole(s, net);
    /* One address is never held twice. */
    assert_int_equal(store_exec(s, "INSERT INTO net_addrs (network_id, addr, "
                                   "vm_id) SELECT network_id, addr, 'x' FROM "
                                   "net_addrs LIMIT 1", ""), -EEXIST);
    store_close(s);
}

/* A store written before the free map (schema 048) keeps its addresses:
 * the migration frees the gaps between the old cursor and the highest
 * taken address, and allocation goes on from the lowest of them. */
static void sqlite_migration_maps_free_addresses(void **state)
{
    _cleanup_free_ char *dir = tu_tempdir("store-mig");
    _cleanup_free_ char *db = xasprintf("%s/fog.db", dir);
    sqlite3 *c;
    assert_int_equal(sqlite3_open(db, &c), SQLITE_OK);
    assert_int_equal(sqlite3_exec(c, "CREATE TABLE schema_migrations (version "
                                     "INTEGER PRIMARY KEY, name TEXT NOT "
                                     "NULL, applied_at BIGINT NOT NULL)",
                                  NULL, NULL, NULL), SQLITE_OK);
    for (unsigned i = 0; i < schema_migration_count; i++) {
        const struct schema_migration *m = &schema_migrations[i];
        if (m->version >= 49)
            continue;
        if (sqlite3_exec(c, m->sql, NULL, NULL, NULL) != SQLITE_OK)
            fail_msg("%s: %s", m->name, sqlite3_errmsg(c));
    }
    /* A /24 whose cursor stands at .5 (.2 to .4 taken below it) with .7
     * and .9 taken above it. */
    const int64_t net = (10 << 24) | (9 << 16);
    _cleanup_free_ char *rows = xasprintf(
        "INSERT INTO schema_migrations VALUES (48, '048', 1);"
        "INSERT INTO accounts (id, name, role, created_at) VALUES ('na1', "
        "'nn1', 'tenant', 1);"
        "INSERT INTO networks (id, account_id, name, cidr, gateway, vxlan_id, "
        "created_at, addr_next) VALUES ('w1', 'na1', 'w', '10.9.0.0/24', "
        "'10.9.0.1', 5000, 1, %" PRId64 ");"
        "INSERT INTO net_addrs VALUES ('w1', %" PRId64 ", 'vm2'), ('w1', "
        "%" PRId64 ", 'vm3'), ('w1', %" PRId64 ", 'vm4'), ('w1', %" PRId64
        ", 'vm7'), ('w1', %" PRId64 ", 'vm9');",
        net + 5, net + 2, net + 3, net + 4, net + 7, net + 9);
    if (sqlite3_exec(c, rows, NULL, NULL, NULL) != SQLITE_OK)
        fail_msg("rows: %s", sqlite3_errmsg(c));
    sqlite3_close(c);

    struct store *s;
    assert_int_equal(store_open(db, &s), 0);
    assert_int_equal(store_query_int(s, -1, "SELECT addr_top FROM networks "
                                            "WHERE id = 'w1'", ""), net + 10);
    assert_map_whole(s, net);
    const char *want[] = { "10.9.0.5", "10.9.0.6", "10.9.0.8", "10.9.0.10",
                           "10.9.0.11" };
    for (int i = 0; i < 5; i++) {
        _cleanup_free_ char *a = alloc_for(s, 20 + i);
        assert_string_equal(a, want[i]);
    }
    assert_map_whole(s, net);
    store_close(s);
    tu_rmrf(dir);
}

static void sqlite_addresses_lowest_free_first(void **state)
{
    check_addresses(&sq);
}

static void postgresql_addresses_lowest_free_first(void **state)
{
    check_addresses(&pg);
}

/* Connections read the file through a mapping, so a store larger than a
 * connection's page cache is not copied in by pread() on every request.
 * (Asked of the writer: readers are opened by the same code, and this
 * pragma has no SELECT form to route to them.) */
static void sqlite_connections_map_the_file(void **state)
{
    struct store *s = open_or_skip(&sq);
    assert_true(store_query_int(s, 0, "PRAGMA mmap_size", "") >= (1 << 30));
    store_close(s);
}

/* The WAL's checkpoint sequence (its header's fourth word), which goes up
 * each time the WAL starts over after a checkpoint; 0 without one. */
static uint32_t wal_sequence(const char *db)
{
    _cleanup_free_ char *path = xasprintf("%s-wal", db);
    unsigned char h[16];
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(h, 1, sizeof(h), f);
    fclose(f);
    if (n != sizeof(h))
        return 0;
    return (uint32_t)h[12] << 24 | (uint32_t)h[13] << 16 |
           (uint32_t)h[14] << 8 | h[15];
}

/* A table of 3,000-byte rows (about a page each) to grow the WAL with;
 * returns the row's text. */
static char *fill_start(struct store *s)
{
    assert_int_equal(store_exec(s, "CREATE TABLE IF NOT EXISTS ckpt_fill "
                                   "(b TEXT)", ""), 0);
    char *blob = xmalloc(3001);
    memset(blob, 'x', 3000);
    blob[3000] = '\0';
    return blob;
}

static void fill_row(struct store *s, const char *blob)
{
    assert_true(store_exec(s, "INSERT INTO ckpt_fill VALUES ($1)", "s",
                           blob) >= 0);
}

/* Checkpoints run beside the commits (a thread of the store's own, not
 * inside the commit that crosses 1,000 pages): under a stream of commits
 * past that size the WAL is copied back and starts over, long before the
 * size at which a commit would do it itself. */
static void sqlite_wal_checkpointed_beside_commits(void **state)
{
    struct store *s = open_or_skip(&sq);
    _cleanup_free_ char *blob = fill_start(s);
    fill_row(s, blob);
    uint32_t first = wal_sequence(sq.uri);
    int i;
    /* Some 1,500 pages, then commits until it has started over (each a
     * moment apart, for the thread to run): well under the 16,000 pages
     * at which a commit checkpoints on its own. */
    for (i = 0; i < 1500; i++)
        fill_row(s, blob);
    for (i = 0; i < 500 && wal_sequence(sq.uri) == first; i++) {
        struct timespec d = { 0, 10 * 1000 * 1000 };
        nanosleep(&d, NULL);
        fill_row(s, blob);
    }
    assert_int_not_equal(wal_sequence(sq.uri), first);
    assert_true(store_exec(s, "DROP TABLE ckpt_fill", "") >= 0);
    store_close(s);
}

/* A word of the WAL index (the -shm file; sqlite's walformat.html), in
 * the machine's byte order: 16, the WAL's last valid frame (mxFrame of the
 * first copy of the header); 96, the frames copied back to the database
 * so far (nBackfill, the first word after the two 48-byte copies). */
static uint32_t wal_index_word(const char *db, off_t at)
{
    _cleanup_free_ char *path = xasprintf("%s-shm", db);
    uint32_t v = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (pread(fd, &v, sizeof(v), at) != (ssize_t)sizeof(v))
            v = 0;
        close(fd);
    }
    return v;
}

/* The checkpointer never copies pages back while a write transaction is
 * open: sqlite before 3.51.3 can lose committed pages when a checkpoint
 * starts while another connection's commit starts the WAL over (the
 * WAL-reset bug), and a stream of placements corrupted bench_sched's
 * store that way. A commit that takes the WAL past 1,000 pages wakes the
 * checkpointer; a transaction begun at once, while frames are left to
 * copy, and held a while sees none copied back until it ends, and they
 * are copied after. (Should the checkpointer get in first and copy them
 * all, more rows are committed and the test begins again.) */
static void sqlite_checkpoints_wait_for_the_writer(void **state)
{
    struct store *s = open_or_skip(&sq);
    _cleanup_free_ char *blob = fill_start(s);
    fill_row(s, blob);
    uint32_t held = 0;
    bool waited = false;
    for (int round = 0; round < 10 && !waited; round++) {
        assert_int_equal(store_tx_begin(s), 0);
        for (int i = 0; i < 1100; i++)
            fill_row(s, blob);
        assert_int_equal(store_tx_commit(s), 0);
        assert_int_equal(store_tx_begin(s), 0);
        held = wal_index_word(sq.uri, 96);
        waited = held < wal_index_word(sq.uri, 16);
        if (waited) {
            struct timespec d = { 0, 300 * 1000 * 1000 };
            nanosleep(&d, NULL);
            assert_int_equal(wal_index_word(sq.uri, 96), held);
        }
        assert_int_equal(store_tx_commit(s), 0);
    }
    assert_true(waited);
    uint32_t after = held;
    for (int i = 0; i < 500 && after == held; i++) {
        struct timespec t = { 0, 10 * 1000 * 1000 };
        nanosleep(&t, NULL);
        after = wal_index_word(sq.uri, 96);
    }
    assert_int_not_equal(after, held);
    assert_true(store_exec(s, "DROP TABLE ckpt_fill", "") >= 0);
    store_close(s);
}

/* A steady writer, one whose next transaction begins before the
 * checkpointer is done with its last commit, still has the WAL start over:
 * a commit that finds the checkpointer a few frames behind a WAL of 4,000
 * pages checkpoints the rest, so the next transaction begins on a WAL
 * checkpointed to its end. The later transactions here stay open a moment
 * after their insert (the checkpointer catches up meanwhile), and the next
 * begins at once. Without that step, the WAL grew to the 16,000 pages at
 * which a commit checkpoints it all. */
static void sqlite_wal_starts_over_under_a_steady_writer(void **state)
{
    struct store *s = open_or_skip(&sq);
    _cleanup_free_ char *blob = fill_start(s);
    uint32_t first = wal_sequence(sq.uri);
    /* Past 4,000 pages in a hundred commits, one after the other. */
    for (int i = 0; i < 100 && wal_sequence(sq.uri) == first; i++) {
        assert_int_equal(store_tx_begin(s), 0);
        for (int j = 0; j < 40; j++)
            fill_row(s, blob);
        assert_int_equal(store_tx_commit(s), 0);
    }
    /* At most some 12,500 pages in all, well under 16,000. */
    for (int i = 0; i < 1500 && wal_sequence(sq.uri) == first; i++) {
        assert_int_equal(store_tx_begin(s), 0);
        fill_row(s, blob);
        struct timespec d = { 0, 5 * 1000 * 1000 };
        nanosleep(&d, NULL);
        assert_int_equal(store_tx_commit(s), 0);
    }
    assert_int_not_equal(wal_sequence(sq.uri), first);
    assert_true(store_exec(s, "DROP TABLE ckpt_fill", "") >= 0);
    store_close(s);
}

/* The first line of path into buf (its newline dropped); false when it
 * cannot be read. */
static bool first_line(const char *path, char *buf, int size)
{
    FILE *f = fopen(path, "re");
    bool ok = f && fgets(buf, size, f);
    if (f)
        fclose(f);
    if (ok)
        buf[strcspn(buf, "\n")] = '\0';
    return ok;
}

/* The nice value of this process's thread named comm, -100 while there
 * is none. */
static int thread_nice(const char *comm)
{
    glob_t g;
    int nice = -100;
    if (glob("/proc/self/task/*", 0, NULL, &g) != 0)
        return nice;
    for (size_t i = 0; i < g.gl_pathc && nice == -100; i++) {
        char line[512];
        _cleanup_free_ char *comm_path = xasprintf("%s/comm", g.gl_pathv[i]);
        if (!first_line(comm_path, line, sizeof(line)) || !streq(line, comm))
            continue;
        _cleanup_free_ char *stat_path = xasprintf("%s/stat", g.gl_pathv[i]);
        if (!first_line(stat_path, line, sizeof(line)))
            continue;
        /* Past the ")" that ends the name: state is field 3, nice 19. */
        const char *p = strrchr(line, ')');
        for (int f = 2; p && f < 19; f++)
            p = strchr(p + 1, ' ');
        if (p)
            nice = atoi(p + 1);
    }
    globfree(&g);
    return nice;
}

/* The checkpointer runs at the lowest priority: its page copies and
 * fdatasync never take the CPU from a request's thread. */
static void sqlite_checkpointer_runs_at_the_lowest_priority(void **state)
{
    struct store *s = open_or_skip(&sq);
    int nice = -100;
    for (int i = 0; i < 200 && nice != 19; i++) {
        struct timespec d = { 0, 5 * 1000 * 1000 };
        nanosleep(&d, NULL);
        nice = thread_nice("fog-checkpoint");
    }
    assert_int_equal(nice, 19);
    store_close(s);
}

/* sqlite counts no memory: the count's mutex, shared by every
 * connection, would be taken around each allocation, the low-priority
 * writer's and checkpointer's included, and a GET's reads wait for it. */
static void sqlite_allocations_share_no_lock(void **state)
{
    struct store *s = open_or_skip(&sq);
    assert_true(store_query_int(s, -1, "SELECT COUNT(*) FROM accounts", "") >=
                0);
    assert_int_equal(sqlite3_memory_used(), 0);
    store_close(s);
}

/* Statements come from the cache by their text, whatever pointer holds
 * it: a buffer reused for another text gets that text's statement, and
 * "$N" bind by number wherever and however often they appear. */
static void sqlite_statements_cached_by_text(void **state)
{
    struct store *s = open_or_skip(&sq);
    json_auto_t *row = NULL;
    assert_int_equal(store_query_one(s, &row, "SELECT $2 AS b, $1 AS a, $1 "
                                     "|| $2 || $1 AS aba", "ss", "x", "y"), 0);
    assert_string_equal(json_str(row, "b"), "y");
    assert_string_equal(json_str(row, "a"), "x");
    assert_string_equal(json_str(row, "aba"), "xyx");
    char sql[96];
    /* Over and over from one buffer, each time another text, and more
     * texts than the cache holds, then the first ones again. */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 300; i++) {
            snprintf(sql, sizeof(sql), "SELECT %d AS k, $1 + %d AS v", i, i);
            json_decref(row);
            row = NULL;
            assert_int_equal(store_query_one(s, &row, sql, "i",
                                             (int64_t)round), 0);
            assert_int_equal(json_int(row, "k", -1), i);
            assert_int_equal(json_int(row, "v", -1), round + i);
        }
    }
    /* Temporary files in memory on the writer (the scheduler's savepoints
     * wrote their sub-journals to disk): 2 is MEMORY. */
    assert_int_equal(store_query_int(s, 0, "PRAGMA temp_store", ""), 2);
    /* A savepoint that changed more than the old in-memory 64 KiB rolls
     * back alone; the transaction around it commits. */
    int64_t before = store_query_int(s, -1, "SELECT COUNT(*) FROM accounts",
                                     "");
    assert_int_equal(store_tx_begin(s), 0);
    assert_int_equal(store_exec(s, "INSERT INTO accounts (id, name, role, "
                                "created_at) VALUES ('sp-keep', 'sp-keep', "
                                "'tenant', 1)", ""), 1);
    assert_int_equal(store_tx_begin(s), 0);
    _cleanup_free_ char *pad = xcalloc(2049, 1);
    memset(pad, 'p', 2048);
    for (int i = 0; i < 300; i++) {
        _cleanup_free_ char *id = xasprintf("sp-%d", i);
        _cleanup_free_ char *name = xasprintf("%s-%d", pad, i);
        assert_int_equal(store_exec(s, "INSERT INTO accounts (id, name, "
                                    "role, created_at) VALUES ($1, $2, "
                                    "'tenant', 1)", "ss", id, name), 1);
    }
    store_tx_rollback(s);
    assert_int_equal(store_tx_commit(s), 0);
    assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM accounts",
                                     ""), before + 1);
    assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM accounts "
                                     "WHERE id = 'sp-keep'", ""), 1);
    store_close(s);
}

struct reading {
    struct store *s;
    int64_t seen, in_snapshot, after;
    int in_tx, in_read_tx;
};

/* A request thread's reads while another thread holds a write
 * transaction: a plain read, then a read-only transaction. Whether it is
 * in a transaction is answered without waiting for the other's. */
static void *reader_run(void *arg)
{
    struct reading *rd = arg;
    rd->in_tx = store_in_tx(rd->s);
    store_route_reads(rd->s, true);
    rd->seen = store_query_int(rd->s, -1, "SELECT COUNT(*) FROM accounts "
                                          "WHERE id = 'held'", "");
    if (store_tx_begin_read(rd->s) == 0) {
        rd->in_snapshot = store_query_int(rd->s, -1, "SELECT COUNT(*) FROM "
                                                     "accounts", "");
        rd->in_read_tx = store_in_tx(rd->s);
        store_tx_rollback(rd->s);
    }
    return NULL;
}

/* Reads of request threads go to read-only connections: they answer while
 * a write transaction is open (seeing only what was committed) instead of
 * queueing behind it, and see the commit after. */
static void check_reads_do_not_wait_for_writes(struct backend *b)
{
    struct store *s = open_or_skip(b);
    int64_t before = store_query_int(s, -1, "SELECT COUNT(*) FROM accounts", "");
    assert_int_equal(store_tx_begin(s), 0);
    assert_int_equal(store_exec(s, "INSERT INTO accounts (id, name, role, "
                                   "created_at) VALUES ('held', 'held', "
                                   "'tenant', 1)", ""), 1);
    struct reading rd = { s, -2, -2, -2, -1, -1 };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reader_run, &rd), 0);
    /* The reader must finish while the write transaction stays open; a
     * reader queued on the writer would never finish before the commit. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 120;
    int joined = pthread_timedjoin_np(t, NULL, &deadline);
    store_tx_commit(s);
    if (joined != 0)
        pthread_join(t, NULL);
    assert_int_equal(joined, 0);
    assert_int_equal(rd.seen, 0);
    assert_int_equal(rd.in_snapshot, before);
    assert_int_equal(rd.in_tx, 0);
    assert_int_equal(rd.in_read_tx, 1);
    /* After the commit a routed read sees it. */
    store_route_reads(s, true);
    assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM accounts "
                                            "WHERE id = 'held'", ""), 1);
    /* Writes of a routed thread still go to the writer. */
    assert_int_equal(store_exec(s, "DELETE FROM accounts WHERE id = 'held'",
                                ""), 1);
    assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM accounts "
                                            "WHERE id = 'held'", ""), 0);
    store_route_reads(s, false);
    store_close(s);
}

static void sqlite_reads_do_not_wait_for_writes(void **state)
{
    check_reads_do_not_wait_for_writes(&sq);
}

static void postgresql_reads_do_not_wait_for_writes(void **state)
{
    check_reads_do_not_wait_for_writes(&pg);
}

struct inserter {
    struct store *s;
    const char *id;
};

/* Another request's write, committed from its own thread. */
static void *insert_run(void *arg)
{
    struct inserter *in = arg;
    _cleanup_free_ char *sql = xasprintf(
        "INSERT INTO accounts (id, name, role, created_at) VALUES ('%s', "
        "'%s', 'tenant', 1)", in->id, in->id);
    assert_int_equal(store_exec(in->s, sql, ""), 1);
    return NULL;
}

static void insert_elsewhere(struct store *s, const char *id)
{
    struct inserter in = { s, id };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, insert_run, &in), 0);
    pthread_join(t, NULL);
}

static int64_t count_id(struct store *s, const char *id)
{
    return store_query_int(s, -1, "SELECT COUNT(*) FROM accounts WHERE id = "
                                  "$1", "s", id);
}

/* A request's reads share one snapshot where that pays (sqlite): a
 * commit of another thread after its first read is not seen until the
 * snapshot ends; a write of its own ends it, so it reads what it wrote;
 * it is no transaction to store_in_tx(). On PostgreSQL it changes
 * nothing: each read sees the last commit. */
static void check_request_snapshot(struct backend *b, bool shared)
{
    struct store *s = open_or_skip(b);
    store_route_reads(s, true);
    store_snapshot_begin(s);
    assert_int_equal(count_id(s, "snap-a"), 0);
    assert_false(store_in_tx(s));
    insert_elsewhere(s, "snap-a");
    assert_int_equal(count_id(s, "snap-a"), shared ? 0 : 1);
    /* Its own write: the next read sees it, and the other's commit. */
    assert_int_equal(store_exec(s, "INSERT INTO accounts (id, name, role, "
                                   "created_at) VALUES ('snap-b', 'snap-b', "
                                   "'tenant', 1)", ""), 1);
    assert_int_equal(count_id(s, "snap-b"), 1);
    assert_int_equal(count_id(s, "snap-a"), 1);
    store_snapshot_end(s); /* ended by the write already: nothing left */
    store_snapshot_end(s);

    /* A write transaction ends it as well. */
    store_snapshot_begin(s);
    assert_int_equal(count_id(s, "snap-c"), 0);
    insert_elsewhere(s, "snap-c");
    assert_int_equal(count_id(s, "snap-c"), shared ? 0 : 1);
    assert_int_equal(store_tx_begin(s), 0);
    assert_int_equal(store_tx_commit(s), 0);
    assert_int_equal(count_id(s, "snap-c"), 1);
    store_snapshot_end(s);

    /* A read-only transaction inside it shares it, and ending that one
     * leaves the snapshot. */
    store_snapshot_begin(s);
    assert_int_equal(count_id(s, "snap-d"), 0);
    insert_elsewhere(s, "snap-d");
    assert_int_equal(store_tx_begin_read(s), 0);
    assert_true(store_in_tx(s));
    assert_int_equal(count_id(s, "snap-d"), shared ? 0 : 1);
    store_tx_rollback(s);
    assert_false(store_in_tx(s));
    assert_int_equal(count_id(s, "snap-d"), shared ? 0 : 1);
    store_snapshot_end(s);
    assert_int_equal(count_id(s, "snap-d"), 1);
    assert_int_equal(store_exec(s, "DELETE FROM accounts WHERE id LIKE "
                                   "'snap-%'", ""), 4);
    store_route_reads(s, false);
    store_close(s);
}

static void sqlite_request_reads_share_a_snapshot(void **state)
{
    check_request_snapshot(&sq, true);
}

static void postgresql_request_snapshot_changes_nothing(void **state)
{
    check_request_snapshot(&pg, false);
}

struct holder {
    struct store *s;
    pthread_barrier_t *held, *release;
};

/* Another request thread in a read-only transaction until released. */
static void *hold_reader_run(void *arg)
{
    struct holder *h = arg;
    store_route_reads(h->s, true);
    assert_int_equal(store_tx_begin_read(h->s), 0);
    store_query_int(h->s, -1, "SELECT COUNT(*) FROM accounts", "");
    pthread_barrier_wait(h->held);
    pthread_barrier_wait(h->release);
    store_tx_rollback(h->s);
    return NULL;
}

static void *snapshot_run(void *arg)
{
    struct store *s = arg;
    store_route_reads(s, true);
    store_snapshot_begin(s);
    store_snapshot_end(s);
    return NULL;
}

/* With every reader held by other threads, a snapshot is not waited for:
 * the request goes on without one. */
static void sqlite_snapshot_never_waits_for_a_reader(void **state)
{
    struct store *s = open_or_skip(&sq);
    enum { READERS = 4 }; /* STORE_READERS */
    pthread_barrier_t held, release;
    pthread_barrier_init(&held, NULL, READERS + 1);
    pthread_barrier_init(&release, NULL, READERS + 1);
    struct holder h = { s, &held, &release };
    pthread_t t[READERS], snap;
    for (int i = 0; i < READERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hold_reader_run, &h), 0);
    pthread_barrier_wait(&held);
    assert_int_equal(pthread_create(&snap, NULL, snapshot_run, s), 0);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 60;
    int joined = pthread_timedjoin_np(snap, NULL, &deadline);
    pthread_barrier_wait(&release);
    for (int i = 0; i < READERS; i++)
        pthread_join(t[i], NULL);
    if (joined != 0)
        pthread_join(snap, NULL);
    assert_int_equal(joined, 0);
    pthread_barrier_destroy(&held);
    pthread_barrier_destroy(&release);
    store_close(s);
}

/* A routed read while the writer holds a transaction: answered by a
 * reader (the writer is busy, so this thread would otherwise wait). */
static void *held_read_run(void *arg)
{
    struct reading *rd = arg;
    store_route_reads(rd->s, true);
    rd->seen = store_query_int(rd->s, -1, "SELECT COUNT(*) FROM accounts", "");
    return NULL;
}

static bool read_beside_a_write(struct store *s)
{
    if (store_tx_begin(s) < 0)
        return false;
    struct reading rd = { s, -2, -2, -2, -1, -1 };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, held_read_run, &rd), 0);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 20;
    int joined = pthread_timedjoin_np(t, NULL, &deadline);
    store_tx_rollback(s);
    if (joined != 0)
        pthread_join(t, NULL);
    return joined == 0 && rd.seen >= 0;
}

/* PostgreSQL restarted under the store: its readers' sessions are gone;
 * they open new ones, so reads beside a write answer again soon after
 * the server is back (meanwhile they went to the writer). */
static void postgresql_readers_come_back_after_a_restart(void **state)
{
    struct store *s = open_or_skip(&pg);
    assert_true(read_beside_a_write(s));
    tu_pg_halt(&pgc);
    assert_true(tu_pg_resume(&pgc));
    /* The writer reconnects at its next statement; the readers at their
     * next use, at most every 2 s. */
    bool ok = false;
    for (int i = 0; i < 100 && !ok; i++) {
        store_route_reads(s, false);
        store_query_int(s, -1, "SELECT 1", "");
        ok = read_beside_a_write(s);
        if (!ok)
            nanosleep(&(struct timespec){ 0, 100 * 1000 * 1000 }, NULL);
    }
    assert_true(ok);
    store_close(s);
}

static void sqlite_store_always_leads(void **state)
{
    struct store *s = open_or_skip(&sq);
    assert_string_equal(store_backend_name(s), "sqlite");
    assert_true(store_try_lead(s));
    assert_true(store_leading(s));
    /* One writer at a time already: locks cost nothing. */
    assert_int_equal(store_tx_begin(s), 0);
    assert_int_equal(store_lock(s, "node", "n1"), 0);
    assert_int_equal(store_tx_commit(s), 0);
    store_close(s);
}

struct heard {
    pthread_mutex_t lock;
    char node[64];
};

static void on_change(const char *node, void *data)
{
    struct heard *h = data;
    pthread_mutex_lock(&h->lock);
    snprintf(h->node, sizeof(h->node), "%s", node);
    pthread_mutex_unlock(&h->lock);
}

static void postgresql_replicas_elect_one_leader_and_notify(void **state)
{
    struct store *a = open_or_skip(&pg);
    struct store *b = open_or_skip(&pg);
    assert_string_equal(store_backend_name(a), "postgresql");
    assert_true(store_try_lead(a));
    assert_false(store_try_lead(b));
    assert_true(store_try_lead(a));
    assert_true(store_leading(a));
    assert_false(store_leading(b));

    struct heard h = { PTHREAD_MUTEX_INITIALIZER, "" };
    assert_int_equal(store_listen(b, on_change, &h), 0);
    store_notify_node(a, "node-7");
    bool got = false;
    for (int i = 0; i < 100 && !got; i++) {
        nanosleep(&(struct timespec){ 0, 50 * 1000 * 1000 }, NULL);
        pthread_mutex_lock(&h.lock);
        got = streq(h.node, "node-7");
        pthread_mutex_unlock(&h.lock);
    }
    assert_true(got);

    /* The leader leaving hands the lock to the other replica. */
    store_close(a);
    bool led = false;
    for (int i = 0; i < 100 && !led; i++) {
        led = store_try_lead(b);
        if (!led)
            nanosleep(&(struct timespec){ 0, 50 * 1000 * 1000 }, NULL);
    }
    assert_true(led);
    assert_true(store_leading(b));
    store_close(b);
}

/* A second transaction taking a lock (kind, id), on its own thread. */
struct locker {
    pthread_t t;
    struct store *s;
    const char *first, *second; /* ids of kind "k"; second may be NULL */
    int locked, committed;
    int64_t seen;
};

static void *locker_run(void *arg)
{
    struct locker *l = arg;
    l->locked = store_tx_begin(l->s);
    if (l->locked == 0)
        l->locked = store_lock(l->s, "k", l->first);
    if (l->locked == 0 && l->second)
        l->locked = store_lock(l->s, "k", l->second);
    l->seen = store_query_int(l->s, -1, "SELECT COUNT(*) FROM accounts "
                                        "WHERE id = 'lk1'", "");
    l->committed = store_tx_commit(l->s);
    return NULL;
}

/* Until some transaction waits for an advisory lock (asked on c). */
static bool lock_awaited(struct store *c)
{
    for (int i = 0; i < 600; i++) {
        if (store_query_int(c, 0, "SELECT COUNT(*) FROM pg_locks WHERE "
                                  "locktype = 'advisory' AND NOT granted",
                            "") > 0)
            return true;
        nanosleep(&(struct timespec){ 0, 50 * 1000 * 1000 }, NULL);
    }
    return false;
}

static void postgresql_locks_serialise_and_deadlocks_are_retryable(void **state)
{
    struct store *a = open_or_skip(&pg);
    struct store *b = open_or_skip(&pg);
    struct store *c = open_or_skip(&pg);

    /* b waits for a's lock, then sees what a committed. */
    assert_int_equal(store_tx_begin(a), 0);
    assert_int_equal(store_lock(a, "k", "x"), 0);
    assert_int_equal(store_exec(a, "INSERT INTO accounts (id, name, role, "
                                   "created_at) VALUES ('lk1', 'lk1', "
                                   "'tenant', 1)", ""), 1);
    struct locker l = { .s = b, .first = "x" };
    assert_int_equal(pthread_create(&l.t, NULL, locker_run, &l), 0);
    assert_true(lock_awaited(c));
    assert_int_equal(store_tx_commit(a), 0);
    pthread_join(l.t, NULL);
    assert_int_equal(l.locked, 0);
    assert_int_equal(l.seen, 1);
    assert_int_equal(l.committed, 0);

    /* Opposite orders deadlock: the loser's lock and commit say -EAGAIN
     * (run it again), the winner commits. */
    assert_int_equal(store_tx_begin(a), 0);
    assert_int_equal(store_lock(a, "k", "1"), 0);
    l = (struct locker){ .s = b, .first = "2", .second = "1" };
    assert_int_equal(pthread_create(&l.t, NULL, locker_run, &l), 0);
    assert_true(lock_awaited(c));
    int mine = store_lock(a, "k", "2");
    int mine_commit = store_tx_commit(a);
    pthread_join(l.t, NULL);
    assert_true((mine == -EAGAIN) != (l.locked == -EAGAIN));
    assert_int_equal(mine_commit, mine == -EAGAIN ? -EAGAIN : 0);
    assert_int_equal(l.committed, l.locked == -EAGAIN ? -EAGAIN : 0);
    store_close(c);
    store_close(b);
    store_close(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sqlite_queries_bind_and_constrain),
        cmocka_unit_test(sqlite_store_always_leads),
        cmocka_unit_test(sqlite_addresses_lowest_free_first),
        cmocka_unit_test(sqlite_migration_maps_free_addresses),
        cmocka_unit_test(sqlite_reads_do_not_wait_for_writes),
        cmocka_unit_test(sqlite_request_reads_share_a_snapshot),
        cmocka_unit_test(sqlite_snapshot_never_waits_for_a_reader),
        cmocka_unit_test(sqlite_connections_map_the_file),
        cmocka_unit_test(sqlite_statements_cached_by_text),
        cmocka_unit_test(sqlite_allocations_share_no_lock),
        cmocka_unit_test(sqlite_wal_checkpointed_beside_commits),
        cmocka_unit_test(sqlite_wal_starts_over_under_a_steady_writer),
        cmocka_unit_test(sqlite_checkpoints_wait_for_the_writer),
        cmocka_unit_test(sqlite_checkpointer_runs_at_the_lowest_priority),
        cmocka_unit_test(postgresql_queries_bind_and_constrain),
        cmocka_unit_test(postgresql_addresses_lowest_free_first),
        cmocka_unit_test(postgresql_reads_do_not_wait_for_writes),
        cmocka_unit_test(postgresql_request_snapshot_changes_nothing),
        cmocka_unit_test(postgresql_readers_come_back_after_a_restart),
        cmocka_unit_test(postgresql_replicas_elect_one_leader_and_notify),
        cmocka_unit_test(postgresql_locks_serialise_and_deadlocks_are_retryable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
