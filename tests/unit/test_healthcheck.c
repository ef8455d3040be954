/* Unit tests for api/healthcheck.c: defaults, every bound, members of the
 * wrong type of check, hostile paths and payloads, the text syntax and
 * the restart back-off. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/healthcheck.h"

#include <errno.h>
#include <string.h>

static int read_spec(const char *text, struct hc_spec *ret, char **ret_field)
{
    json_auto_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    struct jerr je = { 0 };
    int e = hc_spec_from_json(j, true, ret, &je);
    if (ret_field)
        *ret_field = e < 0 ? xstrdup(je.field) : NULL;
    jerr_clear(&je);
    return e;
}

static void refused(const char *text, const char *field)
{
    struct hc_spec s;
    char *f = NULL;
    assert_int_equal(read_spec(text, &s, &f), -EINVAL);
    assert_non_null(f);
    assert_string_equal(f, field);
    free(f);
}

static void defaults_are_filled_and_written_back(void **state)
{
    (void)state;
    struct hc_spec s;
    assert_int_equal(read_spec("{\"type\":\"http\",\"port\":80}", &s, NULL),
                     0);
    assert_string_equal(s.path, "/");
    assert_int_equal(s.status_min, 200);
    assert_int_equal(s.status_max, 399);
    assert_int_equal(s.interval_s, HC_INTERVAL_DEFAULT_S);
    assert_int_equal(s.timeout_s, HC_TIMEOUT_DEFAULT_S);
    assert_int_equal(s.rise, HC_RISE_DEFAULT);
    assert_int_equal(s.fall, HC_FALL_DEFAULT);
    assert_int_equal(s.action, HC_ACTION_NONE);
    json_auto_t *j = hc_spec_to_json(&s);
    _cleanup_free_ char *t = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(t, "{\"action\":\"none\",\"fall\":3,\"interval_s\":10,"
                           "\"path\":\"/\",\"port\":80,\"restart_after\":3,"
                           "\"rise\":1,\"status_max\":399,\"status_min\":200,"
                           "\"timeout_s\":2,\"type\":\"http\"}");
    hc_spec_clear(&s);
    /* A 1 s interval takes a 1 s timeout by default. */
    assert_int_equal(read_spec("{\"type\":\"tcp\",\"port\":22,\"interval_s\":"
                               "1}", &s, NULL), 0);
    assert_int_equal(s.timeout_s, 1);
    hc_spec_clear(&s);
    /* A UDP payload travels as hex both ways. */
    assert_int_equal(read_spec("{\"type\":\"udp\",\"port\":27015,"
                               "\"payload_hex\":\"FFff00\"}", &s, NULL), 0);
    assert_int_equal(s.payload_len, 3);
    assert_int_equal(s.payload[0], 0xff);
    assert_null(s.expect);
    json_auto_t *u = hc_spec_to_json(&s);
    assert_string_equal(json_string_value(json_object_get(u, "payload_hex")),
                        "ffff00");
    hc_spec_clear(&s);
}

static void every_bound_is_checked(void **state)
{
    (void)state;
    refused("{\"type\":\"tcp\"}", "port");
    refused("{\"type\":\"tcp\",\"port\":0}", "port");
    refused("{\"type\":\"tcp\",\"port\":65536}", "port");
    refused("{\"type\":\"tcp\",\"port\":\"80\"}", "port");
    refused("{\"type\":\"icmp\",\"port\":1}", "type");
    refused("{\"port\":1}", "type");
    refused("{\"type\":\"tcp\",\"port\":1,\"interval_s\":-5}", "interval_s");
    refused("{\"type\":\"tcp\",\"port\":1,\"interval_s\":0}", "interval_s");
    refused("{\"type\":\"tcp\",\"port\":1,\"interval_s\":99999999999}",
            "interval_s");
    refused("{\"type\":\"tcp\",\"port\":1,\"timeout_s\":61}", "timeout_s");
    refused("{\"type\":\"tcp\",\"port\":1,\"interval_s\":2,\"timeout_s\":3}",
            "timeout_s");
    refused("{\"type\":\"tcp\",\"port\":1,\"rise\":0}", "rise");
    refused("{\"type\":\"tcp\",\"port\":1,\"fall\":21}", "fall");
    refused("{\"type\":\"tcp\",\"port\":1,\"restart_after\":101}",
            "restart_after");
    refused("{\"type\":\"tcp\",\"port\":1,\"action\":\"reboot\"}", "action");
    refused("{\"type\":\"tcp\",\"port\":1,\"extra\":1}", "extra");
    refused("{\"type\":\"tcp\",\"port\":1,\"id\":\"x\"}", "id");
    /* Members of another kind of check. */
    refused("{\"type\":\"tcp\",\"port\":1,\"path\":\"/\"}", "path");
    refused("{\"type\":\"http\",\"port\":1,\"payload_hex\":\"00\"}",
            "payload_hex");
    refused("{\"type\":\"tcp\",\"port\":1,\"status_min\":200}", "status_min");
    /* Status ranges. */
    refused("{\"type\":\"http\",\"port\":1,\"status_min\":99}", "status_min");
    refused("{\"type\":\"http\",\"port\":1,\"status_max\":600}",
            "status_max");
    refused("{\"type\":\"http\",\"port\":1,\"status_min\":300,"
            "\"status_max\":200}", "status_max");
}

static void hostile_paths_and_payloads_are_refused(void **state)
{
    (void)state;
    /* Header injection through the path, and anything not a path. */
    refused("{\"type\":\"http\",\"port\":1,\"path\":\"/a\\r\\nHost: x\"}",
            "path");
    refused("{\"type\":\"http\",\"port\":1,\"path\":\"/a\\nb\"}", "path");
    refused("{\"type\":\"http\",\"port\":1,\"path\":\"/a b\"}", "path");
    refused("{\"type\":\"http\",\"port\":1,\"path\":\"healthz\"}", "path");
    refused("{\"type\":\"http\",\"port\":1,\"path\":\"/\\u00e9\"}", "path");
    char big[HC_PATH_MAX + 64];
    snprintf(big, sizeof(big), "{\"type\":\"http\",\"port\":1,\"path\":\"/%0*d"
             "\"}", HC_PATH_MAX, 0);
    refused(big, "path");
    /* Payloads: hex only, even, not empty, bounded. */
    refused("{\"type\":\"udp\",\"port\":1}", "payload_hex");
    refused("{\"type\":\"udp\",\"port\":1,\"payload_hex\":\"\"}",
            "payload_hex");
    refused("{\"type\":\"udp\",\"port\":1,\"payload_hex\":\"abc\"}",
            "payload_hex");
    refused("{\"type\":\"udp\",\"port\":1,\"payload_hex\":\"zz\"}",
            "payload_hex");
    refused("{\"type\":\"udp\",\"port\":1,\"payload_hex\":\"00\","
            "\"expect_hex\":\"0\"}", "expect_hex");
    _cleanup_free_ char *hex = xmalloc(2 * HC_PAYLOAD_MAX + 3);
    memset(hex, 'a', 2 * HC_PAYLOAD_MAX + 2);
    hex[2 * HC_PAYLOAD_MAX + 2] = 0;
    _cleanup_free_ char *j = xasprintf("{\"type\":\"udp\",\"port\":1,"
                                       "\"payload_hex\":\"%s\"}", hex);
    refused(j, "payload_hex");
    hex[2 * HC_PAYLOAD_MAX] = 0; /* exactly the most */
    _cleanup_free_ char *k = xasprintf("{\"type\":\"udp\",\"port\":1,"
                                       "\"payload_hex\":\"%s\"}", hex);
    struct hc_spec s;
    assert_int_equal(read_spec(k, &s, NULL), 0);
    assert_int_equal(s.payload_len, HC_PAYLOAD_MAX);
    hc_spec_clear(&s);
}

static void text_syntax_reads_into_the_api_body(void **state)
{
    (void)state;
    json_t *j = NULL;
    char *why = NULL;
    assert_int_equal(hc_spec_parse_text("80:http:/healthz,status=200-299,"
                                        "interval=5s,timeout=2,fall=2,"
                                        "action=restart,restart-after=4",
                                        &j, &why), 0);
    _cleanup_free_ char *t = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(t, "{\"action\":\"restart\",\"fall\":2,"
                           "\"interval_s\":5,\"path\":\"/healthz\",\"port\":80,"
                           "\"restart_after\":4,\"status_max\":299,"
                           "\"status_min\":200,\"timeout_s\":2,\"type\":"
                           "\"http\"}");
    json_decref(j);
    assert_int_equal(hc_spec_parse_text("27015:udp,send=hi,expect-hex=ff",
                                        &j, &why), 0);
    assert_string_equal(json_string_value(json_object_get(j, "payload_hex")),
                        "6869");
    json_decref(j);
    static const char *const bad[] = {
        "80", "x:tcp", "0:tcp", "70000:tcp", "80:icmp", "22:tcp:/path",
        "80:http,nokey", "80:http,colour=red", "80:http,interval=-1",
        "80:http,status=200-999", "80:http,interval=1x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        why = NULL;
        j = NULL;
        assert_int_equal(hc_spec_parse_text(bad[i], &j, &why), -EINVAL);
        assert_null(j);
        assert_non_null(why);
        free(why);
    }
}

static void restart_backoff_doubles_to_a_cap(void **state)
{
    (void)state;
    struct hc_spec s = { .interval_s = 10, .restart_after = 3 };
    assert_int_equal(hc_restart_grace_s(&s), 30);
    assert_int_equal(hc_restart_backoff_s(&s, 1), 30);
    assert_int_equal(hc_restart_backoff_s(&s, 2), 60);
    assert_int_equal(hc_restart_backoff_s(&s, 3), 120);
    assert_int_equal(hc_restart_backoff_s(&s, 40), HC_RESTART_BACKOFF_MAX_S);
    s = (struct hc_spec){ .interval_s = HC_INTERVAL_MAX_S,
                          .restart_after = HC_RESTART_AFTER_MAX };
    assert_int_equal(hc_restart_backoff_s(&s, 5), HC_RESTART_BACKOFF_MAX_S);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_filled_and_written_back),
        cmocka_unit_test(every_bound_is_checked),
        cmocka_unit_test(hostile_paths_and_payloads_are_refused),
        cmocka_unit_test(text_syntax_reads_into_the_api_body),
        cmocka_unit_test(restart_backoff_doubles_to_a_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
