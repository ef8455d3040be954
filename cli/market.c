/* fogctl's view of the market: `offers`, every reachable node's prices,
 * region, labels, free room, reputation and benchmark score, filtered and
 * sorted as a buyer chooses (the hub filters region, price and order; the
 * label and GPU selectors are checked here on what the hub answered). */
#include "cli/cli.h"
#include "common/jsonutil.h"

/* Whether offer o carries every "k=v" of sel in its labels. */
static bool labels_match(json_t *o, json_t *sel)
{
    json_t *labels = json_object_get(o, "labels");
    size_t i;
    json_t *it;
    json_array_foreach(sel, i, it) {
        const char *kv = json_string_value(it), *eq = strchr(kv, '=');
        _cleanup_free_ char *k = xstrndup(kv, (size_t)(eq - kv));
        json_t *v = json_object_get(labels, k);
        if (!json_is_string(v) || !streq(json_string_value(v), eq + 1))
            return false;
    }
    return true;
}

/* A row for the table: prices, room and labels as short text. */
static json_t *offer_flat(json_t *o)
{
    json_t *p = json_object_get(o, "prices"), *f = json_object_get(o, "free");
    json_t *row = json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "node",
                            json_object_get(o, "node_name"), "region",
                            json_object_get(o, "region"), "vcpu_hour",
                            json_object_get(p, "vcpu_hour"), "mem_gib_hour",
                            json_object_get(p, "mem_gib_hour"),
                            "disk_gib_month",
                            json_object_get(p, "disk_gib_month"), "reputation",
                            json_object_get(o, "reputation"));
    json_t *bench = json_object_get(o, "benchmark");
    json_object_set_new(row, "benchmark", bench ? json_incref(bench)
                                                : json_null());
    /* vCPUs claimed/verified/offered: "8/2/2", "-" for not verified. */
    json_t *vc = json_object_get(o, "vcpus"),
           *ver = json_object_get(vc, "verified");
    _cleanup_free_ char *vtext = json_is_integer(ver)
        ? xasprintf("%lld", (long long)json_integer_value(ver))
        : xstrdup("-");
    json_object_set_new(row, "vcpus", json_sprintf(
        "%lld/%s/%lld", (long long)json_int(vc, "claimed", 0), vtext,
        (long long)json_int(vc, "offered", 0)));
    json_t *ev = json_object_get(o, "evictions");
    json_object_set(row, "evictions", ev ? ev : json_null());
    json_object_set_new(row, "free",
                        json_sprintf("%lldc/%lldG/%lldG",
                                     (long long)json_integer_value(
                                         json_object_get(f, "vcpus")),
                                     (long long)json_integer_value(
                                         json_object_get(f, "memory_gib")),
                                     (long long)json_integer_value(
                                         json_object_get(f, "disk_gib"))));
    json_t *gpus = json_array(), *labels = json_array(), *v;
    const char *k;
    json_t *free_gpus = json_object_get(o, "gpus_free");
    json_object_foreach(json_object_get(o, "gpu_models"), k, v)
        json_array_append_new(gpus, json_sprintf(
            "%s=%s (%lld free)", k, json_string_value(v),
            (long long)json_integer_value(json_object_get(free_gpus, k))));
    json_object_foreach(json_object_get(o, "labels"), k, v)
        json_array_append_new(labels, json_sprintf("%s=%s", k,
                                                   json_string_value(v)));
    json_object_set_new(row, "gpus", gpus);
    json_object_set_new(row, "labels", labels);
    return row;
}

static int offers(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("offers");
    const char *sort = cli_flag(a, "sort");
    if (sort && !streq(sort, "price") && !streq(sort, "reputation"))
        return cli_usage(v, "invalid --sort '%s' (price or reputation)", sort);
    json_t *sel = cli_flag_list(a, "label");
    size_t i;
    json_t *it;
    json_array_foreach(sel, i, it) {
        const char *kv = json_string_value(it), *eq = strchr(kv, '=');
        if (!eq || eq == kv)
            return cli_usage(v, "invalid --label '%s' (KEY=VALUE)", kv);
    }
    /* The hub filters region, price and free GPUs and sorts; words are
     * escaped. */
    static const char *const q[][2] = { { "region", "region" },
                                        { "max-price", "max_price" },
                                        { "gpu", "gpu" },
                                        { "sort", "sort" } };
    _cleanup_free_ char *path = xstrdup("/v1/offers");
    char sep = '?';
    for (size_t k = 0; k < ARRAY_SIZE(q); k++) {
        const char *val = cli_flag(a, q[k][0]);
        if (!val)
            continue;
        _cleanup_free_ char *e = cli_escape(val);
        char *np = xasprintf("%s%c%s=%s", path, sep, q[k][1], e);
        free(path);
        path = np;
        sep = '&';
    }
    json_auto_t *ans = NULL;
    if (cli_call(c, "GET", path, NULL, &ans) != 0)
        return CLI_FAIL;
    json_auto_t *keep = json_array();
    json_array_foreach(json_object_get(ans, "offers"), i, it)
        if (labels_match(it, sel))
            json_array_append(keep, it);
    if (c->json) {
        cli_print_json(keep);
        return CLI_OK;
    }
    json_auto_t *rows = json_array();
    json_array_foreach(keep, i, it)
        json_array_append_new(rows, offer_flat(it));
    cli_print_table(rows, "node,region,vcpu_hour,mem_gib_hour,disk_gib_month,"
                          "vcpus,gpus,free,reputation,evictions,benchmark,labels");
    return CLI_OK;
}

/* Set a node's region, labels and availability windows. */
static int node_market(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("node-market");
    json_auto_t *body = json_object();
    if (cli_flag(a, "region"))
        json_object_set_new(body, "region", json_string(cli_flag(a, "region")));
    json_t *labs = cli_flag_list(a, "label"), *it;
    size_t i;
    if (json_array_size(labs)) {
        json_t *lo = json_object();
        json_object_set_new(body, "labels", lo);
        json_array_foreach(labs, i, it) {
            const char *kv = json_string_value(it), *eq = strchr(kv, '=');
            if (!eq || eq == kv)
                return cli_usage(v, "invalid --label '%s' (KEY=VALUE)", kv);
            _cleanup_free_ char *k = xstrndup(kv, (size_t)(eq - kv));
            json_object_set_new(lo, k, json_string(eq + 1));
        }
    }
    json_t *wins = cli_flag_list(a, "window");
    bool none = cli_flag_bool(a, "no-windows");
    if (none && json_array_size(wins))
        return cli_usage(v, "--no-windows takes no --window");
    if (none || json_array_size(wins))
        json_object_set_new(body, "windows", none ? json_array()
                                                  : json_incref(wins));
    if (cli_flag(a, "tz"))
        json_object_set_new(body, "tz", json_string(cli_flag(a, "tz")));
    if (json_object_size(body) == 0)
        return cli_usage(v, "nothing to set");
    _cleanup_free_ char *esc = cli_escape(a->pos[0]);
    _cleanup_free_ char *p = xasprintf("/v1/nodes/%s/market", esc);
    json_auto_t *out = NULL;
    if (cli_call(c, "PUT", p, body, &out) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(out);
    else
        cli_print_fields(out, "node_id,region,labels,windows,tz");
    return CLI_OK;
}

/* The hub's verified pool: a table of its members. */
static int pool_print(struct cli *c, json_t *pool)
{
    if (c->json)
        cli_print_json(pool);
    else
        cli_print_table(json_object_get(pool, "members"), "kind,name,sha256");
    return CLI_OK;
}

static int pool_list(struct cli *c, struct cli_args *a)
{
    json_auto_t *ans = NULL;
    if (cli_call(c, "GET", "/v1/pool", NULL, &ans) != 0)
        return CLI_FAIL;
    return pool_print(c, ans);
}

static int pool_add(struct cli *c, struct cli_args *a)
{
    const char *img = cli_flag(a, "image"), *tmpl = cli_flag(a, "template");
    if (!img == !tmpl)
        return cli_usage(cli_verb_find("pool-add"),
                         "give exactly one of --image SHA256 and --template NAME");
    json_auto_t *body = json_pack("{s:s}", img ? "sha256" : "template",
                                  img ? img : tmpl);
    json_auto_t *ans = NULL;
    if (cli_call(c, "POST", "/v1/pool", body, &ans) != 0)
        return CLI_FAIL;
    return pool_print(c, ans);
}

static int pool_remove(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *e = cli_escape(a->pos[0]);
    _cleanup_free_ char *path = xasprintf("/v1/pool/%s", e);
    if (cli_call(c, "DELETE", path, NULL, NULL) != 0)
        return CLI_FAIL;
    if (!c->json)
        printf("%s removed from the verified pool\n", a->pos[0]);
    return CLI_OK;
}

const struct cli_verb cli_market_verbs[] = {
    { "offers", offers, 0, 0, "region=,label=*,gpu=,max-price=,sort=",
      "[--region R] [--label K=V]... [--gpu MODEL[:COUNT]] [--max-price P] "
      "[--sort price|reputation]",
      "list the offers of reachable nodes: prices (tokens per vCPU-hour, "
      "GiB-hour of memory, GiB-month of disk, GPU model-hour, with the "
      "GPUs of each model free now), region, labels, vCPUs claimed/"
      "verified by the benchmark/offered, free room (rounded down), "
      "reputation (0-100) and benchmark score; --gpu keeps nodes "
      "with COUNT (1) free GPUs of MODEL; --max-price is per vCPU-hour", NULL },
    { "node-market", node_market, 1, 1,
      "region=,label=*,window=*,tz=,no-windows",
      "NODE [--region R] [--label K=V]... [--window 'DAYS HH:MM-HH:MM']... "
      "[--tz UTC|+HH:MM] [--no-windows]",
      "set a node's region, labels (replacing them) and the weekly windows "
      "during which new VMs may be placed on it (e.g. --window 'mon-fri "
      "19:00-07:00' --window 'sat-sun 00:00-24:00' --tz UTC; an end at or "
      "before the start runs into the next day; outside them the node takes "
      "no new VMs, running ones stay); --no-windows: always", NULL },
    { "pool-list", pool_list, 0, 0, "", "",
      "list the hub's verified application pool (images by SHA-256, "
      "templates with their image's SHA-256)", NULL },
    { "pool-add", pool_add, 0, 0, "image=,template=",
      "--image SHA256 | --template NAME",
      "add an image (by content) or a public template to the verified pool "
      "(admin); nodes whose policy names the pool accept exactly its members",
      NULL },
    { "pool-remove", pool_remove, 1, 1, "", "SHA256|TEMPLATE",
      "remove a member from the verified pool (admin); VMs already placed "
      "stay", NULL },
    { NULL, NULL, 0, 0, NULL, NULL, NULL, NULL },
};
