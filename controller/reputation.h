/* A node's reputation from what the hub observed of it, never from what
 * it says: availability over a decaying window, VM start failures and
 * crashes, claimed usage that had to be capped, wrong benchmark answers,
 * evictions, and a verified benchmark against its approved capacity.
 * The scoring is pure (rep_score, rep_decay); reputation_tick folds the
 * store's observations in, reputation_fault records one bad event. */
#pragma once

#include "controller/app.h"

#include <stdint.h>

/* Observed, already decayed. Counts are events; times are seconds. */
struct rep_obs {
    double up_s, down_s;     /* seen reachable / unreachable */
    double faults;           /* VM start failures and crashes */
    double capped_s;         /* claimed usage seconds that were capped */
    double bench_wrong;      /* benchmark answers that did not verify */
    double evictions;        /* VMs lost with the node */
    double bench_ratio;      /* verified capacity / approved, 0..1; < 0 none */
};

/* The reputation in [0, 1] (1 best), or -1 when nothing was observed yet
 * (no time seen). Availability scaled down by each kind of fault and by
 * a benchmark that backs less than the approved capacity. */
double rep_score(const struct rep_obs *o);

/* v after dt seconds of exponential decay with the given half-life
 * (<= 0: no decay). */
double rep_decay(double v, int64_t dt, int64_t half_life);

/* Kinds of bad event that reputation_fault records. */
enum rep_fault {
    REP_FAULT_VM,          /* a VM failed to start or crashed */
    REP_FAULT_BENCH,       /* a benchmark answer did not verify */
    REP_FAULT_EVICTION,    /* a VM that should run was taken away */
    REP_FAULT_MAX
};

/* Count one event of `kind` against node_id (inside the caller's
 * transaction if any). 0 or -errno. */
int reputation_fault(struct app *a, const char *node_id, enum rep_fault kind);

/* Fold what happened since the last tick into every approved node's
 * observations (decayed by the hub's half-life) and store each score.
 * Called by the leader about once a heartbeat. 0 or -errno. */
int reputation_tick(struct app *a);

/* Node node_id reports VM vm_id in `state` (by_guest: shut down from inside
 * the guest). When the hub wanted it running, last saw it running (or lost
 * touch with the node) with no start asked since, and the node now reports
 * it stopped or gone (being created again), the node evicted it: count it.
 * Call inside the status transaction, before the new state is stored.
 * 1 when an eviction was counted, 0 when none, or -errno. */
int reputation_status_seen(struct app *a, const char *node_id,
                           const char *vm_id, const char *state,
                           bool by_guest);
