/* Property tests for billing: thousands of random usage streams (chunked
 * differently, duplicated, retried, reordered, with gaps, lies and node
 * outages) fed through usage ingestion, rating and ledger building, checked
 * against a per-second oracle. The seed is printed; FOG_SEED=N repeats a run
 * and FOG_STREAMS=N changes how many streams are tried. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "billing/ledger.h"
#include "billing/rating.h"
#include "billing/usage.h"

#include "tests/testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#define HEARTBEAT 5
#define MAX_GAP (3 * HEARTBEAT)
#define SETTLE_LAG 3600

static uint64_t rng_state;

static uint64_t rnd(void)
{
    return tu_xorshift(&rng_state);
}

/* Uniform in [lo, hi]. */
static int64_t rr(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

/* The world one stream lives in: what really ran, when the node was up. */
struct world {
    int64_t T;
    bool *running;   /* truth per second */
    bool *node_up;   /* per second */
    bool *observed;  /* oracle: second observed by the controller */
    struct rating_offer offer;
    struct rating_shape shape;
    int64_t fee_bps;
};

enum ev_kind { EV_OBSERVE, EV_STOPPED, EV_SAMPLE, EV_ACCRUE, EV_SETTLE };

struct ev {
    int64_t time;
    int order; /* tie-break: random, so equal times interleave randomly */
    enum ev_kind kind;
    struct usage_sample s;
};

struct evlist {
    struct ev *v;
    size_t n, cap;
};

static void ev_push(struct evlist *l, int64_t time, enum ev_kind k,
                    const struct usage_sample *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    struct ev *e = &l->v[l->n++];
    e->time = time;
    e->order = (int)(rnd() & 0x7fffffff);
    e->kind = k;
    if (s)
        e->s = *s;
}

static int ev_cmp(const void *a, const void *b)
{
    const struct ev *x = a, *y = b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void world_make(struct world *w)
{
    w->T = rr(600, 20000);
    w->running = xcalloc((size_t)w->T, 1);
    w->node_up = xcalloc((size_t)w->T, 1);
    w->observed = xcalloc((size_t)w->T, 1);
    bool on = rnd() & 1;
    for (int64_t t = 0; t < w->T;) {
        int64_t len = rr(1, 3000);
        for (int64_t k = t; k < t + len && k < w->T; k++)
            w->running[k] = on;
        t += len;
        on = !on;
    }
    bool up = true;
    for (int64_t t = 0; t < w->T;) {
        int64_t len = up ? rr(30, 5000) : rr(1, 200);
        for (int64_t k = t; k < t + len && k < w->T; k++)
            w->node_up[k] = up;
        t += len;
        up = !up;
    }
    /* The oracle: reports at heartbeat times when the node is up; a second
     * is observed when it lies between two consecutive running reports at
     * most MAX_GAP apart with no report in between saying otherwise. */
    int64_t last = -1;
    for (int64_t t = 0; t < w->T; t += HEARTBEAT) {
        if (!w->node_up[t])
            continue;
        if (!w->running[t]) {
            last = -1;
            continue;
        }
        if (last >= 0 && t - last <= MAX_GAP)
            for (int64_t k = last; k < t; k++)
                w->observed[k] = true;
        last = t;
    }
    int64_t p = rnd() % 4 == 0 ? INT64_C(1) << 40 : 1000000000;
    w->offer = (struct rating_offer){ rr(0, p), rr(0, p / 8), rr(0, p * 4),
                                      rr(0, p * 2), rr(0, p / 50) };
    w->shape = (struct rating_shape){ rr(1, 64), rr(64, 262144), rr(1, 4096),
                                      rr(0, 8), rr(0, 32) };
    w->fee_bps = rnd() % 5 == 0 ? rr(0, 1) * 10000 : rr(0, 10000);
}

static void world_free(struct world *w)
{
    free(w->running);
    free(w->node_up);
    free(w->observed);
}

struct variant {
    bool lose;       /* drop some samples for good */
    bool lie;        /* claim time the VM did not run */
    int max_chunk;   /* samples cover 1..max_chunk seconds */
};

struct outcome {
    int64_t billable, claimed;
    int64_t oracle_billable, oracle_claimed;
    int64_t tenant, provider, fee; /* ledger totals per role */
    int64_t ledger_sum;            /* all entries of all transactions */
    int64_t txs;
};

/* Claims of the agent: running stretches (plus lies) cut into samples. */
static void make_samples(const struct world *w, const struct variant *v,
                         struct evlist *evs, bool *claimed_oracle)
{
    int64_t seq = 0;
    int64_t t = 0;
    while (t < w->T) {
        bool claim = w->running[t] || (v->lie && !w->node_up[t] && rnd() % 2);
        if (!claim) {
            t++;
            continue;
        }
        int64_t len = rr(1, v->max_chunk), end = t;
        while (end < w->T && end - t < len &&
               (w->running[end] || (v->lie && !w->node_up[end])))
            end++;
        if (end == t)
            end = t + 1;
        struct usage_sample s = { ++seq, t, end };
        int64_t deliver = end + rr(0, 300);
        bool lost = v->lose && rnd() % 10 == 0, arrives = true;
        if (!lost) {
            for (int64_t k = t; k < end; k++)
                claimed_oracle[k] = true;
            ev_push(evs, deliver, EV_SAMPLE, &s);
        } else if (rnd() % 2) {
            /* Lost, then retried later: still counts. */
            for (int64_t k = t; k < end; k++)
                claimed_oracle[k] = true;
            ev_push(evs, deliver + rr(1, 1500), EV_SAMPLE, &s);
        } else {
            arrives = false;
        }
        /* Duplicates and retries of delivered posts. */
        while (arrives && rnd() % 4 == 0)
            ev_push(evs, deliver + rr(0, 1500), EV_SAMPLE, &s);
        t = end;
    }
    if (v->lie) {
        /* Claims past the end and before the start: never observed. */
        struct usage_sample s = { ++seq, w->T, w->T + rr(1, 5000) };
        ev_push(evs, w->T, EV_SAMPLE, &s);
        struct usage_sample s2 = { ++seq, -rr(1, 5000), 0 };
        ev_push(evs, 0, EV_SAMPLE, &s2);
    }
}

static void accrue(const struct world *w, struct usage_vm *u, int64_t *billed,
                   struct outcome *o)
{
    int64_t total = usage_vm_billable(u);
    struct rating_split sp;
    assert_true(total >= *billed); /* billable seconds never shrink */
    assert_int_equal(rating_step(&w->offer, &w->shape, w->fee_bps, *billed,
                                 total, &sp), 0);
    assert_true(sp.tenant == sp.provider + sp.fee);
    assert_true(sp.provider >= 0 && sp.fee >= 0);
    *billed = total;
    struct ledger_tx *tx = ledger_tx_new("accrual", NULL);
    assert_int_equal(ledger_tx_add(tx, "tenant", -sp.tenant), 0);
    assert_int_equal(ledger_tx_add(tx, "provider", sp.provider), 0);
    assert_int_equal(ledger_tx_add(tx, LEDGER_HUB_FEES, sp.fee), 0);
    int c = ledger_tx_check(tx);
    if (sp.tenant == 0) {
        assert_int_equal(c, -ENODATA);
    } else {
        assert_int_equal(c, 0);
        o->txs++;
        for (size_t i = 0; i < tx->n; i++)
            o->ledger_sum += tx->e[i].amount;
        o->tenant += ledger_tx_amount(tx, "tenant");
        o->provider += ledger_tx_amount(tx, "provider");
        o->fee += ledger_tx_amount(tx, LEDGER_HUB_FEES);
        /* A reversal undoes it exactly. */
        struct ledger_tx *rev = ledger_tx_reverse(tx, "x", NULL);
        assert_int_equal(ledger_tx_check(rev), 0);
        for (size_t i = 0; i < tx->n; i++)
            assert_true(ledger_tx_amount(rev, tx->e[i].account) ==
                        -tx->e[i].amount);
        ledger_tx_free(rev);
    }
    ledger_tx_free(tx);
}

static void run_stream(const struct world *w, const struct variant *v,
                       struct outcome *o)
{
    struct evlist evs = { NULL, 0, 0 };
    bool *claimed = xcalloc((size_t)w->T, 1);
    memset(o, 0, sizeof(*o));
    for (int64_t t = 0; t < w->T; t += HEARTBEAT)
        if (w->node_up[t])
            ev_push(&evs, t, w->running[t] ? EV_OBSERVE : EV_STOPPED, NULL);
    make_samples(w, v, &evs, claimed);
    for (int k = (int)rr(0, 20); k > 0; k--)
        ev_push(&evs, rr(0, w->T + 3000), EV_ACCRUE, NULL);
    for (int k = (int)rr(0, 5); k > 0; k--)
        ev_push(&evs, rr(0, w->T + 3000), EV_SETTLE, NULL);
    qsort(evs.v, evs.n, sizeof(*evs.v), ev_cmp);

    struct usage_vm u = USAGE_VM_INIT;
    int64_t billed = 0;
    for (size_t i = 0; i < evs.n; i++) {
        struct ev *e = &evs.v[i];
        switch (e->kind) {
        case EV_OBSERVE: usage_vm_observe(&u, e->time, MAX_GAP); break;
        case EV_STOPPED: usage_vm_observe_stop(&u); break;
        case EV_SAMPLE: usage_vm_sample(&u, &e->s); break;
        case EV_ACCRUE: accrue(w, &u, &billed, o); break;
        case EV_SETTLE: {
            /* Persisting and reloading the state changes nothing. */
            json_t *j = usage_vm_to_json(&u);
            struct usage_vm back;
            assert_int_equal(usage_vm_from_json(j, &back), 0);
            json_decref(j);
            usage_vm_free(&u);
            u = back;
            usage_vm_settle(&u, e->time - SETTLE_LAG);
            break;
        }
        }
    }
    accrue(w, &u, &billed, o);
    o->billable = usage_vm_billable(&u);
    o->claimed = usage_vm_claimed(&u);
    for (int64_t t = 0; t < w->T; t++) {
        o->oracle_billable += claimed[t] && w->observed[t];
        o->oracle_claimed += claimed[t];
    }
    usage_vm_free(&u);
    free(claimed);
    free(evs.v);
}

static uint64_t seed_get(void)
{
    const char *s = getenv("FOG_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 10) : 20261125;
    if (!seed)
        seed = 1;
    return seed;
}

static int streams(void)
{
    const char *s = getenv("FOG_STREAMS");
    int n = s ? atoi(s) : 2000;
    return n > 0 ? n : 2000;
}

/* Check one stream; on failure say which seed reproduces it. */
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            fail_msg("stream %d (FOG_SEED=%" PRIu64 "): %s", i, seed, #cond);  \
    } while (0)

static void totals_are_independent_of_chunking_duplicates_and_order(void **state)
{
    uint64_t seed = seed_get();
    rng_state = seed;
    int n = streams();
    for (int i = 0; i < n; i++) {
        struct world w;
        world_make(&w);
        struct variant a = { false, false, (int)rr(1, 900) };
        struct variant b = { false, false, (int)rr(1, 900) };
        struct outcome oa, ob;
        run_stream(&w, &a, &oa);
        run_stream(&w, &b, &ob);
        CHECK(oa.billable == oa.oracle_billable);
        CHECK(oa.claimed == oa.oracle_claimed);
        CHECK(ob.billable == oa.billable);
        CHECK(ob.tenant == oa.tenant);
        CHECK(ob.provider == oa.provider);
        CHECK(ob.fee == oa.fee);
        /* Totals equal one charge over all the seconds. */
        int64_t c, f;
        CHECK(rating_charge(&w.offer, &w.shape, oa.billable, &c) == 0);
        CHECK(rating_fee(c, w.fee_bps, &f) == 0);
        CHECK(-oa.tenant == c);
        CHECK(oa.fee == f);
        world_free(&w);
    }
}

static void ledger_sums_to_zero_and_tenant_pays_provider_plus_fee(void **state)
{
    uint64_t seed = seed_get() + 1;
    rng_state = seed;
    int n = streams();
    int64_t txs = 0;
    for (int i = 0; i < n; i++) {
        struct world w;
        world_make(&w);
        struct variant v = { rnd() % 2, rnd() % 2, (int)rr(1, 900) };
        struct outcome o;
        run_stream(&w, &v, &o);
        CHECK(o.ledger_sum == 0);
        CHECK(-o.tenant == o.provider + o.fee);
        CHECK(o.tenant <= 0 && o.provider >= 0 && o.fee >= 0);
        txs += o.txs;
        world_free(&w);
    }
    assert_true(txs > n); /* the streams really posted */
}

static void gaps_count_only_what_arrives_and_retries_count_once(void **state)
{
    uint64_t seed = seed_get() + 2;
    rng_state = seed;
    int n = streams();
    for (int i = 0; i < n; i++) {
        struct world w;
        world_make(&w);
        struct variant v = { true, false, (int)rr(1, 900) };
        struct outcome o;
        run_stream(&w, &v, &o);
        CHECK(o.billable == o.oracle_billable);
        CHECK(o.claimed == o.oracle_claimed);
        world_free(&w);
    }
}

static void lying_provider_is_capped_to_observed_time(void **state)
{
    uint64_t seed = seed_get() + 3;
    rng_state = seed;
    int n = streams();
    int64_t capped_total = 0;
    for (int i = 0; i < n; i++) {
        struct world w;
        world_make(&w);
        struct variant honest = { false, false, (int)rr(1, 900) };
        struct variant liar = { false, true, (int)rr(1, 900) };
        struct outcome oh, ol;
        run_stream(&w, &honest, &oh);
        run_stream(&w, &liar, &ol);
        int64_t observed = 0;
        for (int64_t t = 0; t < w.T; t++)
            observed += w.observed[t];
        CHECK(ol.billable == ol.oracle_billable);
        CHECK(ol.billable == oh.billable);
        CHECK(ol.billable <= observed);
        CHECK(ol.tenant == oh.tenant);
        CHECK(ol.claimed > ol.billable); /* the lies were seen and capped */
        capped_total += ol.claimed - ol.billable;
        world_free(&w);
    }
    assert_true(capped_total > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(totals_are_independent_of_chunking_duplicates_and_order),
        cmocka_unit_test(ledger_sums_to_zero_and_tenant_pays_provider_plus_fee),
        cmocka_unit_test(gaps_count_only_what_arrives_and_retries_count_once),
        cmocka_unit_test(lying_provider_is_capped_to_observed_time),
    };
    printf("billing properties: FOG_SEED=%" PRIu64 ", %d streams per test\n",
           seed_get(), streams());
    return cmocka_run_group_tests(tests, NULL, NULL);
}
