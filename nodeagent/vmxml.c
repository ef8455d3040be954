/* Domain XML through libxml2's xmlTextWriter (which escapes every attribute
 * and text node), plus the fogfabric metadata element. Inputs are checked
 * before they are written, so a definition either is safe or is refused. */
#include "nodeagent/vmxml.h"

#include "api/agentmsg.h"
#include "common/netcheck.h"

#include "common/ids.h"

#include <errno.h>
#include <inttypes.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlwriter.h>
#include <stdio.h>

char *vmxml_domain_name(const char *vm_id)
{
    return xasprintf(VMXML_NAME_PREFIX "%s", vm_id);
}

const char *vmxml_name_vm_id(const char *name)
{
    if (!startswith(name, VMXML_NAME_PREFIX))
        return NULL;
    const char *id = name + strlen(VMXML_NAME_PREFIX);
    return uuid_is_valid(id) ? id : NULL;
}

bool vmxml_text_ok(const char *s)
{
    if (!s)
        return false;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            p++;
            continue;
        }
        if ((c & 0xe0) == 0xc0)
            n = 1, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0)
            n = 2, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0)
            n = 3, cp = c & 0x07;
        else
            return false;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        /* Overlong forms, surrogates, beyond Unicode, C1 controls and the
         * two non-characters XML 1.0 forbids. */
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
            (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp < 0xa0) ||
            cp == 0xfffe || cp == 0xffff)
            return false;
        p += n + 1;
    }
    return true;
}

static bool path_ok(const char *p)
{
    return p && p[0] == '/' && strlen(p) < 4096 && vmxml_text_ok(p) &&
           !strstr(p, "/../") && !strstr(p, "/./") &&
           !(strlen(p) >= 3 && streq(p + strlen(p) - 3, "/..")) &&
           !strchr(p, ',');
}

/* Thin wrappers: libxml2's writer returns -1 on failure; fold every call
 * into one error flag checked at the end. */
struct xw {
    xmlTextWriterPtr w;
    bool failed;
};

static void x_start(struct xw *x, const char *name)
{
    if (xmlTextWriterStartElement(x->w, BAD_CAST name) < 0)
        x->failed = true;
}

static void x_end(struct xw *x)
{
    if (xmlTextWriterEndElement(x->w) < 0)
        x->failed = true;
}

static void x_attr(struct xw *x, const char *name, const char *value)
{
    if (xmlTextWriterWriteAttribute(x->w, BAD_CAST name, BAD_CAST value) < 0)
        x->failed = true;
}

static void x_attr_int(struct xw *x, const char *name, int64_t v)
{
    char t[24];
    snprintf(t, sizeof(t), "%" PRId64, v);
    x_attr(x, name, t);
}

static void x_text_el(struct xw *x, const char *name, const char *text)
{
    if (xmlTextWriterWriteElement(x->w, BAD_CAST name, BAD_CAST text) < 0)
        x->failed = true;
}

static void x_empty(struct xw *x, const char *name)
{
    x_start(x, name);
    x_end(x);
}

static bool meta_ok(const struct vmxml_meta *m)
{
    return m && uuid_is_valid(m->vm_id) && m->name && vmxml_text_ok(m->name) &&
           strlen(m->name) <= 1024 && m->reboot_gen >= 0 &&
           m->start_gen >= 0 && m->place_gen >= 0 && m->disk_gib >= 0 &&
           m->revert_gen >= 0 &&
           (m->spec[0] == '\0' || is_hex(m->spec, 64));
}

/* Inside a domain the element carries its namespace; virDomainSetMetadata()
 * takes it bare and adds the namespace itself. */
static void write_meta(struct xw *x, const struct vmxml_meta *m, bool ns)
{
    if (ns ? xmlTextWriterStartElementNS(x->w, BAD_CAST VMXML_NS_PREFIX,
                                         BAD_CAST "vm",
                                         BAD_CAST VMXML_NS_URI) < 0 :
             xmlTextWriterStartElement(x->w, BAD_CAST "vm") < 0)
        x->failed = true;
    x_attr(x, "id", m->vm_id);
    x_attr(x, "name", m->name);
    x_attr(x, "power", m->power_running ? "running" : "stopped");
    x_attr_int(x, "reboot-gen", m->reboot_gen);
    x_attr_int(x, "start-gen", m->start_gen);
    x_attr_int(x, "place-gen", m->place_gen);
    x_attr_int(x, "disk-gib", m->disk_gib);
    x_attr_int(x, "revert-gen", m->revert_gen);
    x_attr(x, "spec", m->spec);
    x_end(x);
}

/* Run `body` against a fresh in-memory writer; hand out the document. */
static int with_writer(void (*body)(struct xw *, const void *), const void *arg,
                       char **ret_xml)
{
    xmlBufferPtr buf = xmlBufferCreate();
    if (!buf)
        abort();
    struct xw x = { xmlNewTextWriterMemory(buf, 0), false };
    if (!x.w)
        abort();
    xmlTextWriterSetIndent(x.w, 1);
    xmlTextWriterSetIndentString(x.w, BAD_CAST "  ");
    body(&x, arg);
    if (xmlTextWriterEndDocument(x.w) < 0)
        x.failed = true;
    xmlFreeTextWriter(x.w);
    if (x.failed) {
        xmlBufferFree(buf);
        return -EINVAL;
    }
    *ret_xml = xstrdup((const char *)xmlBufferContent(buf));
    xmlBufferFree(buf);
    return 0;
}

static void meta_body(struct xw *x, const void *arg)
{
    write_meta(x, arg, false);
}

int vmxml_meta_build(const struct vmxml_meta *m, char **ret_xml)
{
    if (!meta_ok(m))
        return -EINVAL;
    return with_writer(meta_body, m, ret_xml);
}

/* cputune, numatune and memoryBacking of a GPU VM: vCPUs and the emulator
 * on the GPUs' NUMA-local CPUs, memory on their node. */
static void write_pinning(struct xw *x, const struct vmxml_spec *s)
{
    if (s->hugepages) {
        x_start(x, "memoryBacking");
        x_empty(x, "hugepages");
        x_end(x);
    }
    if (s->cpuset) {
        x_start(x, "cputune");
        for (int64_t v = 0; v < s->vcpus; v++) {
            x_start(x, "vcpupin");
            x_attr_int(x, "vcpu", v);
            x_attr(x, "cpuset", s->cpuset);
            x_end(x);
        }
        x_start(x, "emulatorpin");
        x_attr(x, "cpuset", s->cpuset);
        x_end(x);
        x_end(x);
    }
    if (s->nodeset) {
        x_start(x, "numatune");
        x_start(x, "memory");
        x_attr(x, "mode", "strict");
        x_attr(x, "nodeset", s->nodeset);
        x_end(x);
        x_end(x);
    }
}

static void x_attr_hex(struct xw *x, const char *name, const char *digits,
                       size_t n)
{
    char v[8];
    snprintf(v, sizeof(v), "0x%.*s", (int)n, digits);
    x_attr(x, name, v);
}

/* One PCIe root port per card (indexes 1..n, bus 0 being pcie-root) and a
 * managed hostdev per function, the card's functions sharing one guest slot
 * as on the real card. */
static void write_hostdevs(struct xw *x, const struct vmxml_spec *s)
{
    for (size_t i = 0; i < s->n_gpus; i++) {
        x_start(x, "controller");
        x_attr(x, "type", "pci");
        x_attr_int(x, "index", (int64_t)i + 1);
        x_attr(x, "model", "pcie-root-port");
        x_end(x);
    }
    for (size_t i = 0; i < s->n_gpus; i++) {
        const struct vmxml_gpu *g = &s->gpus[i];
        for (size_t k = 0; k < g->n_functions; k++) {
            const char *a = g->functions[k];
            char bus[24], fn[24];
            x_start(x, "hostdev");
            x_attr(x, "mode", "subsystem");
            x_attr(x, "type", "pci");
            x_attr(x, "managed", "yes");
            x_start(x, "driver");
            x_attr(x, "name", "vfio");
            x_end(x);
            x_start(x, "source");
            x_start(x, "address");
            x_attr_hex(x, "domain", a, 4);
            x_attr_hex(x, "bus", a + 5, 2);
            x_attr_hex(x, "slot", a + 8, 2);
            x_attr_hex(x, "function", a + 11, 1);
            x_end(x);
            x_end(x);
            if (k == 0 && g->rom_file) {
                x_start(x, "rom");
                x_attr(x, "file", g->rom_file);
                x_end(x);
            }
            x_start(x, "address");
            x_attr(x, "type", "pci");
            x_attr(x, "domain", "0x0000");
            snprintf(bus, sizeof(bus), "0x%02zx", i + 1);
            x_attr(x, "bus", bus);
            x_attr(x, "slot", "0x00");
            snprintf(fn, sizeof(fn), "0x%zx", k);
            x_attr(x, "function", fn);
            if (k == 0 && g->n_functions > 1)
                x_attr(x, "multifunction", "on");
            x_end(x);
            x_end(x);
        }
    }
}

bool vmxml_cpuset_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 4096)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == ',' || *p == '-'))
            return false;
    return s[0] != ',' && s[0] != '-';
}

bool vmxml_pci_addr_ok(const char *s)
{
    return am_pci_addr_ok(s);
}

static bool gpus_ok(const struct vmxml_spec *s)
{
    if (s->n_gpus > 16 || (s->cpuset && !vmxml_cpuset_ok(s->cpuset)) ||
        (s->nodeset && !vmxml_cpuset_ok(s->nodeset)))
        return false;
    for (size_t i = 0; i < s->n_gpus; i++) {
        const struct vmxml_gpu *g = &s->gpus[i];
        if (g->n_functions < 1 || g->n_functions > 8 ||
            (g->rom_file && !path_ok(g->rom_file)))
            return false;
        for (size_t k = 0; k < g->n_functions; k++)
            if (!vmxml_pci_addr_ok(g->functions[k]))
                return false;
    }
    return true;
}

/* <memory> in MiB and <vcpu>. */
static void write_size(struct xw *x, int64_t memory_mib, int64_t vcpus)
{
    char num[24];
    x_start(x, "memory");
    x_attr(x, "unit", "MiB");
    snprintf(num, sizeof(num), "%" PRId64, memory_mib);
    if (xmlTextWriterWriteString(x->w, BAD_CAST num) < 0)
        x->failed = true;
    x_end(x);
    snprintf(num, sizeof(num), "%" PRId64, vcpus);
    x_text_el(x, "vcpu", num);
}

/* Serial port 0: a pty whose output libvirt also writes to `log`. */
static void write_serial(struct xw *x, const char *log, bool append)
{
    x_start(x, "serial");
    x_attr(x, "type", "pty");
    x_start(x, "log");
    x_attr(x, "file", log);
    x_attr(x, "append", append ? "on" : "off");
    x_end(x);
    x_start(x, "target");
    x_attr(x, "port", "0");
    x_end(x);
    x_end(x);
}

static void domain_body(struct xw *x, const void *arg)
{
    const struct vmxml_spec *s = arg;
    const char *arch = s->arch ? s->arch : "x86_64";
    bool x86 = streq(arch, "x86_64") || streq(arch, "i686");
    _cleanup_free_ char *name = vmxml_domain_name(s->meta->vm_id);

    x_start(x, "domain");
    x_attr(x, "type", s->kvm ? "kvm" : "qemu");
    x_text_el(x, "name", name);
    x_text_el(x, "uuid", s->meta->vm_id);
    x_text_el(x, "title", s->meta->name);
    x_start(x, "metadata");
    write_meta(x, s->meta, true);
    x_end(x);
    char num[24];
    write_size(x, s->memory_mib, s->vcpus);
    const struct vmxml_limits *l = s->limits;
    if (l && (l->cpu_shares > 0 || l->cpu_cap_pct > 0)) {
        x_start(x, "cputune");
        if (l->cpu_shares > 0) {
            snprintf(num, sizeof(num), "%" PRId64, l->cpu_shares * s->vcpus);
            x_text_el(x, "shares", num);
        }
        if (l->cpu_cap_pct > 0) {
            /* The quota is per vCPU thread, in microseconds a period. */
            x_text_el(x, "period", "100000");
            snprintf(num, sizeof(num), "%" PRId64, l->cpu_cap_pct * 1000);
            x_text_el(x, "quota", num);
        }
        x_end(x);
    }

    x_start(x, "os");
    x_start(x, "type");
    x_attr(x, "arch", arch);
    if (streq(arch, "aarch64"))
        x_attr(x, "machine", "virt");
    else if (s->n_gpus > 0)
        x_attr(x, "machine", "q35");
    if (xmlTextWriterWriteString(x->w, BAD_CAST "hvm") < 0)
        x->failed = true;
    x_end(x);
    x_start(x, "boot");
    x_attr(x, "dev", "hd");
    x_end(x);
    x_end(x);

    write_pinning(x, s);
    x_start(x, "features");
    x_empty(x, "acpi");
    if (x86)
        x_empty(x, "apic");
    if (s->hide_kvm) {
        x_start(x, "kvm");
        x_start(x, "hidden");
        x_attr(x, "state", "on");
        x_end(x);
        x_end(x);
    }
    x_end(x);
    if (s->kvm) {
        x_start(x, "cpu");
        x_attr(x, "mode", "host-passthrough");
        x_end(x);
    }
    x_start(x, "clock");
    x_attr(x, "offset", "utc");
    x_end(x);
    /* A guest poweroff or crash leaves the domain shut off for the agent to
     * report; a guest reboot stays a reboot. */
    x_text_el(x, "on_poweroff", "destroy");
    x_text_el(x, "on_reboot", "restart");
    x_text_el(x, "on_crash", "destroy");

    x_start(x, "devices");
    if (!s->kvm) {
        x_start(x, "controller");
        x_attr(x, "type", "usb");
        x_attr(x, "model", "none");
        x_end(x);
    }
    x_start(x, "disk");
    x_attr(x, "type", "file");
    x_attr(x, "device", "disk");
    x_start(x, "driver");
    x_attr(x, "name", "qemu");
    x_attr(x, "type", "qcow2");
    x_attr(x, "discard", "unmap");
    x_end(x);
    x_start(x, "source");
    x_attr(x, "file", s->disk_path);
    x_end(x);
    x_start(x, "target");
    x_attr(x, "dev", "vda");
    x_attr(x, "bus", "virtio");
    x_end(x);
    if (l && (l->disk_iops > 0 || l->disk_bytes_sec > 0)) {
        x_start(x, "iotune");
        if (l->disk_bytes_sec > 0) {
            snprintf(num, sizeof(num), "%" PRId64, l->disk_bytes_sec);
            x_text_el(x, "total_bytes_sec", num);
        }
        if (l->disk_iops > 0) {
            snprintf(num, sizeof(num), "%" PRId64, l->disk_iops);
            x_text_el(x, "total_iops_sec", num);
        }
        x_end(x);
    }
    x_end(x);
    if (s->seed_path) {
        x_start(x, "disk");
        x_attr(x, "type", "file");
        x_attr(x, "device", "disk");
        x_start(x, "driver");
        x_attr(x, "name", "qemu");
        x_attr(x, "type", "raw");
        x_end(x);
        x_start(x, "source");
        x_attr(x, "file", s->seed_path);
        x_end(x);
        x_start(x, "target");
        x_attr(x, "dev", "vdb");
        x_attr(x, "bus", "virtio");
        x_end(x);
        x_empty(x, "readonly");
        x_end(x);
    }
    for (size_t i = 0; i < s->n_nics; i++) {
        const struct vmxml_nic *n = &s->nics[i];
        x_start(x, "interface");
        x_attr(x, "type", "bridge");
        x_start(x, "mac");
        x_attr(x, "address", n->mac);
        x_end(x);
        x_start(x, "source");
        x_attr(x, "bridge", n->bridge);
        x_end(x);
        if (n->tap) {
            x_start(x, "target");
            x_attr(x, "dev", n->tap);
            x_end(x);
        }
        x_start(x, "model");
        x_attr(x, "type", "virtio");
        x_end(x);
        if (!s->kvm) {
            x_start(x, "rom");
            x_attr(x, "enabled", "no");
            x_end(x);
        }
        if (n->mtu > 0) {
            x_start(x, "mtu");
            x_attr_int(x, "size", n->mtu);
            x_end(x);
        }
        if (l && l->net_kbps > 0) {
            x_start(x, "bandwidth");
            x_start(x, "inbound");
            x_attr_int(x, "average", l->net_kbps);
            x_end(x);
            x_start(x, "outbound");
            x_attr_int(x, "average", l->net_kbps);
            x_end(x);
            x_end(x);
        }
        x_end(x);
    }
    /* The serial console is a pty (interactive) whose output libvirt also
     * appends to a log file that the API serves. */
    write_serial(x, s->console_log, true);
    x_start(x, "console");
    x_attr(x, "type", "pty");
    x_start(x, "target");
    x_attr(x, "type", "serial");
    x_attr(x, "port", "0");
    x_end(x);
    x_end(x);
    x_start(x, "rng");
    x_attr(x, "model", "virtio");
    x_start(x, "backend");
    x_attr(x, "model", "random");
    if (xmlTextWriterWriteString(x->w, BAD_CAST "/dev/urandom") < 0)
        x->failed = true;
    x_end(x);
    x_end(x);
    write_hostdevs(x, s);
    x_start(x, "memballoon");
    x_attr(x, "model", s->kvm ? "virtio" : "none");
    x_end(x);
    x_end(x); /* devices */
    x_end(x); /* domain */
}

int vmxml_build(const struct vmxml_spec *s, char **ret_xml)
{
    if (!s || !meta_ok(s->meta) || s->vcpus < 1 || s->vcpus > 4096 ||
        s->memory_mib < 16 || s->memory_mib > (INT64_C(1) << 32) ||
        !path_ok(s->disk_path) || !path_ok(s->console_log) ||
        (s->seed_path && !path_ok(s->seed_path)) ||
        (s->arch && !net_ifname_ok(s->arch)) || s->n_nics > 64 ||
        !gpus_ok(s))
        return -EINVAL;
    const struct vmxml_limits *l = s->limits;
    if (l && (l->cpu_shares < 0 || l->cpu_shares > 10000 ||
              l->cpu_cap_pct < 0 || l->cpu_cap_pct > 100 ||
              l->disk_iops < 0 || l->disk_iops > 1000000 ||
              l->disk_bytes_sec < 0 || l->disk_bytes_sec > (INT64_C(1) << 40) ||
              l->net_kbps < 0 || l->net_kbps > 100000000))
        return -EINVAL;
    for (size_t i = 0; i < s->n_nics; i++)
        if (!net_mac_ok(s->nics[i].mac) ||
            !net_ifname_ok(s->nics[i].bridge) ||
            (s->nics[i].tap && !net_ifname_ok(s->nics[i].tap)) ||
            s->nics[i].mtu < 0 ||
            (s->nics[i].mtu > 0 && (s->nics[i].mtu < 68 ||
                                    s->nics[i].mtu > 65535)))
            return -EINVAL;
    return with_writer(domain_body, s, ret_xml);
}

static char *attr_dup(xmlNodePtr n, const char *name)
{
    xmlChar *v = xmlGetProp(n, BAD_CAST name);
    if (!v)
        return NULL;
    char *s = xstrdup((const char *)v);
    xmlFree(v);
    return s;
}

static bool attr_int(xmlNodePtr n, const char *name, int64_t *ret)
{
    _cleanup_free_ char *v = attr_dup(n, name);
    return v && parse_int64(v, 0, INT64_MAX, ret) == 0;
}

int vmxml_meta_parse(const char *xml, struct vmxml_meta *ret)
{
    if (!xml)
        return -EINVAL;
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "metadata.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR |
                                  XML_PARSE_NOWARNING);
    if (!doc)
        return -EINVAL;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    /* A domain an agent made before placements had generations: unknown,
     * adopted as it is (never fenced for lacking one). */
    struct vmxml_meta m = { .place_gen = -1 };
    _cleanup_free_ char *id = NULL, *power = NULL, *spec = NULL, *sg = NULL,
                        *pg = NULL, *rg = NULL;
    int r = -EINVAL;
    if (!root || !xmlStrEqual(root->name, BAD_CAST "vm"))
        goto out;
    id = attr_dup(root, "id");
    sg = attr_dup(root, "start-gen");
    pg = attr_dup(root, "place-gen");
    rg = attr_dup(root, "revert-gen");
    power = attr_dup(root, "power");
    spec = attr_dup(root, "spec");
    m.name = attr_dup(root, "name");
    if (!uuid_is_valid(id) || !m.name ||
        !(streq(power, "running") || streq(power, "stopped")) ||
        !attr_int(root, "reboot-gen", &m.reboot_gen) ||
        !attr_int(root, "disk-gib", &m.disk_gib) ||
        (sg && !attr_int(root, "start-gen", &m.start_gen)) ||
        (pg && !attr_int(root, "place-gen", &m.place_gen)) ||
        (rg && !attr_int(root, "revert-gen", &m.revert_gen)) ||
        (spec && *spec && !(strlen(spec) == 64 && is_hex(spec, 64)))) {
        free(m.name);
        goto out;
    }
    memcpy(m.vm_id, id, sizeof(m.vm_id));
    m.power_running = streq(power, "running");
    if (spec)
        snprintf(m.spec, sizeof(m.spec), "%s", spec);
    *ret = m;
    r = 0;
out:
    xmlFreeDoc(doc);
    return r;
}

void vmxml_meta_clear(struct vmxml_meta *m)
{
    free(m->name);
    m->name = NULL;
}

void vmxml_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static bool hex_attr(xmlNodePtr n, const char *name, unsigned max,
                     unsigned *ret)
{
    _cleanup_free_ char *v = attr_dup(n, name);
    char *end;
    if (!v || !startswith(v, "0x"))
        return false;
    errno = 0;
    unsigned long u = strtoul(v + 2, &end, 16);
    if (errno || end == v + 2 || *end || u > max)
        return false;
    *ret = (unsigned)u;
    return true;
}

/* A domain XML read without the network, or NULL. One with a document
 * type declaration is refused: libvirt never writes one, and attribute
 * reads would expand its entities (XML_PARSE_NOENT or not). */
static xmlDocPtr domain_read(const char *xml)
{
    if (!xml || strlen(xml) > INT32_MAX)
        return NULL;
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR |
                                  XML_PARSE_NOWARNING);
    if (doc && (doc->intSubset || doc->extSubset)) {
        xmlFreeDoc(doc);
        doc = NULL;
    }
    return doc;
}

/* Element children of `parent` named `name`, one after another. */
static xmlNodePtr child_next(xmlNodePtr parent, xmlNodePtr after,
                             const char *name)
{
    for (xmlNodePtr c = after ? after->next : parent ? parent->children : NULL;
         c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST name))
            return c;
    return NULL;
}

/* Attribute `attr` of the first child `el` of n when it passes
 * am_iface_text_ok, else NULL (caller frees). */
static char *iface_attr(xmlNodePtr n, const char *el, const char *attr)
{
    xmlNodePtr c = child_next(n, NULL, el);
    char *v = c ? attr_dup(c, attr) : NULL;
    if (v && !am_iface_text_ok(v)) {
        free(v);
        v = NULL;
    }
    return v;
}

int vmxml_ifaces_parse(const char *xml, struct am_iface **ret, size_t *ret_n)
{
    xmlDocPtr doc = domain_read(xml);
    if (!doc)
        return -EINVAL;
    struct am_iface *v = NULL;
    size_t n = 0;
    xmlNodePtr devs = child_next(xmlDocGetRootElement(doc), NULL, "devices");
    for (xmlNodePtr i = child_next(devs, NULL, "interface");
         i && n < AGENT_VM_NICS_MAX; i = child_next(devs, i, "interface")) {
        struct am_iface f = { .type = attr_dup(i, "type"),
                              .mac = iface_attr(i, "mac", "address") };
        if (!am_iface_text_ok(f.type) || !am_mac_ok(f.mac)) {
            free(f.type);
            free(f.mac);
            continue;
        }
        f.target = iface_attr(i, "target", "dev");
        /* The source's attribute is named after the type (bridge=,
         * network=, dev= for direct and ethernet). */
        f.source = iface_attr(i, "source", f.type);
        if (!f.source)
            f.source = iface_attr(i, "source", "dev");
        f.model = iface_attr(i, "model", "type");
        v = xrealloc(v, (n + 1) * sizeof(*v));
        v[n++] = f;
    }
    xmlFreeDoc(doc);
    *ret = v;
    *ret_n = n;
    return 0;
}

int vmxml_hostdevs_parse(const char *xml, char ***ret)
{
    xmlDocPtr doc = domain_read(xml);
    if (!doc)
        return -EINVAL;
    char **v = xcalloc(1, sizeof(*v));
    size_t n = 0;
    int r = 0;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    for (xmlNodePtr d = root ? root->children : NULL; d; d = d->next) {
        if (d->type != XML_ELEMENT_NODE ||
            !xmlStrEqual(d->name, BAD_CAST "devices"))
            continue;
        for (xmlNodePtr h = d->children; h; h = h->next) {
            if (h->type != XML_ELEMENT_NODE ||
                !xmlStrEqual(h->name, BAD_CAST "hostdev"))
                continue;
            /* USB and mediated devices have addresses of other shapes. */
            xmlChar *type = xmlGetProp(h, BAD_CAST "type");
            bool pci = type && xmlStrEqual(type, BAD_CAST "pci");
            xmlFree(type);
            if (!pci)
                continue;
            for (xmlNodePtr src = h->children; src; src = src->next) {
                if (src->type != XML_ELEMENT_NODE ||
                    !xmlStrEqual(src->name, BAD_CAST "source"))
                    continue;
                for (xmlNodePtr a = src->children; a; a = a->next) {
                    unsigned dom, bus, slot, fn;
                    if (a->type != XML_ELEMENT_NODE ||
                        !xmlStrEqual(a->name, BAD_CAST "address"))
                        continue;
                    if (!hex_attr(a, "domain", 0xffff, &dom) ||
                        !hex_attr(a, "bus", 0xff, &bus) ||
                        !hex_attr(a, "slot", 0x1f, &slot) ||
                        !hex_attr(a, "function", 7, &fn)) {
                        r = -EINVAL;
                        goto out;
                    }
                    v = xrealloc(v, (n + 2) * sizeof(*v));
                    v[n++] = xasprintf("%04x:%02x:%02x.%x", dom, bus, slot,
                                       fn);
                    v[n] = NULL;
                }
            }
        }
    }
out:
    xmlFreeDoc(doc);
    if (r < 0) {
        vmxml_strv_free(v);
        return r;
    }
    *ret = v;
    return 0;
}

static void probe_body(struct xw *x, const void *arg)
{
    const struct vmxml_probe *p = arg;
    x_start(x, "domain");
    x_attr(x, "type", p->kvm ? "kvm" : "qemu");
    x_text_el(x, "name", p->name);
    write_size(x, p->memory_mib, p->vcpus);
    x_start(x, "os");
    x_start(x, "type");
    x_attr(x, "arch", "x86_64");
    if (xmlTextWriterWriteString(x->w, BAD_CAST "hvm") < 0)
        x->failed = true;
    x_end(x);
    x_text_el(x, "kernel", p->kernel);
    x_text_el(x, "initrd", p->initrd);
    x_text_el(x, "cmdline", p->cmdline);
    x_end(x);
    /* ACPI: the guest sees every vCPU and powers itself off. */
    x_start(x, "features");
    x_empty(x, "acpi");
    x_empty(x, "apic");
    x_end(x);
    if (p->kvm) {
        x_start(x, "cpu");
        x_attr(x, "mode", "host-passthrough");
        x_end(x);
    }
    x_text_el(x, "on_poweroff", "destroy");
    x_text_el(x, "on_reboot", "destroy");
    x_text_el(x, "on_crash", "destroy");
    x_start(x, "devices");
    write_serial(x, p->console_log, false);
    x_start(x, "memballoon");
    x_attr(x, "model", "none");
    x_end(x);
    x_end(x); /* devices */
    x_end(x); /* domain */
}

int vmxml_probe_build(const struct vmxml_probe *p, char **ret_xml)
{
    if (!p->name || !startswith(p->name, "fogbench-") ||
        !uuid_is_valid(p->name + strlen("fogbench-")) || p->vcpus < 1 ||
        p->vcpus > 64 || p->memory_mib < 32 || p->memory_mib > (1 << 20) ||
        !path_ok(p->kernel) || !path_ok(p->initrd) ||
        !path_ok(p->console_log) || !p->cmdline ||
        strlen(p->cmdline) > 1024 || !vmxml_text_ok(p->cmdline))
        return -EINVAL;
    return with_writer(probe_body, p, ret_xml);
}

struct snap_arg {
    const char *name, *id;
};

static void snapshot_body(struct xw *x, const void *arg)
{
    const struct snap_arg *a = arg;
    _cleanup_free_ char *desc = xasprintf(VMXML_SNAPSHOT_TAG "%s", a->id);
    x_start(x, "domainsnapshot");
    x_text_el(x, "name", a->name);
    x_text_el(x, "description", desc);
    x_end(x);
}

int vmxml_snapshot_build(const char *name, const char *id, char **ret_xml)
{
    if (!name_is_valid(name) || !uuid_is_valid(id))
        return -EINVAL;
    struct snap_arg a = { name, id };
    return with_writer(snapshot_body, &a, ret_xml);
}

/* The text of root's child element `name`, or NULL; caller frees. */
static char *child_text(xmlNodePtr root, const char *name)
{
    for (xmlNodePtr c = root->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && xmlStrEqual(c->name, BAD_CAST name)) {
            xmlChar *t = xmlNodeGetContent(c);
            char *r = t ? xstrdup((const char *)t) : NULL;
            xmlFree(t);
            return r;
        }
    return NULL;
}

int vmxml_snapshot_parse(const char *xml, struct vmxml_snap *ret)
{
    if (!xml)
        return -EINVAL;
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "snapshot.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR |
                                  XML_PARSE_NOWARNING | XML_PARSE_HUGE);
    if (!doc)
        return -EINVAL;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    int r = -EINVAL;
    _cleanup_free_ char *name = NULL, *desc = NULL, *state = NULL,
                        *created = NULL;
    if (!root || !xmlStrEqual(root->name, BAD_CAST "domainsnapshot"))
        goto out;
    name = child_text(root, "name");
    desc = child_text(root, "description");
    state = child_text(root, "state");
    created = child_text(root, "creationTime");
    r = -ENOENT;
    if (!desc || !startswith(desc, VMXML_SNAPSHOT_TAG) ||
        !uuid_is_valid(desc + strlen(VMXML_SNAPSHOT_TAG)) ||
        !name_is_valid(name))
        goto out;
    struct vmxml_snap s = { .checkpoint = state && !streq(state, "shutoff") };
    if (created && parse_int64(created, 0, INT64_MAX, &s.created_at) < 0)
        s.created_at = 0;
    snprintf(s.id, sizeof(s.id), "%s", desc + strlen(VMXML_SNAPSHOT_TAG));
    s.name = TAKE_PTR(name);
    *ret = s;
    r = 0;
out:
    xmlFreeDoc(doc);
    return r;
}

void vmxml_snapshot_clear(struct vmxml_snap *s)
{
    free(s->name);
    s->name = NULL;
}
