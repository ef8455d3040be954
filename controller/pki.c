/* Private CA and server certificate generation with GnuTLS. */
#include "controller/pki.h"
#include "api/client.h"

#include "common/fs.h"
#include "common/ids.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <time.h>

#define TEN_YEARS (10 * 365 * 24 * 3600L)

static int check(int r, const char *what)
{
    if (r < 0) {
        fprintf(stderr, "pki: %s: %s\n", what, gnutls_strerror(r));
        return -EIO;
    }
    return 0;
}

static int new_key(gnutls_x509_privkey_t *ret)
{
    gnutls_x509_privkey_t k;
    if (check(gnutls_x509_privkey_init(&k), "key init") < 0)
        return -EIO;
    if (check(gnutls_x509_privkey_generate(
                  k, GNUTLS_PK_ECDSA,
                  GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
              "key generation") < 0) {
        gnutls_x509_privkey_deinit(k);
        return -EIO;
    }
    *ret = k;
    return 0;
}

static int new_cert(gnutls_x509_crt_t *ret, gnutls_x509_privkey_t key,
                    const char *dn)
{
    gnutls_x509_crt_t c;
    uint8_t serial[16];
    const char *err = NULL;
    time_t now = time(NULL);

    random_bytes(serial, sizeof(serial));
    serial[0] &= 0x7f;
    if (check(gnutls_x509_crt_init(&c), "cert init") < 0)
        return -EIO;
    if (check(gnutls_x509_crt_set_version(c, 3), "version") < 0 ||
        check(gnutls_x509_crt_set_serial(c, serial, sizeof(serial)), "serial") < 0 ||
        check(gnutls_x509_crt_set_activation_time(c, now - 3600), "time") < 0 ||
        check(gnutls_x509_crt_set_expiration_time(c, now + TEN_YEARS), "time") < 0 ||
        check(gnutls_x509_crt_set_dn(c, dn, &err), "dn") < 0 ||
        check(gnutls_x509_crt_set_key(c, key), "set key") < 0) {
        gnutls_x509_crt_deinit(c);
        return -EIO;
    }
    *ret = c;
    return 0;
}

/* A fresh key and an unsigned certificate for it named dn. */
static int new_keyed_cert(gnutls_x509_privkey_t *ret_key,
                          gnutls_x509_crt_t *ret_crt, const char *dn)
{
    gnutls_x509_privkey_t k;
    if (new_key(&k) < 0)
        return -EIO;
    if (new_cert(ret_crt, k, dn) < 0) {
        gnutls_x509_privkey_deinit(k);
        return -EIO;
    }
    *ret_key = k;
    return 0;
}

static int write_pem(const char *dir, const char *name, gnutls_datum_t *d,
                     mode_t mode)
{
    _cleanup_free_ char *path = dir ? xasprintf("%s/%s", dir, name)
                                    : xstrdup(name);
    int r = file_write_atomic(path, d->data, d->size, mode);
    gnutls_free(d->data);
    if (r < 0)
        fprintf(stderr, "pki: cannot write '%s': %s\n", path, strerror(-r));
    return r;
}

static int add_san(gnutls_x509_crt_t c, const char *name)
{
    uint8_t addr[16];
    if (inet_pton(AF_INET, name, addr) == 1)
        return gnutls_x509_crt_set_subject_alt_name(c, GNUTLS_SAN_IPADDRESS,
                                                    addr, 4, GNUTLS_FSAN_APPEND);
    if (inet_pton(AF_INET6, name, addr) == 1)
        return gnutls_x509_crt_set_subject_alt_name(c, GNUTLS_SAN_IPADDRESS,
                                                    addr, 16, GNUTLS_FSAN_APPEND);
    for (const char *p = name; *p; p++)
        if (!(*p == '.' || *p == '-' || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))) {
            fprintf(stderr, "pki: invalid name '%s' for the certificate\n", name);
            return GNUTLS_E_INVALID_REQUEST;
        }
    return gnutls_x509_crt_set_subject_alt_name(c, GNUTLS_SAN_DNSNAME, name,
                                                (unsigned)strlen(name),
                                                GNUTLS_FSAN_APPEND);
}

/* A new key and server certificate signed by ca/ca_key, written to
 * DIR/server.pem and DIR/server.key (0600). */
static int issue_server(const char *dir, gnutls_x509_crt_t ca,
                        gnutls_x509_privkey_t ca_key, char *const *sans,
                        size_t n_sans)
{
    gnutls_x509_privkey_t srv_key = NULL;
    gnutls_x509_crt_t srv = NULL;
    gnutls_datum_t d;
    int r = -EIO;

    if (new_keyed_cert(&srv_key, &srv,
                       "CN=fogfabric controller,O=fogfabric") < 0)
        return -EIO;
    if (check(gnutls_x509_crt_set_basic_constraints(srv, 0, -1), "bc") < 0 ||
        check(gnutls_x509_crt_set_key_usage(srv, GNUTLS_KEY_DIGITAL_SIGNATURE),
              "usage") < 0 ||
        check(gnutls_x509_crt_set_key_purpose_oid(srv, GNUTLS_KP_TLS_WWW_SERVER,
                                                  0), "purpose") < 0 ||
        check(add_san(srv, "localhost"), "san") < 0 ||
        check(add_san(srv, "127.0.0.1"), "san") < 0 ||
        check(add_san(srv, "::1"), "san") < 0)
        goto out;
    for (size_t i = 0; i < n_sans; i++)
        if (check(add_san(srv, sans[i]), "san") < 0)
            goto out;
    if (check(gnutls_x509_crt_sign2(srv, ca, ca_key, GNUTLS_DIG_SHA256, 0),
              "sign") < 0)
        goto out;
    if (check(gnutls_x509_crt_export2(srv, GNUTLS_X509_FMT_PEM, &d), "export") < 0 ||
        write_pem(dir, "server.pem", &d, 0600) < 0)
        goto out;
    if (check(gnutls_x509_privkey_export2(srv_key, GNUTLS_X509_FMT_PEM, &d),
              "export") < 0 ||
        write_pem(dir, "server.key", &d, 0600) < 0)
        goto out;
    r = 0;
out:
    gnutls_x509_crt_deinit(srv);
    gnutls_x509_privkey_deinit(srv_key);
    return r;
}

int pki_init(const char *dir, const char *ca_key_out, char *const *sans,
             size_t n_sans)
{
    gnutls_x509_privkey_t ca_key = NULL;
    gnutls_x509_crt_t ca = NULL;
    gnutls_datum_t d;
    int r = -EIO;

    if (new_keyed_cert(&ca_key, &ca,
                       "CN=fogfabric controller CA,O=fogfabric") < 0)
        goto out;
    if (check(gnutls_x509_crt_set_basic_constraints(ca, 1, 0), "ca bc") < 0 ||
        check(gnutls_x509_crt_set_key_usage(ca, GNUTLS_KEY_KEY_CERT_SIGN |
                                                    GNUTLS_KEY_CRL_SIGN),
              "ca usage") < 0 ||
        check(gnutls_x509_crt_sign2(ca, ca, ca_key, GNUTLS_DIG_SHA256, 0),
              "ca sign") < 0)
        goto out;
    if ((r = issue_server(dir, ca, ca_key, sans, n_sans)) < 0)
        goto out;
    r = -EIO;
    /* Everything in the data dir is the controller's alone (0600), the
     * certificates too: operators hand out ca.pem from `fogctl` or a copy.
     * ca.pem last: its presence means "initialised". */
    if (check(gnutls_x509_privkey_export2(ca_key, GNUTLS_X509_FMT_PEM, &d),
              "export") < 0 ||
        write_pem(ca_key_out ? NULL : dir, ca_key_out ? ca_key_out : "ca.key",
                  &d, 0600) < 0)
        goto out;
    if (check(gnutls_x509_crt_export2(ca, GNUTLS_X509_FMT_PEM, &d), "export") < 0 ||
        write_pem(dir, "ca.pem", &d, 0600) < 0)
        goto out;
    r = 0;
out:
    if (ca)
        gnutls_x509_crt_deinit(ca);
    if (ca_key)
        gnutls_x509_privkey_deinit(ca_key);
    return r;
}

int pki_issue_server(const char *dir, const char *ca_key_path,
                     char *const *sans, size_t n_sans)
{
    _cleanup_free_ char *ca_path = xasprintf("%s/ca.pem", dir);
    _cleanup_free_ char *ca_pem = NULL, *key_pem = NULL;
    size_t ca_len = 0, key_len = 0;
    int r;
    if ((r = file_read(ca_path, 1 << 20, &ca_pem, &ca_len)) < 0 ||
        (r = file_read(ca_key_path, 1 << 20, &key_pem, &key_len)) < 0) {
        fprintf(stderr, "pki: cannot read '%s' or '%s': %s\n", ca_path,
                ca_key_path, strerror(-r));
        return r;
    }
    gnutls_x509_crt_t ca = NULL;
    gnutls_x509_privkey_t ca_key = NULL;
    gnutls_datum_t cd = { (unsigned char *)ca_pem, (unsigned)ca_len };
    gnutls_datum_t kd = { (unsigned char *)key_pem, (unsigned)key_len };
    r = -EIO;
    if (check(gnutls_x509_crt_init(&ca), "cert init") == 0 &&
        check(gnutls_x509_privkey_init(&ca_key), "key init") == 0 &&
        check(gnutls_x509_crt_import(ca, &cd, GNUTLS_X509_FMT_PEM), "ca") == 0 &&
        check(gnutls_x509_privkey_import(ca_key, &kd, GNUTLS_X509_FMT_PEM),
              "ca key") == 0)
        r = issue_server(dir, ca, ca_key, sans, n_sans);
    if (ca)
        gnutls_x509_crt_deinit(ca);
    if (ca_key)
        gnutls_x509_privkey_deinit(ca_key);
    explicit_bzero(key_pem, key_len);
    return r;
}

int pki_fingerprint(const char *pem, char out[65])
{
    _cleanup_free_ char *fp = api_cert_fingerprint(pem);
    if (!fp)
        return -EINVAL;
    memcpy(out, fp, 65);
    return 0;
}
