/* Both daemons speak systemd's notify protocol: READY=1 once serving (the
 * controller after it listens, the agent once libvirt answers) and
 * WATCHDOG=1 keepalives while WATCHDOG_USEC is set, as under a
 * Type=notify unit with WatchdogSec=. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/timeutil.h"
#include "tests/testutil.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

static struct tu_ctl ctl;
static char *tmp;
static int sock = -1;

/* Read datagrams until one holds `needle` or the deadline passes. */
static bool wait_notify(const char *needle)
{
    int64_t end = mono_ms() + 30000;
    char buf[4096];
    while (mono_ms() < end) {
        struct pollfd p = { .fd = sock, .events = POLLIN };
        if (poll(&p, 1, 200) <= 0)
            continue;
        ssize_t n = recv(sock, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        if (strstr(buf, needle))
            return true;
    }
    return false;
}

static int setup(void **state)
{
    tmp = tu_tempdir("pknotify");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", tmp);
    sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(sock >= 0);
    assert_int_equal(bind(sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
    /* Children inherit these, as from systemd. */
    setenv("NOTIFY_SOCKET", sa.sun_path, 1);
    setenv("WATCHDOG_USEC", "400000", 1);
    tu_ctl_start(&ctl, NULL);
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    if (sock >= 0)
        close(sock);
    if (tmp)
        tu_rmrf(tmp);
    free(tmp);
    return 0;
}

static void the_controller_notifies_ready_and_keeps_the_watchdog_fed(void **state)
{
    assert_true(wait_notify("READY=1"));
    assert_true(wait_notify("WATCHDOG=1"));
    assert_true(wait_notify("WATCHDOG=1"));
}

static void the_agent_notifies_ready_and_keeps_the_watchdog_fed(void **state)
{
    _cleanup_free_ char *root = xasprintf("%s/root", tmp);
    _cleanup_free_ char *data = xasprintf("%s/data", tmp);
    _cleanup_free_ char *log = xasprintf("%s/agent.log", tmp);
    _cleanup_free_ char *bin = tu_bin("fog-nodeagent");
    tu_fake_host(root, 2, 4096);
    _cleanup_free_ char *tok = tu_api_field(&ctl, ctl.admin_key, "POST",
                                            "/v1/join-tokens", "{}", 201,
                                            "token");
    char *join[] = { bin, "join", "--controller", ctl.url, "--token", tok,
                     "--data-dir", data, "--root", root, "--libvirt",
                     "test:///default", NULL };
    int st;
    free(tu_run(join, &st));
    assert_int_equal(st, 0);
    /* Only the agent's own messages from here on. */
    tu_ctl_stop(&ctl, SIGTERM);
    char junk[4096];
    while (recv(sock, junk, sizeof(junk), MSG_DONTWAIT) > 0)
        ;
    char *run[] = { bin, "run", "--data-dir", data, "--root", root,
                    "--network", "none", "--heartbeat", "30", NULL };
    pid_t pid = tu_spawn(run, log);
    assert_true(pid > 0);
    bool ready = wait_notify("READY=1");
    bool fed = ready && wait_notify("WATCHDOG=1") && wait_notify("WATCHDOG=1");
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    tu_ctl_restart(&ctl);
    assert_true(ready);
    assert_true(fed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_controller_notifies_ready_and_keeps_the_watchdog_fed),
        cmocka_unit_test(the_agent_notifies_ready_and_keeps_the_watchdog_fed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
