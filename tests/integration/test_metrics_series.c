/* The controller's /metrics: state series read 0 instead of vanishing, and
 * agents' parked long polls are counted as requests but kept out of the
 * latency histogram (fog_http_longpolls_total counts them instead). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/timeutil.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static struct tu_ctl ctl;
static struct tu_agent agent;

static int setup(void **state)
{
    /* Polls held 1 s: parked, then answered unchanged, every second. */
    static const char *ctl_args[] = { "--heartbeat", "1", "--longpoll", "1",
                                      "--no-inspect", NULL };
    tu_ctl_start(&ctl, ctl_args);
    tu_agent_start(&agent, &ctl, "as-metrics", 2, 4096);
    return 0;
}

static int teardown(void **state)
{
    tu_agent_destroy(&agent);
    tu_ctl_destroy(&ctl);
    return 0;
}

/* The metrics text (caller frees). */
static char *metrics(void) { return tu_metrics_text(&ctl); }

/* The value of the series line starting with `series ` (-1 when absent). */
static long long series(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            return strtoll(p + n + 1, NULL, 10);
    return -1;
}

static void state_series_read_zero(void **state)
{
    _cleanup_free_ char *m = metrics();
    assert_int_equal(series(m, "fog_vms{state=\"lost\"}"), 0);
    assert_int_equal(series(m, "fog_vms{state=\"running\"}"), 0);
    assert_int_equal(series(m, "fog_nodes{state=\"unreachable\"}"), 0);
}

static void long_polls_stay_out_of_the_latency_histogram(void **state)
{
    /* Wait (generously) until some poll was parked and answered. */
    int64_t end = mono_ms() + 60000;
    char *m = NULL;
    while (mono_ms() < end) {
        free(m);
        m = metrics();
        if (series(m, "fog_http_longpolls_total") > 0)
            break;
        usleep(200000);
    }
    assert_true(series(m, "fog_http_longpolls_total") > 0);
    /* One snapshot: every answered request is either in the histogram or
     * a long poll, never both. */
    long long requests = 0;
    for (const char *p = m; (p = strstr(p, "\nfog_http_requests_total{"));) {
        p = strchr(p, '}');
        requests += strtoll(p + 2, NULL, 10);
    }
    long long hist = series(m, "fog_http_request_duration_seconds_count");
    long long polls = series(m, "fog_http_longpolls_total");
    assert_int_equal(hist + polls, requests);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(state_series_read_zero),
        cmocka_unit_test(long_polls_stay_out_of_the_latency_histogram),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
