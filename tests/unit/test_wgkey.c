/* Unit tests for netfabric/wgkey: Curve25519 derivation against RFC 7748,
 * strict base64, hex, clamping and the 0600 private key file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/ids.h"
#include "netfabric/wgkey.h"
#include "tests/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

static void public_key_matches_rfc7748_vector(void **state)
{
    uint8_t priv[WGKEY_LEN], pub[WGKEY_LEN], want[WGKEY_LEN];
    assert_int_equal(hex_decode("77076d0a7318a57d3c16c17251b26645df4c2f87eb"
                                "c0992ab177fba51db92c2a", priv, WGKEY_LEN), 0);
    assert_int_equal(hex_decode("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26"
                                "381af4eba4a98eaa9b4e6a", want, WGKEY_LEN), 0);
    wgkey_public(priv, pub);
    assert_memory_equal(pub, want, WGKEY_LEN);
    /* Clamping does not change the public key: X25519 clamps anyway. */
    wgkey_clamp(priv);
    wgkey_public(priv, pub);
    assert_memory_equal(pub, want, WGKEY_LEN);
}

static void generated_private_keys_are_clamped_and_distinct(void **state)
{
    uint8_t a[WGKEY_LEN], b[WGKEY_LEN];
    wgkey_generate_private(a);
    wgkey_generate_private(b);
    assert_false(wgkey_equal(a, b));
    assert_int_equal(a[0] & 7, 0);
    assert_int_equal(a[31] & 128, 0);
    assert_int_equal(a[31] & 64, 64);
    uint8_t c[WGKEY_LEN];
    memset(c, 0xff, sizeof(c));
    wgkey_clamp(c);
    assert_int_equal(c[0], 0xf8);
    assert_int_equal(c[31], 0x7f);
}

static void base64_round_trips_and_is_strict(void **state)
{
    uint8_t k[WGKEY_LEN], back[WGKEY_LEN];
    for (int i = 0; i < WGKEY_LEN; i++)
        k[i] = (uint8_t)(i * 7 + 3);
    char text[WGKEY_B64_LEN + 1];
    wgkey_to_base64(k, text);
    assert_int_equal(strlen(text), WGKEY_B64_LEN);
    assert_int_equal(text[43], '=');
    assert_int_equal(wgkey_from_base64(text, back), 0);
    assert_memory_equal(k, back, WGKEY_LEN);

    /* Known value: 32 zero bytes. */
    memset(k, 0, sizeof(k));
    wgkey_to_base64(k, text);
    assert_string_equal(text, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    assert_true(wgkey_is_zero(k));

    uint8_t untouched[WGKEY_LEN];
    memset(untouched, 0x55, sizeof(untouched));
    memcpy(back, untouched, WGKEY_LEN);
    assert_int_equal(wgkey_from_base64("AAAA", back), -EINVAL);
    assert_int_equal(wgkey_from_base64(NULL, back), -EINVAL);
    /* right length, no padding */
    assert_int_equal(wgkey_from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                       back), -EINVAL);
    /* non-canonical last digit (low bits set) */
    assert_int_equal(wgkey_from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",
                                       back), -EINVAL);
    /* characters outside the alphabet */
    assert_int_equal(wgkey_from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*A=",
                                       back), -EINVAL);
    assert_memory_equal(back, untouched, WGKEY_LEN);
}

static void hex_form_is_lowercase_and_strict(void **state)
{
    uint8_t k[WGKEY_LEN], back[WGKEY_LEN];
    for (int i = 0; i < WGKEY_LEN; i++)
        k[i] = (uint8_t)(0xa0 + i);
    char hex[WGKEY_HEX_LEN + 1];
    wgkey_to_hex(k, hex);
    assert_int_equal(strncmp(hex, "a0a1a2", 6), 0);
    assert_int_equal(wgkey_from_hex(hex, back), 0);
    assert_memory_equal(k, back, WGKEY_LEN);
    assert_int_equal(wgkey_from_hex("a0a1", back), -EINVAL);
    hex[10] = 'z';
    assert_int_not_equal(wgkey_from_hex(hex, back), 0);
}

static void key_compare_sees_every_byte(void **state)
{
    uint8_t a[WGKEY_LEN] = { 0 }, b[WGKEY_LEN] = { 0 };
    assert_true(wgkey_equal(a, b));
    b[31] = 1;
    assert_false(wgkey_equal(a, b));
    b[31] = 0;
    b[0] = 0x80;
    assert_false(wgkey_equal(a, b));
}

static void private_key_file_is_created_0600_and_reloaded(void **state)
{
    _cleanup_free_ char *dir = tu_tempdir("wgkey");
    _cleanup_free_ char *path = xasprintf("%s/wg.key", dir);
    uint8_t k1[WGKEY_LEN], k2[WGKEY_LEN];
    assert_int_equal(wgkey_load_or_create(path, k1), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(wgkey_load_or_create(path, k2), 0);
    assert_memory_equal(k1, k2, WGKEY_LEN);

    /* The file holds the base64 form on one line. */
    _cleanup_free_ char *data = NULL;
    assert_int_equal(file_read(path, 100, &data, NULL), 0);
    char b64[WGKEY_B64_LEN + 1];
    wgkey_to_base64(k1, b64);
    assert_int_equal(strncmp(data, b64, WGKEY_B64_LEN), 0);

    /* A key others can read is refused, not silently used. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(wgkey_load_or_create(path, k2), -EPERM);

    /* Garbage is refused. */
    assert_int_equal(file_write_atomic(path, "nonsense\n", 9, 0600), 0);
    assert_int_equal(wgkey_load_or_create(path, k2), -EINVAL);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(public_key_matches_rfc7748_vector),
        cmocka_unit_test(generated_private_keys_are_clamped_and_distinct),
        cmocka_unit_test(base64_round_trips_and_is_strict),
        cmocka_unit_test(hex_form_is_lowercase_and_strict),
        cmocka_unit_test(key_compare_sees_every_byte),
        cmocka_unit_test(private_key_file_is_created_0600_and_reloaded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
