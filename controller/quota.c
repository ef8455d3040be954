/* Tenant quotas: the limit of an account is its own row in account_quotas,
 * else the controller's default; use is counted from the live objects. */
#include "controller/quota.h"

#include "common/jsonutil.h"

#include <errno.h>
#include <stddef.h>

static const struct {
    const char *name;
    size_t setting;   /* offset of the default in struct app_settings */
    const char *what; /* for the problem detail */
    const char *count_sql;
} kinds[QUOTA_MAX] = {
    [QUOTA_NETWORKS] = { "networks", offsetof(struct app_settings,
                                              quota_networks),
                         "networks",
                         "SELECT COUNT(*) FROM networks WHERE account_id = $1 "
                         "AND deleted_at IS NULL AND is_default = 0" },
    [QUOTA_VMS] = { "vms", offsetof(struct app_settings, quota_vms), "VMs",
                    "SELECT COUNT(*) FROM vms WHERE account_id = $1 AND "
                    "deleted_at IS NULL" },
    [QUOTA_PORTS] = { "ports", offsetof(struct app_settings, quota_ports),
                      "published ports",
                      "SELECT COUNT(*) FROM ports p JOIN vms v ON v.id = "
                      "p.vm_id WHERE v.account_id = $1 AND v.deleted_at IS "
                      "NULL" },
    [QUOTA_IMAGES] = { "images", offsetof(struct app_settings, quota_images),
                       "images",
                       "SELECT COUNT(*) FROM images WHERE account_id = $1 AND "
                       "deleted_at IS NULL" },
    [QUOTA_SSH_KEYS] = { "ssh_keys", offsetof(struct app_settings,
                                              quota_ssh_keys),
                         "SSH keys",
                         "SELECT COUNT(*) FROM ssh_keys WHERE account_id = $1" },
    [QUOTA_API_KEYS] = { "api_keys", offsetof(struct app_settings,
                                              quota_api_keys),
                         "API keys",
                         "SELECT COUNT(*) FROM api_keys WHERE account_id = $1 "
                         "AND revoked_at IS NULL" },
};

const char *quota_name(enum quota_kind k)
{
    return k < QUOTA_MAX ? kinds[k].name : "none";
}

static int64_t quota_default(struct app *a, enum quota_kind k)
{
    return *(const int64_t *)((const char *)&a->cfg + kinds[k].setting);
}

/* The account's limit for kind (-1: none), or -EIO / -ENOENT as a negative
 * below -1: callers tell them apart with ret. */
static int quota_limit(struct app *a, const char *account_id,
                       enum quota_kind k, int64_t *ret_limit)
{
    json_auto_t *row = NULL;
    int e = store_query_one(a->store, &row,
                            "SELECT a.role, q.max_count FROM accounts a LEFT "
                            "JOIN account_quotas q ON q.account_id = a.id AND "
                            "q.kind = $2 WHERE a.id = $1", "ss", account_id,
                            kinds[k].name);
    if (e < 0)
        return e;
    if (streq(json_str(row, "role"), "admin"))
        *ret_limit = -1;
    else if (json_is_integer(json_object_get(row, "max_count")))
        *ret_limit = json_int(row, "max_count", 0);
    else
        *ret_limit = quota_default(a, k);
    return 0;
}

int quota_check(struct app *a, struct http_request *r, const char *account_id,
                enum quota_kind k, int64_t adding)
{
    int64_t limit;
    /* A no-op write takes the account's row lock on PostgreSQL, so two
     * replicas cannot both count the old use; sqlite's write lock is
     * already held by the transaction. */
    int e = store_exec(a->store, "UPDATE accounts SET name = name WHERE "
                       "id = $1", "s", account_id);
    if (e >= 0)
        e = quota_limit(a, account_id, k, &limit);
    if (e < 0) {
        /* A store that cannot answer (or lost a conflict) is a 503. */
        reply_store_error(r, e == -ENOENT ? -EIO : e, "account");
        return -EIO;
    }
    if (limit < 0 || adding <= 0)
        return 0;
    int64_t used = store_query_int(a->store, -1, kinds[k].count_sql, "s",
                                   account_id);
    if (used < 0) {
        reply_store_error(r, -EIO, "account");
        return -EIO;
    }
    if (used + adding <= limit)
        return 0;
    json_t *extra = json_pack("{s:s, s:I, s:I}", "quota", kinds[k].name,
                              "limit", (json_int_t)limit, "used",
                              (json_int_t)used);
    http_reply_problem_ext(r, 403, "quota-exceeded", kinds[k].name, extra,
                           "quota %s exceeded: %lld of %lld %s in use, %lld "
                           "more asked", kinds[k].name, (long long)used,
                           (long long)limit, kinds[k].what,
                           (long long)adding);
    return -EDQUOT;
}

int quota_tx_begin(struct app *a, struct http_request *r,
                   const char *account_id, enum quota_kind k, int64_t adding)
{
    if (store_tx_begin(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return -EBUSY;
    }
    int e = quota_check(a, r, account_id, k, adding);
    if (e < 0)
        store_tx_rollback(a->store);
    return e;
}

json_t *quota_render(struct app *a, const char *account_id)
{
    json_t *q = json_object();
    for (int k = 0; k < QUOTA_MAX; k++) {
        int64_t limit;
        int64_t used = store_query_int(a->store, -1, kinds[k].count_sql, "s",
                                       account_id);
        if (quota_limit(a, account_id, (enum quota_kind)k, &limit) < 0 ||
            used < 0) {
            json_decref(q);
            return NULL;
        }
        bool dflt = store_query_int(a->store, 0, "SELECT COUNT(*) FROM "
                                    "account_quotas WHERE account_id = $1 AND "
                                    "kind = $2", "ss", account_id,
                                    kinds[k].name) == 0;
        json_object_set_new(q, kinds[k].name,
                            json_pack("{s:I, s:I, s:b}", "limit",
                                      (json_int_t)limit, "used",
                                      (json_int_t)used, "default", dflt));
    }
    return json_pack("{s:s, s:o}", "account_id", account_id, "quotas", q);
}

int quota_set(struct app *a, const char *account_id, enum quota_kind k,
              int64_t limit, bool reset)
{
    int e = store_exec(a->store, "DELETE FROM account_quotas WHERE account_id "
                       "= $1 AND kind = $2", "ss", account_id, kinds[k].name);
    if (e >= 0 && !reset)
        e = store_exec(a->store, "INSERT INTO account_quotas (account_id, "
                       "kind, max_count) VALUES ($1, $2, $3)", "ssi",
                       account_id, kinds[k].name, limit);
    return e < 0 ? -EIO : 0;
}
