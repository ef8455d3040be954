/* SIGHUP for fog-controller: read the settings again and apply what a
 * running server can take without dropping connections or state. */
#include "controller/reload.h"

#include "billing/money.h"
#include "common/buf.h"
#include "common/log.h"
#include "controller/accrual.h"
#include "controller/guard.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>

const char *const reload_options[] = {
    "log-level", "fee-bps", "grace", "token-symbol", "default-offer",
    "default-max-price", "weight-price", "weight-spread", "quota-networks",
    "quota-vms", "quota-ports", "quota-images", "quota-ssh-keys",
    "quota-api-keys", "rate-ip", "burst-ip", "rate-agent-ip",
    "burst-agent-ip", "rate-key", "burst-key", "rate-node", "burst-node",
    "max-vcpus", "max-memory-mib", "max-disk-gib", "max-image-gib",
    "event-retention", "idempotency-ttl", "sla-credit-bps", "evacuate-after",
    "backup-full-every",
    NULL
};

/* Strings replaced by reloads: a request thread may still read one. */
static char **retired;
static size_t n_retired;
static pthread_mutex_t retired_lock = PTHREAD_MUTEX_INITIALIZER;

static bool reloadable(const char *name)
{
    for (const char *const *o = reload_options; *o; o++)
        if (streq(*o, name))
            return true;
    return false;
}

int reload_logging(const struct app_settings *cfg)
{
    enum log_level level;
    if (log_level_parse(cfg->log_level, &level) < 0) {
        fprintf(stderr, "fog-controller: log-level '%s' is not one of error, "
                        "warn, info, debug\n", cfg->log_level ? cfg->log_level
                                                              : "");
        return -EINVAL;
    }
    const char *j = cfg->journal ? cfg->journal : "auto";
    if (!streq(j, "auto") && !streq(j, "on") && !streq(j, "off")) {
        fprintf(stderr, "fog-controller: journal '%s' is not auto, on or "
                        "off\n", j);
        return -EINVAL;
    }
    log_set_level(level);
    bool on = streq(j, "on") || (streq(j, "auto") && log_stderr_is_journal());
    log_set_journal(on ? cfg->journal_socket : NULL);
    return 0;
}

bool reload_max_price_ok(const char *text)
{
    int64_t cap;
    return !text || streq(text, "none") ||
           (money_parse(text, &cap) == 0 && cap >= 0);
}

static bool opt_equal(const struct config_opt *o, const void *x, const void *y)
{
    const char *a = (const char *)x + o->offset, *b = (const char *)y + o->offset;
    switch (o->type) {
    case CONFIG_STRING: {
        const char *sa = *(char *const *)a, *sb = *(char *const *)b;
        return sa == sb || (sa && sb && streq(sa, sb));
    }
    case CONFIG_INT:
        return *(const int64_t *)a == *(const int64_t *)b;
    case CONFIG_BOOL:
        return *(const bool *)a == *(const bool *)b;
    default:
        return true;
    }
}

/* Move option o's value from `from` into `to` (a->cfg, read meanwhile). */
static void opt_take(const struct config_opt *o, void *to, void *from)
{
    char *t = (char *)to + o->offset, *f = (char *)from + o->offset;
    switch (o->type) {
    case CONFIG_STRING: {
        char *nv = *(char **)f;
        *(char **)f = NULL;
        char *old = __atomic_exchange_n((char **)t, nv, __ATOMIC_SEQ_CST);
        pthread_mutex_lock(&retired_lock);
        retired = xrealloc(retired, (n_retired + 1) * sizeof(*retired));
        retired[n_retired++] = old;
        pthread_mutex_unlock(&retired_lock);
        break;
    }
    case CONFIG_INT:
        __atomic_store_n((int64_t *)t, *(int64_t *)f, __ATOMIC_SEQ_CST);
        break;
    case CONFIG_BOOL:
        __atomic_store_n((bool *)t, *(bool *)f, __ATOMIC_SEQ_CST);
        break;
    default:
        break;
    }
}

int reload_settings(struct app *a, const struct config_opt *opts, size_t n,
                    int argc, char **argv, int start)
{
    struct app_settings next = { 0 };
    char **args = NULL;
    int nargs = 0, r = 0;
    config_defaults(opts, n, &next);
    if (config_parse_args(opts, n, &next, argc, argv, start, &args,
                          &nargs) < 0) {
        log_error("reload: the settings do not parse: nothing changed");
        r = -EINVAL;
        goto out;
    }
    enum log_level level;
    if (log_level_parse(next.log_level, &level) < 0 ||
        !reload_max_price_ok(next.default_max_price)) {
        log_error("reload: log-level or default-max-price is invalid: "
                  "nothing changed");
        r = -EINVAL;
        goto out;
    }
    if (billing_configure(a->cfg.accrual_s, next.fee_bps, next.grace_s,
                          a->cfg.heartbeat_s, next.token_symbol,
                          next.default_offer) < 0) {
        log_error("reload: a billing setting is invalid: nothing changed");
        r = -EINVAL;
        goto out;
    }
    struct buf changed = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        if (opt_equal(&opts[i], &a->cfg, &next))
            continue;
        if (!reloadable(opts[i].name)) {
            log_warn("reload: '%s' changed: it takes effect after a restart",
                     opts[i].name);
            continue;
        }
        opt_take(&opts[i], &a->cfg, &next);
        buf_printf(&changed, "%s%s", changed.len ? ", " : "", opts[i].name);
    }
    guard_reconfigure(a->guard, &a->cfg);
    log_set_level(level);
    log_info("reloaded settings; changed: %s",
             changed.len ? buf_str(&changed) : "nothing");
    buf_free(&changed);
out:
    free(args);
    config_free(opts, n, &next);
    return r;
}

void reload_free(void)
{
    for (size_t i = 0; i < n_retired; i++)
        free(retired[i]);
    free(retired);
    retired = NULL;
    n_retired = 0;
}
