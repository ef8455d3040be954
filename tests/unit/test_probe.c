/* The address probe's codec and NAT classification (api/probe.c), the
 * status members that carry the result and the relayed peers' paths
 * (api/agentmsg.c) and the choice of a node's endpoint for its peers
 * (controller/desired.c): packets of every other length, magic, version,
 * type and padding are refused; an answer is never longer than a
 * request; endpoints parse strictly. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentmsg.h"
#include "api/probe.h"
#include "common/jsonutil.h"
#include "controller/desired.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#define ID_A "0b7e3a64-1f4c-4a57-9d2e-6c1b2a3f4d5e"
#define ID_B "9f8e7d6c-5b4a-4392-8170-f1e2d3c4b5a6"

static struct probe_msg request(void)
{
    struct probe_msg m = { .type = PROBE_REQUEST };
    for (int i = 0; i < PROBE_TXID_LEN; i++)
        m.txid[i] = (uint8_t)(i * 7 + 1);
    return m;
}

static void requests_and_answers_round_trip_at_one_size(void **state)
{
    uint8_t q[PROBE_SIZE], a[PROBE_SIZE];
    struct probe_msg m = request(), d;
    assert_int_equal(probe_encode(&m, q), 0);
    assert_memory_equal(q, "FOGP", 4);
    assert_int_equal(probe_decode(q, sizeof(q), &d), 0);
    assert_int_equal(d.type, PROBE_REQUEST);
    assert_memory_equal(d.txid, m.txid, PROBE_TXID_LEN);

    struct probe_msg ans = { .type = PROBE_ANSWER, .responder = 1,
                             .family = AF_INET, .port = 51820 };
    memcpy(ans.txid, m.txid, PROBE_TXID_LEN);
    inet_pton(AF_INET, "203.0.113.7", ans.addr);
    assert_int_equal(probe_encode(&ans, a), 0);
    assert_int_equal(probe_decode(a, sizeof(a), &d), 0);
    assert_int_equal(d.type, PROBE_ANSWER);
    assert_int_equal(d.responder, 1);
    assert_int_equal(d.family, AF_INET);
    assert_int_equal(d.port, 51820);
    assert_memory_equal(d.addr, ans.addr, 4);

    ans.family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::1", ans.addr);
    assert_int_equal(probe_encode(&ans, a), 0);
    assert_int_equal(probe_decode(a, sizeof(a), &d), 0);
    assert_int_equal(d.family, AF_INET6);
    assert_memory_equal(d.addr, ans.addr, 16);

    /* Nothing we cannot send is encoded. */
    ans.responder = PROBE_PORTS;
    assert_int_equal(probe_encode(&ans, a), -EINVAL);
    ans.responder = 0;
    ans.family = AF_UNIX;
    assert_int_equal(probe_encode(&ans, a), -EINVAL);
    struct probe_msg odd = { .type = 9 };
    assert_int_equal(probe_encode(&odd, a), -EINVAL);
}

static void hostile_packets_are_refused(void **state)
{
    uint8_t q[PROBE_SIZE], b[PROBE_SIZE * 4];
    struct probe_msg m = request(), d = { .port = 4242 };
    assert_int_equal(probe_encode(&m, q), 0);

    /* Every other length, including a valid head with a tail. */
    memset(b, 0, sizeof(b));
    memcpy(b, q, sizeof(q));
    for (size_t len = 0; len <= sizeof(b); len++)
        if (len != PROBE_SIZE)
            assert_int_equal(probe_decode(b, len, &d), -EBADMSG);
    assert_int_equal(probe_decode(NULL, PROBE_SIZE, &d), -EBADMSG);

    /* Any single byte changed outside the txid: refused. */
    for (size_t i = 0; i < PROBE_SIZE; i++) {
        if (i >= 8 && i < 8 + PROBE_TXID_LEN)
            continue;
        memcpy(b, q, sizeof(q));
        b[i] ^= 0x01;
        assert_int_equal(probe_decode(b, PROBE_SIZE, &d), -EBADMSG);
    }
    /* Only a successful decode writes its result. */
    assert_int_equal(d.port, 4242);

    /* An answer with junk in its padding or past a v4 address, or of
     * an unknown family or responder. */
    struct probe_msg ans = { .type = PROBE_ANSWER, .family = AF_INET,
                             .port = 1 };
    uint8_t a[PROBE_SIZE];
    assert_int_equal(probe_encode(&ans, a), 0);
    size_t junk[] = { 26, 27, 32, 43, 44, 47 };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        memcpy(b, a, sizeof(a));
        b[junk[i]] = 0xff;
        assert_int_equal(probe_decode(b, PROBE_SIZE, &d), -EBADMSG);
    }
    memcpy(b, a, sizeof(a));
    b[7] = 5; /* family */
    assert_int_equal(probe_decode(b, PROBE_SIZE, &d), -EBADMSG);
    memcpy(b, a, sizeof(a));
    b[6] = PROBE_PORTS; /* responder */
    assert_int_equal(probe_decode(b, PROBE_SIZE, &d), -EBADMSG);
}

static struct probe_ep ep(const char *text)
{
    struct probe_ep e = { 0 };
    if (text)
        assert_int_equal(probe_ep_parse(text, &e), 0);
    return e;
}

static void nat_classes_follow_rfc4787(void **state)
{
    struct probe_ep local = ep("10.0.0.2:51820");
    struct probe_ep none[2] = { ep("10.0.0.2:51820"), ep("10.0.0.2:51820") };
    struct probe_ep eim[2] = { ep("192.0.2.1:51820"), ep("192.0.2.1:51820") };
    struct probe_ep edm[2] = { ep("192.0.2.1:40001"), ep("192.0.2.1:40002") };
    struct probe_ep silent[2] = { { 0 }, { 0 } };
    struct probe_ep one[2] = { ep("192.0.2.1:51820"), { 0 } };
    struct probe_ep own_only[2] = { { 0 }, ep("10.0.0.2:51820") };
    assert_int_equal(probe_classify(&local, none), PROBE_NAT_NONE);
    assert_int_equal(probe_classify(&local, eim), PROBE_NAT_INDEPENDENT);
    assert_int_equal(probe_classify(&local, edm), PROBE_NAT_DEPENDENT);
    assert_int_equal(probe_classify(&local, silent), PROBE_NAT_UNKNOWN);
    assert_int_equal(probe_classify(&local, one), PROBE_NAT_UNKNOWN);
    assert_int_equal(probe_classify(&local, own_only), PROBE_NAT_NONE);
    /* Same port, another address: still a NAT. */
    struct probe_ep moved[2] = { ep("192.0.2.1:51820"), ep("192.0.2.2:51820") };
    assert_int_equal(probe_classify(&local, moved), PROBE_NAT_DEPENDENT);

    for (int i = 0; i < PROBE_NAT_MAX; i++) {
        enum probe_nat n;
        assert_int_equal(probe_nat_parse(probe_nat_name(i), &n), 0);
        assert_int_equal(n, i);
    }
    enum probe_nat n = PROBE_NAT_NONE;
    assert_int_equal(probe_nat_parse("symmetric", &n), -EINVAL);
    assert_int_equal(probe_nat_parse(NULL, &n), -EINVAL);
    assert_int_equal(n, PROBE_NAT_NONE);
}

static void endpoints_parse_strictly_and_format_back(void **state)
{
    static const char *const good[] = { "192.0.2.1:1", "192.0.2.1:65535",
                                        "[2001:db8::1]:51820" };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct probe_ep e = ep(good[i]);
        char out[PROBE_EP_TEXT_MAX];
        assert_int_equal(probe_ep_format(&e, out), 0);
        assert_string_equal(out, good[i]);
    }
    static const char *const bad[] = {
        "", ":", "192.0.2.1", "192.0.2.1:", "192.0.2.1:0", "192.0.2.1:65536",
        "192.0.2.1:051820", "192.0.2.1:+1", "192.0.2.1:1 ", "192.0.2.1:1x",
        "host.example:51820", "2001:db8::1:51820", "[2001:db8::1]51820",
        "[192.0.2.1]:1", "[2001:db8::1:1", "192.0.2.256:1",
        "[1111:2222:3333:4444:5555:6666:7777:8888:9999]:1",
        "192.0.2.1:99999999999999999999" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct probe_ep e = { .port = 7 };
        if (probe_ep_parse(bad[i], &e) != -EINVAL)
            fail_msg("'%s' parsed", bad[i]);
        assert_int_equal(e.port, 7);
    }
    struct probe_ep none = { 0 };
    char out[PROBE_EP_TEXT_MAX];
    assert_int_equal(probe_ep_format(&none, out), -EINVAL);
}

static int decode_status(const char *text, struct am_status *ret)
{
    json_auto_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    struct jerr err = { 0 };
    int r = am_status_decode(j, ret, &err);
    jerr_clear(&err);
    return r;
}

static void the_status_member_is_typed_and_bounded(void **state)
{
    struct am_status s = { 0 };
    assert_int_equal(decode_status("{\"reachability\": {\"nat\": "
                                   "\"endpoint-dependent\", "
                                   "\"mapped_endpoint\": \"192.0.2.1:4000\"}}",
                                   &s), 0);
    assert_true(s.has_reach);
    assert_string_equal(s.nat, "endpoint-dependent");
    assert_string_equal(s.mapped_endpoint, "192.0.2.1:4000");
    json_auto_t *back = am_status_encode(&s);
    json_t *r = json_object_get(back, AGENT_REACH);
    assert_string_equal(json_str(r, "nat"), "endpoint-dependent");
    assert_string_equal(json_str(r, "mapped_endpoint"), "192.0.2.1:4000");
    am_status_clear(&s);

    assert_int_equal(decode_status("{\"reachability\": {\"nat\": "
                                   "\"unknown\"}}", &s), 0);
    assert_null(s.mapped_endpoint);
    am_status_clear(&s);

    static const char *const bad[] = {
        "{\"reachability\": {}}",
        "{\"reachability\": {\"nat\": \"symmetric\"}}",
        "{\"reachability\": {\"nat\": \"none\"}}",
        "{\"reachability\": {\"nat\": \"none\", \"mapped_endpoint\": "
        "\"192.0.2.1\"}}",
        "{\"reachability\": {\"nat\": \"none\", \"mapped_endpoint\": "
        "\"192.0.2.1:1\", \"relay\": true}}",
        "{\"reachability\": {\"nat\": 1}}",
        "{\"reachability\": \"none\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct am_status x = { 0 };
        if (decode_status(bad[i], &x) != -EINVAL)
            fail_msg("accepted: %s", bad[i]);
        assert_false(x.has_reach);
    }
}

static char *peer_ep(const char *row_text)
{
    json_auto_t *row = json_loads(row_text, 0, NULL);
    assert_non_null(row);
    return desired_peer_endpoint(row);
}

static void peers_get_the_mapping_where_it_holds(void **state)
{
    static const struct {
        const char *row, *want;
    } cases[] = {
        /* One mapping for every destination: it wins over a configured
         * endpoint. */
        { "{\"nat_class\": \"endpoint-independent\", \"mapped_endpoint\": "
          "\"192.0.2.1:51820\", \"endpoint\": \"10.0.0.2:51820\", "
          "\"observed_endpoint\": \"192.0.2.1\", \"wg_port\": 51820}",
          "192.0.2.1:51820" },
        { "{\"nat_class\": \"none\", \"mapped_endpoint\": \"192.0.2.5:51820\"}",
          "192.0.2.5:51820" },
        /* A mapping per destination: a configured port forward wins. */
        { "{\"nat_class\": \"endpoint-dependent\", \"mapped_endpoint\": "
          "\"192.0.2.1:40001\", \"endpoint\": \"192.0.2.1:51820\"}",
          "192.0.2.1:51820" },
        { "{\"nat_class\": \"endpoint-dependent\", \"mapped_endpoint\": "
          "\"192.0.2.1:40001\", \"observed_endpoint\": \"192.0.2.1\", "
          "\"wg_port\": 51820}", "192.0.2.1:40001" },
        /* No probe: as before it. */
        { "{\"observed_endpoint\": \"192.0.2.9\", \"wg_port\": 51999}",
          "192.0.2.9:51999" },
        /* A stored mapping that is no endpoint is ignored. */
        { "{\"nat_class\": \"none\", \"mapped_endpoint\": \"junk\", "
          "\"observed_endpoint\": \"192.0.2.9\", \"wg_port\": 51820}",
          "192.0.2.9:51820" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        _cleanup_free_ char *got = peer_ep(cases[i].row);
        assert_non_null(got);
        assert_string_equal(got, cases[i].want);
    }
    char *none = peer_ep("{}");
    assert_null(none);
}

/* A node's report of its relayed peers' paths: UUIDs, the three paths,
 * a time; round trip; anything else refused whole. */
static void mesh_paths_in_status_are_typed_and_bounded(void **state)
{
    (void)state;
    struct am_status s = { 0 };
    assert_int_equal(decode_status("{\"mesh_paths\": [{\"node_id\": \"" ID_A "\", "
                               "\"path\": \"direct\", \"since\": 1700000000}, "
                               "{\"node_id\": \"" ID_B "\", \"path\": "
                               "\"relay-tcp\", \"since\": 0}]}", &s), 0);
    assert_true(s.has_mesh_paths);
    assert_int_equal(s.n_mesh_paths, 2);
    assert_string_equal(s.mesh_paths[0].node_id, ID_A);
    assert_string_equal(s.mesh_paths[0].path, AGENT_MESH_PATH_DIRECT);
    assert_int_equal(s.mesh_paths[0].since, 1700000000);
    json_auto_t *back = am_status_encode(&s);
    json_t *a = json_object_get(back, AGENT_MESH_PATHS);
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(json_str(json_array_get(a, 1), "path"), "relay-tcp");
    am_status_clear(&s);
    /* An empty list says "none relayed"; no member says nothing. */
    assert_int_equal(decode_status("{\"mesh_paths\": []}", &s), 0);
    assert_true(s.has_mesh_paths);
    assert_int_equal(s.n_mesh_paths, 0);
    am_status_clear(&s);
    assert_int_equal(decode_status("{}", &s), 0);
    assert_false(s.has_mesh_paths);
    am_status_clear(&s);
    static const char *const bad[] = {
        "{\"mesh_paths\": {}}",
        "{\"mesh_paths\": [1]}",
        "{\"mesh_paths\": [{\"node_id\": \"x\", \"path\": \"direct\", "
        "\"since\": 1}]}",
        "{\"mesh_paths\": [{\"node_id\": \"../etc\", \"path\": \"direct\", "
        "\"since\": 1}]}",
        "{\"mesh_paths\": [{\"node_id\": \"" ID_A "\", \"path\": \"relay\", "
        "\"since\": 1}]}",
        "{\"mesh_paths\": [{\"node_id\": \"" ID_A "\", \"path\": \"direct\", "
        "\"since\": -1}]}",
        "{\"mesh_paths\": [{\"node_id\": \"" ID_A "\", \"path\": \"direct\"}]}",
        "{\"mesh_paths\": [{\"node_id\": \"" ID_A "\", \"path\": \"direct\", "
        "\"since\": 1, \"extra\": 1}]}",
        "{\"mesh_paths\": [{\"node_id\": \"" ID_A "\", \"path\": \"direct\", "
        "\"since\": 1}, {\"node_id\": \"" ID_A "\", \"path\": \"relay-udp\", "
        "\"since\": 1}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(decode_status(bad[i], &s), -EINVAL);
        assert_false(s.has_mesh_paths);
    }
    /* Past AGENT_MESH_PATHS_MAX entries. */
    json_auto_t *big = json_object();
    json_t *arr = json_array();
    for (int i = 0; i <= AGENT_MESH_PATHS_MAX; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:i}", "node_id",
                                             ID_A, "path", "direct", "since",
                                             1));
    json_object_set_new(big, AGENT_MESH_PATHS, arr);
    struct jerr err = { 0 };
    assert_int_equal(am_status_decode(big, &s, &err), -EINVAL);
    jerr_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(requests_and_answers_round_trip_at_one_size),
        cmocka_unit_test(hostile_packets_are_refused),
        cmocka_unit_test(nat_classes_follow_rfc4787),
        cmocka_unit_test(endpoints_parse_strictly_and_format_back),
        cmocka_unit_test(the_status_member_is_typed_and_bounded),
        cmocka_unit_test(mesh_paths_in_status_are_typed_and_bounded),
        cmocka_unit_test(peers_get_the_mapping_where_it_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
