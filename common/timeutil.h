/* Clocks and time formatting. */
#pragma once

#include "common/util.h"

/* Wall clock, seconds and milliseconds since the epoch. */
/* Test seam, used by tests only: while the environment names a file in
 * FOG_TEST_CLOCK, the seconds it holds (a decimal, may be negative) are
 * added to the wall clock below, so a test moves a daemon's time (backup
 * schedules, retention, ages) without waiting. 0 when unarmed (one
 * getenv). */
int64_t time_test_skew(void);
int64_t now_s(void);
int64_t now_ms(void);
/* Microseconds, for stamps that time one change's way between daemons. */
int64_t now_us(void);
/* Monotonic clock in milliseconds, for timeouts and durations. */
int64_t mono_ms(void);
/* RFC 3339 UTC ("2026-11-25T05:43:49Z") into out[21]. */
void time_format_rfc3339(int64_t unix_s, char out[21]);
/* Parse RFC 3339 UTC with 'Z' (seconds precision). 0 or -EINVAL. */
int time_parse_rfc3339(const char *s, int64_t *ret);
