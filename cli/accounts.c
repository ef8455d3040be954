/* fogctl verbs for accounts, API keys and the audit log: account-create,
 * account-list, key-create, key-list, key-revoke, events. */
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
    { "events", events, 0, 0, "limit=", "[--limit N]",
      "the audit log: who did what, when, with what result" },
    { NULL, NULL, 0, 0, NULL, NULL, NULL },
};
