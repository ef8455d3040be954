/* The kernel side of wg.h: WireGuard's generic netlink family. Message
 * building and parsing are exported so their bytes can be tested where
 * the module is missing. */
#pragma once

#include "netfabric/wg.h"

#include <netlink/msg.h>

/* Build the WG_CMD_SET_DEVICE messages for d, addressed to generic netlink
 * family id `family`, each at most max_size bytes. A config too big for one
 * message is split: device attributes and the replace-peers flag only in
 * the first; a peer whose allowed IPs overflow continues in the next
 * message with only its public key and the remaining IPs. Nested entries
 * carry NLA_F_NESTED. *ret_msgs (owned; wg_genl_msgs_free) gets *ret_n
 * messages. 0, -EINVAL for a bad config, -EMSGSIZE when one peer's header
 * cannot fit in max_size. */
int wg_genl_build_set(const struct wg_device *d, int family, size_t max_size,
                      struct nl_msg ***ret_msgs, size_t *ret_n);
void wg_genl_msgs_free(struct nl_msg **msgs, size_t n);

/* Parse one WireGuard generic netlink message (a GET_DEVICE dump part or a
 * SET_DEVICE request) into acc, merging a peer that repeats the previous
 * peer's public key (a split peer). 0 or -EBADMSG. */
int wg_genl_parse(const struct nlmsghdr *nlh, struct wg_device *acc);
