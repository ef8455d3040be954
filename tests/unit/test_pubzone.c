/* Unit tests for the public DNS zone's writer (controller/pubzone.c): the
 * zone's domain is checked before the controller starts, the hosts file
 * holds one "ADDRESS NAME" line per record (IPv4 and IPv6 alike), and
 * hostile values that slip past the store (a newline, a name outside the
 * zone, an address that is not one) are left out. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/util.h"
#include "controller/pubzone.h"

#include <string.h>

static void the_domain_is_a_lower_case_dns_name(void **state)
{
    (void)state;
    assert_true(pubzone_domain_ok("fog.example.org"));
    assert_true(pubzone_domain_ok("a-b.example"));
    static const char *const bad[] = {
        "", "localhost", "fog.example.org.", ".fog.example.org",
        "Fog.Example.org", "fog..example.org", "fog.example.org\n",
        "fog example.org", "-fog.example.org", "10.0.0.1", "fog.example.12",
        "*.example.org", "fog_x.example.org",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        if (pubzone_domain_ok(bad[i]))
            fail_msg("'%s' was taken", bad[i]);
    assert_false(pubzone_domain_ok(NULL));
    /* Room is left for VM.TENANT (two labels of 63) in front. */
    char d[200];
    memset(d, 'a', sizeof(d));
    for (size_t i = 60; i <= 120; i += 60)
        d[i] = '.';
    d[125] = '\0'; /* 125 bytes: the most */
    assert_true(pubzone_domain_ok(d));
    d[125] = 'a';
    d[126] = '\0';
    assert_false(pubzone_domain_ok(d));
}

static void the_file_holds_one_line_per_record(void **state)
{
    (void)state;
    static const struct pubzone_rec r[] = {
        { "web.acme.fog.test", "198.51.100.7" },
        { "game.rival.fog.test", "2001:db8::7" },
    };
    _cleanup_free_ char *t = pubzone_render("fog.test", r, ARRAY_SIZE(r));
    assert_non_null(strstr(t, "\n198.51.100.7 web.acme.fog.test\n"));
    assert_non_null(strstr(t, "\n2001:db8::7 game.rival.fog.test\n"));
    _cleanup_free_ char *empty = pubzone_render("fog.test", NULL, 0);
    assert_null(strstr(empty, "fog.test\n"));
}

static void hostile_values_never_reach_the_file(void **state)
{
    (void)state;
    static const struct pubzone_rec r[] = {
        { "web.acme.fog.test\n203.0.113.66 x.acme.fog.test",
          "198.51.100.7" },
        { "web.acme.fog.test", "198.51.100.7\n203.0.113.66" },
        { "www.example.org", "203.0.113.66" },
        { "evilfog.test", "203.0.113.66" },
        { "fog.test", "203.0.113.66" },
        { "a b.acme.fog.test", "203.0.113.66" },
        { "web.acme.fog.test", "not-an-address" },
        { "web.acme.fog.test", "" },
        { "ok.acme.fog.test", "192.0.2.9" },
    };
    _cleanup_free_ char *t = pubzone_render("fog.test", r, ARRAY_SIZE(r));
    assert_null(strstr(t, "203.0.113.66"));
    assert_null(strstr(t, "198.51.100.7"));
    assert_null(strstr(t, "not-an"));
    assert_non_null(strstr(t, "\n192.0.2.9 ok.acme.fog.test\n"));
    /* Every line but the comments is ADDRESS NAME. */
    size_t lines = 0;
    for (const char *p = t; *p; p = strchr(p, '\n') + 1) {
        if (*p != '#')
            lines++;
        assert_non_null(strchr(p, '\n'));
    }
    assert_int_equal(lines, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_domain_is_a_lower_case_dns_name),
        cmocka_unit_test(the_file_holds_one_line_per_record),
        cmocka_unit_test(hostile_values_never_reach_the_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
