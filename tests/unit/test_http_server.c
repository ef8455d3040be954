/* Unit tests for api/http_server's Range parsing: one range, digits only,
 * no 64-bit overflow turning a hostile header into the whole file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/http_server.h"

#include <stdint.h>

#define SIZE UINT64_C(1000)

static int range(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
    *off = *len = UINT64_C(0xdead);
    return http_parse_range(h, size, off, len);
}

static void satisfiable_ranges_give_their_span(void **state)
{
    uint64_t off, len;
    assert_int_equal(range(NULL, SIZE, &off, &len), 1);
    assert_int_equal(range("bytes=0-0", SIZE, &off, &len), 0);
    assert_true(off == 0 && len == 1);
    assert_int_equal(range("bytes=10-19", SIZE, &off, &len), 0);
    assert_true(off == 10 && len == 10);
    assert_int_equal(range("bytes=990-", SIZE, &off, &len), 0);
    assert_true(off == 990 && len == 10);
    /* An end past the file is cut to it (RFC 9110 14.1.2). */
    assert_int_equal(range("bytes=990-5000", SIZE, &off, &len), 0);
    assert_true(off == 990 && len == 10);
    assert_int_equal(range("bytes=-10", SIZE, &off, &len), 0);
    assert_true(off == 990 && len == 10);
    /* A suffix longer than the file is the whole file, as long as the
     * number itself fits. */
    assert_int_equal(range("bytes=-18446744073709551615", SIZE, &off, &len), 0);
    assert_true(off == 0 && len == SIZE);
    assert_int_equal(range("bytes=999-18446744073709551615", SIZE, &off, &len),
                     0);
    assert_true(off == 999 && len == 1);
}

static void overflowing_and_hostile_ranges_are_unsatisfiable(void **state)
{
    static const char *const bad[] = {
        /* 2^64 and beyond: strtoull saturated these to the whole file. */
        "bytes=-18446744073709551616",
        "bytes=-99999999999999999999999999999",
        "bytes=18446744073709551616-",
        "bytes=0-18446744073709551616",
        "bytes=18446744073709551616-18446744073709551617",
        /* signs and blanks strtoull would have taken */
        "bytes=--5", "bytes=-+5", "bytes=+0-5", "bytes=0--5", "bytes=0-+5",
        "bytes= 0-5", "bytes=0- 5", "bytes=0-5 ", "bytes=-0x10",
        /* shapes */
        "bytes=", "bytes=-", "bytes=-0", "bytes=5", "bytes=5-4",
        "bytes=1000-", "bytes=1000-1001", "bytes=0-1,3-4", "bytes=-5,-3",
        "bits=0-5", "BYTES=0-5", "bytes=a-b", "bytes=0-5x",
    };
    uint64_t off, len;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = range(bad[i], SIZE, &off, &len);
        if (r != -1)
            fail_msg("'%s' gave %d (off %llu len %llu), want -1", bad[i], r,
                     (unsigned long long)off, (unsigned long long)len);
    }
    /* Nothing of an empty file can be served. */
    assert_int_equal(range("bytes=0-", 0, &off, &len), -1);
    assert_int_equal(range("bytes=-1", 0, &off, &len), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(satisfiable_ranges_give_their_span),
        cmocka_unit_test(overflowing_and_hostile_ranges_are_unsatisfiable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
