/* Content checks for disk images coming from outside (uploads, URLs):
 * decide by the bytes, never the file name, whether a file is a usable
 * qcow2 or raw disk, and refuse the qcow2 features that reach outside it. */
#pragma once

#include "common/util.h"

enum imgcheck_format {
    IMGCHECK_RAW,
    IMGCHECK_QCOW2,
    IMGCHECK_FORMAT_MAX
};

struct imgcheck_info {
    enum imgcheck_format format;
    uint64_t file_size;    /* bytes on disk */
    uint64_t virtual_size; /* bytes the guest sees */
};

/* "raw" / "qcow2". */
const char *imgcheck_format_name(enum imgcheck_format f);

/* Inspect the open file `fd` (read with pread, position untouched).
 * A qcow2 (v2/v3) must have no backing file, no external data file, no
 * encryption, no internal snapshots, sane cluster size, a virtual size its
 * L1 table can address, and every table and cluster it points at inside
 * the file. Anything else must look like a raw disk: non-empty, a multiple
 * of 512 bytes, not text, not another image format's magic. Both the file
 * size and the virtual size must be at most `max_bytes` (0: no limit).
 * 0 and *ret, or -EINVAL (refused) / -errno (read error) with *ret_reason
 * set to a sentence for the user (caller frees). */
int imgcheck_fd(int fd, uint64_t max_bytes, struct imgcheck_info *ret,
                char **ret_reason);
/* imgcheck_fd() on a path. */
int imgcheck_file(const char *path, uint64_t max_bytes,
                  struct imgcheck_info *ret, char **ret_reason);
