/* Availability windows as pure functions: parsing (bad input refused with
 * the offending token), canonical text, and matching across the week with
 * overnight windows that wrap into the next day (and from Sunday into
 * Monday), at a fixed offset from UTC. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "controller/availwin.h"
#include "tests/testutil.h"

#include <errno.h>
#include <stdlib.h>

/* 2026-11-30 was a Monday; unix time of DAY (0 = that Monday) at HH:MM UTC. */
#define MON0 1795996800
static int64_t at(int day, int h, int m)
{
    return MON0 + (int64_t)day * 86400 + h * 3600 + m * 60;
}

static struct availwin parsed(const char *text)
{
    struct availwin w;
    char *badtok = NULL;
    if (availwin_parse(text, &w, &badtok) < 0)
        fail_msg("'%s' refused at '%s'", text, badtok);
    return w;
}

static void refused_at(const char *text, const char *tok)
{
    struct availwin w;
    char *badtok = NULL;
    assert_int_equal(availwin_parse(text, &w, &badtok), -EINVAL);
    assert_non_null(badtok);
    assert_string_equal(badtok, tok);
    free(badtok);
}

static void bad_windows_are_refused_with_the_token(void **state)
{
    refused_at("mon-fry 19:00-07:00", "mon-fry");
    refused_at("mon,xyz 10:00-11:00", "xyz");
    refused_at("mon 25:00-07:00", "25:00");
    refused_at("mon 19:00-07:60", "07:60");
    refused_at("mon 19:00", "19:00");
    refused_at("mon 10:00-10:00", "10:00");
    refused_at("mon 24:00-10:00", "24:00");
    refused_at("19:00-07:00", "19:00-07:00");
    refused_at("mon 9:00-10:00", "9:00");
    refused_at("", "");
    int tz;
    assert_int_equal(availwin_tz_parse("Europe/Paris", &tz), -EINVAL);
    assert_int_equal(availwin_tz_parse("+15:00", &tz), -EINVAL);
    assert_int_equal(availwin_tz_parse("+05:30", &tz), 0);
    assert_int_equal(tz, 330);
    assert_int_equal(availwin_tz_parse("UTC", &tz), 0);
    assert_int_equal(tz, 0);
}

static void windows_have_one_canonical_text(void **state)
{
    static const char *const cases[][2] = {
        { "mon-fri 19:00-07:00", "mon-fri 19:00-07:00" },
        { "SAT-SUN 00:00-24:00", "sat-sun 00:00-24:00" },
        { "fri-mon 08:00-09:30", "fri-mon 08:00-09:30" },
        { "mon,wed,fri 08:00-09:00", "mon,wed,fri 08:00-09:00" },
        { "mon-sun 00:00-24:00", "daily 00:00-24:00" },
        { "tue,mon 01:00-02:00", "mon-tue 01:00-02:00" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct availwin w = parsed(cases[i][0]);
        char *t = availwin_format(&w);
        assert_string_equal(t, cases[i][1]);
        struct availwin again = parsed(t);
        assert_int_equal(w.days, again.days);
        assert_int_equal(w.start, again.start);
        assert_int_equal(w.end, again.end);
        free(t);
    }
    char *tz = availwin_tz_format(-90);
    assert_string_equal(tz, "-01:30");
    free(tz);
}

static void overnight_windows_wrap_into_the_next_day(void **state)
{
    struct availwin w[2] = { parsed("mon-fri 19:00-07:00"),
                             parsed("sat-sun 00:00-24:00") };
    /* Monday: closed before 19:00 (Sunday's window ended at midnight). */
    assert_false(availwin_open(w, 1, at(0, 3, 0), 0));
    assert_false(availwin_open(w, 1, at(0, 18, 59), 0));
    assert_true(availwin_open(w, 1, at(0, 19, 0), 0));
    /* Tuesday morning: Monday's window still open until 07:00. */
    assert_true(availwin_open(w, 1, at(1, 6, 59), 0));
    assert_false(availwin_open(w, 1, at(1, 7, 0), 0));
    assert_false(availwin_open(w, 1, at(1, 12, 0), 0));
    /* Saturday morning: Friday's window wraps in; at noon, only the
     * weekend window opens it. */
    assert_true(availwin_open(w, 1, at(5, 6, 0), 0));
    assert_false(availwin_open(w, 1, at(5, 12, 0), 0));
    assert_true(availwin_open(w, 2, at(5, 12, 0), 0));
    assert_true(availwin_open(w, 2, at(6, 23, 59), 0));
    /* No windows: always open. */
    assert_true(availwin_open(w, 0, at(1, 12, 0), 0));
    /* Sunday night into Monday. */
    struct availwin s = parsed("sun 22:00-02:00");
    assert_true(availwin_open(&s, 1, at(7, 1, 0), 0));
    assert_false(availwin_open(&s, 1, at(7, 2, 0), 0));
    assert_false(availwin_open(&s, 1, at(6, 21, 0), 0));
}

static void the_offset_moves_the_window(void **state)
{
    struct availwin w = parsed("mon 09:00-17:00");
    /* 08:00 UTC on Monday is 09:30 at +01:30: open there, closed at UTC. */
    assert_false(availwin_open(&w, 1, at(0, 8, 0), 0));
    assert_true(availwin_open(&w, 1, at(0, 8, 0), 90));
    /* 23:00 UTC on Sunday is Monday 09:00 at +10:00. */
    assert_true(availwin_open(&w, 1, at(-1, 23, 0), 600));
    assert_false(availwin_open(&w, 1, at(-1, 22, 59), 600));
}

static void stored_lists_parse_back(void **state)
{
    struct availwin w[AVAILWIN_MAX];
    size_t n = 99;
    assert_int_equal(availwin_list_parse(NULL, w, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(availwin_list_parse("mon-fri 19:00-07:00; daily "
                                         "12:00-13:00", w, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(w[1].days, 0x7f);
    assert_int_equal(availwin_list_parse("mon-fri 19:00", w, &n), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_windows_are_refused_with_the_token),
        cmocka_unit_test(windows_have_one_canonical_text),
        cmocka_unit_test(overnight_windows_wrap_into_the_next_day),
        cmocka_unit_test(the_offset_moves_the_window),
        cmocka_unit_test(stored_lists_parse_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
