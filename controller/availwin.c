/* Availability windows: parse, format and match weekly windows (see
 * availwin.h). Times are minutes of the node's local week, from a fixed
 * offset east of UTC; no time zone database is read. */
#include "controller/availwin.h"

#include "common/buf.h"
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const day_names[7] = { "mon", "tue", "wed", "thu",
                                          "fri", "sat", "sun" };

static int day_of(const char *s, size_t len)
{
    for (int d = 0; d < 7; d++)
        if (len == 3 && strncasecmp(s, day_names[d], 3) == 0)
            return d;
    return -1;
}

/* "HH:MM" with HH 0..24 (24 only as 24:00) into minutes, or -1. */
static int clock_of(const char *s, size_t len)
{
    if (len != 5 || s[2] != ':' || !isdigit((unsigned char)s[0]) ||
        !isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[3]) ||
        !isdigit((unsigned char)s[4]))
        return -1;
    int h = (s[0] - '0') * 10 + (s[1] - '0');
    int m = (s[3] - '0') * 10 + (s[4] - '0');
    if (m > 59 || h > 24 || (h == 24 && m != 0))
        return -1;
    return h * 60 + m;
}

static int bad(char **ret_bad, const char *s, size_t len)
{
    if (ret_bad)
        *ret_bad = xstrndup(s, len);
    return -EINVAL;
}

/* "mon", "mon-fri", "fri-mon" (wrapping) or "daily" into a day mask. */
static int days_of(const char *s, size_t len, uint8_t *mask)
{
    if (len == 5 && strncasecmp(s, "daily", 5) == 0) {
        *mask |= 0x7f;
        return 0;
    }
    const char *dash = memchr(s, '-', len);
    int a = day_of(s, dash ? (size_t)(dash - s) : len);
    int b = dash ? day_of(dash + 1, len - (size_t)(dash - s) - 1) : a;
    if (a < 0 || b < 0)
        return -EINVAL;
    for (int d = a;; d = (d + 1) % 7) {
        *mask |= (uint8_t)(1u << d);
        if (d == b)
            break;
    }
    return 0;
}

int availwin_parse(const char *text, struct availwin *ret, char **ret_bad)
{
    if (!text)
        return bad(ret_bad, "", 0);
    const char *p = text;
    while (*p == ' ')
        p++;
    const char *sp = strchr(p, ' ');
    if (!sp || sp == p)
        return bad(ret_bad, p, strlen(p));
    uint8_t mask = 0;
    for (const char *t = p; t < sp;) {
        const char *comma = memchr(t, ',', (size_t)(sp - t));
        const char *e = comma ? comma : sp;
        if (days_of(t, (size_t)(e - t), &mask) < 0)
            return bad(ret_bad, t, (size_t)(e - t));
        t = comma ? comma + 1 : sp;
        if (comma && t == sp)
            return bad(ret_bad, p, (size_t)(sp - p));
    }
    const char *h = sp;
    while (*h == ' ')
        h++;
    size_t hl = strlen(h);
    while (hl > 0 && h[hl - 1] == ' ')
        hl--;
    const char *dash = memchr(h, '-', hl);
    if (!dash)
        return bad(ret_bad, h, hl);
    int start = clock_of(h, (size_t)(dash - h));
    if (start < 0 || start == 1440)
        return bad(ret_bad, h, (size_t)(dash - h));
    int end = clock_of(dash + 1, hl - (size_t)(dash - h) - 1);
    if (end <= 0 || end == start)
        return bad(ret_bad, dash + 1, hl - (size_t)(dash - h) - 1);
    *ret = (struct availwin){ mask, (int16_t)start, (int16_t)end };
    return 0;
}

int availwin_tz_parse(const char *text, int *ret_min)
{
    if (!text)
        return -EINVAL;
    if (strcasecmp(text, "UTC") == 0 || strcmp(text, "Z") == 0) {
        *ret_min = 0;
        return 0;
    }
    int m;
    if ((text[0] != '+' && text[0] != '-') || (m = clock_of(text + 1,
                                                strlen(text + 1))) < 0 ||
        m > 14 * 60)
        return -EINVAL;
    *ret_min = text[0] == '-' ? -m : m;
    return 0;
}

/* Days as the shortest text: "daily", runs as "mon-fri", else a list. */
static void days_format(uint8_t mask, struct buf *b)
{
    if (mask == 0x7f) {
        buf_puts(b, "daily");
        return;
    }
    /* Start a run where the previous day is not in the mask, so a run
     * across Sunday ("fri-mon") stays one. */
    int first = 0;
    while (first < 7 && (mask & (1u << ((first + 6) % 7))))
        first++;
    bool any = false;
    for (int i = 0; i < 7; i++) {
        int d = (first + i) % 7;
        if (!(mask & (1u << d)))
            continue;
        int e = d, len = 1;
        while (len < 7 && (mask & (1u << ((e + 1) % 7))) && i + len < 7) {
            e = (e + 1) % 7;
            len++;
        }
        buf_printf(b, "%s%s", any ? "," : "", day_names[d]);
        if (len > 1)
            buf_printf(b, "-%s", day_names[e]);
        any = true;
        i += len - 1;
    }
}

char *availwin_format(const struct availwin *w)
{
    struct buf b = BUF_INIT;
    days_format(w->days, &b);
    buf_printf(&b, " %02d:%02d-%02d:%02d", w->start / 60, w->start % 60,
               w->end / 60, w->end % 60);
    return buf_steal(&b);
}

char *availwin_tz_format(int tz_min)
{
    if (tz_min == 0)
        return xstrdup("UTC");
    int m = tz_min < 0 ? -tz_min : tz_min;
    return xasprintf("%c%02d:%02d", tz_min < 0 ? '-' : '+', m / 60, m % 60);
}

bool availwin_open(const struct availwin *w, size_t n, int64_t t, int tz_min)
{
    if (n == 0)
        return true;
    int64_t local = t + (int64_t)tz_min * 60;
    int64_t day = local >= 0 ? local / 86400 : (local - 86399) / 86400;
    int min = (int)((local - day * 86400) / 60);
    int dow = (int)(((day + 3) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
    int prev = (dow + 6) % 7;
    for (size_t i = 0; i < n; i++) {
        bool today = w[i].days & (1u << dow);
        bool yday = w[i].days & (1u << prev);
        if (w[i].start < w[i].end) {
            if (today && min >= w[i].start && min < w[i].end)
                return true;
        } else if ((today && min >= w[i].start) || (yday && min < w[i].end)) {
            return true;
        }
    }
    return false;
}

int availwin_list_parse(const char *text, struct availwin *w, size_t *ret_n)
{
    size_t n = 0;
    const char *p = text ? text : "";
    while (*p) {
        const char *semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        _cleanup_free_ char *one = xstrndup(p, len);
        if (n == AVAILWIN_MAX || availwin_parse(one, &w[n], NULL) < 0)
            return -EINVAL;
        n++;
        p = semi ? semi + 1 : p + len;
    }
    *ret_n = n;
    return 0;
}

json_t *availwin_list_json(const char *text)
{
    json_t *arr = json_array();
    const char *p = text ? text : "";
    while (*p) {
        while (*p == ' ')
            p++;
        const char *semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        if (len > 0)
            json_array_append_new(arr, json_stringn(p, len));
        p += len + (semi ? 1 : 0);
    }
    return arr;
}
