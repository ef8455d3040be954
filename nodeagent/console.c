/* Console log tails for status posts. */
#include "nodeagent/console.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

int console_tail(const char *path, size_t max_escaped, size_t max_raw,
                 char **ret_text, off_t *ret_size, int64_t *ret_mtime_ns)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    size_t want = max_raw + 8;
    off_t from = st.st_size > (off_t)want ? st.st_size - (off_t)want : 0;
    size_t cap = (size_t)(st.st_size - from);
    _cleanup_free_ char *data = xmalloc(cap + 1);
    size_t got = 0;
    while (got < cap) {
        ssize_t n = pread(fd, data + got, cap - got, from + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    *ret_text = console_sanitize(data, got, max_escaped, max_raw);
    *ret_size = st.st_size;
    *ret_mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return 0;
}
