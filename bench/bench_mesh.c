/* Mesh benchmark in network namespaces this program makes: how long a newly
 * registered node takes until every peer has a WireGuard handshake with it
 * (N namespace hosts, each with wireguard-go, configured by netfabric_apply
 * from desired documents), and iperf3 throughput over the underlay veth,
 * over WireGuard and over VXLAN inside WireGuard. Needs root (77 otherwise);
 * removes every namespace, link and process it made, also on failure. */
#include "common/buf.h"
#include "netfabric/apply.h"
#include "netfabric/link.h"
#include "netfabric/wg_uapi.h"
#include "tests/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define MAX_HOSTS 200
#define MAX_NS (MAX_HOSTS + 8)
#define MAX_RUNS 15
#define IPERF_PORT 5201
#define CONVERGE_TIMEOUT_MS 60000

static const char *ip_bin;
static char *iperf_bin;
static char P[24];       /* namespace prefix, unique per run */
static unsigned wg_tag;  /* part of interface names, unique per run */
static pid_t main_pid;
static unsigned keepalive = 25;

struct host {
    char ns[32];
    char wg[IFNAMSIZ];
    uint8_t priv[WGKEY_LEN], pub[WGKEY_LEN];
    char mesh[16], under[16];
};
static struct host hosts[MAX_HOSTS + 1]; /* 1-based */
static char ul_ns[32];

/* Everything cleanup must undo: namespaces and interface names made. */
static char ns_made[MAX_NS][32];
static size_t n_ns_made;
static char wg_made[MAX_HOSTS + 1][IFNAMSIZ];
static size_t n_wg_made;

static void cleanup(void);

static _noreturn_ _printf_(1, 2) void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_mesh: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1); /* atexit runs cleanup */
}

static double clock_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, size_t n)
{
    double s[MAX_RUNS];
    memcpy(s, v, n * sizeof(double));
    qsort(s, n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* ---- processes: `ip` for setup, children inside namespaces ---- */

static void ns_add(const char *ns)
{
    if (n_ns_made == MAX_NS)
        die("too many namespaces");
    int r = tu_ns_add(ns);
    _cleanup_free_ char *path = xasprintf("/run/netns/%s", ns);
    if (access(path, F_OK) == 0)
        snprintf(ns_made[n_ns_made++], sizeof(ns_made[0]), "%s", ns);
    if (r != 0)
        die("cannot create namespace %s", ns);
}

/* Pids of the processes living in the network namespace with inode ino. */
static size_t ns_pids(ino_t ino, pid_t *out, size_t max)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        int64_t pid;
        if (parse_int64(e->d_name, 1, INT32_MAX, &pid) < 0 || pid == main_pid)
            continue;
        char path[64], link[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
        ssize_t l = readlink(path, link, sizeof(link) - 1);
        if (l <= 0)
            continue;
        link[l] = '\0';
        unsigned long long got;
        if (sscanf(link, "net:[%llu]", &got) == 1 && got == (unsigned long long)ino)
            out[n++] = (pid_t)pid;
    }
    closedir(d);
    return n;
}

/* Stop every process in namespace ns (wireguard-go, iperf3): SIGTERM so
 * wireguard-go removes its socket, SIGKILL for what is left after 2 s. */
static void ns_kill_all(const char *ns)
{
    _cleanup_free_ char *path = xasprintf("/run/netns/%s", ns);
    struct stat st;
    if (stat(path, &st) < 0)
        return;
    pid_t pids[256];
    size_t n = ns_pids(st.st_ino, pids, ARRAY_SIZE(pids));
    for (size_t i = 0; i < n; i++)
        kill(pids[i], SIGTERM);
    for (int waited = 0; n > 0 && waited < 2000; waited += 20) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        sleep_ms(20);
        n = ns_pids(st.st_ino, pids, ARRAY_SIZE(pids));
    }
    for (size_t i = 0; i < n; i++)
        kill(pids[i], SIGKILL);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

/* Undo everything made so far, newest first; runs at the end of each
 * phase, at exit and on fatal signals, only in the main process (children
 * inherit the handlers). Emptying the lists makes a second call a no-op. */
static void cleanup(void)
{
    static volatile sig_atomic_t busy;
    if (busy || getpid() != main_pid)
        return;
    busy = 1;
    for (size_t i = n_ns_made; i-- > 0;)
        ns_kill_all(ns_made[i]);
    for (size_t i = n_ns_made; i-- > 0;)
        tu_ip("netns del %s", ns_made[i]);
    n_ns_made = 0;
    struct wg_opts o = { 0 };
    for (size_t i = 0; i < n_wg_made; i++) {
        _cleanup_free_ char *sock = wg_uapi_socket_path(&o, wg_made[i]);
        unlink(sock); /* left behind only by a killed wireguard-go */
    }
    n_wg_made = 0;
    busy = 0;
}

/* Not async-signal-safe, but the alternative is leaving namespaces and
 * wireguard-go daemons behind after ^C. */
static void on_signal(int sig)
{
    cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ---- namespace hosts and their desired documents ---- */

static void host_init(int h)
{
    struct host *x = &hosts[h];
    uint8_t i = (uint8_t)h; /* h <= MAX_HOSTS */
    uint16_t tag = (uint16_t)(wg_tag % 10000);
    snprintf(x->ns, sizeof(x->ns), "%.20s-h%u", P, i);
    snprintf(x->wg, sizeof(x->wg), "fogwgb%ux%u", tag, i);
    snprintf(x->mesh, sizeof(x->mesh), "100.96.0.%u", i);
    snprintf(x->under, sizeof(x->under), "192.168.78.%u", i);
    wgkey_generate_private(x->priv);
    wgkey_public(x->priv, x->pub);
}

/* A namespace on the shared underlay bridge, eth0 = 192.168.78.h/24. */
static void host_add(int h)
{
    struct host *x = &hosts[h];
    host_init(h);
    ns_add(x->ns);
    snprintf(wg_made[n_wg_made++], sizeof(wg_made[0]), "%s", x->wg);
    char veth[IFNAMSIZ], cidr[24];
    snprintf(veth, sizeof(veth), "ulh%d", h);
    snprintf(cidr, sizeof(cidr), "%s/24", x->under);
    if (tu_ns_wire(ul_ns, "ul0", veth, x->ns, cidr) != 0)
        die("cannot wire host %d to the underlay", h);
}

static void underlay_add(void)
{
    snprintf(ul_ns, sizeof(ul_ns), "%s-ul", P);
    ns_add(ul_ns);
    if (tu_ip("-n %s link add ul0 type bridge", ul_ns) != 0 ||
        tu_ip("-n %s link set ul0 up", ul_ns) != 0)
        die("cannot create the underlay bridge");
}

/* The desired document of host h as the controller would send it: peers
 * are hosts 1..upto except h; extra = more JSON members or "". */
static char *host_doc(int h, int upto, const char *extra)
{
    struct buf b = BUF_INIT;
    buf_printf(&b, "{\"mesh\": {\"address\": \"%s\", \"prefix\": 12, "
                   "\"listen_port\": 51820}, \"peers\": [", hosts[h].mesh);
    bool first = true;
    for (int j = 1; j <= upto; j++) {
        if (j == h)
            continue;
        char b64[WGKEY_B64_LEN + 1];
        wgkey_to_base64(hosts[j].pub, b64);
        buf_printf(&b, "%s{\"node_id\": \"n%d\", \"public_key\": \"%s\", "
                       "\"endpoint\": \"%s:51820\", \"allowed_ips\": "
                       "[\"%s/32\"], \"keepalive\": %u}",
                   first ? "" : ", ", j, b64, hosts[j].under, hosts[j].mesh,
                   keepalive);
        first = false;
    }
    buf_printf(&b, "]%s%s}", *extra ? ", " : "", extra);
    return buf_steal(&b);
}

struct apply_arg {
    int host;
    char *doc;
};

static int apply_fn(void *arg)
{
    const struct apply_arg *a = arg;
    json_t *doc = json_loads(a->doc, 0, NULL);
    if (!doc)
        return 2;
    struct nf_state s;
    _cleanup_free_ char *err = NULL;
    int r = netfabric_state_from_json(doc, hosts[a->host].wg, &s, &err);
    json_decref(doc);
    if (r < 0) {
        fprintf(stderr, "host %d: document refused: %s\n", a->host, err);
        return 3;
    }
    s.has_private_key = true;
    memcpy(s.private_key, hosts[a->host].priv, WGKEY_LEN);
    /* wireguard-go prints a banner on stderr each time it starts. */
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (saved >= 0 && null >= 0)
        dup2(null, STDERR_FILENO);
    r = netfabric_apply(&s);
    if (saved >= 0) {
        dup2(saved, STDERR_FILENO);
        close(saved);
    }
    if (null >= 0)
        close(null);
    nf_state_clear(&s);
    if (r < 0)
        fprintf(stderr, "host %d: netfabric_apply: %s\n", a->host, strerror(-r));
    return r < 0 ? 1 : 0;
}

static pid_t apply_start(int h, int upto, const char *extra, struct apply_arg *a)
{
    a->host = h;
    a->doc = host_doc(h, upto, extra);
    pid_t pid = tu_ns_fork(hosts[h].ns, apply_fn, a);
    if (pid < 0)
        die("fork: %s", strerror((int)-pid));
    free(a->doc); /* the child has its own copy */
    a->doc = NULL;
    return pid;
}

static void apply_host(int h, int upto, const char *extra)
{
    struct apply_arg a;
    if (tu_reap(apply_start(h, upto, extra, &a)) != 0)
        die("applying the desired state of host %d failed", h);
}

/* Seconds of host h's last handshake with host j as h's wireguard-go
 * reports it over its socket (reachable from any namespace); 0 = none,
 * -1 = the query failed. */
static int64_t handshake_of(int h, int j)
{
    struct wg_opts o = { 0 };
    struct wg_device d = { 0 };
    if (wg_backend_uapi.get(&o, hosts[h].wg, &d) < 0)
        return -1;
    const struct wg_peer *p = wg_device_find_peer(&d, hosts[j].pub);
    int64_t t = p ? p->last_handshake_sec : 0;
    wg_device_clear(&d);
    return t;
}

/* Resident memory of the processes in host namespaces 1..n, in KiB. */
static long hosts_rss_kib(int n, int *ret_procs)
{
    long total = 0;
    int procs = 0;
    for (int h = 1; h <= n; h++) {
        _cleanup_free_ char *path = xasprintf("/run/netns/%s", hosts[h].ns);
        struct stat st;
        if (stat(path, &st) < 0)
            continue;
        pid_t pids[16];
        size_t k = ns_pids(st.st_ino, pids, ARRAY_SIZE(pids));
        for (size_t i = 0; i < k; i++) {
            char sp[64], line[256];
            snprintf(sp, sizeof(sp), "/proc/%d/status", (int)pids[i]);
            FILE *f = fopen(sp, "re");
            while (f && fgets(line, sizeof(line), f))
                if (startswith(line, "VmRSS:"))
                    total += strtol(line + 6, NULL, 10);
            if (f)
                fclose(f);
            procs++;
        }
    }
    *ret_procs = procs;
    return total;
}

/* ================================================================== */
/* Mesh convergence */

struct mesh_result {
    int n;
    double base_s;         /* N-1 hosts up and fully handshaken */
    double new_ms[MAX_RUNS];     /* new host's own state applied */
    double applied_ms[MAX_RUNS]; /* every peer's update applied */
    double conv_ms[MAX_RUNS];    /* every peer has a handshake with it */
    int runs;
    long rss_kib;
    int procs;
};

/* How many of hosts 1..m (other than h) host h has a handshake with; one
 * query to h's wireguard-go. -1 when the query fails. */
static int handshaken_peers(int h, int m)
{
    struct wg_opts o = { 0 };
    struct wg_device d = { 0 };
    if (wg_backend_uapi.get(&o, hosts[h].wg, &d) < 0)
        return -1;
    int n = 0;
    for (int j = 1; j <= m; j++) {
        const struct wg_peer *p = j == h ? NULL
                                         : wg_device_find_peer(&d, hosts[j].pub);
        n += p && p->last_handshake_sec > 0;
    }
    wg_device_clear(&d);
    return n;
}

/* Wait until every pair among hosts 1..m has a handshake. */
static void wait_full_mesh(int m, int timeout_ms)
{
    double t0 = clock_ms();
    for (int h = 1; h <= m; h++) {
        int got;
        while ((got = handshaken_peers(h, m)) < m - 1) {
            if (clock_ms() - t0 > timeout_ms)
                die("host %d has handshakes with %d of %d peers after %d ms",
                    h, got < 0 ? 0 : got, m - 1, timeout_ms);
            sleep_ms(10);
        }
    }
}

/* Register host n with hosts 1..n-1 (up and meshed) and time it. */
static void mesh_register(int n, struct mesh_result *res, int run)
{
    struct host *x = &hosts[n];
    wgkey_generate_private(x->priv); /* every run a new node */
    wgkey_public(x->priv, x->pub);

    double t0 = clock_ms();
    apply_host(n, n, "");
    res->new_ms[run] = clock_ms() - t0;

    /* Each peer's agent applies its new document on its own. */
    pid_t *kids = xcalloc((size_t)n, sizeof(pid_t));
    struct apply_arg *args = xcalloc((size_t)n, sizeof(*args));
    bool *seen = xcalloc((size_t)n, sizeof(bool));
    for (int j = 1; j < n; j++)
        kids[j] = apply_start(j, n, "", &args[j]);
    int running = n - 1, missing = n - 1;
    res->applied_ms[run] = -1;
    while (running > 0 || missing > 0) {
        for (int j = 1; j < n; j++) {
            if (kids[j] <= 0)
                continue;
            int st;
            pid_t p = waitpid(kids[j], &st, WNOHANG);
            if (p == kids[j]) {
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                    die("applying the update on host %d failed", j);
                kids[j] = 0;
                if (--running == 0)
                    res->applied_ms[run] = clock_ms() - t0;
            }
        }
        for (int j = 1; j < n; j++)
            if (!seen[j] && handshake_of(j, n) > 0) {
                seen[j] = true;
                missing--;
            }
        if (missing == 0 && res->conv_ms[run] == 0)
            res->conv_ms[run] = clock_ms() - t0;
        if (clock_ms() - t0 > CONVERGE_TIMEOUT_MS)
            die("%d of %d peers have no handshake with the new host after %d ms",
                missing, n - 1, CONVERGE_TIMEOUT_MS);
        if (running > 0 || missing > 0)
            sleep_ms(2);
    }
    free(kids);
    free(args);
    free(seen);

    /* The mesh carries traffic to the new node, not only handshakes. */
    if (!tu_ping(hosts[1].ns, NULL, x->mesh, 5000))
        die("host 1 cannot reach the new host %d over the mesh", n);
}

/* The node leaves again: peers drop it, its interface goes. */
static void mesh_unregister(int n)
{
    pid_t *kids = xcalloc((size_t)n, sizeof(pid_t));
    struct apply_arg *args = xcalloc((size_t)n, sizeof(*args));
    for (int j = 1; j < n; j++)
        kids[j] = apply_start(j, n - 1, "", &args[j]);
    for (int j = 1; j < n; j++)
        if (tu_reap(kids[j]) != 0)
            die("removing host %d from host %d failed", n, j);
    free(kids);
    free(args);
    if (tu_wg_remove(hosts[n].ns, hosts[n].wg) != 0)
        die("cannot remove the mesh interface of host %d", n);
}

static void mesh_bench(int n, int runs, struct mesh_result *res)
{
    memset(res, 0, sizeof(*res));
    res->n = n;
    res->runs = runs;
    underlay_add();
    for (int h = 1; h <= n; h++)
        host_add(h);
    fprintf(stderr, "mesh: %d hosts created, bringing up %d\n", n, n - 1);
    double t0 = clock_ms();
    for (int h = 1; h < n; h++)
        apply_host(h, n - 1, "");
    wait_full_mesh(n - 1, CONVERGE_TIMEOUT_MS);
    res->base_s = (clock_ms() - t0) / 1e3;
    for (int r = 0; r < runs; r++) {
        mesh_register(n, res, r);
        fprintf(stderr, "mesh N=%d run %d: new host %.0f ms, peers applied "
                        "%.0f ms, all handshaken %.0f ms\n",
                n, r + 1, res->new_ms[r], res->applied_ms[r], res->conv_ms[r]);
        if (r == runs - 1)
            res->rss_kib = hosts_rss_kib(n, &res->procs);
        mesh_unregister(n);
    }
    cleanup();
}

/* ================================================================== */
/* Throughput with iperf3 */

static const char *VM1 = "0123abcd-0000-4000-8000-000000000001";
static const char *VM2 = "4567abcd-0000-4000-8000-000000000002";

/* One tenant network (VXLAN 1000) on hosts 1 and 2, with a VM on each. */
static char *net_extra(int host)
{
    int other = host == 1 ? 2 : 1;
    struct buf b = BUF_INIT;
    buf_printf(&b,
               "\"networks\": [{\"vxlan_id\": 1000, \"cidr\": \"10.1.0.0/24\","
               " \"gateway\": \"10.1.0.1\", \"mtu\": 1370, \"bridge\": "
               "\"fogbr1000\", \"vteps\": [\"%s\"], \"macs\": [{\"mac\": "
               "\"52:54:00:00:01:0%d\", \"vtep\": \"%s\"}]}], \"ports\": [], "
               "\"vms\": [{\"id\": \"%s\", \"nics\": [{\"mac\": "
               "\"52:54:00:00:01:0%d\", \"address\": \"10.1.0.1%d\", "
               "\"bridge\": \"fogbr1000\"}]}]",
               hosts[other].mesh, other, hosts[other].mesh,
               host == 1 ? VM1 : VM2, host, host);
    return buf_steal(&b);
}

/* A "VM": a namespace on host's bridge through a veth named like its tap. */
static void vm_add(const char *ns, int host, const char *vm_id,
                   const char *mac, const char *addr)
{
    char tap[IFNAMSIZ];
    if (netfabric_tap_name(vm_id, 0, tap) < 0)
        die("bad VM id %s", vm_id);
    ns_add(ns);
    if (tu_ip("-n %s link add %s type veth peer name eth0 netns %s",
              hosts[host].ns, tap, ns) != 0 ||
        tu_ip("-n %s link set %s master fogbr1000 mtu 1370 up",
              hosts[host].ns, tap) != 0 ||
        tu_ip("-n %s link set eth0 address %s mtu 1370 up", ns, mac) != 0 ||
        tu_ip("-n %s addr add %s/24 dev eth0", ns, addr) != 0)
        die("cannot attach VM namespace %s", ns);
}

static int listening_fn(void *arg)
{
    int port = *(const int *)arg;
    FILE *f = fopen("/proc/net/tcp", "re");
    if (!f)
        return 2;
    char line[512];
    int found = 1;
    while (fgets(line, sizeof(line), f)) {
        unsigned lport, st;
        if (sscanf(line, " %*d: %*x:%x %*x:%*x %x", &lport, &st) == 2 &&
            (int)lport == port && st == 0x0a)
            found = 0;
    }
    fclose(f);
    return found;
}

static pid_t iperf_server(const char *ns, const char *addr, const char *log)
{
    char port[8];
    snprintf(port, sizeof(port), "%d", IPERF_PORT);
    char *const argv[] = { (char *)ip_bin, "netns", "exec", (char *)ns,
                           (char *)iperf_bin, "-s", "-B", (char *)addr, "-p",
                           port, NULL };
    pid_t pid = tu_spawn(argv, log);
    if (pid < 0)
        die("cannot start iperf3: %s", strerror((int)-pid));
    int p = IPERF_PORT;
    for (int i = 0; i < 250; i++) {
        if (tu_in_ns(ns, listening_fn, &p) == 0)
            return pid;
        sleep_ms(20);
    }
    tu_kill(pid, SIGKILL);
    die("iperf3 server in %s did not listen", ns);
}

/* One iperf3 TCP run from ns to addr; received bits per second. */
static double iperf_run(const char *ns, const char *addr, int seconds)
{
    char port[8], secs[8];
    snprintf(port, sizeof(port), "%d", IPERF_PORT);
    snprintf(secs, sizeof(secs), "%d", seconds);
    char *const argv[] = { (char *)ip_bin, "netns", "exec", (char *)ns,
                           (char *)iperf_bin, "-c", (char *)addr, "-p", port,
                           "-t", secs, "-J", NULL };
    int st;
    _cleanup_free_ char *out = tu_run(argv, &st);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    json_t *bps = j ? json_object_get(json_object_get(json_object_get(j, "end"),
                                                      "sum_received"),
                                      "bits_per_second")
                    : NULL;
    if (st != 0 || !json_is_number(bps)) {
        json_t *e = j ? json_object_get(j, "error") : NULL;
        die("iperf3 from %s to %s failed (exit %d): %s", ns, addr, st,
            json_is_string(e) ? json_string_value(e) : "no result");
    }
    double v = json_number_value(bps);
    json_decref(j);
    return v;
}

struct tput_result {
    const char *path;
    double mbps[MAX_RUNS];
    double median;
};

static void tput_path(struct tput_result *t, const char *path,
                      const char *server_ns, const char *client_ns,
                      const char *addr, int runs, int seconds, const char *log)
{
    t->path = path;
    pid_t srv = iperf_server(server_ns, addr, log);
    for (int r = 0; r < runs; r++) {
        t->mbps[r] = iperf_run(client_ns, addr, seconds) / 1e6;
        fprintf(stderr, "iperf3 %s run %d: %.0f Mbit/s\n", path, r + 1,
                t->mbps[r]);
    }
    tu_kill(srv, SIGTERM);
    t->median = median(t->mbps, (size_t)runs);
}

static void tput_bench(int runs, int seconds, struct tput_result res[3])
{
    underlay_add();
    host_add(1);
    host_add(2);
    _cleanup_free_ char *e1 = net_extra(1), *e2 = net_extra(2);
    apply_host(1, 2, e1);
    apply_host(2, 2, e2);
    char vm1[40], vm2[40];
    snprintf(vm1, sizeof(vm1), "%s-vm1", P);
    snprintf(vm2, sizeof(vm2), "%s-vm2", P);
    vm_add(vm1, 1, VM1, "52:54:00:00:01:01", "10.1.0.11");
    vm_add(vm2, 2, VM2, "52:54:00:00:01:02", "10.1.0.12");
    if (!tu_ping(hosts[1].ns, NULL, hosts[2].mesh, 8000))
        die("the mesh between the two hosts does not carry traffic");
    if (!tu_ping(vm1, NULL, "10.1.0.12", 8000))
        die("the tenant network between the two VMs does not carry traffic");

    _cleanup_free_ char *dir = tu_tempdir("bench-mesh");
    _cleanup_free_ char *log = xasprintf("%s/iperf3.log", dir);
    tput_path(&res[0], "plain veth (underlay, via bridge)", hosts[2].ns,
              hosts[1].ns, hosts[2].under, runs, seconds, log);
    tput_path(&res[1], "WireGuard (wireguard-go)", hosts[2].ns, hosts[1].ns,
              hosts[2].mesh, runs, seconds, log);
    tput_path(&res[2], "VXLAN in WireGuard, VM to VM", vm2, vm1, "10.1.0.12",
              runs, seconds, log);
    tu_rmrf(dir);
    cleanup();
}

/* ================================================================== */

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_mesh [-n SIZES] [-r RUNS] [-t SECONDS] [-k KEEPALIVE]"
            " [-M|-T]\n"
            "  -n  comma-separated host counts for convergence (default 10,30)\n"
            "  -r  runs per figure, median reported (default 3, max %d)\n"
            "  -t  seconds per iperf3 run (default 5)\n"
            "  -k  persistent keepalive pushed to peers, seconds (default 25);\n"
            "      wireguard-go sends one at once when a peer is added, which\n"
            "      starts the handshake\n"
            "  -M  mesh convergence only; -T throughput only\n",
            MAX_RUNS);
}

int main(int argc, char **argv)
{
    int sizes[8] = { 10, 30 }, n_sizes = 2, runs = 3, seconds = 5;
    bool do_mesh = true, do_tput = true;
    int c;
    while ((c = getopt(argc, argv, "n:r:t:k:MTh")) != -1) {
        int64_t v;
        switch (c) {
        case 'n': {
            n_sizes = 0;
            char *save = NULL;
            for (char *t = strtok_r(optarg, ",", &save); t;
                 t = strtok_r(NULL, ",", &save)) {
                if (n_sizes == (int)ARRAY_SIZE(sizes) ||
                    parse_int64(t, 2, MAX_HOSTS, &v) < 0) {
                    usage();
                    return 2;
                }
                sizes[n_sizes++] = (int)v;
            }
            break;
        }
        case 'r':
            if (parse_int64(optarg, 1, MAX_RUNS, &v) < 0) {
                usage();
                return 2;
            }
            runs = (int)v;
            break;
        case 't':
            if (parse_int64(optarg, 1, 3600, &v) < 0) {
                usage();
                return 2;
            }
            seconds = (int)v;
            break;
        case 'k':
            if (parse_int64(optarg, 1, 65535, &v) < 0) {
                usage();
                return 2;
            }
            keepalive = (unsigned)v;
            break;
        case 'M':
            do_tput = false;
            break;
        case 'T':
            do_mesh = false;
            break;
        default:
            usage();
            return 2;
        }
    }

    if (geteuid() != 0) {
        printf("bench_mesh needs root for network namespaces: skipped\n");
        return 77;
    }
    ip_bin = tu_ip_bin();
    iperf_bin = tu_which("iperf3");
    if (!ip_bin || !tu_have_wireguard_go()) {
        printf("bench_mesh needs iproute2 and wireguard-go: skipped\n");
        return 77;
    }
    if (do_tput && !iperf_bin) {
        printf("iperf3 not installed: throughput skipped\n");
        do_tput = false;
    }
    main_pid = getpid();
    snprintf(P, sizeof(P), "nfb%d", (int)main_pid);
    wg_tag = (unsigned)main_pid % 10000;
    setenv("FOG_WG_BACKEND", "uapi", 1);
    atexit(cleanup);
    static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGABRT, SIGQUIT };
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
        signal(sigs[i], on_signal);
    signal(SIGPIPE, SIG_IGN);

    struct tput_result tput[3];
    if (do_tput)
        tput_bench(runs, seconds, tput);
    struct mesh_result mesh[ARRAY_SIZE(sizes)];
    if (do_mesh)
        for (int i = 0; i < n_sizes; i++)
            mesh_bench(sizes[i], runs, &mesh[i]);

    if (do_mesh) {
        printf("\nMesh convergence: registering host N with N-1 meshed "
               "wireguard-go hosts (median of %d runs, keepalive %u s)\n\n",
               runs, keepalive);
        printf("| hosts N | N-1 mesh up (s) | new host applied (ms) | "
               "all peers applied (ms) | every peer handshaken (ms) | "
               "wireguard-go RSS/host (MiB) |\n");
        printf("| ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for (int i = 0; i < n_sizes; i++) {
            const struct mesh_result *m = &mesh[i];
            printf("| %d | %.1f | %.0f | %.0f | %.0f | %.1f |\n", m->n,
                   m->base_s, median(m->new_ms, (size_t)runs),
                   median(m->applied_ms, (size_t)runs),
                   median(m->conv_ms, (size_t)runs),
                   m->procs ? (double)m->rss_kib / 1024.0 / m->procs : 0.0);
        }
    }
    if (do_tput) {
        printf("\nThroughput, iperf3 TCP between two namespace hosts "
               "(median of %d runs of %d s)\n\n", runs, seconds);
        printf("| path | Mbit/s | ratio to plain veth |\n");
        printf("| --- | ---: | ---: |\n");
        for (int i = 0; i < 3; i++)
            printf("| %s | %.0f | %.3f |\n", tput[i].path, tput[i].median,
                   tput[i].median / tput[0].median);
    }
    return 0;
}
