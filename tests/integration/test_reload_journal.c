/* Operating a serving controller: with --journal on, log lines reach the
 * journal's native socket (here a socket of the test's own) as entries
 * with PRIORITY, MESSAGE and the request's REQUEST_ID, NODE_ID and VM_ID;
 * SIGHUP reads the --config file again and a changed rate limit and log
 * level take effect without a restart; every thread of the controller
 * leaves SIGHUP, SIGINT and SIGTERM to its main loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "tests/testutil.h"

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FOREIGN_VM "11111111-2222-4333-8444-555555555555"

static struct tu_ctl ctl;
static char *dir, *sock_path, *conf;
static int jfd = -1;
static const char *extra[8];

static void write_conf(const char *text)
{
    assert_int_equal(file_write_atomic(conf, text, strlen(text), 0600), 0);
}

static int setup(void **state)
{
    dir = tu_tempdir("opjournal");
    sock_path = xasprintf("%s/journal.sock", dir);
    conf = xasprintf("%s/fog.conf", dir);
    jfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    if (jfd < 0 || bind(jfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -1;
    const char *text = "rate-key = 0\nlog-level = info\n";
    if (file_write_atomic(conf, text, strlen(text), 0600) < 0)
        return -1;
    extra[0] = "--journal";
    extra[1] = "on";
    extra[2] = "--journal-socket";
    extra[3] = sock_path;
    extra[4] = "--config";
    extra[5] = conf;
    tu_ctl_start(&ctl, extra);
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    if (jfd >= 0)
        close(jfd);
    tu_rmrf(dir);
    free(dir);
    free(sock_path);
    free(conf);
    return 0;
}

/* The first journal entry whose MESSAGE holds needle, within 30 s;
 * caller frees; NULL when none came. */
static char *journal_wait(const char *needle)
{
    time_t end = time(NULL) + 30;
    while (time(NULL) < end) {
        struct pollfd p = { jfd, POLLIN, 0 };
        if (poll(&p, 1, 1000) <= 0)
            continue;
        char buf[65536];
        ssize_t n = recv(jfd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        const char *m = strstr(buf, "MESSAGE=");
        if (m && strstr(m, needle))
            return xstrdup(buf);
    }
    return NULL;
}

static void journal_entries_carry_request_node_and_vm(void **state)
{
    char *node_id = NULL, *cred = NULL;
    assert_int_equal(tu_node_join(&ctl, ctl.admin_key, "op-n1", NULL,
                                  &node_id, &cred), 201);
    const char *body = "{\"vms\":[{\"id\":\"" FOREIGN_VM
                       "\",\"state\":\"running\"}]}";
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/status", ctl.url);
    struct tu_resp resp = { 0 };
    long st = tu_http("POST", url, cred, ctl.ca, body, strlen(body), NULL,
                      "X-Request-Id: op-req-42", &resp);
    tu_resp_clear(&resp);
    assert_int_equal(st, 403);
    _cleanup_free_ char *e = journal_wait("reported on foreign VM");
    assert_non_null(e);
    assert_non_null(strstr(e, "PRIORITY=4\n"));
    assert_non_null(strstr(e, "SYSLOG_IDENTIFIER=fog-controller\n"));
    assert_non_null(strstr(e, "REQUEST_ID=op-req-42\n"));
    _cleanup_free_ char *nf = xasprintf("NODE_ID=%s\n", node_id);
    assert_non_null(strstr(e, nf));
    assert_non_null(strstr(e, "VM_ID=" FOREIGN_VM "\n"));
    free(node_id);
    free(cred);
}

static void sighup_applies_a_changed_rate_limit_and_log_level(void **state)
{
    /* No limit on keys yet: a run of requests all pass. */
    for (int i = 0; i < 5; i++)
        free(tu_api_field(&ctl, ctl.admin_key, "GET", "/v1/accounts", NULL,
                          200, NULL));
    write_conf("rate-key = 1\nburst-key = 1\nlog-level = debug\n"
               "listen = 127.0.0.1:1\n");
    assert_int_equal(kill(ctl.pid, SIGHUP), 0);
    /* What cannot change under a running server is named, not applied:
     * the controller still answers on its port. */
    _cleanup_free_ char *w = journal_wait("'listen' changed");
    assert_non_null(w);
    _cleanup_free_ char *e = journal_wait("reloaded settings");
    assert_non_null(e);
    assert_non_null(strstr(e, "rate-key"));
    assert_non_null(strstr(e, "burst-key"));
    assert_non_null(strstr(e, "log-level"));
    /* One request a second with a burst of one: a quick run meets 429. */
    bool limited = false;
    for (int i = 0; i < 20 && !limited; i++) {
        long code;
        json_auto_t *j = tu_api(&ctl, ctl.admin_key, "GET", "/v1/accounts",
                                NULL, &code);
        limited = code == 429;
    }
    assert_true(limited);
    /* A bad value on reload changes nothing. */
    write_conf("rate-key = 0\nlog-level = loud\n");
    assert_int_equal(kill(ctl.pid, SIGHUP), 0);
    _cleanup_free_ char *bad = journal_wait("nothing changed");
    assert_non_null(bad);
}

/* Every thread blocks the signals the main loop waits for: one that did
 * not would take a signal's default action (the process ends at once, no
 * shutdown) whenever the kernel picked it to receive it. */
static void every_thread_leaves_signals_to_the_main_loop(void **state)
{
    _cleanup_free_ char *tasks = xasprintf("/proc/%d/task", (int)ctl.pid);
    DIR *d = opendir(tasks);
    assert_non_null(d);
    int seen = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        /* The main thread waits for them in sigwait, which unblocks them
         * while it waits. */
        if (de->d_name[0] == '.' || atoi(de->d_name) == (int)ctl.pid)
            continue;
        _cleanup_free_ char *p = xasprintf("%s/%s/status", tasks, de->d_name);
        _cleanup_free_ char *st = NULL;
        if (file_read(p, 1 << 16, &st, NULL) < 0)
            continue; /* the thread ended meanwhile */
        const char *at = strstr(st, "\nSigBlk:");
        assert_non_null(at);
        unsigned long long blk = strtoull(at + strlen("\nSigBlk:"), NULL, 16);
        const int sigs[] = { SIGHUP, SIGINT, SIGTERM };
        for (size_t i = 0; i < ARRAY_SIZE(sigs); i++) {
            if (!(blk & (1ULL << (sigs[i] - 1))))
                fail_msg("thread %s of the controller does not block signal "
                         "%d", de->d_name, sigs[i]);
        }
        seen++;
    }
    closedir(d);
    /* The main loop, the HTTP server's and the store's threads. */
    assert_true(seen > 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(journal_entries_carry_request_node_and_vm),
        cmocka_unit_test(sighup_applies_a_changed_rate_limit_and_log_level),
        cmocka_unit_test(every_thread_leaves_signals_to_the_main_loop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
