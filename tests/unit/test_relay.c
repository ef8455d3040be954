/* The relay's frame codec, tokens and path rule (api/relay.c) and the
 * peer path in the desired document (api/agentmsg.c): every other magic,
 * version, type, reserved byte and length is refused; data frames keep
 * their payload byte for byte; a token is good only for its node, its
 * hub's secret and until it expires; only pairs that cannot reach each
 * other directly are relayed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentmsg.h"
#include "api/relay.h"
#include "common/jsonutil.h"
#include "controller/app.h"
#include "controller/desired.h"

#include <errno.h>
#include <string.h>

#define ID_A "0b7e3a64-1f4c-4a57-9d2e-6c1b2a3f4d5e"
#define ID_B "9f8e7d6c-5b4a-4392-8170-f1e2d3c4b5a6"

static void ids_parse_strictly_and_round_trip(void **state)
{
    (void)state;
    uint8_t id[RELAY_ID_LEN];
    char back[37];
    assert_int_equal(relay_id_parse(ID_A, id), 0);
    relay_id_format(id, back);
    assert_string_equal(back, ID_A);
    static const char *const bad[] = {
        "", "0b7e3a64-1f4c-4a57-9d2e-6c1b2a3f4d5", /* short */
        "0b7e3a64-1f4c-4a57-9d2e-6c1b2a3f4d5e0", /* long */
        "0B7E3A64-1F4C-4A57-9D2E-6C1B2A3F4D5E", /* upper case */
        "0b7e3a64x1f4c-4a57-9d2e-6c1b2a3f4d5e", /* separator */
        "0b7e3a64-1f4c-4a57-9d2e-6c1b2a3f4d5g", /* not hex */
        "0b7e3a641f4c-4a57-9d2e-6c1b2a3f4d5e-", /* dash moved */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(relay_id_parse(bad[i], id), -EINVAL);
    assert_int_equal(relay_id_parse(NULL, id), -EINVAL);
}

static void frames_round_trip(void **state)
{
    (void)state;
    uint8_t out[RELAY_FRAME_MAX], payload[RELAY_PAYLOAD_MAX];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 13);
    struct relay_frame f = { .type = RELAY_HELLO }, g;
    assert_int_equal(relay_id_parse(ID_A, f.id), 0);
    memset(f.token, 0x5a, sizeof(f.token));
    size_t len;
    assert_int_equal(relay_encode(&f, out, sizeof(out), &len), 0);
    assert_int_equal(len, RELAY_HELLO_LEN);
    assert_int_equal(relay_decode(out, len, &g), 0);
    assert_int_equal(g.type, RELAY_HELLO);
    assert_memory_equal(g.id, f.id, RELAY_ID_LEN);
    assert_memory_equal(g.token, f.token, RELAY_TOKEN_LEN);

    size_t sizes[] = { 1, 32, 148, 1452, RELAY_PAYLOAD_MAX };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        f = (struct relay_frame){ .type = RELAY_DATA, .payload = payload,
                                  .payload_len = sizes[i] };
        assert_int_equal(relay_id_parse(ID_B, f.id), 0);
        assert_int_equal(relay_encode(&f, out, sizeof(out), &len), 0);
        assert_int_equal(len, RELAY_HDR_LEN + RELAY_ID_LEN + sizes[i]);
        assert_int_equal(relay_decode(out, len, &g), 0);
        assert_int_equal(g.type, RELAY_DATA);
        assert_int_equal(g.payload_len, sizes[i]);
        assert_memory_equal(g.payload, payload, sizes[i]);
        assert_memory_equal(g.id, f.id, RELAY_ID_LEN);
    }
    /* What cannot be sent is not encoded. */
    f.payload_len = RELAY_PAYLOAD_MAX + 1;
    assert_int_equal(relay_encode(&f, out, sizeof(out), &len), -EINVAL);
    f.payload_len = 0;
    assert_int_equal(relay_encode(&f, out, sizeof(out), &len), -EINVAL);
    f.payload = NULL;
    f.payload_len = 10;
    assert_int_equal(relay_encode(&f, out, sizeof(out), &len), -EINVAL);
    f = (struct relay_frame){ .type = 4 };
    assert_int_equal(relay_encode(&f, out, sizeof(out), &len), -EINVAL);
    /* A welcome is a header and an id, nothing more. */
    f = (struct relay_frame){ .type = RELAY_WELCOME };
    assert_int_equal(relay_id_parse(ID_A, f.id), 0);
    assert_int_equal(relay_encode(&f, out, sizeof(out), &len), 0);
    assert_int_equal(len, RELAY_WELCOME_LEN);
    assert_true(RELAY_WELCOME_LEN < RELAY_HELLO_LEN);
    assert_int_equal(relay_decode(out, len, &g), 0);
    assert_int_equal(g.type, RELAY_WELCOME);
    assert_memory_equal(g.id, f.id, RELAY_ID_LEN);
    assert_int_equal(relay_decode(out, len + 1, &g), -EBADMSG);
    f = (struct relay_frame){ .type = RELAY_HELLO };
    assert_int_equal(relay_encode(&f, out, RELAY_HELLO_LEN - 1, &len),
                     -ENOBUFS);
}

static void hostile_frames_are_refused(void **state)
{
    (void)state;
    uint8_t good[RELAY_FRAME_MAX + 8], bad[RELAY_FRAME_MAX + 8];
    uint8_t payload[64] = { 9 };
    struct relay_frame f = { .type = RELAY_DATA, .payload = payload,
                             .payload_len = sizeof(payload) }, g;
    size_t len;
    assert_int_equal(relay_encode(&f, good, sizeof(good), &len), 0);
    /* Each header byte changed in turn. */
    for (size_t i = 0; i < RELAY_HDR_LEN; i++) {
        if (i == 5)
            continue;
        memcpy(bad, good, len);
        bad[i] ^= 0x40;
        assert_int_equal(relay_decode(bad, len, &g), -EBADMSG);
    }
    /* Unknown types. */
    static const uint8_t types[] = { 0, 3, 4, 0x7f, 0xff };
    for (size_t i = 0; i < sizeof(types); i++) {
        memcpy(bad, good, len);
        bad[5] = types[i];
        assert_int_equal(relay_decode(bad, len, &g), -EBADMSG);
    }
    /* Every length up to a header and an id; data with no payload or one
     * too long. */
    for (size_t n = 0; n <= RELAY_HDR_LEN + RELAY_ID_LEN; n++)
        assert_int_equal(relay_decode(good, n, &g), -EBADMSG);
    assert_int_equal(relay_decode(NULL, 100, &g), -EBADMSG);
    memset(bad, 0, sizeof(bad));
    memcpy(bad, good, RELAY_HDR_LEN + RELAY_ID_LEN);
    assert_int_equal(relay_decode(bad, RELAY_FRAME_MAX + 1, &g), -EBADMSG);
    assert_int_equal(relay_decode(bad, RELAY_FRAME_MAX, &g), 0);
    /* A hello of any length but its own. */
    f = (struct relay_frame){ .type = RELAY_HELLO };
    assert_int_equal(relay_encode(&f, good, sizeof(good), &len), 0);
    assert_int_equal(relay_decode(good, len - 1, &g), -EBADMSG);
    assert_int_equal(relay_decode(good, len + 1, &g), -EBADMSG);
    assert_int_equal(relay_decode(good, RELAY_FRAME_MAX, &g), -EBADMSG);
    assert_int_equal(relay_decode(good, len, &g), 0);
}

/* The TCP stream: frames after their two-byte length, found in a buffer
 * however the bytes arrived (one at a time, several frames at once); a
 * length of 0 or over a frame's largest stops the stream. */
static void stream_frames_survive_partial_reads(void **state)
{
    (void)state;
    uint8_t payload[RELAY_PAYLOAD_MAX], stream[3 * (RELAY_FRAME_MAX + 2)];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7 + 1);
    size_t sizes[] = { RELAY_PAYLOAD_MAX, 1, 0 }, total = 0, len;
    for (size_t i = 0; i < 3; i++) {
        struct relay_frame f = { .type = RELAY_DATA, .payload = payload,
                                 .payload_len = sizes[i] };
        if (sizes[i] == 0)
            f = (struct relay_frame){ .type = RELAY_HELLO };
        assert_int_equal(relay_id_parse(ID_A, f.id), 0);
        assert_int_equal(relay_stream_encode(&f, stream + total,
                                             sizeof(stream) - total, &len), 0);
        total += len;
    }
    assert_int_equal(total, 3 * (RELAY_STREAM_PREFIX + RELAY_HDR_LEN +
                                 RELAY_ID_LEN) + RELAY_PAYLOAD_MAX + 1 +
                                RELAY_TOKEN_LEN);
    /* Fed one byte at a time: each frame is found exactly when its last
     * byte arrives, never earlier. */
    uint8_t buf[sizeof(stream)];
    size_t have = 0, found = 0, frame, used;
    for (size_t i = 0; i < total; i++) {
        buf[have++] = stream[i];
        int r = relay_stream_next(buf, have, &frame, &used);
        assert_true(r >= 0);
        if (r == 0)
            continue;
        struct relay_frame g;
        assert_int_equal(used, have);
        assert_int_equal(relay_decode(buf + RELAY_STREAM_PREFIX, frame, &g),
                         0);
        if (found < 2) {
            assert_int_equal(g.type, RELAY_DATA);
            assert_int_equal(g.payload_len, sizes[found]);
            assert_memory_equal(g.payload, payload, sizes[found]);
        } else {
            assert_int_equal(g.type, RELAY_HELLO);
        }
        found++;
        have = 0;
    }
    assert_int_equal(found, 3);
    assert_int_equal(have, 0);
    /* All at once: one frame after another. */
    size_t off = 0;
    for (found = 0; relay_stream_next(stream + off, total - off, &frame,
                                      &used) == 1; found++)
        off += used;
    assert_int_equal(found, 3);
    assert_int_equal(off, total);

    /* Oversized or empty lengths are refused at once, before the bytes
     * they announce arrive. */
    uint8_t bad[2] = { (RELAY_FRAME_MAX + 1) >> 8,
                       (uint8_t)(RELAY_FRAME_MAX + 1) };
    assert_int_equal(relay_stream_next(bad, 2, &frame, &used), -EBADMSG);
    bad[0] = bad[1] = 0xff;
    assert_int_equal(relay_stream_next(bad, 2, &frame, &used), -EBADMSG);
    bad[0] = bad[1] = 0;
    assert_int_equal(relay_stream_next(bad, 2, &frame, &used), -EBADMSG);
    bad[0] = RELAY_FRAME_MAX >> 8;
    bad[1] = (uint8_t)RELAY_FRAME_MAX;
    assert_int_equal(relay_stream_next(bad, 2, &frame, &used), 0);
    assert_int_equal(relay_stream_next(bad, 1, &frame, &used), 0);
    assert_int_equal(relay_stream_next(bad, 0, &frame, &used), 0);
    /* What cannot be sent is not encoded; no room for the prefix. */
    struct relay_frame f = { .type = RELAY_HELLO };
    assert_int_equal(relay_stream_encode(&f, stream, 1, &len), -ENOBUFS);
    assert_int_equal(relay_stream_encode(&f, stream, RELAY_HELLO_LEN + 1,
                                         &len), -ENOBUFS);
    f.type = 4;
    assert_int_equal(relay_stream_encode(&f, stream, sizeof(stream), &len),
                     -EINVAL);
}

static void tokens_are_bound_to_node_secret_and_time(void **state)
{
    (void)state;
    uint8_t secret[RELAY_SECRET_LEN], other[RELAY_SECRET_LEN];
    memset(secret, 1, sizeof(secret));
    memset(other, 2, sizeof(other));
    uint8_t a[RELAY_ID_LEN], b[RELAY_ID_LEN], tok[RELAY_TOKEN_LEN];
    assert_int_equal(relay_id_parse(ID_A, a), 0);
    assert_int_equal(relay_id_parse(ID_B, b), 0);
    relay_token_make(secret, a, 2000, PROBE_NAT_DEPENDENT, tok);
    enum probe_nat nat = PROBE_NAT_MAX;
    int64_t exp = 0;
    assert_int_equal(relay_token_check(secret, a, tok, 1999, &nat, &exp), 0);
    assert_int_equal(nat, PROBE_NAT_DEPENDENT);
    assert_int_equal(exp, 2000);
    /* Expired; another node; another hub. */
    assert_int_equal(relay_token_check(secret, a, tok, 2000, &nat, &exp),
                     -ETIMEDOUT);
    assert_int_equal(relay_token_check(secret, b, tok, 1000, &nat, &exp),
                     -EACCES);
    assert_int_equal(relay_token_check(other, a, tok, 1000, &nat, &exp),
                     -EACCES);
    /* Any byte changed: a later expiry, a friendlier class, the MAC. */
    for (size_t i = 0; i < RELAY_TOKEN_LEN; i++) {
        uint8_t t[RELAY_TOKEN_LEN];
        memcpy(t, tok, sizeof(t));
        t[i] ^= 1;
        assert_int_equal(relay_token_check(secret, a, t, 1000, &nat, &exp),
                         -EACCES);
    }
}

static void only_pairs_without_a_direct_path_are_relayed(void **state)
{
    (void)state;
    enum probe_nat all[] = { PROBE_NAT_UNKNOWN, PROBE_NAT_NONE,
                             PROBE_NAT_INDEPENDENT, PROBE_NAT_DEPENDENT };
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 4; j++) {
            bool want = all[i] != PROBE_NAT_NONE && all[j] != PROBE_NAT_NONE &&
                        !(all[i] == PROBE_NAT_INDEPENDENT &&
                          all[j] == PROBE_NAT_INDEPENDENT);
            assert_int_equal(relay_path_needed(all[i], all[j]), want);
            assert_int_equal(relay_path_needed(all[j], all[i]), want);
        }
    assert_true(relay_path_needed(PROBE_NAT_INDEPENDENT, PROBE_NAT_DEPENDENT));
    assert_false(relay_path_needed(PROBE_NAT_NONE, PROBE_NAT_DEPENDENT));
}

static const char *doc_with_path(const char *path)
{
    static char buf[512];
    snprintf(buf, sizeof(buf),
             "{\"revision\":1,\"node_id\":\"" ID_A "\",\"mesh\":null,"
             "\"vms\":[],\"networks\":[],\"ports\":[],\"peers\":[{"
             "\"node_id\":\"" ID_B "\",\"name\":\"b\",\"public_key\":"
             "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\","
             "\"endpoint\":null,\"allowed_ips\":[\"100.96.0.2/32\"],"
             "\"keepalive\":25%s%s%s}]}",
             path ? ",\"path\":\"" : "", path ? path : "", path ? "\"" : "");
    return buf;
}

/* A pair goes through the relay only when both agents speak the contract
 * that relays: an older agent never registers there, so its peers try it
 * directly. */
static void only_agents_that_relay_are_put_on_the_relay(void **state)
{
    (void)state;
    struct app a = { 0 };
    a.relay = (struct relay_server *)&a; /* relaying: only its presence */
    json_auto_t *sym = json_pack("{s:s, s:i}", "nat_class",
                                 "endpoint-dependent", "agent_contract",
                                 AGENT_CONTRACT_RELAY);
    json_auto_t *sym2 = json_deep_copy(sym);
    json_auto_t *old = json_pack("{s:s, s:i}", "nat_class",
                                 "endpoint-dependent", "agent_contract", 1);
    json_auto_t *unknown = json_pack("{s:s}", "nat_class",
                                     "endpoint-dependent");
    json_auto_t *open = json_pack("{s:s, s:i}", "nat_class", "none",
                                  "agent_contract", AGENT_CONTRACT_RELAY);
    assert_true(desired_peer_relayed(&a, sym, sym2));
    assert_false(desired_peer_relayed(&a, sym, old));
    assert_false(desired_peer_relayed(&a, old, sym));
    assert_false(desired_peer_relayed(&a, sym, unknown)); /* as 1 */
    assert_false(desired_peer_relayed(&a, sym, open));
    a.relay = NULL;
    assert_false(desired_peer_relayed(&a, sym, sym2));
}

static void the_peer_path_travels_in_the_desired_document(void **state)
{
    (void)state;
    static const char *const ok[] = { "relay", "direct", NULL };
    for (size_t i = 0; i < 3; i++) {
        json_auto_t *j = json_loads(doc_with_path(ok[i]), 0, NULL);
        assert_non_null(j);
        struct am_desired d = { 0 };
        struct jerr err = { 0 };
        assert_int_equal(am_desired_decode(j, &d, &err), 0);
        assert_int_equal(d.n_peers, 1);
        assert_int_equal(d.peers[0].relayed, i == 0);
        json_auto_t *back = am_desired_encode(&d);
        const char *p = json_str(json_array_get(json_object_get(back, "peers"),
                                                0), "path");
        assert_string_equal(p, i == 0 ? "relay" : "direct");
        am_desired_clear(&d);
    }
    json_auto_t *j = json_loads(doc_with_path("tcp"), 0, NULL);
    struct am_desired d = { 0 };
    struct jerr err = { 0 };
    assert_int_not_equal(am_desired_decode(j, &d, &err), 0);
    jerr_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ids_parse_strictly_and_round_trip),
        cmocka_unit_test(frames_round_trip),
        cmocka_unit_test(hostile_frames_are_refused),
        cmocka_unit_test(stream_frames_survive_partial_reads),
        cmocka_unit_test(tokens_are_bound_to_node_secret_and_time),
        cmocka_unit_test(only_pairs_without_a_direct_path_are_relayed),
        cmocka_unit_test(the_peer_path_travels_in_the_desired_document),
        cmocka_unit_test(only_agents_that_relay_are_put_on_the_relay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
