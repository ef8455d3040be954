/* The address probe's packets (api/probe.c) come from anyone on the
 * internet to the controller's probe ports, and back to nodes: whatever
 * decodes must encode back to the same bytes. */
#include "tests/fuzz/fuzz.h"
#include "api/probe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct probe_msg m;
    if (probe_decode(data, size, &m) == 0) {
        uint8_t out[PROBE_SIZE];
        if (probe_encode(&m, out) != 0 || memcmp(out, data, PROBE_SIZE) != 0)
            abort();
    }
    _cleanup_free_ char *text = fuzz_cstr(data, size);
    struct probe_ep e;
    if (probe_ep_parse(text, &e) == 0) {
        char back[PROBE_EP_TEXT_MAX];
        if (probe_ep_format(&e, back) != 0)
            abort();
    }
    return 0;
}
