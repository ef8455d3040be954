/* Statement periods: calendar months in UTC ("2026-11"), as half-open
 * ranges of unix seconds. */
#pragma once

#include "common/util.h"

/* Parse "YYYY-MM" (year 1970..9999) into [start, end). 0 or -EINVAL. */
int period_parse(const char *s, int64_t *ret_start, int64_t *ret_end);
/* The month containing unix time t as "YYYY-MM" into out[8]. */
void period_of(int64_t t, char out[8]);
