/* Domain XML: hostile names stay inside their attribute, the document is
 * well formed and parses back to what was put in; unsafe inputs are
 * refused; the metadata element round-trips. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "nodeagent/vmxml.h"
#include "api/agentmsg.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <errno.h>
#include <stdio.h>

static const char *const VM_ID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";

static void spec_init(struct vmxml_spec *s, struct vmxml_meta *m,
                      const char *name, struct vmxml_nic *nics, size_t n)
{
    *m = (struct vmxml_meta){ .name = (char *)name, .power_running = true,
                              .reboot_gen = 3, .disk_gib = 10 };
    snprintf(m->vm_id, sizeof(m->vm_id), "%s", VM_ID);
    memset(m->spec, 'a', 64);
    *s = (struct vmxml_spec){ .meta = m, .vcpus = 2, .memory_mib = 512,
                              .kvm = false,
                              .disk_path = "/var/lib/fog/disks/x.qcow2",
                              .console_log = "/var/lib/fog/console/x.log",
                              .nics = nics, .n_nics = n };
}

static char *xpath_str(xmlDocPtr doc, const char *expr)
{
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    xmlXPathRegisterNs(ctx, BAD_CAST "fog", BAD_CAST VMXML_NS_URI);
    xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
    char *out = NULL;
    if (o) {
        xmlChar *s = xmlXPathCastToString(o);
        out = xstrdup((const char *)s);
        xmlFree(s);
        xmlXPathFreeObject(o);
    }
    xmlXPathFreeContext(ctx);
    return out;
}

static double xpath_num(xmlDocPtr doc, const char *expr)
{
    _cleanup_free_ char *s = xpath_str(doc, expr);
    return s ? atof(s) : -1;
}

static xmlDocPtr parse(const char *xml)
{
    return xmlReadMemory(xml, (int)strlen(xml), "d.xml", NULL,
                         XML_PARSE_NONET | XML_PARSE_NOERROR |
                         XML_PARSE_NOWARNING);
}

static void hostile_names_stay_in_their_attribute(void **state)
{
    static const char *const names[] = {
        "web", "a&b", "<script>", "x\"/><devices><disk", "it's",
        "]]><!--", "&amp;", "élan ☃ 漢字", "' or '1'='1", "</domain>",
    };
    struct vmxml_nic nic = { "52:54:00:12:34:56", "fogbr7", 1370 };
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        struct vmxml_spec s;
        struct vmxml_meta m;
        spec_init(&s, &m, names[i], &nic, 1);
        _cleanup_free_ char *xml = NULL;
        assert_int_equal(vmxml_build(&s, &xml), 0);
        xmlDocPtr doc = parse(xml);
        assert_non_null(doc);
        _cleanup_free_ char *title = xpath_str(doc, "string(/domain/title)");
        _cleanup_free_ char *mname = xpath_str(
            doc, "string(/domain/metadata/fog:vm/@name)");
        assert_string_equal(title, names[i]);
        assert_string_equal(mname, names[i]);
        /* Still exactly one disk, one interface, one domain. */
        assert_int_equal((int)xpath_num(doc, "count(/domain/devices/disk)"), 1);
        assert_int_equal((int)xpath_num(doc, "count(//interface)"), 1);
        assert_int_equal((int)xpath_num(doc, "count(//domain)"), 1);
        xmlFreeDoc(doc);
    }
}

static void the_definition_carries_what_was_asked(void **state)
{
    struct vmxml_nic nics[2] = { { "52:54:00:12:34:56", "fogbr7", 1370 },
                                 { "52:54:00:AB:CD:EF", "br0", 0 } };
    struct vmxml_spec s;
    struct vmxml_meta m;
    spec_init(&s, &m, "web", nics, 2);
    _cleanup_free_ char *xml = NULL;
    assert_int_equal(vmxml_build(&s, &xml), 0);
    xmlDocPtr doc = parse(xml);
    assert_non_null(doc);
    _cleanup_free_ char *name = xpath_str(doc, "string(/domain/name)");
    _cleanup_free_ char *uuid = xpath_str(doc, "string(/domain/uuid)");
    _cleanup_free_ char *type = xpath_str(doc, "string(/domain/@type)");
    _cleanup_free_ char *src = xpath_str(doc, "string(//disk/source/@file)");
    _cleanup_free_ char *fmt = xpath_str(doc, "string(//disk/driver/@type)");
    _cleanup_free_ char *log = xpath_str(doc, "string(//serial/log/@file)");
    _cleanup_free_ char *br = xpath_str(doc, "string(//interface[2]/source/@bridge)");
    _cleanup_free_ char *crash = xpath_str(doc, "string(/domain/on_crash)");
    _cleanup_free_ char *mid = xpath_str(doc, "string(//fog:vm/@id)");
    assert_string_equal(name, "fog-1b4e28ba-2fa1-41d2-883f-0016d3cca427");
    assert_string_equal(uuid, VM_ID);
    assert_string_equal(type, "qemu");
    assert_string_equal(src, "/var/lib/fog/disks/x.qcow2");
    assert_string_equal(fmt, "qcow2");
    assert_string_equal(log, "/var/lib/fog/console/x.log");
    assert_string_equal(br, "br0");
    assert_string_equal(crash, "destroy");
    assert_string_equal(mid, VM_ID);
    assert_int_equal((int)xpath_num(doc, "number(/domain/vcpu)"), 2);
    assert_int_equal((int)xpath_num(doc, "number(/domain/memory)"), 512);
    assert_int_equal((int)xpath_num(doc, "number(//interface[1]/mtu/@size)"), 1370);
    assert_int_equal((int)xpath_num(doc, "count(//interface[2]/mtu)"), 0);
    assert_int_equal((int)xpath_num(doc, "count(/domain/cpu)"), 0);
    xmlFreeDoc(doc);

    s.kvm = true;
    free(xml);
    xml = NULL;
    assert_int_equal(vmxml_build(&s, &xml), 0);
    doc = parse(xml);
    _cleanup_free_ char *kvm = xpath_str(doc, "string(/domain/@type)");
    assert_string_equal(kvm, "kvm");
    xmlFreeDoc(doc);
}

static void the_owners_limits_reach_cputune_iotune_and_bandwidth(void **state)
{
    struct vmxml_nic nics[2] = { { "52:54:00:12:34:56", "fogbr7", 1370 },
                                 { "52:54:00:AB:CD:EF", "br0", 0 } };
    struct vmxml_limits l = { .cpu_shares = 100, .cpu_cap_pct = 50,
                              .disk_iops = 500, .disk_bytes_sec = 20 << 20,
                              .net_kbps = 12500 };
    struct vmxml_spec s;
    struct vmxml_meta m;
    spec_init(&s, &m, "web", nics, 2);
    s.limits = &l;
    _cleanup_free_ char *xml = NULL;
    assert_int_equal(vmxml_build(&s, &xml), 0);
    xmlDocPtr doc = parse(xml);
    assert_non_null(doc);
    /* The weight grows with the VM's vCPUs; the cap is per vCPU. */
    assert_int_equal((int)xpath_num(doc, "number(/domain/cputune/shares)"), 200);
    assert_int_equal((int)xpath_num(doc, "number(/domain/cputune/period)"), 100000);
    assert_int_equal((int)xpath_num(doc, "number(/domain/cputune/quota)"), 50000);
    assert_int_equal((int)xpath_num(doc, "number(//disk[target/@dev='vda']/iotune/total_iops_sec)"), 500);
    assert_int_equal((int)xpath_num(doc, "number(//disk[target/@dev='vda']/iotune/total_bytes_sec)"), 20 << 20);
    assert_int_equal((int)xpath_num(doc, "count(//interface/bandwidth/inbound[@average='12500'])"), 2);
    assert_int_equal((int)xpath_num(doc, "count(//interface/bandwidth/outbound[@average='12500'])"), 2);
    xmlFreeDoc(doc);

    /* No limits set: none written. */
    l = (struct vmxml_limits){ 0 };
    free(xml);
    xml = NULL;
    assert_int_equal(vmxml_build(&s, &xml), 0);
    doc = parse(xml);
    assert_int_equal((int)xpath_num(doc, "count(//cputune|//iotune|//bandwidth)"), 0);
    xmlFreeDoc(doc);

    /* Out of bounds: refused. */
    l.cpu_cap_pct = 101;
    assert_int_equal(vmxml_build(&s, &xml), -EINVAL);
    l = (struct vmxml_limits){ .net_kbps = -1 };
    assert_int_equal(vmxml_build(&s, &xml), -EINVAL);
}

static void small_guests_get_their_seed_and_lean_devices(void **state)
{
    struct vmxml_nic nic = { "52:54:00:12:34:56", "fogbr7", 1370,
                             "fogt1b4e28ba0" };
    struct vmxml_spec s;
    struct vmxml_meta m;
    spec_init(&s, &m, "web", &nic, 1);
    s.seed_path = "/var/lib/fog/seeds/x.iso";
    _cleanup_free_ char *xml = NULL;
    assert_int_equal(vmxml_build(&s, &xml), 0);
    xmlDocPtr doc = parse(xml);
    assert_non_null(doc);
    /* The seed: second virtio disk, raw, read-only. */
    assert_int_equal((int)xpath_num(doc, "count(/domain/devices/disk)"), 2);
    _cleanup_free_ char *seed = xpath_str(
        doc, "string(//disk[target/@dev='vdb']/source/@file)");
    _cleanup_free_ char *bus = xpath_str(
        doc, "string(//disk[target/@dev='vdb']/target/@bus)");
    _cleanup_free_ char *fmt = xpath_str(
        doc, "string(//disk[target/@dev='vdb']/driver/@type)");
    assert_string_equal(seed, "/var/lib/fog/seeds/x.iso");
    assert_string_equal(bus, "virtio");
    assert_string_equal(fmt, "raw");
    assert_int_equal((int)xpath_num(doc, "count(//disk[target/@dev='vdb']/readonly)"), 1);
    assert_int_equal((int)xpath_num(doc, "count(//disk[target/@dev='vda']/readonly)"), 0);
    /* The tap is named, so the firewall can match it. */
    _cleanup_free_ char *tap = xpath_str(doc, "string(//interface/target/@dev)");
    assert_string_equal(tap, "fogt1b4e28ba0");
    /* Under TCG: no option ROM, no USB, no balloon; ACPI for shutdown. */
    _cleanup_free_ char *rom = xpath_str(doc, "string(//interface/rom/@enabled)");
    _cleanup_free_ char *usb = xpath_str(doc, "string(//controller[@type='usb']/@model)");
    _cleanup_free_ char *balloon = xpath_str(doc, "string(//memballoon/@model)");
    assert_string_equal(rom, "no");
    assert_string_equal(usb, "none");
    assert_string_equal(balloon, "none");
    assert_int_equal((int)xpath_num(doc, "count(/domain/features/acpi)"), 1);
    xmlFreeDoc(doc);

    /* With KVM the guest keeps the defaults. */
    s.kvm = true;
    free(xml);
    xml = NULL;
    assert_int_equal(vmxml_build(&s, &xml), 0);
    doc = parse(xml);
    assert_int_equal((int)xpath_num(doc, "count(//interface/rom)"), 0);
    assert_int_equal((int)xpath_num(doc, "count(//controller[@type='usb'])"), 0);
    _cleanup_free_ char *kb = xpath_str(doc, "string(//memballoon/@model)");
    assert_string_equal(kb, "virtio");
    xmlFreeDoc(doc);

    /* A tap name is an interface name like any other. */
    free(xml);
    xml = NULL;
    nic.tap = "tap0\"/><x";
    assert_int_equal(vmxml_build(&s, &xml), -EINVAL);
    s.seed_path = "seeds/x.iso";
    nic.tap = NULL;
    assert_int_equal(vmxml_build(&s, &xml), -EINVAL);
}

static void unsafe_inputs_are_refused(void **state)
{
    struct vmxml_nic nic = { "52:54:00:12:34:56", "fogbr7", 1370 };
    struct vmxml_spec s;
    struct vmxml_meta m;
    _cleanup_free_ char *xml = NULL;
    static const char *const bad_names[] = { "a\x01" "b", "tab\there",
                                             "nl\n", "\xff\xfe", "\xc0\xaf",
                                             "\xed\xa0\x80" };
    for (size_t i = 0; i < ARRAY_SIZE(bad_names); i++) {
        spec_init(&s, &m, bad_names[i], &nic, 1);
        assert_int_equal(vmxml_build(&s, &xml), -EINVAL);
    }
    spec_init(&s, &m, "ok", &nic, 1);
    snprintf(m.vm_id, sizeof(m.vm_id), "../../etc/passwd");
    assert_int_equal(vmxml_build(&s, &xml), -EINVAL);

    static const char *const bad_paths[] = { "relative.qcow2", "/a/../b",
                                             "/a/./b", "/x,y", "/a/..",
                                             "/a\nb" };
    for (size_t i = 0; i < ARRAY_SIZE(bad_paths); i++) {
        spec_init(&s, &m, "ok", &nic, 1);
        s.disk_path = bad_paths[i];
        assert_int_equal(vmxml_build(&s, &xml), -EINVAL);
    }
    static const char *const bad_macs[] = { "52:54:00:12:34", "zz:54:00:12:34:56",
                                            "01:00:5e:00:00:01",
                                            "52:54:00:12:34:56\"" };
    for (size_t i = 0; i < ARRAY_SIZE(bad_macs); i++) {
        struct vmxml_nic n = { bad_macs[i], "fogbr7", 0 };
        spec_init(&s, &m, "ok", &n, 1);
        assert_int_equal(vmxml_build(&s, &xml), -EINVAL);
    }
    static const char *const bad_bridges[] = { "", "a-very-long-bridge-name",
                                               "br 0", "br'0", "..", "br/0" };
    for (size_t i = 0; i < ARRAY_SIZE(bad_bridges); i++) {
        struct vmxml_nic n = { "52:54:00:12:34:56", bad_bridges[i], 0 };
        spec_init(&s, &m, "ok", &n, 1);
        assert_int_equal(vmxml_build(&s, &xml), -EINVAL);
    }
    spec_init(&s, &m, "ok", &nic, 1);
    s.vcpus = 0;
    assert_int_equal(vmxml_build(&s, &xml), -EINVAL);
    assert_null(xml);
}

static void metadata_round_trips(void **state)
{
    struct vmxml_meta m = { .name = "a<b>&\"c'", .power_running = false,
                            .reboot_gen = 7, .start_gen = 9, .disk_gib = 42 };
    snprintf(m.vm_id, sizeof(m.vm_id), "%s", VM_ID);
    memset(m.spec, 'f', 64);
    _cleanup_free_ char *xml = NULL;
    assert_int_equal(vmxml_meta_build(&m, &xml), 0);
    struct vmxml_meta back;
    assert_int_equal(vmxml_meta_parse(xml, &back), 0);
    assert_string_equal(back.vm_id, VM_ID);
    assert_string_equal(back.name, m.name);
    assert_false(back.power_running);
    assert_int_equal(back.reboot_gen, 7);
    assert_int_equal(back.start_gen, 9);
    assert_int_equal(back.disk_gib, 42);
    assert_string_equal(back.spec, m.spec);
    vmxml_meta_clear(&back);

    /* As libvirt hands it back: without the namespace prefix. */
    const char *plain = "<vm id=\"1b4e28ba-2fa1-41d2-883f-0016d3cca427\" "
                        "name=\"x\" power=\"running\" reboot-gen=\"0\" "
                        "disk-gib=\"1\" spec=\"\"/>";
    assert_int_equal(vmxml_meta_parse(plain, &back), 0);
    assert_true(back.power_running);
    /* Written before start generations existed: 0. */
    assert_int_equal(back.start_gen, 0);
    vmxml_meta_clear(&back);

    static const char *const bad[] = {
        "", "<vm/>", "<other id=\"1b4e28ba-2fa1-41d2-883f-0016d3cca427\"/>",
        "<vm id=\"x\" name=\"x\" power=\"running\" reboot-gen=\"0\" disk-gib=\"1\"/>",
        "<vm id=\"1b4e28ba-2fa1-41d2-883f-0016d3cca427\" name=\"x\" "
        "power=\"maybe\" reboot-gen=\"0\" disk-gib=\"1\"/>",
        "<vm id=\"1b4e28ba-2fa1-41d2-883f-0016d3cca427\" name=\"x\" "
        "power=\"running\" reboot-gen=\"-1\" disk-gib=\"1\"/>",
        "<vm id=\"1b4e28ba-2fa1-41d2-883f-0016d3cca427\" name=\"x\" "
        "power=\"running\" reboot-gen=\"0\" start-gen=\"x\" disk-gib=\"1\"/>",
        "<vm",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_int_equal(vmxml_meta_parse(bad[i], &back), -EINVAL);
}

static void only_fog_uuid_names_are_ours(void **state)
{
    assert_string_equal(vmxml_name_vm_id("fog-1b4e28ba-2fa1-41d2-883f-0016d3cca427"),
                        VM_ID);
    assert_null(vmxml_name_vm_id("test"));
    assert_null(vmxml_name_vm_id("fog-web"));
    assert_null(vmxml_name_vm_id("fog-1B4E28BA-2FA1-41D2-883F-0016D3CCA427"));
    assert_null(vmxml_name_vm_id("xfog-1b4e28ba-2fa1-41d2-883f-0016d3cca427"));
}

/* domiflist's columns come from the domain's interfaces; one with a bad
 * MAC is left out, odd texts read as absent, a DTD (entities) refused. */
static void interfaces_are_read_as_domiflist_shows_them(void **state)
{
    static const char xml[] =
        "<domain type='qemu'><name>fog-x</name><devices>"
        "<interface type='bridge'><mac address='52:54:00:aa:bb:cc'/>"
        "<source bridge='fogbr0'/><target dev='vnet0'/>"
        "<model type='virtio'/></interface>"
        "<interface type='network'><mac address='52:54:00:aa:bb:cd'/>"
        "<source network='default'/><model type='bad model'/></interface>"
        "<interface type='user'><mac address='not-a-mac'/></interface>"
        "</devices></domain>";
    struct am_iface *v = NULL;
    size_t n = 0;
    assert_int_equal(vmxml_ifaces_parse(xml, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].target, "vnet0");
    assert_string_equal(v[0].type, "bridge");
    assert_string_equal(v[0].source, "fogbr0");
    assert_string_equal(v[0].model, "virtio");
    assert_string_equal(v[0].mac, "52:54:00:aa:bb:cc");
    assert_null(v[1].target);
    assert_string_equal(v[1].type, "network");
    assert_null(v[1].model);
    assert_string_equal(v[1].source, "default");
    for (size_t i = 0; i < n; i++)
        am_iface_clear(&v[i]);
    free(v);
    assert_int_equal(vmxml_ifaces_parse("<domain", &v, &n), -EINVAL);
    /* A document type declaration (entities) is not libvirt's. */
    assert_int_equal(vmxml_ifaces_parse(
                         "<!DOCTYPE domain [<!ENTITY x 'expanded'>]>"
                         "<domain><devices><interface type='network'>"
                         "<mac address='52:54:00:aa:bb:cd'/>"
                         "<source network='&x;'/></interface></devices>"
                         "</domain>", &v, &n), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hostile_names_stay_in_their_attribute),
        cmocka_unit_test(the_definition_carries_what_was_asked),
        cmocka_unit_test(the_owners_limits_reach_cputune_iotune_and_bandwidth),
        cmocka_unit_test(small_guests_get_their_seed_and_lean_devices),
        cmocka_unit_test(unsafe_inputs_are_refused),
        cmocka_unit_test(metadata_round_trips),
        cmocka_unit_test(only_fog_uuid_names_are_ours),
        cmocka_unit_test(interfaces_are_read_as_domiflist_shows_them),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
