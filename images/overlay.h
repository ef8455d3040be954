/* VM disks as qcow2 overlays on a cached base image: written directly
 * (header, refcount table and block, empty L1), no qemu-img at run time.
 * The guest writes into the overlay; the base is shared and read-only. */
#pragma once

#include "common/util.h"

#include <sys/types.h>

/* Create `path` (must not exist) as a qcow2 v3 overlay of `base_path`
 * (an absolute path; its format, qcow2 or raw, is read from its content)
 * with virtual size `size` bytes, rounded up to 512; 0 means the base's
 * size. The disk may grow past the base, never shrink below it.
 * 0, or -EINVAL with *ret_reason (caller frees) when the base is not a
 * usable image or size is too small, -EEXIST, other -errno. */
int overlay_create(const char *path, const char *base_path, uint64_t size,
                   mode_t mode, char **ret_reason);
