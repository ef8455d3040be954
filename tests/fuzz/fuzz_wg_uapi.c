/* The WireGuard UAPI replies (netfabric/wg_uapi.c) come from a userspace
 * daemon over a socket: a get reply parses to a device that must format
 * back, and a set reply parses to 0 or -errno. */
#include "tests/fuzz/fuzz.h"
#include "common/buf.h"
#include "netfabric/wg_uapi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    _cleanup_free_ char *text = fuzz_cstr(data, size);
    struct wg_device d = { 0 };
    if (wg_uapi_parse_get(text, &d) == 0) {
        struct buf out = BUF_INIT;
        (void)wg_uapi_format_set(&d, &out);
        buf_free(&out);
        wg_device_clear(&d);
    }
    (void)wg_uapi_parse_set_reply(text);
    return 0;
}
