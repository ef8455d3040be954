/* cloud-init NoCloud rendering (images/cloudinit.c) of a desired VM entry
 * with hostile names, user-data, SSH keys and NICs, and the `cidata` ISO
 * written from the result (images/seed.c). Nothing the tenant controls
 * may add a line to meta-data or network-config. */
#include "tests/fuzz/fuzz.h"
#include "common/buf.h"
#include "images/cloudinit.h"
#include "images/seed.h"

static size_t lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static bool contains(const struct buf *b, const char *s)
{
    size_t len = strlen(s);
    return len == 0 || memmem(b->data, b->len, s, len) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    json_auto_t *vm = json_loadb((const char *)data + 1, size - 1,
                                 JSON_ALLOW_NUL, NULL);
    if (!vm)
        return 0;
    /* The limit: the default, or a small one the input can cross. */
    size_t max = data[0] & 1 ? 0 : data[0];
    struct cloudinit_docs d = { 0 };
    char *why = NULL;
    if (cloudinit_render(vm, max, &d, &why) < 0) {
        if (!why)
            abort();
        free(why);
        return 0;
    }
    if (lines(d.meta_data) !=
        2 + (json_array_size(json_object_get(vm, "ssh_keys")) > 0
                 ? 1 + json_array_size(json_object_get(vm, "ssh_keys"))
                 : 0))
        abort(); /* instance-id, local-hostname, one line per key */
    size_t nics = json_array_size(json_object_get(vm, "nics"));
    if (!startswith(d.network_config, "version: 2\n") ||
        lines(d.network_config) > 1 + 1 + nics * 16)
        abort();
    const char *ud = json_str(vm, "user_data");
    if (ud && *ud && (d.user_data_len != strlen(ud) || !streq(d.user_data, ud)))
        abort(); /* the tenant's user-data is passed on untouched */

    const struct seed_file files[] = {
        { "meta-data", d.meta_data, strlen(d.meta_data) },
        { "user-data", d.user_data, d.user_data_len },
        { "network-config", d.network_config, strlen(d.network_config) },
    };
    struct buf iso = BUF_INIT;
    if (seed_iso_build("cidata", files, ARRAY_SIZE(files), 1700000000, &iso) < 0 ||
        iso.len % 2048 != 0 || !contains(&iso, d.meta_data) ||
        !memmem(iso.data, iso.len, d.user_data, d.user_data_len) ||
        !contains(&iso, d.network_config))
        abort(); /* every rendered document fits the seed, whole */
    buf_free(&iso);
    cloudinit_docs_clear(&d);
    return 0;
}
