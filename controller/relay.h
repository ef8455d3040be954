/* The hub's WireGuard relay (api/relay.h): one thread reading one UDP
 * socket, --relay-port on the API's listen address. A node registers its
 * source address with a hello carrying its token; data frames from a
 * registered address go to the registered node they name, only when the
 * two nodes' NAT classes (signed in their tokens) put them on the relay
 * path with each other, at most RELAY_RATE frames a second per source.
 * Nothing is ever sent to an address that did not register; a valid
 * hello alone is answered, with a shorter welcome: a frame goes out no
 * larger than it came in. Where UDP is blocked, a node carries the same
 * frames over its HTTPS connection upgraded (relay_server_stream). */
#pragma once

#include "api/relay.h"

#include <stdint.h>

/* Frames a second (and burst) one source address and port may send. */
#define RELAY_RATE 20000
#define RELAY_BURST 40000
/* Nodes registered at once. */
#define RELAY_NODES_MAX 1024
/* Nodes relayed over TCP at once, and the bytes one such connection may
 * have waiting to be sent before its frames are lost. */
#define RELAY_STREAMS_MAX 256
#define RELAY_STREAM_OUT 65536

struct relay_server;

/* Bind UDP `port` on the host of `listen` ("ADDR:PORT" or "[V6]:PORT")
 * and start relaying, with a fresh random secret for tokens. *ret owned
 * by the caller (relay_server_free). 0, or -errno with a message logged. */
int relay_server_start(const char *listen, int port,
                       struct relay_server **ret);
/* End its thread and every TCP stream it holds (while the HTTP server,
 * which owns their connections, still runs); a stream handed over after
 * is closed at once. The struct stays valid until relay_server_free. */
void relay_server_stop(struct relay_server *s);
/* Stop if not stopped yet and free. Accepts NULL. */
void relay_server_free(struct relay_server *s);

/* A token for node_id (a UUID) with NAT class nat, valid RELAY_TOKEN_S
 * from now, as RELAY_TOKEN_HEX lowercase hex into out. 0, or -EINVAL for
 * a node id that is no UUID. */
int relay_server_token(struct relay_server *s, const char *node_id,
                       enum probe_nat nat, char out[RELAY_TOKEN_HEX + 1]);

/* Node node_id's connection upgraded to RELAY_UPGRADE_PROTOCOL (taken,
 * closed by the relay): the same frames, each after its length (api/
 * relay.h), and the same rules, but only node_id may say hello over it.
 * A node is registered over the transport of its latest hello; a node's
 * newer connection closes its older one. */
struct http_upgraded;
void relay_server_stream(struct relay_server *s, const char *node_id,
                         struct http_upgraded *u);

/* Frames forwarded and dropped (malformed, unregistered, not allowed,
 * over the rate) so far, nodes registered now, and frames received or
 * sent over TCP connections so far. */
void relay_server_counts(struct relay_server *s, uint64_t *ret_forwarded,
                         uint64_t *ret_dropped, uint64_t *ret_nodes,
                         uint64_t *ret_tcp);
