/* images/bkcrypt: a backup stream opens back to the same bytes with the
 * same key, hides the plaintext, and is refused when tampered with,
 * truncated (also at a segment boundary), reordered, or opened with
 * another key; streams of the previous format version still open. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/ids.h"
#include "images/bkcrypt.h"
#include "tests/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>

#define SEG BKCRYPT_SEGMENT_MIN
#define FRAME (SEG + BKCRYPT_TAG_LEN)

static const uint8_t key[BKCRYPT_KEY_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };

static int open_file(const char *name, const void *data, size_t len)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", tu_dir, name);
    if (data)
        assert_int_equal(file_write_atomic(p, data, len, 0600), 0);
    int fd = open(p, data ? O_RDONLY : (O_RDWR | O_CREAT | O_TRUNC), 0600);
    assert_true(fd >= 0);
    return fd;
}

static uint8_t *slurp(int fd, size_t *len)
{
    off_t end = lseek(fd, 0, SEEK_END);
    assert_true(end >= 0);
    uint8_t *b = xmalloc((size_t)end + 1);
    assert_int_equal(pread(fd, b, (size_t)end, 0), end);
    *len = (size_t)end;
    return b;
}

/* Seal `len` bytes of a pattern; returns the ciphertext. */
static uint8_t *seal(const uint8_t *plain, size_t len, size_t *ret_len)
{
    int in = open_file("plain", plain, len);
    int out = open_file("sealed", NULL, 0);
    uint64_t size = 0;
    char hex[65];
    assert_int_equal(bkcrypt_encrypt_fd(key, in, out, SEG, &size, hex), 0);
    uint8_t *c = slurp(out, ret_len);
    assert_int_equal(size, *ret_len);
    char want[65];
    sha256_hex(c, *ret_len, want);
    assert_string_equal(hex, want);
    close(in);
    close(out);
    return c;
}

/* Open ciphertext; 0 with the plaintext, or the error. */
static int unseal(const uint8_t *k, const uint8_t *c, size_t len,
                  uint8_t **ret_plain, size_t *ret_len)
{
    int in = open_file("cipher", c, len);
    int out = open_file("opened", NULL, 0);
    int e = bkcrypt_decrypt_fd(k, in, out);
    if (e == 0 && ret_plain)
        *ret_plain = slurp(out, ret_len);
    close(in);
    close(out);
    return e;
}

static uint8_t *pattern(size_t len)
{
    uint8_t *p = xmalloc(len + 1);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 7 + i / 251);
    return p;
}

static void round_trip_any_length_hides_plaintext(void **state)
{
    (void)state;
    static const size_t lens[] = { 0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG,
                                   3 * SEG + 17 };
    for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
        _cleanup_free_ uint8_t *p = pattern(lens[i]);
        size_t clen = 0, plen = 0;
        _cleanup_free_ uint8_t *c = seal(p, lens[i], &clen);
        size_t segs = lens[i] ? (lens[i] + SEG - 1) / SEG : 1;
        assert_int_equal(clen, BKCRYPT_HEADER_LEN + lens[i] +
                               segs * BKCRYPT_TAG_LEN);
        if (lens[i] >= 64)
            assert_null(memmem(c, clen, p + 16, 32));
        _cleanup_free_ uint8_t *back = NULL;
        assert_int_equal(unseal(key, c, clen, &back, &plen), 0);
        assert_int_equal(plen, lens[i]);
        if (plen)
            assert_memory_equal(back, p, plen);
    }
    /* two seals of the same bytes differ (a fresh salt each) */
    _cleanup_free_ uint8_t *p = pattern(100);
    size_t l1, l2;
    _cleanup_free_ uint8_t *c1 = seal(p, 100, &l1);
    _cleanup_free_ uint8_t *c2 = seal(p, 100, &l2);
    assert_int_equal(l1, l2);
    assert_true(memcmp(c1, c2, l1) != 0);
}

static void tamper_and_wrong_key_refused(void **state)
{
    (void)state;
    size_t len = 2 * SEG + 5, clen;
    _cleanup_free_ uint8_t *p = pattern(len);
    _cleanup_free_ uint8_t *c = seal(p, len, &clen);
    /* a flipped bit anywhere: header, ciphertext, tag */
    static const size_t at[] = { 20, BKCRYPT_HEADER_LEN + 3,
                                 BKCRYPT_HEADER_LEN + FRAME + 100,
                                 BKCRYPT_HEADER_LEN + FRAME - 1 };
    for (size_t i = 0; i < ARRAY_SIZE(at); i++) {
        c[at[i]] ^= 0x10;
        assert_int_equal(unseal(key, c, clen, NULL, NULL), -EBADMSG);
        c[at[i]] ^= 0x10;
    }
    uint8_t other[BKCRYPT_KEY_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8, 10 };
    assert_int_equal(unseal(other, c, clen, NULL, NULL), -EBADMSG);
    c[0] = 'X';
    assert_int_equal(unseal(key, c, clen, NULL, NULL), -EBADMSG);
    c[0] = 'F';
    c[11] = 9; /* version */
    assert_int_equal(unseal(key, c, clen, NULL, NULL), -EPROTONOSUPPORT);
    c[11] = BKCRYPT_VERSION;
    assert_int_equal(unseal(key, c, clen, NULL, NULL), 0);
}

/* New backups are sealed in version 2 (AES-256-GCM); a version 1 stream
 * (ChaCha20-Poly1305), as older nodes sealed them, still opens; a header
 * claiming the other version fails authentication. */
static void version_2_sealed_version_1_still_opened(void **state)
{
    (void)state;
    size_t len = 2 * SEG + 9, clen = 0, plen = 0;
    _cleanup_free_ uint8_t *p = pattern(len);
    _cleanup_free_ uint8_t *c2 = seal(p, len, &clen);
    assert_int_equal(c2[11], 2);
    int in = open_file("plain", p, len);
    int out = open_file("sealed", NULL, 0);
    assert_int_equal(bkcrypt_encrypt_fd_version(key, in, out, SEG, 3, NULL,
                                                NULL), -EINVAL);
    assert_int_equal(bkcrypt_encrypt_fd_version(key, in, out, SEG, 1, NULL,
                                                NULL), 0);
    size_t c1len = 0;
    _cleanup_free_ uint8_t *c1 = slurp(out, &c1len);
    close(in);
    close(out);
    assert_int_equal(c1len, clen);
    assert_int_equal(c1[11], 1);
    _cleanup_free_ uint8_t *back = NULL;
    assert_int_equal(unseal(key, c1, c1len, &back, &plen), 0);
    assert_int_equal(plen, len);
    assert_memory_equal(back, p, len);
    /* The same salt under the other version: not the same cipher. */
    c1[11] = 2;
    assert_int_equal(unseal(key, c1, c1len, NULL, NULL), -EBADMSG);
    c2[11] = 1;
    assert_int_equal(unseal(key, c2, clen, NULL, NULL), -EBADMSG);
}

static void truncation_refused_also_at_segment_boundary(void **state)
{
    (void)state;
    size_t len = 3 * SEG + 5, clen;
    _cleanup_free_ uint8_t *p = pattern(len);
    _cleanup_free_ uint8_t *c = seal(p, len, &clen);
    /* whole segments dropped from the end, a byte short, only the header */
    static const size_t cut[] = { BKCRYPT_HEADER_LEN + FRAME,
                                  BKCRYPT_HEADER_LEN + 2 * FRAME,
                                  BKCRYPT_HEADER_LEN + 3 * FRAME,
                                  BKCRYPT_HEADER_LEN + 2 * FRAME + 7,
                                  BKCRYPT_HEADER_LEN, 10 };
    for (size_t i = 0; i < ARRAY_SIZE(cut); i++) {
        assert_true(cut[i] < clen);
        assert_int_equal(unseal(key, c, cut[i], NULL, NULL), -EBADMSG);
    }
    /* appended garbage is refused too */
    _cleanup_free_ uint8_t *longer = xmalloc(clen + 20);
    memcpy(longer, c, clen);
    memset(longer + clen, 0, 20);
    assert_int_equal(unseal(key, longer, clen + 20, NULL, NULL), -EBADMSG);
}

static void reordered_segments_refused(void **state)
{
    (void)state;
    size_t len = 3 * SEG + 9, clen;
    _cleanup_free_ uint8_t *p = pattern(len);
    _cleanup_free_ uint8_t *c = seal(p, len, &clen);
    _cleanup_free_ uint8_t *tmp = xmalloc(FRAME);
    uint8_t *s0 = c + BKCRYPT_HEADER_LEN, *s1 = s0 + FRAME;
    memcpy(tmp, s0, FRAME);
    memcpy(s0, s1, FRAME);
    memcpy(s1, tmp, FRAME);
    assert_int_equal(unseal(key, c, clen, NULL, NULL), -EBADMSG);
    /* a segment repeated in place of another */
    memcpy(s1, s0, FRAME);
    assert_int_equal(unseal(key, c, clen, NULL, NULL), -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_any_length_hides_plaintext),
        cmocka_unit_test(tamper_and_wrong_key_refused),
        cmocka_unit_test(version_2_sealed_version_1_still_opened),
        cmocka_unit_test(truncation_refused_also_at_segment_boundary),
        cmocka_unit_test(reordered_segments_refused),
    };
    return cmocka_run_group_tests(tests, tu_dir_setup, tu_dir_teardown);
}
