/* Write-when-changed for the files of servers the controller drives
 * (controller/cfgwrite.h), checked each reconciler round. */
#include "controller/cfgwrite.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/proc.h"

#include <errno.h>
#include <string.h>

int cfgwrite_sync(struct cfgwrite *w, const char *path, char **text,
                  const char *reload, const char *what)
{
    _cleanup_free_ char *t = TAKE_PTR(*text);
    pthread_mutex_lock(&w->lock);
    if (w->last && streq(w->last, t)) {
        pthread_mutex_unlock(&w->lock);
        return 0;
    }
    int e = file_write_atomic(path, t, strlen(t), 0644);
    if (e < 0) {
        bool again = e == w->last_error;
        w->last_error = e;
        pthread_mutex_unlock(&w->lock);
        if (!again)
            log_error("cannot write the %s '%s': %s (retried each round)",
                      what, path, strerror(-e));
        return e;
    }
    w->last_error = 0;
    free(w->last);
    w->last = TAKE_PTR(t);
    pthread_mutex_unlock(&w->lock);
    log_info("%s written to %s", what, path);
    if (reload && *reload) {
        /* The operator's own command, never data of a request. */
        char *argv[] = { "/bin/sh", "-c", (char *)reload, NULL };
        if ((e = spawn_wait(argv, false)) < 0)
            log_warn("%s reload command failed (%s): the server may still "
                     "use the previous file", what, strerror(-e));
    }
    return 1;
}
