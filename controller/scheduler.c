/* First-fit placement and node health. The first approved, reachable node
 * with enough free vCPUs, memory and disk (and KVM unless the VM allows TCG)
 * whose policy accepts the VM's template or image gets the VM; nothing is
 * ever moved off an unreachable node. */
#include "controller/scheduler.h"

#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/handlers.h"
#include "controller/netalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>

/* Free capacity of node n = its capacity minus every live VM placed on it. */
#define FREE_SQL(res)                                                          \
    "n." res " - COALESCE((SELECT SUM(v." res ") FROM vms v WHERE v.node_id = " \
    "n.id AND v.deleted_at IS NULL), 0)"

/* Nodes that could host the VM by state and free capacity ($1 online
 * since, $2 TCG allowed, $3..$5 vCPUs, MiB, GiB). */
#define FITS_SQL                                                               \
    "n.approved = 1 AND n.removed_at IS NULL AND n.last_seen >= $1 AND "       \
    "(n.kvm = 1 OR $2 = 1) AND " FREE_SQL("vcpus") " >= $3 AND "               \
    FREE_SQL("memory_mib") " >= $4 AND " FREE_SQL("disk_gib") " >= $5"

/* A node without a policy accepts every VM; one with a policy only VMs
 * from a listed template ($6) or using a listed image, by name ($7) or
 * catalog id ($8). NULL never matches. */
#define POLICY_SQL                                                             \
    "(NOT EXISTS (SELECT 1 FROM node_policy p WHERE p.node_id = n.id) OR "     \
    "EXISTS (SELECT 1 FROM node_policy p WHERE p.node_id = n.id AND "          \
    "((p.kind = 'template' AND p.name = $6) OR (p.kind = 'image' AND "         \
    "(p.name = $7 OR p.name = $8)))))"

/* Why a VM waits, for its state_reason; caller frees. */
static char *place_refusal(struct app *a, int64_t online_since, bool tcg,
                           int64_t vcpus, int64_t mem, int64_t disk,
                           const char *tmpl, const char *image,
                           int64_t roomy, int64_t tcg_only)
{
    if (roomy < 0)
        roomy = store_query_int(a->store, 0, "SELECT COUNT(*) FROM nodes "
                                "n WHERE " FITS_SQL, "ibiii",
                                online_since, tcg, vcpus, mem, disk);
    if (roomy > 0) {
        if (tmpl)
            return xasprintf("no approved, reachable node with room accepts "
                             "template '%s' or image '%s' (their providers "
                             "restrict what they run)", tmpl, image);
        return xasprintf("no approved, reachable node with room accepts image "
                         "'%s' (their providers restrict what they run)",
                         image);
    }
    if (tcg_only < 0)
        tcg_only = store_query_int(
        a->store, 0, "SELECT COUNT(*) FROM nodes WHERE approved = 1 AND "
                     "removed_at IS NULL AND last_seen >= $1 AND kvm = 0",
        "i", online_since);
    return xasprintf("no approved, reachable node has %lld vCPUs, %lld MiB and "
                     "%lld GiB free%s", (long long)vcpus, (long long)mem,
                     (long long)disk,
                     !tcg && tcg_only ? " with KVM (the VM does not allow TCG)"
                                      : "");
}

/* The node row of `id` if it fits the VM ($1..$8 as in FITS_SQL and
 * POLICY_SQL), looked up with the node's lock held: with PostgreSQL, other
 * replicas' placements on it are committed (and seen here) or wait until
 * this transaction ends. */
static int place_fit(struct app *a, json_t **ret_node, const char *id,
                     const char *vm_id, int64_t online_since, bool tcg, int64_t vcpus,
                     int64_t mem, int64_t disk, const char *tmpl,
                     const char *image, const char *image_id)
{
    int r = store_lock(a->store, "node", id);
    if (r < 0)
        return r;
    return store_query_one(a->store, ret_node,
                           "SELECT n.id FROM nodes n WHERE n.id = $9 AND "
                           FITS_SQL " AND " POLICY_SQL " AND "
                           NETALLOC_PORTS_FIT_SQL("$10"), "ibiiisssss",
                           online_since, tcg, vcpus, mem, disk, tmpl, image,
                           image_id, id, vm_id);
}

/* One try at placing vm_id, trying node `hint` first when given (one
 * primary-key lookup instead of a scan of every node). -EAGAIN when
 * another replica's transaction won the node or a lock: try again. */
static int place_once(struct app *a, const char *vm_id, const char *hint,
                      bool scan, int64_t roomy, int64_t tcg_only,
                      char ret_node[UUID_STR_LEN + 1])
{
    json_auto_t *vm = NULL, *node = NULL;
    int64_t online_since = now_s() - 3 * a->cfg.heartbeat_s;
    int r;

    if ((r = store_tx_begin(a->store)) < 0)
        return r;
    /* One placement of a VM at a time, whichever replica makes it. */
    if ((r = store_lock(a->store, "vm", vm_id)) < 0) {
        store_tx_rollback(a->store);
        return r;
    }
    r = store_query_one(a->store, &vm,
                        "SELECT vcpus, memory_mib, disk_gib, allow_tcg, "
                        "image, image_id, template FROM vms WHERE id = $1 AND "
                        "node_id IS NULL AND deleted_at IS NULL AND "
                        "desired_state <> 'deleted'", "s", vm_id);
    if (r < 0) {
        store_tx_rollback(a->store);
        return r == -ENOENT ? 0 : r;
    }
    int64_t vcpus = json_int(vm, "vcpus", 0), mem = json_int(vm, "memory_mib", 0),
            disk = json_int(vm, "disk_gib", 0);
    bool tcg = json_int(vm, "allow_tcg", 0) != 0;
    const char *tmpl = json_str(vm, "template"), *image = json_str(vm, "image");
    r = -ENOENT;
    if (hint)
        r = place_fit(a, &node, hint, vm_id, online_since, tcg, vcpus, mem, disk,
                      tmpl, image, json_str(vm, "image_id"));
    if (r == -ENOENT && scan) {
        json_auto_t *found = NULL;
        r = store_query_one(a->store, &found,
                            "SELECT n.id FROM nodes n WHERE " FITS_SQL " AND "
                            POLICY_SQL " AND " NETALLOC_PORTS_FIT_SQL("$9")
                            " ORDER BY n.created_at, n.id LIMIT 1",
                            "ibiiissss", online_since, tcg, vcpus, mem, disk,
                            tmpl, image, json_str(vm, "image_id"), vm_id);
        /* The scan ran without the node's lock: check again under it. */
        if (r == 0 && (r = place_fit(a, &node, json_str(found, "id"),
                                     vm_id, online_since, tcg, vcpus, mem, disk,
                                     tmpl, image,
                                     json_str(vm, "image_id"))) == -ENOENT)
            r = -EAGAIN;
    }
    if (r == -ENOENT) {
        /* Requested host ports taken or not permitted everywhere. */
        char *why = netalloc_ports_refusal(a->store, vm_id);
        if (!why)
            why = place_refusal(a, online_since, tcg, vcpus, mem, disk, tmpl,
                                image, roomy, tcg_only);
        store_exec(a->store,
                   "UPDATE vms SET state_reason = $1 WHERE id = $2 AND "
                   "(state_reason IS NULL OR state_reason <> $1)", "ss", why,
                   vm_id);
        free(why);
        store_tx_commit(a->store);
        return 0;
    }
    if (r < 0) {
        store_tx_rollback(a->store);
        return r;
    }
    const char *node_id = json_str(node, "id");
    snprintf(ret_node, UUID_STR_LEN + 1, "%s", node_id);
    /* Published ports get their host ports on the chosen node. */
    json_auto_t *ports = NULL;
    size_t i;
    json_t *p;
    store_query(a->store, &ports, "SELECT id, proto, want_port FROM ports "
                "WHERE vm_id = $1 AND host_port IS NULL", "s", vm_id);
    json_array_foreach(ports, i, p) {
        int64_t hp = netalloc_host_port(a->store, node_id, json_str(p, "proto"),
                                        json_int(p, "want_port", 0));
        if (hp < 0 || store_exec(a->store, "UPDATE ports SET node_id = $1, "
                                 "host_port = $2 WHERE id = $3", "sis",
                                 node_id, hp, json_str(p, "id")) < 0) {
            store_tx_rollback(a->store);
            store_exec(a->store, "UPDATE vms SET state_reason = 'no free host "
                       "port on the chosen node' WHERE id = $1", "s", vm_id);
            return 0;
        }
    }
    r = store_exec(a->store,
                   "UPDATE vms SET node_id = $1, state = 'scheduled', "
                   "state_reason = NULL, updated_at = $2 WHERE id = $3", "sis",
                   node_id, now_s(), vm_id);
    /* The price is locked now: later offer changes do not touch it. */
    if (r >= 0)
        r = billing_deal_lock(a, vm_id, node_id);
    if (r < 0) {
        store_tx_rollback(a->store);
        return r;
    }
    if ((r = store_tx_commit(a->store)) < 0)
        return r;
    app_node_changed(a, node_id);
    vm_networks_changed(a, vm_id);
    return 1;
}

/* place_once() until it does not lose to another replica, a bounded
 * number of times; a VM left pending is tried again by the leader. */
static int place(struct app *a, const char *vm_id, const char *hint,
                 bool scan, int64_t roomy, int64_t tcg_only,
                 char ret_node[UUID_STR_LEN + 1])
{
    int r = -EAGAIN;
    for (int i = 0; i <= STORE_TX_RETRIES && r == -EAGAIN; i++)
        r = place_once(a, vm_id, hint, scan, roomy, tcg_only, ret_node);
    return r;
}

int scheduler_place(struct app *a, const char *vm_id)
{
    char node[UUID_STR_LEN + 1];
    return place(a, vm_id, NULL, true, -1, -1, node);
}

/* A node that could take VMs, with its free capacity as of the last load. */
struct cand {
    char id[UUID_STR_LEN + 1];
    int64_t vcpus, mem, disk;
    bool kvm, restricted;
};

/* Every approved, reachable node with its free capacity, first-fit order:
 * one pass over nodes and live VMs. */
static struct cand *cands_load(struct app *a, size_t *ret_n)
{
    json_auto_t *rows = NULL;
    if (store_query(a->store, &rows,
                    "SELECT n.id, n.kvm, n.vcpus - COALESCE(u.vcpus, 0) AS "
                    "vcpus, n.memory_mib - COALESCE(u.mem, 0) AS mem, "
                    "n.disk_gib - COALESCE(u.disk, 0) AS disk, EXISTS (SELECT "
                    "1 FROM node_policy p WHERE p.node_id = n.id) AS "
                    "restricted FROM nodes n LEFT JOIN (SELECT node_id, "
                    "SUM(vcpus) AS vcpus, SUM(memory_mib) AS mem, "
                    "SUM(disk_gib) AS disk FROM vms WHERE node_id IS NOT NULL "
                    "AND deleted_at IS NULL GROUP BY node_id) u ON u.node_id "
                    "= n.id WHERE n.approved = 1 AND n.removed_at IS NULL AND "
                    "n.last_seen >= $1 ORDER BY n.created_at, n.id", "i",
                    now_s() - 3 * a->cfg.heartbeat_s) < 0)
        return NULL;
    size_t n = json_array_size(rows), i;
    json_t *row;
    struct cand *c = xcalloc(n + 1, sizeof(*c));
    json_array_foreach(rows, i, row) {
        snprintf(c[i].id, sizeof(c[i].id), "%s", json_str(row, "id"));
        c[i].vcpus = json_int(row, "vcpus", 0);
        c[i].mem = json_int(row, "mem", 0);
        c[i].disk = json_int(row, "disk", 0);
        c[i].kvm = json_int(row, "kvm", 0) != 0;
        c[i].restricted = json_int(row, "restricted", 0) != 0;
    }
    *ret_n = n;
    return c;
}

int scheduler_run(struct app *a)
{
    json_auto_t *rows = NULL;
    size_t i, n = 0;
    json_t *row;
    int placed = 0;

    if (store_query(a->store, &rows,
                    "SELECT id, vcpus, memory_mib, disk_gib, allow_tcg FROM "
                    "vms WHERE node_id IS NULL AND deleted_at IS NULL AND "
                    "desired_state <> 'deleted' ORDER BY created_at, id "
                    "LIMIT 1000", "") < 0 || json_array_size(rows) == 0)
        return 0;
    _cleanup_free_ struct cand *c = cands_load(a, &n);
    int64_t tcg_only = 0;
    for (size_t k = 0; c && k < n; k++)
        tcg_only += !c[k].kvm;
    json_array_foreach(rows, i, row) {
        /* A leader that lost its connection (and so its lock) stops. */
        if (!store_leading(a->store))
            break;
        const char *id = json_str(row, "id");
        int64_t vcpus = json_int(row, "vcpus", 0),
                mem = json_int(row, "memory_mib", 0),
                disk = json_int(row, "disk_gib", 0);
        bool tcg = json_int(row, "allow_tcg", 0) != 0;
        /* First fit in memory; the store re-checks the node (and its
         * policy) in the placing transaction, and scans as before when it
         * disagrees. */
        struct cand *hit = NULL;
        int64_t roomy = 0;
        for (size_t k = 0; c && k < n && !hit; k++) {
            if (c[k].vcpus < vcpus || c[k].mem < mem || c[k].disk < disk ||
                (!c[k].kvm && !tcg))
                continue;
            roomy = 1;
            if (!c[k].restricted ||
                store_query_int(a->store, 0, "SELECT 1 FROM vms v JOIN "
                                "node_policy p ON p.node_id = $2 WHERE v.id "
                                "= $1 AND ((p.kind = 'template' AND p.name = "
                                "v.template) OR (p.kind = 'image' AND "
                                "(p.name = v.image OR p.name = v.image_id)))",
                                "ss", id, c[k].id) == 1)
                hit = &c[k];
        }
        char node[UUID_STR_LEN + 1];
        /* Without a load (store error) scan as before. */
        if (place(a, id, hit ? hit->id : NULL, !c || hit, c ? roomy : -1,
                  c ? tcg_only : -1, node) > 0) {
            placed++;
            struct cand *got = hit && streq(hit->id, node) ? hit : NULL;
            for (size_t k = 0; c && k < n && !got; k++)
                if (streq(c[k].id, node))
                    got = &c[k];
            if (got) {
                got->vcpus -= vcpus;
                got->mem -= mem;
                got->disk -= disk;
            }
        }
    }
    return placed;
}

void health_check(struct app *a)
{
    int64_t cutoff = now_s() - 3 * a->cfg.heartbeat_s;
    int n = store_exec(a->store,
                       "UPDATE vms SET state = 'unknown', state_reason = "
                       "'node unreachable', updated_at = $2 WHERE deleted_at "
                       "IS NULL AND state NOT IN ('unknown', 'pending') AND "
                       "node_id IN (SELECT id FROM nodes WHERE last_seen < $1)",
                       "ii", cutoff, now_s());
    if (n > 0)
        log_warn("%d VMs now unknown: their node stopped reporting", n);
}

static pthread_t rec_thread;
static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rec_cond = PTHREAD_COND_INITIALIZER;
static bool rec_stop, rec_running;

static void *reconciler(void *arg)
{
    struct app *a = arg;
    /* After a controller restart every node looks silent: give them three
     * heartbeats to report before judging. */
    int64_t judge_from = now_s() + 3 * a->cfg.heartbeat_s;
    int64_t prune_at = now_s();
    pthread_mutex_lock(&rec_lock);
    while (!rec_stop) {
        pthread_mutex_unlock(&rec_lock);
        /* With PostgreSQL several replicas serve the API; one leads. */
        if (store_try_lead(a->store)) {
            if (now_s() >= judge_from)
                health_check(a);
            scheduler_run(a);
            if (now_s() >= prune_at) {
                app_prune(a);
                prune_at = now_s() + 60;
            }
        }
        pthread_mutex_lock(&rec_lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&rec_cond, &rec_lock, &ts);
    }
    pthread_mutex_unlock(&rec_lock);
    return NULL;
}

int reconciler_start(struct app *a)
{
    rec_stop = false;
    int r = pthread_create(&rec_thread, NULL, reconciler, a);
    if (r)
        return -r;
    rec_running = true;
    return 0;
}

void reconciler_stop(void)
{
    if (!rec_running)
        return;
    pthread_mutex_lock(&rec_lock);
    rec_stop = true;
    pthread_cond_signal(&rec_cond);
    pthread_mutex_unlock(&rec_lock);
    pthread_join(rec_thread, NULL);
    rec_running = false;
}
