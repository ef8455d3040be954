/* Unit tests for common/sdnotify: the state reaches a path socket and an
 * abstract one ('@'), nothing is sent without $NOTIFY_SOCKET, a bad
 * address is refused, and the watchdog is on only for a positive
 * $WATCHDOG_USEC meant for this process. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/sdnotify.h"
#include "common/util.h"
#include "tests/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A datagram socket bound at sa (path or abstract of name_len bytes). */
static int listener(struct sockaddr_un *sa, socklen_t len)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)sa, len), 0);
    return fd;
}

/* The next datagram on fd, waited for at most a second. */
static char *next_state(int fd)
{
    struct timeval tv = { .tv_sec = 1 };
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    return xstrdup(buf);
}

static void the_state_reaches_a_path_socket(void **state)
{
    _cleanup_free_ char *dir = tu_tempdir("sdnotify");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", dir);
    _cleanup_close_ int fd = listener(&sa, sizeof(sa));
    setenv("NOTIFY_SOCKET", sa.sun_path, 1);
    assert_int_equal(sdnotifyf("READY=1\nSTATUS=serving on port %d", 8443), 1);
    _cleanup_free_ char *got = next_state(fd);
    assert_string_equal(got, "READY=1\nSTATUS=serving on port 8443");
    unsetenv("NOTIFY_SOCKET");
    tu_rmrf(dir);
}

static void the_state_reaches_an_abstract_socket(void **state)
{
    char name[64];
    int len = snprintf(name, sizeof(name), "@fog-sdnotify-%d", (int)getpid());
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    memcpy(sa.sun_path + 1, name + 1, (size_t)len - 1);
    _cleanup_close_ int fd = listener(
        &sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)len));
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(sdnotify("WATCHDOG=1"), 1);
    _cleanup_free_ char *got = next_state(fd);
    assert_string_equal(got, "WATCHDOG=1");
    unsetenv("NOTIFY_SOCKET");
}

static void nothing_is_sent_without_a_socket_and_bad_ones_are_refused(void **state)
{
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(sdnotify("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(sdnotify("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "relative/notify", 1);
    assert_int_equal(sdnotify("READY=1"), -EAFNOSUPPORT);
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longpath, 1);
    assert_int_equal(sdnotify("READY=1"), -EINVAL);
    setenv("NOTIFY_SOCKET", "/nonexistent/fog-notify", 1);
    assert_true(sdnotify("READY=1") < 0);
    unsetenv("NOTIFY_SOCKET");
}

static void the_watchdog_is_on_only_for_this_process(void **state)
{
    uint64_t usec = 7;
    unsetenv("WATCHDOG_PID");
    unsetenv("WATCHDOG_USEC");
    assert_false(sdnotify_watchdog(&usec));
    const char *bad[] = { "", "0", "-5", "12x", "99999999999999999999" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        setenv("WATCHDOG_USEC", bad[i], 1);
        assert_false(sdnotify_watchdog(&usec));
    }
    assert_int_equal(usec, 7); /* untouched when off */
    setenv("WATCHDOG_USEC", "400000", 1);
    assert_true(sdnotify_watchdog(&usec));
    assert_int_equal(usec, 400000);
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    assert_true(sdnotify_watchdog(&usec));
    snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);
    assert_false(sdnotify_watchdog(&usec));
    setenv("WATCHDOG_PID", "nope", 1);
    assert_false(sdnotify_watchdog(&usec));
    unsetenv("WATCHDOG_PID");
    unsetenv("WATCHDOG_USEC");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_state_reaches_a_path_socket),
        cmocka_unit_test(the_state_reaches_an_abstract_socket),
        cmocka_unit_test(nothing_is_sent_without_a_socket_and_bad_ones_are_refused),
        cmocka_unit_test(the_watchdog_is_on_only_for_this_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
