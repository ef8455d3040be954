/* The libvirt driver: one connection, the event loop thread that delivers
 * lifecycle events, and the operations the reconciler needs. It only ever
 * touches domains named fog-<uuid> that carry our metadata element. */
#pragma once

#include "nodeagent/vmxml.h"

enum virt_state {
    VIRT_RUNNING,
    VIRT_PAUSED,
    VIRT_STOPPED,  /* shut off, not crashed */
    VIRT_CRASHED,
    VIRT_STATE_MAX
};

/* One of our domains as observed. */
struct virt_dom {
    struct vmxml_meta meta;   /* meta.vm_id identifies the VM */
    enum virt_state state;
    bool stopped_by_guest;    /* shut off by a poweroff from inside */
    bool lost_with_host;      /* shut off for no known reason: its host (or
                               * libvirtd) went down under it, as a reboot
                               * or a power cut leaves a domain */
    int64_t vcpus;            /* as defined */
    int64_t memory_mib;
    bool autostart;
    int64_t shutdown_deadline_ms; /* filled by the caller: 0 = none */
    int64_t shutdown_repeat_ms;   /* when to ask again (caller; 0 = none) */
    struct vmxml_snap *snaps;     /* our snapshots of it (owned) */
    size_t n_snaps;
};

struct virt;

/* Called from the event thread with the VM id of one of our domains and
 * libvirt's lifecycle event and detail codes. */
typedef void (*virt_event_fn)(void *userdata, const char *vm_id, int event,
                              int detail);

/* Register libvirt's default event loop and run it on a thread. Call once,
 * before virt_open(). 0 or -EIO. */
int virt_events_start(void);
/* Stop and join the event thread. */
void virt_events_stop(void);

/* Connect to `uri` and subscribe to lifecycle events of our domains
 * (fn may be NULL). 0 or -EIO (message logged). */
int virt_open(const char *uri, virt_event_fn fn, void *userdata,
              struct virt **ret);
void virt_free(struct virt *v);
/* False once the connection has dropped (libvirtd restarted). */
bool virt_alive(struct virt *v);
/* The driver's type name ("QEMU", "Test"); owned by v. */
const char *virt_driver(struct virt *v);

/* Our domains (array owned by the caller, free with virt_doms_free), in
 * the order of their VM ids, as virt_doms_find() needs. Domains without
 * a valid fogfabric metadata element are not listed. 0 or -EIO. */
int virt_list(struct virt *v, struct virt_dom **ret, size_t *ret_n);
void virt_doms_free(struct virt_dom *d, size_t n);
/* The domain of vm_id as virt_list() lists it, looked up by name (no
 * listing of every domain): 0 and *ret (clear with virt_dom_clear()),
 * -ENOENT when there is none of ours, or another -errno. */
int virt_lookup(struct virt *v, const char *vm_id, struct virt_dom *ret);
/* Free what one listed domain holds and zero it. */
void virt_dom_clear(struct virt_dom *d);
/* Put an array of domains in the order of their VM ids. */
void virt_doms_sort(struct virt_dom *d, size_t n);
/* Where the domain of vm_id is in an array in that order, or would go:
 * its index, *found saying which. */
size_t virt_doms_at(const struct virt_dom *d, size_t n, const char *vm_id,
                    bool *found);
/* The observed domain with this VM id in an array in that order, or
 * NULL. */
struct virt_dom *virt_doms_find(const struct virt_dom *d, size_t n,
                                const char *vm_id);

/* Operations on the domain of `vm_id`. All return 0, -ENOENT when there is
 * no such domain of ours, -EOPNOTSUPP when the driver lacks the call, or
 * -EIO; the reason is then in virt_error(). */
int virt_define(struct virt *v, const char *xml);
int virt_start(struct virt *v, const char *vm_id);
int virt_shutdown(struct virt *v, const char *vm_id);
int virt_destroy(struct virt *v, const char *vm_id); /* 0 when not running */
int virt_reboot(struct virt *v, const char *vm_id);
int virt_resume(struct virt *v, const char *vm_id);
int virt_suspend(struct virt *v, const char *vm_id);
int virt_undefine(struct virt *v, const char *vm_id);
int virt_set_autostart(struct virt *v, const char *vm_id, bool on);
/* Replace the metadata element of the persistent definition. */
int virt_set_meta(struct virt *v, const struct vmxml_meta *m);
/* The domain's XML as libvirt describes it now (the live one while it
 * runs), without secrets; *ret is the caller's. */
int virt_xml(struct virt *v, const char *vm_id, char **ret);
/* Grow disk vda of a running domain to `bytes`. */
int virt_block_resize(struct virt *v, const char *vm_id, uint64_t bytes);

/* Snapshots (internal, see api/agentproto.h) of the domain of `vm_id`:
 * create snapshot `name` with id `id` (a checkpoint of memory and disk
 * when it runs, its disk when it is off), delete one by name, or revert
 * to one, starting the domain afterwards when `run` (else it ends off: a
 * checkpoint comes back paused and is destroyed, its guest never runs).
 * Return as above. */
int virt_snapshot_create(struct virt *v, const char *vm_id, const char *name,
                         const char *id);
int virt_snapshot_delete(struct virt *v, const char *vm_id, const char *name);
int virt_snapshot_revert(struct virt *v, const char *vm_id, const char *name,
                         bool run);

/* Incremental backups (libvirt's backup API, push mode, and checkpoints,
 * disk vda only). virt_backup_disk copies the disk of the running domain
 * of `vm_id` into a new qcow2 file `target` (no backing file): all of it,
 * or with `since` only the clusters changed since that checkpoint; and
 * creates checkpoint `checkpoint` at the same instant. It returns once
 * the copy is done (or failed). virt_checkpoint_exists: 1 or 0.
 * virt_checkpoint_delete: 0 also when there was none. virt_checkpoints_
 * prune deletes every checkpoint of the domain but `keep` (NULL: all);
 * how many went. Return as above otherwise. */
int virt_backup_disk(struct virt *v, const char *vm_id, const char *target,
                     const char *since, const char *checkpoint);
int virt_checkpoint_exists(struct virt *v, const char *vm_id,
                           const char *name);
int virt_checkpoint_delete(struct virt *v, const char *vm_id,
                           const char *name);
int virt_checkpoints_prune(struct virt *v, const char *vm_id,
                           const char *keep);
/* Every checkpoint of the domain goes, a stopped one's too (its bitmaps
 * removed from `disk` with `qemu_img`, as libvirt does so only for a
 * running domain): how many. */
int virt_checkpoints_drop(struct virt *v, const char *vm_id,
                          const char *qemu_img, const char *disk);

/* Message of the last failed libvirt call on this thread (never NULL). */
const char *virt_error(void);

/* The XML descriptions of the PCI devices libvirt's node-device API lists
 * (a NULL-terminated array; free with vmxml_strv_free). 0, -EOPNOTSUPP
 * when the driver has no node devices, or -EIO. */
int virt_pci_devices(struct virt *v, char ***ret);
/* The PCI functions every domain on the host holds (hostdev elements of
 * its definition, the live one while it runs), ours and any other's: the
 * assignments as they stand, rebuilt from libvirt each time, so a
 * restarted agent never gives a GPU twice. Two NULL-terminated arrays of
 * equal length (addresses, domain names; free each with vmxml_strv_free).
 * 0 or -errno (reason in virt_error()). */
int virt_hostdevs(struct virt *v, char ***ret_addrs, char ***ret_domains);
