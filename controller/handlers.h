/* Route handlers, one file per resource (h_<resource>.c). */
#pragma once

#include "api/agentmsg.h"

#include "controller/app.h"
#include "controller/auth.h"

#define HANDLER(n) void n(struct http_request *r, void *app)

HANDLER(h_healthz);
HANDLER(h_readyz);
HANDLER(h_ca);
HANDLER(h_metrics);

HANDLER(h_account_create);
HANDLER(h_account_list);
HANDLER(h_account_get);
HANDLER(h_account_quotas_get);
HANDLER(h_account_quotas_put);

HANDLER(h_key_create);
HANDLER(h_key_list);
HANDLER(h_key_delete);

HANDLER(h_vm_create);
HANDLER(h_vm_list);
HANDLER(h_vm_get);
HANDLER(h_vm_delete);
HANDLER(h_vm_start);
HANDLER(h_vm_stop);
HANDLER(h_vm_reboot);
HANDLER(h_vm_destroy);
HANDLER(h_vm_resize);
HANDLER(h_vm_suspend);
HANDLER(h_vm_resume);
HANDLER(h_vm_autostart);
HANDLER(h_vm_console);
HANDLER(h_vm_console_attach);
HANDLER(h_agent_console);
HANDLER(h_agent_relay);
/* Whether r asks to upgrade to `protocol`; else answered 426 naming it. */
bool upgrade_asked(struct http_request *r, const char *protocol);
HANDLER(h_agent_console_log);
HANDLER(h_vm_xml);
HANDLER(h_vm_restore);
HANDLER(h_vm_migrate);
HANDLER(h_vm_migration);
HANDLER(h_vm_restart_policy);
HANDLER(h_vm_backup_schedule);
HANDLER(h_agent_backup_blob);
HANDLER(h_snapshot_create);
HANDLER(h_snapshot_list);
HANDLER(h_snapshot_get);
HANDLER(h_snapshot_delete);
HANDLER(h_snapshot_revert);
HANDLER(h_backup_create);
HANDLER(h_backup_list);
HANDLER(h_backup_get);
HANDLER(h_backup_delete);
HANDLER(h_agent_backup_stat);
HANDLER(h_agent_backup_put);
HANDLER(h_agent_backup_commit);
HANDLER(h_agent_backup_fail);
HANDLER(h_agent_benchmark);
HANDLER(h_agent_probe);
/* Add a pending backup of kind `kind` of VM `vm` (a row of vm_lookup)
 * on its node, the VM's key made on first use, under the VM's lock:
 * inside the caller's transaction. 0 with its id in ret_id, -EDQUOT when
 * VM_BACKUPS_PENDING_MAX are under way already, -errno. */
int backup_add(struct app *a, const json_t *vm, const char *kind,
               char ret_id[UUID_STR_LEN + 1]);
/* The 409 for backup_add's -EDQUOT. */
void reply_backups_under_way(struct http_request *r, const json_t *vm);
/* Delete VM `vm_id`'s backups, rows and blobs (the VM goes). 0 or -errno. */
int backups_drop_vm(struct app *a, const char *vm_id);
/* At most `max` bytes of a node's text (cut on a UTF-8 character
 * boundary), control characters replaced, for the event log and answers
 * people read. Caller frees. */
char *node_text(const char *s, size_t max);

HANDLER(h_jointoken_create);
HANDLER(h_node_list);
HANDLER(h_node_get);
HANDLER(h_node_approve);
HANDLER(h_node_delete);
HANDLER(h_node_drain);
HANDLER(h_node_undrain);
HANDLER(h_node_policy_get);
HANDLER(h_node_policy_put);
HANDLER(h_pool_list);
HANDLER(h_pool_add);
HANDLER(h_pool_remove);
HANDLER(h_gpu_list);
HANDLER(h_gpu_offer);
HANDLER(h_gpu_withdraw);

HANDLER(h_event_list);

HANDLER(h_net_create);
HANDLER(h_net_list);
HANDLER(h_net_get);
HANDLER(h_net_delete);
HANDLER(h_port_list);
HANDLER(h_port_add);
HANDLER(h_port_remove);

HANDLER(h_ingress_all);
HANDLER(h_ingress_list);
HANDLER(h_ingress_add);
HANDLER(h_ingress_remove);
HANDLER(h_health_list);
HANDLER(h_health_add);
HANDLER(h_health_get);
HANDLER(h_health_remove);
/* Answers for health checks a create or POST refused (h_health.c):
 * 400 naming `where` ("health_checks[2]: ", or "" for a body) and 409
 * for a VM with HC_PER_VM_MAX. reply_health_invalid clears je. */
void reply_health_invalid(struct http_request *r, const char *where,
                          struct jerr *je);
void reply_health_full(struct http_request *r);

HANDLER(h_agent_register);
HANDLER(h_agent_desired);
HANDLER(h_agent_status);
HANDLER(h_image_create);
HANDLER(h_image_list);
HANDLER(h_image_get);
HANDLER(h_image_delete);
HANDLER(h_image_upload);
HANDLER(h_image_download);
HANDLER(h_template_list);
HANDLER(h_template_get);
HANDLER(h_sshkey_create);
HANDLER(h_sshkey_list);
HANDLER(h_sshkey_delete);
/* Streams an upload into the catalog as it arrives. */
int h_image_upload_sink(struct http_request *r, const void *data, size_t len,
                        void *app);

/* Answer 200 {items: [render(row) for each of rows]} (a list with no
 * pages). */
void reply_items(struct http_request *r, json_t *rows,
                 json_t *(*render)(json_t *row));
/* Answer the VM `id` as GET /v1/vms/{id} shows it, with `status`. */
void reply_vm(struct app *a, struct http_request *r, int status,
              const char *id);
/* Find a live VM named by the route's first parameter (UUID, or a name
 * among the caller's VMs) that the caller may see; sets the event target.
 * 0 and *ret (caller owns) or -ENOENT / -EIO. */
int vm_lookup(struct app *a, struct http_request *r, json_t **ret);
/* vm_lookup for a handler: the VM (caller owns), or NULL once the error
 * is answered. */
json_t *vm_lookup_reply(struct app *a, struct http_request *r);
/* Answer 200 {items, next_cursor: null}, a whole list in one page
 * (steals items); 503 when items is NULL (the store failed). */
void reply_one_page(struct http_request *r, json_t *items);
/* Resolve a network reference (name or id; NULL = the account's default,
 * created on first use) inside the caller's transaction. */
int network_resolve(struct store *s, const char *account_id, const char *ref,
                    char ret_id[37]);
int network_insert(struct store *s, const char *account_id, const char *name,
                   const char *cidr, bool is_default, char ret_id[37]);
/* Insert a published port {proto, vm_port, host_port?}; with a node, the
 * host port is allocated now. ret_id may be NULL. */
int port_insert(struct store *s, const char *vm_id, const char *node_id,
                json_t *spec, char ret_id[37]);
extern const struct jfield port_fields[3];
/* Decode a node's status post (POST /v1/agent/status) with the contract's
 * decoder and check it as far as it can be without the store (reachable
 * address, VM addresses). 0 with *ret filled (caller clears it with
 * am_status_clear), or -EINVAL with *err naming the member (caller clears
 * it). */
int agent_status_decode(const json_t *body, struct am_status *ret,
                        struct jerr *err);
/* The members of a POST /v1/vms body, sized by this controller's limits. */
#define VM_CREATE_NFIELDS 23
void vm_create_fields(const struct app *a, struct jfield ret[VM_CREATE_NFIELDS]);
/* Create an API key for an account (also `fog-controller init`'s first
 * admin key); the secret is in ret_key->token. 0 or -errno. */
int key_insert(struct store *s, const char *account_id, const char *desc,
               struct auth_key *ret_key);
/* The node named by the first path parameter (id or name) that the caller
 * may see: its own (provider) or any (admin); sets the event target.
 * -ENOENT when there is none. */
int node_find(struct app *a, struct http_request *r, json_t **ret);
/* Retire object id (retire_sql: $1 now, $2 id) when count_sql ($1 id)
 * counts no users, both in one transaction under the store lock (kind,
 * id). True when retired; otherwise the reply (409 "<what> is used by N
 * VMs", or 503) is made. */
bool retire_unused(struct app *a, struct http_request *r, const char *kind,
                   const char *id, const char *count_sql,
                   const char *retire_sql, const char *what);
/* Drop a deleted VM's interfaces and ports. */
void vm_release(struct app *a, const char *vm_id);
/* Complete a VM's deletion on the controller: the row leaves every list,
 * its name, addresses and ports are free, billing stops (it counts only
 * live VMs) and the networks it was on learn it left. 0, -ENOENT when it
 * was already gone, or the store's -errno. */
int vm_delete_finish(struct app *a, const char *vm_id, int64_t now);
/* The statements behind a VM's lookup and lists, each backed by an index
 * (tests read their query plans): by id ($1 id, $2 caller, $3 admin), by
 * the caller's own name ($1 name, $2 caller), by any name ($1), and the
 * admin's and a tenant's page (page_list's arguments). */
extern const char vm_sql_by_id[], vm_sql_by_own_name[], vm_sql_by_any_name[],
    vm_sql_list_all[], vm_sql_list_own[];
/* Bump every node hosting a VM on one of this VM's networks. */
void vm_networks_changed(struct app *a, const char *vm_id);

/* Write a stored VM row's API object members into w (the caller opens
 * and closes the object). */
void vm_write(struct jsonw *w, struct store_row *row);
/* Render a stored node row as its API object (new reference). */
json_t *node_render(json_t *row);
