/* Fencing, as a property over random histories: a simulated controller
 * places VMs on simulated nodes with placement generations; nodes are cut
 * off (host lost: its domains stop, it hears nothing), heal (the host
 * boots: libvirtd starts what is marked autostart; then the agent applies
 * the controller's current document with its own planner, possibly
 * only after VMs were placed on them again), have their agent restarted,
 * and VMs are restored elsewhere while their node is cut off, deleted,
 * started and stopped. After every step a VM runs on at most
 * one node, and a node that heard the controller keeps no domain of a VM
 * the controller placed elsewhere or deleted. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "nodeagent/reconcile.h"

#include <stdio.h>
#include <stdlib.h>

#define NODES 3
#define VMS 3
#define STEPS 400
#define RUNS 300
#define MAX_DOMS VMS

static const char *const vm_ids[VMS] = {
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
    "33333333-3333-4333-8333-333333333333",
};
static const char *const node_ids[NODES] = { "node-a", "node-b", "node-c" };

struct cvm {                 /* the controller's record */
    int node;                /* -1: not placed */
    int64_t place_gen, start_gen;
    bool running, deleting, gone;
};

struct node {
    bool cut;
    bool synced;             /* its agent applied a current document */
    struct virt_dom doms[MAX_DOMS];
    size_t n;
};

static struct cvm cvms[VMS];
static struct node nodes[NODES];

static json_t *doc_of(int n)
{
    json_t *vms = json_array();
    for (int v = 0; v < VMS; v++) {
        if (cvms[v].gone || cvms[v].node != n)
            continue;
        json_array_append_new(vms, json_pack(
            "{s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:b, s:b, s:I, s:I, s:I, "
            "s:[]}", "id", vm_ids[v], "name", "web", "vcpus", 1, "memory_mib",
            128, "disk_gib", 1, "image", "tiny", "power",
            cvms[v].running ? "running" : "stopped", "stop_force", 0,
            "deleted", cvms[v].deleting, "reboot_gen", (json_int_t)0,
            "start_gen", (json_int_t)cvms[v].start_gen, "place_gen",
            (json_int_t)cvms[v].place_gen, "nics"));
    }
    return json_pack("{s:I, s:s, s:o}", "revision", (json_int_t)1, "node_id",
                     node_ids[n], "vms", vms);
}

static struct virt_dom *dom_find(struct node *nd, const char *id)
{
    for (size_t i = 0; i < nd->n; i++)
        if (streq(nd->doms[i].meta.vm_id, id))
            return &nd->doms[i];
    return NULL;
}

/* libvirt as the executor drives it; a guest shuts down when asked. */
static void apply(struct node *nd, const struct reconcile_action *a)
{
    struct virt_dom *d = dom_find(nd, a->vm_id);
    const json_t *vm = a->vm;
    switch (a->op) {
    case RC_CREATE:
        assert_null(d);
        assert_true(nd->n < MAX_DOMS);
        d = &nd->doms[nd->n++];
        *d = (struct virt_dom){ .state = VIRT_STOPPED, .vcpus = 1,
                                .memory_mib = 128 };
        snprintf(d->meta.vm_id, sizeof(d->meta.vm_id), "%s", a->vm_id);
        d->meta.name = "web";
        d->meta.place_gen = json_int(vm, "place_gen", 0);
        d->meta.start_gen = json_int(vm, "start_gen", 0);
        d->meta.disk_gib = json_int(vm, "disk_gib", 1);
        reconcile_spec_hash(vm, false, d->meta.spec);
        return;
    case RC_START:
    case RC_RESUME:
    case RC_REBOOT:
        assert_non_null(d);
        d->state = VIRT_RUNNING;
        d->lost_with_host = false;
        d->meta.power_running = true;
        d->meta.start_gen = json_int(vm, "start_gen", 0);
        return;
    case RC_MARK_RUNNING:
        d->meta.power_running = true;
        d->meta.start_gen = json_int(vm, "start_gen", 0);
        return;
    case RC_SHUTDOWN:
    case RC_DESTROY:
        d->state = VIRT_STOPPED;
        d->meta.power_running = false;
        return;
    case RC_MARK_STOPPED:
        d->meta.power_running = false;
        return;
    case RC_AUTOSTART:
        /* Planned only when libvirt's flag is not what the agent wants. */
        d->autostart = !d->autostart;
        return;
    case RC_DELETE:
        assert_non_null(d);
        *d = nd->doms[--nd->n];
        return;
    case RC_REDEFINE:
        reconcile_spec_hash(vm, false, d->meta.spec);
        return;
    case RC_GROW_DISK:
        d->meta.disk_gib = json_int(vm, "disk_gib", 1);
        return;
    default:
        return;
    }
}

/* The node's agent hears the controller: passes until nothing is left to
 * do; a deletion it carries out is confirmed to the controller. */
static void converge(int n)
{
    struct node *nd = &nodes[n];
    if (nd->cut)
        return;
    for (int pass = 0; pass < 8; pass++) {
        json_auto_t *doc = doc_of(n);
        struct reconcile_plan p;
        virt_doms_sort(nd->doms, nd->n); /* as virt_list() gives them */
        reconcile_plan(doc, nd->doms, nd->n, false, 0, &p);
        reconcile_plan_orphans(doc, nd->doms, nd->n, &p);
        size_t acted = p.n;
        for (size_t i = 0; i < p.n; i++)
            apply(nd, &p.actions[i]);
        reconcile_plan_free(&p);
        for (int v = 0; v < VMS; v++)
            if (cvms[v].deleting && !cvms[v].gone && cvms[v].node == n &&
                !dom_find(nd, vm_ids[v]))
                cvms[v].gone = true;
        if (acted == 0) {
            nd->synced = true;
            return;
        }
    }
    fail_msg("node %s does not converge", node_ids[n]);
}

static void check(int step)
{
    for (int v = 0; v < VMS; v++) {
        int running = 0;
        for (int n = 0; n < NODES; n++) {
            struct virt_dom *d = dom_find(&nodes[n], vm_ids[v]);
            if (d && d->state == VIRT_RUNNING) {
                running++;
                /* Only the current placement's domain ever runs. */
                if (cvms[v].gone || cvms[v].node != n ||
                    d->meta.place_gen != cvms[v].place_gen)
                    fail_msg("step %d: vm %d runs on %s for placement %lld "
                             "(controller: node %d, placement %lld%s)", step,
                             v, node_ids[n], (long long)d->meta.place_gen,
                             cvms[v].node, (long long)cvms[v].place_gen,
                             cvms[v].gone ? ", deleted" : "");
            }
            /* A node that heard the controller keeps nothing stale. */
            if (d && nodes[n].synced &&
                (cvms[v].gone || cvms[v].node != n ||
                 d->meta.place_gen != cvms[v].place_gen))
                fail_msg("step %d: %s keeps a stale domain of vm %d", step,
                         node_ids[n], v);
        }
        if (running > 1)
            fail_msg("step %d: vm %d runs on %d nodes", step, v, running);
    }
}

/* Place VM v on a reachable node other than `not`; false when none. */
static bool place(int v, int not)
{
    int cand[NODES], k = 0;
    for (int n = 0; n < NODES; n++)
        if (!nodes[n].cut && n != not)
            cand[k++] = n;
    if (k == 0)
        return false;
    cvms[v].node = cand[rand() % k];
    cvms[v].place_gen++;
    converge(cvms[v].node);
    return true;
}

static void step(int i)
{
    int n = rand() % NODES, v = rand() % VMS;
    struct cvm *c = &cvms[v];
    switch (rand() % 7) {
    case 0: /* cut off: the host is lost (a power cut), its domains stop
             * for no reason libvirt knows */
        nodes[n].cut = true;
        nodes[n].synced = false;
        for (size_t k = 0; k < nodes[n].n; k++) {
            nodes[n].doms[k].state = VIRT_STOPPED;
            nodes[n].doms[k].lost_with_host = true;
        }
        break;
    case 1: /* heals: the host boots, its libvirtd starts the domains
             * marked autostart before the agent runs; the controller
             * hears the node before its agent has applied a document, and
             * may place VMs there again */
        if (!nodes[n].cut)
            break;
        nodes[n].cut = false;
        for (size_t k = 0; k < nodes[n].n; k++)
            if (nodes[n].doms[k].autostart) {
                nodes[n].doms[k].state = VIRT_RUNNING;
                nodes[n].doms[k].lost_with_host = false;
            }
        break;
    case 2: /* the agent (re)starts and applies the current document */
        converge(n);
        break;
    case 3: /* restored elsewhere while its node is cut off */
        if (!c->gone && !c->deleting && (c->node < 0 || nodes[c->node].cut))
            place(v, c->node);
        break;
    case 4: /* deleted: at once when its node is cut off */
        if (c->gone)
            break;
        c->deleting = true;
        if (c->node < 0 || nodes[c->node].cut)
            c->gone = true;
        else
            converge(c->node);
        break;
    case 5: /* start or stop */
        if (c->gone || c->deleting)
            break;
        c->running = !c->running;
        c->start_gen += c->running;
        if (c->node >= 0)
            converge(c->node);
        break;
    case 6: /* a VM of that slot is created again after deletion */
        if (!c->gone)
            break;
        c->gone = c->deleting = false;
        c->running = true;
        c->start_gen = 1;
        c->node = -1;
        place(v, -1);
        break;
    }
    check(i);
}

static void a_vm_never_runs_on_two_nodes(void **state)
{
    (void)state;
    for (unsigned seed = 1; seed <= RUNS; seed++) {
        srand(seed);
        memset(nodes, 0, sizeof(nodes));
        for (int v = 0; v < VMS; v++)
            cvms[v] = (struct cvm){ .node = -1, .running = true,
                                    .start_gen = 1 };
        for (int v = 0; v < VMS; v++)
            place(v, -1);
        for (int i = 0; i < STEPS; i++)
            step(i);
    }
}

/* The rule itself, case by case. */
static void the_fence_rule(void **state)
{
    (void)state;
    json_auto_t *vm = json_pack("{s:s, s:I}", "id", vm_ids[0], "place_gen",
                                (json_int_t)2);
    struct virt_dom d = { 0 };
    snprintf(d.meta.vm_id, sizeof(d.meta.vm_id), "%s", vm_ids[0]);
    assert_int_equal(reconcile_fence(NULL, NULL), RC_FENCE_KEEP);
    assert_int_equal(reconcile_fence(vm, NULL), RC_FENCE_KEEP);
    d.meta.place_gen = 2;
    assert_int_equal(reconcile_fence(vm, &d), RC_FENCE_KEEP);
    assert_int_equal(reconcile_fence(NULL, &d), RC_FENCE_DESTROY);
    d.meta.place_gen = 1; /* an earlier placement's domain */
    assert_int_equal(reconcile_fence(vm, &d), RC_FENCE_DESTROY);
    d.meta.place_gen = 3; /* the document is older than the domain */
    assert_int_equal(reconcile_fence(vm, &d), RC_FENCE_HOLD);
    d.meta.place_gen = -1; /* made before generations existed: adopted */
    assert_int_equal(reconcile_fence(vm, &d), RC_FENCE_KEEP);
    d.meta.place_gen = 3;
    /* An unlisted domain is removed, a listed one left to the planner;
     * a document of a node not yet approved removes nothing. */
    struct reconcile_plan p = { NULL, 0 };
    json_auto_t *doc = json_pack("{s:[]}", "vms");
    reconcile_plan_orphans(doc, &d, 1, &p);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.actions[0].op, RC_DELETE);
    assert_string_equal(p.actions[0].vm_id, vm_ids[0]);
    reconcile_plan_free(&p);
    json_auto_t *unapproved = json_pack("{s:[], s:b}", "vms", "approved", 0);
    reconcile_plan_orphans(unapproved, &d, 1, &p);
    assert_int_equal(p.n, 0);
    json_auto_t *listed = json_pack("{s:[O]}", "vms", vm);
    reconcile_plan_orphans(listed, &d, 1, &p);
    assert_int_equal(p.n, 0);
    reconcile_plan_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_fence_rule),
        cmocka_unit_test(a_vm_never_runs_on_two_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
