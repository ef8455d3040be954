/* The controller's side of images: where content lives (by SHA-256 under
 * DATA/images), accepting content after its checks, imports from URLs and
 * inspection in the background, templates from the templates directory. */
#pragma once

#include "controller/app.h"

struct addrpolicy;

/* What an image's owner reads in state_reason when a URL import fails:
 * fixed texts, whatever the transfer said (admins read that in the event
 * log and the controller's log). */
#define CATALOG_IMPORT_NOT_ALLOWED "the image source address is not allowed"
#define CATALOG_IMPORT_FAILED "the image source could not be fetched"
#define CATALOG_IMPORT_MISMATCH                                                \
    "the image content does not match its SHA-256 or exceeds the size limit"

/* DATA/images/<sha256>; caller frees. */
char *catalog_path(struct app *a, const char *sha256);
/* Check the file at tmp_path (content, not name) and, if it is a usable
 * disk image, move it into the catalog and mark the image ready; then
 * queue its inspection. On refusal the image is `error` with the reason
 * and -EINVAL is returned; tmp_path is removed either way. */
int catalog_accept(struct app *a, const char *image_id, const char *tmp_path,
                   const char *sha256);
/* The address policy URL imports run under: the import-allow setting,
 * with this host's interface and listen addresses refused. 0 and *ret
 * (addrpolicy_free), or -errno and *ret_reason (caller frees). */
int catalog_import_policy(struct app *a, struct addrpolicy **ret,
                          char **ret_reason);
/* Fetch the image's URL in the background (resumable, SHA-256 checked),
 * then catalog_accept it. */
void catalog_import_start(struct app *a, const char *image_id);
/* Remove content files no live image refers to. */
void catalog_gc(struct app *a);
/* Templates as API objects (new references); NULL when unknown. */
json_t *catalog_templates(struct app *a);
json_t *catalog_template(struct app *a, const char *name);
/* The catalog image of template t when none of that name exists: the
 * hub's public image imported from the template's image_url, verified
 * against image_sha256, shared by every create (one row, one download;
 * the import starts after the row commits). 0 and ret_id (importing or
 * ready), -ENOENT when t names no URL, else the store's -errno. */
int catalog_template_image(struct app *a, json_t *t,
                           char ret_id[UUID_STR_LEN + 1]);
/* The templates directory of a controller run from EXE (its own path) when
 * none is configured: EXE's PREFIX/share/fogfabric/templates for an install,
 * images/templates for a checkout (bin/ or build-asan/bin/), then
 * /usr/share and /usr/local/share. A new string, or NULL when none exists. */
char *catalog_templates_find(const char *exe);
/* Stop the workers, waiting a few seconds. false when one is still busy
 * (an inspection cannot be interrupted): the caller must then leave the
 * store open, as that thread may still write to it until the process
 * exits. */
bool catalog_shutdown(void);

/* Requeue work a stopped controller left (URL imports, unfinished
 * inspections) and return uploads cut off midway to 'pending'. */
void catalog_resume(struct app *a);
