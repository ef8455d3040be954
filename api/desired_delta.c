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

void desired_parts_free(struct desired_parts *p)
{
    if (!p)
        return;
    parts_clear(p->vms, p->n_vms);
    parts_clear(p->members, p->n_members);
    free(p);
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
    uint8_t h[SHA256_LEN];
    sha256(b.data, b.len, h);
    memcpy(p->whole, h, 16);
    buf_free(&b);
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
        if (!streq(k, "vms") && !streq(k, "revision"))
            part_set(&p->members[p->n_members++], k, v);
    qsort(p->members, p->n_members, sizeof(*p->members), part_cmp);
    parts_whole(p);
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
    parts_whole(p);
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
    parts_whole(p);
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

char *desired_delta_text(const struct desired_parts *base,
                         const struct desired_parts *cur, size_t *ret_len)
{
    /* A member dropped cannot be said in a delta. */
    for (size_t i = 0; i < base->n_members; i++)
        if (!part_find(cur->members, cur->n_members, base->members[i].key))
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
    buf_puts(&b, "]}\n");
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
    buf_puts(&b, "]}\n");
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

int desired_delta_apply(const json_t *whole, const json_t *delta,
                        json_t **ret_doc)
{
    json_t *from = json_object_get(delta, DESIRED_DELTA_FROM);
    json_t *rev = json_object_get(delta, "revision");
    json_t *vms = json_object_get(delta, "vms");
    json_t *removed = json_object_get(delta, DESIRED_DELTA_REMOVED);
    if (!json_is_object(delta) || !json_is_integer(from) ||
        !json_is_integer(rev) || (vms && !json_is_array(vms)) ||
        (removed && !json_is_array(removed)))
        return -EINVAL;
    json_t *old_rev = json_object_get(whole, "revision");
    json_t *old_vms = json_object_get(whole, "vms");
    if (!json_is_object(whole) || !json_is_integer(old_rev) ||
        json_integer_value(old_rev) != json_integer_value(from) ||
        !json_is_array(old_vms))
        return -ESTALE;

    /* Ids the delta names: changed (to their new object) or removed. */
    json_auto_t *named = json_object();
    size_t i;
    json_t *v;
    json_array_foreach(vms, i, v) {
        const char *id = json_str(v, "id");
        if (!json_is_object(v) || !id || json_object_get(named, id))
            return -EINVAL;
        json_object_set(named, id, v);
    }
    json_array_foreach(removed, i, v) {
        const char *id = json_string_value(v);
        if (!id || json_object_get(named, id))
            return -EINVAL;
        json_object_set_new(named, id, json_null());
    }
    size_t n = 0, cap = json_array_size(old_vms) + json_array_size(vms);
    _cleanup_free_ json_t **list = xcalloc(cap + 1, sizeof(*list));
    json_array_foreach(old_vms, i, v) {
        const char *id = json_str(v, "id");
        if (!id)
            return -EINVAL; /* not a document we merged or took whole */
        if (!json_object_get(named, id))
            list[n++] = v;
    }
    json_array_foreach(vms, i, v)
        list[n++] = v;
    qsort(list, n, sizeof(*list), vm_cmp);

    json_t *doc = json_copy((json_t *)whole); /* shallow: parts shared */
    const char *k;
    json_object_foreach((json_t *)delta, k, v)
        if (!streq(k, DESIRED_DELTA_FROM) && !streq(k, "vms") &&
            !streq(k, DESIRED_DELTA_REMOVED))
            json_object_set(doc, k, v);
    json_t *out = json_array();
    for (i = 0; i < n; i++)
        json_array_append(out, list[i]);
    json_object_set_new(doc, "vms", out);
    *ret_doc = doc;
    return 0;
}
