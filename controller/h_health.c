/* /v1/vms/{id}/health-checks: a VM's health checks as its tenant sets
 * them and their states as its node reports them (controller/vmhealth.c
 * keeps both; the node probes). */
#include "api/healthcheck.h"
#include "common/jsonutil.h"
#include "controller/handlers.h"
#include "controller/vmhealth.h"

#include <errno.h>

/* The 400 for a check the spec reader refused; `where` names its place
 * in a create's list ("" for the body itself). */
void reply_health_invalid(struct http_request *r, const char *where,
                          struct jerr *je)
{
    http_reply_problem(r, 400, "validation", *where ? "health_checks"
                                                    : je->field,
                       "%s%s", where, je->detail);
    jerr_clear(je);
}

/* The 409 for a VM that has HC_PER_VM_MAX checks already. */
void reply_health_full(struct http_request *r)
{
    http_reply_problem(r, 409, "quota-exceeded", "health_checks",
                       "a VM has at most %d health checks: delete one first",
                       HC_PER_VM_MAX);
}

HANDLER(h_health_list)
{
    struct app *a = app;
    json_auto_t *vm = vm_lookup_reply(a, r);
    if (!vm)
        return;
    reply_one_page(r, vmhealth_list(a->store, json_str(vm, "id")));
}

HANDLER(h_health_add)
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
    const char *vm_id = json_str(vm, "id");
    int e;
    if (streq(json_str(vm, "desired_state"), "deleted")) {
        http_reply_problem(r, 409, "conflict", NULL,
                           "the VM is being deleted");
        return;
    }
    if (store_tx_begin(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    char id[37];
    struct jerr je = { 0 };
    /* Under the VM's lock, so two requests cannot both take the last
     * place. */
    e = store_lock(a->store, "vm", vm_id);
    if (e == 0)
        e = vmhealth_add(a->store, vm_id, b, id, &je);
    if (e < 0) {
        store_tx_rollback(a->store);
        if (e == -EINVAL)
            reply_health_invalid(r, "", &je);
        else if (e == -E2BIG)
            reply_health_full(r);
        else
            reply_store_error(r, e, "health check");
        return;
    }
    if (store_tx_commit(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    reqctx_set_target(r, vm_id);
    app_node_changed(a, json_str(vm, "node_id"));
    json_t *c = vmhealth_get(a->store, vm_id, id);
    if (!c) {
        http_reply_problem(r, 500, "internal", NULL, "health check vanished");
        return;
    }
    http_reply_json(r, 201, c);
}

HANDLER(h_health_get)
{
    struct app *a = app;
    json_auto_t *vm = vm_lookup_reply(a, r);
    if (!vm)
        return;
    json_t *c = vmhealth_get(a->store, json_str(vm, "id"),
                             http_req_param(r, 1));
    if (!c) {
        http_reply_problem(r, 404, "not-found", NULL, "no such health check");
        return;
    }
    http_reply_json(r, 200, c);
}

HANDLER(h_health_remove)
{
    struct app *a = app;
    json_auto_t *vm = vm_lookup_reply(a, r);
    if (!vm)
        return;
    int e = vmhealth_remove(a->store, json_str(vm, "id"), http_req_param(r, 1));
    if (e < 0) {
        reply_store_error(r, e, "health check");
        return;
    }
    if (e == 0) {
        http_reply_problem(r, 404, "not-found", NULL, "no such health check");
        return;
    }
    app_node_changed(a, json_str(vm, "node_id"));
    http_reply_text(r, 204, "application/json", NULL, 0);
}
