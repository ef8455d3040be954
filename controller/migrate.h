/* Moving the embedded sqlite store to PostgreSQL: every table's rows, read
 * from one consistent snapshot of a store that may be serving, written in
 * one PostgreSQL transaction, then checked row for row in count and in
 * the ledger's balances. */
#pragma once

#include <stdint.h>

/* What a migration moved. */
struct migrate_report {
    unsigned tables;
    int64_t rows;
    int64_t ledger_total;   /* sum of every ledger entry (0 when balanced) */
    unsigned accounts;      /* ledger accounts whose balances were compared */
};

/* Copy the sqlite store at `from` (a path; it may be served meanwhile:
 * the copy is one read snapshot) into the PostgreSQL database at `to`
 * (postgresql://...), which must hold no fogfabric rows yet (its schema is
 * made or brought up to date first). Tables are filled parents before
 * children, all in one transaction, and committed only after every
 * table's row count and every ledger account's balance match the
 * snapshot's. 0 or -errno (message printed on stderr); on failure the
 * destination is left as it was. *ret (may be NULL) is filled on 0. */
int migrate_store(const char *from, const char *to, struct migrate_report *ret);
