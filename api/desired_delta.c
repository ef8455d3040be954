/* Deltas of the desired-state document (desired_delta.h): the controller
 * cuts each document it serves into per-VM and per-member digests and
 * texts; the agent merges a delta into the whole document it holds. */
#include "api/desired_delta.h"

#include "common/buf.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Below this many VMs a delta is sent however much changed. */
#define DELTA_SMALL 8

static void part_hash(const char *text, uint8_t out[16])
{
    uint8_t h[SHA256_LEN];
    sha256(text, strlen(text), h);
    memcpy(out, h, 16);
}

static int part_cmp(const void *x, const void *y)
{
    return strcmp(((const struct desired_part *)x)->key,
                  ((const struct desired_part *)y)->key);
}

static void part_set(struct desired_part *p, const char *key, const json_t *v)
{
    p->key = xstrdup(key);
    p->text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!p->text)
        abort(); /* jansson fails only when out of memory */
    part_hash(p->text, p->hash);
}

static void parts_clear(struct desired_part *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].text);
    }
    free(v);
}

static void runs_clear(struct desired_run **runs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        desired_run_unref(runs[i]);
    free(runs);
}

void desired_parts_free(struct desired_parts *p)
{
    if (!p)
        return;
    parts_clear(p->vms, p->n_vms);
    parts_clear(p->members, p->n_members);
    runs_clear(p->runs, p->n_runs);
    free(p);
}

struct desired_run *desired_run_new(const char *key,
                                    struct desired_part *items, size_t n)
{
    struct desired_run *r = xcalloc(1, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    r->refs = 1;
    r->key = xstrdup(key);
    r->items = items;
    r->n = n;
    for (size_t i = 0; i < n; i++)
        part_hash(items[i].text, items[i].hash);
    if (n > 0)
        qsort(r->items, n, sizeof(*r->items), part_cmp);
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        buf_puts(&b, items[i].key);
        buf_append(&b, "", 1);
        buf_append(&b, items[i].hash, 16);
    }
    uint8_t h[SHA256_LEN];
    sha256(b.data ? b.data : "", b.len, h);
    memcpy(r->digest, h, 16);
    buf_free(&b);
    return r;
}

struct desired_run *desired_run_ref(struct desired_run *r)
{
    __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
    return r;
}

void desired_run_unref(struct desired_run *r)
{
    if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    parts_clear(r->items, r->n);
    pthread_mutex_destroy(&r->lock);
    free(r->diff_changed);
    free(r->diff_removed);
    free(r->key);
    free(r);
}

static int run_cmp(const void *x, const void *y)
{
    return strcmp((*(struct desired_run *const *)x)->key,
                  (*(struct desired_run *const *)y)->key);
}

/* p->whole: every key and digest in order. */
static void parts_whole(struct desired_parts *p)
{
    struct buf b = BUF_INIT;
    size_t i;
    for (i = 0; i < p->n_vms; i++) {
        buf_puts(&b, p->vms[i].key);
        buf_append(&b, "", 1);
        buf_append(&b, p->vms[i].hash, 16);
    }
    buf_append(&b, "\n", 1);
    for (i = 0; i < p->n_members; i++) {
        buf_puts(&b, p->members[i].key);
        buf_append(&b, "", 1);
        buf_append(&b, p->members[i].hash, 16);
    }
    if (p->has_net_vms) {
        buf_append(&b, "\n" AGENT_NET_VMS, strlen(AGENT_NET_VMS) + 1);
        for (i = 0; i < p->n_runs; i++) {
            buf_puts(&b, p->runs[i]->key);
            buf_append(&b, "", 1);
            buf_append(&b, p->runs[i]->digest, 16);
        }
    }
    uint8_t h[SHA256_LEN];
    sha256(b.data, b.len, h);
    memcpy(p->whole, h, 16);
    buf_free(&b);
}

const uint8_t *desired_parts_whole(struct desired_parts *p)
{
    if (!p->whole_ok) {
        parts_whole(p);
        p->whole_ok = true;
    }
    return p->whole;
}

/* p's AGENT_NET_VMS list cut from `items`, a run per id prefix: 0, or
 * -EINVAL when it is no such list (two items with one id among them). */
static int runs_of(struct desired_parts *p, const json_t *items)
{
    if (!json_is_array(items))
        return -EINVAL;
    size_t n = json_array_size(items), i;
    struct desired_part *all = xcalloc(n + 1, sizeof(*all));
    json_t *v;
    int e = 0;
    json_array_foreach(items, i, v) {
        const char *id = json_str(v, "id");
        if (!json_is_object(v) || !id || !strchr(id, '/')) {
            e = -EINVAL;
            n = i;
            break;
        }
        part_set(&all[i], id, v);
    }
    if (e == 0 && n > 0)
        qsort(all, n, sizeof(*all), part_cmp);
    for (i = 1; e == 0 && i < n; i++)
        if (streq(all[i - 1].key, all[i].key))
            e = -EINVAL;
    p->has_net_vms = true;
    p->runs = xcalloc(n + 1, sizeof(*p->runs));
    for (i = 0; e == 0 && i < n;) {
        size_t plen = (size_t)(strchr(all[i].key, '/') - all[i].key), j = i;
        while (j < n && strncmp(all[j].key, all[i].key, plen + 1) == 0)
            j++;
        struct desired_part *run = xcalloc(j - i + 1, sizeof(*run));
        memcpy(run, &all[i], (j - i) * sizeof(*run));
        memset(&all[i], 0, (j - i) * sizeof(*run));
        _cleanup_free_ char *key = xstrndup(run[0].key, plen);
        p->runs[p->n_runs++] = desired_run_new(key, run, j - i);
        i = j;
    }
    parts_clear(all, n);
    return e;
}

struct desired_parts *desired_parts_new(const json_t *doc)
{
    json_t *vms = json_object_get(doc, "vms");
    json_t *rev = json_object_get(doc, "revision");
    if (!json_is_object(doc) || !json_is_array(vms) || !json_is_integer(rev))
        return NULL;
    struct desired_parts *p = xcalloc(1, sizeof(*p));
    p->revision = json_integer_value(rev);
    p->vms = xcalloc(json_array_size(vms) + 1, sizeof(*p->vms));
    size_t i;
    json_t *vm;
    json_array_foreach(vms, i, vm) {
        const char *id = json_str(vm, "id");
        if (!json_is_object(vm) || !id) {
            desired_parts_free(p);
            return NULL;
        }
        part_set(&p->vms[p->n_vms++], id, vm);
    }
    qsort(p->vms, p->n_vms, sizeof(*p->vms), part_cmp);
    for (i = 1; i < p->n_vms; i++)
        if (streq(p->vms[i - 1].key, p->vms[i].key)) {
            desired_parts_free(p); /* two VMs with one id: no delta */
            return NULL;
        }
    p->members = xcalloc(json_object_size(doc) + 1, sizeof(*p->members));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)doc, k, v)
        if (!streq(k, "vms") && !streq(k, "revision") &&
            !streq(k, AGENT_NET_VMS))
            part_set(&p->members[p->n_members++], k, v);
    qsort(p->members, p->n_members, sizeof(*p->members), part_cmp);
    json_t *items = json_object_get(doc, AGENT_NET_VMS);
    if (items && runs_of(p, items) < 0) {
        desired_parts_free(p);
        return NULL;
    }
    return p;
}

struct desired_parts *desired_parts_update(const struct desired_parts *base,
                                           const json_t *doc,
                                           const char *const *vm_ids,
                                           size_t n_vm_ids)
{
    /* The changed VMs and every member, cut as a document of their own. */
    struct desired_parts *fresh = desired_parts_new(doc);
    if (!fresh)
        return NULL;
    struct desired_parts *p = xcalloc(1, sizeof(*p));
    p->revision = fresh->revision;
    p->members = TAKE_PTR(fresh->members);
    p->n_members = fresh->n_members;
    fresh->n_members = 0;
    p->has_net_vms = fresh->has_net_vms;
    p->runs = TAKE_PTR(fresh->runs);
    p->n_runs = fresh->n_runs;
    fresh->n_runs = 0;
    p->vms = xcalloc(base->n_vms + fresh->n_vms + 1, sizeof(*p->vms));
    bool ok = true;
    for (size_t i = 0; i < fresh->n_vms; i++) {
        bool named = false;
        for (size_t k = 0; k < n_vm_ids && !named; k++)
            named = streq(vm_ids[k], fresh->vms[i].key);
        ok = ok && named; /* the document holds the changed VMs only */
    }
    for (size_t i = 0, j = 0; ok && (i < base->n_vms || j < fresh->n_vms);) {
        int c = i == base->n_vms ? 1 : j == fresh->n_vms ? -1 :
                strcmp(base->vms[i].key, fresh->vms[j].key);
        if (c >= 0) { /* the new part, in place of base's if any */
            if (c == 0)
                i++;
            p->vms[p->n_vms++] = fresh->vms[j];
            fresh->vms[j++] = (struct desired_part){ 0 };
            continue;
        }
        const struct desired_part *o = &base->vms[i++];
        bool changed = false;
        for (size_t k = 0; k < n_vm_ids && !changed; k++)
            changed = streq(vm_ids[k], o->key);
        if (changed)
            continue; /* changed and gone from the node */
        if (!o->text) {
            ok = false;
            break;
        }
        struct desired_part *n = &p->vms[p->n_vms++];
        n->key = xstrdup(o->key);
        n->text = xstrdup(o->text);
        memcpy(n->hash, o->hash, sizeof(n->hash));
    }
    desired_parts_free(fresh);
    if (!ok) {
        desired_parts_free(p);
        return NULL;
    }
    return p;
}

void desired_parts_put(struct desired_parts *p, const char *key, char *text)
{
    size_t i = 0;
    while (i < p->n_members && strcmp(p->members[i].key, key) < 0)
        i++;
    if (i < p->n_members && streq(p->members[i].key, key)) {
        free(p->members[i].text);
    } else {
        p->members = xrealloc(p->members,
                              (p->n_members + 2) * sizeof(*p->members));
        memmove(&p->members[i + 1], &p->members[i],
                (p->n_members - i) * sizeof(*p->members));
        p->n_members++;
        p->members[i] = (struct desired_part){ .key = xstrdup(key) };
    }
    p->members[i].text = text;
    part_hash(text, p->members[i].hash);
    p->whole_ok = false;
}

void desired_parts_put_runs(struct desired_parts *p, struct desired_run **runs,
                            size_t n)
{
    runs_clear(p->runs, p->n_runs);
    p->runs = xcalloc(n + 1, sizeof(*p->runs));
    if (n > 0) {
        memcpy(p->runs, runs, n * sizeof(*runs));
        qsort(p->runs, n, sizeof(*p->runs), run_cmp);
    }
    p->n_runs = n;
    p->has_net_vms = true;
    p->whole_ok = false;
}

void desired_parts_drop_text(struct desired_parts *p)
{
    for (size_t i = 0; p && i < p->n_vms; i++)
        free(TAKE_PTR(p->vms[i].text));
    for (size_t i = 0; p && i < p->n_members; i++)
        free(TAKE_PTR(p->members[i].text));
}

static const struct desired_part *part_find(const struct desired_part *v,
                                            size_t n, const char *key)
{
    struct desired_part k = { .key = (char *)key };
    return bsearch(&k, v, n, sizeof(*v), part_cmp);
}

static void put_string(struct buf *b, const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!t)
        abort(); /* not UTF-8: keys and ids come from our own parts */
    buf_puts(b, t);
    free(t);
}

/* The items that changed from run rb to rc (either may be NULL: none),
 * each one's text after a comma into ch and each removed one's id into
 * rm; *ret_n how many. -EINVAL when a text is missing. */
static int run_diff(const struct desired_run *rb, const struct desired_run *rc,
                    struct buf *ch, struct buf *rm, size_t *ret_n)
{
    size_t x = 0, y = 0, nb = rb ? rb->n : 0, nc = rc ? rc->n : 0, n = 0;
    while (x < nb || y < nc) {
        int k = x == nb ? 1 : y == nc ? -1 :
                strcmp(rb->items[x].key, rc->items[y].key);
        if (k < 0) { /* gone */
            buf_puts(rm, ",");
            put_string(rm, rb->items[x++].key);
            n++;
            continue;
        }
        const struct desired_part *it = &rc->items[y++];
        bool same = k == 0 && memcmp(rb->items[x].hash, it->hash, 16) == 0;
        x += k == 0;
        if (same)
            continue;
        if (!it->text)
            return -EINVAL;
        buf_puts(ch, ",");
        buf_puts(ch, it->text);
        n++;
    }
    *ret_n = n;
    return 0;
}

/* run_diff(rb, rc) appended to ch and rm (NULL: only counted), from what
 * rc keeps of its last comparison where it was with rb's content. */
static int run_diff_kept(const struct desired_run *rb, struct desired_run *rc,
                         struct buf *ch, struct buf *rm, size_t *ret_n)
{
    pthread_mutex_lock(&rc->lock);
    if (!rc->diffed || memcmp(rc->diff_from, rb->digest, 16) != 0) {
        struct buf c = BUF_INIT, r = BUF_INIT;
        size_t n = 0;
        if (run_diff(rb, rc, &c, &r, &n) < 0) {
            pthread_mutex_unlock(&rc->lock);
            buf_free(&c);
            buf_free(&r);
            return -EINVAL;
        }
        free(rc->diff_changed);
        free(rc->diff_removed);
        rc->diff_changed = buf_steal(&c);
        rc->diff_removed = buf_steal(&r);
        rc->diff_n = n;
        memcpy(rc->diff_from, rb->digest, 16);
        rc->diffed = true;
    }
    if (ch)
        buf_puts(ch, rc->diff_changed);
    if (rm)
        buf_puts(rm, rc->diff_removed);
    *ret_n = rc->diff_n;
    pthread_mutex_unlock(&rc->lock);
    return 0;
}

/* The items of AGENT_NET_VMS that changed from base to cur, each one's
 * text after a comma into `changed` (NULL: only counted) and each removed
 * one's id into `removed`; *ret_n how many of each, *ret_total cur's
 * items. Runs cur shares with base are not looked into, and a run
 * compared with a base of the same content before is not again. -EINVAL
 * when a text is missing. */
static int runs_diff(const struct desired_parts *base,
                     const struct desired_parts *cur, struct buf *changed,
                     struct buf *removed, size_t *ret_n, size_t *ret_total)
{
    size_t n = 0, total = 0;
    for (size_t i = 0, j = 0; i < base->n_runs || j < cur->n_runs;) {
        struct desired_run *b = i < base->n_runs ? base->runs[i] : NULL;
        struct desired_run *c = j < cur->n_runs ? cur->runs[j] : NULL;
        int cmp = !b ? 1 : !c ? -1 : strcmp(b->key, c->key);
        struct desired_run *rb = cmp <= 0 ? b : NULL;
        struct desired_run *rc = cmp >= 0 ? c : NULL;
        i += cmp <= 0;
        j += cmp >= 0;
        total += rc ? rc->n : 0;
        if (rb == rc ||
            (rb && rc && memcmp(rb->digest, rc->digest, 16) == 0))
            continue;
        size_t k = 0;
        struct buf ch = BUF_INIT, rm = BUF_INIT;
        int e = rb && rc ? run_diff_kept(rb, rc, changed, removed, &k)
                         : run_diff(rb, rc, changed ? changed : &ch,
                                    removed ? removed : &rm, &k);
        buf_free(&ch);
        buf_free(&rm);
        if (e < 0)
            return e;
        n += k;
    }
    *ret_n = n;
    *ret_total = total;
    return 0;
}

char *desired_delta_text(const struct desired_parts *base,
                         const struct desired_parts *cur, size_t *ret_len)
{
    /* A member dropped cannot be said in a delta, nor a list begun. */
    for (size_t i = 0; i < base->n_members; i++)
        if (!part_find(cur->members, cur->n_members, base->members[i].key))
            return NULL;
    if (base->has_net_vms != cur->has_net_vms)
        return NULL;
    size_t n_items = 0, total_items = 0;
    if (cur->has_net_vms &&
        (runs_diff(base, cur, NULL, NULL, &n_items, &total_items) < 0 ||
         (total_items > DELTA_SMALL && n_items * 2 > total_items)))
        return NULL;
    size_t changed = 0;
    for (size_t i = 0; i < cur->n_vms; i++) {
        const struct desired_part *o =
            part_find(base->vms, base->n_vms, cur->vms[i].key);
        if (!o || memcmp(o->hash, cur->vms[i].hash, 16) != 0)
            changed++;
        if (!cur->vms[i].text)
            return NULL;
    }
    if (cur->n_vms > DELTA_SMALL && changed * 2 > cur->n_vms)
        return NULL;
    struct buf b = BUF_INIT;
    buf_printf(&b, "{\"revision\":%lld,\"%s\":%lld", (long long)cur->revision,
               DESIRED_DELTA_FROM, (long long)base->revision);
    for (size_t i = 0; i < cur->n_members; i++) {
        const struct desired_part *m = &cur->members[i];
        const struct desired_part *o =
            part_find(base->members, base->n_members, m->key);
        /* node_id always: the agent checks whose document it is. */
        if (o && memcmp(o->hash, m->hash, 16) == 0 && !streq(m->key, "node_id"))
            continue;
        if (!m->text) {
            buf_free(&b);
            return NULL;
        }
        buf_puts(&b, ",");
        put_string(&b, m->key);
        buf_puts(&b, ":");
        buf_puts(&b, m->text);
    }
    buf_puts(&b, ",\"vms\":[");
    bool first = true;
    for (size_t i = 0; i < cur->n_vms; i++) {
        const struct desired_part *o =
            part_find(base->vms, base->n_vms, cur->vms[i].key);
        if (o && memcmp(o->hash, cur->vms[i].hash, 16) == 0)
            continue;
        if (!first)
            buf_puts(&b, ",");
        first = false;
        buf_puts(&b, cur->vms[i].text);
    }
    buf_printf(&b, "],\"%s\":[", DESIRED_DELTA_REMOVED);
    first = true;
    for (size_t i = 0; i < base->n_vms; i++) {
        if (part_find(cur->vms, cur->n_vms, base->vms[i].key))
            continue;
        if (!first)
            buf_puts(&b, ",");
        first = false;
        put_string(&b, base->vms[i].key);
    }
    buf_puts(&b, "]");
    if (cur->has_net_vms) {
        struct buf ch = BUF_INIT, rm = BUF_INIT;
        runs_diff(base, cur, &ch, &rm, &n_items, &total_items);
        buf_printf(&b, ",\"%s\":[%s],\"%s\":[%s]", AGENT_NET_VMS,
                   ch.len ? ch.data + 1 : "", DESIRED_DELTA_REMOVED_NET_VMS,
                   rm.len ? rm.data + 1 : "");
        buf_free(&ch);
        buf_free(&rm);
    }
    buf_puts(&b, "}\n");
    *ret_len = b.len;
    return buf_steal(&b);
}

char *desired_parts_text(const struct desired_parts *p, size_t *ret_len)
{
    struct buf b = BUF_INIT;
    buf_printf(&b, "{\"revision\":%lld", (long long)p->revision);
    for (size_t i = 0; i < p->n_members; i++) {
        if (!p->members[i].text) {
            buf_free(&b);
            return NULL;
        }
        buf_puts(&b, ",");
        put_string(&b, p->members[i].key);
        buf_puts(&b, ":");
        buf_puts(&b, p->members[i].text);
    }
    buf_puts(&b, ",\"vms\":[");
    for (size_t i = 0; i < p->n_vms; i++) {
        if (!p->vms[i].text) {
            buf_free(&b);
            return NULL;
        }
        if (i > 0)
            buf_puts(&b, ",");
        buf_puts(&b, p->vms[i].text);
    }
    buf_puts(&b, "]");
    if (p->has_net_vms) {
        buf_puts(&b, ",\"" AGENT_NET_VMS "\":[");
        bool first = true;
        for (size_t r = 0; r < p->n_runs; r++)
            for (size_t i = 0; i < p->runs[r]->n; i++) {
                const struct desired_part *it = &p->runs[r]->items[i];
                if (!it->text) {
                    buf_free(&b);
                    return NULL;
                }
                if (!first)
                    buf_puts(&b, ",");
                first = false;
                buf_puts(&b, it->text);
            }
        buf_puts(&b, "]");
    }
    buf_puts(&b, "}\n");
    *ret_len = b.len;
    return buf_steal(&b);
}

bool desired_delta_is(const json_t *answer)
{
    return json_object_get(answer, DESIRED_DELTA_FROM) != NULL;
}

static int vm_cmp(const void *x, const void *y)
{
    return strcmp(json_str(*(json_t *const *)x, "id"),
                  json_str(*(json_t *const *)y, "id"));
}

/* Keyed list `list` of `whole` (may lack it: none) with the delta's
 * changed items (under `list`) and removed ids (under `removed`) merged,
 * in id order: 0 and *ret (new reference), -EINVAL when the delta's are
 * malformed or an item held has no id. */
static int list_merge(const json_t *whole, const json_t *delta,
                      const char *list, const char *removed, json_t **ret)
{
    json_t *old = json_object_get(whole, list);
    json_t *add = json_object_get(delta, list);
    json_t *gone = json_object_get(delta, removed);
    if ((add && !json_is_array(add)) || (gone && !json_is_array(gone)) ||
        (old && !json_is_array(old)))
        return -EINVAL;
    /* Ids the delta names: changed (to their new object) or removed. */
    json_auto_t *named = json_object();
    size_t i;
    json_t *v;
    json_array_foreach(add, i, v) {
        const char *id = json_str(v, "id");
        if (!json_is_object(v) || !id || json_object_get(named, id))
            return -EINVAL;
        json_object_set(named, id, v);
    }
    json_array_foreach(gone, i, v) {
        const char *id = json_string_value(v);
        if (!id || json_object_get(named, id))
            return -EINVAL;
        json_object_set_new(named, id, json_null());
    }
    size_t n = 0, cap = json_array_size(old) + json_array_size(add);
    _cleanup_free_ json_t **items = xcalloc(cap + 1, sizeof(*items));
    json_array_foreach(old, i, v) {
        const char *id = json_str(v, "id");
        if (!id)
            return -EINVAL; /* not a document we merged or took whole */
        if (!json_object_get(named, id))
            items[n++] = v;
    }
    json_array_foreach(add, i, v)
        items[n++] = v;
    if (n > 0)
        qsort(items, n, sizeof(*items), vm_cmp);
    json_t *out = json_array();
    for (i = 0; i < n; i++)
        json_array_append(out, items[i]);
    *ret = out;
    return 0;
}

int desired_delta_apply(const json_t *whole, const json_t *delta,
                        json_t **ret_doc)
{
    json_t *from = json_object_get(delta, DESIRED_DELTA_FROM);
    json_t *rev = json_object_get(delta, "revision");
    if (!json_is_object(delta) || !json_is_integer(from) ||
        !json_is_integer(rev))
        return -EINVAL;
    json_t *old_rev = json_object_get(whole, "revision");
    if (!json_is_object(whole) || !json_is_integer(old_rev) ||
        json_integer_value(old_rev) != json_integer_value(from) ||
        !json_is_array(json_object_get(whole, "vms")))
        return -ESTALE;
    json_auto_t *vms = NULL, *items = NULL;
    bool has_items = json_object_get(whole, AGENT_NET_VMS) ||
                     json_object_get(delta, AGENT_NET_VMS) ||
                     json_object_get(delta, DESIRED_DELTA_REMOVED_NET_VMS);
    int e = list_merge(whole, delta, "vms", DESIRED_DELTA_REMOVED, &vms);
    if (e == 0 && has_items)
        e = list_merge(whole, delta, AGENT_NET_VMS,
                       DESIRED_DELTA_REMOVED_NET_VMS, &items);
    if (e < 0)
        return e;
    json_t *doc = json_copy((json_t *)whole); /* shallow: parts shared */
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)delta, k, v)
        if (!streq(k, DESIRED_DELTA_FROM) && !streq(k, "vms") &&
            !streq(k, DESIRED_DELTA_REMOVED) && !streq(k, AGENT_NET_VMS) &&
            !streq(k, DESIRED_DELTA_REMOVED_NET_VMS))
            json_object_set(doc, k, v);
    json_object_set(doc, "vms", vms);
    if (items)
        json_object_set(doc, AGENT_NET_VMS, items);
    *ret_doc = doc;
    return 0;
}
