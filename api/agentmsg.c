/* Encoders and decoders of api/agentmsg.h: the one place that knows the
 * agent contract's member names, types and bounds. Decoders read with a
 * small cursor (object, path for the error) and never keep a pointer into
 * the JSON they read: every string is copied. */
#include "api/agentmsg.h"
#include "api/probe.h"

#include "common/ids.h"
#include "common/netcheck.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *const am_vm_states[] = { "creating", "running", "stopped",
                                     "crashed",  "paused",  "error",
                                     "deleted",  NULL };

bool am_pci_addr_ok(const char *s)
{
    static const char pat[] = "hhhh:hh:hh.h";
    if (!s || strlen(s) != sizeof(pat) - 1)
        return false;
    for (size_t i = 0; i < sizeof(pat) - 1; i++)
        if (pat[i] == 'h' ? !((s[i] >= '0' && s[i] <= '9') ||
                              (s[i] >= 'a' && s[i] <= 'f'))
                          : s[i] != pat[i])
            return false;
    return s[8] <= '1' && s[11] <= '7';
}

bool am_cpulist_ok(const char *s)
{
    if (!s || strlen(s) > AGENT_TEXT_MAX)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == ',' || *p == '-'))
            return false;
    return s[0] != ',' && s[0] != '-';
}

bool am_mac_ok(const char *s)
{
    static const char pat[] = "hh:hh:hh:hh:hh:hh";
    if (!s || strlen(s) != sizeof(pat) - 1)
        return false;
    for (size_t i = 0; i < sizeof(pat) - 1; i++)
        if (pat[i] == 'h' ? !isxdigit((unsigned char)s[i]) : s[i] != ':')
            return false;
    return true;
}

bool am_iface_text_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > AGENT_IFACE_TEXT_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return false;
    return true;
}

/* ---- decoding ------------------------------------------------------------ */

/* One object being read: the members it may hold are named by the
 * get_* calls; `strict` refuses any other. */
struct rd {
    const json_t *obj;
    const char *path; /* "" at the top, "vms[3]." inside */
    struct jerr *err;
    bool failed;
};

_printf_(3, 4) static void fail(struct rd *r, const char *member,
                                const char *fmt, ...)
{
    if (r->failed)
        return;
    r->failed = true;
    va_list ap;
    va_start(ap, fmt);
    char *why = NULL;
    if (vasprintf(&why, fmt, ap) < 0)
        abort();
    va_end(ap);
    /* The field is the top-level member; the detail names the item. */
    const char *top = *r->path ? r->path : member;
    size_t len = strlen(r->path);
    *r->err = (struct jerr){
        xstrndup(top, strcspn(top, ".[")),
        len ? xasprintf("%.*s: '%s' %s", (int)len - 1, r->path, member, why) :
              xasprintf("'%s' %s", member, why) };
    free(why);
}

/* The member, or NULL when absent or null (optional members may be null:
 * the controller writes absent values so). */
static const json_t *member(struct rd *r, const char *k, bool required)
{
    const json_t *v = json_object_get(r->obj, k);
    if (json_is_null(v))
        v = NULL;
    if (!v && required)
        fail(r, k, "is required");
    return v;
}

static char *get_str(struct rd *r, const char *k, bool required, size_t max)
{
    const json_t *v = member(r, k, required);
    if (!v || r->failed)
        return NULL;
    if (!json_is_string(v)) {
        fail(r, k, "must be a string");
        return NULL;
    }
    size_t n = json_string_length(v);
    if (n > max || strlen(json_string_value(v)) != n) {
        fail(r, k, "must be a string of at most %zu bytes without NUL", max);
        return NULL;
    }
    return xstrdup(json_string_value(v));
}

static int64_t get_int(struct rd *r, const char *k, bool required, int64_t min,
                       int64_t max, int64_t def)
{
    const json_t *v = member(r, k, required);
    if (!v || r->failed)
        return def;
    if (!json_is_integer(v) || json_integer_value(v) < min ||
        json_integer_value(v) > max) {
        fail(r, k, "must be an integer from %lld to %lld", (long long)min,
             (long long)max);
        return def;
    }
    return json_integer_value(v);
}

static bool get_bool(struct rd *r, const char *k, bool def)
{
    const json_t *v = member(r, k, false);
    if (!v || r->failed)
        return def;
    if (!json_is_boolean(v)) {
        fail(r, k, "must be true or false");
        return def;
    }
    return json_is_true(v);
}

/* An array member of at most max items; its length in *n (0 if absent). */
static const json_t *get_arr(struct rd *r, const char *k, bool required,
                             size_t max, size_t *n)
{
    const json_t *v = member(r, k, required);
    *n = 0;
    if (!v || r->failed)
        return NULL;
    if (!json_is_array(v) || json_array_size(v) > max) {
        fail(r, k, "must be an array of at most %zu items", max);
        return NULL;
    }
    *n = json_array_size(v);
    return v;
}

/* Item i of array member k, read as an object: a cursor for it. */
static bool sub(struct rd *r, const char *k, const json_t *v, ssize_t i,
                struct rd *out, char **path)
{
    *path = i < 0 ? xasprintf("%s%s.", r->path, k) :
                    xasprintf("%s%s[%zd].", r->path, k, i);
    *out = (struct rd){ v, *path, r->err, false };
    if (json_is_object(v))
        return true;
    _cleanup_free_ char *m = i < 0 ? xstrdup(k) : xasprintf("%s[%zd]", k, i);
    fail(r, m, "must be an object");
    return false;
}

/* After a sub-object: its failure is the parent's. */
static void sub_end(struct rd *r, struct rd *s, char *path)
{
    if (s->failed)
        r->failed = true;
    free(path);
}

/* Refuse members not in `known` (NULL-terminated). */
static void strict(struct rd *r, const char *const *known)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)r->obj, k, v) {
        bool ok = false;
        for (size_t i = 0; known[i] && !ok; i++)
            ok = streq(known[i], k);
        if (!ok && !r->failed) {
            r->failed = true;
            *r->err = (struct jerr){ xasprintf("%s%s", r->path, k),
                                     xasprintf("unknown field '%s%s'",
                                               r->path, k) };
            return;
        }
    }
}

static char **get_strs(struct rd *r, const char *k, size_t max_items,
                       size_t max_len, size_t *ret_n)
{
    size_t n;
    const json_t *a = get_arr(r, k, false, max_items, &n);
    *ret_n = 0;
    if (!a || n == 0)
        return NULL;
    char **out = xcalloc(n, sizeof(*out));
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(a, i);
        if (!json_is_string(v) || json_string_length(v) > max_len ||
            strlen(json_string_value(v)) != json_string_length(v)) {
            _cleanup_free_ char *m = xasprintf("%s[%zu]", k, i);
            fail(r, m, "must be a string of at most %zu bytes", max_len);
            for (size_t j = 0; j < i; j++)
                free(out[j]);
            free(out);
            return NULL;
        }
        out[i] = xstrdup(json_string_value(v));
    }
    *ret_n = n;
    return out;
}

static void strs_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ---- the desired document ------------------------------------------------ */

static void nic_read(struct rd *r, struct am_nic *n)
{
    n->network_id = get_str(r, "network_id", false, AGENT_TEXT_MAX);
    n->mac = get_str(r, "mac", true, 17);
    n->address = get_str(r, "address", true, 45);
    n->prefix = get_int(r, "prefix", false, 0, 128, 0);
    n->gateway = get_str(r, "gateway", false, 45);
    n->mtu = get_int(r, "mtu", false, 0, 65535, 0);
    n->bridge = get_str(r, "bridge", true, NET_IFNAME_MAX);
    n->dns_search = get_str(r, AGENT_NIC_DNS_SEARCH, false, 253);
    n->address6 = get_str(r, AGENT_NIC_ADDRESS6, false, 45);
    n->gateway6 = get_str(r, AGENT_NIC_GATEWAY6, false, 45);
}

static void nic_clear(struct am_nic *n)
{
    free(n->network_id);
    free(n->mac);
    free(n->address);
    free(n->gateway);
    free(n->dns_search);
    free(n->bridge);
    free(n->address6);
    free(n->gateway6);
}

static void source_read(struct rd *r, struct am_image_source *s)
{
    s->id = get_str(r, "id", true, AGENT_TEXT_MAX);
    s->sha256 = get_str(r, "sha256", true, 64);
    s->format = get_str(r, "format", true, 16);
    s->size = get_int(r, "size", false, 0, INT64_MAX, 0);
    s->url = get_str(r, "url", true, AGENT_TEXT_MAX);
}

/* One snapshot entry; `held`: a node's report, with how and when. */
static void snapshot_read(struct rd *r, struct am_snapshot *s, bool held)
{
    static const char *const known[] = { "id", "name", "consistency",
                                         "created_at", NULL };
    if (held)
        strict(r, known);
    s->id = get_str(r, "id", true, 36);
    if (s->id && !uuid_is_valid(s->id))
        fail(r, "id", "must be a UUID");
    s->name = get_str(r, "name", true, 63);
    if (s->name && !name_is_valid(s->name))
        fail(r, "name", "must be a lowercase name (a-z, 0-9, '-')");
    if (!held) {
        s->taken = get_bool(r, "taken", false);
        return;
    }
    s->consistency = get_str(r, "consistency", true, 16);
    if (s->consistency &&
        !streq(s->consistency, SNAPSHOT_CONSISTENCY_CHECKPOINT) &&
        !streq(s->consistency, SNAPSHOT_CONSISTENCY_POWERED_OFF))
        fail(r, "consistency", "must be '" SNAPSHOT_CONSISTENCY_CHECKPOINT
             "' or '" SNAPSHOT_CONSISTENCY_POWERED_OFF "'");
    s->created_at = get_int(r, "created_at", false, 0, INT64_MAX, 0);
}

static void snapshots_clear(struct am_snapshot *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].id);
        free(v[i].name);
        free(v[i].consistency);
    }
    free(v);
}

/* List member AGENT_VM_SNAPSHOTS of r, at most max entries. */
static struct am_snapshot *snapshots_read(struct rd *r, size_t max, bool held,
                                          size_t *ret_n)
{
    size_t n;
    const json_t *a = get_arr(r, AGENT_VM_SNAPSHOTS, false, max, &n);
    struct am_snapshot *out = n ? xcalloc(n, sizeof(*out)) : NULL;
    *ret_n = 0;
    for (size_t i = 0; i < n && !r->failed; i++) {
        struct rd s;
        char *path;
        if (sub(r, AGENT_VM_SNAPSHOTS, json_array_get(a, i), (ssize_t)i, &s,
                &path))
            snapshot_read(&s, &out[(*ret_n)++], held);
        sub_end(r, &s, path);
    }
    return out;
}

/* AGENT_VM_BACKUPS ([{id}]) and AGENT_VM_BACKUP_KEY of a desired VM. */
static void backups_read(struct rd *r, struct am_vm *v)
{
    size_t n;
    const json_t *a = get_arr(r, AGENT_VM_BACKUPS, false,
                              VM_BACKUPS_PENDING_MAX, &n);
    if (n && !r->failed) {
        v->backups = xcalloc(n, sizeof(*v->backups));
        v->backup_parents = xcalloc(n, sizeof(*v->backup_parents));
    }
    for (size_t i = 0; i < n && !r->failed; i++) {
        struct rd s;
        char *path;
        /* Members this agent does not know are a newer controller's. */
        if (sub(r, AGENT_VM_BACKUPS, json_array_get(a, i), (ssize_t)i, &s,
                &path)) {
            char *id = get_str(&s, "id", true, 36);
            char *parent = get_str(&s, AGENT_VM_BACKUP_PARENT, false, 36);
            if (id && !uuid_is_valid(id))
                fail(&s, "id", "must be a UUID");
            if (parent && !uuid_is_valid(parent))
                fail(&s, AGENT_VM_BACKUP_PARENT, "must be a UUID");
            if (id) {
                v->backup_parents[v->n_backups] = parent;
                v->backups[v->n_backups++] = id;
            } else {
                free(parent);
            }
        }
        sub_end(r, &s, path);
    }
    v->backup_key = get_str(r, AGENT_VM_BACKUP_KEY, false, 64);
    if (v->backup_key && !is_lower_hex(v->backup_key, 64))
        fail(r, AGENT_VM_BACKUP_KEY, "must be 64 lowercase hex digits");
    if (!r->failed && v->n_backups && !v->backup_key)
        fail(r, AGENT_VM_BACKUP_KEY, "is required with '%s'",
             AGENT_VM_BACKUPS);
}

static void vm_gpu_read(struct rd *r, struct am_vm_gpu *g)
{
    g->address = get_str(r, "address", true, 12);
    if (g->address && !am_pci_addr_ok(g->address))
        fail(r, "address", "must be a PCI address dddd:bb:ss.f");
    g->functions = get_strs(r, "functions", AGENT_GPU_FUNCTIONS_MAX, 12,
                            &g->n_functions);
    if (!r->failed && g->n_functions == 0)
        fail(r, "functions", "must name the card's functions");
    for (size_t i = 0; i < g->n_functions && !r->failed; i++)
        if (!am_pci_addr_ok(g->functions[i])) {
            _cleanup_free_ char *m = xasprintf("functions[%zu]", i);
            fail(r, m, "must be a PCI address dddd:bb:ss.f");
        }
    g->numa_node = get_int(r, "numa_node", false, -1, AGENT_NUMA_NODE_MAX, -1);
    g->cpulist = get_str(r, "cpulist", false, AGENT_TEXT_MAX);
    if (g->cpulist && !am_cpulist_ok(g->cpulist))
        fail(r, "cpulist", "must be a CPU list such as 0-7,16-23");
    if (!g->cpulist)
        g->cpulist = xstrdup("");
}

static void vm_gpu_clear(struct am_vm_gpu *g)
{
    free(g->address);
    strs_free(g->functions, g->n_functions);
    free(g->cpulist);
}

static void vm_restore_read(struct rd *r, struct am_vm *v);

/* AGENT_VM_HEALTH_CHECKS of a desired VM: each with the controller's id. */
static void checks_read(struct rd *r, struct am_vm *v)
{
    size_t n;
    const json_t *a = get_arr(r, AGENT_VM_HEALTH_CHECKS, false,
                              HC_PER_VM_MAX, &n);
    if (n && !r->failed)
        v->checks = xcalloc(n, sizeof(*v->checks));
    for (size_t i = 0; i < n && !r->failed; i++) {
        struct rd s;
        char *path;
        if (sub(r, AGENT_VM_HEALTH_CHECKS, json_array_get(a, i), (ssize_t)i,
                &s, &path)) {
            struct jerr je = { 0 };
            struct hc_spec c;
            if (hc_spec_from_json(s.obj, false, &c, &je) < 0) {
                fail(&s, je.field, "%s", je.detail);
                jerr_clear(&je);
            } else if (!*c.id) {
                hc_spec_clear(&c);
                fail(&s, "id", "is required");
            } else {
                v->checks[v->n_checks++] = c;
            }
        }
        sub_end(r, &s, path);
    }
}

static void vm_read(struct rd *r, struct am_vm *v)
{
    static const char *const power[] = { "running", "stopped", NULL };
    v->id = get_str(r, "id", true, 64);
    v->name = get_str(r, "name", true, 255);
    v->vcpus = get_int(r, "vcpus", true, 1, NODE_MAX_VCPUS, 1);
    v->memory_mib = get_int(r, "memory_mib", true, VM_MIN_MEMORY_MIB,
                            NODE_MAX_MEMORY_MIB, VM_MIN_MEMORY_MIB);
    v->disk_gib = get_int(r, "disk_gib", true, 1, NODE_MAX_DISK_GIB, 1);
    v->image = get_str(r, "image", false, 255);
    const json_t *src = member(r, "image_source", false);
    if (src && !r->failed) {
        struct rd s;
        char *path;
        if (sub(r, "image_source", src, -1, &s, &path)) {
            source_read(&s, &v->source);
            v->has_source = true;
        }
        sub_end(r, &s, path);
    }
    v->ssh_keys = get_strs(r, "ssh_keys", AGENT_LIST_MAX, AGENT_TEXT_MAX * 4,
                           &v->n_ssh_keys);
    _cleanup_free_ char *p = get_str(r, "power", true, 16);
    if (p && !r->failed) {
        if (!streq(p, power[0]) && !streq(p, power[1]))
            fail(r, "power", "must be 'running' or 'stopped'");
        v->running = streq(p, power[0]);
    }
    v->stop_force = get_bool(r, "stop_force", false);
    v->deleted = get_bool(r, "deleted", false);
    v->paused = get_bool(r, AGENT_VM_PAUSED, false);
    v->no_autostart = !get_bool(r, AGENT_VM_AUTOSTART, true);
    v->reboot_gen = get_int(r, "reboot_gen", false, 0, INT64_MAX, 0);
    v->start_gen = get_int(r, "start_gen", false, 0, INT64_MAX, 0);
    v->place_gen = get_int(r, "place_gen", false, 0, INT64_MAX, 0);
    v->shutdown_timeout_s = get_int(r, "shutdown_timeout_s", false, 0,
                                    VM_SHUTDOWN_TIMEOUT_MAX_S,
                                    VM_SHUTDOWN_TIMEOUT_DEFAULT_S);
    v->user_data = get_str(r, "user_data", false, AGENT_USER_DATA_MAX);
    size_t n;
    const json_t *a = get_arr(r, "nics", false, AGENT_VM_NICS_MAX, &n);
    if (n)
        v->nics = xcalloc(n, sizeof(*v->nics));
    for (size_t i = 0; i < n && !r->failed; i++) {
        struct rd s;
        char *path;
        if (sub(r, "nics", json_array_get(a, i), (ssize_t)i, &s, &path))
            nic_read(&s, &v->nics[v->n_nics++]);
        sub_end(r, &s, path);
    }
    v->snapshots = snapshots_read(r, VM_SNAPSHOTS_MAX, false, &v->n_snapshots);
    const json_t *rv = member(r, AGENT_VM_REVERT, false);
    if (rv && !r->failed) {
        struct rd s;
        char *path;
        if (sub(r, AGENT_VM_REVERT, rv, -1, &s, &path)) {
            v->has_revert = true;
            v->revert_gen = get_int(&s, "gen", true, 0, INT64_MAX, 0);
            v->revert_snapshot_id = get_str(&s, "snapshot_id", true, 36);
            if (v->revert_snapshot_id && !uuid_is_valid(v->revert_snapshot_id))
                fail(&s, "snapshot_id", "must be a UUID");
        }
        sub_end(r, &s, path);
    }
    a = get_arr(r, AGENT_VM_GPUS, false, AGENT_GPUS_MAX, &n);
    if (n && !r->failed)
        v->gpus = xcalloc(n, sizeof(*v->gpus));
    for (size_t i = 0; i < n && !r->failed; i++) {
        struct rd s;
        char *path;
        if (sub(r, AGENT_VM_GPUS, json_array_get(a, i), (ssize_t)i, &s,
                &path))
            vm_gpu_read(&s, &v->gpus[v->n_gpus++]);
        sub_end(r, &s, path);
    }
    backups_read(r, v);
    vm_restore_read(r, v);
    checks_read(r, v);
}

/* One backup to restore from: {backup, size, sha256}. Whether it was
 * whole. */
static bool restore_piece_read(struct rd *s, struct am_restore *p)
{
    _cleanup_free_ char *id = get_str(s, "backup", true, 36);
    _cleanup_free_ char *sha = get_str(s, "sha256", true, 64);
    p->size = get_int(s, "size", true, 1, INT64_MAX, 1);
    if (id && !uuid_is_valid(id))
        fail(s, "backup", "must be a UUID");
    else if (sha && !is_lower_hex(sha, 64))
        fail(s, "sha256", "must be 64 lowercase hex digits");
    else if (id && sha) {
        memcpy(p->backup, id, 37);
        memcpy(p->sha256, sha, 65);
        return true;
    }
    return false;
}

/* AGENT_VM_RESTORE of a desired VM entry (its key is read with the
 * backups). */
static void vm_restore_read(struct rd *r, struct am_vm *v)
{
    const json_t *rs = member(r, AGENT_VM_RESTORE, false);
    if (!rs || r->failed)
        return;
    struct rd s;
    char *path;
    if (sub(r, AGENT_VM_RESTORE, rs, -1, &s, &path)) {
        v->has_restore = restore_piece_read(&s, &v->restore);
        size_t n;
        const json_t *a = get_arr(&s, AGENT_RESTORE_CHAIN, false,
                                  BACKUP_CHAIN_MAX, &n);
        if (n && !s.failed)
            v->chain = xcalloc(n, sizeof(*v->chain));
        for (size_t i = 0; i < n && !s.failed; i++) {
            struct rd c;
            char *cpath;
            if (sub(&s, AGENT_RESTORE_CHAIN, json_array_get(a, i),
                    (ssize_t)i, &c, &cpath) &&
                restore_piece_read(&c, &v->chain[v->n_chain]))
                v->n_chain++;
            sub_end(&s, &c, cpath);
        }
        if (s.failed)
            v->has_restore = false;
    }
    /* Without the key the node reports that VM's restore failed: one
     * VM's entry never makes the whole document unusable. */
    sub_end(r, &s, path);
}

static void vm_clear(struct am_vm *v)
{
    free(v->id);
    free(v->name);
    free(v->image);
    free(v->source.id);
    free(v->source.sha256);
    free(v->source.format);
    free(v->source.url);
    strs_free(v->ssh_keys, v->n_ssh_keys);
    free(v->user_data);
    for (size_t i = 0; i < v->n_nics; i++)
        nic_clear(&v->nics[i]);
    free(v->nics);
    snapshots_clear(v->snapshots, v->n_snapshots);
    free(v->revert_snapshot_id);
    for (size_t i = 0; i < v->n_gpus; i++)
        vm_gpu_clear(&v->gpus[i]);
    free(v->gpus);
    strs_free(v->backups, v->n_backups);
    if (v->backup_parents)
        strs_free(v->backup_parents, v->n_backups);
    free(v->chain);
    free(v->backup_key);
    for (size_t i = 0; i < v->n_checks; i++)
        hc_spec_clear(&v->checks[i]);
    free(v->checks);
}

static void network_read(struct rd *r, struct am_network *w)
{
    w->id = get_str(r, "id", true, AGENT_TEXT_MAX);
    w->vxlan_id = get_int(r, "vxlan_id", true, 1, (1 << 24) - 1, 1);
    w->cidr = get_str(r, "cidr", true, 49);
    w->gateway = get_str(r, "gateway", true, 45);
    w->cidr6 = get_str(r, AGENT_NET_CIDR6, false, 49);
    w->gateway6 = get_str(r, AGENT_NET_GATEWAY6, false, 45);
    w->mtu = get_int(r, "mtu", false, 0, 65535, 0);
    w->bridge = get_str(r, "bridge", true, NET_IFNAME_MAX);
    w->vteps = get_strs(r, "vteps", AGENT_LIST_MAX, 45, &w->n_vteps);
    size_t n;
    const json_t *a = get_arr(r, "macs", false, AGENT_LIST_MAX, &n);
    if (n)
        w->macs = xcalloc(n, sizeof(*w->macs));
    for (size_t i = 0; i < n && !r->failed; i++) {
        struct rd s;
        char *path;
        if (sub(r, "macs", json_array_get(a, i), (ssize_t)i, &s, &path)) {
            struct am_remote_mac *m = &w->macs[w->n_macs++];
            m->mac = get_str(&s, "mac", true, 17);
            m->vtep = get_str(&s, "vtep", true, 45);
        }
        sub_end(r, &s, path);
    }
    w->dns_label = get_str(r, AGENT_NET_DNS_LABEL, false, AGENT_DNS_LABEL_MAX);
    a = get_arr(r, AGENT_NET_RECORDS, false, AGENT_NET_RECORDS_MAX, &n);
    if (n)
        w->records = xcalloc(n, sizeof(*w->records));
    for (size_t i = 0; i < n && !r->failed; i++) {
        struct rd s;
        char *path;
        if (sub(r, AGENT_NET_RECORDS, json_array_get(a, i), (ssize_t)i, &s,
                &path)) {
            struct am_record *m = &w->records[w->n_records++];
            m->name = get_str(&s, "name", true, AGENT_TEXT_MAX);
            m->address = get_str(&s, "address", true, 45);
            m->address6 = get_str(&s, AGENT_REC_ADDRESS6, false, 45);
        }
        sub_end(r, &s, path);
    }
}

static void net_vm_read(struct rd *r, struct am_net_vm *v)
{
    v->id = get_str(r, "id", true, 8 + 1 + 17);
    v->vxlan_id = get_int(r, "vxlan_id", true, 1, (1 << 24) - 1, 1);
    v->name = get_str(r, "name", true, AGENT_TEXT_MAX);
    v->address = get_str(r, "address", true, 45);
    v->address6 = get_str(r, AGENT_REC_ADDRESS6, false, 45);
    v->mac = get_str(r, "mac", true, 17);
    v->vtep = get_str(r, "vtep", false, 45);
    if (r->failed)
        return;
    char want[8 + 1 + 17 + 8];
    snprintf(want, sizeof(want), AGENT_NET_VM_ID_FMT, (long long)v->vxlan_id,
             v->mac);
    if (!streq(want, v->id))
        fail(r, "id", "must be the VXLAN id in eight digits, '/' and the MAC");
}

static void net_vm_clear(struct am_net_vm *v)
{
    free(v->id);
    free(v->name);
    free(v->address);
    free(v->address6);
    free(v->mac);
    free(v->vtep);
}

static int net_vm_name_cmp(const void *x, const void *y)
{
    const struct am_net_vm *a = *(const struct am_net_vm *const *)x;
    const struct am_net_vm *b = *(const struct am_net_vm *const *)y;
    int c = strcmp(a->name, b->name);
    if (c == 0)
        c = strcmp(a->address, b->address);
    return c ? c : strcmp(a->id, b->id);
}

static int net_vm_vtep_cmp(const void *x, const void *y)
{
    const struct am_net_vm *a = *(const struct am_net_vm *const *)x;
    const struct am_net_vm *b = *(const struct am_net_vm *const *)y;
    int c = strcmp(a->vtep, b->vtep);
    return c ? c : strcmp(a->mac, b->mac);
}

static int net_vm_vxlan_cmp(const void *x, const void *y)
{
    const struct am_net_vm *a = *(const struct am_net_vm *const *)x;
    const struct am_net_vm *b = *(const struct am_net_vm *const *)y;
    return a->vxlan_id < b->vxlan_id ? -1 : a->vxlan_id > b->vxlan_id;
}

/* Each network's records and remote MACs made from d's AGENT_NET_VMS, as
 * the controller writes them for older agents: the items grouped by
 * network once, each network's found by a binary search. */
static void net_vms_expand(struct am_desired *d)
{
    const struct am_net_vm **of = xcalloc(d->n_net_vms + 1, sizeof(*of));
    const struct am_net_vm **by = xcalloc(d->n_net_vms + 1, sizeof(*by));
    for (size_t k = 0; k < d->n_net_vms; k++)
        by[k] = &d->net_vms[k];
    if (d->n_net_vms > 0)
        qsort(by, d->n_net_vms, sizeof(*by), net_vm_vxlan_cmp);
    for (size_t i = 0; i < d->n_networks; i++) {
        struct am_network *w = &d->networks[i];
        for (size_t k = 0; k < w->n_macs; k++) {
            free(w->macs[k].mac);
            free(w->macs[k].vtep);
        }
        for (size_t k = 0; k < w->n_records; k++) {
            free(w->records[k].name);
            free(w->records[k].address);
            free(w->records[k].address6);
        }
        free(w->macs);
        free(w->records);
        w->macs = NULL;
        w->records = NULL;
        w->n_macs = w->n_records = 0;
        /* The first item of the network, then its others. */
        size_t lo = 0, hi = d->n_net_vms, n = 0;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (by[mid]->vxlan_id < w->vxlan_id)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < d->n_net_vms && by[lo]->vxlan_id == w->vxlan_id; lo++)
            of[n++] = by[lo];
        if (n == 0)
            continue;
        qsort(of, n, sizeof(*of), net_vm_name_cmp);
        size_t nr = n < AGENT_NET_RECORDS_MAX ? n : AGENT_NET_RECORDS_MAX;
        w->records = xcalloc(nr, sizeof(*w->records));
        for (size_t k = 0; k < nr; k++)
            w->records[w->n_records++] = (struct am_record){
                .name = xstrdup(of[k]->name),
                .address = xstrdup(of[k]->address),
                .address6 = of[k]->address6 ? xstrdup(of[k]->address6) : NULL,
            };
        /* Remote: at a VTEP that is not this node's own. */
        size_t m = 0;
        for (size_t k = 0; k < n; k++)
            if (of[k]->vtep && !(d->has_mesh && d->mesh.address &&
                                 streq(of[k]->vtep, d->mesh.address)))
                of[m++] = of[k];
        if (m == 0)
            continue;
        qsort(of, m, sizeof(*of), net_vm_vtep_cmp);
        w->macs = xcalloc(m, sizeof(*w->macs));
        for (size_t k = 0; k < m; k++)
            w->macs[w->n_macs++] = (struct am_remote_mac){
                .mac = xstrdup(of[k]->mac),
                .vtep = xstrdup(of[k]->vtep),
            };
    }
    free(of);
    free(by);
}

static void network_clear(struct am_network *w)
{
    free(w->id);
    free(w->cidr);
    free(w->gateway);
    free(w->cidr6);
    free(w->gateway6);
    free(w->bridge);
    strs_free(w->vteps, w->n_vteps);
    for (size_t i = 0; i < w->n_macs; i++) {
        free(w->macs[i].mac);
        free(w->macs[i].vtep);
    }
    free(w->macs);
    free(w->dns_label);
    for (size_t i = 0; i < w->n_records; i++) {
        free(w->records[i].name);
        free(w->records[i].address);
        free(w->records[i].address6);
    }
    free(w->records);
}

static void port_read(struct rd *r, struct am_port *p)
{
    p->vm_id = get_str(r, "vm_id", true, 64);
    p->proto = get_str(r, "proto", true, 16);
    p->host_port = get_int(r, "host_port", true, 0, 65535, 0);
    p->vm_port = get_int(r, "vm_port", true, 0, 65535, 0);
    p->vm_address = get_str(r, "vm_address", true, 45);
}

static void port_clear(struct am_port *p)
{
    free(p->vm_id);
    free(p->proto);
    free(p->vm_address);
}

static void console_read(struct rd *r, struct am_console *c)
{
    c->id = get_str(r, "id", true, CONSOLE_SESSION_ID_MAX);
    if (c->id && (!*c->id || !is_hex(c->id, strlen(c->id))))
        fail(r, "id", "must be hex digits");
    c->vm_id = get_str(r, "vm_id", true, 36);
    if (c->vm_id && !uuid_is_valid(c->vm_id))
        fail(r, "vm_id", "must be a UUID");
    c->log_bytes = (uint32_t)get_int(r, AGENT_CONSOLE_LOG_BYTES, false, 1,
                                     CONSOLE_LOG_MAX, 0);
}

/* One file of AGENT_BENCH_PROBE. */
static void probe_file_read(struct rd *r, const char *k,
                            struct am_probe_file *f)
{
    const json_t *v = member(r, k, true);
    if (!v || r->failed)
        return;
    struct rd s;
    char *path;
    if (sub(r, k, v, -1, &s, &path)) {
        _cleanup_free_ char *sha = get_str(&s, "sha256", true, 64);
        f->size = get_int(&s, "size", true, 1, AGENT_BENCH_PROBE_MAX, 1);
        if (!s.failed && !is_lower_hex(sha, 64))
            fail(&s, "sha256", "must be 64 lowercase hex digits");
        if (!s.failed)
            memcpy(f->sha256, sha, 65);
    }
    sub_end(r, &s, path);
}

/* AGENT_BENCH_PROBE of a challenge. */
static void probe_read(struct rd *r, struct am_bench *b)
{
    const json_t *v = member(r, AGENT_BENCH_PROBE, false);
    if (!v || r->failed)
        return;
    struct rd s;
    char *path;
    if (sub(r, AGENT_BENCH_PROBE, v, -1, &s, &path)) {
        probe_file_read(&s, "kernel", &b->kernel);
        probe_file_read(&s, "initrd", &b->initrd);
        b->has_probe = !s.failed;
    }
    sub_end(r, &s, path);
}

/* AGENT_BENCH of a desired document. */
static void bench_read(struct rd *r, struct am_desired *d)
{
    const json_t *b = member(r, AGENT_BENCH, false);
    if (!b || r->failed)
        return;
    struct rd s;
    char *path;
    if (sub(r, AGENT_BENCH, b, -1, &s, &path)) {
        _cleanup_free_ char *id = get_str(&s, "id", true, 36);
        _cleanup_free_ char *nonce = get_str(&s, "nonce", true,
                                             2 * BENCH_NONCE_LEN);
        struct bench_params p = {
            .memory_mib = (uint32_t)get_int(&s, "memory_mib", true,
                                            BENCH_MEMORY_MIN_MIB,
                                            BENCH_MEMORY_MAX_MIB, 1),
            .rounds = (uint32_t)get_int(&s, "rounds", true, 1,
                                        BENCH_ROUNDS_MAX, 1),
            .lanes = (uint32_t)get_int(&s, "lanes", true, 1, BENCH_LANES_MAX,
                                       1),
            .segments = (uint32_t)get_int(&s, "segments", true, 1,
                                          BENCH_SEGMENTS_MAX, 1),
        };
        int64_t timeout = get_int(&s, "timeout_s", true, 1,
                                  AGENT_BENCH_TIMEOUT_MAX_S, 1);
        if (!s.failed && !uuid_is_valid(id))
            fail(&s, "id", "must be a UUID");
        if (!s.failed && (!is_lower_hex(nonce, 2 * BENCH_NONCE_LEN) ||
                          hex_decode(nonce, p.nonce, sizeof(p.nonce)) < 0))
            fail(&s, "nonce", "must be %d lowercase hex digits",
                 2 * BENCH_NONCE_LEN);
        if (!s.failed && bench_params_check(&p) < 0)
            fail(&s, "segments", "must divide the steps of a lane");
        struct am_bench bench = { .params = p, .timeout_s = timeout };
        probe_read(&s, &bench);
        if (!s.failed) {
            memcpy(bench.id, id, 37);
            d->bench = bench;
            d->has_bench = true;
        }
    }
    sub_end(r, &s, path);
}

/* A checkpoint: exactly 2 * BENCH_HASH_LEN lowercase hex digits. */
static bool hex_ok(const char *s, uint8_t *out)
{
    return s && is_lower_hex(s, 2 * BENCH_HASH_LEN) &&
           hex_decode(s, out, BENCH_HASH_LEN) == 0;
}

int am_bench_answer_decode(const json_t *j, const struct bench_params *p,
                           uint8_t **ret_cp, int64_t *ret_elapsed_ms,
                           struct jerr *err)
{
    static const char *const known[] = { "checkpoints", "elapsed_ms", NULL };
    struct rd r = { j, "", err, false };
    if (!json_is_object(j) || bench_params_check(p) < 0) {
        *err = (struct jerr){ xstrdup(""), xstrdup("not a JSON object") };
        return -EINVAL;
    }
    strict(&r, known);
    int64_t elapsed = get_int(&r, "elapsed_ms", true, 0, INT64_MAX, 0);
    size_t lanes = 0, ncp = (size_t)p->segments + 1;
    const json_t *a = get_arr(&r, "checkpoints", true, BENCH_LANES_MAX, &lanes);
    if (!r.failed && lanes != p->lanes)
        fail(&r, "checkpoints", "must hold %u lanes", p->lanes);
    _cleanup_free_ uint8_t *cp = r.failed ? NULL :
        xmalloc(lanes * ncp * BENCH_HASH_LEN);
    for (size_t l = 0; l < lanes && !r.failed; l++) {
        const json_t *lane = json_array_get(a, l);
        if (!json_is_array(lane) || json_array_size(lane) != ncp) {
            fail(&r, "checkpoints", "lane %zu must hold %zu checkpoints", l,
                 ncp);
            break;
        }
        for (size_t k = 0; k < ncp && !r.failed; k++)
            if (!hex_ok(json_string_value(json_array_get(lane, k)),
                        cp + (l * ncp + k) * BENCH_HASH_LEN))
                fail(&r, "checkpoints", "lane %zu item %zu must be %d "
                     "lowercase hex digits", l, k, 2 * BENCH_HASH_LEN);
    }
    if (r.failed)
        return -EINVAL;
    *ret_cp = TAKE_PTR(cp);
    *ret_elapsed_ms = elapsed;
    return 0;
}

static void peer_read(struct rd *r, struct am_peer *p)
{
    p->node_id = get_str(r, "node_id", true, 64);
    p->name = get_str(r, "name", false, 255);
    p->public_key = get_str(r, "public_key", true, 44);
    p->endpoint = get_str(r, "endpoint", false, 80);
    p->allowed_ips = get_strs(r, "allowed_ips", AGENT_LIST_MAX, 49,
                              &p->n_allowed_ips);
    p->keepalive = get_int(r, "keepalive", false, 0, 65535, 0);
    _cleanup_free_ char *path = get_str(r, AGENT_PEER_PATH, false, 16);
    if (path && !streq(path, "direct") && !streq(path, "relay"))
        fail(r, AGENT_PEER_PATH, "must be direct or relay");
    p->relayed = path && streq(path, "relay");
}

static void peer_clear(struct am_peer *p)
{
    free(p->node_id);
    free(p->name);
    free(p->public_key);
    free(p->endpoint);
    strs_free(p->allowed_ips, p->n_allowed_ips);
}

/* Read list member k of r into a new array of n items of `size` bytes,
 * each by `read`. */
static void *list_read(struct rd *r, const char *k, size_t size,
                       void (*read)(struct rd *, void *), size_t *ret_n)
{
    size_t n;
    const json_t *a = get_arr(r, k, true, AGENT_LIST_MAX, &n);
    char *items = n ? xcalloc(n, size) : NULL;
    *ret_n = 0;
    for (size_t i = 0; i < n && !r->failed; i++) {
        struct rd s;
        char *path;
        if (sub(r, k, json_array_get(a, i), (ssize_t)i, &s, &path)) {
            read(&s, items + size * *ret_n);
            ++*ret_n;
        }
        sub_end(r, &s, path);
    }
    return items;
}

int am_desired_decode(const json_t *j, struct am_desired *ret,
                      struct jerr *err)
{
    struct am_desired d = { 0 };
    struct rd r = { j, "", err, false };
    if (!json_is_object(j)) {
        *err = (struct jerr){ xstrdup(""), xstrdup("not a JSON object") };
        return -EINVAL;
    }
    d.revision = get_int(&r, "revision", true, 0, INT64_MAX, 0);
    d.node_id = get_str(&r, "node_id", true, 64);
    if (!r.failed && !json_object_get(j, "mesh"))
        fail(&r, "mesh", "is required (null when the node has none)");
    const json_t *mesh = member(&r, "mesh", false);
    if (mesh && !r.failed) {
        struct rd s;
        char *path;
        if (sub(&r, "mesh", mesh, -1, &s, &path)) {
            d.has_mesh = true;
            d.mesh.address = get_str(&s, "address", true, 45);
            d.mesh.prefix = get_int(&s, "prefix", false, 0, 128, 0);
            d.mesh.listen_port = get_int(&s, "listen_port", false, 0, 65535, 0);
        }
        sub_end(&r, &s, path);
    }
    d.unapproved = !get_bool(&r, "approved", true);
    d.vms = list_read(&r, "vms", sizeof(*d.vms),
                      (void (*)(struct rd *, void *))vm_read, &d.n_vms);
    d.networks = list_read(&r, "networks", sizeof(*d.networks),
                           (void (*)(struct rd *, void *))network_read,
                           &d.n_networks);
    if (!r.failed && json_object_get(j, AGENT_NET_VMS)) {
        d.has_net_vms = true;
        d.net_vms = list_read(&r, AGENT_NET_VMS, sizeof(*d.net_vms),
                              (void (*)(struct rd *, void *))net_vm_read,
                              &d.n_net_vms);
        if (!r.failed)
            net_vms_expand(&d);
    }
    d.ports = list_read(&r, "ports", sizeof(*d.ports),
                        (void (*)(struct rd *, void *))port_read, &d.n_ports);
    d.peers = list_read(&r, "peers", sizeof(*d.peers),
                        (void (*)(struct rd *, void *))peer_read, &d.n_peers);
    if (!r.failed && json_object_get(j, AGENT_CONSOLES))
        d.consoles = list_read(&r, AGENT_CONSOLES, sizeof(*d.consoles),
                               (void (*)(struct rd *, void *))console_read,
                               &d.n_consoles);
    bench_read(&r, &d);
    if (r.failed) {
        am_desired_clear(&d);
        return -EINVAL;
    }
    *ret = d;
    return 0;
}

void am_desired_clear(struct am_desired *d)
{
    if (!d)
        return;
    free(d->node_id);
    free(d->mesh.address);
    for (size_t i = 0; i < d->n_vms; i++)
        vm_clear(&d->vms[i]);
    free(d->vms);
    for (size_t i = 0; i < d->n_networks; i++)
        network_clear(&d->networks[i]);
    free(d->networks);
    for (size_t i = 0; i < d->n_net_vms; i++)
        net_vm_clear(&d->net_vms[i]);
    free(d->net_vms);
    for (size_t i = 0; i < d->n_ports; i++)
        port_clear(&d->ports[i]);
    free(d->ports);
    for (size_t i = 0; i < d->n_peers; i++)
        peer_clear(&d->peers[i]);
    free(d->peers);
    for (size_t i = 0; i < d->n_consoles; i++) {
        free(d->consoles[i].id);
        free(d->consoles[i].vm_id);
    }
    free(d->consoles);
    *d = (struct am_desired){ 0 };
}

/* ---- encoding ------------------------------------------------------------ */

static void put(json_t *o, const char *k, json_t *v)
{
    if (!v || json_object_set_new(o, k, v) < 0)
        abort(); /* out of memory, or a string that is not UTF-8: our bug */
}

static void put_str(json_t *o, const char *k, const char *s)
{
    if (s)
        put(o, k, json_string(s));
}

static void put_int(json_t *o, const char *k, int64_t v)
{
    put(o, k, json_integer((json_int_t)v));
}

static json_t *strs(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *nic_encode(const struct am_nic *n)
{
    json_t *o = json_object();
    put_str(o, "network_id", n->network_id);
    put_str(o, "mac", n->mac);
    put_str(o, "address", n->address);
    if (n->prefix)
        put_int(o, "prefix", n->prefix);
    put_str(o, "gateway", n->gateway);
    if (n->mtu)
        put_int(o, "mtu", n->mtu);
    put_str(o, "bridge", n->bridge);
    put_str(o, AGENT_NIC_DNS_SEARCH, n->dns_search);
    put_str(o, AGENT_NIC_ADDRESS6, n->address6);
    put_str(o, AGENT_NIC_GATEWAY6, n->gateway6);
    return o;
}

static json_t *restore_piece_encode(const struct am_restore *p)
{
    return json_pack("{s:s, s:I, s:s}", "backup", p->backup, "size",
                     (json_int_t)p->size, "sha256", p->sha256);
}

static json_t *snapshots_encode(const struct am_snapshot *v, size_t n,
                                bool held)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        put_str(o, "id", v[i].id);
        put_str(o, "name", v[i].name);
        if (held) {
            put_str(o, "consistency", v[i].consistency);
            put_int(o, "created_at", v[i].created_at);
        } else if (v[i].taken) {
            put(o, "taken", json_true());
        }
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *vm_encode(const struct am_vm *v)
{
    json_t *o = json_object();
    put_str(o, "id", v->id);
    put_str(o, "name", v->name);
    put_int(o, "vcpus", v->vcpus);
    put_int(o, "memory_mib", v->memory_mib);
    put_int(o, "disk_gib", v->disk_gib);
    put(o, "image", v->image ? json_string(v->image) : json_null());
    if (v->has_source) {
        json_t *s = json_object();
        put_str(s, "id", v->source.id);
        put_str(s, "sha256", v->source.sha256);
        put_str(s, "format", v->source.format);
        put_int(s, "size", v->source.size);
        put_str(s, "url", v->source.url);
        put(o, "image_source", s);
    } else {
        put(o, "image_source", json_null());
    }
    put(o, "ssh_keys", strs(v->ssh_keys, v->n_ssh_keys));
    put_str(o, "power", v->running ? "running" : "stopped");
    put(o, "stop_force", json_boolean(v->stop_force));
    put(o, "deleted", json_boolean(v->deleted));
    if (v->paused)
        put(o, AGENT_VM_PAUSED, json_true());
    if (v->no_autostart)
        put(o, AGENT_VM_AUTOSTART, json_false());
    put_int(o, "reboot_gen", v->reboot_gen);
    put_int(o, "start_gen", v->start_gen);
    put_int(o, "place_gen", v->place_gen);
    put_int(o, "shutdown_timeout_s", v->shutdown_timeout_s);
    put(o, "user_data", v->user_data ? json_string(v->user_data) : json_null());
    json_t *nics = json_array();
    for (size_t i = 0; i < v->n_nics; i++)
        json_array_append_new(nics, nic_encode(&v->nics[i]));
    put(o, "nics", nics);
    put(o, AGENT_VM_SNAPSHOTS, snapshots_encode(v->snapshots, v->n_snapshots,
                                                false));
    if (v->n_backups) {
        json_t *b = json_array();
        for (size_t i = 0; i < v->n_backups; i++) {
            json_t *e = json_pack("{s:s}", "id", v->backups[i]);
            if (v->backup_parents && v->backup_parents[i])
                put_str(e, AGENT_VM_BACKUP_PARENT, v->backup_parents[i]);
            json_array_append_new(b, e);
        }
        put(o, AGENT_VM_BACKUPS, b);
    }
    if (v->backup_key)
        put_str(o, AGENT_VM_BACKUP_KEY, v->backup_key);
    if (v->has_revert)
        put(o, AGENT_VM_REVERT, json_pack("{s:I, s:s}", "gen",
                                          (json_int_t)v->revert_gen,
                                          "snapshot_id",
                                          v->revert_snapshot_id));
    if (v->has_restore) {
        json_t *rs = restore_piece_encode(&v->restore);
        if (v->n_chain) {
            json_t *c = json_array();
            for (size_t i = 0; i < v->n_chain; i++)
                json_array_append_new(c, restore_piece_encode(&v->chain[i]));
            put(rs, AGENT_RESTORE_CHAIN, c);
        }
        put(o, AGENT_VM_RESTORE, rs);
    }
    if (v->n_gpus) {
        json_t *gpus = json_array();
        for (size_t i = 0; i < v->n_gpus; i++) {
            const struct am_vm_gpu *g = &v->gpus[i];
            json_t *go = json_object();
            put_str(go, "address", g->address);
            put(go, "functions", strs(g->functions, g->n_functions));
            put_int(go, "numa_node", g->numa_node);
            put_str(go, "cpulist", g->cpulist ? g->cpulist : "");
            json_array_append_new(gpus, go);
        }
        put(o, AGENT_VM_GPUS, gpus);
    }
    if (v->n_checks) {
        json_t *c = json_array();
        for (size_t i = 0; i < v->n_checks; i++)
            json_array_append_new(c, hc_spec_to_json(&v->checks[i]));
        put(o, AGENT_VM_HEALTH_CHECKS, c);
    }
    return o;
}

static json_t *network_encode(const struct am_network *w)
{
    json_t *o = json_object();
    put_str(o, "id", w->id);
    put_int(o, "vxlan_id", w->vxlan_id);
    put_str(o, "cidr", w->cidr);
    put_str(o, "gateway", w->gateway);
    put_str(o, AGENT_NET_CIDR6, w->cidr6);
    put_str(o, AGENT_NET_GATEWAY6, w->gateway6);
    if (w->mtu)
        put_int(o, "mtu", w->mtu);
    put_str(o, "bridge", w->bridge);
    put(o, "vteps", strs(w->vteps, w->n_vteps));
    /* One object per VM of the network: no format string parsed for
     * each (json_pack took a quarter of a big network's build). */
    json_t *macs = json_array();
    for (size_t i = 0; i < w->n_macs; i++) {
        json_t *m = json_object();
        put_str(m, "mac", w->macs[i].mac);
        put_str(m, "vtep", w->macs[i].vtep);
        json_array_append_new(macs, m);
    }
    put(o, "macs", macs);
    put_str(o, AGENT_NET_DNS_LABEL, w->dns_label);
    if (w->n_records > 0) {
        json_t *recs = json_array();
        for (size_t i = 0; i < w->n_records; i++) {
            json_t *rec = json_object();
            put_str(rec, "name", w->records[i].name);
            put_str(rec, "address", w->records[i].address);
            put_str(rec, AGENT_REC_ADDRESS6, w->records[i].address6);
            json_array_append_new(recs, rec);
        }
        put(o, AGENT_NET_RECORDS, recs);
    }
    return o;
}

static json_t *port_encode(const struct am_port *p)
{
    json_t *o = json_object();
    put_str(o, "vm_id", p->vm_id);
    put_str(o, "proto", p->proto);
    put_int(o, "host_port", p->host_port);
    put_int(o, "vm_port", p->vm_port);
    put_str(o, "vm_address", p->vm_address);
    return o;
}

static json_t *peer_encode(const struct am_peer *p)
{
    json_t *o = json_object();
    put_str(o, "node_id", p->node_id);
    put_str(o, "name", p->name);
    put_str(o, "public_key", p->public_key);
    put(o, "endpoint", p->endpoint ? json_string(p->endpoint) : json_null());
    put(o, "allowed_ips", strs(p->allowed_ips, p->n_allowed_ips));
    put_int(o, "keepalive", p->keepalive);
    put_str(o, AGENT_PEER_PATH, p->relayed ? "relay" : "direct");
    return o;
}

json_t *am_desired_encode(const struct am_desired *d)
{
    json_t *o = json_object();
    put_int(o, "revision", d->revision);
    put_str(o, "node_id", d->node_id);
    if (d->has_mesh) {
        json_t *m = json_object();
        put_str(m, "address", d->mesh.address);
        put_int(m, "prefix", d->mesh.prefix);
        put_int(m, "listen_port", d->mesh.listen_port);
        put(o, "mesh", m);
    } else {
        put(o, "mesh", json_null());
    }
    json_t *a = json_array();
    for (size_t i = 0; i < d->n_vms; i++)
        json_array_append_new(a, vm_encode(&d->vms[i]));
    put(o, "vms", a);
    a = json_array();
    for (size_t i = 0; i < d->n_networks; i++)
        json_array_append_new(a, network_encode(&d->networks[i]));
    put(o, "networks", a);
    if (d->has_net_vms) {
        a = json_array();
        for (size_t i = 0; i < d->n_net_vms; i++) {
            const struct am_net_vm *v = &d->net_vms[i];
            json_t *m = json_object();
            put_str(m, "id", v->id);
            put_int(m, "vxlan_id", v->vxlan_id);
            put_str(m, "name", v->name);
            put_str(m, "address", v->address);
            put_str(m, AGENT_REC_ADDRESS6, v->address6);
            put_str(m, "mac", v->mac);
            put_str(m, "vtep", v->vtep);
            json_array_append_new(a, m);
        }
        put(o, AGENT_NET_VMS, a);
    }
    a = json_array();
    for (size_t i = 0; i < d->n_ports; i++)
        json_array_append_new(a, port_encode(&d->ports[i]));
    put(o, "ports", a);
    a = json_array();
    for (size_t i = 0; i < d->n_peers; i++)
        json_array_append_new(a, peer_encode(&d->peers[i]));
    put(o, "peers", a);
    if (d->n_consoles) {
        a = json_array();
        for (size_t i = 0; i < d->n_consoles; i++) {
            json_t *c = json_pack("{s:s, s:s}", "id", d->consoles[i].id,
                                  "vm_id", d->consoles[i].vm_id);
            if (d->consoles[i].log_bytes)
                put(c, AGENT_CONSOLE_LOG_BYTES,
                    json_integer(d->consoles[i].log_bytes));
            json_array_append_new(a, c);
        }
        put(o, AGENT_CONSOLES, a);
    }
    if (d->has_bench) {
        const struct bench_params *p = &d->bench.params;
        char nonce[2 * BENCH_NONCE_LEN + 1];
        hex_encode(p->nonce, sizeof(p->nonce), nonce);
        put(o, AGENT_BENCH,
            json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "id",
                      d->bench.id, "nonce", nonce, "memory_mib",
                      (json_int_t)p->memory_mib, "rounds",
                      (json_int_t)p->rounds, "lanes", (json_int_t)p->lanes,
                      "segments", (json_int_t)p->segments, "timeout_s",
                      (json_int_t)d->bench.timeout_s));
        const struct am_bench *b = &d->bench;
        if (b->has_probe)
            put(json_object_get(o, AGENT_BENCH), AGENT_BENCH_PROBE,
                json_pack("{s:{s:s, s:I}, s:{s:s, s:I}}", "kernel", "sha256",
                          b->kernel.sha256, "size", (json_int_t)b->kernel.size,
                          "initrd", "sha256", b->initrd.sha256, "size",
                          (json_int_t)b->initrd.size));
    }
    if (d->unapproved)
        put(o, "approved", json_false());
    return o;
}

/* ---- a node's bodies ---------------------------------------------------- */

static void inventory_read(struct rd *r, struct am_inventory *inv, bool all,
                           bool with_free)
{
    static const char *const known[] = { "vcpus", "memory_mib", "disk_gib",
                                         "kvm", "arch", "cpu_model",
                                         AGENT_INV_RESERVED_VCPUS,
                                         AGENT_INV_RESERVED_MEMORY,
                                         AGENT_INV_RESERVED_DISK, NULL };
    /* Agents before this contract also sent what was free; nobody reads
     * it (the controller counts its own placements). */
    static const char *const known_old[] = { "vcpus", "memory_mib",
                                             "disk_gib", "kvm", "arch",
                                             "cpu_model", "free_vcpus",
                                             "free_memory_mib",
                                             "free_disk_gib",
                                             AGENT_INV_RESERVED_VCPUS,
                                             AGENT_INV_RESERVED_MEMORY,
                                             AGENT_INV_RESERVED_DISK, NULL };
    strict(r, with_free ? known_old : known);
    if (member(r, "vcpus", all))
        inv->has |= AM_INV_VCPUS;
    inv->vcpus = get_int(r, "vcpus", all, 1, NODE_MAX_VCPUS, 0);
    if (member(r, "memory_mib", all))
        inv->has |= AM_INV_MEMORY;
    inv->memory_mib = get_int(r, "memory_mib", all, NODE_MIN_MEMORY_MIB,
                              NODE_MAX_MEMORY_MIB, 0);
    if (member(r, "disk_gib", all))
        inv->has |= AM_INV_DISK;
    inv->disk_gib = get_int(r, "disk_gib", all, 0, NODE_MAX_DISK_GIB, 0);
    if (member(r, "kvm", all))
        inv->has |= AM_INV_KVM;
    inv->kvm = get_bool(r, "kvm", false);
    inv->arch = get_str(r, "arch", false, 32);
    inv->cpu_model = get_str(r, "cpu_model", false, 128);
    /* All three or none: a reservation is one setting of the node. */
    if (member(r, AGENT_INV_RESERVED_VCPUS, false) ||
        member(r, AGENT_INV_RESERVED_MEMORY, false) ||
        member(r, AGENT_INV_RESERVED_DISK, false)) {
        inv->has |= AM_INV_RESERVED;
        inv->reserved_vcpus = get_int(r, AGENT_INV_RESERVED_VCPUS, true, 0,
                                      NODE_MAX_VCPUS, 0);
        inv->reserved_memory_mib = get_int(r, AGENT_INV_RESERVED_MEMORY, true,
                                           0, NODE_MAX_MEMORY_MIB, 0);
        inv->reserved_disk_gib = get_int(r, AGENT_INV_RESERVED_DISK, true, 0,
                                         NODE_MAX_DISK_GIB, 0);
    }
    if (with_free) {
        (void)get_int(r, "free_vcpus", false, 0, NODE_MAX_VCPUS, 0);
        (void)get_int(r, "free_memory_mib", false, 0, NODE_MAX_MEMORY_MIB, 0);
        (void)get_int(r, "free_disk_gib", false, 0, NODE_MAX_DISK_GIB, 0);
    }
}

static json_t *inventory_encode(const struct am_inventory *inv)
{
    json_t *o = json_object();
    if (inv->has & AM_INV_VCPUS)
        put_int(o, "vcpus", inv->vcpus);
    if (inv->has & AM_INV_MEMORY)
        put_int(o, "memory_mib", inv->memory_mib);
    if (inv->has & AM_INV_DISK)
        put_int(o, "disk_gib", inv->disk_gib);
    if (inv->has & AM_INV_KVM)
        put(o, "kvm", json_boolean(inv->kvm));
    put_str(o, "arch", inv->arch);
    put_str(o, "cpu_model", inv->cpu_model);
    if (inv->has & AM_INV_RESERVED) {
        put_int(o, AGENT_INV_RESERVED_VCPUS, inv->reserved_vcpus);
        put_int(o, AGENT_INV_RESERVED_MEMORY, inv->reserved_memory_mib);
        put_int(o, AGENT_INV_RESERVED_DISK, inv->reserved_disk_gib);
    }
    return o;
}

static void inventory_clear(struct am_inventory *inv)
{
    free(inv->arch);
    free(inv->cpu_model);
}

/* AGENT_PERMIT_PORTS: distinct integers 1..65535. */
static uint16_t *permit_read(struct rd *r, bool *has, size_t *ret_n)
{
    size_t n;
    const json_t *a = get_arr(r, AGENT_PERMIT_PORTS, false,
                              AGENT_PERMIT_PORTS_MAX, &n);
    *ret_n = 0;
    *has = a != NULL;
    if (!a || r->failed)
        return NULL;
    uint16_t *p = xcalloc(n + 1, sizeof(*p));
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(a, i);
        bool dup = false;
        for (size_t k = 0; k < i && json_is_integer(v); k++)
            dup |= p[k] == json_integer_value(v);
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > 65535 || dup) {
            fail(r, AGENT_PERMIT_PORTS, "must be a list of distinct port "
                 "numbers from 1 to 65535");
            free(p);
            return NULL;
        }
        p[i] = (uint16_t)json_integer_value(v);
    }
    *ret_n = n;
    return p;
}

static json_t *permit_encode(const uint16_t *p, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer(p[i]));
    return a;
}

/* Where a node says it is reached: an address, an address:port. */
static void reach_read(struct rd *r, char **ret_ip, char **ret_ep)
{
    *ret_ep = get_str(r, "endpoint", false, 80);
    *ret_ip = get_str(r, "public_ip", false, 45);
    if (*ret_ep && !**ret_ep)
        fail(r, "endpoint", "must not be empty");
    if (*ret_ip && !net_ip_ok(*ret_ip))
        fail(r, "public_ip", "must be an IP address");
}

/* What the address probe found: {nat, mapped_endpoint?}. */
static void reach_status_read(struct rd *r, struct am_status *s)
{
    static const char *const known[] = { AGENT_REACH_NAT, AGENT_REACH_MAPPED,
                                         NULL };
    strict(r, known);
    s->nat = get_str(r, AGENT_REACH_NAT, true, 32);
    s->mapped_endpoint = get_str(r, AGENT_REACH_MAPPED, false,
                                 PROBE_EP_TEXT_MAX);
    enum probe_nat nat = PROBE_NAT_UNKNOWN;
    struct probe_ep ep;
    if (s->nat && probe_nat_parse(s->nat, &nat) < 0)
        fail(r, AGENT_REACH_NAT, "must be unknown, none, "
             "endpoint-independent or endpoint-dependent");
    if (s->mapped_endpoint && probe_ep_parse(s->mapped_endpoint, &ep) < 0)
        fail(r, AGENT_REACH_MAPPED, "must be IP:PORT or [IPv6]:PORT");
    if (s->nat && !s->mapped_endpoint && nat != PROBE_NAT_UNKNOWN)
        fail(r, AGENT_REACH_MAPPED, "is required unless nat is unknown");
}

/* A text member of an interface: absent (NULL) unless required. */
static char *iface_text(struct rd *r, const char *k, bool required)
{
    char *v = get_str(r, k, required, AGENT_IFACE_TEXT_MAX);
    if (v && !am_iface_text_ok(v))
        fail(r, k, "must be 1 to %d printable ASCII characters",
             AGENT_IFACE_TEXT_MAX);
    return v;
}

static void iface_read(struct rd *r, struct am_iface *f)
{
    static const char *const known[] = { "target", "type", "source", "model",
                                         "mac", NULL };
    strict(r, known);
    f->target = iface_text(r, "target", false);
    f->type = iface_text(r, "type", true);
    f->source = iface_text(r, "source", false);
    f->model = iface_text(r, "model", false);
    f->mac = get_str(r, "mac", true, 17);
    if (f->mac && !am_mac_ok(f->mac))
        fail(r, "mac", "must be a MAC address");
}

void am_iface_clear(struct am_iface *f)
{
    free(f->target);
    free(f->type);
    free(f->source);
    free(f->model);
    free(f->mac);
}

static void ifaces_read(struct rd *r, struct am_vm_status *v)
{
    size_t n;
    const json_t *a = get_arr(r, AGENT_VM_INTERFACES, false,
                              AGENT_VM_NICS_MAX, &n);
    if (a && !v->domain_xml)
        fail(r, AGENT_VM_INTERFACES, "comes only with %s",
             AGENT_VM_DOMAIN_XML);
    if (!a || n == 0 || r->failed)
        return;
    v->ifaces = xcalloc(n, sizeof(*v->ifaces));
    for (size_t i = 0; i < n && !r->failed; i++) {
        struct rd x;
        char *path;
        if (sub(r, AGENT_VM_INTERFACES, json_array_get(a, i), (ssize_t)i, &x,
                &path))
            iface_read(&x, &v->ifaces[v->n_ifaces++]);
        sub_end(r, &x, path);
    }
}

static json_t *ifaces_encode(const struct am_iface *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        put_str(o, "target", v[i].target);
        put_str(o, "type", v[i].type);
        put_str(o, "source", v[i].source);
        put_str(o, "model", v[i].model);
        put_str(o, "mac", v[i].mac);
        json_array_append_new(a, o);
    }
    return a;
}

/* AGENT_VM_HEALTH of a VM's status entry: [{id, state, output?}]. */
static void health_read(struct rd *r, struct am_vm_status *v)
{
    size_t n;
    const json_t *a = get_arr(r, AGENT_VM_HEALTH, false, HC_PER_VM_MAX, &n);
    v->has_health = a != NULL && !r->failed;
    if (n && !r->failed)
        v->health = xcalloc(n, sizeof(*v->health));
    for (size_t i = 0; i < n && !r->failed; i++) {
        static const char *const known[] = { "id", "state", "output", NULL };
        struct rd s;
        char *path;
        if (sub(r, AGENT_VM_HEALTH, json_array_get(a, i), (ssize_t)i, &s,
                &path)) {
            strict(&s, known);
            _cleanup_free_ char *id = get_str(&s, "id", true, 36);
            _cleanup_free_ char *st = get_str(&s, "state", true, 16);
            char *out = get_str(&s, "output", false, HC_OUTPUT_MAX);
            struct am_health *h = &v->health[v->n_health];
            if (id && !uuid_is_valid(id))
                fail(&s, "id", "must be a UUID");
            else if (st && hc_state_from_name(st, &h->state) < 0)
                fail(&s, "state", "must be unknown, healthy or unhealthy");
            for (const char *c = out; c && *c && !s.failed; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                    fail(&s, "output", "must be printable text");
            if (s.failed || !id || !st) {
                free(out);
            } else {
                memcpy(h->id, id, 37);
                h->output = out;
                v->n_health++;
            }
        }
        sub_end(r, &s, path);
    }
}

static void vm_status_read(struct rd *r, struct am_vm_status *v)
{
    static const char *const known[] = { "id", "state", "reason",
                                         "console_tail", "addresses",
                                         "by_guest", "start_gen",
                                         AGENT_VM_SNAPSHOTS,
                                         AGENT_VM_REVERT_GEN,
                                         AGENT_VM_DOMAIN_XML,
                                         AGENT_VM_INTERFACES,
                                         AGENT_VM_HEALTH, NULL };
    strict(r, known);
    v->id = get_str(r, "id", true, 36);
    if (v->id && !uuid_is_valid(v->id))
        fail(r, "id", "must be a UUID");
    v->state = get_str(r, "state", true, 16);
    bool ok = false;
    for (size_t i = 0; v->state && am_vm_states[i] && !ok; i++)
        ok = streq(am_vm_states[i], v->state);
    if (v->state && !ok)
        fail(r, "state", "must be one of creating, running, stopped, "
             "crashed, paused, error, deleted");
    v->reason = get_str(r, "reason", false, AGENT_REASON_MAX);
    v->console_tail = get_str(r, "console_tail", false,
                              AGENT_CONSOLE_TAIL_MAX);
    size_t n;
    const json_t *a = get_arr(r, "addresses", false, NODE_MAX_VM_ADDRESSES, &n);
    for (size_t i = 0; a && i < n && !r->failed; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (!net_ip_ok(s))
            fail(r, "addresses", "must be a list of at most %d IP addresses",
                 NODE_MAX_VM_ADDRESSES);
    }
    if (a && !r->failed)
        v->addresses = json_deep_copy(a);
    v->by_guest = get_bool(r, "by_guest", false);
    v->start_gen = get_int(r, "start_gen", false, 0, INT64_MAX, 0);
    v->has_snapshots = member(r, AGENT_VM_SNAPSHOTS, false) != NULL;
    v->snapshots = snapshots_read(r, AGENT_VM_SNAPSHOTS_HELD_MAX, true,
                                  &v->n_snapshots);
    v->revert_gen = get_int(r, AGENT_VM_REVERT_GEN, false, 0, INT64_MAX, 0);
    v->domain_xml = get_str(r, AGENT_VM_DOMAIN_XML, false,
                            AGENT_DOMAIN_XML_MAX);
    if (v->domain_xml && !*v->domain_xml)
        fail(r, AGENT_VM_DOMAIN_XML, "must not be empty");
    ifaces_read(r, v);
    health_read(r, v);
}

static void vm_status_clear(struct am_vm_status *v)
{
    for (size_t i = 0; i < v->n_health; i++)
        free(v->health[i].output);
    free(v->health);
    free(v->id);
    free(v->state);
    free(v->reason);
    free(v->console_tail);
    json_decref(v->addresses);
    snapshots_clear(v->snapshots, v->n_snapshots);
    free(v->domain_xml);
    for (size_t i = 0; i < v->n_ifaces; i++)
        am_iface_clear(&v->ifaces[i]);
    free(v->ifaces);
}

/* One usage sample, read with a cursor of its own: what is wrong with
 * it goes to its `refused`, not to the body's error. */
static void sample_read(const json_t *v, size_t i, struct am_sample *smp)
{
    static const char *const known[] = { "vm", "seq", "start", "end", NULL };
    struct jerr e = { 0 };
    _cleanup_free_ char *path = xasprintf("samples[%zu].", i);
    struct rd r = { v, path, &e, false };
    if (!json_is_object(v)) {
        smp->refused = xasprintf("malformed: samples[%zu] must be an "
                                 "object", i);
        return;
    }
    strict(&r, known);
    smp->vm = get_str(&r, "vm", true, 36);
    if (smp->vm && !uuid_is_valid(smp->vm))
        fail(&r, "vm", "must be a UUID");
    smp->seq = get_int(&r, "seq", true, 1, INT64_MAX, 0);
    smp->start = get_int(&r, "start", true, 0, AGENT_SAMPLE_TIME_MAX, 0);
    smp->end = get_int(&r, "end", true, 0, AGENT_SAMPLE_TIME_MAX, 0);
    if (r.failed)
        smp->refused = xasprintf("malformed: %s", e.detail);
    else if (smp->end < smp->start)
        smp->refused = xstrdup("malformed: end before start");
    jerr_clear(&e);
}

/* Samples in (vm, seq) order, for the monotony check. */
static int sample_cmp(const void *x, const void *y, void *base)
{
    const struct am_sample *a = (const struct am_sample *)base +
                                *(const size_t *)x,
                           *b = (const struct am_sample *)base +
                                *(const size_t *)y;
    int c = strcmp(a->vm, b->vm);
    if (c)
        return c;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Per VM, time goes forward with seq: a sample that starts before one
 * numbered lower is refused (a reset clock or a forged number). */
static void samples_monotonic(struct am_sample *v, size_t n)
{
    _cleanup_free_ size_t *ix = xcalloc(n + 1, sizeof(*ix));
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!v[i].refused)
            ix[m++] = i;
    qsort_r(ix, m, sizeof(*ix), sample_cmp, v);
    for (size_t k = 1; k < m; k++) {
        struct am_sample *a = &v[ix[k - 1]], *b = &v[ix[k]];
        if (!streq(a->vm, b->vm) || a->seq == b->seq || b->start >= a->start)
            continue;
        b->refused = xasprintf("not monotonic: seq %lld starts at %lld, "
                               "before seq %lld (%lld)", (long long)b->seq,
                               (long long)b->start, (long long)a->seq,
                               (long long)a->start);
        /* Later ones compare with the last good sample of the VM. */
        ix[k] = ix[k - 1];
    }
}

static struct am_sample *samples_read(struct rd *r, size_t *ret_n)
{
    size_t n;
    const json_t *a = get_arr(r, "samples", false, AGENT_SAMPLES_MAX, &n);
    *ret_n = 0;
    if (!a || n == 0 || r->failed)
        return NULL;
    struct am_sample *v = xcalloc(n, sizeof(*v));
    for (size_t i = 0; i < n; i++)
        sample_read(json_array_get(a, i), i, &v[i]);
    samples_monotonic(v, n);
    *ret_n = n;
    return v;
}

static void samples_clear(struct am_sample *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].vm);
        free(v[i].refused);
    }
    free(v);
}

static json_t *samples_encode(const struct am_sample *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        put_str(o, "vm", v[i].vm);
        put_int(o, "seq", v[i].seq);
        put_int(o, "start", v[i].start);
        put_int(o, "end", v[i].end);
        json_array_append_new(a, o);
    }
    return a;
}

static void mesh_path_read(struct rd *r, struct am_mesh_path *m)
{
    static const char *const known[] = { "node_id", AGENT_PEER_PATH, "since",
                                         NULL };
    strict(r, known);
    m->node_id = get_str(r, "node_id", true, 36);
    m->path = get_str(r, AGENT_PEER_PATH, true, 16);
    m->since = get_int(r, "since", true, 0, AGENT_SAMPLE_TIME_MAX, 0);
    if (m->node_id && !uuid_is_valid(m->node_id))
        fail(r, "node_id", "must be a UUID");
    if (m->path && !streq(m->path, AGENT_MESH_PATH_DIRECT) &&
        !streq(m->path, AGENT_MESH_PATH_RELAY_UDP) &&
        !streq(m->path, AGENT_MESH_PATH_RELAY_TCP))
        fail(r, AGENT_PEER_PATH, "must be direct, relay-udp or relay-tcp");
}

static void refusal_read(struct rd *r, struct am_refusal *f)
{
    /* What a node says it refused is bounded again by the controller
     * (AGENT_REFUSED_*), which keeps malformed entries out of its log. */
    f->object = get_str(r, "object", false, AGENT_STATUS_BODY_MAX);
    f->reason = get_str(r, "reason", false, AGENT_STATUS_BODY_MAX);
}

/* The node's GPU report (AGENT_GPUS, AGENT_IOMMU): the list is only
 * bounded here; the controller checks each entry (gpus_report_check). */
static json_t *gpus_read(struct rd *r, int *iommu)
{
    size_t n;
    const json_t *a = get_arr(r, AGENT_GPUS, false, AGENT_GPUS_MAX, &n);
    *iommu = -1;
    if (member(r, AGENT_IOMMU, false) && !r->failed)
        *iommu = get_bool(r, AGENT_IOMMU, false);
    return a && !r->failed ? json_deep_copy(a) : NULL;
}

static void gpus_encode(json_t *o, const json_t *gpus, int iommu)
{
    if (gpus)
        put(o, AGENT_GPUS, json_deep_copy(gpus));
    if (iommu >= 0)
        put(o, AGENT_IOMMU, json_boolean(iommu));
}

int am_status_decode(const json_t *j, struct am_status *ret, struct jerr *err)
{
    static const char *const known[] = { "inventory", "vms", "samples",
                                         "endpoint", "public_ip", "refused",
                                         AGENT_PERMIT_PORTS, AGENT_GPUS,
                                         AGENT_IOMMU, AGENT_REACH,
                                         AGENT_MESH_PATHS, AGENT_PUBLIC_IP6,
                                         NULL };
    struct am_status s = { 0 };
    struct rd r = { j, "", err, false };
    if (!json_is_object(j)) {
        *err = (struct jerr){ xstrdup(""), xstrdup("not a JSON object") };
        return -EINVAL;
    }
    strict(&r, known);
    const json_t *inv = member(&r, "inventory", false);
    if (inv && !r.failed) {
        struct rd x;
        char *path;
        if (sub(&r, "inventory", inv, -1, &x, &path)) {
            inventory_read(&x, &s.inventory, false, true);
            s.has_inventory = true;
        }
        sub_end(&r, &x, path);
    }
    size_t n;
    const json_t *a = get_arr(&r, "vms", false, AGENT_LIST_MAX, &n);
    if (n)
        s.vms = xcalloc(n, sizeof(*s.vms));
    for (size_t i = 0; i < n && !r.failed; i++) {
        struct rd x;
        char *path;
        if (sub(&r, "vms", json_array_get(a, i), (ssize_t)i, &x, &path))
            vm_status_read(&x, &s.vms[s.n_vms++]);
        sub_end(&r, &x, path);
    }
    s.samples = samples_read(&r, &s.n_samples);
    reach_read(&r, &s.public_ip, &s.endpoint);
    s.public_ip6 = get_str(&r, AGENT_PUBLIC_IP6, false, 45);
    if (s.public_ip6 && (!strchr(s.public_ip6, ':') || !net_ip_ok(s.public_ip6)))
        fail(&r, AGENT_PUBLIC_IP6, "must be an IPv6 address");
    a = get_arr(&r, "refused", false, AGENT_LIST_MAX, &n);
    if (n)
        s.refused = xcalloc(n, sizeof(*s.refused));
    for (size_t i = 0; i < n && !r.failed; i++) {
        struct rd x;
        char *path;
        if (sub(&r, "refused", json_array_get(a, i), (ssize_t)i, &x, &path))
            refusal_read(&x, &s.refused[s.n_refused++]);
        sub_end(&r, &x, path);
    }
    s.permit_ports = permit_read(&r, &s.has_permit_ports, &s.n_permit_ports);
    s.gpus = gpus_read(&r, &s.iommu);
    const json_t *reach = member(&r, AGENT_REACH, false);
    if (reach && !r.failed) {
        struct rd x;
        char *path;
        if (sub(&r, AGENT_REACH, reach, -1, &x, &path)) {
            reach_status_read(&x, &s);
            s.has_reach = true;
        }
        sub_end(&r, &x, path);
    }
    s.has_mesh_paths = member(&r, AGENT_MESH_PATHS, false) != NULL;
    a = get_arr(&r, AGENT_MESH_PATHS, false, AGENT_MESH_PATHS_MAX, &n);
    if (n)
        s.mesh_paths = xcalloc(n, sizeof(*s.mesh_paths));
    for (size_t i = 0; i < n && !r.failed; i++) {
        struct rd x;
        char *path;
        if (sub(&r, AGENT_MESH_PATHS, json_array_get(a, i), (ssize_t)i, &x,
                &path))
            mesh_path_read(&x, &s.mesh_paths[s.n_mesh_paths++]);
        sub_end(&r, &x, path);
    }
    /* One path per peer. */
    for (size_t i = 0; i < s.n_mesh_paths && !r.failed; i++)
        for (size_t k = 0; k < i && !r.failed; k++)
            if (s.mesh_paths[i].node_id && s.mesh_paths[k].node_id &&
                streq(s.mesh_paths[i].node_id, s.mesh_paths[k].node_id))
                fail(&r, AGENT_MESH_PATHS, "names node %s twice",
                     s.mesh_paths[i].node_id);
    if (r.failed) {
        am_status_clear(&s);
        return -EINVAL;
    }
    *ret = s;
    return 0;
}

void am_status_clear(struct am_status *s)
{
    if (!s)
        return;
    inventory_clear(&s->inventory);
    for (size_t i = 0; i < s->n_vms; i++)
        vm_status_clear(&s->vms[i]);
    free(s->vms);
    free(s->endpoint);
    free(s->public_ip);
    free(s->public_ip6);
    for (size_t i = 0; i < s->n_refused; i++) {
        free(s->refused[i].object);
        free(s->refused[i].reason);
    }
    free(s->refused);
    free(s->permit_ports);
    samples_clear(s->samples, s->n_samples);
    json_decref(s->gpus);
    free(s->nat);
    free(s->mapped_endpoint);
    for (size_t i = 0; i < s->n_mesh_paths; i++) {
        free(s->mesh_paths[i].node_id);
        free(s->mesh_paths[i].path);
    }
    free(s->mesh_paths);
    *s = (struct am_status){ 0 };
}

json_t *am_status_encode(const struct am_status *s)
{
    json_t *o = json_object();
    if (s->has_inventory)
        put(o, "inventory", inventory_encode(&s->inventory));
    json_t *vms = json_array();
    for (size_t i = 0; i < s->n_vms; i++) {
        const struct am_vm_status *v = &s->vms[i];
        json_t *x = json_object();
        put_str(x, "id", v->id);
        put_str(x, "state", v->state);
        if (v->by_guest)
            put(x, "by_guest", json_true());
        put_int(x, "start_gen", v->start_gen);
        put_str(x, "reason", v->reason);
        put_str(x, "console_tail", v->console_tail);
        if (v->addresses)
            put(x, "addresses", json_deep_copy(v->addresses));
        if (v->has_snapshots)
            put(x, AGENT_VM_SNAPSHOTS, snapshots_encode(v->snapshots,
                                                        v->n_snapshots, true));
        /* Always: the decoder reads it apart from the list. */
        put_int(x, AGENT_VM_REVERT_GEN, v->revert_gen);
        if (v->domain_xml) {
            put_str(x, AGENT_VM_DOMAIN_XML, v->domain_xml);
            put(x, AGENT_VM_INTERFACES, ifaces_encode(v->ifaces,
                                                      v->n_ifaces));
        }
        if (v->has_health) {
            json_t *h = json_array();
            for (size_t k = 0; k < v->n_health; k++) {
                json_t *e = json_pack("{s:s, s:s}", "id", v->health[k].id,
                                      "state",
                                      hc_state_name(v->health[k].state));
                put_str(e, "output", v->health[k].output);
                json_array_append_new(h, e);
            }
            put(x, AGENT_VM_HEALTH, h);
        }
        json_array_append_new(vms, x);
    }
    put(o, "vms", vms);
    put_str(o, "endpoint", s->endpoint);
    put_str(o, "public_ip", s->public_ip);
    put_str(o, AGENT_PUBLIC_IP6, s->public_ip6);
    if (s->has_permit_ports)
        put(o, AGENT_PERMIT_PORTS,
            permit_encode(s->permit_ports, s->n_permit_ports));
    if (s->n_refused) {
        json_t *a = json_array();
        for (size_t i = 0; i < s->n_refused; i++) {
            json_t *f = json_object();
            put_str(f, "object", s->refused[i].object);
            put_str(f, "reason", s->refused[i].reason);
            json_array_append_new(a, f);
        }
        put(o, "refused", a);
    }
    if (s->n_samples)
        put(o, "samples", samples_encode(s->samples, s->n_samples));
    gpus_encode(o, s->gpus, s->iommu);
    if (s->has_reach) {
        json_t *x = json_object();
        put_str(x, AGENT_REACH_NAT, s->nat);
        put_str(x, AGENT_REACH_MAPPED, s->mapped_endpoint);
        put(o, AGENT_REACH, x);
    }
    if (s->has_mesh_paths) {
        json_t *a = json_array();
        for (size_t i = 0; i < s->n_mesh_paths; i++) {
            json_t *x = json_object();
            put_str(x, "node_id", s->mesh_paths[i].node_id);
            put_str(x, AGENT_PEER_PATH, s->mesh_paths[i].path);
            put(x, "since", json_integer(s->mesh_paths[i].since));
            json_array_append_new(a, x);
        }
        put(o, AGENT_MESH_PATHS, a);
    }
    return o;
}

int am_register_decode(const json_t *j, struct am_register *ret,
                       struct jerr *err)
{
    static const char *const known[] = { "token", "name", "inventory",
                                         "wg_public_key", "endpoint",
                                         "wg_port", "public_ip", "port_min",
                                         "port_max", AGENT_PERMIT_PORTS,
                                         AGENT_GPUS, AGENT_IOMMU, NULL };
    struct am_register g = { 0 };
    struct rd r = { j, "", err, false };
    if (!json_is_object(j)) {
        *err = (struct jerr){ xstrdup(""), xstrdup("not a JSON object") };
        return -EINVAL;
    }
    strict(&r, known);
    g.token = get_str(&r, "token", true, 200);
    if (g.token && !*g.token)
        fail(&r, "token", "must not be empty");
    g.name = get_str(&r, "name", true, 255);
    if (g.name && !name_is_valid(g.name))
        fail(&r, "name", "must be a lowercase name (a-z, 0-9, '-')");
    const json_t *inv = member(&r, "inventory", true);
    if (inv && !r.failed) {
        struct rd x;
        char *path;
        if (sub(&r, "inventory", inv, -1, &x, &path))
            inventory_read(&x, &g.inventory, true, false);
        sub_end(&r, &x, path);
    }
    g.wg_public_key = get_str(&r, "wg_public_key", false, 44);
    if (g.wg_public_key && strlen(g.wg_public_key) != 44)
        fail(&r, "wg_public_key", "must be 44 characters of base64");
    reach_read(&r, &g.public_ip, &g.endpoint);
    g.wg_port = get_int(&r, "wg_port", false, 1, 65535, 0);
    g.port_min = get_int(&r, "port_min", false, 1, 65535, 0);
    g.port_max = get_int(&r, "port_max", false, 1, 65535, 0);
    g.permit_ports = permit_read(&r, &g.has_permit_ports, &g.n_permit_ports);
    g.gpus = gpus_read(&r, &g.iommu);
    if (r.failed) {
        am_register_clear(&g);
        return -EINVAL;
    }
    *ret = g;
    return 0;
}

void am_register_clear(struct am_register *g)
{
    if (!g)
        return;
    if (g->token)
        explicit_bzero(g->token, strlen(g->token));
    free(g->token);
    free(g->name);
    inventory_clear(&g->inventory);
    free(g->wg_public_key);
    free(g->endpoint);
    free(g->public_ip);
    free(g->permit_ports);
    json_decref(g->gpus);
    *g = (struct am_register){ 0 };
}

json_t *am_register_encode(const struct am_register *g)
{
    json_t *o = json_object();
    put_str(o, "token", g->token);
    put_str(o, "name", g->name);
    put(o, "inventory", inventory_encode(&g->inventory));
    put_str(o, "wg_public_key", g->wg_public_key);
    put_str(o, "endpoint", g->endpoint);
    if (g->wg_port)
        put_int(o, "wg_port", g->wg_port);
    put_str(o, "public_ip", g->public_ip);
    if (g->port_min)
        put_int(o, "port_min", g->port_min);
    if (g->port_max)
        put_int(o, "port_max", g->port_max);
    if (g->has_permit_ports)
        put(o, AGENT_PERMIT_PORTS,
            permit_encode(g->permit_ports, g->n_permit_ports));
    gpus_encode(o, g->gpus, g->iommu);
    return o;
}
