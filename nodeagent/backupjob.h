/* Taking the backups the controller asks for: in a worker thread of its
 * own, one at a time, each VM disk is sealed into DATA/backups/<id>.fbk
 * and uploaded to the hub in chunks, resuming where the hub's copy ends
 * (after a lost connection or an agent restart), so a long backup never
 * holds up the reconcile loop or the status posts. A running VM's
 * backup goes through libvirt's backup API, taking only the clusters
 * changed since the parent the hub names when the domain holds that
 * checkpoint, and leaving one checkpoint (the new backup's) behind; a
 * stopped VM, or a hypervisor without the API, gets a qemu-img copy. */
#pragma once

#include "nodeagent/virt.h"

#include <jansson.h>
#include <stddef.h>

struct backupjob_opts {
    const char *data_dir;   /* sealed files go to DATA-DIR/backups */
    const char *qemu_img;
    const char *controller; /* the hub's URL, its CA and key pin */
    const char *credential;
    const char *ca_path;
    const char *key_pin;
    size_t chunk;           /* bytes per PUT, at most AGENT_BACKUP_CHUNK_MAX */
    const char *uri;        /* libvirt's, for incremental backups of running
                             * VMs (NULL: every backup a qemu-img copy) */
};

struct backupjob;

/* Start the worker (it waits for backupjob_sync). Copies the options. */
struct backupjob *backupjob_new(const struct backupjob_opts *o);
/* Stop the worker: an upload under way stops between chunks and its
 * sealed file stays for the next run; a worker still busy after a few
 * seconds (in qemu-img, or a request) is left to the exiting process.
 * NULL is fine. */
void backupjob_free(struct backupjob *b);

/* The backups `doc` (a desired document as the node accepted it) lists
 * for VMs defined here (`doms`): these are to be taken; any other one,
 * under way or sealed on disk, is abandoned and its file removed. */
void backupjob_sync(struct backupjob *b, const json_t *doc,
                    const struct virt_dom *doms, size_t n);
