/* A tenant network's records (its VMs' names, addresses, MACs and
 * nodes), held per network and brought forward through the store's DNS
 * log. */
#include "controller/netrecords.h"

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

/* One node of the network's: its VMs' records in by_node, its VTEP. */
struct group {
    size_t at, n;
    char *vtep;
};

static int group_cmp(const void *x, const void *y)
{
    return strcmp(((const struct group *)x)->vtep,
                  ((const struct group *)y)->vtep);
}

static void vtep_row(struct store_row *row, void *data)
{
    const char *ip = store_row_str(row, "mesh_ip");
    char **ret = data;
    if (ip && !*ret)
        *ret = xstrdup(ip);
}

int netrecords_remote(struct store *s, const struct netrec_set *set,
                      const char *node_id, struct am_network *w)
{
    struct group *g = xcalloc(set->n + 1, sizeof(*g));
    size_t n_g = 0, n_macs = 0;
    int e = 0;
    for (size_t i = 0; i < set->n && e == 0;) {
        size_t j = i;
        while (j < set->n &&
               streq(set->by_node[j]->node_id, set->by_node[i]->node_id))
            j++;
        const char *node = set->by_node[i]->node_id;
        char *vtep = NULL;
        /* A removed node, or one without a mesh address, carries
         * nothing. */
        if (!streq(node, node_id) &&
            (e = store_query_each(s, vtep_row, &vtep, "SELECT mesh_ip FROM "
                                  "nodes WHERE id = $1 AND removed_at IS "
                                  "NULL", "s", node)) == 0 &&
            vtep) {
            g[n_g++] = (struct group){ i, j - i, vtep };
            n_macs += j - i;
        } else {
            free(vtep);
        }
        i = j;
    }
    if (e == 0) {
        qsort(g, n_g, sizeof(*g), group_cmp);
        w->vteps = xcalloc(n_g + 1, sizeof(*w->vteps));
        w->macs = xcalloc(n_macs + 1, sizeof(*w->macs));
        for (size_t k = 0; k < n_g; k++) {
            w->vteps[w->n_vteps++] = xstrdup(g[k].vtep);
            for (size_t i = g[k].at; i < g[k].at + g[k].n; i++)
                w->macs[w->n_macs++] = (struct am_remote_mac){
                    .mac = xstrdup(set->by_node[i]->mac),
                    .vtep = xstrdup(g[k].vtep),
                };
        }
    }
    for (size_t k = 0; k < n_g; k++)
        free(g[k].vtep);
    free(g);
    return e;
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
