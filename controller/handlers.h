/* Route handlers, one file per resource (h_<resource>.c). */
#pragma once

#include "controller/app.h"

#define HANDLER(n) void n(struct http_request *r, void *app)

HANDLER(h_healthz);
HANDLER(h_ca);
HANDLER(h_metrics);

HANDLER(h_account_create);
HANDLER(h_account_list);
HANDLER(h_account_get);

HANDLER(h_key_create);
HANDLER(h_key_list);
HANDLER(h_key_delete);

HANDLER(h_vm_create);
HANDLER(h_vm_list);
HANDLER(h_vm_get);
HANDLER(h_vm_delete);
HANDLER(h_vm_start);
HANDLER(h_vm_stop);
HANDLER(h_vm_reboot);
HANDLER(h_vm_destroy);
HANDLER(h_vm_resize);
HANDLER(h_vm_console);

HANDLER(h_jointoken_create);
HANDLER(h_node_list);
HANDLER(h_node_get);
HANDLER(h_node_approve);
HANDLER(h_node_delete);

HANDLER(h_event_list);

HANDLER(h_agent_register);
HANDLER(h_agent_desired);
HANDLER(h_agent_status);

/* Render a stored VM / node row as its API object (new reference). */
json_t *vm_render(json_t *row);
json_t *node_render(json_t *row);
