/* The controller's trust surface over real TLS: a join pins exactly one CA
 * (a fake controller appending its own CA never gets the join token), the
 * server speaks only TLS 1.2+ with AEAD suites and picks X25519 (no
 * HelloRetryRequest for OpenSSL's clients), a handshake waiting for its
 * client costs no CPU and ends at its timeout, every file in the data dir
 * is the controller's alone, and `init --ca-key-out` keeps the CA key out
 * of it while nodes still join and work. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/client.h"
#include "api/http_server.h"
#include "api/jointoken.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "controller/pki.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char *tmp, *root_dir, *agent_bin;

/* A fake host for the agent's inventory: 2 CPUs, 4 GiB, no /dev/kvm. */
static void put(const char *rel, const char *text)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", root_dir, rel);
    _cleanup_free_ char *d = xstrdup(p);
    *strrchr(d, '/') = '\0';
    assert_int_equal(mkdir_p(d, 0755), 0);
    assert_int_equal(file_write_atomic(p, text, strlen(text), 0644), 0);
}

static int setup(void **state)
{
    tmp = tu_tempdir("tlstrust");
    root_dir = xasprintf("%s/root", tmp);
    agent_bin = tu_bin("fog-nodeagent");
    put("proc/cpuinfo", "processor\t: 0\nmodel name\t: Fake\n\n"
                        "processor\t: 1\nmodel name\t: Fake\n\n");
    put("proc/meminfo", "MemTotal:        4194304 kB\n");
    put("sys/devices/system/cpu/online", "0-1\n");
    return 0;
}

static int teardown(void **state)
{
    tu_rmrf(tmp);
    free(tmp);
    free(root_dir);
    free(agent_bin);
    return 0;
}

static char *read_text(const char *path)
{
    char *text = NULL;
    assert_int_equal(file_read(path, 1 << 20, &text, NULL), 0);
    return text;
}

/* Run `fog-nodeagent join` against url with token into a new data dir
 * DIR/NAME: its exit status. */
static int agent_join(const char *url, const char *token, const char *dir,
                      const char *name)
{
    char *argv[] = { agent_bin, "join", "--controller", (char *)url,
                     "--token", (char *)token, "--data-dir", (char *)dir,
                     "--root", root_dir, "--name", (char *)name,
                     "--libvirt", "test:///default", NULL };
    int st;
    _cleanup_free_ char *out = tu_run(argv, &st);
    return st;
}

/* ---- a fake controller: our own server with its own CA ---- */

static int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static char *cert_sha256(const char *pem)
{
    char fp[65];
    assert_int_equal(pki_fingerprint(pem, fp), 0);
    return xstrdup(fp);
}

static char *token_for(const char *ca_sha256)
{
    uint8_t secret[16];
    char hex[33];
    random_bytes(secret, sizeof(secret));
    hex_encode(secret, sizeof(secret), hex);
    return jointoken_format(hex, ca_sha256);
}

static const char *fake_ca_reply;
static int fake_registers;

static void fake_ca(struct http_request *r, void *app)
{
    http_reply_text(r, 200, "application/x-pem-file", xstrdup(fake_ca_reply),
                    strlen(fake_ca_reply));
}

static void fake_register(struct http_request *r, void *app)
{
    __atomic_add_fetch(&fake_registers, 1, __ATOMIC_SEQ_CST);
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    http_reply_json(r, 201, json_pack("{s:s, s:s, s:b}", "node_id", id,
                                      "credential", "fake", "approved", 0));
}

static const struct http_route fake_routes[] = {
    { "GET", "/v1/ca", fake_ca, 0, NULL, 0 },
    { "POST", "/v1/agent/register", fake_register, 0, NULL, 0 },
};

static void join_pins_exactly_one_ca_certificate(void **state)
{
    _cleanup_free_ char *real = xasprintf("%s/real", tmp);
    _cleanup_free_ char *fake = xasprintf("%s/fake", tmp);
    assert_int_equal(mkdir_p(real, 0700), 0);
    assert_int_equal(mkdir_p(fake, 0700), 0);
    assert_int_equal(pki_init(real, NULL, NULL, 0), 0);
    assert_int_equal(pki_init(fake, NULL, NULL, 0), 0);
    _cleanup_free_ char *real_ca_path = xasprintf("%s/ca.pem", real);
    _cleanup_free_ char *fake_ca_path = xasprintf("%s/ca.pem", fake);
    _cleanup_free_ char *srv_path = xasprintf("%s/server.pem", fake);
    _cleanup_free_ char *key_path = xasprintf("%s/server.key", fake);
    _cleanup_free_ char *real_ca = read_text(real_ca_path);
    _cleanup_free_ char *fake_ca = read_text(fake_ca_path);
    _cleanup_free_ char *srv_pem = read_text(srv_path);
    _cleanup_free_ char *srv_key = read_text(key_path);

    struct http_server_opts o = {
        .listen = "127.0.0.1:0",
        .tls_cert_pem = srv_pem,
        .tls_key_pem = srv_key,
        .routes = fake_routes,
        .n_routes = ARRAY_SIZE(fake_routes),
        .max_body = 1 << 20,
        .threads = 1,
    };
    struct http_server *srv;
    assert_int_equal(http_server_start(&o, &srv), 0);
    _cleanup_free_ char *url =
        xasprintf("https://127.0.0.1:%d", http_server_port(srv));
    _cleanup_free_ char *real_fp = cert_sha256(real_ca);
    _cleanup_free_ char *fake_fp = cert_sha256(fake_ca);
    _cleanup_free_ char *real_tok = token_for(real_fp);
    _cleanup_free_ char *fake_tok = token_for(fake_fp);

    /* The attack: the real CA (its hash passes the pin) followed by the
     * fake's own CA, which signed the fake's server certificate. Then the
     * same with trailing bytes, in the other order, and the fake's CA
     * twice under its own pin: none is exactly one pinned certificate. */
    struct {
        char *reply;
        const char *token;
    } bad[] = {
        { xasprintf("%s%s", real_ca, fake_ca), real_tok },
        { xasprintf("%s\n%s", real_ca, fake_ca), real_tok },
        { xasprintf("%sjunk\n", real_ca), real_tok },
        { xasprintf("%s%s", fake_ca, real_ca), real_tok },
        { xasprintf("%s%s", fake_ca, fake_ca), fake_tok },
        { xasprintf("%s-----BEGIN PRIVATE KEY-----\n", fake_ca), fake_tok },
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char *pem = NULL;
        const char *pin = bad[i].token == real_tok ? real_fp : fake_fp;
        assert_int_equal(api_ca_accept(bad[i].reply, strlen(bad[i].reply),
                                       pin, &pem), -EBADMSG);
        assert_null(pem);
        fake_ca_reply = bad[i].reply;
        _cleanup_free_ char *dir = xasprintf("%s/bad%zu", tmp, i);
        _cleanup_free_ char *name = xasprintf("bad-%zu", i);
        if (agent_join(url, bad[i].token, dir, name) == 0)
            fail_msg("case %zu: join succeeded", i);
        if (__atomic_load_n(&fake_registers, __ATOMIC_SEQ_CST) != 0)
            fail_msg("case %zu: the fake controller got the join token", i);
        _cleanup_free_ char *node = xasprintf("%s/node.json", dir);
        assert_int_not_equal(access(node, F_OK), 0);
        free(bad[i].reply);
    }

    /* One certificate, but not the pinned one, or not a CA; a NUL. */
    char *pem = NULL;
    assert_int_equal(api_ca_accept(fake_ca, strlen(fake_ca), real_fp, &pem),
                     -EPERM);
    _cleanup_free_ char *srv_fp = cert_sha256(srv_pem);
    assert_int_equal(api_ca_accept(srv_pem, strlen(srv_pem), srv_fp, &pem),
                     -EBADMSG);
    assert_int_equal(api_ca_accept(fake_ca, strlen(fake_ca) + 1, fake_fp, &pem),
                     -EBADMSG);
    assert_null(pem);

    /* The control: the fake's own CA alone under its own pin is what an
     * honest controller serves, and that join reaches the register call,
     * so the refusals above were the pin's doing. The trust anchor the
     * node keeps is that one certificate, private to it. */
    fake_ca_reply = fake_ca;
    _cleanup_free_ char *ok_dir = xasprintf("%s/good", tmp);
    assert_int_equal(agent_join(url, fake_tok, ok_dir, "good"), 0);
    assert_int_equal(__atomic_load_n(&fake_registers, __ATOMIC_SEQ_CST), 1);
    _cleanup_free_ char *kept_path = xasprintf("%s/ca.pem", ok_dir);
    _cleanup_free_ char *kept = read_text(kept_path);
    _cleanup_free_ char *kept_fp = cert_sha256(kept);
    assert_string_equal(kept_fp, fake_fp);
    assert_int_equal(count_of(kept, "-----BEGIN"), 1);
    struct stat st;
    assert_int_equal(stat(kept_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    http_server_stop(srv, 0);
}

/* ---- TLS versions and suites ---- */

struct hs {
    int rc;              /* gnutls_handshake's result */
    gnutls_protocol_t version;
    gnutls_cipher_algorithm_t cipher;
    gnutls_group_t group;
    int retries;         /* HelloRetryRequests received */
};

static int count_retry(gnutls_session_t s, unsigned type, unsigned when,
                       unsigned incoming, const gnutls_datum_t *msg)
{
    if (type == GNUTLS_HANDSHAKE_HELLO_RETRY_REQUEST && incoming)
        ((struct hs *)gnutls_session_get_ptr(s))->retries++;
    return 0;
}

/* One TLS handshake with 127.0.0.1:port offering only `priority` (the
 * server's certificate is not checked: this is about what it accepts). */
static struct hs handshake(int port, const char *priority)
{
    struct hs out = { .rc = GNUTLS_E_INTERNAL_ERROR };
    gnutls_certificate_credentials_t cred;
    gnutls_session_t s;
    assert_int_equal(gnutls_certificate_allocate_credentials(&cred), 0);
    assert_int_equal(gnutls_init(&s, GNUTLS_CLIENT), 0);
    const char *err = NULL;
    if (gnutls_priority_set_direct(s, priority, &err) < 0)
        fail_msg("client priority '%s' refused at '%s'", priority, err);
    assert_int_equal(gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred), 0);
    gnutls_session_set_ptr(s, &out);
    gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_ANY,
                                       GNUTLS_HOOK_POST, count_retry);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    gnutls_transport_set_int(s, fd);
    gnutls_handshake_set_timeout(s, 30000);
    do
        out.rc = gnutls_handshake(s);
    while (out.rc < 0 && !gnutls_error_is_fatal(out.rc));
    if (out.rc == 0) {
        out.version = gnutls_protocol_get_version(s);
        out.cipher = gnutls_cipher_get(s);
        out.group = gnutls_group_get(s);
        gnutls_bye(s, GNUTLS_SHUT_WR);
    }
    close(fd);
    gnutls_deinit(s);
    gnutls_certificate_free_credentials(cred);
    return out;
}

static void server_speaks_tls12_and_13_with_aead_suites_only(void **state)
{
    struct tu_ctl ctl;
    tu_ctl_start(&ctl, NULL);
    static const char *const refused[] = {
        "NORMAL:-VERS-ALL:+VERS-TLS1.0",
        "NORMAL:-VERS-ALL:+VERS-TLS1.1",
        /* TLS 1.2, but only CBC suites with SHA-1 and SHA-2 MACs */
        "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC:"
        "+AES-256-CBC:-MAC-ALL:+SHA1:+SHA256:+SHA384",
        /* TLS 1.2, only RSA key transport (no forward secrecy) */
        "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA",
    };
    for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
        struct hs h = handshake(ctl.port, refused[i]);
        if (h.rc == 0)
            fail_msg("'%s' was accepted: %s, %s", refused[i],
                     gnutls_protocol_get_name(h.version),
                     gnutls_cipher_get_name(h.cipher));
    }
    struct hs h = handshake(ctl.port, "NORMAL:-VERS-ALL:+VERS-TLS1.2:"
                                      "-CIPHER-ALL:+AES-128-GCM");
    assert_int_equal(h.rc, 0);
    assert_int_equal(h.version, GNUTLS_TLS1_2);
    assert_int_equal(h.cipher, GNUTLS_CIPHER_AES_128_GCM);
    h = handshake(ctl.port, "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:"
                            "+CHACHA20-POLY1305");
    assert_int_equal(h.rc, 0);
    assert_int_equal(h.cipher, GNUTLS_CIPHER_CHACHA20_POLY1305);
    h = handshake(ctl.port, "NORMAL:-VERS-ALL:+VERS-TLS1.3");
    assert_int_equal(h.rc, 0);
    assert_int_equal(h.version, GNUTLS_TLS1_3);
    /* A default client gets the newest. */
    h = handshake(ctl.port, "NORMAL");
    assert_int_equal(h.rc, 0);
    assert_int_equal(h.version, GNUTLS_TLS1_3);
    tu_ctl_destroy(&ctl);
}

/* TLS 1.3 clients get X25519, which OpenSSL's clients (curl, wrk, most
 * language runtimes) send their only key share for: with another group
 * first, the server answered each of them with a HelloRetryRequest, a
 * round trip more per connection. */
static void tls13_clients_get_x25519_without_a_retry(void **state)
{
    struct tu_ctl ctl;
    tu_ctl_start(&ctl, NULL);
    /* A GnuTLS client that prefers P-256 sends shares for both; the
     * server's order decides. */
    struct hs h = handshake(ctl.port, "NORMAL:-VERS-ALL:+VERS-TLS1.3:"
                                      "-GROUP-ALL:+GROUP-SECP256R1:"
                                      "+GROUP-X25519");
    assert_int_equal(h.rc, 0);
    assert_int_equal(h.version, GNUTLS_TLS1_3);
    if (h.group != GNUTLS_GROUP_X25519)
        fail_msg("the server chose %s, not X25519",
                 gnutls_group_get_name(h.group));
    assert_int_equal(h.retries, 0);
    /* A P-256-only client is still served, on P-256. */
    h = handshake(ctl.port, "NORMAL:-GROUP-ALL:+GROUP-SECP256R1");
    assert_int_equal(h.rc, 0);
    assert_int_equal(h.group, GNUTLS_GROUP_SECP256R1);
    /* An OpenSSL client: one ServerHello (a retry shows as a second). */
    _cleanup_free_ char *openssl = tu_which("openssl");
    if (!openssl) {
        print_message("openssl is not installed: its client not tried\n");
        tu_ctl_destroy(&ctl);
        return;
    }
    _cleanup_free_ char *cmd = xasprintf("%s s_client -connect 127.0.0.1:%d "
                                         "-tls1_3 -msg </dev/null 2>&1",
                                         openssl, ctl.port);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[512];
    int hellos = 0, x25519 = 0;
    while (fgets(line, sizeof(line), p)) {
        if (strstr(line, "<<<") && strstr(line, "ServerHello"))
            hellos++;
        if (strstr(line, "Server Temp Key: X25519"))
            x25519++;
    }
    pclose(p);
    if (hellos != 1 || x25519 != 1)
        fail_msg("openssl s_client saw %d ServerHello and %d X25519 key "
                 "lines, want 1 and 1", hellos, x25519);
    tu_ctl_destroy(&ctl);
}

/* ---- handshakes that wait for their client ---- */

/* A TLS 1.3 client on a non-blocking socket that has sent its ClientHello
 * and holds the server's answer unread: the server waits for its
 * Finished. */
struct stalled {
    int fd;
    bool hold; /* reads find nothing, whatever came */
    gnutls_session_t s;
    gnutls_certificate_credentials_t cred;
};

static ssize_t stall_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
    struct stalled *c = p;
    if (c->hold) {
        errno = EAGAIN;
        return -1;
    }
    return recv(c->fd, buf, len, 0);
}

static ssize_t stall_push(gnutls_transport_ptr_t p, const void *buf,
                          size_t len)
{
    return send(((struct stalled *)p)->fd, buf, len, MSG_NOSIGNAL);
}

static int stall_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
    struct stalled *c = p;
    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
    return c->hold ? 0 : poll(&pfd, 1, (int)ms);
}

static void stall_start(struct stalled *c, int port)
{
    assert_int_equal(gnutls_certificate_allocate_credentials(&c->cred), 0);
    assert_int_equal(gnutls_init(&c->s, GNUTLS_CLIENT | GNUTLS_NONBLOCK), 0);
    assert_int_equal(gnutls_set_default_priority(c->s), 0);
    assert_int_equal(gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE,
                                            c->cred), 0);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(fcntl(c->fd, F_SETFL, O_NONBLOCK), 0);
    c->hold = true;
    gnutls_transport_set_ptr(c->s, c);
    gnutls_transport_set_pull_function(c->s, stall_pull);
    gnutls_transport_set_pull_timeout_function(c->s, stall_pull_timeout);
    gnutls_transport_set_push_function(c->s, stall_push);
    assert_int_equal(gnutls_handshake(c->s), GNUTLS_E_AGAIN);
    /* The server's flight is in: it now waits for this client. */
    struct pollfd p = { .fd = c->fd, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 10000), 1);
}

static void stall_free(struct stalled *c)
{
    close(c->fd);
    gnutls_deinit(c->s);
    gnutls_certificate_free_credentials(c->cred);
}

/* Whether buf (len bytes) holds a whole HTTP answer with its body. */
static bool answer_whole(const char *buf, size_t len)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    const char *cl = end ? strcasestr(buf, "content-length:") : NULL;
    return cl && cl < end &&
           (size_t)(end + 4 - buf) + strtoull(cl + 15, NULL, 10) <= len;
}

/* Drive c's handshake, or send `out` and read its answer into buf, until
 * done: the gnutls result (bytes read for a request). */
static ssize_t stall_io(struct stalled *c, const char *out, char *buf,
                        size_t size)
{
    int64_t until = mono_ms() + 10000;
    ssize_t r;
    size_t got = 0;
    c->hold = false;
    bool sent = !out;
    for (;;) {
        if (!out)
            r = gnutls_handshake(c->s);
        else if (!sent)
            r = gnutls_record_send(c->s, out, strlen(out));
        else
            r = gnutls_record_recv(c->s, buf + got, size - 1 - got);
        if (r >= 0 && out && !sent) {
            sent = true;
            continue;
        }
        if (r > 0 && out) {
            got += (size_t)r;
            if (!answer_whole(buf, got) && got < size - 1)
                continue;
            r = (ssize_t)got;
        }
        if (r >= 0 || gnutls_error_is_fatal((int)r) || mono_ms() > until)
            break;
        struct pollfd p = { .fd = c->fd,
                            .events = gnutls_record_get_direction(c->s)
                                          ? POLLOUT : POLLIN };
        poll(&p, 1, 1000);
    }
    if (r >= 0 && out)
        buf[r] = '\0';
    return r;
}

static int64_t cpu_ms(pid_t pid)
{
    _cleanup_free_ char *path = xasprintf("/proc/%d/stat", (int)pid);
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    assert_int_equal(file_read(path, 1 << 16, &text, &len), 0);
    const char *p = strrchr(text, ')');
    assert_non_null(p);
    unsigned long long ut = 0, st = 0;
    /* Fields 14 and 15 (utime, stime), counted from the state field (3). */
    assert_int_equal(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
                                   "%*u %llu %llu", &ut, &st), 2);
    return (int64_t)((ut + st) * 1000 / (unsigned long long)sysconf(
                                                   _SC_CLK_TCK));
}

/* libmicrohttpd alone calls a handshake that waits for its client again
 * and again: a core for each client that sends its ClientHello and then
 * nothing. Such a handshake must cost nothing while it waits, finish
 * when its client goes on, and end at --tls-handshake-timeout; a
 * finished one outlives that timeout on keep-alive. */
static void handshakes_waiting_for_their_client_cost_no_cpu(void **state)
{
    static const char *const args[] = { "--tls-handshake-timeout", "2", NULL };
    struct tu_ctl ctl;
    tu_ctl_start(&ctl, args);
    struct stalled c[5]; /* more than the connection threads (4) */
    int64_t started = mono_ms();
    for (size_t i = 0; i < ARRAY_SIZE(c); i++)
        stall_start(&c[i], ctl.port);
    int64_t cpu0 = cpu_ms(ctl.pid), t0 = mono_ms();
    usleep(1000 * 1000);
    int64_t spent = cpu_ms(ctl.pid) - cpu0, window = mono_ms() - t0;
    print_message("controller CPU with %zu handshakes waiting: %lld ms in "
                  "%lld ms\n", ARRAY_SIZE(c), (long long)spent,
                  (long long)window);
    /* Spinning, the connection threads took every core: 1,000 ms a core. */
    if (spent * 4 > window)
        fail_msg("the controller spent %lld ms of CPU in %lld ms while "
                 "handshakes waited for their clients", (long long)spent,
                 (long long)window);
    _cleanup_free_ char *m = tu_metrics_text(&ctl);
    const char *g = strstr(m, "\nfog_http_tls_handshakes_waiting ");
    assert_non_null(g);
    assert_int_equal(strtol(strchr(g + 1, ' '), NULL, 10), ARRAY_SIZE(c));
    /* The client goes on: its handshake finishes and it is answered. */
    assert_int_equal(stall_io(&c[0], NULL, NULL, 0), 0);
    char buf[4096];
    const char *get = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    assert_true(stall_io(&c[0], get, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    /* The others end at the timeout (2 s from their start, swept once a
     * second). */
    for (size_t i = 1; i < ARRAY_SIZE(c); i++) {
        bool closed = false;
        while (!closed && mono_ms() < started + 10000) {
            struct pollfd p = { .fd = c[i].fd, .events = POLLIN };
            poll(&p, 1, 1000);
            ssize_t r = recv(c[i].fd, buf, sizeof(buf), 0);
            closed = r == 0 || (r < 0 && errno == ECONNRESET);
        }
        if (!closed)
            fail_msg("handshake %zu still open 10 s after its start", i);
        stall_free(&c[i]);
    }
    int64_t ended = mono_ms() - started;
    print_message("stalled handshakes ended after %lld ms\n",
                  (long long)ended);
    assert_true(ended >= 1900);
    assert_true(ended < 8000);
    /* The finished one is past the timeout too, and still served. */
    assert_true(stall_io(&c[0], get, buf, sizeof(buf)) > 0);
    if (!strstr(buf, "HTTP/1.1 200"))
        fail_msg("the second answer on a finished handshake: '%s'", buf);
    stall_free(&c[0]);
    /* A stop with handshakes set aside is clean (exit 0): they are ended,
     * none left suspended. */
    for (size_t i = 1; i < 3; i++)
        stall_start(&c[i], ctl.port);
    tu_ctl_destroy(&ctl);
    for (size_t i = 1; i < 3; i++)
        stall_free(&c[i]);
}

/* ---- the data directory ---- */

/* Every directory under (and with) dir 0700, every file without group or
 * other bits; names of offenders printed. The number of files seen. */
static int assert_private_tree(const char *dir)
{
    struct stat st;
    assert_int_equal(lstat(dir, &st), 0);
    if ((st.st_mode & 0777) != 0700)
        fail_msg("directory '%s' is %03o", dir, st.st_mode & 0777);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int files = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, de->d_name);
        assert_int_equal(lstat(p, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            files += assert_private_tree(p);
        } else {
            if (st.st_mode & 0077)
                fail_msg("'%s' is %03o", p, st.st_mode & 0777);
            files++;
        }
    }
    closedir(d);
    return files;
}

static void assert_mode(const char *dir, const char *name, mode_t want)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
    struct stat st;
    if (stat(p, &st) < 0)
        fail_msg("'%s': %s", p, strerror(errno));
    if ((st.st_mode & 0777) != want)
        fail_msg("'%s' is %03o, want %03o", p, st.st_mode & 0777, want);
}

static void data_dir_files_are_the_controllers_alone(void **state)
{
    /* init into a directory an operator made world-readable */
    _cleanup_free_ char *dir = xasprintf("%s/predone", tmp);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(chmod(dir, 0755), 0);
    _cleanup_free_ char *bin = tu_bin("fog-controller");
    char *init[] = { bin, "init", "--data-dir", dir, NULL };
    int st;
    free(tu_run(init, &st));
    assert_int_equal(st, 0);
    assert_private_tree(dir);
    /* (On PostgreSQL there is no fog.db: the list starts after it.) */
    static const char *const made_all[] = { "fog.db", "ca.pem", "ca.key",
                                            "server.pem", "server.key" };
    const char *const *made = made_all + (tu_on_pg() ? 1 : 0);
    size_t n_made = ARRAY_SIZE(made_all) - (tu_on_pg() ? 1 : 0);
    for (size_t i = 0; i < n_made; i++)
        assert_mode(dir, made[i], 0600);

    /* A data dir an older version left open is closed at serve, and
     * what serving writes (the WAL, images) stays closed. */
    struct tu_ctl ctl;
    tu_ctl_start(&ctl, NULL);
    tu_ctl_stop(&ctl, SIGTERM);
    _cleanup_free_ char *imgs = xasprintf("%s/images", ctl.dir);
    assert_int_equal(mkdir_p(imgs, 0755), 0);
    _cleanup_free_ char *stray = xasprintf("%s/old-notes", imgs);
    assert_int_equal(file_write_atomic(stray, "x", 1, 0644), 0);
    assert_int_equal(chmod(ctl.dir, 0755), 0);
    assert_int_equal(chmod(imgs, 0755), 0);
    for (size_t i = 0; i < n_made; i++) {
        _cleanup_free_ char *p = xasprintf("%s/%s", ctl.dir, made[i]);
        assert_int_equal(chmod(p, 0644), 0);
    }
    tu_ctl_restart(&ctl);
    long code;
    json_decref(tu_api(&ctl, ctl.admin_key, "POST", "/v1/accounts",
                       "{\"name\":\"bob\",\"role\":\"tenant\"}", &code));
    assert_int_equal(code, 201);
    json_decref(tu_api(&ctl, ctl.admin_key, "POST", "/v1/join-tokens", "{}",
                       &code));
    assert_int_equal(code, 201);
    json_auto_t *img = tu_api(&ctl, ctl.admin_key, "POST", "/v1/images",
                              "{\"name\":\"blank\"}", &code);
    assert_int_equal(code, 201);
    /* The WAL and its index exist while the controller holds the db. */
    if (!ctl.database) {
        assert_mode(ctl.dir, "fog.db-wal", 0600);
        assert_mode(ctl.dir, "fog.db-shm", 0600);
    }
    for (size_t i = 0; i < n_made; i++)
        assert_mode(ctl.dir, made[i], 0600);
    /* (the store's three files only on sqlite) */
    assert_true(assert_private_tree(ctl.dir) >= (ctl.database ? 5 : 8));
    tu_ctl_destroy(&ctl);
}

/* ---- the CA key offline ---- */

/* True when the private key in key_pem is the one of certificate crt_pem. */
static bool key_matches_cert(const char *key_pem, const char *crt_pem)
{
    gnutls_x509_privkey_t k;
    gnutls_x509_crt_t c;
    gnutls_datum_t kd = { (unsigned char *)key_pem, (unsigned)strlen(key_pem) };
    gnutls_datum_t cd = { (unsigned char *)crt_pem, (unsigned)strlen(crt_pem) };
    uint8_t kid[64], cid[64];
    size_t klen = sizeof(kid), clen = sizeof(cid);
    assert_int_equal(gnutls_x509_privkey_init(&k), 0);
    assert_int_equal(gnutls_x509_crt_init(&c), 0);
    bool ok = gnutls_x509_privkey_import(k, &kd, GNUTLS_X509_FMT_PEM) == 0 &&
              gnutls_x509_crt_import(c, &cd, GNUTLS_X509_FMT_PEM) == 0 &&
              gnutls_x509_privkey_get_key_id(k, 0, kid, &klen) == 0 &&
              gnutls_x509_crt_get_key_id(c, 0, cid, &clen) == 0 &&
              klen == clen && memcmp(kid, cid, klen) == 0;
    gnutls_x509_privkey_deinit(k);
    gnutls_x509_crt_deinit(c);
    return ok;
}

static bool node_online(const char *log_text, void *ctl)
{
    long code;
    json_auto_t *n = tu_api(ctl, ((struct tu_ctl *)ctl)->admin_key, "GET",
                            "/v1/nodes/offline-ca", NULL, &code);
    return code == 200 && streq(json_str(n, "state"), "online");
}

static bool log_says_pin_refused(const char *log_text, void *unused)
{
    return log_text && strstr(log_text, "pinned public key");
}

/* Run the agent (argv, output to log) until cond(its log so far, arg)
 * holds, then stop it; fail with the log when that never happens. */
static void run_agent_until(char *const argv[], const char *log,
                            bool (*cond)(const char *, void *), void *arg,
                            const char *what)
{
    pid_t agent = tu_spawn(argv, log);
    assert_true(agent > 0);
    bool ok = false;
    for (int64_t end = mono_ms() + 60000; !ok && mono_ms() < end;) {
        _cleanup_free_ char *text = NULL;
        file_read(log, 1 << 20, &text, NULL);
        ok = cond(text, arg);
        if (!ok)
            usleep(100000);
    }
    tu_kill(agent, SIGTERM);
    if (!ok) {
        _cleanup_free_ char *text = NULL;
        file_read(log, 1 << 20, &text, NULL);
        fail_msg("not so: %s; agent log:\n%s", what, text);
    }
}

static void ca_key_kept_offline_and_nodes_still_join(void **state)
{
    _cleanup_free_ char *vault = xasprintf("%s/vault", tmp);
    assert_int_equal(mkdir_p(vault, 0700), 0);
    _cleanup_free_ char *key_out = xasprintf("%s/ca.key", vault);
    const char *const init_args[] = { "--ca-key-out", key_out, NULL };
    static const char *const serve_args[] = { "--heartbeat", "1", NULL };
    struct tu_ctl ctl;
    tu_ctl_start_init(&ctl, init_args, serve_args);

    /* The key went where it was told, private, and is the CA's. */
    _cleanup_free_ char *online = xasprintf("%s/ca.key", ctl.dir);
    assert_int_not_equal(access(online, F_OK), 0);
    assert_mode(vault, "ca.key", 0600);
    _cleanup_free_ char *key = read_text(key_out);
    _cleanup_free_ char *ca = read_text(ctl.ca);
    assert_true(key_matches_cert(key, ca));
    /* init refuses to overwrite a key somewhere else too */
    _cleanup_free_ char *bin = tu_bin("fog-controller");
    _cleanup_free_ char *dir2 = xasprintf("%s/second", tmp);
    char *again[] = { bin, "init", "--data-dir", dir2, "--ca-key-out",
                      key_out, NULL };
    int st;
    free(tu_run(again, &st));
    assert_int_not_equal(st, 0);
    _cleanup_free_ char *key_after = read_text(key_out);
    assert_string_equal(key_after, key);

    /* A node joins the controller that has no CA key and reports in. */
    long code;
    json_auto_t *t = tu_api(&ctl, ctl.admin_key, "POST", "/v1/join-tokens",
                            "{}", &code);
    assert_int_equal(code, 201);
    _cleanup_free_ char *node_dir = xasprintf("%s/node", tmp);
    _cleanup_free_ char *img_dir = xasprintf("%s/node-images", tmp);
    assert_int_equal(agent_join(ctl.url, json_str(t, "token"), node_dir,
                                "offline-ca"),
                     0);
    json_decref(tu_api(&ctl, ctl.admin_key, "POST",
                       "/v1/nodes/offline-ca/approve", NULL, &code));
    assert_int_equal(code, 200);
    _cleanup_free_ char *log = xasprintf("%s/agent.log", tmp);
    char *run[] = { agent_bin, "run", "--data-dir", node_dir, "--image-dir",
                    img_dir, "--root", root_dir, "--libvirt",
                    "test:///default", "--network", "none", NULL };
    run_agent_until(run, log, node_online, &ctl, "the node came online");

    /* The node pinned the key of the controller it joined ... */
    _cleanup_free_ char *srv_path = xasprintf("%s/server.pem", ctl.dir);
    _cleanup_free_ char *srv_pem = read_text(srv_path);
    _cleanup_free_ char *pin = api_cert_key_pin(srv_pem);
    assert_non_null(pin);
    _cleanup_free_ char *state_path = xasprintf("%s/node.json", node_dir);
    json_auto_t *node_state = json_load_file(state_path, 0, NULL);
    assert_non_null(json_str(node_state, "controller_key_pin"));
    assert_string_equal(json_str(node_state, "controller_key_pin"), pin);

    /* ... so a new certificate from the same CA with another key, good
     * for any client that trusts the CA alone, does not pass for the
     * controller it joined. */
    tu_ctl_stop(&ctl, SIGTERM);
    assert_int_equal(pki_issue_server(ctl.dir, key_out, NULL, 0), 0);
    tu_ctl_restart(&ctl);
    json_decref(tu_api(&ctl, NULL, "GET", "/healthz", NULL, &code));
    assert_int_equal(code, 200);
    _cleanup_free_ char *log2 = xasprintf("%s/agent2.log", tmp);
    run_agent_until(run, log2, log_says_pin_refused, NULL,
                    "the agent refused the new key");
    tu_ctl_destroy(&ctl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(join_pins_exactly_one_ca_certificate),
        cmocka_unit_test(server_speaks_tls12_and_13_with_aead_suites_only),
        cmocka_unit_test(tls13_clients_get_x25519_without_a_retry),
        cmocka_unit_test(handshakes_waiting_for_their_client_cost_no_cpu),
        cmocka_unit_test(data_dir_files_are_the_controllers_alone),
        cmocka_unit_test(ca_key_kept_offline_and_nodes_still_join),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
