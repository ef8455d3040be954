/* JSON writer into a buffer, and a validator for JSON text kept in store
 * columns so it can be copied into an answer without being parsed into a
 * tree and serialised again. */
#include "common/jsonw.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

static void sep(struct jsonw *w)
{
    if (w->comma)
        buf_append(&w->b, ",", 1);
    w->comma = true;
}

void jsonw_obj_begin(struct jsonw *w)
{
    sep(w);
    buf_append(&w->b, "{", 1);
    w->comma = false;
}

void jsonw_obj_end(struct jsonw *w)
{
    buf_append(&w->b, "}", 1);
    w->comma = true;
}

void jsonw_arr_begin(struct jsonw *w)
{
    sep(w);
    buf_append(&w->b, "[", 1);
    w->comma = false;
}

void jsonw_arr_end(struct jsonw *w)
{
    buf_append(&w->b, "]", 1);
    w->comma = true;
}

/* The string with escapes and replacement characters. */
static void put_escaped_slow(struct buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0; /* start of the bytes that need no escaping */
    buf_append(b, "\"", 1);
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t l = utf8_seq_len(p + i, len - i);
            if (l) {
                i += l;
                continue;
            }
        }
        buf_append(b, s + run, i - run);
        char e[7] = { '\\', 0 };
        size_t el = 2;
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
            if (c >= 0x80) { /* not UTF-8: the replacement character */
                memcpy(e, "\\ufffd", 6);
            } else {
                memcpy(e, "\\u00", 4);
                e[4] = hex[c >> 4];
                e[5] = hex[c & 15];
            }
            el = 6;
            break;
        }
        buf_append(b, e, el);
        run = ++i;
    }
    buf_append(b, s + run, len - run);
    buf_append(b, "\"", 1);
}

/* Length of the leading bytes of s that are copied as they are: printable
 * ASCII other than '"' and '\\'. */
static size_t plain_prefix(const unsigned char *p, size_t len)
{
    /* Eight bytes at a time: none has its top bit set, none is below
     * 0x20, '"' or '\\' (the classic "has a zero byte" test on the bytes
     * xored with each). */
    const uint64_t ones = UINT64_C(0x0101010101010101);
    const uint64_t high = UINT64_C(0x8080808080808080);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        uint64_t q = v ^ (ones * '"'), s = v ^ (ones * '\\');
        uint64_t bad = (v | (v - ones * 0x20) | (q - ones) | (s - ones)) &
                       high;
        if (bad)
            break;
    }
    while (i < len && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' &&
           p[i] != '\\')
        i++;
    return i;
}

/* The string quoted, prefixed by `pre` and followed by `post` (each one
 * byte or NUL for none); one copy when nothing needs escaping, which is
 * what ids, names, states and keys are. */
static void put_string(struct buf *b, char pre, const char *s, size_t len,
                       char post)
{
    if (plain_prefix((const unsigned char *)s, len) != len) {
        if (pre)
            buf_append(b, &pre, 1);
        put_escaped_slow(b, s, len);
        if (post)
            buf_append(b, &post, 1);
        return;
    }
    buf_reserve(b, len + 4);
    char *d = b->data + b->len;
    if (pre)
        *d++ = pre;
    *d++ = '"';
    memcpy(d, s, len);
    d += len;
    *d++ = '"';
    if (post)
        *d++ = post;
    *d = '\0';
    b->len = (size_t)(d - b->data);
}

void jsonw_key(struct jsonw *w, const char *key)
{
    put_string(&w->b, w->comma ? ',' : 0, key, strlen(key), ':');
    w->comma = false;
}

void jsonw_strn(struct jsonw *w, const char *s, size_t len)
{
    put_string(&w->b, w->comma ? ',' : 0, s, len, 0);
    w->comma = true;
}

void jsonw_str(struct jsonw *w, const char *s)
{
    if (!s)
        jsonw_null(w);
    else
        jsonw_strn(w, s, strlen(s));
}

void jsonw_int(struct jsonw *w, int64_t v)
{
    /* Digits from the end, on the magnitude as unsigned so INT64_MIN
     * has one too. */
    char t[24];
    char *p = t + sizeof(t);
    uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    if (w->comma)
        *--p = ',';
    w->comma = true;
    buf_append(&w->b, p, (size_t)(t + sizeof(t) - p));
}

void jsonw_bool(struct jsonw *w, bool v)
{
    sep(w);
    buf_puts(&w->b, v ? "true" : "false");
}

void jsonw_null(struct jsonw *w)
{
    sep(w);
    buf_append(&w->b, "null", 4);
}

static int dump_cb(const char *s, size_t len, void *data)
{
    buf_append(data, s, len);
    return 0;
}

void jsonw_json(struct jsonw *w, const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_STRING:
        jsonw_strn(w, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        jsonw_int(w, json_integer_value(v));
        break;
    case JSON_NULL:
        jsonw_null(w);
        break;
    default:
        sep(w);
        if (json_dump_callback(v, dump_cb, &w->b, JSON_COMPACT |
                               JSON_ENCODE_ANY) < 0)
            abort(); /* only on out of memory */
        break;
    }
}

/* ---- validation ------------------------------------------------------ */

struct scan {
    const char *p, *end;
};

static void skip_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' ||
                             *s->p == '\r'))
        s->p++;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
}

static bool scan_string(struct scan *s)
{
    s->p++; /* the opening quote */
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (++s->p >= s->end)
                return false;
            if (*s->p == 'u') {
                if (s->end - s->p < 5)
                    return false;
                for (int i = 1; i <= 4; i++)
                    if (!is_hex(s->p[i]))
                        return false;
                s->p += 5;
            } else if (strchr("\"\\/bfnrt", *s->p) && *s->p) {
                s->p++;
            } else {
                return false;
            }
            continue;
        }
        if (c >= 0x80) {
            size_t l = utf8_seq_len((const unsigned char *)s->p,
                                (size_t)(s->end - s->p));
            if (!l)
                return false;
            s->p += l;
            continue;
        }
        s->p++;
    }
    return false;
}

static bool scan_digits(struct scan *s)
{
    const char *b = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > b;
}

static bool scan_number(struct scan *s)
{
    if (*s->p == '-')
        s->p++;
    if (s->p < s->end && *s->p == '0')
        s->p++;
    else if (!scan_digits(s))
        return false;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!scan_digits(s))
            return false;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!scan_digits(s))
            return false;
    }
    return true;
}

static bool scan_word(struct scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return false;
    s->p += n;
    return true;
}

static bool scan_value(struct scan *s, int depth)
{
    skip_ws(s);
    if (s->p >= s->end)
        return false;
    char c = *s->p;
    if (c == '"')
        return scan_string(s);
    if (c == '-' || (c >= '0' && c <= '9'))
        return scan_number(s);
    if (c == 't')
        return scan_word(s, "true");
    if (c == 'f')
        return scan_word(s, "false");
    if (c == 'n')
        return scan_word(s, "null");
    if ((c != '[' && c != '{') || depth >= 64)
        return false;
    char close = c == '[' ? ']' : '}';
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return true;
    }
    for (;;) {
        if (close == '}') {
            skip_ws(s);
            if (s->p >= s->end || *s->p != '"' || !scan_string(s))
                return false;
            skip_ws(s);
            if (s->p >= s->end || *s->p++ != ':')
                return false;
        }
        if (!scan_value(s, depth + 1))
            return false;
        skip_ws(s);
        if (s->p >= s->end)
            return false;
        if (*s->p == close) {
            s->p++;
            return true;
        }
        if (*s->p++ != ',')
            return false;
    }
}

bool json_text_valid(const char *text, size_t len)
{
    struct scan s = { text, text + len };
    if (!scan_value(&s, 0))
        return false;
    skip_ws(&s);
    return s.p == s.end;
}

int jsonw_text(struct jsonw *w, const char *text, size_t len, char open)
{
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' ||
                       text[i] == '\r'))
        i++;
    if (i == len || text[i] != open || !json_text_valid(text, len))
        return -EINVAL;
    sep(w);
    buf_append(&w->b, text, len);
    return 0;
}
