/* Decimal parsing and printing of nano-token amounts, with overflow
 * checks, in integers only. */
#include "billing/money.h"

#include "common/buf.h"

#include <errno.h>

int money_parse(const char *s, int64_t *ret_nano)
{
    if (!s)
        return -EINVAL;
    bool neg = false;
    const char *p = s;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    /* Accumulate the magnitude as a negative number: INT64_MIN has no
     * positive counterpart, and "-9223372036.854775808" is representable. */
    int64_t acc = 0;
    int int_digits = 0, frac_digits = 0;
    bool overflow = false;
    for (; *p >= '0' && *p <= '9'; p++, int_digits++) {
        int d = *p - '0';
        if (__builtin_mul_overflow(acc, 10, &acc) ||
            __builtin_sub_overflow(acc, d, &acc))
            overflow = true;
    }
    if (*p == '.') {
        p++;
        for (; *p >= '0' && *p <= '9'; p++, frac_digits++) {
            if (frac_digits >= MONEY_FRACTION_DIGITS)
                return -EINVAL;
            int d = *p - '0';
            if (__builtin_mul_overflow(acc, 10, &acc) ||
                __builtin_sub_overflow(acc, d, &acc))
                overflow = true;
        }
    }
    if (*p != '\0' || int_digits + frac_digits == 0)
        return -EINVAL;
    for (int k = frac_digits; k < MONEY_FRACTION_DIGITS; k++)
        if (__builtin_mul_overflow(acc, 10, &acc))
            overflow = true;
    if (overflow)
        return -ERANGE;
    if (!neg) {
        if (acc == INT64_MIN)
            return -ERANGE;
        acc = -acc;
    }
    *ret_nano = acc;
    return 0;
}

char *money_format(int64_t nano, const char *symbol)
{
    /* Magnitude as unsigned: -INT64_MIN does not fit an int64. */
    uint64_t mag = nano < 0 ? (uint64_t)0 - (uint64_t)nano : (uint64_t)nano;
    uint64_t whole = mag / (uint64_t)MONEY_NANO_PER_TOKEN;
    uint64_t frac = mag % (uint64_t)MONEY_NANO_PER_TOKEN;
    struct buf b = BUF_INIT;
    buf_printf(&b, "%s%llu", nano < 0 ? "-" : "", (unsigned long long)whole);
    if (frac) {
        char digits[MONEY_FRACTION_DIGITS + 1];
        int w = MONEY_FRACTION_DIGITS;
        for (int i = MONEY_FRACTION_DIGITS - 1; i >= 0; i--) {
            digits[i] = (char)('0' + frac % 10);
            frac /= 10;
        }
        while (w > 0 && digits[w - 1] == '0')
            w--;
        digits[w] = '\0';
        buf_printf(&b, ".%s", digits);
    }
    if (symbol && *symbol)
        buf_printf(&b, " %s", symbol);
    return buf_steal(&b);
}

int money_add(int64_t a, int64_t b, int64_t *ret)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return -ERANGE;
    *ret = r;
    return 0;
}

int money_sub(int64_t a, int64_t b, int64_t *ret)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r))
        return -ERANGE;
    *ret = r;
    return 0;
}
