/* NoCloud seeds for the VMs of this node, built on the start path from the
 * desired state with images/cloudinit (no appliance is booted). */
#include "nodeagent/guestseed.h"

#include "common/buf.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "images/cloudinit.h"

#include <errno.h>
#include <stdio.h>

char *guestseed_path(const char *data_dir, const char *vm_id)
{
    return xasprintf("%s/seeds/%s.iso", data_dir, vm_id);
}

int guestseed_ensure(const char *data_dir, const json_t *vm, bool gateway_dns,
                     char known[65], char **ret_err)
{
    const char *id = json_str(vm, "id");
    if (!uuid_is_valid(id)) {
        *ret_err = xstrdup("guest configuration: bad VM id");
        return -EINVAL;
    }
    struct cloudinit_docs docs;
    _cleanup_free_ char *why = NULL;
    json_auto_t *entry = json_copy((json_t *)vm);
    if (gateway_dns)
        json_object_set_new(entry, "gateway_dns", json_true());
    int r = cloudinit_render(entry, 0, &docs, &why);
    if (r < 0) {
        *ret_err = xasprintf("guest configuration: %s",
                             why ? why : strerror(-r));
        return r;
    }
    struct buf all = BUF_INIT;
    /* Each document with its NUL, so no two seeds share a digest. */
    buf_append(&all, docs.meta_data, strlen(docs.meta_data) + 1);
    buf_append(&all, docs.user_data, docs.user_data_len);
    buf_append(&all, "", 1);
    buf_append(&all, docs.network_config, strlen(docs.network_config) + 1);
    char digest[65];
    sha256_hex(all.data, all.len, digest);
    buf_free(&all);
    _cleanup_free_ char *path = guestseed_path(data_dir, id);
    if (streq(known, digest) && access(path, F_OK) == 0) {
        cloudinit_docs_clear(&docs);
        return 0;
    }
    _cleanup_free_ char *dir = xasprintf("%s/seeds", data_dir);
    if ((r = mkdir_p(dir, 0711)) < 0) {
        *ret_err = xasprintf("cannot create '%s': %s", dir, strerror(-r));
        cloudinit_docs_clear(&docs);
        return r;
    }
    /* User-data may hold secrets; libvirt gives the hypervisor access. */
    r = cloudinit_seed_write(path, &docs, 0600);
    cloudinit_docs_clear(&docs);
    if (r < 0) {
        *ret_err = xasprintf("cannot write the seed '%s': %s", path,
                             strerror(-r));
        return r;
    }
    memcpy(known, digest, 65);
    return 0;
}
