/* Identifiers, randomness, hex and SHA-256. */
#include "common/ids.h"

#include "common/fs.h"

#include <errno.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <nettle/sha2.h>

void random_bytes(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            fputs("fogfabric: getrandom failed\n", stderr);
            abort();
        }
        p += r;
        n -= (size_t)r;
    }
}

void hex_encode(const void *data, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool is_hex(const char *s, size_t len)
{
    if (!s || strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (hexval(s[i]) < 0)
            return false;
    return true;
}

bool is_lower_hex(const char *s, size_t len)
{
    if (!is_hex(s, len))
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] >= 'A' && s[i] <= 'F')
            return false;
    return true;
}

int hex_decode(const char *hex, void *out, size_t n)
{
    uint8_t *p = out;
    if (!is_hex(hex, 2 * n))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
    return 0;
}

char *random_hex(size_t n)
{
    uint8_t *raw = xmalloc(n);
    char *out = xmalloc(2 * n + 1);
    random_bytes(raw, n);
    hex_encode(raw, n, out);
    free(raw);
    return out;
}

static void uuid_format(const uint8_t u[16], char out[UUID_STR_LEN + 1])
{
    snprintf(out, UUID_STR_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9],
             u[10], u[11], u[12], u[13], u[14], u[15]);
}

void uuid_generate_str(char out[UUID_STR_LEN + 1])
{
    uint8_t u[16];
    random_bytes(u, sizeof(u));
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    uuid_format(u, out);
}

void uuid_generate_time_str(char out[UUID_STR_LEN + 1])
{
    /* Ids of one ms count up in the 12 bits after the version; past 4096
     * in a ms the time field runs ahead (still in order). */
    static __thread uint64_t last_ms, seq;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (ms > last_ms) {
        last_ms = ms;
        seq = 0;
    } else if (++seq > 0xfff) {
        last_ms++;
        seq = 0;
    }
    uint8_t u[16];
    random_bytes(u + 8, 8);
    for (int i = 0; i < 6; i++)
        u[i] = (uint8_t)(last_ms >> (40 - 8 * i));
    u[6] = (uint8_t)(0x70 | (seq >> 8));
    u[7] = (uint8_t)seq;
    u[8] = (u[8] & 0x3f) | 0x80;
    uuid_format(u, out);
}

bool uuid_is_valid(const char *s)
{
    if (!s || strlen(s) != UUID_STR_LEN)
        return false;
    for (size_t i = 0; i < UUID_STR_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!((s[i] >= '0' && s[i] <= '9') ||
                     (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

void sha256(const void *data, size_t n, uint8_t out[SHA256_LEN])
{
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, n, data);
    sha256_digest(&ctx, SHA256_LEN, out);
}

void sha256_hex(const void *data, size_t n, char out[2 * SHA256_LEN + 1])
{
    uint8_t d[SHA256_LEN];
    sha256(data, n, d);
    hex_encode(d, SHA256_LEN, out);
}

int sha256_fd(int fd, uint64_t *ret_size, char out[2 * SHA256_LEN + 1])
{
    struct sha256_ctx c;
    sha256_init(&c);
    _cleanup_free_ uint8_t *b = xmalloc(1 << 16);
    uint64_t total = 0;
    for (;;) {
        ssize_t n = fd_read_full(fd, b, 1 << 16);
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
        sha256_update(&c, (size_t)n, b);
        total += (uint64_t)n;
    }
    uint8_t dig[SHA256_LEN];
    sha256_digest(&c, sizeof(dig), dig);
    hex_encode(dig, sizeof(dig), out);
    *ret_size = total;
    return 0;
}

bool name_is_valid(const char *s)
{
    if (!s)
        return false;
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        /* RFC 1123 label: '-' inside only, as `hostname` insists */
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  (c == '-' && i > 0 && i + 1 < n);
        if (!ok)
            return false;
    }
    return true;
}
