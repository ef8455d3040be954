/* Files the controller writes for a server beside it (HAProxy's edge
 * configuration, the public DNS zone): written atomically only when the
 * text changed since the last write, then the operator's reload command. */
#pragma once

#include <pthread.h>
#include <stdbool.h>

/* What was last written to one file; static, zero-initialised but for
 * the lock (CFGWRITE_INIT). */
struct cfgwrite {
    pthread_mutex_t lock;
    char *last;     /* the text last written, NULL before the first */
    int last_error; /* the last write's -errno, so a failure is said once */
};
#define CFGWRITE_INIT { PTHREAD_MUTEX_INITIALIZER, NULL, 0 }

/* Write *text (taken: set to NULL) to path (temp file + rename, 0644)
 * unless it equals what w last wrote, then run `reload` (a shell command
 * of the operator's; NULL or "": none). `what` names the file in the
 * log. 1 when written, 0 unchanged, -errno. */
int cfgwrite_sync(struct cfgwrite *w, const char *path, char **text,
                  const char *reload, const char *what);
