/* The usage sampler: running time cut into numbered samples, resent
 * unchanged until acknowledged, numbers that survive a restart and never
 * repeat, and stops that close intervals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "nodeagent/meter.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <sys/stat.h>

#define A "11111111-1111-4111-8111-111111111111"
#define B "22222222-2222-4222-8222-222222222222"

/* The samples as "vm:seq:start-end ..." with VM ids shortened to A/B. */
static char *str(const json_t *samples)
{
    char *s = xstrdup("");
    size_t i;
    json_t *x;
    json_array_foreach(samples, i, x) {
        const char *vm = json_str(x, "vm");
        char *t = xasprintf("%s%s%s:%lld:%lld-%lld", s, *s ? " " : "",
                            streq(vm, A) ? "A" : streq(vm, B) ? "B" : "?",
                            (long long)json_int(x, "seq", -1),
                            (long long)json_int(x, "start", -1),
                            (long long)json_int(x, "end", -1));
        free(s);
        s = t;
    }
    return s;
}

/* Take and acknowledge at once (a post that succeeded). */
static char *take_ack(struct meter *m, int64_t now)
{
    json_auto_t *s = meter_take(m, now, 1000);
    meter_ack(m, s);
    return str(s);
}

static void running_time_is_cut_into_numbered_samples(void **state)
{
    struct meter *m = meter_new(NULL, 0);
    meter_observe(m, A, true, 100);
    _cleanup_free_ char *s1 = take_ack(m, 105);
    assert_string_equal(s1, "A:1:100-105");
    meter_observe(m, A, true, 107); /* still running: nothing new */
    _cleanup_free_ char *s2 = take_ack(m, 110);
    assert_string_equal(s2, "A:2:105-110");
    /* Nothing ran in between: no empty sample. */
    _cleanup_free_ char *s3 = take_ack(m, 110);
    assert_string_equal(s3, "");
    assert_int_equal(meter_pending(m), 0);
    meter_free(m);
}

static void unacknowledged_samples_are_resent_unchanged(void **state)
{
    struct meter *m = meter_new(NULL, 0);
    meter_observe(m, A, true, 100);
    json_auto_t *first = meter_take(m, 105, 1000);
    _cleanup_free_ char *s1 = str(first);
    assert_string_equal(s1, "A:1:100-105");
    /* The post failed: the retry carries the very same sample, and the
     * running time since keeps accumulating in the open interval. */
    json_auto_t *again = meter_take(m, 110, 1000);
    _cleanup_free_ char *s2 = str(again);
    assert_string_equal(s2, "A:1:100-105");
    assert_int_equal(meter_pending(m), 1);
    meter_ack(m, again);
    assert_int_equal(meter_pending(m), 0);
    _cleanup_free_ char *s3 = take_ack(m, 120);
    assert_string_equal(s3, "A:2:105-120");
    /* Acknowledging twice is harmless. */
    meter_ack(m, first);
    _cleanup_free_ char *s4 = take_ack(m, 121);
    assert_string_equal(s4, "A:3:120-121");
    meter_free(m);
}

static void a_stop_closes_the_interval(void **state)
{
    struct meter *m = meter_new(NULL, 0);
    meter_observe(m, A, true, 100);
    meter_observe(m, B, false, 100); /* never ran: nothing */
    meter_observe(m, A, false, 130);
    meter_observe(m, A, false, 140);
    _cleanup_free_ char *s1 = take_ack(m, 150);
    assert_string_equal(s1, "A:1:100-130");
    /* Started again: a new interval, the next number. */
    meter_observe(m, A, true, 200);
    meter_observe(m, B, true, 200);
    _cleanup_free_ char *s2 = take_ack(m, 210);
    assert_string_equal(s2, "A:2:200-210 B:1:200-210");
    /* A stop while an earlier sample waits for its acknowledgement. */
    json_auto_t *w = meter_take(m, 220, 1000);
    meter_observe(m, A, false, 225);
    _cleanup_free_ char *s3 = take_ack(m, 230);
    assert_string_equal(s3, "A:3:210-220 A:4:220-225 B:2:210-220");
    meter_free(m);
}

static void at_most_max_samples_per_post(void **state)
{
    struct meter *m = meter_new(NULL, 0);
    for (int i = 0; i < 5; i++) {
        meter_observe(m, A, true, 100 + 10 * i);
        meter_observe(m, A, false, 105 + 10 * i);
    }
    json_auto_t *s = meter_take(m, 200, 3);
    _cleanup_free_ char *t = str(s);
    assert_string_equal(t, "A:1:100-105 A:2:110-115 A:3:120-125");
    meter_ack(m, s);
    _cleanup_free_ char *t2 = take_ack(m, 200);
    assert_string_equal(t2, "A:4:130-135 A:5:140-145");
    meter_free(m);
}

static void vms_no_longer_desired_are_forgotten(void **state)
{
    struct meter *m = meter_new(NULL, 0);
    meter_observe(m, A, true, 100);
    meter_observe(m, B, true, 100);
    json_auto_t *w = meter_take(m, 110, 1000);
    assert_int_equal(meter_pending(m), 2);
    json_auto_t *vms = json_pack("[{s:s}]", "id", B);
    meter_retain(m, vms);
    _cleanup_free_ char *s = take_ack(m, 120);
    assert_string_equal(s, "B:1:100-110");
    meter_free(m);
}

/* Many VMs, the desired ones listed in another order than observed:
 * each kept or forgotten by its own id. */
static void retained_vms_are_matched_by_id(void **state)
{
    (void)state;
    struct meter *m = meter_new(NULL, 0);
    char ids[40][UUID_STR_LEN + 1];
    json_auto_t *vms = json_array();
    for (int i = 0; i < 40; i++) {
        snprintf(ids[i], sizeof(ids[i]),
                 "%08x-0000-4000-8000-000000000000", 0x40 - i);
        meter_observe(m, ids[i], true, 100);
    }
    for (int j = 0; j < 40; j++) {
        int i = (j * 7) % 40; /* every one, shuffled */
        if (i % 3 == 0)
            json_array_append_new(vms, json_pack("{s:s}", "id", ids[i]));
    }
    json_auto_t *w = meter_take(m, 110, 1000);
    assert_int_equal(meter_pending(m), 40);
    meter_retain(m, vms);
    assert_int_equal(meter_pending(m), 14);
    json_auto_t *left = meter_take(m, 110, 1000);
    size_t i;
    json_t *s;
    json_array_foreach(left, i, s) {
        const char *id = json_str(s, "vm");
        int k = -1;
        for (int j = 0; j < 40; j++)
            if (streq(ids[j], id))
                k = j;
        assert_true(k >= 0 && k % 3 == 0);
    }
    meter_free(m);
}

static void numbers_and_unsent_samples_survive_a_restart(void **state)
{
    _cleanup_free_ char *dir = tu_tempdir("meter");
    _cleanup_free_ char *path = xasprintf("%s/meter.json", dir);
    struct meter *m = meter_new(path, 1000);
    meter_observe(m, A, true, 100);
    _cleanup_free_ char *s1 = take_ack(m, 105);
    assert_string_equal(s1, "A:1:100-105");
    json_auto_t *lost = meter_take(m, 110, 1000); /* sent, no answer */
    meter_free(m); /* the agent dies */

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0077, 0);
    m = meter_new(path, 2000);
    /* The same sample again, then new numbers; the interval that was open
     * when the agent died is not claimed. */
    meter_observe(m, A, true, 300);
    _cleanup_free_ char *s2 = take_ack(m, 305);
    assert_string_equal(s2, "A:2:105-110");
    _cleanup_free_ char *s3 = take_ack(m, 306);
    assert_string_equal(s3, "A:3:300-306");
    meter_free(m);

    m = meter_new(path, 3000);
    meter_observe(m, A, true, 400);
    _cleanup_free_ char *s4 = take_ack(m, 401);
    assert_string_equal(s4, "A:4:400-401");
    meter_free(m);
    tu_rmrf(dir);
}

static void a_damaged_file_never_lets_numbers_repeat(void **state)
{
    _cleanup_free_ char *dir = tu_tempdir("meter");
    _cleanup_free_ char *path = xasprintf("%s/meter.json", dir);
    assert_int_equal(file_write_atomic(path, "{\"vms\": [", 9, 0600), 0);
    struct meter *m = meter_new(path, 1700000000);
    meter_observe(m, A, true, 100);
    _cleanup_free_ char *s = take_ack(m, 101);
    /* Above any number a sampler could have handed out before. */
    assert_string_equal(s, "A:1700000000000:100-101");
    meter_free(m);
    /* The replacement file is good again. */
    m = meter_new(path, 1800000000);
    meter_observe(m, A, true, 200);
    _cleanup_free_ char *s2 = take_ack(m, 201);
    assert_string_equal(s2, "A:1700000000001:200-201");
    meter_free(m);

    static const char *const bad[] = {
        "{\"version\":1,\"vms\":{\"x\":{\"next_seq\":1,\"pending\":[]}}}",
        "{\"version\":1,\"vms\":{\"" A "\":{\"next_seq\":0,\"pending\":[]}}}",
        "{\"version\":1,\"vms\":{\"" A "\":{\"next_seq\":3,\"pending\":[[3,1,2]]}}}",
        "{\"version\":1,\"vms\":{\"" A "\":{\"next_seq\":3,\"pending\":[[1,5,2]]}}}",
        "{\"version\":2,\"vms\":{}}",
        /* The next number would overflow. */
        "{\"version\":1,\"vms\":{\"" A "\":{\"next_seq\":9223372036854775807,"
        "\"pending\":[]}}}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_int_equal(file_write_atomic(path, bad[i], strlen(bad[i]), 0600), 0);
        m = meter_new(path, 5);
        meter_observe(m, A, true, 10);
        _cleanup_free_ char *t = take_ack(m, 11);
        assert_string_equal(t, "A:5000:10-11");
        meter_free(m);
    }
    tu_rmrf(dir);
}

/* A post refused for one sample: only the sample the controller named
 * (by index, VM and number) is forgotten; the others are sent again and
 * stay until acknowledged. A refusal naming a sample by a number that
 * does not match drops nothing. */
static void only_the_samples_the_controller_refused_are_dropped(void **state)
{
    struct meter *m = meter_new(NULL, 0);
    meter_observe(m, A, true, 100);
    meter_observe(m, B, true, 100);
    meter_observe(m, A, false, 110);
    meter_observe(m, A, true, 120);
    json_auto_t *s = meter_take(m, 130, 1000);
    _cleanup_free_ char *all = str(s);
    assert_string_equal(all, "A:1:100-110 B:1:100-130");
    assert_int_equal(meter_pending(m), 2);

    /* Stale or made-up entries: wrong seq, wrong vm, index out of range. */
    json_auto_t *wrong = json_pack("[{s:i, s:s, s:i}, {s:i, s:s, s:i}, "
                                   "{s:i, s:s, s:i}]", "index", 0, "vm", A,
                                   "seq", 2, "index", 1, "vm", A, "seq", 1,
                                   "index", 7, "vm", B, "seq", 1);
    size_t dropped = 99;
    json_auto_t *same = meter_refused(m, s, wrong, &dropped);
    assert_int_equal(dropped, 0);
    _cleanup_free_ char *kept = str(same);
    assert_string_equal(kept, all);
    assert_int_equal(meter_pending(m), 2);

    json_auto_t *named = json_pack("[{s:i, s:s, s:i, s:s}]", "index", 1, "vm",
                                   B, "seq", 1, "reason", "malformed");
    json_auto_t *rest = meter_refused(m, s, named, &dropped);
    assert_int_equal(dropped, 1);
    _cleanup_free_ char *r = str(rest);
    assert_string_equal(r, "A:1:100-110");
    assert_int_equal(meter_pending(m), 1);
    /* Until acknowledged, the rest is sent again unchanged. */
    json_auto_t *again = meter_take(m, 131, 1000);
    _cleanup_free_ char *a2 = str(again);
    assert_string_equal(a2, "A:1:100-110 B:2:130-131");
    meter_ack(m, rest);
    assert_int_equal(meter_pending(m), 1);
    meter_free(m);
}

/* While the controller takes nothing, a VM started and stopped over and
 * over keeps at most 1000 samples: the oldest go first. */
static void unacknowledged_samples_are_bounded_per_vm(void **state)
{
    struct meter *m = meter_new(NULL, 0);
    for (int64_t i = 0; i < 1005; i++) {
        meter_observe(m, A, true, 100 + 10 * i);
        meter_observe(m, A, false, 105 + 10 * i);
    }
    assert_int_equal(meter_pending(m), 1000);
    json_auto_t *s = meter_take(m, 20000, 2000);
    assert_int_equal(json_array_size(s), 1000);
    assert_int_equal(json_int(json_array_get(s, 0), "seq", 0), 6);
    assert_int_equal(json_int(json_array_get(s, 999), "seq", 0), 1005);
    meter_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(running_time_is_cut_into_numbered_samples),
        cmocka_unit_test(unacknowledged_samples_are_resent_unchanged),
        cmocka_unit_test(a_stop_closes_the_interval),
        cmocka_unit_test(at_most_max_samples_per_post),
        cmocka_unit_test(vms_no_longer_desired_are_forgotten),
        cmocka_unit_test(retained_vms_are_matched_by_id),
        cmocka_unit_test(numbers_and_unsent_samples_survive_a_restart),
        cmocka_unit_test(a_damaged_file_never_lets_numbers_repeat),
        cmocka_unit_test(only_the_samples_the_controller_refused_are_dropped),
        cmocka_unit_test(unacknowledged_samples_are_bounded_per_vm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
