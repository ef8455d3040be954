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

bool place_policy_ok(const struct place_node *n, const struct place_req *r)
{
    return policy_ok(n, r);
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

/* A list of node ids as an open-addressed hash set, built once per
 * decision so a long list (the nodes holding a wanted host port, an
 * anti-affinity group's nodes) costs one probe per node, not a walk.
 * Fixed size, on the stack: a list longer than half of it is walked. */
#define IDSET_SLOTS 2048
struct idset {
    const char *const *ids;      /* the list, walked when !hashed */
    size_t n;
    bool hashed;
    const char *slot[IDSET_SLOTS];
};

static uint32_t id_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static void idset_init(struct idset *set, const char *const *ids, size_t n,
                       bool hash)
{
    set->ids = ids;
    set->n = n;
    set->hashed = hash && n > 8 && n <= IDSET_SLOTS / 2;
    if (!set->hashed)
        return;
    memset(set->slot, 0, sizeof(set->slot));
    for (size_t i = 0; i < n; i++) {
        uint32_t k = id_hash(ids[i]) % IDSET_SLOTS;
        while (set->slot[k] && !streq(set->slot[k], ids[i]))
            k = (k + 1) % IDSET_SLOTS;
        set->slot[k] = ids[i];
    }
}

static bool idset_has(const struct idset *set, const char *id)
{
    if (!set->hashed)
        return listed(id, set->ids, set->n);
    for (uint32_t k = id_hash(id) % IDSET_SLOTS; set->slot[k];
         k = (k + 1) % IDSET_SLOTS)
        if (streq(set->slot[k], id))
            return true;
    return false;
}

/* The hour price as integers: for one hour the seconds cancel out of
 * rating_cost_ceil(), leaving ceil(sum(price_i * k_i) / PRICE_DENOM) with
 * k_i the VM's quantity times its component's scale. Computed once per
 * request; a node's price then takes five multiplications in 64 bits, and
 * only sums that would overflow go through the 128-bit rating code (same
 * result: both are the exact sum rounded up once). */
#define PRICE_DENOM (INT64_C(1024) * 720)

struct price_coef {
    bool fast;                   /* k usable (quantities valid, no overflow) */
    int64_t k[5];                /* vCPU, memory, disk, GPU, port */
};

static struct price_coef price_coef(const struct place_req *r)
{
    struct price_coef c = { 0 };
    const int64_t q[5] = { r->vcpus, r->mem_mib, r->disk_gib, r->gpu_count,
                           r->ports };
    const int64_t scale[5] = { PRICE_DENOM, 720, 1024, PRICE_DENOM,
                               PRICE_DENOM };
    c.fast = true;
    for (int i = 0; i < 5; i++)
        if (q[i] < 0 || __builtin_mul_overflow(q[i], scale[i], &c.k[i]))
            c.fast = false;
    return c;
}

static int64_t price_fast(const struct price_coef *c,
                          const struct rating_offer *o,
                          const struct place_req *r)
{
    const int64_t p[5] = { o->vcpu_hour, o->mem_gib_hour, o->disk_gib_month,
                           o->gpu_hour, o->port_hour };
    int64_t sum = 0, t;
    bool slow = !c->fast;
    for (int i = 0; i < 5 && !slow; i++)
        slow = p[i] < 0 || __builtin_mul_overflow(p[i], c->k[i], &t) ||
               __builtin_add_overflow(sum, t, &sum);
    if (slow)
        return place_price_hour(o, r);
    return sum / PRICE_DENOM + (sum % PRICE_DENOM != 0);
}

/* place_check() with the request's price coefficients worked out. */
/* What place_decide works out once per request. */
struct prep {
    struct price_coef c;
    struct idset blocked, avoid;
};

/* hash: the lists become hash sets (worth it for many nodes). */
static void prep_init(struct prep *p, const struct place_req *r, bool hash)
{
    p->c = price_coef(r);
    idset_init(&p->blocked, r->port_blocked, r->n_port_blocked, hash);
    idset_init(&p->avoid, r->avoid, r->n_avoid, hash);
}

static enum place_filter check(const struct place_node *n,
                               const struct place_req *r,
                               const struct prep *pr, int64_t *ret_price)
{
    const struct price_coef *c = &pr->c;
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
    if (r->n_port_blocked && idset_has(&pr->blocked, n->id))
        return PF_PORTS;
    if (r->region && !streq(r->region, n->region ? n->region : ""))
        return PF_REGION;
    if (r->n_labels && !labels_ok(n, r))
        return PF_LABELS;
    if (r->min_reputation > 0 && n->reputation < r->min_reputation)
        return PF_REPUTATION;
    if (r->n_avoid && idset_has(&pr->avoid, n->id))
        return PF_ANTI_AFFINITY;
    int64_t price;
    if (r->gpu_count > 0 && n->gpu_hour_model >= 0) {
        struct rating_offer o = n->offer;
        o.gpu_hour = n->gpu_hour_model;
        price = price_fast(c, &o, r);
    } else {
        price = price_fast(c, &n->offer, r);
    }
    if (ret_price)
        *ret_price = price;
    if (price == INT64_MAX || (r->max_price >= 0 && price > r->max_price))
        return PF_PRICE;
    return PF_N;
}

enum place_filter place_check(const struct place_node *n,
                              const struct place_req *r, int64_t *ret_price)
{
    struct prep p;
    prep_init(&p, r, false);
    return check(n, r, &p, ret_price);
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
    struct prep pr;
    prep_init(&pr, r, n > 64);
    memset(ret, 0, sizeof(*ret));
    ret->chosen = -1;
    for (size_t i = 0; i < n; i++) {
        int64_t price = 0;
        enum place_filter f = check(&nodes[i], r, &pr, &price);
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

/* ---- a decision kept across one-node changes ---- */

/* No passing node in a subtree of the ranking. */
#define MEMO_NONE UINT32_MAX

/* An entry of the ranking: a node and its score (beside it, so a path is
 * walked without a look at the nodes' own scores), or k MEMO_NONE. */
struct memo_ent {
    double score;
    uint32_t k;
};

struct place_memo {
    struct place_req req;        /* its strings in str[] */
    char *str[6];
    struct place_weights w;
    struct prep prep;
    size_t n;
    uint8_t *cls;                /* node's filter, PF_N when it passed */
    int64_t *price;
    double *score;
    size_t removed[PF_N], passed;
    /* The ranking as a tournament: leaf `leaves + k` is node k when it
     * passes (else MEMO_NONE), each inner entry j the better of entries
     * 2j and 2j + 1, so entry 1 is the best passing node and a node that
     * changed costs its path to the root, not a ranking of the fleet. */
    struct memo_ent *tree;
    size_t leaves;               /* a power of two, >= n */
};

bool place_memo_fits(const struct place_req *r)
{
    return r->gpu_count == 0 && r->n_labels == 0;
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && streq(a, b));
}

bool place_memo_is(const struct place_memo *m, const struct place_req *r,
                   const struct place_weights *w, bool same_policy)
{
    const struct place_req *q = &m->req;
    /* The template and image count only in the policy filter. */
    bool policy = same_policy ||
                  (q->image_public == r->image_public &&
                   same_str(q->tmpl, r->tmpl) &&
                   same_str(q->image, r->image) &&
                   same_str(q->image_id, r->image_id) &&
                   same_str(q->image_digest, r->image_digest) &&
                   same_str(q->image_account, r->image_account));
    return place_memo_fits(r) && policy && q->vcpus == r->vcpus &&
           q->mem_mib == r->mem_mib && q->disk_gib == r->disk_gib &&
           q->ports == r->ports && q->allow_tcg == r->allow_tcg &&
           q->max_price == r->max_price &&
           q->min_reputation == r->min_reputation &&
           same_str(q->region, r->region) && m->w.price == w->price &&
           m->w.spread == w->spread && m->w.reputation == w->reputation &&
           m->w.benchmark == w->benchmark;
}

/* Whether entry a ranks before entry b, both of a node (place_decide:
 * the higher score, then the lower index). */
static bool memo_before(const struct memo_ent *a, const struct memo_ent *b)
{
    return a->score > b->score || (a->score == b->score && a->k < b->k);
}

/* The better of two entries of the tournament. */
static struct memo_ent memo_better(const struct memo_ent *a,
                                   const struct memo_ent *b)
{
    if (a->k == MEMO_NONE)
        return *b;
    if (b->k == MEMO_NONE)
        return *a;
    return memo_before(a, b) ? *a : *b;
}

/* Node k's leaf from its class, then its path to the root. */
static void memo_fix(struct place_memo *m, size_t k)
{
    size_t j = m->leaves + k;
    m->tree[j] = (struct memo_ent){ m->score[k],
                                    m->cls[k] == PF_N ? (uint32_t)k
                                                      : MEMO_NONE };
    for (j /= 2; j >= 1; j /= 2)
        m->tree[j] = memo_better(&m->tree[2 * j], &m->tree[2 * j + 1]);
}

static void memo_eval(struct place_memo *m, const struct place_node *nodes,
                      size_t k)
{
    int64_t price = 0;
    enum place_filter f = check(&nodes[k], &m->req, &m->prep, &price);
    m->cls[k] = (uint8_t)f;
    if (f == PF_N) {
        m->passed++;
        m->price[k] = price;
        m->score[k] = place_score(&nodes[k], &m->req, price, &m->w);
    } else {
        m->removed[f]++;
    }
}

struct place_memo *place_memo_new(const struct place_req *r,
                                  const struct place_weights *w,
                                  const struct place_node *nodes, size_t n)
{
    struct place_memo *m = xcalloc(1, sizeof(*m));
    m->req = *r;
    const char **s[] = { &m->req.tmpl, &m->req.image, &m->req.image_id,
                         &m->req.image_digest, &m->req.image_account,
                         &m->req.region };
    for (size_t i = 0; i < ARRAY_SIZE(s); i++) {
        m->str[i] = *s[i] ? xstrdup(*s[i]) : NULL;
        *s[i] = m->str[i];
    }
    m->req.labels = NULL;
    m->req.avoid = m->req.port_blocked = NULL;
    m->req.n_avoid = m->req.n_port_blocked = 0;
    m->w = *w;
    prep_init(&m->prep, &m->req, false);
    m->n = n;
    m->cls = xcalloc(n + 1, sizeof(*m->cls));
    m->price = xcalloc(n + 1, sizeof(*m->price));
    m->score = xcalloc(n + 1, sizeof(*m->score));
    for (m->leaves = 1; m->leaves < n; m->leaves *= 2)
        ;
    m->tree = xcalloc(2 * m->leaves, sizeof(*m->tree));
    for (size_t j = 0; j < m->leaves; j++)
        m->tree[m->leaves + j].k = MEMO_NONE;
    for (size_t i = 0; i < n; i++) {
        memo_eval(m, nodes, i);
        if (m->cls[i] == PF_N)
            m->tree[m->leaves + i] = (struct memo_ent){ m->score[i],
                                                        (uint32_t)i };
    }
    for (size_t j = m->leaves - 1; j >= 1; j--)
        m->tree[j] = memo_better(&m->tree[2 * j], &m->tree[2 * j + 1]);
    return m;
}

size_t place_memo_bytes(size_t n)
{
    size_t leaves = 1;
    while (leaves < n)
        leaves *= 2;
    return sizeof(struct place_memo) +
           (n + 1) * (sizeof(uint8_t) + sizeof(int64_t) + sizeof(double)) +
           2 * leaves * sizeof(struct memo_ent);
}

void place_memo_free(struct place_memo *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < ARRAY_SIZE(m->str); i++)
        free(m->str[i]);
    free(m->cls);
    free(m->price);
    free(m->score);
    free(m->tree);
    free(m);
}

void place_memo_node_changed(struct place_memo *m,
                             const struct place_node *nodes, size_t k)
{
    if (k >= m->n)
        return;
    if (m->cls[k] == PF_N)
        m->passed--;
    else
        m->removed[m->cls[k]]--;
    memo_eval(m, nodes, k);
    memo_fix(m, k);
}

/* Each filter's place in check()'s order; a pass (PF_N) after all. */
static const uint8_t check_order[PF_N + 1] = {
    [PF_CAPACITY] = 0, [PF_BENCHMARK] = 1, [PF_KVM] = 2, [PF_GPU] = 3,
    [PF_DRAINED] = 4, [PF_WINDOW] = 5, [PF_POLICY] = 6, [PF_PORTS] = 7,
    [PF_REGION] = 8, [PF_LABELS] = 9, [PF_REPUTATION] = 10,
    [PF_ANTI_AFFINITY] = 11, [PF_PRICE] = 12, [PF_N] = 13,
};

/* The nodes idx[0..n) leave out by filter f: each one that passed, or
 * failed only a filter check() tries after f, counts as removed by f
 * instead, and is marked in out[] (duplicates, and nodes out already,
 * count once). */
static void memo_except(const struct place_memo *m, const size_t *idx,
                        size_t n, enum place_filter f, uint8_t *out,
                        struct place_result *ret)
{
    for (size_t i = 0; i < n; i++) {
        size_t k = idx[i];
        if (k >= m->n || out[k])
            continue;
        out[k] = 1;
        uint8_t c = m->cls[k];
        if (check_order[c] <= check_order[f])
            continue;
        if (c == PF_N)
            ret->passed--;
        else
            ret->removed[c]--;
        ret->removed[f]++;
    }
}

/* The best passing node not marked in out[], or -1: the subtrees of the
 * tournament taken best first (a heap of entries by their winners), each
 * whose winner is out split into its two, so it costs a path to the root
 * for each node out that ranks before the answer. */
static ssize_t memo_best_except(const struct place_memo *m,
                                const uint8_t *out)
{
    uint32_t w = m->tree[1].k;
    if (w == MEMO_NONE || !out[w])
        return w == MEMO_NONE ? -1 : (ssize_t)w;
    size_t n = 0, cap = 64;
    _cleanup_free_ size_t *heap = xcalloc(cap, sizeof(*heap));
    heap[n++] = 1;
    while (n > 0) {
        size_t j = heap[0];
        /* Pop the best entry. */
        heap[0] = heap[--n];
        for (size_t i = 0;;) {
            size_t c = 2 * i + 1, best = i;
            for (size_t d = c; d < c + 2 && d < n; d++)
                if (memo_before(&m->tree[heap[d]], &m->tree[heap[best]]))
                    best = d;
            if (best == i)
                break;
            size_t t = heap[i];
            heap[i] = heap[best];
            heap[best] = t;
            i = best;
        }
        w = m->tree[j].k;
        if (!out[w])
            return (ssize_t)w;
        if (j >= m->leaves)
            continue;
        /* Its winner is out: its two subtrees that hold a passing node
         * take its place. */
        for (size_t c = 2 * j; c <= 2 * j + 1; c++) {
            if (m->tree[c].k == MEMO_NONE)
                continue;
            if (n == cap) {
                cap *= 2;
                heap = xrealloc(heap, cap * sizeof(*heap));
            }
            size_t i = n++;
            for (; i > 0 && memo_before(&m->tree[c],
                                        &m->tree[heap[(i - 1) / 2]]);
                 i = (i - 1) / 2)
                heap[i] = heap[(i - 1) / 2];
            heap[i] = c;
        }
    }
    return -1;
}

void place_memo_result(struct place_memo *m, const struct place_except *x,
                       struct place_result *ret)
{
    memset(ret, 0, sizeof(*ret));
    memcpy(ret->removed, m->removed, sizeof(ret->removed));
    ret->passed = m->passed;
    ret->chosen = -1;
    ssize_t best = m->tree[1].k == MEMO_NONE ? -1 : (ssize_t)m->tree[1].k;
    if (x && x->n_ports + x->n_avoid > 0) {
        _cleanup_free_ uint8_t *out = xcalloc(m->n + 1, 1);
        memo_except(m, x->ports, x->n_ports, PF_PORTS, out, ret);
        memo_except(m, x->avoid, x->n_avoid, PF_ANTI_AFFINITY, out, ret);
        if (best >= 0)
            best = memo_best_except(m, out);
    }
    if (best >= 0) {
        ret->chosen = best;
        ret->price_hour = m->price[best];
        ret->score = m->score[best];
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
