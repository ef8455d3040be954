/* The documents woken long polls are answered from: one per node, built
 * once per committed change and shared. Validity is a generation count
 * per node (and one for every node) that each invalidation bumps; a
 * build remembers the counts it began under and is served only while
 * they still hold. */
#include "controller/desired_cache.h"

#include "api/desired_delta.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/desired.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* How many earlier revisions of a node's document a delta can start
 * from: an agent more changes behind gets the whole document. */
#define DELTA_BASES 8

/* One node's cached document. `build` is held while it is looked at or
 * built, so the polls of one node woken together wait for one build
 * instead of each reading the store; other nodes' polls are not held up. */
struct entry {
    struct entry *next;
    char *node_id;
    uint64_t gen; /* atomic: bumped by each invalidation of this node */
    bool whole;   /* atomic: the next build reads everything */
    pthread_mutex_t build;
    /* under `build`: */
    bool built;                 /* state and text below are a build's */
    uint64_t built_gen, built_epoch;
    int state;                  /* 0, or -ENOENT (removed) */
    int64_t revision;           /* the build's, when state is 0 */
    /* The whole text, when state is 0; with parts, made from them when
     * first asked for (an agent that merges deltas rarely needs it). */
    struct desired_text *text;
    /* Once the node's agent asked for deltas: the built document cut into
     * parts (with texts), and the digests of the documents built before
     * it, newest first, the bases deltas are made from. */
    bool deltas;
    struct desired_parts *parts;
    bool parts_approved; /* parts are an approved node's document */
    struct desired_parts *past[DELTA_BASES];
    int64_t ambiguous; /* a revision built twice differently; -1: none */
};

/* One controller per process: the table lives as long as the process.
 * Entries are few (one per node that long-polls) and small. */
#define BUCKETS 1024
static struct entry *table[BUCKETS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t epoch; /* atomic: bumped when every node changed */

static struct entry **bucket(const char *node_id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *c = node_id; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    return &table[h % BUCKETS];
}

/* node_id's entry, made when `make` and there is none (else NULL). */
static struct entry *entry_of(const char *node_id, bool make)
{
    struct entry **head = bucket(node_id);
    pthread_mutex_lock(&table_lock);
    struct entry *e = *head;
    while (e && !streq(e->node_id, node_id))
        e = e->next;
    if (!e && make) {
        e = xcalloc(1, sizeof(*e));
        e->node_id = xstrdup(node_id);
        pthread_mutex_init(&e->build, NULL);
        e->ambiguous = -1;
        e->next = *head;
        *head = e;
    }
    pthread_mutex_unlock(&table_lock);
    return e;
}

void desired_cache_invalidate(const char *node_id)
{
    if (!node_id) {
        __atomic_add_fetch(&epoch, 1, __ATOMIC_SEQ_CST);
        return;
    }
    /* A node no poll has asked about has nothing cached. */
    struct entry *e = entry_of(node_id, false);
    if (e)
        __atomic_add_fetch(&e->gen, 1, __ATOMIC_SEQ_CST);
}

void desired_cache_rebuild(const char *node_id)
{
    struct entry *e = entry_of(node_id, false);
    if (!e)
        return;
    __atomic_store_n(&e->whole, true, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&e->gen, 1, __ATOMIC_SEQ_CST);
}

void desired_text_unref(struct desired_text *t)
{
    if (t && __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(t);
}

static struct desired_text *text_ref(struct desired_text *t)
{
    __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
    return t;
}

/* A text of `len` bytes (and a NUL) at `revision`, one reference held. */
static struct desired_text *text_new(int64_t revision, const char *s,
                                     size_t len)
{
    struct desired_text *t = xmalloc(sizeof(*t) + len + 1);
    t->refs = 1;
    t->revision = revision;
    memcpy(t->text, s, len);
    t->text[len] = '\0';
    t->len = len;
    return t;
}

/* The document as http_reply_json() writes it, one reference held. */
static struct desired_text *text_of(json_t *doc)
{
    _cleanup_free_ char *s = json_dumps(doc, JSON_INDENT(0) | JSON_COMPACT);
    if (!s)
        abort(); /* jansson fails only when out of memory */
    size_t len = strlen(s);
    s = xrealloc(s, len + 2);
    s[len++] = '\n';
    return text_new(json_int(doc, "revision", -1), s, len);
}

/* The whole text of the current build, made from its parts when the
 * build kept none. */
static struct desired_text *text_current(struct entry *c)
{
    if (!c->text) {
        size_t len = 0;
        _cleanup_free_ char *s = desired_parts_text(c->parts, &len);
        if (!s)
            abort(); /* the current parts always hold their texts */
        c->text = text_new(c->revision, s, len);
    }
    return text_ref(c->text);
}

/* FOG_TEST_DESIRED_VERIFY's check of `parts`, built from `base`: its VMs
 * must be those of a whole build from the same snapshot (the members
 * are read whole by both, some from memory that may change between). */
static void verify_vms(struct app *a, const char *node_id,
                       const struct desired_parts *base,
                       const struct desired_parts *parts)
{
    json_auto_t *whole = NULL;
    struct desired_parts *check = desired_build(a, node_id, &whole) == 0 ?
                                  desired_parts_new(whole) : NULL;
    if (!check)
        return; /* a store error: nothing to compare */
    bool same = check->n_vms == parts->n_vms;
    for (size_t i = 0; same && i < check->n_vms; i++)
        same = streq(check->vms[i].key, parts->vms[i].key) &&
               memcmp(check->vms[i].hash, parts->vms[i].hash, 16) == 0;
    if (!same) {
        size_t len = 0;
        _cleanup_free_ char *d = desired_delta_text(parts, check, &len);
        log_error("desired state of node %s at %lld: the build from %lld "
                  "differs from the whole one by %s", node_id,
                  (long long)parts->revision, (long long)base->revision,
                  d ? d : "(no delta)");
        abort();
    }
    desired_parts_free(check);
}

struct vm_rev {
    char *id;
    int64_t rev;
};

static int vm_rev_cmp(const void *x, const void *y)
{
    const char *a = ((const struct vm_rev *)x)->id;
    const char *b = ((const struct vm_rev *)y)->id;
    return strcmp(a ? a : "", b ? b : "");
}

struct vm_revs {
    struct vm_rev *v;
    size_t n, cap;
};

static void vm_rev_add(struct store_row *row, void *data)
{
    struct vm_revs *r = data;
    const char *id = store_row_str(row, "id");
    if (!id)
        return;
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
    }
    r->v[r->n++] = (struct vm_rev){ xstrdup(id),
                                    store_row_int(row, "desired_rev", 0) };
}

/* The VMs of node_id's document to read again since `base` was built:
 * those whose part changed since (schema 047), those on the node base
 * lacks and those of base no longer on it. 0 and
 * *ret_ids (NULL-ended, *ret_n of them; each and it freed by the
 * caller), or -errno. Inside the caller's read transaction. */
static int changed_vms(struct app *a, const char *node_id,
                       const struct desired_parts *base, char ***ret_ids,
                       size_t *ret_n)
{
    struct vm_revs on = { 0 };
    int e = store_query_each(a->store, vm_rev_add, &on, "SELECT id, "
                             "desired_rev FROM vms WHERE node_id = $1 AND "
                             "deleted_at IS NULL", "s", node_id);
    if (e < 0) {
        for (size_t i = 0; i < on.n; i++)
            free(on.v[i].id);
        free(on.v);
        return e;
    }
    size_t n = on.n, i, j = 0, n_ids = 0;
    /* In the parts' order (a store may collate otherwise), then walked
     * beside base's. */
    if (n > 0) /* none: on.v is NULL, which qsort must not be given */
        qsort(on.v, n, sizeof(*on.v), vm_rev_cmp);
    char **ids = xcalloc(n + base->n_vms + 1, sizeof(char *));
    for (i = 0; i < n; i++) {
        int c = 1;
        while (j < base->n_vms &&
               (c = strcmp(base->vms[j].key, on.v[i].id)) < 0)
            ids[n_ids++] = xstrdup(base->vms[j++].key); /* gone */
        if (c == 0)
            j++;
        if (c != 0 || on.v[i].rev > base->revision)
            ids[n_ids++] = on.v[i].id;
        else
            free(on.v[i].id);
    }
    while (j < base->n_vms)
        ids[n_ids++] = xstrdup(base->vms[j++].key);
    free(on.v);
    *ret_ids = ids;
    *ret_n = n_ids;
    return 0;
}

/* What `cut` says outside the document, put into its parts. */
static void cut_put(struct desired_parts *parts, struct desired_cut *cut)
{
    if (cut->networks)
        desired_parts_put(parts, "networks", TAKE_PTR(cut->networks));
    if (cut->net_vms) {
        desired_parts_put_runs(parts, cut->runs, cut->n_runs);
        free(TAKE_PTR(cut->runs));
        cut->n_runs = 0;
    }
}

/* The parts of node_id's document at revision `node` says (its nodes
 * row) made from `base` (its document at an earlier revision, with
 * texts): only the VMs changed since are read, every member whole. NULL
 * when a change since may have touched anything (read everything then);
 * *ret_err a store error (nothing built). Inside the caller's read
 * transaction. */
static struct desired_parts *build_from(struct app *a, const char *node_id,
                                        const struct desired_parts *base,
                                        const json_t *node, int *ret_err,
                                        size_t *ret_n)
{
    char **ids = NULL;
    size_t n = 0;
    int64_t revision = json_int(node, "revision", -1);
    *ret_err = 0;
    if (revision < base->revision ||
        json_int(node, "whole_rev", 0) > base->revision)
        return NULL;
    int e = changed_vms(a, node_id, base, &ids, &n);
    if (e < 0) {
        *ret_err = e;
        return NULL;
    }
    json_auto_t *doc = NULL;
    struct desired_cut cut = { 0 };
    struct desired_parts *parts = NULL;
    if ((e = desired_build_cut(a, node_id, (const char *const *)ids, n, &doc,
                               &cut)) < 0)
        *ret_err = e;
    else
        parts = desired_parts_update(base, doc, (const char *const *)ids, n);
    if (parts)
        cut_put(parts, &cut);
    desired_cut_clear(&cut);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    *ret_n = n;
    /* desired_verify(): each document built from the one before (only
     * the VMs a change named read) is built whole too, from the same
     * snapshot, and the controller aborts when their VMs differ: a change
     * that touched more than it said. */
    if (parts && desired_verify())
        verify_vms(a, node_id, base, parts);
    return parts;
}

/* Read and serialise node_id's document from one snapshot of the store:
 * its row says whether it is removed or approved, and at which revision.
 * With ret_parts, the document is cut into parts and, when it could be,
 * *ret_text is NULL: its text is made from the parts if it is asked for
 * (serialising a document of 200 VMs took as long as cutting it). With
 * `base` too (the parts of the approved node's document built before),
 * only the VMs changed since are read, where the store can say which.
 * *ret_approved: whether the node is approved. */
static int build(struct app *a, const char *node_id,
                 const struct desired_parts *base, int64_t *ret_revision,
                 struct desired_text **ret_text,
                 struct desired_parts **ret_parts, bool *ret_approved)
{
    int64_t t0 = now_us();
    int e = store_tx_begin_read(a->store);
    if (e < 0)
        return e;
    json_auto_t *node = NULL, *doc = NULL;
    struct desired_parts *parts = NULL;
    size_t n_read = 0;
    e = store_query_one(a->store, &node, "SELECT revision, approved, "
                        "whole_rev FROM nodes WHERE id = $1 AND removed_at IS "
                        "NULL", "s", node_id);
    bool approved = e == 0 && json_int(node, "approved", 0) != 0;
    *ret_approved = approved;
    if (approved && base && ret_parts)
        parts = build_from(a, node_id, base, node, &e, &n_read);
    struct desired_cut cut = { 0 };
    bool cut_made = false;
    if (e == 0 && !parts && approved) {
        /* Inside: the same snapshot. */
        cut_made = ret_parts != NULL;
        e = ret_parts ? desired_build_cut(a, node_id, NULL, 0, &doc, &cut)
                      : desired_build(a, node_id, &doc);
    }
    else if (e == 0 && !parts)
        doc = desired_build_unapproved(node_id,
                                       json_int(node, "revision", 0));
    store_tx_rollback(a->store); /* read only: nothing to keep */
    if (e < 0) {
        desired_parts_free(parts);
        desired_cut_clear(&cut);
        return e;
    }
    int64_t t1 = now_us();
    if (!parts && ret_parts)
        parts = desired_parts_new(doc);
    if (parts && cut_made)
        cut_put(parts, &cut);
    else if (cut_made) /* not a document to cut: whole, as it was */
        desired_cut_join(doc, &cut);
    desired_cut_clear(&cut);
    int64_t t2 = now_us();
    *ret_text = parts ? NULL : text_of(doc);
    *ret_revision = parts ? parts->revision : json_int(doc, "revision", -1);
    if (ret_parts)
        *ret_parts = parts;
    /* The wall clock, for timing a change's way to the agent. */
    char how[48] = "whole";
    if (!doc)
        snprintf(how, sizeof(how), "%zu VMs from %lld", n_read,
                 (long long)base->revision);
    log_debug("desired state of node %s revision %lld (%s): read %" PRId64
              " us, parts %" PRId64 " us, text %" PRId64 " us, built at %"
              PRId64 " (unix us)", node_id, (long long)*ret_revision, how,
              t1 - t0, t2 - t1, now_us() - t2, now_us());
    return 0;
}

/* Keep `parts` (the new build's, may be NULL) as the current cut, the
 * former one's digests as a base. A revision built twice with different
 * contents is no base at all: an agent holding it may hold either. */
static void parts_keep(struct entry *c, struct desired_parts *parts)
{
    struct desired_parts *old = c->parts;
    c->parts = parts;
    if (!old)
        return;
    if (parts && old->revision == parts->revision) {
        if (memcmp(desired_parts_whole(old), desired_parts_whole(parts),
                   sizeof(old->whole)) != 0)
            c->ambiguous = old->revision;
        desired_parts_free(old);
        return;
    }
    desired_parts_drop_text(old);
    desired_parts_free(c->past[DELTA_BASES - 1]);
    memmove(&c->past[1], &c->past[0], (DELTA_BASES - 1) * sizeof(c->past[0]));
    c->past[0] = old;
}

/* The delta from revision `since` to the current build, when a base for
 * it is kept and a delta can say the change; else NULL. */
static struct desired_text *delta_of(struct entry *c, int64_t since)
{
    if (!c->parts || since < 0 || since > c->parts->revision ||
        since == c->ambiguous)
        return NULL;
    /* At the agent's own revision (a poll timed out): an empty delta. */
    const struct desired_parts *base =
        since == c->parts->revision ? c->parts : NULL;
    for (size_t i = 0; i < DELTA_BASES && !base; i++)
        if (c->past[i] && c->past[i]->revision == since)
            base = c->past[i];
    if (!base)
        return NULL;
    size_t len = 0;
    _cleanup_free_ char *d = desired_delta_text(base, c->parts, &len);
    if (!d)
        return NULL;
    struct desired_text *t = xmalloc(sizeof(*t) + len + 1);
    t->refs = 1;
    t->revision = c->parts->revision;
    memcpy(t->text, d, len + 1);
    t->len = len;
    return t;
}

int desired_cache_get(struct app *a, const char *node_id, int64_t since,
                      int64_t rev_min, bool delta,
                      struct desired_text **ret_text)
{
    struct entry *c = entry_of(node_id, true);
    log_debug("desired state of node %s asked from %lld at %" PRId64
              " (unix us)", node_id, (long long)since, now_us());

    pthread_mutex_lock(&c->build);
    c->deltas = c->deltas || delta;
    /* Read before the store is: a change committed before this read is in
     * what the build reads, one committed after it bumps past it. */
    uint64_t gen = __atomic_load_n(&c->gen, __ATOMIC_SEQ_CST);
    uint64_t ep = __atomic_load_n(&epoch, __ATOMIC_SEQ_CST);
    bool fresh = c->built && c->built_gen == gen && c->built_epoch == ep &&
                 (c->state < 0 || (c->revision >= since &&
                                   c->revision >= rev_min));
    if (!fresh) {
        struct desired_text *t = NULL;
        struct desired_parts *parts = NULL;
        int64_t rev = -1;
        bool whole = __atomic_exchange_n(&c->whole, false, __ATOMIC_SEQ_CST);
        bool approved = false;
        const struct desired_parts *base =
            c->built && c->state == 0 && c->parts_approved && !whole
                ? c->parts : NULL;
        int e = build(a, node_id, base, &rev, &t, c->deltas ? &parts : NULL,
                      &approved);
        if (e < 0 && e != -ENOENT) {
            pthread_mutex_unlock(&c->build);
            return e;
        }
        parts_keep(c, parts);
        c->parts_approved = approved;
        desired_text_unref(c->text);
        c->text = t;
        c->revision = rev;
        c->state = e;
        c->built = true;
        c->built_gen = gen;
        c->built_epoch = ep;
    }
    int e = c->state;
    int64_t t0 = now_us();
    struct desired_text *d = e == 0 && delta ? delta_of(c, since) : NULL;
    if (d)
        log_debug("desired state delta of node %s from %lld to %lld: %zu "
                  "bytes in %" PRId64 " us, at %" PRId64 " (unix us)",
                  node_id, (long long)since, (long long)d->revision, d->len,
                  now_us() - t0, now_us());
    if (d)
        *ret_text = d;
    else if (e == 0)
        *ret_text = text_current(c);
    pthread_mutex_unlock(&c->build);
    return e;
}
