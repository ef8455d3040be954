/* API keys and node credentials. */
#include "controller/auth.h"

#include <stdio.h>

void auth_hash(const char *salt, const char *secret, char out[65])
{
    _cleanup_free_ char *joined = xasprintf("%s%s", salt, secret);
    sha256_hex(joined, strlen(joined), out);
}

void auth_key_generate(const char *prefix, struct auth_key *ret)
{
    _cleanup_free_ char *id = random_hex(AUTH_ID_LEN / 2);
    _cleanup_free_ char *secret = random_hex(AUTH_SECRET_LEN / 2);
    _cleanup_free_ char *salt = random_hex(16);

    memset(ret, 0, sizeof(*ret));
    memcpy(ret->id, id, AUTH_ID_LEN);
    memcpy(ret->secret, secret, AUTH_SECRET_LEN);
    memcpy(ret->salt, salt, 32);
    auth_hash(ret->salt, ret->secret, ret->hash);
    ret->token = xasprintf("%s_%s_%s", prefix, ret->id, ret->secret);
}

void auth_key_clear(struct auth_key *k)
{
    if (k->token)
        explicit_bzero(k->token, strlen(k->token));
    free(k->token);
    explicit_bzero(k, sizeof(*k));
}

bool auth_token_split(const char *token, const char *prefix,
                      char id[AUTH_ID_LEN + 1],
                      char secret[AUTH_SECRET_LEN + 1])
{
    size_t pl = strlen(prefix);
    if (!token || strlen(token) != pl + 2 + AUTH_ID_LEN + AUTH_SECRET_LEN ||
        strncmp(token, prefix, pl) != 0 || token[pl] != '_' ||
        token[pl + 1 + AUTH_ID_LEN] != '_')
        return false;
    const char *i = token + pl + 1, *s = i + AUTH_ID_LEN + 1;
    for (size_t k = 0; k < AUTH_ID_LEN; k++)
        if (!strchr("0123456789abcdef", i[k]) || !i[k])
            return false;
    for (size_t k = 0; k < AUTH_SECRET_LEN; k++)
        if (!strchr("0123456789abcdef", s[k]) || !s[k])
            return false;
    memcpy(id, i, AUTH_ID_LEN);
    id[AUTH_ID_LEN] = '\0';
    memcpy(secret, s, AUTH_SECRET_LEN);
    secret[AUTH_SECRET_LEN] = '\0';
    return true;
}

bool auth_verify(const char *salt, const char *hash, const char *secret)
{
    char got[65];
    if (!salt || !hash || strlen(hash) != 64)
        return false;
    auth_hash(salt, secret, got);
    return mem_eq_ct(got, hash, 64);
}
