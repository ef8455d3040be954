/* The answer to an HTTP Upgrade as the node agent and fogctl read it
 * (api/client.c api_upgrade_head, api_upgrade_refusal): the controller's
 * (or anyone on the path's) bytes up to the blank line, then a refusal's
 * body. Whatever comes, the status is a real one, the body kept is every
 * byte that came (none read past it) and at most the bound. */
#include "tests/fuzz/fuzz.h"
#include "api/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    const char *end = memmem(data, size, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head_len = (size_t)(end - (const char *)data) + 4;
    /* As read_head leaves it: the head then what came with it,
     * NUL-terminated. */
    _cleanup_free_ char *in = fuzz_cstr(data, size);
    struct api_reply r = { 0 };
    size_t want = 0;
    if (api_upgrade_head(in, head_len, &r, &want) < 0) {
        if (r.status || r.headers)
            abort(); /* a refusal leaves the reply untouched */
        return 0;
    }
    if (r.status < 100 || r.status > 599 || !r.headers || want > 65536)
        abort();
    size_t rest = size - head_len;
    if (rest > want)
        rest = want;
    api_upgrade_refusal(&r, in + head_len, rest);
    if (r.body_len != rest || memcmp(r.body, in + head_len, rest) != 0 ||
        r.body[rest] != '\0')
        abort();
    _cleanup_free_ char *why = api_reply_describe(&r);
    if (!why)
        abort();
    api_reply_clear(&r);
    return 0;
}
