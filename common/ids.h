/* Identifiers and secrets: UUIDs, random tokens, hex, SHA-256 and the name
 * rule every user-chosen name must pass before it reaches a store, XML or a
 * path. */
#pragma once

#include "common/util.h"

#define UUID_STR_LEN 36

/* Random version-4 UUID, lowercase, into out[37]. */
void uuid_generate_str(char out[UUID_STR_LEN + 1]);
/* Version-7 UUID (RFC 9562): the unix time in ms, then a counter within
 * the ms and random bits, so ids made one after the other sort in the
 * order they were made (within a thread) and land at the end of an
 * index instead of anywhere in it. For rows written in bulk whose id
 * may tell when they were made (ledger transactions). */
void uuid_generate_time_str(char out[UUID_STR_LEN + 1]);
/* True if s is a canonical lowercase UUID. */
bool uuid_is_valid(const char *s);
/* Fill buf with n cryptographically random bytes (getrandom); aborts on
 * failure, which only a broken kernel produces. */
void random_bytes(void *buf, size_t n);
/* n random bytes as 2n lowercase hex chars; caller frees. */
char *random_hex(size_t n);

void hex_encode(const void *data, size_t n, char *out /* 2n+1 */);
/* Decode exactly 2n hex chars into out[n]. 0 or -EINVAL. */
int hex_decode(const char *hex, void *out, size_t n);
bool is_hex(const char *s, size_t len);
/* True for exactly len lowercase hex digits (a digest, a key as we
 * write them). */
bool is_lower_hex(const char *s, size_t len);

#define SHA256_LEN 32
void sha256(const void *data, size_t n, uint8_t out[SHA256_LEN]);
void sha256_hex(const void *data, size_t n, char out[2 * SHA256_LEN + 1]);
/* SHA-256 (hex into out) and length of what fd reads from its position
 * to its end. 0 or -errno of a read; *ret_size written only on success. */
int sha256_fd(int fd, uint64_t *ret_size, char out[2 * SHA256_LEN + 1]);

/* Name rule: an RFC 1123 hostname label, ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ */
bool name_is_valid(const char *s);
