/* A running fog-nodeagent (libvirt test:///default) fed a hostile desired
 * document by a fake controller built on api/http_server: host ports out
 * of range, in use or the WireGuard port, foreign bridges, addresses out
 * of their network, an image from another host, a network over the host's
 * route. Nothing hostile may be applied (no disk or domain for the hostile
 * VMs, no DNAT planned for the bad ports, no fetch of the foreign image)
 * while the honest part still runs, and the refusals reach the fake
 * controller as a `refused` list. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/http_server.h"
#include "common/buf.h"
#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "netfabric/nftplan.h"
#include "nodeagent/disk.h"
#include "nodeagent/nodestate.h"
#include "nodeagent/policy.h"
#include "tests/testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#define NODE_ID "0a0a0a0a-0000-4000-8000-00000000000a"
#define VM_GOOD "00000000-0000-4000-8000-0000000000a1"
#define VM_DOCKER "00000000-0000-4000-8000-0000000000b1"
#define VM_ETH0 "00000000-0000-4000-8000-0000000000b2"
#define VM_OUTSIDE "00000000-0000-4000-8000-0000000000b3"
#define VM_IMAGE "00000000-0000-4000-8000-0000000000b4"
#define VM_ROUTE "00000000-0000-4000-8000-0000000000b5"
#define IMAGE_ID "11111111-0000-4000-8000-0000000000c1"

static const char *const hostile_vms[] = { VM_DOCKER, VM_ETH0, VM_OUTSIDE,
                                           VM_IMAGE, VM_ROUTE };

/* ---- the fake controller ---- */

static struct {
    struct http_server *http;
    int port;
    json_t *doc;
    pthread_mutex_t lock;
    json_t *refused;     /* the last `refused` list posted (lock) */
    json_t *vms;         /* the last status' VMs (lock) */
    int statuses;        /* status posts received (lock) */
    int foreign_fetches; /* requests for anything but the agent routes */
} F = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* What the fake controller had received when the test looked, copied so
 * that no assertion runs under its lock (a failing one would leave the
 * server's handlers waiting on it). */
static json_t *seen_refused, *seen_vms;

static void h_desired(struct http_request *r, void *app)
{
    const char *since = http_req_query(r, "since");
    /* The document never changes: a poll for a newer one is held a while
     * and answered with the same revision. */
    if (since && !http_req_resumed(r) && !http_req_stopping(r)) {
        http_req_park(r, "desired", mono_ms() + 1000);
        return;
    }
    http_reply_json(r, 200, json_incref(F.doc));
}

static void h_status(struct http_request *r, void *app)
{
    json_t *b = http_req_json(r);
    pthread_mutex_lock(&F.lock);
    F.statuses++;
    if (json_object_get(b, "refused")) {
        json_decref(F.refused);
        F.refused = json_incref(json_object_get(b, "refused"));
    }
    json_decref(F.vms);
    F.vms = json_incref(json_object_get(b, "vms"));
    pthread_mutex_unlock(&F.lock);
    http_reply_json(r, 200, json_pack("{s:i}", "revision", 1));
}

/* Where an agent that obeyed the hostile image source would go. */
static void h_foreign(struct http_request *r, void *app)
{
    pthread_mutex_lock(&F.lock);
    F.foreign_fetches++;
    pthread_mutex_unlock(&F.lock);
    fprintf(stderr, "fake controller: foreign fetch of %s\n",
            http_req_path(r));
    http_reply_problem(r, 404, "not-found", NULL, "no such file");
}

static const struct http_route routes[] = {
    { "GET", "/v1/agent/desired", h_desired, 0, NULL, 0 },
    { "POST", "/v1/agent/status", h_status, 0, NULL, 0 },
    { "GET", "/evil/{f}", h_foreign, 0, NULL, 0 },
    { "GET", "/v1/images/{id}/file", h_foreign, 0, NULL, 0 },
};

/* ---- the host the agent sees ---- */

static char *tmp, *data_dir, *image_dir, *root_dir, *agent_log;
static pid_t agent_pid = -1;
static int port_min, port_max, wg_port, good_port;
static char *route_cidr, *route_gw, *route_addr; /* a host route to attack */

static void write_file(const char *rel, const char *text)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", root_dir, rel);
    _cleanup_free_ char *d = xstrdup(p);
    *strrchr(d, '/') = '\0';
    assert_int_equal(mkdir_p(d, 0755), 0);
    assert_int_equal(file_write_atomic(p, text, strlen(text), 0644), 0);
}

/* The host's live /proc/net table `name` into the fake root (so the agent
 * sees this moment's listeners, the fake controller's among them); its
 * text is returned (caller frees), NULL when the host has none. */
static char *copy_proc_net(const char *name)
{
    _cleanup_free_ char *src = xasprintf("/proc/net/%s", name);
    char *text = NULL;
    if (file_read(src, 64 << 20, &text, NULL) < 0)
        return NULL;
    _cleanup_free_ char *rel = xasprintf("proc/net/%s", name);
    write_file(rel, text);
    return text;
}

/* A network on one of the host's own routes (or around one of its own
 * addresses), to be refused. */
static void pick_host_route(const char *route, const char *trie)
{
    struct policy_net *nets = NULL;
    size_t n = 0;
    assert_int_equal(policy_parse_route(route, &nets, &n), 0);
    if (trie)
        policy_parse_fib_trie(trie, &nets, &n);
    for (size_t i = 0; i < n && !route_cidr; i++) {
        /* Widened to a /24 at most, so it has host addresses. */
        struct ipam_cidr c = nets[i].cidr;
        if ((c.net >> 24) == 127)
            continue;
        if (c.prefix > 24)
            c = (struct ipam_cidr){ c.net & ipam_mask(24), 24 };
        char gw[IPAM_ADDR_STRLEN], addr[IPAM_ADDR_STRLEN];
        ipam_addr_format(c.net + 1, gw);
        ipam_addr_format(c.net + 2, addr);
        route_cidr = ipam_cidr_format(&c);
        route_gw = xstrdup(gw);
        route_addr = xstrdup(addr);
    }
    free(nets);
    if (!route_cidr) {
        printf("the host has no route or address but loopback\n");
        exit(77);
    }
}

/* The hostile document (and one honest VM and port in it). */
static json_t *hostile_doc(void)
{
    _cleanup_free_ char *evil = xasprintf("http://localhost:%d/evil/x.qcow2",
                                          F.port);
    json_t *nic_good = json_pack(
        "{s:s, s:s, s:s, s:i, s:s, s:s}", "mac", "52:54:00:00:00:a1",
        "address", "10.250.1.10", "bridge", "fogbr4001", "prefix", 24,
        "gateway", "10.250.1.1", "network_id", "w-good");
    json_t *doc = json_pack(
        "{s:i, s:s, s:{s:s, s:i, s:i}, s:[], s:[], s:[], s:[]}", "revision",
        1, "node_id", NODE_ID, "mesh", "address", "100.96.0.5", "prefix", 12,
        "listen_port", 51820, "peers", "networks", "vms", "ports");
    json_t *nets = json_object_get(doc, "networks");
    json_array_append_new(nets, json_pack(
        "{s:s, s:i, s:s, s:s, s:s}", "id", "w-good", "vxlan_id", 4001,
        "cidr", "10.250.1.0/24", "gateway", "10.250.1.1", "bridge",
        "fogbr4001"));
    json_array_append_new(nets, json_pack(
        "{s:s, s:i, s:s, s:s, s:s}", "id", "w-route", "vxlan_id", 4002,
        "cidr", route_cidr, "gateway", route_gw, "bridge", "fogbr4002"));
    json_array_append_new(nets, json_pack(
        "{s:s, s:i, s:s, s:s, s:s}", "id", "w-eth0", "vxlan_id", 4003,
        "cidr", "10.250.3.0/24", "gateway", "10.250.3.1", "bridge", "eth0"));

    json_t *vms = json_object_get(doc, "vms");
#define VM(id, name, nics)                                                    \
    json_pack("{s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:o}", "id", id, "name",   \
              name, "vcpus", 1, "memory_mib", 64, "disk_gib", 1, "image",     \
              "tiny", "power", "running", "nics", nics)
    json_array_append_new(vms, VM(VM_GOOD, "good", json_pack("[o]", nic_good)));
    json_array_append_new(vms, VM(VM_DOCKER, "docker", json_pack(
        "[{s:s, s:s, s:s}]", "mac", "52:54:00:00:00:b1", "address",
        "10.250.1.11", "bridge", "docker0")));
    json_array_append_new(vms, VM(VM_ETH0, "eth0", json_pack(
        "[{s:s, s:s, s:s}]", "mac", "52:54:00:00:00:b2", "address",
        "10.250.3.12", "bridge", "eth0")));
    json_array_append_new(vms, VM(VM_OUTSIDE, "outside", json_pack(
        "[{s:s, s:s, s:s}]", "mac", "52:54:00:00:00:b3", "address",
        "192.168.77.5", "bridge", "fogbr4001")));
    json_t *img = VM(VM_IMAGE, "image", json_array());
    json_object_set_new(img, "image_source", json_pack(
        "{s:s, s:s, s:s, s:s, s:i}", "id", IMAGE_ID, "url", evil, "sha256",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "format", "qcow2", "size", 65536));
    json_array_append_new(vms, img);
    json_array_append_new(vms, VM(VM_ROUTE, "route", json_pack(
        "[{s:s, s:s, s:s}]", "mac", "52:54:00:00:00:b5", "address",
        route_addr, "bridge", "fogbr4002")));
#undef VM

    json_t *ports = json_object_get(doc, "ports");
#define PORT(proto, hp, vm, addr)                                             \
    json_array_append_new(ports, json_pack(                                   \
        "{s:s, s:s, s:i, s:i, s:s}", "vm_id", vm, "proto", proto,             \
        "host_port", hp, "vm_port", 80, "vm_address", addr))
    PORT("tcp", 22, VM_GOOD, "10.250.1.10");
    PORT("tcp", 8443, VM_GOOD, "10.250.1.10");
    PORT("udp", 51820, VM_GOOD, "10.250.1.10");
    PORT("udp", wg_port, VM_GOOD, "10.250.1.10");     /* our WireGuard */
    PORT("tcp", F.port, VM_GOOD, "10.250.1.10");      /* a listener */
    PORT("tcp", good_port + 1, VM_GOOD, "192.168.77.10"); /* a LAN host */
    PORT("tcp", good_port + 2, VM_DOCKER, "10.250.1.11"); /* refused VM */
    PORT("tcp", good_port, VM_GOOD, "10.250.1.10");   /* honest */
#undef PORT
    return doc;
}

static bool port_listed(const uint16_t *p, size_t n, int port)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] == port)
            return true;
    return false;
}

static int setup(void **state)
{
    char *qemu_img = tu_which("qemu-img");
    if (!qemu_img) {
        printf("qemu-img is not installed\n");
        exit(77);
    }
    tmp = tu_tempdir("agentpolicy");
    data_dir = xasprintf("%s/data", tmp);
    image_dir = xasprintf("%s/images", tmp);
    root_dir = xasprintf("%s/root", tmp);
    agent_log = xasprintf("%s/agent.log", tmp);

    struct http_server_opts o = { .listen = "127.0.0.1:0", .routes = routes,
                                  .n_routes = ARRAY_SIZE(routes),
                                  .max_body = 1 << 20, .threads = 1 };
    assert_int_equal(http_server_start(&o, &F.http), 0);
    F.port = http_server_port(F.http);

    /* A fake host (8 CPUs, 16 GiB) whose sockets and routes are
     * this machine's, taken after the fake controller listens. */
    struct buf cpu = BUF_INIT;
    for (int i = 0; i < 8; i++)
        buf_printf(&cpu, "processor\t: %d\nmodel name\t: Fake CPU\n\n", i);
    write_file("proc/cpuinfo", buf_str(&cpu));
    buf_free(&cpu);
    write_file("proc/meminfo", "MemTotal:       16777216 kB\n");
    write_file("sys/devices/system/cpu/online", "0-7\n");
    _cleanup_free_ char *tcp = copy_proc_net("tcp");
    _cleanup_free_ char *tcp6 = copy_proc_net("tcp6");
    free(copy_proc_net("udp"));
    free(copy_proc_net("udp6"));
    _cleanup_free_ char *route = copy_proc_net("route");
    _cleanup_free_ char *trie = copy_proc_net("fib_trie");
    assert_non_null(tcp);
    assert_non_null(route);
    pick_host_route(route, trie);

    /* The node's range holds the fake controller's port, so that only its
     * being in use refuses it, and our WireGuard port. */
    uint16_t *lp = NULL;
    size_t nl = 0;
    assert_int_equal(policy_parse_proc_net(tcp, true, &lp, &nl), 0);
    if (tcp6)
        assert_int_equal(policy_parse_proc_net(tcp6, true, &lp, &nl), 0);
    assert_true(port_listed(lp, nl, (uint16_t)F.port));
    port_min = F.port > 1100 ? F.port - 100 : 1000;
    port_max = port_min + 200;
    wg_port = F.port + 1 <= port_max ? F.port + 1 : F.port - 1;
    for (good_port = port_min; good_port <= port_max - 2; good_port++)
        if (good_port != wg_port && good_port + 1 != wg_port &&
            good_port + 2 != wg_port &&
            !port_listed(lp, nl, good_port) &&
            !port_listed(lp, nl, good_port + 1) &&
            !port_listed(lp, nl, good_port + 2) &&
            good_port + 2 < F.port - 1)
            break;
    free(lp);
    assert_true(good_port + 2 < F.port - 1);

    F.doc = hostile_doc();

    /* A joined node, as `join` leaves it, for the fake controller: the
     * port range and WireGuard port it was joined with are kept there and
     * held to at run (no flags repeat them). */
    assert_int_equal(mkdir_p(data_dir, 0700), 0);
    _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d", F.port);
    struct node_state ns = { .controller = url, .node_id = NODE_ID,
                             .credential = "secret", .name = "ap-node",
                             .mesh_ip = "100.96.0.5",
                             .libvirt_uri = "test:///default",
                             .heartbeat_s = 1, .port_min = port_min,
                             .port_max = port_max, .wg_port = wg_port };
    assert_int_equal(node_state_save(data_dir, &ns), 0);

    assert_int_equal(mkdir_p(image_dir, 0755), 0);
    _cleanup_free_ char *base = xasprintf("%s/tiny.qcow2", image_dir);
    char *mk[] = { qemu_img, "create", "-q", "-f", "qcow2", base, "64M", NULL };
    int st;
    free(tu_run(mk, &st));
    assert_int_equal(st, 0);
    free(qemu_img);

    _cleanup_free_ char *bin = tu_bin("fog-nodeagent");
    char *argv[] = { bin, "run", "--data-dir", data_dir, "--image-dir",
                     image_dir, "--root", root_dir, "--heartbeat", "1",
                     "--network", "none", "--verbose", NULL };
    agent_pid = tu_spawn(argv, agent_log);
    assert_true(agent_pid > 0);
    return 0;
}

static int teardown(void **state)
{
    if (agent_pid > 0) {
        kill(agent_pid, SIGTERM);
        int64_t end = mono_ms() + 10000;
        while (waitpid(agent_pid, NULL, WNOHANG) == 0 && mono_ms() < end)
            usleep(20000);
        if (mono_ms() >= end) {
            kill(agent_pid, SIGKILL);
            waitpid(agent_pid, NULL, 0);
        }
    }
    http_server_stop(F.http, 1000);
    json_decref(F.doc);
    json_decref(F.refused);
    json_decref(F.vms);
    json_decref(seen_refused);
    json_decref(seen_vms);
    if (getenv("FOG_KEEP"))
        fprintf(stderr, "kept %s\n", tmp);
    else
        tu_rmrf(tmp);
    free(tmp);
    free(data_dir);
    free(image_dir);
    free(root_dir);
    free(agent_log);
    free(route_cidr);
    free(route_gw);
    free(route_addr);
    return 0;
}

static json_t *vm_status_in(const json_t *vms, const char *id)
{
    size_t i;
    json_t *v;
    json_array_foreach(vms, i, v)
        if (streq(json_str(v, "id"), id))
            return v;
    return NULL;
}

static json_t *vm_status(const char *id)
{
    return vm_status_in(seen_vms, id);
}

static const char *refusal(const char *object)
{
    size_t i;
    json_t *e;
    json_array_foreach(seen_refused, i, e)
        if (streq(json_str(e, "object"), object))
            return json_str(e, "reason");
    return NULL;
}

static void expect_refused(const char *object, const char *why)
{
    const char *r = refusal(object);
    if (!r || !strstr(r, why)) {
        _cleanup_free_ char *all = json_dumps(seen_refused, JSON_INDENT(1));
        fail_msg("%s: wanted a refusal saying '%s', got %s", object, why,
                 all ? all : "nothing");
    }
}

/* The agent's accepted.json once it holds VM vm_id (the agent writes it
 * at most once a second), or NULL after 10 s. New reference. */
static json_t *accepted_with(const char *path, const char *vm_id)
{
    for (int tries = 0; tries < 200; tries++) {
        json_t *acc = json_load_file(path, 0, NULL);
        size_t i;
        json_t *vm;
        json_array_foreach(json_object_get(acc, "vms"), i, vm)
            if (streq(json_str(vm, "id"), vm_id))
                return acc;
        json_decref(acc);
        usleep(50000);
    }
    return NULL;
}

static void show_log(void)
{
    _cleanup_free_ char *text = NULL;
    if (file_read(agent_log, 1 << 20, &text, NULL) == 0)
        fprintf(stderr, "--- agent log ---\n%s\n", text);
}

static void a_hostile_document_applies_nothing_hostile(void **state)
{
    /* The honest VM runs, and the status that says so carries the
     * refusals. */
    bool done = false;
    int foreign = 0;
    int64_t end = mono_ms() + 90000;
    while (!done && mono_ms() < end) {
        if (waitpid(agent_pid, NULL, WNOHANG) == agent_pid) {
            agent_pid = -1;
            break;
        }
        pthread_mutex_lock(&F.lock);
        json_t *g = vm_status_in(F.vms, VM_GOOD);
        done = F.refused && streq(json_str(g, "state"), "running");
        if (done) {
            seen_refused = json_deep_copy(F.refused);
            seen_vms = json_deep_copy(F.vms);
            foreign = F.foreign_fetches;
        }
        pthread_mutex_unlock(&F.lock);
        if (!done)
            usleep(50000);
    }
    if (!done)
        show_log();
    assert_true(done);

    char p[32];
    expect_refused("port tcp/22", "outside this node's range");
    expect_refused("port tcp/8443", "outside this node's range");
    /* Outside the range, or (when the range happens to hold it) the
     * mesh's WireGuard port. */
    expect_refused("port udp/51820", "host port 51820 is");
    snprintf(p, sizeof(p), "port udp/%d", wg_port);
    expect_refused(p, "WireGuard");
    snprintf(p, sizeof(p), "port tcp/%d", F.port);
    expect_refused(p, "in use on the host");
    snprintf(p, sizeof(p), "port tcp/%d", good_port + 1);
    expect_refused(p, "not an address of the VM");
    snprintf(p, sizeof(p), "port tcp/%d", good_port + 2);
    expect_refused(p, "not an accepted VM");
    expect_refused("network 4002", "overlaps the host's");
    expect_refused("network 4003", "bridge 'eth0'");
    expect_refused("vm " VM_DOCKER, "bridge 'docker0'");
    expect_refused("vm " VM_ETH0, "bridge 'eth0'");
    expect_refused("vm " VM_OUTSIDE, "not a host address of 10.250.1.0/24");
    expect_refused("vm " VM_IMAGE, "not this controller's image route");
    expect_refused("vm " VM_ROUTE, "refused network");
    snprintf(p, sizeof(p), "port tcp/%d", good_port);
    assert_null(refusal(p));
    assert_null(refusal("vm " VM_GOOD));
    assert_null(refusal("network 4001"));
    /* Each hostile VM is reported as refused, not as being created. */
    for (size_t i = 0; i < ARRAY_SIZE(hostile_vms); i++) {
        json_t *v = vm_status(hostile_vms[i]);
        assert_non_null(v);
        assert_string_equal(json_str(v, "state"), "error");
        assert_non_null(strstr(json_str(v, "reason"),
                               "refused by this node's policy"));
    }
    assert_int_equal(foreign, 0);

    /* No disk, seed or domain was made for a hostile VM; the honest one
     * has its disk. */
    for (size_t i = 0; i < ARRAY_SIZE(hostile_vms); i++) {
        _cleanup_free_ char *disk = disk_overlay_path(data_dir, hostile_vms[i]);
        assert_int_not_equal(access(disk, F_OK), 0);
    }
    _cleanup_free_ char *good_disk = disk_overlay_path(data_dir, VM_GOOD);
    assert_int_equal(access(good_disk, F_OK), 0);

    /* The network the agent set out to build: only the honest port is
     * DNATed, only the honest network bridged, only the honest VM's tap
     * guarded. */
    _cleanup_free_ char *path = xasprintf("%s/accepted.json", data_dir);
    json_auto_t *acc = accepted_with(path, VM_GOOD);
    assert_non_null(acc);
    struct nf_state s;
    char *err = NULL;
    assert_int_equal(netfabric_state_from_json(acc, NULL, &s, &err), 0);
    assert_int_equal(s.n_networks, 1);
    assert_string_equal(s.networks[0].bridge, "fogbr4001");
    assert_int_equal(s.n_vmports, 1);
    assert_string_equal(s.vmports[0].bridge, "fogbr4001");
    assert_int_equal(s.n_published, 1);
    assert_int_equal(s.published[0].host_port, good_port);
    struct buf b = BUF_INIT;
    assert_int_equal(nftplan_build(&s, &b), 0);
    _cleanup_free_ char *want = xasprintf("tcp dport %d dnat to 10.250.1.10:80",
                                          good_port);
    assert_non_null(strstr(buf_str(&b), want));
    assert_null(strstr(buf_str(&b), "dport 22 "));
    assert_null(strstr(buf_str(&b), "dport 8443 "));
    assert_null(strstr(buf_str(&b), "dport 51820 "));
    assert_null(strstr(buf_str(&b), "docker0"));
    assert_null(strstr(buf_str(&b), "192.168.77."));
    buf_free(&b);
    nf_state_clear(&s);

    /* The agent's log says what it refused. */
    _cleanup_free_ char *log = NULL;
    assert_int_equal(file_read(agent_log, 16 << 20, &log, NULL), 0);
    assert_non_null(strstr(log, "policy: refused port tcp/22:"));
    assert_non_null(strstr(log, "policy: refused vm " VM_DOCKER ":"));
}

/* The real controller keeps what a node says it refused as events, with
 * the node as actor, however much the node sends. */
static void the_controller_records_refusals_as_bounded_events(void **state)
{
    static const char *const args[] = { "--no-inspect", NULL };
    struct tu_ctl ctl;
    tu_ctl_start(&ctl, args);
    long st;
    json_auto_t *tok = tu_api(&ctl, ctl.admin_key, "POST", "/v1/join-tokens",
                              "{}", &st);
    assert_int_equal(st, 201);
    _cleanup_free_ char *reg = xasprintf(
        "{\"token\":\"%s\",\"name\":\"ap-node\",\"inventory\":{\"vcpus\":1,"
        "\"memory_mib\":64,\"disk_gib\":1,\"kvm\":false}}",
        json_str(tok, "token"));
    json_auto_t *node = tu_api(&ctl, NULL, "POST", "/v1/agent/register", reg,
                               &st);
    assert_int_equal(st, 201);
    const char *node_id = json_str(node, "node_id");

    /* More refusals than are kept, one with a long reason and a line
     * break meant to forge a log line. */
    json_t *refused = json_array();
    json_array_append_new(refused, json_pack(
        "{s:s, s:s}", "object", "port tcp/22",
        "reason", "host port 22 is outside this node's range\nforged"));
    struct buf longr = BUF_INIT;
    buf_puts(&longr, "0"); /* so that a two-byte character straddles 300 */
    for (int i = 0; i < 500; i++)
        buf_puts(&longr, "\xc3\xa9");
    json_array_append_new(refused, json_pack("{s:s, s:s}", "object",
                                             "vm long", "reason",
                                             buf_str(&longr)));
    buf_free(&longr);
    for (int i = 0; i < 100; i++) {
        _cleanup_free_ char *obj = xasprintf("port tcp/%d", 1000 + i);
        json_array_append_new(refused, json_pack("{s:s, s:s}", "object", obj,
                                                 "reason", "outside"));
    }
    json_auto_t *body = json_pack("{s:[], s:o}", "vms", "refused", refused);
    _cleanup_free_ char *text = json_dumps(body, 0);
    json_auto_t *rep = tu_api(&ctl, json_str(node, "credential"), "POST",
                              "/v1/agent/status", text, &st);
    assert_int_equal(st, 200);

    json_auto_t *ev = tu_api(&ctl, ctl.admin_key, "GET",
                             "/v1/events?limit=500", NULL, &st);
    assert_int_equal(st, 200);
    size_t i, n = 0;
    json_t *e;
    bool port22 = false, truncated = false;
    json_array_foreach(json_object_get(ev, "items"), i, e) {
        if (!streq(json_str(e, "action"), "agent.refused"))
            continue;
        n++;
        assert_string_equal(json_str(e, "actor"), node_id);
        const char *d = json_str(e, "detail");
        assert_true(strlen(d) <= AGENT_REFUSED_REASON_MAX);
        assert_null(strchr(d, '\n'));
        if (streq(json_str(e, "target"), "port tcp/22"))
            port22 = strstr(d, "outside this node's range?forged") != NULL;
        if (streq(json_str(e, "target"), "vm long"))
            truncated = strlen(d) == AGENT_REFUSED_REASON_MAX - 1;
    }
    assert_int_equal(n, AGENT_REFUSED_MAX);
    assert_true(port22);
    assert_true(truncated);
    tu_ctl_destroy(&ctl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_hostile_document_applies_nothing_hostile),
        cmocka_unit_test(the_controller_records_refusals_as_bounded_events),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
