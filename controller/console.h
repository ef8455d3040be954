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
 * and !force (with force, that one is ended). Sessions left unattended
 * (never spliced, CONSOLE_JOIN_TIMEOUT_S + 10 s after they opened) are
 * ended first, so a client that vanished never holds a console. */
int console_open(struct app *a, const char *vm_id, const char *node_id,
                 bool force, char **ret_id);
/* Open a log session: node `node_id` is asked for the last `bytes`
 * (1..CONSOLE_LOG_MAX) of VM `vm_id`'s serial log. 0 and *ret_id;
 * -EBUSY when CONSOLE_LOG_READERS_MAX are waiting on the VM already. */
int console_open_log(struct app *a, const char *vm_id, const char *node_id,
                     uint32_t bytes, char **ret_id);
/* The node's answer to log session `id` (cleaned and cut to what was
 * asked); wakes the waiting reader. 0, -ENOENT (no such log session of
 * this node), -EALREADY (answered before). */
int console_log_put(struct app *a, const char *id, const char *node_id,
                    const char *data, size_t len);
/* 1 with the log in *ret (caller frees) once the node answered (the
 * session ends), 0 while it has not, -ENOENT when the session is gone. */
int console_log_take(struct app *a, const char *id, char **ret,
                     size_t *ret_len);
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
/* GET /v1/vms/{id}/console with bytes above what the controller keeps:
 * ask VM `vm`'s node for its log and park until it answers. */
void console_log_read(struct app *a, struct http_request *r,
                      const json_t *vm, uint32_t bytes);
/* The same request, run again once woken. */
void console_log_resume(struct app *a, struct http_request *r);
/* Sessions open now (for tests and metrics). */
size_t console_count(void);
