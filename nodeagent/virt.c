/* libvirt driver for fog-nodeagent. Only domains named fog-<uuid> with a
 * fogfabric metadata element whose id matches are ever looked up, listed,
 * changed or removed. */
#include "nodeagent/virt.h"

#include "common/ids.h"
#include "common/log.h"
#include "nodeagent/disk.h"

#include <errno.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct virt {
    virConnectPtr conn;
    int cb_id;
    virt_event_fn fn;
    void *userdata;
    char *driver;
};

static void save_error(void);
static int err_code(void);

static pthread_t event_thread;
static atomic_bool event_stop;
static bool event_running;

/* libvirt prints every error to stderr unless told otherwise; the agent
 * reports the ones that matter itself. */
static void silent_error(void *ud, virErrorPtr err) {}

static void *event_main(void *arg)
{
    while (!atomic_load(&event_stop))
        if (virEventRunDefaultImpl() < 0)
            log_warn("libvirt event loop: %s", virt_error());
    return NULL;
}

int virt_events_start(void)
{
    virSetErrorFunc(NULL, silent_error);
    if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0) {
        save_error();
        log_error("cannot start libvirt's event loop: %s", virt_error());
        return -EIO;
    }
    atomic_store(&event_stop, false);
    if (pthread_create(&event_thread, NULL, event_main, NULL) != 0) {
        log_error("cannot start the libvirt event thread");
        return -EIO;
    }
    event_running = true;
    return 0;
}

static void wake_cb(int timer, void *opaque) {}

void virt_events_stop(void)
{
    if (!event_running)
        return;
    atomic_store(&event_stop, true);
    /* A due timer makes the loop return so it sees the flag. */
    int t = virEventAddTimeout(0, wake_cb, NULL, NULL);
    pthread_join(event_thread, NULL);
    if (t >= 0)
        virEventRemoveTimeout(t);
    event_running = false;
}

/* The message of the last failure, saved before cleanup functions
 * (virDomainFree) reset libvirt's own. */
static __thread char last_error[512];

static void save_error(void)
{
    const char *m = virGetLastErrorMessage();
    snprintf(last_error, sizeof(last_error), "%s",
             m && !streq(m, "no error") ? m : "unknown libvirt error");
}

const char *virt_error(void)
{
    return last_error[0] ? last_error : "unknown libvirt error";
}

static int lifecycle_cb(virConnectPtr conn, virDomainPtr dom, int event,
                        int detail, void *opaque)
{
    struct virt *v = opaque;
    const char *id = vmxml_name_vm_id(virDomainGetName(dom));
    if (id && v->fn)
        v->fn(v->userdata, id, event, detail);
    return 0;
}

int virt_open(const char *uri, virt_event_fn fn, void *userdata,
              struct virt **ret)
{
    virSetErrorFunc(NULL, silent_error);
    struct virt *v = xcalloc(1, sizeof(*v));
    v->fn = fn;
    v->userdata = userdata;
    v->cb_id = -1;
    v->conn = virConnectOpen(uri);
    if (!v->conn) {
        save_error();
        log_error("cannot connect to libvirt '%s': %s", uri, virt_error());
        free(v);
        return -EIO;
    }
    const char *type = virConnectGetType(v->conn);
    v->driver = xstrdup(type ? type : "");
    if (fn) {
        v->cb_id = virConnectDomainEventRegisterAny(
            v->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
            VIR_DOMAIN_EVENT_CALLBACK(lifecycle_cb), v, NULL);
        if (v->cb_id < 0)
            log_warn("libvirt '%s' gives no lifecycle events: %s", uri,
                     virt_error());
    }
    *ret = v;
    return 0;
}

void virt_free(struct virt *v)
{
    if (!v)
        return;
    if (v->cb_id >= 0)
        virConnectDomainEventDeregisterAny(v->conn, v->cb_id);
    virConnectClose(v->conn);
    free(v->driver);
    free(v);
}

bool virt_alive(struct virt *v)
{
    return v && virConnectIsAlive(v->conn) == 1;
}

const char *virt_driver(struct virt *v)
{
    return v->driver;
}

static void dom_freep(virDomainPtr *d)
{
    if (*d)
        virDomainFree(*d);
}
#define _cleanup_dom_ _cleanup_(dom_freep)

/* Our metadata of a domain, read from the persistent definition when there
 * is one. 0 or -ENOENT when it carries none (or a malformed one). */
static int dom_meta(virDomainPtr d, struct vmxml_meta *ret)
{
    unsigned flags = virDomainIsPersistent(d) == 1 ? VIR_DOMAIN_AFFECT_CONFIG :
                                                      VIR_DOMAIN_AFFECT_LIVE;
    char *xml = virDomainGetMetadata(d, VIR_DOMAIN_METADATA_ELEMENT,
                                     VMXML_NS_URI, flags);
    if (!xml)
        return -ENOENT;
    int r = vmxml_meta_parse(xml, ret);
    free(xml);
    return r < 0 ? -ENOENT : 0;
}

/* Look up the domain of vm_id, refusing anything without our metadata. */
static int dom_get(struct virt *v, const char *vm_id, virDomainPtr *ret)
{
    _cleanup_free_ char *name = vmxml_domain_name(vm_id);
    virDomainPtr d = virDomainLookupByName(v->conn, name);
    if (!d)
        return err_code();
    struct vmxml_meta m;
    if (dom_meta(d, &m) < 0) {
        virDomainFree(d);
        return -ENOENT;
    }
    bool same = streq(m.vm_id, vm_id);
    vmxml_meta_clear(&m);
    if (!same) {
        virDomainFree(d);
        return -ENOENT;
    }
    *ret = d;
    return 0;
}

static int err_code(void)
{
    save_error();
    switch (virGetLastErrorCode()) {
    case VIR_ERR_NO_SUPPORT:
        return -EOPNOTSUPP;
    case VIR_ERR_NO_DOMAIN:
        return -ENOENT;
    default:
        return -EIO;
    }
}

static enum virt_state map_state(int st, int reason, bool *ret_by_guest,
                                 bool *ret_lost)
{
    *ret_by_guest = false;
    *ret_lost = false;
    switch (st) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
        return VIRT_RUNNING;
    case VIR_DOMAIN_PAUSED:
    case VIR_DOMAIN_PMSUSPENDED:
        return VIRT_PAUSED;
    case VIR_DOMAIN_CRASHED:
        return VIRT_CRASHED;
    case VIR_DOMAIN_SHUTDOWN: /* on its way down */
        return VIRT_RUNNING;
    case VIR_DOMAIN_SHUTOFF:
        if (reason == VIR_DOMAIN_SHUTOFF_CRASHED)
            return VIRT_CRASHED;
        *ret_by_guest = reason == VIR_DOMAIN_SHUTOFF_SHUTDOWN;
        /* Loaded from its definition by a libvirtd that never ran it: the
         * host went down under it (QEMU dying under a running libvirtd
         * reads as crashed instead). */
        *ret_lost = reason == VIR_DOMAIN_SHUTOFF_UNKNOWN;
        return VIRT_STOPPED;
    default:
        return VIRT_STOPPED;
    }
}

/* Our snapshots of domain d into o (none when it has none, or they
 * cannot be read: the next pass reads them again). */
static void dom_snaps(virDomainPtr d, struct virt_dom *o)
{
    if (virDomainSnapshotNum(d, 0) <= 0)
        return;
    virDomainSnapshotPtr *all = NULL;
    int n = virDomainListAllSnapshots(d, &all, 0);
    if (n <= 0)
        return;
    o->snaps = xcalloc((size_t)n, sizeof(*o->snaps));
    for (int i = 0; i < n; i++) {
        char *xml = virDomainSnapshotGetXMLDesc(all[i], 0);
        if (xml && vmxml_snapshot_parse(xml, &o->snaps[o->n_snaps]) == 0)
            o->n_snaps++;
        free(xml);
        virDomainSnapshotFree(all[i]);
    }
    free(all);
}

/* Fill o from domain d when it is one of ours (its name and metadata
 * name the same VM) and answers; false otherwise, o left clear. */
static bool dom_fill(virDomainPtr d, struct virt_dom *o)
{
    const char *id = vmxml_name_vm_id(virDomainGetName(d));
    int st, reason, autostart = 0;
    virDomainInfo info;
    if (!id || dom_meta(d, &o->meta) < 0)
        return false;
    if (!streq(o->meta.vm_id, id) || virDomainGetState(d, &st, &reason, 0) < 0 ||
        virDomainGetInfo(d, &info) < 0) {
        vmxml_meta_clear(&o->meta);
        return false;
    }
    virDomainGetAutostart(d, &autostart);
    o->state = map_state(st, reason, &o->stopped_by_guest,
                         &o->lost_with_host);
    o->vcpus = info.nrVirtCpu;
    o->memory_mib = (int64_t)(info.maxMem / 1024);
    o->autostart = autostart != 0;
    dom_snaps(d, o);
    return true;
}

int virt_list(struct virt *v, struct virt_dom **ret, size_t *ret_n)
{
    virDomainPtr *all = NULL;
    int n = virConnectListAllDomains(v->conn, &all, 0);
    if (n < 0)
        return err_code();
    struct virt_dom *out = xcalloc((size_t)n + 1, sizeof(*out));
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        if (dom_fill(all[i], &out[k]))
            k++;
        virDomainFree(all[i]);
    }
    free(all);
    virt_doms_sort(out, k);
    *ret = out;
    *ret_n = k;
    return 0;
}

int virt_lookup(struct virt *v, const char *vm_id, struct virt_dom *ret)
{
    _cleanup_free_ char *name = vmxml_domain_name(vm_id);
    virDomainPtr d = virDomainLookupByName(v->conn, name);
    if (!d)
        return err_code();
    struct virt_dom o = { 0 };
    bool ours = dom_fill(d, &o) && streq(o.meta.vm_id, vm_id);
    virDomainFree(d);
    if (!ours) {
        virt_dom_clear(&o);
        return -ENOENT;
    }
    *ret = o;
    return 0;
}

void virt_dom_clear(struct virt_dom *d)
{
    vmxml_meta_clear(&d->meta);
    for (size_t k = 0; k < d->n_snaps; k++)
        vmxml_snapshot_clear(&d->snaps[k]);
    free(d->snaps);
    *d = (struct virt_dom){ 0 };
}

void virt_doms_free(struct virt_dom *d, size_t n)
{
    for (size_t i = 0; d && i < n; i++)
        virt_dom_clear(&d[i]);
    free(d);
}

static int dom_cmp(const void *x, const void *y)
{
    const struct virt_dom *a = x, *b = y;
    return strcmp(a->meta.vm_id, b->meta.vm_id);
}

void virt_doms_sort(struct virt_dom *d, size_t n)
{
    if (n > 1)
        qsort(d, n, sizeof(*d), dom_cmp);
}

size_t virt_doms_at(const struct virt_dom *d, size_t n, const char *vm_id,
                    bool *found)
{
    return sorted_at(d, n, sizeof(*d),
                     offsetof(struct virt_dom, meta) +
                         offsetof(struct vmxml_meta, vm_id),
                     vm_id, found);
}

struct virt_dom *virt_doms_find(const struct virt_dom *d, size_t n,
                                const char *vm_id)
{
    bool found;
    size_t at = vm_id ? virt_doms_at(d, n, vm_id, &found) : 0;
    return vm_id && found ? (struct virt_dom *)&d[at] : NULL;
}

int virt_define(struct virt *v, const char *xml)
{
    virDomainPtr d = virDomainDefineXML(v->conn, xml);
    if (!d)
        return err_code();
    virDomainFree(d);
    return 0;
}

#define DOM_OP(fn, call)                                                       \
    int fn(struct virt *v, const char *vm_id)                                  \
    {                                                                          \
        _cleanup_dom_ virDomainPtr d = NULL;                                   \
        int r = dom_get(v, vm_id, &d);                                         \
        if (r < 0)                                                             \
            return r;                                                          \
        return (call) < 0 ? err_code() : 0;                                    \
    }

DOM_OP(virt_start, virDomainCreate(d))
DOM_OP(virt_shutdown, virDomainShutdown(d))
DOM_OP(virt_reboot, virDomainReboot(d, 0))
DOM_OP(virt_resume, virDomainResume(d))
DOM_OP(virt_suspend, virDomainSuspend(d))

int virt_destroy(struct virt *v, const char *vm_id)
{
    _cleanup_dom_ virDomainPtr d = NULL;
    int r = dom_get(v, vm_id, &d);
    if (r < 0)
        return r;
    if (virDomainIsActive(d) != 1)
        return 0;
    if (virDomainDestroy(d) < 0)
        return virDomainIsActive(d) == 0 ? 0 : err_code();
    return 0;
}

int virt_undefine(struct virt *v, const char *vm_id)
{
    _cleanup_dom_ virDomainPtr d = NULL;
    int r = dom_get(v, vm_id, &d);
    if (r < 0)
        return r;
    if (virDomainIsActive(d) == 1 && virDomainDestroy(d) < 0 &&
        virDomainIsActive(d) == 1)
        return err_code();
    /* Checkpoints of incremental backups go with the domain (libvirt
     * refuses to undefine one that has any otherwise). */
    if (virDomainUndefineFlags(d, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                                      VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                                      VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
        == 0)
        return 0;
    if (virDomainUndefineFlags(d, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                                      VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA) == 0)
        return 0;
    /* Drivers without those flags. */
    return virDomainUndefine(d) < 0 ? err_code() : 0;
}

int virt_snapshot_create(struct virt *v, const char *vm_id, const char *name,
                         const char *id)
{
    _cleanup_dom_ virDomainPtr d = NULL;
    _cleanup_free_ char *xml = NULL;
    int r = dom_get(v, vm_id, &d);
    if (r < 0)
        return r;
    if (vmxml_snapshot_build(name, id, &xml) < 0)
        return -EINVAL;
    /* Internal, with memory when it runs: the one kind libvirt 9.0 can
     * revert (external ones it cannot, and --quiesce needs external). */
    virDomainSnapshotPtr s = virDomainSnapshotCreateXML(d, xml, 0);
    if (!s)
        return err_code();
    virDomainSnapshotFree(s);
    return 0;
}

static int snap_get(struct virt *v, const char *vm_id, const char *name,
                    virDomainPtr *ret_dom, virDomainSnapshotPtr *ret)
{
    int r = dom_get(v, vm_id, ret_dom);
    if (r < 0)
        return r;
    *ret = virDomainSnapshotLookupByName(*ret_dom, name, 0);
    if (!*ret) {
        save_error();
        return virGetLastErrorCode() == VIR_ERR_NO_DOMAIN_SNAPSHOT ? -ENOENT :
                                                                     -EIO;
    }
    return 0;
}

int virt_snapshot_delete(struct virt *v, const char *vm_id, const char *name)
{
    _cleanup_dom_ virDomainPtr d = NULL;
    virDomainSnapshotPtr s = NULL;
    int r = snap_get(v, vm_id, name, &d, &s);
    if (r < 0)
        return r;
    r = virDomainSnapshotDelete(s, 0) < 0 ? err_code() : 0;
    virDomainSnapshotFree(s);
    return r;
}

int virt_snapshot_revert(struct virt *v, const char *vm_id, const char *name,
                         bool run)
{
    _cleanup_dom_ virDomainPtr d = NULL;
    virDomainSnapshotPtr s = NULL;
    int r = snap_get(v, vm_id, name, &d, &s);
    if (r < 0)
        return r;
    /* A checkpoint brings its guest back running unless told otherwise:
     * for a VM meant to be off it comes back paused and is destroyed, so
     * the guest never runs on (nor writes to the reverted disk). */
    bool checkpoint = false;
    if (!run) {
        _cleanup_free_ char *xml = virDomainSnapshotGetXMLDesc(s, 0);
        struct vmxml_snap vs = { 0 };
        if (xml && vmxml_snapshot_parse(xml, &vs) == 0)
            checkpoint = vs.checkpoint;
        vmxml_snapshot_clear(&vs);
    }
    unsigned flags = run ? VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING :
                     checkpoint ? VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED : 0;
    r = virDomainRevertToSnapshot(s, flags) < 0 ? err_code() : 0;
    virDomainSnapshotFree(s);
    if (r == 0 && !run && virDomainIsActive(d) == 1 && virDomainDestroy(d) < 0)
        r = err_code();
    return r;
}

int virt_set_autostart(struct virt *v, const char *vm_id, bool on)
{
    _cleanup_dom_ virDomainPtr d = NULL;
    int r = dom_get(v, vm_id, &d);
    if (r < 0)
        return r;
    return virDomainSetAutostart(d, on) < 0 ? err_code() : 0;
}

int virt_xml(struct virt *v, const char *vm_id, char **ret)
{
    _cleanup_dom_ virDomainPtr d = NULL;
    int r = dom_get(v, vm_id, &d);
    if (r < 0)
        return r;
    /* Without VIR_DOMAIN_XML_SECURE: no passwords or keys. */
    char *xml = virDomainGetXMLDesc(d, 0);
    if (!xml)
        return err_code();
    *ret = xml;
    return 0;
}

int virt_set_meta(struct virt *v, const struct vmxml_meta *m)
{
    _cleanup_dom_ virDomainPtr d = NULL;
    _cleanup_free_ char *xml = NULL;
    int r = dom_get(v, m->vm_id, &d);
    if (r < 0)
        return r;
    if ((r = vmxml_meta_build(m, &xml)) < 0)
        return r;
    unsigned flags = VIR_DOMAIN_AFFECT_CONFIG;
    if (virDomainIsActive(d) == 1)
        flags |= VIR_DOMAIN_AFFECT_LIVE;
    return virDomainSetMetadata(d, VIR_DOMAIN_METADATA_ELEMENT, xml,
                                VMXML_NS_PREFIX, VMXML_NS_URI, flags) < 0 ?
               err_code() :
               0;
}

int virt_block_resize(struct virt *v, const char *vm_id, uint64_t bytes)
{
    _cleanup_dom_ virDomainPtr d = NULL;
    int r = dom_get(v, vm_id, &d);
    if (r < 0)
        return r;
    return virDomainBlockResize(d, "vda", bytes, VIR_DOMAIN_BLOCK_RESIZE_BYTES) <
                   0 ?
               err_code() :
               0;
}

int virt_pci_devices(struct virt *v, char ***ret)
{
    virNodeDevicePtr *devs = NULL;
    int n = virConnectListAllNodeDevices(v->conn, &devs,
                                         VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV);
    if (n < 0)
        return err_code();
    char **xmls = xcalloc((size_t)n + 1, sizeof(*xmls));
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        char *x = virNodeDeviceGetXMLDesc(devs[i], 0);
        if (x) {
            xmls[k++] = xstrdup(x);
            free(x);
        }
        virNodeDeviceFree(devs[i]);
    }
    free(devs);
    *ret = xmls;
    return 0;
}

int virt_hostdevs(struct virt *v, char ***ret_addrs, char ***ret_domains)
{
    virDomainPtr *doms = NULL;
    int n = virConnectListAllDomains(v->conn, &doms, 0);
    if (n < 0)
        return err_code();
    char **addrs = xcalloc(1, sizeof(*addrs)), **names = xcalloc(1,
                                                                  sizeof(*names));
    size_t k = 0;
    int r = 0;
    for (int i = 0; i < n; i++) {
        char *xml = r == 0 ? virDomainGetXMLDesc(doms[i], 0) : NULL;
        char **hd = NULL;
        if (r == 0 && !xml)
            r = err_code();
        else if (r == 0 && vmxml_hostdevs_parse(xml, &hd) < 0)
            r = -EINVAL; /* libvirt's own XML: not expected */
        const char *name = virDomainGetName(doms[i]);
        for (size_t j = 0; hd && hd[j]; j++) {
            addrs = xrealloc(addrs, (k + 2) * sizeof(*addrs));
            names = xrealloc(names, (k + 2) * sizeof(*names));
            addrs[k] = xstrdup(hd[j]);
            names[k++] = xstrdup(name ? name : "?");
            addrs[k] = names[k] = NULL;
        }
        vmxml_strv_free(hd);
        free(xml);
        virDomainFree(doms[i]);
    }
    free(doms);
    if (r < 0) {
        vmxml_strv_free(addrs);
        vmxml_strv_free(names);
        return r;
    }
    *ret_addrs = addrs;
    *ret_domains = names;
    return 0;
}

/* ---- incremental backups --------------------------------------------- */

int virt_backup_disk(struct virt *v, const char *vm_id, const char *target,
                     const char *since, const char *checkpoint)
{
    _cleanup_dom_ virDomainPtr d = NULL;
    int r = dom_get(v, vm_id, &d);
    if (r < 0)
        return r;
    /* Names are backup ids, the target a path of ours: none needs
     * escaping, and one that would is refused. */
    const char *t = target, *inc = since, *cp = checkpoint;
    if (strpbrk(t, "<>&'\"") || (inc && !uuid_is_valid(inc)) ||
        !uuid_is_valid(cp)) {
        snprintf(last_error, sizeof(last_error), "bad backup target or "
                 "checkpoint name");
        return -EINVAL;
    }
    _cleanup_free_ char *bx = xasprintf(
        "<domainbackup mode='push'>%s%s%s<disks><disk name='vda' "
        "type='file'><target file='%s'/><driver type='qcow2'/></disk>"
        "</disks></domainbackup>", inc ? "<incremental>" : "",
        inc ? inc : "", inc ? "</incremental>" : "", t);
    _cleanup_free_ char *cx = xasprintf(
        "<domaincheckpoint><name>%s</name><disks><disk name='vda' "
        "checkpoint='bitmap'/></disks></domaincheckpoint>", cp);
    if (virDomainBackupBegin(d, bx, cx, 0) < 0)
        return err_code();
    /* The job runs in QEMU; its end shows as no job, then its completed
     * statistics say how it ended. */
    for (;;) {
        virDomainJobInfo ji;
        if (virDomainGetJobInfo(d, &ji) < 0)
            return err_code();
        if (ji.type == VIR_DOMAIN_JOB_NONE)
            break;
        usleep(100 * 1000);
    }
    int type = VIR_DOMAIN_JOB_NONE, n = 0;
    virTypedParameterPtr params = NULL;
    if (virDomainGetJobStats(d, &type, &params, &n,
                             VIR_DOMAIN_JOB_STATS_COMPLETED) < 0)
        return err_code();
    const char *msg = NULL;
    virTypedParamsGetString(params, n, VIR_DOMAIN_JOB_ERRMSG, &msg);
    if (type != VIR_DOMAIN_JOB_COMPLETED) {
        snprintf(last_error, sizeof(last_error), "the backup job %s%s%s",
                 type == VIR_DOMAIN_JOB_FAILED ? "failed" : "did not finish",
                 msg ? ": " : "", msg ? msg : "");
        r = -EIO;
    }
    virTypedParamsFree(params, n);
    return r;
}

static int checkpoint_get(struct virt *v, const char *vm_id, const char *name,
                          virDomainPtr *ret_d, virDomainCheckpointPtr *ret)
{
    int r = dom_get(v, vm_id, ret_d);
    if (r < 0)
        return r;
    *ret = virDomainCheckpointLookupByName(*ret_d, name, 0);
    if (*ret)
        return 0;
    r = err_code();
    return virGetLastErrorCode() == VIR_ERR_NO_DOMAIN_CHECKPOINT ? -ENOENT : r;
}

int virt_checkpoint_exists(struct virt *v, const char *vm_id, const char *name)
{
    _cleanup_dom_ virDomainPtr d = NULL;
    virDomainCheckpointPtr c = NULL;
    int r = checkpoint_get(v, vm_id, name, &d, &c);
    if (r == 0)
        virDomainCheckpointFree(c);
    return r == 0 ? 1 : r == -ENOENT && d ? 0 : r;
}

int virt_checkpoint_delete(struct virt *v, const char *vm_id, const char *name)
{
    _cleanup_dom_ virDomainPtr d = NULL;
    virDomainCheckpointPtr c = NULL;
    int r = checkpoint_get(v, vm_id, name, &d, &c);
    if (r < 0)
        return r == -ENOENT && d ? 0 : r;
    r = virDomainCheckpointDelete(c, 0) < 0 ? err_code() : 0;
    virDomainCheckpointFree(c);
    return r;
}

/* Delete checkpoint `c` of a stopped domain: libvirt does so only for a
 * running one, so its bitmap is removed from `disk` with qemu-img first,
 * then its metadata (it stays, to be dropped again, while its bitmap
 * cannot go). 0 or -errno. */
static int checkpoint_delete_offline(virDomainCheckpointPtr c,
                                     const char *name, const char *qemu_img,
                                     const char *disk)
{
    _cleanup_free_ char *err = NULL;
    const char *argv[] = { qemu_img, "bitmap", "--remove", "-f", "qcow2",
                           disk, name, NULL };
    int e = disk_run((char *const *)argv, &err);
    if (e < 0 && !(err && strstr(err, "not found"))) {
        snprintf(last_error, sizeof(last_error), "cannot remove bitmap %s "
                 "from the disk: %s", name, err ? err : strerror(-e));
        return -EIO;
    }
    return virDomainCheckpointDelete(
               c, VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY) < 0 ?
        err_code() : 0;
}

/* Delete every checkpoint of the domain but `keep` (NULL: none kept); a
 * stopped domain's with `qemu_img` on `disk` (without: as libvirt does).
 * How many went, or -errno. */
static int checkpoints_delete(struct virt *v, const char *vm_id,
                              const char *keep, const char *qemu_img,
                              const char *disk)
{
    _cleanup_dom_ virDomainPtr d = NULL;
    int r = dom_get(v, vm_id, &d);
    if (r < 0)
        return r;
    bool offline = qemu_img && disk && virDomainIsActive(d) != 1;
    virDomainCheckpointPtr *cps = NULL;
    int n = virDomainListAllCheckpoints(d, &cps, 0);
    if (n < 0)
        return err_code();
    int gone = 0;
    for (int i = 0; i < n; i++) {
        const char *name = virDomainCheckpointGetName(cps[i]);
        if (r == 0 && name && !(keep && streq(name, keep))) {
            r = offline ? checkpoint_delete_offline(cps[i], name, qemu_img,
                                                    disk)
                        : virDomainCheckpointDelete(cps[i], 0) < 0 ?
                          err_code() : 0;
            gone += r == 0;
        }
        virDomainCheckpointFree(cps[i]);
    }
    free(cps);
    return r < 0 ? r : gone;
}

int virt_checkpoints_prune(struct virt *v, const char *vm_id,
                           const char *keep)
{
    return checkpoints_delete(v, vm_id, keep, NULL, NULL);
}

int virt_checkpoints_drop(struct virt *v, const char *vm_id,
                          const char *qemu_img, const char *disk)
{
    return checkpoints_delete(v, vm_id, NULL, qemu_img, disk);
}
