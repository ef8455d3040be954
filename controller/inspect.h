/* Offline inspection of a disk image with libguestfs (OS type,
 * distribution, version, architecture). Slow (an appliance boots), so it
 * runs only after import, off the request path. */
#pragma once

#include "common/util.h"

struct inspect_result {
    char *os_type;   /* "linux", "windows", ... */
    char *distro;    /* "debian", ... */
    char *version;   /* "12.5" */
    char *arch;      /* "x86_64" */
};

/* Inspect read-only. 0 and *ret filled (inspect_result_clear it), -ENOENT
 * when no operating system was found, -ENOTSUP when libguestfs is not
 * installed, other -errno when the appliance failed; with both of these,
 * *ret_error is set (caller frees). */
int inspect_image(const char *path, const char *format,
                  struct inspect_result *ret, char **ret_error);
void inspect_result_clear(struct inspect_result *r);
