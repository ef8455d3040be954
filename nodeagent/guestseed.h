/* Each VM's guest configuration on the node: the cloud-init NoCloud seed
 * (DATA-DIR/seeds/<vm-id>.iso) rendered from its desired entry and
 * rewritten only when what it says changes. */
#pragma once

#include "common/util.h"

#include <jansson.h>

/* DATA-DIR/seeds/<vm-id>.iso; caller frees. */
char *guestseed_path(const char *data_dir, const char *vm_id);

/* Make the seed of desired VM `vm` (hostname, user_data, ssh_keys, nics)
 * present and current; gateway_dns: the node runs a resolver on each
 * tenant gateway, the guest's default (cloudinit_render's gateway_dns). `known` holds the digest of the seed last written
 * ("" when unknown) and is updated; the file is rewritten only when the
 * digest differs or the file is missing. 0, or -errno with *ret_err
 * (caller frees): -EINVAL when the entry cannot be rendered. */
int guestseed_ensure(const char *data_dir, const json_t *vm, bool gateway_dns,
                     char known[65], char **ret_err);
