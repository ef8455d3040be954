/* Usage ingestion, pure logic: agents claim running intervals in samples
 * numbered per VM; the controller keeps what it observed itself (VM reported
 * running while the node kept reporting). Billable time is the union of the
 * claims intersected with the observed time, so duplicates, retries,
 * reordering and re-chunking change nothing, and claims beyond what the
 * controller saw are capped. */
#pragma once

#include "common/util.h"

#include <jansson.h>

/* Half-open [start, end) in unix seconds. */
struct usage_iv {
    int64_t start, end;
};

/* Sorted, disjoint, non-adjacent intervals. Owns `iv`. */
struct usage_ivset {
    struct usage_iv *iv;
    size_t n, cap;
};

void usage_ivset_free(struct usage_ivset *s);
/* Add [start, end) (merging); empty or reversed intervals are ignored. */
void usage_ivset_add(struct usage_ivset *s, int64_t start, int64_t end);
/* Total seconds covered. */
int64_t usage_ivset_len(const struct usage_ivset *s);
/* Seconds covered by both sets. */
int64_t usage_ivset_overlap(const struct usage_ivset *a,
                            const struct usage_ivset *b);
/* Seconds of [start, end) covered by s. */
int64_t usage_ivset_cover(const struct usage_ivset *s, int64_t start,
                          int64_t end);
/* Drop everything before t (intervals crossing t are cut at t). */
void usage_ivset_trim_before(struct usage_ivset *s, int64_t t);
/* [[start, end], ...] (new reference) and back. from_json: 0 or -EINVAL
 * (not an array of integer pairs with start <= end). */
json_t *usage_ivset_to_json(const struct usage_ivset *s);
int usage_ivset_from_json(const json_t *j, struct usage_ivset *ret);

/* Sequence numbers seen: all <= `floor` plus a sorted sparse list above it
 * (gaps waiting to be filled by late or retried samples). */
struct usage_seqset {
    int64_t floor; /* every seq <= floor was seen; starts at 0 (seqs >= 1) */
    int64_t *above;
    size_t n, cap;
};

void usage_seqset_free(struct usage_seqset *s);
/* Record seq; true if it was new, false for a duplicate (or seq < 1). */
bool usage_seqset_add(struct usage_seqset *s, int64_t seq);
bool usage_seqset_has(const struct usage_seqset *s, int64_t seq);

/* One sample from an agent: the VM ran over [start, end) by its account. */
struct usage_sample {
    int64_t seq;
    int64_t start, end;
};

/* What the controller knows about one VM's usage. Everything before
 * `settled_before` is folded into settled_billable_s / settled_claimed_s:
 * samples reaching back there are too late to count. */
struct usage_vm {
    struct usage_seqset seqs;
    struct usage_ivset claimed;
    struct usage_ivset observed;
    int64_t settled_before;
    int64_t settled_billable_s;
    int64_t settled_claimed_s;
    int64_t obs_last;  /* time of the last running report (-1: none) */
};

#define USAGE_VM_INIT { { 0, NULL, 0, 0 }, { NULL, 0, 0 }, { NULL, 0, 0 }, \
                        INT64_MIN, 0, 0, -1 }

void usage_vm_free(struct usage_vm *u);

enum usage_result {
    USAGE_NEW,       /* counted */
    USAGE_DUPLICATE, /* seq seen before: ignored */
    USAGE_INVALID,   /* seq < 1 or end < start: ignored */
    USAGE_RESULT_MAX
};

/* Ingest a sample. Parts before settled_before are dropped (they count as
 * claimed-but-capped only through the caller's report). */
enum usage_result usage_vm_sample(struct usage_vm *u,
                                  const struct usage_sample *s);

/* The controller saw the VM reported running at `now`. Consecutive reports
 * at most max_gap seconds apart join into one observed stretch; a longer
 * silence (node not heartbeating) leaves a hole. */
void usage_vm_observe(struct usage_vm *u, int64_t now, int64_t max_gap);
/* The VM was reported not running (or its node went silent) at `now`: the
 * current stretch ends at the last running report. */
void usage_vm_observe_stop(struct usage_vm *u);

/* Cumulative billable seconds (claimed and observed), claimed seconds, and
 * capped = claimed - billable. All only ever grow. */
int64_t usage_vm_billable(const struct usage_vm *u);
int64_t usage_vm_claimed(const struct usage_vm *u);
static inline int64_t usage_vm_capped(const struct usage_vm *u)
{
    return usage_vm_claimed(u) - usage_vm_billable(u);
}

/* Fold everything before `horizon` into the settled counters and forget
 * those intervals (bounded state for long-running VMs). Moving the horizon
 * backwards is a no-op. */
void usage_vm_settle(struct usage_vm *u, int64_t horizon);

/* Whole state as a JSON object (new reference) and back; from_json: 0 or
 * -EINVAL. *ret is only written on success. */
json_t *usage_vm_to_json(const struct usage_vm *u);
int usage_vm_from_json(const json_t *j, struct usage_vm *ret);
