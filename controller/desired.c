/* Building a node's desired-state document. */
#include "controller/desired.h"

#include "common/jsonutil.h"
#include "controller/guard.h"

#include <stdio.h>

static json_t *vm_nics(struct app *a, const char *vm_id)
{
    json_auto_t *rows = NULL;
    json_t *out = json_array();
    size_t i;
    json_t *row;
    store_query(a->store, &rows,
                "SELECT c.network_id, c.mac, c.address, w.cidr, w.gateway, "
                "w.vxlan_id FROM vm_nics c JOIN networks w ON w.id = "
                "c.network_id WHERE c.vm_id = $1 ORDER BY c.idx", "s", vm_id);
    json_array_foreach(rows, i, row) {
        const char *cidr = json_str(row, "cidr");
        const char *slash = cidr ? strchr(cidr, '/') : NULL;
        char bridge[32];
        snprintf(bridge, sizeof(bridge), "fogbr%lld",
                 (long long)json_int(row, "vxlan_id", 0));
        json_array_append_new(
            out, json_pack("{s:s, s:s, s:s, s:i, s:s, s:i, s:s}", "network_id",
                           json_str(row, "network_id"), "mac",
                           json_str(row, "mac"), "address",
                           json_str(row, "address"), "prefix",
                           slash ? atoi(slash + 1) : 24, "gateway",
                           json_str(row, "gateway"), "mtu", DESIRED_GUEST_MTU,
                           "bridge", bridge));
    }
    return out;
}

static json_t *vms_doc(struct app *a, const char *node_id)
{
    json_auto_t *rows = NULL;
    json_t *vms = json_array();
    size_t i;
    json_t *row;

    store_query(a->store, &rows,
                "SELECT v.id, v.name, v.vcpus, v.memory_mib, v.disk_gib, "
                "v.image, v.desired_state, v.stop_force, v.reboot_gen, v.start_gen, "
                "v.user_data, v.account_id, i.id AS image_id, i.sha256, "
                "i.format, i.size FROM vms v LEFT JOIN images i ON i.id = "
                "v.image_id WHERE v.node_id = $1 AND v.deleted_at IS NULL "
                "ORDER BY v.id", "s", node_id);
    json_array_foreach(rows, i, row) {
        const char *d = json_str(row, "desired_state");
        json_t *source = json_null();
        if (json_str(row, "image_id") && json_str(row, "sha256")) {
            _cleanup_free_ char *url = xasprintf("/v1/images/%s/file",
                                                 json_str(row, "image_id"));
            source = json_pack("{s:s, s:s, s:s, s:I, s:s}", "id",
                               json_str(row, "image_id"), "sha256",
                               json_str(row, "sha256"), "format",
                               json_str(row, "format"), "size",
                               (json_int_t)json_int(row, "size", 0), "url", url);
        }
        json_auto_t *keys = NULL;
        json_t *ssh = json_array();
        size_t k;
        json_t *kr;
        store_query(a->store, &keys, "SELECT public_key FROM ssh_keys WHERE "
                    "account_id = $1 ORDER BY name", "s",
                    json_str(row, "account_id"));
        json_array_foreach(keys, k, kr)
            json_array_append_new(ssh, json_string(json_str(kr, "public_key")));
        json_array_append_new(
            vms, json_pack("{s:s, s:s, s:I, s:I, s:I, s:s?, s:o, s:o, s:s, "
                           "s:b, s:b, s:I, s:I, s:s?, s:o}",
                           "id", json_str(row, "id"), "name",
                           json_str(row, "name"), "vcpus",
                           (json_int_t)json_int(row, "vcpus", 1), "memory_mib",
                           (json_int_t)json_int(row, "memory_mib", 64),
                           "disk_gib", (json_int_t)json_int(row, "disk_gib", 1),
                           "image", json_str(row, "image"), "image_source",
                           source, "ssh_keys", ssh, "power",
                           streq(d, "running") ? "running" : "stopped",
                           "stop_force", json_int(row, "stop_force", 0) != 0,
                           "deleted", streq(d, "deleted"), "reboot_gen",
                           (json_int_t)json_int(row, "reboot_gen", 0),
                           "start_gen",
                           (json_int_t)json_int(row, "start_gen", 0),
                           "user_data", json_str(row, "user_data"), "nics",
                           vm_nics(a, json_str(row, "id"))));
    }
    return vms;
}

/* Networks with a VM on this node, each with the other nodes' VTEPs (their
 * mesh addresses) and the MACs living there. */
static json_t *networks_doc(struct app *a, const char *node_id)
{
    json_auto_t *nets = NULL;
    json_t *out = json_array();
    size_t i;
    json_t *w;

    store_query(a->store, &nets,
                "SELECT DISTINCT w.id, w.cidr, w.gateway, w.vxlan_id FROM "
                "networks w JOIN vm_nics c ON c.network_id = w.id JOIN vms v "
                "ON v.id = c.vm_id WHERE v.node_id = $1 AND v.deleted_at IS "
                "NULL ORDER BY w.vxlan_id", "s", node_id);
    json_array_foreach(nets, i, w) {
        json_auto_t *remote = NULL;
        json_t *vteps = json_array(), *macs = json_array();
        size_t k;
        json_t *m;
        store_query(a->store, &remote,
                    "SELECT n.mesh_ip, c.mac FROM vm_nics c JOIN vms v ON "
                    "v.id = c.vm_id JOIN nodes n ON n.id = v.node_id WHERE "
                    "c.network_id = $1 AND v.deleted_at IS NULL AND "
                    "v.node_id <> $2 AND n.removed_at IS NULL ORDER BY "
                    "n.mesh_ip, c.mac", "ss", json_str(w, "id"), node_id);
        json_array_foreach(remote, k, m) {
            const char *vtep = json_str(m, "mesh_ip");
            if (!vtep)
                continue;
            bool seen = false;
            for (size_t x = 0; x < json_array_size(vteps); x++)
                if (streq(json_string_value(json_array_get(vteps, x)), vtep))
                    seen = true;
            if (!seen)
                json_array_append_new(vteps, json_string(vtep));
            json_array_append_new(macs, json_pack("{s:s, s:s}", "mac",
                                                  json_str(m, "mac"), "vtep",
                                                  vtep));
        }
        char bridge[32];
        snprintf(bridge, sizeof(bridge), "fogbr%lld",
                 (long long)json_int(w, "vxlan_id", 0));
        json_array_append_new(
            out, json_pack("{s:s, s:I, s:s, s:s, s:i, s:s, s:o, s:o}", "id",
                           json_str(w, "id"), "vxlan_id",
                           (json_int_t)json_int(w, "vxlan_id", 0), "cidr",
                           json_str(w, "cidr"), "gateway",
                           json_str(w, "gateway"), "mtu", DESIRED_GUEST_MTU,
                           "bridge", bridge, "vteps", vteps, "macs", macs));
    }
    return out;
}

static json_t *ports_doc(struct app *a, const char *node_id)
{
    json_auto_t *rows = NULL;
    json_t *out = json_array();
    size_t i;
    json_t *row;
    store_query(a->store, &rows,
                "SELECT p.vm_id, p.proto, p.host_port, p.vm_port, c.address "
                "FROM ports p JOIN vms v ON v.id = p.vm_id JOIN vm_nics c ON "
                "c.vm_id = v.id AND c.idx = 0 WHERE p.node_id = $1 AND "
                "p.host_port IS NOT NULL AND v.deleted_at IS NULL ORDER BY "
                "p.proto, p.host_port", "s", node_id);
    json_array_foreach(rows, i, row)
        json_array_append_new(
            out, json_pack("{s:s, s:s, s:I, s:I, s:s}", "vm_id",
                           json_str(row, "vm_id"), "proto",
                           json_str(row, "proto"), "host_port",
                           (json_int_t)json_int(row, "host_port", 0), "vm_port",
                           (json_int_t)json_int(row, "vm_port", 0), "vm_address",
                           json_str(row, "address")));
    return out;
}

/* Every other approved node with a WireGuard key is a peer. The endpoint
 * is what the node reported, else the address the controller saw it at. */
static json_t *peers_doc(struct app *a, const char *node_id)
{
    json_auto_t *rows = NULL;
    json_t *out = json_array();
    size_t i;
    json_t *row;
    store_query(a->store, &rows,
                "SELECT id, name, wg_public_key, endpoint, observed_endpoint, "
                "wg_port, mesh_ip FROM nodes WHERE id <> $1 AND approved = 1 "
                "AND removed_at IS NULL AND wg_public_key IS NOT NULL AND "
                "mesh_ip IS NOT NULL ORDER BY mesh_ip", "s", node_id);
    json_array_foreach(rows, i, row) {
        const char *ep = json_str(row, "endpoint");
        _cleanup_free_ char *observed = NULL;
        /* Rows stored before endpoints were checked may hold anything. */
        if (ep && !guard_endpoint_ok(ep))
            ep = NULL;
        if (!ep && json_str(row, "observed_endpoint")) {
            observed = xasprintf("%s:%lld", json_str(row, "observed_endpoint"),
                                 (long long)json_int(row, "wg_port", 51820));
            ep = observed;
        }
        _cleanup_free_ char *allowed = xasprintf("%s/32", json_str(row, "mesh_ip"));
        json_array_append_new(
            out, json_pack("{s:s, s:s, s:s, s:s?, s:[s], s:i}", "node_id",
                           json_str(row, "id"), "name", json_str(row, "name"),
                           "public_key", json_str(row, "wg_public_key"),
                           "endpoint", ep, "allowed_ips", allowed,
                           "keepalive", 25));
    }
    return out;
}

json_t *desired_build(struct app *a, const char *node_id, int64_t revision)
{
    json_auto_t *me = NULL;
    json_t *mesh = json_null();
    if (store_query_one(a->store, &me, "SELECT mesh_ip, wg_port FROM nodes "
                        "WHERE id = $1", "s", node_id) == 0 &&
        json_str(me, "mesh_ip")) {
        const char *slash = strchr(a->cfg.mesh_cidr, '/');
        mesh = json_pack("{s:s, s:i, s:I}", "address", json_str(me, "mesh_ip"),
                         "prefix", slash ? atoi(slash + 1) : 12, "listen_port",
                         (json_int_t)json_int(me, "wg_port", 51820));
    }
    return json_pack("{s:I, s:s, s:o, s:o, s:o, s:o, s:o}", "revision",
                     (json_int_t)revision, "node_id", node_id, "mesh", mesh,
                     "vms", vms_doc(a, node_id), "networks",
                     networks_doc(a, node_id), "ports", ports_doc(a, node_id),
                     "peers", peers_doc(a, node_id));
}

json_t *desired_build_unapproved(const char *node_id, int64_t revision)
{
    return json_pack("{s:I, s:s, s:n, s:[], s:[], s:[], s:[], s:b}",
                     "revision", (json_int_t)revision, "node_id", node_id,
                     "mesh", "vms", "networks", "ports", "peers", "approved",
                     false);
}
