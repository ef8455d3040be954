/* A JSON writer straight into one growable buffer: answers built from
 * store rows without a jansson tree per row that is then serialised.
 * Strings are escaped per RFC 8259 and bytes that are not UTF-8 become
 * U+FFFD, so the output is valid JSON whatever the input strings hold;
 * the writer places the commas. */
#pragma once

#include "common/buf.h"

#include <jansson.h>
#include <stdint.h>

struct jsonw {
    struct buf b;   /* the text so far; owned, buf_steal() it when done */
    bool comma;     /* a value was written at this level: next one needs ',' */
};

#define JSONW_INIT { BUF_INIT, false }

void jsonw_obj_begin(struct jsonw *w);
void jsonw_obj_end(struct jsonw *w);
void jsonw_arr_begin(struct jsonw *w);
void jsonw_arr_end(struct jsonw *w);
/* An object member's name; the value written next is its value. */
void jsonw_key(struct jsonw *w, const char *key);
/* A string value; NULL writes null. */
void jsonw_str(struct jsonw *w, const char *s);
void jsonw_strn(struct jsonw *w, const char *s, size_t len);
void jsonw_int(struct jsonw *w, int64_t v);
void jsonw_bool(struct jsonw *w, bool v);
void jsonw_null(struct jsonw *w);
/* A jansson value as it is (NULL writes null). */
void jsonw_json(struct jsonw *w, const json_t *v);
/* JSON text kept as text (a column holding a serialised array or object)
 * written as the value when it is exactly one valid JSON value of type
 * `open` ('[' array, '{' object), surrounding blanks aside: 0, or -EINVAL
 * with nothing written when it is not. */
int jsonw_text(struct jsonw *w, const char *text, size_t len, char open);
/* True when text[0..len) is one valid JSON value (blanks around it
 * allowed), nested at most 64 deep. */
bool json_text_valid(const char *text, size_t len);
