/* IPv6 next to every tenant network's IPv4 range: one ULA /48 for the
 * controller (RFC 4193, made once), a unique subnet id per live network,
 * VM addresses derived from their IPv4 host numbers, and networks from
 * before IPv6 given theirs at start. On sqlite, and on PostgreSQL under
 * FOG_TEST_DATABASE=postgresql. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "controller/handlers.h"
#include "controller/netalloc.h"
#include "controller/store.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <errno.h>

#define ok(x) assert_int_equal((x), 0)
#define exec_ok(...) assert_true(store_exec(__VA_ARGS__) >= 0)

static const uint8_t ULA[6] = { 0xfd, 0x12, 0x34, 0x56, 0x78, 0x9a };

static void text_forms(void **state)
{
    (void)state;
    _cleanup_free_ char *c = netalloc_cidr6(ULA, 1);
    _cleanup_free_ char *g = netalloc_gateway6(ULA, 0xbeef);
    assert_string_equal(c, "fd12:3456:789a:1::/64");
    assert_string_equal(g, "fd12:3456:789a:beef::1");
    _cleanup_free_ char *a = netalloc_address6("fd12:3456:789a:1::/64",
                                               "10.1.0.0/24", "10.1.0.7");
    assert_string_equal(a, "fd12:3456:789a:1::7");
    /* the host number, not the address: 10.1.1.2 in a /16 is host 258 */
    _cleanup_free_ char *b = netalloc_address6("fd12:3456:789a:1::/64",
                                               "10.1.0.0/16", "10.1.1.2");
    assert_string_equal(b, "fd12:3456:789a:1::102");
}

static void hostile_input_gives_no_address(void **state)
{
    (void)state;
    static const char *const bad[][3] = {
        { NULL, "10.1.0.0/24", "10.1.0.7" },
        { "fd12:3456:789a:1::/64", NULL, "10.1.0.7" },
        { "fd12:3456:789a:1::/64", "10.1.0.0/24", NULL },
        { "fd12:3456:789a:1::/48", "10.1.0.0/24", "10.1.0.7" },
        { "fd12:3456:789a:1::", "10.1.0.0/24", "10.1.0.7" },
        { "nonsense/64", "10.1.0.0/24", "10.1.0.7" },
        { "fd12:3456:789a:1::/64/64", "10.1.0.0/24", "10.1.0.7" },
        { "fd12:3456:789a:1:::/64", "10.1.0.0/24", "10.1.0.7" },
        { "fd12:3456:789a:1::/64", "10.1.0.0/24", "10.2.0.7" },   /* outside */
        { "fd12:3456:789a:1::/64", "10.1.0.0/24", "10.1.0.0" },   /* network */
        { "fd12:3456:789a:1::/64", "10.1.0.0/24", "10.1.0.1" },   /* gateway */
        { "fd12:3456:789a:1::/64", "10.1.0.5/24", "10.1.0.7" },   /* host bits */
        { "fd12:3456:789a:1::/64", "10.1.0.0/24", "10.1.0.7 " },
        { "fd12:3456:789a:1::/64", "10.1.0.0/24", "::7" },
        { "1234567890123456789012345678901234567890123456/64", "10.1.0.0/24",
          "10.1.0.7" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *a = netalloc_address6(bad[i][0], bad[i][1], bad[i][2]);
        if (a)
            fail_msg("case %zu gave %s", i, a);
    }
}

/* A fresh store in a temp dir (to *ret_dir, removed by its owner). */
static struct store *store_new(char **ret_dir)
{
    char *dir = *ret_dir = tu_tempdir("netalloc6");
    _cleanup_free_ char *db = tu_new_store_address(dir);
    struct store *s = NULL;
    ok(store_open(db, &s));
    exec_ok(s, "INSERT INTO accounts (id, name, role, created_at) VALUES "
                     "('acc', 'acme', 'tenant', 1)", "");
    return s;
}

static int64_t subnet_of(struct store *s, const char *id)
{
    return store_query_int(s, -1, "SELECT subnet6 FROM networks WHERE id = $1",
                           "s", id);
}

static void ula_is_made_once(void **state)
{
    (void)state;
    _cleanup_tempdir_ char *dir = NULL;
    struct store *s = store_new(&dir);
    uint8_t u1[6], u2[6];
    ok(store_tx_begin(s));
    ok(netalloc_ula48(s, u1));
    ok(store_tx_commit(s));
    ok(netalloc_ula48(s, u2));
    assert_int_equal(u1[0], 0xfd);
    assert_memory_equal(u1, u2, 6);
    /* A store holding a broken value is refused, not used. */
    exec_ok(s, "UPDATE settings SET value = 'fe80zz000000' WHERE key = "
                     "'ula48'", "");
    assert_int_equal(netalloc_ula48(s, u2), -EINVAL);
    store_close(s);
}

static void networks_get_distinct_subnets(void **state)
{
    (void)state;
    _cleanup_tempdir_ char *dir = NULL;
    struct store *s = store_new(&dir);
    char n1[37], n2[37], n3[37], n4[37];
    ok(store_tx_begin(s));
    ok(network_insert(s, "acc", "a", "10.1.0.0/24", false, n1));
    ok(network_insert(s, "acc", "b", "10.2.0.0/24", false, n2));
    ok(network_insert(s, "acc", "c", "10.3.0.0/24", false, n3));
    ok(store_tx_commit(s));
    assert_int_equal(subnet_of(s, n1), 1);
    assert_int_equal(subnet_of(s, n2), 2);
    assert_int_equal(subnet_of(s, n3), 3);
    uint8_t u[6];
    ok(netalloc_ula48(s, u));
    _cleanup_free_ char *want = netalloc_cidr6(u, 2);
    _cleanup_free_ char *want_gw = netalloc_gateway6(u, 2);
    json_auto_t *row = NULL;
    ok(store_query_one(s, &row, "SELECT cidr6, gateway6 FROM networks WHERE "
                                "id = $1", "s", n2));
    assert_string_equal(json_str(row, "cidr6"), want);
    assert_string_equal(json_str(row, "gateway6"), want_gw);
    /* A deleted network's subnet is free again: the lowest is taken. */
    exec_ok(s, "UPDATE networks SET deleted_at = 5 WHERE id = $1", "s",
                  n2);
    ok(store_tx_begin(s));
    ok(network_insert(s, "acc", "d", "10.4.0.0/24", false, n4));
    ok(store_tx_commit(s));
    assert_int_equal(subnet_of(s, n4), 2);
    /* The index refuses a second live network with the same subnet. */
    assert_int_equal(store_exec(s, "UPDATE networks SET subnet6 = 1 WHERE id "
                                   "= $1", "s", n3), -EEXIST);
    /* Every id taken: none is left, none is made up. */
    exec_ok(s, "DELETE FROM networks", "");
    exec_ok(s, "WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + "
                     "1 FROM k WHERE n < 65535) INSERT INTO networks (id, "
                     "account_id, name, cidr, gateway, vxlan_id, created_at, "
                     "subnet6) SELECT 'x' || n, 'acc', 'x' || n, '10.0.0.0/8', "
                     "'10.0.0.1', 2000 + n, 1, n FROM k", "");
    assert_int_equal(netalloc_subnet6(s), -ENOSPC);
    exec_ok(s, "DELETE FROM networks WHERE subnet6 = 40000", "");
    assert_int_equal(netalloc_subnet6(s), 40000);
    store_close(s);
}

static void old_networks_get_theirs_at_start(void **state)
{
    (void)state;
    _cleanup_tempdir_ char *dir = NULL;
    struct store *s = store_new(&dir);
    /* A network and a VM from before IPv6. */
    exec_ok(s, "INSERT INTO networks (id, account_id, name, cidr, "
                     "gateway, vxlan_id, created_at) VALUES ('old', 'acc', "
                     "'old', '10.9.0.0/16', '10.9.0.1', 1000, 1)", "");
    exec_ok(s, "INSERT INTO vms (id, account_id, name, vcpus, "
                     "memory_mib, disk_gib, image, desired_state, state, "
                     "addresses, created_at, updated_at) VALUES ('vm1', "
                     "'acc', 'vm1', 1, 64, 1, 'x', 'running', 'pending', "
                     "'[\"10.9.1.2\"]', 1, 1)", "");
    exec_ok(s, "INSERT INTO vm_nics (vm_id, idx, network_id, mac, "
                     "address) VALUES ('vm1', 0, 'old', '52:54:00:00:00:01', "
                     "'10.9.1.2')", "");
    char n1[37];
    ok(store_tx_begin(s));
    ok(network_insert(s, "acc", "new", "10.1.0.0/24", false, n1));
    ok(store_tx_commit(s));
    assert_int_equal(subnet_of(s, "old"), -1);
    ok(netalloc_v6_backfill(s));
    assert_int_equal(subnet_of(s, "old"), 2);
    assert_int_equal(subnet_of(s, n1), 1);
    uint8_t u[6];
    ok(netalloc_ula48(s, u));
    _cleanup_free_ char *c = netalloc_cidr6(u, 2);
    _cleanup_free_ char *a6 = netalloc_address6(c, "10.9.0.0/16", "10.9.1.2");
    _cleanup_free_ char *want = xasprintf("[\"%s\"]", a6);
    json_auto_t *row = NULL;
    ok(store_query_one(s, &row, "SELECT addresses6 FROM vms WHERE id = 'vm1'",
                       ""));
    assert_string_equal(json_str(row, "addresses6"), want);
    assert_non_null(strstr(want, ":2::102\""));
    /* Once given, nothing moves. */
    ok(netalloc_v6_backfill(s));
    assert_int_equal(subnet_of(s, "old"), 2);
    _cleanup_free_ char *nic6 = netalloc_nic_address6(s, "old", "10.9.1.2");
    assert_string_equal(nic6, a6);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_forms),
        cmocka_unit_test(hostile_input_gives_no_address),
        cmocka_unit_test(ula_is_made_once),
        cmocka_unit_test(networks_get_distinct_subnets),
        cmocka_unit_test(old_networks_get_theirs_at_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
