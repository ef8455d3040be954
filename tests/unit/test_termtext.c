/* common/termtext: a console log view shows the text without terminal
 * escapes, whatever sequences and fragments the guest wrote. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/termtext.h"
#include "common/util.h"

#include <string.h>

static char *strip(const char *s)
{
    return term_strip(s, strlen(s), NULL);
}

static void systemd_colours_are_removed(void **state)
{
    _cleanup_free_ char *t =
        strip("[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mJournal\x1b[0m.\r\n");
    assert_string_equal(t, "[  OK  ] Started Journal.\n");
}

static void titles_cursor_moves_and_charsets_are_removed(void **state)
{
    _cleanup_free_ char *t = strip("\x1b]0;root@web: ~\x07$ \x1b[2J\x1b[H"
                                   "ls\x1b(B\x1b]2;x\x1b\\\x1b" "7done\n");
    assert_string_equal(t, "$ lsdone\n");
}

static void controls_go_and_text_stays(void **state)
{
    size_t n;
    static const char in[] = "a\tb\x07" "c\x7f\x00" "d\xc3\xa9\n";
    _cleanup_free_ char *t = term_strip(in, sizeof(in) - 1, &n);
    assert_string_equal(t, "a\tbcd\xc3\xa9\n");
    assert_int_equal(n, strlen(t));
}

static void unfinished_sequences_at_the_end_are_dropped(void **state)
{
    static const char *const cut[] = { "x\x1b", "x\x1b[", "x\x1b[0;3",
                                       "x\x1b]0;tit", "x\x1b(" };
    for (size_t i = 0; i < ARRAY_SIZE(cut); i++) {
        _cleanup_free_ char *t = strip(cut[i]);
        assert_string_equal(t, "x");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(systemd_colours_are_removed),
        cmocka_unit_test(titles_cursor_moves_and_charsets_are_removed),
        cmocka_unit_test(controls_go_and_text_stays),
        cmocka_unit_test(unfinished_sequences_at_the_end_are_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
