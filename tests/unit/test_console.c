/* nodeagent/console: a serial console tail keeps what the guest wrote,
 * terminal escapes included, within its limits once JSON-escaped. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "nodeagent/console.h"

#include <jansson.h>

static void escapes_are_kept_and_counted_escaped(void **state)
{
    static const char line[] = "\x1b[0;32m  OK  \x1b[0m] Started\r\n";
    _cleanup_free_ char *t = console_sanitize(line, sizeof(line) - 1, 4096, 4096);
    assert_string_equal(t, "\x1b[0;32m  OK  \x1b[0m] Started\n");
    /* other controls still become '?' */
    _cleanup_free_ char *u = console_sanitize("a\x07" "b\x7f", 4, 4096, 4096);
    assert_string_equal(u, "a?b?");
    /* the escaped budget counts ESC as the six bytes of \u001b */
    _cleanup_free_ char *v = console_sanitize("x\x1b[m", 4, 8, 4096);
    json_t *j = json_string(v);
    char *esc = json_dumps(j, JSON_ENCODE_ANY);
    assert_true(strlen(esc) - 2 <= 8);
    assert_int_equal(console_escaped_size(v), strlen(esc) - 2);
    assert_string_equal(v, "\x1b[m");
    free(esc);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escapes_are_kept_and_counted_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
