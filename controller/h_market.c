/* The market as tenants see it: every approved, reachable node's offer
 * with its region, labels and coarse free room (GET /v1/offers), and the
 * region and labels a provider or admin sets on a node (PUT
 * /v1/nodes/{id}/market). An offer never shows a node's address, endpoint,
 * key or credential: only what a buyer chooses by. */
#include "billing/money.h"
#include "common/buf.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/availwin.h"
#include "controller/gpus.h"
#include "controller/handlers.h"
#include "controller/scheduler.h"

#include <errno.h>

/* Free room rounded down to a power of two (0, 1, 2, 4, 8, ...), so an
 * offer tells what fits without tracking each placement. */
static int64_t bucket(int64_t v)
{
    int64_t b = 1;
    if (v < 1)
        return 0;
    while (b <= v / 2)
        b *= 2;
    return b;
}

/* One offer row as shown; NULL when it fails the query's filters. */
static json_t *offer_row(json_t *row, json_t *labels, const char *region,
                         const char *label, int64_t max_vcpu_hour,
                         json_t *gpus_free, const char *gpu_model,
                         int64_t gpu_count)
{
    if (gpu_model && json_int(gpus_free, gpu_model, 0) < gpu_count)
        return NULL;
    const struct rating_offer *d = &billing_config()->default_offer;
    struct rating_offer o = d[0];
    bool def = !json_is_integer(json_object_get(row, "vcpu_hour"));
    if (!def)
        o = (struct rating_offer){ json_int(row, "vcpu_hour", 0),
                                   json_int(row, "mem_gib_hour", 0),
                                   json_int(row, "disk_gib_month", 0),
                                   json_int(row, "gpu_hour", 0),
                                   json_int(row, "port_hour", 0) };
    const char *node_region = json_str(row, "region");
    if (region && !streq(region, node_region ? node_region : ""))
        return NULL;
    if (max_vcpu_hour >= 0 && o.vcpu_hour > max_vcpu_hour)
        return NULL;
    if (label) {
        const char *eq = strchr(label, '=');
        json_t *v = eq ? NULL : json_object_get(labels, label);
        if (eq) {
            _cleanup_free_ char *k = xstrndup(label, (size_t)(eq - label));
            v = json_object_get(labels, k);
            if (!json_is_string(v) || !streq(json_string_value(v), eq + 1))
                return NULL;
        } else if (!v) {
            return NULL;
        }
    }
    json_t *gm = def ? NULL : json_loads(json_str(row, "gpu_models") ?
                                         json_str(row, "gpu_models") : "{}",
                                         0, NULL);
    /* The vCPUs the node claims (as approved), those its last benchmark
     * verified (null until one passed) and those it offers: the lower. */
    int64_t claimed = json_int(row, "vcpus", 0), offered = claimed;
    json_t *verified = json_object_get(row, "bench_vcpus");
    if (json_is_integer(verified) && json_integer_value(verified) < offered)
        offered = json_integer_value(verified);
    int64_t free_vcpus = offered - json_int(row, "used_vcpus", 0);
    json_t *j = json_pack("{s:s, s:s, s:s, s:O, s:o, s:b, s:b, s:{s:I, "
                          "s:I, s:I}}",
                          "node_id", json_str(row, "id"), "node_name",
                          json_str(row, "name"), "region",
                          node_region ? node_region : "", "labels", labels,
                          "prices", billing_offer_json(&o), "default", def,
                          "kvm", json_int(row, "kvm", 0) != 0, "free", "vcpus",
                          (json_int_t)bucket(free_vcpus),
                          "memory_gib",
                          (json_int_t)bucket(json_int(row, "free_mem", 0) / 1024),
                          "disk_gib",
                          (json_int_t)bucket(json_int(row, "free_disk", 0)));
    json_object_set_new(j, "vcpus", json_pack(
        "{s:I, s:O, s:I}", "claimed", (json_int_t)claimed, "verified",
        json_is_integer(verified) ? verified : json_null(), "offered",
        (json_int_t)offered));
    json_object_set_new(j, "gpu_models", json_is_object(gm) ? gm
                                                             : json_object());
    json_object_set(j, "gpus_free", gpus_free);
    if (gm && !json_is_object(gm))
        json_decref(gm);
    /* Percent, as the hub observed the node; null until observed. */
    json_t *rep = json_object_get(row, "reputation");
    json_object_set_new(j, "reputation", json_is_integer(rep)
                                             ? json_incref(rep) : json_null());
    json_t *bench = json_object_get(row, "bench_score");
    json_object_set_new(j, "benchmark", json_is_integer(bench)
                                            ? json_incref(bench) : json_null());
    json_t *pct = json_object_get(row, "bench_pct");
    json_object_set_new(j, "benchmark_pct", json_is_integer(pct)
                                                ? json_incref(pct) : json_null());
    json_object_set_new(j, "evictions",
                        json_integer(json_int(row, "evictions_total", 0)));
    json_object_set_new(j, "currency", json_string(billing_config()->symbol));
    json_object_set_new(j, "vcpu_hour_nano", json_integer(o.vcpu_hour));
    return j;
}

/* The object under node id in map, made empty when absent (borrowed). */
static json_t *node_map(json_t *map, const char *id)
{
    json_t *o = json_object_get(map, id);
    if (!o)
        json_object_set_new(map, id, o = json_object());
    return o;
}

static int by_price(const void *x, const void *y)
{
    json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
    int64_t pa = json_int(a, "vcpu_hour_nano", 0),
            pb = json_int(b, "vcpu_hour_nano", 0);
    return pa < pb ? -1 : pa > pb;
}

/* Best reputation first; unmeasured nodes last. */
static int by_reputation(const void *x, const void *y)
{
    json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
    json_t *ra = json_object_get(a, "reputation"),
           *rb = json_object_get(b, "reputation");
    int64_t pa = json_is_integer(ra) ? json_integer_value(ra) : -1,
            pb = json_is_integer(rb) ? json_integer_value(rb) : -1;
    return pa > pb ? -1 : pa < pb;
}

HANDLER(h_offers_list)
{
    struct app *a = app;
    const char *region = http_req_query(r, "region");
    const char *label = http_req_query(r, "label");
    const char *max = http_req_query(r, "max_price");
    const char *sort = http_req_query(r, "sort");
    int64_t max_price = -1;
    if (max && (money_parse(max, &max_price) < 0 || max_price < 0)) {
        http_reply_problem(r, 400, "validation", "max_price",
                           "max_price must be a decimal amount of tokens per "
                           "vCPU-hour, like \"0.05\"");
        return;
    }
    const char *gpu = http_req_query(r, "gpu");
    _cleanup_free_ char *gpu_model = NULL;
    int64_t gpu_count = 0;
    if (gpu && gpu_spec_parse(gpu, &gpu_model, &gpu_count) < 0) {
        http_reply_problem(r, 400, "validation", "gpu",
                           "gpu must be MODEL[:COUNT] with a count from 1 to "
                           "16, not '%s'", gpu);
        return;
    }
    if (sort && !streq(sort, "price") && !streq(sort, "reputation")) {
        http_reply_problem(r, 400, "validation", "sort",
                           "sort is price or reputation");
        return;
    }
    json_auto_t *rows = NULL, *labs = NULL, *free_gpus = NULL;
    int e = store_query(
        a->store, &rows,
        "SELECT n.id, n.name, n.region, n.kvm, o.vcpu_hour, o.mem_gib_hour, "
        "o.disk_gib_month, o.gpu_hour, o.port_hour, o.gpu_models, n.vcpus, "
        "COALESCE(u.vcpus, 0) AS used_vcpus, n.memory_mib - COALESCE(u.mem, "
        "0) AS free_mem, n.disk_gib - COALESCE(u.disk, 0) AS free_disk, "
        "t.score AS reputation, t.bench_score, t.bench_pct, t.bench_vcpus, "
        "t.evictions_total "
        "FROM nodes n "
        "LEFT JOIN "
        "node_trust t ON t.node_id = n.id LEFT JOIN node_offers o ON "
        "o.node_id = n.id LEFT JOIN "
        "(SELECT node_id, SUM(vcpus) AS vcpus, SUM(memory_mib) AS mem, "
        "SUM(disk_gib) AS disk FROM vms WHERE node_id IS NOT NULL AND "
        "deleted_at IS NULL GROUP BY node_id) u ON u.node_id = n.id WHERE "
        "n.approved = 1 AND n.removed_at IS NULL AND n.last_seen >= $1 "
        "ORDER BY n.created_at, n.id LIMIT 10000", "i",
        now_s() - 3 * a->cfg.heartbeat_s);
    if (e >= 0)
        e = store_query(a->store, &labs, "SELECT node_id, key, value FROM "
                        "node_labels", "");
    /* GPUs a VM could be given now: usable, offered, present, free. */
    if (e >= 0)
        e = store_query(a->store, &free_gpus, "SELECT node_id, model, "
                        "COUNT(*) AS n FROM gpus WHERE usable = 1 AND offered "
                        "= 1 AND present = 1 AND vm_id IS NULL GROUP BY "
                        "node_id, model", "");
    if (e < 0) {
        reply_store_error(r, e, "offers");
        return;
    }
    json_auto_t *by_node = json_object(), *gpus_by_node = json_object();
    size_t i;
    json_t *row;
    json_array_foreach(labs, i, row)
        json_object_set_new(node_map(by_node, json_str(row, "node_id")),
                            json_str(row, "key"),
                            json_string(json_str(row, "value")));
    json_array_foreach(free_gpus, i, row)
        json_object_set_new(node_map(gpus_by_node, json_str(row, "node_id")),
                            json_str(row, "model"),
                            json_integer(json_int(row, "n", 0)));
    size_t n = 0;
    _cleanup_free_ json_t **list = xcalloc(json_array_size(rows) + 1,
                                           sizeof(*list));
    json_array_foreach(rows, i, row) {
        json_t *l = json_object_get(by_node, json_str(row, "id"));
        json_auto_t *empty = json_object(), *none = json_object();
        json_t *g = json_object_get(gpus_by_node, json_str(row, "id"));
        json_t *o = offer_row(row, l ? l : empty, region, label, max_price,
                              g ? g : none, gpu_model, gpu_count);
        if (o)
            list[n++] = o;
    }
    if (sort)
        qsort(list, n, sizeof(*list),
              streq(sort, "price") ? by_price : by_reputation);
    json_t *arr = json_array();
    for (i = 0; i < n; i++) {
        json_object_del(list[i], "vcpu_hour_nano");
        json_array_append_new(arr, list[i]);
    }
    http_reply_json(r, 200, json_pack("{s:o}", "offers", arr));
}

/* The availability windows in body b ("windows": ["mon-fri 19:00-07:00",
 * ...], an empty list clears them) as stored text in *ret_text (NULL:
 * none), and its zone ("tz") in *ret_tz. false when refused (answered). */
static bool windows_of(struct http_request *r, json_t *b, char **ret_text,
                       int *ret_tz)
{
    const char *tz = json_str(b, "tz");
    if (tz && availwin_tz_parse(tz, ret_tz) < 0) {
        http_reply_problem(r, 400, "validation", "tz",
                           "invalid tz '%s': UTC or a fixed offset +HH:MM or "
                           "-HH:MM (up to 14 hours)", tz);
        return false;
    }
    json_t *arr = json_object_get(b, "windows"), *v;
    size_t i;
    struct buf text = BUF_INIT;
    json_array_foreach(arr, i, v) {
        struct availwin w;
        _cleanup_free_ char *badtok = NULL;
        if (!json_is_string(v) ||
            availwin_parse(json_string_value(v), &w, &badtok) < 0) {
            free(buf_steal(&text));
            http_reply_problem(r, 400, "validation", "windows",
                               "invalid window '%s' at '%s': DAYS HH:MM-HH:MM, "
                               "DAYS a comma list of days or ranges (mon-fri) "
                               "or daily; an end at or before the start runs "
                               "into the next day",
                               json_is_string(v) ? json_string_value(v) : "",
                               badtok ? badtok : "");
            return false;
        }
        _cleanup_free_ char *one = availwin_format(&w);
        buf_printf(&text, "%s%s", i ? "; " : "", one);
    }
    *ret_text = buf_steal(&text);
    return true;
}

HANDLER(h_node_market_put)
{
    struct app *a = app;
    static const struct jfield fields[] = {
        { "region", JF_STRING, false, 0, 64, NULL },
        { "labels", JF_OBJECT, false, 0, 0, NULL },
        { "windows", JF_ARRAY, false, 0, AVAILWIN_MAX, NULL },
        { "tz", JF_STRING, false, 1, 16, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), true))
        return;
    json_t *b = http_req_json(r);
    json_auto_t *node = NULL;
    int e = node_find(a, r, &node);
    if (e < 0) {
        reply_store_error(r, e, "node");
        return;
    }
    const char *id = json_str(node, "id"), *key;
    json_t *labels = json_object_get(b, "labels"), *v;
    json_object_foreach(labels, key, v) {
        if (json_object_size(labels) > 32 || !*key || strlen(key) > 64 ||
            strchr(key, '=') || !json_is_string(v) ||
            !*json_string_value(v) || strlen(json_string_value(v)) > 128) {
            http_reply_problem(r, 400, "validation", "labels",
                               "labels maps up to 32 keys (1 to 64 characters, "
                               "no '=') to values of 1 to 128 characters");
            return;
        }
    }
    _cleanup_free_ char *windows = NULL;
    int tz = 0;
    if (!windows_of(r, b, &windows, &tz))
        return;
    if (json_object_get(b, "windows") &&
        (e = store_exec(a->store, "UPDATE nodes SET avail_windows = $1 WHERE "
                        "id = $2", "ss", windows && *windows ? windows : NULL,
                        id)) < 0) {
        reply_store_error(r, e, "node");
        return;
    }
    if (json_str(b, "tz") &&
        (e = store_exec(a->store, "UPDATE nodes SET avail_tz_min = $1 WHERE "
                        "id = $2", "is", (int64_t)tz, id)) < 0) {
        reply_store_error(r, e, "node");
        return;
    }
    const char *region = json_str(b, "region");
    if (region && (e = store_exec(a->store, "UPDATE nodes SET region = $1 "
                                  "WHERE id = $2", "ss", region, id)) < 0) {
        reply_store_error(r, e, "node");
        return;
    }
    /* Labels given replace the node's labels as a whole. */
    if (labels) {
        e = store_exec(a->store, "DELETE FROM node_labels WHERE node_id = $1",
                       "s", id);
        json_object_foreach(labels, key, v)
            if (e >= 0)
                e = store_exec(a->store, "INSERT INTO node_labels (node_id, "
                               "key, value) VALUES ($1, $2, $3)", "sss", id,
                               key, json_string_value(v));
        if (e < 0) {
            reply_store_error(r, e, "labels");
            return;
        }
    }
    scheduler_fleet_changed();
    json_auto_t *labs = NULL;
    store_query(a->store, &labs, "SELECT key, value FROM node_labels WHERE "
                "node_id = $1 ORDER BY key", "s", id);
    json_t *lo = json_object();
    size_t i;
    json_t *row;
    json_array_foreach(labs, i, row)
        json_object_set_new(lo, json_str(row, "key"),
                            json_string(json_str(row, "value")));
    json_auto_t *win = NULL;
    store_query(a->store, &win, "SELECT avail_windows, avail_tz_min FROM "
                "nodes WHERE id = $1", "s", id);
    json_t *wr = json_array_get(win, 0);
    _cleanup_free_ char *tzt =
        availwin_tz_format((int)json_int(wr, "avail_tz_min", 0));
    http_reply_json(r, 200, json_pack("{s:s, s:s, s:o, s:o, s:s}", "node_id",
                                      id, "region", region ? region :
                                      (json_str(node, "region") ?
                                       json_str(node, "region") : ""),
                                      "labels", lo, "windows",
                                      availwin_list_json(json_str(wr,
                                                         "avail_windows")),
                                      "tz", tzt));
}
