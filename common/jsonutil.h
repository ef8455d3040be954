/* JSON helpers over jansson: strict checking of objects that come from
 * outside (unknown fields, types, bounds), and cleanup helpers. */
#pragma once

#include "common/util.h"

#include <jansson.h>

/* jansson 2.14 provides json_decrefp() for use with cleanup. */
#define _cleanup_json_ _cleanup_(json_decrefp)

enum jf_type {
    JF_STRING,  /* string of length min..max */
    JF_NAME,    /* string obeying name_is_valid() */
    JF_UUID,    /* canonical lowercase UUID */
    JF_INT,     /* integer in min..max */
    JF_BOOL,
    JF_OBJECT,
    JF_ARRAY,   /* array of at most max items */
    JF_ENUM,    /* string, one of `choices` (NULL-terminated) */
    JF_TYPE_MAX
};

struct jfield {
    const char *name;
    enum jf_type type;
    bool required;
    int64_t min, max;
    const char *const *choices;
};

/* Why a check failed: `field` names the offending member (owned). */
struct jerr {
    char *field;
    char *detail;
};
void jerr_clear(struct jerr *e);

/* Check that `obj` is an object whose members are all in `fields`, with the
 * right types and bounds, and that every required one is present.
 * 0 or -EINVAL with *err filled (caller clears it). */
int json_check(const json_t *obj, const struct jfield *fields, size_t n,
               struct jerr *err);

/* Accessors that tolerate absence: NULL / def when missing or of another
 * type. The string is owned by the JSON value. */
const char *json_str(const json_t *obj, const char *key);
int64_t json_int(const json_t *obj, const char *key, int64_t def);
bool json_bool(const json_t *obj, const char *key, bool def);

/* The string members `key` of the objects in array `arr`, sorted, for
 * json_keys_has(): one pass and a sort instead of a scan of the array
 * per lookup. The strings belong to arr (valid while it is unchanged);
 * free the array. NULL with *ret_n 0 when there are none. */
const char **json_keys_sorted(const json_t *arr, const char *key,
                              size_t *ret_n);
/* Whether s is among keys[0..n) (from json_keys_sorted). */
bool json_keys_has(const char *const *keys, size_t n, const char *s);

/* Serialise compactly; caller frees. */
char *json_dumps_compact(const json_t *j);
