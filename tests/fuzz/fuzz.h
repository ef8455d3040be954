/* Shared pieces of the libFuzzer targets: the entry point's prototype and
 * turning the fuzzer's bytes into the forms our parsers take. */
#pragma once

#include "common/jsonutil.h"
#include "common/log.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The bytes as a NUL-terminated string (caller frees); an embedded NUL
 * ends it early, as it would for a C parser reading a socket. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = xmalloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* The bytes as JSON the way the controller's HTTP core loads a body
 * (duplicates refused); NULL when malformed. */
static inline json_t *fuzz_json(const uint8_t *data, size_t size)
{
    return json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
}

/* Silence the logging of our own modules (the fuzzer prints enough). */
static inline void fuzz_quiet(void)
{
    static bool done;
    if (!done) {
        log_set_level(LOG_ERR);
        done = true;
    }
}
