/* WireGuard keys: Curve25519 key pairs (nettle), their base64 and hex
 * forms, and the node's private key file, which never leaves the node. */
#pragma once

#include "common/util.h"

#define WGKEY_LEN 32
#define WGKEY_B64_LEN 44 /* without the NUL */
#define WGKEY_HEX_LEN 64 /* without the NUL */

/* Clamp a Curve25519 scalar in place (RFC 7748 section 5). */
void wgkey_clamp(uint8_t key[WGKEY_LEN]);

/* A fresh clamped private key from getrandom(). */
void wgkey_generate_private(uint8_t ret_private[WGKEY_LEN]);

/* Public key of a private key (scalar times the base point). */
void wgkey_public(const uint8_t private_key[WGKEY_LEN],
                  uint8_t ret_public[WGKEY_LEN]);

/* Canonical base64 of a key (44 characters, one '=' of padding) into out. */
void wgkey_to_base64(const uint8_t key[WGKEY_LEN],
                     char out[WGKEY_B64_LEN + 1]);

/* Decode a base64 key; only the canonical 44-character form is accepted.
 * 0 or -EINVAL; ret_key is written only on success. */
int wgkey_from_base64(const char *text, uint8_t ret_key[WGKEY_LEN]);

/* Lowercase hex of a key (the UAPI form) into out. */
void wgkey_to_hex(const uint8_t key[WGKEY_LEN], char out[WGKEY_HEX_LEN + 1]);

/* Decode a 64-character hex key. 0 or -EINVAL. */
int wgkey_from_hex(const char *text, uint8_t ret_key[WGKEY_LEN]);

/* Constant-time equality of two keys. */
bool wgkey_equal(const uint8_t a[WGKEY_LEN], const uint8_t b[WGKEY_LEN]);

/* True if the key is all zeroes (an unset key). */
bool wgkey_is_zero(const uint8_t key[WGKEY_LEN]);

/* Read the private key file at path (base64, one line), or create it with
 * a new key, mode 0600, when it does not exist. A file readable by group or
 * others is refused with -EPERM. 0 or -errno. */
int wgkey_load_or_create(const char *path, uint8_t ret_private[WGKEY_LEN]);
