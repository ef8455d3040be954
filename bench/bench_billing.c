/* Metering throughput: usage samples ingested and accrued per second with
 * 10k VMs on 1k nodes, through the controller's own billing code on a
 * temporary sqlite store (PostgreSQL with FOG_TEST_DATABASE=postgresql),
 * in-process (no HTTP). Each node's status post (its VMs' states and one
 * sample each) is one store transaction, as the agent status handler
 * makes it; accrual posts VMS_PER_TX VMs per transaction (default
 * ACCRUAL_BATCH_DEFAULT). Prints a markdown table; figures, not
 * pass/fail, except that the ledger must balance and the charges must
 * equal the usage. */
#include "billing/money.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "tests/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t pct(int64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_i64);
    return v[(size_t)(p * (double)(n - 1) + 0.5)];
}

static void row(const char *what, const char *value)
{
    printf("| %-52s | %16s |\n", what, value);
}

static void rowf(const char *what, int decimals, double v)
{
    char s[64];
    snprintf(s, sizeof(s), "%.*f", decimals, v);
    row(what, s);
}

/* CPU time of this process in ms: on a shared machine the wall clock
 * also counts other tenants' work. */
static int64_t cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what, int e)
{
    fprintf(stderr, "bench_billing: %s failed (%d)\n", what, e);
    exit(1);
}

int main(int argc, char **argv)
{
    int nodes = argc > 1 ? atoi(argv[1]) : 1000;
    int per_node = argc > 2 ? atoi(argv[2]) : 10;
    int rounds = argc > 3 ? atoi(argv[3]) : 6;
    int per_tx = argc > 4 ? atoi(argv[4]) : ACCRUAL_BATCH_DEFAULT;
    const int interval = 5, accrue_every = 3;
    if (nodes < 1 || per_node < 1 || rounds < accrue_every || per_tx < 1) {
        fprintf(stderr, "usage: bench_billing [NODES [VMS_PER_NODE "
                        "[ROUNDS>=3 [VMS_PER_TX]]]]\n");
        return 2;
    }
    int nvms = nodes * per_node;
    accrual_set_batch((size_t)per_tx);
    log_set_level(LOG_ERR);
    struct app a = { 0 };
    char *dir = tu_tempdir("bench-billing");
    char *db = tu_new_store_address(dir); /* FOG_TEST_DATABASE=postgresql */
    a.cfg.heartbeat_s = interval;
    int e;
    if ((e = store_open(db, &a.store)) < 0)
        die("store_open", e);
    /* Balance limits on, as a controller runs: each pass also checks
     * every tenant's running VMs against its balance (ample here). */
    if ((e = billing_configure(60, 500, 3600, interval, "FOG",
                               "vcpu=0.01,mem=0.005,disk=0.1")) < 0)
        die("billing_configure", e);

    char tenant[UUID_STR_LEN + 1], provider[UUID_STR_LEN + 1];
    uuid_generate_str(tenant);
    uuid_generate_str(provider);
    char (*node_ids)[UUID_STR_LEN + 1] = xcalloc((size_t)nodes, sizeof(*node_ids));
    char (*vm_ids)[UUID_STR_LEN + 1] = xcalloc((size_t)nvms, sizeof(*vm_ids));
    int64_t t_setup = mono_ms();
    if ((e = store_tx_begin(a.store)) < 0)
        die("begin", e);
    store_exec(a.store, "INSERT INTO accounts (id, name, role, created_at) "
               "VALUES ($1, 'tenant', 'tenant', 0), ($2, 'miner', "
               "'provider', 0)", "ss", tenant, provider);
    const int64_t credit = INT64_C(1) << 60;
    struct ledger_tx *deposit = ledger_tx_new("credit", NULL);
    if (ledger_tx_move(deposit, LEDGER_HUB_DEPOSITS, tenant, credit) < 0 ||
        (e = billing_post(a.store, deposit, NULL, 0, NULL)) < 0)
        die("credit", e);
    ledger_tx_free(deposit);
    for (int n = 0; n < nodes; n++) {
        uuid_generate_str(node_ids[n]);
        _cleanup_free_ char *name = xasprintf("node-%d", n);
        _cleanup_free_ char *cred = xasprintf("c%.15s", node_ids[n]);
        if ((e = store_exec(a.store,
                            "INSERT INTO nodes (id, name, account_id, cred_id, "
                            "cred_salt, cred_hash, approved, kvm, vcpus, "
                            "memory_mib, disk_gib, last_seen, created_at) "
                            "VALUES ($1, $2, $3, $4, 'x', 'x', 1, 1, 64, "
                            "262144, 4096, 0, 0)", "ssss", node_ids[n], name,
                            provider, cred)) < 0)
            die("insert node", e);
        for (int v = 0; v < per_node; v++) {
            char *id = vm_ids[n * per_node + v];
            uuid_generate_str(id);
            _cleanup_free_ char *vname = xasprintf("vm-%d-%d", n, v);
            if ((e = store_exec(a.store,
                                "INSERT INTO vms (id, account_id, name, vcpus, "
                                "memory_mib, disk_gib, image, desired_state, "
                                "state, node_id, created_at, updated_at) VALUES "
                                "($1, $2, $3, 2, 2048, 20, 'tiny', 'running', "
                                "'running', $4, 0, 0)", "ssss", id, tenant,
                                vname, node_ids[n])) < 0)
                die("insert vm", e);
            if ((e = billing_deal_lock(&a, id, node_ids[n])) < 0)
                die("deal lock", e);
        }
    }
    if ((e = store_tx_commit(a.store)) < 0)
        die("commit", e);
    t_setup = mono_ms() - t_setup;

    /* Every round each node posts once: its VMs running and one sample per
     * VM covering the interval since the last post. */
    int64_t t0 = now_s() - (int64_t)(rounds + 2) * interval;
    int64_t samples = 0, posts = 0, posted = 0, accrual_runs = 0;
    int64_t ms_ingest = 0, ms_accrue = 0, cpu_accrue = 0, tx_max = 0;
    int64_t *lat_us = xcalloc((size_t)nodes * (size_t)rounds, sizeof(int64_t));
    for (int round = 0; round <= rounds; round++) {
        int64_t t = t0 + (int64_t)round * interval, start = mono_ms();
        for (int n = 0; n < nodes; n++) {
            json_auto_t *vj = json_array(), *sj = json_array();
            for (int v = 0; v < per_node; v++) {
                const char *id = vm_ids[n * per_node + v];
                json_array_append_new(vj, json_pack("{s:s, s:s}", "id", id,
                                                    "state", "running"));
                if (round > 0)
                    json_array_append_new(
                        sj, json_pack("{s:s, s:I, s:I, s:I}", "vm", id, "seq",
                                      (json_int_t)round, "start",
                                      (json_int_t)(t - interval), "end",
                                      (json_int_t)t));
            }
            /* The samples as the status decoder hands them over. */
            json_auto_t *body = json_pack("{s:O}", "samples", sj);
            _cleanup_(am_status_clear) struct am_status st = { 0 };
            struct jerr je = { 0 };
            if (am_status_decode(body, &st, &je) < 0)
                die(je.detail, -EINVAL);
            struct timespec a0, a1;
            clock_gettime(CLOCK_MONOTONIC, &a0);
            if ((e = store_tx_begin(a.store)) < 0 ||
                (e = billing_ingest_status_at(&a, node_ids[n], vj, st.samples,
                                              st.n_samples, t, NULL)) < 0 ||
                (e = store_tx_commit(a.store)) < 0)
                die("ingest", e);
            clock_gettime(CLOCK_MONOTONIC, &a1);
            if (round > 0) {
                lat_us[posts++] = (a1.tv_sec - a0.tv_sec) * 1000000 +
                                  (a1.tv_nsec - a0.tv_nsec) / 1000;
                samples += per_node;
            }
        }
        /* Round 0 only starts the observation; it is not timed. */
        if (round > 0)
            ms_ingest += mono_ms() - start;
        if (round > 0 && round % accrue_every == 0) {
            start = mono_ms();
            int64_t c0 = cpu_ms();
            int r = accrual_run(&a, t);
            cpu_accrue += cpu_ms() - c0;
            if (r < 0)
                die("accrual_run", r);
            posted += r;
            accrual_runs++;
            struct accrual_stats as;
            accrual_stats_get(&as);
            if (as.last_batch_max_ms > tx_max)
                tx_max = as.last_batch_max_ms;
            ms_accrue += mono_ms() - start;
        }
    }

    /* The books: balanced, and every billed second charged exactly. */
    int64_t sum = store_query_int(a.store, -1, "SELECT COALESCE(SUM(amount), "
                                  "0) FROM ledger_entry", "");
    int64_t billed = store_query_int(a.store, -1, "SELECT COALESCE(SUM("
                                     "billed_s), 0) FROM deals", "");
    int64_t charged;
    if (billing_balance(a.store, tenant, &charged) < 0)
        abort();
    charged = credit - charged;
    struct rating_offer o = billing_config()->default_offer;
    struct rating_shape sh = { 2, 2048, 20, 0, 0 };
    int64_t one = 0;
    int64_t accrued_rounds = rounds - rounds % accrue_every;
    rating_charge(&o, &sh, accrued_rounds * interval, &one);
    bool ok = sum == 0 && billed == (int64_t)nvms * accrued_rounds * interval &&
              charged == one * nvms;

    char buf[64];
    printf("Billing: %d VMs on %d nodes, %d rounds of one post per node "
           "(%d samples each), accrual every %d rounds, %d VMs per "
           "transaction; %s, in-process\n\n",
           nvms, nodes, rounds, per_node, accrue_every, per_tx,
           store_backend_name(a.store));
    printf("| %-52s | %16s |\n", "figure", "value");
    printf("|%.*s|%.*s|\n", 54, "------------------------------------------------------",
           18, "------------------");
    rowf("setup: nodes, VMs and deals (s)", 1, (double)t_setup / 1e3);
    rowf("samples ingested per second", 0,
         (double)samples * 1e3 / (double)(ms_ingest ? ms_ingest : 1));
    rowf("node status posts ingested per second", 0,
         (double)posts * 1e3 / (double)(ms_ingest ? ms_ingest : 1));
    int64_t p50 = pct(lat_us, (size_t)posts, 0.5);
    int64_t p99 = pct(lat_us, (size_t)posts, 0.99);
    snprintf(buf, sizeof(buf), "%.2f / %.2f", (double)p50 / 1e3,
             (double)p99 / 1e3);
    row("status post ingest p50 / p99 (ms)", buf);
    rowf("VM accrual steps posted per second", 0,
         (double)posted * 1e3 / (double)(ms_accrue ? ms_accrue : 1));
    rowf("accrual run over all VMs (ms, mean)", 0,
         (double)ms_accrue / (double)(accrual_runs ? accrual_runs : 1));
    rowf("accrual run over all VMs (CPU ms, mean)", 0,
         (double)cpu_accrue / (double)(accrual_runs ? accrual_runs : 1));
    rowf("longest accrual store transaction (ms)", 0, (double)tx_max);
    rowf("samples ingested and accrued per second", 0,
         (double)samples * 1e3 / (double)(ms_ingest + ms_accrue));
    rowf("ledger transactions posted", 0, (double)posted);
    _cleanup_free_ char *ct = money_format(charged, "FOG");
    row("charged in total", ct);
    row("ledger balanced, charges = usage", ok ? "yes" : "NO");

    store_close(a.store);
    tu_rmrf(dir);
    free(dir);
    free(db);
    free(node_ids);
    free(vm_ids);
    free(lat_us);
    return ok ? 0 : 1;
}
