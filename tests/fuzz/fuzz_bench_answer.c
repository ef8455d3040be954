/* A node's benchmark answer as the hub reads it (api/agentmsg.c
 * am_bench_answer_decode, then common/benchwork.c bench_verify), and the
 * answer line as the agent finds it in a probe's console log
 * (nodeagent/benchjob.c). The first byte picks the challenge's shape (a
 * small one: the verifier recomputes real segments). An accepted answer
 * must encode back to the same checkpoints; no answer line found may
 * exceed the bound. */
#include "tests/fuzz/fuzz.h"
#include "api/agentmsg.h"
#include "common/benchwork.h"
#include "nodeagent/benchjob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fuzz_quiet();
    char *line = benchjob_answer_in_log((const char *)data + 1, size - 1);
    if (line && strlen(line) > AGENT_BENCH_ANSWER_MAX)
        abort();
    free(line);

    struct bench_params p = { .memory_mib = 1, .rounds = 1,
                              .lanes = 1u + (data[0] & 1),
                              .segments = 1u << ((data[0] >> 1) & 7) };
    memset(p.nonce, data[0], sizeof(p.nonce));
    json_auto_t *j = fuzz_json(data + 1, size - 1);
    if (!j)
        return 0;
    uint8_t *cp = NULL;
    int64_t ms = 0;
    struct jerr err = { 0 };
    if (am_bench_answer_decode(j, &p, &cp, &ms, &err) < 0) {
        if (!err.detail)
            abort(); /* a refusal says why */
        jerr_clear(&err);
        return 0;
    }
    struct bench_pick pick = { data[0] % p.lanes, (data[0] >> 4) % p.segments };
    (void)bench_verify(&p, cp, &pick, 1);
    char *text = bench_answer_text(&p, cp, ms);
    json_auto_t *back = json_loads(text, 0, NULL);
    uint8_t *cp2 = NULL;
    int64_t ms2 = -1;
    if (!back || am_bench_answer_decode(back, &p, &cp2, &ms2, &err) < 0 ||
        ms2 != ms ||
        memcmp(cp, cp2, (size_t)p.lanes * (p.segments + 1) * BENCH_HASH_LEN))
        abort(); /* the worker's encoding and the hub's decoder disagree */
    free(cp2);
    free(text);
    free(cp);
    return 0;
}
