/* Backup and restore of the embedded sqlite store through sqlite's online
 * backup API (a page-level copy under one read transaction). */
#include "controller/backup.h"

#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static void db_closep(sqlite3 **db)
{
    if (*db)
        sqlite3_close_v2(*db);
}
#define _cleanup_db_ __attribute__((cleanup(db_closep)))

static int open_db(const char *path, int flags, sqlite3 **ret)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "fog-controller: cannot open '%s': %s\n", path,
                db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close_v2(db);
        return -EIO;
    }
    sqlite3_busy_timeout(db, 10000);
    *ret = db;
    return 0;
}

/* Copy every page of src's main database into dst's in one step. */
static int copy_db(sqlite3 *dst, sqlite3 *src, const char *what)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b) {
        fprintf(stderr, "fog-controller: %s: %s\n", what, sqlite3_errmsg(dst));
        return -EIO;
    }
    int rc;
    /* Busy or locked: another connection holds a lock a moment; retry. */
    for (int tries = 0; tries < 100; tries++) {
        rc = sqlite3_backup_step(b, -1);
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
            break;
        sqlite3_sleep(100);
    }
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "fog-controller: %s: %s\n", what, sqlite3_errstr(rc));
        return -EIO;
    }
    return 0;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

int backup_sqlite_take(const char *db, const char *to)
{
    _cleanup_db_ sqlite3 *src = NULL, *dst = NULL;
    struct stat st;
    if (stat(db, &st) < 0) {
        fprintf(stderr, "fog-controller: no database at '%s'\n", db);
        return -ENOENT;
    }
    _cleanup_free_ char *tmp = xasprintf("%s.part", to);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int r = -errno;
        fprintf(stderr, "fog-controller: cannot create '%s': %s\n", tmp,
                strerror(-r));
        return r;
    }
    close(fd);
    int r = open_db(db, SQLITE_OPEN_READONLY, &src);
    if (r == 0)
        r = open_db(tmp, SQLITE_OPEN_READWRITE, &dst);
    if (r == 0)
        r = copy_db(dst, src, "backup");
    /* The copy is a plain rollback-journal file, whatever the source. */
    if (r == 0 && sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL,
                               NULL, NULL) != SQLITE_OK)
        r = -EIO;
    db_closep(&dst);
    dst = NULL;
    if (r == 0 && (r = fsync_path(tmp)) < 0)
        fprintf(stderr, "fog-controller: fsync '%s': %s\n", tmp, strerror(-r));
    if (r == 0 && rename(tmp, to) < 0) {
        r = -errno;
        fprintf(stderr, "fog-controller: cannot rename '%s' to '%s': %s\n",
                tmp, to, strerror(-r));
    }
    if (r < 0)
        unlink(tmp);
    return r;
}

/* 0 when db holds a fogfabric store that sqlite finds intact. */
static int check_store(sqlite3 *db, const char *path)
{
    sqlite3_stmt *st = NULL;
    int ok = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW &&
        streq((const char *)sqlite3_column_text(st, 0), "ok"))
        ok = 1;
    sqlite3_finalize(st);
    if (!ok) {
        fprintf(stderr, "fog-controller: '%s' is not an intact sqlite "
                        "database\n", path);
        return -EINVAL;
    }
    ok = 0;
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM schema_migrations", -1,
                           &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0)
        ok = 1;
    sqlite3_finalize(st);
    if (!ok) {
        fprintf(stderr, "fog-controller: '%s' is not a fogfabric store (no "
                        "schema_migrations)\n", path);
        return -EINVAL;
    }
    return 0;
}

int backup_sqlite_restore(const char *from, const char *db)
{
    _cleanup_db_ sqlite3 *src = NULL, *dst = NULL;
    struct stat st;
    if (stat(from, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "fog-controller: no backup file at '%s'\n", from);
        return -ENOENT;
    }
    int r = open_db(from, SQLITE_OPEN_READONLY, &src);
    if (r < 0 || (r = check_store(src, from)) < 0)
        return r;
    /* Through the backup API rather than a file copy, so a WAL or journal
     * the old database left behind cannot be replayed over the restored
     * pages. */
    if ((r = open_db(db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &dst)) < 0)
        return r;
    chmod(db, 0600);
    if ((r = copy_db(dst, src, "restore")) < 0)
        return r;
    if (sqlite3_exec(dst, "PRAGMA journal_mode = WAL; PRAGMA "
                          "wal_checkpoint(TRUNCATE)", NULL, NULL,
                     NULL) != SQLITE_OK) {
        fprintf(stderr, "fog-controller: restore: %s\n", sqlite3_errmsg(dst));
        return -EIO;
    }
    return 0;
}
