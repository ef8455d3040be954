/* Answering the hub's benchmark challenge (api/agentproto.h AGENT_BENCH)
 * in a worker thread of its own: the probe guest (a kernel and initramfs
 * holding the worker, images/probe/; the hub's own, fetched and checked
 * by digest, where it serves one) booted as a transient domain of
 * `lanes` vCPUs with the challenge on its command line, its answer read
 * from its serial console log and posted to the hub. On libvirt's test
 * driver, where no guest runs, the same worker runs in this process
 * instead (the test-driver path). One challenge at a time, each at most
 * once; bounded by the challenge's timeout and AGENT_BENCH_ANSWER_MAX. */
#pragma once

#include "images/fetch.h"

#include <jansson.h>
#include <stdbool.h>

struct benchjob_opts {
    const char *uri;        /* libvirt URI the probe boots on */
    bool test_driver;       /* run the worker here instead */
    bool kvm;               /* domain type kvm, else qemu (TCG) */
    int64_t host_vcpus;     /* the probe never gets more vCPUs (lanes
                               beyond them share one) */
    const char *guest_dir;  /* vmlinuz and initrd.gz of the probe guest,
                               unless the hub serves one */
    struct fetch_cache *cache; /* where the hub's probe is fetched to (by
                                  digest); borrowed, outlives the job; NULL:
                                  the local one only */
    const char *data_dir;   /* its console log goes to DATA-DIR/console */
    const char *controller; /* the hub's URL, its CA and key pin */
    const char *credential;
    const char *ca_path;
    const char *key_pin;
};

struct benchjob;

/* Start the worker (it waits for benchjob_sync). Copies the options. */
struct benchjob *benchjob_new(const struct benchjob_opts *o);
/* Stop the worker; a probe still running is destroyed. NULL is fine. */
void benchjob_free(struct benchjob *b);

/* The challenge the desired document `doc` carries, if any and not yet
 * answered, is run next. */
void benchjob_sync(struct benchjob *b, const json_t *doc);

/* The answer line (BENCH_ANSWER_MARK then JSON) in a probe's console log
 * of n bytes: the JSON text, malloc'd, or NULL when there is none, or it
 * exceeds AGENT_BENCH_ANSWER_MAX. */
char *benchjob_answer_in_log(const char *log, size_t n);
