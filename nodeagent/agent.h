/* fog-nodeagent's two jobs: joining a controller once, and running: long
 * polling the desired state, reconciling libvirt with it and posting the
 * actual state back (at once on lifecycle events, else every heartbeat). */
#pragma once

#include "nodeagent/config.h"

/* Register with the controller named in s->controller using s->token:
 * pin its CA by the token's hash, make the mesh key (wg.key, 0600) and send
 * its public half with the endpoint, WireGuard port, public address and
 * published port range; save ca.pem and node.json (0600) in s->data_dir.
 * Refuses (-EEXIST) when the data dir already holds a node. 0 or -errno
 * (messages logged). In join.c. */
int agent_join(const struct agent_settings *s);

/* Run until SIGTERM/SIGINT. 0 on a clean stop, else -errno. */
int agent_run(const struct agent_settings *s);

/* Print the host inventory as JSON on stdout. 0 or -errno. */
int agent_print_inventory(const struct agent_settings *s);
