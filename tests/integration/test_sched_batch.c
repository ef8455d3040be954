/* scheduler_run places pending VMs in batches, each one transaction of
 * many placements, in-process on a sqlite store: more VMs than one batch
 * holds, on a fleet that has room for only some of them, so the cached
 * fleet's counting and the committed-capacity check under each node's
 * lock both matter. Every VM that fits is placed (none lost when a batch
 * ends), no node is overcommitted, none runs on TCG against its leave, a
 * node whose policy refuses the VM never gets it, and each placed VM has
 * its deal and its placement record (chosen node, filter counts); those
 * left pending say why. A second pass places nothing more. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "billing/money.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/scheduler.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { NODES = 12, NODE_VCPUS = 64, VMS = 1000 };

static void ok(int e)
{
    assert_true(e >= 0);
}

/* Node rig-i of `provider`, approved, reachable, with NODE_VCPUS and an
 * offer; its id to id. */
static void insert_node(struct app *a, int i, const char *provider, bool kvm,
                        int64_t now, char id[UUID_STR_LEN + 1])
{
    uuid_generate_str(id);
    _cleanup_free_ char *name = xasprintf("rig-%d", i);
    _cleanup_free_ char *cred = xasprintf("fogn_%012d", i);
    _cleanup_free_ char *mesh = xasprintf("100.96.0.%d", i + 1);
    _cleanup_free_ char *ep = xasprintf("198.18.0.%d:51820", i + 1);
    _cleanup_free_ char *wg = xasprintf("%043d=", i);
    ok(store_exec(a->store,
                  "INSERT INTO nodes (id, name, account_id, cred_id, "
                  "cred_salt, cred_hash, approved, kvm, arch, cpu_model, "
                  "vcpus, memory_mib, disk_gib, mesh_ip, wg_public_key, "
                  "endpoint, observed_endpoint, revision, last_seen, "
                  "created_at) VALUES ($1, $2, $3, $4, "
                  "'00112233445566778899aabbccddeeff', 'e3b0c44298fc1c149a"
                  "fbf4c8996fb92427ae41e4649b934ca495991b7852b855', 1, $5, "
                  "'x86_64', 'cpu', $6, $7, 100000, $8, $9, $10, $10, 1, "
                  "$11, $12)", "ssssbiisssii", id, name, provider, cred,
                  kvm, (int64_t)NODE_VCPUS, (int64_t)NODE_VCPUS * 1024, mesh,
                  wg, ep, now, now - 1000 + i));
    ok(store_exec(a->store, "INSERT INTO node_offers (node_id, "
                  "vcpu_hour, mem_gib_hour, disk_gib_month, gpu_hour, "
                  "port_hour, updated_at) VALUES ($1, $2, 1000000, "
                  "50000000, 0, 1000000, $3)", "sii", id,
                  (int64_t)(5 + i % 4) * 1000000, now));
}

/* A transaction begun with a provider and a tenant account in it. */
static void begin_with_accounts(struct app *a, int64_t now,
                                char provider[UUID_STR_LEN + 1],
                                char tenant[UUID_STR_LEN + 1])
{
    uuid_generate_str(provider);
    uuid_generate_str(tenant);
    ok(store_tx_begin(a->store));
    ok(store_exec(a->store, "INSERT INTO accounts (id, name, role, "
                  "created_at) VALUES ($1, 'miner', 'provider', $2), ($3, "
                  "'tenant', 'tenant', $2)", "sis", provider, now, tenant));
}

static void fill(struct app *a, int64_t now)
{
    char provider[UUID_STR_LEN + 1], tenant[UUID_STR_LEN + 1],
         net[UUID_STR_LEN + 1], rig1[UUID_STR_LEN + 1] = "";
    uuid_generate_str(net);
    begin_with_accounts(a, now, provider, tenant);
    ok(store_exec(a->store, "INSERT INTO networks (id, account_id, name, "
                  "cidr, gateway, vxlan_id, is_default, created_at) VALUES "
                  "($1, $2, 'default', '10.0.0.0/16', '10.0.0.1', 1000, 1, "
                  "$3)", "ssi", net, tenant, now));
    for (int i = 0; i < NODES; i++) {
        char id[UUID_STR_LEN + 1];
        /* Node 0 has no KVM; node 1 runs only a template nobody asks. */
        insert_node(a, i, provider, i != 0, now, id);
        if (i == 1) {
            ok(store_exec(a->store, "INSERT INTO node_policy (node_id, kind, "
                          "name) VALUES ($1, 'template', 'nobody')", "s", id));
            snprintf(rig1, sizeof(rig1), "%s", id);
        }
    }
    /* One VM of the network runs on rig-1 already (placed before its
     * policy), so rig-1 hears of the network's new members. */
    for (int i = 0; i <= VMS; i++) {
        char id[UUID_STR_LEN + 1];
        uuid_generate_str(id);
        _cleanup_free_ char *name = xasprintf("vm-%d", i);
        _cleanup_free_ char *addr = xasprintf("10.0.%d.%d", (i + 2) / 256,
                                              (i + 2) % 256);
        _cleanup_free_ char *mac = xasprintf("02:fb:00:00:%02x:%02x",
                                             i / 256, i % 256);
        ok(store_exec(a->store,
                      "INSERT INTO vms (id, account_id, name, vcpus, "
                      "memory_mib, disk_gib, image, allow_tcg, "
                      "desired_state, state, created_at, updated_at, "
                      "node_id) VALUES ($1, $2, $3, 1, 1024, 10, "
                      "'debian-12', $4, 'running', $6, $5, $5, $7)",
                      "sssbiss", id, tenant, name, i % 3 == 0,
                      now - VMS + i, i == VMS ? "running" : "pending",
                      i == VMS ? rig1 : NULL));
        ok(store_exec(a->store, "INSERT INTO vm_nics (vm_id, idx, "
                      "network_id, mac, address) VALUES ($1, 0, $2, $3, $4)",
                      "ssss", id, net, mac, addr));
    }
    ok(store_tx_commit(a->store));
}

/* An app on a new store (sqlite, or PostgreSQL under
 * FOG_TEST_DATABASE=postgresql) with a server for the wake-ups, leading;
 * its directory returned (app_close() removes it). */
static char *app_open(struct app *a)
{
    char *dir = tu_tempdir("sched-batch");
    _cleanup_free_ char *db = tu_new_store_address(dir);
    a->cfg.heartbeat_s = 86400;
    ok(billing_configure(60, 500, 0, 5, "FOG",
                         "vcpu=0.01,mem=0.005,disk=0.1"));
    struct http_server_opts o = { .listen = "127.0.0.1:0", .threads = 1,
                                  .max_body = 1024 };
    ok(http_server_start(&o, &a->http));
    ok(store_open(db, &a->store));
    /* The scheduler acts only as the leader (on PostgreSQL a lock). */
    assert_true(store_try_lead(a->store));
    return dir;
}

static void app_close(struct app *a, char *dir)
{
    store_close(a->store);
    http_server_stop(a->http, 0);
    tu_rmrf(dir);
    free(dir);
}

static void batches_place_all_that_fit(void **state)
{
    (void)state;
    struct app a = { 0 };
    char *dir = app_open(&a);
    int64_t now = now_s();
    fill(&a, now);

    /* Room: 10 nodes take anything (the TCG-only one only the third of
     * VMs that allow TCG, which is more than it holds). */
    int64_t room = (int64_t)(NODES - 1) * NODE_VCPUS;
    int64_t placed = 0;
    int r;
    while ((r = scheduler_run(&a)) > 0)
        placed += r;
    assert_int_equal(r, 0);
    assert_int_equal(placed, room);
    assert_int_equal(store_query_int(a.store, -1, "SELECT COUNT(*) FROM vms "
                                     "WHERE node_id IS NOT NULL", ""),
                     room + 1);
    /* Nothing overcommitted, no TCG against leave, no refused template. */
    assert_int_equal(store_query_int(
        a.store, -1, "SELECT COUNT(*) FROM nodes n WHERE n.vcpus < (SELECT "
        "COUNT(*) FROM vms v WHERE v.node_id = n.id)", ""), 0);
    assert_int_equal(store_query_int(
        a.store, -1, "SELECT COUNT(*) FROM nodes n WHERE n.vcpus <> (SELECT "
        "COUNT(*) FROM vms v WHERE v.node_id = n.id) AND n.name <> 'rig-1'",
        ""), 0);
    assert_int_equal(store_query_int(
        a.store, -1, "SELECT COUNT(*) FROM vms v JOIN nodes n ON n.id = "
        "v.node_id WHERE n.kvm = 0 AND v.allow_tcg = 0", ""), 0);
    assert_int_equal(store_query_int(
        a.store, -1, "SELECT COUNT(*) FROM vms v JOIN nodes n ON n.id = "
        "v.node_id WHERE n.name = 'rig-1' AND v.state <> 'running'", ""), 0);
    /* Every node given a VM, and rig-1 with a VM of their network, was
     * told: its revision moved (the agent's poll wakes on it). */
    assert_int_equal(store_query_int(a.store, -1, "SELECT COUNT(*) FROM "
                                     "nodes WHERE revision = 1", ""), 0);
    /* Each placed VM: its deal at the node's offer (every price), between
     * its owner and the node's, of its shape, at the hub's fee from the
     * start, and the record. */
    assert_int_equal(store_query_int(
        a.store, -1, "SELECT COUNT(*) FROM vms v JOIN deals d ON d.id = "
        "v.deal_id AND d.node_id = v.node_id AND d.vm_id = v.id JOIN "
        "nodes n ON n.id = v.node_id JOIN node_offers o ON o.node_id = "
        "v.node_id AND o.vcpu_hour = d.vcpu_hour AND o.mem_gib_hour = "
        "d.mem_gib_hour AND o.disk_gib_month = d.disk_gib_month AND "
        "o.gpu_hour = d.gpu_hour AND o.port_hour = d.port_hour WHERE "
        "v.state = 'scheduled' AND v.price_hour > 0 AND d.tenant_id = "
        "v.account_id AND d.provider_id = n.account_id AND d.vcpus = "
        "v.vcpus AND d.memory_mib = v.memory_mib AND d.disk_gib = "
        "v.disk_gib AND d.gpus = v.gpu_count AND d.ports = (SELECT COUNT(*) "
        "FROM ports p WHERE p.vm_id = v.id) AND d.fee_bps = 500 AND "
        "d.base_s = 0 AND d.closed_at IS NULL", ""),
        room);
    json_auto_t *rows = NULL;
    ok(store_query(a.store, &rows, "SELECT node_id, placement, price_hour "
                   "FROM vms WHERE state = 'scheduled'", ""));
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        json_auto_t *p = json_loads(json_str(row, "placement"), 0, NULL);
        assert_non_null(p);
        /* Written as the JSON library writes it (compact, keys sorted). */
        _cleanup_free_ char *again = json_dumps_compact(p);
        assert_string_equal(again, json_str(row, "placement"));
        assert_string_equal(json_str(p, "node_id"), json_str(row, "node_id"));
        _cleanup_free_ char *price = money_format(json_int(row, "price_hour",
                                                           -1), NULL);
        assert_string_equal(json_str(p, "price_hour"), price);
        assert_int_equal(json_int(p, "candidates", 0), NODES);
        /* rig-1's policy removed it for every VM. */
        assert_true(json_int(json_object_get(p, "filtered"), "policy", 0) ==
                    1);
    }
    /* The rest wait, saying capacity is what is missing. */
    json_auto_t *left = NULL;
    ok(store_query(a.store, &left, "SELECT state_reason, placement FROM vms "
                   "WHERE node_id IS NULL", ""));
    assert_int_equal(json_array_size(left), VMS - room);
    assert_int_equal(json_array_size(rows), room);
    json_array_foreach(left, i, row) {
        assert_non_null(strstr(json_str(row, "state_reason"),
                               "capacity removed"));
        assert_non_null(json_str(row, "placement"));
    }
    assert_int_equal(scheduler_run(&a), 0);
    app_close(&a, dir);
}

/* Decisions on one fleet share what they work out for VMs alike but for
 * their template and image only while every node's policy treats them
 * alike: of a VM from template beta, one from gamma and one from alpha,
 * on a node that runs only alpha and one that runs only beta, the beta
 * and alpha VMs go each to its node and the gamma VM waits, the policy
 * filter having removed both nodes; so are they decided again. */
static void policies_tell_requests_apart(void **state)
{
    (void)state;
    struct app a = { 0 };
    char *dir = app_open(&a);
    int64_t now = now_s();
    char provider[UUID_STR_LEN + 1], tenant[UUID_STR_LEN + 1];
    char node[2][UUID_STR_LEN + 1], vm[3][UUID_STR_LEN + 1];
    static const char *const runs[] = { "alpha", "beta" };
    static const char *const asks[] = { "beta", "gamma", "alpha" };
    begin_with_accounts(&a, now, provider, tenant);
    for (int i = 0; i < 2; i++) {
        insert_node(&a, i, provider, true, now, node[i]);
        ok(store_exec(a.store, "INSERT INTO node_policy (node_id, kind, "
                      "name, local_image) VALUES ($1, 'template', $2, "
                      "'debian-12')", "ss", node[i], runs[i]));
    }
    for (int i = 0; i < 3; i++) {
        uuid_generate_str(vm[i]);
        _cleanup_free_ char *name = xasprintf("vm-%d", i);
        ok(store_exec(a.store, "INSERT INTO vms (id, account_id, name, "
                      "vcpus, memory_mib, disk_gib, image, template, "
                      "desired_state, state, created_at, updated_at) VALUES "
                      "($1, $2, $3, 1, 1024, 10, 'debian-12', $4, 'running', "
                      "'pending', $5, $5)", "ssssi", vm[i], tenant, name,
                      asks[i], now - 10 + i));
    }
    ok(store_tx_commit(a.store));
    assert_int_equal(scheduler_run(&a), 2);
    const char *want[] = { node[1], NULL, node[0] };
    for (int i = 0; i < 3; i++) {
        json_auto_t *row = NULL;
        ok(store_query_one(a.store, &row, "SELECT node_id, placement FROM "
                           "vms WHERE id = $1", "s", vm[i]));
        if (want[i])
            assert_string_equal(json_str(row, "node_id"), want[i]);
        else
            assert_null(json_str(row, "node_id"));
        json_auto_t *p = json_loads(json_str(row, "placement"), 0, NULL);
        assert_int_equal(json_int(json_object_get(p, "filtered"), "policy",
                                  0), want[i] ? 1 : 2);
    }
    /* Decided again on the fleet as the pass left it, in either order
     * (no check under a node's lock behind these): the same. */
    for (int k = 0; k < 6; k++) {
        int i = k < 3 ? k : 5 - k;
        struct place_req r = { .vcpus = 1, .mem_mib = 1024, .disk_gib = 10,
                               .image = "debian-12", .tmpl = asks[i],
                               .max_price = -1 };
        json_auto_t *choice = NULL;
        assert_int_equal(scheduler_decide(&a, &r, &choice), want[i] != NULL);
        if (want[i])
            assert_string_equal(json_str(choice, "node_id"), want[i]);
    }
    app_close(&a, dir);
}

/* One VM whose deal the store refuses and one that fits nowhere, in the
 * middle of a batch, with VMs of an anti-affinity group spread through
 * it: every other VM is placed exactly once (one deal each, the VM
 * pointing at it, one placement generation), the two wait with no deal,
 * and the group's VMs each go to a node of their own (the batch's
 * placements are seen by the ones after them), the one too many waiting.
 * A batch whose rows cannot all be written is placed again in pieces. */
enum { BAD_NODES = 4, BAD_VMS = 200, REFUSED = 100, TOO_BIG = 130 };

static void one_bad_vm_holds_up_no_other(void **state)
{
    (void)state;
    struct app a = { 0 };
    char *dir = app_open(&a);
    int64_t now = now_s();
    char provider[UUID_STR_LEN + 1], tenant[UUID_STR_LEN + 1];
    char vm[BAD_VMS][UUID_STR_LEN + 1];
    static const int group[] = { 10, 60, 120, 170, 190 };
    begin_with_accounts(&a, now, provider, tenant);
    for (int i = 0; i < BAD_NODES; i++) {
        char id[UUID_STR_LEN + 1];
        insert_node(&a, i, provider, true, now, id);
    }
    for (int i = 0; i < BAD_VMS; i++) {
        uuid_generate_str(vm[i]);
        _cleanup_free_ char *name = xasprintf("vm-%d", i);
        bool grouped = false;
        for (size_t k = 0; k < ARRAY_SIZE(group); k++)
            grouped = grouped || group[k] == i;
        ok(store_exec(a.store, "INSERT INTO vms (id, account_id, name, "
                      "vcpus, memory_mib, disk_gib, image, anti_affinity, "
                      "desired_state, state, created_at, updated_at) VALUES "
                      "($1, $2, $3, $4, 512, 1, 'debian-12', $5, 'running', "
                      "'pending', $6, $6)", "sssisi", vm[i], tenant, name,
                      (int64_t)(i == TOO_BIG ? 1000 : 1),
                      grouped ? "spread" : NULL, now - BAD_VMS + i));
    }
    /* The store refuses one VM's deal. */
    _cleanup_free_ char *refuse =
        streq(store_backend_name(a.store), "sqlite")
            ? xasprintf("CREATE TRIGGER refuse_deal BEFORE INSERT ON deals "
                        "WHEN NEW.vm_id = '%s' BEGIN SELECT RAISE(ABORT, "
                        "'refused'); END", vm[REFUSED])
            : xasprintf("CREATE FUNCTION refuse_deal() RETURNS trigger AS "
                        "'BEGIN IF NEW.vm_id = ''%s'' THEN RAISE EXCEPTION "
                        "''refused''; END IF; RETURN NEW; END' LANGUAGE "
                        "plpgsql", vm[REFUSED]);
    ok(store_exec(a.store, refuse, ""));
    if (!streq(store_backend_name(a.store), "sqlite"))
        ok(store_exec(a.store, "CREATE TRIGGER refuse_deal BEFORE INSERT ON "
                      "deals FOR EACH ROW EXECUTE FUNCTION refuse_deal()",
                      ""));
    ok(store_tx_commit(a.store));

    int64_t want = BAD_VMS - 3;
    assert_int_equal(scheduler_run(&a), want);
    assert_int_equal(scheduler_run(&a), 0);
    assert_int_equal(store_query_int(a.store, -1, "SELECT COUNT(*) FROM vms "
                                     "WHERE node_id IS NOT NULL", ""), want);
    assert_int_equal(store_query_int(a.store, -1, "SELECT COUNT(*) FROM "
                                     "deals", ""), want);
    /* Each placed VM: one deal, its own, on its node, placed once. */
    assert_int_equal(store_query_int(
        a.store, -1, "SELECT COUNT(*) FROM vms v JOIN deals d ON d.id = "
        "v.deal_id AND d.vm_id = v.id AND d.node_id = v.node_id WHERE "
        "v.place_gen = 1 AND v.state = 'scheduled' AND v.placement IS NOT "
        "NULL AND v.price_hour > 0 AND (SELECT COUNT(*) FROM deals e WHERE "
        "e.vm_id = v.id) = 1", ""), want);
    for (int i = 0; i < BAD_VMS; i++) {
        json_auto_t *row = NULL;
        ok(store_query_one(a.store, &row, "SELECT node_id, deal_id, "
                           "place_gen FROM vms WHERE id = $1", "s", vm[i]));
        bool waits = i == REFUSED || i == TOO_BIG || i == group[4];
        assert_int_equal(json_str(row, "node_id") == NULL, waits);
        assert_int_equal(json_str(row, "deal_id") == NULL, waits);
    }
    /* The group: one VM per node, the fifth waiting. */
    assert_int_equal(store_query_int(a.store, -1, "SELECT COUNT(DISTINCT "
                                     "node_id) FROM vms WHERE anti_affinity "
                                     "= 'spread'", ""), BAD_NODES);
    /* Nothing overcommitted. */
    assert_int_equal(store_query_int(
        a.store, -1, "SELECT COUNT(*) FROM nodes n WHERE n.vcpus < (SELECT "
        "COALESCE(SUM(v.vcpus), 0) FROM vms v WHERE v.node_id = n.id)", ""),
        0);
    app_close(&a, dir);
}

/* The node a 1-vCPU request is decided onto (the cheapest: only the
 * price is weighed). */
static void decided_onto(struct app *a, const char *want)
{
    struct place_req r = { .vcpus = 1, .mem_mib = 1024, .disk_gib = 10,
                           .image = "debian-12", .max_price = -1 };
    json_auto_t *choice = NULL;
    assert_int_equal(scheduler_decide(a, &r, &choice), 1);
    assert_string_equal(json_str(choice, "node_id"), want);
}

/* A node added behind the cache's back, cheaper than the one there. */
static void cheaper_node(struct app *a, int i, const char *provider,
                         int64_t price, char id[UUID_STR_LEN + 1])
{
    insert_node(a, i, provider, true, now_s(), id);
    ok(store_exec(a->store, "UPDATE node_offers SET vcpu_hour = $1 WHERE "
                  "node_id = $2", "is", price, id));
}

/* The cached fleet is loaded again by the reconciler's refresh once
 * decisions used it and it is half a second old, not by the decisions;
 * one nothing used since its load is left as it is; past its longest
 * age a decision loads it itself. Nodes are added without announcing a
 * change, so only a new load sees them. */
static void the_fleet_is_refreshed_beside_decisions(void **state)
{
    (void)state;
    struct app a = { 0 };
    char *dir = app_open(&a);
    a.cfg.weight_price = 1;
    char provider[UUID_STR_LEN + 1], tenant[UUID_STR_LEN + 1];
    char n[4][UUID_STR_LEN + 1];
    begin_with_accounts(&a, now_s(), provider, tenant);
    cheaper_node(&a, 0, provider, 9000000, n[0]);
    ok(store_tx_commit(a.store));
    decided_onto(&a, n[0]);
    /* Unannounced: the cached fleet is decided on. */
    cheaper_node(&a, 1, provider, 8000000, n[1]);
    decided_onto(&a, n[0]);
    usleep(600 * 1000);
    scheduler_fleet_refresh(&a);
    /* Loaded again, and not used yet: the next refresh leaves it. */
    cheaper_node(&a, 2, provider, 7000000, n[2]);
    usleep(600 * 1000);
    scheduler_fleet_refresh(&a);
    decided_onto(&a, n[1]);
    /* Used now: loaded again. */
    usleep(600 * 1000);
    scheduler_fleet_refresh(&a);
    decided_onto(&a, n[2]);
    /* With no refresh, a fleet is decided on for 3 s, then a decision
     * loads it itself. */
    cheaper_node(&a, 3, provider, 6000000, n[3]);
    usleep(1500 * 1000);
    decided_onto(&a, n[2]);
    usleep(1600 * 1000);
    decided_onto(&a, n[3]);
    app_close(&a, dir);
}

/* A pass refuses a VM only on a fleet loaded after it began: the VM that
 * fits only a node the cached fleet does not know (added unannounced) is
 * placed in the same pass, after the batch holding the VM before it is
 * committed and the fleet loaded again. */
static void a_pass_refuses_on_a_fleet_newer_than_it(void **state)
{
    (void)state;
    struct app a = { 0 };
    char *dir = app_open(&a);
    int64_t now = now_s();
    char provider[UUID_STR_LEN + 1], tenant[UUID_STR_LEN + 1];
    char small[UUID_STR_LEN + 1], big[UUID_STR_LEN + 1];
    char vm[2][UUID_STR_LEN + 1];
    begin_with_accounts(&a, now, provider, tenant);
    insert_node(&a, 0, provider, true, now, small);
    ok(store_exec(a.store, "UPDATE nodes SET vcpus = 2 WHERE id = $1", "s",
                  small));
    for (int i = 0; i < 2; i++) {
        uuid_generate_str(vm[i]);
        _cleanup_free_ char *name = xasprintf("vm-%d", i);
        ok(store_exec(a.store, "INSERT INTO vms (id, account_id, name, "
                      "vcpus, memory_mib, disk_gib, image, desired_state, "
                      "state, created_at, updated_at) VALUES ($1, $2, $3, $4, "
                      "1024, 10, 'debian-12', 'running', 'pending', $5, $5)",
                      "sssii", vm[i], tenant, name, (int64_t)(i ? 8 : 1),
                      now - 10 + i));
    }
    ok(store_tx_commit(a.store));
    /* The fleet cached with the small node alone. */
    decided_onto(&a, small);
    insert_node(&a, 1, provider, true, now, big);
    assert_int_equal(scheduler_run(&a), 2);
    const char *want[] = { small, big };
    for (int i = 0; i < 2; i++) {
        json_auto_t *row = NULL;
        ok(store_query_one(a.store, &row, "SELECT node_id FROM vms WHERE id "
                           "= $1", "s", vm[i]));
        assert_string_equal(json_str(row, "node_id"), want[i]);
    }
    app_close(&a, dir);
}

int main(void)
{
    log_set_level(LOG_ERR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batches_place_all_that_fit),
        cmocka_unit_test(policies_tell_requests_apart),
        cmocka_unit_test(one_bad_vm_holds_up_no_other),
        cmocka_unit_test(the_fleet_is_refreshed_beside_decisions),
        cmocka_unit_test(a_pass_refuses_on_a_fleet_newer_than_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
