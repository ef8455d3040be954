/* Join tokens (api/jointoken.c) as the agent reads the one an operator
 * pastes: a token taken must give back exactly itself, with a hex secret
 * and CA hash of the right lengths. */
#include "tests/fuzz/fuzz.h"
#include "api/jointoken.h"
#include "common/ids.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    _cleanup_free_ char *tok = fuzz_cstr(data, size);
    char secret[JOINTOKEN_SECRET_HEX + 1], ca[JOINTOKEN_CA_HEX + 1];
    if (!jointoken_parse(tok, secret, ca))
        return 0;
    if (strlen(secret) != JOINTOKEN_SECRET_HEX || strlen(ca) != JOINTOKEN_CA_HEX ||
        !is_hex(secret, JOINTOKEN_SECRET_HEX) || !is_hex(ca, JOINTOKEN_CA_HEX))
        abort();
    _cleanup_free_ char *again = jointoken_format(secret, ca);
    if (!streq(again, tok))
        abort();
    return 0;
}
