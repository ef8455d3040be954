/* Token buckets in a hash table with an LRU list: lookups, refills and
 * evictions are O(1), one mutex guards the table. Tokens are counted in
 * millionths so refills need no floating point. */
#include "controller/ratelimit.h"

#include <pthread.h>

#define MICRO INT64_C(1000000)

struct bucket {
    struct bucket *next;              /* hash chain */
    struct bucket *lru_prev, *lru_next;
    int64_t tokens;                   /* millionths of a token */
    int64_t stamp_ms;                 /* last refill */
    uint32_t hash;
    char key[];
};

struct ratelimit {
    pthread_mutex_t lock;
    int64_t rate, burst;
    size_t max_keys, n_keys, n_slots;
    struct bucket **slots;
    struct bucket *lru_head, *lru_tail; /* head: most recently used */
};

static uint32_t key_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

struct ratelimit *ratelimit_new(int64_t rate, int64_t burst, size_t max_keys)
{
    struct ratelimit *rl = xcalloc(1, sizeof(*rl));
    pthread_mutex_init(&rl->lock, NULL);
    rl->rate = rate < 0 ? 0 : rate;
    rl->burst = burst < 1 ? 1 : burst;
    rl->max_keys = max_keys < 1 ? 1 : max_keys;
    rl->n_slots = 16;
    while (rl->n_slots < rl->max_keys * 2)
        rl->n_slots *= 2;
    rl->slots = xcalloc(rl->n_slots, sizeof(*rl->slots));
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (!rl)
        return;
    for (struct bucket *b = rl->lru_head, *n; b; b = n) {
        n = b->lru_next;
        free(b);
    }
    free(rl->slots);
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

static void lru_unlink(struct ratelimit *rl, struct bucket *b)
{
    if (b->lru_prev)
        b->lru_prev->lru_next = b->lru_next;
    else
        rl->lru_head = b->lru_next;
    if (b->lru_next)
        b->lru_next->lru_prev = b->lru_prev;
    else
        rl->lru_tail = b->lru_prev;
    b->lru_prev = b->lru_next = NULL;
}

static void lru_push(struct ratelimit *rl, struct bucket *b)
{
    b->lru_next = rl->lru_head;
    if (rl->lru_head)
        rl->lru_head->lru_prev = b;
    rl->lru_head = b;
    if (!rl->lru_tail)
        rl->lru_tail = b;
}

static void evict_oldest(struct ratelimit *rl)
{
    struct bucket *old = rl->lru_tail;
    struct bucket **pp = &rl->slots[old->hash & (rl->n_slots - 1)];
    while (*pp != old)
        pp = &(*pp)->next;
    *pp = old->next;
    lru_unlink(rl, old);
    free(old);
    rl->n_keys--;
}

static struct bucket *bucket_get(struct ratelimit *rl, const char *key,
                                 int64_t now_ms)
{
    uint32_t h = key_hash(key);
    struct bucket **slot = &rl->slots[h & (rl->n_slots - 1)];
    for (struct bucket *b = *slot; b; b = b->next)
        if (b->hash == h && streq(b->key, key)) {
            lru_unlink(rl, b);
            lru_push(rl, b);
            return b;
        }
    if (rl->n_keys >= rl->max_keys)
        evict_oldest(rl);
    size_t len = strlen(key);
    struct bucket *b = xcalloc(1, sizeof(*b) + len + 1);
    memcpy(b->key, key, len + 1);
    b->hash = h;
    b->tokens = rl->burst * MICRO;
    b->stamp_ms = now_ms;
    slot = &rl->slots[h & (rl->n_slots - 1)];
    b->next = *slot;
    *slot = b;
    lru_push(rl, b);
    rl->n_keys++;
    return b;
}

bool ratelimit_take(struct ratelimit *rl, const char *key, int64_t now_ms,
                    int64_t *ret_retry_s)
{
    if (__atomic_load_n(&rl->rate, __ATOMIC_RELAXED) == 0)
        return true;
    pthread_mutex_lock(&rl->lock);
    if (rl->rate == 0) { /* turned off by a reload meanwhile */
        pthread_mutex_unlock(&rl->lock);
        return true;
    }
    struct bucket *b = bucket_get(rl, key, now_ms);
    int64_t cap = rl->burst * MICRO;
    if (now_ms > b->stamp_ms) {
        int64_t elapsed = now_ms - b->stamp_ms;
        /* A bucket idle long enough is full: no overflow on long idles. */
        if (elapsed >= (cap / (rl->rate * 1000)) + 1)
            b->tokens = cap;
        else if ((b->tokens += elapsed * rl->rate * 1000) > cap)
            b->tokens = cap;
        b->stamp_ms = now_ms;
    }
    bool ok = b->tokens >= MICRO;
    if (ok) {
        b->tokens -= MICRO;
    } else {
        int64_t need_ms = (MICRO - b->tokens + rl->rate * 1000 - 1) /
                          (rl->rate * 1000);
        int64_t s = (need_ms + 999) / 1000;
        *ret_retry_s = s < 1 ? 1 : s;
    }
    pthread_mutex_unlock(&rl->lock);
    return ok;
}

size_t ratelimit_size(struct ratelimit *rl)
{
    pthread_mutex_lock(&rl->lock);
    size_t n = rl->n_keys;
    pthread_mutex_unlock(&rl->lock);
    return n;
}

void ratelimit_set(struct ratelimit *rl, int64_t rate, int64_t burst)
{
    pthread_mutex_lock(&rl->lock);
    __atomic_store_n(&rl->rate, rate, __ATOMIC_RELAXED);
    rl->burst = burst;
    /* Buckets fuller than the new burst are cut down to it on next use. */
    for (struct bucket *b = rl->lru_head; b; b = b->lru_next)
        if (b->tokens > burst * MICRO)
            b->tokens = burst * MICRO;
    pthread_mutex_unlock(&rl->lock);
}
