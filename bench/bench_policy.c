/* The node agent's policy check: time to check one desired document of
 * N VMs on one network with P published ports against this host's facts
 * (the agent does it for every new document, on the provider's CPU).
 * Prints a markdown table of medians; fails only when an honest document
 * is not accepted whole. Usage: bench_policy [RUNS], default 5. */
#include "common/jsonutil.h"
#include "nodeagent/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* An honest document: VMs on 10.8.0.0/16 behind fogbr7, ports spread over
 * them from 20000 up. */
static json_t *doc_make(int nvm, int nports)
{
    json_t *doc = json_pack(
        "{s:i, s:s, s:{s:s, s:i, s:i}, s:[], s:[{s:s, s:i, s:s, s:s}], s:[], "
        "s:[]}", "revision", 1, "node_id", "n", "mesh", "address",
        "100.96.0.1", "prefix", 12, "listen_port", 51820, "peers", "networks",
        "id", "w", "vxlan_id", 7, "cidr", "10.8.0.0/16", "gateway", "10.8.0.1",
        "vms", "ports");
    json_t *vms = json_object_get(doc, "vms");
    json_t *ports = json_object_get(doc, "ports");
    for (int i = 0; i < nvm; i++) {
        char id[40], mac[20], addr[20];
        snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", i);
        snprintf(mac, sizeof(mac), "52:54:00:00:%02x:%02x", (i >> 8) & 255,
                 i & 255);
        snprintf(addr, sizeof(addr), "10.8.%d.%d", (i + 2) / 250,
                 (i + 2) % 250 + 2);
        json_array_append_new(vms, json_pack(
            "{s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:[{s:s, s:s, s:s}]}", "id",
            id, "name", "vm", "vcpus", 1, "memory_mib", 64, "disk_gib", 1,
            "image", "tiny", "power", "running", "nics", "mac", mac,
            "address", addr, "bridge", "fogbr7"));
    }
    for (int p = 0; p < nports; p++) {
        json_t *vm = json_array_get(vms, (size_t)(p % nvm));
        json_t *nic = json_array_get(json_object_get(vm, "nics"), 0);
        json_array_append_new(ports, json_pack(
            "{s:s, s:s, s:i, s:i, s:s}", "vm_id", json_str(vm, "id"), "proto",
            p % 2 ? "udp" : "tcp", "host_port", 20000 + p / 2, "vm_port", 80,
            "vm_address", json_str(nic, "address")));
    }
    return doc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    static const int sizes[][2] = { { 10, 20 }, { 250, 2000 },
                                    { 1000, 10000 }, { 4000, 40000 } };
    int runs = argc > 1 ? atoi(argv[1]) : 5;
    if (runs < 1)
        runs = 1;
    struct policy_host h = { .port_min = 20000, .port_max = 65000,
                             .wg_port = 51820, .controller = "https://hub" };
    /* This machine's listeners and routes, as the agent would read them. */
    if (policy_host_collect("/", &h) < 0) {
        fprintf(stderr, "cannot read /proc/net\n");
        return 77;
    }
    printf("| VMs | ports | check (ms, median of %d) |\n", runs);
    printf("| ---: | ---: | ---: |\n");
    int rc = 0;
    for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
        json_t *doc = doc_make(sizes[s][0], sizes[s][1]);
        double *ms = calloc((size_t)runs, sizeof(*ms));
        for (int r = 0; r < runs; r++) {
            json_t *acc, *ref;
            double t0 = now_ms_f();
            policy_filter(doc, &h, &acc, &ref);
            ms[r] = now_ms_f() - t0;
            /* A port this host happens to listen on may be refused. */
            if (json_array_size(json_object_get(acc, "vms")) !=
                (size_t)sizes[s][0]) {
                fprintf(stderr, "an honest VM was refused\n");
                rc = 1;
            }
            json_decref(acc);
            json_decref(ref);
        }
        qsort(ms, (size_t)runs, sizeof(*ms), cmp_double);
        printf("| %d | %d | %.1f |\n", sizes[s][0], sizes[s][1],
               ms[runs / 2]);
        free(ms);
        json_decref(doc);
    }
    policy_host_clear(&h);
    return rc;
}
