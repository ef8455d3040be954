/* The per-network resolver on a node: one dnsmasq per tenant bridge,
 * bound only to that network's gateway address, answering the network's
 * VM names (NAME and NAME.LABEL.internal) from a hosts file this module
 * writes, and forwarding other names upstream. */
#pragma once

#include "common/buf.h"
#include "netfabric/state.h"

#define RESOLVER_DNSMASQ "/usr/sbin/dnsmasq"
/* Append network n's hosts file to out: one line "ADDR NAME
 * NAME.LABEL.internal" per record (NAME alone without a label), in the
 * document's order. A record whose name is not a label (net_dns_label_ok)
 * or whose address lies outside the network is left out, so nothing a
 * name holds can add a line or a name. Returns the number left out. */
size_t resolver_hosts_render(const struct nf_network *n, struct buf *out);

/* Append dnsmasq's arguments for network n (NUL-separated, argv[0]
 * first) to out: no configuration file, no /etc/hosts, no DHCP, bound
 * only to the gateway address (never lo), names under .internal never
 * forwarded, the hosts file and pid file in dir, upstream servers from
 * s->resolv_conf (NULL: /etc/resolv.conf; "": none), run as s->dns_user
 * when given. Returns the number of arguments. */
size_t resolver_argv_render(const struct nf_state *s, const struct nf_network *n,
                            const char *dir, struct buf *out);

/* Make the resolvers under s->dns_dir match s: for each network with a
 * DNS label, DIR/BRIDGE/ holds its hosts file (replaced atomically) and a
 * live dnsmasq, started when missing or dead, restarted when its
 * arguments changed and sent SIGHUP when only its names changed; the
 * resolvers of networks not in s are stopped and their folders removed.
 * Nothing when s->dns_dir is NULL. Every network is attempted; 0 or the
 * first -errno. */
int resolver_sync(const struct nf_state *s);

/* Stop every resolver under s->dns_dir. 0 or the first -errno. */
int resolver_stop_all(const struct nf_state *s);

/* The pid of the live dnsmasq serving bridge under s->dns_dir, or 0. */
pid_t resolver_pid(const struct nf_state *s, const char *bridge);
