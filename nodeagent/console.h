/* Tails of serial console logs, made safe to carry as a JSON string:
 * valid UTF-8 only, no control characters but newline, tab and ESC (kept
 * for terminal colours), and no more
 * than a given number of bytes once JSON-escaped. */
#pragma once

#include "common/util.h"

#include <sys/types.h>

/* Clean data[0..len) (invalid UTF-8 and control characters other than \n,
 * \t and ESC become '?', \r and NUL are dropped) and keep its end, starting on
 * a character boundary, so that the JSON-escaped text takes at most
 * max_escaped bytes and the raw text at most max_raw. Caller frees. */
char *console_sanitize(const char *data, size_t len, size_t max_escaped,
                       size_t max_raw);

/* Bytes of s (a console_sanitize() result) once JSON-escaped. */
size_t console_escaped_size(const char *s);

/* Read the last bytes of the log at `path` and sanitize them. *ret_size and
 * *ret_mtime_ns describe the file (to notice changes). 0, -ENOENT when
 * there is no log yet, or -errno. */
int console_tail(const char *path, size_t max_escaped, size_t max_raw,
                 char **ret_text, off_t *ret_size, int64_t *ret_mtime_ns);
