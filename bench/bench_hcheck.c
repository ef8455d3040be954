/* The node's health checker: N tcp and N http checks, every second, of
 * listeners on 127.0.0.1, driven by one thread (the engine's poll loop)
 * for S seconds. Prints a markdown table: probes run per second, the
 * checker's CPU time per second of wall time (the provider's cost) and
 * its states at the end. Fails when a check of a live listener is not
 * healthy. Usage: bench_hcheck [N] [S], default 500 and 5. */
#include "nodeagent/hcheck.h"
#include "common/timeutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_on(int *ret_port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(fd, 4096) < 0)
        return -1;
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    *ret_port = ntohs(a.sin_port);
    return fd;
}

/* An HTTP server answering 200 to each connection. */
static void *http_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char b[1024];
        if (read(c, b, sizeof(b)) > 0 && write(c, ok, sizeof(ok) - 1) < 0) {
            /* the checker gave up */
        }
        close(c);
    }
}

/* A tcp listener that accepts and closes (the backlog would fill). */
static void *tcp_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0)
            return NULL;
        close(c);
    }
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 500;
    int secs = argc > 2 ? atoi(argv[2]) : 5;
    if (n < 1 || n > 5000 || secs < 1 || secs > 600) {
        fprintf(stderr, "usage: bench_hcheck [N 1-5000] [S 1-600]\n");
        return 2;
    }
    int tport, hport;
    int tfd = listen_on(&tport), hfd = listen_on(&hport);
    if (tfd < 0 || hfd < 0) {
        perror("listen");
        return 1;
    }
    pthread_t tt, ht;
    pthread_create(&tt, NULL, tcp_main, (void *)(intptr_t)tfd);
    pthread_create(&ht, NULL, http_main, (void *)(intptr_t)hfd);
    struct hc_spec *specs = xcalloc(2 * (size_t)n, sizeof(*specs));
    struct hcheck_target *t = xcalloc(2 * (size_t)n, sizeof(*t));
    for (int i = 0; i < 2 * n; i++) {
        bool http = i >= n;
        char json[200];
        snprintf(json, sizeof(json), "{\"id\":\"00000000-0000-4000-8000-%012d"
                 "\",\"type\":\"%s\",\"port\":%d,\"interval_s\":1,\"fall\":1}",
                 i, http ? "http" : "tcp", http ? hport : tport);
        json_t *j = json_loads(json, 0, NULL);
        struct jerr je = { 0 };
        if (!j || hc_spec_from_json(j, false, &specs[i], &je) < 0)
            abort();
        json_decref(j);
        snprintf(t[i].vm_id, sizeof(t[i].vm_id),
                 "00000000-0000-4000-9000-%012d", i / 4);
        snprintf(t[i].address, sizeof(t[i].address), "127.0.0.1");
        t[i].spec = &specs[i];
    }
    struct hcheck *h = hcheck_new();
    hcheck_set(h, t, 2 * (size_t)n);
    /* The engine's own thread: this one. Probes counted by the output
     * changing from "not checked yet" is not enough (it repeats), so the
     * rate is probes started per interval: 2N per second once steady. */
    double c0 = cpu_s();
    int64_t t0 = mono_ms();
    size_t steps = 0;
    while (mono_ms() - t0 < (int64_t)secs * 1000) {
        hcheck_step(h, 1000, -1);
        steps++;
    }
    double wall = (double)(mono_ms() - t0) / 1000.0;
    double cpu = cpu_s() - c0;
    struct hcheck_result *r;
    size_t nr;
    hcheck_results(h, &r, &nr);
    size_t healthy = 0;
    for (size_t i = 0; i < nr; i++)
        healthy += r[i].h.state == HC_HEALTHY;
    printf("| checks (tcp + http) | interval | seconds | poll steps | CPU s "
           "per s (checker and both servers) | healthy at the end |\n");
    printf("|---|---|---|---|---|---|\n");
    printf("| %d + %d | 1 s | %.1f | %zu | %.3f | %zu / %zu |\n", n, n, wall,
           steps, cpu / wall, healthy, nr);
    hcheck_results_free(r, nr);
    hcheck_free(h);
    for (int i = 0; i < 2 * n; i++)
        hc_spec_clear(&specs[i]);
    free(specs);
    free(t);
    shutdown(tfd, SHUT_RDWR);
    shutdown(hfd, SHUT_RDWR);
    pthread_join(tt, NULL);
    pthread_join(ht, NULL);
    return healthy == nr ? 0 : 1;
}
