/* GPU inventory time: one full read of a fake sysfs tree holding N cards
 * (GPU + HDMI audio each, one IOMMU group per card, two NUMA nodes), as
 * the agent does at start and on every inventory refresh, and the heap
 * still in use after them (libpci's parsed pci.ids is let go). Prints a
 * markdown table of medians. Usage: bench_gpu [RUNS], default 5. */
#include "nodeagent/gpu.h"
#include "tests/testutil.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 5;
    static const int sizes[] = { 1, 8, 64 };
    if (runs < 1 || runs > 1000)
        runs = 5;
    _cleanup_free_ char *dir = tu_tempdir("bench-gpu");
    size_t heap0 = mallinfo2().uordblks;
    printf("| cards | inventory ms (median of %d) |\n| --- | --- |\n", runs);
    for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
        _cleanup_free_ char *root = xasprintf("%s/t%d", dir, sizes[s]);
        for (int i = 0; i < sizes[s]; i++) {
            char a[24], b[24];
            snprintf(a, sizeof(a), "0000:%02x:00.0", 0x10 + i);
            snprintf(b, sizeof(b), "0000:%02x:00.1", 0x10 + i);
            const char *cpus = i % 2 ? "16-31" : "0-15";
            tu_fake_pci(root, &(struct tu_pci_fn){ a, 0x030000, 0x10de, 0x2204,
                                                   i, i % 2, cpus, "vfio-pci" });
            tu_fake_pci(root, &(struct tu_pci_fn){ b, 0x040300, 0x10de, 0x1aef,
                                                   i, i % 2, cpus, "vfio-pci" });
        }
        double t[1000];
        for (int r = 0; r < runs; r++) {
            struct gpu_inventory inv;
            double t0 = now_ms_f();
            if (gpu_inventory_collect(root, &inv) < 0 ||
                inv.n != (size_t)sizes[s]) {
                fprintf(stderr, "inventory of %d cards failed\n", sizes[s]);
                tu_rmrf(dir);
                return 1;
            }
            t[r] = now_ms_f() - t0;
            gpu_inventory_clear(&inv);
        }
        qsort(t, (size_t)runs, sizeof(double), cmp_d);
        printf("| %d | %.2f |\n", sizes[s], t[runs / 2]);
    }
    printf("\nheap in use after the inventories: %.1f MiB more than before\n",
           (double)(mallinfo2().uordblks - heap0) / (1024.0 * 1024.0));
    tu_rmrf(dir);
    return 0;
}
