/* Growable byte buffer, always NUL-terminated so it can be used as a string.
 * The buffer owns `data`; buf_steal() hands it to the caller. */
#pragma once

#include "common/util.h"

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

void buf_append(struct buf *b, const void *data, size_t len);
/* Room for `extra` more bytes (and the NUL) at data + len, for writers
 * that fill it themselves and then advance len and terminate. */
void buf_reserve(struct buf *b, size_t extra);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) _printf_(2, 3);
void buf_reset(struct buf *b);
/* Return the contents (caller frees) and leave the buffer empty. */
char *buf_steal(struct buf *b);
void buf_free(struct buf *b);
static inline const char *buf_str(const struct buf *b)
{
    return b->data ? b->data : "";
}
