/* Unit tests for common/netcheck.c: one answer per network fact. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/netcheck.h"

static void mac_must_be_unicast_and_locally_administered(void **state)
{
    (void)state;
    assert_true(net_mac_ok("52:54:00:12:34:56"));
    assert_true(net_mac_ok("52:54:00:AB:cd:0F"));
    assert_true(net_mac_ok("de:ad:be:ef:00:01"));
    assert_false(net_mac_ok("53:54:00:00:00:01")); /* multicast bit */
    assert_false(net_mac_ok("01:00:5e:00:00:01")); /* multicast, global */
    assert_false(net_mac_ok("00:16:3e:00:00:01")); /* a vendor's block */
    assert_false(net_mac_ok("ff:ff:ff:ff:ff:ff"));
    assert_false(net_mac_ok("52:54:00:12:34"));
    assert_false(net_mac_ok("52:54:00:12:34:567"));
    assert_false(net_mac_ok("52-54-00-12-34-56"));
    assert_false(net_mac_ok("52:54:00:12:34:5g"));
    assert_false(net_mac_ok(""));
    assert_false(net_mac_ok(NULL));
}

static void ifname_follows_the_kernel_rule(void **state)
{
    (void)state;
    assert_true(net_ifname_ok("fogbr1000"));
    assert_true(net_ifname_ok("a.b-c_d"));
    assert_true(net_ifname_ok("123456789012345"));
    assert_false(net_ifname_ok("1234567890123456"));
    assert_false(net_ifname_ok("."));
    assert_false(net_ifname_ok(".."));
    assert_false(net_ifname_ok("a/b"));
    assert_false(net_ifname_ok("a b"));
    assert_false(net_ifname_ok(""));
    assert_false(net_ifname_ok(NULL));
}

static void addresses_and_cidrs_parse_by_family(void **state)
{
    (void)state;
    assert_true(net_ipv4_ok("10.0.0.1"));
    assert_false(net_ipv4_ok("fd00::1"));
    assert_false(net_ipv4_ok("10.0.0"));
    assert_true(net_ip_ok("fd00::1"));
    assert_true(net_ip_ok("192.0.2.7"));
    assert_false(net_ip_ok("host"));
    assert_false(net_ip_ok(NULL));
    assert_true(net_cidr_ok("10.0.0.0/24"));
    assert_true(net_cidr_ok("0.0.0.0/0"));
    assert_true(net_cidr_ok("fd00::/64"));
    assert_true(net_cidr_ok("fd00::/128"));
    assert_false(net_cidr_ok("10.0.0.0/33"));
    assert_false(net_cidr_ok("10.0.0.0/024"));
    assert_false(net_cidr_ok("10.0.0.0/"));
    assert_false(net_cidr_ok("10.0.0.0/-1"));
    assert_false(net_cidr_ok("10.0.0.0"));
    assert_false(net_cidr_ok("fd00::/129"));
    assert_false(net_cidr_ok("x/8"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mac_must_be_unicast_and_locally_administered),
        cmocka_unit_test(ifname_follows_the_kernel_rule),
        cmocka_unit_test(addresses_and_cidrs_parse_by_family),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
