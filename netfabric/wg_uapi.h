/* The wireguard-go side of wg.h: the cross-platform UAPI text protocol
 * over /var/run/wireguard/IFNAME.sock. The text builders and parser are
 * exported so they can be tested without a daemon. */
#pragma once

#include "netfabric/wg.h"

/* The "set=1" request for d, ending with the blank line. d must pass
 * wg_device_validate. 0 or -EINVAL. */
int wg_uapi_format_set(const struct wg_device *d, struct buf *out);
/* Parse a "get=1" reply (key=value lines up to errno=N) into *ret, which
 * is cleared first and owned by the caller. A non-zero errno in the reply
 * gives -EIO (wireguard-go sends negative values); malformed text -EBADMSG. */
int wg_uapi_parse_get(const char *text, struct wg_device *ret);
/* The errno=N value of a "set" reply: 0, -EIO when non-zero, -EBADMSG
 * when absent. */
int wg_uapi_parse_set_reply(const char *text);
/* Socket path for an interface; caller frees. */
char *wg_uapi_socket_path(const struct wg_opts *o, const char *ifname);
