/* Integer rating. Every component is brought to one common denominator
 * (3600 s x 1024 MiB x 720 hours-per-disk-month) so the sum is exact and
 * is rounded once. */
#include "billing/rating.h"

#include <errno.h>

typedef __int128 i128;

/* seconds-per-hour x MiB-per-GiB x hours-per-month */
#define DENOM ((i128)RATING_SECONDS_PER_HOUR * 1024 * 720)

bool rating_valid(const struct rating_offer *o, const struct rating_shape *sh)
{
    return o->vcpu_hour >= 0 && o->mem_gib_hour >= 0 &&
           o->disk_gib_month >= 0 && o->gpu_hour >= 0 && o->port_hour >= 0 &&
           sh->vcpus >= 0 && sh->memory_mib >= 0 && sh->disk_gib >= 0 &&
           sh->gpus >= 0 && sh->ports >= 0;
}

/* acc += price * qty * seconds * scale, checking overflow. */
static bool term(i128 *acc, int64_t price, int64_t qty, int64_t seconds,
                 int64_t scale)
{
    i128 t = price;
    if (__builtin_mul_overflow(t, (i128)qty, &t) ||
        __builtin_mul_overflow(t, (i128)seconds, &t) ||
        __builtin_mul_overflow(t, (i128)scale, &t) ||
        __builtin_add_overflow(*acc, t, acc))
        return false;
    return true;
}

/* The exact charge times DENOM. */
static int numerator(const struct rating_offer *o, const struct rating_shape *sh,
                     int64_t seconds, i128 *ret)
{
    if (seconds < 0 || !rating_valid(o, sh))
        return -EINVAL;
    i128 acc = 0;
    if (!term(&acc, o->vcpu_hour, sh->vcpus, seconds, 1024 * 720) ||
        !term(&acc, o->mem_gib_hour, sh->memory_mib, seconds, 720) ||
        !term(&acc, o->disk_gib_month, sh->disk_gib, seconds, 1024) ||
        !term(&acc, o->gpu_hour, sh->gpus, seconds, 1024 * 720) ||
        !term(&acc, o->port_hour, sh->ports, seconds, 1024 * 720))
        return -ERANGE;
    *ret = acc;
    return 0;
}

int rating_charge(const struct rating_offer *o, const struct rating_shape *sh,
                  int64_t seconds, int64_t *ret_nano)
{
    i128 n;
    int r = numerator(o, sh, seconds, &n);
    if (r < 0)
        return r;
    i128 c = n / DENOM; /* non-negative: truncation is floor */
    if (c > INT64_MAX)
        return -ERANGE;
    *ret_nano = (int64_t)c;
    return 0;
}

int rating_cost_ceil(const struct rating_offer *o, const struct rating_shape *sh,
                     int64_t seconds, int64_t *ret_nano)
{
    i128 n;
    int r = numerator(o, sh, seconds, &n);
    if (r < 0)
        return r;
    i128 c = n / DENOM + (n % DENOM != 0);
    if (c > INT64_MAX)
        return -ERANGE;
    *ret_nano = (int64_t)c;
    return 0;
}

int rating_fee(int64_t charge, int64_t fee_bps, int64_t *ret_fee)
{
    if (charge < 0 || fee_bps < 0 || fee_bps > RATING_BPS_MAX)
        return -EINVAL;
    *ret_fee = (int64_t)((i128)charge * fee_bps / RATING_BPS_MAX);
    return 0;
}

int rating_step(const struct rating_offer *o, const struct rating_shape *sh,
                int64_t fee_bps, int64_t billed_s, int64_t total_s,
                struct rating_split *ret)
{
    int64_t c0, c1, f0, f1;
    int r;
    if (billed_s < 0 || total_s < billed_s)
        return -EINVAL;
    if ((r = rating_charge(o, sh, billed_s, &c0)) < 0 ||
        (r = rating_charge(o, sh, total_s, &c1)) < 0 ||
        (r = rating_fee(c0, fee_bps, &f0)) < 0 ||
        (r = rating_fee(c1, fee_bps, &f1)) < 0)
        return r;
    /* charge() and fee() are monotone, so both steps are >= 0, and fee
     * steps never exceed charge steps (fee(c) - fee(c') <= c - c'). */
    ret->tenant = c1 - c0;
    ret->fee = f1 - f0;
    ret->provider = ret->tenant - ret->fee;
    return 0;
}
