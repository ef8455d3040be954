/* fog-controller migrate-store: a populated sqlite store (accounts, keys,
 * nodes, VMs, networks, ledger) moved into a throwaway PostgreSQL cluster
 * while the controller serves and writes keeps every row of one snapshot
 * and the ledger's balances, and a controller serving from PostgreSQL
 * afterwards answers as before. A destination that already holds rows is
 * refused. Skipped when the PostgreSQL server binaries are missing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "controller/store.h"
#include "tests/testutil.h"

#include <signal.h>
#include <stdio.h>

static struct tu_ctl ctl;
static struct tu_pg pgc;
static bool have_pg;
static char *ctl_bin;

static int setup(void **state)
{
    have_pg = tu_pg_start(&pgc);
    if (!have_pg) {
        fprintf(stderr, "PostgreSQL server not available: skipping\n");
        return 0;
    }
    tu_ctl_start(&ctl, NULL);
    ctl_bin = tu_bin("fog-controller");
    return 0;
}

static int teardown(void **state)
{
    if (have_pg)
        tu_ctl_destroy(&ctl);
    tu_pg_stop(&pgc);
    free(ctl_bin);
    return 0;
}

static char *migrate(const char *to, int *ret_status)
{
    _cleanup_free_ char *db = xasprintf("%s/fog.db", ctl.dir);
    char *argv[] = { ctl_bin, "migrate-store", "--from", db, "--to",
                     (char *)to, "--data-dir", ctl.dir, NULL };
    tu_run_with_stderr = true;
    char *out = tu_run(argv, ret_status);
    tu_run_with_stderr = false;
    return out;
}

static char *balance(const char *key, const char *account_id)
{
    _cleanup_free_ char *path = xasprintf("/v1/accounts/%s/balance",
                                          account_id);
    return tu_api_field(&ctl, key, "GET", path, NULL, 200, "balance");
}

static void a_serving_store_moves_whole_to_postgresql(void **state)
{
    if (!have_pg)
        skip();
    /* Populate: two tenants with keys, credits and a reversal in the
     * ledger, a network, an approved node and VMs placed on it. */
    _cleanup_free_ char *alice = tu_account(&ctl, "alice", "tenant");
    _cleanup_free_ char *bob = tu_account(&ctl, "bob", "tenant");
    _cleanup_free_ char *alice_id = tu_api_field(
        &ctl, ctl.admin_key, "GET", "/v1/accounts/alice", NULL, 200, "id");
    _cleanup_free_ char *bob_id = tu_api_field(
        &ctl, ctl.admin_key, "GET", "/v1/accounts/bob", NULL, 200, "id");
    _cleanup_free_ char *cred = tu_node_register(&ctl, "op-rig", NULL);
    const char *accts[2] = { alice_id, bob_id };
    for (int i = 0; i < 2; i++) {
        _cleanup_free_ char *p = xasprintf("/v1/accounts/%s/credit", accts[i]);
        free(tu_api_field(&ctl, ctl.admin_key, "POST", p,
                          "{\"amount\":\"250.5\",\"memo\":\"welcome\"}", 201,
                          NULL));
        free(tu_api_field(&ctl, ctl.admin_key, "POST", p,
                          "{\"amount\":\"7\"}", 201, NULL));
    }
    json_auto_t *items = tu_list(&ctl, ctl.admin_key, "/v1/ledger");
    assert_true(json_array_size(items) >= 4);
    const char *tx = json_str(json_array_get(items, 0), "id");
    assert_non_null(tx);
    _cleanup_free_ char *rev = xasprintf("/v1/ledger/%s/reverse", tx);
    free(tu_api_field(&ctl, ctl.admin_key, "POST", rev, "{}", 201, NULL));
    free(tu_api_field(&ctl, alice, "POST", "/v1/networks",
                      "{\"name\":\"back\",\"cidr\":\"10.42.0.0/24\"}", 201,
                      NULL));
    for (int i = 0; i < 2; i++) {
        _cleanup_free_ char *body = xasprintf(
            "{\"name\":\"web%d\",\"vcpus\":1,\"memory_mib\":128,"
            "\"disk_gib\":1,\"image\":\"tiny\",\"allow_tcg\":true}", i);
        free(tu_api_field(&ctl, alice, "POST", "/v1/vms", body, 201, NULL));
    }
    _cleanup_free_ char *bal_alice = balance(alice, alice_id);
    _cleanup_free_ char *bal_bob = balance(bob, bob_id);

    /* The copy is taken while another client keeps writing. */
    struct tu_writer w;
    tu_writer_start(&w, &ctl, "m");
    tu_writer_wait(&w, 3);
    int st;
    _cleanup_free_ char *out = migrate(pgc.uri, &st);
    tu_writer_wait(&w, tu_writer_count(&w) + 2);
    int64_t total = tu_writer_stop(&w);
    if (st != 0)
        fprintf(stderr, "%s", out);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "entries sum to 0"));

    /* One snapshot: the writer's accounts m0..mK without a gap. */
    struct store *pg;
    assert_int_equal(store_open(pgc.uri, &pg), 0);
    int64_t ms = store_query_int(pg, -1, "SELECT COUNT(*) FROM accounts "
                                         "WHERE name LIKE 'm%'", "");
    assert_true(ms >= 3);
    _cleanup_free_ char *last = xasprintf("m%lld", (long long)(ms - 1));
    assert_int_equal(store_query_int(pg, -1, "SELECT COUNT(*) FROM accounts "
                                             "WHERE name = $1", "s", last),
                     1);
    assert_int_equal(store_query_int(pg, -1, "SELECT COUNT(*) FROM vms", ""),
                     2);
    assert_true(store_query_int(pg, -1, "SELECT COUNT(*) FROM ledger_tx",
                                "") >= 5);
    assert_int_equal(store_query_int(pg, -1, "SELECT SUM(amount) FROM "
                                             "ledger_entry", ""), 0);
    store_close(pg);
    assert_true(total > ms);

    /* A second run into the now populated database is refused. */
    int st2;
    _cleanup_free_ char *out2 = migrate(pgc.uri, &st2);
    assert_int_not_equal(st2, 0);
    assert_non_null(strstr(out2, "not empty"));

    /* The controller serves from PostgreSQL: keys, VMs, node, network and
     * balances as they were; the accounts written after the copy are not
     * there. */
    tu_ctl_stop(&ctl, SIGTERM);
    const char *extra[] = { "--database", pgc.uri, NULL };
    ctl.extra = extra;
    tu_ctl_restart(&ctl);
    json_auto_t *vms = tu_list(&ctl, alice, "/v1/vms");
    assert_int_equal(json_array_size(vms), 2);
    assert_non_null(tu_find(vms, "name", "web0"));
    json_auto_t *nets = tu_list(&ctl, alice, "/v1/networks");
    assert_non_null(tu_find(nets, "name", "back"));
    json_auto_t *nodes = tu_list(&ctl, ctl.admin_key, "/v1/nodes");
    assert_non_null(tu_find(nodes, "name", "op-rig"));
    _cleanup_free_ char *bal_alice2 = balance(alice, alice_id);
    _cleanup_free_ char *bal_bob2 = balance(bob, bob_id);
    assert_string_equal(bal_alice, bal_alice2);
    assert_string_equal(bal_bob, bal_bob2);
    _cleanup_free_ char *gone = xasprintf("/v1/accounts/m%lld",
                                          (long long)(total - 1));
    long code;
    json_auto_t *g = tu_api(&ctl, ctl.admin_key, "GET", gone, NULL, &code);
    assert_int_equal(code, 404);
    /* And it writes there: a new VM is placed. */
    free(tu_api_field(&ctl, alice, "POST", "/v1/vms",
                      "{\"name\":\"web9\",\"vcpus\":1,\"memory_mib\":128,"
                      "\"disk_gib\":1,\"image\":\"tiny\",\"allow_tcg\":true}",
                      201, NULL));
}

static void a_bad_destination_is_refused(void **state)
{
    if (!have_pg)
        skip();
    int st;
    _cleanup_free_ char *out = migrate("/tmp/not-postgres.db", &st);
    assert_int_equal(st, 1);
    assert_non_null(strstr(out, "postgresql://"));
}

int main(void)
{
    tu_sqlite_only("it moves a controller's sqlite store to PostgreSQL");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_bad_destination_is_refused),
        cmocka_unit_test(a_serving_store_moves_whole_to_postgresql),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
