/* The controller–agent contract as C types: the desired document (GET
 * /v1/agent/desired), the status body (POST /v1/agent/status) and the
 * register body (POST /v1/agent/register), each with one encoder and one
 * decoder that both ends use, so that the wire format, its bounds and its
 * defaults are written once. Limits are in api/agentproto.h. */
#pragma once

#include "api/agentproto.h"
#include "common/benchwork.h"
#include "api/healthcheck.h"
#include "common/jsonutil.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- the desired document ---------------------------------------------- */

struct am_nic {
    char *network_id;       /* may be NULL */
    char *mac;
    char *address;
    int64_t prefix;         /* 0: not given */
    char *gateway;          /* may be NULL */
    int64_t mtu;            /* 0: not given */
    char *bridge;
    char *dns_search;       /* AGENT_NIC_DNS_SEARCH; may be NULL */
    char *address6;         /* AGENT_NIC_ADDRESS6 (a /64); may be NULL */
    char *gateway6;         /* AGENT_NIC_GATEWAY6; may be NULL */
};

struct am_image_source {
    char *id, *sha256, *format, *url;
    int64_t size;
};

/* A snapshot: in the desired document {id, name, taken} (consistency
 * NULL, created_at 0), where `taken` says the node has reported it once,
 * so a node that no longer holds it lost it and must not take it afresh;
 * in a status post {id, name, consistency, created_at}: how it was taken
 * (SNAPSHOT_CONSISTENCY_*) and when (Unix seconds). */
struct am_snapshot {
    char *id, *name;
    bool taken;
    char *consistency;
    int64_t created_at;
};

/* One card a VM holds: its graphics function's PCI address, every
 * function of the card, and where it sits (AGENT_VM_GPUS). */
/* AGENT_VM_RESTORE: the sealed backup a VM placed from one starts from. */
struct am_restore {
    char backup[37];        /* the backup's id (a UUID) */
    int64_t size;           /* bytes of the sealed blob */
    char sha256[65];        /* of the sealed blob, lowercase hex */
};

struct am_vm_gpu {
    char *address;
    char **functions;
    size_t n_functions;
    int64_t numa_node;      /* -1: unknown */
    char *cpulist;          /* "" when unknown */
};

struct am_vm {
    char *id, *name;
    int64_t vcpus, memory_mib, disk_gib;
    char *image;
    bool has_source;
    struct am_image_source source;
    char **ssh_keys;
    size_t n_ssh_keys;
    bool running;           /* "power": running or stopped */
    bool stop_force, deleted;
    bool paused;            /* AGENT_VM_PAUSED: suspended while running */
    bool no_autostart;      /* AGENT_VM_AUTOSTART false: not after a reboot */
    int64_t reboot_gen, start_gen, place_gen;
    int64_t shutdown_timeout_s;
    char *user_data;        /* may be NULL */
    struct am_nic *nics;
    size_t n_nics;
    /* AGENT_VM_SNAPSHOTS (at most VM_SNAPSHOTS_MAX) and AGENT_VM_REVERT:
     * a revert to snapshot revert_snapshot_id, done once per revert_gen
     * (has_revert false: none asked). */
    struct am_snapshot *snapshots;
    size_t n_snapshots;
    bool has_revert;
    int64_t revert_gen;
    char *revert_snapshot_id;
    struct am_vm_gpu *gpus; /* AGENT_VM_GPUS; left out when none */
    size_t n_gpus;
    /* AGENT_VM_BACKUPS: the ids (UUIDs) of the backups to take, at most
     * VM_BACKUPS_PENDING_MAX, and AGENT_VM_BACKUP_KEY: the VM's backup
     * key, 64 lowercase hex (required with backups; NULL: not given). */
    char **backups;
    size_t n_backups;
    char **backup_parents;  /* n_backups entries, each NULL when none */
    char *backup_key;
    bool has_restore;       /* AGENT_VM_RESTORE given */
    struct am_restore restore;
    struct am_restore *chain; /* AGENT_RESTORE_CHAIN, the full one first */
    size_t n_chain;
    struct hc_spec *checks; /* AGENT_VM_HEALTH_CHECKS; each with its id */
    size_t n_checks;
};

struct am_remote_mac {
    char *mac, *vtep;
};

/* A name in a tenant network (AGENT_NET_RECORDS). */
struct am_record {
    char *name, *address;
    char *address6;         /* AGENT_REC_ADDRESS6; may be NULL */
};

struct am_network {
    char *id;
    int64_t vxlan_id;
    char *cidr, *gateway, *bridge;
    char *cidr6, *gateway6; /* AGENT_NET_CIDR6, AGENT_NET_GATEWAY6; may be
                               NULL */
    int64_t mtu;            /* 0: not given */
    char **vteps;
    size_t n_vteps;
    struct am_remote_mac *macs;
    size_t n_macs;
    char *dns_label;        /* AGENT_NET_DNS_LABEL; may be NULL */
    struct am_record *records;
    size_t n_records;
};

/* One VM of a network the document carries, as an item of the keyed list
 * AGENT_NET_VMS (agentproto.h). */
struct am_net_vm {
    char *id;               /* AGENT_NET_VM_ID_FMT of vxlan_id and mac */
    int64_t vxlan_id;
    char *name, *address, *mac;
    char *address6;         /* may be NULL */
    char *vtep;             /* may be NULL: its node has no VTEP */
};

struct am_port {
    char *vm_id, *proto, *vm_address;
    int64_t host_port, vm_port;
};

struct am_peer {
    char *node_id, *name, *public_key;
    char *endpoint;         /* may be NULL */
    char **allowed_ips;
    size_t n_allowed_ips;
    int64_t keepalive;
    bool relayed;           /* AGENT_PEER_PATH "relay" (else "direct") */
};

struct am_mesh {
    char *address;
    int64_t prefix, listen_port;
};

/* A console session the node is asked to join (AGENT_CONSOLES). */
struct am_console {
    char *id, *vm_id;
    uint32_t log_bytes; /* a log session's bytes (AGENT_CONSOLE_LOG_BYTES);
                           0: an interactive console */
};

/* A file of the hub's probe guest (AGENT_BENCH_PROBE). */
struct am_probe_file {
    char sha256[65];        /* lowercase hex */
    int64_t size;           /* 1..AGENT_BENCH_PROBE_MAX */
};

/* The open benchmark challenge (AGENT_BENCH). */
struct am_bench {
    char id[37];            /* a UUID */
    struct bench_params params;
    int64_t timeout_s;      /* from its issue, 1..AGENT_BENCH_TIMEOUT_MAX_S */
    bool has_probe;         /* the hub serves its probe guest */
    struct am_probe_file kernel, initrd;
};

struct am_desired {
    int64_t revision;
    char *node_id;
    bool has_mesh;          /* "mesh": null when false */
    struct am_mesh mesh;
    bool unapproved;        /* "approved": false, sent only then */
    struct am_vm *vms;
    size_t n_vms;
    struct am_network *networks;
    size_t n_networks;
    /* AGENT_NET_VMS, given: the networks' records and macs are made from
     * it when the document is read (whatever the entries said). */
    bool has_net_vms;
    struct am_net_vm *net_vms;
    size_t n_net_vms;
    struct am_port *ports;
    size_t n_ports;
    struct am_peer *peers;
    size_t n_peers;
    struct am_console *consoles; /* sent only when there are any */
    size_t n_consoles;
    bool has_bench;         /* AGENT_BENCH: sent only when one is open */
    struct am_bench bench;
};

/* ---- the status body ---------------------------------------------------- */

/* A node's facts, at register (all of vcpus..kvm required) and in every
 * status post (all optional). `has` says which were given. */
enum am_inv_has {
    AM_INV_VCPUS = 1 << 0,
    AM_INV_MEMORY = 1 << 1,
    AM_INV_DISK = 1 << 2,
    AM_INV_KVM = 1 << 3,
    AM_INV_ALL = (1 << 4) - 1,
    AM_INV_RESERVED = 1 << 4, /* optional: the provider's reservation */
};
struct am_inventory {
    unsigned has;
    int64_t vcpus, memory_mib, disk_gib;
    int64_t reserved_vcpus, reserved_memory_mib, reserved_disk_gib;
    bool kvm;
    char *arch, *cpu_model; /* may be NULL */
};

/* One interface of a domain as the node read it from the domain XML
 * (AGENT_VM_INTERFACES): virsh domiflist's columns. */
struct am_iface {
    char *target;           /* host device ("vnet0"); NULL when none */
    char *type;             /* "bridge", "network", ... */
    char *source;           /* bridge or network name; NULL when none */
    char *model;            /* "virtio", ...; NULL when none */
    char *mac;
};

/* One health check's state as the node sees it (AGENT_VM_HEALTH). */
struct am_health {
    char id[37];
    enum hc_state state;
    char *output;           /* may be NULL */
};

struct am_vm_status {
    char *id;
    char *state;            /* one of am_vm_states */
    char *reason;           /* may be NULL */
    char *console_tail;     /* may be NULL */
    json_t *addresses;      /* array of IP texts, or NULL */
    bool by_guest;
    int64_t start_gen;
    /* What the domain holds (AGENT_VM_SNAPSHOTS) and the last revert
     * generation it carried out (AGENT_VM_REVERT_GEN); has_snapshots
     * false: not reported (no domain yet). */
    bool has_snapshots;
    struct am_snapshot *snapshots;
    size_t n_snapshots;
    int64_t revert_gen;
    /* The domain's XML (AGENT_VM_DOMAIN_XML; NULL: unchanged or not
     * reported) and, with it, its interfaces (AGENT_VM_INTERFACES). */
    char *domain_xml;
    struct am_iface *ifaces;
    size_t n_ifaces;
    /* AGENT_VM_HEALTH; has_health false: not reported (not running). */
    bool has_health;
    struct am_health *health;
    size_t n_health;
};

/* A usage sample: VM `vm` ran over [start, end) (unix seconds) by the
 * node's account, numbered `seq` per VM. One malformed sample does not
 * refuse the whole body: `refused` says why (owned; NULL for a good one),
 * so that billing names it back (AGENT_REJECTED_SAMPLES) and the node
 * drops only it. */
struct am_sample {
    char *vm;               /* may be NULL in a refused one */
    int64_t seq, start, end;
    char *refused;
};

struct am_refusal {
    char *object, *reason;
};

struct am_status {
    bool has_inventory;
    struct am_inventory inventory;
    struct am_vm_status *vms;
    size_t n_vms;
    char *endpoint, *public_ip;     /* may be NULL */
    char *public_ip6;               /* AGENT_PUBLIC_IP6; may be NULL */
    struct am_refusal *refused;
    size_t n_refused;
    bool has_permit_ports;
    uint16_t *permit_ports;
    size_t n_permit_ports;
    /* Usage samples (at most AGENT_SAMPLES_MAX), each checked on its own
     * (struct am_sample's `refused`): a UUID, seq >= 1, 0 <= start <=
     * end <= AGENT_SAMPLE_TIME_MAX, and per VM a higher seq never starts
     * before a lower one. */
    struct am_sample *samples;
    size_t n_samples;
    /* The node's GPUs (AGENT_GPUS; NULL: not reported) and whether its
     * IOMMU is on (-1: not reported). */
    json_t *gpus;
    int iommu;
    /* What the address probe found (AGENT_REACH); has_reach false: not
     * reported. nat is a probe_nat_name(); mapped_endpoint NULL when
     * nothing answered. */
    bool has_reach;
    char *nat;
    char *mapped_endpoint;
    /* The relayed peers' paths (AGENT_MESH_PATHS); has_mesh_paths false:
     * not reported. */
    bool has_mesh_paths;
    struct am_mesh_path *mesh_paths;
    size_t n_mesh_paths;
};

/* One relayed peer's path in a status post: node_id a UUID, path one
 * of AGENT_MESH_PATH_*, since >= 0. */
struct am_mesh_path {
    char *node_id, *path;
    int64_t since;
};

/* ---- the register body -------------------------------------------------- */

struct am_register {
    char *token, *name;
    struct am_inventory inventory;
    char *wg_public_key, *endpoint, *public_ip; /* may be NULL */
    int64_t wg_port, port_min, port_max;        /* 0: not given */
    bool has_permit_ports;
    uint16_t *permit_ports;
    size_t n_permit_ports;
    json_t *gpus; /* as in struct am_status */
    int iommu;
};

/* True for a canonical PCI address "dddd:bb:ss.f" (lower-case hex,
 * slot below 0x20, function 0-7), the only form the contract carries. */
bool am_pci_addr_ok(const char *s);
/* True for a CPU list like "0-7,16-23" (digits, ranges, commas), or "". */
bool am_cpulist_ok(const char *s);
/* True for a MAC address "xx:xx:xx:xx:xx:xx" (hex digits). */
bool am_mac_ok(const char *s);
/* True for a short interface text: 1..AGENT_IFACE_TEXT_MAX printable
 * ASCII bytes. */
bool am_iface_text_ok(const char *s);

/* The states a VM may be reported in (NULL-terminated). */
extern const char *const am_vm_states[];

/* Encoders: a new JSON value (never NULL; aborts on out of memory) in the
 * wire format, members in a fixed order, optional ones left out when
 * empty. The caller owns the result. */
json_t *am_desired_encode(const struct am_desired *d);
json_t *am_status_encode(const struct am_status *s);
json_t *am_register_encode(const struct am_register *r);

/* Decoders: check every member the contract names (type, bounds, syntax
 * of addresses, MACs and interface names) and fill *ret, which the caller
 * clears with the matching _clear() on success; on failure *ret is left
 * zeroed and *err names the offending member (caller clears it). -EINVAL
 * on failure. A document from the controller may hold members this agent
 * does not know (a newer controller talking to an older agent): they are
 * ignored. A body from a node may not: unknown members are refused, as
 * everywhere in the API. */
int am_desired_decode(const json_t *j, struct am_desired *ret,
                      struct jerr *err);
int am_status_decode(const json_t *j, struct am_status *ret, struct jerr *err);
int am_register_decode(const json_t *j, struct am_register *ret,
                       struct jerr *err);

/* A benchmark answer (see AGENT_BENCH) for the challenge p: every lane's
 * segments + 1 checkpoints into *ret_cp (malloc'd, lane by lane, as
 * bench_run writes them) and the node's own time into *ret_elapsed_ms
 * (for display only). -EINVAL with *err set when anything is missing,
 * extra, misshapen or of the wrong count. */
int am_bench_answer_decode(const json_t *j, const struct bench_params *p,
                           uint8_t **ret_cp, int64_t *ret_elapsed_ms,
                           struct jerr *err);

void am_desired_clear(struct am_desired *d);
void am_status_clear(struct am_status *s);
void am_register_clear(struct am_register *r);
/* Free the members of one interface entry. */
void am_iface_clear(struct am_iface *f);
