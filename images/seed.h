/* A small ISO 9660 writer for configuration seeds (cloud-init NoCloud
 * `cidata`): one root directory of regular files, Rock Ridge names so the
 * guest sees "meta-data" and "user-data" rather than 8.3 upper case. */
#pragma once

#include "common/buf.h"
#include "common/util.h"

#include <sys/types.h>

struct seed_file {
    const char *name; /* 1..64 bytes of [a-z0-9._-], unique */
    const void *data; /* not owned */
    size_t len;
};

#define SEED_MAX_FILES 16

/* Build the image in memory into `out` (appended). `volume_id` is 1..32
 * characters of [A-Za-z0-9_-]. Files must be sorted by nothing in
 * particular; their names are checked. mtime stamps every record.
 * 0, or -EINVAL for a bad name, volume id, duplicate or too many files. */
int seed_iso_build(const char *volume_id, const struct seed_file *files,
                   size_t n, int64_t mtime, struct buf *out);
/* seed_iso_build() written atomically to `path` with `mode`. 0 or -errno. */
int seed_iso_write(const char *path, const char *volume_id,
                   const struct seed_file *files, size_t n, mode_t mode);
