/* Guest configuration as cloud-init NoCloud: meta-data, user-data and
 * network-config (version 2) rendered from a VM's desired state, and the
 * `cidata` seed image holding them. */
#pragma once

#include "common/util.h"

#include <jansson.h>
#include <sys/types.h>

/* Resolvers of a VM whose network and hub name none and whose node runs
 * no resolver on its gateway (public ones, reached through the node's
 * egress like any internet address). */
#define CLOUDINIT_DEFAULT_DNS1 "1.1.1.1"
#define CLOUDINIT_DEFAULT_DNS2 "9.9.9.9"

#define CLOUDINIT_MAX_USER_DATA (64 * 1024)

struct cloudinit_docs {
    char *meta_data;
    char *user_data; /* may hold NUL bytes (gzip): use user_data_len */
    size_t user_data_len;
    char *network_config;
};

/* Render the three documents from a VM object of the desired state:
 *   id (string), name (hostname, name rule), user_data (string or null) or
 *   user_data_base64 (any bytes, e.g. gzip), ssh_keys (array of one-line
 *   strings), nics (array of {mac, address, prefix, gateway?, mtu?, dns?,
 *   dns_search?}), dns (optional array of IPv4 resolvers: the hub's
 *   setting), gateway_dns (true when the node runs a resolver on each
 *   tenant gateway).
 * user-data is the tenant's document byte for byte (cloud-config YAML or
 * JSON, a `#!` script, MIME multipart, gzip...), or an empty
 * `#cloud-config` when there is none; at most max_user_data bytes (0: the
 * default). SSH keys go in meta-data `public-keys`: cloud-init installs
 * them at the instance's first boot only (the `ssh` module runs once per
 * instance), so key changes reach new VMs, not running ones.
 * Resolvers: the first NIC with a gateway gets the network's `dns`, else
 * the hub's `dns`, else with gateway_dns its gateway address and search
 * domain `dns_search` (the tenant's LABEL.internal), else public ones.
 * 0 and *ret (cloudinit_docs_clear it), or -EINVAL with *ret_reason
 * (caller frees). */
int cloudinit_render(const json_t *vm, size_t max_user_data,
                     struct cloudinit_docs *ret, char **ret_reason);
void cloudinit_docs_clear(struct cloudinit_docs *d);

/* Write the `cidata` ISO with meta-data, user-data and network-config at
 * `path`, atomically, created with `mode` (user-data may hold secrets:
 * 0600 unless the hypervisor needs more). 0 or -errno. */
int cloudinit_seed_write(const char *path, const struct cloudinit_docs *d,
                         mode_t mode);
