/* Unit tests for billing/: decimal money, rating and fee rounding, interval
 * and sequence sets, usage capping, and balanced transactions, on
 * hand-checked examples. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "billing/ledger.h"
#include "billing/money.h"
#include "billing/period.h"
#include "billing/rating.h"
#include "billing/usage.h"

#include <errno.h>

static void money_parse_reads_exact_decimals(void **state)
{
    int64_t v;
    assert_int_equal(money_parse("12.5", &v), 0);
    assert_int_equal(v, INT64_C(12500000000));
    assert_int_equal(money_parse("0.000000001", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(money_parse("-3", &v), 0);
    assert_int_equal(v, INT64_C(-3000000000));
    assert_int_equal(money_parse("+7.", &v), 0);
    assert_int_equal(v, INT64_C(7000000000));
    assert_int_equal(money_parse(".25", &v), 0);
    assert_int_equal(v, INT64_C(250000000));
    assert_int_equal(money_parse("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(money_parse("9223372036.854775807", &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(money_parse("-9223372036.854775808", &v), 0);
    assert_true(v == INT64_MIN);
}

static void money_parse_refuses_garbage_and_overflow(void **state)
{
    int64_t v = 42;
    static const char *const bad[] = { "", "-", ".", "1e3", "1,5", " 1",
                                       "1 ", "0x10", "1.0000000001", "--1",
                                       "1.2.3", "NaN", "inf", "12.5FOG" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_int_equal(money_parse(bad[i], &v), -EINVAL);
    assert_int_equal(money_parse("9223372036.854775808", &v), -ERANGE);
    assert_int_equal(money_parse("-9223372036.854775809", &v), -ERANGE);
    assert_int_equal(money_parse("99999999999999999999999", &v), -ERANGE);
    assert_int_equal(v, 42); /* untouched on failure */
    assert_int_equal(money_parse(NULL, &v), -EINVAL);
}

static void money_format_prints_exact_text_and_round_trips(void **state)
{
    struct { int64_t v; const char *sym; const char *want; } cases[] = {
        { INT64_C(12500000000), "FOG", "12.5 FOG" },
        { 1, NULL, "0.000000001" },
        { -1, "FOG", "-0.000000001 FOG" },
        { 0, "FOG", "0 FOG" },
        { INT64_C(3000000000), "", "3" },
        { INT64_MIN, NULL, "-9223372036.854775808" },
        { INT64_MAX, NULL, "9223372036.854775807" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char *s = money_format(cases[i].v, cases[i].sym);
        assert_string_equal(s, cases[i].want);
        free(s);
    }
    /* Every printed amount parses back to itself. */
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < 10000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t v = (int64_t)x >> (i % 64), back;
        char *s = money_format(v, NULL);
        assert_int_equal(money_parse(s, &back), 0);
        assert_true(back == v);
        free(s);
    }
}

static void money_add_sub_detect_overflow(void **state)
{
    int64_t r = 5;
    assert_int_equal(money_add(INT64_MAX, 1, &r), -ERANGE);
    assert_int_equal(money_sub(INT64_MIN, 1, &r), -ERANGE);
    assert_int_equal(r, 5);
    assert_int_equal(money_add(2, 3, &r), 0);
    assert_int_equal(r, 5);
    assert_int_equal(money_sub(2, 3, &r), 0);
    assert_int_equal(r, -1);
}

static void rating_charges_each_component_per_unit_time(void **state)
{
    const int64_t T = MONEY_NANO_PER_TOKEN;
    struct rating_offer o = { .vcpu_hour = T };
    struct rating_shape sh = { .vcpus = 2 };
    int64_t c;
    assert_int_equal(rating_charge(&o, &sh, 3600, &c), 0);
    assert_true(c == 2 * T);
    /* Memory: per GiB-hour on MiB: 512 MiB for 2 hours = 1 GiB-hour. */
    o = (struct rating_offer){ .mem_gib_hour = T };
    sh = (struct rating_shape){ .memory_mib = 512 };
    assert_int_equal(rating_charge(&o, &sh, 7200, &c), 0);
    assert_true(c == T);
    /* Disk: per GiB per 30-day month. */
    o = (struct rating_offer){ .disk_gib_month = 30 * T };
    sh = (struct rating_shape){ .disk_gib = 10 };
    assert_int_equal(rating_charge(&o, &sh, 86400, &c), 0);
    assert_true(c == 10 * T);
    o = (struct rating_offer){ .gpu_hour = 3, .port_hour = 5 };
    sh = (struct rating_shape){ .gpus = 2, .ports = 4 };
    assert_int_equal(rating_charge(&o, &sh, 3600, &c), 0);
    assert_int_equal(c, 2 * 3 + 4 * 5);
}

static void rating_rounds_once_on_the_sum_not_per_component(void **state)
{
    /* 1 nano per vCPU-hour for 1 s is 1/3600 nano: 0. 3600 s of it: 1. */
    struct rating_offer o = { .vcpu_hour = 1, .mem_gib_hour = 1 };
    struct rating_shape sh = { .vcpus = 1, .memory_mib = 1024 };
    int64_t c;
    assert_int_equal(rating_charge(&o, &sh, 1, &c), 0);
    assert_int_equal(c, 0);
    /* Each component alone is 0.5 nano after 1800 s; together exactly 1. */
    assert_int_equal(rating_charge(&o, &sh, 1800, &c), 0);
    assert_int_equal(c, 1);
    assert_int_equal(rating_cost_ceil(&o, &sh, 1, &c), 0);
    assert_int_equal(c, 1);
}

static void rating_refuses_negative_and_overflowing_inputs(void **state)
{
    struct rating_offer o = { .vcpu_hour = INT64_MAX };
    struct rating_shape sh = { .vcpus = 1024 };
    int64_t c = 7;
    assert_int_equal(rating_charge(&o, &sh, INT64_C(1) << 40, &c), -ERANGE);
    assert_int_equal(rating_charge(&o, &sh, -1, &c), -EINVAL);
    o.vcpu_hour = -1;
    assert_int_equal(rating_charge(&o, &sh, 1, &c), -EINVAL);
    assert_int_equal(c, 7);
    assert_int_equal(rating_fee(100, 10001, &c), -EINVAL);
    assert_int_equal(rating_fee(-1, 100, &c), -EINVAL);
}

static void rating_step_splits_tenant_into_provider_plus_fee(void **state)
{
    struct rating_offer o = { .vcpu_hour = 1000003, .mem_gib_hour = 77 };
    struct rating_shape sh = { .vcpus = 3, .memory_mib = 1536 };
    struct rating_split s;
    int64_t sum_t = 0, sum_p = 0, sum_f = 0, prev = 0;
    for (int64_t t = 7; t < 100000; t += 7 + t % 13) {
        assert_int_equal(rating_step(&o, &sh, 1234, prev, t, &s), 0);
        assert_true(s.tenant == s.provider + s.fee);
        assert_true(s.fee >= 0 && s.provider >= 0);
        sum_t += s.tenant, sum_p += s.provider, sum_f += s.fee;
        prev = t;
    }
    int64_t c, f;
    assert_int_equal(rating_charge(&o, &sh, prev, &c), 0);
    assert_int_equal(rating_fee(c, 1234, &f), 0);
    assert_true(sum_t == c);
    assert_true(sum_f == f);
    assert_true(sum_p == c - f);
    assert_int_equal(rating_step(&o, &sh, 1234, 10, 5, &s), -EINVAL);
}

static void ivset_merges_overlapping_and_touching_intervals(void **state)
{
    struct usage_ivset s = { NULL, 0, 0 };
    usage_ivset_add(&s, 10, 20);
    usage_ivset_add(&s, 30, 40);
    usage_ivset_add(&s, 20, 25); /* touches the first */
    usage_ivset_add(&s, 5, 5);   /* empty */
    assert_int_equal(s.n, 2);
    assert_int_equal(usage_ivset_len(&s), 25);
    usage_ivset_add(&s, 0, 100); /* swallows all */
    assert_int_equal(s.n, 1);
    assert_int_equal(usage_ivset_len(&s), 100);
    usage_ivset_trim_before(&s, 60);
    assert_int_equal(s.iv[0].start, 60);
    assert_int_equal(usage_ivset_cover(&s, 50, 70), 10);
    usage_ivset_free(&s);
}

static void seqset_counts_each_sequence_number_once(void **state)
{
    struct usage_seqset s = { 0, NULL, 0, 0 };
    assert_true(usage_seqset_add(&s, 3));
    assert_true(usage_seqset_add(&s, 1));
    assert_false(usage_seqset_add(&s, 3));
    assert_false(usage_seqset_add(&s, 1));
    assert_int_equal(s.floor, 1);
    assert_true(usage_seqset_add(&s, 2));
    assert_int_equal(s.floor, 3);
    assert_int_equal(s.n, 0);
    assert_false(usage_seqset_add(&s, 0));
    assert_false(usage_seqset_has(&s, 4));
    usage_seqset_free(&s);
}

static void usage_caps_claims_to_observed_running_time(void **state)
{
    struct usage_vm u = USAGE_VM_INIT;
    /* Controller saw the VM running at 100, 105, 110 (heartbeat 5). */
    usage_vm_observe(&u, 100, 15);
    usage_vm_observe(&u, 105, 15);
    usage_vm_observe(&u, 110, 15);
    /* The node goes silent for a minute, then reports again. */
    usage_vm_observe(&u, 170, 15);
    usage_vm_observe(&u, 175, 15);
    struct usage_sample s1 = { 1, 90, 180 };
    assert_int_equal(usage_vm_sample(&u, &s1), USAGE_NEW);
    assert_int_equal(usage_vm_sample(&u, &s1), USAGE_DUPLICATE);
    assert_int_equal(usage_vm_claimed(&u), 90);
    assert_int_equal(usage_vm_billable(&u), 10 + 5);
    assert_int_equal(usage_vm_capped(&u), 75);
    /* A stop report ends the stretch: later running starts a new one. */
    usage_vm_observe_stop(&u);
    usage_vm_observe(&u, 178, 15);
    assert_int_equal(usage_vm_billable(&u), 15);
    struct usage_sample bad = { 2, 50, 40 };
    assert_int_equal(usage_vm_sample(&u, &bad), USAGE_INVALID);
    usage_vm_free(&u);
}

static void usage_settle_keeps_totals_and_round_trips_json(void **state)
{
    struct usage_vm u = USAGE_VM_INIT;
    for (int64_t t = 0; t <= 1000; t += 5)
        usage_vm_observe(&u, t, 15);
    struct usage_sample s[] = { { 1, 0, 300 }, { 2, 400, 900 }, { 4, 950, 1100 } };
    for (size_t i = 0; i < ARRAY_SIZE(s); i++)
        usage_vm_sample(&u, &s[i]);
    int64_t b = usage_vm_billable(&u), c = usage_vm_claimed(&u);
    assert_int_equal(b, 300 + 500 + 50);
    usage_vm_settle(&u, 500);
    assert_int_equal(usage_vm_billable(&u), b);
    assert_int_equal(usage_vm_claimed(&u), c);
    /* Samples reaching before the horizon only count after it. */
    struct usage_sample late = { 3, 300, 600 };
    usage_vm_sample(&u, &late);
    assert_int_equal(usage_vm_billable(&u), b);
    json_t *j = usage_vm_to_json(&u);
    struct usage_vm v;
    assert_int_equal(usage_vm_from_json(j, &v), 0);
    assert_int_equal(usage_vm_billable(&v), b);
    assert_false(usage_seqset_add(&v.seqs, 3));
    assert_true(usage_seqset_add(&v.seqs, 5));
    json_decref(j);
    j = json_pack("{s:[[i,i]]}", "claimed", 5, 1);
    assert_int_equal(usage_vm_from_json(j, &v), -EINVAL);
    json_decref(j);
    usage_vm_free(&v);
    usage_vm_free(&u);
}

static void ledger_refuses_unbalanced_and_reverses_exactly(void **state)
{
    struct ledger_tx *tx = ledger_tx_new("accrual", "vm web-1");
    assert_int_equal(ledger_tx_check(tx), -ENODATA);
    assert_int_equal(ledger_tx_add(tx, "tenant", -100), 0);
    assert_int_equal(ledger_tx_check(tx), -EINVAL);
    assert_int_equal(ledger_tx_add(tx, "provider", 90), 0);
    assert_int_equal(ledger_tx_check(tx), -EINVAL);
    assert_int_equal(ledger_tx_add(tx, LEDGER_HUB_FEES, 10), 0);
    assert_int_equal(ledger_tx_check(tx), 0);
    assert_int_equal(ledger_tx_add(tx, "x", 0), 0); /* no entry */
    assert_int_equal(tx->n, 3);
    assert_int_equal(ledger_tx_add(tx, "y", INT64_MIN), -EINVAL);
    assert_int_equal(ledger_tx_add(tx, "", 1), -EINVAL);
    struct ledger_tx *rev = ledger_tx_reverse(tx, "tx-1", NULL);
    assert_non_null(rev);
    assert_int_equal(ledger_tx_check(rev), 0);
    assert_string_equal(rev->reverses, "tx-1");
    assert_int_equal(ledger_tx_amount(rev, "tenant"), 100);
    assert_int_equal(ledger_tx_amount(rev, "provider"), -90);
    assert_int_equal(ledger_tx_amount(rev, LEDGER_HUB_FEES), -10);
    ledger_tx_free(rev);
    ledger_tx_free(tx);

    tx = ledger_tx_new("credit", NULL);
    assert_int_equal(ledger_tx_move(tx, LEDGER_HUB_DEPOSITS, "t", 5), 0);
    assert_int_equal(ledger_tx_check(tx), 0);
    assert_int_equal(ledger_tx_move(tx, "t", "t", 5), -EINVAL);
    assert_int_equal(ledger_tx_move(tx, "a", "b", 0), -EINVAL);
    assert_int_equal(ledger_tx_add(tx, "t", INT64_MAX), -ERANGE);
    /* Combining entries that cancel leaves nothing. */
    assert_int_equal(ledger_tx_move(tx, "t", LEDGER_HUB_DEPOSITS, 5), 0);
    assert_int_equal(ledger_tx_check(tx), -ENODATA);
    ledger_tx_free(tx);
}

static void period_is_a_utc_calendar_month(void **state)
{
    int64_t a, b;
    assert_int_equal(period_parse("2026-11", &a, &b), 0);
    assert_int_equal(a, INT64_C(1793491200)); /* 2026-11-01T00:00:00Z */
    assert_int_equal(b - a, 30 * 86400);
    assert_int_equal(period_parse("2024-02", &a, &b), 0); /* leap year */
    assert_int_equal(b - a, 29 * 86400);
    assert_int_equal(period_parse("2025-12", &a, &b), 0);
    assert_int_equal(b, INT64_C(1767225600)); /* 2026-01-01 */
    static const char *const bad[] = { "2026-13", "2026-00", "2026-1",
                                       "1969-12", "2026/11", "20261", "" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_int_equal(period_parse(bad[i], &a, &b), -EINVAL);
    char p[8];
    period_of(INT64_C(1793491200) - 1, p);
    assert_string_equal(p, "2026-10");
    period_of(INT64_C(1793491200), p);
    assert_string_equal(p, "2026-11");
    /* Every month start maps back to itself. */
    for (int64_t t = 0; t < INT64_C(4102444800); t += 86400 * 17) {
        period_of(t, p);
        assert_int_equal(period_parse(p, &a, &b), 0);
        assert_true(a <= t && t < b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(money_parse_reads_exact_decimals),
        cmocka_unit_test(money_parse_refuses_garbage_and_overflow),
        cmocka_unit_test(money_format_prints_exact_text_and_round_trips),
        cmocka_unit_test(money_add_sub_detect_overflow),
        cmocka_unit_test(rating_charges_each_component_per_unit_time),
        cmocka_unit_test(rating_rounds_once_on_the_sum_not_per_component),
        cmocka_unit_test(rating_refuses_negative_and_overflowing_inputs),
        cmocka_unit_test(rating_step_splits_tenant_into_provider_plus_fee),
        cmocka_unit_test(ivset_merges_overlapping_and_touching_intervals),
        cmocka_unit_test(seqset_counts_each_sequence_number_once),
        cmocka_unit_test(usage_caps_claims_to_observed_running_time),
        cmocka_unit_test(usage_settle_keeps_totals_and_round_trips_json),
        cmocka_unit_test(ledger_refuses_unbalanced_and_reverses_exactly),
        cmocka_unit_test(period_is_a_utc_calendar_month),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
