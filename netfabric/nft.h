/* Applying nftables text through libnftables, in one transaction per
 * call, in the current network namespace. */
#pragma once

#include "common/util.h"

/* Run a script (several commands) as one transaction; with dry_run only
 * check it (as `nft -c`). 0, or -EINVAL with the messages of libnftables
 * in *ret_error (caller frees; may be NULL). */
int nft_apply(const char *script, bool dry_run, char **ret_error);

/* Run one command that prints (e.g. "list table inet fogfabric") and hand
 * back its output (caller frees). 0, or -ENOENT/-EINVAL with *ret_error. */
int nft_query(const char *cmd, char **ret_output, char **ret_error);
