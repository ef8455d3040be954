/* fog-nodeagent's option table and its few derived values. */
#include "nodeagent/config.h"
#include "common/netcheck.h"

#include "api/agentproto.h"
#include "common/fs.h"
#include "nodeagent/inventory.h"
#include "nodeagent/vmxml.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F(x) CONFIG_FIELD(struct agent_settings, x)
const struct config_opt agent_options[] = {
    { "data-dir", CONFIG_STRING, F(data_dir), 0, 0, "/var/lib/fog-nodeagent",
      "directory holding the credential, CA, VM disks and console logs" },
    { "libvirt", CONFIG_STRING, F(libvirt_uri), 0, 0, NULL,
      "libvirt URI [default: the one given at join, else qemu:///system]" },
    { "root", CONFIG_STRING, F(root), 0, 0, "/",
      "prefix of every /proc, /sys and /dev path read for the inventory" },
    { "image-dir", CONFIG_STRING, F(image_dir), 0, 0, NULL,
      "local base images, NAME.qcow2 or NAME.img [default: DATA-DIR/images]" },
    { "controller", CONFIG_STRING, F(controller), 0, 0, NULL,
      "join: controller URL, https://host:port" },
    { "token", CONFIG_STRING, F(token), 0, 0, NULL,
      "join: the join token (fogjoin....)" },
    { "name", CONFIG_STRING, F(name), 0, 0, NULL,
      "join: node name [default: derived from the host name]" },
    { "qemu-img", CONFIG_STRING, F(qemu_img), 0, 0, "qemu-img",
      "qemu-img program, used to grow the disks of stopped VMs" },
    { "heartbeat", CONFIG_INT, F(heartbeat_s), 0, 3600, "0",
      "seconds between status posts (0: the controller's interval)" },
    { "shutdown-timeout", CONFIG_INT, F(shutdown_timeout_s), 1, 3600, "60",
      "seconds an ACPI shutdown may take before the domain is destroyed" },
    { "allow-tcg", CONFIG_BOOL, F(allow_tcg), 0, 0, "true",
      "run domains under QEMU's TCG when /dev/kvm is missing" },
    { "verbose", CONFIG_BOOL, F(verbose), 0, 0, NULL, "log debug messages" },
    { "network", CONFIG_STRING, F(network), 0, 0, "host",
      "host: build the mesh, tenant bridges and firewall; none: leave the "
      "host's network alone" },
    { "mesh-ifname", CONFIG_STRING, F(mesh_ifname), 0, 0, "fogwg0",
      "WireGuard interface of the mesh" },
    { "wg-port", CONFIG_INT, F(wg_port), 1, 65535, "51820",
      "join: UDP port of the mesh interface (never published)" },
    { "endpoint", CONFIG_STRING, F(endpoint), 0, 0, NULL,
      "HOST:PORT other nodes reach the mesh at [default: the address the "
      "controller sees]; a probed mapping without NAT or behind an "
      "endpoint-independent NAT takes its place" },
    { "probe-interval", CONFIG_INT, F(probe_interval_s), 0, 86400, "60",
      "seconds between probes of the WireGuard port's public mapping and "
      "NAT class, answered by the controller's --probe-port (0: never)" },
    { "resync-interval", CONFIG_INT, F(resync_interval_s), 0, 86400, "600",
      "seconds between asks for the whole desired document, however many "
      "changes came as deltas since (0: only at start and on a mismatch)" },
    { "direct-first", CONFIG_INT, F(direct_first_s), 1, 86400, "20",
      "seconds before a peer newly put on the hub's relay first tries the "
      "direct path" },
    { "direct-retry", CONFIG_INT, F(direct_retry_s), 0, 86400, "60",
      "seconds between a relayed peer's direct tries, doubling up to "
      "--direct-retry-max (0: never try)" },
    { "direct-retry-max", CONFIG_INT, F(direct_retry_max_s), 1, 86400, "600",
      "most seconds between a relayed peer's direct tries" },
    { "direct-window", CONFIG_INT, F(direct_window_s), 1, 60, "5",
      "seconds a direct try waits for the peer's packets to come straight "
      "(the most the pair's traffic is lost to a failed try)" },
    { "direct-timeout", CONFIG_INT, F(direct_timeout_s), 3, 3600, "180",
      "seconds a direct peer may stay silent before it goes back to the "
      "relay" },
    { "public-ip", CONFIG_STRING, F(public_ip), 0, 0, NULL,
      "IPv4 address published ports answer on (the API shows it); behind "
      "NAT the router's, which forwards the port range to the host [default: "
      "any local one, and the address the controller sees is shown]" },
    { "public-ip6", CONFIG_STRING, F(public_ip6), 0, 0, NULL,
      "global IPv6 address published ports also answer on (DNAT to the "
      "VM's IPv6 address) and VMs' IPv6 egress is masqueraded to [default: "
      "the global address of the IPv6 default route's interface; none: "
      "IPv6 stays inside tenant networks]" },
    { "allow-egress", CONFIG_STRING, F(allow_egress), 0, 0, NULL,
      "private IPv4 ranges tenant VMs may reach, CIDR[,CIDR] (their LAN, "
      "link-local, CGNAT, ... are closed to them otherwise; the host itself "
      "and the mesh stay closed) [default: none]" },
    { "port-min", CONFIG_INT, F(port_min), 1, 65535, "20000",
      "join: lowest host port the controller may publish (kept in "
      "node.json; the agent refuses ports outside the range)" },
    { "port-max", CONFIG_INT, F(port_max), 1, 65535, "29999",
      "join: highest host port the controller may publish" },
    { "permit-ports", CONFIG_STRING, F(permit_ports), 0, 0, NULL,
      "well-known host ports the controller may publish beyond the range, "
      "PORT[,PORT] (e.g. 80,443,25565,27015; reported to the controller "
      "and enforced here) [default: none]" },
    { "underlay-mtu", CONFIG_INT, F(underlay_mtu), 576, 65535, "1500",
      "MTU of the network the mesh runs over" },
    { "wireguard-go", CONFIG_STRING, F(wireguard_go), 0, 0, "wireguard-go",
      "userspace WireGuard, run when the kernel has no module" },
    { "cache-max-gib", CONFIG_INT, F(cache_max_gib), 0, 1 << 20, "20",
      "size of the image cache in GiB; least recently used unused images "
      "go first (0: no limit)" },
    { "backup-chunk-kib", CONFIG_INT, F(backup_chunk_kib), 4, 8192, "8192",
      "KiB of a backup sent to the hub per request (a lost request costs "
      "at most that much)" },
    { "bench-guest", CONFIG_STRING, F(bench_guest), 0, 0,
      "/usr/share/fogfabric/probe",
      "folder of the benchmark's probe guest (vmlinuz and initrd.gz, as "
      "images/probe/build.sh makes them), used when the hub serves none; "
      "on libvirt's test driver the worker runs in the agent instead" },
    { "reserve-vcpus", CONFIG_INT, F(reserve_vcpus), 0, 1 << 16, "0",
      "CPUs kept for the host's own work, out of what the node offers" },
    { "reserve-memory-mib", CONFIG_INT, F(reserve_memory_mib), 0, 1 << 30,
      "0", "memory in MiB kept for the host's own work" },
    { "reserve-disk-gib", CONFIG_INT, F(reserve_disk_gib), 0, 1 << 30, "0",
      "disk in GiB (of the data dir's file system) kept for the host" },
    { "cpu-shares", CONFIG_INT, F(cpu_shares), 0, 10000, "0",
      "CPU weight of a VM per vCPU (libvirt cputune shares; a host process "
      "group weighs 1024; 100 lets the owner's work win) (0: libvirt's "
      "default, 1024 per VM)" },
    { "cpu-cap-pct", CONFIG_INT, F(cpu_cap_pct), 0, 100, "0",
      "most a VM's vCPU may use of one host CPU, in % (cputune quota) "
      "(0: no cap)" },
    { "disk-iops", CONFIG_INT, F(disk_iops), 0, 1000000, "0",
      "I/O operations per second a VM's disk may do (iotune) (0: no limit)" },
    { "disk-mbps", CONFIG_INT, F(disk_mbps), 0, 100000, "0",
      "MiB per second a VM's disk may move (iotune) (0: no limit)" },
    { "net-kbps", CONFIG_INT, F(net_kbps), 0, 100000000, "0",
      "KiB per second each VM NIC may send and receive (bandwidth) "
      "(0: no limit)" },
    { "metrics-listen", CONFIG_STRING, F(metrics_listen), 0, 0, NULL,
      "run: IPv4ADDR:PORT to serve Prometheus metrics on (plain HTTP; keep "
      "it local) [default: none]" },
};
#undef F
const size_t agent_options_n = ARRAY_SIZE(agent_options);

void agent_config_defaults(struct agent_settings *s)
{
    memset(s, 0, sizeof(*s));
    config_defaults(agent_options, agent_options_n, s);
}

int agent_config_parse(struct agent_settings *s, int argc, char **argv,
                       int start, char ***ret_args, int *ret_nargs)
{
    return config_parse_args(agent_options, agent_options_n, s, argc, argv,
                             start, ret_args, ret_nargs);
}

bool agent_config_host_network(const struct agent_settings *s)
{
    return !streq(s->network, "none");
}

int agent_config_check(const struct agent_settings *s)
{
    if (!streq(s->network, "host") && !streq(s->network, "none")) {
        fprintf(stderr, "invalid --network '%s' (want host or none)\n",
                s->network ? s->network : "");
        return -EINVAL;
    }
    if (s->port_min > s->port_max) {
        fprintf(stderr, "--port-min %lld is above --port-max %lld\n",
                (long long)s->port_min, (long long)s->port_max);
        return -EINVAL;
    }
    struct in_addr a;
    if (s->public_ip && *s->public_ip &&
        inet_pton(AF_INET, s->public_ip, &a) != 1) {
        fprintf(stderr, "invalid --public-ip '%s' (want an IPv4 address)\n",
                s->public_ip);
        return -EINVAL;
    }
    if (s->public_ip6 && *s->public_ip6 && !agent_ip6_global(s->public_ip6)) {
        fprintf(stderr, "invalid --public-ip6 '%s' (want a global IPv6 "
                "address)\n", s->public_ip6);
        return -EINVAL;
    }
    if (s->endpoint && *s->endpoint) {
        const char *colon = strrchr(s->endpoint, ':');
        int64_t port;
        if (!colon || colon == s->endpoint || strlen(s->endpoint) > 80 ||
            parse_int64(colon + 1, 1, 65535, &port) < 0 ||
            !vmxml_text_ok(s->endpoint) || strchr(s->endpoint, ' ')) {
            fprintf(stderr, "invalid --endpoint '%s' (want HOST:PORT)\n",
                    s->endpoint);
            return -EINVAL;
        }
    }
    _cleanup_free_ struct ipam_cidr *allow = NULL;
    size_t n_allow;
    if (agent_config_allow_egress(s, &allow, &n_allow) < 0)
        return -EINVAL;
    _cleanup_free_ uint16_t *permit = NULL;
    size_t n_permit;
    if (agent_config_permit_ports(s, &permit, &n_permit) < 0)
        return -EINVAL;
    if (!s->mesh_ifname || !net_ifname_ok(s->mesh_ifname)) {
        fprintf(stderr, "invalid --mesh-ifname '%s'\n",
                s->mesh_ifname ? s->mesh_ifname : "");
        return -EINVAL;
    }
    return 0;
}

int agent_config_allow_egress(const struct agent_settings *s,
                              struct ipam_cidr **ret_cidrs, size_t *ret_n)
{
    if (ipam_cidr_list_parse(s->allow_egress, ret_cidrs, ret_n) < 0) {
        fprintf(stderr, "invalid --allow-egress '%s' (want IPv4 CIDRs with "
                "zero host bits, comma-separated, e.g. "
                "192.168.1.0/24,10.0.0.0/8)\n", s->allow_egress);
        return -EINVAL;
    }
    return 0;
}

int agent_config_inventory(const struct agent_settings *s,
                           struct inventory *ret)
{
    struct inventory inv;
    int r = inventory_collect(s->root, s->data_dir, &inv);
    if (r < 0)
        return r;
    if ((r = inventory_reserve(&inv, s->reserve_vcpus, s->reserve_memory_mib,
                               s->reserve_disk_gib)) < 0) {
        inventory_clear(&inv);
        return r;
    }
    *ret = inv;
    return 0;
}

static int cmp_u16(const void *x, const void *y)
{
    return (int)*(const uint16_t *)x - (int)*(const uint16_t *)y;
}

int agent_config_permit_ports(const struct agent_settings *s,
                              uint16_t **ret_ports, size_t *ret_n)
{
    _cleanup_free_ uint16_t *ports = NULL;
    size_t n = 0;
    const char *p = s->permit_ports ? s->permit_ports : "";
    while (*p) {
        size_t len = strcspn(p, ",");
        _cleanup_free_ char *word = xstrndup(p, len);
        int64_t v;
        if (parse_int64(word, 1, 65535, &v) < 0 ||
            n >= AGENT_PERMIT_PORTS_MAX) {
            fprintf(stderr, "invalid --permit-ports '%s' (want at most %d "
                    "port numbers from 1 to 65535, comma-separated, e.g. "
                    "80,443,27015)\n", s->permit_ports, AGENT_PERMIT_PORTS_MAX);
            return -EINVAL;
        }
        ports = xrealloc(ports, (n + 1) * sizeof(*ports));
        ports[n++] = (uint16_t)v;
        p += len + (p[len] == ',');
    }
    if (n > 0)
        qsort(ports, n, sizeof(*ports), cmp_u16);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || ports[k - 1] != ports[i])
            ports[k++] = ports[i];
    *ret_ports = TAKE_PTR(ports);
    *ret_n = k;
    return 0;
}

json_t *agent_config_permit_json(const struct agent_settings *s)
{
    _cleanup_free_ uint16_t *ports = NULL;
    size_t n;
    if (agent_config_permit_ports(s, &ports, &n) < 0)
        return NULL;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_integer(ports[i]));
    return arr;
}

char *agent_config_image_dir(const struct agent_settings *s)
{
    if (s->image_dir && *s->image_dir)
        return xstrdup(s->image_dir);
    return xasprintf("%s/images", s->data_dir);
}

void agent_config_free(struct agent_settings *s)
{
    config_free(agent_options, agent_options_n, s);
}

bool agent_ip6_global(const char *text)
{
    struct in6_addr a;
    if (!text || inet_pton(AF_INET6, text, &a) != 1)
        return false;
    return !IN6_IS_ADDR_UNSPECIFIED(&a) && !IN6_IS_ADDR_LOOPBACK(&a) &&
           !IN6_IS_ADDR_LINKLOCAL(&a) && !IN6_IS_ADDR_MULTICAST(&a) &&
           !IN6_IS_ADDR_V4MAPPED(&a) && (a.s6_addr[0] & 0xfe) != 0xfc;
}

/* IFA_F_* flags that rule an address out: temporary, deprecated,
 * tentative, DAD failed. */
#define ADDR6_SKIP (0x01 | 0x20 | 0x40 | 0x08)

int agent_detect_public_ip6(const char *root, char out[46])
{
    _cleanup_free_ char *routes_path = path_join_root(root,
                                                      "/proc/net/ipv6_route");
    _cleanup_free_ char *addrs_path = path_join_root(root, "/proc/net/if_inet6");
    _cleanup_free_ char *routes = NULL, *addrs = NULL;
    char dev[IFNAMSIZ + 1] = "";
    char *save = NULL;
    if (file_read(routes_path, 1 << 22, &routes, NULL) < 0)
        return -ENOENT;
    for (char *l = strtok_r(routes, "\n", &save); l && !*dev;
         l = strtok_r(NULL, "\n", &save)) {
        char dst[33], d[IFNAMSIZ + 1];
        unsigned plen;
        if (sscanf(l, "%32s %x %*s %*s %*s %*s %*s %*s %*s %16s", dst, &plen,
                   d) == 3 && plen == 0 && strspn(dst, "0") == 32 &&
            !streq(d, "lo"))
            snprintf(dev, sizeof(dev), "%s", d);
    }
    if (!*dev || file_read(addrs_path, 1 << 22, &addrs, NULL) < 0)
        return -ENOENT;
    for (char *l = strtok_r(addrs, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        char hex[33], d[IFNAMSIZ + 1];
        unsigned idx, pl, scope, flags;
        if (sscanf(l, "%32s %x %x %x %x %16s", hex, &idx, &pl, &scope, &flags,
                   d) != 6 || !streq(d, dev) || scope != 0 ||
            (flags & ADDR6_SKIP) || strlen(hex) != 32 ||
            strspn(hex, "0123456789abcdefABCDEF") != 32)
            continue;
        struct in6_addr a;
        for (int i = 0; i < 16; i++) {
            unsigned byte = 0;
            sscanf(hex + 2 * i, "%2x", &byte);
            a.s6_addr[i] = (uint8_t)byte;
        }
        if (inet_ntop(AF_INET6, &a, out, 46) && agent_ip6_global(out))
            return 0;
    }
    return -ENOENT;
}
