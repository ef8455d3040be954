/* API request bodies: the controller loads a JSON body (duplicates
 * refused) and checks it against a route's field table (json_check in
 * common/jsonutil.c); fogctl turns a problem+json answer into one line
 * (api_reply_describe). The first byte picks the table, the rest is the
 * body. */
#include "tests/fuzz/fuzz.h"
#include "api/client.h"
#include "controller/app.h"
#include "controller/handlers.h"

/* POST /v1/networks (controller/h_networks.c). */
static const struct jfield net_create[] = {
    { "name", JF_NAME, true, 0, 0, NULL },
    { "cidr", JF_STRING, true, 9, 18, NULL },
};
/* Every other kind a table uses, at its bounds. */
static const struct jfield kinds[] = {
    { "id", JF_UUID, false, 0, 0, NULL },
    { "meta", JF_OBJECT, false, 0, 0, NULL },
    { "n", JF_INT, false, INT64_MIN, INT64_MAX, NULL },
    { "s", JF_STRING, false, 1, 64, NULL },
};

/* POST /v1/vms (controller/h_vms.c) with the default limits: filled
 * once, below. */
static struct jfield vm_create[VM_CREATE_NFIELDS];

static const struct {
    const struct jfield *f;
    size_t n;
} tables[] = {
    { vm_create, VM_CREATE_NFIELDS },
    { net_create, ARRAY_SIZE(net_create) },
    { port_fields, ARRAY_SIZE(port_fields) },
    { kinds, ARRAY_SIZE(kinds) },
};

static void check(const json_t *body, size_t t)
{
    struct jerr e = { 0 };
    if (json_check(body, tables[t].f, tables[t].n, &e) < 0) {
        if (!e.detail)
            abort(); /* a refusal names its reason */
        jerr_clear(&e);
        return;
    }
    /* Accepted: every member is one of the table's. */
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)body, k, v) {
        bool known = false;
        for (size_t i = 0; i < tables[t].n; i++)
            known = known || streq(k, tables[t].f[i].name);
        if (!known)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!vm_create[0].name) {
        struct app a = { .cfg = { .max_vcpus = 64, .max_memory_mib = 262144,
                                  .max_disk_gib = 4096 } };
        vm_create_fields(&a, vm_create);
    }
    if (size < 1)
        return 0;
    size_t t = data[0] % ARRAY_SIZE(tables);
    json_auto_t *body = fuzz_json(data + 1, size - 1);
    if (body) {
        check(body, t);
        /* The array members a route checks one by one. */
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(body, "ports"), i, p)
            check(p, 2);
    }
    /* The same bytes as an answer to fogctl. */
    struct api_reply r = { .status = 400 + data[0] % 200, .json = body };
    free(api_reply_describe(&r));
    return 0;
}
