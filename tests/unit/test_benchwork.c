/* The benchmark challenge's work: the worker's checkpoints verify, and
 * the verifier refuses a tampered checkpoint, another nonce, a pick out of
 * range and answers that are truncated or of the wrong shape; the
 * desired document carries a challenge through its codec unchanged. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentmsg.h"
#include "common/benchwork.h"
#include "common/ids.h"
#include "nodeagent/benchjob.h"
#include "nodeagent/vmxml.h"
#include "tests/testutil.h"

#include <errno.h>
#include <string.h>

#define CP_AT(p, cp, l, k)                                                     \
    ((cp) + ((size_t)(l) * ((p)->segments + 1) + (k)) * BENCH_HASH_LEN)

static struct bench_params small(void)
{
    struct bench_params p = { .memory_mib = 1, .rounds = 2, .lanes = 2,
                              .segments = 8 };
    for (size_t i = 0; i < sizeof(p.nonce); i++)
        p.nonce[i] = (uint8_t)(i * 7 + 1);
    return p;
}

static size_t n_cp(const struct bench_params *p)
{
    return (size_t)p->lanes * (p->segments + 1) * BENCH_HASH_LEN;
}

/* Every segment of every lane. */
static size_t all_picks(const struct bench_params *p, struct bench_pick *out)
{
    size_t n = 0;
    for (uint32_t l = 0; l < p->lanes; l++)
        for (uint32_t k = 0; k < p->segments; k++)
            out[n++] = (struct bench_pick){ l, k };
    return n;
}

static void worker_and_verifier_agree(void **state)
{
    struct bench_params p = small();
    _cleanup_free_ uint8_t *cp = xmalloc(n_cp(&p));
    assert_int_equal(bench_run(&p, cp), 0);
    struct bench_pick picks[BENCH_LANES_MAX * BENCH_SEGMENTS_MAX];
    size_t n = all_picks(&p, picks);
    assert_true(bench_verify(&p, cp, picks, n));
    /* Lanes are distinct chains, and the work is deterministic. */
    assert_memory_not_equal(CP_AT(&p, cp, 0, 8), CP_AT(&p, cp, 1, 8),
                            BENCH_HASH_LEN);
    _cleanup_free_ uint8_t *again = xmalloc(n_cp(&p));
    assert_int_equal(bench_run(&p, again), 0);
    assert_memory_equal(cp, again, n_cp(&p));
    /* One lane gives the same chain as lane 0 of two. */
    struct bench_params one = p;
    one.lanes = 1;
    _cleanup_free_ uint8_t *solo = xmalloc(n_cp(&one));
    assert_int_equal(bench_run(&one, solo), 0);
    assert_memory_equal(solo, cp, n_cp(&one));
}

static void tampered_checkpoint_fails_both_segments_around_it(void **state)
{
    struct bench_params p = small();
    _cleanup_free_ uint8_t *cp = xmalloc(n_cp(&p));
    assert_int_equal(bench_run(&p, cp), 0);
    CP_AT(&p, cp, 1, 3)[5] ^= 1;
    assert_false(bench_verify(&p, cp, &(struct bench_pick){ 1, 2 }, 1));
    assert_false(bench_verify(&p, cp, &(struct bench_pick){ 1, 3 }, 1));
    /* Segments away from it still hold: only the sampled ones count. */
    assert_true(bench_verify(&p, cp, &(struct bench_pick){ 1, 5 }, 1));
    assert_true(bench_verify(&p, cp, &(struct bench_pick){ 0, 3 }, 1));
    /* A forged final state (the answer's digest) is caught too. */
    CP_AT(&p, cp, 1, 3)[5] ^= 1;
    CP_AT(&p, cp, 0, 8)[0] ^= 0x80;
    assert_false(bench_verify(&p, cp, &(struct bench_pick){ 0, 7 }, 1));
}

static void chain_from_invented_seed_fails(void **state)
{
    struct bench_params p = small();
    _cleanup_free_ uint8_t *cp = xmalloc(n_cp(&p));
    assert_int_equal(bench_run(&p, cp), 0);
    /* A self-consistent chain from another seed fails on the seed. */
    memset(CP_AT(&p, cp, 0, 0), 0x42, BENCH_HASH_LEN);
    assert_false(bench_verify(&p, cp, NULL, 0));
}

static void answer_for_another_nonce_fails(void **state)
{
    struct bench_params p = small();
    _cleanup_free_ uint8_t *cp = xmalloc(n_cp(&p));
    assert_int_equal(bench_run(&p, cp), 0);
    struct bench_params q = p;
    q.nonce[31] ^= 1;
    assert_false(bench_verify(&q, cp, NULL, 0));
    assert_false(bench_verify(&q, cp, &(struct bench_pick){ 0, 0 }, 1));
    /* Another size is another challenge. */
    q = p;
    q.rounds = 1;
    assert_false(bench_verify(&q, cp, &(struct bench_pick){ 0, 0 }, 1));
}

static void pick_out_of_range_fails(void **state)
{
    struct bench_params p = small();
    _cleanup_free_ uint8_t *cp = xmalloc(n_cp(&p));
    assert_int_equal(bench_run(&p, cp), 0);
    assert_false(bench_verify(&p, cp, &(struct bench_pick){ 0, 8 }, 1));
    assert_false(bench_verify(&p, cp, &(struct bench_pick){ 2, 0 }, 1));
}

static void params_out_of_bounds_are_refused(void **state)
{
    struct bench_params p = small();
    assert_int_equal(bench_params_check(&p), 0);
    struct bench_params q = p;
    q.memory_mib = 0;
    assert_int_equal(bench_params_check(&q), -EINVAL);
    q = p;
    q.memory_mib = BENCH_MEMORY_MAX_MIB + 1;
    assert_int_equal(bench_params_check(&q), -EINVAL);
    q = p;
    q.lanes = BENCH_LANES_MAX + 1;
    assert_int_equal(bench_params_check(&q), -EINVAL);
    q = p;
    q.segments = 3; /* does not divide 2 * 32768 steps */
    assert_int_equal(bench_params_check(&q), -EINVAL);
    uint8_t cp[BENCH_HASH_LEN];
    assert_int_equal(bench_run(&q, cp), -EINVAL);
}

static void answer_text_decodes_and_verifies(void **state)
{
    struct bench_params p = small();
    _cleanup_free_ uint8_t *cp = xmalloc(n_cp(&p));
    assert_int_equal(bench_run(&p, cp), 0);
    _cleanup_free_ char *text = bench_answer_text(&p, cp, 1234);
    assert_non_null(text);
    json_auto_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    _cleanup_free_ uint8_t *got = NULL;
    int64_t ms = 0;
    struct jerr err = { 0 };
    assert_int_equal(am_bench_answer_decode(j, &p, &got, &ms, &err), 0);
    assert_int_equal(ms, 1234);
    assert_memory_equal(got, cp, n_cp(&p));
    struct bench_pick picks[BENCH_LANES_MAX * BENCH_SEGMENTS_MAX];
    assert_true(bench_verify(&p, got, picks, all_picks(&p, picks)));
}

/* The decoder's answer for `text` against p: 0 or -EINVAL. */
static int decode_text(const struct bench_params *p, const char *text)
{
    json_auto_t *j = json_loads(text, 0, NULL);
    if (!j)
        return -EINVAL;
    _cleanup_free_ uint8_t *got = NULL;
    int64_t ms = 0;
    struct jerr err = { 0 };
    int e = am_bench_answer_decode(j, p, &got, &ms, &err);
    if (e < 0) {
        assert_non_null(err.detail);
        jerr_clear(&err);
    }
    return e;
}

static void truncated_or_misshapen_answers_are_refused(void **state)
{
    struct bench_params p = small();
    _cleanup_free_ uint8_t *cp = xmalloc(n_cp(&p));
    assert_int_equal(bench_run(&p, cp), 0);
    _cleanup_free_ char *text = bench_answer_text(&p, cp, 5);
    /* Cut anywhere: not JSON, or too few checkpoints. */
    for (size_t cut = 1; cut < strlen(text); cut += 97) {
        _cleanup_free_ char *t = xstrndup(text, cut);
        assert_int_equal(decode_text(&p, t), -EINVAL);
    }
    /* One lane short, one checkpoint short, a short hex, upper case, an
     * extra member, a missing elapsed_ms. */
    struct bench_params more = p;
    more.lanes = 3;
    assert_int_equal(decode_text(&more, text), -EINVAL);
    struct bench_params fewer = p;
    fewer.segments = 16;
    assert_int_equal(decode_text(&fewer, text), -EINVAL);
    json_auto_t *j = json_loads(text, 0, NULL);
    json_t *lane = json_array_get(json_object_get(j, "checkpoints"), 1);
    json_array_set_new(lane, 4, json_string("abcd"));
    _cleanup_free_ char *bad_hex = json_dumps(j, 0);
    assert_int_equal(decode_text(&p, bad_hex), -EINVAL);
    char up[2 * BENCH_HASH_LEN + 1];
    memset(up, 'A', sizeof(up) - 1);
    up[sizeof(up) - 1] = '\0';
    json_array_set_new(lane, 4, json_string(up));
    _cleanup_free_ char *upper = json_dumps(j, 0);
    assert_int_equal(decode_text(&p, upper), -EINVAL);
    json_array_set_new(lane, 4, json_integer(7));
    _cleanup_free_ char *num = json_dumps(j, 0);
    assert_int_equal(decode_text(&p, num), -EINVAL);
    json_auto_t *k = json_loads(text, 0, NULL);
    json_object_set_new(k, "score", json_integer(1000000));
    _cleanup_free_ char *extra = json_dumps(k, 0);
    assert_int_equal(decode_text(&p, extra), -EINVAL);
    json_object_del(k, "score");
    json_object_del(k, "elapsed_ms");
    _cleanup_free_ char *no_ms = json_dumps(k, 0);
    assert_int_equal(decode_text(&p, no_ms), -EINVAL);
}

static void desired_document_carries_the_challenge(void **state)
{
    struct am_desired d = { .revision = 3, .node_id = (char *)"n1",
                            .has_bench = true };
    memcpy(d.bench.id, "0b7d7c52-6f0e-4c47-9f3e-2b1a44c0f0aa", 37);
    d.bench.params = small();
    d.bench.timeout_s = 120;
    json_auto_t *j = am_desired_encode(&d);
    struct am_desired back;
    struct jerr err = { 0 };
    assert_int_equal(am_desired_decode(j, &back, &err), 0);
    assert_true(back.has_bench);
    assert_string_equal(back.bench.id, d.bench.id);
    assert_memory_equal(&back.bench.params, &d.bench.params,
                        sizeof(d.bench.params));
    assert_int_equal(back.bench.timeout_s, 120);
    assert_false(back.bench.has_probe);
    am_desired_clear(&back);
    /* The hub's probe guest, by digest and size. */
    d.bench.has_probe = true;
    memset(d.bench.kernel.sha256, 'a', 64);
    d.bench.kernel.size = 14190528;
    memset(d.bench.initrd.sha256, '0', 64);
    d.bench.initrd.size = 1431535;
    json_auto_t *jp = am_desired_encode(&d);
    assert_int_equal(am_desired_decode(jp, &back, &err), 0);
    assert_true(back.bench.has_probe);
    assert_string_equal(back.bench.kernel.sha256, d.bench.kernel.sha256);
    assert_int_equal(back.bench.kernel.size, 14190528);
    assert_string_equal(back.bench.initrd.sha256, d.bench.initrd.sha256);
    am_desired_clear(&back);
    json_t *probe = json_object_get(json_object_get(jp, AGENT_BENCH),
                                    AGENT_BENCH_PROBE);
    json_object_set_new(json_object_get(probe, "kernel"), "sha256",
                        json_string("../../etc/passwd"));
    assert_int_equal(am_desired_decode(jp, &back, &err), -EINVAL);
    jerr_clear(&err);
    json_object_del(probe, "kernel");
    assert_int_equal(am_desired_decode(jp, &back, &err), -EINVAL);
    jerr_clear(&err);
    /* A nonce that is not hex, or segments that do not divide, refuse
     * the whole document. */
    json_t *b = json_object_get(j, AGENT_BENCH);
    json_object_set_new(b, "nonce", json_string("zz"));
    assert_int_equal(am_desired_decode(j, &back, &err), -EINVAL);
    jerr_clear(&err);
    char nonce[2 * BENCH_NONCE_LEN + 1];
    hex_encode(d.bench.params.nonce, BENCH_NONCE_LEN, nonce);
    json_object_set_new(b, "nonce", json_string(nonce));
    json_object_set_new(b, "segments", json_integer(3));
    assert_int_equal(am_desired_decode(j, &back, &err), -EINVAL);
    jerr_clear(&err);
}

static void largest_answer_fits_the_wire_bound(void **state)
{
    struct bench_params p = { .memory_mib = 1, .rounds = 1,
                              .lanes = BENCH_LANES_MAX,
                              .segments = BENCH_SEGMENTS_MAX };
    assert_int_equal(bench_params_check(&p), 0);
    _cleanup_free_ uint8_t *cp = xcalloc(1, n_cp(&p));
    _cleanup_free_ char *text = bench_answer_text(&p, cp, INT64_MAX);
    assert_true(strlen(text) <= AGENT_BENCH_ANSWER_MAX);
    assert_int_equal(decode_text(&p, text), 0);
}

static void answer_line_is_found_in_a_console_log(void **state)
{
    static const char log[] = "fog-probe: up\r\n" BENCH_ANSWER_MARK
                              "{\"checkpoints\":[],\"elapsed_ms\":1}\r\n"
                              "reboot: Power down\r\n";
    _cleanup_free_ char *a = benchjob_answer_in_log(log, sizeof(log) - 1);
    assert_string_equal(a, "{\"checkpoints\":[],\"elapsed_ms\":1}");
    /* Cut before its end of line (the guest died mid-line): none. */
    const char *cut = strstr(log, "elapsed_ms");
    assert_null(benchjob_answer_in_log(log, (size_t)(cut - log)));
    assert_null(benchjob_answer_in_log("no answer\n", 10));
}

static void probe_domain_is_built_only_from_safe_fields(void **state)
{
    struct vmxml_probe p = {
        .name = "fogbench-0b7d7c52-6f0e-4c47-9f3e-2b1a44c0f0aa", .vcpus = 2,
        .memory_mib = 160, .kernel = "/srv/probe/vmlinuz",
        .initrd = "/srv/probe/initrd.gz", .cmdline = "console=ttyS0 fog.bench=1",
        .console_log = "/var/lib/fog/console/x.log" };
    _cleanup_free_ char *xml = NULL;
    assert_int_equal(vmxml_probe_build(&p, &xml), 0);
    assert_non_null(strstr(xml, "<kernel>/srv/probe/vmlinuz</kernel>"));
    assert_non_null(strstr(xml, "<vcpu>2</vcpu>"));
    assert_non_null(strstr(xml, "<on_poweroff>destroy</on_poweroff>"));
    assert_null(strstr(xml, "<disk"));
    assert_null(strstr(xml, "<interface"));
    struct vmxml_probe q = p;
    q.name = "fog-0b7d7c52-6f0e-4c47-9f3e-2b1a44c0f0aa"; /* a VM's name */
    assert_int_equal(vmxml_probe_build(&q, &xml), -EINVAL);
    q = p;
    q.kernel = "/srv/../etc/shadow/..";
    assert_int_equal(vmxml_probe_build(&q, &xml), -EINVAL);
    q = p;
    q.cmdline = "console=ttyS0\ninit=/bin/sh";
    assert_int_equal(vmxml_probe_build(&q, &xml), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(worker_and_verifier_agree),
        cmocka_unit_test(tampered_checkpoint_fails_both_segments_around_it),
        cmocka_unit_test(chain_from_invented_seed_fails),
        cmocka_unit_test(answer_for_another_nonce_fails),
        cmocka_unit_test(pick_out_of_range_fails),
        cmocka_unit_test(params_out_of_bounds_are_refused),
        cmocka_unit_test(answer_text_decodes_and_verifies),
        cmocka_unit_test(truncated_or_misshapen_answers_are_refused),
        cmocka_unit_test(desired_document_carries_the_challenge),
        cmocka_unit_test(largest_answer_fits_the_wire_bound),
        cmocka_unit_test(answer_line_is_found_in_a_console_log),
        cmocka_unit_test(probe_domain_is_built_only_from_safe_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
