/* Money: signed 64-bit counts of nano-tokens (1 token = 10^9 nano), parsed
 * from and printed as exact decimals. Billing never uses floating point. */
#pragma once

#include "common/util.h"

#define MONEY_NANO_PER_TOKEN INT64_C(1000000000)
#define MONEY_FRACTION_DIGITS 9
#define MONEY_DEFAULT_SYMBOL "FOG"

/* Parse a decimal amount of tokens ("12.5", "-3", "0.000000001", "+7.")
 * into nano-tokens. At most 9 fraction digits; no exponent, no spaces, no
 * thousands separators. 0, -EINVAL (not a decimal, too many digits after
 * the point) or -ERANGE (does not fit an int64 of nano-tokens). */
int money_parse(const char *s, int64_t *ret_nano);

/* Exact decimal text of an amount: "12.5", "-0.000000001", "3" (trailing
 * fraction zeros dropped). With a symbol (NULL: none) it follows after a
 * space: "12.5 FOG". Caller frees. */
char *money_format(int64_t nano, const char *symbol);

/* Checked arithmetic: 0, or -ERANGE when the result leaves int64 (then
 * *ret is untouched). */
int money_add(int64_t a, int64_t b, int64_t *ret);
int money_sub(int64_t a, int64_t b, int64_t *ret);
