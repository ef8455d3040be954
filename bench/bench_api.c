/* Controller API benchmark: latency of creating and listing VMs over one
 * kept-alive HTTPS connection, and the cost of many parked agent long
 * polls (threads and resident memory of the controller). Prints a table;
 * figures, not pass/fail. */
#include "api/client.h"
#include "common/jsonutil.h"
#include "bench/bench_util.h"
#include "tests/testutil.h"

#include <curl/curl.h>
#include <stdio.h>
#include <time.h>


static double pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof(double), bench_cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

/* A field of /proc/PID/status in kB or count. */
static long proc_status(pid_t pid, const char *key)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, key, strlen(key)) == 0)
            v = strtol(line + strlen(key), NULL, 10);
    if (f)
        fclose(f);
    return v;
}

static void row(const char *what, const char *value)
{
    printf("| %-52s | %18s |\n", what, value);
}

int main(int argc, char **argv)
{
    int nvms = argc > 1 ? atoi(argv[1]) : 200;
    int npolls = argc > 2 ? atoi(argv[2]) : 1000;
    struct tu_ctl ctl;
    tu_ctl_start(&ctl, NULL);
    struct api_client *api = api_client_new(ctl.url, ctl.admin_key, ctl.ca);
    struct api_reply rep;

    double *lat = xcalloc((size_t)nvms, sizeof(double));
    for (int i = 0; i < nvms; i++) {
        json_auto_t *body = json_pack("{s:s, s:i, s:i, s:i, s:s}", "name", "x",
                                      "vcpus", 1, "memory_mib", 128,
                                      "disk_gib", 1, "image", "tiny");
        _cleanup_free_ char *name = xasprintf("bench-%d", i);
        json_object_set_new(body, "name", json_string(name));
        double t0 = bench_now_ms();
        api_request(api, "POST", "/v1/vms", body, NULL, &rep);
        lat[i] = bench_now_ms() - t0;
        if (rep.status != 201) {
            fprintf(stderr, "create failed: %ld %s\n", rep.status, rep.body);
            return 1;
        }
        api_reply_clear(&rep);
    }
    double create_p50 = pct(lat, (size_t)nvms, 0.5);
    double create_p99 = pct(lat, (size_t)nvms, 0.99);

    double t_all = bench_now_ms();
    for (int i = 0; i < nvms; i++) {
        double t0 = bench_now_ms();
        api_request(api, "GET", "/v1/vms?limit=100", NULL, NULL, &rep);
        lat[i] = bench_now_ms() - t0;
        api_reply_clear(&rep);
    }
    double list_s = (bench_now_ms() - t_all) / 1e3;
    double list_p50 = pct(lat, (size_t)nvms, 0.5);
    double list_p99 = pct(lat, (size_t)nvms, 0.99);

    /* One node, many parked long polls (as many agents would park). */
    api_request(api, "POST", "/v1/join-tokens", NULL, NULL, &rep);
    _cleanup_free_ char *token = xstrdup(json_str(rep.json, "token"));
    api_reply_clear(&rep);
    json_auto_t *reg = json_pack("{s:s, s:s, s:{s:i, s:i, s:i, s:b}}", "token",
                                 token, "name", "bench-node", "inventory",
                                 "vcpus", 1, "memory_mib", 1024, "disk_gib", 10,
                                 "kvm", 0);
    struct api_client *anon = api_client_new(ctl.url, NULL, ctl.ca);
    api_request(anon, "POST", "/v1/agent/register", reg, NULL, &rep);
    _cleanup_free_ char *cred = xstrdup(json_str(rep.json, "credential"));
    api_reply_clear(&rep);
    api_client_free(anon);
    struct api_client *node = api_client_new(ctl.url, cred, ctl.ca);
    api_request(node, "GET", "/v1/agent/desired", NULL, NULL, &rep);
    long rev = (long)json_integer_value(json_object_get(rep.json, "revision"));
    api_reply_clear(&rep);
    api_client_free(node);

    long threads0 = proc_status(ctl.pid, "Threads:");
    long rss0 = proc_status(ctl.pid, "VmRSS:");
    CURLM *multi = curl_multi_init();
    CURL **easy = xcalloc((size_t)npolls, sizeof(CURL *));
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/desired?since=%ld&wait=60",
                                         ctl.url, rev);
    _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", cred);
    struct curl_slist *hdr = curl_slist_append(NULL, auth);
    FILE *devnull = fopen("/dev/null", "we");
    for (int i = 0; i < npolls; i++) {
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_CAINFO, ctl.ca);
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, devnull);
        curl_multi_add_handle(multi, easy[i]);
    }
    /* Drive the handshakes until every poll has been sent and parked. */
    double t0 = bench_now_ms();
    int running = npolls;
    while (bench_now_ms() - t0 < 20000) {
        curl_multi_perform(multi, &running);
        curl_multi_poll(multi, NULL, 0, 50, NULL);
        long parked = 0;
        for (int i = 0; i < npolls; i++) {
            curl_off_t up = 0;
            curl_easy_getinfo(easy[i], CURLINFO_SIZE_UPLOAD_T, &up);
            double pre = 0;
            curl_easy_getinfo(easy[i], CURLINFO_PRETRANSFER_TIME, &pre);
            parked += pre > 0;
        }
        if (parked == npolls && bench_now_ms() - t0 > 1000)
            break;
    }
    long threads1 = proc_status(ctl.pid, "Threads:");
    long rss1 = proc_status(ctl.pid, "VmRSS:");
    /* A change wakes them all. */
    double tw = bench_now_ms();
    api_request(api, "DELETE", "/v1/vms/bench-0", NULL, NULL, &rep);
    api_reply_clear(&rep);
    while (running > 0 && bench_now_ms() - tw < 30000) {
        curl_multi_perform(multi, &running);
        curl_multi_poll(multi, NULL, 0, 20, NULL);
    }
    double wake_ms = bench_now_ms() - tw;
    for (int i = 0; i < npolls; i++) {
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    free(easy);
    curl_multi_cleanup(multi);
    curl_slist_free_all(hdr);
    fclose(devnull);

    char v[64];
    printf("\n| %-52s | %18s |\n|%.*s|%.*s|\n", "controller API (sqlite, TLS, "
           "keep-alive)", "value", 54, "------------------------------------"
           "------------------------------", 20, "--------------------");
    snprintf(v, sizeof(v), "%.2f / %.2f ms", create_p50, create_p99);
    row("POST /v1/vms p50 / p99", v);
    snprintf(v, sizeof(v), "%.2f / %.2f ms", list_p50, list_p99);
    row("GET /v1/vms?limit=100 p50 / p99", v);
    snprintf(v, sizeof(v), "%.0f req/s", nvms / list_s);
    row("GET /v1/vms?limit=100 throughput, one client", v);
    snprintf(v, sizeof(v), "%d", npolls - running);
    row("long polls answered after one change", v);
    snprintf(v, sizeof(v), "%ld -> %ld", threads0, threads1);
    snprintf(v, sizeof(v), "%ld -> %ld", threads0, threads1);
    char label[80];
    snprintf(label, sizeof(label), "controller threads, idle -> %d parked polls",
             npolls);
    row(label, v);
    snprintf(v, sizeof(v), "%.1f KiB", (double)(rss1 - rss0) / npolls);
    row("controller RSS per parked poll", v);
    snprintf(v, sizeof(v), "%.0f ms", wake_ms);
    snprintf(label, sizeof(label), "wake %d parked polls with one change", npolls);
    row(label, v);

    api_client_free(api);
    free(lat);
    tu_ctl_destroy(&ctl);
    return 0;
}
