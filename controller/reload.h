/* What SIGHUP does to a serving controller: the settings are read again
 * (the --config file and the flags, as at start) and those that can
 * change under a running server take effect; others are named as needing
 * a restart. Also the logging set-up both start and reload apply. */
#pragma once

#include "common/config.h"
#include "controller/app.h"

/* Settings that take effect on reload (NULL-terminated option names). */
extern const char *const reload_options[];

/* Log level and destination from cfg: the journal's native socket when
 * journal is "on", or "auto" and stderr is the journal. 0, or -EINVAL
 * (message printed) for an unknown level or journal mode. */
int reload_logging(const struct app_settings *cfg);

/* A default-max-price setting is a decimal token amount or "none". */
bool reload_max_price_ok(const char *text);

/* Parse argv[start..] again into fresh settings, check them, and apply
 * the reloadable ones to a->cfg (integers in place, strings swapped; the
 * old strings stay allocated until exit since requests may hold them),
 * the rate limits, the billing defaults and the log level. On a setting
 * that fails its check nothing changes. 0 or -errno (logged). */
int reload_settings(struct app *a, const struct config_opt *opts, size_t n,
                    int argc, char **argv, int start);
/* Free the strings retired by reloads (at exit). */
void reload_free(void);
