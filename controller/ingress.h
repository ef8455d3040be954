/* Web ingress through the hub's edge: routes (hostname, edge port ->
 * a VM's published TCP port) in the store (migration 037), which the
 * edge's writer (edge.h) turns into HAProxy's configuration. 443 is TLS passthrough routed
 * by SNI (the VM holds its key), 80 plain HTTP routed by Host. The edge
 * reaches a VM at its node's public address and the host port its VM port
 * is published on (the hub is no mesh member). */
#pragma once

#include "controller/app.h"

#include <stdbool.h>
#include <stddef.h>

/* Routes one VM may have. */
#define INGRESS_PER_VM_MAX 16

/* Lower-case `in` into a new string (caller frees) when it is an RFC 1123
 * host name of at least two labels whose last is not all digits (never an
 * address); else NULL. */
char *ingress_hostname_norm(const char *in);

/* One route as the config writer takes it. addr is the backend
 * "IP:PORT" or "[IPv6]:PORT"; "" when the route is down (VM not placed or
 * running, port not published on its node, node address unknown, or a
 * health check on the VM port unhealthy). */
struct ingress_route {
    char id[37];
    char hostname[254];
    int port;         /* 80 or 443 */
    char addr[64];
};

/* Add the routes of `body` ({hostname, port?, vm_port?}) to VM `vm` (a
 * row of vm_lookup) inside the caller's transaction; *ret_items gets them
 * as the API shows them. -EINVAL with *err (caller clears), -EEXIST when
 * another account holds the hostname or the route exists, -E2BIG past
 * INGRESS_PER_VM_MAX, -ENOENT when the VM port is not published (tcp). */
int ingress_add(struct store *s, const json_t *vm, const json_t *body,
                json_t **ret_items, struct jerr *err);
/* Routes of VM vm_id (NULL: of account_id, every account's when admin)
 * as the API shows them, or NULL when the store failed. */
json_t *ingress_list(struct store *s, const char *vm_id,
                     const char *account_id, bool admin);
/* Remove VM vm_id's routes for hostname (port 0: both). Count or -errno. */
int ingress_remove(struct store *s, const char *vm_id, const char *hostname,
                   int port);
/* Drop every route of a deleted VM. */
void ingress_drop_vm(struct store *s, const char *vm_id);

/* Every route with where it goes now (its addr "" when down), ordered
 * by hostname and port: *ret (caller frees) and its length. 0 or -EIO. */
int ingress_routes_load(struct store *s, struct ingress_route **ret,
                        size_t *ret_n);
