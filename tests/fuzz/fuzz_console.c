/* Serial console tails (nodeagent/console.c): bytes a guest writes, made
 * into a JSON string the status carries. The result must be valid UTF-8
 * without control characters but \n and \t, and within both limits. The
 * first two bytes pick the limits. */
#include "tests/fuzz/fuzz.h"
#include "nodeagent/console.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max_esc = data[0] * 4u, max_raw = data[1] * 4u;
    _cleanup_free_ char *t = console_sanitize((const char *)data + 2, size - 2,
                                              max_esc, max_raw);
    if (!t)
        abort();
    size_t len = strlen(t);
    if (len > max_raw)
        abort();
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if ((c < 0x20 && c != '\n' && c != '\t' && c != 0x1b) || c == 0x7f)
            abort();
    }
    /* jansson refuses invalid UTF-8: a string it takes is valid. */
    json_auto_t *j = json_string(t);
    if (!j)
        abort();
    _cleanup_free_ char *esc = json_dumps(j, JSON_ENCODE_ANY);
    if (strlen(esc) - 2 > max_esc)
        abort();
    return 0;
}
