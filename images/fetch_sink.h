/* The write side of one download (images/fetch.c): the bytes received,
 * hashed with SHA-256 and written to the .part file by a thread beside
 * the transfer, from memory, with O_DIRECT where the file system takes it
 * (fewer copies, and the host's page cache left to its VMs). */
#pragma once

#include "common/ids.h"
#include "common/util.h"

struct fetch_sink;

/* Start on fd, the file, whose first `have` bytes are there already (the
 * thread reads them back and hashes them first), and dfd, the same file
 * opened O_DIRECT, or -1 to write through the page cache; the sink owns
 * dfd from here, even on failure. 0 and *ret, or -errno. */
int fetch_sink_new(int fd, int dfd, uint64_t have, struct fetch_sink **ret);
/* Copy len bytes in after those added so far, handing each buffer that
 * fills to the thread. 0, or -errno of a write that failed. */
int fetch_sink_add(struct fetch_sink *s, const void *data, size_t len);
/* Wait until everything added is in the file and hashed (a resume then
 * asks for the byte after it). 0 or -errno. */
int fetch_sink_sync(struct fetch_sink *s);
/* Drop what was added and truncate the file to nothing: hashing starts
 * over. 0 or -errno. */
int fetch_sink_reset(struct fetch_sink *s);
/* Stop after the buffers handed over (fetch_sink_sync first to have
 * everything written), put the SHA-256 of the file's content into digest
 * and free s. 0, or -errno of a read or write that failed (digest then
 * unset). */
int fetch_sink_finish(struct fetch_sink *s, uint8_t digest[SHA256_LEN]);
