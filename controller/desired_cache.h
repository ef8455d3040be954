/* Each node's desired-state document as the long polls one change wakes
 * share it: read from the store and serialised once per committed change,
 * then handed to every poll of that node, which answers without reading
 * the store itself. */
#pragma once

#include "controller/app.h"

/* One node's document as the reply carries it: compact JSON ending in a
 * newline. Read-only once built; shared by reference (the cache holds
 * one), freed with the last. */
struct desired_text {
    int refs;         /* atomic */
    int64_t revision; /* the document's "revision" */
    size_t len;       /* bytes of text, without its NUL */
    char text[];
};

/* A change to node_id's desired state (every node's when NULL) has
 * committed: what is cached for it is no longer served. Call it before
 * waking the node's polls. Never waits for a build in progress (one that
 * began before the call is not kept). Thread-safe. */
void desired_cache_invalidate(const char *node_id);
/* desired_cache_invalidate(node_id), and its next document is read whole
 * from the store, not built from the one before (which a drift would
 * carry on). */
void desired_cache_rebuild(const char *node_id);

/* node_id's current document: the cached one when no invalidation came
 * since it was built and its revision is not older than `since` (the
 * revision the asking poll already has) nor `rev_min` (the revision the
 * store was just seen at, or -1), else one built now from one
 * consistent read of the store and kept: with deltas, only the VMs the
 * store marks as changed since the document kept (schema 047), come or
 * gone are read, the others taken from it. Builds of one node go one at a
 * time, so the polls one change wakes read the store once between them.
 * 0 and *ret_text (a new reference: desired_text_unref()); -ENOENT when
 * the node is removed or unknown (kept too); -EIO or -EINVAL as
 * desired_build() (nothing kept). An unapproved node's document is
 * desired_build_unapproved()'s. With `delta` (the agent merges deltas)
 * the text is the delta from `since` to the current document
 * (api/desired_delta.h) when a base for `since` is kept, from the moment
 * a delta was first asked for on (the digests of the node's last few
 * documents are kept); an empty delta when `since` is the current
 * revision. */
int desired_cache_get(struct app *a, const char *node_id, int64_t since,
                      int64_t rev_min, bool delta,
                      struct desired_text **ret_text);

/* Drop one reference. Accepts NULL. */
void desired_text_unref(struct desired_text *t);
