/* Small shared helpers: allocation that aborts on OOM, cleanup attributes,
 * ownership hand-off, and string predicates used by every folder. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))

/* Take ownership out of a variable that has a cleanup attribute. */
#define TAKE_PTR(p)                                                            \
    ({                                                                         \
        __typeof__(p) _p_ = (p);                                               \
        (p) = NULL;                                                            \
        _p_;                                                                   \
    })

static inline void freep(void *p) { free(*(void **)p); }
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* Allocation wrappers: abort with a message when memory runs out, so callers
 * never handle NULL from them. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) _printf_(1, 2);

static inline bool streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static inline bool startswith(const char *s, const char *prefix)
{
    return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Constant-time comparison of two equal-length byte strings. */
bool mem_eq_ct(const void *a, const void *b, size_t n);
/* Length of the well-formed UTF-8 sequence at p (n > 0 bytes left) that
 * is not ASCII, or 0: no overlong forms, surrogates or code points past
 * U+10FFFF (RFC 3629). */
size_t utf8_seq_len(const unsigned char *p, size_t n);

/* Arrays of records kept in the order of a string each holds in place
 * (a char array at byte offset `off`, as a VM's id): a lookup is a
 * binary search, not a walk of every record.
 * sorted_at(): where `key` is among base[n] (records of `size` bytes),
 * or where it would go; *found says which.
 * sorted_insert(): a zeroed record at index `at` of the array *basep
 * points to, the ones from there on moved up one and *n counted up: a
 * pointer to it. */
size_t sorted_at(const void *base, size_t n, size_t size, size_t off,
                 const char *key, bool *found);
void *sorted_insert(void *basep, size_t *n, size_t size, size_t at);

/* Parse a decimal int64 in [min, max]; whole string must be a number.
 * Returns 0 or -EINVAL / -ERANGE. */
int parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret);

/* Parse a size with optional suffix K, M, G, T (binary) into units of
 * `unit` bytes (1 for bytes, 1<<20 for MiB...). Rounds up. 0 or -EINVAL. */
int parse_size(const char *s, uint64_t unit, uint64_t *ret);
