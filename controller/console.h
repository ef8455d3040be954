/* Interactive serial console sessions: a tenant's upgraded connection and
 * the hosting node's, spliced byte for byte by one thread per session.
 * Sessions live in this controller's memory (a node joins the replica its
 * tenant attached to); the table is per process. */
#pragma once

#include "api/agentmsg.h"
#include "api/http_server.h"
#include "controller/app.h"

#include <stdbool.h>

/* Open a session on VM `vm_id` hosted by `node_id`. 0 and *ret_id (a new
 * random id, caller frees); -EBUSY when one is already open on the VM
 * and !force (with force, that one is ended). */
int console_open(struct app *a, const char *vm_id, const char *node_id,
                 bool force, char **ret_id);
/* Whether node `node_id` may join session `id`: 0, -ENOENT (no such
 * session, or not this node's), -EALREADY (joined before). */
int console_join_check(const char *id, const char *node_id);
/* The node's upgraded connection for session `id` (taken: closed when
 * the session is gone); wakes the tenant's waiting request. */
void console_node_joined(struct app *a, const char *id,
                         struct http_upgraded *u);
/* 1 when the node has joined session `id`, 0 while it has not, -ENOENT
 * when the session is gone (ended or taken over). */
int console_ready(const char *id);
/* The tenant's upgraded connection (taken): start splicing. */
void console_tenant_attached(struct app *a, const char *id,
                             struct http_upgraded *u);
/* End a session no one attached to (the node never joined). */
void console_abandon(struct app *a, const char *id);
/* The sessions node `node_id` should join, into doc->consoles. */
void console_node_sessions(const char *node_id, struct am_desired *doc);
/* Sessions open now (for tests and metrics). */
size_t console_count(void);
