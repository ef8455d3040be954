/* The whole desired state of one node, as the agent receives it: its VMs
 * with their interfaces, the tenant networks it must carry (with the mesh
 * addresses of the other nodes carrying them), published ports and its
 * WireGuard peers. Whole documents, or whole but for the VMs a change
 * left alone (the cache reuses those from the document it holds). */
#pragma once

#include "api/agentproto.h"
#include "controller/app.h"

/* Build node_id's document at its current revision, reading every part in
 * one store transaction (a consistent snapshot); for a node whose agent
 * speaks AGENT_CONTRACT_NET_VMS, with its networks' VMs under
 * AGENT_NET_VMS. *ret_doc (new reference)
 * is written only when the whole document was built: 0, -ENOENT (no such
 * node, or removed), -EIO (a store error) or -EINVAL (a row that cannot
 * be formatted). Never a partial document. */
int desired_build(struct app *a, const char *node_id, json_t **ret_doc);
/* What a document cut into parts (api/desired_delta.h) says of its
 * networks' VMs outside the document itself: made once for every node
 * of a network, not as JSON for each. */
struct desired_run;
struct desired_cut {
    /* The "networks" member as JSON text, left out of the document; NULL
     * when the document holds it. */
    char *networks;
    /* The node's agent takes AGENT_NET_VMS: the list, a run per network
     * (its entries then name no MACs and no records). */
    bool net_vms;
    struct desired_run **runs;
    size_t n_runs;
};

/* desired_build() for a document cut into parts: every VM, or with
 * vm_ids only those of them (n_vm_ids) still on the node, in the order
 * of vm_ids; every other member whole, but what *ret_cut says instead
 * (desired_cut_clear() it). */
int desired_build_cut(struct app *a, const char *node_id,
                      const char *const *vm_ids, size_t n_vm_ids,
                      json_t **ret_doc, struct desired_cut *ret_cut);
void desired_cut_clear(struct desired_cut *c);
/* doc, a cut's document, made whole with what c says outside it: the
 * whole document the node's agent is sent. */
void desired_cut_join(json_t *doc, const struct desired_cut *c);
/* The document of a node an admin has not approved yet: its revision and
 * nothing else (no mesh, peers, VMs, networks or ports), with "approved":
 * false. New reference. */
json_t *desired_build_unapproved(const char *node_id, int64_t revision);

/* Test seam, compiled in always: whether FOG_TEST_DESIRED_VERIFY is set,
 * under which every document built from parts kept in memory (the one
 * before, a network's records) is checked against the store read whole,
 * and the controller aborts when they differ. One getenv, then cached. */
bool desired_verify(void);

/* The DNS label of a tenant (AGENT_NET_DNS_LABEL), from its account name:
 * ASCII letters lowercased, letters and digits kept, every run of other
 * bytes one '-' between them (none leading or trailing), cut to
 * AGENT_DNS_LABEL_MAX bytes; "tenant" when nothing is left. Two accounts
 * may share a label: each network's resolver answers only its own
 * network's names, so a shared label crosses nothing. */
void desired_dns_label(const char *account_name,
                       char out[AGENT_DNS_LABEL_MAX + 1]);

/* MTU of a guest NIC on a 1500-byte underlay: WireGuard (60) and VXLAN
 * (50) overheads and 20 bytes of margin for an IPv4 path (FACTS.md). */
#define DESIRED_GUEST_MTU 1370

/* The WireGuard endpoint peers are given for the node in `row` (a nodes
 * row with endpoint, observed_endpoint, wg_port, mapped_endpoint and
 * nat_class): "IP:PORT", owned by the caller, or NULL when none is
 * known. The probe's mapping where the node's NAT keeps one mapping for
 * every destination (or it has none), else the configured endpoint, else
 * the mapping, else the address its API connection came from. */
char *desired_peer_endpoint(const json_t *row);

/* Whether two nodes (rows with their nat_class, NULL: never reported, as
 * unknown, and agent_contract) reach each other through the hub's relay:
 * only while this controller relays, only when both agents speak
 * AGENT_CONTRACT_RELAY or later (an older one never registers there), and
 * by relay_path_needed() (docs/operations.md). */
bool desired_peer_relayed(const struct app *a, const json_t *node_a,
                          const json_t *node_b);
