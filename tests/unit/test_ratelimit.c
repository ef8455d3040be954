/* Token buckets of the controller's rate limits: burst then refill at
 * the rate, Retry-After rounding, bounded memory with LRU eviction, and
 * no token handed out twice under concurrent takers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "controller/ratelimit.h"

#include <pthread.h>
#include <stdio.h>

static void a_burst_passes_then_the_rate_refills(void **state)
{
    struct ratelimit *rl = ratelimit_new(2, 3, 16);
    int64_t retry = 0;
    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take(rl, "a", 1000, &retry));
    assert_false(ratelimit_take(rl, "a", 1000, &retry));
    assert_int_equal(retry, 1);
    /* 2 a second: one more token after 500 ms, not before */
    assert_false(ratelimit_take(rl, "a", 1499, &retry));
    assert_true(ratelimit_take(rl, "a", 1500, &retry));
    assert_false(ratelimit_take(rl, "a", 1500, &retry));
    /* other keys have their own bucket */
    assert_true(ratelimit_take(rl, "b", 1500, &retry));
    /* a long idle refills to the burst, never past it */
    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take(rl, "a", INT64_C(1) << 50, &retry));
    assert_false(ratelimit_take(rl, "a", INT64_C(1) << 50, &retry));
    ratelimit_free(rl);
}

static void retry_after_counts_whole_seconds_to_the_next_token(void **state)
{
    struct ratelimit *rl = ratelimit_new(1, 1, 4);
    int64_t retry = 0;
    assert_true(ratelimit_take(rl, "k", 0, &retry));
    assert_false(ratelimit_take(rl, "k", 0, &retry));
    assert_int_equal(retry, 1);
    assert_false(ratelimit_take(rl, "k", 10, &retry));
    assert_int_equal(retry, 1);
    assert_true(ratelimit_take(rl, "k", 1000, &retry));
    ratelimit_free(rl);
}

static void rate_zero_never_limits(void **state)
{
    struct ratelimit *rl = ratelimit_new(0, 1, 4);
    int64_t retry;
    for (int i = 0; i < 1000; i++)
        assert_true(ratelimit_take(rl, "x", 0, &retry));
    assert_int_equal(ratelimit_size(rl), 0);
    ratelimit_free(rl);
}

static void memory_is_bounded_and_the_oldest_key_forgotten(void **state)
{
    struct ratelimit *rl = ratelimit_new(1, 1, 3);
    int64_t retry;
    char key[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_true(ratelimit_take(rl, key, 0, &retry));
        assert_true(ratelimit_size(rl) <= 3);
    }
    assert_int_equal(ratelimit_size(rl), 3);
    /* k997..k999 are remembered (empty); k0 was forgotten (full again) */
    assert_false(ratelimit_take(rl, "k999", 0, &retry));
    assert_true(ratelimit_take(rl, "k0", 0, &retry));
    /* using a key keeps it: k999 survives the next two new keys */
    assert_false(ratelimit_take(rl, "k999", 0, &retry));
    assert_true(ratelimit_take(rl, "n1", 0, &retry));
    assert_true(ratelimit_take(rl, "n2", 0, &retry));
    assert_false(ratelimit_take(rl, "k999", 0, &retry));
    ratelimit_free(rl);
}

struct taker {
    struct ratelimit *rl;
    int got;
};

static void *take_many(void *p)
{
    struct taker *t = p;
    int64_t retry;
    for (int i = 0; i < 5000; i++)
        t->got += ratelimit_take(t->rl, i % 2 ? "shared" : "other", 0, &retry);
    return NULL;
}

static void concurrent_takers_never_share_a_token(void **state)
{
    struct ratelimit *rl = ratelimit_new(1, 1000, 8);
    struct taker t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (struct taker){ rl, 0 };
        assert_int_equal(pthread_create(&th[i], NULL, take_many, &t[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += t[i].got;
    }
    assert_int_equal(total, 2000); /* two keys, 1000 each, time stands */
    ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_burst_passes_then_the_rate_refills),
        cmocka_unit_test(retry_after_counts_whole_seconds_to_the_next_token),
        cmocka_unit_test(rate_zero_never_limits),
        cmocka_unit_test(memory_is_bounded_and_the_oldest_key_forgotten),
        cmocka_unit_test(concurrent_takers_never_share_a_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
