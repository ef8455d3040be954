/* The backup stream decoder (images/bkcrypt.c) on bytes a backup hub
 * hands back: decrypted with a fixed key, an arbitrary stream either
 * fails cleanly or is one the encoder made. With the first byte odd the
 * rest is plaintext instead: sealed in small segments, it must open to
 * itself, and with any one byte changed or the end cut off, not at all. */
#include "tests/fuzz/fuzz.h"
#include "images/bkcrypt.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

static const uint8_t key[BKCRYPT_KEY_LEN] = "fogfabric fuzz key, 32 bytes!!!";

static int memfd_with(const void *data, size_t n)
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0 || (n && write(fd, data, n) != (ssize_t)n) ||
        lseek(fd, 0, SEEK_SET) < 0)
        abort();
    return fd;
}

/* The whole content of fd. */
static uint8_t *slurp(int fd, size_t *ret_n)
{
    off_t n = lseek(fd, 0, SEEK_END);
    if (n < 0 || lseek(fd, 0, SEEK_SET) < 0)
        abort();
    uint8_t *p = xmalloc((size_t)n + 1);
    if (n && read(fd, p, (size_t)n) != n)
        abort();
    *ret_n = (size_t)n;
    return p;
}

static int open_bytes(const uint8_t *c, size_t n, uint8_t **ret_plain,
                      size_t *ret_n)
{
    int in = memfd_with(c, n), out = memfd_with(NULL, 0);
    int e = bkcrypt_decrypt_fd(key, in, out);
    if (e == 0 && ret_plain)
        *ret_plain = slurp(out, ret_n);
    close(in);
    close(out);
    return e;
}

static void roundtrip(uint8_t how, const uint8_t *plain, size_t n)
{
    static const uint32_t segs[] = { BKCRYPT_SEGMENT_MIN, BKCRYPT_SEGMENT_MIN + 1,
                                     2 * BKCRYPT_SEGMENT_MIN - 1 };
    uint32_t seg = segs[(how >> 1) % ARRAY_SIZE(segs)];
    int in = memfd_with(plain, n), out = memfd_with(NULL, 0);
    uint64_t size = 0;
    if (bkcrypt_encrypt_fd(key, in, out, seg, &size, NULL) < 0)
        abort();
    close(in);
    size_t cn;
    _cleanup_free_ uint8_t *c = slurp(out, &cn);
    close(out);
    /* Header, then one tag per segment: as few segments as hold the
     * data (the last may be full), and one empty for no data. */
    size_t segments = n ? (n + seg - 1) / seg : 1;
    if (cn != size ||
        cn != BKCRYPT_HEADER_LEN + n + segments * BKCRYPT_TAG_LEN)
        abort();
    _cleanup_free_ uint8_t *back = NULL;
    size_t bn = 0;
    if (open_bytes(c, cn, &back, &bn) < 0 || bn != n ||
        (n && memcmp(back, plain, n) != 0))
        abort();
    /* One byte changed anywhere, or the stream cut short, fails. */
    size_t at = (n * 31 + how) % cn;
    c[at] ^= (uint8_t)(how | 1);
    if (open_bytes(c, cn, NULL, NULL) == 0)
        abort();
    c[at] ^= (uint8_t)(how | 1);
    if (open_bytes(c, cn - 1 - at % BKCRYPT_TAG_LEN, NULL, NULL) == 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        roundtrip(data[0], data + 1, size - 1);
        return 0;
    }
    _cleanup_free_ uint8_t *plain = NULL;
    size_t n = 0;
    int e = open_bytes(data + 1, size - 1, &plain, &n);
    if (e < 0 && e != -EBADMSG && e != -EPROTONOSUPPORT)
        abort();
    /* Opened: it held the header and at least one tag, and no more
     * plaintext than ciphertext. */
    if (e == 0 && (size - 1 < BKCRYPT_HEADER_LEN + BKCRYPT_TAG_LEN ||
                   n > size - 1 - BKCRYPT_HEADER_LEN - BKCRYPT_TAG_LEN))
        abort();
    return 0;
}
