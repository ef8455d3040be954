/* fogctl verbs for accounts, API keys, quotas and the audit log:
 * account-create, account-list, key-create, key-list, key-revoke, quota,
 * quota-set, events. */
#include "cli/cli.h"

static int account_create(struct cli *c, struct cli_args *a)
{
    const char *role = cli_flag(a, "role");
    if (!role)
        return cli_usage(cli_verb_find("account-create"), "--role is required");
    json_auto_t *body = json_pack("{s:s?, s:s?}", "name", a->pos[0], "role", role);
    if (!body)
        return cli_usage(cli_verb_find("account-create"),
                         "arguments are not UTF-8");
    json_auto_t *acct = NULL;
    if (cli_call(c, "POST", "/v1/accounts", body, &acct) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(acct);
    else
        printf("account %s created (%s, %s)\n", a->pos[0], role,
               json_string_value(json_object_get(acct, "id")));
    return CLI_OK;
}

static int account_list(struct cli *c, struct cli_args *a)
{
    (void)a;
    return cli_list_print(c, "/v1/accounts", "name,role,id,created_at", NULL);
}

static int key_create(struct cli *c, struct cli_args *a)
{
    json_auto_t *body = json_object(), *k = NULL;
    if (cli_flag(a, "account"))
        json_object_set_new(body, "account", json_string(cli_flag(a, "account")));
    if (cli_flag(a, "description"))
        json_object_set_new(body, "description",
                            json_string(cli_flag(a, "description")));
    if (cli_call(c, "POST", "/v1/keys", body, &k) != 0)
        return CLI_FAIL;
    if (c->json) {
        cli_print_json(k);
    } else {
        /* The secret is shown this once; only its hash is kept. */
        printf("key: %s\nid: %s\n",
               json_string_value(json_object_get(k, "secret")),
               json_string_value(json_object_get(k, "id")));
    }
    return CLI_OK;
}

static int key_list(struct cli *c, struct cli_args *a)
{
    (void)a;
    return cli_list_print(c, "/v1/keys", "id,account_id,description,created_at", NULL);
}

static int key_revoke(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *e = cli_escape(a->pos[0]);
    _cleanup_free_ char *p = xasprintf("/v1/keys/%s", e);
    if (cli_call(c, "DELETE", p, NULL, NULL) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(json_object());
    else
        printf("key %s revoked\n", a->pos[0]);
    return CLI_OK;
}

/* Print an account's quotas as a table (or the API's JSON). */
static void quota_print(struct cli *c, json_t *q)
{
    if (c->json) {
        cli_print_json(q);
        return;
    }
    json_auto_t *rows = json_array();
    const char *kind;
    json_t *v;
    json_object_foreach(json_object_get(q, "quotas"), kind, v) {
        json_t *row = json_deep_copy(v);
        json_object_set_new(row, "quota", json_string(kind));
        if (json_integer_value(json_object_get(row, "limit")) < 0)
            json_object_set_new(row, "limit", json_string("none"));
        json_array_append_new(rows, row);
    }
    cli_print_table(rows, "quota,used,limit,default");
}

static int quota_show(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *e = cli_escape(a->pos[0]);
    _cleanup_free_ char *p = xasprintf("/v1/accounts/%s/quotas", e);
    json_auto_t *q = NULL;
    if (cli_call(c, "GET", p, NULL, &q) != 0)
        return CLI_FAIL;
    quota_print(c, q);
    return CLI_OK;
}

/* quota-set ACCOUNT vms=50 ports=none networks=default */
static int quota_set(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("quota-set");
    json_auto_t *body = json_object(), *q = NULL;
    for (int i = 1; i < a->npos; i++) {
        const char *eq = strchr(a->pos[i], '=');
        int64_t n;
        if (!eq || eq == a->pos[i])
            return cli_usage(v, "'%s' is not QUOTA=N", a->pos[i]);
        _cleanup_free_ char *kind = xstrndup(a->pos[i],
                                             (size_t)(eq - a->pos[i]));
        if (streq(eq + 1, "default"))
            json_object_set_new(body, kind, json_null());
        else if (streq(eq + 1, "none"))
            json_object_set_new(body, kind, json_integer(-1));
        else if (parse_int64(eq + 1, 0, 1000000, &n) == 0)
            json_object_set_new(body, kind, json_integer(n));
        else
            return cli_usage(v, "invalid limit '%s' (0..1000000, none or "
                             "default)", eq + 1);
    }
    _cleanup_free_ char *e = cli_escape(a->pos[0]);
    _cleanup_free_ char *p = xasprintf("/v1/accounts/%s/quotas", e);
    if (cli_call(c, "PUT", p, body, &q) != 0)
        return CLI_FAIL;
    quota_print(c, q);
    return CLI_OK;
}

static int events(struct cli *c, struct cli_args *a)
{
    const char *lim = cli_flag(a, "limit");
    int64_t n = 50;
    if (lim && parse_int64(lim, 1, 100000, &n) < 0)
        return cli_usage(cli_verb_find("events"), "invalid --limit '%s'", lim);
    json_t *items;
    if (cli_list_all(c, "/v1/events", SIZE_MAX, &items) != 0)
        return CLI_FAIL;
    /* Oldest first from the API; show the most recent n. */
    while (json_array_size(items) > (size_t)n)
        json_array_remove(items, 0);
    if (c->json)
        cli_print_json(items);
    else
        cli_print_table(items, "time,actor,action,target,status,detail");
    json_decref(items);
    return CLI_OK;
}

const struct cli_verb cli_account_verbs[] = {
    { "account-create", account_create, 1, 1, "role=",
      "NAME --role tenant|provider|admin", "create an account (admin)" },
    { "account-list", account_list, 0, 0, "", "", "list accounts" },
    { "key-create", key_create, 0, 0, "account=,description=",
      "[--account NAME] [--description TEXT]",
      "create an API key; its secret is printed once" },
    { "key-list", key_list, 0, 0, "", "", "list API keys (never secrets)" },
    { "key-revoke", key_revoke, 1, 1, "", "ID", "revoke an API key" },
    { "quota", quota_show, 1, 1, "", "ACCOUNT",
      "an account's quotas: what it holds and may hold" },
    { "quota-set", quota_set, 2, 7, "", "ACCOUNT QUOTA=N|none|default...",
      "set an account's quotas (admin): networks, vms, ports, images, "
      "ssh_keys, api_keys" },
    { "events", events, 0, 0, "limit=", "[--limit N]",
      "the audit log: who did what, when, with what result" },
    { NULL, NULL, 0, 0, NULL, NULL, NULL },
};
