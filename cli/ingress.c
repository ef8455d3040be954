/* fogctl verbs for web ingress through the hub's edge: ingress-add,
 * ingress-list, ingress-remove. The hub routes HOSTNAME on 443 by TLS SNI
 * (passthrough) or on 80 by Host to the VM's published port. */
#include "cli/cli.h"

#define INGRESS_TABLE "hostname,port,vm_name,vm_port,status,backend,reason"

static char *ingress_path(const char *vm, const char *host)
{
    if (!vm)
        return xstrdup("/v1/ingress");
    _cleanup_free_ char *v = cli_escape(vm);
    _cleanup_free_ char *h = host ? cli_escape(host) : NULL;
    return xasprintf("/v1/vms/%s/ingress%s%s", v, h ? "/" : "", h ? h : "");
}

static int ingress_add(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("ingress-add");
    const char *port = cli_flag(a, "port"), *vm_port = cli_flag(a, "vm-port");
    int64_t p = 443, vp = 0;
    if (port && (parse_int64(port, 1, 65535, &p) < 0 || (p != 80 && p != 443)))
        return cli_usage(v, "invalid --port '%s': 443 or 80", port);
    if (vm_port && parse_int64(vm_port, 1, 65535, &vp) < 0)
        return cli_usage(v, "invalid --vm-port '%s'", vm_port);
    json_auto_t *body = json_pack("{s:s, s:I}", "hostname", a->pos[1], "port",
                                  (json_int_t)p);
    if (vp)
        json_object_set_new(body, "vm_port", json_integer(vp));
    _cleanup_free_ char *path = ingress_path(a->pos[0], NULL);
    json_auto_t *made = NULL;
    if (cli_call(c, "POST", path, body, &made) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(made);
    else
        printf("%s:%lld now routes to %s port %lld (%s)\n",
               json_string_value(json_object_get(made, "hostname")),
               (long long)json_integer_value(json_object_get(made, "port")),
               a->pos[0],
               (long long)json_integer_value(json_object_get(made,
                                                             "vm_port")),
               json_string_value(json_object_get(made, "status")));
    return CLI_OK;
}

static int ingress_list(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = ingress_path(a->npos ? a->pos[0] : NULL, NULL);
    return cli_list_print(c, p, INGRESS_TABLE, NULL);
}

static int ingress_remove(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = ingress_path(a->pos[0], a->pos[1]);
    if (cli_call(c, "DELETE", p, NULL, NULL) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(json_object());
    else
        printf("%s no longer routes to %s\n", a->pos[1], a->pos[0]);
    return CLI_OK;
}

const struct cli_verb cli_ingress_verbs[] = {
    { "ingress-add", ingress_add, 2, 2, "port=,vm-port=",
      "VM HOSTNAME [--port 443|80] [--vm-port P]",
      "route HOSTNAME through the hub's edge to the VM: 443 by TLS SNI "
      "(passthrough: the VM holds the certificate and key), 80 by HTTP Host; "
      "the VM port (default the same) must be published first (port-add)",
      NULL },
    { "ingress-list", ingress_list, 0, 1, "", "[VM]",
      "list ingress routes (a VM's, else all of yours) and whether each is "
      "up", NULL },
    { "ingress-remove", ingress_remove, 2, 2, "", "VM HOSTNAME",
      "stop routing HOSTNAME (both ports) to the VM", NULL },
    { NULL, NULL, 0, 0, NULL, NULL, NULL, NULL },
};
