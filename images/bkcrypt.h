/* Backup encryption: a VM disk image streamed through AES-256-GCM
 * (version 2; version 1, still opened, used ChaCha20-Poly1305) in
 * fixed segments (the STREAM construction), so a backup of any size is
 * sealed and opened in constant memory, and the hub that stores it never
 * sees the disk. Each backup draws a random salt; the segment key is
 * HMAC-SHA256(vm key, salt) and each segment's nonce is its counter plus
 * a last-segment flag, so reordered, dropped, repeated or truncated
 * segments and a changed header all fail authentication.
 *
 * Layout: header (magic "FOGBKUP\0", u32 version, u32 segment size, 16
 * byte salt; all big endian, 32 bytes, authenticated as associated data
 * of every segment), then segments of `segment size` plaintext bytes + a
 * 16 byte tag each; the last segment holds the rest (0 bytes or more). */
#pragma once

#include "common/util.h"

#include <stdint.h>

#define BKCRYPT_KEY_LEN 32
#define BKCRYPT_VERSION 2 /* the version sealed; 1 and 2 are opened */
#define BKCRYPT_HEADER_LEN 32
#define BKCRYPT_TAG_LEN 16
#define BKCRYPT_SEGMENT (1u << 20) /* default plaintext bytes per segment */
#define BKCRYPT_SEGMENT_MIN 4096u
#define BKCRYPT_SEGMENT_MAX (16u << 20)

/* Encrypt everything read from in_fd (to its end) onto out_fd with `key`
 * in segments of `segment` bytes (0: BKCRYPT_SEGMENT). *ret_size (may be
 * NULL) is the ciphertext length and sha256_hex (may be NULL, 65 chars)
 * its SHA-256, what the store verifies on commit. 0, -EINVAL for a bad
 * segment size, or -errno of a read or write. */
int bkcrypt_encrypt_fd(const uint8_t key[BKCRYPT_KEY_LEN], int in_fd,
                       int out_fd, uint32_t segment, uint64_t *ret_size,
                       char *sha256_hex);

/* As bkcrypt_encrypt_fd, in format `version` (1..BKCRYPT_VERSION); for
 * tests of older streams. -EINVAL for another version. */
int bkcrypt_encrypt_fd_version(const uint8_t key[BKCRYPT_KEY_LEN], int in_fd,
                               int out_fd, uint32_t segment, uint32_t version,
                               uint64_t *ret_size, char *sha256_hex);

/* Decrypt a stream made by bkcrypt_encrypt_fd onto out_fd. Plaintext is
 * written as segments authenticate, so on any error the caller must
 * discard what out_fd received. 0, -EBADMSG when the header, a segment
 * or the end of the stream fails authentication (wrong key, tampering,
 * truncation, reordering), -EPROTONOSUPPORT for another version, or
 * -errno of a read or write. */
int bkcrypt_decrypt_fd(const uint8_t key[BKCRYPT_KEY_LEN], int in_fd,
                       int out_fd);
