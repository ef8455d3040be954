/* common/jsonw: answers written straight into text are valid JSON that
 * parses back to what was written, whatever bytes the strings hold, and
 * stored JSON text is copied only when it is one valid value. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonw.h"

#include <errno.h>
#include <string.h>

static json_t *parse(const struct jsonw *w)
{
    json_error_t e;
    json_t *j = json_loadb(w->b.data, w->b.len, JSON_DECODE_ANY, &e);
    if (!j)
        fail_msg("not JSON (%s): %s", e.text, buf_str(&w->b));
    return j;
}

static void nested_objects_and_arrays_get_their_commas(void **state)
{
    struct jsonw w = JSONW_INIT;
    jsonw_obj_begin(&w);
    jsonw_key(&w, "a");
    jsonw_int(&w, -9223372036854775807LL - 1);
    jsonw_key(&w, "b");
    jsonw_arr_begin(&w);
    jsonw_bool(&w, true);
    jsonw_null(&w);
    jsonw_obj_begin(&w);
    jsonw_obj_end(&w);
    jsonw_arr_begin(&w);
    jsonw_arr_end(&w);
    jsonw_str(&w, NULL);
    jsonw_arr_end(&w);
    jsonw_key(&w, "c");
    jsonw_bool(&w, false);
    jsonw_obj_end(&w);
    assert_string_equal(buf_str(&w.b), "{\"a\":-9223372036854775808,\"b\":"
                                       "[true,null,{},[],null],\"c\":false}");
    buf_free(&w.b);
}

static void strings_round_trip_through_a_parser(void **state)
{
    /* Quotes, backslashes, every control, '/', multi-byte UTF-8. */
    char s[64];
    size_t n = 0;
    for (int c = 1; c < 0x20; c++)
        s[n++] = (char)c;
    static const char tail[] = "\"\\/\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    memcpy(s + n, tail, sizeof(tail) - 1);
    n += sizeof(tail) - 1;
    s[n] = '\0';
    struct jsonw w = JSONW_INIT;
    jsonw_obj_begin(&w);
    jsonw_key(&w, s); /* a member's name is escaped the same way */
    jsonw_str(&w, s);
    jsonw_obj_end(&w);
    json_auto_t *j = parse(&w);
    assert_string_equal(json_string_value(json_object_get(j, s)), s);
    buf_free(&w.b);
}

/* Strings are checked eight bytes at a time: a byte that needs an escape
 * is caught at every place in and after the first eight, and a string
 * without one is copied as it is. */
static void each_byte_is_escaped_wherever_it_stands(void **state)
{
    (void)state;
    for (int c = 0; c < 0x80; c++)
        for (size_t at = 0; at < 19; at++) {
            char s[20] = "abcdefghijklmnopqrs";
            s[at] = (char)c;
            struct jsonw w = JSONW_INIT;
            jsonw_strn(&w, s, 19);
            bool plain = c >= 0x20 && c != '"' && c != '\\';
            if (plain) {
                assert_int_equal(w.b.len, 21);
                assert_memory_equal(w.b.data + 1, s, 19);
            }
            json_error_t e;
            json_auto_t *j = json_loadb(w.b.data, w.b.len,
                                        JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
            assert_non_null(j);
            assert_int_equal(json_string_length(j), 19);
            assert_memory_equal(json_string_value(j), s, 19);
            buf_free(&w.b);
        }
}

static void bytes_that_are_not_utf8_become_the_replacement_character(void **state)
{
    /* A lone continuation byte, an overlong '/', a surrogate, a cut
     * sequence at the end. */
    static const char in[] = "a\x80" "b\xc0\xaf" "c\xed\xa0\x80" "d\xe2\x82";
    struct jsonw w = JSONW_INIT;
    jsonw_strn(&w, in, sizeof(in) - 1);
    json_auto_t *j = parse(&w);
    const char *out = json_string_value(j);
    assert_non_null(out);
    assert_null(strchr(out, '\x80'));
    assert_int_equal(out[0], 'a');
    assert_memory_equal(out + 1, "\xef\xbf\xbd" "b", 4);
    buf_free(&w.b);
}

static void jansson_values_are_written_as_they_are(void **state)
{
    json_auto_t *v = json_pack("{s:[i,s,n], s:b}", "x", 1, "y\"", "z", 1);
    struct jsonw w = JSONW_INIT;
    jsonw_arr_begin(&w);
    jsonw_json(&w, v);
    jsonw_json(&w, NULL);
    jsonw_arr_end(&w);
    json_auto_t *j = parse(&w);
    assert_true(json_equal(json_array_get(j, 0), v));
    assert_true(json_is_null(json_array_get(j, 1)));
    buf_free(&w.b);
}

static void only_valid_json_text_of_the_asked_type_is_copied(void **state)
{
    static const char *const good[] = {
        "[]", " [ \"10.0.0.2\" , \"a\\u00e9\\n\" ] ", "[1,-2.5e+3,0,true,null]",
        "[[],{}]", "{\"a\":{\"b\":[1]}}",
    };
    static const char *const bad[] = {
        "", "[", "[1,]", "[01]", "[1] [2]", "[\"a]", "[\"\\x\"]",
        "[\"\\u12g4\"]", "[\"tab\there\"]", "{\"a\"}", "{1:2}", "[tru]",
        "[1.]", "[-]", "[\"\xc3\"]", "]", "{\"a\":1,}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        assert_true(json_text_valid(good[i], strlen(good[i])));
        struct jsonw w = JSONW_INIT;
        char open = strchr(good[i], '[') &&
                    (!strchr(good[i], '{') ||
                     strchr(good[i], '[') < strchr(good[i], '{')) ? '[' : '{';
        assert_int_equal(jsonw_text(&w, good[i], strlen(good[i]), open), 0);
        assert_string_equal(buf_str(&w.b), good[i]);
        json_decref(parse(&w));
        buf_free(&w.b);
    }
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        if (json_text_valid(bad[i], strlen(bad[i])))
            fail_msg("accepted '%s'", bad[i]);
        struct jsonw w = JSONW_INIT;
        assert_int_equal(jsonw_text(&w, bad[i], strlen(bad[i]), '['), -EINVAL);
        assert_int_equal(w.b.len, 0);
    }
    /* Valid, but not of the type the column holds. */
    struct jsonw w = JSONW_INIT;
    assert_int_equal(jsonw_text(&w, "{}", 2, '['), -EINVAL);
    assert_int_equal(jsonw_text(&w, "\"[]\"", 4, '['), -EINVAL);
    assert_int_equal(w.b.len, 0);
    /* Nesting deeper than 64 is refused, not recursed into. */
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    assert_false(json_text_valid(deep, sizeof(deep)));
    assert_true(json_text_valid(deep + 40, 120));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nested_objects_and_arrays_get_their_commas),
        cmocka_unit_test(strings_round_trip_through_a_parser),
        cmocka_unit_test(each_byte_is_escaped_wherever_it_stands),
        cmocka_unit_test(bytes_that_are_not_utf8_become_the_replacement_character),
        cmocka_unit_test(jansson_values_are_written_as_they_are),
        cmocka_unit_test(only_valid_json_text_of_the_asked_type_is_copied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
