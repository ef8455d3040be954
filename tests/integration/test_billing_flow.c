/* Billing through the controller's own code on a temporary sqlite store
 * and a real HTTP server on loopback: credit a tenant, run a VM on a
 * provider's node (status posts replayed over an hour), accrue, and read the
 * invoice, payout and ledger, which must reconcile to the nano. Also: a
 * lying provider is capped, kill -9 during accrual neither loses nor
 * repeats a posting, and an exhausted balance stops VMs until a top-up. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "billing/money.h"
#include "billing/period.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/auth.h"
#include "controller/handlers.h"
#include "tests/testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>


static const struct http_route billing_routes[] = {
    { "PUT", "/v1/nodes/{id}/offer", h_offer_put, ALLOW_ADMIN | ALLOW_PROVIDER },
    { "GET", "/v1/nodes/{id}/offer", h_offer_get, ALLOW_ADMIN | ALLOW_PROVIDER },
    { "POST", "/v1/accounts/{id}/credit", h_account_credit, ALLOW_ADMIN },
    { "GET", "/v1/accounts/{id}/balance", h_account_balance, ALLOW_USERS },
    { "GET", "/v1/usage", h_usage_list, ALLOW_USERS },
    { "GET", "/v1/invoices", h_invoice_get, ALLOW_ADMIN | ALLOW_TENANT },
    { "GET", "/v1/payouts", h_payout_get, ALLOW_ADMIN | ALLOW_PROVIDER },
    { "GET", "/v1/ledger", h_ledger_list, ALLOW_ADMIN },
    { "POST", "/v1/ledger/{id}/reverse", h_ledger_reverse, ALLOW_ADMIN },
};

static struct app A;
static char *dir, *db, *url;
static char admin_id[37], tenant_id[37], provider_id[37], node_id[37];
static char *admin_key, *tenant_key, *provider_key;

static void account(const char *name, const char *role, char id[37],
                    char **ret_key)
{
    struct auth_key k;
    uuid_generate_str(id);
    assert_true(store_exec(A.store, "INSERT INTO accounts (id, name, role, "
                           "created_at) VALUES ($1, $2, $3, $4)", "sssi", id,
                           name, role, now_s()) == 1);
    assert_int_equal(key_insert(A.store, id, "test", &k), 0);
    *ret_key = xstrdup(k.token);
    auth_key_clear(&k);
}

static void node(const char *name, const char *owner, char id[37])
{
    uuid_generate_str(id);
    _cleanup_free_ char *cred = xasprintf("c%.15s", id);
    assert_true(store_exec(A.store,
                           "INSERT INTO nodes (id, name, account_id, cred_id, "
                           "cred_salt, cred_hash, approved, kvm, vcpus, "
                           "memory_mib, disk_gib, last_seen, created_at) "
                           "VALUES ($1, $2, $3, $4, 'x', 'x', 1, 1, 64, "
                           "262144, 4096, $5, $5)", "ssssi", id, name, owner,
                           cred, now_s()) == 1);
}

/* A running VM of `owner` placed on `on`, its price locked as the
 * scheduler does at placement. It was made a day ago, so that the status
 * posts replayed from hours ago fall within its lifetime. */
static void vm(const char *name, const char *owner, const char *on, char id[37])
{
    uuid_generate_str(id);
    assert_int_equal(store_tx_begin(A.store), 0);
    assert_true(store_exec(A.store,
                           "INSERT INTO vms (id, account_id, name, vcpus, "
                           "memory_mib, disk_gib, image, desired_state, state, "
                           "node_id, created_at, updated_at) VALUES ($1, $2, "
                           "$3, 2, 2048, 20, 'tiny', 'running', 'running', $4, "
                           "$5, $5)", "ssssi", id, owner, name, on,
                           now_s() - 86400) == 1);
    assert_int_equal(billing_deal_lock(&A, id, on), 0);
    assert_int_equal(store_tx_commit(A.store), 0);
}

static json_t *call(const char *key, const char *method, const char *path,
                    const char *body, const char *hdr, long want)
{
    _cleanup_free_ char *u = xasprintf("%s%s", url, path);
    struct tu_resp r;
    long st = tu_http(method, u, key, NULL, body, body ? strlen(body) : 0,
                      NULL, hdr, &r);
    if (st != want)
        fail_msg("%s %s: status %ld, want %ld: %s", method, path, st, want,
                 r.body);
    json_t *j = json_loads(r.body, 0, NULL);
    tu_resp_clear(&r);
    return j;
}

/* Billing's part of a status post with `samples` (JSON, as sent), read
 * through the contract's decoder first. */
static int ingest(const char *on, json_t *vms, json_t *samples, int64_t t,
                  size_t *bad)
{
    json_auto_t *body = json_pack("{s:O}", "samples", samples);
    _cleanup_(am_status_clear) struct am_status st = { 0 };
    struct jerr je = { 0 };
    assert_int_equal(am_status_decode(body, &st, &je), 0);
    return billing_ingest_status_at(&A, on, vms, st.samples, st.n_samples, t,
                                    bad);
}

/* One agent status post as the controller would see it at time t. */
static void post(const char *on, const char *vm_id, const char *state,
                 int64_t seq, int64_t start, int64_t end, int64_t t)
{
    json_auto_t *vms = state ? json_pack("[{s:s, s:s}]", "id", vm_id, "state",
                                         state) : json_array();
    json_auto_t *samples = seq ? json_pack("[{s:s, s:I, s:I, s:I}]", "vm",
                                           vm_id, "seq", (json_int_t)seq,
                                           "start", (json_int_t)start, "end",
                                           (json_int_t)end) : json_array();
    assert_int_equal(store_tx_begin(A.store), 0);
    assert_int_equal(ingest(on, vms, samples, t, NULL), 0);
    assert_int_equal(store_tx_commit(A.store), 0);
}

static int64_t ledger_total(void)
{
    return store_query_int(A.store, -1, "SELECT COALESCE(SUM(amount), 0) FROM "
                                        "ledger_entry", "");
}

/* Every cached balance equals the sum of its account's entries. */
static void assert_balances_match_entries(void)
{
    assert_int_equal(store_query_int(A.store, -1,
                                     "SELECT COUNT(*) FROM ledger_balances b "
                                     "WHERE b.balance <> (SELECT "
                                     "COALESCE(SUM(e.amount), 0) FROM "
                                     "ledger_entry e WHERE e.account = "
                                     "b.account)", ""), 0);
}

static int setup(void **state)
{
    dir = tu_tempdir("billing");
    db = tu_new_store_address(dir);
    A.cfg.heartbeat_s = 5;
    A.cfg.max_body = 1 << 20;
    assert_int_equal(store_open(db, &A.store), 0);
    assert_int_equal(billing_configure(60, 1000, 3600, 5, "FOG",
                                       "vcpu=0.01,mem=0.005"), 0);
    account("admin", "admin", admin_id, &admin_key);
    account("tenant-a", "tenant", tenant_id, &tenant_key);
    account("miner-a", "provider", provider_id, &provider_key);
    node("rig-1", provider_id, node_id);
    struct http_server_opts o = {
        .listen = "127.0.0.1:0",
        .routes = billing_routes,
        .n_routes = ARRAY_SIZE(billing_routes),
        .max_body = 1 << 20,
        .threads = 2,
        .before = app_before,
        .begin = app_begin,
        .after = app_after,
        .park = app_park,
        .app = &A,
    };
    assert_int_equal(http_server_start(&o, &A.http), 0);
    url = xasprintf("http://127.0.0.1:%d", http_server_port(A.http));
    return 0;
}

static int teardown(void **state)
{
    http_server_stop(A.http, 1000);
    store_close(A.store);
    tu_rmrf(dir);
    free(dir), free(db), free(url);
    free(admin_key), free(tenant_key), free(provider_key);
    return 0;
}

static void full_flow_invoice_and_payout_reconcile_with_the_ledger(void **state)
{
    /* The provider prices the node; tenants cannot touch offers or credit. */
    json_decref(call(provider_key, "PUT", "/v1/nodes/rig-1/offer",
                     "{\"vcpu_hour\": \"0.5\", \"mem_gib_hour\": \"0.25\", "
                     "\"disk_gib_month\": \"3\", \"port_hour\": \"0.01\"}",
                     NULL, 200));
    json_decref(call(tenant_key, "PUT", "/v1/nodes/rig-1/offer",
                     "{\"vcpu_hour\": \"0\"}", NULL, 403));
    json_decref(call(provider_key, "PUT", "/v1/nodes/rig-1/offer",
                     "{\"vcpu_hour\": 0.5}", NULL, 400)); /* no floats */
    json_decref(call(provider_key, "PUT", "/v1/nodes/rig-1/offer",
                     "{\"vcpu_hour\": \"-1\"}", NULL, 400));
    json_auto_t *offer = call(provider_key, "GET", "/v1/nodes/rig-1/offer",
                              NULL, NULL, 200);
    assert_string_equal(json_str(offer, "vcpu_hour"), "0.5");
    assert_string_equal(json_str(offer, "mem_gib_hour"), "0.25");
    assert_string_equal(json_str(offer, "gpu_hour"), "0.5"); /* default */

    /* Credit the tenant; a retried credit with the same key posts once. */
    _cleanup_free_ char *cpath = xasprintf("/v1/accounts/%s/credit", tenant_id);
    json_decref(call(tenant_key, "POST", cpath, "{\"amount\": \"100\"}", NULL,
                     403));
    json_decref(call(admin_key, "POST", cpath, "{\"amount\": \"0\"}", NULL,
                     400));
    for (int i = 0; i < 2; i++) {
        json_auto_t *cr = call(admin_key, "POST", cpath,
                               "{\"amount\": \"100\", \"memo\": \"welcome\"}",
                               "Idempotency-Key: credit-1", 201);
        assert_string_equal(json_str(cr, "balance"), "100");
    }

    char vm_id[37];
    vm("web-1", tenant_id, node_id, vm_id);
    /* Later offer changes do not touch the locked deal. */
    json_decref(call(provider_key, "PUT", "/v1/nodes/rig-1/offer",
                     "{\"vcpu_hour\": \"9\"}", NULL, 200));
    json_auto_t *deal = billing_vm_deal(&A, vm_id);
    assert_non_null(deal);
    assert_string_equal(json_str(json_object_get(deal, "prices"), "vcpu_hour"),
                        "0.5");

    /* An hour of heartbeats every 5 s, samples chunked unevenly, some
     * posted twice. */
    int64_t t0 = now_s() - 4000, seq = 0, last = t0;
    for (int64_t t = t0; t <= t0 + 3600; t += 5) {
        bool sample = (t - t0) % 15 == 0 || t == t0 + 3600;
        if (sample && t > last) {
            post(node_id, vm_id, "running", ++seq, last, t, t);
            if (seq % 7 == 0)
                post(node_id, vm_id, NULL, seq, last, t, t); /* retry */
            last = t;
        } else {
            post(node_id, vm_id, "running", 0, 0, 0, t);
        }
    }
    int64_t at = t0 + 3650;
    struct accrual_stats st0, st1;
    accrual_stats_get(&st0);
    int n = accrual_run(&A, at);
    assert_true(n == 1);
    assert_int_equal(accrual_run(&A, at), 0); /* nothing twice */
    /* Posted as a batch, not VM by VM after the batch failed. */
    accrual_stats_get(&st1);
    assert_int_equal(st1.batches_redone, st0.batches_redone);

    /* 3600 s of 2 vCPU at 0.5 + 2 GiB at 0.25 + 20 GiB at 3/month:
     * 1 + 0.5 + 20*3*3600/2592000 = 1.583333333 (floor). */
    int64_t charge = 1000000000 + 500000000 + 83333333;
    int64_t fee = charge / 10; /* 1000 bps */
    char period[8];
    period_of(at, period);
    _cleanup_free_ char *ip = xasprintf("/v1/invoices?period=%s", period);
    json_auto_t *inv = call(tenant_key, "GET", ip, NULL, NULL, 200);
    assert_int_equal(json_int(inv, "charges_nano", 0), charge);
    assert_int_equal(json_int(inv, "seconds", 0), 3600);
    assert_int_equal(json_int(inv, "closing_balance_nano", 0) -
                         json_int(inv, "opening_balance_nano", 0),
                     INT64_C(100000000000) - charge);
    assert_true(json_is_true(json_object_get(inv, "reconciled")));
    _cleanup_free_ char *pp = xasprintf("/v1/payouts?period=%s", period);
    json_auto_t *pay = call(provider_key, "GET", pp, NULL, NULL, 200);
    assert_int_equal(json_int(pay, "gross_nano", 0), charge);
    assert_int_equal(json_int(pay, "fees_nano", 0), fee);
    assert_int_equal(json_int(pay, "net_nano", 0), charge - fee);
    json_decref(call(tenant_key, "GET", pp, NULL, NULL, 403));

    json_auto_t *use = call(tenant_key, "GET", "/v1/usage?vm=web-1", NULL, NULL,
                            200);
    json_t *u0 = json_array_get(json_object_get(use, "items"), 0);
    assert_int_equal(json_int(u0, "seconds", 0), 3600);
    assert_int_equal(json_int(u0, "charged_nano", 0), charge);
    assert_int_equal(json_int(u0, "duplicate_samples", 0), seq / 7);
    assert_int_equal(json_int(u0, "capped_seconds_total", -1), 0);

    /* The ledger as the admin sees it: every transaction balances. */
    json_auto_t *led = call(admin_key, "GET", "/v1/ledger", NULL, NULL, 200);
    json_decref(call(tenant_key, "GET", "/v1/ledger", NULL, NULL, 403));
    size_t i;
    json_t *tx;
    json_array_foreach(json_object_get(led, "items"), i, tx) {
        int64_t sum = 0;
        size_t k;
        json_t *e;
        json_array_foreach(json_object_get(tx, "entries"), k, e)
            sum += json_int(e, "amount_nano", 0);
        assert_int_equal(sum, 0);
    }
    assert_int_equal(json_array_size(json_object_get(led, "items")), 2);
    assert_int_equal(ledger_total(), 0);
    int64_t fees;
    assert_int_equal(billing_balance(A.store, LEDGER_HUB_FEES, &fees), 0);
    assert_int_equal(fees, fee);
    assert_balances_match_entries();

    /* A correction is a reversing transaction; only once. */
    const char *accrual_tx = NULL;
    json_array_foreach(json_object_get(led, "items"), i, tx)
        if (streq(json_str(tx, "kind"), "accrual"))
            accrual_tx = json_str(tx, "id");
    assert_non_null(accrual_tx);
    _cleanup_free_ char *rp = xasprintf("/v1/ledger/%s/reverse", accrual_tx);
    json_decref(call(admin_key, "POST", rp, "{\"memo\": \"refund\"}", NULL, 201));
    json_decref(call(admin_key, "POST", rp, NULL, NULL, 409));
    json_auto_t *bal = call(tenant_key, "GET", "/v1/accounts/tenant-a/balance",
                            NULL, NULL, 200);
    assert_int_equal(json_int(bal, "balance_nano", 0), INT64_C(100000000000));
    json_auto_t *inv2 = call(tenant_key, "GET", ip, NULL, NULL, 200);
    assert_int_equal(json_int(inv2, "adjustments_nano", 0), charge);
    assert_int_equal(ledger_total(), 0);
    assert_balances_match_entries();

    /* A resize keeps the locked prices and changes only the shape. */
    assert_int_equal(store_tx_begin(A.store), 0);
    assert_true(store_exec(A.store, "UPDATE vms SET vcpus = 4 WHERE id = $1",
                           "s", vm_id) == 1);
    assert_int_equal(billing_deal_reshape(&A, vm_id), 0);
    assert_int_equal(store_tx_commit(A.store), 0);
    json_auto_t *deal2 = billing_vm_deal(&A, vm_id);
    assert_string_not_equal(json_str(deal2, "id"), json_str(deal, "id"));
    assert_string_equal(json_str(json_object_get(deal2, "prices"), "vcpu_hour"),
                        "0.5");
    assert_int_equal(json_int(json_object_get(deal2, "shape"), "vcpus", 0), 4);
    assert_true(store_query_int(A.store, 0, "SELECT COUNT(*) FROM deals WHERE "
                                "vm_id = $1 AND closed_at IS NOT NULL", "s",
                                vm_id) == 1);
}

static void lying_provider_is_capped_and_the_event_log_says_so(void **state)
{
    char vm_id[37];
    vm("liar-1", tenant_id, node_id, vm_id);
    int64_t t0 = now_s() - 5000;
    /* Ten minutes observed running... */
    for (int64_t t = t0; t <= t0 + 600; t += 5)
        post(node_id, vm_id, "running", 0, 0, 0, t);
    /* ...then the node is silent for an hour, and afterwards claims the
     * whole time in one sample. */
    post(node_id, vm_id, "running", 1, t0, t0 + 4200, t0 + 4200);
    json_auto_t *row = NULL;
    assert_int_equal(store_query_one(A.store, &row, "SELECT billable_s, "
                                     "claimed_s FROM vm_usage WHERE vm_id = $1",
                                     "s", vm_id), 0);
    assert_int_equal(json_int(row, "billable_s", 0), 600);
    assert_int_equal(json_int(row, "claimed_s", 0), 4200);
    assert_true(store_query_int(A.store, 0, "SELECT COUNT(*) FROM events "
                                "WHERE action = 'billing.usage-capped' AND "
                                "target = $1", "s", vm_id) == 1);
    /* Samples about a VM of another node are refused. */
    char other[37];
    node("rig-2", provider_id, other);
    json_auto_t *samples = json_pack("[{s:s, s:i, s:i, s:i}]", "vm", vm_id,
                                     "seq", 9, "start", 1, "end", 2);
    size_t bad = 99;
    assert_int_equal(store_tx_begin(A.store), 0);
    assert_int_equal(ingest(other, NULL, samples, t0, &bad), -EPERM);
    store_tx_rollback(A.store);
    assert_int_equal(bad, 0);
    json_auto_t *bad_s = json_pack("[{s:s, s:i, s:i, s:i}]", "vm", vm_id,
                                   "seq", 9, "start", 5, "end", 2);
    assert_int_equal(store_tx_begin(A.store), 0);
    assert_int_equal(ingest(node_id, NULL, bad_s, t0, &bad), -EINVAL);
    store_tx_rollback(A.store);
}

static void exhausted_balance_stops_vms_and_a_top_up_allows_a_start(void **state)
{
    char poor[37], vm_id[37];
    _cleanup_free_ char *poor_key = NULL;
    account("tenant-poor", "tenant", poor, &poor_key);
    struct rating_shape sh = { 1, 1024, 10, 0, 0 };
    int64_t need = 0;
    assert_int_equal(billing_check_create(&A, poor, &sh, &need), -EDQUOT);
    assert_true(need > 0);
    _cleanup_free_ char *cp = xasprintf("/v1/accounts/%s/credit", poor);
    json_decref(call(admin_key, "POST", cp, "{\"amount\": \"0.5\"}", NULL, 201));
    assert_int_equal(billing_check_create(&A, poor, &sh, NULL), 0);
    vm("poor-1", poor, node_id, vm_id);
    /* Running on rig-1's current deal (9 per vCPU-hour) with 0.5 in the
     * bank: after an hour the balance is gone and the VM is stopped, not
     * deleted. */
    int64_t t0 = now_s() - 8000;
    for (int64_t t = t0; t <= t0 + 3600; t += 5)
        post(node_id, vm_id, "running", (t - t0) / 5 + 1, t - 5, t, t);
    assert_true(accrual_run(&A, t0 + 3600) >= 1);
    int64_t poor_balance;
    assert_int_equal(billing_balance(A.store, poor, &poor_balance), 0);
    assert_true(poor_balance < 0);
    json_auto_t *v = NULL;
    assert_int_equal(store_query_one(A.store, &v, "SELECT desired_state, "
                                     "deleted_at FROM vms WHERE id = $1", "s",
                                     vm_id), 0);
    assert_string_equal(json_str(v, "desired_state"), "stopped");
    assert_true(json_is_null(json_object_get(v, "deleted_at")));
    assert_true(store_query_int(A.store, 0, "SELECT COUNT(*) FROM events WHERE "
                                "action = 'billing.vm-stopped' AND target = $1",
                                "s", vm_id) == 1);
    assert_int_equal(billing_check_start(&A, vm_id, NULL), -EDQUOT);
    /* A top-up too small for the grace hour (2 x 9 + memory + disk) is not
     * enough; a real one is. */
    json_decref(call(admin_key, "POST", cp, "{\"amount\": \"10\"}", NULL, 201));
    assert_int_equal(billing_check_start(&A, vm_id, &need), -EDQUOT);
    assert_true(need > INT64_C(18000000000));
    json_decref(call(admin_key, "POST", cp, "{\"amount\": \"50\"}", NULL, 201));
    assert_int_equal(billing_check_start(&A, vm_id, &need), 0);
    assert_int_equal(ledger_total(), 0);
}

/* ---- kill -9 during accrual ---- */

#define CRASH_VMS 400

/* A tenant whose balance never runs out. */
static void rich_tenant(const char *name, char id[37])
{
    _cleanup_free_ char *k = NULL;
    account(name, "tenant", id, &k);
    struct ledger_tx *tx = ledger_tx_new("credit", NULL);
    ledger_tx_move(tx, LEDGER_HUB_DEPOSITS, id, INT64_C(1) << 60);
    assert_int_equal(store_tx_begin(A.store), 0);
    assert_int_equal(billing_post(A.store, tx, NULL, now_s(), NULL), 0);
    assert_int_equal(store_tx_commit(A.store), 0);
    ledger_tx_free(tx);
}

/* n VMs named prefix-N of a new rich tenant called prefix, each with
 * `billable` seconds of usage to bill. */
static void billed_vms(const char *prefix, int n, int64_t billable,
                       char (*ids)[37])
{
    char rich[37];
    rich_tenant(prefix, rich);
    for (int i = 0; i < n; i++) {
        _cleanup_free_ char *name = xasprintf("%s-%d", prefix, i);
        vm(name, rich, node_id, ids[i]);
        assert_true(store_exec(A.store, "INSERT INTO vm_usage (vm_id, node_id, "
                               "state, billable_s, updated_at) VALUES ($1, $2, "
                               "'{}', $3, 0)", "ssi", ids[i], node_id,
                               billable) == 1);
    }
}

static void kill9_during_accrual_neither_repeats_nor_loses_postings(void **state)
{
    static char ids[CRASH_VMS][37];
    billed_vms("crash", CRASH_VMS, 0, ids);
    _cleanup_free_ char *self = NULL;
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    self = xstrdup(buf);
    int killed_mid = 0;
    unsigned seed = (unsigned)now_ms();
    print_message("kill points from seed %u\n", seed);
    srand(seed);
    for (int round = 1; round <= 25; round++) {
        /* More usage arrives for every VM, then an accrual is cut short. */
        assert_true(store_exec(A.store, "UPDATE vm_usage SET billable_s = "
                               "billable_s + 61 + (length(vm_id) * $1) % 17 "
                               "WHERE state = '{}'", "i", (int64_t)round) > 0);
        int64_t before = store_query_int(A.store, 0, "SELECT COUNT(*) FROM "
                                         "ledger_tx", "");
        char *argv[] = { self, (char *)"accrue", db, NULL };
        _cleanup_free_ char *log = xasprintf("%s/child.log", dir);
        pid_t pid = tu_spawn(argv, log);
        assert_true(pid > 0);
        /* Wait until it has posted some of the steps, then kill it. */
        int64_t upto = before + 1 + rand() % (CRASH_VMS - 2);
        for (int w = 0; w < 20000; w++) {
            if (store_query_int(A.store, 0, "SELECT COUNT(*) FROM ledger_tx",
                                "") >= upto)
                break;
            usleep(200);
        }
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        int64_t after = store_query_int(A.store, 0, "SELECT COUNT(*) FROM "
                                        "ledger_tx", "");
        if (WIFSIGNALED(st) && after < before + CRASH_VMS)
            killed_mid++;
        assert_int_equal(ledger_total(), 0);
    }
    assert_true(killed_mid > 0); /* the kill really landed mid-run */
    /* Restart: a full accrual finishes the job. */
    accrual_run(&A, now_s());
    assert_int_equal(accrual_run(&A, now_s()), 0);
    for (int i = 0; i < CRASH_VMS; i++) {
        json_auto_t *d = NULL;
        assert_int_equal(store_query_one(A.store, &d,
                                         "SELECT d.id, d.billed_s, d.base_s, "
                                         "d.charged, u.billable_s FROM deals d "
                                         "JOIN vm_usage u ON u.vm_id = d.vm_id "
                                         "WHERE d.vm_id = $1", "s", ids[i]), 0);
        /* Nothing missing: the cursor reached all usage... */
        assert_int_equal(json_int(d, "billed_s", 0) + json_int(d, "base_s", 0),
                         json_int(d, "billable_s", -1));
        /* ...and nothing twice: the charges equal one charge of the total. */
        json_auto_t *deal = billing_vm_deal(&A, ids[i]);
        struct rating_offer o = billing_config()->default_offer;
        struct rating_shape sh = { 2, 2048, 20, 0, 0 };
        o.vcpu_hour = 9000000000; /* rig-1's offer from the flow test */
        int64_t want;
        json_auto_t *dr = NULL;
        assert_int_equal(store_query_one(A.store, &dr, "SELECT * FROM deals "
                                         "WHERE vm_id = $1", "s", ids[i]), 0);
        o = (struct rating_offer){ json_int(dr, "vcpu_hour", 0),
                                   json_int(dr, "mem_gib_hour", 0),
                                   json_int(dr, "disk_gib_month", 0),
                                   json_int(dr, "gpu_hour", 0),
                                   json_int(dr, "port_hour", 0) };
        assert_int_equal(rating_charge(&o, &sh, json_int(d, "billed_s", 0),
                                       &want), 0);
        int64_t posted = -store_query_int(
            A.store, 0, "SELECT COALESCE(SUM(e.amount), 0) FROM ledger_entry e "
            "JOIN ledger_tx t ON t.id = e.tx_id WHERE t.deal_id = $1 AND "
            "e.account = $2", "ss", json_str(d, "id"), json_str(dr, "tenant_id"));
        assert_int_equal(posted, want);
        assert_int_equal(json_int(d, "charged", 0), want);
        assert_non_null(deal);
    }
    assert_int_equal(ledger_total(), 0);
    assert_balances_match_entries();
}

/* A step that cannot be rated (prices past any sum) fails its batch as a
 * whole; the batch is then posted VM by VM, so the other VMs of the batch
 * are billed on time, and the broken one again each pass, never twice. */
#define RATED_VMS 24

static void a_vm_that_cannot_be_rated_holds_no_other_back(void **state)
{
    static char ids[RATED_VMS][37];
    billed_vms("batch", RATED_VMS, 3600, ids);
    const char *broken = ids[RATED_VMS / 2];
    assert_true(store_exec(A.store, "UPDATE deals SET vcpu_hour = $1 WHERE "
                           "vm_id = $2", "is", INT64_MAX, broken) == 1);
    struct accrual_stats st0, st1;
    for (int pass = 0; pass < 2; pass++) {
        accrual_stats_get(&st0);
        int n = accrual_run(&A, now_s());
        accrual_stats_get(&st1);
        assert_int_equal(n, pass == 0 ? RATED_VMS - 1 : 0);
        assert_int_equal(st1.batches_redone, st0.batches_redone + 1);
    }
    for (int i = 0; i < RATED_VMS; i++) {
        int64_t billed = store_query_int(A.store, -1, "SELECT d.billed_s + "
                                         "d.base_s FROM deals d JOIN vms v "
                                         "ON v.deal_id = d.id WHERE v.id = $1",
                                         "s", ids[i]);
        int64_t steps = store_query_int(A.store, -1, "SELECT COUNT(*) FROM "
                                        "ledger_tx WHERE vm_id = $1", "s",
                                        ids[i]);
        assert_int_equal(billed, ids[i] == broken ? 0 : 3600);
        assert_int_equal(steps, ids[i] == broken ? 0 : 1);
    }
    assert_int_equal(ledger_total(), 0);
    assert_balances_match_entries();
    /* Out of the way of the tests after this one. */
    assert_true(store_exec(A.store, "UPDATE vms SET node_id = NULL WHERE id "
                           "= $1", "s", broken) == 1);
}

static void *accrue_now(void *ret)
{
    *(int *)ret = accrual_run(&A, now_s());
    return NULL;
}

/* A deal that changes between the pass's read and its batch (the VM
 * resized: its usage accrued on the old deal, a new deal from there) is
 * not billed again by the pass; the rest of its batch is. */
#define MOVED_VMS 8

static void a_deal_changed_during_a_pass_is_billed_once(void **state)
{
    static char ids[MOVED_VMS][37];
    const char *resized = ids[MOVED_VMS / 2];
    billed_vms("moved", MOVED_VMS, 3600, ids);
    _cleanup_free_ char *ff = xasprintf("%s/fault", dir);
    setenv("FOG_TEST_FAULT", ff, 1);
    tu_fault(ff, "accrual-slow");
    struct accrual_stats st0, st1;
    accrual_stats_get(&st0);
    pthread_t th;
    int n = -1;
    assert_int_equal(pthread_create(&th, NULL, accrue_now, &n), 0);
    usleep(400000); /* the pass has read what is owed and waits */
    assert_int_equal(store_tx_begin(A.store), 0);
    assert_true(store_exec(A.store, "UPDATE vms SET vcpus = 4 WHERE id = $1",
                           "s", resized) == 1);
    assert_int_equal(billing_deal_reshape(&A, resized), 0);
    assert_int_equal(store_tx_commit(A.store), 0);
    pthread_join(th, NULL);
    tu_fault(ff, NULL);
    unsetenv("FOG_TEST_FAULT");
    accrual_stats_get(&st1);
    assert_int_equal(st1.batches_redone, st0.batches_redone + 1);
    assert_true(n >= MOVED_VMS - 1);
    for (int i = 0; i < MOVED_VMS; i++) {
        /* One step each: the resized VM's by the resize, on its old deal. */
        assert_int_equal(store_query_int(A.store, -1, "SELECT COUNT(*) FROM "
                                         "ledger_tx WHERE vm_id = $1", "s",
                                         ids[i]), 1);
        assert_int_equal(store_query_int(A.store, -1, "SELECT SUM(billed_s) "
                                         "FROM deals WHERE vm_id = $1", "s",
                                         ids[i]), 3600);
    }
    assert_int_equal(store_query_int(A.store, -1, "SELECT COUNT(*) FROM deals "
                                     "WHERE vm_id = $1", "s", resized), 2);
    assert_int_equal(accrual_run(&A, now_s()), 0);
    assert_int_equal(ledger_total(), 0);
    assert_balances_match_entries();
}

/* A placed VM without a deal (placed before prices were locked at
 * placement) gets one in the pass and is billed on it; the VMs with deals
 * around it are billed as usual. */
static void a_vm_without_a_deal_is_priced_in_the_pass(void **state)
{
    static char ids[3][37];
    billed_vms("undealt", 3, 3600, ids);
    assert_true(store_exec(A.store, "UPDATE vms SET deal_id = NULL WHERE id "
                           "= $1", "s", ids[1]) == 1);
    assert_true(accrual_run(&A, now_s()) >= 3);
    const char *sql = "SELECT d.billed_s FROM deals d JOIN vms v ON "
                      "v.deal_id = d.id WHERE v.id = $1";
    for (int i = 0; i < 3; i++)
        assert_int_equal(store_query_int(A.store, -1, sql, "s", ids[i]),
                         3600);
    assert_int_equal(store_query_int(A.store, -1, "SELECT COUNT(*) FROM "
                                     "deals WHERE vm_id = $1", "s", ids[1]),
                     2);
    /* Its later usage is billed on the new deal, once. */
    assert_true(store_exec(A.store, "UPDATE vm_usage SET billable_s = 4000 "
                           "WHERE vm_id = $1", "s", ids[1]) == 1);
    assert_int_equal(accrual_run(&A, now_s()), 1);
    assert_int_equal(accrual_run(&A, now_s()), 0);
    assert_int_equal(store_query_int(A.store, -1, sql, "s", ids[1]), 4000);
    assert_int_equal(ledger_total(), 0);
    assert_balances_match_entries();
}

/* Child mode for the crash test: accrue everything on DB and exit. */
static int accrue_child(const char *path)
{
    struct app a = { 0 };
    a.cfg.heartbeat_s = 5;
    if (store_open(path, &a.store) < 0)
        return 1;
    billing_configure(60, 1000, 3600, 5, "FOG", "vcpu=0.01,mem=0.005");
    /* Many small batches, so that the kill lands between commits. */
    accrual_set_batch(16);
    int n = accrual_run(&a, now_s());
    store_close(a.store);
    return n >= 0 ? 0 : 1;
}

/* A VM holding a GPU pays the node's price for its model per GPU-hour,
 * locked in its deal like every other price; the provider is paid it. */
static void gpu_hours_are_billed_at_the_models_price(void **state)
{
    (void)state;
    char tg_id[37], rig_id[37], vm_id[37];
    _cleanup_free_ char *tg_key = NULL;
    account("tenant-g", "tenant", tg_id, &tg_key);
    node("rig-g", provider_id, rig_id);
    json_decref(call(provider_key, "PUT", "/v1/nodes/rig-g/offer",
                     "{\"vcpu_hour\": \"0\", \"mem_gib_hour\": \"0\", "
                     "\"disk_gib_month\": \"0\", \"port_hour\": \"0\", "
                     "\"gpu_hour\": \"1\", \"gpu_models\": "
                     "{\"RTX4090\": \"2\"}}", NULL, 200));
    _cleanup_free_ char *cpath = xasprintf("/v1/accounts/%s/credit", tg_id);
    json_decref(call(admin_key, "POST", cpath, "{\"amount\": \"10\"}", NULL,
                     201));
    uuid_generate_str(vm_id);
    assert_int_equal(store_tx_begin(A.store), 0);
    assert_true(store_exec(A.store,
                           "INSERT INTO vms (id, account_id, name, vcpus, "
                           "memory_mib, disk_gib, image, desired_state, state, "
                           "node_id, gpu_model, gpu_count, created_at, "
                           "updated_at) VALUES ($1, $2, 'gpu-1', 2, 2048, 20, "
                           "'tiny', 'running', 'running', $3, 'RTX4090', 1, "
                           "$4, $4)", "sssi", vm_id, tg_id, rig_id,
                           now_s() - 86400) == 1);
    assert_int_equal(billing_deal_lock(&A, vm_id, rig_id), 0);
    assert_int_equal(store_tx_commit(A.store), 0);
    json_auto_t *deal = billing_vm_deal(&A, vm_id);
    assert_non_null(deal);
    assert_string_equal(json_str(json_object_get(deal, "prices"), "gpu_hour"),
                        "2");
    assert_int_equal(json_int(json_object_get(deal, "shape"), "gpus", 0), 1);

    /* Half an hour running: 0.5 GPU-hour at 2 is 1 token, nothing else. */
    int64_t t0 = now_s() - 4000, seq = 0, last = t0;
    for (int64_t t = t0; t <= t0 + 1800; t += 5) {
        if (t > last && ((t - t0) % 15 == 0 || t == t0 + 1800)) {
            post(rig_id, vm_id, "running", ++seq, last, t, t);
            last = t;
        } else {
            post(rig_id, vm_id, "running", 0, 0, 0, t);
        }
    }
    assert_true(accrual_run(&A, t0 + 1850) >= 1);
    json_auto_t *use = call(tg_key, "GET", "/v1/usage?vm=gpu-1", NULL, NULL,
                            200);
    json_t *u0 = json_array_get(json_object_get(use, "items"), 0);
    assert_int_equal(json_int(u0, "seconds", 0), 1800);
    assert_int_equal(json_int(u0, "charged_nano", 0), INT64_C(1000000000));
    json_auto_t *bal = call(tg_key, "GET", "/v1/accounts/tenant-g/balance",
                            NULL, NULL, 200);
    assert_int_equal(json_int(bal, "balance_nano", 0), INT64_C(9000000000));
    assert_int_equal(ledger_total(), 0);
    assert_balances_match_entries();
}

int main(int argc, char **argv)
{
    if (argc == 3 && streq(argv[1], "accrue"))
        return accrue_child(argv[2]);
    log_set_level(LOG_ERR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_flow_invoice_and_payout_reconcile_with_the_ledger),
        cmocka_unit_test(lying_provider_is_capped_and_the_event_log_says_so),
        cmocka_unit_test(exhausted_balance_stops_vms_and_a_top_up_allows_a_start),
        cmocka_unit_test(kill9_during_accrual_neither_repeats_nor_loses_postings),
        cmocka_unit_test(a_vm_that_cannot_be_rated_holds_no_other_back),
        cmocka_unit_test(a_deal_changed_during_a_pass_is_billed_once),
        cmocka_unit_test(a_vm_without_a_deal_is_priced_in_the_pass),
        cmocka_unit_test(gpu_hours_are_billed_at_the_models_price),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
