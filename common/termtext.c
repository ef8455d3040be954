/* Strip terminal escapes (colours, cursor moves, titles) from console
 * output, so a log reads as text: "[  OK  ] Started" rather than
 * "\e[0;32m  OK  \e[0m] Started"; and console text made valid UTF-8 without
 * stray controls, the form in which logs are carried and stored. */
#include "common/termtext.h"
#include "common/buf.h"
#include "common/util.h"

#include <stdint.h>

#include <string.h>

#define ESC 0x1b
#define BEL 0x07

char *term_strip(const char *s, size_t len, size_t *ret_len)
{
    const unsigned char *p = (const unsigned char *)s;
    char *out = xmalloc(len + 1);
    size_t n = 0, i = 0;

    while (i < len) {
        unsigned char ch = p[i];
        if (ch == ESC) {
            if (i + 1 >= len)
                break;
            unsigned char kind = p[i + 1];
            i += 2;
            if (kind == '[') {
                /* parameters and intermediates, then a final 0x40-0x7e */
                while (i < len && (p[i] < 0x40 || p[i] > 0x7e))
                    i++;
                i++;
            } else if (kind == ']' || kind == 'P' || kind == '_' ||
                       kind == '^') {
                /* a string, ended by BEL or ST (ESC \) */
                while (i < len && p[i] != BEL &&
                       !(p[i] == ESC && i + 1 < len && p[i + 1] == '\\'))
                    i++;
                i += (i < len && p[i] == ESC) ? 2 : 1;
            } else if (kind == '(' || kind == ')' || kind == '#') {
                i++; /* charset designation: one more byte */
            }
            continue;
        }
        if (ch == '\r' && i + 1 < len && p[i + 1] == '\n') {
            i++;
            continue;
        }
        if ((ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f) {
            i++;
            continue;
        }
        out[n++] = (char)ch;
        i++;
    }
    out[n] = '\0';
    if (ret_len)
        *ret_len = n;
    return out;
}

/* Length of a valid UTF-8 sequence at p (within n bytes), or 0; the C1
 * controls (U+0080..U+009F) are terminal controls, not text. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    if (p[0] < 0x80)
        return 1;
    size_t len = utf8_seq_len(p, n);
    if (len == 2 && p[0] == 0xc2 && p[1] < 0xa0)
        return 0;
    return len;
}

static size_t escaped_len(unsigned char c)
{
    return c == 0x1b ? 6 /* \u001b */
         : (c == '"' || c == '\\' || c == '\n' || c == '\t') ? 2 : 1;
}

size_t console_escaped_size(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += escaped_len((unsigned char)*s);
    return n;
}

char *console_sanitize(const char *data, size_t len, size_t max_escaped,
                       size_t max_raw)
{
    struct buf b = BUF_INIT;
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < len;) {
        unsigned c = p[i];
        if (c == '\r' || c == 0) {
            i++;
            continue;
        }
        if (c < 0x80) {
            /* ESC stays: terminal colours are what the guest wrote;
             * readers strip them for display. */
            char out = (c < 0x20 && c != '\n' && c != '\t' && c != 0x1b) ||
                               c == 0x7f ? '?' : (char)c;
            buf_append(&b, &out, 1);
            i++;
            continue;
        }
        size_t l = utf8_len(p + i, len - i);
        if (l == 0) {
            buf_append(&b, "?", 1);
            i++;
        } else {
            buf_append(&b, p + i, l);
            i += l;
        }
    }
    /* Keep the end: walk back while the budget allows. */
    const unsigned char *s = (const unsigned char *)buf_str(&b);
    size_t n = b.len, start = n, esc = 0;
    while (start > 0) {
        size_t e = escaped_len(s[start - 1]);
        if (esc + e > max_escaped || n - (start - 1) > max_raw)
            break;
        esc += e;
        start--;
    }
    while (start < n && (s[start] & 0xc0) == 0x80)
        start++;
    char *out = xstrndup((const char *)s + start, n - start);
    buf_free(&b);
    return out;
}
