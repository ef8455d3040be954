/* POST /v1/agent/benchmarks/{id}: a node's answer to its benchmark
 * challenge (controller/benchmark.c checks and records it). */
#include "controller/benchmark.h"
#include "controller/handlers.h"

#include "common/ids.h"
#include "common/log.h"

#include <fcntl.h>
#include <sys/stat.h>

HANDLER(h_agent_benchmark)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const char *id = http_req_param(r, 0);
    size_t n = 0;
    const char *raw = http_req_body(r, &n);
    const json_t *body = http_req_json(r);
    if (!uuid_is_valid(id)) {
        http_reply_problem(r, 404, "not-found", "id",
                           "no such benchmark for this node");
        return;
    }
    reqctx_set_target(r, id);
    if (!body) {
        http_reply_problem(r, n ? 415 : 400, n ? "unsupported-media-type" :
                           "validation", NULL, "the body must be a JSON object");
        return;
    }
    struct bench_result res;
    int e = benchmark_answer(a, c->actor, id, body, raw, n, &res);
    if (e < 0) {
        reply_store_error(r, e, "benchmark");
        return;
    }
    switch (res.outcome) {
    case BENCH_PASSED:
    case BENCH_REPEATED:
        reqctx_set_detail(r, "benchmark %s passed: %lld steps/s per lane", id,
                          (long long)res.score);
        http_reply_json(r, 200, json_pack("{s:s, s:s, s:I, s:I, s:I}", "id",
                                          id, "state", "passed", "score",
                                          (json_int_t)res.score, "backs_pct",
                                          (json_int_t)res.pct, "elapsed_ms",
                                          (json_int_t)res.elapsed_ms));
        return;
    case BENCH_UNKNOWN:
        log_warn("node %s answered benchmark %s it was not given", c->actor,
                 id);
        http_reply_problem(r, 404, "not-found", "id",
                           "no such benchmark for this node");
        return;
    case BENCH_REPLAYED:
        http_reply_problem(r, 409, "benchmark-closed", "id",
                           "benchmark %s was answered or closed already", id);
        return;
    case BENCH_LATE:
        http_reply_problem(r, 409, "benchmark-late", "id",
                           "benchmark %s was answered after its deadline", id);
        return;
    case BENCH_WRONG:
        reqctx_set_detail(r, "benchmark %s refused: %s", id, res.reason);
        http_reply_problem(r, 422, "benchmark-wrong", "checkpoints",
                           "benchmark %s refused: %s", id, res.reason);
        return;
    }
}

/* GET /v1/agent/probe/{file}: the probe guest, for a node to boot its
 * challenge in (its digest is in the challenge). */
HANDLER(h_agent_probe)
{
    struct app *a = app;
    _cleanup_free_ char *path = benchmark_probe_path(a, http_req_param(r, 0));
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        http_reply_problem(r, 404, "not-found", "file",
                           "no such probe guest file here");
        return;
    }
    http_reply_file(r, "application/octet-stream", fd, (uint64_t)st.st_size);
}
