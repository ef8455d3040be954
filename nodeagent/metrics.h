/* The agent's Prometheus endpoint (--metrics-listen): plain-text figures
 * the main loop records and a small HTTP server renders on each scrape. */
#pragma once

#include "common/util.h"
#include "images/fetch.h"

#include <jansson.h>

struct agent_metrics;

/* Mesh peers as read at scrape time; handshake 0 = never. */
typedef int (*agent_metrics_mesh_fn)(void *data, size_t *ret_peers,
                                     int64_t **ret_handshakes);

/* Serve GET /metrics on `listen` (IPv4ADDR:PORT; port 0 picks one).
 * `mesh` (may be NULL) is called on each scrape. Owned result, or NULL
 * with a message logged when the address is invalid or cannot be bound. */
struct agent_metrics *agent_metrics_start(const char *listen,
                                          agent_metrics_mesh_fn mesh,
                                          void *mesh_data);
/* Stop serving and free; accepts NULL. */
void agent_metrics_free(struct agent_metrics *m);
/* The port bound. */
int agent_metrics_port(const struct agent_metrics *m);

/* Recorders, called from the main loop; all accept NULL m. */
/* VMs of the desired document by reported state: a JSON object
 * state -> count (borrowed, copied). */
void agent_metrics_vms(struct agent_metrics *m, const json_t *by_state);
/* One reconcile pass that took `ms` milliseconds. */
void agent_metrics_reconcile(struct agent_metrics *m, int64_t ms);
/* The controller answered (wall clock, seconds). */
void agent_metrics_contact(struct agent_metrics *m, int64_t when_s);
void agent_metrics_pending(struct agent_metrics *m, size_t samples);
void agent_metrics_cache(struct agent_metrics *m, const struct fetch_stats *st,
                         uint64_t usage_bytes);

/* The text exposition as of now; caller frees. For the server and tests. */
char *agent_metrics_render(struct agent_metrics *m);
