/* The relay's frames (api/relay.c) come from anyone on the internet to
 * the hub's relay port, and from the hub to nodes: whatever decodes must
 * encode back to the same bytes, and a token check must never read past
 * what it was given. Over TCP the same frames come after their lengths. */
#include "tests/fuzz/fuzz.h"
#include "api/relay.h"

#include <errno.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct relay_frame f;
    if (relay_decode(data, size, &f) == 0) {
        uint8_t out[RELAY_FRAME_MAX];
        size_t len;
        if (relay_encode(&f, out, sizeof(out), &len) != 0 || len != size ||
            memcmp(out, data, size) != 0)
            abort();
        if (f.type == RELAY_HELLO) {
            static const uint8_t secret[RELAY_SECRET_LEN] = { 7 };
            enum probe_nat nat;
            int64_t exp;
            if (relay_token_check(secret, f.id, f.token, 0, &nat, &exp) == 0)
                abort(); /* a forged MAC */
        }
    }
    /* The same bytes as a TCP stream: frames found never run past the
     * input nor over a frame's largest, and each re-encodes with its
     * prefix to the same bytes. */
    size_t off = 0, frame, used;
    int r;
    while ((r = relay_stream_next(data + off, size - off, &frame, &used)) ==
           1) {
        if (frame == 0 || frame > RELAY_FRAME_MAX ||
            used != frame + RELAY_STREAM_PREFIX || off + used > size)
            abort();
        if (relay_decode(data + off + RELAY_STREAM_PREFIX, frame, &f) == 0) {
            uint8_t out[RELAY_STREAM_PREFIX + RELAY_FRAME_MAX];
            size_t len;
            if (relay_stream_encode(&f, out, sizeof(out), &len) != 0 ||
                len != used || memcmp(out, data + off, used) != 0)
                abort();
        }
        off += used;
    }
    if (r < 0 && r != -EBADMSG)
        abort();
    _cleanup_free_ char *text = fuzz_cstr(data, size);
    uint8_t id[RELAY_ID_LEN];
    if (relay_id_parse(text, id) == 0) {
        char back[37];
        relay_id_format(id, back);
        if (strcmp(back, text) != 0)
            abort();
    }
    return 0;
}
