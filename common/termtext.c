/* Strip terminal escapes (colours, cursor moves, titles) from console
 * output, so a log reads as text: "[  OK  ] Started" rather than
 * "\e[0;32m  OK  \e[0m] Started". */
#include "common/termtext.h"
#include "common/util.h"

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
