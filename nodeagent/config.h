/* fog-nodeagent's settings: one declarative option table (common/config.h)
 * drives the flags, an optional config file and --help. */
#pragma once

#include "common/config.h"
#include "netfabric/ipam.h"

#include <jansson.h>
#include <stdint.h>

struct agent_settings {
    char *data_dir;     /* credential, CA, disks, console logs */
    char *libvirt_uri;  /* NULL: as stored at join, else qemu:///system */
    char *root;         /* prefix of /proc, /sys and /dev reads */
    char *image_dir;    /* NULL: DATA-DIR/images */
    char *controller;   /* join: controller URL */
    char *token;        /* join: fogjoin.<secret>.<ca sha256> */
    char *name;         /* join: node name; default from the host name */
    char *qemu_img;     /* qemu-img program */
    int64_t heartbeat_s;        /* 0: the controller's interval */
    int64_t shutdown_timeout_s; /* ACPI shutdown grace before destroy */
    bool allow_tcg;     /* run domains under TCG when there is no KVM */
    bool verbose;
    /* Host networking (netfabric). */
    char *network;      /* "host": mesh, bridges, firewall; "none": skip */
    char *mesh_ifname;  /* WireGuard interface */
    int64_t wg_port;    /* its UDP port, told to the controller at join */
    char *endpoint;     /* HOST:PORT peers reach us at (NULL: as seen) */
    char *public_ip;    /* IPv4 address published ports answer on */
    char *public_ip6;   /* global IPv6 address for them (NULL: detected) */
    int64_t probe_interval_s; /* address probes from the WireGuard port */
    int64_t resync_interval_s; /* whole desired document at least this often */
    int64_t direct_first_s;   /* relayed peers: first direct try after */
    int64_t direct_retry_s;   /* then at least this far apart (0: never) */
    int64_t direct_retry_max_s; /* and at most */
    int64_t direct_window_s;  /* how long one try waits for an answer */
    int64_t direct_timeout_s; /* a silent direct path goes back to relay */
    char *allow_egress; /* private IPv4 CIDRs VMs may reach, comma-separated */
    int64_t port_min;   /* range of host ports the controller may publish */
    int64_t port_max;
    char *permit_ports; /* well-known host ports permitted beyond the range */
    int64_t underlay_mtu;
    char *wireguard_go; /* program used where the kernel lacks WireGuard */
    int64_t cache_max_gib; /* image cache budget */
    int64_t backup_chunk_kib; /* bytes of a backup per upload request */
    char *bench_guest;  /* the probe guest's folder (benchjob.c) */
    /* Kept for the host's owner, out of what the node offers. */
    int64_t reserve_vcpus;
    int64_t reserve_memory_mib;
    int64_t reserve_disk_gib;
    /* Per-VM limits written into each domain (0: none). */
    int64_t cpu_shares;     /* cputune shares per vCPU */
    int64_t cpu_cap_pct;    /* cputune quota: % of one CPU per vCPU */
    int64_t disk_iops;      /* iotune total_iops_sec */
    int64_t disk_mbps;      /* iotune total_bytes_sec, MiB/s */
    int64_t net_kbps;       /* bandwidth average in and out, KiB/s */
    char *metrics_listen;   /* ADDR:PORT of the Prometheus endpoint */
};

extern const struct config_opt agent_options[];
extern const size_t agent_options_n;

/* Defaults for every option (strings allocated). */
void agent_config_defaults(struct agent_settings *s);
/* Parse flags from argv[start..]; leftover words go to ret_args (caller
 * frees the array only). 0 or -EINVAL (message printed). */
int agent_config_parse(struct agent_settings *s, int argc, char **argv,
                       int start, char ***ret_args, int *ret_nargs);
/* Check values the table cannot (choices, address forms, ranges).
 * 0 or -EINVAL (message printed). */
int agent_config_check(const struct agent_settings *s);
/* True unless --network none. */
bool agent_config_host_network(const struct agent_settings *s);
/* The --allow-egress ranges (the caller frees *ret_cidrs; NULL when none).
 * 0 or -EINVAL (message printed). */
int agent_config_allow_egress(const struct agent_settings *s,
                              struct ipam_cidr **ret_cidrs, size_t *ret_n);
/* Whether text is a global IPv6 address a node can publish ports on:
 * not unspecified, loopback, link-local, multicast, IPv4-mapped or
 * unique local. */
bool agent_ip6_global(const char *text);
/* The node's global IPv6 address where none is configured: the first
 * global, permanent (not tentative, deprecated or temporary) address of
 * the interface of the IPv6 default route, read from
 * ROOT/proc/net/ipv6_route and ROOT/proc/net/if_inet6 (root NULL: "/").
 * 0, or -ENOENT when there is none. */
int agent_detect_public_ip6(const char *root, char out[46]);
/* The host inventory under s->root and s->data_dir less the --reserve-*
 * figures. 0 or -errno (logged). */
struct inventory;
int agent_config_inventory(const struct agent_settings *s,
                           struct inventory *ret);

/* The --permit-ports list, ascending and without duplicates (the caller
 * frees *ret_ports; NULL when none). 0 or -EINVAL (message printed). */
int agent_config_permit_ports(const struct agent_settings *s,
                              uint16_t **ret_ports, size_t *ret_n);
/* The same list as a JSON array of integers (new reference), NULL when
 * the option does not parse. */
json_t *agent_config_permit_json(const struct agent_settings *s);
/* The image directory in effect; caller frees. */
char *agent_config_image_dir(const struct agent_settings *s);
void agent_config_free(struct agent_settings *s);
