/* The domain XML and the state a node reports follow each change of a VM
 * well before the heartbeat, although a report made for an event or a new
 * document reads only the domains touched since and lists only the VMs
 * whose entry changed (the heartbeat here is 60 s, so the heartbeat's
 * full report cannot be what brings a change): a new VM, a stop, a resize
 * and a start of one VM among others, and the untouched VMs keep the XML
 * and state they had. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <time.h>

static struct tu_ctl ctl;
static struct tu_agent agent;
static char *key;

static int setup(void **state)
{
    static const char *ctl_args[] = { "--heartbeat", "60", "--longpoll", "5",
                                      "--no-inspect", NULL };
    static const char *const slow[] = { "--heartbeat", "60", NULL };
    tu_ctl_start(&ctl, ctl_args);
    key = tu_account(&ctl, "xt-tenant", "tenant");
    tu_agent_start(&agent, &ctl, "xt-node", 8, 16384);
    agent.extra = slow;
    tu_agent_restart(&agent);
    return 0;
}

static int teardown(void **state)
{
    tu_agent_destroy(&agent);
    tu_ctl_destroy(&ctl);
    free(key);
    return 0;
}

#define FOGCTL(st, ...) tu_fogctl(&ctl, key, st, __VA_ARGS__, NULL)

/* Poll, for at most 20 s, until VM `id`'s state is `want`. */
static void wait_state(const char *id, const char *want)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s", id);
    time_t end = time(NULL) + 20;
    for (;;) {
        json_auto_t *vm = tu_api_want(&ctl, key, "GET", path, NULL, 200);
        if (streq(json_str(vm, "state"), want))
            return;
        if (time(NULL) > end) {
            fprintf(stderr, "VM %s: state '%s', want '%s'\n", id,
                    json_str(vm, "state"), want);
            fail();
        }
        nanosleep(&(struct timespec){ 0, 100 * 1000 * 1000 }, NULL);
    }
}

/* Poll, for at most 20 s (a third of the heartbeat), until the XML VM
 * `ref`'s node reported holds `want` and lacks `unwanted` (or NULL); the
 * XML (caller frees). */
static char *wait_xml(const char *ref, const char *want, const char *unwanted)
{
    time_t end = time(NULL) + 20;
    for (;;) {
        int st;
        char *s = FOGCTL(&st, "dumpxml", ref);
        if (st == 0 && s && strstr(s, want) &&
            (!unwanted || !strstr(s, unwanted)))
            return s;
        if (time(NULL) > end) {
            fprintf(stderr, "dumpxml %s: want '%s'%s%s, last:\n%s\n", ref,
                    want, unwanted ? " without " : "",
                    unwanted ? unwanted : "", s ? s : "(none)");
            free(s);
            fail();
        }
        free(s);
        nanosleep(&(struct timespec){ 0, 100 * 1000 * 1000 }, NULL);
    }
}

static void each_change_is_reported_before_the_heartbeat(void **state)
{
    int st;
    /* New VMs: reported without waiting for the heartbeat. */
    json_auto_t *a = tu_vm_post(&ctl, key, "xt-a", 1, NULL, 201);
    json_auto_t *b = tu_vm_post(&ctl, key, "xt-b", 1, NULL, 201);
    json_auto_t *c = tu_vm_post(&ctl, key, "xt-c", 1, NULL, 201);
    const char *mem128 = "<memory unit='KiB'>131072</memory>";
    const char *mem256 = "<memory unit='KiB'>262144</memory>";
    /* Running: the test driver gives the live domain an id. */
    const char *live = "<domain type='qemu' id=";
    _cleanup_free_ char *xa = wait_xml("xt-a", live, NULL);
    _cleanup_free_ char *xb = wait_xml("xt-b", live, NULL);
    _cleanup_free_ char *xc = wait_xml("xt-c", live, NULL);
    assert_non_null(strstr(xb, mem128));

    /* Stopped: the live id goes. */
    _cleanup_free_ char *o1 = FOGCTL(&st, "destroy", "xt-b", "--wait",
                                     "--timeout", "60");
    assert_int_equal(st, 0);
    _cleanup_free_ char *xb1 = wait_xml("xt-b", "<domain type='qemu'>",
                                        NULL);
    wait_state(json_str(b, "id"), "stopped");
    /* Resized while stopped, then started: the new memory, running. */
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s/resize",
                                          json_str(b, "id"));
    json_decref(tu_api_want(&ctl, key, "POST", path,
                            "{\"memory_mib\": 256}", 202));
    _cleanup_free_ char *xb2 = wait_xml("xt-b", mem256, NULL);
    _cleanup_free_ char *o2 = FOGCTL(&st, "start", "xt-b", "--wait",
                                     "--timeout", "60");
    assert_int_equal(st, 0);
    _cleanup_free_ char *xb3 = wait_xml("xt-b", live, mem128);
    wait_state(json_str(b, "id"), "running");
    assert_non_null(strstr(xb3, mem256));

    /* VM c, touched after b: its change is not lost behind b's. */
    _cleanup_free_ char *o3 = FOGCTL(&st, "destroy", "xt-c", "--wait",
                                     "--timeout", "60");
    assert_int_equal(st, 0);
    _cleanup_free_ char *xc1 = wait_xml("xt-c", "<domain type='qemu'>",
                                        NULL);
    wait_state(json_str(c, "id"), "stopped");

    /* The untouched VM a reads as it did. */
    _cleanup_free_ char *xa2 = FOGCTL(&st, "dumpxml", "xt-a");
    assert_int_equal(st, 0);
    assert_string_equal(xa, xa2);
    wait_state(json_str(a, "id"), "running");
    /* The reports of those changes listed the VM that changed alone. */
    assert_true(tu_count_in_file(agent.log, "status of 1 VMs built") > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_change_is_reported_before_the_heartbeat),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
