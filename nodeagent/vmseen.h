/* What the controller holds of each VM the agent reports: its console log
 * up to size/mtime (posted) and the digest of the domain XML it accepted
 * last (xml_posted; xml_sent: the one in the post under way). xml_known:
 * the controller has the domain's current XML, nothing (event, action of
 * ours) touched the domain since it was read, so a report made for an
 * event or a new document need not read it again (the heartbeat's does).
 * In memory only, so a restarted agent sends both again.
 *
 * The set is kept sorted by VM id: a report looks each VM up once, so a
 * scan per lookup made each report quadratic in the node's VMs. VMs the
 * desired document no longer names are forgotten, so the set is as large
 * as the node's VMs, not as every VM it ever ran. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct vm_seen {
    char id[37];
    off_t size;
    int64_t mtime_ns;
    bool posted;
    bool xml_known;
    char xml_posted[65], xml_sent[65];
    char entry_posted[65]; /* digest of the VM's status entry as posted */
};

struct vm_seen_set {
    struct vm_seen *v;
    size_t n, cap;
};

/* VM id's entry, made (all clear) when there is none. The pointer holds
 * until the next vm_seen_get() or vm_seen_forget() on the set. */
struct vm_seen *vm_seen_get(struct vm_seen_set *s, const char *id);
/* Forget every VM that the "vms" of `desired` does not name. */
void vm_seen_forget(struct vm_seen_set *s, const json_t *desired);
/* Something may have changed VM id's domain (NULL: every VM's). */
void vm_seen_touched(struct vm_seen_set *s, const char *id);
void vm_seen_free(struct vm_seen_set *s);
