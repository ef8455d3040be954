/* The controller's private CA and server certificate (GnuTLS). Clients
 * trust DIR/ca.pem; join tokens carry the SHA-256 of its DER. */
#pragma once

#include "common/util.h"

/* Create DIR/ca.pem, DIR/ca.key, DIR/server.pem, DIR/server.key (all
 * 0600). With ca_key_out (not NULL) the CA key goes to that path instead
 * and never into DIR: serving needs only the server certificate and key.
 * The server certificate names localhost, 127.0.0.1, ::1 and each extra
 * name or IP address in sans. 0 or -errno (message on stderr). */
int pki_init(const char *dir, const char *ca_key_out, char *const *sans,
             size_t n_sans);
/* A new server key and certificate for DIR (server.pem, server.key, 0600)
 * signed by the CA of DIR/ca.pem with the key at ca_key_path (the offline
 * CA key), naming what pki_init names. 0 or -errno (message on stderr). */
int pki_issue_server(const char *dir, const char *ca_key_path,
                     char *const *sans, size_t n_sans);
/* SHA-256 of the DER of the first certificate of a PEM, as hex. 0 or
 * -EINVAL. */
int pki_fingerprint(const char *pem, char out[65]);
