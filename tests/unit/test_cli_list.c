/* fogctl list's virsh filters (--all, --inactive, --state-running,
 * --state-paused, --state-shutoff) over VM objects as the API lists them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cli/cli.h"

static json_t *vm(const char *desired, const char *state, bool paused)
{
    return json_pack("{s:s, s:s, s:b}", "desired_state", desired, "state",
                     state, "paused", paused);
}

static void without_flags_only_active_vms(void **state)
{
    (void)state;
    json_auto_t *run = vm("running", "running", false);
    json_auto_t *starting = vm("running", "creating", false);
    json_auto_t *off = vm("stopped", "stopped", false);
    json_auto_t *failed = vm("running", "error", false);
    assert_true(cli_vm_list_keep(run, 0));
    assert_true(cli_vm_list_keep(starting, 0));
    assert_false(cli_vm_list_keep(off, 0));
    assert_false(cli_vm_list_keep(failed, 0));
    assert_true(cli_vm_list_keep(off, CLI_LIST_ALL));
    assert_true(cli_vm_list_keep(off, CLI_LIST_INACTIVE));
    assert_false(cli_vm_list_keep(run, CLI_LIST_INACTIVE));
    assert_true(cli_vm_list_keep(run, CLI_LIST_INACTIVE | CLI_LIST_ALL));
}

static void state_flags_pick_any_state_named(void **state)
{
    (void)state;
    json_auto_t *run = vm("running", "running", false);
    json_auto_t *paused = vm("running", "paused", true);
    /* Asked to pause, the node not there yet: paused already, as virsh
     * shows a domain once suspend returns. */
    json_auto_t *pausing = vm("running", "running", true);
    json_auto_t *off = vm("stopped", "stopped", true);
    assert_true(cli_vm_list_keep(run, CLI_LIST_RUNNING));
    assert_false(cli_vm_list_keep(paused, CLI_LIST_RUNNING));
    assert_true(cli_vm_list_keep(paused, CLI_LIST_PAUSED));
    assert_true(cli_vm_list_keep(pausing, CLI_LIST_PAUSED));
    assert_false(cli_vm_list_keep(run, CLI_LIST_PAUSED));
    /* A stopped VM is never paused, whatever its flag says. */
    assert_false(cli_vm_list_keep(off, CLI_LIST_PAUSED));
    assert_true(cli_vm_list_keep(off, CLI_LIST_SHUTOFF));
    assert_false(cli_vm_list_keep(run, CLI_LIST_SHUTOFF));
    unsigned both = CLI_LIST_RUNNING | CLI_LIST_PAUSED;
    assert_true(cli_vm_list_keep(run, both));
    assert_true(cli_vm_list_keep(paused, both));
    assert_false(cli_vm_list_keep(off, both));
    /* --all does not widen a state filter. */
    assert_false(cli_vm_list_keep(off, CLI_LIST_ALL | CLI_LIST_RUNNING));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(without_flags_only_active_vms),
        cmocka_unit_test(state_flags_pick_any_state_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
