/* Property tests of the placement decision (controller/placement.c), a pure
 * function: random fleets of nodes with prices, capacities, KVM, policies,
 * regions, labels, reputations, verified benchmarks and anti-affinity, and
 * random VMs with caps and selectors. Checked against an independent
 * oracle written here: the chosen node passes every filter (never above
 * the cap, never above the vCPUs its benchmark verified, never on a node
 * of its anti-affinity group), no node that passes is better by the
 * weights, ties go to the oldest, and the filter counts add up. The seed
 * is printed; FOG_SEED=N repeats a run, FOG_CASES=N changes how many. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "controller/placement.h"

#include "tests/testutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

static uint64_t rng_state;

static uint64_t rnd(void)
{
    return tu_xorshift(&rng_state);
}

static uint64_t below(uint64_t n) { return rnd() % n; }

static const char *const regions[] = { "", "eu-west", "us-east", "ap-south" };
static const char *const labels[] = { "gpu=a100", "gpu=h100", "disk=ssd",
                                      "disk=hdd", "tier=gold" };
static const char *const names[] = { "nginx", "debian-12", "tiny" };
static const char *const digests[] = { "d0", "d1", "d2" };
static const char *const owners[] = { "acct-a", "acct-b" };
static const char *const ids[] = {
    "n00", "n01", "n02", "n03", "n04", "n05", "n06", "n07", "n08", "n09",
    "n10", "n11", "n12", "n13", "n14", "n15", "n16", "n17", "n18", "n19",
    "n20", "n21", "n22", "n23", "n24", "n25", "n26", "n27", "n28", "n29",
    "n30", "n31", "n32", "n33", "n34", "n35", "n36", "n37", "n38", "n39",
};
#define MAX_NODES ARRAY_SIZE(ids)

struct fleet {
    struct place_node nodes[MAX_NODES];
    const char *lab[MAX_NODES][ARRAY_SIZE(labels)];
    struct place_rule rules[MAX_NODES][2];
    size_t n;
};

static int64_t price_of(void)
{
    /* Often equal prices, so ties are exercised too. */
    return (int64_t)(1 + below(4)) * 5000000 * (below(8) == 0 ? 1000 : 1);
}

static void random_fleet(struct fleet *f)
{
    f->n = (size_t)below(MAX_NODES + 1);
    for (size_t i = 0; i < f->n; i++) {
        struct place_node *p = &f->nodes[i];
        memset(p, 0, sizeof(*p));
        p->id = ids[i];
        p->vcpus = (int64_t)(1 + below(16));
        p->mem_mib = (int64_t)(1 + below(16)) * 1024;
        p->free_vcpus = (int64_t)below((uint64_t)p->vcpus + 1);
        p->free_mem_mib = (int64_t)below((uint64_t)p->mem_mib + 1);
        p->free_disk_gib = (int64_t)below(200);
        p->kvm = below(4) != 0;
        p->drained = below(10) == 0;
        p->closed = below(10) == 0;
        p->region = regions[below(ARRAY_SIZE(regions))];
        for (size_t k = 0; k < ARRAY_SIZE(labels); k++)
            if (below(2))
                f->lab[i][p->n_labels++] = labels[k];
        p->labels = f->lab[i];
        p->account_id = owners[below(ARRAY_SIZE(owners))];
        p->n_rules = (size_t)(below(3) == 0 ? 1 + below(2) : 0);
        for (size_t k = 0; k < p->n_rules; k++) {
            bool local = below(3) == 0;
            f->rules[i][k] = (struct place_rule){
                below(2) == 0, names[below(ARRAY_SIZE(names))],
                local ? NULL : digests[below(ARRAY_SIZE(digests))],
                local ? names[below(ARRAY_SIZE(names))] : NULL };
        }
        p->rules = f->rules[i];
        p->offer = (struct rating_offer){ price_of(), price_of(),
                                          price_of() * 10, 0, 1000000 };
        p->reputation = below(4) == 0 ? -1 : (double)below(101) / 100.0;
        p->gpu_free = (int64_t)below(4);
        p->offer.gpu_hour = price_of();
        p->gpu_hour_model = below(2) ? -1 : price_of();
        /* A verified benchmark (often below the claim) or none yet; a
         * figure without a verification must not count. */
        p->verified = below(3) != 0;
        p->verified_vcpus = (int64_t)below((uint64_t)p->vcpus + 2);
        p->bench = (double)below(101) / 100.0;
    }
}

struct ask {
    struct place_req req;
    const char *lab[2];
    const char *avoid[MAX_NODES];
    const char *blocked[MAX_NODES];
};

/* q's anti-affinity and port lists, each empty half the time; the port
 * list may name a node twice. */
static void random_lists(struct ask *q, size_t nodes)
{
    struct place_req *r = &q->req;
    r->n_avoid = r->n_port_blocked = 0;
    bool avoid = below(2), ports = below(2);
    for (size_t i = 0; i < nodes; i++) {
        if (avoid && below(5) == 0)
            q->avoid[r->n_avoid++] = ids[i];
        if (ports && below(6) == 0 && r->n_port_blocked < MAX_NODES)
            q->blocked[r->n_port_blocked++] = ids[i];
    }
    if (ports && nodes > 0 && r->n_port_blocked < MAX_NODES)
        q->blocked[r->n_port_blocked++] = ids[below(nodes)];
    r->avoid = q->avoid;
    r->port_blocked = q->blocked;
}

static void random_req(struct ask *q, size_t nodes)
{
    struct place_req *r = &q->req;
    memset(q, 0, sizeof(*q));
    r->vcpus = (int64_t)(1 + below(8));
    r->mem_mib = (int64_t)(64 + below(8192));
    r->disk_gib = (int64_t)(1 + below(100));
    r->ports = (int64_t)below(3);
    r->gpu_count = below(3) == 0 ? (int64_t)(1 + below(3)) : 0;
    r->gpu_model = r->gpu_count ? "GeForceRTX4090" : NULL;
    r->allow_tcg = below(2);
    r->tmpl = below(2) ? names[below(ARRAY_SIZE(names))] : NULL;
    r->image = names[below(ARRAY_SIZE(names))];
    r->image_id = below(2) ? "00000000-0000-0000-0000-000000000001" : NULL;
    if (r->image_id) {
        r->image_digest = digests[below(ARRAY_SIZE(digests))];
        r->image_public = below(2);
        r->image_account = owners[below(ARRAY_SIZE(owners))];
    }
    r->region = below(3) == 0 ? regions[below(ARRAY_SIZE(regions))] : NULL;
    r->n_labels = (size_t)below(3);
    for (size_t i = 0; i < r->n_labels; i++)
        q->lab[i] = labels[below(ARRAY_SIZE(labels))];
    r->labels = q->lab;
    r->max_price = below(4) == 0 ? -1 : (int64_t)below(2000000000);
    r->min_reputation = below(3) == 0 ? (double)below(101) / 100.0 : 0;
    random_lists(q, nodes);
}

/* ---- the oracle: every rule spelled out again, independently ---- */

/* Price of one hour: the exact sum over the components, rounded up. */
static int64_t oracle_price(const struct place_node *p,
                            const struct place_req *r)
{
    const struct rating_offer *o = &p->offer;
    int64_t gpu = r->gpu_count > 0 && p->gpu_hour_model >= 0
                      ? p->gpu_hour_model : o->gpu_hour;
    /* in nano-tokens x 1024 x 720 (MiB per GiB, hours per disk month) */
    __int128 num = (__int128)o->vcpu_hour * r->vcpus * 1024 * 720 +
                   (__int128)o->mem_gib_hour * r->mem_mib * 720 +
                   (__int128)o->disk_gib_month * r->disk_gib * 1024 +
                   (__int128)o->port_hour * r->ports * 1024 * 720 +
                   (__int128)gpu * r->gpu_count * 1024 * 720;
    __int128 d = 1024 * 720;
    return (int64_t)((num + d - 1) / d);
}

static bool has(const char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

static bool oracle_pass(const struct place_node *p, const struct place_req *r)
{
    if (p->free_vcpus < r->vcpus || p->free_mem_mib < r->mem_mib ||
        p->free_disk_gib < r->disk_gib)
        return false;
    if (p->verified &&
        (p->vcpus - p->free_vcpus) + r->vcpus > p->verified_vcpus)
        return false;
    if (!p->kvm && !r->allow_tcg)
        return false;
    if (r->gpu_count > 0 && p->gpu_free < r->gpu_count)
        return false;
    if (p->drained || p->closed)
        return false;
    /* Content, not names: the digest of a catalog image the node's owner
     * may run (public or its own), or a node-local image by name. */
    bool accepted = p->n_rules == 0;
    bool may_run = r->image_public ||
                   (r->image_account && strcmp(r->image_account,
                                               p->account_id) == 0);
    for (size_t k = 0; k < p->n_rules; k++) {
        const struct place_rule *u = &p->rules[k];
        bool is_it = !u->is_template || (r->tmpl && strcmp(u->name,
                                                           r->tmpl) == 0);
        bool by_digest = u->digest && r->image_id && may_run &&
                         strcmp(u->digest, r->image_digest) == 0;
        bool by_local = !u->digest && !r->image_id &&
                        strcmp(u->local_image, r->image) == 0;
        if (is_it && (by_digest || by_local))
            accepted = true;
    }
    if (!accepted)
        return false;
    if (has(r->port_blocked, r->n_port_blocked, p->id))
        return false;
    if (r->region && strcmp(r->region, p->region) != 0)
        return false;
    for (size_t i = 0; i < r->n_labels; i++)
        if (!has(p->labels, p->n_labels, r->labels[i]))
            return false;
    if (r->min_reputation > 0 && (p->reputation < 0 ||
                                  p->reputation < r->min_reputation))
        return false;
    if (has(r->avoid, r->n_avoid, p->id))
        return false;
    if (r->max_price >= 0 && oracle_price(p, r) > r->max_price)
        return false;
    return true;
}

static double oracle_score(const struct place_node *p,
                           const struct place_req *r,
                           const struct place_weights *w)
{
    double room = ((double)(p->free_vcpus - r->vcpus) / (double)p->vcpus +
                   (double)(p->free_mem_mib - r->mem_mib) /
                       (double)p->mem_mib) / 2;
    return -w->price * (double)oracle_price(p, r) / 1e9 +
           w->spread * room +
           w->reputation * (p->reputation < 0 ? 0 : p->reputation) +
           w->benchmark * (p->verified ? p->bench : 0);
}

static void placement_properties(void **state)
{
    uint64_t seed = getenv("FOG_SEED") ? strtoull(getenv("FOG_SEED"), NULL, 10)
                                       : (uint64_t)time(NULL);
    long cases = getenv("FOG_CASES") ? atol(getenv("FOG_CASES")) : 20000;
    printf("# seed %" PRIu64 ", %ld cases\n", seed, cases);
    rng_state = seed * 2654435761u + 1;
    static const struct place_weights ws[] = {
        { 1, 0, 0 }, { 0, 1, 0 }, { 0, -1, 0 }, { 1, 5, 0 }, { 3, -2, 0 },
        { 0, 0, 0 }, { 1, 0, 2 }, { 0, 1, 1 }, { 0, 0, 5 }, { 0, 0, 0, 3 },
        { 1, 1, 1, 1 }, { 0, -1, 0, 4 } };
    long placed = 0, refused = 0;
    static struct fleet f;
    for (long c = 0; c < cases; c++) {
        struct ask q;
        random_fleet(&f);
        random_req(&q, f.n);
        const struct place_weights *w = &ws[below(ARRAY_SIZE(ws))];
        struct place_result res;
        place_decide(&q.req, f.nodes, f.n, w, &res);

        size_t pass = 0, removed = 0;
        ssize_t best = -1;
        for (size_t i = 0; i < f.n; i++) {
            if (!oracle_pass(&f.nodes[i], &q.req))
                continue;
            pass++;
            if (best < 0 || oracle_score(&f.nodes[i], &q.req, w) >
                                oracle_score(&f.nodes[best], &q.req, w))
                best = (ssize_t)i;
        }
        for (int k = 0; k < PF_N; k++)
            removed += res.removed[k];
        if (res.passed != pass || removed + pass != f.n)
            fail_msg("seed %" PRIu64 " case %ld: %zu passed, oracle %zu, "
                     "%zu removed of %zu", seed, c, res.passed, pass, removed,
                     f.n);
        if (res.chosen != best)
            fail_msg("seed %" PRIu64 " case %ld: chose %zd, best is %zd",
                     seed, c, res.chosen, best);
        if (best < 0) {
            refused++;
            continue;
        }
        placed++;
        const struct place_node *p = &f.nodes[best];
        /* Never above the cap, never against anti-affinity. */
        assert_int_equal(res.price_hour, oracle_price(p, &q.req));
        assert_true(q.req.max_price < 0 || res.price_hour <= q.req.max_price);
        assert_false(has(q.req.avoid, q.req.n_avoid, p->id));
        /* Never above the vCPUs its benchmark verified. */
        assert_true(!p->verified || p->vcpus - p->free_vcpus + q.req.vcpus <=
                                        p->verified_vcpus);
    }
    printf("# %ld placed, %ld refused\n", placed, refused);
    /* Both outcomes happened, so neither side went untested. */
    assert_true(placed > cases / 20 && refused > cases / 20);
}

/* Each filter named in the counts removes what it should. */
static void filter_counts(void **state)
{
    static const char *const gpu[] = { "gpu=a100" };
    static const struct place_rule nginx = { true, "nginx" };
    struct place_node n[] = {
        { .id = "small", .free_vcpus = 1, .free_mem_mib = 512,
          .free_disk_gib = 10, .vcpus = 1, .mem_mib = 512, .kvm = true,
          .region = "eu" },
        { .id = "tcg", .free_vcpus = 8, .free_mem_mib = 8192,
          .free_disk_gib = 100, .vcpus = 8, .mem_mib = 8192, .region = "eu" },
        { .id = "strict", .free_vcpus = 8, .free_mem_mib = 8192,
          .free_disk_gib = 100, .vcpus = 8, .mem_mib = 8192, .kvm = true,
          .region = "eu", .rules = &nginx, .n_rules = 1 },
        { .id = "us", .free_vcpus = 8, .free_mem_mib = 8192,
          .free_disk_gib = 100, .vcpus = 8, .mem_mib = 8192, .kvm = true,
          .region = "us", .labels = gpu, .n_labels = 1 },
        { .id = "plain", .free_vcpus = 8, .free_mem_mib = 8192,
          .free_disk_gib = 100, .vcpus = 8, .mem_mib = 8192, .kvm = true,
          .region = "eu" },
        { .id = "dear", .free_vcpus = 8, .free_mem_mib = 8192,
          .free_disk_gib = 100, .vcpus = 8, .mem_mib = 8192, .kvm = true,
          .region = "eu", .labels = gpu, .n_labels = 1,
          .offer = { .vcpu_hour = 50000000000 } },
        { .id = "night", .free_vcpus = 8, .free_mem_mib = 8192,
          .free_disk_gib = 100, .vcpus = 8, .mem_mib = 8192, .kvm = true,
          .region = "eu", .labels = gpu, .n_labels = 1,
          .offer = { .vcpu_hour = 1000000 }, .closed = true },
        { .id = "cheap", .free_vcpus = 8, .free_mem_mib = 8192,
          .free_disk_gib = 100, .vcpus = 8, .mem_mib = 8192, .kvm = true,
          .region = "eu", .labels = gpu, .n_labels = 1,
          .offer = { .vcpu_hour = 10000000 } },
    };
    const char *avoid[] = { "cheap" };
    struct place_req r = { .vcpus = 2, .mem_mib = 1024, .disk_gib = 5,
                           .image = "tiny", .region = "eu", .labels = gpu,
                           .n_labels = 1, .max_price = 1000000000,
                           .avoid = avoid, .n_avoid = 1 };
    struct place_weights w = { 1, 0, 0 };
    struct place_result res;
    place_decide(&r, n, ARRAY_SIZE(n), &w, &res);
    assert_int_equal(res.chosen, -1);
    assert_int_equal(res.removed[PF_CAPACITY], 1);
    assert_int_equal(res.removed[PF_KVM], 1);
    assert_int_equal(res.removed[PF_POLICY], 1);
    assert_int_equal(res.removed[PF_REGION], 1);
    assert_int_equal(res.removed[PF_LABELS], 1);
    assert_int_equal(res.removed[PF_PRICE], 1);
    assert_int_equal(res.removed[PF_ANTI_AFFINITY], 1);
    assert_int_equal(res.removed[PF_WINDOW], 1);
    char *why = place_refusal_text(&res, ARRAY_SIZE(n));
    assert_non_null(strstr(why, "price removed 1"));
    assert_non_null(strstr(why, "anti_affinity removed 1"));
    assert_non_null(strstr(why, "window removed 1"));
    free(why);
    /* Without the group, the cheap node is chosen at 0.02 an hour (the
     * cheaper node outside its windows never is). */
    r.n_avoid = 0;
    place_decide(&r, n, ARRAY_SIZE(n), &w, &res);
    assert_string_equal(n[res.chosen].id, "cheap");
    assert_int_equal(res.price_hour, 20000000);
}

/* A kept decision, after each of a run of changes to single nodes
 * (capacity taken or given back, a drain, a window, a price), is what
 * place_decide says of the fleet as it is, for requests with and without
 * port and anti-affinity lists, fleets from none to 40 nodes. */
/* Weights the kept decisions are tried with. */
static const struct place_weights memo_ws[] = {
    { 1, 0, 0 }, { 0, 1, 0 }, { 0, -1, 0 }, { 1, 5, 0 }, { 0, 0, 0 },
    { 1, 1, 1 } };

/* The seed of a randomized test (FOG_SEED, else the time), shown. */
static uint64_t test_seed(uint64_t mul, uint64_t add)
{
    uint64_t seed = getenv("FOG_SEED") ? strtoull(getenv("FOG_SEED"), NULL, 10)
                                       : (uint64_t)time(NULL);
    printf("# seed %" PRIu64 "\n", seed);
    rng_state = seed * mul + add;
    return seed;
}

/* A random fleet, and a request a kept decision takes (no labels or
 * GPUs; `small`: a fleet takes many), with a kept decision for it. */
static struct place_memo *random_memo(struct fleet *f, struct ask *q,
                                      bool small,
                                      const struct place_weights **ret_w)
{
    random_fleet(f);
    random_req(q, f->n);
    q->req.n_labels = 0;
    q->req.gpu_count = 0;
    q->req.gpu_model = NULL;
    if (small) {
        q->req.vcpus = 1 + (int64_t)below(2);
        q->req.mem_mib = 256;
        q->req.disk_gib = 1;
    }
    assert_true(place_memo_fits(&q->req));
    *ret_w = &memo_ws[below(ARRAY_SIZE(memo_ws))];
    return place_memo_new(&q->req, *ret_w, f->nodes, f->n);
}

/* m's decision is place_decide's for r on f as it is (its result to
 * *ret_want when not NULL). */
static void memo_as_decide(struct place_memo *m, const struct place_req *r,
                           const struct fleet *f,
                           const struct place_weights *w, uint64_t seed,
                           long c, int step, struct place_result *ret_want)
{
    struct place_result want, got;
    place_decide(r, f->nodes, f->n, w, &want);
    /* r's lists as indexes of f's nodes, for the memo. */
    size_t idx[2 * MAX_NODES];
    struct place_except x = { idx, NULL, 0, 0 };
    for (size_t i = 0; i < r->n_port_blocked; i++)
        for (size_t k = 0; k < f->n; k++)
            if (streq(f->nodes[k].id, r->port_blocked[i]))
                idx[x.n_ports++] = k;
    x.avoid = idx + x.n_ports;
    for (size_t i = 0; i < r->n_avoid; i++)
        for (size_t k = 0; k < f->n; k++)
            if (streq(f->nodes[k].id, r->avoid[i]))
                idx[x.n_ports + x.n_avoid++] = k;
    place_memo_result(m, &x, &got);
    if (got.chosen != want.chosen || got.passed != want.passed ||
        memcmp(got.removed, want.removed, sizeof(got.removed)) ||
        (want.chosen >= 0 && (got.price_hour != want.price_hour ||
                              got.score != want.score)))
        fail_msg("seed %" PRIu64 " case %ld step %d: chose %zd of %zu "
                 "passing, place_decide %zd of %zu", seed, c, step,
                 got.chosen, got.passed, want.chosen, want.passed);
    if (ret_want)
        *ret_want = want;
}

static void memo_follows_changes(void **state)
{
    uint64_t seed = test_seed(2654435761u, 7);
    static struct fleet f;
    for (long c = 0; c < 3000; c++) {
        struct ask q;
        const struct place_weights *w;
        struct place_memo *m = random_memo(&f, &q, false, &w);
        assert_true(place_memo_is(m, &q.req, w, false));
        /* Another weight, another decision (each one counts). */
        for (int i = 0; i < 4; i++) {
            struct place_weights w2 = *w;
            double *wv[] = { &w2.price, &w2.spread, &w2.reputation,
                             &w2.benchmark };
            *wv[i] += 1;
            assert_false(place_memo_is(m, &q.req, &w2, true));
        }
        for (int step = 0; step <= 40; step++) {
            /* Sometimes several changes before the next result (the
             * memo ranks again only when asked). */
            int changes = step > 0 && f.n > 0 ? (below(3) == 0 ?
                                                 1 + (int)below(6) : 1) : 0;
            for (int ch = 0; ch < changes; ch++) {
                size_t k = (size_t)below(f.n);
                struct place_node *p = &f.nodes[k];
                switch (below(5)) {
                case 0: /* a VM placed there */
                    p->free_vcpus -= q.req.vcpus;
                    p->free_mem_mib -= q.req.mem_mib;
                    p->free_disk_gib -= q.req.disk_gib;
                    break;
                case 1: /* one gone */
                    p->free_vcpus += (int64_t)below(4);
                    p->free_mem_mib += (int64_t)below(4096);
                    p->free_disk_gib += (int64_t)below(50);
                    break;
                case 2:
                    p->drained = !p->drained;
                    break;
                case 3:
                    p->closed = !p->closed;
                    break;
                default:
                    p->offer.vcpu_hour = price_of();
                }
                place_memo_node_changed(m, f.nodes, k);
            }
            /* Another VM of the same request, with lists of its own
             * (the memo shares none of them). */
            if (below(4) == 0)
                random_lists(&q, f.n);
            memo_as_decide(m, &q.req, &f, w, seed, c, step, NULL);
        }
        place_memo_free(m);
    }
}

/* A kept decision placing VM after VM where it chose, as the scheduler
 * does (the chosen node's capacity taken, now and then a VM gone from
 * another node), until the fleet is full: each choice, price and score is
 * place_decide's on the fleet as it is then. Long runs move nodes up and
 * down the whole ranking, ties (equal prices, no weights) included. */
static void memo_follows_placements(void **state)
{
    uint64_t seed = test_seed(40503u, 11);
    static struct fleet f;
    for (long c = 0; c < 300; c++) {
        struct ask q;
        const struct place_weights *w;
        struct place_memo *m = random_memo(&f, &q, true, &w);
        for (int step = 0; step < 400; step++) {
            struct place_result want;
            memo_as_decide(m, &q.req, &f, w, seed, c, step, &want);
            size_t k;
            if (want.chosen >= 0 && below(4) != 0) {
                k = (size_t)want.chosen;
                f.nodes[k].free_vcpus -= q.req.vcpus;
                f.nodes[k].free_mem_mib -= q.req.mem_mib;
                f.nodes[k].free_disk_gib -= q.req.disk_gib;
            } else if (f.n > 0) {
                k = (size_t)below(f.n);
                f.nodes[k].free_vcpus += q.req.vcpus;
                f.nodes[k].free_mem_mib += q.req.mem_mib;
                f.nodes[k].free_disk_gib += q.req.disk_gib;
            } else {
                break;
            }
            place_memo_node_changed(m, f.nodes, k);
        }
        place_memo_free(m);
    }
}

/* Two requests alike but for their template and image, which every
 * node's policy accepts or refuses alike: the decision kept for one is
 * the other's too (is told so only when the caller vouches for their
 * policies), through changes; requests the policies tell apart are not. */
static void memo_shared_by_policy_alike(void **state)
{
    uint64_t seed = test_seed(97u, 3);
    static struct fleet f;
    long shared = 0;
    for (long c = 0; c < 3000; c++) {
        struct ask q, o;
        const struct place_weights *w;
        struct place_memo *m = random_memo(&f, &q, false, &w);
        /* Another template and image, all else q's. */
        random_req(&o, f.n);
        struct place_req r = q.req;
        r.tmpl = o.req.tmpl;
        r.image = o.req.image;
        r.image_id = o.req.image_id;
        r.image_digest = o.req.image_digest;
        r.image_public = o.req.image_public;
        r.image_account = o.req.image_account;
        bool alike = true;
        for (size_t k = 0; k < f.n; k++)
            alike = alike && place_policy_ok(&f.nodes[k], &q.req) ==
                                 place_policy_ok(&f.nodes[k], &r);
        bool same = r.tmpl == q.req.tmpl && r.image == q.req.image &&
                    r.image_id == q.req.image_id &&
                    r.image_digest == q.req.image_digest &&
                    r.image_public == q.req.image_public &&
                    r.image_account == q.req.image_account;
        assert_true(place_memo_is(m, &r, w, true));
        assert_true(place_memo_is(m, &r, w, false) == same);
        for (int step = 0; alike && step <= 20; step++) {
            if (step > 0 && f.n > 0) {
                size_t k = (size_t)below(f.n);
                f.nodes[k].free_vcpus -= r.vcpus;
                f.nodes[k].free_mem_mib -= r.mem_mib;
                f.nodes[k].free_disk_gib -= r.disk_gib;
                place_memo_node_changed(m, f.nodes, k);
            }
            memo_as_decide(m, &r, &f, w, seed, c, step, NULL);
            shared += !same;
        }
        place_memo_free(m);
    }
    /* Requests that differ were shared, not only identical ones. */
    assert_true(shared > 0);
}

/* Fleets past the size where the avoid and port lists become hash sets:
 * the counts and the choice are those of a walk of the lists, for lists
 * from one node to more than the set holds. */
static void long_lists(void **state)
{
    enum { N = 3000 };
    static char idbuf[N][32];
    static struct place_node nodes[N];
    static const char *avoid[N], *blocked[N];
    static const size_t sizes[] = { 0, 1, 8, 9, 100, 1024, 1025, 2500 };
    rng_state = 777;
    for (size_t c = 0; c < 40; c++) {
        size_t n = 65 + (size_t)below(N - 65);
        for (size_t i = 0; i < n; i++) {
            snprintf(idbuf[i], sizeof(idbuf[i]), "node-%zu", i);
            nodes[i] = (struct place_node){
                .id = idbuf[i], .free_vcpus = 8, .free_mem_mib = 8192,
                .free_disk_gib = 100, .vcpus = 8, .mem_mib = 8192,
                .kvm = true, .region = "",
                .offer = { .vcpu_hour = (int64_t)(1 + below(50)) * 1000000 },
                .gpu_hour_model = -1 };
        }
        size_t na = sizes[below(ARRAY_SIZE(sizes))];
        size_t nb = sizes[below(ARRAY_SIZE(sizes))];
        na = na > n ? n : na;
        nb = nb > n ? n : nb;
        /* Ids from anywhere in the fleet, repeats allowed, and one that
         * names no node. */
        for (size_t i = 0; i < na; i++)
            avoid[i] = idbuf[below(n)];
        for (size_t i = 0; i < nb; i++)
            blocked[i] = i == 0 ? "not-a-node" : idbuf[below(n)];
        struct place_req r = { .vcpus = 1, .mem_mib = 512, .disk_gib = 1,
                               .image = "x", .max_price = -1,
                               .avoid = avoid, .n_avoid = na,
                               .port_blocked = blocked,
                               .n_port_blocked = nb };
        struct place_weights w = { 1, 0, 0 };
        struct place_result res;
        place_decide(&r, nodes, n, &w, &res);
        size_t want_ports = 0, want_avoid = 0;
        ssize_t best = -1;
        for (size_t i = 0; i < n; i++) {
            if (has(blocked, nb, nodes[i].id))
                want_ports++;
            else if (has(avoid, na, nodes[i].id))
                want_avoid++;
            else if (best < 0 || nodes[i].offer.vcpu_hour <
                                     nodes[best].offer.vcpu_hour)
                best = (ssize_t)i;
        }
        assert_int_equal(res.removed[PF_PORTS], want_ports);
        assert_int_equal(res.removed[PF_ANTI_AFFINITY], want_avoid);
        assert_int_equal(res.chosen, best);
    }
}

/* The price a check works out equals the rating code's, in 64 bits and
 * where the sum only fits 128 (or nothing): random offers from cents to
 * near INT64_MAX, shapes up to the largest. */
static void price_matches_rating(void **state)
{
    rng_state = 12345;
    static const int64_t big[] = { 0, 1, 5000000, INT64_C(1) << 40,
                                   INT64_C(1) << 52, INT64_MAX / 1000,
                                   INT64_MAX };
    for (int c = 0; c < 200000; c++) {
        struct place_node n = { .id = "n", .free_vcpus = INT64_MAX,
                                .free_mem_mib = INT64_MAX,
                                .free_disk_gib = INT64_MAX, .kvm = true,
                                .gpu_free = INT64_MAX, .gpu_hour_model = -1 };
        int64_t *o = &n.offer.vcpu_hour;
        for (int i = 0; i < 5; i++)
            o[i] = below(4) ? (int64_t)below(100000000)
                            : big[below(ARRAY_SIZE(big))] - (int64_t)below(2);
        struct place_req r = { .vcpus = (int64_t)below(1 << 12),
                               .mem_mib = (int64_t)below(1 << 24),
                               .disk_gib = (int64_t)below(1 << 20),
                               .gpu_count = (int64_t)below(9),
                               .ports = (int64_t)below(5), .image = "x",
                               .max_price = -1, .allow_tcg = true };
        if (below(50) == 0)
            r.vcpus = INT64_MAX / (int64_t)(1 + below(1000));
        r.gpu_model = r.gpu_count ? "m" : NULL;
        int64_t want = place_price_hour(&n.offer, &r), got = -1;
        enum place_filter f = place_check(&n, &r, &got);
        assert_int_equal(got, want);
        assert_int_equal(f, want == INT64_MAX ? PF_PRICE : PF_N);
    }
}

/* A node that claims 8 vCPUs but whose benchmark backs 2 receives at
 * most 2 vCPUs of VMs, one placement after another; one not benchmarked
 * yet is not capped. */
static void verified_vcpus_cap_the_node(void **state)
{
    struct place_node n = { .id = "slow", .free_vcpus = 8,
                            .free_mem_mib = 8192, .free_disk_gib = 100,
                            .vcpus = 8, .mem_mib = 8192, .kvm = true,
                            .verified = true, .verified_vcpus = 2,
                            .bench = 0.25 };
    struct place_req r = { .vcpus = 1, .mem_mib = 256, .disk_gib = 1,
                           .image = "tiny", .max_price = -1 };
    struct place_weights w = { 1, 0, 0, 0 };
    struct place_result res;
    int placed = 0;
    for (int i = 0; i < 8; i++) {
        place_decide(&r, &n, 1, &w, &res);
        if (res.chosen < 0)
            break;
        n.free_vcpus -= r.vcpus; /* as the scheduler's fleet_take */
        placed++;
    }
    assert_int_equal(placed, 2);
    assert_int_equal(res.removed[PF_BENCHMARK], 1);
    char *why = place_refusal_text(&res, 1);
    assert_non_null(strstr(why, "benchmark removed 1"));
    free(why);
    /* A bigger VM does not fit even on the empty node. */
    n.free_vcpus = 8;
    r.vcpus = 3;
    place_decide(&r, &n, 1, &w, &res);
    assert_int_equal(res.chosen, -1);
    /* Not benchmarked yet: the claim stands. */
    n.verified = false;
    place_decide(&r, &n, 1, &w, &res);
    assert_int_equal(res.chosen, 0);
}

/* With a benchmark weight, the faster of two otherwise equal nodes wins,
 * wherever it is listed; one not benchmarked yet weighs as 0. */
static void benchmark_weight_prefers_the_faster(void **state)
{
    struct place_node n[2] = {
        { .id = "a", .free_vcpus = 8, .free_mem_mib = 8192,
          .free_disk_gib = 100, .vcpus = 8, .mem_mib = 8192, .kvm = true,
          .verified = true, .verified_vcpus = 8, .bench = 0.5 },
        { .id = "b", .free_vcpus = 8, .free_mem_mib = 8192,
          .free_disk_gib = 100, .vcpus = 8, .mem_mib = 8192, .kvm = true,
          .verified = true, .verified_vcpus = 8, .bench = 0.9 },
    };
    struct place_req r = { .vcpus = 2, .mem_mib = 1024, .disk_gib = 5,
                           .image = "tiny", .max_price = -1 };
    struct place_weights w = { 1, 0, 0, 1 };
    struct place_result res;
    place_decide(&r, n, 2, &w, &res);
    assert_string_equal(n[res.chosen].id, "b");
    n[0].bench = 1.0;
    place_decide(&r, n, 2, &w, &res);
    assert_string_equal(n[res.chosen].id, "a");
    /* Unverified: its figure does not count, the verified one wins. */
    n[0].verified = false;
    place_decide(&r, n, 2, &w, &res);
    assert_string_equal(n[res.chosen].id, "b");
    /* Without the weight, the tie goes to the oldest. */
    w.benchmark = 0;
    place_decide(&r, n, 2, &w, &res);
    assert_string_equal(n[res.chosen].id, "a");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(placement_properties),
        cmocka_unit_test(filter_counts),
        cmocka_unit_test(price_matches_rating),
        cmocka_unit_test(long_lists),
        cmocka_unit_test(memo_follows_changes),
        cmocka_unit_test(memo_follows_placements),
        cmocka_unit_test(memo_shared_by_policy_alike),
        cmocka_unit_test(verified_vcpus_cap_the_node),
        cmocka_unit_test(benchmark_weight_prefers_the_faster),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
