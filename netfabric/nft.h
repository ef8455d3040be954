/* Applying nftables text through the nft program, in one transaction per
 * call, in the calling thread's network namespace. */
#pragma once

#include "common/util.h"

/* Run a script (several commands) as one transaction; with dry_run only
 * check it (`nft -c`). 0; -EINVAL with nft's messages in *ret_error
 * (caller frees; may be NULL); -errno with the reason in *ret_error when
 * nft could not be run. */
int nft_apply(const char *script, bool dry_run, char **ret_error);

/* Run one command that prints (e.g. "list table inet fogfabric") and hand
 * back its output (caller frees). 0, or -ENOENT/-EINVAL with *ret_error. */
int nft_query(const char *cmd, char **ret_output, char **ret_error);
