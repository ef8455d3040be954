/* The hub's edge (HAProxy) for web ingress: its whole configuration
 * from the routes (controller/ingress.h), written atomically, and the
 * operator's reload command run after each change. */
#pragma once

#include "controller/ingress.h"

/* The whole haproxy.cfg for routes r[0..n) (caller frees). Routes whose
 * id, hostname or address do not check again are left out, so nothing
 * but validated text reaches the file. https_bind and http_bind are
 * HAProxy bind addresses (":443", "10.0.0.1:443"). */
char *edge_config_render(const struct ingress_route *r, size_t n,
                         const char *https_bind, const char *http_bind);

/* A bind word for HAProxy from the controller's options: [ADDR]:PORT
 * with an IPv4 or IPv6 address (or none, or "*") and a port. */
bool edge_bind_ok(const char *s);

/* Write the edge's configuration from the store when it differs from
 * what was last written (temp file + rename) and run the reload command.
 * A no-op without --ingress-config. 1 when written, 0 unchanged, -errno. */
int edge_sync(struct app *a);
