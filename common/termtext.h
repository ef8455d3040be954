/* Terminal output made plain: what a serial console log view prints, and
 * console text made safe to carry and store. */
#pragma once

#include <stddef.h>

/* A copy of the len bytes at s without terminal escape sequences (ECMA-48
 * CSI "ESC [ ... final", OSC "ESC ] ... BEL or ESC \", and two-byte
 * "ESC x"), carriage returns before a newline and other C0 controls but
 * tab and newline. An unfinished sequence at the end is dropped. Returns
 * the NUL-terminated text (caller frees); its length in *ret_len when not
 * NULL. */
char *term_strip(const char *s, size_t len, size_t *ret_len);

/* Clean data[0..len) (invalid UTF-8 and control characters other than \n,
 * \t and ESC become '?', \r and NUL are dropped) and keep its end, starting
 * on a character boundary, so that the JSON-escaped text takes at most
 * max_escaped bytes and the raw text at most max_raw. A cleaned text is
 * left as it is. Caller frees. */
char *console_sanitize(const char *data, size_t len, size_t max_escaped,
                       size_t max_raw);

/* Bytes of s (a console_sanitize() result) once JSON-escaped. */
size_t console_escaped_size(const char *s);
