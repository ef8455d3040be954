/* fogctl restore: start a VM again from one of its backups, on a node the
 * hub picks or on the one named. The node fetches and opens the backup
 * after the API answers; `dominfo` follows it there. */
#include "cli/cli.h"

static int vm_restore(struct cli *c, struct cli_args *a)
{
    const char *backup = cli_flag(a, "backup");
    const char *node = cli_flag(a, "node");
    const struct cli_verb *v = cli_verb_find("restore");
    if (!backup || !*backup)
        return cli_usage(v, "--backup ID is required");
    if (node && !*node)
        return cli_usage(v, "--node needs a node name or id");
    _cleanup_free_ char *e = cli_escape(a->pos[0]);
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/restore", e);
    json_auto_t *body = json_pack("{s:s}", "backup", backup);
    if (node)
        json_object_set_new(body, "node", json_string(node));
    json_auto_t *vm = NULL;
    if (cli_call(c, "POST", p, body, &vm) != 0)
        return CLI_FAIL;
    if (c->json) {
        cli_print_json(vm);
        return CLI_OK;
    }
    const char *nn = json_string_value(json_object_get(vm, "node_name"));
    printf("Domain '%s' restoring from backup %s on node %s\n", a->pos[0],
           backup, nn ? nn : "-");
    return CLI_OK;
}

/* fogctl restart-policy NAME none|on-host-failure */
static int vm_restart_policy(struct cli *c, struct cli_args *a)
{
    const char *p = a->pos[1];
    if (!streq(p, "none") && !streq(p, "on-host-failure"))
        return cli_usage(cli_verb_find("restart-policy"),
                         "the policy is none or on-host-failure, not '%s'", p);
    _cleanup_free_ char *e = cli_escape(a->pos[0]);
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s/restart-policy", e);
    json_auto_t *body = json_pack("{s:s}", "restart_policy", p);
    json_auto_t *vm = NULL;
    if (cli_call(c, "POST", path, body, &vm) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(vm);
    else
        printf("Domain '%s' restart policy %s\n", a->pos[0], p);
    return CLI_OK;
}

const struct cli_verb cli_restore_verbs[] = {
    { "restart-policy", vm_restart_policy, 2, 2, "",
      "NAME none|on-host-failure",
      "what happens when the VM's node fails: nothing (none), or a restore "
      "on another node from its latest backup once the node has been "
      "unreachable for the hub's evacuate-after (on-host-failure)", NULL },
    { "restore", vm_restore, 1, 1, "backup=,node=",
      "NAME --backup ID [--node NODE]",
      "start a stopped VM (or one whose node is gone) from one of its "
      "backups, on NODE or on the node the hub picks; its id, name and "
      "addresses stay", "restore" },
    { NULL, NULL, 0, 0, NULL, NULL, NULL, NULL },
};
