/* Unit tests for common/: names, UUIDs, hex, sizes, buffers, JSON checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"

#include <time.h>

static void name_rule_accepts_only_lowercase_dns_like_names(void **state)
{
    assert_true(name_is_valid("web-1"));
    assert_true(name_is_valid("a"));
    assert_true(name_is_valid("0abc"));
    assert_false(name_is_valid(""));
    assert_false(name_is_valid("-web"));
    assert_false(name_is_valid("web-"));
    assert_false(name_is_valid("-"));
    assert_true(name_is_valid("a-b"));
    assert_false(name_is_valid("Web"));
    assert_false(name_is_valid("a/b"));
    assert_false(name_is_valid(".."));
    assert_false(name_is_valid("a<b"));
    assert_false(name_is_valid("a&b"));
    assert_false(name_is_valid("a'b"));
    assert_false(name_is_valid("a b"));
    char long64[65];
    memset(long64, 'a', 64);
    long64[64] = '\0';
    assert_false(name_is_valid(long64));
    long64[63] = '\0';
    assert_true(name_is_valid(long64));
}

static void uuids_are_v4_and_validated(void **state)
{
    char u[UUID_STR_LEN + 1], v[UUID_STR_LEN + 1];
    uuid_generate_str(u);
    uuid_generate_str(v);
    assert_true(uuid_is_valid(u));
    assert_string_not_equal(u, v);
    assert_int_equal(u[14], '4');
    assert_false(uuid_is_valid("not-a-uuid"));
    assert_false(uuid_is_valid("0123456789abcdef0123456789abcdef0123"));
    assert_false(uuid_is_valid("AAAAAAAA-AAAA-4AAA-8AAA-AAAAAAAAAAAA"));
}

/* Time-ordered ids: valid, version 7, each one above the one before even
 * within one millisecond, and starting with the time. */
static void time_uuids_are_v7_and_sort_in_the_order_made(void **state)
{
    char prev[UUID_STR_LEN + 1] = "", u[UUID_STR_LEN + 1];
    for (int i = 0; i < 10000; i++) {
        uuid_generate_time_str(u);
        assert_true(uuid_is_valid(u));
        assert_int_equal(u[14], '7');
        assert_true(strchr("89ab", u[19]) != NULL);
        assert_true(strcmp(prev, u) < 0);
        memcpy(prev, u, sizeof(u));
    }
    char hex[13];
    memcpy(hex, u, 8);
    memcpy(hex + 8, u + 9, 4);
    hex[12] = '\0';
    long long ms = strtoll(hex, NULL, 16);
    assert_true(llabs(ms - (long long)now_s() * 1000) < 60000);
}

static void hex_round_trips_and_rejects_garbage(void **state)
{
    uint8_t in[4] = { 0, 0x7f, 0x80, 0xff }, out[4];
    char hex[9];
    hex_encode(in, 4, hex);
    assert_string_equal(hex, "007f80ff");
    assert_int_equal(hex_decode(hex, out, 4), 0);
    assert_memory_equal(in, out, 4);
    assert_int_not_equal(hex_decode("007f80fg", out, 4), 0);
    assert_int_not_equal(hex_decode("007f80", out, 4), 0);
}

static void sha256_matches_known_vector(void **state)
{
    char h[65];
    sha256_hex("abc", 3, h);
    assert_string_equal(
        h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void sizes_parse_with_binary_suffixes(void **state)
{
    uint64_t v;
    assert_int_equal(parse_size("512M", 1 << 20, &v), 0);
    assert_int_equal(v, 512);
    assert_int_equal(parse_size("2G", 1 << 20, &v), 0);
    assert_int_equal(v, 2048);
    assert_int_equal(parse_size("10GiB", 1ULL << 30, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(parse_size("1024", 1 << 20, &v), 0);
    assert_int_equal(v, 1024);
    assert_int_not_equal(parse_size("-1G", 1 << 20, &v), 0);
    assert_int_not_equal(parse_size("12X", 1 << 20, &v), 0);
    assert_int_not_equal(parse_size("99999999999999999999T", 1, &v), 0);
}

static void buffers_grow_and_format(void **state)
{
    struct buf b = BUF_INIT;
    for (int i = 0; i < 1000; i++)
        buf_printf(&b, "%d,", i);
    assert_true(b.len > 3000);
    assert_true(startswith(buf_str(&b), "0,1,2,"));
    char *s = buf_steal(&b);
    assert_null(b.data);
    free(s);
}

static const char *const roles[] = { "tenant", "admin", NULL };
static const struct jfield fields[] = {
    { "name", JF_NAME, true, 0, 0, NULL },
    { "n", JF_INT, false, 1, 10, NULL },
    { "role", JF_ENUM, false, 0, 0, roles },
    { "note", JF_STRING, false, 0, 8, NULL },
};

static int check(const char *text, struct jerr *e)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_ALLOW_NUL, &je);
    assert_non_null(j);
    int r = json_check(j, fields, ARRAY_SIZE(fields), e);
    json_decref(j);
    return r;
}

static void json_check_rejects_unknown_wrong_and_missing_fields(void **state)
{
    struct jerr e = { 0 };
    assert_int_equal(check("{\"name\":\"ok\",\"n\":3,\"role\":\"admin\"}", &e), 0);
    assert_int_not_equal(check("{\"name\":\"ok\",\"bogus\":1}", &e), 0);
    assert_string_equal(e.field, "bogus");
    jerr_clear(&e);
    assert_int_not_equal(check("{\"n\":3}", &e), 0);
    assert_string_equal(e.field, "name");
    jerr_clear(&e);
    assert_int_not_equal(check("{\"name\":\"ok\",\"n\":\"3\"}", &e), 0);
    assert_string_equal(e.field, "n");
    jerr_clear(&e);
    assert_int_not_equal(check("{\"name\":\"ok\",\"n\":11}", &e), 0);
    jerr_clear(&e);
    assert_int_not_equal(check("{\"name\":\"a<b\"}", &e), 0);
    jerr_clear(&e);
    assert_int_not_equal(check("{\"name\":\"a\\u0000b\"}", &e), 0);
    jerr_clear(&e);
    assert_int_not_equal(check("{\"name\":\"ok\",\"role\":\"root\"}", &e), 0);
    jerr_clear(&e);
    assert_int_not_equal(check("{\"name\":\"ok\",\"note\":\"123456789\"}", &e), 0);
    jerr_clear(&e);
    assert_int_not_equal(check("[1]", &e), 0);
    jerr_clear(&e);
}

static void rfc3339_round_trips(void **state)
{
    char s[21];
    int64_t t;
    time_format_rfc3339(1764049429, s);
    assert_int_equal(time_parse_rfc3339(s, &t), 0);
    assert_int_equal(t, 1764049429);
    assert_int_not_equal(time_parse_rfc3339("yesterday", &t), 0);
}

static void rfc3339_is(int64_t v)
{
    char got[21], want[21];
    time_t tt = (time_t)v;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%SZ", &tm);
    time_format_rfc3339(v, got);
    assert_string_equal(got, want);
}

/* The arithmetic formatter writes what gmtime_r + strftime write: every
 * day's midnight and last second across leap years, centuries (2000,
 * 2100) and the ends of its range (1970, 9999), and a spread of times. */
static void rfc3339_matches_the_c_library(void **state)
{
    (void)state;
    int64_t last = INT64_C(253402300799); /* 9999-12-31T23:59:59Z */
    for (int64_t t = 0; t < INT64_C(7258118400); t += 86400) { /* to 2200 */
        rfc3339_is(t);
        rfc3339_is(t + 86399);
    }
    for (int64_t t = last - 86400 * 800; t + 86399 <= last; t += 86400) {
        rfc3339_is(t);
        rfc3339_is(t + 86399);
    }
    for (int64_t v = 0; v < INT64_C(4102444800); v += 7777777)
        rfc3339_is(v + v / 7 % 86400);
}

static void json_keys_are_found_by_their_text(void **state)
{
    (void)state;
    /* Unsorted, a duplicate, a member of another type, one without the
     * key, a member that is no object. */
    json_auto_t *arr = json_pack("[{s:s}, {s:s}, {s:i}, {s:s}, {s:s}, {}, "
                                 "s, {s:s}]", "id", "m", "id", "c", "id", 7,
                                 "id", "x", "other", "q", "stray", "id", "c");
    size_t n;
    _cleanup_free_ const char **keys = json_keys_sorted(arr, "id", &n);
    assert_int_equal(n, 4);
    assert_string_equal(keys[0], "c");
    assert_string_equal(keys[3], "x");
    assert_true(json_keys_has(keys, n, "m"));
    assert_true(json_keys_has(keys, n, "c"));
    assert_true(json_keys_has(keys, n, "x"));
    assert_false(json_keys_has(keys, n, "q"));
    assert_false(json_keys_has(keys, n, "stray"));
    assert_false(json_keys_has(keys, n, "7"));
    assert_false(json_keys_has(keys, n, ""));
    assert_false(json_keys_has(keys, n, NULL));
    /* Nothing to look in. */
    json_auto_t *empty = json_array();
    size_t n0 = 1;
    _cleanup_free_ const char **none = json_keys_sorted(empty, "id", &n0);
    assert_int_equal(n0, 0);
    assert_false(json_keys_has(none, n0, "c"));
    _cleanup_free_ const char **nul = json_keys_sorted(NULL, "id", &n0);
    assert_int_equal(n0, 0);
}

/* Records kept in the order of an id they hold: every id put in any
 * order is found, each where the order says, and a missing one is not. */
struct rec {
    int tag;
    char id[8];
};

static void sorted_records_are_found_by_their_id(void **state)
{
    (void)state;
    struct rec *v = NULL;
    size_t n = 0;
    bool found = true;
    assert_int_equal(sorted_at(v, n, sizeof(*v), offsetof(struct rec, id),
                               "m", &found), 0);
    assert_false(found);
    unsigned x = 12345;
    for (int i = 0; i < 200; i++) {
        char id[8];
        x = x * 1103515245u + 12345u;
        snprintf(id, sizeof(id), "%u", (x >> 8) % 1000);
        size_t at = sorted_at(v, n, sizeof(*v), offsetof(struct rec, id), id,
                              &found);
        if (found) {
            assert_string_equal(v[at].id, id);
            continue;
        }
        struct rec *r = sorted_insert(&v, &n, sizeof(*v), at);
        assert_int_equal(r->tag, 0); /* zeroed */
        r->tag = i + 1;
        snprintf(r->id, sizeof(r->id), "%s", id);
    }
    assert_true(n > 100);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(v[i - 1].id, v[i].id) < 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(sorted_at(v, n, sizeof(*v), offsetof(struct rec, id),
                                   v[i].id, &found), i);
        assert_true(found);
    }
    size_t at = sorted_at(v, n, sizeof(*v), offsetof(struct rec, id), "9999",
                          &found);
    assert_false(found);
    assert_int_equal(at, n); /* after "999" and every other */
    at = sorted_at(v, n, sizeof(*v), offsetof(struct rec, id), "", &found);
    assert_false(found);
    assert_int_equal(at, 0);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(name_rule_accepts_only_lowercase_dns_like_names),
        cmocka_unit_test(uuids_are_v4_and_validated),
        cmocka_unit_test(time_uuids_are_v7_and_sort_in_the_order_made),
        cmocka_unit_test(hex_round_trips_and_rejects_garbage),
        cmocka_unit_test(sha256_matches_known_vector),
        cmocka_unit_test(sizes_parse_with_binary_suffixes),
        cmocka_unit_test(buffers_grow_and_format),
        cmocka_unit_test(json_check_rejects_unknown_wrong_and_missing_fields),
        cmocka_unit_test(rfc3339_round_trips),
        cmocka_unit_test(rfc3339_matches_the_c_library),
        cmocka_unit_test(json_keys_are_found_by_their_text),
        cmocka_unit_test(sorted_records_are_found_by_their_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
