/* Metering samples: the intervals each VM ran, cut into numbered samples
 * (per-VM sequence from 1) that status posts carry until the controller has
 * taken them. Sequence numbers and unacknowledged samples are kept in a
 * file, so an agent restart neither reuses a number nor loses a sample. */
#pragma once

#include "common/util.h"

#include <jansson.h>

struct meter;

/* A meter persisted at `path` (NULL: in memory only). The file is read
 * now: a missing one is a fresh start; an unreadable or malformed one is
 * logged and replaced, with sequence numbers restarted above any used
 * before (from now_s * 1000), so the controller never takes a new sample
 * for a duplicate. Never NULL; free with meter_free(). */
struct meter *meter_new(const char *path, int64_t now_s);
void meter_free(struct meter *m);

/* Tell what VM `vm_id` is doing at unix time now_s: running opens an
 * interval if none is open; not running closes the open one into a
 * sample [start, now_s]. */
void meter_observe(struct meter *m, const char *vm_id, bool running,
                   int64_t now_s);

/* Forget VMs that are not in `vms` (a desired document's "vms" array),
 * with their unsent samples: the controller would refuse them. */
void meter_retain(struct meter *m, const json_t *vms);

/* The samples a status post should carry now (new reference: an array of
 * {vm, seq, start, end}, at most `max`). A running VM whose earlier
 * samples were all taken gets its interval so far cut into a new one
 * ending at now_s; while a VM still has samples the controller has not
 * acknowledged, those are sent again unchanged and its open interval
 * keeps growing. Numbers are saved before they are handed out. */
json_t *meter_take(struct meter *m, int64_t now_s, size_t max);

/* The post carrying `samples` (as meter_take returned them) succeeded:
 * forget them. */
void meter_ack(struct meter *m, const json_t *samples);

/* A post carrying `samples` was refused, naming `rejected` ([{index, vm,
 * seq, reason}], AGENT_REJECTED_SAMPLES): forget the samples named (an
 * entry names samples[index] only when vm and seq match too, so a stale
 * or made-up list drops nothing else) and return the others (new
 * reference) to send again. *ret_dropped: how many were forgotten. */
json_t *meter_refused(struct meter *m, const json_t *samples,
                      const json_t *rejected, size_t *ret_dropped);

/* Samples waiting for an acknowledgement. */
size_t meter_pending(const struct meter *m);
