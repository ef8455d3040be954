/* Where a controller with no --templates-dir finds its templates: next to
 * the program in an install (PREFIX/share/fogfabric/templates), in a
 * checkout (images/templates beside bin/ or build-asan/bin/), and the
 * install wins when a tree has both. Fake trees in a scratch directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/util.h"
#include "controller/catalog.h"
#include "tests/testutil.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static char *root;

static char *mkdirs(const char *rel)
{
    char *p = xasprintf("%s/%s", root, rel);
    assert_int_equal(mkdir_p(p, 0755), 0);
    char *real = realpath(p, NULL);
    assert_non_null(real);
    free(p);
    return real;
}

static void assert_found(const char *exe_rel, const char *want)
{
    _cleanup_free_ char *exe = xasprintf("%s/%s", root, exe_rel);
    _cleanup_free_ char *got = catalog_templates_find(exe);
    assert_non_null(got);
    assert_string_equal(got, want);
}

static void test_checkout_templates_are_found_from_bin(void **state)
{
    (void)state;
    _cleanup_free_ char *want = mkdirs("checkout/images/templates");
    free(mkdirs("checkout/bin"));
    free(mkdirs("checkout/build-asan/bin"));
    assert_found("checkout/bin/fog-controller", want);
    assert_found("checkout/build-asan/bin/fog-controller", want);
}

static void test_installed_templates_are_found_from_prefix(void **state)
{
    (void)state;
    _cleanup_free_ char *want = mkdirs("prefix/share/fogfabric/templates");
    free(mkdirs("prefix/bin"));
    assert_found("prefix/bin/fog-controller", want);
    /* An install inside a checkout's tree still uses its own share. */
    free(mkdirs("prefix/images/templates"));
    assert_found("prefix/bin/fog-controller", want);
}

static int setup(void **state)
{
    (void)state;
    root = tu_tempdir("tmplfind");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmrf(root);
    free(root);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkout_templates_are_found_from_bin),
        cmocka_unit_test(test_installed_templates_are_found_from_prefix),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
