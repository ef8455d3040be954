/* The reconcile planner and status mapping, without libvirt: what a
 * desired document and a set of observed domains turn into. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/desired_delta.h"
#include "common/jsonutil.h"
#include "nodeagent/reconcile.h"
#include "tests/testutil.h"

#include <errno.h>
#include <stdio.h>

#define ID1 "11111111-1111-4111-8111-111111111111"
#define ID2 "22222222-2222-4222-8222-222222222222"
#define FOREIGN "33333333-3333-4333-8333-333333333333"

static json_t *vm(const char *id, const char *power)
{
    return json_pack("{s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:b, s:b, s:i, "
                     "s:i, s:n, s:[{s:s, s:s, s:i}]}",
                     "id", id, "name", "web", "vcpus", 1, "memory_mib", 128,
                     "disk_gib", 2, "image", "tiny", "power", power,
                     "stop_force", 0, "deleted", 0, "reboot_gen", 0,
                     "start_gen", 0, "image_source", "nics", "mac",
                     "52:54:00:00:00:01",
                     "bridge", "fogbr1", "mtu", 1370);
}

static json_t *doc1(json_t *v)
{
    return json_pack("{s:I, s:[o]}", "revision", (json_int_t)1, "vms", v);
}

/* A domain as the agent would have left it for desired entry v. */
static struct virt_dom dom_for(const json_t *v, enum virt_state st, bool power)
{
    struct virt_dom d = { .state = st, .vcpus = 1, .memory_mib = 128 };
    snprintf(d.meta.vm_id, sizeof(d.meta.vm_id), "%s", json_str(v, "id"));
    d.meta.name = "web";
    d.meta.power_running = power;
    d.meta.reboot_gen = json_int(v, "reboot_gen", 0);
    d.meta.start_gen = json_int(v, "start_gen", 0);
    d.meta.disk_gib = json_int(v, "disk_gib", 0);
    reconcile_spec_hash(v, false, d.meta.spec);
    return d;
}

/* The plan as "op op ..." for compact assertions. */
static char *plan_str(const json_t *doc, const struct virt_dom *d, size_t n,
                      int64_t now)
{
    struct reconcile_plan p;
    reconcile_plan(doc, d, n, false, now, &p);
    char *s = xstrdup("");
    for (size_t i = 0; i < p.n; i++) {
        char *t = xasprintf("%s%s%s", s, *s ? " " : "",
                            reconcile_op_name(p.actions[i].op));
        free(s);
        s = t;
    }
    reconcile_plan_free(&p);
    return s;
}

static void a_new_vm_is_created_then_started(void **state)
{
    json_auto_t *doc = doc1(vm(ID1, "running"));
    _cleanup_free_ char *p = plan_str(doc, NULL, 0, 0);
    assert_string_equal(p, "create start");
    json_auto_t *doc2 = doc1(vm(ID1, "stopped"));
    _cleanup_free_ char *p2 = plan_str(doc2, NULL, 0, 0);
    assert_string_equal(p2, "create");
}

static void a_running_domain_is_adopted_as_is(void **state)
{
    json_auto_t *doc = doc1(vm(ID1, "running"));
    json_t *v = json_array_get(json_object_get(doc, "vms"), 0);
    struct virt_dom d = dom_for(v, VIRT_RUNNING, true);
    _cleanup_free_ char *p = plan_str(doc, &d, 1, 0);
    assert_string_equal(p, "");
    /* Even if the agent never recorded a start (power stopped in its
     * metadata): running is what is wanted, the domain is left as it is
     * and only the metadata learns it, so a later poweroff from inside
     * reads as one. */
    d.meta.power_running = false;
    _cleanup_free_ char *p2 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p2, "mark-running");
}

static void domains_not_in_the_document_are_left_alone(void **state)
{
    json_auto_t *doc = doc1(vm(ID1, "running"));
    json_t *v = json_array_get(json_object_get(doc, "vms"), 0);
    struct virt_dom d[2] = { dom_for(v, VIRT_RUNNING, true),
                             dom_for(v, VIRT_STOPPED, false) };
    snprintf(d[1].meta.vm_id, sizeof(d[1].meta.vm_id), "%s", FOREIGN);
    virt_doms_sort(d, 2);
    _cleanup_free_ char *p = plan_str(doc, d, 2, 0);
    assert_string_equal(p, "");
    json_auto_t *empty = json_pack("{s:I, s:[]}", "revision", (json_int_t)2, "vms");
    _cleanup_free_ char *p2 = plan_str(empty, d, 2, 0);
    assert_string_equal(p2, "");
}

static void a_guest_poweroff_is_reported_not_undone(void **state)
{
    json_auto_t *doc = doc1(vm(ID1, "running"));
    json_t *v = json_array_get(json_object_get(doc, "vms"), 0);
    struct virt_dom d = dom_for(v, VIRT_STOPPED, true);
    d.stopped_by_guest = true;
    _cleanup_free_ char *p = plan_str(doc, &d, 1, 0);
    assert_string_equal(p, "");
    const char *st, *reason;
    reconcile_status(v, &d, NULL, &st, &reason);
    assert_string_equal(st, "stopped");
    assert_string_equal(reason, "shut down from inside the guest");

    d.state = VIRT_CRASHED;
    reconcile_status(v, &d, NULL, &st, &reason);
    assert_string_equal(st, "crashed");
    _cleanup_free_ char *p2 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p2, "");

    /* A reboot request starts it again. */
    json_object_set_new(v, "reboot_gen", json_integer(1));
    _cleanup_free_ char *p3 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p3, "start");
}

static void a_guest_poweroff_stays_down_until_a_newer_start(void **state)
{
    json_auto_t *doc = doc1(vm(ID1, "running"));
    json_t *v = json_array_get(json_object_get(doc, "vms"), 0);
    json_object_set_new(v, "start_gen", json_integer(2));
    struct virt_dom d = dom_for(v, VIRT_STOPPED, true);
    d.stopped_by_guest = true;
    /* Down by itself at the start generation the agent acted on: sticky,
     * and the status tells the controller so. */
    _cleanup_free_ char *p = plan_str(doc, &d, 1, 0);
    assert_string_equal(p, "");
    assert_true(reconcile_down_by_itself(v, &d));
    /* So is a crash, and a stop made outside fogfabric. */
    d.state = VIRT_CRASHED;
    assert_true(reconcile_down_by_itself(v, &d));
    d.state = VIRT_STOPPED;
    d.stopped_by_guest = false;
    assert_true(reconcile_down_by_itself(v, &d));
    const char *st, *reason;
    reconcile_status(v, &d, NULL, &st, &reason);
    assert_string_equal(st, "stopped");
    assert_string_equal(reason, "stopped outside fogfabric");
    d.stopped_by_guest = true;

    /* A start asked for since (a newer generation) starts it again. */
    json_object_set_new(v, "start_gen", json_integer(3));
    _cleanup_free_ char *p2 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p2, "start");
    assert_false(reconcile_down_by_itself(v, &d));

    /* Once the controller's desire follows (stopped), it is recorded and
     * no longer reported as stopped by itself. */
    json_object_set_new(v, "start_gen", json_integer(2));
    json_object_set_new(v, "power", json_string("stopped"));
    _cleanup_free_ char *p3 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p3, "mark-stopped");
    assert_false(reconcile_down_by_itself(v, &d));
    d.meta.power_running = false;
    _cleanup_free_ char *p4 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p4, "");
    /* A VM the agent stopped is never reported as down by itself. */
    json_object_set_new(v, "power", json_string("running"));
    assert_false(reconcile_down_by_itself(v, &d));
    /* Running VMs are not either. */
    d.meta.power_running = true;
    d.state = VIRT_RUNNING;
    assert_false(reconcile_down_by_itself(v, &d));
}

static void a_start_while_running_is_recorded(void **state)
{
    json_auto_t *doc = doc1(vm(ID1, "running"));
    json_t *v = json_array_get(json_object_get(doc, "vms"), 0);
    struct virt_dom d = dom_for(v, VIRT_RUNNING, true);
    json_object_set_new(v, "start_gen", json_integer(5));
    /* Otherwise a later poweroff from inside would look like a pending
     * start and be undone. */
    _cleanup_free_ char *p = plan_str(doc, &d, 1, 0);
    assert_string_equal(p, "mark-running");
    d.meta.start_gen = 5;
    _cleanup_free_ char *p2 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p2, "");
}

static void start_after_a_stop_the_agent_made(void **state)
{
    json_auto_t *doc = doc1(vm(ID1, "running"));
    json_t *v = json_array_get(json_object_get(doc, "vms"), 0);
    struct virt_dom d = dom_for(v, VIRT_STOPPED, false);
    _cleanup_free_ char *p = plan_str(doc, &d, 1, 0);
    assert_string_equal(p, "start");
}

static void reboot_generation_drives_a_reboot(void **state)
{
    json_auto_t *doc = doc1(vm(ID1, "running"));
    json_t *v = json_array_get(json_object_get(doc, "vms"), 0);
    struct virt_dom d = dom_for(v, VIRT_RUNNING, true);
    json_object_set_new(v, "reboot_gen", json_integer(4));
    _cleanup_free_ char *p = plan_str(doc, &d, 1, 0);
    assert_string_equal(p, "reboot");
    d.meta.reboot_gen = 4;
    _cleanup_free_ char *p2 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p2, "");
}

static void stop_is_acpi_then_destroy_after_the_deadline(void **state)
{
    json_auto_t *doc = doc1(vm(ID1, "stopped"));
    json_t *v = json_array_get(json_object_get(doc, "vms"), 0);
    struct virt_dom d = dom_for(v, VIRT_RUNNING, true);
    _cleanup_free_ char *p = plan_str(doc, &d, 1, 1000);
    assert_string_equal(p, "shutdown");
    d.shutdown_deadline_ms = 5000;
    _cleanup_free_ char *p2 = plan_str(doc, &d, 1, 4999);
    assert_string_equal(p2, "");
    _cleanup_free_ char *p3 = plan_str(doc, &d, 1, 5000);
    assert_string_equal(p3, "destroy");
    d.shutdown_deadline_ms = 0;
    json_object_set_new(v, "stop_force", json_true());
    _cleanup_free_ char *p4 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p4, "destroy");
    /* Down already, but the metadata still says running: recorded. */
    d.state = VIRT_STOPPED;
    _cleanup_free_ char *p5 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p5, "mark-stopped");
    d.meta.power_running = false;
    _cleanup_free_ char *p6 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p6, "");
}

/* virsh suspend/resume: a VM meant to run but held paused is suspended,
 * stays so, comes back paused when it had gone down, and is resumed when
 * the pause ends; a paused VM asked to shut down is resumed first, since a
 * paused guest hears no ACPI request. */
static void a_paused_vm_is_suspended_and_resumed(void **state)
{
    (void)state;
    json_auto_t *doc = doc1(vm(ID1, "running"));
    json_t *v = json_array_get(json_object_get(doc, "vms"), 0);
    json_object_set_new(v, "paused", json_true());
    struct virt_dom d = dom_for(v, VIRT_RUNNING, true);
    _cleanup_free_ char *p1 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p1, "suspend");
    d.state = VIRT_PAUSED;
    _cleanup_free_ char *p2 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p2, "");
    d.state = VIRT_STOPPED;
    d.meta.power_running = false;
    _cleanup_free_ char *p3 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p3, "start suspend");
    _cleanup_free_ char *p4 = plan_str(doc, NULL, 0, 0);
    assert_string_equal(p4, "create start suspend");
    json_object_set_new(v, "paused", json_false());
    d.state = VIRT_PAUSED;
    d.meta.power_running = true;
    _cleanup_free_ char *p5 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p5, "resume");
    /* A stopped VM is never held paused. */
    json_auto_t *off = doc1(vm(ID1, "stopped"));
    json_t *w = json_array_get(json_object_get(off, "vms"), 0);
    json_object_set_new(w, "paused", json_true());
    struct virt_dom e = dom_for(w, VIRT_PAUSED, true);
    _cleanup_free_ char *p6 = plan_str(off, &e, 1, 0);
    assert_string_equal(p6, "resume shutdown");
}

/* libvirt's autostart is never left on (a domain it marks is turned
 * off): at boot libvirtd would start it before the agent hears whether
 * the hub moved the VM meanwhile. The VM's autostart flag decides whether
 * the agent starts it again once its host went down under it (a reboot:
 * shut off for no known reason), a placement the hub's document still
 * holds. */
static void host_reboot_starts_through_the_agent_by_the_flag(void **state)
{
    (void)state;
    json_auto_t *doc = doc1(vm(ID1, "running"));
    json_t *v = json_array_get(json_object_get(doc, "vms"), 0);
    struct virt_dom d = dom_for(v, VIRT_RUNNING, true);
    assert_true(reconcile_want_autostart(v));
    _cleanup_free_ char *p1 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p1, "");
    d.autostart = true; /* left on by an older agent, or by hand */
    _cleanup_free_ char *p2 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p2, "autostart");
    d.autostart = false;

    /* The host went down under it: started again, and not reported as
     * stopped by itself (which would make the hub keep it stopped). */
    d.state = VIRT_STOPPED;
    d.lost_with_host = true;
    _cleanup_free_ char *p3 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p3, "start");
    assert_false(reconcile_down_by_itself(v, &d));
    /* With its flag off it stays down, as stopped by itself. */
    json_object_set_new(v, "autostart", json_false());
    assert_false(reconcile_want_autostart(v));
    _cleanup_free_ char *p4 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p4, "");
    assert_true(reconcile_down_by_itself(v, &d));
    json_object_set_new(v, "autostart", json_true());
    /* A guest's own poweroff is not a reboot: it stays down. */
    d.lost_with_host = false;
    d.stopped_by_guest = true;
    _cleanup_free_ char *p5 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p5, "");
    /* Nor does a VM meant to be stopped start. */
    d.lost_with_host = true;
    d.stopped_by_guest = false;
    json_object_set_new(v, "power", json_string("stopped"));
    assert_false(reconcile_want_autostart(v));
    _cleanup_free_ char *p6 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p6, "mark-stopped");
}

/* A shutdown is asked again while the guest ignores it, until the deadline
 * forces the power off. */
static void shutdown_is_repeated_until_the_deadline(void **state)
{
    (void)state;
    json_auto_t *doc = doc1(vm(ID1, "stopped"));
    json_t *v = json_array_get(json_object_get(doc, "vms"), 0);
    struct virt_dom d = dom_for(v, VIRT_RUNNING, false);
    d.shutdown_deadline_ms = 60000;
    d.shutdown_repeat_ms = 5000;
    _cleanup_free_ char *p1 = plan_str(doc, &d, 1, 4999);
    assert_string_equal(p1, "");
    _cleanup_free_ char *p2 = plan_str(doc, &d, 1, 5000);
    assert_string_equal(p2, "shutdown");
    d.shutdown_repeat_ms = 0; /* the last repeat was before the deadline */
    _cleanup_free_ char *p3 = plan_str(doc, &d, 1, 59999);
    assert_string_equal(p3, "");
    _cleanup_free_ char *p4 = plan_str(doc, &d, 1, 60000);
    assert_string_equal(p4, "destroy");
}

static void resize_grows_disk_and_redefines(void **state)
{
    json_auto_t *doc = doc1(vm(ID1, "stopped"));
    json_t *v = json_array_get(json_object_get(doc, "vms"), 0);
    struct virt_dom d = dom_for(v, VIRT_STOPPED, false);
    json_object_set_new(v, "vcpus", json_integer(4));
    json_object_set_new(v, "disk_gib", json_integer(10));
    _cleanup_free_ char *p = plan_str(doc, &d, 1, 0);
    assert_string_equal(p, "redefine grow-disk");
    /* A disk never shrinks. */
    json_object_set_new(v, "vcpus", json_integer(1));
    json_object_set_new(v, "disk_gib", json_integer(1));
    _cleanup_free_ char *p2 = plan_str(doc, &d, 1, 0);
    assert_string_equal(p2, "");
}

static void delete_undefines_then_only_purges(void **state)
{
    json_auto_t *doc = doc1(vm(ID1, "stopped"));
    json_t *v = json_array_get(json_object_get(doc, "vms"), 0);
    struct virt_dom d = dom_for(v, VIRT_RUNNING, true);
    json_object_set_new(v, "deleted", json_true());
    _cleanup_free_ char *p = plan_str(doc, &d, 1, 0);
    assert_string_equal(p, "delete");
    _cleanup_free_ char *p2 = plan_str(doc, NULL, 0, 0);
    assert_string_equal(p2, "purge");
    const char *st, *reason;
    reconcile_status(v, NULL, NULL, &st, &reason);
    assert_string_equal(st, "deleted");
}

static void unusable_entries_are_rejected_not_acted_on(void **state)
{
    static const char *const bad[][2] = {
        { "vcpus", "0" }, { "image", "\"../etc/passwd\"" },
        { "power", "\"sideways\"" }, { "memory_mib", "\"lots\"" },
        { "name", "\"a\\u0001b\"" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        json_auto_t *doc = doc1(vm(ID1, "running"));
        json_t *v = json_array_get(json_object_get(doc, "vms"), 0);
        json_object_set_new(v, bad[i][0], json_loads(bad[i][1], JSON_DECODE_ANY, NULL));
        _cleanup_free_ char *p = plan_str(doc, NULL, 0, 0);
        assert_string_equal(p, "reject");
    }
    json_auto_t *doc = doc1(vm(ID1, "running"));
    json_t *nic = json_array_get(json_object_get(json_array_get(
                                     json_object_get(doc, "vms"), 0), "nics"), 0);
    json_object_set_new(nic, "bridge", json_string("br0; rm -rf /"));
    _cleanup_free_ char *p = plan_str(doc, NULL, 0, 0);
    assert_string_equal(p, "reject");
    /* Without a valid id nothing can be said or done about it. */
    json_auto_t *doc2 = doc1(vm("not-a-uuid", "running"));
    _cleanup_free_ char *p2 = plan_str(doc2, NULL, 0, 0);
    assert_string_equal(p2, "");
}

static void two_vms_are_planned_independently(void **state)
{
    json_auto_t *doc = json_pack("{s:I, s:[o, o]}", "revision", (json_int_t)3,
                                 "vms", vm(ID1, "running"), vm(ID2, "stopped"));
    json_t *v1 = json_array_get(json_object_get(doc, "vms"), 0);
    struct virt_dom d = dom_for(v1, VIRT_RUNNING, true);
    _cleanup_free_ char *p = plan_str(doc, &d, 1, 0);
    assert_string_equal(p, "create");
}

static void status_maps_what_is_seen(void **state)
{
    json_auto_t *v = vm(ID1, "running");
    const char *st, *reason;
    reconcile_status(v, NULL, NULL, &st, &reason);
    assert_string_equal(st, "creating");
    reconcile_status(v, NULL, "image 'tiny' not found", &st, &reason);
    assert_string_equal(st, "error");
    assert_string_equal(reason, "image 'tiny' not found");
    struct virt_dom d = dom_for(v, VIRT_STOPPED, false);
    reconcile_status(v, &d, "start: no bridge", &st, &reason);
    assert_string_equal(st, "error");
    d.state = VIRT_PAUSED;
    reconcile_status(v, &d, NULL, &st, &reason);
    assert_string_equal(st, "paused");
    d.state = VIRT_RUNNING;
    reconcile_status(v, &d, NULL, &st, &reason);
    assert_string_equal(st, "running");
    assert_null(reason);
}

static void the_spec_hash_follows_the_definition_inputs(void **state)
{
    json_auto_t *a = vm(ID1, "running");
    json_auto_t *b = vm(ID1, "stopped");
    char ha[65], hb[65], hk[65];
    reconcile_spec_hash(a, false, ha);
    reconcile_spec_hash(b, false, hb);
    assert_string_equal(ha, hb); /* power is not part of the definition */
    reconcile_spec_hash(a, true, hk);
    assert_string_not_equal(ha, hk);
    json_object_set_new(b, "memory_mib", json_integer(256));
    reconcile_spec_hash(b, false, hb);
    assert_string_not_equal(ha, hb);
}

/* The agent acts only on a whole document for itself: a truncated body
 * (which does not parse), a missing or mistyped part, another node's
 * document or a negative revision are all refused. */
static void only_a_whole_document_is_acted_on(void **state)
{
    static const char *node = "0123abcd-0000-4000-8000-0000000000aa";
    _cleanup_free_ char *text = xasprintf(
        "{\"revision\":4,\"node_id\":\"%s\",\"mesh\":null,\"vms\":[],"
        "\"networks\":[],\"ports\":[],\"peers\":[]}", node);
    json_auto_t *whole = json_loads(text, 0, NULL);
    assert_true(reconcile_doc_whole(whole, node));
    assert_false(reconcile_doc_whole(whole, "0123abcd-0000-4000-8000-0000000000bb"));
    assert_false(reconcile_doc_whole(whole, NULL));
    /* Cut anywhere, the body is not a document. */
    for (size_t n = 0; n < strlen(text); n++) {
        json_auto_t *cut = json_loadb(text, n, 0, NULL);
        assert_false(reconcile_doc_whole(cut, node));
    }
    static const char *const parts[] = { "vms", "networks", "ports", "peers",
                                         "mesh", "revision", "node_id" };
    for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
        json_auto_t *d = json_deep_copy(whole);
        json_object_del(d, parts[i]);
        assert_false(reconcile_doc_whole(d, node));
        json_auto_t *e = json_deep_copy(whole);
        json_object_set_new(e, parts[i], json_string("x"));
        assert_false(reconcile_doc_whole(e, node));
    }
    json_auto_t *neg = json_deep_copy(whole);
    json_object_set_new(neg, "revision", json_integer(-1));
    assert_false(reconcile_doc_whole(neg, node));
    json_auto_t *arr = json_loads("[]", 0, NULL);
    assert_false(reconcile_doc_whole(arr, node));
}

/* A VM as the contract reads it: vm() without its NICs. */
static json_t *vm_plain(const char *id, const char *power)
{
    json_t *v = vm(id, power);
    json_object_del(v, "nics");
    return v;
}

/* A delta is read as the merged whole would be (reconcile_doc_read of
 * desired_delta_apply), decoding only what it carries: VMs added,
 * changed and removed, a member changed, a field the contract does not
 * name dropped; a VM out of bounds refuses it as it refuses the whole;
 * another base or a malformed delta asks for the whole. */
static void a_delta_reads_as_the_merged_whole(void **state)
{
    static const char *node = "0123abcd-0000-4000-8000-0000000000aa";
    json_auto_t *whole = json_pack(
        "{s:I, s:s, s:n, s:b, s:[o, o], s:[], s:[], s:[]}", "revision",
        (json_int_t)4, "node_id", node, "mesh", "approved", 1, "vms",
        vm_plain(ID1, "running"), vm_plain(ID2, "running"), "networks", "ports", "peers");
    _cleanup_free_ char *held_why = NULL;
    json_auto_t *held = reconcile_doc_read(whole, node, &held_why);
    if (!held)
        fail_msg("the whole refused: %s", held_why);
    json_t *changed = vm_plain(ID2, "stopped");
    json_object_set_new(changed, "not_in_the_contract", json_true());
    json_t *deltas[] = {
        json_pack("{s:I, s:I, s:s, s:[o, o], s:[], s:{s:s, s:i, s:i}}",
                  "revision", (json_int_t)5, "delta_from", (json_int_t)4,
                  "node_id", node, "vms", changed, vm_plain(FOREIGN, "running"),
                  "removed_vms", "mesh", "address", "10.99.0.2", "prefix",
                  12, "listen_port", 51820),
        json_pack("{s:I, s:I, s:s, s:[], s:[s]}", "revision", (json_int_t)5,
                  "delta_from", (json_int_t)4, "node_id", node, "vms",
                  "removed_vms", ID1),
    };
    for (size_t i = 0; i < ARRAY_SIZE(deltas); i++) {
        json_auto_t *merged = NULL;
        assert_int_equal(desired_delta_apply(held, deltas[i], &merged), 0);
        json_auto_t *want = reconcile_doc_read(merged, node, NULL);
        assert_non_null(want);
        json_auto_t *got = NULL;
        assert_int_equal(reconcile_delta_read(held, deltas[i], node, &got,
                                              NULL), 0);
        if (!json_equal(got, want)) {
            _cleanup_free_ char *g = json_dumps(got, JSON_SORT_KEYS);
            _cleanup_free_ char *w = json_dumps(want, JSON_SORT_KEYS);
            fail_msg("delta %zu read as:\n%s\nwhole:\n%s", i, g, w);
        }
    }
    json_auto_t *d0 = deltas[0], *d1 = deltas[1];
    /* A VM out of bounds: refused, as the merged whole is. */
    json_t *bad = vm_plain(FOREIGN, "running");
    json_object_set_new(bad, "vcpus", json_integer(0));
    json_auto_t *refused = json_pack(
        "{s:I, s:I, s:s, s:[o], s:[]}", "revision", (json_int_t)5,
        "delta_from", (json_int_t)4, "node_id", node, "vms", bad,
        "removed_vms");
    json_auto_t *got = NULL;
    _cleanup_free_ char *why = NULL;
    assert_int_equal(reconcile_delta_read(held, refused, node, &got, &why),
                     -EBADMSG);
    assert_null(got);
    assert_non_null(why);
    json_auto_t *merged = NULL;
    assert_int_equal(desired_delta_apply(held, refused, &merged), 0);
    assert_false(reconcile_doc_whole(merged, node));
    /* Another node's, another base, or malformed. */
    json_auto_t *foreign = json_deep_copy(d1);
    json_object_set_new(foreign, "node_id", json_string(FOREIGN));
    assert_int_equal(reconcile_delta_read(held, foreign, node, &got, NULL),
                     -EBADMSG);
    json_auto_t *other = json_deep_copy(d1);
    json_object_set_new(other, "delta_from", json_integer(3));
    assert_int_equal(reconcile_delta_read(held, other, node, &got, NULL),
                     -ESTALE);
    json_auto_t *malformed = json_deep_copy(d1);
    (void)d0;
    json_object_set_new(malformed, "vms", json_string("x"));
    assert_int_equal(reconcile_delta_read(held, malformed, node, &got, NULL),
                     -EINVAL);
    assert_null(got);
}

/* A delta of a network's VMs (AGENT_NET_VMS) is read as the merged whole
 * would be: an item changed, one new, one gone, the network's names and
 * remote MACs made from what the list holds after the merge. */
static void a_delta_of_net_vms_reads_as_the_merged_whole(void **state)
{
    static const char *node = "0123abcd-0000-4000-8000-0000000000aa";
    json_t *items = json_array();
    json_array_append_new(items, tu_net_vm(1000, "a", "02:00:00:00:00:01",
                                           "100.96.0.1")); /* its own */
    json_array_append_new(items, tu_net_vm(1000, "b", "02:00:00:00:00:02",
                                           "100.96.0.2"));
    json_array_append_new(items, tu_net_vm(1000, "c", "02:00:00:00:00:03",
                                           "100.96.0.3"));
    json_auto_t *whole = json_pack(
        "{s:I, s:s, s:{s:s, s:i, s:i}, s:b, s:[], s:[{s:s, s:i, s:s, s:s, "
        "s:s, s:[]}], s:o, s:[], s:[]}", "revision", (json_int_t)4,
        "node_id", node, "mesh", "address", "100.96.0.1", "prefix", 12,
        "listen_port", 51820, "approved", 1, "vms", "networks", "id", "n",
        "vxlan_id", 1000, "cidr", "10.1.0.0/24", "gateway", "10.1.0.1",
        "bridge", "fogbr1000", "vteps", AGENT_NET_VMS, items, "ports",
        "peers");
    _cleanup_free_ char *why = NULL;
    json_auto_t *held = reconcile_doc_read(whole, node, &why);
    if (!held)
        fail_msg("the whole refused: %s", why);
    json_t *w = json_array_get(json_object_get(held, "networks"), 0);
    assert_int_equal(json_array_size(json_object_get(w, "records")), 3);
    assert_int_equal(json_array_size(json_object_get(w, "macs")), 2);
    json_t *moved = tu_net_vm(1000, "b", "02:00:00:00:00:02", "100.96.0.7");
    json_t *added = tu_net_vm(1000, "d", "02:00:00:00:00:04", NULL);
    json_auto_t *delta = json_pack(
        "{s:I, s:I, s:s, s:[], s:[], s:[o, o], s:[s]}", "revision",
        (json_int_t)5, "delta_from", (json_int_t)4, "node_id", node, "vms",
        "removed_vms", AGENT_NET_VMS, moved, added,
        DESIRED_DELTA_REMOVED_NET_VMS, "00001000/02:00:00:00:00:03");
    json_auto_t *merged = NULL;
    assert_int_equal(desired_delta_apply(held, delta, &merged), 0);
    json_auto_t *want = reconcile_doc_read(merged, node, NULL);
    assert_non_null(want);
    json_auto_t *got = NULL;
    assert_int_equal(reconcile_delta_read(held, delta, node, &got, NULL), 0);
    if (!json_equal(got, want)) {
        _cleanup_free_ char *g = json_dumps(got, JSON_SORT_KEYS);
        _cleanup_free_ char *x = json_dumps(want, JSON_SORT_KEYS);
        fail_msg("read as:\n%s\nwhole:\n%s", g, x);
    }
    /* a, b and d named; only b is remote now, at its new VTEP. */
    assert_int_equal(json_array_size(json_object_get(got, AGENT_NET_VMS)), 3);
    w = json_array_get(json_object_get(got, "networks"), 0);
    json_t *recs = json_object_get(w, "records");
    assert_int_equal(json_array_size(recs), 3);
    assert_string_equal(json_str(json_array_get(recs, 2), "name"), "d");
    json_t *macs = json_object_get(w, "macs");
    assert_int_equal(json_array_size(macs), 1);
    assert_string_equal(json_str(json_array_get(macs, 0), "vtep"),
                        "100.96.0.7");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(only_a_whole_document_is_acted_on),
        cmocka_unit_test(a_new_vm_is_created_then_started),
        cmocka_unit_test(a_running_domain_is_adopted_as_is),
        cmocka_unit_test(domains_not_in_the_document_are_left_alone),
        cmocka_unit_test(a_guest_poweroff_is_reported_not_undone),
        cmocka_unit_test(a_guest_poweroff_stays_down_until_a_newer_start),
        cmocka_unit_test(a_start_while_running_is_recorded),
        cmocka_unit_test(start_after_a_stop_the_agent_made),
        cmocka_unit_test(reboot_generation_drives_a_reboot),
        cmocka_unit_test(stop_is_acpi_then_destroy_after_the_deadline),
        cmocka_unit_test(shutdown_is_repeated_until_the_deadline),
        cmocka_unit_test(a_paused_vm_is_suspended_and_resumed),
        cmocka_unit_test(host_reboot_starts_through_the_agent_by_the_flag),
        cmocka_unit_test(resize_grows_disk_and_redefines),
        cmocka_unit_test(delete_undefines_then_only_purges),
        cmocka_unit_test(unusable_entries_are_rejected_not_acted_on),
        cmocka_unit_test(two_vms_are_planned_independently),
        cmocka_unit_test(status_maps_what_is_seen),
        cmocka_unit_test(the_spec_hash_follows_the_definition_inputs),
        cmocka_unit_test(a_delta_reads_as_the_merged_whole),
        cmocka_unit_test(a_delta_of_net_vms_reads_as_the_merged_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
