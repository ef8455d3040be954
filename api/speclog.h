/* The exchange log that checks the API against api/openapi.yaml: when the
 * environment names a file in FOG_SPEC_LOG, every answer an HTTP client of
 * ours receives is appended to it as one JSON line, which
 * tools/openapi_check.js validates against the spec. Off (one getenv)
 * otherwise. */
#pragma once

#include <curl/curl.h>
#include <stddef.h>

/* Record the answer of the transfer just performed on h (its method, the
 * URL's path and query, the Allow header) with its status, Content-Type
 * (may be NULL) and body of len bytes, and the JSON request body it
 * answered (req, req_len; NULL when there was none or it was not JSON).
 * Nothing when FOG_SPEC_LOG is unset or the file cannot be written (a
 * test's tooling, never the product's behaviour). */
void api_speclog_record(CURL *h, const char *req, size_t req_len, long status,
                        const char *content_type, const char *body,
                        size_t len);
