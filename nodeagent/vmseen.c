/* The agent's record of what the controller holds of each VM, sorted by
 * VM id (see vmseen.h). */
#include "nodeagent/vmseen.h"

#include "common/jsonutil.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where id is or would go. */
static size_t seen_at(const struct vm_seen_set *s, const char *id, bool *found)
{
    return sorted_at(s->v, s->n, sizeof(*s->v), offsetof(struct vm_seen, id),
                     id, found);
}

/* id as an entry holds it: a longer one (a document may carry up to 64
 * characters, not only UUIDs) cut to fit, so that looking it up again
 * finds the entry instead of adding one more each time. */
static void key_of(const char *id, char out[37])
{
    snprintf(out, 37, "%s", id);
}

struct vm_seen *vm_seen_get(struct vm_seen_set *s, const char *id)
{
    char key[37];
    key_of(id, key);
    bool found;
    size_t at = seen_at(s, key, &found);
    if (found)
        return &s->v[at];
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    memmove(&s->v[at + 1], &s->v[at], (s->n - at) * sizeof(*s->v));
    s->n++;
    struct vm_seen *e = &s->v[at];
    *e = (struct vm_seen){ 0 };
    memcpy(e->id, key, sizeof(e->id));
    return e;
}

void vm_seen_forget(struct vm_seen_set *s, const json_t *desired)
{
    size_t n_ids, k = 0;
    _cleanup_free_ const char **ids =
        json_keys_sorted(json_object_get(desired, "vms"), "id", &n_ids);
    for (size_t i = 0; i < s->n; i++)
        if (json_keys_has(ids, n_ids, s->v[i].id))
            s->v[k++] = s->v[i];
    s->n = k;
    /* A node that shed most of its VMs gives the room back. */
    if (s->cap > 64 && s->n < s->cap / 4) {
        s->cap = s->n > 16 ? s->n : 16;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
}

void vm_seen_touched(struct vm_seen_set *s, const char *id)
{
    if (!id) {
        for (size_t i = 0; i < s->n; i++)
            s->v[i].xml_known = false;
        return;
    }
    char key[37];
    key_of(id, key);
    bool found;
    size_t at = seen_at(s, key, &found);
    if (found)
        s->v[at].xml_known = false;
}

void vm_seen_free(struct vm_seen_set *s)
{
    free(s->v);
    *s = (struct vm_seen_set){ 0 };
}
