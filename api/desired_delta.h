/* The delta form of the desired-state document: what changed between two
 * revisions of one node's document, for an agent that holds the older.
 *
 *   {"revision": NEW, "delta_from": REV, "node_id": ...,
 *    "vms": [each new or changed VM, whole],
 *    "removed_vms": ["id", ...],
 *    "net_vms": [each new or changed item, whole],
 *    "removed_net_vms": ["id", ...],
 *    any other member of the document only when it changed, whole}
 *
 * Applied to the whole document at REV it gives the whole document at NEW
 * (VMs kept in id order, as the controller lists them; the items of
 * AGENT_NET_VMS too, a list only documents for newer agents carry). A
 * member the new document drops is never expressed as a delta: the whole
 * document goes instead. An answer without "delta_from" is a whole
 * document. */
#pragma once

#include "api/agentproto.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DESIRED_DELTA_FROM "delta_from"
#define DESIRED_DELTA_REMOVED "removed_vms"
#define DESIRED_DELTA_REMOVED_NET_VMS "removed_net_vms"
/* The query parameter an agent able to merge a delta sends: delta=1. */
#define DESIRED_DELTA_QUERY "delta"

/* One revision of a document cut into digests, and (when kept) the
 * compact text of each part, as desired_delta_text() assembles a delta
 * from. */
struct desired_part {
    char *key;      /* VM id, or the member's name */
    uint8_t hash[16];
    char *text;     /* compact JSON of the part; NULL once dropped */
};

/* Items of the AGENT_NET_VMS list that share their id's text before its
 * first '/' (a network's): cut once and shared by reference between the
 * documents of every node that carries them. Read-only once made. */
struct desired_run {
    int refs;                  /* atomic */
    char *key;                 /* the ids' common text before '/' */
    uint8_t digest[16];        /* of every key and digest in order */
    struct desired_part *items; /* sorted by key, with their texts */
    size_t n;
    /* The change to it from the run it was last compared with (of digest
     * diff_from), kept for the next document with that base: every node
     * of a network holds the same. Under lock. */
    pthread_mutex_t lock;
    bool diffed;
    uint8_t diff_from[16];
    char *diff_changed, *diff_removed; /* each part after a comma */
    size_t diff_n;
};

struct desired_parts {
    int64_t revision;
    /* Digest of every part together (desired_parts_whole(): worked out
     * when first asked for, not at each change). */
    uint8_t whole[16];
    bool whole_ok;
    struct desired_part *vms;    /* sorted by key */
    size_t n_vms;
    struct desired_part *members; /* every member but the lists, revision */
    size_t n_members;
    bool has_net_vms;            /* the document has AGENT_NET_VMS */
    struct desired_run **runs;   /* its items, sorted by run key */
    size_t n_runs;
};

/* A run of key `key` holding items (n of them, keys and texts taken and
 * hashed here, each key beginning with key and '/'), one reference
 * held. */
struct desired_run *desired_run_new(const char *key,
                                    struct desired_part *items, size_t n);
struct desired_run *desired_run_ref(struct desired_run *r);
/* p's digest of every part together: two cuts of the same parts have the
 * same. */
const uint8_t *desired_parts_whole(struct desired_parts *p);
/* Accepts NULL. */
void desired_run_unref(struct desired_run *r);
/* Give p the AGENT_NET_VMS list made of runs (n of them, sorted by key,
 * their references taken), in place of any it had. */
void desired_parts_put_runs(struct desired_parts *p, struct desired_run **runs,
                            size_t n);

/* Cut `doc` (a whole document: an object with "revision" and a "vms"
 * array of objects with string "id"s, maybe an AGENT_NET_VMS array of
 * objects with ids "RUN/ITEM") into parts with their texts. NULL when it
 * is not such a document. Owned: desired_parts_free(). */
struct desired_parts *desired_parts_new(const json_t *doc);
/* The parts of a document made from `base` (which must hold its texts)
 * by a change to the VMs vm_ids (n_vm_ids of them) and to any member:
 * `doc` is the new document with those of the VMs it still holds, and
 * every member, whole; the other VMs are base's. The same parts as
 * desired_parts_new() of the whole new document. NULL when `doc` is not
 * such a document (a VM it holds is not named, or not a document at
 * all) or base lacks a text. Owned: desired_parts_free(). */
struct desired_parts *desired_parts_update(const struct desired_parts *base,
                                           const json_t *doc,
                                           const char *const *vm_ids,
                                           size_t n_vm_ids);
/* Set member `key` of p to the JSON text `text` (taken: freed with p),
 * in place of one so named: a member its maker wrote as text. */
void desired_parts_put(struct desired_parts *p, const char *key, char *text);
/* Drop the parts' texts, keeping the digests (a base for later deltas). */
void desired_parts_drop_text(struct desired_parts *p);
/* Accepts NULL. */
void desired_parts_free(struct desired_parts *p);

/* The delta from `base` to `cur` (which must hold its texts) as compact
 * JSON ending in a newline, owned by the caller; *ret_len its length.
 * NULL when a delta cannot say it (a member dropped) or would not pay
 * (more than half of cur's VMs changed, with more than a few VMs). */
char *desired_delta_text(const struct desired_parts *base,
                         const struct desired_parts *cur, size_t *ret_len);

/* The whole document `p` was cut from, assembled from its texts (which
 * it must hold) as compact JSON ending in a newline: the same JSON value
 * (VMs in id order, members in name order), without serialising the
 * document a second time. Owned by the caller; *ret_len its length.
 * NULL when a text was dropped. */
char *desired_parts_text(const struct desired_parts *p, size_t *ret_len);

/* Whether `answer` is a delta (has "delta_from"). */
bool desired_delta_is(const json_t *answer);

/* Merge delta `delta` into whole document `whole` (at delta_from):
 * 0 and *ret_doc (new reference: the whole document at the delta's
 * revision); -ESTALE when `whole` is NULL or at another revision than the
 * delta's delta_from (ask for the whole document); -EINVAL when the delta
 * is malformed. Neither argument is changed. */
int desired_delta_apply(const json_t *whole, const json_t *delta,
                        json_t **ret_doc);
