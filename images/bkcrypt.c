/* Streaming authenticated encryption of backups (see bkcrypt.h). */
#include "images/bkcrypt.h"
#include "common/fs.h"
#include "common/ids.h"

#include <errno.h>
#include <nettle/chacha-poly1305.h>
#include <nettle/gcm.h>
#include <nettle/hmac.h>
#include <nettle/sha2.h>

static const uint8_t bk_magic[8] = { 'F', 'O', 'G', 'B', 'K', 'U', 'P', 0 };

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

/* Version 1 seals with ChaCha20-Poly1305, version 2 with AES-256-GCM
 * (about four times as fast where the CPU has AES-NI, which hosts that
 * run KVM have); both have 12-byte nonces and 16-byte tags. */
struct bk_stream {
    uint32_t version;
    union {
        struct chacha_poly1305_ctx chacha;
        struct gcm_aes256_ctx gcm;
    } aead;
    uint8_t header[BKCRYPT_HEADER_LEN];
    uint64_t counter;
};

static void bk_stream_init(struct bk_stream *s,
                           const uint8_t key[BKCRYPT_KEY_LEN],
                           const uint8_t header[BKCRYPT_HEADER_LEN])
{
    memcpy(s->header, header, BKCRYPT_HEADER_LEN);
    struct hmac_sha256_ctx h;
    hmac_sha256_set_key(&h, BKCRYPT_KEY_LEN, key);
    hmac_sha256_update(&h, 16, header + 16);
    uint8_t sub[SHA256_DIGEST_SIZE];
    hmac_sha256_digest(&h, sizeof(sub), sub);
    s->version = get32(header + 8);
    if (s->version == 1)
        chacha_poly1305_set_key(&s->aead.chacha, sub);
    else
        gcm_aes256_set_key(&s->aead.gcm, sub);
    memset(sub, 0, sizeof(sub));
    memset(&h, 0, sizeof(h));
    s->counter = 0;
}

/* Start the next segment: nonce = 64-bit counter, 32-bit last flag. */
static void bk_stream_next(struct bk_stream *s, bool last)
{
    uint8_t nonce[CHACHA_POLY1305_NONCE_SIZE];
    put32(nonce, (uint32_t)(s->counter >> 32));
    put32(nonce + 4, (uint32_t)s->counter);
    put32(nonce + 8, last ? 1 : 0);
    s->counter++;
    if (s->version == 1) {
        chacha_poly1305_set_nonce(&s->aead.chacha, nonce);
        chacha_poly1305_update(&s->aead.chacha, BKCRYPT_HEADER_LEN,
                               s->header);
    } else {
        gcm_aes256_set_iv(&s->aead.gcm, sizeof(nonce), nonce);
        gcm_aes256_update(&s->aead.gcm, BKCRYPT_HEADER_LEN, s->header);
    }
}

/* Seal n bytes of the current segment: ciphertext, then its tag. */
static void bk_stream_seal(struct bk_stream *s, size_t n, uint8_t *out,
                           const uint8_t *in)
{
    if (s->version == 1) {
        chacha_poly1305_encrypt(&s->aead.chacha, n, out, in);
        chacha_poly1305_digest(&s->aead.chacha, BKCRYPT_TAG_LEN, out + n);
    } else {
        gcm_aes256_encrypt(&s->aead.gcm, n, out, in);
        gcm_aes256_digest(&s->aead.gcm, BKCRYPT_TAG_LEN, out + n);
    }
}

/* Open n bytes of the current segment into out and compute its tag. */
static void bk_stream_open(struct bk_stream *s, size_t n, uint8_t *out,
                           const uint8_t *in, uint8_t tag[BKCRYPT_TAG_LEN])
{
    if (s->version == 1) {
        chacha_poly1305_decrypt(&s->aead.chacha, n, out, in);
        chacha_poly1305_digest(&s->aead.chacha, BKCRYPT_TAG_LEN, tag);
    } else {
        gcm_aes256_decrypt(&s->aead.gcm, n, out, in);
        gcm_aes256_digest(&s->aead.gcm, BKCRYPT_TAG_LEN, tag);
    }
}

int bkcrypt_encrypt_fd(const uint8_t key[BKCRYPT_KEY_LEN], int in_fd,
                       int out_fd, uint32_t segment, uint64_t *ret_size,
                       char *sha256_hex)
{
    return bkcrypt_encrypt_fd_version(key, in_fd, out_fd, segment,
                                      BKCRYPT_VERSION, ret_size, sha256_hex);
}

int bkcrypt_encrypt_fd_version(const uint8_t key[BKCRYPT_KEY_LEN], int in_fd,
                               int out_fd, uint32_t segment, uint32_t version,
                               uint64_t *ret_size, char *sha256_hex)
{
    if (segment == 0)
        segment = BKCRYPT_SEGMENT;
    if (segment < BKCRYPT_SEGMENT_MIN || segment > BKCRYPT_SEGMENT_MAX ||
        version < 1 || version > BKCRYPT_VERSION)
        return -EINVAL;
    uint8_t header[BKCRYPT_HEADER_LEN];
    memcpy(header, bk_magic, sizeof(bk_magic));
    put32(header + 8, version);
    put32(header + 12, segment);
    random_bytes(header + 16, 16);
    struct bk_stream s;
    bk_stream_init(&s, key, header);
    struct sha256_ctx sha;
    sha256_init(&sha);
    sha256_update(&sha, sizeof(header), header);
    int e = fd_write_full(out_fd, header, sizeof(header));
    uint64_t total = sizeof(header);

    /* One segment of lookahead: a segment is the last when the stream
     * ends right after it. */
    size_t cap = (size_t)segment + 1 + BKCRYPT_TAG_LEN;
    _cleanup_free_ uint8_t *in = xmalloc(cap);
    _cleanup_free_ uint8_t *out = xmalloc(cap);
    size_t have = 0;
    bool last = false;
    while (e == 0 && !last) {
        ssize_t r = fd_read_full(in_fd, in + have,
                                 (size_t)segment + 1 - have);
        if (r < 0) {
            e = (int)r;
            break;
        }
        have += (size_t)r;
        last = have <= segment;
        size_t n = last ? have : segment;
        bk_stream_next(&s, last);
        bk_stream_seal(&s, n, out, in);
        sha256_update(&sha, n + BKCRYPT_TAG_LEN, out);
        e = fd_write_full(out_fd, out, n + BKCRYPT_TAG_LEN);
        total += n + BKCRYPT_TAG_LEN;
        if (!last) {
            in[0] = in[segment];
            have = 1;
        }
    }
    memset(&s, 0, sizeof(s));
    if (e < 0)
        return e;
    if (ret_size)
        *ret_size = total;
    if (sha256_hex) {
        uint8_t d[SHA256_DIGEST_SIZE];
        sha256_digest(&sha, sizeof(d), d);
        hex_encode(d, sizeof(d), sha256_hex);
    }
    return 0;
}

int bkcrypt_decrypt_fd(const uint8_t key[BKCRYPT_KEY_LEN], int in_fd,
                       int out_fd)
{
    uint8_t header[BKCRYPT_HEADER_LEN];
    ssize_t r = fd_read_full(in_fd, header, sizeof(header));
    if (r < 0)
        return (int)r;
    if ((size_t)r < sizeof(header) ||
        memcmp(header, bk_magic, sizeof(bk_magic)) != 0)
        return -EBADMSG;
    if (get32(header + 8) < 1 || get32(header + 8) > BKCRYPT_VERSION)
        return -EPROTONOSUPPORT;
    uint32_t segment = get32(header + 12);
    if (segment < BKCRYPT_SEGMENT_MIN || segment > BKCRYPT_SEGMENT_MAX)
        return -EBADMSG;
    struct bk_stream s;
    bk_stream_init(&s, key, header);

    size_t full = (size_t)segment + BKCRYPT_TAG_LEN;
    _cleanup_free_ uint8_t *in = xmalloc(full + 1);
    _cleanup_free_ uint8_t *out = xmalloc(full);
    size_t have = 0;
    bool last = false;
    int e = 0;
    while (e == 0 && !last) {
        r = fd_read_full(in_fd, in + have, full + 1 - have);
        if (r < 0) {
            e = (int)r;
            break;
        }
        have += (size_t)r;
        last = have <= full;
        size_t n = last ? have : full;
        if (n < BKCRYPT_TAG_LEN) {
            e = -EBADMSG;
            break;
        }
        n -= BKCRYPT_TAG_LEN;
        bk_stream_next(&s, last);
        uint8_t tag[BKCRYPT_TAG_LEN];
        bk_stream_open(&s, n, out, in, tag);
        if (!mem_eq_ct(tag, in + n, sizeof(tag))) {
            e = -EBADMSG;
            break;
        }
        e = fd_write_full(out_fd, out, n);
        if (!last) {
            in[0] = in[full];
            have = 1;
        }
    }
    memset(&s, 0, sizeof(s));
    memset(out, 0, full);
    return e;
}
