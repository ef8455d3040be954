/* Placement and node health. Placement is filter then weigh: the fleet
 * (every approved, reachable node with its free capacity, offer, region,
 * labels and policy) is loaded into arrays and cached, the pure
 * place_decide() (placement.c) removes the nodes that fail a filter and
 * picks the best of the rest by the hub's weights (a request like an
 * earlier one on the same fleet through a kept decision, place_memo_*),
 * and the placing transaction checks the chosen node again under its lock
 * (capacity, KVM, policy, and the locked deal's price against the VM's
 * cap). A VM no node passes stays pending with the count of nodes each
 * filter removed. A drained node takes nothing new. Each placement bumps
 * the VM's placement generation, which fences domains of earlier
 * placements on their nodes. scheduler_run places in batches, each one
 * transaction on sqlite. */
#include "controller/scheduler.h"
#include "controller/edge.h"
#include "controller/pubzone.h"

#include "api/agentproto.h"
#include "billing/money.h"
#include "common/jsonutil.h"
#include "common/jsonw.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/gpus.h"
#include "controller/handlers.h"
#include "controller/netalloc.h"
#include "controller/netrecords.h"
#include "controller/outage.h"
#include "controller/placement.h"
#include "controller/availwin.h"
#include "controller/benchmark.h"
#include "controller/vmhealth.h"
#include "controller/bsched.h"
#include "controller/reputation.h"
#include "controller/restore.h"
#include "controller/store_backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* What every live VM placed on node NODE holds, as u.vcpus, u.mem and
 * u.disk: one pass over the node's VMs (a FROM item). */
#define USED_SQL(NODE)                                                         \
    "(SELECT COALESCE(SUM(v.vcpus), 0) AS vcpus, COALESCE(SUM(v.memory_mib), " \
    "0) AS mem, COALESCE(SUM(v.disk_gib), 0) AS disk FROM vms v WHERE "        \
    "v.node_id = " NODE " AND v.deleted_at IS NULL) u"

/* Free capacity of node n = its capacity minus what USED_SQL counted. */
#define FREE_SQL(res, used) "(n." res " - u." used ")"

/* The node still fits under its lock ($1 online since, $2 TCG allowed,
 * $3..$5 vCPUs, MiB, GiB), and under the vCPUs its last verified
 * benchmark backs (placement.h PF_BENCHMARK); u is USED_SQL's. */
#define FITS_SQL                                                               \
    "n.approved = 1 AND n.removed_at IS NULL AND n.drained = 0 AND "           \
    "n.last_seen >= $1 AND "                                                   \
    "(n.kvm = 1 OR $2 = 1) AND " FREE_SQL("vcpus", "vcpus") " >= $3 AND "      \
    FREE_SQL("memory_mib", "mem") " >= $4 AND " FREE_SQL("disk_gib", "disk")   \
    " >= $5 AND NOT EXISTS (SELECT 1 FROM node_trust vt WHERE vt.node_id = "   \
    "n.id AND vt.bench_vcpus IS NOT NULL AND n.vcpus - "                       \
    FREE_SQL("vcpus", "vcpus") " + $3 > vt.bench_vcpus)"

/* Whether policy entry p of node n accepts a VM from template TMPL with
 * image name IMG and catalog image IMGID (SQL expressions): by content,
 * never by name alone. An entry that named a catalog image (or a template
 * whose image is one) matches a VM whose image has the same sha256 and is
 * public or the node owner's own, so a tenant's private image under a
 * listed name never does; an entry that named no catalog image matches
 * only that node-local image. A template entry also needs the VM to be
 * that template (not one whose image or user data was replaced). */
#define POLICY_MATCH_SQL(TMPL, IMG, IMGID)                                     \
    "(p.kind = 'image' OR (p.kind = 'template' AND p.name = " TMPL ")) AND "  \
    "((p.digest IS NOT NULL AND p.digest = (SELECT i.sha256 FROM images i "    \
    "WHERE i.id = " IMGID " AND (i.visibility = 'public' OR i.account_id = "  \
    "n.account_id))) OR (p.digest IS NULL AND " IMGID " IS NULL AND "          \
    "p.local_image = " IMG "))"

/* Every node's policy entries: its own, and the members of the hub's
 * verified pool for a node whose policy names the pool. */
#define NODE_RULES_SQL                                                         \
    "(SELECT node_id, kind, name, digest, local_image FROM node_policy "       \
    "UNION ALL SELECT pn.id, pm.kind, pm.name, pm.digest, CAST(NULL AS TEXT) " \
    "FROM nodes pn JOIN pool_members pm ON pn.policy_pool = 'verified')"

/* A node without a policy accepts every VM; one with a policy only VMs
 * its entries match: template ($6), image name ($7), catalog id ($8). */
#define POLICY_SQL                                                             \
    "(NOT EXISTS (SELECT 1 FROM " NODE_RULES_SQL " p WHERE p.node_id = n.id) " \
    "AND NOT EXISTS (SELECT 1 FROM nodes pp WHERE pp.id = n.id AND "           \
    "pp.policy_pool IS NOT NULL) OR EXISTS (SELECT 1 FROM " NODE_RULES_SQL    \
    " p WHERE p.node_id = n.id AND " POLICY_MATCH_SQL("$6", "$7", "$8") "))"

/* ---- the hub's settings ---- */

int64_t scheduler_default_cap(const struct app *a)
{
    int64_t v;
    const char *t = a->cfg.default_max_price;
    if (!t || !*t || streq(t, "none") || money_parse(t, &v) < 0 || v < 0)
        return -1;
    return v;
}

static struct place_weights weights(const struct app *a)
{
    return (struct place_weights){ (double)a->cfg.weight_price,
                                   (double)a->cfg.weight_spread,
                                   (double)a->cfg.weight_reputation,
                                   (double)a->cfg.weight_benchmark };
}

/* ---- the fleet: candidate rows for place_decide ---- */

/* A loaded fleet, shared: the store's cache holds one reference and each
 * placing call another while it decides on it. Strings are immutable once
 * loaded; free capacity changes (fleet_take) under fleet_lock. */
/* Strings of a fleet, in blocks that never move. */
struct strpool {
    struct strpool_block *head;
};
struct strpool_block {
    struct strpool_block *next;
    size_t used, size;
    char data[];
};

/* A copy of s (NULL stays NULL) that lives as long as the pool. */
static const char *strpool_add(struct strpool *p, const char *s)
{
    if (!s)
        return NULL;
    size_t len = strlen(s) + 1;
    struct strpool_block *b = p->head;
    if (!b || b->size - b->used < len) {
        size_t size = len > 65536 ? len : 65536;
        b = xmalloc(sizeof(*b) + size);
        b->next = p->head;
        b->used = 0;
        b->size = size;
        p->head = b;
    }
    char *d = b->data + b->used;
    memcpy(d, s, len);
    b->used += len;
    return d;
}

static void strpool_free(struct strpool *p)
{
    while (p->head) {
        struct strpool_block *b = p->head;
        p->head = b->next;
        free(b);
    }
}

struct fleet {
    struct strpool strings;          /* own every string below */
    const char **names;              /* nodes' names */
    size_t cap, n_lab, cap_lab, n_rul, cap_rul;
    size_t *lab_at, *rul_at;         /* a node's first label, rule */
    struct place_node *nodes;
    const char **lab;                /* nodes' labels, grouped by node */
    struct place_rule *rul;          /* nodes' policy rules, grouped */
    size_t *slot, n_slot;            /* node index + 1 by id hash (0:
                                        empty), n_slot a power of two */
    int64_t *port_min, *port_max;    /* nodes' host port ranges */
    /* Decisions kept for the requests seen on this fleet, each with how
     * far it has read the log of nodes whose capacity changed since. */
    struct fleet_memo {
        struct place_memo *m;
        size_t at;
        uint64_t sig;                /* fleet_policy_sig() of its request */
    } *memos;
    /* Nodes alike in what their policies accept, one standing for each
     * kind (fleet_policy_groups); pol_sig false when there were too many
     * kinds to tell requests apart by. */
    size_t *pol_rep, n_pol;
    bool pol_sig;
    size_t n_memos, cap_memos;
    size_t *log, n_log, cap_log;
    size_t n;
    unsigned refs;
    uint64_t seq;                    /* fleet_seq when loading began */
    uint64_t gen;                    /* fleet_gen when loading began */
    int64_t at_ms;                   /* mono_ms() when loading began */
    bool used;                       /* a decision took it since */
};

/* The cache of the fleet. Correctness never rests on it: the placing
 * transaction checks the chosen node again under its lock (a stale choice
 * is -EAGAIN and a fresh load), and a VM is left pending only on a fleet
 * loaded after its placement began. The cache only saves loading every
 * node and summing every VM for each placement. It is dropped when a
 * write that changes what placement sees of a node announces itself
 * (scheduler_fleet_changed), and its age is bounded, which bounds how
 * long capacity freed elsewhere, a node that came back, or another
 * replica's change goes unseen by the weighing:
 * - the reconciler loads a fleet that decisions used again once it is
 *   FLEET_REFRESH_MS old (scheduler_fleet_refresh), each tick, outside
 *   any transaction: a load takes some 20 ms at 10,000 nodes, and a create
 *   that found the fleet expired loaded it inside its write transaction,
 *   every writer waiting, once a second under a stream of creates;
 * - a decision loads it itself once it is FLEET_MAX_AGE_MS old (the
 *   reconciler stalled, or nothing used it for a while). */
#define FLEET_REFRESH_MS 500
#define FLEET_MAX_AGE_MS 3000
static _Atomic uint64_t fleet_gen, fleet_seq;
/* Guards the store slots holding caches, refs and free capacity. Never
 * held across a store call; taken after the store's lock when both. */
static pthread_mutex_t fleet_lock = PTHREAD_MUTEX_INITIALIZER;

void scheduler_fleet_changed(void)
{
    atomic_fetch_add(&fleet_gen, 1);
}

static void fleet_clear(struct fleet *f)
{
    strpool_free(&f->strings);
    free(f->names);
    free(f->lab_at);
    free(f->rul_at);
    free(f->nodes);
    free(f->lab);
    free(f->rul);
    free(f->slot);
    free(f->port_min);
    free(f->port_max);
    free(f->pol_rep);
    for (size_t i = 0; i < f->n_memos; i++)
        place_memo_free(f->memos[i].m);
    free(f->memos);
    free(f->log);
}

/* Drop one reference (fleet_lock held). */
static void fleet_unref_locked(struct fleet *f)
{
    if (f && --f->refs == 0) {
        fleet_clear(f);
        free(f);
    }
}

static void fleet_put(struct fleet *f)
{
    pthread_mutex_lock(&fleet_lock);
    fleet_unref_locked(f);
    pthread_mutex_unlock(&fleet_lock);
}

/* The store's slot closing: its cached fleet goes. */
static void fleet_slot_free(void *p)
{
    fleet_put(p);
}

static size_t id_hash(const char *s)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return (size_t)(h ^ h >> 29);
}

/* f's nodes by id: open addressing, at most half full. */
static void fleet_index(struct fleet *f)
{
    f->n_slot = 16;
    while (f->n_slot < 2 * f->n)
        f->n_slot *= 2;
    f->slot = xcalloc(f->n_slot, sizeof(*f->slot));
    for (size_t i = 0; i < f->n; i++) {
        size_t k = id_hash(f->nodes[i].id) & (f->n_slot - 1);
        while (f->slot[k])
            k = (k + 1) & (f->n_slot - 1);
        f->slot[k] = i + 1;
    }
}

/* Index of node `id`, or -1. */
static ssize_t fleet_find(const struct fleet *f, const char *id)
{
    if (!id || !f->slot)
        return -1;
    for (size_t k = id_hash(id) & (f->n_slot - 1); f->slot[k];
         k = (k + 1) & (f->n_slot - 1))
        if (streq(f->nodes[f->slot[k] - 1].id, id))
            return (ssize_t)(f->slot[k] - 1);
    return -1;
}

/* Whether a node with availability windows `windows` (NULL: none) in
 * time zone offset tz_min takes new VMs at time now. Windows that no
 * longer parse close the node rather than open it. */
static bool node_window_open(const char *windows, int tz_min, int64_t now)
{
    struct availwin w[AVAILWIN_MAX];
    size_t n;
    if (availwin_list_parse(windows, w, &n) < 0)
        return false;
    return availwin_open(w, n, now, tz_min);
}

struct fleet_loading {
    struct fleet *f;
    int64_t now;
};

/* One node row into the fleet. */
static void fleet_add_node(struct store_row *row, void *data)
{
    struct fleet_loading *l = data;
    struct fleet *f = l->f;
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 256;
        f->nodes = xrealloc(f->nodes, f->cap * sizeof(*f->nodes));
        f->names = xrealloc(f->names, f->cap * sizeof(*f->names));
        f->port_min = xrealloc(f->port_min, f->cap * sizeof(*f->port_min));
        f->port_max = xrealloc(f->port_max, f->cap * sizeof(*f->port_max));
    }
    size_t i = f->n++;
    struct place_node *p = &f->nodes[i];
    struct strpool *sp = &f->strings;
    memset(p, 0, sizeof(*p));
    p->id = strpool_add(sp, store_row_str(row, "id"));
    f->names[i] = strpool_add(sp, store_row_str(row, "name"));
    p->account_id = strpool_add(sp, store_row_str(row, "account_id"));
    p->kvm = store_row_int(row, "kvm", 0) != 0;
    const char *region = store_row_str(row, "region");
    p->region = strpool_add(sp, region ? region : "");
    p->vcpus = p->free_vcpus = store_row_int(row, "vcpus", 0);
    p->mem_mib = p->free_mem_mib = store_row_int(row, "memory_mib", 0);
    p->free_disk_gib = store_row_int(row, "disk_gib", 0);
    p->drained = store_row_int(row, "drained", 0) != 0;
    p->closed = !node_window_open(store_row_str(row, "avail_windows"),
                                  (int)store_row_int(row, "avail_tz_min", 0),
                                  l->now);
    p->restricted = store_row_str(row, "policy_pool") != NULL;
    /* The hub's default offer and an unknown reputation until the node's
     * own are read (fleet_add_offer, fleet_add_trust). */
    p->offer = billing_config()->default_offer;
    p->reputation = -1;
    f->port_min[i] = store_row_int(row, "port_min", 0);
    f->port_max[i] = store_row_int(row, "port_max", 0);
}

/* A node's offer. */
static void fleet_add_offer(struct store_row *row, void *data)
{
    struct fleet *f = ((struct fleet_loading *)data)->f;
    ssize_t k = fleet_find(f, store_row_str(row, "node_id"));
    if (k >= 0)
        f->nodes[k].offer = (struct rating_offer){
            store_row_int(row, "vcpu_hour", 0),
            store_row_int(row, "mem_gib_hour", 0),
            store_row_int(row, "disk_gib_month", 0),
            store_row_int(row, "gpu_hour", 0),
            store_row_int(row, "port_hour", 0) };
}

/* A node's reputation (percent as the hub observed it) and its last
 * verified benchmark: the vCPUs its score backs and benchmark_pct. */
static void fleet_add_trust(struct store_row *row, void *data)
{
    struct fleet *f = ((struct fleet_loading *)data)->f;
    ssize_t k = fleet_find(f, store_row_str(row, "node_id"));
    if (k < 0)
        return;
    struct place_node *p = &f->nodes[k];
    struct store_value v = store_row_get(row, "score");
    if (v.type == STORE_INT)
        p->reputation = (double)v.i / 100.0;
    v = store_row_get(row, "bench_vcpus");
    p->verified = v.type == STORE_INT;
    p->verified_vcpus = p->verified ? v.i : 0;
    p->bench = (double)store_row_int(row, "bench_pct", 0) / 100.0;
}

/* What a node's live VMs hold, off its free capacity. */
static void fleet_add_usage(struct store_row *row, void *data)
{
    struct fleet *f = ((struct fleet_loading *)data)->f;
    ssize_t k = fleet_find(f, store_row_str(row, "node_id"));
    if (k < 0)
        return;
    f->nodes[k].free_vcpus -= store_row_int(row, "vcpus", 0);
    f->nodes[k].free_mem_mib -= store_row_int(row, "mem", 0);
    f->nodes[k].free_disk_gib -= store_row_int(row, "disk", 0);
}

/* One "key=value" label of a node (they come grouped by node). */
static void fleet_add_label(struct store_row *row, void *data)
{
    struct fleet *f = ((struct fleet_loading *)data)->f;
    ssize_t k = fleet_find(f, store_row_str(row, "node_id"));
    if (k < 0)
        return;
    if (f->n_lab == f->cap_lab) {
        f->cap_lab = f->cap_lab ? 2 * f->cap_lab : 256;
        f->lab = xrealloc(f->lab, f->cap_lab * sizeof(*f->lab));
    }
    if (!f->nodes[k].n_labels)
        f->lab_at[k] = f->n_lab;
    f->nodes[k].n_labels++;
    f->lab[f->n_lab++] = strpool_add(&f->strings, store_row_str(row, "kv"));
}

/* One policy rule of a node (they come grouped by node). */
static void fleet_add_rule(struct store_row *row, void *data)
{
    struct fleet *f = ((struct fleet_loading *)data)->f;
    ssize_t k = fleet_find(f, store_row_str(row, "node_id"));
    if (k < 0)
        return;
    if (f->n_rul == f->cap_rul) {
        f->cap_rul = f->cap_rul ? 2 * f->cap_rul : 256;
        f->rul = xrealloc(f->rul, f->cap_rul * sizeof(*f->rul));
    }
    if (!f->nodes[k].n_rules)
        f->rul_at[k] = f->n_rul;
    f->nodes[k].n_rules++;
    struct strpool *sp = &f->strings;
    f->rul[f->n_rul++] = (struct place_rule){
        streq(store_row_str(row, "kind"), "template"),
        strpool_add(sp, store_row_str(row, "name")),
        strpool_add(sp, store_row_str(row, "digest")),
        strpool_add(sp, store_row_str(row, "local_image")) };
}

/* At most this many kinds of node policy tell requests apart. */
#define FLEET_POLICY_GROUPS 64

static bool same_text(const char *a, const char *b)
{
    return a == b || (a && b && streq(a, b));
}

/* Whether nodes a and b accept the same VMs (place_policy_ok() says the
 * same of every request): both restricted or not, the same rules and,
 * where a rule names a catalog image (whose owner counts), one owner. */
static bool same_policy(const struct place_node *a, const struct place_node *b)
{
    if (a->restricted != b->restricted || a->n_rules != b->n_rules)
        return false;
    bool digest = false;
    for (size_t i = 0; i < a->n_rules; i++) {
        const struct place_rule *x = &a->rules[i], *y = &b->rules[i];
        if (x->is_template != y->is_template || !same_text(x->name, y->name) ||
            !same_text(x->digest, y->digest) ||
            !same_text(x->local_image, y->local_image))
            return false;
        digest = digest || x->digest;
    }
    return !digest || same_text(a->account_id, b->account_id);
}

/* The kinds of policy among f's nodes, one node standing for each (a
 * node without a policy accepts every VM and stands for none). */
static void fleet_policy_groups(struct fleet *f)
{
    f->pol_rep = xcalloc(FLEET_POLICY_GROUPS, sizeof(*f->pol_rep));
    f->pol_sig = true;
    for (size_t k = 0; k < f->n && f->pol_sig; k++) {
        const struct place_node *p = &f->nodes[k];
        if (p->n_rules == 0 && !p->restricted)
            continue;
        size_t g = 0;
        while (g < f->n_pol && !same_policy(&f->nodes[f->pol_rep[g]], p))
            g++;
        if (g < f->n_pol)
            continue;
        if (f->n_pol == FLEET_POLICY_GROUPS)
            f->pol_sig = false;
        else
            f->pol_rep[f->n_pol++] = k;
    }
}

/* Which kinds of node policy accept r, one bit each: requests with the
 * same bits pass the policy filter on the same nodes of f. */
static uint64_t fleet_policy_sig(const struct fleet *f,
                                 const struct place_req *r)
{
    uint64_t sig = 0;
    for (size_t g = 0; g < f->n_pol; g++)
        if (place_policy_ok(&f->nodes[f->pol_rep[g]], r))
            sig |= UINT64_C(1) << g;
    return sig;
}

/* Every approved, reachable node, oldest first (the tie-break), with free
 * capacity, its offer (the hub's default offer when it has none),
 * reputation, region, labels and policy rules: six queries whatever the
 * fleet's size, each a scan of one table (or index) read row by row into
 * arrays (no JSON), matched to its node by id through a hash in memory,
 * in one snapshot of the store. */
static int fleet_load(struct app *a, struct fleet *f)
{
    struct fleet_loading l = { f, now_s() };
    /* One snapshot: the store's transaction when one is open (a batch, a
     * request), else a read-only one of its own. */
    bool own = !store_in_tx(a->store);
    int e = own ? store_tx_begin_read(a->store) : 0;
    if (e < 0)
        return e;
    e = store_query_each(a->store, fleet_add_node, &l,
                         "SELECT id, name, account_id, kvm, region, vcpus, "
                         "memory_mib, disk_gib, drained, avail_windows, "
                         "avail_tz_min, policy_pool, port_min, port_max FROM "
                         "nodes WHERE approved = 1 AND removed_at IS NULL AND "
                         "last_seen >= $1 ORDER BY created_at, id", "i",
                         now_s() - 3 * a->cfg.heartbeat_s);
    size_t n = f->n, i;
    if (e >= 0) {
        /* The rest is matched by node id. */
        fleet_index(f);
        f->lab_at = xcalloc(n + 1, sizeof(*f->lab_at));
        f->rul_at = xcalloc(n + 1, sizeof(*f->rul_at));
    }
    /* Labels and rules come sorted by node: each node's are one run. */
    if (e < 0 ||
        (e = store_query_each(a->store, fleet_add_offer, &l, "SELECT "
                              "node_id, vcpu_hour, mem_gib_hour, "
                              "disk_gib_month, gpu_hour, port_hour FROM "
                              "node_offers", "")) < 0 ||
        (e = store_query_each(a->store, fleet_add_trust, &l, "SELECT "
                              "node_id, score, bench_vcpus, bench_pct FROM "
                              "node_trust", "")) < 0 ||
        (e = store_query_each(a->store, fleet_add_usage, &l, "SELECT "
                              "node_id, SUM(vcpus) AS vcpus, SUM(memory_mib) "
                              "AS mem, SUM(disk_gib) AS disk FROM vms WHERE "
                              "node_id IS NOT NULL AND deleted_at IS NULL "
                              "GROUP BY node_id", "")) < 0 ||
        (e = store_query_each(a->store, fleet_add_label, &l, "SELECT "
                              "node_id, key || '=' || value AS kv FROM "
                              "node_labels ORDER BY node_id, key", "")) < 0 ||
        (e = store_query_each(a->store, fleet_add_rule, &l, "SELECT node_id, "
                              "kind, name, digest, local_image FROM "
                              NODE_RULES_SQL " r ORDER BY node_id", "")) < 0) {
        if (own)
            store_tx_rollback(a->store);
        fleet_clear(f);
        return e;
    }
    if (own)
        store_tx_rollback(a->store);
    for (i = 0; i < n; i++) {
        if (f->nodes[i].n_labels)
            f->nodes[i].labels = &f->lab[f->lab_at[i]];
        if (f->nodes[i].n_rules)
            f->nodes[i].rules = &f->rul[f->rul_at[i]];
    }
    fleet_policy_groups(f);
    return 0;
}

/* A reference to the store's fleet: the cached one when it is current and
 * was loaded after load number `after` began (0: any), else a new load,
 * which becomes the cached one. Release with fleet_put(). 0 or -errno. */
static int fleet_get(struct app *a, uint64_t after, struct fleet **ret)
{
    pthread_mutex_lock(&fleet_lock);
    struct fleet **slot = (struct fleet **)store_slot(a->store,
                                                      fleet_slot_free);
    struct fleet *f = *slot;
    if (f && f->seq > after && f->gen == atomic_load(&fleet_gen) &&
        mono_ms() - f->at_ms < FLEET_MAX_AGE_MS) {
        f->refs++;
        f->used = true;
        pthread_mutex_unlock(&fleet_lock);
        *ret = f;
        return 0;
    }
    pthread_mutex_unlock(&fleet_lock);
    f = xcalloc(1, sizeof(*f));
    f->gen = atomic_load(&fleet_gen);
    f->seq = atomic_fetch_add(&fleet_seq, 1) + 1;
    f->at_ms = mono_ms();
    int e = fleet_load(a, f);
    if (e < 0) {
        free(f);
        return e;
    }
    f->refs = 2;
    f->used = true;
    pthread_mutex_lock(&fleet_lock);
    /* Another load may have finished first: keep the newer one. */
    if (!*slot || (*slot)->seq < f->seq) {
        fleet_unref_locked(*slot);
        *slot = f;
    } else {
        f->refs--;
    }
    pthread_mutex_unlock(&fleet_lock);
    *ret = f;
    return 0;
}

/* fleet_get() with this thread's reads sent to the store's read-only
 * connections, outside any transaction: with sqlite, a load read through
 * the writer's connection held the store's write lock throughout. */
static int fleet_get_reading(struct app *a, uint64_t after, struct fleet **ret)
{
    bool routed = store_reads_routed(a->store);
    store_route_reads(a->store, true);
    int e = fleet_get(a, after, ret);
    store_route_reads(a->store, routed);
    return e;
}

/* A fleet loaded after load `after` began cached (0: any current one),
 * loaded now from a read-only snapshot when due; nothing inside a
 * transaction, where the load would make every writer wait. */
static void fleet_warm(struct app *a, uint64_t after)
{
    struct fleet *f;
    if (!store_in_tx(a->store) && fleet_get_reading(a, after, &f) == 0)
        fleet_put(f);
}

void scheduler_fleet_refresh(struct app *a)
{
    pthread_mutex_lock(&fleet_lock);
    struct fleet *f = *(struct fleet **)store_slot(a->store, fleet_slot_free);
    bool due = f && f->used && mono_ms() - f->at_ms >= FLEET_REFRESH_MS;
    uint64_t seq = f ? f->seq : 0;
    pthread_mutex_unlock(&fleet_lock);
    if (!due || store_in_tx(a->store))
        return;
    /* A load newer than the cached one, which becomes the cached one;
     * not counted as used, so an idle hub stops loading after one. */
    if (fleet_get_reading(a, seq, &f) < 0)
        return;
    pthread_mutex_lock(&fleet_lock);
    f->used = false;
    fleet_unref_locked(f);
    pthread_mutex_unlock(&fleet_lock);
}

/* place_decide() on f, its free capacity steady meanwhile. */

/* For a VM asking for GPUs: each node's free offered GPUs of its model
 * and that model's price there, into nodes (a copy of f's). 0 or -errno. */
static int fleet_gpus(struct app *a, const struct fleet *f,
                      struct place_node *nodes, const struct place_req *r)
{
    for (size_t k = 0; k < f->n; k++) {
        nodes[k].gpu_free = 0;
        nodes[k].gpu_hour_model = -1;
    }
    json_auto_t *rows = NULL;
    int e = store_query(a->store, &rows,
                        "SELECT g.node_id, COUNT(*) AS free, (SELECT "
                        "o.gpu_models FROM node_offers o WHERE o.node_id = "
                        "g.node_id) AS models FROM gpus g WHERE g.model = $1 "
                        "AND g.offered = 1 AND g.usable = 1 AND g.present = 1 "
                        "AND g.vm_id IS NULL GROUP BY g.node_id", "s",
                        r->gpu_model);
    if (e < 0)
        return e;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        ssize_t k = fleet_find(f, json_str(row, "node_id"));
        if (k < 0)
            continue;
        nodes[k].gpu_free = json_int(row, "free", 0);
        json_auto_t *m = json_loads(json_str(row, "models") ?
                                    json_str(row, "models") : "{}", 0, NULL);
        int64_t v;
        const char *p = json_string_value(json_object_get(m, r->gpu_model));
        if (p && money_parse(p, &v) == 0 && v >= 0)
            nodes[k].gpu_hour_model = v;
    }
    return 0;
}

/* At most this many decisions are kept per fleet, and no more than
 * FLEET_MEMO_BYTES of them (some 700 KB each at 10,000 nodes). */
#define FLEET_MEMOS 64
#define FLEET_MEMO_BYTES (32 << 20)

/* The decision kept on f for r, brought up to date with the nodes that
 * changed since it was last asked; a new one when there is room; NULL
 * when there is none (fleet_lock held). Requests that differ only in
 * template or image share one when the fleet's policies accept or refuse
 * them alike (on a fleet without policies, always). */
static struct place_memo *fleet_memo(struct fleet *f, const struct place_req *r,
                                     const struct place_weights *w)
{
    uint64_t sig = f->pol_sig ? fleet_policy_sig(f, r) : 0;
    for (size_t i = 0; i < f->n_memos; i++) {
        struct fleet_memo *fm = &f->memos[i];
        if (f->pol_sig ? fm->sig != sig || !place_memo_is(fm->m, r, w, true)
                       : !place_memo_is(fm->m, r, w, false))
            continue;
        for (; fm->at < f->n_log; fm->at++)
            place_memo_node_changed(fm->m, f->nodes, f->log[fm->at]);
        return fm->m;
    }
    size_t per = place_memo_bytes(f->n);
    if (f->n_memos >= FLEET_MEMOS || (f->n_memos + 1) * per > FLEET_MEMO_BYTES)
        return NULL;
    if (f->n_memos == f->cap_memos) {
        f->cap_memos = f->cap_memos ? 2 * f->cap_memos : 8;
        f->memos = xrealloc(f->memos, f->cap_memos * sizeof(*f->memos));
    }
    struct fleet_memo *fm = &f->memos[f->n_memos++];
    fm->m = place_memo_new(r, w, f->nodes, f->n);
    fm->at = f->n_log;
    fm->sig = sig;
    return fm->m;
}

static void ask_block(struct sched_ask *q, const struct fleet *f);

/* place_decide on the fleet, with q's port filter worked out on it
 * (ask_block()). The cached fleet knows nothing of GPUs: a VM
 * asking for some is decided on a private copy of the nodes with their
 * free GPUs of its model read from the store. 0 or -errno. */
static int fleet_decide(struct app *a, struct fleet *f,
                        struct sched_ask *q,
                        const struct place_weights *w,
                        struct place_result *ret)
{
    const struct place_req *r = &q->req;
    ask_block(q, f);
    if (r->gpu_count <= 0) {
        pthread_mutex_lock(&fleet_lock);
        /* A request like one decided on f before costs the nodes that
         * changed since; others a pass over the fleet. */
        struct place_memo *m = place_memo_fits(r) ? fleet_memo(f, r, w)
                                                  : NULL;
        if (m) {
            /* Its port and anti-affinity lists as node indexes (ids
             * not in the fleet leave nothing out); the port list as
             * ask_block() worked it out on f just now, when it did. */
            bool at = q->wanted != NULL;
            size_t np = at ? 0 : r->n_port_blocked, n_p = 0, n_a = 0;
            _cleanup_free_ size_t *idx = xcalloc(np + r->n_avoid + 1,
                                                 sizeof(*idx));
            size_t *av = idx + np;
            for (size_t i = 0; i < np; i++) {
                ssize_t k = fleet_find(f, r->port_blocked[i]);
                if (k >= 0)
                    idx[n_p++] = (size_t)k;
            }
            for (size_t i = 0; i < r->n_avoid; i++) {
                ssize_t k = fleet_find(f, r->avoid[i]);
                if (k >= 0)
                    av[n_a++] = (size_t)k;
            }
            struct place_except x = { at ? q->bl_at : idx, av,
                                      at ? q->n_bl_at : n_p, n_a };
            place_memo_result(m, &x, ret);
        } else {
            place_decide(r, f->nodes, f->n, w, ret);
        }
        pthread_mutex_unlock(&fleet_lock);
        return 0;
    }
    _cleanup_free_ struct place_node *nodes = xcalloc(f->n + 1,
                                                      sizeof(*nodes));
    pthread_mutex_lock(&fleet_lock);
    memcpy(nodes, f->nodes, f->n * sizeof(*nodes));
    pthread_mutex_unlock(&fleet_lock);
    int e = fleet_gpus(a, f, nodes, r);
    if (e == 0)
        place_decide(r, nodes, f->n, w, ret);
    return e;
}

/* The VM placed: its resources leave the node's free capacity. */
static void fleet_take(struct fleet *f, const char *node_id,
                       const struct place_req *r)
{
    pthread_mutex_lock(&fleet_lock);
    ssize_t k = fleet_find(f, node_id);
    if (k >= 0) {
        f->nodes[k].free_vcpus -= r->vcpus;
        f->nodes[k].free_mem_mib -= r->mem_mib;
        f->nodes[k].free_disk_gib -= r->disk_gib;
        if (f->n_log == f->cap_log) {
            f->cap_log = f->cap_log ? 2 * f->cap_log : 256;
            f->log = xrealloc(f->log, f->cap_log * sizeof(*f->log));
        }
        f->log[f->n_log++] = (size_t)k;
    }
    pthread_mutex_unlock(&fleet_lock);
}

/* End a placing transaction: rolled back when r <= 0 (r returned), else
 * committed, the VM's share taken from the chosen node in the cached
 * fleet, and the nodes (the one it left too, when `from`) and the VM's
 * networks told. Releases f. 1 placed, r, or -errno of the commit. */
/* The placements of scheduler_run's open batch (NULL when none): the
 * nodes and networks they touch are told once each, at its end, inside
 * its transaction (the wake-ups wait for the commit). */
struct batch {
    json_t *vms, *nodes;          /* placed VM ids; {node id: [its VMs]} */
    /* Placements of VMs without a deal kept to be written at its end:
     * their deals (one multi-row INSERT) and VM rows (one multi-row
     * UPDATE); what they hold of each node (node id -> [vCPUs, MiB,
     * GiB]) counts in the fit of the VMs after them (place_fit). */
    struct deal_row *deals;
    struct batch_vm {
        char *text;               /* placement_text() */
        int64_t price, at;
    } *put;
    size_t n_put, cap_put;
    json_t *held;
    bool failed;                  /* a write failed: roll it all back */
    /* The rows (ASK_COLS) of its pending VMs read ahead, by id: read in
     * its transaction, which no other writer enters. */
    json_t *ahead;
    /* A refusal on a fleet loaded before the pass began ends the batch
     * (-ESTALE), so that the fleet is loaded outside its transaction;
     * once a pass, and only for a pass begun outside any transaction. */
    bool stale_ends;
};
static _Thread_local struct batch *cur_batch;

/* What the kept placements of batch b hold of node `id` (0s if none). */
static void batch_held(const struct batch *b, const char *id, int64_t ret[3])
{
    json_t *h = b ? json_object_get(b->held, id) : NULL;
    for (size_t k = 0; k < 3; k++)
        ret[k] = json_integer_value(json_array_get(h, k));
}

/* Keep the placement of a VM on deal d's node (d moves into b). */
static void batch_keep(struct batch *b, struct deal_row *d, char *text,
                       int64_t price)
{
    if (b->n_put == b->cap_put) {
        b->cap_put = b->cap_put ? 2 * b->cap_put : 64;
        b->deals = xrealloc(b->deals, b->cap_put * sizeof(*b->deals));
        b->put = xrealloc(b->put, b->cap_put * sizeof(*b->put));
    }
    int64_t held[3];
    batch_held(b, d->node_id, held);
    json_object_set_new(b->held, d->node_id,
                        json_pack("[III]", (json_int_t)(held[0] + d->vcpus),
                                  (json_int_t)(held[1] + d->memory_mib),
                                  (json_int_t)(held[2] + d->disk_gib)));
    b->deals[b->n_put] = *d;
    memset(d, 0, sizeof(*d));
    b->put[b->n_put++] = (struct batch_vm){ text, price, now_s() };
}

static void batch_forget(struct batch *b)
{
    for (size_t i = 0; i < b->n_put; i++) {
        billing_deal_row_free(&b->deals[i]);
        free(b->put[i].text);
    }
    b->n_put = 0;
    json_object_clear(b->held);
}

static void fill_vm(const void *ctx, size_t i, struct store_arg *a)
{
    const struct batch *b = ctx;
    const struct deal_row *d = &b->deals[i];
    const struct batch_vm *v = &b->put[i];
    a[0] = store_arg_s(d->vm_id);
    a[1] = store_arg_s(d->node_id);
    a[2] = store_arg_i(v->at);
    a[3] = store_arg_s(v->text);
    a[4] = store_arg_i(v->price);
    a[5] = store_arg_s(d->id);
}

/* Write the placements batch b kept: their deals, then their VMs on their
 * nodes, a few statements for all. 0 or -errno (b->failed set). */
static int batch_write(struct app *a, struct batch *b)
{
    /* The same columns as place_once() sets for a VM placed alone. */
    static struct store_rows vms_put = {
        ("UPDATE vms SET node_id = p.column2, state = 'scheduled', "
         "state_reason = NULL, place_gen = place_gen + 1, updated_at = "
         "p.column3, placement = p.column4, price_hour = p.column5, deal_id "
         "= p.column6 FROM (VALUES "),
        ") AS p WHERE vms.id = p.column1 AND vms.node_id IS NULL", 6, NULL,
        5 };
    if (b->failed)
        return -EIO;
    if (b->n_put == 0)
        return 0;
    int e = billing_deals_insert(a->store, b->deals, b->n_put);
    if (e >= 0)
        e = store_exec_rows(a->store, &vms_put, b->n_put, fill_vm, b);
    /* Each VM was pending when placed, and is placed once. */
    if (e >= 0 && (size_t)e != b->n_put)
        e = -EIO;
    batch_forget(b);
    if (e < 0) {
        b->failed = true;
        return e;
    }
    return 0;
}

static int place_finish(struct app *a, struct fleet *f, int r,
                        const char *vm_id, const char *node_id,
                        const char *from, const struct place_req *req,
                        struct deal_row *kept, char **kept_text,
                        int64_t kept_price)
{
    if (r <= 0) {
        store_tx_rollback(a->store);
        fleet_put(f);
        return r;
    }
    /* A batch tells what it placed once, inside its transaction
     * (batch_tell()); a lone placement here, inside its own, with the
     * nodes woken once it commits: told after it, a build in between
     * would read the VM placed under its networks' old DNS revision. */
    bool lone = !(cur_batch && !from);
    bool held = lone && app_hold_begin();
    if (lone) {
        if (from)
            app_vm_changed(a, from, vm_id);
        app_vm_changed(a, node_id, vm_id);
        vm_networks_changed(a, vm_id);
    }
    r = store_tx_commit(a->store);
    app_hold_end(a, held, r == 0);
    if (r < 0) {
        fleet_put(f);
        return r;
    }
    fleet_take(f, node_id, req);
    fleet_put(f);
    if (kept && cur_batch) {
        batch_keep(cur_batch, kept, *kept_text, kept_price);
        *kept_text = NULL;
    }
    if (!lone) {
        json_array_append_new(cur_batch->vms, json_string(vm_id));
        json_t *on = json_object_get(cur_batch->nodes, node_id);
        if (!on)
            json_object_set_new(cur_batch->nodes, node_id, on = json_array());
        json_array_append_new(on, json_string(vm_id));
    }
    return 1;
}

/* ---- what a VM asks ---- */

void sched_ask_free(struct sched_ask *q)
{
    json_decref(q->labels);
    json_decref(q->avoid);
    json_decref(q->wanted);
    json_decref(q->taken);
    json_decref(q->permits);
    free(q->bl);
    free(q->bl_at);
    free(q->lab);
    free(q->av);
    memset(q, 0, sizeof(*q));
}

/* sched_ask_fill(); with_ports false: the VM has no published port (so
 * none is wanted), not looked up. */
static int ask_fill(struct app *a, struct sched_ask *q, const char *account_id,
                    const char *vm_id, bool with_ports,
                    const char *labels_json, const char *group)
{
    size_t i;
    json_t *v;
    q->labels = json_loads(labels_json ? labels_json : "[]", 0, NULL);
    if (!json_is_array(q->labels)) {
        json_decref(q->labels);
        q->labels = json_array();
    }
    q->lab = xcalloc(json_array_size(q->labels) + 1, sizeof(*q->lab));
    json_array_foreach(q->labels, i, v)
        if (json_is_string(v))
            q->lab[q->req.n_labels++] = json_string_value(v);
    q->req.labels = q->lab;
    /* Nodes where a host port the VM asked for is taken or not permitted
     * (one look at every node only for a VM that asked for one). */
    if (vm_id && with_ports) {
        int e = store_query(a->store, &q->wanted, "SELECT proto, want_port "
                            "FROM ports WHERE vm_id = $1 AND want_port > 0 AND "
                            "host_port IS NULL", "s", vm_id);
        if (e < 0)
            return e;
        if (json_array_size(q->wanted) == 0) {
            json_decref(q->wanted);
            q->wanted = NULL;
        } else if ((e = store_query(a->store, &q->taken, "SELECT DISTINCT "
                                    "u.node_id FROM ports q JOIN ports u ON "
                                    "u.proto = q.proto AND u.host_port = "
                                    "q.want_port WHERE q.vm_id = $1 AND "
                                    "q.want_port > 0 AND q.host_port IS NULL "
                                    "AND u.node_id IS NOT NULL", "s",
                                    vm_id)) < 0 ||
                   (e = store_query(a->store, &q->permits, "SELECT "
                                    "pp.node_id, pp.port FROM ports q JOIN "
                                    "node_permit_ports pp ON pp.port = "
                                    "q.want_port WHERE q.vm_id = $1 AND "
                                    "q.want_port > 0 AND q.host_port IS NULL",
                                    "s", vm_id)) < 0) {
            return e;
        }
    }
    if (!group)
        return 0;
    /* Nodes already holding a VM of the owner's group. */
    int e = store_query(a->store, &q->avoid,
                        "SELECT DISTINCT node_id FROM vms WHERE account_id = "
                        "$1 AND anti_affinity = $2 AND node_id IS NOT NULL AND "
                        "deleted_at IS NULL AND id <> $3", "sss", account_id,
                        group, vm_id ? vm_id : "");
    if (e < 0)
        return e;
    q->av = xcalloc(json_array_size(q->avoid) + 1, sizeof(*q->av));
    json_array_foreach(q->avoid, i, v)
        q->av[q->req.n_avoid++] = json_str(v, "node_id");
    q->req.avoid = q->av;
    return 0;
}

int sched_ask_fill(struct app *a, struct sched_ask *q, const char *account_id,
                   const char *vm_id, const char *labels_json,
                   const char *group)
{
    return ask_fill(a, q, account_id, vm_id, true, labels_json, group);
}

/* q's port filter on fleet f: the nodes where a host port it asked for
 * does not fit (as NETALLOC_PORTS_FIT_SQL says; place_fit checks it
 * again under the node's lock): taken there, or outside the node's range
 * and not permitted there. The ranges come with the fleet, so a fleet of
 * nodes costs a comparison each, not a query each. */
static void ask_block(struct sched_ask *q, const struct fleet *f)
{
    if (!q->wanted)
        return;
    free(q->bl);
    size_t nw = json_array_size(q->wanted), i, k, n = 0;
    json_t *v;
    _cleanup_free_ int64_t *want = xcalloc(nw + 1, sizeof(*want));
    json_array_foreach(q->wanted, i, v)
        want[i] = json_int(v, "want_port", 0);
    size_t most = json_array_size(q->taken) + f->n + 1;
    free(q->bl_at);
    q->bl = xcalloc(most, sizeof(*q->bl));
    q->bl_at = xcalloc(most, sizeof(*q->bl_at));
    q->n_bl_at = 0;
    json_array_foreach(q->taken, i, v) {
        q->bl[n++] = json_str(v, "node_id");
        ssize_t at = fleet_find(f, json_str(v, "node_id"));
        if (at >= 0)
            q->bl_at[q->n_bl_at++] = (size_t)at;
    }
    for (k = 0; k < f->n; k++) {
        bool out = false;
        for (i = 0; i < nw && !out; i++) {
            if (want[i] >= f->port_min[k] && want[i] <= f->port_max[k])
                continue;
            /* Outside its range: blocked unless the node permits it. */
            out = true;
            size_t j;
            json_array_foreach(q->permits, j, v)
                if (json_int(v, "port", 0) == want[i] &&
                    streq(json_str(v, "node_id"), f->nodes[k].id))
                    out = false;
        }
        if (out) {
            q->bl[n++] = f->nodes[k].id;
            q->bl_at[q->n_bl_at++] = k;
        }
    }
    q->req.port_blocked = q->bl;
    q->req.n_port_blocked = n;
}

/* The placement columns of a VM row. */
#define ASK_COLS                                                               \
    "vms.vcpus, vms.memory_mib, vms.disk_gib, vms.allow_tcg, vms.image, "      \
    "vms.image_id, vms.template, vms.account_id, vms.max_price, vms.region, "  \
    "vms.labels, vms.anti_affinity, vms.min_reputation, vms.gpu_model, "       \
    "vms.gpu_count, vms.deal_id, "                                             \
    "(SELECT COUNT(*) FROM ports WHERE vm_id = vms.id) AS ports, i.sha256 AS " \
    "image_sha256, i.visibility AS image_visibility, i.account_id AS "         \
    "image_account, i.state AS image_state"
/* ASK_COLS's tables: the VM's row with its catalog image's, if any. */
#define ASK_FROM "vms LEFT JOIN images i ON i.id = vms.image_id"

/* A VM that waits for a node. */
#define ASK_PENDING_SQL                                                        \
    "vms.node_id IS NULL AND vms.deleted_at IS NULL AND vms.desired_state "    \
    "<> 'deleted'"

/* q from a VM row of ASK_COLS (borrowed: row must outlive q). */
static int ask_from_row(struct app *a, struct sched_ask *q, json_t *row,
                        const char *vm_id)
{
    memset(q, 0, sizeof(*q));
    struct place_req *r = &q->req;
    r->vcpus = json_int(row, "vcpus", 0);
    r->mem_mib = json_int(row, "memory_mib", 0);
    r->disk_gib = json_int(row, "disk_gib", 0);
    r->ports = json_int(row, "ports", 0);
    r->allow_tcg = json_int(row, "allow_tcg", 0) != 0;
    r->gpu_count = json_int(row, "gpu_count", 0);
    r->gpu_model = r->gpu_count > 0 ? json_str(row, "gpu_model") : NULL;
    r->tmpl = json_str(row, "template");
    r->image = json_str(row, "image");
    r->image_id = json_str(row, "image_id");
    r->image_digest = json_str(row, "image_sha256");
    r->image_public = streq(json_str(row, "image_visibility"), "public");
    r->image_account = json_str(row, "image_account");
    r->region = json_str(row, "region");
    r->max_price = json_is_integer(json_object_get(row, "max_price"))
                       ? json_int(row, "max_price", -1)
                       : scheduler_default_cap(a);
    r->min_reputation = (double)json_int(row, "min_reputation", 0) / 100.0;
    return ask_fill(a, q, json_str(row, "account_id"), vm_id, r->ports > 0,
                    json_str(row, "labels"), json_str(row, "anti_affinity"));
}

/* A decision for r on the cached fleet (one loaded after load number
 * `after` began), or on a newer load when that one leaves r nowhere to go
 * and was loaded before load `refuse_after` began: a refusal is never
 * stale. The fleet it was made on goes to *ret_f (release with
 * fleet_put()). */
static int decide(struct app *a, struct sched_ask *q, uint64_t after,
                  uint64_t refuse_after, struct fleet **ret_f,
                  struct place_result *ret)
{
    struct fleet *f;
    struct place_weights w = weights(a);
    if (refuse_after < after)
        refuse_after = after;
    int e = fleet_get(a, after, &f);
    if (e < 0)
        return e;
    if ((e = fleet_decide(a, f, q, &w, ret)) < 0) {
        fleet_put(f);
        return e;
    }
    if (ret->chosen < 0 && f->seq <= refuse_after) {
        fleet_put(f);
        if (cur_batch && cur_batch->stale_ends)
            return -ESTALE;
        if ((e = fleet_get(a, refuse_after, &f)) < 0)
            return e;
        if ((e = fleet_decide(a, f, q, &w, ret)) < 0) {
            fleet_put(f);
            return e;
        }
    }
    *ret_f = f;
    return 0;
}

int scheduler_decide(struct app *a, const struct place_req *r,
                     json_t **ret_choice)
{
    struct fleet *f;
    struct place_result res;
    struct sched_ask q = { .req = *r };
    int e = decide(a, &q, 0, atomic_load(&fleet_seq), &f, &res);
    if (e < 0)
        return e;
    json_t *o = place_result_json(&res, f->n);
    if (res.chosen >= 0) {
        const struct place_node *p = &f->nodes[res.chosen];
        json_object_set_new(o, "node_id", json_string(p->id));
        json_object_set_new(o, "node_name",
                            json_string(f->names[res.chosen]));
        _cleanup_free_ char *t = money_format(res.price_hour, NULL);
        json_object_set_new(o, "price_hour", json_string(t));
        json_object_set_new(o, "price_hour_nano",
                            json_integer((json_int_t)res.price_hour));
        json_object_set_new(o, "offer", billing_offer_json(&p->offer));
    } else {
        _cleanup_free_ char *why = place_refusal_text(&res, f->n);
        json_object_set_new(o, "reason", json_string(why));
    }
    fleet_put(f);
    *ret_choice = o;
    return res.chosen >= 0;
}

/* ---- placing ---- */

/* The node row of `id` if it fits the VM ($1..$8 as in FITS_SQL and
 * POLICY_SQL), looked up with the node's lock held: with PostgreSQL, other
 * replicas' placements on it are committed (and seen here) or wait until
 * this transaction ends. The row (to *ret_node when not NULL) has what
 * billing_deal_open() takes of a node: its owner and its offer, read under
 * that lock too. */
static int place_fit(struct app *a, const char *id, const char *vm_id,
                     int64_t online_since, const struct place_req *r,
                     json_t **ret_node)
{
    json_auto_t *node = NULL;
    int e = store_lock(a->store, "node", id);
    if (e < 0)
        return e;
    /* Placements of this batch not yet written hold their share too. */
    int64_t held[3];
    batch_held(cur_batch, id, held);
    e = store_query_one(a->store, &node,
                        "SELECT n.id, n.account_id AS provider_id, o.node_id "
                        "AS offer_node, o.vcpu_hour, o.mem_gib_hour, "
                        "o.disk_gib_month, o.gpu_hour, o.port_hour, "
                        "o.gpu_models FROM nodes n LEFT JOIN node_offers o ON "
                        "o.node_id = n.id CROSS JOIN " USED_SQL("$9")
                        " WHERE n.id = $9 AND " FITS_SQL " AND " POLICY_SQL
                        " AND " NETALLOC_PORTS_FIT_SQL("$10"), "ibiiisssss",
                        online_since, r->allow_tcg, r->vcpus + held[0],
                        r->mem_mib + held[1], r->disk_gib + held[2], r->tmpl,
                        r->image, r->image_id, id, vm_id);
    if (e >= 0 && ret_node)
        *ret_node = json_incref(node);
    return e;
}

/* The hourly price of the VM's deal as locked (its prices and shape). */
static int deal_price_hour(struct app *a, const char *vm_id,
                           const struct place_req *r, int64_t *ret,
                           struct rating_offer *ret_offer)
{
    json_auto_t *d = NULL;
    int e = store_query_one(a->store, &d,
                            "SELECT d.vcpu_hour, d.mem_gib_hour, "
                            "d.disk_gib_month, d.gpu_hour, d.port_hour FROM "
                            "deals d JOIN vms v ON v.deal_id = d.id WHERE "
                            "v.id = $1", "s", vm_id);
    if (e < 0)
        return e;
    *ret_offer = (struct rating_offer){ json_int(d, "vcpu_hour", 0),
                                        json_int(d, "mem_gib_hour", 0),
                                        json_int(d, "disk_gib_month", 0),
                                        json_int(d, "gpu_hour", 0),
                                        json_int(d, "port_hour", 0) };
    *ret = place_price_hour(ret_offer, r);
    return 0;
}

/* Record why the VM waits: the filter counts and a reason naming them. */
static void record_pending(struct app *a, const char *vm_id,
                           const struct place_req *r,
                           const struct place_result *res, size_t candidates)
{
    _cleanup_free_ char *why = place_refusal_text(res, candidates);
    /* Room: say what the VM needs. */
    if (res->removed[PF_CAPACITY] > 0 || res->removed[PF_KVM] > 0) {
        char *t = xasprintf("%s; no approved, reachable node has %lld vCPUs, "
                            "%lld MiB and %lld GiB free%s", why,
                            (long long)r->vcpus, (long long)r->mem_mib,
                            (long long)r->disk_gib,
                            res->removed[PF_KVM] > 0
                                ? " with KVM (the VM does not allow TCG)"
                                : "");
        free(why);
        why = t;
    }
    /* Policies: say which template or image the providers do not run. */
    if (res->removed[PF_POLICY] > 0) {
        char *t = r->tmpl
                      ? xasprintf("%s; no node with room accepts template "
                                  "'%s' or image '%s' (their providers "
                                  "restrict what they run)", why, r->tmpl,
                                  r->image)
                      : xasprintf("%s; no node with room accepts image '%s' "
                                  "(their providers restrict what they run)",
                                  why, r->image);
        free(why);
        why = t;
    }
    /* Requested host ports: say what the nodes offer instead. */
    _cleanup_free_ char *ports = res->removed[PF_PORTS] > 0
                                     ? netalloc_ports_refusal(a->store, vm_id)
                                     : NULL;
    if (ports) {
        char *both = xasprintf("%s; %s", ports, why);
        free(why);
        why = both;
    }
    json_auto_t *pj = place_result_json(res, candidates);
    _cleanup_free_ char *text = json_dumps_compact(pj);
    store_exec(a->store,
               "UPDATE vms SET state_reason = $1, placement = $3 WHERE id = "
               "$2 AND node_id IS NULL AND (state_reason IS NULL OR "
               "state_reason <> $1 OR placement IS NULL OR placement <> $3)",
               "sss", why, vm_id, text);
}

/* What placement decided on a VM placed on node_id at `price` (shown as
 * its placement), as JSON text; caller frees. */
/* The filters in the order of their names. */
static enum place_filter filters_by_name[PF_N];
static pthread_once_t filters_by_name_once = PTHREAD_ONCE_INIT;

static void filters_by_name_sort(void)
{
    for (int i = 0; i < PF_N; i++) {
        int k = i;
        while (k > 0 && strcmp(place_filter_names[filters_by_name[k - 1]],
                               place_filter_names[i]) > 0) {
            filters_by_name[k] = filters_by_name[k - 1];
            k--;
        }
        filters_by_name[k] = (enum place_filter)i;
    }
}

static void jsonw_money(struct jsonw *w, const char *key, int64_t v)
{
    _cleanup_free_ char *t = money_format(v, NULL);
    jsonw_key(w, key);
    jsonw_str(w, t);
}

/* The same text as json_dumps_compact() of place_result_json() with
 * node_id, price_hour and offer (billing_offer_json()) added, keys sorted,
 * written straight (once per placement: a jansson tree cost more). */
static char *placement_text(const struct place_result *res, size_t candidates,
                            const char *node_id, int64_t price,
                            const struct rating_offer *locked)
{
    pthread_once(&filters_by_name_once, filters_by_name_sort);
    struct jsonw w = JSONW_INIT;
    jsonw_obj_begin(&w);
    jsonw_key(&w, "candidates");
    jsonw_int(&w, (int64_t)candidates);
    jsonw_key(&w, "filtered");
    jsonw_obj_begin(&w);
    for (int i = 0; i < PF_N; i++) {
        enum place_filter f = filters_by_name[i];
        if (!res->removed[f])
            continue;
        jsonw_key(&w, place_filter_names[f]);
        jsonw_int(&w, (int64_t)res->removed[f]);
    }
    jsonw_obj_end(&w);
    jsonw_key(&w, "node_id");
    jsonw_str(&w, node_id);
    jsonw_key(&w, "offer");
    jsonw_obj_begin(&w);
    jsonw_money(&w, "disk_gib_month", locked->disk_gib_month);
    jsonw_money(&w, "gpu_hour", locked->gpu_hour);
    jsonw_money(&w, "mem_gib_hour", locked->mem_gib_hour);
    jsonw_money(&w, "port_hour", locked->port_hour);
    jsonw_money(&w, "vcpu_hour", locked->vcpu_hour);
    jsonw_obj_end(&w);
    jsonw_key(&w, "passed");
    jsonw_int(&w, (int64_t)res->passed);
    jsonw_money(&w, "price_hour", price);
    jsonw_obj_end(&w);
    return buf_steal(&w.b);
}

/* Keep what placement decided on the VM and the hourly price locked. The
 * store's result. */
static int placement_record(struct app *a, const char *vm_id,
                            const struct place_result *res, size_t candidates,
                            const char *node_id, int64_t price,
                            const struct rating_offer *locked)
{
    _cleanup_free_ char *text = placement_text(res, candidates, node_id, price,
                                               locked);
    return store_exec(a->store, "UPDATE vms SET placement = $1, price_hour = "
                      "$2 WHERE id = $3", "sis", text, price, vm_id);
}

/* One try at placing vm_id: decide (see decide()), then check the choice
 * under the node's lock. 1 placed (node in
 * ret_node), 0 not placed (reason recorded), -EAGAIN when the store
 * disagrees with the fleet (a placement elsewhere or a price change):
 * try again on a newer load. */
static int place_once(struct app *a, const char *vm_id, uint64_t after,
                      uint64_t refuse_after, char ret_node[UUID_STR_LEN + 1])
{
    json_auto_t *vm = NULL;
    struct fleet *f = NULL;
    struct sched_ask q _cleanup_(sched_ask_free) = { 0 };
    int64_t online_since = now_s() - 3 * a->cfg.heartbeat_s;
    int r;

    if ((r = store_tx_begin(a->store)) < 0)
        return r;
    /* One placement of a VM at a time, whichever replica makes it. */
    if ((r = store_lock(a->store, "vm", vm_id)) < 0) {
        store_tx_rollback(a->store);
        return r;
    }
    if (cur_batch) {
        vm = json_incref(json_object_get(cur_batch->ahead, vm_id));
        r = vm ? 0 : -ENOENT;
    } else {
        r = store_query_one(a->store, &vm, "SELECT " ASK_COLS " FROM "
                            ASK_FROM " WHERE " ASK_PENDING_SQL " AND vms.id = "
                            "$1", "s", vm_id);
    }
    /* Its group's nodes are read from the VMs' rows: the batch's kept
     * placements are written first. */
    if (r == 0 && cur_batch && json_str(vm, "anti_affinity"))
        r = batch_write(a, cur_batch);
    if (r == 0)
        r = ask_from_row(a, &q, vm, vm_id);
    if (r < 0) {
        store_tx_rollback(a->store);
        return r == -ENOENT ? 0 : r;
    }
    /* A VM whose image the hub still imports waits for it; one whose
     * import failed has failed with it. */
    const char *ist = json_str(vm, "image_state");
    if (q.req.image_id && ist && !streq(ist, "ready")) {
        if (streq(ist, "importing")) {
            _cleanup_free_ char *why = xasprintf(
                "waiting for image '%s' to be imported from its URL",
                q.req.image);
            store_exec(a->store, "UPDATE vms SET state_reason = $1, "
                       "placement = COALESCE(placement, $3) WHERE id = $2 AND "
                       "(state_reason IS NULL OR state_reason <> $1 OR "
                       "placement IS NULL)", "sss", why, vm_id,
                       "{\"filtered\":{},\"candidates\":0,\"passed\":0,"
                       "\"waiting_for\":\"image\"}");
        }
        store_tx_commit(a->store);
        return 0;
    }
    struct place_result res;
    if ((r = decide(a, &q, after, refuse_after, &f, &res)) < 0) {
        store_tx_rollback(a->store);
        return r;
    }
    if (res.chosen < 0) {
        record_pending(a, vm_id, &q.req, &res, f->n);
        store_tx_commit(a->store);
        fleet_put(f);
        return 0;
    }
    char node_id[UUID_STR_LEN + 1];
    snprintf(node_id, sizeof(node_id), "%s", f->nodes[res.chosen].id);
    json_auto_t *fit = NULL;
    if ((r = place_fit(a, node_id, vm_id, online_since, &q.req, &fit)) < 0) {
        store_tx_rollback(a->store);
        fleet_put(f);
        return r == -ENOENT ? -EAGAIN : r;
    }
    /* Its GPUs, each only while no other VM holds it. */
    if ((r = gpus_assign(a->store, node_id, vm_id, q.req.gpu_model,
                         q.req.gpu_count)) < 0) {
        store_tx_rollback(a->store);
        fleet_put(f);
        return r == -EBUSY ? -EAGAIN : r;
    }
    snprintf(ret_node, UUID_STR_LEN + 1, "%s", node_id);
    /* Published ports get their host ports on the chosen node. */
    json_auto_t *ports = NULL;
    size_t i;
    json_t *p;
    if (q.req.ports > 0)
        store_query(a->store, &ports, "SELECT id, proto, want_port FROM "
                    "ports WHERE vm_id = $1 AND host_port IS NULL", "s",
                    vm_id);
    json_array_foreach(ports, i, p) {
        int64_t hp = netalloc_host_port(a->store, node_id, json_str(p, "proto"),
                                        json_int(p, "want_port", 0));
        if (hp < 0 || store_exec(a->store, "UPDATE ports SET node_id = $1, "
                                 "host_port = $2 WHERE id = $3", "sis",
                                 node_id, hp, json_str(p, "id")) < 0) {
            store_tx_rollback(a->store);
            store_exec(a->store, "UPDATE vms SET state_reason = 'no free host "
                       "port on the chosen node' WHERE id = $1", "s", vm_id);
            fleet_put(f);
            return 0;
        }
    }
    /* The price is locked now: later offer changes do not touch it. A VM
     * placed for the first time has its deal made of the rows read above
     * (no read of its own); one that had a deal settles it first. */
    struct rating_offer locked;
    char deal[UUID_STR_LEN + 1];
    /* In a batch, a VM without a deal has its deal and its row written
     * with the batch's others, at its end (batch_write). */
    struct deal_row kept _cleanup_(billing_deal_row_free) = { 0 };
    bool keep = cur_batch && !json_str(vm, "deal_id");
    if (keep) {
        billing_deal_row_open(vm_id, node_id, vm, fit, &kept);
        locked = kept.offer;
        r = 0;
    } else {
        r = json_str(vm, "deal_id")
                ? billing_deal_lock_offer(a, vm_id, node_id, &locked, deal)
                : billing_deal_open(a, vm_id, node_id, vm, fit, &locked,
                                    deal);
    }
    /* The cap holds for the price as locked, whatever the offer became
     * since the fleet was loaded. */
    int64_t price = r >= 0 ? place_price_hour(&locked, &q.req) : 0;
    if (r >= 0 && q.req.max_price >= 0 && price > q.req.max_price)
        r = -EAGAIN;
    /* On the node, with what placement decided and its deal. */
    _cleanup_free_ char *text = NULL;
    if (r >= 0)
        text = placement_text(&res, f->n, node_id, price, &locked);
    if (r >= 0 && !keep) {
        r = store_exec(a->store,
                       "UPDATE vms SET node_id = $1, state = 'scheduled', "
                       "state_reason = NULL, place_gen = place_gen + 1, "
                       "updated_at = $2, placement = $3, price_hour = $4, "
                       "deal_id = $5 WHERE id = $6", "sisiss", node_id,
                       now_s(), text, price, deal, vm_id);
    }
    return place_finish(a, f, r < 0 ? r : 1, vm_id, node_id, NULL, &q.req,
                        keep ? &kept : NULL, &text, price);
}

/* place_once() until the store agrees with the fleet, on a newer load
 * after each disagreement, a bounded number of times; a VM left pending is
 * tried again by the leader. A refusal needs a fleet loaded after load
 * number `after` began. */
static int place(struct app *a, const char *vm_id, uint64_t refuse_after,
                 char ret_node[UUID_STR_LEN + 1])
{
    int r = -EAGAIN;
    uint64_t after = 0;
    for (int i = 0; i <= STORE_TX_RETRIES && r == -EAGAIN; i++) {
        if (i > 0)
            after = atomic_load(&fleet_seq);
        /* A fleet due for loading is loaded here, not inside the
         * placing transaction. */
        fleet_warm(a, after);
        r = place_once(a, vm_id, after, refuse_after, ret_node);
    }
    return r;
}

int scheduler_place(struct app *a, const char *vm_id)
{
    char node[UUID_STR_LEN + 1];
    return place(a, vm_id, atomic_load(&fleet_seq), node);
}

/* ---- placing anew from a backup ---- */

/* Why VM `vm_id` cannot go to `node_id` after it passed the filters: its
 * published ports, each wanting the host port it has now (or asked for),
 * are given by that node or the move is refused. The VM's rows are off
 * every node while this runs. 0, 1 with *ret_why set, or -errno. */
static int replace_ports(struct app *a, const char *vm_id,
                         const char *node_id, const char *node_name,
                         char **ret_why)
{
    json_auto_t *ports = NULL;
    size_t i;
    json_t *p;
    int e = store_query(a->store, &ports, "SELECT id, proto, want_port, "
                        "host_port FROM ports WHERE vm_id = $1 ORDER BY id",
                        "s", vm_id);
    if (e < 0)
        return e;
    if ((e = store_exec(a->store, "UPDATE ports SET node_id = NULL, "
                        "host_port = NULL WHERE vm_id = $1", "s", vm_id)) < 0)
        return e;
    json_array_foreach(ports, i, p) {
        int64_t want = json_int(p, "want_port", 0) > 0
                           ? json_int(p, "want_port", 0)
                           : json_int(p, "host_port", 0);
        int64_t hp = netalloc_host_port(a->store, node_id,
                                        json_str(p, "proto"), want);
        if (hp == -EADDRINUSE || hp == -EACCES || hp == -ENOSPC) {
            *ret_why = want > 0
                           ? xasprintf("node '%s' cannot give host port "
                                       "%lld/%s (%s)", node_name,
                                       (long long)want, json_str(p, "proto"),
                                       hp == -EACCES ? "outside what it "
                                                       "publishes"
                                                     : "taken")
                           : xasprintf("node '%s' has no free %s host port",
                                       node_name, json_str(p, "proto"));
            return 1;
        }
        if (hp < 0)
            return (int)hp;
        if ((e = store_exec(a->store, "UPDATE ports SET node_id = $1, "
                            "host_port = $2 WHERE id = $3", "sis", node_id,
                            hp, json_str(p, "id"))) < 0)
            return e;
    }
    return 0;
}

/* The committing half of scheduler_replace() on node index k of the
 * fleet copy: 1 placed, 0 refused (*ret_why), -errno. */
static int replace_commit(struct app *a, const char *vm_id,
                          const struct place_req *req, const char *node_id,
                          const char *node_name, const char *backup_id,
                          const struct place_result *res, size_t candidates,
                          char **ret_why)
{
    int64_t online_since = now_s() - 3 * a->cfg.heartbeat_s;
    /* Off its node first: the fit below counts what the node holds. */
    int e = store_exec(a->store, "UPDATE vms SET node_id = NULL WHERE id = "
                       "$1", "s", vm_id);
    if (e >= 0 && (e = place_fit(a, node_id, vm_id, online_since, req,
                                    NULL)) ==
                      -ENOENT) {
        *ret_why = xasprintf("node '%s' no longer has room for the VM",
                             node_name);
        return 0;
    }
    if (e >= 0 && (e = gpus_release(a->store, vm_id)) >= 0 &&
        (e = gpus_assign(a->store, node_id, vm_id, req->gpu_model,
                         req->gpu_count)) == -EBUSY) {
        *ret_why = xasprintf("node '%s' has not %lld free GPUs of model %s",
                             node_name, (long long)req->gpu_count,
                             req->gpu_model);
        return 0;
    }
    if (e < 0)
        return e;
    if ((e = replace_ports(a, vm_id, node_id, node_name, ret_why)) != 0)
        return e > 0 ? 0 : e;
    e = store_exec(a->store,
                   "UPDATE vms SET node_id = $1, state = 'scheduled', "
                   "state_reason = NULL, place_gen = place_gen + 1, "
                   "restore_backup = $2, updated_at = $3 WHERE id = $4",
                   "ssis", node_id, backup_id, now_s(), vm_id);
    /* The old deal closes here; the new one is at this node's offer. */
    if (e >= 0)
        e = billing_deal_lock(a, vm_id, node_id);
    int64_t price = 0;
    struct rating_offer locked;
    if (e >= 0)
        e = deal_price_hour(a, vm_id, req, &price, &locked);
    if (e < 0)
        return e;
    if (req->max_price >= 0 && price > req->max_price) {
        _cleanup_free_ char *p = money_format(price, NULL);
        _cleanup_free_ char *cap = money_format(req->max_price, NULL);
        *ret_why = xasprintf("node '%s' prices the VM at %s per hour, above "
                             "its cap of %s", node_name, p, cap);
        return 0;
    }
    e = placement_record(a, vm_id, res, candidates, node_id, price, &locked);
    return e < 0 ? e : 1;
}

/* Whether rows (a JSON array of {id}) hold id. */
static bool id_in_rows(const json_t *rows, const char *id)
{
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        if (streq(json_str(row, "id"), id))
            return true;
    return false;
}

int scheduler_replace(struct app *a, const char *vm_id, const char *pin,
                      const char *backup_id, char ret_node[UUID_STR_LEN + 1],
                      char **ret_why)
{
    json_auto_t *vm = NULL;
    struct fleet *f = NULL;
    struct sched_ask q _cleanup_(sched_ask_free) = { 0 };
    int r;

    if ((r = store_tx_begin(a->store)) < 0)
        return r;
    if ((r = store_lock(a->store, "vm", vm_id)) < 0 ||
        (r = store_query_one(a->store, &vm, "SELECT " ASK_COLS ", "
                             "vms.node_id FROM " ASK_FROM " WHERE vms.id = $1 "
                             "AND vms.deleted_at IS NULL", "s", vm_id)) < 0 ||
        (r = ask_from_row(a, &q, vm, vm_id)) < 0 ||
        (r = fleet_get(a, 0, &f)) < 0) {
        store_tx_rollback(a->store);
        return r;
    }
    ask_block(&q, f);
    const char *from = json_str(vm, "node_id");
    /* A chain of incremental backups is restored only by agents that
     * stack one (an older agent would restore the top piece alone). */
    json_auto_t *too_old = NULL;
    if (backup_id &&
        store_query_int(a->store, 0, "SELECT COUNT(*) FROM vm_backups WHERE "
                        "id = $1 AND mode = $2", "ss", backup_id,
                        BACKUP_MODE_INCREMENTAL) > 0 &&
        (r = store_query(a->store, &too_old, "SELECT id FROM nodes WHERE "
                         "agent_contract < $1 AND removed_at IS NULL", "i",
                         (int64_t)AGENT_CONTRACT_INCREMENTAL)) < 0) {
        store_tx_rollback(a->store);
        fleet_put(f);
        return r;
    }
    /* The candidates: the node named, else every node but the one the VM
     * leaves; on the node it is on, its own share is free again. */
    _cleanup_free_ struct place_node *nodes = xcalloc(f->n + 1,
                                                      sizeof(*nodes));
    _cleanup_free_ size_t *idx = xcalloc(f->n + 1, sizeof(*idx));
    size_t n = 0;
    bool pin_too_old = false;
    pthread_mutex_lock(&fleet_lock);
    for (size_t k = 0; k < f->n; k++) {
        const struct place_node *p = &f->nodes[k];
        if (pin ? !streq(p->id, pin) : streq(p->id, from))
            continue;
        if (too_old && id_in_rows(too_old, p->id)) {
            pin_too_old = pin != NULL;
            continue;
        }
        nodes[n] = *p;
        if (streq(p->id, from)) {
            nodes[n].free_vcpus += q.req.vcpus;
            nodes[n].free_mem_mib += q.req.mem_mib;
            nodes[n].free_disk_gib += q.req.disk_gib;
        }
        idx[n++] = k;
    }
    pthread_mutex_unlock(&fleet_lock);
    struct place_result res;
    struct place_weights w = weights(a);
    if (q.req.gpu_count > 0) {
        /* Free GPUs of its model per candidate, read from the store. */
        _cleanup_free_ struct place_node *all = xcalloc(f->n + 1,
                                                        sizeof(*all));
        if ((r = fleet_gpus(a, f, all, &q.req)) < 0) {
            store_tx_rollback(a->store);
            fleet_put(f);
            return r;
        }
        for (size_t k = 0; k < n; k++) {
            nodes[k].gpu_free = all[idx[k]].gpu_free;
            nodes[k].gpu_hour_model = all[idx[k]].gpu_hour_model;
        }
    }
    place_decide(&q.req, nodes, n, &w, &res);
    if (res.chosen < 0) {
        _cleanup_free_ char *why = place_refusal_text(&res, n);
        *ret_why = pin_too_old
                       ? xstrdup("the node named runs an agent too old to "
                                 "restore a chain of incremental backups")
                   : pin && n == 0
                       ? xstrdup("the node named is not approved and "
                                 "reachable")
                       : pin ? xasprintf("the node named cannot take the "
                                         "VM: %s", why)
                             : xasprintf("no other node can take the VM: %s",
                                         why);
        store_tx_rollback(a->store);
        fleet_put(f);
        return 0;
    }
    char node_id[UUID_STR_LEN + 1];
    snprintf(node_id, sizeof(node_id), "%s", nodes[res.chosen].id);
    _cleanup_free_ char *node_name = xstrdup(f->names[idx[res.chosen]]);
    r = replace_commit(a, vm_id, &q.req, node_id, node_name, backup_id, &res,
                       n, ret_why);
    r = place_finish(a, f, r, vm_id, node_id, from, &q.req, NULL, NULL, 0);
    if (r > 0) {
        /* The node it left has room again, which the fleet does not know. */
        scheduler_fleet_changed();
        snprintf(ret_node, UUID_STR_LEN + 1, "%s", node_id);
    }
    return r;
}

/* One scheduler_run transaction holds the store's writer for at most
 * this long, or this many placements, whichever comes first. */
#define BATCH_MS 25
#define BATCH_MAX 512

/* Tell what batch b placed, inside its transaction: each node given a
 * VM, and each node holding a VM of a network that got one (as
 * vm_networks_changed() does per VM), once each. Those nodes come from
 * one query over the batch's VMs (a JSON array of their ids, read with
 * sqlite's json_each: batches are sqlite's), each network walked once,
 * not one query per VM and one per network. */
static void batch_tell(struct app *a, struct batch *b)
{
    size_t k;
    json_t *row;
    _cleanup_free_ char *vms = json_dumps_compact(b->vms);
    json_auto_t *rows = NULL;
    if (netrecords_vms_changed(a->store, vms) < 0)
        log_error("a batch's networks' names could not be marked changed");
    store_query(a->store, &rows, "SELECT DISTINCT v.node_id FROM vm_nics c "
                "JOIN vms v ON v.id = c.vm_id WHERE c.network_id IN (SELECT "
                "p.network_id FROM vm_nics p WHERE p.vm_id IN (SELECT value "
                "FROM json_each($1))) AND v.node_id IS NOT NULL AND "
                "v.deleted_at IS NULL", "s", vms);
    /* Each node given VMs has those changed; the others only their
     * networks (app_nodes_changed_vms()). */
    json_array_foreach(rows, k, row)
        if (!json_object_get(b->nodes, json_str(row, "node_id")))
            json_object_set_new(b->nodes, json_str(row, "node_id"),
                                json_array());
    app_nodes_changed_vms(a, b->nodes);
}

/* End batch b's transaction: what it placed told, committed, and then
 * the nodes woken; when the commit fails, the fleet, which counted its
 * placements, is dropped. 0 or -errno of the commit. */
static int batch_end(struct app *a, struct batch *b)
{
    int e = batch_write(a, b);
    cur_batch = NULL;
    if (e >= 0)
        batch_tell(a, b);
    json_array_clear(b->vms);
    json_object_clear(b->nodes);
    b->failed = false;
    if (e < 0)
        app_tx_rollback(a);
    else
        e = app_tx_commit(a);
    if (e < 0)
        scheduler_fleet_changed();
    return e;
}

/* The oldest VMs waiting for a node, from index vms_pending in order (a
 * sort of every unplaced VM took 50 ms at 100,000 of them, each pass). */
const char scheduler_sql_pending[] =
    "SELECT id FROM vms WHERE node_id IS NULL AND deleted_at IS NULL AND "
    "desired_state <> 'deleted' ORDER BY created_at, id LIMIT 1000";

/* The rows of the pending VMs among $1 (a JSON array of ids), each
 * looked up by id (json_each first: not a walk of every pending VM). */
const char scheduler_sql_ahead[] =
    "SELECT vms.id, " ASK_COLS " FROM json_each($1) w CROSS JOIN " ASK_FROM
    " WHERE vms.id = w.value AND " ASK_PENDING_SQL;

/* Rows read ahead per statement: a batch often ends on time (BATCH_MS)
 * before its BATCH_MAX. */
#define BATCH_AHEAD 64

/* The rows of the pending VMs of ids (a JSON array of {id}) from index i
 * on, into b->ahead, a few at a time; *ret_next: the index past them. */
static int batch_read(struct app *a, struct batch *b, json_t *ids, size_t i,
                      size_t *ret_next)
{
    size_t n = json_array_size(ids), end = i + BATCH_AHEAD < n
                                              ? i + BATCH_AHEAD
                                              : n;
    json_auto_t *want = json_array(), *rows = NULL;
    for (size_t k = i; k < end; k++)
        json_array_append(want, json_object_get(json_array_get(ids, k), "id"));
    _cleanup_free_ char *text = json_dumps_compact(want);
    int e = store_query(a->store, &rows, scheduler_sql_ahead, "s", text);
    if (e < 0)
        return e;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_object_set(b->ahead, json_str(row, "id"), row);
    *ret_next = end;
    return 0;
}

int scheduler_run(struct app *a)
{
    json_auto_t *rows = NULL;
    int placed = 0, in_batch = 0;

    if (store_query(a->store, &rows, scheduler_sql_pending, "") < 0 ||
        json_array_size(rows) == 0)
        return 0;
    /* One fresh load at most for every VM refused in this pass. */
    uint64_t after = atomic_load(&fleet_seq);
    /* A fleet due for loading (none cached, a change announced, too old)
     * is loaded here, not inside a batch's transaction. */
    fleet_warm(a, 0);
    /* Batched where one writer at a time holds anyway (sqlite); with
     * PostgreSQL each VM keeps its own short transaction, so the node
     * locks it takes are held only while it is placed. */
    bool batched = streq(store_backend_name(a->store), "sqlite");
    struct batch b = { json_array(), json_object(), NULL, NULL, 0, 0,
                       json_object(), false, json_object(),
                       !store_in_tx(a->store) };
    int64_t batch_at = 0;
    /* A batch that fails is placed again in halves, down to one VM, so
     * that one VM whose rows cannot be written holds up no other; its
     * size grows back with each that commits. */
    size_t n = json_array_size(rows), i = 0, start = 0, limit = BATCH_MAX,
           ahead = 0;
    while (i < n) {
        /* A leader that lost its connection (and so its lock) stops. */
        if (!store_leading(a->store))
            break;
        if (batched && !cur_batch) {
            if (app_tx_begin(a) < 0)
                break;
            cur_batch = &b;
            batch_at = mono_ms();
            in_batch = 0;
            start = ahead = i;
            json_object_clear(b.ahead);
        }
        if (cur_batch && i == ahead && batch_read(a, &b, rows, i, &ahead) < 0) {
            batch_end(a, &b);
            break;
        }
        char node[UUID_STR_LEN + 1];
        int r = place(a, json_str(json_array_get(rows, i++), "id"), after,
                      node);
        if (r > 0) {
            placed++;
            in_batch++;
        }
        /* Refused on a fleet older than the pass: what the batch placed is
         * committed, a fleet is loaded from a read-only snapshot, and the
         * VM is tried again on it in the next batch. */
        bool stale = r == -ESTALE;
        if (stale) {
            i--;
            b.stale_ends = false;
        }
        /* A VM that failed rolled back to its savepoint: what the batch
         * placed before it is committed (its VMs stay pending when that
         * fails), and the next VM starts a batch of its own. */
        if (!cur_batch || !(r < 0 || i - start >= limit || i == n ||
                            mono_ms() - batch_at >= BATCH_MS))
            continue;
        int e = batch_end(a, &b);
        if (stale)
            fleet_warm(a, after);
        if (e >= 0) {
            limit = limit < BATCH_MAX ? 2 * limit : BATCH_MAX;
            continue;
        }
        placed -= in_batch;
        if (i - start > 1) {
            limit = (i - start) / 2;
            i = start;
        }
    }
    if (cur_batch && batch_end(a, &b) < 0)
        placed -= in_batch;
    batch_forget(&b);
    free(b.deals);
    free(b.put);
    json_decref(b.vms);
    json_decref(b.nodes);
    json_decref(b.held);
    json_decref(b.ahead);
    return placed;
}

void health_check(struct app *a)
{
    int64_t cutoff = now_s() - 3 * a->cfg.heartbeat_s;
    int n = store_exec(a->store,
                       "UPDATE vms SET state = 'unknown', state_reason = "
                       "'node unreachable', updated_at = $2 WHERE deleted_at "
                       "IS NULL AND state NOT IN ('unknown', 'pending', 'lost') AND "
                       "node_id IN (SELECT id FROM nodes WHERE last_seen < $1)",
                       "ii", cutoff, now_s());
    if (n > 0)
        log_warn("%d VMs now unknown: their node stopped reporting", n);
}

static pthread_t rec_thread;
static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rec_cond = PTHREAD_COND_INITIALIZER;
static bool rec_stop, rec_running;

static void *reconciler(void *arg)
{
    struct app *a = arg;
    /* After a controller restart every node looks silent: give them three
     * heartbeats to report before judging. */
    int64_t judge_from = now_s() + 3 * a->cfg.heartbeat_s;
    int64_t prune_at = now_s(), rep_at = 0;
    pthread_mutex_lock(&rec_lock);
    while (!rec_stop) {
        pthread_mutex_unlock(&rec_lock);
        /* Every replica places its own creates on its own cached fleet. */
        scheduler_fleet_refresh(a);
        /* With PostgreSQL several replicas serve the API; one leads. */
        if (store_try_lead(a->store)) {
            if (now_s() >= judge_from) {
                health_check(a);
                outage_tick(a, judge_from - 3 * a->cfg.heartbeat_s);
                evacuate_tick(a);
                vmhealth_tick(a, now_s());
            }
            migrate_tick(a, now_s() >= judge_from);
            bsched_tick(a);
            scheduler_run(a);
            benchmark_tick(a, now_s() >= judge_from);
            if (now_s() >= judge_from && now_s() >= rep_at) {
                reputation_tick(a);
                rep_at = now_s() + a->cfg.heartbeat_s;
            }
            if (now_s() >= prune_at) {
                app_prune(a);
                prune_at = now_s() + 60;
            }
        }
        /* Every replica keeps its own edge's file. */
        edge_sync(a);
        pubzone_sync(a);
        pthread_mutex_lock(&rec_lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&rec_cond, &rec_lock, &ts);
    }
    pthread_mutex_unlock(&rec_lock);
    return NULL;
}

int reconciler_start(struct app *a)
{
    rec_stop = false;
    int r = pthread_create(&rec_thread, NULL, reconciler, a);
    if (r)
        return -r;
    rec_running = true;
    return 0;
}

void reconciler_stop(void)
{
    if (!rec_running)
        return;
    pthread_mutex_lock(&rec_lock);
    rec_stop = true;
    pthread_cond_signal(&rec_cond);
    pthread_mutex_unlock(&rec_lock);
    pthread_join(rec_thread, NULL);
    rec_running = false;
}
