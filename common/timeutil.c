/* Clocks and RFC 3339 formatting. */
#include "common/timeutil.h"

#include "common/fs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t time_test_skew(void)
{
    const char *path = getenv("FOG_TEST_CLOCK");
    if (!path || !*path)
        return 0;
    _cleanup_free_ char *text = NULL;
    if (file_read(path, 64, &text, NULL) < 0)
        return 0;
    int64_t v;
    text[strcspn(text, " \n")] = '\0';
    return parse_int64(text, -(INT64_C(1) << 40), INT64_C(1) << 40, &v) == 0
               ? v : 0;
}

int64_t now_s(void) { return (int64_t)time(NULL) + time_test_skew(); }

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((int64_t)ts.tv_sec + time_test_skew()) * 1000 +
           ts.tv_nsec / 1000000;
}

int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((int64_t)ts.tv_sec + time_test_skew()) * 1000000 +
           ts.tv_nsec / 1000;
}

int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Two digits of v at p. */
static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

void time_format_rfc3339(int64_t unix_s, char out[21])
{
    /* Years 1970 to 9999 by arithmetic (civil_from_days, H. Hinnant's
     * calendar algorithms): an answer with many times calls this per row,
     * and gmtime_r + strftime cost a microsecond each time. */
    if (unix_s >= 0 && unix_s <= INT64_C(253402300799)) {
        int64_t days = unix_s / 86400, sec = unix_s % 86400;
        int64_t z = days + 719468;
        int64_t era = z / 146097;
        int64_t doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        int64_t mp = (5 * doy + 2) / 153;
        int d = (int)(doy - (153 * mp + 2) / 5 + 1);
        int m = (int)(mp < 10 ? mp + 3 : mp - 9);
        int y = (int)(yoe + era * 400 + (m <= 2));
        put2(out, y / 100);
        put2(out + 2, y % 100);
        out[4] = '-';
        put2(out + 5, m);
        out[7] = '-';
        put2(out + 8, d);
        out[10] = 'T';
        put2(out + 11, (int)(sec / 3600));
        out[13] = ':';
        put2(out + 14, (int)(sec / 60 % 60));
        out[16] = ':';
        put2(out + 17, (int)(sec % 60));
        out[19] = 'Z';
        out[20] = '\0';
        return;
    }
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int time_parse_rfc3339(const char *s, int64_t *ret)
{
    struct tm tm = { 0 };
    if (!s)
        return -EINVAL;
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end)
        return -EINVAL;
    *ret = (int64_t)timegm(&tm);
    return 0;
}
