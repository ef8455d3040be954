/* fogctl verbs for providers' nodes: nodelist, nodeinfo, node-approve,
 * node-drain, node-undrain, node-remove, join-token. */
#include "cli/cli.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"

#define NODE_TABLE "name,state,approved,drained,kvm,vcpus,memory_mib,disk_gib,vm_count,mesh_ip"
#define NODE_FIELDS                                                            \
    "id,name,state,approved,drained,kvm,arch,cpu_model,vcpus,used_vcpus,memory_mib,"   \
    "used_memory_mib,disk_gib,used_disk_gib,vm_count,mesh_ip,endpoint,"        \
    "observed_endpoint,public_ip,public_ip_source,nat,mapped_endpoint,"        \
    "peer_endpoint,relayed_peers,mesh_paths,reach_checked_at,port_range,permit_ports,"    \
    "reputation,evictions,benchmark,benchmark_pct,benchmark_vcpus,"            \
    "agent_contract,last_seen,created_at"

/* Lift capacity.{x} to x, used.{x} to used_x and reachability's
 * members for tables. */
static void node_flatten(json_t *n)
{
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(n, "capacity"), k, v)
        json_object_set(n, k, v);
    json_object_foreach(json_object_get(n, "used"), k, v)
    {
        _cleanup_free_ char *name = xasprintf("used_%s", k);
        json_object_set(n, name, v);
    }
    static const char *const reach[][2] = {
        { "nat", "nat" }, { "mapped_endpoint", "mapped_endpoint" },
        { "peer_endpoint", "peer_endpoint" },
        { "relayed_peers", "relayed_peers" },
        { "checked_at", "reach_checked_at" } };
    json_t *r = json_object_get(n, "reachability");
    for (size_t i = 0; r && i < ARRAY_SIZE(reach); i++)
        json_object_set(n, reach[i][1], json_object_get(r, reach[i][0]) ?
                        json_object_get(r, reach[i][0]) : json_null());
    /* Each relayed peer's path as "peer path since TIME". */
    json_t *paths = json_object_get(r, "mesh_paths");
    if (json_is_array(paths)) {
        json_t *out = json_array();
        size_t i;
        json_t *p;
        json_array_foreach(paths, i, p) {
            char since[21];
            time_format_rfc3339(json_int(p, "since", 0), since);
            json_array_append_new(out, json_sprintf(
                "%s %s since %s", json_str(p, "peer") ? json_str(p, "peer")
                : "?", json_str(p, "path") ? json_str(p, "path") : "?", since));
        }
        json_object_set_new(n, "mesh_paths", out);
    } else {
        json_object_set_new(n, "mesh_paths", json_null());
    }
}

static int node_list(struct cli *c, struct cli_args *a)
{
    (void)a;
    return cli_list_print(c, "/v1/nodes", NODE_TABLE, node_flatten);
}

static char *node_path(const char *ref, const char *suffix)
{
    _cleanup_free_ char *e = cli_escape(ref);
    return xasprintf("/v1/nodes/%s%s", e, suffix ? suffix : "");
}

static int node_info(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = node_path(a->pos[0], NULL);
    json_auto_t *n = NULL;
    if (cli_call(c, "GET", p, NULL, &n) != 0)
        return CLI_FAIL;
    if (c->json) {
        cli_print_json(n);
    } else {
        node_flatten(n);
        cli_print_fields(n, NODE_FIELDS);
    }
    return CLI_OK;
}

/* Approval records the capacity the scheduler may use: --cpus,
 * --memory-mib and --disk-gib, else what the node reports now. */
static int node_approve(struct cli *c, struct cli_args *a)
{
    static const char *const flags[][2] = { { "cpus", "vcpus" },
                                            { "memory-mib", "memory_mib" },
                                            { "disk-gib", "disk_gib" } };
    json_auto_t *body = json_object(), *n = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(flags); i++) {
        const char *v = cli_flag(a, flags[i][0]);
        int64_t x;
        if (!v)
            continue;
        if (parse_int64(v, 0, INT64_C(1) << 40, &x) < 0)
            return cli_usage(cli_verb_find("node-approve"),
                             "invalid --%s '%s'", flags[i][0], v);
        json_object_set_new(body, flags[i][1], json_integer(x));
    }
    _cleanup_free_ char *p = node_path(a->pos[0], "/approve");
    if (cli_call(c, "POST", p, body, &n) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(n);
    else
        printf("node %s approved\n", a->pos[0]);
    return CLI_OK;
}

static int node_remove(struct cli *c, struct cli_args *a)
{
    bool force = cli_flag_bool(a, "force");
    _cleanup_free_ char *p = node_path(a->pos[0], force ? "?force=true" : NULL);
    if (cli_call(c, "DELETE", p, NULL, NULL) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(json_object());
    else
        printf("node %s removed%s\n", a->pos[0],
               force ? " (its VMs are lost)" : "");
    return CLI_OK;
}

static int node_drain_set(struct cli *c, struct cli_args *a, bool drain)
{
    _cleanup_free_ char *p = node_path(a->pos[0],
                                       drain ? "/drain" : "/undrain");
    json_auto_t *n = NULL;
    if (cli_call(c, "POST", p, NULL, &n) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(n);
    else
        printf("node %s %s\n", a->pos[0],
               drain ? "drained: no new VMs are placed on it"
                     : "undrained: it takes new VMs again");
    return CLI_OK;
}

static int node_drain(struct cli *c, struct cli_args *a)
{
    return node_drain_set(c, a, true);
}

static int node_undrain(struct cli *c, struct cli_args *a)
{
    return node_drain_set(c, a, false);
}

static int join_token(struct cli *c, struct cli_args *a)
{
    json_auto_t *body = json_object(), *t = NULL;
    const char *ttl = cli_flag(a, "ttl");
    int64_t n;
    if (ttl) {
        if (parse_int64(ttl, 60, 604800, &n) < 0)
            return cli_usage(cli_verb_find("join-token"),
                             "invalid --ttl '%s' (60..604800 seconds)", ttl);
        json_object_set_new(body, "ttl_s", json_integer(n));
    }
    if (cli_call(c, "POST", "/v1/join-tokens", body, &t) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(t);
    else
        printf("token: %s\nexpires: %s\n",
               json_string_value(json_object_get(t, "token")),
               json_string_value(json_object_get(t, "expires_at")));
    return CLI_OK;
}

const struct cli_verb cli_node_verbs[] = {
    { "nodelist", node_list, 0, 0, "", "", "list nodes" },
    { "nodeinfo", node_info, 1, 1, "", "NODE",
      "show a node: capacity, use, state, last contact" },
    { "node-approve", node_approve, 1, 1, "cpus=,memory-mib=,disk-gib=",
      "NODE [--cpus N] [--memory-mib N] [--disk-gib N]",
      "approve a node that joined with a provider's token, capping the "
      "capacity the scheduler uses (default: what it reports now)" },
    { "node-drain", node_drain, 1, 1, "", "NODE",
      "stop placing new VMs on a node (its VMs stay where they are)" },
    { "node-undrain", node_undrain, 1, 1, "", "NODE",
      "let a drained node take new VMs again" },
    { "node-remove", node_remove, 1, 1, "force", "NODE [--force]",
      "remove a node that hosts no VMs; --force removes one that is gone "
      "(unreachable): its VMs become 'lost' and stay deletable" },
    { "join-token", join_token, 0, 0, "ttl=", "[--ttl SECONDS]",
      "create a single-use token for 'fog-nodeagent join'" },
    { NULL, NULL, 0, 0, NULL, NULL, NULL },
};
