/* Benchmark challenges (api/agentproto.h AGENT_BENCH): the leader issues
 * one to every approved, reachable node at join and every --bench-every
 * seconds and expires those not answered in time; the node's answer is
 * checked by recomputing segments drawn after it arrived, timed from
 * issue to answer by the hub, and recorded in node_trust (bench_score,
 * bench_pct, and bench_vcpus: the vCPUs it backs, which cap what the
 * scheduler places there), which reputation.c folds into the node's
 * score. A challenge runs one lane per vCPU the node claims. A wrong,
 * late, missing or second answer is a REP_FAULT_BENCH. */
#pragma once

#include "api/agentmsg.h"
#include "controller/app.h"

/* Digest and size of the probe guest the hub serves (--bench-guest, else
 * the packaged one in <prefix>/share/fogfabric/probe beside the installed
 * program, when there), into a->probe_*; nothing without one. 0, or
 * -errno after a message to stderr when a file is missing or too
 * large. */
int benchmark_probe_load(struct app *a);

/* The path of probe file `name` (AGENT_BENCH_KERNEL or
 * AGENT_BENCH_INITRD) the hub serves, or NULL (another name, or none
 * served); caller frees. */
char *benchmark_probe_path(struct app *a, const char *name);

/* Issue challenges where due and, when `judge` (the hub has been up long
 * enough to have heard every node), expire open ones past their deadline
 * (a fault each). Leader only, about once a second. 0 or -errno. */
int benchmark_tick(struct app *a, bool judge);

/* The node's open challenge into doc->bench (inside the desired
 * document's read transaction). 0 or -errno. */
int benchmark_desired(struct app *a, const char *node_id,
                      struct am_desired *doc);

/* The vCPUs a verified score (steps a second per lane, all `lanes` run
 * at once) backs on a node of `vcpus`, at `ref` steps a second per vCPU:
 * floor(score x lanes / ref), the lanes' speed standing for every vCPU
 * when the node has more than BENCH_LANES_MAX. */
int64_t benchmark_vcpus(int64_t score, int64_t lanes, int64_t vcpus,
                        int64_t ref);

enum bench_outcome {
    BENCH_PASSED,       /* verified and scored */
    BENCH_REPEATED,     /* the same answer again: the first result */
    BENCH_UNKNOWN,      /* no such challenge for this node */
    BENCH_REPLAYED,     /* the challenge was already closed */
    BENCH_LATE,         /* after its deadline */
    BENCH_WRONG,        /* malformed or did not verify */
};

struct bench_result {
    enum bench_outcome outcome;
    int64_t score;      /* steps a second per lane (PASSED, REPEATED) */
    int64_t pct;        /* share of one approved vCPU it backs, 0..100 */
    int64_t elapsed_ms; /* as the hub timed it */
    char reason[160];   /* why, for WRONG */
};

/* Node node_id answers challenge id with `body` (the decoded JSON) whose
 * raw bytes are raw[0..n). Outside any transaction: the answer is checked
 * first, then recorded in a short transaction of its own only while the
 * challenge is still open. Closes the challenge (and counts the fault)
 * for every outcome but UNKNOWN and REPEATED. 0 with *ret filled, or
 * -errno of the store. */
int benchmark_answer(struct app *a, const char *node_id, const char *id,
                     const json_t *body, const char *raw, size_t n,
                     struct bench_result *ret);
