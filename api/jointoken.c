/* Join token syntax (see jointoken.h). */
#include "api/jointoken.h"
#include "common/ids.h"
#include "common/util.h"

#define PREFIX "fogjoin."

bool jointoken_parse(const char *tok, char ret_secret[JOINTOKEN_SECRET_HEX + 1],
                     char ret_ca_sha256[JOINTOKEN_CA_HEX + 1])
{
    size_t plen = strlen(PREFIX);
    if (!tok || strlen(tok) != plen + JOINTOKEN_SECRET_HEX + 1 + JOINTOKEN_CA_HEX ||
        !startswith(tok, PREFIX) || tok[plen + JOINTOKEN_SECRET_HEX] != '.')
        return false;
    char secret[JOINTOKEN_SECRET_HEX + 1];
    const char *ca = tok + plen + JOINTOKEN_SECRET_HEX + 1;
    memcpy(secret, tok + plen, JOINTOKEN_SECRET_HEX);
    secret[JOINTOKEN_SECRET_HEX] = '\0';
    if (!is_hex(secret, JOINTOKEN_SECRET_HEX) || !is_hex(ca, JOINTOKEN_CA_HEX))
        return false;
    memcpy(ret_secret, secret, sizeof(secret));
    memcpy(ret_ca_sha256, ca, JOINTOKEN_CA_HEX + 1);
    return true;
}

char *jointoken_format(const char *secret, const char *ca_sha256)
{
    return xasprintf(PREFIX "%s.%s", secret, ca_sha256);
}
