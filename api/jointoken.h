/* Join tokens, shared by the controller that makes them and the agent
 * that presents them: "fogjoin.<32 hex secret>.<64 hex CA SHA-256>". The
 * second part lets the agent pin the controller's CA before trusting it. */
#pragma once

#include <stdbool.h>

#define JOINTOKEN_SECRET_HEX 32
#define JOINTOKEN_CA_HEX 64

/* Split a token into its secret and CA hash (both NUL-terminated copies
 * in the caller's arrays). false when malformed. */
bool jointoken_parse(const char *tok, char ret_secret[JOINTOKEN_SECRET_HEX + 1],
                     char ret_ca_sha256[JOINTOKEN_CA_HEX + 1]);
/* The token for a secret and a CA hash; caller frees. */
char *jointoken_format(const char *secret, const char *ca_sha256);
