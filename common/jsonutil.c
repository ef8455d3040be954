/* Strict JSON object checking and small accessors. */
#include "common/jsonutil.h"

#include "common/ids.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void jerr_clear(struct jerr *e)
{
    free(e->field);
    free(e->detail);
    e->field = e->detail = NULL;
}

static int fail(struct jerr *err, const char *field, char *detail)
{
    err->field = xstrdup(field);
    err->detail = detail;
    return -EINVAL;
}

static const struct jfield *find_field(const struct jfield *fields, size_t n,
                                       const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (streq(fields[i].name, key))
            return &fields[i];
    return NULL;
}

static int check_one(const struct jfield *f, const json_t *v, struct jerr *err)
{
    switch (f->type) {
    case JF_STRING:
    case JF_NAME:
    case JF_UUID:
    case JF_ENUM: {
        if (!json_is_string(v))
            return fail(err, f->name, xasprintf("'%s' must be a string", f->name));
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (strlen(s) != len)
            return fail(err, f->name,
                        xasprintf("'%s' must not contain NUL", f->name));
        if (f->type == JF_NAME && !name_is_valid(s))
            return fail(err, f->name,
                        xasprintf("'%s' must be a hostname: 1 to 63 of "
                                  "a-z, 0-9 and '-', not at either end",
                                  f->name));
        if (f->type == JF_UUID && !uuid_is_valid(s))
            return fail(err, f->name, xasprintf("'%s' must be a UUID", f->name));
        if (f->type == JF_ENUM) {
            for (const char *const *c = f->choices; *c; c++)
                if (streq(*c, s))
                    return 0;
            return fail(err, f->name,
                        xasprintf("'%s' has an unknown value", f->name));
        }
        if (f->type == JF_STRING &&
            ((int64_t)len < f->min || (int64_t)len > f->max))
            return fail(err, f->name,
                        xasprintf("'%s' must be %lld to %lld bytes long",
                                  f->name, (long long)f->min,
                                  (long long)f->max));
        return 0;
    }
    case JF_INT: {
        if (!json_is_integer(v))
            return fail(err, f->name,
                        xasprintf("'%s' must be an integer", f->name));
        json_int_t i = json_integer_value(v);
        if (i < f->min || i > f->max)
            return fail(err, f->name,
                        xasprintf("'%s' must be between %lld and %lld", f->name,
                                  (long long)f->min, (long long)f->max));
        return 0;
    }
    case JF_BOOL:
        if (!json_is_boolean(v))
            return fail(err, f->name, xasprintf("'%s' must be a boolean", f->name));
        return 0;
    case JF_OBJECT:
        if (!json_is_object(v))
            return fail(err, f->name, xasprintf("'%s' must be an object", f->name));
        return 0;
    case JF_ARRAY:
        if (!json_is_array(v))
            return fail(err, f->name, xasprintf("'%s' must be an array", f->name));
        if ((int64_t)json_array_size(v) > f->max)
            return fail(err, f->name,
                        xasprintf("'%s' has more than %lld items", f->name,
                                  (long long)f->max));
        return 0;
    case JF_TYPE_MAX:
        break;
    }
    return fail(err, f->name, xstrdup("internal: bad field type"));
}

int json_check(const json_t *obj, const struct jfield *fields, size_t n,
               struct jerr *err)
{
    const char *key;
    json_t *v;

    if (!json_is_object(obj))
        return fail(err, "", xstrdup("the body must be a JSON object"));
    json_object_foreach((json_t *)obj, key, v) {
        const struct jfield *f = find_field(fields, n, key);
        if (!f) {
            /* The key came from outside: report it, but bounded. */
            _cleanup_free_ char *shown = xstrndup(key, 64);
            for (char *c = shown; *c; c++)
                if ((unsigned char)*c < 0x20)
                    *c = '?';
            return fail(err, shown, xasprintf("unknown field '%s'", shown));
        }
        if (check_one(f, v, err) < 0)
            return -EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        if (fields[i].required && !json_object_get(obj, fields[i].name))
            return fail(err, fields[i].name,
                        xasprintf("'%s' is required", fields[i].name));
    return 0;
}

const char *json_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char **json_keys_sorted(const json_t *arr, const char *key,
                              size_t *ret_n)
{
    const char **keys = NULL;
    size_t n = 0, i;
    json_t *o;
    if (json_array_size(arr) > 0)
        keys = xcalloc(json_array_size(arr), sizeof(*keys));
    json_array_foreach(arr, i, o) {
        const char *s = json_str(o, key);
        if (s)
            keys[n++] = s;
    }
    if (n > 1)
        qsort(keys, n, sizeof(*keys), cmp_strp);
    *ret_n = n;
    return keys;
}

bool json_keys_has(const char *const *keys, size_t n, const char *s)
{
    return s && n > 0 && bsearch(&s, keys, n, sizeof(*keys), cmp_strp);
}

int64_t json_int(const json_t *obj, const char *key, int64_t def)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

bool json_bool(const json_t *obj, const char *key, bool def)
{
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

char *json_dumps_compact(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    if (!s)
        abort();
    return s;
}
