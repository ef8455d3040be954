/* fogctl verbs for a VM's health checks: health-add, health-list,
 * health-remove, and the --health flag's reading, which `create` and
 * `port-add` share. The node runs the checks; dominfo shows their state. */
#include "cli/cli.h"
#include "api/healthcheck.h"

#define HEALTH_TABLE "id,port,type,state,since,output"

static char *health_path(const char *vm, const char *id)
{
    _cleanup_free_ char *v = cli_escape(vm);
    _cleanup_free_ char *i = id ? cli_escape(id) : NULL;
    return xasprintf("/v1/vms/%s/health-checks%s%s", v, i ? "/" : "",
                     i ? i : "");
}

int cli_health_flags(const struct cli_verb *v, struct cli_args *a,
                     json_t **ret)
{
    json_auto_t *out = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(cli_flag_list(a, "health"), i, it) {
        json_t *c = NULL;
        _cleanup_free_ char *why = NULL;
        if (hc_spec_parse_text(json_string_value(it), &c, &why) < 0)
            return cli_usage(v, "invalid --health: %s", why);
        json_array_append_new(out, c);
    }
    *ret = json_array_size(out) ? TAKE_PTR(out) : NULL;
    return 0;
}

/* One check as dominfo prints it: "80/http healthy (HTTP 200)". */
char *cli_health_line(const json_t *c)
{
    const char *out = json_string_value(json_object_get(c, "output"));
    return xasprintf("%lld/%s %s%s%s%s",
                     (long long)json_integer_value(json_object_get(c, "port")),
                     json_string_value(json_object_get(c, "type")),
                     json_string_value(json_object_get(c, "state")),
                     out ? " (" : "", out ? out : "", out ? ")" : "");
}

int cli_health_add_all(struct cli *c, const char *vm, const json_t *checks)
{
    _cleanup_free_ char *p = health_path(vm, NULL);
    size_t i;
    json_t *it;
    json_array_foreach(checks, i, it) {
        json_auto_t *made = NULL;
        if (cli_call(c, "POST", p, it, &made) != 0)
            return CLI_FAIL;
        if (!c->json)
            printf("health check %s added (%lld/%s)\n",
                   json_string_value(json_object_get(made, "id")),
                   (long long)json_integer_value(json_object_get(made,
                                                                 "port")),
                   json_string_value(json_object_get(made, "type")));
    }
    return CLI_OK;
}

static int health_add(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("health-add");
    json_t *spec = NULL;
    _cleanup_free_ char *why = NULL;
    if (hc_spec_parse_text(a->pos[1], &spec, &why) < 0)
        return cli_usage(v, "invalid check '%s': %s", a->pos[1], why);
    json_auto_t *body = spec;
    _cleanup_free_ char *p = health_path(a->pos[0], NULL);
    json_auto_t *made = NULL;
    if (cli_call(c, "POST", p, body, &made) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(made);
    else
        printf("health check %s added to %s\n",
               json_string_value(json_object_get(made, "id")), a->pos[0]);
    return CLI_OK;
}

static int health_list(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = health_path(a->pos[0], NULL);
    return cli_list_print(c, p, HEALTH_TABLE, NULL);
}

static int health_remove(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = health_path(a->pos[0], a->pos[1]);
    if (cli_call(c, "DELETE", p, NULL, NULL) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(json_object());
    else
        printf("health check %s removed\n", a->pos[1]);
    return CLI_OK;
}

const struct cli_verb cli_health_verbs[] = {
    { "health-add", health_add, 2, 2, "",
      "VM PORT:TYPE[:PATH][,KEY=VALUE]...",
      "check a VM's service from its node: TYPE tcp (connect), http (GET "
      "PATH, default /) or udp (send=TEXT or send-hex=HEX, expect=... or "
      "expect-hex=...); keys status=200-399, interval=10, timeout=2, "
      "rise=1, fall=3, action=none|restart, restart-after=3 (intervals)",
      NULL },
    { "health-list", health_list, 1, 1, "", "VM",
      "list a VM's health checks and their states", NULL },
    { "health-remove", health_remove, 2, 2, "", "VM ID",
      "remove a health check", NULL },
    { NULL, NULL, 0, 0, NULL, NULL, NULL, NULL },
};
