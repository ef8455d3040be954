/* Reconciliation of a node's desired state with its libvirt domains: a pure
 * planner (desired document + observed domains -> actions), an executor
 * that carries actions out, and the per-VM state reported back. Idempotent
 * and restart-safe: what the agent did is kept in each domain's metadata,
 * so a restarted agent adopts running domains and never duplicates one. */
#pragma once

#include "nodeagent/virt.h"

#include <jansson.h>

enum reconcile_op {
    RC_REJECT,       /* desired entry unusable: record `reason` */
    RC_CREATE,       /* disk + definition (left stopped) */
    RC_REDEFINE,     /* the spec changed: new definition, next boot */
    RC_GROW_DISK,
    RC_AUTOSTART,    /* libvirt's autostart off (see plan_vm) */
    RC_START,
    RC_RESUME,
    RC_SUSPEND,      /* held paused while meant to run */
    RC_REBOOT,
    RC_SHUTDOWN,     /* ACPI; a later pass destroys after the timeout */
    RC_DESTROY,
    RC_MARK_STOPPED, /* remember that the VM is meant to be stopped */
    RC_MARK_RUNNING, /* remember that it runs as meant (start generation) */
    RC_DELETE,       /* destroy, undefine, remove its files */
    RC_PURGE,        /* no domain left: remove leftover files */
    RC_SNAPSHOT_CREATE,
    RC_SNAPSHOT_DELETE,
    RC_SNAPSHOT_REVERT,
    RC_OP_MAX
};

struct reconcile_action {
    enum reconcile_op op;
    char vm_id[37];
    const json_t *vm;  /* the desired entry (borrowed from the document) */
    char *reason;      /* RC_REJECT only; owned */
    char *snap;        /* RC_SNAPSHOT_*: the snapshot's name; owned */
    char snap_id[37];  /* RC_SNAPSHOT_CREATE and _REVERT: its id */
};

struct reconcile_plan {
    struct reconcile_action *actions;
    size_t n;
};

const char *reconcile_op_name(enum reconcile_op op);

/* Read a desired document for node `node_id` with the contract's decoder
 * (api/agentmsg.h): a whole document (revision, the node's id, every part)
 * whose members have their types and bounds. The agent acts on nothing
 * less: a missing part would read as "remove everything of that kind".
 * Returns the document re-encoded (new reference: only the members the
 * contract names, in their canonical form), or NULL with *ret_why (if not
 * NULL; caller frees) saying why. */
json_t *reconcile_doc_read(const json_t *doc, const char *node_id,
                           char **ret_why);
/* A delta (api/desired_delta.h) merged into `held`, a document this
 * agent read before (reconcile_doc_read's), and read as that would read
 * the merged whole, but decoding only what the delta carries: the VMs it
 * names and the members (each VM and member reads on its own, so those
 * held are already read). 0 and *ret_doc (new reference); -ESTALE when
 * held is not at the delta's base, -EINVAL when the delta is malformed
 * (ask for the whole document), -EBADMSG when the merged document is
 * refused, with *ret_why (if not NULL; caller frees). */
int reconcile_delta_read(const json_t *held, const json_t *delta,
                         const char *node_id, json_t **ret_doc,
                         char **ret_why);
/* reconcile_doc_read() as a predicate. */
bool reconcile_doc_whole(const json_t *doc, const char *node_id);

/* Check one desired VM entry from the controller (which is input like any
 * other). 0, or -EINVAL with a reason (caller frees). */
int reconcile_vm_check(const json_t *vm, char **ret_reason);
/* Hash of everything a definition is built from, as 64 hex chars. */
void reconcile_spec_hash(const json_t *vm, bool kvm, char out[65]);

/* Plan the actions that move `doms` (in the order of their VM ids, as
 * virt_list() gives them) towards `desired` (the document's "vms" array
 * is read). Pure: no I/O. Domains not in the document are left
 * alone. Free the result with reconcile_plan_free(). */
void reconcile_plan(const json_t *desired, const struct virt_dom *doms,
                    size_t n_doms, bool kvm, int64_t now_ms,
                    struct reconcile_plan *ret);
void reconcile_plan_free(struct reconcile_plan *p);

/* The state and reason to report for desired VM `vm` given its domain (or
 * NULL) and the last error recorded for it (or NULL). Pure; the strings
 * are static or borrowed from `error`. */
void reconcile_status(const json_t *vm, const struct virt_dom *dom,
                      const char *error, const char **ret_state,
                      const char **ret_reason);

/* True when VM `vm` is meant to run, the agent last started it, and its
 * domain `dom` is down without the agent's doing (a poweroff from inside,
 * a crash, or a stop outside fogfabric) with no newer start or reboot
 * asked for. It then stays down, and the status says so ("by_guest" with
 * the domain's start generation) so that the controller's desired power
 * state follows. Pure. */
bool reconcile_down_by_itself(const json_t *vm, const struct virt_dom *dom);

/* Whether the domain of desired entry `vm` should start again once its
 * node booted: meant to run and its autostart flag not off. The agent
 * starts it, with the hub's current document in hand, never libvirt at
 * boot (that would run a placement the hub moved elsewhere). Pure. */
bool reconcile_want_autostart(const json_t *vm);

/* Fencing: what to do with VM `vm`'s domain `dom` (either may be NULL)
 * given the placement generations. Each placement of a VM on a node has a
 * generation (the entry's "place_gen"; the domain keeps the one it was made
 * for in its metadata). A domain the document does not list, or lists for
 * a later placement, belongs to an earlier placement: it is destroyed and
 * its files removed (RC_FENCE_DESTROY), never started. A document that
 * lists an earlier placement than the domain was made for is older than
 * what this node has seen: nothing is created, started or removed
 * (RC_FENCE_HOLD). Otherwise the domain is this placement's
 * (RC_FENCE_KEEP). Pure. */
enum reconcile_fence {
    RC_FENCE_KEEP,
    RC_FENCE_DESTROY,
    RC_FENCE_HOLD,
    RC_FENCE_MAX
};
enum reconcile_fence reconcile_fence(const json_t *vm,
                                     const struct virt_dom *dom);

/* Append to *p an RC_DELETE for every domain in `doms` that desired
 * document `doc` (as the controller sent it, before the node's policy
 * filtered it) does not list: a VM deleted, or placed elsewhere, while
 * this node was away. Nothing for a document of a node not yet approved. */
void reconcile_plan_orphans(const json_t *doc, const struct virt_dom *doms,
                            size_t n_doms, struct reconcile_plan *p);

/* ---- executor ---- */

struct reconcile_vm_mem;
struct fetch_cache;

struct reconcile_ctx {
    struct virt *virt;
    const char *data_dir;
    const char *image_dir;
    const char *qemu_img;
    const char *arch;
    const char *root;  /* prefix of the sysfs the GPUs are read from */
    bool kvm;
    bool allow_tcg;
    bool gateway_dns;  /* the node runs resolvers on tenant gateways */
    int64_t shutdown_timeout_ms;
    int64_t retry_ms;  /* pause before retrying a failed VM, same revision */
    /* Image cache for image_source (NULL: local image directory only) and
     * the controller URL its relative URLs are resolved against. */
    struct fetch_cache *cache;
    const char *controller;
    /* Limits written into every domain (NULL: none). */
    const struct vmxml_limits *limits;
    /* What the executor remembers per VM: shutdown deadlines, errors. */
    struct reconcile_vm_mem *mem;
    size_t n_mem;
};

/* Copy remembered shutdown deadlines into observed domains. */
void reconcile_annotate(struct reconcile_ctx *c, struct virt_dom *doms,
                        size_t n);
/* Carry out a plan made from document revision `rev`; errors are logged
 * once and remembered for the status. Returns the number of actions that
 * changed something. */
int reconcile_execute(struct reconcile_ctx *c, const struct reconcile_plan *p,
                      const struct virt_dom *doms, size_t n_doms, int64_t rev,
                      int64_t now_ms);
/* What the node last had to do against a VM's wish, for its status (a
 * forced power-off), or NULL (borrowed until the next execute). */
const char *reconcile_vm_note(const struct reconcile_ctx *c,
                              const char *vm_id);
/* The last error of a VM, or NULL (borrowed until the next execute). */
const char *reconcile_vm_error(const struct reconcile_ctx *c,
                               const char *vm_id);
/* The earliest pending shutdown deadline (monotonic ms), or 0. */
int64_t reconcile_next_deadline(const struct reconcile_ctx *c);
/* Forget VMs that are no longer in the document. */
void reconcile_forget(struct reconcile_ctx *c, const json_t *desired);
void reconcile_ctx_free(struct reconcile_ctx *c);

/* ---- for the planner's and executor's other files (snapshot.c) ---- */
/* Append an action (taking `reason`); returns it, to fill in more. */
struct reconcile_action *reconcile__add(struct reconcile_plan *p,
                                        enum reconcile_op op, const char *id,
                                        const json_t *vm, char *reason);
/* Record action a's failure (taking `msg`) / libvirt's last error. */
void reconcile__fail(struct reconcile_ctx *c, const struct reconcile_action *a,
                     char *msg, int64_t rev, int64_t now_ms);
void reconcile__vfail(struct reconcile_ctx *c,
                      const struct reconcile_action *a, const char *what,
                      int64_t rev, int64_t now_ms);
