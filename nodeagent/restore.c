/* Restoring a VM's disk from the hub's backup store on the node that VM
 * is placed on: fetch the sealed blob by digest, open it with the VM's
 * key into the overlay, drop the sealed copy. An incremental backup comes
 * with its chain: each piece fetched and opened, stacked and flattened. */
#include "nodeagent/restore.h"

#include "api/agentmsg.h"
#include "api/agentproto.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "images/fetch.h"
#include "nodeagent/backup.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* Fetch backup `p` and open it with `key` into plain qcow2 `out`. 0, or
 * -errno with *ret_err beginning AGENT_RESTORE_FAILED_REASON. */
static int piece_open(struct fetch_cache *cache, const char *controller,
                      const struct am_restore *p,
                      const uint8_t key[BKCRYPT_KEY_LEN], const char *out,
                      char **ret_err)
{
    _cleanup_free_ char *blob = NULL, *err = NULL;
    _cleanup_free_ char *url = xasprintf("%s%s/%s/blob", controller,
                                         AGENT_BACKUP_PATH, p->backup);
    int r = fetch_get(cache, url, p->sha256, (uint64_t)p->size, &blob, &err);
    if (r < 0) {
        *ret_err = xasprintf(AGENT_RESTORE_FAILED_REASON
                             ": fetching backup %s: %s", p->backup,
                             err ? err : strerror(-r));
        return r;
    }
    r = backup_open_disk(blob, key, out, &err);
    /* Sealed, it is of no use on this node once opened (or unopenable):
     * the cache's budget is for images. */
    unlink(blob);
    if (r < 0)
        *ret_err = xasprintf(AGENT_RESTORE_FAILED_REASON
                             ": opening backup %s: %s", p->backup,
                             err ? err : strerror(-r));
    return r;
}

/* One {backup, size, sha256} of the restore entry or its chain. */
static bool piece_read(const json_t *o, struct am_restore *p)
{
    const char *id = json_str(o, "backup"), *sha = json_str(o, "sha256");
    p->size = json_int(o, "size", 0);
    if (!id || !uuid_is_valid(id) || !sha || !is_lower_hex(sha, 64) ||
        p->size <= 0)
        return false;
    snprintf(p->backup, sizeof(p->backup), "%s", id);
    snprintf(p->sha256, sizeof(p->sha256), "%s", sha);
    return true;
}

int restore_disk(struct fetch_cache *cache, const char *controller,
                 const char *qemu_img, const json_t *vm, const char *disk,
                 char **ret_err)
{
    const json_t *rs = json_object_get(vm, AGENT_VM_RESTORE);
    const json_t *chain = json_object_get(rs, AGENT_RESTORE_CHAIN);
    const char *key_hex = json_str(vm, AGENT_VM_BACKUP_KEY);
    uint8_t key[BKCRYPT_KEY_LEN];
    int r;

    /* The contract's decoder checked these; the executor checks again
     * before any of them reaches a URL or the cipher. The chain comes
     * first, the restored backup last. */
    size_t n = json_array_size(chain) + 1;
    _cleanup_free_ struct am_restore *pieces = xcalloc(n, sizeof(*pieces));
    bool ok = n <= BACKUP_CHAIN_MAX + 1 && piece_read(rs, &pieces[n - 1]);
    for (size_t i = 0; ok && i + 1 < n; i++)
        ok = piece_read(json_array_get(chain, i), &pieces[i]);
    if (!ok || !key_hex || strlen(key_hex) != 2 * BKCRYPT_KEY_LEN ||
        hex_decode(key_hex, key, sizeof(key)) < 0) {
        *ret_err = xstrdup(AGENT_RESTORE_FAILED_REASON
                           ": the restore entry is incomplete");
        return -EINVAL;
    }
    if (!cache || !controller || (n > 1 && !qemu_img)) {
        explicit_bzero(key, sizeof(key));
        *ret_err = xstrdup(AGENT_RESTORE_FAILED_REASON
                           ": this node has no cache to fetch backups into");
        return -ENOTSUP;
    }
    /* The disks directory, as disk_overlay_create makes it. */
    _cleanup_free_ char *dir = xstrdup(disk);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if ((r = mkdir_p(dir, 0711)) < 0) {
            explicit_bzero(key, sizeof(key));
            *ret_err = xasprintf(AGENT_RESTORE_FAILED_REASON
                                 ": cannot create '%s': %s", dir,
                                 strerror(-r));
            return r;
        }
    }
    if (n == 1) {
        r = piece_open(cache, controller, &pieces[0], key, disk, ret_err);
        explicit_bzero(key, sizeof(key));
        return r;
    }
    /* An incremental backup: each piece opened beside the disk, stacked
     * in order and flattened into it; the pieces go either way. */
    char **paths = xcalloc(n, sizeof(*paths));
    r = 0;
    for (size_t i = 0; i < n; i++)
        paths[i] = xasprintf("%s.piece%zu", disk, i);
    for (size_t i = 0; i < n && r == 0; i++)
        r = piece_open(cache, controller, &pieces[i], key, paths[i], ret_err);
    explicit_bzero(key, sizeof(key));
    _cleanup_free_ char *err = NULL;
    if (r == 0 && (r = backup_stack(qemu_img, paths, n, disk, &err)) < 0)
        *ret_err = xasprintf(AGENT_RESTORE_FAILED_REASON
                             ": stacking backup %s on the %zu under it: %s",
                             pieces[n - 1].backup, n - 1,
                             err ? err : strerror(-r));
    for (size_t i = 0; i < n; i++) {
        unlink(paths[i]);
        free(paths[i]);
    }
    free(paths);
    return r;
}
