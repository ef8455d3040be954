/* Helpers shared by test binaries: temp dirs, spawning our daemons on
 * ephemeral ports, and waiting for them. Not linked into the product. */
#pragma once

#include "common/util.h"

#include <sys/types.h>

/* mkdtemp under $TMPDIR (or /tmp); caller frees; aborts on failure. */
char *tu_tempdir(const char *tag);
/* rm -rf a directory tree made by a test. */
void tu_rmrf(const char *path);
/* Path of a built binary: $O/../bin/NAME resolved from the repo root. */
char *tu_bin(const char *name);
/* A free TCP port on 127.0.0.1 (bound then released). */
int tu_free_port(void);
/* Spawn argv with stdout+stderr to logfile; returns pid or -errno. */
pid_t tu_spawn(char *const argv[], const char *logfile);
/* Run argv to completion capturing stdout (caller frees). Exit status in
 * *ret_status (-1 if killed). stdin from /dev/null. */
char *tu_run(char *const argv[], int *ret_status);
/* Send sig and reap. */
void tu_kill(pid_t pid, int sig);
/* Wait until a TCP connect to 127.0.0.1:port succeeds. 0 or -ETIMEDOUT. */
int tu_wait_port(int port, int timeout_ms);
