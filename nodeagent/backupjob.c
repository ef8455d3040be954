/* The backup worker (see backupjob.h). The hub says how much of each
 * backup it holds; the node seals once, keeps the sealed file until the
 * hub committed or refused it, and only ever sends what the hub lacks. */
#include "nodeagent/backupjob.h"

#include "api/agentproto.h"
#include "api/client.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "nodeagent/backup.h"
#include "nodeagent/disk.h"
#include "nodeagent/virt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A failed step is tried again after RETRY_MS, or after what the hub's
 * Retry-After asks (a 429 or 503), bounded to RETRY_MIN_MS..RETRY_MAX_MS. */
#define RETRY_MS 5000
#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 60000
#define DONE_MAX 16

struct want {
    char id[UUID_STR_LEN + 1], vm_id[UUID_STR_LEN + 1];
    char parent[UUID_STR_LEN + 1]; /* "" when the hub offers none */
    uint8_t key[BKCRYPT_KEY_LEN];
    bool running;
};

struct backupjob {
    char *dir, *data_dir, *qemu_img, *controller, *credential, *ca_path,
         *key_pin, *uri;
    size_t chunk;
    struct api_client *client;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* Under lock: */
    struct want *want;
    size_t n_want;
    bool synced, changed, stop, exited;
    int64_t retry_at;   /* monotonic ms; 0: now */
    int64_t retry_ms;   /* the pause after a JOB_RETRY (worker only) */
    /* Ids finished lately (committed, failed, gone): the desired state
     * may list them until the hub's next revision arrives. */
    char done[DONE_MAX][UUID_STR_LEN + 1];
    size_t n_done;
};

/* The worker's result for one backup; JOB_GO_ON from a step: the next
 * one follows. */
enum { JOB_GO_ON = -1, JOB_DONE = 0, JOB_RETRY = 1, JOB_STOPPED = 2 };

static char *sealed_path(const struct backupjob *b, const char *id)
{
    return xasprintf("%s/%s.fbk", b->dir, id);
}

/* What a sealed file holds, kept beside it so that a restarted agent
 * commits it as what it is: "full" or "incremental", then a line with
 * why a full one was taken (may be empty). */
static char *mode_path(const struct backupjob *b, const char *id)
{
    return xasprintf("%s/%s.mode", b->dir, id);
}

static bool done_has(const struct backupjob *b, const char *id)
{
    for (size_t i = 0; i < b->n_done && i < DONE_MAX; i++)
        if (streq(b->done[i], id))
            return true;
    return false;
}

/* Whether backup `id` is still to be taken (the worker asks between
 * chunks). */
static bool still_wanted(struct backupjob *b, const char *id)
{
    pthread_mutex_lock(&b->lock);
    bool ok = !b->stop;
    if (ok) {
        ok = false;
        for (size_t i = 0; i < b->n_want; i++)
            if (streq(b->want[i].id, id))
                ok = true;
    }
    pthread_mutex_unlock(&b->lock);
    return ok;
}

static bool stopping(struct backupjob *b)
{
    pthread_mutex_lock(&b->lock);
    bool s = b->stop;
    pthread_mutex_unlock(&b->lock);
    return s;
}

/* Remove sealed files (and leftovers of a seal) of backups not listed
 * in `keep`. */
static void files_prune(struct backupjob *b, const struct want *keep,
                        size_t n_keep)
{
    DIR *d = opendir(b->dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        char id[UUID_STR_LEN + 1];
        if (strlen(de->d_name) < UUID_STR_LEN)
            continue;
        memcpy(id, de->d_name, UUID_STR_LEN);
        id[UUID_STR_LEN] = '\0';
        if (!uuid_is_valid(id))
            continue;
        bool kept = false;
        for (size_t i = 0; i < n_keep; i++)
            if (streq(keep[i].id, id))
                kept = true;
        if (kept)
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            log_info("backup %s abandoned: no longer asked for; removed %s",
                     id, de->d_name);
    }
    closedir(d);
}

/* Drop the sealed file of backup `id` and what says what it holds. */
static void files_drop(struct backupjob *b, const char *id)
{
    _cleanup_free_ char *file = sealed_path(b, id);
    _cleanup_free_ char *mode = mode_path(b, id);
    unlink(file);
    unlink(mode);
}

/* POST fail with `why` and drop the sealed file. */
static int job_fail(struct backupjob *b, const struct want *w,
                    const char *why)
{
    _cleanup_free_ char *path = xasprintf(AGENT_BACKUP_PATH "/%s/fail", w->id);
    _cleanup_free_ char *msg = xstrndup(why, AGENT_BACKUP_ERROR_MAX);
    json_auto_t *body = json_pack("{s:s}", "error", msg);
    struct api_reply rep;
    api_request(b->client, "POST", path, body, NULL, &rep);
    long st = rep.status;
    if (st == 0 || st >= 500 || st == 429) {
        b->retry_ms = api_reply_retry_ms(&rep, RETRY_MS, RETRY_MIN_MS,
                                         RETRY_MAX_MS);
        api_reply_clear(&rep);
        return JOB_RETRY;
    }
    api_reply_clear(&rep);
    files_drop(b, w->id);
    log_warn("backup %s of VM %s failed: %s", w->id, w->vm_id, msg);
    return JOB_DONE;
}

/* The backup is gone from the hub's list of open ones (deleted,
 * committed or failed): drop our file. */
static int job_drop(struct backupjob *b, const struct want *w,
                    const char *what)
{
    files_drop(b, w->id);
    log_info("backup %s of VM %s %s", w->id, w->vm_id, what);
    return JOB_DONE;
}

/* A transient failure: say why once and try again later, when the hub's
 * Retry-After says (a busy or rate-limiting hub), else after RETRY_MS. */
static int job_retry(struct backupjob *b, const struct want *w,
                     const char *step, const struct api_reply *rep)
{
    _cleanup_free_ char *why = api_reply_describe(rep);
    b->retry_ms = api_reply_retry_ms(rep, RETRY_MS, RETRY_MIN_MS,
                                     RETRY_MAX_MS);
    log_warn("backup %s: %s failed (%s); trying again in %lld ms", w->id,
             step, why, (long long)b->retry_ms);
    return JOB_RETRY;
}

/* GET the hub's size. *ret_size, or a JOB_* result to return. */
static int hub_size(struct backupjob *b, const struct want *w,
                    uint64_t *ret_size)
{
    _cleanup_free_ char *path = xasprintf(AGENT_BACKUP_PATH "/%s", w->id);
    struct api_reply rep;
    api_request(b->client, "GET", path, NULL, NULL, &rep);
    int r = JOB_GO_ON;
    if (rep.status == 200 && json_int(rep.json, "size", -1) >= 0) {
        if (json_is_true(json_object_get(rep.json, "committed")))
            r = job_drop(b, w, "is committed");
        else
            *ret_size = (uint64_t)json_int(rep.json, "size", 0);
    } else if (rep.status == 404 || rep.status == 409) {
        r = job_drop(b, w, "is no longer open on the hub: abandoned");
    } else {
        r = job_retry(b, w, "asking the hub's size", &rep);
    }
    api_reply_clear(&rep);
    return r;
}

/* Copy the VM's disk into plain qcow2 `plain`: through libvirt's backup
 * API when the VM runs (only what changed since w->parent when the domain
 * holds that checkpoint), else with qemu-img. *ret_incremental, and why
 * a full copy was taken in *ret_why (caller frees; NULL when the hub
 * asked for a full one and got it). 0 or -errno with *ret_err. */
static int disk_copy(struct backupjob *b, const struct want *w,
                     const char *disk, const char *plain,
                     bool *ret_incremental, char **ret_why, char **ret_err)
{
    *ret_incremental = false;
    struct virt *v = NULL;
    if (!w->running)
        *ret_why = xstrdup("the VM was not running");
    else if (!b->uri || virt_open(b->uri, NULL, NULL, &v) < 0)
        *ret_why = xstrdup("libvirt could not be reached for a backup job");
    int e = -EOPNOTSUPP;
    /* QEMU writes the copy: beside the disk it can reach, moved to the
     * backups directory (the agent's own) once done. */
    _cleanup_free_ char *tgt = xasprintf("%s.backup", disk);
    if (v) {
        /* A checkpoint of this backup left by an earlier try goes. */
        virt_checkpoint_delete(v, w->vm_id, w->id);
        int has = w->parent[0] ?
            virt_checkpoint_exists(v, w->vm_id, w->parent) : 0;
        if (has == 1) {
            unlink(tgt);
            e = virt_backup_disk(v, w->vm_id, tgt, w->parent, w->id);
            /* Its unchanged clusters read through to the VM's disk:
             * restored, they come from the backups under it instead. */
            _cleanup_free_ char *derr = NULL;
            if (e == 0 && (e = backup_detach(b->qemu_img, tgt, &derr)) < 0)
                *ret_why = xasprintf("the incremental copy could not be "
                                     "made standalone: %s", derr);
            else if (e == 0)
                *ret_incremental = true;
            else
                *ret_why = xasprintf("the incremental copy failed: %s",
                                     virt_error());
        } else if (w->parent[0]) {
            *ret_why = has < 0 ?
                xasprintf("the checkpoints could not be read: %s",
                          virt_error()) :
                xasprintf("the VM's disk holds no checkpoint of backup %s "
                          "(moved, restored, reverted or pruned since)",
                          w->parent);
        }
        if (e < 0) {
            unlink(tgt);
            virt_checkpoint_delete(v, w->vm_id, w->id);
            e = virt_backup_disk(v, w->vm_id, tgt, NULL, w->id);
            if (e < 0 && !*ret_why)
                *ret_why = e == -EOPNOTSUPP ?
                    xstrdup("the hypervisor has no backup API") :
                    xasprintf("libvirt's backup job failed: %s",
                              virt_error());
        }
        /* The new checkpoint is the only one kept: bitmaps never grow in
         * number, and the next backup builds on this one. */
        if (e == 0 && virt_checkpoints_prune(v, w->vm_id, w->id) < 0)
            log_warn("backup %s: cannot prune the VM's older checkpoints: "
                     "%s", w->id, virt_error());
        if (e == 0 && rename(tgt, plain) < 0) {
            e = -errno;
            log_warn("backup %s: cannot move the copy to '%s': %s", w->id,
                     plain, strerror(-e));
        }
        if (e < 0) {
            virt_checkpoint_delete(v, w->vm_id, w->id);
            unlink(tgt);
        }
        virt_free(v);
    }
    if (e == 0)
        return 0;
    unlink(plain);
    return backup_copy_disk(b->qemu_img, disk, w->running, plain, ret_err);
}

/* Seal the VM's disk into the backup's file (under a temporary name, so
 * a file there is always whole, and its mode file first); its size and
 * SHA-256 into *ret_size and sha. JOB_GO_ON, or a JOB_* result. */
static int job_seal(struct backupjob *b, const struct want *w,
                    const char *file, uint64_t *ret_size, char sha[65])
{
    _cleanup_free_ char *disk = disk_overlay_path(b->data_dir, w->vm_id);
    if (access(disk, F_OK) < 0)
        return job_fail(b, w, "the VM's disk is missing on its node");
    _cleanup_free_ char *tmp = xasprintf("%s.new", file);
    _cleanup_free_ char *plain = xasprintf("%s.plain", file);
    _cleanup_free_ char *mode = mode_path(b, w->id);
    _cleanup_free_ char *err = NULL, *why = NULL;
    uint64_t size = 0;
    int64_t t0 = mono_ms();
    bool incremental = false;
    int e = disk_copy(b, w, disk, plain, &incremental, &why, &err);
    if (e == 0)
        e = backup_seal_plain(plain, w->key, tmp, &size, sha, &err);
    if (e == 0) {
        _cleanup_free_ char *text = xasprintf(
            "%s\n%s\n", incremental ? BACKUP_MODE_INCREMENTAL :
            BACKUP_MODE_FULL, why ? why : "");
        e = file_write_atomic(mode, text, strlen(text), 0600);
        if (e < 0)
            err = xasprintf("cannot write '%s': %s", mode, strerror(-e));
    }
    if (e == 0 && rename(tmp, file) < 0) {
        e = -errno;
        err = xasprintf("cannot place the sealed disk: %s", strerror(-e));
    }
    if (e < 0) {
        unlink(tmp);
        unlink(mode);
        _cleanup_free_ char *msg = xasprintf("sealing the disk failed: %s",
                                             err ? err : strerror(-e));
        return job_fail(b, w, msg);
    }
    log_info("backup %s of VM %s sealed: %s, %llu bytes in %lld ms%s%s%s",
             w->id, w->vm_id, incremental ? "incremental" : "full",
             (unsigned long long)size, (long long)(mono_ms() - t0),
             w->running ? " (running)" : "", why ? "; full: " : "",
             why ? why : "");
    *ret_size = size;
    return JOB_GO_ON;
}

/* PUT the file from the hub's *off to its end. JOB_GO_ON when all is
 * sent, else a JOB_* result. */
static int job_upload(struct backupjob *b, const struct want *w, int fd,
                      uint64_t fsize, uint64_t *off, uint8_t *buf)
{
    while (*off < fsize) {
        if (!still_wanted(b, w->id))
            return stopping(b) ? JOB_STOPPED :
                job_drop(b, w, "is no longer asked for: abandoned");
        size_t len = fsize - *off < b->chunk ? (size_t)(fsize - *off) :
                                               b->chunk;
        ssize_t got = pread(fd, buf, len, (off_t)*off);
        if (got != (ssize_t)len) {
            _cleanup_free_ char *why = xasprintf(
                "cannot read the sealed file: %s",
                got < 0 ? strerror(errno) : "short read");
            return job_fail(b, w, why);
        }
        _cleanup_free_ char *path = xasprintf(AGENT_BACKUP_PATH
                                              "/%s?offset=%llu", w->id,
                                              (unsigned long long)*off);
        struct api_reply rep;
        api_request_raw(b->client, "PUT", path, buf, len,
                        "application/octet-stream", &rep);
        int64_t size = json_int(rep.json, "size", -1);
        int r = JOB_GO_ON;
        if ((rep.status == 200 || rep.status == 409) && size >= 0) {
            if (rep.status == 409)
                log_info("backup %s: the hub holds %lld bytes, not %llu; "
                         "going on from there", w->id, (long long)size,
                         (unsigned long long)*off);
            *off = (uint64_t)size;
        } else if (rep.status == 404 || rep.status == 409) {
            r = job_drop(b, w, "is no longer open on the hub: abandoned");
        } else if (rep.status == 413) {
            r = job_fail(b, w, "the backup is larger than the hub keeps");
        } else if (rep.status >= 400 && rep.status < 500 &&
                   rep.status != 429 && rep.status != 408) {
            _cleanup_free_ char *why = api_reply_describe(&rep);
            _cleanup_free_ char *msg = xasprintf("the hub refused the "
                                                 "upload: %s", why);
            r = job_fail(b, w, msg);
        } else {
            r = job_retry(b, w, "an upload", &rep);
        }
        api_reply_clear(&rep);
        if (r != JOB_GO_ON)
            return r;
    }
    return JOB_GO_ON;
}

/* Take backup w from wherever it stands. A JOB_* result. */
static int job_run(struct backupjob *b, const struct want *w)
{
    uint64_t hub = 0;
    int r = hub_size(b, w, &hub);
    if (r != JOB_GO_ON)
        return r;
    _cleanup_free_ char *file = sealed_path(b, w->id);
    _cleanup_free_ char *mpath = mode_path(b, w->id);
    _cleanup_free_ char *mode = NULL;
    bool fresh = false;
    uint64_t fsize = 0;
    char sha[65];
    /* A sealed file without its mode (an agent older than incremental
     * backups) is not trusted to be a full one: sealed again. */
    if (access(file, F_OK) == 0 && file_read(mpath, 4096, &mode, NULL) < 0)
        files_drop(b, w->id);
    if (access(file, F_OK) < 0) {
        if ((r = job_seal(b, w, file, &fsize, sha)) != JOB_GO_ON)
            return r;
        fresh = true;
        free(mode);
        mode = NULL;
        if (file_read(mpath, 4096, &mode, NULL) < 0)
            return job_fail(b, w, "the sealed backup's mode file is gone");
    }
    /* "full" or "incremental", a newline, why a full one (may be empty). */
    char *nl = strchr(mode, '\n');
    const char *full_why = nl ? nl + 1 : "";
    if (nl)
        *nl = '\0';
    if ((nl = strchr(full_why, '\n')))
        *nl = '\0';
    bool incremental = streq(mode, BACKUP_MODE_INCREMENTAL);
    _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    /* A file sealed earlier (before a restart) is hashed again; a fresh
     * one's digest came with its sealing. */
    if (fd < 0 || (!fresh && sha256_fd(fd, &fsize, sha) < 0)) {
        _cleanup_free_ char *why = xasprintf("cannot read the sealed file: %s",
                                             strerror(errno));
        return job_fail(b, w, why);
    }
    if (hub > 0)
        log_info("backup %s: resuming at %llu of %llu bytes%s", w->id,
                 (unsigned long long)hub, (unsigned long long)fsize,
                 fresh ? " (sealed again: the hub's bytes will not match)" :
                         "");
    _cleanup_free_ uint8_t *buf = xmalloc(b->chunk);
    /* A fresh seal (new salt) never continues older bytes: a commit
     * refused with 422 makes the hub start over from 0. */
    uint64_t off = fresh && hub > 0 ? fsize : hub;
    for (int round = 0;; round++) {
        if ((r = job_upload(b, w, fd, fsize, &off, buf)) != JOB_GO_ON)
            return r;
        _cleanup_free_ char *path = xasprintf(AGENT_BACKUP_PATH
                                              "/%s/commit", w->id);
        json_auto_t *body = json_pack("{s:I, s:s, s:s}", "size",
                                      (json_int_t)fsize, "sha256", sha,
                                      "mode", incremental ?
                                      BACKUP_MODE_INCREMENTAL :
                                      BACKUP_MODE_FULL);
        if (!incremental && *full_why)
            json_object_set_new(body, "full_reason", json_stringn(
                full_why, strnlen(full_why, AGENT_BACKUP_ERROR_MAX)));
        struct api_reply rep;
        api_request(b->client, "POST", path, body, NULL, &rep);
        long st = rep.status;
        if (st == 200) {
            api_reply_clear(&rep);
            files_drop(b, w->id);
            log_info("backup %s of VM %s committed: %llu bytes, sha256 %s",
                     w->id, w->vm_id, (unsigned long long)fsize, sha);
            return JOB_DONE;
        }
        if (st == 422 && round == 0) {
            api_reply_clear(&rep);
            log_info("backup %s: the hub's copy did not match; sending it "
                     "again from 0", w->id);
            off = 0;
            continue;
        }
        if (st == 404 || st == 409)
            r = job_drop(b, w, "is no longer open on the hub: abandoned");
        else if (st == 422)
            r = job_fail(b, w, "the hub's copy did not match the sealed "
                         "file twice");
        else if (st >= 400 && st < 500 && st != 429 && st != 408) {
            _cleanup_free_ char *why = api_reply_describe(&rep);
            _cleanup_free_ char *msg = xasprintf("the hub refused the "
                                                 "commit: %s", why);
            r = job_fail(b, w, msg);
        } else
            r = job_retry(b, w, "the commit", &rep);
        api_reply_clear(&rep);
        return r;
    }
}

static void *worker_main(void *arg)
{
    struct backupjob *b = arg;
    pthread_mutex_lock(&b->lock);
    while (!b->stop) {
        if (b->changed) {
            /* Files of backups no longer listed go (the list is copied:
             * the directory is read without the lock). */
            b->changed = false;
            size_t n = b->n_want;
            _cleanup_free_ struct want *keep = n ?
                xmalloc(n * sizeof(*keep)) : NULL;
            if (keep)
                memcpy(keep, b->want, n * sizeof(*keep));
            pthread_mutex_unlock(&b->lock);
            files_prune(b, keep, n);
            if (keep)
                explicit_bzero(keep, n * sizeof(*keep));
            pthread_mutex_lock(&b->lock);
            continue;
        }
        struct want *pick = NULL;
        for (size_t i = 0; i < b->n_want && !pick; i++)
            if (!done_has(b, b->want[i].id))
                pick = &b->want[i];
        int64_t now = mono_ms();
        if (!pick || now < b->retry_at) {
            if (!pick || b->retry_at == 0) {
                pthread_cond_wait(&b->cond, &b->lock);
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                int64_t left = b->retry_at - now;
                ts.tv_sec += left / 1000;
                ts.tv_nsec += (left % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&b->cond, &b->lock, &ts);
            }
            continue;
        }
        struct want w = *pick;
        b->retry_at = 0;
        pthread_mutex_unlock(&b->lock);
        b->retry_ms = RETRY_MS;
        int r = job_run(b, &w);
        explicit_bzero(w.key, sizeof(w.key));
        pthread_mutex_lock(&b->lock);
        if (r == JOB_RETRY)
            b->retry_at = mono_ms() + b->retry_ms;
        else if (r == JOB_DONE)
            snprintf(b->done[b->n_done++ % DONE_MAX], UUID_STR_LEN + 1,
                     "%s", w.id);
    }
    b->exited = true;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

struct backupjob *backupjob_new(const struct backupjob_opts *o)
{
    struct backupjob *b = xcalloc(1, sizeof(*b));
    b->data_dir = xstrdup(o->data_dir);
    b->dir = xasprintf("%s/backups", o->data_dir);
    b->qemu_img = xstrdup(o->qemu_img);
    b->uri = o->uri ? xstrdup(o->uri) : NULL;
    b->chunk = o->chunk && o->chunk <= AGENT_BACKUP_CHUNK_MAX ?
        o->chunk : AGENT_BACKUP_CHUNK_MAX;
    b->client = api_client_new(o->controller, o->credential, o->ca_path);
    api_client_set_key_pin(b->client, o->key_pin);
    /* A chunk may take long on a slow uplink: no total limit, but a
     * transfer that stalls is given up. */
    api_client_set_timeout(b->client, 0);
    api_client_set_stall(b->client, 30);
    api_client_set_connect_timeout(b->client, 10);
    int e = mkdir_p(b->dir, 0700);
    if (e < 0)
        log_warn("cannot make '%s': %s; backups will fail", b->dir,
                 strerror(-e));
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    pthread_create(&b->thread, NULL, worker_main, b);
    return b;
}

void backupjob_free(struct backupjob *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    b->stop = true;
    pthread_cond_broadcast(&b->cond);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 3;
    while (!b->exited)
        if (pthread_cond_timedwait(&b->cond, &b->lock, &ts) == ETIMEDOUT)
            break;
    bool exited = b->exited;
    pthread_mutex_unlock(&b->lock);
    if (!exited) {
        /* Busy in qemu-img or a request: the process ends under it. */
        pthread_detach(b->thread);
        return;
    }
    pthread_join(b->thread, NULL);
    api_client_free(b->client);
    if (b->want)
        explicit_bzero(b->want, b->n_want * sizeof(*b->want));
    free(b->want);
    free(b->dir);
    free(b->data_dir);
    free(b->qemu_img);
    free(b->uri);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
    free(b);
}

void backupjob_sync(struct backupjob *b, const json_t *doc,
                    const struct virt_dom *doms, size_t n)
{
    struct want *want = NULL;
    size_t n_want = 0, cap = 0;
    size_t i;
    json_t *vm;
    json_array_foreach(json_object_get(doc, "vms"), i, vm) {
        const char *vm_id = json_str(vm, "id");
        const char *key = json_str(vm, AGENT_VM_BACKUP_KEY);
        json_t *list = json_object_get(vm, AGENT_VM_BACKUPS);
        if (!uuid_is_valid(vm_id) || !is_lower_hex(key, 2 * BKCRYPT_KEY_LEN) ||
            !json_is_array(list))
            continue;
        const struct virt_dom *d = virt_doms_find(doms, n, vm_id);
        if (!d) /* not defined yet: its disk may not exist */
            continue;
        size_t j;
        json_t *e;
        json_array_foreach(list, j, e) {
            const char *id = json_str(e, "id");
            if (!uuid_is_valid(id))
                continue;
            if (n_want == cap) {
                cap = cap ? 2 * cap : 4;
                want = xrealloc(want, cap * sizeof(*want));
            }
            struct want *w = &want[n_want++];
            memset(w, 0, sizeof(*w));
            snprintf(w->id, sizeof(w->id), "%s", id);
            snprintf(w->vm_id, sizeof(w->vm_id), "%s", vm_id);
            const char *parent = json_str(e, AGENT_VM_BACKUP_PARENT);
            if (parent && uuid_is_valid(parent))
                snprintf(w->parent, sizeof(w->parent), "%s", parent);
            hex_decode(key, w->key, sizeof(w->key));
            w->running = d->state == VIRT_RUNNING || d->state == VIRT_PAUSED;
        }
    }
    pthread_mutex_lock(&b->lock);
    bool same = n_want == b->n_want && b->synced;
    for (size_t k = 0; same && k < n_want; k++)
        same = streq(want[k].id, b->want[k].id) &&
               want[k].running == b->want[k].running &&
               streq(want[k].parent, b->want[k].parent) &&
               !memcmp(want[k].key, b->want[k].key, sizeof(want[k].key));
    if (!same) {
        if (b->want)
            explicit_bzero(b->want, b->n_want * sizeof(*b->want));
        free(b->want);
        b->want = TAKE_PTR(want);
        b->n_want = n_want;
        b->synced = b->changed = true;
        pthread_cond_broadcast(&b->cond);
    }
    pthread_mutex_unlock(&b->lock);
    if (want) {
        explicit_bzero(want, n_want * sizeof(*want));
        free(want);
    }
}
