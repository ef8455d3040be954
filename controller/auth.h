/* API keys and node credentials: generation, salted hashing, parsing.
 * Secrets are random 256-bit values, so a salted SHA-256 is the right
 * hash: no password stretching is needed for keys nobody can guess. */
#pragma once

#include "common/ids.h"

#define AUTH_ID_LEN 16     /* hex chars of the public key id */
#define AUTH_SECRET_LEN 64 /* hex chars of the secret */

struct auth_key {
    char id[AUTH_ID_LEN + 1];
    char secret[AUTH_SECRET_LEN + 1];
    char salt[33];
    char hash[65];
    char *token; /* "<prefix>_<id>_<secret>", owned */
};

/* New random key with the given prefix ("fog" or "fogn"). */
void auth_key_generate(const char *prefix, struct auth_key *ret);
void auth_key_clear(struct auth_key *k);
/* Split "<prefix>_<id>_<secret>"; false when malformed. */
bool auth_token_split(const char *token, const char *prefix,
                      char id[AUTH_ID_LEN + 1],
                      char secret[AUTH_SECRET_LEN + 1]);
/* hex(SHA-256(salt || secret)) into out[65]. */
void auth_hash(const char *salt, const char *secret, char out[65]);
/* Constant-time check of a secret against a stored salt and hash. */
bool auth_verify(const char *salt, const char *hash, const char *secret);
