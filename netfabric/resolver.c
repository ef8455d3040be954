/* Per-network resolvers: dnsmasq processes the node runs on its tenant
 * gateways. Each lives in its own folder (hosts file, arguments, pid
 * file) so the agent finds, reloads and stops it after its own restart;
 * dnsmasq daemonises, so VMs keep resolving while the agent restarts. */
#include "netfabric/resolver.h"

#include "api/agentproto.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/netcheck.h"

#include <dirent.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


#define STOP_WAIT_MS 5000

size_t resolver_hosts_render(const struct nf_network *n, struct buf *out)
{
    size_t skipped = 0;
    bool label = net_dns_label_ok(n->dns_label);
    for (size_t i = 0; i < n->n_records; i++) {
        const struct nf_record *r = &n->records[i];
        if (!net_dns_label_ok(r->name) ||
            !ipam_cidr_contains(&n->cidr, r->addr) || r->addr == n->gateway) {
            skipped++;
            continue;
        }
        char a[INET6_ADDRSTRLEN];
        ipam_addr_format(r->addr, a);
        /* AAAA: a line for the IPv6 address (inside the network's /64,
         * as parsed), never the gateway's. */
        bool v6 = r->has_addr6 && n->has_v6 &&
                  memcmp(&r->addr6, &n->gateway6, sizeof(r->addr6)) != 0;
        for (int k = 0; k < (v6 ? 2 : 1); k++) {
            if (k == 1)
                inet_ntop(AF_INET6, &r->addr6, a, sizeof(a));
            buf_printf(out, "%s %s", a, r->name);
            if (label)
                buf_printf(out, " %s.%s." AGENT_DNS_ZONE, r->name,
                           n->dns_label);
            buf_puts(out, "\n");
        }
    }
    return skipped;
}

/* One argument: prefix then value, NUL-terminated. */
static size_t arg(struct buf *b, const char *prefix, const char *v,
                  const char *suffix)
{
    buf_printf(b, "%s%s%s", prefix, v, suffix);
    buf_append(b, "", 1);
    return 1;
}

size_t resolver_argv_render(const struct nf_state *s, const struct nf_network *n,
                            const char *dir, struct buf *out)
{
    char gw[IPAM_ADDR_STRLEN];
    ipam_addr_format(n->gateway, gw);
    size_t c = 0;
    c += arg(out, "", s->dnsmasq ? s->dnsmasq : RESOLVER_DNSMASQ, "");
    c += arg(out, "", "--conf-file=/dev/null", "");
    c += arg(out, "", "--no-hosts", "");
    c += arg(out, "--addn-hosts=", dir, "/hosts");
    c += arg(out, "--pid-file=", dir, "/pid");
    c += arg(out, "", "--bind-interfaces", "");
    c += arg(out, "--listen-address=", gw, "");
    if (n->has_v6) {
        char gw6[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &n->gateway6, gw6, sizeof(gw6));
        c += arg(out, "--listen-address=", gw6, "");
    }
    c += arg(out, "", "--except-interface=lo", "");
    c += arg(out, "", "--local=/" AGENT_DNS_ZONE "/", "");
    c += arg(out, "", "--domain-needed", "");
    c += arg(out, "", "--bogus-priv", "");
    if (s->resolv_conf && !*s->resolv_conf)
        c += arg(out, "", "--no-resolv", "");
    else
        c += arg(out, "--resolv-file=",
                 s->resolv_conf ? s->resolv_conf : "/etc/resolv.conf", "");
    if (s->dns_user)
        c += arg(out, "--user=", s->dns_user, "");
    return c;
}

static char *net_dir(const struct nf_state *s, const char *bridge)
{
    return xasprintf("%s/%s", s->dns_dir, bridge);
}

/* The pid in dir/pid when that process is alive and is the dnsmasq that
 * file belongs to (its command line names the file), else 0. */
static pid_t live_pid(const struct nf_state *s, const char *dir)
{
    _cleanup_free_ char *pidfile = xasprintf("%s/pid", dir);
    _cleanup_free_ char *text = NULL;
    int64_t pid;
    if (file_read(pidfile, 32, &text, NULL) < 0)
        return 0;
    text[strcspn(text, "\n")] = '\0';
    if (parse_int64(text, 2, INT32_MAX, &pid) < 0 || kill((pid_t)pid, 0) < 0)
        return 0;
    _cleanup_free_ char *rel = xasprintf("/proc/%lld/cmdline", (long long)pid);
    _cleanup_free_ char *path = path_join_root(s->proc_root, rel);
    _cleanup_free_ char *cmd = NULL;
    size_t len = 0;
    if (file_read(path, 65536, &cmd, &len) < 0)
        return 0;
    _cleanup_free_ char *want = xasprintf("--pid-file=%s", pidfile);
    for (size_t off = 0; off < len; off += strlen(cmd + off) + 1)
        if (streq(cmd + off, want))
            return (pid_t)pid;
    return 0;
}

pid_t resolver_pid(const struct nf_state *s, const char *bridge)
{
    if (!s->dns_dir || !net_ifname_ok(bridge))
        return 0;
    _cleanup_free_ char *dir = net_dir(s, bridge);
    return live_pid(s, dir);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int stop_dir(const struct nf_state *s, const char *dir)
{
    pid_t pid = live_pid(s, dir);
    if (pid > 0 && kill(pid, SIGTERM) < 0 && errno != ESRCH)
        return -errno;
    for (int waited = 0; pid > 0 && live_pid(s, dir) == pid; waited += 20) {
        if (waited >= STOP_WAIT_MS) {
            kill(pid, SIGKILL);
            break;
        }
        sleep_ms(20);
    }
    return 0;
}

/* dnsmasq daemonises: the process we spawn exits once the daemon listens
 * (non-zero when it could not, e.g. the address is not up yet). */
static int start(const char *const *argv)
{
    return spawn_wait((char *const *)argv, true);
}

static int sync_one(const struct nf_state *s, const struct nf_network *n)
{
    if (!net_ifname_ok(n->bridge))
        return -EINVAL;
    _cleanup_free_ char *dir = net_dir(s, n->bridge);
    /* dnsmasq reads its hosts file after dropping to its user. */
    int r = mkdir_p(dir, 0711);
    if (r < 0)
        return r;
    struct buf hosts = BUF_INIT, args = BUF_INIT;
    resolver_hosts_render(n, &hosts);
    size_t argc = resolver_argv_render(s, n, dir, &args);
    _cleanup_free_ char *hosts_path = xasprintf("%s/hosts", dir);
    _cleanup_free_ char *args_path = xasprintf("%s/args", dir);
    _cleanup_free_ char *old_hosts = NULL, *old_args = NULL;
    size_t old_hosts_len = 0, old_args_len = 0;
    bool hosts_same = file_read(hosts_path, 1 << 24, &old_hosts,
                                &old_hosts_len) == 0 &&
                      old_hosts_len == hosts.len &&
                      memcmp(old_hosts, hosts.data ? hosts.data : "",
                             hosts.len) == 0;
    bool args_same = file_read(args_path, 1 << 16, &old_args,
                               &old_args_len) == 0 &&
                     old_args_len == args.len &&
                     memcmp(old_args, args.data, args.len) == 0;
    if (!hosts_same)
        r = file_write_atomic(hosts_path, hosts.data ? hosts.data : "",
                              hosts.len, 0644);
    pid_t pid = live_pid(s, dir);
    if (r == 0 && pid > 0 && !args_same) {
        r = stop_dir(s, dir);
        pid = 0;
    }
    if (r == 0 && !args_same)
        r = file_write_atomic(args_path, args.data, args.len, 0600);
    if (r == 0 && pid > 0 && !hosts_same && kill(pid, SIGHUP) < 0)
        r = -errno;
    if (r == 0 && pid == 0) {
        const char **argv = xcalloc(argc + 1, sizeof(*argv));
        size_t off = 0;
        for (size_t i = 0; i < argc; i++) {
            argv[i] = args.data + off;
            off += strlen(args.data + off) + 1;
        }
        r = start(argv);
        free(argv);
    }
    buf_free(&hosts);
    buf_free(&args);
    return r;
}

static bool ours(const char *name)
{
    return startswith(name, "fogbr") && net_ifname_ok(name);
}

/* Stop and remove the resolvers under s->dns_dir of networks s does not
 * name with a label (all of them when `all`). */
static int prune(const struct nf_state *s, bool all)
{
    DIR *d = opendir(s->dns_dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int acc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!ours(e->d_name))
            continue;
        bool keep = false;
        for (size_t i = 0; !all && i < s->n_networks && !keep; i++)
            keep = s->networks[i].dns_label &&
                   streq(s->networks[i].bridge, e->d_name);
        if (keep)
            continue;
        _cleanup_free_ char *dir = net_dir(s, e->d_name);
        int r = stop_dir(s, dir);
        if (r == 0) {
            const char *files[] = { "hosts", "args", "pid" };
            for (size_t k = 0; k < ARRAY_SIZE(files); k++) {
                _cleanup_free_ char *p = xasprintf("%s/%s", dir, files[k]);
                unlink(p);
            }
            if (rmdir(dir) < 0 && errno != ENOENT)
                r = -errno;
        }
        if (r < 0 && acc == 0)
            acc = r;
    }
    closedir(d);
    return acc;
}

int resolver_sync(const struct nf_state *s)
{
    if (!s->dns_dir)
        return 0;
    int r = mkdir_p(s->dns_dir, 0711);
    if (r < 0)
        return r;
    int acc = prune(s, false);
    for (size_t i = 0; i < s->n_networks; i++) {
        if (!s->networks[i].dns_label)
            continue;
        r = sync_one(s, &s->networks[i]);
        if (r < 0 && acc == 0)
            acc = r;
    }
    return acc;
}

int resolver_stop_all(const struct nf_state *s)
{
    return s->dns_dir ? prune(s, true) : 0;
}
