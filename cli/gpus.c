/* fogctl verbs for GPUs on providers' nodes: gpu-list, gpu-offer,
 * gpu-withdraw. */
#include "cli/cli.h"

#define GPU_TABLE "node_name,address,model,numa_node,iommu_group,usable,offered,vm_id,reason"

/* {"gpus": [...]} as JSON or a table. */
static int gpus_print(struct cli *c, const json_t *out)
{
    if (c->json)
        cli_print_json(out);
    else
        cli_print_table(json_object_get(out, "gpus"), GPU_TABLE);
    return CLI_OK;
}

static int gpu_list(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *e = a->npos > 0 ? cli_escape(a->pos[0]) : NULL;
    _cleanup_free_ char *p = e ? xasprintf("/v1/gpus?node=%s", e)
                               : xstrdup("/v1/gpus");
    json_auto_t *out = NULL;
    if (cli_call(c, "GET", p, NULL, &out) != 0)
        return CLI_FAIL;
    return gpus_print(c, out);
}

static int gpu_offer_set(struct cli *c, struct cli_args *a, bool offer)
{
    const struct cli_verb *v = cli_verb_find(offer ? "gpu-offer"
                                                   : "gpu-withdraw");
    bool all = cli_flag_bool(a, "all");
    if (all == (a->npos > 1))
        return cli_usage(v, "name GPU addresses or --all, not both");
    json_auto_t *body = json_object(), *out = NULL;
    if (all) {
        json_object_set_new(body, "all", json_true());
    } else {
        json_t *addrs = json_array();
        for (int i = 1; i < a->npos; i++)
            json_array_append_new(addrs, json_string(a->pos[i]));
        json_object_set_new(body, "addresses", addrs);
    }
    _cleanup_free_ char *e = cli_escape(a->pos[0]);
    _cleanup_free_ char *p = xasprintf("/v1/nodes/%s/gpus/%s", e,
                                       offer ? "offer" : "withdraw");
    if (cli_call(c, "POST", p, body, &out) != 0)
        return CLI_FAIL;
    return gpus_print(c, out);
}

static int gpu_offer(struct cli *c, struct cli_args *a)
{
    return gpu_offer_set(c, a, true);
}

static int gpu_withdraw(struct cli *c, struct cli_args *a)
{
    return gpu_offer_set(c, a, false);
}

const struct cli_verb cli_gpu_verbs[] = {
    { "gpu-list", gpu_list, 0, 1, "", "[NODE]",
      "list the GPUs of your nodes (or of NODE): model, NUMA node, IOMMU "
      "group, whether usable (else why), offered and to which VM" },
    { "gpu-offer", gpu_offer, 1, 65, "all", "NODE ADDR... | NODE --all",
      "offer GPUs of a node to tenants (--all: every usable one); price them "
      "with offer-set --gpu-hour MODEL=AMOUNT" },
    { "gpu-withdraw", gpu_withdraw, 1, 65, "all", "NODE ADDR... | NODE --all",
      "stop offering GPUs (a VM holding one keeps it until it is deleted)" },
    { NULL, NULL, 0, 0, NULL, NULL, NULL },
};
