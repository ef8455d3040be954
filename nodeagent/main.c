/* fog-nodeagent: joins a KVM host to a fogfabric controller and runs the
 * tenants' VMs it is given under libvirt. Verbs: join, run, inventory. */
#include "api/agentproto.h"
#include "api/client.h"
#include "common/log.h"
#include "nodeagent/agent.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: fog-nodeagent join --controller URL --token TOKEN "
            "[--data-dir DIR] [--libvirt URI] [--name NAME]\n"
            "       fog-nodeagent run [--data-dir DIR] [--libvirt URI] "
            "[options]\n"
            "       fog-nodeagent inventory [--root DIR] [--data-dir DIR]\n"
            "       fog-nodeagent version\n\noptions (also as "
            "\"name = value\" lines in a file given with --config FILE):\n");
    config_print_help(agent_options, agent_options_n, out);
}

struct verb {
    const char *name;
    int (*fn)(const struct agent_settings *s);
};

static const struct verb verbs[] = {
    { "join", agent_join },
    { "run", agent_run },
    { "inventory", agent_print_inventory },
};

int main(int argc, char **argv)
{
    log_set_ident("fog-nodeagent");
    if (argc < 2 || streq(argv[1], "help") || streq(argv[1], "--help") ||
        streq(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (streq(argv[1], "version") || streq(argv[1], "--version")) {
        printf("fog-nodeagent 0.1 (agent contract %d)\n", AGENT_CONTRACT);
        return 0;
    }
    /* Every call to the controller names the contract this agent speaks. */
    {
        char h[64];
        snprintf(h, sizeof(h), "%s: %d", AGENT_CONTRACT_HEADER,
                 AGENT_CONTRACT);
        api_client_set_process_header(h);
    }
    const struct verb *v = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
        if (streq(argv[1], verbs[i].name))
            v = &verbs[i];
    if (!v) {
        fprintf(stderr, "unknown verb '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    struct agent_settings s;
    agent_config_defaults(&s);
    char **args = NULL;
    int nargs = 0;
    if (agent_config_parse(&s, argc, argv, 2, &args, &nargs) < 0) {
        agent_config_free(&s);
        return 2;
    }
    free(args);
    if (nargs > 0) {
        fprintf(stderr, "unexpected argument '%s'\n", argv[argc - nargs]);
        agent_config_free(&s);
        return 2;
    }
    /* Paths end up in domain definitions, which want them absolute. */
    if (s.data_dir && s.data_dir[0] != '/') {
        char *cwd = getcwd(NULL, 0);
        if (cwd) {
            char *abs = xasprintf("%s/%s", cwd, s.data_dir);
            free(s.data_dir);
            s.data_dir = abs;
            free(cwd);
        }
    }
    if (agent_config_check(&s) < 0) {
        agent_config_free(&s);
        return 2;
    }
    if (s.verbose)
        log_set_level(LOG_DEBUG);
    int r = v->fn(&s);
    agent_config_free(&s);
    return r < 0 ? 1 : 0;
}
