/* fogctl verbs for tenant networks and published ports: net-create,
 * net-list, net-info, net-delete, port-add, port-list, port-remove. */
#include "cli/cli.h"

#define NET_TABLE "name,cidr,gateway,vxlan_id,id"
#define NET_FIELDS "id,name,cidr,gateway,vxlan_id,created_at"
#define PORT_TABLE "proto,vm_port,host_port,public_address,public_address6,id"

static int net_create(struct cli *c, struct cli_args *a)
{
    const char *cidr = cli_flag(a, "cidr");
    if (!cidr)
        return cli_usage(cli_verb_find("net-create"), "--cidr is required");
    json_auto_t *body = json_pack("{s:s?, s:s?}", "name", a->pos[0], "cidr", cidr);
    json_auto_t *n = NULL;
    if (!body)
        return cli_usage(cli_verb_find("net-create"), "arguments are not UTF-8");
    if (cli_call(c, "POST", "/v1/networks", body, &n) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(n);
    else
        printf("network %s created (%s)\n", a->pos[0],
               json_string_value(json_object_get(n, "cidr")));
    return CLI_OK;
}

static int net_list(struct cli *c, struct cli_args *a)
{
    (void)a;
    return cli_list_print(c, "/v1/networks", NET_TABLE, NULL);
}

static int net_info(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *e = cli_escape(a->pos[0]);
    _cleanup_free_ char *p = xasprintf("/v1/networks/%s", e);
    json_auto_t *n = NULL;
    if (cli_call(c, "GET", p, NULL, &n) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(n);
    else
        cli_print_fields(n, NET_FIELDS);
    return CLI_OK;
}

static int net_delete(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *e = cli_escape(a->pos[0]);
    _cleanup_free_ char *p = xasprintf("/v1/networks/%s", e);
    if (cli_call(c, "DELETE", p, NULL, NULL) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(json_object());
    else
        printf("network %s deleted\n", a->pos[0]);
    return CLI_OK;
}

static char *ports_path(const char *vm)
{
    _cleanup_free_ char *e = cli_escape(vm);
    return xasprintf("/v1/vms/%s/ports", e);
}

static int port_add(struct cli *c, struct cli_args *a)
{
    int64_t host, vm;
    const char *proto;
    if (!cli_port_spec(a->pos[1], &host, &vm, &proto))
        return cli_usage(cli_verb_find("port-add"), "invalid port '%s'",
                         a->pos[1]);
    json_auto_t *body = json_pack("{s:s, s:I}", "proto", proto, "vm_port",
                                  (json_int_t)vm);
    if (host)
        json_object_set_new(body, "host_port", json_integer(host));
    json_auto_t *checks = NULL;
    int r = cli_health_flags(cli_verb_find("port-add"), a, &checks);
    if (r)
        return r;
    _cleanup_free_ char *p = ports_path(a->pos[0]);
    json_auto_t *port = NULL;
    if (cli_call(c, "POST", p, body, &port) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(port);
    else if (json_string_value(json_object_get(port, "public_address")))
        printf("%lld/%s published at %s\n", (long long)vm, proto,
               json_string_value(json_object_get(port, "public_address")));
    else
        printf("%lld/%s published on host port %lld\n", (long long)vm, proto,
               (long long)json_integer_value(json_object_get(port, "host_port")));
    return checks ? cli_health_add_all(c, a->pos[0], checks) : CLI_OK;
}

static int port_list(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = ports_path(a->pos[0]);
    json_auto_t *page = NULL;
    if (cli_call(c, "GET", p, NULL, &page) != 0)
        return CLI_FAIL;
    json_t *items = json_object_get(page, "items");
    if (c->json)
        cli_print_json(items ? items : json_array());
    else
        cli_print_table(items, PORT_TABLE);
    return CLI_OK;
}

static int port_remove(struct cli *c, struct cli_args *a)
{
    int64_t host, vm;
    const char *proto;
    if (!cli_port_spec(a->pos[1], &host, &vm, &proto))
        return cli_usage(cli_verb_find("port-remove"), "invalid port '%s'",
                         a->pos[1]);
    _cleanup_free_ char *p = ports_path(a->pos[0]);
    json_auto_t *page = NULL;
    if (cli_call(c, "GET", p, NULL, &page) != 0)
        return CLI_FAIL;
    size_t i;
    json_t *it;
    const char *id = NULL;
    json_array_foreach(json_object_get(page, "items"), i, it)
    {
        if (json_integer_value(json_object_get(it, "vm_port")) == vm &&
            streq(json_string_value(json_object_get(it, "proto")), proto) &&
            (!host || json_integer_value(json_object_get(it, "host_port")) == host))
            id = json_string_value(json_object_get(it, "id"));
    }
    if (!id)
        return cli_fail("VM '%s' does not publish %s", a->pos[0], a->pos[1]);
    _cleanup_free_ char *dp = xasprintf("%s/%s", p, id);
    if (cli_call(c, "DELETE", dp, NULL, NULL) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(json_object());
    else
        printf("%s unpublished\n", a->pos[1]);
    return CLI_OK;
}

const struct cli_verb cli_network_verbs[] = {
    { "net-create", net_create, 1, 1, "cidr=", "NAME --cidr 10.1.0.0/24",
      "create a private network" },
    { "net-list", net_list, 0, 0, "", "", "list networks" },
    { "net-info", net_info, 1, 1, "", "NAME", "show a network" },
    { "net-delete", net_delete, 1, 1, "", "NAME",
      "delete a network (refused while in use)" },
    { "port-add", port_add, 2, 2, "health=*",
      "VM [HOST:]PORT[/tcp|udp] [--health PORT:TYPE[:PATH][,KEY=VALUE]...]...",
      "publish a VM's port on its node's public address (--health: check "
      "it too, see health-add)" },
    { "port-list", port_list, 1, 1, "", "VM", "list a VM's published ports" },
    { "port-remove", port_remove, 2, 2, "", "VM [HOST:]PORT[/tcp|udp]",
      "unpublish a port" },
    { NULL, NULL, 0, 0, NULL, NULL, NULL },
};
