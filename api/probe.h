/* The public address probe: a small UDP exchange, our own STUN-like
 * format, between a node and the controller. The node sends a request
 * from its WireGuard port to the controller's probe ports; each answer
 * names the source address and port the controller saw, so the node
 * learns the mapping a NAT gave that port and, comparing two answers from
 * two ports, whether the mapping depends on the destination (RFC 4787).
 * Pure codec and classification; the sockets are the programs' own. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every probe packet, request or answer, is exactly this long: an answer
 * is never larger than the request that caused it, so the responder
 * cannot be used to amplify a spoofed flood. */
#define PROBE_SIZE 48
#define PROBE_VERSION 1
#define PROBE_TXID_LEN 16
/* The controller answers on --probe-port and on the port above it. */
#define PROBE_PORTS 2

enum probe_type {
    PROBE_REQUEST = 1,
    PROBE_ANSWER = 2,
};

/* A decoded packet. In a request only txid is meaningful; an answer adds
 * the source the responder saw (family AF_INET or AF_INET6, the address
 * in network order, 4 or 16 bytes of addr) and which of its ports
 * answered (0 or 1). */
struct probe_msg {
    enum probe_type type;
    uint8_t txid[PROBE_TXID_LEN];
    uint8_t responder;
    int family;
    uint8_t addr[16];
    uint16_t port;          /* host order */
};

/* Write exactly PROBE_SIZE bytes of m into out (the caller's buffer of at
 * least PROBE_SIZE). 0, or -EINVAL for a message that cannot be sent (an
 * unknown type or family, a responder index past PROBE_PORTS). */
int probe_encode(const struct probe_msg *m, uint8_t out[PROBE_SIZE]);

/* Decode len bytes into *ret. Anything but a well-formed packet of our
 * version is -EBADMSG: another length, another magic or version, an
 * unknown type, a request with anything but zeros after its txid, an
 * answer of an unknown family or with non-zero padding. *ret is written
 * only on success. */
int probe_decode(const uint8_t *data, size_t len, struct probe_msg *ret);

/* How a node's NAT treats its WireGuard port (what it tells peers and
 * relays; docs/operations.md). */
enum probe_nat {
    PROBE_NAT_UNKNOWN,      /* no answer: UDP blocked or no probe port */
    PROBE_NAT_NONE,         /* the controller saw our own address and port */
    PROBE_NAT_INDEPENDENT,  /* endpoint-independent mapping */
    PROBE_NAT_DEPENDENT,    /* mapping changes with the destination */
    PROBE_NAT_MAX,
};

/* The class's name on the wire and in the store ("unknown", "none",
 * "endpoint-independent", "endpoint-dependent"). */
const char *probe_nat_name(enum probe_nat n);
/* The class named s; -EINVAL for a name not listed above. */
int probe_nat_parse(const char *s, enum probe_nat *ret);

/* One endpoint: family, address (network order) and port (host order). */
struct probe_ep {
    int family;             /* 0: none */
    uint8_t addr[16];
    uint16_t port;
};

/* Classify from our local endpoint and the mapped endpoints the two
 * responder ports reported (family 0 where none answered): no answer at
 * all is unknown; a first answer equal to the local endpoint is none;
 * two equal answers are endpoint-independent, two different ones
 * endpoint-dependent; a single answer that differs from the local one
 * cannot tell (unknown). */
enum probe_nat probe_classify(const struct probe_ep *local,
                              const struct probe_ep mapped[PROBE_PORTS]);

/* "a.b.c.d:port" or "[v6]:port" of e into out (at least
 * PROBE_EP_TEXT_MAX bytes). 0, or -EINVAL when e has no family. */
#define PROBE_EP_TEXT_MAX 56
int probe_ep_format(const struct probe_ep *e, char out[PROBE_EP_TEXT_MAX]);
/* The reverse: exactly "a.b.c.d:port" or "[v6]:port" with a decimal port
 * 1..65535 (no sign, no leading zero). 0, or -EINVAL; *ret written only
 * on success. */
int probe_ep_parse(const char *s, struct probe_ep *ret);
