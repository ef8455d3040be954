/* Terminal output made plain: what a serial console log view prints. */
#pragma once

#include <stddef.h>

/* A copy of the len bytes at s without terminal escape sequences (ECMA-48
 * CSI "ESC [ ... final", OSC "ESC ] ... BEL or ESC \", and two-byte
 * "ESC x"), carriage returns before a newline and other C0 controls but
 * tab and newline. An unfinished sequence at the end is dropped. Returns
 * the NUL-terminated text (caller frees); its length in *ret_len when not
 * NULL. */
char *term_strip(const char *s, size_t len, size_t *ret_len);
