/* The reputation score as a pure function: unknown until observed,
 * availability sets the ceiling, every kind of observed fault lowers it,
 * a benchmark backing less than the approved capacity lowers it, it stays
 * in [0, 1], and decay lets old faults fade. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "controller/reputation.h"
#include "tests/testutil.h"

static const struct rep_obs honest = { .up_s = 3600, .bench_ratio = -1 };

static void unobserved_node_is_unknown(void **state)
{
    struct rep_obs o = { .bench_ratio = -1 };
    assert_true(rep_score(&o) < 0);
    o.faults = 3;
    assert_true(rep_score(&o) < 0);
}

static void always_up_and_clean_scores_one(void **state)
{
    assert_true(rep_score(&honest) == 1.0);
}

static void availability_is_the_ceiling(void **state)
{
    struct rep_obs o = honest;
    o.down_s = 3600;
    assert_true(rep_score(&o) == 0.5);
    o.up_s = 0;
    assert_true(rep_score(&o) == 0.0);
}

static void each_fault_lowers_the_score(void **state)
{
    double base = rep_score(&honest);
    struct rep_obs o;
    o = honest; o.faults = 1;
    assert_true(rep_score(&o) < base);
    o = honest; o.capped_s = 30;
    assert_true(rep_score(&o) < base);
    o = honest; o.bench_wrong = 1;
    assert_true(rep_score(&o) < base);
    o = honest; o.evictions = 1;
    assert_true(rep_score(&o) < base);
    o = honest; o.bench_ratio = 0.5;
    assert_true(rep_score(&o) < base);
    o = honest; o.bench_ratio = 1;
    assert_true(rep_score(&o) == base);
    /* More of a fault is worse. */
    struct rep_obs a = honest, b = honest;
    a.faults = 1;
    b.faults = 4;
    assert_true(rep_score(&b) < rep_score(&a));
}

static void score_stays_in_range(void **state)
{
    uint64_t s = 7;
    for (int i = 0; i < 10000; i++) {
        struct rep_obs o = {
            (double)(tu_xorshift(&s) % 100000), (double)(tu_xorshift(&s) % 100000),
            (double)(tu_xorshift(&s) % 50), (double)(tu_xorshift(&s) % 5000),
            (double)(tu_xorshift(&s) % 5), (double)(tu_xorshift(&s) % 5),
            (double)(tu_xorshift(&s) % 300) / 100.0 - 1,
        };
        double r = rep_score(&o);
        if (o.up_s + o.down_s > 0)
            assert_true(r >= 0 && r <= 1);
        else
            assert_true(r < 0);
    }
}

static void old_faults_fade(void **state)
{
    assert_true(rep_decay(8, 3600, 3600) == 4);
    assert_true(rep_decay(8, 7200, 3600) == 2);
    assert_true(rep_decay(8, 0, 3600) == 8);
    assert_true(rep_decay(8, 100, 0) == 8);
    struct rep_obs o = honest;
    o.faults = 4;
    double before = rep_score(&o);
    o.faults = rep_decay(o.faults, 7 * 86400, 86400);
    assert_true(rep_score(&o) > before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unobserved_node_is_unknown),
        cmocka_unit_test(always_up_and_clean_scores_one),
        cmocka_unit_test(availability_is_the_ceiling),
        cmocka_unit_test(each_fault_lowers_the_score),
        cmocka_unit_test(score_stays_in_range),
        cmocka_unit_test(old_faults_fade),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
