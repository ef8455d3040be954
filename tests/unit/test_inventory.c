/* Inventory parsers: CPU count and model, memory, CPU lists, and whether
 * the CPU can run KVM guests at all. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/cpuinfo.h"
#include "nodeagent/inventory.h"

#include <errno.h>

static const char *const x86_vmx =
    "processor\t: 0\nmodel name\t: Test CPU @ 3.0GHz\n"
    "flags\t\t: fpu vme de pse vmx sse2\n\n"
    "processor\t: 1\nmodel name\t: Test CPU @ 3.0GHz\n"
    "flags\t\t: fpu vme de pse vmx sse2\n";
static const char *const x86_plain =
    "processor\t: 0\nmodel name\t: Nested CPU\n"
    "flags\t\t: fpu vme de pse sse2 hypervisor vmxnot svmish\n";
static const char *const arm =
    "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\n";

static void cpuinfo_counts_processors_and_reads_the_model(void **state)
{
    int64_t n;
    char *model;
    inventory_parse_cpuinfo(x86_vmx, &n, &model);
    assert_int_equal(n, 2);
    assert_string_equal(model, "Test CPU @ 3.0GHz");
    free(model);
}

static void kvm_needs_vmx_or_svm_on_x86(void **state)
{
    assert_true(cpuinfo_has_virt(x86_vmx));
    /* Words that merely contain the flag names do not count. */
    assert_false(cpuinfo_has_virt(x86_plain));
    assert_true(cpuinfo_has_virt("flags : a svm b\n"));
    /* No flags line (arm64): /dev/kvm decides. */
    assert_true(cpuinfo_has_virt(arm));
}

static void memory_and_cpu_lists_parse(void **state)
{
    int64_t mib, n;
    assert_int_equal(inventory_parse_meminfo("MemTotal:       16384000 kB\n", &mib), 0);
    assert_int_equal(mib, 16000);
    assert_int_equal(inventory_parse_meminfo("MemFree: 1 kB\n", &mib), -EINVAL);
    assert_int_equal(inventory_parse_cpulist("0-3,8,10-11\n", &n), 0);
    assert_int_equal(n, 7);
    assert_int_not_equal(inventory_parse_cpulist("3-1", &n), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cpuinfo_counts_processors_and_reads_the_model),
        cmocka_unit_test(kvm_needs_vmx_or_svm_on_x86),
        cmocka_unit_test(memory_and_cpu_lists_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
