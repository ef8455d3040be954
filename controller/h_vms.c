/* VMs: create (from explicit sizes or a template, then placement), list,
 * show, delete and power actions. A tenant sees only its own VMs: anything
 * else is 404, never its data. An image name that names a catalog image
 * (the caller's own, else a public one) makes the node fetch that image;
 * any other name is an image local to the node (its image directory). */
#include "api/agentproto.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "billing/money.h"
#include "controller/accrual.h"
#include "controller/bsched.h"
#include "controller/catalog.h"
#include "controller/console.h"
#include "controller/desired.h"
#include "controller/gpus.h"
#include "controller/handlers.h"
#include "controller/netalloc.h"
#include "controller/netrecords.h"
#include "controller/quota.h"
#include "controller/restore.h"
#include "controller/scheduler.h"
#include "controller/ingress.h"
#include "controller/vmhealth.h"

#include <errno.h>

#define VM_COLS                                                                \
    "v.id, v.account_id, v.name, v.vcpus, v.memory_mib, v.disk_gib, "          \
    "v.image, v.allow_tcg, length(v.user_data) AS user_data_size, "            \
    "v.desired_state, v.state, v.state_reason, v.node_id, n.name AS "          \
    "node_name, n.public_ip6 AS node_public_ip6, v.reboot_gen, v.addresses, " \
    "v.addresses6, v.image_id, "                                               \
    "v.template, "                                                             \
    "v.based_on, v.place_gen, v.shutdown_timeout_s, "                          \
    "v.created_at, v.updated_at, v.max_price, v.region, v.labels, "           \
    "v.anti_affinity, v.min_reputation, v.placement, v.price_hour, "           \
    "v.gpu_model, v.gpu_count, v.paused, v.autostart, v.restart_policy, "      \
    "v.backup_schedule, v.backup_keep, v.backup_next_at, v.interfaces"
#define VM_FROM " FROM vms v LEFT JOIN nodes n ON n.id = v.node_id "

/* A time column as RFC 3339 text; null when not an integer. */
static void put_time(struct jsonw *w, const char *key, struct store_row *row,
                     const char *col)
{
    struct store_value v = store_row_get(row, col);
    jsonw_key(w, key);
    if (v.type != STORE_INT) {
        jsonw_null(w);
        return;
    }
    char t[21];
    time_format_rfc3339(v.i, t);
    jsonw_str(w, t);
}

/* A column holding a JSON array or object as text, written as it is:
 * `fallback` ("[]" or null when NULL) when it is missing or not one. */
static void put_json_column(struct jsonw *w, const char *key,
                            struct store_row *row, const char *col, char open,
                            const char *fallback)
{
    struct store_value v = row ? store_row_get(row, col)
                               : (struct store_value){ STORE_NULL, 0, NULL, 0 };
    jsonw_key(w, key);
    if (v.type == STORE_TEXT && jsonw_text(w, v.s, v.len, open) == 0)
        return;
    if (fallback) {
        jsonw_arr_begin(w);
        jsonw_arr_end(w);
    } else {
        jsonw_null(w);
    }
}

/* An amount in micro-units as money text; null when negative (unset). */
static void put_money(struct jsonw *w, const char *key, int64_t amount)
{
    jsonw_key(w, key);
    if (amount < 0) {
        jsonw_null(w);
        return;
    }
    _cleanup_free_ char *t = money_format(amount, NULL);
    jsonw_str(w, t);
}

/* A column as it is stored: integer, text or null. */
static void put_column(struct jsonw *w, struct store_row *row, const char *col)
{
    struct store_value v = store_row_get(row, col);
    jsonw_key(w, col);
    if (v.type == STORE_INT)
        jsonw_int(w, v.i);
    else if (v.type == STORE_TEXT)
        jsonw_strn(w, v.s, v.len);
    else
        jsonw_null(w);
}

void vm_write(struct jsonw *w, struct store_row *row)
{
    static const char *const copy[] = { "id", "account_id", "name", "vcpus",
                                        "memory_mib", "disk_gib", "image",
                                        "user_data_size", "desired_state",
                                        "state", "state_reason", "node_id",
                                        "node_name", "reboot_gen", "image_id",
                                        "template", "based_on", "place_gen",
                                        "shutdown_timeout_s",
                                        "restart_policy", "backup_keep" };
    for (size_t i = 0; i < ARRAY_SIZE(copy); i++)
        put_column(w, row, copy[i]);
    jsonw_key(w, "allow_tcg");
    jsonw_bool(w, store_row_int(row, "allow_tcg", 0));
    jsonw_key(w, "paused");
    jsonw_bool(w, store_row_int(row, "paused", 0));
    jsonw_key(w, "autostart");
    jsonw_bool(w, store_row_int(row, "autostart", 1));
    put_json_column(w, "addresses", row, "addresses", '[', "[]");
    put_json_column(w, "addresses6", row, "addresses6", '[', "[]");
    /* Where its published ports also answer over IPv6: its node's global
     * address, when the node has one and the VM a dual-stack network. */
    struct store_value p6 = store_row_get(row, "node_public_ip6");
    struct store_value a6 = store_row_get(row, "addresses6");
    if (p6.type == STORE_TEXT && a6.type == STORE_TEXT && a6.len > 2) {
        jsonw_key(w, "public_ip6");
        jsonw_strn(w, p6.s, p6.len);
    }
    /* The interfaces its node read from the domain (virsh domiflist). */
    put_json_column(w, "interfaces", row, "interfaces", '[', "[]");
    struct store_value bs = store_row_get(row, "backup_schedule");
    jsonw_key(w, "backup_schedule");
    if (bs.type == STORE_TEXT)
        jsonw_strn(w, bs.s, bs.len);
    else
        jsonw_str(w, "off");
    put_time(w, "backup_next_at", row, "backup_next_at");
    put_time(w, "created_at", row, "created_at");
    put_time(w, "updated_at", row, "updated_at");
    /* What the owner asked of placement and what placement decided. */
    put_money(w, "max_price", store_row_int(row, "max_price", -1));
    jsonw_key(w, "region");
    jsonw_str(w, store_row_str(row, "region"));
    jsonw_key(w, "anti_affinity");
    jsonw_str(w, store_row_str(row, "anti_affinity"));
    jsonw_key(w, "min_reputation");
    jsonw_int(w, store_row_int(row, "min_reputation", 0));
    put_json_column(w, "labels", row, "labels", '[', "[]");
    put_json_column(w, "placement", row, "placement", '{', NULL);
    put_money(w, "price_hour", store_row_int(row, "price_hour", -1));
    /* The GPUs asked for, as MODEL:COUNT. */
    int64_t gn = store_row_int(row, "gpu_count", 0);
    const char *gm = store_row_str(row, "gpu_model");
    jsonw_key(w, "gpu");
    if (gn > 0 && gm) {
        _cleanup_free_ char *g = xasprintf("%s:%lld", gm, (long long)gn);
        jsonw_str(w, g);
    } else {
        jsonw_null(w);
    }
}

/* The live VM ref names: by id (its primary key), else by name: the
 * caller's own (vms_owner_name), or for an admin, its own first, then any
 * (vms_name). Tenants see only their own. 0, -ENOENT or -errno. */
const char vm_sql_by_id[] = "SELECT " VM_COLS VM_FROM "WHERE v.id = $1 AND "
                            "v.deleted_at IS NULL AND ($3 = 1 OR "
                            "v.account_id = $2)";
const char vm_sql_by_own_name[] = "SELECT " VM_COLS VM_FROM "WHERE "
                                  "v.account_id = $2 AND v.name = $1 AND "
                                  "v.deleted_at IS NULL";
const char vm_sql_by_any_name[] = "SELECT " VM_COLS VM_FROM "WHERE v.name = "
                                  "$1 AND v.deleted_at IS NULL ORDER BY "
                                  "v.created_at, v.id LIMIT 1";
/* Both take page_list's arguments. */
const char vm_sql_list_all[] = "SELECT " VM_COLS VM_FROM "WHERE v.deleted_at "
                               "IS NULL AND ($1 = 1 OR v.account_id = $2) AND "
                               PAGE_KEYSET("v.created_at", "v.id");
const char vm_sql_list_own[] = "SELECT " VM_COLS VM_FROM "WHERE v.account_id "
                               "= $2 AND v.deleted_at IS NULL AND $1 = 0 AND "
                               PAGE_KEYSET("v.created_at", "v.id");

static int vm_find(struct app *a, const char *ref, const char *account_id,
                   bool admin, json_t **ret)
{
    int e = -ENOENT;
    if (uuid_is_valid(ref))
        e = store_query_one(a->store, ret, vm_sql_by_id, "ssb", ref,
                            account_id, admin);
    if (e == -ENOENT)
        e = store_query_one(a->store, ret, vm_sql_by_own_name, "ss", ref,
                            account_id);
    if (e == -ENOENT && admin)
        e = store_query_one(a->store, ret, vm_sql_by_any_name, "s", ref);
    return e;
}

/* Find a live VM by id, or by name among the caller's own VMs. */
int vm_lookup(struct app *a, struct http_request *r, json_t **ret)
{
    struct reqctx *c = reqctx_of(r);
    const char *ref = http_req_param(r, 0);
    /* The libvirt domain name on the node, fog-<id>, names the VM too. */
    if (ref && startswith(ref, "fog-") && uuid_is_valid(ref + 4))
        ref += 4;
    if (!ref || (!uuid_is_valid(ref) && !name_is_valid(ref)))
        return -ENOENT;
    int e = vm_find(a, ref, c->account_id, c->role == ROLE_ADMIN, ret);
    if (e < 0)
        return e;
    reqctx_set_target(r, json_str(*ret, "id"));
    return 0;
}

json_t *vm_lookup_reply(struct app *a, struct http_request *r)
{
    json_t *vm = NULL;
    int e = vm_lookup(a, r, &vm);
    if (e < 0)
        reply_store_error(r, e, "VM");
    return e < 0 ? NULL : vm;
}

void reply_one_page(struct http_request *r, json_t *items)
{
    if (!items) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    http_reply_json(r, 200, json_pack("{s:o, s:n}", "items", items,
                                      "next_cursor"));
}

static void vm_write_object(struct store_row *row, void *data)
{
    struct jsonw *w = data;
    jsonw_obj_begin(w);
    vm_write(w, row);
    jsonw_obj_end(w);
}

void reply_vm(struct app *a, struct http_request *r, int status,
                     const char *id)
{
    struct jsonw w = JSONW_INIT;
    if (store_query_each(a->store, vm_write_object, &w, "SELECT " VM_COLS
                         VM_FROM "WHERE v.id = $1", "s", id) < 0 ||
        w.b.len == 0) {
        buf_free(&w.b);
        http_reply_problem(r, 500, "internal", NULL, "VM vanished");
        return;
    }
    http_reply_jsonw(r, status, &w);
}

/* Interfaces for a new VM: one per requested network (the default network
 * when none is named), each with an address and a MAC. Inside the caller's
 * transaction. Fills `addrs` and `addrs6` with the IPv4 and IPv6
 * addresses. */
static int vm_attach_networks(struct app *a, struct http_request *r,
                              const char *vm_id, const char *account_id,
                              json_t *nets, json_t *addrs, json_t *addrs6)
{
    size_t n = json_array_size(nets);
    for (size_t i = 0; i < (n ? n : 1); i++) {
        json_t *ref = n ? json_array_get(nets, i) : NULL;
        if (ref && !json_is_string(ref)) {
            http_reply_problem(r, 400, "validation", "networks",
                               "networks must be names");
            return -EINVAL;
        }
        char net_id[UUID_STR_LEN + 1];
        int e = network_resolve(a->store, account_id,
                                ref ? json_string_value(ref) : NULL, net_id);
        if (e < 0) {
            http_reply_problem(r, e == -ENOENT ? 400 : 409,
                               e == -ENOENT ? "validation" : "conflict",
                               "networks", "no usable network '%s'",
                               ref && name_is_valid(json_string_value(ref))
                                   ? json_string_value(ref) : "default");
            return e;
        }
        _cleanup_free_ char *addr = netalloc_address(a->store, net_id, vm_id);
        _cleanup_free_ char *mac = netalloc_mac(a->store);
        if (!addr) {
            http_reply_problem(r, 409, "insufficient-capacity", "networks",
                               "network has no free address");
            return -ENOSPC;
        }
        e = store_exec(a->store,
                       "INSERT INTO vm_nics (vm_id, idx, network_id, mac, "
                       "address) VALUES ($1, $2, $3, $4, $5)", "sisss", vm_id,
                       (int64_t)i, net_id, mac, addr);
        if (e < 0) {
            http_reply_problem(r, 409, "conflict", "networks",
                               "the same network twice");
            return e;
        }
        json_array_append_new(addrs, json_string(addr));
        _cleanup_free_ char *addr6 = netalloc_nic_address6(a->store, net_id,
                                                           addr);
        if (addr6)
            json_array_append_new(addrs6, json_string(addr6));
    }
    return 0;
}

/* The health checks of a create's body (answered on failure). */
static int vm_add_checks(struct app *a, struct http_request *r,
                         const char *vm_id, json_t *checks)
{
    size_t i;
    json_t *c;
    json_array_foreach(checks, i, c) {
        struct jerr je = { 0 };
        char id[37];
        int e = vmhealth_add(a->store, vm_id, c, id, &je);
        if (e == -EINVAL) {
            _cleanup_free_ char *where = xasprintf("health_checks[%zu]: ", i);
            reply_health_invalid(r, where, &je);
        } else if (e == -E2BIG) {
            reply_health_full(r);
        } else if (e < 0) {
            reply_store_error(r, e, "health check");
        }
        if (e < 0)
            return e;
    }
    return 0;
}

static int vm_add_ports(struct app *a, struct http_request *r,
                        const char *vm_id, json_t *ports)
{
    size_t i;
    json_t *p;
    json_array_foreach(ports, i, p) {
        struct jerr je = { 0 };
        if (json_check(p, port_fields, ARRAY_SIZE(port_fields), &je) < 0) {
            http_reply_problem(r, 400, "validation", "ports", "ports[%zu]: %s",
                               i, je.detail);
            jerr_clear(&je);
            return -EINVAL;
        }
        int e = port_insert(a->store, vm_id, NULL, p, NULL);
        if (e < 0) {
            http_reply_problem(r, 409, "conflict", "ports",
                               "ports[%zu] is published twice", i);
            return e;
        }
    }
    return 0;
}

/* The catalog image a VM names (id, or name: the caller's own first, then
 * a public one); with sha256, only one with that content. 0 and *ret {id,
 * name, state, state_reason, min_disk_gib, source, sha256} (caller owns),
 * -ENOENT or -EIO. */
static int vm_image_resolve(struct app *a, const char *account_id,
                            const char *ref, const char *sha256, json_t **ret)
{
#define IMAGE_RESOLVE(extra)                                                  \
    "SELECT id, name, state, state_reason, min_disk_gib, source, sha256 "    \
    "FROM images WHERE deleted_at IS NULL AND (id = $1 OR name = $1) AND "   \
    "(account_id = $2 OR visibility = 'public') " extra "ORDER BY "          \
    "(id = $1) DESC, CASE WHEN account_id = $2 THEN 0 ELSE 1 END, "          \
    "created_at LIMIT 1"
    if (sha256)
        return store_query_one(a->store, ret, IMAGE_RESOLVE("AND sha256 = $3 "),
                               "sss", ref, account_id, sha256);
    return store_query_one(a->store, ret, IMAGE_RESOLVE(""), "ss", ref,
                           account_id);
#undef IMAGE_RESOLVE
}

/* A VM's request merged with its template: what will be stored. */
struct vm_spec {
    int64_t vcpus, memory_mib, disk_gib;
    bool allow_tcg;
    const char *image;      /* name stored on the VM */
    const char *image_id;   /* catalog image, or NULL for a node-local one */
    const char *user_data;
    json_t *ports;          /* borrowed */
    const char *tmpl;       /* the template the VM is */
    const char *based_on;   /* the template it was made from, replaced */
    bool importing;         /* its image is the template's, still importing */
};

/* Fill spec from the body b and the template t (may be NULL): explicit
 * fields win, the template fills the rest. false after answering 400. */
static bool vm_spec_merge(struct app *a, struct http_request *r, json_t *b,
                          json_t *t, struct vm_spec *spec)
{
    static const char *const need[] = { "vcpus", "memory_mib", "disk_gib",
                                        "image" };
    for (size_t i = 0; i < ARRAY_SIZE(need); i++)
        if (!json_object_get(b, need[i]) && !json_object_get(t, need[i])) {
            http_reply_problem(r, 400, "validation", need[i],
                               "%s is required (or a template)", need[i]);
            return false;
        }
    json_t *src = json_object_get(b, "vcpus") ? b : t;
    spec->vcpus = json_int(src, "vcpus", 1);
    src = json_object_get(b, "memory_mib") ? b : t;
    spec->memory_mib = json_int(src, "memory_mib", 64);
    src = json_object_get(b, "disk_gib") ? b : t;
    spec->disk_gib = json_int(src, "disk_gib", 1);
    src = json_object_get(b, "allow_tcg") ? b : t;
    spec->allow_tcg = json_bool(src, "allow_tcg", false);
    src = json_object_get(b, "image") ? b : t;
    spec->image = json_str(src, "image");
    src = json_object_get(b, "user_data") ? b : t;
    spec->user_data = json_str(src, "user_data") ? json_str(src, "user_data")
                                                   : "";
    /* An explicit list, even empty, replaces the template's ports. */
    src = json_object_get(b, "ports") ? b : t;
    spec->ports = json_object_get(src, "ports");
    spec->tmpl = t ? json_str(t, "name") : NULL;
    if (!t)
        return true;
    /* A template is data on disk: it must still fit this controller. */
    if (spec->vcpus > a->cfg.max_vcpus || spec->memory_mib < 64 ||
        spec->memory_mib > a->cfg.max_memory_mib ||
        spec->disk_gib > a->cfg.max_disk_gib) {
        http_reply_problem(r, 400, "validation", "template",
                           "template '%s' asks for %lld vCPUs, %lld MiB and "
                           "%lld GiB: outside this controller's limits; give "
                           "the sizes explicitly", spec->tmpl,
                           (long long)spec->vcpus, (long long)spec->memory_mib,
                           (long long)spec->disk_gib);
        return false;
    }
    /* Another image or other user data than the template's makes another
     * application: the VM is only based on the template, and a node whose
     * policy accepts the template does not take it. */
    json_t *img = json_object_get(b, "image"), *ud = json_object_get(b, "user_data");
    if ((img && !streq(json_string_value(img), json_str(t, "image"))) ||
        (ud && !streq(json_string_value(ud), json_str(t, "user_data") ?
                                                  json_str(t, "user_data") : ""))) {
        spec->based_on = spec->tmpl;
        spec->tmpl = NULL;
    }
    return true;
}

/* Point the spec at the catalog image it names, if any: it must be ready,
 * and the disk at least its minimum (a template's default disk grows to
 * it). A name with no catalog image stays a node-local image name. false
 * after answering. */
static bool vm_spec_image(struct app *a, struct http_request *r, json_t *b,
                          json_t *t, const char *account_id,
                          struct vm_spec *spec, json_t **ret_img)
{
    json_t *img = NULL;
    /* The template's own image (the request names none, or the same
     * name) may be pinned by digest: only that content will do, whatever
     * else the catalog calls by its name. */
    const char *pin = t && (!json_object_get(b, "image") ||
                            streq(json_str(b, "image"), json_str(t, "image")))
                          ? json_str(t, "image_sha256") : NULL;
    int e = vm_image_resolve(a, account_id, spec->image, pin, &img);
    /* The template's own image, by URL and digest: the hub imports it
     * once and the VM waits for it. */
    bool by_url = pin && json_str(t, "image_url");
    if (e == -ENOENT && by_url) {
        char id[UUID_STR_LEN + 1];
        e = catalog_template_image(a, t, id);
        if (e == 0)
            e = vm_image_resolve(a, account_id, id, NULL, &img);
        if (e < 0) {
            reply_store_error(r, e, "image");
            return false;
        }
    }
    if (e == -ENOENT && pin) {
        http_reply_problem(r, 409, "conflict", "template",
                           "template '%s' pins image '%s' to sha256 %s; the "
                           "catalog has no image of that name with it",
                           json_str(t, "name"), spec->image, pin);
        return false;
    }
    if (e == -ENOENT) {
        if (uuid_is_valid(spec->image)) {
            http_reply_problem(r, 400, "validation", "image",
                               "no such image '%s'", spec->image);
            return false;
        }
        *ret_img = NULL;
        return true;
    }
    if (e < 0) {
        http_reply_problem(r, 500, "internal", NULL, "store error");
        return false;
    }
    spec->importing = by_url && streq(json_str(img, "state"), "importing") &&
                      streq(json_str(img, "source"), json_str(t, "image_url")) &&
                      streq(json_str(img, "sha256"), json_str(t, "image_sha256"));
    if (!streq(json_str(img, "state"), "ready") && !spec->importing) {
        const char *why = json_str(img, "state_reason");
        http_reply_problem(r, 409, "conflict", "image",
                           "image '%s' is %s, not ready%s%s", spec->image,
                           json_str(img, "state"), why ? ": " : "",
                           why ? why : "");
        json_decref(img);
        return false;
    }
    int64_t min = json_int(img, "min_disk_gib", 1);
    if (spec->disk_gib < min) {
        if (json_object_get(b, "disk_gib") || min > a->cfg.max_disk_gib) {
            http_reply_problem(r, 400, "validation", "disk_gib",
                               "image '%s' needs a disk of at least %lld GiB",
                               spec->image, (long long)min);
            json_decref(img);
            return false;
        }
        spec->disk_gib = min;
    }
    spec->image = json_str(img, "name");
    spec->image_id = json_str(img, "id");
    *ret_img = img;
    return true;
}

void vm_create_fields(const struct app *a,
                      struct jfield ret[VM_CREATE_NFIELDS])
{
    static const char *const power[] = { "running", "stopped", NULL };
    const struct jfield fields[VM_CREATE_NFIELDS] = {
        { "name", JF_NAME, true, 0, 0, NULL },
        { "template", JF_NAME, false, 0, 0, NULL },
        { "vcpus", JF_INT, false, 1, a->cfg.max_vcpus, NULL },
        { "memory_mib", JF_INT, false, 64, a->cfg.max_memory_mib, NULL },
        { "disk_gib", JF_INT, false, 1, a->cfg.max_disk_gib, NULL },
        { "image", JF_NAME, false, 0, 0, NULL },
        { "allow_tcg", JF_BOOL, false, 0, 0, NULL },
        { "user_data", JF_STRING, false, 0, 65536, NULL },
        { "power_state", JF_ENUM, false, 0, 0, power },
        { "networks", JF_ARRAY, false, 0, 8, NULL },
        { "ports", JF_ARRAY, false, 0, 32, NULL },
        { "shutdown_timeout_s", JF_INT, false, 1, VM_SHUTDOWN_TIMEOUT_MAX_S,
          NULL },
        { "max_price", JF_STRING, false, 1, 32, NULL },
        { "region", JF_NAME, false, 0, 0, NULL },
        { "labels", JF_ARRAY, false, 0, 16, NULL },
        { "anti_affinity", JF_NAME, false, 0, 0, NULL },
        { "min_reputation", JF_INT, false, 0, 100, NULL },
        { "dry_run", JF_BOOL, false, 0, 0, NULL },
        { "gpu", JF_STRING, false, 1, 80, NULL },
        { "restart_policy", JF_ENUM, false, 0, 0, restore_policies },
        { "health_checks", JF_ARRAY, false, 0, HC_PER_VM_MAX, NULL },
        { "backup_schedule", JF_ENUM, false, 0, 0, bsched_names },
        { "backup_keep", JF_INT, false, 1, BSCHED_KEEP_MAX, NULL },
    };
    memcpy(ret, fields, sizeof(fields));
}

/* The placement constraints of a create: the cap (the hub's default when
 * none is given; -1 for none) and the label selectors as a JSON array of
 * "key=value". false after answering 400. */
static bool vm_constraints(struct app *a, struct http_request *r, json_t *b,
                           int64_t *ret_cap, char **ret_labels)
{
    const char *t = json_str(b, "max_price");
    *ret_cap = scheduler_default_cap(a);
    if (t && (money_parse(t, ret_cap) < 0 || *ret_cap < 0)) {
        http_reply_problem(r, 400, "validation", "max_price",
                           "max_price must be a non-negative decimal amount "
                           "of tokens per hour, like \"0.5\"");
        return false;
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(b, "labels"), i, v) {
        const char *kv = json_string_value(v), *eq = kv ? strchr(kv, '=') : NULL;
        if (!eq || eq == kv || !eq[1] || strlen(kv) > 200) {
            http_reply_problem(r, 400, "validation", "labels",
                               "labels[%zu] must be a \"key=value\" string "
                               "(at most 200 characters)", i);
            return false;
        }
    }
    json_t *sel = json_object_get(b, "labels");
    *ret_labels = sel ? json_dumps_compact(sel) : xstrdup("[]");
    return true;
}

/* Where the VM would go now and at what price, creating nothing. */
static void vm_dry_run(struct app *a, struct http_request *r, json_t *b,
                       const struct vm_spec *spec, int64_t cap,
                       const char *labels, const char *gpu_model,
                       int64_t gpu_count)
{
    struct reqctx *c = reqctx_of(r);
    struct sched_ask q _cleanup_(sched_ask_free) = { 0 };
    q.req = (struct place_req){
        .vcpus = spec->vcpus, .mem_mib = spec->memory_mib,
        .disk_gib = spec->disk_gib,
        .ports = (int64_t)json_array_size(spec->ports),
        .allow_tcg = spec->allow_tcg, .tmpl = spec->tmpl,
        .image = spec->image, .image_id = spec->image_id,
        .region = json_str(b, "region"), .max_price = cap,
        .min_reputation = (double)json_int(b, "min_reputation", 0) / 100.0,
        .gpu_model = gpu_model, .gpu_count = gpu_count };
    json_t *choice = NULL;
    int e = sched_ask_fill(a, &q, c->account_id, NULL, labels,
                           json_str(b, "anti_affinity"));
    if (e >= 0)
        e = scheduler_decide(a, &q.req, &choice);
    if (e < 0) {
        reply_store_error(r, e, "placement");
        return;
    }
    c->no_event = true;
    json_object_set_new(choice, "dry_run", json_true());
    json_object_set_new(choice, "placeable", json_boolean(e > 0));
    _cleanup_free_ char *capt = cap >= 0 ? money_format(cap, NULL) : NULL;
    json_object_set_new(choice, "max_price",
                        capt ? json_string(capt) : json_null());
    http_reply_json(r, 200, choice);
}

HANDLER(h_vm_create)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    struct jfield fields[VM_CREATE_NFIELDS];
    vm_create_fields(a, fields);
    if (!body_check(r, fields, ARRAY_SIZE(fields), true))
        return;
    json_t *b = http_req_json(r);
    json_auto_t *tmpl = NULL, *img = NULL;
    if (json_str(b, "template")) {
        tmpl = catalog_template(a, json_str(b, "template"));
        if (!tmpl) {
            http_reply_problem(r, 400, "validation", "template",
                               "no such template '%s'",
                               json_str(b, "template"));
            return;
        }
    }
    struct vm_spec spec = { 0 };
    if (!vm_spec_merge(a, r, b, tmpl, &spec) ||
        !vm_spec_image(a, r, b, tmpl, c->account_id, &spec, &img))
        return;
    int64_t cap;
    _cleanup_free_ char *labels = NULL;
    if (!vm_constraints(a, r, b, &cap, &labels))
        return;
    /* "MODEL[:COUNT]": COUNT GPUs (1 to 16, default 1) of MODEL. */
    _cleanup_free_ char *gpu_model = NULL;
    int64_t gpu_count = 0;
    if (json_str(b, "gpu")) {
        const char *g = json_str(b, "gpu");
        if (gpu_spec_parse(g, &gpu_model, &gpu_count) < 0) {
            http_reply_problem(r, 400, "validation", "gpu",
                               "gpu must be MODEL[:COUNT] with a model as "
                               "GET /v1/offers names it and a count from 1 "
                               "to 16, not '%s'", g);
            return;
        }
    }
    if (json_bool(b, "dry_run", false)) {
        vm_dry_run(a, r, b, &spec, cap, labels, gpu_model, gpu_count);
        return;
    }
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    int64_t now = now_s();
    const char *desired = json_str(b, "power_state");
    json_auto_t *addrs = json_array(), *addrs6 = json_array();
    struct rating_shape shape = { spec.vcpus, spec.memory_mib, spec.disk_gib,
                                  0, (int64_t)json_array_size(spec.ports) };
    int64_t need = 0;
    int funds = streq(desired, "stopped")
                    ? 0
                    : billing_check_create(a, c->account_id, &shape, &need);
    if (funds < 0 && funds != -EDQUOT) {
        reply_store_error(r, funds, "balance");
        return;
    }
    if (funds == -EDQUOT) {
        _cleanup_free_ char *t = money_format(need, billing_config()->symbol);
        http_reply_problem(r, 402, "insufficient-funds", NULL,
                           "the balance must cover %lld s of running (%s): "
                           "top up the account", (long long)billing_config()->grace_s,
                           t);
        return;
    }

    if (quota_tx_begin(a, r, c->account_id, QUOTA_VMS, 1) < 0)
        return;
    if (quota_check(a, r, c->account_id, QUOTA_PORTS,
                    (int64_t)json_array_size(spec.ports)) < 0) {
        store_tx_rollback(a->store);
        return;
    }
    /* The account's creates go one at a time across replicas: each takes
     * the locks of its networks' addresses, in whatever order it names
     * them, without deadlocking another. */
    if (store_lock(a->store, "account-vms", c->account_id) < 0) {
        store_tx_rollback(a->store);
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    /* The image may have gone since it was resolved: deletion counts VMs
     * in its own transaction under the image's lock, so checking again
     * under that lock is enough. */
    if (spec.image_id &&
        (store_lock(a->store, "image", spec.image_id) < 0 ||
         store_query_int(a->store, 0, "SELECT COUNT(*) FROM images WHERE id = "
                        "$1 AND deleted_at IS NULL AND (state = 'ready' OR "
                        "($2 = 1 AND state = 'importing'))", "sb",
                        spec.image_id, spec.importing) != 1)) {
        store_tx_rollback(a->store);
        http_reply_problem(r, 409, "conflict", "image",
                           "image '%s' was deleted or is no longer ready",
                           spec.image);
        return;
    }
    int e = store_exec(
        a->store,
        "INSERT INTO vms (id, account_id, name, vcpus, memory_mib, disk_gib, "
        "image, allow_tcg, user_data, desired_state, state, created_at, "
        "updated_at, image_id, template, based_on, shutdown_timeout_s, "
        "max_price, region, labels, anti_affinity, min_reputation) VALUES "
        "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11, $11, $12, "
        "$13, $14, $15, $16, $17, $18, $19, $20)",
        "sssiiisbssisssiisssi", id, c->account_id, json_str(b, "name"),
        spec.vcpus, spec.memory_mib, spec.disk_gib, spec.image, spec.allow_tcg,
        spec.user_data, desired ? desired : "running", now, spec.image_id,
        spec.tmpl, spec.based_on,
        json_int(b, "shutdown_timeout_s", VM_SHUTDOWN_TIMEOUT_DEFAULT_S), cap,
        json_str(b, "region"), labels, json_str(b, "anti_affinity"),
        json_int(b, "min_reputation", 0));
    if (e >= 0 && gpu_count > 0)
        e = store_exec(a->store, "UPDATE vms SET gpu_model = $1, gpu_count "
                       "= $2 WHERE id = $3", "sis", gpu_model, gpu_count, id);
    if (e >= 0 && json_str(b, "restart_policy"))
        e = store_exec(a->store, "UPDATE vms SET restart_policy = $1 WHERE "
                       "id = $2", "ss", json_str(b, "restart_policy"), id);
    if (e >= 0 && (json_str(b, "backup_schedule") ||
                   json_object_get(b, "backup_keep")))
        e = bsched_set(a, id, json_str(b, "backup_schedule") ?
                                  json_str(b, "backup_schedule") : "off",
                       json_int(b, "backup_keep", 0));
    if (e < 0) {
        store_tx_rollback(a->store);
        reply_store_error(r, e, "a VM with this name");
        return;
    }
    if (vm_attach_networks(a, r, id, c->account_id,
                           json_object_get(b, "networks"), addrs,
                           addrs6) < 0 ||
        vm_add_ports(a, r, id, spec.ports) < 0 ||
        vm_add_checks(a, r, id, json_object_get(b, "health_checks")) < 0) {
        store_tx_rollback(a->store);
        return;
    }
    /* A requested host port is honoured or the create refused, never
     * quietly replaced by another. */
    _cleanup_free_ char *no_port = netalloc_ports_refusal(a->store, id);
    if (no_port) {
        store_tx_rollback(a->store);
        http_reply_problem(r, 409, "port-unavailable", "ports", "%s", no_port);
        return;
    }
    _cleanup_free_ char *addr_text = json_dumps_compact(addrs);
    _cleanup_free_ char *addr6_text = json_dumps_compact(addrs6);
    store_exec(a->store, "UPDATE vms SET addresses = $1, addresses6 = $2 "
               "WHERE id = $3", "sss", addr_text, addr6_text, id);
    if (store_tx_commit(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    reqctx_set_target(r, id);
    if (spec.tmpl || spec.based_on)
        reqctx_set_detail(r, "template %s%s, image %s",
                          spec.tmpl ? spec.tmpl : spec.based_on,
                          spec.tmpl ? "" : " (image or user data replaced)",
                          spec.image);
    scheduler_place(a, id);
    reply_vm(a, r, 201, id);
}

void vm_release(struct app *a, const char *vm_id)
{
    store_exec(a->store, "DELETE FROM ports WHERE vm_id = $1", "s", vm_id);
    netalloc_release(a->store, vm_id);
    store_exec(a->store, "DELETE FROM vm_nics WHERE vm_id = $1", "s", vm_id);
    gpus_release(a->store, vm_id);
    vmhealth_drop_vm(a->store, vm_id);
    ingress_drop_vm(a->store, vm_id);
}

struct node_list {
    json_t *ids; /* {node_id: true} */
};

static void node_row(struct store_row *row, void *data)
{
    const char *id = store_row_str(row, "node_id");
    if (id)
        json_object_set_new(((struct node_list *)data)->ids, id, json_true());
}

/* The nodes holding a VM of network `net` (a networks row with id and
 * dns_rev) but vm_id into l: from the records held for it at that
 * revision, else from the store (every VM of the network walked). With
 * desired_verify(), read from the store too, and the controller aborts
 * when the records held miss one. */
static void network_nodes(struct app *a, const json_t *net,
                          const char *vm_id, struct node_list *l)
{
    const char *id = json_str(net, "id");
    struct netrec_set *set = netrecords_held(id, json_int(net, "dns_rev", -1));
    if (!set || desired_verify()) {
        json_auto_t *ids = json_object();
        struct node_list sql = { ids };
        store_query_each(a->store, node_row, &sql,
                         "SELECT DISTINCT v.node_id FROM vms v JOIN vm_nics c "
                         "ON c.vm_id = v.id WHERE v.node_id IS NOT NULL AND "
                         "v.deleted_at IS NULL AND c.network_id = $1 AND "
                         "v.id <> $2", "ss", id, vm_id);
        if (!set) {
            json_object_update(l->ids, ids);
            return;
        }
        /* The held set must name every node the store does (it may name
         * more: the VM's own, before its change). */
        const char *node;
        json_t *v;
        json_object_foreach(ids, node, v) {
            bool held = false;
            for (size_t i = 0; i < set->n_nodes && !held; i++)
                held = streq(set->nodes[i], node);
            if (!held) {
                log_error("network %s at %lld: node %s holds a VM of it, not "
                          "in its records", id, (long long)set->rev, node);
                abort();
            }
        }
    }
    for (size_t i = 0; i < set->n_nodes; i++)
        json_object_set_new(l->ids, set->nodes[i], json_true());
    netrec_set_unref(set);
}

void vm_networks_changed(struct app *a, const char *vm_id)
{
    json_auto_t *nets = NULL;
    struct node_list l = { json_object() };
    size_t i;
    json_t *net;
    /* Read before they move on: the records held at that revision name
     * the nodes without a walk of the network. */
    store_query(a->store, &nets, "SELECT w.id, w.dns_rev, (SELECT "
                "v.node_id FROM vms v WHERE v.id = $1 AND v.deleted_at IS "
                "NULL) AS node_id FROM networks w WHERE w.id IN (SELECT "
                "network_id FROM vm_nics WHERE vm_id = $1)", "s", vm_id);
    json_array_foreach(nets, i, net) {
        network_nodes(a, net, vm_id, &l);
        /* The VM's own node now (where it was just placed or moved). */
        if (json_str(net, "node_id"))
            json_object_set_new(l.ids, json_str(net, "node_id"), json_true());
    }
    if (netrecords_vm_changed(a->store, vm_id) < 0)
        log_error("vm %s: its networks' names could not be marked changed",
                  vm_id);
    /* Their networks' members (names, remote MACs) changed, no VM. */
    const char *node;
    json_t *v;
    json_object_foreach(l.ids, node, v)
        app_node_members_changed(a, node);
    json_decref(l.ids);
}

HANDLER(h_vm_list)
{
    /* Two statements, so each has its index: an admin's walks vms_list,
     * a tenant's only its own rows in vms_owner_list. */
    page_list_write(r, app, reqctx_of(r)->role == ROLE_ADMIN
                                ? vm_sql_list_all : vm_sql_list_own,
                    "created_at", vm_write, "VM");
}

HANDLER(h_vm_get)
{
    struct app *a = app;
    json_auto_t *row = NULL;
    int e = vm_lookup(a, r, &row);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    struct jsonw w = JSONW_INIT;
    struct store_row vr;
    store_row_of_json(row, &vr);
    jsonw_obj_begin(&w);
    vm_write(&w, &vr);
    json_auto_t *deal = billing_vm_deal(a, json_str(row, "id"));
    jsonw_key(&w, "deal");
    jsonw_json(&w, deal);
    /* The GPUs placement assigned to it, every function of each card. */
    jsonw_key(&w, "gpus");
    if (json_int(row, "gpu_count", 0) > 0) {
        json_auto_t *gpus = gpus_of_vm(a->store, json_str(row, "id"));
        jsonw_json(&w, gpus);
    } else {
        jsonw_arr_begin(&w);
        jsonw_arr_end(&w);
    }
    /* Its health checks, with the states its node reported. */
    json_auto_t *checks = vmhealth_list(a->store, json_str(row, "id"));
    jsonw_key(&w, "health_checks");
    if (checks) {
        jsonw_json(&w, checks);
    } else {
        jsonw_arr_begin(&w);
        jsonw_arr_end(&w);
    }
    jsonw_obj_end(&w);
    http_reply_jsonw(r, 200, &w);
}

/* The VM the request names (404 for another tenant's) and its text
 * column `col` (a fixed name of ours), which may be NULL; false when an
 * error was answered. */
static bool vm_text_column(struct app *a, struct http_request *r,
                           const char *col, json_t **ret_row,
                           const char **ret_text)
{
    json_t *row = NULL, *x = NULL;
    int e = vm_lookup(a, r, &row);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return false;
    }
    _cleanup_free_ char *sql = xasprintf("SELECT %s AS t FROM vms WHERE id "
                                         "= $1", col);
    if (store_query_one(a->store, &x, sql, "s", json_str(row, "id")) < 0) {
        json_decref(row);
        http_reply_problem(r, 500, "internal", NULL, "store error");
        return false;
    }
    /* The text lives in x, kept alive by the row. */
    json_object_set_new(row, "_text", x);
    *ret_row = row;
    *ret_text = json_str(x, "t");
    return true;
}

/* The VM's serial log: the tail its node last reported, cut to `bytes`
 * when asked for less; more than that tail is read from the node. */
HANDLER(h_vm_console)
{
    if (http_req_resumed(r)) {
        console_log_resume(app, r);
        return;
    }
    const char *b = http_req_query(r, "bytes");
    int64_t bytes = 0;
    if (b && parse_int64(b, 1, CONSOLE_LOG_MAX, &bytes) < 0) {
        http_reply_problem(r, 400, "validation", "bytes",
                           "bytes must be an integer from 1 to %u",
                           CONSOLE_LOG_MAX);
        return;
    }
    json_auto_t *row = NULL;
    const char *text;
    if (!vm_text_column(app, r, "console", &row, &text))
        return;
    if (bytes > AGENT_CONSOLE_TAIL_MAX) {
        console_log_read(app, r, row, (uint32_t)bytes);
        return;
    }
    text = text ? text : "";
    size_t len = strlen(text), from = 0;
    if (bytes && (size_t)bytes < len) {
        from = len - (size_t)bytes;
        while (from < len && ((unsigned char)text[from] & 0xc0) == 0x80)
            from++; /* start on a character */
    }
    http_reply_text(r, 200, "text/plain; charset=utf-8",
                    xstrndup(text + from, len - from), len - from);
}

/* virsh dumpxml: the domain XML the VM's node last reported, as it sent
 * it (provider output, shown only to the VM's owner). */
HANDLER(h_vm_xml)
{
    json_auto_t *row = NULL;
    const char *xml;
    if (!vm_text_column(app, r, "domain_xml", &row, &xml))
        return;
    if (!xml) {
        http_reply_problem(r, 409, "not-reported", "id", "the node of VM %s "
                           "has not reported its domain XML yet",
                           json_str(row, "id"));
        return;
    }
    http_reply_text(r, 200, "application/xml; charset=utf-8", xstrdup(xml),
                    strlen(xml));
}

int vm_delete_finish(struct app *a, const char *vm_id, int64_t now)
{
    int e = store_exec(a->store,
                       "UPDATE vms SET desired_state = 'deleted', state = "
                       "'deleted', deleted_at = $1, updated_at = $1 WHERE id "
                       "= $2 AND deleted_at IS NULL", "is", now, vm_id);
    if (e <= 0)
        return e < 0 ? e : -ENOENT;
    vm_networks_changed(a, vm_id);
    vm_release(a, vm_id);
    return backups_drop_vm(a, vm_id);
}

/* True when node `node_id` cannot confirm a deletion: removed, or silent
 * for three heartbeats. */
static bool vm_node_gone(struct app *a, const char *node_id)
{
    return store_query_int(a->store, 1,
                           "SELECT COUNT(*) FROM nodes WHERE id = $1 AND "
                           "removed_at IS NULL AND last_seen >= $2", "si",
                           node_id, now_s() - 3 * a->cfg.heartbeat_s) == 0;
}

HANDLER(h_vm_delete)
{
    struct app *a = app;
    json_auto_t *row = NULL;
    int e = vm_lookup(a, r, &row);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    const char *id = json_str(row, "id"), *node = json_str(row, "node_id");
    int64_t now = now_s();
    /* A node that is gone cannot confirm: the deletion completes here
     * (row, name, addresses and billing go now) and the node, which no
     * longer finds the VM in its desired document, removes the domain
     * when it comes back. */
    if (!node || vm_node_gone(a, node)) {
        e = vm_delete_finish(a, id, now);
        if (e == 0 && node)
            reqctx_set_detail(r, "node unreachable: deleted here; the node "
                              "removes the domain when it returns");
    } else
        e = store_exec(a->store,
                       "UPDATE vms SET desired_state = 'deleted', state = "
                       "'deleting', updated_at = $1 WHERE id = $2", "is", now,
                       id);
    if (e >= 0)
        e = billing_vm_unwanted(a, id, now);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    app_vm_changed(a, node, id);
    reply_vm(a, r, 202, id);
}

/* Set the desired power state (and force flag / reboot generation). */
static void vm_power(struct http_request *r, struct app *a,
                     const char *desired, bool force, bool reboot)
{
    json_auto_t *row = NULL;
    int e = vm_lookup(a, r, &row);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    if (streq(json_str(row, "desired_state"), "deleted")) {
        http_reply_problem(r, 409, "conflict", NULL, "the VM is being deleted");
        return;
    }
    if (streq(json_str(row, "state"), "lost")) {
        http_reply_problem(r, 409, "conflict", NULL, "the VM is lost: %s",
                           json_str(row, "state_reason") ?
                               json_str(row, "state_reason") : "its node is gone");
        return;
    }
    if (reboot && !streq(json_str(row, "desired_state"), "running")) {
        http_reply_problem(r, 409, "conflict", NULL,
                           "only a running VM can be rebooted");
        return;
    }
    const char *id = json_str(row, "id");
    if (streq(desired, "running") && !reboot && migrate_under_way(a, id)) {
        http_reply_problem(r, 409, "conflict", NULL,
                           "the VM is being migrated: wait for the migration "
                           "to end, or delete its backup to cancel it");
        return;
    }
    int64_t need = 0;
    int funds = streq(desired, "running") && !reboot &&
                        !streq(json_str(row, "desired_state"), "running")
                    ? billing_check_start(a, id, &need)
                    : 0;
    if (funds < 0 && funds != -EDQUOT) {
        reply_store_error(r, funds, "balance");
        return;
    }
    if (funds == -EDQUOT) {
        _cleanup_free_ char *t = money_format(need, billing_config()->symbol);
        http_reply_problem(r, 402, "insufficient-funds", NULL,
                           "the balance must cover %lld s of running (%s): "
                           "top up the account", (long long)billing_config()->grace_s,
                           t);
        return;
    }
    /* Any power change but a reboot ends a pause. */
    e = store_exec(a->store,
                   "UPDATE vms SET desired_state = $1, stop_force = $2, "
                   "reboot_gen = reboot_gen + $3, start_gen = start_gen + $4, "
                   "paused = paused * $3, "
                   "updated_at = $5 WHERE id = $6", "sbiiis", desired, force,
                   (int64_t)(reboot ? 1 : 0),
                   (int64_t)(streq(desired, "running") && !reboot ? 1 : 0),
                   now_s(), id);
    if (e >= 0 && !streq(desired, "running"))
        e = billing_vm_unwanted(a, id, now_s());
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    app_vm_changed(a, json_str(row, "node_id"), id);
    reply_vm(a, r, 202, id);
}

HANDLER(h_vm_start) { vm_power(r, app, "running", false, false); }
HANDLER(h_vm_stop) { vm_power(r, app, "stopped", false, false); }
HANDLER(h_vm_destroy) { vm_power(r, app, "stopped", true, false); }
HANDLER(h_vm_reboot) { vm_power(r, app, "running", false, true); }

/* Look the VM up for a change of one flag; NULL after answering 404 or
 * 409 (being deleted, lost). */
static json_t *vm_flag_target(struct http_request *r, struct app *a)
{
    json_t *row = NULL;
    int e = vm_lookup(a, r, &row);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return NULL;
    }
    const char *why = streq(json_str(row, "desired_state"), "deleted")
                          ? "the VM is being deleted"
                      : streq(json_str(row, "state"), "lost")
                          ? "the VM is lost"
                          : NULL;
    if (why) {
        http_reply_problem(r, 409, "conflict", NULL, "%s", why);
        json_decref(row);
        return NULL;
    }
    return row;
}

/* Set column `col` (paused or autostart: our own names) of the VM and
 * hand the node its new document. */
static void vm_flag_set(struct http_request *r, struct app *a,
                        const json_t *row, const char *col, bool on)
{
    const char *id = json_str(row, "id");
    _cleanup_free_ char *sql = xasprintf("UPDATE vms SET %s = $1, updated_at "
                                         "= $2 WHERE id = $3", col);
    int e = store_exec(a->store, sql, "bis", on, now_s(), id);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    app_vm_changed(a, json_str(row, "node_id"), id);
    reply_vm(a, r, 202, id);
}

/* virsh suspend / resume: a running VM held paused on its node (the node
 * applies it with virDomainSuspend and keeps it paused across restarts);
 * it stays billed as running, since its memory stays held. */
static void vm_pause(struct http_request *r, struct app *a, bool pause)
{
    json_auto_t *row = vm_flag_target(r, a);
    if (!row)
        return;
    if (!streq(json_str(row, "desired_state"), "running")) {
        http_reply_problem(r, 409, "conflict", NULL,
                           "the VM is not running");
        return;
    }
    if (!pause && !json_int(row, "paused", 0)) {
        http_reply_problem(r, 409, "conflict", NULL, "the VM is not paused");
        return;
    }
    vm_flag_set(r, a, row, "paused", pause);
}

HANDLER(h_vm_suspend) { vm_pause(r, app, true); }
HANDLER(h_vm_resume) { vm_pause(r, app, false); }

/* virsh autostart [--disable]: whether the VM starts again when its node
 * reboots (while it is meant to run). */
HANDLER(h_vm_autostart)
{
    const struct jfield fields[] = {
        { "autostart", JF_BOOL, true, 0, 0, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), false))
        return;
    json_auto_t *row = vm_flag_target(r, app);
    if (!row)
        return;
    vm_flag_set(r, app, row, "autostart",
                json_is_true(json_object_get(http_req_json(r), "autostart")));
}

/* When its node fails: "none" (the VM waits for it) or "on-host-failure"
 * (restored elsewhere from its latest backup after evacuate-after). */
HANDLER(h_vm_restart_policy)
{
    const struct jfield fields[] = {
        { "restart_policy", JF_ENUM, true, 0, 0, restore_policies },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), false))
        return;
    struct app *a = app;
    json_auto_t *row = vm_flag_target(r, a);
    if (!row)
        return;
    const char *id = json_str(row, "id");
    int e = store_exec(a->store, "UPDATE vms SET restart_policy = $1, "
                       "updated_at = $2 WHERE id = $3", "sis",
                       json_str(http_req_json(r), "restart_policy"), now_s(),
                       id);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    reply_vm(a, r, 202, id);
}

/* A backup schedule ("off", "hourly", "daily", "weekly") and, with
 * "keep", how many scheduled backups the VM keeps. */
HANDLER(h_vm_backup_schedule)
{
    const struct jfield fields[] = {
        { "schedule", JF_ENUM, true, 0, 0, bsched_names },
        { "keep", JF_INT, false, 1, BSCHED_KEEP_MAX, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), false))
        return;
    struct app *a = app;
    json_auto_t *row = vm_flag_target(r, a);
    if (!row)
        return;
    const char *id = json_str(row, "id");
    const json_t *b = http_req_json(r);
    int e = bsched_set(a, id, json_str(b, "schedule"),
                       json_int(b, "keep", 0));
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    reqctx_set_detail(r, "backup schedule %s, keep %lld",
                      json_str(b, "schedule"),
                      (long long)json_int(b, "keep",
                                          json_int(row, "backup_keep", 0)));
    reply_vm(a, r, 200, id);
}

HANDLER(h_vm_resize)
{
    struct app *a = app;
    const struct jfield fields[] = {
        { "vcpus", JF_INT, false, 1, a->cfg.max_vcpus, NULL },
        { "memory_mib", JF_INT, false, 64, a->cfg.max_memory_mib, NULL },
        { "disk_gib", JF_INT, false, 1, a->cfg.max_disk_gib, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), true))
        return;
    json_t *b = http_req_json(r);
    json_auto_t *row = NULL;
    int e = vm_lookup(a, r, &row);
    if (e < 0) {
        reply_store_error(r, e, "VM");
        return;
    }
    int64_t vcpus = json_int(b, "vcpus", json_int(row, "vcpus", 1));
    int64_t mem = json_int(b, "memory_mib", json_int(row, "memory_mib", 64));
    int64_t disk = json_int(b, "disk_gib", json_int(row, "disk_gib", 1));
    bool cpu_mem_change = vcpus != json_int(row, "vcpus", 0) ||
                          mem != json_int(row, "memory_mib", 0);
    bool stopped = streq(json_str(row, "desired_state"), "stopped") &&
                   (streq(json_str(row, "state"), "stopped") ||
                    streq(json_str(row, "state"), "pending"));
    if (cpu_mem_change && !stopped) {
        http_reply_problem(r, 409, "conflict", NULL,
                           "vCPUs and memory can change only while the VM is "
                           "stopped");
        return;
    }
    if (disk < json_int(row, "disk_gib", 0)) {
        http_reply_problem(r, 400, "validation", "disk_gib",
                           "a disk can only grow (now %lld GiB)",
                           (long long)json_int(row, "disk_gib", 0));
        return;
    }
    const char *id = json_str(row, "id");
    json_auto_t *cur = NULL;
    if (store_tx_begin(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    /* Where the VM is now: a placement (which holds the VM's lock) may have
     * happened since the lookup. */
    if ((e = store_lock(a->store, "vm", id)) < 0 ||
        (e = store_query_one(a->store, &cur, "SELECT node_id FROM vms WHERE "
                             "id = $1", "s", id)) < 0) {
        store_tx_rollback(a->store);
        reply_store_error(r, e, "VM");
        return;
    }
    const char *node = json_str(cur, "node_id");
    /* Growing on the same node must fit its free capacity: checked under
     * the node's lock, which placements on it take too. */
    if (node) {
        json_auto_t *fit = NULL;
        e = store_lock(a->store, "node", node);
        if (e == 0)
            e = store_query_one(
            a->store, &fit,
            "SELECT n.vcpus - COALESCE(SUM(v.vcpus), 0) AS cpu, n.memory_mib - "
            "COALESCE(SUM(v.memory_mib), 0) AS mem, n.disk_gib - "
            "COALESCE(SUM(v.disk_gib), 0) AS disk FROM nodes n LEFT JOIN vms "
            "v ON v.node_id = n.id AND v.deleted_at IS NULL AND v.id <> $2 "
            "WHERE n.id = $1 GROUP BY n.id, n.vcpus, n.memory_mib, n.disk_gib",
            "ss", node, id);
        if (e < 0 && e != -ENOENT) {
            store_tx_rollback(a->store);
            http_reply_problem(r, 503, "unavailable", NULL, "store busy");
            return;
        }
        if (e == 0 && (json_int(fit, "cpu", 0) < vcpus ||
                       json_int(fit, "mem", 0) < mem ||
                       json_int(fit, "disk", 0) < disk)) {
            store_tx_rollback(a->store);
            http_reply_problem(r, 409, "insufficient-capacity", NULL,
                               "the VM's node has not enough free capacity");
            return;
        }
    }
    e = store_exec(a->store,
                   "UPDATE vms SET vcpus = $1, memory_mib = $2, disk_gib = $3, "
                   "updated_at = $4 WHERE id = $5", "iiiis", vcpus, mem, disk,
                   now_s(), id);
    /* The new shape is billed from now on, at the locked prices. */
    if (e >= 0)
        e = billing_deal_reshape(a, id);
    if (e < 0) {
        store_tx_rollback(a->store);
        reply_store_error(r, e, "VM");
        return;
    }
    if (store_tx_commit(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    app_vm_changed(a, node, id);
    reply_vm(a, r, 202, id);
}
