/* The controller's GET /metrics as the fabric grows: 1k and 10k nodes,
 * each with two placed VMs and one GPU, filled the way bench_scale fills
 * VMs (controller stopped, one transaction straight into its store, then
 * a restart). Median and slowest of 20 scrapes, and the text's size.
 * Figures, not pass/fail. Sizes: arguments (default 1000 10000). */
#include "common/ids.h"
#include "common/jsonutil.h"
#include "controller/store.h"
#include "bench/bench_util.h"
#include "tests/testutil.h"

#include <signal.h>
#include <stdio.h>

#define SCRAPES 20

static void bulk_nodes(const char *dir, int n)
{
    _cleanup_free_ char *db = xasprintf("%s/fog.db", dir);
    struct store *s;
    if (store_open(db, &s) < 0)
        abort();
    json_auto_t *row = NULL;
    if (store_query_one(s, &row, "SELECT id FROM accounts WHERE role = "
                                 "'admin' ORDER BY created_at LIMIT 1", "") < 0)
        abort();
    const char *admin = json_str(row, "id");
    int64_t t = 1700000000;
    store_tx_begin(s);
    for (int i = 0; i < n; i++) {
        char node[UUID_STR_LEN + 1], vm[UUID_STR_LEN + 1];
        uuid_generate_str(node);
        _cleanup_free_ char *name = xasprintf("bn-%d", i);
        if (store_exec(s, "INSERT INTO nodes (id, name, account_id, cred_id, "
                          "cred_salt, cred_hash, approved, vcpus, memory_mib, "
                          "disk_gib, reserved_vcpus, reserved_memory_mib, "
                          "reserved_disk_gib, last_seen, created_at) VALUES "
                          "($1, $2, $3, $1, 'x', 'x', 1, 32, 65536, 1000, 2, "
                          "4096, 50, $4, $4)", "sssi", node, name, admin,
                       t + i) < 0 ||
            store_exec(s, "INSERT INTO gpus (node_id, address, model, "
                          "vendor_id, device_id, usable, offered, updated_at) "
                          "VALUES ($1, '0000:01:00.0', 'GeForceRTX4090', "
                          "'10de', '2684', 1, 1, $2)", "si", node, t) < 0)
            abort();
        for (int k = 0; k < 2; k++) {
            uuid_generate_str(vm);
            _cleanup_free_ char *vname = xasprintf("bv-%d-%d", i, k);
            if (store_exec(s, "INSERT INTO vms (id, account_id, name, vcpus, "
                              "memory_mib, disk_gib, image, desired_state, "
                              "state, node_id, created_at, updated_at) VALUES "
                              "($1, $2, $3, 2, 2048, 20, 'tiny', 'running', "
                              "'running', $4, $5, $5)", "ssssi", vm, admin,
                           vname, node, t) < 0)
                abort();
        }
    }
    if (store_tx_commit(s) < 0)
        abort();
    store_close(s);
}

static void one_size(int n)
{
    struct tu_ctl ctl;
    tu_ctl_start(&ctl, NULL);
    tu_ctl_stop(&ctl, SIGTERM);
    bulk_nodes(ctl.dir, n);
    tu_ctl_restart(&ctl);
    double ms[SCRAPES];
    size_t len = 0;
    for (int i = 0; i < SCRAPES; i++) {
        double t0 = bench_now_ms();
        _cleanup_free_ char *text = tu_metrics_text(&ctl);
        ms[i] = bench_now_ms() - t0;
        len = strlen(text);
    }
    qsort(ms, SCRAPES, sizeof(double), bench_cmp_double);
    printf("| %7d | %9.1f ms | %9.1f ms | %9zu |\n", n, ms[SCRAPES / 2],
           ms[SCRAPES - 1], len);
    fflush(stdout);
    tu_ctl_destroy(&ctl);
}

int main(int argc, char **argv)
{
    printf("\n| %7s | %12s | %12s | %9s |\n", "nodes", "GET /metrics",
           "slowest", "bytes");
    printf("|---------|--------------|--------------|-----------|\n");
    if (argc > 1)
        for (int i = 1; i < argc; i++)
            one_size(atoi(argv[i]));
    else {
        one_size(1000);
        one_size(10000);
    }
    return 0;
}
