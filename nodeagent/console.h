/* Tails of serial console logs, made safe to carry as a JSON string by
 * console_sanitize (common/termtext.h). */
#pragma once

#include "common/termtext.h"
#include "common/util.h"

#include <sys/types.h>

/* Read the last bytes of the log at `path` and sanitize them. *ret_size and
 * *ret_mtime_ns describe the file (to notice changes). 0, -ENOENT when
 * there is no log yet, or -errno. */
int console_tail(const char *path, size_t max_escaped, size_t max_raw,
                 char **ret_text, off_t *ret_size, int64_t *ret_mtime_ns);
