/* Unit tests for the web ingress edge's configuration writer
 * (controller/edge.c): hostnames are checked and lower-cased before
 * anything reaches haproxy.cfg, the file holds one SNI frontend in TLS
 * passthrough and one Host frontend, each picking the backend named after
 * the name the client sent, with a backend per route, a route
 * that is down keeps its backend without a server, hostile values that
 * slip past the store are left out, and HAProxy itself accepts the file
 * (when it is installed). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/util.h"
#include "controller/edge.h"
#include "tests/testutil.h"

#include <string.h>
#include <unistd.h>

#define ID1 "0b3c2a9e-7d21-4f0e-9a55-1d6c3b2f4e01"
#define ID2 "0b3c2a9e-7d21-4f0e-9a55-1d6c3b2f4e02"
#define ID3 "0b3c2a9e-7d21-4f0e-9a55-1d6c3b2f4e03"

static void hostnames_are_rfc1123_and_lower_cased(void **state)
{
    (void)state;
    _cleanup_free_ char *a = ingress_hostname_norm("WWW.Example.ORG");
    assert_string_equal(a, "www.example.org");
    _cleanup_free_ char *b = ingress_hostname_norm("a-b.c0.example");
    assert_string_equal(b, "a-b.c0.example");
    static const char *const bad[] = {
        "", "localhost", "www.example.org\n", "www.example.org\nbackend x",
        "www example.org", "www.example.org }", "*.example.org",
        "-www.example.org", "www-.example.org", "www..example.org",
        ".example.org", "example.org.", "10.0.0.1", "www.exa_mple.org",
        "www.example.org:443", "www.ex%41mple.org", "www.\xc3\xa9xample.org",
        "x.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char *h = ingress_hostname_norm(bad[i]);
        if (h)
            fail_msg("'%s' was taken", bad[i]);
    }
    assert_null(ingress_hostname_norm(NULL));
    /* 253 bytes is the most. */
    char long_name[300];
    memset(long_name, 0, sizeof(long_name));
    for (int i = 0; i < 4; i++)
        strcat(long_name, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.");
    strcat(long_name, "org");
    assert_null(ingress_hostname_norm(long_name));
}

static const struct ingress_route routes[] = {
    { ID1, "www.example.org", 443, "198.51.100.7:20001" },
    { ID2, "www.example.org", 80, "[2001:db8::7]:20002" },
    { ID3, "down.example.org", 443, "" },
};

static void config_routes_sni_in_passthrough_and_host_in_http(void **state)
{
    (void)state;
    _cleanup_free_ char *c = edge_config_render(routes, 3, ":443", ":80");
    /* The TLS frontend waits for the ClientHello and routes by its SNI;
     * nothing terminates TLS (no certificate anywhere). */
    const char *https = strstr(c, "frontend fog_https\n");
    const char *http = strstr(c, "frontend fog_http\n");
    assert_non_null(https);
    assert_non_null(http);
    assert_non_null(strstr(https, "    mode tcp\n    bind :443\n"
                                  "    tcp-request inspect-delay 5s\n"));
    assert_non_null(strstr(https, "    use_backend t_%[req.ssl_sni,lower]\n"));
    assert_null(strstr(c, "crt "));
    assert_null(strstr(c, "ssl "));
    /* The VM learns its HTTP client's address from X-Forwarded-For. */
    assert_non_null(strstr(http, "    mode http\n    bind :80\n"
                                 "    option forwardfor\n"
                                 "    use_backend h_%[req.hdr(host),field(1,:),"
                                 "lower]\n"));
    /* Each route its backend named by the frontend's prefix and its
     * hostname; the down one has no server. */
    assert_non_null(strstr(c, "# route " ID1 "\nbackend t_www.example.org\n"
                              "    mode tcp\n    server vm "
                              "198.51.100.7:20001\n"));
    assert_non_null(strstr(c, "# route " ID2 "\nbackend h_www.example.org\n"
                              "    mode http\n    server vm "
                              "[2001:db8::7]:20002\n"));
    const char *down = strstr(c, "backend t_down.example.org\n");
    assert_non_null(down);
    const char *next = strstr(down + 1, "\nbackend ");
    _cleanup_free_ char *block = next ? xstrndup(down, (size_t)(next - down))
                                      : xstrdup(down);
    assert_null(strstr(block, "server"));
    /* One lookup per connection, not a rule per route. */
    const char *p = c;
    int uses = 0;
    while ((p = strstr(p, "use_backend")) != NULL) {
        uses++;
        p++;
    }
    assert_int_equal(uses, 2);
    /* Unknown names meet backends that refuse. */
    assert_non_null(strstr(c, "default_backend fog_none_tcp\n"));
    assert_non_null(strstr(c, "default_backend fog_none_http\n"));
}

static void hostile_values_never_reach_the_file(void **state)
{
    (void)state;
    static const struct ingress_route bad[] = {
        { ID1, "evil.example.org }\nfrontend x", 443, "" },
        { ID2, "EVIL.example.org", 443, "" }, /* never stored so */
        { "r x", "ok1.example.org", 443, "" },
        { ID3, "ok2.example.org", 443, "1.2.3.4:80\n    server y 5.6.7.8:1" },
        { ID3, "ok3.example.org", 443, "not-an-ip:80" },
        { ID3, "ok4.example.org", 443, "1.2.3.4:99999" },
        { ID3, "ok5.example.org", 25, "1.2.3.4:25" },
    };
    _cleanup_free_ char *c = edge_config_render(bad, ARRAY_SIZE(bad),
                                                   ":443\n  bind :1", ":80");
    assert_null(strstr(c, "evil"));
    assert_null(strstr(c, "EVIL"));
    assert_null(strstr(c, "ok"));
    assert_null(strstr(c, "r x"));
    assert_null(strstr(c, "5.6.7.8"));
    assert_null(strstr(c, "frontend x"));
    /* A bind word that is not one is refused: no TLS frontend at all. */
    assert_null(strstr(c, "frontend fog_https"));
    assert_null(strstr(c, "bind :1"));
    assert_non_null(strstr(c, "frontend fog_http\n"));
}

static void haproxy_accepts_the_file(void **state)
{
    (void)state;
    _cleanup_free_ char *haproxy = tu_which("haproxy");
    if (!haproxy) {
        printf("haproxy is not installed: check skipped\n");
        skip();
    }
    _cleanup_free_ char *dir = tu_tempdir("ingress");
    _cleanup_free_ char *cfg = xasprintf("%s/haproxy.cfg", dir);
    for (size_t n = 0; n <= 3; n += 3) {
        _cleanup_free_ char *c = edge_config_render(routes, n, ":443",
                                                       ":80");
        assert_int_equal(file_write_atomic(cfg, c, strlen(c), 0644), 0);
        int st = -1;
        _cleanup_free_ char *out = tu_run((char *const[]){ haproxy, "-c",
                                                          "-f", cfg, NULL },
                                          &st);
        if (st != 0)
            fail_msg("haproxy -c refused the file (%d): %s\n%s", st, out, c);
    }
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hostnames_are_rfc1123_and_lower_cased),
        cmocka_unit_test(config_routes_sni_in_passthrough_and_host_in_http),
        cmocka_unit_test(hostile_values_never_reach_the_file),
        cmocka_unit_test(haproxy_accepts_the_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
