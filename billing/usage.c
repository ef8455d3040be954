/* Interval sets, sequence sets and the per-VM usage state built on them.
 * Only integers; no I/O. */
#include "billing/usage.h"

#include <errno.h>

/* A gap in the sequence that never fills is given up on after this many
 * later samples, so the state stays bounded. */
#define SEQ_ABOVE_MAX 4096

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

void usage_ivset_free(struct usage_ivset *s)
{
    free(s->iv);
    s->iv = NULL;
    s->n = s->cap = 0;
}

/* First index whose end >= start (candidates to merge with [start, ...)). */
static size_t iv_lower(const struct usage_ivset *s, int64_t start)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->iv[mid].end < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void usage_ivset_add(struct usage_ivset *s, int64_t start, int64_t end)
{
    if (end <= start)
        return;
    size_t i = iv_lower(s, start), j = i;
    /* Merge every interval that overlaps or touches [start, end). */
    while (j < s->n && s->iv[j].start <= end) {
        start = min64(start, s->iv[j].start);
        end = max64(end, s->iv[j].end);
        j++;
    }
    if (j == i) {
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 4;
            s->iv = xrealloc(s->iv, s->cap * sizeof(*s->iv));
        }
        memmove(s->iv + i + 1, s->iv + i, (s->n - i) * sizeof(*s->iv));
        s->n++;
    } else if (j > i + 1) {
        memmove(s->iv + i + 1, s->iv + j, (s->n - j) * sizeof(*s->iv));
        s->n -= j - i - 1;
    }
    s->iv[i].start = start;
    s->iv[i].end = end;
}

int64_t usage_ivset_len(const struct usage_ivset *s)
{
    int64_t t = 0;
    for (size_t i = 0; i < s->n; i++)
        t += s->iv[i].end - s->iv[i].start;
    return t;
}

int64_t usage_ivset_overlap(const struct usage_ivset *a,
                            const struct usage_ivset *b)
{
    int64_t t = 0;
    size_t i = 0, j = 0;
    while (i < a->n && j < b->n) {
        int64_t lo = max64(a->iv[i].start, b->iv[j].start);
        int64_t hi = min64(a->iv[i].end, b->iv[j].end);
        if (hi > lo)
            t += hi - lo;
        if (a->iv[i].end < b->iv[j].end)
            i++;
        else
            j++;
    }
    return t;
}

int64_t usage_ivset_cover(const struct usage_ivset *s, int64_t start,
                          int64_t end)
{
    int64_t t = 0;
    for (size_t i = iv_lower(s, start); i < s->n && s->iv[i].start < end; i++) {
        int64_t lo = max64(s->iv[i].start, start), hi = min64(s->iv[i].end, end);
        if (hi > lo)
            t += hi - lo;
    }
    return t;
}

void usage_ivset_trim_before(struct usage_ivset *s, int64_t t)
{
    size_t k = 0;
    while (k < s->n && s->iv[k].end <= t)
        k++;
    if (k > 0) {
        memmove(s->iv, s->iv + k, (s->n - k) * sizeof(*s->iv));
        s->n -= k;
    }
    if (s->n && s->iv[0].start < t)
        s->iv[0].start = t;
}

json_t *usage_ivset_to_json(const struct usage_ivset *s)
{
    json_t *a = json_array();
    for (size_t i = 0; i < s->n; i++)
        json_array_append_new(a, json_pack("[I, I]", (json_int_t)s->iv[i].start,
                                           (json_int_t)s->iv[i].end));
    return a;
}

int usage_ivset_from_json(const json_t *j, struct usage_ivset *ret)
{
    struct usage_ivset s = { NULL, 0, 0 };
    size_t i;
    json_t *p;
    if (!json_is_array(j))
        return -EINVAL;
    json_array_foreach(j, i, p) {
        json_t *a = json_array_get(p, 0), *b = json_array_get(p, 1);
        if (json_array_size(p) != 2 || !json_is_integer(a) ||
            !json_is_integer(b) ||
            json_integer_value(a) > json_integer_value(b)) {
            usage_ivset_free(&s);
            return -EINVAL;
        }
        usage_ivset_add(&s, json_integer_value(a), json_integer_value(b));
    }
    *ret = s;
    return 0;
}

/* ---- sequence numbers ---- */

void usage_seqset_free(struct usage_seqset *s)
{
    free(s->above);
    s->above = NULL;
    s->n = s->cap = 0;
}

static size_t seq_lower(const struct usage_seqset *s, int64_t seq)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->above[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool usage_seqset_has(const struct usage_seqset *s, int64_t seq)
{
    if (seq <= s->floor)
        return true;
    size_t i = seq_lower(s, seq);
    return i < s->n && s->above[i] == seq;
}

bool usage_seqset_add(struct usage_seqset *s, int64_t seq)
{
    if (seq < 1 || usage_seqset_has(s, seq))
        return false;
    size_t i = seq_lower(s, seq);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 8;
        s->above = xrealloc(s->above, s->cap * sizeof(*s->above));
    }
    memmove(s->above + i + 1, s->above + i, (s->n - i) * sizeof(*s->above));
    s->above[i] = seq;
    s->n++;
    /* Close filled gaps; give up on the oldest gap when too many wait. */
    size_t k = 0;
    if (s->n > SEQ_ABOVE_MAX)
        s->floor = s->above[0] - 1;
    while (k < s->n && s->above[k] == s->floor + 1) {
        s->floor++;
        k++;
    }
    memmove(s->above, s->above + k, (s->n - k) * sizeof(*s->above));
    s->n -= k;
    return true;
}

/* ---- one VM ---- */

void usage_vm_free(struct usage_vm *u)
{
    usage_seqset_free(&u->seqs);
    usage_ivset_free(&u->claimed);
    usage_ivset_free(&u->observed);
}

enum usage_result usage_vm_sample(struct usage_vm *u,
                                  const struct usage_sample *s)
{
    if (s->seq < 1 || s->end < s->start)
        return USAGE_INVALID;
    if (!usage_seqset_add(&u->seqs, s->seq))
        return USAGE_DUPLICATE;
    usage_ivset_add(&u->claimed, max64(s->start, u->settled_before), s->end);
    return USAGE_NEW;
}

void usage_vm_observe(struct usage_vm *u, int64_t now, int64_t max_gap)
{
    if (u->obs_last >= 0 && now <= u->obs_last)
        return; /* same second, or the clock stepped back */
    if (u->obs_last >= 0 && now - u->obs_last <= max_gap)
        usage_ivset_add(&u->observed, max64(u->obs_last, u->settled_before),
                        now);
    u->obs_last = now;
}

void usage_vm_observe_stop(struct usage_vm *u)
{
    u->obs_last = -1;
}

int64_t usage_vm_billable(const struct usage_vm *u)
{
    return u->settled_billable_s + usage_ivset_overlap(&u->claimed, &u->observed);
}

int64_t usage_vm_claimed(const struct usage_vm *u)
{
    return u->settled_claimed_s + usage_ivset_len(&u->claimed);
}

void usage_vm_settle(struct usage_vm *u, int64_t horizon)
{
    if (horizon <= u->settled_before)
        return;
    /* Billable before the horizon = overlap of the parts before it. */
    struct usage_ivset before = { NULL, 0, 0 };
    for (size_t i = 0; i < u->claimed.n && u->claimed.iv[i].start < horizon; i++)
        usage_ivset_add(&before, u->claimed.iv[i].start,
                        min64(u->claimed.iv[i].end, horizon));
    u->settled_claimed_s += usage_ivset_len(&before);
    u->settled_billable_s += usage_ivset_overlap(&before, &u->observed);
    usage_ivset_free(&before);
    usage_ivset_trim_before(&u->claimed, horizon);
    usage_ivset_trim_before(&u->observed, horizon);
    u->settled_before = horizon;
}

json_t *usage_vm_to_json(const struct usage_vm *u)
{
    json_t *seqs = json_array();
    for (size_t i = 0; i < u->seqs.n; i++)
        json_array_append_new(seqs, json_integer(u->seqs.above[i]));
    return json_pack("{s:I, s:o, s:o, s:o, s:I, s:I, s:I, s:I}", "seq_floor",
                     (json_int_t)u->seqs.floor, "seqs", seqs, "claimed",
                     usage_ivset_to_json(&u->claimed), "observed",
                     usage_ivset_to_json(&u->observed), "settled_before",
                     (json_int_t)u->settled_before, "settled_billable_s",
                     (json_int_t)u->settled_billable_s, "settled_claimed_s",
                     (json_int_t)u->settled_claimed_s, "obs_last",
                     (json_int_t)u->obs_last);
}

int usage_vm_from_json(const json_t *j, struct usage_vm *ret)
{
    struct usage_vm u = USAGE_VM_INIT;
    static const char *const ints[] = { "seq_floor", "settled_before",
                                        "settled_billable_s",
                                        "settled_claimed_s", "obs_last" };
    for (size_t i = 0; i < ARRAY_SIZE(ints); i++)
        if (!json_is_integer(json_object_get(j, ints[i])))
            return -EINVAL;
    json_t *seqs = json_object_get(j, "seqs");
    if (!json_is_array(seqs) ||
        usage_ivset_from_json(json_object_get(j, "claimed"), &u.claimed) < 0)
        return -EINVAL;
    if (usage_ivset_from_json(json_object_get(j, "observed"), &u.observed) < 0)
        goto out_invalid;
    u.seqs.floor = json_integer_value(json_object_get(j, "seq_floor"));
    size_t i;
    json_t *v;
    json_array_foreach(seqs, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) <= u.seqs.floor)
            goto out_invalid;
        usage_seqset_add(&u.seqs, json_integer_value(v));
    }
    u.settled_before = json_integer_value(json_object_get(j, "settled_before"));
    u.settled_billable_s =
        json_integer_value(json_object_get(j, "settled_billable_s"));
    u.settled_claimed_s =
        json_integer_value(json_object_get(j, "settled_claimed_s"));
    u.obs_last = json_integer_value(json_object_get(j, "obs_last"));
    *ret = u;
    return 0;
out_invalid:
    usage_vm_free(&u);
    return -EINVAL;
}
