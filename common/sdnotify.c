#include "common/sdnotify.h"

#include "common/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sdnotify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len = strlen(path);
    if (path[0] != '/' && path[0] != '@')
        return -EAFNOSUPPORT;
    if (len > sizeof(sa.sun_path) || (path[0] == '/' && len == sizeof(sa.sun_path)))
        return -EINVAL;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    /* An abstract address is as long as its name, no terminating NUL. */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                                  (path[0] == '/'));
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
               salen) < 0)
        return -errno;
    return 1;
}

int sdnotifyf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *state = NULL;
    int r = vasprintf(&state, fmt, ap);
    va_end(ap);
    if (r < 0)
        return -ENOMEM;
    return sdnotify(state);
}

bool sdnotify_watchdog(uint64_t *ret_usec)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    int64_t u, p;
    if (!usec || parse_int64(usec, 1, INT64_MAX, &u) < 0)
        return false;
    if (pid && (parse_int64(pid, 1, INT32_MAX, &p) < 0 || p != (int64_t)getpid()))
        return false;
    *ret_usec = (uint64_t)u;
    return true;
}
