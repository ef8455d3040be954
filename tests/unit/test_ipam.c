/* Unit tests for netfabric/ipam: CIDR arithmetic, address allocation,
 * MACs and host port allocation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "netfabric/ipam.h"

#include <errno.h>

static uint32_t A(const char *t)
{
    uint32_t a = 0;
    assert_int_equal(ipam_addr_parse(t, &a), 0);
    return a;
}

static void cidr_parse_is_strict_about_host_bits_when_asked(void **state)
{
    struct ipam_cidr c;
    uint32_t addr;
    assert_int_equal(ipam_cidr_parse("10.1.0.0/24", true, &c, NULL), 0);
    assert_int_equal(c.net, A("10.1.0.0"));
    assert_int_equal(c.prefix, 24);
    assert_int_equal(ipam_cidr_parse("10.1.0.5/24", true, &c, NULL), -EINVAL);
    assert_int_equal(ipam_cidr_parse("10.1.0.5/24", false, &c, &addr), 0);
    assert_int_equal(c.net, A("10.1.0.0"));
    assert_int_equal(addr, A("10.1.0.5"));
    assert_int_equal(ipam_cidr_parse("100.96.0.0/12", true, &c, NULL), 0);
    assert_int_equal(ipam_mask(12), 0xfff00000u);
    assert_int_equal(ipam_cidr_parse("10.1.0.0/33", false, &c, NULL), -EINVAL);
    assert_int_equal(ipam_cidr_parse("10.1.0.0", false, &c, NULL), -EINVAL);
    assert_int_equal(ipam_cidr_parse("10.1.0/24", false, &c, NULL), -EINVAL);
    assert_int_equal(ipam_cidr_parse("10.1.0.0/24x", false, &c, NULL), -EINVAL);
    assert_int_equal(ipam_cidr_parse("10.1.0.0/-1", false, &c, NULL), -EINVAL);
    assert_int_equal(ipam_cidr_parse("", false, &c, NULL), -EINVAL);
    assert_int_equal(ipam_cidr_parse(NULL, false, &c, NULL), -EINVAL);
    assert_int_equal(ipam_cidr_parse("1111.1.1.1.1.1.1/24", false, &c, NULL),
                     -EINVAL);
    struct ipam_cidr d = { A("192.168.7.0"), 24 };
    char *t = ipam_cidr_format(&d);
    assert_string_equal(t, "192.168.7.0/24");
    free(t);
    char a[IPAM_ADDR_STRLEN];
    ipam_addr_format(A("255.255.255.255"), a);
    assert_string_equal(a, "255.255.255.255");
}

static void cidr_list_parses_commas_and_refuses_junk(void **state)
{
    struct ipam_cidr *v = NULL;
    size_t n = 99;
    assert_int_equal(ipam_cidr_list_parse("192.168.1.0/24, 10.0.0.0/8", &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].net, 0xc0a80100);
    assert_int_equal(v[0].prefix, 24);
    assert_int_equal(v[1].net, 0x0a000000);
    assert_int_equal(v[1].prefix, 8);
    free(v);
    assert_int_equal(ipam_cidr_list_parse("169.254.169.254/32", &v, &n), 0);
    assert_int_equal(n, 1);
    free(v);
    /* Empty means none. */
    assert_int_equal(ipam_cidr_list_parse("", &v, &n), 0);
    assert_int_equal(n, 0);
    assert_null(v);
    assert_int_equal(ipam_cidr_list_parse(NULL, &v, &n), 0);
    assert_int_equal(n, 0);
    const char *bad[] = { "10.0.0.0/8,", ",10.0.0.0/8", "10.0.0.0/8,,1.0.0.0/8",
                          "10.0.0.1/8", "10.0.0.0", "10.0.0.0/8 1.0.0.0/8",
                          "10.0.0.0/8;drop", "fc00::/7", "10.0.0.0/33" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        n = 99;
        v = NULL;
        if (ipam_cidr_list_parse(bad[i], &v, &n) != -EINVAL)
            fail_msg("accepted '%s'", bad[i]);
        assert_int_equal(n, 99); /* untouched on failure */
    }
}

static void nth_host_skips_network_and_broadcast(void **state)
{
    struct ipam_cidr c = { A("10.1.0.0"), 24 };
    uint32_t a;
    assert_int_equal(ipam_host_count(&c), 254);
    assert_int_equal(ipam_nth_host(&c, 1, &a), 0);
    assert_int_equal(a, A("10.1.0.1"));
    assert_int_equal(ipam_nth_host(&c, 254, &a), 0);
    assert_int_equal(a, A("10.1.0.254"));
    assert_int_equal(ipam_nth_host(&c, 255, &a), -ERANGE);
    assert_int_equal(ipam_nth_host(&c, 0, &a), -ERANGE);
    assert_int_equal(ipam_gateway(&c, &a), 0);
    assert_int_equal(a, A("10.1.0.1"));
    assert_true(ipam_cidr_contains(&c, A("10.1.0.200")));
    assert_false(ipam_cidr_contains(&c, A("10.1.1.1")));

    struct ipam_cidr p31 = { A("10.9.9.0"), 31 };
    assert_int_equal(ipam_host_count(&p31), 2);
    assert_int_equal(ipam_nth_host(&p31, 2, &a), 0);
    assert_int_equal(a, A("10.9.9.1"));
    struct ipam_cidr p32 = { A("10.9.9.7"), 32 };
    assert_int_equal(ipam_nth_host(&p32, 1, &a), 0);
    assert_int_equal(a, A("10.9.9.7"));
    struct ipam_cidr mesh = { A("100.96.0.0"), 12 };
    assert_int_equal(ipam_host_count(&mesh), (1u << 20) - 2);
    assert_int_equal(ipam_nth_host(&mesh, (1u << 20) - 2, &a), 0);
    assert_int_equal(a, A("100.111.255.254"));
}

static void next_free_skips_gateway_and_used_and_fills_holes(void **state)
{
    struct ipam_cidr c = { A("10.1.0.0"), 29 }; /* hosts .1 - .6 */
    uint32_t a;
    assert_int_equal(ipam_next_free(&c, NULL, 0, &a), 0);
    assert_int_equal(a, A("10.1.0.2"));
    uint32_t used[] = { A("10.1.0.2"), A("10.1.0.4") };
    assert_int_equal(ipam_next_free(&c, used, 2, &a), 0);
    assert_int_equal(a, A("10.1.0.3"));
    uint32_t full[] = { A("10.1.0.2"), A("10.1.0.3"), A("10.1.0.4"),
                        A("10.1.0.5"), A("10.1.0.6") };
    assert_int_equal(ipam_next_free(&c, full, 4, &a), 0);
    assert_int_equal(a, A("10.1.0.6"));
    a = 0x12345678;
    assert_int_equal(ipam_next_free(&c, full, 5, &a), -ENOSPC);
    assert_int_equal(a, 0x12345678); /* untouched on failure */
}

static void allocating_in_a_loop_never_repeats_an_address(void **state)
{
    struct ipam_cidr c = { A("10.2.0.0"), 26 };
    uint32_t used[64];
    size_t n = 0;
    uint32_t a;
    while (ipam_next_free(&c, used, n, &a) == 0) {
        for (size_t i = 0; i < n; i++)
            assert_int_not_equal(used[i], a);
        assert_true(ipam_cidr_contains(&c, a));
        assert_int_not_equal(a, A("10.2.0.1"));
        assert_int_not_equal(a, A("10.2.0.63"));
        used[n++] = a;
    }
    assert_int_equal(n, 61);
}

static void macs_parse_format_and_are_local_unicast(void **state)
{
    uint8_t m[6], m2[6];
    assert_int_equal(ipam_mac_parse("52:54:00:AB:cd:0F", m), 0);
    char t[IPAM_MAC_STRLEN];
    ipam_mac_format(m, t);
    assert_string_equal(t, "52:54:00:ab:cd:0f");
    assert_true(ipam_mac_is_local_unicast(m));
    assert_int_equal(ipam_mac_parse("0a:00:00:00:00:01", m2), 0);
    assert_true(ipam_mac_is_local_unicast(m2));
    assert_int_equal(ipam_mac_parse("00:16:3e:00:00:01", m2), 0);
    assert_false(ipam_mac_is_local_unicast(m2));
    assert_int_equal(ipam_mac_parse("53:54:00:00:00:01", m2), 0);
    assert_false(ipam_mac_is_local_unicast(m2)); /* multicast */
    assert_int_equal(ipam_mac_parse("52:54:00:ab:cd", m2), -EINVAL);
    assert_int_equal(ipam_mac_parse("52-54-00-ab-cd-ef", m2), -EINVAL);
    assert_int_equal(ipam_mac_parse("52:54:00:ab:cd:eg", m2), -EINVAL);
    assert_int_equal(ipam_mac_parse(NULL, m2), -EINVAL);

    uint8_t d1[6], d2[6], d3[6];
    ipam_mac_derive("vm-1/0", 6, d1);
    ipam_mac_derive("vm-1/0", 6, d2);
    ipam_mac_derive("vm-1/1", 6, d3);
    assert_memory_equal(d1, d2, 6);
    assert_memory_not_equal(d1, d3, 6);
    assert_int_equal(d1[0], 0x52);
    assert_int_equal(d1[1], 0x54);
    assert_int_equal(d1[2], 0x00);
}

static void mac_alloc_avoids_used_ones(void **state)
{
    uint8_t used[200][6] = { { 0 } };
    for (size_t n = 0; n < 200; n++) {
        uint8_t m[6];
        assert_int_equal(ipam_mac_alloc((const uint8_t(*)[6])used, n, m), 0);
        assert_true(ipam_mac_is_local_unicast(m));
        for (size_t i = 0; i < n; i++)
            assert_memory_not_equal(used[i], m, 6);
        memcpy(used[n], m, 6);
    }
}

static void port_alloc_honours_want_range_and_never_repeats(void **state)
{
    uint16_t used[16] = { 0 };
    size_t n = 0;
    assert_int_equal(ipam_port_alloc(30000, 30009, used, n, 30005), 30005);
    used[n++] = 30005;
    assert_int_equal(ipam_port_alloc(30000, 30009, used, n, 30005), -EADDRINUSE);
    assert_int_equal(ipam_port_alloc(30000, 30009, used, n, 80), -EADDRINUSE);
    assert_int_equal(ipam_port_alloc(30000, 30009, used, n, 0), 30000);
    for (;;) {
        int p = ipam_port_alloc(30000, 30009, used, n, 0);
        if (p < 0) {
            assert_int_equal(p, -ENOSPC);
            break;
        }
        for (size_t i = 0; i < n; i++)
            assert_int_not_equal(used[i], p);
        assert_true(p >= 30000 && p <= 30009);
        used[n++] = (uint16_t)p;
    }
    assert_int_equal(n, 10);
    assert_int_equal(ipam_port_alloc(10, 5, NULL, 0, 0), -EINVAL);
    assert_int_equal(ipam_port_alloc(0, 5, NULL, 0, 0), -EINVAL);
    assert_int_equal(ipam_port_alloc(65535, 65535, NULL, 0, 0), 65535);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cidr_parse_is_strict_about_host_bits_when_asked),
        cmocka_unit_test(cidr_list_parses_commas_and_refuses_junk),
        cmocka_unit_test(nth_host_skips_network_and_broadcast),
        cmocka_unit_test(next_free_skips_gateway_and_used_and_fills_holes),
        cmocka_unit_test(allocating_in_a_loop_never_repeats_an_address),
        cmocka_unit_test(macs_parse_format_and_are_local_unicast),
        cmocka_unit_test(mac_alloc_avoids_used_ones),
        cmocka_unit_test(port_alloc_honours_want_range_and_never_repeats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
