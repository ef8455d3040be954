/* images/seed and images/cloudinit: the NoCloud seed is a valid ISO 9660
 * volume `cidata` whose Rock Ridge names are meta-data, user-data and
 * network-config, read back by our own parser and by xorriso/blkid when
 * installed; the documents carry hostname, keys and addresses and refuse
 * what would break out of YAML. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/fs.h"
#include "images/cloudinit.h"
#include "images/seed.h"
#include "tests/testutil.h"

#include <errno.h>
#include <stdio.h>

/* ---- a minimal reader: root directory, Rock Ridge NM names ---- */

static uint32_t rd32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint32_t rd32be(const uint8_t *p)
{
    return (uint32_t)p[3] | (uint32_t)p[2] << 8 | (uint32_t)p[1] << 16 |
           (uint32_t)p[0] << 24;
}

/* Find a file by its Rock Ridge name; returns its bytes (not a copy) and
 * length, or NULL. Checks the record structure on the way. */
static const uint8_t *iso_find(const uint8_t *img, size_t len,
                               const char *name, size_t *ret_len)
{
    assert_true(len >= 18 * 2048 && len % 2048 == 0);
    const uint8_t *pvd = img + 16 * 2048;
    assert_int_equal(pvd[0], 1);
    assert_memory_equal(pvd + 1, "CD001", 5);
    assert_int_equal(rd32le(pvd + 80), len / 2048);
    assert_int_equal(rd32be(pvd + 84), len / 2048);
    assert_int_equal(img[17 * 2048], 255);
    const uint8_t *rootrec = pvd + 156;
    uint32_t root = rd32le(rootrec + 2), rsize = rd32le(rootrec + 10);
    assert_int_equal(rd32be(rootrec + 6), root);
    assert_true((uint64_t)root * 2048 + rsize <= len);
    const uint8_t *d = img + (size_t)root * 2048;
    bool saw_sp = false;
    for (size_t pos = 0; pos < rsize && d[pos];) {
        const uint8_t *rec = d + pos;
        size_t rl = rec[0], idl = rec[32];
        assert_true(rl >= 34 && pos + rl <= rsize);
        size_t su = 33 + idl + ((idl % 2) ? 0 : 1);
        if (idl == 1 && rec[33] == 0)
            saw_sp = su + 7 <= rl && memcmp(rec + su, "SP\x07\x01\xbe\xef", 6) == 0;
        while (su + 4 <= rl) {
            const uint8_t *e = rec + su;
            assert_true(e[2] >= 4 && su + e[2] <= rl);
            if (e[0] == 'N' && e[1] == 'M' && (size_t)e[2] - 5 == strlen(name) &&
                memcmp(e + 5, name, strlen(name)) == 0) {
                uint32_t at = rd32le(rec + 2), sz = rd32le(rec + 10);
                assert_int_equal(rd32be(rec + 14), sz);
                assert_true((uint64_t)at * 2048 + sz <= len);
                *ret_len = sz;
                assert_true(saw_sp);
                return img + (size_t)at * 2048;
            }
            su += e[2];
        }
        pos += rl;
    }
    return NULL;
}

static void iso_has_rock_ridge_names_and_contents(void **state)
{
    static const char big[5000] = { 'x' };
    const struct seed_file files[] = {
        { "user-data", "#cloud-config\n", 14 },
        { "meta-data", "instance-id: a\n", 15 },
        { "network-config", big, sizeof(big) },
        { "empty", NULL, 0 },
    };
    struct buf b = BUF_INIT;
    assert_int_equal(seed_iso_build("cidata", files, 4, 1700000000, &b), 0);
    assert_memory_equal(b.data + 16 * 2048 + 40, "cidata  ", 8);
    for (size_t i = 0; i < 4; i++) {
        size_t n = 99;
        const uint8_t *p = iso_find((uint8_t *)b.data, b.len, files[i].name, &n);
        if (!p)
            fail_msg("%s not found", files[i].name);
        assert_int_equal(n, files[i].len);
        if (n)
            assert_memory_equal(p, files[i].data, n);
    }
    size_t n;
    assert_null(iso_find((uint8_t *)b.data, b.len, "vendor-data", &n));
    buf_free(&b);
}

static void iso_refuses_bad_names_and_volume_ids(void **state)
{
    struct buf b = BUF_INIT;
    struct seed_file f[2] = { { "a", "x", 1 }, { "a", "y", 1 } };
    assert_int_equal(seed_iso_build("cidata", f, 2, 0, &b), -EINVAL);
    f[1].name = "../etc";
    assert_int_equal(seed_iso_build("cidata", f, 2, 0, &b), -EINVAL);
    f[1].name = "A";
    assert_int_equal(seed_iso_build("cidata", f, 2, 0, &b), -EINVAL);
    f[1].name = "b";
    assert_int_equal(seed_iso_build("ci data", f, 2, 0, &b), -EINVAL);
    assert_int_equal(seed_iso_build("", f, 2, 0, &b), -EINVAL);
    assert_int_equal(b.len, 0);
    /* 8.3 collisions still get distinct identifiers */
    struct seed_file g[2] = { { "network-config-a", "1", 1 },
                              { "network-config-b", "2", 1 } };
    assert_int_equal(seed_iso_build("cidata", g, 2, 0, &b), 0);
    size_t n;
    const uint8_t *p = iso_find((uint8_t *)b.data, b.len, "network-config-b", &n);
    assert_non_null(p);
    assert_int_equal(p[0], '2');
    buf_free(&b);
}

static json_t *vm_fixture(void)
{
    return json_pack(
        "{s:s, s:s, s:n, s:[s, s], s:[{s:s, s:s, s:i, s:s, s:i}]}", "id",
        "0b6f3a4e-4e0c-4d7a-9f56-2f1d3c1e9a10", "name", "web-1", "user_data",
        "ssh_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@laptop",
        "ssh-rsa AAAAB3Nza\"quoted\" bob", "nics", "mac", "52:54:00:12:34:56",
        "address", "10.1.0.5", "prefix", 24, "gateway", "10.1.0.1", "mtu",
        1370);
}

static void meta_data_has_instance_id_and_hostname(void **state)
{
    json_auto_t *vm = vm_fixture();
    struct cloudinit_docs d;
    _cleanup_free_ char *why = NULL;
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    assert_string_equal(d.meta_data,
                        "instance-id: \"fog-0b6f3a4e-4e0c-4d7a-9f56-2f1d3c1e9a10\"\n"
                        "local-hostname: \"web-1\"\n");
    cloudinit_docs_clear(&d);

    /* a hostname that would inject YAML is refused */
    json_object_set_new(vm, "name", json_string("x\"\ninstance-id: evil"));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), -EINVAL);
    assert_non_null(why);
}

static void user_data_merges_keys_into_each_kind(void **state)
{
    json_auto_t *vm = vm_fixture();
    struct cloudinit_docs d;
    char *why = NULL;

    /* none from the tenant: our cloud-config with the keys, quoted */
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    assert_string_equal(
        d.user_data,
        "#cloud-config\nssh_authorized_keys:\n"
        "  - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@laptop\"\n"
        "  - \"ssh-rsa AAAAB3Nza\\\"quoted\\\" bob\"\n");
    cloudinit_docs_clear(&d);

    /* the tenant's cloud-config: kept whole, keys appended */
    json_object_set_new(vm, "user_data",
                        json_string("#cloud-config\nruncmd:\n  - echo hi"));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    assert_true(startswith(d.user_data,
                           "#cloud-config\nruncmd:\n  - echo hi\n"
                           "ssh_authorized_keys:\n  - \"ssh-ed25519"));
    cloudinit_docs_clear(&d);

    /* a script: multipart, the script first and untouched */
    json_object_set_new(vm, "user_data", json_string("#!/bin/sh\necho hi\n"));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    assert_true(startswith(d.user_data, "Content-Type: multipart/mixed"));
    assert_non_null(strstr(d.user_data, "\n\n#!/bin/sh\necho hi\n--"));
    assert_non_null(strstr(d.user_data, "Merge-Type: list(append)"));
    assert_non_null(strstr(d.user_data, "ssh_authorized_keys:\n  - \"ssh-ed25519"));
    cloudinit_docs_clear(&d);

    /* tenant keys of its own: multipart, so neither list is lost */
    json_object_set_new(vm, "user_data",
                        json_string("#cloud-config\nssh_authorized_keys:\n"
                                    "  - ssh-ed25519 AAAA carol\n"));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    assert_true(startswith(d.user_data, "Content-Type: multipart/mixed"));
    assert_non_null(strstr(d.user_data, "carol"));
    cloudinit_docs_clear(&d);

    /* no keys: the tenant's text verbatim */
    json_object_set_new(vm, "ssh_keys", json_array());
    json_object_set_new(vm, "user_data", json_string("#!/bin/sh\necho hi\n"));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    assert_string_equal(d.user_data, "#!/bin/sh\necho hi\n");
    cloudinit_docs_clear(&d);
    assert_null(why);
}

static void user_data_limits_and_bad_keys_are_refused(void **state)
{
    json_auto_t *vm = vm_fixture();
    struct cloudinit_docs d;
    char *why = NULL;
    _cleanup_free_ char *big = xmalloc(2001);
    memset(big, 'a', 2000);
    big[2000] = '\0';
    json_object_set_new(vm, "user_data", json_string(big));
    assert_int_equal(cloudinit_render(vm, 1000, &d, &why), -EINVAL);
    assert_non_null(strstr(why, "limit"));
    free(why);
    why = NULL;
    assert_int_equal(cloudinit_render(vm, 2000, &d, &why), 0);
    cloudinit_docs_clear(&d);

    json_object_set_new(vm, "user_data", json_stringn("a\0b", 3));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), -EINVAL);
    free(why);
    why = NULL;

    json_object_set_new(vm, "user_data", json_null());
    json_object_set_new(vm, "ssh_keys",
                        json_pack("[s]", "ssh-rsa AAA x\nruncmd: [reboot]"));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), -EINVAL);
    assert_non_null(strstr(why, "SSH key"));
    free(why);
}

static void network_config_v2_has_static_addresses(void **state)
{
    json_auto_t *vm = vm_fixture();
    json_array_append_new(json_object_get(vm, "nics"),
                          json_pack("{s:s, s:s, s:i}", "mac",
                                    "52:54:00:AB:CD:EF", "address",
                                    "10.2.0.9", "prefix", 28));
    json_object_set_new(vm, "dns", json_pack("[s]", "10.1.0.1"));
    struct cloudinit_docs d;
    char *why = NULL;
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    assert_string_equal(d.network_config,
                        "version: 2\n"
                        "ethernets:\n"
                        "  eth0:\n"
                        "    match:\n"
                        "      macaddress: \"52:54:00:12:34:56\"\n"
                        "    set-name: eth0\n"
                        "    addresses:\n"
                        "      - 10.1.0.5/24\n"
                        "    mtu: 1370\n"
                        "    routes:\n"
                        "      - to: 0.0.0.0/0\n"
                        "        via: 10.1.0.1\n"
                        "    nameservers:\n"
                        "      addresses:\n"
                        "        - 10.1.0.1\n"
                        "  eth1:\n"
                        "    match:\n"
                        "      macaddress: \"52:54:00:ab:cd:ef\"\n"
                        "    set-name: eth1\n"
                        "    addresses:\n"
                        "      - 10.2.0.9/28\n");
    cloudinit_docs_clear(&d);

    static const struct {
        const char *key;
        const char *bad;
    } cases[] = {
        { "mac", "52:54:00:12:34" },
        { "mac", "52:54:00:12:34:5\n" },
        { "address", "10.1.0.300" },
        { "address", "10.1.0.5\n    evil: 1" },
        { "gateway", "gw" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        json_auto_t *v = vm_fixture();
        json_object_set_new(json_array_get(json_object_get(v, "nics"), 0),
                            cases[i].key, json_string(cases[i].bad));
        assert_int_equal(cloudinit_render(v, 0, &d, &why), -EINVAL);
        assert_non_null(why);
        free(why);
        why = NULL;
    }
    json_auto_t *v = vm_fixture();
    json_object_set_new(json_array_get(json_object_get(v, "nics"), 0),
                        "prefix", json_integer(33));
    assert_int_equal(cloudinit_render(v, 0, &d, &why), -EINVAL);
    free(why);
}

/* When python3 with PyYAML (what cloud-init uses) is present, every
 * document must load and mean what we meant. */
static void documents_load_as_yaml(void **state)
{
    if (access("/usr/bin/python3", X_OK) != 0) {
        print_message("  python3 missing\n");
        skip();
    }
    json_auto_t *vm = vm_fixture();
    json_object_set_new(vm, "user_data",
                        json_string("#cloud-config\nruncmd:\n  - [sh, -c, 'echo hi']"));
    struct cloudinit_docs d;
    char *why = NULL;
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    _cleanup_free_ char *m = xasprintf("%s/meta-data", tu_dir);
    _cleanup_free_ char *u = xasprintf("%s/user-data", tu_dir);
    _cleanup_free_ char *n = xasprintf("%s/network-config", tu_dir);
    assert_int_equal(file_write_atomic(m, d.meta_data, strlen(d.meta_data), 0600), 0);
    assert_int_equal(file_write_atomic(u, d.user_data, strlen(d.user_data), 0600), 0);
    assert_int_equal(file_write_atomic(n, d.network_config,
                                       strlen(d.network_config), 0600), 0);
    cloudinit_docs_clear(&d);
    static const char prog[] =
        "import sys\n"
        "try:\n"
        "    import yaml\n"
        "except ImportError:\n"
        "    print('noyaml'); sys.exit(0)\n"
        "m = yaml.safe_load(open(sys.argv[1]))\n"
        "u = yaml.safe_load(open(sys.argv[2]))\n"
        "n = yaml.safe_load(open(sys.argv[3]))\n"
        "assert m['local-hostname'] == 'web-1', m\n"
        "assert u['runcmd'] == [['sh', '-c', 'echo hi']], u\n"
        "assert u['ssh_authorized_keys'][1] == 'ssh-rsa AAAAB3Nza\"quoted\" bob', u\n"
        "e = n['ethernets']['eth0']\n"
        "assert e['match']['macaddress'] == '52:54:00:12:34:56', e\n"
        "assert e['addresses'] == ['10.1.0.5/24'], e\n"
        "assert e['routes'][0]['via'] == '10.1.0.1', e\n"
        "assert e['mtu'] == 1370\n"
        "print('ok')\n";
    int st;
    _cleanup_free_ char *out = tu_run((char *const[]){ "/usr/bin/python3", "-c",
                                                       (char *)prog, m, u, n,
                                                       NULL }, &st);
    if (st != 0)
        fail_msg("YAML check failed: %s", out);
    if (startswith(out, "noyaml")) {
        print_message("  PyYAML missing\n");
        skip();
    }
    assert_true(startswith(out, "ok"));
}

static void seed_is_read_by_xorriso_and_blkid(void **state)
{
    json_auto_t *vm = vm_fixture();
    struct cloudinit_docs d;
    char *why = NULL;
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    _cleanup_free_ char *iso = xasprintf("%s/seed.iso", tu_dir);
    assert_int_equal(cloudinit_seed_write(iso, &d, 0600), 0);

    /* our reader first: always */
    _cleanup_free_ char *img = NULL;
    size_t len, n;
    assert_int_equal(file_read(iso, 1 << 20, &img, &len), 0);
    const uint8_t *p = iso_find((uint8_t *)img, len, "user-data", &n);
    assert_non_null(p);
    assert_int_equal(n, strlen(d.user_data));
    assert_memory_equal(p, d.user_data, n);

    bool tried = false;
    if (access("/usr/sbin/blkid", X_OK) == 0) {
        int st;
        _cleanup_free_ char *out = tu_run(
            (char *const[]){ "/usr/sbin/blkid", "-p", "-o", "export", iso, NULL },
            &st);
        assert_int_equal(st, 0);
        assert_non_null(strstr(out, "LABEL=cidata\n"));
        assert_non_null(strstr(out, "TYPE=iso9660\n"));
        tried = true;
    }
    if (access("/usr/bin/xorriso", X_OK) == 0) {
        _cleanup_free_ char *x = xasprintf("%s/x", tu_dir);
        int st;
        _cleanup_free_ char *out = tu_run(
            (char *const[]){ "/usr/bin/xorriso", "-abort_on", "WARNING",
                             "-osirrox", "on", "-indev", iso, "-extract", "/",
                             x, NULL }, &st);
        if (st != 0)
            fail_msg("xorriso could not read the seed: %s", out);
        static const char *const names[] = { "meta-data", "user-data",
                                             "network-config" };
        const char *want[] = { d.meta_data, d.user_data, d.network_config };
        for (size_t i = 0; i < 3; i++) {
            _cleanup_free_ char *f = xasprintf("%s/%s", x, names[i]);
            _cleanup_free_ char *got = NULL;
            if (file_read(f, 1 << 20, &got, &n) < 0)
                fail_msg("xorriso did not extract %s", names[i]);
            assert_string_equal(got, want[i]);
        }
        tried = true;
    }
    cloudinit_docs_clear(&d);
    if (!tried)
        print_message("  neither blkid nor xorriso: own reader only\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(iso_has_rock_ridge_names_and_contents),
        cmocka_unit_test(iso_refuses_bad_names_and_volume_ids),
        cmocka_unit_test(meta_data_has_instance_id_and_hostname),
        cmocka_unit_test(user_data_merges_keys_into_each_kind),
        cmocka_unit_test(user_data_limits_and_bad_keys_are_refused),
        cmocka_unit_test(network_config_v2_has_static_addresses),
        cmocka_unit_test(documents_load_as_yaml),
        cmocka_unit_test(seed_is_read_by_xorriso_and_blkid),
    };
    return cmocka_run_group_tests(tests, tu_dir_setup, tu_dir_teardown);
}
