/* What the public DNS zone costs the reconciler each round: loading its
 * records from a sqlite store of N running VMs with a published port (one
 * account per 10 VMs, 100 nodes) and rendering the hosts file, the work
 * pubzone_sync does every second before finding the text unchanged.
 * Medians of 5. Figures, not pass/fail. Sizes: arguments (e.g.
 * `bench_pubzone 1000 10000`), default 1000 10000. */
#include "common/ids.h"
#include "controller/pubzone.h"
#include "controller/store.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NODES 100

/* Stop at the first failure, saying where. */
#define CHECK(x)                                                               \
    do {                                                                       \
        if ((x) < 0) {                                                         \
            fprintf(stderr, "bench_pubzone: line %d failed\n", __LINE__);   \
            abort();                                                           \
        }                                                                      \
    } while (0)

static void fill(struct store *s, int n)
{
    char node[NODES][UUID_STR_LEN + 1], acct[UUID_STR_LEN + 1],
        id[UUID_STR_LEN + 1];
    int64_t t = 1700000000;
    if (store_tx_begin(s) < 0)
        abort();
    uuid_generate_str(acct);
    if (store_exec(s, "INSERT INTO accounts (id, name, role, created_at) "
                   "VALUES ($1, 'provider', 'provider', $2)", "si", acct,
                   t) < 0)
        abort();
    for (int i = 0; i < NODES; i++) {
        uuid_generate_str(node[i]);
        _cleanup_free_ char *name = xasprintf("n%d", i);
        _cleanup_free_ char *ip = xasprintf("198.51.%d.%d", 100 + i / 250,
                                            1 + i % 250);
        if (store_exec(s, "INSERT INTO nodes (id, name, account_id, "
                       "cred_id, cred_salt, cred_hash, public_ip, "
                       "created_at) VALUES ($1, $2, $3, $1, '', '', $4, $5)",
                       "ssssi", node[i], name, acct, ip, t) < 0)
            abort();
    }
    for (int i = 0; i < n; i++) {
        if (i % 10 == 0) {
            uuid_generate_str(acct);
            _cleanup_free_ char *an = xasprintf("tenant%d", i / 10);
            if (store_exec(s, "INSERT INTO accounts (id, name, role, "
                           "created_at) VALUES ($1, $2, 'tenant', $3)",
                           "ssi", acct, an, t + i) < 0)
                abort();
        }
        uuid_generate_str(id);
        _cleanup_free_ char *vn = xasprintf("vm%d", i);
        if (store_exec(s, "INSERT INTO vms (id, account_id, name, vcpus, "
                       "memory_mib, disk_gib, image, desired_state, "
                       "state, node_id, created_at, updated_at) VALUES ($1, "
                       "$2, $3, 1, 128, 1, 'tiny', 'running', 'running', $4, "
                       "$5, $5)",
                       "ssssi", id, acct, vn, node[i % NODES], t + i) < 0 ||
            store_exec(s, "INSERT INTO ports (id, vm_id, proto, vm_port, "
                       "node_id, host_port, created_at) VALUES ($1, $1, "
                       "'tcp', 80, $2, $3, $4)", "ssii", id,
                       node[i % NODES], (int64_t)(20000 + i / NODES),
                       t + i) < 0)
            abort();
    }
    if (store_tx_commit(s) < 0)
        abort();
}

static int cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    static const int defaults[] = { 1000, 10000 };
    int nsizes = argc > 1 ? argc - 1 : 2;
    for (int k = 0; k < nsizes; k++) {
        int n = argc > 1 ? atoi(argv[k + 1]) : defaults[k];
        _cleanup_free_ char *dir = tu_tempdir("bench-pubzone");
        _cleanup_free_ char *db = xasprintf("%s/fog.db", dir);
        struct store *s;
        if (store_open(db, &s) < 0)
            abort();
        fill(s, n);
        int64_t us[5];
        size_t bytes = 0, names = 0;
        for (int r = 0; r < 5; r++) {
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            _cleanup_free_ struct pubzone_rec *recs = NULL;
            if (pubzone_records_load(s, "fog.example.org", &recs, &names) < 0)
                abort();
            _cleanup_free_ char *text = pubzone_render("fog.example.org",
                                                       recs, names);
            clock_gettime(CLOCK_MONOTONIC, &b);
            us[r] = (b.tv_sec - a.tv_sec) * 1000000 +
                    (b.tv_nsec - a.tv_nsec) / 1000;
            bytes = strlen(text);
        }
        qsort(us, 5, sizeof(us[0]), cmp);
        printf("%d VMs: %zu names, %zu bytes, load+render median %.1f ms\n",
               n, names, bytes, (double)us[2] / 1000.0);
        store_close(s);
        tu_rmrf(dir);
    }
    return 0;
}
