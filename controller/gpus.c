/* The store side of GPUs: reports from nodes, assignment to VMs inside
 * the placing transaction, release. */
#include "controller/gpus.h"

#include "api/agentmsg.h"
#include "api/agentproto.h"
#include "common/timeutil.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>

bool gpu_model_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr(":._+-", s[i]))
            return false;
    return true;
}

int gpu_spec_parse(const char *s, char **ret_model, int64_t *ret_count)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    int64_t count = 1;
    _cleanup_free_ char *model = NULL;
    if (!s)
        return -EINVAL;
    if (colon && parse_int64(colon + 1, 1, 16, &count) == 0)
        model = xstrndup(s, (size_t)(colon - s));
    else
        model = xstrdup(s), count = 1;
    if (!gpu_model_ok(model))
        return -EINVAL;
    *ret_model = TAKE_PTR(model);
    *ret_count = count;
    return 0;
}

bool gpu_addr_ok(const char *s)
{
    return am_pci_addr_ok(s);
}

static bool cpulist_ok(const char *s)
{
    return am_cpulist_ok(s);
}

static int report_refuse(struct jerr *err, char *detail)
{
    *err = (struct jerr){ xstrdup(AGENT_GPUS), detail };
    return -EINVAL;
}

int gpus_report_check(const json_t *gpus, struct jerr *err)
{
    static const struct jfield fields[] = {
        { "address", JF_STRING, true, 12, 12, NULL },
        { "id", JF_STRING, true, 9, 9, NULL },
        { "subsystem", JF_STRING, false, 9, 9, NULL },
        { "vendor", JF_STRING, false, 0, 256, NULL },
        { "name", JF_STRING, false, 0, 512, NULL },
        { "model", JF_STRING, true, 1, 64, NULL },
        { "functions", JF_ARRAY, true, 1, AGENT_GPU_FUNCTIONS_MAX, NULL },
        { "iommu_group", JF_INT, false, -1, 1 << 20, NULL },
        { "group", JF_ARRAY, false, 0, 256, NULL },
        { "isolatable", JF_BOOL, false, 0, 0, NULL },
        { "numa_node", JF_INT, false, -1, 1023, NULL },
        { "cpulist", JF_STRING, false, 0, 1024, NULL },
        { "driver", JF_STRING, false, 0, 64, NULL },
        { "usable", JF_BOOL, true, 0, 0, NULL },
        { "reason", JF_STRING, false, 0, 1000, NULL },
    };
    if (!json_is_array(gpus) || json_array_size(gpus) > AGENT_GPUS_MAX)
        return report_refuse(err, xasprintf("'" AGENT_GPUS "' must be a list "
                                            "of at most %d GPUs",
                                            AGENT_GPUS_MAX));
    size_t i, k;
    json_t *g, *f;
    json_array_foreach(gpus, i, g) {
        struct jerr je = { 0 };
        if (json_check(g, fields, ARRAY_SIZE(fields), &je) < 0) {
            int e = report_refuse(err, xasprintf(AGENT_GPUS "[%zu]: %s", i,
                                                 je.detail));
            jerr_clear(&je);
            return e;
        }
        if (!gpu_addr_ok(json_str(g, "address")) ||
            !gpu_model_ok(json_str(g, "model")) ||
            !cpulist_ok(json_str(g, "cpulist") ? json_str(g, "cpulist") : ""))
            return report_refuse(err, xasprintf(
                AGENT_GPUS "[%zu]: address must be dddd:bb:ss.f, model 1 to "
                "64 of A-Z a-z 0-9 : . _ + -, cpulist digits, commas and "
                "dashes", i));
        json_array_foreach(json_object_get(g, "functions"), k, f)
            if (!gpu_addr_ok(json_str(f, "address")))
                return report_refuse(err, xasprintf(
                    AGENT_GPUS "[%zu].functions[%zu]: address must be "
                    "dddd:bb:ss.f", i, k));
    }
    return 0;
}

int gpus_record(struct store *s, const char *node_id, const json_t *gpus,
                int iommu)
{
    int64_t now = now_s();
    int e = 0;
    if (iommu >= 0 &&
        (e = store_exec(s, "UPDATE nodes SET iommu = $1 WHERE id = $2", "bs",
                        iommu > 0, node_id)) < 0)
        return e;
    if ((e = store_exec(s, "UPDATE gpus SET present = 0 WHERE node_id = $1",
                        "s", node_id)) < 0)
        return e;
    size_t i, k;
    json_t *g, *f;
    json_array_foreach(gpus, i, g) {
        json_auto_t *fns = json_array();
        json_array_foreach(json_object_get(g, "functions"), k, f)
            json_array_append_new(fns, json_string(json_str(f, "address")));
        _cleanup_free_ char *fn_text = json_dumps_compact(fns);
        const char *id = json_str(g, "id");
        _cleanup_free_ char *ven = xstrndup(id, 4);
        bool usable = json_bool(g, "usable", false);
        e = store_exec(
            s,
            "INSERT INTO gpus (node_id, address, model, vendor_id, device_id, "
            "vendor, name, numa_node, cpulist, iommu_group, functions, usable, "
            "reason, present, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, "
            "$8, $9, $10, $11, $12, $13, 1, $14) ON CONFLICT (node_id, "
            "address) DO UPDATE SET model = excluded.model, vendor_id = "
            "excluded.vendor_id, device_id = excluded.device_id, vendor = "
            "excluded.vendor, name = excluded.name, numa_node = "
            "excluded.numa_node, cpulist = excluded.cpulist, iommu_group = "
            "excluded.iommu_group, functions = excluded.functions, usable = "
            "excluded.usable, reason = excluded.reason, present = 1, "
            "updated_at = excluded.updated_at",
            "sssssssisisbsi", node_id, json_str(g, "address"),
            json_str(g, "model"), ven, id + 5,
            json_str(g, "vendor") ? json_str(g, "vendor") : "",
            json_str(g, "name") ? json_str(g, "name") : "",
            json_int(g, "numa_node", -1),
            json_str(g, "cpulist") ? json_str(g, "cpulist") : "",
            json_int(g, "iommu_group", -1), fn_text, usable,
            usable ? NULL : json_str(g, "reason") ? json_str(g, "reason")
                                                  : "unusable",
            now);
        if (e < 0)
            return e;
    }
    return 0;
}

/* Free GPUs placement may take: offered, usable, present, unheld. */
#define GPU_FREE_SQL                                                           \
    "offered = 1 AND usable = 1 AND present = 1 AND vm_id IS NULL"

int gpus_assign(struct store *s, const char *node_id, const char *vm_id,
                const char *model, int64_t count)
{
    if (count <= 0)
        return 0;
    /* The NUMA node with the most free ones first, so a VM's GPUs share
     * one where they can (its vCPUs are pinned to their CPUs). */
    json_auto_t *rows = NULL;
    int e = store_query(s, &rows,
                        "SELECT g.address FROM gpus g WHERE g.node_id = $1 AND "
                        "g.model = $2 AND g." GPU_FREE_SQL " ORDER BY (SELECT "
                        "COUNT(*) FROM gpus h WHERE h.node_id = g.node_id AND "
                        "h.model = g.model AND h.numa_node = g.numa_node AND "
                        "h." GPU_FREE_SQL ") DESC, g.numa_node, g.address",
                        "ss", node_id, model);
    if (e < 0)
        return e;
    if ((int64_t)json_array_size(rows) < count)
        return -EBUSY;
    for (int64_t i = 0; i < count; i++) {
        e = store_exec(s, "UPDATE gpus SET vm_id = $1 WHERE node_id = $2 AND "
                       "address = $3 AND " GPU_FREE_SQL, "sss", vm_id, node_id,
                       json_str(json_array_get(rows, (size_t)i), "address"));
        if (e < 0)
            return e;
        if (e == 0)
            return -EBUSY; /* taken meanwhile */
    }
    return 0;
}

int gpus_release(struct store *s, const char *vm_id)
{
    return store_exec(s, "UPDATE gpus SET vm_id = NULL WHERE vm_id = $1", "s",
                      vm_id);
}

json_t *gpus_of_vm(struct store *s, const char *vm_id)
{
    json_auto_t *rows = NULL;
    json_t *out = json_array();
    if (store_query(s, &rows, "SELECT address, model, functions, numa_node, "
                    "cpulist FROM gpus WHERE vm_id = $1 ORDER BY address", "s",
                    vm_id) < 0)
        return out;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        json_t *fns = json_loads(json_str(row, "functions"), 0, NULL);
        json_array_append_new(out, json_pack(
            "{s:s, s:s, s:o, s:I, s:s}", "address", json_str(row, "address"),
            "model", json_str(row, "model"), "functions",
            json_is_array(fns) ? fns : json_array(), "numa_node",
            (json_int_t)json_int(row, "numa_node", -1), "cpulist",
            json_str(row, "cpulist")));
    }
    return out;
}
