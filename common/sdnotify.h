/* systemd's service notification protocol (sd_notify(3)), spoken by the
 * daemons under a Type=notify unit: a datagram of "KEY=value" lines to
 * the socket named by $NOTIFY_SOCKET. Done here rather than through
 * libsystemd, which with the libraries it loads (gcrypt, lz4, libcap)
 * cost every agent about 0.8 MiB resident for two calls. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Send `state` (e.g. "READY=1") to $NOTIFY_SOCKET, a path or, starting
 * with '@', an abstract address. 1 when sent, 0 when the variable is
 * unset (not run by systemd), -errno when it could not be sent. */
int sdnotify(const char *state);
/* sdnotify of a printf-formatted state. */
int sdnotifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Whether systemd watches this process (WatchdogSec=): $WATCHDOG_USEC
 * set to a positive number and $WATCHDOG_PID, when set, naming this
 * process; then its interval in *ret_usec. */
bool sdnotify_watchdog(uint64_t *ret_usec);
