/* Controller API benchmark: latency of creating and listing VMs over one
 * kept-alive HTTPS connection, and the cost of many parked agent long
 * polls (threads and resident memory of the controller; the time to wake
 * 2,000 of them, median of 3 rounds). Prints a table;
 * figures, not pass/fail. */
#include "api/client.h"
#include "common/buf.h"
#include "common/jsonutil.h"
#include "bench/bench_util.h"
#include "tests/testutil.h"

#include <curl/curl.h>
#include <dirent.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>


/* Rounds of the wake measurement; its times are their medians. */
#define WAKE_ROUNDS 3

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

/* ---- waking parked long polls ---------------------------------------- */

struct wake_poll {
    CURL *easy;
    struct buf body;
    bool done;
    CURLcode result;
    long status;
    double got_ms; /* when its first body bytes were read (monotonic) */
    double at_ms;  /* when it was answered, from the change */
};

struct wake_result {
    int answered;      /* bench node's polls: 200 with the new revision */
    int other;         /* the other node's polls */
    int other_parked;  /* ... of which still unanswered after the wake */
    double change_ms;  /* the change request's round trip */
    double first_ms, last_ms; /* first / last poll answer after the change */
    double cpu_ms;     /* controller CPU from the change to the last answer */
    long threads0, threads1, rss0, rss1;
};

/* Stamped as the bytes are read, not when a curl_multi pass that read
 * thousands of answers ends. */
static size_t wake_write(char *p, size_t sz, size_t n, void *arg)
{
    struct wake_poll *w = arg;
    if (!w->got_ms)
        w->got_ms = bench_now_ms();
    buf_append(&w->body, p, sz * n);
    return sz * n;
}

static long long parked_polls(const struct tu_ctl *ctl)
{
    _cleanup_free_ char *m = tu_metrics_text(ctl);
    const char *at = strstr(m, "\nfog_agent_longpolls ");
    return at ? strtoll(at + strlen("\nfog_agent_longpolls "), NULL, 10) : -1;
}

static json_int_t node_revision(const struct tu_ctl *ctl, const char *cred)
{
    long st = 0;
    json_auto_t *d = tu_api(ctl, cred, "GET", "/v1/agent/desired", NULL, &st);
    if (st != 200) {
        fprintf(stderr, "bench_api: desired state answered %ld\n", st);
        exit(1);
    }
    return json_integer_value(json_object_get(d, "revision"));
}

static void wake_add(CURLM *multi, struct wake_poll *p, const struct tu_ctl *ctl,
                     const char *url, struct curl_slist *hdr, const char *post)
{
    p->easy = curl_easy_init();
    if (post)
        curl_easy_setopt(p->easy, CURLOPT_POSTFIELDS, post);
    curl_easy_setopt(p->easy, CURLOPT_URL, url);
    curl_easy_setopt(p->easy, CURLOPT_CAINFO, ctl->ca);
    /* Only the pinned CA: the system's CA directory parsed again for
     * each of thousands of handshakes would be the bench's cost. */
    curl_easy_setopt(p->easy, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(p->easy, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(p->easy, CURLOPT_WRITEFUNCTION, wake_write);
    curl_easy_setopt(p->easy, CURLOPT_WRITEDATA, p);
    curl_easy_setopt(p->easy, CURLOPT_PRIVATE, p);
    curl_multi_add_handle(multi, p->easy);
}

/* One curl_multi pass; finished transfers are stamped ms after t0.
 * Returns how many finished in this pass. */
static int wake_drive(CURLM *multi, double t0, int wait_ms)
{
    int running, n = 0, left;
    curl_multi_perform(multi, &running);
    CURLMsg *m;
    while ((m = curl_multi_info_read(multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct wake_poll *p;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&p);
        p->done = true;
        p->result = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &p->status);
        p->at_ms = (p->got_ms ? p->got_ms : bench_now_ms()) - t0;
        n++;
    }
    if (wait_ms)
        curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
    return n;
}

/* Two nodes, "bench-a" with the one VM whose power state the rounds
 * flip and "bench-b" with none; their credentials. */
struct wake_nodes {
    char *cred_a, *cred_b;
};

static void wake_setup(const struct tu_ctl *ctl, struct wake_nodes *w)
{
    w->cred_a = tu_node_register(ctl, "bench-a", NULL);
    free(tu_api_field(ctl, ctl->admin_key, "POST", "/v1/vms",
                      "{\"name\":\"wake-trigger\",\"vcpus\":1,\"memory_mib\":"
                      "128,\"disk_gib\":1,\"image\":\"fog-tiny\","
                      "\"allow_tcg\":true}", 201, NULL));
    /* The only node takes it (the scheduler may need a pass). */
    double end = bench_now_ms() + 60000;
    for (;;) {
        json_auto_t *d = tu_api(ctl, w->cred_a, "GET", "/v1/agent/desired",
                                NULL, NULL);
        if (json_array_size(json_object_get(d, "vms")) == 1)
            break;
        if (bench_now_ms() > end) {
            fprintf(stderr, "bench_api: the VM never reached bench-a\n");
            exit(1);
        }
        usleep(50000);
    }
    w->cred_b = tu_node_register(ctl, "bench-b", NULL);
}

/* One round: bench-a holds npolls parked polls and bench-b a tenth as
 * many; one change to the VM placed on bench-a (stop in even rounds,
 * start in odd ones) must answer every poll of bench-a with its new
 * revision and leave bench-b's parked. Exits 1 when it does not: a figure
 * for the wrong wake is worse than none. */
static void bench_wake(const struct tu_ctl *ctl, const struct wake_nodes *w,
                       int npolls, int round, struct wake_result *ret)
{
    memset(ret, 0, sizeof(*ret));
    const char *cred_a = w->cred_a, *cred_b = w->cred_b;
    double end;
    /* Both joined and placed: these revisions are the ones to wait on. */
    json_int_t rev_a = node_revision(ctl, cred_a);
    json_int_t rev_b = node_revision(ctl, cred_b);
    int nother = npolls / 10 > 0 ? npolls / 10 : 1;
    ret->other = nother;

    ret->threads0 = proc_status(ctl->pid, "Threads:");
    ret->rss0 = proc_status(ctl->pid, "VmRSS:");
    CURLM *multi = curl_multi_init();
    struct wake_poll *polls = xcalloc((size_t)(npolls + nother), sizeof(*polls));
    _cleanup_free_ char *url_a = xasprintf("%s/v1/agent/desired?since=%lld&"
                                           "wait=3600", ctl->url,
                                           (long long)rev_a);
    _cleanup_free_ char *url_b = xasprintf("%s/v1/agent/desired?since=%lld&"
                                           "wait=3600", ctl->url,
                                           (long long)rev_b);
    _cleanup_free_ char *auth_a = xasprintf("Authorization: Bearer %s", cred_a);
    _cleanup_free_ char *auth_b = xasprintf("Authorization: Bearer %s", cred_b);
    struct curl_slist *hdr_a = curl_slist_append(NULL, auth_a);
    struct curl_slist *hdr_b = curl_slist_append(NULL, auth_b);
    for (int i = 0; i < npolls + nother; i++)
        wake_add(multi, &polls[i], ctl, i < npolls ? url_a : url_b,
                 i < npolls ? hdr_a : hdr_b, NULL);

    /* Drive the handshakes until the controller holds every poll. */
    end = bench_now_ms() + 120000;
    long long parked;
    while ((parked = parked_polls(ctl)) < npolls + nother) {
        for (int k = 0; k < 10; k++)
            wake_drive(multi, 0, 20);
        if (bench_now_ms() > end) {
            fprintf(stderr, "bench_api: only %lld of %d polls parked\n",
                    parked, npolls + nother);
            exit(1);
        }
    }
    for (int i = 0; i < npolls + nother; i++) {
        if (polls[i].done) {
            fprintf(stderr, "bench_api: a poll ended before the change "
                    "(status %ld)\n", polls[i].status);
            exit(1);
        }
    }
    ret->threads1 = proc_status(ctl->pid, "Threads:");
    ret->rss1 = proc_status(ctl->pid, "VmRSS:");

    /* One change to bench-a's desired state: its VM is asked to stop (or
     * start). The request goes through the same multi handle so the polls
     * are read while the controller answers them, as agents would. */
    struct wake_poll change = { 0 };
    _cleanup_free_ char *url_stop = xasprintf("%s/v1/vms/wake-trigger/%s",
                                              ctl->url,
                                              round % 2 ? "start" : "stop");
    _cleanup_free_ char *auth_admin = xasprintf("Authorization: Bearer %s",
                                                ctl->admin_key);
    struct curl_slist *hdr_admin = curl_slist_append(NULL, auth_admin);
    hdr_admin = curl_slist_append(hdr_admin, "Content-Type: application/json");
    double cpu0 = proc_cpu_ms(ctl->pid);
    double tw = bench_now_ms();
    wake_add(multi, &change, ctl, url_stop, hdr_admin, "{}");
    int answered = 0;
    end = tw + 60000;
    while (answered < npolls + 1 && bench_now_ms() < end)
        answered += wake_drive(multi, tw, 20);
    ret->cpu_ms = proc_cpu_ms(ctl->pid) - cpu0;
    if (!change.done || change.status != 202) {
        buf_append(&change.body, "", 1);
        fprintf(stderr, "bench_api: %s answered %ld %s\n",
                round % 2 ? "start" : "stop", change.status,
                change.body.data ? change.body.data : "");
        exit(1);
    }
    ret->change_ms = change.at_ms;
    curl_multi_remove_handle(multi, change.easy);
    curl_easy_cleanup(change.easy);
    buf_free(&change.body);
    curl_slist_free_all(hdr_admin);
    /* Give the other node's polls a moment to (wrongly) end. */
    double settle = bench_now_ms() + 500;
    while (bench_now_ms() < settle)
        wake_drive(multi, tw, 20);

    json_int_t rev_a1 = node_revision(ctl, cred_a);
    ret->first_ms = 1e12;
    for (int i = 0; i < npolls + nother; i++) {
        struct wake_poll *p = &polls[i];
        if (i >= npolls) {
            ret->other_parked += !p->done;
            continue;
        }
        if (!p->done || p->result != CURLE_OK || p->status != 200)
            continue;
        buf_append(&p->body, "", 1);
        json_auto_t *d = json_loads(p->body.data, 0, NULL);
        json_int_t r = json_integer_value(json_object_get(d, "revision"));
        if (r != rev_a1 || r <= rev_a)
            continue;
        ret->answered++;
        if (p->at_ms < ret->first_ms)
            ret->first_ms = p->at_ms;
        if (p->at_ms > ret->last_ms)
            ret->last_ms = p->at_ms;
    }
    for (int i = 0; i < npolls + nother; i++) {
        curl_multi_remove_handle(multi, polls[i].easy);
        curl_easy_cleanup(polls[i].easy);
        buf_free(&polls[i].body);
    }
    free(polls);
    curl_multi_cleanup(multi);
    curl_slist_free_all(hdr_a);
    curl_slist_free_all(hdr_b);
    if (ret->answered != npolls || ret->other_parked != nother) {
        fprintf(stderr, "bench_api: the change answered %d of %d polls of "
                "bench-a with revision %lld (was %lld) and left %d of %d "
                "polls of bench-b parked\n", ret->answered, npolls,
                (long long)rev_a1, (long long)rev_a, ret->other_parked,
                nother);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    int nvms = argc > 1 ? atoi(argv[1]) : 200;
    int npolls = argc > 2 ? atoi(argv[2]) : 2000;
    /* Thousands of agents come from thousands of addresses; here they all
     * come from 127.0.0.1, so the per-address limits are lifted, and a
     * poll is held longer than the bench takes to park them all. */
    static const char *args[] = { "--per-ip-connections", "0", "--rate-ip",
                                  "0", "--rate-agent-ip", "0", "--rate-key", "0",
                                  "--longpoll",
                                  "300", NULL };
    struct tu_ctl ctl;
    tu_ctl_start(&ctl, args);
    struct api_client *api = api_client_new(ctl.url, ctl.admin_key, ctl.ca);
    struct api_reply rep;

    double *lat = xcalloc((size_t)nvms, sizeof(double));
    for (int i = 0; i < nvms; i++) {
        json_auto_t *body = json_pack("{s:s, s:i, s:i, s:i, s:s}", "name", "x",
                                      "vcpus", 1, "memory_mib", 128,
                                      "disk_gib", 1, "image", "tiny");
        _cleanup_free_ char *name = xasprintf("bench-%d", i);
        json_object_set_new(body, "name", json_string(name));
        /* A selector no node matches: these VMs stay pending and never
         * change a node's desired state during the long-poll part. */
        json_object_set_new(body, "labels", json_pack("[s]", "bench=none"));
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

    /* WAKE_ROUNDS rounds, medians of the times; threads and memory are
     * the first round's. */
    struct wake_nodes wn;
    wake_setup(&ctl, &wn);
    struct wake_result wk, rounds[WAKE_ROUNDS];
    double change[WAKE_ROUNDS], first[WAKE_ROUNDS], last[WAKE_ROUNDS],
        cpu[WAKE_ROUNDS];
    for (int r = 0; r < WAKE_ROUNDS; r++) {
        bench_wake(&ctl, &wn, npolls, r, &rounds[r]);
        change[r] = rounds[r].change_ms;
        first[r] = rounds[r].first_ms;
        last[r] = rounds[r].last_ms;
        cpu[r] = rounds[r].cpu_ms;
    }
    wk = rounds[0];
    wk.change_ms = pct(change, WAKE_ROUNDS, 0.5);
    wk.first_ms = pct(first, WAKE_ROUNDS, 0.5);
    wk.last_ms = pct(last, WAKE_ROUNDS, 0.5);
    wk.cpu_ms = pct(cpu, WAKE_ROUNDS, 0.5);
    free(wn.cred_a);
    free(wn.cred_b);

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
    snprintf(v, sizeof(v), "%d of %d", wk.answered, npolls);
    row("bench node's polls answered 200, new revision", v);
    snprintf(v, sizeof(v), "%d of %d", wk.other_parked, wk.other);
    row("other node's polls still parked", v);
    snprintf(v, sizeof(v), "%ld -> %ld", wk.threads0, wk.threads1);
    char label[80];
    snprintf(label, sizeof(label), "controller threads, idle -> %d parked polls",
             npolls);
    row(label, v);
    snprintf(v, sizeof(v), "%.1f KiB", (double)(wk.rss1 - wk.rss0) /
             (npolls + wk.other));
    row("controller RSS per parked poll", v);
    snprintf(v, sizeof(v), "%.0f ms", wk.change_ms);
    row("the change (POST stop / start) answered, median", v);
    snprintf(v, sizeof(v), "%.0f / %.0f ms", wk.first_ms, wk.last_ms);
    snprintf(label, sizeof(label), "wake %d parked polls: first / last, median",
             npolls);
    row(label, v);
    snprintf(v, sizeof(v), "%.0f ms", wk.cpu_ms);
    row("controller CPU, the change and its wake, median", v);

    api_client_free(api);
    free(lat);
    tu_ctl_destroy(&ctl);
    return 0;
}
