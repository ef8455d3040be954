/* Building a node's desired-state document: every part read in one store
 * transaction, every result checked. The document is whole or not built
 * at all, since an agent prunes what a document leaves out. */
#include "controller/desired.h"

#include "api/agentmsg.h"
#include "api/desired_delta.h"
#include "api/relay.h"
#include "common/buf.h"
#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "controller/benchmark.h"
#include "controller/console.h"
#include "controller/guard.h"
#include "controller/netalloc.h"
#include "controller/netrecords.h"
#include "controller/vmhealth.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Test seam, compiled in always: with FOG_TEST_FAIL_DESIRED naming a file,
 * while that file exists the step it names ("node", "vms", "nics",
 * "keys", "snapshots", "backups", "gpus", "networks", "remote", "records",
 * "ports",
 * "peers";
 * empty: every step) fails as a store error would. Costs one getenv per
 * step when unarmed. */
static int fault(const char *step)
{
    return fs_test_fault("FOG_TEST_FAIL_DESIRED", step) ? -EIO : 0;
}

/* A string column that must not be NULL: a NULL is a broken row, not
 * something to leave out quietly. */
static int col(const json_t *row, const char *k, char **ret)
{
    const char *v = json_str(row, k);
    if (!v)
        return -EINVAL;
    *ret = xstrdup(v);
    return 0;
}

static char *col_or_null(const json_t *row, const char *k)
{
    const char *v = json_str(row, k);
    return v ? xstrdup(v) : NULL;
}

static int prefix_of(const char *cidr, int def, int64_t *ret)
{
    const char *slash = cidr ? strchr(cidr, '/') : NULL;
    int64_t p = def;
    if (slash && parse_int64(slash + 1, 0, 128, &p) < 0)
        return -EINVAL;
    *ret = p;
    return 0;
}

void desired_dns_label(const char *account_name, char out[AGENT_DNS_LABEL_MAX + 1])
{
    size_t n = 0;
    bool dash = false;
    for (const char *c = account_name ? account_name : ""; *c; c++) {
        char ch = *c;
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) {
            if (dash && n > 0 && n + 1 < AGENT_DNS_LABEL_MAX)
                out[n++] = '-';
            dash = false;
            if (n < AGENT_DNS_LABEL_MAX)
                out[n++] = ch;
        } else {
            dash = true;
        }
    }
    if (n == 0)
        memcpy(out, "tenant", (n = 6));
    out[n] = '\0';
}

static char *dns_search(const json_t *row)
{
    char label[AGENT_DNS_LABEL_MAX + 1];
    desired_dns_label(json_str(row, "account_name"), label);
    return xasprintf("%s." AGENT_DNS_ZONE, label);
}

static char *bridge_name(const json_t *row)
{
    return xasprintf("fogbr%lld", (long long)json_int(row, "vxlan_id", 0));
}

/* The rows of one query about every VM of the node, by VM: a VM's
 * rows are read from them, not with a query of its own (a document of
 * 200 VMs took some 1,200 queries). */
struct vm_rows {
    json_t *nics, *snapshots, *backups, *gpus, *checks;
    json_t *keys; /* ssh_keys rows by account, read once per account */
};

static void vm_rows_clear(struct vm_rows *r)
{
    json_decref(r->nics);
    json_decref(r->snapshots);
    json_decref(r->backups);
    json_decref(r->gpus);
    json_decref(r->checks);
    json_decref(r->keys);
}

/* Rows (each with a string `vm_id`, in the query's order within a VM)
 * grouped into {vm_id: [rows]}. New reference. */
static json_t *by_vm(const json_t *rows)
{
    json_t *g = json_object();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *id = json_str(row, "vm_id");
        if (!id)
            continue;
        json_t *list = json_object_get(g, id);
        if (!list) {
            list = json_array();
            json_object_set_new(g, id, list);
        }
        json_array_append(list, row);
    }
    return g;
}

/* Each per-VM part read for the whole node at once: its fault step, its
 * query (rows with vm_id, in vm_id order, then the part's) and where
 * the grouping goes. */
static const struct {
    const char *step, *query, *order;
    size_t at;
} vm_parts[] = {
    { "nics", "SELECT c.vm_id, c.network_id, c.mac, c.address, w.cidr, "
      "w.gateway, w.cidr6, w.gateway6, w.vxlan_id, ac.name AS account_name "
      "FROM vm_nics c JOIN vms v ON v.id = c.vm_id JOIN networks w ON w.id "
      "= c.network_id JOIN accounts ac ON ac.id = w.account_id WHERE "
      "v.node_id = $1 AND v.deleted_at IS NULL", "c.vm_id, c.idx",
      offsetof(struct vm_rows, nics) },
    { "snapshots", "SELECT s.vm_id, s.id, s.name, s.state FROM vm_snapshots "
      "s JOIN vms v ON v.id = s.vm_id WHERE v.node_id = $1 AND "
      "v.deleted_at IS NULL AND s.state IN ('pending', 'ready')",
      "s.vm_id, s.created_at, s.name", offsetof(struct vm_rows, snapshots) },
    { "backups", "SELECT b.vm_id, b.id, b.parent_id FROM vm_backups b JOIN "
      "vms v ON v.id = b.vm_id WHERE v.node_id = $1 AND v.deleted_at IS "
      "NULL AND b.state IN ('pending', 'uploading')",
      "b.vm_id, b.created_at, b.id", offsetof(struct vm_rows, backups) },
    { "gpus", "SELECT g.vm_id, g.address, g.functions, g.numa_node, "
      "g.cpulist FROM gpus g JOIN vms v ON v.id = g.vm_id WHERE v.node_id "
      "= $1 AND v.deleted_at IS NULL", "g.vm_id, g.address",
      offsetof(struct vm_rows, gpus) },
};

/* A query of the node's VMs (`where` ends in the node's filter), for
 * every VM of it or (vm_id) one: owned. */
static char *vm_query(const char *where, const char *order, const char *vm_id)
{
    return xasprintf("%s%s ORDER BY %s", where, vm_id ? " AND v.id = $2" : "",
                     order);
}

static int vm_rows_read(struct app *a, const char *node_id, const char *vm_id,
                        struct vm_rows *r)
{
    int e;
    for (size_t i = 0; i < ARRAY_SIZE(vm_parts); i++) {
        json_auto_t *rows = NULL;
        _cleanup_free_ char *sql = vm_query(vm_parts[i].query,
                                            vm_parts[i].order, vm_id);
        if ((e = fault(vm_parts[i].step)) < 0 ||
            (e = store_query(a->store, &rows, sql, vm_id ? "ss" : "s",
                             node_id, vm_id)) < 0)
            return e;
        *(json_t **)((char *)r + vm_parts[i].at) = by_vm(rows);
    }
    json_auto_t *checks = NULL;
    if ((e = vmhealth_desired_node(a->store, node_id, vm_id, &checks)) < 0)
        return e;
    r->checks = by_vm(checks);
    r->keys = json_object();
    return 0;
}

/* VM vm_id's rows of a grouping (NULL: none, read as empty). */
static const json_t *rows_of(const json_t *g, const char *vm_id)
{
    return json_object_get(g, vm_id);
}

static int vm_nics(const json_t *rows, struct am_vm *vm)
{
    int e;
    size_t i;
    json_t *row;
    vm->nics = xcalloc(json_array_size(rows) + 1, sizeof(*vm->nics));
    json_array_foreach(rows, i, row) {
        struct am_nic *n = &vm->nics[vm->n_nics++];
        if ((e = prefix_of(json_str(row, "cidr"), 24, &n->prefix)) < 0 ||
            (e = col(row, "network_id", &n->network_id)) < 0 ||
            (e = col(row, "mac", &n->mac)) < 0 ||
            (e = col(row, "address", &n->address)) < 0 ||
            (e = col(row, "gateway", &n->gateway)) < 0)
            return e;
        /* NULL for a network without a /64: the NIC is IPv4 only. */
        n->address6 = netalloc_address6(json_str(row, "cidr6"),
                                        json_str(row, "cidr"), n->address);
        if (n->address6)
            n->gateway6 = col_or_null(row, "gateway6");
        n->mtu = DESIRED_GUEST_MTU;
        n->bridge = bridge_name(row);
        n->dns_search = dns_search(row);
    }
    return 0;
}

static int ssh_keys(struct app *a, struct vm_rows *r, const char *account_id,
                    struct am_vm *vm)
{
    json_t *rows = json_object_get(r->keys, account_id ? account_id : "");
    int e;
    if (!rows) {
        if ((e = fault("keys")) < 0 ||
            (e = store_query(a->store, &rows, "SELECT public_key FROM "
                             "ssh_keys WHERE account_id = $1 ORDER BY name",
                             "s", account_id)) < 0)
            return e;
        json_object_set_new(r->keys, account_id ? account_id : "", rows);
    }
    size_t i;
    json_t *row;
    vm->ssh_keys = xcalloc(json_array_size(rows) + 1, sizeof(char *));
    json_array_foreach(rows, i, row)
        if ((e = col(row, "public_key", &vm->ssh_keys[vm->n_ssh_keys++])) < 0)
            return e;
    return 0;
}

/* The snapshots VM `vm` should have, and the revert last asked for. */
static int vm_snapshots(const json_t *rows, const json_t *row,
                        struct am_vm *vm)
{
    int e;
    size_t i;
    json_t *s;
    vm->snapshots = xcalloc(json_array_size(rows) + 1, sizeof(*vm->snapshots));
    json_array_foreach(rows, i, s) {
        struct am_snapshot *x = &vm->snapshots[vm->n_snapshots++];
        if ((e = col(s, "id", &x->id)) < 0 || (e = col(s, "name", &x->name)) < 0)
            return e;
        x->taken = streq(json_str(s, "state"), "ready");
    }
    /* A revert the node has reported done is not asked again: a domain
     * made afresh (its host lost it) must not revert. */
    if (json_int(row, "revert_gen", 0) > json_int(row, "revert_done_gen", 0) &&
        json_str(row, "revert_snapshot")) {
        vm->has_revert = true;
        vm->revert_gen = json_int(row, "revert_gen", 0);
        vm->revert_snapshot_id = xstrdup(json_str(row, "revert_snapshot"));
    }
    return 0;
}

/* The backups VM `vm` should take (pending or under way) and, with them,
 * its key: only ever in the document of the node that hosts it. */
static int vm_backups(const json_t *rows, const json_t *row, struct am_vm *vm)
{
    int e;
    if (json_array_size(rows) == 0 || !json_str(row, "backup_key"))
        return 0;
    size_t i, n = json_array_size(rows);
    if (n > VM_BACKUPS_PENDING_MAX)
        n = VM_BACKUPS_PENDING_MAX;
    json_t *b;
    vm->backups = xcalloc(n, sizeof(*vm->backups));
    vm->backup_parents = xcalloc(n, sizeof(*vm->backup_parents));
    json_array_foreach(rows, i, b) {
        if (i >= n)
            break;
        vm->backup_parents[vm->n_backups] = col_or_null(b, "parent_id");
        if ((e = col(b, "id", &vm->backups[vm->n_backups++])) < 0)
            return e;
    }
    return vm->backup_key ? 0 /* set with a restore */
                          : col(row, "backup_key", &vm->backup_key);
}

/* The GPUs the VM holds, as its node reported them: every function of
 * each card, its NUMA node and local CPUs. */
static int vm_gpus(const json_t *rows, struct am_vm *vm)
{
    int e;
    size_t i, k;
    json_t *row, *f;
    vm->gpus = xcalloc(json_array_size(rows) + 1, sizeof(*vm->gpus));
    json_array_foreach(rows, i, row) {
        struct am_vm_gpu *g = &vm->gpus[vm->n_gpus++];
        g->numa_node = json_int(row, "numa_node", -1);
        if ((e = col(row, "address", &g->address)) < 0 ||
            (e = col(row, "cpulist", &g->cpulist)) < 0)
            return e;
        json_auto_t *fns = json_loads(json_str(row, "functions") ?
                                      json_str(row, "functions") : "", 0, NULL);
        /* Stored from a checked report: anything else is a broken row. */
        if (!json_is_array(fns) || json_array_size(fns) == 0 ||
            json_array_size(fns) > AGENT_GPU_FUNCTIONS_MAX)
            return -EINVAL;
        g->functions = xcalloc(json_array_size(fns), sizeof(char *));
        json_array_foreach(fns, k, f) {
            if (!json_is_string(f))
                return -EINVAL;
            g->functions[g->n_functions++] = xstrdup(json_string_value(f));
        }
    }
    return 0;
}

/* A placement from a backup carries it (AGENT_VM_RESTORE) with the VM's
 * key. A backup that is no longer ready still names itself with a digest
 * nothing hashes to, so the node reports the restore failed rather than
 * starting the VM on a fresh disk. */
static void vm_restore(const json_t *row, struct am_vm *vm)
{
    const char *key = json_str(row, "backup_key");
    const char *id = json_str(row, "restore_backup");
    const char *sha = json_str(row, "restore_sha256");
    if (!id || strlen(id) != 36)
        return;
    if (key && strlen(key) == 64 && !vm->backup_key)
        vm->backup_key = xstrdup(key);
    vm->has_restore = true;
    memcpy(vm->restore.backup, id, 37);
    bool ready = sha && strlen(sha) == 64;
    snprintf(vm->restore.sha256, sizeof(vm->restore.sha256), "%s",
             ready ? sha : "0000000000000000000000000000000000000000000000000"
                           "000000000000000");
    vm->restore.size = ready ? json_int(row, "restore_size", 1) : 1;
    if (vm->restore.size < 1)
        vm->restore.size = 1;
}

/* The backups under an incremental one the VM is placed from, its full
 * one first (AGENT_RESTORE_CHAIN). A piece that is missing or not ready
 * is named with a digest nothing hashes to, as vm_restore does. */
static int vm_restore_chain(struct app *a, const json_t *row, struct am_vm *vm)
{
    if (!vm->has_restore || !json_str(row, "restore_parent"))
        return 0;
    struct am_restore chain[BACKUP_CHAIN_MAX];
    size_t n = 0;
    _cleanup_free_ char *cur = xstrdup(json_str(row, "restore_parent"));
    while (cur && n < BACKUP_CHAIN_MAX) {
        json_auto_t *b = NULL;
        int e = store_query_one(a->store, &b, "SELECT id, size, sha256, "
                                "state, parent_id FROM vm_backups WHERE id = "
                                "$1", "s", cur);
        if (e < 0 && e != -ENOENT)
            return e;
        struct am_restore *p = &chain[n++];
        snprintf(p->backup, sizeof(p->backup), "%s", cur);
        bool ready = e == 0 && streq(json_str(b, "state"), "ready") &&
                     json_str(b, "sha256");
        snprintf(p->sha256, sizeof(p->sha256), "%s",
                 ready ? json_str(b, "sha256") :
                 "0000000000000000000000000000000000000000000000000000000000"
                 "000000");
        p->size = ready && json_int(b, "size", 0) > 0 ?
            json_int(b, "size", 1) : 1;
        free(cur);
        cur = e == 0 && json_str(b, "parent_id") ?
            xstrdup(json_str(b, "parent_id")) : NULL;
    }
    vm->chain = xcalloc(n, sizeof(*vm->chain));
    for (size_t i = 0; i < n; i++)
        vm->chain[i] = chain[n - 1 - i];
    vm->n_chain = n;
    return 0;
}

static int vm_from_row(struct app *a, struct vm_rows *r, const json_t *row,
                       struct am_vm *vm)
{
    int e;
    if ((e = col(row, "id", &vm->id)) < 0 ||
        (e = col(row, "name", &vm->name)) < 0)
        return e;
    const char *d = json_str(row, "desired_state");
    vm->vcpus = json_int(row, "vcpus", 1);
    vm->memory_mib = json_int(row, "memory_mib", 64);
    vm->disk_gib = json_int(row, "disk_gib", 1);
    vm->image = col_or_null(row, "image");
    if (json_str(row, "image_id") && json_str(row, "sha256")) {
        vm->has_source = true;
        vm->source = (struct am_image_source){
            .id = xstrdup(json_str(row, "image_id")),
            .sha256 = xstrdup(json_str(row, "sha256")),
            .url = xasprintf("/v1/images/%s/file", json_str(row, "image_id")),
            .size = json_int(row, "size", 0),
        };
        if ((e = col(row, "format", &vm->source.format)) < 0)
            return e;
    }
    vm->running = streq(d, "running");
    vm->stop_force = json_int(row, "stop_force", 0) != 0;
    vm->paused = vm->running && json_int(row, "paused", 0) != 0;
    vm->no_autostart = json_int(row, "autostart", 1) == 0;
    vm->deleted = streq(d, "deleted");
    vm->reboot_gen = json_int(row, "reboot_gen", 0);
    vm->start_gen = json_int(row, "start_gen", 0);
    vm->place_gen = json_int(row, "place_gen", 0);
    vm->shutdown_timeout_s = json_int(row, "shutdown_timeout_s",
                                      VM_SHUTDOWN_TIMEOUT_DEFAULT_S);
    vm->user_data = col_or_null(row, "user_data");
    vm_restore(row, vm);
    if ((e = vm_restore_chain(a, row, vm)) < 0 ||
        (e = ssh_keys(a, r, json_str(row, "account_id"), vm)) < 0 ||
        (e = vm_snapshots(rows_of(r->snapshots, vm->id), row, vm)) < 0 ||
        (e = vm_backups(rows_of(r->backups, vm->id), row, vm)) < 0 ||
        (e = vm_gpus(rows_of(r->gpus, vm->id), vm)) < 0)
        return e;
    vmhealth_desired_from(rows_of(r->checks, vm->id), vm);
    return vm_nics(rows_of(r->nics, vm->id), vm);
}

/* The node's VMs (or, with vm_id, that one, when it is the node's) added
 * to doc->vms, which holds room for `room` of them first. */
static int vms_doc(struct app *a, const char *node_id, const char *vm_id,
                   size_t room, struct am_desired *doc)
{
    json_auto_t *rows = NULL;
    int e;
    _cleanup_free_ char *sql = vm_query(
        "SELECT v.id, v.name, v.vcpus, v.memory_mib, "
        "v.disk_gib, v.image, v.desired_state, v.stop_force, "
        "v.reboot_gen, v.start_gen, v.place_gen, "
        "v.shutdown_timeout_s, v.user_data, v.paused, "
        "v.autostart, v.revert_gen, v.revert_snapshot, "
        "v.revert_done_gen, v.backup_key, "
        "v.account_id, i.id AS image_id, i.sha256, i.format, "
        "i.size, v.backup_key, v.restore_backup, b.size AS "
        "restore_size, b.sha256 AS restore_sha256, "
        "b.parent_id AS restore_parent FROM vms v "
        "LEFT JOIN images i ON i.id = v.image_id LEFT JOIN "
        "vm_backups b ON b.id = v.restore_backup AND "
        "b.state = 'ready' WHERE v.node_id = $1 AND "
        "v.deleted_at IS NULL", "v.id", vm_id);
    if ((e = fault("vms")) < 0 ||
        (e = store_query(a->store, &rows, sql, vm_id ? "ss" : "s", node_id,
                         vm_id)) < 0)
        return e;
    struct vm_rows r = { 0 };
    if (json_array_size(rows) > 0 &&
        (e = vm_rows_read(a, node_id, vm_id, &r)) < 0) {
        vm_rows_clear(&r);
        return e;
    }
    size_t i;
    json_t *row;
    if (!doc->vms)
        doc->vms = xcalloc(room + json_array_size(rows) + 1, sizeof(*doc->vms));
    json_array_foreach(rows, i, row)
        if ((e = vm_from_row(a, &r, row, &doc->vms[doc->n_vms++])) < 0)
            break;
    vm_rows_clear(&r);
    return e < 0 ? e : 0;
}

struct remote_fill {
    struct am_network *w;
    size_t cap;
    int err;
};

static void remote_row(struct store_row *row, void *data)
{
    struct remote_fill *f = data;
    struct am_network *w = f->w;
    const char *vtep = store_row_str(row, "mesh_ip");
    const char *mac = store_row_str(row, "mac");
    if (f->err < 0 || !vtep)
        return; /* a node without a mesh address carries nothing */
    if (!mac) {
        f->err = -EINVAL;
        return;
    }
    if (w->n_macs == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 16;
        w->macs = xrealloc(w->macs, f->cap * sizeof(*w->macs));
        w->vteps = xrealloc(w->vteps, f->cap * sizeof(*w->vteps));
    }
    /* In VTEP order: a new one differs from the last. */
    if (w->n_vteps == 0 || !streq(w->vteps[w->n_vteps - 1], vtep))
        w->vteps[w->n_vteps++] = xstrdup(vtep);
    w->macs[w->n_macs++] = (struct am_remote_mac){ .mac = xstrdup(mac),
                                                   .vtep = xstrdup(vtep) };
}

/* The other nodes' VTEPs (mesh addresses) and MACs on network `w` as
 * the store says them, row by row: FOG_TEST_DESIRED_VERIFY's check of
 * what netrecords_remote() made from the network's records. */
static int remote_of_store(struct app *a, const char *node_id,
                           struct am_network *w)
{
    struct remote_fill f = { .w = w };
    int e = store_query_each(a->store, remote_row, &f,
                             "SELECT n.mesh_ip, c.mac FROM vm_nics c JOIN "
                             "vms v ON v.id = c.vm_id JOIN nodes n ON n.id = "
                             "v.node_id WHERE c.network_id = $1 AND "
                             "v.deleted_at IS NULL AND v.node_id <> $2 AND "
                             "n.removed_at IS NULL ORDER BY n.mesh_ip, "
                             "c.mac", "ss", w->id, node_id);
    return e < 0 ? e : f.err;
}

static int str_cmp(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* "VTEP MAC" of each of w's MACs, sorted; caller frees each and it. */
static char **remote_lines(const struct am_network *w)
{
    char **v = xcalloc(w->n_macs + 1, sizeof(*v));
    for (size_t i = 0; i < w->n_macs; i++)
        v[i] = xasprintf("%s %s", w->macs[i].vtep, w->macs[i].mac);
    qsort(v, w->n_macs, sizeof(*v), str_cmp);
    return v;
}

bool desired_verify(void)
{
    static int on = -1;
    if (on < 0)
        on = getenv("FOG_TEST_DESIRED_VERIFY") != NULL;
    return on;
}

static void verify_remote(struct app *a, const char *node_id,
                          const struct am_network *w)
{
    struct am_network check = { .id = (char *)w->id };
    if (!desired_verify() || remote_of_store(a, node_id, &check) < 0)
        goto out;
    bool same = check.n_macs == w->n_macs && check.n_vteps == w->n_vteps;
    char **x = remote_lines(w), **y = remote_lines(&check);
    for (size_t i = 0; same && i < w->n_macs; i++)
        same = streq(x[i], y[i]);
    for (size_t i = 0; i < w->n_macs; i++)
        free(x[i]);
    for (size_t i = 0; i < check.n_macs; i++)
        free(y[i]);
    free(x);
    free(y);
    if (!same) {
        log_error("network %s on node %s: %zu remote MACs made from its "
                  "records, %zu in the store", w->id, node_id, w->n_macs,
                  check.n_macs);
        abort();
    }
out:
    for (size_t i = 0; i < check.n_vteps; i++)
        free(check.vteps[i]);
    for (size_t i = 0; i < check.n_macs; i++) {
        free(check.macs[i].mac);
        free(check.macs[i].vtep);
    }
    free(check.vteps);
    free(check.macs);
}

/* A network's "macs" and "records" as JSON text (netrecords_texts()),
 * for a document cut into parts. */
struct net_text {
    char *macs, *records;
};

/* What a build for a cut makes of the networks besides the document. */
struct cut {
    bool runs_only;             /* asked only where the node takes them */
    bool net_vms;               /* the node takes AGENT_NET_VMS */
    struct net_text *texts;     /* without net_vms: one per network */
    struct desired_run **runs;  /* with net_vms: one per network */
};

/* What network `w` takes from its records (controller/netrecords.c), at
 * its DNS revision dns_rev: the other nodes' VTEPs and MACs on it, and
 * the names it answers inside, every placed VM of it on any node in
 * (name, address) order, at most AGENT_NET_RECORDS_MAX of them. The
 * records are held once for every node of the network, not read for
 * each at each change in it; for a `whole` document (an agent's resync,
 * a change that may have touched anything) read whole from the store.
 * With `text`, the MACs and names are left out of w and written there as
 * JSON text instead, made once for every node. */
static int network_from_records(struct app *a, const char *node_id,
                                struct am_network *w, int64_t dns_rev,
                                bool whole, struct cut *cut, size_t at)
{
    struct netrec_set *set = NULL;
    int e;
    if ((e = fault("records")) < 0 ||
        (e = netrecords_get(a->store, w->id, dns_rev, w->cidr6, w->cidr,
                            whole, &set)) < 0)
        return e;
    if (cut) {
        e = fault("remote");
        if (e == 0 && cut->net_vms)
            e = netrecords_run(a->store, set, w->vxlan_id, node_id, w,
                               &cut->runs[at]);
        else if (e == 0)
            e = netrecords_texts(a->store, set, node_id, w,
                                 &cut->texts[at].macs,
                                 &cut->texts[at].records);
        netrec_set_unref(set);
        return e;
    }
    if ((e = fault("remote")) < 0 ||
        (e = netrecords_remote(a->store, set, node_id, w)) < 0) {
        netrec_set_unref(set);
        return e;
    }
    verify_remote(a, node_id, w);
    size_t n = set->n < AGENT_NET_RECORDS_MAX ? set->n : AGENT_NET_RECORDS_MAX;
    w->records = xcalloc(n + 1, sizeof(*w->records));
    for (size_t i = 0; i < n; i++) {
        const struct netrec *r = set->recs[i];
        w->records[i] = (struct am_record){
            .name = xstrdup(r->name),
            .address = xstrdup(r->address),
            .address6 = r->address6 ? xstrdup(r->address6) : NULL,
        };
    }
    w->n_records = n;
    netrec_set_unref(set);
    return 0;
}

/* Networks with a VM on this node, each with the other nodes' VTEPs (their
 * mesh addresses) and the MACs living there. */
static int networks_doc(struct app *a, const char *node_id, bool whole,
                        struct am_desired *doc, struct cut *cut)
{
    json_auto_t *nets = NULL;
    int e;
    if ((e = fault("networks")) < 0 ||
        (e = store_query(a->store, &nets,
                         "SELECT DISTINCT w.id, w.cidr, w.gateway, w.cidr6, "
                         "w.gateway6, w.vxlan_id, w.dns_rev, "
                         "ac.name AS account_name FROM networks w JOIN "
                         "accounts ac ON ac.id = w.account_id JOIN vm_nics c "
                         "ON c.network_id = w.id JOIN vms v ON v.id = "
                         "c.vm_id WHERE v.node_id = "
                         "$1 AND v.deleted_at IS NULL ORDER BY w.vxlan_id",
                         "s", node_id)) < 0)
        return e;
    size_t i;
    json_t *row;
    doc->networks = xcalloc(json_array_size(nets) + 1, sizeof(*doc->networks));
    if (cut && cut->net_vms)
        cut->runs = xcalloc(json_array_size(nets) + 1, sizeof(*cut->runs));
    else if (cut)
        cut->texts = xcalloc(json_array_size(nets) + 1, sizeof(*cut->texts));
    json_array_foreach(nets, i, row) {
        struct am_network *w = &doc->networks[doc->n_networks++];
        w->vxlan_id = json_int(row, "vxlan_id", 0);
        w->mtu = DESIRED_GUEST_MTU;
        w->bridge = bridge_name(row);
        char label[AGENT_DNS_LABEL_MAX + 1];
        desired_dns_label(json_str(row, "account_name"), label);
        w->dns_label = xstrdup(label);
        w->cidr6 = col_or_null(row, "cidr6");
        w->gateway6 = col_or_null(row, "gateway6");
        if ((e = col(row, "id", &w->id)) < 0 ||
            (e = col(row, "cidr", &w->cidr)) < 0 ||
            (e = col(row, "gateway", &w->gateway)) < 0 ||
            (e = network_from_records(a, node_id, w,
                                      json_int(row, "dns_rev", 0), whole,
                                      cut, i)) < 0)
            return e;
    }
    return 0;
}

static int ports_doc(struct app *a, const char *node_id, struct am_desired *doc)
{
    json_auto_t *rows = NULL;
    int e;
    if ((e = fault("ports")) < 0 ||
        (e = store_query(a->store, &rows,
                         "SELECT p.vm_id, p.proto, p.host_port, p.vm_port, "
                         "c.address FROM ports p JOIN vms v ON v.id = p.vm_id "
                         "JOIN vm_nics c ON c.vm_id = v.id AND c.idx = 0 "
                         "WHERE p.node_id = $1 AND p.host_port IS NOT NULL "
                         "AND v.deleted_at IS NULL ORDER BY p.proto, "
                         "p.host_port", "s", node_id)) < 0)
        return e;
    size_t i;
    json_t *row;
    doc->ports = xcalloc(json_array_size(rows) + 1, sizeof(*doc->ports));
    json_array_foreach(rows, i, row) {
        struct am_port *p = &doc->ports[doc->n_ports++];
        p->host_port = json_int(row, "host_port", 0);
        p->vm_port = json_int(row, "vm_port", 0);
        if ((e = col(row, "vm_id", &p->vm_id)) < 0 ||
            (e = col(row, "proto", &p->proto)) < 0 ||
            (e = col(row, "address", &p->vm_address)) < 0)
            return e;
    }
    return 0;
}

/* The WireGuard endpoint a node's peers are given (owned; NULL: none
 * known). The UDP mapping its address probe found wins where the NAT
 * keeps one mapping for every destination (or there is no NAT): that is
 * where its WireGuard port is reached. Else the endpoint the provider
 * configured (a port forward is the only way into an endpoint-dependent
 * NAT), else the mapping (right address, a port peers may not reach
 * until the node speaks first), else the address the controller saw
 * its API connection come from with the node's WireGuard port. */
char *desired_peer_endpoint(const json_t *row)
{
    const char *mapped = json_str(row, "mapped_endpoint");
    const char *conf = json_str(row, "endpoint");
    const char *nat = json_str(row, "nat_class");
    /* Rows stored before endpoints were checked may hold anything. */
    if (mapped && !guard_endpoint_ok(mapped))
        mapped = NULL;
    if (conf && !guard_endpoint_ok(conf))
        conf = NULL;
    if (mapped && nat &&
        (streq(nat, "none") || streq(nat, "endpoint-independent")))
        return xstrdup(mapped);
    if (conf)
        return xstrdup(conf);
    if (mapped)
        return xstrdup(mapped);
    if (json_str(row, "observed_endpoint"))
        return xasprintf("%s:%lld", json_str(row, "observed_endpoint"),
                         (long long)json_int(row, "wg_port", 51820));
    return NULL;
}

static enum probe_nat nat_of(const char *s)
{
    enum probe_nat n;
    return s && probe_nat_parse(s, &n) == 0 ? n : PROBE_NAT_UNKNOWN;
}

bool desired_peer_relayed(const struct app *a, const json_t *node_a,
                          const json_t *node_b)
{
    return a->relay &&
           json_int(node_a, "agent_contract", 1) >= AGENT_CONTRACT_RELAY &&
           json_int(node_b, "agent_contract", 1) >= AGENT_CONTRACT_RELAY &&
           relay_path_needed(nat_of(json_str(node_a, "nat_class")),
                             nat_of(json_str(node_b, "nat_class")));
}

/* Every other approved node with a WireGuard key is a peer, at the
 * endpoint desired_peer_endpoint() chooses, directly or through the relay
 * as desired_peer_relayed() says for it and us (me: our row). */
static int peers_doc(struct app *a, const char *node_id, const json_t *me,
                     struct am_desired *doc)
{
    json_auto_t *rows = NULL;
    int e;
    if ((e = fault("peers")) < 0 ||
        (e = store_query(a->store, &rows,
                         "SELECT id, name, wg_public_key, endpoint, "
                         "observed_endpoint, wg_port, mesh_ip, mapped_endpoint, "
                         "nat_class, agent_contract FROM nodes "
                         "WHERE id <> $1 AND approved = 1 AND removed_at IS "
                         "NULL AND wg_public_key IS NOT NULL AND mesh_ip IS "
                         "NOT NULL ORDER BY mesh_ip", "s", node_id)) < 0)
        return e;
    size_t i;
    json_t *row;
    doc->peers = xcalloc(json_array_size(rows) + 1, sizeof(*doc->peers));
    json_array_foreach(rows, i, row) {
        struct am_peer *p = &doc->peers[doc->n_peers++];
        p->endpoint = desired_peer_endpoint(row);
        p->allowed_ips = xcalloc(1, sizeof(char *));
        p->allowed_ips[p->n_allowed_ips++] = xasprintf(
            "%s/32", json_str(row, "mesh_ip"));
        p->keepalive = 25;
        p->relayed = desired_peer_relayed(a, me, row);
        if ((e = col(row, "id", &p->node_id)) < 0 ||
            (e = col(row, "name", &p->name)) < 0 ||
            (e = col(row, "wg_public_key", &p->public_key)) < 0)
            return e;
    }
    return 0;
}

/* The parts, read inside the caller's transaction: every VM of the node,
 * or (vm_ids, n_vm_ids of them) only those of them still on it. With
 * `cut`, each network's MACs and names are not in doc but in cut (as
 * text, or as items of AGENT_NET_VMS where the node's agent takes them),
 * one per network. */
static int build(struct app *a, const char *node_id, const char *const *vm_ids,
                 size_t n_vm_ids, struct am_desired *doc, struct cut *cut)
{
    json_auto_t *me = NULL;
    int e;
    if ((e = fault("node")) < 0 ||
        (e = store_query_one(a->store, &me, "SELECT revision, mesh_ip, "
                             "wg_port, nat_class, agent_contract FROM nodes "
                             "WHERE id = $1 AND removed_at IS NULL", "s",
                             node_id)) < 0)
        return e;
    doc->revision = json_int(me, "revision", 0);
    doc->node_id = xstrdup(node_id);
    if (cut)
        cut->net_vms =
            json_int(me, "agent_contract", 1) >= AGENT_CONTRACT_NET_VMS;
    if (cut && cut->runs_only && !cut->net_vms)
        cut = NULL; /* the networks whole, for an older agent */
    if (json_str(me, "mesh_ip")) {
        doc->has_mesh = true;
        doc->mesh.address = xstrdup(json_str(me, "mesh_ip"));
        doc->mesh.listen_port = json_int(me, "wg_port", 51820);
        if ((e = prefix_of(a->cfg.mesh_cidr, 12, &doc->mesh.prefix)) < 0)
            return e;
    }
    if (!vm_ids)
        e = vms_doc(a, node_id, NULL, 0, doc);
    for (size_t i = 0; vm_ids && i < n_vm_ids && e == 0; i++)
        e = vms_doc(a, node_id, vm_ids[i], n_vm_ids, doc);
    if (e < 0 ||
        (e = networks_doc(a, node_id, !vm_ids, doc, cut)) < 0 ||
        (e = ports_doc(a, node_id, doc)) < 0 ||
        (e = peers_doc(a, node_id, me, doc)) < 0 ||
        (e = benchmark_desired(a, node_id, doc)) < 0)
        return e;
    console_node_sessions(node_id, doc);
    return 0;
}

static void cut_free(struct cut *c, size_t n)
{
    for (size_t i = 0; c->texts && i < n; i++) {
        free(c->texts[i].macs);
        free(c->texts[i].records);
    }
    for (size_t i = 0; c->runs && i < n; i++)
        desired_run_unref(c->runs[i]);
    free(c->texts);
    free(c->runs);
}

/* The "networks" member of `doc` (taken out of it) as JSON text, each
 * entry with its MACs and names from texts (one per entry). */
static char *networks_splice(json_t *doc, const struct net_text *texts)
{
    json_t *nets = json_object_get(doc, "networks");
    struct buf b = BUF_INIT;
    size_t i;
    json_t *w;
    buf_puts(&b, "[");
    json_array_foreach(nets, i, w) {
        json_object_del(w, "macs");
        _cleanup_free_ char *t = json_dumps(w, JSON_COMPACT);
        size_t len = t ? strlen(t) : 0;
        if (len < 2)
            abort(); /* jansson fails only when out of memory */
        if (i > 0)
            buf_puts(&b, ",");
        buf_append(&b, t, len - 1); /* the entry, open */
        buf_puts(&b, len > 2 ? ",\"macs\":" : "\"macs\":");
        buf_puts(&b, texts[i].macs);
        if (texts[i].records) {
            buf_puts(&b, ",\"" AGENT_NET_RECORDS "\":");
            buf_puts(&b, texts[i].records);
        }
        buf_puts(&b, "}");
    }
    buf_puts(&b, "]");
    json_object_del(doc, "networks");
    return buf_steal(&b);
}

void desired_cut_join(json_t *doc, const struct desired_cut *c)
{
    if (c->networks)
        json_object_set_new(doc, "networks", json_loads(c->networks, 0, NULL));
    if (!c->net_vms)
        return;
    json_t *items = json_array();
    for (size_t r = 0; r < c->n_runs; r++)
        for (size_t i = 0; i < c->runs[r]->n; i++)
            json_array_append_new(items, json_loads(c->runs[r]->items[i].text,
                                                    0, NULL));
    json_object_set_new(doc, AGENT_NET_VMS, items);
}

/* desired_verify()'s check of a cut: its networks, as an agent reads
 * them, must be what the document built with them says, from the same
 * snapshot. */
static void verify_cut(struct app *a, const char *node_id,
                       const char *const *vm_ids, size_t n_vm_ids,
                       const json_t *doc, const struct desired_cut *c)
{
    struct am_desired built = { 0 }, read = { 0 };
    /* The document an older agent gets: each network's names and MACs
     * read from its records for this node. */
    if (build(a, node_id, vm_ids, n_vm_ids, &built, NULL) < 0) {
        am_desired_clear(&built);
        return; /* a store error: nothing to compare */
    }
    json_auto_t *want = am_desired_encode(&built);
    am_desired_clear(&built);
    json_auto_t *whole = json_deep_copy(doc);
    desired_cut_join(whole, c);
    struct jerr je = { 0 };
    json_auto_t *got = NULL;
    if (am_desired_decode(whole, &read, &je) == 0) {
        got = am_desired_encode(&read);
        am_desired_clear(&read);
    }
    if (!got || !json_equal(json_object_get(got, "networks"),
                            json_object_get(want, "networks"))) {
        _cleanup_free_ char *g = json_dumps(whole, JSON_COMPACT);
        _cleanup_free_ char *t = json_dumps(json_object_get(want, "networks"),
                                            JSON_COMPACT);
        log_error("desired state of node %s: cut as %s (%s), built with "
                  "networks %s", node_id, g ? g : "?",
                  je.detail ? je.detail : "read", t ? t : "?");
        abort();
    }
    jerr_clear(&je);
}

static int build_doc(struct app *a, const char *node_id,
                     const char *const *vm_ids, size_t n_vm_ids,
                     json_t **ret_doc, struct desired_cut *ret_cut)
{
    int e = store_tx_begin_read(a->store);
    if (e < 0)
        return e;
    struct am_desired doc = { 0 };
    /* Without ret_cut: a whole document, with AGENT_NET_VMS where the
     * node takes them. */
    struct cut cut = { .runs_only = !ret_cut };
    struct desired_cut whole = { 0 };
    e = build(a, node_id, vm_ids, n_vm_ids, &doc, &cut);
    if (e == 0) {
        *ret_doc = am_desired_encode(&doc);
        if (!ret_cut && cut.net_vms)
            ret_cut = &whole;
    }
    if (e == 0 && ret_cut) {
        *ret_cut = (struct desired_cut){ .net_vms = cut.net_vms };
        if (cut.net_vms) {
            /* The entries name no MACs: the agent makes them. */
            size_t i;
            json_t *w;
            json_array_foreach(json_object_get(*ret_doc, "networks"), i, w)
                json_object_del(w, "macs");
            ret_cut->runs = TAKE_PTR(cut.runs);
            ret_cut->n_runs = doc.n_networks;
        } else {
            ret_cut->networks = networks_splice(*ret_doc, cut.texts);
        }
        if (desired_verify())
            verify_cut(a, node_id, vm_ids, n_vm_ids, *ret_doc, ret_cut);
    }
    store_tx_rollback(a->store); /* read only: nothing to keep */
    if (ret_cut == &whole)
        desired_cut_join(*ret_doc, &whole);
    desired_cut_clear(&whole);
    cut_free(&cut, doc.n_networks);
    am_desired_clear(&doc);
    return e;
}

int desired_build(struct app *a, const char *node_id, json_t **ret_doc)
{
    return build_doc(a, node_id, NULL, 0, ret_doc, NULL);
}

int desired_build_cut(struct app *a, const char *node_id,
                      const char *const *vm_ids, size_t n_vm_ids,
                      json_t **ret_doc, struct desired_cut *ret_cut)
{
    return build_doc(a, node_id, vm_ids, n_vm_ids, ret_doc, ret_cut);
}

void desired_cut_clear(struct desired_cut *c)
{
    free(c->networks);
    for (size_t i = 0; i < c->n_runs; i++)
        desired_run_unref(c->runs[i]);
    free(c->runs);
    *c = (struct desired_cut){ 0 };
}

json_t *desired_build_unapproved(const char *node_id, int64_t revision)
{
    struct am_desired doc = { .revision = revision, .node_id = (char *)node_id,
                              .unapproved = true };
    return am_desired_encode(&doc);
}
