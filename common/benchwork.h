/* The benchmark challenge's work, written once for the probe guest's
 * worker (images/probe/fog-bench.c, linked statically) and the hub's
 * verifier: a memory buffer filled from a controller nonce, then chains
 * of data-dependent reads whose states are checkpointed, so the hub
 * checks an answer by recomputing a few segments it picks afterwards.
 * Depends on libc, pthreads, nettle and common/ids (the worker is
 * linked statically). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_HASH_LEN 32               /* SHA-256 */
#define BENCH_NONCE_LEN 32
#define BENCH_MEMORY_MIN_MIB 1
#define BENCH_MEMORY_MAX_MIB 1024
#define BENCH_ROUNDS_MAX 16
#define BENCH_LANES_MAX 16
#define BENCH_SEGMENTS_MAX 256
/* How the worker's answer line begins on the probe guest's console. */
#define BENCH_ANSWER_MARK "FOG-BENCH-ANSWER "

/* A challenge. Every lane reads the same buffer of memory_mib MiB (blocks
 * of BENCH_HASH_LEN bytes) for rounds * blocks steps, checkpointed every
 * (rounds * blocks / segments) steps. */
struct bench_params {
    uint8_t nonce[BENCH_NONCE_LEN];
    uint32_t memory_mib;
    uint32_t rounds;
    uint32_t lanes;         /* independent chains: one per vCPU */
    uint32_t segments;      /* checkpoints per lane, after the first */
};

/* 0 when every figure is within its bound and segments divides the steps
 * of a lane, else -EINVAL. */
int bench_params_check(const struct bench_params *p);
/* Blocks of the buffer, and steps of one lane. */
uint64_t bench_blocks(const struct bench_params *p);
uint64_t bench_steps(const struct bench_params *p);

/* Do the work on p->lanes threads. ret_cp receives lanes * (segments + 1)
 * checkpoints of BENCH_HASH_LEN bytes, lane by lane, each lane's first
 * being its seed. 0, -EINVAL (bad params) or -ENOMEM; ret_cp is written
 * only on success. */
int bench_run(const struct bench_params *p, uint8_t *ret_cp);

/* Check an answer's checkpoints (layout as bench_run writes them): every
 * lane's seed, and for each of the n picks {lane, segment} that segment's
 * steps recomputed from its first checkpoint end at the next. The picks
 * must come from the verifier's own randomness, drawn after the answer
 * arrived. true when all hold. */
struct bench_pick {
    uint32_t lane, segment;
};
bool bench_verify(const struct bench_params *p, const uint8_t *cp,
                  const struct bench_pick *picks, size_t n);


/* The worker's answer as one line of JSON, {"checkpoints": [[hex, ...]
 * per lane], "elapsed_ms": N} (the body of POST /v1/agent/benchmarks/
 * {id}; api/agentmsg.h decodes it), malloc'd, NULL when out of memory. */
char *bench_answer_text(const struct bench_params *p, const uint8_t *cp,
                        int64_t elapsed_ms);
