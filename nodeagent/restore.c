/* Restoring a VM's disk from the hub's backup store on the node that VM
 * is placed on: fetch the sealed blob by digest, open it with the VM's
 * key into the overlay, drop the sealed copy. */
#include "nodeagent/restore.h"

#include "api/agentproto.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "images/fetch.h"
#include "nodeagent/backup.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

int restore_disk(struct fetch_cache *cache, const char *controller,
                 const json_t *vm, const char *disk, char **ret_err)
{
    const json_t *rs = json_object_get(vm, AGENT_VM_RESTORE);
    const char *id = json_str(rs, "backup"), *sha = json_str(rs, "sha256");
    const char *key_hex = json_str(vm, AGENT_VM_BACKUP_KEY);
    int64_t size = json_int(rs, "size", 0);
    uint8_t key[BKCRYPT_KEY_LEN];
    _cleanup_free_ char *blob = NULL, *err = NULL;
    int r;

    /* The contract's decoder checked these; the executor checks again
     * before any of them reaches a URL or the cipher. */
    if (!id || !uuid_is_valid(id) || !sha || strlen(sha) != 64 ||
        size <= 0 || !key_hex || strlen(key_hex) != 2 * BKCRYPT_KEY_LEN ||
        hex_decode(key_hex, key, sizeof(key)) < 0) {
        *ret_err = xstrdup(AGENT_RESTORE_FAILED_REASON
                           ": the restore entry is incomplete");
        return -EINVAL;
    }
    if (!cache || !controller) {
        explicit_bzero(key, sizeof(key));
        *ret_err = xstrdup(AGENT_RESTORE_FAILED_REASON
                           ": this node has no cache to fetch backups into");
        return -ENOTSUP;
    }
    _cleanup_free_ char *url = xasprintf("%s%s/%s/blob", controller,
                                         AGENT_BACKUP_PATH, id);
    if ((r = fetch_get(cache, url, sha, (uint64_t)size, &blob, &err)) < 0) {
        explicit_bzero(key, sizeof(key));
        *ret_err = xasprintf(AGENT_RESTORE_FAILED_REASON
                             ": fetching backup %s: %s", id,
                             err ? err : strerror(-r));
        return r;
    }
    /* The disks directory, as disk_overlay_create makes it. */
    _cleanup_free_ char *dir = xstrdup(disk);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if ((r = mkdir_p(dir, 0711)) < 0) {
            explicit_bzero(key, sizeof(key));
            unlink(blob);
            *ret_err = xasprintf(AGENT_RESTORE_FAILED_REASON
                                 ": cannot create '%s': %s", dir,
                                 strerror(-r));
            return r;
        }
    }
    r = backup_open_disk(blob, key, disk, &err);
    explicit_bzero(key, sizeof(key));
    /* Sealed, it is of no use on this node once opened (or unopenable):
     * the cache's budget is for images. */
    unlink(blob);
    if (r < 0) {
        *ret_err = xasprintf(AGENT_RESTORE_FAILED_REASON
                             ": opening backup %s: %s", id,
                             err ? err : strerror(-r));
        return r;
    }
    return 0;
}
