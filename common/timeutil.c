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

int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void time_format_rfc3339(int64_t unix_s, char out[21])
{
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
