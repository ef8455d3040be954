/* The hub's WireGuard relay: the frames nodes and the hub exchange on the
 * controller's --relay-port, the token that lets a node register, and the
 * rule that decides which pairs of nodes go through the relay. WireGuard
 * packets travel inside unchanged (encrypted end to end: the relay never
 * holds a key). Pure codec and rule; the sockets are the programs' own. */
#pragma once

#include "api/probe.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RELAY_VERSION 1
#define RELAY_HDR_LEN 8         /* "FOGR", version, type, two zero bytes */
#define RELAY_ID_LEN 16         /* a node's UUID, binary */
#define RELAY_SECRET_LEN 32
/* A token: its expiry (unix seconds, big-endian), the node's NAT class
 * and an HMAC-SHA256 over both and the node's id with the hub's secret. */
#define RELAY_TOKEN_LEN (8 + 1 + 32)
#define RELAY_TOKEN_HEX (2 * RELAY_TOKEN_LEN)
#define RELAY_HELLO_LEN (RELAY_HDR_LEN + RELAY_ID_LEN + RELAY_TOKEN_LEN)
/* The largest WireGuard packet carried: a 1500-byte mesh MTU plus
 * WireGuard's 32 bytes, with room to spare. */
#define RELAY_PAYLOAD_MAX 1600
#define RELAY_FRAME_MAX (RELAY_HDR_LEN + RELAY_ID_LEN + RELAY_PAYLOAD_MAX)
/* A node says hello this often (also keeping its NAT mapping open); the
 * hub forgets one not heard for RELAY_IDLE_S. Tokens last RELAY_TOKEN_S
 * and come with every status answer. */
#define RELAY_HELLO_S 10
#define RELAY_IDLE_S 60
#define RELAY_TOKEN_S 900

enum relay_type {
    RELAY_HELLO = 1,    /* node -> hub: register this source address */
    RELAY_DATA = 2,     /* node -> hub: for node `id`; hub -> node: from `id` */
    RELAY_WELCOME = 3,  /* hub -> node: hello taken (id: the node's own);
                         * shorter than the hello it answers */
};
#define RELAY_WELCOME_LEN (RELAY_HDR_LEN + RELAY_ID_LEN)

/* A decoded frame. Hello: id is the sender, token its token. Data: id is
 * the peer (destination towards the hub, source from it); payload points
 * into the decoded buffer. */
struct relay_frame {
    enum relay_type type;
    uint8_t id[RELAY_ID_LEN];
    uint8_t token[RELAY_TOKEN_LEN];
    const uint8_t *payload;
    size_t payload_len;
};

/* Write f into out (cap bytes). 0 and *ret_len, or -EINVAL for an unknown
 * type or a payload empty or over RELAY_PAYLOAD_MAX, -ENOBUFS when cap is
 * too small. */
int relay_encode(const struct relay_frame *f, uint8_t *out, size_t cap,
                 size_t *ret_len);
/* Decode len bytes. Anything but a well-formed frame is -EBADMSG: another
 * magic or version, an unknown type, non-zero reserved bytes, a hello or
 * welcome of another length, data with no payload or one over RELAY_PAYLOAD_MAX.
 * *ret written only on success (its payload points into data). */
int relay_decode(const uint8_t *data, size_t len, struct relay_frame *ret);

/* Over TCP (a connection upgraded to RELAY_UPGRADE_PROTOCOL on the
 * controller's HTTPS port, where UDP is blocked) the same frames travel
 * each after its length, two bytes big-endian. */
#define RELAY_UPGRADE_PROTOCOL "fog-relay"
#define RELAY_STREAM_PREFIX 2
/* Write frame f with its length prefix into out (cap bytes): as
 * relay_encode(), *ret_len counting the prefix. */
int relay_stream_encode(const struct relay_frame *f, uint8_t *out, size_t cap,
                        size_t *ret_len);
/* The first frame in the len bytes of a stream read so far: 1 with
 * *ret_frame (its len, after the prefix) and *ret_used (prefix and frame,
 * to drop from the buffer); 0 when the frame is not all there yet; and
 * -EBADMSG for a length of 0 or over RELAY_FRAME_MAX (the stream is then
 * out of step: close it). The frame itself is decoded with relay_decode. */
int relay_stream_next(const uint8_t *buf, size_t len, size_t *ret_frame,
                      size_t *ret_used);

/* A canonical lowercase UUID to its 16 bytes and back (out: 37 bytes). */
int relay_id_parse(const char *uuid, uint8_t out[RELAY_ID_LEN]);
void relay_id_format(const uint8_t id[RELAY_ID_LEN], char out[37]);

/* The token for node id with NAT class nat, valid until `expires`. */
void relay_token_make(const uint8_t secret[RELAY_SECRET_LEN],
                      const uint8_t id[RELAY_ID_LEN], int64_t expires,
                      enum probe_nat nat, uint8_t out[RELAY_TOKEN_LEN]);
/* Check a token for node id at unix time now: 0 with the class and the
 * expiry it carries, -EACCES for a MAC that does not match (another
 * node's token, another hub's, altered bytes), -ETIMEDOUT once expired.
 * The outputs are written only on success. */
int relay_token_check(const uint8_t secret[RELAY_SECRET_LEN],
                      const uint8_t id[RELAY_ID_LEN],
                      const uint8_t token[RELAY_TOKEN_LEN], int64_t now,
                      enum probe_nat *ret_nat, int64_t *ret_expires);

/* Whether two nodes of these NAT classes need the relay: not when either
 * has none (the other can always reach it), nor when both map
 * independently of the destination (simultaneous handshakes open both
 * NATs); otherwise (endpoint-dependent, unknown) they do. */
bool relay_path_needed(enum probe_nat a, enum probe_nat b);
