/* The node's health checker: probes each running VM's checks (TCP
 * connect, HTTP GET, UDP request/answer) at its private address from the
 * host, with non-blocking sockets and one poll() for all of them, applies
 * rise and fall, and keeps each check's state for the status posts. One
 * thread (hcheck_runner) drives the engine (struct hcheck). */
#pragma once

#include "api/agentmsg.h"
#include "api/healthcheck.h"

#include <stdbool.h>
#include <stdint.h>

/* A check to run: the VM, its address and reboot generation (a new one
 * starts the check over) and the spec (copied). */
struct hcheck_target {
    char vm_id[37];
    char address[46];
    int64_t gen;
    const struct hc_spec *spec;
};

/* A check's state for the report. */
struct hcheck_result {
    char vm_id[37];
    struct am_health h;     /* h.output owned */
};

struct hcheck;

/* An engine with no checks. Owned by the caller (hcheck_free). */
struct hcheck *hcheck_new(void);
void hcheck_free(struct hcheck *h);

/* Replace the set of checks. A check kept with the same id, spec, address
 * and generation keeps its state; any other starts unknown and is probed
 * at once. */
void hcheck_set(struct hcheck *h, const struct hcheck_target *t, size_t n);

/* Start the probes that are due, wait up to max_wait_ms (less when a
 * probe is due or times out sooner) for their sockets and for wake_fd
 * (-1: none; it is not read here), and finish those that answered or ran
 * out of time. True when some check changed state. */
bool hcheck_step(struct hcheck *h, int max_wait_ms, int wake_fd);

/* Every check's state (owned by the caller: hcheck_results_free). */
void hcheck_results(const struct hcheck *h, struct hcheck_result **ret,
                    size_t *ret_n);
void hcheck_results_free(struct hcheck_result *r, size_t n);

/* One probe of s at address, run to its end: true when it passed;
 * ret_output says what it saw. */
bool hcheck_probe_once(const struct hc_spec *s, const char *address,
                       char ret_output[HC_OUTPUT_MAX + 1]);

/* ---- the thread ---- */

struct hcheck_runner;

/* Start the checker thread; `changed` (may be NULL) is called from it
 * whenever a check changes state. Owned by the caller (_stop). */
struct hcheck_runner *hcheck_runner_start(void (*changed)(void *), void *data);
void hcheck_runner_stop(struct hcheck_runner *r);
/* Hand the thread a new set of checks (copied; applied within moments). */
void hcheck_runner_sync(struct hcheck_runner *r,
                        const struct hcheck_target *t, size_t n);
/* The checks of vm_id as of the thread's last step: *ret (caller frees
 * with hcheck_results_free). */
void hcheck_runner_results(struct hcheck_runner *r, const char *vm_id,
                           struct hcheck_result **ret, size_t *ret_n);
