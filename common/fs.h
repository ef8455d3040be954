/* File helpers: bounded reads, atomic writes with a mode, mkdir -p. */
#pragma once

#include "common/util.h"

#include <sys/types.h>

/* Read a whole file of at most max bytes into a NUL-terminated buffer the
 * caller frees. 0, -EFBIG when larger, or -errno. */
int file_read(const char *path, size_t max, char **ret_data, size_t *ret_len);
/* Write via a temp file + fsync + rename, created with `mode`. 0 or -errno. */
int file_write_atomic(const char *path, const void *data, size_t len,
                      mode_t mode);
/* Create a directory and its parents. 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);
/* Make a directory tree its owner's alone: dir and every directory below
 * it 0700, group and other bits off every regular file. Symbolic links
 * are neither followed nor changed. 0 or -errno. */
int fs_make_private(const char *dir);
/* Join a root prefix and an absolute path ("" or NULL root = as is). */
char *path_join_root(const char *root, const char *path);
/* Read up to n bytes from fd, short only at its end (EINTR retried). The
 * count read, or -errno. */
ssize_t fd_read_full(int fd, void *buf, size_t n);
/* Write all n bytes to fd (EINTR retried). 0 or -errno. */
int fd_write_full(int fd, const void *buf, size_t n);
/* Test seam, compiled in always: true while the file named by environment
 * variable `env` exists and holds `step` (its first word) or nothing (every
 * step). The callers make the step fail as the real fault would. Costs one
 * getenv when unarmed. */
bool fs_test_fault(const char *env, const char *step);
