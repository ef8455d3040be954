/* Token buckets keyed by strings (client addresses, API keys, nodes): the
 * controller's rate limits. Memory is bounded: a table holds at most
 * max_keys buckets and forgets the least recently used one first (a
 * forgotten key starts again with a full bucket). Thread-safe. */
#pragma once

#include "common/util.h"

struct ratelimit;

/* A table refilling `rate` tokens a second up to `burst` per key, holding
 * at most max_keys keys (>= 1). rate 0 makes a table that never limits.
 * Caller owns the result; free with ratelimit_free(). */
struct ratelimit *ratelimit_new(int64_t rate, int64_t burst, size_t max_keys);
void ratelimit_free(struct ratelimit *rl);

/* Take one token from key's bucket at monotonic time now_ms. true when
 * there was one; false when the bucket is empty, with the whole seconds
 * (>= 1) until the next token in *ret_retry_s. */
bool ratelimit_take(struct ratelimit *rl, const char *key, int64_t now_ms,
                    int64_t *ret_retry_s);

/* Change the rate and burst of every bucket (a reload): buckets keep
 * their tokens, at most the new burst. */
void ratelimit_set(struct ratelimit *rl, int64_t rate, int64_t burst);

/* Keys held now (at most max_keys). */
size_t ratelimit_size(struct ratelimit *rl);
