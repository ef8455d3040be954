/* The image catalog's content and background work. Content is stored once
 * per digest under DATA/images/<sha256>; rows in `images` point at it.
 * Imports from URLs and libguestfs inspections run on two worker threads,
 * so a slow download never waits behind a 30-second appliance boot. */
#include "controller/catalog.h"

#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/handlers.h"
#include "controller/inspect.h"
#include "images/addrpolicy.h"
#include "images/fetch.h"
#include "images/imgcheck.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#define TEMPLATE_MAX_BYTES (64 * 1024)
#define SHUTDOWN_GRACE_S 3

enum job_kind { JOB_IMPORT, JOB_INSPECT, JOB_KIND_MAX };

struct job {
    struct app *app;
    char image_id[UUID_STR_LEN + 1];
    struct job *next;
};

struct worker {
    pthread_t thr;
    bool running;
    struct job *head, *tail;
};

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static struct worker workers[JOB_KIND_MAX];
static volatile int stopping;
/* Held while content files are renamed in or collected, so catalog_gc
 * never removes a file whose row is being written. */
static pthread_mutex_t content_lock = PTHREAD_MUTEX_INITIALIZER;

static char *images_dir(struct app *a)
{
    return xasprintf("%s/images", a->cfg.data_dir);
}

char *catalog_path(struct app *a, const char *sha256)
{
    return xasprintf("%s/images/%s", a->cfg.data_dir, sha256);
}

/* The image is `error`: the owner reads `reason`; the event, which only
 * admins read, carries `detail` when given. The event comes first, so
 * whoever sees the state finds the event too. */
static void image_fail_detail(struct app *a, const char *id,
                              const char *reason, const char *detail)
{
    app_event(a, NULL, "catalog", "image-error", id, 422,
               detail ? detail : reason);
    store_exec(a->store, "UPDATE images SET state = 'error', state_reason = "
               "$1 WHERE id = $2", "ss", reason, id);
    /* VMs created from a template while the hub imported its image wait
     * for it: they fail with the reason, and the hub's own import leaves
     * nothing in the catalog (the next create tries again). */
    json_auto_t *img = NULL;
    if (store_query_one(a->store, &img, "SELECT name, template_import FROM "
                        "images WHERE id = $1", "s", id) < 0)
        return;
    _cleanup_free_ char *why = xasprintf("image '%s' could not be imported: "
                                         "%s", json_str(img, "name"), reason);
    store_exec(a->store, "UPDATE vms SET state = 'error', state_reason = $1, "
               "updated_at = $2 WHERE image_id = $3 AND node_id IS NULL AND "
               "deleted_at IS NULL AND state = 'pending'", "sis", why,
               now_s(), id);
    if (json_int(img, "template_import", 0))
        store_exec(a->store, "UPDATE images SET deleted_at = $1 WHERE id = "
                   "$2 AND deleted_at IS NULL", "is", now_s(), id);
}

static void image_fail(struct app *a, const char *id, const char *reason)
{
    image_fail_detail(a, id, reason, NULL);
}

int catalog_import_policy(struct app *a, struct addrpolicy **ret,
                          char **ret_reason)
{
    struct addrpolicy *p;
    int e = addrpolicy_new(a->cfg.import_allow, &p, ret_reason);
    if (e < 0)
        return e;
    /* Without the interface list the host's own public address would
     * pass as public: refuse to judge rather than guess. */
    if ((e = addrpolicy_add_interfaces(p)) < 0) {
        addrpolicy_free(p);
        if (ret_reason)
            *ret_reason = xasprintf("cannot list this host's addresses: %s",
                                    strerror(-e));
        return e;
    }
    addrpolicy_add_listen(p, a->cfg.listen);
    *ret = p;
    return 0;
}

/* What the image's owner is told about a failed import: a few fixed
 * sentences, never libcurl's words (they tell open ports from closed
 * ones) nor the digest of what came back. */
static const char *import_reason(int err)
{
    switch (err) {
    case -EACCES:
        return CATALOG_IMPORT_NOT_ALLOWED;
    case -EBADMSG:
        return CATALOG_IMPORT_MISMATCH;
    default:
        return CATALOG_IMPORT_FAILED;
    }
}

static void job_run(enum job_kind kind, struct job *j);
void catalog_resume(struct app *a);

static void *worker_main(void *arg)
{
    enum job_kind kind = (enum job_kind)(intptr_t)arg;
    struct worker *w = &workers[kind];
    pthread_mutex_lock(&q_lock);
    for (;;) {
        while (!w->head && !stopping)
            pthread_cond_wait(&q_cond, &q_lock);
        if (stopping)
            break;
        struct job *j = w->head;
        w->head = j->next;
        if (!w->head)
            w->tail = NULL;
        pthread_mutex_unlock(&q_lock);
        job_run(kind, j);
        free(j);
        pthread_mutex_lock(&q_lock);
    }
    pthread_mutex_unlock(&q_lock);
    return NULL;
}

static void job_queue(enum job_kind kind, struct app *a, const char *id)
{
    struct job *j = xcalloc(1, sizeof(*j));
    j->app = a;
    snprintf(j->image_id, sizeof(j->image_id), "%s", id);
    pthread_mutex_lock(&q_lock);
    if (stopping) {
        pthread_mutex_unlock(&q_lock);
        free(j);
        return;
    }
    struct worker *w = &workers[kind];
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    if (!w->running) {
        if (pthread_create(&w->thr, NULL, worker_main,
                           (void *)(intptr_t)kind) == 0)
            w->running = true;
        else
            log_error("catalog: cannot start a worker thread");
    }
    pthread_cond_broadcast(&q_cond);
    pthread_mutex_unlock(&q_lock);
}

/* ---- accepting content ---- */

int catalog_accept(struct app *a, const char *image_id, const char *tmp_path,
                   const char *sha256)
{
    struct imgcheck_info info;
    _cleanup_free_ char *why = NULL;
    uint64_t max = (uint64_t)a->cfg.max_image_gib << 30;

    int e = imgcheck_file(tmp_path, max, &info, &why);
    if (e < 0) {
        unlink(tmp_path);
        image_fail(a, image_id, why ? why : "not a usable disk image");
        return -EINVAL;
    }
    if (!sha256 || strlen(sha256) != 64 || !is_hex(sha256, 64)) {
        unlink(tmp_path);
        image_fail(a, image_id, "image digest is malformed");
        return -EINVAL;
    }
    _cleanup_free_ char *dir = images_dir(a);
    _cleanup_free_ char *final = catalog_path(a, sha256);
    pthread_mutex_lock(&content_lock);
    if ((e = mkdir_p(dir, 0700)) < 0 || rename(tmp_path, final) < 0) {
        e = e < 0 ? e : -errno;
        pthread_mutex_unlock(&content_lock);
        unlink(tmp_path);
        _cleanup_free_ char *msg = xasprintf("cannot store the image: %s",
                                             strerror(-e));
        image_fail(a, image_id, msg);
        return e;
    }
    chmod(final, 0600);
    int64_t min_gib = (int64_t)((info.virtual_size + (1ULL << 30) - 1) >> 30);
    store_exec(a->store,
               "UPDATE images SET state = 'ready', state_reason = NULL, "
               "format = $1, size = $2, virtual_size = $3, sha256 = $4, "
               "min_disk_gib = CASE WHEN min_disk_gib < $5 THEN $5 ELSE "
               "min_disk_gib END, inspection = 'pending' WHERE id = $6",
               "siisis", imgcheck_format_name(info.format),
               (int64_t)info.file_size, (int64_t)info.virtual_size, sha256,
               min_gib < 1 ? (int64_t)1 : min_gib, image_id);
    /* VMs that waited for this image get the disk it needs. */
    store_exec(a->store, "UPDATE vms SET disk_gib = $1 WHERE image_id = $2 "
               "AND node_id IS NULL AND disk_gib < $1", "is",
               min_gib < 1 ? (int64_t)1 : min_gib, image_id);
    pthread_mutex_unlock(&content_lock);
    job_queue(JOB_INSPECT, a, image_id);
    return 0;
}

/* ---- background jobs ---- */

static void job_import(struct job *j)
{
    struct app *a = j->app;
    json_auto_t *row = NULL;
    if (store_query_one(a->store, &row,
                        "SELECT source, sha256 FROM images WHERE id = $1 AND "
                        "state = 'importing' AND deleted_at IS NULL", "s",
                        j->image_id) < 0)
        return; /* deleted or already handled */
    const char *url = json_str(row, "source");
    const char *sha = json_str(row, "sha256");
    _cleanup_free_ char *cache_dir = xasprintf("%s/images/import",
                                               a->cfg.data_dir);
    _cleanup_(addrpolicy_freep) struct addrpolicy *policy = NULL;
    char *why = NULL, *path = NULL;
    int e = catalog_import_policy(a, &policy, &why);
    if (e < 0) {
        log_error("image %s: cannot import: %s", j->image_id, why);
        image_fail_detail(a, j->image_id, CATALOG_IMPORT_FAILED, why);
        free(why);
        return;
    }
    struct fetch_opts o = {
        .dir = cache_dir,
        .max_bytes = (uint64_t)a->cfg.max_image_gib << 30,
        .cancel = &stopping,
        .policy = policy,
    };
    struct fetch_cache *c = fetch_cache_new(&o, &why);
    e = c ? fetch_get(c, url, sha, 0, &path, &why) : -EIO;
    fetch_cache_free(c);
    if (e == -ECANCELED) {
        free(why);
        return; /* shutting down: the .part resumes next time */
    }
    if (e < 0) {
        /* Imports run one at a time: nobody else resumes this .part. */
        _cleanup_free_ char *part = xasprintf("%s/%s.part", cache_dir, sha);
        unlink(part);
        log_warn("image %s: import from %s failed: %s", j->image_id, url,
                 why ? why : strerror(-e));
        image_fail_detail(a, j->image_id, import_reason(e), why);
        free(why);
        return;
    }
    log_info("image %s: fetched %s", j->image_id, url);
    catalog_accept(a, j->image_id, path, sha);
    free(path);
    free(why);
}

static void job_inspect(struct job *j)
{
    struct app *a = j->app;
    json_auto_t *row = NULL;
    if (store_query_one(a->store, &row,
                        "SELECT sha256, format FROM images WHERE id = $1 AND "
                        "state = 'ready' AND deleted_at IS NULL", "s",
                        j->image_id) < 0)
        return;
    if (!a->cfg.inspect) {
        store_exec(a->store, "UPDATE images SET inspection = 'skipped' WHERE "
                   "id = $1", "s", j->image_id);
        return;
    }
    store_exec(a->store, "UPDATE images SET inspection = 'running' WHERE id "
               "= $1", "s", j->image_id);
    _cleanup_free_ char *path = catalog_path(a, json_str(row, "sha256"));
    struct inspect_result res = { 0 };
    char *err = NULL;
    int e = inspect_image(path, json_str(row, "format"), &res, &err);
    if (e == 0) {
        store_exec(a->store,
                   "UPDATE images SET inspection = 'done', os_type = $1, "
                   "os_distro = $2, os_version = $3, os_arch = $4 WHERE id = "
                   "$5", "sssss", res.os_type, res.distro, res.version,
                   res.arch, j->image_id);
        inspect_result_clear(&res);
    } else if (e == -ENOENT) {
        store_exec(a->store, "UPDATE images SET inspection = 'no-os' WHERE "
                   "id = $1", "s", j->image_id);
    } else {
        store_exec(a->store, "UPDATE images SET inspection = 'failed' WHERE "
                   "id = $1", "s", j->image_id);
        app_event(a, NULL, "catalog", "image-inspect", j->image_id, 500,
                  err ? err : "inspection failed");
        log_warn("image %s: inspection failed: %s", j->image_id,
                 err ? err : "?");
    }
    free(err);
}

static void job_run(enum job_kind kind, struct job *j)
{
    if (kind == JOB_IMPORT)
        job_import(j);
    else
        job_inspect(j);
}

void catalog_import_start(struct app *a, const char *image_id)
{
    job_queue(JOB_IMPORT, a, image_id);
}

/* Pick up work a stopped controller left: imports resume (their .part
 * files are kept), uploads cut off midway wait for a new upload, and
 * inspections that never finished run again. */
void catalog_resume(struct app *a)
{
    json_auto_t *rows = NULL;
    size_t i;
    json_t *row;
    store_exec(a->store, "UPDATE images SET state = 'pending' WHERE state = "
               "'uploading' AND deleted_at IS NULL", "");
    if (store_query(a->store, &rows, "SELECT id, state FROM images WHERE "
                    "deleted_at IS NULL AND (state = 'importing' OR (state = "
                    "'ready' AND inspection IN ('pending', 'running'))) ORDER "
                    "BY created_at", "") < 0)
        return;
    json_array_foreach(rows, i, row)
        job_queue(streq(json_str(row, "state"), "importing") ? JOB_IMPORT
                                                              : JOB_INSPECT,
                  a, json_str(row, "id"));
}

bool catalog_shutdown(void)
{
    bool all = true;
    pthread_mutex_lock(&q_lock);
    stopping = 1;
    pthread_cond_broadcast(&q_cond);
    pthread_mutex_unlock(&q_lock);
    for (int k = 0; k < JOB_KIND_MAX; k++) {
        struct worker *w = &workers[k];
        if (!w->running)
            continue;
        /* An inspection cannot be interrupted: do not hold the exit. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += SHUTDOWN_GRACE_S;
        if (pthread_timedjoin_np(w->thr, NULL, &ts) != 0) {
            pthread_detach(w->thr);
            all = false;
        }
        w->running = false;
    }
    pthread_mutex_lock(&q_lock);
    for (int k = 0; k < JOB_KIND_MAX; k++) {
        while (workers[k].head) {
            struct job *j = workers[k].head;
            workers[k].head = j->next;
            free(j);
        }
        workers[k].tail = NULL;
    }
    pthread_mutex_unlock(&q_lock);
    return all;
}

void catalog_gc(struct app *a)
{
    _cleanup_free_ char *dir = images_dir(a);
    pthread_mutex_lock(&content_lock);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (strlen(de->d_name) != 64 || !is_hex(de->d_name, 64))
            continue;
        if (store_query_int(a->store, 1, "SELECT COUNT(*) FROM images WHERE "
                            "sha256 = $1 AND deleted_at IS NULL", "s",
                            de->d_name) == 0)
            unlinkat(dirfd(d), de->d_name, 0);
    }
    if (d)
        closedir(d);
    pthread_mutex_unlock(&content_lock);
}

/* ---- templates ---- */

int catalog_template_image(struct app *a, json_t *t, char ret_id[UUID_STR_LEN + 1])
{
    const char *name = json_str(t, "image"), *url = json_str(t, "image_url");
    const char *sha = json_str(t, "image_sha256");
    if (!url || !sha)
        return -ENOENT;
    int e = store_tx_begin(a->store);
    if (e < 0)
        return e;
    /* One import per template image, whichever replica or request asks.
     * (Both declared before any goto: a jump may not skip a cleanup.) */
    json_auto_t *row = NULL, *hub = NULL;
    if ((e = store_lock(a->store, "template-image", name)) < 0)
        goto fail;
    e = store_query_one(a->store, &row, "SELECT id FROM images WHERE name = "
                        "$1 AND visibility = 'public' AND deleted_at IS NULL "
                        "AND sha256 = $2 AND state IN ('importing', 'ready') "
                        "ORDER BY created_at LIMIT 1", "ss", name, sha);
    if (e == 0) {
        snprintf(ret_id, UUID_STR_LEN + 1, "%s", json_str(row, "id"));
        return store_tx_commit(a->store);
    }
    if (e != -ENOENT)
        goto fail;
    if ((e = store_query_one(a->store, &hub, "SELECT id FROM accounts WHERE "
                             "role = 'admin' ORDER BY "
                             "created_at, id LIMIT 1", "")) < 0)
        goto fail;
    uuid_generate_str(ret_id);
    if ((e = store_exec(a->store, "INSERT INTO images (id, account_id, name, "
                        "version, visibility, source, state, sha256, "
                        "min_disk_gib, created_at, template_import) VALUES "
                        "($1, $2, $3, '1', 'public', $4, 'importing', $5, 1, "
                        "$6, 1)", "sssssi", ret_id, json_str(hub, "id"),
                        name, url, sha, now_s())) < 0)
        goto fail;
    if ((e = store_tx_commit(a->store)) < 0)
        return e;
    log_info("image '%s' for template '%s': importing from %s", name,
             json_str(t, "name"), url);
    app_event(a, NULL, "catalog", "image-import", ret_id, 201, url);
    /* Once the request's changes commit: a request run again never
     * fetches twice, and a rolled-back row is never fetched for. */
    app_after_commit(a, catalog_import_start, ret_id);
    return 0;
fail:
    store_tx_rollback(a->store);
    return e;
}

static const struct jfield template_fields[] = {
    { "name", JF_NAME, true, 0, 0, NULL },
    { "description", JF_STRING, false, 0, 200, NULL },
    { "image", JF_NAME, true, 0, 0, NULL },
    { "image_url", JF_STRING, false, 8, 2048, NULL },
    { "image_sha256", JF_STRING, false, 64, 64, NULL },
    { "vcpus", JF_INT, true, 1, 256, NULL },
    { "memory_mib", JF_INT, true, 16, 1 << 22, NULL },
    { "disk_gib", JF_INT, true, 1, 1 << 16, NULL },
    { "allow_tcg", JF_BOOL, false, 0, 0, NULL },
    { "user_data", JF_STRING, false, 0, 64 * 1024, NULL },
    { "ports", JF_ARRAY, false, 0, 32, NULL },
};

/* Load DIR/<name>.json and check it; NULL when missing or invalid. */
static json_t *template_load(struct app *a, const char *name)
{
    if (!name_is_valid(name) || !a->cfg.templates_dir)
        return NULL;
    _cleanup_free_ char *path = xasprintf("%s/%s.json", a->cfg.templates_dir,
                                          name);
    _cleanup_free_ char *text = NULL;
    size_t len;
    if (file_read(path, TEMPLATE_MAX_BYTES, &text, &len) < 0)
        return NULL;
    json_error_t je;
    json_t *t = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    struct jerr err = { 0 };
    if (!t || json_check(t, template_fields, ARRAY_SIZE(template_fields),
                         &err) < 0 ||
        !streq(json_str(t, "name"), name)) {
        log_warn("template '%s' is invalid: %s", path,
                 t ? (err.detail ? err.detail : "name differs from file name")
                   : je.text);
        jerr_clear(&err);
        json_decref(t);
        return NULL;
    }
    /* A template may pin its catalog image by digest; an image by URL
     * must be pinned: fetched content is verified before anything runs
     * it. */
    const char *url = json_str(t, "image_url"), *sha = json_str(t, "image_sha256");
    if ((url && !sha) ||
        (sha && (strlen(sha) != 64 || strspn(sha, "0123456789abcdef") != 64)) ||
        (url && !startswith(url, "http://") && !startswith(url, "https://"))) {
        log_warn("template '%s' is invalid: image_sha256 must be 64 "
                 "lowercase hex characters, and image_url needs it and an "
                 "http(s) URL", path);
        json_decref(t);
        return NULL;
    }
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(t, "ports"), i, p) {
        if (json_check(p, port_fields, ARRAY_SIZE(port_fields), &err) < 0) {
            log_warn("template '%s': port %zu: %s", path, i, err.detail);
            jerr_clear(&err);
            json_decref(t);
            return NULL;
        }
    }
    return t;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

json_t *catalog_templates(struct app *a)
{
    json_t *out = json_array();
    if (!a->cfg.templates_dir)
        return out;
    DIR *d = opendir(a->cfg.templates_dir);
    if (!d)
        return out;
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l <= 5 || !streq(de->d_name + l - 5, ".json"))
            continue;
        names = xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = xstrndup(de->d_name, l - 5);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n; i++) {
        json_t *t = template_load(a, names[i]);
        if (t)
            json_array_append_new(out, t);
        free(names[i]);
    }
    free(names);
    return out;
}

char *catalog_templates_find(const char *exe)
{
    static const char *const rel[] = { "../share/fogfabric/templates",
                                       "../images/templates",
                                       "../../images/templates" };
    static const char *const abs[] = { "/usr/share/fogfabric/templates",
                                       "/usr/local/share/fogfabric/templates" };
    struct stat st;
    const char *slash = exe ? strrchr(exe, '/') : NULL;
    for (size_t i = 0; slash && i < ARRAY_SIZE(rel); i++) {
        _cleanup_free_ char *p = xasprintf("%.*s/%s", (int)(slash - exe), exe,
                                           rel[i]);
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
            return realpath(p, NULL);
    }
    for (size_t i = 0; i < ARRAY_SIZE(abs); i++)
        if (stat(abs[i], &st) == 0 && S_ISDIR(st.st_mode))
            return xstrdup(abs[i]);
    return NULL;
}

json_t *catalog_template(struct app *a, const char *name)
{
    return template_load(a, name);
}
