/* Joining a controller: the join token pins the controller's CA, the node
 * registers its inventory and mesh public key once, and keeps its identity
 * (node.json, 0600) and mesh private key (wg.key, 0600) in the data dir. */
#include "nodeagent/agent.h"

#include "api/agentmsg.h"
#include "api/client.h"
#include "api/jointoken.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "netfabric/wgkey.h"
#include "nodeagent/gpu.h"
#include "nodeagent/inventory.h"
#include "nodeagent/nodestate.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

/* A node name from the host name: lower case, other characters as '-'. */
static char *default_name(void)
{
    char host[HOST_NAME_MAX + 1] = "";
    if (gethostname(host, sizeof(host)) < 0 || !*host)
        snprintf(host, sizeof(host), "node");
    host[sizeof(host) - 1] = '\0';
    char *dot = strchr(host, '.');
    if (dot)
        *dot = '\0';
    char *n = xstrndup(host, 63);
    for (char *p = n; *p; p++) {
        char c = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
        *p = ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) ? c : '-';
    }
    if (!name_is_valid(n)) {
        free(n);
        n = xstrdup("node");
    }
    return n;
}

int agent_join(const struct agent_settings *s)
{
    char secret[JOINTOKEN_SECRET_HEX + 1], ca_hash[JOINTOKEN_CA_HEX + 1];
    int r;
    if (!s->controller || !s->token) {
        log_error("join needs --controller URL and --token TOKEN");
        return -EINVAL;
    }
    if (!startswith(s->controller, "https://") &&
        !startswith(s->controller, "http://")) {
        log_error("invalid controller URL '%s'", s->controller);
        return -EINVAL;
    }
    if (!jointoken_parse(s->token, secret, ca_hash)) {
        log_error("malformed join token (want fogjoin.<32 hex>.<64 hex>)");
        return -EINVAL;
    }
    _cleanup_free_ char *name = s->name ? xstrdup(s->name) : default_name();
    if (!name_is_valid(name)) {
        log_error("invalid node name '%s'", name);
        return -EINVAL;
    }
    if ((r = mkdir_p(s->data_dir, 0711)) < 0) {
        log_error("cannot create '%s': %s", s->data_dir, strerror(-r));
        return r;
    }
    if (node_state_exists(s->data_dir)) {
        log_error("'%s' already holds a joined node (node.json); refusing to "
                  "register again", s->data_dir);
        return -EEXIST;
    }
    _cleanup_free_ char *url = xstrdup(s->controller);
    size_t ul = strlen(url);
    while (ul && url[ul - 1] == '/')
        url[--ul] = '\0';
    _cleanup_free_ char *pem = NULL;
    r = api_fetch_ca(url, ca_hash, &pem);
    if (r == -EPERM) {
        log_error("the controller at %s presents a CA whose SHA-256 is not "
                  "the token's: refusing it", url);
        return r;
    }
    if (r == -EBADMSG) {
        log_error("the controller at %s does not answer exactly one CA "
                  "certificate at /v1/ca: refusing it", url);
        return r;
    }
    if (r < 0) {
        log_error("cannot fetch the CA from %s: %s", url, strerror(-r));
        return r;
    }
    _cleanup_free_ char *ca_path = node_state_ca_path(s->data_dir);
    if ((r = file_write_atomic(ca_path, pem, strlen(pem), 0600)) < 0) {
        log_error("cannot write '%s': %s", ca_path, strerror(-r));
        return r;
    }
    _cleanup_free_ char *key_path = node_state_wg_key_path(s->data_dir);
    uint8_t priv[WGKEY_LEN], pub[WGKEY_LEN];
    char pub64[WGKEY_B64_LEN + 1];
    if ((r = wgkey_load_or_create(key_path, priv)) < 0) {
        log_error("cannot read or create the mesh key '%s': %s", key_path,
                  strerror(-r));
        return r;
    }
    wgkey_public(priv, pub);
    explicit_bzero(priv, sizeof(priv));
    wgkey_to_base64(pub, pub64);
    /* The register body, as the contract writes it (api/agentmsg.h). */
    struct inventory inv;
    if ((r = agent_config_inventory(s, &inv)) < 0)
        return r;
    _cleanup_(am_register_clear) struct am_register reg = {
        .token = xstrdup(s->token),
        .name = xstrdup(name),
        .wg_public_key = xstrdup(pub64),
        .endpoint = s->endpoint && *s->endpoint ? xstrdup(s->endpoint) : NULL,
        .public_ip = s->public_ip && *s->public_ip ? xstrdup(s->public_ip) :
                                                     NULL,
        .wg_port = s->wg_port,
        .port_min = s->port_min,
        .port_max = s->port_max,
        .iommu = -1,
    };
    inventory_to_am(&inv, &reg.inventory);
    inventory_clear(&inv);
    reg.has_permit_ports = agent_config_permit_ports(s, &reg.permit_ports,
                                                     &reg.n_permit_ports) == 0;
    /* The GPUs as sysfs shows them ({gpus, iommu}); the running agent
     * cross-checks them with libvirt in its status posts. */
    _cleanup_json_ json_t *gpus = NULL;
    if (gpu_report(s->root, NULL, &gpus) == 0) {
        reg.gpus = json_incref(json_object_get(gpus, AGENT_GPUS));
        json_t *io = json_object_get(gpus, AGENT_IOMMU);
        if (json_is_boolean(io))
            reg.iommu = json_is_true(io);
    }
    _cleanup_json_ json_t *body = am_register_encode(&reg);

    /* The key of the controller that takes the token is pinned too: later
     * connections need it on top of the CA, so a certificate the CA issues
     * afterwards cannot stand in for the controller. */
    struct api_client *c = api_client_new(url, NULL, ca_path);
    api_client_capture_key_pin(c);
    struct api_reply rep;
    r = api_request(c, "POST", "/v1/agent/register", body, NULL, &rep);
    _cleanup_free_ char *key_pin = api_client_seen_key_pin(c) ?
                                       xstrdup(api_client_seen_key_pin(c)) :
                                       NULL;
    api_client_free(c);
    if (r < 0 || rep.status != 201) {
        _cleanup_free_ char *why = api_reply_describe(&rep);
        log_error("registration refused: %s", why);
        api_reply_clear(&rep);
        return r < 0 ? r : -EACCES;
    }
    if (!key_pin && startswith(url, "https://"))
        log_warn("the controller's key could not be read: this node trusts "
                 "its CA alone");
    struct node_state st = {
        .controller = xstrdup(url),
        .node_id = xstrdup(json_str(rep.json, "node_id") ?
                               json_str(rep.json, "node_id") : ""),
        .credential = xstrdup(json_str(rep.json, "credential") ?
                                  json_str(rep.json, "credential") : ""),
        .name = xstrdup(name),
        .mesh_ip = json_str(rep.json, "mesh_ip") ?
                       xstrdup(json_str(rep.json, "mesh_ip")) : NULL,
        .libvirt_uri = s->libvirt_uri ? xstrdup(s->libvirt_uri) : NULL,
        .heartbeat_s = json_int(rep.json, "heartbeat_s", 5),
        .key_pin = TAKE_PTR(key_pin),
        .port_min = s->port_min,
        .port_max = s->port_max,
        .wg_port = s->wg_port,
    };
    bool approved = json_bool(rep.json, "approved", false);
    api_reply_clear(&rep);
    if (!uuid_is_valid(st.node_id) || !*st.credential) {
        log_error("the controller's answer lacks a node id or credential");
        node_state_clear(&st);
        return -EPROTO;
    }
    r = node_state_save(s->data_dir, &st);
    if (r < 0)
        log_error("cannot save the node identity in '%s': %s", s->data_dir,
                  strerror(-r));
    else
        printf("joined as %s (node %s)%s\n", st.name, st.node_id,
               approved ? "" : "; waiting for an administrator's approval");
    node_state_clear(&st);
    return r;
}
