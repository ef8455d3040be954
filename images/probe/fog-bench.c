/* The benchmark worker of the probe guest (linked statically into its
 * initramfs by images/probe/build.sh): reads the challenge from the kernel
 * command line (fog.bench=MEM,ROUNDS,LANES,SEGMENTS,NONCE) or, on a host,
 * from its first argument, runs it on as many threads as it has lanes and
 * prints the answer line (BENCH_ANSWER_MARK, then JSON) on stdout. Exit
 * status 0 when answered, 2 for a bad challenge, 1 otherwise. */
#include "common/benchwork.h"
#include "common/ids.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CMDLINE_MAX 4096

/* "MEM,ROUNDS,LANES,SEGMENTS,NONCE" into *ret: 0 or -EINVAL. */
static int parse(const char *s, struct bench_params *ret)
{
    unsigned mem, rounds, lanes, segs;
    char nonce[2 * BENCH_NONCE_LEN + 2];
    int used = 0;
    if (sscanf(s, "%u,%u,%u,%u,%65[0-9a-f]%n", &mem, &rounds, &lanes, &segs,
               nonce, &used) != 5 ||
        (s[used] && s[used] != ' ' && s[used] != '\n'))
        return -EINVAL;
    struct bench_params p = { .memory_mib = mem, .rounds = rounds,
                              .lanes = lanes, .segments = segs };
    if (!is_lower_hex(nonce, 2 * BENCH_NONCE_LEN) ||
        hex_decode(nonce, p.nonce, sizeof(p.nonce)) < 0 ||
        bench_params_check(&p) < 0)
        return -EINVAL;
    *ret = p;
    return 0;
}

/* The fog.bench= word of the kernel command line, or NULL. */
static const char *from_cmdline(char *buf, size_t n)
{
    FILE *f = fopen("/proc/cmdline", "r");
    if (!f)
        return NULL;
    size_t got = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[got] = '\0';
    for (char *w = strtok(buf, " \n"); w; w = strtok(NULL, " \n"))
        if (strncmp(w, "fog.bench=", 10) == 0)
            return w + 10;
    return NULL;
}

int main(int argc, char **argv)
{
    static char cmdline[CMDLINE_MAX];
    const char *spec = argc > 1 ? argv[1] : from_cmdline(cmdline,
                                                         sizeof(cmdline));
    struct bench_params p;
    if (!spec || parse(spec, &p) < 0) {
        fprintf(stderr, "fog-bench: no valid challenge "
                "(fog.bench=MEM,ROUNDS,LANES,SEGMENTS,NONCE)\n");
        return 2;
    }
    size_t ncp = (size_t)p.lanes * (p.segments + 1);
    uint8_t *cp = malloc(ncp * BENCH_HASH_LEN);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int e = cp ? bench_run(&p, cp) : -ENOMEM;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (e < 0) {
        fprintf(stderr, "fog-bench: %s\n", strerror(-e));
        return 1;
    }
    int64_t ms = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000 +
                 (t1.tv_nsec - t0.tv_nsec) / 1000000;
    char *text = bench_answer_text(&p, cp, ms);
    if (!text)
        return 1;
    fprintf(stderr, "fog-bench: %u MiB, %u rounds, %u lanes in %" PRId64
            " ms\n", p.memory_mib, p.rounds, p.lanes, ms);
    printf("%s%s\n", BENCH_ANSWER_MARK, text);
    fflush(stdout);
    free(text);
    free(cp);
    return 0;
}
