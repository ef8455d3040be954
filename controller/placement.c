/* Filter then weigh (see placement.h). The filters are cheap comparisons
 * first, the price (128-bit arithmetic) last, so a fleet of 10k nodes is
 * one pass of a few nanoseconds a node. */
#include "controller/placement.h"

#include <stdio.h>
#include <string.h>

const char *const place_filter_names[PF_N] = {
    [PF_GPU] = "gpu",
    [PF_CAPACITY] = "capacity",
    [PF_BENCHMARK] = "benchmark",
    [PF_KVM] = "kvm",
    [PF_DRAINED] = "drained",
    [PF_WINDOW] = "window",
    [PF_POLICY] = "policy",
    [PF_PORTS] = "ports",
    [PF_REGION] = "region",
    [PF_LABELS] = "labels",
    [PF_REPUTATION] = "reputation",
    [PF_ANTI_AFFINITY] = "anti_affinity",
    [PF_PRICE] = "price",
};

int64_t place_price_hour(const struct rating_offer *o,
                         const struct place_req *r)
{
    struct rating_shape sh = { r->vcpus, r->mem_mib, r->disk_gib,
                               r->gpu_count, r->ports };
    int64_t v;
    if (rating_cost_ceil(o, &sh, RATING_SECONDS_PER_HOUR, &v) < 0)
        return INT64_MAX;
    return v;
}

/* A node without rules accepts everything; with rules, a VM one of them
 * matches by content (struct place_rule). */
static bool policy_ok(const struct place_node *n, const struct place_req *r)
{
    if (n->n_rules == 0 && !n->restricted)
        return true;
    bool own_image = r->image_public ||
                     (r->image_account && n->account_id &&
                      streq(r->image_account, n->account_id));
    for (size_t i = 0; i < n->n_rules; i++) {
        const struct place_rule *p = &n->rules[i];
        if (p->is_template && !(r->tmpl && streq(p->name, r->tmpl)))
            continue;
        if (p->digest ? r->image_id && r->image_digest && own_image &&
                            streq(p->digest, r->image_digest)
                      : !r->image_id && p->local_image && r->image &&
                            streq(p->local_image, r->image))
            return true;
    }
    return false;
}

static bool labels_ok(const struct place_node *n, const struct place_req *r)
{
    for (size_t i = 0; i < r->n_labels; i++) {
        bool found = false;
        for (size_t k = 0; k < n->n_labels && !found; k++)
            found = streq(n->labels[k], r->labels[i]);
        if (!found)
            return false;
    }
    return true;
}

static bool listed(const char *id, const char *const *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (streq(id, ids[i]))
            return true;
    return false;
}

enum place_filter place_check(const struct place_node *n,
                              const struct place_req *r, int64_t *ret_price)
{
    if (n->free_vcpus < r->vcpus || n->free_mem_mib < r->mem_mib ||
        n->free_disk_gib < r->disk_gib)
        return PF_CAPACITY;
    if (n->verified &&
        n->vcpus - n->free_vcpus + r->vcpus > n->verified_vcpus)
        return PF_BENCHMARK;
    if (!n->kvm && !r->allow_tcg)
        return PF_KVM;
    if (r->gpu_count > 0 && n->gpu_free < r->gpu_count)
        return PF_GPU;
    if (n->drained)
        return PF_DRAINED;
    if (n->closed)
        return PF_WINDOW;
    if (!policy_ok(n, r))
        return PF_POLICY;
    if (listed(n->id, r->port_blocked, r->n_port_blocked))
        return PF_PORTS;
    if (r->region && !streq(r->region, n->region ? n->region : ""))
        return PF_REGION;
    if (!labels_ok(n, r))
        return PF_LABELS;
    if (r->min_reputation > 0 && n->reputation < r->min_reputation)
        return PF_REPUTATION;
    if (listed(n->id, r->avoid, r->n_avoid))
        return PF_ANTI_AFFINITY;
    struct rating_offer o = n->offer;
    if (r->gpu_count > 0 && n->gpu_hour_model >= 0)
        o.gpu_hour = n->gpu_hour_model;
    int64_t price = place_price_hour(&o, r);
    if (ret_price)
        *ret_price = price;
    if (price == INT64_MAX || (r->max_price >= 0 && price > r->max_price))
        return PF_PRICE;
    return PF_N;
}

/* Mean free fraction of vCPUs and memory once the VM is there. */
static double free_after(const struct place_node *n, const struct place_req *r)
{
    double c = n->vcpus > 0 ? (double)(n->free_vcpus - r->vcpus) /
                                  (double)n->vcpus : 0;
    double m = n->mem_mib > 0 ? (double)(n->free_mem_mib - r->mem_mib) /
                                    (double)n->mem_mib : 0;
    return (c + m) / 2;
}

double place_score(const struct place_node *n, const struct place_req *r,
                   int64_t price_hour, const struct place_weights *w)
{
    return -w->price * ((double)price_hour / 1e9) +
           w->spread * free_after(n, r) +
           w->reputation * (n->reputation > 0 ? n->reputation : 0) +
           w->benchmark * (n->verified && n->bench > 0 ? n->bench : 0);
}

void place_decide(const struct place_req *r, const struct place_node *nodes,
                  size_t n, const struct place_weights *w,
                  struct place_result *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->chosen = -1;
    for (size_t i = 0; i < n; i++) {
        int64_t price = 0;
        enum place_filter f = place_check(&nodes[i], r, &price);
        if (f != PF_N) {
            ret->removed[f]++;
            continue;
        }
        ret->passed++;
        double s = place_score(&nodes[i], r, price, w);
        if (ret->chosen < 0 || s > ret->score) {
            ret->chosen = (ssize_t)i;
            ret->score = s;
            ret->price_hour = price;
        }
    }
}

json_t *place_result_json(const struct place_result *res, size_t candidates)
{
    json_t *f = json_object();
    for (int i = 0; i < PF_N; i++)
        if (res->removed[i])
            json_object_set_new(f, place_filter_names[i],
                                json_integer((json_int_t)res->removed[i]));
    return json_pack("{s:o, s:I, s:I}", "filtered", f, "candidates",
                     (json_int_t)candidates, "passed",
                     (json_int_t)res->passed);
}

char *place_refusal_text(const struct place_result *res, size_t candidates)
{
    if (candidates == 0)
        return xstrdup("no approved, reachable node");
    char *text = xasprintf("none of %zu approved, reachable nodes passed the "
                           "filters:", candidates);
    const char *sep = " ";
    for (int i = 0; i < PF_N; i++) {
        if (!res->removed[i])
            continue;
        char *t = xasprintf("%s%s%s removed %zu", text, sep,
                            place_filter_names[i], res->removed[i]);
        free(text);
        text = t;
        sep = ", ";
    }
    return text;
}
