/* Small helpers the benchmarks share: a monotonic clock in milliseconds,
 * a comparator for sorting latencies and a process's CPU time. */
#pragma once

#include "common/util.h"

#include <dirent.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

static inline double bench_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* CPU time the process has run, all its threads together, in ms: on a
 * shared machine the wall clock of a phase mostly measures the others'
 * load, its CPU time what the phase costs. Threads that ended are not
 * counted (the controller's serving threads live as long as it does). */
static inline double proc_cpu_ms(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    double ns = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *f = xasprintf("%s/%s/schedstat", path,
                                           de->d_name);
        FILE *fp = fopen(f, "re");
        unsigned long long run = 0;
        if (fp && fscanf(fp, "%llu", &run) == 1)
            ns += (double)run;
        if (fp)
            fclose(fp);
    }
    if (d)
        closedir(d);
    return ns / 1e6;
}
