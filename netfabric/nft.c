/* nftables through its command-line program, as libvirt and Incus drive
 * it: the script on its standard input, its output and messages read back
 * from memory files once it has exited, so neither side can block the
 * other on a full pipe. libnftables in-process cost each agent about
 * 1.1 MiB resident (it, libnftnl, libxtables and libmnl) for a few
 * applies; a run of nft costs about 2 ms of CPU more than the library's,
 * next to the 13-14 ms the kernel takes to commit the transaction. */
#include "netfabric/nft.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Where nft is looked for when PATH (a service's, a test's) lacks it. */
static const char *const NFT_FALLBACK[] = { "/usr/sbin/nft", "/sbin/nft" };
/* The most of nft's output or messages kept ("list ruleset" on a busy
 * host is some hundreds of KiB). */
#define NFT_OUTPUT_MAX (16u << 20)

static int memfd_with(const char *name, const char *text)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = text ? strlen(text) : 0, off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = -errno;
            close(fd);
            return e;
        }
        off += (size_t)w;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* What nft wrote to fd, NUL-terminated (caller frees). */
static char *memfd_text(int fd)
{
    struct stat st;
    size_t len = fstat(fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size : 0;
    if (len > NFT_OUTPUT_MAX)
        len = NFT_OUTPUT_MAX;
    char *s = xmalloc(len + 1);
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, s + got, len - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    s[got] = '\0';
    return s;
}

static int spawn_nft(pid_t *pid, posix_spawn_file_actions_t *fa,
                     char *const argv[])
{
    int r = posix_spawnp(pid, "nft", fa, NULL, argv, environ);
    for (size_t i = 0; r == ENOENT && i < ARRAY_SIZE(NFT_FALLBACK); i++)
        r = posix_spawn(pid, NFT_FALLBACK[i], fa, NULL, argv, environ);
    return -r;
}

/* Run nft with the script on its standard input, in the calling thread's
 * network namespace (a child starts in it). 0 when it exited 0; -EINVAL
 * when it did not, its messages in *ret_error; -errno when it could not
 * run. Its standard output in *ret_output when asked for. */
static int nft_run(const char *script, bool dry_run, char **ret_output,
                   char **ret_error)
{
    _cleanup_close_ int in = memfd_with("nft-script", script);
    _cleanup_close_ int out = memfd_create("nft-output", MFD_CLOEXEC);
    _cleanup_close_ int err = memfd_create("nft-error", MFD_CLOEXEC);
    if (in < 0)
        return in;
    if (out < 0 || err < 0)
        return -errno;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, out, 1);
    posix_spawn_file_actions_adddup2(&fa, err, 2);
    char *argv[] = { "nft", dry_run ? "-c" : "-f", dry_run ? "-f" : "-",
                     dry_run ? "-" : NULL, NULL };
    pid_t pid;
    int r = spawn_nft(&pid, &fa, argv);
    posix_spawn_file_actions_destroy(&fa);
    if (r < 0) {
        if (ret_error)
            *ret_error = xasprintf("cannot run nft: %s", strerror(-r));
        return r;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        if (ret_output)
            *ret_output = memfd_text(out);
        return 0;
    }
    if (ret_error) {
        char *e = memfd_text(err);
        if (*e) {
            *ret_error = e;
        } else {
            free(e);
            *ret_error = WIFSIGNALED(status)
                ? xasprintf("nft killed by signal %d", WTERMSIG(status))
                : xasprintf("nft exited %d", WEXITSTATUS(status));
        }
    }
    return -EINVAL;
}

int nft_apply(const char *script, bool dry_run, char **ret_error)
{
    return nft_run(script, dry_run, NULL, ret_error);
}

int nft_query(const char *cmd, char **ret_output, char **ret_error)
{
    _cleanup_free_ char *err = NULL;
    int r = nft_run(cmd, false, ret_output, &err);
    if (r == -EINVAL && strstr(err, "No such file"))
        r = -ENOENT;
    if (r < 0 && ret_error)
        *ret_error = TAKE_PTR(err);
    return r;
}
