/* The node identity kept in the data directory between runs. */
#include "nodeagent/nodestate.h"

#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/log.h"

#include <errno.h>
#include <sys/stat.h>

static char *state_path(const char *data_dir)
{
    return xasprintf("%s/node.json", data_dir);
}

bool node_state_exists(const char *data_dir)
{
    _cleanup_free_ char *p = state_path(data_dir);
    return access(p, F_OK) == 0;
}

char *node_state_ca_path(const char *data_dir)
{
    return xasprintf("%s/ca.pem", data_dir);
}

char *node_state_wg_key_path(const char *data_dir)
{
    return xasprintf("%s/wg.key", data_dir);
}

static char *dup_opt(const json_t *o, const char *key)
{
    const char *s = json_str(o, key);
    return s ? xstrdup(s) : NULL;
}

int node_state_load(const char *data_dir, struct node_state *ret)
{
    _cleanup_free_ char *path = state_path(data_dir), *text = NULL;
    int r = file_read(path, 1 << 16, &text, NULL);
    if (r < 0)
        return r;
    json_error_t jerr;
    _cleanup_json_ json_t *j = json_loads(text, 0, &jerr);
    static const struct jfield fields[] = {
        { "controller", JF_STRING, true, 1, 2048, NULL },
        { "node_id", JF_UUID, true, 0, 0, NULL },
        { "credential", JF_STRING, true, 1, 512, NULL },
        { "name", JF_NAME, true, 0, 0, NULL },
        { "mesh_ip", JF_STRING, false, 0, 64, NULL },
        { "libvirt", JF_STRING, false, 1, 2048, NULL },
        { "heartbeat_s", JF_INT, false, 1, 3600, NULL },
        { "controller_key_pin", JF_STRING, false, 8, 128, NULL },
        { "port_min", JF_INT, false, 1, 65535, NULL },
        { "port_max", JF_INT, false, 1, 65535, NULL },
        { "wg_port", JF_INT, false, 1, 65535, NULL },
    };
    struct jerr je = { 0 };
    if (!j) {
        log_error("%s: %s", path, jerr.text);
        return -EINVAL;
    }
    if (json_check(j, fields, ARRAY_SIZE(fields), &je) < 0) {
        log_error("%s: %s", path, je.detail);
        jerr_clear(&je);
        return -EINVAL;
    }
    const char *pin = json_str(j, "controller_key_pin");
    if (pin && !startswith(pin, "sha256//")) {
        log_error("%s: controller_key_pin '%s' is not 'sha256//...'", path,
                  pin);
        return -EINVAL;
    }
    *ret = (struct node_state){
        .controller = dup_opt(j, "controller"),
        .node_id = dup_opt(j, "node_id"),
        .credential = dup_opt(j, "credential"),
        .name = dup_opt(j, "name"),
        .mesh_ip = dup_opt(j, "mesh_ip"),
        .libvirt_uri = dup_opt(j, "libvirt"),
        .heartbeat_s = json_int(j, "heartbeat_s", 5),
        .key_pin = dup_opt(j, "controller_key_pin"),
        .port_min = json_int(j, "port_min", 0),
        .port_max = json_int(j, "port_max", 0),
        .wg_port = json_int(j, "wg_port", 0),
    };

    return 0;
}

int node_state_save(const char *data_dir, const struct node_state *st)
{
    _cleanup_free_ char *path = state_path(data_dir);
    _cleanup_json_ json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s, s:I}", "controller", st->controller, "node_id",
        st->node_id, "credential", st->credential, "name", st->name,
        "heartbeat_s", (json_int_t)st->heartbeat_s);
    if (!j)
        return -EINVAL;
    /* Optional members are left out rather than written as null, which
     * the loader's string fields do not take. */
    static const char *const opt[] = { "mesh_ip", "libvirt",
                                       "controller_key_pin" };
    const char *const optv[] = { st->mesh_ip, st->libvirt_uri, st->key_pin };
    for (size_t i = 0; i < ARRAY_SIZE(opt); i++)
        if (optv[i])
            json_object_set_new(j, opt[i], json_string(optv[i]));
    static const char *const ports[] = { "port_min", "port_max", "wg_port" };
    const int64_t vals[] = { st->port_min, st->port_max, st->wg_port };
    for (size_t i = 0; i < ARRAY_SIZE(ports); i++)
        if (vals[i] > 0)
            json_object_set_new(j, ports[i], json_integer(vals[i]));
    _cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2));
    return file_write_atomic(path, text, strlen(text), 0600);
}

void node_state_clear(struct node_state *st)
{
    free(st->controller);
    free(st->node_id);
    if (st->credential)
        explicit_bzero(st->credential, strlen(st->credential));
    free(st->credential);
    free(st->name);
    free(st->mesh_ip);
    free(st->libvirt_uri);
    free(st->key_pin);
    *st = (struct node_state){ 0 };
}
