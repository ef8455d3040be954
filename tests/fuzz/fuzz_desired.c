/* The agent contract, agent side: the controller's desired document as
 * the node agent reads it: the network state (netfabric/state.c) and the
 * firewall built from it (netfabric/nftplan.c), each VM entry's check and
 * the reconcile planner over domains in every state (nodeagent/reconcile.c),
 * the domain XML and metadata built from each entry (nodeagent/vmxml.c),
 * the per-VM status, the meter's retain, and each network's resolver
 * (netfabric/resolver.c: hosts file and dnsmasq arguments from the
 * tenant's names and label); all of it after the
 * contract's decoder (api/agentmsg.c), whose output must read back the
 * same. A delta (api/desired_delta.c) is merged into a small whole
 * document first, and what it merges to, diffed against that document,
 * must merge back to the same. */
#include "tests/fuzz/fuzz.h"
#include "api/desired_delta.h"
#include "common/buf.h"
#include "common/netcheck.h"
#include "netfabric/nftplan.h"
#include "netfabric/resolver.h"
#include "netfabric/state.h"
#include "nodeagent/meter.h"
#include "nodeagent/reconcile.h"
#include "nodeagent/vmxml.h"

#include <libxml/parser.h>

#include <stdio.h>

/* A network's hosts file: one line per record kept, each "ADDR NAME" or
 * "ADDR NAME NAME.LABEL.internal" of labels only, so no name can add a
 * line or a name; and its dnsmasq arguments, as many as counted. */
static void resolver(const struct nf_state *st, const struct nf_network *n)
{
    struct buf hosts = BUF_INIT;
    size_t skipped = resolver_hosts_render(n, &hosts);
    size_t lines = 0;
    for (char *line = hosts.data, *end; line && *line; line = end + 1) {
        end = strchr(line, '\n');
        if (!end)
            abort(); /* every line ends */
        *end = '\0';
        lines++;
        char *save = NULL, *f[4];
        size_t k = 0;
        for (char *w = strtok_r(line, " ", &save); w && k < 4;
             w = strtok_r(NULL, " ", &save))
            f[k++] = w;
        if (k != (n->dns_label ? 3u : 2u) || !net_dns_label_ok(f[1]))
            abort();
        for (size_t i = 0; i < strlen(f[0]); i++)
            if (!strchr("0123456789.", f[0][i]))
                abort();
    }
    if (lines + skipped != n->n_records)
        abort();
    buf_free(&hosts);
    struct buf argv = BUF_INIT;
    size_t argc = resolver_argv_render(st, n, "/run/fog/dns/x", &argv), nul = 0;
    for (size_t i = 0; i < argv.len; i++)
        nul += argv.data[i] == '\0';
    if (nul != argc)
        abort(); /* nothing in an argument splits it */
    buf_free(&argv);
}

static void network(const json_t *doc)
{
    struct nf_state st;
    char *err = NULL;
    if (netfabric_state_from_json(doc, NULL, &st, &err) == 0) {
        struct buf out = BUF_INIT;
        (void)nftplan_build(&st, &out);
        buf_free(&out);
        for (size_t i = 0; i < st.n_networks; i++)
            resolver(&st, &st.networks[i]);
        nf_state_clear(&st);
    } else if (!err) {
        abort(); /* a refusal names the member */
    }
    free(err);
}

/* The domain definition for a VM entry, mapped as the executor maps it:
 * whatever the entry holds, an accepted definition is well-formed XML and
 * its metadata reads back the same. */
static void domain(const json_t *vm, bool kvm)
{
    const char *id = json_str(vm, "id");
    if (!id || strlen(id) > 36)
        return;
    struct vmxml_meta meta = { .name = (char *)json_str(vm, "name"),
                               .power_running = kvm,
                               .reboot_gen = json_int(vm, "reboot_gen", 0),
                               .start_gen = json_int(vm, "start_gen", 0),
                               .disk_gib = json_int(vm, "disk_gib", 1) };
    snprintf(meta.vm_id, sizeof(meta.vm_id), "%s", id);
    reconcile_spec_hash(vm, kvm, meta.spec);
    json_t *nics = json_object_get(vm, "nics");
    struct vmxml_nic nv[8];
    char taps[8][IFNAMSIZ];
    size_t n = 0;
    for (; n < json_array_size(nics) && n < ARRAY_SIZE(nv); n++) {
        json_t *nic = json_array_get(nics, n);
        if (netfabric_tap_name(id, (unsigned)n, taps[n]) < 0)
            return;
        nv[n] = (struct vmxml_nic){ json_str(nic, "mac"), json_str(nic, "bridge"),
                                    json_int(nic, "mtu", 0), taps[n] };
    }
    struct vmxml_spec spec = {
        .meta = &meta, .vcpus = json_int(vm, "vcpus", 1),
        .memory_mib = json_int(vm, "memory_mib", 64), .kvm = kvm,
        .disk_path = "/var/lib/fog/vms/disk.qcow2",
        .seed_path = "/var/lib/fog/vms/seed.iso",
        .console_log = "/var/lib/fog/vms/console.log",
        .nics = nv, .n_nics = n,
    };
    char *xml = NULL;
    if (vmxml_build(&spec, &xml) == 0) {
        xmlDocPtr d = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                                    XML_PARSE_NONET | XML_PARSE_NOERROR |
                                        XML_PARSE_NOWARNING);
        if (!d)
            abort(); /* our writer made XML that does not parse */
        xmlFreeDoc(d);
        free(xml);
    }
    if (vmxml_meta_build(&meta, &xml) == 0) {
        struct vmxml_meta back;
        if (vmxml_meta_parse(xml, &back) < 0 || !streq(back.vm_id, meta.vm_id) ||
            !streq(back.name, meta.name) || back.reboot_gen != meta.reboot_gen ||
            back.start_gen != meta.start_gen || back.disk_gib != meta.disk_gib ||
            back.power_running != meta.power_running || !streq(back.spec, meta.spec))
            abort(); /* the agent would lose track of its own domain */
        vmxml_meta_clear(&back);
        free(xml);
    }
}

/* Domains for the document's VMs, in states picked by `seed`: the planner
 * must cope with any observation, not only the ones it caused. */
static size_t domains(const json_t *vms, uint8_t seed, struct virt_dom **ret)
{
    size_t n = json_array_size(vms), k = 0, i;
    struct virt_dom *d = xcalloc(n + 1, sizeof(*d));
    json_t *vm;
    json_array_foreach(vms, i, vm) {
        const char *id = json_str(vm, "id");
        unsigned s = seed + (unsigned)i;
        if (!id || strlen(id) >= sizeof(d[k].meta.vm_id) || s % 5 == 4)
            continue;
        struct virt_dom *x = &d[k++];
        snprintf(x->meta.vm_id, sizeof(x->meta.vm_id), "%s", id);
        x->state = (enum virt_state)(s % VIRT_STATE_MAX);
        x->stopped_by_guest = s & 8;
        x->meta.power_running = s & 16;
        x->meta.reboot_gen = json_int(vm, "reboot_gen", 0) - (s & 1);
        x->meta.start_gen = json_int(vm, "start_gen", 0) - ((s >> 1) & 1);
        x->meta.disk_gib = json_int(vm, "disk_gib", 1) - ((s >> 2) & 1);
        x->vcpus = json_int(vm, "vcpus", 1);
        x->memory_mib = json_int(vm, "memory_mib", 64);
        x->autostart = s & 32;
        x->shutdown_deadline_ms = (s & 64) ? 1000 : 0;
        if (s & 128)
            reconcile_spec_hash(vm, s & 1, x->meta.spec);
    }
    virt_doms_sort(d, k);
    *ret = d;
    return k;
}

/* Merge delta `d` into a whole document at its delta_from with two VMs;
 * the merged document, diffed against that base and merged again, must
 * come back the same. */
static int delta_merge(const json_t *d, json_t **ret)
{
    json_auto_t *base = json_pack(
        "{s:O, s:s, s:[{s:s, s:s}, {s:s, s:s}], s:[]}", "revision",
        json_object_get(d, DESIRED_DELTA_FROM), "node_id",
        "00000000-0000-4000-8000-00000000000e", "vms", "id",
        "00000000-0000-4000-8000-000000000001", "name", "a", "id",
        "00000000-0000-4000-8000-000000000002", "name", "b", "ports");
    json_auto_t *merged = NULL;
    if (!base || desired_delta_apply(base, d, &merged) < 0)
        return -1;
    struct desired_parts *pb = desired_parts_new(base);
    struct desired_parts *pm = desired_parts_new(merged);
    if (!pb)
        abort(); /* the base is a document */
    size_t len = 0;
    char *text = pm ? desired_delta_text(pb, pm, &len) : NULL;
    if (text) {
        json_auto_t *again = json_loadb(text, len, 0, NULL);
        json_auto_t *back = NULL;
        if (!again || desired_delta_apply(base, again, &back) < 0 ||
            !json_equal(back, merged))
            abort(); /* a delta made is a delta that merges */
        free(text);
    }
    desired_parts_free(pb);
    desired_parts_free(pm);
    *ret = TAKE_PTR(merged);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fuzz_quiet();
    json_auto_t *raw = json_loadb((const char *)data + 1, size - 1, 0, NULL);
    if (!raw)
        return 0;
    if (desired_delta_is(raw)) {
        json_t *merged = NULL;
        if (delta_merge(raw, &merged) < 0)
            return 0;
        json_decref(raw);
        raw = merged;
    }
    /* The agent acts only on what the contract's decoder let through,
     * re-encoded; that must decode again to the same document. */
    char *doc_why = NULL;
    json_auto_t *doc = reconcile_doc_read(raw, json_str(raw, "node_id"), &doc_why);
    free(doc_why);
    if (!doc)
        return 0;
    json_auto_t *again = reconcile_doc_read(doc, json_str(doc, "node_id"), NULL);
    if (!again || !json_equal(doc, again))
        abort();
    network(doc);

    json_t *vms = json_object_get(doc, "vms");
    size_t i;
    json_t *vm;
    json_array_foreach(vms, i, vm) {
        char *why = NULL, hash[65];
        if (reconcile_vm_check(vm, &why) < 0 && !why)
            abort();
        free(why);
        reconcile_spec_hash(vm, true, hash);
        domain(vm, data[0] & 2);
    }
    struct virt_dom *doms;
    size_t n = domains(vms, data[0], &doms);
    struct reconcile_plan plan;
    reconcile_plan(doc, doms, n, data[0] & 1, 2000, &plan);
    for (size_t k = 0; k < plan.n; k++)
        if (plan.actions[k].op >= RC_OP_MAX ||
            (plan.actions[k].op == RC_REJECT) != !!plan.actions[k].reason)
            abort(); /* a rejection and only it carries a reason */
    reconcile_plan_free(&plan);
    json_array_foreach(vms, i, vm) {
        const char *st, *why;
        const char *id = json_str(vm, "id");
        const struct virt_dom *d = id ? virt_doms_find(doms, n, id) : NULL;
        reconcile_status(vm, d, (i & 1) ? "boom" : NULL, &st, &why);
        if (!st)
            abort();
        (void)reconcile_down_by_itself(vm, d);
    }
    free(doms);

    struct meter *m = meter_new(NULL, 0);
    meter_observe(m, "00000000-0000-4000-8000-000000000001", true, 10);
    meter_retain(m, vms);
    meter_free(m);
    return 0;
}
