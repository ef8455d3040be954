/* /v1/vms/{id}/ingress and /v1/ingress: the web ingress routes a VM's
 * owner sets on the hub's edge (controller/ingress.c keeps them and
 * writes the edge's configuration). */
#include "common/jsonutil.h"
#include "controller/handlers.h"
#include "controller/ingress.h"

#include <errno.h>

HANDLER(h_ingress_all)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    reply_one_page(r, ingress_list(a->store, NULL, c->account_id,
                               c->role == ROLE_ADMIN));
}

HANDLER(h_ingress_list)
{
    struct app *a = app;
    json_auto_t *vm = vm_lookup_reply(a, r);
    if (!vm)
        return;
    reply_one_page(r, ingress_list(a->store, json_str(vm, "id"), NULL, false));
}

HANDLER(h_ingress_add)
{
    struct app *a = app;
    json_t *b = http_req_json(r);
    if (!json_is_object(b)) {
        http_reply_problem(r, 400, "validation", NULL,
                           "the body must be a JSON object");
        return;
    }
    json_auto_t *vm = vm_lookup_reply(a, r);
    if (!vm)
        return;
    if (streq(json_str(vm, "desired_state"), "deleted")) {
        http_reply_problem(r, 409, "conflict", NULL,
                           "the VM is being deleted");
        return;
    }
    if (store_tx_begin(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    struct jerr je = { 0 };
    json_auto_t *made = NULL;
    int e = store_lock(a->store, "vm", json_str(vm, "id"));
    if (e == 0)
        e = ingress_add(a->store, vm, b, &made, &je);
    if (e < 0) {
        store_tx_rollback(a->store);
        int64_t port = json_int(b, "port", 443);
        if (e == -EINVAL) {
            http_reply_problem(r, 400, "validation", je.field, "%s",
                               je.detail);
            jerr_clear(&je);
        } else if (e == -EEXIST)
            http_reply_problem(r, 409, "conflict", "hostname",
                               "hostname '%s' on port %lld is taken (by this "
                               "VM, another VM or another account)",
                               json_str(b, "hostname"), (long long)port);
        else if (e == -E2BIG)
            http_reply_problem(r, 409, "quota-exceeded", NULL,
                               "a VM has at most %d ingress routes: remove "
                               "one first", INGRESS_PER_VM_MAX);
        else if (e == -ENOENT)
            http_reply_problem(r, 409, "port-not-published", "vm_port",
                               "VM port %lld/tcp is not published: publish "
                               "it first (POST /v1/vms/{id}/ports, fogctl "
                               "port-add); the edge reaches the VM through "
                               "its node's published port",
                               (long long)json_int(b, "vm_port", port));
        else
            reply_store_error(r, e, "ingress route");
        return;
    }
    if (store_tx_commit(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    /* The reconciler writes the edge's file within a second of the
     * commit (the request's transaction is still open here). */
    http_reply_json(r, 201, json_incref(made));
}

HANDLER(h_ingress_remove)
{
    struct app *a = app;
    json_auto_t *vm = vm_lookup_reply(a, r);
    if (!vm)
        return;
    int e = ingress_remove(a->store, json_str(vm, "id"), http_req_param(r, 1), 0);
    if (e < 0) {
        reply_store_error(r, e, "ingress route");
        return;
    }
    if (e == 0) {
        http_reply_problem(r, 404, "not-found", NULL,
                           "no ingress route of this VM has that hostname");
        return;
    }
    http_reply_text(r, 204, "application/json", NULL, 0);
}
