/* VM health checks in the store (controller/vmhealth.h). The node probes;
 * the controller keeps each check's state and its time, records each
 * change as an event and decides the restart action, so that one place
 * holds the back-off whatever the node does. */
#include "controller/vmhealth.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/handlers.h"
#include "controller/store.h"

#include <errno.h>
#include <string.h>

#define CHECK_COLS "id, vm_id, port, type, action, spec, state, since, " \
                   "output, checked_at, restarts, restarted_at, created_at"

/* The stored spec of a row, with the row's id. -EIO when it does not
 * read (never written so by us). */
static int row_spec(const json_t *row, struct hc_spec *ret)
{
    json_auto_t *j = json_loads(json_str(row, "spec") ? json_str(row, "spec")
                                                      : "", 0, NULL);
    struct jerr je = { 0 };
    if (!j || hc_spec_from_json(j, false, ret, &je) < 0) {
        jerr_clear(&je);
        return -EIO;
    }
    snprintf(ret->id, sizeof(ret->id), "%s", json_str(row, "id"));
    return 0;
}

static void set_time(json_t *o, const char *key, const json_t *row,
                     const char *col)
{
    json_t *v = json_object_get(row, col);
    char t[21];
    if (json_is_integer(v))
        time_format_rfc3339(json_integer_value(v), t);
    json_object_set_new(o, key, json_is_integer(v) ? json_string(t)
                                                   : json_null());
}

static json_t *check_render(const json_t *row)
{
    struct hc_spec s;
    json_t *o = row_spec(row, &s) == 0 ? hc_spec_to_json(&s) : json_object();
    hc_spec_clear(&s);
    json_object_set_new(o, "id", json_string(json_str(row, "id")));
    json_object_set_new(o, "vm_id", json_string(json_str(row, "vm_id")));
    json_object_set_new(o, "state", json_string(json_str(row, "state")));
    set_time(o, "since", row, "since");
    const char *out = json_str(row, "output");
    json_object_set_new(o, "output", out ? json_string(out) : json_null());
    set_time(o, "checked_at", row, "checked_at");
    json_object_set_new(o, "restarts",
                        json_integer(json_int(row, "restarts", 0)));
    set_time(o, "restarted_at", row, "restarted_at");
    set_time(o, "created_at", row, "created_at");
    return o;
}

int vmhealth_add(struct store *s, const char *vm_id, const json_t *body,
                 char ret_id[37], struct jerr *err)
{
    struct hc_spec spec;
    int e = hc_spec_from_json(body, true, &spec, err);
    if (e < 0)
        return e;
    if (*spec.id) {
        hc_spec_clear(&spec);
        *err = (struct jerr){ xstrdup("id"),
                              xstrdup("'id' is chosen by the hub") };
        return -EINVAL;
    }
    if (store_query_int(s, 0, "SELECT COUNT(*) FROM health_checks WHERE "
                        "vm_id = $1", "s", vm_id) >= HC_PER_VM_MAX) {
        hc_spec_clear(&spec);
        return -E2BIG;
    }
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    json_auto_t *j = hc_spec_to_json(&spec);
    _cleanup_free_ char *text = json_dumps_compact(j);
    int64_t now = now_s();
    e = store_exec(s, "INSERT INTO health_checks (id, vm_id, port, type, "
                   "action, spec, state, since, created_at) VALUES ($1, $2, "
                   "$3, $4, $5, $6, 'unknown', $7, $7)", "ssisssi", id, vm_id,
                   (int64_t)spec.port, hc_type_name(spec.type),
                   hc_action_name(spec.action), text, now);
    hc_spec_clear(&spec);
    if (e < 0)
        return e;
    memcpy(ret_id, id, sizeof(id));
    return 0;
}

json_t *vmhealth_list(struct store *s, const char *vm_id)
{
    json_auto_t *rows = NULL;
    if (store_query(s, &rows, "SELECT " CHECK_COLS " FROM health_checks "
                    "WHERE vm_id = $1 ORDER BY created_at, id", "s",
                    vm_id) < 0)
        return NULL;
    json_t *out = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_array_append_new(out, check_render(row));
    return out;
}

json_t *vmhealth_get(struct store *s, const char *vm_id, const char *id)
{
    json_auto_t *row = NULL;
    if (!uuid_is_valid(id) ||
        store_query_one(s, &row, "SELECT " CHECK_COLS " FROM health_checks "
                        "WHERE vm_id = $1 AND id = $2", "ss", vm_id, id) < 0)
        return NULL;
    return check_render(row);
}

int vmhealth_remove(struct store *s, const char *vm_id, const char *id)
{
    if (!uuid_is_valid(id))
        return 0;
    return store_exec(s, "DELETE FROM health_checks WHERE vm_id = $1 AND id "
                      "= $2", "ss", vm_id, id);
}

void vmhealth_drop_vm(struct store *s, const char *vm_id)
{
    store_exec(s, "DELETE FROM health_checks WHERE vm_id = $1", "s", vm_id);
}

int vmhealth_desired_node(struct store *s, const char *node_id,
                          const char *vm_id, json_t **ret_rows)
{
    if (vm_id)
        return store_query(s, ret_rows, "SELECT h.vm_id, h.id, h.spec FROM "
                           "health_checks h JOIN vms v ON v.id = h.vm_id "
                           "WHERE v.node_id = $1 AND v.deleted_at IS NULL "
                           "AND v.id = $2 ORDER BY h.created_at, h.id", "ss",
                           node_id, vm_id);
    return store_query(s, ret_rows, "SELECT h.vm_id, h.id, h.spec FROM "
                       "health_checks h JOIN vms v ON v.id = h.vm_id WHERE "
                       "v.node_id = $1 AND v.deleted_at IS NULL ORDER BY "
                       "h.vm_id, h.created_at, h.id", "s", node_id);
}

void vmhealth_desired_from(const json_t *rows, struct am_vm *vm)
{
    size_t n = json_array_size(rows);
    if (n == 0)
        return;
    vm->checks = xcalloc(n, sizeof(*vm->checks));
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        if (row_spec(row, &vm->checks[vm->n_checks]) < 0) {
            log_warn("health check %s: stored spec unreadable, left out",
                     json_str(row, "id"));
            continue;
        }
        vm->n_checks++;
    }
}

/* An event on the VM's tenant for a check's change of state. */
static void state_event(struct app *a, const char *node_id,
                        const char *vm_id, const json_t *row,
                        const char *to, const char *output)
{
    json_auto_t *vm = NULL;
    if (store_query_one(a->store, &vm, "SELECT account_id FROM vms WHERE id "
                        "= $1", "s", vm_id) < 0)
        return;
    _cleanup_free_ char *out = output ? node_text(output, HC_OUTPUT_MAX)
                                      : NULL;
    _cleanup_free_ char *d = xasprintf(
        "check %s (%lld/%s): %s -> %s%s%s", json_str(row, "id"),
        (long long)json_int(row, "port", 0), json_str(row, "type"),
        json_str(row, "state"), to, out ? ": " : "", out ? out : "");
    app_event(a, json_str(vm, "account_id"), node_id, "vm.health", vm_id,
              200, d);
}

static void state_set(struct app *a, const char *node_id, const char *vm_id,
                      const json_t *row, const char *to, const char *output,
                      int64_t now)
{
    bool change = !streq(json_str(row, "state"), to);
    store_exec(a->store, "UPDATE health_checks SET state = $1, output = $2, "
               "checked_at = $3, since = CASE WHEN state <> $1 THEN $3 ELSE "
               "since END, restarts = CASE WHEN $1 = 'healthy' THEN 0 ELSE "
               "restarts END WHERE id = $4", "ssis", to, output, now,
               json_str(row, "id"));
    if (change)
        state_event(a, node_id, vm_id, row, to, output);
}

void vmhealth_record(struct app *a, const char *node_id,
                     const struct am_vm_status *v, int64_t now)
{
    bool running = streq(v->state, "running");
    if (running && !v->has_health)
        return; /* the node runs none of its checks (yet) */
    json_auto_t *rows = NULL;
    if (store_query(a->store, &rows, "SELECT id, port, type, state FROM "
                    "health_checks WHERE vm_id = $1", "s", v->id) < 0)
        return;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *id = json_str(row, "id");
        if (!running) {
            if (!streq(json_str(row, "state"), "unknown"))
                state_set(a, node_id, v->id, row, "unknown",
                          "the VM is not running", now);
            continue;
        }
        const struct am_health *h = NULL;
        for (size_t k = 0; k < v->n_health && !h; k++)
            if (streq(v->health[k].id, id))
                h = &v->health[k];
        if (h) {
            _cleanup_free_ char *out = h->output ? node_text(h->output,
                                                             HC_OUTPUT_MAX)
                                                 : NULL;
            state_set(a, node_id, v->id, row, hc_state_name(h->state), out,
                      now);
        }
    }
}

int vmhealth_tick(struct app *a, int64_t now)
{
    json_auto_t *rows = NULL;
    if (store_query(a->store, &rows,
                    "SELECT h.id, h.vm_id, h.port, h.type, h.spec, h.since, "
                    "h.restarts, h.restarted_at, h.output, v.account_id, "
                    "v.node_id FROM health_checks h JOIN vms v ON v.id = "
                    "h.vm_id WHERE h.state = 'unhealthy' AND h.action = "
                    "'restart' AND v.deleted_at IS NULL AND v.desired_state "
                    "= 'running' AND v.paused = 0 AND v.node_id IS NOT NULL "
                    "ORDER BY h.vm_id, h.since", "") < 0)
        return 0;
    int restarted = 0;
    const char *last_vm = NULL;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *vm_id = json_str(row, "vm_id");
        if (last_vm && streq(last_vm, vm_id))
            continue; /* one restart per VM per round */
        struct hc_spec s;
        if (row_spec(row, &s) < 0)
            continue;
        int64_t grace = hc_restart_grace_s(&s);
        int64_t restarts = json_int(row, "restarts", 0);
        if (restarts >= HC_RESTARTS_MAX) {
            hc_spec_clear(&s);
            continue; /* given up until healthy */
        }
        int64_t wait = hc_restart_backoff_s(&s, restarts);
        int64_t next = hc_restart_backoff_s(&s, restarts + 1);
        hc_spec_clear(&s);
        json_t *at = json_object_get(row, "restarted_at");
        if (now - json_int(row, "since", now) < grace ||
            (json_is_integer(at) && now - json_integer_value(at) < wait))
            continue;
        if (store_exec(a->store, "UPDATE vms SET reboot_gen = reboot_gen + "
                       "1, updated_at = $1 WHERE id = $2 AND desired_state = "
                       "'running'", "is", now, vm_id) <= 0)
            continue;
        store_exec(a->store, "UPDATE health_checks SET restarts = restarts + "
                   "1, restarted_at = $1 WHERE vm_id = $2 AND state = "
                   "'unhealthy' AND action = 'restart'", "is", now, vm_id);
        last_vm = vm_id;
        restarted++;
        _cleanup_free_ char *d = xasprintf(
            "check %s (%lld/%s) unhealthy for %lld s: restart %lld in a row; "
            "%s %lld s", json_str(row, "id"),
            (long long)json_int(row, "port", 0), json_str(row, "type"),
            (long long)(now - json_int(row, "since", now)),
            (long long)restarts + 1,
            restarts + 1 >= HC_RESTARTS_MAX ? "the last until it is healthy "
                                              "again; it was waiting"
                                            : "the next not before",
            (long long)(restarts + 1 >= HC_RESTARTS_MAX ? wait : next));
        app_event(a, json_str(row, "account_id"), "health",
                  "vm.health-restart", vm_id, 200, d);
        log_info("VM %s restarted: %s", vm_id, d);
        app_node_changed(a, json_str(row, "node_id"));
    }
    return restarted;
}
