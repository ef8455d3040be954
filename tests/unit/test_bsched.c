/* Backup schedule slots (controller/bsched.c, bsched_next, a pure
 * function): each VM's slot is strictly after now, inside the period's
 * spread window (an hour into the UTC hour, day or Monday-based week), at
 * the same offset every period, and 1,000 VMs due on the same day are
 * spread over that hour instead of starting in the same second. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/ids.h"
#include "controller/bsched.h"

#include <string.h>

/* 2026-12-04 23:59:30 UTC, a Friday. */
#define NOW INT64_C(1796428770)

static void slots_are_after_now_inside_the_window_at_a_fixed_offset(void **s)
{
    static const struct { const char *name; int64_t period, base; } k[] = {
        { "hourly", 3600, 0 },
        { "daily", 86400, 0 },
        { "weekly", 7 * 86400, 4 * 86400 }, /* 1970-01-05, a Monday */
    };
    for (int i = 0; i < 1000; i++) {
        char id[UUID_STR_LEN + 1];
        uuid_generate_str(id);
        for (size_t j = 0; j < sizeof(k) / sizeof(k[0]); j++) {
            int64_t now = NOW + i * 37;
            int64_t t = bsched_next(k[j].name, id, now);
            assert_true(t > now);
            assert_true(t <= now + k[j].period);
            assert_true((t - k[j].base) % k[j].period < BSCHED_SPREAD_S);
            /* A period later: the same offset. */
            int64_t t2 = bsched_next(k[j].name, id, t);
            assert_int_equal(t2, t + k[j].period);
            /* Just before its slot, the slot is that one. */
            assert_int_equal(bsched_next(k[j].name, id, t - 1), t);
        }
    }
    assert_int_equal(bsched_next("off", "x", NOW), 0);
    assert_int_equal(bsched_next("monthly", "x", NOW), 0);
    assert_int_equal(bsched_next(NULL, "x", NOW), 0);
    assert_int_equal(bsched_period_s("daily"), 86400);
}

static void a_thousand_vms_due_at_midnight_do_not_start_together(void **s)
{
    static int per_second[BSCHED_SPREAD_S];
    memset(per_second, 0, sizeof(per_second));
    int64_t midnight = NOW + 30;
    for (int i = 0; i < 1000; i++) {
        char id[UUID_STR_LEN + 1];
        uuid_generate_str(id);
        int64_t t = bsched_next("daily", id, NOW);
        assert_true(t >= midnight && t < midnight + BSCHED_SPREAD_S);
        per_second[t - midnight]++;
    }
    int most = 0, used = 0;
    for (int i = 0; i < BSCHED_SPREAD_S; i++) {
        most = per_second[i] > most ? per_second[i] : most;
        used += per_second[i] > 0;
    }
    /* Uniform over 3,600 s: about 0.28 a second; 7 in one second would
     * be a one-in-millions draw. */
    assert_true(most <= 6);
    assert_true(used >= 700);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slots_are_after_now_inside_the_window_at_a_fixed_offset),
        cmocka_unit_test(a_thousand_vms_due_at_midnight_do_not_start_together),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
