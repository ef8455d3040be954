/* The records of a tenant network (each placed, undeleted VM's name,
 * address and MAC in it, and its node): what every node's document says
 * of the network's VMs (its DNS names, the other nodes' MACs), held in
 * memory per network and shared by the builds of every node carrying it:
 * read whole once, then brought forward by the VMs the store's DNS log
 * names since (schema 048), not read again for each node of the network
 * at each change in it. */
#pragma once

#include "api/agentmsg.h"
#include "controller/store.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One record. Read-only once made; shared by reference between the sets
 * that hold it. */
struct netrec {
    int refs; /* atomic */
    const char *vm_id, *name, *address; /* in text[] */
    const char *mac, *node_id;          /* in text[]: the NIC's, its VM's */
    const char *address6; /* in text[]; NULL: none (netalloc_address6) */
    char text[];
};

/* A network's records at one DNS revision, in (name, address) order, as
 * bytes compare. Read-only; shared by reference. */
struct netrec_set {
    int refs; /* atomic */
    int64_t rev;
    /* What netrecords_texts() made of the set, for every node's build. */
    pthread_mutex_t texts_lock;
    struct netrec_texts *texts; /* under texts_lock; NULL: none yet */
    char *cidr6, *cidr4; /* the network's, that address6 was made in */
    struct netrec **by_node; /* recs in (node_id, mac) order */
    const char **nodes;      /* each node_id of recs once, in order */
    size_t n_nodes;
    size_t n;
    struct netrec *recs[];
};

/* VM vm_id's records may have changed in each network it has a NIC in
 * (placed, taken off its node, deleted): every such network's dns_rev
 * moves on, and its log names the VM at the new revision. Inside the
 * change's transaction, before the VM's NICs are removed. 0 or -errno. */
int netrecords_vm_changed(struct store *s, const char *vm_id);
/* The same for every VM of vm_ids (a JSON array of VM ids, as text),
 * each network moving on once. sqlite only (batched placement). */
int netrecords_vms_changed(struct store *s, const char *vm_ids);

/* Network network_id's records at revision dns_rev, the network's
 * dns_rev as the caller's read transaction sees it, with its cidr6 (may
 * be NULL) and cidr4 (each record's address6 is made in them): the set
 * held when it is at that revision, else the one held brought forward
 * through the log, else read whole; with `fresh`, read whole always (a
 * whole document's build: what heals a drift). Kept when the transaction
 * has written nothing (store_reads_committed()), a set read whole in
 * place of one held at its revision. 0 and *ret (a new reference:
 * netrec_set_unref()), or -errno of the store. */
int netrecords_get(struct store *s, const char *network_id, int64_t dns_rev,
                   const char *cidr6, const char *cidr4, bool fresh,
                   struct netrec_set **ret);
/* The other nodes' part of the network, from its records: w's VTEPs (the
 * mesh address of each node but node_id holding a VM of it, removed
 * nodes and those without one left out) in text order, and w's MACs (each
 * such VM's, with its node's VTEP) in (VTEP, MAC) order. Inside the
 * caller's read transaction, as netrecords_get(). 0 or -errno of the
 * store (w then holds nothing new). */
int netrecords_remote(struct store *s, const struct netrec_set *set,
                      const char *node_id, struct am_network *w);
/* netrecords_remote() and the first AGENT_NET_RECORDS_MAX records as
 * node_id's document writes them: w's VTEPs, and JSON text owned by the
 * caller of the network's "macs" array (*ret_macs) and "records" array
 * (*ret_records; NULL when the network has no records). Both texts are
 * made once per set (the MACs again when a node's VTEP changed) and
 * shared by every node's build: a node's MACs are the set's with its
 * own cut out, no JSON made per node. 0 or -errno of the store, as
 * netrecords_remote(). */
int netrecords_texts(struct store *s, struct netrec_set *set,
                     const char *node_id, struct am_network *w,
                     char **ret_macs, char **ret_records);
/* For a node whose agent takes AGENT_NET_VMS: w's VTEPs, as
 * netrecords_texts(), and *ret (a new reference) the set's records as
 * the items of network vxlan_id, each at its node's VTEP: made once per
 * set and VTEPs and shared by every node's document, its key the VXLAN
 * id in eight digits. 0 or -errno of the store. */
struct desired_run;
int netrecords_run(struct store *s, struct netrec_set *set, int64_t vxlan_id,
                   const char *node_id, struct am_network *w,
                   struct desired_run **ret);
/* The set held for network_id when it is at revision dns_rev (a new
 * reference), else NULL; reads nothing. Inside a write transaction that
 * has not yet changed the network (its dns_rev as read there), the set
 * held at that revision is what the store holds. */
struct netrec_set *netrecords_held(const char *network_id, int64_t dns_rev);
/* Accepts NULL. */
void netrec_set_unref(struct netrec_set *set);
