/* The placement decision as a pure function: filter candidate nodes, then
 * weigh those that pass. No store, no clock (and no allocation but a kept
 * decision's, place_memo_*): the scheduler loads the rows, this picks one,
 * and the property tests and bench_sched call the same code.
 *
 * Filters run in a fixed order and a node removed by one is counted there
 * only, so the counts add up to the nodes that did not pass (shown on a
 * pending VM as placement.filtered). */
#pragma once

#include "billing/rating.h"
#include "common/util.h"

#include <jansson.h>

/* One entry of a node's policy, matched by content, never by name alone:
 * a template entry needs the VM to be that template; then the VM's catalog
 * image must have the entry's digest and be public or the node owner's
 * own, or, for an entry that named no catalog image (digest NULL), the VM
 * must use that node-local image and no catalog one. */
struct place_rule {
    bool is_template;
    const char *name;            /* template entries: the template's name */
    const char *digest;          /* sha256 of the image; NULL: node-local */
    const char *local_image;     /* the node-local image when digest NULL */
};

/* A candidate node: approved and reachable (the loader's job), with its
 * free and total capacity, offer and where it is. Strings are borrowed. */
struct place_node {
    const char *id;
    const char *account_id;      /* the provider owning the node */
    int64_t free_vcpus, free_mem_mib, free_disk_gib;
    int64_t vcpus, mem_mib;      /* totals, for the spread weight */
    bool kvm;
    bool drained;                /* takes no new VMs */
    bool closed;                 /* outside its availability windows now:
                                    takes no new VMs (the loader decides) */
    const char *region;          /* "" when unset */
    const char *const *labels;   /* "key=value" */
    size_t n_labels;
    const struct place_rule *rules; /* policy: none means accepts all */
    size_t n_rules;
    bool restricted;             /* accepts only what rules match, even
                                    with none (an empty pool) */
    struct rating_offer offer;   /* prices in nano-tokens */
    double reputation;           /* 0..1, < 0 when unknown */
    /* The last verified benchmark: the vCPUs its score backs (the node
     * takes VMs only up to them: used + asked <= verified_vcpus) and its
     * benchmark_pct / 100. Not verified yet: no cap, and bench 0. */
    bool verified;
    int64_t verified_vcpus;
    double bench;
    /* For the request being placed (the scheduler fills them per VM that
     * asks for GPUs): free offered GPUs of its model, and the node's
     * price per GPU-hour of that model (< 0: offer.gpu_hour). */
    int64_t gpu_free;
    int64_t gpu_hour_model;
};

/* What the VM needs and what its owner asked for. */
struct place_req {
    int64_t vcpus, mem_mib, disk_gib, ports;
    const char *gpu_model;       /* NULL when gpu_count is 0 */
    int64_t gpu_count;
    bool allow_tcg;
    const char *tmpl;            /* NULL: not from a template */
    const char *image, *image_id;
    const char *image_digest;    /* sha256 of the catalog image, or NULL */
    bool image_public;           /* the catalog image is public */
    const char *image_account;   /* the catalog image's owner */
    const char *region;          /* NULL: anywhere */
    const char *const *labels;   /* "key=value", all must match */
    size_t n_labels;
    int64_t max_price;           /* nano-tokens per hour; < 0: no cap */
    double min_reputation;       /* <= 0: none; unknown never passes */
    const char *const *avoid;    /* node ids holding its anti-affinity group */
    size_t n_avoid;
    const char *const *port_blocked; /* node ids where a requested host port
                                        is taken or not permitted */
    size_t n_port_blocked;
};

/* Hub weights: score = -price * (tokens per hour) + spread * (mean free
 * fraction of vCPUs and memory after placing) + reputation * (the node's
 * reputation, 0..1, unknown as 0) + benchmark * (its benchmark_pct / 100,
 * none yet as 0). spread > 0 spreads VMs over empty nodes, < 0 packs them
 * onto full ones. */
struct place_weights {
    double price, spread, reputation, benchmark;
};

enum place_filter {
    PF_CAPACITY,
    PF_BENCHMARK,                /* above what its benchmark verified */
    PF_KVM,
    PF_DRAINED,
    PF_WINDOW,
    PF_POLICY,
    PF_PORTS,
    PF_REGION,
    PF_LABELS,
    PF_REPUTATION,
    PF_ANTI_AFFINITY,
    PF_PRICE,
    PF_GPU,
    PF_N
};
/* "capacity", "kvm", ... as shown in placement.filtered. */
extern const char *const place_filter_names[PF_N];

struct place_result {
    ssize_t chosen;              /* index into nodes, -1 when none passed */
    int64_t price_hour;          /* the chosen node's price for this VM */
    double score;
    size_t passed;
    size_t removed[PF_N];        /* nodes each filter removed */
};

/* What one hour of the VM costs at offer o (rounded up, as the balance
 * check does); INT64_MAX when it does not fit. */
int64_t place_price_hour(const struct rating_offer *o,
                         const struct place_req *r);

/* The first filter node n fails for r, or PF_N when it passes; the price
 * for r goes to *ret_price when the price was computed. */
enum place_filter place_check(const struct place_node *n,
                              const struct place_req *r, int64_t *ret_price);

/* Whether node n's policy accepts r (the policy filter alone). */
bool place_policy_ok(const struct place_node *n, const struct place_req *r);

/* The weight of a passing node (higher is better). */
double place_score(const struct place_node *n, const struct place_req *r,
                   int64_t price_hour, const struct place_weights *w);

/* Filter nodes[0..n) then pick the best score; ties go to the lower index
 * (callers list nodes oldest first). */
void place_decide(const struct place_req *r, const struct place_node *nodes,
                  size_t n, const struct place_weights *w,
                  struct place_result *ret);

/* {"filtered": {"capacity": 3, ...}, "candidates": N, "passed": M} */
json_t *place_result_json(const struct place_result *res, size_t candidates);

/* A reason naming the filters that removed nodes, for state_reason;
 * caller frees. */
char *place_refusal_text(const struct place_result *res, size_t candidates);

/* A decision for one request kept across changes of the fleet, one node
 * at a time (a placement takes capacity from the node it chose): the
 * filter each node failed, its price and score, and the passing nodes
 * ranked as a tournament (each change costs a path of it), so the next
 * identical request costs the nodes that changed, not the fleet. Its
 * results are place_decide()'s on the
 * fleet as it is now. Only for requests without label selectors or GPUs
 * (place_memo_fits()); a request's anti-affinity and port lists are not
 * part of it: each result is given them as node indexes (struct
 * place_except). The request's strings are copied. */
struct place_memo;
bool place_memo_fits(const struct place_req *r);
struct place_memo *place_memo_new(const struct place_req *r,
                                  const struct place_weights *w,
                                  const struct place_node *nodes, size_t n);
void place_memo_free(struct place_memo *m);
/* The memory a kept decision on a fleet of n nodes takes. */
size_t place_memo_bytes(size_t n);
/* Whether m decides for r under weights w. With same_policy the caller
 * vouches that place_policy_ok() says of r what it says of m's request on
 * every node of the fleet (its nodes' policies as at place_memo_new):
 * then their templates and images need not be the same. */
bool place_memo_is(const struct place_memo *m, const struct place_req *r,
                   const struct place_weights *w, bool same_policy);
/* Node k of nodes[0..n) (n as at place_memo_new) changed. */
void place_memo_node_changed(struct place_memo *m,
                             const struct place_node *nodes, size_t k);
/* The nodes, as indexes into the fleet, that a request leaves out by
 * name: where a host port it asked for is taken or not permitted (its
 * port_blocked) and where its anti-affinity group is (its avoid), in any
 * order, duplicates allowed. */
struct place_except {
    const size_t *ports, *avoid;
    size_t n_ports, n_avoid;
};
/* The decision now for m's request with the nodes x leaves out (NULL:
 * none), as place_decide() with its lists says: the best passing node,
 * or, when x leaves that one out, the best of the rest (a path of the
 * tournament for each node left out that ranks before it). */
void place_memo_result(struct place_memo *m, const struct place_except *x,
                       struct place_result *ret);
