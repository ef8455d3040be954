/* The node's side of the hub's WireGuard relay (api/relay.h): one thread
 * with poll(). Each relayed peer gets a UDP socket on 127.0.0.1 (an
 * ephemeral port) that becomes the peer's WireGuard endpoint; what
 * WireGuard sends there goes to the hub wrapped for that peer, and what
 * the hub brings from that peer comes out of the same socket to the local
 * WireGuard port, so WireGuard sees one stable endpoint per peer. A hello
 * every RELAY_HELLO_S keeps the registration and the NAT mapping. Works
 * with kernel WireGuard and wireguard-go alike: it is only UDP.
 * Where the hub's UDP port does not answer (UDP blocked on the way), the
 * frames go over the controller's HTTPS connection upgraded to
 * RELAY_UPGRADE_PROTOCOL, with a UDP hello every RELAY_UDP_RETRY_S to
 * come back to UDP once it is welcomed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Relayed peers at once. */
#define MESHRELAY_PEERS_MAX 256
/* A UDP hello unwelcomed this long sends the frames over TCP; over TCP,
 * UDP is tried again this often. */
#define RELAY_UDP_WAIT_MS 3000
#define RELAY_UDP_RETRY_S 30

struct meshrelay;

/* Start for node node_id (a UUID) whose WireGuard listens on wg_port; the
 * TCP connection, when needed, authenticates with the node's credential
 * (ca_path, key_pin: as for its other calls; NULL for none). NULL when
 * node_id is no UUID or the thread cannot start (logged). Free with
 * meshrelay_stop(). */
struct meshrelay *meshrelay_start(const char *node_id, uint16_t wg_port,
                                  const char *credential, const char *ca_path,
                                  const char *key_pin);
/* Stop the thread and close every socket; NULL is fine. */
void meshrelay_stop(struct meshrelay *m);

/* The hub's relay: UDP `port` on the host of the controller's url, and
 * the node's token (RELAY_TOKEN_HEX hex). port 0 or a token that is not
 * hex of the right length: no relay (frames wait). Copies. */
void meshrelay_target(struct meshrelay *m, const char *url, int port,
                      const char *token_hex);

/* Relay exactly the n peers named by ids (UUIDs): a local port for each
 * into ret_ports[i] (0 where none could be had: a bad id, past
 * MESHRELAY_PEERS_MAX, no socket); sockets of peers no longer named are
 * closed. */
void meshrelay_sync(struct meshrelay *m, const char *const *ids, size_t n,
                    uint16_t *ret_ports);

/* Frames sent to and received from the hub so far. */
void meshrelay_counts(struct meshrelay *m, uint64_t *ret_out,
                      uint64_t *ret_in);

/* Whether frames go to the hub over TCP now (false: UDP or none). */
bool meshrelay_over_tcp(struct meshrelay *m);
