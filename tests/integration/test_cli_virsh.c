/* virsh's verbs through fogctl and the API against a real controller and
 * an agent on libvirt's test driver: suspend/resume held across agent and
 * controller restarts and answered as virsh answers them, autostart, the
 * --state-* list filters and the libvirt domain name fog-<uuid>. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <signal.h>
#include <time.h>

static struct tu_ctl ctl;
static struct tu_agent agent;
static char *key;

static int setup(void **state)
{
    static const char *ctl_args[] = { "--heartbeat", "1", "--longpoll", "5",
                                      "--no-inspect", NULL };
    tu_ctl_start(&ctl, ctl_args);
    key = tu_account(&ctl, "vr-tenant", "tenant");
    tu_agent_start(&agent, &ctl, "vr-node", 4, 8192);
    return 0;
}

static int teardown(void **state)
{
    tu_agent_destroy(&agent);
    tu_ctl_destroy(&ctl);
    free(key);
    return 0;
}

/* fogctl as the tenant; stdout (caller frees), exit status in *st. */
#define FOGCTL(st, ...) tu_fogctl(&ctl, key, st, __VA_ARGS__, NULL)

/* Poll (generous deadline) until the agent's log holds `needle` n times. */
static void wait_log(const char *needle, int n)
{
    time_t end = time(NULL) + 120;
    while (tu_count_in_file(agent.log, needle) < n) {
        if (time(NULL) > end) {
            fprintf(stderr, "agent log: '%s' not seen %d times\n", needle, n);
            fail();
        }
        nanosleep(&(struct timespec){ 0, 200 * 1000 * 1000 }, NULL);
    }
}

/* Poll until `fogctl domstate ref` prints `want`. */
static void wait_domstate(const char *ref, const char *want)
{
    time_t end = time(NULL) + 120;
    for (;;) {
        int st;
        _cleanup_free_ char *s = FOGCTL(&st, "domstate", ref);
        if (st == 0 && s && startswith(s, want) && s[strlen(want)] == '\n')
            return;
        if (time(NULL) > end) {
            fprintf(stderr, "domstate %s: '%s', want '%s'\n", ref,
                    s ? s : "", want);
            fail();
        }
        nanosleep(&(struct timespec){ 0, 200 * 1000 * 1000 }, NULL);
    }
}

/* Whether `fogctl list FLAG... --name` prints the line `name`. */
static bool listed(const char *name, const char *flag, const char *flag2)
{
    int st;
    _cleanup_free_ char *out = flag2 ? FOGCTL(&st, "list", flag, flag2, "--name")
                                     : FOGCTL(&st, "list", flag, "--name");
    assert_int_equal(st, 0);
    for (char *l = out; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : l)
        if (strncmp(l, name, strlen(name)) == 0 && l[strlen(name)] == '\n')
            return true;
    return false;
}

/* `fogctl create NAME ... --wait`: the VM once it runs (caller decrefs). */
static json_t *create_running(const char *name)
{
    int st;
    _cleanup_free_ char *c =
        FOGCTL(&st, "create", name, "--cpus", "1", "--memory", "128M",
               "--disk", "1G", "--image", "tiny", "--allow-tcg", "--wait",
               "--timeout", "120", "--json");
    assert_int_equal(st, 0);
    json_t *vm = json_loads(c, 0, NULL);
    assert_non_null(vm);
    return vm;
}

static void suspend_and_resume_as_virsh(void **state)
{
    int st;
    json_auto_t *vm = create_running("vr-web");
    const char *id = json_str(vm, "id");
    _cleanup_free_ char *dom = xasprintf("fog-%s", id);
    assert_false(json_is_true(json_object_get(vm, "paused")));

    /* virsh: resuming a running domain fails with its message. */
    _cleanup_free_ char *r0 = FOGCTL(&st, "resume", "vr-web");
    assert_int_equal(st, 1);

    _cleanup_free_ char *s1 = FOGCTL(&st, "suspend", "vr-web", "--wait",
                                     "--timeout", "120");
    assert_int_equal(st, 0);
    assert_non_null(strstr(s1, "suspended"));
    wait_domstate("vr-web", "paused");
    /* The libvirt domain name names the VM as well. */
    wait_domstate(dom, "paused");
    _cleanup_free_ char *info = FOGCTL(&st, "dominfo", dom);
    assert_int_equal(st, 0);
    _cleanup_free_ char *is = tu_field(info, "state");
    assert_string_equal(is, "paused");
    assert_true(listed("vr-web", "--state-paused", NULL));
    assert_false(listed("vr-web", "--state-running", NULL));
    assert_false(listed("vr-web", "--state-shutoff", NULL));
    assert_true(listed("vr-web", "--state-running", "--state-paused"));
    /* Paused is active: in plain list, not in --inactive. */
    assert_true(listed("vr-web", "--all", NULL));
    assert_false(listed("vr-web", "--inactive", NULL));
    /* Suspending a paused domain is harmless, as in virsh. */
    _cleanup_free_ char *s2 = FOGCTL(&st, "suspend", "vr-web");
    assert_int_equal(st, 0);

    /* Held across an agent restart: the node's domain is made again on
     * the fresh test driver, started and suspended once more. */
    wait_log(": suspended", 1);
    tu_agent_restart(&agent);
    wait_log(": suspended", 2);
    wait_domstate("vr-web", "paused");

    /* And across a controller restart: the pause is stored. */
    tu_ctl_stop(&ctl, SIGTERM);
    tu_ctl_restart(&ctl);
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s", dom);
    long code;
    json_auto_t *after = tu_api(&ctl, key, "GET", p, NULL, &code);
    assert_int_equal(code, 200);
    assert_true(json_is_true(json_object_get(after, "paused")));

    _cleanup_free_ char *r1 = FOGCTL(&st, "resume", "vr-web", "--wait",
                                     "--timeout", "120");
    assert_int_equal(st, 0);
    assert_non_null(strstr(r1, "resumed"));
    wait_domstate("vr-web", "running");
    assert_true(listed("vr-web", "--state-running", NULL));
    _cleanup_free_ char *r2 = FOGCTL(&st, "resume", "vr-web");
    assert_int_equal(st, 1);

    /* A stopped VM: suspend and resume fail, in fogctl and the API. */
    _cleanup_free_ char *d = FOGCTL(&st, "destroy", "vr-web", "--wait",
                                    "--timeout", "120");
    assert_int_equal(st, 0);
    assert_true(listed("vr-web", "--state-shutoff", NULL));
    assert_false(listed("vr-web", "--state-running", "--state-paused"));
    _cleanup_free_ char *s3 = FOGCTL(&st, "suspend", "vr-web");
    assert_int_equal(st, 1);
    _cleanup_free_ char *r3 = FOGCTL(&st, "resume", "vr-web");
    assert_int_equal(st, 1);
    _cleanup_free_ char *ps = xasprintf("/v1/vms/%s/suspend", id);
    _cleanup_free_ char *pr = xasprintf("/v1/vms/%s/resume", id);
    json_auto_t *e1 = tu_api(&ctl, key, "POST", ps, NULL, &code);
    assert_int_equal(code, 409);
    json_auto_t *e2 = tu_api(&ctl, key, "POST", pr, NULL, &code);
    assert_int_equal(code, 409);

    /* Another tenant cannot touch it. */
    _cleanup_free_ char *other = tu_account(&ctl, "vr-other", "tenant");
    json_auto_t *e3 = tu_api(&ctl, other, "POST", ps, NULL, &code);
    assert_int_equal(code, 404);
}

static void autostart_is_a_flag_of_the_vm(void **state)
{
    int st;
    json_auto_t *vm = create_running("vr-auto");
    assert_true(json_is_true(json_object_get(vm, "autostart")));
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s", json_str(vm, "id"));

    _cleanup_free_ char *a1 = FOGCTL(&st, "autostart", "vr-auto", "--disable");
    assert_int_equal(st, 0);
    assert_non_null(strstr(a1, "unmarked as autostarted"));
    long code;
    json_auto_t *off = tu_api(&ctl, key, "GET", p, NULL, &code);
    assert_int_equal(code, 200);
    assert_false(json_is_true(json_object_get(off, "autostart")));
    _cleanup_free_ char *info = FOGCTL(&st, "dominfo", "vr-auto");
    _cleanup_free_ char *f = tu_field(info, "autostart");
    assert_string_equal(f, "no");

    _cleanup_free_ char *a2 = FOGCTL(&st, "autostart", "vr-auto");
    assert_int_equal(st, 0);
    assert_non_null(strstr(a2, "marked as autostarted"));
    json_auto_t *on = tu_api(&ctl, key, "GET", p, NULL, &code);
    assert_true(json_is_true(json_object_get(on, "autostart")));

    /* The body is checked. */
    _cleanup_free_ char *pa = xasprintf("%s/autostart", p);
    json_auto_t *bad = tu_api(&ctl, key, "POST", pa, "{\"autostart\":1}",
                              &code);
    assert_int_equal(code, 400);
    json_auto_t *none = tu_api(&ctl, key, "POST", pa, "{}", &code);
    assert_int_equal(code, 400);
    /* The node applied both without complaint. */
    wait_domstate("vr-auto", "running");
    json_auto_t *last = tu_api(&ctl, key, "GET", p, NULL, &code);
    assert_true(json_is_null(json_object_get(last, "state_reason")));
}

/* Poll until `fogctl dumpxml ref` succeeds; its output (caller frees). */
static char *wait_dumpxml(const char *ref)
{
    time_t end = time(NULL) + 120;
    for (;;) {
        int st;
        char *s = FOGCTL(&st, "dumpxml", ref);
        if (st == 0 && s && strstr(s, "<domain"))
            return s;
        free(s);
        if (time(NULL) > end) {
            fprintf(stderr, "dumpxml %s: never answered\n", ref);
            fail();
        }
        nanosleep(&(struct timespec){ 0, 200 * 1000 * 1000 }, NULL);
    }
}

/* The value of <mac address='...'/> in a domain XML (caller frees). */
static char *xml_mac(const char *xml)
{
    const char *m = strstr(xml, "<mac address=");
    assert_non_null(m);
    m += strlen("<mac address=") + 1;
    return xstrndup(m, 17);
}

static void dumpxml_and_domiflist_show_the_nodes_domain(void **state)
{
    int st;
    json_auto_t *vm = create_running("vr-xml");
    const char *id = json_str(vm, "id");
    _cleanup_free_ char *dom = xasprintf("fog-%s", id);

    /* virsh dumpxml: the domain the agent defined, by either name. */
    _cleanup_free_ char *xml = wait_dumpxml("vr-xml");
    _cleanup_free_ char *name_el = xasprintf("<name>%s</name>", dom);
    assert_non_null(strstr(xml, name_el));
    _cleanup_free_ char *mac = xml_mac(xml);
    _cleanup_free_ char *xml2 = wait_dumpxml(dom);
    assert_string_equal(xml, xml2);

    /* virsh domiflist: header, dashes, one row for that interface. */
    _cleanup_free_ char *t = FOGCTL(&st, "domiflist", "vr-xml");
    assert_int_equal(st, 0);
    char *l1 = t, *l2 = strchr(l1, '\n');
    assert_non_null(l2);
    *l2++ = '\0';
    assert_non_null(strstr(l1, "Interface"));
    assert_non_null(strstr(l1, "Type"));
    assert_non_null(strstr(l1, "Source"));
    assert_non_null(strstr(l1, "Model"));
    assert_non_null(strstr(l1, "MAC"));
    assert_true(startswith(l2, "-----"));
    char *l3 = strchr(l2, '\n');
    assert_non_null(l3);
    l3++;
    _cleanup_free_ char *row = xstrndup(l3, strcspn(l3, "\n"));
    assert_non_null(strstr(row, mac));
    assert_non_null(strstr(row, " bridge "));
    assert_null(strchr(l3 + strlen(row) + 1, '\n')); /* one row */
    /* The VM resource carries the same, typed. */
    long code;
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s", id);
    json_auto_t *got = tu_api(&ctl, key, "GET", p, NULL, &code);
    assert_int_equal(code, 200);
    json_t *ifs = json_object_get(got, "interfaces");
    assert_int_equal(json_array_size(ifs), 1);
    assert_string_equal(json_str(json_array_get(ifs, 0), "mac"), mac);

    /* Another tenant: no such VM, in the API and in fogctl. */
    _cleanup_free_ char *other = tu_account(&ctl, "vr-xml-other", "tenant");
    _cleanup_free_ char *px = xasprintf("/v1/vms/%s/xml", id);
    json_auto_t *e1 = tu_api(&ctl, other, "GET", px, NULL, &code);
    assert_int_equal(code, 404);
    _cleanup_free_ char *o1 = tu_fogctl(&ctl, other, &st, "dumpxml", dom,
                                        NULL);
    assert_int_equal(st, 1);
    _cleanup_free_ char *o2 = tu_fogctl(&ctl, other, &st, "domiflist", dom,
                                        NULL);
    assert_int_equal(st, 1);
    _cleanup_free_ char *u = FOGCTL(&st, "dumpxml", "vr-nosuch");
    assert_int_equal(st, 1);

    /* A VM its node never defined (no such image there): no XML yet, said
     * plainly, and no interfaces. */
    _cleanup_free_ char *c =
        FOGCTL(&st, "create", "vr-unrep", "--cpus", "1", "--memory", "128M",
               "--disk", "1G", "--image", "vr-no-image", "--allow-tcg",
               "--json");
    assert_int_equal(st, 0);
    json_auto_t *un = json_loads(c, 0, NULL);
    _cleanup_free_ char *pu = xasprintf("/v1/vms/%s/xml", json_str(un, "id"));
    json_auto_t *e2 = tu_api(&ctl, key, "GET", pu, NULL, &code);
    assert_int_equal(code, 409);
    assert_non_null(strstr(json_str(e2, "detail"), "not reported"));
    _cleanup_free_ char *n1 = FOGCTL(&st, "dumpxml", "vr-unrep");
    assert_int_equal(st, 1);
    _cleanup_free_ char *n2 = FOGCTL(&st, "domiflist", "vr-unrep");
    assert_int_equal(st, 0);
    size_t lines = 0;
    for (const char *q = n2; (q = strchr(q, '\n')); q++)
        lines++;
    assert_int_equal(lines, 2); /* header and dashes only */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(suspend_and_resume_as_virsh),
        cmocka_unit_test(autostart_is_a_flag_of_the_vm),
        cmocka_unit_test(dumpxml_and_domiflist_show_the_nodes_domain),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
