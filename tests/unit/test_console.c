/* nodeagent/console: a serial console tail keeps what the guest wrote,
 * terminal escapes included, within its limits once JSON-escaped; the
 * console sessions of a desired document are checked before the agent
 * puts their ids into a URL. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentmsg.h"
#include "common/jsonutil.h"
#include "nodeagent/console.h"

#include <errno.h>
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

/* A desired document with one console session {id, vm_id} and the
 * members in `extra` (",..." or ""). */
static int decode_session_with(const char *id, const char *vm_id,
                               const char *extra, struct jerr *je)
{
    _cleanup_free_ char *text = xasprintf(
        "{\"revision\":1,\"node_id\":\"n1\",\"mesh\":null,\"vms\":[],"
        "\"networks\":[],\"ports\":[],\"peers\":[],\"consoles\":"
        "[{\"id\":\"%s\",\"vm_id\":\"%s\"%s}]}", id, vm_id, extra);
    json_auto_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    struct am_desired d;
    int r = am_desired_decode(j, &d, je);
    if (r == 0) {
        assert_int_equal(d.n_consoles, 1);
        am_desired_clear(&d);
    }
    return r;
}

static int decode_session(const char *id, const char *vm_id, struct jerr *je)
{
    return decode_session_with(id, vm_id, "", je);
}

static void console_sessions_are_checked_before_use(void **state)
{
    static const char vm[] = "6f1c2a5e-8d1b-4c4e-9b7a-0c2d3e4f5a6b";
    struct jerr je = { 0 };
    assert_int_equal(decode_session("b317f2b70a441946149d1478a2afdcb1", vm,
                                    &je), 0);
    static const char *const bad_ids[] = { "", "../status", "ab?cd", "a b" };
    for (size_t i = 0; i < ARRAY_SIZE(bad_ids); i++) {
        if (decode_session(bad_ids[i], vm, &je) != -EINVAL)
            fail_msg("accepted session id '%s'", bad_ids[i]);
        jerr_clear(&je);
    }
    assert_int_equal(decode_session("b317f2b7", "vm/../x", &je), -EINVAL);
    jerr_clear(&je);
    /* A log session asks for 1 byte to CONSOLE_LOG_MAX of the log. */
    assert_int_equal(decode_session_with("b317f2b7", vm, ",\"log_bytes\":"
                                         "1048576", &je), 0);
    static const char *const bad_sizes[] = { "0", "-5", "1048577", "\"9\"",
                                             "1.5" };
    for (size_t i = 0; i < ARRAY_SIZE(bad_sizes); i++) {
        _cleanup_free_ char *m = xasprintf(",\"log_bytes\":%s", bad_sizes[i]);
        if (decode_session_with("b317f2b7", vm, m, &je) != -EINVAL)
            fail_msg("accepted log_bytes %s", bad_sizes[i]);
        jerr_clear(&je);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escapes_are_kept_and_counted_escaped),
        cmocka_unit_test(console_sessions_are_checked_before_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
