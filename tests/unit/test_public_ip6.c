/* The node's global IPv6 address: --public-ip6 must be one (not unique
 * local, link-local, loopback, multicast, IPv4-mapped or garbage), and
 * without it the agent takes the permanent global address of its IPv6
 * default route's interface from /proc/net. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "nodeagent/config.h"
#include "tests/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

static void only_global_addresses_are_taken(void **state)
{
    (void)state;
    assert_true(agent_ip6_global("2001:db8::5"));
    assert_true(agent_ip6_global("2a01:4f8:1:2::1"));
    static const char *const bad[] = {
        NULL, "", "fd00::1", "fc00::1", "fe80::1", "::1", "::", "ff02::1",
        "::ffff:192.0.2.1", "192.0.2.1", "2001:db8::5/64", "2001:db8::5 ",
        "2001:db8:::5", "[2001:db8::5]",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        if (agent_ip6_global(bad[i]))
            fail_msg("accepted '%s'", bad[i]);
}

/* A fake ROOT/proc/net with these two files. */
static char *fake_proc(const char *routes, const char *addrs)
{
    char *root = tu_tempdir("public-ip6");
    _cleanup_free_ char *net = xasprintf("%s/proc/net", root);
    _cleanup_free_ char *r = xasprintf("%s/ipv6_route", net);
    _cleanup_free_ char *a = xasprintf("%s/if_inet6", net);
    assert_int_equal(mkdir_p(net, 0755), 0);
    if (routes)
        assert_int_equal(file_write_atomic(r, routes, strlen(routes), 0644), 0);
    if (addrs)
        assert_int_equal(file_write_atomic(a, addrs, strlen(addrs), 0644), 0);
    return root;
}

#define ROUTE_ULA                                                              \
    "fd000000000000000000000000000000 40 00000000000000000000000000000000 "   \
    "00 00000000000000000000000000000000 00000100 00000001 00000000 "         \
    "00000001     eth0\n"
#define ROUTE_DEFAULT(dev)                                                     \
    "00000000000000000000000000000000 00 00000000000000000000000000000000 "   \
    "00 fe800000000000000000000000000001 00000400 00000003 00000000 "         \
    "00000003     " dev "\n"

static void detection_takes_the_default_routes_global_address(void **state)
{
    (void)state;
    char out[46];
    /* On the default route's interface: not the ULA, link-local,
     * temporary (0x01), deprecated (0x20) or tentative (0x40) ones, nor
     * another interface's. */
    _cleanup_tempdir_ char *root = fake_proc(
        ROUTE_ULA ROUTE_DEFAULT("wan0"),
        "fd000000000000000000000000000002 02 40 00 80     wan0\n"
        "fe800000000000000000000000000002 02 40 20 80     wan0\n"
        "20010db8000000000000000000000007 02 40 00 01     wan0\n"
        "20010db8000000000000000000000008 02 40 00 20     wan0\n"
        "20010db8000000000000000000000009 02 40 00 40     wan0\n"
        "20010db8000000000000000000000003 03 40 00 80     lan0\n"
        "zz010db8000000000000000000000004 02 40 00 80     wan0\n"
        "20010db8000000000000000000000005 02 40 00 80     wan0\n");
    assert_int_equal(agent_detect_public_ip6(root, out), 0);
    assert_string_equal(out, "2001:db8::5");

    /* No default route, none global, or no files: none. */
    _cleanup_tempdir_ char *r2 = fake_proc(
        ROUTE_ULA, "20010db8000000000000000000000005 02 40 00 80     eth0\n");
    assert_int_equal(agent_detect_public_ip6(r2, out), -ENOENT);
    _cleanup_tempdir_ char *r3 = fake_proc(
        ROUTE_DEFAULT("eth0"),
        "fd000000000000000000000000000005 02 40 00 80     eth0\n");
    assert_int_equal(agent_detect_public_ip6(r3, out), -ENOENT);
    _cleanup_tempdir_ char *r4 = fake_proc(NULL, NULL);
    assert_int_equal(agent_detect_public_ip6(r4, out), -ENOENT);
    /* A default route through loopback (unreachable) is no route. */
    _cleanup_tempdir_ char *r5 = fake_proc(
        ROUTE_DEFAULT("lo"), "20010db8000000000000000000000005 01 40 00 80     lo\n");
    assert_int_equal(agent_detect_public_ip6(r5, out), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(only_global_addresses_are_taken),
        cmocka_unit_test(detection_takes_the_default_routes_global_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
