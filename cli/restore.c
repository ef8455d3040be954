/* fogctl restore: start a VM again from one of its backups, on a node the
 * hub picks or on the one named. The node fetches and opens the backup
 * after the API answers; `dominfo` follows it there. */
#include "cli/cli.h"

#include <time.h>

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

static const char *mig_str(const json_t *m, const char *k)
{
    const char *s = json_string_value(json_object_get(m, k));
    return s ? s : "-";
}

/* Poll the migration until it is no longer backing up: CLI_OK when it
 * moved, CLI_FAIL with the reason when it failed or the time ran out. */
static int migrate_wait(struct cli *c, const char *vm, const char *path,
                        int64_t timeout_s, json_t **ret)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        json_auto_t *m = NULL;
        if (cli_call(c, "GET", path, NULL, &m) != 0)
            return CLI_FAIL;
        const char *st = mig_str(m, "state");
        if (streq(st, "moved")) {
            *ret = TAKE_PTR(m);
            return CLI_OK;
        }
        if (!streq(st, "backing-up"))
            return cli_fail("migration of VM '%s' %s: %s", vm, st,
                            mig_str(m, "error"));
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= timeout_s)
            return cli_fail("migration of VM '%s' not done after %llds: its "
                            "backup %s is still being taken", vm,
                            (long long)timeout_s, mig_str(m, "backup"));
        nanosleep(&(struct timespec){ 0, 300 * 1000 * 1000 }, NULL);
    }
}

/* fogctl migrate NAME [--node NODE] [--wait [--timeout S]] */
static int vm_migrate(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("migrate");
    const char *node = cli_flag(a, "node"), *t = cli_flag(a, "timeout");
    bool wait = cli_flag_bool(a, "wait");
    int64_t timeout_s = 600;
    if (node && !*node)
        return cli_usage(v, "--node needs a node name or id");
    if (t && !wait)
        return cli_usage(v, "--timeout goes with --wait");
    if (t && parse_int64(t, 1, 86400, &timeout_s) < 0)
        return cli_usage(v, "invalid --timeout '%s'", t);
    _cleanup_free_ char *e = cli_escape(a->pos[0]);
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/migrate", e);
    _cleanup_free_ char *g = xasprintf("/v1/vms/%s/migration", e);
    json_auto_t *body = json_object(), *m = NULL;
    if (node)
        json_object_set_new(body, "node", json_string(node));
    if (cli_call(c, "POST", p, body, &m) != 0)
        return CLI_FAIL;
    if (wait) {
        json_decref(TAKE_PTR(m));
        int r = migrate_wait(c, a->pos[0], g, timeout_s, &m);
        if (r)
            return r;
    }
    if (c->json) {
        cli_print_json(m);
        return CLI_OK;
    }
    if (wait)
        printf("Domain '%s' moved from node %s to node %s\n", a->pos[0],
               mig_str(m, "from"), mig_str(m, "to"));
    else
        printf("Domain '%s' migrating from node %s through backup %s\n",
               a->pos[0], mig_str(m, "from"), mig_str(m, "backup"));
    return CLI_OK;
}

const struct cli_verb cli_restore_verbs[] = {
    { "migrate", vm_migrate, 1, 1, "node=,wait,timeout=",
      "NAME [--node NODE] [--wait [--timeout S]]",
      "move a stopped VM to NODE or to the node the hub picks: its disk is "
      "backed up to the hub and the VM started from it there, keeping its "
      "id, name, addresses and host ports; --wait follows it until it has "
      "moved (exit 1 with the reason when it failed)", NULL },
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
