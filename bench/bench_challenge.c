/* The benchmark challenge's costs: the worker's steps a second per lane
 * (what a node of this machine would score before boot and poll time) at
 * the hub's default size and a small one, with one and two lanes, and the
 * hub's verification of an answer (AGENT_BENCH_PICKS segments, as
 * controller/benchmark.c draws them), which runs inside the answer's
 * request. Prints a markdown table of medians; fails only when a right
 * answer does not verify. Usage: bench_challenge [RUNS], default 3. */
#include "api/agentproto.h"
#include "common/benchwork.h"
#include "common/ids.h"
#include "common/timeutil.h"

#include <stdio.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 3;
    if (runs < 1 || runs > 100)
        runs = 3;
    static const uint32_t mem[] = { 16, 64 }, lanes[] = { 1, 2 };
    printf("| memory MiB | lanes | worker s | steps/s per lane | verify ms "
           "(%d segments) |\n|---|---|---|---|---|\n", AGENT_BENCH_PICKS);
    for (size_t m = 0; m < sizeof(mem) / sizeof(mem[0]); m++)
        for (size_t l = 0; l < sizeof(lanes) / sizeof(lanes[0]); l++) {
            struct bench_params p = { .memory_mib = mem[m], .rounds = 1,
                                      .lanes = lanes[l],
                                      .segments = BENCH_SEGMENTS_MAX };
            double work[100], check[100];
            uint8_t *cp = xmalloc((size_t)p.lanes * (p.segments + 1) *
                                  BENCH_HASH_LEN);
            for (int r = 0; r < runs; r++) {
                random_bytes(p.nonce, sizeof(p.nonce));
                int64_t t0 = mono_ms();
                if (bench_run(&p, cp) < 0)
                    return 1;
                int64_t t1 = mono_ms();
                struct bench_pick picks[AGENT_BENCH_PICKS];
                for (int i = 0; i < AGENT_BENCH_PICKS; i++)
                    picks[i] = (struct bench_pick){
                        (uint32_t)i % p.lanes,
                        (uint32_t)(i * 67) % p.segments };
                int64_t t2 = mono_ms();
                if (!bench_verify(&p, cp, picks, AGENT_BENCH_PICKS)) {
                    fprintf(stderr, "a right answer did not verify\n");
                    return 1;
                }
                work[r] = (double)(t1 - t0) / 1000;
                check[r] = (double)(mono_ms() - t2);
            }
            double w = median(work, runs);
            printf("| %u | %u | %.2f | %.0f | %.1f |\n", p.memory_mib,
                   p.lanes, w, (double)bench_steps(&p) / (w > 0 ? w : 1e-3),
                   median(check, runs));
            free(cp);
        }
    return 0;
}
