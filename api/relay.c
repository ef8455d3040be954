/* The relay's frames, tokens and path rule (api/relay.h). */
#include "api/relay.h"
#include "common/ids.h"

#include <errno.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <stdio.h>
#include <string.h>

static const uint8_t magic[4] = { 'F', 'O', 'G', 'R' };

int relay_encode(const struct relay_frame *f, uint8_t *out, size_t cap,
                 size_t *ret_len)
{
    size_t len;
    if (f->type == RELAY_HELLO)
        len = RELAY_HELLO_LEN;
    else if (f->type == RELAY_WELCOME)
        len = RELAY_WELCOME_LEN;
    else if (f->type == RELAY_DATA && f->payload && f->payload_len > 0 &&
             f->payload_len <= RELAY_PAYLOAD_MAX)
        len = RELAY_HDR_LEN + RELAY_ID_LEN + f->payload_len;
    else
        return -EINVAL;
    if (cap < len)
        return -ENOBUFS;
    memcpy(out, magic, sizeof(magic));
    out[4] = RELAY_VERSION;
    out[5] = (uint8_t)f->type;
    out[6] = out[7] = 0;
    memcpy(out + RELAY_HDR_LEN, f->id, RELAY_ID_LEN);
    uint8_t *body = out + RELAY_HDR_LEN + RELAY_ID_LEN;
    if (f->type == RELAY_HELLO)
        memcpy(body, f->token, RELAY_TOKEN_LEN);
    else if (f->type == RELAY_DATA)
        memmove(body, f->payload, f->payload_len);
    *ret_len = len;
    return 0;
}

int relay_stream_encode(const struct relay_frame *f, uint8_t *out, size_t cap,
                        size_t *ret_len)
{
    if (cap < RELAY_STREAM_PREFIX)
        return -ENOBUFS;
    size_t len;
    int e = relay_encode(f, out + RELAY_STREAM_PREFIX,
                         cap - RELAY_STREAM_PREFIX, &len);
    if (e < 0)
        return e;
    out[0] = (uint8_t)(len >> 8);
    out[1] = (uint8_t)len;
    *ret_len = len + RELAY_STREAM_PREFIX;
    return 0;
}

int relay_stream_next(const uint8_t *buf, size_t len, size_t *ret_frame,
                      size_t *ret_used)
{
    if (len < RELAY_STREAM_PREFIX)
        return 0;
    size_t n = (size_t)buf[0] << 8 | buf[1];
    if (n == 0 || n > RELAY_FRAME_MAX)
        return -EBADMSG;
    if (len < RELAY_STREAM_PREFIX + n)
        return 0;
    *ret_frame = n;
    *ret_used = RELAY_STREAM_PREFIX + n;
    return 1;
}

int relay_decode(const uint8_t *data, size_t len, struct relay_frame *ret)
{
    if (!data || len < RELAY_HDR_LEN + RELAY_ID_LEN ||
        memcmp(data, magic, sizeof(magic)) != 0 ||
        data[4] != RELAY_VERSION || data[6] || data[7])
        return -EBADMSG;
    struct relay_frame f = { .type = data[5] };
    memcpy(f.id, data + RELAY_HDR_LEN, RELAY_ID_LEN);
    const uint8_t *body = data + RELAY_HDR_LEN + RELAY_ID_LEN;
    size_t n = len - RELAY_HDR_LEN - RELAY_ID_LEN;
    if (f.type == RELAY_HELLO) {
        if (len != RELAY_HELLO_LEN)
            return -EBADMSG;
        memcpy(f.token, body, RELAY_TOKEN_LEN);
    } else if (f.type == RELAY_WELCOME) {
        if (len != RELAY_WELCOME_LEN)
            return -EBADMSG;
    } else if (f.type == RELAY_DATA) {
        if (n == 0 || n > RELAY_PAYLOAD_MAX)
            return -EBADMSG;
        f.payload = body;
        f.payload_len = n;
    } else {
        return -EBADMSG;
    }
    *ret = f;
    return 0;
}

int relay_id_parse(const char *uuid, uint8_t out[RELAY_ID_LEN])
{
    if (!uuid_is_valid(uuid))
        return -EINVAL;
    char hex[2 * RELAY_ID_LEN + 1];
    size_t n = 0;
    for (const char *c = uuid; *c; c++)
        if (*c != '-')
            hex[n++] = *c;
    hex[n] = '\0';
    return hex_decode(hex, out, RELAY_ID_LEN);
}

void relay_id_format(const uint8_t id[RELAY_ID_LEN], char out[37])
{
    char hex[2 * RELAY_ID_LEN + 1];
    hex_encode(id, RELAY_ID_LEN, hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
             hex + 16, hex + 20);
}

static void token_mac(const uint8_t secret[RELAY_SECRET_LEN],
                      const uint8_t id[RELAY_ID_LEN], const uint8_t head[9],
                      uint8_t mac[32])
{
    static const char label[] = "fogfabric relay token v1";
    struct hmac_sha256_ctx h;
    hmac_sha256_set_key(&h, RELAY_SECRET_LEN, secret);
    hmac_sha256_update(&h, sizeof(label) - 1, (const uint8_t *)label);
    hmac_sha256_update(&h, RELAY_ID_LEN, id);
    hmac_sha256_update(&h, 9, head);
    hmac_sha256_digest(&h, 32, mac);
}

void relay_token_make(const uint8_t secret[RELAY_SECRET_LEN],
                      const uint8_t id[RELAY_ID_LEN], int64_t expires,
                      enum probe_nat nat, uint8_t out[RELAY_TOKEN_LEN])
{
    uint64_t e = (uint64_t)expires;
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(e >> (56 - 8 * i));
    out[8] = (uint8_t)nat;
    token_mac(secret, id, out, out + 9);
}

int relay_token_check(const uint8_t secret[RELAY_SECRET_LEN],
                      const uint8_t id[RELAY_ID_LEN],
                      const uint8_t token[RELAY_TOKEN_LEN], int64_t now,
                      enum probe_nat *ret_nat, int64_t *ret_expires)
{
    uint8_t mac[32];
    token_mac(secret, id, token, mac);
    if (!memeql_sec(mac, token + 9, sizeof(mac)) || token[8] >= PROBE_NAT_MAX)
        return -EACCES;
    uint64_t e = 0;
    for (int i = 0; i < 8; i++)
        e = e << 8 | token[i];
    if ((int64_t)e <= now)
        return -ETIMEDOUT;
    *ret_nat = (enum probe_nat)token[8];
    *ret_expires = (int64_t)e;
    return 0;
}

bool relay_path_needed(enum probe_nat a, enum probe_nat b)
{
    if (a == PROBE_NAT_NONE || b == PROBE_NAT_NONE)
        return false;
    return !(a == PROBE_NAT_INDEPENDENT && b == PROBE_NAT_INDEPENDENT);
}
