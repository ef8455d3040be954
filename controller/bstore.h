/* The backup store: where the hub keeps the encrypted VM backups its nodes
 * upload. A small vtable so the default (a directory under the
 * controller's data dir, bstore_dir.c) and an S3-compatible object store
 * (bstore_s3.c) are siblings behind one interface. On S3, uploads spool
 * on local disk (begin, append and stat there), commit = the digest check
 * then PutObject or a multipart upload, open = GetObject, stat of a
 * committed blob = HeadObject, remove = DeleteObject, list and entries =
 * ListObjectsV2 (with the spool's uploads), and read = a ranged GetObject
 * whose bytes are passed on as they arrive, so a restore streams a blob
 * of any size with no copy of it on the hub (open, which downloads the
 * whole object first, is for small reads and tests).
 * Blob ids are ones the controller made (UUIDs); anything else is refused
 * before it reaches a path or key. Every call is safe from several
 * request threads at once. */
#pragma once

#include "common/util.h"

#include <stdint.h>

struct bstore;

/* One blob or open upload, as the sweep sees the store. */
struct bstore_entry {
    char id[37];
    bool committed;
    int64_t mtime;  /* when its bytes last changed, s since the epoch */
};

/* Where a read's bytes go, in order: 0 to go on, or -errno to stop the
 * read, which returns it. Also called with len 0 now and then while the
 * store sends nothing, so that a reader who has gone stops a stalled
 * read. */
typedef int (*bstore_write_fn)(void *ctx, const void *data, size_t len);

struct bstore_ops {
    /* Start (or keep) an upload of blob `id`: 0 when it exists and is not
     * committed yet, -EEXIST when already committed, or -errno. */
    int (*begin)(struct bstore *s, const char *id);
    /* Append `len` bytes at `offset`, which must equal the bytes received
     * so far: -ESPIPE otherwise (nothing written). *ret_size (may be
     * NULL) is the received size after the call, also on -ESPIPE.
     * -ENOENT when no upload of `id` is open, -EFBIG past max_size. */
    int (*append)(struct bstore *s, const char *id, uint64_t offset,
                  const void *data, size_t len, uint64_t *ret_size);
    /* Bytes received of `id` and whether it is committed. -ENOENT. */
    int (*stat)(struct bstore *s, const char *id, uint64_t *ret_size,
                bool *ret_committed);
    /* Seal the upload when its bytes are exactly `size` long and hash to
     * `sha256` (64 lowercase hex). On a mismatch the upload is discarded
     * and -EBADMSG returned; -ENOENT when there is no open upload. */
    int (*commit)(struct bstore *s, const char *id, const char *sha256,
                  uint64_t size);
    /* A committed blob for reading: an fd positioned at 0 (the caller
     * closes it) and its size. -ENOENT when missing or not committed. */
    int (*open)(struct bstore *s, const char *id, int *ret_fd,
                uint64_t *ret_size);
    /* Optional (NULL: read through open()): bytes [offset, offset + len)
     * of a committed blob, handed to write(ctx, ...) as the store sends
     * them, never held whole on the hub. 0 once all len bytes went out;
     * -ENOENT when the blob is missing (before any byte), -EIO when the
     * store failed or sent fewer bytes (what was written is good: read
     * on from there), or write's -errno. */
    int (*read)(struct bstore *s, const char *id, uint64_t offset,
                uint64_t len, bstore_write_fn write, void *ctx);
    /* Drop a blob or an open upload. 0, or -ENOENT when neither exists. */
    int (*remove)(struct bstore *s, const char *id);
    /* The ids of committed blobs, a NULL-terminated array the caller frees
     * with bstore_ids_free(); *ret_n may be NULL. */
    int (*list)(struct bstore *s, char ***ret_ids, size_t *ret_n);
    /* Every committed blob and open upload, an array the caller frees;
     * files and objects that are not the store's are left out. 0 or
     * -errno. */
    int (*entries)(struct bstore *s, struct bstore_entry **ret,
                   size_t *ret_n);
    void (*free)(struct bstore *s);
};

struct bstore {
    const struct bstore_ops *ops;
    uint64_t max_size; /* bytes one blob may reach; 0: no limit */
};

/* The directory store: `dir` is made 0700 (and its parents), blobs are
 * files 0600 named by their id, uploads `<id>.part`. 0 and *ret, or
 * -errno (message printed). */
int bstore_dir_new(const char *dir, uint64_t max_size, struct bstore **ret);

/* Free a list from ops->list (NULL is fine). */
void bstore_ids_free(char **ids);

/* True for an id the store accepts: one the controller generated. */
bool bstore_id_ok(const char *id);

static inline void bstore_free(struct bstore *s)
{
    if (s)
        s->ops->free(s);
}
static inline void bstore_freep(struct bstore **s)
{
    bstore_free(*s);
}
