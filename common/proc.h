/* Running a helper program to its end. */
#pragma once

#include <stdbool.h>

/* Run argv[0] (searched in PATH unless it holds a slash) with argv, stdin
 * from /dev/null and, when `quiet`, stdout and stderr to /dev/null, and
 * wait for it. 0 when it exited 0, -EIO when it failed or was killed,
 * -errno when it could not be started. For daemons that fork and exit
 * once they serve (dnsmasq, wireguard-go). */
int spawn_wait(char *const argv[], bool quiet);
