/* The paths nodes report for their relayed mesh peers (api/agentproto.h
 * AGENT_MESH_PATHS): kept per pair in node_mesh_paths, with an event on
 * the node's account when a pair goes direct or back to the relay. */
#pragma once

#include "api/agentmsg.h"
#include "controller/app.h"

#include <jansson.h>

/* Inside the caller's transaction: node_id's paths become exactly the n
 * reported (peers that are no approved node are passed over). 0 or
 * -errno from the store. */
int meshpath_record(struct app *a, const char *node_id,
                    const struct am_mesh_path *p, size_t n);

/* node_id's recorded paths, [{peer, node_id, path, since}] by peer name
 * (new reference; an empty array when none or the store fails). */
json_t *meshpath_render(struct app *a, const char *node_id);
