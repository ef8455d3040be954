/* HTTPS client for the fogfabric API (libcurl), shared by fogctl and
 * fog-nodeagent: bearer auth, server verified against a CA file or pinned
 * by the CA's SHA-256, JSON bodies in and out, problem+json decoded. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct api_client;

/* A reply: HTTP status, the decoded JSON body (NULL when empty or not JSON;
 * owned by the reply), the raw body (NUL-terminated) and, for transport
 * failures (status 0), a message. */
struct api_reply {
    long status;
    json_t *json;
    char *body;
    size_t body_len;
    char *content_type;
    char *error;
    char *headers;      /* response header lines as received, or NULL */
};

/* Create a client for base URL `url` ("https://host:port", no trailing
 * /v1). `key` may be NULL (unauthenticated calls), `ca_file` is the PEM
 * bundle to trust (NULL: the system store). Copies its arguments. */
struct api_client *api_client_new(const char *url, const char *key,
                                  const char *ca_file);
void api_client_free(struct api_client *c);
/* Total timeout of each request in seconds (default 30; 0 = none). */
void api_client_set_timeout(struct api_client *c, long seconds);
/* Accept only a server whose public key has this pin, "sha256//" and the
 * base64 SHA-256 of its DER SubjectPublicKeyInfo (curl's
 * CURLOPT_PINNEDPUBLICKEY), on top of the CA check. NULL or "": none. */
void api_client_set_key_pin(struct api_client *c, const char *pin);
/* From now on, record the key pin of the server each request reaches;
 * api_client_seen_key_pin() gives the last one (owned by the client, NULL
 * when none was seen). */
void api_client_capture_key_pin(struct api_client *c);
const char *api_client_seen_key_pin(const struct api_client *c);
/* Seconds to wait for a connection (default 10). */
void api_client_set_connect_timeout(struct api_client *c, long seconds);
/* Give up on a transfer that moved less than 1 byte/s for this many
 * seconds (default 0: never). A long poll sets it to at least its
 * wait. Every connection also has TCP keepalive (5 s idle, 5 s apart,
 * 3 probes), so a peer gone in a partition is noticed in about 20 s. */
void api_client_set_stall(struct api_client *c, long seconds);
/* A header line ("Name: value") that every request of every client in
 * this process carries from now on (NULL: none); the agent names its
 * contract version so. Call it before any other thread uses a client. */
void api_client_set_process_header(const char *line);
/* Replace the bearer key (NULL clears it). */
void api_client_set_key(struct api_client *c, const char *key);

/* Send `method` to `path` (starting with "/", e.g. "/v1/vms?limit=5")
 * with an optional JSON body and optional Idempotency-Key. Returns 0 when
 * an HTTP answer arrived (any status; see ret->status) or -EIO with
 * ret->error set when none did. *ret is always initialised; release it
 * with api_reply_clear(). */
int api_request(struct api_client *c, const char *method, const char *path,
                const json_t *body, const char *idem_key,
                struct api_reply *ret);
/* As api_request with a raw body of `len` bytes and a content type. */
int api_request_raw(struct api_client *c, const char *method,
                    const char *path, const void *data, size_t len,
                    const char *content_type, struct api_reply *ret);
/* Upload a file as the request body (streamed, not read into memory). */
int api_request_file(struct api_client *c, const char *method,
                     const char *path, const char *file,
                     struct api_reply *ret);
void api_reply_clear(struct api_reply *r);
/* The value of response header `name` (any case), not NUL-terminated:
 * *ret_len bytes, spaces trimmed; NULL when the answer had none. */
const char *api_reply_header(const struct api_reply *r, const char *name,
                             size_t *ret_len);

/* How long to wait before asking again after this reply, in ms: the
 * answer's Retry-After (delta-seconds or an HTTP date) when it has one,
 * else `dflt_ms`; bounded to min_ms..max_ms, then up to a quarter more at
 * random (still at most max_ms) so that nodes refused together do not
 * come back together. */
int64_t api_reply_retry_ms(const struct api_reply *r, int64_t dflt_ms,
                           int64_t min_ms, int64_t max_ms);

/* A connection switched to another protocol (HTTP Upgrade): raw bytes
 * both ways over the client's TLS session. */
struct api_stream;
/* GET `path` asking to upgrade to `protocol`. 0 and *ret_stream on 101
 * (the client is busy until api_stream_free(), which must come before
 * api_client_free()); -EPROTO when the server answered something else
 * (*ret holds that answer), -EIO with ret->error when none came. *ret is
 * always initialised; release it with api_reply_clear(). */
int api_upgrade(struct api_client *c, const char *path, const char *protocol,
                struct api_reply *ret, struct api_stream **ret_stream);
/* The two halves of reading the answer to an upgrade, apart so that they
 * can be tried on any bytes. api_upgrade_head: `head` holds head_len bytes
 * up to and with the blank line (NUL-terminated after them); sets
 * ret->status and ret->headers and *ret_body_len, the bytes of body to
 * wait for (Content-Length, at most 64 KiB; 0 when absent or malformed).
 * 0, or -EBADMSG when the status line is not HTTP/1.x with a status.
 * api_upgrade_refusal: keep `len` bytes of a refusal's body (at most
 * 64 KiB, any bytes) in ret->body and, when the answer says JSON,
 * ret->json. */
int api_upgrade_head(const char *head, size_t head_len, struct api_reply *ret,
                     size_t *ret_body_len);
void api_upgrade_refusal(struct api_reply *ret, const char *body, size_t len);
/* Send up to n bytes: how many went, -EAGAIN when none could now, -EIO
 * when the connection is gone. */
ssize_t api_stream_send(struct api_stream *s, const void *data, size_t n);
/* Send all n bytes, waiting up to timeout_ms in all. 0 or -EIO/-ETIME. */
int api_stream_send_all(struct api_stream *s, const void *data, size_t n,
                        int timeout_ms);
/* Receive up to n bytes: how many came, 0 when the peer closed, -EAGAIN
 * when none is there now, -EIO on error. Read until -EAGAIN before
 * polling again: TLS may hold bytes the socket no longer shows. */
ssize_t api_stream_recv(struct api_stream *s, void *data, size_t n);
/* The socket to poll for readability. */
int api_stream_fd(const struct api_stream *s);
void api_stream_free(struct api_stream *s);

/* One line describing a failed reply: the problem's detail (and field)
 * when the body is problem+json, else the status or transport error.
 * Caller frees. */
char *api_reply_describe(const struct api_reply *r);

/* Fetch the server's CA from `url` over TLS without trusting anything,
 * and accept it as api_ca_accept() does. On success *ret_pem holds that
 * one certificate, re-encoded (caller frees). -EPERM on a hash mismatch,
 * -EBADMSG when the reply is not exactly one CA certificate, -EIO on
 * transport failure. */
int api_fetch_ca(const char *url, const char *sha256_hex, char **ret_pem);
/* Accept `len` bytes of a /v1/ca reply only when they hold exactly one
 * PEM certificate (blanks around it, nothing else: no second block, no
 * trailing data), that certificate is a CA, and the SHA-256 (hex) of its
 * DER equals `sha256_hex`. *ret_pem gets our own PEM encoding of it, the
 * only thing to trust afterwards (caller frees). 0, -EPERM (hash),
 * -EBADMSG (shape), -EINVAL (arguments). */
int api_ca_accept(const char *data, size_t len, const char *sha256_hex,
                  char **ret_pem);

/* The key pin ("sha256//<base64>") of the first certificate in a PEM
 * string; NULL when it holds none. Caller frees. */
char *api_cert_key_pin(const char *pem);
/* SHA-256 (lower-case hex, caller frees) of the first certificate in a
 * PEM string; NULL when it holds none. */
char *api_cert_fingerprint(const char *pem);
