/* Benchmark challenges: issue, expiry and verification (benchmark.h).
 * The work and its check are common/benchwork.c, shared with the probe
 * guest's worker. */
#include "controller/benchmark.h"

#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/reputation.h"
#include "controller/store.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>

/* Closing a challenge and counting it against its node, in one
 * transaction of its own (the leader's tick) or the caller's. 1 when this
 * call closed it, 0 when it was closed already, or -errno. */
static int close_bad(struct app *a, const char *id, const char *node_id,
                     const char *state, const char *reason)
{
    int n = store_exec(a->store, "UPDATE node_benchmarks SET state = $1, "
                       "reason = $2, answered_ms = $3 WHERE id = $4 AND "
                       "state = 'open'", "ssis", state, reason, now_ms(), id);
    if (n <= 0)
        return n;
    int e = reputation_fault(a, node_id, REP_FAULT_BENCH);
    if (e < 0)
        return e;
    log_warn("node %s: benchmark %s %s: %s", node_id, id, state, reason);
    return 1;
}

/* close_bad in a transaction of its own, the node told after the
 * commit when it closed the challenge. 1, 0 or -errno as close_bad. */
static int close_bad_tx(struct app *a, const char *id, const char *node_id,
                        const char *state, const char *reason)
{
    int e = app_tx_begin(a);
    if (e < 0)
        return e;
    e = close_bad(a, id, node_id, state, reason);
    if (e > 0)
        app_node_changed(a, node_id); /* the challenge leaves its document */
    if (e < 0) {
        app_tx_rollback(a);
        return e;
    }
    int c = app_tx_commit(a);
    return c < 0 ? c : e;
}

static int expire(struct app *a, int64_t now)
{
    json_auto_t *rows = NULL;
    int e = store_query(a->store, &rows, "SELECT id, node_id FROM "
                        "node_benchmarks WHERE state = 'open' AND deadline < "
                        "$1", "i", now);
    if (e < 0)
        return e;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        if ((e = close_bad_tx(a, json_str(row, "id"), json_str(row, "node_id"),
                              "expired", "no answer before the deadline")) < 0)
            return e;
    return 0;
}

/* Lanes of a node's challenge: one per vCPU it offers, so a node with
 * fewer real cores than it claims runs them slower and its score backs
 * fewer vCPUs (at least --bench-lanes, at most BENCH_LANES_MAX). */
static int64_t lanes_for(const struct app *a, int64_t vcpus)
{
    int64_t l = vcpus > a->cfg.bench_lanes ? vcpus : a->cfg.bench_lanes;
    return l > BENCH_LANES_MAX ? BENCH_LANES_MAX : l;
}

int64_t benchmark_vcpus(int64_t score, int64_t lanes, int64_t vcpus,
                        int64_t ref)
{
    if (score <= 0 || lanes <= 0 || ref <= 0)
        return 0;
    /* Past BENCH_LANES_MAX the challenge cannot fill the node: its lanes'
     * speed stands for every vCPU. */
    int64_t span = lanes >= BENCH_LANES_MAX && vcpus > lanes ? vcpus : lanes;
    __int128 v = (__int128)score * span / ref;
    return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

static int issue(struct app *a, const char *node_id, int64_t vcpus)
{
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    _cleanup_free_ char *nonce = random_hex(BENCH_NONCE_LEN);
    int64_t issued = now_ms();
    int e = store_exec(
        a->store, "INSERT INTO node_benchmarks (id, node_id, nonce, "
        "memory_mib, rounds, lanes, segments, issued_ms, deadline) VALUES "
        "($1, $2, $3, $4, $5, $6, $7, $8, $9)", "sssiiiiii", id, node_id,
        nonce, a->cfg.bench_memory_mib, a->cfg.bench_rounds,
        lanes_for(a, vcpus), (int64_t)BENCH_SEGMENTS_MAX, issued,
        issued / 1000 + a->cfg.bench_timeout_s);
    if (e < 0)
        return e;
    app_node_changed(a, node_id);
    log_info("node %s: benchmark %s issued (%lld MiB, %lld rounds, %lld "
             "lanes)", node_id, id, (long long)a->cfg.bench_memory_mib,
             (long long)a->cfg.bench_rounds, (long long)lanes_for(a, vcpus));
    return 0;
}

int benchmark_tick(struct app *a, bool judge)
{
    if (a->cfg.bench_every_s <= 0)
        return 0;
    int64_t now = now_s();
    int e = judge ? expire(a, now) : 0;
    if (e < 0)
        return e;
    /* Reachable nodes only: one that is away could not answer, and its
     * absence already counts against it. */
    json_auto_t *due = NULL;
    e = store_query(a->store, &due,
                    "SELECT n.id, n.vcpus FROM nodes n WHERE n.approved = 1 AND "
                    "n.removed_at IS NULL AND n.last_seen >= $1 AND NOT "
                    "EXISTS (SELECT 1 FROM node_benchmarks b WHERE b.node_id "
                    "= n.id AND (b.state = 'open' OR b.issued_ms >= $2))",
                    "ii", now - 3 * a->cfg.heartbeat_s,
                    (now - a->cfg.bench_every_s) * 1000);
    if (e < 0)
        return e;
    size_t i;
    json_t *row;
    json_array_foreach(due, i, row)
        if ((e = issue(a, json_str(row, "id"), json_int(row, "vcpus", 0))) < 0)
            return e;
    return 0;
}

/* A row's challenge; false when the store holds figures out of bounds
 * (never written so, but the row is read as input). */
static bool params_of(const json_t *row, struct bench_params *ret)
{
    struct bench_params p = {
        .memory_mib = (uint32_t)json_int(row, "memory_mib", 0),
        .rounds = (uint32_t)json_int(row, "rounds", 0),
        .lanes = (uint32_t)json_int(row, "lanes", 0),
        .segments = (uint32_t)json_int(row, "segments", 0),
    };
    const char *nonce = json_str(row, "nonce");
    if (!is_lower_hex(nonce, 2 * BENCH_NONCE_LEN) ||
        hex_decode(nonce, p.nonce, sizeof(p.nonce)) < 0 ||
        bench_params_check(&p) < 0)
        return false;
    *ret = p;
    return true;
}

static int probe_file(const char *dir, const char *name,
                      struct am_probe_file *ret)
{
    _cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    uint64_t size = 0;
    int e = fd < 0 ? -errno : sha256_fd(fd, &size, ret->sha256);
    if (e == 0 && (size == 0 || size > (uint64_t)AGENT_BENCH_PROBE_MAX))
        e = -EFBIG;
    if (e < 0) {
        fprintf(stderr, "fog-controller: --bench-guest: cannot use '%s': %s\n",
                path, strerror(-e));
        return e;
    }
    ret->size = (int64_t)size;
    return 0;
}

/* The packaged probe guest beside the installed program
 * (<prefix>/share/fogfabric/probe for <prefix>/bin/fog-controller), when
 * both its files are there; NULL otherwise. Caller frees. */
static char *probe_packaged(void)
{
    _cleanup_free_ char *exe = realpath("/proc/self/exe", NULL);
    const char *slash = exe ? strrchr(exe, '/') : NULL;
    if (!slash)
        return NULL;
    char *dir = xasprintf("%.*s/../share/fogfabric/probe",
                          (int)(slash - exe), exe);
    _cleanup_free_ char *k = xasprintf("%s/%s", dir, AGENT_BENCH_KERNEL);
    _cleanup_free_ char *i = xasprintf("%s/%s", dir, AGENT_BENCH_INITRD);
    if (access(k, R_OK) == 0 && access(i, R_OK) == 0) {
        char *real = realpath(dir, NULL);
        free(dir);
        return real;
    }
    free(dir);
    return NULL;
}

int benchmark_probe_load(struct app *a)
{
    a->has_probe = false;
    if (!a->cfg.bench_guest || !*a->cfg.bench_guest) {
        char *found = probe_packaged();
        if (!found)
            return 0;
        free(a->cfg.bench_guest);
        a->cfg.bench_guest = found;
        log_info("probe guest from %s", found);
    }
    const char *dir = a->cfg.bench_guest;
    int e;
    if ((e = probe_file(dir, AGENT_BENCH_KERNEL, &a->probe_kernel)) < 0 ||
        (e = probe_file(dir, AGENT_BENCH_INITRD, &a->probe_initrd)) < 0)
        return e;
    a->has_probe = true;
    return 0;
}

char *benchmark_probe_path(struct app *a, const char *name)
{
    if (!a->has_probe ||
        !(streq(name, AGENT_BENCH_KERNEL) || streq(name, AGENT_BENCH_INITRD)))
        return NULL;
    return xasprintf("%s/%s", a->cfg.bench_guest, name);
}

int benchmark_desired(struct app *a, const char *node_id,
                      struct am_desired *doc)
{
    json_auto_t *row = NULL;
    int e = store_query_one(a->store, &row,
                            "SELECT id, nonce, memory_mib, rounds, lanes, "
                            "segments, issued_ms, deadline FROM "
                            "node_benchmarks WHERE node_id = $1 AND state = "
                            "'open' ORDER BY issued_ms DESC LIMIT 1", "s",
                            node_id);
    if (e == -ENOENT)
        return 0;
    if (e < 0)
        return e;
    const char *id = json_str(row, "id");
    if (!uuid_is_valid(id) || !params_of(row, &doc->bench.params))
        return 0;
    int64_t left = json_int(row, "deadline", 0) -
                   json_int(row, "issued_ms", 0) / 1000;
    memcpy(doc->bench.id, id, sizeof(doc->bench.id));
    doc->bench.timeout_s = left < 1 ? 1 :
                           left > AGENT_BENCH_TIMEOUT_MAX_S ?
                           AGENT_BENCH_TIMEOUT_MAX_S : left;
    doc->bench.has_probe = a->has_probe;
    doc->bench.kernel = a->probe_kernel;
    doc->bench.initrd = a->probe_initrd;
    doc->has_bench = true;
    return 0;
}

/* Segments to recompute, from our randomness, drawn now that the answer
 * is in. */
static void draw_picks(const struct bench_params *p, struct bench_pick *out,
                       size_t n)
{
    uint32_t r[2 * AGENT_BENCH_PICKS];
    random_bytes(r, sizeof(r));
    for (size_t i = 0; i < n; i++)
        out[i] = (struct bench_pick){ r[2 * i] % p->lanes,
                                      r[2 * i + 1] % p->segments };
}

static int wrong(struct app *a, const char *id, const char *node_id,
                 struct bench_result *ret, const char *why)
{
    snprintf(ret->reason, sizeof(ret->reason), "%s", why);
    ret->outcome = BENCH_WRONG;
    int e = close_bad_tx(a, id, node_id, "failed", why);
    if (e == 0)
        ret->outcome = BENCH_REPLAYED; /* another post closed it meanwhile */
    return e < 0 ? e : 0;
}

#define ANSWER_COLS                                                            \
    "id, nonce, memory_mib, rounds, lanes, segments, issued_ms, deadline, "    \
    "state, score, pct, answered_ms, answer_sha256"

/* The answer of digest sha came to challenge `row`, closed already: the
 * same bytes again are the first result (a post retried after its answer
 * was lost), anything else a second answer, counted against the node
 * (inside the caller's transaction). 0 or -errno. */
static int answer_closed(struct app *a, const char *node_id, const char *id,
                         const json_t *row, const char *sha,
                         struct bench_result *ret)
{
    if (streq(json_str(row, "state"), "passed") &&
        streq(json_str(row, "answer_sha256"), sha)) {
        *ret = (struct bench_result){
            .outcome = BENCH_REPEATED, .score = json_int(row, "score", 0),
            .pct = json_int(row, "pct", 0),
            .elapsed_ms = json_int(row, "answered_ms", 0) -
                          json_int(row, "issued_ms", 0) };
        return 0;
    }
    ret->outcome = BENCH_REPLAYED;
    int e = reputation_fault(a, node_id, REP_FAULT_BENCH);
    log_warn("node %s: second answer to benchmark %s (%s): counted", node_id,
             id, json_str(row, "state"));
    return e < 0 ? e : 0;
}

/* Record the verified score of challenge id in one short transaction,
 * only while the challenge is still open (another post, the deadline's
 * expiry or a replica may have closed it while this one verified); when
 * it is not, the outcome is that of an answer to a closed challenge.
 * 0 or -errno. */
static int record_pass(struct app *a, const char *node_id, const char *id,
                       const struct bench_params *p, int64_t now,
                       int64_t elapsed, int64_t score, int64_t pct,
                       const char *sha, int64_t node_ms,
                       struct bench_result *ret)
{
    int e = app_tx_begin(a);
    if (e < 0)
        return e;
    e = store_exec(a->store, "UPDATE node_benchmarks SET state = 'passed', "
                   "answered_ms = $1, score = $2, pct = $3, answer_sha256 = "
                   "$4 WHERE id = $5 AND state = 'open'", "iiiss", now, score,
                   pct, sha, id);
    if (e == 0) {
        json_auto_t *row = NULL;
        e = store_query_one(a->store, &row, "SELECT " ANSWER_COLS " FROM "
                            "node_benchmarks WHERE id = $1", "s", id);
        if (e == 0)
            e = answer_closed(a, node_id, id, row, sha, ret);
        if (e < 0) {
            app_tx_rollback(a);
            return e;
        }
        return app_tx_commit(a);
    }
    json_auto_t *node = NULL;
    if (e > 0)
        e = store_query_one(a->store, &node, "SELECT vcpus FROM nodes WHERE "
                            "id = $1", "s", node_id);
    int64_t vcpus = e < 0 ? 0 : benchmark_vcpus(score, (int64_t)p->lanes,
                                                 json_int(node, "vcpus", 0),
                                                 a->cfg.bench_ref);
    if (e >= 0)
        e = store_exec(a->store, "INSERT INTO node_trust (node_id, "
                       "bench_score, bench_pct, bench_vcpus, bench_at, "
                       "updated_at) VALUES ($1, $2, $3, $5, $4, $4) ON "
                       "CONFLICT (node_id) DO UPDATE SET bench_score = $2, "
                       "bench_pct = $3, bench_vcpus = $5, bench_at = $4",
                       "siiii", node_id, score, pct, now / 1000, vcpus);
    if (e < 0) {
        app_tx_rollback(a);
        return e;
    }
    app_node_changed(a, node_id);
    if ((e = app_tx_commit(a)) < 0)
        return e;
    log_info("node %s: benchmark %s passed: %lld steps/s per lane in %lld ms "
             "(%lld%% of a vCPU, %lld vCPUs verified; the node said %lld ms)",
             node_id, id, (long long)score, (long long)elapsed, (long long)pct,
             (long long)vcpus, (long long)node_ms);
    *ret = (struct bench_result){ .outcome = BENCH_PASSED, .score = score,
                                  .pct = pct, .elapsed_ms = elapsed };
    return 0;
}

int benchmark_answer(struct app *a, const char *node_id, const char *id,
                     const json_t *body, const char *raw, size_t n,
                     struct bench_result *ret)
{
    *ret = (struct bench_result){ .outcome = BENCH_UNKNOWN };
    /* Timed from its arrival, whatever the checks below take. */
    int64_t now = now_ms();
    json_auto_t *row = NULL;
    int e = store_query_one(a->store, &row, "SELECT " ANSWER_COLS " FROM "
                            "node_benchmarks WHERE id = $1 AND node_id = $2",
                            "ss", id, node_id);
    if (e == -ENOENT)
        return 0;
    if (e < 0)
        return e;
    char sha[2 * SHA256_LEN + 1];
    sha256_hex(raw, n, sha);
    if (!streq(json_str(row, "state"), "open")) {
        if ((e = app_tx_begin(a)) < 0)
            return e;
        if ((e = answer_closed(a, node_id, id, row, sha, ret)) < 0) {
            app_tx_rollback(a);
            return e;
        }
        return app_tx_commit(a);
    }
    if (now > json_int(row, "deadline", 0) * 1000) {
        ret->outcome = BENCH_LATE;
        e = close_bad_tx(a, id, node_id, "late", "answered after the deadline");
        return e < 0 ? e : 0;
    }
    struct bench_params p;
    if (!params_of(row, &p))
        return -EIO;
    /* Decoding and recomputing segments take milliseconds: outside any
     * transaction, so the store is never held meanwhile. */
    _cleanup_free_ uint8_t *cp = NULL;
    int64_t node_ms = 0;
    struct jerr je = { 0 };
    if (am_bench_answer_decode(body, &p, &cp, &node_ms, &je) < 0) {
        _cleanup_free_ char *why = xasprintf("malformed answer: %s",
                                             je.detail);
        jerr_clear(&je);
        return wrong(a, id, node_id, ret, why);
    }
    struct bench_pick picks[AGENT_BENCH_PICKS];
    draw_picks(&p, picks, ARRAY_SIZE(picks));
    if (!bench_verify(&p, cp, picks, ARRAY_SIZE(picks)))
        return wrong(a, id, node_id, ret, "checkpoints did not verify");
    /* Test seam: a slow check, so posts of one challenge overlap. */
    if (fs_test_fault("FOG_TEST_FAULT", "bench-verify-slow"))
        usleep(1000 * 1000);
    /* Timed by the hub: the nonce was unknown before the issue. */
    int64_t elapsed = now - json_int(row, "issued_ms", now);
    if (elapsed < 1)
        elapsed = 1;
    int64_t score = (int64_t)(bench_steps(&p) * 1000 / (uint64_t)elapsed);
    int64_t pct = a->cfg.bench_ref > 0 ? score * 100 / a->cfg.bench_ref : 100;
    if (pct > 100)
        pct = 100;
    return record_pass(a, node_id, id, &p, now, elapsed, score, pct, sha,
                       node_ms, ret);
}
