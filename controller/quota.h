/* Per-tenant quotas: how many networks, VMs, published ports, images, SSH
 * keys and API keys an account may hold. Defaults are controller
 * settings; an admin may set other limits for one account. Admin accounts
 * have none. Checks run inside the creating transaction, so parallel
 * creates cannot overshoot. */
#pragma once

#include "controller/app.h"

enum quota_kind {
    QUOTA_NETWORKS,
    QUOTA_VMS,
    QUOTA_PORTS,
    QUOTA_IMAGES,
    QUOTA_SSH_KEYS,
    QUOTA_API_KEYS,
    QUOTA_MAX
};

/* "networks", "vms", "ports", "images", "ssh_keys", "api_keys". */
const char *quota_name(enum quota_kind k);

/* Inside the caller's transaction: may account_id hold `adding` more of
 * kind? 0 when it may; -EDQUOT after answering 403 quota-exceeded (naming
 * the quota, its limit and the use), -EIO after answering 500. Locks the
 * account's row first so creates on other replicas wait their turn. */
int quota_check(struct app *a, struct http_request *r, const char *account_id,
                enum quota_kind k, int64_t adding);

/* Begin a transaction and quota_check in it: 0 with the transaction open,
 * or -errno after answering (and rolling back). */
int quota_tx_begin(struct app *a, struct http_request *r,
                   const char *account_id, enum quota_kind k, int64_t adding);

/* {"account_id", "quotas": {kind: {"limit", "used", "default"}}} of an
 * account (new reference), or NULL on a store error. limit -1: none. */
json_t *quota_render(struct app *a, const char *account_id);

/* Set (limit >= -1) or drop (reset: back to the default) one account's
 * limit for kind. 0 or -EIO. */
int quota_set(struct app *a, const char *account_id, enum quota_kind k,
              int64_t limit, bool reset);
