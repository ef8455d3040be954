/* What the network of one node should look like, as netfabric consumes
 * it: the mesh (own address, port, peers), tenant networks (VXLAN, bridge,
 * gateway, remote VTEPs and MACs), the VM ports to guard and the published
 * ports. Parsed from the controller's desired-state document. */
#pragma once

#include "common/util.h"
#include "netfabric/ipam.h"
#include "netfabric/wgkey.h"

#include <jansson.h>
#include <net/if.h>
#include <netinet/in.h>

#define NF_MESH_IFNAME "fogwg0"
#define NF_VXLAN_PORT 4789
#define NF_TAP_PREFIX "fogt" /* VM NIC taps: see netfabric_tap_name */

struct nf_peer {
    char *node_id;                 /* owned, may be NULL */
    uint8_t public_key[WGKEY_LEN];
    char *endpoint;                /* owned "a.b.c.d:port", NULL if unknown */
    struct ipam_cidr *allowed_ips; /* owned */
    size_t n_allowed_ips;
    uint16_t keepalive;
};

struct nf_mac {
    uint8_t mac[6];
    uint32_t vtep;
};

/* A name inside a tenant network (the document's "records"). */
struct nf_record {
    char *name;              /* owned; as sent: checked where it is used */
    uint32_t addr;
    bool has_addr6;          /* AAAA */
    struct in6_addr addr6;
};

struct nf_network {
    uint32_t vxlan_id;
    struct ipam_cidr cidr;
    uint32_t gateway;
    /* IPv6 (optional): the network's /64 and its gateway prefix::1. */
    bool has_v6;
    struct in6_addr prefix6; /* host bits zero */
    struct in6_addr gateway6;
    unsigned mtu;            /* guest MTU; bridge and VXLAN use it too */
    char bridge[IFNAMSIZ];   /* fogbr<id> */
    char vxlan[IFNAMSIZ];    /* vxlan<id> */
    uint32_t *vteps;         /* owned: remote mesh addresses */
    size_t n_vteps;
    struct nf_mac *macs;     /* owned: VM MACs on remote nodes */
    size_t n_macs;
    char *dns_label;         /* owned; NULL: the network serves no names */
    struct nf_record *records; /* owned: VM names of the network */
    size_t n_records;
};

/* A VM's NIC on this node: its tap passes only this MAC and address and,
 * when it has IPv6, that address and its link-local one (EUI-64 of the
 * MAC). */
struct nf_vmport {
    char tap[IFNAMSIZ];
    char bridge[IFNAMSIZ];
    uint8_t mac[6];
    uint32_t addr;
    bool has_addr6;          /* only inside its network's /64 */
    struct in6_addr addr6;
    struct in6_addr link_local;
};

struct nf_publish {
    int proto;          /* IPPROTO_TCP or IPPROTO_UDP */
    uint16_t host_port;
    uint16_t vm_port;
    uint32_t vm_addr;
    bool has_vm_addr6;  /* the IPv6 address of the NIC holding vm_addr */
    struct in6_addr vm_addr6;
};

struct nf_state {
    /* Mesh; has_mesh false = the controller has not given us an address. */
    bool has_mesh;
    char mesh_ifname[IFNAMSIZ]; /* default NF_MESH_IFNAME */
    uint32_t mesh_addr;
    int mesh_prefix;
    uint16_t listen_port;
    struct nf_peer *peers;
    size_t n_peers;
    struct nf_network *networks;
    size_t n_networks;
    struct nf_vmport *vmports;
    size_t n_vmports;
    struct nf_publish *published;
    size_t n_published;
    /* Filled by the agent, not the document: the mesh private key (it
     * never leaves the node), the node's public address for DNAT (0, or
     * one the host does not hold such as its NAT router's: any local
     * address), the underlay MTU (0 = 1500), where wireguard-go
     * lives and the private ranges the provider lets VMs reach (borrowed,
     * not freed by nf_state_clear). */
    bool has_private_key;
    uint8_t private_key[WGKEY_LEN];
    uint32_t public_addr;
    /* The node's global IPv6 address (has_public_addr6): published ports
     * answer there too and VMs' IPv6 egress is masqueraded to the
     * internet; without one, IPv6 stays inside the tenant networks. */
    bool has_public_addr6;
    struct in6_addr public_addr6;
    unsigned underlay_mtu;
    const char *uapi_dir;     /* NULL = /var/run/wireguard */
    const char *wireguard_go; /* NULL = "wireguard-go" from PATH */
    const char *proc_root;    /* NULL = "/" (tests point it elsewhere) */
    const struct ipam_cidr *egress_allow;
    size_t n_egress_allow;
    /* Resolvers (netfabric/resolver.h), also borrowed: the folder they
     * live in (NULL: none run), dnsmasq (NULL: RESOLVER_DNSMASQ), the
     * user it drops to (NULL: its own default when started as root) and
     * the upstream resolv.conf (NULL: /etc/resolv.conf; "": none). */
    const char *dns_dir;
    const char *dnsmasq;
    const char *dns_user;
    const char *resolv_conf;
};

/* Parse the controller's desired document (the object with "mesh",
 * "peers", "networks", "ports", "vms") into *ret, zeroed first; the caller
 * frees it with nf_state_clear. mesh_ifname NULL = NF_MESH_IFNAME. Every
 * field is checked: 0, or -EINVAL with *ret_error (caller frees) naming the
 * offending member. */
int netfabric_state_from_json(const json_t *doc, const char *mesh_ifname,
                              struct nf_state *ret, char **ret_error);
void nf_state_clear(struct nf_state *s);

/* Interface name of a VM's NIC tap, derived from its id and NIC index so
 * the domain XML and the firewall agree: "fogt" + 8 hex digits + index.
 * -EINVAL when the id has too few hex digits or idx > 99. */
int netfabric_tap_name(const char *vm_id, unsigned idx, char out[IFNAMSIZ]);
/* Bridge and VXLAN names of a network: fogbr<id>, vxlan<id>. */
void netfabric_bridge_name(uint32_t vxlan_id, char out[IFNAMSIZ]);
void netfabric_vxlan_name(uint32_t vxlan_id, char out[IFNAMSIZ]);
/* The EUI-64 link-local address (fe80::/64) of a MAC. */
void netfabric_link_local(const uint8_t mac[6], struct in6_addr *ret);
