/* Month arithmetic on the proleptic Gregorian calendar in integers
 * (Howard Hinnant's days_from_civil), independent of the C library's
 * time zone handling. */
#include "billing/period.h"

#include <errno.h>

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int period_parse(const char *s, int64_t *ret_start, int64_t *ret_end)
{
    if (!s || strlen(s) != 7 || s[4] != '-')
        return -EINVAL;
    for (int i = 0; i < 7; i++)
        if (i != 4 && (s[i] < '0' || s[i] > '9'))
            return -EINVAL;
    int64_t y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 +
                (s[3] - '0');
    int64_t m = (s[5] - '0') * 10 + (s[6] - '0');
    if (y < 1970 || m < 1 || m > 12)
        return -EINVAL;
    *ret_start = days_from_civil(y, m, 1) * 86400;
    *ret_end = (m == 12 ? days_from_civil(y + 1, 1, 1)
                        : days_from_civil(y, m + 1, 1)) * 86400;
    return 0;
}

void period_of(int64_t t, char out[8])
{
    /* civil_from_days */
    int64_t z = (t >= 0 ? t : t - 86399) / 86400 + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t m = mp + (mp < 10 ? 3 : -9);
    int64_t y = yoe + era * 400 + (m <= 2);
    unsigned yy = (unsigned)(y % 10000), mm = (unsigned)m % 100;
    out[0] = (char)('0' + yy / 1000);
    out[1] = (char)('0' + yy / 100 % 10);
    out[2] = (char)('0' + yy / 10 % 10);
    out[3] = (char)('0' + yy % 10);
    out[4] = '-';
    out[5] = (char)('0' + mm / 10);
    out[6] = (char)('0' + mm % 10);
    out[7] = '\0';
}
