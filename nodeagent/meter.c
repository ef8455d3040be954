/* The node's usage sampler. Per VM: the next sequence number, the start of
 * the interval it has been running since (0: not running), and the samples
 * handed out but not yet acknowledged. Numbers and samples are saved
 * (atomically) before a number leaves the agent, so a restart resends
 * rather than renumbers. Open intervals are not saved: what a VM did while
 * no agent watched is not claimed. */
#include "nodeagent/meter.h"

#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>

#define METER_FILE_MAX (64 << 20)
/* Samples kept per VM while the controller takes none (each stop closes
 * one; a running VM's interval just grows): past this the oldest go. */
#define METER_PENDING_MAX 1000
/* Numbers past this mark a corrupt file: counting from now_s * 1000 (about
 * 2^41) at one sample a second would take 10^11 years to reach it, and
 * below it next_seq++ cannot overflow. */
#define METER_SEQ_MAX (INT64_C(1) << 62)

struct meter_sample {
    int64_t seq, start, end;
};

struct meter_vm {
    char id[37];
    int64_t next_seq;
    int64_t open;       /* running since (unix s), 0 = not running */
    struct meter_sample *pending;
    size_t n_pending;
};

struct meter {
    char *path;
    int64_t seq_base;   /* first number of a VM seen for the first time */
    struct meter_vm *vms;
    size_t n;
    bool dirty;
    bool save_failed;
};

/* m->vms is in the order of their ids (a pass looks each up). */
static struct meter_vm *vm_get(struct meter *m, const char *id, bool create)
{
    bool found;
    size_t at = sorted_at(m->vms, m->n, sizeof(*m->vms),
                          offsetof(struct meter_vm, id), id, &found);
    if (found)
        return &m->vms[at];
    if (!create)
        return NULL;
    struct meter_vm *v = sorted_insert(&m->vms, &m->n, sizeof(*m->vms), at);
    *v = (struct meter_vm){ .next_seq = m->seq_base };
    snprintf(v->id, sizeof(v->id), "%s", id);
    return v;
}

static void add_sample(struct meter *m, struct meter_vm *v, int64_t start,
                       int64_t end)
{
    if (v->n_pending >= METER_PENDING_MAX) {
        log_warn("vm %s: %zu usage samples unacknowledged: dropping the "
                 "oldest (seq %lld)", v->id, v->n_pending,
                 (long long)v->pending[0].seq);
        memmove(v->pending, v->pending + 1,
                (v->n_pending - 1) * sizeof(*v->pending));
        v->n_pending--;
    }
    v->pending = xrealloc(v->pending, (v->n_pending + 1) * sizeof(*v->pending));
    v->pending[v->n_pending++] = (struct meter_sample){ v->next_seq++, start,
                                                        end };
    m->dirty = true;
}

static json_t *state_to_json(const struct meter *m)
{
    json_t *vms = json_object();
    for (size_t i = 0; i < m->n; i++) {
        const struct meter_vm *v = &m->vms[i];
        json_t *pend = json_array();
        for (size_t k = 0; k < v->n_pending; k++)
            json_array_append_new(pend, json_pack("[I, I, I]",
                                                  (json_int_t)v->pending[k].seq,
                                                  (json_int_t)v->pending[k].start,
                                                  (json_int_t)v->pending[k].end));
        json_object_set_new(vms, v->id,
                            json_pack("{s:I, s:o}", "next_seq",
                                      (json_int_t)v->next_seq, "pending", pend));
    }
    return json_pack("{s:i, s:o}", "version", 1, "vms", vms);
}

/* Write the state if it changed. A failure is logged once per streak and
 * retried at the next change. */
static void save(struct meter *m)
{
    if (!m->dirty || !m->path)
        return;
    _cleanup_json_ json_t *j = state_to_json(m);
    _cleanup_free_ char *text = json_dumps_compact(j);
    int r = file_write_atomic(m->path, text, strlen(text), 0600);
    if (r < 0) {
        if (!m->save_failed)
            log_warn("cannot save usage samples in '%s': %s", m->path,
                     strerror(-r));
        m->save_failed = true;
        return;
    }
    m->save_failed = false;
    m->dirty = false;
}

static bool int_ok(const json_t *j, int64_t min)
{
    return json_is_integer(j) && json_integer_value(j) >= min;
}

/* Load the file's VMs into m. 0, -ENOENT, or -EINVAL/-errno. */
static int load(struct meter *m)
{
    _cleanup_free_ char *text = NULL;
    int r = file_read(m->path, METER_FILE_MAX, &text, NULL);
    if (r < 0)
        return r;
    _cleanup_json_ json_t *j = json_loads(text, 0, NULL);
    json_t *vms = json_object_get(j, "vms");
    if (!json_is_object(vms) || json_int(j, "version", 0) != 1)
        return -EINVAL;
    const char *id;
    json_t *o;
    json_object_foreach(vms, id, o) {
        json_t *pend = json_object_get(o, "pending");
        json_t *next = json_object_get(o, "next_seq");
        if (!uuid_is_valid(id) || !int_ok(next, 1) ||
            json_integer_value(next) > METER_SEQ_MAX || !json_is_array(pend))
            return -EINVAL;
        struct meter_vm *v = vm_get(m, id, true);
        v->next_seq = json_int(o, "next_seq", 1);
        size_t i;
        json_t *s;
        json_array_foreach(pend, i, s) {
            json_t *seq = json_array_get(s, 0), *st = json_array_get(s, 1),
                   *en = json_array_get(s, 2);
            if (json_array_size(s) != 3 || !int_ok(seq, 1) || !int_ok(st, 0) ||
                !int_ok(en, json_integer_value(st)) ||
                json_integer_value(seq) >= v->next_seq)
                return -EINVAL;
            v->pending = xrealloc(v->pending,
                                  (v->n_pending + 1) * sizeof(*v->pending));
            v->pending[v->n_pending++] = (struct meter_sample){
                json_integer_value(seq), json_integer_value(st),
                json_integer_value(en) };
        }
    }
    return 0;
}

static void vms_clear(struct meter *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->vms[i].pending);
    free(m->vms);
    m->vms = NULL;
    m->n = 0;
}

struct meter *meter_new(const char *path, int64_t now_s)
{
    struct meter *m = xcalloc(1, sizeof(*m));
    m->path = path ? xstrdup(path) : NULL;
    m->seq_base = 1;
    if (!path)
        return m;
    int r = load(m);
    if (r < 0 && r != -ENOENT) {
        vms_clear(m);
        /* Numbers used before are unknown: start above them all. */
        m->seq_base = now_s > 0 ? now_s * 1000 : 1;
        log_warn("usage samples in '%s' unreadable (%s): starting afresh "
                 "with sequence numbers from %lld", path,
                 r == -EINVAL ? "malformed" : strerror(-r),
                 (long long)m->seq_base);
        m->dirty = true;
        save(m);
    }
    return m;
}

void meter_free(struct meter *m)
{
    if (!m)
        return;
    vms_clear(m);
    free(m->path);
    free(m);
}

void meter_observe(struct meter *m, const char *vm_id, bool running,
                   int64_t now_s)
{
    if (!uuid_is_valid(vm_id))
        return;
    struct meter_vm *v = vm_get(m, vm_id, running);
    if (!v)
        return;
    if (running && v->open == 0) {
        v->open = now_s;
    } else if (!running && v->open > 0) {
        if (now_s > v->open)
            add_sample(m, v, v->open, now_s);
        v->open = 0;
        save(m);
    }
}

void meter_retain(struct meter *m, const json_t *vms)
{
    size_t k = 0, n_ids;
    _cleanup_free_ const char **ids = json_keys_sorted(vms, "id", &n_ids);
    for (size_t i = 0; i < m->n; i++) {
        if (json_keys_has(ids, n_ids, m->vms[i].id))
            m->vms[k++] = m->vms[i];
        else {
            free(m->vms[i].pending);
            m->dirty = true;
        }
    }
    m->n = k;
    save(m);
}

json_t *meter_take(struct meter *m, int64_t now_s, size_t max)
{
    for (size_t i = 0; i < m->n; i++) {
        struct meter_vm *v = &m->vms[i];
        if (v->open > 0 && v->n_pending == 0 && now_s > v->open) {
            add_sample(m, v, v->open, now_s);
            v->open = now_s;
        }
    }
    /* Numbers are durable before they are sent. */
    save(m);
    json_t *out = json_array();
    for (size_t i = 0; i < m->n; i++)
        for (size_t k = 0; k < m->vms[i].n_pending; k++) {
            if (json_array_size(out) >= max)
                return out;
            const struct meter_sample *s = &m->vms[i].pending[k];
            json_array_append_new(out, json_pack("{s:s, s:I, s:I, s:I}", "vm",
                                                 m->vms[i].id, "seq",
                                                 (json_int_t)s->seq, "start",
                                                 (json_int_t)s->start, "end",
                                                 (json_int_t)s->end));
        }
    return out;
}

void meter_ack(struct meter *m, const json_t *samples)
{
    size_t i;
    json_t *s;
    json_array_foreach(samples, i, s) {
        struct meter_vm *v = vm_get(m, json_str(s, "vm") ? json_str(s, "vm") :
                                                          "", false);
        int64_t seq = json_int(s, "seq", 0);
        if (!v)
            continue;
        size_t k = 0;
        for (size_t p = 0; p < v->n_pending; p++)
            if (v->pending[p].seq != seq)
                v->pending[k++] = v->pending[p];
        if (k != v->n_pending)
            m->dirty = true;
        v->n_pending = k;
    }
    save(m);
}

size_t meter_pending(const struct meter *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++)
        n += m->vms[i].n_pending;
    return n;
}

/* Does sample `s` (as meter_take made it) match refusal entry `r`? */
static bool refusal_names(const json_t *r, size_t index, const json_t *s)
{
    return json_int(r, "index", -1) == (int64_t)index &&
           streq(json_str(r, "vm"), json_str(s, "vm")) &&
           json_int(r, "seq", -1) == json_int(s, "seq", -2);
}

json_t *meter_refused(struct meter *m, const json_t *samples,
                      const json_t *rejected, size_t *ret_dropped)
{
    json_t *rest = json_array();
    json_auto_t *drop = json_array();
    size_t i, k;
    json_t *s, *r;
    json_array_foreach(samples, i, s) {
        bool named = false;
        json_array_foreach(rejected, k, r)
            if (refusal_names(r, i, s)) {
                named = true;
                log_warn("vm %s: usage sample %lld refused by the controller "
                         "(%s): dropped", json_str(s, "vm"),
                         (long long)json_int(s, "seq", 0),
                         json_str(r, "reason") ? json_str(r, "reason") : "?");
                break;
            }
        json_array_append(named ? drop : rest, s);
    }
    meter_ack(m, drop);
    *ret_dropped = json_array_size(drop);
    return rest;
}
