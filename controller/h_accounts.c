/* Accounts and their API keys. An admin manages every account; tenants and
 * providers see only their own account and keys. */
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/auth.h"
#include "controller/handlers.h"
#include "controller/quota.h"

#include <errno.h>

static const char *const roles[] = { "tenant", "provider", "admin", NULL };

static json_t *account_render(json_t *row)
{
    char t[21];
    time_format_rfc3339(json_int(row, "created_at", 0), t);
    return json_pack("{s:s, s:s, s:s, s:s}", "id", json_str(row, "id"), "name",
                     json_str(row, "name"), "role", json_str(row, "role"),
                     "created_at", t);
}

/* Find an account by id or name that the caller may see. */
static int account_find(struct app *a, struct http_request *r, const char *ref,
                        json_t **ret)
{
    struct reqctx *c = reqctx_of(r);
    if (!ref || (!uuid_is_valid(ref) && !name_is_valid(ref)))
        return -ENOENT;
    json_t *row;
    int e = store_query_one(a->store, &row,
                            "SELECT id, name, role, created_at FROM accounts "
                            "WHERE id = $1 OR name = $1", "s", ref);
    if (e < 0)
        return e;
    if (c->role != ROLE_ADMIN && !streq(json_str(row, "id"), c->account_id)) {
        json_decref(row);
        return -ENOENT;
    }
    *ret = row;
    return 0;
}

HANDLER(h_account_create)
{
    struct app *a = app;
    static const struct jfield fields[] = {
        { "name", JF_NAME, true, 0, 0, NULL },
        { "role", JF_ENUM, true, 0, 0, roles },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), true))
        return;
    json_t *b = http_req_json(r);
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    int64_t now = now_s();
    int e = store_exec(a->store,
                       "INSERT INTO accounts (id, name, role, created_at) "
                       "VALUES ($1, $2, $3, $4)", "sssi", id,
                       json_str(b, "name"), json_str(b, "role"), now);
    if (e < 0) {
        reply_store_error(r, e, "an account with this name");
        return;
    }
    reqctx_set_target(r, id);
    json_auto_t *row = json_pack("{s:s, s:s, s:s, s:I}", "id", id, "name",
                                 json_str(b, "name"), "role",
                                 json_str(b, "role"), "created_at",
                                 (json_int_t)now);
    http_reply_json(r, 201, account_render(row));
}

HANDLER(h_account_list)
{
    page_list(r, app,
              "SELECT id, name, role, created_at FROM accounts WHERE ($1 = 1 "
              "OR id = $2) AND " PAGE_KEYSET("created_at", "id"),
              "created_at", account_render, "account");
}

HANDLER(h_account_get)
{
    struct app *a = app;
    json_auto_t *row = NULL;
    int e = account_find(a, r, http_req_param(r, 0), &row);
    if (e < 0) {
        reply_store_error(r, e, "account");
        return;
    }
    json_t *o = account_render(row);
    json_t *bal = billing_balance_json(a->store, json_str(row, "id"));
    if (!bal) {
        json_decref(o);
        reply_store_error(r, -EIO, "balance");
        return;
    }
    json_object_update(o, bal);
    json_decref(bal);
    http_reply_json(r, 200, o);
}

/* ---- quotas ---- */

/* The account the path names, in *ret_row (caller owns): 0, or -errno
 * after answering 404 / 500. */
static int quota_account(struct app *a, struct http_request *r,
                         json_t **ret_row)
{
    int e = account_find(a, r, http_req_param(r, 0), ret_row);
    if (e < 0)
        reply_store_error(r, e, "account");
    return e;
}

static void quota_reply(struct app *a, struct http_request *r,
                        const char *account_id)
{
    json_t *q = quota_render(a, account_id);
    if (!q)
        http_reply_problem(r, 500, "internal", NULL, "store error");
    else
        http_reply_json(r, 200, q);
}

HANDLER(h_account_quotas_get)
{
    struct app *a = app;
    json_auto_t *row = NULL;
    if (quota_account(a, r, &row) == 0)
        quota_reply(a, r, json_str(row, "id"));
}

/* Body: {kind: limit | null, ...}; null puts the default back. */
HANDLER(h_account_quotas_put)
{
    struct app *a = app;
    json_auto_t *row = NULL;
    int e = quota_account(a, r, &row);
    if (e < 0)
        return;
    json_t *b = http_req_json(r);
    if (!json_is_object(b) || json_object_size(b) == 0) {
        http_reply_problem(r, 400, "validation", NULL,
                           "the body must be an object of quotas, like "
                           "{\"vms\": 50}");
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(b, key, v) {
        int k = 0;
        while (k < QUOTA_MAX && !streq(quota_name((enum quota_kind)k), key))
            k++;
        if (k == QUOTA_MAX) {
            http_reply_problem(r, 400, "unknown-field", key,
                               "unknown quota '%.64s' (networks, vms, ports, "
                               "images, ssh_keys, api_keys)", key);
            return;
        }
        if (!json_is_null(v) &&
            (!json_is_integer(v) || json_integer_value(v) < -1 ||
             json_integer_value(v) > 1000000)) {
            http_reply_problem(r, 400, "validation", key,
                               "%s must be an integer from -1 (no limit) to "
                               "1000000, or null for the default", key);
            return;
        }
    }
    if (store_tx_begin(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    json_object_foreach(b, key, v) {
        int k = 0;
        while (!streq(quota_name((enum quota_kind)k), key))
            k++;
        if ((e = quota_set(a, json_str(row, "id"), (enum quota_kind)k,
                           json_integer_value(v), json_is_null(v))) < 0)
            break;
    }
    if (e < 0 || store_tx_commit(a->store) < 0) {
        if (e < 0)
            store_tx_rollback(a->store);
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    quota_reply(a, r, json_str(row, "id"));
}

/* ---- keys ---- */

static json_t *key_render(json_t *row)
{
    char t[21], u[21];
    time_format_rfc3339(json_int(row, "created_at", 0), t);
    json_t *k = json_pack("{s:s, s:s, s:s, s:s}", "id", json_str(row, "id"),
                          "account_id", json_str(row, "account_id"),
                          "description", json_str(row, "description"),
                          "created_at", t);
    if (json_is_integer(json_object_get(row, "last_used_at"))) {
        time_format_rfc3339(json_int(row, "last_used_at", 0), u);
        json_object_set_new(k, "last_used_at", json_string(u));
    } else {
        json_object_set_new(k, "last_used_at", json_null());
    }
    return k;
}

int key_insert(struct store *s, const char *account_id, const char *desc,
               struct auth_key *ret_key)
{
    struct auth_key k;
    auth_key_generate("fog", &k);
    int e = store_exec(s,
                       "INSERT INTO api_keys (id, account_id, salt, hash, "
                       "description, created_at) VALUES ($1, $2, $3, $4, $5, "
                       "$6)", "sssssi", k.id, account_id, k.salt, k.hash,
                       desc ? desc : "", now_s());
    if (e < 0) {
        auth_key_clear(&k);
        return e;
    }
    *ret_key = k;
    return 0;
}

HANDLER(h_key_create)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    static const struct jfield fields[] = {
        { "account", JF_STRING, false, 1, 63, NULL },
        { "description", JF_STRING, false, 0, 200, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), false))
        return;
    json_t *b = http_req_json(r);
    const char *acct = json_str(b, "account");
    const char *account_id = c->account_id;
    json_auto_t *row = NULL;
    if (acct) {
        int e = account_find(a, r, acct, &row);
        if (e < 0) {
            http_reply_problem(r, e == -ENOENT ? 404 : 500,
                               e == -ENOENT ? "not-found" : "internal",
                               "account", "no such account");
            return;
        }
        account_id = json_str(row, "id");
    }
    struct auth_key k;
    if (quota_tx_begin(a, r, account_id, QUOTA_API_KEYS, 1) < 0)
        return;
    int e = key_insert(a->store, account_id, json_str(b, "description"), &k);
    if (e < 0) {
        store_tx_rollback(a->store);
        reply_store_error(r, e, "key");
        return;
    }
    if (store_tx_commit(a->store) < 0) {
        auth_key_clear(&k);
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    reqctx_set_target(r, k.id);
    reqctx_of(r)->reply_secret = true;
    char t[21];
    time_format_rfc3339(now_s(), t);
    json_t *out = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", k.id,
                            "account_id", account_id, "description",
                            json_str(b, "description") ? json_str(b, "description") : "",
                            "created_at", t, "secret", k.token);
    auth_key_clear(&k);
    http_reply_json(r, 201, out);
}

HANDLER(h_key_list)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    json_t *rows;
    int e = store_query(a->store, &rows,
                        "SELECT id, account_id, description, created_at, "
                        "last_used_at FROM api_keys WHERE revoked_at IS NULL "
                        "AND ($1 = 1 OR account_id = $2) ORDER BY created_at, "
                        "id", "bs", c->role == ROLE_ADMIN, c->account_id);
    if (e < 0) {
        reply_store_error(r, e, "key");
        return;
    }
    json_t *items = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_array_append_new(items, key_render(row));
    json_decref(rows);
    http_reply_json(r, 200, json_pack("{s:o, s:n}", "items", items,
                                      "next_cursor"));
}

HANDLER(h_key_delete)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const char *id = http_req_param(r, 0);
    if (!is_hex(id, AUTH_ID_LEN)) {
        http_reply_problem(r, 404, "not-found", NULL, "no such key");
        return;
    }
    int e = store_exec(a->store,
                       "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND "
                       "revoked_at IS NULL AND ($3 = 1 OR account_id = $4)",
                       "isbs", now_s(), id, c->role == ROLE_ADMIN,
                       c->account_id);
    if (e <= 0) {
        reply_store_error(r, e == 0 ? -ENOENT : e, "key");
        return;
    }
    http_reply_text(r, 204, "application/json", NULL, 0);
}
