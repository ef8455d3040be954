/* Curve25519 key handling for the mesh: generation, derivation, text
 * forms and the private key file. */
#include "netfabric/wgkey.h"

#include "common/fs.h"
#include "common/ids.h"

#include <errno.h>
#include <fcntl.h>
#include <nettle/base64.h>
#include <nettle/curve25519.h>
#include <sys/stat.h>

void wgkey_clamp(uint8_t key[WGKEY_LEN])
{
    key[0] &= 248;
    key[31] = (key[31] & 127) | 64;
}

void wgkey_generate_private(uint8_t ret_private[WGKEY_LEN])
{
    random_bytes(ret_private, WGKEY_LEN);
    wgkey_clamp(ret_private);
}

void wgkey_public(const uint8_t private_key[WGKEY_LEN],
                  uint8_t ret_public[WGKEY_LEN])
{
    /* nettle clamps the scalar itself, as X25519 requires. */
    curve25519_mul_g(ret_public, private_key);
}

void wgkey_to_base64(const uint8_t key[WGKEY_LEN], char out[WGKEY_B64_LEN + 1])
{
    base64_encode_raw(out, WGKEY_LEN, key);
    out[WGKEY_B64_LEN] = '\0';
}

int wgkey_from_base64(const char *text, uint8_t ret_key[WGKEY_LEN])
{
    struct base64_decode_ctx ctx;
    uint8_t key[WGKEY_LEN + 3];
    size_t n = sizeof(key);

    if (!text || strlen(text) != WGKEY_B64_LEN || text[43] != '=')
        return -EINVAL;
    base64_decode_init(&ctx);
    if (!base64_decode_update(&ctx, &n, key, WGKEY_B64_LEN, text) ||
        !base64_decode_final(&ctx) || n != WGKEY_LEN)
        return -EINVAL;
    /* Reject non-canonical encodings (stray low bits in the last digit)
     * so one key has exactly one text form. */
    char again[WGKEY_B64_LEN + 1];
    wgkey_to_base64(key, again);
    if (strcmp(again, text) != 0)
        return -EINVAL;
    memcpy(ret_key, key, WGKEY_LEN);
    return 0;
}

void wgkey_to_hex(const uint8_t key[WGKEY_LEN], char out[WGKEY_HEX_LEN + 1])
{
    hex_encode(key, WGKEY_LEN, out);
}

int wgkey_from_hex(const char *text, uint8_t ret_key[WGKEY_LEN])
{
    if (!text || strlen(text) != WGKEY_HEX_LEN)
        return -EINVAL;
    return hex_decode(text, ret_key, WGKEY_LEN);
}

bool wgkey_equal(const uint8_t a[WGKEY_LEN], const uint8_t b[WGKEY_LEN])
{
    return mem_eq_ct(a, b, WGKEY_LEN);
}

bool wgkey_is_zero(const uint8_t key[WGKEY_LEN])
{
    static const uint8_t zero[WGKEY_LEN];
    return mem_eq_ct(key, zero, WGKEY_LEN);
}

int wgkey_load_or_create(const char *path, uint8_t ret_private[WGKEY_LEN])
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return -EINVAL;
        if (st.st_mode & (S_IRWXG | S_IRWXO))
            return -EPERM;
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = file_read(path, 256, &data, &len);
        if (r < 0)
            return r;
        while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' ||
                           data[len - 1] == ' '))
            data[--len] = '\0';
        uint8_t key[WGKEY_LEN];
        r = wgkey_from_base64(data, key);
        explicit_bzero(data, len);
        if (r < 0)
            return r;
        memcpy(ret_private, key, WGKEY_LEN);
        explicit_bzero(key, sizeof(key));
        return 0;
    }
    if (errno != ENOENT)
        return -errno;

    uint8_t key[WGKEY_LEN];
    char text[WGKEY_B64_LEN + 2];
    wgkey_generate_private(key);
    wgkey_to_base64(key, text);
    text[WGKEY_B64_LEN] = '\n';
    text[WGKEY_B64_LEN + 1] = '\0';
    int r = file_write_atomic(path, text, WGKEY_B64_LEN + 1, 0600);
    explicit_bzero(text, sizeof(text));
    if (r == 0)
        memcpy(ret_private, key, WGKEY_LEN);
    explicit_bzero(key, sizeof(key));
    return r;
}
