/* Building a node's desired-state document: every part read in one store
 * transaction, every result checked. The document is whole or not built
 * at all, since an agent prunes what a document leaves out. */
#include "controller/desired.h"

#include "api/agentproto.h"
#include "common/fs.h"
#include "common/jsonutil.h"
#include "controller/guard.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

/* Test seam, compiled in always: with FOG_TEST_FAIL_DESIRED naming a file,
 * while that file exists the step it names ("node", "vms", "nics",
 * "keys", "snapshots", "networks", "remote", "ports", "peers";
 * empty: every step) fails
 * as a store error would. Costs one getenv per step when unarmed. */
static int fault(const char *step)
{
    const char *path = getenv("FOG_TEST_FAIL_DESIRED");
    if (!path || !*path)
        return 0;
    _cleanup_free_ char *text = NULL;
    if (file_read(path, 256, &text, NULL) < 0)
        return 0;
    text[strcspn(text, " \n")] = '\0';
    return !*text || streq(text, step) ? -EIO : 0;
}

/* Append a packed item; a NULL from json_pack (a column that must not be
 * NULL was) is a broken row, not something to leave out quietly. */
static int append(json_t *arr, json_t *item)
{
    if (!item)
        return -EINVAL;
    return json_array_append_new(arr, item) < 0 ? -ENOMEM : 0;
}

static int prefix_of(const char *cidr, int def, int *ret)
{
    const char *slash = cidr ? strchr(cidr, '/') : NULL;
    int64_t p = def;
    if (slash && parse_int64(slash + 1, 0, 128, &p) < 0)
        return -EINVAL;
    *ret = (int)p;
    return 0;
}

static char *bridge_name(const json_t *row)
{
    return xasprintf("fogbr%lld", (long long)json_int(row, "vxlan_id", 0));
}

static int vm_nics(struct app *a, const char *vm_id, json_t **ret)
{
    json_auto_t *rows = NULL;
    int e;
    if ((e = fault("nics")) < 0 ||
        (e = store_query(a->store, &rows,
                         "SELECT c.network_id, c.mac, c.address, w.cidr, "
                         "w.gateway, w.vxlan_id FROM vm_nics c JOIN networks "
                         "w ON w.id = c.network_id WHERE c.vm_id = $1 ORDER "
                         "BY c.idx", "s", vm_id)) < 0)
        return e;
    json_auto_t *out = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        int prefix;
        if ((e = prefix_of(json_str(row, "cidr"), 24, &prefix)) < 0)
            return e;
        _cleanup_free_ char *bridge = bridge_name(row);
        if ((e = append(out, json_pack("{s:s, s:s, s:s, s:i, s:s, s:i, s:s}",
                                       "network_id", json_str(row, "network_id"),
                                       "mac", json_str(row, "mac"), "address",
                                       json_str(row, "address"), "prefix",
                                       prefix, "gateway",
                                       json_str(row, "gateway"), "mtu",
                                       DESIRED_GUEST_MTU, "bridge",
                                       bridge))) < 0)
            return e;
    }
    *ret = json_incref(out);
    return 0;
}

static int ssh_keys(struct app *a, const char *account_id, json_t **ret)
{
    json_auto_t *rows = NULL;
    int e;
    if ((e = fault("keys")) < 0 ||
        (e = store_query(a->store, &rows, "SELECT public_key FROM ssh_keys "
                         "WHERE account_id = $1 ORDER BY name", "s",
                         account_id)) < 0)
        return e;
    json_auto_t *out = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        if ((e = append(out, json_pack("s", json_str(row, "public_key")))) < 0)
            return e;
    *ret = json_incref(out);
    return 0;
}

/* The snapshots VM `vm_id` should have, and the revert last asked for. */
static int vm_snapshots(struct app *a, const json_t *row, json_t *entry)
{
    json_auto_t *rows = NULL;
    int e;
    if ((e = fault("snapshots")) < 0 ||
        (e = store_query(a->store, &rows, "SELECT id, name FROM vm_snapshots "
                         "WHERE vm_id = $1 AND state IN ('pending', 'ready') "
                         "ORDER BY created_at, name", "s",
                         json_str(row, "id"))) < 0)
        return e;
    if (json_object_set(entry, AGENT_VM_SNAPSHOTS, rows) < 0)
        return -ENOMEM;
    if (json_int(row, "revert_gen", 0) > 0 && json_str(row, "revert_snapshot") &&
        json_object_set_new(entry, AGENT_VM_REVERT, json_pack(
            "{s:I, s:s}", "gen", (json_int_t)json_int(row, "revert_gen", 0),
            "snapshot_id", json_str(row, "revert_snapshot"))) < 0)
        return -ENOMEM;
    return 0;
}

static int vms_doc(struct app *a, const char *node_id, json_t **ret)
{
    json_auto_t *rows = NULL;
    int e;
    if ((e = fault("vms")) < 0 ||
        (e = store_query(a->store, &rows,
                         "SELECT v.id, v.name, v.vcpus, v.memory_mib, "
                         "v.disk_gib, v.image, v.desired_state, v.stop_force, "
                         "v.reboot_gen, v.start_gen, v.place_gen, "
                         "v.shutdown_timeout_s, v.user_data, "
                         "v.revert_gen, v.revert_snapshot, "
                         "v.account_id, i.id AS image_id, i.sha256, i.format, "
                         "i.size FROM vms v LEFT JOIN images i ON i.id = "
                         "v.image_id WHERE v.node_id = $1 AND v.deleted_at IS "
                         "NULL ORDER BY v.id", "s", node_id)) < 0)
        return e;
    json_auto_t *vms = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *d = json_str(row, "desired_state");
        json_auto_t *source = json_null();
        if (json_str(row, "image_id") && json_str(row, "sha256")) {
            _cleanup_free_ char *url = xasprintf("/v1/images/%s/file",
                                                 json_str(row, "image_id"));
            json_decref(source);
            source = json_pack("{s:s, s:s, s:s, s:I, s:s}", "id",
                               json_str(row, "image_id"), "sha256",
                               json_str(row, "sha256"), "format",
                               json_str(row, "format"), "size",
                               (json_int_t)json_int(row, "size", 0), "url", url);
            if (!source)
                return -EINVAL;
        }
        json_auto_t *keys = NULL, *nics = NULL;
        if ((e = ssh_keys(a, json_str(row, "account_id"), &keys)) < 0 ||
            (e = vm_nics(a, json_str(row, "id"), &nics)) < 0)
            return e;
        if ((e = append(vms, json_pack(
                 "{s:s, s:s, s:I, s:I, s:I, s:s?, s:O, s:O, s:s, s:b, s:b, "
                 "s:I, s:I, s:I, s:I, s:s?, s:O}",
                 "id", json_str(row, "id"), "name", json_str(row, "name"),
                 "vcpus", (json_int_t)json_int(row, "vcpus", 1), "memory_mib",
                 (json_int_t)json_int(row, "memory_mib", 64), "disk_gib",
                 (json_int_t)json_int(row, "disk_gib", 1), "image",
                 json_str(row, "image"), "image_source", source, "ssh_keys",
                 keys, "power", streq(d, "running") ? "running" : "stopped",
                 "stop_force", json_int(row, "stop_force", 0) != 0, "deleted",
                 streq(d, "deleted"), "reboot_gen",
                 (json_int_t)json_int(row, "reboot_gen", 0), "start_gen",
                 (json_int_t)json_int(row, "start_gen", 0), "place_gen",
                 (json_int_t)json_int(row, "place_gen", 0),
                 "shutdown_timeout_s",
                 (json_int_t)json_int(row, "shutdown_timeout_s",
                                      VM_SHUTDOWN_TIMEOUT_DEFAULT_S),
                 "user_data",
                 json_str(row, "user_data"), "nics", nics))) < 0 ||
            (e = vm_snapshots(a, row, json_array_get(
                                  vms, json_array_size(vms) - 1))) < 0)
            return e;
    }
    *ret = json_incref(vms);
    return 0;
}

/* The other nodes' VTEPs (mesh addresses) and MACs on network `w`. */
static int network_remote(struct app *a, const char *node_id, const json_t *w,
                          json_t *vteps, json_t *macs)
{
    json_auto_t *remote = NULL;
    int e;
    if ((e = fault("remote")) < 0 ||
        (e = store_query(a->store, &remote,
                         "SELECT n.mesh_ip, c.mac FROM vm_nics c JOIN vms v "
                         "ON v.id = c.vm_id JOIN nodes n ON n.id = v.node_id "
                         "WHERE c.network_id = $1 AND v.deleted_at IS NULL "
                         "AND v.node_id <> $2 AND n.removed_at IS NULL ORDER "
                         "BY n.mesh_ip, c.mac", "ss", json_str(w, "id"),
                         node_id)) < 0)
        return e;
    size_t k;
    json_t *m;
    json_array_foreach(remote, k, m) {
        const char *vtep = json_str(m, "mesh_ip");
        if (!vtep)
            continue; /* a node without a mesh address carries nothing */
        bool seen = false;
        for (size_t x = 0; x < json_array_size(vteps) && !seen; x++)
            seen = streq(json_string_value(json_array_get(vteps, x)), vtep);
        if ((!seen && (e = append(vteps, json_string(vtep))) < 0) ||
            (e = append(macs, json_pack("{s:s, s:s}", "mac",
                                        json_str(m, "mac"), "vtep",
                                        vtep))) < 0)
            return e;
    }
    return 0;
}

/* Networks with a VM on this node, each with the other nodes' VTEPs (their
 * mesh addresses) and the MACs living there. */
static int networks_doc(struct app *a, const char *node_id, json_t **ret)
{
    json_auto_t *nets = NULL;
    int e;
    if ((e = fault("networks")) < 0 ||
        (e = store_query(a->store, &nets,
                         "SELECT DISTINCT w.id, w.cidr, w.gateway, w.vxlan_id "
                         "FROM networks w JOIN vm_nics c ON c.network_id = "
                         "w.id JOIN vms v ON v.id = c.vm_id WHERE v.node_id = "
                         "$1 AND v.deleted_at IS NULL ORDER BY w.vxlan_id",
                         "s", node_id)) < 0)
        return e;
    json_auto_t *out = json_array();
    size_t i;
    json_t *w;
    json_array_foreach(nets, i, w) {
        json_auto_t *vteps = json_array(), *macs = json_array();
        if ((e = network_remote(a, node_id, w, vteps, macs)) < 0)
            return e;
        _cleanup_free_ char *bridge = bridge_name(w);
        if ((e = append(out, json_pack("{s:s, s:I, s:s, s:s, s:i, s:s, s:O, "
                                       "s:O}", "id", json_str(w, "id"),
                                       "vxlan_id",
                                       (json_int_t)json_int(w, "vxlan_id", 0),
                                       "cidr", json_str(w, "cidr"), "gateway",
                                       json_str(w, "gateway"), "mtu",
                                       DESIRED_GUEST_MTU, "bridge", bridge,
                                       "vteps", vteps, "macs", macs))) < 0)
            return e;
    }
    *ret = json_incref(out);
    return 0;
}

static int ports_doc(struct app *a, const char *node_id, json_t **ret)
{
    json_auto_t *rows = NULL;
    int e;
    if ((e = fault("ports")) < 0 ||
        (e = store_query(a->store, &rows,
                         "SELECT p.vm_id, p.proto, p.host_port, p.vm_port, "
                         "c.address FROM ports p JOIN vms v ON v.id = p.vm_id "
                         "JOIN vm_nics c ON c.vm_id = v.id AND c.idx = 0 "
                         "WHERE p.node_id = $1 AND p.host_port IS NOT NULL "
                         "AND v.deleted_at IS NULL ORDER BY p.proto, "
                         "p.host_port", "s", node_id)) < 0)
        return e;
    json_auto_t *out = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        if ((e = append(out, json_pack("{s:s, s:s, s:I, s:I, s:s}", "vm_id",
                                       json_str(row, "vm_id"), "proto",
                                       json_str(row, "proto"), "host_port",
                                       (json_int_t)json_int(row, "host_port", 0),
                                       "vm_port",
                                       (json_int_t)json_int(row, "vm_port", 0),
                                       "vm_address",
                                       json_str(row, "address")))) < 0)
            return e;
    *ret = json_incref(out);
    return 0;
}

/* Every other approved node with a WireGuard key is a peer. The endpoint
 * is what the node reported, else the address the controller saw it at. */
static int peers_doc(struct app *a, const char *node_id, json_t **ret)
{
    json_auto_t *rows = NULL;
    int e;
    if ((e = fault("peers")) < 0 ||
        (e = store_query(a->store, &rows,
                         "SELECT id, name, wg_public_key, endpoint, "
                         "observed_endpoint, wg_port, mesh_ip FROM nodes "
                         "WHERE id <> $1 AND approved = 1 AND removed_at IS "
                         "NULL AND wg_public_key IS NOT NULL AND mesh_ip IS "
                         "NOT NULL ORDER BY mesh_ip", "s", node_id)) < 0)
        return e;
    json_auto_t *out = json_array();
    size_t i;
    json_t *row;
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
        if ((e = append(out, json_pack("{s:s, s:s, s:s, s:s?, s:[s], s:i}",
                                       "node_id", json_str(row, "id"), "name",
                                       json_str(row, "name"), "public_key",
                                       json_str(row, "wg_public_key"),
                                       "endpoint", ep, "allowed_ips", allowed,
                                       "keepalive", 25))) < 0)
            return e;
    }
    *ret = json_incref(out);
    return 0;
}

/* The parts, read inside the caller's transaction. */
static int build(struct app *a, const char *node_id, json_t **ret)
{
    json_auto_t *me = NULL, *mesh = NULL, *vms = NULL, *nets = NULL,
                *ports = NULL, *peers = NULL;
    int e;
    if ((e = fault("node")) < 0 ||
        (e = store_query_one(a->store, &me, "SELECT revision, mesh_ip, "
                             "wg_port FROM nodes WHERE id = $1 AND removed_at "
                             "IS NULL", "s", node_id)) < 0)
        return e;
    if (json_str(me, "mesh_ip")) {
        int prefix;
        if ((e = prefix_of(a->cfg.mesh_cidr, 12, &prefix)) < 0)
            return e;
        mesh = json_pack("{s:s, s:i, s:I}", "address", json_str(me, "mesh_ip"),
                         "prefix", prefix, "listen_port",
                         (json_int_t)json_int(me, "wg_port", 51820));
    } else {
        mesh = json_null();
    }
    if (!mesh)
        return -EINVAL;
    if ((e = vms_doc(a, node_id, &vms)) < 0 ||
        (e = networks_doc(a, node_id, &nets)) < 0 ||
        (e = ports_doc(a, node_id, &ports)) < 0 ||
        (e = peers_doc(a, node_id, &peers)) < 0)
        return e;
    json_t *doc = json_pack("{s:I, s:s, s:O, s:O, s:O, s:O, s:O}", "revision",
                            (json_int_t)json_int(me, "revision", 0), "node_id",
                            node_id, "mesh", mesh, "vms", vms, "networks", nets,
                            "ports", ports, "peers", peers);
    if (!doc)
        return -EINVAL;
    *ret = doc;
    return 0;
}

int desired_build(struct app *a, const char *node_id, json_t **ret_doc)
{
    int e = store_tx_begin_read(a->store);
    if (e < 0)
        return e;
    json_t *doc = NULL;
    e = build(a, node_id, &doc);
    store_tx_rollback(a->store); /* read only: nothing to keep */
    if (e < 0)
        return e;
    *ret_doc = doc;
    return 0;
}

json_t *desired_build_unapproved(const char *node_id, int64_t revision)
{
    return json_pack("{s:I, s:s, s:n, s:[], s:[], s:[], s:[], s:b}",
                     "revision", (json_int_t)revision, "node_id", node_id,
                     "mesh", "vms", "networks", "ports", "peers", "approved",
                     false);
}
