/* The S3 backup store (bstore_s3.c): the bstore ops over an S3-compatible
 * object store's REST API, uploads spooled on local disk until their
 * commit. */
#pragma once

#include "controller/bstore.h"

struct bstore_s3_opts {
    const char *url;       /* s3://BUCKET or http[s]://HOST[:PORT]/BUCKET */
    const char *region;    /* SigV4 region; NULL: us-east-1 */
    const char *key_file;  /* one line KEY:SECRET, mode 0600 */
    const char *ca_file;   /* CA to trust instead of the system's, or NULL */
    const char *spool_dir; /* uploads in flight and blobs being read */
    uint64_t max_size;     /* as bstore.max_size; 0: S3's own limit */
    uint64_t part_size;    /* multipart above this; 0: 64 MiB */
};

/* A store on the bucket `o` names. Nothing is sent yet: a bucket that is
 * not there shows at the first call. 0 and *ret (freed with
 * bstore_free()), or -errno (message printed): -EINVAL for a bad URL,
 * region or key file, -EPERM for a key file others may read. */
int bstore_s3_new(const struct bstore_s3_opts *o, struct bstore **ret);
