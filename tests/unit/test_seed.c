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

static void meta_data_has_instance_id_hostname_and_public_keys(void **state)
{
    json_auto_t *vm = vm_fixture();
    struct cloudinit_docs d;
    _cleanup_free_ char *why = NULL;
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    assert_string_equal(d.meta_data,
                        "instance-id: \"fog-0b6f3a4e-4e0c-4d7a-9f56-2f1d3c1e9a10\"\n"
                        "local-hostname: \"web-1\"\n"
                        "public-keys:\n"
                        "  - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@laptop\"\n"
                        "  - \"ssh-rsa AAAAB3Nza\\\"quoted\\\" bob\"\n");
    /* no tenant user-data: an empty cloud-config, keys not in it */
    assert_string_equal(d.user_data, "#cloud-config\n");
    assert_int_equal(d.user_data_len, strlen("#cloud-config\n"));
    cloudinit_docs_clear(&d);

    json_object_set_new(vm, "ssh_keys", json_array());
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    assert_null(strstr(d.meta_data, "public-keys"));
    cloudinit_docs_clear(&d);

    /* a name from before the hostname rule: the trailing '-' is dropped */
    json_object_set_new(vm, "name", json_string("web-"));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    assert_non_null(strstr(d.meta_data, "local-hostname: \"web\"\n"));
    cloudinit_docs_clear(&d);

    /* a hostname that would inject YAML is refused */
    json_object_set_new(vm, "name", json_string("x\"\ninstance-id: evil"));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), -EINVAL);
    assert_non_null(why);
}

/* printf '#cloud-config\nruncmd:\n  - [touch, /run/gz]\n' | gzip -n9 */
static const uint8_t gz_doc[] = {
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x53, 0x4e,
    0xce, 0xc9, 0x2f, 0x4d, 0xd1, 0x4d, 0xce, 0xcf, 0x4b, 0xcb, 0x4c, 0xe7,
    0x2a, 0x2a, 0xcd, 0x4b, 0xce, 0x4d, 0xb1, 0xe2, 0x52, 0x50, 0xd0, 0x55,
    0x88, 0x2e, 0xc9, 0x2f, 0x4d, 0xce, 0xd0, 0x51, 0xd0, 0x07, 0x0a, 0xea,
    0xa7, 0x57, 0xc5, 0x72, 0x01, 0x00, 0xb6, 0x39, 0x4a, 0x11, 0x2b, 0x00,
    0x00, 0x00
};
static const char gz_b64[] =
    "H4sIAAAAAAACA1NOzskvTdFNzs9Ly0znKirNS85NseJSUNBViC7JL03O0FHQBwrqp1fFcgEAtjlKESsAAAA=";

/* Every format cloud-init accepts, as Terraform and friends write them. */
static const char *const ud_text_formats[] = {
    "#cloud-config\nruncmd:\n  - echo hi", /* no final newline */
    "#cloud-config\n{\"runcmd\":[\"echo hi\"],\"write_files\":"
    "[{\"path\":\"/x\",\"content\":\"y\"}]}",
    "#!/bin/sh\necho hi\n",
    "Content-Type: multipart/mixed; boundary=\"XYZ\"\nMIME-Version: 1.0\n\n"
    "--XYZ\nContent-Type: text/cloud-config\n\n#cloud-config\nruncmd: [ls]\n"
    "--XYZ\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho hi\n--XYZ--\n",
    "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAA carol\n",
    "#include\nhttps://example.invalid/ud\n",
};

/* The seed's user-data file holds exactly `want`, read from the ISO. */
static void assert_seed_user_data(const struct cloudinit_docs *d,
                                  const void *want, size_t want_len)
{
    _cleanup_free_ char *iso = xasprintf("%s/ud.iso", tu_dir);
    assert_int_equal(cloudinit_seed_write(iso, d, 0600), 0);
    _cleanup_free_ char *img = NULL;
    size_t len, n;
    assert_int_equal(file_read(iso, 1 << 20, &img, &len), 0);
    const uint8_t *p = iso_find((uint8_t *)img, len, "user-data", &n);
    assert_non_null(p);
    assert_int_equal(n, want_len);
    assert_memory_equal(p, want, want_len);
}

static void user_data_is_the_tenants_byte_for_byte(void **state)
{
    struct cloudinit_docs d;
    char *why = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(ud_text_formats); i++) {
        json_auto_t *vm = vm_fixture(); /* with SSH keys */
        json_object_set_new(vm, "user_data", json_string(ud_text_formats[i]));
        assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
        assert_int_equal(d.user_data_len, strlen(ud_text_formats[i]));
        assert_string_equal(d.user_data, ud_text_formats[i]);
        assert_seed_user_data(&d, ud_text_formats[i], strlen(ud_text_formats[i]));
        /* keys in meta-data, whatever the user-data */
        assert_non_null(strstr(d.meta_data, "public-keys:\n  - \"ssh-ed25519"));
        cloudinit_docs_clear(&d);
    }

    /* gzip: binary, so it travels as base64 and lands as the raw bytes */
    json_auto_t *vm = vm_fixture();
    json_object_set_new(vm, "user_data_base64", json_string(gz_b64));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    assert_int_equal(d.user_data_len, sizeof(gz_doc));
    assert_memory_equal(d.user_data, gz_doc, sizeof(gz_doc));
    assert_seed_user_data(&d, gz_doc, sizeof(gz_doc));
    cloudinit_docs_clear(&d);

    json_object_set_new(vm, "user_data", json_string("#!/bin/sh\n"));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), -EINVAL);
    assert_non_null(strstr(why, "exclusive"));
    free(why);
    why = NULL;
    json_object_del(vm, "user_data");
    json_object_set_new(vm, "user_data_base64", json_string("not base64!"));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), -EINVAL);
    assert_non_null(strstr(why, "base64"));
    free(why);
    why = NULL;
    json_object_set_new(vm, "user_data_base64", json_string(gz_b64));
    assert_int_equal(cloudinit_render(vm, 20, &d, &why), -EINVAL);
    assert_non_null(strstr(why, "limit"));
    free(why);
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

static void resolvers_are_the_networks_then_the_hubs_then_public_ones(void **state)
{
    json_auto_t *vm = vm_fixture();
    struct cloudinit_docs d;
    char *why = NULL;
    static const char head[] = "        via: 10.1.0.1\n    nameservers:\n"
                               "      addresses:\n";
    /* nothing set: public resolvers (the node serves no DNS yet) */
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    _cleanup_free_ char *gw = xasprintf("%s        - 1.1.1.1\n"
                                        "        - 9.9.9.9\n", head);
    assert_non_null(strstr(d.network_config, gw));
    cloudinit_docs_clear(&d);
    /* the hub's setting */
    json_object_set_new(vm, "dns", json_pack("[s, s]", "192.0.2.53", "192.0.2.54"));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    _cleanup_free_ char *hub = xasprintf("%s        - 192.0.2.53\n"
                                         "        - 192.0.2.54\n", head);
    assert_non_null(strstr(d.network_config, hub));
    cloudinit_docs_clear(&d);
    /* the network's own wins */
    json_object_set_new(json_array_get(json_object_get(vm, "nics"), 0), "dns",
                        json_pack("[s]", "198.51.100.1"));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    _cleanup_free_ char *net = xasprintf("%s        - 198.51.100.1\n", head);
    assert_non_null(strstr(d.network_config, net));
    cloudinit_docs_clear(&d);
    assert_null(why);
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
    why = NULL;
    json_object_set_new(json_array_get(json_object_get(v, "nics"), 0),
                        "prefix", json_integer(24));
    json_object_set_new(json_array_get(json_object_get(v, "nics"), 0),
                        "dns", json_pack("[s]", "8.8.8.x"));
    assert_int_equal(cloudinit_render(v, 0, &d, &why), -EINVAL);
    free(why);
}

/* A NIC of a dual-stack network: its IPv6 address in the /64 next to the
 * IPv4 one, a default route of each family, the node's resolver on both
 * gateway addresses. */
static json_t *dual_stack(json_t *vm)
{
    json_t *nic = json_array_get(json_object_get(vm, "nics"), 0);
    json_object_set_new(nic, "address6", json_string("fd12:3456:789a:1::5"));
    json_object_set_new(nic, "gateway6", json_string("fd12:3456:789a:1::1"));
    json_object_set_new(vm, "gateway_dns", json_true());
    return vm;
}

static void network_config_is_dual_stack(void **state)
{
    json_auto_t *vm = dual_stack(vm_fixture());
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
                        "      - \"fd12:3456:789a:1::5/64\"\n"
                        "    mtu: 1370\n"
                        "    routes:\n"
                        "      - to: 0.0.0.0/0\n"
                        "        via: 10.1.0.1\n"
                        "      - to: \"::/0\"\n"
                        "        via: \"fd12:3456:789a:1::1\"\n"
                        "    nameservers:\n"
                        "      addresses:\n"
                        "        - 10.1.0.1\n"
                        "        - \"fd12:3456:789a:1::1\"\n");
    cloudinit_docs_clear(&d);

    static const struct {
        const char *key;
        const char *bad;
    } cases[] = {
        { "address6", "10.1.0.5" },
        { "address6", "fd12::5/64" },
        { "address6", "fd12::5\"\n    evil: 1" },
        { "address6", "fd12:::5" },
        { "address6", "" },
        { "gateway6", "10.1.0.1" },
        { "gateway6", "fd12::1\n" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        json_auto_t *v = dual_stack(vm_fixture());
        json_object_set_new(json_array_get(json_object_get(v, "nics"), 0),
                            cases[i].key, json_string(cases[i].bad));
        assert_int_equal(cloudinit_render(v, 0, &d, &why), -EINVAL);
        assert_non_null(strstr(why, cases[i].key));
        free(why);
        why = NULL;
    }
    /* not a string, or a gateway without an address */
    json_auto_t *v = dual_stack(vm_fixture());
    json_t *nic = json_array_get(json_object_get(v, "nics"), 0);
    json_object_set_new(nic, "address6", json_integer(5));
    assert_int_equal(cloudinit_render(v, 0, &d, &why), -EINVAL);
    free(why);
    why = NULL;
    json_object_del(nic, "address6");
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
    json_auto_t *vm = dual_stack(vm_fixture());
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
    /* JSON cloud-config and gzip, as rendered */
    _cleanup_free_ char *j = xasprintf("%s/user-data-json", tu_dir);
    _cleanup_free_ char *g = xasprintf("%s/user-data-gz", tu_dir);
    json_object_set_new(vm, "user_data", json_string(ud_text_formats[1]));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    assert_int_equal(file_write_atomic(j, d.user_data, d.user_data_len, 0600), 0);
    cloudinit_docs_clear(&d);
    json_object_del(vm, "user_data");
    json_object_set_new(vm, "user_data_base64", json_string(gz_b64));
    assert_int_equal(cloudinit_render(vm, 0, &d, &why), 0);
    assert_int_equal(file_write_atomic(g, d.user_data, d.user_data_len, 0600), 0);
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
        "assert 'ssh_authorized_keys' not in u, u\n"
        "assert m['public-keys'][1] == 'ssh-rsa AAAAB3Nza\"quoted\" bob', m\n"
        "j = yaml.safe_load(open(sys.argv[4]))\n"
        "assert j['write_files'][0]['path'] == '/x', j\n"
        "import gzip\n"
        "g = yaml.safe_load(gzip.decompress(open(sys.argv[5], 'rb').read()))\n"
        "assert g['runcmd'] == [['touch', '/run/gz']], g\n"
        "e = n['ethernets']['eth0']\n"
        "assert e['match']['macaddress'] == '52:54:00:12:34:56', e\n"
        "assert e['addresses'] == ['10.1.0.5/24', 'fd12:3456:789a:1::5/64'], e\n"
        "assert e['routes'][0]['via'] == '10.1.0.1', e\n"
        "assert e['routes'][1] == {'to': '::/0', 'via': 'fd12:3456:789a:1::1'}, e\n"
        "assert e['nameservers']['addresses'] == ['10.1.0.1', 'fd12:3456:789a:1::1'], e\n"
        "assert e['mtu'] == 1370\n"
        "print('ok')\n";
    int st;
    _cleanup_free_ char *out = tu_run((char *const[]){ "/usr/bin/python3", "-c",
                                                       (char *)prog, m, u, n,
                                                       j, g, NULL }, &st);
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
        cmocka_unit_test(meta_data_has_instance_id_hostname_and_public_keys),
        cmocka_unit_test(user_data_is_the_tenants_byte_for_byte),
        cmocka_unit_test(user_data_limits_and_bad_keys_are_refused),
        cmocka_unit_test(network_config_v2_has_static_addresses),
        cmocka_unit_test(network_config_is_dual_stack),
        cmocka_unit_test(resolvers_are_the_networks_then_the_hubs_then_public_ones),
        cmocka_unit_test(documents_load_as_yaml),
        cmocka_unit_test(seed_is_read_by_xorriso_and_blkid),
    };
    return cmocka_run_group_tests(tests, tu_dir_setup, tu_dir_teardown);
}
