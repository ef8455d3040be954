/* The controller's answer to nodes' public address probes (api/probe.h):
 * a thread reading two UDP sockets, --probe-port and the port above it,
 * on the API's listen address. Each well-formed request is answered from
 * the socket it reached with the source the controller saw, at most
 * PROBE_RATE a second per source address; anything else is dropped. */
#pragma once

#include <stdint.h>

/* Answers per second (and burst) one source address gets. */
#define PROBE_RATE 10
#define PROBE_BURST 20

struct probe_server;

/* Bind ports `port` and port + 1 on the host of `listen` ("ADDR:PORT" or
 * "[V6]:PORT", as --listen) and start answering. *ret owned by the
 * caller (probe_server_stop). 0, or -errno with a message logged. */
int probe_server_start(const char *listen, int port,
                       struct probe_server **ret);
/* Stop the thread and close the sockets; NULL is fine. */
void probe_server_stop(struct probe_server *p);

/* Requests answered and dropped (malformed or over the rate) so far. */
void probe_server_counts(struct probe_server *p, uint64_t *ret_answered,
                         uint64_t *ret_dropped);

/* A non-blocking UDP socket bound to `port` on the host of `listen` (as
 * --listen), for the controller's UDP services. 0 and *ret_fd, or -errno
 * with a message logged. */
int probe_udp_bind(const char *listen, int port, int *ret_fd);
