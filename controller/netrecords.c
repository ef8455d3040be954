/* A tenant network's records (its VMs' names, addresses, MACs and
 * nodes), held per network and brought forward through the store's DNS
 * log. */
#include "controller/netrecords.h"

#include "api/desired_delta.h"
#include "common/jsonw.h"
#include "common/log.h"
#include "common/util.h"
#include "controller/desired.h"
#include "controller/netalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Revisions of each network's log kept: a set held further behind is
 * read whole. */
#define LOG_KEEP 1024
/* Records held over every network (some 150 bytes each); past it, what
 * is held is dropped and read again as builds ask. */
#define HELD_MAX ((size_t)1 << 18)
#define ID_MAX 64

/* The log is cut at every PRUNE_EVERY-th revision of a network, to the
 * last LOG_KEEP (a cut at every change cost each placement a statement). */
#define PRUNE_EVERY 64

static void bumped(struct store_row *row, void *data)
{
    if (store_row_int(row, "dns_rev", 1) % PRUNE_EVERY == 0)
        *(bool *)data = true;
}

int netrecords_vm_changed(struct store *s, const char *vm_id)
{
    bool prune = false;
    int e;
    if ((e = store_query_each(s, bumped, &prune, "UPDATE networks SET "
                              "dns_rev = dns_rev + 1 WHERE id IN (SELECT "
                              "network_id FROM vm_nics WHERE vm_id = $1) "
                              "RETURNING dns_rev", "s", vm_id)) < 0 ||
        (e = store_exec(s, "INSERT INTO net_dns_log (network_id, dns_rev, "
                        "vm_id) SELECT w.id, w.dns_rev, CAST($1 AS TEXT) FROM "
                        "networks w WHERE w.id IN (SELECT network_id FROM "
                        "vm_nics WHERE vm_id = $1)", "s", vm_id)) < 0 ||
        (prune &&
         (e = store_exec(s, "DELETE FROM net_dns_log WHERE network_id IN "
                         "(SELECT network_id FROM vm_nics WHERE vm_id = $1) "
                         "AND dns_rev <= (SELECT w.dns_rev FROM networks w "
                         "WHERE w.id = net_dns_log.network_id) - $2", "si",
                         vm_id, (int64_t)LOG_KEEP)) < 0))
        return e;
    return 0;
}

int netrecords_vms_changed(struct store *s, const char *vm_ids)
{
    bool prune = false;
    int e;
    if ((e = store_query_each(s, bumped, &prune, "UPDATE networks SET "
                              "dns_rev = dns_rev + 1 WHERE id IN (SELECT "
                              "c.network_id FROM vm_nics c WHERE c.vm_id IN "
                              "(SELECT value FROM json_each($1))) RETURNING "
                              "dns_rev", "s", vm_ids)) < 0 ||
        (e = store_exec(s, "INSERT INTO net_dns_log (network_id, dns_rev, "
                        "vm_id) SELECT DISTINCT c.network_id, w.dns_rev, "
                        "c.vm_id FROM vm_nics c JOIN networks w ON w.id = "
                        "c.network_id WHERE c.vm_id IN (SELECT value FROM "
                        "json_each($1))", "s", vm_ids)) < 0 ||
        (prune &&
         (e = store_exec(s, "DELETE FROM net_dns_log WHERE network_id IN "
                         "(SELECT c.network_id FROM vm_nics c WHERE c.vm_id "
                         "IN (SELECT value FROM json_each($1))) AND dns_rev "
                         "<= (SELECT w.dns_rev FROM networks w WHERE w.id = "
                         "net_dns_log.network_id) - $2", "si", vm_ids,
                         (int64_t)LOG_KEEP)) < 0))
        return e;
    return 0;
}

/* The network's addresses a set's records were made in. */
struct net_of {
    const char *cidr6, *cidr4;
};

/* The strings of a record, one after another in its text. */
static const char *put(char **at, const char *v)
{
    if (!v)
        return NULL;
    size_t n = strlen(v) + 1;
    char *p = memcpy(*at, v, n);
    *at += n;
    return p;
}

static struct netrec *rec_new(const struct net_of *w, const char *vm_id,
                              const char *name, const char *address,
                              const char *mac, const char *node_id)
{
    _cleanup_free_ char *v6 = netalloc_address6(w->cidr6, w->cidr4, address);
    size_t len = strlen(vm_id) + strlen(name) + strlen(address) +
                 strlen(mac) + strlen(node_id) + (v6 ? strlen(v6) : 0) + 6;
    struct netrec *r = xmalloc(sizeof(*r) + len);
    char *at = r->text;
    r->refs = 1;
    r->vm_id = put(&at, vm_id);
    r->name = put(&at, name);
    r->address = put(&at, address);
    r->mac = put(&at, mac);
    r->node_id = put(&at, node_id);
    r->address6 = put(&at, v6);
    return r;
}

static void rec_unref(struct netrec *r)
{
    if (r && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(r);
}

static int rec_cmp(const void *x, const void *y)
{
    const struct netrec *a = *(struct netrec *const *)x;
    const struct netrec *b = *(struct netrec *const *)y;
    int c = strcmp(a->name, b->name);
    if (c == 0)
        c = strcmp(a->address, b->address);
    return c ? c : strcmp(a->vm_id, b->vm_id);
}

static struct netrec_set *set_new(const struct net_of *w, int64_t rev,
                                  size_t cap)
{
    struct netrec_set *set = xmalloc(sizeof(*set) + cap * sizeof(set->recs[0]));
    *set = (struct netrec_set){ .refs = 1, .rev = rev,
                                .cidr6 = w->cidr6 ? xstrdup(w->cidr6) : NULL,
                                .cidr4 = w->cidr4 ? xstrdup(w->cidr4) : NULL };
    pthread_mutex_init(&set->texts_lock, NULL);
    return set;
}

static int node_cmp(const void *x, const void *y)
{
    const struct netrec *a = *(struct netrec *const *)x;
    const struct netrec *b = *(struct netrec *const *)y;
    int c = strcmp(a->node_id, b->node_id);
    return c ? c : strcmp(a->mac, b->mac);
}

/* The set, made, indexed by node as well, its nodes listed. */
static struct netrec_set *set_done(struct netrec_set *set)
{
    set->by_node = xmalloc((set->n + 1) * sizeof(*set->by_node));
    memcpy(set->by_node, set->recs, set->n * sizeof(*set->by_node));
    qsort(set->by_node, set->n, sizeof(*set->by_node), node_cmp);
    set->nodes = xcalloc(set->n + 1, sizeof(*set->nodes));
    for (size_t i = 0; i < set->n; i++)
        if (set->n_nodes == 0 ||
            !streq(set->nodes[set->n_nodes - 1], set->by_node[i]->node_id))
            set->nodes[set->n_nodes++] = set->by_node[i]->node_id;
    return set;
}

/* Whether set's records were made in the addresses of w. */
static bool set_of(const struct netrec_set *set, const struct net_of *w)
{
    return streq(set->cidr6 ? set->cidr6 : "", w->cidr6 ? w->cidr6 : "") &&
           streq(set->cidr4 ? set->cidr4 : "", w->cidr4 ? w->cidr4 : "");
}

/* What netrecords_texts() made of a set. */
struct netrec_texts {
    char *records; /* "[...]"; NULL: not made yet, or no records */
    bool records_made;
    /* The VTEPs the rest was made with (one per set->nodes[i], NULL:
     * none), and the remote MACs of every node with a VTEP, each as
     * ",{...}", in (VTEP, MAC) order (NULL: not made yet); node i's are
     * macs[at[i], at[i] + len[i]). */
    bool vteps_made;
    char **vtep;
    size_t *at, *len;
    size_t *order; /* the nodes with a VTEP, in VTEP order */
    size_t n_order;
    char *macs;
    size_t macs_len;
    /* The set as items of AGENT_NET_VMS, with the same VTEPs; NULL: not
     * made yet. */
    struct desired_run *run;
};

static void texts_macs_clear(struct netrec_texts *t, size_t n_nodes)
{
    for (size_t i = 0; t->vtep && i < n_nodes; i++)
        free(t->vtep[i]);
    free(t->vtep);
    free(t->at);
    free(t->len);
    free(t->order);
    free(t->macs);
    t->vtep = NULL;
    t->at = t->len = t->order = NULL;
    t->macs = NULL;
    t->n_order = t->macs_len = 0;
    t->vteps_made = false;
    desired_run_unref(t->run);
    t->run = NULL;
}

static void texts_free(struct netrec_texts *t, size_t n_nodes)
{
    if (!t)
        return;
    texts_macs_clear(t, n_nodes);
    free(t->records);
    free(t);
}

static struct netrec_set *set_ref(struct netrec_set *set)
{
    __atomic_add_fetch(&set->refs, 1, __ATOMIC_RELAXED);
    return set;
}

void netrec_set_unref(struct netrec_set *set)
{
    if (!set || __atomic_sub_fetch(&set->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (size_t i = 0; i < set->n; i++)
        rec_unref(set->recs[i]);
    texts_free(set->texts, set->n_nodes);
    pthread_mutex_destroy(&set->texts_lock);
    free(set->by_node);
    free(set->nodes);
    free(set->cidr6);
    free(set->cidr4);
    free(set);
}

/* Rows of (vm_id, name, address) gathered. */
struct rows {
    const struct net_of *w;
    struct netrec **v;
    size_t n, cap;
    int err;
};

static void row_add(struct store_row *row, void *data)
{
    struct rows *r = data;
    const char *vm = store_row_str(row, "vm_id");
    const char *name = store_row_str(row, "name");
    const char *addr = store_row_str(row, "address");
    const char *mac = store_row_str(row, "mac");
    const char *node = store_row_str(row, "node_id");
    if (r->err < 0)
        return;
    if (!vm || !name || !addr || !mac || !node) {
        r->err = -EINVAL; /* a broken row, not a name to leave out */
        return;
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
    }
    r->v[r->n++] = rec_new(r->w, vm, name, addr, mac, node);
}

static void rows_clear(struct rows *r)
{
    for (size_t i = 0; i < r->n; i++)
        rec_unref(r->v[i]);
    free(r->v);
}

static int read_whole(struct store *s, const char *network_id,
                      const struct net_of *w, int64_t rev,
                      struct netrec_set **ret)
{
    struct rows r = { .w = w };
    int e = store_query_each(s, row_add, &r,
                             "SELECT c.vm_id, v.name, c.address, c.mac, "
                             "v.node_id FROM vm_nics c JOIN vms v ON v.id = "
                             "c.vm_id WHERE c.network_id = $1 AND "
                             "v.deleted_at IS NULL AND v.node_id IS NOT NULL",
                             "s", network_id);
    if (e < 0 || (e = r.err) < 0) {
        rows_clear(&r);
        return e;
    }
    struct netrec_set *set = set_new(w, rev, r.n);
    /* None read: r.v is NULL, which qsort and memcpy must not be given. */
    if (r.n > 0) {
        qsort(r.v, r.n, sizeof(*r.v), rec_cmp);
        memcpy(set->recs, r.v, r.n * sizeof(*r.v));
    }
    set->n = r.n;
    free(r.v);
    *ret = set_done(set);
    return 0;
}

struct ids {
    char **v;
    size_t n, cap;
};

static void id_add(struct store_row *row, void *data)
{
    struct ids *ids = data;
    const char *vm = store_row_str(row, "vm_id");
    if (!vm)
        return;
    if (ids->n == ids->cap) {
        ids->cap = ids->cap ? 2 * ids->cap : 8;
        ids->v = xrealloc(ids->v, ids->cap * sizeof(*ids->v));
    }
    ids->v[ids->n++] = xstrdup(vm);
}

static int str_cmp(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* `base` brought forward to `rev`: its records but those of the VMs the
 * log names past base's revision, with those VMs' records now. */
static int read_forward(struct store *s, const char *network_id,
                        const struct net_of *w, const struct netrec_set *base,
                        int64_t rev, struct netrec_set **ret)
{
    struct ids ids = { 0 };
    struct rows r = { .w = w };
    int e;
    if ((e = store_query_each(s, id_add, &ids, "SELECT DISTINCT vm_id FROM "
                              "net_dns_log WHERE network_id = $1 AND dns_rev "
                              "> $2", "si", network_id, base->rev)) < 0 ||
        (e = store_query_each(s, row_add, &r,
                              "SELECT DISTINCT c.vm_id, v.name, c.address, "
                              "c.mac, v.node_id FROM net_dns_log l JOIN "
                              "vm_nics c ON c.vm_id = l.vm_id AND "
                              "c.network_id = l.network_id JOIN vms v ON v.id "
                              "= c.vm_id WHERE l.network_id = $1 AND "
                              "l.dns_rev > $2 AND v.deleted_at IS NULL AND "
                              "v.node_id IS NOT NULL", "si", network_id,
                              base->rev)) < 0)
        goto out;
    if ((e = r.err) < 0)
        goto out;
    if (ids.n > 0)
        qsort(ids.v, ids.n, sizeof(*ids.v), str_cmp);
    if (r.n > 0)
        qsort(r.v, r.n, sizeof(*r.v), rec_cmp);
    struct netrec_set *set = set_new(w, rev, base->n + r.n);
    size_t i = 0, j = 0;
    /* Merge the kept records of base with the new ones, both in order. */
    while (i < base->n || j < r.n) {
        struct netrec *b = i < base->n ? base->recs[i] : NULL;
        if (b && ids.n > 0 &&
            bsearch(&b->vm_id, ids.v, ids.n, sizeof(*ids.v), str_cmp)) {
            i++;
            continue;
        }
        if (b && (j == r.n || rec_cmp(&b, &r.v[j]) < 0)) {
            __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
            set->recs[set->n++] = b;
            i++;
        } else {
            set->recs[set->n++] = r.v[j];
            r.v[j++] = NULL;
        }
    }
    *ret = set_done(set);
out:
    for (size_t k = 0; k < ids.n; k++)
        free(ids.v[k]);
    free(ids.v);
    rows_clear(&r);
    return e;
}

/* The sets held, by network id. */
struct held {
    char id[ID_MAX];
    struct netrec_set *set;
};

static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static struct held *held;
static size_t n_held, held_recs;

static void held_drop_all(void)
{
    for (size_t i = 0; i < n_held; i++)
        netrec_set_unref(held[i].set);
    free(held);
    held = NULL;
    n_held = held_recs = 0;
}

/* Keep `set` for network_id unless a newer one is held (or one as new,
 * unless `fresh`: read whole from the store, it replaces what it
 * equals). */
static void held_keep(const char *network_id, struct netrec_set *set,
                      bool fresh)
{
    pthread_mutex_lock(&held_lock);
    bool found;
    size_t at = sorted_at(held, n_held, sizeof(*held),
                          offsetof(struct held, id), network_id, &found);
    if (found && (held[at].set->rev > set->rev ||
                  (held[at].set->rev == set->rev && !fresh))) {
        pthread_mutex_unlock(&held_lock);
        return;
    }
    if (!found && held_recs + set->n > HELD_MAX) {
        held_drop_all();
        at = 0;
    }
    struct held *h = found ? &held[at]
                           : sorted_insert(&held, &n_held, sizeof(*held), at);
    if (found) {
        held_recs -= h->set->n;
        netrec_set_unref(h->set);
    } else {
        snprintf(h->id, sizeof(h->id), "%s", network_id);
    }
    h->set = set_ref(set);
    held_recs += set->n;
    pthread_mutex_unlock(&held_lock);
}

/* The set held for network_id (a new reference), or NULL. */
static struct netrec_set *held_get(const char *network_id)
{
    pthread_mutex_lock(&held_lock);
    bool found;
    size_t at = sorted_at(held, n_held, sizeof(*held),
                          offsetof(struct held, id), network_id, &found);
    struct netrec_set *set = found ? set_ref(held[at].set) : NULL;
    pthread_mutex_unlock(&held_lock);
    return set;
}

/* With desired_verify(), every set taken from memory or brought forward
 * is compared with the network read whole in the same snapshot, and the
 * controller aborts when they differ: a change to a network's VMs that
 * did not say so. */
static void verify(struct store *s, const char *network_id,
                   const struct net_of *w, const struct netrec_set *set)
{
    struct netrec_set *whole = NULL;
    if (!desired_verify() || read_whole(s, network_id, w, set->rev, &whole) < 0)
        return;
    bool same = whole->n == set->n;
    for (size_t i = 0; same && i < set->n; i++)
        same = rec_cmp(&whole->recs[i], &set->recs[i]) == 0 &&
               streq(whole->recs[i]->mac, set->recs[i]->mac) &&
               streq(whole->recs[i]->node_id, set->recs[i]->node_id) &&
               streq(whole->recs[i]->address6 ? whole->recs[i]->address6 : "",
                     set->recs[i]->address6 ? set->recs[i]->address6 : "");
    if (!same) {
        log_error("DNS records of network %s at %lld: %zu held, %zu in the "
                  "store", network_id, (long long)set->rev, set->n, whole->n);
        abort();
    }
    netrec_set_unref(whole);
}

int netrecords_get(struct store *s, const char *network_id, int64_t dns_rev,
                   const char *cidr6, const char *cidr4, bool fresh,
                   struct netrec_set **ret)
{
    const struct net_of w = { cidr6, cidr4 };
    bool keep = strlen(network_id) < ID_MAX && store_reads_committed(s);
    struct netrec_set *base = keep && !fresh ? held_get(network_id) : NULL;
    struct netrec_set *set = NULL;
    int e;
    if (base && !set_of(base, &w)) {
        netrec_set_unref(base); /* the network was given a /64 since */
        base = NULL;
    }
    if (base && base->rev == dns_rev) {
        set = set_ref(base);
        e = 0;
    } else if (base && base->rev < dns_rev && dns_rev - base->rev < LOG_KEEP) {
        e = read_forward(s, network_id, &w, base, dns_rev, &set);
    } else {
        netrec_set_unref(base);
        base = NULL;
        e = read_whole(s, network_id, &w, dns_rev, &set);
    }
    bool read = !base; /* read whole: it replaces what is held */
    if (base && e == 0)
        verify(s, network_id, &w, set);
    netrec_set_unref(base);
    if (e < 0)
        return e;
    if (keep)
        held_keep(network_id, set, read);
    *ret = set;
    return 0;
}

static void vtep_row(struct store_row *row, void *data)
{
    const char *ip = store_row_str(row, "mesh_ip");
    char **ret = data;
    if (ip && !*ret)
        *ret = xstrdup(ip);
}

/* The VTEP of each node of the set (its mesh address; NULL for a removed
 * node or one without): 0 and *ret (set->n_nodes of them, each and it
 * freed by the caller), or -errno of the store. One indexed row per
 * node: a network spans few of the nodes. */
static int node_vteps(struct store *s, const struct netrec_set *set,
                      char ***ret)
{
    char **vt = xcalloc(set->n_nodes + 1, sizeof(*vt));
    int e = 0;
    for (size_t i = 0; i < set->n_nodes && e == 0; i++)
        e = store_query_each(s, vtep_row, &vt[i], "SELECT mesh_ip FROM "
                             "nodes WHERE id = $1 AND removed_at IS NULL",
                             "s", set->nodes[i]);
    if (e < 0) {
        for (size_t i = 0; i < set->n_nodes; i++)
            free(vt[i]);
        free(vt);
        return e;
    }
    *ret = vt;
    return 0;
}

/* Where node i of set->nodes begins in by_node (n_nodes + 1 of them). */
static size_t *node_starts(const struct netrec_set *set)
{
    size_t *at = xcalloc(set->n_nodes + 1, sizeof(*at));
    for (size_t i = 0, k = 0; i < set->n; i++)
        if (i == 0 || !streq(set->by_node[i]->node_id,
                             set->by_node[i - 1]->node_id))
            at[k++] = i;
    at[set->n_nodes] = set->n;
    return at;
}

struct by_vtep {
    const char *vtep;
    size_t node;
};

static int by_vtep_cmp(const void *x, const void *y)
{
    return strcmp(((const struct by_vtep *)x)->vtep,
                  ((const struct by_vtep *)y)->vtep);
}

/* The nodes of vt[] (n of them) with a VTEP, in VTEP order: *ret_n of
 * them, owned by the caller. */
static size_t *vtep_order(char *const *vt, size_t n, size_t *ret_n)
{
    struct by_vtep *g = xcalloc(n + 1, sizeof(*g));
    size_t n_g = 0;
    for (size_t i = 0; i < n; i++)
        if (vt[i])
            g[n_g++] = (struct by_vtep){ vt[i], i };
    if (n_g > 0)
        qsort(g, n_g, sizeof(*g), by_vtep_cmp);
    size_t *order = xcalloc(n_g + 1, sizeof(*order));
    for (size_t k = 0; k < n_g; k++)
        order[k] = g[k].node;
    free(g);
    *ret_n = n_g;
    return order;
}

static void vteps_free(char **vt, size_t n)
{
    for (size_t i = 0; vt && i < n; i++)
        free(vt[i]);
    free(vt);
}

int netrecords_remote(struct store *s, const struct netrec_set *set,
                      const char *node_id, struct am_network *w)
{
    char **vt = NULL;
    int e = node_vteps(s, set, &vt);
    if (e < 0)
        return e;
    size_t n_order = 0;
    _cleanup_free_ size_t *order = vtep_order(vt, set->n_nodes, &n_order);
    _cleanup_free_ size_t *at = node_starts(set);
    w->vteps = xcalloc(n_order + 1, sizeof(*w->vteps));
    w->macs = xcalloc(set->n + 1, sizeof(*w->macs));
    for (size_t k = 0; k < n_order; k++) {
        size_t i = order[k];
        /* The node's own VMs are no remote MACs. */
        if (streq(set->nodes[i], node_id))
            continue;
        w->vteps[w->n_vteps++] = xstrdup(vt[i]);
        for (size_t r = at[i]; r < at[i + 1]; r++)
            w->macs[w->n_macs++] = (struct am_remote_mac){
                .mac = xstrdup(set->by_node[r]->mac),
                .vtep = xstrdup(vt[i]),
            };
    }
    vteps_free(vt, set->n_nodes);
    return 0;
}

/* t's VTEPs set to vt (taken), and what was made with the former ones
 * dropped. Under texts_lock. */
static void texts_set_vteps(struct netrec_texts *t,
                            const struct netrec_set *set, char **vt)
{
    texts_macs_clear(t, set->n_nodes);
    t->vtep = vt;
    t->order = vtep_order(vt, set->n_nodes, &t->n_order);
    t->vteps_made = true;
}

/* t's MACs made, with its VTEPs. Under texts_lock. */
static void texts_make_macs(struct netrec_texts *t,
                            const struct netrec_set *set)
{
    char **vt = t->vtep;
    t->at = xcalloc(set->n_nodes + 1, sizeof(*t->at));
    t->len = xcalloc(set->n_nodes + 1, sizeof(*t->len));
    _cleanup_free_ size_t *start = node_starts(set);
    struct jsonw jw = JSONW_INIT;
    for (size_t k = 0; k < t->n_order; k++) {
        size_t i = t->order[k];
        t->at[i] = jw.b.len;
        for (size_t r = start[i]; r < start[i + 1]; r++) {
            buf_puts(&jw.b, ",");
            jw.comma = false;
            jsonw_obj_begin(&jw);
            jsonw_key(&jw, "mac");
            jsonw_str(&jw, set->by_node[r]->mac);
            jsonw_key(&jw, "vtep");
            jsonw_str(&jw, vt[i]);
            jsonw_obj_end(&jw);
        }
        t->len[i] = jw.b.len - t->at[i];
    }
    t->macs_len = jw.b.len;
    t->macs = buf_steal(&jw.b);
}

/* A record's name and addresses, as members of the object open in jw. */
static void put_name(struct jsonw *jw, const struct netrec *r)
{
    jsonw_key(jw, "name");
    jsonw_str(jw, r->name);
    jsonw_key(jw, "address");
    jsonw_str(jw, r->address);
    if (r->address6) {
        jsonw_key(jw, AGENT_REC_ADDRESS6);
        jsonw_str(jw, r->address6);
    }
}

static void texts_make_records(struct netrec_texts *t,
                               const struct netrec_set *set)
{
    size_t n = set->n < AGENT_NET_RECORDS_MAX ? set->n : AGENT_NET_RECORDS_MAX;
    t->records_made = true;
    if (n == 0)
        return;
    struct jsonw jw = JSONW_INIT;
    jsonw_arr_begin(&jw);
    for (size_t i = 0; i < n; i++) {
        jsonw_obj_begin(&jw);
        put_name(&jw, set->recs[i]);
        jsonw_obj_end(&jw);
    }
    jsonw_arr_end(&jw);
    t->records = buf_steal(&jw.b);
}

static bool same_vteps(char *const *x, char *const *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!streq(x[i] ? x[i] : "", y[i] ? y[i] : "") || !x[i] != !y[i])
            return false;
    return true;
}

/* set's texts with their MACs made with the VTEPs vt (taken), made
 * again when those differ from what they were made with. Under
 * texts_lock. */
static struct netrec_texts *texts_sync(struct netrec_set *set, char **vt)
{
    struct netrec_texts *t = set->texts;
    if (!t)
        t = set->texts = xcalloc(1, sizeof(*t));
    if (!t->vteps_made || !same_vteps(t->vtep, vt, set->n_nodes))
        texts_set_vteps(t, set, TAKE_PTR(vt));
    vteps_free(vt, set->n_nodes);
    return t;
}

/* set's texts (*ret) with texts_lock held, made with the VTEPs of its
 * nodes now. 0, or -errno of the store (the lock not taken). */
static int texts_locked(struct store *s, struct netrec_set *set,
                        struct netrec_texts **ret)
{
    char **vt = NULL;
    int e = node_vteps(s, set, &vt);
    if (e < 0)
        return e;
    pthread_mutex_lock(&set->texts_lock);
    *ret = texts_sync(set, vt);
    return 0;
}

/* w's VTEPs: each node's of t but node_id's. */
static void texts_vteps(const struct netrec_texts *t,
                        const struct netrec_set *set, const char *node_id,
                        struct am_network *w)
{
    w->vteps = xcalloc(t->n_order + 1, sizeof(*w->vteps));
    for (size_t k = 0; k < t->n_order; k++)
        if (!streq(set->nodes[t->order[k]], node_id))
            w->vteps[w->n_vteps++] = xstrdup(t->vtep[t->order[k]]);
}

int netrecords_texts(struct store *s, struct netrec_set *set,
                     const char *node_id, struct am_network *w,
                     char **ret_macs, char **ret_records)
{
    struct netrec_texts *t = NULL;
    int e = texts_locked(s, set, &t);
    if (e < 0)
        return e;
    if (!t->records_made)
        texts_make_records(t, set);
    if (!t->macs)
        texts_make_macs(t, set);
    texts_vteps(t, set, node_id, w);
    /* This node's MACs cut out: the rest are its remote ones. */
    size_t cut_at = t->macs_len, cut_len = 0;
    for (size_t k = 0; k < t->n_order; k++)
        if (streq(set->nodes[t->order[k]], node_id)) {
            cut_at = t->at[t->order[k]];
            cut_len = t->len[t->order[k]];
        }
    struct buf b = BUF_INIT;
    buf_puts(&b, "[");
    buf_append(&b, t->macs, cut_at);
    buf_append(&b, t->macs + cut_at + cut_len, t->macs_len - cut_at - cut_len);
    buf_puts(&b, "]");
    *ret_records = t->records ? xstrdup(t->records) : NULL;
    pthread_mutex_unlock(&set->texts_lock);
    char *m = buf_steal(&b);
    if (m[1] == ',') /* each MAC's text begins with its comma */
        memmove(m + 1, m + 2, strlen(m + 2) + 1);
    *ret_macs = m;
    return 0;
}

/* t->run made: every record of set (network vxlan_id) as an item of
 * AGENT_NET_VMS, at its node's VTEP in t. Under texts_lock. */
static void texts_make_run(struct netrec_texts *t,
                           const struct netrec_set *set, int64_t vxlan_id)
{
    struct desired_part *items = xcalloc(set->n + 1, sizeof(*items));
    _cleanup_free_ size_t *start = node_starts(set);
    size_t n = 0;
    for (size_t i = 0; i < set->n_nodes; i++)
        for (size_t r = start[i]; r < start[i + 1]; r++) {
            const struct netrec *rec = set->by_node[r];
            struct jsonw jw = JSONW_INIT;
            char *key = xasprintf(AGENT_NET_VM_ID_FMT, (long long)vxlan_id,
                                  rec->mac);
            jsonw_obj_begin(&jw);
            jsonw_key(&jw, "id");
            jsonw_str(&jw, key);
            jsonw_key(&jw, "vxlan_id");
            jsonw_int(&jw, vxlan_id);
            put_name(&jw, rec);
            jsonw_key(&jw, "mac");
            jsonw_str(&jw, rec->mac);
            if (t->vtep[i]) {
                jsonw_key(&jw, "vtep");
                jsonw_str(&jw, t->vtep[i]);
            }
            jsonw_obj_end(&jw);
            items[n++] = (struct desired_part){ .key = key,
                                                .text = buf_steal(&jw.b) };
        }
    char run_key[24];
    snprintf(run_key, sizeof(run_key), "%08lld", (long long)vxlan_id);
    t->run = desired_run_new(run_key, items, n);
}

int netrecords_run(struct store *s, struct netrec_set *set, int64_t vxlan_id,
                   const char *node_id, struct am_network *w,
                   struct desired_run **ret)
{
    struct netrec_texts *t = NULL;
    int e = texts_locked(s, set, &t);
    if (e < 0)
        return e;
    if (!t->run)
        texts_make_run(t, set, vxlan_id);
    texts_vteps(t, set, node_id, w);
    *ret = desired_run_ref(t->run);
    pthread_mutex_unlock(&set->texts_lock);
    return 0;
}

struct netrec_set *netrecords_held(const char *network_id, int64_t dns_rev)
{
    struct netrec_set *set = held_get(network_id);
    if (set && set->rev != dns_rev) {
        netrec_set_unref(set);
        set = NULL;
    }
    return set;
}
