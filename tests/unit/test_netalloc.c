/* Which ranges a tenant may pick for its own networks: inside the
 * controller's pools, clear of the mesh and of the default networks'
 * pool, and which pools settings the controller accepts at start. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "controller/netalloc.h"

#include <errno.h>

#define POOLS "10.0.0.0/9,172.16.0.0/12"
#define MESH "100.96.0.0/12"

static int allowed(const char *cidr)
{
    uint32_t net;
    int prefix;
    if (netalloc_parse_cidr(cidr, &net, &prefix) < 0)
        return -EINVAL;
    return netalloc_cidr_allowed(POOLS, MESH, net, prefix);
}

static void hostile_ranges_are_refused(void **state)
{
    assert_int_equal(allowed("100.96.0.0/16"), -EADDRNOTAVAIL);
    assert_int_equal(allowed("100.100.0.0/24"), -EADDRNOTAVAIL);
    static const char *const refused[] = {
        "127.0.0.0/16", "169.254.0.0/16", "192.168.1.0/24", "224.0.0.0/16",
        "0.0.0.0/16",   "8.8.0.0/16",     "10.128.0.0/16",  "10.200.1.0/24",
        "172.32.0.0/16", "172.15.255.0/24", "255.255.0.0/16",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        assert_int_equal(allowed(refused[i]), -EPERM);
    /* prefix bounds and host bits, before any pool */
    assert_int_equal(allowed("10.0.0.0/8"), -EINVAL);
    assert_int_equal(allowed("10.0.0.0/15"), -EINVAL);
    assert_int_equal(allowed("10.1.0.0/30"), -EINVAL);
    assert_int_equal(allowed("10.1.0.1/24"), -EINVAL);
}

static void ranges_inside_the_pools_are_allowed(void **state)
{
    assert_int_equal(allowed("10.0.0.0/16"), 0);
    assert_int_equal(allowed("10.127.255.248/29"), 0);
    assert_int_equal(allowed("172.16.0.0/16"), 0);
    assert_int_equal(allowed("172.31.255.0/24"), 0);
}

static void pools_overlapping_the_hub_are_refused_at_start(void **state)
{
    char *why = NULL;
    assert_int_equal(netalloc_pools_check(POOLS, MESH, &why), 0);
    assert_null(why);
    static const char *const bad[] = { "10.0.0.0/8", "100.64.0.0/10",
                                       "192.168.0.0/16,junk",
                                       "10.0.0.1/9" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(netalloc_pools_check(bad[i], MESH, &why), -EINVAL);
        assert_non_null(why);
        free(why);
        why = NULL;
    }
    assert_int_equal(netalloc_pools_check(POOLS, "nonsense", &why), -EINVAL);
    free(why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hostile_ranges_are_refused),
        cmocka_unit_test(ranges_inside_the_pools_are_allowed),
        cmocka_unit_test(pools_overlapping_the_hub_are_refused_at_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
