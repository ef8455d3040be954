/* Allocation wrappers and small parsing helpers shared by every folder. */
#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

static _noreturn_ void oom(void)
{
    fputs("fogfabric: out of memory\n", stderr);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom();
    return q;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        oom();
    return p;
}

char *xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (!p)
        oom();
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *p;

    va_start(ap, fmt);
    int r = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (r < 0)
        oom();
    return p;
}

bool mem_eq_ct(const void *a, const void *b, size_t n)
{
    const volatile unsigned char *x = a, *y = b;
    unsigned char d = 0;
    for (size_t i = 0; i < n; i++)
        d |= x[i] ^ y[i];
    return d == 0;
}

size_t sorted_at(const void *base, size_t n, size_t size, size_t off,
                 const char *key, bool *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp((const char *)base + mid * size + off, key);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

void *sorted_insert(void *basep, size_t *n, size_t size, size_t at)
{
    char *base = xrealloc(*(void **)basep, (*n + 1) * size);
    memmove(base + (at + 1) * size, base + at * size, (*n - at) * size);
    memset(base + at * size, 0, size);
    *(void **)basep = base;
    (*n)++;
    return base + at * size;
}

int parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
    char *end;

    if (!s || !*s)
        return -EINVAL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || end == s)
        return -EINVAL;
    if (errno == ERANGE || v < min || v > max)
        return -ERANGE;
    *ret = v;
    return 0;
}

int parse_size(const char *s, uint64_t unit, uint64_t *ret)
{
    char *end;
    uint64_t mult = 1;

    if (!s || !*s || *s == '-')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno)
        return -EINVAL;
    switch (*end) {
    case '\0': mult = unit; break; /* bare number is in the caller's unit */
    case 'K': case 'k': mult = 1ULL << 10; break;
    case 'M': case 'm': mult = 1ULL << 20; break;
    case 'G': case 'g': mult = 1ULL << 30; break;
    case 'T': case 't': mult = 1ULL << 40; break;
    default: return -EINVAL;
    }
    if (*end) {
        end++;
        if (*end == 'i')
            end++;
        if (*end == 'B' || *end == 'b')
            end++;
        if (*end)
            return -EINVAL;
    }
    if (v > UINT64_MAX / mult)
        return -ERANGE;
    uint64_t bytes = v * mult;
    *ret = (bytes + unit - 1) / unit;
    return 0;
}

/* Length of the well-formed UTF-8 sequence at p (n bytes left) that is
 * not ASCII, or 0: no overlong forms, surrogates or code points past
 * U+10FFFF (RFC 3629). */
size_t utf8_seq_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0)
        len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
        len = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}
