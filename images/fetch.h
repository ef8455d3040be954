/* The image cache: content fetched with libcurl into DIR/<sha256>,
 * resumed from DIR/<sha256>.part after an interruption, SHA-256 checked
 * before it gets its final name, least recently used files evicted under a
 * byte budget, and one download per digest however many callers want it
 * at once. Thread-safe. */
#pragma once

#include "common/util.h"

struct addrpolicy;
struct fetch_cache;

/* Decides whether a cached digest is in use (a VM disk sits on it) and so
 * must not be evicted. */
typedef bool (*fetch_in_use_fn)(const char *sha256, void *data);

struct fetch_opts {
    const char *dir;          /* created if missing */
    uint64_t budget_bytes;    /* 0: no eviction */
    const char *ca_file;      /* PEM to verify https (NULL: system store) */
    const char *key_pin;      /* "sha256//..." the server's key must have
                                 (NULL: the CA check alone) */
    const char *bearer;       /* Authorization: Bearer ... (NULL: none) */
    uint64_t max_bytes;       /* largest download accepted when the size
                                 is not known in advance (0: no limit) */
    unsigned attempts;        /* tries per fetch, resuming (default 5) */
    long stall_timeout_s;     /* give up an attempt after this long without
                                 a byte (default 30) */
    fetch_in_use_fn in_use;   /* may be NULL; called with the cache's
                                 lock held: must not call into it */
    void *in_use_data;
    const volatile int *cancel; /* when it becomes nonzero, transfers stop
                                   with -ECANCELED (may be NULL) */
    const struct addrpolicy *policy; /* judges every address connected to,
                                        redirects included, and turns off
                                        proxies (NULL: any address). Not
                                        copied: must outlive the cache */
    bool page_cache;          /* write through the page cache (default:
                                 O_DIRECT where the file system takes it, so
                                 an image does not push out the page cache
                                 the host's VMs use) */
};

/* Open (creating) a cache. Copies the strings in opts. NULL with
 * *ret_reason (caller frees) when the directory cannot be made. */
struct fetch_cache *fetch_cache_new(const struct fetch_opts *opts,
                                    char **ret_reason);
/* Accepts NULL. Waits for nothing: call it when no fetch runs. */
void fetch_cache_free(struct fetch_cache *c);

/* Make the content with digest `sha256` (64 lowercase hex) present and
 * return its path (caller frees). Downloads `url` when it is missing,
 * resuming a partial download; `size` is the expected length (0:
 * unknown) and bounds what is accepted. A hit marks the file as recently
 * used. Concurrent calls for one digest share one download.
 * 0 and *ret_path, or -errno with *ret_reason (caller frees):
 * -EBADMSG content did not match the digest or the size (the partial file
 * is discarded), -EIO transfer failed after every attempt, -ECANCELED
 * stopped by opts.cancel (the partial file stays for a later resume),
 * -EACCES opts.policy refused the address (no retry), -EINVAL bad
 * digest, other -errno from the file system. The reason is for operators:
 * it quotes libcurl and digests. */
int fetch_get(struct fetch_cache *c, const char *url, const char *sha256,
              uint64_t size, char **ret_path, char **ret_reason);

/* Path where `sha256` is (or would be) cached; caller frees. NULL for a
 * malformed digest. */
char *fetch_cache_path(struct fetch_cache *c, const char *sha256);
/* True when the digest is complete in the cache. */
bool fetch_cache_has(struct fetch_cache *c, const char *sha256);
/* Remove least recently used, unused entries until the cache is within
 * its budget (minus `reserve` bytes). Returns the bytes still used. */
uint64_t fetch_cache_evict(struct fetch_cache *c, uint64_t reserve);
/* Bytes of complete entries in the cache. */
uint64_t fetch_cache_usage(struct fetch_cache *c);

/* Counters (since the cache was opened), for tests and metrics. */
struct fetch_stats {
    uint64_t downloads;       /* transfers started (attempts) */
    uint64_t resumed;         /* attempts that continued a .part */
    uint64_t bytes;           /* body bytes received */
    uint64_t hits;            /* fetch_get answered from the cache */
    uint64_t evicted;         /* entries removed */
    uint64_t mismatches;      /* digests that did not match */
};
void fetch_cache_stats(struct fetch_cache *c, struct fetch_stats *ret);
