/* Unit tests for images/addrpolicy: the class of IPv4, IPv6 and
 * IPv4-in-IPv6 addresses, the allow-list (ranges, mapped spellings,
 * bad entries), the host's own addresses, and URL literals in the
 * spellings libcurl accepts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "images/addrpolicy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>

/* A socket address from text ("1.2.3.4" or an IPv6 form). */
struct sa {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
    socklen_t len;
};

static struct sa sa_of(const char *text)
{
    struct sa s = { 0 };
    if (inet_pton(AF_INET, text, &s.u.in.sin_addr) == 1) {
        s.u.in.sin_family = AF_INET;
        s.len = sizeof(s.u.in);
    } else if (inet_pton(AF_INET6, text, &s.u.in6.sin6_addr) == 1) {
        s.u.in6.sin6_family = AF_INET6;
        s.len = sizeof(s.u.in6);
    } else {
        fail_msg("bad test address '%s'", text);
    }
    return s;
}

static enum addr_class class_of(const char *text)
{
    struct sa s = sa_of(text);
    return addr_classify(&s.u.sa, s.len);
}

static const struct {
    const char *addr;
    enum addr_class c;
} cases[] = {
    { "0.0.0.0", ADDR_UNSPECIFIED },
    { "0.1.2.3", ADDR_UNSPECIFIED },
    { "127.0.0.1", ADDR_LOOPBACK },
    { "127.255.255.254", ADDR_LOOPBACK },
    { "10.0.0.1", ADDR_PRIVATE },
    { "172.16.0.1", ADDR_PRIVATE },
    { "172.31.255.255", ADDR_PRIVATE },
    { "192.168.1.1", ADDR_PRIVATE },
    { "169.254.169.254", ADDR_LINK_LOCAL },
    { "100.64.0.1", ADDR_CGNAT },
    { "100.127.255.255", ADDR_CGNAT },
    { "100.96.0.1", ADDR_CGNAT },
    { "224.0.0.1", ADDR_MULTICAST },
    { "239.255.255.250", ADDR_MULTICAST },
    { "255.255.255.255", ADDR_BROADCAST },
    { "240.0.0.1", ADDR_RESERVED },
    { "192.0.2.7", ADDR_RESERVED },
    { "198.18.0.1", ADDR_RESERVED },
    /* the edges just outside the ranges are public */
    { "1.1.1.1", ADDR_PUBLIC },
    { "8.8.8.8", ADDR_PUBLIC },
    { "9.255.255.255", ADDR_PUBLIC },
    { "11.0.0.0", ADDR_PUBLIC },
    { "172.15.255.255", ADDR_PUBLIC },
    { "172.32.0.0", ADDR_PUBLIC },
    { "100.63.255.255", ADDR_PUBLIC },
    { "100.128.0.0", ADDR_PUBLIC },
    { "126.255.255.255", ADDR_PUBLIC },
    { "128.0.0.0", ADDR_PUBLIC },
    { "169.253.255.255", ADDR_PUBLIC },
    { "192.167.255.255", ADDR_PUBLIC },
    { "223.255.255.255", ADDR_PUBLIC },
    /* IPv6 */
    { "::", ADDR_UNSPECIFIED },
    { "::1", ADDR_LOOPBACK },
    { "fe80::1", ADDR_LINK_LOCAL },
    { "febf:ffff::1", ADDR_LINK_LOCAL },
    { "fec0::1", ADDR_PRIVATE },
    { "fc00::1", ADDR_UNIQUE_LOCAL },
    { "fd12:3456::1", ADDR_UNIQUE_LOCAL },
    { "ff02::1", ADDR_MULTICAST },
    { "2001:db8::1", ADDR_RESERVED },
    { "100::1", ADDR_RESERVED },
    { "2606:4700::1111", ADDR_PUBLIC },
    { "fbff::1", ADDR_PUBLIC },
    { "fe00::1", ADDR_PUBLIC },
    /* IPv4 inside IPv6: judged by the IPv4 address */
    { "::ffff:127.0.0.1", ADDR_LOOPBACK },
    { "::ffff:10.1.2.3", ADDR_PRIVATE },
    { "::ffff:169.254.169.254", ADDR_LINK_LOCAL },
    { "::ffff:100.64.0.1", ADDR_CGNAT },
    { "::ffff:0.0.0.0", ADDR_UNSPECIFIED },
    { "::ffff:8.8.8.8", ADDR_PUBLIC },
    { "::127.0.0.1", ADDR_LOOPBACK },
    { "64:ff9b::a9fe:a9fe", ADDR_LINK_LOCAL },
    { "64:ff9b::808:808", ADDR_PUBLIC },
    { "2002:7f00:1::", ADDR_LOOPBACK },
    { "2002:c0a8:101::1", ADDR_PRIVATE },
    { "2002:808:808::1", ADDR_PUBLIC },
};

static void every_internal_range_is_classed_and_its_edges_are_public(
    void **state)
{
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        if (class_of(cases[i].addr) != cases[i].c)
            fail_msg("%s: %s, expected %s", cases[i].addr,
                     addr_class_name(class_of(cases[i].addr)),
                     addr_class_name(cases[i].c));
    struct sockaddr_un_like {
        sa_family_t family;
        char path[20];
    } un = { .family = AF_UNIX };
    assert_int_equal(addr_classify((struct sockaddr *)&un, sizeof(un)),
                     ADDR_RESERVED);
    struct sa s = sa_of("8.8.8.8");
    assert_int_equal(addr_classify(&s.u.sa, 4), ADDR_RESERVED); /* short */
}

static bool allowed(const struct addrpolicy *p, const char *text)
{
    struct sa s = sa_of(text);
    return addrpolicy_check(p, &s.u.sa, s.len, NULL) == 0;
}

static void assert_refused_because(const struct addrpolicy *p,
                                   const char *text, const char *want)
{
    struct sa s = sa_of(text);
    char *why = NULL;
    assert_int_equal(addrpolicy_check(p, &s.u.sa, s.len, &why), -EACCES);
    assert_string_equal(why, want);
    free(why);
}

static void default_policy_refuses_every_internal_class_and_says_why(
    void **state)
{
    struct addrpolicy *p;
    assert_int_equal(addrpolicy_new(NULL, &p, NULL), 0);
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        if (allowed(p, cases[i].addr) != (cases[i].c == ADDR_PUBLIC))
            fail_msg("%s: wrongly %s", cases[i].addr,
                     allowed(p, cases[i].addr) ? "allowed" : "refused");
    assert_refused_because(p, "::ffff:127.0.0.1",
                           "127.0.0.1 is a loopback address");
    addrpolicy_free(p);
}

static void allow_list_opens_its_ranges_in_any_spelling(void **state)
{
    struct addrpolicy *p;
    assert_int_equal(addrpolicy_new(" 127.0.0.2/32 , 10.9.0.0/16,fd00:1::/32,"
                                     "::ffff:192.168.7.0/120,,", &p, NULL), 0);
    assert_true(allowed(p, "127.0.0.2"));
    assert_true(allowed(p, "::ffff:127.0.0.2"));
    assert_false(allowed(p, "127.0.0.1"));
    assert_false(allowed(p, "127.0.0.3"));
    assert_true(allowed(p, "10.9.255.1"));
    assert_false(allowed(p, "10.10.0.1"));
    assert_true(allowed(p, "fd00:1:ffff::1"));
    assert_false(allowed(p, "fd00:2::1"));
    assert_true(allowed(p, "192.168.7.9"));
    assert_false(allowed(p, "192.168.8.9"));
    assert_true(allowed(p, "8.8.8.8"));
    addrpolicy_free(p);

    /* host bits in an entry are cleared: the range is meant */
    assert_int_equal(addrpolicy_new("10.1.2.3/24", &p, NULL), 0);
    assert_true(allowed(p, "10.1.2.200"));
    addrpolicy_free(p);
}

static void bad_allow_entries_are_named(void **state)
{
    static const char *const bad[] = {
        "10.0.0.0/33", "fd00::/129", "10.0.0.0/", "10.0.0.0/x", "localhost",
        "10.0.0", "10.0.0.0/8,nope", "1.2.3.4/-1",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct addrpolicy *p = NULL;
        char *why = NULL;
        if (addrpolicy_new(bad[i], &p, &why) != -EINVAL)
            fail_msg("'%s' accepted", bad[i]);
        assert_null(p);
        assert_non_null(strstr(why, "is not an IPv4 or IPv6 address"));
        free(why);
    }
}

static void own_addresses_are_refused_unless_named_exactly(void **state)
{
    struct addrpolicy *p;
    assert_int_equal(addrpolicy_new("203.0.0.0/8", &p, NULL), 0);
    struct sa own = sa_of("203.0.114.5");
    addrpolicy_add_own(p, &own.u.sa, own.len);
    addrpolicy_add_listen(p, "[2606:4700::7]:8443");
    addrpolicy_add_listen(p, "198.51.99.1:8443");
    addrpolicy_add_listen(p, "0.0.0.0:8443");
    addrpolicy_add_listen(p, "controller.example:8443");

    assert_true(allowed(p, "203.0.114.6"));  /* the range opens neighbours */
    assert_false(allowed(p, "203.0.114.5")); /* but not the host itself */
    assert_false(allowed(p, "::ffff:203.0.114.5"));
    assert_false(allowed(p, "2002:cb00:7205::1")); /* 6to4 of it */
    assert_false(allowed(p, "2606:4700::7"));
    assert_false(allowed(p, "198.51.99.1"));
    assert_true(allowed(p, "198.51.99.2"));
    assert_refused_because(p, "198.51.99.1",
                           "198.51.99.1 is an address of this host");
    addrpolicy_free(p);

    /* an entry naming exactly the host's address opens it */
    assert_int_equal(addrpolicy_new("203.0.114.5/32", &p, NULL), 0);
    addrpolicy_add_own(p, &own.u.sa, own.len);
    assert_true(allowed(p, "203.0.114.5"));
    addrpolicy_free(p);
}

static void url_literals_are_judged_in_every_spelling(void **state)
{
    struct addrpolicy *p;
    assert_int_equal(addrpolicy_new("127.0.0.2/32", &p, NULL), 0);
    static const char *const refused[] = {
        "http://127.0.0.1:8080/x",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "https://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]:99/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://user:pw@10.0.0.1/",
        "http://0.0.0.0/",
        "http://[::]/",
    };
    for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
        char *why = NULL;
        if (addrpolicy_check_url(p, refused[i], &why) != -EACCES)
            fail_msg("'%s' not refused", refused[i]);
        free(why);
    }
    static const char *const passed[] = {
        "http://127.0.0.2:8080/disk.img", /* allow-listed */
        "https://8.8.8.8/x",
        "http://[2606:4700::1111]/x",
        "http://localhost/",   /* a name: judged when connecting */
        "https://images.example/disk.qcow2",
    };
    for (size_t i = 0; i < ARRAY_SIZE(passed); i++)
        if (addrpolicy_check_url(p, passed[i], NULL) != 0)
            fail_msg("'%s' refused", passed[i]);
    char *why = NULL;
    assert_int_equal(addrpolicy_check_url(p, "http://[::1/", &why), -EINVAL);
    free(why);
    addrpolicy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            every_internal_range_is_classed_and_its_edges_are_public),
        cmocka_unit_test(
            default_policy_refuses_every_internal_class_and_says_why),
        cmocka_unit_test(allow_list_opens_its_ranges_in_any_spelling),
        cmocka_unit_test(bad_allow_entries_are_named),
        cmocka_unit_test(own_addresses_are_refused_unless_named_exactly),
        cmocka_unit_test(url_literals_are_judged_in_every_spelling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
