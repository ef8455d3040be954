/* fogctl internals: the verb table, parsed arguments, and the helpers the
 * verb groups share (API calls, tables, sizes). One file per verb group. */
#pragma once

#include "api/client.h"
#include "common/util.h"

#include <jansson.h>
#include <stdio.h>

/* Exit codes, as virsh and most CLIs: 0 ok, 1 failed, 2 usage. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

struct cli {
    char *url;
    char *key;
    char *ca;
    bool json;          /* --json: print the API's JSON */
    bool interactive;   /* inside the shell */
    struct api_client *api;
};

/* A verb's arguments: positional words and --flags. Flags are declared in
 * the verb's spec string, comma separated: "cpus=" takes a value,
 * "network=*" a repeatable value, "all" is a boolean. */
struct cli_args {
    char **pos;
    int npos;
    json_t *flags;      /* name -> string | array of strings | true */
};

struct cli_verb {
    const char *name;
    int (*fn)(struct cli *c, struct cli_args *a);
    int min_pos, max_pos;
    const char *flags;
    const char *usage;  /* after the verb name */
    const char *help;
    const char *virsh; /* the virsh command it stands for, or NULL */
};

/* Each group's table, terminated by a NULL name. */
extern const struct cli_verb cli_vm_verbs[];
extern const struct cli_verb cli_node_verbs[];
extern const struct cli_verb cli_gpu_verbs[];
extern const struct cli_verb cli_account_verbs[];
extern const struct cli_verb cli_network_verbs[];
extern const struct cli_verb cli_settings_verbs[];
extern const struct cli_verb cli_image_verbs[];
extern const struct cli_verb cli_billing_verbs[];
extern const struct cli_verb cli_market_verbs[];
extern const struct cli_verb cli_snapshot_verbs[];
extern const struct cli_verb cli_backup_verbs[];
extern const struct cli_verb cli_restore_verbs[];
extern const struct cli_verb cli_health_verbs[];
extern const struct cli_verb cli_ingress_verbs[];

/* Check a backup schedule (hourly, daily, weekly, off; NULL: none given)
 * and a --keep count (NULL: none) and set them in body under sched_key and
 * keep_key. 0, or the usage error's exit code after printing it. */
int cli_backup_schedule_args(const struct cli_verb *v, const char *sched,
                             const char *keep, json_t *body,
                             const char *sched_key, const char *keep_key);

/* Find a verb by name across the groups; NULL when unknown. */
const struct cli_verb *cli_verb_find(const char *name);
/* Print `fogctl help` (no verb) or one verb's usage and help. */
void cli_help(FILE *out, const char *verb);
/* Run one command line (argv[0] is the verb). Returns an exit code. */
int cli_dispatch(struct cli *c, int argc, char **argv);

/* Parse argv after the verb against v->flags; CLI_USAGE with a message
 * on stderr when they do not fit. */
int cli_args_parse(const struct cli_verb *v, int argc, char **argv,
                   struct cli_args *ret);
void cli_args_free(struct cli_args *a);
const char *cli_flag(const struct cli_args *a, const char *name);
bool cli_flag_bool(const struct cli_args *a, const char *name);
/* The values of a repeatable flag (array, possibly empty; borrowed). */
json_t *cli_flag_list(const struct cli_args *a, const char *name);

/* Connect lazily; prints the problem and returns NULL when the settings
 * are incomplete. */
struct api_client *cli_api(struct cli *c);
/* Call the API. On 2xx returns 0 with *ret_json the body (may be NULL for
 * 204; caller owns). Otherwise prints one line "fogctl: ..." and returns
 * CLI_FAIL. */
int cli_call(struct cli *c, const char *method, const char *path,
             const json_t *body, json_t **ret_json);
/* GET every page of a list (up to `max` items) into one array. */
int cli_list_all(struct cli *c, const char *path, size_t max,
                 json_t **ret_items);
/* A list verb: every page of `path`, printed as JSON (--json) or as a
 * table of `columns` after flatten(item) (may be NULL) shapes each row. */
int cli_list_print(struct cli *c, const char *path, const char *columns,
                   void (*flatten)(json_t *item));
/* Percent-encode a user word for use as a path segment; caller frees. */
char *cli_escape(const char *s);
/* Print an error line "fogctl: ..." and return CLI_FAIL / CLI_USAGE. */
int cli_fail(const char *fmt, ...) _printf_(1, 2);
int cli_usage(const struct cli_verb *v, const char *fmt, ...) _printf_(2, 3);

/* A port as users write it, "[HOST:]VM[/tcp|udp]": host 0 when absent,
 * proto "tcp" by default. false when malformed. */
bool cli_port_spec(const char *spec, int64_t *host, int64_t *vm,
                   const char **proto);

/* `list`'s filters, as virsh's flags: without any, the active VMs;
 * --all every VM, --inactive the inactive ones; the --state-* flags each
 * VM in any of the states named. Whether VM object `vm` (as GET /v1/vms
 * lists it) is shown under `flags`. Pure. */
enum {
    CLI_LIST_ALL = 1 << 0,
    CLI_LIST_INACTIVE = 1 << 1,
    CLI_LIST_RUNNING = 1 << 2,
    CLI_LIST_PAUSED = 1 << 3,
    CLI_LIST_SHUTOFF = 1 << 4,
};
bool cli_vm_list_keep(const json_t *vm, unsigned flags);

/* Output. With --json, the value itself; else a table of the named
 * columns ("id,name,state") or "key: value" lines. */
void cli_print_json(const json_t *v);
void cli_print_table(const json_t *items, const char *columns);
void cli_print_fields(const json_t *obj, const char *fields);
/* Text of a JSON scalar for humans; caller frees ("-" for null and for
 * NULL, a member left out). */
char *cli_text(const json_t *v);

/* Health checks (cli/health.c). The --health flags of verb v read into
 * the API's bodies: 0 and *ret an array (NULL when none given; caller
 * owns), or CLI_USAGE after saying why. */
int cli_health_flags(const struct cli_verb *v, struct cli_args *a,
                     json_t **ret);
/* Add each check of `checks` to VM vm (POST, one by one). CLI_OK or
 * CLI_FAIL after saying why. */
int cli_health_add_all(struct cli *c, const char *vm, const json_t *checks);
/* One check as dominfo prints it (caller frees). */
char *cli_health_line(const json_t *c);
