/* GPU inventory from sysfs (through a root prefix) and names from pci.ids
 * through libpci. Nothing here writes to sysfs: binding to vfio-pci is
 * libvirt's managed hostdev's job. */
#include "nodeagent/gpu.h"

#include "api/agentproto.h"
#include "common/fs.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <pci/pci.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define PCI_DEVICES "/sys/bus/pci/devices"
#define IOMMU_GROUPS "/sys/kernel/iommu_groups"

/* ---- names through libpci ---------------------------------------------- */

/* libpci parses all of pci.ids into its heap on the first lookup (about
 * 2 MiB, held until pci_cleanup): the names found are kept here instead,
 * and the database is let go at the end of each inventory. */
#define PCI_NAMES_MAX 256 /* distinct vendor:device pairs remembered */

struct pci_name {
    uint16_t vendor, device;
    char *vendor_name, *device_name;
};

static pthread_mutex_t pci_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pci_access *pci_acc;
static struct pci_name pci_names[PCI_NAMES_MAX];
static size_t n_pci_names;

static void pci_quiet(char *msg, ...) { (void)msg; }

void gpu_pci_names(uint16_t vendor, uint16_t device, char **ret_vendor,
                   char **ret_device)
{
    pthread_mutex_lock(&pci_lock);
    const struct pci_name *c = NULL;
    for (size_t i = 0; i < n_pci_names && !c; i++)
        if (pci_names[i].vendor == vendor && pci_names[i].device == device)
            c = &pci_names[i];
    if (c) {
        *ret_vendor = xstrdup(c->vendor_name);
        if (ret_device)
            *ret_device = xstrdup(c->device_name);
        pthread_mutex_unlock(&pci_lock);
        return;
    }
    if (!pci_acc) {
        /* No pci_init(): only the name database is used, never the bus. */
        pci_acc = pci_alloc();
        pci_acc->warning = pci_quiet;
        pci_acc->debug = pci_quiet;
    }
    char vb[256], db[512];
    const char *v = pci_lookup_name(pci_acc, vb, sizeof(vb),
                                    PCI_LOOKUP_VENDOR | PCI_LOOKUP_NO_NUMBERS |
                                    PCI_LOOKUP_NO_HWDB, vendor);
    const char *d = pci_lookup_name(pci_acc, db, sizeof(db),
                                    PCI_LOOKUP_DEVICE | PCI_LOOKUP_NO_NUMBERS |
                                    PCI_LOOKUP_NO_HWDB, vendor, device);
    *ret_vendor = xstrdup(v ? v : "");
    if (ret_device)
        *ret_device = xstrdup(d ? d : "");
    if (n_pci_names < PCI_NAMES_MAX)
        pci_names[n_pci_names++] = (struct pci_name){
            vendor, device, xstrdup(v ? v : ""), xstrdup(d ? d : "")
        };
    pthread_mutex_unlock(&pci_lock);
}

/* Let go of libpci's copy of pci.ids, and of the heap pages it held. */
static void pci_names_release(void)
{
    pthread_mutex_lock(&pci_lock);
    if (pci_acc) {
        pci_cleanup(pci_acc);
        pci_acc = NULL;
        malloc_trim(0);
    }
    pthread_mutex_unlock(&pci_lock);
}

char *gpu_model_of(const char *device_name, uint16_t vendor, uint16_t device)
{
    const char *s = device_name ? device_name : "", *e;
    const char *lb = strchr(s, '['), *rb = lb ? strchr(lb, ']') : NULL;
    if (lb && rb)
        s = lb + 1, e = rb;
    else
        e = s + strlen(s);
    char *m = xmalloc((size_t)(e - s) + 1), *p = m;
    for (; s < e && p - m < 64; s++)
        if (isalnum((unsigned char)*s) || *s == '-' || *s == '.' || *s == '_')
            *p++ = *s;
    *p = '\0';
    if (!*m) {
        free(m);
        return xasprintf("%04x:%04x", vendor, device);
    }
    return m;
}

/* ---- sysfs reading ------------------------------------------------------ */

/* Contents of ROOT/sys/bus/pci/devices/ADDR/ATTR without trailing space,
 * or NULL. */
static char *dev_attr(const char *root, const char *addr, const char *attr)
{
    _cleanup_free_ char *rel = xasprintf(PCI_DEVICES "/%s/%s", addr, attr);
    _cleanup_free_ char *path = path_join_root(root, rel);
    char *s = NULL;
    if (file_read(path, 65536, &s, NULL) < 0)
        return NULL;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static bool dev_hex(const char *root, const char *addr, const char *attr,
                    uint32_t max, uint32_t *ret)
{
    _cleanup_free_ char *s = dev_attr(root, addr, attr);
    if (!s)
        return false;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 16);
    if (errno || end == s || *end || v > max)
        return false;
    *ret = (uint32_t)v;
    return true;
}

/* Last path component of the symlink ROOT/.../ADDR/LINK, or NULL. */
static char *dev_link_name(const char *root, const char *addr,
                           const char *link)
{
    _cleanup_free_ char *rel = xasprintf(PCI_DEVICES "/%s/%s", addr, link);
    _cleanup_free_ char *path = path_join_root(root, rel);
    char buf[PATH_MAX];
    ssize_t n = readlink(path, buf, sizeof(buf) - 1);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    const char *b = strrchr(buf, '/');
    return xstrdup(b ? b + 1 : buf);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in directory ROOT/REL that pass `keep` (NULL: all but dot
 * entries). -errno when the directory cannot be read. */
static int list_dir(const char *root, const char *rel,
                    bool (*keep)(const char *), char ***ret, size_t *ret_n)
{
    _cleanup_free_ char *path = path_join_root(root, rel);
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    char **v = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || (keep && !keep(de->d_name)))
            continue;
        v = xrealloc(v, (n + 1) * sizeof(*v));
        v[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof(*v), cmp_str);
    *ret = v;
    *ret_n = n;
    return 0;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static bool same_slot(const char *a, const char *b)
{
    return strncmp(a, b, 10) == 0; /* "dddd:bb:ss" */
}

/* A driver that holds the device for the host: it drives the console
 * (boot_vga) or its module is in use. vfio-pci and pci-stub hold nothing. */
static char *driver_in_use(const char *root, const char *addr,
                           const char *driver)
{
    if (!*driver || streq(driver, "vfio-pci") || streq(driver, "pci-stub"))
        return NULL;
    _cleanup_free_ char *boot = dev_attr(root, addr, "boot_vga");
    if (boot && streq(boot, "1"))
        return xasprintf("%s is the host's boot display (driver '%s')", addr,
                         driver);
    _cleanup_free_ char *rel = xasprintf("/sys/module/%s/refcnt", driver);
    _cleanup_free_ char *path = path_join_root(root, rel);
    _cleanup_free_ char *ref = NULL;
    int64_t n;
    if (file_read(path, 64, &ref, NULL) == 0 &&
        parse_int64(strtok(ref, " \n"), 0, INT64_MAX, &n) == 0 && n > 0)
        return xasprintf("%s is in use by host driver '%s' (module refcount "
                         "%lld)", addr, driver, (long long)n);
    return NULL;
}

static void gpu_fill_group(const char *root, struct gpu *g, bool iommu)
{
    _cleanup_free_ char *grp = dev_link_name(root, g->addr, "iommu_group");
    int64_t n;
    if (!iommu) {
        g->reason = xstrdup("the IOMMU is off (no groups in "
                            "/sys/kernel/iommu_groups): enable VT-d/AMD-Vi "
                            "and intel_iommu=on or amd_iommu=on");
        return;
    }
    if (!grp || parse_int64(grp, 0, INT_MAX, &n) < 0) {
        g->reason = xasprintf("%s is in no IOMMU group", g->addr);
        return;
    }
    g->iommu_group = (int)n;
    _cleanup_free_ char *rel = xasprintf(IOMMU_GROUPS "/%lld/devices",
                                         (long long)n);
    if (list_dir(root, rel, vmxml_pci_addr_ok, &g->group, &g->n_group) < 0) {
        g->reason = xasprintf("cannot read IOMMU group %lld", (long long)n);
        return;
    }
    g->isolatable = true;
    for (size_t i = 0; i < g->n_group; i++) {
        uint32_t cls = 0;
        if (same_slot(g->group[i], g->addr))
            continue;
        dev_hex(root, g->group[i], "class", 0xffffff, &cls);
        if ((cls >> 8) == 0x0604) /* PCI bridge */
            continue;
        g->isolatable = false;
        g->reason = xasprintf("IOMMU group %d also holds %s (class 0x%06x), "
                              "which is not part of the card: VFIO needs the "
                              "whole group", g->iommu_group, g->group[i], cls);
        return;
    }
}

static void gpu_fill(const char *root, struct gpu *g, char **all, size_t n_all,
                     bool iommu)
{
    uint32_t v = 0;
    g->iommu_group = -1;
    g->numa_node = -1;
    if (dev_hex(root, g->addr, "vendor", 0xffff, &v))
        g->vendor = (uint16_t)v;
    if (dev_hex(root, g->addr, "device", 0xffff, &v))
        g->device = (uint16_t)v;
    if (dev_hex(root, g->addr, "subsystem_vendor", 0xffff, &v))
        g->subsys_vendor = (uint16_t)v;
    if (dev_hex(root, g->addr, "subsystem_device", 0xffff, &v))
        g->subsys_device = (uint16_t)v;
    gpu_pci_names(g->vendor, g->device, &g->vendor_name, &g->device_name);
    g->model = gpu_model_of(g->device_name, g->vendor, g->device);
    g->driver = dev_link_name(root, g->addr, "driver");
    if (!g->driver)
        g->driver = xstrdup("");
    _cleanup_free_ char *numa = dev_attr(root, g->addr, "numa_node");
    int64_t nn;
    if (numa && parse_int64(numa, -1, INT_MAX, &nn) == 0)
        g->numa_node = (int)nn;
    g->cpulist = dev_attr(root, g->addr, "local_cpulist");
    if (!g->cpulist)
        g->cpulist = xstrdup("");

    /* Functions of the card: the GPU first, then the slot's others. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n_all; i++) {
            if (!same_slot(all[i], g->addr) ||
                (pass == 0) != streq(all[i], g->addr))
                continue;
            g->functions = xrealloc(g->functions, (g->n_functions + 1) *
                                                      sizeof(*g->functions));
            struct gpu_fn *f = &g->functions[g->n_functions++];
            *f = (struct gpu_fn){ 0 };
            memcpy(f->addr, all[i], sizeof(f->addr));
            dev_hex(root, all[i], "class", 0xffffff, &f->class_code);
            if (dev_hex(root, all[i], "vendor", 0xffff, &v))
                f->vendor = (uint16_t)v;
            if (dev_hex(root, all[i], "device", 0xffff, &v))
                f->device = (uint16_t)v;
            f->driver = dev_link_name(root, all[i], "driver");
            if (!f->driver)
                f->driver = xstrdup("");
        }

    gpu_fill_group(root, g, iommu);
    /* Only the display function: companions (HDMI audio) are routinely
     * held by desktop sound servers and libvirt's managed hostdev detaches
     * them; a GPU driving the host is what must not be taken. */
    if (!g->reason)
        g->reason = driver_in_use(root, g->addr, g->driver);
}

static bool not_dot(const char *s) { return s[0] != '.'; }

int gpu_inventory_collect(const char *root, struct gpu_inventory *ret)
{
    struct gpu_inventory inv = { 0 };
    char **all = NULL, **groups = NULL;
    size_t n_all = 0, n_groups = 0;
    int r = list_dir(root, PCI_DEVICES, vmxml_pci_addr_ok, &all, &n_all);
    if (r == -ENOENT) {
        *ret = inv;
        return 0;
    }
    if (r < 0)
        return r;
    if (list_dir(root, IOMMU_GROUPS, not_dot, &groups, &n_groups) == 0) {
        inv.iommu = n_groups > 0;
        strv_free(groups, n_groups);
    }
    for (size_t i = 0; i < n_all; i++) {
        uint32_t cls;
        if (!dev_hex(root, all[i], "class", 0xffffff, &cls) ||
            (cls >> 16) != 0x03)
            continue;
        inv.gpus = xrealloc(inv.gpus, (inv.n + 1) * sizeof(*inv.gpus));
        struct gpu *g = &inv.gpus[inv.n++];
        *g = (struct gpu){ .class_code = cls };
        memcpy(g->addr, all[i], sizeof(g->addr));
        gpu_fill(root, g, all, n_all, inv.iommu);
    }
    strv_free(all, n_all);
    pci_names_release();
    *ret = inv;
    return 0;
}

void gpu_inventory_clear(struct gpu_inventory *inv)
{
    for (size_t i = 0; i < inv->n; i++) {
        struct gpu *g = &inv->gpus[i];
        free(g->vendor_name);
        free(g->device_name);
        free(g->model);
        for (size_t k = 0; k < g->n_functions; k++)
            free(g->functions[k].driver);
        free(g->functions);
        strv_free(g->group, g->n_group);
        free(g->cpulist);
        free(g->driver);
        free(g->reason);
    }
    free(inv->gpus);
    *inv = (struct gpu_inventory){ 0 };
}

const struct gpu *gpu_inventory_find(const struct gpu_inventory *inv,
                                     const char *addr)
{
    for (size_t i = 0; addr && i < inv->n; i++)
        if (streq(inv->gpus[i].addr, addr))
            return &inv->gpus[i];
    return NULL;
}

json_t *gpu_inventory_to_json(const struct gpu_inventory *inv)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < inv->n; i++) {
        const struct gpu *g = &inv->gpus[i];
        char id[16];
        json_t *fns = json_array(), *grp = json_array();
        for (size_t k = 0; k < g->n_functions; k++) {
            const struct gpu_fn *f = &g->functions[k];
            snprintf(id, sizeof(id), "%04x:%04x", f->vendor, f->device);
            json_array_append_new(fns, json_pack("{s:s, s:I, s:s, s:s}",
                                                 "address", f->addr, "class",
                                                 (json_int_t)f->class_code,
                                                 "id", id, "driver",
                                                 f->driver));
        }
        for (size_t k = 0; k < g->n_group; k++)
            json_array_append_new(grp, json_string(g->group[k]));
        snprintf(id, sizeof(id), "%04x:%04x", g->vendor, g->device);
        char sub[16];
        snprintf(sub, sizeof(sub), "%04x:%04x", g->subsys_vendor,
                 g->subsys_device);
        json_t *o = json_pack(
            "{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:o, s:b, s:I, s:s, "
            "s:s, s:b}",
            "address", g->addr, "id", id, "subsystem", sub, "vendor",
            g->vendor_name, "name", g->device_name, "model", g->model,
            "functions", fns, "iommu_group", (json_int_t)g->iommu_group,
            "group", grp, "isolatable", g->isolatable, "numa_node",
            (json_int_t)g->numa_node, "cpulist", g->cpulist, "driver",
            g->driver, "usable", g->reason == NULL);
        if (g->reason)
            json_object_set_new(o, "reason", json_string(g->reason));
        json_array_append_new(arr, o);
    }
    return arr;
}

/* Append item to a comma list unless it is there already. */
static void list_add(char **list, const char *item)
{
    if (*list) {
        _cleanup_free_ char *probe = xasprintf(",%s,", *list);
        _cleanup_free_ char *needle = xasprintf(",%s,", item);
        if (strstr(probe, needle))
            return;
        char *n = xasprintf("%s,%s", *list, item);
        free(*list);
        *list = n;
    } else {
        *list = xstrdup(item);
    }
}

int gpu_plan_build(const struct gpu_inventory *inv, const char *const *addrs,
                   size_t n, struct gpu_plan *ret)
{
    struct gpu_plan p = { .gpus = xcalloc(n ? n : 1, sizeof(*p.gpus)), .n = n };
    bool cpus_known = n > 0, nodes_known = n > 0;
    for (size_t i = 0; i < n; i++) {
        const struct gpu *g = gpu_inventory_find(inv, addrs[i]);
        int r = !g ? -ENODEV : g->reason ? -EBUSY : 0;
        if (r < 0) {
            gpu_plan_clear(&p);
            return r;
        }
        const char **fns = xcalloc(g->n_functions, sizeof(*fns));
        for (size_t k = 0; k < g->n_functions; k++)
            fns[k] = g->functions[k].addr;
        p.gpus[i] = (struct vmxml_gpu){ .functions = fns,
                                        .n_functions = g->n_functions };
        if (*g->cpulist)
            list_add(&p.cpuset, g->cpulist);
        else
            cpus_known = false;
        if (g->numa_node >= 0) {
            char node[16];
            snprintf(node, sizeof(node), "%d", g->numa_node);
            list_add(&p.nodeset, node);
        } else {
            nodes_known = false;
        }
    }
    if (!cpus_known) {
        free(p.cpuset);
        p.cpuset = NULL;
    }
    if (!nodes_known) {
        free(p.nodeset);
        p.nodeset = NULL;
    }
    *ret = p;
    return 0;
}

/* The domain in held that holds addr, or NULL. */
static const char *held_by(const struct gpu_held *held, size_t n,
                           const char *addr)
{
    for (size_t i = 0; i < n; i++)
        if (streq(held[i].addr, addr))
            return held[i].domain;
    return NULL;
}

static bool card_has_function(const struct gpu *g, const char *addr)
{
    for (size_t k = 0; k < g->n_functions; k++)
        if (streq(g->functions[k].addr, addr))
            return true;
    return false;
}

/* Why request q may not be passed through, or NULL. */
static char *request_refusal(const struct gpu_inventory *inv,
                             const struct gpu_request *q,
                             const struct gpu_request *earlier, size_t n_earlier,
                             const struct gpu_held *held, size_t n_held)
{
    if (!vmxml_pci_addr_ok(q->address))
        return xstrdup("a GPU address that is not a PCI address");
    const struct gpu *g = gpu_inventory_find(inv, q->address);
    if (!g)
        return xasprintf("%s is not a GPU of this node", q->address);
    for (size_t i = 0; i < n_earlier; i++)
        if (streq(earlier[i].address, q->address))
            return xasprintf("%s is assigned twice", q->address);
    for (size_t k = 0; k < q->n_functions; k++)
        if (!card_has_function(g, q->functions[k]))
            return xasprintf("%s is not a function of the card at %s",
                             vmxml_pci_addr_ok(q->functions[k]) ?
                                 q->functions[k] : "an address",
                             q->address);
    if (g->reason)
        return xasprintf("GPU %s is unusable: %s", q->address, g->reason);
    if (!inv->iommu || !g->isolatable)
        return xasprintf("GPU %s is unusable: its IOMMU group cannot be "
                         "isolated", q->address);
    const char *dom;
    for (size_t k = 0; k < g->n_functions; k++)
        if ((dom = held_by(held, n_held, g->functions[k].addr)))
            return xasprintf("GPU %s is in use: %s is passed through to "
                             "domain '%s'", q->address, g->functions[k].addr,
                             dom);
    for (size_t k = 0; k < g->n_group; k++)
        if ((dom = held_by(held, n_held, g->group[k])))
            return xasprintf("GPU %s is in use: %s of its IOMMU group %d is "
                             "passed through to domain '%s'", q->address,
                             g->group[k], g->iommu_group, dom);
    return NULL;
}

int gpu_plan_checked(const struct gpu_inventory *inv,
                     const struct gpu_request *req, size_t n,
                     const struct gpu_held *held, size_t n_held,
                     struct gpu_plan *ret, char **ret_reason)
{
    _cleanup_free_ const char **addrs = xcalloc(n + 1, sizeof(*addrs));
    for (size_t i = 0; i < n; i++) {
        char *why = request_refusal(inv, &req[i], req, i, held, n_held);
        if (why) {
            *ret_reason = why;
            return -EPERM;
        }
        addrs[i] = req[i].address;
    }
    /* Checked above: only usable GPUs of the inventory are left. */
    int r = gpu_plan_build(inv, addrs, n, ret);
    if (r < 0) {
        *ret_reason = xasprintf("cannot plan passthrough: %s", strerror(-r));
        return -EPERM;
    }
    return 0;
}

void gpu_plan_clear(struct gpu_plan *p)
{
    for (size_t i = 0; p->gpus && i < p->n; i++)
        free((void *)p->gpus[i].functions);
    free(p->gpus);
    free(p->cpuset);
    free(p->nodeset);
    *p = (struct gpu_plan){ 0 };
}

/* ---- cross-check with libvirt's node devices --------------------------- */

/* The integer of the first node matching expr under ctx (attribute or
 * text), base 0; false when absent or not a number in [0, max]. */
static bool xpath_uint(xmlXPathContextPtr ctx, const char *expr, long max,
                       long *ret)
{
    xmlXPathObjectPtr o = xmlXPathEvalExpression((const xmlChar *)expr, ctx);
    bool ok = false;
    if (o && o->nodesetval && o->nodesetval->nodeNr > 0) {
        xmlChar *t = xmlNodeGetContent(o->nodesetval->nodeTab[0]);
        char *end = NULL;
        errno = 0;
        long v = t ? strtol((const char *)t, &end, 0) : -1;
        ok = t && end != (char *)t && *end == '\0' && errno == 0 && v >= 0 &&
             v <= max;
        if (ok)
            *ret = v;
        xmlFree(t);
    }
    xmlXPathFreeObject(o);
    return ok;
}

int gpu_nodedev_parse(const char *xml, struct gpu_nodedev *ret)
{
    xmlDocPtr doc = xml ? xmlReadMemory(xml, (int)strlen(xml), "nodedev.xml",
                                        NULL, XML_PARSE_NONET |
                                                  XML_PARSE_NOERROR |
                                                  XML_PARSE_NOWARNING)
                        : NULL;
    if (!doc)
        return -EINVAL;
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    struct gpu_nodedev d = { .iommu_group = -1 };
    long dom, bus, slot, fn, ven, dev, grp;
    const char *cap = "/device/capability[@type='pci']";
    char expr[128];
#define CAP(x) (snprintf(expr, sizeof(expr), "%s/%s", cap, x), expr)
    int r = -EINVAL;
    if (ctx && xpath_uint(ctx, CAP("domain"), 0xffff, &dom) &&
        xpath_uint(ctx, CAP("bus"), 0xff, &bus) &&
        xpath_uint(ctx, CAP("slot"), 0x1f, &slot) &&
        xpath_uint(ctx, CAP("function"), 7, &fn) &&
        xpath_uint(ctx, CAP("vendor/@id"), 0xffff, &ven) &&
        xpath_uint(ctx, CAP("product/@id"), 0xffff, &dev)) {
        snprintf(d.addr, sizeof(d.addr), "%04lx:%02lx:%02lx.%lx", dom, bus,
                 slot, fn);
        d.vendor = (uint16_t)ven;
        d.device = (uint16_t)dev;
        if (xpath_uint(ctx, CAP("iommuGroup/@number"), INT_MAX, &grp))
            d.iommu_group = (int)grp;
        xmlXPathObjectPtr o = xmlXPathEvalExpression(
            (const xmlChar *)"/device/driver/name", ctx);
        if (o && o->nodesetval && o->nodesetval->nodeNr > 0) {
            xmlChar *t = xmlNodeGetContent(o->nodesetval->nodeTab[0]);
            if (t && *t && vmxml_text_ok((const char *)t))
                d.driver = xstrdup((const char *)t);
            xmlFree(t);
        }
        xmlXPathFreeObject(o);
        r = 0;
    }
#undef CAP
    xmlXPathFreeContext(ctx);
    xmlFreeDoc(doc);
    if (r == 0)
        *ret = d;
    return r;
}

void gpu_nodedev_clear(struct gpu_nodedev *d)
{
    free(d->driver);
    d->driver = NULL;
}

static const struct gpu_nodedev *nodedev_find(const struct gpu_nodedev *devs,
                                              size_t n, const char *addr)
{
    for (size_t i = 0; i < n; i++)
        if (streq(devs[i].addr, addr))
            return &devs[i];
    return NULL;
}

size_t gpu_inventory_crosscheck(struct gpu_inventory *inv,
                                const struct gpu_nodedev *devs, size_t n)
{
    size_t marked = 0;
    for (size_t i = 0; i < inv->n; i++) {
        struct gpu *g = &inv->gpus[i];
        char *why = NULL;
        for (size_t k = 0; k < g->n_functions && !why; k++) {
            const struct gpu_fn *f = &g->functions[k];
            const struct gpu_nodedev *d = nodedev_find(devs, n, f->addr);
            if (!d)
                continue;
            if (d->vendor != f->vendor || d->device != f->device)
                why = xasprintf("libvirt sees %s as %04x:%04x, sysfs as "
                                "%04x:%04x", f->addr, d->vendor, d->device,
                                f->vendor, f->device);
            else if (d->iommu_group >= 0 && d->iommu_group != g->iommu_group)
                why = xasprintf("libvirt sees %s in IOMMU group %d, sysfs in "
                                "%d", f->addr, d->iommu_group, g->iommu_group);
            else if (!streq(d->driver ? d->driver : "", f->driver))
                why = xasprintf("libvirt sees %s bound to '%s', sysfs to '%s'",
                                f->addr, d->driver ? d->driver : "",
                                f->driver);
        }
        if (!why)
            continue;
        char *r = g->reason ? xasprintf("%s; %s", g->reason, why)
                            : xstrdup(why);
        free(why);
        free(g->reason);
        g->reason = r;
        marked++;
    }
    return marked;
}

int gpu_inventory_read(const char *root, char *const *nodedevs,
                       struct gpu_inventory *ret)
{
    struct gpu_inventory inv;
    int r = gpu_inventory_collect(root, &inv);
    if (r < 0)
        return r;
    struct gpu_nodedev *devs = NULL;
    size_t n = 0;
    for (size_t i = 0; nodedevs && nodedevs[i]; i++) {
        struct gpu_nodedev d;
        if (gpu_nodedev_parse(nodedevs[i], &d) < 0)
            continue;
        devs = xrealloc(devs, (n + 1) * sizeof(*devs));
        devs[n++] = d;
    }
    gpu_inventory_crosscheck(&inv, devs, n);
    for (size_t i = 0; i < n; i++)
        gpu_nodedev_clear(&devs[i]);
    free(devs);
    *ret = inv;
    return 0;
}

int gpu_report(const char *root, char *const *nodedevs, json_t **ret)
{
    struct gpu_inventory inv;
    int r = gpu_inventory_read(root, nodedevs, &inv);
    if (r < 0)
        return r;
    *ret = json_pack("{s:o, s:b}", AGENT_GPUS, gpu_inventory_to_json(&inv),
                     AGENT_IOMMU, inv.iommu);
    gpu_inventory_clear(&inv);
    return 0;
}
