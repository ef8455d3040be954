/* The CA a node fetches from /v1/ca before it trusts anyone
 * (api/client.c api_ca_accept): bytes from whoever answered. Against a
 * hash that matches nothing they are refused; against their own
 * certificate's hash they are accepted only as exactly one CA
 * certificate, and what comes back is our encoding of it, which is
 * accepted again under the same hash. */
#include "tests/fuzz/fuzz.h"
#include "api/client.h"
#include "common/ids.h"

#include <errno.h>
#include <gnutls/x509.h>

/* The SHA-256 of the first PEM certificate in data, as hex; false when
 * gnutls reads none. */
static bool fingerprint(const char *data, size_t len, char hex[65])
{
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) < 0)
        abort();
    gnutls_datum_t in = { (unsigned char *)data, (unsigned)len };
    uint8_t fp[32];
    size_t n = sizeof(fp);
    bool ok = gnutls_x509_crt_import(crt, &in, GNUTLS_X509_FMT_PEM) >= 0 &&
              gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, fp,
                                              &n) >= 0 && n == sizeof(fp);
    gnutls_x509_crt_deinit(crt);
    if (ok)
        hex_encode(fp, sizeof(fp), hex);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char none[] = "00000000000000000000000000000000"
                               "00000000000000000000000000000000";
    const char *text = (const char *)data;
    char *pem = NULL;
    int e = api_ca_accept(text, size, none, &pem);
    if (e == 0 || (e != -EBADMSG && e != -EPERM))
        abort(); /* nothing hashes to zeros */
    char hex[65];
    if (e != -EPERM || size > (1u << 20) || !fingerprint(text, size, hex))
        return 0;
    e = api_ca_accept(text, size, hex, &pem);
    if (e == -EPERM || (e != 0 && e != -EBADMSG))
        abort(); /* its own hash must match */
    if (e < 0)
        return 0; /* not a CA */
    char *again = NULL;
    if (api_ca_accept(pem, strlen(pem), hex, &again) != 0 ||
        !streq(again, pem))
        abort();
    free(again);
    free(pem);
    return 0;
}
