/* Rating: what a VM's usage costs under a locked offer (a deal), and how a
 * charge splits between the provider and the platform fee. Charges are
 * always computed from cumulative seconds (charge(total) - charge(billed)),
 * so however usage is chunked, the totals come out the same to the nano. */
#pragma once

#include "common/util.h"

#define RATING_SECONDS_PER_HOUR INT64_C(3600)
/* A disk month is 30 days. */
#define RATING_SECONDS_PER_MONTH (INT64_C(30) * 24 * 3600)
#define RATING_BPS_MAX INT64_C(10000)

/* Prices in nano-tokens. */
struct rating_offer {
    int64_t vcpu_hour;      /* per vCPU per hour */
    int64_t mem_gib_hour;   /* per GiB of memory per hour */
    int64_t disk_gib_month; /* per GiB of disk per 30 days */
    int64_t gpu_hour;       /* per GPU per hour */
    int64_t port_hour;      /* per published port per hour */
};

/* What is being rented. */
struct rating_shape {
    int64_t vcpus;
    int64_t memory_mib;
    int64_t disk_gib;
    int64_t gpus;
    int64_t ports;
};

/* One accrual step: the tenant pays `tenant`, the provider receives
 * `provider`, the hub `fee`; tenant == provider + fee always. */
struct rating_split {
    int64_t tenant;
    int64_t provider;
    int64_t fee;
};

/* True when every price and quantity is non-negative. */
bool rating_valid(const struct rating_offer *o, const struct rating_shape *sh);

/* Charge for `seconds` of running (floor of the exact rational sum over all
 * components, so only one rounding happens). 0, -EINVAL (negative price,
 * quantity or seconds) or -ERANGE (does not fit an int64). */
int rating_charge(const struct rating_offer *o, const struct rating_shape *sh,
                  int64_t seconds, int64_t *ret_nano);

/* Platform fee on a cumulative charge: floor(charge * bps / 10000).
 * 0, -EINVAL (bps outside 0..10000, negative charge). */
int rating_fee(int64_t charge, int64_t fee_bps, int64_t *ret_fee);

/* The step from `billed_s` to `total_s` cumulative seconds:
 * tenant = charge(total) - charge(billed), fee = fee(charge(total)) -
 * fee(charge(billed)), provider = tenant - fee. 0, -EINVAL (total <
 * billed, bad prices) or -ERANGE. */
int rating_step(const struct rating_offer *o, const struct rating_shape *sh,
                int64_t fee_bps, int64_t billed_s, int64_t total_s,
                struct rating_split *ret);

/* Cost of `seconds` at this offer, rounded up (for balance checks: what a
 * grace period will cost at most). Same errors as rating_charge. */
int rating_cost_ceil(const struct rating_offer *o, const struct rating_shape *sh,
                     int64_t seconds, int64_t *ret_nano);
