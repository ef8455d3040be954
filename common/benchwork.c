/* The benchmark challenge's work and its check (see benchwork.h).
 *
 * Why this scheme: the hub must verify an answer for a small fraction of
 * the work it asked for, and no shortcut may make a node look faster.
 *  - Block i of the buffer is SHA-256(nonce || i): the worker fills the
 *    whole buffer (memory bandwidth, all lanes in parallel); the verifier
 *    computes just the blocks it needs.
 *  - Each lane walks a chain s' = SHA-256(s || block[s mod blocks] ||
 *    step): the next read depends on the last hash, so the reads can be
 *    neither predicted nor batched. The buffer is only read, so a
 *    segment can be recomputed from its first checkpoint alone.
 *  - The answer lists each lane's state every steps/segments steps. The
 *    hub recomputes a few segments it draws after the answer arrived: a
 *    node that invented a share f of its segments passes k draws with
 *    probability (1 - f)^k, and a forged checkpoint breaks the segment
 *    on each side of it.
 *  - A node that keeps no buffer pays a second hash for each read, so
 *    skipping the memory only makes it slower; the time is measured by
 *    the hub (issue to answer), never taken from the node. */
#include "common/benchwork.h"
#include "common/ids.h"

#include <errno.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_le64(uint8_t *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

uint64_t bench_blocks(const struct bench_params *p)
{
    return (uint64_t)p->memory_mib << 20 >> 5; /* / BENCH_HASH_LEN */
}

uint64_t bench_steps(const struct bench_params *p)
{
    return (uint64_t)p->rounds * bench_blocks(p);
}

int bench_params_check(const struct bench_params *p)
{
    if (p->memory_mib < BENCH_MEMORY_MIN_MIB ||
        p->memory_mib > BENCH_MEMORY_MAX_MIB || p->rounds < 1 ||
        p->rounds > BENCH_ROUNDS_MAX || p->lanes < 1 ||
        p->lanes > BENCH_LANES_MAX || p->segments < 1 ||
        p->segments > BENCH_SEGMENTS_MAX || bench_steps(p) % p->segments)
        return -EINVAL;
    return 0;
}

static void block_of(const struct bench_params *p, uint64_t i, uint8_t *out)
{
    struct sha256_ctx c;
    uint8_t le[8];
    put_le64(le, i);
    sha256_init(&c);
    sha256_update(&c, BENCH_NONCE_LEN, p->nonce);
    sha256_update(&c, sizeof(le), le);
    sha256_digest(&c, BENCH_HASH_LEN, out);
}

static void seed_of(const struct bench_params *p, uint32_t lane, uint8_t *out)
{
    static const char tag[] = "fogfabric bench lane";
    struct sha256_ctx c;
    uint8_t le[8];
    put_le64(le, lane);
    sha256_init(&c);
    sha256_update(&c, sizeof(tag) - 1, (const uint8_t *)tag);
    sha256_update(&c, BENCH_NONCE_LEN, p->nonce);
    sha256_update(&c, sizeof(le), le);
    sha256_digest(&c, BENCH_HASH_LEN, out);
}

/* One step from state s (in place), reading block `blk` at step t. */
static void step(uint8_t *s, const uint8_t *blk, uint64_t t)
{
    struct sha256_ctx c;
    uint8_t le[8];
    put_le64(le, t);
    sha256_init(&c);
    sha256_update(&c, BENCH_HASH_LEN, s);
    sha256_update(&c, BENCH_HASH_LEN, blk);
    sha256_update(&c, sizeof(le), le);
    sha256_digest(&c, BENCH_HASH_LEN, s);
}

struct lane_job {
    const struct bench_params *p;
    uint8_t *buf;
    uint8_t *cp;            /* this lane's segments + 1 checkpoints */
    uint32_t lane;
};

/* Fill this lane's share of the buffer. */
static void *lane_fill(void *arg)
{
    struct lane_job *j = arg;
    const struct bench_params *p = j->p;
    uint64_t n = bench_blocks(p);
    uint64_t from = n * j->lane / p->lanes, to = n * (j->lane + 1) / p->lanes;
    for (uint64_t i = from; i < to; i++)
        block_of(p, i, j->buf + i * BENCH_HASH_LEN);
    return NULL;
}

/* Walk this lane's chain over the filled buffer. */
static void *lane_walk(void *arg)
{
    struct lane_job *j = arg;
    const struct bench_params *p = j->p;
    uint64_t n = bench_blocks(p), seg = bench_steps(p) / p->segments;
    uint8_t s[BENCH_HASH_LEN];
    seed_of(p, j->lane, s);
    memcpy(j->cp, s, BENCH_HASH_LEN);
    uint64_t t = 0;
    for (uint32_t k = 1; k <= p->segments; k++) {
        for (uint64_t e = t + seg; t < e; t++)
            step(s, j->buf + get_le64(s) % n * BENCH_HASH_LEN, t);
        memcpy(j->cp + (size_t)k * BENCH_HASH_LEN, s, BENCH_HASH_LEN);
    }
    return NULL;
}

/* fn on every lane at once; a lane whose thread cannot start runs here
 * (the answer is the same, only slower). */
static void run_lanes(struct lane_job *jobs, uint32_t lanes,
                      void *(*fn)(void *))
{
    pthread_t th[BENCH_LANES_MAX];
    bool started[BENCH_LANES_MAX] = { false };
    for (uint32_t l = 1; l < lanes; l++)
        started[l] = pthread_create(&th[l], NULL, fn, &jobs[l]) == 0;
    fn(&jobs[0]);
    for (uint32_t l = 1; l < lanes; l++) {
        if (started[l])
            pthread_join(th[l], NULL);
        else
            fn(&jobs[l]);
    }
}

int bench_run(const struct bench_params *p, uint8_t *ret_cp)
{
    if (bench_params_check(p) < 0)
        return -EINVAL;
    size_t ncp = (size_t)p->segments + 1;
    uint8_t *buf = malloc(bench_blocks(p) * BENCH_HASH_LEN);
    if (!buf)
        return -ENOMEM;
    struct lane_job jobs[BENCH_LANES_MAX];
    for (uint32_t l = 0; l < p->lanes; l++)
        jobs[l] = (struct lane_job){
            .p = p, .buf = buf, .lane = l,
            .cp = ret_cp + (size_t)l * ncp * BENCH_HASH_LEN };
    run_lanes(jobs, p->lanes, lane_fill);
    run_lanes(jobs, p->lanes, lane_walk);
    free(buf);
    return 0;
}

bool bench_verify(const struct bench_params *p, const uint8_t *cp,
                  const struct bench_pick *picks, size_t n)
{
    if (bench_params_check(p) < 0)
        return false;
    size_t ncp = (size_t)p->segments + 1;
    uint8_t s[BENCH_HASH_LEN], blk[BENCH_HASH_LEN];
    for (uint32_t l = 0; l < p->lanes; l++) {
        seed_of(p, l, s);
        if (memcmp(s, cp + (size_t)l * ncp * BENCH_HASH_LEN, BENCH_HASH_LEN))
            return false;
    }
    uint64_t blocks = bench_blocks(p), seg = bench_steps(p) / p->segments;
    for (size_t i = 0; i < n; i++) {
        if (picks[i].lane >= p->lanes || picks[i].segment >= p->segments)
            return false;
        const uint8_t *lane = cp + (size_t)picks[i].lane * ncp * BENCH_HASH_LEN;
        memcpy(s, lane + (size_t)picks[i].segment * BENCH_HASH_LEN,
               BENCH_HASH_LEN);
        uint64_t t = (uint64_t)picks[i].segment * seg;
        for (uint64_t e = t + seg; t < e; t++) {
            block_of(p, get_le64(s) % blocks, blk);
            step(s, blk, t);
        }
        if (memcmp(s, lane + (size_t)(picks[i].segment + 1) * BENCH_HASH_LEN,
                   BENCH_HASH_LEN))
            return false;
    }
    return true;
}

char *bench_answer_text(const struct bench_params *p, const uint8_t *cp,
                        int64_t elapsed_ms)
{
    size_t ncp = (size_t)p->segments + 1;
    size_t cap = 64 + (size_t)p->lanes * (4 + ncp * (2 * BENCH_HASH_LEN + 3));
    char *out = malloc(cap), *w = out;
    if (!out)
        return NULL;
    static const char head[] = "{\"checkpoints\":[";
    memcpy(w, head, sizeof(head) - 1);
    w += sizeof(head) - 1;
    for (uint32_t l = 0; l < p->lanes; l++) {
        if (l)
            *w++ = ',';
        *w++ = '[';
        for (size_t k = 0; k < ncp; k++) {
            if (k)
                *w++ = ',';
            *w++ = '"';
            hex_encode(cp + ((size_t)l * ncp + k) * BENCH_HASH_LEN,
                       BENCH_HASH_LEN, w);
            w += 2 * BENCH_HASH_LEN;
            *w++ = '"';
        }
        *w++ = ']';
    }
    snprintf(w, cap - (size_t)(w - out), "],\"elapsed_ms\":%lld}",
             (long long)elapsed_ms);
    return out;
}
