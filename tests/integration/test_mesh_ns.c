/* Integration tests for netfabric in network namespaces this test makes:
 * links, bridges, VXLAN and FDB through rtnetlink; the nftables plan
 * applied through nft; the UAPI text protocol; then a mesh of
 * namespace "hosts" running wireguard-go, configured by netfabric_apply
 * from desired documents: every host reaches every other, a fourth joins
 * without disturbing existing sessions, one leaves; and tenant networks as
 * VXLAN over the mesh with anti-spoofing, isolation, DNAT and masquerade.
 * Needs root; skips (77) without it. Namespaces: ip netns (test setup). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "netfabric/apply.h"
#include "netfabric/link.h"
#include "netfabric/nft.h"
#include "netfabric/nftplan.h"
#include "netfabric/wg_uapi.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                    #c);                                                       \
            return 1;                                                          \
        }                                                                      \
    } while (0)

static char P[24]; /* namespace prefix, unique per run */

/* Results written by forked children. */
struct shared {
    char text[512];
    int64_t v[8];
};
static struct shared *sh;

static uint32_t A(const char *t)
{
    uint32_t a = 0;
    if (ipam_addr_parse(t, &a) < 0)
        abort();
    return a;
}

/* How long a ping that must be answered may take: only a failure waits
 * this long, and under ASan on a loaded machine the first handshake of
 * wireguard-go and a fresh ARP can take seconds. */
#define PING_OK_MS 20000

static char *ip_out(const char *a1, const char *a2, const char *a3,
                    const char *a4, const char *a5)
{
    char *argv[] = { (char *)tu_ip_bin(), (char *)a1, (char *)a2, (char *)a3,
                     (char *)a4, (char *)a5, NULL };
    int st;
    return tu_run(argv, &st);
}

/* ---- TCP: a one-shot server and a client ---- */
struct serve_arg {
    const char *addr;
    int port;
    int ready_fd;
};

/* Accepts one connection and writes the peer's address to it. */
static int serve_fn(void *arg)
{
    const struct serve_arg *a = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)a->port) };
    inet_pton(AF_INET, a->addr, &sa.sin_addr);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(listen(fd, 4) == 0);
    CHECK(write(a->ready_fd, "r", 1) == 1);
    alarm(20);
    struct sockaddr_in peer;
    socklen_t pl = sizeof(peer);
    int c = accept(fd, (struct sockaddr *)&peer, &pl);
    CHECK(c >= 0);
    char t[64];
    inet_ntop(AF_INET, &peer.sin_addr, t, sizeof(t));
    CHECK(write(c, t, strlen(t)) == (ssize_t)strlen(t));
    close(c);
    close(fd);
    return 0;
}

static pid_t serve_once(const char *ns, const char *addr, int port)
{
    int p[2];
    if (pipe(p) < 0)
        abort();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        struct serve_arg a = { addr, port, p[1] };
        _exit(tu_in_ns(ns, serve_fn, &a));
    }
    close(p[1]);
    char c;
    struct pollfd pf = { .fd = p[0], .events = POLLIN };
    if (poll(&pf, 1, 5000) <= 0 || read(p[0], &c, 1) != 1) {
        close(p[0]);
        tu_kill(pid, SIGKILL);
        return -1;
    }
    close(p[0]);
    return pid;
}

struct fetch_arg {
    const char *addr;
    int port;
};

static int fetch_fn(void *arg)
{
    const struct fetch_arg *a = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = { 15, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)a->port) };
    inet_pton(AF_INET, a->addr, &sa.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    ssize_t n = read(fd, sh->text, sizeof(sh->text) - 1);
    CHECK(n > 0);
    sh->text[n] = '\0';
    close(fd);
    return 0;
}

/* Connect from ns to addr:port; the text the server sent, or NULL. */
static const char *fetch(const char *ns, const char *addr, int port)
{
    struct fetch_arg a = { addr, port };
    memset(sh->text, 0, sizeof(sh->text));
    return tu_in_ns(ns, fetch_fn, &a) == 0 ? sh->text : NULL;
}

/* ================================================================== */
/* UAPI text protocol (no daemon) */

static void uapi_text_round_trips_and_errno_is_checked(void **state)
{
    struct wg_device d = { 0 };
    strcpy(d.name, "fogwg0");
    d.has_private_key = true;
    memset(d.private_key, 0xab, WGKEY_LEN);
    d.has_listen_port = true;
    d.listen_port = 51820;
    struct wg_peer *p = wg_device_add_peer(&d);
    memset(p->public_key, 0x01, WGKEY_LEN);
    assert_int_equal(wg_endpoint_parse("192.0.2.1:51821", &p->endpoint), 0);
    p->keepalive = 25;
    p->replace_allowed_ips = true;
    assert_int_equal(wg_allowed_ip_parse("100.96.0.2/32", wg_peer_add_allowed_ip(p)), 0);
    p = wg_device_add_peer(&d);
    memset(p->public_key, 0x02, WGKEY_LEN);
    p->remove = true;
    struct buf b = BUF_INIT;
    assert_int_equal(wg_uapi_format_set(&d, &b), 0);
    const char *want =
        "set=1\n"
        "private_key=abababababababababababababababababababababababababababababababab\n"
        "listen_port=51820\n"
        "public_key=0101010101010101010101010101010101010101010101010101010101010101\n"
        "endpoint=192.0.2.1:51821\n"
        "persistent_keepalive_interval=25\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=100.96.0.2/32\n"
        "public_key=0202020202020202020202020202020202020202020202020202020202020202\n"
        "remove=true\n"
        "\n";
    assert_string_equal(buf_str(&b), want);
    buf_free(&b);
    wg_device_clear(&d);

    const char *reply =
        "private_key=abababababababababababababababababababababababababababababababab\n"
        "listen_port=51820\n"
        "fwmark=0\n"
        "public_key=0101010101010101010101010101010101010101010101010101010101010101\n"
        "preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n"
        "protocol_version=1\n"
        "endpoint=[2001:db8::1]:51821\n"
        "last_handshake_time_sec=1700000000\n"
        "last_handshake_time_nsec=5\n"
        "tx_bytes=92\n"
        "rx_bytes=148\n"
        "persistent_keepalive_interval=25\n"
        "allowed_ip=100.96.0.2/32\n"
        "allowed_ip=10.1.0.0/24\n"
        "errno=0\n\n";
    struct wg_device g = { 0 };
    assert_int_equal(wg_uapi_parse_get(reply, &g), 0);
    assert_true(g.has_private_key);
    uint8_t pub[WGKEY_LEN];
    wgkey_public(g.private_key, pub);
    assert_memory_equal(pub, g.public_key, WGKEY_LEN); /* derived */
    assert_int_equal(g.listen_port, 51820);
    assert_int_equal(g.n_peers, 1);
    assert_int_equal(g.peers[0].endpoint.sa.sa_family, AF_INET6);
    assert_int_equal(g.peers[0].last_handshake_sec, 1700000000);
    assert_int_equal(g.peers[0].rx_bytes, 148);
    assert_int_equal(g.peers[0].tx_bytes, 92);
    assert_int_equal(g.peers[0].keepalive, 25);
    assert_int_equal(g.peers[0].n_allowed_ips, 2);
    wg_device_clear(&g);

    /* wireguard-go reports failures as negative errno values. */
    assert_int_equal(wg_uapi_parse_get("errno=-22\n\n", &g), -EIO);
    assert_int_equal(wg_uapi_parse_set_reply("errno=-22\n\n"), -EIO);
    assert_int_equal(wg_uapi_parse_set_reply("errno=0\n\n"), 0);
    assert_int_equal(wg_uapi_parse_set_reply("garbage\n\n"), -EBADMSG);
    assert_int_equal(wg_uapi_parse_get("listen_port=1\n\n", &g), -EBADMSG);
    assert_int_equal(wg_uapi_parse_get("public_key=zz\nerrno=0\n\n", &g), -EBADMSG);

    /* A bad config never reaches the socket half-applied. */
    struct wg_device bad = { 0 };
    strcpy(bad.name, "fogwg0");
    wg_device_add_peer(&bad); /* zero public key */
    b = (struct buf)BUF_INIT;
    assert_int_equal(wg_uapi_format_set(&bad, &b), -EINVAL);
    buf_free(&b);
    wg_device_clear(&bad);
}

/* ================================================================== */
/* Links in a fresh namespace */

static bool fdb_has(const struct link_fdb *f, size_t n, const uint8_t mac[6],
                    uint32_t dst)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(f[i].mac, mac, 6) == 0 && f[i].dst == dst)
            return true;
    return false;
}

static int link_ops_fn(void *arg)
{
    int r0 = link_create_kind("ul0", "veth");
    if (r0 < 0)
        fprintf(stderr, "create veth: %s\n", strerror(-r0));
    CHECK(r0 == 0);
    CHECK(link_create_kind("ul0", "veth") == -EEXIST);
    CHECK(link_addr_add("ul0", A("10.77.0.1"), 24) == 0);
    CHECK(link_addr_add("ul0", A("10.77.0.1"), 24) == 0);
    CHECK(link_addr_is_local(A("10.77.0.1")) == 1);
    CHECK(link_addr_is_local(A("10.77.0.9")) == 0);
    CHECK(link_set_up("ul0", true) == 0);
    CHECK(link_is_up("ul0"));

    CHECK(link_create_bridge("fogbr77") == 0);
    CHECK(link_create_bridge("fogbr77") == 0);
    CHECK(link_create_bridge("ul0") == -EEXIST);
    struct link_vxlan vx = { .id = 77, .local = A("10.77.0.1"), .dev = "ul0",
                             .dstport = 4789 };
    CHECK(link_create_vxlan("vxlan77", &vx) == 0);
    CHECK(link_create_vxlan("vxlan77", &vx) == 0);
    vx.id = 78;
    CHECK(link_create_vxlan("vxlan77", &vx) == -EEXIST);
    _cleanup_free_ char *kind = link_kind("vxlan77");
    CHECK(streq(kind, "vxlan"));
    _cleanup_free_ char *det = ip_out("-d", "link", "show", "vxlan77", NULL);
    CHECK(strstr(det, "vxlan id 77") != NULL);
    CHECK(strstr(det, "local 10.77.0.1") != NULL);
    CHECK(strstr(det, "dev ul0") != NULL);
    CHECK(strstr(det, "dstport 4789") != NULL);
    CHECK(strstr(det, "nolearning") != NULL);

    CHECK(link_set_master("vxlan77", "fogbr77") == 0);
    _cleanup_free_ char *m = link_master("vxlan77");
    CHECK(streq(m, "fogbr77"));
    CHECK(link_set_mtu("vxlan77", 1370) == 0);
    unsigned mtu = 0;
    CHECK(link_get_mtu("vxlan77", &mtu) == 0 && mtu == 1370);
    CHECK(link_set_mtu("vxlan77", 10) == -EINVAL);
    CHECK(link_set_up("vxlan77", true) == 0);
    CHECK(link_set_up("fogbr77", true) == 0);
    CHECK(link_is_up("vxlan77"));
    CHECK(link_set_up("vxlan77", false) == 0);
    CHECK(!link_is_up("vxlan77"));
    CHECK(link_set_up("vxlan77", true) == 0);

    static const uint8_t zero[6];
    const uint8_t vm[6] = { 0x52, 0x54, 0, 0, 0, 0x22 };
    CHECK(link_fdb_append("vxlan77", zero, A("10.77.0.2")) == 0);
    CHECK(link_fdb_append("vxlan77", zero, A("10.77.0.3")) == 0);
    CHECK(link_fdb_append("vxlan77", zero, A("10.77.0.3")) == 0);
    CHECK(link_fdb_append("vxlan77", vm, A("10.77.0.2")) == 0);
    struct link_fdb *f = NULL;
    size_t n = 0;
    CHECK(link_fdb_list("vxlan77", &f, &n) == 0);
    CHECK(n == 3);
    CHECK(fdb_has(f, n, zero, A("10.77.0.2")));
    CHECK(fdb_has(f, n, zero, A("10.77.0.3")));
    CHECK(fdb_has(f, n, vm, A("10.77.0.2")));
    free(f);
    CHECK(link_fdb_del("vxlan77", zero, A("10.77.0.3")) == 0);
    CHECK(link_fdb_del("vxlan77", zero, A("10.77.0.3")) == 0);
    CHECK(link_fdb_list("vxlan77", &f, &n) == 0);
    CHECK(n == 2 && !fdb_has(f, n, zero, A("10.77.0.3")));
    free(f);

    struct link_addr *addrs = NULL;
    CHECK(link_addr_add("fogbr77", A("10.1.0.1"), 24) == 0);
    CHECK(link_addr_list("fogbr77", &addrs, &n) == 0);
    CHECK(n == 1 && addrs[0].addr == A("10.1.0.1") && addrs[0].prefix == 24);
    free(addrs);
    CHECK(link_addr_del("fogbr77", A("10.1.0.1"), 24) == 0);
    CHECK(link_addr_del("fogbr77", A("10.1.0.1"), 24) == 0);
    CHECK(link_addr_list("fogbr77", &addrs, &n) == 0);
    CHECK(n == 0);
    free(addrs);

    char **names = NULL;
    CHECK(link_list_names("fogbr", &names) == 0);
    CHECK(names[0] && streq(names[0], "fogbr77") && !names[1]);
    link_names_free(names);

    CHECK(link_set_master("vxlan77", NULL) == 0);
    char *none = link_master("vxlan77");
    CHECK(none == NULL);
    CHECK(link_delete("vxlan77") == 0);
    CHECK(link_delete("vxlan77") == -ENODEV);
    CHECK(!link_exists("vxlan77"));
    CHECK(link_set_mtu("nosuchlink", 1400) == -ENODEV);
    CHECK(link_delete("fogbr77") == 0);
    return 0;
}

static void links_bridges_vxlan_and_fdb_work_in_a_namespace(void **state)
{
    assert_int_equal(tu_in_ns(NULL, link_ops_fn, NULL), 0);
}

/* ================================================================== */
/* nftables in a fresh namespace */

static const char *NFT_DOC =
    "{\"mesh\": {\"address\": \"100.96.0.1\", \"prefix\": 12, \"listen_port\": 51820},"
    " \"peers\": [],"
    " \"networks\": [{\"vxlan_id\": 1000, \"cidr\": \"10.1.0.0/24\","
    "   \"gateway\": \"10.1.0.1\", \"mtu\": 1370, \"bridge\": \"fogbr1000\","
    "   \"vteps\": [], \"macs\": []}],"
    " \"ports\": [{\"vm_id\": \"v\", \"proto\": \"tcp\", \"host_port\": 20080,"
    "   \"vm_port\": 80, \"vm_address\": \"10.1.0.5\"}],"
    " \"vms\": [{\"id\": \"0123abcd-0000-4000-8000-000000000001\","
    "   \"nics\": [{\"mac\": \"52:54:00:00:00:05\", \"address\": \"10.1.0.5\","
    "   \"bridge\": \"fogbr1000\"}]}]}";

static int load_doc(const char *text, struct nf_state *s)
{
    json_t *doc = json_loads(text, 0, NULL);
    if (!doc)
        return -EINVAL;
    char *err = NULL;
    int r = netfabric_state_from_json(doc, NULL, s, &err);
    if (r < 0)
        fprintf(stderr, "document refused: %s\n", err);
    free(err);
    json_decref(doc);
    return r;
}

static int nft_fn(void *arg)
{
    struct nf_state s;
    CHECK(load_doc(NFT_DOC, &s) == 0);
    CHECK(nft_apply("add table inet other\nadd chain inet other c\n", false,
                    NULL) == 0);
    struct buf b = BUF_INIT;
    CHECK(nftplan_script(&s, &b) == 0);
    _cleanup_free_ char *err = NULL;
    /* Checked first (nft -c), then applied, twice: idempotent. */
    CHECK(nft_apply(buf_str(&b), true, &err) == 0);
    CHECK(nft_apply(buf_str(&b), false, &err) == 0);
    CHECK(nft_apply(buf_str(&b), false, &err) == 0);
    char *out = NULL;
    CHECK(nft_query("list table bridge fogfabric", &out, &err) == 0);
    CHECK(strstr(out, "\"fogt0123abcd0\" . 52:54:00:00:00:05 . 10.1.0.5"));
    free(out);
    CHECK(nft_query("list table ip fogfabric_nat", &out, &err) == 0);
    CHECK(strstr(out, "tcp dport 20080 dnat to 10.1.0.5:80"));
    CHECK(strstr(out, "ip saddr 10.1.0.0/24 oifname != \"fogbr1000\" masquerade"));
    free(out);
    CHECK(nft_query("list ruleset", &out, &err) == 0);
    int tables = 0;
    for (char *p = strstr(out, "\ntable "); p; p = strstr(p + 1, "\ntable "))
        tables++;
    tables += startswith(out, "table ");
    CHECK(tables == 5); /* ours (inet, ip, ip6, bridge) and "other" */
    free(out);

    /* The port is unpublished: the whole table is replaced. */
    s.n_published = 0;
    buf_reset(&b);
    CHECK(nftplan_script(&s, &b) == 0);
    CHECK(nft_apply(buf_str(&b), false, &err) == 0);
    CHECK(nft_query("list table ip fogfabric_nat", &out, &err) == 0);
    CHECK(!strstr(out, "dnat"));
    free(out);

    /* A broken script is refused with a message and changes nothing. */
    free(err);
    err = NULL;
    CHECK(nft_apply("delete table inet fogfabric\nadd rule inet nosuch x drop\n",
                    false, &err) == -EINVAL);
    CHECK(err && *err);
    CHECK(nft_query("list table inet fogfabric", &out, NULL) == 0);
    free(out);

    /* Teardown removes ours and only ours. */
    buf_reset(&b);
    nftplan_teardown(&b);
    CHECK(nft_apply(buf_str(&b), false, NULL) == 0);
    CHECK(nft_apply(buf_str(&b), false, NULL) == 0);
    CHECK(nft_query("list ruleset", &out, NULL) == 0);
    CHECK(!strstr(out, "fogfabric"));
    CHECK(strstr(out, "table inet other"));
    free(out);
    buf_free(&b);
    nf_state_clear(&s);
    return 0;
}

static void nft_plan_applies_atomically_and_leaves_other_tables(void **state)
{
    assert_int_equal(tu_in_ns(NULL, nft_fn, NULL), 0);
}

/* ================================================================== */
/* The mesh: namespace hosts with wireguard-go */

#define MAX_HOSTS 4

struct host {
    char ns[32];
    char wg[IFNAMSIZ];
    uint8_t priv[WGKEY_LEN], pub[WGKEY_LEN];
    char mesh[16], under[16];
    bool up;
};
static struct host hosts[MAX_HOSTS + 1]; /* 1-based */
static char ul_ns[32];
static char vm_ns[4][32];

/* The desired document for host h: peers = the hosts in `peers` (bitmask);
 * extra = JSON members for networks/ports/vms (or ""). */
static char *host_doc(int h, unsigned peers, const char *extra)
{
    struct buf b = BUF_INIT;
    buf_printf(&b, "{\"mesh\": {\"address\": \"%s\", \"prefix\": 12, "
                   "\"listen_port\": 51820}, \"peers\": [", hosts[h].mesh);
    bool first = true;
    for (int j = 1; j <= MAX_HOSTS; j++) {
        if (j == h || !(peers & (1u << j)))
            continue;
        char b64[WGKEY_B64_LEN + 1];
        wgkey_to_base64(hosts[j].pub, b64);
        buf_printf(&b, "%s{\"node_id\": \"n%d\", \"public_key\": \"%s\", "
                       "\"endpoint\": \"%s:51820\", \"allowed_ips\": "
                       "[\"%s/32\"], \"keepalive\": 25}",
                   first ? "" : ", ", j, b64, hosts[j].under, hosts[j].mesh);
        first = false;
    }
    buf_printf(&b, "]%s%s}", *extra ? ", " : "", extra);
    return buf_steal(&b);
}

struct apply_arg {
    int host;
    const char *doc;
    uint32_t public_addr;
};

static int apply_fn(void *arg)
{
    const struct apply_arg *a = arg;
    struct nf_state s;
    json_t *doc = json_loads(a->doc, 0, NULL);
    CHECK(doc);
    char *err = NULL;
    int r = netfabric_state_from_json(doc, hosts[a->host].wg, &s, &err);
    if (r < 0)
        fprintf(stderr, "refused: %s\n", err);
    CHECK(r == 0);
    json_decref(doc);
    s.has_private_key = true;
    memcpy(s.private_key, hosts[a->host].priv, WGKEY_LEN);
    s.public_addr = a->public_addr;
    /* The underlay stands for the internet here, in a private range: the
     * provider opts it in (test_egress_ns checks the policy itself). */
    static const struct ipam_cidr underlay = { 0xc0a84d00, 24 }; /* 192.168.77/24 */
    s.egress_allow = &underlay;
    s.n_egress_allow = 1;
    r = netfabric_apply(&s);
    if (r < 0)
        fprintf(stderr, "netfabric_apply on host %d: %s\n", a->host, strerror(-r));
    nf_state_clear(&s);
    return r < 0 ? 1 : 0;
}

static int apply_host(int h, unsigned peers, const char *extra,
                      uint32_t public_addr)
{
    _cleanup_free_ char *doc = host_doc(h, peers, extra);
    struct apply_arg a = { h, doc, public_addr };
    return tu_in_ns(hosts[h].ns, apply_fn, &a);
}

/* Reads host h's view of peer j into sh->v: [0] present, [1] handshake
 * time, [2] rx bytes, [3] number of peers. */
struct peer_arg {
    int h, j;
};

static int peer_fn(void *arg)
{
    const struct peer_arg *a = arg;
    struct wg_device d = { 0 };
    struct wg_opts o = { 0 };
    CHECK(wg_backend_pick()->get(&o, hosts[a->h].wg, &d) == 0);
    struct wg_peer *p = wg_device_find_peer(&d, hosts[a->j].pub);
    sh->v[0] = p != NULL;
    sh->v[1] = p ? p->last_handshake_sec : 0;
    sh->v[2] = p ? (int64_t)p->rx_bytes : 0;
    sh->v[3] = (int64_t)d.n_peers;
    sh->v[4] = d.listen_port;
    sh->v[5] = wgkey_equal(d.public_key, hosts[a->h].pub);
    wg_device_clear(&d);
    return 0;
}

static void peer_view(int h, int j)
{
    struct peer_arg a = { h, j };
    memset(sh->v, 0, sizeof(sh->v));
    assert_int_equal(tu_in_ns(hosts[h].ns, peer_fn, &a), 0);
}

static void add_host(int h)
{
    struct host *x = &hosts[h];
    char veth[IFNAMSIZ], cidr[24];
    snprintf(veth, sizeof(veth), "ulh%d", h);
    snprintf(cidr, sizeof(cidr), "%s/24", x->under);
    assert_int_equal(tu_ns_add(x->ns), 0);
    assert_int_equal(tu_ns_wire(ul_ns, "ul0", veth, x->ns, cidr), 0);
    x->up = true;
}

static void remove_host(int h)
{
    struct host *x = &hosts[h];
    if (!x->up)
        return;
    tu_wg_remove(x->ns, x->wg);
    tu_ip("netns del %s", x->ns);
    x->up = false;
}

static int mesh_setup(void **state)
{
    snprintf(ul_ns, sizeof(ul_ns), "%s-ul", P);
    for (unsigned h = 1; h <= MAX_HOSTS; h++) {
        struct host *x = &hosts[h];
        unsigned char n = (unsigned char)h; /* bounded: names fit */
        snprintf(x->ns, sizeof(x->ns), "%.20s-h%u", P, n);
        snprintf(x->wg, sizeof(x->wg), "nfw%uh%u",
                 (unsigned)getpid() % 1000000u, n);
        snprintf(x->mesh, sizeof(x->mesh), "100.96.0.%u", n);
        snprintf(x->under, sizeof(x->under), "192.168.77.%u", n);
        wgkey_generate_private(x->priv);
        wgkey_public(x->priv, x->pub);
    }
    for (int v = 1; v <= 3; v++)
        snprintf(vm_ns[v], sizeof(vm_ns[v]), "%.20s-vm%u", P,
                 (unsigned)(unsigned char)v);
    if (tu_ns_add(ul_ns) != 0 ||
        tu_ip("-n %s link add ul0 type bridge", ul_ns) != 0 ||
        tu_ip("-n %s link set ul0 up", ul_ns) != 0)
        return -1;
    return 0;
}

static int mesh_teardown(void **state)
{
    for (int h = 1; h <= MAX_HOSTS; h++)
        remove_host(h);
    for (int v = 1; v <= 3; v++) {
        char path[64];
        snprintf(path, sizeof(path), "/run/netns/%s", vm_ns[v]);
        if (access(path, F_OK) == 0)
            tu_ip("netns del %s", vm_ns[v]);
    }
    tu_ip("netns del %s", ul_ns);
    return 0;
}

static void assert_full_mesh(unsigned members)
{
    for (int i = 1; i <= MAX_HOSTS; i++)
        for (int j = 1; j <= MAX_HOSTS; j++) {
            if (i == j || !(members & (1u << i)) || !(members & (1u << j)))
                continue;
            if (!tu_ping(hosts[i].ns, NULL, hosts[j].mesh, PING_OK_MS)) {
                fprintf(stderr, "host %d cannot reach host %d over the mesh\n",
                        i, j);
                fail();
            }
        }
}

#define BIT(h) (1u << (h))

static void mesh_joins_and_leaves(void **state)
{
    unsigned three = BIT(1) | BIT(2) | BIT(3);
    for (int h = 1; h <= 3; h++)
        add_host(h);
    for (int h = 1; h <= 3; h++)
        assert_int_equal(apply_host(h, three, "", 0), 0);
    /* Applying the same document again changes nothing and is harmless. */
    assert_int_equal(apply_host(1, three, "", 0), 0);
    assert_full_mesh(three);

    peer_view(1, 2);
    assert_int_equal(sh->v[0], 1);
    assert_true(sh->v[1] > 0);  /* handshake done */
    assert_int_equal(sh->v[3], 2);
    assert_int_equal(sh->v[4], 51820);
    assert_int_equal(sh->v[5], 1); /* public key derived from the private */
    int64_t hs12 = sh->v[1], rx12 = sh->v[2];

    /* A fourth host joins; every peer learns it from a new document. */
    unsigned four = three | BIT(4);
    add_host(4);
    assert_int_equal(apply_host(4, four, "", 0), 0);
    for (int h = 1; h <= 3; h++)
        assert_int_equal(apply_host(h, four, "", 0), 0);
    assert_full_mesh(four);
    /* Existing sessions survived the update: no replace-all of peers. */
    peer_view(1, 2);
    assert_int_equal(sh->v[0], 1);
    assert_int_equal(sh->v[3], 3);
    assert_true(sh->v[1] == hs12 || sh->v[1] >= hs12);
    assert_true(sh->v[2] >= rx12);
    assert_true(sh->v[2] > 0);

    /* Host 3 leaves: the others drop it. */
    unsigned left = four & ~BIT(3);
    for (int h = 1; h <= 4; h++)
        if (h != 3)
            assert_int_equal(apply_host(h, left, "", 0), 0);
    peer_view(1, 3);
    assert_int_equal(sh->v[0], 0);
    assert_int_equal(sh->v[3], 2);
    assert_false(tu_ping(hosts[1].ns, NULL, hosts[3].mesh, 1500));
    remove_host(3);
    assert_full_mesh(left);
}

/* ---- tenant networks over the mesh (hosts 1 and 2 from above) ---- */

static const char *VM1 = "0123abcd-0000-4000-8000-000000000001";
static const char *VM2 = "4567abcd-0000-4000-8000-000000000002";
static const char *VM3 = "89abcdef-0000-4000-8000-000000000003";

static void add_vm(int v, int host, const char *tap, const char *mac,
                   const char *addr, const char *gw, const char *bridge)
{
    assert_int_equal(tu_ns_add(vm_ns[v]), 0);
    assert_int_equal(tu_ip("-n %s link add %s type veth peer name eth0 "
                           "netns %s", hosts[host].ns, tap, vm_ns[v]), 0);
    assert_int_equal(tu_ip("-n %s link set %s master %s mtu 1370 up",
                           hosts[host].ns, tap, bridge), 0);
    assert_int_equal(tu_ip("-n %s link set eth0 address %s mtu 1370 up",
                           vm_ns[v], mac), 0);
    assert_int_equal(tu_ip("-n %s addr add %s/24 dev eth0", vm_ns[v], addr), 0);
    assert_int_equal(tu_ip("-n %s route add default via %s", vm_ns[v], gw), 0);
}

static char *net_extra(int host)
{
    /* Network 1000 spans hosts 1 and 2; network 1001 (another tenant)
     * only host 1. */
    const char *other = host == 1 ? "100.96.0.2" : "100.96.0.1";
    const char *other_mac = host == 1 ? "52:54:00:00:01:02" : "52:54:00:00:01:01";
    struct buf b = BUF_INIT;
    buf_printf(&b,
               "\"networks\": [{\"vxlan_id\": 1000, \"cidr\": \"10.1.0.0/24\","
               " \"gateway\": \"10.1.0.1\", \"mtu\": 1370, \"bridge\": \"fogbr1000\","
               " \"vteps\": [\"%s\"], \"macs\": [{\"mac\": \"%s\", \"vtep\": \"%s\"}]}",
               other, other_mac, other);
    if (host == 1)
        buf_puts(&b, ", {\"vxlan_id\": 1001, \"cidr\": \"10.2.0.0/24\","
                     " \"gateway\": \"10.2.0.1\", \"mtu\": 1370, \"bridge\":"
                     " \"fogbr1001\", \"vteps\": [], \"macs\": []}");
    buf_puts(&b, "], ");
    if (host == 1)
        buf_printf(&b,
                   "\"ports\": [{\"vm_id\": \"%s\", \"proto\": \"tcp\", "
                   "\"host_port\": 20080, \"vm_port\": 80, \"vm_address\": "
                   "\"10.1.0.11\"}], "
                   "\"vms\": [{\"id\": \"%s\", \"nics\": [{\"mac\": "
                   "\"52:54:00:00:01:01\", \"address\": \"10.1.0.11\", "
                   "\"bridge\": \"fogbr1000\"}]}, {\"id\": \"%s\", \"nics\": "
                   "[{\"mac\": \"52:54:00:00:01:03\", \"address\": "
                   "\"10.2.0.13\", \"bridge\": \"fogbr1001\"}]}]",
                   VM1, VM1, VM3);
    else
        buf_printf(&b,
                   "\"ports\": [], \"vms\": [{\"id\": \"%s\", \"nics\": "
                   "[{\"mac\": \"52:54:00:00:01:02\", \"address\": "
                   "\"10.1.0.12\", \"bridge\": \"fogbr1000\"}]}]",
                   VM2);
    return buf_steal(&b);
}

static int gone_fn(void *arg)
{
    CHECK(!link_exists("fogbr1000"));
    CHECK(!link_exists("vxlan1000"));
    char *out = NULL;
    CHECK(nft_query("list table ip fogfabric_nat", &out, NULL) == 0);
    CHECK(!strstr(out, "masquerade"));
    free(out);
    return 0;
}

static int teardown_fn(void *arg)
{
    const struct host *h = arg;
    struct nf_state s = { 0 };
    snprintf(s.mesh_ifname, sizeof(s.mesh_ifname), "%s", h->wg);
    CHECK(link_exists("fogbr1000") && link_exists("fogbr1001"));
    CHECK(link_exists(h->wg));
    CHECK(netfabric_teardown(&s) == 0);
    CHECK(!link_exists("fogbr1000") && !link_exists("vxlan1000"));
    CHECK(!link_exists("fogbr1001"));
    CHECK(!link_exists(h->wg));
    char *out = NULL;
    CHECK(nft_query("list ruleset", &out, NULL) == 0);
    CHECK(!strstr(out, "fogfabric"));
    free(out);
    return 0;
}

/* Whether every answer VM v gets to broadcast ARP requests for gateway
 * gw (they reach every node of the network) comes from host h's bridge
 * fogbr1000: the anycast gateway answers from the VM's own node only. */
static bool gateway_answers_from(int v, int h, const char *gw)
{
    int st;
    char *mac_argv[] = { (char *)tu_ip_bin(), "netns", "exec", hosts[h].ns,
                         "cat", "/sys/class/net/fogbr1000/address", NULL };
    _cleanup_free_ char *mac = tu_run(mac_argv, &st);
    _cleanup_free_ char *bb = tu_which("busybox");
    if (st != 0 || !mac || !bb)
        return false;
    mac[strcspn(mac, "\n")] = '\0';
    char *arp_argv[] = { (char *)tu_ip_bin(), "netns", "exec", vm_ns[v], bb,
                         "arping", "-b", "-c", "3", "-w", "3", "-I", "eth0",
                         (char *)gw, NULL };
    _cleanup_free_ char *out = tu_run(arp_argv, &st);
    int answers = 0;
    for (const char *p = out; p && (p = strchr(p, '[')); p++, answers++)
        if (strncasecmp(p + 1, mac, strlen(mac)) != 0 ||
            p[1 + strlen(mac)] != ']') {
            fprintf(stderr, "gateway %s answered VM %d as %.17s, not %s\n",
                    gw, v, p + 1, mac);
            return false;
        }
    return answers > 0;
}

static void tenant_network_spans_hosts_over_the_mesh(void **state)
{
    unsigned mesh = BIT(1) | BIT(2) | BIT(4);
    _cleanup_free_ char *e1 = net_extra(1), *e2 = net_extra(2);
    assert_int_equal(apply_host(1, mesh, e1, A("192.168.77.1")), 0);
    assert_int_equal(apply_host(2, mesh, e2, 0), 0);
    assert_int_equal(apply_host(1, mesh, e1, A("192.168.77.1")), 0); /* again */

    char tap1[IFNAMSIZ], tap2[IFNAMSIZ], tap3[IFNAMSIZ];
    assert_int_equal(netfabric_tap_name(VM1, 0, tap1), 0);
    assert_int_equal(netfabric_tap_name(VM2, 0, tap2), 0);
    assert_int_equal(netfabric_tap_name(VM3, 0, tap3), 0);
    add_vm(1, 1, tap1, "52:54:00:00:01:01", "10.1.0.11", "10.1.0.1", "fogbr1000");
    add_vm(2, 2, tap2, "52:54:00:00:01:02", "10.1.0.12", "10.1.0.1", "fogbr1000");
    add_vm(3, 1, tap3, "52:54:00:00:01:03", "10.2.0.13", "10.2.0.1", "fogbr1001");

    /* VMs on different hosts share their private network (VXLAN in
     * WireGuard), and each reaches its local anycast gateway. */
    assert_true(tu_ping(vm_ns[1], NULL, "10.1.0.12", PING_OK_MS));
    assert_true(tu_ping(vm_ns[2], NULL, "10.1.0.11", PING_OK_MS));
    assert_true(tu_ping(vm_ns[1], NULL, "10.1.0.1", PING_OK_MS));
    assert_true(tu_ping(vm_ns[2], NULL, "10.1.0.1", PING_OK_MS));
    assert_true(tu_ping(vm_ns[3], NULL, "10.2.0.1", PING_OK_MS));
    /* The other node's bridge, with the same gateway address, never
     * answers for it over the mesh. */
    assert_true(gateway_answers_from(1, 1, "10.1.0.1"));
    assert_true(gateway_answers_from(2, 2, "10.1.0.1"));

    /* Another tenant's network on the same host is not routed to. */
    assert_false(tu_ping(vm_ns[3], NULL, "10.1.0.11", 1500));
    assert_false(tu_ping(vm_ns[1], NULL, "10.2.0.13", 1500));
    /* Nor is the mesh. */
    assert_false(tu_ping(vm_ns[1], NULL, "100.96.0.2", 1500));

    /* A forged source address is dropped at the tap. */
    assert_int_equal(tu_ip("-n %s addr add 10.1.0.99/24 dev eth0",
                           vm_ns[1]), 0);
    assert_false(tu_ping(vm_ns[1], "10.1.0.99", "10.1.0.12", 1500));
    assert_true(tu_ping(vm_ns[1], "10.1.0.11", "10.1.0.12", PING_OK_MS));
    /* So is a forged MAC. */
    assert_int_equal(tu_ip("-n %s link set eth0 address 52:54:00:00:01:99",
                           vm_ns[1]), 0);
    assert_int_equal(tu_ip("-n %s neigh flush dev eth0", vm_ns[1]), 0);
    assert_false(tu_ping(vm_ns[1], "10.1.0.11", "10.1.0.12", 1500));
    assert_int_equal(tu_ip("-n %s link set eth0 address 52:54:00:00:01:01",
                           vm_ns[1]), 0);
    assert_true(tu_ping(vm_ns[1], "10.1.0.11", "10.1.0.12", PING_OK_MS));

    /* Published port: the underlay ("internet") reaches the VM through
     * DNAT on host 1's public address. */
    pid_t srv = serve_once(vm_ns[1], "10.1.0.11", 80);
    assert_true(srv > 0);
    const char *seen = fetch(hosts[2].ns, "192.168.77.1", 20080);
    assert_non_null(seen);
    assert_string_equal(seen, "192.168.77.2"); /* the client, not NATed */
    tu_kill(srv, SIGKILL);

    /* Behind NAT the public address is its router's, which the host does
     * not hold: the router forwards the port to the host's own address,
     * where it answers all the same. */
    assert_int_equal(apply_host(1, mesh, e1, A("198.51.100.77")), 0);
    srv = serve_once(vm_ns[1], "10.1.0.11", 80);
    assert_true(srv > 0);
    seen = fetch(hosts[2].ns, "192.168.77.1", 20080);
    assert_non_null(seen);
    assert_string_equal(seen, "192.168.77.2");
    tu_kill(srv, SIGKILL);
    assert_int_equal(apply_host(1, mesh, e1, A("192.168.77.1")), 0);

    /* Egress is masqueraded behind the host's address. */
    srv = serve_once(hosts[2].ns, "192.168.77.2", 7000);
    assert_true(srv > 0);
    seen = fetch(vm_ns[1], "192.168.77.2", 7000);
    assert_non_null(seen);
    assert_string_equal(seen, "192.168.77.1");
    tu_kill(srv, SIGKILL);

    /* The network leaves host 2 with its last VM: links go. */
    assert_int_equal(apply_host(2, mesh, "\"networks\": [], \"vms\": []", 0), 0);
    assert_int_equal(tu_in_ns(hosts[2].ns, gone_fn, NULL), 0);
    assert_false(tu_ping(vm_ns[1], NULL, "10.1.0.12", 1500));

    /* Teardown removes the mesh, our links and our tables. */
    assert_int_equal(tu_in_ns(hosts[1].ns, teardown_fn, &hosts[1]), 0);
}

int main(void)
{
    int r = tu_ns_test_begin(sizeof(*sh), (void **)&sh);
    if (r != 0)
        return r;
    snprintf(P, sizeof(P), "nf%d", (int)getpid());
    setenv("FOG_WG_BACKEND", "uapi", 0);

    const struct CMUnitTest basic[] = {
        cmocka_unit_test(uapi_text_round_trips_and_errno_is_checked),
        cmocka_unit_test(links_bridges_vxlan_and_fdb_work_in_a_namespace),
        cmocka_unit_test(nft_plan_applies_atomically_and_leaves_other_tables),
    };
    int failed = cmocka_run_group_tests_name("netfabric basics", basic, NULL, NULL);

    if (!tu_have_wireguard_go()) {
        printf("wireguard-go not installed: mesh tests skipped\n");
        return failed ? 1 : 0;
    }
    const struct CMUnitTest mesh[] = {
        cmocka_unit_test(mesh_joins_and_leaves),
        cmocka_unit_test(tenant_network_spans_hosts_over_the_mesh),
    };
    failed += cmocka_run_group_tests_name("mesh in namespaces", mesh,
                                          mesh_setup, mesh_teardown);
    return failed ? 1 : 0;
}
