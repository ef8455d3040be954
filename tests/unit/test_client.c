/* api/client: the answer to an HTTP Upgrade, read from the controller's
 * bytes. A refusal's body is kept whole (a NUL inside it once cut the
 * copy short while JSON was parsed over the full length, reading past
 * it); its declared length is bounded; a status line that is not HTTP
 * with a real status is refused. The CA a joining node fetches: markers
 * that share dashes are refused (the span between them was once
 * negative, and scanned as a huge length: ASan in `make asan`). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/client.h"
#include "common/jsonutil.h"

#include <errno.h>

#define LEN(s) (sizeof(s) - 1)

static size_t head_len(const char *s)
{
    const char *end = strstr(s, "\r\n\r\n");
    assert_non_null(end);
    return (size_t)(end - s) + 4;
}

static void refusal_body_with_nul_kept_whole(void **state)
{
    (void)state;
    static const char in[] = "HTTP/1.1 409 Conflict\r\nContent-Type: "
                             "application/json\r\nContent-Length: 20\r\n\r\n"
                             "{\"detail\":\"a\0b\"}xyz";
    size_t h = head_len(in), want = 0;
    struct api_reply r = { 0 };
    assert_int_equal(api_upgrade_head(in, h, &r, &want), 0);
    assert_int_equal(r.status, 409);
    assert_int_equal(want, 20);
    api_upgrade_refusal(&r, in + h, LEN(in) - h);
    assert_int_equal(r.body_len, LEN(in) - h);
    assert_memory_equal(r.body, in + h, r.body_len);
    assert_int_equal(r.body[r.body_len], '\0');
    assert_null(r.json); /* not JSON: the NUL is inside a string */
    api_reply_clear(&r);

    static const char ok[] = "HTTP/1.1 403 Forbidden\r\nContent-Type: "
                             "application/problem+json\r\n\r\n"
                             "{\"detail\":\"not yours\"}";
    r = (struct api_reply){ 0 };
    h = head_len(ok);
    assert_int_equal(api_upgrade_head(ok, h, &r, &want), 0);
    assert_int_equal(want, 0);
    api_upgrade_refusal(&r, ok + h, LEN(ok) - h);
    assert_string_equal(json_str(r.json, "detail"), "not yours");
    api_reply_clear(&r);
}

static void declared_length_bounded(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        size_t want;
    } cases[] = {
        { "HTTP/1.1 503 X\r\nContent-Length: 99999999999999999999\r\n\r\n", 65536 },
        { "HTTP/1.1 503 X\r\nContent-Length: 70000\r\n\r\n", 65536 },
        { "HTTP/1.1 503 X\r\nContent-Length: -5\r\n\r\n", 0 },
        { "HTTP/1.1 503 X\r\nContent-Length: 12abc\r\n\r\n", 0 },
        { "HTTP/1.1 503 X\r\nContent-Length:\r\n\r\n", 0 },
        { "HTTP/1.0 404\r\ncontent-length: 7\r\n\r\n", 7 },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct api_reply r = { 0 };
        size_t want = 1;
        assert_int_equal(api_upgrade_head(cases[i].head, head_len(cases[i].head),
                                          &r, &want), 0);
        assert_int_equal(want, cases[i].want);
        api_reply_clear(&r);
    }
    /* Never more kept than the bound, whatever came. */
    struct api_reply r = { 0 };
    char *big = xmalloc(70001);
    memset(big, 'x', 70000);
    big[70000] = '\0';
    api_upgrade_refusal(&r, big, 70000);
    assert_int_equal(r.body_len, 65536);
    free(big);
    api_reply_clear(&r);
}

static void status_line_checked(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "SSH-2.0-OpenSSH\r\n\r\n",
        "HTTP/1.1 99999999999 X\r\n\r\n",
        "HTTP/1.1 42 Odd\r\n\r\n",
        "HTTP/2 200\r\n\r\n",
        "\r\nHTTP/1.1 101 Switching\r\n\r\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct api_reply r = { 0 };
        size_t want = 0;
        assert_int_equal(api_upgrade_head(bad[i], head_len(bad[i]), &r, &want),
                         -EBADMSG);
        assert_int_equal(r.status, 0);
        assert_null(r.headers);
    }
    static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: "
                             "fog-console\r\n\r\nearly";
    struct api_reply r = { 0 };
    size_t want = 0;
    assert_int_equal(api_upgrade_head(sw, head_len(sw), &r, &want), 0);
    assert_int_equal(r.status, 101);
    size_t n = 0;
    const char *up = api_reply_header(&r, "upgrade", &n);
    assert_non_null(up);
    assert_int_equal(n, strlen("fog-console"));
    /* The head only: what came after it is not a header. */
    assert_null(strstr(r.headers, "early"));
    api_reply_clear(&r);
}

static void ca_markers_sharing_dashes_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "-----BEGIN CERTIFICATE-------END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----END CERTIFICATE-----",
        "-----BEGIN CERTIFICATE----END CERTIFICATE-----",
    };
    static const char hash[] = "0123456789abcdef0123456789abcdef"
                               "0123456789abcdef0123456789abcdef";
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char *pem = NULL;
        assert_int_equal(api_ca_accept(bad[i], strlen(bad[i]), hash, &pem),
                         -EBADMSG);
        assert_null(pem);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ca_markers_sharing_dashes_refused),
        cmocka_unit_test(refusal_body_with_nul_kept_whole),
        cmocka_unit_test(declared_length_bounded),
        cmocka_unit_test(status_line_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
