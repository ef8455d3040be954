/* Images (catalog entries, uploads streamed to disk, downloads with
 * ranges), application templates, and the SSH public keys of accounts.
 * An image is refused for deletion while a VM uses it. */
#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/catalog.h"
#include "controller/handlers.h"
#include "images/addrpolicy.h"
#include "controller/quota.h"

#include <errno.h>
#include <fcntl.h>
#include <nettle/base64.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <sys/stat.h>



#define IMG_COLS                                                               \
    "i.id, i.account_id, i.name, i.version, i.visibility, i.source, "         \
    "i.state, i.state_reason, i.format, i.size, i.virtual_size, i.sha256, "   \
    "i.min_disk_gib, i.os_type, i.os_distro, i.os_version, i.os_arch, "       \
    "i.inspection, i.created_at, (SELECT COUNT(*) FROM vms v WHERE "          \
    "v.image_id = i.id AND v.deleted_at IS NULL) AS vm_count"

static json_t *col(json_t *row, const char *name)
{
    json_t *v = json_object_get(row, name);
    return v ? json_incref(v) : json_null();
}

static json_t *image_render(json_t *row)
{
    char t[21];
    time_format_rfc3339(json_int(row, "created_at", 0), t);
    json_t *os = json_pack("{s:o, s:o, s:o, s:o}", "type", col(row, "os_type"),
                           "distro", col(row, "os_distro"), "version",
                           col(row, "os_version"), "arch", col(row, "os_arch"));
    return json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
        "s:o, s:o, s:o, s:s}",
        "id", col(row, "id"), "account_id", col(row, "account_id"), "name",
        col(row, "name"), "version", col(row, "version"), "visibility",
        col(row, "visibility"), "source", col(row, "source"), "state",
        col(row, "state"), "state_reason", col(row, "state_reason"), "format",
        col(row, "format"), "size", col(row, "size"), "virtual_size",
        col(row, "virtual_size"), "sha256", col(row, "sha256"), "min_disk_gib",
        col(row, "min_disk_gib"), "os", os, "inspection",
        col(row, "inspection"), "vm_count", col(row, "vm_count"),
        "created_at", t);
}

/* An image named by the route's first parameter (id, or a name: the
 * caller's own first, then a public one). for_write: only the owner (or
 * an admin) finds it. 0 and *ret, -ENOENT or -EIO. */
static int image_find(struct app *a, struct http_request *r, bool for_write,
                      json_t **ret)
{
    struct reqctx *c = reqctx_of(r);
    const char *ref = http_req_param(r, 0);
    if (!ref || (!uuid_is_valid(ref) && !name_is_valid(ref)))
        return -ENOENT;
    json_t *rows;
    int e = store_query(a->store, &rows,
                        "SELECT " IMG_COLS " FROM images i WHERE i.deleted_at "
                        "IS NULL AND (i.id = $1 OR i.name = $1) AND ($3 = 1 OR "
                        "i.account_id = $2 OR ($4 = 0 AND i.visibility = "
                        "'public')) ORDER BY CASE WHEN i.account_id = $2 THEN "
                        "0 ELSE 1 END, i.created_at LIMIT 1", "ssbb", ref,
                        c->account_id, c->role == ROLE_ADMIN, for_write);
    if (e < 0)
        return e;
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        return -ENOENT;
    }
    *ret = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    reqctx_set_target(r, json_str(*ret, "id"));
    return 0;
}

static bool version_ok(const char *s)
{
    for (; s && *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '.' || *s == '-' ||
              *s == '_'))
            return false;
    return true;
}

static bool url_ok(const char *s)
{
    if (!startswith(s, "http://") && !startswith(s, "https://"))
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return false;
    return true;
}

static bool sha_ok(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

/* Refuse at once a URL whose host is an address literal the import policy
 * refuses; a host name is judged when the import connects. The owner
 * reads a fixed sentence; the controller's log says why. false after
 * answering. */
static bool import_url_allowed(struct app *a, struct http_request *r,
                               const char *url)
{
    _cleanup_(addrpolicy_freep) struct addrpolicy *policy = NULL;
    _cleanup_free_ char *why = NULL;
    int e = catalog_import_policy(a, &policy, &why);
    if (e < 0) {
        log_error("image imports are unavailable: %s", why);
        http_reply_problem(r, 503, "unavailable", NULL,
                           "image imports from URLs are unavailable");
        return false;
    }
    e = addrpolicy_check_url(policy, url, &why);
    if (e == -EINVAL) {
        http_reply_problem(r, 400, "validation", "url",
                           "url must be an http:// or https:// URL");
        return false;
    }
    if (e < 0) {
        log_info("image import from %s refused: %s", url, why);
        http_reply_problem(r, 422, "source-not-allowed", "url",
                           CATALOG_IMPORT_NOT_ALLOWED);
        return false;
    }
    return true;
}

HANDLER(h_image_create)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    static const char *const vis[] = { "public", "private", NULL };
    static const struct jfield fields[] = {
        { "name", JF_NAME, true, 0, 0, NULL },
        { "version", JF_STRING, false, 1, 32, NULL },
        { "visibility", JF_ENUM, false, 0, 0, vis },
        { "url", JF_STRING, false, 8, 2048, NULL },
        { "sha256", JF_STRING, false, 64, 64, NULL },
        { "min_disk_gib", JF_INT, false, 1, 1 << 16, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), true))
        return;
    json_t *b = http_req_json(r);
    const char *visibility = json_str(b, "visibility");
    const char *url = json_str(b, "url"), *sha = json_str(b, "sha256");
    const char *version = json_str(b, "version");
    if (!visibility)
        visibility = "private";
    if (streq(visibility, "public") && c->role != ROLE_ADMIN) {
        http_reply_problem(r, 403, "forbidden", "visibility",
                           "only an admin may publish a public image");
        return;
    }
    if (version && !version_ok(version)) {
        http_reply_problem(r, 400, "validation", "version",
                           "version may hold letters, digits, '.', '-' and "
                           "'_' only");
        return;
    }
    if (url && !url_ok(url)) {
        http_reply_problem(r, 400, "validation", "url",
                           "url must be an http:// or https:// URL");
        return;
    }
    if (sha && !sha_ok(sha)) {
        http_reply_problem(r, 400, "validation", "sha256",
                           "sha256 must be 64 lowercase hex characters");
        return;
    }
    if (url && !sha) {
        http_reply_problem(r, 400, "validation", "sha256",
                           "an import from a URL needs the image's sha256");
        return;
    }
    if (url && !import_url_allowed(a, r, url))
        return;
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    if (quota_tx_begin(a, r, c->account_id, QUOTA_IMAGES, 1) < 0)
        return;
    int e = store_exec(a->store,
                       "INSERT INTO images (id, account_id, name, version, "
                       "visibility, source, state, sha256, min_disk_gib, "
                       "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
                       "$9, $10)", "ssssssssii", id, c->account_id,
                       json_str(b, "name"), version ? version : "1",
                       visibility, url ? url : "upload",
                       url ? "importing" : "pending", sha,
                       json_int(b, "min_disk_gib", 1), now_s());
    if (e < 0) {
        store_tx_rollback(a->store);
        reply_store_error(r, e, "an image with this name");
        return;
    }
    if (store_tx_commit(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    reqctx_set_target(r, id);
    if (url)
        app_after_commit(a, catalog_import_start, id);
    json_auto_t *row = NULL;
    store_query_one(a->store, &row, "SELECT " IMG_COLS " FROM images i WHERE "
                    "i.id = $1", "s", id);
    http_reply_json(r, 201, image_render(row));
}

HANDLER(h_image_list)
{
    page_list(r, app,
              "SELECT " IMG_COLS " FROM images i WHERE i.deleted_at IS NULL "
              "AND ($1 = 1 OR i.account_id = $2 OR i.visibility = 'public') "
              "AND " PAGE_KEYSET("i.created_at", "i.id"),
              "created_at", image_render, "image");
}

HANDLER(h_image_get)
{
    struct app *a = app;
    json_auto_t *row = NULL;
    int e = image_find(a, r, false, &row);
    if (e < 0) {
        reply_store_error(r, e, "image");
        return;
    }
    http_reply_json(r, 200, image_render(row));
}

static void gc_after_commit(struct app *a, const char *unused)
{
    (void)unused;
    catalog_gc(a);
}

HANDLER(h_image_delete)
{
    struct app *a = app;
    json_auto_t *row = NULL;
    int e = image_find(a, r, true, &row);
    if (e < 0) {
        reply_store_error(r, e, "image");
        return;
    }
    const char *id = json_str(row, "id");
    if (!retire_unused(a, r, "image", id, "SELECT COUNT(*) FROM vms WHERE "
                       "image_id = $1 AND deleted_at IS NULL",
                       "UPDATE images SET deleted_at = $1 WHERE id = $2",
                       "image"))
        return;
    /* The content goes only once the row's deletion has committed. */
    app_after_commit(a, gc_after_commit, NULL);
    http_reply_text(r, 204, "application/json", NULL, 0);
}

/* ---- upload: PUT /v1/images/{id}/file, streamed to a temp file ---- */

struct upload {
    struct app *app;
    char id[UUID_STR_LEN + 1];
    int fd;
    char *tmp;          /* removed on free unless handed on */
    struct sha256_ctx sha;
    uint64_t bytes, max;
    int err;
    char *state;        /* the image's state when refused */
    bool claimed;       /* we moved the image to 'uploading' */
    bool done;
};

static void upload_free(void *p)
{
    struct upload *u = p;
    if (!u)
        return;
    if (u->fd >= 0)
        close(u->fd);
    if (u->tmp)
        unlink(u->tmp);
    if (u->claimed && !u->done)
        store_exec(u->app->store, "UPDATE images SET state = 'pending' WHERE "
                   "id = $1 AND state = 'uploading'", "s", u->id);
    free(u->tmp);
    free(u->state);
    free(u);
}

static int upload_open(struct upload *u, struct http_request *r)
{
    struct app *a = u->app;
    json_auto_t *row = NULL;
    int e = image_find(a, r, true, &row);
    if (e < 0)
        return e;
    snprintf(u->id, sizeof(u->id), "%s", json_str(row, "id"));
    if (!streq(json_str(row, "source"), "upload") ||
        store_exec(a->store, "UPDATE images SET state = 'uploading', "
                   "state_reason = NULL WHERE id = $1 AND state IN "
                   "('pending', 'error') AND deleted_at IS NULL", "s",
                   u->id) != 1) {
        u->state = xstrdup(streq(json_str(row, "source"), "upload")
                               ? json_str(row, "state")
                               : "importing from a URL");
        return -EBUSY;
    }
    u->claimed = true;
    _cleanup_free_ char *dir = xasprintf("%s/images/tmp", a->cfg.data_dir);
    if ((e = mkdir_p(dir, 0700)) < 0)
        return e;
    char name[UUID_STR_LEN + 1];
    uuid_generate_str(name);
    u->tmp = xasprintf("%s/%s.upload", dir, name);
    u->fd = open(u->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (u->fd < 0) {
        e = -errno;
        free(u->tmp);
        u->tmp = NULL;
        return e;
    }
    sha256_init(&u->sha);
    return 0;
}

int h_image_upload_sink(struct http_request *r, const void *data, size_t len,
                        void *app)
{
    struct reqctx *c = reqctx_of(r);
    struct upload *u = c->stream;
    if (!u) {
        u = xcalloc(1, sizeof(*u));
        u->app = app;
        u->fd = -1;
        u->max = (uint64_t)u->app->cfg.max_image_gib << 30;
        c->stream = u;
        c->stream_free = upload_free;
        if ((u->err = upload_open(u, r)) < 0)
            return u->err;
    }
    if (u->err < 0)
        return u->err;
    if (u->bytes + len > u->max)
        return u->err = -EFBIG;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(u->fd, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return u->err = -errno;
        }
        p += n;
        left -= (size_t)n;
    }
    sha256_update(&u->sha, len, data);
    u->bytes += len;
    return 0;
}

HANDLER(h_image_upload)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    struct upload *u = c->stream;
    if (!u) {
        json_auto_t *row = NULL;
        int e = image_find(a, r, true, &row);
        if (e < 0)
            reply_store_error(r, e, "image");
        else
            http_reply_problem(r, 400, "validation", NULL,
                               "the body must be the image's content");
        return;
    }
    switch (u->err) {
    case 0:
        break;
    case -ENOENT:
        http_reply_problem(r, 404, "not-found", NULL, "no such image");
        return;
    case -EBUSY:
        http_reply_problem(r, 409, "conflict", NULL,
                           "image is not waiting for an upload (it is %s)",
                           u->state ? u->state : "busy");
        return;
    case -EFBIG:
        http_reply_problem(r, 413, "payload-too-large", NULL,
                           "image is larger than the limit of %lld GiB",
                           (long long)a->cfg.max_image_gib);
        return;
    default:
        http_reply_problem(r, 500, "internal", NULL,
                           "cannot store the upload: %s", strerror(-u->err));
        return;
    }
    if (fdatasync(u->fd) < 0) {
        http_reply_problem(r, 500, "internal", NULL,
                           "cannot store the upload: %s", strerror(errno));
        return;
    }
    close(u->fd);
    u->fd = -1;
    uint8_t d[SHA256_DIGEST_SIZE];
    char hex[2 * SHA256_DIGEST_SIZE + 1];
    sha256_digest(&u->sha, sizeof(d), d);
    hex_encode(d, sizeof(d), hex);

    json_auto_t *row = NULL;
    store_query_one(a->store, &row, "SELECT sha256 FROM images WHERE id = $1",
                    "s", u->id);
    const char *want = json_str(row, "sha256");
    u->done = true;
    if (want && !streq(want, hex)) {
        _cleanup_free_ char *why = xasprintf(
            "uploaded content does not match sha256 (expected %s, got %s)",
            want, hex);
        store_exec(a->store, "UPDATE images SET state = 'error', state_reason "
                   "= $1 WHERE id = $2", "ss", why, u->id);
        http_reply_problem(r, 422, "invalid-image", NULL, "%s", why);
        return;
    }
    char *tmp = TAKE_PTR(u->tmp);
    int e = catalog_accept(a, u->id, tmp, hex);
    free(tmp);
    json_auto_t *img = NULL;
    store_query_one(a->store, &img, "SELECT " IMG_COLS " FROM images i WHERE "
                    "i.id = $1", "s", u->id);
    if (e == -EINVAL) {
        http_reply_problem(r, 422, "invalid-image", NULL, "%s",
                           json_str(img, "state_reason")
                               ? json_str(img, "state_reason")
                               : "not a usable disk image");
        return;
    }
    if (e < 0) {
        http_reply_problem(r, 500, "internal", NULL, "cannot store the image");
        return;
    }
    reqctx_set_detail(r, "%llu bytes, sha256 %s", (unsigned long long)u->bytes,
                      hex);
    http_reply_json(r, 200, image_render(img));
}

/* ---- download: GET /v1/images/{id}/file, with ranges ---- */

HANDLER(h_image_download)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    json_auto_t *row = NULL;
    int e;
    if (c->role == ROLE_NODE) {
        /* A node reads only images of VMs placed on it. */
        const char *ref = http_req_param(r, 0);
        e = uuid_is_valid(ref)
            ? store_query_one(a->store, &row,
                              "SELECT i.id, i.sha256, i.state FROM images i "
                              "WHERE i.id = $1 AND i.deleted_at IS NULL AND "
                              "EXISTS (SELECT 1 FROM vms v WHERE v.image_id = "
                              "i.id AND v.node_id = $2 AND v.deleted_at IS "
                              "NULL)", "ss", ref, c->actor)
            : -ENOENT;
    } else {
        e = image_find(a, r, false, &row);
    }
    if (e < 0) {
        reply_store_error(r, e, "image");
        return;
    }
    if (!streq(json_str(row, "state"), "ready") || !json_str(row, "sha256")) {
        http_reply_problem(r, 409, "conflict", NULL,
                           "image is %s, not ready", json_str(row, "state"));
        return;
    }
    _cleanup_free_ char *path = catalog_path(a, json_str(row, "sha256"));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        http_reply_problem(r, 500, "internal", NULL,
                           "image content is missing");
        return;
    }
    _cleanup_free_ char *etag = xasprintf("\"%s\"", json_str(row, "sha256"));
    http_reply_header(r, "ETag", etag);
    http_reply_file(r, "application/octet-stream", fd, (uint64_t)st.st_size);
}

/* ---- templates ---- */

HANDLER(h_template_list)
{
    struct app *a = app;
    http_reply_json(r, 200, json_pack("{s:o, s:n}", "items",
                                      catalog_templates(a), "next_cursor"));
}

HANDLER(h_template_get)
{
    struct app *a = app;
    json_t *t = catalog_template(a, http_req_param(r, 0));
    if (!t) {
        http_reply_problem(r, 404, "not-found", NULL, "no such template");
        return;
    }
    http_reply_json(r, 200, t);
}

/* ---- SSH public keys of the account ---- */

static const char *const ssh_key_types[] = {
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
};

/* Parse "TYPE BASE64 [COMMENT]" as OpenSSH writes it: the blob must decode
 * and name the same type. On success *ret_type points into a static
 * table and *ret_fp is "SHA256:..." (caller frees). */
static bool ssh_key_parse(const char *key, const char **ret_type,
                          char **ret_fp)
{
    for (const char *p = key; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return false;
    const char *sp = strchr(key, ' ');
    if (!sp)
        return false;
    size_t tl = (size_t)(sp - key);
    const char *type = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(ssh_key_types); i++)
        if (strlen(ssh_key_types[i]) == tl &&
            strncmp(key, ssh_key_types[i], tl) == 0)
            type = ssh_key_types[i];
    if (!type)
        return false;
    const char *b64 = sp + 1;
    size_t bl = strcspn(b64, " ");
    if (bl == 0)
        return false;
    struct base64_decode_ctx ctx;
    size_t dl = BASE64_DECODE_LENGTH(bl);
    _cleanup_free_ uint8_t *blob = xmalloc(dl);
    base64_decode_init(&ctx);
    if (!base64_decode_update(&ctx, &dl, blob, bl, b64) ||
        !base64_decode_final(&ctx) || dl < 4 + tl)
        return false;
    uint32_t n = (uint32_t)blob[0] << 24 | (uint32_t)blob[1] << 16 |
                 (uint32_t)blob[2] << 8 | blob[3];
    if (n != tl || memcmp(blob + 4, type, tl) != 0)
        return false;
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256(blob, dl, d);
    char enc[BASE64_ENCODE_RAW_LENGTH(SHA256_DIGEST_SIZE) + 1];
    base64_encode_raw(enc, sizeof(d), d);
    size_t el = BASE64_ENCODE_RAW_LENGTH(SHA256_DIGEST_SIZE);
    while (el > 0 && enc[el - 1] == '=')
        el--;
    enc[el] = '\0';
    *ret_type = type;
    *ret_fp = xasprintf("SHA256:%s", enc);
    return true;
}

static json_t *sshkey_render(json_t *row)
{
    char t[21];
    const char *type = NULL;
    _cleanup_free_ char *fp = NULL;
    time_format_rfc3339(json_int(row, "created_at", 0), t);
    ssh_key_parse(json_str(row, "public_key"), &type, &fp);
    return json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s, s:s}", "id",
                     json_str(row, "id"), "account_id",
                     json_str(row, "account_id"), "name",
                     json_str(row, "name"), "type", type, "fingerprint", fp,
                     "public_key", json_str(row, "public_key"), "created_at",
                     t);
}

HANDLER(h_sshkey_create)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    static const struct jfield fields[] = {
        { "name", JF_NAME, true, 0, 0, NULL },
        { "public_key", JF_STRING, true, 16, 16384, NULL },
    };
    if (!body_check(r, fields, ARRAY_SIZE(fields), true))
        return;
    json_t *b = http_req_json(r);
    /* Trim what editors and `cat` leave around a key file's one line. */
    const char *k = json_str(b, "public_key");
    while (*k == ' ' || *k == '\t')
        k++;
    size_t kl = strlen(k);
    while (kl > 0 && (k[kl - 1] == '\n' || k[kl - 1] == '\r' ||
                      k[kl - 1] == ' ' || k[kl - 1] == '\t'))
        kl--;
    _cleanup_free_ char *key = xstrndup(k, kl);
    const char *type;
    _cleanup_free_ char *fp = NULL;
    if (!ssh_key_parse(key, &type, &fp)) {
        http_reply_problem(r, 400, "validation", "public_key",
                           "public_key must be one OpenSSH public key line "
                           "(ssh-ed25519, ssh-rsa, ecdsa-sha2-*, sk-*)");
        return;
    }
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    if (quota_tx_begin(a, r, c->account_id, QUOTA_SSH_KEYS, 1) < 0)
        return;
    int e = store_exec(a->store, "INSERT INTO ssh_keys (id, account_id, name, "
                       "public_key, created_at) VALUES ($1, $2, $3, $4, $5)",
                       "ssssi", id, c->account_id, json_str(b, "name"), key,
                       now_s());
    if (e < 0) {
        store_tx_rollback(a->store);
        reply_store_error(r, e, "an SSH key with this name");
        return;
    }
    if (store_tx_commit(a->store) < 0) {
        http_reply_problem(r, 503, "unavailable", NULL, "store busy");
        return;
    }
    reqctx_set_target(r, id);
    reqctx_set_detail(r, "%s", fp);
    json_auto_t *row = NULL;
    store_query_one(a->store, &row, "SELECT id, account_id, name, public_key, "
                    "created_at FROM ssh_keys WHERE id = $1", "s", id);
    http_reply_json(r, 201, sshkey_render(row));
}

HANDLER(h_sshkey_list)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    json_t *rows;
    int e = store_query(a->store, &rows,
                        "SELECT id, account_id, name, public_key, created_at "
                        "FROM ssh_keys WHERE ($1 = 1 OR account_id = $2) "
                        "ORDER BY name, id", "bs", c->role == ROLE_ADMIN,
                        c->account_id);
    if (e < 0) {
        reply_store_error(r, e, "SSH key");
        return;
    }
    json_t *items = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_array_append_new(items, sshkey_render(row));
    json_decref(rows);
    http_reply_json(r, 200, json_pack("{s:o, s:n}", "items", items,
                                      "next_cursor"));
}

HANDLER(h_sshkey_delete)
{
    struct app *a = app;
    struct reqctx *c = reqctx_of(r);
    const char *ref = http_req_param(r, 0);
    json_auto_t *row = NULL;
    if (!ref || (!uuid_is_valid(ref) && !name_is_valid(ref)) ||
        store_query_one(a->store, &row,
                        "SELECT id FROM ssh_keys WHERE (id = $1 OR (name = $1 "
                        "AND account_id = $2)) AND ($3 = 1 OR account_id = $2)",
                        "ssb", ref, c->account_id, c->role == ROLE_ADMIN) < 0) {
        http_reply_problem(r, 404, "not-found", NULL, "no such SSH key");
        return;
    }
    reqctx_set_target(r, json_str(row, "id"));
    store_exec(a->store, "DELETE FROM ssh_keys WHERE id = $1", "s",
               json_str(row, "id"));
    http_reply_text(r, 204, "application/json", NULL, 0);
}
