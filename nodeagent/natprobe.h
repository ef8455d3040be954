/* The node's public address discovery (api/probe.h): a thread that,
 * once the controller has named its probe port, probes from the mesh's
 * WireGuard port at start and every interval, and keeps the NAT class
 * and the mapping the controller saw for the status posts. IPv4. */
#pragma once

#include "api/probe.h"

#include <stdbool.h>
#include <stdint.h>

struct natprobe;

/* Probe from UDP port wg_port every interval_s seconds (> 0). Owned by
 * the caller (natprobe_stop). */
struct natprobe *natprobe_start(uint16_t wg_port, int64_t interval_s);
void natprobe_stop(struct natprobe *np);

/* The controller (its URL, "https://host:port") and its first probe port
 * (0: it answers none); a new target is probed at once. Copies url. */
void natprobe_target(struct natprobe *np, const char *url, int port);

/* The last round's result: true once a round has finished, with its class
 * and the mapping ("" when nothing answered). */
bool natprobe_result(struct natprobe *np, enum probe_nat *ret_nat,
                     char ret_mapped[PROBE_EP_TEXT_MAX]);

/* One round, without the thread: send a request from local port wg_port
 * to each of the controller's two probe ports at `hub` (IPv4, network
 * order) and wait up to timeout_ms for the answers (sent again twice
 * meanwhile). *ret_local gets our address and wg_port, ret_mapped[i] what
 * responder i saw (family 0 when it did not answer). 0, or -errno when
 * no probe could be sent (no route, no CAP_NET_RAW). */
int natprobe_round(uint32_t hub, uint16_t probe_port, uint16_t wg_port,
                   int timeout_ms, struct probe_ep *ret_local,
                   struct probe_ep ret_mapped[PROBE_PORTS]);

/* The IPv4 address (network order) of the host in url
 * ("https://host:port/..."): 0, or -EAFNOSUPPORT for an IPv6 literal,
 * -EADDRNOTAVAIL when it does not resolve. */
int natprobe_url_ipv4(const char *url, uint32_t *ret);
