/* Backup and restore of the embedded sqlite store: a consistent copy taken
 * with sqlite's online backup API while the controller serves, and its
 * way back into a stopped controller's data directory. */
#pragma once

/* Copy the sqlite database at `db` to `to` in one step of the online
 * backup API, so the copy is one consistent snapshot even while another
 * process writes (WAL readers are not blocked). The file is written
 * beside `to` and renamed over it, mode 0600. 0 or -errno (message
 * printed). */
int backup_sqlite_take(const char *db, const char *to);

/* Replace the database at `db` with the backup `from` after checking the
 * backup is a fogfabric store that passes sqlite's integrity check. The
 * controller must be stopped. 0 or -errno (message printed). */
int backup_sqlite_restore(const char *from, const char *db);
